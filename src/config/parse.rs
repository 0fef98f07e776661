//! Pure value parsers used as clap `value_parser`s: durations, exit-code pairs, and the privilege
//! flags' values (user and group specs, umask, resource limits) with the types they produce.
//!
//! Each returns a message that says what was expected; clap puts the flag and the value in front
//! of it. Signal names and `--signal-map` pairs are parsed by `signals`, which owns the name table.
//! Names are only checked for shape here: `privileges` resolves them against /etc/passwd and
//! /etc/group.
//! Pure value parsers used as clap `value_parser`s: durations, exit-code pairs, thresholds, the
//! health address and probe specs (with shell-like word splitting for `exec:`).
//!
//! Each returns a message that says what was expected; clap puts the flag and the value in front
//! of it. Signal names and `--signal-map` pairs are parsed by `signals`, which owns the name table.
//! Hosts are IP literals or `localhost`, resolved here: pyinit does no DNS lookups (tokio's
//! resolver would start threads, and a probe must not hang on a name server).

use std::ffi::OsString;
use std::num::NonZeroU32;
use std::path::PathBuf;

// `core::net` holds address values only: parsing one opens no socket.
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::probe::spec::ProbeTarget;
use crate::units::parse_duration;

/// Parses one `--remap-exit FROM=TO` pair of exit codes (0..=255).
pub fn parse_exit_pair(text: &str) -> Result<(u8, u8), String> {
    let expected = || "expected FROM=TO with exit codes 0-255, such as 143=0".to_owned();
    let (from, to) = text.split_once('=').ok_or_else(expected)?;
    let from = from.trim().parse::<u8>().map_err(|_| expected())?;
    let to = to.trim().parse::<u8>().map_err(|_| expected())?;
    Ok((from, to))
}

/// The largest uid or gid: `(uid_t)-1` means "unchanged" to the set-id calls, so it is no id.
pub const MAX_ID: u32 = u32::MAX - 1;

/// A user or group as given on the command line: a number, or a name to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdOrName {
    Id(u32),
    Name(String),
}

impl std::fmt::Display for IdOrName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdOrName::Id(id) => write!(f, "{id}"),
            IdOrName::Name(name) => f.write_str(name),
        }
    }
}

/// `--user USER[:GROUP]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub user: IdOrName,
    pub group: Option<IdOrName>,
}

/// `--groups G1,G2`: the exact supplementary groups; empty clears them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupList(pub Vec<IdOrName>);

/// `--umask`: the permission bits (0..=0o777) masked out of every file the app creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Umask(pub u32);

/// Parses a user or group: all digits is an id (0..=4294967294), anything else a name.
pub fn parse_id_or_name(text: &str) -> Result<IdOrName, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        return match trimmed.parse::<u64>() {
            Ok(id) if id <= u64::from(MAX_ID) => u32::try_from(id)
                .map(IdOrName::Id)
                .map_err(|_| id_out_of_range()),
            _ => Err(id_out_of_range()),
        };
    }
    // The files separate fields by ':' and members by ','; a leading '-' is an option, not a name.
    let well_formed = !trimmed.is_empty()
        && !trimmed.starts_with('-')
        && !trimmed
            .chars()
            .any(|c| c == ':' || c == ',' || c == '/' || c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(IdOrName::Name(trimmed.to_owned()))
    } else {
        Err("expected a name from /etc/passwd or /etc/group, or a numeric id".to_owned())
    }
}

fn id_out_of_range() -> String {
    format!("ids range from 0 to {MAX_ID}")
}

/// Parses `--user USER[:GROUP]`: `nobody`, `app:app`, `10001`, `10001:10001`.
pub fn parse_user_spec(text: &str) -> Result<UserSpec, String> {
    let (user, group) = match text.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (text, None),
    };
    let expected =
        |reason: String| format!("{reason} (expected USER[:GROUP], such as nobody or 10001:10001)");
    let user = parse_id_or_name(user).map_err(expected)?;
    let group = group.map(parse_id_or_name).transpose().map_err(expected)?;
    Ok(UserSpec { user, group })
}

