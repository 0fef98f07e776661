//! The http probe: one `GET` with a timeout, as the kubelet's `httpGet` probe. Success is a
//! status from 200 to 399; a redirect is not followed and counts as success, as the kubelet
//! counts one to another host.
//!
//! One connection per probe, closed afterwards (`Connection: close`), driven in this task: no
//! connection pool, no background task, no DNS (the address was resolved from an IP literal or
//! `localhost` when the flag was parsed). A probe never reads the body; the drill's requests,
//! which share [`http_get`], read it to the end to see requests that were cut off.

use std::pin::pin;
use std::time::Duration;

use core::net::SocketAddr;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{ProbeAnswer, describe_io_error};

/// What the kubelet's probes send as User-Agent, in pyinit's name.
const USER_AGENT: &str = concat!("pyinit-probe/", env!("CARGO_PKG_VERSION"));

/// GETs `path` from `addr`, sending `host` as the Host header.
pub async fn probe_http(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> ProbeAnswer {
    match tokio::time::timeout(timeout, http_get(addr, host, path, BodyHandling::Ignore)).await {
        Ok(Ok(status)) if (200..400).contains(&status) => {
            ProbeAnswer::success(format!("status {status}"))
        }
        Ok(Ok(status)) => ProbeAnswer::failure(format!("status {status}")),
        Ok(Err(message)) => ProbeAnswer::failure(message),
        Err(_) => ProbeAnswer::timed_out(timeout),
    }
}

/// Whether a GET reads the response body to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyHandling {
    /// Probes judge by the status line alone.
    Ignore,
    /// The drill counts a response cut off mid-body as a failed request.
    ReadToEnd,
}

/// One `GET` on a fresh connection; the status code, or what went wrong in a few words.
pub async fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    body: BodyHandling,
) -> Result<u16, String> {
    let uri = Uri::try_from(path).map_err(|error| format!("bad path {path:?}: {error}"))?;
    let host_header = HeaderValue::try_from(format!("{host}:{}", addr.port()))
        .map_err(|error| format!("bad host {host:?}: {error}"))?;
    let mut request = Request::new(Empty::<Bytes>::new());
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(header::HOST, host_header);
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));

    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| describe_io_error(&error))?;
    // Small writes: no need to wait for Nagle's delayed acknowledgement.
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| error.to_string())?;
    let mut connection = pin!(connection);
    let mut response = pin!(sender.send_request(request));
    // The connection future does the I/O; it is polled here beside the request, not spawned.
    // A server that answers and closes (HTTP/1.0 style) may end the connection in the same poll
    // that delivered the response: the response is then still waiting in `response`.
    let response = tokio::select! {
        biased;
        response = &mut response => response,
        ended = &mut connection => match ended {
            Ok(()) => response.await,
            Err(error) => return Err(error.to_string()),
        },
    };
    let response = response.map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    if body == BodyHandling::ReadToEnd {
        let mut collected = pin!(response.into_body().collect());
        let read = tokio::select! {
            biased;
            read = &mut collected => read,
            ended = &mut connection => match ended {
                Ok(()) => collected.await,
                Err(error) => return Err(error.to_string()),
            },
        };
        read.map_err(|error| format!("response cut off: {error}"))?;
    }
    Ok(status)
}
