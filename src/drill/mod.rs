//! `pyinit drill`: a rehearsed Kubernetes shutdown, driven through the real supervisor.
//!
//! `main` runs the app exactly as `pyinit` does (same flags, same supervisor and driver) and
//! meets the drill twice: [`attach`] starts it beside a supervisor that is starting, and
//! [`Rehearsal::finish`] judges it once the supervisor is done and gives pyinit's exit code.
//! In between, the drill is one more task, the part of the kubelet: it waits until the app is
//! ready, keeps requests in flight (`traffic.rs`), sends pyinit the SIGTERM, watches `/readyz`
//! turn 503, and keeps sending new requests through the pre-stop delay (a load balancer with
//! stale endpoints sends them until then), stopping a tenth of the delay before the stop signal.
//! Everything else it needs, when the stop signal went out, how the app ended, whether it was
//! killed at the deadline, it reads from the status the supervisor publishes. `report.rs` judges
//! it all; `spec.rs` is the drill as configured.

pub mod report;
pub mod spec;
mod traffic;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::probe::http::{BodyHandling, http_get};
use crate::signals::{self, Signal};
use crate::status::Status;
use crate::units;
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
    status_rx: watch::Receiver<Status>,
}

/// Starts the drill beside a supervisor that is starting: one more task, which reads the
/// supervisor's status and plays the kubelet. `health_addr` is where the health server listens.
pub fn attach(
    drill: DrillConfig,
    status_rx: &watch::Receiver<Status>,
    health_addr: Option<SocketAddr>,
) -> Rehearsal {
    let kubelet = tokio::spawn(rehearse(
        drill.clone(),
        status_rx.clone(),
        health_addr.map(loopback_of),
    ));
    Rehearsal {
        drill,
        kubelet,
        status_rx: status_rx.clone(),
    }
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
        let final_status = self.status_rx.borrow().clone();
        judge(trace, &final_status, exit_code, &self.drill)
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
}

/// The kubelet's part of the drill. Ends once the app has exited and every request has ended.
async fn rehearse(
    drill: DrillConfig,
    mut status_rx: watch::Receiver<Status>,
    health_addr: Option<SocketAddr>,
) -> Trace {
    let started = units::now();
    let mut trace = Trace::default();
    let Some(ready_after) = wait_until_ready(&drill, &mut status_rx).await else {
        warn!("drill: the app never became ready; sending SIGTERM anyway");
        trace.term_sent_at = Some(send_sigterm());
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

    let term_sent_at = send_sigterm();
    trace.term_sent_at = Some(term_sent_at);
    trace.readiness_dropped_after = match health_addr {
        Some(addr) => wait_for_readyz_503(addr, term_sent_at).await,
        None => status_rx
            .wait_for(|status| !status.ready)
            .await
            .ok()
            .map(|_| units::now().saturating_duration_since(term_sent_at)),
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
                status_rx.borrow().app_pid.is_some()
            }
            DrillReadiness::Probe => status_rx
                .wait_for(|status| status.ready || status.shutdown.app_exited_at.is_some())
                .await
                .is_ok_and(|status| status.ready),
        }
    };
    match tokio::time::timeout(drill.ready_timeout, ready).await {
        Ok(true) => Some(units::now()),
        Ok(false) | Err(_) => None,
    }
}

fn send_sigterm() -> Instant {
    let sent_at = units::now();
    info!("drill: sending SIGTERM, as the kubelet does");
    if let Err(errno) = signals::raise_signal(Signal::SIGTERM) {
        warn!("drill: cannot send SIGTERM: {errno}");
    }
    sent_at
}

/// Asks pyinit's own `/readyz` until it answers 503, as the kubelet's next probe would see it.
async fn wait_for_readyz_503(addr: SocketAddr, term_sent_at: Instant) -> Option<Duration> {
    let host = addr.ip().to_string();
    while units::now().saturating_duration_since(term_sent_at) < READINESS_DROP_WAIT {
        if let Ok(503) = http_get(addr, &host, "/readyz", BodyHandling::Ignore).await {
            return Some(units::now().saturating_duration_since(term_sent_at));
        }
        tokio::time::sleep(READINESS_POLL).await;
    }
    None
}

/// Judges the drill and prints the report on stdout; returns the drill's exit code.
fn judge(trace: Trace, status: &Status, exit_code: u8, drill: &DrillConfig) -> u8 {
    let record = &status.shutdown;
    let since_term = |at: Option<Instant>| -> Option<Duration> {
        Some(at?.saturating_duration_since(trace.term_sent_at?))
    };
    let observations = Observations {
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
        pre_stop_delay: drill.pre_stop_delay,
        drain_timeout: drill.drain_timeout,
        grace_period: drill.grace_period,
        requests: trace.requests,
    };
    let report = Report::judge(observations);
    print_report(&report, drill.json);
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
