//! A rolling restart under load, end to end in runc: two pods of the same app (pyinit as PID 1,
//! run as in Kubernetes: `KUBERNETES_SERVICE_HOST` set, so the default pre-stop delay applies)
//! behind a load balancer that follows readiness alone. Its endpoints controller probes each
//! pod's `/readyz` every second (timeout 1 s, failure threshold 1) and every change reaches the
//! balancer a second later; clients open a new connection per request at a steady rate, and the
//! balancer hands each to the next endpoint it knows. One pod gets `runc kill TERM`, as the
//! kubelet sends it; users must not see a single failed request.
//!
//! The balancer hears of the deletion only through readiness, which is the harder case for
//! pyinit (a Kubernetes Service also drops a deleted pod's endpoint at once): readiness must turn
//! false at the SIGTERM, and the app must keep serving until the balancer has followed. The
//! balancer leaves the pod within a probe period and a propagation delay, about 2 s; pyinit's
//! delay is 5 s, so the margin is some 3 s. The benchmark (bench/rollout.py) measures
//! the same restart beside the other inits; this test only holds pyinit to it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::common::PATIENCE;
use crate::common::poll_until;
use crate::common::runc::{Bundle, Container, free_port, http_get};

/// The endpoints controller's readinessProbe: periodSeconds 1, timeoutSeconds 1,
/// failureThreshold 1, successThreshold 1.
const PROBE_PERIOD: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const FAILURE_THRESHOLD: u32 = 1;

/// Time until a change of an endpoint reaches the balancer (kube-proxy, a cloud load balancer).
const PROPAGATION_DELAY: Duration = Duration::from_secs(1);

/// New connections per second, for the whole restart.
const REQUESTS_PER_SECOND: u32 = 20;

/// A request that has no answer by then has failed; far beyond any answer on a loaded machine.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The app servers the restart runs with.
#[derive(Debug, Clone, Copy)]
enum Server {
    Gunicorn,
    Uvicorn,
}

/// One pod: its container and the ports of its app and of pyinit's health server.
#[derive(Debug)]
struct Pod {
    container: Container,
    app_port: u16,
    health_port: u16,
}

/// A pod as Kubernetes starts it: as root with `KUBERNETES_SERVICE_HOST` in its environment,
/// pyinit dropping the app to nobody, probing its `/healthz` for readiness every second (this
/// only decides when a new pod first turns ready) and serving `/readyz` on its own port; every
/// drain setting is pyinit's default, plus `pyinit_args`.
fn start_pod(server: Server, pyinit_args: &[&str]) -> Pod {
    let app_port = free_port();
    let health_port = free_port();
    let bundle = Bundle::new()
        .env_remove("PYINIT_ALLOW_ROOT")
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .args(["--user", "nobody"])
        .args([
            "--health-addr".to_owned(),
            format!("127.0.0.1:{health_port}"),
            "--readiness".to_owned(),
            format!("http://127.0.0.1:{app_port}/healthz"),
            "--readiness-period".to_owned(),
            "1s".to_owned(),
        ])
        .args(pyinit_args.iter().copied());
    let bundle = match server {
        Server::Gunicorn => bundle.gunicorn_example(app_port),
        Server::Uvicorn => bundle.uvicorn_example(app_port),
    };
    Pod {
        container: bundle.start(),
        app_port,
        health_port,
    }
}

/// Which pods the balancer sends new connections to, as the changes the controller published,
/// each taking effect `PROPAGATION_DELAY` after it was made.
#[derive(Debug, Default)]
struct Balancer {
    /// (when it takes effect, pod index, in the balancer afterwards)
    changes: Vec<(Instant, usize, bool)>,
}

impl Balancer {
    fn publish(&mut self, pod: usize, present: bool) {
        self.changes
            .push((Instant::now() + PROPAGATION_DELAY, pod, present));
    }

    /// The pods in the balancer at `now`, in index order.
    fn endpoints_at(&self, now: Instant) -> Vec<usize> {
        let mut present = Vec::new();
        for &(_, pod, added) in self.changes.iter().filter(|(at, ..)| *at <= now) {
            present.retain(|existing| *existing != pod);
            if added {
                present.push(pod);
            }
        }
        present.sort_unstable();
        present
    }

    /// When the last removal of `pod` took effect, if it has.
    fn removed_at(&self, pod: usize, now: Instant) -> Option<Instant> {
        self.changes
            .iter()
            .rev()
            .find(|(at, index, added)| *index == pod && !added && *at <= now)
            .map(|(at, ..)| *at)
    }
}

type SharedBalancer = Arc<Mutex<Balancer>>;

