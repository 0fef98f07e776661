//! The drill's verdict: what was observed during a rehearsed shutdown, judged check by check,
//! rendered as a table a person reads in a second or as JSON.
//!
//! Pure: the runner in `drill/mod.rs` gathers [`Observations`]; this file decides PASS or FAIL
//! and writes the hints. A drain is judged by what users feel, not by the exit code alone: an app
//! that finished its in-flight requests and then died by its stop signal drained cleanly. An app
//! killed at the deadline gets, under its check, where each of its threads was stuck (the
//! innermost frame of each traceback the dump signal asked for, `traceback.rs`), or why no
//! traceback came. What the app does with its stop signal, and what the drill could not check,
//! are `stop_handling.rs`'s.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use super::stop_handling::{self, app_caught_stop_signal};
use super::traceback::{StuckFrame, group_frames};
use crate::exit::ChildStatus;
use crate::json::{self, JsonValue};
use crate::signals::disposition::AppProcess;
use crate::signals::spec::{ForwardTarget, Signal, short_name};
use crate::units::{format_duration, millis};

/// How long readiness may take to turn 503 after the stop signal before the check fails.
pub const READINESS_DROP_LIMIT: Duration = Duration::from_secs(1);

/// The requests the drill kept in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestTally {
    /// Requests that were running when the SIGTERM arrived.
    pub in_flight_at_term: usize,
    /// Requests sent after the SIGTERM, before the app got its stop signal.
    pub sent_during_drain: usize,
    /// Requests that got a 2xx or 3xx answer in full.
    pub succeeded: usize,
    /// Requests that failed or were cut off, with what happened to the first few.
    pub failed: usize,
    pub first_failures: Vec<String>,
}

/// What the drill saw. Times are measured from the stop signal the drill sent pyinit (after the
/// preStop hook, if it played one), except `ready_after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observations {
    /// The signal the drill sent pyinit, as the container runtime would: its stop signal.
    pub drain_signal: Signal,
    pub ready_after: Option<Duration>,
    pub ready_timeout: Duration,
    pub readiness_dropped_after: Option<Duration>,
    /// The stop signal the app got (after `--signal-map`), and when.
    pub stop_signal: Option<(Signal, Duration)>,
    pub hard_stop_sent: bool,
    pub app_exited_after: Option<Duration>,
    pub app_status: Option<ChildStatus>,
    /// pyinit's final exit code, after `--remap-exit`.
    pub exit_code: u8,
    pub killed_at_deadline: bool,
    /// Processes the app left behind that pyinit had to stop.
    pub left_behind: bool,
    /// The dump signal sent at the deadline (`None` with `--deadline-dump off`).
    pub deadline_dump: Option<Signal>,
    /// The innermost frame of every thread in the tracebacks printed after the deadline.
    pub stuck_frames: Vec<StuckFrame>,
    pub pre_stop_delay: Duration,
    pub drain_timeout: Duration,
    pub grace_period: Duration,
    /// The preStop hook the drill played before the stop signal: the kubelet's SIGKILL comes the
    /// grace period less this after the stop signal.
    pub pre_stop_hook: Duration,
    /// `None` when no `--drill-request` was given.
    pub requests: Option<RequestTally>,
    /// The app and its descendants as the drill read them just before pyinit got its stop signal, the app
    /// first; empty when the app was not running then.
    pub processes: Vec<AppProcess>,
    /// Where pyinit sends the app's signals: the app alone, or its whole process group.
    pub forward_to: ForwardTarget,
    /// What the server's profile changed, as pyinit's start-up line says it; `None` without a
    /// profile.
    pub server_profile: Option<String>,
    /// The server whose profile `--server none` turned off.
    pub server_turned_off: Option<&'static str>,
}

/// How one check of the drill came out; the JSON report names it the check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grade {
    Pass,
    Fail,
    /// Not judged: nothing to judge (no requests asked for, or the app never became ready), or
    /// another check judges it (an app killed by its stop signal did not drain at all).
    Skip,
}

impl Grade {
    fn as_str(self) -> &'static str {
        match self {
            Grade::Pass => "PASS",
            Grade::Fail => "FAIL",
            Grade::Skip => "SKIP",
        }
    }
}

/// One check of the drill: one line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrillCheck {
    pub name: Cow<'static, str>,
    pub grade: Grade,
    pub detail: String,
    /// Lines under the check: where a killed app was stuck.
    pub notes: Vec<String>,
    pub hint: Option<String>,
}

/// The whole report: observations plus the checks judged from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub observations: Observations,
    pub checks: Vec<DrillCheck>,
    /// What the drill could not check, one line each.
    pub not_checked: Vec<String>,
}

