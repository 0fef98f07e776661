//! The validated configuration: what pyinit will do, with every default resolved.
//!
//! `cli.rs` holds the raw flags as clap parses them; [`Config::from_cli`] checks them against each
//! other, fills the defaults that depend on other flags, and produces types that cannot hold a bad
//! state. Nothing here touches the OS: facts such as "running in Kubernetes" are parameters.

pub mod cli;
pub mod parse;
mod probe_flags;

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

pub use cli::Cli;
use cli::{HealthArgs, PrivilegeArgs};
use core::net::SocketAddr;
use parse::HealthAddr;

use crate::probe::spec::{ProbeConfig, ProbeKind, ProbeTarget};

use crate::container::env::AppEnvSettings;
use crate::exit::ExitRemap;
use crate::log::{LogFormat, LogLevel};
use crate::privileges::spec::{IdOrName, MAX_GROUPS, PrivilegeConfig};
use crate::signals::{RewriteMap, Signal};
use crate::supervisor::{HardStop, Policy};
use crate::units::format_duration;

/// How long processes left behind by an exited app get between SIGTERM and SIGKILL.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(2);
/// How long pyinit waits for SIGKILLed processes to be reaped before it exits anyway.
pub const KILL_WAIT: Duration = Duration::from_secs(1);

/// A flag whose value cannot be used, named with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value '{}' for '{}': {}",
            self.value, self.flag, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// Everything pyinit was asked to do, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The app's argv; empty in sidecar mode.
    pub command: Vec<OsString>,
    pub grace_period: Duration,
    pub policy: Policy,
    pub parent_death_signal: Option<Signal>,
    pub log_format: LogFormat,
    pub log_level: LogLevel,
    /// What the app is told about the container's limits.
    pub app_env: AppEnvSettings,
    pub privileges: PrivilegeConfig,
    pub health: HealthConfig,
}

/// The health server and the probes behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Where the health server listens; `None` for `--health-addr off`.
    pub addr: Option<SocketAddr>,
    /// The configured probes, at most one per kind.
    pub probes: Vec<ProbeConfig>,
}

/// Facts about the environment pyinit was started in, read by `main`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Environment {
    /// `KUBERNETES_SERVICE_HOST` is set.
    pub in_kubernetes: bool,
}

impl Config {
    pub fn from_cli(cli: Cli, environment: Environment) -> Result<Config, ConfigError> {
        let grace_period = cli.grace_period;
        if grace_period.is_zero() {
            return Err(ConfigError {
                flag: "--grace-period",
                value: format_duration(grace_period),
                reason: "must be longer than 0s".to_owned(),
            });
        }
        let drain_timeout = cli
            .drain_timeout
            .unwrap_or_else(|| grace_period - (grace_period / 5).min(Duration::from_secs(5)));
        if drain_timeout >= grace_period || drain_timeout.is_zero() {
            return Err(ConfigError {
                flag: "--drain-timeout",
                value: format_duration(drain_timeout),
                reason: format!(
                    "must be longer than 0s and shorter than --grace-period ({})",
                    format_duration(grace_period)
                ),
            });
        }
        let pre_stop_delay = match cli.pre_stop_delay {
            Some(delay) => delay,
            None if environment.in_kubernetes => Duration::from_secs(5)
                .min(grace_period / 4)
                .min(drain_timeout / 2),
            None => Duration::ZERO,
        };
        if pre_stop_delay >= drain_timeout {
            return Err(ConfigError {
                flag: "--pre-stop-delay",
                value: format_duration(pre_stop_delay),
                reason: format!(
                    "must be shorter than --drain-timeout ({})",
                    format_duration(drain_timeout)
                ),
            });
        }
        let hard_stop = match (cli.hard_stop_signal, cli.hard_stop_after) {
            (Some(signal), Some(after)) => {
                if after <= pre_stop_delay || after >= drain_timeout {
                    return Err(ConfigError {
                        flag: "--hard-stop-after",
                        value: format_duration(after),
                        reason: format!(
                            "must fall after --pre-stop-delay ({}) and before --drain-timeout ({})",
                            format_duration(pre_stop_delay),
                            format_duration(drain_timeout)
                        ),
                    });
                }
                Some(HardStop { signal, after })
            }
            // clap's `requires` makes a lone flag a usage error before this point.
            _ => None,
        };
        let policy = Policy {
            forward_to: cli.forward_to,
            rewrite: RewriteMap::new(cli.signal_map),
            pre_stop_delay,
            drain_timeout,
            hard_stop,
            orphan_grace: ORPHAN_GRACE,
            kill_wait: KILL_WAIT,
            remap: ExitRemap::new(cli.remap_exit),
        };
        let privileges = PrivilegeConfig::from_args(cli.privileges)?;
        let health = health_config(cli.health)?;
        Ok(Config {
            privileges,
            health,
            command: cli.command,
            grace_period,
            policy,
            parent_death_signal: cli.parent_death_signal,
            log_format: cli.log_format,
            log_level: cli.log_level,
            app_env: AppEnvSettings {
                web_concurrency: cli.resources.web_concurrency,
                python_env: cli.resources.python_env,
            },
        })
    }
}

