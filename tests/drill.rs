//! `pyinit drill`: the real rehearsal against the bundled app, a stubborn app, an app that drops
//! its requests, real gunicorn, uvicorn and waitress, and a program without a SIGTERM handler;
//! the report's verdicts, hints, JSON and exit codes.

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::http::free_port;
use crate::common::runc::{example, venv_bin};
use crate::common::{Finished, PYTHON, Pyinit, python_fixture};

fn drill() -> Pyinit {
    Pyinit::new().arg("drill").args(["--log-level", "warn"])
}

fn readiness_on(port: u16) -> [String; 4] {
    [
        "--readiness".to_owned(),
        format!("http://127.0.0.1:{port}/healthz"),
        "--readiness-period".to_owned(),
        "500ms".to_owned(),
    ]
}

fn slow_requests(port: u16, seconds: u32) -> [String; 2] {
    [
        "--drill-request".to_owned(),
        format!("http://127.0.0.1:{port}/slow?s={seconds}"),
    ]
}

fn verdict_line<'a>(finished: &'a Finished, check: &str) -> &'a str {
    finished
        .stdout
        .iter()
        .find(|line| line.contains(check) && (line.contains("PASS") || line.contains("FAIL")))
        .unwrap_or_else(|| panic!("no line for {check:?} in:\n{}", finished.stdout.join("\n")))
}

#[test]
fn the_bundled_example_app_passes_with_requests_in_flight() {
    let port = free_port();
    let finished = drill()
        .args(readiness_on(port))
        .args(slow_requests(port, 2))
        .env("PORT", port.to_string())
        .app(vec![PYTHON.into(), example("app/app.py").into_os_string()])
        .run();
    finished.assert_exit_code(0);
    assert!(
        finished
            .stdout
            .iter()
            .any(|line| line == "pyinit drill: PASS"),
        "{}",
        finished.stdout.join("\n")
    );
    let in_flight = verdict_line(&finished, "in-flight requests complete");
    assert!(
        in_flight.contains("PASS") && in_flight.contains("2 in flight at SIGTERM"),
        "{in_flight}"
    );
    assert!(verdict_line(&finished, "readiness drops at SIGTERM").contains("PASS"));
}

#[test]
fn an_app_that_ignores_sigterm_fails_with_the_hint() {
    let finished = drill()
        .args([
            "--drill-ready-after",
            "500ms",
            "--grace-period",
            "4s",
            "--drain-timeout",
            "2s",
        ])
        .app(python_fixture("ignore_term.py", &[]))
        .run();
    finished.assert_exit_code(1);
    assert!(verdict_line(&finished, "drains before the deadline").contains("FAIL"));
    assert!(verdict_line(&finished, "clean exit code").contains("137"));
    let stdout = finished.stdout.join("\n");
    assert!(
        stdout.contains("hint:") && stdout.contains("--signal-map TERM=INT"),
        "{stdout}"
    );
    assert!(stdout.contains("--hard-stop-signal QUIT"), "{stdout}");
}

#[test]
fn an_app_that_dies_at_once_fails_the_in_flight_check() {
    let port = free_port();
    let finished = drill()
        .args(readiness_on(port))
        .args(slow_requests(port, 3))
        .app(python_fixture(
            "abrupt_app.py",
            &["--port", &port.to_string()],
        ))
        .run();
    finished.assert_exit_code(1);
    let in_flight = verdict_line(&finished, "in-flight requests complete");
    assert!(in_flight.contains("FAIL"), "{in_flight}");
    let stdout = finished.stdout.join("\n");
    assert!(stdout.contains("died at once"), "{stdout}");
}

