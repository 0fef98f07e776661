//! Every transition of the supervisor, driven by hand-made events and an explicit clock.

#![allow(
    clippy::disallowed_methods,
    reason = "the explicit clock starts at some instant; which one does not matter"
)]

use std::time::{Duration, Instant};

use super::policy::HardStop;
use super::*;
use crate::exit::ExitRemap;
use crate::signals::spec::{ForwardTarget, RewriteMap};

mod deadline;
mod probes;
mod stop_signal;

const APP: i32 = 42;

fn policy() -> Policy {
    Policy {
        stop_signal: Signal::SIGTERM,
        app_stop_signal: Some(Signal::SIGTERM),
        forward_to: ForwardTarget::Child,
        rewrite: RewriteMap::default(),
        pre_stop_delay: Duration::ZERO,
        drain_timeout: Duration::from_secs(10),
        hard_stop: None,
        deadline_dump: None,
        orphan_grace: Duration::from_secs(2),
        kill_wait: Duration::from_secs(1),
        remap: ExitRemap::default(),
        clean_death_by_stop_signal: false,
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn forward(signal: Signal, reason: Reason) -> Action {
    Action::Forward {
        signal,
        pid: APP,
        target: ForwardTarget::Child,
        reason,
    }
}

fn app_exited(status: ChildStatus, children_left: bool) -> Event {
    Event::Reaped {
        app: Some(status),
        n_orphans: 0,
        children_left,
    }
}

/// A reaping pass without the app in it.
fn others_reaped(n_orphans: usize, children_left: bool) -> Event {
    Event::Reaped {
        app: None,
        n_orphans,
        children_left,
    }
}

fn drain_started(policy: &Policy) -> Action {
    drain_started_by(policy, Signal::SIGTERM)
}

fn drain_started_by(policy: &Policy, signal: Signal) -> Action {
    Action::Notice(Notice::DrainStarted {
        signal,
        pre_stop_delay: policy.pre_stop_delay,
        drain_timeout: policy.drain_timeout,
        hard_stop: policy.hard_stop,
    })
}

#[test]
fn running_forwards_signals_and_counts_them() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    for signal in [
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGTTIN,
        Signal::SIGWINCH,
    ] {
        let actions = supervisor.step(Event::Signal(signal), t0);
        assert_eq!(
            actions,
            vec![forward(signal, Reason::Forwarded { received: signal })]
        );
    }
    assert_eq!(
        supervisor.status().signals_forwarded[Signal::SIGHUP as usize],
        1
    );
    assert_eq!(supervisor.status().phase, Phase::Running);
    assert!(!supervisor.status().draining);
    assert_eq!(supervisor.next_deadline(), None);
}

#[test]
fn signal_map_rewrites_and_drops() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.rewrite = RewriteMap::new(vec![
        (Signal::SIGHUP, Some(Signal::SIGUSR2)),
        (Signal::SIGUSR1, None),
    ]);
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGHUP), t0),
        vec![forward(
            Signal::SIGUSR2,
            Reason::Forwarded {
                received: Signal::SIGHUP
            }
        )]
    );
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGUSR1), t0),
        vec![Action::Notice(Notice::SignalDropped {
            received: Signal::SIGUSR1
        })]
    );
}

#[test]
fn forward_to_group_targets_the_group() {
    let mut policy = policy();
    policy.forward_to = ForwardTarget::Group;
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    let actions = supervisor.step(Event::Signal(Signal::SIGUSR1), Instant::now());
    assert!(matches!(
        actions.as_slice(),
        [Action::Forward {
            target: ForwardTarget::Group,
            ..
        }]
    ));
}

#[test]
fn sigterm_drains_at_once_without_pre_stop_delay() {
    let t0 = Instant::now();
    let policy = policy();
    let mut supervisor = Supervisor::new(policy.clone(), Workload::App { pid: APP });
    let actions = supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(
        actions,
        vec![
            drain_started(&policy),
            forward(Signal::SIGTERM, Reason::StopSignal)
        ]
    );
    assert!(supervisor.status().draining);
    assert_eq!(supervisor.status().phase, Phase::Draining);
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(10)));
}

