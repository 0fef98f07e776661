//! `Status`: what the supervisor knows, as the health server and metrics read it.
//!
//! The one contract between the supervisor (the only writer, through a `watch` channel), the
//! health routes, the metrics text and the drill. It is plain data, cheap to clone, with no
//! I/O, and a view: the supervisor derives every field from its own state after each step and
//! keeps nothing of its own here. The checks behind `/livez` and `/readyz` ([`Checks`]) are
//! computed once per step, from the app, the drain and the probes, and `live` and `ready` with
//! them: the routes answer from the same lists the notices and `/metrics` read.

use std::time::Instant;

use crate::exit::ChildStatus;
use crate::probe::threshold::{Probes, Verdict};
use crate::signals::spec::{Signal, short_name};

/// Where pyinit is in the app's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    /// The app runs (or, in sidecar mode, the probes do) and no stop has been asked for.
    #[default]
    Running,
    /// A stop request arrived (the stop signal, or SIGTERM): readiness is false and the app is
    /// being stopped.
    Draining,
    /// The app has exited, or was SIGKILLed at the drain deadline; pyinit is stopping what is
    /// left and waits for the reaper.
    Stopping,
    /// pyinit is exiting: the last status it publishes.
    Exited,
}

/// The app as readers see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppState {
    /// pyinit is a health sidecar: there is no app, and liveness and readiness follow the probes
    /// alone.
    #[default]
    Sidecar,
    /// The app runs as `pid` (an app signalled at the drain deadline, until it is reaped).
    Running { pid: i32 },
    /// The app has exited; its exit code (before `--remap-exit`) when its status could be read.
    Exited { exit_code: Option<u8> },
}

impl AppState {
    pub fn is_running(self) -> bool {
        matches!(self, AppState::Running { .. })
    }
}

/// The supervisor's view of its state after a step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    pub app: AppState,
    /// True from the first stop request on: readiness is false for good.
    pub draining: bool,
    /// Signals forwarded to the app, indexed by signal number.
    pub signals_forwarded: [u64; 32],
    /// Exited processes reaped that were neither the app nor a probe: orphans.
    pub orphans_reaped: u64,
    /// Every configured probe's results, counted by Kubernetes' rules.
    pub probes: Probes,
    /// The checks behind `/livez` and `/readyz`, from `app`, `draining` and `probes`.
    pub checks: Checks,
    /// `/readyz` has passed, after this step or an earlier one, and stays true from then on:
    /// before it the health server may hold a 503 of `/readyz` until readiness turns true
    /// (`health/hold.rs`), after it never again.
    pub has_been_ready: bool,
    /// What happened during the shutdown, with when: the drill's evidence.
    pub shutdown: ShutdownRecord,
    /// The container's limits and memory use, for `/metrics`.
    pub resources: Resources,
    /// The server whose profile applies (`gunicorn`); `None` without one.
    pub server: Option<&'static str>,
}

/// The shutdown as it happened. Times are the supervisor's `now` at each step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownRecord {
    /// When the drain started, and the signal that started it (the stop signal, or SIGTERM).
    pub drain_started_at: Option<Instant>,
    pub drain_signal: Option<Signal>,
    /// The first stop signal sent to the app (after `--signal-map`).
    pub stop_signal: Option<(Signal, Instant)>,
    pub hard_stop_sent_at: Option<Instant>,
    /// When the app was reaped, and how it ended (`None` if its status could not be read).
    pub app_exited_at: Option<Instant>,
    pub app_status: Option<ChildStatus>,
    /// The app was still running at the drain deadline: it got the dump signal (unless
    /// `--deadline-dump off`), then SIGKILL.
    pub killed_at_deadline: bool,
    /// The app exited but left processes behind, which pyinit then stopped.
    pub left_behind: bool,
    /// The app died of the stop signal pyinit sent it, which its server re-raises after
    /// draining (`Policy::clean_death_by_stop_signal`): pyinit counted it a clean stop, exit 0.
    pub clean_death_by_stop_signal: bool,
}

/// The container's resources as `/metrics` shows them. `None` is "pyinit cannot say": no limit
/// is set, or the cgroup file cannot be read (a container without a memory controller, say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// The CPU limit (CFS quota / period), in thousandths of a CPU; read at start and on every
    /// resource poll, since an in-place resize changes it.
    pub cpu_limit_millicpus: Option<u64>,
    /// The memory limit in bytes; read like the CPU limit.
    pub memory_limit_bytes: Option<u64>,
    /// The cgroup's memory use at the driver's last poll (at most about a second old).
    pub memory_usage_bytes: Option<u64>,
    /// OOM kills in the container since pyinit started; `None` without a readable OOM-kill
    /// counter, where a 0 would claim more than pyinit knows.
    pub oom_kills: Option<u64>,
}

/// One named check of `/livez` or `/readyz`, as the Kubernetes API server lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `app-running`, `startup`, `liveness`, `readiness`, `shutdown`.
    pub name: &'static str,
    pub passed: bool,
    /// Why it failed, in a few words; empty when it passed.
    pub reason: String,
    /// When the probe behind a failed check last finished, for its age.
    pub last_at: Option<Instant>,
}

impl Check {
    fn pass(name: &'static str) -> Self {
        Check {
            name,
            passed: true,
            reason: String::new(),
            last_at: None,
        }
    }

