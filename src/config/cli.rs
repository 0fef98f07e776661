//! The command line as clap sees it: flags, their `PYINIT_*` variables, defaults and help text.
//!
//! Two modes: `pyinit [OPTIONS] [--] COMMAND...` supervises the app, `pyinit drill [OPTIONS]
//! [--] COMMAND...` rehearses its shutdown. `drill` is a subcommand (so `pyinit -- drill` runs a
//! program named drill), and `parse_command_line` makes every flag of [`Cli`] global, so the
//! supervisor's flags may stand before or after `drill`. No logic lives here: each flag's value
//! parser sits beside the type it produces; checks between flags, and defaults that depend on
//! other flags, are in `Config::from_cli`.
//!
//! The help: `--help` lists every flag under the heading of its concern, in the order of
//! docs/flags.md, wrapped to the terminal and never wider than 100 columns; `-h` is one screen,
//! the flags of [`SUMMARY`] with the first paragraph of their help. Both end with two examples.

use std::ffi::OsString;
use std::time::Duration;

use clap::builder::{BoolishValueParser, PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};

use super::parse::{HealthAddr, parse_exit_pair, parse_health_addr};
use super::probe_flags::ProbeTuningArgs;
use crate::container::env::{WebConcurrency, parse_web_concurrency};
use crate::drill::spec::{DrillRequest, parse_concurrency, parse_drill_url};
use crate::log::spec::{LogFormat, LogLevel};
use crate::privileges::rlimit::{RlimitSpec, parse_rlimit};
use crate::privileges::spec::{
    GroupList, IdOrName, Umask, UserSpec, parse_group_list, parse_id_or_name, parse_umask,
    parse_user_spec,
};
use crate::probe::spec::{ProbeTarget, parse_probe};
use crate::server::{ServerChoice, parse_server};
use crate::signals::spec::{
    ForwardTarget, Signal, parse_rewrite_pair, parse_signal, parse_stop_signal,
};
use crate::units::parse_duration;

/// clap's command for [`Cli`], with every flag global: `pyinit drill` takes the supervisor's
/// flags too, before `drill` or after it, and they mean the same in both places.
pub fn command() -> clap::Command {
    Cli::command().mut_args(global_and_summarised)
}

/// A flag made global (the drill's own have no subcommand to reach: global changes nothing for
/// them), and hidden from `-h` unless [`SUMMARY`] names it. One function for both commands, so
/// that clap's `mut_args` is compiled once.
fn global_and_summarised(arg: clap::Arg) -> clap::Arg {
    let in_summary = SUMMARY.contains(&arg.get_id().as_str());
    let arg = arg.hide_short_help(!in_summary);
    if arg.is_positional() {
        arg
    } else {
        arg.global(true)
    }
}

/// The flags `-h` shows, by id: those most services set, and the drill's main ones. `--help`
/// shows every flag; a new one stays out of `-h` unless it is added here.
pub(super) const SUMMARY: [&str; 12] = [
    "grace_period",
    "drain_timeout",
    "server",
    "readiness",
    "liveness",
    "startup",
    "health_addr",
    "user",
    "allow_root",
    "drill_request",
    "drill_ready_after",
    "json",
];

/// The values of a switch: `on` or `off`.
fn on_off() -> impl TypedValueParser<Value = bool> {
    PossibleValuesParser::new(["on", "off"]).map(|value| value == "on")
}

/// The headings of the help, one per concern. Each flag names its own; `--help` and `--version`
/// alone stay under clap's "Options". A heading comes where its first flag is declared.
const SIGNALS: &str = "Signals and the drain";
const SERVER: &str = "Server profile";
pub(super) const PROBES: &str = "Probes";
const HEALTH: &str = "Health server";
const RESOURCES: &str = "Resource limits";
const PRIVILEGES: &str = "Privileges";
const LOGGING: &str = "Logging";
const DRILL: &str = "Drill";

