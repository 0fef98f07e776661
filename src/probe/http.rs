//! The http probe: a `GET` as the kubelet's `httpGet` probe sends it, judged as the kubelet
//! judges it; and the single requests of `pyinit drill`, which share the client.
//!
//! - Every probe request carries `User-Agent: kube-probe/1.36 pyinit/VERSION` (see
//!   [`PROBE_USER_AGENT`]), `Accept: */*`, `Connection: close` and the URL's `Host`; a
//!   redirected one also carries `Referer`, the URL that redirected it.
//! - Redirects on the probe's own host are followed, at most 10 requests in all; `redirect.rs`
//!   decides which ones. The final answer is judged: a status from 200 to 399 passes. A 3xx
//!   that ends the chain (a redirect to another host, or one without a `Location`) passes too,
//!   with a warning that the prober logs once.
//! - At most 10 KiB of the final answer's body are read, and dropped: a body cut off fails the
//!   probe, one that never ends is read no further.
//! - The timeout covers the whole exchange: every request of the chain and the body.
//!
//! One connection per request, closed afterwards, driven in this task: no connection pool, no
//! background task, no DNS (the address was resolved from an IP literal or `localhost` when the
//! flag was parsed, and a followed redirect stays on that host name). The drill's requests follow
//! no redirect, read their body to the end, to see requests that were cut off, and say
//! `pyinit-drill/VERSION`: they stand for users' traffic, not for probes.

use std::pin::pin;
use std::time::Duration;

use core::net::SocketAddr;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::redirect::{HttpUrl, Step, next_step};
use super::{ProbeAnswer, describe_io_error};

/// The User-Agent of every probe request. The kubelet sends `kube-probe/<major>.<minor>`, and
/// apps and proxies that keep probes out of their access logs match `kube-probe/` as a prefix
/// or a substring. pyinit's probes take the place of the kubelet's, so they begin the same way,
/// with a current Kubernetes minor (pyinit cannot know the cluster's), and then name pyinit as
/// a second product token, for whoever reads the log.
pub const PROBE_USER_AGENT: &str = concat!("kube-probe/1.36 pyinit/", env!("CARGO_PKG_VERSION"));

/// The drill's requests play users' traffic, not probes: an app must log and serve them as such.
const DRILL_USER_AGENT: &str = concat!("pyinit-drill/", env!("CARGO_PKG_VERSION"));

/// How much of the final answer's body a probe reads, as the kubelet does.
const MAX_BODY: usize = 10 * 1024;

