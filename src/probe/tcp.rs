//! The tcp probe: one connect to `tcp://HOST:PORT` within the timeout, as the kubelet's
//! `tcpSocket` probe. The connection is closed at once; nothing is sent.

use std::time::Duration;

use core::net::SocketAddr;
use tokio::net::TcpStream;

use super::{ProbeAnswer, describe_io_error};

/// Connects to `addr`; success is an established connection.
pub async fn probe_tcp(addr: SocketAddr, timeout: Duration) -> ProbeAnswer {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => ProbeAnswer::success("connected"),
        // A connect that fails or hangs: nothing answered, whatever the reason.
        Ok(Err(error)) => ProbeAnswer::failure(describe_io_error(&error)).nothing_answered(),
        Err(_) => ProbeAnswer::timed_out(timeout).nothing_answered(),
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;
    use crate::probe::schedule::Heard;

    #[tokio::test]
    async fn a_refused_connect_is_nothing_answered_and_a_connect_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connected = probe_tcp(addr, Duration::from_secs(5)).await;
        assert_eq!(connected, ProbeAnswer::success("connected"));
        drop(listener);
        let refused = probe_tcp(addr, Duration::from_secs(5)).await;
        assert_eq!(refused.message, "connection refused");
        assert_eq!(refused.heard(), Heard::Nothing);
    }
}
