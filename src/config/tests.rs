//! `Config` from whole command lines: defaults, checks between flags, the modes and the
//! command line's corner cases.

mod servers;

use super::*;
use crate::probe::spec::{ProbeTarget, ProbeTiming};
use crate::signals::spec::ForwardTarget;
use crate::supervisor::policy::{DeadlineDump, HardStop};

mod lifecycle;

fn parse(args: &[&str]) -> Result<Config, String> {
    parse_args(args, Environment::default())
}

fn parse_in(args: &[&str], environment: Environment) -> Result<Config, String> {
    parse_args(args, environment)
}

#[test]
fn defaults_outside_kubernetes() {
    let config = parse(&["--", "app"]).unwrap();
    assert_eq!(config.grace_period, Duration::from_secs(30));
    assert_eq!(config.policy.drain_timeout, Duration::from_secs(25));
    assert_eq!(config.policy.pre_stop_delay, Duration::ZERO);
    assert_eq!(config.policy.forward_to, ForwardTarget::Child);
    assert_eq!(config.command, vec![OsString::from("app")]);
}

#[test]
fn defaults_in_kubernetes_add_a_pre_stop_delay() {
    let kubernetes = Environment {
        in_kubernetes: true,
    };
    let config = parse_in(&["app"], kubernetes).unwrap();
    assert_eq!(config.policy.pre_stop_delay, Duration::from_secs(5));
    let config = parse_in(&["--grace-period", "8s", "app"], kubernetes).unwrap();
    assert_eq!(config.policy.pre_stop_delay, Duration::from_secs(2));
    // A short drain timeout caps the defaulted delay instead of failing.
    let config = parse_in(&["--drain-timeout", "2s", "app"], kubernetes).unwrap();
    assert_eq!(config.policy.pre_stop_delay, Duration::from_secs(1));
}

#[test]
fn default_drain_timeout_leaves_a_margin() {
    let config = parse(&["--grace-period", "10s", "app"]).unwrap();
    assert_eq!(config.policy.drain_timeout, Duration::from_secs(8));
    let config = parse(&["--grace-period", "2m", "app"]).unwrap();
    assert_eq!(config.policy.drain_timeout, Duration::from_secs(115));
}

#[test]
fn an_unknown_flag_before_the_command_is_a_usage_error() {
    let error = parse(&["--bogus", "app"]).unwrap_err();
    assert!(error.contains("--bogus"), "{error}");
    let config = parse(&["--", "--weird-command-name", "x"]).unwrap();
    assert_eq!(config.command[0], OsString::from("--weird-command-name"));
}

#[test]
fn command_without_double_dash_and_with_hyphen_args() {
    let config = parse(&["gunicorn", "--bind", ":8000", "app:app"]).unwrap();
    assert_eq!(config.command.len(), 4);
    assert!(parse(&[]).unwrap().command.is_empty());
}

#[test]
fn drain_timeout_must_be_shorter_than_grace_period() {
    let error = parse(&["--grace-period", "10s", "--drain-timeout", "10s", "app"]).unwrap_err();
    assert!(
        error.contains("--drain-timeout") && error.contains("'10s'"),
        "{error}"
    );
}

#[test]
fn pre_stop_delay_must_be_shorter_than_drain_timeout() {
    let error = parse(&["--drain-timeout", "5s", "--pre-stop-delay", "5s", "app"]).unwrap_err();
    assert!(error.contains("--pre-stop-delay"), "{error}");
}

#[test]
fn hard_stop_must_fall_inside_the_drain() {
    let config = parse(&[
        "--hard-stop-signal",
        "QUIT",
        "--hard-stop-after",
        "1s",
        "app",
    ])
    .unwrap();
    assert_eq!(
        config.policy.hard_stop,
        Some(HardStop {
            signal: Signal::SIGQUIT,
            after: Duration::from_secs(1)
        })
    );
    let error = parse(&[
        "--hard-stop-signal",
        "QUIT",
        "--hard-stop-after",
        "40s",
        "app",
    ])
    .unwrap_err();
    assert!(error.contains("--hard-stop-after"), "{error}");
    let error = parse(&["--hard-stop-signal", "QUIT", "app"]).unwrap_err();
    assert!(error.contains("--hard-stop-after"), "{error}");
}

