//! Bad flag values: exit 2, one line that names the flag and the value, and no app started.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::common::Pyinit;

fn marker(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pyinit-marker-{}-{name}", std::process::id()))
}

fn touch(path: &std::path::Path) -> Vec<OsString> {
    vec!["/usr/bin/touch".into(), path.into()]
}

fn assert_usage_error(pyinit: Pyinit, marker: &std::path::Path, flag: &str, value: &str) {
    let finished = pyinit.app(touch(marker)).run();
    finished.assert_exit_code(2);
    let stderr = finished.stderr_text();
    assert_eq!(stderr.lines().count(), 1, "one line expected:\n{stderr}");
    assert!(stderr.contains(flag) && stderr.contains(value), "{stderr}");
    assert!(
        !marker.exists(),
        "the app ran although the configuration was bad"
    );
}

#[test]
fn bad_grace_period() {
    let marker = marker("grace");
    assert_usage_error(
        Pyinit::new().args(["--grace-period", "abc"]),
        &marker,
        "--grace-period",
        "abc",
    );
}

#[test]
fn drain_timeout_longer_than_the_grace_period() {
    let marker = marker("drain");
    assert_usage_error(
        Pyinit::new().args(["--grace-period", "10s", "--drain-timeout", "40s"]),
        &marker,
        "--drain-timeout",
        "40s",
    );
}

#[test]
fn unknown_signal_in_the_map() {
    let marker = marker("map");
    assert_usage_error(
        Pyinit::new().args(["--signal-map", "TERM=NOPE"]),
        &marker,
        "--signal-map",
        "TERM=NOPE",
    );
}

#[test]
fn bad_value_from_the_environment() {
    let marker = marker("env");
    assert_usage_error(
        Pyinit::new().env("PYINIT_GRACE_PERIOD", "abc"),
        &marker,
        "--grace-period",
        "abc",
    );
}

#[test]
fn a_good_configuration_starts_the_app() {
    let marker = marker("good");
    Pyinit::new().app(touch(&marker)).run().assert_exit_code(0);
    assert!(marker.exists(), "the app should have run");
    std::fs::remove_file(&marker).unwrap();
}

#[test]
fn unknown_flag_is_a_usage_error_not_a_command() {
    let marker = marker("bogus");
    assert_usage_error(Pyinit::new().arg("--bogus"), &marker, "--bogus", "bogus");
}

#[test]
fn an_absurdly_long_grace_period_is_refused_not_a_crash() {
    let marker = marker("huge");
    assert_usage_error(
        Pyinit::new().args(["--grace-period", "99999999999h"]),
        &marker,
        "--grace-period",
        "99999999999h",
    );
}

#[test]
fn a_flag_on_the_command_line_wins_over_its_variable() {
    // The variable's value would be refused; the flag's is used instead, so the app runs.
    let marker = marker("flag-wins");
    Pyinit::new()
        .env("PYINIT_GRACE_PERIOD", "abc")
        .args(["--grace-period", "10s"])
        .app(touch(&marker))
        .run()
        .assert_exit_code(0);
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
}
