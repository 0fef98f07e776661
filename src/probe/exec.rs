//! The exec probe: runs a command without a shell, as the kubelet's `exec` probe; success is
//! exit 0 within the timeout.
//!
//! The command starts through `spawn` in a process group of its own, with stdin from /dev/null
//! and stdout and stderr in one pipe, and inherits pyinit's credentials, so it runs as the
//! dropped user. Its exit comes from the reaper's registry, never from a wait of its own.
//!
//! Output: the first 10 KiB of stdout and stderr together are kept, as the kubelet keeps them;
//! the rest is read and dropped, so a chatty command never blocks on a full pipe. A failure's
//! message says only how the command ended (`exit code 1`): its output may hold secrets, and the
//! health port shows the message to anyone who asks. The output goes into the failure's detail,
//! for pyinit's log alone, on one line: its lines trimmed and joined by ` | ` (`exit code 1:
//! broker down | retrying`), each run of control characters and blanks (NUL bytes included) one
//! space. A success's output is dropped.
//!
//! Leftovers: when the command exits, or overruns its timeout, its whole process group gets
//! SIGKILL through `signals`, so whatever it left running there (`sh -c 'sleep 100 & exit 0'`)
//! dies with it instead of piling up under pyinit, one more per period; the reaper collects them
//! all, so a probe leaves no zombie. Then only what is already in the pipe is read: the probe
//! never waits for a process that still holds the pipe open. One that left the group (setsid, a
//! daemon's double fork) is not killed: it lives on as any orphan of pyinit, is reaped when it
//! exits and gets the shutdown's signals with everything else. pyinit has closed its end of the
//! pipe by then, so that process's later writes to stdout or stderr fail with EPIPE (SIGPIPE,
//! which ends it unless it handles the signal).

use std::ffi::OsString;
use std::io::Read as _;
use std::path::Path;
use std::pin::pin;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tracing::warn;

use super::ProbeAnswer;
use crate::exit::ChildStatus;
use crate::reaper::Reaper;
use crate::signals;
use crate::spawn::{self, ChildStdio, SpawnSpec};

/// How much of a probe's output is kept, as the kubelet keeps it.
const MAX_OUTPUT: usize = 10 * 1024;

/// Runs `argv` once and waits for its exit, at most `timeout`.
pub async fn probe_exec(
    argv: &[OsString],
    env: &[(OsString, OsString)],
    working_dir: Option<&Path>,
    timeout: Duration,
    reaper: &Reaper,
) -> ProbeAnswer {
    let spec = SpawnSpec {
        argv: argv.to_vec(),
        env: env.to_vec(),
        working_dir: working_dir.map(Path::to_path_buf),
        stdio: ChildStdio::Pipe,
        take_terminal: false,
    };
    let mut child = match spawn::spawn_child(&spec) {
        Ok(child) => child,
        Err(failure) => return ProbeAnswer::failure(failure.to_string()),
    };
    let pid = child.pid;
    // Registered before the next `.await`: on the current-thread runtime the reaper cannot run in
    // between, so this exit is never mistaken for an orphan's.
    let exit_rx = reaper.register(pid);
    let mut output = Output::default();
    let ended = tokio::time::timeout(
        timeout,
        output.read_until_exit(child.output.as_mut(), exit_rx),
    )
    .await;
    // The probe leads its own group (spawn puts it there): on timeout that kills the command too.
    // After its exit, the group's id stays taken while any member lives, so the signal reaches
    // only what the command left behind, or nothing: with no member left the id is free, but
    // the kernel hands out pids in turn, so no new group gets it this soon.
    if let Err(failure) = signals::kill_process_group(pid) {
        warn!(pid, "{failure}");
    }
    if let Some(pipe) = child.output {
        output.read_what_is_left(pipe);
    }
    let answer = match ended {
        Ok(Ok(ChildStatus::Exited(0))) => return ProbeAnswer::success("exit code 0"),
        Ok(Ok(ChildStatus::Exited(code))) => ProbeAnswer::failure(format!("exit code {code}")),
        Ok(Ok(status @ ChildStatus::Signaled(_))) => ProbeAnswer::failure(status.to_string()),
        // The waiter was dropped unanswered: only when the reaper itself is gone, as pyinit exits.
        Ok(Err(_)) => ProbeAnswer::failure("exit status lost"),
        Err(_) => ProbeAnswer::timed_out(timeout),
    };
    output.attach_to(answer)
}

/// What a probe wrote: its first [`MAX_OUTPUT`] bytes.
#[derive(Debug, Default)]
struct Output {
    kept: Vec<u8>,
}

