//! The dump at the drain deadline, end to end in runc: pyinit as PID 1, an app stuck in
//! `wait_for_database_forever()` (tests/fixtures/stuck_app.py) under real gunicorn (sync and
//! uvicorn workers), uvicorn and a plain stdlib server. `runc kill TERM` plays the kubelet; what
//! is checked is what `kubectl logs` and the kubelet would show: the stuck frame's traceback
//! before the container dies, pyinit's error line, the exit code and when it came.
//!
//! These runs are also the measurement behind the default dump signal: SIGBUS gives the stuck
//! frame from every server here, SIGABRT gives none from a gunicorn UvicornWorker.

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::common::runc::{
    Bundle, Container, example, free_port, http_get, venv_bin, wait_http_ok,
};
use crate::common::{PATIENCE, descendants_of, fixture, poll_until, python_fixture};

/// The pod's grace period and pyinit's drain timeout in every scenario: the 3s left hold the
/// default 1s dump window and the SIGKILL after it.
const GRACE_PERIOD: Duration = Duration::from_secs(6);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The frame every stuck app is in, as faulthandler names it.
const STUCK_FUNCTION: &str = " in wait_for_database_forever";

/// gunicorn's own graceful timeout, past the drain deadline: pyinit's deadline, not gunicorn's,
/// ends the stuck worker.
const GUNICORN_GRACEFUL_TIMEOUT: &str = "60";

/// A bundle with the drain under test and the app's port.
fn stuck(port: u16) -> Bundle {
    Bundle::new()
        .args(["--grace-period", "6s", "--drain-timeout", "3s"])
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("GRACEFUL_TIMEOUT", GUNICORN_GRACEFUL_TIMEOUT)
}

/// `bundle` (pyinit's flags given) running gunicorn with `workers` workers of `worker_class`
/// serving `app` from stuck_app.py.
fn gunicorn(bundle: Bundle, worker_class: &str, app: &str, workers: u32) -> Bundle {
    bundle.env("WEB_CONCURRENCY", workers.to_string()).app([
        venv_bin("gunicorn").into_os_string(),
        "--chdir".into(),
        fixture("").into_os_string(),
        "--config".into(),
        example("gunicorn/gunicorn.conf.py").into_os_string(),
        "--worker-class".into(),
        worker_class.into(),
        app.into(),
    ])
}

/// What a user sees of a drain that the app cannot finish.
#[derive(Debug)]
struct StuckDrain {
    exit_code: i32,
    /// From `runc kill TERM` to the container's exit.
    term_to_exit: Duration,
    /// Everything on the container's stderr: pyinit's log and the app's output, in order.
    stderr: Vec<String>,
}

impl StuckDrain {
    fn joined(&self) -> String {
        self.stderr.join("\n")
    }

    /// The stderr lines that name the stuck frame.
    fn stuck_frames(&self) -> Vec<&String> {
        (self.stderr.iter())
            .filter(|line| line.contains("stuck_app.py\", line ") && line.ends_with(STUCK_FUNCTION))
            .collect()
    }

    fn count(&self, needle: &str) -> usize {
        self.stderr
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Lines that start with `prefix`: the app's own, not pyinit's log lines that quote them.
    fn count_starting(&self, prefix: &str) -> usize {
        self.stderr
            .iter()
            .filter(|line| line.starts_with(prefix))
            .count()
    }

    fn position(&self, needle: &str) -> usize {
        (self.stderr.iter())
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", self.joined()))
    }
}

/// Starts a request to `/stuck`, waits until the app says it is in it, sends `runc kill TERM`,
/// and waits for the container's exit.
fn drain_stuck(container: &mut Container, port: u16) -> StuckDrain {
    let request = start_stuck_request(port);
    container.stderr.wait_for("stuck request started", PATIENCE);
    let term_sent = Instant::now();
    container.kill("TERM");
    let exit_code = container.wait_exit(PATIENCE);
    let term_to_exit = term_sent.elapsed();
    // The request is cut off by the kill; what it got does not matter here.
    let _ = request.join();
    StuckDrain {
        exit_code,
        term_to_exit,
        stderr: container.stderr.all(),
    }
}

fn start_stuck_request(port: u16) -> JoinHandle<Result<(u16, String), String>> {
    thread::spawn(move || http_get(port, "/stuck", PATIENCE))
}

/// The exit is 137 and came at the drain deadline, inside the grace period.
fn assert_killed_at_the_deadline(drain: &StuckDrain) {
    assert_eq!(drain.exit_code, 137, "stderr:\n{}", drain.joined());
    assert!(
        drain.term_to_exit >= DRAIN_TIMEOUT - Duration::from_millis(100)
            && drain.term_to_exit < GRACE_PERIOD,
        "exited {:?} after SIGTERM: expected between the {DRAIN_TIMEOUT:?} deadline and the \
         {GRACE_PERIOD:?} grace period\nstderr:\n{}",
        drain.term_to_exit,
        drain.joined()
    );
}

/// `  File "/path.py", line 12 in name`, whole: what faulthandler writes for one frame.
fn is_whole_frame_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("  File \"") else {
        return false;
    };
    let Some((_file, rest)) = rest.rsplit_once("\", line ") else {
        return false;
    };
    let Some((number, function)) = rest.split_once(" in ") else {
        return false;
    };
    !number.is_empty()
        && number.bytes().all(|byte| byte.is_ascii_digit())
        && !function.is_empty()
        && !function.contains(' ')
}