/// GETs `path` from `addr`, sending `host` as the Host header, following redirects on the same
/// host; the whole exchange is bounded by `timeout`.
pub async fn probe_http(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> ProbeAnswer {
    // Nothing back within the timeout: a server still importing its app (gunicorn's workers)
    // leaves the connection in its listen backlog and answers it the moment it can.
    tokio::time::timeout(timeout, follow_redirects(addr, host, path))
        .await
        .unwrap_or_else(|_| ProbeAnswer::timed_out(timeout).nothing_answered())
}

async fn follow_redirects(addr: SocketAddr, host: &str, path: &str) -> ProbeAnswer {
    let mut url = HttpUrl::new(host, addr.port(), path);
    let mut referer: Option<String> = None;
    let mut n_requests = 0;
    loop {
        n_requests += 1;
        let outgoing = Outgoing {
            authority: &url.authority,
            path: &url.path,
            user_agent: PROBE_USER_AGENT,
            referer: referer.as_deref(),
        };
        // A followed redirect keeps the probe's host name, so its address is the probe's own.
        let target = SocketAddr::new(addr.ip(), url.port);
        let stream = match connect(target).await {
            Ok(stream) => stream,
            Err(message) => {
                let answer = ProbeAnswer::failure(message);
                // Nothing listens on the probe's port (yet); after a redirect, the app answered.
                let answer = match n_requests {
                    1 => answer.nothing_answered(),
                    _ => answer,
                };
                return after_redirects(answer, &url, n_requests);
            }
        };
        let exchanged = exchange(stream, &outgoing, |status, headers| {
            let location = headers
                .get(header::LOCATION)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
            let step = next_step(host, &url, n_requests, status, location.as_deref());
            // Only the last answer, the one that decides, has its body read.
            let body = match step {
                Step::Last | Step::NotFollowed { .. } => BodyHandling::ReadAtMost(MAX_BODY),
                Step::Follow(_) | Step::Fail { .. } => BodyHandling::Ignore,
            };
            ((status, step), body)
        })
        .await;
        let (status, step) = match exchanged {
            Ok(exchanged) => exchanged,
            Err(message) => {
                return after_redirects(ProbeAnswer::failure(message), &url, n_requests);
            }
        };
        match step {
            Step::Last => return outcome_of_last(status, &url, n_requests, None),
            Step::NotFollowed { location } => {
                return outcome_of_last(status, &url, n_requests, Some(&location));
            }
            Step::Fail { message, detail } => {
                let answer = ProbeAnswer::failure(message);
                return match detail {
                    Some(detail) => answer.with_detail(detail),
                    None => answer,
                };
            }
            Step::Follow(next) => {
                referer = Some(url.to_string());
                url = next;
            }
        }
    }
}

/// The probe's outcome from the status of its last answer.
fn outcome_of_last(
    status: u16,
    url: &HttpUrl,
    n_requests: usize,
    not_followed: Option<&str>,
) -> ProbeAnswer {
    let message = format!("status {status}");
    let answer = match status {
        200..=299 => ProbeAnswer::success(message),
        300..=399 => {
            let warning = match not_followed {
                Some(location) => format!(
                    "http probe redirected to {location}, another host: not followed, its \
                     {status} counts as success"
                ),
                None => {
                    format!("http probe ended on a {status} it does not follow: counts as success")
                }
            };
            ProbeAnswer::success(message).with_warning(warning)
        }
        _ => ProbeAnswer::failure(message),
    };
    after_redirects(answer, url, n_requests)
}

/// `status 500` for the probe's own URL. After redirects the message says how many (`status 500
/// (after 1 redirect)`) and the detail, for the log, where they led: `status 500 at URL (after 1
/// redirect)`; the URL, whose query may carry a token, stays off the health port.
fn after_redirects(answer: ProbeAnswer, url: &HttpUrl, n_requests: usize) -> ProbeAnswer {
    let redirects = match n_requests.saturating_sub(1) {
        0 => return answer,
        1 => "(after 1 redirect)".to_owned(),
        n_redirects => format!("(after {n_redirects} redirects)"),
    };
    let detail = format!("{} at {url} {redirects}", answer.message);
    let message = format!("{} {redirects}", answer.message);
    ProbeAnswer { message, ..answer }.with_detail(detail)
}

/// How much of an answer's body a request reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyHandling {
    /// A redirect that is followed: its body says nothing.
    Ignore,
    /// A probe's last answer: at most this many bytes, as the kubelet reads it.
    ReadAtMost(usize),
    /// The drill counts a response cut off mid-body as a failed request.
    ReadToEnd,
}

/// One `GET` on a fresh connection with the drill's User-Agent and no redirect followed; the
/// status code, or what went wrong in a few words.
pub async fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    body: BodyHandling,
) -> Result<u16, String> {
    let authority = format!("{host}:{}", addr.port());
    let outgoing = Outgoing {
        authority: &authority,
        path,
        user_agent: DRILL_USER_AGENT,
        referer: None,
    };
    let stream = connect(addr).await?;
    exchange(stream, &outgoing, |status, _| (status, body)).await
}

/// A new connection to `addr`, or what went wrong in a few words.
async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| describe_io_error(&error))?;
    // Small writes: no need to wait for Nagle's delayed acknowledgement.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// What one request sends besides the method.
struct Outgoing<'a> {
    /// The Host header: `host:port` as the URL writes it.
    authority: &'a str,
    /// Path and query.
    path: &'a str,
    user_agent: &'static str,
    referer: Option<&'a str>,
}