#[test]
fn a_gunicorn_app_passes_and_the_json_report_has_every_field() {
    let port = free_port();
    let gunicorn: Vec<OsString> = vec![
        venv_bin("gunicorn").into_os_string(),
        "--chdir".into(),
        example("gunicorn").into_os_string(),
        "--config".into(),
        example("gunicorn/gunicorn.conf.py").into_os_string(),
        "app:app".into(),
    ];
    let finished = drill()
        .args(readiness_on(port))
        .args(["--readiness-success-threshold", "2"])
        .args(slow_requests(port, 2))
        .args(["--grace-period", "20s", "--drain-timeout", "15s", "--json"])
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("WEB_CONCURRENCY", "2")
        .env("GRACEFUL_TIMEOUT", "10")
        .app(gunicorn)
        .run();
    finished.assert_exit_code(0);
    // The report is the last line on stdout; the app's own output may come before it.
    let report = finished.stdout.last().expect("a JSON report");
    let check = r#"
import json, sys
report = json.loads(sys.stdin.read())
fields = ["passed", "exit_code", "app_exit_code", "ready_ms", "readiness_503_ms", "stop_signal",
          "stop_signal_ms", "hard_stop_sent", "app_exit_ms", "killed_at_deadline", "left_behind",
          "stuck_frames", "grace_period_ms", "drain_timeout_ms", "pre_stop_delay_ms",
          "server_profile", "server_turned_off", "requests", "processes", "checks", "not_checked"]
missing = [field for field in fields if field not in report]
assert not missing, missing
assert report["passed"] is True, report
assert report["stop_signal"] == "TERM", report
assert report["server_profile"].startswith("gunicorn (from the command)"), report
assert report["server_turned_off"] is None, report
assert report["requests"]["in_flight_at_term"] >= 1, report
assert report["requests"]["failed"] == 0, report
assert report["stuck_frames"] == [], report
assert len(report["checks"]) == 8 and all(c["verdict"] != "FAIL" for c in report["checks"]), report
# The master and its two workers, each catching SIGTERM; the workers in the master's group.
master, *workers = report["processes"]
assert master["app"] is True and master["on_stop_signal"] == "caught", master
assert {"HUP", "INT", "QUIT", "TERM", "TTIN", "TTOU"} <= set(master["catches"]), master
assert len(workers) == 2, report["processes"]
assert all(w["on_stop_signal"] == "caught" and w["in_app_group"] and not w["app"] for w in workers)
assert any("2 other process(es)" in line for line in report["not_checked"]), report["not_checked"]
print("json ok")
"#;
    let mut python = Command::new(PYTHON)
        .args(["-c", check])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    python
        .stdin
        .take()
        .unwrap()
        .write_all(report.as_bytes())
        .unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_drill_without_a_way_to_know_readiness_is_a_usage_error() {
    let finished = drill().app(vec!["/bin/true".into()]).run();
    finished.assert_exit_code(2);
    let stderr = finished.stderr_text();
    assert!(
        stderr.contains("--drill-ready-after") && stderr.contains("--readiness"),
        "{stderr}"
    );
    let finished = drill().args(["--drill-ready-after", "1s"]).run();
    finished.assert_exit_code(2);
    assert!(
        finished.stderr_text().contains("command"),
        "{}",
        finished.stderr_text()
    );
    let finished = drill()
        .args([
            "--drill-ready-after",
            "1s",
            "--drill-request",
            "tcp://127.0.0.1:1",
        ])
        .app(vec!["/bin/true".into()])
        .run();
    finished.assert_exit_code(2);
    assert!(
        finished.stderr_text().contains("--drill-request"),
        "{}",
        finished.stderr_text()
    );
}

#[test]
fn requests_sent_during_the_pre_stop_delay_are_served() {
    // A load balancer keeps sending until the endpoint is gone; the pre-stop delay keeps the app
    // serving them, and the drill sends them as such a load balancer would.
    let port = free_port();
    let finished = drill()
        .args(readiness_on(port))
        .args(["--pre-stop-delay", "1s", "--drill-request"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .env("PORT", port.to_string())
        .app(vec![PYTHON.into(), example("app/app.py").into_os_string()])
        .run();
    finished.assert_exit_code(0);
    let in_flight = verdict_line(&finished, "in-flight requests complete");
    let sent_during_drain: usize = in_flight
        .split(", ")
        .find_map(|part| part.strip_suffix(" sent during the drain)"))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count in {in_flight:?}"));
    assert!(sent_during_drain > 0, "{in_flight}");
    assert!(in_flight.contains("PASS"), "{in_flight}");
    assert!(
        verdict_line(&finished, "app got its stop signal").contains("after 1"),
        "{in_flight}"
    );
}

#[test]
fn a_health_addr_given_as_the_default_is_kept() {
    // The drill moves its health server to a free loopback port only when --health-addr is left
    // at its default; an address the user gives, even the default's own, is used as given. In a
    // network namespace of its own the fixed port is free.
    let finished = Pyinit::new()
        .arg("drill")
        .private_network()
        .args(["--log-level", "info", "--health-addr", "0.0.0.0:8558"])
        .args(["--drill-ready-after", "100ms"])
        .app(vec!["/bin/true".into()])
        .run();
    let stderr = finished.stderr_text();
    assert!(
        stderr.contains("health server listening addr=0.0.0.0:8558"),
        "{stderr}"
    );
    let finished = Pyinit::new()
        .arg("drill")
        .env_clear()
        .env("PYINIT_ALLOW_ROOT", "true")
        .private_network()
        .args(["--log-level", "info", "--drill-ready-after", "100ms"])
        .app(vec!["/bin/true".into()])
        .run();
    let stderr = finished.stderr_text();
    let listening = stderr
        .lines()
        .find(|line| line.contains("health server listening"))
        .unwrap_or_else(|| panic!("no listening line:\n{stderr}"));
    assert!(
        listening.contains("addr=127.0.0.1:") && !listening.contains(":8558"),
        "{listening}"
    );
}

#[test]
fn the_supervisors_flags_may_come_before_drill() {
    let finished = Pyinit::new()
        .args(["--grace-period", "4s", "--drain-timeout", "2s"])
        .args([
            "drill",
            "--log-level",
            "warn",
            "--drill-ready-after",
            "100ms",
        ])
        .app(vec!["/bin/sleep".into(), "30".into()])
        .run();
    let stdout = finished.stdout.join("\n");
    assert!(
        stdout.contains("grace period 4s, drain deadline 2s"),
        "{stdout}"
    );
    // sleep has no SIGTERM handler and dies of it: no drain.
    finished.assert_exit_code(1);
}

/// waitress-serve on 127.0.0.1:`port`, serving the WSGI example app from the working directory
/// (waitress-serve imports from it; run it in `example("gunicorn")`).
fn waitress_example(port: u16) -> Vec<OsString> {
    vec![
        venv_bin("waitress-serve").into_os_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}").into(),
        "app:app".into(),
    ]
}

/// The report's notes and hint under a check: the lines after its verdict line, up to the next.
fn lines_under<'a>(finished: &'a Finished, check: &str) -> Vec<&'a str> {
    (finished.stdout.iter())
        .skip_while(|line| !(line.contains(check) && line.contains("FAIL")))
        .skip(1)
        .take_while(|line| line.starts_with("        "))
        .map(String::as_str)
        .collect()
}

