//! In-place resize (Kubernetes' KEP-1287): what a change of the container's limits means, and
//! how the app's worker count follows the CPU limit. Pure: the driver reads the files and /proc
//! and sends the signals (`supervisor/resize.rs`).
//!
//! The kubelet changes a running container's limits through the runtime, which rewrites its
//! cgroup in place and tells the container nothing (kubernetes/enhancements
//! keps/sig-node/1287-in-place-update-pod-resources/README.md, "CRI Changes":
//! `UpdateContainerResources`). pyinit reads the limits again on its resource poll;
//! [`LimitChange`] is one change, named for the log.
//!
//! When pyinit chose `WEB_CONCURRENCY` itself, [`WorkerFollower`] keeps the worker count at
//! floor(2 × CPUs + 1) as the CPU limit moves, with SIGTTIN (one worker more) and SIGTTOU (one
//! fewer) to the server's master. Only gunicorn's arbiter (27.0.1 `gunicorn/arbiter.py:332,340`,
//! `handle_ttin` and `handle_ttou`) and uvicorn's multiprocess supervisor (since 0.30.0; 0.55.0
//! `uvicorn/supervisors/multiprocess.py:267,274`) handle them, which their server profiles say
//! (`ServerProfile::resizes_on_ttin`; [`workers_to_follow`]). To any other process a SIGTTIN is
//! a stop (its default action), and uvicorn in one process is one, so the follower sends one
//! only to a master whose /proc status shows both caught. It moves the count by the change of
//! the formula's value, not to it: a worker added by hand stays.
//!
//! Signals of one kind coalesce while one is pending, so the follower sends one at a time: the
//! next only once the previous has taken effect (the master has one child more after a SIGTTIN,
//! one fewer after a SIGTTOU) or [`SIGNAL_SPACING`] later. Both servers queue every signal from
//! their Python handler (gunicorn's `SIG_QUEUE`, arbiter.py:237; uvicorn's `signal_queue`,
//! multiprocess.py:157) and wait in calls that a signal interrupts (arbiter.py:425,
//! multiprocess.py:203), so a signal can only be lost while it is pending in the kernel or
//! waiting for that handler, which runs within milliseconds of its delivery; a second later it
//! has run even in a master throttled by a small CPU quota (a CFS period is 100 ms). Waiting for
//! the effect alone would not do: a worker told to stop by SIGTTOU leaves only when its requests
//! are done.

use std::ffi::OsString;
use std::fmt;
use std::time::{Duration, Instant};

use super::cgroup::CpuQuota;
use super::env::{format_millicpus, web_concurrency_for};
use super::facts::{Limit, Limits, effective_millicpus, format_bytes};
use crate::server::ServerProfile;
use crate::server::recognise::sets_worker_count;
use crate::signals::spec::Signal;

/// A change of the container's limits between two readings of the resource poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitChange {
    pub old: Limits,
    pub new: Limits,
}

impl LimitChange {
    /// The change from `old` to a new `reading`, if any. A limit the reading could not read keeps
    /// its old value: a file that fails once is no resize. CPU limits compare as fractions of a
    /// CPU (to the thousandth, as `/metrics` shows them), so a new period with the same share is
    /// no change either.
    pub fn between(old: Limits, reading: Limits) -> Option<LimitChange> {
        let new = Limits {
            cpu: known_or(reading.cpu, old.cpu),
            memory_bytes: known_or(reading.memory_bytes, old.memory_bytes),
        };
        let change = LimitChange { old, new };
        (change.cpu_changed() || change.memory_changed()).then_some(change)
    }

    pub fn cpu_changed(&self) -> bool {
        millicpus(self.old.cpu) != millicpus(self.new.cpu)
    }

    pub fn memory_changed(&self) -> bool {
        self.old.memory_bytes != self.new.memory_bytes
    }
}

fn known_or<T>(reading: Limit<T>, old: Limit<T>) -> Limit<T> {
    match reading {
        Limit::Unknown => old,
        known => known,
    }
}

