//! Reaping orphans, as PID 1 and as child subreaper.

use std::time::Duration;

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
