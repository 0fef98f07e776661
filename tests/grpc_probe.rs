//! The grpc probe against a real grpcio server (tests/fixtures/grpc_app.py, with
//! grpcio-health-checking's servicer): a status switched to NOT_SERVING makes the app not ready
//! within the thresholds and SERVING again makes it ready; a service the server does not know is
//! a failure (grpcio answers NOT_FOUND); a named service it knows passes; a server without the
//! health service fails naming UNIMPLEMENTED, with grpcio's own words in the log alone; liveness
//! and startup probes take the same form; every probe's connection is closed; and bad forms of
//! the flag are usage errors. The table in `probes.rs` has grpc's success, UNIMPLEMENTED, HTTP/1
//! and timeout rows beside the other kinds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::http::{free_port, get, health_addr, metric};
use crate::common::{PATIENCE, Pyinit, Running, poll_until};
use crate::probes::grpc_app;

fn n_results(addr: SocketAddr, kind: &str, result: &str) -> f64 {
    let sample = format!("pyinit_probe_results_total{{probe=\"{kind}\",result=\"{result}\"}}");
    metric(addr, &sample).unwrap_or(0.0)
}

/// pyinit with one grpc `kind` probe every 200ms (timeout 1s, failure threshold 3), in front of
/// the gRPC fixture with `app_args`; once the app's ready line is out.
fn start_grpc_probed(
    kind: &str,
    probe: &str,
    port: u16,
    app_args: &[&str],
) -> (Running, SocketAddr) {
    let running = Pyinit::new()
        .args([format!("--{kind}"), probe.to_owned()])
        .args([format!("--{kind}-period"), "200ms".to_owned()])
        .args([format!("--{kind}-timeout"), "1s".to_owned()])
        .args([format!("--{kind}-failure-threshold"), "3".to_owned()])
        .app(grpc_app(port, app_args))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    (running, addr)
}

/// SERVING → ready; the servicer set to NOT_SERVING (SIGUSR1, forwarded by pyinit) → not ready
/// once the failure threshold (3) is reached, not before, within a generous bound of the three
/// periods it takes; SERVING again (SIGUSR2) → ready again.
#[test]
fn a_grpc_readiness_probe_follows_the_servicers_status() {
    let port = free_port();
    let probe = format!("grpc://127.0.0.1:{port}");
    let (running, addr) = start_grpc_probed("readiness", &probe, port, &[]);
    poll_until(PATIENCE, "/readyz 200 on SERVING", || {
        get(addr, "/readyz").status == 200
    });
    assert!(
        get(addr, "/readyz?verbose")
            .body
            .contains("[+]readiness ok")
    );

    running.signal("USR1");
    running.stdout.wait_for("not serving", PATIENCE);
    let switched = Instant::now();
    poll_until(PATIENCE, "/readyz 503 on NOT_SERVING", || {
        get(addr, "/readyz").status == 503
    });
    let took = switched.elapsed();
    // Three failures at 200ms take 0.4-0.6s; 5s is the margin of a loaded 2-core machine.
    assert!(
        took < Duration::from_secs(5),
        "not ready only after {took:?}"
    );
    let failures = n_results(addr, "readiness", "failure");
    assert!(failures >= 3.0, "not ready after {failures} failures");
    let verbose = get(addr, "/readyz?verbose").body;
    assert!(
        verbose.contains("[-]readiness failed: service unhealthy (responded with \"NOT_SERVING\")"),
        "{verbose}"
    );
    // The verdict's log line names the status too.
    let line = running.stderr.wait_for("not ready", PATIENCE);
    assert!(line.contains("NOT_SERVING"), "{line}");

    running.signal("USR2");
    poll_until(PATIENCE, "/readyz 200 on SERVING again", || {
        get(addr, "/readyz").status == 200
    });
}

/// `?service=NAME` asks for that service's status: one the server registered passes, one it
/// does not know fails, as grpcio-health-checking answers it: NOT_FOUND (the health protocol's
/// answer to Check for an unknown service; SERVICE_UNKNOWN is Watch's).
#[test]
fn a_grpc_probe_asks_for_the_named_service() {
    let [known, unknown] = [(); 2].map(|()| free_port());
    let app_args = ["--service", "shop.Orders"];
    let (_known_app, known_addr) = start_grpc_probed(
        "readiness",
        &format!("grpc://127.0.0.1:{known}?service=shop.Orders"),
        known,
        &app_args,
    );
    let (_unknown_app, unknown_addr) = start_grpc_probed(
        "readiness",
        &format!("grpc://127.0.0.1:{unknown}?service=nope"),
        unknown,
        &app_args,
    );
    poll_until(PATIENCE, "the known service to be ready", || {
        get(known_addr, "/readyz").status == 200
    });
    poll_until(PATIENCE, "three failures of the unknown service", || {
        n_results(unknown_addr, "readiness", "failure") >= 3.0
    });
    let answer = get(unknown_addr, "/readyz?verbose");
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("[-]readiness failed: health rpc probe failed: NOT_FOUND"),
        "{}",
        answer.body
    );
    assert_eq!(n_results(unknown_addr, "readiness", "success"), 0.0);
}

