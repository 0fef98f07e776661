//! Each probe kind (http, tcp, grpc, exec, file) for success, failure and timeout, seen through
//! `/readyz`, `/livez` and `/metrics`; startup gating; exec probes and zombies. The http probe
//! follows a real Django app's APPEND_SLASH redirect as the kubelet does; an exec probe's output
//! shows in `?verbose` and in the verdict's log line, and what it leaves behind does not pile up.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::common::http::{free_port, get, health_addr, metric};
use crate::common::runc::venv_bin;
use crate::common::{
    PATIENCE, Pyinit, Running, children_of, descendants_of, fixture, poll_until, python_fixture,
};

/// Starts pyinit with one `kind` probe (period 200ms, timeout 300ms, failure threshold 1) and
/// waits for the app's ready line.
fn start_probed(kind: &str, probe: &str, app: Vec<OsString>) -> (Running, SocketAddr) {
    let running = Pyinit::new()
        .args([format!("--{kind}"), probe.to_owned()])
        .args([format!("--{kind}-period"), "200ms".to_owned()])
        .args([format!("--{kind}-timeout"), "300ms".to_owned()])
        .args([format!("--{kind}-failure-threshold"), "1".to_owned()])
        .app(app)
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    (running, addr)
}

/// Waits until `kind`'s probe has had at least one `result` (success, failure, timeout).
fn wait_for_result(addr: SocketAddr, kind: &str, result: &str) {
    let sample = format!("pyinit_probe_results_total{{probe=\"{kind}\",result=\"{result}\"}}");
    poll_until(PATIENCE, &format!("a {kind} probe {result}"), || {
        metric(addr, &sample).is_some_and(|count| count >= 1.0)
    });
}

fn http_app(port: u16, args: &[&str]) -> Vec<OsString> {
    let port = port.to_string();
    let mut all = vec!["--port", port.as_str()];
    all.extend_from_slice(args);
    python_fixture("http_app.py", &all)
}

/// The gRPC fixture (grpcio with grpcio-health-checking's servicer) on `port`, under the
/// end-to-end venv's Python.
pub fn grpc_app(port: u16, args: &[&str]) -> Vec<OsString> {
    let port = port.to_string();
    let mut argv = vec![
        venv_bin("python3").into_os_string(),
        fixture("grpc_app.py").into_os_string(),
        "--port".into(),
        port.into(),
    ];
    argv.extend(args.iter().map(OsString::from));
    argv
}

fn exec_probe(args: &str) -> String {
    format!(
        "exec:/usr/bin/python3 {} {args}",
        fixture("exec_probe.py").display()
    )
}

fn idle_app() -> Vec<OsString> {
    python_fixture("print_signals.py", &[])
}

/// Asserts the endpoint's status and that its verbose list has `line`.
fn assert_verbose(addr: SocketAddr, endpoint: &str, status: u16, line: &str) {
    let answer = get(addr, &format!("{endpoint}?verbose"));
    assert_eq!(answer.status, status, "{endpoint}:\n{}", answer.body);
    assert!(
        answer.body.contains(line),
        "{endpoint} lacks {line:?}:\n{}",
        answer.body
    );
}

/// What it is, the probe's kind, the probe, the app, the result counted, the endpoint's status, and
/// a line of its `?verbose` list.
type Case = (
    &'static str,
    &'static str,
    String,
    Vec<OsString>,
    &'static str,
    u16,
    String,
);

