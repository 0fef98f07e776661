//! The health server: the kubelet and Prometheus ask here, and get pyinit's cached answer.
//!
//! Routes (`routes.rs` answers them from `Status` alone: a request never reaches the app and
//! never waits for a probe; the one wait, the hold below, is on `Status`):
//!
//! | route | method | answer |
//! | --- | --- | --- |
//! | `/livez`, `/healthz` | GET, HEAD | 200 `ok`; 503 with the check list when a liveness check fails |
//! | `/readyz` | GET, HEAD | 200 `ok`; 503 with the check list when a readiness check fails, held first (below) |
//! | `/livez/<check>`, `/healthz/<check>` | GET, HEAD | 200 `ok`; 503 `[-]<check> failed: ...`; 404 for an unknown check |
//! | `/readyz/<check>` | GET, HEAD | the same, the 503 held first (below) |
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
//! The first-ready hold (`hold.rs`): until the app has first been ready, while it runs and
//! pyinit is not draining, a 503 of `/readyz` or `/readyz/<check>` waits for readiness, up to
//! [`FIRST_READY_HOLD`] (900 ms, under the kubelet's shortest probe timeout), on pyinit's own
//! `Status`: it answers 200 the moment readiness turns true, 503 at once when the drain begins,
//! else the 503 it has at the hold's end. Every other answer is given at once: `/livez`,
//! `/healthz` and `/metrics` never wait.
//!
//! Limits: a client has [`HEADER_READ_TIMEOUT`] to send each request's headers, which also
//! closes idle keep-alive connections; headers are capped at [`MAX_HEADER_BYTES`]. At most
//! [`MAX_CONNECTIONS`] connections are open, fewer when the open-files limit is low
//! ([`connection_cap`] keeps [`RESERVED_FDS`] free for the probes): a new one closes the least
//! recently used, so idle or slow clients can never starve a fresh probe. Should accept still run
//! out of file descriptors (EMFILE, ENFILE), the least recently used connection is closed and
//! the accept tried again, with one warning per episode. The listener is bound in `main` during
//! set-up (so a bind failure stops pyinit before the app starts); this module only serves it.

mod hold;
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
use tracing::{debug, info, warn};

use crate::clock::now;
use crate::status::Status;
use hold::FIRST_READY_HOLD;

/// Time a client has to send a request's headers, and to send the next request on a kept-alive
/// connection: a slow or idle client cannot hold a connection longer.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) accepted; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Open connections at most, however high the open-files limit; one more closes the least
/// recently used.
pub const MAX_CONNECTIONS: usize = 128;
/// File descriptors the health server leaves free, beside those open when it starts, for what
/// pyinit opens later. An exec probe holds 5 while it starts (/dev/null for its stdin, its
/// output pipe's two ends, the two ends of std's pipe that reports an exec failure) and 1 while
/// it runs; an http, tcp or gRPC probe holds 1 socket. Three probes (startup, liveness,
/// readiness) at their peak together: 15. Then 1 for the cgroup file of the 1 s memory poll, 2
/// for the /proc walk at the drain deadline (the directory and one process's file), 1 for the
/// accept in flight before the cap closes a connection: 19, and 5 to spare.
pub const RESERVED_FDS: u64 = 24;
/// The fewest connections served, however low the limit: the kubelet's probes of `/livez` and
/// `/readyz`, and a scrape.
const MIN_CONNECTIONS: usize = 4;
/// Pause after a failed accept with no connection left to close, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// What pyinit has open before the health server starts, if /proc cannot say: the standard
/// streams, the listener, the runtime's epoll and waker, the signal stream's socket pair and
/// epoll, and a few to spare (9 in all, measured, on a runtime that passes no others).
const FDS_OPEN_IF_UNKNOWN: u64 = 16;

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

