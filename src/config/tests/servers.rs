//! The server's profile in `Config`: recognised from the command or named, applied only where
//! the user said nothing, and off with `--server none`.

use super::*;
use crate::server::ProfileChange;

fn server_name(config: &Config) -> Option<&'static str> {
    config.server.as_ref().map(|setup| setup.profile.name)
}

fn changes(config: &Config) -> Vec<ProfileChange> {
    config
        .server
        .as_ref()
        .map(|setup| setup.changes.clone())
        .unwrap_or_default()
}

#[test]
fn the_server_is_recognised_from_the_command_and_shown_on_config() {
    let config = parse(&["--", "python3", "-m", "uvicorn", "app:app"]).unwrap();
    assert_eq!(server_name(&config), Some("uvicorn"));
    assert!(!config.server.as_ref().unwrap().named);
    assert_eq!(
        config.app_env.server.map(|profile| profile.name),
        Some("uvicorn")
    );
    let config = parse(&["--", "python", "app.py"]).unwrap();
    assert_eq!(config.server, None);
    assert_eq!(config.app_env.server, None);
    assert_eq!(config.development_server, None);
    // A health sidecar has no server.
    assert_eq!(parse(&[]).unwrap().server, None);
}

#[test]
fn server_names_one_whatever_the_command_and_none_turns_profiles_off() {
    let config = parse(&["--server", "waitress", "--", "python", "serve.py"]).unwrap();
    assert_eq!(server_name(&config), Some("waitress"));
    assert!(config.server.as_ref().unwrap().named);
    assert_eq!(config.policy.app_stop_signal, Some(Signal::SIGINT));
    let config = parse(&["--server", "none", "--", "waitress-serve", "app:app"]).unwrap();
    assert_eq!(config.server, None);
    assert_eq!(config.policy.app_stop_signal, Some(Signal::SIGTERM));
    let config = parse(&["--server", "none", "--", "flask", "run"]).unwrap();
    assert_eq!(config.development_server, None);
    let config = parse(&["--server", "auto", "--", "waitress-serve", "app:app"]).unwrap();
    assert_eq!(server_name(&config), Some("waitress"));
}

