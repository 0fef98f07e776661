//! pyinit as users install it (docs/install.md): the wheels (`wheels.rs`: installed from the
//! file alone into a fresh venv, and accepted by pip's resolver on manylinux and
//! musllinux, x86_64 and aarch64), the static aarch64 binary under qemu-user (`aarch64.rs`), and
//! `Dockerfile.example` built offline and run in podman (`podman.rs`); pyinit's own image, taken
//! with `COPY --from` into a Python image, and the release's two-platform build of it
//! (`image.rs`); the crate as crates.io would receive it (`crate_package.rs`); and the release
//! workflows that publish all of these, through both linters (`workflows.rs`).
//!
//! The helpers here run the repository's own build scripts, once per test process (they are
//! idempotent, and after `scripts/test.sh` has run them they take seconds), and give the tests
//! a package index of their own: pypiserver from `target/dist-venv`, serving pyinit's wheels and
//! the wheelhouse of `scripts/install-deps.sh`, inside a fresh network namespace with only a
//! loopback device, so that whatever installs from it provably needs no other network.

mod aarch64;
mod crate_package;
pub mod image;
pub mod podman;
pub mod wheels;
mod workflows;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use crate::common::runc::repo;

/// The version in Cargo.toml's `[package]`, which the wheels and the Dockerfile's pin carry.
pub fn cargo_version() -> String {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("read Cargo.toml");
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("a version in Cargo.toml")
        .to_owned()
}

