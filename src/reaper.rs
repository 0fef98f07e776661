//! The reaper: the only `waitpid` in pyinit, and the registry of pids whose exit someone awaits.
//!
//! SIGCHLDs coalesce, so one signal may stand for many exits: every pass loops `waitpid(-1,
//! WNOHANG)` until nothing is left to reap. A pid registered with [`Reaper::register`] (an exec
//! probe) gets its status through a oneshot channel; every other exit (the app, orphans) is
//! returned to the caller, the supervisor's driver. The reaper knows nothing of probes or apps.
//!
//! Every pid the kernel hands back is accounted for, whatever ended it. The wait status is read
//! raw, with one `unsafe` call to libc's `waitpid`, and decoded here with libc's `WIFEXITED`,
//! `WEXITSTATUS`, `WIFSIGNALED` and `WTERMSIG`: nix's safe `waitpid` reaps the child first and
//! then fails to name a real-time signal (SIGRTMIN..SIGRTMAX), which would lose that child's
//! status, and with it the app's exit or an exec probe's waiter.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::libc::{self, c_int};
use tokio::sync::oneshot;

use crate::exit::ChildStatus;

/// What one reaping pass found.
#[derive(Debug, Default)]
pub struct ReapReport {
    /// Exits that no registered waiter claimed: the app's, and orphans'.
    pub unclaimed: Vec<(i32, ChildStatus)>,
    /// How many registered waiters were handed their status.
    pub n_claimed: usize,
    /// `waitpid` said ECHILD: pyinit has no child left at all.
    pub no_children_left: bool,
}

/// Makes pyinit the reaper of orphaned descendants when it is not PID 1.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// The registry of awaited pids; shared by the driver and the probe tasks.
#[derive(Debug, Default)]
pub struct Reaper {
    waiters: Mutex<HashMap<i32, oneshot::Sender<ChildStatus>>>,
}

/// One answer of `waitpid(-1, WNOHANG)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waited {
    /// This child changed state; the raw wait status says how.
    Child { pid: i32, wait_status: c_int },
    /// Children are alive, but none has changed state.
    NoneReady,
}

/// Decodes a raw wait status; `None` for a status that does not end the child (a stop or a
/// continue, which `waitpid` reports only when asked to).
fn decode_wait_status(wait_status: c_int) -> Option<ChildStatus> {
    if libc::WIFEXITED(wait_status) {
        Some(ChildStatus::Exited(libc::WEXITSTATUS(wait_status)))
    } else if libc::WIFSIGNALED(wait_status) {
        Some(ChildStatus::Signaled(libc::WTERMSIG(wait_status)))
    } else {
        None
    }
}

/// `waitpid(-1, &status, WNOHANG)`, with the status left raw for [`decode_wait_status`].
#[allow(
    unsafe_code,
    reason = "libc's waitpid hands back the raw status that nix cannot name; see SAFETY"
)]
#[allow(
    clippy::disallowed_methods,
    reason = "the reaper is the one owner of waitpid"
)]
fn wait_for_any_child() -> Result<Waited, Errno> {
    let mut wait_status: c_int = 0;
    // SAFETY: waitpid(2) writes at most one `int` through its second argument, and that pointer
    // is to `wait_status`, a live, aligned and initialised local of exactly that type which
    // outlives the call and is not borrowed elsewhere. The other arguments are plain integers
    // (-1: any child; WNOHANG: never block), and the call touches no other memory of ours.
    let pid = unsafe { libc::waitpid(-1, &raw mut wait_status, libc::WNOHANG) };
    match pid {
        -1 => Err(Errno::last()),
        0 => Ok(Waited::NoneReady),
        pid => Ok(Waited::Child { pid, wait_status }),
    }
}

impl Reaper {
    pub fn new() -> Self {
        Reaper::default()
    }

    /// Asks for the exit status of `pid`, a child just spawned. Call it before the next `.await`
    /// after the spawn, so that no reaping pass can run in between and count the exit as an
    /// orphan's. A receiver dropped early (a timed-out probe) is fine: the exit is still reaped.
    pub fn register(&self, pid: i32) -> oneshot::Receiver<ChildStatus> {
        let (status_tx, status_rx) = oneshot::channel();
        self.lock_waiters().insert(pid, status_tx);
        status_rx
    }

