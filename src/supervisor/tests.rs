//! Every transition of the supervisor, driven by hand-made events and an explicit clock.

#![allow(
    clippy::disallowed_methods,
    reason = "the explicit clock starts at some instant; which one does not matter"
)]

use std::time::{Duration, Instant};

use super::*;

mod probes;

const APP: i32 = 42;

fn policy() -> Policy {
    Policy {
        forward_to: ForwardTarget::Child,
        rewrite: RewriteMap::default(),
        pre_stop_delay: Duration::ZERO,
        drain_timeout: Duration::from_secs(10),
        hard_stop: None,
        deadline_dump: None,
        orphan_grace: Duration::from_secs(2),
        kill_wait: Duration::from_secs(1),
        remap: ExitRemap::default(),
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
    Action::Notice(Notice::DrainStarted {
        pre_stop_delay: policy.pre_stop_delay,
        drain_timeout: policy.drain_timeout,
        hard_stop: policy.hard_stop,
    })
}

#[test]
fn running_forwards_signals_and_counts_them() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Some(APP));
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
    let mut supervisor = Supervisor::new(policy, Some(APP));
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
    let mut supervisor = Supervisor::new(policy, Some(APP));
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
    let mut supervisor = Supervisor::new(policy.clone(), Some(APP));
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
fn stop_signal_follows_the_signal_map() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.rewrite = RewriteMap::new(vec![(Signal::SIGTERM, Some(Signal::SIGINT))]);
    let mut supervisor = Supervisor::new(policy, Some(APP));
    let actions = supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(
        actions.last(),
        Some(&forward(Signal::SIGINT, Reason::StopSignal))
    );
    assert_eq!(
        supervisor.status().signals_forwarded[Signal::SIGINT as usize],
        1
    );
}

#[test]
fn pre_stop_delay_holds_the_stop_signal_back() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.pre_stop_delay = secs(3);
    let mut supervisor = Supervisor::new(policy.clone(), Some(APP));
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
    let mut supervisor = Supervisor::new(policy(), Some(APP));
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
    let mut supervisor = Supervisor::new(policy, Some(APP));
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
    let mut supervisor = Supervisor::new(policy(), Some(APP));
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
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    let actions = supervisor.step(app_exited(ChildStatus::Exited(0), false), t0 + secs(1));
    assert_eq!(
        actions,
        vec![
            Action::Notice(Notice::AppExited {
                status: ChildStatus::Exited(0),
                since_drain: Some(secs(1)),
                after_deadline: false,
            }),
            Action::Exit(0),
        ]
    );
    assert_eq!(supervisor.status().app_pid, None);
    assert_eq!(supervisor.status().phase, Phase::Exited);
    assert_eq!(supervisor.next_deadline(), None);
}

#[test]
fn app_killed_by_a_signal_exits_128_plus_n_and_remaps() {
    let mut policy = policy();
    policy.remap = ExitRemap::new(vec![(143, 0)]);
    let mut supervisor = Supervisor::new(policy.clone(), Some(APP));
    let actions = supervisor.step(app_exited(ChildStatus::Signaled(15), false), Instant::now());
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
    let mut supervisor = Supervisor::new(policy, Some(APP));
    let actions = supervisor.step(app_exited(ChildStatus::Signaled(11), false), Instant::now());
    assert_eq!(actions.last(), Some(&Action::Exit(139)));
    assert_eq!(supervisor.status().app_exit_code, Some(139));
}

#[test]
fn app_ignoring_sigterm_is_killed_at_the_deadline_and_exits_137() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    assert_eq!(supervisor.step(Event::Timer, t0 + secs(9)), vec![]);
    let actions = supervisor.step(Event::Timer, t0 + secs(10));
    assert_eq!(
        actions,
        vec![
            Action::Notice(Notice::DeadlineMissed {
                drain_timeout: secs(10),
                dump: None,
            }),
            Action::SignalRemaining(Signal::SIGKILL),
        ]
    );
    assert_eq!(supervisor.status().phase, Phase::Stopping);
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(11)));
    let actions = supervisor.step(app_exited(ChildStatus::Signaled(9), false), t0 + secs(10));
    assert_eq!(actions.last(), Some(&Action::Exit(137)));
}

#[test]
fn deadline_kill_exits_137_even_when_the_status_is_lost() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    // The kernel never hands some process back: pyinit gives up after kill_wait.
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(11)),
        vec![Action::Notice(Notice::GaveUpWaiting), Action::Exit(137)]
    );
}