/// Every kind of probe (http, tcp, grpc, exec, file) for success, failure and timeout, as the endpoint
/// behind it shows it: each case in a pyinit of its own (period 200ms, timeout 300ms, failure
/// threshold 1), all started at once. A case: what it is, the probe's kind (`readiness` is seen in
/// `/readyz`, `liveness` in `/livez`), the probe, the app, the result counted in
/// `pyinit_probe_results_total`, the endpoint's status and a line of its `?verbose` list.
#[test]
fn every_probe_kind_succeeds_fails_and_times_out_as_its_endpoint_shows() {
    let fresh = heartbeat("fresh");
    let missing =
        std::env::temp_dir().join(format!("pyinit-heartbeat-{}-none", std::process::id()));
    let [ok, failing, unknown, slow, tcp_ok, tcp_slow] = [(); 6].map(|()| free_port());
    let [grpc_ok, grpc_bare, grpc_http, grpc_slow] = [(); 4].map(|()| free_port());
    let grpc = |port: u16| format!("grpc://127.0.0.1:{port}");
    let not_http2 = format!(
        "[-]readiness failed: failed to connect service at 127.0.0.1:{grpc_http}: the server \
         does not speak HTTP/2 (an HTTP/1 server?)"
    );
    let grpc_slow_line = format!(
        "[-]liveness failed: failed to connect service at 127.0.0.1:{grpc_slow} within 300ms"
    );
    let http = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    let tcp = |port: u16| format!("tcp://127.0.0.1:{port}");
    let file = |path: &Path| format!("file://{}?max-age=30s", path.display());
    let (ready, live) = ("readiness", "liveness");
    let cases: [Case; 16] = [
        (
            "http success (by name)",
            ready,
            format!("http://localhost:{ok}/healthz"),
            http_app(ok, &[]),
            "success",
            200,
            "[+]readiness ok".to_owned(),
        ),
        (
            "http failure (the app's 500)",
            ready,
            http(failing, "/healthz"),
            http_app(failing, &["--status", "500"]),
            "failure",
            503,
            "[-]readiness failed: status 500".to_owned(),
        ),
        (
            "http failure (a path the app does not know)",
            ready,
            http(unknown, "/nope"),
            http_app(unknown, &[]),
            "failure",
            503,
            "[-]readiness failed: status 404".to_owned(),
        ),
        (
            "http timeout",
            ready,
            http(slow, "/healthz"),
            http_app(slow, &["--delay", "5"]),
            "timeout",
            503,
            "[-]readiness failed: timed out after 300ms".to_owned(),
        ),
        (
            "tcp success",
            live,
            tcp(tcp_ok),
            http_app(tcp_ok, &[]),
            "success",
            200,
            "[+]liveness ok".to_owned(),
        ),
        (
            "tcp failure",
            live,
            tcp(free_port()),
            idle_app(),
            "failure",
            503,
            "[-]liveness failed: connection refused".to_owned(),
        ),
        (
            "tcp timeout",
            live,
            tcp(tcp_slow),
            python_fixture("tcp_blackhole.py", &[&tcp_slow.to_string()]),
            "timeout",
            503,
            "[-]liveness failed: timed out after 300ms".to_owned(),
        ),
        (
            "grpc success (SERVING)",
            ready,
            format!("grpc://localhost:{grpc_ok}"),
            grpc_app(grpc_ok, &[]),
            "success",
            200,
            "[+]readiness ok".to_owned(),
        ),
        (
            "grpc failure (no health service: UNIMPLEMENTED)",
            ready,
            grpc(grpc_bare),
            grpc_app(grpc_bare, &["--no-health"]),
            "failure",
            503,
            "[-]readiness failed: this server does not implement the grpc health protocol \
             (grpc.health.v1.Health): UNIMPLEMENTED (last probe"
                .to_owned(),
        ),
        (
            "grpc failure (an HTTP/1 server)",
            ready,
            grpc(grpc_http),
            http_app(grpc_http, &[]),
            "failure",
            503,
            not_http2,
        ),
        (
            "grpc timeout",
            live,
            grpc(grpc_slow),
            python_fixture("tcp_blackhole.py", &[&grpc_slow.to_string()]),
            "timeout",
            503,
            grpc_slow_line,
        ),
        (
            "exec success",
            live,
            exec_probe("ok"),
            idle_app(),
            "success",
            200,
            "[+]liveness ok".to_owned(),
        ),
        (
            "exec failure",
            live,
            exec_probe("fail"),
            idle_app(),
            "failure",
            503,
            "[-]liveness failed: exit code 3".to_owned(),
        ),
        (
            "exec failure (no such command)",
            live,
            "exec:/no/such/probe".into(),
            idle_app(),
            "failure",
            503,
            "[-]liveness failed: command not found: /no/such/probe".to_owned(),
        ),
        (
            "file success",
            ready,
            file(&fresh),
            idle_app(),
            "success",
            200,
            "[+]readiness ok".to_owned(),
        ),
        (
            "file failure (no heartbeat)",
            ready,
            file(&missing),
            idle_app(),
            "failure",
            503,
            "[-]readiness failed: no such file".to_owned(),
        ),
    ];
    let started: Vec<(Running, SocketAddr)> = (cases.iter())
        .map(|(_, kind, probe, app, ..)| start_probed(kind, probe, app.clone()))
        .collect();
    for ((what, kind, _, _, result, status, line), (running, addr)) in cases.iter().zip(&started) {
        wait_for_result(*addr, kind, result);
        let endpoint = if *kind == ready { "/readyz" } else { "/livez" };
        poll_until(PATIENCE, &format!("{what}: {line:?} in {endpoint}"), || {
            get(*addr, &format!("{endpoint}?verbose"))
                .body
                .contains(line)
        });
        assert_eq!(get(*addr, endpoint).status, *status, "{what}");
        // One thread, whatever the kind: no resolver or blocking-pool thread appeared.
        assert_one_thread(running);
    }
    let _ = std::fs::remove_file(fresh);
}

