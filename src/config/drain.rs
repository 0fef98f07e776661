//! The drain's timing: what the grace period leaves after a preStop hook, and from it the drain
//! timeout, the pre-stop delay, the hard stop and the deadline's dump window, each default
//! resolved and each value checked against the others.
//!
//! Pure: `Config::from_cli` hands it the flags and two facts (in Kubernetes or not, an app or a
//! health sidecar) and gets a [`DrainTiming`], or the [`ConfigError`] that names the flag.
//!
//! The kubelet counts the grace period from the start of a container's preStop hook, and has the
//! runtime send the stop signal only once the hook has returned, with what the hook left of the
//! grace period and never less than 2 s (kubernetes/kubernetes
//! pkg/kubelet/kuberuntime/kuberuntime_container.go, `killContainer`:
//! `gracePeriod = gracePeriod - m.executePreStopHook(...)`, then raised to
//! `minimumGracePeriodInSeconds`, then `StopContainer(ctx, id, gracePeriod)`). So pyinit's budget, from the stop signal to the
//! kubelet's SIGKILL, is `--grace-period` less `--pre-stop-hook`: every deadline below is cut
//! from it, and measured from the stop signal.

use std::time::Duration;

use super::ConfigError;
use super::cli::Cli;
use crate::server::{ProfileChange, ServerProfile, cold_stop_after};
use crate::supervisor::policy::{DeadlineDump, HardStop};
use crate::units::format_duration;

/// The least the kubelet leaves a container after its preStop hook: its
/// `minimumGracePeriodInSeconds`. A hook that leaves less is refused: a drain planned on the
/// kubelet's floor would race its SIGKILL.
pub const KUBELET_MINIMUM_GRACE: Duration = Duration::from_secs(2);
/// The longest default dump window: a Python process prints its traceback in milliseconds, and
/// pyinit signals one process at a time, so a second covers a server's many workers.
pub const DEADLINE_DUMP_WINDOW: Duration = Duration::from_secs(1);
/// The longest default pre-stop delay, in Kubernetes.
const PRE_STOP_DELAY: Duration = Duration::from_secs(5);

/// The drain as it will run, every value measured from the stop signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainTiming {
    pub grace_period: Duration,
    /// How long the preStop hook runs before the stop signal (`--pre-stop-hook`).
    pub pre_stop_hook: Duration,
    /// What the grace period leaves once the hook has run: the time from the stop signal to the
    /// kubelet's SIGKILL.
    pub budget: Duration,
    pub drain_timeout: Duration,
    pub pre_stop_delay: Duration,
    pub hard_stop: Option<HardStop>,
    pub deadline_dump: Option<DeadlineDump>,
}

/// Where pyinit runs, as far as the drain's defaults go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// `KUBERNETES_SERVICE_HOST` is set.
    pub in_kubernetes: bool,
    /// No command: a health sidecar.
    pub sidecar: bool,
    /// The server's profile: a server that cannot drain gets the pre-stop delay everywhere, a
    /// celery worker its cold stop.
    pub server: Option<&'static ServerProfile>,
}

/// The drain's timing from the flags, or the first value that cannot be used; what the server's
/// profile changed of the defaults is added to `changes`.
pub fn drain_timing(
    cli: &Cli,
    setting: Setting,
    changes: &mut Vec<ProfileChange>,
) -> Result<DrainTiming, ConfigError> {
    let grace_period = cli.grace_period;
    if grace_period.is_zero() {
        return Err(ConfigError {
            flag: "--grace-period",
            value: format_duration(grace_period),
            reason: "must be longer than 0s".to_owned(),
        });
    }
    let pre_stop_hook = cli.pre_stop_hook;
    let budget = budget_after_hook(grace_period, pre_stop_hook)?;
    let drain_timeout = cli
        .drain_timeout
        .unwrap_or_else(|| budget - (budget / 5).min(Duration::from_secs(5)));
    if drain_timeout >= budget || drain_timeout.is_zero() {
        return Err(ConfigError {
            flag: "--drain-timeout",
            value: format_duration(drain_timeout),
            reason: format!(
                "must be longer than 0s and shorter than {}",
                budget_words(grace_period, pre_stop_hook)
            ),
        });
    }
    let pre_stop_delay = pre_stop_delay(cli, setting, drain_timeout, changes)?;
    let hard_stop = hard_stop(cli, pre_stop_delay, drain_timeout, setting.server, changes)?;
    let deadline_dump = deadline_dump(cli, pre_stop_hook, budget, drain_timeout)?;
    Ok(DrainTiming {
        grace_period,
        pre_stop_hook,
        budget,
        drain_timeout,
        pre_stop_delay,
        hard_stop,
        deadline_dump,
    })
}

/// What the grace period leaves after the preStop hook; a hook must leave the kubelet's minimum.
fn budget_after_hook(
    grace_period: Duration,
    pre_stop_hook: Duration,
) -> Result<Duration, ConfigError> {
    if pre_stop_hook.is_zero() {
        return Ok(grace_period);
    }
    let budget = grace_period.saturating_sub(pre_stop_hook);
    if budget < KUBELET_MINIMUM_GRACE {
        return Err(ConfigError {
            flag: "--pre-stop-hook",
            value: format_duration(pre_stop_hook),
            reason: format!(
                "leaves {} of --grace-period ({}) for the drain, less than the {} the kubelet \
                 gives a container after its preStop hook: shorten the hook or raise \
                 terminationGracePeriodSeconds and --grace-period together",
                format_duration(budget),
                format_duration(grace_period),
                format_duration(KUBELET_MINIMUM_GRACE)
            ),
        });
    }
    Ok(budget)
}

