//! The tuning flags of the three probe kinds, from one table: `--{kind}-period`, `-timeout`,
//! `-success-threshold`, `-failure-threshold` and `-initial-delay`, each with its
//! `PYINIT_{KIND}_*` variable and Kubernetes' default.
//!
//! [`PROBE_FLAGS`] has one row per kind; `probe_flags!` writes a row's fifteen names and its
//! help lines from the kind's name, so a flag cannot be spelled differently in `--help`, in its
//! variable and in an error message. clap reads the table through the hand-written `Args` of
//! [`ProbeTuningArgs`]; the checks that Kubernetes makes of the values read it for their messages.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use super::ConfigError;
use super::cli::PROBES;
use crate::probe::spec::{ProbeKind, ProbeTiming, parse_threshold};
use crate::units::{format_duration, parse_duration};

/// One flag: its id and long name, the name messages give it, its variable and its help line.
#[derive(Debug)]
struct Flag {
    long: &'static str,
    dashed: &'static str,
    env: &'static str,
    help: &'static str,
}

/// The five tuning flags of one probe kind.
#[derive(Debug)]
struct ProbeFlags {
    kind: ProbeKind,
    period: Flag,
    timeout: Flag,
    success_threshold: Flag,
    failure_threshold: Flag,
    initial_delay: Flag,
}

/// One flag of a kind: `--{name}-{suffix}` and `PYINIT_{ENV}_{ENV_SUFFIX}`.
macro_rules! flag {
    ($name:literal, $env:literal, $suffix:literal, $env_suffix:literal, $help:expr) => {
        Flag {
            long: concat!($name, "-", $suffix),
            dashed: concat!("--", $name, "-", $suffix),
            env: concat!("PYINIT_", $env, "_", $env_suffix),
            help: $help,
        }
    };
}

/// A row of [`PROBE_FLAGS`]: the kind, its name in flags and in variables, and the two help lines
/// that differ between kinds.
macro_rules! probe_flags {
    ($kind:expr, $name:literal, $env:literal, success: $success:literal, failure: $failure:literal $(,)?) => {
        ProbeFlags {
            kind: $kind,
            period: flag!(
                $name,
                $env,
                "period",
                "PERIOD",
                concat!("Time between ", $name, " probes, start to start")
            ),
            timeout: flag!(
                $name,
                $env,
                "timeout",
                "TIMEOUT",
                concat!(
                    "Time a ",
                    $name,
                    " probe may take before it counts as failed"
                )
            ),
            success_threshold: flag!(
                $name,
                $env,
                "success-threshold",
                "SUCCESS_THRESHOLD",
                $success
            ),
            failure_threshold: flag!(
                $name,
                $env,
                "failure-threshold",
                "FAILURE_THRESHOLD",
                $failure
            ),
            initial_delay: flag!(
                $name,
                $env,
                "initial-delay",
                "INITIAL_DELAY",
                concat!("Time from the start until the first ", $name, " probe")
            ),
        }
    };
}

/// Every probe kind's tuning flags, in the order `--help` lists them.
const PROBE_FLAGS: [ProbeFlags; 3] = [
    probe_flags!(
        ProbeKind::Readiness,
        "readiness",
        "READINESS",
        success: "Consecutive successes that make the app ready",
        failure: "Consecutive failures that make the app not ready",
    ),
    probe_flags!(
        ProbeKind::Liveness,
        "liveness",
        "LIVENESS",
        success: "Consecutive successes that make the app live again (must be 1, as in Kubernetes)",
        failure: "Consecutive failures that make the app not live (the kubelet then restarts it)",
    ),
    probe_flags!(
        ProbeKind::Startup,
        "startup",
        "STARTUP",
        success: "Consecutive successes that end startup (must be 1, as in Kubernetes)",
        failure: "Consecutive failures after which startup has failed and liveness is false",
    ),
];

/// Kubernetes' defaults (`ProbeTiming::KUBERNETES_DEFAULT`), as the flags spell them.
const DEFAULT_PERIOD: &str = "10s";
const DEFAULT_TIMEOUT: &str = "1s";
const DEFAULT_SUCCESS_THRESHOLD: &str = "1";
const DEFAULT_FAILURE_THRESHOLD: &str = "3";
const DEFAULT_INITIAL_DELAY: &str = "0s";

/// The tuning flags as parsed: one timing per probe kind, in [`PROBE_FLAGS`]' order.
#[derive(Debug, Clone)]
pub struct ProbeTuningArgs {
    timings: Vec<(ProbeKind, ProbeTiming)>,
}

