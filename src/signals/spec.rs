//! The vocabulary of signals: their names, the set pyinit forwards, the `--signal-map` rewrite
//! and `--forward-to`, with the parsers of their flags. Pure: nix's `Signal` is only a name for
//! the kernel's numbers here; delivering a signal and catching one is `signals/mod.rs`'s.

use std::borrow::Cow;

pub use nix::sys::signal::Signal;

/// Every signal pyinit catches and passes on to the app, after `--signal-map`: the module doc of
/// `signals` says why each signal of 1..=31 is in or out.
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
    Signal::SIGSTKFLT,
    // Only when another process sends them; see the module doc.
    Signal::SIGPIPE,
    Signal::SIGABRT,
    Signal::SIGSYS,
    Signal::SIGTRAP,
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

/// Parses `--stop-signal`: a signal as [`parse_signal`] reads it, which pyinit catches (one of
/// [`FORWARDED`]), since the drain begins when it arrives.
pub fn parse_stop_signal(text: &str) -> Result<Signal, String> {
    let signal = parse_signal(text)?;
    if FORWARDED.contains(&signal) {
        return Ok(signal);
    }
    Err(format!(
        "pyinit does not catch {}, so it cannot begin a drain (KILL and STOP cannot be caught, \
         CHLD tells of children's exits, SEGV, BUS, ILL and FPE stay fatal): try TERM, INT, \
         QUIT or HUP",
        short_name(signal)
    ))
}

/// The signal's short name, as logs and metrics show it: `TERM`, `USR1`.
pub fn short_name(signal: Signal) -> &'static str {
    let name = signal.as_str();
    name.strip_prefix("SIG").unwrap_or(name)
}

/// The first real-time signal as the app's C library numbers it: glibc keeps 32 and 33 for
/// itself, so `SIGRTMIN` is 34 in Python's `signal` module and in `kill -l` on Debian-based
/// images. (The kernel's first real-time signal is 32.)
const RTMIN: i32 = 34;
/// The last real-time signal, the kernel's and every C library's.
const RTMAX: i32 = 64;

/// The short name of any signal number, for logs: `TERM` for 1..=31, and for the real-time
/// signals the names `kill -l` prints: `RTMIN`, `RTMIN+2` up to `RTMIN+15`, then `RTMAX-14`
/// down to `RTMAX`. A number with no such name (32, 33, or out of range) shows as `SIG32`.
pub fn signal_name(number: i32) -> Cow<'static, str> {
    if let Ok(signal) = Signal::try_from(number) {
        return Cow::Borrowed(short_name(signal));
    }
    let halfway = RTMIN + (RTMAX - RTMIN) / 2;
    match number {
        RTMIN => Cow::Borrowed("RTMIN"),
        RTMAX => Cow::Borrowed("RTMAX"),
        number if number > RTMIN && number <= halfway => {
            Cow::Owned(format!("RTMIN+{}", number - RTMIN))
        }
        number if number > halfway && number < RTMAX => {
            Cow::Owned(format!("RTMAX-{}", RTMAX - number))
        }
        number => Cow::Owned(format!("SIG{number}")),
    }
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

    /// The map's own entry for `signal`: `Some(target)` when it has one (`Some(None)`: it drops
    /// the signal), `None` when it leaves the signal as it is.
    pub fn entry(&self, signal: Signal) -> Option<Option<Signal>> {
        self.pairs
            .iter()
            .find(|(from, _)| *from == signal)
            .map(|(_, to)| *to)
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
    fn a_stop_signal_must_be_one_pyinit_catches() {
        assert_eq!(parse_stop_signal("INT"), Ok(Signal::SIGINT));
        assert_eq!(parse_stop_signal("SIGQUIT"), Ok(Signal::SIGQUIT));
        assert_eq!(parse_stop_signal("1"), Ok(Signal::SIGHUP));
        for text in ["KILL", "STOP", "CHLD", "SEGV", "BUS", "ILL", "FPE", "9"] {
            let error = parse_stop_signal(text).unwrap_err();
            assert!(error.contains("does not catch"), "{text}: {error}");
        }
        assert!(
            parse_stop_signal("NOPE")
                .unwrap_err()
                .contains("not a signal name")
        );
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
        assert_eq!(map.entry(Signal::SIGTERM), Some(Some(Signal::SIGINT)));
        assert_eq!(map.entry(Signal::SIGHUP), Some(None));
        assert_eq!(map.entry(Signal::SIGUSR1), None);
    }

    #[test]
    fn every_catchable_signal_of_1_to_31_is_forwarded_but_the_faults() {
        let left_out = [
            Signal::SIGCHLD,
            Signal::SIGKILL,
            Signal::SIGSTOP,
            Signal::SIGSEGV,
            Signal::SIGBUS,
            Signal::SIGILL,
            Signal::SIGFPE,
        ];
        for number in 1..=31 {
            let signal = Signal::try_from(number).unwrap();
            assert_eq!(
                FORWARDED.contains(&signal),
                !left_out.contains(&signal),
                "{signal}"
            );
        }
    }

    #[test]
    fn every_signal_number_has_a_name_as_kill_l_prints_it() {
        assert_eq!(signal_name(15), "TERM");
        assert_eq!(signal_name(31), "SYS");
        assert_eq!(signal_name(34), "RTMIN");
        assert_eq!(signal_name(35), "RTMIN+1");
        assert_eq!(signal_name(36), "RTMIN+2");
        assert_eq!(signal_name(49), "RTMIN+15");
        assert_eq!(signal_name(50), "RTMAX-14");
        assert_eq!(signal_name(63), "RTMAX-1");
        assert_eq!(signal_name(64), "RTMAX");
        assert_eq!(signal_name(32), "SIG32");
        assert_eq!(signal_name(33), "SIG33");
        assert_eq!(signal_name(0), "SIG0");
        assert_eq!(signal_name(65), "SIG65");
    }

    #[test]
    fn short_names_drop_the_prefix() {
        assert_eq!(short_name(Signal::SIGTERM), "TERM");
        assert_eq!(short_name(Signal::SIGWINCH), "WINCH");
    }
}
