//! The processes pyinit is responsible for, as /proc shows them: who is a descendant of whom,
//! who has exited (zombies included), each one's command line, for the log, and, for the drill,
//! what each process of the app does with a signal ([`app_processes`], the masks of its status
//! file read by `disposition.rs`).
//!
//! Reading only: `signals/mod.rs` signals them. As PID 1 pyinit is responsible for every other
//! process of its PID namespace; elsewhere for its descendants (as subreaper it inherits the
//! app's orphans, so they stay among them). It also reads what the worker count's pacing needs
//! of the app's master: how many children it runs, and whether it catches a signal.

use std::collections::HashSet;

use super::disposition::{AppProcess, Disposition, parse_status_masks};
use super::spec::Signal;

/// A process still running that pyinit is responsible for, as /proc shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningProcess {
    pub pid: i32,
    /// Its command line, words joined by spaces (cut at [`COMMAND_CHARS`]), or `[name]` for a
    /// process without one.
    pub command: String,
}

/// The longest command line a [`RunningProcess`] keeps.
const COMMAND_CHARS: usize = 120;

/// Every process that [`super::signal_all_descendants`] would reach and that has not exited, by pid:
/// as PID 1 every other process of the PID namespace, otherwise pyinit's descendants. Zombies
/// are left out: they have exited, only their status waits for the reaper.
pub fn remaining_processes() -> Vec<RunningProcess> {
    let own_pid = std::process::id();
    let table = read_process_table();
    let mut pids: Vec<u32> = if own_pid == 1 {
        table
            .iter()
            .map(|entry| entry.pid)
            .filter(|pid| *pid != own_pid)
            .collect()
    } else {
        find_descendants(own_pid, &table)
    };
    pids.retain(|pid| {
        table
            .iter()
            .any(|entry| entry.pid == *pid && !has_exited_state(entry.state))
    });
    pids.sort_unstable();
    pids.into_iter()
        .filter_map(|pid| {
            Some(RunningProcess {
                pid: i32::try_from(pid).ok()?,
                command: read_command(pid),
            })
        })
        .collect()
}

/// How many children of `pid` are running (not zombies), by /proc's parent pids: for the worker
/// count's pacing, which compares it before and after a signal.
pub fn count_running_children(pid: i32) -> usize {
    let Ok(parent) = u32::try_from(pid) else {
        return 0;
    };
    (read_process_table().iter())
        .filter(|entry| entry.ppid == parent && !has_exited_state(entry.state))
        .count()
}

/// Whether `pid` catches every one of `signals`, by the SigCgt mask of /proc/PID/status; `false`
/// when it cannot be read.
pub fn catches_signals(pid: i32, signals: &[Signal]) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
    (status.ok().as_deref())
        .and_then(parse_status_masks)
        .is_some_and(|masks| {
            (signals.iter()).all(|signal| masks.disposition(*signal) == Disposition::Caught)
        })
}

/// The app (`app_pid`) and its descendants still running, the app first, then by pid: each
/// with its command line, whether it is in the app's process group (the app leads its own, so
/// the group's id is the app's pid) and its signal masks.
pub fn app_processes(app_pid: i32) -> Vec<AppProcess> {
    let Ok(app) = u32::try_from(app_pid) else {
        return Vec::new();
    };
    let table = read_process_table();
    let mut pids = find_descendants(app, &table);
    pids.sort_unstable();
    pids.insert(0, app);
    pids.into_iter()
        .filter_map(|pid| {
            let entry = table.iter().find(|entry| entry.pid == pid)?;
            if has_exited_state(entry.state) {
                return None;
            }
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
            Some(AppProcess {
                pid: i32::try_from(pid).ok()?,
                command: read_command(pid),
                is_app: pid == app,
                in_app_group: entry.pgid == app,
                masks: status.as_deref().and_then(parse_status_masks),
            })
        })
        .collect()
}

/// One process of /proc: its pid, state letter, parent pid and process group.
#[derive(Clone, Copy, Debug)]
pub(super) struct ProcessEntry {
    pid: u32,
    state: char,
    ppid: u32,
    pgid: u32,
}

/// Whether `pid` has exited: its /proc entry is gone or says zombie (or dead).
pub(super) fn has_exited(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .is_none_or(|(state, _, _)| has_exited_state(state))
}