#[test]
fn the_app_gets_the_app_stop_signal_of_the_policy() {
    let t0 = Instant::now();
    let mut policy = policy();
    // What --signal-map or a server's profile made of TERM; the supervisor derives nothing.
    policy.app_stop_signal = Some(Signal::SIGINT);
    let mut supervisor = Supervisor::new(policy.clone(), Workload::App { pid: APP });
    let actions = supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(
        actions.last(),
        Some(&forward(Signal::SIGINT, Reason::StopSignal))
    );
    assert_eq!(
        supervisor.status().signals_forwarded[Signal::SIGINT as usize],
        1
    );
    assert_eq!(
        supervisor.status().shutdown.stop_signal,
        Some((Signal::SIGINT, t0))
    );
    policy.app_stop_signal = None;
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    let actions = supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(
        actions.last(),
        Some(&Action::Notice(Notice::SignalDropped {
            received: Signal::SIGTERM
        }))
    );
}

/// The app's exit after a drain that sent TERM, in a reaping pass with `children_left`.
fn exit_after_term(policy: Policy, status: ChildStatus, children_left: bool) -> Vec<Action> {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(
        Event::Reaped {
            app: Some(status),
            n_orphans: 0,
            children_left,
        },
        t0 + secs(1),
    )
}

#[test]
fn a_server_that_re_raises_its_stop_signal_after_draining_exits_0() {
    let mut policy = policy();
    policy.clean_death_by_stop_signal = true;
    let term = ChildStatus::Signaled(Signal::SIGTERM as i32);
    let actions = exit_after_term(policy.clone(), term, false);
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
    assert!(actions.contains(&Action::Notice(Notice::AppExited {
        status: term,
        since_drain: Some(secs(1)),
        after_deadline: false,
        clean_stop: true,
    })));
    // With processes left behind, the 0 waits for them.
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy.clone(), Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    let reaped = |children_left| Event::Reaped {
        app: None,
        n_orphans: 1,
        children_left,
    };
    supervisor.step(
        Event::Reaped {
            app: Some(term),
            n_orphans: 0,
            children_left: true,
        },
        t0 + secs(1),
    );
    assert!(supervisor.status().shutdown.clean_death_by_stop_signal);
    assert_eq!(
        supervisor.step(reaped(false), t0 + secs(2)).last(),
        Some(&Action::Exit(0))
    );
    // Any other death is the app's code, as always.
    for status in [
        ChildStatus::Signaled(Signal::SIGKILL as i32),
        ChildStatus::Signaled(Signal::SIGINT as i32),
        ChildStatus::Exited(3),
    ] {
        let code = status.exit_code();
        let actions = exit_after_term(policy.clone(), status, false);
        assert_eq!(actions.last(), Some(&Action::Exit(code)), "{status}");
    }
    // --remap-exit still applies to the 0 (and to nothing else here).
    policy.remap = ExitRemap::new(vec![(0, 5)]);
    assert_eq!(
        exit_after_term(policy, term, false).last(),
        Some(&Action::Exit(5))
    );
}

#[test]
fn a_death_by_the_stop_signal_pyinit_did_not_send_keeps_its_code() {
    let mut policy = policy();
    policy.clean_death_by_stop_signal = true;
    let term = ChildStatus::Signaled(Signal::SIGTERM as i32);
    // Not a server that re-raises: 143, as always.
    assert_eq!(
        exit_after_term(self::policy(), term, false).last(),
        Some(&Action::Exit(143))
    );
    // TERM before any drain (from elsewhere): 143.
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy.clone(), Workload::App { pid: APP });
    let actions = supervisor.step(
        Event::Reaped {
            app: Some(term),
            n_orphans: 0,
            children_left: false,
        },
        t0,
    );
    assert_eq!(actions.last(), Some(&Action::Exit(143)));
    // TERM during the pre-stop delay, before pyinit sent its stop signal: 143.
    policy.pre_stop_delay = secs(3);
    assert_eq!(
        exit_after_term(policy.clone(), term, false).last(),
        Some(&Action::Exit(143))
    );
    // The stop signal pyinit sent was INT: a death by TERM is not the clean one.
    policy.pre_stop_delay = Duration::ZERO;
    policy.app_stop_signal = Some(Signal::SIGINT);
    assert_eq!(
        exit_after_term(policy, term, false).last(),
        Some(&Action::Exit(143))
    );
}