/// How many connections the health server keeps open: [`MAX_CONNECTIONS`], or fewer when the
/// soft open-files limit, less the descriptors already open and [`RESERVED_FDS`], leaves room for
/// fewer; never under [`MIN_CONNECTIONS`]. With `--rlimit nofile=128` and 9 open: 95.
pub fn connection_cap(soft_open_files_limit: Option<u64>, fds_open: u64) -> usize {
    let Some(limit) = soft_open_files_limit else {
        return MAX_CONNECTIONS;
    };
    let room = limit.saturating_sub(fds_open).saturating_sub(RESERVED_FDS);
    usize::try_from(room)
        .unwrap_or(usize::MAX)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// pyinit's soft open-files limit (`None` if unlimited or unknown) and how many descriptors below
/// it are open now.
fn open_files_now() -> (Option<u64>, u64) {
    let soft_limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _hard)| soft)
        .filter(|soft| *soft != nix::sys::resource::RLIM_INFINITY);
    // Only descriptors under the limit take a place that accept could have used.
    let fds_open = std::fs::read_dir("/proc/self/fd").map_or(FDS_OPEN_IF_UNKNOWN, |entries| {
        let below_limit = entries.flatten().filter(|entry| {
            let number = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok());
            number.is_some_and(|number| soft_limit.is_none_or(|limit| number < limit))
        });
        u64::try_from(below_limit.count()).unwrap_or(u64::MAX)
    });
    (soft_limit, fds_open)
}

/// Serves health requests on `listener` until the runtime ends; never returns an error.
pub async fn serve_health(listener: TcpListener, status_rx: watch::Receiver<Status>) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(2 * MAX_HEADER_BYTES)
        .keep_alive(true);
    let (soft_limit, fds_open) = open_files_now();
    let cap = connection_cap(soft_limit, fds_open);
    if cap < MAX_CONNECTIONS {
        info!(
            max_connections = cap,
            open_files_limit = soft_limit,
            fds_open,
            reserved_fds = RESERVED_FDS,
            "health server: fewer connections under the open-files limit"
        );
    }
    let connections = Arc::new(Connections::with_cap(cap));
    let mut exhaustion = Exhaustion::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => {
                exhaustion.accepted();
                stream
            }
            Err(error) => {
                let out_of_fds = matches!(
                    error.raw_os_error(),
                    Some(nix::libc::EMFILE | nix::libc::ENFILE)
                );
                exhaustion.failed(&error);
                if out_of_fds && connections.close_least_recently_used() {
                    exhaustion.closed_one();
                    // The aborted task drops its socket when the runtime next polls it: let it,
                    // then accept again.
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        // Answers are small and written at once: do not hold them back for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let (id, closed_one) = connections.admit(now());
        let task = tokio::spawn(serve_connection(
            http.clone(),
            stream,
            status_rx.clone(),
            Arc::clone(&connections),
            id,
        ));
        // The task cannot run before this line: the runtime has one thread and this is it.
        connections.attach(id, task.abort_handle());
        if closed_one {
            // The connection closed to make room keeps its socket until its aborted task is
            // dropped: let the runtime do that before the next accept, so that a flood of new
            // connections cannot hold more descriptors than the cap allows.
            tokio::task::yield_now().await;
        }
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
        connections.touch(id, now());
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let mut status_rx = status_rx.clone();
        async move {
            let response = hold::answer(&method, &uri, &mut status_rx, FIRST_READY_HOLD).await;
            Ok::<_, Infallible>(response)
        }
    });
    if let Err(error) = http.serve_connection(TokioIo::new(stream), service).await {
        debug!(%error, "health connection closed");
    }
}

/// An episode of failed accepts: from the first failure to two accepts in a row that succeed.
/// While descriptors stay short every accept that succeeds follows a failure (and the closing of
/// a connection to make room), so the episode lasts as long as the shortage. Its first failure
/// is a warning, the rest are debug lines, and its end is one line that counts them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Exhaustion {
    /// Failed accepts in the episode; 0 outside one.
    failures: u64,
    /// Connections closed to make room during the episode.
    closed: u64,
    /// The last accept failed.
    last_failed: bool,
}

impl Exhaustion {
    fn failed(&mut self, error: &io::Error) {
        if self.failures == 0 {
            warn!(
                %error,
                "health server cannot accept a connection: closing the least recently used ones \
                 to make room (warned once until it recovers)"
            );
        } else {
            debug!(%error, "health server cannot accept a connection");
        }
        self.failures = self.failures.saturating_add(1);
        self.last_failed = true;
    }

    fn closed_one(&mut self) {
        self.closed = self.closed.saturating_add(1);
    }