impl Output {
    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_OUTPUT.saturating_sub(self.kept.len());
        self.kept.extend(bytes.iter().take(room));
    }

    /// Reads the pipe until the command exits, and returns its exit status. Reading goes on
    /// past what is kept, and stops early only at the end of the output.
    async fn read_until_exit(
        &mut self,
        mut pipe: Option<&mut pipe::Receiver>,
        exit_rx: oneshot::Receiver<ChildStatus>,
    ) -> Result<ChildStatus, oneshot::error::RecvError> {
        let mut exit_rx = pin!(exit_rx);
        let mut chunk = [0u8; 1024];
        loop {
            let Some(reader) = pipe.as_deref_mut() else {
                return exit_rx.await;
            };
            // The exit first: a process the command left behind may keep writing for ever.
            let read = tokio::select! {
                biased;
                status = &mut exit_rx => return status,
                read = reader.read(&mut chunk) => read,
            };
            match read {
                Ok(n_read @ 1..) => self.keep(chunk.get(..n_read).unwrap_or_default()),
                // Every writer has closed the pipe (or it broke): only the exit is left to await.
                Ok(0) | Err(_) => pipe = None,
            }
        }
    }

    /// Reads what is in the pipe already, without waiting: a process outside the probe's group
    /// may hold the pipe open for as long as it likes. It ends with the pipe's end, an empty
    /// pipe, or full output.
    fn read_what_is_left(&mut self, pipe: pipe::Receiver) {
        let Ok(fd) = pipe.into_nonblocking_fd() else {
            return;
        };
        // A plain read(2): tokio's `try_read` would answer from the readiness it has seen so
        // far, which may predate the last writes.
        let mut pipe = std::fs::File::from(fd);
        let mut chunk = [0u8; 1024];
        while self.kept.len() < MAX_OUTPUT {
            match pipe.read(&mut chunk) {
                Ok(n_read @ 1..) => self.keep(chunk.get(..n_read).unwrap_or_default()),
                // The end, an empty pipe (WouldBlock), or an error: nothing more to read now.
                Ok(0) | Err(_) => break,
            }
        }
    }

    /// `answer` with the output as its detail (`message: output on one line`); unchanged when
    /// the probe wrote nothing but blanks and control characters.
    fn attach_to(&self, answer: ProbeAnswer) -> ProbeAnswer {
        let line = self.one_line();
        if line.is_empty() {
            return answer;
        }
        let detail = format!("{}: {line}", answer.message);
        answer.with_detail(detail)
    }

    /// The output's non-blank lines, joined by ` | `; in each, every run of control characters
    /// and blanks is one space, and none is left at either end: a line of NUL bytes is no line.
    fn one_line(&self) -> String {
        String::from_utf8_lossy(&self.kept)
            .lines()
            .map(|line| {
                let words = line.split(|c: char| c.is_control() || c.is_whitespace());
                words
                    .filter(|word| !word.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(bytes: &[u8]) -> Output {
        let mut output = Output::default();
        output.keep(bytes);
        output
    }

    #[test]
    fn output_goes_to_the_detail_on_one_line_and_never_to_the_message() {
        let traceback = b"Traceback (most recent call last):\n  File \"check.py\", line 3\n\n\
                          RuntimeError: db down\r\n";
        let answer = output(traceback).attach_to(ProbeAnswer::failure("exit code 1"));
        assert_eq!(answer.message, "exit code 1");
        assert_eq!(
            answer.detail.as_deref(),
            Some(
                "exit code 1: Traceback (most recent call last): | File \"check.py\", line 3 | \
                 RuntimeError: db down"
            )
        );
        assert_eq!(
            output(b"a\tb\x1b[0m\n").one_line(),
            "a b [0m",
            "control characters become spaces"
        );
        let blank = output(b"\n \n").attach_to(ProbeAnswer::failure("exit code 2"));
        assert_eq!(blank, ProbeAnswer::failure("exit code 2"));
    }

    #[test]
    fn nul_bytes_and_runs_of_blanks_shrink_to_nothing_or_one_space() {
        assert_eq!(output(&[0u8; MAX_OUTPUT]).one_line(), "");
        let nuls = output(&[0u8; MAX_OUTPUT]).attach_to(ProbeAnswer::failure("exit code 1"));
        assert_eq!(nuls, ProbeAnswer::failure("exit code 1"));
        assert_eq!(
            output(b"db\0\0\0\0 \t down\0\n\0\0\n  retrying  \n").one_line(),
            "db down | retrying"
        );
    }

    #[test]
    fn output_keeps_the_first_10_kib() {
        let mut kept = output(&[b'a'; 6000]);
        kept.keep(&[b'b'; 6000]);
        kept.keep(b"never");
        assert_eq!(kept.kept.len(), MAX_OUTPUT);
        assert_eq!(kept.kept.iter().filter(|&&byte| byte == b'b').count(), 4240);
        assert_eq!(kept.kept.last(), Some(&b'b'));
    }
}
