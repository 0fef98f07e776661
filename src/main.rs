//! pyinit: a small PID 1 for Python services on Kubernetes.
//!
//! `main` runs the set-up phases in order and is the only place that turns an error into an exit
//! code. Everything after the spawn is decided by the supervisor.

mod config;
mod container;
mod drill;
mod exit;
mod health;
mod log;
mod privileges;
mod probe;
mod reaper;
mod signals;
mod spawn;
mod status;
mod supervisor;
#[cfg(test)]
mod tidy;
mod units;

use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::config::cli::DrillCli;
use crate::config::{Cli, Config, DrillConfig, Environment};
use crate::container::cgroup::CpuQuota;
use crate::container::oom::OomMonitor;
use crate::container::{ContainerFacts, StartupReport};
use crate::privileges::PrivilegeError;
use crate::probe::threshold::Probes;
use crate::reaper::Reaper;
use crate::spawn::{SpawnError, SpawnSpec};
use crate::status::Status;
use crate::supervisor::Supervisor;

/// A set-up failure: printed on one line, mapped to its exit code.
#[derive(Debug)]
enum SetupError {
    Usage(String),
    Config(config::ConfigError),
    Privileges(PrivilegeError),
    Spawn(SpawnError),
    Bind(health::BindError),
    Os {
        step: &'static str,
        source: std::io::Error,
    },
}

