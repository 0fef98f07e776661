//! The validated configuration: what pyinit will do, with every default resolved.
//!
//! `cli.rs` holds the raw flags as clap parses them, and `probe_flags.rs` the probe kinds' tuning
//! flags from one table. [`parse_command_line`] parses them (every usage error is one line) and
//! [`Config::from_cli`] checks them against each other, fills the defaults that depend on other
//! flags, and produces types that cannot hold a bad state, among them the [`Mode`]. Nothing
//! here touches the OS: the arguments and facts such as "running in Kubernetes" are
//! parameters. The types come from the modules they configure (`privileges`, `probe`, `drill`,
//! `supervisor`, `signals`, `container`, `log`); none of those imports `config`.

pub mod cli;
mod drain;
pub mod parse;
mod probe_flags;

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use clap::FromArgMatches;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use cli::{Cli, DrillArgs, HealthArgs, ModeCommand, PrivilegeArgs};
use drain::{DrainTiming, Setting, drain_timing};
use parse::HealthAddr;

use crate::container::env::AppEnvSettings;
use crate::drill::spec::{DrillConfig, DrillReadiness};
use crate::exit::{ChildStatus, ExitRemap};
use crate::log::spec::{LogFormat, LogLevel};
use crate::privileges::spec::{IdOrName, MAX_GROUPS, PrivilegeConfig};
use crate::probe::spec::{ProbeConfig, ProbeKind};
use crate::server::recognise::{Recognised, has_option, recognise};
use crate::server::{DevelopmentServer, ProfileChange, ServerChoice, ServerProfile, ServerSetup};
use crate::signals::spec::{RewriteMap, Signal, short_name};
use crate::supervisor::policy::Policy;

/// How long processes left behind by an exited app get between SIGTERM and SIGKILL.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(2);
/// How long pyinit waits for SIGKILLed processes to be reaped before it exits anyway.
pub const KILL_WAIT: Duration = Duration::from_secs(1);
/// The health server's address when `--health-addr` is not given: every interface, since the
/// kubelet probes the pod's IP.
pub const DEFAULT_HEALTH_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8558);
/// A drill's instead: a free port on loopback, so that a drill on a laptop or in CI never fights
/// over the port.
pub const DRILL_HEALTH_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

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

/// Why the command line cannot be used: bad usage (exit 2), always one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// clap's own message (an unknown flag, a value its parser refused), cut to its first line.
    Clap(String),
    /// A value, or a combination of flags, that `Config::from_cli` refused.
    Invalid(ConfigError),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Clap(message) => f.write_str(message),
            UsageError::Invalid(failure) => write!(f, "{failure}"),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum CommandLine {
    Run(Box<Config>),
    /// `--help` or `--version`: the text for stdout, and nothing to run.
    Print(String),
}

/// Parses and validates the whole command line (`args` includes the program name) and the
/// `PYINIT_*` variables clap reads beside it.
pub fn parse_command_line(
    args: impl IntoIterator<Item = OsString>,
    environment: Environment,
) -> Result<CommandLine, UsageError> {
    let matches = match cli::command().try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(clap_error) if !clap_error.use_stderr() => {
            return Ok(CommandLine::Print(clap_error.to_string()));
        }
        Err(clap_error) => return Err(UsageError::Clap(one_line(&clap_error))),
    };
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|clap_error| UsageError::Clap(one_line(&clap_error)))?;
    match Config::from_cli(cli, environment) {
        Ok(config) => Ok(CommandLine::Run(Box::new(config))),
        Err(failure) => Err(UsageError::Invalid(failure)),
    }
}

