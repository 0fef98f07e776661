//! Bugs that peers of pyinit's shipped, as tests that pyinit does not: each names the report it
//! reproduces. pyinit runs as PID 1 of a fresh PID namespace, as in a container, and as a
//! subreaper where the test must see what is left on the host afterwards.

use std::time::Duration;

use crate::common::{PATIENCE, Pyinit, python_fixture};

/// openSUSE/catatonit#4 ("catatonit hangs due to signal coalescing",
/// https://github.com/openSUSE/catatonit/issues/4): when the app and other children exit at
/// nearly the same moment, their SIGCHLDs coalesce, and an init that looks for the app's exit
/// only in the SIGCHLD it was handed misses it and waits forever. Here the app exits at the same
/// moment as 50 processes of its own, twenty times over: pyinit must end each time with the
/// app's code.
#[test]
fn the_apps_exit_among_coalesced_sigchlds_is_never_missed() {
    let mut passes_with_several = 0;
    for run in 0..20 {
        let finished = Pyinit::new()
            .as_pid1()
            .args(["--log-level", "debug"])
            .app(python_fixture("exit_together.py", &["50", "7"]))
            .run();
        assert_eq!(
            finished.code(),
            Some(7),
            "run {run}:\n{}",
            finished.stderr_text()
        );
        // One wake-up of the reaper found several processes gone: the case the report is about.
        passes_with_several += (finished.stderr.iter())
            .filter_map(|line| line.split("orphans reaped count=").nth(1))
            .filter(|count| count.trim().parse::<u32>().is_ok_and(|count| count > 1))
            .count();
    }
    assert!(
        passes_with_several > 0,
        "no reaping pass ever found more than one exit: SIGCHLDs never coalesced"
    );
}

/// openSUSE/catatonit#5 ("catatonit hangs when pid1 exits with code 127",
/// https://github.com/openSUSE/catatonit/issues/5): an app that runs and exits 127 (a shell's
/// "command not found") was taken for one still alive. pyinit passes 127 on, and 126 and 128
/// beside it, at once.
#[test]
fn an_app_that_exits_127_ends_pyinit_with_127() {
    for (script, code) in [
        ("exit 127", 127),
        ("no-such-command-in-this-image", 127),
        ("exit 126", 126),
        ("exit 128", 128),
    ] {
        let finished = Pyinit::new()
            .as_pid1()
            .app(vec!["/bin/sh".into(), "-c".into(), script.into()])
            .run();
        finished.assert_exit_code(code);
        assert!(
            finished
                .stderr_text()
                .contains(&format!("app exited code={code}")),
            "{script}:\n{}",
            finished.stderr_text()
        );
    }
}

/// Yelp/dumb-init#191 ("trouble in managing subprocess with setsid executed",
/// https://github.com/Yelp/dumb-init/issues/191): a grandchild that called setsid() has left the
/// app's process group, so a signal sent to the group never reaches it, and it lives on after
/// the app (or dies by the kernel's SIGKILL with the container, without a chance to stop). Here
/// the app exits on SIGINT, forwarded to its group as dumb-init does; pyinit then asks what the
/// app left behind to stop, the setsid'd grandchild among them, and waits for it.
#[test]
fn a_setsid_grandchild_is_asked_to_stop_when_the_app_is_gone() {
    for as_pid1 in [true, false] {
        let pyinit = if as_pid1 {
            Pyinit::new().as_pid1()
        } else {
            Pyinit::new()
        };
        let mut running = pyinit
            .args(["--forward-to", "group"])
            .app(python_fixture(
                "print_signals.py",
                &["--exit-on", "INT", "--grandchild", "--setsid"],
            ))
            .start();
        running.wait_ready();
        let grandchild = running.stdout.wait_for("grandchild ready pid=", PATIENCE);
        let grandchild: u32 = grandchild.rsplit('=').next().unwrap().parse().unwrap();
        running.signal("INT");
        assert_eq!(
            running.wait_exit(PATIENCE).code(),
            Some(0),
            "PID 1: {as_pid1}"
        );
        // Its own handler saw the SIGTERM: it was asked, not killed.
        running
            .stdout
            .wait_for("grandchild signal TERM", Duration::ZERO);
        assert!(
            !running.stderr.contains("ignored SIGTERM: killing them"),
            "{}",
            running.stderr.joined()
        );
        if !as_pid1 {
            // On the host nothing else would end it: it must be gone with pyinit.
            assert!(
                !std::path::Path::new(&format!("/proc/{grandchild}")).exists(),
                "the setsid'd grandchild outlived pyinit"
            );
        }
    }
}
