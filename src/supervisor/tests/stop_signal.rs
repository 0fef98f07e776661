//! The stop signal (`--stop-signal`): which signals begin the drain, and what the app is sent.

use super::*;

fn stopping_on(stop_signal: Signal, app_stop_signal: Option<Signal>) -> Policy {
    let mut policy = policy();
    policy.stop_signal = stop_signal;
    policy.app_stop_signal = app_stop_signal;
    policy.pre_stop_delay = secs(2);
    policy
}

fn readiness_reason(supervisor: &Supervisor) -> String {
    failing_reasons(supervisor.status().checks.readiness())
}

#[test]
fn the_stop_signal_begins_the_drain_exactly_as_sigterm_does() {
    let t0 = Instant::now();
    let policy = stopping_on(Signal::SIGINT, Some(Signal::SIGINT));
    let mut supervisor = Supervisor::new(policy.clone(), Workload::App { pid: APP });
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGINT), t0),
        vec![drain_started_by(&policy, Signal::SIGINT)]
    );
    let status = supervisor.status();
    assert!(status.draining && !status.checks.ready());
    assert_eq!(
        readiness_reason(&supervisor),
        "shutdown: draining after SIGINT"
    );
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(2)));
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(2)),
        vec![forward(Signal::SIGINT, Reason::StopSignal)]
    );
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(10)));
    let record = &supervisor.status().shutdown;
    assert_eq!(record.drain_signal, Some(Signal::SIGINT));
    assert_eq!(record.stop_signal, Some((Signal::SIGINT, t0 + secs(2))));
}

#[test]
fn sigterm_still_begins_the_drain_and_the_app_gets_its_stop_signal_not_term() {
    let t0 = Instant::now();
    let policy = stopping_on(Signal::SIGINT, Some(Signal::SIGINT));
    let mut supervisor = Supervisor::new(policy.clone(), Workload::App { pid: APP });
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGTERM), t0),
        vec![drain_started_by(&policy, Signal::SIGTERM)]
    );
    assert_eq!(
        readiness_reason(&supervisor),
        "shutdown: draining after SIGTERM"
    );
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(2)),
        vec![forward(Signal::SIGINT, Reason::StopSignal)]
    );
    assert_eq!(
        supervisor.status().signals_forwarded[Signal::SIGTERM as usize],
        0
    );
}

#[test]
fn the_supervisor_sends_the_app_stop_signal_it_was_given() {
    let t0 = Instant::now();
    let mut policy = stopping_on(Signal::SIGINT, Some(Signal::SIGQUIT));
    policy.pre_stop_delay = Duration::ZERO;
    let mut supervisor = Supervisor::new(policy.clone(), Workload::App { pid: APP });
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGINT), t0),
        vec![
            drain_started_by(&policy, Signal::SIGINT),
            forward(Signal::SIGQUIT, Reason::StopSignal)
        ]
    );
}

#[test]
fn with_another_stop_signal_sigint_is_the_stop_request_and_other_signals_pass() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(
        stopping_on(Signal::SIGUSR2, Some(Signal::SIGTERM)),
        Workload::App { pid: APP },
    );
    // INT is an ordinary signal unless it is the stop signal.
    for signal in [Signal::SIGINT, Signal::SIGHUP] {
        assert_eq!(
            supervisor.step(Event::Signal(signal), t0),
            vec![forward(signal, Reason::Forwarded { received: signal })]
        );
    }
    assert_eq!(supervisor.status().phase, Phase::Running);
    supervisor.step(Event::Signal(Signal::SIGUSR2), t0);
    assert_eq!(supervisor.status().phase, Phase::Draining);
    // During the drain, signals other than a stop request still pass.
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGINT), t0 + secs(1)),
        vec![forward(
            Signal::SIGINT,
            Reason::Forwarded {
                received: Signal::SIGINT
            }
        )]
    );
}

#[test]
fn a_second_stop_request_of_either_kind_ends_the_pre_stop_delay_early() {
    let t0 = Instant::now();
    for second in [Signal::SIGINT, Signal::SIGTERM] {
        let policy = stopping_on(Signal::SIGINT, Some(Signal::SIGINT));
        let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
        supervisor.step(Event::Signal(Signal::SIGINT), t0);
        assert_eq!(
            supervisor.step(Event::Signal(second), t0 + secs(1)),
            vec![forward(Signal::SIGINT, Reason::StopSignal)],
            "{second}"
        );
        // No deadline moves, and the delay's end sends nothing more.
        assert_eq!(supervisor.next_deadline(), Some(t0 + secs(10)));
        assert_eq!(supervisor.step(Event::Timer, t0 + secs(2)), vec![]);
    }
}

#[test]
fn a_stop_signal_the_map_drops_still_drains_to_the_deadline() {
    let t0 = Instant::now();
    let policy = stopping_on(Signal::SIGINT, None);
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGINT), t0);
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(2)),
        vec![Action::Notice(Notice::SignalDropped {
            received: Signal::SIGINT
        })]
    );
    assert_eq!(supervisor.status().shutdown.stop_signal, None);
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(10)));
}

#[test]
fn a_sidecar_drains_on_its_stop_signal_on_sigterm_and_on_sigint() {
    let t0 = Instant::now();
    for signal in [Signal::SIGUSR2, Signal::SIGTERM, Signal::SIGINT] {
        let policy = stopping_on(Signal::SIGUSR2, Some(Signal::SIGUSR2));
        let mut supervisor = Supervisor::new(policy.clone(), Workload::Sidecar);
        assert_eq!(
            supervisor.step(Event::Signal(Signal::SIGHUP), t0),
            vec![Action::Notice(Notice::SignalIgnored {
                received: Signal::SIGHUP
            })]
        );
        assert_eq!(
            supervisor.step(Event::Signal(signal), t0),
            vec![drain_started_by(&policy, signal)],
            "{signal}"
        );
        assert!(!supervisor.status().checks.ready());
        assert_eq!(
            supervisor.step(Event::Timer, t0 + secs(2)),
            vec![Action::Exit(0)]
        );
    }
}
