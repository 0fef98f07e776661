//! The driver's resource poll, and the in-place resize it follows.
//!
//! Once a second (with the OOM monitor's poll) the driver reads the cgroup's memory use and,
//! through the limit files kept open since start (`container::watch`), the container's limits.
//! A change of the limits (Kubernetes resizes a running pod in place, KEP-1287) is logged once,
//! old → new, handed to the OOM monitor, whose reports name the limit in force, and to
//! `/metrics` through `Event::Resources`, which the supervisor only records.
//!
//! The poll adds no wake-up of its own: the limit files are read on the tick that reads the
//! memory use.

use std::time::Duration;

use tracing::info;

use super::Event;
use crate::container::cgroup::CpuQuota;
use crate::container::facts::{ContainerFacts, Limits};
use crate::container::oom::{self, OomMonitor};
use crate::container::resize::LimitChange;
use crate::container::watch::LimitFiles;
use crate::container::{self};
use crate::status::Resources;

/// What the resource poll reads.
#[derive(Debug)]
pub struct ResourcePoll {
    facts: ContainerFacts,
    limit_files: LimitFiles,
    /// The limits as last read (a limit that could not be read keeps its last value).
    limits: Limits,
}

impl ResourcePoll {
    pub fn new(facts: ContainerFacts, limit_files: LimitFiles) -> ResourcePoll {
        ResourcePoll {
            limits: facts.limits(),
            facts,
            limit_files,
        }
    }

    /// How often to poll; `None` when there is nothing to read.
    pub fn period(&self, oom_monitor: &OomMonitor) -> Option<Duration> {
        let readable = oom_monitor.has_counter()
            || self.facts.memory_cgroup.is_some()
            || !self.limit_files.is_empty();
        readable.then_some(oom::POLL_PERIOD)
    }

    /// One poll: the limits (a change logged, and passed on), the memory use and the OOM kills
    /// so far, as the event the supervisor records. One small cgroup file per value, read on
    /// the runtime's thread: the kernel answers from its own counters, without waiting on the
    /// app or on a disk.
    pub fn poll(&mut self, oom_monitor: &mut OomMonitor) -> Event {
        if let Some(change) = LimitChange::between(self.limits, self.limit_files.read()) {
            self.limits = change.new;
            oom_monitor.set_memory_limit(change.new.memory_bytes);
            info!(
                cpu_limit_millicpus = change.new.cpu.limited().map(CpuQuota::millicpus),
                memory_limit_bytes = change.new.memory_bytes.limited(),
                "container limits changed: {change}"
            );
        }
        Event::Resources(Resources {
            cpu_limit_millicpus: self.limits.cpu.limited().map(CpuQuota::millicpus),
            memory_limit_bytes: self.limits.memory_bytes.limited(),
            memory_usage_bytes: container::read_memory_usage(&self.facts),
            oom_kills: (oom_monitor.has_counter()).then(|| oom_monitor.kill_count().get()),
        })
    }
}