#[test]
fn the_deadline_dump_is_on_by_default_with_sigbus_and_a_window_inside_the_grace_period() {
    let dump_of = |args: &[&str]| parse(args).unwrap().policy.deadline_dump;
    let dump = |signal, millis| {
        Some(DeadlineDump {
            signal,
            window: Duration::from_millis(millis),
        })
    };
    // 30s grace, 25s drain: the 5s left hold the 1s window and the SIGKILL after it.
    assert_eq!(dump_of(&["app"]), dump(Signal::SIGBUS, 1000));
    // 4s grace, 2s drain: 2s left, the window is half of it at most.
    let short = ["--grace-period", "4s", "--drain-timeout", "2s"];
    assert_eq!(
        dump_of(&[&short[..], &["app"]].concat()),
        dump(Signal::SIGBUS, 1000)
    );
    // 2s grace: the default drain leaves 400ms; the window takes half.
    assert_eq!(
        dump_of(&["--grace-period", "2s", "app"]),
        dump(Signal::SIGBUS, 200)
    );
    let drain_close_to_grace = ["--grace-period", "10s", "--drain-timeout", "9900ms", "app"];
    assert_eq!(dump_of(&drain_close_to_grace), dump(Signal::SIGBUS, 50));
    assert_eq!(
        dump_of(&[
            "--deadline-dump-signal",
            "USR1",
            "--deadline-dump-window",
            "2500ms",
            "app"
        ]),
        dump(Signal::SIGUSR1, 2500)
    );
    assert_eq!(dump_of(&["--deadline-dump", "off", "app"]), None);
    // Off wins over a signal or window given beside it (from an image's ENV, say).
    assert_eq!(
        dump_of(&[
            "--deadline-dump",
            "off",
            "--deadline-dump-window",
            "1s",
            "app"
        ]),
        None
    );
    let config = parse(&["drill", "--drill-ready-after", "1s", "--", "app"]).unwrap();
    match config.mode {
        Mode::Drill(drill) => assert_eq!(drill.deadline_dump, dump(Signal::SIGBUS, 1000)),
        Mode::Supervise => panic!("not a drill"),
    }
}

#[test]
fn a_dump_window_must_end_before_the_grace_period() {
    let error = parse(&[
        "--grace-period",
        "10s",
        "--drain-timeout",
        "8s",
        "--deadline-dump-window",
        "2s",
        "app",
    ])
    .unwrap_err();
    assert_eq!(
        error,
        "invalid value '2s' for '--deadline-dump-window': must be longer than 0s and end before \
         --grace-period (10s): --drain-timeout (8s) leaves 2s; --deadline-dump off turns the \
         dump off"
    );
    let error = parse(&["--deadline-dump-window", "0s", "app"]).unwrap_err();
    assert!(error.contains("'--deadline-dump-window'"), "{error}");
    // The default drain timeout of a 30s grace period leaves 5s.
    assert!(parse(&["--deadline-dump-window", "4900ms", "app"]).is_ok());
    assert!(parse(&["--deadline-dump-window", "5s", "app"]).is_err());
}

#[test]
fn bad_values_name_the_flag_and_value() {
    for (args, flag, value) in [
        (
            &["--grace-period", "abc", "app"][..],
            "--grace-period",
            "abc",
        ),
        (
            &["--signal-map", "TERM=NOPE", "app"][..],
            "--signal-map",
            "TERM=NOPE",
        ),
        (
            &["--remap-exit", "300=0", "app"][..],
            "--remap-exit",
            "300=0",
        ),
        (
            &["--forward-to", "everyone", "app"][..],
            "--forward-to",
            "everyone",
        ),
        (&["--grace-period", "0", "app"][..], "--grace-period", "0s"),
        (
            &["--deadline-dump", "yes", "app"][..],
            "--deadline-dump",
            "yes",
        ),
        (
            &["--deadline-dump-signal", "BOGUS", "app"][..],
            "--deadline-dump-signal",
            "BOGUS",
        ),
        (
            &["--deadline-dump-window", "soon", "app"][..],
            "--deadline-dump-window",
            "soon",
        ),
    ] {
        let error = parse(args).unwrap_err();
        assert!(
            error.contains(flag) && error.contains(value),
            "{args:?}: {error}"
        );
    }
}

