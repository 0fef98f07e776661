//! Shared helpers for the integration tests: the `Pyinit` command builder, a `Running` guard that
//! kills the whole tree on drop, line waiting on the app's stdout and pyinit's stderr, and
//! `poll_until` for every other condition. Nothing here sleeps in the hope that something happened.

pub mod runc;

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod http;

/// The pyinit binary under test.
pub fn pyinit_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pyinit")
}

/// The variables pyinit sets for the app, in the order `print_env.py` prints them.
pub const APP_VARIABLES: [&str; 6] = [
    "WEB_CONCURRENCY",
    "PYTHON_CPU_COUNT",
    "PYINIT_CPU_LIMIT",
    "PYINIT_MEMORY_LIMIT_BYTES",
    "PYTHONUNBUFFERED",
    "PYTHONFAULTHANDLER",
];

/// The Python that every fixture runs under: Debian's, which containers can see too.
pub const PYTHON: &str = "/usr/bin/python3";

/// A file in tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fixture run by Debian's Python, as argv.
pub fn python_fixture(name: &str, args: &[&str]) -> Vec<OsString> {
    let mut argv = vec![OsString::from(PYTHON), fixture(name).into_os_string()];
    argv.extend(args.iter().map(OsString::from));
    argv
}

/// Polls `condition` until it is true or `timeout` passes; the message says what was awaited.
pub fn poll_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A generous default wait: long enough for a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Builds one pyinit invocation.
#[derive(Debug, Clone)]
pub struct Pyinit {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    as_pid1: bool,
    /// `cgroup.procs` files pyinit's process joins before it execs pyinit.
    cgroup_procs: Vec<PathBuf>,
    /// Sets `PYINIT_ALLOW_ROOT=true`: the tests run as root and most are not about the drop.
    allow_root: bool,
    /// Files bind-mounted over others (such as a test /etc/group) in a private mount namespace.
    bind_files: Vec<(OsString, OsString)>,
    /// Starts pyinit with only `env` and a standard PATH, nothing of the test's environment.
    clear_env: bool,
    /// Runs pyinit in a network namespace of its own, where any port is free.
    private_network: bool,
    /// (uid, gid) pyinit starts as, the way a pod's securityContext starts it.
    pod_user: Option<(u32, u32)>,
    /// A program that execs pyinit (its argv is appended), run as the last step before pyinit.
    wrapper: Vec<OsString>,
    /// Closes the reading end of pyinit's stderr as soon as it starts.
    close_stderr: bool,
    /// The directory pyinit is started in (the test's own by default).
    current_dir: Option<PathBuf>,
}

