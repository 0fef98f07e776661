//! The privilege drop, run as root against the real binary: what the app and pyinit itself are
//! after it (ids in all four slots, groups, capabilities, NoNewPrivs, umask, limits, login
//! variables), the refusal to run as root, and bad values that stop pyinit before the app runs.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::{Finished, PATIENCE, Pyinit, python_fixture};

/// A directory under /tmp, mode 0777 so that any uid can create files in it; removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> ScratchDir {
        let path =
            std::env::temp_dir().join(format!("pyinit-privileges-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        ScratchDir(path)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn identity(args: &[&str]) -> Vec<OsString> {
    python_fixture("identity.py", args)
}

/// The rest of the one stdout line that starts with `prefix`.
fn fact(finished: &Finished, prefix: &str) -> String {
    let matching: Vec<_> = finished
        .stdout
        .iter()
        .filter_map(|line| line.strip_prefix(prefix))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "one line starting with {prefix:?} expected; stdout:\n{}\nstderr:\n{}",
        finished.stdout.join("\n"),
        finished.stderr_text()
    );
    matching[0].trim().to_owned()
}

/// The groups initgroups(3) gives `user` on this machine: the ones /etc/group lists it in,
/// plus its primary group, sorted as /proc shows them.
fn machine_groups_of(user: &str, primary: u32) -> String {
    let group = std::fs::read_to_string("/etc/group").unwrap();
    let mut gids = vec![primary];
    for line in group.lines() {
        let fields: Vec<_> = line.split(':').collect();
        if fields.len() == 4 && fields[3].split(',').any(|member| member.trim() == user) {
            gids.push(fields[2].parse().unwrap());
        }
    }
    gids.sort_unstable();
    gids.dedup();
    gids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn nobody_with_a_umask_has_no_root_left() {
    let scratch = ScratchDir::new("nobody");
    let created = scratch.0.to_str().unwrap();
    let finished = Pyinit::new()
        .without_allow_root()
        .args(["--user", "nobody", "--umask", "0027"])
        .app(identity(&["--create", created]))
        .run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "status Uid "), "65534 65534 65534 65534");
    assert_eq!(fact(&finished, "status Gid "), "65534 65534 65534 65534");
    assert_eq!(
        fact(&finished, "status Groups"),
        machine_groups_of("nobody", 65534)
    );
    assert_eq!(fact(&finished, "status CapEff "), "0000000000000000");
    assert_eq!(fact(&finished, "status NoNewPrivs "), "1");
    assert_eq!(fact(&finished, "file mode "), "0640");
    let owner = std::fs::metadata(scratch.0.join("created-by-app")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&owner),
        65534,
        "the file belongs to nobody"
    );
    assert_eq!(fact(&finished, "env HOME="), "/nonexistent");
    assert_eq!(fact(&finished, "env USER="), "nobody");
    assert_eq!(fact(&finished, "env LOGNAME="), "nobody");
}

#[test]
fn a_numeric_uid_without_a_passwd_entry_runs_with_home_slash() {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        !passwd
            .lines()
            .any(|line| line.split(':').nth(2) == Some("10001")),
        "this test needs uid 10001 to have no /etc/passwd entry"
    );
    let finished = Pyinit::new()
        .without_allow_root()
        .args(["--user", "10001:10001"])
        .env("HOME", "/root")
        .app(identity(&[]))
        .run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "status Uid "), "10001 10001 10001 10001");
    assert_eq!(fact(&finished, "status Gid "), "10001 10001 10001 10001");
    assert_eq!(fact(&finished, "status Groups"), "10001");
    assert_eq!(fact(&finished, "status CapEff "), "0000000000000000");
    assert_eq!(fact(&finished, "env HOME="), "/");
    assert_eq!(fact(&finished, "env USER="), "10001");
    assert_eq!(fact(&finished, "env LOGNAME="), "10001");
}

/// A test passwd and group file, bind-mounted over the machine's for pyinit alone.
fn with_test_etc(pyinit: Pyinit, scratch: &ScratchDir) -> Pyinit {
    let passwd = scratch.file(
        "passwd",
        "root:x:0:0:root:/root:/bin/sh\n\
         appuser:x:10005:10005:The App:/srv/appuser:/bin/sh\n",
    );
    let group = scratch.file(
        "group",
        "root:x:0:\n\
         appuser:x:10005:\n\
         deploy:x:2001:other,appuser\n\
         metrics:x:2002: appuser \n\
         unrelated:x:2003:other\n",
    );
    pyinit
        .bind_file(passwd, "/etc/passwd")
        .bind_file(group, "/etc/group")
}

