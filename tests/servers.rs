//! The server profiles end to end: each real server from the pinned venv as the app of pyinit
//! as PID 1, with a request in flight when pyinit gets SIGTERM, and no flag about stopping.
//! With its profile the request finishes (200) and pyinit exits 0 long before the drain
//! deadline; with `--server none` each behaves as it did before profiles existed (uWSGI and
//! waitress cut the request, uvicorn exits 143). `celery.rs` does the same for a celery worker
//! with a task in flight.
//!
//! Workers are kept few (`--web-concurrency`, which sizes but does not stop) so that the tests
//! stay quick on two cores; each test takes its own free port.

mod celery;

use std::ffi::OsString;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::http::{health_addr, metric};
use crate::common::runc::{Bundle, free_port, http_get, venv_bin, wait_http_ok};
use crate::common::{Lines, PATIENCE, Pyinit, Running, descendants_of, fixture, poll_until};

/// pyinit's default drain timeout (grace period 30s minus 5s): every drain must end well before.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// How long the slow request sleeps (`server_apps.py`'s SLOW_SECONDS).
const SLOW_SECONDS: &str = "1.5";

/// What a user sees of one stop with a request in flight.
#[derive(Debug)]
struct Stopped {
    exit_code: Option<i32>,
    term_to_exit: Duration,
    /// The slow request's answer (status and body), or why there was none.
    slow: Result<(u16, String), String>,
    stderr: String,
}

impl Stopped {
    /// The request in flight finished, and pyinit exited 0 well before the drain deadline
    /// without killing anything.
    fn assert_drained_clean(&self) {
        assert_eq!(
            self.slow,
            Ok((200, "slow done\n".to_owned())),
            "the request in flight must finish; stderr:\n{}",
            self.stderr
        );
        assert_eq!(self.exit_code, Some(0), "stderr:\n{}", self.stderr);
        assert!(
            self.term_to_exit < DRAIN_TIMEOUT - Duration::from_secs(10),
            "pyinit took {:?} after SIGTERM; stderr:\n{}",
            self.term_to_exit,
            self.stderr
        );
        assert!(
            !self.stderr.contains("did not drain within the deadline"),
            "{}",
            self.stderr
        );
    }

    /// As `assert_drained_clean`, and pyinit's log says `text`.
    fn assert_drained_clean_and_logged(&self, text: &str) {
        self.assert_drained_clean();
        assert!(
            self.stderr.contains(text),
            "no {text:?} in:\n{}",
            self.stderr
        );
    }

    /// The request in flight got no answer: the server was stopped under it.
    fn assert_cut(&self) {
        assert!(
            self.slow.is_err(),
            "the request should be cut, got {:?}; stderr:\n{}",
            self.slow,
            self.stderr
        );
    }
}

/// One server run: its command, pyinit's flags, and how many processes load the app.
struct Run<'a> {
    /// The profile pyinit should say it applies (`None` for `--server none`).
    profile: Option<&'a str>,
    argv: Vec<OsString>,
    pyinit_args: Vec<&'a str>,
    /// `app loaded` lines to wait for: every worker that serves must be up before the SIGTERM.
    loaded: usize,
    port: u16,
}

/// Starts the run under pyinit as PID 1, waits until every worker is up, sends a slow request
/// and, once it is in flight, SIGTERM to pyinit; returns what the user saw.
fn stop_with_a_request_in_flight(run: Run<'_>) -> Stopped {
    let mut running = Pyinit::new()
        .as_pid1()
        .env("PYTHONPATH", fixture(""))
        .env("SLOW_SECONDS", SLOW_SECONDS)
        .args(run.pyinit_args.iter().copied())
        .app(run.argv)
        .start();
    poll_until(PATIENCE, "every worker to load the app", || {
        app_lines(&running.stdout, &running.stderr, "app loaded") >= run.loaded
    });
    wait_http_ok(run.port, "/", PATIENCE);
    assert_profile_shown(&running, run.profile);
    let port = run.port;
    let slow = thread::spawn(move || http_get(port, "/slow", Duration::from_secs(15)));
    poll_until(PATIENCE, "the slow request to be in flight", || {
        app_lines(&running.stdout, &running.stderr, "slow request started") == 1
    });
    let sent = Instant::now();
    running.signal("TERM");
    let status = running.wait_exit(PATIENCE + DRAIN_TIMEOUT);
    let term_to_exit = sent.elapsed();
    running.stderr.wait_closed(Duration::from_secs(5));
    Stopped {
        exit_code: status.code(),
        term_to_exit,
        slow: slow.join().expect("the request's thread"),
        stderr: running.stderr.joined(),
    }
}

/// The app's lines that start with `prefix`, on its stdout or its stderr (uWSGI sends Python's
/// stdout to stderr).
fn app_lines(stdout: &Lines, stderr: &Lines, prefix: &str) -> usize {
    (stdout.all().iter())
        .chain(stderr.all().iter())
        .filter(|line| line.starts_with(prefix))
        .count()
}

