//! Server profiles: how each common Python server stops, and what pyinit does about it by
//! default, in one table ([`PROFILES`]), with the development servers it only warns about
//! ([`DEVELOPMENT_SERVERS`]).
//!
//! Each entry cites the server's own source (file and line in the installed wheel at the pinned
//! version, `site-packages/X/file.py:N`, or the upstream repository at its tag) or docs for what
//! it claims. `recognise.rs` finds the entry from the app's command (`--server auto`);
//! `--server NAME` names it, `--server none` turns profiles off. What a profile may change, each
//! only where the user said nothing (an explicit flag, or the app's own variable, always wins):
//! the signal the app is sent to stop (`Config::from_cli`), the variables that make its stop
//! graceful and size its workers (`container::env`), a cold stop before the drain deadline, a
//! pre-stop delay for a server that cannot drain, and the exit code of a server that dies of the
//! stop signal it was sent after draining (`supervisor`). Pure: data and small functions of it.

pub mod recognise;

use std::fmt;
use std::time::Duration;

use crate::signals::spec::{ForwardTarget, Signal, short_name};
use crate::supervisor::policy::HardStop;
use crate::units::format_duration;

/// How a server is started: the programs and `python -m` modules that run it, and for a command
/// with subcommands the one that is the server.
#[derive(Debug, PartialEq, Eq)]
pub struct Launch {
    /// Base names of the console scripts.
    pub programs: &'static [&'static str],
    /// Modules behind `python -m`.
    pub modules: &'static [&'static str],
    /// The subcommand that runs the server (`celery ... worker`); `None`: the program is it.
    pub subcommand: Option<&'static str>,
    /// The options before the subcommand that take a value as the next word, so that the
    /// value is not mistaken for the subcommand (`celery -A proj worker`).
    pub options_with_values: &'static [&'static str],
}

/// How many workers per CPU a server's worker-count variable gets from the CPU limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkersPerCpu {
    /// floor(2 × CPUs + 1), as `WEB_CONCURRENCY`: for servers of synchronous workers.
    TwicePlusOne,
    /// The CPUs rounded up: granian's advice for its workers.
    One,
}

/// A variable through which a server reads its worker count, besides `WEB_CONCURRENCY`.
#[derive(Debug, PartialEq, Eq)]
pub struct WorkerVariable {
    pub name: &'static str,
    /// Other names of the same setting: when the app sets one, pyinit sets none.
    pub aliases: &'static [&'static str],
    pub per_cpu: WorkersPerCpu,
}

/// What pyinit knows of one server's stop, and what it does about it.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerProfile {
    /// The name `--server` takes, and the log and `/metrics` show.
    pub name: &'static str,
    pub launch: Launch,
    /// The signal it stops gracefully on, when not the stop signal (waitress: INT).
    pub app_stop_signal: Option<Signal>,
    /// Variables that make the stop signal graceful, set together unless the user configured
    /// the stop already (`stop_set_by_variables`, `stop_set_by_options`) or set one of them to
    /// a false value (`0`, `false`, `off`, `no`).
    pub graceful_stop_variables: &'static [(&'static str, &'static str)],
    pub stop_set_by_variables: &'static [&'static str],
    /// Options on the command line (`--name` or `--name=value`) that configure the stop.
    pub stop_set_by_options: &'static [&'static str],
    pub worker_variable: Option<WorkerVariable>,
    /// A faster stop that still ends on its own, sent before the drain deadline (celery's
    /// cold shutdown, QUIT): what is still running gets cancelled, not killed.
    pub cold_stop_signal: Option<Signal>,
    /// It catches the stop signal, drains, and then dies of that signal on purpose (uvicorn
    /// since 0.29): that death, after pyinit sent the signal, is a clean stop.
    pub dies_of_stop_signal: bool,
    /// It finishes requests in flight on its stop signal. False for daphne, which cancels them:
    /// pyinit then waits a pre-stop delay before sending the stop signal, in Kubernetes or not.
    pub drains: bool,
    /// Its workers survive a signal to the whole process group (`--forward-to group`).
    pub group_signal_safe: bool,
    /// Its master adds a worker on TTIN and removes one on TTOU (the process must still be seen
    /// to catch them: uvicorn does only with `--workers`).
    pub resizes_on_ttin: bool,
}

