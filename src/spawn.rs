//! Starting processes: the app, and later exec probes.
//!
//! Every child starts in a process group of its own, with an empty signal mask and every signal
//! at its default disposition (including any that pyinit's own parent ignored), and with the
//! environment built on its `Command`, never by changing pyinit's own. If stdin is pyinit's
//! controlling terminal, the app's group takes the terminal foreground, so Ctrl-C and job control
//! reach it as they would without pyinit. A child starts in pyinit's working directory unless its
//! spec names one: exec probes name the app's, since pyinit moves to `/` once the app runs (see
//! `main`). Exec failures come back synchronously through std's CLOEXEC pipe and map to 126/127
//! before the child ever runs. The caller registers the returned pid with the reaper before its
//! next `.await`; this module never waits for a child.
//!
//! The app inherits pyinit's stdin, stdout and stderr; under `pyinit drill` its stderr is a pipe
//! instead, which the drill passes through to pyinit's own stderr while it reads it. An exec
//! probe gets stdin from /dev/null and one pipe for both stdout and stderr, so its output keeps
//! the order it was written in. The read end of a pipe comes back with the pid, and pyinit's
//! copy of the write end is closed before `spawn_child` returns, so the reader sees the end once
//! the child's side (and that of every process that inherited it) is closed.
//!
//! This file is one of the syscall owners that may hold `unsafe`: the `pre_exec` call and the
//! raw rt_sigaction its closure makes.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::{getpid, tcgetpgrp, tcsetpgrp};
use tokio::net::unix::pipe;

use crate::exit;

/// What to start: argv, extra environment, working directory, and where its standard streams go.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub argv: Vec<OsString>,
    /// Variables set on top of pyinit's own environment.
    pub env: Vec<(OsString, OsString)>,
    /// Where the child starts; `None` keeps pyinit's own (the app's, at its spawn). Exec probes
    /// start where the app did, since pyinit itself leaves for `/` once the app runs.
    pub working_dir: Option<PathBuf>,
    pub stdio: ChildStdio,
    /// Hand the terminal foreground to the child's group if stdin is pyinit's terminal.
    pub take_terminal: bool,
}

/// Where a child's standard streams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStdio {
    /// pyinit's own stdin, stdout and stderr: the app's output is the container's.
    Inherit,
    /// stdin from /dev/null; stdout and stderr into one pipe, whose read end
    /// [`SpawnedChild::output`] holds. Needs the tokio runtime (the read end is registered with
    /// it).
    Pipe,
    /// pyinit's own stdin and stdout; stderr into a pipe, whose read end
    /// [`SpawnedChild::output`] holds, for a reader that passes it on. Needs the tokio runtime.
    StderrPipe,
}

/// A child just started.
#[derive(Debug)]
pub struct SpawnedChild {
    /// Its pid, which is also its process group id.
    pub pid: i32,
    /// The read end of its output pipe: stdout and stderr with [`ChildStdio::Pipe`], stderr
    /// with [`ChildStdio::StderrPipe`].
    pub output: Option<pipe::Receiver>,
}

/// Why a child could not be started; the exit code follows the shells' convention.
#[derive(Debug)]
pub enum SpawnError {
    EmptyCommand,
    NotFound {
        program: OsString,
        source: io::Error,
    },
    NotExecutable {
        program: OsString,
        source: io::Error,
    },
    /// The pipe for the child's output could not be made (out of file descriptors).
    OutputPipe(io::Error),
    /// The working directory is gone or cannot be entered (it is checked before the spawn, so
    /// that this is not reported as a missing command).
    WorkingDirectory {
        dir: PathBuf,
        source: io::Error,
    },
}

