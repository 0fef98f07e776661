//! Signal forwarding and the drain, with pyinit as PID 1 of a fresh PID namespace.

use std::time::{Duration, Instant};

use std::net::SocketAddr;

use crate::common::http::{free_port, get, health_addr};
use crate::common::{PATIENCE, Pyinit, Running, poll_until, python_fixture};

/// Every signal of 1..=31 that pyinit forwards when another process sends it: all but TERM (the
/// drain, below), CHLD, KILL, STOP and the faults it leaves uncaught (SEGV, BUS, ILL, FPE).
const FORWARDED: &[&str] = &[
    "HUP", "INT", "QUIT", "USR1", "USR2", "WINCH", "TTIN", "TTOU", "CONT", "TSTP", "ALRM",
    "VTALRM", "PROF", "URG", "IO", "PWR", "XCPU", "XFSZ", "STKFLT", "PIPE", "ABRT", "SYS", "TRAP",
];

/// How many times the app printed exactly `line`.
fn count_lines(running: &Running, line: &str) -> usize {
    running
        .stdout
        .all()
        .iter()
        .filter(|seen| seen.as_str() == line)
        .count()
}

#[test]
fn a_sigpipe_the_kernel_raises_for_pyinits_own_write_is_not_forwarded() {
    // Nobody reads pyinit's stderr: each line it logs fails with EPIPE and raises SIGPIPE in it.
    let mut running = Pyinit::new()
        .as_pid1()
        .stderr_closed()
        .args(["--log-level", "debug"])
        .app(python_fixture("print_signals.py", &[]))
        .start();
    running.wait_ready();
    // Each forwarded signal is logged before it is sent: its SIGPIPE comes before the app sees it.
    for sent in 1..=3 {
        running.signal("USR1");
        poll_until(PATIENCE, &format!("the app's USR1 number {sent}"), || {
            count_lines(&running, "signal USR1") >= sent
        });
    }
    // One SIGPIPE sent by another process is the app's.
    running.signal("PIPE");
    running.stdout.wait_for("signal PIPE", PATIENCE);
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    assert_eq!(
        count_lines(&running, "signal PIPE"),
        1,
        "the app got pyinit's own SIGPIPEs:\n{}",
        running.stdout.joined()
    );
}

/// A seccomp filter that traps a syscall of pyinit's own (here kill(2), 62 on x86_64, which pyinit
/// makes to forward a signal and the app never makes) skips the syscall and raises SIGSYS in
/// pyinit: pyinit must end at once, as that SIGSYS would end it without a handler, rather than
/// forward it or go on as though the skipped kill had worked.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_seccomp_trap_of_pyinits_own_syscall_ends_it_with_128_plus_sigsys() {
    let mut running = Pyinit::new()
        .as_pid1()
        .wrapped_by(python_fixture("seccomp_trap.py", &["62", "--"]))
        .app(python_fixture("print_signals.py", &[]))
        .start();
    running.wait_ready();
    running.signal("USR1");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(128 + 31));
    running
        .stderr
        .wait_for("seccomp trapped one of pyinit's own syscalls", PATIENCE);
    assert!(
        !running.stdout.contains("signal"),
        "{}",
        running.stdout.joined()
    );
}