/// clap's message on one line: its first paragraph, with the lines that list the missing flags
/// joined onto it, then clap's tip naming the flag or value meant, after a semicolon ("tip: a
/// similar argument exists: '--readiness'"). The usage, the pointer to --help and the tip to pass
/// a flag-like word as a value with `--` are left out: the usage line puts the app after `--`.
fn one_line(clap_error: &clap::Error) -> String {
    let rendered = clap_error.to_string();
    let mut lines = rendered.lines().map(str::trim);
    let mut line = String::new();
    for part in lines.by_ref().take_while(|part| !part.is_empty()) {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(part.strip_prefix("error: ").unwrap_or(part));
    }
    if line.is_empty() {
        line.push_str("invalid usage");
    }
    for tip in lines.filter(|part| part.starts_with("tip: a similar ")) {
        line.push_str("; ");
        line.push_str(tip);
    }
    line
}

/// Everything pyinit was asked to do, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// The app's argv; empty in sidecar mode.
    pub command: Vec<OsString>,
    pub grace_period: Duration,
    /// How long the pod's preStop hook runs before the stop signal (`--pre-stop-hook`): the
    /// drain's deadlines are cut from what it leaves of the grace period.
    pub pre_stop_hook: Duration,
    pub policy: Policy,
    pub parent_death_signal: Option<Signal>,
    pub log_format: LogFormat,
    pub log_level: LogLevel,
    /// What the app is told about the container's limits.
    pub app_env: AppEnvSettings,
    /// Prepare prometheus_client's multiprocess directory for the app: `--prepare-multiproc-dir
    /// on` and there is an app (a health sidecar's pod mate may be using that directory).
    pub prepare_multiproc_dir: bool,
    pub privileges: PrivilegeConfig,
    pub health: HealthConfig,
    /// The server's profile, with what it changed; `None` for an unrecognised app and for
    /// `--server none`.
    pub server: Option<ServerSetup>,
    /// A development server the command runs, which pyinit warns about.
    pub development_server: Option<&'static DevelopmentServer>,
}

/// What pyinit does with the app; both modes run it under the same supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `pyinit`: supervise the app (or, without one, serve health as a sidecar).
    Supervise,
    /// `pyinit drill`: also play the kubelet against it, and report how it drained.
    Drill(DrillConfig),
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
    /// The signals pyinit must catch besides the forwarded set: the sources of `--signal-map`
    /// and the parent-death signal.
    pub fn extra_signals(&self) -> Vec<Signal> {
        (self.policy.rewrite.sources())
            .chain(self.parent_death_signal)
            .collect()
    }

    /// Checks the flags against each other and fills the defaults that depend on other flags.
    pub fn from_cli(mut cli: Cli, environment: Environment) -> Result<Config, ConfigError> {
        let mut drill_args = cli.mode.take().map(|ModeCommand::Drill(args)| args);
        let command = match drill_args.as_mut() {
            Some(args) => std::mem::take(&mut args.command),
            None => std::mem::take(&mut cli.command),
        };
        let recognised = match cli.server {
            ServerChoice::Auto => recognise(&command),
            ServerChoice::None => Recognised::Unknown,
            ServerChoice::Named(profile) => Recognised::Server(profile),
        };
        let profile = match recognised {
            Recognised::Server(profile) => Some(profile),
            Recognised::Development(_) | Recognised::Unknown => None,
        };
        let mut changes = Vec::new();
        let timing = drain_timing(
            &cli,
            Setting {
                in_kubernetes: environment.in_kubernetes,
                sidecar: command.is_empty(),
                server: profile,
            },
            &mut changes,
        )?;
        let policy = stop_policy(&mut cli, &timing, profile, &mut changes)?;
        let server = profile.map(|profile| ServerSetup {
            profile,
            named: cli.server != ServerChoice::Auto,
            changes,
            stop_variables: !(profile.stop_set_by_options.iter())
                .any(|option| has_option(&command, option)),
        });
        let privileges = privilege_config(cli.privileges)?;
        let health = health_config(cli.health, drill_args.is_some())?;
        let mode = match drill_args {
            Some(args) => Mode::Drill(drill_mode(
                args, cli.server, &command, &health, &timing, &policy,
            )?),
            None => Mode::Supervise,
        };
        let prepare_multiproc_dir = cli.prepare_multiproc_dir && !command.is_empty();
        Ok(Config {
            mode,
            privileges,
            health,
            command,
            grace_period: cli.grace_period,
            pre_stop_hook: timing.pre_stop_hook,
            policy,
            parent_death_signal: cli.parent_death_signal,
            log_format: cli.log_format,
            log_level: cli.log_level,
            app_env: AppEnvSettings {
                web_concurrency: cli.resources.web_concurrency,
                python_env: cli.resources.python_env,
                server: profile,
                graceful_stop_variables: server.as_ref().is_none_or(|setup| setup.stop_variables),
            },
            prepare_multiproc_dir,
            development_server: match recognised {
                Recognised::Development(server) => Some(server),
                Recognised::Server(_) | Recognised::Unknown => None,
            },
            server,
        })
    }
}

