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
