//! The grpc probe: one `grpc.health.v1.Health/Check` call, as the kubelet's `grpc` probe makes
//! it (kubernetes/kubernetes `pkg/probe/grpc/grpc.go`), judged by `grpc_wire.rs`.
//!
//! - A new plaintext HTTP/2 connection per probe (HTTP/2 with prior knowledge, no TLS, as the
//!   kubelet dials with insecure credentials), closed when the probe ends.
//! - One unary call: `POST /grpc.health.v1.Health/Check` with `content-type: application/grpc`,
//!   `te: trailers`, the time left as `grpc-timeout` (the kubelet's context deadline, which
//!   grpc-go sends), the probes' `User-Agent` (`kube-probe/1.36 pyinit/VERSION`), `:authority`
//!   the address dialled, and a `HealthCheckRequest` naming the flag's service (empty unless
//!   given, as the kubelet sends it).
//! - `grpc-status` is read from the trailers, or from the headers of a trailers-only answer (an
//!   error such as UNIMPLEMENTED comes that way).
//! - The timeout covers the whole call, connection included, as the kubelet's one context does;
//!   its message says which part it cut short, in the kubelet's words.
//! - A failure says how far the call got, from what the server sent first ([`Watched`]):
//!   nothing ("failed to connect service at ADDR: ...": grpc-go's dial is not done before the
//!   server's HTTP/2 preface either), bytes that are not HTTP/2 ("the server does not speak
//!   HTTP/2"), or HTTP/2 ("health rpc probe failed: ..." with h2's words). The messages leave out
//!   the kubelet's `error:` and `timeout:` prefixes: the probe's result already says which.
//!
//! One difference, on purpose: the kubelet's dial blocks (`grpc.WithBlock`) and retries until
//! the timeout, so it reports a refused connection as "timeout: failed to connect service ...
//! within 1s"; pyinit fails the probe at the first refusal, as its own tcp and http probes and
//! the kubelet's `httpGet` and `tcpSocket` probes do. The verdict is the same failure.
//!
//! hyper's HTTP/2 client hands its connection task and each request's send task to an
//! executor. [`ProbeTasks`] keeps them in the probe's own future and polls them there, next to
//! the call, as `http.rs` polls its HTTP/1 connection: no task outlives the probe, and a probe
//! cut short by its timeout drops the socket with them. No DNS: the address was resolved from
//! an IP literal or `localhost` when the flag was parsed.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use core::net::SocketAddr;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http2;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::grpc_wire::{
    CHECK_PATH, CheckAnswer, MAX_ANSWER_DATA, encode_check_request, grpc_timeout, judge,
};
use super::http::PROBE_USER_AGENT;
use super::threshold::Outcome;
use super::{ProbeAnswer, describe_io_error};
use crate::clock::now;
use crate::units::format_duration;

/// The most header bytes an answer may carry, per block (headers, trailers): the size gRPC's
/// protocol suggests clients accept. A `grpc-message` longer than this fails the probe.
const MAX_HEADER_LIST_SIZE: u32 = 8 * 1024;

/// Calls `Health/Check` for `service` on `addr`; the whole call is bounded by `timeout`.
pub async fn probe_grpc(addr: SocketAddr, service: &str, timeout: Duration) -> ProbeAnswer {
    let deadline = now() + timeout;
    let first_read = Arc::new(AtomicU8::new(NOTHING_READ));
    let checked = check(addr, service, deadline, timeout, Arc::clone(&first_read));
    match tokio::time::timeout(timeout, checked).await {
        Ok(answer) => answer,
        Err(_) => {
            let first_read = first_read.load(Ordering::Relaxed);
            ProbeAnswer {
                outcome: Outcome::Timeout,
                // As grpc-go's dial, the connection counts as made once the server has spoken.
                message: match first_read {
                    NOTHING_READ => format!(
                        "failed to connect service at {addr} within {}",
                        format_duration(timeout)
                    ),
                    _ => format!(
                        "health rpc did not complete within {}",
                        format_duration(timeout)
                    ),
                },
                detail: None,
                warning: None,
                // Silent until the timeout: a server still starting (its port bound, the
                // connection in the backlog). Once it has spoken HTTP/2, it is up but slow.
                answered: first_read != NOTHING_READ,
            }
        }
    }
}

