//! What a probe is, as configured: its kind (startup, liveness, readiness), its target (http,
//! tcp, exec, file) and its Kubernetes timing (period, timeout, thresholds, initial delay).
//!
//! Plain data shared by `config` (which builds it), the prober tasks (which run it) and the
//! supervisor (which counts its results). No I/O: addresses are `core::net` values, already
//! resolved by the parser, so no probe ever needs DNS.

use std::ffi::OsString;
use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

// `core::net` holds the address *values* only; sockets live in the probe kinds' files.
use core::net::SocketAddr;

/// The three probes of a Kubernetes container, with their names as checks and metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];

    /// `startup`, `liveness`, `readiness`: the check name and the metrics label.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }
}

/// Kubernetes' probe timing, with its defaults in [`ProbeTiming::KUBERNETES_DEFAULT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    /// `periodSeconds`: from the start of one probe to the start of the next.
    pub period: Duration,
    /// `timeoutSeconds`: a probe that has not answered by then has failed.
    pub timeout: Duration,
    /// `successThreshold`: consecutive successes that make a failing probe pass.
    pub success_threshold: NonZeroU32,
    /// `failureThreshold`: consecutive failures that make a passing probe fail.
    pub failure_threshold: NonZeroU32,
    /// `initialDelaySeconds`: no probe runs before this much time since the start.
    pub initial_delay: Duration,
}

/// What one probe checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeTarget {
    /// GET `path` from `addr` with `Host: host`; success is a status 200-399.
    Http {
        addr: SocketAddr,
        /// The host as written in the URL (`localhost`, `127.0.0.1`, `[::1]`), for `Host:`.
        host: String,
        /// Path and query, starting with `/`.
        path: String,
    },
    /// A TCP connect to `addr`.
    Tcp { addr: SocketAddr },
    /// A command run without a shell; success is exit 0.
    Exec { argv: Vec<OsString> },
    /// A heartbeat file: it exists and, with `max_age`, was modified within it.
    File {
        path: PathBuf,
        max_age: Option<Duration>,
    },
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeTarget::Http { addr, path, .. } => write!(f, "http://{addr}{path}"),
            ProbeTarget::Tcp { addr } => write!(f, "tcp://{addr}"),
            ProbeTarget::Exec { argv } => {
                f.write_str("exec:")?;
                for (index, arg) in argv.iter().enumerate() {
                    if index > 0 {
                        f.write_str(" ")?;
                    }
                    f.write_str(&arg.to_string_lossy())?;
                }
                Ok(())
            }
            ProbeTarget::File { path, max_age } => {
                write!(f, "file://{}", path.display())?;
                match max_age {
                    Some(max_age) => write!(f, "?max-age={}ms", max_age.as_millis()),
                    None => Ok(()),
                }
            }
        }
    }
}

/// One configured probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    pub kind: ProbeKind,
    pub target: ProbeTarget,
    pub timing: ProbeTiming,
}

/// Kubernetes' defaults; the flags' defaults in `config/cli.rs` spell the same values.
#[cfg(test)]
impl ProbeTiming {
    pub const KUBERNETES_DEFAULT: ProbeTiming = ProbeTiming {
        period: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        success_threshold: NonZeroU32::MIN,
        failure_threshold: match NonZeroU32::new(3) {
            Some(three) => three,
            None => NonZeroU32::MIN,
        },
        initial_delay: Duration::ZERO,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_defaults() {
        let timing = ProbeTiming::KUBERNETES_DEFAULT;
        assert_eq!(timing.period, Duration::from_secs(10));
        assert_eq!(timing.timeout, Duration::from_secs(1));
        assert_eq!(timing.success_threshold.get(), 1);
        assert_eq!(timing.failure_threshold.get(), 3);
        assert_eq!(timing.initial_delay, Duration::ZERO);
    }

    #[test]
    fn targets_display_as_written() {
        let http = ProbeTarget::Http {
            addr: "127.0.0.1:8000".parse().unwrap(),
            host: "localhost".to_owned(),
            path: "/healthz?full=1".to_owned(),
        };
        assert_eq!(http.to_string(), "http://127.0.0.1:8000/healthz?full=1");
        let exec = ProbeTarget::Exec {
            argv: vec!["celery".into(), "inspect".into(), "ping".into()],
        };
        assert_eq!(exec.to_string(), "exec:celery inspect ping");
        let file = ProbeTarget::File {
            path: "/tmp/beat".into(),
            max_age: Some(Duration::from_secs(30)),
        };
        assert_eq!(file.to_string(), "file:///tmp/beat?max-age=30000ms");
    }
}
