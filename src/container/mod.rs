//! The container's resource facts: its CPU and memory limits, where its cgroups are, and how many
//! CPUs the host lets it run on, read once at start under an injected root path (`/` in
//! production, a fixture tree in tests).
//!
//! This module owns reading the files and the start-up log of what was found (`StartupReport`);
//! `facts.rs` owns what was found (`ContainerFacts`), `cgroup.rs` the files' formats, `env.rs`
//! the environment the app gets from the facts, `checks.rs` the start-up warnings, and `oom.rs`
//! OOM detection. A file that cannot be read or parsed is not an error: the fact is just unknown,
//! logged at debug. What to do about a fact (warn, size the app) is decided elsewhere.

pub mod cgroup;
pub mod checks;
pub mod env;
pub mod facts;
pub mod oom;

use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use crate::multiproc::MultiprocReport;
use cgroup::{CgroupLocation, CgroupVersion, CpuQuota};
use env::AppEnvironment;
use facts::{CgroupDir, ContainerFacts, Limit};

/// Reads every fact under `root` ("/" in production).
pub fn read_facts(root: &Path) -> ContainerFacts {
    let memberships = read_text(&root.join("proc/self/cgroup"))
        .map(|text| cgroup::parse_proc_cgroup(&text))
        .unwrap_or_default();
    let mounts = read_text(&root.join("proc/self/mountinfo"))
        .map(|text| cgroup::parse_mountinfo(&text))
        .unwrap_or_default();
    let locate = |controller: &str| {
        let location = cgroup::locate_controller(controller, &memberships, &mounts);
        if location.is_none() {
            debug!(controller, "no cgroup found for the controller");
        }
        location
    };
    let cpu_location = locate("cpu");
    let memory_location = locate("memory");
    let cpu_limit = cpu_location
        .as_ref()
        .map_or(Limit::Unknown, |location| read_cpu_limit(root, location));
    let memory_limit_bytes = memory_location
        .as_ref()
        .map_or(Limit::Unknown, |location| read_memory_limit(root, location));
    let host_cpus = read_text(&root.join("proc/self/status")).and_then(|text| {
        cgroup::parse_cpus_allowed(&text)
            .map_err(|failure| debug!(path = "/proc/self/status", "{failure}"))
            .ok()
    });
    ContainerFacts {
        cpu_limit,
        memory_limit_bytes,
        host_cpus,
        cpu_cgroup: cpu_location.map(|location| cgroup_dir(root, &location)),
        memory_cgroup: memory_location.map(|location| cgroup_dir(root, &location)),
    }
}

/// What set-up learnt about the container, logged once the app has started (so that a set-up
/// failure stays a single line on stderr).
#[derive(Debug)]
pub struct StartupReport {
    pub facts: ContainerFacts,
    pub app_env: AppEnvironment,
    /// One line each, from `checks`.
    pub warnings: Vec<String>,
    /// What was done to prometheus_client's multiprocess directory, if the app has one.
    pub multiproc_dir: Option<MultiprocReport>,
    /// The server whose profile applies, and what the profile changed
    /// (`server::ServerSetup::describe`).
    pub server: Option<(&'static str, String)>,
}

impl StartupReport {
    pub fn log(&self) {
        let facts = &self.facts;
        info!(
            cpu_limit_millicpus = facts.cpu_limit.limited().map(CpuQuota::millicpus),
            memory_limit_bytes = facts.memory_limit_bytes.limited(),
            host_cpus = facts.host_cpus,
            "container: {facts}"
        );
        for warning in &self.warnings {
            warn!("{warning}");
        }
        if let Some((server, changes)) = &self.server {
            info!(server, "server profile: {changes}");
        }
        if !self.app_env.set.is_empty() {
            info!("app environment: {}", self.app_env.describe());
        }
        for name in &self.app_env.kept {
            info!("{name} is already set: the app keeps its own value");
        }
        if let Some(multiproc_dir) = &self.multiproc_dir {
            multiproc_dir.log();
        }
    }
}

/// The cgroup's current memory use (`memory.current`, v1 `memory.usage_in_bytes`), for the metrics;
/// `None` when it cannot be read.
pub fn read_memory_usage(facts: &ContainerFacts) -> Option<u64> {
    let dir = facts.memory_cgroup.as_ref()?;
    let file = match dir.version {
        CgroupVersion::V1 => "memory.usage_in_bytes",
        CgroupVersion::V2 => "memory.current",
    };
    let path = dir.path.join(file);
    let text = read_text(&path)?;
    cgroup::parse_bytes(&text)
        .map_err(|failure| debug!(path = %path.display(), "{failure}"))
        .ok()
}

/// A file's text, or `None` (logged at debug) when it cannot be read.
fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .map_err(|failure| debug!(path = %path.display(), "cannot read: {failure}"))
        .ok()
}