#[test]
fn waitress_dies_of_sigterm_and_the_drill_names_it_and_the_fix() {
    // waitress 3.0.2 has no SIGTERM handler: without its profile the kernel kills it at once,
    // cutting the request in flight, and the exit code 143 is no clean stop.
    let port = free_port();
    let finished = drill()
        .args(["--server", "none"])
        .args(readiness_on(port))
        .args(slow_requests(port, 3))
        .current_dir(example("gunicorn"))
        .app(waitress_example(port))
        .run();
    finished.assert_exit_code(1);
    let stdout = finished.stdout.join("\n");
    let handles = verdict_line(&finished, "app handles its stop signal");
    assert!(
        handles.contains("FAIL") && handles.contains("has no handler for SIGTERM and died of it"),
        "{stdout}"
    );
    let under = lines_under(&finished, "app handles its stop signal").join("\n");
    assert!(
        under.contains("(the app) dies of SIGTERM (no handler): ")
            && under.contains("waitress-serve --listen 127.0.0.1:"),
        "{stdout}"
    );
    // The fix: the profile --server none turned off, or the flag that does its part.
    assert!(
        under.contains("hint: --server waitress (or leave --server at auto")
            && under.contains("--signal-map TERM=INT"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  server profile: none (--server none; the command runs waitress)"),
        "{stdout}"
    );
    let exit_code = verdict_line(&finished, "clean exit code");
    assert!(
        exit_code.contains("FAIL")
            && exit_code.contains("143: the app died of SIGTERM, which it does not catch"),
        "{stdout}"
    );
    assert!(
        verdict_line(&finished, "in-flight requests complete").contains("FAIL"),
        "{stdout}"
    );
}

#[test]
fn waitress_with_its_profile_drains_on_sigint_and_passes() {
    let port = free_port();
    let finished = drill()
        .args(readiness_on(port))
        .args(slow_requests(port, 2))
        .current_dir(example("gunicorn"))
        .app(waitress_example(port))
        .run();
    let stdout = finished.stdout.join("\n");
    finished.assert_exit_code(0);
    // The report shows the profile as pyinit's start-up line does.
    assert!(
        stdout.contains("  server profile: waitress (from the command): stop signal INT"),
        "{stdout}"
    );
    assert!(
        verdict_line(&finished, "app got its stop signal").contains("SIGINT"),
        "{stdout}"
    );
    assert!(
        verdict_line(&finished, "app handles its stop signal").contains("SIGINT caught by the app"),
        "{stdout}"
    );
    let in_flight = verdict_line(&finished, "in-flight requests complete");
    assert!(
        in_flight.contains("PASS") && in_flight.contains("2 of 2 succeeded"),
        "{stdout}"
    );
}

#[test]
fn a_program_without_a_sigterm_handler_fails_the_drill() {
    let finished = drill()
        .args(["--server", "none", "--drill-ready-after", "500ms"])
        .app(vec![
            PYTHON.into(),
            "-c".into(),
            "import time; time.sleep(60)".into(),
        ])
        .run();
    finished.assert_exit_code(1);
    let stdout = finished.stdout.join("\n");
    assert!(
        verdict_line(&finished, "app handles its stop signal").contains("FAIL"),
        "{stdout}"
    );
    let under = lines_under(&finished, "app handles its stop signal").join("\n");
    assert!(
        under.contains(&format!(
            "(the app) dies of SIGTERM (no handler): {PYTHON} -c import time; time.sleep(60)"
        )),
        "{stdout}"
    );
    assert!(under.contains("give the app a SIGTERM handler"), "{stdout}");
    // Without a request in flight, the report says what it could not check.
    assert!(
        stdout.contains(
            "not checked:\n        whether in-flight requests complete: no --drill-request"
        ),
        "{stdout}"
    );
}

#[test]
fn uvicorn_catches_sigterm_drains_and_re_raises_it_and_passes() {
    // uvicorn (one process) catches SIGTERM, drains, then re-raises it: exit 143, which the
    // drill counts as clean because the app caught the signal first; its profile makes it 0.
    let uvicorn = |port: u16, pyinit_args: &[&str]| {
        drill()
            .args(pyinit_args)
            .args(readiness_on(port))
            .args(slow_requests(port, 2))
            .env("WEB_CONCURRENCY", "1")
            .app(vec![
                venv_bin("uvicorn").into_os_string(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string().into(),
                "--app-dir".into(),
                example("uvicorn").into_os_string(),
                "app:app".into(),
            ])
            .run()
    };
    for (pyinit_args, clean_exit) in [
        (
            &["--server", "none"][..],
            "143: the app caught SIGTERM and ended by it after draining",
        ),
        (&[][..], "PASS  clean exit code              0"),
    ] {
        let finished = uvicorn(free_port(), pyinit_args);
        let stdout = finished.stdout.join("\n");
        finished.assert_exit_code(0);
        assert!(
            verdict_line(&finished, "app handles its stop signal")
                .contains("SIGTERM caught by the app, which then ended by it"),
            "{stdout}"
        );
        let exit_code = verdict_line(&finished, "clean exit code");
        assert!(
            exit_code.contains("PASS") && exit_code.contains(clean_exit),
            "{stdout}"
        );
        assert!(
            verdict_line(&finished, "in-flight requests complete").contains("PASS"),
            "{stdout}"
        );
    }
}

/// The first `sh` block of docs/drill.md: the example, its continuation lines joined.
fn drill_example_of_the_docs() -> String {
    let page = std::fs::read_to_string(crate::common::runc::repo().join("docs/drill.md"))
        .expect("read docs/drill.md");
    let block: Vec<&str> = page
        .lines()
        .skip_while(|line| *line != "```sh")
        .skip(1)
        .take_while(|line| *line != "```")
        .collect();
    let command = block.join("\n").replace("\\\n", " ");
    assert!(
        command.starts_with("pyinit drill "),
        "docs/drill.md's first sh block is not the drill example: {command:?}"
    );
    command
}

/// docs/drill.md's example runs as written, by `sh` in examples/gunicorn (where the page says to
/// run it) with `pyinit` (the binary under test) and the end-to-end venv's gunicorn on PATH and
/// no PYINIT_* variable: as root, as in CI or a container, and as an ordinary user (nobody, with
/// no capabilities).
#[test]
fn the_drill_example_of_the_docs_runs_as_written_as_root_and_not() {
    let venv_bin_folder = venv_bin("gunicorn")
        .parent()
        .expect("the venv's bin folder")
        .to_owned();
    let command = drill_example_of_the_docs();
    for (how, stdout) in
        drill_passes_as_root_and_nobody(&command, &example("gunicorn"), Some(&venv_bin_folder))
    {
        assert!(
            stdout.contains("2 in flight at SIGTERM"),
            "{how}: no requests in flight:\n{stdout}"
        );
    }
}

/// Runs a drill command as a page writes it, by `sh` in `dir`, with `pyinit` (the binary under
/// test) and `more_path`, if any, on PATH and no other variable: as root, as in CI or a container, and as
/// nobody with no capabilities. Each run has a network namespace of its own, its loopback brought
/// up, so that a page's fixed port is free beside other tests. Asserts each exits 0 with `pyinit
/// drill: PASS`, and gives each run's stdout, named.
pub fn drill_passes_as_root_and_nobody(
    command: &str,
    dir: &std::path::Path,
    more_path: Option<&std::path::Path>,
) -> Vec<(&'static str, String)> {
    let bin = crate::dist::TempDir::new("drill-command");
    std::os::unix::fs::symlink(crate::common::pyinit_bin(), bin.path.join("pyinit"))
        .expect("link pyinit into the PATH folder");
    let mut folders = vec![bin.path.clone()];
    folders.extend(more_path.map(std::path::Path::to_path_buf));
    let path = std::env::join_paths(folders)
        .expect("a PATH of the folders")
        .into_string()
        .expect("a UTF-8 PATH")
        + ":"
        + crate::common::STANDARD_PATH;
    let as_nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ];
    let mut outputs = Vec::new();
    for (how, user) in [("as root", &[][..]), ("as nobody", &as_nobody[..])] {
        let output = crate::dist::output_within(
            Command::new("unshare")
                .args([
                    "--net",
                    "sh",
                    "-c",
                    "ip link set lo up && exec \"$@\"",
                    "sh",
                ])
                .args(user)
                .args(["sh", "-c", command])
                .current_dir(dir)
                .env_clear()
                .env("PATH", &path)
                // Keeps the folder free of __pycache__ when root runs it.
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .stdin(Stdio::null()),
            std::time::Duration::from_secs(180),
        );
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{how}: {command}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            stdout.lines().any(|line| line == "pyinit drill: PASS"),
            "{how}:\n{stdout}"
        );
        outputs.push((how, stdout));
    }
    outputs
}

