//! What a probe is, as configured: its kind (startup, liveness, readiness), its target (http,
//! tcp, grpc, exec, file) and its Kubernetes timing (period, timeout, thresholds, initial delay).
//!
//! Plain data shared by `config` (which builds it), the prober tasks (which run it) and the
//! supervisor (which counts its results), and the parsers of the flags that give it: probe specs
//! (with shell-like word splitting for `exec:`) and thresholds. Each parser returns a message that
//! says what was expected; clap puts the flag and the value in front of it.
//!
//! No I/O: hosts are IP literals or `localhost`, resolved by the parser into address values, so
//! no probe ever needs DNS (tokio's resolver would start threads, and a probe must not hang on a
//! name server).

use std::ffi::OsString;
use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

// `core::net` holds the address *values* only; sockets live in the probe kinds' files.
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::units::{millis, parse_duration};

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
    /// `grpc.health.v1.Health/Check` on `addr` over plaintext HTTP/2; success is SERVING.
    Grpc {
        addr: SocketAddr,
        /// `HealthCheckRequest.service`: empty (the server's overall health) unless given, as
        /// the kubelet sends it when the probe names no service.
        service: String,
    },
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
            ProbeTarget::Grpc { addr, service } => {
                write!(f, "grpc://{addr}")?;
                match service.as_str() {
                    "" => Ok(()),
                    service => write!(f, "?service={service}"),
                }
            }
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
                    Some(max_age) => write!(f, "?max-age={}ms", millis(*max_age)),
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

/// Parses a probe threshold: a whole number of at least 1.
pub fn parse_threshold(text: &str) -> Result<NonZeroU32, String> {
    text.trim()
        .parse::<NonZeroU32>()
        .map_err(|_| "expected a whole number of at least 1".to_owned())
}

const PROBE_FORMS: &str = "expected http://HOST:PORT/PATH, tcp://HOST:PORT, \
                           grpc://HOST:PORT?service=NAME, exec:COMMAND ARGS... \
                           or file:///PATH?max-age=DURATION";

/// Parses a probe spec: `http://HOST:PORT/PATH`, `tcp://HOST:PORT`, `grpc://HOST:PORT` (with
/// `?service=NAME` optional), `exec:COMMAND ARGS...` or `file:///PATH?max-age=DURATION`.
pub fn parse_probe(text: &str) -> Result<ProbeTarget, String> {
    let trimmed = text.trim();
    if let Some(rest) = trimmed.strip_prefix("http://") {
        parse_http_probe(rest)
    } else if let Some(rest) = trimmed.strip_prefix("tcp://") {
        let (host, port) =
            split_host_port(rest).ok_or_else(|| "expected tcp://HOST:PORT".to_owned())?;
        let port =
            port.ok_or_else(|| "expected tcp://HOST:PORT (the port is missing)".to_owned())?;
        Ok(ProbeTarget::Tcp {
            addr: SocketAddr::new(resolve_host(host)?, port),
        })
    } else if let Some(rest) = trimmed.strip_prefix("grpc://") {
        parse_grpc_probe(rest)
    } else if let Some(rest) = trimmed.strip_prefix("exec:") {
        let words = split_words(rest)?;
        if words.is_empty() {
            return Err("expected exec:COMMAND ARGS... (the command is missing)".to_owned());
        }
        Ok(ProbeTarget::Exec {
            argv: words.into_iter().map(OsString::from).collect(),
        })
    } else if let Some(rest) = trimmed.strip_prefix("file://") {
        parse_file_probe(rest)
    } else if trimmed.starts_with("https://") {
        Err("https is not supported: the kubelet's own probes of the app use plain http".to_owned())
    } else if trimmed.starts_with("grpcs://") {
        Err("TLS is not supported: the kubelet's grpc probes use plaintext HTTP/2".to_owned())
    } else {
        Err(PROBE_FORMS.to_owned())
    }
}

fn parse_http_probe(rest: &str) -> Result<ProbeTarget, String> {
    let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split_at);
    let (host, port) =
        split_host_port(authority).ok_or_else(|| "expected http://HOST:PORT/PATH".to_owned())?;
    if host.is_empty() {
        return Err("expected http://HOST:PORT/PATH (the host is missing)".to_owned());
    }
    let addr = SocketAddr::new(resolve_host(host)?, port.unwrap_or(80));
    let path = match path {
        "" => "/".to_owned(),
        query if query.starts_with('?') => format!("/{query}"),
        path => path.to_owned(),
    };
    if !path.bytes().all(|byte| byte.is_ascii_graphic()) || path.contains('#') {
        return Err(format!(
            "path '{path}' must be printable ASCII without spaces or '#' (percent-encode the rest)"
        ));
    }
    Ok(ProbeTarget::Http {
        addr,
        host: host_for_header(host),
        path,
    })
}