impl Report {
    /// Grades every check of the drill from what was observed.
    pub fn grade(observations: Observations) -> Report {
        let checks = grade_checks(&observations);
        let not_checked = stop_handling::not_checked(&observations);
        Report {
            observations,
            checks,
            not_checked,
        }
    }

    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.grade != Grade::Fail)
    }
}

fn ms(duration: Duration) -> String {
    if !duration.is_zero() && duration < Duration::from_millis(1) {
        return "<1ms".to_owned();
    }
    format_duration(Duration::from_millis(millis(duration)))
}

pub(super) fn check(
    name: impl Into<Cow<'static, str>>,
    grade: Grade,
    detail: String,
    hint: Option<&str>,
) -> DrillCheck {
    DrillCheck {
        name: name.into(),
        grade,
        detail,
        notes: Vec::new(),
        hint: hint.map(str::to_owned),
    }
}

/// Where an app killed at the deadline was stuck, one line per distinct frame; or why no
/// traceback says so.
fn stuck_notes(observations: &Observations) -> Vec<String> {
    if !observations.stuck_frames.is_empty() {
        return group_frames(&observations.stuck_frames)
            .into_iter()
            .map(|(frame, threads)| match threads {
                1 => format!("stuck at {frame}"),
                threads => format!("stuck at {frame} ({threads} threads)"),
            })
            .collect();
    }
    vec![match observations.deadline_dump {
        Some(signal) => format!(
            "no Python traceback came after SIG{}: the app is not Python, or faulthandler is off \
             in it (PYTHONFAULTHANDLER empty, or unset with --python-env off)",
            short_name(signal)
        ),
        None => "--deadline-dump off: no traceback was asked for".to_owned(),
    }]
}

/// True when the app died by the very signal pyinit sent it to stop (uvicorn 0.29 and later
/// re-raise SIGTERM after a clean shutdown).
fn died_by_its_stop_signal(observations: &Observations) -> bool {
    matches!(
        (observations.app_status, observations.stop_signal),
        (Some(ChildStatus::Signaled(number)), Some((signal, _))) if number == signal as i32
    ) && !observations.killed_at_deadline
}

/// The checks, in the order the report lists them.
fn grade_checks(observations: &Observations) -> Vec<DrillCheck> {
    vec![
        ready_check(observations),
        readiness_drop_check(observations),
        stop_signal_check(observations),
        stop_handling::stop_handling_check(observations),
        drain_check(observations),
        in_flight_check(observations),
        exit_code_check(observations),
        left_behind_check(observations),
    ]
}

fn ready_check(observations: &Observations) -> DrillCheck {
    match observations.ready_after {
        Some(after) => check(
            "ready",
            Grade::Pass,
            format!("ready after {}", ms(after)),
            None,
        ),
        None => check(
            "ready",
            Grade::Fail,
            format!("not ready within {}", ms(observations.ready_timeout)),
            Some(
                "the readiness probe never passed: check --readiness, or raise --drill-ready-timeout",
            ),
        ),
    }
}

/// `SIGTERM`: the signal the drill sent pyinit, as the report's lines name it.
pub(super) fn drain_signal(observations: &Observations) -> String {
    format!("SIG{}", short_name(observations.drain_signal))
}

fn readiness_drop_check(observations: &Observations) -> DrillCheck {
    let name = format!("readiness drops at {}", drain_signal(observations));
    match observations.readiness_dropped_after {
        Some(after) if after <= READINESS_DROP_LIMIT => check(
            name,
            Grade::Pass,
            format!("/readyz 503 after {}", ms(after)),
            None,
        ),
        Some(after) => check(
            name,
            Grade::Fail,
            format!("/readyz 503 only after {}", ms(after)),
            Some("pyinit was too busy to answer: report this as a pyinit bug"),
        ),
        None => check(
            name,
            Grade::Fail,
            "/readyz never answered 503".to_owned(),
            Some("pyinit's health server did not answer: report this as a pyinit bug"),
        ),
    }
}

fn stop_signal_check(observations: &Observations) -> DrillCheck {
    match observations.stop_signal {
        Some((signal, after)) => check(
            "app got its stop signal",
            Grade::Pass,
            format!("SIG{} after {}", short_name(signal), ms(after)),
            None,
        ),
        None if observations.app_exited_after.is_some() && !observations.killed_at_deadline => {
            check(
                "app got its stop signal",
                Grade::Pass,
                "the app exited before its stop signal was due".to_owned(),
                None,
            )
        }
        None => check(
            "app got its stop signal",
            Grade::Fail,
            "no stop signal was sent".to_owned(),
            Some(&format!(
                "--signal-map drops {}: map it to the app's graceful stop signal instead of none",
                drain_signal(observations)
            )),
        ),
    }
}

