//! The supervisor's shell: turns signals, reaper reports, probe reports and its one timer into
//! events, and actions into syscalls and log events.
//!
//! Once the app is spawned nothing here returns an error: a failed delivery is logged with its
//! pid and signal and the loop goes on. The only way out is an `Action::Exit` from the supervisor.
//!
//! The one action that takes time is the deadline's dump: a task beside the loop sends the dump
//! signal to one process at a time (`signals::signal_one_at_a_time`), so that their tracebacks do
//! not cut into each other, and the SIGKILL at the end of the window aborts it if it is not done.
//! The loop goes on meanwhile: the reaper and the timer are served as ever.
//!
//! Beside the supervisor it feeds the OOM monitor (`container::oom`): every SIGKILL death it
//! reaps, every SIGKILL pyinit sends, and a slow poll. That is reporting only: no decision of the
//! supervisor depends on it. On the same poll (`resize.rs`) it reads the cgroup's limits and
//! memory use and hands them, with the OOM-kill count, to the supervisor as `Event::Resources`,
//! which only records them in `Status`: so `/metrics` shows them while a health request still
//! reads nothing but `Status`. A change of the limits may start a move of the app's worker
//! count, whose steps `resize.rs` takes on a timer of their own.

use std::future::{Future, pending, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::Supervisor;
use super::action::{Action, Notice, Reason};
use super::event::Event;
use super::policy::DeadlineDump;
use super::resize::ResourcePoll;
use crate::container::oom::{OomMonitor, Victim};
use crate::exit::ChildStatus;
use crate::probe::SharedGate;
use crate::probe::threshold::{ProbeReport, Verdict};
use crate::reaper::Reaper;
use crate::signals::spec::{self, ForwardTarget, Signal, short_name};
use crate::signals::{self, CaughtSignal, RunningProcess, SignalStream};
use crate::status::Status;
use crate::units::millis;

/// Where the driver publishes what the supervisor decided, after every step: the whole `Status`
/// for its readers (health, metrics, the drill), and the probers' narrow gate.
#[derive(Debug)]
pub struct Publishers {
    pub status_tx: watch::Sender<Status>,
    pub probe_gate: Arc<SharedGate>,
}

impl Publishers {
    /// Sends what changed; a reader is woken only by a change.
    fn publish(&self, supervisor: &Supervisor) {
        self.status_tx.send_if_modified(|published| {
            let changed = published != supervisor.status();
            if changed {
                published.clone_from(supervisor.status());
            }
            changed
        });
        self.probe_gate.set(supervisor.probe_gate());
    }
}

/// Runs the supervisor until it decides to exit, and returns the exit code.
pub async fn run_supervisor(
    mut supervisor: Supervisor,
    mut signal_stream: SignalStream,
    reaper: Arc<Reaper>,
    publishers: Publishers,
    mut probe_rx: mpsc::Receiver<ProbeReport>,
    mut oom_monitor: OomMonitor,
    mut resource_poll: ResourcePoll,
) -> u8 {
    publishers.publish(&supervisor);
    // The first tick comes at once, so `/metrics` has the memory use from the start.
    let mut resource_ticks = resource_poll.period(&oom_monitor).map(|period| {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut own_signals_logged = 0u64;
    let mut dump = None;
    loop {
        let deadline = supervisor.next_deadline();
        let event = tokio::select! {
            biased;
            signal = next_signal(&mut signal_stream, &mut own_signals_logged) => {
                if signal == Signal::SIGCHLD {
                    sort_reaped(&reaper, supervisor.app_pid(), &mut oom_monitor)
                } else {
                    Event::Signal(signal)
                }
            }
            () = sleep_until(deadline) => Event::Timer,
            report = next_probe_report(&mut probe_rx) => Event::Probe(report),
            () = next_tick(&mut resource_ticks) => {
                oom_monitor.poll();
                resource_poll.poll(&mut oom_monitor, crate::clock::now())
            }
            () = sleep_until(resource_poll.next_worker_check()) => {
                // The follower's own step: the supervisor has nothing to record.
                let app_pid = supervisor.app_pid_before_drain();
                resource_poll.follow_workers(app_pid, crate::clock::now());
                continue;
            }
        };
        let now = crate::clock::now();
        let actions = supervisor.step(event, now);
        // Published before the actions run: /readyz turns 503 before the app hears of the drain,
        // and the last status (the exit included) is seen by every reader.
        publishers.publish(&supervisor);
        for action in actions {
            if sends_sigkill(&action) {
                oom_monitor.note_sigkill_sent();
            }
            if let Some(code) = execute(action, &mut dump) {
                oom_monitor.final_check();
                info!(code, "pyinit exiting");
                // Keep the handlers until the process ends: dropping the stream unregisters
                // each signal, and each unregistration copies signal-hook's whole table (one
                // copy per caught signal, most of a millisecond in all), for nothing once
                // pyinit exits.
                std::mem::forget(signal_stream);
                return code;
            }
        }
    }
}

/// The next caught signal that is not pyinit's own; a closed stream (never expected) waits
/// forever instead of spinning.
///
/// A signal the kernel raised for pyinit's own doing (SIGPIPE for a write to its closed stderr,
/// say) is told apart by its origin and kept: never forwarded to the app, and logged once per
/// signal, since with a broken stderr every log line raises one more SIGPIPE.
async fn next_signal(signal_stream: &mut SignalStream, own_signals_logged: &mut u64) -> Signal {
    let own_pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    loop {
        match poll_fn(|cx| Pin::new(&mut *signal_stream).poll_next(cx)).await {
            Some(info) => {
                let caught = CaughtSignal::from_siginfo(&info);
                if caught.raised_by_pyinit(own_pid) {
                    let bit = u32::try_from(caught.number)
                        .ok()
                        .and_then(|number| 1u64.checked_shl(number))
                        .unwrap_or(0);
                    if *own_signals_logged & bit == 0 {
                        *own_signals_logged |= bit;
                        debug!(
                            signal = &*spec::signal_name(caught.number),
                            code = caught.code,
                            "signal raised by the kernel for pyinit's own doing: not forwarded \
                             (logged once)"
                        );
                    }
                    continue;
                }
                match Signal::try_from(caught.number) {
                    Ok(signal) => {
                        if signal != Signal::SIGCHLD {
                            debug!(
                                signal = short_name(signal),
                                sender_pid = caught.sender_pid,
                                code = caught.code,
                                "signal received"
                            );
                        }
                        return signal;
                    }
                    Err(_) => warn!(signal = caught.number, "ignoring a signal with no name"),
                }
            }
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

/// The next tick of the resource poll; never, without a cgroup to poll.
async fn next_tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => pending().await,
    }
}

fn sends_sigkill(action: &Action) -> bool {
    matches!(
        action,
        Action::SignalRemaining(Signal::SIGKILL)
            | Action::Forward {
                signal: Signal::SIGKILL,
                ..
            }
    )
}

/// One reaping pass, sorted into the app's exit and the orphans' for the supervisor; SIGKILL
/// deaths go to the OOM monitor.
fn sort_reaped(reaper: &Reaper, app_pid: Option<i32>, oom_monitor: &mut OomMonitor) -> Event {
    let report = reaper.reap_zombies();
    let mut app = None;
    let mut n_orphans = 0;
    let mut killed = Vec::new();
    for (pid, status) in report.unclaimed {
        let is_app = Some(pid) == app_pid;
        if is_app {
            app = Some(status);
        } else {
            n_orphans += 1;
        }
        if status == ChildStatus::Signaled(Signal::SIGKILL as i32) {
            // The app first: if only one kill is counted, it is the one that sets the exit code.
            if is_app {
                killed.insert(0, Victim::App { pid });
            } else {
                killed.push(Victim::Process { pid });
            }
        }
    }
    if n_orphans > 0 {
        debug!(count = n_orphans, "orphans reaped");
    }
    oom_monitor.check_reaped(&killed);
    Event::Reaped {
        app,
        n_orphans,
        children_left: !report.no_children_left,
    }
}

/// Sends the app a signal the supervisor decided on, with its log line.
fn send_to_app(signal: Signal, pid: i32, target: ForwardTarget, reason: Reason) {
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
    // The drain's own signals wake a stopped app, so that it can act on them.
    let delivered = match reason {
        Reason::Forwarded { .. } => signals::forward_signal(pid, target, signal),
        Reason::StopSignal | Reason::HardStop => signals::signal_and_continue(pid, target, signal),
    };
    if let Err(failure) = delivered {
        error!(pid, signal = short_name(signal), "{failure}");
    }
}

/// Carries out one action; returns the exit code for `Action::Exit`. `dump` is the deadline's dump
/// while it sends its signals, so that the SIGKILL after it can stop it.
fn execute(action: Action, dump: &mut Option<JoinHandle<()>>) -> Option<u8> {
    match action {
        Action::Forward {
            signal,
            pid,
            target,
            reason,
        } => send_to_app(signal, pid, target, reason),
        Action::SignalRemaining(signal) => {
            if signal == Signal::SIGKILL
                && let Some(dump) = dump.take()
            {
                // What the window did not reach is killed anyway: no dump signal after SIGKILL.
                dump.abort();
            }
            debug!(
                signal = short_name(signal),
                "signalling every remaining process"
            );
            signals::signal_all_descendants(signal);
        }
        Action::DumpTracebacks { signal, window } => {
            let pids: Vec<i32> = (signals::remaining_processes().iter())
                .map(|process| process.pid)
                .collect();
            let wait_each = dump_wait_each(window, pids.len());
            debug!(
                signal = short_name(signal),
                processes = pids.len(),
                wait_each_ms = millis(wait_each),
                "sending the dump signal, one process at a time"
            );
            *dump = Some(tokio::spawn(signals::signal_one_at_a_time(
                pids, signal, wait_each,
            )));
        }
        Action::Notice(notice) => log_notice(notice),
        Action::Exit(code) => return Some(code),
    }
    None
}

/// The most the dump waits for one process to print and die before it signals the next: Python
/// takes about a millisecond; a process that prints nothing and lives on (not Python, or its own
/// handler) must not hold up the others for long.
const DUMP_WAIT_EACH: Duration = Duration::from_millis(100);

/// How long the dump waits after each of `n_processes` signals: at most [`DUMP_WAIT_EACH`], and
/// little enough that every process has had its signal by half the window, so that even the
/// last one has time to print before the SIGKILL.
fn dump_wait_each(window: Duration, n_processes: usize) -> Duration {
    let n = u32::try_from(n_processes.max(1)).unwrap_or(u32::MAX);
    DUMP_WAIT_EACH.min(window / n.saturating_mul(2))
}

/// faulthandler's name for the fatal signals it watches, as its "Fatal Python error: ..." line
/// prints it; `None` for a signal it does not watch (an app may still `faulthandler.register`
/// it).
fn faulthandler_name(signal: Signal) -> Option<&'static str> {
    match signal {
        Signal::SIGBUS => Some("Bus error"),
        Signal::SIGSEGV => Some("Segmentation fault"),
        Signal::SIGABRT => Some("Aborted"),
        Signal::SIGFPE => Some("Floating point exception"),
        Signal::SIGILL => Some("Illegal instruction"),
        _ => None,
    }
}

/// The processes still running, for one log field: `7 gunicorn ...; 9 gunicorn ...`, the first
/// [`LISTED_PROCESSES`] of them.
fn describe_processes(processes: &[RunningProcess]) -> String {
    let mut listed: Vec<String> = (processes.iter().take(LISTED_PROCESSES))
        .map(|process| format!("{} {}", process.pid, process.command))
        .collect();
    if processes.len() > LISTED_PROCESSES {
        listed.push(format!("and {} more", processes.len() - LISTED_PROCESSES));
    }
    listed.join("; ")
}

/// How many processes the deadline's error line names.
const LISTED_PROCESSES: usize = 20;

/// The deadline's error line: what is done now, and where the tracebacks it asks for will be.
fn log_deadline_missed(drain_timeout: Duration, dump: Option<DeadlineDump>) {
    let still_running = describe_processes(&signals::remaining_processes());
    let Some(DeadlineDump { signal, window }) = dump else {
        error!(
            deadline_ms = millis(drain_timeout),
            still_running = still_running.as_str(),
            "app did not drain within the deadline: killing everything left"
        );
        return;
    };
    let provoked = match faulthandler_name(signal) {
        Some(name) => format!(
            "the \"Fatal Python error: {name}\" lines there are pyinit's doing at the \
             deadline, no crash happened"
        ),
        None => format!(
            "a Python process prints one on {} only if the app registered it with \
             faulthandler.register",
            short_name(signal)
        ),
    };
    error!(
        deadline_ms = millis(drain_timeout),
        dump_signal = short_name(signal),
        dump_window_ms = millis(window),
        still_running = still_running.as_str(),
        "app did not drain within the deadline: sending {} to every process for its Python \
         traceback, on the app's stderr, then SIGKILL; {provoked}",
        short_name(signal)
    );
}

fn log_notice(notice: Notice) {
    match notice {
        Notice::DrainStarted {
            signal,
            pre_stop_delay,
            drain_timeout,
            hard_stop,
        } => info!(
            signal = short_name(signal),
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
            after_deadline,
            clean_stop,
        } => log_app_exited(status, since_drain, after_deadline, clean_stop),
        Notice::DeadlineMissed {
            drain_timeout,
            dump,
        } => log_deadline_missed(drain_timeout, dump),
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

fn log_app_exited(
    status: ChildStatus,
    since_drain: Option<Duration>,
    after_deadline: bool,
    clean_stop: bool,
) {
    if clean_stop {
        info!(
            code = 0,
            status = %status,
            since_drain_ms = since_drain.map(millis),
            "app exited: it drained and then re-raised its stop signal, a clean stop"
        );
    } else if after_deadline {
        // Debug only: it comes while other processes still print their tracebacks, and a line
        // of pyinit's would cut into one of them; the deadline's error line said it all already.
        debug!(
            status = %status,
            since_drain_ms = since_drain.map(millis),
            "app exited after the drain deadline: pyinit exits 137 all the same"
        );
    } else {
        info!(
            code = status.exit_code(),
            status = %status,
            since_drain_ms = since_drain.map(millis),
            "app exited"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_process_gets_its_dump_signal_within_half_the_window() {
        let second = Duration::from_secs(1);
        assert_eq!(dump_wait_each(second, 0), DUMP_WAIT_EACH);
        assert_eq!(dump_wait_each(second, 1), DUMP_WAIT_EACH);
        assert_eq!(dump_wait_each(second, 10), Duration::from_millis(50));
        assert_eq!(dump_wait_each(second, 1000), Duration::from_micros(500));
        assert_eq!(
            dump_wait_each(Duration::from_millis(200), 2),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn the_error_line_lists_the_processes_still_running() {
        let process = |pid, command: &str| RunningProcess {
            pid,
            command: command.to_owned(),
        };
        assert_eq!(
            describe_processes(&[process(7, "gunicorn app:app"), process(9, "[sh]")]),
            "7 gunicorn app:app; 9 [sh]"
        );
        let many: Vec<RunningProcess> = (1..=25).map(|pid| process(pid, "x")).collect();
        let listed = describe_processes(&many);
        assert!(listed.starts_with("1 x; 2 x;"), "{listed}");
        assert!(listed.ends_with("20 x; and 5 more"), "{listed}");
    }
}