/// A profile that changes nothing: the entries below say only what differs.
const PLAIN: ServerProfile = ServerProfile {
    name: "",
    launch: Launch {
        programs: &[],
        modules: &[],
        subcommand: None,
        options_with_values: &[],
    },
    app_stop_signal: None,
    graceful_stop_variables: &[],
    stop_set_by_variables: &[],
    stop_set_by_options: &[],
    worker_variable: None,
    cold_stop_signal: None,
    dies_of_stop_signal: false,
    drains: true,
    group_signal_safe: false,
    resizes_on_ttin: false,
};

/// Every server pyinit recognises, at the versions the tests pin (scripts/e2e-requirements.txt).
pub const PROFILES: &[ServerProfile] = &[
    // gunicorn 27.0.1. TERM is the graceful stop: the master closes its listeners, sends TERM to
    // the workers and waits graceful_timeout (gunicorn/arbiter.py:318 handle_term, :442 stop,
    // :460), then exits 0 (:415); INT and QUIT are the quick shutdown (:322, :327; docs
    // docs/content/signals.md). Workers finish the current request on TERM (workers/base.py:187),
    // so a group TERM is safe. Workers from WEB_CONCURRENCY (config.py:762), which pyinit sets
    // for every app. TTIN/TTOU add and remove one worker (arbiter.py:332, :340).
    ServerProfile {
        name: "gunicorn",
        launch: Launch {
            programs: &["gunicorn"],
            modules: &["gunicorn"],
            ..PLAIN.launch
        },
        group_signal_safe: true,
        resizes_on_ttin: true,
        ..PLAIN
    },
    // uvicorn 0.55.0. In one process it catches INT and TERM (uvicorn/server.py:45), drains
    // without a time limit (:281-307), then re-raises the signal it caught (:346): it dies of
    // TERM, 143, after a clean drain (since 0.29.0, encode/uvicorn#1600). Workers from
    // WEB_CONCURRENCY (config.py:357; docs/settings.md:76). With --workers the supervisor exits
    // 0 and adds or removes a worker on TTIN/TTOU (supervisors/multiprocess.py:267, :274; since
    // 0.30.0); a group TERM is safe in both modes (measured).
    ServerProfile {
        name: "uvicorn",
        launch: Launch {
            programs: &["uvicorn"],
            modules: &["uvicorn"],
            ..PLAIN.launch
        },
        dies_of_stop_signal: true,
        group_signal_safe: true,
        resizes_on_ttin: true,
        ..PLAIN
    },
    // hypercorn 0.18.0. The master stops on INT or TERM (hypercorn/run.py:80) and exits 0; its
    // workers install no signal handler (asyncio/run.py:190), so a group TERM cuts their
    // requests. It reads no variable for its worker count (config.py:114, -w only), and with
    // more than one worker TERM is unsafe: the master terminates the busy workers as soon as an
    // idle one has exited (run.py:96, :104). Nothing to change; signals go to the master alone.
    ServerProfile {
        name: "hypercorn",
        launch: Launch {
            programs: &["hypercorn"],
            modules: &["hypercorn"],
            ..PLAIN.launch
        },
        ..PLAIN
    },
    // granian 2.8.9. Master and workers stop gracefully on INT and TERM (granian/_signals.py:7-45,
    // server/common.py:509), exit 0. Workers from GRANIAN_WORKERS (cli.py:132, cli.py:606
    // auto_envvar_prefix='GRANIAN'); its README advises one worker per CPU core and warns against
    // numbers meant for other servers ("Workers and threads").
    ServerProfile {
        name: "granian",
        launch: Launch {
            programs: &["granian"],
            modules: &["granian"],
            ..PLAIN.launch
        },
        worker_variable: Some(WorkerVariable {
            name: "GRANIAN_WORKERS",
            aliases: &[],
            per_cpu: WorkersPerCpu::One,
        }),
        group_signal_safe: true,
        ..PLAIN
    },
    // uWSGI 2.0.30 (pyuwsgi). TERM to the master is a brutal reload unless the master runs the
    // hook `unix_signal:15 gracefully_kill_them_all` (unbit/uwsgi core/master.c:344-355,
    // core/uwsgi.c:1321, core/hooks.c:410-425; the maintainer's recipe, unbit/uwsgi#849): then
    // the workers finish their requests and the master exits 0. The hook runs only in the master
    // (core/master.c:620), which is off by default: UWSGI_MASTER=1 turns it on, as uWSGI's own
    // start-up warning asks ("you are running uWSGI without its master process manager").
    // Variables are options (core/utils.c:1595 parse_sys_envs; uwsgi-docs Configuration.rst:268)
    // read before the command line and ini files, which win (core/uwsgi.c:2237). A die-on-term
    // is never graceful (core/uwsgi.c:1295). Workers end at once on a group TERM
    // (core/uwsgi.c:3481-3483). Workers from UWSGI_PROCESSES, or its alias UWSGI_WORKERS
    // (core/uwsgi.c:79-80).
    ServerProfile {
        name: "uwsgi",
        launch: Launch {
            programs: &["uwsgi", "pyuwsgi"],
            ..PLAIN.launch
        },
        graceful_stop_variables: &[
            ("UWSGI_MASTER", "1"),
            (
                "UWSGI_HOOK_MASTER_START",
                "unix_signal:15 gracefully_kill_them_all",
            ),
        ],
        stop_set_by_variables: &["UWSGI_HOOK_MASTER_START", "UWSGI_DIE_ON_TERM"],
        stop_set_by_options: &["--hook-master-start", "--die-on-term"],
        worker_variable: Some(WorkerVariable {
            name: "UWSGI_PROCESSES",
            aliases: &["UWSGI_WORKERS"],
            per_cpu: WorkersPerCpu::TwicePlusOne,
        }),
        ..PLAIN
    },
    // waitress 3.0.2 has no signal handler: TERM kills it mid-request. INT raises
    // KeyboardInterrupt, which run() catches (waitress/server.py:171, :330) to shut the task
    // dispatcher down, waiting up to 5 s for running requests (task.py:117), then exits 0.
    ServerProfile {
        name: "waitress",
        launch: Launch {
            programs: &["waitress-serve"],
            modules: &["waitress"],
            ..PLAIN.launch
        },
        app_stop_signal: Some(Signal::SIGINT),
        ..PLAIN
    },
    // daphne 4.2.3 has no graceful stop: Twisted stops the reactor on INT and TERM
    // (twisted/internet/_signals.py:150-151) and daphne cancels every application instance
    // before shutdown (daphne/server.py:149, :316, :325); it exits 0. Only a delay before the
    // stop signal, while readiness is false, lets requests in flight finish.
    ServerProfile {
        name: "daphne",
        launch: Launch {
            programs: &["daphne"],
            modules: &["daphne"],
            ..PLAIN.launch
        },
        drains: false,
        ..PLAIN
    },
    // celery 5.7.0 worker. TERM is the warm shutdown: stop consuming, finish running tasks, exit
    // 0 (celery/apps/worker.py:306-308, :496); QUIT the cold one: cancel running tasks and exit
    // (:502, :416), which took about 1.8 s; "Shutdown should be accomplished using the TERM
    // signal" (docs/userguide/workers.rst:72). Pool children die of a group TERM and lose their
    // task (billiard/pool.py:486, billiard/common.py:124-132). CELERY_WORKER_CONCURRENCY would
    // override the app's own worker_concurrency (bin/celery.py:232 auto_envvar_prefix), so
    // pyinit does not set it. The global options before the subcommand that take a value:
    // celery/bin/celery.py:57-84.
    ServerProfile {
        name: "celery",
        launch: Launch {
            programs: &["celery"],
            modules: &["celery"],
            subcommand: Some("worker"),
            options_with_values: &[
                "-A",
                "--app",
                "-b",
                "--broker",
                "--result-backend",
                "--loader",
                "--config",
                "--workdir",
            ],
        },
        cold_stop_signal: Some(Signal::SIGQUIT),
        ..PLAIN
    },
];