#[test]
fn supplementary_groups_come_from_etc_group_and_groups_overrides_them() {
    let scratch = ScratchDir::new("groups");
    let run = |extra: &[&str]| {
        with_test_etc(Pyinit::new().without_allow_root(), &scratch)
            .args(["--user", "appuser"])
            .args(extra)
            .app(identity(&[]))
            .run()
    };

    let finished = run(&[]);
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "status Uid "), "10005 10005 10005 10005");
    assert_eq!(fact(&finished, "status Gid "), "10005 10005 10005 10005");
    assert_eq!(fact(&finished, "status Groups"), "2001 2002 10005");
    assert_eq!(fact(&finished, "env HOME="), "/srv/appuser");
    assert_eq!(fact(&finished, "env USER="), "appuser");
    assert_eq!(fact(&finished, "env LOGNAME="), "appuser");

    let finished = run(&["--groups", "metrics,3000", "--group", "deploy"]);
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "status Gid "), "2001 2001 2001 2001");
    assert_eq!(fact(&finished, "status Groups"), "2002 3000");

    // An empty value, here from the environment, clears them.
    let finished = with_test_etc(Pyinit::new().without_allow_root(), &scratch)
        .env("PYINIT_USER", "appuser:metrics")
        .env("PYINIT_GROUPS", "")
        .app(identity(&[]))
        .run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "status Gid "), "2002 2002 2002 2002");
    assert_eq!(fact(&finished, "status Groups"), "");
}

#[test]
fn real_groups_by_name_override_the_defaults() {
    let finished = Pyinit::new()
        .without_allow_root()
        .args(["--user", "nobody", "--groups", "users,daemon"])
        .app(identity(&[]))
        .run();
    finished.assert_exit_code(0);
    // Debian's fixed ids: daemon is 1, users is 100.
    assert_eq!(fact(&finished, "status Groups"), "1 100");
}

fn marker(scratch: &ScratchDir) -> PathBuf {
    scratch.0.join("app-ran")
}

fn touch(path: &Path) -> Vec<OsString> {
    vec!["/usr/bin/touch".into(), path.into()]
}

#[test]
fn root_without_user_is_refused_and_allow_root_allows_it() {
    let scratch = ScratchDir::new("root");
    let marker = marker(&scratch);
    for pyinit in [
        Pyinit::new().without_allow_root().app(touch(&marker)),
        Pyinit::new()
            .without_allow_root()
            .args(["--user", "root"])
            .app(touch(&marker)),
        Pyinit::new()
            .without_allow_root()
            .args(["--user", "0:100"])
            .app(touch(&marker)),
        // A health sidecar runs as root just as much.
        Pyinit::new().without_allow_root(),
    ] {
        let finished = pyinit.run();
        finished.assert_exit_code(2);
        let stderr = finished.stderr_text();
        assert_eq!(stderr.lines().count(), 1, "one line expected:\n{stderr}");
        assert!(
            stderr.contains("refusing to run as root")
                && stderr.contains("--user")
                && stderr.contains("runAsUser"),
            "{stderr}"
        );
        assert!(!marker.exists(), "the app ran as root");
    }

    for allowed in [
        Pyinit::new().without_allow_root().arg("--allow-root"),
        Pyinit::new()
            .without_allow_root()
            .env("PYINIT_ALLOW_ROOT", "1"),
    ] {
        let finished = allowed.app(identity(&[])).run();
        finished.assert_exit_code(0);
        assert_eq!(fact(&finished, "status Uid "), "0 0 0 0");
        assert_eq!(fact(&finished, "status NoNewPrivs "), "1");
    }
}

#[test]
fn allow_privilege_escalation_leaves_no_new_privs_unset() {
    let finished = Pyinit::new()
        .args(["--user", "nobody", "--allow-privilege-escalation"])
        .app(identity(&[]))
        .run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "status NoNewPrivs "), "0");
    assert_eq!(fact(&finished, "status Uid "), "65534 65534 65534 65534");

    let finished = Pyinit::new()
        .args(["--user", "nobody"])
        .env("PYINIT_ALLOW_PRIVILEGE_ESCALATION", "false")
        .app(identity(&[]))
        .run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "status NoNewPrivs "), "1");
}

#[test]
fn rlimit_reaches_the_app() {
    let finished = Pyinit::new()
        .args(["--user", "nobody", "--rlimit", "nofile=1024:2048"])
        .app(identity(&[]))
        .run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "limit nofile "), "1024 2048");

    let finished = Pyinit::new()
        .args(["--user", "nobody"])
        .env("PYINIT_RLIMIT", "nofile=512,core=0")
        .app(identity(&[]))
        .run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "limit nofile "), "512 512");
}

