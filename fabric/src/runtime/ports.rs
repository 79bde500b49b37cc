//! A node's ports and their cables: the `fcsim.v1.Link` service and the port drivers.
//!
//! A cable is one `Link/Attach` bidirectional stream, opened by the dialing end (the `a`
//! end of the topology link), or a pair of in-process channels when both ends run in
//! this process: always in simulation (each run has its own [`LocalEnds`] table), and
//! live for the cables that carry a [`PeerSpec::local_key`]. Both kinds behave alike: a
//! disabled far port refuses the cable, a node that dies or cuts the cable ends it at
//! the other end (`PortEvent::Down`), and frames still on their way to the end that went
//! away are lost. `PortHub` owns, per port, the enabled flag, the live cable
//! (if any), the link model and the counters. It turns cable traffic into `PortEvent`s for
//! the node's actor and stamps every outgoing frame with its modelled arrival time; the
//! receiving driver holds each frame until that fabric time, so distance costs simulated
//! time only.
//!
//! **Capture taps.** A `Link/Capture` call (or a port armed at start with
//! [`PeerSpec::capture`]) adds a tap: every frame that leaves or reaches a tapped port
//! is copied (a `Bytes` clone, no byte copy) to the tap's channel with the fabric time
//! and its direction. A port records both directions of its own cable, so tapping one
//! end of each cable sees every frame on it exactly once. The frame is recorded when
//! it is sent (at the send time) and when it is received (at its modelled arrival), and
//! only if it really crossed the cable. With no tap, the send and receive paths pay one
//! `Vec::is_empty` under the lock they already hold.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use fcsim_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::clock::FabricClock;
use super::domain::{Domain, spawn};
use super::linkmodel::LinkModel;
use super::net::Net;
use crate::capture::Direction;

/// gRPC metadata: the callee's port index.
pub const PORT_HEADER: &str = "x-fcsim-port";
/// gRPC metadata: the caller's `node/port`.
pub const PEER_HEADER: &str = "x-fcsim-peer";

/// The far end of a port's cable, from the topology.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerSpec {
    /// `node/port` at the other end.
    pub name: String,
    /// Port index on the peer node.
    pub port: u32,
    /// The peer node's gRPC address.
    pub addr: String,
    /// This end opens the stream (the topology link's `a` end).
    pub dial: bool,
    /// Cable length.
    pub distance_km: f64,
    /// FC speed class of the cable.
    pub gfc: u32,
    /// Record this cable's frames from the node's start, for the first `Link/Capture`
    /// call with `from_start` (`fcsim run --pcap`), so that even the first FLOGI is in
    /// the capture.
    #[serde(default)]
    pub capture: bool,
    /// Names this cable the same at both ends when the two ends may run in one process
    /// (an intelligent switch's internal cables to its engine). Live, when the far end
    /// is in this process, the cable is an in-process channel instead of a loopback
    /// gRPC stream; in another process it is the usual stream. Unique among the cables
    /// of one process (it holds the dialing end's address). Simulation ignores it:
    /// there every cable is in-process, named after its dialing end.
    #[serde(default)]
    pub local_key: Option<String>,
}

/// What the cables tell the node's actor.
#[derive(Debug)]
pub enum PortEvent {
    /// A cable came up on `port`.
    Up { port: u32, peer: String },
    /// The cable on `port` went away (disabled, cut, or the peer died).
    Down { port: u32 },
    /// A whole frame (FC-2 bytes) arrived on `port`.
    Frame { port: u32, frame: Bytes },
}

/// Frame and byte counters of one port, as `portstatsshow` prints them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Discarded: no route, port down, unknown destination.
    pub discards: u64,
    /// Dropped at ingress by hard zoning.
    pub zoning_drops: u64,
}

struct Cable {
    /// Distinguishes this cable from an older one on the same port.
    id: u64,
    peer: String,
    tx: mpsc::UnboundedSender<pb::Frame>,
    model: LinkModel,
    reader: tokio::task::AbortHandle,
}