async fn check(
    addr: SocketAddr,
    service: &str,
    deadline: Instant,
    timeout: Duration,
    first_read: Arc<AtomicU8>,
) -> ProbeAnswer {
    let stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(error) => {
            return ProbeAnswer::failure(format!(
                "failed to connect service at {addr}: {}",
                describe_io_error(&error)
            ))
            .nothing_answered();
        }
    };
    // One small request: no need to wait for Nagle's delayed acknowledgement.
    let _ = stream.set_nodelay(true);
    let watched = Watched {
        stream,
        first_read: Arc::clone(&first_read),
    };
    let error = match call(watched, addr, service, deadline).await {
        Ok(answer) => {
            let judged = judge(&answer, timeout);
            return ProbeAnswer {
                outcome: judged.outcome,
                message: judged.message,
                detail: judged.detail,
                warning: None,
                answered: true,
            };
        }
        Err(error) => error,
    };
    ProbeAnswer::failure(match first_read.load(Ordering::Relaxed) {
        NOTHING_READ => format!("failed to connect service at {addr}: {error}"),
        NOT_HTTP2_READ => format!(
            "failed to connect service at {addr}: the server does not speak HTTP/2 (an HTTP/1 \
             server?)"
        ),
        _ => format!("health rpc probe failed: {error}"),
    })
}

/// Makes the call on a connected stream and reads its whole answer.
async fn call(
    stream: Watched,
    addr: SocketAddr,
    service: &str,
    deadline: Instant,
) -> Result<CheckAnswer, String> {
    let tasks = OwnedTasks(ProbeTasks::default());
    let (mut sender, connection) = http2::Builder::new(tasks.0.clone())
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| describe_error(&error))?;
    let mut driver = Driver {
        tasks,
        connection: pin!(connection),
        connection_ended: false,
    };
    let left = deadline.saturating_duration_since(now());
    let request = check_request(addr, service, left)?;
    let response = driver.drive(sender.send_request(request)).await?;
    let response = response.map_err(|error| describe_error(&error))?;
    let (head, mut body) = response.into_parts();
    let mut answer = CheckAnswer {
        http_status: head.status.as_u16(),
        ..CheckAnswer::default()
    };
    // A trailers-only answer: the status is in the headers, and nothing follows.
    take_status(&head.headers, &mut answer);
    if answer.grpc_status.is_some() {
        return Ok(answer);
    }
    while let Some(frame) = driver.drive(body.frame()).await? {
        let frame = frame.map_err(|error| describe_error(&error))?;
        match frame.into_data() {
            Ok(data) if answer.data.len() + data.len() > MAX_ANSWER_DATA => {
                return Err(format!(
                    "the answer is longer than {MAX_ANSWER_DATA} bytes: not a HealthCheckResponse"
                ));
            }
            Ok(data) => answer.data.extend_from_slice(&data),
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    take_status(&trailers, &mut answer);
                }
            }
        }
    }
    Ok(answer)
}

/// `POST /grpc.health.v1.Health/Check` with the gRPC call's headers and the framed request.
fn check_request(
    addr: SocketAddr,
    service: &str,
    left: Duration,
) -> Result<Request<Full<Bytes>>, String> {
    let uri = format!("http://{addr}{CHECK_PATH}");
    let uri = Uri::try_from(uri.as_str()).map_err(|error| format!("bad URI {uri}: {error}"))?;
    let mut request = Request::new(Full::new(Bytes::from(encode_check_request(service))));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    // The protocol asks for the timeout right after the pseudo-headers.
    if let Ok(value) = HeaderValue::try_from(grpc_timeout(left)) {
        headers.insert(HeaderName::from_static("grpc-timeout"), value);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(PROBE_USER_AGENT),
    );
    Ok(request)
}

