//! Exit codes: pass-through, 128+N, remapping, exec failures, and processes left behind.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::common::{PATIENCE, Pyinit, python_fixture};

fn sh(script: &str) -> Vec<OsString> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

#[test]
fn every_exit_code_passes_through() {
    for code in 0..=255 {
        Pyinit::new()
            .app(sh(&format!("exit {code}")))
            .run()
            .assert_exit_code(code);
    }
}

#[test]
fn death_by_signal_is_128_plus_n() {
    Pyinit::new()
        .as_pid1()
        .app(sh("kill -SEGV $$"))
        .run()
        .assert_exit_code(139);
    Pyinit::new()
        .app(sh("kill -KILL $$"))
        .run()
        .assert_exit_code(137);
}

#[test]
fn every_real_time_signal_death_is_128_plus_n() {
    // SIGRTMIN..SIGRTMAX as the kernel numbers them (32..=64), whatever the C library reserves.
    for signal in 32..=64 {
        let finished = Pyinit::new().app(sh(&format!("kill -{signal} $$"))).run();
        finished.assert_exit_code(128 + signal);
        assert!(
            finished
                .stderr_text()
                .contains(&format!("killed by signal {signal} (")),
            "{}",
            finished.stderr_text()
        );
    }
}

#[test]
fn a_real_time_death_ends_pyinit_at_once_while_a_leftover_lives() {
    // The app's own child outlives it by far: pyinit must not wait for it to learn of the death.
    let mut running = Pyinit::new()
        .as_pid1()
        .app(sh("sleep 100 & echo \"left pid=$!\"; kill -36 $$"))
        .start();
    running.stdout.wait_for("left pid=", PATIENCE);
    let started = Instant::now();
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(164));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exited {:?} after the app's death",
        started.elapsed()
    );
    let exited = running.stderr.wait_for("app exited", PATIENCE);
    assert!(
        exited.contains("code=164") && exited.contains("RTMIN+2"),
        "{exited}"
    );
}

#[test]
fn remap_exit_rewrites_the_final_code() {
    Pyinit::new()
        .app(sh("kill -TERM $$"))
        .run()
        .assert_exit_code(143);
    Pyinit::new()
        .args(["--remap-exit", "143=0"])
        .app(sh("kill -TERM $$"))
        .run()
        .assert_exit_code(0);
    Pyinit::new()
        .env("PYINIT_REMAP_EXIT", "7=0,143=0")
        .app(sh("exit 7"))
        .run()
        .assert_exit_code(0);
}

#[test]
fn missing_command_is_127_with_its_name() {
    let finished = Pyinit::new()
        .app(vec!["/nonexistent/app-binary".into()])
        .run();
    finished.assert_exit_code(127);
    let stderr = finished.stderr_text();
    assert!(stderr.contains("/nonexistent/app-binary"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    Pyinit::new()
        .app(vec!["no-such-command-anywhere".into()])
        .run()
        .assert_exit_code(127);
}

#[test]
fn non_executable_file_is_126_with_its_path() {
    let dir = std::env::temp_dir().join(format!("pyinit-noexec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("app.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let finished = Pyinit::new().app(vec![script.clone().into()]).run();
    finished.assert_exit_code(126);
    assert!(
        finished.stderr_text().contains("app.sh"),
        "{}",
        finished.stderr_text()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn processes_left_behind_get_sigterm_and_the_app_code_is_kept() {
    for as_pid1 in [false, true] {
        let pyinit = if as_pid1 {
            Pyinit::new().as_pid1()
        } else {
            Pyinit::new()
        };
        let mut running = pyinit
            .app(python_fixture("leave_behind.py", &["3"]))
            .start();
        running.stdout.wait_for("left pid=", PATIENCE);
        // The leftover says so itself when SIGTERM reaches it, before it exits.
        running.stdout.wait_for("left signal TERM", PATIENCE);
        assert_eq!(
            running.wait_exit(PATIENCE).code(),
            Some(3),
            "PID 1: {as_pid1}"
        );
        assert!(
            !running.stderr.contains("ignored SIGTERM: killing them"),
            "the leftover should have ended on SIGTERM:\n{}",
            running.stderr.joined()
        );
    }
}

#[test]
fn stubborn_leftovers_are_killed_after_the_orphan_grace() {
    let mut running = Pyinit::new()
        .app(python_fixture("leave_behind.py", &["4", "--stubborn"]))
        .start();
    let line = running.stdout.wait_for("left pid=", PATIENCE);
    let left_pid: u32 = line.rsplit('=').next().unwrap().parse().unwrap();
    let started = Instant::now();
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(4));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "killed after {:?}",
        started.elapsed()
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{left_pid}")).exists(),
        "left-behind process survived"
    );
    running
        .stderr
        .wait_for("ignored SIGTERM: killing them", PATIENCE);
}
