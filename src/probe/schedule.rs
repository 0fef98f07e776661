//! When a probe runs, as pure arithmetic on instants: not before its initial delay, then once
//! per period, start to start, as the kubelet runs it; and one rule of pyinit's own, on
//! purpose: until a readiness or startup probe first passes, it runs every
//! [`FIRST_PASS_INTERVAL`] while nothing answers it, and backs off from there to the period
//! while the app answers "not ready".
//!
//! The kubelet probes on one ticker of the period from the start (kubernetes/kubernetes
//! `pkg/kubelet/prober/worker.go` at 00421113, `run`, lines 146-188; the initial delay only
//! skips ticks, lines 271-274), so behind it a pod's readiness comes up to a period late twice:
//! once in pyinit, once in the kubelet. The first-pass phase removes the first. A failure in
//! that phase counts toward the failure threshold once per period ([`Schedule::began`]), as the
//! kubelet's would, so that a startup probe's `failure_threshold × period` still budgets the
//! start; successes count one per probe. docs/probes.md says why each case is decided as it is.
//!
//! Nothing here reads a clock or does I/O: `now` and what each probe heard arrive as parameters.

use std::time::{Duration, Instant};

use super::spec::{ProbeKind, ProbeTiming};

/// How often a readiness or startup probe runs before it first passes, while nothing answers
/// it (or the period, if shorter). A refused connection or a missing file costs next to nothing,
/// and at this pace `/readyz` follows an app that starts listening within a tenth of a second.
pub const FIRST_PASS_INTERVAL: Duration = Duration::from_millis(100);

/// What a probe's answer says of the app, which is all [`Schedule`] needs of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// The probe passed.
    Passed,
    /// The app answered, but not ready: an HTTP status that fails, a gRPC status other than
    /// SERVING, an exec probe's exit code (whatever an exec probe says).
    NotReady,
    /// Nothing answered yet: a connection refused, or nothing back within the timeout; a file
    /// probe's every failure (a stat costs the app nothing).
    Nothing,
}

/// When a probe runs: not before the initial delay; then, for readiness and startup until the
/// probe first passes, every [`FIRST_PASS_INTERVAL`] while nothing answers and with a wait that
/// doubles up to the period while the app answers not ready; after that (and for liveness from
/// the start), once per period, start to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    timing: ProbeTiming,
    started: Instant,
    last_began: Option<Instant>,
    /// Until a readiness or startup probe first passed; `None` after, and for liveness.
    first_pass: Option<FirstPass>,
}

/// The state of the phase before the first pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FirstPass {
    /// From the start of the last probe to the start of the next.
    wait: Duration,
    /// The wait after the last "not ready": doubled by the next one, up to the period.
    backoff: Duration,
    /// Consecutive successes: the phase ends at the success threshold.
    successes: u32,
    /// When the last probe whose failure counts began: the next one is a period later.
    counted_began: Option<Instant>,
}

impl Schedule {
    /// `started` is when the container (the app, or the sidecar) started.
    pub fn new(kind: ProbeKind, timing: ProbeTiming, started: Instant) -> Self {
        let first_pass = match kind {
            ProbeKind::Liveness => None,
            ProbeKind::Startup | ProbeKind::Readiness => {
                let fast = FIRST_PASS_INTERVAL.min(timing.period);
                Some(FirstPass {
                    wait: fast,
                    backoff: fast,
                    successes: 0,
                    counted_began: None,
                })
            }
        };
        Schedule {
            timing,
            started,
            last_began: None,
            first_pass,
        }
    }

    /// The earliest moment the next probe may start.
    pub fn next_at(&self) -> Instant {
        match self.last_began {
            None => self.started + self.timing.initial_delay,
            Some(began) => {
                began
                    + self
                        .first_pass
                        .map_or(self.timing.period, |first_pass| first_pass.wait)
            }
        }
    }

    /// Notes that a probe began at `now`; returns whether its failure counts toward the failure
    /// threshold: always after the first pass, and before it once per period.
    pub fn began(&mut self, now: Instant) -> bool {
        self.last_began = Some(now);
        let Some(first_pass) = &mut self.first_pass else {
            return true;
        };
        let counts = first_pass
            .counted_began
            .is_none_or(|counted| now >= counted + self.timing.period);
        if counts {
            first_pass.counted_began = Some(now);
        }
        counts
    }

