//! Where an http probe's redirect leads, and whether the probe follows it: pure decisions over
//! the URL that was asked, the answer's status and its `Location`, as the kubelet's prober makes
//! them (`http.rs` sends the requests).
//!
//! A 301, 302, 303, 307 or 308 with a non-empty `Location` is a redirect; any other answer, a
//! 3xx without a `Location` included, is judged as it is. A relative `Location` is resolved
//! against the URL that was asked (RFC 3986: `/b`, `b`, `../b`, `?q`, `//host/b`), and its
//! fragment is dropped. Then, in the kubelet's order:
//!
//! 1. A URL on another host than the probe's own is not followed: the 3xx is the answer (success,
//!    with a warning). Hosts are compared by name as written, without the port, so
//!    `localhost:8001` is the same host as `localhost:8000` while `127.0.0.1` is another one.
//! 2. After [`MAX_REQUESTS`] requests the probe fails: `stopped after 10 redirects`.
//! 3. Only plain http is followed. A redirect to https on the probe's own host fails the probe:
//!    pyinit has no TLS client, to stay small, and an app that redirects its health check to
//!    https behind a TLS-terminating proxy fails the kubelet's probe too, since it serves no TLS
//!    itself. Any other scheme fails, as in the kubelet.
//!
//! A followed URL keeps the probe's host name, so it goes to the probe's own IP address: a
//! redirect never needs DNS.

use std::fmt;
use std::fmt::Write as _;

/// Requests in one probe, the first included: the kubelet's client refuses the tenth redirect.
pub const MAX_REQUESTS: usize = 10;

/// One plain-http URL that a probe requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host[:port]` as the URL writes it: the Host header.
    pub authority: String,
    /// The host name alone, as written (an IPv6 literal in brackets): what "same host" compares.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`, ready for the request line.
    pub path: String,
}

impl HttpUrl {
    /// The probe's own URL, from its flag: `host` as written there, `port` as resolved.
    pub fn new(host: &str, port: u16, path: &str) -> Self {
        HttpUrl {
            authority: format!("{host}:{port}"),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// What the probe does after one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The answer is the probe's last: its status is the probe's outcome.
    Last,
    /// A redirect to another host, not followed: its 3xx is the outcome, with a warning. `location` is the URL
    /// it pointed to.
    NotFollowed { location: String },
    /// Request this URL next.
    Follow(HttpUrl),
    /// The probe fails here: `message` says how, without the URL, for the health port;
    /// `detail`, for the log, names the URL too.
    Fail {
        message: String,
        detail: Option<String>,
    },
}

impl Step {
    fn fail(message: String, detail: Option<String>) -> Self {
        Step::Fail { message, detail }
    }
}

/// Decides what follows an answer with `status` and `location` to a request of `asked`, the
/// `n_requests`th of a probe of `probe_host`.
pub fn next_step(
    probe_host: &str,
    asked: &HttpUrl,
    n_requests: usize,
    status: u16,
    location: Option<&str>,
) -> Step {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Step::Last;
    }
    let Some(location) = location.filter(|location| !location.is_empty()) else {
        return Step::Last;
    };
    let target = match resolve(asked, location) {
        Ok(target) => target,
        Err(reason) => {
            let detail = format!("bad redirect to {location:?}: {reason}");
            return Step::fail("bad redirect".to_owned(), Some(detail));
        }
    };
    if target.host != probe_host {
        return Step::NotFollowed {
            location: target.to_string(),
        };
    }
    if n_requests >= MAX_REQUESTS {
        return Step::fail(format!("stopped after {MAX_REQUESTS} redirects"), None);
    }
    match target.scheme.as_str() {
        "http" => Step::Follow(HttpUrl {
            authority: target.authority,
            host: target.host,
            port: target.port.unwrap_or(80),
            path: target.path,
        }),
        "https" => Step::fail(
            "redirect to https not followed: pyinit probes plain http only (no TLS client)"
                .to_owned(),
            Some(format!("redirect to {target} not followed")),
        ),
        other => Step::fail(
            format!("redirect to an unsupported protocol scheme {other:?}"),
            Some(format!("redirect to {target}")),
        ),
    }
}

/// A `Location` resolved against the URL that was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ResolvedLocation {
    /// Lowercase.
    scheme: String,
    authority: String,
    host: String,
    port: Option<u16>,
    path: String,
}