#[test]
fn an_app_reaped_after_the_deadline_exits_137_whatever_its_status() {
    // Once the deadline has passed with the app still running, how it ends (by the dump signal,
    // the SIGKILL, or by itself in a race with them) does not change pyinit's code.
    for status in [
        ChildStatus::Exited(3),
        ChildStatus::Exited(0),
        ChildStatus::Signaled(Signal::SIGBUS as i32),
    ] {
        let t0 = Instant::now();
        let mut supervisor = Supervisor::new(policy(), Some(APP));
        supervisor.step(Event::Signal(Signal::SIGTERM), t0);
        supervisor.step(Event::Timer, t0 + secs(10));
        assert_eq!(
            supervisor.status().app_pid,
            Some(APP),
            "a killed app runs until it is reaped"
        );
        let actions = supervisor.step(app_exited(status, false), t0 + secs(10));
        assert_eq!(actions.last(), Some(&Action::Exit(137)), "{status}");
        // What it really ended with is still published, for the drill and /metrics.
        assert_eq!(supervisor.status().shutdown.app_status, Some(status));
        assert_eq!(supervisor.status().app_exit_code, Some(status.exit_code()));
    }
    let mut policy = policy();
    policy.remap = ExitRemap::new(vec![(137, 0)]);
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy, Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    let actions = supervisor.step(app_exited(ChildStatus::Exited(3), false), t0 + secs(10));
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
}

#[test]
fn an_app_killed_at_the_deadline_and_reaped_before_its_children_leaves_nothing_to_ask() {
    // The SIGKILL reached everything; the app's status just came first. Its children are not
    // leftovers of an app that exited on its own: no SIGTERM, no second SIGKILL, no report of
    // processes left behind.
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    let actions = supervisor.step(
        app_exited(ChildStatus::Signaled(9), true),
        t0 + secs(10) + Duration::from_millis(5),
    );
    assert_eq!(
        actions,
        vec![Action::Notice(Notice::AppExited {
            status: ChildStatus::Signaled(9),
            since_drain: Some(secs(10) + Duration::from_millis(5)),
            after_deadline: true,
        })]
    );
    assert_eq!(supervisor.status().app_pid, None);
    assert_eq!(supervisor.status().phase, Phase::Stopping);
    assert!(!supervisor.status().shutdown.left_behind);
    // Still only the wait for the reaper, from the SIGKILL on.
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(11)));
    let actions = supervisor.step(others_reaped(2, false), t0 + secs(10));
    assert_eq!(actions, vec![Action::Exit(137)]);
    // And if the children are never reaped, pyinit gives up with 137 all the same.
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    supervisor.step(app_exited(ChildStatus::Signaled(9), true), t0 + secs(10));
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(11)),
        vec![Action::Notice(Notice::GaveUpWaiting), Action::Exit(137)]
    );
}

fn with_dump(window: Duration) -> Policy {
    let mut policy = policy();
    policy.deadline_dump = Some(DeadlineDump {
        signal: Signal::SIGBUS,
        window,
    });
    policy
}

#[test]
fn at_the_deadline_the_dump_signal_comes_first_and_the_sigkill_at_the_end_of_the_window() {
    let t0 = Instant::now();
    let policy = with_dump(secs(1));
    let mut supervisor = Supervisor::new(policy.clone(), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    let actions = supervisor.step(Event::Timer, t0 + secs(10));
    assert_eq!(
        actions,
        vec![
            Action::Notice(Notice::DeadlineMissed {
                drain_timeout: secs(10),
                dump: policy.deadline_dump,
            }),
            Action::DumpTracebacks {
                signal: Signal::SIGBUS,
                window: secs(1),
            },
        ]
    );
    let status = supervisor.status();
    assert_eq!(status.phase, Phase::Stopping);
    assert_eq!(status.app_pid, Some(APP), "the app prints, it is not gone");
    assert!(status.shutdown.killed_at_deadline);
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(11)));
    // A signal during the window is not forwarded: the app is past its deadline.
    assert_eq!(
        supervisor.step(Event::Signal(Signal::SIGTERM), t0 + secs(10)),
        vec![Action::Notice(Notice::SignalIgnored {
            received: Signal::SIGTERM
        })]
    );
    assert_eq!(supervisor.step(Event::Timer, t0 + secs(10)), vec![]);
    // The window ends: SIGKILL, without the leftovers' notice, then the wait for the reaper.
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(11)),
        vec![Action::SignalRemaining(Signal::SIGKILL)]
    );
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(12)));
    let actions = supervisor.step(app_exited(ChildStatus::Signaled(9), false), t0 + secs(11));
    assert_eq!(actions.last(), Some(&Action::Exit(137)));
}