    /// Notes what the probe that began last heard: it sets the wait before the next one.
    pub fn ended(&mut self, heard: Heard) {
        let period = self.timing.period;
        let Some(first_pass) = &mut self.first_pass else {
            return;
        };
        let fast = FIRST_PASS_INTERVAL.min(period);
        match heard {
            Heard::Passed => {
                first_pass.successes = first_pass.successes.saturating_add(1);
                if first_pass.successes >= self.timing.success_threshold.get() {
                    // Passed: from this probe on, the period, exactly.
                    self.first_pass = None;
                    return;
                }
                first_pass.wait = fast;
            }
            Heard::Nothing => {
                first_pass.successes = 0;
                first_pass.wait = fast;
            }
            Heard::NotReady => {
                first_pass.successes = 0;
                first_pass.backoff = first_pass.backoff.saturating_mul(2).min(period);
                first_pass.wait = first_pass.backoff;
            }
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

    const MS: Duration = Duration::from_millis(1);
    const SECOND: Duration = Duration::from_secs(1);

    /// Kubernetes' defaults (period 10 s, timeout 1 s) with an initial delay of 5 s.
    fn timing(success_threshold: u32) -> ProbeTiming {
        ProbeTiming {
            period: Duration::from_secs(10),
            timeout: SECOND,
            success_threshold: NonZeroU32::new(success_threshold).unwrap(),
            failure_threshold: NonZeroU32::new(3).unwrap(),
            initial_delay: Duration::from_secs(5),
        }
    }

    /// Runs one probe at its time, which hears `heard`; returns when it began and whether its
    /// failure counted.
    fn probe(schedule: &mut Schedule, heard: Heard) -> (Instant, bool) {
        let began = schedule.next_at();
        let counts = schedule.began(began);
        schedule.ended(heard);
        (began, counts)
    }

    #[test]
    fn liveness_waits_for_the_initial_delay_then_one_period_start_to_start() {
        let started = Instant::now();
        let mut schedule = Schedule::new(ProbeKind::Liveness, timing(1), started);
        assert_eq!(schedule.next_at(), started + 5 * SECOND);
        // The first probe ran late (startup gating held it back): the period counts from it.
        let first = started + 12 * SECOND;
        assert!(schedule.began(first));
        // Liveness is never fast, whatever it heard.
        schedule.ended(Heard::Nothing);
        assert_eq!(schedule.next_at(), first + 10 * SECOND);
        assert!(schedule.began(first + 10 * SECOND));
        schedule.ended(Heard::NotReady);
        assert_eq!(schedule.next_at(), first + 20 * SECOND);
    }

    #[test]
    fn without_initial_delay_the_first_probe_runs_at_once() {
        let started = Instant::now();
        let mut no_delay = timing(1);
        no_delay.initial_delay = Duration::ZERO;
        for kind in ProbeKind::ALL {
            assert_eq!(Schedule::new(kind, no_delay, started).next_at(), started);
        }
    }

    #[test]
    fn readiness_probes_every_100ms_until_it_passes_then_at_the_period_exactly() {
        let started = Instant::now();
        let mut schedule = Schedule::new(ProbeKind::Readiness, timing(1), started);
        // The initial delay still holds.
        let (first, counts) = probe(&mut schedule, Heard::Nothing);
        assert_eq!((first, counts), (started + 5 * SECOND, true));
        // Refused for 3.7 s: a probe every 100 ms; one failure per period counts.
        let mut counted = vec![first];
        let mut last = first;
        for _ in 0..36 {
            let (began, counts) = probe(&mut schedule, Heard::Nothing);
            assert_eq!(began, last + 100 * MS);
            if counts {
                counted.push(began);
            }
            last = began;
        }
        assert_eq!(counted, [first]);
        // The app answers: the next probe, 100 ms later, passes.
        let (passed, _) = probe(&mut schedule, Heard::Passed);
        assert_eq!(passed, first + 3700 * MS);
        // From the probe that passed on, the period: a ready app is probed as it always was,
        // and a later failure does not bring the fast phase back.
        assert_eq!(schedule.next_at(), passed + 10 * SECOND);
        let (began, counts) = probe(&mut schedule, Heard::Nothing);
        assert_eq!((began, counts), (passed + 10 * SECOND, true));
        assert_eq!(schedule.next_at(), began + 10 * SECOND);
        assert!(schedule.began(began + 10 * SECOND));
    }

    #[test]
    fn before_the_first_pass_one_failure_per_period_counts() {
        let started = Instant::now();
        let mut schedule = Schedule::new(ProbeKind::Startup, timing(1), started);
        let mut counted = Vec::new();
        // 25 s of refusals.
        for _ in 0..250 {
            let (began, counts) = probe(&mut schedule, Heard::Nothing);
            if counts {
                counted.push(began.duration_since(started));
            }
        }
        // The kubelet's own times: the initial delay, then every period.
        assert_eq!(counted, [5 * SECOND, 15 * SECOND, 25 * SECOND]);
    }

    #[test]
    fn a_probe_that_timed_out_is_followed_at_once() {
        let started = Instant::now();
        let mut schedule = Schedule::new(ProbeKind::Readiness, timing(1), started);
        let began = schedule.next_at();
        schedule.began(began);
        schedule.ended(Heard::Nothing);
        // It took its whole timeout of 1 s: the next one is due already, 100 ms after it began.
        assert_eq!(schedule.next_at(), began + 100 * MS);
        assert!(schedule.next_at() < began + SECOND);
    }

    #[test]
    fn the_success_threshold_counts_one_success_per_probe() {
        let started = Instant::now();
        let mut schedule = Schedule::new(ProbeKind::Readiness, timing(3), started);
        probe(&mut schedule, Heard::Nothing);
        let (second, _) = probe(&mut schedule, Heard::Passed);
        probe(&mut schedule, Heard::Passed);
        // A failure breaks the run of successes: three more are needed, each 100 ms later.
        let (broken, _) = probe(&mut schedule, Heard::Nothing);
        assert_eq!(broken, second + 200 * MS);
        for n in 1..=3 {
            let (began, _) = probe(&mut schedule, Heard::Passed);
            assert_eq!(began, broken + n * 100 * MS);
        }
        assert_eq!(schedule.next_at(), broken + 300 * MS + 10 * SECOND);
    }

    #[test]
    fn an_app_answering_not_ready_is_probed_less_and_less_often() {
        let started = Instant::now();
        let mut schedule = Schedule::new(ProbeKind::Readiness, timing(1), started);
        let (first, _) = probe(&mut schedule, Heard::NotReady);
        let mut times = vec![Duration::ZERO];
        for _ in 0..9 {
            let (began, _) = probe(&mut schedule, Heard::NotReady);
            times.push(began.duration_since(first));
        }
        // The wait doubles from 200 ms up to the period, then stays there.
        let waits: Vec<u128> = times
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).as_millis())
            .collect();
        assert_eq!(
            waits,
            [200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000]
        );
        // Six probes in the first 8 s where probing every 100 ms would make 80.
        assert_eq!(times.iter().filter(|at| **at < 8 * SECOND).count(), 6);
        // The app stops answering: fast again; it answers not ready: the backoff goes on.
        let (refused, _) = probe(&mut schedule, Heard::Nothing);
        assert_eq!(schedule.next_at(), refused + 100 * MS);
        let (again, _) = probe(&mut schedule, Heard::NotReady);
        assert_eq!(schedule.next_at(), again + 10 * SECOND);
        // It passes: the period from there, as after any first pass.
        let (passed, _) = probe(&mut schedule, Heard::Passed);
        assert_eq!(schedule.next_at(), passed + 10 * SECOND);
    }

    #[test]
    fn a_period_shorter_than_100ms_is_never_slowed_down() {
        let started = Instant::now();
        let mut short = timing(1);
        short.period = 50 * MS;
        let mut schedule = Schedule::new(ProbeKind::Readiness, short, started);
        let (first, _) = probe(&mut schedule, Heard::Nothing);
        assert_eq!(schedule.next_at(), first + 50 * MS);
        let (second, counts) = probe(&mut schedule, Heard::NotReady);
        assert!(counts);
        assert_eq!(schedule.next_at(), second + 50 * MS);
    }
}
