//! The end-to-end harness: pyinit as PID 1 of a real OCI container started by `runc`, the way a
//! kubelet's runtime starts it. [`Bundle`] writes a per-test bundle (an empty read-only rootfs with
//! the host's system folders, the end-to-end venv and the repo's examples and fixtures bind-mounted
//! read-only, a writable tmpfs /tmp, the host's network, optional CPU and memory limits); its
//! `start` runs `runc run` in the foreground and returns a [`Container`] whose Drop runs
//! `runc delete -f` and removes the bundle, on every path. `config.rs` writes the bundle's
//! config.json; [`http_get`] and [`free_port`] (`http.rs`) reach the app over the shared
//! network. Containers see the host's paths unchanged, so `python_fixture` argv works in them.

mod config;
mod http;

pub use http::{free_port, http_get, wait_http_ok};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Lines, PATIENCE, children_of, poll_until, process_state};

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The virtual environment of Debian's /usr/bin/python3 that `scripts/install-deps.sh` builds,
/// with the pinned gunicorn, uvicorn, prometheus_client and kubernetes-validate.
pub fn e2e_venv() -> PathBuf {
    repo().join("target/e2e-venv")
}

/// A program in the end-to-end venv (`gunicorn`, `uvicorn`, `python3`, ...); fails the test with
/// the fix when the venv was never installed.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = e2e_venv().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-deps.sh` (as root) first",
        path.display()
    );
    path
}

/// A file or folder under examples/.
pub fn example(relative: &str) -> PathBuf {
    repo().join("examples").join(relative)
}

/// The static musl release binary, if `scripts/build-static.sh` has built it into the same target
/// folder as the debug binary under test.
pub fn static_pyinit() -> Option<PathBuf> {
    let debug_binary = Path::new(env!("CARGO_BIN_EXE_pyinit"));
    let target_dir = debug_binary.parent()?.parent()?;
    let path = target_dir.join("x86_64-unknown-linux-musl/release/pyinit");
    path.is_file().then_some(path)
}

/// Where the pyinit binary appears inside the container: at the root, outside every host mount,
/// so that runc never has to create a mountpoint in a host folder.
pub const PYINIT_IN_CONTAINER: &str = "/pyinit";

/// One OCI bundle, built per test.
#[derive(Debug, Clone)]
pub struct Bundle {
    pyinit: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: String,
    cpu: Option<(i64, i64)>,
    memory_limit: Option<i64>,
    host_folders: bool,
    binds: Vec<(PathBuf, PathBuf)>,
    volumes: Vec<Volume>,
    keep: bool,
}

/// A host folder mounted into the container as a pod's volume.
#[derive(Debug, Clone)]
pub struct Volume {
    pub host_dir: PathBuf,
    pub container_path: PathBuf,
    pub writable: bool,
}

impl Default for Bundle {
    fn default() -> Self {
        Self::new()
    }
}

