//! In-place resize (Kubernetes' KEP-1287): what a change of the container's limits means. Pure:
//! the driver reads the files (`supervisor/resize.rs`).
//!
//! The kubelet changes a running container's limits through the runtime, which rewrites its
//! cgroup in place and tells the container nothing (KEP-1287 README, "Container Runtime
//! Interface (CRI) changes": `UpdateContainerResources`). pyinit reads the limits again on its
//! resource poll; [`LimitChange`] is one change, named for the log.

use std::fmt;

use super::cgroup::CpuQuota;
use super::env::format_millicpus;
use super::facts::{Limit, Limits, format_bytes};

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

#[cfg(test)]
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
}