/// A server meant for development only, which pyinit warns about and leaves alone.
#[derive(Debug, PartialEq, Eq)]
pub struct DevelopmentServer {
    /// How it is named in the warning.
    pub name: &'static str,
    pub launch: Launch,
}

/// Development servers, found by their commands.
pub const DEVELOPMENT_SERVERS: &[DevelopmentServer] = &[
    // Django's docs (docs/ref/django-admin.txt, runserver): "DO NOT USE THIS SERVER IN A
    // PRODUCTION SETTING". Its subcommand is always the first argument
    // (django/core/management/__init__.py, ManagementUtility.execute).
    DevelopmentServer {
        name: "Django's runserver",
        launch: Launch {
            programs: &["manage.py", "django-admin"],
            modules: &["django"],
            subcommand: Some("runserver"),
            options_with_values: &[],
        },
    },
    // werkzeug's run_simple, behind `flask run`, logs "WARNING: This is a development server.
    // Do not use it in a production deployment" (pallets/werkzeug src/werkzeug/serving.py,
    // log_startup). Group options with a value: -e/--env-file and -A/--app (pallets/flask
    // src/flask/cli.py, FlaskGroup).
    DevelopmentServer {
        name: "flask run",
        launch: Launch {
            programs: &["flask"],
            modules: &["flask"],
            subcommand: Some("run"),
            options_with_values: &["-e", "--env-file", "-A", "--app"],
        },
    },
];

