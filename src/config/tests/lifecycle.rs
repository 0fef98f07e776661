//! The pod's lifecycle in the configuration: the stop signal and what the app gets for it.

use super::*;

fn stop_signals(args: &[&str]) -> (Signal, Option<Signal>) {
    let policy = parse(args).unwrap().policy;
    (policy.stop_signal, policy.app_stop_signal)
}

#[test]
fn the_stop_signal_is_term_unless_given() {
    assert_eq!(
        stop_signals(&["app"]),
        (Signal::SIGTERM, Some(Signal::SIGTERM))
    );
    assert_eq!(
        stop_signals(&["--stop-signal", "SIGINT", "app"]),
        (Signal::SIGINT, Some(Signal::SIGINT))
    );
    assert_eq!(
        stop_signals(&["--stop-signal", "3", "app"]),
        (Signal::SIGQUIT, Some(Signal::SIGQUIT))
    );
}

#[test]
fn the_signal_maps_entry_for_the_stop_signal_says_what_the_app_gets() {
    assert_eq!(
        stop_signals(&["--signal-map", "TERM=INT", "app"]),
        (Signal::SIGTERM, Some(Signal::SIGINT))
    );
    assert_eq!(
        stop_signals(&["--stop-signal", "INT", "--signal-map", "INT=QUIT", "app"]),
        (Signal::SIGINT, Some(Signal::SIGQUIT))
    );
    assert_eq!(
        stop_signals(&["--stop-signal", "INT", "--signal-map", "INT=none", "app"]),
        (Signal::SIGINT, None)
    );
    // An entry for another signal leaves the stop signal as it is.
    assert_eq!(
        stop_signals(&["--stop-signal", "INT", "--signal-map", "HUP=USR1", "app"]),
        (Signal::SIGINT, Some(Signal::SIGINT))
    );
}

#[test]
fn a_term_entry_that_would_never_apply_is_refused() {
    let error = parse(&["--stop-signal", "INT", "--signal-map", "TERM=QUIT", "app"]).unwrap_err();
    assert!(
        error.contains("'--signal-map'") && error.contains("'TERM=QUIT'"),
        "{error}"
    );
    assert!(error.contains("map INT=SIGNAL"), "{error}");
    // One that agrees with what the app gets anyway is harmless.
    assert_eq!(
        stop_signals(&["--stop-signal", "INT", "--signal-map", "TERM=INT", "app"]),
        (Signal::SIGINT, Some(Signal::SIGINT))
    );
}

#[test]
fn a_stop_signal_pyinit_cannot_catch_is_a_usage_error() {
    for value in ["KILL", "STOP", "CHLD", "SEGV", "NOPE", "0"] {
        let error = parse(&["--stop-signal", value, "app"]).unwrap_err();
        assert!(error.contains("--stop-signal"), "{value}: {error}");
    }
}

const KUBERNETES: Environment = Environment {
    in_kubernetes: true,
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_pre_stop_hook_is_cut_from_the_grace_period_before_every_default() {
    // 30s grace, a 10s hook: 20s from the stop signal to the kubelet's SIGKILL.
    let config = parse_in(&["--pre-stop-hook", "10s", "app"], KUBERNETES).unwrap();
    assert_eq!(config.pre_stop_hook, secs(10));
    assert_eq!(config.grace_period, secs(30));
    assert_eq!(config.policy.drain_timeout, secs(16));
    assert_eq!(
        config.policy.deadline_dump.map(|dump| dump.window),
        Some(secs(1))
    );
    // The endpoints were removed during the hook: no pre-stop delay of pyinit's own.
    assert_eq!(config.policy.pre_stop_delay, Duration::ZERO);
    // A given delay is kept.
    let config = parse_in(
        &["--pre-stop-hook", "10s", "--pre-stop-delay", "2s", "app"],
        KUBERNETES,
    )
    .unwrap();
    assert_eq!(config.policy.pre_stop_delay, secs(2));
    // Without a hook nothing changes.
    let config = parse_in(&["--pre-stop-hook", "0s", "app"], KUBERNETES).unwrap();
    assert_eq!(config.policy.drain_timeout, secs(25));
    assert_eq!(config.policy.pre_stop_delay, secs(5));
}

#[test]
fn a_hook_must_leave_the_kubelets_two_seconds() {
    let config = parse(&["--pre-stop-hook", "28s", "app"]).unwrap();
    assert_eq!(config.policy.drain_timeout, Duration::from_millis(1600));
    for hook in ["29s", "30s", "40s"] {
        let error = parse(&["--pre-stop-hook", hook, "app"]).unwrap_err();
        assert!(
            error.contains("'--pre-stop-hook'") && error.contains(&format!("'{hook}'")),
            "{error}"
        );
        assert!(error.contains("the kubelet gives"), "{error}");
    }
    assert!(
        parse(&["--pre-stop-hook", "soon", "app"])
            .unwrap_err()
            .contains("--pre-stop-hook")
    );
}

#[test]
fn the_drains_deadlines_must_end_before_what_the_hook_leaves() {
    let error = parse(&["--pre-stop-hook", "10s", "--drain-timeout", "25s", "app"]).unwrap_err();
    assert_eq!(
        error,
        "invalid value '25s' for '--drain-timeout': must be longer than 0s and shorter than what \
         --grace-period (30s) leaves after --pre-stop-hook (10s): 20s"
    );
    let error = parse(&[
        "--pre-stop-hook",
        "10s",
        "--drain-timeout",
        "19s",
        "--deadline-dump-window",
        "1s",
        "app",
    ])
    .unwrap_err();
    assert!(
        error.contains("'--deadline-dump-window'") && error.contains("leaves 1s"),
        "{error}"
    );
}

#[test]
fn a_sidecar_has_no_pre_stop_delay_by_default_even_in_kubernetes() {
    let config = parse_in(&[], KUBERNETES).unwrap();
    assert!(config.command.is_empty());
    assert_eq!(config.policy.pre_stop_delay, Duration::ZERO);
    let config = parse_in(&["--pre-stop-delay", "1s"], KUBERNETES).unwrap();
    assert_eq!(config.policy.pre_stop_delay, secs(1));
}

#[test]
fn the_drill_rehearses_the_hook_and_the_stop_signal() {
    let config = parse(&[
        "drill",
        "--drill-ready-after",
        "1s",
        "--stop-signal",
        "INT",
        "--grace-period",
        "10s",
        "--pre-stop-hook",
        "3s",
        "--",
        "app",
    ])
    .unwrap();
    let Mode::Drill(drill) = config.mode else {
        panic!("not a drill");
    };
    assert_eq!(drill.stop_signal, Signal::SIGINT);
    assert_eq!(drill.grace_period, secs(10));
    assert_eq!(drill.pre_stop_hook, secs(3));
    assert_eq!(drill.drain_timeout, Duration::from_millis(5600));
}
