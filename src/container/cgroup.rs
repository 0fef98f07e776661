//! Pure parsers of cgroup v1 and v2 files and of /proc/self/{cgroup,mountinfo}, over `&str`.
//!
//! This file owns the formats: `cpu.max`, `cpu.cfs_quota_us`/`cpu.cfs_period_us`, `memory.max`,
//! `memory.limit_in_bytes`, the `oom_kill` line of `memory.events` and `memory.oom_control`,
//! `memory.current`/`memory.usage_in_bytes`, the `Cpus_allowed_list` of /proc/self/status, and how
//! a controller's own cgroup directory follows from /proc/self/cgroup and /proc/self/mountinfo. It
//! reads no file: `container/mod.rs` reads them under its injected root and hands the text here.

use std::fmt;

/// Page-rounded `LONG_MAX`, which cgroup v1 shows for "no limit" (9223372036854771712 with 4 KiB
/// pages, less with larger pages); any limit this large is no limit at all.
const UNLIMITED_BYTES_FROM: u64 = 1 << 62;

/// The cgroup period when `cpu.max` names only a quota (the kernel's default, 100 ms).
const DEFAULT_PERIOD_US: u64 = 100_000;

/// A file whose text is not in the expected format, quoted for the debug log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupParseError {
    pub expected: &'static str,
    pub found: String,
}

impl fmt::Display for CgroupParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, found {:?}", self.expected, self.found)
    }
}

fn unexpected(expected: &'static str, text: &str) -> CgroupParseError {
    let mut found = text.trim().to_owned();
    found.truncate(80);
    CgroupParseError { expected, found }
}

/// Which cgroup hierarchy a controller lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// A CFS bandwidth limit: `quota_us` of CPU time in every `period_us`; 1.5 CPUs is 150000/100000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

impl CpuQuota {
    /// The smaller of two quotas, compared as fractions of a CPU.
    pub fn min(self, other: CpuQuota) -> CpuQuota {
        let mine = u128::from(self.quota_us) * u128::from(other.period_us);
        let theirs = u128::from(other.quota_us) * u128::from(self.period_us);
        if theirs < mine { other } else { self }
    }

    /// The limit in thousandths of a CPU (Kubernetes' millicores), rounded, at least 1.
    pub fn millicpus(self) -> u64 {
        let period = u128::from(self.period_us.max(1));
        let millis = (u128::from(self.quota_us) * 1000 + period / 2) / period;
        u64::try_from(millis).unwrap_or(u64::MAX).max(1)
    }
}

/// Parses cgroup v2 `cpu.max`: `150000 100000`, `max 100000`, or a lone `max`/quota.
/// `Ok(None)` means no limit.
pub fn parse_cpu_max(text: &str) -> Result<Option<CpuQuota>, CgroupParseError> {
    const EXPECTED: &str = "\"QUOTA PERIOD\" or \"max PERIOD\"";
    let mut fields = text.split_whitespace();
    let quota = fields.next().ok_or_else(|| unexpected(EXPECTED, text))?;
    let period_us = match fields.next() {
        Some(period) => period
            .parse::<u64>()
            .map_err(|_| unexpected(EXPECTED, text))?,
        None => DEFAULT_PERIOD_US,
    };
    if fields.next().is_some() || period_us == 0 {
        return Err(unexpected(EXPECTED, text));
    }
    if quota == "max" {
        return Ok(None);
    }
    let quota_us = quota
        .parse::<u64>()
        .map_err(|_| unexpected(EXPECTED, text))?;
    Ok(Some(CpuQuota {
        quota_us,
        period_us,
    }))
}

/// Parses cgroup v1 `cpu.cfs_quota_us` (-1: no limit) with `cpu.cfs_period_us`.
pub fn parse_cfs_quota(
    quota_text: &str,
    period_text: &str,
) -> Result<Option<CpuQuota>, CgroupParseError> {
    let quota = quota_text
        .trim()
        .parse::<i64>()
        .map_err(|_| unexpected("a number of microseconds or -1", quota_text))?;
    let Ok(quota_us) = u64::try_from(quota) else {
        return Ok(None);
    };
    let period_us = period_text
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|period| *period > 0)
        .ok_or_else(|| unexpected("a positive number of microseconds", period_text))?;
    Ok(Some(CpuQuota {
        quota_us,
        period_us,
    }))
}