impl Bundle {
    /// A bundle whose entrypoint is the debug pyinit under test (it runs because the host's /lib
    /// and /usr are mounted), with the host's system folders, the venv, examples/ and
    /// tests/fixtures/ mounted read-only.
    pub fn new() -> Self {
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            e2e_venv().join("bin").display()
        );
        Bundle {
            pyinit: PathBuf::from(env!("CARGO_BIN_EXE_pyinit")),
            args: Vec::new(),
            env: vec![
                ("PATH".into(), path),
                ("HOME".into(), "/root".into()),
                // Containers start as root; once pyinit refuses root by default, the tests that
                // do not ask for `--user` still run.
                ("PYINIT_ALLOW_ROOT".into(), "true".into()),
                // Containers share the host's network: each health server takes a free port, so
                // that containers of parallel tests do not fight over the default one.
                ("PYINIT_HEALTH_ADDR".into(), "127.0.0.1:0".into()),
                // examples/ and the venv are read-only: do not even try to write bytecode.
                ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
            ],
            cwd: "/".into(),
            cpu: None,
            memory_limit: None,
            host_folders: true,
            binds: vec![
                (e2e_venv(), e2e_venv()),
                (repo().join("examples"), repo().join("examples")),
                (repo().join("tests/fixtures"), repo().join("tests/fixtures")),
            ],
            volumes: Vec::new(),
            keep: false,
        }
    }

    /// Uses the static musl binary as the entrypoint instead of the debug one.
    pub fn pyinit_binary(mut self, binary: PathBuf) -> Self {
        self.pyinit = binary;
        self
    }

    /// A rootfs with nothing of the host's in it: no system folders, no venv, no examples; only
    /// pyinit and the kernel's file systems (/proc, /dev, /sys, a tmpfs /tmp).
    pub fn bare_rootfs(mut self) -> Self {
        self.host_folders = false;
        self.binds.clear();
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Appends `--` and the app's argv (paths as the host names them: the container sees them
    /// at the same place).
    pub fn app<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.push("--".into());
        for arg in argv {
            let arg = arg.into().into_string().expect("argv is UTF-8");
            self.args.push(arg);
        }
        self
    }

    /// Sets a variable of the container's process (replacing a default of the same name).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(existing, _)| *existing != key);
        self.env.push((key, value.into()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.retain(|(existing, _)| existing != key);
        self
    }

    /// Mounts `host_dir` at `container_path`, writable: an emptyDir volume, which outlives a
    /// restart of the container, and which the test can look into from the host.
    pub fn volume(self, host_dir: impl AsRef<Path>, container_path: &str) -> Self {
        self.with_volume(host_dir.as_ref(), container_path, true)
    }

    /// Mounts `host_dir` at `container_path`, read-only.
    pub fn read_only_volume(self, host_dir: impl AsRef<Path>, container_path: &str) -> Self {
        self.with_volume(host_dir.as_ref(), container_path, false)
    }

    fn with_volume(mut self, host_dir: &Path, container_path: &str, writable: bool) -> Self {
        self.volumes.push(Volume {
            host_dir: host_dir.to_path_buf(),
            container_path: PathBuf::from(container_path),
            writable,
        });
        self
    }

    /// The working directory of pyinit (and so of the app).
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = dir.as_ref().display().to_string();
        self
    }

    /// A CPU limit: `quota_us` of CPU time in every `period_us` (150000/100000 is 1.5 CPUs).
    pub fn cpu_limit(mut self, quota_us: i64, period_us: i64) -> Self {
        self.cpu = Some((quota_us, period_us));
        self
    }

    /// A memory limit in bytes, with no swap beyond it.
    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// The example gunicorn app (examples/gunicorn, two sync workers) as the app, on
    /// 127.0.0.1:`port`.
    pub fn gunicorn_example(self, port: u16) -> Self {
        self.env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("WEB_CONCURRENCY", "2")
            .cwd(example("gunicorn"))
            .app([
                venv_bin("gunicorn").into_os_string(),
                "--config".into(),
                example("gunicorn/gunicorn.conf.py").into_os_string(),
                "app:app".into(),
            ])
    }

    /// The example uvicorn app (examples/uvicorn) as the app, on 127.0.0.1:`port`.
    pub fn uvicorn_example(self, port: u16) -> Self {
        self.uvicorn(port, example("uvicorn"), "app:app")
    }

    /// uvicorn serving `app` from `app_dir` on 127.0.0.1:`port`, as one process
    /// (`WEB_CONCURRENCY=1`, which pyinit keeps).
    pub fn uvicorn(self, port: u16, app_dir: PathBuf, app: &str) -> Self {
        self.env("WEB_CONCURRENCY", "1").app([
            venv_bin("uvicorn").into_os_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string().into(),
            "--app-dir".into(),
            app_dir.into_os_string(),
            app.into(),
        ])
    }

    /// `runc run --keep`: the stopped container and its cgroups stay until the guard's Drop, so a
    /// test can look at the cgroup after pyinit exited.
    pub fn keep_after_exit(mut self) -> Self {
        self.keep = true;
        self
    }

    /// Writes the bundle and starts `runc run` in the foreground; returns once runc has created
    /// the container (or the container has already come and gone).
    pub fn start(&self) -> Container {
        let id = unique_container_id();
        let bundle_dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(bundle_dir.join("rootfs")).expect("create the bundle's rootfs");
        // The guard exists before runc does, so a failure below still cleans up.
        let mut guard = Cleanup {
            id: id.clone(),
            bundle_dir: bundle_dir.clone(),
            runc: None,
        };
        std::fs::write(bundle_dir.join("config.json"), config::config_json(self))
            .expect("write config.json");
        let mut command = Command::new("runc");
        command.arg("run").arg("--bundle").arg(&bundle_dir);
        if self.keep {
            command.arg("--keep");
        }
        command
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start runc (is it installed?)");
        let stdout = Lines::collect(child.stdout.take().expect("runc stdout"));
        let stderr = Lines::collect(child.stderr.take().expect("runc stderr"));
        guard.runc = Some(child);

        let mut init_pid = None;
        poll_until(PATIENCE, &format!("runc to create container {id}"), || {
            init_pid = runc_init_pid(&id).filter(|pid| *pid > 0);
            init_pid.is_some() || guard.runc_exited()
        });
        let cgroup_dirs = init_pid.map(own_cgroup_dirs).unwrap_or_default();
        Container {
            cleanup: guard,
            init_pid,
            cgroup_dirs,
            stdout,
            stderr,
        }
    }
}