#[test]
fn an_unknown_server_is_a_usage_error_that_lists_the_known_ones() {
    let error = parse(&["--server", "tornado", "--", "app"]).unwrap_err();
    assert!(error.contains("'tornado'"), "{error}");
    assert!(error.contains("--server"), "{error}");
    assert!(
        error.contains(
            "auto, none or one of gunicorn, uvicorn, hypercorn, granian, uwsgi, waitress, \
             daphne, celery"
        ),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
}

#[test]
fn waitress_is_stopped_with_int_unless_signal_map_says_otherwise() {
    let config = parse(&["--", "waitress-serve", "app:app"]).unwrap();
    assert_eq!(config.policy.app_stop_signal, Some(Signal::SIGINT));
    assert_eq!(
        changes(&config),
        [ProfileChange::AppStopSignal(Signal::SIGINT)]
    );
    for (map, expected) in [("TERM=QUIT", Some(Signal::SIGQUIT)), ("TERM=none", None)] {
        let config = parse(&["--signal-map", map, "--", "waitress-serve", "app:app"]).unwrap();
        assert_eq!(config.policy.app_stop_signal, expected, "{map}");
        assert!(changes(&config).is_empty(), "{map}");
    }
    // An entry for another signal leaves the profile's choice alone.
    let config = parse(&[
        "--signal-map",
        "HUP=none",
        "--",
        "waitress-serve",
        "app:app",
    ])
    .unwrap();
    assert_eq!(config.policy.app_stop_signal, Some(Signal::SIGINT));
    // The profile's choice holds whatever the stop signal; the map's entry for it wins.
    let config = parse(&["--stop-signal", "QUIT", "--", "waitress-serve", "app:app"]).unwrap();
    assert_eq!(config.policy.app_stop_signal, Some(Signal::SIGINT));
    let config = parse(&[
        "--stop-signal",
        "QUIT",
        "--signal-map",
        "QUIT=none",
        "--",
        "waitress-serve",
        "app:app",
    ])
    .unwrap();
    assert_eq!(config.policy.app_stop_signal, None);
    // Without a profile: TERM, or what --signal-map makes of it.
    assert_eq!(
        parse(&["--", "app"]).unwrap().policy.app_stop_signal,
        Some(Signal::SIGTERM)
    );
    assert_eq!(
        parse(&["--signal-map", "TERM=INT", "app"])
            .unwrap()
            .policy
            .app_stop_signal,
        Some(Signal::SIGINT)
    );
}

#[test]
fn a_celery_worker_gets_its_cold_shutdown_before_the_drain_deadline() {
    let config = parse(&["--", "celery", "-A", "proj", "worker"]).unwrap();
    let cold_stop = HardStop {
        signal: Signal::SIGQUIT,
        after: Duration::from_secs(20),
    };
    assert_eq!(config.policy.hard_stop, Some(cold_stop));
    assert_eq!(changes(&config), [ProfileChange::ColdStop(cold_stop)]);
    // A short drain: halfway from the stop signal (after the pre-stop delay) to the deadline.
    let config = parse(&[
        "--drain-timeout",
        "6s",
        "--pre-stop-delay",
        "2s",
        "--",
        "celery",
        "-A",
        "proj",
        "worker",
    ])
    .unwrap();
    assert_eq!(
        config.policy.hard_stop.map(|hard_stop| hard_stop.after),
        Some(Duration::from_secs(4))
    );
    // The user's hard stop wins.
    let config = parse(&[
        "--hard-stop-signal",
        "INT",
        "--hard-stop-after",
        "10s",
        "--",
        "celery",
        "-A",
        "proj",
        "worker",
    ])
    .unwrap();
    assert_eq!(
        config.policy.hard_stop,
        Some(HardStop {
            signal: Signal::SIGINT,
            after: Duration::from_secs(10),
        })
    );
    assert!(changes(&config).is_empty());
    // celery beat is no worker; --server none is no profile.
    assert_eq!(
        parse(&["--", "celery", "-A", "proj", "beat"])
            .unwrap()
            .policy
            .hard_stop,
        None
    );
    let none = parse(&["--server", "none", "--", "celery", "-A", "proj", "worker"]).unwrap();
    assert_eq!(none.policy.hard_stop, None);
}

#[test]
fn daphne_gets_a_pre_stop_delay_outside_kubernetes_too() {
    let config = parse(&["--", "daphne", "app:application"]).unwrap();
    assert_eq!(config.policy.pre_stop_delay, Duration::from_secs(5));
    assert_eq!(
        changes(&config),
        [ProfileChange::PreStopDelay(Duration::from_secs(5))]
    );
    let config = parse(&["--grace-period", "8s", "--", "daphne", "app:application"]).unwrap();
    assert_eq!(config.policy.pre_stop_delay, Duration::from_secs(2));
    // In Kubernetes every app has that delay: nothing for the profile to change.
    let kubernetes = Environment {
        in_kubernetes: true,
    };
    let config = parse_in(&["daphne", "app:application"], kubernetes).unwrap();
    assert_eq!(config.policy.pre_stop_delay, Duration::from_secs(5));
    assert!(changes(&config).is_empty());
    // After a preStop hook other apps get no delay; daphne still does.
    let config = parse_in(
        &["--pre-stop-hook", "5s", "daphne", "app:application"],
        kubernetes,
    )
    .unwrap();
    assert_eq!(config.policy.pre_stop_delay, Duration::from_secs(5));
    assert_eq!(
        changes(&config),
        [ProfileChange::PreStopDelay(Duration::from_secs(5))]
    );
    // The user's delay wins, 0s included.
    let config = parse(&["--pre-stop-delay", "0s", "--", "daphne", "app:application"]).unwrap();
    assert_eq!(config.policy.pre_stop_delay, Duration::ZERO);
    assert!(changes(&config).is_empty());
    let config = parse(&["--server", "none", "--", "daphne", "app:application"]).unwrap();
    assert_eq!(config.policy.pre_stop_delay, Duration::ZERO);
}

#[test]
fn uvicorn_s_death_by_the_stop_signal_is_clean_unless_remap_exit_says_otherwise() {
    let config = parse(&["--", "uvicorn", "app:app"]).unwrap();
    assert!(config.policy.clean_death_by_stop_signal);
    assert_eq!(
        changes(&config),
        [ProfileChange::CleanDeathBy(Signal::SIGTERM)]
    );
    let config = parse(&["--remap-exit", "143=3", "--", "uvicorn", "app:app"]).unwrap();
    assert!(!config.policy.clean_death_by_stop_signal);
    assert!(changes(&config).is_empty());
    // A map that drops the stop signal leaves no signal to die of.
    let config = parse(&["--signal-map", "TERM=none", "--", "uvicorn", "app:app"]).unwrap();
    assert!(!config.policy.clean_death_by_stop_signal);
    for args in [
        &["--", "gunicorn", "app:app"][..],
        &["--server", "none", "--", "uvicorn", "app:app"],
        &["--", "app"],
    ] {
        assert!(
            !parse(args).unwrap().policy.clean_death_by_stop_signal,
            "{args:?}"
        );
    }
}

#[test]
fn uwsgi_s_graceful_stop_variables_yield_to_the_command_s_own_stop_options() {
    let config = parse(&["--", "uwsgi", "--http-socket", ":8000"]).unwrap();
    assert!(config.app_env.graceful_stop_variables);
    for option in ["--die-on-term", "--hook-master-start=unix_signal:15 x"] {
        let config = parse(&["--", "uwsgi", option, "--http-socket", ":8000"]).unwrap();
        assert_eq!(server_name(&config), Some("uwsgi"));
        assert!(!config.app_env.graceful_stop_variables, "{option}");
    }
}

#[test]
fn the_forward_target_stays_the_master_and_the_users_choice_wins() {
    for command in ["hypercorn", "celery", "uwsgi", "waitress-serve", "daphne"] {
        let config = parse(&["--", command, "worker"]).unwrap();
        assert_eq!(config.policy.forward_to, ForwardTarget::Child, "{command}");
    }
    let config = parse(&["--forward-to", "group", "--", "hypercorn", "app:app"]).unwrap();
    assert_eq!(config.policy.forward_to, ForwardTarget::Group);
}

#[test]
fn development_servers_are_recognised_for_a_warning_only() {
    let config = parse(&["--", "python", "manage.py", "runserver"]).unwrap();
    assert_eq!(
        config.development_server.map(|server| server.name),
        Some("Django's runserver")
    );
    assert_eq!(config.server, None);
    assert_eq!(config.policy.app_stop_signal, Some(Signal::SIGTERM));
}

#[test]
fn a_drill_knows_the_profile_server_none_turned_off() {
    let drill = |args: &[&str]| match parse(args).unwrap().mode {
        Mode::Drill(drill) => drill.server_turned_off,
        Mode::Supervise => panic!("not a drill: {args:?}"),
    };
    let ready = ["drill", "--drill-ready-after", "1s"];
    let with = |more: &[&'static str]| -> Vec<&'static str> {
        ready.iter().copied().chain(more.iter().copied()).collect()
    };
    assert_eq!(
        drill(&with(&[
            "--server",
            "none",
            "--",
            "waitress-serve",
            "app:app"
        ])),
        Some("waitress")
    );
    // With the profile on, or for a command pyinit does not know, nothing was turned off.
    assert_eq!(drill(&with(&["--", "waitress-serve", "app:app"])), None);
    assert_eq!(
        drill(&with(&["--server", "none", "--", "python3", "app.py"])),
        None
    );
}
