//! pyinit: a small PID 1 for Python services on Kubernetes.
//!
//! `main` runs the set-up phases in order, one call each with the reason for its place, and is
//! the only place that turns an error into an exit code. Everything after the spawn is decided
//! by the supervisor. Both modes (`pyinit` and `pyinit drill`) run the same phases; a drill only
//! attaches one more task and judges the shutdown at the end.

mod clock;
mod config;
mod container;
mod drill;
mod exit;
mod health;
mod json;
mod log;
mod multiproc;
mod privileges;
mod probe;
mod reaper;
mod server;
mod signals;
mod spawn;
mod start;
mod status;
mod supervisor;
mod units;

use std::ffi::OsString;
use std::fmt;
use std::mem::ManuallyDrop;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::config::{CommandLine, Config, Environment};
use crate::container::StartupReport;
use crate::container::oom::OomMonitor;
use crate::container::watch::PolledFiles;
use crate::reaper::Reaper;
use crate::start::{
    Tasks, new_supervisor, start_app, start_tasks, startup_report, workers_to_follow,
};
use crate::supervisor::resize::ResourcePoll;

/// A set-up failure: printed on one line, mapped to its exit code.
#[derive(Debug)]
enum SetupError {
    Usage(config::UsageError),
    Privileges(privileges::PrivilegeError),
    Multiproc(multiproc::MultiprocError),
    Spawn(spawn::SpawnError),
    Bind(health::BindError),
    Os {
        step: &'static str,
        source: std::io::Error,
    },
}

impl SetupError {
    fn exit_code(&self) -> u8 {
        match self {
            SetupError::Usage(_) => exit::USAGE,
            SetupError::Privileges(failure) => failure.exit_code(),
            SetupError::Multiproc(failure) => failure.exit_code(),
            SetupError::Spawn(failure) => failure.exit_code(),
            SetupError::Os { .. } | SetupError::Bind(_) => exit::SETUP_FAILED,
        }
    }

    /// For `map_err`: the OS refused `step`.
    fn os<E: Into<std::io::Error>>(step: &'static str) -> impl FnOnce(E) -> SetupError {
        move |source| SetupError::Os {
            step,
            source: source.into(),
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Usage(failure) => write!(f, "{failure}"),
            SetupError::Privileges(failure) => write!(f, "{failure}"),
            SetupError::Multiproc(failure) => write!(f, "{failure}"),
            SetupError::Spawn(failure) => write!(f, "{failure}"),
            SetupError::Bind(failure) => write!(f, "{failure}"),
            SetupError::Os { step, source } => write!(f, "{step}: {source}"),
        }
    }
}