fn millicpus(limit: Limit<CpuQuota>) -> Limit<u64> {
    match limit {
        Limit::Limited(quota) => Limit::Limited(quota.millicpus()),
        Limit::Unlimited => Limit::Unlimited,
        Limit::Unknown => Limit::Unknown,
    }
}

/// `cpu limit 1 → 2, memory limit 256 MiB → 512 MiB`: what changed, old → new.
impl fmt::Display for LimitChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.cpu_changed() {
            let show = |limit| describe(millicpus(limit), format_millicpus);
            parts.push(format!(
                "cpu limit {} → {}",
                show(self.old.cpu),
                show(self.new.cpu)
            ));
        }
        if self.memory_changed() {
            let show = |limit| describe(limit, format_bytes);
            parts.push(format!(
                "memory limit {} → {}",
                show(self.old.memory_bytes),
                show(self.new.memory_bytes)
            ));
        }
        f.write_str(&parts.join(", "))
    }
}

fn describe<T>(limit: Limit<T>, format: impl Fn(T) -> String) -> String {
    match limit {
        Limit::Limited(value) => format(value),
        Limit::Unlimited => "none".to_owned(),
        Limit::Unknown => "unknown".to_owned(),
    }
}

/// floor(2 × CPUs + 1) for a CPU limit on `host_cpus` (the host's CPUs without a limit), as
/// `WEB_CONCURRENCY` was chosen at start; `None` when the CPUs are unknown.
pub fn workers_for(cpu_limit: Limit<CpuQuota>, host_cpus: Option<u32>) -> Option<u32> {
    let millicpus = effective_millicpus(cpu_limit, host_cpus)?;
    Some(u32::try_from(web_concurrency_for(millicpus)).unwrap_or(u32::MAX))
}

/// How often the follower looks at the master while a signal may still be taking effect.
pub const CHECK_PERIOD: Duration = Duration::from_millis(100);

/// The longest the follower waits for a signal's effect before it sends the next one.
pub const SIGNAL_SPACING: Duration = Duration::from_secs(1);

/// How long the follower keeps looking for the master's SIGTTIN and SIGTTOU handlers, once a
/// signal is due, before it leaves the count as it is until the next change: long enough for a
/// server that imports the app before it installs them (gunicorn's `preload_app`).
pub const HANDLER_WAIT: Duration = Duration::from_secs(30);

/// How often the follower looks for those handlers meanwhile.
const HANDLER_CHECK_PERIOD: Duration = Duration::from_secs(1);

/// The server's master, as the driver read it from /proc just before the follower's step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterView {
    pub pid: i32,
    /// Its SigCgt shows both SIGTTIN and SIGTTOU caught.
    pub catches_worker_signals: bool,
    /// Its children still running (its workers, and for uvicorn multiprocessing's resource
    /// tracker): compared before and after a signal, never taken for the worker count.
    pub children: usize,
}

/// What the driver does after a step of the follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowStep {
    /// Nothing now: look again at [`WorkerFollower::next_check`].
    Wait,
    /// Send `signal` to the master `pid` (never to its group): the server then runs `workers`.
    Send {
        pid: i32,
        signal: Signal,
        workers: u32,
    },
    /// A signal is due but the master `pid` does not catch SIGTTIN and SIGTTOU: nothing is sent
    /// and the server keeps `workers`. Reported once per change of the CPU limit.
    NotCaught { pid: i32, workers: u32 },
}

/// A signal sent and not yet seen to take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    signal: Signal,
    sent_at: Instant,
    children_at_send: usize,
}

/// Keeps the server's worker count at floor(2 × CPUs + 1) as the CPU limit moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerFollower {
    /// The formula's value for the current CPU limit.
    target: u32,
    /// The count pyinit's own signals lead to: `WEB_CONCURRENCY` as set at start, one more per
    /// SIGTTIN and one fewer per SIGTTOU.
    asked: u32,
    in_flight: Option<InFlight>,
    /// Since when a due signal waits for the master to catch SIGTTIN and SIGTTOU.
    waiting_for_handlers_since: Option<Instant>,
    /// Whether this change's missing handlers were reported.
    not_caught_reported: bool,
    next_check: Option<Instant>,
}

