//! The cgroup files pyinit reads again while the app runs, opened once and read with one
//! `pread` each: the limit files of every level from the process's cgroup up to the mount point
//! ([`LimitFiles`]), and any other small file the resource poll reads ([`KeptFile`]: the memory
//! use, the OOM-kill counter).
//!
//! A pod's limits can change while its containers run (in-place resize): the runtime rewrites
//! the cgroup's files and tells the container nothing, so pyinit reads them again on its 1 s
//! resource poll. Kept open, a file costs one `pread` at offset 0 (about 0.6 µs here, for a
//! cgroup v1 or v2 file: the kernel formats the value again on every read from the start),
//! where opening it by path each time costs about 6 µs: the path walk and the open. So the poll
//! walks no path. The descriptors are opened at start, while pyinit may still be root, and are
//! close-on-exec, so neither the app nor a probe inherits them. The formats are `cgroup.rs`'s;
//! this file only reads. A level whose file cannot be opened at start is left out; one that
//! cannot be read or parsed later counts as unreadable for that read, as at start.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tracing::debug;

use super::cgroup::{self, CgroupVersion, CpuQuota};
use super::facts::{CgroupDir, ContainerFacts, Limit, Limits};

/// Every file the resource poll reads, besides the OOM-kill counter (`oom.rs` keeps its own).
#[derive(Debug, Default)]
pub struct PolledFiles {
    pub limits: LimitFiles,
    /// `memory.current` (v1 `memory.usage_in_bytes`).
    pub memory_usage: Option<KeptFile>,
}

impl PolledFiles {
    /// Opens them in the cgroups `read_facts` found.
    pub fn open(facts: &ContainerFacts) -> PolledFiles {
        let memory_usage = facts.memory_cgroup.as_ref().and_then(|dir| {
            KeptFile::open(&dir.path.join(match dir.version {
                CgroupVersion::V1 => "memory.usage_in_bytes",
                CgroupVersion::V2 => "memory.current",
            }))
        });
        PolledFiles {
            limits: LimitFiles::open(facts.cpu_cgroup.as_ref(), facts.memory_cgroup.as_ref()),
            memory_usage,
        }
    }

    /// Whether there is any file to read.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.memory_usage.is_none()
    }
}

/// The limit files of both controllers, open.
#[derive(Debug, Default)]
pub struct LimitFiles {
    /// One entry per level, leaf first.
    cpu: Vec<CpuFiles>,
    /// `memory.max` (v2) or `memory.limit_in_bytes` (v1), one per level, leaf first.
    memory: Vec<KeptFile>,
}

/// One level's CPU limit files.
#[derive(Debug)]
enum CpuFiles {
    /// v2 `cpu.max`: the quota and the period in one file.
    Max(KeptFile),
    /// v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`; a quota of -1 needs no period.
    Cfs {
        quota: KeptFile,
        period: Option<KeptFile>,
    },
}

impl LimitFiles {
    /// Opens the limit files at every level of the two cgroups, as `read_facts` found them.
    pub fn open(cpu_cgroup: Option<&CgroupDir>, memory_cgroup: Option<&CgroupDir>) -> LimitFiles {
        let cpu = cpu_cgroup.map_or_else(Vec::new, |dir| {
            let open_level = |level: &Path| match dir.version {
                CgroupVersion::V2 => KeptFile::open(&level.join("cpu.max")).map(CpuFiles::Max),
                CgroupVersion::V1 => {
                    KeptFile::open(&level.join("cpu.cfs_quota_us")).map(|quota| CpuFiles::Cfs {
                        quota,
                        period: KeptFile::open(&level.join("cpu.cfs_period_us")),
                    })
                }
            };
            dir.levels
                .iter()
                .filter_map(|level| open_level(level))
                .collect()
        });
        let memory = memory_cgroup.map_or_else(Vec::new, |dir| {
            let file = match dir.version {
                CgroupVersion::V2 => "memory.max",
                CgroupVersion::V1 => "memory.limit_in_bytes",
            };
            (dir.levels.iter())
                .filter_map(|level| KeptFile::open(&level.join(file)))
                .collect()
        });
        LimitFiles { cpu, memory }
    }

