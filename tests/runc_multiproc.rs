//! prometheus_client's multiprocess directory, prepared by pyinit before the app starts: end to
//! end in runc containers that start as root, with `--user nobody` and a real prometheus_client
//! (the fixture `multiproc_app.py` counts a request and prints what a scrape would serve), over
//! host folders mounted as the pod's volumes, which the tests seed and look into from the host.
//! A few tests that need no container (the off switch, a health sidecar, the legacy variable,
//! values that name no directory) run pyinit on the host.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::runc::{Bundle, Container, venv_bin};
use crate::common::{PATIENCE, Pyinit, fixture};
use crate::dist::TempDir;

/// nobody and nogroup on Debian, whose /etc the containers mount.
const NOBODY: u32 = 65534;

/// The fixture app as nobody, with `PROMETHEUS_MULTIPROC_DIR` set to `dir` (a container path).
fn multiproc_app(dir: &str) -> Bundle {
    Bundle::new()
        .env("PROMETHEUS_MULTIPROC_DIR", dir)
        .args(["--user", "nobody"])
        .app([
            venv_bin("python3").into_os_string(),
            fixture("multiproc_app.py").into_os_string(),
        ])
}

fn run_to_exit(bundle: &Bundle) -> (Container, i32) {
    let mut container = bundle.start();
    let exit_code = container.wait_exit(PATIENCE);
    (container, exit_code)
}

/// The value after `key ` in the app's output.
fn app_printed(container: &Container, key: &str) -> String {
    let prefix = format!("{key} ");
    container
        .stdout
        .all()
        .iter()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| {
            panic!(
                "the app printed no {key:?} line\nstdout:\n{}\nstderr:\n{}",
                container.stdout.joined(),
                container.stderr.joined()
            )
        })
}

fn assert_exit(container: &Container, exit_code: i32, expected: i32) {
    assert_eq!(
        exit_code,
        expected,
        "stdout:\n{}\nstderr:\n{}",
        container.stdout.joined(),
        container.stderr.joined()
    );
}

/// A folder for a volume, with the mode an emptyDir gets (0777) or another one.
fn volume_dir(scratch: &TempDir, mode: u32) -> std::path::PathBuf {
    let dir = scratch.path.join("volume");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

/// The names in `dir` that match prometheus_client's `counter_*.db`.
fn counter_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("counter_") && name.ends_with(".db"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_restarted_container_serves_fresh_counters_and_keeps_what_is_not_prometheus_clients() {
    let scratch = TempDir::new("multiproc-restart");
    let volume = volume_dir(&scratch, 0o777);
    std::fs::write(volume.join("notes.txt"), "the app's own file\n").unwrap();
    let bundle = multiproc_app("/metrics").volume(&volume, "/metrics");

    let (first, exit_code) = run_to_exit(&bundle);
    assert_exit(&first, exit_code, 0);
    assert_eq!(app_printed(&first, "requests_total"), "1.0");
    assert_eq!(app_printed(&first, "uid"), NOBODY.to_string());
    let written = counter_files(&volume);
    assert_eq!(
        written.len(),
        1,
        "the first run's counter file: {written:?}"
    );
    let file = volume.join(&written[0]);
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), NOBODY);
    // A worker of the first run that died without cleaning up: its file counts one request.
    std::fs::copy(&file, volume.join("counter_4242.db")).unwrap();

    // The restart keeps the volume: without pyinit the app would serve 3 requests, its own and
    // the two dead processes'.
    let (second, exit_code) = run_to_exit(&bundle);
    assert_exit(&second, exit_code, 0);
    assert_eq!(app_printed(&second, "requests_total"), "1.0");
    let written = counter_files(&volume);
    assert_eq!(written.len(), 1, "only the second run's file: {written:?}");
    assert!(!written.contains(&"counter_4242.db".to_owned()));
    assert_eq!(
        app_printed(&second, "entries"),
        format!("{} notes.txt", written[0])
    );
    second.stderr.wait_for(
        "prometheus_client's multiprocess directory prepared: removed 2 stale *.db files",
        PATIENCE,
    );
    assert_eq!(
        std::fs::read_to_string(volume.join("notes.txt")).unwrap(),
        "the app's own file\n"
    );
}

