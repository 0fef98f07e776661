//! The http probe: one `GET` with a timeout, as the kubelet's `httpGet` probe. Success is a
//! status from 200 to 399; a redirect is not followed and counts as success, as the kubelet
//! counts one to another host.
//!
//! One connection per probe, closed afterwards (`Connection: close`), driven in this task: no
//! connection pool, no background task, no DNS (the address was resolved from an IP literal or
//! `localhost` when the flag was parsed). Only the status line is read: the request is a fixed
//! HTTP/1.1 text, and `parse_head` (pure) finds the final status, skipping interim 1xx answers.
//! The body is never read. (hyper's client, for this one request, added 32 KiB to the static
//! binary.)

use std::time::Duration;

use core::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ProbeAnswer, describe_io_error};

/// What the kubelet's probes send as User-Agent, in pyinit's name.
const USER_AGENT: &str = concat!("pyinit-probe/", env!("CARGO_PKG_VERSION"));

/// The most of a response read while looking for its final status line.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// GETs `path` from `addr`, sending `host` as the Host header.
pub async fn probe_http(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> ProbeAnswer {
    match tokio::time::timeout(timeout, get_status(addr, host, path)).await {
        Ok(Ok(status)) if (200..400).contains(&status) => {
            ProbeAnswer::success(format!("status {status}"))
        }
        Ok(Ok(status)) => ProbeAnswer::failure(format!("status {status}")),
        Ok(Err(message)) => ProbeAnswer::failure(message),
        Err(_) => ProbeAnswer::timed_out(timeout),
    }
}

async fn get_status(addr: SocketAddr, host: &str, path: &str) -> Result<u16, String> {
    let request = request_head(host, addr.port(), path)?;
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|error| describe_io_error(&error))?;
    // One small write: no need to wait for Nagle's delayed acknowledgement.
    let _ = stream.set_nodelay(true);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| describe_io_error(&error))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0_u8; 512];
    loop {
        let n_read = stream
            .read(&mut chunk)
            .await
            .map_err(|error| describe_io_error(&error))?;
        let Some(read) = chunk.get(..n_read).filter(|read| !read.is_empty()) else {
            return Err("connection closed before the status line".to_owned());
        };
        head.extend_from_slice(read);
        match parse_head(&head) {
            Head::Status(status) => return Ok(status),
            Head::Invalid => return Err("not an HTTP/1 response".to_owned()),
            Head::Incomplete if head.len() >= MAX_HEAD_BYTES => {
                return Err(format!("no status line within {MAX_HEAD_BYTES} bytes"));
            }
            Head::Incomplete => {}
        }
    }
}

/// The request, as the kubelet sends it. The flag's parser allows only printable ASCII in the
/// path and an IP literal or `localhost` as the host; checked again here, as a line break in
/// either would start a header of its own.
fn request_head(host: &str, port: u16, path: &str) -> Result<String, String> {
    let printable =
        |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_graphic());
    if !printable(path) || !path.starts_with('/') {
        return Err(format!("bad path {path:?}"));
    }
    if !printable(host) {
        return Err(format!("bad host {host:?}"));
    }
    Ok(format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    ))
}

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The final status, from a line like `HTTP/1.1 200 OK`.
    Status(u16),
    /// Not yet a complete status line (or an interim 1xx answer not yet over).
    Incomplete,
    /// A line that is not an HTTP/1 status line.
    Invalid,
}

/// Finds the final status in the start of a response; interim 1xx answers (`100 Continue`,
/// `103 Early Hints`) come before it, each ended by a blank line.
fn parse_head(mut bytes: &[u8]) -> Head {
    loop {
        let Some(line_end) = bytes.iter().position(|&byte| byte == b'\n') else {
            return Head::Incomplete;
        };
        let Some(status) = bytes.get(..line_end).and_then(parse_status_line) else {
            return Head::Invalid;
        };
        if !(100..200).contains(&status) {
            return Head::Status(status);
        }
        match end_of_head(bytes) {
            Some(end) => bytes = bytes.get(end..).unwrap_or_default(),
            None => return Head::Incomplete,
        }
    }
}

