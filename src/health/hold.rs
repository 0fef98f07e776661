//! The first-ready hold: until the app has first been ready, a `/readyz` (or `/readyz/<check>`)
//! that would answer 503 waits for readiness, up to [`FIRST_READY_HOLD`], and answers 200 the
//! moment it turns true, or the 503 it has when the hold ends.
//!
//! Why: gunicorn binds its port before its worker imports the app, so a kubelet probe sent
//! straight to the app waits in the listen backlog and passes the moment the app answers, if
//! that is within the probe's timeout. An immediate 503 from `/readyz` would leave the kubelet
//! to its next period tick instead, a period later. Held, the kubelet's probe of `/readyz` is
//! answered as its probe of the app would have been.
//!
//! What a held request waits on is pyinit's own published state, the `watch` channel of
//! `Status`: never the app, never a probe. It is a parked future on the runtime's one thread,
//! so it delays no signal; its connection counts toward the connection cap like any other, so a
//! flood can hold no more than the cap. Which answers may wait is `routes::may_hold`: never
//! while draining, so a request held when the drain begins answers 503 at once, and never after
//! the first time `/readyz` passed.

use std::time::Duration;

use hyper::{Method, Response, Uri};
use tokio::sync::watch;

use super::routes::{self, Body};
use crate::clock::now;
use crate::status::Status;

/// The longest a `/readyz` waits for readiness before the app has first been ready: under the
/// shortest timeout a kubelet can give a probe, so that the kubelet always gets the answer (a
/// 503 it records as `HTTP probe failed with statuscode: 503`) and never a timeout of its own.
/// A probe's `timeoutSeconds` is defaulted from 0 to 1 (kubernetes/kubernetes
/// `pkg/apis/core/v1/defaults.go`, `SetDefaults_Probe`) and validated non-negative
/// (`pkg/apis/core/validation/validation.go`, `validateProbe`); the API documents it as
/// "Defaults to 1 second. Minimum value is 1." The kubelet's httpGet probe gives that timeout to
/// Go's `http.Client` (`pkg/probe/http/http.go`, `Probe`), where it covers the connection, the
/// request and the answer: the 100 ms left are for those and for the network between the node
/// and the pod.
pub const FIRST_READY_HOLD: Duration = Duration::from_millis(900);

/// The answer to one request, as `routes::respond` gives it from the latest `Status`; an answer
/// that `routes::may_hold` lets wait is given again at each change of `Status`, until it may
/// wait no more or `hold` has passed since the request arrived.
pub async fn answer(
    method: &Method,
    uri: &Uri,
    status_rx: &mut watch::Receiver<Status>,
    hold: Duration,
) -> Response<Body> {
    let hold_ends = tokio::time::Instant::from_std(now() + hold);
    loop {
        let (response, may_hold) = answer_now(method, uri, status_rx);
        if !may_hold {
            return response;
        }
        match tokio::time::timeout_at(hold_ends, status_rx.changed()).await {
            Ok(Ok(())) => {}
            // The hold is over, or pyinit is exiting (the supervisor's sender is gone): the
            // answer as of now, with the ages in `?verbose` as of now.
            Ok(Err(_)) | Err(_) => return answer_now(method, uri, status_rx).0,
        }
    }
}

/// The answer from the latest `Status`, and whether it may wait for a change.
fn answer_now(
    method: &Method,
    uri: &Uri,
    status_rx: &mut watch::Receiver<Status>,
) -> (Response<Body>, bool) {
    // Marks this version seen, so that `changed` waits for the next one.
    let status = status_rx.borrow_and_update();
    let response = routes::respond(method, uri.path(), uri.query(), &status, now());
    let may_hold = routes::may_hold(uri.path(), response.status(), &status);
    (response, may_hold)
}