impl SpawnError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::EmptyCommand => exit::USAGE,
            SpawnError::NotFound { .. } => exit::NOT_FOUND,
            SpawnError::NotExecutable { .. } | SpawnError::WorkingDirectory { .. } => {
                exit::NOT_EXECUTABLE
            }
            SpawnError::OutputPipe(_) => exit::SETUP_FAILED,
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::EmptyCommand => write!(f, "no command given to run"),
            SpawnError::NotFound { program, source } => {
                write!(
                    f,
                    "command not found: {}: {source}",
                    program.to_string_lossy()
                )
            }
            SpawnError::NotExecutable { program, source } => {
                write!(f, "cannot execute {}: {source}", program.to_string_lossy())
            }
            SpawnError::OutputPipe(source) => {
                write!(f, "cannot make a pipe for the command's output: {source}")
            }
            SpawnError::WorkingDirectory { dir, source } => {
                write!(f, "cannot start in {}: {source}", dir.display())
            }
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::EmptyCommand => None,
            SpawnError::NotFound { source, .. }
            | SpawnError::NotExecutable { source, .. }
            | SpawnError::OutputPipe(source)
            | SpawnError::WorkingDirectory { source, .. } => Some(source),
        }
    }
}

/// The kernel's `struct sigaction` with every field zero: SIG_DFL, no flags, an empty mask.
/// x86_64 orders it handler, flags, restorer, mask; architectures without a restorer read the
/// third word as the mask, which is zero as well.
#[repr(C)]
struct DefaultDisposition {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

static DEFAULT_DISPOSITION: DefaultDisposition = DefaultDisposition {
    handler: 0,
    flags: 0,
    restorer: 0,
    mask: 0,
};

/// Puts every signal back to its default action in the child before exec.
///
/// Caught signals go back to default at exec by themselves, but ignored ones stay ignored, so a
/// disposition that pyinit's own parent ignored (`nohup`, or a runtime that ignores its
/// real-time signals) would leak into the app. The raw syscall is used because the C library
/// refuses to touch the real-time signals it reserves (32 and 33) while the kernel accepts them.
#[allow(
    unsafe_code,
    reason = "rt_sigaction is called raw between fork and exec, see SAFETY"
)]
fn reset_signal_dispositions() {
    for signal_number in 1..=64 {
        if signal_number == nix::libc::SIGKILL || signal_number == nix::libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction(2) with a pointer to a static, fully initialised struct that the
        // kernel only reads, a null old-action pointer, and the kernel's sigset size (8 bytes on
        // Linux); a raw syscall is async-signal-safe and allocates nothing, so it may run
        // between fork and exec. An error (EINVAL for a number the kernel lacks) changes nothing.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_rt_sigaction,
                signal_number,
                &raw const DEFAULT_DISPOSITION,
                std::ptr::null::<DefaultDisposition>(),
                8usize,
            );
        }
    }
}

/// Starts `spec`: its pid, which is also its process group id, and its output pipe if it has one.
pub fn spawn_child(spec: &SpawnSpec) -> Result<SpawnedChild, SpawnError> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(SpawnError::EmptyCommand);
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(spec.env.iter().map(|(key, value)| (key, value)));
    command.process_group(0);
    if let Some(dir) = &spec.working_dir {
        check_working_dir(dir)?;
        command.current_dir(dir);
    }
    let output = connect_output(&mut command, spec.stdio)?;
    let terminal = std::io::stdin();
    // tcgetpgrp succeeds only when stdin is pyinit's controlling terminal.
    let take_terminal = spec.take_terminal && tcgetpgrp(terminal.as_fd()).is_ok();
    let mut sigttou_only = SigSet::empty();
    sigttou_only.add(Signal::SIGTTOU);
    let empty_mask = SigSet::empty();
    let before_exec = move || -> io::Result<()> {
        reset_signal_dispositions();
        if take_terminal {
            // A background group that calls tcsetpgrp gets SIGTTOU unless it blocks it.
            sigprocmask(SigmaskHow::SIG_BLOCK, Some(&sigttou_only), None)?;
            // Without a terminal the app still runs; job control is then simply not offered.
            let _ = tcsetpgrp(terminal.as_fd(), getpid());
        }
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&empty_mask), None)?;
        Ok(())
    };
    #[allow(
        unsafe_code,
        reason = "pre_exec is the one place that runs code between fork and exec"
    )]
    // SAFETY: `pre_exec` requires the closure to be async-signal-safe, since it runs in the
    // forked child of a possibly multi-threaded process. It allocates nothing: both signal sets
    // are built above, before the fork, and moved in by value; `terminal` is std's stdin handle,
    // whose `as_fd` only wraps fd 0. It calls only raw rt_sigaction, sigprocmask
    // (pthread_sigmask), getpid and tcsetpgrp (ioctl TIOCSPGRP), all async-signal-safe, and
    // turns their errors into `io::Error::from(Errno)`, a plain integer that needs no allocation.
    unsafe {
        command.pre_exec(before_exec);
    }
    let spawned = command.spawn();
    // The command holds pyinit's copies of the pipe's write end: closed here, the reader sees the
    // end of the output as soon as the child's own copies are closed.
    drop(command);
    let pid = spawned
        .and_then(|child| {
            i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))
        })
        .map_err(|source| exec_error(program, source))?;
    Ok(SpawnedChild { pid, output })
}