    /// Whether there is any file to read: without one, the limits stay unknown.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_empty() && self.memory.is_empty()
    }

    /// The limits now: each the tightest of the levels that could be read.
    pub fn read(&self) -> Limits {
        Limits {
            cpu: tightest(self.cpu.iter().map(read_cpu_level), CpuQuota::min),
            memory_bytes: tightest(self.memory.iter().map(read_memory_level), u64::min),
        }
    }
}

/// One level's CPU limit: `None` when unreadable, `Some(None)` when it sets none.
fn read_cpu_level(files: &CpuFiles) -> Option<Option<CpuQuota>> {
    let parsed = match files {
        CpuFiles::Max(file) => file.read(cgroup::parse_cpu_max)?,
        CpuFiles::Cfs { quota, period } => quota.read(|quota_text| {
            // An unreadable period is no period: enough for a quota of -1.
            let with_period = |period_text: &str| cgroup::parse_cfs_quota(quota_text, period_text);
            (period.as_ref())
                .and_then(|period| period.read(with_period))
                .unwrap_or_else(|| with_period(""))
        })?,
    };
    parsed
        .map_err(|failure| debug!("cpu limit: {failure}"))
        .ok()
}

/// One level's memory limit: `None` when unreadable, `Some(None)` when it sets none.
fn read_memory_level(file: &KeptFile) -> Option<Option<u64>> {
    file.read(cgroup::parse_memory_limit)?
        .map_err(|failure| debug!("memory limit: {failure}"))
        .ok()
}

/// Folds one limit per level, leaf first, into the tightest: unknown only when no level could
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

/// A small file kept open, read again from its start with one `pread`.
#[derive(Debug)]
pub struct KeptFile(File);

/// The longest text a kept file may hold: a limit file holds at most 30 bytes
/// (`18446744073709551615 1000000`), `memory.events` six counters; a longer read is not one of
/// them.
const SMALL_FILE: usize = 512;

impl KeptFile {
    /// Opens `path` for reading; `None` (logged at debug) when it cannot be opened.
    pub fn open(path: &Path) -> Option<KeptFile> {
        File::open(path)
            .map(KeptFile)
            .map_err(|failure| debug!(path = %path.display(), "cannot open: {failure}"))
            .ok()
    }

