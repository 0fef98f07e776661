//! A raw HTTP/1.1 client over std's `TcpStream`, for the health server tests: what a kubelet or
//! a curl would see, with no client crate in between.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::{PATIENCE, Running};

/// Waits for pyinit's `health server listening addr=...` line and returns the address.
pub fn health_addr(running: &Running) -> SocketAddr {
    let line = running.stderr.wait_for("health server listening", PATIENCE);
    line.split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The head: status line and headers.
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// Parses a whole answer as read until the server closed the connection.
pub fn parse_answer(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Sends `request` as is on a fresh connection and reads until the server closes it.
pub fn send_raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream.write_all(request).expect("write request");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// `METHOD path` on a fresh connection, closed after the answer.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let raw = send_raw(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    parse_answer(&raw)
}

/// `GET path` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path)
}

/// The value of one metric sample line (`name{labels} value`) in `/metrics`, if present.
pub fn metric(addr: SocketAddr, sample: &str) -> Option<f64> {
    get(addr, "/metrics").body.lines().find_map(|line| {
        let value = line.strip_prefix(sample)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}