#[test]
fn repeatable_flags_collect() {
    let config = parse(&[
        "--signal-map",
        "TERM=INT",
        "--signal-map",
        "HUP=none",
        "--remap-exit",
        "143=0",
        "app",
    ])
    .unwrap();
    assert_eq!(
        config.policy.rewrite.rewrite(Signal::SIGTERM),
        Some(Signal::SIGINT)
    );
    assert_eq!(config.policy.rewrite.rewrite(Signal::SIGHUP), None);
    assert_eq!(config.policy.remap.apply(143), 0);
}

#[test]
fn health_defaults_are_kubernetes_defaults() {
    let config = parse(&["app"]).unwrap();
    assert_eq!(config.health.addr, Some("0.0.0.0:8558".parse().unwrap()));
    assert_eq!(config.health.addr, Some(DEFAULT_HEALTH_ADDR));
    assert!(config.health.probes.is_empty());
    let config = parse(&["--readiness", "tcp://127.0.0.1:80", "app"]).unwrap();
    assert_eq!(
        config.health.probes,
        vec![ProbeConfig {
            kind: ProbeKind::Readiness,
            target: ProbeTarget::Tcp {
                addr: "127.0.0.1:80".parse().unwrap()
            },
            timing: ProbeTiming::KUBERNETES_DEFAULT,
        }]
    );
    assert_eq!(
        parse(&["--health-addr", "off", "app"]).unwrap().health.addr,
        None
    );
}

#[test]
fn probe_tuning_flags_reach_their_probe() {
    let config = parse(&[
        "--startup",
        "file:///tmp/started",
        "--liveness",
        "exec:true",
        "--readiness",
        "http://localhost:8000/ready",
        "--startup-period",
        "1s",
        "--startup-failure-threshold",
        "30",
        "--liveness-timeout",
        "5s",
        "--liveness-initial-delay",
        "20s",
        "--readiness-period",
        "500ms",
        "--readiness-success-threshold",
        "2",
        "app",
    ])
    .unwrap();
    let timing_of = |kind: ProbeKind| {
        config
            .health
            .probes
            .iter()
            .find(|probe| probe.kind == kind)
            .unwrap()
            .timing
    };
    let startup = timing_of(ProbeKind::Startup);
    assert_eq!(startup.period, Duration::from_secs(1));
    assert_eq!(startup.failure_threshold.get(), 30);
    let liveness = timing_of(ProbeKind::Liveness);
    assert_eq!(liveness.timeout, Duration::from_secs(5));
    assert_eq!(liveness.initial_delay, Duration::from_secs(20));
    assert_eq!(liveness.period, Duration::from_secs(10));
    let readiness = timing_of(ProbeKind::Readiness);
    assert_eq!(readiness.period, Duration::from_millis(500));
    assert_eq!(readiness.success_threshold.get(), 2);
    assert_eq!(readiness.failure_threshold.get(), 3);
}

#[test]
fn bad_probe_settings_name_the_flag() {
    for (args, flag) in [
        (
            &["--liveness-success-threshold", "2", "app"][..],
            "--liveness-success-threshold",
        ),
        (
            &["--startup-success-threshold", "3", "app"][..],
            "--startup-success-threshold",
        ),
        (
            &["--readiness-period", "0", "app"][..],
            "--readiness-period",
        ),
        (
            &["--liveness-timeout", "0s", "app"][..],
            "--liveness-timeout",
        ),
        (
            &["--readiness-failure-threshold", "0", "app"][..],
            "--readiness-failure-threshold",
        ),
        (
            &["--readiness", "http://example.com/", "app"][..],
            "--readiness",
        ),
        (&["--health-addr", "everywhere", "app"][..], "--health-addr"),
    ] {
        let error = parse(args).unwrap_err();
        assert!(error.contains(flag), "{args:?}: {error}");
    }
}