    /// The file's text as it is now, from a buffer on the stack, handed to `parse`; `None` when
    /// it cannot be read, is not UTF-8, or does not fit [`SMALL_FILE`].
    pub fn read<T>(&self, parse: impl FnOnce(&str) -> T) -> Option<T> {
        let mut buffer = [0; SMALL_FILE];
        let length = self.0.read_at(&mut buffer, 0).ok()?;
        if length >= SMALL_FILE {
            return None;
        }
        std::str::from_utf8(buffer.get(..length)?).ok().map(parse)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::container::read_facts;

    /// A writable copy of a fixture tree, removed on drop: the tests rewrite its limit files
    /// under open descriptors, as a runtime does on a resize.
    struct Tree(PathBuf);

    impl Tree {
        fn copy(name: &str) -> Tree {
            let source = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/cgroup")
                .join(name);
            let copy = std::env::temp_dir()
                .join(format!("pyinit-unit-{}-watch-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&copy);
            copy_dir(&source, &copy);
            Tree(copy)
        }

        /// Rewrites a file in place (same inode), as cgroupfs shows a new value.
        fn write(&self, relative: &str, text: &str) {
            std::fs::write(self.0.join(relative), text).unwrap();
        }

        fn files(&self) -> LimitFiles {
            let facts = read_facts(&self.0);
            LimitFiles::open(facts.cpu_cgroup.as_ref(), facts.memory_cgroup.as_ref())
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn copy_dir(source: &Path, target: &Path) {
        std::fs::create_dir_all(target).unwrap();
        for entry in std::fs::read_dir(source).unwrap() {
            let entry = entry.unwrap();
            let to = target.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &to);
            } else {
                std::fs::copy(entry.path(), to).unwrap();
            }
        }
    }

    fn cpus(quota_us: u64, period_us: u64) -> Limit<CpuQuota> {
        Limit::Limited(CpuQuota {
            quota_us,
            period_us,
        })
    }

    #[test]
    fn v2_files_are_read_again_through_the_open_descriptors() {
        let tree = Tree::copy("v2-limited");
        let files = tree.files();
        assert_eq!(
            files.read(),
            Limits {
                cpu: cpus(150000, 100000),
                memory_bytes: Limit::Limited(256 << 20),
            }
        );
        tree.write("sys/fs/cgroup/cpu.max", "200000 100000\n");
        tree.write("sys/fs/cgroup/memory.max", "536870912\n");
        assert_eq!(files.read().cpu, cpus(200000, 100000));
        assert_eq!(files.read().memory_bytes, Limit::Limited(512 << 20));
        // Every form cpu.max and memory.max take.
        tree.write("sys/fs/cgroup/cpu.max", "max 100000\n");
        tree.write("sys/fs/cgroup/memory.max", "max\n");
        assert_eq!(files.read().cpu, Limit::Unlimited);
        assert_eq!(files.read().memory_bytes, Limit::Unlimited);
        tree.write("sys/fs/cgroup/cpu.max", "max\n");
        assert_eq!(files.read().cpu, Limit::Unlimited);
        tree.write("sys/fs/cgroup/cpu.max", "50000\n");
        assert_eq!(files.read().cpu, cpus(50000, 100000));
        tree.write("sys/fs/cgroup/cpu.max", "25000 50000\n");
        assert_eq!(files.read().cpu, cpus(25000, 50000));
        // A file that no longer parses makes that limit unknown for this read.
        tree.write("sys/fs/cgroup/cpu.max", "fifty percent\n");
        assert_eq!(files.read().cpu, Limit::Unknown);
        tree.write("sys/fs/cgroup/cpu.max", &"9".repeat(SMALL_FILE));
        assert_eq!(files.read().cpu, Limit::Unknown);
    }

    #[test]
    fn a_resize_at_any_level_is_seen_and_the_tightest_wins() {
        // The pod's cgroup sets 0.5 CPU and 512 MiB, the container's own 2 CPUs and 1 GiB.
        let tree = Tree::copy("v2-nested");
        let files = tree.files();
        assert_eq!(files.read().cpu, cpus(50000, 100000));
        assert_eq!(files.read().memory_bytes, Limit::Limited(512 << 20));
        // The pod grows past the container's own limits: those apply now.
        tree.write("sys/fs/cgroup/kubepods/pod1/cpu.max", "400000 100000\n");
        tree.write("sys/fs/cgroup/kubepods/pod1/memory.max", "max\n");
        assert_eq!(files.read().cpu, cpus(200000, 100000));
        assert_eq!(files.read().memory_bytes, Limit::Limited(1 << 30));
        // The container's own limit shrinks below the pod's.
        tree.write("sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "75000 100000\n");
        assert_eq!(files.read().cpu, cpus(75000, 100000));
    }

    #[test]
    fn v1_quota_and_period_are_read_again() {
        let tree = Tree::copy("v1-limited");
        let files = tree.files();
        assert_eq!(files.read().cpu, cpus(50000, 100000));
        tree.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "200000\n");
        assert_eq!(files.read().cpu, cpus(200000, 100000));
        tree.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "400000\n");
        assert_eq!(files.read().cpu, cpus(200000, 400000));
        tree.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
        assert_eq!(files.read().cpu, Limit::Unlimited);
        tree.write(
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(files.read().memory_bytes, Limit::Unlimited);
    }

    #[test]
    fn without_files_the_limits_stay_unknown() {
        // cpu.max is garbled and memory.max missing: the garbled file is watched, the missing
        // one never.
        let tree = Tree::copy("v2-missing");
        let files = tree.files();
        assert!(!files.is_empty());
        assert_eq!(files.read().cpu, Limit::Unknown);
        assert_eq!(files.read().memory_bytes, Limit::Unknown);
        tree.write("sys/fs/cgroup/memory.max", "268435456\n");
        assert_eq!(files.read().memory_bytes, Limit::Unknown);
        tree.write("sys/fs/cgroup/cpu.max", "100000 100000\n");
        assert_eq!(files.read().cpu, cpus(100000, 100000));
        assert!(LimitFiles::open(None, None).is_empty());
        assert_eq!(
            LimitFiles::default().read(),
            Limits {
                cpu: Limit::Unknown,
                memory_bytes: Limit::Unknown
            }
        );
    }
}
