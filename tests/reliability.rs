//! Nothing lost at the edges: a signal during set-up, a health port flooded under a low
//! open-files limit, what the health port may show, a stopped app at the drain, and errors that
//! name their cause. Each test runs the real binary, as PID 1 of a fresh PID namespace where the
//! kernel's rules for PID 1 apply, or in runc.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::common::runc::Bundle;
use crate::common::{PATIENCE, Pyinit, poll_until};
use crate::dist::TempDir;

/// Fills `dir` with `count` empty `counter_N.db` files, as a restarted container's emptyDir holds
/// them: pyinit removes each before the app starts, so set-up lasts as long as that takes.
pub fn seed_stale_db_files(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for n in 0..count {
        std::fs::File::create(dir.join(format!("counter_{n}.db"))).unwrap();
    }
}

/// The directory's modification time, in nanoseconds: each unlink in it moves it.
pub fn modified_ns(dir: &Path) -> i128 {
    let metadata = std::fs::metadata(dir).unwrap();
    i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec())
}

/// Whether any `*.db` file is left in `dir`.
pub fn has_db_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .any(|entry| entry.file_name().to_string_lossy().ends_with(".db"))
}

/// Stale files enough for set-up to last a good part of a second: the window for the TERM.
const STALE_FILES: usize = 40_000;

#[test]
fn a_sigterm_during_set_up_waits_for_the_handlers_and_drains() {
    let scratch = TempDir::new("early-term");
    let dir = scratch.path.join("multiproc");
    seed_stale_db_files(&dir, STALE_FILES);
    let seeded_at = modified_ns(&dir);
    // sleep has no handler of its own: the TERM pyinit forwards ends it, 143, at once.
    let mut running = Pyinit::new()
        .as_pid1()
        .env("PROMETHEUS_MULTIPROC_DIR", &dir)
        .app(vec!["sleep".into(), "1000".into()])
        .start();
    // pyinit is in the middle of its set-up once it has begun to empty the directory.
    poll_until(PATIENCE, "pyinit to begin removing stale files", || {
        modified_ns(&dir) != seeded_at
    });
    running.signal("TERM");
    assert!(
        has_db_files(&dir),
        "set-up was over before the TERM was sent: the test needs more than {STALE_FILES} files"
    );
    let status = running.wait_exit(PATIENCE);
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "the app's code after the drain\nstderr:\n{}",
        running.stderr.joined()
    );
    running.stderr.wait_for("drain started", Duration::ZERO);
    assert!(!has_db_files(&dir), "set-up was cut short");
}

/// The same in a container: `runc kill ID TERM` while pyinit is still emptying the pod's volume.
#[test]
fn runc_kill_term_during_set_up_drains_the_container() {
    let scratch = TempDir::new("early-term-runc");
    let volume = scratch.path.join("volume");
    seed_stale_db_files(&volume, STALE_FILES);
    let seeded_at = modified_ns(&volume);
    let mut container = Bundle::new()
        .env("PROMETHEUS_MULTIPROC_DIR", "/metrics")
        .volume(&volume, "/metrics")
        .app(["sleep", "1000"])
        .start();
    poll_until(PATIENCE, "pyinit to begin removing stale files", || {
        modified_ns(&volume) != seeded_at
    });
    container.kill("TERM");
    assert!(
        has_db_files(&volume),
        "set-up was over before the TERM was sent: the test needs more than {STALE_FILES} files"
    );
    let exit_code = container.wait_exit(PATIENCE);
    assert_eq!(
        exit_code,
        128 + 15,
        "the app's code after the drain\nstderr:\n{}",
        container.stderr.joined()
    );
    container.stderr.wait_for("drain started", Duration::ZERO);
}