fn text_of(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The longest a build script may take: cold release builds of both targets, or debootstrap, on a
/// loaded 2-core machine.
pub const BUILD_PATIENCE: Duration = Duration::from_secs(20 * 60);

/// Runs `command_line` with `sh -c` in the repository's root, once per test process however many
/// tests ask (the builds share target/), and returns its stdout; fails the test with its output
/// if it fails.
pub fn run_once(command_line: &str) -> String {
    static RUNS: OnceLock<Mutex<HashMap<String, Arc<OnceLock<Output>>>>> = OnceLock::new();
    let run = Arc::clone(
        RUNS.get_or_init(Default::default)
            .lock()
            .unwrap()
            .entry(command_line.to_owned())
            .or_default(),
    );
    let output = run.get_or_init(|| {
        output_within(
            Command::new("sh")
                .args(["-c", command_line])
                .current_dir(repo())
                .stdin(Stdio::null()),
            BUILD_PATIENCE,
        )
    });
    assert!(
        output.status.success(),
        "`{command_line}` failed ({}):\n{}",
        output.status,
        text_of(output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The two architectures pyinit ships for, as Rust and wheel tags name them.
pub const ARCHITECTURES: [&str; 2] = ["x86_64", "aarch64"];

/// The name pip installs pyinit by (pyproject.toml's `name`): `pyinit` on PyPI belongs to an
/// unrelated project. The command it puts on PATH is `pyinit`.
pub const DISTRIBUTION: &str = "pyinit-k8s";

/// The file name of the wheel for `arch`: the distribution's name as wheel names spell it
/// (PEP 427: `pyinit_k8s`) and both platform tags.
pub fn wheel_name(version: &str, arch: &str) -> String {
    format!(
        "{}-{version}-py3-none-manylinux2014_{arch}.manylinux_2_17_{arch}.musllinux_1_1_{arch}.whl",
        DISTRIBUTION.replace('-', "_")
    )
}

/// The static release binary for `arch`, built as docs/install.md says.
pub fn static_binary(arch: &str) -> PathBuf {
    let target = format!("{arch}-unknown-linux-musl");
    run_once(&format!("cargo build --release --locked --target {target}"));
    repo().join("target").join(target).join("release/pyinit")
}

/// pyinit's wheels, built by `scripts/build-wheels.sh` (with the maturin it installs for
/// itself) into target/wheels: (arch, file).
pub fn wheels() -> Vec<(&'static str, PathBuf)> {
    run_once("bash scripts/build-wheels.sh");
    let version = cargo_version();
    ARCHITECTURES
        .iter()
        .map(|arch| {
            let path = repo()
                .join("target/wheels")
                .join(wheel_name(&version, arch));
            assert!(path.is_file(), "{} was not built", path.display());
            (*arch, path)
        })
        .collect()
}

/// A program in the packaging tools' venv (pypi-server, pip); fails the test with the
/// fix when it was never installed.
pub fn dist_venv_bin(name: &str) -> PathBuf {
    let path = repo().join("target/dist-venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-deps.sh` (as root) first",
        path.display()
    );
    path
}

/// The wheels of the app's packages and of maturin that `scripts/install-deps.sh` downloads.
pub fn wheelhouse() -> PathBuf {
    let path = repo().join("target/wheelhouse");
    let has_gunicorn = std::fs::read_dir(&path)
        .map(|entries| {
            entries
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with("gunicorn-"))
        })
        .unwrap_or(false);
    assert!(
        has_gunicorn,
        "{} has no gunicorn wheel: run `bash scripts/install-deps.sh` (as root) first",
        path.display()
    );
    path
}

/// The podman base image of `scripts/podman-base-image.sh` (made once, then cached).
pub fn base_image() -> String {
    run_once("bash scripts/podman-base-image.sh")
        .trim()
        .to_owned()
}

/// A fresh, empty temporary folder, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "pyinit-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary folder");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A venv of Debian's /usr/bin/python3 (its own pip, as a user's), in `parent`.
pub fn fresh_venv(parent: &Path) -> PathBuf {
    let venv = parent.join("venv");
    let output = Command::new("/usr/bin/python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("run python3 -m venv");
    assert!(output.status.success(), "venv: {}", text_of(&output));
    venv
}

/// The port the index listens on inside its own network namespace, where every port is free.
const INDEX_PORT: u16 = 8080;

/// A package index with nothing but the given wheels, in a network namespace that has only a
/// loopback device: commands from [`OfflineIndex::command`] run there too, with `PIP_INDEX_URL`
/// pointing at it. Drop stops the server and the namespace.
#[derive(Debug)]
pub struct OfflineIndex {
    namespace: Child,
    server: Option<Child>,
    packages: TempDir,
}

impl OfflineIndex {
    /// Serves copies of `wheels` (so that a rebuild of target/wheels cannot change what a
    /// running test installs); the server never redirects to another index.
    pub fn start(wheels: &[PathBuf]) -> OfflineIndex {
        let packages = TempDir::new("index");
        for wheel in wheels {
            let name = wheel.file_name().expect("a wheel file name");
            std::fs::copy(wheel, packages.path.join(name)).expect("copy a wheel into the index");
        }
        // The namespace lives as long as this process sleeps; everything else joins it.
        let mut namespace = Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && echo up && exec sleep 3600",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start unshare --net");
        let mut line = String::new();
        let _ = BufReader::new(namespace.stdout.take().expect("stdout")).read_line(&mut line);
        let mut index = OfflineIndex {
            namespace,
            server: None,
            packages,
        };
        assert_eq!(
            line.trim(),
            "up",
            "the namespace's loopback did not come up"
        );

        let server = index
            .command(dist_venv_bin("pypi-server"))
            .args(["run", "--host", "127.0.0.1", "--port"])
            .arg(INDEX_PORT.to_string())
            .args([
                "--disable-fallback",
                "--authenticate",
                ".",
                "--passwords",
                ".",
            ])
            .arg(&index.packages.path)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pypi-server");
        let server = index.server.insert(server);
        // pypiserver says "Listening on http://..." once its socket is bound.
        let stderr = server.stderr.take().expect("stderr");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match line_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains("Listening on") => break,
                Ok(line) => seen.push(line),
                Err(_) => panic!("pypi-server did not start:\n{}", seen.join("\n")),
            }
        }
        index
    }

    /// The index of pyinit's wheels just built and the wheelhouse (gunicorn, maturin).
    pub fn of_wheels_and_wheelhouse() -> OfflineIndex {
        let mut packages: Vec<PathBuf> = wheels().into_iter().map(|(_, wheel)| wheel).collect();
        packages.extend(
            std::fs::read_dir(wheelhouse())
                .expect("read the wheelhouse")
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|extension| extension == "whl")),
        );
        OfflineIndex::start(&packages)
    }

    /// The index's URL, as `PIP_INDEX_URL` takes it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{INDEX_PORT}/simple/")
    }

    /// `program` to run inside the index's network namespace, with `PIP_INDEX_URL` set and pip's
    /// self-update check off.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/proc/{}/ns/net", self.namespace.id()))
            .arg("--")
            .arg(program)
            .env("PIP_INDEX_URL", self.url())
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .stdin(Stdio::null());
        command
    }
}

impl Drop for OfflineIndex {
    fn drop(&mut self) {
        for child in self
            .server
            .iter_mut()
            .chain(std::iter::once(&mut self.namespace))
        {
            let _ = child.kill();
            #[allow(
                clippy::disallowed_methods,
                reason = "the test harness reaps its own children"
            )]
            let _ = child.wait();
        }
    }
}

/// Runs `command` to its end within `timeout` (killing it after), and returns its output.
pub fn output_within(command: &mut Command, timeout: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("start {command:?}: {error}"));
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done_rx.recv_timeout(timeout) {
        Ok(output) => output.expect("collect the output"),
        Err(_) => {
            crate::common::send_signal(pid, "KILL");
            panic!("{command:?} did not finish within {timeout:?}");
        }
    }
}
