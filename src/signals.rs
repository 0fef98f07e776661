//! Signals: their names, the set pyinit forwards, the `--signal-map` rewrite, and delivery.
//!
//! This module is the only caller of kill(2) in pyinit, and the only place that registers signal
//! handlers. It decides nothing: the supervisor says which signal goes where and when, and this
//! module turns that into syscalls.

use std::collections::HashSet;
use std::fmt;
use std::io;

use nix::sys::signal::{self as nix_signal};
use nix::unistd::Pid;

pub use nix::sys::signal::Signal;

/// Every signal pyinit catches and passes on to the app.
///
/// Left out: SIGCHLD (the reaper's), SIGKILL and SIGSTOP (cannot be caught), the synchronous
/// signals the kernel raises for a faulting thread (SEGV, BUS, FPE, ILL, TRAP, SYS, ABRT), and
/// SIGPIPE, which the kernel raises in pyinit itself when a health client hangs up mid-answer.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGALRM,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGURG,
    Signal::SIGIO,
    Signal::SIGPWR,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
];

/// Parses `TERM`, `SIGTERM`, `sigterm` or `15` into a signal.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("{number} is not a signal number"));
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| {
        format!("'{trimmed}' is not a signal name (try TERM, INT, QUIT, HUP, USR1 or a number)")
    })
}

/// The signal's short name, as logs and metrics show it: `TERM`, `USR1`.
pub fn short_name(signal: Signal) -> &'static str {
    let name = signal.as_str();
    name.strip_prefix("SIG").unwrap_or(name)
}

/// `--signal-map FROM=TO`: what a received signal becomes before it is forwarded.
///
/// `None` as the target means the signal is dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewriteMap {
    pairs: Vec<(Signal, Option<Signal>)>,
}

impl RewriteMap {
    pub fn new(pairs: Vec<(Signal, Option<Signal>)>) -> Self {
        RewriteMap { pairs }
    }

    /// The signal to forward for `received`, or `None` if the map drops it.
    pub fn rewrite(&self, received: Signal) -> Option<Signal> {
        self.pairs
            .iter()
            .find(|(from, _)| *from == received)
            .map_or(Some(received), |(_, to)| *to)
    }

    /// The signals pyinit must catch so that the map can see them.
    pub fn sources(&self) -> impl Iterator<Item = Signal> + '_ {
        self.pairs.iter().map(|(from, _)| *from)
    }
}

/// Parses one `FROM=TO` pair; `TO` may be `none` or `0` to drop the signal.
pub fn parse_rewrite_pair(text: &str) -> Result<(Signal, Option<Signal>), String> {
    let (from, to) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not FROM=TO (for example TERM=INT)"))?;
    let from = parse_signal(from)?;
    let to = match to.trim() {
        "0" => None,
        none if none.eq_ignore_ascii_case("none") => None,
        other => Some(parse_signal(other)?),
    };
    Ok((from, to))
}

/// Where forwarded signals go: `--forward-to child|group`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardTarget {
    /// The app's main process only.
    // Its workers are its own business: gunicorn's die mid-request on the master's signals.
    Child,
    /// The app's whole process group.
    Group,
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
    reason = "signals.rs is the one owner of kill(2)"
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

/// SIGKILLs the process group `pgid`: an exec probe that overran its timeout, with whatever it
/// started. A group already gone is not an error.
#[allow(
    clippy::disallowed_methods,
    reason = "signals.rs is the one owner of kill(2)"
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

