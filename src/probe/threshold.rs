//! Kubernetes' probe rules as pure counting: whether a probe may run (startup gating) and what
//! its results mean (success and failure thresholds); when it runs is `schedule.rs`'s.
//!
//! The prober tasks (`probe/mod.rs`) ask their `Schedule` when to probe and wait for their
//! [`ProbeGate`], which the supervisor publishes after every step; the supervisor feeds every
//! [`ProbeReport`] to [`Probes::record`] and publishes the counts.
//! The rules, as the kubelet applies them:
//!
//! - A probe's verdict flips only after `success_threshold` consecutive successes or
//!   `failure_threshold` consecutive failures; a timeout is a failure.
//! - Readiness starts not ready and liveness starts ok; startup starts pending.
//! - While a startup probe has not succeeded, liveness and readiness probes do not run. Once it
//!   succeeds it never runs again.
//! - No probe runs before its initial delay; then one runs per period, measured start to start.
//!
//! - Before a readiness or startup probe first passes, pyinit probes more often than the period
//!   (`schedule.rs`); a failure there counts toward the failure threshold only once per period
//!   ([`ProbeReport::failure_counts`]), so that thresholds keep their meaning in time.
//!
//! Nothing here reads a clock or does I/O: `now` and every result arrive as parameters.

use std::time::{Duration, Instant};

use super::spec::{ProbeConfig, ProbeKind, ProbeTiming};

/// How one probe run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// No answer within the timeout; counts as a failure.
    Timeout,
}

impl Outcome {
    pub fn passed(self) -> bool {
        self == Outcome::Success
    }

    /// `success`, `failure`, `timeout`: the metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Timeout => "timeout",
        }
    }
}

/// One probe run, as a prober task reports it to the supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    pub kind: ProbeKind,
    pub outcome: Outcome,
    /// What happened, in a few words: `status 503`, `connection refused`, `exit code 1`.
    pub message: String,
    pub began: Instant,
    pub duration: Duration,
    /// Whether a failure counts toward the failure threshold: false for the probes that the
    /// schedule runs between the period's own ones before the first pass.
    pub failure_counts: bool,
}

/// What a probe's results add up to, by the thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet decided: a startup probe that has not succeeded, a readiness probe that has not
    /// yet passed its success threshold.
    Pending,
    Passing,
    /// The failure threshold was reached.
    Failing,
}

/// The last result of a probe, for verbose output and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastResult {
    pub outcome: Outcome,
    pub message: String,
    /// When the probe finished.
    pub at: Instant,
    pub duration: Duration,
}

/// One probe's counters: Kubernetes' threshold state plus totals for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeState {
    pub kind: ProbeKind,
    /// The target as the user wrote it, for verbose output.
    pub target: String,
    pub timing: ProbeTiming,
    pub verdict: Verdict,
    /// Whether the current run of equal results is of successes, and its length.
    run_passed: bool,
    run_length: u32,
    pub last: Option<LastResult>,
    pub n_success: u64,
    pub n_failure: u64,
    pub n_timeout: u64,
    pub duration_total: Duration,
}

impl ProbeState {
    pub fn new(kind: ProbeKind, target: String, timing: ProbeTiming) -> Self {
        let verdict = match kind {
            // The kubelet assumes a container is alive until its liveness probe says otherwise.
            ProbeKind::Liveness => Verdict::Passing,
            ProbeKind::Startup | ProbeKind::Readiness => Verdict::Pending,
        };
        ProbeState {
            kind,
            target,
            timing,
            verdict,
            run_passed: false,
            run_length: 0,
            last: None,
            n_success: 0,
            n_failure: 0,
            n_timeout: 0,
            duration_total: Duration::ZERO,
        }
    }

    /// Counts one result; returns the new verdict if it changed.
    pub fn record(&mut self, report: &ProbeReport) -> Option<Verdict> {
        match report.outcome {
            Outcome::Success => self.n_success += 1,
            Outcome::Failure => self.n_failure += 1,
            Outcome::Timeout => self.n_timeout += 1,
        }
        self.duration_total = self.duration_total.saturating_add(report.duration);
        self.last = Some(LastResult {
            outcome: report.outcome,
            message: report.message.clone(),
            at: report.began + report.duration,
            duration: report.duration,
        });
        let passed = report.outcome.passed();
        if !passed && !report.failure_counts {
            // A probe between the period's own ones: it ends a run of successes (they must be
            // consecutive), but adds nothing to a run of failures.
            if self.run_passed {
                self.run_length = 0;
            }
            return None;
        }
        if self.run_length > 0 && self.run_passed == passed {
            self.run_length = self.run_length.saturating_add(1);
        } else {
            self.run_passed = passed;
            self.run_length = 1;
        }
        let new_verdict = if passed && self.run_length >= self.timing.success_threshold.get() {
            Verdict::Passing
        } else if !passed && self.run_length >= self.timing.failure_threshold.get() {
            Verdict::Failing
        } else {
            return None;
        };
        if new_verdict == self.verdict {
            return None;
        }
        self.verdict = new_verdict;
        Some(new_verdict)
    }