/// A small PID 1 for Python services: drops root, respects cgroup limits, answers the kubelet's
/// probes, forwards signals and drains on SIGTERM within the grace period.
#[derive(Parser, Debug)]
#[command(
    name = "pyinit",
    version,
    override_usage = "pyinit [OPTIONS] -- COMMAND [ARGS]...\n       \
                      pyinit [OPTIONS]    (no command: health sidecar)\n       \
                      pyinit drill [OPTIONS] -- COMMAND [ARGS]...",
    // `-h` and `--help` end alike. Each line of the examples fits in 80 columns, so that the
    // wrapping to a terminal's width leaves them whole.
    after_help = "Examples:
  # gunicorn as PID 1 of its container, ready once /healthz answers:
  pyinit --user app --readiness http://127.0.0.1:8000/healthz \\
      -- gunicorn -b 0.0.0.0:8000 app:app
  # rehearse its shutdown on a laptop, with requests in flight at SIGTERM:
  pyinit drill --allow-root --readiness http://127.0.0.1:8000/healthz \\
      --drill-request http://127.0.0.1:8000/ -- gunicorn app:app

'--help' shows every flag, each with the PYINIT_* variable that also sets it.",
    // `pyinit help` runs a program named help, as it always has.
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The signal that begins the drain: the image's STOPSIGNAL or the pod's
    /// lifecycle.stopSignal. TERM begins it too, whatever this says.
    #[arg(long, env = "PYINIT_STOP_SIGNAL", value_name = "SIGNAL", default_value = "TERM",
          value_parser = parse_stop_signal, help_heading = SIGNALS)]
    pub stop_signal: Signal,

    /// The pod's terminationGracePeriodSeconds.
    ///
    /// After it the kubelet SIGKILLs everything.
    #[arg(long, env = "PYINIT_GRACE_PERIOD", value_name = "DURATION", default_value = "30s",
          value_parser = parse_duration, help_heading = SIGNALS)]
    pub grace_period: Duration,

    /// Time from the stop signal until pyinit stops what is left.
    ///
    /// The dump signal, then SIGKILL after the dump window, both before --grace-period ends
    /// [default: grace period minus min(5s, grace period / 5), of what --pre-stop-hook leaves of
    /// it].
    #[arg(long, env = "PYINIT_DRAIN_TIMEOUT", value_name = "DURATION",
          value_parser = parse_duration, help_heading = SIGNALS)]
    pub drain_timeout: Option<Duration>,

    /// Time from the stop signal until the app gets its own, while readiness is already false
    /// [default: 0s; for an app in Kubernetes without --pre-stop-hook min(5s, grace period /
    /// 4)].
    #[arg(long, env = "PYINIT_PRE_STOP_DELAY", value_name = "DURATION",
          value_parser = parse_duration, help_heading = SIGNALS)]
    pub pre_stop_delay: Option<Duration>,

    /// How long the pod's preStop hook runs before the stop signal.
    ///
    /// The kubelet counts the grace period from the hook's start (a sleep, say), so the drain
    /// gets --grace-period minus this (at least 2s).
    #[arg(long, env = "PYINIT_PRE_STOP_HOOK", value_name = "DURATION", default_value = "0s",
          value_parser = parse_duration, help_heading = SIGNALS)]
    pub pre_stop_hook: Duration,

    /// Rewrite a signal before it is forwarded (repeatable): TERM=INT, HUP=none.
    #[arg(long, env = "PYINIT_SIGNAL_MAP", value_name = "FROM=TO", value_delimiter = ',',
          value_parser = parse_rewrite_pair, help_heading = SIGNALS)]
    pub signal_map: Vec<(Signal, Option<Signal>)>,

    /// Where forwarded signals go: the app's main process, or its whole process group.
    #[arg(long, env = "PYINIT_FORWARD_TO", value_name = "child|group", value_enum,
          default_value_t = ForwardTarget::Child, help_heading = SIGNALS)]
    pub forward_to: ForwardTarget,

    /// A signal sent if the app still runs at --hard-stop-after (QUIT: Celery's cold shutdown).
    #[arg(long, env = "PYINIT_HARD_STOP_SIGNAL", value_name = "SIGNAL", value_parser = parse_signal,
          requires = "hard_stop_after", help_heading = SIGNALS)]
    pub hard_stop_signal: Option<Signal>,

    /// Time from the stop signal until --hard-stop-signal is sent.
    #[arg(long, env = "PYINIT_HARD_STOP_AFTER", value_name = "DURATION",
          value_parser = parse_duration, requires = "hard_stop_signal", help_heading = SIGNALS)]
    pub hard_stop_after: Option<Duration>,

    /// At the drain deadline, send everything left --deadline-dump-signal and wait
    /// --deadline-dump-window before the SIGKILL, so that Python prints where each process is
    /// stuck on the app's stderr (PYTHONFAULTHANDLER, which --python-env sets).
    #[arg(long, env = "PYINIT_DEADLINE_DUMP", value_name = "on|off", default_value = "on",
          action = ArgAction::Set, value_parser = on_off(),
          help_heading = SIGNALS)]
    pub deadline_dump: bool,

    /// The signal that asks for the tracebacks: Python's faulthandler prints one on BUS in
    /// gunicorn (sync and uvicorn workers), uvicorn and plain scripts; gunicorn's workers catch
    /// ABRT themselves and print none.
    #[arg(long, env = "PYINIT_DEADLINE_DUMP_SIGNAL", value_name = "SIGNAL", default_value = "BUS",
          value_parser = parse_signal, help_heading = SIGNALS)]
    pub deadline_dump_signal: Signal,

    /// Time from the dump signal to the SIGKILL; --drain-timeout plus the window must end
    /// before --grace-period [default: min(1s, half of what --drain-timeout leaves of the grace
    /// period)].
    #[arg(long, env = "PYINIT_DEADLINE_DUMP_WINDOW", value_name = "DURATION",
          value_parser = parse_duration, help_heading = SIGNALS)]
    pub deadline_dump_window: Option<Duration>,

    /// Rewrite pyinit's final exit code (repeatable): 143=0.
    #[arg(long, env = "PYINIT_REMAP_EXIT", value_name = "FROM=TO", value_delimiter = ',',
          value_parser = parse_exit_pair, help_heading = SIGNALS)]
    pub remap_exit: Vec<(u8, u8)>,

    /// When pyinit is not PID 1: the signal it gets when its parent dies (TERM drains).
    #[arg(long, env = "PYINIT_PARENT_DEATH_SIGNAL", value_name = "SIGNAL",
          value_parser = parse_signal, help_heading = SIGNALS)]
    pub parent_death_signal: Option<Signal>,

    /// The server's profile, what pyinit does for it: auto recognises it from the command.
    ///
    /// auto knows gunicorn, uvicorn, hypercorn, granian, uwsgi, waitress, daphne and celery
    /// (docs/servers.md); name one when a wrapper hides it; none turns profiles off. A flag
    /// given, or the app's own variable, wins over the profile.
    #[arg(long, env = "PYINIT_SERVER", value_name = "auto|none|NAME", default_value = "auto",
          value_parser = parse_server, help_heading = SERVER)]
    pub server: ServerChoice,

    #[command(flatten)]
    pub health: HealthArgs,

    #[command(flatten)]
    pub resources: ResourceArgs,

    /// Before the app starts, remove the last run's *.db files from prometheus_client's
    /// multiprocess directory (PROMETHEUS_MULTIPROC_DIR) and create it for the app's user.
    #[arg(long, env = "PYINIT_PREPARE_MULTIPROC_DIR", value_name = "on|off", default_value = "on",
          action = ArgAction::Set, value_parser = on_off(),
          help_heading = RESOURCES)]
    pub prepare_multiproc_dir: bool,

    #[command(flatten)]
    pub privileges: PrivilegeArgs,

    /// Log format on stderr.
    #[arg(long, env = "PYINIT_LOG_FORMAT", value_name = "text|json", value_enum,
          default_value_t = LogFormat::Text, help_heading = LOGGING)]
    pub log_format: LogFormat,

    /// Least severe log level shown.
    #[arg(long, env = "PYINIT_LOG_LEVEL", value_name = "LEVEL", value_enum,
          default_value_t = LogLevel::Info, help_heading = LOGGING)]
    pub log_level: LogLevel,

    /// The app to run, with its arguments; none runs pyinit as a health sidecar.
    // Once the command has begun, every later word is the app's, flags included; before it, an
    // unknown flag is a usage error rather than a command that is not found.
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,

    #[command(subcommand)]
    pub mode: Option<ModeCommand>,
}

