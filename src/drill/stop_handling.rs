//! What the app does with its stop signal: the check "app handles its stop signal", what the
//! drill could not check, and the app's processes in the JSON report. Pure, like `report.rs`,
//! whose types it fills.
//!
//! Just before it sends pyinit its stop signal, the drill reads the signal masks of the app and of each of its
//! descendants (`signals::app_processes`). Once the stop signal has gone out (after
//! `--signal-map`), it judges what the masks and the app's end show, and only that:
//!
//! - The app's exit status is the only one pyinit sees (the app's workers are reaped by the
//!   app). An app that has no handler for its stop signal and died of it was ended by the
//!   kernel: whatever it was doing was cut off. That fails, naming the process and the fix. An
//!   app that died of the signal after catching it stopped on its own terms (uvicorn re-raises
//!   SIGTERM after its shutdown, on purpose): the clean-exit-code check counts that as clean,
//!   and only that.
//! - A process gets pyinit's stop signal only if pyinit sends it one: the app always, the rest of
//!   the app's process group with `--forward-to group`. A descendant so reached that has no
//!   handler dies of it (the kernel's default action): that fails too, though the drill cannot
//!   see its end. A descendant that pyinit does not signal gets what the app sends it: the
//!   report lists what it does with the signal and judges nothing.
//! - A handler is not a drain: gunicorn's sync workers catch SIGINT and still cut their request
//!   (`sys.exit` inside it). Whether requests finish is the in-flight check's, and without
//!   `--drill-request` the report says it could not tell.

use std::fmt::Write as _;

use super::report::{DrillCheck, Grade, Observations, check, drain_signal};
use crate::exit::ChildStatus;
use crate::json::{self, JsonValue};
use crate::signals::disposition::{AppProcess, DefaultAction, Disposition, SignalMasks};
use crate::signals::spec::{ForwardTarget, Signal, short_name};

pub const NAME: &str = "app handles its stop signal";

/// The most processes the table lists under the check; the JSON report has them all.
const LISTED_PROCESSES: usize = 8;

/// The signals an app may stop on gracefully, in the order the hint names them.
const OTHER_STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGHUP];

fn app_of(observations: &Observations) -> Option<&AppProcess> {
    observations.processes.iter().find(|process| process.is_app)
}

/// Whether pyinit's stop signal reaches `process` itself: the app always, the rest of its group
/// with `--forward-to group`.
fn is_signalled_by_pyinit(process: &AppProcess, forward_to: ForwardTarget) -> bool {
    process.is_app || (forward_to == ForwardTarget::Group && process.in_app_group)
}

fn dies_of(masks: &SignalMasks, signal: Signal) -> bool {
    masks.disposition(signal) == Disposition::Default(DefaultAction::Die)
}

/// Whether the app had a handler for the stop signal it got, when the drill looked; `None` when
/// no stop signal went out or the drill could not read the app's masks.
pub fn app_caught_stop_signal(observations: &Observations) -> Option<bool> {
    let (signal, _) = observations.stop_signal?;
    let masks = app_of(observations)?.masks?;
    Some(masks.disposition(signal) == Disposition::Caught)
}

