//! The health server as the kubelet and Prometheus see it: `/readyz`, `/livez`, `/metrics`,
//! their codes and formats, the drain, the connection limits, and sidecar mode.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::http::{free_port, get, health_addr, metric, parse_answer, request, send_raw};
use crate::common::{PATIENCE, Pyinit, poll_until, python_fixture};

fn http_app(port: u16, args: &[&str]) -> Vec<OsString> {
    let port = port.to_string();
    let mut all = vec!["--port", port.as_str()];
    all.extend_from_slice(args);
    python_fixture("http_app.py", &all)
}

fn healthz(port: u16) -> String {
    format!("http://127.0.0.1:{port}/healthz")
}

#[test]
fn readyz_goes_from_503_to_200_when_the_apps_health_endpoint_recovers() {
    let port = free_port();
    let running = Pyinit::new()
        .args(["--readiness", &healthz(port), "--readiness-period", "200ms"])
        // Before the first ready each 503 below is held up to 900 ms: the app warms up for 4 s,
        // longer than both.
        .app(http_app(port, &["--fail-for", "4"]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    // The 503 comes from the app's own endpoint, as the verbose list shows.
    poll_until(PATIENCE, "/readyz to report the app's 503", || {
        let answer = get(addr, "/readyz?verbose");
        answer.status == 503 && answer.body.contains("[-]readiness failed: status 503")
    });
    assert_eq!(get(addr, "/readyz").status, 503);
    poll_until(PATIENCE, "/readyz to answer 200", || {
        get(addr, "/readyz").status == 200
    });
    assert_eq!(get(addr, "/readyz").body, "ok");
    // Every transition is logged once, not every probe.
    let successes_then = metric(
        addr,
        "pyinit_probe_results_total{probe=\"readiness\",result=\"success\"}",
    )
    .unwrap();
    poll_until(PATIENCE, "three more successful probes", || {
        metric(
            addr,
            "pyinit_probe_results_total{probe=\"readiness\",result=\"success\"}",
        )
        .unwrap()
            >= successes_then + 3.0
    });
    let ready_lines = running
        .stderr
        .all()
        .into_iter()
        .filter(|line| line.trim_end().ends_with("INFO ready"))
        .count();
    assert_eq!(ready_lines, 1, "stderr:\n{}", running.stderr.joined());
}

#[test]
fn readyz_turns_503_after_failure_threshold_times_period() {
    let port = free_port();
    let period = Duration::from_millis(500);
    let running = Pyinit::new()
        .args(["--readiness", &healthz(port), "--readiness-period", "500ms"])
        .args(["--readiness-failure-threshold", "3"])
        .app(http_app(port, &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(PATIENCE, "/readyz to answer 200", || {
        get(addr, "/readyz").status == 200
    });
    // SIGUSR1 is forwarded to the app, whose endpoint answers 503 from then on.
    let started_failing = Instant::now();
    running.signal("USR1");
    running.stdout.wait_for("failing", PATIENCE);
    poll_until(PATIENCE, "/readyz to answer 503", || {
        get(addr, "/readyz").status == 503
    });
    let elapsed = started_failing.elapsed();
    // Three consecutive failures: the first within one period, the third two periods later.
    assert!(
        elapsed >= period * 2 - Duration::from_millis(50),
        "not ready after only {elapsed:?}"
    );
    assert!(
        elapsed <= period * 3 + Duration::from_secs(3),
        "still ready after {elapsed:?}"
    );
    running
        .stderr
        .wait_for("not ready reason=readiness: status 503", PATIENCE);
}

#[test]
fn readyz_fails_within_100ms_of_sigterm_while_livez_stays_ok_until_the_app_exits() {
    let port = free_port();
    let mut running = Pyinit::new()
        .args(["--pre-stop-delay", "1s"])
        .app(http_app(port, &["--stop-after", "1.5"]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    assert_eq!(get(addr, "/readyz").status, 200);
    let sent = Instant::now();
    running.signal("TERM");
    // Asked in a tight loop: the 10 ms step of poll_until would eat a tenth of the budget.
    while get(addr, "/readyz").status != 503 {
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "/readyz never answered 503"
        );
    }
    let elapsed = sent.elapsed();
    assert!(
        elapsed < Duration::from_millis(100),
        "readiness dropped {elapsed:?} after SIGTERM"
    );
    let answer = get(addr, "/readyz?verbose");
    assert!(
        answer
            .body
            .contains("[-]shutdown failed: draining after SIGTERM"),
        "{}",
        answer.body
    );
    assert_eq!(get(addr, "/livez").status, 200);
    // After the pre-stop delay the app gets SIGTERM and takes 1.5s to stop: still live.
    running.stdout.wait_for("stopping", PATIENCE);
    let answer = get(addr, "/livez");
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
    assert_eq!(metric(addr, "pyinit_draining"), Some(1.0));
    assert_eq!(metric(addr, "pyinit_live"), Some(1.0));
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn verbose_exclude_and_single_checks() {
    let running = Pyinit::new()
        .args(["--readiness-period", "200ms", "--readiness"])
        .arg(format!(
            "exec:/usr/bin/python3 {} fail",
            crate::common::fixture("exec_probe.py").display()
        ))
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(PATIENCE, "a failed readiness probe", || {
        get(addr, "/readyz?verbose").body.contains("exit code 3")
    });
    let answer = get(addr, "/readyz?verbose");
    assert_eq!(answer.status, 503);
    let lines: Vec<&str> = answer.body.lines().collect();
    assert_eq!(lines.len(), 4, "{}", answer.body);
    assert_eq!(lines[0], "[+]app-running ok");
    assert!(
        lines[1].starts_with("[-]readiness failed: exit code 3 (last probe ")
            && lines[1].ends_with("s ago)"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "[+]shutdown ok");
    assert_eq!(lines[3], "readyz check failed");
    // Without ?verbose the list is there, the reasons are not.
    let answer = get(addr, "/readyz");
    assert_eq!(answer.status, 503);
    assert!(
        answer.body.contains("[-]readiness failed: reason withheld"),
        "{}",
        answer.body
    );
    let answer = get(addr, "/readyz?exclude=readiness");
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
    let answer = get(addr, "/readyz?verbose&exclude=readiness&exclude=shutdown");
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("[+]readiness excluded: ok"));
    assert!(answer.body.ends_with("readyz check passed\n"));
    assert_eq!(get(addr, "/readyz/readiness").status, 503);
    assert!(
        get(addr, "/readyz/readiness")
            .body
            .starts_with("[-]readiness failed: exit code 3")
    );
    let answer = get(addr, "/readyz/app-running");
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
    assert_eq!(get(addr, "/readyz/nope").status, 404);
    let answer = get(addr, "/livez?verbose");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "[+]app-running ok\nlivez check passed\n")
    );
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(get(addr, "/livez/app-running").status, 200);
    assert_eq!(
        get(addr, "/readyz").header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn unknown_paths_other_methods_and_malformed_requests() {
    let running = Pyinit::new()
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    for path in ["/", "/ready", "/readyzz", "/metrics/x", "/favicon.ico"] {
        assert_eq!(get(addr, path).status, 404, "{path}");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let answer = request(addr, method, "/readyz");
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow").as_deref(), Some("GET, HEAD"));
    }
    assert_eq!(request(addr, "POST", "/nowhere").status, 404);
    // HEAD: the status of GET, no body.
    let answer = request(addr, "HEAD", "/livez");
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    // Malformed requests get 400 and the server stays up.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /readyz HTTP/9.9\r\n\r\n",
        b"GET /readyz HTTP/1.1\r\nBad Header\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ] {
        let raw = send_raw(addr, garbage);
        assert!(raw.starts_with("HTTP/1.1 400"), "{garbage:?} got {raw:?}");
    }
    // Headers are bounded: 431, and the server stays up.
    let huge = format!(
        "GET /readyz HTTP/1.1\r\nHost: pod\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let raw = send_raw(addr, huge.as_bytes());
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw:?}");
    // Never a redirect, whatever the path looks like.
    for path in ["/readyz/", "/livez/", "//readyz", "/readyz?verbose=0&x=%zz"] {
        let status = get(addr, path).status;
        assert!(!(300..400).contains(&status), "{path}: {status}");
    }
    assert_eq!(get(addr, "/livez").status, 200);
}

/// Reads one answer from a kept-alive connection, by its Content-Length.
fn read_one_answer(stream: &mut TcpStream) -> crate::common::http::Answer {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed early"
        );
        raw.push(byte[0]);
    }
    let head = parse_answer(&String::from_utf8_lossy(&raw));
    let length: usize = head.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    raw.extend_from_slice(&body);
    parse_answer(&String::from_utf8_lossy(&raw))
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let running = Pyinit::new()
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for path in ["/livez", "/metrics", "/readyz", "/metrics"] {
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: pod\r\n\r\n").as_bytes())
            .unwrap();
        let answer = read_one_answer(&mut stream);
        assert_eq!(answer.status, 200, "{path}");
    }
}

#[test]
fn five_hundred_idle_connections_do_not_starve_a_fresh_readyz() {
    let running = Pyinit::new()
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    let mut idle = Vec::new();
    for n in 0..500 {
        let mut stream = TcpStream::connect(addr).unwrap();
        // Some send half a request and stall; the rest send nothing at all.
        if n % 5 == 0 {
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: po")
                .unwrap();
        }
        idle.push(stream);
    }
    // The idle connections are held open now; the first answer may wait behind their accepts
    // on a loaded machine, every later one must not wait on them at all.
    assert_eq!(get(addr, "/readyz").status, 200);
    for _ in 0..3 {
        let asked = Instant::now();
        let answer = get(addr, "/readyz");
        let took = asked.elapsed();
        assert_eq!(answer.status, 200);
        assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    }
    drop(idle);
}

#[test]
fn metrics_report_the_app_signals_and_probes() {
    let running = Pyinit::new()
        .args(["--liveness-period", "200ms", "--liveness"])
        .arg(format!(
            "exec:/usr/bin/python3 {} ok",
            crate::common::fixture("exec_probe.py").display()
        ))
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    running.signal("USR1");
    running.stdout.wait_for("signal USR1", PATIENCE);
    poll_until(PATIENCE, "two liveness probes", || {
        metric(
            addr,
            "pyinit_probe_results_total{probe=\"liveness\",result=\"success\"}",
        )
        .is_some_and(|count| count >= 2.0)
    });
    let answer = get(addr, "/metrics");
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = answer.body;
    for line in [
        "pyinit_app_up 1\n",
        "pyinit_ready 1\n",
        "pyinit_live 1\n",
        "pyinit_draining 0\n",
        "pyinit_orphans_reaped_total 0\n",
        "pyinit_signals_forwarded_total{signal=\"USR1\"} 1\n",
        "pyinit_signals_forwarded_total{signal=\"TERM\"} 0\n",
        "pyinit_probe_success{probe=\"liveness\"} 1\n",
        "pyinit_probe_results_total{probe=\"liveness\",result=\"failure\"} 0\n",
        "pyinit_probe_duration_seconds_count{probe=\"liveness\"} ",
        "pyinit_probe_last_duration_seconds{probe=\"liveness\"} ",
        &format!(
            "pyinit_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        ),
        "# TYPE pyinit_probe_results_total counter\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("pyinit_app_exit_code"), "{text}");
}

#[test]
fn a_taken_health_address_stops_pyinit_before_the_app_starts() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = taken.local_addr().unwrap();
    let marker = std::env::temp_dir().join(format!("pyinit-health-bind-{}", std::process::id()));
    let finished = Pyinit::new()
        .args(["--health-addr", &addr.to_string()])
        .app(vec!["/usr/bin/touch".into(), marker.clone().into()])
        .run();
    finished.assert_exit_code(125);
    let stderr = finished.stderr_text();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("--health-addr {addr}"))
            && stderr.contains("Address already in use"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the app ran although the bind failed");
}

#[test]
fn health_addr_off_serves_nothing() {
    let mut running = Pyinit::new()
        .args(["--health-addr", "off"])
        .app(python_fixture("print_signals.py", &[]))
        .start();
    running.wait_ready();
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    assert!(!running.stderr.contains("health server listening"));
}

/// The app of a sidecar test: another container's app, started by the test itself.
struct OtherContainer(Child);

impl OtherContainer {
    fn start(port: u16) -> Self {
        let argv = http_app(port, &[]);
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        poll_until(PATIENCE, "the other container's app to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        OtherContainer(child)
    }
}

impl Drop for OtherContainer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        #[allow(
            clippy::disallowed_methods,
            reason = "the test reaps the app it started itself"
        )]
        let _ = self.0.wait();
    }
}

#[test]
fn sidecar_follows_its_probes_and_exits_0_after_the_pre_stop_delay() {
    let port = free_port();
    let app = OtherContainer::start(port);
    let mut running = Pyinit::new()
        .args(["--readiness", &healthz(port), "--readiness-period", "200ms"])
        .args(["--liveness", &format!("tcp://127.0.0.1:{port}")])
        .args([
            "--liveness-period",
            "200ms",
            "--liveness-failure-threshold",
            "2",
        ])
        .args([
            "--readiness-failure-threshold",
            "2",
            "--pre-stop-delay",
            "1s",
        ])
        .start();
    let addr = health_addr(&running);
    running.stderr.wait_for("health sidecar", PATIENCE);
    poll_until(PATIENCE, "the sidecar to report ready", || {
        get(addr, "/readyz").status == 200
    });
    let answer = get(addr, "/readyz?verbose");
    assert!(!answer.body.contains("app-running"), "{}", answer.body);
    assert!(answer.body.contains("[+]readiness ok"), "{}", answer.body);
    assert_eq!(metric(addr, "pyinit_app_up"), Some(0.0));
    // The watched app goes away: both follow the probes.
    drop(app);
    poll_until(PATIENCE, "/readyz and /livez to fail", || {
        get(addr, "/readyz").status == 503 && get(addr, "/livez").status == 503
    });
    assert!(
        get(addr, "/livez?verbose")
            .body
            .contains("[-]liveness failed: connection refused")
    );
    let _app = OtherContainer::start(port);
    poll_until(PATIENCE, "/readyz and /livez to recover", || {
        get(addr, "/readyz").status == 200 && get(addr, "/livez").status == 200
    });
    let sent = Instant::now();
    running.signal("TERM");
    poll_until(Duration::from_secs(2), "/readyz to answer 503", || {
        get(addr, "/readyz").status == 503
    });
    assert!(
        sent.elapsed() < Duration::from_millis(100),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    assert!(
        sent.elapsed() >= Duration::from_millis(950),
        "exited before the pre-stop delay: {:?}",
        sent.elapsed()
    );
}

#[test]
fn slow_and_idle_clients_are_disconnected_after_the_header_read_timeout() {
    let running = Pyinit::new()
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    // One client stalls halfway through its headers; the other keeps its connection open after
    // an answer, idle.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /readyz HTTP/1.1\r\nHost: po").unwrap();
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /livez HTTP/1.1\r\nHost: pod\r\n\r\n")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_one_answer(&mut idle).status, 200);
    let opened = Instant::now();
    for (name, stream) in [("slow", &mut slow), ("idle", &mut idle)] {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut rest = Vec::new();
        // The server closes the connection (read returns 0) rather than answering.
        let _ = stream.read_to_end(&mut rest);
        let held = opened.elapsed();
        assert!(
            held < Duration::from_secs(20),
            "{name} client held its connection for {held:?}"
        );
        assert!(
            rest.is_empty(),
            "{name}: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    assert!(
        opened.elapsed() >= Duration::from_secs(9),
        "closed before the header read timeout: {:?}",
        opened.elapsed()
    );
}

#[test]
fn after_the_app_exits_livez_fails_and_metrics_show_its_code() {
    // The app exits 3 and leaves a process that ignores SIGTERM: pyinit stays up for the orphan
    // grace, long enough to be asked.
    let mut running = Pyinit::new()
        .app(python_fixture("leave_behind.py", &["3", "--stubborn"]))
        .start();
    let addr = health_addr(&running);
    running.stderr.wait_for("app exited", PATIENCE);
    let answer = get(addr, "/livez?verbose");
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("[-]app-running failed: app exited with code 3"),
        "{}",
        answer.body
    );
    assert_eq!(get(addr, "/readyz").status, 503);
    assert_eq!(metric(addr, "pyinit_app_exit_code"), Some(3.0));
    assert_eq!(metric(addr, "pyinit_app_up"), Some(0.0));
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(3));
}

/// A native sidecar (an init container with `restartPolicy: Always`) gets its SIGTERM only once
/// the pod's main containers have exited, from what is left of the grace period they share. Both
/// pyinits run as PID 1 in Kubernetes (`KUBERNETES_SERVICE_HOST` set), the sidecar watching the
/// main container's app: while the main container drains (its pre-stop delay, then the app's
/// own stop), the sidecar stays ready; TERMed after that, it exits 0 at once, with no pre-stop
/// delay of its own eating into the grace period.
#[test]
fn a_native_sidecar_stays_ready_while_the_main_container_drains_and_exits_at_once_on_its_term() {
    let port = free_port();
    let in_a_pod = |pyinit: crate::common::Pyinit| {
        pyinit
            .as_pid1()
            .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .args(["--grace-period", "20s", "--readiness", &healthz(port)])
            .args(["--readiness-period", "200ms"])
    };
    let mut main = in_a_pod(Pyinit::new())
        .args(["--pre-stop-delay", "2s"])
        .app(http_app(port, &["--stop-after", "1"]))
        .start();
    let main_addr = health_addr(&main);
    let mut sidecar = in_a_pod(Pyinit::new()).start();
    let sidecar_addr = health_addr(&sidecar);
    sidecar.stderr.wait_for("health sidecar", PATIENCE);
    poll_until(PATIENCE, "both containers to be ready", || {
        get(main_addr, "/readyz").status == 200 && get(sidecar_addr, "/readyz").status == 200
    });

    // The pod is deleted: the kubelet TERMs the main container alone.
    let sent = Instant::now();
    main.signal("TERM");
    poll_until(
        Duration::from_secs(2),
        "the main container's /readyz 503",
        || get(main_addr, "/readyz").status == 503,
    );
    let mut asked = 0;
    while !main.stdout.contains("exiting") {
        assert!(
            sent.elapsed() < PATIENCE,
            "the main container never stopped"
        );
        let answer = get(sidecar_addr, "/readyz?verbose");
        assert_eq!(answer.status, 200, "{}", answer.body);
        asked += 1;
    }
    assert!(asked > 10, "the sidecar was asked only {asked} times");
    assert!(
        sent.elapsed() >= Duration::from_millis(2900),
        "the main container drained in {:?}",
        sent.elapsed()
    );
    assert_eq!(main.wait_exit(PATIENCE).code(), Some(0));
    assert!(!sidecar.stderr.contains("drain started"));

    // Then the sidecar's turn.
    let sent = Instant::now();
    sidecar.signal("TERM");
    assert_eq!(sidecar.wait_exit(PATIENCE).code(), Some(0));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "the sidecar took {:?} to exit",
        sent.elapsed()
    );
    sidecar.stderr.wait_for(
        "drain started: readiness is false signal=\"TERM\" pre_stop_delay_ms=0",
        PATIENCE,
    );
}