#[test]
fn an_app_that_dies_of_the_dump_signal_still_exits_137_and_the_window_still_ends_in_sigkill() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(with_dump(secs(1)), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    // The app printed its traceback and died of SIGBUS (135); a worker is still printing.
    let bus = ChildStatus::Signaled(Signal::SIGBUS as i32);
    let actions = supervisor.step(app_exited(bus, true), t0 + secs(10));
    assert_eq!(
        actions,
        vec![Action::Notice(Notice::AppExited {
            status: bus,
            since_drain: Some(secs(10)),
            after_deadline: true,
        })]
    );
    assert!(!supervisor.status().shutdown.left_behind);
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(11)));
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(11)),
        vec![Action::SignalRemaining(Signal::SIGKILL)]
    );
    let actions = supervisor.step(others_reaped(1, false), t0 + secs(11));
    assert_eq!(actions, vec![Action::Exit(137)]);
    assert_eq!(supervisor.status().app_exit_code, Some(135));
}

#[test]
fn when_everything_dies_of_the_dump_signal_pyinit_exits_137_before_the_window_ends() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(with_dump(secs(1)), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    let bus = ChildStatus::Signaled(Signal::SIGBUS as i32);
    supervisor.step(app_exited(bus, true), t0 + secs(10));
    let actions = supervisor.step(others_reaped(3, false), t0 + secs(10));
    assert_eq!(actions, vec![Action::Exit(137)]);
    // Or all in one reaping pass.
    let mut supervisor = Supervisor::new(with_dump(secs(1)), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    let actions = supervisor.step(
        Event::Reaped {
            app: Some(bus),
            n_orphans: 2,
            children_left: false,
        },
        t0 + secs(10),
    );
    assert_eq!(actions.last(), Some(&Action::Exit(137)));
    assert_eq!(supervisor.status().orphans_reaped, 2);
}

#[test]
fn a_dump_window_that_passes_unanswered_ends_as_a_deadline_kill_does() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(with_dump(Duration::from_millis(500)), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    let window_end = t0 + secs(10) + Duration::from_millis(500);
    assert_eq!(supervisor.next_deadline(), Some(window_end));
    assert_eq!(
        supervisor.step(Event::Timer, window_end),
        vec![Action::SignalRemaining(Signal::SIGKILL)]
    );
    // Nothing is ever reaped: pyinit gives up after kill_wait, with 137.
    assert_eq!(
        supervisor.step(Event::Timer, window_end + secs(1)),
        vec![Action::Notice(Notice::GaveUpWaiting), Action::Exit(137)]
    );
}

#[test]
fn leftovers_of_an_app_that_exited_before_the_deadline_get_no_dump() {
    // The dump is for what the deadline finds still running; an app that drained in time and
    // left workers behind has them asked to stop, then killed, as without a dump.
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(with_dump(secs(1)), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    let actions = supervisor.step(app_exited(ChildStatus::Exited(0), true), t0 + secs(1));
    assert_eq!(
        actions.last(),
        Some(&Action::SignalRemaining(Signal::SIGTERM))
    );
    assert_eq!(
        supervisor.step(Event::Timer, t0 + secs(3)),
        vec![
            Action::Notice(Notice::LeftoversKilled),
            Action::SignalRemaining(Signal::SIGKILL)
        ]
    );
    let actions = supervisor.step(others_reaped(1, false), t0 + secs(3));
    assert_eq!(actions, vec![Action::Exit(0)]);
}

#[test]
fn hard_stop_signal_comes_between_stop_signal_and_deadline() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.hard_stop = Some(HardStop {
        signal: Signal::SIGQUIT,
        after: secs(4),
    });
    let mut supervisor = Supervisor::new(policy, Some(APP));
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
    let mut supervisor = Supervisor::new(policy, Some(APP));
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
    let mut supervisor = Supervisor::new(policy(), Some(APP));
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
    let mut supervisor = Supervisor::new(policy(), Some(APP));
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
    let mut supervisor = Supervisor::new(policy(), Some(APP));
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
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(app_exited(ChildStatus::Exited(3), true), t0);
    let actions = supervisor.step(others_reaped(1, false), t0 + Duration::from_millis(100));
    assert_eq!(actions, vec![Action::Exit(3)]);
}

#[test]
fn leftovers_during_a_drain_are_killed_no_later_than_the_deadline() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(
        app_exited(ChildStatus::Exited(0), true),
        t0 + Duration::from_millis(9500),
    );
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(10)));
}

#[test]
fn orphans_are_counted_while_the_app_runs() {
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    let actions = supervisor.step(others_reaped(200, true), Instant::now());
    assert_eq!(actions, vec![]);
    assert_eq!(supervisor.status().orphans_reaped, 200);
    assert!(supervisor.status().app_pid.is_some());
}

#[test]
fn app_whose_status_was_lost_ends_pyinit_with_1() {
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    let actions = supervisor.step(others_reaped(0, false), Instant::now());
    assert_eq!(actions, vec![Action::Exit(1)]);
}