#[test]
fn a_missing_directory_is_created_for_the_app_user_where_only_root_may_write() {
    let scratch = TempDir::new("multiproc-create");
    // Only root may create entries here, as in an image's /var/run.
    let volume = volume_dir(&scratch, 0o755);
    let (container, exit_code) =
        run_to_exit(&multiproc_app("/volume/prometheus").volume(&volume, "/volume"));
    assert_exit(&container, exit_code, 0);
    let created = std::fs::metadata(volume.join("prometheus")).unwrap();
    assert!(created.is_dir());
    assert_eq!((created.uid(), created.gid()), (NOBODY, NOBODY));
    assert_eq!(app_printed(&container, "requests_total"), "1.0");
    assert_eq!(counter_files(&volume.join("prometheus")).len(), 1);
    container.stderr.wait_for(
        "prometheus_client's multiprocess directory prepared: created for uid 65534",
        PATIENCE,
    );
}

/// Runs the app with `PROMETHEUS_MULTIPROC_DIR=dir` in `bundle`, expects exit 125 with `reason`
/// on pyinit's one line, and that the app never started.
fn assert_setup_error(bundle: Bundle, dir: &str, reason: &str) {
    let (container, exit_code) = run_to_exit(&bundle);
    assert_exit(&container, exit_code, 125);
    let expected = format!(
        "pyinit: cannot prepare prometheus_client's multiprocess directory {dir} \
         (PROMETHEUS_MULTIPROC_DIR): {reason}"
    );
    let lines = container.stderr.all();
    assert!(
        lines.contains(&expected),
        "expected {expected:?} in:\n{}",
        container.stderr.joined()
    );
    assert!(
        container.stdout.all().is_empty(),
        "the app must never start: {}",
        container.stdout.joined()
    );
}

#[test]
fn a_path_under_a_read_only_mount_is_a_setup_error() {
    // readOnlyRootFilesystem: true, and no volume where the variable points.
    assert_setup_error(
        multiproc_app("/prometheus"),
        "/prometheus",
        "cannot create it: EROFS: Read-only file system",
    );

    let scratch = TempDir::new("multiproc-read-only");
    let volume = volume_dir(&scratch, 0o777);
    std::fs::write(volume.join("counter_7.db"), "stale").unwrap();
    assert_setup_error(
        multiproc_app("/metrics").read_only_volume(&volume, "/metrics"),
        "/metrics",
        "cannot remove counter_7.db: EROFS: Read-only file system",
    );
    assert!(volume.join("counter_7.db").is_file());

    std::fs::remove_file(volume.join("counter_7.db")).unwrap();
    assert_setup_error(
        multiproc_app("/metrics").read_only_volume(&volume, "/metrics"),
        "/metrics",
        "the app's user (uid 65534) cannot write to it: EROFS: Read-only file system",
    );
}

#[test]
fn a_directory_the_app_cannot_write_is_a_setup_error() {
    let scratch = TempDir::new("multiproc-not-writable");
    // A volume root's, with no fsGroup: pyinit may clean it, but the app could not write there.
    let volume = volume_dir(&scratch, 0o755);
    std::fs::write(volume.join("counter_7.db"), "stale").unwrap();
    assert_setup_error(
        multiproc_app("/metrics").volume(&volume, "/metrics"),
        "/metrics",
        "the app's user (uid 65534) cannot write to it: EACCES: Permission denied",
    );
}

/// A host folder holding a stale `counter_1.db` and the app's `notes.txt`.
fn seeded_dir(scratch: &TempDir) -> std::path::PathBuf {
    let dir = scratch.path.join("prometheus");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("counter_1.db"), "stale").unwrap();
    std::fs::write(dir.join("notes.txt"), "kept").unwrap();
    dir
}