impl fmt::Display for ResolvedLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// Resolves `location` against `base` (RFC 3986, section 5.2).
fn resolve(base: &HttpUrl, location: &str) -> Result<ResolvedLocation, String> {
    // The fragment stays with the client; it is never sent.
    let reference = location.split('#').next().unwrap_or_default();
    if reference.chars().any(char::is_control) {
        return Err("a control character in the URL".to_owned());
    }
    let (scheme, rest) = match split_scheme(reference) {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, reference),
    };
    if let Some(after_slashes) = rest.strip_prefix("//") {
        let end = after_slashes
            .find(['/', '?'])
            .unwrap_or(after_slashes.len());
        let (authority, path_and_query) = after_slashes.split_at(end);
        let (authority, host, port) = parse_authority(authority)?;
        let (path, query) = split_query(path_and_query);
        return Ok(ResolvedLocation {
            scheme: scheme.unwrap_or_else(|| "http".to_owned()),
            authority,
            host,
            port,
            path: request_target(&remove_dot_segments(path), query),
        });
    }
    if scheme.is_some() {
        // `http:/path` or `mailto:someone`: nothing names a host to ask.
        return Err("no host in the URL".to_owned());
    }
    let (base_path, base_query) = split_query(&base.path);
    let (reference_path, reference_query) = split_query(rest);
    let (path, query) = if reference_path.is_empty() {
        (base_path.to_owned(), reference_query.or(base_query))
    } else if reference_path.starts_with('/') {
        (reference_path.to_owned(), reference_query)
    } else {
        let directory = base_path
            .rfind('/')
            .map_or("/", |slash| base_path.get(..=slash).unwrap_or("/"));
        (format!("{directory}{reference_path}"), reference_query)
    };
    Ok(ResolvedLocation {
        scheme: "http".to_owned(),
        authority: base.authority.clone(),
        host: base.host.clone(),
        port: Some(base.port),
        path: request_target(&remove_dot_segments(&path), query),
    })
}

/// `("https", "//host/x")` from `https://host/x`; `None` when the reference has no scheme.
fn split_scheme(reference: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = reference.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// `(authority without user info, host, port)` from `user@host:port`.
fn parse_authority(authority: &str) -> Result<(String, String, Option<u16>), String> {
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if authority.starts_with('[') {
        let close = authority
            .find(']')
            .ok_or_else(|| "an IPv6 address without its ']'".to_owned())?;
        authority.split_at(close + 1)
    } else {
        authority.split_at(authority.rfind(':').unwrap_or(authority.len()))
    };
    if host.is_empty() {
        return Err("no host in the URL".to_owned());
    }
    let port = match port.strip_prefix(':') {
        None | Some("") => None,
        Some(digits) if digits.bytes().all(|byte| byte.is_ascii_digit()) => Some(
            digits
                .parse::<u16>()
                .map_err(|_| format!("port {digits} is out of range"))?,
        ),
        Some(other) => return Err(format!("bad port {other:?}")),
    };
    Ok((authority.to_owned(), host.to_owned(), port))
}

fn split_query(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    }
}

/// Removes `.` and `..` segments (RFC 3986, section 5.2.4); the result starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let n_segments = segments.len();
    let mut kept: Vec<&str> = Vec::new();
    // The first segment is what precedes the leading '/': empty, or a relative path's start.
    for (index, segment) in segments.into_iter().enumerate() {
        let last = index + 1 == n_segments;
        match segment {
            "." | ".." => {
                if segment == ".." {
                    kept.pop();
                }
                // `/a/b/..` is `/a/`: a dot segment at the end leaves the trailing slash.
                if last {
                    kept.push("");
                }
            }
            "" if index == 0 => {}
            other => kept.push(other),
        }
    }
    format!("/{}", kept.join("/"))
}