impl WorkerFollower {
    /// Follows from `workers`, the `WEB_CONCURRENCY` pyinit set at start.
    pub fn new(workers: u32) -> WorkerFollower {
        WorkerFollower {
            target: workers,
            asked: workers,
            in_flight: None,
            waiting_for_handlers_since: None,
            not_caught_reported: false,
            next_check: None,
        }
    }

    /// A new CPU limit gives `target` workers; returns the move it starts (the count pyinit's
    /// signals lead to now, and the target), or `None` when the count stays.
    pub fn set_target(&mut self, target: u32, now: Instant) -> Option<(u32, u32)> {
        let target = target.max(1);
        if target == self.target {
            return None;
        }
        self.target = target;
        self.not_caught_reported = false;
        self.waiting_for_handlers_since = None;
        if target == self.asked {
            self.next_check = None;
            return None;
        }
        self.next_check = Some(self.next_check.map_or(now, |at| at.min(now)));
        Some((self.asked, target))
    }

    /// When the driver must read the master and call [`WorkerFollower::step`]; `None` while the
    /// count is where it should be.
    pub fn next_check(&self) -> Option<Instant> {
        self.next_check
    }

    /// One step, with the master as it is now: `None` once the app has exited or its drain has
    /// begun, which ends the following (a server that shuts down is not resized).
    pub fn step(&mut self, master: Option<MasterView>, now: Instant) -> FollowStep {
        let Some(master) = master else {
            self.target = self.asked;
            self.in_flight = None;
            self.next_check = None;
            return FollowStep::Wait;
        };
        if let Some(flight) = self.in_flight {
            let took_effect = if flight.signal == Signal::SIGTTIN {
                master.children > flight.children_at_send
            } else {
                master.children < flight.children_at_send
            };
            if !took_effect && now < flight.sent_at + SIGNAL_SPACING {
                self.next_check = Some(now + CHECK_PERIOD);
                return FollowStep::Wait;
            }
            self.in_flight = None;
        }
        if self.target == self.asked {
            self.next_check = None;
            return FollowStep::Wait;
        }
        if !master.catches_worker_signals {
            return self.wait_for_handlers(master.pid, now);
        }
        self.waiting_for_handlers_since = None;
        let signal = if self.target > self.asked {
            self.asked += 1;
            Signal::SIGTTIN
        } else {
            self.asked -= 1;
            Signal::SIGTTOU
        };
        self.in_flight = Some(InFlight {
            signal,
            sent_at: now,
            children_at_send: master.children,
        });
        // After the last signal of a move nothing is due; its effect matters only to the pacing
        // of a later move, which looks at it then.
        self.next_check = (self.target != self.asked).then_some(now + CHECK_PERIOD);
        FollowStep::Send {
            pid: master.pid,
            signal,
            workers: self.asked,
        }
    }

    /// A signal is due and the master does not catch SIGTTIN and SIGTTOU (yet): report it once,
    /// look again every second, and after [`HANDLER_WAIT`] leave the count until the next change.
    fn wait_for_handlers(&mut self, pid: i32, now: Instant) -> FollowStep {
        let since = *self.waiting_for_handlers_since.get_or_insert(now);
        if now >= since + HANDLER_WAIT {
            self.target = self.asked;
            self.waiting_for_handlers_since = None;
            self.next_check = None;
            return FollowStep::Wait;
        }
        self.next_check = Some(now + HANDLER_CHECK_PERIOD);
        if self.not_caught_reported {
            return FollowStep::Wait;
        }
        self.not_caught_reported = true;
        FollowStep::NotCaught {
            pid,
            workers: self.asked,
        }
    }
}

/// The worker count pyinit follows as the CPU limit moves: `chosen_workers` (the
/// `WEB_CONCURRENCY` it chose and set, `AppEnvironment::chosen_workers`), when the server's
/// `profile` adds and removes a worker on SIGTTIN and SIGTTOU (gunicorn, uvicorn) and the
/// command does not set the count itself (`-w`/`--workers`, which the server reads instead of
/// `WEB_CONCURRENCY`; the app's environment is `AppEnvironment::chosen_workers`'s to judge);
/// `None` otherwise.
pub fn workers_to_follow(
    chosen_workers: Option<u32>,
    profile: Option<&ServerProfile>,
    command: &[OsString],
) -> Option<u32> {
    let resizes = profile.is_some_and(|profile| profile.resizes_on_ttin);
    let command_sets_workers = sets_worker_count(command.iter().filter_map(|word| word.to_str()));
    chosen_workers.filter(|_| resizes && !command_sets_workers)
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a fake clock starts at some instant; which one does not matter"
)]
mod tests {
    use super::*;