/// Parses `--groups G1,G2`; an empty value is an empty list, which clears the groups.
pub fn parse_group_list(text: &str) -> Result<GroupList, String> {
    if text.trim().is_empty() {
        return Ok(GroupList(Vec::new()));
    }
    text.split(',')
        .map(parse_id_or_name)
        .collect::<Result<Vec<_>, _>>()
        .map(GroupList)
}

/// Parses an octal umask such as `0027`, `027` or `22`.
pub fn parse_umask(text: &str) -> Result<Umask, String> {
    let expected = || "expected an octal umask from 0000 to 0777, such as 0027".to_owned();
    let trimmed = text.trim();
    if trimmed.is_empty()
        || trimmed.len() > 4
        || !trimmed.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(expected());
    }
    match u32::from_str_radix(trimmed, 8) {
        Ok(bits) if bits <= 0o777 => Ok(Umask(bits)),
        _ => Err(expected()),
    }
}

/// A resource limit pyinit can set, named as `ulimit` and `docker --ulimit` name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RlimitResource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl RlimitResource {
    pub const ALL: [RlimitResource; 16] = [
        RlimitResource::As,
        RlimitResource::Core,
        RlimitResource::Cpu,
        RlimitResource::Data,
        RlimitResource::Fsize,
        RlimitResource::Locks,
        RlimitResource::Memlock,
        RlimitResource::Msgqueue,
        RlimitResource::Nice,
        RlimitResource::Nofile,
        RlimitResource::Nproc,
        RlimitResource::Rss,
        RlimitResource::Rtprio,
        RlimitResource::Rttime,
        RlimitResource::Sigpending,
        RlimitResource::Stack,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RlimitResource::As => "as",
            RlimitResource::Core => "core",
            RlimitResource::Cpu => "cpu",
            RlimitResource::Data => "data",
            RlimitResource::Fsize => "fsize",
            RlimitResource::Locks => "locks",
            RlimitResource::Memlock => "memlock",
            RlimitResource::Msgqueue => "msgqueue",
            RlimitResource::Nice => "nice",
            RlimitResource::Nofile => "nofile",
            RlimitResource::Nproc => "nproc",
            RlimitResource::Rss => "rss",
            RlimitResource::Rtprio => "rtprio",
            RlimitResource::Rttime => "rttime",
            RlimitResource::Sigpending => "sigpending",
            RlimitResource::Stack => "stack",
        }
    }
}

/// One side of a limit: a number (bytes, seconds or a count, as the resource counts) or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RlimitValue {
    Limited(u64),
    Unlimited,
}

/// `--rlimit NAME=SOFT[:HARD]`; a lone SOFT sets the hard limit to the same value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RlimitSpec {
    pub resource: RlimitResource,
    pub soft: RlimitValue,
    pub hard: RlimitValue,
}

/// Parses `nofile=1024:2048`, `core=0`, `memlock=unlimited`.
pub fn parse_rlimit(text: &str) -> Result<RlimitSpec, String> {
    let expected = || "expected NAME=SOFT[:HARD], such as nofile=1024:4096 or core=0".to_owned();
    let (name, limits) = text.split_once('=').ok_or_else(expected)?;
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("rlimit_").unwrap_or(&name);
    let resource = RlimitResource::ALL
        .into_iter()
        .find(|resource| resource.name() == name)
        .ok_or_else(|| {
            let names: Vec<_> = RlimitResource::ALL.iter().map(|r| r.name()).collect();
            format!(
                "'{name}' is not a resource limit (one of {})",
                names.join(", ")
            )
        })?;
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (soft, Some(hard)),
        None => (limits, None),
    };
    let soft = parse_rlimit_value(soft).ok_or_else(expected)?;
    let hard = match hard {
        Some(hard) => parse_rlimit_value(hard).ok_or_else(expected)?,
        None => soft,
    };
    if soft > hard {
        return Err("the soft limit must not exceed the hard limit".to_owned());
    }
    Ok(RlimitSpec {
        resource,
        soft,
        hard,
    })
}

fn parse_rlimit_value(text: &str) -> Option<RlimitValue> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("unlimited") || trimmed == "-1" {
        return Some(RlimitValue::Unlimited);
    }
    // u64::MAX is RLIM_INFINITY on Linux: a number that large means unlimited, so it is refused.
    match trimmed.parse::<u64>() {
        Ok(value) if value < u64::MAX => Some(RlimitValue::Limited(value)),
        _ => None,
    }
}

