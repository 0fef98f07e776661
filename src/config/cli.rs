//! The command line as clap sees it: flags, their `PYINIT_*` variables, defaults and help text.
//!
//! Two modes: `pyinit [OPTIONS] [--] COMMAND...` supervises the app, `pyinit drill [OPTIONS]
//! [--] COMMAND...` rehearses its shutdown. `drill` is a subcommand (so `pyinit -- drill` runs a
//! program named drill), and `parse_command_line` makes every flag of [`Cli`] global, so the
//! supervisor's flags may stand before or after `drill`. No logic lives here: each flag's value
//! parser sits beside the type it produces; checks between flags, and defaults that depend on
//! other flags, are in `Config::from_cli`.

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
    Cli::command().mut_args(|arg| {
        if arg.is_positional() {
            arg
        } else {
            arg.global(true)
        }
    })
}

/// A small PID 1 for Python services: drops root, respects cgroup limits, answers the kubelet's
/// probes, forwards signals and drains on SIGTERM within the grace period.
#[derive(Parser, Debug)]
#[command(
    name = "pyinit",
    version,
    override_usage = "pyinit [OPTIONS] -- COMMAND [ARGS]...\n       pyinit [OPTIONS]    (no command: health sidecar)\n       pyinit drill [OPTIONS] -- COMMAND [ARGS]...",
    after_help = "Every flag can also be set by its PYINIT_* variable, shown beside it.",
    // `pyinit help` runs a program named help, as it always has.
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Where forwarded signals go: the app's main process, or its whole process group.
    #[arg(long, env = "PYINIT_FORWARD_TO", value_enum, default_value_t = ForwardTarget::Child)]
    pub forward_to: ForwardTarget,

    /// Rewrite a signal before it is forwarded (repeatable): TERM=INT, HUP=none.
    #[arg(long, env = "PYINIT_SIGNAL_MAP", value_name = "FROM=TO", value_delimiter = ',',
          value_parser = parse_rewrite_pair)]
    pub signal_map: Vec<(Signal, Option<Signal>)>,

    /// The signal that begins the drain: the image's STOPSIGNAL or the pod's
    /// lifecycle.stopSignal. TERM begins it too, whatever this says.
    #[arg(long, env = "PYINIT_STOP_SIGNAL", value_name = "SIGNAL", default_value = "TERM",
          value_parser = parse_stop_signal)]
    pub stop_signal: Signal,

    /// When pyinit is not PID 1: the signal it gets when its parent dies (TERM drains).
    #[arg(long, env = "PYINIT_PARENT_DEATH_SIGNAL", value_name = "SIGNAL", value_parser = parse_signal)]
    pub parent_death_signal: Option<Signal>,

    /// The pod's terminationGracePeriodSeconds: after it the kubelet SIGKILLs everything.
    #[arg(long, env = "PYINIT_GRACE_PERIOD", value_name = "DURATION", default_value = "30s",
          value_parser = parse_duration)]
    pub grace_period: Duration,

    /// How long the pod's preStop hook (a sleep, say) runs before the stop signal: the kubelet
    /// counts the grace period from the hook's start, so the drain gets --grace-period minus
    /// this (at least 2s).
    #[arg(long, env = "PYINIT_PRE_STOP_HOOK", value_name = "DURATION", default_value = "0s",
          value_parser = parse_duration)]
    pub pre_stop_hook: Duration,

    /// Time from the stop signal until pyinit stops what is left: the dump signal, then SIGKILL
    /// after the dump window, both before --grace-period ends [default: grace period minus
    /// min(5s, grace period / 5), of what --pre-stop-hook leaves of it].
    #[arg(long, env = "PYINIT_DRAIN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,

    /// Time from the stop signal until the app gets its own, while readiness is already false
    /// [default: 0s; for an app in Kubernetes without --pre-stop-hook min(5s, grace period /
    /// 4)].
    #[arg(long, env = "PYINIT_PRE_STOP_DELAY", value_name = "DURATION", value_parser = parse_duration)]
    pub pre_stop_delay: Option<Duration>,

    /// A signal sent if the app still runs at --hard-stop-after (QUIT: Celery's cold shutdown).
    #[arg(long, env = "PYINIT_HARD_STOP_SIGNAL", value_name = "SIGNAL", value_parser = parse_signal,
          requires = "hard_stop_after")]
    pub hard_stop_signal: Option<Signal>,

    /// Time from the stop signal until --hard-stop-signal is sent.
    #[arg(long, env = "PYINIT_HARD_STOP_AFTER", value_name = "DURATION", value_parser = parse_duration,
          requires = "hard_stop_signal")]
    pub hard_stop_after: Option<Duration>,

    /// At the drain deadline, send everything left --deadline-dump-signal and wait
    /// --deadline-dump-window before the SIGKILL, so that Python prints where each process is
    /// stuck on the app's stderr (PYTHONFAULTHANDLER, which --python-env sets).
    #[arg(long, env = "PYINIT_DEADLINE_DUMP", default_value = "on", action = ArgAction::Set,
          value_parser = PossibleValuesParser::new(["on", "off"]).map(|value| value == "on"))]
    pub deadline_dump: bool,

    /// The signal that asks for the tracebacks: Python's faulthandler prints one on BUS in
    /// gunicorn (sync and uvicorn workers), uvicorn and plain scripts; gunicorn's workers catch
    /// ABRT themselves and print none.
    #[arg(long, env = "PYINIT_DEADLINE_DUMP_SIGNAL", value_name = "SIGNAL", default_value = "BUS",
          value_parser = parse_signal)]
    pub deadline_dump_signal: Signal,

    /// Time from the dump signal to the SIGKILL; --drain-timeout plus the window must end
    /// before --grace-period [default: min(1s, half of what --drain-timeout leaves of the grace
    /// period)].
    #[arg(long, env = "PYINIT_DEADLINE_DUMP_WINDOW", value_name = "DURATION",
          value_parser = parse_duration)]
    pub deadline_dump_window: Option<Duration>,

    /// The server's profile (docs/servers.md): auto recognises it from the command (gunicorn,
    /// uvicorn, hypercorn, granian, uwsgi, waitress, daphne, celery), none turns profiles off,
    /// or a name. A flag given, or the app's own variable, wins over the profile.
    #[arg(long, env = "PYINIT_SERVER", value_name = "auto|none|NAME", default_value = "auto",
          value_parser = parse_server)]
    pub server: ServerChoice,

    /// Rewrite pyinit's final exit code (repeatable): 143=0.
    #[arg(long, env = "PYINIT_REMAP_EXIT", value_name = "FROM=TO", value_delimiter = ',',
          value_parser = parse_exit_pair)]
    pub remap_exit: Vec<(u8, u8)>,

    /// Log format on stderr.
    #[arg(long, env = "PYINIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Least severe log level shown.
    #[arg(long, env = "PYINIT_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Before the app starts, remove the last run's *.db files from prometheus_client's
    /// multiprocess directory (PROMETHEUS_MULTIPROC_DIR) and create it for the app's user.
    #[arg(long, env = "PYINIT_PREPARE_MULTIPROC_DIR", default_value = "on", action = ArgAction::Set,
          value_parser = PossibleValuesParser::new(["on", "off"]).map(|value| value == "on"))]
    pub prepare_multiproc_dir: bool,

    #[command(flatten)]
    pub resources: ResourceArgs,

    #[command(flatten)]
    pub privileges: PrivilegeArgs,

    #[command(flatten)]
    pub health: HealthArgs,

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
    /// Rehearse a Kubernetes shutdown against the app, and report how it drained.
    ///
    /// The drill runs the app under pyinit, waits until it is ready, keeps requests in flight,
    /// sends SIGTERM as the kubelet does, and reports whether it drained in time. It exits 0 if
    /// every check passed, 1 if the app failed the drill, 2 on usage errors.
    #[command(
        display_name = "pyinit drill",
        version,
        override_usage = "pyinit drill [OPTIONS] -- COMMAND [ARGS]..."
    )]
    Drill(DrillArgs),
}