/// pyinit probes and serves on one thread: no resolver or blocking-pool threads appeared.
fn assert_one_thread(running: &Running) {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", running.pyinit_pid))
        .unwrap()
        .count();
    assert_eq!(tasks, 1, "pyinit runs {tasks} threads");
}

/// A 3xx without a Location is the final answer, and a 3xx answer counts as success.
#[test]
fn http_probe_counts_a_final_redirect_status_as_success() {
    let port = free_port();
    let probe = format!("http://127.0.0.1:{port}/healthz");
    let (_running, addr) = start_probed("readiness", &probe, http_app(port, &["--status", "302"]));
    wait_for_result(addr, "readiness", "success");
    assert_eq!(get(addr, "/readyz").status, 200);
}

fn n_results(addr: SocketAddr, kind: &str, result: &str) -> f64 {
    let sample = format!("pyinit_probe_results_total{{probe=\"{kind}\",result=\"{result}\"}}");
    metric(addr, &sample).unwrap_or(0.0)
}

/// A redirect to another host is not followed and counts as success; pyinit says so once, not
/// once per period.
#[test]
fn http_probe_warns_once_of_a_redirect_to_another_host() {
    let port = free_port();
    let probe = format!("http://127.0.0.1:{port}/healthz");
    let location = format!("http://localhost:{port}/login");
    let app = http_app(port, &["--status", "302", "--location", &location]);
    let (running, addr) = start_probed("readiness", &probe, app);
    poll_until(PATIENCE, "five successful probes", || {
        n_results(addr, "readiness", "success") >= 5.0
    });
    assert_eq!(get(addr, "/readyz").status, 200);
    let warning = format!("http probe redirected to {location}, another host: not followed");
    let lines = running.stderr.all();
    let warnings: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains(&warning))
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    assert!(warnings[0].contains(" WARN ") && warnings[0].contains("probe=\"readiness\""));
}

/// The Django fixture under the pinned gunicorn, on `port`.
fn django_app(port: u16) -> Vec<OsString> {
    let folder = fixture("django_healthz");
    vec![
        venv_bin("gunicorn").into_os_string(),
        "--config".into(),
        folder.join("gunicorn.conf.py").into_os_string(),
        "--chdir".into(),
        folder.into_os_string(),
        "--bind".into(),
        format!("127.0.0.1:{port}").into(),
        "app:application".into(),
    ]
}

/// A real Django app keeps its health check at `/healthz/` and answers `/healthz` with
/// APPEND_SLASH's 301 to it: the probe follows the redirect and judges `/healthz/`'s own answer,
/// so a 500 there makes the app not ready, as the kubelet would see it.
#[test]
fn http_probe_follows_djangos_append_slash_redirect_and_judges_the_final_answer() {
    let port = free_port();
    let fail_file = std::env::temp_dir().join(format!("pyinit-django-fail-{}", std::process::id()));
    let _ = std::fs::remove_file(&fail_file);
    let running = Pyinit::new()
        .env("HEALTHZ_FAIL_FILE", &fail_file)
        .args(["--readiness", &format!("http://127.0.0.1:{port}/healthz")])
        .args(["--readiness-period", "200ms", "--readiness-timeout", "5s"])
        .args(["--readiness-failure-threshold", "1"])
        .app(django_app(port))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(PATIENCE, "readiness through the redirect", || {
        get(addr, "/readyz").status == 200
    });
    // Django saw both requests; the redirected one carries the probe's User-Agent and, as the
    // kubelet's client sends it, the URL it was redirected from.
    running
        .stdout
        .wait_for("GET /healthz HTTP/1.1 301", PATIENCE);
    let followed = running
        .stdout
        .wait_for("GET /healthz/ HTTP/1.1 200", PATIENCE);
    assert!(followed.contains("ua=\"kube-probe/1."), "{followed}");
    assert!(
        followed.contains(&format!("referer=\"http://127.0.0.1:{port}/healthz\"")),
        "{followed}"
    );
    // The health check itself fails: the 301 in front of it no longer hides that.
    std::fs::write(&fail_file, b"").unwrap();
    // The health port says how many redirects, the log where they led.
    let reason = "status 500 (after 1 redirect)";
    poll_until(PATIENCE, "/healthz/'s 500 in /readyz", || {
        get(addr, "/readyz?verbose")
            .body
            .contains(&format!("[-]readiness failed: {reason} (last probe"))
    });
    let line = running.stderr.wait_for("not ready", PATIENCE);
    assert!(line.contains(reason), "{line}");
    running.stderr.wait_for(
        &format!(
            "readiness probe failed: status 500 at http://127.0.0.1:{port}/healthz/ (after 1 \
             redirect)"
        ),
        PATIENCE,
    );
    let _ = std::fs::remove_file(&fail_file);
}