#[test]
fn a_stuck_gunicorn_worker_shows_where_it_is_stuck_and_the_container_exits_137_in_time() {
    let port = free_port();
    let as_nobody = stuck(port)
        .env_remove("PYINIT_ALLOW_ROOT")
        .args(["--user", "nobody"]);
    let mut container = gunicorn(as_nobody, "sync", "stuck_app:app", 2).start();
    poll_until(PATIENCE, "both gunicorn workers to be ready", || {
        (container.stderr.all().iter())
            .filter(|line| line.contains("Worker ready"))
            .count()
            == 2
    });
    wait_http_ok(port, "/healthz", PATIENCE);
    // No process of the app may dump core when the dump signal kills it: soft limit 0.
    let processes = descendants_of(container.init_pid());
    assert!(processes.len() >= 3, "gunicorn's master and two workers");
    for pid in processes {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
        let core = limits
            .lines()
            .find(|line| line.starts_with("Max core file size"))
            .map(|line| {
                line.split_whitespace()
                    .nth(4)
                    .unwrap_or_default()
                    .to_owned()
            });
        assert!(
            matches!(core.as_deref(), None | Some("0")),
            "pid {pid} may dump core:\n{limits}"
        );
    }

    let drain = drain_stuck(&mut container, port);
    assert_killed_at_the_deadline(&drain);
    let stderr = drain.joined();
    // The stuck frame, with its file, came out before pyinit's last line.
    let frames = drain.stuck_frames();
    assert_eq!(frames.len(), 1, "one worker was stuck:\n{stderr}");
    let frame = drain.position(STUCK_FUNCTION);
    assert!(
        frame < drain.position("pyinit exiting code=137"),
        "{stderr}"
    );
    // pyinit's error line, before the tracebacks: where to look, that the fatal errors are its
    // own doing, and which processes were still running.
    let error = drain.position("app did not drain within the deadline");
    assert!(error < frame, "{stderr}");
    let error_line = &drain.stderr[error];
    for expected in [
        "sending BUS to every process for its Python traceback, on the app's stderr",
        "\"Fatal Python error: Bus error\" lines there are pyinit's doing at the deadline, no \
         crash happened",
        "still_running=\"",
        "gunicorn",
    ] {
        assert!(
            error_line.contains(expected),
            "{expected:?} in {error_line}"
        );
    }
    // The idle worker drained on its SIGTERM; the master and the stuck worker were left, and
    // each printed its traceback, one at a time, so that every frame line is whole (sent at
    // once, their lines cut into each other).
    let still_running = error_line
        .split("still_running=\"")
        .nth(1)
        .map_or(0, |list| list.split("; ").count());
    assert_eq!(
        still_running, 2,
        "the master and the stuck worker: {error_line}"
    );
    assert_eq!(
        drain.count_starting("Fatal Python error: Bus error"),
        2,
        "a traceback from each process still running:\n{stderr}"
    );
    let cut: Vec<&String> = (drain.stderr.iter())
        .filter(|line| line.starts_with("  File") && !is_whole_frame_line(line))
        .collect();
    assert!(cut.is_empty(), "frame lines cut by another's: {cut:?}");
    // Past the deadline the workers are not treated as leftovers of an app that exited.
    assert!(
        !stderr.contains("left behind") && !stderr.contains("ignored SIGTERM"),
        "{stderr}"
    );
}

