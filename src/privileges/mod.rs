//! The privilege drop: resource limits (with core dumps off unless `--rlimit core=...` says
//! otherwise), setgroups, setgid, setuid, umask and `PR_SET_NO_NEW_PRIVS`, then a verification
//! from /proc/self/status that the ids are the targets, that no capability is left and that
//! `setuid(0)` fails.
//!
//! This module is the only owner of the set-id, umask, prctl(no_new_privs) and setrlimit calls.
//! It runs once, in `main`, before the tokio runtime exists: the set-id calls and no_new_privs
//! apply per thread in the kernel, and pyinit must have exactly one thread for the whole process
//! to change (it checks). What the flags mean, the passwd and group parsing and the root rule are
//! decided in `passwd.rs`, purely; this file reads the files and makes the syscalls. Any failure
//! stops pyinit before the app is spawned. The child processes inherit everything; their
//! environment (HOME, USER, LOGNAME) is returned to `main` for the spawn, never set on pyinit.

pub mod passwd;
pub mod rlimit;
pub mod spec;

use std::ffi::OsString;
use std::fmt;
use std::io;

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, rlim_t, setrlimit};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid, setuid};

use crate::exit;
use passwd::{CurrentIds, GROUP_PATH, PASSWD_PATH, ResolveError, TargetIds};
use rlimit::{RlimitSpec, default_core_limit};
pub use spec::PrivilegeConfig;
use spec::Umask;

const STATUS_PATH: &str = "/proc/self/status";

/// Why the drop did not happen; exit code 2 for what the user asked wrongly, 125 for the OS.
#[derive(Debug)]
pub enum PrivilegeError {
    /// The flags do not resolve (`passwd.rs`): a name not found, root refused, or ids a
    /// non-root pyinit cannot reach.
    Resolve(ResolveError),
    /// A file could not be read.
    Read {
        path: &'static str,
        source: io::Error,
    },
    /// A syscall failed: `step` says which call, with which values.
    Syscall { step: String, source: Errno },
    /// After the drop, /proc or a syscall shows something other than the target.
    Verify(String),
    /// pyinit is root without the capabilities the set-id calls need (a pod that drops them
    /// all): `asked` is the flags as given, `missing` the capabilities' names.
    MissingCapabilities {
        asked: String,
        uid: u32,
        gid: u32,
        missing: Vec<&'static str>,
    },
}

impl PrivilegeError {
    pub fn exit_code(&self) -> u8 {
        match self {
            PrivilegeError::Resolve(_) => exit::USAGE,
            PrivilegeError::Read { .. }
            | PrivilegeError::Syscall { .. }
            | PrivilegeError::Verify(_)
            | PrivilegeError::MissingCapabilities { .. } => exit::SETUP_FAILED,
        }
    }
}

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivilegeError::Resolve(failure) => write!(f, "{failure}"),
            PrivilegeError::Read { path, source } => write!(f, "cannot read {path}: {source}"),
            PrivilegeError::Syscall { step, source } => {
                write!(f, "privilege drop failed at {step}: {source}")
            }
            PrivilegeError::Verify(what) => write!(f, "privilege drop not verified: {what}"),
            PrivilegeError::MissingCapabilities {
                asked,
                uid,
                gid,
                missing,
            } => write!(
                f,
                "{asked}: pyinit runs as root without {} (the pod's securityContext drops them, as \
                 `capabilities: drop: [ALL]` does), so it cannot become uid {uid} gid {gid}; in \
                 this pod set securityContext.runAsUser: {uid} and runAsGroup: {gid} instead, so \
                 that the container starts as that user",
                missing.join(" and ")
            ),
        }
    }
}

impl std::error::Error for PrivilegeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PrivilegeError::Read { source, .. } => Some(source),
            PrivilegeError::Syscall { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What pyinit runs as after the drop, and the environment the app gets on top of pyinit's.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// HOME, USER and LOGNAME of the target user when `--user` was given; for `SpawnSpec.env`.
    pub env: Vec<(OsString, OsString)>,
}