/// Parses a memory limit in bytes: v2 `memory.max` (`max` or a number) or v1
/// `memory.limit_in_bytes` (a huge number, or -1, for no limit). `Ok(None)` means no limit.
pub fn parse_memory_limit(text: &str) -> Result<Option<u64>, CgroupParseError> {
    let trimmed = text.trim();
    if trimmed == "max" || trimmed == "-1" {
        return Ok(None);
    }
    let bytes = trimmed
        .parse::<u64>()
        .map_err(|_| unexpected("a number of bytes or \"max\"", text))?;
    Ok((bytes < UNLIMITED_BYTES_FROM).then_some(bytes))
}

/// Parses a single byte count: v2 `memory.current`, v1 `memory.usage_in_bytes`.
pub fn parse_bytes(text: &str) -> Result<u64, CgroupParseError> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| unexpected("a number of bytes", text))
}

/// The `oom_kill N` counter of v2 `memory.events` or v1 `memory.oom_control` (kernels since 4.13).
pub fn parse_oom_kill_count(text: &str) -> Result<u64, CgroupParseError> {
    text.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some("oom_kill")).then(|| fields.next())?
        })
        .and_then(|count| count.parse::<u64>().ok())
        .ok_or_else(|| unexpected("an \"oom_kill N\" line", text))
}

/// The number of CPUs this process may run on, from the `Cpus_allowed_list` line of
/// /proc/self/status (`0-3,8-11`). This is the affinity mask (a cpuset narrows it); unlike
/// `std::thread::available_parallelism` it never folds in a CFS quota, which pyinit reads itself.
pub fn parse_cpus_allowed(status_text: &str) -> Result<u32, CgroupParseError> {
    const EXPECTED: &str = "a Cpus_allowed_list line such as \"0-3,8\"";
    let list = status_text
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .ok_or_else(|| unexpected(EXPECTED, status_text))?;
    let mut count: u32 = 0;
    for range in list.trim().split(',').filter(|range| !range.is_empty()) {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let first = first
            .parse::<u32>()
            .map_err(|_| unexpected(EXPECTED, list))?;
        let last = last
            .parse::<u32>()
            .map_err(|_| unexpected(EXPECTED, list))?;
        let n_in_range = last
            .checked_sub(first)
            .ok_or_else(|| unexpected(EXPECTED, list))?;
        count = count.saturating_add(n_in_range).saturating_add(1);
    }
    if count == 0 {
        return Err(unexpected(EXPECTED, list));
    }
    Ok(count)
}

/// One line of /proc/self/cgroup: `ID:CONTROLLERS:PATH` (`0::PATH` for v2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub hierarchy_id: u32,
    /// Empty for the v2 unified hierarchy; `name=systemd` style names are kept as they are.
    pub controllers: Vec<String>,
    pub path: String,
}

/// Parses /proc/self/cgroup; malformed lines are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let hierarchy_id = fields.next()?.parse::<u32>().ok()?;
            let controllers = fields
                .next()?
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
            let path = fields.next()?.to_owned();
            Some(Membership {
                hierarchy_id,
                controllers,
                path,
            })
        })
        .collect()
}

/// A cgroup filesystem mount from /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    pub version: CgroupVersion,
    /// The cgroup this mount shows at its mount point: `/` unless a subtree was bind-mounted.
    pub root: String,
    pub mount_point: String,
    /// v1: the controllers of this hierarchy (from the super options); empty for v2.
    pub controllers: Vec<String>,
}