#[test]
fn signals_after_the_app_exited_are_ignored() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Some(APP));
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
    let mut supervisor = Supervisor::new(policy.clone(), None);
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
    assert!(!status.has_app && status.draining);
    assert_eq!(status.app_exit_code, None);
}

#[test]
fn sidecar_stops_on_sigint_too() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), None);
    supervisor.step(Event::Signal(Signal::SIGINT), t0);
    assert_eq!(supervisor.step(Event::Timer, t0), vec![Action::Exit(0)]);
}

#[test]
fn resource_usage_is_recorded_and_decides_nothing() {
    let t0 = Instant::now();
    let mut supervisor =
        Supervisor::new(policy(), Some(APP)).with_resource_limits(Some(1500), Some(256 << 20));
    let usage = |bytes| Event::ResourceUsage {
        memory_usage_bytes: Some(bytes),
        oom_kills: Some(1),
    };
    assert_eq!(supervisor.step(usage(50 << 20), t0), vec![]);
    let resources = supervisor.status().resources;
    assert_eq!(resources.cpu_limit_millicpus, Some(1500));
    assert_eq!(resources.memory_limit_bytes, Some(256 << 20));
    assert_eq!(resources.memory_usage_bytes, Some(50 << 20));
    assert_eq!(resources.oom_kills, Some(1));
    // In a drain too: no deadline moves, no signal is sent.
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    let deadline = supervisor.next_deadline();
    assert_eq!(supervisor.step(usage(60 << 20), t0 + secs(1)), vec![]);
    assert_eq!(supervisor.next_deadline(), deadline);
    assert_eq!(supervisor.status().phase, Phase::Draining);
    assert_eq!(
        supervisor.status().resources.memory_usage_bytes,
        Some(60 << 20)
    );
    // A file that stopped being readable makes the value unknown again.
    supervisor.step(
        Event::ResourceUsage {
            memory_usage_bytes: None,
            oom_kills: None,
        },
        t0 + secs(2),
    );
    assert_eq!(supervisor.status().resources.memory_usage_bytes, None);
    assert_eq!(
        supervisor.status().resources.cpu_limit_millicpus,
        Some(1500)
    );
}

#[test]
fn the_shutdown_record_keeps_what_happened_and_when() {
    let t0 = Instant::now();
    let mut policy = policy();
    policy.pre_stop_delay = secs(1);
    policy.rewrite = RewriteMap::new(vec![(Signal::SIGTERM, Some(Signal::SIGINT))]);
    policy.hard_stop = Some(HardStop {
        signal: Signal::SIGQUIT,
        after: secs(3),
    });
    let mut supervisor = Supervisor::new(policy, Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(1));
    supervisor.step(Event::Timer, t0 + secs(3));
    supervisor.step(app_exited(ChildStatus::Exited(0), true), t0 + secs(4));
    let record = &supervisor.status().shutdown;
    assert_eq!(record.drain_started_at, Some(t0));
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
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(app_exited(ChildStatus::Exited(0), true), t0);
    assert_eq!(supervisor.status().phase, Phase::Stopping);
    assert!(!supervisor.status().draining, "the app exited on its own");
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(app_exited(ChildStatus::Exited(0), true), t0 + secs(1));
    assert_eq!(supervisor.status().phase, Phase::Stopping);
    assert!(supervisor.status().draining);
    supervisor.step(others_reaped(1, false), t0 + secs(1));
    let status = supervisor.status();
    assert_eq!(status.phase, Phase::Exited);
    assert!(status.draining && !status.ready && !status.live);
    assert!(status.has_app);
}

#[test]
fn an_app_killed_at_the_deadline_is_published_as_running_until_it_is_reaped() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    let status = supervisor.status();
    assert_eq!(status.phase, Phase::Stopping);
    assert_eq!((status.app_pid, status.app_exit_code), (Some(APP), None));
    assert_eq!(status.shutdown.app_exited_at, None);
    supervisor.step(app_exited(ChildStatus::Signaled(9), false), t0 + secs(10));
    let status = supervisor.status();
    assert_eq!((status.app_pid, status.app_exit_code), (None, Some(137)));
    assert_eq!(status.shutdown.app_exited_at, Some(t0 + secs(10)));
}

#[test]
fn the_shutdown_record_notes_a_deadline_kill() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Some(APP));
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    supervisor.step(app_exited(ChildStatus::Signaled(9), false), t0 + secs(10));
    let record = &supervisor.status().shutdown;
    assert!(record.killed_at_deadline);
    assert!(!record.left_behind);
    assert_eq!(record.stop_signal, Some((Signal::SIGTERM, t0)));
}