/// Copies `grpc-status` and `grpc-message` out of a header block, when it has them.
fn take_status(headers: &HeaderMap, answer: &mut CheckAnswer) {
    if let Some(status) = headers.get("grpc-status") {
        answer.grpc_status = Some(status.as_bytes().to_vec());
        answer.grpc_message = headers
            .get("grpc-message")
            .map(|message| message.as_bytes().to_vec());
    }
}

/// hyper's error and its causes on one line: `http2 error: connection error detected: ...`.
fn describe_error(error: &hyper::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What the server sent first, as [`Watched`] saw it: nothing yet; an HTTP/2 server's first
/// frame, which must be SETTINGS (RFC 9113 section 3.4: a 3-byte length, then the type, 0x4);
/// or anything else, such as an HTTP/1 server's answer to the HTTP/2 preface (`HTTP/1.1 400 Bad
/// Request`, or the bare error page of Python's http.server).
const NOTHING_READ: u8 = 0;
const HTTP2_READ: u8 = 1;
const NOT_HTTP2_READ: u8 = 2;
const SETTINGS_FRAME: u8 = 0x4;

/// The probe's TCP stream, noting what the server sent first, so that a failure can say whether
/// the server ever spoke and in which protocol.
struct Watched {
    stream: TcpStream,
    first_read: Arc<AtomicU8>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let fresh = buf.filled().get(before..).unwrap_or_default();
        if !fresh.is_empty() && this.first_read.load(Ordering::Relaxed) == NOTHING_READ {
            // A first read shorter than a frame header (never seen in practice) counts as
            // HTTP/2: the failure then keeps h2's own words.
            let first = match fresh.get(3) {
                Some(&frame_type) if frame_type != SETTINGS_FRAME => NOT_HTTP2_READ,
                _ => HTTP2_READ,
            };
            this.first_read.store(first, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor hyper's HTTP/2 client spawns into: the tasks wait here until the probe polls
/// them ([`Driver::drive`]), and end with it.
#[derive(Clone, Default)]
struct ProbeTasks(Arc<Mutex<Vec<Task>>>);

impl<F> hyper::rt::Executor<F> for ProbeTasks
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.lock().push(Box::pin(future));
    }
}

impl ProbeTasks {
    fn lock(&self) -> MutexGuard<'_, Vec<Task>> {
        // Nothing panics while holding it (and pyinit aborts on a panic): no poisoned state.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls every task once, and those spawned meanwhile too; the finished ones are dropped.
    fn poll_all(&self, cx: &mut Context<'_>) {
        let mut pending = Vec::new();
        loop {
            // Taken out while they run, so a task may hand hyper another one.
            let batch = std::mem::take(&mut *self.lock());
            if batch.is_empty() {
                break;
            }
            for mut task in batch {
                if task.as_mut().poll(cx).is_pending() {
                    pending.push(task);
                }
            }
        }
        self.lock().append(&mut pending);
    }
}

/// The probe's own handle on its tasks. Each task holds a clone of the executor it lives in,
/// so the set keeps itself alive: dropping this handle empties it, which drops the tasks and,
/// with the connection task, closes the socket.
struct OwnedTasks(ProbeTasks);

impl Drop for OwnedTasks {
    fn drop(&mut self) {
        // Out of the lock before they drop: a task's drop may reach the executor again.
        let tasks = std::mem::take(&mut *self.0.lock());
        drop(tasks);
    }
}

type Connection = http2::Connection<TokioIo<Watched>, Full<Bytes>, ProbeTasks>;

/// The call's connection and hyper's tasks, polled beside whatever the probe awaits.
struct Driver<'a> {
    tasks: OwnedTasks,
    connection: Pin<&'a mut Connection>,
    connection_ended: bool,
}

impl Driver<'_> {
    /// Awaits `future` while the connection and the tasks make progress. Every one of them is
    /// polled with this task's waker, so whichever is woken brings the whole set round again.
    async fn drive<F: Future>(&mut self, future: F) -> Result<F::Output, String> {
        let mut future = pin!(future);
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            if !self.connection_ended
                && let Poll::Ready(ended) = self.connection.as_mut().poll(cx)
            {
                self.connection_ended = true;
                if let Err(error) = ended {
                    return Poll::Ready(Err(describe_error(&error)));
                }
            }
            self.tasks.0.poll_all(cx);
            // What the connection and the tasks did may have completed the future.
            future.as_mut().poll(cx).map(Ok)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::probe::schedule::Heard;

    /// An empty SETTINGS frame: what an HTTP/2 server sends first.
    const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];

    const SHORT: Duration = Duration::from_millis(300);

    /// A server that accepts one connection, reads what comes, writes `first` and then stays
    /// silent; it reports how many bytes it read before the client closed the connection.
    async fn silent_after(first: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(first).await.unwrap();
            let mut n_read = 0;
            let mut buffer = [0u8; 1024];
            // Until the probe hangs up (EOF) or resets the connection.
            while let Ok(n) = stream.read(&mut buffer).await
                && n > 0
            {
                n_read += n;
            }
            n_read
        });
        (addr, server)
    }

    #[tokio::test]
    async fn a_refused_connection_fails_at_once() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let answer = probe_grpc(addr, "", Duration::from_secs(5)).await;
        assert_eq!(
            answer,
            ProbeAnswer::failure(format!(
                "failed to connect service at {addr}: connection refused"
            ))
            .nothing_answered()
        );
    }

    #[tokio::test]
    async fn a_server_that_never_speaks_times_out_connecting_and_is_hung_up_on() {
        let (addr, server) = silent_after(b"").await;
        let answer = probe_grpc(addr, "", SHORT).await;
        assert_eq!(answer.outcome, Outcome::Timeout);
        assert_eq!(
            answer.message,
            format!("failed to connect service at {addr} within 300ms")
        );
        // A server still starting may look like this: the schedule looks again soon.
        assert_eq!(answer.heard(), Heard::Nothing);
        // The probe sent HTTP/2's preface, and closed the connection when it gave up.
        let n_read = tokio::time::timeout(Duration::from_secs(5), server).await;
        assert!(n_read.unwrap().unwrap() >= 24, "no preface read");
    }

    #[tokio::test]
    async fn an_http2_server_that_never_answers_times_out_in_the_rpc() {
        let (addr, server) = silent_after(&EMPTY_SETTINGS).await;
        let answer = probe_grpc(addr, "", SHORT).await;
        assert_eq!(answer.outcome, Outcome::Timeout);
        assert_eq!(answer.message, "health rpc did not complete within 300ms");
        // Up, but slow: not a server to probe every 100 ms.
        assert_eq!(answer.heard(), Heard::NotReady);
        // Nothing of the probe outlived it: the connection is closed.
        let closed = tokio::time::timeout(Duration::from_secs(5), server).await;
        assert!(closed.is_ok(), "the probe's connection is still open");
    }

    #[tokio::test]
    async fn an_http1_answer_says_the_server_does_not_speak_http2() {
        for first in [
            &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"[..],
            // Python's http.server answers HTTP/2's preface with a bare HTML page.
            &b"<!DOCTYPE HTML>\n<html lang=\"en\">"[..],
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut preface = [0u8; 24];
                stream.read_exact(&mut preface).await.unwrap();
                stream.write_all(first).await.unwrap();
                // Then it closes, as such servers do.
            });
            let answer = probe_grpc(addr, "", Duration::from_secs(5)).await;
            assert_eq!(
                answer,
                ProbeAnswer::failure(format!(
                    "failed to connect service at {addr}: the server does not speak HTTP/2 (an \
                     HTTP/1 server?)"
                ))
            );
        }
    }
}