#[test]
fn every_forwarded_signal_reaches_the_app() {
    let running = Pyinit::new()
        .as_pid1()
        .app(python_fixture("print_signals.py", &[]))
        .start();
    running.wait_ready();
    for name in FORWARDED {
        running.signal(name);
        running.stdout.wait_for(&format!("signal {name}"), PATIENCE);
    }
    running.signal("TERM");
    running.stdout.wait_for("signal TERM", PATIENCE);
    let mut running = running;
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn signal_map_rewrites_and_drops() {
    let mut running = Pyinit::new()
        .as_pid1()
        .args(["--signal-map", "USR1=USR2", "--signal-map", "HUP=none"])
        .app(python_fixture("print_signals.py", &[]))
        .start();
    running.wait_ready();
    running.signal("USR1");
    running.stdout.wait_for("signal USR2", PATIENCE);
    running.signal("HUP");
    running
        .stderr
        .wait_for("signal dropped by --signal-map", PATIENCE);
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    let stdout = running.stdout.joined();
    assert!(
        !stdout.contains("signal HUP"),
        "HUP must be dropped:\n{stdout}"
    );
    assert!(
        !stdout.contains("signal USR1"),
        "USR1 must be rewritten:\n{stdout}"
    );
}

#[test]
fn signal_map_from_the_environment_rewrites_the_stop_signal() {
    let mut running = Pyinit::new()
        .as_pid1()
        .env("PYINIT_SIGNAL_MAP", "TERM=INT")
        .app(python_fixture("print_signals.py", &["--exit-on", "INT"]))
        .start();
    running.wait_ready();
    running.signal("TERM");
    running.stdout.wait_for("signal INT", PATIENCE);
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    assert!(!running.stdout.contains("signal TERM"));
}

#[test]
fn forward_to_group_reaches_a_grandchild() {
    let mut running = Pyinit::new()
        .as_pid1()
        .args(["--forward-to", "group"])
        .app(python_fixture("print_signals.py", &["--grandchild"]))
        .start();
    running.stdout.wait_for("grandchild ready", PATIENCE);
    running.wait_ready();
    running.signal("USR1");
    running.stdout.wait_for("grandchild signal USR1", PATIENCE);
    running.stdout.wait_for("signal USR1", PATIENCE);
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn forward_to_child_by_default_spares_the_workers() {
    let mut running = Pyinit::new()
        .as_pid1()
        .app(python_fixture("print_signals.py", &["--grandchild"]))
        .start();
    running.stdout.wait_for("grandchild ready", PATIENCE);
    running.wait_ready();
    running.signal("USR1");
    running.stdout.wait_for("signal USR1", PATIENCE);
    running.signal("TERM");
    // The app exits on TERM; its worker is then stopped as a leftover.
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    let stdout = running.stdout.joined();
    assert!(
        !stdout.contains("grandchild signal USR1"),
        "the worker got the master's signal:\n{stdout}"
    );
}

#[test]
fn app_that_exits_on_sigterm_ends_pyinit_right_away() {
    let mut running = Pyinit::new()
        .as_pid1()
        .app(python_fixture("print_signals.py", &[]))
        .start();
    running.wait_ready();
    let sent = Instant::now();
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    // The default drain deadline is 25s: exiting far sooner shows pyinit did not wait for it.
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "took {:?}",
        sent.elapsed()
    );
    running.stderr.wait_for("drain started", PATIENCE);
    running.stderr.wait_for("app exited", PATIENCE);
}

#[test]
fn app_that_ignores_sigterm_is_killed_at_the_deadline() {
    let mut running = Pyinit::new()
        .as_pid1()
        .args(["--grace-period", "5s", "--drain-timeout", "2s"])
        .app(python_fixture("ignore_term.py", &["--children", "2"]))
        .start();
    running.wait_ready();
    let sent = Instant::now();
    running.signal("TERM");
    running.stdout.wait_for("signal TERM", PATIENCE);
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(137));
    let elapsed = sent.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900),
        "killed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(12),
        "killed too late: {elapsed:?}"
    );
    running
        .stderr
        .wait_for("did not drain within the deadline", PATIENCE);
}

#[test]
fn deadline_kill_leaves_no_process_when_not_pid1() {
    let mut running = Pyinit::new()
        .args(["--grace-period", "5s", "--drain-timeout", "2s"])
        .app(python_fixture("ignore_term.py", &["--children", "3"]))
        .start();
    running.wait_ready();
    crate::common::poll_until(PATIENCE, "the app and its 3 children", || {
        running.descendants().len() >= 4
    });
    let tree = running.descendants();
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(137));
    let alive: Vec<u32> = tree
        .into_iter()
        .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert!(
        alive.is_empty(),
        "processes left after the deadline kill: {alive:?}"
    );
}

#[test]
fn hard_stop_signal_reaches_an_app_that_ignores_sigterm() {
    let mut running = Pyinit::new()
        .as_pid1()
        .args(["--grace-period", "30s", "--drain-timeout", "20s"])
        .args(["--hard-stop-signal", "QUIT", "--hard-stop-after", "1s"])
        .app(python_fixture("ignore_term.py", &[]))
        .start();
    running.wait_ready();
    let sent = Instant::now();
    running.signal("TERM");
    running.stdout.wait_for("signal TERM", PATIENCE);
    running.stdout.wait_for("signal QUIT", PATIENCE);
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "QUIT came too early: {:?}",
        sent.elapsed()
    );
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    assert!(
        sent.elapsed() < Duration::from_secs(15),
        "pyinit waited for the deadline"
    );
}

#[test]
fn pre_stop_delay_holds_back_the_stop_signal() {
    let mut running = Pyinit::new()
        .as_pid1()
        .args(["--pre-stop-delay", "2s"])
        .app(python_fixture("print_signals.py", &[]))
        .start();
    running.wait_ready();
    let sent = Instant::now();
    running.signal("TERM");
    running.stderr.wait_for("drain started", PATIENCE);
    assert!(
        !running.stdout.contains("signal TERM"),
        "TERM reached the app during the pre-stop delay"
    );
    running.stdout.wait_for("signal TERM", PATIENCE);
    let elapsed = sent.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900),
        "stop signal after {elapsed:?}"
    );
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn app_starts_with_an_empty_mask_and_default_dispositions() {
    // cat reads its own status and installs no signal handler of its own before it does.
    let finished = Pyinit::new()
        .as_pid1()
        .app(vec!["/bin/cat".into(), "/proc/self/status".into()])
        .run();
    finished.assert_exit_code(0);
    for field in ["SigBlk", "SigIgn", "SigCgt"] {
        let line = finished
            .stdout
            .iter()
            .find(|line| line.starts_with(field))
            .unwrap();
        assert!(line.ends_with("0000000000000000"), "{line}");
    }
}

/// Asks `/readyz` in a tight loop from the moment the signal was `sent` until it answers 503,
/// and returns how long that took (the 10 ms step of poll_until would eat a tenth of the budget).
fn time_to_readyz_503(addr: SocketAddr, sent: Instant) -> Duration {
    while get(addr, "/readyz").status != 503 {
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "/readyz never answered 503"
        );
    }
    sent.elapsed()
}

