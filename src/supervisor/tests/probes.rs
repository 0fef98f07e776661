//! The supervisor's probe rules: it counts every result and announces each change of
//! readiness and liveness once.

use std::num::NonZeroU32;

use super::*;
use crate::probe::spec::{ProbeConfig, ProbeKind, ProbeTarget, ProbeTiming};
use crate::probe::threshold::{Outcome, ProbeGate, ProbeReport, Probes, Verdict};

fn timing() -> ProbeTiming {
    ProbeTiming {
        period: secs(1),
        timeout: secs(1),
        success_threshold: NonZeroU32::MIN,
        failure_threshold: NonZeroU32::new(2).unwrap(),
        initial_delay: Duration::ZERO,
    }
}

fn probes(kinds: &[ProbeKind]) -> Probes {
    let configs: Vec<ProbeConfig> = kinds
        .iter()
        .map(|kind| ProbeConfig {
            kind: *kind,
            target: ProbeTarget::Tcp {
                addr: "127.0.0.1:8000".parse().unwrap(),
            },
            timing: timing(),
        })
        .collect();
    Probes::new(&configs)
}

fn result(kind: ProbeKind, outcome: Outcome, began: Instant) -> Event {
    Event::Probe(ProbeReport {
        kind,
        outcome,
        message: match outcome {
            Outcome::Success => "status 200".to_owned(),
            Outcome::Failure => "connection refused".to_owned(),
            Outcome::Timeout => "timed out after 1s".to_owned(),
        },
        began,
        duration: Duration::from_millis(5),
        failure_counts: true,
    })
}

fn notices(actions: &[Action]) -> Vec<Notice> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Notice(notice) => Some(notice.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn without_probes_ready_and_live_follow_the_app() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    assert!(supervisor.status().checks.ready() && supervisor.status().checks.live());
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert!(
        !supervisor.status().checks.ready(),
        "readiness must drop at SIGTERM"
    );
    assert!(
        supervisor.status().checks.live(),
        "liveness stays ok during a drain"
    );
    supervisor.step(app_exited(ChildStatus::Exited(0), true), t0 + secs(1));
    assert!(
        !supervisor.status().checks.live(),
        "liveness ends with the app"
    );
}

#[test]
fn readiness_probe_makes_the_app_ready_then_not_ready() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP })
        .with_probes(probes(&[ProbeKind::Readiness]));
    assert!(
        !supervisor.status().checks.ready(),
        "not ready before a success"
    );
    assert!(supervisor.status().checks.live());
    let actions = supervisor.step(result(ProbeKind::Readiness, Outcome::Success, t0), t0);
    assert!(supervisor.status().checks.ready());
    assert_eq!(
        notices(&actions),
        vec![Notice::ReadinessChanged {
            ready: true,
            reason: String::new()
        }]
    );
    // Again ready: no second notice.
    let actions = supervisor.step(result(ProbeKind::Readiness, Outcome::Success, t0), t0);
    assert!(notices(&actions).is_empty());
    let failure = result(ProbeKind::Readiness, Outcome::Failure, t0 + secs(2));
    assert!(notices(&supervisor.step(failure.clone(), t0 + secs(2))).is_empty());
    assert!(
        supervisor.status().checks.ready(),
        "one failure is below the threshold"
    );
    let actions = supervisor.step(failure, t0 + secs(3));
    assert!(!supervisor.status().checks.ready());
    assert_eq!(
        notices(&actions),
        vec![Notice::ReadinessChanged {
            ready: false,
            reason: "readiness: connection refused".to_owned()
        }]
    );
}

#[test]
fn has_been_ready_turns_true_at_the_first_pass_and_stays_true() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP })
        .with_probes(probes(&[ProbeKind::Readiness]));
    assert!(!supervisor.status().has_been_ready);
    supervisor.step(result(ProbeKind::Readiness, Outcome::Failure, t0), t0);
    assert!(!supervisor.status().has_been_ready);
    supervisor.step(result(ProbeKind::Readiness, Outcome::Success, t0), t0);
    assert!(supervisor.status().has_been_ready);
    for at in [secs(2), secs(3)] {
        supervisor.step(
            result(ProbeKind::Readiness, Outcome::Failure, t0 + at),
            t0 + at,
        );
    }
    assert!(!supervisor.status().checks.ready());
    assert!(
        supervisor.status().has_been_ready,
        "readiness lost later is not a first start"
    );
    supervisor.step(Event::Signal(Signal::SIGTERM), t0 + secs(4));
    assert!(supervisor.status().has_been_ready);
}

#[test]
fn an_app_ready_from_its_start_has_been_ready_and_a_drain_before_it_is_not() {
    let supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    assert!(supervisor.status().has_been_ready);
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP })
        .with_probes(probes(&[ProbeKind::Readiness]));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(result(ProbeKind::Readiness, Outcome::Success, t0), t0);
    assert!(
        !supervisor.status().has_been_ready,
        "a probe passing during the drain does not make the app ready"
    );
}