/// The PATH of a pyinit started with a cleared environment, as container images set it.
pub const STANDARD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Pyinit {
    pub fn new() -> Self {
        Pyinit {
            args: Vec::new(),
            // Tests run side by side: each pyinit's health server takes a free loopback port
            // (its log line says which) unless a test passes --health-addr itself.
            env: vec![("PYINIT_HEALTH_ADDR".into(), "127.0.0.1:0".into())],
            // Tests set the Kubernetes default pre-stop delay explicitly when they want it.
            env_remove: vec!["KUBERNETES_SERVICE_HOST".into()],
            as_pid1: false,
            cgroup_procs: Vec::new(),
            allow_root: true,
            bind_files: Vec::new(),
            clear_env: false,
            private_network: false,
            pod_user: None,
            wrapper: Vec::new(),
            close_stderr: false,
            current_dir: None,
        }
    }

    /// Starts pyinit in `dir`, as a container runtime starts PID 1 in the image's WORKDIR.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Starts pyinit through `argv`, a program that execs the argv appended to it (so pyinit
    /// keeps its pid, PID 1 included), such as a fixture that installs a seccomp filter first.
    pub fn wrapped_by(mut self, argv: Vec<OsString>) -> Self {
        self.wrapper = argv;
        self
    }

    /// Gives pyinit a stderr pipe whose reader is gone as soon as it starts, as when the process
    /// that collected its log died: every later write of pyinit's to stderr fails with EPIPE and
    /// makes the kernel raise SIGPIPE in pyinit. `stderr` then holds no lines.
    pub fn stderr_closed(mut self) -> Self {
        self.close_stderr = true;
        self
    }

    /// pyinit starts with the variables given by `.env` and a standard PATH alone: none of the
    /// test's own and none of the builder's defaults (`PYINIT_HEALTH_ADDR`, `PYINIT_ALLOW_ROOT`),
    /// as in a container whose environment is exactly what its image and manifest say.
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self.allow_root = false;
        self.env.clear();
        self
    }

    /// Runs pyinit in a network namespace of its own (with only a loopback device, down), so it
    /// can bind the fixed port of a user's file, such as 0.0.0.0:8558, beside parallel tests.
    pub fn private_network(mut self) -> Self {
        self.private_network = true;
        self
    }

    /// Starts pyinit as a pod's securityContext does with runAsUser `uid`, runAsGroup `gid`,
    /// allowPrivilegeEscalation false and every capability dropped: with those ids, no
    /// supplementary groups, no capabilities and no_new_privs set (by setpriv, after any bind
    /// mount, which needs root).
    pub fn started_by_pod_as(mut self, uid: u32, gid: u32) -> Self {
        self.pod_user = Some((uid, gid));
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Appends `--` and the app's argv.
    pub fn app(self, argv: Vec<OsString>) -> Self {
        self.arg("--").args(argv)
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Removes a variable from pyinit's environment.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// Starts pyinit inside these cgroups: a shell writes its own pid into each `cgroup.procs`
    /// file and then execs pyinit, so pyinit reads its limits from its very first instruction.
    pub fn in_cgroups(mut self, procs_files: Vec<PathBuf>) -> Self {
        self.cgroup_procs = procs_files;
        self
    }

    /// Runs pyinit as PID 1 of a fresh PID namespace.
    #[allow(
        clippy::wrong_self_convention,
        reason = "a builder step, named as the tests read it"
    )]
    pub fn as_pid1(mut self) -> Self {
        self.as_pid1 = true;
        self
    }

    /// Leaves `PYINIT_ALLOW_ROOT` unset, so pyinit applies its refusal to run as root.
    pub fn without_allow_root(mut self) -> Self {
        self.allow_root = false;
        self
    }

    /// Bind-mounts `source` over `target` (a file) for pyinit alone, in a private mount
    /// namespace: a test /etc/passwd or /etc/group without touching the machine's.
    pub fn bind_file(mut self, source: impl Into<OsString>, target: impl Into<OsString>) -> Self {
        self.bind_files.push((source.into(), target.into()));
        self
    }

    fn command(&self) -> Command {
        let mut argv: Vec<OsString> = Vec::new();
        if self.as_pid1 {
            // --mount-proc gives pyinit a mount namespace of its own, where bind mounts stay.
            argv.extend(
                ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"].map(OsString::from),
            );
        } else if !self.bind_files.is_empty() {
            argv.extend(["unshare", "--mount", "--propagation", "private"].map(OsString::from));
        } else if self.private_network {
            argv.push("unshare".into());
        }
        if self.private_network {
            argv.push("--net".into());
        }
        // Each wrapper shell does its part, then execs the next with the same pid, so that
        // `start` finds pyinit where it expects it.
        if !self.cgroup_procs.is_empty() {
            let mut script = String::new();
            for procs in &self.cgroup_procs {
                script.push_str(&format!("echo $$ > '{}' && ", procs.display()));
            }
            script.push_str("exec \"$0\" \"$@\"");
            argv.extend(["/bin/sh".into(), "-c".into(), script.into()]);
        }
        if !self.bind_files.is_empty() {
            let script = r#"while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 125; shift 2; done; shift; exec "$@""#;
            argv.extend(["/bin/sh", "-c", script, "sh"].map(OsString::from));
            for (source, target) in &self.bind_files {
                argv.push(source.clone());
                argv.push(target.clone());
            }
            argv.push("--".into());
        }
        if let Some((uid, gid)) = self.pod_user {
            argv.extend(["setpriv".into(), format!("--reuid={uid}").into()]);
            argv.extend([format!("--regid={gid}").into(), "--clear-groups".into()]);
            argv.extend(
                ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"].map(Into::into),
            );
        }
        argv.extend(self.wrapper.iter().cloned());
        argv.push(pyinit_bin().into());
        let (program, prefix_args) = argv.split_first().expect("argv has pyinit");
        let mut command = Command::new(program);
        command.args(prefix_args).args(&self.args);
        if self.clear_env {
            command.env_clear().env("PATH", STANDARD_PATH);
        }
        for key in &self.env_remove {
            command.env_remove(key);
        }
        if self.allow_root {
            command.env("PYINIT_ALLOW_ROOT", "true");
        } else {
            command.env_remove("PYINIT_ALLOW_ROOT");
        }
        command.envs(self.env.iter().map(|(key, value)| (key, value)));
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Starts pyinit and returns the guard.
    pub fn start(&self) -> Running {
        let mut child = self.command().spawn().expect("start pyinit");
        let stdout = Lines::collect(child.stdout.take().expect("stdout"));
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = if self.close_stderr {
            drop(stderr_pipe);
            Lines::collect(std::io::empty())
        } else {
            Lines::collect(stderr_pipe)
        };
        let outer_pid = child.id();
        let pyinit_pid = if self.as_pid1 {
            let mut found = None;
            poll_until(PATIENCE, "unshare to fork pyinit", || {
                found = children_of(outer_pid).into_iter().next();
                // A short-lived pyinit may be gone before it is seen: then only its exit matters.
                found.is_some() || process_state(outer_pid).is_none_or(|state| state == 'Z')
            });
            found.unwrap_or(outer_pid)
        } else {
            outer_pid
        };
        Running {
            child,
            pyinit_pid,
            stdout,
            stderr,
        }
    }

    /// Runs pyinit to completion (it must end within `PATIENCE`).
    pub fn run(&self) -> Finished {
        let mut running = self.start();
        let status = running.wait_exit(PATIENCE);
        running.stdout.wait_closed(Duration::from_secs(5));
        running.stderr.wait_closed(Duration::from_secs(5));
        Finished {
            status,
            stdout: running.stdout.all(),
            stderr: running.stderr.all(),
        }
    }
}