/// Starts pyinit with one `kind` exec probe, every 100ms with a generous timeout.
fn start_exec_probed(kind: &str, probe: &str) -> (Running, SocketAddr) {
    let running = Pyinit::new()
        .as_pid1()
        .args([format!("--{kind}"), probe.to_owned()])
        .args([format!("--{kind}-period"), "100ms".to_owned()])
        .args([format!("--{kind}-timeout"), "5s".to_owned()])
        .args([format!("--{kind}-failure-threshold"), "1".to_owned()])
        .app(idle_app())
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    (running, addr)
}

/// The probe's output (stdout and stderr, in order) on one line, after its exit code, in
/// pyinit's log; `/livez?verbose` and the "not live" line say only how it ended.
#[test]
fn exec_probe_output_shows_in_the_log_and_not_on_the_health_port() {
    let probe = "exec:/bin/sh -c 'echo broker down; echo \"  retrying in 5s\" >&2; exit 1'";
    let (running, addr) = start_exec_probed("liveness", probe);
    wait_for_result(addr, "liveness", "failure");
    assert_verbose(
        addr,
        "/livez",
        503,
        "[-]liveness failed: exit code 1 (last probe ",
    );
    assert!(!get(addr, "/livez?verbose").body.contains("broker"));
    let line = running.stderr.wait_for("not live", PATIENCE);
    assert!(line.contains("liveness: exit code 1"), "{line}");
    running.stderr.wait_for(
        "liveness probe failed: exit code 1: broker down | retrying in 5s",
        PATIENCE,
    );
}

/// The first 10 KiB of the output are kept; the rest is read and dropped, so a probe that
/// writes more than a pipe holds is never blocked on it and fails by its exit code, in time.
#[test]
fn exec_probe_output_keeps_10_kib_and_never_blocks_the_probe() {
    let probe = "exec:/bin/sh -c 'head -c 200000 /dev/zero | tr \"\\\\0\" x; exit 1'";
    let (running, addr) = start_exec_probed("liveness", probe);
    wait_for_result(addr, "liveness", "failure");
    let kept = format!(
        "liveness probe failed: exit code 1: {}",
        "x".repeat(10 * 1024)
    );
    let line = running.stderr.wait_for(&kept, PATIENCE);
    assert!(!line.contains(&format!("{kept}x")), "more than 10 KiB kept");
    let sample = "pyinit_probe_results_total{probe=\"liveness\",result=\"timeout\"}";
    assert_eq!(metric(addr, sample), Some(0.0));
}

/// pyinit's descendants (host pids) running `sleep`.
fn sleeps_under(running: &Running) -> Vec<u32> {
    descendants_of(running.pyinit_pid)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm == "sleep\n")
        })
        .collect()
}

/// `sh -c 'sleep 100 & exit 0'`: once the command exits, what it left in its process group is
/// killed, instead of one more sleep per period reparented to pyinit (PID 1). The sleep holds
/// the output pipe, and the probe still ends at once: none times out.
#[test]
fn an_exec_probe_leaves_nothing_behind_in_its_process_group() {
    let (running, addr) = start_exec_probed("readiness", "exec:/bin/sh -c 'sleep 100 & exit 0'");
    poll_until(PATIENCE, "ten successful probes", || {
        n_results(addr, "readiness", "success") >= 10.0
    });
    // At most the probe running right now has a sleep.
    poll_until(PATIENCE, "the probes' sleeps to be killed", || {
        sleeps_under(&running).len() <= 1
    });
    assert_eq!(n_results(addr, "readiness", "timeout"), 0.0);
    assert_eq!(n_results(addr, "readiness", "failure"), 0.0);
}

