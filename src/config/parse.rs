//! The value parsers that belong to no other module: `--remap-exit` pairs and `--health-addr`.
//!
//! Each returns a message that says what was expected; clap puts the flag and the value in front
//! of it. Every other flag's parser sits beside the type it produces, in the module that uses
//! it: durations in `units`, signals and `--signal-map` in `signals::spec`, the privilege flags
//! in `privileges`, probe specs and thresholds in `probe::spec`, `--web-concurrency` in
//! `container::env`, the drill's flags in `drill`.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::probe::spec::{resolve_host, split_host_port};

/// Parses one `--remap-exit FROM=TO` pair of exit codes (0..=255).
pub fn parse_exit_pair(text: &str) -> Result<(u8, u8), String> {
    let expected = || "expected FROM=TO with exit codes 0-255, such as 143=0".to_owned();
    let (from, to) = text.split_once('=').ok_or_else(expected)?;
    let from = from.trim().parse::<u8>().map_err(|_| expected())?;
    let to = to.trim().parse::<u8>().map_err(|_| expected())?;
    Ok((from, to))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_addresses() {
        for (text, expected) in [
            ("off", HealthAddr::Off),
            (
                "0.0.0.0:8558",
                HealthAddr::Listen("0.0.0.0:8558".parse().unwrap()),
            ),
            (":9000", HealthAddr::Listen("0.0.0.0:9000".parse().unwrap())),
            (
                "localhost:0",
                HealthAddr::Listen("127.0.0.1:0".parse().unwrap()),
            ),
            (
                "[::]:8558",
                HealthAddr::Listen("[::]:8558".parse().unwrap()),
            ),
        ] {
            assert_eq!(parse_health_addr(text), Ok(expected), "{text}");
        }
        for text in ["8558", "0.0.0.0", "host:80", ":x", ""] {
            assert!(parse_health_addr(text).is_err(), "{text}");
        }
    }

    #[test]
    fn exit_pairs() {
        assert_eq!(parse_exit_pair("143=0"), Ok((143, 0)));
        assert_eq!(parse_exit_pair("1=255"), Ok((1, 255)));
        for text in ["143", "256=0", "a=b", "=0", "-1=0"] {
            assert!(parse_exit_pair(text).is_err(), "{text} should be rejected");
        }
    }
}
