//! The report's checks, hints, table and JSON, from observations made by hand.

use super::*;
use crate::signals::disposition::SignalMasks;

/// A process of the app that catches the signals of `caught`.
pub(in crate::drill) fn process(pid: i32, is_app: bool, caught: &[Signal]) -> AppProcess {
    AppProcess {
        pid,
        command: format!("python3 server.py ({pid})"),
        is_app,
        in_app_group: true,
        masks: Some(SignalMasks {
            caught: caught
                .iter()
                .map(|signal| 1u64 << (*signal as i32 - 1))
                .sum(),
            ignored: 0,
            blocked: 0,
        }),
    }
}

/// A drain as it should go: the app caught SIGTERM and exited 0.
pub(in crate::drill) fn clean() -> Observations {
    Observations {
        drain_signal: Signal::SIGTERM,
        ready_after: Some(Duration::from_millis(800)),
        ready_timeout: Duration::from_secs(60),
        readiness_dropped_after: Some(Duration::from_millis(3)),
        stop_signal: Some((Signal::SIGTERM, Duration::ZERO)),
        hard_stop_sent: false,
        app_exited_after: Some(Duration::from_millis(2900)),
        app_status: Some(ChildStatus::Exited(0)),
        exit_code: 0,
        killed_at_deadline: false,
        left_behind: false,
        deadline_dump: Some(Signal::SIGBUS),
        stuck_frames: Vec::new(),
        pre_stop_delay: Duration::ZERO,
        drain_timeout: Duration::from_secs(25),
        grace_period: Duration::from_secs(30),
        pre_stop_hook: Duration::ZERO,
        requests: Some(RequestTally {
            in_flight_at_term: 4,
            sent_during_drain: 0,
            succeeded: 4,
            failed: 0,
            first_failures: Vec::new(),
        }),
        processes: vec![process(40, true, &[Signal::SIGINT, Signal::SIGTERM])],
        forward_to: ForwardTarget::Child,
        server_profile: None,
        server_turned_off: None,
    }
}

pub(in crate::drill) fn grade_of(report: &Report, name: &str) -> Grade {
    report
        .checks
        .iter()
        .find(|check| check.name == name)
        .unwrap()
        .grade
}

#[test]
fn a_clean_drain_passes_every_check() {
    let report = Report::grade(clean());
    assert!(report.passed(), "{}", render_table(&report));
    assert!(render_table(&report).starts_with("pyinit drill: PASS"));
}

#[test]
fn an_app_killed_at_the_deadline_fails_with_the_signal_map_hint() {
    let report = Report::grade(killed_at_the_deadline());
    assert!(!report.passed());
    assert_eq!(grade_of(&report, "drains before the deadline"), Grade::Fail);
    let table = render_table(&report);
    assert!(table.contains("--signal-map TERM=INT"), "{table}");
    assert!(table.contains("--hard-stop-signal QUIT"), "{table}");
}

fn killed_at_the_deadline() -> Observations {
    let mut observations = clean();
    observations.killed_at_deadline = true;
    observations.app_status = Some(ChildStatus::Signaled(Signal::SIGBUS as i32));
    observations.exit_code = 137;
    observations
}

#[test]
fn the_report_names_where_a_killed_app_was_stuck() {
    let stuck = |file: &str, line, function: &str| StuckFrame {
        file: file.to_owned(),
        line,
        function: function.to_owned(),
    };
    let mut observations = killed_at_the_deadline();
    let db = stuck("/app/db.py", 12, "wait_for_database_forever");
    observations.stuck_frames = vec![
        stuck("/venv/gunicorn/arbiter.py", 487, "stop"),
        db.clone(),
        db,
    ];
    let report = Report::grade(observations);
    let table = render_table(&report);
    assert!(
        table.contains(
            "  FAIL  drains before the deadline   still running at the 25s deadline: \
             SIGBUS for its traceback, then SIGKILL\n        stuck at /venv/gunicorn/arbiter.py:487 in stop\n        \
             stuck at /app/db.py:12 in wait_for_database_forever (2 threads)\n        hint: \
             the frames above are where it waited"
        ),
        "{table}"
    );
    let json = render_json(&report);
    assert!(
        json.contains(
            r#""stuck_frames":[{"file":"/venv/gunicorn/arbiter.py","line":487,"function":"stop","threads":1},{"file":"/app/db.py","line":12,"function":"wait_for_database_forever","threads":2}]"#
        ),
        "{json}"
    );
}

#[test]
fn without_a_traceback_the_report_says_why() {
    let table = render_table(&Report::grade(killed_at_the_deadline()));
    assert!(
        table.contains("no Python traceback came after SIGBUS: the app is not Python"),
        "{table}"
    );
    let mut observations = killed_at_the_deadline();
    observations.deadline_dump = None;
    let table = render_table(&Report::grade(observations));
    assert!(
        table.contains("--deadline-dump off: no traceback was asked for"),
        "{table}"
    );
    // A clean drain has nothing of the sort.
    let report = Report::grade(clean());
    assert!(
        (report.checks.iter())
            .filter(|check| check.name != stop_handling::NAME)
            .all(|check| check.notes.is_empty())
    );
    assert!(render_json(&report).contains("\"stuck_frames\":[],"));
}

