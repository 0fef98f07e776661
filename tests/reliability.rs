//! Nothing lost at the edges: a signal during set-up, a health port flooded under a low
//! open-files limit, what the health port may show, a stopped app at the drain, and errors that
//! name their cause. Each test runs the real binary, as PID 1 of a fresh PID namespace where the
//! kernel's rules for PID 1 apply, or in runc.

use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::http::{free_port, get, health_addr, metric};
use crate::common::runc::Bundle;
use crate::common::{
    PATIENCE, Pyinit, Running, children_of, fixture, poll_until, process_state, python_fixture,
    send_signal,
};
use crate::dist::TempDir;

/// Fills `dir` with `count` empty `counter_N.db` files, as a restarted container's emptyDir holds
/// them: pyinit removes each before the app starts, so set-up lasts as long as that takes.
pub fn seed_stale_db_files(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for n in 0..count {
        std::fs::File::create(dir.join(format!("counter_{n}.db"))).unwrap();
    }
}

/// The directory's modification time, in nanoseconds: each unlink in it moves it.
pub fn modified_ns(dir: &Path) -> i128 {
    let metadata = std::fs::metadata(dir).unwrap();
    i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec())
}

/// Whether any `*.db` file is left in `dir`.
pub fn has_db_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .any(|entry| entry.file_name().to_string_lossy().ends_with(".db"))
}

/// Stale files enough for set-up to last a good part of a second: the window for the TERM.
const STALE_FILES: usize = 40_000;

#[test]
fn a_sigterm_during_set_up_waits_for_the_handlers_and_drains() {
    let scratch = TempDir::new("early-term");
    let dir = scratch.path.join("multiproc");
    seed_stale_db_files(&dir, STALE_FILES);
    let seeded_at = modified_ns(&dir);
    // sleep has no handler of its own: the TERM pyinit forwards ends it, 143, at once.
    let mut running = Pyinit::new()
        .as_pid1()
        .env("PROMETHEUS_MULTIPROC_DIR", &dir)
        .app(vec!["sleep".into(), "1000".into()])
        .start();
    // pyinit is in the middle of its set-up once it has begun to empty the directory.
    poll_until(PATIENCE, "pyinit to begin removing stale files", || {
        modified_ns(&dir) != seeded_at
    });
    running.signal("TERM");
    assert!(
        has_db_files(&dir),
        "set-up was over before the TERM was sent: the test needs more than {STALE_FILES} files"
    );
    let status = running.wait_exit(PATIENCE);
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "the app's code after the drain\nstderr:\n{}",
        running.stderr.joined()
    );
    running.stderr.wait_for("drain started", Duration::ZERO);
    assert!(!has_db_files(&dir), "set-up was cut short");
}

/// The same in a container: `runc kill ID TERM` while pyinit is still emptying the pod's volume.
#[test]
fn runc_kill_term_during_set_up_drains_the_container() {
    let scratch = TempDir::new("early-term-runc");
    let volume = scratch.path.join("volume");
    seed_stale_db_files(&volume, STALE_FILES);
    let seeded_at = modified_ns(&volume);
    let mut container = Bundle::new()
        .env("PROMETHEUS_MULTIPROC_DIR", "/metrics")
        .volume(&volume, "/metrics")
        .app(["sleep", "1000"])
        .start();
    poll_until(PATIENCE, "pyinit to begin removing stale files", || {
        modified_ns(&volume) != seeded_at
    });
    container.kill("TERM");
    assert!(
        has_db_files(&volume),
        "set-up was over before the TERM was sent: the test needs more than {STALE_FILES} files"
    );
    let exit_code = container.wait_exit(PATIENCE);
    assert_eq!(
        exit_code,
        128 + 15,
        "the app's code after the drain\nstderr:\n{}",
        container.stderr.joined()
    );
    container.stderr.wait_for("drain started", Duration::ZERO);
}

