//! A celery worker under pyinit as PID 1, with a task in flight at the SIGTERM, against a real
//! broker: Debian's redis-server, started by each test on a free loopback port of its own and
//! stopped by its guard.
//!
//! TERM is celery's warm shutdown, so a short task finishes with or without the profile. What
//! the profile adds shows with a task too long for the drain: its cold shutdown (QUIT) comes
//! before the drain deadline, and the worker exits by itself in time (0) instead of being killed
//! at the deadline (137).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::runc::{free_port, venv_bin};
use crate::common::{PATIENCE, Pyinit, Running, fixture, poll_until};

/// A redis-server of the test's own, killed on drop.
struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("pyinit-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis' directory");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/install-deps.sh installs it)");
        let redis = Redis { child, port, dir };
        poll_until(PATIENCE, "redis-server to answer PING", || redis.ping());
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn ping(&self) -> bool {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0; 5];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG"
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `python celery_app.py ARGS...` from the venv, against `redis`; its one line of output.
fn client(redis: &Redis, args: &[&str]) -> String {
    let output = Command::new(venv_bin("python3"))
        .arg(fixture("celery_app.py"))
        .args(args)
        .env("REDIS_URL", redis.url())
        .env("PYTHONPATH", fixture(""))
        .output()
        .expect("run the celery client");
    assert!(
        output.status.success(),
        "celery client {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A celery worker (one pool process) under pyinit as PID 1, ready for tasks.
fn start_worker(redis: &Redis, pyinit_args: &[&str]) -> Running {
    let argv: Vec<OsString> = [
        venv_bin("celery").into_os_string(),
        "-A".into(),
        "celery_app".into(),
        "worker".into(),
    ]
    .into_iter()
    .chain(
        ["--concurrency", "1", "--loglevel", "INFO"]
            .into_iter()
            .chain([
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ])
            .map(OsString::from),
    )
    .collect();
    let running = Pyinit::new()
        .as_pid1()
        .env("REDIS_URL", redis.url())
        .env("PYTHONPATH", fixture(""))
        .args(pyinit_args.iter().copied())
        .app(argv)
        .start();
    running.stderr.wait_for(" ready.", PATIENCE * 2);
    running
}

/// What the user sees: the task's state after the stop, pyinit's exit code and when.
#[derive(Debug)]
struct Stopped {
    state: String,
    exit_code: Option<i32>,
    term_to_exit: Duration,
    stderr: String,
}

/// Submits a task of `task_seconds`, waits until it runs, sends SIGTERM to pyinit and waits for
/// it to exit.
fn stop_with_a_task_in_flight(redis: &Redis, pyinit_args: &[&str], task_seconds: &str) -> Stopped {
    let mut running = start_worker(redis, pyinit_args);
    let marker = redis.dir.join("task-started");
    let task_id = client(
        redis,
        &["submit", task_seconds, &marker.display().to_string()],
    );
    poll_until(PATIENCE, "the task to start", || {
        Path::new(&marker).exists()
    });
    let sent = Instant::now();
    running.signal("TERM");
    let status = running.wait_exit(PATIENCE * 2);
    let term_to_exit = sent.elapsed();
    running.stderr.wait_closed(Duration::from_secs(5));
    Stopped {
        state: client(redis, &["state", &task_id]),
        exit_code: status.code(),
        term_to_exit,
        stderr: running.stderr.joined(),
    }
}

#[test]
fn a_celery_worker_finishes_its_task_in_flight_and_exits_0() {
    let redis = Redis::start();
    let stopped = stop_with_a_task_in_flight(&redis, &[], "1.5");
    assert_eq!(stopped.state, "SUCCESS", "stderr:\n{}", stopped.stderr);
    assert_eq!(stopped.exit_code, Some(0), "stderr:\n{}", stopped.stderr);
    assert!(
        stopped.term_to_exit < Duration::from_secs(15),
        "{:?}",
        stopped.term_to_exit
    );
    assert!(
        stopped.stderr.contains(
            "server profile: celery (from the command): QUIT 20s after SIGTERM, before the drain \
             deadline"
        ),
        "{}",
        stopped.stderr
    );
}

#[test]
fn a_celery_worker_with_server_none_finishes_its_task_as_before() {
    let redis = Redis::start();
    let stopped = stop_with_a_task_in_flight(&redis, &["--server", "none"], "1.5");
    assert_eq!(stopped.state, "SUCCESS", "stderr:\n{}", stopped.stderr);
    assert_eq!(stopped.exit_code, Some(0), "stderr:\n{}", stopped.stderr);
    assert!(!stopped.stderr.contains("server profile"));
}

/// A drain shorter than the task: the cold shutdown at 5s (10s minus the 5s margin).
const SHORT_DRAIN: &[&str] = &["--grace-period", "12s", "--drain-timeout", "10s"];

#[test]
fn a_task_longer_than_the_drain_gets_the_cold_shutdown_and_the_worker_exits_in_time() {
    let redis = Redis::start();
    let stopped = stop_with_a_task_in_flight(&redis, SHORT_DRAIN, "60");
    assert_eq!(stopped.exit_code, Some(0), "stderr:\n{}", stopped.stderr);
    assert!(
        stopped.term_to_exit >= Duration::from_secs(5)
            && stopped.term_to_exit < Duration::from_secs(10),
        "the worker must exit after the cold shutdown and before the deadline: {:?}\n{}",
        stopped.term_to_exit,
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("signal=\"QUIT\""),
        "{}",
        stopped.stderr
    );
    assert_ne!(stopped.state, "SUCCESS");
}

#[test]
fn without_the_profile_the_same_worker_is_killed_at_the_deadline() {
    let redis = Redis::start();
    let args: Vec<&str> = ["--server", "none"]
        .iter()
        .chain(SHORT_DRAIN)
        .copied()
        .collect();
    let stopped = stop_with_a_task_in_flight(&redis, &args, "60");
    assert_eq!(stopped.exit_code, Some(137), "stderr:\n{}", stopped.stderr);
}
