//! The rules the supervisor applies: `Policy`, which `config` builds from the validated flags
//! (the stop signal and what the app is sent, forwarding, the drain's timings, the exit remap),
//! with the drain's two optional rungs, `HardStop` before the deadline and `DeadlineDump` at it.
//! Data only; the supervisor (`mod.rs`) reads it and never changes it.

use std::time::Duration;

use crate::exit::ExitRemap;
use crate::signals::spec::{ForwardTarget, RewriteMap, Signal};

/// An optional middle rung between the stop signal and SIGKILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HardStop {
    pub signal: Signal,
    /// Measured from the signal that started the drain.
    pub after: Duration,
}

/// The step between the drain deadline and the SIGKILL: a signal that makes every Python process
/// print where it is stuck (faulthandler's traceback), and the time they get to print it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlineDump {
    pub signal: Signal,
    /// From the dump signal to the SIGKILL.
    pub window: Duration,
}

/// The rules the supervisor applies; built from the validated configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The signal whose arrival begins the drain (`--stop-signal`, the image's STOPSIGNAL or the
    /// pod's stopSignal); SIGTERM begins it too, whatever this is.
    pub stop_signal: Signal,
    /// What the app is sent when the drain sends its stop signal; `None` when `--signal-map`
    /// drops it. `config` decides it; the supervisor sends exactly this.
    pub app_stop_signal: Option<Signal>,
    pub forward_to: ForwardTarget,
    pub rewrite: RewriteMap,
    pub pre_stop_delay: Duration,
    pub drain_timeout: Duration,
    pub hard_stop: Option<HardStop>,
    /// `None` for `--deadline-dump off`: SIGKILL at the deadline itself.
    pub deadline_dump: Option<DeadlineDump>,
    /// How long processes left behind by an exited app get between SIGTERM and SIGKILL.
    pub orphan_grace: Duration,
    /// How long to wait for SIGKILLed processes to be reaped before exiting anyway.
    pub kill_wait: Duration,
    pub remap: ExitRemap,
    /// The app's death by `app_stop_signal`, after the drain sent it, is a clean stop: exit 0
    /// (a server that re-raises the signal after draining, as uvicorn does).
    pub clean_death_by_stop_signal: bool,
}
