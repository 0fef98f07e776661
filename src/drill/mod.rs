//! `pyinit drill`: a rehearsed Kubernetes shutdown, driven through the real supervisor.
//!
//! `main` runs the app exactly as `pyinit` does (same flags, same supervisor and driver) and
//! meets the drill twice: [`attach`] starts it beside a supervisor that is starting, and
//! [`Rehearsal::finish`] judges it once the supervisor is done and gives pyinit's exit code.
//! In between, the drill is one more task, the part of the kubelet: it waits until the app is
//! ready, keeps requests in flight (`traffic.rs`), plays the preStop hook if there is one (a
//! sleep, while the requests go on), sends pyinit its stop signal, watches `/readyz` turn 503,
//! and keeps sending new requests through the pre-stop delay (a load balancer with stale
//! endpoints sends them until then), stopping a tenth of the delay before the app's own stop
//! signal.
//! Everything else it needs, when the stop signal went out, how the app ended, whether it was
//! killed at the deadline, it reads from the status the supervisor publishes. Just before the
//! stop signal it reads, from /proc, which signals the app and each of its descendants catch,
//! ignore or block (`signals::app_processes`), so that the report can tell an app that stopped
//! on its own terms from one the kernel killed. `report.rs` judges it all (`stop_handling.rs`
//! what the app does with its stop signal); `spec.rs` is the drill as configured.
//!
//! The drill also sees what the app writes to stderr: the app's stderr is a pipe (`spawn`'s
//! `StderrPipe`), and a second task passes every byte on to pyinit's own stderr, unchanged and as
//! it comes, while it keeps what came after the drain deadline. From that, the tracebacks the
//! dump signal asked for, `traceback.rs` reads where each thread was stuck, for the report.

pub mod report;
pub mod spec;
mod stop_handling;
mod traceback;
mod traffic;

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::probe::http::{BodyHandling, http_get};
use crate::signals::disposition::AppProcess;
use crate::signals::{
    self,
    spec::{Signal, short_name},
};
use crate::status::{AppState, Status};
use crate::{clock, units};
use report::{Observations, Report};
use spec::{DrillConfig, DrillReadiness};

/// How long the drill polls `/readyz` for a 503 before it gives up on it.
const READINESS_DROP_WAIT: Duration = Duration::from_secs(5);
/// How often `/readyz` is asked while the drill waits for the 503.
const READINESS_POLL: Duration = Duration::from_millis(2);
/// How long requests that are running at SIGTERM get to settle in the server before it arrives.
const IN_FLIGHT_SETTLE: Duration = Duration::from_millis(300);

/// How much longer than the drain deadline one drill request may take before it counts as hung.
const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// How long, once the supervisor is done, the drill waits for the end of the app's stderr (every
/// process that held it is dead by then; one that escaped pyinit's kill could hold it forever).
const APP_STDERR_END_WAIT: Duration = Duration::from_secs(2);

/// The most of the app's stderr after the deadline that the drill keeps for the report: the
/// tracebacks of a hundred processes take far less; everything is passed on regardless.
const KEPT_AFTER_DEADLINE: usize = 512 * 1024;

/// Where the drill itself reaches a listener: a wildcard address is asked on loopback.
fn loopback_of(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// A drill running beside the supervisor.
#[derive(Debug)]
pub struct Rehearsal {
    drill: DrillConfig,
    kubelet: JoinHandle<Trace>,
    /// What the app wrote to stderr after the deadline, once its stderr has ended.
    app_stderr: Option<JoinHandle<Vec<u8>>>,
    status_rx: watch::Receiver<Status>,
    /// What the server's profile changed, as pyinit's start-up line says it.
    server_profile: Option<String>,
}

/// Starts the drill beside a supervisor that is starting: one task that reads the supervisor's
/// status and plays the kubelet, and one that passes the app's stderr (the read end of its pipe,
/// if the app has one) on to pyinit's. `health_addr` is where the health server listens;
/// `server_profile` what the server's profile changed, for the report.
pub fn attach(
    drill: DrillConfig,
    status_rx: &watch::Receiver<Status>,
    health_addr: Option<SocketAddr>,
    app_stderr: Option<pipe::Receiver>,
    server_profile: Option<String>,
) -> Rehearsal {
    let kubelet = tokio::spawn(rehearse(
        drill.clone(),
        status_rx.clone(),
        health_addr.map(loopback_of),
    ));
    let app_stderr = app_stderr.map(|pipe| tokio::spawn(relay_app_stderr(pipe, status_rx.clone())));
    Rehearsal {
        drill,
        kubelet,
        app_stderr,
        status_rx: status_rx.clone(),
        server_profile,
    }
}

/// Passes everything the app writes to its stderr on to pyinit's, unchanged, as it comes, until
/// the last writer has closed it; returns what came once the deadline had passed (at most
/// [`KEPT_AFTER_DEADLINE`] bytes).
///
/// It reads on whatever happens to pyinit's stderr: a reader that stopped would leave the app
/// blocked in its own writes. A chunk is written with one blocking write, as pyinit's log lines
/// are, so that a line of the app's is not cut by one of pyinit's.
async fn relay_app_stderr(mut pipe: pipe::Receiver, status_rx: watch::Receiver<Status>) -> Vec<u8> {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut after_deadline = Vec::new();
    loop {
        let chunk = match pipe.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => buffer.get(..n).unwrap_or_default(),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                warn!(%error, "drill: cannot read the app's stderr any more");
                break;
            }
        };
        // pyinit's stderr gone (EPIPE) changes nothing for the app: keep reading.
        let _ = std::io::stderr().write_all(chunk);
        if status_rx.borrow().shutdown.killed_at_deadline {
            let room = KEPT_AFTER_DEADLINE.saturating_sub(after_deadline.len());
            after_deadline
                .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        }
    }
    after_deadline
}