/// Resource limits: what the app is told about the container's CPUs and memory.
#[derive(Args, Debug)]
pub struct ResourceArgs {
    /// WEB_CONCURRENCY for the app (gunicorn and uvicorn read it), and the server's own
    /// variable (GRANIAN_WORKERS, UWSGI_PROCESSES): auto is floor(2 × CPUs + 1) from the CPU
    /// limit, or from the host's CPUs without one (granian: one per CPU). An app's own value is
    /// kept.
    #[arg(long, env = "PYINIT_WEB_CONCURRENCY", value_name = "N|auto|off", default_value = "auto",
          value_parser = parse_web_concurrency)]
    pub web_concurrency: WebConcurrency,

    /// Set PYTHONUNBUFFERED=1, PYTHONFAULTHANDLER=1 and PYTHON_CPU_COUNT for the app, unless
    /// already set.
    #[arg(long, env = "PYINIT_PYTHON_ENV", default_value = "on", action = ArgAction::Set,
          value_parser = PossibleValuesParser::new(["on", "off"]).map(|value| value == "on"))]
    pub python_env: bool,
}

/// Who the app runs as, and the process limits it inherits: the privilege drop.
#[derive(Args, Debug, Clone)]
pub struct PrivilegeArgs {
    /// Run pyinit and the app as this user (name or uid), optionally with a group; names come
    /// from /etc/passwd and /etc/group. Without it pyinit refuses to run the app as root.
    #[arg(long, env = "PYINIT_USER", value_name = "USER[:GROUP]", value_parser = parse_user_spec)]
    pub user: Option<UserSpec>,