/// A leftover that left the probe's group (leave_behind.py: a child in a session of its own,
/// holding the probe's stdout) is not killed: as docs/probes.md says, it lives on as pyinit's
/// child, PID 1 having adopted it. The probe does not wait for it to close the pipe.
#[test]
fn an_exec_probe_does_not_wait_for_a_leftover_outside_its_group() {
    let probe = format!(
        "exec:/usr/bin/python3 {} 0",
        fixture("leave_behind.py").display()
    );
    let (running, addr) = start_exec_probed("readiness", &probe);
    poll_until(PATIENCE, "three successful probes", || {
        n_results(addr, "readiness", "success") >= 3.0
    });
    assert_eq!(n_results(addr, "readiness", "timeout"), 0.0);
    let adopted: Vec<u32> = children_of(running.pyinit_pid)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("leave_behind.py"))
        })
        .collect();
    // Three left behind, and perhaps the probe running now.
    assert!(adopted.len() >= 3, "{adopted:?}");
}

fn live_pids(pid_file: &Path) -> Vec<u32> {
    std::fs::read_to_string(pid_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .filter(|pid: &u32| Path::new(&format!("/proc/{pid}")).exists())
        .collect()
}

#[test]
fn exec_probe_timeout_kills_the_probe() {
    let pid_file = std::env::temp_dir().join(format!("pyinit-exec-hang-{}", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let probe = exec_probe(&format!("hang {}", pid_file.display()));
    let (_running, addr) = start_probed("liveness", &probe, idle_app());
    wait_for_result(addr, "liveness", "timeout");
    assert_verbose(
        addr,
        "/livez",
        503,
        "[-]liveness failed: timed out after 300ms",
    );
    // Every timed-out probe is killed and reaped: at most the one running now is alive.
    poll_until(PATIENCE, "three timed-out probes", || {
        std::fs::read_to_string(&pid_file)
            .unwrap_or_default()
            .lines()
            .count()
            >= 3
    });
    let pids: Vec<u32> = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .take(2)
        .map(|line| line.parse().unwrap())
        .collect();
    poll_until(PATIENCE, "the first timed-out probes to be gone", || {
        pids.iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    });
    assert!(
        live_pids(&pid_file).len() <= 1,
        "{:?}",
        live_pids(&pid_file)
    );
    let _ = std::fs::remove_file(&pid_file);
}

fn heartbeat(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("pyinit-heartbeat-{}-{name}", std::process::id()));
    std::fs::write(&path, b"beat").unwrap();
    path
}

/// A file probe's timeout is its max-age: a heartbeat that stopped beating.
#[test]
fn file_probe_stale_heartbeat_times_out() {
    let path = heartbeat("stale");
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    let probe = format!("file://{}?max-age=10s", path.display());
    let (_running, addr) = start_probed("liveness", &probe, idle_app());
    wait_for_result(addr, "liveness", "failure");
    assert_verbose(
        addr,
        "/livez",
        503,
        "[-]liveness failed: stale: modified 60.",
    );
    assert_verbose(addr, "/livez", 503, "s ago, max-age 10s");
    // The worker beats again: live again.
    file.set_modified(SystemTime::now()).unwrap();
    poll_until(PATIENCE, "/livez to recover", || {
        get(addr, "/livez").status == 200
    });
    let _ = std::fs::remove_file(path);
}

#[test]
fn exec_probes_leave_no_zombies() {
    let running = Pyinit::new()
        .as_pid1()
        .args([
            "--liveness",
            &exec_probe("spawn"),
            "--liveness-period",
            "100ms",
        ])
        .args([
            "--readiness",
            &exec_probe("ok"),
            "--readiness-period",
            "100ms",
        ])
        .app(idle_app())
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    for kind in ["liveness", "readiness"] {
        let sample = format!("pyinit_probe_results_total{{probe=\"{kind}\",result=\"success\"}}");
        poll_until(PATIENCE, "ten probes of each kind", || {
            metric(addr, &sample).is_some_and(|count| count >= 10.0)
        });
    }
    poll_until(Duration::from_secs(5), "no zombie left", || {
        running.zombies().is_empty()
    });
    // Each `spawn` probe leaves one orphan, reaped as such; the probes themselves are claimed
    // by their waiters and never counted as orphans.
    let text = get(addr, "/metrics").body;
    let value = |sample: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap()
    };
    let orphans = value("pyinit_orphans_reaped_total ");
    let spawning_runs = value("pyinit_probe_results_total{probe=\"liveness\",result=\"success\"} ");
    assert!(orphans >= 1.0, "{text}");
    assert!(
        orphans <= spawning_runs + 1.0,
        "{orphans} orphans for {spawning_runs} runs"
    );
}

#[test]
fn startup_probe_gates_liveness_and_readiness() {
    let started = std::env::temp_dir().join(format!("pyinit-started-{}", std::process::id()));
    let _ = std::fs::remove_file(&started);
    let running = Pyinit::new()
        .args(["--startup", &format!("file://{}", started.display())])
        .args([
            "--startup-period",
            "100ms",
            "--startup-failure-threshold",
            "1000",
        ])
        .args([
            "--readiness",
            &exec_probe("ok"),
            "--readiness-period",
            "100ms",
        ])
        .args([
            "--liveness",
            &exec_probe("fail"),
            "--liveness-period",
            "100ms",
        ])
        .app(idle_app())
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(PATIENCE, "five startup probes", || {
        metric(
            addr,
            "pyinit_probe_results_total{probe=\"startup\",result=\"failure\"}",
        )
        .is_some_and(|count| count >= 5.0)
    });
    assert_verbose(
        addr,
        "/readyz",
        503,
        "[-]startup failed: not yet succeeded: no such file",
    );
    // Liveness reports ok while startup is pending; its failing probe has not run at all.
    assert_verbose(addr, "/livez", 200, "[+]liveness ok");
    for kind in ["liveness", "readiness"] {
        for result in ["success", "failure", "timeout"] {
            let sample =
                format!("pyinit_probe_results_total{{probe=\"{kind}\",result=\"{result}\"}}");
            assert_eq!(metric(addr, &sample), Some(0.0), "{sample}");
        }
    }
    std::fs::write(&started, b"").unwrap();
    running.stderr.wait_for("startup probe succeeded", PATIENCE);
    poll_until(PATIENCE, "readiness after startup", || {
        get(addr, "/readyz").status == 200
    });
    // Now the liveness probe runs, and fails.
    poll_until(PATIENCE, "liveness to fail after startup", || {
        get(addr, "/livez").status == 503
    });
    let _ = std::fs::remove_file(started);
}

#[test]
fn a_failed_startup_probe_fails_liveness() {
    let running = Pyinit::new()
        .args([
            "--startup",
            &exec_probe("fail"),
            "--startup-period",
            "100ms",
        ])
        .args(["--startup-failure-threshold", "2"])
        .app(idle_app())
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(PATIENCE, "/livez to fail", || {
        get(addr, "/livez").status == 503
    });
    assert_verbose(addr, "/livez", 503, "[-]startup failed: exit code 3");
    running
        .stderr
        .wait_for("startup probe reached its failure threshold", PATIENCE);
}

#[test]
fn probes_from_the_environment() {
    let running = Pyinit::new()
        .env("PYINIT_READINESS", exec_probe("fail"))
        .env("PYINIT_READINESS_PERIOD", "100ms")
        .env("PYINIT_READINESS_FAILURE_THRESHOLD", "1")
        .app(idle_app())
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    wait_for_result(addr, "readiness", "failure");
    assert_verbose(addr, "/readyz", 503, "[-]readiness failed: exit code 3");
}

#[test]
fn a_bad_probe_is_a_usage_error() {
    let finished = Pyinit::new()
        .args(["--liveness", "http://app.internal:8000/healthz"])
        .app(idle_app())
        .run();
    finished.assert_exit_code(2);
    let stderr = finished.stderr_text();
    assert!(
        stderr.contains("--liveness") && stderr.contains("not an IP address or localhost"),
        "{stderr}"
    );
    let finished = Pyinit::new()
        .args(["--liveness-success-threshold", "2"])
        .app(idle_app())
        .run();
    finished.assert_exit_code(2);
    assert!(
        finished
            .stderr_text()
            .contains("--liveness-success-threshold")
    );
}
