//! Resource limits: the environment the app gets from the real cgroups of this machine (v1), the
//! start-up warnings, and OOM kills in a real memory cgroup.
//!
//! The cgroup tests create a child of the test process's own cpu and memory cgroups, set its
//! limits, and start pyinit inside it; the `TestCgroup` guard kills what is left in it and
//! removes it on every path.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::http::{get, health_addr, metric};
use crate::common::{
    APP_VARIABLES, Finished, PATIENCE, Pyinit, poll_until, python_fixture, send_signal,
};

/// pyinit with a clean slate: none of the app variables, nor pyinit's own flags for them.
fn pyinit() -> Pyinit {
    APP_VARIABLES
        .iter()
        .chain(&["PYINIT_WEB_CONCURRENCY", "PYINIT_PYTHON_ENV"])
        .fold(Pyinit::new(), |pyinit, name| pyinit.env_remove(*name))
}

fn print_env() -> Vec<std::ffi::OsString> {
    python_fixture("print_env.py", &APP_VARIABLES)
}

/// What the app printed for `name`: `Some(value)` or `None` for unset.
fn app_saw(finished: &Finished, name: &str) -> Option<String> {
    let set = format!("env {name}=");
    for line in &finished.stdout {
        if let Some(value) = line.strip_prefix(&set) {
            return Some(value.to_owned());
        }
        if line == &format!("env {name} unset") {
            return None;
        }
    }
    panic!(
        "the app printed nothing for {name}:\n{}",
        finished.stdout.join("\n")
    );
}

/// The warning lines pyinit logged.
fn warning_lines(finished: &Finished) -> Vec<&String> {
    finished
        .stderr
        .iter()
        .filter(|line| line.contains(" WARN "))
        .collect()
}

/// CPUs this process may run on, as `nproc` (sched_getaffinity) counts them.
fn affinity_cpus() -> u32 {
    let output = Command::new("nproc").output().expect("nproc");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("nproc prints a number")
}

#[test]
fn the_app_is_sized_for_this_host() {
    // This machine runs tests in a cpu cgroup without a quota and a memory cgroup without a limit.
    let finished = pyinit().app(print_env()).run();
    finished.assert_exit_code(0);
    let cpus = affinity_cpus();
    assert_eq!(
        app_saw(&finished, "WEB_CONCURRENCY"),
        Some((2 * cpus + 1).to_string())
    );
    assert_eq!(
        app_saw(&finished, "PYTHON_CPU_COUNT"),
        Some(cpus.to_string())
    );
    assert_eq!(app_saw(&finished, "PYTHONUNBUFFERED"), Some("1".to_owned()));
    assert_eq!(
        app_saw(&finished, "PYTHONFAULTHANDLER"),
        Some("1".to_owned())
    );
    assert_eq!(app_saw(&finished, "PYINIT_CPU_LIMIT"), None);
    assert_eq!(app_saw(&finished, "PYINIT_MEMORY_LIMIT_BYTES"), None);
}

#[test]
fn start_up_warnings_say_what_to_do() {
    let finished = pyinit()
        .args(["--grace-period", "3s", "--drain-timeout", "2500ms"])
        .app(print_env())
        .run();
    finished.assert_exit_code(0);
    let warnings = warning_lines(&finished);
    for expected in [
        "no memory limit is set: set resources.limits.memory",
        "no CPU limit is set:",
        "pyinit is not PID 1",
        "the app will run as root (uid 0): run it as an unprivileged user",
        "--drain-timeout 2500ms leaves 500ms before --grace-period 3s ends",
    ] {
        assert!(
            warnings.iter().any(|line| line.contains(expected)),
            "no warning with {expected:?} in:\n{}",
            finished.stderr_text()
        );
    }
    assert_eq!(warnings.len(), 5, "{}", finished.stderr_text());
    // As PID 1 with the default drain timeout, two of them go away; none is fatal.
    let finished = pyinit().as_pid1().app(print_env()).run();
    finished.assert_exit_code(0);
    let text = finished.stderr_text();
    assert!(
        !text.contains("not PID 1") && !text.contains("--drain-timeout"),
        "{text}"
    );
    assert_eq!(warning_lines(&finished).len(), 3, "{text}");
}

