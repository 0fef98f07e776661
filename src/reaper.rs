//! The reaper: the only `waitpid` in pyinit, and the registry of pids whose exit someone awaits.
//!
//! SIGCHLDs coalesce, so one signal may stand for many exits: every pass loops `waitpid(-1,
//! WNOHANG)` until nothing is left to reap. A pid registered with [`Reaper::register`] (an exec
//! probe) gets its status through a oneshot channel; every other exit (the app, orphans) is
//! returned to the caller, the supervisor's driver. The reaper knows nothing of probes or apps.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
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

    /// Reaps every child that has exited, until `waitpid` reports none ready or none left.
    #[allow(
        clippy::disallowed_methods,
        reason = "the reaper is the one owner of waitpid"
    )]
    pub fn reap_zombies(&self) -> ReapReport {
        let mut report = ReapReport::default();
        let mut n_unreadable = 0;
        loop {
            match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.deliver(&mut report, pid, ChildStatus::Exited(code))
                }
                Ok(WaitStatus::Signaled(pid, signal, _core_dumped)) => {
                    self.deliver(&mut report, pid, ChildStatus::Signaled(signal as i32));
                }
                // No child has changed state yet, though some are alive.
                Ok(WaitStatus::StillAlive) => break,
                // Stops and continues are not reported without WUNTRACED/WCONTINUED.
                Ok(_) => continue,
                Err(nix::Error::EINTR) => continue,
                Err(nix::Error::ECHILD) => {
                    report.no_children_left = true;
                    break;
                }
                // nix reaps first and then fails to name a real-time signal (EINVAL): that child
                // is gone and its status lost. Keep draining, but never spin on a failing call.
                Err(_) => {
                    n_unreadable += 1;
                    if n_unreadable > 64 {
                        break;
                    }
                }
            }
        }
        report
    }

    fn deliver(&self, report: &mut ReapReport, pid: Pid, status: ChildStatus) {
        let raw_pid = pid.as_raw();
        match self.lock_waiters().remove(&raw_pid) {
            Some(status_tx) => {
                // The waiter may have given up (a timed-out probe); its exit is still reaped.
                let _ = status_tx.send(status);
                report.n_claimed += 1;
            }
            None => report.unclaimed.push((raw_pid, status)),
        }
    }
}
