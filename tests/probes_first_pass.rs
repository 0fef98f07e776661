//! Readiness as soon as the app is: until a readiness or startup probe first passes, pyinit
//! probes a port that refuses every 100 ms whatever the period, so `/readyz` turns 200 within a
//! fraction of a second of a late-listening app; once it passed, the period rules again, and an
//! app that answers 503 while it warms up is probed less and less often, never flooded. All at
//! the default period of 10 s, with the app's own count of the probes it answered. And the
//! first-ready hold: a `/readyz` asked before the app first answered waits for it (up to 900 ms)
//! and answers 200 as it does, as the kubelet's own probe of the app would have, unless the drain
//! begins first.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::http::{Answer, free_port, get, health_addr};
use crate::common::{PATIENCE, Pyinit, Running, poll_until, python_fixture};

/// `http_app.py` on `port`, printing every request it answers, with `args`.
fn counting_app(port: u16, args: &[&str]) -> Vec<OsString> {
    let port = port.to_string();
    let mut all = vec!["--port", port.as_str(), "--print-requests"];
    all.extend_from_slice(args);
    python_fixture("http_app.py", &all)
}

/// pyinit with one probe of `kind` on the app's /healthz at Kubernetes' default timing.
fn start(kind: &str, port: u16, app: Vec<OsString>) -> (Running, SocketAddr) {
    let running = Pyinit::new()
        .args([
            format!("--{kind}"),
            format!("http://127.0.0.1:{port}/healthz"),
        ])
        .app(app)
        .start();
    let addr = health_addr(&running);
    (running, addr)
}

/// The app's answers so far, by status code: `request /healthz CODE` lines.
fn answered(running: &Running, code: u16) -> usize {
    let line = format!("request /healthz {code}");
    running
        .stdout
        .all()
        .iter()
        .filter(|seen| **seen == line)
        .count()
}

/// Polls `/readyz` every 10 ms until it answers 200; returns when it did.
fn wait_for_readyz(addr: SocketAddr) -> Instant {
    let mut ready_at = None;
    poll_until(PATIENCE, "/readyz to answer 200", || {
        let ok = get(addr, "/readyz").status == 200;
        if ok {
            ready_at = Some(Instant::now());
        }
        ok
    });
    ready_at.unwrap()
}

#[test]
fn readyz_turns_200_within_a_second_of_a_late_listening_app() {
    let port = free_port();
    let (running, addr) = start(
        "readiness",
        port,
        counting_app(port, &["--listen-after", "2.5"]),
    );
    // The app prints its ready line right after it started listening.
    running.wait_ready();
    let listening = Instant::now();
    let ready = wait_for_readyz(addr);
    let late = ready - listening;
    assert!(
        late < Duration::from_secs(1),
        "/readyz turned 200 {late:?} after the app listened\n{}",
        running.stderr.joined()
    );
}

#[test]
fn a_startup_probe_is_fast_too_and_its_failure_threshold_still_counts_periods() {
    let port = free_port();
    let running = Pyinit::new()
        .args([
            "--startup".to_owned(),
            format!("http://127.0.0.1:{port}/healthz"),
        ])
        // Two failures, 10 s apart as the kubelet counts them: more than the 2.5 s the app takes.
        .args(["--startup-failure-threshold", "2"])
        .app(counting_app(port, &["--listen-after", "2.5"]))
        .start();
    let addr = health_addr(&running);
    // Refused some 25 times by now, but that is one period's failure, not two.
    running.wait_ready();
    let listening = Instant::now();
    let ready = wait_for_readyz(addr);
    let late = ready - listening;
    assert!(
        late < Duration::from_secs(1),
        "/readyz turned 200 {late:?} after the app listened"
    );
    assert_eq!(
        get(addr, "/livez").status,
        200,
        "{}",
        running.stderr.joined()
    );
    assert!(
        !running
            .stderr
            .contains("startup probe reached its failure threshold"),
        "{}",
        running.stderr.joined()
    );
}

#[test]
fn a_ready_app_gets_no_more_probes_than_the_period_allows() {
    let port = free_port();
    let (running, addr) = start("readiness", port, counting_app(port, &[]));
    running.wait_ready();
    wait_for_readyz(addr);
    let before = answered(&running, 200);
    thread::sleep(Duration::from_secs(12));
    let probes = answered(&running, 200) - before;
    // From the probe that passed on, one per 10 s period: 12 s hold one or two of them.
    assert!(
        (1..=2).contains(&probes),
        "{probes} probes in 12 s at a 10 s period\n{}",
        running.stdout.joined()
    );
}