impl Rehearsal {
    /// Once the supervisor is done (`exit_code` is pyinit's): waits for the drill's last
    /// requests, judges the shutdown, prints the report on stdout, and gives the drill's exit
    /// code.
    pub async fn finish(self, exit_code: u8) -> u8 {
        let trace = tokio::time::timeout(request_timeout(&self.drill), self.kubelet)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let after_deadline = match self.app_stderr {
            Some(relay) => tokio::time::timeout(APP_STDERR_END_WAIT, relay)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let stuck_frames = traceback::stuck_frames(&String::from_utf8_lossy(&after_deadline));
        let final_status = self.status_rx.borrow().clone();
        let mut observations = observe(trace, &final_status, exit_code, &self.drill, stuck_frames);
        observations.server_profile = self.server_profile;
        grade_and_print(observations, self.drill.json)
    }
}

/// How long one drill request may take: past the drain deadline it can only hang.
fn request_timeout(drill: &DrillConfig) -> Duration {
    drill.drain_timeout + REQUEST_TIMEOUT_MARGIN
}

/// What the drill task saw; the rest comes from the final status.
#[derive(Debug, Default)]
struct Trace {
    ready_after: Option<Duration>,
    term_sent_at: Option<Instant>,
    readiness_dropped_after: Option<Duration>,
    requests: Option<report::RequestTally>,
    /// The app's processes, read just before the stop signal went to pyinit.
    processes: Vec<AppProcess>,
}

/// The kubelet's part of the drill. Ends once the app has exited and every request has ended.
async fn rehearse(
    drill: DrillConfig,
    mut status_rx: watch::Receiver<Status>,
    health_addr: Option<SocketAddr>,
) -> Trace {
    let started = clock::now();
    let mut trace = Trace::default();
    let Some(ready_after) = wait_until_ready(&drill, &mut status_rx).await else {
        warn!("drill: the app never became ready; sending the stop signal anyway");
        trace.processes = read_app_processes(&status_rx);
        trace.term_sent_at = Some(send_stop_signal(drill.stop_signal));
        let _ = status_rx
            .wait_for(|status| status.shutdown.app_exited_at.is_some())
            .await;
        return trace;
    };
    trace.ready_after = Some(ready_after.saturating_duration_since(started));
    info!(
        ready_ms = units::millis(trace.ready_after.unwrap_or_default()),
        "drill: app is ready"
    );

    let traffic =
        traffic::Traffic::start(&drill.requests, drill.concurrency, request_timeout(&drill));
    if !drill.requests.is_empty() {
        traffic.wait_until_all_started().await;
        // Give the server a moment to accept the requests, so they are really in flight.
        tokio::time::sleep(IN_FLIGHT_SETTLE).await;
    }

    play_pre_stop_hook(drill.pre_stop_hook, &mut status_rx).await;
    trace.processes = read_app_processes(&status_rx);
    let term_sent_at = send_stop_signal(drill.stop_signal);
    trace.term_sent_at = Some(term_sent_at);
    trace.readiness_dropped_after = match health_addr {
        Some(addr) => wait_for_readyz_503(addr, term_sent_at).await,
        None => status_rx
            .wait_for(|status| !status.checks.ready())
            .await
            .ok()
            .map(|_| clock::now().saturating_duration_since(term_sent_at)),
    };

    // New requests keep coming during the pre-stop delay, as from a load balancer that has not
    // yet seen the endpoint removed; they stop a tenth of the delay before the stop signal, the
    // margin that the delay exists to give.
    let keep_sending = drill.pre_stop_delay - drill.pre_stop_delay / 10;
    let app_exited = status_rx.wait_for(|status| status.shutdown.app_exited_at.is_some());
    let _ = tokio::time::timeout(keep_sending, app_exited).await;
    traffic.stop_sending();
    let stop_signal_at = status_rx
        .wait_for(|status| {
            status.shutdown.stop_signal.is_some() || status.shutdown.app_exited_at.is_some()
        })
        .await
        .ok()
        .and_then(|status| status.shutdown.stop_signal.map(|(_, at)| at));
    let _ = status_rx
        .wait_for(|status| status.shutdown.app_exited_at.is_some())
        .await;
    if !drill.requests.is_empty() {
        trace.requests = Some(traffic.finish(term_sent_at, stop_signal_at).await);
    }
    trace
}

/// When the app became ready, or `None` if it did not within the timeout (or exited first).
async fn wait_until_ready(
    drill: &DrillConfig,
    status_rx: &mut watch::Receiver<Status>,
) -> Option<Instant> {
    let ready = async {
        match drill.readiness {
            DrillReadiness::After(after) => {
                tokio::time::sleep(after).await;
                status_rx.borrow().app.is_running()
            }
            DrillReadiness::Probe => status_rx
                .wait_for(|status| status.checks.ready() || status.shutdown.app_exited_at.is_some())
                .await
                .is_ok_and(|status| status.checks.ready()),
        }
    };
    match tokio::time::timeout(drill.ready_timeout, ready).await {
        Ok(true) => Some(clock::now()),
        Ok(false) | Err(_) => None,
    }
}

/// The app and its descendants with their signal masks, if the app is running.
fn read_app_processes(status_rx: &watch::Receiver<Status>) -> Vec<AppProcess> {
    let app = status_rx.borrow().app;
    match app {
        AppState::Running { pid } => signals::app_processes(pid),
        AppState::Sidecar | AppState::Exited { .. } => Vec::new(),
    }
}

/// The kubelet's preStop hook, played as a sleep of `hook` before the stop signal (the kubelet
/// runs the hook first and has the stop signal sent once it has returned): pyinit knows nothing
/// of it yet, and the requests keep coming. It ends early if the app exits meanwhile.
async fn play_pre_stop_hook(hook: Duration, status_rx: &mut watch::Receiver<Status>) {
    if hook.is_zero() {
        return;
    }
    info!(
        hook_ms = units::millis(hook),
        "drill: running the preStop hook before the stop signal, as the kubelet does"
    );
    let app_exited = status_rx.wait_for(|status| status.shutdown.app_exited_at.is_some());
    let _ = tokio::time::timeout(hook, app_exited).await;
}

/// Sends pyinit its stop signal, as the container runtime does when the kubelet stops the
/// container.
fn send_stop_signal(signal: Signal) -> Instant {
    let sent_at = clock::now();
    let name = short_name(signal);
    info!("drill: sending SIG{name}, as the kubelet does");
    if let Err(errno) = signals::raise_signal(signal) {
        warn!("drill: cannot send SIG{name}: {errno}");
    }
    sent_at
}

/// Asks pyinit's own `/readyz` until it answers 503, as the kubelet's next probe would see it.
async fn wait_for_readyz_503(addr: SocketAddr, term_sent_at: Instant) -> Option<Duration> {
    let host = addr.ip().to_string();
    while clock::now().saturating_duration_since(term_sent_at) < READINESS_DROP_WAIT {
        if let Ok(503) = http_get(addr, &host, "/readyz", BodyHandling::Ignore).await {
            return Some(clock::now().saturating_duration_since(term_sent_at));
        }
        tokio::time::sleep(READINESS_POLL).await;
    }
    None
}

/// What the drill saw, from its own trace and the shutdown record of the final status.
fn observe(
    trace: Trace,
    status: &Status,
    exit_code: u8,
    drill: &DrillConfig,
    stuck_frames: Vec<traceback::StuckFrame>,
) -> Observations {
    let record = &status.shutdown;
    let since_term = |at: Option<Instant>| -> Option<Duration> {
        Some(at?.saturating_duration_since(trace.term_sent_at?))
    };
    Observations {
        drain_signal: drill.stop_signal,
        ready_after: trace.ready_after,
        ready_timeout: drill.ready_timeout,
        readiness_dropped_after: trace.readiness_dropped_after,
        stop_signal: record
            .stop_signal
            .and_then(|(signal, at)| Some((signal, since_term(Some(at))?))),
        hard_stop_sent: record.hard_stop_sent_at.is_some(),
        app_exited_after: since_term(record.app_exited_at),
        app_status: record.app_status,
        exit_code,
        killed_at_deadline: record.killed_at_deadline,
        left_behind: record.left_behind,
        deadline_dump: drill.deadline_dump.map(|dump| dump.signal),
        stuck_frames,
        pre_stop_delay: drill.pre_stop_delay,
        drain_timeout: drill.drain_timeout,
        grace_period: drill.grace_period,
        pre_stop_hook: drill.pre_stop_hook,
        requests: trace.requests,
        processes: trace.processes,
        forward_to: drill.forward_to,
        server_profile: None,
        server_turned_off: drill.server_turned_off,
    }
}

/// Grades the drill, prints the report on stdout, and gives the drill's exit code: 0 when no
/// check failed.
fn grade_and_print(observations: Observations, json: bool) -> u8 {
    let report = Report::grade(observations);
    print_report(&report, json);
    if report.passed() { 0 } else { 1 }
}

#[allow(
    clippy::print_stdout,
    reason = "the drill's report is its output, on stdout as a test tool's"
)]
fn print_report(report: &Report, json: bool) {
    if json {
        println!("{}", report::render_json(report));
    } else {
        print!("{}", report::render_table(report));
    }
}