/// The endpoints controller for one pod: probes `/readyz` every period (start to start, as the
/// kubelet does) with Kubernetes' rules (readiness starts false; one success makes it ready,
/// FAILURE_THRESHOLD failures in a row make it unready) and publishes each change.
fn probe_readiness(
    pod: usize,
    health_port: u16,
    balancer: SharedBalancer,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut ready = false;
        let mut failures = 0;
        let mut next_probe = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let passed = matches!(
                http_get(health_port, "/readyz", PROBE_TIMEOUT),
                Ok((200..=399, _))
            );
            failures = if passed { 0 } else { failures + 1 };
            if passed && !ready {
                ready = true;
                balancer.lock().unwrap().publish(pod, true);
            } else if ready && failures >= FAILURE_THRESHOLD {
                ready = false;
                balancer.lock().unwrap().publish(pod, false);
            }
            // The probe's schedule, not a wait for a condition.
            next_probe += PROBE_PERIOD;
            thread::sleep(next_probe.saturating_duration_since(Instant::now()));
        }
    })
}

/// One user request: when it was sent, to which pod (None: the balancer had none) and what came
/// back.
#[derive(Debug, Clone)]
struct Request {
    sent: Instant,
    pod: Option<usize>,
    answer: Result<(u16, String), String>,
}

impl Request {
    /// A 200 with the whole body the example apps send for `/`.
    fn succeeded(&self) -> bool {
        matches!(&self.answer, Ok((200, body)) if body.starts_with("hello from ") && body.ends_with('\n'))
    }
}

type Requests = Arc<Mutex<Vec<Request>>>;

/// Sends `GET /` over a new connection every 1/REQUESTS_PER_SECOND, each to the next pod the
/// balancer has (round robin), from a thread of its own so that a slow answer delays no other.
fn send_load(
    app_ports: Vec<u16>,
    balancer: SharedBalancer,
    requests: Requests,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let start = Instant::now();
        let interval = Duration::from_secs(1) / REQUESTS_PER_SECOND;
        let mut senders = Vec::new();
        let mut turn = 0usize;
        for number in 0u32.. {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            // The load's pace, not a wait for a condition.
            thread::sleep((start + interval * number).saturating_duration_since(Instant::now()));
            let endpoints = balancer.lock().unwrap().endpoints_at(Instant::now());
            turn = turn.wrapping_add(1);
            let pod = (!endpoints.is_empty()).then(|| endpoints[turn % endpoints.len()]);
            let port = pod.map(|index| app_ports[index]);
            let requests = Arc::clone(&requests);
            senders.push(thread::spawn(move || {
                let sent = Instant::now();
                let answer = match port {
                    Some(port) => http_get(port, "/", REQUEST_TIMEOUT),
                    None => Err("the balancer had no endpoint".to_owned()),
                };
                requests.lock().unwrap().push(Request { sent, pod, answer });
            }));
        }
        for sender in senders {
            sender.join().expect("a request's thread");
        }
    })
}

/// Pod 1 is the one deleted; pod 0 stays.
const STAYING: usize = 0;
const LEAVING: usize = 1;

/// What the users and the kubelet saw of one restart.
#[derive(Debug)]
struct Restart {
    requests: Vec<Request>,
    /// When `runc kill TERM` returned: the SIGTERM was out.
    term_sent: Instant,
    exited: Instant,
    exit_code: i32,
    left_balancer: Instant,
    stderr: String,
}

impl Restart {
    fn failures(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|request| !request.succeeded())
            .map(|request| self.describe(request))
            .collect()
    }

    fn describe(&self, request: &Request) -> String {
        let offset = request
            .sent
            .checked_duration_since(self.term_sent)
            .map_or_else(
                || format!("-{:?}", self.term_sent - request.sent),
                |after| format!("+{after:?}"),
            );
        format!(
            "sent {offset} after SIGTERM to pod {:?}: {:?}",
            request.pod, request.answer
        )
    }

    /// Requests sent after the SIGTERM that the leaving pod answered.
    fn served_by_leaving_pod_after_term(&self) -> usize {
        self.requests
            .iter()
            .filter(|request| {
                request.pod == Some(LEAVING) && request.sent > self.term_sent && request.succeeded()
            })
            .count()
    }
}

