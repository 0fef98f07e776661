//! End to end in real OCI containers: pyinit as PID 1 of a `runc` container, supervising real
//! gunicorn and uvicorn from the pinned venv and the stdlib fixtures; `runc kill ID TERM` plays
//! the kubelet, and the container's exit code is pyinit's.
//!
//! The gunicorn and uvicorn scenarios run as a kubelet would see them: the container starts as
//! root without `PYINIT_ALLOW_ROOT`, pyinit drops to `--user nobody`, serves `/readyz` on its own
//! port and probes the app's `/healthz` for readiness.

use std::thread;
use std::time::{Duration, Instant};

use crate::common::runc::{
    Bundle, Container, PYINIT_IN_CONTAINER, free_port, http_get, static_pyinit, wait_http_ok,
};
use crate::common::{PATIENCE, descendants_of, poll_until, python_fixture};

/// How long the in-flight request takes: long enough to be surely in flight when SIGTERM
/// arrives, short enough for a quick test.
const SLOW_SECONDS: u64 = 3;

/// Far from the slow request, so that "well before the drain deadline" means something.
const GRACE_PERIOD: &str = "30s";
const DRAIN_TIMEOUT: &str = "25s";
const DRAIN_TIMEOUT_SECONDS: u64 = 25;

/// The readiness promise: `/readyz` answers 503 this soon after the kubelet's SIGTERM.
const READINESS_DROP: Duration = Duration::from_millis(100);

/// uid and gid of `nobody` in the host's /etc/passwd, which the containers mount.
const NOBODY: &str = "65534";

/// Where the app listens and where pyinit's health server does, both on the shared network.
#[derive(Debug, Clone, Copy)]
struct Ports {
    app: u16,
    health: u16,
}

impl Ports {
    fn free() -> Ports {
        Ports {
            app: free_port(),
            health: free_port(),
        }
    }
}

/// What pyinit is told in every gunicorn and uvicorn scenario: run the app as `nobody` (the
/// container starts as root, and `PYINIT_ALLOW_ROOT` is removed so the refusal of root applies),
/// a grace period far from the slow request, the health server on its own port, and a readiness
/// probe of the app's `/healthz` every second.
fn supervised(ports: Ports) -> Bundle {
    Bundle::new()
        .env_remove("PYINIT_ALLOW_ROOT")
        .args(["--user", "nobody"])
        .args([
            "--grace-period",
            GRACE_PERIOD,
            "--drain-timeout",
            DRAIN_TIMEOUT,
        ])
        .args([
            "--health-addr".to_owned(),
            format!("127.0.0.1:{}", ports.health),
            "--readiness".to_owned(),
            format!("http://127.0.0.1:{}/healthz", ports.app),
            "--readiness-period".to_owned(),
            "1s".to_owned(),
        ])
}

/// What a user sees of a drain with one slow request in flight.
#[derive(Debug)]
struct Drain {
    exit_code: i32,
    /// From the moment `runc kill` returned to the answer of the first `/readyz` that said 503.
    readiness_dropped_after: Duration,
    term_to_exit: Duration,
    slow_answer: Result<(u16, String), String>,
}

/// `/readyz`'s status code, or None when the health server does not answer (yet).
fn readyz(ports: Ports) -> Option<u16> {
    http_get(ports.health, "/readyz", Duration::from_secs(2))
        .ok()
        .map(|(status, _)| status)
}

/// Waits until `/readyz` answers 200, and checks that it got there by a change: pyinit starts
/// not ready (its first probe runs before the app listens) and logs `ready` once a probe of the
/// app's `/healthz` succeeded.
fn wait_until_ready(container: &Container, ports: Ports) {
    poll_until(PATIENCE, "/readyz to answer 200", || {
        readyz(ports) == Some(200)
    });
    // The status is published before the notice is logged: wait for the line, do not expect it.
    poll_until(PATIENCE, "pyinit to log its change to ready", || {
        container
            .stderr
            .all()
            .iter()
            .any(|line| line.trim_end().ends_with(" INFO ready"))
    });
    assert_eq!(
        http_get(ports.app, "/healthz", Duration::from_secs(2)),
        Ok((200, "ok\n".to_owned())),
        "the app must answer what the readiness probe asks"
    );
}