fn has_exited_state(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Every process /proc lists, with its state and parent, from /proc/*/stat.
pub(super) fn read_process_table() -> Vec<ProcessEntry> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut table = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some((state, ppid, pgid)) = parse_stat(&stat)
        {
            table.push(ProcessEntry {
                pid,
                state,
                ppid,
                pgid,
            });
        }
    }
    table
}

/// Every descendant of `root` in `table`, through the parent pids.
pub(super) fn find_descendants(root: u32, table: &[ProcessEntry]) -> Vec<u32> {
    let mut found: HashSet<u32> = HashSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for entry in table {
            if entry.ppid == parent && found.insert(entry.pid) {
                frontier.push(entry.pid);
            }
        }
    }
    found.into_iter().collect()
}

/// The state letter, parent pid and process group from the text of /proc/PID/stat; the
/// command name may hold spaces and ')'.
fn parse_stat(stat: &str) -> Option<(char, u32, u32)> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some((state, ppid, pgid))
}

/// The command line of `pid` for a log line: /proc/PID/cmdline with its NULs as spaces, or the
/// kernel's name for it in brackets when it has none (a process that cleared its own).
fn read_command(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command = command_from_cmdline(&cmdline);
    if !command.is_empty() {
        return command;
    }
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    format!("[{}]", name.trim_end())
}

/// `python3 app.py --port 8000` out of cmdline's NUL-separated words, cut at [`COMMAND_CHARS`].
fn command_from_cmdline(cmdline: &[u8]) -> String {
    let words: Vec<String> = cmdline
        .split(|byte| *byte == 0)
        .filter(|word| !word.is_empty())
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect();
    let command = words.join(" ");
    if command.chars().count() <= COMMAND_CHARS {
        return command;
    }
    let mut cut: String = command.chars().take(COMMAND_CHARS).collect();
    cut.push_str("...");
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_and_parent_pid_survive_odd_command_names() {
        assert_eq!(parse_stat("42 (python3) S 7 40 40 0"), Some(('S', 7, 40)));
        assert_eq!(parse_stat("42 (a) b) Z 9 42 42 0"), Some(('Z', 9, 42)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn descendants_are_found_through_every_generation() {
        let entry = |pid, ppid| ProcessEntry {
            pid,
            state: 'S',
            ppid,
            pgid: pid,
        };
        let table = [
            entry(1, 0),
            entry(7, 1),
            entry(9, 7),
            entry(12, 9),
            entry(30, 2),
        ];
        let mut found = find_descendants(7, &table);
        found.sort_unstable();
        assert_eq!(found, [9, 12]);
        assert!(find_descendants(12, &table).is_empty());
    }

    #[test]
    fn command_lines_read_as_a_shell_would_print_them() {
        assert_eq!(
            command_from_cmdline(b"/usr/bin/python3\0app.py\0--port\08000\0"),
            "/usr/bin/python3 app.py --port 8000"
        );
        // A process that rewrote its title (gunicorn with setproctitle) has one word.
        assert_eq!(
            command_from_cmdline(b"gunicorn: worker [app:app]"),
            "gunicorn: worker [app:app]"
        );
        assert_eq!(command_from_cmdline(b""), "");
        let long = [b'x'; 300];
        let cut = command_from_cmdline(&long);
        assert_eq!(cut.len(), COMMAND_CHARS + 3);
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn the_running_processes_of_a_test_are_its_children_and_not_zombies() {
        // The unit tests do not run as PID 1: the list is this process's descendants.
        let mut sleeper = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i32::try_from(sleeper.id()).unwrap();
        let running = remaining_processes();
        let found = running.iter().find(|process| process.pid == pid);
        assert_eq!(
            found.map(|process| process.command.as_str()),
            Some("/bin/sleep 30"),
            "{running:?}"
        );
        #[allow(
            clippy::disallowed_methods,
            reason = "the test kills and waits for its own child"
        )]
        {
            sleeper.kill().unwrap();
            sleeper.wait().unwrap();
        }
        assert!(has_exited(pid));
    }

    #[test]
    fn an_apps_processes_show_what_each_does_with_a_signal() {
        use crate::signals::disposition::{DefaultAction, Disposition};
        use crate::signals::spec::Signal;
        use std::os::unix::process::CommandExt as _;
        // A shell that leads its own group, ignores SIGTERM and starts a sleep, which inherits
        // the ignored SIGTERM (an ignored signal stays ignored across exec).
        let mut app = std::process::Command::new("/bin/sh")
            .args(["-c", "trap '' TERM; /bin/sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let app_pid = i32::try_from(app.id()).unwrap();
        let mut processes = Vec::new();
        for _ in 0..500 {
            processes = app_processes(app_pid);
            if processes.len() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        crate::signals::kill_process_group(app_pid).unwrap();
        #[allow(
            clippy::disallowed_methods,
            reason = "the test waits for its own child"
        )]
        app.wait().unwrap();
        assert_eq!(processes.len(), 2, "{processes:?}");
        let (shell, sleep) = (&processes[0], &processes[1]);
        assert!(shell.is_app && shell.in_app_group, "{shell:?}");
        assert!(!sleep.is_app && sleep.in_app_group, "{sleep:?}");
        assert_eq!(sleep.command, "/bin/sleep 30");
        for process in &processes {
            let masks = process.masks.unwrap();
            assert_eq!(masks.disposition(Signal::SIGTERM), Disposition::Ignored);
        }
        // SIGHUP is the test's own: default, or ignored under `nohup`; the sleep has the same.
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        let own_hup = parse_status_masks(&own)
            .unwrap()
            .disposition(Signal::SIGHUP);
        let expected = if own_hup == Disposition::Ignored {
            Disposition::Ignored
        } else {
            Disposition::Default(DefaultAction::Die)
        };
        let sleep_masks = sleep.masks.unwrap();
        assert_eq!(sleep_masks.disposition(Signal::SIGHUP), expected);
        assert!(app_processes(-1).is_empty());
    }
}