#[test]
fn web_concurrency_and_python_env_flags() {
    use crate::container::env::WebConcurrency;
    let config = parse(&["app"]).unwrap();
    assert_eq!(config.app_env, AppEnvSettings::default());
    let config = parse(&["--web-concurrency", "7", "--python-env", "off", "app"]).unwrap();
    assert_eq!(
        config.app_env.web_concurrency,
        WebConcurrency::Fixed(std::num::NonZeroU32::new(7).unwrap())
    );
    assert!(!config.app_env.python_env);
    let config = parse(&["--web-concurrency", "off", "app"]).unwrap();
    assert_eq!(config.app_env.web_concurrency, WebConcurrency::Off);
    for (args, value) in [
        (&["--web-concurrency", "0", "app"][..], "0"),
        (&["--web-concurrency", "lots", "app"][..], "lots"),
        (&["--python-env", "maybe", "app"][..], "maybe"),
    ] {
        let error = parse(args).unwrap_err();
        assert!(error.contains(value) && error.contains("--"), "{error}");
    }
}

#[test]
fn the_multiproc_dir_is_prepared_for_an_app_unless_turned_off() {
    assert!(parse(&["app"]).unwrap().prepare_multiproc_dir);
    assert!(
        parse(&["drill", "--drill-ready-after", "1s", "--", "app"])
            .unwrap()
            .prepare_multiproc_dir
    );
    let off = parse(&["--prepare-multiproc-dir", "off", "app"]).unwrap();
    assert!(!off.prepare_multiproc_dir);
    // A health sidecar has no app: the directory may be another container's, in use.
    assert!(!parse(&[]).unwrap().prepare_multiproc_dir);
    let error = parse(&["--prepare-multiproc-dir", "no", "app"]).unwrap_err();
    assert!(
        error.contains("'no'") && error.contains("--prepare-multiproc-dir"),
        "{error}"
    );
}

#[test]
fn privilege_defaults_drop_nothing_and_forbid_escalation() {
    let privileges = parse(&["app"]).unwrap().privileges;
    assert_eq!(
        privileges,
        PrivilegeConfig {
            user: None,
            group: None,
            groups: None,
            umask: None,
            allow_root: false,
            no_new_privs: true,
            rlimits: Vec::new(),
        }
    );
}

#[test]
fn privilege_flags() {
    use crate::privileges::rlimit::RlimitValue;
    use crate::privileges::spec::{Umask, UserSpec};
    use nix::sys::resource::Resource;
    let privileges = parse(&[
        "--user",
        "nobody:nogroup",
        "--group",
        "100",
        "--groups",
        "users,27,users",
        "--umask",
        "0027",
        "--allow-root",
        "--allow-privilege-escalation",
        "--rlimit",
        "nofile=1024:2048",
        "--rlimit",
        "core=0",
        "app",
    ])
    .unwrap()
    .privileges;
    assert_eq!(
        privileges.user,
        Some(UserSpec {
            user: IdOrName::Name("nobody".into()),
            group: Some(IdOrName::Name("nogroup".into())),
        })
    );
    assert_eq!(privileges.group, Some(IdOrName::Id(100)));
    assert_eq!(
        privileges.groups,
        Some(vec![IdOrName::Name("users".into()), IdOrName::Id(27)])
    );
    assert_eq!(privileges.umask, Some(Umask(0o027)));
    assert!(privileges.allow_root);
    assert!(!privileges.no_new_privs);
    assert_eq!(privileges.rlimits.len(), 2);
    assert_eq!(privileges.rlimits[0].resource, Resource::RLIMIT_NOFILE);
    assert_eq!(privileges.rlimits[0].hard, RlimitValue::Limited(2048));
    assert_eq!(privileges.rlimits[1].soft, RlimitValue::Limited(0));
}

#[test]
fn an_empty_groups_value_clears_them() {
    let privileges = parse(&["--groups", "", "app"]).unwrap().privileges;
    assert_eq!(privileges.groups, Some(Vec::new()));
    let privileges = parse(&["--groups=", "app"]).unwrap().privileges;
    assert_eq!(privileges.groups, Some(Vec::new()));
}

#[test]
fn bad_privilege_values_name_the_flag_and_value() {
    for (args, flag, value) in [
        (&["--user", "4294967295", "app"][..], "--user", "4294967295"),
        (&["--user", "app:", "app"][..], "--user", "app:"),
        (&["--group", "a b", "app"][..], "--group", "a b"),
        (&["--groups", "users,,x", "app"][..], "--groups", "users,,x"),
        (&["--umask", "0888", "app"][..], "--umask", "0888"),
        (
            &["--rlimit", "nofiles=1", "app"][..],
            "--rlimit",
            "nofiles=1",
        ),
        (
            &["--rlimit", "nofile=2:1", "app"][..],
            "--rlimit",
            "nofile=2:1",
        ),
        (
            &["--rlimit", "core=0", "--rlimit", "core=1", "app"][..],
            "--rlimit",
            "core",
        ),
    ] {
        let error = parse(args).unwrap_err();
        assert!(
            error.contains(flag) && error.contains(value),
            "{args:?}: {error}"
        );
    }
}

