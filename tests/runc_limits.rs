//! Resource limits and the privilege drop end to end, in real `runc` containers: what the app
//! sees of a CPU quota and a memory limit, what pyinit says when the app or a worker is
//! OOM-killed, how it follows a resize of the running container (`runc update`, as the kubelet's
//! runtime applies an in-place resize), and who the app and pyinit are after `--user nobody` in a
//! container that starts as root with a root container's capabilities.
//!
//! These containers share the host's cgroup namespace, so /proc/self/cgroup inside shows host
//! paths while /sys/fs/cgroup shows only the container's own subtree: pyinit must find its limits
//! all the same.

use std::net::{Ipv4Addr, SocketAddr};

use crate::common::runc::{Bundle, Container, free_port, wait_http_ok};
use crate::common::{
    APP_VARIABLES, PATIENCE, children_of, poll_until, process_state, python_fixture,
};

const MIB: i64 = 1024 * 1024;

/// 1.5 CPUs and 256 MiB: a typical small Kubernetes container.
fn limited_print_env() -> Bundle {
    Bundle::new()
        .cpu_limit(150_000, 100_000)
        .memory_limit(256 * MIB)
        .app(python_fixture("print_env.py", &APP_VARIABLES))
}

/// Runs the container to its end and returns its exit code; every line is in afterwards.
fn run_to_exit(bundle: &Bundle) -> (Container, i32) {
    let mut container = bundle.start();
    let exit_code = container.wait_exit(PATIENCE);
    (container, exit_code)
}

/// What the app printed for `name`: `Some(value)`, or `None` for unset.
fn app_saw(container: &Container, name: &str) -> Option<String> {
    let set = format!("env {name}=");
    let unset = format!("env {name} unset");
    for line in container.stdout.all() {
        if let Some(value) = line.strip_prefix(&set) {
            return Some(value.to_owned());
        }
        if line == unset {
            return None;
        }
    }
    panic!(
        "the app printed nothing for {name}\nstdout:\n{}\nstderr:\n{}",
        container.stdout.joined(),
        container.stderr.joined()
    );
}

/// The `ready pid=N` line's N: the app's pid in the container's PID namespace.
fn ready_pid(container: &Container) -> String {
    let line = container.stdout.wait_for("ready pid=", PATIENCE);
    line.trim()
        .strip_prefix("ready pid=")
        .unwrap_or_else(|| panic!("malformed ready line {line:?}"))
        .to_owned()
}

/// The stderr lines that report an OOM kill.
fn oom_lines(container: &Container) -> Vec<String> {
    container
        .stderr
        .all()
        .into_iter()
        .filter(|line| line.contains("OOM-killed"))
        .collect()
}