/// `grpc://HOST:PORT` with an optional `?service=NAME`, as the kubelet's `grpc` probe has a port
/// (required) and a service (empty by default); the host is pyinit's addition, for the same
/// rules as the other kinds (the kubelet always dials the pod IP).
fn parse_grpc_probe(rest: &str) -> Result<ProbeTarget, String> {
    const FORM: &str = "expected grpc://HOST:PORT or grpc://HOST:PORT?service=NAME";
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, Some(query)),
        None => (rest, None),
    };
    if authority.contains('/') {
        return Err(format!("{FORM} (a grpc probe has no path)"));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| FORM.to_owned())?;
    if host.is_empty() {
        return Err(format!("{FORM} (the host is missing)"));
    }
    let port = port.ok_or_else(|| format!("{FORM} (the port is missing)"))?;
    let service = match query {
        None => String::new(),
        Some(query) => {
            let service = query
                .strip_prefix("service=")
                .filter(|service| !service.contains('&'))
                .ok_or_else(|| format!("unknown parameter '{query}' (expected service=NAME)"))?;
            // A gRPC service name is a dotted protobuf name; anything unprintable or a space
            // is a mistake in the flag, not a name the app registered.
            if !service.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Err(format!(
                    "service '{service}' must be printable ASCII without spaces"
                ));
            }
            service.to_owned()
        }
    };
    Ok(ProbeTarget::Grpc {
        addr: SocketAddr::new(resolve_host(host)?, port),
        service,
    })
}