fn printed(args: &[&str]) -> String {
    let argv = std::iter::once("pyinit").chain(args.iter().copied());
    match parse_command_line(argv.map(OsString::from), Environment::default()) {
        Ok(CommandLine::Print(text)) => text,
        other => panic!("{args:?} printed nothing: {other:?}"),
    }
}

fn drill_of(config: &Config) -> &DrillConfig {
    match &config.mode {
        Mode::Drill(drill) => drill,
        Mode::Supervise => panic!("not a drill: {config:?}"),
    }
}

#[test]
fn drill_after_the_double_dash_is_the_apps_command() {
    for args in [&["--", "drill"][..], &["--", "drill", "--json"][..]] {
        let config = parse(args).unwrap();
        assert_eq!(config.mode, Mode::Supervise, "{args:?}");
        assert_eq!(config.command[0], OsString::from("drill"), "{args:?}");
    }
    // Once the command has begun, `drill` is one of its arguments.
    let config = parse(&["gunicorn", "drill"]).unwrap();
    assert_eq!(config.mode, Mode::Supervise);
    assert_eq!(config.command, ["gunicorn", "drill"].map(OsString::from));
    // `help` is no subcommand either: it is a program's name, as it always was.
    let config = parse(&["help"]).unwrap();
    assert_eq!(config.command, [OsString::from("help")]);
}

#[test]
fn the_drill_takes_the_supervisors_flags_before_or_after_it() {
    let grace = ["--grace-period", "8s"];
    let ready = ["--drill-ready-after", "1s"];
    for args in [
        [&["drill"][..], &grace, &ready, &["--", "app", "-x"]].concat(),
        [&grace[..], &["drill"], &ready, &["--", "app", "-x"]].concat(),
        [&grace[..], &["drill"], &ready, &["app", "-x"]].concat(),
    ] {
        let config = parse(&args).unwrap();
        let drill = drill_of(&config);
        assert_eq!(config.grace_period, Duration::from_secs(8), "{args:?}");
        assert_eq!(drill.grace_period, Duration::from_secs(8), "{args:?}");
        assert_eq!(drill.drain_timeout, config.policy.drain_timeout, "{args:?}");
        assert_eq!(
            drill.readiness,
            DrillReadiness::After(Duration::from_secs(1))
        );
        assert_eq!(
            config.command,
            ["app", "-x"].map(OsString::from),
            "{args:?}"
        );
    }
}

#[test]
fn the_drills_flags_belong_to_the_drill() {
    let error = parse(&["--drill-ready-after", "1s", "--", "app"]).unwrap_err();
    assert!(error.contains("--drill-ready-after"), "{error}");
    let error = parse(&["drill", "--drill-concurrency", "0", "--", "app"]).unwrap_err();
    assert!(
        error.contains("--drill-concurrency") && error.contains("'0'"),
        "{error}"
    );
    let error = parse(&["drill", "--drill-request", "tcp://127.0.0.1:1", "app"]).unwrap_err();
    assert!(error.contains("--drill-request"), "{error}");
}

#[test]
fn usage_errors_are_one_line_that_names_the_flag() {
    for (args, flag) in [
        (
            &["--hard-stop-signal", "QUIT", "app"][..],
            "--hard-stop-after",
        ),
        (&["--bogus", "app"][..], "--bogus"),
        (&["drill", "--bogus", "app"][..], "--bogus"),
        (&["--grace-period"][..], "--grace-period"),
        (
            &["drill", "--drill-request", "http://x/", "app"][..],
            "--drill-request",
        ),
    ] {
        let error = parse(args).unwrap_err();
        assert!(error.contains(flag), "{args:?}: {error}");
        assert_eq!(error.lines().count(), 1, "{args:?}: {error}");
        assert!(!error.starts_with("error:"), "{error}");
    }
}