#[test]
fn limits_of_a_runc_container_size_the_app() {
    let (container, exit_code) = run_to_exit(&limited_print_env());
    let stderr = container.stderr.joined();
    assert_eq!(exit_code, 0, "stderr:\n{stderr}");
    for (name, expected) in [
        ("WEB_CONCURRENCY", "4"),
        ("PYINIT_CPU_LIMIT", "1.5"),
        ("PYINIT_MEMORY_LIMIT_BYTES", "268435456"),
        ("PYTHON_CPU_COUNT", "2"),
        ("PYTHONUNBUFFERED", "1"),
    ] {
        assert_eq!(
            app_saw(&container, name).as_deref(),
            Some(expected),
            "{name}\nstderr:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("container: cgroup v1, cpu limit 1.5, memory limit 256 MiB"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("no memory limit") && !stderr.contains("no CPU limit"),
        "a limit was not found:\n{stderr}"
    );
}

#[test]
fn an_apps_own_web_concurrency_is_kept_in_a_runc_container() {
    let (container, exit_code) = run_to_exit(&limited_print_env().env("WEB_CONCURRENCY", "9"));
    let stderr = container.stderr.joined();
    assert_eq!(exit_code, 0, "stderr:\n{stderr}");
    assert_eq!(
        app_saw(&container, "WEB_CONCURRENCY").as_deref(),
        Some("9"),
        "{stderr}"
    );
    // The other variables still follow the limits.
    assert_eq!(
        app_saw(&container, "PYINIT_CPU_LIMIT").as_deref(),
        Some("1.5")
    );
    assert!(
        stderr.contains("WEB_CONCURRENCY is already set: the app keeps its own value"),
        "{stderr}"
    );
}

#[test]
fn an_oom_killed_app_ends_the_runc_container_with_137() {
    let (container, exit_code) = run_to_exit(
        &Bundle::new()
            .memory_limit(64 * MIB)
            .app(python_fixture("allocate.py", &["300"])),
    );
    let stderr = container.stderr.joined();
    assert_eq!(exit_code, 137, "stderr:\n{stderr}");
    let app_pid = ready_pid(&container);
    assert!(
        !container.stdout.contains("survived"),
        "the app was not killed\nstdout:\n{}",
        container.stdout.joined()
    );
    let reports = oom_lines(&container);
    assert_eq!(reports.len(), 1, "one OOM report expected:\n{stderr}");
    let expected = format!(
        "the app (pid {app_pid}) was OOM-killed: the container reached its memory limit of 64 MiB"
    );
    assert!(
        reports[0].contains(" ERROR ") && reports[0].contains(&expected),
        "expected an ERROR line with {expected:?}:\n{stderr}"
    );
}

/// One sample's value in the `/metrics` of the health server on 127.0.0.1:`port`.
fn metric(port: u16, sample: &str) -> Option<f64> {
    crate::common::http::metric(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), sample)
}

#[test]
fn pyinit_stays_up_after_a_worker_is_oom_killed_in_a_runc_container() {
    let health_port = free_port();
    let mut container = Bundle::new()
        .memory_limit(64 * MIB)
        .args([
            "--health-addr".to_owned(),
            format!("127.0.0.1:{health_port}"),
        ])
        .app(python_fixture("allocate.py", &["300", "--in", "worker"]))
        .start();
    container.stdout.wait_for("ended by signal 9", PATIENCE);
    // The worker's parent reaped it: pyinit learns of the kill from the cgroup's counter only.
    let report = container.stderr.wait_for(
        "a process in the container was OOM-killed (its parent reaped it",
        PATIENCE,
    );
    assert!(
        report.contains(" ERROR ") && report.contains("memory limit of 64 MiB"),
        "{report}"
    );
    // /metrics shows the limit, the container's memory use and the kill.
    poll_until(PATIENCE, "pyinit_oom_kills_total 1 in /metrics", || {
        metric(health_port, "pyinit_oom_kills_total") == Some(1.0)
    });
    assert_eq!(
        metric(health_port, "pyinit_memory_limit_bytes"),
        Some(67_108_864.0)
    );
    let usage = metric(health_port, "pyinit_memory_usage_bytes");
    assert!(
        usage.is_some_and(|bytes| bytes > 0.0 && bytes <= 67_108_864.0),
        "memory use {usage:?}"
    );
    assert_eq!(metric(health_port, "pyinit_cpu_limit_cores"), None);
    let stderr = stop_cleanly(&mut container);
    assert_eq!(
        oom_lines(&container).len(),
        1,
        "one OOM report expected:\n{stderr}"
    );
}

/// Stops the container as the runtime does (SIGTERM to pyinit), asserts that it exits 0, and
/// returns pyinit's and the app's stderr.
fn stop_cleanly(container: &mut Container) -> String {
    container.kill("TERM");
    let exit_code = container.wait_exit(PATIENCE);
    let stderr = container.stderr.joined();
    assert_eq!(exit_code, 0, "stderr:\n{stderr}");
    stderr
}

/// `Name`, `Uid`, ... of a /proc/PID/status file, with whitespace collapsed.
fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .map(|value| value.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no {name} in:\n{status}"))
}

