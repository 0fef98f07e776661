//! The table's own consistency, `--server`'s values, the cold stop's instant and the start-up
//! line's words.

use super::*;

fn profile(name: &str) -> &'static ServerProfile {
    PROFILES
        .iter()
        .find(|profile| profile.name == name)
        .unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn every_profile_has_a_unique_name_and_a_way_to_be_started() {
    for (index, profile) in PROFILES.iter().enumerate() {
        assert!(!profile.name.is_empty());
        assert!(
            !profile.launch.programs.is_empty() || !profile.launch.modules.is_empty(),
            "{}",
            profile.name
        );
        assert!(
            PROFILES
                .iter()
                .skip(index + 1)
                .all(|other| other.name != profile.name)
        );
        // auto and none are --server's own words.
        assert!(!["auto", "none"].contains(&profile.name));
    }
}

#[test]
fn the_stop_as_the_facts_have_it() {
    assert_eq!(profile("waitress").app_stop_signal, Some(Signal::SIGINT));
    assert_eq!(profile("celery").cold_stop_signal, Some(Signal::SIGQUIT));
    assert!(profile("uvicorn").dies_of_stop_signal);
    assert!(!profile("daphne").drains);
    let uwsgi = profile("uwsgi");
    assert!(uwsgi.graceful_stop_variables.contains(&(
        "UWSGI_HOOK_MASTER_START",
        "unix_signal:15 gracefully_kill_them_all"
    )));
    assert!(
        uwsgi
            .graceful_stop_variables
            .contains(&("UWSGI_MASTER", "1"))
    );
    // A signal to the group cuts these servers' requests: they are never sent one by default.
    for name in ["hypercorn", "uwsgi", "waitress", "daphne", "celery"] {
        assert!(!profile(name).group_signal_safe, "{name}");
    }
    // Only gunicorn's master and uvicorn's --workers supervisor catch TTIN and TTOU.
    let resizing: Vec<_> = (PROFILES.iter())
        .filter(|profile| profile.resizes_on_ttin)
        .map(|profile| profile.name)
        .collect();
    assert_eq!(resizing, ["gunicorn", "uvicorn"]);
}

#[test]
fn server_names_parse_and_an_unknown_one_lists_the_known() {
    assert_eq!(parse_server("auto"), Ok(ServerChoice::Auto));
    assert_eq!(parse_server("none"), Ok(ServerChoice::None));
    assert_eq!(
        parse_server("waitress"),
        Ok(ServerChoice::Named(profile("waitress")))
    );
    let refused = parse_server("tornado").unwrap_err();
    assert_eq!(
        refused,
        "unknown server: expected auto, none or one of gunicorn, uvicorn, hypercorn, granian, \
         uwsgi, waitress, daphne, celery"
    );
    // Names as the table spells them, not the programs'.
    assert!(parse_server("waitress-serve").is_err());
    assert!(parse_server("Gunicorn").is_err());
}

#[test]
fn the_cold_stop_leaves_the_margin_before_the_deadline_and_follows_the_stop_signal() {
    // The defaults: drain timeout 25s, no pre-stop delay (in Kubernetes 5s).
    assert_eq!(cold_stop_after(Duration::ZERO, secs(25)), Some(secs(20)));
    assert_eq!(cold_stop_after(secs(5), secs(25)), Some(secs(20)));
    // A short drain: halfway between the stop signal and the deadline.
    assert_eq!(cold_stop_after(Duration::ZERO, secs(4)), Some(secs(2)));
    assert_eq!(cold_stop_after(secs(2), secs(6)), Some(secs(4)));
    assert_eq!(
        cold_stop_after(Duration::ZERO, Duration::from_nanos(1)),
        None
    );
    assert_eq!(cold_stop_after(secs(3), secs(2)), None);
    for (pre_stop, drain) in [(0, 1), (1, 2), (0, 10), (9, 10), (0, 300)] {
        let after = cold_stop_after(secs(pre_stop), secs(drain)).unwrap();
        assert!(after > secs(pre_stop) && after < secs(drain));
        assert!(secs(drain) - after <= COLD_STOP_MARGIN);
    }
}

#[test]
fn the_start_up_line_names_the_server_and_every_change() {
    let setup = ServerSetup {
        profile: profile("uwsgi"),
        named: false,
        changes: Vec::new(),
        stop_variables: true,
    };
    let set = vec![
        ("WEB_CONCURRENCY", "5".to_owned()),
        ("UWSGI_MASTER", "1".to_owned()),
        (
            "UWSGI_HOOK_MASTER_START",
            "unix_signal:15 gracefully_kill_them_all".to_owned(),
        ),
        ("UWSGI_PROCESSES", "5".to_owned()),
        ("PYTHONUNBUFFERED", "1".to_owned()),
    ];
    assert_eq!(
        setup.describe(&set),
        "uwsgi (from the command): UWSGI_MASTER=1, UWSGI_HOOK_MASTER_START=unix_signal:15 \
         gracefully_kill_them_all, UWSGI_PROCESSES=5"
    );
    let celery = ServerSetup {
        profile: profile("celery"),
        named: true,
        changes: vec![ProfileChange::ColdStop(HardStop {
            signal: Signal::SIGQUIT,
            after: secs(20),
        })],
        stop_variables: true,
    };
    assert_eq!(
        celery.describe(&set),
        "celery (from --server): QUIT 20s after SIGTERM, before the drain deadline"
    );
    let hypercorn = ServerSetup {
        profile: profile("hypercorn"),
        named: false,
        changes: Vec::new(),
        stop_variables: true,
    };
    assert_eq!(
        hypercorn.describe(&set),
        "hypercorn (from the command): nothing to change"
    );
    for (change, words) in [
        (
            ProfileChange::AppStopSignal(Signal::SIGINT),
            "stop signal INT",
        ),
        (
            ProfileChange::PreStopDelay(secs(5)),
            "pre-stop delay 5s (it cancels requests on its stop signal)",
        ),
        (
            ProfileChange::CleanDeathBy(Signal::SIGTERM),
            "its death by TERM after draining exits 0",
        ),
    ] {
        assert_eq!(change.to_string(), words);
    }
}

#[test]
fn false_values() {
    for value in ["0", "false", "OFF", "no", " False "] {
        assert!(is_false_value(value), "{value}");
    }
    for value in ["1", "true", "", "yes", "master"] {
        assert!(!is_false_value(value), "{value}");
    }
}

#[test]
fn warnings_for_a_development_server_and_a_group_that_cuts_requests() {
    let development = &DEVELOPMENT_SERVERS[1];
    assert_eq!(
        server_warnings(None, Some(development), ForwardTarget::Child),
        [
            "the command runs flask run, a development server: serve production traffic with \
          gunicorn, uvicorn, granian or another server of docs/servers.md"
        ]
    );
    let setup = |name| ServerSetup {
        profile: profile(name),
        named: false,
        changes: Vec::new(),
        stop_variables: true,
    };
    assert_eq!(
        server_warnings(Some(&setup("hypercorn")), None, ForwardTarget::Group),
        [
            "--forward-to group: hypercorn's workers die of a signal sent to the whole process \
          group, cutting requests in flight; leave it at child, the default"
        ]
    );
    assert!(server_warnings(Some(&setup("hypercorn")), None, ForwardTarget::Child).is_empty());
    assert!(server_warnings(Some(&setup("gunicorn")), None, ForwardTarget::Group).is_empty());
    assert!(server_warnings(None, None, ForwardTarget::Group).is_empty());
}