/// What the supervisor is to do with signals and exits: the stop signal, what the app is sent
/// for it, the map, the drain's timing and the exit code's rules.
fn stop_policy(
    cli: &mut Cli,
    timing: &DrainTiming,
    profile: Option<&'static ServerProfile>,
    changes: &mut Vec<ProfileChange>,
) -> Result<Policy, ConfigError> {
    let rewrite = RewriteMap::new(std::mem::take(&mut cli.signal_map));
    let remap = ExitRemap::new(std::mem::take(&mut cli.remap_exit));
    let app_stop_signal = app_stop_signal(cli.stop_signal, &rewrite, profile, changes);
    check_term_entry(cli.stop_signal, &rewrite, app_stop_signal)?;
    let clean_death_by_stop_signal =
        clean_death_by_stop_signal(app_stop_signal, &remap, profile, changes);
    Ok(Policy {
        stop_signal: cli.stop_signal,
        app_stop_signal,
        forward_to: cli.forward_to,
        rewrite,
        pre_stop_delay: timing.pre_stop_delay,
        drain_timeout: timing.drain_timeout,
        hard_stop: timing.hard_stop,
        deadline_dump: timing.deadline_dump,
        orphan_grace: ORPHAN_GRACE,
        kill_wait: KILL_WAIT,
        remap,
        clean_death_by_stop_signal,
    })
}

/// The drill as configured, with the profile `--server none` turned off, if any: the drill
/// names it as the fix.
fn drill_mode(
    args: DrillArgs,
    server: ServerChoice,
    command: &[OsString],
    health: &HealthConfig,
    timing: &DrainTiming,
    policy: &Policy,
) -> Result<DrillConfig, ConfigError> {
    let mut drill = drill_config(args, command, health, timing, policy)?;
    drill.server_turned_off = match (server, recognise(command)) {
        (ServerChoice::None, Recognised::Server(profile)) => Some(profile.name),
        _ => None,
    };
    Ok(drill)
}

/// What the app is sent when the drain sends its stop signal (`None`: dropped), in this order
/// of precedence:
/// 1. `--signal-map` has an entry for the stop signal: its target, since a flag given
///    explicitly always wins;
/// 2. the server's profile names an app stop signal (waitress: INT): that one;
/// 3. otherwise the stop signal itself.
fn app_stop_signal(
    stop_signal: Signal,
    rewrite: &RewriteMap,
    profile: Option<&ServerProfile>,
    changes: &mut Vec<ProfileChange>,
) -> Option<Signal> {
    if let Some(target) = rewrite.entry(stop_signal) {
        return target;
    }
    match profile.and_then(|profile| profile.app_stop_signal) {
        Some(signal) => {
            changes.push(ProfileChange::AppStopSignal(signal));
            Some(signal)
        }
        None => Some(stop_signal),
    }
}