    fn cpus(quota_us: u64) -> Limit<CpuQuota> {
        Limit::Limited(CpuQuota {
            quota_us,
            period_us: 100_000,
        })
    }

    fn limits(cpu: Limit<CpuQuota>, memory_bytes: Limit<u64>) -> Limits {
        Limits { cpu, memory_bytes }
    }

    #[test]
    fn a_change_names_what_moved_old_to_new() {
        let old = limits(cpus(100_000), Limit::Limited(256 << 20));
        assert_eq!(LimitChange::between(old, old), None);
        let change = LimitChange::between(old, limits(cpus(200_000), Limit::Limited(256 << 20)));
        assert_eq!(change.unwrap().to_string(), "cpu limit 1 → 2");
        assert!(change.unwrap().cpu_changed() && !change.unwrap().memory_changed());
        let change = LimitChange::between(old, limits(cpus(50_000), Limit::Limited(512 << 20)));
        assert_eq!(
            change.unwrap().to_string(),
            "cpu limit 1 → 0.5, memory limit 256 MiB → 512 MiB"
        );
        let change = LimitChange::between(old, limits(Limit::Unlimited, Limit::Unlimited));
        assert_eq!(
            change.unwrap().to_string(),
            "cpu limit 1 → none, memory limit 256 MiB → none"
        );
        let change = LimitChange::between(limits(Limit::Unknown, Limit::Unknown), old);
        assert_eq!(
            change.unwrap().to_string(),
            "cpu limit unknown → 1, memory limit unknown → 256 MiB"
        );
    }

    #[test]
    fn an_unreadable_limit_or_the_same_share_is_no_change() {
        let old = limits(cpus(100_000), Limit::Limited(256 << 20));
        assert_eq!(
            LimitChange::between(old, limits(Limit::Unknown, Limit::Unknown)),
            None
        );
        // 200 ms in every 200 ms period is still one CPU.
        let same_share = Limit::Limited(CpuQuota {
            quota_us: 200_000,
            period_us: 200_000,
        });
        assert_eq!(
            LimitChange::between(old, limits(same_share, Limit::Limited(256 << 20))),
            None
        );
        // Only the memory limit moved; the unreadable CPU limit keeps its value.
        let change =
            LimitChange::between(old, limits(Limit::Unknown, Limit::Limited(128 << 20))).unwrap();
        assert_eq!(change.new.cpu, cpus(100_000));
        assert_eq!(change.to_string(), "memory limit 256 MiB → 128 MiB");
    }

    #[test]
    fn workers_follow_the_formula_capped_by_the_host() {
        assert_eq!(workers_for(cpus(100_000), Some(2)), Some(3));
        assert_eq!(workers_for(cpus(200_000), Some(2)), Some(5));
        assert_eq!(workers_for(cpus(50_000), Some(2)), Some(2));
        assert_eq!(workers_for(cpus(10_000), Some(2)), Some(1));
        // More quota than the host has CPUs, or none: the host's CPUs.
        assert_eq!(workers_for(cpus(800_000), Some(2)), Some(5));
        assert_eq!(workers_for(Limit::Unlimited, Some(4)), Some(9));
        assert_eq!(workers_for(Limit::Unlimited, None), None);
    }

    const MASTER: i32 = 7;

    fn master(children: usize) -> Option<MasterView> {
        Some(MasterView {
            pid: MASTER,
            catches_worker_signals: true,
            children,
        })
    }