    fn accepted(&mut self) {
        if self.failures == 0 || std::mem::take(&mut self.last_failed) {
            return;
        }
        info!(
            failed_accepts = self.failures,
            connections_closed = self.closed,
            "health server accepts connections again"
        );
        *self = Exhaustion::default();
    }
}

/// The open connections, by id, with when each was last used, and how many may be open.
#[derive(Debug)]
struct Connections {
    open: Mutex<ConnectionTable>,
    cap: usize,
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
    fn with_cap(cap: usize) -> Self {
        Connections {
            open: Mutex::new(ConnectionTable::default()),
            cap,
        }
    }

    fn table(&self) -> MutexGuard<'_, ConnectionTable> {
        // One thread: the lock is never contended, and no code panics while holding it.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for one more connection (closing the least recently used ones) and adds it;
    /// true with its id if it closed one.
    fn admit(&self, now: Instant) -> (u64, bool) {
        let mut table = self.table();
        let mut closed_one = false;
        while table.by_id.len() >= self.cap && table.close_least_recently_used() {
            closed_one = true;
            debug!(
                max_connections = self.cap,
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
        (id, closed_one)
    }

    /// Closes the least recently used connection; false if none is open.
    fn close_least_recently_used(&self) -> bool {
        self.table().close_least_recently_used()
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

impl ConnectionTable {
    /// Removes the least recently used connection and aborts its task (which closes its socket
    /// once the runtime polls it again); false if none is open.
    fn close_least_recently_used(&mut self) -> bool {
        let oldest = (self.by_id.iter())
            .min_by_key(|(_, open)| open.last_used)
            .map(|(id, _)| *id);
        let Some(open) = oldest.and_then(|oldest| self.by_id.remove(&oldest)) else {
            return false;
        };
        if let Some(task) = open.task {
            task.abort();
        }
        true
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
    fn the_cap_leaves_the_reserve_free_under_a_low_open_files_limit() {
        assert_eq!(connection_cap(None, 9), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(1_048_576), 9), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(128), 9), 128 - 9 - 24);
        assert_eq!(connection_cap(Some(128), 9 + 60), 128 - 69 - 24);
        assert_eq!(connection_cap(Some(32), 9), MIN_CONNECTIONS);
        assert_eq!(connection_cap(Some(8), 9), MIN_CONNECTIONS);
    }

    #[test]
    fn the_least_recently_used_connection_makes_room() {
        let connections = Connections::with_cap(MAX_CONNECTIONS);
        let start = Instant::now();
        let ids: Vec<u64> = (0..MAX_CONNECTIONS)
            .map(|n| connections.admit(start + Duration::from_millis(n as u64)))
            .map(|(id, closed_one)| {
                assert!(!closed_one);
                id
            })
            .collect();
        // The first connection was just used: the second is now the least recently used.
        connections.touch(ids[0], start + Duration::from_secs(60));
        let (newest, closed_one) = connections.admit(start + Duration::from_secs(61));
        assert!(closed_one);
        {
            let table = connections.table();
            assert_eq!(table.by_id.len(), MAX_CONNECTIONS);
            assert!(table.by_id.contains_key(&ids[0]));
            assert!(!table.by_id.contains_key(&ids[1]));
            assert!(table.by_id.contains_key(&newest));
        }
        // Out of descriptors: the least recently used goes first, then the next.
        assert!(connections.close_least_recently_used());
        assert!(!connections.table().by_id.contains_key(&ids[2]));
        assert!(connections.table().by_id.contains_key(&ids[0]));
    }

    #[test]
    fn an_episode_of_failed_accepts_lasts_until_two_accepts_in_a_row_succeed() {
        let emfile = io::Error::from_raw_os_error(nix::libc::EMFILE);
        let mut exhaustion = Exhaustion::default();
        exhaustion.accepted();
        assert_eq!(exhaustion, Exhaustion::default());
        // Short of descriptors: each accept succeeds only after a failure and a close.
        for _ in 0..3 {
            exhaustion.failed(&emfile);
            exhaustion.closed_one();
            exhaustion.accepted();
        }
        assert_eq!(exhaustion.failures, 3);
        assert_eq!(exhaustion.closed, 3);
        // Room again: the second accept in a row ends the episode.
        exhaustion.accepted();
        assert_eq!(exhaustion, Exhaustion::default());
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
