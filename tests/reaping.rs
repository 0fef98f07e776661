//! Reaping orphans, as PID 1 and as child subreaper, and exits the reaper must never lose: orphans
//! and exec probes killed by real-time signals.

use std::time::Duration;

use crate::common::http::{get, health_addr, metric};
use crate::common::{PATIENCE, Pyinit, poll_until, python_fixture};

/// The promise is "no zombie after a second"; the margin covers a loaded machine.
const REAP_WAIT: Duration = Duration::from_secs(5);

#[test]
fn orphans_are_reaped_as_pid1() {
    let mut running = Pyinit::new()
        .as_pid1()
        .app(python_fixture("make_zombies.py", &["200"]))
        .start();
    running.wait_ready();
    poll_until(REAP_WAIT, "every orphan to be reaped", || {
        running.zombies().is_empty()
    });
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn orphans_are_reaped_as_subreaper() {
    let mut running = Pyinit::new()
        .args(["--log-level", "debug"])
        .app(python_fixture("make_zombies.py", &["200"]))
        .start();
    running.wait_ready();
    running.stderr.wait_for("subreaper", PATIENCE);
    poll_until(REAP_WAIT, "every orphan to be reaped", || {
        running.zombies().is_empty()
    });
    running.stderr.wait_for("orphans reaped", PATIENCE);
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn orphans_killed_by_a_real_time_signal_are_reaped_and_counted() {
    let mut running = Pyinit::new()
        .as_pid1()
        .app(python_fixture("make_zombies.py", &["20", "--signal", "40"]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(REAP_WAIT, "20 orphans counted in /metrics", || {
        metric(addr, "pyinit_orphans_reaped_total").is_some_and(|count| count >= 20.0)
    });
    assert!(running.zombies().is_empty(), "{:?}", running.zombies());
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn an_exec_probe_killed_by_a_real_time_signal_is_reported_at_once() {
    // The timeout is long: a probe whose exit the reaper lost would only ever time out.
    let running = Pyinit::new()
        .as_pid1()
        .args(["--liveness", "exec:/bin/sh -c 'kill -40 $$'"])
        .args(["--liveness-period", "200ms", "--liveness-timeout", "10s"])
        .args(["--liveness-failure-threshold", "1"])
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    let failures = "pyinit_probe_results_total{probe=\"liveness\",result=\"failure\"}";
    poll_until(PATIENCE, "two liveness probes to fail", || {
        metric(addr, failures).is_some_and(|count| count >= 2.0)
    });
    let answer = get(addr, "/livez?verbose");
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("[-]liveness failed: killed by signal 40 (RTMIN+6)"),
        "{}",
        answer.body
    );
    let timeouts = "pyinit_probe_results_total{probe=\"liveness\",result=\"timeout\"}";
    assert_eq!(metric(addr, timeouts).unwrap_or(0.0), 0.0);
}
