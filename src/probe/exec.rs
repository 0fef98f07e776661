//! The exec probe: runs a command without a shell, as the kubelet's `exec` probe; success is
//! exit 0 within the timeout.
//!
//! The command starts through `spawn` (its own process group, no terminal, output discarded) and
//! inherits pyinit's credentials, so it runs as the dropped user. Its exit comes from the
//! reaper's registry, never from a wait of its own. On timeout its whole process group gets
//! SIGKILL through `signals`; the reaper still collects it, so a probe leaves no zombie.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use tracing::warn;

use super::ProbeAnswer;
use crate::exit::ChildStatus;
use crate::reaper::Reaper;
use crate::signals;
use crate::spawn::{self, SpawnSpec};

/// Runs `argv` once and waits for its exit, at most `timeout`.
pub async fn probe_exec(
    argv: &[OsString],
    env: &[(OsString, OsString)],
    working_dir: Option<&Path>,
    timeout: Duration,
    reaper: &Reaper,
) -> ProbeAnswer {
    let spec = SpawnSpec {
        argv: argv.to_vec(),
        env: env.to_vec(),
        working_dir: working_dir.map(Path::to_path_buf),
        inherit_stdio: false,
        take_terminal: false,
    };
    let pid = match spawn::spawn_child(&spec) {
        Ok(pid) => pid,
        Err(failure) => return ProbeAnswer::failure(failure.to_string()),
    };
    // Registered before the next `.await`: on the current-thread runtime the reaper cannot run in
    // between, so this exit is never mistaken for an orphan's.
    let exit_rx = reaper.register(pid);
    match tokio::time::timeout(timeout, exit_rx).await {
        Ok(Ok(ChildStatus::Exited(0))) => ProbeAnswer::success("exit code 0"),
        Ok(Ok(ChildStatus::Exited(code))) => ProbeAnswer::failure(format!("exit code {code}")),
        Ok(Ok(status @ ChildStatus::Signaled(_))) => ProbeAnswer::failure(status.to_string()),
        // The reaper dropped the waiter without a status: its wait status was unreadable.
        Ok(Err(_)) => ProbeAnswer::failure("exit status lost"),
        Err(_) => {
            // The probe leads its own group (spawn puts it there): kill it and whatever it started.
            if let Err(failure) = signals::kill_process_group(pid) {
                warn!(pid, "{failure}");
            }
            ProbeAnswer::timed_out(timeout)
        }
    }
}