/// Who the drop will make pyinit and the app: the flags resolved against /etc/passwd and
/// /etc/group (the root rule included), with nothing changed yet. `main` resolves once, so that
/// set-up done for the app's user while pyinit is still root and the drop use the same ids.
pub fn look_up_target_ids(config: &PrivilegeConfig) -> Result<TargetIds, PrivilegeError> {
    let before = read_proc_status()?;
    let current = CurrentIds {
        uid: before.uid[1],
        gid: before.gid[1],
        groups: before.groups.clone(),
    };
    // Names are resolved before any syscall, so a typo changes nothing.
    let asked = config.user.is_some() || config.group.is_some() || config.groups.is_some();
    let (passwd_text, group_text) = if asked {
        (read_if_present(PASSWD_PATH)?, read_if_present(GROUP_PATH)?)
    } else {
        (String::new(), String::new())
    };
    passwd::resolve_ids(config, &current, &passwd_text, &group_text)
        .map_err(PrivilegeError::Resolve)
}

/// Runs the whole drop to `target` (from [`look_up_target_ids`]) and its verification. Call it
/// once, while pyinit has one thread.
pub fn drop_privileges(
    config: &PrivilegeConfig,
    target: &TargetIds,
) -> Result<Dropped, PrivilegeError> {
    let before = read_proc_status()?;
    if before.threads != 1 {
        return Err(PrivilegeError::Verify(format!(
            "pyinit must drop privileges with one thread, it has {}",
            before.threads
        )));
    }

    // Without the capabilities the set-id calls need, say so before anything changes: setgroups
    // would only answer EPERM.
    if target.change_ids {
        let missing = missing_capabilities(before.cap_eff, target, before.uid);
        if !missing.is_empty() {
            return Err(PrivilegeError::MissingCapabilities {
                asked: asked_flags(config),
                uid: target.uid,
                gid: target.gid,
                missing,
            });
        }
    }
    // Limits first, while pyinit may still hold CAP_SYS_RESOURCE to raise a hard limit; then
    // core dumps off unless `--rlimit core=...` was given (`rlimit::default_core_limit`).
    set_resource_limits(&config.rlimits)?;
    let core_limit = default_core_limit(&config.rlimits, read_rlimit(Resource::RLIMIT_CORE)?.1);
    set_resource_limits(core_limit.as_slice())?;
    if target.change_ids {
        set_supplementary_groups(&target.groups)?;
        set_group_ids(target.gid)?;
        set_user_ids(target.uid)?;
    }
    if let Some(mask) = config.umask {
        set_umask(mask);
    }
    if config.no_new_privs {
        forbid_new_privileges()?;
    }
    verify(config, target, core_limit.as_ref())?;

    let env = target
        .login
        .as_ref()
        .map(|login| {
            login
                .env()
                .into_iter()
                .map(|(key, value)| (OsString::from(key), OsString::from(value)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Dropped {
        uid: target.uid,
        gid: target.gid,
        groups: target.groups.clone(),
        env,
    })
}

/// CAP_SETGID and CAP_SETUID: their bits in /proc/self/status's `CapEff` (linux/capability.h).
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

/// The capabilities the set-id calls to `target` need and `cap_eff` lacks: setgroups and
/// setresgid need CAP_SETGID; setresuid needs CAP_SETUID unless the uids stay as `uids` has them.
fn missing_capabilities(cap_eff: u64, target: &TargetIds, uids: [u32; 4]) -> Vec<&'static str> {
    let lacks = |bit: u32| cap_eff & (1u64 << bit) == 0;
    let mut missing = Vec::new();
    if lacks(CAP_SETGID) {
        missing.push("CAP_SETGID");
    }
    if lacks(CAP_SETUID) && uids.iter().any(|uid| *uid != target.uid) {
        missing.push("CAP_SETUID");
    }
    missing
}

/// The privilege flags as the user gave them: `--user nobody`, `--group 1000 --groups 5,6`.
fn asked_flags(config: &PrivilegeConfig) -> String {
    let mut flags = Vec::new();
    if let Some(user) = &config.user {
        match &user.group {
            Some(group) => flags.push(format!("--user {}:{group}", user.user)),
            None => flags.push(format!("--user {}", user.user)),
        }
    }
    if let Some(group) = &config.group {
        flags.push(format!("--group {group}"));
    }
    if let Some(groups) = &config.groups {
        let names: Vec<String> = groups.iter().map(ToString::to_string).collect();
        flags.push(format!("--groups {}", names.join(",")));
    }
    flags.join(" ")
}

fn read_if_present(path: &'static str) -> Result<String, PrivilegeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        // A scratch image has no /etc/passwd: numeric ids still work.
        Err(source) if source.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(PrivilegeError::Read { path, source }),
    }
}

fn read_proc_status() -> Result<ProcStatus, PrivilegeError> {
    let text = std::fs::read_to_string(STATUS_PATH).map_err(|source| PrivilegeError::Read {
        path: STATUS_PATH,
        source,
    })?;
    parse_proc_status(&text)
        .map_err(|field| PrivilegeError::Verify(format!("{STATUS_PATH} has no valid {field} line")))
}

/// (soft, hard) of `resource` as the kernel has it now.
fn read_rlimit(resource: Resource) -> Result<(rlim_t, rlim_t), PrivilegeError> {
    getrlimit(resource).map_err(|source| PrivilegeError::Syscall {
        step: format!("getrlimit({resource:?})"),
        source,
    })
}

/// Checks the outcome against the target, from the kernel's own account of pyinit: the ids, the
/// groups, no_new_privs, the umask, the limits set (`core_limit`, pyinit's default, among them).
fn verify(
    config: &PrivilegeConfig,
    target: &TargetIds,
    core_limit: Option<&RlimitSpec>,
) -> Result<(), PrivilegeError> {
    let after = read_proc_status()?;
    let failed = |what: String| Err(PrivilegeError::Verify(what));
    if after.uid.iter().any(|uid| *uid != target.uid) {
        return failed(format!(
            "uids (real, effective, saved, fs) are {:?}, expected {}",
            after.uid, target.uid
        ));
    }
    if after.gid.iter().any(|gid| *gid != target.gid) {
        return failed(format!(
            "gids (real, effective, saved, fs) are {:?}, expected {}",
            after.gid, target.gid
        ));
    }
    let mut groups = after.groups.clone();
    groups.sort_unstable();
    groups.dedup();
    if groups != target.groups {
        return failed(format!(
            "supplementary groups are {groups:?}, expected {:?}",
            target.groups
        ));
    }
    if config.no_new_privs && !after.no_new_privs {
        return failed("NoNewPrivs is 0".to_owned());
    }
    if let Some(Umask(bits)) = config.umask
        && after.umask.is_some_and(|umask| umask != bits)
    {
        return failed(format!(
            "umask is {:04o}, expected {bits:04o}",
            after.umask.unwrap_or(0)
        ));
    }
    for spec in config.rlimits.iter().chain(core_limit) {
        let limits = read_rlimit(spec.resource)?;
        if limits != (spec.soft.raw(), spec.hard.raw()) {
            return failed(format!("rlimit {} is {limits:?}", spec.name()));
        }
    }
    if target.uid != 0 {
        if after.cap_eff != 0 {
            return failed(format!(
                "effective capabilities are {:016x}, expected none",
                after.cap_eff
            ));
        }
        if root_is_regainable() {
            return failed("setuid(0) succeeded".to_owned());
        }
    }
    Ok(())
}

#[allow(
    clippy::disallowed_methods,
    reason = "privileges owns setrlimit; the app inherits the limits"
)]
fn set_resource_limits(rlimits: &[RlimitSpec]) -> Result<(), PrivilegeError> {
    for spec in rlimits {
        setrlimit(spec.resource, spec.soft.raw(), spec.hard.raw()).map_err(|source| {
            PrivilegeError::Syscall {
                step: format!("setrlimit({spec})"),
                source,
            }
        })?;
    }
    Ok(())
}

