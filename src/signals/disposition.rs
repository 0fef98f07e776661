//! What a process does with a signal, as /proc shows it: the `SigCgt`, `SigIgn` and `SigBlk`
//! masks of /proc/PID/status and the kernel's default action of each signal. Pure: the text of
//! the status file is a parameter; `processes.rs` reads it.
//!
//! proc(5): "SigBlk, SigIgn, SigCgt: Masks (expressed in hexadecimal) indicating signals being
//! blocked, ignored, and caught", bit N-1 for signal N. Handlers (caught, ignored) belong to the
//! whole process; the blocked mask is the thread's, and the status file of a process is that of
//! its main thread. signal(7) gives each signal's default action, taken when the process neither
//! catches nor ignores it.

use super::spec::{Signal, short_name};

/// A process's signal masks, out of /proc/PID/status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalMasks {
    pub caught: u64,
    pub ignored: u64,
    /// Blocked in the main thread: another thread may still take a signal sent to the process.
    pub blocked: u64,
}

/// What a signal does to a process that has no handler for it (signal(7), "Standard signals").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// The process ends (Term), or ends and dumps core (Core): either way it dies of the signal.
    Die,
    /// Nothing happens (CHLD, URG, WINCH; CONT only resumes a stopped process).
    Nothing,
    /// The process stops until SIGCONT (STOP, TSTP, TTIN, TTOU).
    Stop,
}

/// What a process does with one signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// It has a handler: its own code decides what happens.
    Caught,
    /// It ignores it (`SIG_IGN`): the signal does nothing.
    Ignored,
    /// It has neither: the kernel takes the default action.
    Default(DefaultAction),
}

/// The kernel's default action for `signal`.
pub fn default_action(signal: Signal) -> DefaultAction {
    match signal {
        Signal::SIGCHLD | Signal::SIGURG | Signal::SIGWINCH | Signal::SIGCONT => {
            DefaultAction::Nothing
        }
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU => {
            DefaultAction::Stop
        }
        _ => DefaultAction::Die,
    }
}

/// The bit of `signal` in a /proc mask.
fn bit(signal: Signal) -> u64 {
    u32::try_from(signal as i32 - 1)
        .ok()
        .and_then(|shift| 1u64.checked_shl(shift))
        .unwrap_or(0)
}

impl SignalMasks {
    /// What the process does with `signal`. A handler wins over the ignore bit, which the
    /// kernel never sets together with it.
    pub fn disposition(&self, signal: Signal) -> Disposition {
        if self.caught & bit(signal) != 0 {
            Disposition::Caught
        } else if self.ignored & bit(signal) != 0 {
            Disposition::Ignored
        } else {
            Disposition::Default(default_action(signal))
        }
    }

    /// Whether the main thread blocks `signal`.
    pub fn blocks(&self, signal: Signal) -> bool {
        self.blocked & bit(signal) != 0
    }

    /// The short names of the signals of 1..=31 whose bit is set in `mask`, in number order.
    pub fn names(mask: u64) -> Vec<&'static str> {
        (1..=31)
            .filter_map(|number| Signal::try_from(number).ok())
            .filter(|signal| mask & bit(*signal) != 0)
            .map(short_name)
            .collect()
    }
}

/// The masks out of the text of /proc/PID/status; `None` if one of the three is missing or not
/// hexadecimal.
pub fn parse_status_masks(status: &str) -> Option<SignalMasks> {
    let mask = |field: &str| -> Option<u64> {
        let value = status.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name == field).then_some(value)
        })?;
        u64::from_str_radix(value.trim(), 16).ok()
    };
    Some(SignalMasks {
        caught: mask("SigCgt")?,
        ignored: mask("SigIgn")?,
        blocked: mask("SigBlk")?,
    })
}

