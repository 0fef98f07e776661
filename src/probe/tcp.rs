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
        Ok(Err(error)) => ProbeAnswer::failure(describe_io_error(&error)),
        Err(_) => ProbeAnswer::timed_out(timeout),
    }
}