/// `pyinit_probe_results_total` for one probe and result.
fn probe_results(addr: std::net::SocketAddr, probe: &str, result: &str) -> f64 {
    metric(
        addr,
        &format!("pyinit_probe_results_total{{probe=\"{probe}\",result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

/// How many times pyinit warned that it could not accept a health connection, as of now: a
/// forwarded WINCH (which the apps here ignore) is logged after every line before it, so once its
/// line is in, they are too.
fn accept_warnings(running: &Running) -> usize {
    running.signal("WINCH");
    running.stderr.wait_for("signal forwarded", PATIENCE);
    (running.stderr.all().iter())
        .filter(|line| line.contains("health server cannot accept"))
        .count()
}

#[test]
fn a_low_open_files_limit_leaves_room_for_the_kubelet_and_the_probes() {
    let port = free_port();
    let running = Pyinit::new()
        .as_pid1()
        .args(["--rlimit", "nofile=128"])
        .args(["--readiness", &format!("http://127.0.0.1:{port}/healthz")])
        .args(["--readiness-period", "200ms", "--liveness-period", "200ms"])
        .arg("--liveness")
        .arg(format!(
            "exec:/usr/bin/python3 {} ok",
            fixture("exec_probe.py").display()
        ))
        .app(python_fixture(
            "http_app.py",
            &["--port", &port.to_string()],
        ))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(PATIENCE, "/readyz to answer 200", || {
        get(addr, "/readyz").status == 200
    });
    // More connections than pyinit may open files, held open and silent.
    let held: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // The first answer may wait behind the accepts of those; later ones must not.
    let asked = Instant::now();
    let first = get(addr, "/readyz");
    assert_eq!(first.status, 200, "{first:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    for _ in 0..3 {
        let asked = Instant::now();
        let answer = get(addr, "/readyz");
        let took = asked.elapsed();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    }
    // The probes keep passing: several more successes of each, and not one more failure.
    let results =
        |result| ["readiness", "liveness"].map(|probe| probe_results(addr, probe, result));
    let (successes, failures, timeouts) =
        (results("success"), results("failure"), results("timeout"));
    poll_until(PATIENCE, "three more successes of each probe", || {
        let now = results("success");
        now[0] >= successes[0] + 3.0 && now[1] >= successes[1] + 3.0
    });
    assert_eq!(
        (results("failure"), results("timeout")),
        (failures, timeouts),
        "probes failed\nstderr:\n{}",
        running.stderr.joined()
    );
    // An episode of exhaustion is worth one warning, not one per failed accept.
    assert!(
        accept_warnings(&running) <= 1,
        "{}",
        running.stderr.joined()
    );
    drop(held);
}

/// Out of descriptors all the same (here the limit is lowered from outside below what pyinit
/// holds): each accept that fails closes the least recently used connection and tries again, and
/// the whole episode is one warning.
#[test]
fn out_of_file_descriptors_the_health_server_makes_room_and_warns_once() {
    let running = Pyinit::new()
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    let held: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    poll_until(PATIENCE, "pyinit to accept the connections", || {
        std::fs::read_dir(format!("/proc/{}/fd", running.pyinit_pid))
            .unwrap()
            .count()
            > 120
    });
    let lowered = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", running.pyinit_pid))
        .arg("--nofile=64:64")
        .status()
        .unwrap();
    assert!(lowered.success());
    for _ in 0..5 {
        let asked = Instant::now();
        let answer = get(addr, "/readyz");
        let took = asked.elapsed();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(took < Duration::from_secs(2), "/readyz took {took:?}");
    }
    assert_eq!(accept_warnings(&running), 1, "{}", running.stderr.joined());
    drop(held);
}

/// The secrets a probe meets: an exec probe's output and a redirect's user info and query.
const SECRETS: [&str; 3] = ["hunter2", "token", "s3cret"];

/// The health port is unauthenticated: it says what kind of failure, never what a probe printed
/// nor where a redirect led. pyinit's log has the whole of it.
#[test]
fn the_health_port_shows_the_kind_of_failure_and_the_log_the_rest() {
    let port = free_port();
    let location = format!("http://user:hunter2@127.0.0.1:{port}/other?token=s3cret");
    let running = Pyinit::new()
        .as_pid1()
        .args(["--readiness", &format!("http://127.0.0.1:{port}/healthz")])
        .args(["--readiness-period", "200ms", "--liveness-period", "200ms"])
        .arg("--liveness")
        .arg(format!(
            "exec:/usr/bin/python3 {} secret",
            fixture("exec_probe.py").display()
        ))
        .app(python_fixture(
            "http_app.py",
            &[
                "--port",
                &port.to_string(),
                "--status",
                "302",
                "--location",
                &location,
            ],
        ))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(
        PATIENCE,
        "both probes to have failed after the app started",
        || {
            let livez = get(addr, "/livez?verbose").body;
            let readyz = get(addr, "/readyz?verbose").body;
            livez.contains("[-]liveness failed: exit code 1 (last probe")
                && readyz.contains("[-]readiness failed: status 404 (after 1 redirect) (last probe")
        },
    );
    for path in [
        "/livez?verbose",
        "/healthz?verbose",
        "/livez/liveness",
        "/readyz?verbose",
        "/readyz/readiness",
        "/metrics",
    ] {
        let body = get(addr, path).body;
        for secret in SECRETS {
            assert!(!body.contains(secret), "{path} shows {secret:?}:\n{body}");
        }
    }
    running.stderr.wait_for(
        "exit code 1: cannot log in to the broker with password hunter2",
        PATIENCE,
    );
    running
        .stderr
        .wait_for("/other?token=s3cret (after 1 redirect)", PATIENCE);
}

/// An exec probe that writes nothing but NUL bytes: its output is no output, on the health port
/// and in the log, not 10 KiB of spaces.
#[test]
fn nul_bytes_from_an_exec_probe_become_nothing() {
    let running = Pyinit::new()
        .as_pid1()
        .args(["--liveness-period", "200ms", "--liveness"])
        .arg(format!(
            "exec:/usr/bin/python3 {} nul",
            fixture("exec_probe.py").display()
        ))
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    running.stderr.wait_for("not live", PATIENCE);
    let livez = get(addr, "/livez?verbose").body;
    assert!(
        livez.contains("[-]liveness failed: exit code 1 (last probe"),
        "{livez}"
    );
    assert!(livez.len() < 512, "{livez}");
    let runs_of_blanks = |text: &str| text.contains(&" ".repeat(64));
    assert!(!runs_of_blanks(&get(addr, "/livez/liveness").body));
    let log = running.stderr.joined();
    assert!(!runs_of_blanks(&log) && !log.contains('\0'), "{log}");
}

/// The app's host pid: pyinit's one child, once it has printed its ready line.
fn stopped_app(running: &Running) -> u32 {
    running.wait_ready();
    let app = children_of(running.pyinit_pid)
        .into_iter()
        .next()
        .expect("the app");
    send_signal(app, "STOP");
    poll_until(PATIENCE, "the app to stop", || {
        process_state(app) == Some('T')
    });
    app
}

/// An app stopped (SIGSTOP, a debugger, a `kill -STOP` by hand) when the drain begins gets its
/// SIGTERM and a SIGCONT after it: it drains and exits cleanly instead of being killed at the
/// deadline.
#[test]
fn an_app_stopped_when_the_drain_begins_still_drains() {
    let mut running = Pyinit::new()
        .as_pid1()
        .args(["--grace-period", "6s", "--drain-timeout", "3s"])
        .app(python_fixture("print_signals.py", &[]))
        .start();
    stopped_app(&running);
    running.signal("TERM");
    let status = running.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(0), "{}", running.stderr.joined());
    running.stdout.wait_for("signal TERM", Duration::ZERO);
}

/// Stopped after its stop signal: the hard-stop signal comes with a SIGCONT too.
#[test]
fn an_app_stopped_during_the_drain_gets_its_hard_stop_signal() {
    let mut running = Pyinit::new()
        .as_pid1()
        .args(["--grace-period", "30s", "--drain-timeout", "20s"])
        .args(["--hard-stop-signal", "QUIT", "--hard-stop-after", "2s"])
        .app(python_fixture("print_signals.py", &["--exit-on", "QUIT"]))
        .start();
    running.wait_ready();
    running.signal("TERM");
    running.stdout.wait_for("signal TERM", PATIENCE);
    stopped_app(&running);
    let status = running.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(0), "{}", running.stderr.joined());
    running.stdout.wait_for("signal QUIT", Duration::ZERO);
}

/// Stopped at the drain deadline: the dump signal comes with a SIGCONT, so the traceback it asks
/// for is printed before the SIGKILL (pyinit exits 137 all the same: the deadline was missed).
#[test]
fn an_app_stopped_at_the_deadline_prints_its_traceback() {
    let mut running = Pyinit::new()
        .as_pid1()
        .args(["--grace-period", "10s", "--drain-timeout", "2s"])
        .args(["--deadline-dump-window", "3s"])
        .app(python_fixture("print_signals.py", &["--exit-on", "never"]))
        .start();
    running.wait_ready();
    running.signal("TERM");
    running.stdout.wait_for("signal TERM", PATIENCE);
    stopped_app(&running);
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(137));
    // faulthandler's own line, not pyinit's error line that mentions it.
    running
        .stderr
        .wait_for_line("the app's traceback", Duration::ZERO, |line| {
            line.starts_with("Fatal Python error: Bus error")
        });
}

