//! The spawn phase, in its two halves: starting the app, then the tasks beside the supervisor
//! (the health server, one prober per probe and, for `pyinit drill`, the drill); and what the
//! app starts with, the start-up report (its environment, and the warnings that apply).
//!
//! `main` starts both once the signal handlers are registered, inside the runtime. Starting the
//! app is the last step that can fail (exec errors give 126 or 127); starting the tasks cannot,
//! since from then on only the supervisor decides when pyinit exits. The decisions themselves
//! are pure and live with their modules: `container::env` (which variables, and none for a
//! health sidecar) and `container::checks` (which warnings apply).

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::{Config, Mode};
use crate::container::StartupReport;
use crate::container::cgroup::CpuQuota;
use crate::container::checks::{AppFacts, startup_warnings};
use crate::container::env::{AppEnvironment, app_environment};
use crate::container::facts::ContainerFacts;
use crate::container::resize;
use crate::drill::{self, Rehearsal};
use crate::multiproc::MultiprocReport;
use crate::probe::SharedGate;
use crate::probe::threshold::{ProbeReport, Probes};
use crate::reaper::Reaper;
use crate::server::server_warnings;
use crate::spawn::{self, SpawnError, SpawnSpec, SpawnedChild};
use crate::status::Status;
use crate::supervisor::Supervisor;
use crate::supervisor::event::Workload;
use crate::{health, probe, units};

/// The facts, the app's environment and the start-up warnings that apply, with what was done
/// to prometheus_client's multiprocess directory and what the server's profile changed.
pub fn startup_report(
    config: &Config,
    facts: ContainerFacts,
    app_uid: u32,
    multiproc_dir: Option<MultiprocReport>,
) -> StartupReport {
    let current_env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let has_app = !config.command.is_empty();
    let app_env = app_environment(&facts, config.app_env, &current_env, has_app);
    let app = has_app.then_some(AppFacts {
        uid: app_uid,
        grace_period: config.grace_period,
        pre_stop_hook: config.pre_stop_hook,
        drain_timeout: config.policy.drain_timeout,
    });
    let mut warnings = startup_warnings(&facts, std::process::id(), app);
    warnings.extend(server_warnings(
        config.server.as_ref(),
        config.development_server,
        config.policy.forward_to,
    ));
    let server =
        (config.server.as_ref()).map(|setup| (setup.profile.name, setup.describe(&app_env.set)));
    StartupReport {
        facts,
        app_env,
        warnings,
        multiproc_dir,
        server,
    }
}

/// What starting the app hands on to the tasks and the supervisor.
#[derive(Debug)]
pub struct StartedApp {
    /// The app's pid, or a health sidecar.
    pub workload: Workload,
    /// For a drill, the read end of the app's stderr, which the drill passes on to pyinit's.
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
    /// Where the app started (pyinit's own directory until then); its exec probes start there.
    pub working_dir: Option<Arc<Path>>,
}

/// Spawns the app with `app_env` on top of pyinit's environment and logs the start-up report;
/// without a command pyinit is a health sidecar, and there is no app. The app's stdio is
/// pyinit's, but for a drill its stderr is a pipe, which the drill passes on to pyinit's while
/// it reads it. Then pyinit leaves its working directory, which the app keeps, for `/`.
pub fn start_app(
    config: &Config,
    app_env: &[(OsString, OsString)],
    startup: &StartupReport,
) -> Result<StartedApp, SpawnError> {
    let working_dir: Option<Arc<Path>> = std::env::current_dir().ok().map(Arc::from);
    let app = if config.command.is_empty() {
        startup.log();
        info!("no command: running as a health sidecar");
        None
    } else {
        Some(spawn_app(config, app_env, startup)?)
    };
    leave_working_directory();
    Ok(StartedApp {
        workload: app
            .as_ref()
            .map_or(Workload::Sidecar, |app| Workload::App { pid: app.pid }),
        stderr: app.and_then(|app| app.output),
        working_dir,
    })
}