fn main() -> ExitCode {
    // First of all: a signal sent during set-up waits for its handler instead of being dropped.
    signals::block_handled_signals();
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("pyinit: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run() -> Result<u8, SetupError> {
    // Parse and validate every flag before anything is started: a bad one starts nothing.
    let environment = Environment {
        in_kubernetes: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
    };
    let config = match config::parse_command_line(std::env::args_os(), environment) {
        Ok(CommandLine::Run(config)) => *config,
        Ok(CommandLine::Print(help_or_version)) => return Ok(print_on_stdout(&help_or_version)),
        Err(failure) => return Err(SetupError::Usage(failure)),
    };
    // Logs go to stderr only: stdout belongs to the app.
    log::init_logging(config.log_format, config.log_level);
    // Every process-wide change, while pyinit has one thread; then the app and its supervisor.
    let prepared = prepare(&config)?;
    supervise(&config, prepared)
}

/// What the set-up before the runtime hands on to the supervision.
struct Prepared {
    polled_files: PolledFiles,
    oom_monitor: OomMonitor,
    health_listener: Option<std::net::TcpListener>,
    /// The environment the privilege drop leaves the app (HOME, USER, LOGNAME).
    dropped_env: Vec<(OsString, OsString)>,
    startup: StartupReport,
    /// The parent died before its death signal was armed: pyinit raises it itself.
    parent_already_gone: bool,
}

/// The set-up phases before the runtime exists: limits, reaping, the health listener, the
/// privilege drop and what must happen on either side of it.
fn prepare(config: &Config) -> Result<Prepared, SetupError> {
    // Limits: read before the app starts, so that it can be sized to them; the OOM-kill counter
    // too, before the app exists, so that only later rises are the app's. Their files stay open
    // (opened while pyinit may still be root) for the resource poll, which reads the limits
    // again while the app runs: a pod can be resized in place.
    let facts = container::read_facts(Path::new("/"));
    let polled_files = PolledFiles::open(&facts);
    let oom_monitor = OomMonitor::new(&facts);
    // Reaping: PID 1 inherits every orphan; anywhere else pyinit must ask for them.
    let parent_pid = become_reaper()?;
    // Health listener: bound before privileges drop so ports < 1024 work, and before the app
    // starts, so that a taken port stops pyinit instead of leaving the kubelet without answers.
    let health_listener = (config.health.addr.map(health::bind_listener))
        .transpose()
        .map_err(SetupError::Bind)?;
    // Who the app will be, resolved once: the directory below is made for these ids.
    let app_ids =
        privileges::look_up_target_ids(&config.privileges).map_err(SetupError::Privileges)?;
    // prometheus_client's multiprocess directory, emptied of the last run's files and created
    // for the app while pyinit may still be root: its parent is often writable by root alone.
    let owner = multiproc::AppOwner {
        uid: app_ids.uid,
        gid: app_ids.gid,
        umask: config.privileges.umask.map(|umask| umask.0),
    };
    let multiproc_dir = multiproc::prepare_for_app(config.prepare_multiproc_dir, owner)
        .map_err(SetupError::Multiproc)?;
    // Drop root while pyinit has one thread: the set-id calls and no_new_privs act per thread.
    let dropped = privileges::drop_privileges(&config.privileges, &app_ids)
        .map_err(SetupError::Privileges)?;
    debug!(uid = dropped.uid, gid = dropped.gid, groups = ?dropped.groups, "privileges set");
    // Whether the app can write there is known only as the app's user: checked after the drop.
    let multiproc_dir = (multiproc_dir.map(multiproc::PreparedDir::check_app_can_write))
        .transpose()
        .map_err(SetupError::Multiproc)?;
    // The parent-death signal is cleared by a credential change, so it is armed after the drop.
    let parent_already_gone = set_up_parent_death_signal(config, parent_pid)?;
    // What the app is told and warned about, logged once it has started: a set-up failure
    // stays a single line.
    let startup = startup_report(config, facts, dropped.uid, multiproc_dir);
    Ok(Prepared {
        polled_files,
        oom_monitor,
        health_listener,
        dropped_env: dropped.env,
        startup,
        parent_already_gone,
    })
}

/// The phases in the runtime: the signal handlers, the app, the tasks beside it and the
/// supervisor, which runs until it says Exit; a drill then judges the shutdown it watched, and
/// its verdict is the exit code.
fn supervise(config: &Config, prepared: Prepared) -> Result<u8, SetupError> {
    let Prepared {
        polled_files,
        oom_monitor,
        health_listener,
        dropped_env,
        startup,
        parent_already_gone,
    } = prepared;
    // One thread: the runtime is built only now, after every process-wide change. It is never
    // dropped: that would close every health connection and free every buffer one call at a
    // time (milliseconds with a hundred clients), which exit(2) does anyway, and nothing in it
    // is left to flush or to wait for once the supervisor is done.
    let runtime = ManuallyDrop::new(build_runtime()?);
    let _in_runtime = runtime.enter();
    // The runtime adopts the listener bound during set-up.
    let health_listener = (health_listener.map(tokio::net::TcpListener::from_std))
        .transpose()
        .map_err(SetupError::os("cannot serve --health-addr"))?;
    // Signal handlers before the spawn, so that no signal sent during it is lost; the signals
    // held back since `main` began are let through once their handlers are in place.
    let signal_stream = signals::register_handlers(config.extra_signals())
        .map_err(SetupError::os("cannot install signal handlers"))?;
    if parent_already_gone && let Some(signal) = config.parent_death_signal {
        let _ = signals::raise_signal(signal);
    }
    // The app, with the sizing on top of the user's environment; its exec probes get the same.
    // Then pyinit keeps no directory busy (a volume there could not be unmounted).
    let app_env: Arc<[(OsString, OsString)]> =
        (dropped_env.into_iter().chain(startup.app_env.to_os_pairs())).collect();
    let app = start_app(config, &app_env, &startup).map_err(SetupError::Spawn)?;
    // From here on nothing returns an error: the supervisor alone decides when pyinit exits.
    let supervisor = new_supervisor(config, app.workload, &startup.facts);
    let (status_tx, status_rx) = watch::channel(supervisor.status().clone());
    let probe_gate = Arc::new(probe::SharedGate::new(supervisor.probe_gate()));
    let reaper = Arc::new(Reaper::new());
    let (probe_tx, probe_rx) = mpsc::channel(16);
    // The tasks start with the app, so that the probes' initial delays count from its start.
    let rehearsal = start_tasks(Tasks {
        config,
        health_listener,
        status_rx: &status_rx,
        probe_gate: Arc::clone(&probe_gate),
        probe_tx,
        reaper: &reaper,
        app_env,
        app_working_dir: app.working_dir,
        app_stderr: app.stderr,
        server_profile: (startup.server.as_ref()).map(|(_, changes)| changes.clone()),
    });
    let publishers = supervisor::driver::Publishers {
        status_tx,
        probe_gate,
    };
    let resource_poll = ResourcePoll::new(
        &startup.facts,
        polled_files,
        workers_to_follow(config, &startup.app_env),
    );
    let supervised = supervisor::driver::run_supervisor(
        supervisor,
        signal_stream,
        reaper,
        publishers,
        probe_rx,
        oom_monitor,
        resource_poll,
    );
    Ok(runtime.block_on(async {
        let exit_code = supervised.await;
        match rehearsal {
            Some(rehearsal) => rehearsal.finish(exit_code).await,
            None => exit_code,
        }
    }))
}

/// Registers as child subreaper unless pyinit is PID 1; returns the parent's pid then, `None`
/// as PID 1 (which has no parent to watch).
fn become_reaper() -> Result<Option<nix::unistd::Pid>, SetupError> {
    if std::process::id() == 1 {
        return Ok(None);
    }
    reaper::become_subreaper().map_err(SetupError::os("cannot become child subreaper"))?;
    debug!("not PID 1: registered as child subreaper");
    Ok(Some(nix::unistd::getppid()))
}

/// Arms `--parent-death-signal` (when pyinit has a parent); true if the parent died before.
fn set_up_parent_death_signal(
    config: &Config,
    parent_pid: Option<nix::unistd::Pid>,
) -> Result<bool, SetupError> {
    let (Some(signal), Some(parent_pid)) = (config.parent_death_signal, parent_pid) else {
        return Ok(false);
    };
    signals::arm_parent_death_signal(signal)
        .map_err(SetupError::os("cannot set --parent-death-signal"))?;
    Ok(nix::unistd::getppid() != parent_pid)
}

/// The current-thread runtime. It polls for I/O and signals every 8 tasks, not tokio's 61, so
/// that under a flood of health requests a signal waits behind a few answers, not a hundred
/// (bench/ measures the signal latency under such a flood).
fn build_runtime() -> Result<tokio::runtime::Runtime, SetupError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .event_interval(8)
        .build()
        .map_err(SetupError::os("cannot start the runtime"))
}

#[allow(
    clippy::print_stdout,
    reason = "--help and --version answer on stdout, as users expect"
)]
fn print_on_stdout(help_or_version: &str) -> u8 {
    print!("{help_or_version}");
    0
}

#[cfg(test)]
mod tidy;
