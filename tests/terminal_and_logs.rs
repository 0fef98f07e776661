//! The terminal hand-off, JSON logs, and the parent-death signal.

use std::process::{Command, Stdio};

use crate::common::{
    PATIENCE, PYTHON, Pyinit, fixture, poll_until, process_state, pyinit_bin, python_fixture,
};

#[test]
fn app_gets_the_terminal_foreground_and_ctrl_c() {
    let output = Command::new(PYTHON)
        .arg(fixture("in_pty.py"))
        .arg(pyinit_bin())
        .arg("--")
        .arg(PYTHON)
        .arg(fixture("print_terminal.py"))
        .env("PYINIT_ALLOW_ROOT", "true")
        // Beside the other tests, a fixed port would be taken.
        .env("PYINIT_HEALTH_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    let ready = shown
        .lines()
        .find(|line| line.contains("ready fg="))
        .unwrap_or_else(|| panic!("{shown}"));
    let field = |name: &str| {
        ready
            .split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .and_then(|value| value.parse::<i32>().ok())
            .unwrap_or_else(|| panic!("no {name} in {ready:?}"))
    };
    assert_eq!(
        field("fg="),
        field("pgid="),
        "the app's group must own the terminal: {ready}"
    );
    assert_eq!(
        field("pgid="),
        field("pid="),
        "the app must lead its own group: {ready}"
    );
    assert!(
        shown.contains("signal INT"),
        "Ctrl-C must reach the app:\n{shown}"
    );
    assert_eq!(output.status.code(), Some(0), "{shown}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let finished = Pyinit::new()
        .args(["--log-format", "json"])
        .app(vec!["/bin/true".into()])
        .run();
    finished.assert_exit_code(0);
    assert!(!finished.stderr.is_empty());
    for line in &finished.stderr {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON object: {line}"
        );
        assert!(line.contains("\"level\":"), "no level: {line}");
    }
    let started = finished
        .stderr
        .iter()
        .find(|line| line.contains("app started"))
        .unwrap();
    assert!(started.contains("\"pid\":"), "{started}");
}

#[test]
fn parent_death_signal_drains_pyinit_when_its_parent_dies() {
    // A shell starts pyinit in the background and waits; killing the shell orphans pyinit.
    let script = r#""$0" --parent-death-signal TERM -- "$1" "$2" & echo "pyinit pid=$!"; wait"#;
    let mut shell = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg(pyinit_bin())
        .args(python_fixture("print_signals.py", &[]))
        .env("PYINIT_ALLOW_ROOT", "true")
        .env("PYINIT_HEALTH_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = crate::common::Lines::from_pipe(shell.stdout.take().unwrap());
    let pyinit_pid: u32 = lines
        .wait_for("pyinit pid=", PATIENCE)
        .rsplit('=')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    lines.wait_for("ready pid=", PATIENCE);
    shell.kill().unwrap();
    #[allow(clippy::disallowed_methods, reason = "the test reaps its own shell")]
    shell.wait().unwrap();
    lines.wait_for("signal TERM", PATIENCE);
    poll_until(PATIENCE, "pyinit to exit after its parent died", || {
        process_state(pyinit_pid).is_none_or(|state| state == 'Z')
    });
}