#[test]
fn sigterm_drops_readiness_at_once_with_one_notice() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP })
        .with_probes(probes(&[ProbeKind::Readiness]));
    supervisor.step(result(ProbeKind::Readiness, Outcome::Success, t0), t0);
    let actions = supervisor.step(Event::Signal(Signal::SIGTERM), t0 + secs(1));
    assert!(!supervisor.status().checks.ready());
    let notices = notices(&actions);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(matches!(notices[0], Notice::DrainStarted { .. }));
    // A passing probe during the drain changes nothing.
    supervisor.step(
        result(ProbeKind::Readiness, Outcome::Success, t0 + secs(2)),
        t0 + secs(2),
    );
    assert!(!supervisor.status().checks.ready());
}

#[test]
fn failing_liveness_is_forgiven_during_a_drain() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP })
        .with_probes(probes(&[ProbeKind::Liveness]));
    let failure = result(ProbeKind::Liveness, Outcome::Failure, t0);
    supervisor.step(failure.clone(), t0);
    let actions = supervisor.step(failure.clone(), t0 + secs(1));
    assert!(!supervisor.status().checks.live());
    assert_eq!(
        notices(&actions),
        vec![Notice::LivenessChanged {
            live: false,
            reason: "liveness: connection refused".to_owned()
        }]
    );
    // The app stops answering while it shuts down: the kubelet must not restart it. The
    // probe still fails, so nothing says the app is live again.
    let actions = supervisor.step(Event::Signal(Signal::SIGTERM), t0 + secs(2));
    assert!(supervisor.status().checks.live());
    let notices = notices(&actions);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(matches!(notices[0], Notice::DrainStarted { .. }));
    supervisor.step(failure, t0 + secs(3));
    assert!(supervisor.status().checks.live());
}

#[test]
fn startup_gates_readiness_and_its_failure_fails_liveness() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP })
        .with_probes(probes(&[ProbeKind::Startup, ProbeKind::Readiness]));
    assert!(supervisor.status().checks.live() && !supervisor.status().checks.ready());
    // Before startup is done a readiness result is not counted.
    supervisor.step(result(ProbeKind::Readiness, Outcome::Success, t0), t0);
    assert!(!supervisor.status().checks.ready());
    let failure = result(ProbeKind::Startup, Outcome::Failure, t0);
    supervisor.step(failure.clone(), t0);
    assert!(supervisor.status().checks.live());
    let actions = supervisor.step(failure, t0 + secs(1));
    assert!(!supervisor.status().checks.live());
    assert_eq!(
        notices(&actions),
        vec![
            Notice::StartupChanged {
                verdict: Verdict::Failing,
                reason: "connection refused".to_owned()
            },
            Notice::LivenessChanged {
                live: false,
                reason: "startup: connection refused".to_owned()
            },
        ]
    );
    let actions = supervisor.step(
        result(ProbeKind::Startup, Outcome::Success, t0 + secs(2)),
        t0 + secs(2),
    );
    assert!(supervisor.status().checks.live());
    assert!(
        !supervisor.status().checks.ready(),
        "the readiness probe has yet to pass"
    );
    assert_eq!(notices(&actions).len(), 2, "{actions:?}");
    supervisor.step(
        result(ProbeKind::Readiness, Outcome::Success, t0 + secs(3)),
        t0 + secs(3),
    );
    assert!(supervisor.status().checks.ready());
}

#[test]
fn sidecar_follows_the_probes_alone() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::Sidecar)
        .with_probes(probes(&[ProbeKind::Liveness, ProbeKind::Readiness]));
    assert!(supervisor.status().checks.live() && !supervisor.status().checks.ready());
    supervisor.step(result(ProbeKind::Readiness, Outcome::Success, t0), t0);
    assert!(supervisor.status().checks.ready());
    let failure = result(ProbeKind::Liveness, Outcome::Timeout, t0);
    supervisor.step(failure.clone(), t0);
    supervisor.step(failure, t0);
    assert!(!supervisor.status().checks.live());
    let actions = supervisor.step(Event::Signal(Signal::SIGTERM), t0 + secs(1));
    assert!(!supervisor.status().checks.ready());
    // /livez passes from the drain on, but the probe fails as before: no "live again".
    assert!(supervisor.status().checks.live());
    assert!(matches!(
        notices(&actions)[..],
        [Notice::DrainStarted { .. }]
    ));
}

#[test]
fn the_probe_gate_opens_after_startup_and_closes_with_the_app() {
    let t0 = Instant::now();
    let all = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];
    let mut supervisor =
        Supervisor::new(policy(), Workload::App { pid: APP }).with_probes(probes(&all));
    assert_eq!(supervisor.probe_gate(), ProbeGate::Starting);
    supervisor.step(result(ProbeKind::Startup, Outcome::Success, t0), t0);
    assert_eq!(supervisor.probe_gate(), ProbeGate::Started);
    // A drain keeps the probes running: /livez must not fail a pod that drains cleanly.
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(supervisor.probe_gate(), ProbeGate::Started);
    supervisor.step(app_exited(ChildStatus::Exited(0), true), t0 + secs(1));
    assert_eq!(supervisor.probe_gate(), ProbeGate::Closed);
    // A sidecar probes until it exits.
    let mut sidecar = Supervisor::new(policy(), Workload::Sidecar).with_probes(probes(&all[1..]));
    assert_eq!(sidecar.probe_gate(), ProbeGate::Started);
    sidecar.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(sidecar.probe_gate(), ProbeGate::Started);
    sidecar.step(Event::Timer, t0);
    assert_eq!(sidecar.probe_gate(), ProbeGate::Closed);
}