/// `--server`: recognise the server from the command, use none, or use the one named.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerChoice {
    #[default]
    Auto,
    None,
    Named(&'static ServerProfile),
}

/// Parses `--server auto|none|NAME`; an unknown name is refused with the known ones.
pub fn parse_server(text: &str) -> Result<ServerChoice, String> {
    let name = text.trim();
    match name {
        "auto" => return Ok(ServerChoice::Auto),
        "none" => return Ok(ServerChoice::None),
        _ => {}
    }
    if let Some(profile) = PROFILES.iter().find(|profile| profile.name == name) {
        return Ok(ServerChoice::Named(profile));
    }
    let known: Vec<&str> = PROFILES.iter().map(|profile| profile.name).collect();
    Err(format!(
        "unknown server: expected auto, none or one of {}",
        known.join(", ")
    ))
}

/// How long before the drain deadline the cold stop goes out at most: celery's cold shutdown
/// took about 1.8 s, so this leaves it time to exit by itself.
pub const COLD_STOP_MARGIN: Duration = Duration::from_secs(5);

/// When the cold stop goes out, measured from the SIGTERM: `COLD_STOP_MARGIN` before the drain
/// deadline, or halfway between the stop signal and the deadline when the drain is shorter.
/// Always after the stop signal (`pre_stop_delay`) and before the deadline; `None` if no instant
/// is (a drain shorter than a nanosecond).
pub fn cold_stop_after(pre_stop_delay: Duration, drain_timeout: Duration) -> Option<Duration> {
    let window = drain_timeout.checked_sub(pre_stop_delay)?;
    let after = drain_timeout - COLD_STOP_MARGIN.min(window / 2);
    (after > pre_stop_delay && after < drain_timeout).then_some(after)
}

/// Something a profile changed in what pyinit does, for the start-up line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileChange {
    /// The app is sent this signal to stop, instead of the stop signal.
    AppStopSignal(Signal),
    /// The cold stop, before the drain deadline.
    ColdStop(HardStop),
    /// The stop signal waits this long after SIGTERM, outside Kubernetes too.
    PreStopDelay(Duration),
    /// The app's death by this signal, after pyinit sent it, is a clean stop: exit 0.
    CleanDeathBy(Signal),
    /// A variable set for the app.
    Variable(&'static str, String),
}

