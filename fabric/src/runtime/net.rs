//! The network seam: where node gRPC servers listen and how clients connect.
//!
//! `Net::Tokio` is real TCP (embedded live and processes modes); `Net::Sim` is turmoil's
//! simulated TCP (deterministic simulation). Node code is the same for both: it asks this
//! module for an incoming-connection stream to hand to tonic, and for a `Channel`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::Stream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

/// Which network the node runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// Real TCP through the operating system.
    Tokio,
    /// turmoil's simulated network; only valid inside a turmoil host or client.
    Sim,
}

/// Errors of the network seam.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("`{addr}` is not a valid gRPC endpoint: {detail}")]
    BadAddress { addr: String, detail: String },
    #[error("cannot connect to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("gRPC server on {addr} failed: {detail}")]
    Serve { addr: String, detail: String },
}

/// A stream accepted or opened on either network.
pub enum NetStream {
    Tokio(tokio::net::TcpStream),
    Sim(turmoil::net::TcpStream),
}

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tokio(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::Sim(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Tokio(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::Sim(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tokio(s) => Pin::new(s).poll_flush(cx),
            NetStream::Sim(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tokio(s) => Pin::new(s).poll_shutdown(cx),
            NetStream::Sim(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Connected for NetStream {
    type ConnectInfo = Option<SocketAddr>;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            NetStream::Tokio(s) => s.peer_addr().ok(),
            NetStream::Sim(s) => s.peer_addr().ok(),
        }
    }
}

/// A bound listener; `incoming()` feeds tonic's `serve_with_incoming`.
pub enum NetListener {
    Tokio(tokio::net::TcpListener),
    Sim(turmoil::net::TcpListener),
}

impl NetListener {
    /// The address actually bound (after port 0 was resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            NetListener::Tokio(l) => l.local_addr(),
            NetListener::Sim(l) => l.local_addr(),
        }
    }

    /// Accepted connections as a stream. Accept errors end nothing: they are yielded.
    pub fn incoming(self) -> impl Stream<Item = io::Result<NetStream>> + Send + 'static {
        accept_loop(self)
    }
}

fn accept_loop(l: NetListener) -> impl Stream<Item = io::Result<NetStream>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = match &l {
                NetListener::Tokio(l) => l.accept().await.map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    NetStream::Tokio(s)
                }),
                NetListener::Sim(l) => l.accept().await.map(|(s, _)| NetStream::Sim(s)),
            };
            if tx.send(accepted).await.is_err() {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

impl Net {
    /// Binds `addr` (`ip:port`; in simulation the ip part is ignored and the host's
    /// simulated address is used).
    pub async fn bind(self, addr: &str) -> Result<NetListener, NetError> {
        let bind_err = |source| NetError::Bind {
            addr: addr.to_string(),
            source,
        };
        match self {
            Net::Tokio => tokio::net::TcpListener::bind(addr)
                .await
                .map(NetListener::Tokio)
                .map_err(bind_err),
            Net::Sim => {
                let port = addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .unwrap_or(0);
                turmoil::net::TcpListener::bind(("0.0.0.0", port))
                    .await
                    .map(NetListener::Sim)
                    .map_err(bind_err)
            }
        }
    }

    /// A gRPC channel to `addr` (`host:port`; in simulation `host` is a turmoil host name).
    /// Connects eagerly so that an unreachable node is an error here.
    pub async fn channel(self, addr: &str) -> Result<Channel, NetError> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| NetError::BadAddress {
                addr: addr.to_string(),
                detail: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        let connect_err = |e: tonic::transport::Error| NetError::Connect {
            addr: addr.to_string(),
            detail: std::error::Error::source(&e)
                .map_or_else(|| e.to_string(), ToString::to_string),
        };
        match self {
            Net::Tokio => endpoint.connect().await.map_err(connect_err),
            Net::Sim => endpoint
                .connect_with_connector(tower::service_fn(|uri: Uri| async move {
                    let host = uri.host().unwrap_or_default().to_string();
                    let port = uri.port_u16().unwrap_or(80);
                    let s = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
                    Ok::<_, io::Error>(TokioIo::new(NetStream::Sim(s)))
                }))
                .await
                .map_err(connect_err),
        }
    }
}