#[test]
fn a_stuck_gunicorn_uvicorn_worker_shows_its_stuck_frame() {
    let port = free_port();
    let mut container = gunicorn(
        stuck(port),
        "uvicorn.workers.UvicornWorker",
        "stuck_app:asgi_app",
        1,
    )
    .start();
    wait_http_ok(port, "/healthz", PATIENCE);
    let drain = drain_stuck(&mut container, port);
    assert_killed_at_the_deadline(&drain);
    assert_eq!(drain.stuck_frames().len(), 1, "{}", drain.joined());
}

#[test]
fn a_stuck_uvicorn_shows_its_stuck_frame() {
    let port = free_port();
    let mut container = stuck(port)
        .uvicorn(port, fixture(""), "stuck_app:asgi_app")
        .start();
    wait_http_ok(port, "/healthz", PATIENCE);
    let drain = drain_stuck(&mut container, port);
    assert_killed_at_the_deadline(&drain);
    assert_eq!(drain.stuck_frames().len(), 1, "{}", drain.joined());
}

#[test]
fn a_stuck_plain_python_server_shows_its_stuck_thread() {
    // The stuck request runs in a thread of its own; the main thread waits to join it. The
    // traceback shows both, the stuck one included.
    let port = free_port();
    let mut container = stuck(port)
        .app(python_fixture(
            "stuck_app.py",
            &["--port", &port.to_string()],
        ))
        .start();
    container.stdout.wait_for("ready pid=", PATIENCE);
    let drain = drain_stuck(&mut container, port);
    assert_killed_at_the_deadline(&drain);
    assert_eq!(drain.stuck_frames().len(), 1, "{}", drain.joined());
    assert!(drain.count(" in join") >= 1, "{}", drain.joined());
}

#[test]
fn sigabrt_as_the_dump_signal_shows_nothing_of_a_gunicorn_uvicorn_worker() {
    // Why SIGABRT is not the default: gunicorn's workers handle it themselves (the arbiter uses
    // it for worker timeouts) and exit without a traceback.
    let port = free_port();
    let abrt = stuck(port).args(["--deadline-dump-signal", "ABRT"]);
    let mut container = gunicorn(
        abrt,
        "uvicorn.workers.UvicornWorker",
        "stuck_app:asgi_app",
        1,
    )
    .start();
    wait_http_ok(port, "/healthz", PATIENCE);
    let drain = drain_stuck(&mut container, port);
    assert_killed_at_the_deadline(&drain);
    assert!(
        drain.stuck_frames().is_empty(),
        "SIGABRT did give the stuck frame:\n{}",
        drain.joined()
    );
    // The master, which has no handler of its own, still printed its traceback.
    assert_eq!(
        drain.count_starting("Fatal Python error: Aborted"),
        1,
        "{}",
        drain.joined()
    );
}

/// Runs `bundle` (an app that prints `ready` on stdout, then ignores SIGTERM), sends `runc kill
/// TERM` once it is ready, and waits for the container's exit.
fn drain_ignoring(bundle: &Bundle) -> StuckDrain {
    let mut container = bundle.start();
    container.stdout.wait_for("ready", PATIENCE);
    let term_sent = Instant::now();
    container.kill("TERM");
    let exit_code = container.wait_exit(PATIENCE);
    StuckDrain {
        exit_code,
        term_to_exit: term_sent.elapsed(),
        stderr: container.stderr.all(),
    }
}

#[test]
fn a_non_python_app_is_simply_killed_at_the_deadline() {
    // sleep with SIGTERM ignored (an ignored signal stays ignored across exec): the dump signal
    // ends it at once, without a traceback and without a core file, and the exit is 137.
    let sleep_ignoring_term = Bundle::new()
        .args(["--grace-period", "6s", "--drain-timeout", "3s"])
        .app(["/bin/sh", "-c", "trap '' TERM; echo ready; exec sleep 1000"]);
    let drain = drain_ignoring(&sleep_ignoring_term);
    assert_killed_at_the_deadline(&drain);
    let error_line = &drain.stderr[drain.position("app did not drain within the deadline")];
    assert!(
        error_line.contains("sending BUS") && error_line.contains("sleep 1000"),
        "{error_line}"
    );
    assert_eq!(
        drain.count_starting("Fatal Python error"),
        0,
        "{}",
        drain.joined()
    );
    // And with the dump turned off, exactly as before it existed: SIGKILL at the deadline.
    let drain = drain_ignoring(&sleep_ignoring_term.env("PYINIT_DEADLINE_DUMP", "off"));
    assert_killed_at_the_deadline(&drain);
    let error_line = &drain.stderr[drain.position("app did not drain within the deadline")];
    assert!(
        error_line.contains("killing everything left") && error_line.contains("sleep 1000"),
        "{error_line}"
    );
}