/// The modes other than supervising, each a subcommand.
#[derive(Subcommand, Debug)]
pub enum ModeCommand {
    /// Rehearse a Kubernetes shutdown of the app and report how it drained.
    ///
    /// The drill runs the app under pyinit, waits until it is ready, keeps requests in flight,
    /// sends SIGTERM as the kubelet does, and reports whether it drained in time. It exits 0 if
    /// every check passed, 1 if the app failed the drill, 2 on usage errors.
    #[command(
        display_name = "pyinit drill",
        version,
        override_usage = "pyinit drill [OPTIONS] -- COMMAND [ARGS]...",
        mut_args = global_and_summarised,
        after_help = "Examples:
  # gunicorn: ready once /healthz answers, requests in flight at SIGTERM:
  pyinit drill --allow-root --readiness http://127.0.0.1:8000/healthz \\
      --drill-request http://127.0.0.1:8000/ -- gunicorn app:app
  # a worker without HTTP, ready 2s after its start, the report as JSON:
  pyinit drill --allow-root --drill-ready-after 2s --json -- python worker.py

'--help' shows every flag, each with the PYINIT_* variable that also sets it."
    )]
    Drill(DrillArgs),
}

/// Resource limits: what the app is told about the container's CPUs and memory.
#[derive(Args, Debug)]
pub struct ResourceArgs {
    /// WEB_CONCURRENCY for the app: auto is floor(2 × CPUs + 1) from the CPU limit.
    ///
    /// gunicorn and uvicorn read WEB_CONCURRENCY; the server's own variable is set too
    /// (GRANIAN_WORKERS, UWSGI_PROCESSES; granian: one per CPU). Without a CPU limit, the host's
    /// CPUs count. An app's own value is kept.
    #[arg(long, env = "PYINIT_WEB_CONCURRENCY", value_name = "N|auto|off", default_value = "auto",
          value_parser = parse_web_concurrency, help_heading = RESOURCES)]
    pub web_concurrency: WebConcurrency,

    /// Set PYTHONUNBUFFERED=1, PYTHONFAULTHANDLER=1 and PYTHON_CPU_COUNT for the app, unless
    /// already set.
    #[arg(long, env = "PYINIT_PYTHON_ENV", value_name = "on|off", default_value = "on",
          action = ArgAction::Set, value_parser = on_off(),
          help_heading = RESOURCES)]
    pub python_env: bool,
}