/// Where a cable's incoming frames come from.
enum Inbound {
    /// A `Link/Attach` gRPC stream (boxed: it is large, and moved once per cable).
    Grpc(Box<Streaming<pb::Frame>>),
    /// An in-process channel from a co-located peer ([`PeerSpec::local_key`]).
    Local(mpsc::UnboundedReceiver<pb::Frame>),
}

impl Inbound {
    /// The next frame; `None` when the cable is gone (or the stream failed).
    async fn next(&mut self) -> Option<pb::Frame> {
        match self {
            Inbound::Grpc(s) => s.next().await.and_then(Result::ok),
            Inbound::Local(rx) => rx.recv().await,
        }
    }
}

/// The accepting end of an in-process cable, as a [`LocalEnds`] registry holds it:
/// enough to rebuild the node's `PortHub` while the node lives, nothing that keeps it
/// alive.
struct LocalEnd {
    node: Arc<str>,
    clock: FabricClock,
    net: Net,
    state: std::sync::Weak<Mutex<HubState>>,
    events: mpsc::WeakUnboundedSender<PortEvent>,
    /// Where the node's tasks run: the cable's reader must run there, not where the
    /// dialer runs.
    home: Home,
    port: u32,
}

/// Where a node's tasks run: its crash domain in simulation (all nodes share one
/// runtime there), its own runtime live.
#[derive(Clone)]
enum Home {
    Domain(Domain),
    Runtime(tokio::runtime::Handle),
}

impl Home {
    /// The calling task's home; `None` outside a tokio runtime.
    fn here() -> Option<Home> {
        Domain::current().map(Home::Domain).or_else(|| {
            tokio::runtime::Handle::try_current()
                .ok()
                .map(Home::Runtime)
        })
    }

    /// Whether the node still runs there (a crashed domain does not).
    fn alive(&self) -> bool {
        match self {
            Home::Domain(d) => !d.is_crashed(),
            Home::Runtime(_) => true,
        }
    }

    fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Home::Domain(d) => d.spawn(fut),
            Home::Runtime(rt) => rt.spawn(fut),
        }
    }
}

/// Accepting ends of in-process cables by cable key, for the nodes that may reach each
/// other without the network.
///
/// Live, one table serves the whole process ([`LocalEnds::live`]): live nodes are
/// threads of it, and only cables with a [`PeerSpec::local_key`] use it. In simulation
/// every cable is in-process, and each simulated run has its own table
/// ([`sim::run`](super::sim::run) creates it and the run's nodes find it through
/// [`sim::cables`](super::sim::cables)), so that runs sharing a process (test
/// threads, property cases) never see each other's nodes.
#[derive(Default)]
pub struct LocalEnds {
    ends: Mutex<BTreeMap<String, LocalEnd>>,
}