/// `/sys/fs/cgroup/...` as seen by the process, under the injected root.
fn under_root(root: &Path, absolute: &str) -> PathBuf {
    root.join(absolute.trim_start_matches('/'))
}

fn cgroup_dir(root: &Path, location: &CgroupLocation) -> CgroupDir {
    CgroupDir {
        version: location.version,
        path: under_root(root, &location.dir),
    }
}

/// Folds one limit per directory, leaf first, into the tightest: unknown only when no level could
/// be read.
fn tightest<T: Copy>(
    levels: impl Iterator<Item = Option<Option<T>>>,
    tighter: impl Fn(T, T) -> T,
) -> Limit<T> {
    let mut limit = Limit::Unknown;
    for level in levels.flatten() {
        limit = match (limit, level) {
            (Limit::Limited(current), Some(value)) => Limit::Limited(tighter(current, value)),
            (Limit::Limited(current), None) => Limit::Limited(current),
            (_, Some(value)) => Limit::Limited(value),
            (_, None) => Limit::Unlimited,
        };
    }
    limit
}

fn read_cpu_limit(root: &Path, location: &CgroupLocation) -> Limit<CpuQuota> {
    let levels = location.dirs_to_mount_point().into_iter().map(|dir| {
        let dir = under_root(root, &dir);
        let parsed = match location.version {
            CgroupVersion::V2 => {
                let text = read_text(&dir.join("cpu.max"))?;
                cgroup::parse_cpu_max(&text)
            }
            CgroupVersion::V1 => {
                let quota = read_text(&dir.join("cpu.cfs_quota_us"))?;
                let period = read_text(&dir.join("cpu.cfs_period_us")).unwrap_or_default();
                cgroup::parse_cfs_quota(&quota, &period)
            }
        };
        parsed
            .map_err(|failure| debug!(dir = %dir.display(), "cpu limit: {failure}"))
            .ok()
    });
    tightest(levels, CpuQuota::min)
}