#[test]
fn an_apps_own_values_are_kept() {
    let finished = pyinit()
        .env("WEB_CONCURRENCY", "9")
        .env("PYTHONUNBUFFERED", "0")
        // Empty is how an app turns faulthandler off: kept like any value.
        .env("PYTHONFAULTHANDLER", "")
        .args(["--web-concurrency", "7"])
        .app(print_env())
        .run();
    finished.assert_exit_code(0);
    assert_eq!(app_saw(&finished, "WEB_CONCURRENCY"), Some("9".to_owned()));
    assert_eq!(app_saw(&finished, "PYTHONUNBUFFERED"), Some("0".to_owned()));
    assert_eq!(
        app_saw(&finished, "PYTHONFAULTHANDLER"),
        Some(String::new())
    );
    assert!(
        finished
            .stderr_text()
            .contains("WEB_CONCURRENCY is already set: the app keeps its own value"),
        "{}",
        finished.stderr_text()
    );
}

#[test]
fn flags_set_or_turn_off_the_variables() {
    let finished = pyinit()
        .args(["--web-concurrency", "7"])
        .app(print_env())
        .run();
    assert_eq!(app_saw(&finished, "WEB_CONCURRENCY"), Some("7".to_owned()));
    let finished = pyinit()
        .env("PYINIT_WEB_CONCURRENCY", "off")
        .app(print_env())
        .run();
    assert_eq!(app_saw(&finished, "WEB_CONCURRENCY"), None);
    assert_eq!(app_saw(&finished, "PYTHONUNBUFFERED"), Some("1".to_owned()));
    let finished = pyinit()
        .args(["--python-env", "off"])
        .app(print_env())
        .run();
    assert_eq!(app_saw(&finished, "PYTHONUNBUFFERED"), None);
    assert_eq!(app_saw(&finished, "PYTHONFAULTHANDLER"), None);
    assert_eq!(app_saw(&finished, "PYTHON_CPU_COUNT"), None);
    assert!(app_saw(&finished, "WEB_CONCURRENCY").is_some());
    let finished = pyinit()
        .args(["--web-concurrency", "0"])
        .app(print_env())
        .run();
    finished.assert_exit_code(2);
    assert!(
        finished.stderr_text().contains("--web-concurrency"),
        "{}",
        finished.stderr_text()
    );
}

#[test]
fn limits_of_a_real_cgroup_reach_the_app() {
    let cgroup = TestCgroup::create(Some((150_000, 100_000)), Some(256 << 20));
    let finished = pyinit()
        .as_pid1()
        .in_cgroups(cgroup.procs_files())
        .app(print_env())
        .run();
    finished.assert_exit_code(0);
    assert_eq!(app_saw(&finished, "WEB_CONCURRENCY"), Some("4".to_owned()));
    assert_eq!(
        app_saw(&finished, "PYINIT_CPU_LIMIT"),
        Some("1.5".to_owned())
    );
    assert_eq!(
        app_saw(&finished, "PYINIT_MEMORY_LIMIT_BYTES"),
        Some("268435456".to_owned())
    );
    assert_eq!(app_saw(&finished, "PYTHON_CPU_COUNT"), Some("2".to_owned()));
    let text = finished.stderr_text();
    assert!(
        text.contains("container: cgroup v1, cpu limit 1.5, memory limit 256 MiB"),
        "{text}"
    );
    // With both limits set and pyinit as PID 1, only the root warning is left.
    let warnings = warning_lines(&finished);
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("as root"), "{text}");
}