#[test]
fn an_app_that_sets_pythonfaulthandler_itself_keeps_its_value() {
    // An empty value is how an app turns faulthandler off: pyinit leaves it, and the stuck app
    // then prints nothing at the deadline and is killed as any other.
    let port = free_port();
    let mut container = stuck(port)
        .env("PYTHONFAULTHANDLER", "")
        .app(python_fixture(
            "stuck_app.py",
            &["--port", &port.to_string()],
        ))
        .start();
    let ready = container.stdout.wait_for("ready pid=", PATIENCE);
    let app_pid_in_container = ready.trim().trim_start_matches("ready pid=").to_owned();
    // The app's own environment, read from the host.
    let app = descendants_of(container.init_pid())
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .any(|line| {
                    line.starts_with("NSpid:")
                        && line.split_whitespace().last() == Some(&app_pid_in_container)
                })
        })
        .expect("the app's host pid");
    let environ = std::fs::read(format!("/proc/{app}/environ")).unwrap();
    let variables: Vec<&[u8]> = environ.split(|byte| *byte == 0).collect();
    assert!(
        variables.contains(&&b"PYTHONFAULTHANDLER="[..]),
        "{:?}",
        String::from_utf8_lossy(&environ)
    );
    assert!(
        container
            .stderr
            .contains("PYTHONFAULTHANDLER is already set: the app keeps its own value"),
        "{}",
        container.stderr.joined()
    );
    let drain = drain_stuck(&mut container, port);
    assert_killed_at_the_deadline(&drain);
    assert_eq!(
        drain.count_starting("Fatal Python error"),
        0,
        "{}",
        drain.joined()
    );
}

#[test]
fn the_drill_names_the_function_a_stuck_gunicorn_worker_waits_in() {
    let port = free_port();
    let drill = stuck(port).args([
        "drill".to_owned(),
        "--log-level".to_owned(),
        "warn".to_owned(),
        "--readiness".to_owned(),
        format!("http://127.0.0.1:{port}/healthz"),
        "--readiness-period".to_owned(),
        "500ms".to_owned(),
        "--drill-request".to_owned(),
        format!("http://127.0.0.1:{port}/stuck"),
        "--drill-concurrency".to_owned(),
        "1".to_owned(),
    ]);
    let mut container = gunicorn(drill, "sync", "stuck_app:app", 2).start();
    let started = Instant::now();
    let exit_code = container.wait_exit(PATIENCE + GRACE_PERIOD);
    let stdout = container.stdout.joined();
    let stderr = container.stderr.joined();
    assert_eq!(
        exit_code, 1,
        "the app failed the drill:\n{stdout}\n{stderr}"
    );
    // The stuck function, with its file and line, under the failed check.
    let lines = container.stdout.all();
    let failed = (lines.iter())
        .position(|line| line.starts_with("  FAIL  drains before the deadline"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let stuck_at = format!("        stuck at {}:", fixture("stuck_app.py").display());
    let named = lines
        .iter()
        .skip(failed + 1)
        .take_while(|line| !line.contains("hint:"));
    assert!(
        named
            .clone()
            .any(|line| line.starts_with(&stuck_at) && line.ends_with(STUCK_FUNCTION)),
        "no line {stuck_at}N in wait_for_database_forever under the check:\n{stdout}"
    );
    // The master's frame is there too: one line per stuck process.
    assert!(
        named
            .clone()
            .any(|line| line.contains("gunicorn/arbiter.py:")),
        "{stdout}"
    );
    // The app's stderr reached the container's unchanged, tracebacks included, as without the
    // drill.
    assert!(stderr.contains("Worker ready (pid: "), "{stderr}");
    assert!(
        container
            .stderr
            .all()
            .iter()
            .any(|line| line.starts_with("  File \"")
                && line.contains("stuck_app.py\", line ")
                && line.ends_with(STUCK_FUNCTION)),
        "{stderr}"
    );
    assert!(
        started.elapsed() < PATIENCE,
        "the drill took {:?}",
        started.elapsed()
    );
}