fn spawn_app(
    config: &Config,
    app_env: &[(OsString, OsString)],
    startup: &StartupReport,
) -> Result<SpawnedChild, SpawnError> {
    let stdio = match config.mode {
        Mode::Drill(_) => spawn::ChildStdio::StderrPipe,
        Mode::Supervise => spawn::ChildStdio::Inherit,
    };
    let spec = SpawnSpec {
        argv: config.command.clone(),
        env: app_env.to_vec(),
        working_dir: None,
        stdio,
        take_terminal: true,
    };
    let app = spawn::spawn_child(&spec)?;
    let pid = app.pid;
    // Logged only now, so that a set-up failure before the spawn stays a single line.
    startup.log();
    let argv: Vec<_> = config
        .command
        .iter()
        .map(|arg| arg.to_string_lossy())
        .collect();
    let grace_period_ms = units::millis(config.grace_period);
    info!(pid, argv = ?argv, grace_period_ms, "app started");
    Ok(app)
}

/// The supervisor for the app or a health sidecar, with the configured probes and
/// the container's limits, which `/metrics` shows.
pub fn new_supervisor(config: &Config, workload: Workload, facts: &ContainerFacts) -> Supervisor {
    Supervisor::new(config.policy.clone(), workload)
        .with_probes(Probes::new(&config.health.probes))
        .with_resource_limits(
            facts.cpu_limit.limited().map(CpuQuota::millicpus),
            facts.memory_limit_bytes.limited(),
        )
        .with_server(config.server.as_ref().map(|setup| setup.profile.name))
}

/// The worker count pyinit keeps following as the CPU limit moves: the `WEB_CONCURRENCY` it
/// chose itself, for a server whose profile adds and removes a worker on SIGTTIN and SIGTTOU
/// (`container::resize::workers_to_follow`); `None` otherwise (a number or `off` for
/// `--web-concurrency`, the app's own value, `--server none`, any other server, a health
/// sidecar).
pub fn workers_to_follow(config: &Config, app_env: &AppEnvironment) -> Option<u32> {
    let profile = config.server.as_ref().map(|setup| setup.profile);
    resize::workers_to_follow(app_env.chosen_workers, profile, &config.command)
}

/// Moves pyinit to `/` once the app runs, so that pyinit keeps no directory busy: a volume
/// mounted where the container started could not be unmounted while PID 1 sat in it. The app
/// keeps its own working directory. Not fatal: pyinit then only stays where it was.
fn leave_working_directory() {
    if let Err(error) = std::env::set_current_dir("/") {
        warn!(%error, "cannot change pyinit's working directory to /");
    }
}

/// What the tasks need from set-up.
#[derive(Debug)]
pub struct Tasks<'a> {
    pub config: &'a Config,
    pub health_listener: Option<TcpListener>,
    pub status_rx: &'a watch::Receiver<Status>,
    pub probe_gate: Arc<SharedGate>,
    pub probe_tx: mpsc::Sender<ProbeReport>,
    pub reaper: &'a Arc<Reaper>,
    /// The app's environment, which its exec probes see too.
    pub app_env: Arc<[(OsString, OsString)]>,
    /// Where the app started, and its exec probes start.
    pub app_working_dir: Option<Arc<Path>>,
    /// The read end of the app's stderr, for a drill.
    pub app_stderr: Option<tokio::net::unix::pipe::Receiver>,
    /// What the server's profile changed, as the start-up line says it: a drill shows it.
    pub server_profile: Option<String>,
}

/// Starts the health server, the probers and, for `pyinit drill`, the drill; returns the drill,
/// which gives pyinit's exit code once the supervisor is done.
pub fn start_tasks(tasks: Tasks<'_>) -> Option<Rehearsal> {
    let Tasks {
        config,
        health_listener,
        status_rx,
        probe_gate,
        probe_tx,
        reaper,
        app_env,
        app_working_dir,
        app_stderr,
        server_profile,
    } = tasks;
    let health_addr = (health_listener.as_ref()).and_then(|listener| listener.local_addr().ok());
    if let Some(listener) = health_listener {
        if let Some(addr) = health_addr {
            info!(addr = %addr, "health server listening");
        }
        tokio::spawn(health::serve_health(listener, status_rx.clone()));
    }
    let exec_context = probe::ExecContext {
        reaper: Arc::clone(reaper),
        env: app_env,
        working_dir: app_working_dir,
    };
    probe::spawn_probers(
        config.health.probes.clone(),
        &probe_gate,
        &probe_tx,
        &exec_context,
    );
    // The drill plays the kubelet beside the supervisor; the supervisor does not know it is there.
    match &config.mode {
        Mode::Drill(drill) => Some(drill::attach(
            drill.clone(),
            status_rx,
            health_addr,
            app_stderr,
            server_profile,
        )),
        Mode::Supervise => None,
    }
}
