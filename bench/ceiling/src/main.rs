//! The benchmark ceiling and floor: hyper 1.x on a current-thread tokio runtime, answering `200
//! ok` to every request on the address given as its argument (parsed by clap, as pyinit parses
//! its flags). Nothing else, so that pyinit's `/readyz` throughput can be read as a fraction of
//! what hyper itself can do on this machine, and pyinit's size and memory as a multiple of the
//! smallest server its own dependencies make (built with pyinit's release profile, for musl).

use std::convert::Infallible;

use clap::Parser;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Answers 200 ok to every HTTP/1 request.
#[derive(Parser)]
struct Cli {
    /// Where to listen.
    #[arg(default_value = "127.0.0.1:8559", env = "CEILING_ADDR")]
    addr: std::net::SocketAddr,
}

async fn answer(_request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(cli.addr))
}

async fn serve(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