    fn fail(name: &'static str, reason: String, last_at: Option<Instant>) -> Self {
        Check {
            name,
            passed: false,
            reason,
            last_at,
        }
    }
}

/// The checks behind `/livez` and `/readyz`, and their verdicts, computed once per step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checks {
    liveness: Vec<Check>,
    readiness: Vec<Check>,
    live: bool,
    ready: bool,
}

impl Checks {
    /// The checks for `app` and `probes`; `drain_signal` is the signal that started the drain,
    /// if one did.
    pub fn new(app: AppState, drain_signal: Option<Signal>, probes: &Probes) -> Self {
        let liveness = liveness_checks(app, drain_signal.is_some(), probes);
        let readiness = readiness_checks(app, drain_signal, probes);
        Checks {
            live: liveness.iter().all(|check| check.passed),
            ready: readiness.iter().all(|check| check.passed),
            liveness,
            readiness,
        }
    }

    /// The checks behind `/livez`.
    pub fn liveness(&self) -> &[Check] {
        &self.liveness
    }

    /// The checks behind `/readyz`.
    pub fn readiness(&self) -> &[Check] {
        &self.readiness
    }

    /// What `/livez` answers: every liveness check passes.
    pub fn live(&self) -> bool {
        self.live
    }

    /// What `/readyz` answers: every readiness check passes.
    pub fn ready(&self) -> bool {
        self.ready
    }
}

impl Default for Checks {
    /// The checks of a default `Status`: a sidecar without probes, not draining.
    fn default() -> Self {
        Checks::new(AppState::default(), None, &Probes::default())
    }
}

fn app_running_check(app: AppState) -> Option<Check> {
    match app {
        AppState::Sidecar => None,
        AppState::Running { .. } => Some(Check::pass("app-running")),
        AppState::Exited {
            exit_code: Some(code),
        } => Some(Check::fail(
            "app-running",
            format!("app exited with code {code}"),
            None,
        )),
        AppState::Exited { exit_code: None } => {
            Some(Check::fail("app-running", "app exited".to_owned(), None))
        }
    }
}

/// The checks behind `/livez`: the app runs, startup has not failed, and the liveness probe has
/// not reached its failure threshold. During a drain the probes are not held against the app:
/// the kubelet must not restart a pod that is shutting down cleanly.
fn liveness_checks(app: AppState, draining: bool, probes: &Probes) -> Vec<Check> {
    let mut checks: Vec<Check> = app_running_check(app).into_iter().collect();
    if let Some(startup) = &probes.startup {
        checks.push(if probes.startup_failed() && !draining {
            Check::fail(
                "startup",
                startup.failure_reason(),
                startup.last.as_ref().map(|last| last.at),
            )
        } else {
            Check::pass("startup")
        });
    }
    if let Some(liveness) = &probes.liveness {
        checks.push(if liveness.verdict == Verdict::Failing && !draining {
            Check::fail(
                "liveness",
                liveness.failure_reason(),
                liveness.last.as_ref().map(|last| last.at),
            )
        } else {
            Check::pass("liveness")
        });
    }
    checks
}

/// The checks behind `/readyz`: the app runs, startup is done, the readiness probe passes, and
/// pyinit is not shutting down.
fn readiness_checks(app: AppState, drain_signal: Option<Signal>, probes: &Probes) -> Vec<Check> {
    let mut checks: Vec<Check> = app_running_check(app).into_iter().collect();
    if let Some(startup) = &probes.startup {
        checks.push(match startup.verdict {
            Verdict::Passing => Check::pass("startup"),
            Verdict::Pending => Check::fail(
                "startup",
                format!("not yet succeeded: {}", startup.failure_reason()),
                startup.last.as_ref().map(|last| last.at),
            ),
            Verdict::Failing => Check::fail(
                "startup",
                startup.failure_reason(),
                startup.last.as_ref().map(|last| last.at),
            ),
        });
    }
    if let Some(readiness) = &probes.readiness {
        checks.push(if readiness.verdict == Verdict::Passing {
            Check::pass("readiness")
        } else {
            Check::fail(
                "readiness",
                readiness.failure_reason(),
                readiness.last.as_ref().map(|last| last.at),
            )
        });
    }
    checks.push(match drain_signal {
        Some(signal) => Check::fail(
            "shutdown",
            format!("draining after SIG{}", short_name(signal)),
            None,
        ),
        None => Check::pass("shutdown"),
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_without_probes_is_live_and_ready_until_it_drains() {
        let checks = Checks::default();
        assert!(checks.live() && checks.ready());
        assert!(checks.liveness().is_empty());
        assert_eq!(checks.readiness(), [Check::pass("shutdown")]);
        let draining = Checks::new(AppState::Sidecar, Some(Signal::SIGINT), &Probes::default());
        assert!(draining.live() && !draining.ready());
    }

    #[test]
    fn an_exited_app_fails_both_with_its_code() {
        let exited = AppState::Exited { exit_code: Some(3) };
        let checks = Checks::new(exited, None, &Probes::default());
        assert!(!checks.live() && !checks.ready());
        assert_eq!(
            checks.liveness(),
            [Check::fail(
                "app-running",
                "app exited with code 3".to_owned(),
                None
            )]
        );
    }
}