/// Unique per process and per call: tests of several `cargo test` runs and of other worktrees
/// share one runc state folder.
fn unique_container_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!(
        "pyinit-e2e-{}-{}-{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// The container's PID 1 as the host numbers it, from `runc state ID` (0 once stopped).
fn runc_init_pid(id: &str) -> Option<u32> {
    let output = Command::new("runc")
        .args(["state", id])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    json_field(&text, "pid")?.parse().ok()
}

/// The raw value of a top-level scalar field in runc's pretty-printed JSON (`"pid": 123,`).
fn json_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":");
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix(&key)?;
        Some(value.trim().trim_end_matches(',').trim())
    })
}

/// The cgroup folders that hold `pid` and not the test itself: the container's own, in every
/// hierarchy (cgroup v1: one per controller; v2: the unified one).
fn own_cgroup_dirs(pid: u32) -> Vec<PathBuf> {
    let theirs = read_cgroup_paths(&format!("/proc/{pid}/cgroup"));
    let ours = read_cgroup_paths("/proc/self/cgroup");
    let mut dirs = Vec::new();
    for (hierarchy, path) in theirs {
        if ours.contains(&(hierarchy.clone(), path.clone())) {
            continue;
        }
        let relative = path.trim_start_matches('/');
        let candidates = if hierarchy.is_empty() {
            vec![
                Path::new("/sys/fs/cgroup/unified").join(relative),
                Path::new("/sys/fs/cgroup").join(relative),
            ]
        } else {
            let mount_name = hierarchy.trim_start_matches("name=");
            vec![Path::new("/sys/fs/cgroup").join(mount_name).join(relative)]
        };
        if let Some(dir) = candidates
            .into_iter()
            .find(|dir| dir.join("cgroup.procs").exists())
        {
            dirs.push(dir);
        }
    }
    dirs
}

/// (controllers, path) for each line of a /proc/PID/cgroup file.
fn read_cgroup_paths(file: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _hierarchy_id = fields.next()?;
            let controllers = fields.next()?.to_owned();
            let path = fields.next()?.to_owned();
            Some((controllers, path))
        })
        .collect()
}

/// Deletes the container and the bundle, whatever happened to the test.
#[derive(Debug)]
struct Cleanup {
    id: String,
    bundle_dir: PathBuf,
    runc: Option<Child>,
}

impl Cleanup {
    fn runc_exited(&mut self) -> bool {
        self.runc
            .as_mut()
            .is_none_or(|child| child.try_wait().ok().flatten().is_some())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.runc.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.bundle_dir);
    }
}

