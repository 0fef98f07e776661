//! The driver's resource poll, and the in-place resize it follows.
//!
//! Once a second (with the OOM monitor's poll) the driver reads the container's limits and its
//! cgroup's memory use, through files kept open since start (`container::watch`): the poll walks
//! no path.
//! A change of the limits (Kubernetes resizes a running pod in place, KEP-1287) is logged once,
//! old → new, handed to the OOM monitor, whose reports name the limit in force, and to
//! `/metrics` through `Event::Resources`, which the supervisor only records. When pyinit chose
//! the app's worker count itself, the follower (`container::resize`, pure) decides the SIGTTIN
//! and SIGTTOU that keep it at floor(2 × CPUs + 1): this file reads the master's /proc entries
//! for it just before each step, sends what it decides to the master alone, and logs.
//!
//! The poll adds no wake-up of its own: the limit files are read on the tick that reads the
//! memory use. The follower's checks are timed only while a move of the worker count is under
//! way.

use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::event::Event;
use crate::container::cgroup::CpuQuota;
use crate::container::facts::{ContainerFacts, Limits};
use crate::container::oom::{self, OomMonitor};
use crate::container::resize::{FollowStep, LimitChange, MasterView, WorkerFollower, workers_for};
use crate::container::watch::PolledFiles;
use crate::container::{self};
use crate::signals::spec::{ForwardTarget, Signal, short_name};
use crate::signals::{self};
use crate::status::Resources;

/// The signals a master must catch before the follower sends it either.
const WORKER_SIGNALS: [Signal; 2] = [Signal::SIGTTIN, Signal::SIGTTOU];

/// What the resource poll reads, and the follower of the worker count.
#[derive(Debug)]
pub struct ResourcePoll {
    /// For the worker count: the CPUs without a CPU limit.
    host_cpus: Option<u32>,
    files: PolledFiles,
    /// The limits as last read (a limit that could not be read keeps its last value).
    limits: Limits,
    /// `Some` when pyinit chose the worker count and the server adjusts it on signals.
    follower: Option<WorkerFollower>,
}

impl ResourcePoll {
    /// `workers_to_follow`: the `WEB_CONCURRENCY` pyinit chose and set for a server that adds
    /// and removes a worker on SIGTTIN and SIGTTOU; `None` leaves the count alone.
    pub fn new(
        facts: &ContainerFacts,
        files: PolledFiles,
        workers_to_follow: Option<u32>,
    ) -> ResourcePoll {
        if let Some(workers) = workers_to_follow {
            debug!(
                workers,
                "the app's worker count follows the cpu limit (SIGTTIN and SIGTTOU to its master)"
            );
        }
        ResourcePoll {
            limits: facts.limits(),
            host_cpus: facts.host_cpus,
            files,
            follower: workers_to_follow.map(WorkerFollower::new),
        }
    }

    /// How often to poll; `None` when there is nothing to read.
    pub fn period(&self, oom_monitor: &OomMonitor) -> Option<Duration> {
        let readable = oom_monitor.has_counter() || !self.files.is_empty();
        readable.then_some(oom::POLL_PERIOD)
    }

    /// One poll: the limits (a change logged, and passed on), the memory use and the OOM kills
    /// so far, as the event the supervisor records. One small cgroup file per value, read on
    /// the runtime's thread: the kernel answers from its own counters, without waiting on the
    /// app or on a disk.
    pub fn poll(&mut self, oom_monitor: &mut OomMonitor, now: Instant) -> Event {
        if let Some(change) = LimitChange::between(self.limits, self.files.limits.read()) {
            self.limits = change.new;
            oom_monitor.set_memory_limit(change.new.memory_bytes);
            let workers_move = (self.follower.as_mut())
                .filter(|_| change.cpu_changed())
                .and_then(|follower| {
                    let target = workers_for(change.new.cpu, self.host_cpus)?;
                    follower.set_target(target, now)
                });
            log_limit_change(change, workers_move);
        }
        Event::Resources(Resources {
            cpu_limit_millicpus: self.limits.cpu.limited().map(CpuQuota::millicpus),
            memory_limit_bytes: self.limits.memory_bytes.limited(),
            memory_usage_bytes: (self.files.memory_usage.as_ref())
                .and_then(container::read_memory_usage),
            oom_kills: (oom_monitor.has_counter()).then(|| oom_monitor.kill_count().get()),
        })
    }

    /// When [`ResourcePoll::follow_workers`] is due; `None` while the worker count is where it
    /// should be (or is not followed).
    pub fn next_worker_check(&self) -> Option<Instant> {
        self.follower.as_ref().and_then(WorkerFollower::next_check)
    }

    /// One step of the worker count's move: `app_pid` is the app while it runs and no drain has
    /// begun (`None` ends the move). The master's SigCgt is read just before any signal goes
    /// out: a SIGTTIN to a process that does not catch it would stop it.
    pub fn follow_workers(&mut self, app_pid: Option<i32>, now: Instant) {
        let Some(follower) = &mut self.follower else {
            return;
        };
        let master = app_pid.map(|pid| MasterView {
            pid,
            catches_worker_signals: signals::catches_signals(pid, &WORKER_SIGNALS),
            children: signals::count_running_children(pid),
        });
        match follower.step(master, now) {
            FollowStep::Wait => {}
            FollowStep::Send {
                pid,
                signal,
                workers,
            } => {
                debug!(
                    pid,
                    signal = short_name(signal),
                    workers,
                    "worker count follows the cpu limit: signal sent to the app's master"
                );
                if let Err(failure) = signals::forward_signal(pid, ForwardTarget::Child, signal) {
                    error!(pid, signal = short_name(signal), "{failure}");
                }
            }
            FollowStep::NotCaught { pid, workers } => warn!(
                pid,
                workers,
                "the app (pid {pid}) does not catch SIGTTIN and SIGTTOU (yet), so pyinit sends \
                 it neither: its worker count stays at {workers} (gunicorn and uvicorn's \
                 multiprocess supervisor catch them)"
            ),
        }
    }
}

/// The one line of a change, with the move of the worker count it starts.
fn log_limit_change(change: LimitChange, workers_move: Option<(u32, u32)>) {
    let cpu_limit_millicpus = change.new.cpu.limited().map(CpuQuota::millicpus);
    let memory_limit_bytes = change.new.memory_bytes.limited();
    match workers_move {
        Some((from, to)) => {
            let signal = if to > from { "SIGTTIN" } else { "SIGTTOU" };
            info!(
                cpu_limit_millicpus,
                memory_limit_bytes,
                workers = to,
                "container limits changed: {change}; the app's workers follow: {from} → {to} \
                 ({signal} to its master, one at a time)"
            );
        }
        None => info!(
            cpu_limit_millicpus,
            memory_limit_bytes, "container limits changed: {change}"
        ),
    }
}