fn drain_check(observations: &Observations) -> DrillCheck {
    let exited_in_time =
        observations.app_exited_after.is_some() && !observations.killed_at_deadline;
    if exited_in_time {
        let after = observations.app_exited_after.unwrap_or_default();
        if died_by_its_stop_signal(observations)
            && app_caught_stop_signal(observations) == Some(false)
        {
            let detail = format!(
                "no drain: its stop signal killed it {} after {} (see \"{}\")",
                ms(after),
                drain_signal(observations),
                stop_handling::NAME
            );
            return check("drains before the deadline", Grade::Skip, detail, None);
        }
        return check(
            "drains before the deadline",
            Grade::Pass,
            format!(
                "exited {} after {} (deadline {}{})",
                ms(after),
                drain_signal(observations),
                ms(observations.drain_timeout),
                kubelet_kill(observations)
                    .map(|kill| format!("; {kill}"))
                    .unwrap_or_default()
            ),
            None,
        );
    }
    let stopped = match observations.deadline_dump {
        Some(signal) => format!("SIG{} for its traceback, then SIGKILL", short_name(signal)),
        None => "SIGKILLed".to_owned(),
    };
    let mut failed = check(
        "drains before the deadline",
        Grade::Fail,
        format!(
            "still running at the {} deadline: {stopped}{}",
            ms(observations.drain_timeout),
            kubelet_kill(observations)
                .map(|kill| format!(" ({kill})"))
                .unwrap_or_default()
        ),
        Some(&overdue_hint(observations)),
    );
    if observations.killed_at_deadline {
        failed.notes = stuck_notes(observations);
    }
    failed
}

/// With a preStop hook, when the kubelet's SIGKILL comes after the stop signal: the budget the
/// drain was judged against.
fn kubelet_kill(observations: &Observations) -> Option<String> {
    let hook = observations.pre_stop_hook;
    (!hook.is_zero()).then(|| {
        format!(
            "the kubelet's SIGKILL at {}: the {} grace period less the {} preStop hook",
            ms(observations.grace_period.saturating_sub(hook)),
            ms(observations.grace_period),
            ms(hook)
        )
    })
}

/// What to do about an app that did not drain before the deadline.
fn overdue_hint(observations: &Observations) -> String {
    let ignored_sigterm = "waitress has no SIGTERM handler and drains on SIGINT: \
         --signal-map TERM=INT. uWSGI 2.0 takes SIGTERM for a reload; it drains on SIGTERM with \
         the master hook UWSGI_HOOK_MASTER_START='unix_signal:15 gracefully_kill_them_all'. \
         Celery's warm shutdown waits for running tasks: add --hard-stop-signal QUIT \
         --hard-stop-after DURATION for its cold shutdown";
    if observations.hard_stop_sent {
        "the app ignored both its stop signal and --hard-stop-signal: find what blocks its \
         shutdown, or raise --drain-timeout and --grace-period together"
            .to_owned()
    } else if observations.killed_at_deadline && !observations.stuck_frames.is_empty() {
        format!(
            "the frames above are where it waited when the deadline came (its whole \
             traceback is in its output): give that call a timeout shorter than \
             --drain-timeout, or raise --drain-timeout and --grace-period together. An app \
             that ignores SIGTERM waits in its main loop: {ignored_sigterm}"
        )
    } else {
        let ignored = observations.stop_signal.map_or_else(
            || "its stop signal".to_owned(),
            |(signal, _)| format!("SIG{}", short_name(signal)),
        );
        format!("the app ignored {ignored}. {ignored_sigterm}")
    }
}