/// Seconds since midnight of a JSON log line's `"timestamp":"...THH:MM:SS.ffffffZ"`.
fn logged_at(line: &str) -> f64 {
    let stamp = line
        .split("\"timestamp\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    let time = stamp.split('T').nth(1).unwrap().trim_end_matches('Z');
    time.split(':')
        .map(|part| part.parse::<f64>().unwrap())
        .fold(0.0, |total, part| total * 60.0 + part)
}

#[test]
fn a_pre_stop_hook_is_played_before_the_stop_signal_and_the_drain_judged_against_what_it_leaves() {
    // An app that needs 4.5s after its stop signal, SIGINT here, to stop.
    let app = |port: u16| {
        python_fixture(
            "http_app.py",
            &[
                "--port",
                &port.to_string(),
                "--stop-on",
                "INT",
                "--stop-after",
                "4.5",
            ],
        )
    };
    let rehearse = |port: u16, extra: &[&str]| {
        Pyinit::new()
            .arg("drill")
            .args(["--log-format", "json", "--log-level", "info"])
            .args(readiness_on(port))
            .args(["--stop-signal", "INT", "--grace-period", "8s"])
            .args(extra)
            .app(app(port))
            .run()
    };
    // 8s of grace: a 6400ms drain deadline, which the app makes.
    let finished = rehearse(free_port(), &[]);
    finished.assert_exit_code(0);
    assert!(verdict_line(&finished, "readiness drops at SIGINT").contains("PASS"));
    assert!(verdict_line(&finished, "drains before the deadline").contains("deadline 6400ms)"));

    // A 3s preStop sleep first: the stop signal comes 3s into the grace period, 5s before the
    // kubelet's SIGKILL, and the drain deadline is 4s: too short for this app.
    let finished = rehearse(free_port(), &["--pre-stop-hook", "3s"]);
    finished.assert_exit_code(1);
    let stdout = finished.stdout.join("\n");
    assert!(
        stdout.contains("grace period 8s, preStop hook 3s, drain deadline 4s, pre-stop delay 0s"),
        "{stdout}"
    );
    let drain = verdict_line(&finished, "drains before the deadline");
    assert!(
        drain.contains("FAIL")
            && drain.contains("still running at the 4s deadline")
            && drain.contains(
                "the kubelet's SIGKILL at 5s: the 8s grace period less the 3s preStop hook"
            ),
        "{drain}"
    );
    // The hook was played: 3s between its start and the stop signal, with the app still serving.
    let line_with = |needle: &str| -> &String {
        (finished.stderr.iter())
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{}", finished.stderr_text()))
    };
    let hook_started = logged_at(line_with("running the preStop hook"));
    let signal_sent = logged_at(line_with("drill: sending SIGINT"));
    let hook = signal_sent - hook_started;
    assert!((2.95..4.0).contains(&hook), "the hook took {hook}s");
    assert!(verdict_line(&finished, "readiness drops at SIGINT").contains("PASS"));
}