/// Sends one `GET` on `stream`, a fresh connection. `decide` sees the answer's status and
/// headers, and says what to return and how much of the body to read first.
async fn exchange<T>(
    stream: TcpStream,
    outgoing: &Outgoing<'_>,
    decide: impl FnOnce(u16, &HeaderMap) -> (T, BodyHandling),
) -> Result<T, String> {
    let path = outgoing.path;
    // The errors name neither: a path's query may carry a token.
    let uri = Uri::try_from(path).map_err(|error| format!("bad path: {error}"))?;
    let host_header =
        HeaderValue::try_from(outgoing.authority).map_err(|error| format!("bad host: {error}"))?;
    let mut request = Request::new(Empty::<Bytes>::new());
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(header::HOST, host_header);
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(outgoing.user_agent),
    );
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(referer) = outgoing.referer
        && let Ok(referer) = HeaderValue::try_from(referer)
    {
        headers.insert(header::REFERER, referer);
    }

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
    let (value, body) = decide(response.status().as_u16(), response.headers());
    let limit = match body {
        BodyHandling::Ignore => return Ok(value),
        BodyHandling::ReadAtMost(limit) => limit,
        BodyHandling::ReadToEnd => usize::MAX,
    };
    let mut reading = pin!(read_body(response.into_body(), limit));
    let read = tokio::select! {
        biased;
        read = &mut reading => read,
        ended = &mut connection => match ended {
            Ok(()) => reading.await,
            Err(error) => return Err(error.to_string()),
        },
    };
    read.map(|()| value)
}

