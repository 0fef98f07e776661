//! The supervisor's shell: turns signals, reaper reports, probe reports and its one timer into
//! events, and actions into syscalls and log events.
//!
//! Once the app is spawned nothing here returns an error: a failed delivery is logged with its
//! pid and signal and the loop goes on. The only way out is an `Action::Exit` from the supervisor.

use std::future::{Future, pending, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use super::{Action, Event, Notice, Reason, Supervisor};
use crate::probe::threshold::{ProbeReport, Verdict};
use crate::reaper::Reaper;
use crate::signals::{self, ForwardTarget, Signal, SignalStream, short_name};
use crate::status::Status;

/// Runs the supervisor until it decides to exit, and returns the exit code.
pub async fn run_supervisor(
    mut supervisor: Supervisor,
    mut signal_stream: SignalStream,
    reaper: Arc<Reaper>,
    status_tx: watch::Sender<Status>,
    mut probe_rx: mpsc::Receiver<ProbeReport>,
) -> u8 {
    status_tx.send_replace(supervisor.status().clone());
    loop {
        let deadline = supervisor.next_deadline();
        let event = tokio::select! {
            biased;
            signal = next_signal(&mut signal_stream) => {
                if signal == Signal::SIGCHLD {
                    reap_zombies(&reaper, supervisor.status().app_pid)
                } else {
                    debug!(signal = short_name(signal), "signal received");
                    Event::Signal(signal)
                }
            }
            () = sleep_until(deadline) => Event::Timer,
            report = next_probe_report(&mut probe_rx) => Event::Probe(report),
        };
        let now = tokio::time::Instant::now().into_std();
        for action in supervisor.step(event, now) {
            if let Some(code) = execute(action) {
                info!(code, "pyinit exiting");
                return code;
            }
        }
        status_tx.send_if_modified(|published| {
            let changed = published != supervisor.status();
            if changed {
                published.clone_from(supervisor.status());
            }
            changed
        });
    }
}

/// The next caught signal; a closed stream (never expected) waits forever instead of spinning.
async fn next_signal(signal_stream: &mut SignalStream) -> Signal {
    loop {
        match poll_fn(|cx| Pin::new(&mut *signal_stream).poll_next(cx)).await {
            Some(number) => match Signal::try_from(number) {
                Ok(signal) => return signal,
                Err(_) => warn!(signal = number, "ignoring a signal with no name"),
            },
            None => {
                error!("the signal stream closed; only timers can end pyinit now");
                return pending().await;
            }
        }
    }
}

/// The next probe report; with no prober left (or none configured) this waits forever.
async fn next_probe_report(probe_rx: &mut mpsc::Receiver<ProbeReport>) -> ProbeReport {
    match probe_rx.recv().await {
        Some(report) => report,
        None => pending().await,
    }
}

fn sleep_until(deadline: Option<std::time::Instant>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    match deadline {
        Some(deadline) => Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
            deadline,
        ))),
        None => Box::pin(pending()),
    }
}

fn reap_zombies(reaper: &Reaper, app_pid: Option<i32>) -> Event {
    let report = reaper.reap_zombies();
    let mut app = None;
    let mut n_orphans = 0;
    for (pid, status) in report.unclaimed {
        if Some(pid) == app_pid {
            app = Some(status);
        } else {
            n_orphans += 1;
        }
    }
    if n_orphans > 0 {
        debug!(count = n_orphans, "orphans reaped");
    }
    Event::Reaped {
        app,
        n_orphans,
        children_left: !report.no_children_left,
    }
}

/// Carries out one action; returns the exit code for `Action::Exit`.
fn execute(action: Action) -> Option<u8> {
    match action {
        Action::Forward {
            signal,
            pid,
            target,
            reason,
        } => {
            let target_name = match target {
                ForwardTarget::Child => "child",
                ForwardTarget::Group => "group",
            };
            match reason {
                Reason::Forwarded { received } => info!(
                    signal = short_name(signal),
                    received = short_name(received),
                    pid,
                    target = target_name,
                    "signal forwarded"
                ),
                Reason::StopSignal => info!(
                    signal = short_name(signal),
                    pid,
                    target = target_name,
                    "stop signal sent"
                ),
                Reason::HardStop => warn!(
                    signal = short_name(signal),
                    pid,
                    target = target_name,
                    "app still running: hard stop signal sent"
                ),
            }
            if let Err(failure) = signals::forward_signal(pid, target, signal) {
                error!(pid, signal = short_name(signal), "{failure}");
            }
        }
        Action::SignalRemaining(signal) => {
            debug!(
                signal = short_name(signal),
                "signalling every remaining process"
            );
            signals::signal_all_descendants(signal);
        }
        Action::Notice(notice) => log_notice(notice),
        Action::Exit(code) => return Some(code),
    }
    None
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn log_notice(notice: Notice) {
    match notice {
        Notice::DrainStarted {
            pre_stop_delay,
            drain_timeout,
            hard_stop,
        } => info!(
            pre_stop_delay_ms = millis(pre_stop_delay),
            deadline_ms = millis(drain_timeout),
            hard_stop_signal = hard_stop.map(|hard_stop| short_name(hard_stop.signal)),
            hard_stop_ms = hard_stop.map(|hard_stop| millis(hard_stop.after)),
            "drain started: readiness is false"
        ),
        Notice::SignalDropped { received } => {
            info!(
                signal = short_name(received),
                "signal dropped by --signal-map"
            );
        }
        Notice::SignalIgnored { received } => {
            debug!(
                signal = short_name(received),
                "signal ignored: no app to forward it to"
            );
        }
        Notice::AppExited {
            status,
            since_drain,
        } => info!(
            code = status.exit_code(),
            status = %status,
            since_drain_ms = since_drain.map(millis),
            "app exited"
        ),
        Notice::DeadlineMissed { drain_timeout } => error!(
            deadline_ms = millis(drain_timeout),
            "app did not drain within the deadline: killing everything left"
        ),
        Notice::LeftoversKilled => {
            warn!("processes the app left behind ignored SIGTERM: killing them");
        }
        Notice::GaveUpWaiting => {
            warn!("some processes were not reaped after SIGKILL: exiting anyway");
        }
        Notice::StartupChanged { verdict, reason } => match verdict {
            Verdict::Passing => info!(%reason, "startup probe succeeded"),
            Verdict::Failing => error!(%reason, "startup probe reached its failure threshold"),
            Verdict::Pending => debug!(%reason, "startup probe pending"),
        },
        Notice::ReadinessChanged { ready: true, .. } => info!("ready"),
        Notice::ReadinessChanged {
            ready: false,
            reason,
        } => warn!(%reason, "not ready"),
        Notice::LivenessChanged { live: true, .. } => info!("live again"),
        Notice::LivenessChanged {
            live: false,
            reason,
        } => error!(%reason, "not live"),
    }
}