#[test]
fn pre_stop_delay_holds_the_stop_signal_back() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.pre_stop_delay = secs(3);
    let mut supervisor = Supervisor::new(policy.clone(), Workload::App { pid: APP });
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGTERM), t0),
        vec![drain_started(&policy)]
    );
    assert!(
        supervisor.status().draining,
        "readiness must turn false before the stop signal"
    );
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(3)));
    // An early timer wake-up does nothing.
    assert_eq!(supervisor.step(Event::Timer, t0 + secs(2)), vec![]);
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(3)),
        vec![forward(Signal::SIGTERM, Reason::StopSignal)]
    );
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(10)));
}

#[test]
fn second_sigterm_is_forwarded_and_moves_no_deadline() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    let actions = supervisor.step(Event::Signal(Signal::SIGTERM), t0 + secs(4));
    assert_eq!(actions, vec![forward(Signal::SIGTERM, Reason::StopSignal)]);
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(10)));
}

#[test]
fn second_sigterm_ends_the_pre_stop_delay_early() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.pre_stop_delay = secs(5);
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGTERM), t0 + secs(1)),
        vec![forward(Signal::SIGTERM, Reason::StopSignal)]
    );
    // The stop signal is not sent a second time when the delay ends.
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(10)));
    assert_eq!(supervisor.step(Event::Timer, t0 + secs(5)), vec![]);
}

#[test]
fn other_signals_are_still_forwarded_while_draining() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGQUIT), t0 + secs(1)),
        vec![forward(
            Signal::SIGQUIT,
            Reason::Forwarded {
                received: Signal::SIGQUIT
            }
        )]
    );
}

#[test]
fn app_that_exits_on_sigterm_ends_pyinit_with_its_code() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    let actions = supervisor.step(app_exited(ChildStatus::Exited(0), false), t0 + secs(1));
    assert_eq!(
        actions,
        vec![
            Action::Notice(Notice::AppExited {
                status: ChildStatus::Exited(0),
                since_drain: Some(secs(1)),
                after_deadline: false,
                clean_stop: false,
            }),
            Action::Exit(0),
        ]
    );
    assert_eq!(
        supervisor.status().app,
        AppState::Exited { exit_code: Some(0) }
    );
    assert_eq!(supervisor.status().phase, Phase::Exited);
    assert_eq!(supervisor.next_deadline(), None);
}

#[test]
fn app_killed_by_a_signal_exits_128_plus_n_and_remaps() {
    let mut policy = policy();
    policy.remap = ExitRemap::new(vec![(143, 0)]);
    let mut supervisor = Supervisor::new(policy.clone(), Workload::App { pid: APP });
    let actions = supervisor.step(app_exited(ChildStatus::Signaled(15), false), Instant::now());
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    let actions = supervisor.step(app_exited(ChildStatus::Signaled(11), false), Instant::now());
    assert_eq!(actions.last(), Some(&Action::Exit(139)));
    assert_eq!(
        supervisor.status().app,
        AppState::Exited {
            exit_code: Some(139)
        }
    );
}

#[test]
fn hard_stop_signal_comes_between_stop_signal_and_deadline() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.hard_stop = Some(HardStop {
        signal: Signal::SIGQUIT,
        after: secs(4),
    });
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(4)));
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(4)),
        vec![forward(Signal::SIGQUIT, Reason::HardStop)]
    );
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(10)));
    let actions = supervisor.step(app_exited(ChildStatus::Exited(0), false), t0 + secs(5));
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
}

#[test]
fn hard_stop_is_not_sent_to_an_app_that_already_exited() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.hard_stop = Some(HardStop {
        signal: Signal::SIGQUIT,
        after: secs(4),
    });
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(app_exited(ChildStatus::Exited(0), true), t0 + secs(1));
    let actions = supervisor.step(Event::Timer, t0 + secs(4));
    assert!(
        !actions
            .iter()
            .any(|action| matches!(action, Action::Forward { .. }))
    );
}