#[test]
fn a_misspelt_flag_or_value_gets_the_one_meant_on_the_same_line() {
    for (args, expected) in [
        (
            &["--readines", "http://127.0.0.1:8000/", "app"][..],
            "unexpected argument '--readines' found; tip: a similar argument exists: \
             '--readiness'",
        ),
        (
            &["drill", "--drill-reqest", "http://127.0.0.1:8000/", "app"][..],
            "unexpected argument '--drill-reqest' found; tip: a similar argument exists: \
             '--drill-request'",
        ),
        (
            &["--log-level", "inf", "app"][..],
            "invalid value 'inf' for '--log-level <LEVEL>' [possible values: error, warn, \
             info, debug, trace]; tip: a similar value exists: 'info'",
        ),
        // Nothing like it: no tip, and never the one to pass the word after `--`.
        (
            &["--xyzzy", "app"][..],
            "unexpected argument '--xyzzy' found",
        ),
    ] {
        assert_eq!(parse(args).unwrap_err(), expected, "{args:?}");
    }
}

#[test]
fn help_and_version_of_both_modes() {
    let help = printed(&["--help"]);
    assert!(
        help.contains("Usage: pyinit [OPTIONS] -- COMMAND"),
        "{help}"
    );
    assert!(help.contains("pyinit drill [OPTIONS] -- COMMAND"), "{help}");
    assert!(!help.contains("--drill-ready-after"), "{help}");
    let help = printed(&["drill", "--help"]);
    assert!(help.contains("Usage: pyinit drill [OPTIONS]"), "{help}");
    assert!(help.contains("--drill-ready-after") && help.contains("--grace-period"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(printed(&["--version"]), format!("pyinit {version}\n"));
    assert_eq!(
        printed(&["drill", "--version"]),
        format!("pyinit drill {version}\n")
    );
    assert!(printed(&["-h"]).starts_with("A small PID 1"));
}

#[test]
fn every_flag_has_its_pyinit_variable() {
    let mut command = cli::command();
    command.build();
    let drill = command
        .find_subcommand("drill")
        .expect("the drill subcommand")
        .clone();
    let mut n_flags = 0;
    for arg in command.get_arguments().chain(drill.get_arguments()) {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        n_flags += 1;
        let expected = match long {
            "json" => "PYINIT_DRILL_JSON".to_owned(),
            _ => format!("PYINIT_{}", long.replace('-', "_").to_uppercase()),
        };
        let variable = arg.get_env().map(|env| env.to_string_lossy().into_owned());
        assert_eq!(variable.as_deref(), Some(expected.as_str()), "--{long}");
    }
    assert!(n_flags > 50, "{n_flags} flags");
}

#[test]
fn the_summary_names_flags_that_exist_and_help_shows_the_rest() {
    let mut command = cli::command();
    command.build();
    let drill = command
        .find_subcommand("drill")
        .expect("the drill subcommand")
        .clone();
    for id in cli::SUMMARY {
        let arg = command
            .get_arguments()
            .chain(drill.get_arguments())
            .find(|arg| arg.get_id() == id);
        assert!(
            arg.is_some_and(|arg| !arg.is_hide_short_help_set()),
            "-h shows no {id}"
        );
    }
    let long_only = command
        .get_arguments()
        .filter(|arg| arg.is_hide_short_help_set() && !arg.is_hide_long_help_set())
        .count();
    assert!(long_only > 30, "{long_only} flags in --help alone");
}

#[test]
fn a_drill_listens_on_loopback_unless_told_otherwise() {
    let drill = |args: &[&str]| {
        let mut all = vec!["drill", "--drill-ready-after", "1s"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "app"]);
        parse(&all).unwrap().health.addr
    };
    assert_eq!(drill(&[]), Some(DRILL_HEALTH_ADDR));
    assert_eq!(
        parse(&["app"]).unwrap().health.addr,
        Some(DEFAULT_HEALTH_ADDR)
    );
    // An address the user gives is used as given, even when it is the supervisor's default.
    assert_eq!(
        drill(&["--health-addr", "0.0.0.0:8558"]),
        Some(DEFAULT_HEALTH_ADDR)
    );
    assert_eq!(drill(&["--health-addr", "off"]), None);
}
