//! Start-up checks: one warning line each, saying what to do, never fatal.
//!
//! Pure: every check takes the facts it judges (the app's final uid, whether pyinit is PID 1, the
//! container's limits, the grace period and drain timeout) and returns the line, if any;
//! [`startup_warnings`] says which checks apply. `main` logs them at warn; nothing here decides
//! to stop.

use std::time::Duration;

use super::facts::{ContainerFacts, Limit};
use crate::units::format_duration;

/// What the checks of an app judge; a health sidecar has no app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppFacts {
    /// The uid the app runs as, after any privilege drop.
    pub uid: u32,
    pub grace_period: Duration,
    /// The part of the grace period a preStop hook takes before the stop signal.
    pub pre_stop_hook: Duration,
    pub drain_timeout: Duration,
}

/// Every start-up warning that applies: the limits and PID 1 always; the app's user and the
/// drain margin only when there is an app (`app` is `None` for a health sidecar).
pub fn startup_warnings(facts: &ContainerFacts, pid: u32, app: Option<AppFacts>) -> Vec<String> {
    let mut warnings = check_limits(facts);
    warnings.extend(check_pid1(pid));
    if let Some(app) = app {
        warnings.extend(check_app_user(app.uid));
        warnings.extend(check_drain_margin(
            app.grace_period,
            app.pre_stop_hook,
            app.drain_timeout,
        ));
    }
    warnings
}

/// The least time pyinit wants between its own SIGKILL at the drain deadline and the kubelet's.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// The app will run as root: `app_uid` is the uid it runs as after any privilege drop.
pub fn check_app_user(app_uid: u32) -> Option<String> {
    (app_uid == 0).then(|| {
        "the app will run as root (uid 0): run it as an unprivileged user \
         (--user, or USER in the Dockerfile)"
            .to_owned()
    })
}

/// No memory or CPU limit (when pyinit could read that there is none).
pub fn check_limits(facts: &ContainerFacts) -> Vec<String> {
    let mut warnings = Vec::new();
    if facts.memory_limit_bytes == Limit::Unlimited {
        warnings.push(
            "no memory limit is set: set resources.limits.memory on the container, so that a \
             leak ends in this pod and not on the whole node"
                .to_owned(),
        );
    }
    if facts.cpu_limit == Limit::Unlimited {
        let cpus = facts
            .host_cpus
            .map_or_else(|| "all the host's".to_owned(), |cpus| cpus.to_string());
        warnings.push(format!(
            "no CPU limit is set: workers are sized for {cpus} CPUs; set \
             resources.limits.cpu, or --web-concurrency N"
        ));
    }
    warnings
}

/// pyinit is not PID 1: it reaps as child subreaper, but the container's signals go elsewhere.
pub fn check_pid1(pid: u32) -> Option<String> {
    (pid != 1).then(|| {
        format!(
            "pyinit is not PID 1 (pid {pid}): it reaps orphans as child subreaper, but signals \
             sent to the container go to PID 1; make pyinit the container's ENTRYPOINT"
        )
    })
}

/// The drain deadline leaves less than [`DRAIN_MARGIN`] before the kubelet's SIGKILL, which
/// comes `grace_period` after the preStop hook began, so `grace_period - pre_stop_hook` after the
/// stop signal from which the drain is measured.
pub fn check_drain_margin(
    grace_period: Duration,
    pre_stop_hook: Duration,
    drain_timeout: Duration,
) -> Option<String> {
    let budget = grace_period.saturating_sub(pre_stop_hook);
    let margin = budget.saturating_sub(drain_timeout);
    let end = if pre_stop_hook.is_zero() {
        format!("--grace-period {}", format_duration(grace_period))
    } else {
        format!(
            "--grace-period {} (less --pre-stop-hook {})",
            format_duration(grace_period),
            format_duration(pre_stop_hook)
        )
    };
    (margin < DRAIN_MARGIN).then(|| {
        format!(
            "--drain-timeout {} leaves {} before {end} ends: the kubelet may SIGKILL pyinit \
             before it has cleaned up; set --drain-timeout to at most {}",
            format_duration(drain_timeout),
            format_duration(margin),
            format_duration(budget.saturating_sub(DRAIN_MARGIN)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::cgroup::CpuQuota;

    fn facts(cpu_limit: Limit<CpuQuota>, memory_limit_bytes: Limit<u64>) -> ContainerFacts {
        ContainerFacts {
            cpu_limit,
            memory_limit_bytes,
            host_cpus: Some(2),
            cpu_cgroup: None,
            memory_cgroup: None,
        }
    }

    #[test]
    fn a_sidecar_is_not_checked_as_an_app() {
        let unlimited = facts(Limit::Unlimited, Limit::Unlimited);
        let root_app = AppFacts {
            uid: 0,
            grace_period: Duration::from_secs(30),
            pre_stop_hook: Duration::ZERO,
            drain_timeout: Duration::from_millis(29500),
        };
        let warnings = startup_warnings(&unlimited, 7, Some(root_app));
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        let warnings = startup_warnings(&unlimited, 7, None);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[2].contains("not PID 1"), "{warnings:?}");
        assert!(startup_warnings(&unlimited, 1, None).len() == 2);
    }

    #[test]
    fn root_is_flagged_by_final_uid() {
        let warning = check_app_user(0).unwrap();
        assert!(
            warning.contains("root") && warning.contains("--user"),
            "{warning}"
        );
        assert_eq!(check_app_user(1000), None);
    }

    #[test]
    fn missing_limits_are_flagged_unknown_ones_are_not() {
        let warnings = check_limits(&facts(Limit::Unlimited, Limit::Unlimited));
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].starts_with("no memory limit is set"));
        assert!(warnings[1].contains("for 2 CPUs"), "{}", warnings[1]);
        let limited = facts(
            Limit::Limited(CpuQuota {
                quota_us: 1,
                period_us: 1,
            }),
            Limit::Limited(1 << 30),
        );
        assert!(check_limits(&limited).is_empty());
        assert!(check_limits(&facts(Limit::Unknown, Limit::Unknown)).is_empty());
    }

    #[test]
    fn pid1_check() {
        assert_eq!(check_pid1(1), None);
        assert!(check_pid1(4242).unwrap().contains("pid 4242"));
    }

    #[test]
    fn drain_margin_check() {
        let secs = Duration::from_secs;
        assert_eq!(check_drain_margin(secs(30), secs(0), secs(25)), None);
        assert_eq!(check_drain_margin(secs(30), secs(0), secs(29)), None);
        assert_eq!(
            check_drain_margin(secs(30), secs(0), Duration::from_millis(29500)).unwrap(),
            "--drain-timeout 29500ms leaves 500ms before --grace-period 30s ends: the kubelet \
             may SIGKILL pyinit before it has cleaned up; set --drain-timeout to at most 29s"
        );
        // The kubelet's SIGKILL comes the grace period after the hook began.
        assert_eq!(check_drain_margin(secs(30), secs(10), secs(19)), None);
        assert_eq!(
            check_drain_margin(secs(30), secs(10), Duration::from_millis(19500)).unwrap(),
            "--drain-timeout 19500ms leaves 500ms before --grace-period 30s (less \
             --pre-stop-hook 10s) ends: the kubelet may SIGKILL pyinit before it has cleaned up; \
             set --drain-timeout to at most 19s"
        );
    }
}