impl SetupError {
    fn exit_code(&self) -> u8 {
        match self {
            SetupError::Usage(_) | SetupError::Config(_) => exit::USAGE,
            SetupError::Privileges(failure) => failure.exit_code(),
            SetupError::Spawn(failure) => failure.exit_code(),
            SetupError::Os { .. } | SetupError::Bind(_) => exit::SETUP_FAILED,
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Usage(message) => f.write_str(message),
            SetupError::Config(failure) => write!(f, "{failure}"),
            SetupError::Privileges(failure) => write!(f, "{failure}"),
            SetupError::Spawn(failure) => write!(f, "{failure}"),
            SetupError::Bind(failure) => write!(f, "{failure}"),
            SetupError::Os { step, source } => write!(f, "{step}: {source}"),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("pyinit: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// The command line as a validated `Config` (and the drill's settings for `pyinit drill`), or
/// `None` once --help or --version has been printed. clap's own errors are cut to their first
/// line, so every usage error is one line.
fn parse_command_line() -> Result<Option<(Config, Option<DrillConfig>)>, SetupError> {
    // `pyinit drill ...` takes the same flags as pyinit, plus the drill's own.
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let is_drill = args.get(1).is_some_and(|first| first == "drill");
    let parsed = if is_drill {
        args.remove(1);
        DrillCli::try_parse_from(args).map(|drill_cli| (drill_cli.pyinit, Some(drill_cli.drill)))
    } else {
        Cli::try_parse_from(args).map(|cli| (cli, None))
    };
    let (cli, drill_args) = match parsed {
        Ok(parsed) => parsed,
        Err(clap_error) if !clap_error.use_stderr() => {
            print_help_or_version(&clap_error);
            return Ok(None);
        }
        Err(clap_error) => return Err(SetupError::Usage(first_line_of(&clap_error))),
    };

    // Validate every flag against the others before anything is started.
    let environment = Environment {
        in_kubernetes: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
    };
    let mut config = Config::from_cli(cli, environment).map_err(SetupError::Config)?;
    let drill = match drill_args {
        Some(drill_args) => {
            let drill = DrillConfig::from_args(drill_args, &config).map_err(SetupError::Config)?;
            config.health.addr = drill::health_addr_for_drill(config.health.addr);
            Some(drill)
        }
        None => None,
    };
    Ok(Some((config, drill)))
}

fn run() -> Result<u8, SetupError> {
    // Parse and validate every flag before anything is started; `None` is --help or --version.
    let Some((config, drill)) = parse_command_line()? else {
        return Ok(0);
    };
    log::init_logging(config.log_format, config.log_level);

    // Limits: read once, before the app starts, so that it can be sized to them.
    let facts = ContainerFacts::read(Path::new("/"));
    let current_env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let has_app = !config.command.is_empty();
    let app_env = container::env::app_environment(&facts, config.app_env, &current_env, has_app);
    // The OOM-kill counter's value before the app exists: only later rises are the app's.
    let oom_monitor = OomMonitor::new(&facts);

    // Reaping: PID 1 inherits every orphan; anywhere else pyinit must ask for them.
    let is_pid1 = std::process::id() == 1;
    if !is_pid1 {
        reaper::become_subreaper().map_err(|errno| SetupError::Os {
            step: "cannot become child subreaper",
            source: errno.into(),
        })?;
        debug!("not PID 1: registered as child subreaper");
    }
    let parent_pid = nix::unistd::getppid();

    // Health listener: bound before privileges drop so ports < 1024 work, and before the app
    // starts, so that a taken port stops pyinit instead of leaving the kubelet without answers.
    let health_listener = config
        .health
        .addr
        .map(health::bind_listener)
        .transpose()
        .map_err(SetupError::Bind)?;

    // Drop root while pyinit has one thread: the set-id calls and no_new_privs act per thread.
    let dropped =
        privileges::drop_privileges(&config.privileges).map_err(SetupError::Privileges)?;
    debug!(
        uid = dropped.uid,
        gid = dropped.gid,
        groups = ?dropped.groups,
        "privileges set"
    );

    // The parent-death signal is cleared by a credential change, so it is armed after the drop.
    let mut parent_already_gone = false;
    if let Some(signal) = config.parent_death_signal.filter(|_| !is_pid1) {
        signals::arm_parent_death_signal(signal).map_err(|errno| SetupError::Os {
            step: "cannot set --parent-death-signal",
            source: errno.into(),
        })?;
        parent_already_gone = nix::unistd::getppid() != parent_pid;
    }

    // Start-up checks: warnings only, logged with the facts once the app has started, so that a
    // set-up failure stays a single line.
    let app_facts = has_app.then_some(container::checks::AppFacts {
        uid: dropped.uid,
        grace_period: config.grace_period,
        drain_timeout: config.policy.drain_timeout,
    });
    let warnings = container::checks::startup_warnings(&facts, std::process::id(), app_facts);
    let startup = StartupReport {
        facts,
        app_env,
        warnings,
    };

    // One thread: the runtime is built only now, after every process-wide change above.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Poll for I/O and signals every 8 tasks, not tokio's 61: under a flood of health
        // requests a signal then waits behind 16 connections' answers at most, not 122
        // (SIGUSR1 to the app, p50 under a wrk flood: 640 µs with 61, 170 µs with 8).
        .event_interval(8)
        .build()
        .map_err(|source| SetupError::Os {
            step: "cannot start the runtime",
            source,
        })?;
    let code = runtime.block_on(supervise(Prepared {
        config,
        startup,
        user_env: dropped.env,
        health_listener,
        oom_monitor,
        parent_already_gone,
        drill,
    }));
    // Exit without dropping the runtime: that would close every health connection and free
    // every buffer one call at a time (milliseconds with a hundred clients), which exit(2)
    // does anyway. Nothing in it is left to flush or to wait for once the supervisor is done.
    std::mem::forget(runtime);
    code
}

/// Everything set-up produced, handed to the runtime.
#[derive(Debug)]
struct Prepared {
    config: Config,
    startup: StartupReport,
    /// HOME, USER and LOGNAME of the user pyinit dropped to.
    user_env: Vec<(OsString, OsString)>,
    health_listener: Option<std::net::TcpListener>,
    oom_monitor: OomMonitor,
    parent_already_gone: bool,
    drill: Option<DrillConfig>,
}

async fn supervise(prepared: Prepared) -> Result<u8, SetupError> {
    let Prepared {
        config,
        startup,
        user_env,
        health_listener,
        oom_monitor,
        parent_already_gone,
        drill,
    } = prepared;
    // The runtime adopts the listener bound during set-up.
    let health_listener = health_listener
        .map(tokio::net::TcpListener::from_std)
        .transpose()
        .map_err(|source| SetupError::Os {
            step: "cannot serve --health-addr",
            source,
        })?;
    // Handlers first, so that no signal sent during the spawn is lost.
    let extra_signals = config
        .policy
        .rewrite
        .sources()
        .chain(config.parent_death_signal)
        .collect::<Vec<_>>();
    let signal_stream =
        signals::register_handlers(extra_signals).map_err(|source| SetupError::Os {
            step: "cannot install signal handlers",
            source,
        })?;
    if parent_already_gone && let Some(signal) = config.parent_death_signal {
        let _ = signals::raise_signal(signal);
    }
    let reaper = Arc::new(Reaper::new());
    // The app and its exec probes see the same environment.
    let app_env: Arc<[(OsString, OsString)]> = user_env
        .into_iter()
        .chain(startup.app_env.to_os_pairs())
        .collect();
    let app_pid = if config.command.is_empty() {
        startup.log();
        info!("no command: running as a health sidecar");
        None
    } else {
        let spec = SpawnSpec {
            argv: config.command.clone(),
            env: app_env.to_vec(),
            inherit_stdio: true,
            take_terminal: true,
        };
        let pid = spawn::spawn_child(&spec).map_err(SetupError::Spawn)?;
        startup.log();
        let argv: Vec<_> = config
            .command
            .iter()
            .map(|arg| arg.to_string_lossy())
            .collect();
        info!(
            pid,
            argv = ?argv,
            grace_period_ms = units::millis(config.grace_period),
            "app started"
        );
        Some(pid)
    };

    // From here on nothing returns an error: the supervisor alone decides when pyinit exits.
    let supervisor = Supervisor::new(config.policy.clone(), app_pid)
        .with_probes(Probes::new(&config.health.probes))
        .with_resource_limits(
            startup.facts.cpu_limit.limited().map(CpuQuota::millicpus),
            startup.facts.memory_limit_bytes.limited(),
        );
    let (status_tx, status_rx) = watch::channel::<Status>(supervisor.status().clone());
    let mut health_local_addr = None;
    if let Some(listener) = health_listener {
        health_local_addr = listener.local_addr().ok();
        if let Some(addr) = health_local_addr {
            info!(addr = %addr, "health server listening");
        }
        tokio::spawn(health::serve_health(listener, status_rx.clone()));
    }
    // Probers start with the app, so that initial delays count from its start.
    let (probe_tx, probe_rx) = mpsc::channel(16);
    let exec_context = probe::ExecContext {
        reaper: Arc::clone(&reaper),
        env: app_env,
    };
    probe::spawn_probers(
        config.health.probes.clone(),
        &status_rx,
        &probe_tx,
        &exec_context,
    );
    drop(probe_tx);
    // The drill plays the kubelet beside the supervisor; the supervisor does not know it is there.
    let request_timeout = config.policy.drain_timeout + drill::REQUEST_TIMEOUT_MARGIN;
    let rehearsal = drill.clone().map(|drill| {
        tokio::spawn(drill::rehearse(
            drill,
            config.policy.pre_stop_delay,
            request_timeout,
            status_rx.clone(),
            health_local_addr.map(drill::loopback_of),
        ))
    });
    let exit_code = supervisor::driver::run_supervisor(
        supervisor,
        signal_stream,
        reaper,
        status_tx,
        probe_rx,
        oom_monitor,
        startup.facts,
    )
    .await;
    let (Some(rehearsal), Some(drill)) = (rehearsal, drill) else {
        return Ok(exit_code);
    };
    let trace = tokio::time::timeout(request_timeout, rehearsal)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let final_status = status_rx.borrow().clone();
    Ok(drill::finish(
        trace,
        &final_status,
        exit_code,
        &config,
        &drill,
    ))
}

fn first_line_of(clap_error: &clap::Error) -> String {
    let rendered = clap_error.to_string();
    let line = rendered.lines().next().unwrap_or("invalid usage");
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

#[allow(
    clippy::print_stdout,
    reason = "--help and --version answer on stdout, as users expect"
)]
fn print_help_or_version(clap_error: &clap::Error) {
    print!("{clap_error}");
}