/// Lines read from a pipe by a background thread.
#[derive(Debug, Clone)]
pub struct Lines {
    seen: Arc<Mutex<Vec<String>>>,
    arrivals: Arc<Mutex<Receiver<String>>>,
    closed: Arc<AtomicBool>,
}

impl Lines {
    /// Collects the lines of any pipe, such as a wrapper's stdout.
    pub fn from_pipe(pipe: impl std::io::Read + Send + 'static) -> Lines {
        Lines::collect(pipe)
    }

    fn collect(pipe: impl std::io::Read + Send + 'static) -> Lines {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (line_tx, line_rx) = mpsc::channel();
        let seen_by_reader = Arc::clone(&seen);
        let closed = Arc::new(AtomicBool::new(false));
        let closed_by_reader = Arc::clone(&closed);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                seen_by_reader.lock().unwrap().push(line.clone());
                let _ = line_tx.send(line);
            }
            closed_by_reader.store(true, Ordering::SeqCst);
        });
        Lines {
            seen,
            arrivals: Arc::new(Mutex::new(line_rx)),
            closed,
        }
    }

    /// Waits until the writer side closed (every line is in), or `timeout` passes: a process
    /// left behind may hold the pipe open, which the test then sees in its own assertions.
    pub fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.closed.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    pub fn joined(&self) -> String {
        self.all().join("\n")
    }

    /// Waits for a line that contains `needle` (among lines seen so far or still to come).
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line(&format!("a line containing {needle:?}"), timeout, |line| {
            line.contains(needle)
        })
    }

    /// Waits for a line that `matches`; `what` names it in the failure.
    pub fn wait_for_line(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        if let Some(line) = self.all().into_iter().find(|line| matches(line)) {
            return line;
        }
        let deadline = Instant::now() + timeout;
        let arrivals = self.arrivals.lock().unwrap();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match arrivals.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    if let Some(line) = self.all().into_iter().find(|line| matches(line)) {
                        return line;
                    }
                    panic!("no {what} within {timeout:?}; lines:\n{}", self.joined());
                }
            }
        }
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.all().iter().any(|line| line.contains(needle))
    }
}

