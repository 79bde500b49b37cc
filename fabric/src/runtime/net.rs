//! The network seam: where node gRPC servers listen and how clients connect.
//!
//! `Net::Tokio` is real TCP (embedded live and processes modes). `Net::Sim` is the
//! deterministic simulation's in-process network: every node of a run lives in one
//! turmoil host, so a listener is an entry `(node, port)` in the run's
//! [`SimListeners`] table (next to its cable table, both reached through
//! [`sim`](super::sim)), and a connection is a [`tokio::io::duplex`] pipe handed to the
//! listening node. A node that is not listening, or whose crash domain crashed, refuses
//! connections; a crash severs its streams (their other ends see EOF or an error in the
//! same step). Node code is the same for both: it asks this module for a listener to
//! serve ([`super::server::serve`]) and for a `Channel`.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

use super::domain::{Domain, DomainExec};

/// Which network the node runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// Real TCP through the operating system.
    Tokio,
    /// The simulation's in-process network; only valid inside [`super::sim::run`].
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

/// Buffer of one direction of a simulated connection.
const SIM_PIPE_BYTES: usize = 1 << 20;

/// One end of a simulated connection: a duplex pipe that fails as soon as either
/// end's node crashed (even before the crashed node's tasks are dropped).
pub struct SimStream {
    io: DuplexStream,
    /// The crash domains of the two ends (`None`: the orchestrator, no domain).
    ends: [Option<Domain>; 2],
}

impl SimStream {
    fn severed(&self) -> bool {
        self.ends.iter().flatten().any(Domain::is_crashed)
    }

    fn reset() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionReset, "the node crashed")
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.severed() {
            return Poll::Ready(Err(Self::reset()));
        }
        Pin::new(&mut me.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.severed() {
            return Poll::Ready(Err(Self::reset()));
        }
        Pin::new(&mut me.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A simulated node's gRPC listener in a run's table.
struct SimListen {
    /// The life of the node that listens.
    domain: Domain,
    /// Where accepted connections go (the server end of each pipe).
    accept: mpsc::UnboundedSender<SimStream>,
}

impl SimListen {
    fn alive(&self) -> bool {
        !self.domain.is_crashed() && !self.accept.is_closed()
    }
}

/// The gRPC listeners of one simulated run, by node name and port.
#[derive(Default)]
pub struct SimListeners {
    table: Mutex<BTreeMap<(String, u16), SimListen>>,
}

impl std::fmt::Debug for SimListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimListeners")
            .field("listeners", &self.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SimListeners {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, u16), SimListen>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Listens on `port` of the node running in `domain`; taken while a live listener
    /// holds it. Entries of crashed lives are replaced.
    fn bind(&self, domain: Domain, port: u16) -> io::Result<SimListener> {
        let mut table = self.lock();
        let key = (domain.node().to_string(), port);
        if table.get(&key).is_some_and(SimListen::alive) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}:{port} is already listening", domain.node()),
            ));
        }
        let (accept, rx) = mpsc::unbounded_channel();
        let addr = format!("{}:{port}", domain.node());
        table.insert(key, SimListen { domain, accept });
        Ok(SimListener { rx, addr })
    }

    /// Opens a connection from `client` (its domain, if a node) to `node:port`.
    fn connect(&self, node: &str, port: u16, client: Option<Domain>) -> io::Result<SimStream> {
        let table = self.lock();
        let refused = || {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("{node}:{port} is not listening"),
            )
        };
        let l = table
            .get(&(node.to_string(), port))
            .filter(|l| l.alive())
            .ok_or_else(refused)?;
        let (mine, theirs) = tokio::io::duplex(SIM_PIPE_BYTES);
        let ends = [client, Some(l.domain.clone())];
        l.accept
            .send(SimStream {
                io: theirs,
                ends: ends.clone(),
            })
            .map_err(|_| refused())?;
        Ok(SimStream { io: mine, ends })
    }
}

/// A simulated node's bound listener: the connections opened to it.
pub struct SimListener {
    rx: mpsc::UnboundedReceiver<SimStream>,
    addr: String,
}

impl SimListener {
    /// The next connection; `None` when the run is over.
    pub async fn accept(&mut self) -> Option<SimStream> {
        self.rx.recv().await
    }
}

/// A stream accepted or opened on real TCP.
pub struct NetStream(tokio::net::TcpStream);

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl Connected for NetStream {
    type ConnectInfo = Option<SocketAddr>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.peer_addr().ok()
    }
}

/// A bound listener: real TCP, served by tonic, or a simulated node's
/// ([`super::server::serve`] serves both).
pub enum NetListener {
    Tokio(tokio::net::TcpListener),
    Sim(SimListener),
}

impl NetListener {
    /// The address actually bound (after port 0 was resolved); simulated listeners
    /// have no socket address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            NetListener::Tokio(l) => l.local_addr(),
            NetListener::Sim(l) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} is a simulated listener", l.addr),
            )),
        }
    }

    /// The bound address for messages: `ip:port`, or `node:port` in simulation.
    pub fn name(&self) -> String {
        match self {
            NetListener::Tokio(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            NetListener::Sim(l) => l.addr.clone(),
        }
    }
}

/// Accepted TCP connections as a stream for tonic. Accept errors end nothing: they are
/// yielded.
pub(crate) fn tcp_incoming(
    l: tokio::net::TcpListener,
) -> impl Stream<Item = io::Result<NetStream>> + Send + 'static {
    let (tx, rx) = mpsc::channel(16);
    super::domain::spawn(async move {
        loop {
            let accepted = l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                NetStream(s)
            });
            if tx.send(accepted).await.is_err() {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The port of `host:port`, if any.
fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok())
}

impl Net {
    /// Binds `addr` (`ip:port`; in simulation the ip part is ignored and the calling
    /// node's name is used).
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
                let port = port_of(addr).unwrap_or(0);
                let (Some(domain), Some(table)) = (Domain::current(), super::sim::listeners())
                else {
                    return Err(bind_err(io::Error::other(
                        "only a node of a simulated run may listen on its network",
                    )));
                };
                table
                    .bind(domain, port)
                    .map(NetListener::Sim)
                    .map_err(bind_err)
            }
        }
    }

    /// A gRPC channel to `addr` (`host:port`; in simulation `host` is a node name).
    /// Connects eagerly so that an unreachable node is an error here. In simulation
    /// the channel's tasks belong to the caller's crash domain.
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
            Net::Sim => {
                let table: Arc<SimListeners> =
                    super::sim::listeners().ok_or_else(|| NetError::Connect {
                        addr: addr.to_string(),
                        detail: "not inside a simulated run".into(),
                    })?;
                let exec = DomainExec::current();
                let me = exec.0.clone();
                endpoint
                    .executor(exec)
                    .connect_with_connector(tower::service_fn(move |uri: Uri| {
                        let host = uri.host().unwrap_or_default().to_string();
                        let port = uri.port_u16().unwrap_or(80);
                        let r = table.connect(&host, port, me.clone()).map(TokioIo::new);
                        std::future::ready(r)
                    }))
                    .await
                    .map_err(connect_err)
            }
        }
    }
}