/// Root without CAP_SETUID and CAP_SETGID (`capabilities: drop: [ALL]` and no `runAsUser`):
/// `--user` cannot work there, and the error says why and what does.
#[test]
fn user_without_the_capabilities_to_change_ids_names_them_and_run_as_user() {
    let finished = Pyinit::new()
        .started_by_pod_as(0, 0)
        .args(["--user", "nobody"])
        .app(vec!["/bin/true".into()])
        .run();
    finished.assert_exit_code(125);
    let error = finished.stderr_text();
    for needed in [
        "--user nobody",
        "CAP_SETGID",
        "CAP_SETUID",
        "securityContext.runAsUser: 65534",
    ] {
        assert!(error.contains(needed), "no {needed:?} in: {error}");
    }
    assert_eq!(finished.stderr.len(), 1, "one line: {error}");
}

/// At the drain's start `/livez` stops holding a failing liveness probe against the app (the
/// kubelet must not restart a pod that is shutting down), but the probe still fails: pyinit
/// must not log that the app is live again.
#[test]
fn the_drain_does_not_claim_a_failing_app_is_live_again() {
    let mut running = Pyinit::new()
        .as_pid1()
        .args([
            "--liveness-period",
            "200ms",
            "--liveness-failure-threshold",
            "1",
        ])
        .arg("--liveness")
        .arg(format!(
            "exec:/usr/bin/python3 {} fail",
            fixture("exec_probe.py").display()
        ))
        .app(python_fixture("print_signals.py", &[]))
        .start();
    running.wait_ready();
    running.stderr.wait_for("not live", PATIENCE);
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    running.stderr.wait_for("drain started", Duration::ZERO);
    assert!(
        !running.stderr.contains("live again"),
        "{}",
        running.stderr.joined()
    );
}
