//! What pyinit knows about the container's resources: its CPU and memory limits as far as they
//! could be read, where its cgroups are, and how many CPUs the host lets it run on. Pure: the
//! facts are read under an injected root by `container/mod.rs` (`read_facts`).

use std::fmt;
use std::path::PathBuf;

use super::cgroup::{CgroupVersion, CpuQuota};
use super::env::format_millicpus;

/// A limit as pyinit could read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit<T> {
    Limited(T),
    /// Readable, and no limit is set at any level pyinit can see.
    Unlimited,
    /// No file could be read: pyinit does not know.
    Unknown,
}

impl<T: Copy> Limit<T> {
    pub fn limited(self) -> Option<T> {
        match self {
            Limit::Limited(value) => Some(value),
            Limit::Unlimited | Limit::Unknown => None,
        }
    }
}

/// The container's CPU and memory limits, each the tightest from the process's cgroup up to the
/// mount point: what an in-place resize changes while the app runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub cpu: Limit<CpuQuota>,
    pub memory_bytes: Limit<u64>,
}

/// One controller's cgroup directory, as pyinit can reach it (under the injected root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupDir {
    pub version: CgroupVersion,
    pub path: PathBuf,
    /// `path` and its parents up to the mount point, leaf first: a limit set on any of them
    /// applies, so the limits are read at every level.
    pub levels: Vec<PathBuf>,
}

/// What pyinit knows about the container's resources; plain data, cheap to clone, so the metrics
/// can show the limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerFacts {
    /// The CFS quota, the smallest one from the process's cgroup up to the mount point.
    pub cpu_limit: Limit<CpuQuota>,
    /// The memory limit in bytes, likewise the smallest on the way up.
    pub memory_limit_bytes: Limit<u64>,
    /// CPUs in this process's affinity mask (cpusets narrow it; CFS quotas do not).
    pub host_cpus: Option<u32>,
    pub cpu_cgroup: Option<CgroupDir>,
    pub memory_cgroup: Option<CgroupDir>,
}

impl ContainerFacts {
    /// The CPUs the app may use: the quota as a fraction, never more than the host lets it run
    /// on; the host's CPUs when there is no quota. In thousandths of a CPU.
    pub fn effective_millicpus(&self) -> Option<u64> {
        effective_millicpus(self.cpu_limit, self.host_cpus)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            cpu: self.cpu_limit,
            memory_bytes: self.memory_limit_bytes,
        }
    }
}

/// The CPUs a process may use under `cpu_limit` on `host_cpus`, in thousandths of a CPU: the
/// quota, never more than the host's CPUs; the host's CPUs without a quota.
pub fn effective_millicpus(cpu_limit: Limit<CpuQuota>, host_cpus: Option<u32>) -> Option<u64> {
    let host = host_cpus.map(|cpus| u64::from(cpus) * 1000);
    match (cpu_limit.limited().map(CpuQuota::millicpus), host) {
        (Some(limit), Some(host)) => Some(limit.min(host)),
        (Some(limit), None) => Some(limit),
        (None, host) => host,
    }
}

impl fmt::Display for ContainerFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.memory_cgroup.as_ref().or(self.cpu_cgroup.as_ref()) {
            Some(dir) => write!(f, "cgroup {}, ", dir.version)?,
            None => f.write_str("no cgroup found, ")?,
        }
        match self.cpu_limit {
            Limit::Limited(quota) => {
                write!(f, "cpu limit {}", format_millicpus(quota.millicpus()))?
            }
            Limit::Unlimited => f.write_str("no cpu limit")?,
            Limit::Unknown => f.write_str("cpu limit unknown")?,
        }
        match self.memory_limit_bytes {
            Limit::Limited(bytes) => write!(f, ", memory limit {}", format_bytes(bytes))?,
            Limit::Unlimited => f.write_str(", no memory limit")?,
            Limit::Unknown => f.write_str(", memory limit unknown")?,
        }
        match self.host_cpus {
            Some(cpus) => write!(f, ", {cpus} host cpus"),
            None => f.write_str(", host cpus unknown"),
        }
    }
}

/// `268435456` → `256 MiB`; exact binary units when they fit, bytes otherwise.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    if bytes >= 1 << 20 {
        // Not a whole number of MiB: one decimal is enough for a log line.
        let tenths = bytes * 10 / (1 << 20);
        return format!("{}.{} MiB", tenths / 10, tenths % 10);
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(quota_us: u64, period_us: u64) -> Limit<CpuQuota> {
        Limit::Limited(CpuQuota {
            quota_us,
            period_us,
        })
    }

    #[test]
    fn quota_above_the_host_cpus_is_capped_for_sizing() {
        let facts = ContainerFacts {
            cpu_limit: quota(400000, 100000),
            memory_limit_bytes: Limit::Unknown,
            host_cpus: Some(2),
            cpu_cgroup: None,
            memory_cgroup: None,
        };
        assert_eq!(facts.effective_millicpus(), Some(2000));
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(format_bytes(268435456), "256 MiB");
        assert_eq!(format_bytes(64 << 20), "64 MiB");
        assert_eq!(format_bytes(2 << 30), "2 GiB");
        assert_eq!(format_bytes(1536), "1536 bytes");
        assert_eq!(format_bytes(100_000_000), "95.3 MiB");
        assert_eq!(format_bytes(4096), "4 KiB");
    }
}