impl fmt::Display for ProfileChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileChange::AppStopSignal(signal) => {
                write!(f, "stop signal {}", short_name(*signal))
            }
            ProfileChange::ColdStop(HardStop { signal, after }) => write!(
                f,
                "{} {} after SIGTERM, before the drain deadline",
                short_name(*signal),
                format_duration(*after)
            ),
            ProfileChange::PreStopDelay(delay) => write!(
                f,
                "pre-stop delay {} (it cancels requests on its stop signal)",
                format_duration(*delay)
            ),
            ProfileChange::CleanDeathBy(signal) => write!(
                f,
                "its death by {} after draining exits 0",
                short_name(*signal)
            ),
            ProfileChange::Variable(name, value) => write!(f, "{name}={value}"),
        }
    }
}

/// The profile in use, and what it changed of the flags' defaults. The variables it sets come
/// later, with the container's facts (`container::env`), and are added by [`Self::describe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSetup {
    pub profile: &'static ServerProfile,
    /// Named by `--server NAME`, not recognised from the command.
    pub named: bool,
    /// What the profile changed in pyinit's own behaviour, in the order of the start-up line.
    pub changes: Vec<ProfileChange>,
    /// Whether the variables that make the stop graceful may be set: not when the command
    /// configures the stop itself (`stop_set_by_options`).
    pub stop_variables: bool,
}

impl ServerSetup {
    /// Everything the profile changed: `changes`, then the profile's own variables among
    /// `set_variables` (what the app's environment got).
    pub fn all_changes(&self, set_variables: &[(&'static str, String)]) -> Vec<ProfileChange> {
        let own = |name: &str| {
            self.profile.worker_variable.as_ref().map(|v| v.name) == Some(name)
                || (self.profile.graceful_stop_variables.iter()).any(|(own, _)| *own == name)
        };
        let variables = (set_variables.iter())
            .filter(|(name, _)| own(name))
            .map(|(name, value)| ProfileChange::Variable(name, value.clone()));
        self.changes.iter().cloned().chain(variables).collect()
    }

    /// `uwsgi (from the command): UWSGI_MASTER=1, ...`, for the start-up line.
    pub fn describe(&self, set_variables: &[(&'static str, String)]) -> String {
        let how = if self.named {
            "--server"
        } else {
            "the command"
        };
        let changes = self.all_changes(set_variables);
        let changes = if changes.is_empty() {
            "nothing to change".to_owned()
        } else {
            (changes.iter().map(ToString::to_string))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!("{} (from {how}): {changes}", self.profile.name)
    }
}

/// The start-up warnings about the server, one line each: a development server, and
/// `--forward-to group` for a server whose workers die of a signal to the group.
pub fn server_warnings(
    server: Option<&ServerSetup>,
    development_server: Option<&DevelopmentServer>,
    forward_to: ForwardTarget,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(development_server) = development_server {
        warnings.push(format!(
            "the command runs {}, a development server: serve production traffic with \
             gunicorn, uvicorn, granian or another server of docs/servers.md",
            development_server.name
        ));
    }
    if let Some(setup) = server
        && forward_to == ForwardTarget::Group
        && !setup.profile.group_signal_safe
    {
        warnings.push(format!(
            "--forward-to group: {}'s workers die of a signal sent to the whole process group, \
             cutting requests in flight; leave it at child, the default",
            setup.profile.name
        ));
    }
    warnings
}

/// True for the values by which a variable turns a setting off: `0`, `false`, `off`, `no`.
pub fn is_false_value(value: &str) -> bool {
    ["0", "false", "off", "no"]
        .iter()
        .any(|off| value.trim().eq_ignore_ascii_case(off))
}

#[cfg(test)]
mod tests;