/// A pyinit that ran to its end.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn assert_exit_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(expected),
            "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout.join("\n"),
            self.stderr.join("\n")
        );
        self
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.join("\n")
    }
}

/// A running pyinit; dropping it SIGKILLs pyinit and everything below it.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// pyinit's pid as the test sees it (the host pid under `unshare`).
    pub pyinit_pid: u32,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Running {
    /// Sends `signal` (a name such as "TERM") to pyinit.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pyinit_pid, signal);
    }

    /// Waits for the app's `ready pid=N` line and returns N (as pyinit's namespace numbers it).
    pub fn wait_ready(&self) -> u32 {
        // The app's own line, not a child's `grandchild ready pid=N`: a signal sent before the
        // app itself is ready would find it without its handlers.
        let line = (self.stdout).wait_for_line("the app's ready line", PATIENCE, |line| {
            line.starts_with("ready pid=")
        });
        line.rsplit("pid=")
            .next()
            .and_then(|pid| pid.trim().parse().ok())
            .expect("pid in ready line")
    }

    /// Waits for pyinit (or the unshare around it) to exit; then every line it wrote is in.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "pyinit did not exit within {timeout:?}\nstderr:\n{}",
                self.stderr.joined()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Live descendants of pyinit (host pids), zombies included.
    pub fn descendants(&self) -> Vec<u32> {
        descendants_of(self.pyinit_pid)
    }

    /// Zombie descendants of pyinit.
    pub fn zombies(&self) -> Vec<u32> {
        self.descendants()
            .into_iter()
            .chain(std::iter::once(self.pyinit_pid))
            .filter(|pid| process_state(*pid) == Some('Z') && *pid != self.pyinit_pid)
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for pid in descendants_of(self.pyinit_pid) {
            send_signal(pid, "KILL");
        }
        send_signal(self.pyinit_pid, "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIGNAL PID`, ignoring a process that is already gone.
///
/// A direct kill(2), not the `kill` command: timing tests measure from the moment the signal is
/// sent, and a process spawn on a loaded machine takes tens of milliseconds.
pub fn send_signal(pid: u32, signal: &str) {
    let signal: nix::sys::signal::Signal = format!("SIG{signal}")
        .parse()
        .unwrap_or_else(|_| panic!("no signal named {signal}"));
    let Ok(pid) = i32::try_from(pid) else { return };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

/// The parent pid and state of a process, from /proc.
fn stat_of(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

pub fn process_state(pid: u32) -> Option<char> {
    stat_of(pid).map(|(_, state)| state)
}

/// Direct children of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
            && stat_of(pid).map(|(ppid, _)| ppid) == Some(parent)
        {
            children.push(pid);
        }
    }
    children
}

/// Every descendant of `root`.
pub fn descendants_of(root: u32) -> Vec<u32> {
    let mut found = HashSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for child in children_of(parent) {
            if found.insert(child) {
                frontier.push(child);
            }
        }
    }
    found.into_iter().collect()
}