#[test]
fn leftovers_of_an_exited_app_get_term_then_kill() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    let actions = supervisor.step(app_exited(ChildStatus::Exited(7), true), t0);
    assert_eq!(
        actions.last(),
        Some(&Action::SignalRemaining(Signal::SIGTERM))
    );
    assert_eq!(supervisor.status().phase, Phase::Stopping);
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(2)));
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(2)),
        vec![
            Action::Notice(Notice::LeftoversKilled),
            Action::SignalRemaining(Signal::SIGKILL)
        ]
    );
    let actions = supervisor.step(others_reaped(3, false), t0 + secs(2));
    assert_eq!(actions, vec![Action::Exit(7)]);
    assert_eq!(supervisor.status().orphans_reaped, 3);
    assert_eq!(supervisor.status().phase, Phase::Exited);
}

#[test]
fn leftovers_never_reaped_end_pyinit_with_the_apps_code() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    supervisor.step(app_exited(ChildStatus::Exited(7), true), t0);
    supervisor.step(Event::Timer, t0 + secs(2));
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(3)));
    assert_eq!(supervisor.step(Event::Timer, t0 + secs(2)), vec![]);
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(3)),
        vec![Action::Notice(Notice::GaveUpWaiting), Action::Exit(7)]
    );
}

#[test]
fn nothing_happens_after_the_exit() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    let actions = supervisor.step(app_exited(ChildStatus::Exited(0), false), t0);
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
    assert_eq!(supervisor.step(Event::Timer, t0 + secs(100)), vec![]);
    let reaped = others_reaped(1, false);
    assert_eq!(supervisor.step(reaped, t0 + secs(100)), vec![]);
    assert_eq!(supervisor.next_deadline(), None);
    assert_eq!(supervisor.status().phase, Phase::Exited);
}

#[test]
fn leftovers_that_exit_on_term_end_pyinit_before_the_kill() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    supervisor.step(app_exited(ChildStatus::Exited(3), true), t0);
    let actions = supervisor.step(others_reaped(1, false), t0 + Duration::from_millis(100));
    assert_eq!(actions, vec![Action::Exit(3)]);
}

#[test]
fn leftovers_during_a_drain_are_killed_no_later_than_the_deadline() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(
        app_exited(ChildStatus::Exited(0), true),
        t0 + Duration::from_millis(9500),
    );
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(10)));
}

#[test]
fn orphans_are_counted_while_the_app_runs() {
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    let actions = supervisor.step(others_reaped(200, true), Instant::now());
    assert_eq!(actions, vec![]);
    assert_eq!(supervisor.status().orphans_reaped, 200);
    assert_eq!(supervisor.status().app, AppState::Running { pid: APP });
}

#[test]
fn app_whose_status_was_lost_ends_pyinit_with_1() {
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    let actions = supervisor.step(others_reaped(0, false), Instant::now());
    assert_eq!(actions, vec![Action::Exit(1)]);
}

#[test]
fn signals_after_the_app_exited_are_ignored() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    supervisor.step(app_exited(ChildStatus::Exited(0), true), t0);
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGTERM), t0),
        vec![Action::Notice(Notice::SignalIgnored {
            received: Signal::SIGTERM
        })]
    );
}

#[test]
fn sidecar_exits_zero_after_the_pre_stop_delay() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.pre_stop_delay = secs(2);
    let mut supervisor = Supervisor::new(policy.clone(), Workload::Sidecar);
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGUSR1), t0),
        vec![Action::Notice(Notice::SignalIgnored {
            received: Signal::SIGUSR1
        })]
    );
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGTERM), t0),
        vec![drain_started(&policy)]
    );
    assert!(supervisor.status().draining);
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(2)));
    // Exec probes that exit do not end a sidecar.
    assert_eq!(
        supervisor.step(others_reaped(0, false), t0 + secs(1)),
        vec![]
    );
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(2)),
        vec![Action::Exit(0)]
    );
    let status = supervisor.status();
    assert_eq!(status.phase, Phase::Exited);
    assert!(status.draining);
    assert_eq!(status.app, AppState::Sidecar);
}

#[test]
fn sidecar_stops_on_sigint_too() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::Sidecar);
    supervisor.step(Event::Signal(Signal::SIGINT), t0);
    assert_eq!(supervisor.step(Event::Timer, t0), vec![Action::Exit(0)]);
}