/// `HTTP/1.x NNN reason` (the reason may be empty), without its line break.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ").filter(|_| minor.is_ascii_digit())?;
    let (code, reason) = rest.split_at_checked(3)?;
    if !code.iter().all(u8::is_ascii_digit) || reason.first().is_some_and(|&byte| byte != b' ') {
        return None;
    }
    let status = code
        .iter()
        .fold(0_u16, |status, digit| status * 10 + u16::from(digit - b'0'));
    (status >= 100).then_some(status)
}

/// Where the head that starts `bytes` ends: after its blank line (CRLF or bare LF).
fn end_of_head(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4);
    let lf = bytes
        .windows(2)
        .position(|window| window == b"\n\n")
        .map(|at| at + 2);
    match (crlf, lf) {
        (Some(crlf), Some(lf)) => Some(crlf.min(lf)),
        (crlf, lf) => crlf.or(lf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_of_http_1_0_and_1_1() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), Head::Status(200));
        assert_eq!(
            parse_head(b"HTTP/1.0 503 Service Unavailable\r\nX: y"),
            Head::Status(503)
        );
        assert_eq!(parse_head(b"HTTP/1.1 302\r\n"), Head::Status(302));
        assert_eq!(parse_head(b"HTTP/1.1 204 \n"), Head::Status(204));
        assert_eq!(
            parse_head(b"HTTP/1.1 404 Not Found\r\n\r\nbody"),
            Head::Status(404)
        );
    }

    #[test]
    fn a_partial_status_line_waits_for_more() {
        for partial in [&b""[..], b"HTTP/1.1 20", b"HTTP/1.1 200 OK\r"] {
            assert_eq!(parse_head(partial), Head::Incomplete, "{partial:?}");
        }
    }

    #[test]
    fn anything_else_is_not_http() {
        for line in [
            &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
            b"HTTP/2 200\r\n",
            b"HTTP/1.1 20x OK\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1  200 OK\r\n",
            b"HTTP/1.1 099 Odd\r\n",
            b"\r\n",
        ] {
            assert_eq!(parse_head(line), Head::Invalid, "{line:?}");
        }
    }

    #[test]
    fn interim_answers_are_skipped() {
        let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n";
        assert_eq!(parse_head(answer), Head::Status(200));
        assert_eq!(parse_head(b"HTTP/1.1 100 Continue\r\n"), Head::Incomplete);
        assert_eq!(
            parse_head(b"HTTP/1.1 100 Continue\n\nHTTP/1.1 500 x\n"),
            Head::Status(500)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Head::Incomplete
        );
    }

    #[test]
    fn the_request_is_what_the_kubelet_sends() {
        assert_eq!(
            request_head("127.0.0.1", 8000, "/healthz?full=1").unwrap(),
            format!(
                "GET /healthz?full=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: pyinit-probe/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(request_head("127.0.0.1", 80, "/a b").is_err());
        assert!(request_head("127.0.0.1", 80, "/a\r\nX: y").is_err());
        assert!(request_head("127.0.0.1", 80, "healthz").is_err());
        assert!(request_head("evil\r\nX: y", 80, "/").is_err());
    }

    #[tokio::test]
    async fn a_server_that_answers_and_closes_at_once() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut connection, _) = listener.accept().await.unwrap();
            let mut request = vec![0_u8; 1024];
            let n_read = connection.read(&mut request).await.unwrap();
            request.truncate(n_read);
            // The status line arrives in two pieces, then the server hangs up.
            connection.write_all(b"HTTP/1.0 20").await.unwrap();
            connection.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            connection.write_all(b"4 No Content\r\n\r\n").await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let answer = probe_http(addr, "localhost", "/ready", Duration::from_secs(5)).await;
        assert_eq!(answer, ProbeAnswer::success("status 204"));
        let request = server.await.unwrap();
        assert!(
            request.starts_with(&format!(
                "GET /ready HTTP/1.1\r\nHost: localhost:{}\r\n",
                addr.port()
            )),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_without_an_answer() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (connection, _) = listener.accept().await.unwrap();
            drop(connection);
        });
        let answer = probe_http(addr, "127.0.0.1", "/", Duration::from_secs(5)).await;
        server.await.unwrap();
        assert_eq!(answer.outcome, crate::probe::threshold::Outcome::Failure);
        assert!(
            answer.message == "connection closed before the status line"
                || answer.message.starts_with("connection reset"),
            "{answer:?}"
        );
    }
}