/// `--stop-signal INT`, as for an image with `STOPSIGNAL SIGINT` or a pod with `stopSignal:
/// SIGINT`: INT begins the drain exactly as TERM does by default.
#[test]
fn stop_signal_int_drains_as_term_does() {
    let port = free_port();
    let app_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut running = Pyinit::new()
        .as_pid1()
        .args(["--stop-signal", "INT", "--pre-stop-delay", "1s"])
        .app(python_fixture(
            "http_app.py",
            &["--port", &port.to_string(), "--stop-on", "INT"],
        ))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    assert_eq!(get(addr, "/readyz").status, 200);
    let sent = Instant::now();
    running.signal("INT");
    let elapsed = time_to_readyz_503(addr, sent);
    assert!(
        elapsed < Duration::from_millis(100),
        "readiness dropped {elapsed:?} after SIGINT"
    );
    let answer = get(addr, "/readyz?verbose");
    assert!(
        answer
            .body
            .contains("[-]shutdown failed: draining after SIGINT"),
        "{}",
        answer.body
    );
    // Through the pre-stop delay the app serves and has not heard of the drain.
    let mut served = 0;
    while sent.elapsed() < Duration::from_millis(900) {
        assert!(
            !running.stdout.contains("signal INT"),
            "the app got INT during the pre-stop delay, {:?} after it was sent",
            sent.elapsed()
        );
        assert_eq!(get(app_addr, "/healthz").status, 200);
        served += 1;
    }
    assert!(served > 0, "no request was served during the delay");
    running.stdout.wait_for("signal INT", PATIENCE);
    let stop_after = sent.elapsed();
    assert!(
        stop_after >= Duration::from_millis(950),
        "the app got INT {stop_after:?} after it was sent"
    );
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    assert!(
        !running.stdout.contains("signal TERM"),
        "{}",
        running.stdout.joined()
    );
    running
        .stderr
        .wait_for("stop signal sent signal=\"INT\"", PATIENCE);
}

/// With another stop signal, TERM still begins the drain (every runtime's default, and what a
/// runtime that does not know the pod's stopSignal sends), and the app gets its stop signal.
#[test]
fn with_stop_signal_int_a_term_still_drains_and_the_app_gets_int() {
    let mut running = Pyinit::new()
        .as_pid1()
        .env("PYINIT_STOP_SIGNAL", "INT")
        .args(["--pre-stop-delay", "500ms"])
        .app(python_fixture("print_signals.py", &["--exit-on", "INT"]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    let sent = Instant::now();
    running.signal("TERM");
    let elapsed = time_to_readyz_503(addr, sent);
    assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
    running.stdout.wait_for("signal INT", PATIENCE);
    assert!(sent.elapsed() >= Duration::from_millis(450));
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    assert!(
        !running.stdout.contains("signal TERM"),
        "{}",
        running.stdout.joined()
    );
    running.stderr.wait_for(
        "drain started: readiness is false signal=\"TERM\"",
        PATIENCE,
    );
}

#[test]
fn a_sidecar_drains_on_its_stop_signal() {
    let mut running = Pyinit::new()
        .as_pid1()
        // The delay keeps it answering after the 503, for the test to see it.
        .args(["--stop-signal", "USR2", "--pre-stop-delay", "1s"])
        .start();
    let addr = health_addr(&running);
    running.stderr.wait_for("health sidecar", PATIENCE);
    assert_eq!(get(addr, "/readyz").status, 200);
    let sent = Instant::now();
    running.signal("USR2");
    let elapsed = time_to_readyz_503(addr, sent);
    assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
}

/// With a preStop hook of 3s in a 6s grace period, the kubelet sends the stop signal 3s into the
/// grace period and SIGKILLs 3s later: pyinit's deadline is cut from those 3s (2400ms, where it
/// would be 4800ms), and in Kubernetes it adds no pre-stop delay of its own (the endpoints were
/// removed while the hook ran).
#[test]
fn a_pre_stop_hook_cuts_the_drain_deadline_and_the_pre_stop_delay() {
    let mut running = Pyinit::new()
        .as_pid1()
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .env("PYINIT_PRE_STOP_HOOK", "3s")
        .args(["--grace-period", "6s"])
        .app(python_fixture("ignore_term.py", &[]))
        .start();
    running.wait_ready();
    let sent = Instant::now();
    running.signal("TERM");
    running.stdout.wait_for("signal TERM", PATIENCE);
    assert!(
        sent.elapsed() < Duration::from_millis(900),
        "the app got TERM {:?} after pyinit: a pre-stop delay after the hook",
        sent.elapsed()
    );
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(137));
    let elapsed = sent.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2350) && elapsed < Duration::from_millis(4500),
        "killed {elapsed:?} after TERM"
    );
    running.stderr.wait_for(
        "drain started: readiness is false signal=\"TERM\" pre_stop_delay_ms=0 deadline_ms=2400",
        PATIENCE,
    );
}
