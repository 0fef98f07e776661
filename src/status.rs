//! `Status`: what the supervisor knows, as the health server and metrics read it.
//!
//! The one contract between the supervisor (the only writer, through a `watch` channel), the
//! health routes and the metrics text. It is plain data, cheap to clone, with no I/O.

/// Where pyinit is in the app's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    /// The app runs (or, in sidecar mode, the probes do) and no stop has been asked for.
    #[default]
    Running,
    /// A SIGTERM arrived: readiness is false and the app is being stopped.
    Draining,
    /// The app has exited or been killed; pyinit is cleaning up what it left behind.
    Stopping,
}

/// A snapshot of the supervisor's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    /// The app's pid while it runs; `None` before, after, and in sidecar mode.
    pub app_pid: Option<i32>,
    /// True from the first SIGTERM on: readiness is false for good.
    pub draining: bool,
    /// The app's exit code (before `--remap-exit`) once it has exited.
    pub app_exit_code: Option<u8>,
    /// Signals forwarded to the app, indexed by signal number.
    pub signals_forwarded: [u64; 32],
    /// Exited processes reaped that were neither the app nor a probe: orphans.
    pub orphans_reaped: u64,
}
