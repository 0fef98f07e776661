//! The drain deadline: what the supervisor does with an app still running when it comes (the
//! dump signal, the SIGKILL at the end of the window or at once, 137 however the app ends), and
//! that past it nothing is asked of what is left.

use super::*;

/// A supervisor whose app got SIGTERM at `t0` and was still running at the drain deadline
/// (`policy`'s 10s), stepped to that deadline; with `t0`.
fn past_the_deadline(policy: Policy) -> (Supervisor, Instant) {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy, Workload::App { pid: APP });
    supervisor.step(Event::Signal(Signal::SIGTERM), t0);
    supervisor.step(Event::Timer, t0 + secs(10));
    (supervisor, t0)
}

#[test]
fn app_ignoring_sigterm_is_killed_at_the_deadline_and_exits_137() {
    let t0 = Instant::now();
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
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
    let (mut supervisor, t0) = past_the_deadline(policy());
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
        let (mut supervisor, t0) = past_the_deadline(policy());
        assert_eq!(
            supervisor.status().app,
            AppState::Running { pid: APP },
            "a killed app runs until it is reaped"
        );
        let actions = supervisor.step(app_exited(status, false), t0 + secs(10));
        assert_eq!(actions.last(), Some(&Action::Exit(137)), "{status}");
        // What it really ended with is still published, for the drill and /metrics.
        assert_eq!(supervisor.status().shutdown.app_status, Some(status));
        assert_eq!(
            supervisor.status().app,
            AppState::Exited {
                exit_code: Some(status.exit_code())
            }
        );
    }
    let mut policy = policy();
    policy.remap = ExitRemap::new(vec![(137, 0)]);
    let (mut supervisor, t0) = past_the_deadline(policy);
    let actions = supervisor.step(app_exited(ChildStatus::Exited(3), false), t0 + secs(10));
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
}

#[test]
fn an_app_killed_at_the_deadline_and_reaped_before_its_children_leaves_nothing_to_ask() {
    // The SIGKILL reached everything; the app's status just came first. Its children are not
    // leftovers of an app that exited on its own: no SIGTERM, no second SIGKILL, no report of
    // processes left behind.
    let (mut supervisor, t0) = past_the_deadline(policy());
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
            clean_stop: false,
        })]
    );
    assert!(!supervisor.status().app.is_running());
    assert_eq!(supervisor.status().phase, Phase::Stopping);
    assert!(!supervisor.status().shutdown.left_behind);
    // Still only the wait for the reaper, from the SIGKILL on.
    assert_eq!(supervisor.next_deadline(), Some(t0 + secs(11)));
    let actions = supervisor.step(others_reaped(2, false), t0 + secs(10));
    assert_eq!(actions, vec![Action::Exit(137)]);
    // And if the children are never reaped, pyinit gives up with 137 all the same.
    let mut supervisor = Supervisor::new(policy(), Workload::App { pid: APP });
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
    let mut supervisor = Supervisor::new(policy.clone(), Workload::App { pid: APP });
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
    assert_eq!(
        status.app,
        AppState::Running { pid: APP },
        "the app prints, it is not gone"
    );
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
    let (mut supervisor, t0) = past_the_deadline(with_dump(secs(1)));
    // The app printed its traceback and died of SIGBUS (135); a worker is still printing.
    let bus = ChildStatus::Signaled(Signal::SIGBUS as i32);
    let actions = supervisor.step(app_exited(bus, true), t0 + secs(10));
    assert_eq!(
        actions,
        vec![Action::Notice(Notice::AppExited {
            status: bus,
            since_drain: Some(secs(10)),
            after_deadline: true,
            clean_stop: false,
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
    assert_eq!(
        supervisor.status().app,
        AppState::Exited {
            exit_code: Some(135)
        }
    );
}

#[test]
fn when_everything_dies_of_the_dump_signal_pyinit_exits_137_before_the_window_ends() {
    let (mut supervisor, t0) = past_the_deadline(with_dump(secs(1)));
    let bus = ChildStatus::Signaled(Signal::SIGBUS as i32);
    supervisor.step(app_exited(bus, true), t0 + secs(10));
    let actions = supervisor.step(others_reaped(3, false), t0 + secs(10));
    assert_eq!(actions, vec![Action::Exit(137)]);
    // Or all in one reaping pass.
    let mut supervisor = Supervisor::new(with_dump(secs(1)), Workload::App { pid: APP });
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
    let (mut supervisor, t0) = past_the_deadline(with_dump(Duration::from_millis(500)));
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
    let mut supervisor = Supervisor::new(with_dump(secs(1)), Workload::App { pid: APP });
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
fn an_app_killed_at_the_deadline_is_published_as_running_until_it_is_reaped() {
    let (mut supervisor, t0) = past_the_deadline(policy());
    let status = supervisor.status();
    assert_eq!(status.phase, Phase::Stopping);
    assert_eq!(status.app, AppState::Running { pid: APP });
    assert_eq!(status.shutdown.app_exited_at, None);
    supervisor.step(app_exited(ChildStatus::Signaled(9), false), t0 + secs(10));
    let status = supervisor.status();
    assert_eq!(
        status.app,
        AppState::Exited {
            exit_code: Some(137)
        }
    );
    assert_eq!(status.shutdown.app_exited_at, Some(t0 + secs(10)));
}

#[test]
fn the_shutdown_record_notes_a_deadline_kill() {
    let (mut supervisor, t0) = past_the_deadline(policy());
    supervisor.step(app_exited(ChildStatus::Signaled(9), false), t0 + secs(10));
    let record = &supervisor.status().shutdown;
    assert!(record.killed_at_deadline);
    assert!(!record.left_behind);
    assert_eq!(record.stop_signal, Some((Signal::SIGTERM, t0)));
}