// The hold must end before the shortest timeout a kubelet can give its probe.
const _: () = assert!(FIRST_READY_HOLD.as_millis() < 1000);

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use hyper::StatusCode;

    use super::*;
    use crate::probe::spec::{ProbeConfig, ProbeKind, ProbeTarget, ProbeTiming};
    use crate::probe::threshold::{Outcome, ProbeReport, Probes};
    use crate::signals::spec::Signal;
    use crate::status::{AppState, Checks, Phase};

    const HOLD: Duration = FIRST_READY_HOLD;

    fn config(kind: ProbeKind) -> ProbeConfig {
        ProbeConfig {
            kind,
            target: ProbeTarget::Tcp {
                addr: "127.0.0.1:8000".parse().unwrap(),
            },
            timing: ProbeTiming::KUBERNETES_DEFAULT,
        }
    }

    fn report(kind: ProbeKind, outcome: Outcome) -> ProbeReport {
        ProbeReport {
            kind,
            outcome,
            message: "connection refused".to_owned(),
            began: now(),
            duration: Duration::from_millis(1),
            failure_counts: true,
        }
    }

    /// The status after one more probe `outcome`, as the supervisor would publish it.
    fn after(status: &Status, kind: ProbeKind, outcome: Outcome) -> Status {
        let mut next = status.clone();
        next.probes.record(&report(kind, outcome));
        refresh(next)
    }

    fn refresh(mut status: Status) -> Status {
        status.checks = Checks::new(status.app, status.shutdown.drain_signal, &status.probes);
        status.has_been_ready = status.has_been_ready || status.checks.ready();
        status
    }

    /// An app that runs, with a readiness probe that has not passed yet.
    fn starting() -> Status {
        let status = Status {
            app: AppState::Running { pid: 42 },
            probes: Probes::new(&[config(ProbeKind::Readiness)]),
            ..Status::default()
        };
        refresh(status)
    }

    fn draining(status: &Status) -> Status {
        let mut next = status.clone();
        next.phase = Phase::Draining;
        next.draining = true;
        next.shutdown.drain_signal = Some(Signal::SIGTERM);
        refresh(next)
    }

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    /// Asks `target` with `method` in a task of its own; returns its answer's code and how long
    /// after the request it came.
    fn ask(
        method: Method,
        target: &str,
        status_rx: &watch::Receiver<Status>,
    ) -> tokio::task::JoinHandle<(StatusCode, Duration)> {
        let uri = uri(target);
        let mut status_rx = status_rx.clone();
        tokio::spawn(async move {
            let asked = now();
            let response = answer(&method, &uri, &mut status_rx, HOLD).await;
            (response.status(), now() - asked)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_app_is_answered_at_once() {
        let ready = after(&starting(), ProbeKind::Readiness, Outcome::Success);
        let (_status_tx, status_rx) = watch::channel(ready);
        for target in ["/readyz", "/readyz/readiness", "/livez", "/metrics"] {
            let answered = ask(Method::GET, target, &status_rx).await.unwrap();
            assert_eq!(answered, (StatusCode::OK, Duration::ZERO), "{target}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_readyz_answers_200_the_moment_readiness_turns_true() {
        let status = starting();
        let (status_tx, status_rx) = watch::channel(status.clone());
        let held = [
            ask(Method::GET, "/readyz", &status_rx),
            ask(Method::HEAD, "/readyz", &status_rx),
            ask(Method::GET, "/readyz?verbose", &status_rx),
            ask(Method::GET, "/readyz/readiness", &status_rx),
        ];
        // Another failure changes `Status` but not the answer: the requests wait on.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = after(&status, ProbeKind::Readiness, Outcome::Failure);
        status_tx.send(status.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        status_tx
            .send(after(&status, ProbeKind::Readiness, Outcome::Success))
            .unwrap();
        for request in held {
            assert_eq!(
                request.await.unwrap(),
                (StatusCode::OK, Duration::from_millis(300))
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_ends_with_the_503_it_had() {
        let refused = after(&starting(), ProbeKind::Readiness, Outcome::Failure);
        let (_status_tx, status_rx) = watch::channel(refused);
        let answered = ask(Method::GET, "/readyz/readiness", &status_rx).await;
        assert_eq!(answered.unwrap(), (StatusCode::SERVICE_UNAVAILABLE, HOLD));
        // The answer is made at the hold's end: the last probe's age counts the hold.
        let mut status_rx = status_rx.clone();
        let asked = now();
        let response = answer(&Method::GET, &uri("/readyz?verbose"), &mut status_rx, HOLD).await;
        assert_eq!(now() - asked, HOLD);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.contains("[-]readiness failed: connection refused (last probe 1.8s ago)\n"),
            "{body}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_hold_once_the_app_has_been_ready() {
        let ready = after(&starting(), ProbeKind::Readiness, Outcome::Success);
        let mut failing = ready;
        for _ in 0..3 {
            failing = after(&failing, ProbeKind::Readiness, Outcome::Failure);
        }
        assert!(!failing.checks.ready() && failing.has_been_ready);
        let (_status_tx, status_rx) = watch::channel(failing);
        let answered = ask(Method::GET, "/readyz", &status_rx).await.unwrap();
        assert_eq!(answered, (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn no_hold_while_draining_and_a_drain_ends_a_hold_at_once() {
        let status = starting();
        let (status_tx, status_rx) = watch::channel(draining(&status));
        let answered = ask(Method::GET, "/readyz", &status_rx).await.unwrap();
        assert_eq!(answered, (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO));

        status_tx.send(status.clone()).unwrap();
        let held = ask(Method::GET, "/readyz", &status_rx);
        tokio::time::sleep(Duration::from_millis(200)).await;
        status_tx.send(draining(&status)).unwrap();
        assert_eq!(
            held.await.unwrap(),
            (StatusCode::SERVICE_UNAVAILABLE, Duration::from_millis(200))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_hold_once_the_app_has_exited_or_pyinit_exits() {
        let status = starting();
        let mut exited = status.clone();
        exited.phase = Phase::Stopping;
        exited.app = AppState::Exited { exit_code: Some(3) };
        let (status_tx, status_rx) = watch::channel(refresh(exited));
        let answered = ask(Method::GET, "/readyz", &status_rx).await.unwrap();
        assert_eq!(answered, (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO));

        status_tx.send(status).unwrap();
        let held = ask(Method::GET, "/readyz", &status_rx);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(status_tx);
        assert_eq!(
            held.await.unwrap(),
            (StatusCode::SERVICE_UNAVAILABLE, Duration::from_millis(100))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn livez_metrics_and_other_answers_never_wait() {
        // A startup probe at its failure threshold: /livez fails, and /readyz with it.
        let mut status = Status {
            app: AppState::Running { pid: 42 },
            probes: Probes::new(&[config(ProbeKind::Startup), config(ProbeKind::Readiness)]),
            ..Status::default()
        };
        for _ in 0..3 {
            status = after(&status, ProbeKind::Startup, Outcome::Failure);
        }
        let (_status_tx, status_rx) = watch::channel(status);
        for (method, target, code) in [
            (Method::GET, "/livez", StatusCode::SERVICE_UNAVAILABLE),
            (Method::HEAD, "/healthz", StatusCode::SERVICE_UNAVAILABLE),
            (
                Method::GET,
                "/livez/startup",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (Method::GET, "/metrics", StatusCode::OK),
            (Method::GET, "/readyz/nope", StatusCode::NOT_FOUND),
            (Method::POST, "/readyz", StatusCode::METHOD_NOT_ALLOWED),
            (Method::GET, "/readyzz", StatusCode::NOT_FOUND),
        ] {
            let answered = ask(method, target, &status_rx).await.unwrap();
            assert_eq!(answered, (code, Duration::ZERO), "{target}");
        }
        let answered = ask(Method::GET, "/readyz/startup", &status_rx).await;
        assert_eq!(answered.unwrap(), (StatusCode::SERVICE_UNAVAILABLE, HOLD));
    }
}