    fn send(signal: Signal, workers: u32) -> FollowStep {
        FollowStep::Send {
            pid: MASTER,
            signal,
            workers,
        }
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn one_signal_at_a_time_each_once_the_previous_took_effect() {
        let t0 = Instant::now();
        let mut follower = WorkerFollower::new(3);
        assert_eq!(follower.next_check(), None);
        // 1 → 2 CPUs: two SIGTTINs.
        assert_eq!(follower.set_target(5, t0), Some((3, 5)));
        assert_eq!(follower.next_check(), Some(t0));
        assert_eq!(follower.step(master(3), t0), send(Signal::SIGTTIN, 4));
        assert_eq!(follower.next_check(), Some(t0 + CHECK_PERIOD));
        // No new worker yet: the next signal waits.
        assert_eq!(follower.step(master(3), t0 + ms(100)), FollowStep::Wait);
        assert_eq!(follower.next_check(), Some(t0 + ms(200)));
        // The fourth worker is there: the next one goes out.
        assert_eq!(
            follower.step(master(4), t0 + ms(200)),
            send(Signal::SIGTTIN, 5)
        );
        // That was the last: nothing is due until the next change.
        assert_eq!(follower.next_check(), None);
        // 2 → 0.5 CPUs: three SIGTTOUs, each after a worker has left.
        let t1 = t0 + ms(5000);
        assert_eq!(follower.set_target(2, t1), Some((5, 2)));
        assert_eq!(follower.step(master(5), t1), send(Signal::SIGTTOU, 4));
        assert_eq!(
            follower.step(master(4), t1 + ms(100)),
            send(Signal::SIGTTOU, 3)
        );
        assert_eq!(
            follower.step(master(3), t1 + ms(200)),
            send(Signal::SIGTTOU, 2)
        );
        assert_eq!(follower.next_check(), None);
    }

    #[test]
    fn without_an_effect_the_next_signal_waits_the_spacing() {
        // A worker told to stop leaves only when its requests are done.
        let t0 = Instant::now();
        let mut follower = WorkerFollower::new(5);
        follower.set_target(3, t0);
        assert_eq!(follower.step(master(5), t0), send(Signal::SIGTTOU, 4));
        for millis in (100..1000).step_by(100) {
            assert_eq!(follower.step(master(5), t0 + ms(millis)), FollowStep::Wait);
        }
        assert_eq!(
            follower.step(master(5), t0 + SIGNAL_SPACING),
            send(Signal::SIGTTOU, 3)
        );
        // A move that starts while the last signal may still be pending waits for it too.
        let t1 = t0 + SIGNAL_SPACING + ms(10);
        assert_eq!(follower.set_target(4, t1), Some((3, 4)));
        assert_eq!(follower.step(master(5), t1), FollowStep::Wait);
        assert_eq!(
            follower.step(master(4), t1 + ms(100)),
            send(Signal::SIGTTIN, 4)
        );
    }

    #[test]
    fn a_move_reversed_midway_sends_only_the_difference() {
        let t0 = Instant::now();
        let mut follower = WorkerFollower::new(3);
        follower.set_target(5, t0);
        assert_eq!(follower.step(master(3), t0), send(Signal::SIGTTIN, 4));
        // Back to 1 CPU before the second SIGTTIN: one SIGTTOU undoes the first.
        assert_eq!(follower.set_target(3, t0 + ms(50)), Some((4, 3)));
        assert_eq!(
            follower.step(master(4), t0 + ms(100)),
            send(Signal::SIGTTOU, 3)
        );
        assert_eq!(follower.next_check(), None);
        // Back to where pyinit's signals already lead: nothing to send.
        let mut follower = WorkerFollower::new(3);
        follower.set_target(5, t0);
        assert_eq!(follower.set_target(3, t0), None);
        assert_eq!(follower.next_check(), None);
        // The same count for another CPU limit (1 → 1.2 CPUs is 3 workers still).
        assert_eq!(WorkerFollower::new(3).set_target(3, t0), None);
    }

    #[test]
    fn never_below_one_worker() {
        let t0 = Instant::now();
        let mut follower = WorkerFollower::new(2);
        assert_eq!(follower.set_target(0, t0), Some((2, 1)));
        assert_eq!(follower.step(master(2), t0), send(Signal::SIGTTOU, 1));
        assert_eq!(follower.next_check(), None);
    }

    #[test]
    fn nothing_is_sent_to_a_master_that_does_not_catch_them() {
        let t0 = Instant::now();
        let mut follower = WorkerFollower::new(1);
        follower.set_target(3, t0);
        let single_uvicorn = Some(MasterView {
            pid: MASTER,
            catches_worker_signals: false,
            children: 0,
        });
        assert_eq!(
            follower.step(single_uvicorn, t0),
            FollowStep::NotCaught {
                pid: MASTER,
                workers: 1
            }
        );
        // Looked at again every second, reported once, for HANDLER_WAIT.
        assert_eq!(follower.next_check(), Some(t0 + ms(1000)));
        assert_eq!(
            follower.step(single_uvicorn, t0 + ms(1000)),
            FollowStep::Wait
        );
        assert_eq!(
            follower.step(single_uvicorn, t0 + HANDLER_WAIT),
            FollowStep::Wait
        );
        assert_eq!(follower.next_check(), None);
        // The next change looks again, and a master that caught them meanwhile gets them.
        let t1 = t0 + HANDLER_WAIT + ms(1000);
        assert_eq!(follower.set_target(5, t1), Some((1, 5)));
        assert!(matches!(
            follower.step(single_uvicorn, t1),
            FollowStep::NotCaught { workers: 1, .. }
        ));
        assert_eq!(
            follower.step(master(1), t1 + ms(1000)),
            send(Signal::SIGTTIN, 2)
        );
    }

    #[test]
    fn a_server_that_stopped_or_drains_is_not_resized() {
        let t0 = Instant::now();
        let mut follower = WorkerFollower::new(3);
        follower.set_target(5, t0);
        assert_eq!(follower.step(master(3), t0), send(Signal::SIGTTIN, 4));
        assert_eq!(follower.step(None, t0 + ms(100)), FollowStep::Wait);
        assert_eq!(follower.next_check(), None);
        // A later change starts from what was sent.
        assert_eq!(follower.set_target(3, t0 + ms(200)), Some((4, 3)));
        assert_eq!(follower.step(None, t0 + ms(200)), FollowStep::Wait);
        assert_eq!(follower.next_check(), None);
    }

    #[test]
    fn only_a_count_pyinit_chose_for_a_server_that_resizes_on_signals_follows() {
        use crate::server::recognise::{Recognised, recognise};
        let argv = |words: &[&str]| -> Vec<OsString> { words.iter().map(OsString::from).collect() };
        let follows = |chosen, words: &[&str]| {
            let command = argv(words);
            let profile = match recognise(&command) {
                Recognised::Server(profile) => Some(profile),
                Recognised::Development(_) | Recognised::Unknown => None,
            };
            workers_to_follow(chosen, profile, &command)
        };
        for yes in [
            &["gunicorn", "app:app"][..],
            &[
                "/venv/bin/gunicorn",
                "--config",
                "gunicorn.conf.py",
                "app:app",
            ],
            &["uvicorn", "--host", "0.0.0.0", "app:app"],
            &["python3", "-m", "gunicorn", "app:app"],
            &["/usr/bin/python3.11", "-m", "uvicorn", "app:app"],
        ] {
            assert_eq!(follows(Some(3), yes), Some(3), "{yes:?}");
        }
        for no in [
            &["hypercorn", "app:app"][..],
            &["granian", "--interface", "asgi", "app:app"],
            &["python3", "app.py"],
            &["sh", "-c", "gunicorn app:app"],
            // The command line sets the count: WEB_CONCURRENCY is not what the server runs.
            &["gunicorn", "-w", "4", "app:app"],
            &["gunicorn", "-w4", "app:app"],
            &["gunicorn", "--workers=4", "app:app"],
            &["uvicorn", "--workers", "4", "app:app"],
        ] {
            assert_eq!(follows(Some(3), no), None, "{no:?}");
        }
        // No count of pyinit's own: --web-concurrency N or off, or the app's WEB_CONCURRENCY.
        assert_eq!(follows(None, &["gunicorn", "app:app"]), None);
        // --server none: no profile.
        assert_eq!(workers_to_follow(Some(3), None, &argv(&["gunicorn"])), None);
    }
}