    /// Primary group (name or gid); overrides the one from --user or /etc/passwd.
    #[arg(long, env = "PYINIT_GROUP", value_name = "GROUP", value_parser = parse_id_or_name)]
    pub group: Option<IdOrName>,

    /// Supplementary groups, comma-separated; an empty value clears them [default: the user's
    /// groups in /etc/group, plus the primary group].
    #[arg(long, env = "PYINIT_GROUPS", value_name = "G1,G2", value_parser = parse_group_list)]
    pub groups: Option<GroupList>,

    /// File mode bits masked out for pyinit and the app, in octal: 0027.
    #[arg(long, env = "PYINIT_UMASK", value_name = "OCTAL", value_parser = parse_umask)]
    pub umask: Option<Umask>,

    /// Allow the app to run as root (uid 0).
    #[arg(long, env = "PYINIT_ALLOW_ROOT", value_parser = BoolishValueParser::new())]
    pub allow_root: bool,

    /// Leave PR_SET_NO_NEW_PRIVS unset, so setuid binaries such as sudo can gain privileges.
    #[arg(long, env = "PYINIT_ALLOW_PRIVILEGE_ESCALATION", value_parser = BoolishValueParser::new())]
    pub allow_privilege_escalation: bool,

    /// A resource limit for pyinit and the app (repeatable): nofile=1024:4096, core=0,
    /// memlock=unlimited; a lone SOFT sets both.
    #[arg(long, env = "PYINIT_RLIMIT", value_name = "NAME=SOFT[:HARD]", value_delimiter = ',',
          value_parser = parse_rlimit)]
    pub rlimit: Vec<RlimitSpec>,
}

/// Liveness and readiness: the health server and the probes behind it, with Kubernetes' names
/// and defaults.
#[derive(Args, Debug)]
#[command(next_help_heading = "Liveness and readiness")]
pub struct HealthArgs {
    /// Where the health server listens (the kubelet probes the pod IP); `off` disables it
    /// [default: 0.0.0.0:8558; for pyinit drill a free port on 127.0.0.1].
    #[arg(long, env = "PYINIT_HEALTH_ADDR", value_name = "ADDR", value_parser = parse_health_addr)]
    pub health_addr: Option<HealthAddr>,

    /// Readiness probe: http://HOST:PORT/PATH, tcp://HOST:PORT, grpc://HOST:PORT?service=NAME,
    /// exec:COMMAND ARGS... or file:///PATH?max-age=DURATION.
    #[arg(long, env = "PYINIT_READINESS", value_name = "PROBE", value_parser = parse_probe)]
    pub readiness: Option<ProbeTarget>,

    /// Liveness probe, in the same forms as --readiness.
    #[arg(long, env = "PYINIT_LIVENESS", value_name = "PROBE", value_parser = parse_probe)]
    pub liveness: Option<ProbeTarget>,

    /// Startup probe, in the same forms as --readiness: until it succeeds, liveness and readiness
    /// probes do not run.
    #[arg(long, env = "PYINIT_STARTUP", value_name = "PROBE", value_parser = parse_probe)]
    pub startup: Option<ProbeTarget>,

    /// `--{kind}-period`, `-timeout`, `-success-threshold`, `-failure-threshold` and
    /// `-initial-delay` for each kind, from one table.
    #[command(flatten)]
    pub tuning: ProbeTuningArgs,
}

/// What the drill does beside supervising the app.
#[derive(Args, Debug)]
#[command(next_help_heading = "Drill")]
pub struct DrillArgs {
    /// Treat the app as ready this long after its start, when it has no --readiness probe.
    #[arg(long, env = "PYINIT_DRILL_READY_AFTER", value_name = "DURATION", value_parser = parse_duration)]
    pub drill_ready_after: Option<Duration>,

    /// Fail the drill if the app is not ready within this.
    #[arg(long, env = "PYINIT_DRILL_READY_TIMEOUT", value_name = "DURATION", default_value = "60s",
          value_parser = parse_duration)]
    pub drill_ready_timeout: Duration,

    /// A URL to keep requests in flight on across the SIGTERM (repeatable): http://HOST:PORT/PATH.
    #[arg(long, env = "PYINIT_DRILL_REQUEST", value_name = "URL", value_delimiter = ',',
          value_parser = parse_drill_url)]
    pub drill_request: Vec<DrillRequest>,

    /// Requests kept in flight at once, per URL.
    #[arg(long, env = "PYINIT_DRILL_CONCURRENCY", value_name = "N", default_value = "2",
          value_parser = parse_concurrency)]
    pub drill_concurrency: usize,

    /// Print the report as JSON instead of a table.
    #[arg(long, env = "PYINIT_DRILL_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,

    /// The app to rehearse with, with its arguments.
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}