#[test]
fn turned_off_or_without_an_app_pyinit_leaves_the_directory_alone() {
    let scratch = TempDir::new("multiproc-off");
    let dir = seeded_dir(&scratch);
    Pyinit::new()
        .env("PROMETHEUS_MULTIPROC_DIR", &dir)
        .args(["--prepare-multiproc-dir", "off"])
        .app(vec!["/bin/true".into()])
        .run()
        .assert_exit_code(0);
    assert!(dir.join("counter_1.db").is_file());

    // A health sidecar's pod mate may be writing there right now.
    let sidecar = Pyinit::new().env("PROMETHEUS_MULTIPROC_DIR", &dir).start();
    sidecar
        .stderr
        .wait_for("no command: running as a health sidecar", PATIENCE);
    assert!(dir.join("counter_1.db").is_file());
    assert!(!sidecar.stderr.contains("multiprocess directory"));
}

#[test]
fn the_lower_case_variable_counts_when_the_upper_case_one_is_absent() {
    let scratch = TempDir::new("multiproc-legacy");
    let dir = seeded_dir(&scratch);
    let finished = Pyinit::new()
        .env("prometheus_multiproc_dir", &dir)
        .app(vec!["/bin/true".into()])
        .run();
    finished.assert_exit_code(0);
    assert!(!dir.join("counter_1.db").exists());
    assert!(dir.join("notes.txt").is_file());
    let line = finished
        .stderr
        .iter()
        .find(|line| line.contains("multiprocess directory prepared"))
        .unwrap_or_else(|| panic!("no report line:\n{}", finished.stderr_text()));
    assert!(
        line.contains("removed 1 stale *.db file") && line.contains("prometheus_multiproc_dir"),
        "{line}"
    );
}

#[test]
fn a_value_that_names_no_directory_is_a_setup_error() {
    for (value, reason) in [
        ("", "it is empty, which still turns"),
        ("metrics", "not an absolute path"),
        ("/", "it must name a directory of its own"),
    ] {
        let finished = Pyinit::new()
            .env("PROMETHEUS_MULTIPROC_DIR", value)
            .app(vec!["/bin/echo".into(), "app started".into()])
            .run();
        finished.assert_exit_code(125);
        assert!(
            finished.stdout.is_empty(),
            "{value:?}: {:?}",
            finished.stdout
        );
        let expected =
            format!("pyinit: invalid value '{value}' for PROMETHEUS_MULTIPROC_DIR: {reason}");
        assert!(
            finished.stderr.len() == 1 && finished.stderr[0].starts_with(&expected),
            "{value:?}: {}",
            finished.stderr_text()
        );
    }
}

#[test]
fn a_db_link_is_removed_as_a_link_and_a_db_directory_is_kept_with_a_warning() {
    let scratch = TempDir::new("multiproc-entries");
    let dir = seeded_dir(&scratch);
    let outside = scratch.path.join("elsewhere.db");
    std::fs::write(&outside, "not the app's").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link.db")).unwrap();
    std::fs::create_dir(dir.join("keep.db")).unwrap();
    std::fs::write(dir.join("keep.db/inner.db"), "below").unwrap();
    let finished = Pyinit::new()
        .env("PROMETHEUS_MULTIPROC_DIR", &dir)
        .app(vec!["/bin/true".into()])
        .run();
    finished.assert_exit_code(0);
    assert!(std::fs::symlink_metadata(dir.join("link.db")).is_err());
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "not the app's");
    assert!(dir.join("keep.db/inner.db").is_file());
    let stderr = finished.stderr_text();
    assert!(stderr.contains("removed 2 stale *.db files"), "{stderr}");
    assert!(
        stderr.contains(
            "WARN prometheus_client's multiprocess directory holds directories named *.db (keep.db)"
        ),
        "{stderr}"
    );
}