/// Parses the cgroup and cgroup2 mounts out of /proc/self/mountinfo; other lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
            let (before, after) = line.split_once(" - ")?;
            let mut left = before.split_whitespace();
            let root = unescape_octal(left.nth(3)?);
            let mount_point = unescape_octal(left.next()?);
            let mut right = after.split_whitespace();
            let fstype = right.next()?;
            let super_options = right.nth(1).unwrap_or("");
            let (version, controllers) = match fstype {
                "cgroup2" => (CgroupVersion::V2, Vec::new()),
                "cgroup" => (
                    CgroupVersion::V1,
                    super_options
                        .split(',')
                        .filter(|option| !matches!(*option, "rw" | "ro"))
                        .map(str::to_owned)
                        .collect(),
                ),
                _ => return None,
            };
            Some(CgroupMount {
                version,
                root,
                mount_point,
                controllers,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in paths as `\040`-style octal escapes.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = (byte == b'\\')
            .then(|| bytes.get(index + 1..index + 4))
            .flatten()
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                index += 4;
            }
            None => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where one controller's cgroup of this process is, as absolute paths of the process's view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLocation {
    pub version: CgroupVersion,
    /// The mount point of the hierarchy: the highest directory pyinit can see.
    pub mount_point: String,
    /// The process's own cgroup directory, at or below `mount_point`.
    pub dir: String,
}

impl CgroupLocation {
    /// The directories from the process's own cgroup up to the mount point, leaf first: a limit
    /// set on any of them applies.
    pub fn dirs_to_mount_point(&self) -> Vec<String> {
        let mut dirs = vec![self.dir.clone()];
        let mut current = self.dir.as_str();
        while current != self.mount_point {
            match current.rsplit_once('/') {
                Some((parent, _)) if parent.len() >= self.mount_point.len() => {
                    dirs.push(parent.to_owned());
                    current = parent;
                }
                _ => break,
            }
        }
        dirs
    }
}

/// Finds the cgroup directory of `controller` (`cpu`, `memory`) for this process: a v1 hierarchy
/// that has the controller if one is mounted, else the v2 unified hierarchy.
///
/// The path in /proc/self/cgroup is relative to the hierarchy's root (or to the cgroup namespace's
/// root), while a mount may show only a subtree (its `root` in mountinfo). In a container without a
/// cgroup namespace the path is the full host path and the mount shows exactly that subtree, so the
/// mount root is stripped; with a namespace the path is often just `/`. A path outside the mount's
/// subtree falls back to the mount point itself, the closest directory pyinit can see.
pub fn locate_controller(
    controller: &str,
    memberships: &[Membership],
    mounts: &[CgroupMount],
) -> Option<CgroupLocation> {
    let has_controller = |names: &[String]| names.iter().any(|name| name == controller);
    let v1_membership = memberships
        .iter()
        .find(|membership| has_controller(&membership.controllers));
    let v1_mounts: Vec<&CgroupMount> = mounts
        .iter()
        .filter(|mount| mount.version == CgroupVersion::V1 && has_controller(&mount.controllers))
        .collect();
    if let Some(membership) = v1_membership
        && !v1_mounts.is_empty()
    {
        return locate_in(CgroupVersion::V1, &membership.path, &v1_mounts);
    }
    let v2_membership = memberships
        .iter()
        .find(|membership| membership.hierarchy_id == 0 && membership.controllers.is_empty())?;
    let v2_mounts: Vec<&CgroupMount> = mounts
        .iter()
        .filter(|mount| mount.version == CgroupVersion::V2)
        .collect();
    locate_in(CgroupVersion::V2, &v2_membership.path, &v2_mounts)
}

fn locate_in(
    version: CgroupVersion,
    cgroup_path: &str,
    mounts: &[&CgroupMount],
) -> Option<CgroupLocation> {
    let within = |mount: &&&CgroupMount| relative_to_root(cgroup_path, &mount.root).is_some();
    let mount = mounts.iter().find(within).or_else(|| mounts.first())?;
    let mount_point = mount.mount_point.trim_end_matches('/').to_owned();
    let relative = relative_to_root(cgroup_path, &mount.root).unwrap_or("");
    let dir = if relative.is_empty() {
        mount_point.clone()
    } else {
        format!("{mount_point}/{relative}")
    };
    Some(CgroupLocation {
        version,
        mount_point,
        dir,
    })
}

/// `path` below `root`, without leading `/`; `None` when `path` is not inside `root`.
fn relative_to_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let relative = rest.trim_matches('/');
    // `/..` appears when the process sits outside its cgroup namespace's root.
    if relative.split('/').any(|part| part == "..") {
        return None;
    }
    Some(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_forms() {
        let quota = |quota_us, period_us| {
            Ok(Some(CpuQuota {
                quota_us,
                period_us,
            }))
        };
        assert_eq!(parse_cpu_max("150000 100000\n"), quota(150000, 100000));
        assert_eq!(parse_cpu_max("50000 100000"), quota(50000, 100000));
        assert_eq!(parse_cpu_max("max 100000\n"), Ok(None));
        assert_eq!(parse_cpu_max("max"), Ok(None));
        assert_eq!(parse_cpu_max("200000"), quota(200000, 100000));
        for bad in ["", "\n", "abc 100000", "100000 0", "1 2 3", "150000 x"] {
            assert!(parse_cpu_max(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cfs_quota_forms() {
        assert_eq!(
            parse_cfs_quota("150000\n", "100000\n"),
            Ok(Some(CpuQuota {
                quota_us: 150000,
                period_us: 100000
            }))
        );
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), Ok(None));
        // No limit needs no period.
        assert_eq!(parse_cfs_quota("-1", ""), Ok(None));
        assert!(parse_cfs_quota("", "100000").is_err());
        assert!(parse_cfs_quota("50000", "0").is_err());
        assert!(parse_cfs_quota("50000", "").is_err());
    }

    #[test]
    fn quota_arithmetic() {
        let one_and_a_half = CpuQuota {
            quota_us: 150000,
            period_us: 100000,
        };
        let half = CpuQuota {
            quota_us: 25000,
            period_us: 50000,
        };
        assert_eq!(one_and_a_half.min(half), half);
        assert_eq!(half.min(one_and_a_half), half);
        assert_eq!(one_and_a_half.millicpus(), 1500);
        assert_eq!(half.millicpus(), 500);
        let third = CpuQuota {
            quota_us: 33333,
            period_us: 100000,
        };
        assert_eq!(third.millicpus(), 333);
        let tiny = CpuQuota {
            quota_us: 1,
            period_us: 1_000_000,
        };
        assert_eq!(tiny.millicpus(), 1);
    }

    #[test]
    fn memory_limits() {
        assert_eq!(parse_memory_limit("268435456\n"), Ok(Some(268435456)));
        assert_eq!(parse_memory_limit("max\n"), Ok(None));
        // v1's "unlimited" with 4 KiB and with 64 KiB pages, and LONG_MAX itself.
        assert_eq!(parse_memory_limit("9223372036854771712\n"), Ok(None));
        assert_eq!(parse_memory_limit("9223372036854710272"), Ok(None));
        assert_eq!(parse_memory_limit("9223372036854775807"), Ok(None));
        assert_eq!(parse_memory_limit("-1"), Ok(None));
        for bad in ["", "64M", "max max", "-5"] {
            assert!(parse_memory_limit(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usage_and_oom_counters() {
        assert_eq!(parse_bytes("123456\n"), Ok(123456));
        assert!(parse_bytes("").is_err());
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill_count(events), Ok(2));
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n";
        assert_eq!(parse_oom_kill_count(oom_control), Ok(7));
        // Kernels before 4.13 have no counter in v1.
        assert!(parse_oom_kill_count("oom_kill_disable 0\nunder_oom 0\n").is_err());
        assert!(parse_oom_kill_count("oom_kill x\n").is_err());
    }

    #[test]
    fn cpus_allowed_lists() {
        let status = |list: &str| {
            format!(
                "Name:\tpyinit\nCpus_allowed:\tff\nCpus_allowed_list:\t{list}\nMems_allowed:\t1\n"
            )
        };
        assert_eq!(parse_cpus_allowed(&status("0-1")), Ok(2));
        assert_eq!(parse_cpus_allowed(&status("0")), Ok(1));
        assert_eq!(parse_cpus_allowed(&status("0-3,8-11,13")), Ok(9));
        assert!(parse_cpus_allowed(&status("")).is_err());
        assert!(parse_cpus_allowed(&status("3-1")).is_err());
        assert!(parse_cpus_allowed("Name:\tpyinit\n").is_err());
    }

    #[test]
    fn proc_cgroup_lines() {
        let text = "4:memory:/kubepods/pod1/abc\n2:cpu,cpuacct:/kubepods/pod1/abc\n1:name=systemd:/\n0::/\nnonsense\n";
        let memberships = parse_proc_cgroup(text);
        assert_eq!(memberships.len(), 4);
        assert_eq!(memberships[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(memberships[1].path, "/kubepods/pod1/abc");
        assert_eq!(memberships[3].hierarchy_id, 0);
        assert!(memberships[3].controllers.is_empty());
    }

    const HOST_V1_MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:7 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:8 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_cgroup_mounts() {
        let mounts = parse_mountinfo(HOST_V1_MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[0].mount_point, "/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(mounts[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(mounts[2].controllers, ["xattr", "name=systemd"]);
        assert_eq!(mounts[3].version, CgroupVersion::V2);
        let escaped =
            parse_mountinfo("50 31 0:40 /a\\040b /mnt/cg\\134x rw - cgroup2 none rw,nsdelegate\n");
        assert_eq!(escaped[0].root, "/a b");
        assert_eq!(escaped[0].mount_point, "/mnt/cg\\x");
    }

    #[test]
    fn v1_on_a_host_prefers_the_controller_mount_over_the_unified_one() {
        // This machine's layout: v1 controllers plus an empty unified hierarchy (`0::/`).
        let memberships = parse_proc_cgroup(
            "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n",
        );
        let mounts = parse_mountinfo(HOST_V1_MOUNTINFO);
        let memory = locate_controller("memory", &memberships, &mounts).unwrap();
        assert_eq!(memory.version, CgroupVersion::V1);
        assert_eq!(memory.dir, "/sys/fs/cgroup/memory/process_api/abc");
        assert_eq!(
            memory.dirs_to_mount_point(),
            [
                "/sys/fs/cgroup/memory/process_api/abc",
                "/sys/fs/cgroup/memory/process_api",
                "/sys/fs/cgroup/memory"
            ]
        );
        let cpu = locate_controller("cpu", &memberships, &mounts).unwrap();
        assert_eq!(cpu.dir, "/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(cpu.dirs_to_mount_point(), ["/sys/fs/cgroup/cpu,cpuacct"]);
    }

    #[test]
    fn v1_container_without_cgroup_namespace_strips_the_mount_root() {
        let memberships = parse_proc_cgroup("4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n");
        let mounts = parse_mountinfo(
            "600 590 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n\
             601 590 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n",
        );
        let memory = locate_controller("memory", &memberships, &mounts).unwrap();
        assert_eq!(memory.dir, "/sys/fs/cgroup/memory");
        assert_eq!(memory.dirs_to_mount_point(), ["/sys/fs/cgroup/memory"]);
        // A process in a sub-cgroup of the container's.
        let memberships = parse_proc_cgroup("4:memory:/docker/abc/worker\n");
        let memory = locate_controller("memory", &memberships, &mounts).unwrap();
        assert_eq!(memory.dir, "/sys/fs/cgroup/memory/worker");
    }

    #[test]
    fn v1_container_with_cgroup_namespace_sees_slash() {
        let memberships = parse_proc_cgroup("4:memory:/\n2:cpu,cpuacct:/\n");
        let mounts = parse_mountinfo(
            "600 590 0:32 / /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n\
             601 590 0:29 / /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n",
        );
        let cpu = locate_controller("cpu", &memberships, &mounts).unwrap();
        assert_eq!(cpu.dir, "/sys/fs/cgroup/cpu,cpuacct");
    }

    #[test]
    fn path_outside_the_mount_root_falls_back_to_the_mount_point() {
        let memberships = parse_proc_cgroup("0::/../../kubepods/pod1\n");
        let mounts = parse_mountinfo("700 690 0:27 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n");
        let location = locate_controller("memory", &memberships, &mounts).unwrap();
        assert_eq!(location.dir, "/sys/fs/cgroup");
        let memberships = parse_proc_cgroup("0::/elsewhere\n");
        let mounts =
            parse_mountinfo("700 690 0:27 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n");
        let location = locate_controller("cpu", &memberships, &mounts).unwrap();
        assert_eq!(location.dir, "/sys/fs/cgroup");
    }

    #[test]
    fn v2_unified() {
        let memberships = parse_proc_cgroup("0::/kubepods.slice/pod1.slice/cri-abc.scope\n");
        let mounts =
            parse_mountinfo("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n");
        let location = locate_controller("cpu", &memberships, &mounts).unwrap();
        assert_eq!(location.version, CgroupVersion::V2);
        assert_eq!(
            location.dir,
            "/sys/fs/cgroup/kubepods.slice/pod1.slice/cri-abc.scope"
        );
        assert_eq!(location.dirs_to_mount_point().len(), 4);
        assert_eq!(
            location.dirs_to_mount_point().last().unwrap(),
            "/sys/fs/cgroup"
        );
    }

    #[test]
    fn no_cgroup_filesystem_means_no_location() {
        let memberships = parse_proc_cgroup("0::/\n");
        assert_eq!(locate_controller("cpu", &memberships, &[]), None);
        let mounts = parse_mountinfo(HOST_V1_MOUNTINFO);
        assert_eq!(locate_controller("cpu", &[], &mounts), None);
    }
}