fn in_flight_check(observations: &Observations) -> DrillCheck {
    let name = "in-flight requests complete";
    let tally = match &observations.requests {
        None => {
            return check(
                name,
                Grade::Skip,
                "no --drill-request given".to_owned(),
                None,
            );
        }
        Some(tally) if tally.in_flight_at_term + tally.sent_during_drain == 0 => {
            let detail = format!("no request was in flight at {}", drain_signal(observations));
            return check(name, Grade::Skip, detail, None);
        }
        Some(tally) => tally,
    };
    let total = tally.succeeded + tally.failed;
    if tally.failed == 0 {
        let detail = format!(
            "{} of {total} succeeded ({} in flight at {}, {} sent during the drain)",
            tally.succeeded,
            tally.in_flight_at_term,
            drain_signal(observations),
            tally.sent_during_drain
        );
        return check(name, Grade::Pass, detail, None);
    }
    let mut detail = format!("{} of {total} failed or were cut off", tally.failed);
    if let Some(first) = tally.first_failures.first() {
        let _ = write!(detail, " (first: {first})");
    }
    let hint = if observations
        .app_exited_after
        .is_some_and(|after| after < Duration::from_millis(500))
    {
        "the app died at once on its stop signal and dropped the requests it was serving: \
         finish in-flight requests before exiting (gunicorn and uvicorn do on SIGTERM)"
    } else if observations.killed_at_deadline {
        "requests were still running at the deadline: make them shorter, or raise \
         --drain-timeout and --grace-period together"
    } else {
        "requests sent during the pre-stop delay failed: the app stopped serving before its \
         stop signal, or --pre-stop-delay is shorter than the load balancer needs"
    };
    check(name, Grade::Fail, detail, Some(hint))
}

fn left_behind_check(observations: &Observations) -> DrillCheck {
    if observations.left_behind {
        check(
            "no processes left behind",
            Grade::Fail,
            "the app exited but left processes running; pyinit stopped them".to_owned(),
            Some(
                "the app's workers outlived it: make the app wait for its children, or use \
                 --forward-to group so that each gets the stop signal",
            ),
        )
    } else {
        check(
            "no processes left behind",
            Grade::Pass,
            "none".to_owned(),
            None,
        )
    }
}

fn exit_code_check(observations: &Observations) -> DrillCheck {
    let code = observations.exit_code;
    if observations.killed_at_deadline {
        return check(
            "clean exit code",
            Grade::Fail,
            format!("{code} (SIGKILLed at the deadline)"),
            None,
        );
    }
    if code == 0 {
        return check("clean exit code", Grade::Pass, "0".to_owned(), None);
    }
    if died_by_its_stop_signal(observations) {
        return died_by_stop_signal_check(observations);
    }
    check(
        "clean exit code",
        Grade::Fail,
        format!("{code}"),
        Some("the app exited with an error during its shutdown: read its log above"),
    )
}

/// An exit by the stop signal is clean only when the app caught the signal first: it ended by
/// it on its own terms, as uvicorn 0.29 and later re-raise SIGTERM after their shutdown.
fn died_by_stop_signal_check(observations: &Observations) -> DrillCheck {
    let code = observations.exit_code;
    let name = (observations.stop_signal).map_or("", |(signal, _)| short_name(signal));
    let requests = observations.requests.as_ref();
    let detail = match app_caught_stop_signal(observations) {
        Some(true) if requests.is_some_and(|tally| tally.failed > 0) => {
            format!("{code}: the app died by its stop signal (see the in-flight check)")
        }
        Some(true) => {
            let drained = if requests.is_some() {
                " after draining"
            } else {
                ""
            };
            let detail = format!(
                "{code}: the app caught SIG{name} and ended by it{drained}, as uvicorn 0.29 and \
                 later do; --remap-exit {code}=0 makes it 0"
            );
            return check("clean exit code", Grade::Pass, detail, None);
        }
        Some(false) => format!(
            "{code}: the app died of SIG{name}, which it does not catch (see \"{}\")",
            stop_handling::NAME
        ),
        None => format!(
            "{code}: the app died of SIG{name}, and the drill could not read whether it catches \
             it"
        ),
    };
    check("clean exit code", Grade::Fail, detail, None)
}

/// The table for people.
pub fn render_table(report: &Report) -> String {
    let mut text = String::new();
    let width = report
        .checks
        .iter()
        .map(|check| check.name.len())
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        text,
        "pyinit drill: {}",
        if report.passed() { "PASS" } else { "FAIL" }
    );
    let seen = &report.observations;
    let hook = if seen.pre_stop_hook.is_zero() {
        String::new()
    } else {
        format!(", preStop hook {}", ms(seen.pre_stop_hook))
    };
    let _ = writeln!(
        text,
        "  grace period {}{hook}, drain deadline {}, pre-stop delay {}",
        ms(seen.grace_period),
        ms(seen.drain_timeout),
        ms(seen.pre_stop_delay)
    );
    let _ = writeln!(text, "  {}", stop_handling::server_line(seen));
    for check in &report.checks {
        let _ = writeln!(
            text,
            "  {}  {:width$}  {}",
            check.grade.as_str(),
            check.name,
            check.detail
        );
        for note in &check.notes {
            let _ = writeln!(text, "        {note}");
        }
        if let Some(hint) = &check.hint
            && check.grade == Grade::Fail
        {
            let _ = writeln!(text, "        hint: {hint}");
        }
    }
    stop_handling::render_not_checked(&report.not_checked, &mut text);
    text
}