#[test]
fn core_dumps_are_off_unless_rlimit_core_is_given() {
    // The runtime hands pyinit core files without limit (as `docker run --ulimit core=-1` does):
    // the app still starts with a soft limit of 0, and keeps the hard one to raise it again.
    let unlimited_cores = || {
        Pyinit::new()
            .as_pid1()
            .wrapped_by(vec!["prlimit".into(), "--core=unlimited:unlimited".into()])
            .args(["--user", "nobody"])
    };
    let finished = unlimited_cores().app(identity(&["--raise-core"])).run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "limit core "), "0 unlimited");
    assert_eq!(fact(&finished, "raised core "), "unlimited unlimited");
    // `--rlimit core=...` wins over the default, both ways.
    let finished = unlimited_cores()
        .args(["--rlimit", "core=unlimited"])
        .app(identity(&[]))
        .run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "limit core "), "unlimited unlimited");
    let finished = unlimited_cores()
        .env("PYINIT_RLIMIT", "core=4096:8192")
        .app(identity(&[]))
        .run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "limit core "), "4096 8192");
}

#[test]
fn pyinit_itself_is_not_root_after_the_drop() {
    let mut running = Pyinit::new()
        .without_allow_root()
        .as_pid1()
        .args(["--user", "nobody"])
        .app(identity(&["--wait"]))
        .start();
    running.wait_ready();
    let status = std::fs::read_to_string(format!("/proc/{}/status", running.pyinit_pid)).unwrap();
    let line = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map(|value| value.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no {name} in pyinit's status:\n{status}"))
    };
    assert_eq!(line("Name"), "pyinit");
    assert_eq!(line("Uid"), "65534 65534 65534 65534");
    assert_eq!(line("Gid"), "65534 65534 65534 65534");
    assert_eq!(line("CapEff"), "0000000000000000");
    assert_eq!(line("CapPrm"), "0000000000000000");
    assert_eq!(line("NoNewPrivs"), "1");
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn a_non_root_pyinit_runs_as_itself_and_refuses_to_switch_users() {
    let scratch = ScratchDir::new("nonroot");
    let marker = marker(&scratch);
    let inner = |args: &[&str], app: Vec<OsString>| {
        let mut argv: Vec<OsString> = vec![crate::common::pyinit_bin().into()];
        argv.extend(args.iter().map(OsString::from));
        argv.push("--".into());
        argv.extend(app);
        argv
    };

    // The outer pyinit drops to nobody; the inner one starts as nobody and needs no --user.
    let finished = Pyinit::new()
        .without_allow_root()
        .args(["--user", "nobody"])
        .app(inner(&[], identity(&[])))
        .run();
    finished.assert_exit_code(0);
    assert_eq!(fact(&finished, "status Uid "), "65534 65534 65534 65534");

    let finished = Pyinit::new()
        .without_allow_root()
        .args(["--user", "nobody"])
        .app(inner(&["--user", "daemon"], touch(&marker)))
        .run();
    finished.assert_exit_code(2);
    let stderr = finished.stderr_text();
    assert!(
        stderr.contains("cannot become uid 1 gid 1")
            && stderr.contains("pyinit runs as uid 65534, not root"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the app ran although pyinit refused");
}

#[test]
fn bad_values_stop_pyinit_before_the_app_runs() {
    let scratch = ScratchDir::new("bad");
    let marker = marker(&scratch);
    // (arguments, environment, the flag and the value the message must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (&["--user", "nosuchuser"], &[], "--user", "nosuchuser"),
        (
            &["--user", "nobody:nosuchgroup"],
            &[],
            "--user",
            "nosuchgroup",
        ),
        (
            &["--user", "nobody", "--group", "nosuchgroup"],
            &[],
            "--group",
            "nosuchgroup",
        ),
        (
            &["--user", "nobody", "--groups", "users,nosuchgroup"],
            &[],
            "--groups",
            "nosuchgroup",
        ),
        (&["--user", "4294967295"], &[], "--user", "4294967295"),
        (
            &["--user", "nobody", "--umask", "0888"],
            &[],
            "--umask",
            "0888",
        ),
        (
            &["--user", "nobody", "--rlimit", "nofiles=1"],
            &[],
            "--rlimit",
            "nofiles=1",
        ),
        (
            &["--user", "nobody", "--rlimit", "nofile=2048:1024"],
            &[],
            "--rlimit",
            "nofile=2048:1024",
        ),
        (
            &[],
            &[("PYINIT_USER", "nosuchuser")],
            "--user",
            "nosuchuser",
        ),
        (
            &["--user", "nobody"],
            &[("PYINIT_UMASK", "abc")],
            "--umask",
            "abc",
        ),
    ];
    for (args, env, flag, value) in cases {
        let mut pyinit = Pyinit::new().without_allow_root().args(*args);
        for (key, env_value) in *env {
            pyinit = pyinit.env(*key, *env_value);
        }
        let finished = pyinit.app(touch(&marker)).run();
        finished.assert_exit_code(2);
        let stderr = finished.stderr_text();
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line expected:\n{stderr}"
        );
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{args:?} {env:?}: {stderr}"
        );
        assert!(!marker.exists(), "{args:?}: the app ran");
    }
}
