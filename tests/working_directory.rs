//! The working directory: pyinit leaves the one it was started in once the app runs, so that it
//! keeps nothing busy; the app and its exec probes stay there.

use std::path::{Path, PathBuf};

use crate::common::http::{get, health_addr, metric};
use crate::common::{PATIENCE, Pyinit, children_of, poll_until, python_fixture};

/// The working directory of a process (a host pid), as /proc shows it.
fn working_dir_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

#[test]
fn pyinit_moves_to_the_root_while_the_app_and_its_exec_probes_keep_the_start_directory() {
    let dir = std::env::temp_dir().join(format!("pyinit-workdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    // The probe succeeds only where the app started: as the kubelet runs exec probes in the
    // container's working directory.
    let probe = format!("exec:/bin/sh -c 'test \"$(pwd -P)\" = {}'", dir.display());
    let running = Pyinit::new()
        .as_pid1()
        .current_dir(&dir)
        .args(["--readiness", probe.as_str()])
        .args([
            "--readiness-period",
            "200ms",
            "--readiness-failure-threshold",
            "1",
        ])
        .app(python_fixture("print_signals.py", &[]))
        .start();
    let addr = health_addr(&running);
    running.wait_ready();
    poll_until(PATIENCE, "pyinit to leave its start directory", || {
        working_dir_of(running.pyinit_pid).as_deref() == Some(Path::new("/"))
    });
    let app_pid = children_of(running.pyinit_pid)
        .into_iter()
        .next()
        .expect("the app");
    assert_eq!(working_dir_of(app_pid), Some(dir.clone()));
    let successes = "pyinit_probe_results_total{probe=\"readiness\",result=\"success\"}";
    poll_until(PATIENCE, "the exec probe to succeed", || {
        metric(addr, successes).is_some_and(|count| count >= 1.0)
    });
    let answer = get(addr, "/readyz?verbose");
    assert_eq!(answer.status, 200, "{}", answer.body);
    drop(running);
    std::fs::remove_dir_all(&dir).unwrap();
}
