//! Signals delivered and caught: kill(2), the handlers, and where a caught signal came from.
//!
//! This module is the only caller of kill(2) in pyinit, and the only place that registers signal
//! handlers. It decides nothing: the supervisor says which signal goes where and when, and this
//! module turns that into syscalls. It also says which processes are still running (pid and
//! command, from /proc, in `processes.rs`), for the deadline's error line, and delivers the
//! deadline's dump signal one process at a time ([`signal_one_at_a_time`]). The drain's signals
//! (stop, hard stop, dump, and SIGTERM to what the app left behind) are followed by SIGCONT, so
//! that a stopped process acts on them ([`signal_and_continue`]). The vocabulary (the
//! names, the forwarded set, the rewrite map and their parsers) is pure and lives in `spec.rs`.
//!
//! pyinit forwards every signal of 1..=31 that another process sends it and that it can catch
//! safely ([`FORWARDED`]). Whether a caught signal came from another process or was raised by the
//! kernel for something pyinit itself did (a write to a closed pipe, a syscall its seccomp filter
//! traps) is told by the signal's origin, its `si_code` and `si_pid` ([`CaughtSignal`]), never by
//! its number alone. Reading `si_pid` out of the `siginfo_t` union is this file's one `unsafe`
//! read; installing the action that keeps pyinit's own faults fatal is its one `unsafe` call.
//!
//! Which signals of 1..=31 pyinit catches, and why:
//!
//! - Forwarded, whoever sends them: HUP, INT, QUIT, TERM (the drain), USR1, USR2, WINCH, TTIN,
//!   TTOU, CONT, TSTP, ALRM, VTALRM, PROF, URG, IO, PWR, XCPU, STKFLT.
//! - PIPE and XFSZ: forwarded when another process sends them. The kernel also raises them in
//!   pyinit for its own write (to a closed pipe: its stderr once the log reader is gone; past
//!   RLIMIT_FSIZE), with si_code SI_USER and pyinit's own pid as the sender: those stay pyinit's,
//!   and the write fails with EPIPE or EFBIG as it would without a handler. (pyinit's sockets
//!   write with MSG_NOSIGNAL, so a health client that hangs up raises nothing.)
//! - ABRT: forwarded when sent. pyinit's own abort (a bug: release builds abort on panic) ends it
//!   exactly as without a handler, because the C library's abort() restores the default action
//!   and raises again once a handler returns: SIGABRT (134) when pyinit is not PID 1; as PID 1,
//!   where the kernel drops a signal a process sends itself with the default action, musl's
//!   abort() then crashes on purpose (SIGSEGV, 139), handler or not (tried with both).
//! - SYS and TRAP: forwarded when sent. The kernel raises them synchronously for pyinit's own code:
//!   SIGSYS with SYS_SECCOMP when a seccomp filter traps one of its syscalls (the syscall is then
//!   skipped, and a handler that returned would leave pyinit reading the syscall number as its
//!   result), SIGTRAP for a breakpoint (on aarch64 a returning handler would run the same `brk`
//!   again, forever). For those, an action inside the handler ([`keep_own_faults_fatal`]) ends
//!   pyinit at once with 128+N, the code the signal's default action would give.
//! - Not caught: SEGV, BUS, ILL and FPE. A real fault must end pyinit, and a handler that returns
//!   re-runs the faulting instruction, so PID 1 would spin on it forever; signal-hook refuses SEGV,
//!   ILL and FPE, and Rust's runtime keeps SEGV and BUS for its stack-overflow message. Sent by
//!   another process they are not forwarded (to a PID 1 the kernel drops them, as every signal it
//!   has no handler for). Nor are KILL and STOP (they cannot be caught) or CHLD (the reaper's).
//!
//! Real-time signals (32..=64) are not caught either: sent to pyinit as PID 1 the kernel drops
//! them; anywhere else their default action ends pyinit. A real-time signal that kills the app is
//! reported like any other death, with 128+N.

pub mod disposition;
mod processes;
pub mod spec;

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::libc::{self, c_int, siginfo_t};
use nix::sys::signal::{self as nix_signal, SigSet};
use nix::unistd::Pid;
use signal_hook::iterator::exfiltrator::WithRawSiginfo;

pub use processes::{
    RunningProcess, app_processes, catches_signals, count_running_children, remaining_processes,
};
use spec::{FORWARDED, ForwardTarget, Signal};

/// The signals the kernel raises synchronously for pyinit's own code that pyinit still catches
/// (for the ones sent by others): [`keep_own_faults_fatal`] guards them.
const GUARDED_FAULTS: [Signal; 2] = [Signal::SIGSYS, Signal::SIGTRAP];

