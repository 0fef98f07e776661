//! What the supervisor is waiting for: [`State`], the phase with what its decisions need and
//! nothing else (the workload while it runs, the [`Drain`] under way, while [`Stopping`] what
//! became of the app ([`AppEnd`]) and the next step ([`StopStep`]), the code once exited), and
//! the small questions the step logic (`mod.rs`) asks of it. Private to the supervisor.

use std::time::Instant;

use super::event::Workload;
use crate::exit;
use crate::status::Phase;

/// What the supervisor is waiting for, with what it needs to decide the next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// No stop has been asked for.
    Running(Workload),
    /// A stop request (the stop signal or SIGTERM; for a sidecar SIGINT too) started a drain.
    Draining(Workload, Drain),
    /// The app has exited, or was still running at the drain deadline: what is left is stopped.
    Stopping(Stopping),
    /// pyinit exits with `code` (already remapped): `step` returns it as the last action. A
    /// sidecar's last view has no app in it.
    Exited { code: u8, sidecar: bool },
}

/// A drain under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Drain {
    /// The stop request that started it: every later step of the drain is measured from here.
    pub(super) started_at: Instant,
    pub(super) stop_sent: bool,
    pub(super) hard_stop_sent: bool,
}

/// The last phase: signals to whatever is left, then the wait for the reaper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stopping {
    pub(super) app: AppEnd,
    /// When the drain started, if one did: no SIGKILL comes later than its deadline.
    pub(super) drain_started_at: Option<Instant>,
    pub(super) next: StopStep,
}

/// What became of the app, as far as the exit code goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AppEnd {
    /// Still running at the drain deadline: pyinit exits 137, however the app ends after it (of
    /// the dump signal, of the SIGKILL, or by itself in a race with them). `reaped` once its
    /// status came in.
    Overdue { pid: i32, reaped: bool },
    /// Exited before the deadline (or without a drain); `code` is what pyinit exits with
    /// (before `--remap-exit`): the app's, or 0 for a clean death by its stop signal.
    Exited { code: u8 },
}

impl AppEnd {
    /// The code pyinit exits with (before `--remap-exit`).
    pub(super) fn exit_code(self) -> u8 {
        match self {
            AppEnd::Overdue { .. } => exit::KILLED_AT_DEADLINE,
            AppEnd::Exited { code } => code,
        }
    }
}

/// The next step of [`Stopping`], and when it comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StopStep {
    /// Everything left has been asked to stop (SIGTERM to an exited app's leftovers) or to print
    /// its traceback (the dump signal); it gets SIGKILL at this instant.
    KillAt(Instant),
    /// SIGKILL has been sent; pyinit exits at this instant even if some process was never
    /// reaped.
    GiveUpAt(Instant),
}

impl State {
    /// The app's pid while it runs (signalled at the deadline but not yet reaped included):
    /// the process whose exit is the app's. `None` once the app is gone, and for a sidecar.
    pub(super) fn running_app_pid(self) -> Option<i32> {
        match self {
            State::Running(Workload::App { pid })
            | State::Draining(Workload::App { pid }, _)
            | State::Stopping(Stopping {
                app: AppEnd::Overdue { pid, reaped: false },
                ..
            }) => Some(pid),
            State::Running(Workload::Sidecar)
            | State::Draining(Workload::Sidecar, _)
            | State::Stopping(_)
            | State::Exited { .. } => None,
        }
    }

    /// True while pyinit runs as a health sidecar, and in a sidecar's last state.
    pub(super) fn is_sidecar(self) -> bool {
        matches!(
            self,
            State::Running(Workload::Sidecar)
                | State::Draining(Workload::Sidecar, _)
                | State::Exited { sidecar: true, .. }
        )
    }

    pub(super) fn drain_started_at(self) -> Option<Instant> {
        match self {
            State::Draining(_, drain) => Some(drain.started_at),
            State::Stopping(stopping) => stopping.drain_started_at,
            State::Running(_) | State::Exited { .. } => None,
        }
    }

    pub(super) fn phase(self) -> Phase {
        match self {
            State::Running(_) => Phase::Running,
            State::Draining(..) => Phase::Draining,
            State::Stopping(_) => Phase::Stopping,
            State::Exited { .. } => Phase::Exited,
        }
    }
}