/// A container started by `runc run`; dropping it deletes the container and its bundle.
#[derive(Debug)]
pub struct Container {
    cleanup: Cleanup,
    init_pid: Option<u32>,
    cgroup_dirs: Vec<PathBuf>,
    /// The container's stdout: the app's.
    pub stdout: Lines,
    /// The container's stderr: pyinit's log and the app's stderr (and runc's own errors).
    pub stderr: Lines,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.cleanup.id
    }

    /// `runc kill ID SIGNAL`, as the kubelet's runtime stops a container.
    pub fn kill(&self, signal: &str) {
        let output = Command::new("runc")
            .args(["kill", self.id(), signal])
            .output()
            .expect("run runc kill");
        assert!(
            output.status.success(),
            "runc kill {} {signal} failed: {}\ncontainer stderr:\n{}",
            self.id(),
            String::from_utf8_lossy(&output.stderr).trim(),
            self.stderr.joined()
        );
    }

    /// `runc update ARGS ID`: changes the running container's limits in place, as the kubelet's
    /// runtime does for an in-place resize (`--cpu-quota Q --cpu-period P`, `--memory B
    /// --memory-swap B`).
    pub fn update(&self, args: &[&str]) {
        let output = Command::new("runc")
            .arg("update")
            .args(args)
            .arg(self.id())
            .output()
            .expect("run runc update");
        assert!(
            output.status.success(),
            "runc update {args:?} {} failed: {}\ncontainer stderr:\n{}",
            self.id(),
            String::from_utf8_lossy(&output.stderr).trim(),
            self.stderr.joined()
        );
    }

    /// The host pid of the container's PID 1 (pyinit), as runc reported it at start.
    pub fn init_pid(&self) -> u32 {
        self.init_pid
            .expect("the container exited before runc reported its pid")
    }

    /// Waits for `runc run` to return and gives the container's exit code: PID 1's, with
    /// 128+N when PID 1 died of signal N. Every line the container wrote is in afterwards.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        let status = loop {
            let child = self.cleanup.runc.as_mut().expect("runc child");
            if let Some(status) = child.try_wait().expect("try_wait on runc") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "container {} did not exit within {timeout:?}\nstderr:\n{}",
                self.id(),
                self.stderr.joined()
            );
            thread::sleep(Duration::from_millis(10));
        };
        self.stdout.wait_closed(Duration::from_secs(5));
        self.stderr.wait_closed(Duration::from_secs(5));
        status.code().unwrap_or_else(|| {
            panic!(
                "runc itself died: {status:?}\nstderr:\n{}",
                self.stderr.joined()
            )
        })
    }

    /// Zombies whose parent is the container's PID 1: orphans pyinit has not reaped (yet).
    pub fn zombies(&self) -> Vec<u32> {
        children_of(self.init_pid())
            .into_iter()
            .filter(|pid| process_state(*pid) == Some('Z'))
            .collect()
    }

    /// Every process in the container's cgroups, from their `cgroup.procs` files (host pids).
    /// Exited processes leave the cgroup at once, so zombies are not among them.
    pub fn cgroup_procs(&self) -> Vec<u32> {
        assert!(
            !self.cgroup_dirs.is_empty(),
            "no cgroup of container {} was found",
            self.id()
        );
        let mut pids: Vec<u32> = self
            .cgroup_dirs
            .iter()
            .flat_map(|dir| {
                // A cgroup that is gone proves nothing: after the exit only `keep_after_exit`
                // keeps it for a look.
                std::fs::read_to_string(dir.join("cgroup.procs"))
                    .unwrap_or_else(|error| panic!("read {}: {error}", dir.display()))
                    .lines()
                    .filter_map(|line| line.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// A file of the container's own cgroup in the hierarchy whose folder is named
    /// `hierarchy` (cgroup v1: "memory", "cpu"; v2: "unified" or the root), if it exists.
    pub fn cgroup_file(&self, hierarchy: &str, file: &str) -> Option<String> {
        let prefix = Path::new("/sys/fs/cgroup").join(hierarchy);
        self.cgroup_dirs
            .iter()
            .filter(|dir| dir.starts_with(&prefix))
            .find_map(|dir| std::fs::read_to_string(dir.join(file)).ok())
            .map(|text| text.trim().to_owned())
    }
}
