//! The static aarch64 binary, built on this x86_64 machine (linked by rust-lld, as
//! `.cargo/config.toml` says), run under qemu-user (Debian's qemu-user-static) as far as the
//! emulator allows: `--version`, `--help` and a usage error. qemu-user 7.2 answers
//! PR_SET_CHILD_SUBREAPER with EINVAL and runs a thread of its own inside the process, so a
//! supervising run fails pyinit's own checks there: the tests show that it refuses cleanly, before
//! the app starts, rather than running half set up.

use std::process::{Command, Output};
use std::time::Duration;

use super::{TempDir, cargo_version, output_within, static_binary};
use crate::common::PATIENCE;

const QEMU: &str = "qemu-aarch64-static";

fn under_qemu(args: &[&str]) -> Output {
    output_within(
        Command::new(QEMU).arg(static_binary("aarch64")).args(args),
        PATIENCE,
    )
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_aarch64_binary_is_static_and_answers_version_and_help_under_qemu() {
    let description = output_within(
        Command::new("file").arg("-L").arg(static_binary("aarch64")),
        Duration::from_secs(30),
    );
    let description = stdout_of(&description);
    assert!(description.contains("ARM aarch64"), "{description}");
    assert!(description.contains("statically linked"), "{description}");

    let version = under_qemu(&["--version"]);
    assert_eq!(version.status.code(), Some(0), "{}", stderr_of(&version));
    assert_eq!(
        stdout_of(&version).trim(),
        format!("pyinit {}", cargo_version())
    );

    let help = under_qemu(&["--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", stderr_of(&help));
    let help = stdout_of(&help);
    for expected in [
        "Usage: pyinit",
        "--grace-period",
        "PYINIT_GRACE_PERIOD",
        "--readiness",
    ] {
        assert!(
            help.contains(expected),
            "no {expected:?} in --help:\n{help}"
        );
    }
}

#[test]
fn a_usage_error_under_qemu_exits_2_naming_the_flag() {
    let output = under_qemu(&["--grace-period", "soon", "--", "/bin/true"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stdout_of(&output).is_empty(), "pyinit wrote to stdout");
    assert_eq!(stderr.trim().lines().count(), 1, "not one line:\n{stderr}");
    assert!(
        stderr.contains("--grace-period") && stderr.contains("soon"),
        "{stderr}"
    );
}

#[test]
fn under_qemu_a_supervising_run_is_refused_before_the_app_starts() {
    let scratch = TempDir::new("qemu");
    let marker = scratch.path.join("the-app-ran");
    let marker = marker.to_str().expect("a UTF-8 path");
    // Not PID 1: pyinit registers as child subreaper, which qemu-user answers with EINVAL.
    let output = under_qemu(&["--allow-root", "--", "/usr/bin/touch", marker]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("subreaper"), "{stderr}");

    // As PID 1 (no subreaper needed): qemu's own thread fails the one-thread privilege check.
    let output = output_within(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", QEMU])
            .arg(static_binary("aarch64"))
            .args(["--allow-root", "--", "/usr/bin/touch", marker]),
        PATIENCE,
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("thread"), "{stderr}");

    assert!(
        !scratch.path.join("the-app-ran").exists(),
        "the app ran under a pyinit that was not set up"
    );
}
