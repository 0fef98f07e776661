//! The single integration test binary: each module runs the real pyinit binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code,
    reason = "test code: a failed expectation is a failed test, and modules use different helpers"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the tests time real processes from outside, on std's clock; the bans guard pyinit's code"
)]

mod common;

mod config_errors;
mod container;
mod drill;
mod examples;
mod exit_codes;
mod health;
mod privileges;
mod probes;
mod readme;
mod reaping;
mod runc;
mod runc_limits;
mod signals;
mod terminal_and_logs;