#[test]
fn metrics_show_the_limits_and_the_memory_use_of_a_real_cgroup() {
    let cgroup = TestCgroup::create(Some((150_000, 100_000)), Some(256 << 20));
    let running = pyinit()
        .in_cgroups(cgroup.procs_files())
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(PATIENCE, "pyinit_memory_usage_bytes in /metrics", || {
        metric(addr, "pyinit_memory_usage_bytes").is_some()
    });
    let text = get(addr, "/metrics").body;
    for lines in [
        "# TYPE pyinit_cpu_limit_cores gauge\npyinit_cpu_limit_cores 1.5\n",
        "# TYPE pyinit_memory_limit_bytes gauge\npyinit_memory_limit_bytes 268435456\n",
        "# TYPE pyinit_memory_usage_bytes gauge\n",
        "# TYPE pyinit_oom_kills_total counter\npyinit_oom_kills_total 0\n",
    ] {
        assert!(text.contains(lines), "missing {lines:?} in\n{text}");
    }
    // pyinit and a Python interpreter live in the cgroup: some MiB, and never above the limit.
    let usage = metric(addr, "pyinit_memory_usage_bytes").unwrap();
    let cgroup_says: f64 = cgroup.read("memory.usage_in_bytes").parse().unwrap();
    assert!(
        usage > 1_048_576.0 && usage <= 268_435_456.0,
        "memory use {usage} (the cgroup says {cgroup_says} now)"
    );
}

#[test]
fn metrics_leave_out_limits_that_are_not_set() {
    // This machine runs tests in cgroups without a CPU quota or a memory limit.
    let running = pyinit()
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(PATIENCE, "pyinit_memory_usage_bytes in /metrics", || {
        metric(addr, "pyinit_memory_usage_bytes").is_some_and(|bytes| bytes > 0.0)
    });
    let text = get(addr, "/metrics").body;
    assert!(!text.contains("pyinit_cpu_limit_cores"), "{text}");
    assert!(!text.contains("pyinit_memory_limit_bytes"), "{text}");
    assert!(text.contains("\npyinit_oom_kills_total 0\n"), "{text}");
}

#[test]
fn an_oom_killed_app_is_named_and_pyinit_exits_137() {
    let cgroup = TestCgroup::create(None, Some(64 << 20));
    let finished = pyinit()
        .in_cgroups(cgroup.procs_files())
        .app(python_fixture("allocate.py", &["300"]))
        .run();
    finished.assert_exit_code(137);
    assert!(
        !finished.stdout.iter().any(|line| line == "survived"),
        "the app was not killed"
    );
    let app_pid = finished
        .stdout
        .iter()
        .find_map(|line| line.strip_prefix("ready pid="))
        .expect("ready line");
    let expected = format!(
        "the app (pid {app_pid}) was OOM-killed: the container reached its memory limit of 64 MiB"
    );
    let oom_lines: Vec<_> = finished
        .stderr
        .iter()
        .filter(|line| line.contains("OOM-killed"))
        .collect();
    assert_eq!(oom_lines.len(), 1, "{}", finished.stderr_text());
    assert!(
        oom_lines[0].contains(" ERROR ") && oom_lines[0].contains(&expected),
        "{}",
        finished.stderr_text()
    );
}

#[test]
fn an_oom_killed_orphan_is_named_with_its_pid() {
    let cgroup = TestCgroup::create(None, Some(64 << 20));
    let finished = pyinit()
        .in_cgroups(cgroup.procs_files())
        .app(python_fixture("allocate.py", &["300", "--in", "orphan"]))
        .run();
    finished.assert_exit_code(0);
    let orphan_pid = finished
        .stdout
        .iter()
        .find_map(|line| line.strip_prefix("orphan pid="))
        .expect("orphan line");
    assert!(finished.stdout.iter().any(|line| line == "orphan gone"));
    let expected = format!("a process in the container (pid {orphan_pid}) was OOM-killed");
    assert!(
        finished.stderr_text().contains(&expected),
        "{}",
        finished.stderr_text()
    );
}