/// The start-up line names the profile, and `/metrics` has it as a label; with `--server none`
/// there is no line and the label says none.
fn assert_profile_shown(running: &Running, profile: Option<&str>) {
    let health = health_addr(running);
    let label = profile.unwrap_or("none");
    assert_eq!(
        metric(health, &format!("pyinit_server_info{{server=\"{label}\"}}")),
        Some(1.0)
    );
    let line = (running.stderr.all().into_iter()).find(|line| line.contains("server profile: "));
    match profile {
        Some(profile) => {
            let line = line.unwrap_or_else(|| panic!("no server profile line"));
            assert!(
                line.contains(&format!("server profile: {profile} (from the command)")),
                "{line}"
            );
        }
        None => assert_eq!(line, None),
    }
}

fn venv(program: &str, args: &[&str]) -> Vec<OsString> {
    let mut argv = vec![venv_bin(program).into_os_string()];
    argv.extend(args.iter().map(OsString::from));
    argv
}

fn bind(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Stops `program` (from the venv, with `args`) with a request in flight, with the profile of
/// `server` or with `--server none`; `sizing` is pyinit's flags for the worker count, `loaded`
/// the processes that load the app.
fn serve(
    profile: bool,
    server: &str,
    program: &str,
    args: &[&str],
    sizing: &[&str],
    loaded: usize,
    port: u16,
) -> Stopped {
    let mut pyinit_args = if profile {
        Vec::new()
    } else {
        vec!["--server", "none"]
    };
    pyinit_args.extend_from_slice(sizing);
    stop_with_a_request_in_flight(Run {
        profile: profile.then_some(server),
        argv: venv(program, args),
        pyinit_args,
        loaded,
        port,
    })
}

fn gunicorn(profile: bool, worker_class: &str, app: &str) -> Stopped {
    let port = free_port();
    // Two workers, each loading the app once its signal handlers are in place.
    let sizing = ["--web-concurrency", "2"];
    serve(
        profile,
        "gunicorn",
        "gunicorn",
        &["-b", &bind(port), "-k", worker_class, app],
        &sizing,
        2,
        port,
    )
}

#[test]
fn gunicorn_sync_finishes_the_request_in_flight_and_exits_0() {
    gunicorn(true, "sync", "server_apps:wsgi").assert_drained_clean();
}

#[test]
fn gunicorn_sync_with_server_none_drains_as_before() {
    gunicorn(false, "sync", "server_apps:wsgi").assert_drained_clean();
}

#[test]
fn gunicorn_uvicorn_worker_finishes_the_request_in_flight_and_exits_0() {
    gunicorn(true, "uvicorn_worker.UvicornWorker", "server_apps:asgi").assert_drained_clean();
}

#[test]
fn gunicorn_uvicorn_worker_with_server_none_drains_as_before() {
    gunicorn(false, "uvicorn_worker.UvicornWorker", "server_apps:asgi").assert_drained_clean();
}

/// uvicorn in one process: the mode that re-raises SIGTERM after draining.
fn uvicorn(profile: bool) -> Stopped {
    let port = free_port();
    serve(
        profile,
        "uvicorn",
        "uvicorn",
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "server_apps:asgi",
        ],
        &["--web-concurrency", "1"],
        1,
        port,
    )
}

#[test]
fn uvicorn_finishes_the_request_in_flight_and_its_re_raised_term_exits_0() {
    uvicorn(true).assert_drained_clean_and_logged("re-raised its stop signal");
}

#[test]
fn uvicorn_with_server_none_exits_143_as_before() {
    let stopped = uvicorn(false);
    assert_eq!(stopped.slow, Ok((200, "slow done\n".to_owned())));
    assert_eq!(stopped.exit_code, Some(143), "{}", stopped.stderr);
}

fn hypercorn(profile: bool) -> Stopped {
    let port = free_port();
    serve(
        profile,
        "hypercorn",
        "hypercorn",
        &["-b", &bind(port), "server_apps:asgi"],
        &[],
        1,
        port,
    )
}

#[test]
fn hypercorn_finishes_the_request_in_flight_and_exits_0() {
    hypercorn(true).assert_drained_clean();
}

#[test]
fn hypercorn_with_server_none_drains_as_before() {
    hypercorn(false).assert_drained_clean();
}

fn granian(profile: bool) -> Stopped {
    let port = free_port();
    // With its profile GRANIAN_WORKERS comes from --web-concurrency: two workers; without, one.
    let loaded = if profile { 2 } else { 1 };
    serve(
        profile,
        "granian",
        "granian",
        &[
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "server_apps:asgi",
        ],
        &["--web-concurrency", "2"],
        loaded,
        port,
    )
}

#[test]
fn granian_finishes_the_request_in_flight_and_exits_0_with_its_workers_from_the_flag() {
    granian(true).assert_drained_clean_and_logged("GRANIAN_WORKERS=2");
}

#[test]
fn granian_with_server_none_drains_as_before() {
    granian(false).assert_drained_clean();
}

/// uWSGI as users start it, with no master of its own: the profile brings the master and the
/// hook that makes TERM graceful.
fn uwsgi(profile: bool) -> Stopped {
    let port = free_port();
    // The app loads once, before the workers fork.
    serve(
        profile,
        "uwsgi",
        "uwsgi",
        &[
            "--http-socket",
            &bind(port),
            "--module",
            "server_apps:wsgi",
            "--need-app",
        ],
        &["--web-concurrency", "2"],
        1,
        port,
    )
}