/// Sends `signal` to every process pyinit is responsible for.
///
/// As PID 1 that is every process in the PID namespace (kill(-1) spares the caller). Otherwise
/// kill(-1) would reach every process of the user on the host, so pyinit walks /proc for its own
/// descendants instead (as subreaper, orphans of the app are re-parented to it and stay found).
#[allow(
    clippy::disallowed_methods,
    reason = "signals.rs is the one owner of kill(2)"
)]
pub fn signal_all_descendants(signal: Signal) {
    let own_pid = std::process::id();
    if own_pid == 1 {
        // ESRCH only means nothing is left to signal.
        let _ = nix_signal::kill(Pid::from_raw(-1), signal);
        return;
    }
    for pid in find_descendants(own_pid) {
        if let Ok(pid) = i32::try_from(pid) {
            // A descendant may exit between the walk and the kill; ESRCH is expected then.
            let _ = nix_signal::kill(Pid::from_raw(pid), signal);
        }
    }
}

/// Every live descendant of `root`, found through the parent pids in /proc/*/stat.
fn find_descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some(ppid) = parse_stat_ppid(&stat)
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut found: HashSet<u32> = HashSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, ppid) in &parent_of {
            if *ppid == parent && found.insert(*pid) {
                frontier.push(*pid);
            }
        }
    }
    found.into_iter().collect()
}

/// The parent pid from the text of /proc/PID/stat; the command name may hold spaces and ')'.
fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

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

/// The stream of caught signals; SIGCHLD included, for the reaper.
pub type SignalStream = signal_hook_tokio::Signals;

/// Installs pyinit's handlers: every forwarded signal, the map's sources, and SIGCHLD.
///
/// The kernel drops signals to PID 1 that have no handler, so every signal pyinit forwards needs
/// one, and they must exist before the app is spawned so that no early signal is lost.
pub fn register_handlers(extra: impl IntoIterator<Item = Signal>) -> io::Result<SignalStream> {
    let mut numbers: Vec<i32> = FORWARDED.iter().map(|signal| *signal as i32).collect();
    numbers.push(Signal::SIGCHLD as i32);
    for signal in extra {
        let number = signal as i32;
        if !numbers.contains(&number) && !signal_hook::consts::FORBIDDEN.contains(&number) {
            numbers.push(number);
        }
    }
    signal_hook_tokio::Signals::new(numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_parse_with_or_without_sig_and_as_numbers() {
        for text in ["TERM", "SIGTERM", "term", "sigterm", "15", " TERM "] {
            assert_eq!(parse_signal(text), Ok(Signal::SIGTERM), "{text}");
        }
        assert_eq!(parse_signal("USR1"), Ok(Signal::SIGUSR1));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
        assert!(parse_signal("").is_err());
    }

    #[test]
    fn rewrite_pairs_parse_and_drop() {
        assert_eq!(
            parse_rewrite_pair("TERM=INT"),
            Ok((Signal::SIGTERM, Some(Signal::SIGINT)))
        );
        assert_eq!(
            parse_rewrite_pair("SIGHUP=none"),
            Ok((Signal::SIGHUP, None))
        );
        assert_eq!(parse_rewrite_pair("10=0"), Ok((Signal::SIGUSR1, None)));
        assert!(parse_rewrite_pair("TERM").is_err());
        assert!(parse_rewrite_pair("TERM=NOPE").is_err());
    }

    #[test]
    fn rewrite_map_changes_only_listed_signals() {
        let map = RewriteMap::new(vec![
            (Signal::SIGTERM, Some(Signal::SIGINT)),
            (Signal::SIGHUP, None),
        ]);
        assert_eq!(map.rewrite(Signal::SIGTERM), Some(Signal::SIGINT));
        assert_eq!(map.rewrite(Signal::SIGHUP), None);
        assert_eq!(map.rewrite(Signal::SIGUSR1), Some(Signal::SIGUSR1));
    }

    #[test]
    fn stat_parent_pid_survives_odd_command_names() {
        assert_eq!(parse_stat_ppid("42 (python3) S 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid("42 (a) b) S 9 42 42 0"), Some(9));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn short_names_drop_the_prefix() {
        assert_eq!(short_name(Signal::SIGTERM), "TERM");
        assert_eq!(short_name(Signal::SIGWINCH), "WINCH");
    }
}
