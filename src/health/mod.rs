//! The health server: the kubelet and Prometheus ask here, and get pyinit's cached answer.
//!
//! Routes (`routes.rs` answers them from `Status` alone; a request never waits for a probe and
//! never reaches the app):
//!
//! | route | method | answer |
//! | --- | --- | --- |
//! | `/livez`, `/healthz` | GET, HEAD | 200 `ok`; 503 with the check list when a liveness check fails |
//! | `/readyz` | GET, HEAD | 200 `ok`; 503 with the check list when a readiness check fails |
//! | `/livez/<check>`, `/healthz/<check>`, `/readyz/<check>` | GET, HEAD | 200 `ok`; 503 `[-]<check> failed: ...`; 404 for an unknown check |
//! | `/metrics` | GET, HEAD | 200, Prometheus text format (`metrics.rs`) |
//! | any other path | any | 404 |
//! | a known path | not GET or HEAD | 405, with `Allow: GET, HEAD` |
//! | a malformed request | | 400 (hyper), and the connection closes |
//! | headers over 8 KiB | | 431 (hyper), and the connection closes |
//!
//! `?verbose` lists every check with the last probe's error and age; `?exclude=NAME`
//! (repeatable) leaves a check out. There is never a 3xx: the kubelet counts a redirect as
//! success. The checks: `app-running`, `startup`, `liveness` (on `/livez`), `readiness` (on
//! `/readyz`) and `shutdown` (on `/readyz`, failed from the first SIGTERM on).
//!
//! Limits: a client has [`HEADER_READ_TIMEOUT`] to send each request's headers, which also
//! closes idle keep-alive connections; headers are capped at [`MAX_HEADER_BYTES`]. At most
//! [`MAX_CONNECTIONS`] connections are open: a new one closes the least recently used, so idle
//! or slow clients can never starve a fresh probe. The listener is bound in `main` during
//! set-up (so a bind failure stops pyinit before the app starts); this module only serves it.

mod metrics;
mod routes;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use core::net::SocketAddr;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use crate::clock::now;
use crate::status::Status;

/// Time a client has to send a request's headers, and to send the next request on a kept-alive
/// connection: a slow or idle client cannot hold a connection longer.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) accepted; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Open connections at most; one more closes the least recently used.
pub const MAX_CONNECTIONS: usize = 128;
/// Pause after a failed accept (out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The health listener could not be bound: a set-up failure, before the app starts.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot listen on --health-addr {}: {}",
            self.addr, self.source
        )
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Binds the health listener, non-blocking, ready for the runtime to adopt.
pub fn bind_listener(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    let bind = || {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    };
    bind().map_err(|source| BindError { addr, source })
}

/// Serves health requests on `listener` until the runtime ends; never returns an error.
pub async fn serve_health(listener: TcpListener, status_rx: watch::Receiver<Status>) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(2 * MAX_HEADER_BYTES)
        .keep_alive(true);
    let connections = Arc::new(Connections::default());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                warn!(%error, "health server cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Answers are small and written at once: do not hold them back for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let id = connections.admit(now());
        let task = tokio::spawn(serve_connection(
            http.clone(),
            stream,
            status_rx.clone(),
            Arc::clone(&connections),
            id,
        ));
        // The task cannot run before this line: the runtime has one thread and this is it.
        connections.attach(id, task.abort_handle());
    }
}

async fn serve_connection(
    http: http1::Builder,
    stream: TcpStream,
    status_rx: watch::Receiver<Status>,
    connections: Arc<Connections>,
    id: u64,
) {
    let _departure = Departure {
        connections: Arc::clone(&connections),
        id,
    };
    let service = service_fn(move |request: Request<Incoming>| {
        let now = now();
        connections.touch(id, now);
        let uri = request.uri();
        let response = routes::respond(
            request.method(),
            uri.path(),
            uri.query(),
            &status_rx.borrow(),
            now,
        );
        std::future::ready(Ok::<_, Infallible>(response))
    });
    if let Err(error) = http.serve_connection(TokioIo::new(stream), service).await {
        debug!(%error, "health connection closed");
    }
}

/// The open connections, by id, with when each was last used.
#[derive(Debug, Default)]
struct Connections {
    open: Mutex<ConnectionTable>,
}

#[derive(Debug, Default)]
struct ConnectionTable {
    next_id: u64,
    by_id: HashMap<u64, OpenConnection>,
}

#[derive(Debug)]
struct OpenConnection {
    last_used: Instant,
    task: Option<AbortHandle>,
}

impl Connections {
    fn table(&self) -> MutexGuard<'_, ConnectionTable> {
        // One thread: the lock is never contended, and no code panics while holding it.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for one more connection (closing the least recently used ones) and adds it.
    fn admit(&self, now: Instant) -> u64 {
        let mut table = self.table();
        while table.by_id.len() >= MAX_CONNECTIONS {
            let Some(oldest) = table
                .by_id
                .iter()
                .min_by_key(|(_, open)| open.last_used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some(task) = table.by_id.remove(&oldest).and_then(|open| open.task) {
                task.abort();
            }
            debug!(
                max_connections = MAX_CONNECTIONS,
                "health connection cap reached: closed the least recently used connection"
            );
        }
        let id = table.next_id;
        table.next_id = table.next_id.wrapping_add(1);
        table.by_id.insert(
            id,
            OpenConnection {
                last_used: now,
                task: None,
            },
        );
        id
    }

    fn attach(&self, id: u64, task: AbortHandle) {
        if let Some(open) = self.table().by_id.get_mut(&id) {
            open.task = Some(task);
        }
    }

    fn touch(&self, id: u64, now: Instant) {
        if let Some(open) = self.table().by_id.get_mut(&id) {
            open.last_used = now;
        }
    }

    fn remove(&self, id: u64) {
        self.table().by_id.remove(&id);
    }
}

/// Removes a connection from the table when its task ends, however it ends (aborted included).
struct Departure {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Departure {
    fn drop(&mut self) {
        self.connections.remove(self.id);
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a fake clock starts at some instant; which one does not matter"
)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_connection_makes_room() {
        let connections = Connections::default();
        let start = Instant::now();
        let ids: Vec<u64> = (0..MAX_CONNECTIONS)
            .map(|n| connections.admit(start + Duration::from_millis(n as u64)))
            .collect();
        // The first connection was just used: the second is now the least recently used.
        connections.touch(ids[0], start + Duration::from_secs(60));
        let newest = connections.admit(start + Duration::from_secs(61));
        let table = connections.table();
        assert_eq!(table.by_id.len(), MAX_CONNECTIONS);
        assert!(table.by_id.contains_key(&ids[0]));
        assert!(!table.by_id.contains_key(&ids[1]));
        assert!(table.by_id.contains_key(&newest));
    }

    #[test]
    fn bind_failure_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let error = bind_listener(addr).unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "cannot listen on --health-addr {addr}: Address already in use"
            )),
            "{error}"
        );
    }
}