/// The host as the Host header writes it: IPv6 literals go back in brackets.
fn host_for_header(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn parse_file_probe(rest: &str) -> Result<ProbeTarget, String> {
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if !path.starts_with('/') || path.len() < 2 {
        return Err("expected file:///PATH?max-age=DURATION with an absolute path".to_owned());
    }
    let max_age = match query {
        None => None,
        Some(query) => {
            let value = query.strip_prefix("max-age=").ok_or_else(|| {
                format!("unknown parameter '{query}' (expected max-age=DURATION)")
            })?;
            Some(parse_duration(value)?)
        }
    };
    Ok(ProbeTarget::File {
        path: PathBuf::from(path),
        max_age,
    })
}

/// Splits a command line into words as a POSIX shell would, without expanding anything:
/// whitespace separates words; `'...'` is literal; `"..."` is literal but for `\"`, `\\`,
/// `\$` and `` \` ``; a backslash outside quotes keeps the next character.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(inner) => word.push(inner),
                        None => return Err("unterminated ' quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped @ ('"' | '\\' | '$' | '`')) => word.push(escaped),
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err("unterminated \" quote".to_owned()),
                        },
                        Some(inner) => word.push(inner),
                        None => return Err("unterminated \" quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(escaped) => word.push(escaped),
                    None => return Err("a trailing backslash escapes nothing".to_owned()),
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Splits `host:port` or `[v6]:port`; the port is `None` when absent, an error when malformed.
pub fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

/// An IP literal, or `localhost` as 127.0.0.1; any other name is refused.
pub fn resolve_host(host: &str) -> Result<IpAddr, String> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    host.parse::<IpAddr>().map_err(|_| {
        format!(
            "host '{host}' is not an IP address or localhost (pyinit resolves no names; the app \
             in the same pod is at 127.0.0.1)"
        )
    })
}

/// Kubernetes' defaults; the flags' defaults in `config/probe_flags.rs` spell the same values.
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

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn http_probes() {
        let cases = [
            (
                "http://127.0.0.1:8000/healthz",
                "127.0.0.1:8000",
                "127.0.0.1",
                "/healthz",
            ),
            (
                "http://localhost:8000/healthz?full=1",
                "127.0.0.1:8000",
                "localhost",
                "/healthz?full=1",
            ),
            ("http://localhost:8000", "127.0.0.1:8000", "localhost", "/"),
            ("http://10.1.2.3/ping", "10.1.2.3:80", "10.1.2.3", "/ping"),
            ("http://[::1]:9000/ready", "[::1]:9000", "[::1]", "/ready"),
            (
                "http://127.0.0.1:8000?x=1",
                "127.0.0.1:8000",
                "127.0.0.1",
                "/?x=1",
            ),
        ];
        for (text, expected_addr, host, path) in cases {
            assert_eq!(
                parse_probe(text),
                Ok(ProbeTarget::Http {
                    addr: addr(expected_addr),
                    host: host.to_owned(),
                    path: path.to_owned(),
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn tcp_exec_and_file_probes() {
        assert_eq!(
            parse_probe("tcp://localhost:6379"),
            Ok(ProbeTarget::Tcp {
                addr: addr("127.0.0.1:6379")
            })
        );
        assert_eq!(
            parse_probe("exec:celery -A 'my app' inspect ping"),
            Ok(ProbeTarget::Exec {
                argv: ["celery", "-A", "my app", "inspect", "ping"]
                    .map(OsString::from)
                    .to_vec()
            })
        );
        assert_eq!(
            parse_probe("file:///tmp/heartbeat?max-age=30s"),
            Ok(ProbeTarget::File {
                path: "/tmp/heartbeat".into(),
                max_age: Some(Duration::from_secs(30)),
            })
        );
        assert_eq!(
            parse_probe("file:///tmp/ready"),
            Ok(ProbeTarget::File {
                path: "/tmp/ready".into(),
                max_age: None,
            })
        );
    }

    #[test]
    fn grpc_probes() {
        let cases = [
            ("grpc://127.0.0.1:50051", "127.0.0.1:50051", ""),
            ("grpc://localhost:50051", "127.0.0.1:50051", ""),
            ("grpc://[::1]:50051", "[::1]:50051", ""),
            ("grpc://127.0.0.1:50051?service=x", "127.0.0.1:50051", "x"),
            (
                "grpc://127.0.0.1:9090?service=helloworld.Greeter",
                "127.0.0.1:9090",
                "helloworld.Greeter",
            ),
            // An empty service is the kubelet's default: the server's overall health.
            ("grpc://127.0.0.1:50051?service=", "127.0.0.1:50051", ""),
        ];
        for (text, expected_addr, service) in cases {
            let target = parse_probe(text).unwrap();
            assert_eq!(
                target,
                ProbeTarget::Grpc {
                    addr: addr(expected_addr),
                    service: service.to_owned(),
                },
                "{text}"
            );
        }
        let named = parse_probe("grpc://localhost:50051?service=x").unwrap();
        assert_eq!(named.to_string(), "grpc://127.0.0.1:50051?service=x");
        let overall = parse_probe("grpc://[::1]:50051").unwrap();
        assert_eq!(overall.to_string(), "grpc://[::1]:50051");
    }

    #[test]
    fn probes_that_are_rejected() {
        for (text, needle) in [
            (
                "http://app.internal:8000/",
                "not an IP address or localhost",
            ),
            ("https://127.0.0.1/", "https is not supported"),
            ("http://:8000/", "host is missing"),
            ("http://127.0.0.1:99999/", "expected http://"),
            ("http://127.0.0.1:80/a b", "printable ASCII"),
            ("tcp://127.0.0.1", "port is missing"),
            ("grpc://127.0.0.1", "port is missing"),
            ("grpc://:50051", "host is missing"),
            ("grpc://127.0.0.1:50051/health", "a grpc probe has no path"),
            ("grpc://127.0.0.1:99999", "expected grpc://HOST:PORT"),
            (
                "grpc://app.internal:50051",
                "not an IP address or localhost",
            ),
            ("grpc://127.0.0.1:50051?svc=x", "unknown parameter 'svc=x'"),
            ("grpc://127.0.0.1:50051?service=a&b=c", "unknown parameter"),
            ("grpc://127.0.0.1:50051?service=a b", "printable ASCII"),
            ("grpcs://127.0.0.1:50051", "TLS is not supported"),
            ("exec:", "command is missing"),
            ("exec:echo 'oops", "unterminated"),
            ("file://relative", "absolute path"),
            ("file:///tmp/x?age=3", "unknown parameter"),
            ("file:///tmp/x?max-age=soon", "expected a duration"),
            ("ftp://x", "expected http://"),
        ] {
            let error = parse_probe(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn words_split_like_a_shell_without_expansion() {
        let cases: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("  spaced  ", &["spaced"]),
            ("'single $HOME'", &["single $HOME"]),
            (r#""double \"q\" \$x \n""#, &[r#"double "q" $x \n"#]),
            (r"back\ slash", &["back slash"]),
            ("''", &[""]),
            ("a'b'\"c\"", &["abc"]),
        ];
        for (text, expected) in cases {
            assert_eq!(split_words(text).unwrap(), expected.to_vec(), "{text}");
        }
        assert!(split_words("\"open").is_err());
        assert!(split_words("trailing\\").is_err());
    }

    #[test]
    fn thresholds() {
        assert_eq!(parse_threshold("3").map(NonZeroU32::get), Ok(3));
        for text in ["0", "-1", "x", ""] {
            assert!(parse_threshold(text).is_err(), "{text}");
        }
    }

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