/// Every process under pyinit (the app and, for gunicorn, its workers) runs as nobody; read from
/// the host, by host pid, in /proc.
fn assert_app_runs_as_nobody(container: &Container) {
    let processes = descendants_of(container.init_pid());
    assert!(!processes.is_empty(), "no process runs under pyinit");
    for pid in processes {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue; // gone in the meantime
        };
        for field in ["Uid:", "Gid:"] {
            let ids: Vec<&str> = status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .map(|ids| ids.split_whitespace().collect())
                .unwrap_or_default();
            assert_eq!(
                ids, [NOBODY; 4],
                "{field} of pid {pid} (a process under pyinit):\n{status}"
            );
        }
    }
}

/// Waits until the app is ready, starts `GET /slow`, waits until the app logs that it is
/// handling it, sends `runc kill TERM`, measures how soon `/readyz` answers 503, and waits for
/// the container's exit.
fn drain_with_a_request_in_flight(container: &mut Container, ports: Ports) -> Drain {
    wait_until_ready(container, ports);
    let slow_request = thread::spawn(move || {
        http_get(
            ports.app,
            &format!("/slow?s={SLOW_SECONDS}"),
            Duration::from_secs(DRAIN_TIMEOUT_SECONDS + 10),
        )
    });
    container.stderr.wait_for("slow request started", PATIENCE);
    container.kill("TERM");
    // The clock starts when `runc kill` returns: by then runc has sent the signal to pyinit, and
    // this is the earliest moment the test itself knows that the kubelet's SIGTERM is out. The
    // time until the answer of the first 503 is an upper bound on when readiness dropped.
    let term_sent = Instant::now();
    let readiness_dropped_after = loop {
        let status = readyz(ports);
        let elapsed = term_sent.elapsed();
        if status == Some(503) {
            break elapsed;
        }
        assert!(
            elapsed < PATIENCE,
            "/readyz still answers {status:?} {elapsed:?} after SIGTERM"
        );
        thread::sleep(Duration::from_millis(5));
    };
    let exit_code = container.wait_exit(Duration::from_secs(DRAIN_TIMEOUT_SECONDS + 15));
    let term_to_exit = term_sent.elapsed();
    let slow_answer = slow_request.join().expect("the slow request's thread");
    Drain {
        exit_code,
        readiness_dropped_after,
        term_to_exit,
        slow_answer,
    }
}

/// Readiness dropped at once, the in-flight request completed, and the exit came long before
/// pyinit's deadline.
fn assert_drained(drain: &Drain, container: &Container) {
    assert!(
        drain.readiness_dropped_after < READINESS_DROP,
        "/readyz answered 503 only {:?} after runc kill returned",
        drain.readiness_dropped_after
    );
    assert_eq!(
        drain.slow_answer,
        Ok((200, format!("slept {SLOW_SECONDS}s\n"))),
        "the in-flight request must complete\nstderr:\n{}",
        container.stderr.joined()
    );
    assert!(
        drain.term_to_exit < Duration::from_secs(DRAIN_TIMEOUT_SECONDS / 2),
        "exited {:?} after SIGTERM: not well before the {DRAIN_TIMEOUT} drain deadline\n\
         stderr:\n{}",
        drain.term_to_exit,
        container.stderr.joined()
    );
    assert!(
        !container
            .stderr
            .contains("did not drain within the deadline"),
        "pyinit had to kill the app:\n{}",
        container.stderr.joined()
    );
}

fn gunicorn(ports: Ports) -> Bundle {
    supervised(ports).gunicorn_example(ports.app)
}

/// uvicorn as one process: with more than one worker its supervising parent, not the server,
/// is the app, and the exit code under test is the server's own (pyinit would otherwise pass it
/// WEB_CONCURRENCY from the host's CPUs).
fn uvicorn(ports: Ports, pyinit_args: &[&str]) -> Bundle {
    supervised(ports)
        .args(pyinit_args.iter().copied())
        .uvicorn_example(ports.app)
}