/// A caught signal and where it came from, out of its `siginfo_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaughtSignal {
    pub number: i32,
    /// `si_code`: SI_USER (kill), SI_TKILL (tgkill, raise), SI_QUEUE (sigqueue), SI_KERNEL, or a
    /// positive code the kernel sets for a signal about the receiver itself (a fault, a trap,
    /// SYS_SECCOMP, or CLD_EXITED for SIGCHLD).
    pub code: i32,
    /// The sender's pid, when a process sent it, as pyinit's PID namespace numbers it: 0 for a
    /// sender outside the namespace (the container runtime, the kubelet's `kill`).
    pub sender_pid: Option<i32>,
}

impl CaughtSignal {
    /// Reads the signal's number and origin out of the siginfo that the handler copied.
    #[allow(
        unsafe_code,
        reason = "si_pid sits in a union of siginfo_t that libc only exposes unsafely; see SAFETY"
    )]
    pub fn from_siginfo(info: &siginfo_t) -> CaughtSignal {
        let sent_by_a_process = matches!(
            info.si_code,
            libc::SI_USER | libc::SI_TKILL | libc::SI_QUEUE
        );
        let sender_pid = if sent_by_a_process {
            // SAFETY: `si_pid` reads a `pid_t` out of the union that follows si_signo, si_errno and
            // si_code. `info` is a whole copy of the siginfo the kernel wrote (signal-hook copies
            // it by value in the handler), and the kernel fills every one of its 128 bytes, zeroing
            // what the signal does not use, so the read is of initialised memory, and every bit
            // pattern is a valid `pid_t`. For SI_USER, SI_TKILL and SI_QUEUE, the codes checked
            // above, the kernel stores the sender's pid in exactly that field (kill(2), tgkill(2)
            // and sigqueue(3) all fill `_kill` or `_rt`, which begin with si_pid).
            Some(unsafe { info.si_pid() })
        } else {
            None
        };
        CaughtSignal {
            number: info.si_signo,
            code: info.si_code,
            sender_pid,
        }
    }

    /// Whether the kernel raised this signal for something pyinit did itself, so that it is
    /// pyinit's and not the app's: a write to a closed pipe or past RLIMIT_FSIZE (the kernel sends
    /// SIGPIPE or SIGXFSZ as SI_USER from the writer: pyinit never kill(2)s itself, and its one
    /// self-signal, the parent-death fallback, is a `raise`, SI_TKILL); a breakpoint (x86 reports
    /// int3 as SI_KERNEL); or any other positive code, which the kernel uses only for signals
    /// about the receiver itself (faults, traps, SYS_SECCOMP). SI_KERNEL is otherwise the kernel's
    /// for others' doing (a terminal's hang-up or resize), and SIGCHLD is about a child: neither
    /// is pyinit's own.
    pub fn raised_by_pyinit(&self, own_pid: i32) -> bool {
        if self.number == libc::SIGCHLD {
            return false;
        }
        match self.code {
            libc::SI_USER => self.sender_pid == Some(own_pid),
            libc::SI_KERNEL => self.number == libc::SIGTRAP,
            code => code > 0,
        }
    }
}

/// Whether a guarded signal is a fault of pyinit's own code (async-signal-safe: integers only).
fn is_own_fault(number: c_int, code: c_int) -> bool {
    let guarded = GUARDED_FAULTS
        .iter()
        .any(|signal| *signal as c_int == number);
    guarded
        && match code {
            libc::SI_KERNEL => number == libc::SIGTRAP,
            code => code > 0,
        }
}

/// Ends pyinit inside the signal handler when the kernel raises SIGSYS or SIGTRAP for pyinit's
/// own code, before the handler can return into a skipped syscall or the same breakpoint: one line
/// on stderr, then `_exit(128 + N)`, the code a death by the signal would give (a PID 1 cannot
/// re-raise a signal at itself to die of it: the kernel drops it). The same signals sent by other
/// processes go on to the signal stream and are forwarded.
#[allow(
    unsafe_code,
    reason = "registering an action that runs inside the signal handler; see SAFETY"
)]
fn keep_own_faults_fatal() -> io::Result<()> {
    for signal in GUARDED_FAULTS {
        let action = |info: &siginfo_t| {
            if is_own_fault(info.si_signo, info.si_code) {
                let message: &[u8] = if info.si_signo == libc::SIGSYS {
                    b"pyinit: seccomp trapped one of pyinit's own syscalls (SIGSYS): exiting\n"
                } else {
                    b"pyinit: a breakpoint trapped in pyinit's own code (SIGTRAP): exiting\n"
                };
                let _ = nix::unistd::write(std::io::stderr().as_fd(), message);
                signal_hook::low_level::exit(128 + info.si_signo);
            }
        };
        // SAFETY: register_sigaction requires an action that is async-signal-safe and never
        // panics, since it runs inside the handler. This one compares integers read from the
        // siginfo it is given and, for a fault of pyinit's own, calls write(2) on fd 2 with a
        // static buffer (`stderr().as_fd()` only wraps the number 2, taking no lock) and _exit(2):
        // both async-signal-safe; it allocates nothing, takes no lock, touches no global and has
        // no panic path. SIGSYS and SIGTRAP are not in signal-hook's forbidden set, so the call
        // cannot panic either; it runs during set-up, on pyinit's one thread.
        unsafe { signal_hook_registry::register_sigaction(signal as c_int, action) }?;
    }
    Ok(())
}