#[allow(
    clippy::disallowed_methods,
    reason = "privileges is the only owner of setgroups"
)]
fn set_supplementary_groups(groups: &[u32]) -> Result<(), PrivilegeError> {
    let gids: Vec<Gid> = groups.iter().copied().map(Gid::from_raw).collect();
    setgroups(&gids).map_err(|source| PrivilegeError::Syscall {
        step: format!("setgroups({groups:?})"),
        source,
    })
}

#[allow(
    clippy::disallowed_methods,
    reason = "privileges is the only owner of the set-id calls"
)]
fn set_group_ids(gid: u32) -> Result<(), PrivilegeError> {
    let gid = Gid::from_raw(gid);
    // Real, effective and saved together: a saved id of 0 would let the process regain it.
    setresgid(gid, gid, gid).map_err(|source| PrivilegeError::Syscall {
        step: format!("setresgid({gid})"),
        source,
    })
}

#[allow(
    clippy::disallowed_methods,
    reason = "privileges is the only owner of the set-id calls"
)]
fn set_user_ids(uid: u32) -> Result<(), PrivilegeError> {
    let uid = Uid::from_raw(uid);
    setresuid(uid, uid, uid).map_err(|source| PrivilegeError::Syscall {
        step: format!("setresuid({uid})"),
        source,
    })
}