#[test]
fn gunicorn_as_nobody_turns_unready_finishes_the_request_in_flight_and_exits_0() {
    let ports = Ports::free();
    let mut container = gunicorn(ports).start();
    // A worker still booting has no SIGTERM handler yet and would sit out the drain until
    // gunicorn's graceful timeout: wait until every worker says it is ready.
    poll_until(PATIENCE, "both gunicorn workers to be ready", || {
        container
            .stderr
            .all()
            .iter()
            .filter(|line| line.contains("Worker ready"))
            .count()
            == 2
    });
    // The master and both workers.
    assert!(descendants_of(container.init_pid()).len() >= 3);
    assert_app_runs_as_nobody(&container);
    let drain = drain_with_a_request_in_flight(&mut container, ports);
    assert_drained(&drain, &container);
    assert_eq!(drain.exit_code, 0, "stderr:\n{}", container.stderr.joined());
    // gunicorn saw the SIGTERM itself (pyinit forwarded it) and shut its workers down.
    container
        .stderr
        .wait_for("Handling signal: term", Duration::ZERO);
}

#[test]
fn uvicorn_turns_unready_finishes_the_request_in_flight_and_exits_0() {
    // uvicorn 0.29 and later re-raise SIGTERM after a clean shutdown; its profile counts that
    // death, by the TERM pyinit sent, as the clean stop it is.
    let ports = Ports::free();
    let mut container = uvicorn(ports, &[]).start();
    wait_http_ok(ports.app, "/healthz", PATIENCE);
    assert_app_runs_as_nobody(&container);
    let drain = drain_with_a_request_in_flight(&mut container, ports);
    assert_drained(&drain, &container);
    assert_eq!(drain.exit_code, 0, "stderr:\n{}", container.stderr.joined());
    container
        .stderr
        .wait_for("Finished server process", Duration::ZERO);
    container.stderr.wait_for(
        "app exited: it drained and then re-raised its stop signal",
        Duration::ZERO,
    );
}

#[test]
fn uvicorn_without_its_profile_exits_143() {
    // 128 + 15: the signal uvicorn re-raised after its clean shutdown.
    let ports = Ports::free();
    let mut container = uvicorn(ports, &["--server", "none"]).start();
    let drain = drain_with_a_request_in_flight(&mut container, ports);
    assert_drained(&drain, &container);
    assert_eq!(
        drain.exit_code,
        143,
        "stderr:\n{}",
        container.stderr.joined()
    );
}

#[test]
fn an_app_that_ignores_sigterm_is_killed_at_the_drain_deadline() {
    let drain_timeout = Duration::from_secs(3);
    let mut container = Bundle::new()
        .keep_after_exit()
        .args(["--grace-period", "10s", "--drain-timeout", "3s"])
        .app(python_fixture("ignore_term.py", &["--children", "2"]))
        .start();
    container.stdout.wait_for("ready pid=", PATIENCE);
    // pyinit, the app and its two children: the cgroup check below sees real processes.
    let before = container.cgroup_procs();
    assert!(
        before.contains(&container.init_pid()) && before.len() >= 4,
        "the container's cgroup should hold pyinit, the app and its children: {before:?}"
    );

    let term_sent = Instant::now();
    container.kill("TERM");
    container.stdout.wait_for("signal TERM", PATIENCE);
    let exit_code = container.wait_exit(PATIENCE);
    let term_to_exit = term_sent.elapsed();

    assert_eq!(exit_code, 137, "stderr:\n{}", container.stderr.joined());
    assert!(
        term_to_exit >= drain_timeout - Duration::from_millis(100)
            && term_to_exit < drain_timeout + Duration::from_secs(8),
        "killed {term_to_exit:?} after SIGTERM, expected at the {drain_timeout:?} deadline"
    );
    container
        .stderr
        .wait_for("did not drain within the deadline", Duration::ZERO);
    assert_eq!(
        container.cgroup_procs(),
        Vec::<u32>::new(),
        "no process may be left in the container's cgroup"
    );
}