#[test]
fn an_oom_killed_worker_reaped_by_its_parent_is_still_reported() {
    let cgroup = TestCgroup::create(None, Some(64 << 20));
    let mut running = pyinit()
        .in_cgroups(cgroup.procs_files())
        .app(python_fixture("allocate.py", &["300", "--in", "worker"]))
        .start();
    let addr = health_addr(&running);
    running.stdout.wait_for("ended by signal 9", PATIENCE);
    // pyinit never reaps the worker: the poll of the counter reports it, without a pid.
    let line = running.stderr.wait_for("OOM-killed", PATIENCE);
    assert!(
        line.contains(
            "a process in the container was OOM-killed (its parent reaped it, so pyinit has no pid)"
        ) && line.contains("64 MiB"),
        "{line}"
    );
    // /metrics counts it: on cgroup v1 the one trace besides the log line.
    poll_until(PATIENCE, "pyinit_oom_kills_total 1", || {
        metric(addr, "pyinit_oom_kills_total") == Some(1.0)
    });
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    running.stderr.wait_closed(Duration::from_secs(5));
    let n_reports = running
        .stderr
        .all()
        .iter()
        .filter(|line| line.contains("OOM-killed"))
        .count();
    assert_eq!(n_reports, 1, "{}", running.stderr.joined());
}

#[test]
fn a_sigkill_that_is_not_an_oom_kill_is_not_reported() {
    let cgroup = TestCgroup::create(None, Some(64 << 20));
    let finished = pyinit()
        .in_cgroups(cgroup.procs_files())
        .app(vec!["/bin/sh".into(), "-c".into(), "kill -KILL $$".into()])
        .run();
    finished.assert_exit_code(137);
    assert!(
        !finished.stderr_text().contains("OOM"),
        "{}",
        finished.stderr_text()
    );
}

/// A child of the test process's own v1 cpu and memory cgroups, removed on drop.
struct TestCgroup {
    dirs: Vec<PathBuf>,
}

impl TestCgroup {
    /// `cpu`: (quota, period) in microseconds; `memory`: a limit in bytes.
    fn create(cpu: Option<(u64, u64)>, memory: Option<u64>) -> TestCgroup {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "pyinit-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut cgroup = TestCgroup { dirs: Vec::new() };
        for controller in ["cpu", "memory"] {
            let dir = own_v1_cgroup(controller).join(&name);
            std::fs::create_dir(&dir).unwrap_or_else(|error| panic!("mkdir {dir:?}: {error}"));
            cgroup.dirs.push(dir);
        }
        if let Some((quota, period)) = cpu {
            cgroup.write("cpu.cfs_period_us", &period.to_string());
            cgroup.write("cpu.cfs_quota_us", &quota.to_string());
        }
        if let Some(bytes) = memory {
            cgroup.write("memory.limit_in_bytes", &bytes.to_string());
        }
        cgroup
    }

    fn write(&self, file: &str, value: &str) {
        let dir = self
            .dirs
            .iter()
            .find(|dir| dir.join(file).exists())
            .unwrap_or_else(|| panic!("no cgroup has {file}"));
        std::fs::write(dir.join(file), value)
            .unwrap_or_else(|error| panic!("write {value} to {file}: {error}"));
    }

    /// One of the cgroup's files, trimmed.
    fn read(&self, file: &str) -> String {
        let dir = self
            .dirs
            .iter()
            .find(|dir| dir.join(file).exists())
            .unwrap_or_else(|| panic!("no cgroup has {file}"));
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|error| panic!("read {file}: {error}"))
            .trim()
            .to_owned()
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }
}

impl Drop for TestCgroup {
    /// Never panics: it may run while a failed test unwinds.
    fn drop(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        for dir in &self.dirs {
            loop {
                // Only processes this test started can be in its cgroup.
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|pid| pid.parse::<u32>().ok()) {
                    send_signal(pid, "KILL");
                }
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                if Instant::now() > deadline {
                    eprintln!("could not remove the test cgroup {dir:?}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The test process's own cgroup directory for a v1 controller (this machine is v1).
fn own_v1_cgroup(controller: &str) -> PathBuf {
    let membership = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let path = membership
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            controllers
                .split(',')
                .any(|name| name == controller)
                .then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("no v1 {controller} cgroup in /proc/self/cgroup"));
    let mount = Path::new("/sys/fs/cgroup").join(controller);
    assert!(
        mount.join("cgroup.procs").exists(),
        "no v1 {controller} hierarchy at {mount:?}"
    );
    mount.join(path.trim_start_matches('/'))
}