/// A server without the health service: the health port names UNIMPLEMENTED as the kubelet
/// does; grpcio's own words ("Method not found!") are the app's, and go to pyinit's log only.
#[test]
fn a_server_without_the_health_service_fails_naming_unimplemented() {
    let port = free_port();
    let probe = format!("grpc://127.0.0.1:{port}");
    let (running, addr) = start_grpc_probed("readiness", &probe, port, &["--no-health"]);
    poll_until(PATIENCE, "three failures", || {
        n_results(addr, "readiness", "failure") >= 3.0
    });
    let kubelets = "this server does not implement the grpc health protocol \
                    (grpc.health.v1.Health): UNIMPLEMENTED";
    let answer = get(addr, "/readyz?verbose");
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer
            .body
            .contains(&format!("[-]readiness failed: {kubelets} (last probe")),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("Method not found"), "{}", answer.body);
    let line = running
        .stderr
        .wait_for("readiness probe failed: this server", PATIENCE);
    assert!(
        line.contains(&format!("{kubelets}: Method not found!")),
        "{line}"
    );
    assert_eq!(n_results(addr, "readiness", "success"), 0.0);
}

/// Startup and liveness take the same form: the startup probe passes on SERVING and lets the
/// liveness probe run; NOT_SERVING then fails liveness.
#[test]
fn grpc_startup_and_liveness_probes() {
    let port = free_port();
    let probe = format!("grpc://127.0.0.1:{port}");
    let running = Pyinit::new()
        .args(["--startup", &probe, "--startup-period", "200ms"])
        .args(["--liveness", &probe, "--liveness-period", "200ms"])
        .args(["--liveness-failure-threshold", "2"])
        .app(grpc_app(port, &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    running.stderr.wait_for("startup probe succeeded", PATIENCE);
    poll_until(PATIENCE, "two liveness successes", || {
        n_results(addr, "liveness", "success") >= 2.0
    });
    assert_eq!(get(addr, "/livez").status, 200);
    running.signal("USR1");
    poll_until(PATIENCE, "/livez 503 on NOT_SERVING", || {
        get(addr, "/livez").status == 503
    });
    let verbose = get(addr, "/livez?verbose").body;
    assert!(
        verbose.contains("[-]liveness failed: service unhealthy (responded with \"NOT_SERVING\")"),
        "{verbose}"
    );
}

/// The sockets pyinit holds (`socket:[...]` links in /proc/PID/fd).
fn n_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// A new connection per probe, closed when it ends, whether it answered or timed out: once the
/// app's Check hangs (SIGHUP), every probe times out "in the rpc" (the server spoke HTTP/2), and
/// after ten of them pyinit holds no more sockets than before (at most the probe in flight).
#[test]
fn every_grpc_probe_closes_its_connection_even_when_it_times_out() {
    let port = free_port();
    let running = Pyinit::new()
        .args(["--readiness", &format!("grpc://127.0.0.1:{port}")])
        .args(["--readiness-period", "100ms"])
        .args(["--readiness-timeout", "300ms"])
        .app(grpc_app(port, &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(PATIENCE, "five successful probes", || {
        n_results(addr, "readiness", "success") >= 5.0
    });
    let before = n_sockets(running.pyinit_pid);
    poll_until(PATIENCE, "twenty-five successful probes", || {
        n_results(addr, "readiness", "success") >= 25.0
    });
    // At most the probe in flight beside what was there; a health request's connection may
    // take a moment to close, hence a poll.
    poll_until(PATIENCE, "no more sockets after answered probes", || {
        n_sockets(running.pyinit_pid) <= before + 1
    });

    running.signal("HUP");
    running.stdout.wait_for("hanging", PATIENCE);
    poll_until(PATIENCE, "ten timed-out probes", || {
        n_results(addr, "readiness", "timeout") >= 10.0
    });
    poll_until(PATIENCE, "no more sockets after timed-out probes", || {
        n_sockets(running.pyinit_pid) <= before + 1
    });
    let verbose = get(addr, "/readyz?verbose").body;
    assert!(
        verbose.contains("[-]readiness failed: health rpc did not complete within 300ms"),
        "{verbose}"
    );
}

/// Bad forms of a grpc probe: a usage error (exit 2) naming the flag and the value, and the app
/// never starts.
#[test]
fn a_bad_grpc_probe_is_a_usage_error() {
    for (flag, value, reason) in [
        ("--readiness", "grpc://127.0.0.1", "the port is missing"),
        (
            "--liveness",
            "grpc://127.0.0.1:50051/grpc.health.v1.Health",
            "no path",
        ),
        (
            "--startup",
            "grpc://127.0.0.1:50051?svc=x",
            "unknown parameter 'svc=x'",
        ),
        (
            "--readiness",
            "grpc://grpc.internal:50051",
            "not an IP address or localhost",
        ),
        (
            "--readiness",
            "grpcs://127.0.0.1:50051",
            "TLS is not supported",
        ),
    ] {
        let finished = Pyinit::new()
            .args([flag, value])
            .app(vec!["/bin/echo".into(), "app started".into()])
            .run();
        finished.assert_exit_code(2);
        let stderr = finished.stderr_text();
        assert!(
            stderr.contains(flag) && stderr.contains(value) && stderr.contains(reason),
            "{flag} {value}: {stderr}"
        );
        assert!(
            !finished
                .stdout
                .iter()
                .any(|line| line.contains("app started")),
            "the app ran"
        );
    }
}