/// Reads the body until its end or `limit` bytes, keeping none of it.
async fn read_body(mut body: Incoming, limit: usize) -> Result<(), String> {
    let mut n_read = 0usize;
    while n_read < limit {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                n_read = n_read.saturating_add(frame.data_ref().map_or(0, Bytes::len));
            }
            Some(Err(error)) => return Err(format!("response cut off: {error}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::probe::schedule::Heard;
    use crate::probe::threshold::Outcome;

    /// How the test server answers one connection.
    enum Reply {
        /// Writes this answer and closes.
        Answer(String),
        /// Waits, then writes the answer and closes.
        After(Duration, String),
        /// Writes this, then keeps the connection open without sending another byte.
        Stall(String),
        /// Writes this head, then body bytes until the client hangs up.
        Endless(String),
    }

    /// Requests as the test server received them: each request's head, lowercased.
    type Heads = Arc<Mutex<Vec<String>>>;

    /// A server on a loopback port that answers its connections with `replies`, in order, and
    /// records the head of every request it gets.
    async fn serve(replies: Vec<Reply>) -> (SocketAddr, Heads) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Heads::default();
        let recorded = Arc::clone(&heads);
        tokio::spawn(async move {
            for reply in replies {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        break;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                recorded.lock().unwrap().push(head);
                match reply {
                    Reply::Answer(text) => {
                        let _ = stream.write_all(text.as_bytes()).await;
                    }
                    Reply::After(delay, text) => {
                        tokio::time::sleep(delay).await;
                        let _ = stream.write_all(text.as_bytes()).await;
                    }
                    Reply::Stall(text) => {
                        let _ = stream.write_all(text.as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Reply::Endless(head) => {
                        let _ = stream.write_all(head.as_bytes()).await;
                        let chunk = [b'x'; 1024];
                        while stream.write_all(&chunk).await.is_ok() {}
                    }
                }
            }
        });
        (addr, heads)
    }

    fn redirect(status: u16, location: &str) -> String {
        format!(
            "HTTP/1.1 {status} Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        )
    }

    fn answer(status: u16) -> String {
        format!("HTTP/1.1 {status} Answer\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    }

    const PATIENT: Duration = Duration::from_secs(5);

    async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> ProbeAnswer {
        probe_http(addr, "127.0.0.1", path, timeout).await
    }

    #[tokio::test]
    async fn a_redirect_on_the_same_host_is_followed_and_the_final_answer_judged() {
        let (addr, heads) = serve(vec![
            Reply::Answer(redirect(301, "/healthz/")),
            Reply::Answer(answer(500)),
        ])
        .await;
        let result = probe(addr, "/healthz", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Failure, "{result:?}");
        assert_eq!(result.message, "status 500 (after 1 redirect)");
        assert_eq!(
            result.detail,
            Some(format!(
                "status 500 at http://{addr}/healthz/ (after 1 redirect)"
            ))
        );
        let heads = heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 2, "{heads:?}");
        let followed = &heads[1];
        assert!(
            followed.starts_with("get /healthz/ http/1.1\r\n"),
            "{followed}"
        );
        assert!(
            followed.contains(&format!("\r\nhost: {addr}\r\n")),
            "{followed}"
        );
        assert!(
            followed.contains(&format!("\r\nreferer: http://{addr}/healthz\r\n")),
            "{followed}"
        );
    }

    #[tokio::test]
    async fn a_redirects_query_and_user_info_stay_out_of_the_message() {
        let (addr, _) = serve(vec![Reply::Answer(redirect(
            302,
            "//user:hunter2@127.0.0.1:1/next?token=s3cret",
        ))])
        .await;
        let result = probe(addr, "/healthz", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Failure, "{result:?}");
        assert_eq!(result.message, "connection refused (after 1 redirect)");
        // The app answered the first request: a probe for the schedule to back off from.
        assert_eq!(result.heard(), Heard::NotReady);
        assert_eq!(
            result.detail.as_deref(),
            Some("connection refused at http://127.0.0.1:1/next?token=s3cret (after 1 redirect)")
        );
    }

    #[tokio::test]
    async fn a_failure_says_whether_the_app_answered() {
        let refusing = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let refused = probe(refusing, "/healthz", PATIENT).await;
        assert_eq!(refused.message, "connection refused");
        assert_eq!(refused.heard(), Heard::Nothing);
        // A server that accepted but has not answered (a gunicorn still importing its app
        // leaves the connection in its backlog) is not up yet either.
        let (silent, _) = serve(vec![Reply::Stall(String::new())]).await;
        let timed_out = probe(silent, "/healthz", Duration::from_millis(200)).await;
        assert_eq!(timed_out.outcome, Outcome::Timeout);
        assert_eq!(timed_out.heard(), Heard::Nothing);
        // A status, or a connection closed without one: the app is there.
        let (warming, _) = serve(vec![Reply::Answer(answer(503))]).await;
        assert_eq!(
            probe(warming, "/healthz", PATIENT).await.heard(),
            Heard::NotReady
        );
        let (closing, _) = serve(vec![Reply::Answer(String::new())]).await;
        let closed = probe(closing, "/healthz", PATIENT).await;
        assert_eq!(closed.outcome, Outcome::Failure);
        assert_eq!(closed.heard(), Heard::NotReady);
    }

    #[tokio::test]
    async fn every_request_carries_the_kubelets_headers() {
        let (addr, heads) = serve(vec![
            Reply::Answer(redirect(302, "next")),
            Reply::Answer(answer(200)),
        ])
        .await;
        let result = probe(addr, "/a/b", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Success, "{result:?}");
        let heads = heads.lock().unwrap().clone();
        assert!(
            heads[1].starts_with("get /a/next http/1.1\r\n"),
            "{heads:?}"
        );
        for head in heads {
            assert!(head.contains("\r\nuser-agent: kube-probe/1."), "{head}");
            assert!(head.contains("\r\naccept: */*\r\n"), "{head}");
            assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        }
    }

    #[tokio::test]
    async fn nine_redirects_are_followed_and_the_tenth_fails_the_probe() {
        let mut replies: Vec<Reply> = (0..9)
            .map(|_| Reply::Answer(redirect(307, "/again")))
            .collect();
        replies.push(Reply::Answer(answer(200)));
        let (addr, heads) = serve(replies).await;
        let result = probe(addr, "/", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Success, "{result:?}");
        assert_eq!(heads.lock().unwrap().len(), 10);

        let replies = (0..11)
            .map(|_| Reply::Answer(redirect(308, "/again")))
            .collect();
        let (addr, heads) = serve(replies).await;
        let result = probe(addr, "/", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Failure, "{result:?}");
        assert_eq!(result.message, "stopped after 10 redirects");
        assert_eq!(heads.lock().unwrap().len(), 10);
    }

    #[tokio::test]
    async fn the_same_host_on_another_port_is_the_same_host() {
        let (other, other_heads) = serve(vec![Reply::Answer(answer(503))]).await;
        let location = format!("http://127.0.0.1:{}/there", other.port());
        let (addr, _) = serve(vec![Reply::Answer(redirect(303, &location))]).await;
        let result = probe(addr, "/here", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Failure, "{result:?}");
        assert_eq!(result.message, "status 503 (after 1 redirect)");
        assert_eq!(
            result.detail,
            Some(format!("status 503 at {location} (after 1 redirect)"))
        );
        let heads = other_heads.lock().unwrap().clone();
        assert!(
            heads[0].contains(&format!("\r\nhost: {other}\r\n")),
            "{heads:?}"
        );
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_is_not_followed_and_passes_with_a_warning() {
        // `localhost` names the same address, but not the same host: the name is what counts.
        let location = "http://localhost:1/login?next=/healthz";
        let (addr, heads) = serve(vec![Reply::Answer(redirect(302, location))]).await;
        let result = probe(addr, "/healthz", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Success, "{result:?}");
        assert_eq!(result.message, "status 302");
        assert_eq!(
            result.warning.as_deref(),
            Some(
                "http probe redirected to http://localhost:1/login?next=/healthz, another host: \
                 not followed, its 302 counts as success"
            )
        );
        assert_eq!(heads.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_final_redirect_status_passes_with_a_warning() {
        let (addr, _) = serve(vec![Reply::Answer(answer(304))]).await;
        let result = probe(addr, "/", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Success, "{result:?}");
        assert!(
            result
                .warning
                .is_some_and(|warning| warning.contains("304"))
        );
        let (addr, _) = serve(vec![Reply::Answer(answer(200))]).await;
        assert_eq!(probe(addr, "/", PATIENT).await.warning, None);
    }

    #[tokio::test]
    async fn a_redirect_to_https_on_the_same_host_fails_the_probe() {
        let (addr, heads) = serve(vec![Reply::Answer(redirect(
            301,
            &format!("https://127.0.0.1:{}/healthz", 1),
        ))])
        .await;
        let result = probe(addr, "/healthz", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Failure, "{result:?}");
        assert!(result.message.contains("no TLS"), "{result:?}");
        assert_eq!(heads.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_timeout_covers_every_request_of_the_chain() {
        let step = Duration::from_millis(200);
        let (addr, _) = serve(vec![
            Reply::After(step, redirect(302, "/1")),
            Reply::After(step, redirect(302, "/2")),
            Reply::After(step, answer(200)),
        ])
        .await;
        let result = probe(addr, "/", Duration::from_millis(450)).await;
        assert_eq!(result.outcome, Outcome::Timeout, "{result:?}");
    }

    #[tokio::test]
    async fn the_timeout_covers_the_body() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nstarted";
        let (addr, _) = serve(vec![Reply::Stall(head.to_owned())]).await;
        let result = probe(addr, "/", Duration::from_millis(300)).await;
        assert_eq!(result.outcome, Outcome::Timeout, "{result:?}");
    }

    #[tokio::test]
    async fn a_body_cut_off_fails_the_probe() {
        let cut = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly this";
        let (addr, _) = serve(vec![Reply::Answer(cut.to_owned())]).await;
        let result = probe(addr, "/", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Failure, "{result:?}");
        assert!(result.message.starts_with("response cut off"), "{result:?}");
    }

    #[tokio::test]
    async fn an_endless_body_is_read_to_10_kib_and_no_further() {
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        let (addr, _) = serve(vec![Reply::Endless(head.to_owned())]).await;
        let result = probe(addr, "/stream", PATIENT).await;
        assert_eq!(result.outcome, Outcome::Success, "{result:?}");
    }
}