/// One process of the app as the drill saw it before the stop signal: the app itself or one of
/// its descendants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppProcess {
    pub pid: i32,
    /// Its command line, as `RunningProcess` keeps it.
    pub command: String,
    /// The process pyinit started (the others are its descendants).
    pub is_app: bool,
    /// In the app's process group: `--forward-to group` signals it too.
    pub in_app_group: bool,
    /// `None` when its status file could not be read (it exited in between).
    pub masks: Option<SignalMasks>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/PID/status of waitress 3.0.2 and of gunicorn 27.0.1's master under pyinit (with
    /// faulthandler on: ILL, ABRT, BUS, FPE and SEGV are its handlers), cut to the lines around
    /// the masks. waitress catches SIGINT only through Python's own handler.
    const WAITRESS: &str = "Name:\twaitress-serve\nUmask:\t0022\nState:\tS (sleeping)\n\
        ShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000001001000\n\
        SigCgt:\t00000001000004ea\nCapInh:\t0000000000000000\n";
    const GUNICORN_MASTER: &str = "SigQ:\t0/96367\nSigPnd:\t0000000000000000\n\
        SigBlk:\t0000000000000000\nSigIgn:\t0000000001001000\nSigCgt:\t0000000008314eef\n";

    #[test]
    fn masks_parse_from_a_status_file() {
        let masks = parse_status_masks(WAITRESS).unwrap();
        assert_eq!(
            masks,
            SignalMasks {
                caught: 0x1_0000_04ea,
                ignored: 0x100_1000,
                blocked: 0,
            }
        );
        assert_eq!(
            SignalMasks::names(masks.caught),
            ["INT", "ILL", "ABRT", "BUS", "FPE", "SEGV"]
        );
        assert_eq!(SignalMasks::names(masks.ignored), ["PIPE", "XFSZ"]);
        assert_eq!(masks.disposition(Signal::SIGINT), Disposition::Caught);
        assert_eq!(
            masks.disposition(Signal::SIGTERM),
            Disposition::Default(DefaultAction::Die)
        );
        assert_eq!(masks.disposition(Signal::SIGPIPE), Disposition::Ignored);
    }

    #[test]
    fn gunicorns_master_catches_its_signals() {
        let masks = parse_status_masks(GUNICORN_MASTER).unwrap();
        assert_eq!(
            SignalMasks::names(masks.caught),
            [
                "HUP", "INT", "QUIT", "ILL", "ABRT", "BUS", "FPE", "USR1", "SEGV", "USR2", "TERM",
                "CHLD", "TTIN", "TTOU", "WINCH"
            ]
        );
        for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
            assert_eq!(masks.disposition(signal), Disposition::Caught, "{signal}");
        }
    }

    #[test]
    fn a_status_without_every_mask_is_unreadable() {
        assert_eq!(parse_status_masks(""), None);
        assert_eq!(parse_status_masks("SigCgt:\t0\nSigIgn:\t0\n"), None);
        assert_eq!(
            parse_status_masks("SigBlk:\tzz\nSigIgn:\t0\nSigCgt:\t0\n"),
            None
        );
        // A field whose name only starts the same is another field.
        assert_eq!(
            parse_status_masks("SigBlkX:\t1\nSigIgn:\t0\nSigCgt:\t0\n"),
            None
        );
    }

    #[test]
    fn blocked_signals_are_the_main_threads() {
        let masks = SignalMasks {
            blocked: 1 << 14,
            ..SignalMasks::default()
        };
        assert!(masks.blocks(Signal::SIGTERM));
        assert!(!masks.blocks(Signal::SIGINT));
        // Blocked is not a handler: the default action waits for the unblock.
        assert_eq!(
            masks.disposition(Signal::SIGTERM),
            Disposition::Default(DefaultAction::Die)
        );
    }

    #[test]
    fn default_actions_follow_signal_7() {
        for signal in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGQUIT,
            Signal::SIGHUP,
        ] {
            assert_eq!(default_action(signal), DefaultAction::Die, "{signal}");
        }
        for signal in [Signal::SIGWINCH, Signal::SIGCHLD, Signal::SIGURG] {
            assert_eq!(default_action(signal), DefaultAction::Nothing, "{signal}");
        }
        for signal in [Signal::SIGTTIN, Signal::SIGTTOU, Signal::SIGTSTP] {
            assert_eq!(default_action(signal), DefaultAction::Stop, "{signal}");
        }
        // A handler or an ignore bit wins over the default action.
        let masks = SignalMasks {
            caught: bit(Signal::SIGTERM),
            ignored: bit(Signal::SIGINT),
            blocked: 0,
        };
        assert_eq!(masks.disposition(Signal::SIGTERM), Disposition::Caught);
        assert_eq!(masks.disposition(Signal::SIGINT), Disposition::Ignored);
    }
}