/// `--grace-period (30s)`, or with a hook what it leaves: the end every deadline must precede.
fn budget_words(grace_period: Duration, pre_stop_hook: Duration) -> String {
    if pre_stop_hook.is_zero() {
        format!("--grace-period ({})", format_duration(grace_period))
    } else {
        format!(
            "what --grace-period ({}) leaves after --pre-stop-hook ({}): {}",
            format_duration(grace_period),
            format_duration(pre_stop_hook),
            format_duration(grace_period.saturating_sub(pre_stop_hook))
        )
    }
}

/// The pre-stop delay: as given, else min(5s, grace period / 4, drain timeout / 2) for an app in
/// Kubernetes, and 0 everywhere else. 0 after a preStop hook: the endpoints were removed while it
/// ran, which is what the delay waits for. 0 for a sidecar: it serves no traffic, and as a native
/// sidecar its stop signal comes only once the pod's main containers have exited, when every
/// second it waited would come out of the grace period the pod's containers share.
///
/// A server that cannot drain (daphne cancels every request on its stop signal) gets the delay
/// everywhere, after a preStop hook too: the requests in flight at the stop signal can only
/// finish before the app gets it.
fn pre_stop_delay(
    cli: &Cli,
    setting: Setting,
    drain_timeout: Duration,
    changes: &mut Vec<ProfileChange>,
) -> Result<Duration, ConfigError> {
    let usual = setting.in_kubernetes && !setting.sidecar && cli.pre_stop_hook.is_zero();
    let cannot_drain = setting.server.is_some_and(|profile| !profile.drains);
    let delay = match cli.pre_stop_delay {
        Some(delay) => delay,
        None if usual || cannot_drain => PRE_STOP_DELAY
            .min(cli.grace_period / 4)
            .min(drain_timeout / 2),
        None => Duration::ZERO,
    };
    if delay >= drain_timeout {
        return Err(ConfigError {
            flag: "--pre-stop-delay",
            value: format_duration(delay),
            reason: format!(
                "must be shorter than --drain-timeout ({})",
                format_duration(drain_timeout)
            ),
        });
    }
    if cli.pre_stop_delay.is_none() && cannot_drain && !usual && !delay.is_zero() {
        changes.push(ProfileChange::PreStopDelay(delay));
    }
    Ok(delay)
}

/// `--hard-stop-signal` at `--hard-stop-after`, which must fall inside the drain; without them,
/// the profile's cold stop at [`cold_stop_after`].
fn hard_stop(
    cli: &Cli,
    pre_stop_delay: Duration,
    drain_timeout: Duration,
    server: Option<&ServerProfile>,
    changes: &mut Vec<ProfileChange>,
) -> Result<Option<HardStop>, ConfigError> {
    // clap's `requires` makes a lone flag a usage error before this point.
    let (Some(signal), Some(after)) = (cli.hard_stop_signal, cli.hard_stop_after) else {
        let cold_stop = server.and_then(|profile| {
            Some(HardStop {
                signal: profile.cold_stop_signal?,
                after: cold_stop_after(pre_stop_delay, drain_timeout)?,
            })
        });
        changes.extend(cold_stop.map(ProfileChange::ColdStop));
        return Ok(cold_stop);
    };
    if after <= pre_stop_delay || after >= drain_timeout {
        return Err(ConfigError {
            flag: "--hard-stop-after",
            value: format_duration(after),
            reason: format!(
                "must fall after --pre-stop-delay ({}) and before --drain-timeout ({})",
                format_duration(pre_stop_delay),
                format_duration(drain_timeout)
            ),
        });
    }
    Ok(Some(HardStop { signal, after }))
}

/// The dump at the drain deadline, unless turned off. What the drain timeout leaves of the
/// budget holds the dump window and the SIGKILL after it: a window given must end before the
/// budget does, and the default takes at most half of what is left, leaving the rest to the
/// SIGKILL and the reaping.
fn deadline_dump(
    cli: &Cli,
    pre_stop_hook: Duration,
    budget: Duration,
    drain_timeout: Duration,
) -> Result<Option<DeadlineDump>, ConfigError> {
    if !cli.deadline_dump {
        return Ok(None);
    }
    let left = budget.saturating_sub(drain_timeout);
    let window = match cli.deadline_dump_window {
        Some(window) if window.is_zero() || window >= left => {
            return Err(ConfigError {
                flag: "--deadline-dump-window",
                value: format_duration(window),
                reason: format!(
                    "must be longer than 0s and end before {}: --drain-timeout ({}) leaves {}; \
                     --deadline-dump off turns the dump off",
                    budget_words(cli.grace_period, pre_stop_hook),
                    format_duration(drain_timeout),
                    format_duration(left)
                ),
            });
        }
        Some(window) => window,
        None => DEADLINE_DUMP_WINDOW.min(left / 2),
    };
    Ok(Some(DeadlineDump {
        signal: cli.deadline_dump_signal,
        window,
    }))
}