impl std::fmt::Debug for LocalEnds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEnds")
            .field("ends", &self.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LocalEnds {
    /// The table of this process's live nodes.
    fn live() -> Arc<LocalEnds> {
        static LIVE: std::sync::LazyLock<Arc<LocalEnds>> =
            std::sync::LazyLock::new(|| Arc::new(LocalEnds::default()));
        LIVE.clone()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, LocalEnd>> {
        self.ends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct PortState {
    peer: Option<PeerSpec>,
    enabled: bool,
    cable: Option<Cable>,
    counters: Counters,
    /// Wakes the dialer when the port is enabled or its cable drops.
    wake: Arc<Notify>,
}

/// A frame that a capture tap recorded at a port.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Fabric time when the frame crossed the port: when it was sent, or its modelled
    /// arrival when it was received.
    pub at: Duration,
    /// The port it crossed.
    pub port: u32,
    /// Which way, seen from this node.
    pub direction: Direction,
    /// The frame as FC-2 bytes, shared with the frame that travels (not copied).
    pub fc2: Bytes,
}

/// One capture: the ports it records and where the records go.
struct Tap {
    /// Ports recorded; empty means every port.
    ports: BTreeSet<u32>,
    /// Closed when the capturer goes away; the tap is then dropped.
    tx: mpsc::UnboundedSender<Captured>,
}

struct HubState {
    ports: BTreeMap<u32, PortState>,
    next_cable: u64,
    /// Capture taps. Empty while nobody captures: the only thing the frame paths check.
    taps: Vec<Tap>,
    /// What the tap armed at start (ports with [`PeerSpec::capture`]) has recorded,
    /// until a `Capture` call with `from_start` takes it.
    armed: Option<mpsc::UnboundedReceiver<Captured>>,
}

impl HubState {
    /// Copies a frame that crossed `port` to every tap on that port, and drops the taps
    /// whose capturer is gone.
    fn tap(&mut self, at: Duration, port: u32, direction: Direction, fc2: &Bytes) {
        self.taps.retain(|t| {
            if !t.ports.is_empty() && !t.ports.contains(&port) {
                return true;
            }
            t.tx.send(Captured {
                at,
                port,
                direction,
                fc2: fc2.clone(),
            })
            .is_ok()
        });
    }
}

/// Shared by the node's actor, its Link service and its dialers. One lock per node;
/// nothing is shared between nodes.
#[derive(Clone)]
pub struct PortHub {
    node: Arc<str>,
    clock: FabricClock,
    net: Net,
    state: Arc<Mutex<HubState>>,
    events: mpsc::UnboundedSender<PortEvent>,
    /// Where this node's in-process cables meet their far ends: the process's table
    /// live, the run's table in simulation, none when this node cannot have any (a
    /// simulated node outside [`sim::run`](super::sim::run)).
    ends: Option<Arc<LocalEnds>>,
}

/// A snapshot of one port for views.
#[derive(Debug, Clone)]
pub struct PortSnapshot {
    pub port: u32,
    pub enabled: bool,
    pub online: bool,
    pub peer: Option<String>,
    pub counters: Counters,
}

impl PortHub {
    /// Creates the hub for `node` with ports `0..ports`; `peers` maps port → far end.
    /// Returns the hub and the receiver of its events (for the actor).
    pub fn new(
        node: &str,
        ports: u32,
        peers: BTreeMap<u32, PeerSpec>,
        clock: FabricClock,
        net: Net,
    ) -> (Self, mpsc::UnboundedReceiver<PortEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let mut taps = Vec::new();
        let mut armed = None;
        let armed_ports: BTreeSet<u32> = peers
            .iter()
            .filter(|(_, p)| p.capture)
            .map(|(port, _)| *port)
            .collect();
        if !armed_ports.is_empty() {
            let (tx, record) = mpsc::unbounded_channel();
            taps.push(Tap {
                ports: armed_ports,
                tx,
            });
            armed = Some(record);
        }
        let ports = (0..ports)
            .map(|p| {
                let st = PortState {
                    peer: peers.get(&p).cloned(),
                    enabled: true,
                    cable: None,
                    counters: Counters::default(),
                    wake: Arc::new(Notify::new()),
                };
                (p, st)
            })
            .collect();
        let hub = PortHub {
            node: node.into(),
            clock,
            net,
            state: Arc::new(Mutex::new(HubState {
                ports,
                next_cable: 0,
                taps,
                armed,
            })),
            events,
            ends: match net {
                Net::Tokio => Some(LocalEnds::live()),
                Net::Sim => super::sim::cables(),
            },
        };
        hub.register_local_ends(&peers);
        (hub, rx)
    }

    /// Enters this node's accepting ends of in-process cables in its table (replacing
    /// a dead node's entry for the same key) and drops the entries of nodes that are
    /// gone. Outside a tokio runtime there is nowhere to run readers: no entries.
    /// In simulation, the readers run in the node's crash domain.
    fn register_local_ends(&self, peers: &BTreeMap<u32, PeerSpec>) {
        let Some(table) = &self.ends else {
            return;
        };
        let Some(home) = Home::here() else {
            return;
        };
        let mut ends = table.lock();
        ends.retain(|_, e| e.state.strong_count() > 0 && e.home.alive());
        for (port, p) in peers {
            if let (Some(key), false) = (self.cable_key(*port, p), p.dial) {
                ends.insert(
                    key,
                    LocalEnd {
                        node: self.node.clone(),
                        clock: self.clock,
                        net: self.net,
                        state: Arc::downgrade(&self.state),
                        events: self.events.downgrade(),
                        home: home.clone(),
                        port: *port,
                    },
                );
            }
        }
    }

    /// The name both ends give the cable on `port` (whose far end is `peer`) in their
    /// table, if it may be in-process. Live: its [`PeerSpec::local_key`]. Simulated:
    /// every cable, named after its dialing end (`node/port`), unique in one run.
    fn cable_key(&self, port: u32, peer: &PeerSpec) -> Option<String> {
        match self.net {
            Net::Tokio => peer.local_key.clone(),
            Net::Sim if peer.dial => Some(format!("{}/{port}", self.node)),
            Net::Sim => Some(peer.name.clone()),
        }
    }

    /// The accepting end registered under `key` in `table`, if its node is alive, as
    /// its hub and port and where it runs.
    fn local_end(table: &Arc<LocalEnds>, key: &str) -> Option<(PortHub, u32, Home)> {
        let ends = table.lock();
        let e = ends.get(key).filter(|e| e.home.alive())?;
        let hub = PortHub {
            node: e.node.clone(),
            clock: e.clock,
            net: e.net,
            state: e.state.upgrade()?,
            events: e.events.upgrade()?,
            ends: Some(table.clone()),
        };
        Some((hub, e.port, e.home.clone()))
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A poisoned lock means a panic elsewhere in this node; keep serving the data.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn clock(&self) -> FabricClock {
        self.clock
    }

    /// Starts a dialer for every port whose cable this node opens.
    pub fn start_dialers(&self) {
        let dialing: Vec<(u32, PeerSpec, Arc<Notify>)> = self
            .lock()
            .ports
            .iter()
            .filter_map(|(p, st)| {
                st.peer
                    .clone()
                    .filter(|peer| peer.dial)
                    .map(|peer| (*p, peer, st.wake.clone()))
            })
            .collect();
        for (port, peer, wake) in dialing {
            let hub = self.clone();
            spawn(async move { hub.dial_loop(port, peer, wake).await });
        }
    }

    async fn dial_loop(self, port: u32, peer: PeerSpec, wake: Arc<Notify>) {
        let retry = match self.net {
            Net::Sim => Duration::from_micros(500),
            Net::Tokio => Duration::from_millis(200),
        };
        loop {
            let wants_cable = {
                let st = self.lock();
                st.ports
                    .get(&port)
                    .is_some_and(|p| p.enabled && p.cable.is_none())
            };
            if !wants_cable {
                wake.notified().await;
                continue;
            }
            match self.open_cable(port, &peer).await {
                Ok(()) => {}
                Err(e) => {
                    debug!(node = %self.node, port, peer = %peer.name, "cable not up: {e}");
                    tokio::select! {
                        biased;
                        () = wake.notified() => {}
                        () = self.clock.sleep(retry) => {}
                    }
                }
            }
        }
    }

    async fn open_cable(&self, port: u32, peer: &PeerSpec) -> Result<(), String> {
        if let Some(table) = &self.ends
            && let Some(key) = self.cable_key(port, peer)
        {
            match Self::local_end(table, &key) {
                Some((far, far_port, home)) => {
                    return self.open_local_cable(port, far, far_port, &home).await;
                }
                // Simulated, every node of the run is in the table while it lives: not
                // there means not up (where live would go on to the network).
                None if self.net == Net::Sim => {
                    return Err(format!("{} is not running", peer.name));
                }
                None => {}
            }
        }
        let channel = self
            .net
            .channel(&peer.addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut client = pb::link_client::LinkClient::new(channel);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut req = Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
        let md = req.metadata_mut();
        md.insert(
            PORT_HEADER,
            peer.port
                .to_string()
                .parse()
                .map_err(|_| "bad port metadata")?,
        );
        md.insert(
            PEER_HEADER,
            format!("{}/{port}", self.node)
                .parse()
                .map_err(|_| "bad peer metadata")?,
        );
        let inbound = client
            .attach(req)
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        self.install_cable(
            port,
            peer.name.clone(),
            tx,
            Inbound::Grpc(Box::new(inbound)),
        );
        Ok(())
    }

    /// Opens the cable on `port` as a pair of in-process channels to `far`, a node of
    /// this process whose port `far_port` accepts it, the way `Link/Attach` would (a
    /// disabled far port refuses). Each end's reader runs where its own node runs.
    async fn open_local_cable(
        &self,
        port: u32,
        far: PortHub,
        far_port: u32,
        far_home: &Home,
    ) -> Result<(), String> {
        let (to_far, far_in) = mpsc::unbounded_channel();
        let (to_me, my_in) = mpsc::unbounded_channel();
        let me = format!("{}/{port}", self.node);
        let (done, accepted) = oneshot::channel();
        far_home.spawn(async move {
            let r = far.accept_local(far_port, me, to_me, far_in);
            let _ = done.send(r);
        });
        accepted
            .await
            .map_err(|_| "the far node stopped".to_string())?
            .map_err(|s| s.message().to_string())?;
        let far_name = {
            let st = self.lock();
            st.ports
                .get(&port)
                .and_then(|p| p.peer.as_ref())
                .map(|p| p.name.clone())
                .unwrap_or_default()
        };
        self.install_cable(port, far_name, to_far, Inbound::Local(my_in));
        Ok(())
    }

    /// The accepting half of [`PortHub::open_local_cable`], where this node runs.
    fn accept_local(
        &self,
        port: u32,
        peer: String,
        tx: mpsc::UnboundedSender<pb::Frame>,
        inbound: mpsc::UnboundedReceiver<pb::Frame>,
    ) -> Result<(), Status> {
        self.check_accept(port)?;
        self.install_cable(port, peer, tx, Inbound::Local(inbound));
        Ok(())
    }

    /// Refuses a cable on a port this node does not have or has disabled.
    fn check_accept(&self, port: u32) -> Result<(), Status> {
        let st = self.lock();
        let ps = st.ports.get(&port).ok_or_else(|| {
            Status::invalid_argument(format!(
                "{PORT_HEADER}: {port} is not a port of {}",
                self.node
            ))
        })?;
        if !ps.enabled {
            return Err(Status::failed_precondition(format!(
                "port {}/{port} is disabled",
                self.node
            )));
        }
        Ok(())
    }

    /// Puts a new cable on `port`, replacing any older one, and starts its reader.
    fn install_cable(
        &self,
        port: u32,
        peer: String,
        tx: mpsc::UnboundedSender<pb::Frame>,
        inbound: Inbound,
    ) {
        let mut st = self.lock();
        st.next_cable += 1;
        let id = st.next_cable;
        let Some(ps) = st.ports.get_mut(&port) else {
            return;
        };
        let (km, gfc) = ps
            .peer
            .as_ref()
            .map_or((0.0, 32), |p| (p.distance_km, p.gfc));
        let replaced = ps.cable.take();
        let reader = spawn(self.clone().read_cable(port, id, inbound)).abort_handle();
        ps.cable = Some(Cable {
            id,
            peer: peer.clone(),
            tx,
            model: LinkModel::new(km, gfc),
            reader,
        });
        drop(st);
        if let Some(old) = replaced {
            old.reader.abort();
            let _ = self.events.send(PortEvent::Down { port });
        }
        info!(node = %self.node, port, %peer, "cable up");
        let _ = self.events.send(PortEvent::Up { port, peer });
    }

    async fn read_cable(self, port: u32, id: u64, mut inbound: Inbound) {
        while let Some(frame) = inbound.next().await {
            let arrive = Duration::from_nanos(frame.arrive_ns);
            // Live, modelled delays under the timer's 1 ms granularity are not slept
            // (DESIGN.md §2): loopback TCP already costs about that much.
            let now = self.clock.now();
            let worth =
                matches!(self.clock, FabricClock::Sim) || arrive >= now + Duration::from_millis(1);
            if arrive > now && worth {
                self.clock.sleep_until(arrive).await;
            }
            {
                let mut guard = self.lock();
                let st = &mut *guard;
                let Some(ps) = st.ports.get_mut(&port) else {
                    return;
                };
                if ps.cable.as_ref().map(|c| c.id) != Some(id) {
                    return;
                }
                ps.counters.frames_in += 1;
                ps.counters.bytes_in += frame.fc2.len() as u64;
                if !st.taps.is_empty() {
                    // Simulated: the modelled arrival. Wall clock: when it really came.
                    let at = match self.clock {
                        FabricClock::Sim => arrive.max(now),
                        FabricClock::Wall { .. } => self.clock.now(),
                    };
                    st.tap(at, port, Direction::Received, &frame.fc2);
                }
            }
            let _ = self.events.send(PortEvent::Frame {
                port,
                frame: frame.fc2,
            });
        }
        self.drop_cable(port, Some(id));
    }

    /// Removes the cable on `port` (only if it is cable `id`, when given).
    fn drop_cable(&self, port: u32, id: Option<u64>) {
        let mut st = self.lock();
        let Some(ps) = st.ports.get_mut(&port) else {
            return;
        };
        if ps.cable.is_none() || (id.is_some() && ps.cable.as_ref().map(|c| c.id) != id) {
            return;
        }
        if let Some(c) = ps.cable.take() {
            c.reader.abort();
        }
        ps.wake.notify_one();
        drop(st);
        info!(node = %self.node, port, "cable down");
        let _ = self.events.send(PortEvent::Down { port });
    }

    /// Sends one frame out of `port`. Returns false (and counts a discard) if the port
    /// has no cable.
    pub fn send(&self, port: u32, frame: Bytes) -> bool {
        let now = self.clock.now();
        let mut guard = self.lock();
        let st = &mut *guard;
        let copy = (!st.taps.is_empty()).then(|| frame.clone());
        let Some(ps) = st.ports.get_mut(&port) else {
            return false;
        };
        let Some(cable) = ps.cable.as_mut() else {
            ps.counters.discards += 1;
            return false;
        };
        let arrive = cable.model.transmit(now, frame.len());
        let len = frame.len() as u64;
        let arrive_ns = u64::try_from(arrive.as_nanos()).unwrap_or(u64::MAX);
        if cable
            .tx
            .send(pb::Frame {
                fc2: frame,
                arrive_ns,
            })
            .is_err()
        {
            ps.counters.discards += 1;
            return false;
        }
        ps.counters.frames_out += 1;
        ps.counters.bytes_out += len;
        if let Some(copy) = copy {
            st.tap(now, port, Direction::Sent, &copy);
        }
        true
    }

    /// Opens a capture tap on `ports` (empty = every port) and returns its records.
    /// With `from_start`, it returns instead the tap armed when the node started
    /// ([`PeerSpec::capture`]), which holds everything since then; only one caller gets
    /// it. The tap closes when the receiver is dropped.
    pub fn capture(
        &self,
        ports: &[u32],
        from_start: bool,
    ) -> Result<mpsc::UnboundedReceiver<Captured>, Status> {
        let mut st = self.lock();
        if let Some(p) = ports.iter().find(|p| !st.ports.contains_key(p)) {
            return Err(Status::invalid_argument(format!(
                "ports: {p} is not a port of {}",
                self.node
            )));
        }
        if from_start {
            return st.armed.take().ok_or_else(|| {
                Status::failed_precondition(format!(
                    "from_start: {} was not started with capture armed, or its record \
                     was already taken",
                    self.node
                ))
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        st.taps.push(Tap {
            ports: ports.iter().copied().collect(),
            tx,
        });
        Ok(rx)
    }

    /// Counts a frame this node discarded on arrival at `port`.
    pub fn count_discard(&self, port: u32) {
        if let Some(ps) = self.lock().ports.get_mut(&port) {
            ps.counters.discards += 1;
        }
    }

    /// Counts a frame dropped by hard zoning at ingress `port`.
    pub fn count_zoning_drop(&self, port: u32) {
        if let Some(ps) = self.lock().ports.get_mut(&port) {
            ps.counters.zoning_drops += 1;
        }
    }

    /// Enables or disables a port. Disabling drops its cable (link down at both ends).
    pub fn set_enabled(&self, port: u32, enabled: bool) -> Result<(), Status> {
        {
            let mut st = self.lock();
            let ps = st.ports.get_mut(&port).ok_or_else(|| {
                Status::invalid_argument(format!("port: {port} is not a port of {}", self.node))
            })?;
            ps.enabled = enabled;
            ps.wake.notify_one();
        }
        if !enabled {
            self.drop_cable(port, None);
        }
        Ok(())
    }

    pub fn snapshot(&self) -> Vec<PortSnapshot> {
        self.lock()
            .ports
            .iter()
            .map(|(p, st)| PortSnapshot {
                port: *p,
                enabled: st.enabled,
                online: st.cable.is_some(),
                peer: st
                    .cable
                    .as_ref()
                    .map(|c| c.peer.clone())
                    .or_else(|| st.peer.as_ref().map(|p| p.name.clone())),
                counters: st.counters,
            })
            .collect()
    }

    /// Serves an incoming `Attach`: validates the metadata and installs the cable.
    pub fn accept(
        &self,
        req: Request<Streaming<pb::Frame>>,
    ) -> Result<tokio_stream::wrappers::UnboundedReceiverStream<Result<pb::Frame, Status>>, Status>
    {
        let md = req.metadata();
        let port: u32 = md
            .get(PORT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Status::invalid_argument(format!("{PORT_HEADER}: missing or not a port number"))
            })?;
        let peer = md
            .get(PEER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Status::invalid_argument(format!("{PEER_HEADER}: missing")))?;
        self.check_accept(port)?;
        let (tx, rx) = mpsc::unbounded_channel::<pb::Frame>();
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Result<pb::Frame, Status>>();
        // Adapt the frame channel to tonic's Result items.
        spawn(async move {
            let mut rx = rx;
            while let Some(f) = rx.recv().await {
                if out_tx.send(Ok(f)).is_err() {
                    break;
                }
            }
        });
        self.install_cable(port, peer, tx, Inbound::Grpc(Box::new(req.into_inner())));
        Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(out_rx))
    }
}

/// Requests the Link service forwards to the node's actor.
#[derive(Debug)]
pub enum LinkAdmin {
    ListPorts(oneshot::Sender<pb::ListPortsResponse>),
    PortLogin(
        pb::PortLoginRequest,
        oneshot::Sender<Result<pb::PortLoginResponse, Status>>,
    ),
}

/// The `fcsim.v1.Link` service of one node.
pub struct LinkService {
    pub hub: PortHub,
    pub admin: mpsc::UnboundedSender<LinkAdmin>,
}

async fn ask<T>(
    admin: &mpsc::UnboundedSender<LinkAdmin>,
    make: impl FnOnce(oneshot::Sender<T>) -> LinkAdmin,
) -> Result<T, Status> {
    super::actor::ask(admin, "node", make).await
}

#[tonic::async_trait]
impl pb::link_server::Link for LinkService {
    type AttachStream = tokio_stream::wrappers::UnboundedReceiverStream<Result<pb::Frame, Status>>;

    async fn attach(
        &self,
        req: Request<Streaming<pb::Frame>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        self.hub.accept(req).map(Response::new)
    }

    async fn set_port(
        &self,
        req: Request<pb::SetPortRequest>,
    ) -> Result<Response<pb::PortInfo>, Status> {
        let r = req.into_inner();
        self.hub.set_enabled(r.port, r.enabled)?;
        let list = ask(&self.admin, LinkAdmin::ListPorts).await?;
        list.ports
            .into_iter()
            .find(|p| p.port == r.port)
            .map(Response::new)
            .ok_or_else(|| Status::invalid_argument(format!("port: {} not found", r.port)))
    }

    async fn list_ports(
        &self,
        _req: Request<pb::ListPortsRequest>,
    ) -> Result<Response<pb::ListPortsResponse>, Status> {
        ask(&self.admin, LinkAdmin::ListPorts)
            .await
            .map(Response::new)
    }

    async fn port_login(
        &self,
        req: Request<pb::PortLoginRequest>,
    ) -> Result<Response<pb::PortLoginResponse>, Status> {
        let r = req.into_inner();
        ask(&self.admin, |tx| LinkAdmin::PortLogin(r, tx))
            .await?
            .map(Response::new)
    }

    type CaptureStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::CapturedFrame, Status>> + Send>>;

    async fn capture(
        &self,
        req: Request<pb::CaptureRequest>,
    ) -> Result<Response<Self::CaptureStream>, Status> {
        let r = req.into_inner();
        let rx = self.hub.capture(&r.ports, r.from_start)?;
        let offset = self.hub.clock().unix_offset();
        let ports: BTreeSet<u32> = r.ports.into_iter().collect();
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .filter(move |c| ports.is_empty() || ports.contains(&c.port))
            .map(move |c| Ok(captured_pb(&c, offset)));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A captured frame for the wire, its time moved onto the Unix time line by `offset`
/// ([`FabricClock::unix_offset`]).
fn captured_pb(c: &Captured, offset: Duration) -> pb::CapturedFrame {
    pb::CapturedFrame {
        timestamp_ns: u64::try_from((offset + c.at).as_nanos()).unwrap_or(u64::MAX),
        port: c.port,
        direction: match c.direction {
            Direction::Received => pb::FrameDirection::Received,
            Direction::Sent => pb::FrameDirection::Sent,
        }
        .into(),
        fc2: c.fc2.clone(),
    }
}

impl From<Counters> for pb::PortCounters {
    fn from(c: Counters) -> Self {
        pb::PortCounters {
            frames_in: c.frames_in,
            frames_out: c.frames_out,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            discards: c.discards,
            zoning_drops: c.zoning_drops,
        }
    }
}

/// Logs (once) that a frame could not be decoded.
pub fn warn_undecodable(node: &str, port: u32, err: &dyn std::fmt::Display) {
    warn!(node, port, "undecodable frame discarded: {err}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(capture: bool) -> PeerSpec {
        PeerSpec {
            name: "h1/0".into(),
            port: 0,
            addr: "h1:7000".into(),
            dial: false,
            distance_km: 0.0,
            gfc: 32,
            capture,
            local_key: None,
        }
    }

    fn hub(armed: bool) -> PortHub {
        let peers = BTreeMap::from([(1, peer(armed)), (2, peer(false))]);
        let clock = FabricClock::Wall {
            epoch: std::time::UNIX_EPOCH,
        };
        PortHub::new("sw1", 4, peers, clock, Net::Tokio).0
    }

    #[test]
    fn capture_rejects_a_port_the_node_does_not_have() {
        let e = hub(false).capture(&[1, 9], false).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(e.message(), "ports: 9 is not a port of sw1");
    }

    #[test]
    fn the_record_since_start_exists_only_when_armed_and_goes_to_one_caller() {
        let e = hub(false).capture(&[], true).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().starts_with("from_start: "));
        let h = hub(true);
        assert!(h.capture(&[], true).is_ok());
        assert!(h.capture(&[], true).is_err());
    }

    /// Taps see only their ports, in order, the bytes shared; a tap whose receiver is
    /// gone is dropped, and then the frame paths see no tap at all.
    #[test]
    fn taps_record_their_ports_and_go_away_with_their_receiver() {
        let h = hub(true);
        let mut armed = h.capture(&[], true).unwrap();
        let mut all = h.capture(&[], false).unwrap();
        let frame = Bytes::from_static(&[0x22; 24]);
        {
            let mut st = h.lock();
            st.tap(Duration::from_micros(1), 1, Direction::Sent, &frame);
            st.tap(Duration::from_micros(2), 2, Direction::Received, &frame);
        }
        let a = armed.try_recv().unwrap();
        assert_eq!(
            (a.port, a.direction, a.at),
            (1, Direction::Sent, Duration::from_micros(1))
        );
        assert_eq!(a.fc2.as_ptr(), frame.as_ptr());
        assert!(armed.try_recv().is_err(), "port 2 is not armed");
        assert_eq!(all.try_recv().unwrap().port, 1);
        assert_eq!(all.try_recv().unwrap().port, 2);
        drop(armed);
        drop(all);
        let mut st = h.lock();
        st.tap(Duration::ZERO, 1, Direction::Sent, &frame);
        assert!(st.taps.is_empty());
    }
}
