//! `Status`: what the supervisor knows, as the health server and metrics read it.
//!
//! The one contract between the supervisor (the only writer, through a `watch` channel), the
//! health routes, the metrics text, the probers and the drill. It is plain data, cheap to clone,
//! with no I/O, and a view: the supervisor derives every field from its own state after each
//! step and keeps nothing of its own here. The checks behind `/livez` and `/readyz` are
//! computed here, from the status alone, so that the supervisor's `live`/`ready` and the
//! routes' check lists can never disagree.

use std::time::Instant;

use crate::exit::ChildStatus;
use crate::probe::threshold::{Probes, Verdict};
use crate::signals::spec::Signal;

/// Where pyinit is in the app's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    /// The app runs (or, in sidecar mode, the probes do) and no stop has been asked for.
    #[default]
    Running,
    /// A SIGTERM arrived: readiness is false and the app is being stopped.
    Draining,
    /// The app has exited, or was SIGKILLed at the drain deadline; pyinit is stopping what is
    /// left and waits for the reaper.
    Stopping,
    /// pyinit is exiting: the last status it publishes.
    Exited,
}

impl Phase {
    /// True once the app has exited or been killed at the drain deadline, and in pyinit's last
    /// status (a sidecar's too): nothing is left to probe.
    pub fn app_stopped(self) -> bool {
        matches!(self, Phase::Stopping | Phase::Exited)
    }
}

/// The supervisor's view of its state after a step.
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
    /// False in sidecar mode: there is no app, and liveness and readiness follow the probes alone.
    pub has_app: bool,
    /// Every configured probe's results, counted by Kubernetes' rules.
    pub probes: Probes,
    /// What `/livez` answers: every liveness check passes.
    pub live: bool,
    /// What `/readyz` answers: every readiness check passes.
    pub ready: bool,
    /// What happened during the shutdown, with when: the drill's evidence.
    pub shutdown: ShutdownRecord,
    /// The container's limits and memory use, for `/metrics`.
    pub resources: Resources,
}

/// The shutdown as it happened. Times are the supervisor's `now` at each step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownRecord {
    /// The SIGTERM that started the drain.
    pub drain_started_at: Option<Instant>,
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
}

/// The container's resources as `/metrics` shows them. `None` is "pyinit cannot say": no limit
/// is set, or the cgroup file cannot be read (a container without a memory controller, say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// The CPU limit (CFS quota / period), in thousandths of a CPU; read once at start.
    pub cpu_limit_millicpus: Option<u64>,
    /// The memory limit in bytes; read once at start.
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

impl Status {
    fn app_running_check(&self) -> Option<Check> {
        if !self.has_app {
            return None;
        }
        Some(match (self.app_pid, self.app_exit_code) {
            (Some(_), _) => Check::pass("app-running"),
            (None, Some(code)) => {
                Check::fail("app-running", format!("app exited with code {code}"), None)
            }
            (None, None) => Check::fail("app-running", "app exited".to_owned(), None),
        })
    }

    /// The checks behind `/livez`: the app runs, startup has not failed, and the liveness probe
    /// has not reached its failure threshold. During a drain the probes are not held against the
    /// app: the kubelet must not restart a pod that is shutting down cleanly.
    pub fn liveness_checks(&self) -> Vec<Check> {
        let mut checks: Vec<Check> = self.app_running_check().into_iter().collect();
        if let Some(startup) = &self.probes.startup {
            checks.push(if self.probes.startup_failed() && !self.draining {
                Check::fail(
                    "startup",
                    startup.failure_reason(),
                    startup.last.as_ref().map(|last| last.at),
                )
            } else {
                Check::pass("startup")
            });
        }
        if let Some(liveness) = &self.probes.liveness {
            checks.push(if liveness.verdict == Verdict::Failing && !self.draining {
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

    /// The checks behind `/readyz`: the app runs, startup is done, the readiness probe passes,
    /// and pyinit is not shutting down.
    pub fn readiness_checks(&self) -> Vec<Check> {
        let mut checks: Vec<Check> = self.app_running_check().into_iter().collect();
        if let Some(startup) = &self.probes.startup {
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
        if let Some(readiness) = &self.probes.readiness {
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
        checks.push(if self.draining {
            Check::fail("shutdown", "draining after SIGTERM".to_owned(), None)
        } else {
            Check::pass("shutdown")
        });
        checks
    }

    /// Recomputes `live` and `ready` from the checks; the supervisor's view calls it after every
    /// step.
    pub fn refresh_verdicts(&mut self) {
        self.live = self.liveness_checks().iter().all(|check| check.passed);
        self.ready = self.readiness_checks().iter().all(|check| check.passed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_ends_once_the_app_is_stopped_or_pyinit_exits() {
        assert!(!Phase::Running.app_stopped());
        assert!(!Phase::Draining.app_stopped());
        assert!(Phase::Stopping.app_stopped());
        assert!(Phase::Exited.app_stopped());
    }
}