#[allow(
    clippy::disallowed_methods,
    reason = "privileges is the only owner of umask"
)]
fn set_umask(mask: Umask) {
    let _previous = umask(Mode::from_bits_truncate(mask.0));
}

#[allow(
    clippy::disallowed_methods,
    reason = "privileges is the only owner of prctl(PR_SET_NO_NEW_PRIVS)"
)]
fn forbid_new_privileges() -> Result<(), PrivilegeError> {
    nix::sys::prctl::set_no_new_privs().map_err(|source| PrivilegeError::Syscall {
        step: "prctl(PR_SET_NO_NEW_PRIVS)".to_owned(),
        source,
    })
}

/// Tries `setuid(0)`; true when it worked, which after a drop means the drop failed.
#[allow(
    clippy::disallowed_methods,
    reason = "privileges proves the drop by calling setuid(0) and seeing it fail"
)]
fn root_is_regainable() -> bool {
    setuid(Uid::from_raw(0)).is_ok()
}

/// The lines of /proc/self/status that the drop checks.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProcStatus {
    /// Real, effective, saved and filesystem uid.
    uid: [u32; 4],
    gid: [u32; 4],
    groups: Vec<u32>,
    cap_eff: u64,
    no_new_privs: bool,
    threads: u32,
    /// Absent before Linux 4.7.
    umask: Option<u32>,
}

