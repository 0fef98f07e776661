//! The drill's traffic: workers that keep requests in flight across the SIGTERM.
//!
//! Each worker sends one GET after another on a fresh connection (as a load balancer's health
//! checked endpoint would get them) until it is told to stop sending, and finishes the request
//! it is in when told. Afterwards every request is sorted by when it ran relative to the
//! SIGTERM: the ones that ended before it were warm-up; the ones running at it, or sent during the
//! drain, are the ones users would feel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::report::RequestTally;
use super::spec::DrillRequest;
use crate::clock;
use crate::probe::http::{BodyHandling, http_get};

/// How many failures the report quotes.
const QUOTED_FAILURES: usize = 3;
/// How long `wait_until_all_started` waits for the first request of every worker.
const START_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct RequestRecord {
    path: String,
    started: Instant,
    finished: Instant,
    result: Result<u16, String>,
}

/// The running workers.
#[derive(Debug)]
pub struct Traffic {
    workers: Vec<JoinHandle<Vec<RequestRecord>>>,
    stop: Arc<AtomicBool>,
    n_started: Arc<AtomicUsize>,
}

impl Traffic {
    /// Starts `concurrency` workers per URL on the current runtime.
    pub fn start(requests: &[DrillRequest], concurrency: usize, timeout: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let n_started = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for request in requests {
            for _ in 0..concurrency {
                workers.push(tokio::spawn(run_worker(
                    request.clone(),
                    timeout,
                    Arc::clone(&stop),
                    Arc::clone(&n_started),
                )));
            }
        }
        Traffic {
            workers,
            stop,
            n_started,
        }
    }

    /// Waits until every worker has sent its first request (a few seconds at most).
    pub async fn wait_until_all_started(&self) {
        let deadline = clock::now() + START_WAIT;
        while self.n_started.load(Ordering::SeqCst) < self.workers.len() && clock::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// No new request from now on; those in flight run to their end.
    pub fn stop_sending(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for every worker and counts what users would have felt from `term_sent_at` on.
    ///
    /// A request that started after the stop signal went out was sent only because the drill
    /// saw the moment late: no load balancer sends it then, so it is not counted.
    pub async fn finish(
        self,
        term_sent_at: Instant,
        stop_signal_at: Option<Instant>,
    ) -> RequestTally {
        self.stop_sending();
        let mut tally = RequestTally::default();
        for worker in self.workers {
            let Ok(records) = worker.await else { continue };
            for record in records {
                let after_stop_signal = stop_signal_at.is_some_and(|at| record.started >= at);
                if record.finished < term_sent_at || after_stop_signal {
                    continue;
                }
                if record.started < term_sent_at {
                    tally.in_flight_at_term += 1;
                } else {
                    tally.sent_during_drain += 1;
                }
                match &record.result {
                    Ok(status) if (200..400).contains(status) => tally.succeeded += 1,
                    failure => {
                        tally.failed += 1;
                        if tally.first_failures.len() < QUOTED_FAILURES {
                            let what = match failure {
                                Ok(status) => format!("status {status}"),
                                Err(message) => message.clone(),
                            };
                            tally
                                .first_failures
                                .push(format!("GET {}: {what}", record.path));
                        }
                    }
                }
            }
        }
        tally
    }
}

async fn run_worker(
    request: DrillRequest,
    timeout: Duration,
    stop: Arc<AtomicBool>,
    n_started: Arc<AtomicUsize>,
) -> Vec<RequestRecord> {
    let mut records = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let started = clock::now();
        if records.is_empty() {
            n_started.fetch_add(1, Ordering::SeqCst);
        }
        let get = http_get(
            request.addr,
            &request.host,
            &request.path,
            BodyHandling::ReadToEnd,
        );
        let result = match tokio::time::timeout(timeout, get).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}ms", timeout.as_millis())),
        };
        let failed = result.is_err();
        records.push(RequestRecord {
            path: request.path.clone(),
            started,
            finished: clock::now(),
            result,
        });
        // A refused connection returns at once: do not spin on a server that is gone.
        if failed {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    records
}