/// The check: did the app, or a process pyinit signalled with it, die of a stop signal it does
/// not catch?
pub fn stop_handling_check(observations: &Observations) -> DrillCheck {
    let Some((signal, _)) = observations.stop_signal else {
        return check(
            NAME,
            Grade::Skip,
            "no stop signal was sent".to_owned(),
            None,
        );
    };
    let Some((app, masks)) = app_of(observations).and_then(|app| Some((app, app.masks?))) else {
        let detail = "the drill could not read which signals the app catches".to_owned();
        return check(NAME, Grade::Skip, detail, None);
    };
    let name = short_name(signal);
    let died_of_it = observations.app_status == Some(ChildStatus::Signaled(signal as i32));
    let group_deaths: Vec<&AppProcess> = (observations.processes.iter())
        .filter(|process| !process.is_app)
        .filter(|process| is_signalled_by_pyinit(process, observations.forward_to))
        .filter(|process| process.masks.is_some_and(|masks| dies_of(&masks, signal)))
        .collect();
    let mut failures = Vec::new();
    let mut hints = Vec::new();
    let app_detail = match masks.disposition(signal) {
        Disposition::Caught if died_of_it => format!(
            "SIG{name} caught by the app, which then ended by it: its own shutdown re-raised it"
        ),
        Disposition::Caught => format!("SIG{name} caught by the app"),
        Disposition::Default(DefaultAction::Die) if died_of_it => {
            failures.push(format!(
                "the app (pid {}) has no handler for SIG{name} and died of it: whatever it was \
                 doing was cut off",
                app.pid
            ));
            hints.push(stop_fix(&masks, signal, observations.server_turned_off));
            String::new()
        }
        disposition if observations.killed_at_deadline => {
            failures.push(format!("the app {}", no_effect(disposition, masks, signal)));
            hints.push(stop_fix(&masks, signal, observations.server_turned_off));
            String::new()
        }
        _ => format!(
            "the app had no handler for SIG{name} when the drill looked, but did not die of it"
        ),
    };
    if !group_deaths.is_empty() {
        failures.push(format!(
            "{} more process(es) of the app's group get SIG{name} from pyinit (--forward-to \
             group) and have no handler for it: the kernel ends each at once",
            group_deaths.len()
        ));
        hints.push(
            "leave --forward-to at child (the default), so that the app stops its own workers"
                .to_owned(),
        );
    }
    let mut result = if failures.is_empty() {
        check(NAME, Grade::Pass, app_detail, None)
    } else {
        check(
            NAME,
            Grade::Fail,
            failures.join("; "),
            Some(&hints.join("; ")),
        )
    };
    result.notes = process_notes(observations, signal);
    result
}

/// Why a stop signal that did not kill the app did not stop it either.
fn no_effect(disposition: Disposition, masks: SignalMasks, signal: Signal) -> String {
    let name = short_name(signal);
    match disposition {
        Disposition::Ignored => format!("ignores SIG{name}: it did nothing"),
        Disposition::Default(DefaultAction::Stop) => {
            format!("has no handler for SIG{name}, which stops a process until SIGCONT")
        }
        Disposition::Default(DefaultAction::Nothing) => {
            format!("has no handler for SIG{name}, which does nothing to a process without one")
        }
        Disposition::Default(DefaultAction::Die) if masks.blocks(signal) => format!(
            "blocks SIG{name} in its main thread and has no handler for it: it stayed pending"
        ),
        Disposition::Caught | Disposition::Default(DefaultAction::Die) => {
            format!("did not stop on SIG{name}")
        }
    }
}

/// The fix for an app that does not handle `signal`: the profile `--server none` turned off, if
/// the command runs a server pyinit knows; then the signal it may drain on, if it catches one,
/// and otherwise a handler of its own.
fn stop_fix(masks: &SignalMasks, signal: Signal, server_turned_off: Option<&str>) -> String {
    let by_hand = stop_fix_by_hand(masks, signal);
    match server_turned_off {
        Some(name) => format!(
            "--server {name} (or leave --server at auto, the default): pyinit's {name} profile \
             knows how {name} stops, and --server none turned it off. Without the profile, \
             {by_hand}"
        ),
        None => by_hand,
    }
}

/// The fix without a profile: the signal the app may drain on, if it catches one, and otherwise
/// a handler of its own.
fn stop_fix_by_hand(masks: &SignalMasks, signal: Signal) -> String {
    let own_handler = format!(
        "give the app a SIG{} handler that stops taking work, finishes what is running and exits",
        short_name(signal)
    );
    let other = OTHER_STOP_SIGNALS
        .into_iter()
        .find(|other| *other != signal && masks.disposition(*other) == Disposition::Caught);
    match other {
        Some(Signal::SIGINT) => format!(
            "if the app stops gracefully on SIGINT, which it catches, map the stop signal to it: \
             --signal-map {}=INT (waitress drains on SIGINT; a plain Python program only raises \
             KeyboardInterrupt on it); otherwise {own_handler}",
            short_name(signal)
        ),
        Some(other) => format!(
            "if the app stops gracefully on SIG{0}, which it catches, map the stop signal to it: \
             --signal-map {1}={0}; otherwise {own_handler}",
            short_name(other),
            short_name(signal)
        ),
        None => own_handler,
    }
}