/// Who the app runs as, and the process limits it inherits: the privilege drop.
#[derive(Args, Debug, Clone)]
pub struct PrivilegeArgs {
    /// Run pyinit and the app as this user (name or uid), optionally with a group.
    ///
    /// Names come from /etc/passwd and /etc/group. Without it pyinit refuses to run the app as
    /// root.
    #[arg(long, env = "PYINIT_USER", value_name = "USER[:GROUP]", value_parser = parse_user_spec,
          help_heading = PRIVILEGES)]
    pub user: Option<UserSpec>,

    /// Primary group (name or gid); overrides the one from --user or /etc/passwd.
    #[arg(long, env = "PYINIT_GROUP", value_name = "GROUP", value_parser = parse_id_or_name,
          help_heading = PRIVILEGES)]
    pub group: Option<IdOrName>,

    /// Supplementary groups, comma-separated; an empty value clears them [default: the user's
    /// groups in /etc/group, plus the primary group].
    #[arg(long, env = "PYINIT_GROUPS", value_name = "G1,G2", value_parser = parse_group_list,
          help_heading = PRIVILEGES)]
    pub groups: Option<GroupList>,

    /// File mode bits masked out for pyinit and the app, in octal: 0027.
    #[arg(long, env = "PYINIT_UMASK", value_name = "OCTAL", value_parser = parse_umask,
          help_heading = PRIVILEGES)]
    pub umask: Option<Umask>,

    /// Allow the app to run as root (uid 0).
    #[arg(long, env = "PYINIT_ALLOW_ROOT", value_parser = BoolishValueParser::new(),
          help_heading = PRIVILEGES)]
    pub allow_root: bool,

    /// Leave PR_SET_NO_NEW_PRIVS unset, so setuid binaries such as sudo can gain privileges.
    #[arg(long, env = "PYINIT_ALLOW_PRIVILEGE_ESCALATION", value_parser = BoolishValueParser::new(),
          help_heading = PRIVILEGES)]
    pub allow_privilege_escalation: bool,

    /// A resource limit for pyinit and the app (repeatable): nofile=1024:4096, core=0,
    /// memlock=unlimited; a lone SOFT sets both.
    // Set with the privilege drop, but listed with the other limits.
    #[arg(long, env = "PYINIT_RLIMIT", value_name = "NAME=SOFT[:HARD]", value_delimiter = ',',
          value_parser = parse_rlimit, help_heading = RESOURCES)]
    pub rlimit: Vec<RlimitSpec>,
}