#[test]
fn an_app_answering_503_while_it_warms_up_is_not_flooded() {
    let port = free_port();
    let (running, addr) = start("readiness", port, counting_app(port, &["--fail-for", "8"]));
    running.wait_ready();
    let listening = Instant::now();
    // The 503s of the first 8 s; counted once they are over.
    thread::sleep(Duration::from_secs(8));
    let warming = answered(&running, 503);
    thread::sleep(Duration::from_secs(4));
    let late = answered(&running, 503) - warming;
    // The wait after each 503 doubles from 200 ms: 0, 0.2, 0.6, 1.4, 3.0, 6.2 s. Probing every
    // 100 ms would have made 80; the period alone, 1.
    assert!(
        (1..=8).contains(&warming),
        "{warming} probes answered 503 in 8 s\n{}",
        running.stdout.joined()
    );
    // The app answers 200 from 8 s on: the next probe, at most a wait later, passes.
    assert!(late <= 1, "{late} probes answered 503 after 8 s");
    let ready = wait_for_readyz(addr);
    assert!(
        ready - listening < Duration::from_secs(8 + 7),
        "/readyz turned 200 {:?} after the app listened",
        ready - listening
    );
}

/// pyinit probing an app that listens only once the returned file exists, whose probe has been
/// refused at least once; `/readyz?verbose` is held too, and answers 503 at the hold's end.
fn start_before_the_app_listens(listen: &crate::dist::TempDir) -> (Running, SocketAddr, PathBuf) {
    let port = free_port();
    let go = listen.path.join("listen");
    // Without --print-requests: the answer to pyinit's first probe, printed by the server's
    // thread as the app prints its ready line, could break that line.
    let port_arg = port.to_string();
    let app = python_fixture(
        "http_app.py",
        &["--port", &port_arg, "--listen-when", go.to_str().unwrap()],
    );
    let (running, addr) = start("readiness", port, app);
    poll_until(PATIENCE, "pyinit's probe to be refused", || {
        get(addr, "/readyz?verbose")
            .body
            .contains("[-]readiness failed: connection refused")
    });
    (running, addr, go)
}

/// `GET /readyz` from a thread of its own: its answer, and when it came.
fn ask_readyz(addr: SocketAddr) -> thread::JoinHandle<(Answer, Instant)> {
    thread::spawn(move || {
        let answer = get(addr, "/readyz");
        (answer, Instant::now())
    })
}

#[test]
fn a_readyz_sent_before_the_app_listens_answers_200_as_soon_as_it_does() {
    let listen = crate::dist::TempDir::new("first-ready-hold");
    let (running, addr, go) = start_before_the_app_listens(&listen);
    let asked = Instant::now();
    let held = ask_readyz(addr);
    // The scenario: the kubelet's probe is sent 100 ms before the app starts listening.
    thread::sleep(Duration::from_millis(100));
    std::fs::write(&go, "").unwrap();
    let released = Instant::now();
    running.wait_ready();
    let (answer, answered) = held.join().unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "ok"),
        "asked {:?} before the app could listen\n{}",
        released - asked,
        running.stderr.joined()
    );
    // pyinit probes every 100 ms until the first pass; the hold would end 800 ms from here.
    let late = answered - released;
    assert!(
        late < Duration::from_millis(700),
        "answered {late:?} after the app could listen"
    );
}

#[test]
fn a_readyz_held_when_the_drain_begins_answers_503_at_once() {
    let listen = crate::dist::TempDir::new("first-ready-hold");
    let (running, addr, _never) = start_before_the_app_listens(&listen);
    let held = ask_readyz(addr);
    // The scenario: SIGTERM comes 300 ms into the hold, 600 ms before its end.
    thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    running.signal("TERM");
    let (answer, answered) = held.join().unwrap();
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        answer.body.contains("[-]shutdown failed"),
        "answered before the drain: {}",
        answer.body
    );
    let took = answered.saturating_duration_since(sent);
    assert!(
        took < Duration::from_millis(300),
        "the held /readyz answered 503 {took:?} after SIGTERM"
    );
}