#[test]
fn dropped_requests_fail_the_in_flight_check() {
    let mut observations = clean();
    observations.app_exited_after = Some(Duration::from_millis(20));
    observations.app_status = Some(ChildStatus::Signaled(15));
    observations.exit_code = 143;
    observations.requests = Some(RequestTally {
        in_flight_at_term: 4,
        sent_during_drain: 0,
        succeeded: 0,
        failed: 4,
        first_failures: vec!["connection reset".to_owned()],
    });
    let report = Report::grade(observations);
    assert_eq!(
        grade_of(&report, "in-flight requests complete"),
        Grade::Fail
    );
    let table = render_table(&report);
    assert!(table.contains("died at once"), "{table}");
    assert!(!table.contains("after draining"), "{table}");
}

#[test]
fn dying_by_the_stop_signal_after_a_clean_drain_passes() {
    let mut observations = clean();
    observations.app_status = Some(ChildStatus::Signaled(15));
    observations.exit_code = 143;
    let report = Report::grade(observations);
    assert!(report.passed(), "{}", render_table(&report));
    assert!(render_table(&report).contains("--remap-exit 143=0"));
}

#[test]
fn an_error_exit_fails() {
    let mut observations = clean();
    observations.app_status = Some(ChildStatus::Exited(1));
    observations.exit_code = 1;
    assert_eq!(
        grade_of(&Report::grade(observations), "clean exit code"),
        Grade::Fail
    );
}

#[test]
fn never_ready_fails() {
    let mut observations = clean();
    observations.ready_after = None;
    assert_eq!(grade_of(&Report::grade(observations), "ready"), Grade::Fail);
}

#[test]
fn the_json_report_has_every_observation_in_order() {
    let json = render_json(&Report::grade(clean()));
    let expected = concat!(
        r#"{"passed":true,"exit_code":0,"app_exit_code":0,"ready_ms":800,"#,
        r#""readiness_503_ms":3,"drain_signal":"TERM","stop_signal":"TERM","stop_signal_ms":0,"#,
        r#""hard_stop_sent":false,"app_exit_ms":2900,"killed_at_deadline":false,"#,
        r#""left_behind":false,"stuck_frames":[],"grace_period_ms":30000,"pre_stop_hook_ms":0,"#,
        r#""drain_timeout_ms":25000,"pre_stop_delay_ms":0,"server_profile":null,"#,
        r#""server_turned_off":null,"requests":{"in_flight_at_term":4,"#,
        r#""sent_during_drain":0,"succeeded":4,"failed":0,"first_failures":[]},"#,
        r#""processes":[{"pid":40,"command":"python3 server.py (40)","app":true,"#,
        r#""in_app_group":true,"catches":["INT","TERM"],"ignores":[],"blocks":[],"#,
        r#""on_stop_signal":"caught"}],"#,
        r#""checks":[{"name":"ready","verdict":"PASS","detail":"ready after 800ms","hint":null},"#,
    );
    assert!(json.starts_with(expected), "{json}");
    assert!(
        json.ends_with(r#""detail":"none","hint":null}],"not_checked":[]}"#),
        "{json}"
    );
}

#[test]
fn a_drill_with_a_pre_stop_hook_names_its_signal_and_what_the_hook_left() {
    let mut observations = clean();
    observations.drain_signal = Signal::SIGINT;
    observations.pre_stop_hook = Duration::from_secs(10);
    observations.drain_timeout = Duration::from_secs(16);
    let report = Report::grade(observations);
    assert!(report.passed());
    let table = render_table(&report);
    for line in [
        "  grace period 30s, preStop hook 10s, drain deadline 16s, pre-stop delay 0s\n",
        "  PASS  readiness drops at SIGINT    /readyz 503 after 3ms\n",
        "exited 2900ms after SIGINT (deadline 16s; the kubelet's SIGKILL at 20s: the 30s \
         grace period less the 10s preStop hook)",
        "4 of 4 succeeded (4 in flight at SIGINT, 0 sent during the drain)",
    ] {
        assert!(table.contains(line), "no {line:?} in:\n{table}");
    }
    let json = render_json(&report);
    assert!(json.contains(r#""drain_signal":"INT","#), "{json}");
    assert!(json.contains(r#""pre_stop_hook_ms":10000,"#), "{json}");
}

#[test]
fn json_escapes_and_lists_every_check() {
    let mut observations = clean();
    observations.requests.as_mut().unwrap().first_failures = vec!["a \"quoted\"\nline".to_owned()];
    let json = render_json(&Report::grade(observations));
    assert!(json.starts_with("{\"passed\":true,"), "{json}");
    assert!(json.contains(r#""a \"quoted\"\nline""#), "{json}");
    assert_eq!(json.matches("\"verdict\":").count(), 8);
}