/// A process-level delivery failure, named by pid and signal.
#[derive(Debug)]
pub struct DeliveryError {
    pub pid: i32,
    pub signal: Signal,
    pub source: nix::Error,
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot send {} to pid {}: {}",
            self.signal, self.pid, self.source
        )
    }
}

impl std::error::Error for DeliveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Sends `signal` to the app's pid or its process group.
#[allow(
    clippy::disallowed_methods,
    reason = "signals/mod.rs is the one owner of kill(2)"
)]
pub fn forward_signal(
    app_pid: i32,
    target: ForwardTarget,
    signal: Signal,
) -> Result<(), DeliveryError> {
    let pid = Pid::from_raw(app_pid);
    let result = match target {
        ForwardTarget::Child => nix_signal::kill(pid, signal),
        // The app leads its own group (spawn puts it there), so its pgid is its pid.
        ForwardTarget::Group => nix_signal::killpg(pid, signal),
    };
    match result {
        // The target is already gone: the reaper will report its exit.
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(DeliveryError {
            pid: app_pid,
            signal,
            source,
        }),
    }
}

/// Sends `signal` to the app's pid or its process group as [`forward_signal`] does, then SIGCONT
/// (unless `signal` is one that [`wakes_nothing`] says needs none): for the drain's stop signal
/// and hard-stop signal.
///
/// A stopped process (SIGSTOP, a debugger, a `kill -STOP` by hand) keeps a signal pending and
/// acts on it only once it runs again, so without the SIGCONT an app stopped when the drain
/// begins would sleep through its SIGTERM and be killed at the deadline (exit 137). SIGCONT
/// comes second, as systemd sends it after its SIGTERM, so the signal is waiting when the
/// process resumes. To a running app it is a no-op unless the app handles SIGCONT itself.
pub fn signal_and_continue(
    app_pid: i32,
    target: ForwardTarget,
    signal: Signal,
) -> Result<(), DeliveryError> {
    forward_signal(app_pid, target, signal)?;
    if wakes_nothing(signal) {
        return Ok(());
    }
    forward_signal(app_pid, target, Signal::SIGCONT)
}

/// Signals after which no SIGCONT is sent: SIGKILL ends a stopped process as well, SIGCONT is
/// one, and the job-control stops would be undone by it.
fn wakes_nothing(signal: Signal) -> bool {
    matches!(
        signal,
        Signal::SIGKILL
            | Signal::SIGCONT
            | Signal::SIGSTOP
            | Signal::SIGTSTP
            | Signal::SIGTTIN
            | Signal::SIGTTOU
    )
}

/// SIGKILLs the process group `pgid`: an exec probe that overran its timeout, with whatever it
/// started. A group already gone is not an error.
#[allow(
    clippy::disallowed_methods,
    reason = "signals/mod.rs is the one owner of kill(2)"
)]
pub fn kill_process_group(pgid: i32) -> Result<(), DeliveryError> {
    match nix_signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(DeliveryError {
            pid: pgid,
            signal: Signal::SIGKILL,
            source,
        }),
    }
}

/// Sends `signal` to every process pyinit is responsible for, then SIGCONT (as
/// [`signal_and_continue`] does, and for the same reason: a stopped process left behind would
/// sleep through its SIGTERM).
///
/// As PID 1 that is every process in the PID namespace (kill(-1) spares the caller). Otherwise
/// kill(-1) would reach every process of the user on the host, so pyinit walks /proc for its own
/// descendants instead (as subreaper, orphans of the app are re-parented to it and stay found).
#[allow(
    clippy::disallowed_methods,
    reason = "signals/mod.rs is the one owner of kill(2)"
)]
pub fn signal_all_descendants(signal: Signal) {
    let signals: &[Signal] = if wakes_nothing(signal) {
        &[signal]
    } else {
        &[signal, Signal::SIGCONT]
    };
    let own_pid = std::process::id();
    if own_pid == 1 {
        for signal in signals {
            // ESRCH only means nothing is left to signal.
            let _ = nix_signal::kill(Pid::from_raw(-1), *signal);
        }
        return;
    }
    let descendants = processes::find_descendants(own_pid, &processes::read_process_table());
    for signal in signals {
        for pid in &descendants {
            if let Ok(pid) = i32::try_from(*pid) {
                // A descendant may exit between the walk and the kill; ESRCH is expected then.
                let _ = nix_signal::kill(Pid::from_raw(pid), *signal);
            }
        }
    }
}