/// The rest of the one stdout line that starts with `prefix`.
fn fact(container: &Container, prefix: &str) -> String {
    let matching: Vec<String> = container
        .stdout
        .all()
        .into_iter()
        .filter_map(|line| line.strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "one line starting with {prefix:?} expected\nstdout:\n{}\nstderr:\n{}",
        container.stdout.joined(),
        container.stderr.joined()
    );
    matching[0].clone()
}

#[test]
fn user_nobody_in_a_runc_container_leaves_no_root_in_the_app_or_pyinit() {
    let mut container = Bundle::new()
        .env_remove("PYINIT_ALLOW_ROOT")
        .args(["--user", "nobody"])
        .app(python_fixture("identity.py", &["--wait"]))
        .start();
    container.stdout.wait_for("ready pid=", PATIENCE);
    assert_eq!(fact(&container, "status Uid "), "65534 65534 65534 65534");
    assert_eq!(fact(&container, "status Gid "), "65534 65534 65534 65534");
    assert_eq!(fact(&container, "status CapEff "), "0000000000000000");
    assert_eq!(fact(&container, "status NoNewPrivs "), "1");

    // pyinit, the container's PID 1, dropped root too: seen from the host, by its host pid.
    let init_status = std::fs::read_to_string(format!("/proc/{}/status", container.init_pid()))
        .expect("pyinit's /proc status");
    assert_eq!(status_field(&init_status, "Name"), "pyinit");
    assert_eq!(status_field(&init_status, "Uid"), "65534 65534 65534 65534");
    assert_eq!(status_field(&init_status, "Gid"), "65534 65534 65534 65534");
    assert_eq!(status_field(&init_status, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&init_status, "CapPrm"), "0000000000000000");
    assert_eq!(status_field(&init_status, "NoNewPrivs"), "1");

    stop_cleanly(&mut container);
}

#[test]
fn a_root_runc_container_without_user_is_refused() {
    let (container, exit_code) = run_to_exit(
        &Bundle::new()
            .env_remove("PYINIT_ALLOW_ROOT")
            .app(python_fixture("identity.py", &[])),
    );
    let stderr = container.stderr.all();
    assert_eq!(exit_code, 2, "stderr:\n{}", stderr.join("\n"));
    assert_eq!(stderr.len(), 1, "one line expected:\n{}", stderr.join("\n"));
    assert!(
        stderr[0].contains("refusing to run as root")
            && stderr[0].contains("--user")
            && stderr[0].contains("runAsUser"),
        "{}",
        stderr[0]
    );
    // identity.py prints its facts first thing: no line means it never ran.
    assert_eq!(
        container.stdout.all(),
        Vec::<String>::new(),
        "the app ran as root"
    );
}

/// The running children of the container's one gunicorn or uvicorn master (pyinit's child): its
/// workers, by their pids on the host.
fn workers_of_the_master(container: &Container) -> Vec<u32> {
    let masters = children_of(container.init_pid());
    let [master] = masters.as_slice() else {
        panic!("one master expected under pyinit, found {masters:?}");
    };
    children_of(*master)
        .into_iter()
        .filter(|pid| !matches!(process_state(*pid), Some('Z') | None))
        .collect()
}

/// Lines of the container's stderr that contain `needle`.
fn lines_with(container: &Container, needle: &str) -> Vec<String> {
    (container.stderr.all().into_iter())
        .filter(|line| line.contains(needle))
        .collect()
}

/// `runc update` with a CPU limit of `quota_us` per 100 ms.
fn update_cpu(container: &Container, quota_us: u32) {
    let quota = quota_us.to_string();
    container.update(&["--cpu-quota", &quota, "--cpu-period", "100000"]);
}