/// Whether the app's death by its stop signal, after pyinit sent it, is a clean stop (exit 0):
/// for a server that re-raises the signal after draining, unless `--remap-exit` says what that
/// code becomes.
fn clean_death_by_stop_signal(
    app_stop_signal: Option<Signal>,
    remap: &ExitRemap,
    profile: Option<&ServerProfile>,
    changes: &mut Vec<ProfileChange>,
) -> bool {
    let (Some(signal), Some(profile)) = (app_stop_signal, profile) else {
        return false;
    };
    let code = ChildStatus::Signaled(signal as i32).exit_code();
    let clean = profile.dies_of_stop_signal && !remap.has(code);
    if clean {
        changes.push(ProfileChange::CleanDeathBy(signal));
    }
    clean
}

/// With a stop signal other than TERM, a TERM begins the drain too and the app gets its stop
/// signal: a `--signal-map` entry for TERM that would send it anything else never applies, and
/// is refused rather than ignored.
fn check_term_entry(
    stop_signal: Signal,
    rewrite: &RewriteMap,
    app_stop_signal: Option<Signal>,
) -> Result<(), ConfigError> {
    let Some(target) = rewrite.entry(Signal::SIGTERM) else {
        return Ok(());
    };
    if stop_signal == Signal::SIGTERM || target == app_stop_signal {
        return Ok(());
    }
    let name = |signal: Option<Signal>| signal.map_or("none", short_name);
    Err(ConfigError {
        flag: "--signal-map",
        value: format!("TERM={}", name(target)),
        reason: format!(
            "never applies with --stop-signal {stop}: a TERM begins the drain too, and the app \
             then gets its stop signal ({app}); map {stop}=SIGNAL to change what the app gets",
            stop = short_name(stop_signal),
            app = name(app_stop_signal),
        ),
    })
}

fn privilege_config(args: PrivilegeArgs) -> Result<PrivilegeConfig, ConfigError> {
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

/// The probes, and where the health server listens: as given, or the mode's default.
fn health_config(mut health: HealthArgs, drill: bool) -> Result<HealthConfig, ConfigError> {
    let addr = match health.health_addr {
        Some(HealthAddr::Off) => None,
        Some(HealthAddr::Listen(addr)) => Some(addr),
        None if drill => Some(DRILL_HEALTH_ADDR),
        None => Some(DEFAULT_HEALTH_ADDR),
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

/// The drill's flags, checked against the supervisor's: it needs an app, and a way to know when
/// the app is ready.
fn drill_config(
    args: DrillArgs,
    command: &[OsString],
    health: &HealthConfig,
    timing: &DrainTiming,
    policy: &Policy,
) -> Result<DrillConfig, ConfigError> {
    if command.is_empty() {
        return Err(ConfigError {
            flag: "COMMAND",
            value: String::new(),
            reason: "pyinit drill needs the app's command after --".to_owned(),
        });
    }
    let has_readiness_probe = health
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
    Ok(DrillConfig {
        readiness,
        ready_timeout: args.drill_ready_timeout,
        requests: args.drill_request,
        concurrency: args.drill_concurrency,
        json: args.json,
        stop_signal: policy.stop_signal,
        grace_period: timing.grace_period,
        pre_stop_hook: timing.pre_stop_hook,
        drain_timeout: policy.drain_timeout,
        pre_stop_delay: policy.pre_stop_delay,
        deadline_dump: policy.deadline_dump,
        forward_to: policy.forward_to,
        server_turned_off: None,
    })
}

/// For unit tests: the `Config` of `pyinit ARGS...`, or the usage error's line.
#[cfg(test)]
pub fn parse_args(args: &[&str], environment: Environment) -> Result<Config, String> {
    let argv = std::iter::once("pyinit").chain(args.iter().copied());
    match parse_command_line(argv.map(OsString::from), environment) {
        Ok(CommandLine::Run(config)) => Ok(*config),
        Ok(CommandLine::Print(text)) => Err(format!("printed: {text}")),
        Err(failure) => Err(failure.to_string()),
    }
}

#[cfg(test)]
mod tests;