/// The JSON report for machines: every observation and every check.
pub fn render_json(report: &Report) -> String {
    let seen = &report.observations;
    let millis = |duration: Option<Duration>| {
        JsonValue::number_or_null(duration.map(|duration| duration.as_millis()))
    };
    let app_exit_code = seen.app_status.map(|status| u128::from(status.exit_code()));
    let stop_signal = seen.stop_signal.map(|(signal, _)| short_name(signal));
    let stop_signal_after = seen.stop_signal.map(|(_, after)| after);
    let stuck_frames = stuck_frames_json(&seen.stuck_frames);
    let requests = seen.requests.as_ref().map(tally_json);
    let checks: Vec<JsonValue> = (report.checks.iter())
        .map(|check| JsonValue::Written(check_json(check)))
        .collect();
    let not_checked: Vec<JsonValue> = (report.not_checked.iter())
        .map(|line| JsonValue::String(line))
        .collect();
    json::object(&[
        ("passed", JsonValue::Bool(report.passed())),
        ("exit_code", JsonValue::Number(seen.exit_code.into())),
        ("app_exit_code", JsonValue::number_or_null(app_exit_code)),
        ("ready_ms", millis(seen.ready_after)),
        ("readiness_503_ms", millis(seen.readiness_dropped_after)),
        (
            "drain_signal",
            JsonValue::String(short_name(seen.drain_signal)),
        ),
        ("stop_signal", JsonValue::string_or_null(stop_signal)),
        ("stop_signal_ms", millis(stop_signal_after)),
        ("hard_stop_sent", JsonValue::Bool(seen.hard_stop_sent)),
        ("app_exit_ms", millis(seen.app_exited_after)),
        (
            "killed_at_deadline",
            JsonValue::Bool(seen.killed_at_deadline),
        ),
        ("left_behind", JsonValue::Bool(seen.left_behind)),
        ("stuck_frames", JsonValue::Written(stuck_frames)),
        ("grace_period_ms", millis(Some(seen.grace_period))),
        ("pre_stop_hook_ms", millis(Some(seen.pre_stop_hook))),
        ("drain_timeout_ms", millis(Some(seen.drain_timeout))),
        ("pre_stop_delay_ms", millis(Some(seen.pre_stop_delay))),
        (
            "server_profile",
            JsonValue::string_or_null(seen.server_profile.as_deref()),
        ),
        (
            "server_turned_off",
            JsonValue::string_or_null(seen.server_turned_off),
        ),
        (
            "requests",
            requests.map_or(JsonValue::Null, JsonValue::Written),
        ),
        (
            "processes",
            JsonValue::Written(stop_handling::processes_json(seen)),
        ),
        ("checks", JsonValue::Written(json::array(&checks))),
        ("not_checked", JsonValue::Written(json::array(&not_checked))),
    ])
}

/// Each distinct frame an app killed at the deadline was stuck in, with how many threads.
fn stuck_frames_json(stuck_frames: &[StuckFrame]) -> String {
    let frames: Vec<JsonValue> = group_frames(stuck_frames)
        .into_iter()
        .map(|(frame, threads)| {
            JsonValue::Written(json::object(&[
                ("file", JsonValue::String(&frame.file)),
                ("line", JsonValue::Number(frame.line.into())),
                ("function", JsonValue::String(&frame.function)),
                ("threads", count(threads)),
            ]))
        })
        .collect();
    json::array(&frames)
}

fn count(n: usize) -> JsonValue<'static> {
    JsonValue::number_or_null(u128::try_from(n).ok())
}

fn tally_json(tally: &RequestTally) -> String {
    let failures: Vec<JsonValue> = (tally.first_failures.iter())
        .map(|failure| JsonValue::String(failure))
        .collect();
    json::object(&[
        ("in_flight_at_term", count(tally.in_flight_at_term)),
        ("sent_during_drain", count(tally.sent_during_drain)),
        ("succeeded", count(tally.succeeded)),
        ("failed", count(tally.failed)),
        ("first_failures", JsonValue::Written(json::array(&failures))),
    ])
}

fn check_json(check: &DrillCheck) -> String {
    json::object(&[
        ("name", JsonValue::String(&check.name)),
        ("verdict", JsonValue::String(check.grade.as_str())),
        ("detail", JsonValue::String(&check.detail)),
        ("hint", JsonValue::string_or_null(check.hint.as_deref())),
    ])
}

#[cfg(test)]
pub(super) mod tests;