impl ProbeTuningArgs {
    /// `kind`'s timing, checked against Kubernetes' own limits: a period and a timeout of at
    /// least a moment, and a success threshold of 1 for liveness and startup probes.
    pub fn checked_timing(&self, kind: ProbeKind) -> Result<ProbeTiming, ConfigError> {
        let flags = PROBE_FLAGS.iter().find(|flags| flags.kind == kind);
        let timing = self
            .timings
            .iter()
            .find(|(timing_kind, _)| *timing_kind == kind)
            .map(|(_, timing)| *timing);
        let (Some(flags), Some(timing)) = (flags, timing) else {
            // Every kind has a row and a parsed timing; Kubernetes' defaults if not.
            return Ok(ProbeTiming::KUBERNETES_DEFAULT);
        };
        for (flag, value) in [
            (&flags.period, timing.period),
            (&flags.timeout, timing.timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError {
                    flag: flag.dashed,
                    value: format_duration(value),
                    reason: "must be longer than 0s".to_owned(),
                });
            }
        }
        if kind != ProbeKind::Readiness && timing.success_threshold != NonZeroU32::MIN {
            return Err(ConfigError {
                flag: flags.success_threshold.dashed,
                value: timing.success_threshold.to_string(),
                reason: format!("must be 1 for {} probes, as in Kubernetes", kind.name()),
            });
        }
        Ok(timing)
    }
}

fn tuning_arg(flag: &Flag, value_name: &'static str, default: &'static str) -> Arg {
    Arg::new(flag.long)
        .long(flag.long)
        .env(flag.env)
        .value_name(value_name)
        .default_value(default)
        .help(flag.help)
        .help_heading(PROBES)
        .action(ArgAction::Set)
}

impl Args for ProbeTuningArgs {
    fn augment_args(cmd: Command) -> Command {
        PROBE_FLAGS.iter().fold(cmd, |cmd, flags| {
            let duration =
                |flag, default| tuning_arg(flag, "DURATION", default).value_parser(parse_duration);
            let threshold =
                |flag, default| tuning_arg(flag, "N", default).value_parser(parse_threshold);
            cmd.arg(duration(&flags.period, DEFAULT_PERIOD))
                .arg(duration(&flags.timeout, DEFAULT_TIMEOUT))
                .arg(threshold(
                    &flags.success_threshold,
                    DEFAULT_SUCCESS_THRESHOLD,
                ))
                .arg(threshold(
                    &flags.failure_threshold,
                    DEFAULT_FAILURE_THRESHOLD,
                ))
                .arg(duration(&flags.initial_delay, DEFAULT_INITIAL_DELAY))
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for ProbeTuningArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut timings = Vec::with_capacity(PROBE_FLAGS.len());
        for flags in &PROBE_FLAGS {
            let timing = ProbeTiming {
                period: value::<Duration>(matches, &flags.period)?,
                timeout: value::<Duration>(matches, &flags.timeout)?,
                success_threshold: value::<NonZeroU32>(matches, &flags.success_threshold)?,
                failure_threshold: value::<NonZeroU32>(matches, &flags.failure_threshold)?,
                initial_delay: value::<Duration>(matches, &flags.initial_delay)?,
            };
            timings.push((flags.kind, timing));
        }
        Ok(ProbeTuningArgs { timings })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// A flag's value; every tuning flag has a default, so it is always there.
fn value<T: Copy + Send + Sync + 'static>(
    matches: &ArgMatches,
    flag: &Flag,
) -> Result<T, clap::Error> {
    match matches.try_get_one::<T>(flag.long) {
        Ok(Some(value)) => Ok(*value),
        Ok(None) | Err(_) => Err(clap::Error::raw(
            ErrorKind::MissingRequiredArgument,
            format!("{} has no value", flag.dashed),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_is_named_after_its_kind_and_variable() {
        for flags in &PROBE_FLAGS {
            let name = flags.kind.name();
            for (flag, suffix) in [
                (&flags.period, "period"),
                (&flags.timeout, "timeout"),
                (&flags.success_threshold, "success-threshold"),
                (&flags.failure_threshold, "failure-threshold"),
                (&flags.initial_delay, "initial-delay"),
            ] {
                assert_eq!(flag.long, format!("{name}-{suffix}"));
                assert_eq!(flag.dashed, format!("--{}", flag.long));
                let variable = format!("PYINIT_{}", flag.long.replace('-', "_").to_uppercase());
                assert_eq!(flag.env, variable);
            }
        }
    }

    #[test]
    fn the_defaults_are_kubernetes_defaults() {
        let matches = ProbeTuningArgs::augment_args(Command::new("pyinit"))
            .try_get_matches_from(["pyinit"])
            .unwrap();
        let tuning = ProbeTuningArgs::from_arg_matches(&matches).unwrap();
        for kind in ProbeKind::ALL {
            assert_eq!(
                tuning.checked_timing(kind),
                Ok(ProbeTiming::KUBERNETES_DEFAULT),
                "{kind:?}"
            );
        }
    }
}