/// Parses /proc/PID/status text; the error names the first missing or malformed field.
fn parse_proc_status(text: &str) -> Result<ProcStatus, &'static str> {
    let field = |name: &'static str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .ok_or(name)
    };
    let four_ids = |name: &'static str| -> Result<[u32; 4], &'static str> {
        let ids = field(name)?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|_| name)?;
        <[u32; 4]>::try_from(ids).map_err(|_| name)
    };
    let groups = field("Groups")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|_| "Groups")?;
    let cap_eff = u64::from_str_radix(field("CapEff")?, 16).map_err(|_| "CapEff")?;
    let no_new_privs = match field("NoNewPrivs")? {
        "0" => false,
        "1" => true,
        _ => return Err("NoNewPrivs"),
    };
    let threads = field("Threads")?.parse().map_err(|_| "Threads")?;
    let umask = match field("Umask") {
        Ok(umask) => Some(u32::from_str_radix(umask, 8).map_err(|_| "Umask")?),
        Err(_) => None,
    };
    Ok(ProcStatus {
        uid: four_ids("Uid")?,
        gid: four_ids("Gid")?,
        groups,
        cap_eff,
        no_new_privs,
        threads,
        umask,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_STATUS: &str = "Name:\tpyinit
Umask:\t0022
State:\tR (running)
Tgid:\t42
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
FDSize:\t64
Groups:\t0 
NStgid:\t42
Threads:\t1
CapInh:\t0000000000000000
CapPrm:\t000001ffffffffff
CapEff:\t000001ffffffffff
NoNewPrivs:\t0
Seccomp:\t0
";

    #[test]
    fn proc_status_of_root() {
        let status = parse_proc_status(ROOT_STATUS).unwrap();
        assert_eq!(
            status,
            ProcStatus {
                uid: [0; 4],
                gid: [0; 4],
                groups: vec![0],
                cap_eff: 0x1ff_ffff_ffff,
                no_new_privs: false,
                threads: 1,
                umask: Some(0o022),
            }
        );
    }

    #[test]
    fn proc_status_after_a_drop() {
        let text = ROOT_STATUS
            .replace("Uid:\t0\t0\t0\t0", "Uid:\t65534\t65534\t65534\t65534")
            .replace("Gid:\t0\t0\t0\t0", "Gid:\t65534\t65534\t65534\t65534")
            .replace("Groups:\t0 ", "Groups:\t")
            .replace("CapEff:\t000001ffffffffff", "CapEff:\t0000000000000000")
            .replace("NoNewPrivs:\t0", "NoNewPrivs:\t1")
            .replace("Umask:\t0022\n", "");
        let status = parse_proc_status(&text).unwrap();
        assert_eq!(status.uid, [65534; 4]);
        assert!(status.groups.is_empty());
        assert_eq!(status.cap_eff, 0);
        assert!(status.no_new_privs);
        assert_eq!(status.umask, None);
    }

    #[test]
    fn proc_status_errors_name_the_field() {
        for (from, to, field) in [
            ("Uid:\t0\t0\t0\t0", "Uid:\t0\t0\t0", "Uid"),
            ("Gid:\t0\t0\t0\t0", "", "Gid"),
            ("CapEff:\t000001ffffffffff", "CapEff:\tzz", "CapEff"),
            ("NoNewPrivs:\t0", "NoNewPrivs:\t2", "NoNewPrivs"),
            ("Groups:\t0 ", "Groups:\tx", "Groups"),
        ] {
            let text = ROOT_STATUS.replace(from, to);
            assert_eq!(parse_proc_status(&text), Err(field), "{from}");
        }
    }

    #[test]
    fn error_messages_and_exit_codes() {
        let syscall = PrivilegeError::Syscall {
            step: "setresuid(65534)".to_owned(),
            source: Errno::EPERM,
        };
        assert_eq!(
            syscall.to_string(),
            "privilege drop failed at setresuid(65534): EPERM: Operation not permitted"
        );
        assert_eq!(syscall.exit_code(), 125);
        let refused = PrivilegeError::Resolve(ResolveError::RootRefused);
        assert_eq!(refused.exit_code(), 2);
        assert!(!refused.to_string().contains('\n'));
        let unknown = PrivilegeError::Resolve(ResolveError::UnknownName {
            flag: "--user",
            value: "ghost".to_owned(),
            file: PASSWD_PATH,
        });
        assert_eq!(unknown.exit_code(), 2);
        assert_eq!(
            unknown.to_string(),
            "invalid value 'ghost' for '--user': no such name in /etc/passwd"
        );
    }

    fn target(uid: u32, gid: u32) -> TargetIds {
        TargetIds {
            uid,
            gid,
            groups: vec![gid],
            change_ids: true,
            login: None,
        }
    }

    #[test]
    fn the_set_id_calls_need_cap_setgid_and_cap_setuid_to_change_the_uid() {
        const ALL: u64 = 0x1ff_ffff_ffff;
        let setgid_only = 1 << CAP_SETGID;
        let nobody = target(65534, 65534);
        assert!(missing_capabilities(ALL, &nobody, [0; 4]).is_empty());
        assert_eq!(
            missing_capabilities(0, &nobody, [0; 4]),
            ["CAP_SETGID", "CAP_SETUID"]
        );
        assert_eq!(
            missing_capabilities(setgid_only, &nobody, [0; 4]),
            ["CAP_SETUID"]
        );
        // Root that stays root (`--group` alone) needs no CAP_SETUID.
        assert_eq!(
            missing_capabilities(0, &target(0, 1000), [0; 4]),
            ["CAP_SETGID"]
        );
    }

    #[test]
    fn missing_capabilities_name_the_flags_and_run_as_user() {
        let config = PrivilegeConfig {
            user: Some(spec::parse_user_spec("nobody").unwrap()),
            group: None,
            groups: Some(vec![
                spec::IdOrName::Id(5),
                spec::IdOrName::Name("audio".to_owned()),
            ]),
            umask: None,
            allow_root: false,
            no_new_privs: true,
            rlimits: Vec::new(),
        };
        assert_eq!(asked_flags(&config), "--user nobody --groups 5,audio");
        let missing = PrivilegeError::MissingCapabilities {
            asked: "--user nobody".to_owned(),
            uid: 65534,
            gid: 65534,
            missing: vec!["CAP_SETGID", "CAP_SETUID"],
        };
        assert_eq!(missing.exit_code(), 125);
        assert_eq!(
            missing.to_string(),
            "--user nobody: pyinit runs as root without CAP_SETGID and CAP_SETUID (the pod's \
             securityContext drops them, as `capabilities: drop: [ALL]` does), so it cannot \
             become uid 65534 gid 65534; in this pod set securityContext.runAsUser: 65534 and \
             runAsGroup: 65534 instead, so that the container starts as that user"
        );
    }
}