impl PrivilegeConfig {
    fn from_args(args: PrivilegeArgs) -> Result<PrivilegeConfig, ConfigError> {
        let groups = args.groups.map(|list| {
            let mut unique: Vec<IdOrName> = Vec::new();
            for group in list.0 {
                if !unique.contains(&group) {
                    unique.push(group);
                }
            }
            unique
        });
        if let Some(groups) = groups.as_ref().filter(|groups| groups.len() > MAX_GROUPS) {
            return Err(ConfigError {
                flag: "--groups",
                value: format!("{} groups", groups.len()),
                reason: format!("Linux allows at most {MAX_GROUPS}"),
            });
        }
        for (index, spec) in args.rlimit.iter().enumerate() {
            let given_before = args
                .rlimit
                .iter()
                .take(index)
                .any(|earlier| earlier.resource == spec.resource);
            if given_before {
                return Err(ConfigError {
                    flag: "--rlimit",
                    value: spec.name().to_owned(),
                    reason: "given more than once".to_owned(),
                });
            }
        }
        Ok(PrivilegeConfig {
            user: args.user,
            group: args.group,
            groups,
            umask: args.umask,
            allow_root: args.allow_root,
            no_new_privs: !args.allow_privilege_escalation,
            rlimits: args.rlimit,
        })
    }
}

fn health_config(mut health: HealthArgs) -> Result<HealthConfig, ConfigError> {
    let addr = match health.health_addr {
        HealthAddr::Off => None,
        HealthAddr::Listen(addr) => Some(addr),
    };
    let mut probes = Vec::new();
    for kind in ProbeKind::ALL {
        let timing = health.tuning.checked_timing(kind)?;
        let target = match kind {
            ProbeKind::Startup => health.startup.take(),
            ProbeKind::Liveness => health.liveness.take(),
            ProbeKind::Readiness => health.readiness.take(),
        };
        if let Some(target) = target {
            probes.push(ProbeConfig {
                kind,
                target,
                timing,
            });
        }
    }
    Ok(HealthConfig { addr, probes })
}

/// The health server's default address, as `--health-addr`'s default spells it.
pub const DEFAULT_HEALTH_ADDR: SocketAddr = SocketAddr::new(
    core::net::IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED),
    8558,
);

/// One URL the drill keeps requests in flight on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRequest {
    pub addr: SocketAddr,
    /// For the `Host:` header, as written in the URL.
    pub host: String,
    pub path: String,
}

/// How the drill knows the app is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillReadiness {
    /// The readiness probe passed (pyinit's `/readyz` is 200).
    Probe,
    /// This long after the app started.
    After(Duration),
}

/// `pyinit drill`'s own settings, checked against the supervisor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillConfig {
    pub readiness: DrillReadiness,
    pub ready_timeout: Duration,
    pub requests: Vec<DrillRequest>,
    /// Requests in flight at once, per URL.
    pub concurrency: usize,
    pub json: bool,
}

impl DrillConfig {
    pub fn from_args(args: cli::DrillArgs, config: &Config) -> Result<DrillConfig, ConfigError> {
        if config.command.is_empty() {
            return Err(ConfigError {
                flag: "COMMAND",
                value: String::new(),
                reason: "pyinit drill needs the app's command after --".to_owned(),
            });
        }
        let has_readiness_probe = config
            .health
            .probes
            .iter()
            .any(|probe| probe.kind == ProbeKind::Readiness);
        let readiness = match args.drill_ready_after {
            Some(after) => DrillReadiness::After(after),
            None if has_readiness_probe => DrillReadiness::Probe,
            None => {
                return Err(ConfigError {
                    flag: "--drill-ready-after",
                    value: "(none)".to_owned(),
                    reason: "pyinit drill needs --readiness PROBE or --drill-ready-after DURATION \
                             to know when the app is ready"
                        .to_owned(),
                });
            }
        };
        let requests = args
            .drill_request
            .into_iter()
            .filter_map(|target| match target {
                ProbeTarget::Http { addr, host, path } => Some(DrillRequest { addr, host, path }),
                // parse_drill_url accepts http:// URLs only.
                _ => None,
            })
            .collect();
        Ok(DrillConfig {
            readiness,
            ready_timeout: args.drill_ready_timeout,
            requests,
            concurrency: usize::try_from(args.drill_concurrency.get()).unwrap_or(usize::MAX),
            json: args.json,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::probe::spec::ProbeTiming;
    use crate::signals::ForwardTarget;

    fn parse(args: &[&str]) -> Result<Config, String> {
        parse_in(args, Environment::default())
    }

    fn parse_in(args: &[&str], environment: Environment) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("pyinit").chain(args.iter().copied()))
            .map_err(|error| error.to_string())?;
        Config::from_cli(cli, environment).map_err(|error| error.to_string())
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
}