#[test]
fn uwsgi_finishes_the_request_in_flight_and_exits_0() {
    uwsgi(true).assert_drained_clean_and_logged(
        "UWSGI_PROCESSES=2, UWSGI_MASTER=1, UWSGI_HOOK_MASTER_START=unix_signal:15 \
             gracefully_kill_them_all",
    );
}

#[test]
fn uwsgi_with_server_none_cuts_the_request_as_before() {
    let stopped = uwsgi(false);
    stopped.assert_cut();
    // Without a master TERM ends uWSGI at once: UWSGI_END_CODE.
    assert_eq!(stopped.exit_code, Some(30), "{}", stopped.stderr);
}

fn waitress(profile: bool) -> Stopped {
    let port = free_port();
    serve(
        profile,
        "waitress",
        "waitress-serve",
        &["--listen", &bind(port), "server_apps:wsgi"],
        &[],
        1,
        port,
    )
}

#[test]
fn waitress_is_stopped_with_int_finishes_the_request_in_flight_and_exits_0() {
    waitress(true).assert_drained_clean_and_logged("stop signal sent signal=\"INT\"");
}

#[test]
fn waitress_with_server_none_dies_of_term_mid_request_as_before() {
    let stopped = waitress(false);
    stopped.assert_cut();
    assert_eq!(stopped.exit_code, Some(143), "{}", stopped.stderr);
}

fn daphne(profile: bool) -> Stopped {
    let port = free_port();
    serve(
        profile,
        "daphne",
        "daphne",
        &[
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "server_apps:asgi",
        ],
        &[],
        1,
        port,
    )
}

#[test]
fn daphne_gets_a_pre_stop_delay_so_the_request_in_flight_finishes_then_exits_0() {
    let stopped = daphne(true);
    stopped.assert_drained_clean();
    // The stop signal waited the default delay (min(5s, grace period / 4, ...)).
    assert!(
        stopped.term_to_exit >= Duration::from_secs(5),
        "{:?}",
        stopped.term_to_exit
    );
}

#[test]
fn daphne_with_server_none_cuts_the_request_as_before() {
    let stopped = daphne(false);
    stopped.assert_cut();
    assert_eq!(stopped.exit_code, Some(0), "{}", stopped.stderr);
}

/// End to end in a container, as the kubelet runs it: uWSGI's workers come from the container's
/// CPU limit (1 CPU: floor(2 × 1 + 1) = 3), and `runc kill TERM` with a request in flight ends
/// in a 200 and exit 0.
#[test]
fn uwsgi_in_a_container_is_sized_from_its_cpu_limit_and_drains_on_the_kubelets_term() {
    let port = free_port();
    let mut container = Bundle::new()
        .cpu_limit(100_000, 100_000)
        .env("PYTHONPATH", fixture("").display().to_string())
        .env("SLOW_SECONDS", SLOW_SECONDS)
        .app(venv(
            "uwsgi",
            &[
                "--http-socket",
                &bind(port),
                "--module",
                "server_apps:wsgi",
                "--need-app",
            ],
        ))
        .start();
    wait_http_ok(port, "/", PATIENCE);
    poll_until(PATIENCE, "uWSGI's master and its three workers", || {
        descendants_of(container.init_pid()).len() == 4
    });
    container
        .stderr
        .wait_for("UWSGI_PROCESSES=3", Duration::ZERO);
    let slow = thread::spawn(move || http_get(port, "/slow", Duration::from_secs(15)));
    poll_until(PATIENCE, "the slow request to be in flight", || {
        app_lines(&container.stdout, &container.stderr, "slow request started") == 1
    });
    container.kill("TERM");
    let sent = Instant::now();
    let exit_code = container.wait_exit(PATIENCE + DRAIN_TIMEOUT);
    assert_eq!(
        slow.join().expect("the request's thread"),
        Ok((200, "slow done\n".to_owned())),
        "{}",
        container.stderr.joined()
    );
    assert_eq!(exit_code, 0, "{}", container.stderr.joined());
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
}

/// Django's development server, recognised by its command (here a stand-in `manage.py` that
/// only exits): one warning line, and the app runs as it would.
#[test]
fn a_development_server_gets_a_warning_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("pyinit-devserver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manage = dir.join("manage.py");
    std::fs::write(&manage, "import sys\nprint(sys.argv[1:])\n").unwrap();
    let finished = Pyinit::new()
        .app(vec![
            crate::common::PYTHON.into(),
            manage.clone().into_os_string(),
            "runserver".into(),
        ])
        .run();
    std::fs::remove_dir_all(&dir).unwrap();
    finished.assert_exit_code(0);
    let stderr = finished.stderr_text();
    let warnings: Vec<&str> = (stderr.lines())
        .filter(|line| line.contains("a development server"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("WARN the command runs Django's runserver, a development server"),
        "{stderr}"
    );
    assert!(!stderr.contains("server profile"), "{stderr}");
}
