//! What a drill is, as configured: how it knows the app is ready, the requests it keeps in
//! flight, and the shutdown it rehearses; with the parsers of the drill's own flag values.
//!
//! Pure: `config` checks the drill's flags against the supervisor's and builds a
//! [`DrillConfig`]; `mod.rs` runs it.

use std::time::Duration;

use core::net::SocketAddr;

use crate::probe::spec::{ProbeTarget, parse_probe};
use crate::signals::spec::{ForwardTarget, Signal};
use crate::supervisor::policy::DeadlineDump;

/// `pyinit drill`'s settings, checked against the supervisor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillConfig {
    pub readiness: DrillReadiness,
    pub ready_timeout: Duration,
    pub requests: Vec<DrillRequest>,
    /// Requests in flight at once, per URL.
    pub concurrency: usize,
    pub json: bool,
    /// The shutdown being rehearsed, as the supervisor will run it; the drill sends pyinit the
    /// stop signal, as the container runtime does.
    pub stop_signal: Signal,
    pub grace_period: Duration,
    /// The preStop hook the drill plays before the stop signal: the drain has the grace period
    /// less this.
    pub pre_stop_hook: Duration,
    pub drain_timeout: Duration,
    pub pre_stop_delay: Duration,
    /// The tracebacks asked for at the deadline, if any: the report says why none came.
    pub deadline_dump: Option<DeadlineDump>,
    /// Where the app's signals go: which of its processes get the stop signal from pyinit.
    pub forward_to: ForwardTarget,
    /// The server whose profile `--server none` turned off, as recognised from the command: the
    /// report names it as the fix for a stop signal the app does not handle.
    pub server_turned_off: Option<&'static str>,
}

/// How the drill knows the app is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillReadiness {
    /// The readiness probe passed (pyinit's `/readyz` is 200).
    Probe,
    /// This long after the app started.
    After(Duration),
}

/// One URL the drill keeps requests in flight on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRequest {
    pub addr: SocketAddr,
    /// For the `Host:` header, as written in the URL.
    pub host: String,
    pub path: String,
}

/// Parses `--drill-request`: an `http://HOST:PORT/PATH` URL, read as an http probe's target is.
pub fn parse_drill_url(text: &str) -> Result<DrillRequest, String> {
    let expected = || "expected a URL such as http://127.0.0.1:8000/slow?s=3".to_owned();
    if !text.trim().starts_with("http://") {
        return Err(expected());
    }
    match parse_probe(text)? {
        ProbeTarget::Http { addr, host, path } => Ok(DrillRequest { addr, host, path }),
        _ => Err(expected()),
    }
}

/// Parses `--drill-concurrency`: how many requests per URL, from 1 to 4294967295.
pub fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.trim().parse::<u32>().map(usize::try_from) {
        Ok(Ok(requests)) if requests >= 1 => Ok(requests),
        _ => Err("expected a number of requests, at least 1".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_urls() {
        assert_eq!(
            parse_drill_url("http://localhost:8000/slow?s=3"),
            Ok(DrillRequest {
                addr: "127.0.0.1:8000".parse().unwrap(),
                host: "localhost".to_owned(),
                path: "/slow?s=3".to_owned(),
            })
        );
        for text in [
            "tcp://127.0.0.1:1",
            "exec:true",
            "https://127.0.0.1/",
            "/slow",
        ] {
            let error = parse_drill_url(text).unwrap_err();
            assert!(error.contains("http://"), "{text}: {error}");
        }
    }

    #[test]
    fn concurrency() {
        assert_eq!(parse_concurrency("2"), Ok(2));
        assert_eq!(parse_concurrency(" 16 "), Ok(16));
        for text in ["0", "-1", "x", "", "1.5", "4294967296"] {
            assert!(parse_concurrency(text).is_err(), "{text}");
        }
    }
}