/// The report's line on the server's profile: what it changed, as pyinit's start-up line says
/// it, or why there is none.
pub fn server_line(observations: &Observations) -> String {
    match (&observations.server_profile, observations.server_turned_off) {
        (Some(changes), _) => format!("server profile: {changes}"),
        (None, Some(name)) => {
            format!("server profile: none (--server none; the command runs {name})")
        }
        (None, None) => "server profile: none (no server recognised in the command)".to_owned(),
    }
}

/// One line per process of the app (at most [`LISTED_PROCESSES`]): what it does with `signal`.
fn process_notes(observations: &Observations, signal: Signal) -> Vec<String> {
    let name = short_name(signal);
    let mut notes: Vec<String> = (observations.processes.iter())
        .take(LISTED_PROCESSES)
        .map(|process| {
            let role = if process.is_app { " (the app)" } else { "" };
            let what = match process.masks {
                None => "exited before the drill could read it".to_owned(),
                Some(masks) => disposition_words(&masks, signal),
            };
            let reached =
                if !process.is_app && is_signalled_by_pyinit(process, observations.forward_to) {
                    ", gets it from pyinit"
                } else {
                    ""
                };
            format!(
                "pid {}{role} {what}{reached}: {}",
                process.pid, process.command
            )
        })
        .collect();
    let more = observations
        .processes
        .len()
        .saturating_sub(LISTED_PROCESSES);
    if more > 0 {
        notes.push(format!(
            "and {more} more (the JSON report lists every process and its SIG{name})"
        ));
    }
    notes
}

/// `catches TERM`, `dies of TERM (no handler)`, ..., with `(blocked)` when the main thread
/// blocks it.
fn disposition_words(masks: &SignalMasks, signal: Signal) -> String {
    let name = short_name(signal);
    let mut words = match masks.disposition(signal) {
        Disposition::Caught => format!("catches SIG{name}"),
        Disposition::Ignored => format!("ignores SIG{name}"),
        Disposition::Default(DefaultAction::Die) => format!("dies of SIG{name} (no handler)"),
        Disposition::Default(DefaultAction::Stop) => format!("is stopped by SIG{name}"),
        Disposition::Default(DefaultAction::Nothing) => format!("does nothing on SIG{name}"),
    };
    if masks.blocks(signal) {
        words.push_str(" (blocked in its main thread)");
    }
    words
}

/// What the drill could not check, in plain words: one line each.
pub fn not_checked(observations: &Observations) -> Vec<String> {
    let mut lines = Vec::new();
    let sent = drain_signal(observations);
    if observations.requests.is_none() {
        lines.push(format!(
            "whether in-flight requests complete: no --drill-request was given, so none was in \
             flight at {sent}, and a handler for the stop signal is no proof of a drain \
             (gunicorn's sync workers catch SIGINT and still cut their requests)"
        ));
    }
    match app_of(observations) {
        None => lines.push(format!(
            "what the app does with its stop signal: it was not running when the drill looked, \
             just before {sent}"
        )),
        Some(app) if app.masks.is_none() => lines.push(format!(
            "what the app does with its stop signal: /proc/{}/status could not be read",
            app.pid
        )),
        Some(_) => {}
    }
    let others = observations.processes.len().saturating_sub(1);
    if others > 0 {
        let mut line = format!(
            "how the app's {others} other process(es) ended: the app reaps them, so their exit \
             statuses never reach pyinit"
        );
        if observations.forward_to == ForwardTarget::Child {
            line.push_str(
                "; pyinit signals the app alone (--forward-to child), so each got what the app \
                 sent it",
            );
        }
        lines.push(line);
    }
    lines
}