/// Waits until the master runs `count` workers and `/metrics` shows `cores` as the CPU limit.
fn wait_for_workers_and_cpu_limit(
    container: &Container,
    health_port: u16,
    count: usize,
    cores: f64,
) {
    poll_until(
        PATIENCE,
        &format!("{count} workers and pyinit_cpu_limit_cores {cores}"),
        || {
            workers_of_the_master(container).len() == count
                && metric(health_port, "pyinit_cpu_limit_cores") == Some(cores)
        },
    );
}

#[test]
fn gunicorns_workers_follow_the_cpu_limit_of_a_resized_runc_container() {
    let (app_port, health_port) = (free_port(), free_port());
    let mut container = Bundle::new()
        .cpu_limit(100_000, 100_000)
        .args([
            "--health-addr".to_owned(),
            format!("127.0.0.1:{health_port}"),
        ])
        .gunicorn_example(app_port)
        // pyinit chooses the count: floor(2 × CPUs + 1).
        .env_remove("WEB_CONCURRENCY")
        .start();
    wait_http_ok(app_port, "/", PATIENCE);
    wait_for_workers_and_cpu_limit(&container, health_port, 3, 1.0);

    update_cpu(&container, 200_000);
    wait_for_workers_and_cpu_limit(&container, health_port, 5, 2.0);
    update_cpu(&container, 50_000);
    wait_for_workers_and_cpu_limit(&container, health_port, 2, 0.5);
    wait_http_ok(app_port, "/", PATIENCE);

    let stderr = stop_cleanly(&mut container);
    // One line per change, and one signal per worker, each handled by gunicorn's master.
    for (change, count) in [
        (
            "cpu limit 1 → 2; the app's workers follow: 3 → 5 (SIGTTIN",
            1,
        ),
        (
            "cpu limit 2 → 0.5; the app's workers follow: 5 → 2 (SIGTTOU",
            1,
        ),
        ("container limits changed", 2),
        ("Handling signal: ttin", 2),
        ("Handling signal: ttou", 3),
    ] {
        assert_eq!(
            lines_with(&container, change).len(),
            count,
            "{change:?} expected {count} times:\n{stderr}"
        );
    }
}

#[test]
fn an_apps_own_worker_count_does_not_follow_a_resize() {
    let (app_port, health_port) = (free_port(), free_port());
    let mut container = Bundle::new()
        .cpu_limit(100_000, 100_000)
        .args([
            "--health-addr".to_owned(),
            format!("127.0.0.1:{health_port}"),
        ])
        .gunicorn_example(app_port)
        .env("WEB_CONCURRENCY", "2")
        .start();
    wait_http_ok(app_port, "/", PATIENCE);
    wait_for_workers_and_cpu_limit(&container, health_port, 2, 1.0);
    update_cpu(&container, 200_000);
    let line = container
        .stderr
        .wait_for("container limits changed", PATIENCE);
    // The line says it all: the limit moved, the app's own count stays.
    assert!(
        line.contains("container limits changed: cpu limit 1 → 2 ") && !line.contains("workers"),
        "{line}"
    );
    assert_eq!(metric(health_port, "pyinit_cpu_limit_cores"), Some(2.0));
    let stderr = stop_cleanly(&mut container);
    assert!(!stderr.contains("Handling signal: ttin"), "{stderr}");
}

#[test]
fn a_single_uvicorn_is_never_sent_sigttin_when_the_cpu_limit_grows() {
    // 0.25 CPUs: WEB_CONCURRENCY=1, uvicorn in one process, which does not catch SIGTTIN (its
    // default action would stop it).
    let app_port = free_port();
    let mut container = Bundle::new()
        .cpu_limit(25_000, 100_000)
        .uvicorn_example(app_port)
        .env_remove("WEB_CONCURRENCY")
        .start();
    wait_http_ok(app_port, "/", PATIENCE);
    update_cpu(&container, 100_000);
    container.stderr.wait_for(
        "container limits changed: cpu limit 0.25 → 1; the app's workers follow: 1 → 3",
        PATIENCE,
    );
    let warning = container
        .stderr
        .wait_for("does not catch SIGTTIN and SIGTTOU", PATIENCE);
    assert!(warning.contains(" WARN "), "{warning}");
    let uvicorn = children_of(container.init_pid());
    assert_eq!(
        uvicorn.len(),
        1,
        "one uvicorn process expected: {uvicorn:?}"
    );
    assert_ne!(process_state(uvicorn[0]), Some('T'), "uvicorn was stopped");
    wait_http_ok(app_port, "/", PATIENCE);
    // uvicorn re-raises the TERM it drained on; its profile makes that a clean stop.
    let stderr = stop_cleanly(&mut container);
    assert!(!stderr.contains("Received SIGTTIN"), "{stderr}");
}