/// Liveness and readiness: the probes, with Kubernetes' names and defaults, and the health server
/// that answers for them.
#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Readiness probe: http://HOST:PORT/PATH, tcp://HOST:PORT, or grpc://, exec:, file://.
    ///
    /// Every form: http://HOST:PORT/PATH, tcp://HOST:PORT, grpc://HOST:PORT?service=NAME,
    /// exec:COMMAND ARGS... or file:///PATH?max-age=DURATION.
    #[arg(long, env = "PYINIT_READINESS", value_name = "PROBE", value_parser = parse_probe,
          help_heading = PROBES)]
    pub readiness: Option<ProbeTarget>,

    /// Liveness probe, in the same forms as --readiness.
    #[arg(long, env = "PYINIT_LIVENESS", value_name = "PROBE", value_parser = parse_probe,
          help_heading = PROBES)]
    pub liveness: Option<ProbeTarget>,

    /// Startup probe, in the same forms: the other two wait until it succeeds.
    #[arg(long, env = "PYINIT_STARTUP", value_name = "PROBE", value_parser = parse_probe,
          help_heading = PROBES)]
    pub startup: Option<ProbeTarget>,

    /// `--{kind}-period`, `-timeout`, `-success-threshold`, `-failure-threshold` and
    /// `-initial-delay` for each kind, from one table.
    #[command(flatten)]
    pub tuning: ProbeTuningArgs,

    /// Where the health server listens; `off` disables it [default: 0.0.0.0:8558].
    ///
    /// The kubelet probes the pod IP. pyinit drill's default: a free port on 127.0.0.1.
    #[arg(long, env = "PYINIT_HEALTH_ADDR", value_name = "ADDR", value_parser = parse_health_addr,
          help_heading = HEALTH)]
    pub health_addr: Option<HealthAddr>,
}

/// What the drill does beside supervising the app.
#[derive(Args, Debug)]
pub struct DrillArgs {
    /// A URL to keep requests in flight on across the SIGTERM (repeatable): http://HOST:PORT/PATH.
    #[arg(long, env = "PYINIT_DRILL_REQUEST", value_name = "URL", value_delimiter = ',',
          value_parser = parse_drill_url, help_heading = DRILL)]
    pub drill_request: Vec<DrillRequest>,

    /// Requests kept in flight at once, per URL.
    #[arg(long, env = "PYINIT_DRILL_CONCURRENCY", value_name = "N", default_value = "2",
          value_parser = parse_concurrency, help_heading = DRILL)]
    pub drill_concurrency: usize,

    /// Treat the app as ready this long after its start, when it has no --readiness probe.
    #[arg(long, env = "PYINIT_DRILL_READY_AFTER", value_name = "DURATION",
          value_parser = parse_duration, help_heading = DRILL)]
    pub drill_ready_after: Option<Duration>,

    /// Fail the drill if the app is not ready within this.
    #[arg(long, env = "PYINIT_DRILL_READY_TIMEOUT", value_name = "DURATION", default_value = "60s",
          value_parser = parse_duration, help_heading = DRILL)]
    pub drill_ready_timeout: Duration,

    /// Print the report as JSON instead of a table.
    #[arg(long, env = "PYINIT_DRILL_JSON", value_parser = BoolishValueParser::new(),
          help_heading = DRILL)]
    pub json: bool,

    /// The app to rehearse with, with its arguments.
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}