#[test]
fn an_app_killed_by_a_real_time_signal_exits_128_plus_n_while_its_child_lives() {
    let mut container = Bundle::new()
        .app([
            "/bin/sh",
            "-c",
            "sleep 100 & echo \"left pid=$!\"; kill -36 $$",
        ])
        .start();
    container.stdout.wait_for("left pid=", PATIENCE);
    let started = Instant::now();
    // The child sleeps for 100 s: an exit well before shows that pyinit did not wait for it.
    let exit_code = container.wait_exit(PATIENCE);
    assert_eq!(exit_code, 164, "stderr:\n{}", container.stderr.joined());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the container exited {:?} after the app's death",
        started.elapsed()
    );
    let exited = container.stderr.wait_for("app exited", Duration::ZERO);
    assert!(exited.contains("RTMIN+2"), "{exited}");
}

#[test]
fn orphaned_zombies_in_the_container_are_reaped() {
    let mut container = Bundle::new()
        .args(["--log-level", "debug"])
        .app(python_fixture("make_zombies.py", &["200"]))
        .start();
    container.stdout.wait_for("ready pid=", PATIENCE);
    container.stderr.wait_for("orphans reaped", PATIENCE);
    poll_until(
        Duration::from_secs(5),
        "every orphan in the container to be reaped",
        || container.zombies().is_empty(),
    );
    container.kill("TERM");
    assert_eq!(
        container.wait_exit(PATIENCE),
        0,
        "stderr:\n{}",
        container.stderr.joined()
    );
}

#[test]
fn cpu_and_memory_limits_reach_the_containers_cgroup() {
    let mut container = Bundle::new()
        .cpu_limit(150_000, 100_000)
        .memory_limit(256 * 1024 * 1024)
        .app(python_fixture("print_signals.py", &[]))
        .start();
    container.stdout.wait_for("ready pid=", PATIENCE);
    let cpu_quota = container
        .cgroup_file("cpu", "cpu.cfs_quota_us")
        .or_else(|| container.cgroup_file("", "cpu.max"));
    assert!(
        matches!(cpu_quota.as_deref(), Some("150000" | "150000 100000")),
        "cpu quota {cpu_quota:?}"
    );
    let memory_limit = container
        .cgroup_file("memory", "memory.limit_in_bytes")
        .or_else(|| container.cgroup_file("", "memory.max"));
    assert_eq!(memory_limit.as_deref(), Some("268435456"));
    container.kill("TERM");
    assert_eq!(container.wait_exit(PATIENCE), 0);
}

/// The Dockerfile's claim: the static binary needs nothing of the image's libc. In a rootfs
/// that holds only the binary, a dynamically linked one could not even start.
#[test]
fn static_pyinit_runs_as_pid1_in_an_empty_rootfs() {
    // The control: the debug binary, linked against the host's glibc, cannot start there.
    let mut container = Bundle::new()
        .bare_rootfs()
        .app([PYINIT_IN_CONTAINER, "--version"])
        .start();
    assert_ne!(
        container.wait_exit(PATIENCE),
        0,
        "a glibc binary ran without glibc"
    );
    assert!(
        !container.stdout.contains("pyinit "),
        "stdout:\n{}",
        container.stdout.joined()
    );

    let Some(binary) = static_pyinit() else {
        // scripts/test.sh builds it before `cargo test`, so CI always runs this test.
        assert!(
            std::env::var_os("CI").is_none(),
            "the static binary is missing: scripts/build-static.sh must run before the tests"
        );
        eprintln!("static pyinit not built (scripts/build-static.sh): skipping its runc test");
        return;
    };
    let bare = || Bundle::new().pyinit_binary(binary.clone()).bare_rootfs();

    let mut container = bare().app([PYINIT_IN_CONTAINER, "--version"]).start();
    assert_eq!(
        container.wait_exit(PATIENCE),
        0,
        "stderr:\n{}",
        container.stderr.joined()
    );
    assert!(
        container.stdout.contains("pyinit "),
        "stdout:\n{}",
        container.stdout.joined()
    );

    // The app's own exit code passes through PID 1 (here a usage error of the inner pyinit).
    let mut container = bare()
        .app([PYINIT_IN_CONTAINER, "--grace-period", "soon"])
        .start();
    assert_eq!(
        container.wait_exit(PATIENCE),
        2,
        "stderr:\n{}",
        container.stderr.joined()
    );
}