#[test]
fn uvicorns_multiprocess_supervisor_follows_the_cpu_limit_too() {
    // At 1 CPU pyinit sets WEB_CONCURRENCY=3, which runs uvicorn's multiprocess supervisor.
    let app_port = free_port();
    let mut container = Bundle::new()
        .cpu_limit(100_000, 100_000)
        .uvicorn_example(app_port)
        .env_remove("WEB_CONCURRENCY")
        .start();
    let started = "Started server process";
    poll_until(PATIENCE, "three uvicorn workers", || {
        lines_with(&container, started).len() == 3
    });
    wait_http_ok(app_port, "/", PATIENCE);
    update_cpu(&container, 200_000);
    poll_until(PATIENCE, "five uvicorn workers", || {
        lines_with(&container, started).len() == 5
    });
    update_cpu(&container, 50_000);
    poll_until(PATIENCE, "three workers stopped", || {
        lines_with(&container, "Received SIGTTOU").len() == 3
    });
    wait_http_ok(app_port, "/", PATIENCE);
    let stderr = stop_cleanly(&mut container);
    for (needle, count) in [
        ("the app's workers follow: 3 → 5 (SIGTTIN", 1),
        ("the app's workers follow: 5 → 2 (SIGTTOU", 1),
        ("Received SIGTTIN", 2),
        ("Received SIGTTOU", 3),
    ] {
        assert_eq!(
            lines_with(&container, needle).len(),
            count,
            "{needle:?} expected {count} times:\n{stderr}"
        );
    }
}

#[test]
fn a_memory_limit_change_shows_in_metrics_and_in_the_oom_report() {
    let health_port = free_port();
    let mut container = Bundle::new()
        .memory_limit(64 * MIB)
        .args([
            "--health-addr".to_owned(),
            format!("127.0.0.1:{health_port}"),
        ])
        .app(python_fixture(
            "allocate.py",
            &["300", "--in", "worker", "--on-usr1"],
        ))
        .start();
    container.stdout.wait_for("ready pid=", PATIENCE);
    poll_until(PATIENCE, "the 64 MiB limit in /metrics", || {
        metric(health_port, "pyinit_memory_limit_bytes") == Some(67_108_864.0)
    });
    let limit = (96 * MIB).to_string();
    container.update(&["--memory", &limit, "--memory-swap", &limit]);
    poll_until(PATIENCE, "the 96 MiB limit in /metrics", || {
        metric(health_port, "pyinit_memory_limit_bytes") == Some(100_663_296.0)
    });
    // The worker allocates now, and is OOM-killed under the new limit: the report names it.
    container.kill("USR1");
    let report = container.stderr.wait_for(
        "a process in the container was OOM-killed (its parent reaped it",
        PATIENCE,
    );
    assert!(report.contains("memory limit of 96 MiB"), "{report}");
    let stderr = stop_cleanly(&mut container);
    assert_eq!(
        lines_with(&container, "container limits changed").len(),
        1,
        "one change, one line:\n{stderr}"
    );
    assert_eq!(
        lines_with(
            &container,
            "container limits changed: memory limit 64 MiB → 96 MiB"
        )
        .len(),
        1,
        "{stderr}"
    );
}