/// Sends `signal` to each process in turn, in the order given, waiting after each until it has
/// exited (gone, or a zombie) or `wait_each` has passed, whichever is first.
///
/// For the dump at the drain deadline: a Python process prints its traceback on the signal and
/// then dies of it, so when it has exited it has finished printing, and the next one starts on
/// a quiet stderr. Signalled all at once, processes that share one stderr write their tracebacks
/// at the same moment, and faulthandler writes each line in several pieces: the lines of
/// different processes then cut into each other (seen in 4 of 10 tries with five Python
/// processes), while one at a time they come out whole (10 of 10), about a millisecond each.
/// Each gets a SIGCONT after its signal, so that a stopped process prints too.
#[allow(
    clippy::disallowed_methods,
    reason = "signals/mod.rs is the one owner of kill(2)"
)]
pub async fn signal_one_at_a_time(pids: Vec<i32>, signal: Signal, wait_each: Duration) {
    for pid in pids {
        // Gone already (ESRCH), or not pyinit's to signal: nothing to wait for either way.
        if nix_signal::kill(Pid::from_raw(pid), signal).is_err() {
            continue;
        }
        if !wakes_nothing(signal) {
            let _ = nix_signal::kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
        let give_up_at = crate::clock::now() + wait_each;
        while !processes::has_exited(pid) && crate::clock::now() < give_up_at {
            tokio::time::sleep(EXIT_POLL).await;
        }
    }
}

/// How often [`signal_one_at_a_time`] looks whether the process it signalled has exited.
const EXIT_POLL: Duration = Duration::from_millis(1);

/// Asks the kernel to send `signal` to pyinit when its parent dies.
///
/// Changing credentials clears this setting, so it is armed after the privilege drop. If the
/// parent died before that, the signal never comes; the caller checks the parent pid for that.
pub fn arm_parent_death_signal(signal: Signal) -> nix::Result<()> {
    nix::sys::prctl::set_pdeathsig(signal)
}

/// Sends `signal` to pyinit itself, through its own handler (a parent that died too early).
pub fn raise_signal(signal: Signal) -> nix::Result<()> {
    nix_signal::raise(signal)
}

/// The stream of caught signals, each as the raw `siginfo_t` its handler saw (read it with
/// [`CaughtSignal::from_siginfo`]); SIGCHLD included, for the reaper.
pub type SignalStream = signal_hook_tokio::SignalsInfo<WithRawSiginfo>;

/// Installs pyinit's handlers: every forwarded signal, the map's sources, and SIGCHLD.
///
/// The kernel drops signals to PID 1 that have no handler, so every signal pyinit forwards needs
/// one, and they must exist before the app is spawned so that no early signal is lost. The guard
/// that keeps pyinit's own SIGSYS and SIGTRAP fatal goes in first, so that it is in place before
/// either signal has a handler at all.
///
/// Once they are, the signals [`block_handled_signals`] held back during set-up are let through:
/// one sent meanwhile is delivered now, to its handler.
pub fn register_handlers(extra: impl IntoIterator<Item = Signal>) -> io::Result<SignalStream> {
    keep_own_faults_fatal()?;
    let mut numbers: Vec<i32> = FORWARDED.iter().map(|signal| *signal as i32).collect();
    numbers.push(Signal::SIGCHLD as i32);
    for signal in extra {
        let number = signal as i32;
        if !numbers.contains(&number) && !signal_hook::consts::FORBIDDEN.contains(&number) {
            numbers.push(number);
        }
    }
    let stream = SignalStream::new(numbers)?;
    handled_signals()
        .thread_unblock()
        .map_err(io::Error::from)?;
    Ok(stream)
}

/// Holds back every signal pyinit will handle ([`FORWARDED`] and SIGCHLD) until
/// [`register_handlers`] has installed their handlers: `main` calls it first of all.
///
/// Until a handler exists the kernel drops a signal sent to PID 1 (its default action does not
/// apply to a namespace's init), so without this a SIGTERM sent during set-up, which can last a
/// second (emptying a multiprocess directory of many stale files), would be lost and the app
/// would keep running. A blocked signal waits instead: the kernel keeps it pending, even for
/// PID 1, and delivers it once it is unblocked. pyinit has one thread here, so the thread's mask
/// is the process's. The app and the exec probes start with an empty mask (`spawn` resets it).
pub fn block_handled_signals() {
    // sigprocmask fails only for a bad `how` or pointer: neither can happen here.
    let _ = handled_signals().thread_block();
}

/// [`FORWARDED`] and SIGCHLD: the signals held back during set-up.
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
        set.add(*signal);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caught(number: c_int, code: c_int, sender_pid: Option<i32>) -> CaughtSignal {
        CaughtSignal {
            number,
            code,
            sender_pid,
        }
    }

    #[test]
    fn the_origin_tells_pyinits_own_signals_from_the_ones_sent_to_it() {
        const OWN_PID: i32 = 1;
        const SYS_SECCOMP: c_int = 1;
        // kill(2) from a process in the container, and from outside its PID namespace (pid 0).
        assert!(!caught(libc::SIGPIPE, libc::SI_USER, Some(4242)).raised_by_pyinit(OWN_PID));
        assert!(!caught(libc::SIGPIPE, libc::SI_USER, Some(0)).raised_by_pyinit(OWN_PID));
        assert!(!caught(libc::SIGSYS, libc::SI_USER, Some(4242)).raised_by_pyinit(OWN_PID));
        assert!(!caught(libc::SIGTRAP, libc::SI_QUEUE, Some(7)).raised_by_pyinit(OWN_PID));
        // The kernel's SIGPIPE or SIGXFSZ for pyinit's own write names pyinit as the sender.
        assert!(caught(libc::SIGPIPE, libc::SI_USER, Some(OWN_PID)).raised_by_pyinit(OWN_PID));
        assert!(caught(libc::SIGXFSZ, libc::SI_USER, Some(OWN_PID)).raised_by_pyinit(OWN_PID));
        // pyinit's own raise (the parent-death fallback) is meant to be acted on.
        assert!(!caught(libc::SIGTERM, libc::SI_TKILL, Some(OWN_PID)).raised_by_pyinit(OWN_PID));
        // Faults and traps of pyinit's own code.
        assert!(caught(libc::SIGSYS, SYS_SECCOMP, None).raised_by_pyinit(OWN_PID));
        assert!(caught(libc::SIGTRAP, libc::TRAP_BRKPT, None).raised_by_pyinit(OWN_PID));
        assert!(caught(libc::SIGTRAP, libc::SI_KERNEL, None).raised_by_pyinit(OWN_PID));
        // The kernel's own signals for others' doing: a terminal hang-up or resize, a child.
        assert!(!caught(libc::SIGHUP, libc::SI_KERNEL, None).raised_by_pyinit(OWN_PID));
        assert!(!caught(libc::SIGWINCH, libc::SI_KERNEL, None).raised_by_pyinit(OWN_PID));
        assert!(!caught(libc::SIGCHLD, libc::CLD_EXITED, Some(9)).raised_by_pyinit(OWN_PID));
    }

    #[test]
    fn a_sigcont_follows_every_signal_but_kill_and_the_stops() {
        for signal in [
            Signal::SIGTERM,
            Signal::SIGQUIT,
            Signal::SIGBUS,
            Signal::SIGINT,
        ] {
            assert!(!wakes_nothing(signal), "{signal}");
        }
        for signal in [
            Signal::SIGKILL,
            Signal::SIGCONT,
            Signal::SIGSTOP,
            Signal::SIGTSTP,
            Signal::SIGTTIN,
            Signal::SIGTTOU,
        ] {
            assert!(wakes_nothing(signal), "{signal}");
        }
    }

    #[test]
    fn only_faults_of_pyinits_own_code_end_it_in_the_handler() {
        const SYS_SECCOMP: c_int = 1;
        assert!(is_own_fault(libc::SIGSYS, SYS_SECCOMP));
        assert!(is_own_fault(libc::SIGTRAP, libc::TRAP_BRKPT));
        assert!(is_own_fault(libc::SIGTRAP, libc::SI_KERNEL));
        assert!(!is_own_fault(libc::SIGSYS, libc::SI_USER));
        assert!(!is_own_fault(libc::SIGTRAP, libc::SI_TKILL));
        assert!(!is_own_fault(libc::SIGSYS, libc::SI_KERNEL));
        // Only the guarded signals: a SIGPIPE is never fatal here.
        assert!(!is_own_fault(libc::SIGPIPE, 1));
    }
}
