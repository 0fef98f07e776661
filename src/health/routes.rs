//! The health routes as one pure function: (method, path, query, `Status`, now) → response.
//!
//! `respond` never awaits and never fails: it reads the cached `Status` and builds the answer
//! with `Response::new` and `status_mut()`. `may_hold` says which of its answers may wait for
//! readiness before the app has first been ready (the waiting is `hold.rs`'s). The answers follow the Kubernetes API server's
//! `/livez` and `/readyz` format; the route list with its status codes is in `health/mod.rs`.

use std::fmt::Write as _;
use std::time::Instant;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::metrics::render_metrics;
use crate::status::{Check, Phase, Status};

pub type Body = Full<Bytes>;

const TEXT: &str = "text/plain; charset=utf-8";
/// Prometheus' text exposition format, version 0.0.4.
const METRICS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which list of checks an endpoint answers with, and the name its last line uses.
#[derive(Clone, Copy)]
enum Endpoint {
    Livez,
    Healthz,
    Readyz,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Livez => "livez",
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
        }
    }

    fn checks(self, status: &Status) -> &[Check] {
        match self {
            Endpoint::Livez | Endpoint::Healthz => status.checks.liveness(),
            Endpoint::Readyz => status.checks.readiness(),
        }
    }
}

/// The answer to one request.
pub fn respond(
    method: &Method,
    path: &str,
    query: Option<&str>,
    status: &Status,
    now: Instant,
) -> Response<Body> {
    let (base, check_name) = match path.strip_prefix('/').and_then(|rest| rest.split_once('/')) {
        Some((base, check)) => (base, Some(check)),
        None => (path.trim_start_matches('/'), None),
    };
    let endpoint = match base {
        "livez" => Some(Endpoint::Livez),
        "healthz" => Some(Endpoint::Healthz),
        "readyz" => Some(Endpoint::Readyz),
        _ => None,
    };
    let is_metrics = path == "/metrics";
    if endpoint.is_none() && !is_metrics {
        return text(StatusCode::NOT_FOUND, format!("not found: {path}\n"));
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".to_owned(),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let Some(endpoint) = endpoint else {
        let mut response = Response::new(Body::from(render_metrics(status)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(METRICS_TEXT));
        return response;
    };
    let checks = endpoint.checks(status);
    match check_name {
        Some(name) => one_check(checks, name, now),
        None => check_list(endpoint, checks, &Query::parse(query), now),
    }
}

/// Whether an answer of `code` to `path` may wait for readiness (`hold.rs`): a 503 of `/readyz`
/// or `/readyz/<check>`, while the app runs (or a sidecar probes) and has never been ready. Never
/// while draining or once the app is gone, never after the first time `/readyz` passed, and never
/// for `/livez`, `/healthz` or `/metrics`.
pub fn may_hold(path: &str, code: StatusCode, status: &Status) -> bool {
    let readyz = path == "/readyz" || path.starts_with("/readyz/");
    readyz
        && code == StatusCode::SERVICE_UNAVAILABLE
        && status.phase == Phase::Running
        && !status.draining
        && !status.has_been_ready
}

/// `?verbose` and `?exclude=NAME` (repeatable); other parameters are ignored.
struct Query<'a> {
    verbose: bool,
    excluded: Vec<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(query: Option<&'a str>) -> Self {
        let mut parsed = Query {
            verbose: false,
            excluded: Vec::new(),
        };
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "verbose" => parsed.verbose = true,
                "exclude" if !value.is_empty() => parsed.excluded.push(value),
                _ => {}
            }
        }
        parsed
    }
}