/// A working directory that is missing or not a directory fails the spawn before the fork,
/// with its own message.
fn check_working_dir(dir: &Path) -> Result<(), SpawnError> {
    let entered = std::fs::metadata(dir).and_then(|metadata| {
        if metadata.is_dir() {
            Ok(())
        } else {
            Err(io::Error::from(io::ErrorKind::NotADirectory))
        }
    });
    entered.map_err(|source| SpawnError::WorkingDirectory {
        dir: dir.to_path_buf(),
        source,
    })
}

/// Gives the child the output `stdio` asks for; the read end of its pipe, if it has one.
fn connect_output(
    command: &mut Command,
    stdio: ChildStdio,
) -> Result<Option<pipe::Receiver>, SpawnError> {
    match stdio {
        ChildStdio::Inherit => Ok(None),
        ChildStdio::Pipe => {
            // Both ends are close-on-exec: only the child's dup2'ed stdout and stderr stay open
            // across its exec, and no other child inherits either end.
            let (sender, receiver) = pipe::pipe().map_err(SpawnError::OutputPipe)?;
            let stdout = sender.into_blocking_fd().map_err(SpawnError::OutputPipe)?;
            let stderr = stdout.try_clone().map_err(SpawnError::OutputPipe)?;
            command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
            Ok(Some(receiver))
        }
        ChildStdio::StderrPipe => {
            let (sender, receiver) = pipe::pipe().map_err(SpawnError::OutputPipe)?;
            let stderr = sender.into_blocking_fd().map_err(SpawnError::OutputPipe)?;
            command.stderr(stderr);
            Ok(Some(receiver))
        }
    }
}

/// A failed exec as the shell reports it: 127 for a program not found, 126 otherwise.
fn exec_error(program: &OsString, source: io::Error) -> SpawnError {
    if source.kind() == io::ErrorKind::NotFound {
        SpawnError::NotFound {
            program: program.clone(),
            source,
        }
    } else {
        SpawnError::NotExecutable {
            program: program.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_working_directory_is_named_and_nothing_starts() {
        let spec = SpawnSpec {
            argv: vec!["/bin/true".into()],
            env: Vec::new(),
            working_dir: Some("/nonexistent/pyinit-workdir".into()),
            stdio: ChildStdio::Inherit,
            take_terminal: false,
        };
        let failure = spawn_child(&spec).unwrap_err();
        assert!(
            matches!(failure, SpawnError::WorkingDirectory { .. }),
            "{failure:?}"
        );
        assert!(
            failure
                .to_string()
                .starts_with("cannot start in /nonexistent/pyinit-workdir: "),
            "{failure}"
        );
        assert_eq!(failure.exit_code(), exit::NOT_EXECUTABLE);
    }
}