/// The app's processes for the JSON report: each with the signals it catches, ignores and
/// blocks, and what it does with the stop signal (`null` when unknown or none was sent).
pub fn processes_json(observations: &Observations) -> String {
    let signal = observations.stop_signal.map(|(signal, _)| signal);
    let processes: Vec<JsonValue> = (observations.processes.iter())
        .map(|process| {
            let names = |mask: fn(&SignalMasks) -> u64| -> JsonValue {
                process.masks.map_or(JsonValue::Null, |masks| {
                    let names = SignalMasks::names(mask(&masks));
                    let values: Vec<JsonValue> = names.into_iter().map(JsonValue::String).collect();
                    JsonValue::Written(json::array(&values))
                })
            };
            let on_stop =
                process
                    .masks
                    .zip(signal)
                    .map(|(masks, signal)| match masks.disposition(signal) {
                        Disposition::Caught => "caught",
                        Disposition::Ignored => "ignored",
                        Disposition::Default(DefaultAction::Die) => "dies",
                        Disposition::Default(DefaultAction::Stop) => "stops",
                        Disposition::Default(DefaultAction::Nothing) => "nothing",
                    });
            JsonValue::Written(json::object(&[
                (
                    "pid",
                    JsonValue::number_or_null(u128::try_from(process.pid).ok()),
                ),
                ("command", JsonValue::String(&process.command)),
                ("app", JsonValue::Bool(process.is_app)),
                ("in_app_group", JsonValue::Bool(process.in_app_group)),
                ("catches", names(|masks| masks.caught)),
                ("ignores", names(|masks| masks.ignored)),
                ("blocks", names(|masks| masks.blocked)),
                ("on_stop_signal", JsonValue::string_or_null(on_stop)),
            ]))
        })
        .collect();
    json::array(&processes)
}