fn check_list(
    endpoint: Endpoint,
    checks: &[Check],
    query: &Query<'_>,
    now: Instant,
) -> Response<Body> {
    let (included, excluded): (Vec<&Check>, Vec<&Check>) = checks
        .iter()
        .partition(|check| !query.excluded.contains(&check.name));
    let passed = included.iter().all(|check| check.passed);
    if passed && !query.verbose {
        return text(StatusCode::OK, "ok".to_owned());
    }
    let mut body = String::new();
    for check in &included {
        if check.passed {
            let _ = writeln!(body, "[+]{} ok", check.name);
        } else if query.verbose {
            let _ = writeln!(
                body,
                "[-]{} failed: {}",
                check.name,
                reason_with_age(check, now)
            );
        } else {
            // As the API server does: the reasons are shown with ?verbose only.
            let _ = writeln!(body, "[-]{} failed: reason withheld", check.name);
        }
    }
    for check in &excluded {
        let _ = writeln!(body, "[+]{} excluded: ok", check.name);
    }
    let unmatched: Vec<&str> = query
        .excluded
        .iter()
        .copied()
        .filter(|name| !excluded.iter().any(|check| check.name == *name))
        .collect();
    if !unmatched.is_empty() {
        let _ = writeln!(
            body,
            "warn: some health checks cannot be excluded: no matches for {}",
            unmatched
                .iter()
                .map(|name| format!("{:?}", sanitize(name)))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if passed {
        let _ = writeln!(body, "{} check passed", endpoint.name());
        text(StatusCode::OK, body)
    } else {
        let _ = writeln!(body, "{} check failed", endpoint.name());
        text(StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

fn one_check(checks: &[Check], name: &str, now: Instant) -> Response<Body> {
    match checks.iter().find(|check| check.name == name) {
        Some(check) if check.passed => text(StatusCode::OK, "ok".to_owned()),
        Some(check) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "[-]{} failed: {}\n",
                check.name,
                reason_with_age(check, now)
            ),
        ),
        None => text(
            StatusCode::NOT_FOUND,
            format!("no such check: {}\n", sanitize(name)),
        ),
    }
}

/// `connection refused (last probe 1.2s ago)`; one line, whatever the probe said.
fn reason_with_age(check: &Check, now: Instant) -> String {
    let reason = sanitize(&check.reason);
    match check.last_at {
        Some(at) => {
            let age = now.saturating_duration_since(at);
            format!("{reason} (last probe {:.1}s ago)", age.as_secs_f64())
        }
        None => reason,
    }
}

/// Keeps an answer one line per check: control characters become spaces.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn text(code: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a fake clock starts at some instant; which one does not matter"
)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;
    use crate::probe::spec::{ProbeConfig, ProbeKind, ProbeTarget, ProbeTiming};
    use crate::probe::threshold::{Outcome, ProbeReport, Probes};
    use crate::signals::spec::Signal;
    use crate::status::{AppState, Checks};

    fn body_of(response: Response<Body>) -> String {
        let collected = futures_executor_block_on(response.into_body().collect());
        String::from_utf8(collected.unwrap().to_bytes().to_vec()).unwrap()
    }

    /// A `Full` body is ready at once: one poll with a no-op waker collects it.
    fn futures_executor_block_on<F: std::future::Future>(future: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("a Full body is always ready"),
        }
    }

    fn status_with_readiness() -> (Status, Instant) {
        let probes = Probes::new(&[ProbeConfig {
            kind: ProbeKind::Readiness,
            target: ProbeTarget::Tcp {
                addr: "127.0.0.1:8000".parse().unwrap(),
            },
            timing: ProbeTiming::KUBERNETES_DEFAULT,
        }]);
        let mut status = Status {
            app: AppState::Running { pid: 42 },
            probes,
            ..Status::default()
        };
        let began = Instant::now();
        status.probes.record(&ProbeReport {
            kind: ProbeKind::Readiness,
            outcome: Outcome::Failure,
            message: "connection refused".to_owned(),
            began,
            duration: Duration::from_millis(200),
            failure_counts: true,
        });
        status.checks = Checks::new(status.app, status.shutdown.drain_signal, &status.probes);
        (status, began + Duration::from_millis(1400))
    }

    fn get(path: &str, query: Option<&str>, status: &Status, now: Instant) -> (StatusCode, String) {
        let response = respond(&Method::GET, path, query, status, now);
        (response.status(), body_of(response))
    }

    #[test]
    fn livez_passes_while_the_app_runs() {
        let (status, now) = status_with_readiness();
        assert_eq!(
            get("/livez", None, &status, now),
            (StatusCode::OK, "ok".to_owned())
        );
        assert_eq!(
            get("/healthz", None, &status, now),
            (StatusCode::OK, "ok".to_owned())
        );
    }

    #[test]
    fn readyz_failure_lists_checks_and_withholds_reasons() {
        let (status, now) = status_with_readiness();
        let (code, body) = get("/readyz", None, &status, now);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "[+]app-running ok\n[-]readiness failed: reason withheld\n[+]shutdown ok\nreadyz check failed\n"
        );
    }

    #[test]
    fn verbose_shows_the_error_and_its_age() {
        let (status, now) = status_with_readiness();
        let (code, body) = get("/readyz", Some("verbose"), &status, now);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("[-]readiness failed: connection refused (last probe 1.2s ago)\n"),
            "{body}"
        );
        let (code, body) = get("/livez", Some("verbose=1"), &status, now);
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body, "[+]app-running ok\nlivez check passed\n");
    }

    #[test]
    fn exclude_leaves_a_check_out() {
        let (status, now) = status_with_readiness();
        let (code, body) = get("/readyz", Some("exclude=readiness"), &status, now);
        assert_eq!((code, body.as_str()), (StatusCode::OK, "ok"));
        let (code, body) = get(
            "/readyz",
            Some("verbose&exclude=readiness&exclude=nope"),
            &status,
            now,
        );
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("[+]readiness excluded: ok\n"), "{body}");
        assert!(body.contains("no matches for \"nope\""), "{body}");
    }

    #[test]
    fn single_checks() {
        let (status, now) = status_with_readiness();
        assert_eq!(
            get("/readyz/app-running", None, &status, now),
            (StatusCode::OK, "ok".to_owned())
        );
        let (code, body) = get("/readyz/readiness", None, &status, now);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with("[-]readiness failed: connection refused"),
            "{body}"
        );
        assert_eq!(
            get("/livez/readiness", None, &status, now).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(get("/readyz/", None, &status, now).0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn unknown_paths_and_methods() {
        let (status, now) = status_with_readiness();
        assert_eq!(get("/", None, &status, now).0, StatusCode::NOT_FOUND);
        assert_eq!(get("/readyzz", None, &status, now).0, StatusCode::NOT_FOUND);
        let response = respond(&Method::POST, "/readyz", None, &status, now);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(
            respond(&Method::DELETE, "/nope", None, &status, now).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&Method::HEAD, "/readyz", None, &status, now).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn draining_fails_readiness_but_not_liveness() {
        let (mut status, now) = status_with_readiness();
        status.draining = true;
        status.shutdown.drain_signal = Some(Signal::SIGTERM);
        status.checks = Checks::new(status.app, status.shutdown.drain_signal, &status.probes);
        let (code, body) = get("/readyz", Some("verbose&exclude=readiness"), &status, now);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("[-]shutdown failed: draining after SIGTERM"),
            "{body}"
        );
        assert_eq!(get("/livez", None, &status, now).0, StatusCode::OK);
    }

    #[test]
    fn metrics_answer_in_prometheus_text() {
        let (status, now) = status_with_readiness();
        let response = respond(&Method::GET, "/metrics", None, &status, now);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], METRICS_TEXT);
        assert!(body_of(response).contains("pyinit_ready 0\n"));
    }
}
