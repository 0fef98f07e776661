//! What goes into the supervisor: the [`Workload`] it is built for (the app's pid, or none for
//! a health sidecar), fixed when pyinit starts, and each [`Event`] the driver reports (a caught
//! signal, a reaping pass, the timer, a probe's result, a reading of the container's resources).

use crate::exit::ChildStatus;
use crate::probe::threshold::ProbeReport;
use crate::signals::spec::Signal;
use crate::status::Resources;

/// What pyinit runs beside its probes; fixed when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A health sidecar (no command): there is no app, and liveness and readiness follow the
    /// probes alone.
    Sidecar,
    /// The app, running as `pid`.
    App { pid: i32 },
}

/// Something that happened, as the driver reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// pyinit caught a signal (never SIGCHLD: that becomes `Reaped`).
    Signal(Signal),
    /// One reaping pass.
    Reaped {
        /// The app's status, if the app was among the reaped.
        app: Option<ChildStatus>,
        /// Other exited processes reaped in this pass.
        n_orphans: usize,
        /// False once `waitpid` says pyinit has no child at all.
        children_left: bool,
    },
    /// The deadline from [`Supervisor::next_deadline`](super::Supervisor::next_deadline) has
    /// come.
    Timer,
    /// A probe finished.
    Probe(ProbeReport),
    /// The driver's periodic reading of the container's resources: its limits (which an
    /// in-place resize changes), memory use and OOM-kill count; only recorded in `Status`, for
    /// `/metrics`: no decision depends on it.
    Resources(Resources),
}