    /// Why the probe does not pass, in a few words: the last error, or that none ran yet.
    pub fn failure_reason(&self) -> String {
        match &self.last {
            Some(last) if !last.outcome.passed() => last.message.clone(),
            Some(_) => format!(
                "{} of {} successes so far",
                self.run_length, self.timing.success_threshold
            ),
            None => "no result yet".to_owned(),
        }
    }
}

/// The probes of one pyinit, by kind; part of `Status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    pub startup: Option<ProbeState>,
    pub liveness: Option<ProbeState>,
    pub readiness: Option<ProbeState>,
}

impl Probes {
    pub fn new(configs: &[ProbeConfig]) -> Self {
        let mut probes = Probes::default();
        for config in configs {
            let state = ProbeState::new(config.kind, config.target.to_string(), config.timing);
            *probes.slot_mut(config.kind) = Some(state);
        }
        probes
    }

    pub fn get(&self, kind: ProbeKind) -> Option<&ProbeState> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }

    fn slot_mut(&mut self, kind: ProbeKind) -> &mut Option<ProbeState> {
        match kind {
            ProbeKind::Startup => &mut self.startup,
            ProbeKind::Liveness => &mut self.liveness,
            ProbeKind::Readiness => &mut self.readiness,
        }
    }

    /// Every configured probe, in the order startup, liveness, readiness.
    pub fn iter(&self) -> impl Iterator<Item = &ProbeState> {
        ProbeKind::ALL.into_iter().filter_map(|kind| self.get(kind))
    }

    /// True once the startup probe succeeded, or when there is none.
    pub fn startup_done(&self) -> bool {
        self.startup
            .as_ref()
            .is_none_or(|startup| startup.verdict == Verdict::Passing)
    }

    /// True when the startup probe reached its failure threshold (the kubelet would restart).
    pub fn startup_failed(&self) -> bool {
        self.startup
            .as_ref()
            .is_some_and(|startup| startup.verdict == Verdict::Failing)
    }

    /// Counts one report; returns the probe's new verdict if it changed. A report the rules say
    /// should not exist (a liveness result before startup is done) is dropped uncounted.
    pub fn record(&mut self, report: &ProbeReport) -> Option<Verdict> {
        if !ProbeGate::open(self).admits(report.kind) {
            return None;
        }
        self.slot_mut(report.kind).as_mut()?.record(report)
    }
}

/// Which probes may run now, as the supervisor decides it after every step: the probers' own
/// narrow view of it, instead of the whole `Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeGate {
    /// The startup probe has not succeeded yet: it alone runs.
    Starting,
    /// Startup is done, or there is no startup probe: liveness and readiness run.
    Started,
    /// The app has exited or was stopped at the drain deadline, or pyinit exits: nothing is left
    /// to probe.
    Closed,
}

impl ProbeGate {
    /// The gate for `probes` while the app (or the sidecar) runs.
    pub fn open(probes: &Probes) -> Self {
        if probes.startup_done() {
            ProbeGate::Started
        } else {
            ProbeGate::Starting
        }
    }

    /// Whether a probe of `kind` may run now: startup before startup is done, the others after.
    pub fn admits(self, kind: ProbeKind) -> bool {
        match (self, kind) {
            (ProbeGate::Starting, ProbeKind::Startup) => true,
            (ProbeGate::Started, ProbeKind::Liveness | ProbeKind::Readiness) => true,
            (ProbeGate::Starting | ProbeGate::Started | ProbeGate::Closed, _) => false,
        }
    }
}

impl From<ProbeGate> for u8 {
    fn from(gate: ProbeGate) -> u8 {
        match gate {
            ProbeGate::Starting => 0,
            ProbeGate::Started => 1,
            ProbeGate::Closed => 2,
        }
    }
}