/// Path and query for the request line: bytes a request line cannot hold (spaces, non-ASCII)
/// are percent-encoded, as a browser or Go's client sends them.
fn request_target(path: &str, query: Option<&str>) -> String {
    let mut target = String::with_capacity(path.len());
    let whole = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    for byte in whole.bytes() {
        if byte.is_ascii_graphic() {
            target.push(char::from(byte));
        } else {
            let _ = write!(target, "%{byte:02X}");
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HttpUrl {
        HttpUrl::new("localhost", 8000, "/a/b/c?q=1")
    }

    fn follow(location: &str) -> HttpUrl {
        match next_step("localhost", &base(), 1, 302, Some(location)) {
            Step::Follow(url) => url,
            other => panic!("{location:?}: {other:?}"),
        }
    }

    #[test]
    fn relative_locations_resolve_against_the_url_asked() {
        let paths = [
            ("/healthz/", "/healthz/"),
            ("g", "/a/b/g"),
            ("./g", "/a/b/g"),
            ("g/", "/a/b/g/"),
            ("../g", "/a/g"),
            ("../..", "/"),
            ("../../../../g", "/g"),
            ("/./g/../h", "/h"),
            ("?y=2", "/a/b/c?y=2"),
            ("g?y=2#frag", "/a/b/g?y=2"),
            ("#frag", "/a/b/c?q=1"),
            ("//localhost:9000/x", "/x"),
            ("http://localhost:8000", "/"),
            ("HTTP://localhost/a%20b?x", "/a%20b?x"),
            ("/with space/é", "/with%20space/%C3%A9"),
        ];
        for (location, path) in paths {
            assert_eq!(follow(location).path, path, "{location:?}");
        }
    }

    #[test]
    fn the_host_header_and_port_follow_the_location() {
        let relative = follow("/x");
        assert_eq!(
            (relative.authority.as_str(), relative.port),
            ("localhost:8000", 8000)
        );
        assert_eq!(relative.to_string(), "http://localhost:8000/x");
        let other_port = follow("http://user:secret@localhost:9000/y");
        assert_eq!(
            (other_port.authority.as_str(), other_port.port),
            ("localhost:9000", 9000)
        );
        let default_port = follow("http://localhost/z");
        assert_eq!(
            (default_port.authority.as_str(), default_port.port),
            ("localhost", 80)
        );
        let ipv6 = match next_step(
            "[::1]",
            &HttpUrl::new("[::1]", 8000, "/"),
            1,
            301,
            Some("http://[::1]:9000/v6"),
        ) {
            Step::Follow(url) => url,
            other => panic!("{other:?}"),
        };
        assert_eq!((ipv6.host.as_str(), ipv6.port), ("[::1]", 9000));
    }

    #[test]
    fn only_redirect_statuses_with_a_location_are_followed() {
        for status in [301, 302, 303, 307, 308] {
            assert!(matches!(
                next_step("localhost", &base(), 1, status, Some("/x")),
                Step::Follow(_)
            ));
        }
        for status in [200, 300, 304, 305, 306, 404, 500] {
            assert_eq!(
                next_step("localhost", &base(), 1, status, Some("/x")),
                Step::Last
            );
        }
        assert_eq!(next_step("localhost", &base(), 1, 302, None), Step::Last);
        assert_eq!(
            next_step("localhost", &base(), 1, 302, Some("")),
            Step::Last
        );
    }

    #[test]
    fn another_host_is_not_followed() {
        for (location, resolved) in [
            ("http://127.0.0.1:8000/x", "http://127.0.0.1:8000/x"),
            ("//example.com/y", "http://example.com/y"),
            ("https://login.example.com/", "https://login.example.com/"),
        ] {
            assert_eq!(
                next_step("localhost", &base(), 1, 302, Some(location)),
                Step::NotFollowed {
                    location: resolved.to_owned()
                },
                "{location}"
            );
        }
        // Another host is judged even at the last request, as the kubelet checks it first.
        assert!(matches!(
            next_step(
                "localhost",
                &base(),
                MAX_REQUESTS,
                302,
                Some("http://a.example/")
            ),
            Step::NotFollowed { .. }
        ));
    }

    #[test]
    fn the_tenth_redirect_fails() {
        assert!(matches!(
            next_step("localhost", &base(), MAX_REQUESTS - 1, 302, Some("/x")),
            Step::Follow(_)
        ));
        assert_eq!(
            next_step("localhost", &base(), MAX_REQUESTS, 302, Some("/x")),
            Step::Fail {
                message: "stopped after 10 redirects".to_owned(),
                detail: None
            }
        );
    }

    #[test]
    fn schemes_other_than_http_fail_on_the_same_host() {
        assert_eq!(
            next_step(
                "localhost",
                &base(),
                1,
                301,
                Some("https://user:pw@localhost:8000/a?token=t"),
            ),
            Step::Fail {
                message: "redirect to https not followed: pyinit probes plain http only \
                          (no TLS client)"
                    .to_owned(),
                detail: Some(
                    "redirect to https://localhost:8000/a?token=t not followed".to_owned()
                )
            }
        );
        let Step::Fail { message, .. } =
            next_step("localhost", &base(), 1, 301, Some("ftp://localhost/"))
        else {
            panic!("ftp was followed");
        };
        assert_eq!(
            message,
            "redirect to an unsupported protocol scheme \"ftp\""
        );
    }

    #[test]
    fn malformed_locations_fail_the_probe() {
        for (location, reason) in [
            ("http://localhost:99999/", "port 99999 is out of range"),
            ("http://localhost:80x/", "bad port"),
            ("http:///x", "no host"),
            ("http:/x", "no host"),
            ("http://[::1/", "without its ']'"),
            ("/a\u{7}b", "control character"),
        ] {
            match next_step("localhost", &base(), 1, 302, Some(location)) {
                Step::Fail {
                    message,
                    detail: Some(detail),
                } => {
                    assert_eq!(message, "bad redirect");
                    assert!(detail.contains(reason), "{location}: {detail}");
                }
                other => panic!("{location}: {other:?}"),
            }
        }
    }

    #[test]
    fn dot_segments() {
        for (path, clean) in [
            ("/", "/"),
            ("", "/"),
            ("/a/./b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/a//b", "/a//b"),
        ] {
            assert_eq!(remove_dot_segments(path), clean, "{path:?}");
        }
    }
}
