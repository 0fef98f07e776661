//! The single integration test binary: each module runs the real pyinit binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation is a failed test"
)]
// clippy.toml's bans (waitpid and Command::status/output outside the reaper, kill outside
// signals/mod.rs, std's Instant::now outside clock.rs) guard pyinit's own ownership rules. They do
// not apply to this crate: the tests are pyinit's users, start, wait for and signal their own
// processes, pyinit among them, and time them from outside on std's clock. clippy's
// allow-*-in-tests keys do not cover disallowed-methods, hence this crate-wide allow.
#![allow(
    clippy::disallowed_methods,
    reason = "the test harness waits for, signals and times its own children; the bans are pyinit's"
)]

mod common;

mod config_errors;
mod container;
mod dist;
mod drill;
mod examples;
mod exit_codes;
mod grpc_probe;
mod health;
mod peers;
mod privileges;
mod probes;
mod probes_first_pass;
mod readme;
mod reaping;
mod reliability;
mod rolling_restart;
mod runc;
mod runc_dump;
mod runc_limits;
mod runc_multiproc;
mod servers;
mod signals;
mod terminal_and_logs;
mod working_directory;
