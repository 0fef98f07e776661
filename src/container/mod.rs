//! The container's resource facts: its CPU and memory limits, where its cgroups are, and how many
//! CPUs the host lets it run on, read at start under an injected root path (`/` in production, a
//! fixture tree in tests).
//!
//! This module owns reading the files and the start-up log of what was found (`StartupReport`);
//! `facts.rs` owns what was found (`ContainerFacts`), `cgroup.rs` the files' formats, `env.rs`
//! the environment the app gets from the facts, `checks.rs` the start-up warnings, `oom.rs`
//! OOM detection, `watch.rs` the limit files kept open to read them again while the app runs,
//! and `resize.rs` what a change of them means. A file that cannot be read or parsed is not an error: the fact is just unknown,
//! logged at debug. What to do about a fact (warn, size the app) is decided elsewhere.

pub mod cgroup;
pub mod checks;
pub mod env;
pub mod facts;
pub mod oom;
pub mod resize;
pub mod watch;

use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use crate::multiproc::MultiprocReport;
use cgroup::{CgroupLocation, CpuQuota};
use env::AppEnvironment;
use facts::{CgroupDir, ContainerFacts};
use watch::{KeptFile, LimitFiles};

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
    let cpu_cgroup = locate("cpu").map(|location| cgroup_dir(root, &location));
    let memory_cgroup = locate("memory").map(|location| cgroup_dir(root, &location));
    // Read as the resource poll reads them later, so that a resize compares like with like.
    let limits = LimitFiles::open(cpu_cgroup.as_ref(), memory_cgroup.as_ref()).read();
    let host_cpus = read_text(&root.join("proc/self/status")).and_then(|text| {
        cgroup::parse_cpus_allowed(&text)
            .map_err(|failure| debug!(path = "/proc/self/status", "{failure}"))
            .ok()
    });
    ContainerFacts {
        cpu_limit: limits.cpu,
        memory_limit_bytes: limits.memory_bytes,
        host_cpus,
        cpu_cgroup,
        memory_cgroup,
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

/// The cgroup's memory use now, for the metrics; `None` when it cannot be read.
pub fn read_memory_usage(file: &KeptFile) -> Option<u64> {
    file.read(cgroup::parse_bytes)?
        .map_err(|failure| debug!("memory use: {failure}"))
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
        levels: (location.dirs_to_mount_point().iter())
            .map(|dir| under_root(root, dir))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::cgroup::CgroupVersion;
    use super::facts::Limit;
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
        assert_eq!(memory.levels, [root.join("sys/fs/cgroup")]);
        assert_eq!(
            watch::PolledFiles::open(&facts)
                .memory_usage
                .as_ref()
                .and_then(read_memory_usage),
            Some(52428800)
        );
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
        let memory = facts.memory_cgroup.unwrap();
        let cgroup = fixture("v2-nested").join("sys/fs/cgroup");
        assert_eq!(memory.path, cgroup.join("kubepods/pod1/ctr"));
        assert_eq!(
            memory.levels,
            [
                cgroup.join("kubepods/pod1/ctr"),
                cgroup.join("kubepods/pod1"),
                cgroup.join("kubepods"),
                cgroup,
            ]
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
        assert_eq!(
            watch::PolledFiles::open(&facts)
                .memory_usage
                .as_ref()
                .and_then(read_memory_usage),
            Some(1048576)
        );
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
        assert_eq!(
            watch::PolledFiles::open(&facts)
                .memory_usage
                .as_ref()
                .and_then(read_memory_usage),
            None
        );
        // Nothing at all under the root.
        let facts = read_facts(&fixture("does-not-exist"));
        assert_eq!(facts.cpu_limit, Limit::Unknown);
        assert_eq!(facts.memory_cgroup, None);
        assert_eq!(
            watch::PolledFiles::open(&facts)
                .memory_usage
                .as_ref()
                .and_then(read_memory_usage),
            None
        );
    }
}