/// Parses a probe threshold: a whole number of at least 1.
pub fn parse_threshold(text: &str) -> Result<NonZeroU32, String> {
    text.trim()
        .parse::<NonZeroU32>()
        .map_err(|_| "expected a whole number of at least 1".to_owned())
}

/// `--health-addr`: where the health server listens, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthAddr {
    Off,
    Listen(SocketAddr),
}

/// Parses `off`, `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or `:PORT` (all interfaces).
pub fn parse_health_addr(text: &str) -> Result<HealthAddr, String> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("off") {
        return Ok(HealthAddr::Off);
    }
    let expected =
        || "expected IP:PORT, :PORT, localhost:PORT or off, such as 0.0.0.0:8558".to_owned();
    if let Some(port) = trimmed.strip_prefix(':') {
        let port = port.parse::<u16>().map_err(|_| expected())?;
        return Ok(HealthAddr::Listen(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        )));
    }
    let (host, port) = split_host_port(trimmed).ok_or_else(expected)?;
    let port = port.ok_or_else(expected)?;
    Ok(HealthAddr::Listen(SocketAddr::new(
        resolve_host(host)?,
        port,
    )))
}

/// Splits `host:port` or `[v6]:port`; the port is `None` when absent, an error when malformed.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
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
fn resolve_host(host: &str) -> Result<IpAddr, String> {
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

const PROBE_FORMS: &str = "expected http://HOST:PORT/PATH, tcp://HOST:PORT, exec:COMMAND ARGS... \
                           or file:///PATH?max-age=DURATION";

/// Parses a probe spec: `http://HOST:PORT/PATH`, `tcp://HOST:PORT`, `exec:COMMAND ARGS...` or
/// `file:///PATH?max-age=DURATION`.
/// `--drill-request`: an `http://HOST:PORT/PATH` URL, parsed as an http probe's target is.
pub fn parse_drill_url(text: &str) -> Result<ProbeTarget, String> {
    if !text.trim().starts_with("http://") {
        return Err("expected a URL such as http://127.0.0.1:8000/slow?s=3".to_owned());
    }
    parse_probe(text)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_pairs() {
        assert_eq!(parse_exit_pair("143=0"), Ok((143, 0)));
        assert_eq!(parse_exit_pair("1=255"), Ok((1, 255)));
        for text in ["143", "256=0", "a=b", "=0", "-1=0"] {
            assert!(parse_exit_pair(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn ids_and_names() {
        assert_eq!(
            parse_id_or_name("nobody"),
            Ok(IdOrName::Name("nobody".into()))
        );
        assert_eq!(
            parse_id_or_name("www-data"),
            Ok(IdOrName::Name("www-data".into()))
        );
        assert_eq!(parse_id_or_name("10001"), Ok(IdOrName::Id(10001)));
        assert_eq!(parse_id_or_name("0"), Ok(IdOrName::Id(0)));
        assert_eq!(
            parse_id_or_name("4294967294"),
            Ok(IdOrName::Id(4_294_967_294))
        );
        for text in ["4294967295", "99999999999999999999"] {
            let error = parse_id_or_name(text).unwrap_err();
            assert!(error.contains("4294967294"), "{text}: {error}");
        }
        for text in ["", " ", "-1", "a:b", "a,b", "a b", "../x", "-x"] {
            assert!(
                parse_id_or_name(text).is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn user_specs() {
        let name = |text: &str| IdOrName::Name(text.to_owned());
        let cases = [
            ("nobody", name("nobody"), None),
            ("app:staff", name("app"), Some(name("staff"))),
            ("10001", IdOrName::Id(10001), None),
            (
                "10001:10002",
                IdOrName::Id(10001),
                Some(IdOrName::Id(10002)),
            ),
            ("app:100", name("app"), Some(IdOrName::Id(100))),
        ];
        for (text, user, group) in cases {
            assert_eq!(
                parse_user_spec(text),
                Ok(UserSpec { user, group }),
                "{text}"
            );
        }
        for text in [
            "",
            ":",
            ":staff",
            "app:",
            "app:staff:x",
            "4294967295",
            "1:4294967295",
        ] {
            let error = parse_user_spec(text).unwrap_err();
            assert!(error.contains("USER[:GROUP]"), "{text}: {error}");
        }
    }

    #[test]
    fn group_lists() {
        assert_eq!(parse_group_list(""), Ok(GroupList(Vec::new())));
        assert_eq!(
            parse_group_list("users, 27"),
            Ok(GroupList(vec![
                IdOrName::Name("users".into()),
                IdOrName::Id(27)
            ]))
        );
        for text in ["users,,staff", "users,", "a b"] {
            assert!(
                parse_group_list(text).is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn umasks() {
        for (text, bits) in [
            ("0027", 0o027),
            ("027", 0o027),
            ("22", 0o022),
            ("0", 0),
            ("0777", 0o777),
        ] {
            assert_eq!(parse_umask(text), Ok(Umask(bits)), "{text}");
        }
        for text in [
            "", "0888", "1000", "01000", "00000", "abc", "-022", "0o22", "u=rwx",
        ] {
            assert!(parse_umask(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn rlimits() {
        use RlimitValue::{Limited, Unlimited};
        let cases = [
            (
                "nofile=1024:2048",
                RlimitResource::Nofile,
                Limited(1024),
                Limited(2048),
            ),
            ("core=0", RlimitResource::Core, Limited(0), Limited(0)),
            (
                "NPROC=100:unlimited",
                RlimitResource::Nproc,
                Limited(100),
                Unlimited,
            ),
            (
                "memlock=unlimited",
                RlimitResource::Memlock,
                Unlimited,
                Unlimited,
            ),
            ("RLIMIT_AS=-1", RlimitResource::As, Unlimited, Unlimited),
            (
                "stack=8388608",
                RlimitResource::Stack,
                Limited(8_388_608),
                Limited(8_388_608),
            ),
        ];
        for (text, resource, soft, hard) in cases {
            assert_eq!(
                parse_rlimit(text),
                Ok(RlimitSpec {
                    resource,
                    soft,
                    hard
                }),
                "{text}"
            );
        }
        for resource in RlimitResource::ALL {
            assert!(parse_rlimit(&format!("{}=1", resource.name())).is_ok());
        }
        let error = parse_rlimit("nofiles=1").unwrap_err();
        assert!(
            error.contains("'nofiles'") && error.contains("nofile,"),
            "{error}"
        );
        let error = parse_rlimit("nofile=2048:1024").unwrap_err();
        assert!(error.contains("soft limit"), "{error}");
        let error = parse_rlimit("nofile=unlimited:1024").unwrap_err();
        assert!(error.contains("soft limit"), "{error}");
        for text in [
            "nofile",
            "nofile=",
            "nofile=abc",
            "nofile=1:2:3",
            "nofile=18446744073709551615",
        ] {
            assert!(parse_rlimit(text).is_err(), "{text:?} should be rejected");
        }
    }
}

#[cfg(test)]
mod probe_tests {
    use std::time::Duration;

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
    fn health_addresses() {
        assert_eq!(parse_health_addr("off"), Ok(HealthAddr::Off));
        assert_eq!(
            parse_health_addr("0.0.0.0:8558"),
            Ok(HealthAddr::Listen(addr("0.0.0.0:8558")))
        );
        assert_eq!(
            parse_health_addr(":9000"),
            Ok(HealthAddr::Listen(addr("0.0.0.0:9000")))
        );
        assert_eq!(
            parse_health_addr("localhost:0"),
            Ok(HealthAddr::Listen(addr("127.0.0.1:0")))
        );
        assert_eq!(
            parse_health_addr("[::]:8558"),
            Ok(HealthAddr::Listen(addr("[::]:8558")))
        );
        for text in ["8558", "0.0.0.0", "host:80", ":x", ""] {
            assert!(parse_health_addr(text).is_err(), "{text}");
        }
    }

    #[test]
    fn thresholds() {
        assert_eq!(parse_threshold("3").map(NonZeroU32::get), Ok(3));
        for text in ["0", "-1", "x", ""] {
            assert!(parse_threshold(text).is_err(), "{text}");
        }
    }
}