/// The table's lines for what was not checked.
pub fn render_not_checked(lines: &[String], text: &mut String) {
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(text, "  not checked:");
    for line in lines {
        let _ = writeln!(text, "        {line}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::drill::report::tests::{clean, grade_of, process};
    use crate::drill::report::{Report, render_json, render_table};

    /// waitress 3.0.2 under SIGTERM: Python's SIGINT handler only, dead of SIGTERM 3 ms later.
    fn waitress() -> Observations {
        let mut observations = clean();
        observations.processes = vec![process(40, true, &[Signal::SIGINT])];
        observations.processes[0].command = "python3 /venv/bin/waitress-serve app:app".to_owned();
        observations.app_status = Some(ChildStatus::Signaled(15));
        observations.app_exited_after = Some(Duration::from_millis(3));
        observations.exit_code = 143;
        observations.requests = None;
        observations
    }

    #[test]
    fn an_app_that_dies_of_a_stop_signal_it_does_not_catch_fails_with_the_fix() {
        let report = Report::grade(waitress());
        assert!(!report.passed());
        assert_eq!(grade_of(&report, NAME), Grade::Fail);
        assert_eq!(grade_of(&report, "clean exit code"), Grade::Fail);
        let table = render_table(&report);
        for expected in [
            "FAIL  app handles its stop signal  the app (pid 40) has no handler for SIGTERM and \
             died of it",
            "pid 40 (the app) dies of SIGTERM (no handler): python3 /venv/bin/waitress-serve",
            "--signal-map TERM=INT",
            "143: the app died of SIGTERM, which it does not catch",
        ] {
            assert!(table.contains(expected), "{expected:?} in\n{table}");
        }
        assert!(!table.contains("after draining"), "{table}");
        assert!(
            table.contains(
                "SKIP  drains before the deadline   no drain: its stop signal killed it 3ms"
            ),
            "{table}"
        );
    }

    #[test]
    fn the_fix_names_the_profile_server_none_turned_off() {
        let mut observations = waitress();
        observations.server_turned_off = Some("waitress");
        let report = Report::grade(observations);
        let table = render_table(&report);
        for expected in [
            "  server profile: none (--server none; the command runs waitress)\n",
            "hint: --server waitress (or leave --server at auto, the default): pyinit's waitress \
             profile knows how waitress stops, and --server none turned it off. Without the \
             profile, if the app stops gracefully on SIGINT",
        ] {
            assert!(table.contains(expected), "{expected:?} in\n{table}");
        }
        assert!(
            render_json(&report)
                .contains(r#""server_profile":null,"server_turned_off":"waitress","#)
        );
        // With the profile on, the report shows what it changed, as the start-up line does.
        let mut observations = clean();
        observations.server_profile =
            Some("waitress (from the command): app stop signal INT".to_owned());
        let table = render_table(&Report::grade(observations));
        assert!(
            table.contains("  server profile: waitress (from the command): app stop signal INT\n"),
            "{table}"
        );
        let table = render_table(&Report::grade(clean()));
        assert!(
            table.contains("  server profile: none (no server recognised in the command)\n"),
            "{table}"
        );
    }

    #[test]
    fn without_any_handler_the_fix_is_a_handler_of_the_apps_own() {
        let mut observations = waitress();
        observations.processes = vec![process(40, true, &[])];
        let report = Report::grade(observations);
        let check = report.checks.iter().find(|check| check.name == NAME);
        let hint = check.and_then(|check| check.hint.clone()).unwrap();
        assert!(hint.starts_with("give the app a SIGTERM handler"), "{hint}");
        assert!(!hint.contains("--signal-map"), "{hint}");
        // A stop signal of its own names its own fix.
        let mut observations = waitress();
        observations.stop_signal = Some((Signal::SIGUSR1, Duration::ZERO));
        observations.app_status = Some(ChildStatus::Signaled(Signal::SIGUSR1 as i32));
        observations.processes = vec![process(40, true, &[Signal::SIGQUIT])];
        let table = render_table(&Report::grade(observations));
        assert!(table.contains("--signal-map USR1=QUIT"), "{table}");
    }

    #[test]
    fn an_app_that_catches_its_stop_signal_and_re_raises_it_passes() {
        // uvicorn 0.29 and later: SIGTERM caught, the drain, then SIGTERM re-raised (143).
        let mut observations = clean();
        observations.app_status = Some(ChildStatus::Signaled(15));
        observations.exit_code = 143;
        let report = Report::grade(observations.clone());
        assert!(report.passed(), "{}", render_table(&report));
        let table = render_table(&report);
        assert!(
            table.contains("caught by the app, which then ended by it"),
            "{table}"
        );
        assert!(table.contains("143: the app caught SIGTERM and ended by it after draining"));
        // Without requests, the drill does not claim a drain it did not see.
        observations.requests = None;
        let table = render_table(&Report::grade(observations));
        assert!(table.contains("ended by it, as uvicorn"), "{table}");
        assert!(table.contains(
            "not checked:\n        whether in-flight requests complete: no --drill-request"
        ));
    }

    #[test]
    fn unread_masks_are_said_and_never_make_an_exit_by_the_signal_clean() {
        let mut observations = waitress();
        observations.processes[0].masks = None;
        let report = Report::grade(observations.clone());
        assert_eq!(grade_of(&report, NAME), Grade::Skip);
        assert_eq!(grade_of(&report, "clean exit code"), Grade::Fail);
        assert!(
            report
                .not_checked
                .iter()
                .any(|line| line.contains("/proc/40/status"))
        );
        observations.processes.clear();
        let report = Report::grade(observations);
        assert_eq!(grade_of(&report, NAME), Grade::Skip);
        assert!(
            report
                .not_checked
                .iter()
                .any(|line| line.contains("not running"))
        );
    }

    #[test]
    fn workers_are_judged_only_when_pyinit_signals_them() {
        // hypercorn's workers have no SIGTERM handler; its master catches SIGTERM.
        let mut observations = clean();
        let mut worker = process(41, false, &[]);
        worker.command = "python3 -c from multiprocessing.spawn import spawn_main".to_owned();
        let mut tracker = process(42, false, &[]);
        tracker.masks = tracker.masks.map(|masks| SignalMasks {
            ignored: (1 << 1) | (1 << 14),
            ..masks
        });
        observations.processes.extend([worker, tracker]);
        let report = Report::grade(observations.clone());
        assert_eq!(grade_of(&report, NAME), Grade::Pass);
        let table = render_table(&report);
        assert!(
            table.contains("pid 41 dies of SIGTERM (no handler): python3 -c"),
            "{table}"
        );
        assert!(table.contains("pid 42 ignores SIGTERM: "), "{table}");
        assert!(
            report
                .not_checked
                .iter()
                .any(|line| line.contains("2 other process(es)")
                    && line.contains("--forward-to child")),
            "{:?}",
            report.not_checked
        );
        // With --forward-to group the worker gets SIGTERM from pyinit and dies of it; the
        // tracker ignores it.
        observations.forward_to = ForwardTarget::Group;
        let report = Report::grade(observations);
        assert_eq!(grade_of(&report, NAME), Grade::Fail);
        let table = render_table(&report);
        assert!(
            table.contains("1 more process(es) of the app's group"),
            "{table}"
        );
        assert!(table.contains("dies of SIGTERM (no handler), gets it from pyinit"));
        assert!(table.contains("leave --forward-to at child"), "{table}");
    }

    #[test]
    fn an_app_that_ignores_its_stop_signal_fails_when_killed_at_the_deadline() {
        let mut observations = clean();
        observations.processes[0].masks = Some(SignalMasks {
            ignored: 1 << 14,
            ..SignalMasks::default()
        });
        observations.killed_at_deadline = true;
        observations.app_status = Some(ChildStatus::Signaled(9));
        observations.exit_code = 137;
        let report = Report::grade(observations.clone());
        assert_eq!(grade_of(&report, NAME), Grade::Fail);
        assert!(render_table(&report).contains("the app ignores SIGTERM: it did nothing"));
        // One that exits by itself anyway is not judged for it.
        observations.killed_at_deadline = false;
        observations.app_status = Some(ChildStatus::Exited(0));
        observations.exit_code = 0;
        assert_eq!(grade_of(&Report::grade(observations), NAME), Grade::Pass);
    }

    #[test]
    fn without_a_stop_signal_there_is_nothing_to_judge() {
        let mut observations = clean();
        observations.stop_signal = None;
        assert_eq!(grade_of(&Report::grade(observations), NAME), Grade::Skip);
    }

    #[test]
    fn the_table_lists_a_few_processes_and_the_json_all() {
        let mut observations = clean();
        observations
            .processes
            .extend((41..53).map(|pid| process(pid, false, &[Signal::SIGTERM])));
        let report = Report::grade(observations);
        let table = render_table(&report);
        assert!(
            table.contains("and 5 more (the JSON report lists every process"),
            "{table}"
        );
        let json = render_json(&report);
        assert_eq!(json.matches("\"on_stop_signal\":\"caught\"").count(), 13);
        let mut observations = waitress();
        observations.processes.push(AppProcess {
            pid: 41,
            command: "gone".to_owned(),
            is_app: false,
            in_app_group: false,
            masks: None,
        });
        let json = render_json(&Report::grade(observations));
        assert!(json.contains(
            r#"{"pid":41,"command":"gone","app":false,"in_app_group":false,"catches":null,"ignores":null,"blocks":null,"on_stop_signal":null}"#
        ), "{json}");
        assert!(json.contains(r#""on_stop_signal":"dies""#), "{json}");
        assert!(
            json.contains(r#""not_checked":["whether in-flight requests complete"#),
            "{json}"
        );
    }
}