fn read_memory_limit(root: &Path, location: &CgroupLocation) -> Limit<u64> {
    let file = match location.version {
        CgroupVersion::V2 => "memory.max",
        CgroupVersion::V1 => "memory.limit_in_bytes",
    };
    let levels = location.dirs_to_mount_point().into_iter().map(|dir| {
        let path = under_root(root, &dir).join(file);
        let text = read_text(&path)?;
        cgroup::parse_memory_limit(&text)
            .map_err(|failure| debug!(path = %path.display(), "{failure}"))
            .ok()
    });
    tightest(levels, u64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cgroup")
            .join(name)
    }

    fn quota(quota_us: u64, period_us: u64) -> Limit<CpuQuota> {
        Limit::Limited(CpuQuota {
            quota_us,
            period_us,
        })
    }

    #[test]
    fn v2_limited() {
        let root = fixture("v2-limited");
        let facts = read_facts(&root);
        assert_eq!(facts.cpu_limit, quota(150000, 100000));
        assert_eq!(facts.memory_limit_bytes, Limit::Limited(268435456));
        assert_eq!(facts.host_cpus, Some(4));
        assert_eq!(facts.effective_millicpus(), Some(1500));
        let memory = facts.memory_cgroup.clone().unwrap();
        assert_eq!(memory.version, CgroupVersion::V2);
        assert_eq!(memory.path, root.join("sys/fs/cgroup"));
        assert_eq!(read_memory_usage(&facts), Some(52428800));
        assert_eq!(
            facts.to_string(),
            "cgroup v2, cpu limit 1.5, memory limit 256 MiB, 4 host cpus"
        );
    }

    #[test]
    fn v2_unlimited_with_max_and_period() {
        let facts = read_facts(&fixture("v2-unlimited"));
        // cpu.max says `max 100000`, memory.max says `max`.
        assert_eq!(facts.cpu_limit, Limit::Unlimited);
        assert_eq!(facts.memory_limit_bytes, Limit::Unlimited);
        assert_eq!(facts.host_cpus, Some(2));
        assert_eq!(facts.effective_millicpus(), Some(2000));
    }

    #[test]
    fn v2_nested_takes_the_tightest_level() {
        // The pod's cgroup limits memory to 512 MiB and CPU to 0.5; the container's own cgroup
        // limits memory to 1 GiB and CPU to 2: the pod's limits win.
        let facts = read_facts(&fixture("v2-nested"));
        assert_eq!(facts.cpu_limit, quota(50000, 100000));
        assert_eq!(facts.memory_limit_bytes, Limit::Limited(512 << 20));
        assert_eq!(
            facts.memory_cgroup.unwrap().path,
            fixture("v2-nested").join("sys/fs/cgroup/kubepods/pod1/ctr")
        );
    }

    #[test]
    fn v1_limited_without_cgroup_namespace() {
        let root = fixture("v1-limited");
        let facts = read_facts(&root);
        assert_eq!(facts.cpu_limit, quota(50000, 100000));
        assert_eq!(facts.memory_limit_bytes, Limit::Limited(64 << 20));
        assert_eq!(facts.host_cpus, Some(8));
        assert_eq!(facts.effective_millicpus(), Some(500));
        let cpu = facts.cpu_cgroup.clone().unwrap();
        assert_eq!(cpu.version, CgroupVersion::V1);
        assert_eq!(cpu.path, root.join("sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(read_memory_usage(&facts), Some(1048576));
    }

    #[test]
    fn v1_unlimited_host_values() {
        // -1 and the page-rounded LONG_MAX, as on a v1 host with no limits.
        let facts = read_facts(&fixture("v1-unlimited"));
        assert_eq!(facts.cpu_limit, Limit::Unlimited);
        assert_eq!(facts.memory_limit_bytes, Limit::Unlimited);
        assert_eq!(facts.effective_millicpus(), Some(2000));
        assert_eq!(
            facts.to_string(),
            "cgroup v1, no cpu limit, no memory limit, 2 host cpus"
        );
    }

    #[test]
    fn missing_files_are_unknown() {
        // The cgroups are found, but the limit files are missing or garbled, and so is
        // /proc/self/status.
        let facts = read_facts(&fixture("v2-missing"));
        assert_eq!(facts.cpu_limit, Limit::Unknown);
        assert_eq!(facts.memory_limit_bytes, Limit::Unknown);
        assert_eq!(facts.host_cpus, None);
        assert_eq!(facts.effective_millicpus(), None);
        assert!(facts.memory_cgroup.is_some());
        assert_eq!(read_memory_usage(&facts), None);
        // Nothing at all under the root.
        let facts = read_facts(&fixture("does-not-exist"));
        assert_eq!(facts.cpu_limit, Limit::Unknown);
        assert_eq!(facts.memory_cgroup, None);
        assert_eq!(read_memory_usage(&facts), None);
    }
}