    fn lock_waiters(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<i32, oneshot::Sender<ChildStatus>>> {
        // A panic cannot happen while the lock is held (release builds abort on panic anyway),
        // so a poisoned map is still consistent.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many registered pids still wait for their exit.
    #[cfg(test)]
    fn n_waiting(&self) -> usize {
        self.lock_waiters().len()
    }

    /// Reaps every child that has exited, until `waitpid` reports none ready or none left.
    pub fn reap_zombies(&self) -> ReapReport {
        self.reap_with(wait_for_any_child)
    }

    /// The reaping loop over any source of `waitpid` answers, so that tests can feed it statuses.
    fn reap_with(&self, mut wait: impl FnMut() -> Result<Waited, Errno>) -> ReapReport {
        let mut report = ReapReport::default();
        loop {
            match wait() {
                Ok(Waited::Child { pid, wait_status }) => {
                    // Stops and continues are not reported without WUNTRACED/WCONTINUED; if one
                    // were, the child still lives and is reaped later.
                    if let Some(status) = decode_wait_status(wait_status) {
                        self.deliver(&mut report, pid, status);
                    }
                }
                Ok(Waited::NoneReady) => break,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => {
                    report.no_children_left = true;
                    break;
                }
                // Only EINVAL is left, for flags this call never passes: never spin on it.
                Err(_) => break,
            }
        }
        report
    }

    fn deliver(&self, report: &mut ReapReport, pid: i32, status: ChildStatus) {
        match self.lock_waiters().remove(&pid) {
            Some(status_tx) => {
                // The waiter may have given up (a timed-out probe); its exit is still reaped.
                let _ = status_tx.send(status);
                report.n_claimed += 1;
            }
            None => report.unclaimed.push((pid, status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wait statuses as the kernel builds them (`wait(2)`): the exit code in bits 8-15, or the
    /// signal number in bits 0-6, with 0x80 for a core dump.
    fn exited(code: c_int) -> c_int {
        code << 8
    }

    fn killed_by(signal: c_int, core_dumped: bool) -> c_int {
        signal | if core_dumped { 0x80 } else { 0 }
    }

    /// A `waitpid` that answers from a script, then ECHILD.
    fn scripted(answers: Vec<Result<Waited, Errno>>) -> impl FnMut() -> Result<Waited, Errno> {
        let mut answers = answers.into_iter();
        move || answers.next().unwrap_or(Err(Errno::ECHILD))
    }

    #[test]
    fn every_signal_and_every_code_decodes() {
        for code in 0..=255 {
            assert_eq!(
                decode_wait_status(exited(code)),
                Some(ChildStatus::Exited(code))
            );
        }
        // 1..=64 covers every real-time signal (SIGRTMIN..SIGRTMAX), which nix cannot name.
        for signal in 1..=64 {
            for core_dumped in [false, true] {
                assert_eq!(
                    decode_wait_status(killed_by(signal, core_dumped)),
                    Some(ChildStatus::Signaled(signal)),
                    "signal {signal}"
                );
            }
        }
        // A stopped child (0x7f in the low byte) and a continued one (0xffff) have not ended.
        assert_eq!(decode_wait_status(0x7f | (19 << 8)), None);
        assert_eq!(decode_wait_status(0xffff), None);
    }

    #[test]
    fn a_real_time_death_reaches_its_waiter_and_leaves_the_registry() {
        let reaper = Reaper::new();
        let mut probe_rx = reaper.register(41);
        let report = reaper.reap_with(scripted(vec![
            Ok(Waited::Child {
                pid: 41,
                wait_status: killed_by(40, false),
            }),
            Ok(Waited::NoneReady),
        ]));
        assert_eq!(probe_rx.try_recv(), Ok(ChildStatus::Signaled(40)));
        assert_eq!(report.n_claimed, 1);
        assert_eq!(reaper.n_waiting(), 0);
        assert!(!report.no_children_left);
    }

    #[test]
    fn every_reaped_pid_is_reported_in_one_pass() {
        let reaper = Reaper::new();
        let report = reaper.reap_with(scripted(vec![
            Ok(Waited::Child {
                pid: 7,
                wait_status: killed_by(36, true),
            }),
            Err(Errno::EINTR),
            Ok(Waited::Child {
                pid: 8,
                wait_status: exited(3),
            }),
            Ok(Waited::Child {
                pid: 9,
                wait_status: killed_by(64, false),
            }),
        ]));
        assert_eq!(
            report.unclaimed,
            vec![
                (7, ChildStatus::Signaled(36)),
                (8, ChildStatus::Exited(3)),
                (9, ChildStatus::Signaled(64)),
            ]
        );
        assert!(report.no_children_left);
    }

    #[test]
    fn an_unexpected_error_ends_the_pass_instead_of_spinning() {
        let reaper = Reaper::new();
        let mut calls = 0;
        let report = reaper.reap_with(|| {
            calls += 1;
            Err(Errno::EINVAL)
        });
        assert_eq!(calls, 1);
        assert!(report.unclaimed.is_empty());
        assert!(!report.no_children_left);
    }
}
