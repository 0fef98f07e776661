//! The exit codes pyinit documents, and the type that carries the app's wait status to them.
//!
//! The app's own code passes through; death by signal N becomes 128+N, as shells report it, for
//! every signal from 1 to 64 (the real-time signals 32..=64 give 160..=192); pyinit's own failures use a
//! small fixed set that cannot be mistaken for a signal death. `--remap-exit` rewrites the final
//! code. Nothing here touches the OS: the reaper turns a raw wait status into a [`ChildStatus`]
//! and `main` turns the final code into the process exit.

use std::fmt;

use crate::signals::spec::signal_name;

/// Bad usage: a flag or variable with an invalid value, or a contradiction between flags.
pub const USAGE: u8 = 2;
/// pyinit itself could not set up (bind, privilege drop, runtime, signal handlers).
pub const SETUP_FAILED: u8 = 125;
/// The command was found but could not be executed (permissions, bad format).
pub const NOT_EXECUTABLE: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;
/// The code of an app that pyinit had to SIGKILL at the drain deadline (128 + SIGKILL).
pub const KILLED_AT_DEADLINE: u8 = 128 + 9;

/// How a child process ended, as the reaper saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStatus {
    /// It called exit with this code (0..=255).
    Exited(i32),
    /// A signal with this number ended it: any of 1..=64, the real-time signals included.
    Signaled(i32),
}

impl ChildStatus {
    /// The code a shell would report for this status: the exit code, or 128+N for signal N.
    pub fn exit_code(self) -> u8 {
        match self {
            ChildStatus::Exited(code) => u8::try_from(code & 0xff).unwrap_or(1),
            ChildStatus::Signaled(signal) => u8::try_from((128 + signal) & 0xff).unwrap_or(1),
        }
    }
}

impl fmt::Display for ChildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildStatus::Exited(code) => write!(f, "exited with code {code}"),
            ChildStatus::Signaled(signal) => {
                write!(f, "killed by signal {signal} ({})", signal_name(*signal))
            }
        }
    }
}

/// The `--remap-exit FROM=TO` table, applied once to the final code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitRemap {
    pairs: Vec<(u8, u8)>,
}

impl ExitRemap {
    pub fn new(pairs: Vec<(u8, u8)>) -> Self {
        ExitRemap { pairs }
    }

    /// True if the table says what `code` becomes.
    pub fn has(&self, code: u8) -> bool {
        self.pairs.iter().any(|(from, _)| *from == code)
    }

    /// The remapped code; the first matching pair wins, and a code without a pair passes through.
    pub fn apply(&self, code: u8) -> u8 {
        self.pairs
            .iter()
            .find(|(from, _)| *from == code)
            .map_or(code, |(_, to)| *to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_passes_through() {
        for code in 0..=255 {
            assert_eq!(
                ChildStatus::Exited(code).exit_code(),
                u8::try_from(code).unwrap()
            );
        }
    }

    #[test]
    fn signal_deaths_are_128_plus_n() {
        assert_eq!(ChildStatus::Signaled(9).exit_code(), 137);
        assert_eq!(ChildStatus::Signaled(11).exit_code(), 139);
        assert_eq!(ChildStatus::Signaled(15).exit_code(), 143);
        assert_eq!(KILLED_AT_DEADLINE, ChildStatus::Signaled(9).exit_code());
    }

    #[test]
    fn real_time_signal_deaths_are_128_plus_n_too() {
        // SIGRTMIN..SIGRTMAX: 128+64 is the highest code a signal death can give.
        assert_eq!(ChildStatus::Signaled(34).exit_code(), 162);
        assert_eq!(ChildStatus::Signaled(36).exit_code(), 164);
        assert_eq!(ChildStatus::Signaled(64).exit_code(), 192);
    }

    #[test]
    fn a_signal_death_names_its_signal() {
        assert_eq!(
            ChildStatus::Signaled(15).to_string(),
            "killed by signal 15 (TERM)"
        );
        assert_eq!(
            ChildStatus::Signaled(36).to_string(),
            "killed by signal 36 (RTMIN+2)"
        );
        assert_eq!(ChildStatus::Exited(3).to_string(), "exited with code 3");
    }

    #[test]
    fn remap_rewrites_only_listed_codes() {
        let remap = ExitRemap::new(vec![(143, 0), (1, 3)]);
        assert_eq!(remap.apply(143), 0);
        assert_eq!(remap.apply(1), 3);
        assert_eq!(remap.apply(7), 7);
        assert_eq!(ExitRemap::default().apply(143), 143);
        assert!(remap.has(143) && remap.has(1) && !remap.has(0));
    }
}
