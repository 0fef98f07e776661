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

#[test]
fn usage_errors_of_both_modes_name_the_flag_on_one_line() {
    for (name, args, flag, value) in [
        (
            "hard-stop",
            &["--hard-stop-signal", "QUIT"][..],
            "--hard-stop-after",
            "--hard-stop-after",
        ),
        ("drill-bogus", &["drill", "--bogus"][..], "--bogus", "bogus"),
        (
            "drill-flag-alone",
            &["--drill-ready-after", "1s"][..],
            "--drill-ready-after",
            "drill-ready-after",
        ),
        (
            "drill-concurrency",
            &[
                "drill",
                "--drill-ready-after",
                "1s",
                "--drill-concurrency",
                "0",
            ][..],
            "--drill-concurrency",
            "0",
        ),
    ] {
        assert_usage_error(Pyinit::new().args(args), &marker(name), flag, value);
    }
}

#[test]
fn a_command_named_drill_after_the_double_dash_runs() {
    let dir = std::env::temp_dir().join(format!("pyinit-drill-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = marker("named-drill");
    let script = dir.join("drill");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n/usr/bin/touch '{}'\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.display(), crate::common::STANDARD_PATH);
    let finished = Pyinit::new()
        .env("PATH", path)
        .app(vec!["drill".into()])
        .run();
    std::fs::remove_dir_all(&dir).unwrap();
    finished.assert_exit_code(0);
    assert!(marker.exists(), "the program named drill did not run");
    std::fs::remove_file(&marker).unwrap();
}

#[test]
fn help_and_version_of_both_modes_answer_on_stdout() {
    let version = format!("{}\n", env!("CARGO_PKG_VERSION"));
    for (args, first_line) in [
        (&["--help"][..], "A small PID 1 for Python services"),
        (&["drill", "--help"][..], "Rehearse a Kubernetes shutdown"),
        (&["--version"][..], "pyinit "),
        (&["drill", "--version"][..], "pyinit drill "),
    ] {
        let output = std::process::Command::new(crate::common::pyinit_bin())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(output.stderr.is_empty(), "{args:?} wrote to stderr");
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(stdout.starts_with(first_line), "{args:?}: {stdout}");
        if args.contains(&"--version") {
            assert!(stdout.ends_with(&version), "{args:?}: {stdout}");
            assert_eq!(stdout.lines().count(), 1, "{args:?}: {stdout}");
        }
    }
}

#[test]
fn a_stop_signal_pyinit_cannot_catch() {
    let marker = marker("stop-signal");
    assert_usage_error(
        Pyinit::new().args(["--stop-signal", "KILL"]),
        &marker,
        "--stop-signal",
        "KILL",
    );
}

#[test]
fn a_term_entry_of_the_signal_map_that_never_applies() {
    let marker = marker("term-entry");
    assert_usage_error(
        Pyinit::new().args(["--stop-signal", "INT", "--signal-map", "TERM=QUIT"]),
        &marker,
        "--signal-map",
        "TERM=QUIT",
    );
}

#[test]
fn a_pre_stop_hook_that_leaves_less_than_the_kubelets_two_seconds() {
    let marker = marker("pre-stop-hook");
    assert_usage_error(
        Pyinit::new().args(["--grace-period", "30s", "--pre-stop-hook", "29s"]),
        &marker,
        "--pre-stop-hook",
        "29s",
    );
}

#[test]
fn a_drain_timeout_past_what_the_pre_stop_hook_leaves() {
    let marker = marker("hook-drain");
    assert_usage_error(
        Pyinit::new().args(["--pre-stop-hook", "10s", "--drain-timeout", "25s"]),
        &marker,
        "--drain-timeout",
        "25s",
    );
}

#[test]
fn unknown_server_lists_the_known_ones() {
    for pyinit in [
        Pyinit::new().args(["--server", "tornado"]),
        Pyinit::new().env("PYINIT_SERVER", "tornado"),
    ] {
        let marker = marker("server");
        let finished = pyinit.app(touch(&marker)).run();
        finished.assert_exit_code(2);
        let stderr = finished.stderr_text();
        assert_eq!(stderr.lines().count(), 1, "one line expected:\n{stderr}");
        assert!(
            stderr.contains("--server")
                && stderr.contains("'tornado'")
                && stderr.contains(
                    "auto, none or one of gunicorn, uvicorn, hypercorn, granian, uwsgi, \
                     waitress, daphne, celery"
                ),
            "{stderr}"
        );
        assert!(!marker.exists(), "the app ran with a bad --server");
    }
}

#[test]
fn a_misspelt_flag_gets_the_similar_one_on_the_same_line() {
    for (name, args, typo, tip) in [
        (
            "typo",
            &["--readines", "http://127.0.0.1:8000/"][..],
            "--readines",
            "tip: a similar argument exists: '--readiness'",
        ),
        (
            "drill-typo",
            &["drill", "--drill-reqest", "http://127.0.0.1:8000/"][..],
            "--drill-reqest",
            "tip: a similar argument exists: '--drill-request'",
        ),
    ] {
        let marker = marker(name);
        let finished = Pyinit::new().args(args).app(touch(&marker)).run();
        finished.assert_exit_code(2);
        let stderr = finished.stderr_text();
        assert_eq!(stderr.lines().count(), 1, "one line expected:\n{stderr}");
        assert!(
            stderr.contains(&format!("unexpected argument '{typo}' found; {tip}")),
            "{stderr}"
        );
        assert!(!marker.exists(), "the app ran after a misspelt flag");
    }
}
