//! What comes out of the supervisor: each step returns [`Action`]s for the driver to carry
//! out, in order: a signal to forward with its [`Reason`], a signal to everything left, the
//! deadline's dump, a [`Notice`] to log, and last the exit code.

use std::time::Duration;

use super::policy::{DeadlineDump, HardStop};
use crate::exit::ChildStatus;
use crate::probe::threshold::Verdict;
use crate::signals::spec::{ForwardTarget, Signal};

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Forward {
        signal: Signal,
        pid: i32,
        target: ForwardTarget,
        reason: Reason,
    },
    /// Send this signal to every process pyinit is responsible for (all but itself).
    SignalRemaining(Signal),
    /// Send the dump signal to every process pyinit is responsible for, one at a time, within
    /// `window`; the SIGKILL at its end is a later step's `SignalRemaining`.
    DumpTracebacks {
        signal: Signal,
        window: Duration,
    },
    Notice(Notice),
    /// Exit pyinit with this code (already remapped).
    Exit(u8),
}

/// Why a signal is being sent to the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// pyinit received a signal (possibly rewritten) and passes it on.
    Forwarded { received: Signal },
    /// The stop signal of a drain, after the pre-stop delay.
    StopSignal,
    /// `--hard-stop-signal` at `--hard-stop-after`.
    HardStop,
}

/// A lifecycle step worth one log event; the driver picks the level and the words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    DrainStarted {
        /// The signal that began it: the stop signal, or SIGTERM.
        signal: Signal,
        pre_stop_delay: Duration,
        drain_timeout: Duration,
        hard_stop: Option<HardStop>,
    },
    SignalDropped {
        received: Signal,
    },
    SignalIgnored {
        received: Signal,
    },
    AppExited {
        status: ChildStatus,
        since_drain: Option<Duration>,
        /// It was still running at the drain deadline: pyinit exits 137 whatever this status is.
        after_deadline: bool,
        /// It died of the stop signal pyinit sent, which its server re-raises after draining:
        /// pyinit exits 0.
        clean_stop: bool,
    },
    /// The app was still running at the drain deadline; the dump, if any, comes next.
    DeadlineMissed {
        drain_timeout: Duration,
        dump: Option<DeadlineDump>,
    },
    /// Processes the app left behind were still there after the orphan grace.
    LeftoversKilled,
    /// Some process was not reaped within `kill_wait` of the SIGKILL.
    GaveUpWaiting,
    /// The startup probe's verdict changed (succeeded, or reached its failure threshold).
    StartupChanged {
        verdict: Verdict,
        reason: String,
    },
    /// `/readyz` changed; `reason` names the failing checks when it turned false. Not sent when
    /// the drain or the app's exit caused it: those notices say so already.
    ReadinessChanged {
        ready: bool,
        reason: String,
    },
    /// `/livez` changed; as for readiness, not sent when the app's exit or the drain caused it.
    LivenessChanged {
        live: bool,
        reason: String,
    },
}