#[test]
fn resources_are_recorded_and_decide_nothing() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP })
        .with_resource_limits(Some(1500), Some(256 << 20));
    assert_eq!(
        supervisor.status().resources.cpu_limit_millicpus,
        Some(1500)
    );
    assert_eq!(supervisor.app_pid_before_drain(), Some(APP));
    let reading = |cpu_limit_millicpus, memory_usage_bytes| {
        Event::Resources(Resources {
            cpu_limit_millicpus,
            memory_limit_bytes: Some(256 << 20),
            memory_usage_bytes,
            oom_kills: Some(1),
        })
    };
    assert_eq!(
        supervisor.step(reading(Some(1500), Some(50 << 20)), t0),
        vec![]
    );
    let resources = supervisor.status().resources;
    assert_eq!(resources.cpu_limit_millicpus, Some(1500));
    assert_eq!(resources.memory_limit_bytes, Some(256 << 20));
    assert_eq!(resources.memory_usage_bytes, Some(50 << 20));
    assert_eq!(resources.oom_kills, Some(1));
    // A resize: the new limit is what /metrics shows.
    assert_eq!(
        supervisor.step(reading(Some(2000), Some(50 << 20)), t0),
        vec![]
    );
    assert_eq!(
        supervisor.status().resources.cpu_limit_millicpus,
        Some(2000)
    );
    // In a drain too: no deadline moves, no signal is sent, and the app is no longer resized.
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(supervisor.app_pid_before_drain(), None);
    assert_eq!(supervisor.app_pid(), Some(APP));
    let deadline = supervisor.next_deadline();
    assert_eq!(
        supervisor.step(reading(Some(500), Some(60 << 20)), t0 + secs(1)),
        vec![]
    );
    assert_eq!(supervisor.next_deadline(), deadline);
    assert_eq!(supervisor.status().phase, Phase::Draining);
    assert_eq!(
        supervisor.status().resources.memory_usage_bytes,
        Some(60 << 20)
    );
    assert_eq!(supervisor.status().resources.cpu_limit_millicpus, Some(500));
    // A file that stopped being readable makes the value unknown again.
    supervisor.step(reading(Some(500), None), t0 + secs(2));
    assert_eq!(supervisor.status().resources.memory_usage_bytes, None);
    assert_eq!(supervisor.status().resources.cpu_limit_millicpus, Some(500));
    let sidecar = Supervisor::new(policy(), Workload::Sidecar);
    assert_eq!(sidecar.app_pid_before_drain(), None);
}

#[test]
fn the_shutdown_record_keeps_what_happened_and_when() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.pre_stop_delay = secs(1);
    policy.stop_signal = Signal::SIGUSR2;
    policy.app_stop_signal = Some(Signal::SIGINT);
    policy.hard_stop = Some(HardStop {
        signal: Signal::SIGQUIT,
        after: secs(3),
    });
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGUSR2), t0);
    supervisor.step(Event::Timer, t0 + secs(1));
    supervisor.step(Event::Timer, t0 + secs(3));
    supervisor.step(app_exited(ChildStatus::Exited(0), true), t0 + secs(4));
    let record = &supervisor.status().shutdown;
    assert_eq!(record.drain_started_at, Some(t0));
    assert_eq!(record.drain_signal, Some(Signal::SIGUSR2));
    assert_eq!(record.stop_signal, Some((Signal::SIGINT, t0 + secs(1))));
    assert_eq!(record.hard_stop_sent_at, Some(t0 + secs(3)));
    assert_eq!(record.app_exited_at, Some(t0 + secs(4)));
    assert_eq!(record.app_status, Some(ChildStatus::Exited(0)));
    assert!(record.left_behind, "children were left when the app exited");
    assert!(!record.killed_at_deadline);
}

#[test]
fn draining_is_published_from_the_sigterm_to_the_exit_and_never_without_one() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    supervisor.step(app_exited(ChildStatus::Exited(0), true), t0);
    assert_eq!(supervisor.status().phase, Phase::Stopping);
    assert!(!supervisor.status().draining, "the app exited on its own");
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(app_exited(ChildStatus::Exited(0), true), t0 + secs(1));
    assert_eq!(supervisor.status().phase, Phase::Stopping);
    assert!(supervisor.status().draining);
    supervisor.step(others_reaped(1, false), t0 + secs(1));
    let status = supervisor.status();
    assert_eq!(status.phase, Phase::Exited);
    assert!(status.draining && !status.checks.ready() && !status.checks.live());
    assert_eq!(status.app, AppState::Exited { exit_code: Some(0) });
}