impl From<u8> for ProbeGate {
    fn from(number: u8) -> ProbeGate {
        match number {
            0 => ProbeGate::Starting,
            1 => ProbeGate::Started,
            _ => ProbeGate::Closed,
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a fake clock starts at some instant; which one does not matter"
)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::probe::spec::ProbeTarget;

    fn timing(success: u32, failure: u32) -> ProbeTiming {
        ProbeTiming {
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: NonZeroU32::new(success).unwrap(),
            failure_threshold: NonZeroU32::new(failure).unwrap(),
            initial_delay: Duration::from_secs(5),
        }
    }

    /// A fake clock: every result is one period after the previous one.
    struct Clock {
        base: Instant,
        n: u32,
    }

    impl Clock {
        fn new() -> Self {
            Clock {
                base: Instant::now(),
                n: 0,
            }
        }

        fn report(&mut self, kind: ProbeKind, outcome: Outcome) -> ProbeReport {
            self.n += 1;
            ProbeReport {
                kind,
                outcome,
                message: outcome.name().to_owned(),
                began: self.base + Duration::from_secs(10) * self.n,
                duration: Duration::from_millis(3),
                failure_counts: true,
            }
        }
    }

    fn state(kind: ProbeKind, success: u32, failure: u32) -> ProbeState {
        ProbeState::new(
            kind,
            "tcp://127.0.0.1:1".to_owned(),
            timing(success, failure),
        )
    }

    #[test]
    fn readiness_starts_pending_and_needs_the_success_threshold() {
        let mut clock = Clock::new();
        let mut readiness = state(ProbeKind::Readiness, 2, 3);
        assert_eq!(readiness.verdict, Verdict::Pending);
        let success = clock.report(ProbeKind::Readiness, Outcome::Success);
        assert_eq!(readiness.record(&success), None);
        assert_eq!(readiness.failure_reason(), "1 of 2 successes so far");
        // A failure in between restarts the count.
        let failure = clock.report(ProbeKind::Readiness, Outcome::Failure);
        assert_eq!(readiness.record(&failure), None);
        assert_eq!(readiness.record(&success), None);
        assert_eq!(readiness.record(&success), Some(Verdict::Passing));
        assert_eq!(readiness.record(&success), None);
    }

    #[test]
    fn failure_threshold_counts_consecutive_failures_and_timeouts() {
        let mut clock = Clock::new();
        let mut readiness = state(ProbeKind::Readiness, 1, 3);
        let success = clock.report(ProbeKind::Readiness, Outcome::Success);
        assert_eq!(readiness.record(&success), Some(Verdict::Passing));
        let failure = clock.report(ProbeKind::Readiness, Outcome::Failure);
        let timeout = clock.report(ProbeKind::Readiness, Outcome::Timeout);
        assert_eq!(readiness.record(&failure), None);
        assert_eq!(readiness.record(&timeout), None);
        // A success resets the run: two more failures are not enough.
        assert_eq!(readiness.record(&success), None);
        assert_eq!(readiness.record(&failure), None);
        assert_eq!(readiness.record(&failure), None);
        assert_eq!(readiness.verdict, Verdict::Passing);
        assert_eq!(readiness.record(&timeout), Some(Verdict::Failing));
        assert_eq!(readiness.failure_reason(), "timeout");
        assert_eq!(readiness.record(&failure), None);
        assert_eq!(readiness.record(&success), Some(Verdict::Passing));
        assert_eq!(
            (
                readiness.n_success,
                readiness.n_failure,
                readiness.n_timeout
            ),
            (3, 4, 2)
        );
        assert_eq!(readiness.duration_total, Duration::from_millis(27));
    }

    #[test]
    fn a_failure_that_does_not_count_ends_a_run_of_successes_and_adds_no_failure() {
        let mut clock = Clock::new();
        let mut readiness = state(ProbeKind::Readiness, 2, 2);
        let success = clock.report(ProbeKind::Readiness, Outcome::Success);
        let failure = clock.report(ProbeKind::Readiness, Outcome::Failure);
        let between = ProbeReport {
            failure_counts: false,
            ..clock.report(ProbeKind::Readiness, Outcome::Timeout)
        };
        // Failures between the period's probes never reach the threshold, however many.
        for _ in 0..5 {
            assert_eq!(readiness.record(&between), None);
        }
        assert_eq!(readiness.verdict, Verdict::Pending);
        assert_eq!(readiness.failure_reason(), "timeout");
        // One counted failure, then one between: still one, not two.
        assert_eq!(readiness.record(&failure), None);
        assert_eq!(readiness.record(&between), None);
        assert_eq!(readiness.verdict, Verdict::Pending);
        assert_eq!(readiness.record(&failure), Some(Verdict::Failing));
        // Successes must still be consecutive: one between breaks the run.
        assert_eq!(readiness.record(&success), None);
        assert_eq!(readiness.record(&between), None);
        assert_eq!(readiness.record(&success), None);
        assert_eq!(readiness.record(&success), Some(Verdict::Passing));
        assert_eq!(readiness.n_timeout, 7);
    }

    #[test]
    fn liveness_starts_passing_and_fails_at_the_threshold() {
        let mut clock = Clock::new();
        let mut liveness = state(ProbeKind::Liveness, 1, 2);
        assert_eq!(liveness.verdict, Verdict::Passing);
        let failure = clock.report(ProbeKind::Liveness, Outcome::Failure);
        assert_eq!(liveness.record(&failure), None);
        assert_eq!(liveness.record(&failure), Some(Verdict::Failing));
        let success = clock.report(ProbeKind::Liveness, Outcome::Success);
        assert_eq!(liveness.record(&success), Some(Verdict::Passing));
    }

    #[test]
    fn a_threshold_of_one_flips_on_every_change() {
        let mut clock = Clock::new();
        let mut readiness = state(ProbeKind::Readiness, 1, 1);
        for _ in 0..3 {
            let failure = clock.report(ProbeKind::Readiness, Outcome::Failure);
            assert_eq!(readiness.record(&failure), Some(Verdict::Failing));
            let success = clock.report(ProbeKind::Readiness, Outcome::Success);
            assert_eq!(readiness.record(&success), Some(Verdict::Passing));
        }
    }

    #[test]
    fn last_result_remembers_message_and_end_time() {
        let mut clock = Clock::new();
        let mut readiness = state(ProbeKind::Readiness, 1, 3);
        assert_eq!(readiness.failure_reason(), "no result yet");
        let mut report = clock.report(ProbeKind::Readiness, Outcome::Failure);
        report.message = "connection refused".to_owned();
        readiness.record(&report);
        let last = readiness.last.clone().unwrap();
        assert_eq!(last.message, "connection refused");
        assert_eq!(last.at, report.began + Duration::from_millis(3));
        assert_eq!(readiness.failure_reason(), "connection refused");
    }

    fn probes_with_startup() -> Probes {
        let configs: Vec<ProbeConfig> = ProbeKind::ALL
            .into_iter()
            .map(|kind| ProbeConfig {
                kind,
                target: ProbeTarget::Tcp {
                    addr: "127.0.0.1:1".parse().unwrap(),
                },
                timing: timing(1, 2),
            })
            .collect();
        Probes::new(&configs)
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let mut clock = Clock::new();
        let mut probes = probes_with_startup();
        assert!(!probes.startup_done());
        assert!(ProbeGate::open(&probes).admits(ProbeKind::Startup));
        assert!(!ProbeGate::open(&probes).admits(ProbeKind::Liveness));
        assert!(!ProbeGate::open(&probes).admits(ProbeKind::Readiness));
        // Results the rules forbid are dropped, uncounted.
        let early = clock.report(ProbeKind::Readiness, Outcome::Success);
        assert_eq!(probes.record(&early), None);
        assert_eq!(probes.readiness.as_ref().unwrap().n_success, 0);
        let success = clock.report(ProbeKind::Startup, Outcome::Success);
        assert_eq!(probes.record(&success), Some(Verdict::Passing));
        assert!(probes.startup_done());
        assert!(!ProbeGate::open(&probes).admits(ProbeKind::Startup));
        assert!(ProbeGate::open(&probes).admits(ProbeKind::Liveness));
        assert!(ProbeGate::open(&probes).admits(ProbeKind::Readiness));
        // Once done, startup is never counted again.
        let late = clock.report(ProbeKind::Startup, Outcome::Failure);
        assert_eq!(probes.record(&late), None);
        assert!(probes.startup_done());
        let ready = clock.report(ProbeKind::Readiness, Outcome::Success);
        assert_eq!(probes.record(&ready), Some(Verdict::Passing));
    }

    #[test]
    fn startup_failure_threshold_marks_startup_failed() {
        let mut clock = Clock::new();
        let mut probes = probes_with_startup();
        let failure = clock.report(ProbeKind::Startup, Outcome::Failure);
        assert_eq!(probes.record(&failure), None);
        assert!(!probes.startup_failed());
        assert_eq!(probes.record(&failure), Some(Verdict::Failing));
        assert!(probes.startup_failed());
        assert!(!probes.startup_done());
        // Still gated: liveness and readiness never ran.
        assert!(!ProbeGate::open(&probes).admits(ProbeKind::Liveness));
    }

    #[test]
    fn without_a_startup_probe_startup_is_done() {
        let probes = Probes::default();
        assert!(probes.startup_done());
        assert!(!probes.startup_failed());
        assert!(ProbeGate::open(&probes).admits(ProbeKind::Readiness));
        assert!(!ProbeGate::open(&probes).admits(ProbeKind::Startup));
    }
}