/// Starts two pods, puts both in the balancer, runs the load, deletes pod 1 once it has served
/// requests, and keeps the load going until the pod has exited, has left the balancer, and the
/// staying pod has answered requests sent after both.
fn restart_under_load(server: Server, pyinit_args: &[&str]) -> Restart {
    let pods = [start_pod(server, &[]), start_pod(server, pyinit_args)];
    let balancer = SharedBalancer::default();
    let requests = Requests::default();
    let stop_probes = Arc::new(AtomicBool::new(false));
    let stop_load = Arc::new(AtomicBool::new(false));
    let probers: Vec<JoinHandle<()>> = pods
        .iter()
        .enumerate()
        .map(|(index, pod)| {
            probe_readiness(
                index,
                pod.health_port,
                Arc::clone(&balancer),
                Arc::clone(&stop_probes),
            )
        })
        .collect();
    poll_until(PATIENCE * 2, "both pods to be in the balancer", || {
        balancer.lock().unwrap().endpoints_at(Instant::now()) == [STAYING, LEAVING]
    });
    let load = send_load(
        pods.iter().map(|pod| pod.app_port).collect(),
        Arc::clone(&balancer),
        Arc::clone(&requests),
        Arc::clone(&stop_load),
    );
    let served_by = |pod: usize, after: Instant| {
        requests
            .lock()
            .unwrap()
            .iter()
            .filter(|request| {
                request.pod == Some(pod) && request.sent > after && request.succeeded()
            })
            .count()
    };
    let load_started = Instant::now();
    poll_until(
        PATIENCE,
        "the pod to be deleted to serve 10 requests",
        || served_by(LEAVING, load_started) >= 10,
    );

    let [staying, mut leaving] = pods;
    leaving.container.kill("TERM");
    let term_sent = Instant::now();
    // pyinit's drain deadline is 25 s after the SIGTERM; the kubelet would SIGKILL at 30 s.
    let exit_code = leaving.container.wait_exit(Duration::from_secs(40));
    let exited = Instant::now();
    let mut left_balancer = None;
    poll_until(PATIENCE, "the deleted pod to leave the balancer", || {
        left_balancer = balancer.lock().unwrap().removed_at(LEAVING, Instant::now());
        left_balancer.is_some()
    });
    let left_balancer = left_balancer.expect("polled until it was set");
    let last_change = left_balancer.max(exited);
    poll_until(
        PATIENCE,
        "the staying pod to serve 10 requests sent after the deleted pod was gone",
        || served_by(STAYING, last_change) >= 10,
    );
    stop_load.store(true, Ordering::SeqCst);
    load.join().expect("the load's thread");
    stop_probes.store(true, Ordering::SeqCst);
    for prober in probers {
        prober.join().expect("a prober's thread");
    }
    drop(staying);
    let requests = requests.lock().unwrap().clone();
    Restart {
        requests,
        term_sent,
        exited,
        exit_code,
        left_balancer,
        stderr: leaving.container.stderr.joined(),
    }
}

/// No user saw a failure, although the balancer kept sending the deleted pod requests after its
/// SIGTERM: pyinit kept the app serving until the balancer had followed its readiness.
fn assert_no_request_lost(restart: &Restart, expected_exit_code: i32) {
    let failures = restart.failures();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed:\n{}\ndeleted pod's stderr:\n{}",
        failures.len(),
        restart.requests.len(),
        failures.join("\n"),
        restart.stderr
    );
    assert!(
        restart.served_by_leaving_pod_after_term() >= 1,
        "the deleted pod served no request sent after its SIGTERM: the restart tested nothing"
    );
    assert!(
        restart.left_balancer < restart.exited,
        "the pod left the balancer {:?} after it exited",
        restart.left_balancer - restart.exited
    );
    assert_eq!(
        restart.exit_code, expected_exit_code,
        "stderr:\n{}",
        restart.stderr
    );
    assert!(
        !restart.stderr.contains("did not drain within the deadline"),
        "pyinit had to kill the app:\n{}",
        restart.stderr
    );
}

#[test]
fn a_rolling_restart_of_gunicorn_under_load_loses_no_request() {
    let restart = restart_under_load(Server::Gunicorn, &[]);
    assert_no_request_lost(&restart, 0);
}

#[test]
fn a_rolling_restart_of_uvicorn_under_load_loses_no_request() {
    // uvicorn re-raises SIGTERM after its clean shutdown, which its profile counts as clean.
    let restart = restart_under_load(Server::Uvicorn, &[]);
    assert_no_request_lost(&restart, 0);
}

/// The control: the same restart with the app stopped at the SIGTERM (no pre-stop delay) loses
/// the requests the balancer still sends the pod, so the test above would see a loss.
#[test]
fn without_the_pre_stop_delay_the_same_restart_loses_requests() {
    let restart = restart_under_load(Server::Gunicorn, &["--pre-stop-delay", "0s"]);
    let failures = restart.failures();
    assert!(
        !failures.is_empty(),
        "no request failed although gunicorn closed its listener at the SIGTERM\nstderr:\n{}",
        restart.stderr
    );
    let elsewhere: Vec<String> = restart
        .requests
        .iter()
        .filter(|request| !request.succeeded() && request.pod != Some(LEAVING))
        .map(|request| restart.describe(request))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests failed that did not go to the deleted pod:\n{}",
        elsewhere.join("\n")
    );
    assert_eq!(restart.exit_code, 0, "stderr:\n{}", restart.stderr);
}
