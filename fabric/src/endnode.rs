//! A minimal end node (a host, array or tape with N_Ports and nothing above FC-2): one
//! [`NPort`] per port doing fabric login, name-server registration, SCR and discovery
//! (FC-LS-3, FC-GS-7), driven by one actor, and the `fcsim.v1.Link` service so that the
//! switches can cable to it and clients can list its ports and make it log in to others.
//!
//! Start here: [`run_end_node`]. The actor loop is the only async code; everything it
//! decides comes from the sans-IO [`NPort`]s, and the pure helpers
//! ([`port_info`], [`parse_login_request`], [`login_response`]) shape the gRPC answers.
//! What sits above FC-2 is an [`Fc4Layer`]: `fcsim-devices` plugs in FCP initiators and
//! targets (hosts, arrays, tapes) with [`run_end_node_with`]; the plain [`run_end_node`]
//! has none and counts FCP frames as discards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fcsim_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;
use tonic::service::Routes;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::fcid::FcId;
use crate::frame::Frame;
use crate::nport::{LoginOutcome, LoginTarget, LoginTicket, NPort, NPortConfig, NPortEvent, Role};
use crate::runtime::clock::Alarm;
use crate::runtime::net::NetError;
use crate::runtime::ports::{PortSnapshot, warn_undecodable};
use crate::runtime::server::serve;
use crate::runtime::{FabricClock, LinkAdmin, LinkService, Net, PeerSpec, PortEvent, PortHub};
use crate::wwn::{Wwnn, Wwpn};

/// gRPC service name the end node serves (for health reporting).
pub const LINK_SERVICE: &str = "fcsim.v1.Link";

/// Node kinds an end node may present itself as.
pub const KINDS: [&str; 5] = ["host", "array", "tape", "virtualization", "relay"];

/// Default `timeout_ms` of a `PortLogin` request.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_millis(100);

/// Configuration of one end node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndNodeConfig {
    /// Node name; ports are named `name/port`. Non-empty, no `/`.
    pub name: String,
    /// What the node is: `host`, `array` or `tape` (shown by `ListPorts`).
    pub kind: String,
    /// The node's WWNN (FLOGI/PLOGI, RNN_ID).
    pub wwnn: Wwnn,
    /// One WWPN per port, port `i` has `port_wwpns[i]`; at least one, all distinct.
    pub port_wwpns: Vec<Wwpn>,
    /// FCP role of every port (RFF_ID features, PRLI function bits).
    pub role: Role,
    /// Address the node's gRPC server listens on (`host:port`).
    pub listen: String,
    /// Port index → far end of its cable; every key must be a port of this node.
    #[serde(default)]
    pub peers: BTreeMap<u32, PeerSpec>,
}

/// Errors that stop an end node from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndNodeError {
    /// The configuration is unusable.
    #[error("end node config: {field}: {detail}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The listener could not be bound.
    #[error(transparent)]
    Net(#[from] NetError),
}

fn invalid(field: &'static str, detail: impl Into<String>) -> EndNodeError {
    EndNodeError::InvalidConfig {
        field,
        detail: detail.into(),
    }
}

impl EndNodeConfig {
    /// Checks names, kind, ports and peers.
    pub fn validate(&self) -> Result<(), EndNodeError> {
        if self.name.is_empty() || self.name.contains('/') {
            return Err(invalid(
                "name",
                format!("`{}` must be non-empty without `/`", self.name),
            ));
        }
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(invalid(
                "kind",
                format!("`{}` is not one of {}", self.kind, KINDS.join(", ")),
            ));
        }
        if self.port_wwpns.is_empty() {
            return Err(invalid("port_wwpns", "an end node needs at least one port"));
        }
        let ports = self.port_count()?;
        let mut seen = BTreeSet::new();
        for w in &self.port_wwpns {
            if !seen.insert(*w) {
                return Err(invalid("port_wwpns", format!("{w} is given twice")));
            }
        }
        if self.listen.is_empty() {
            return Err(invalid("listen", "an address is required"));
        }
        if let Some(p) = self.peers.keys().find(|p| **p >= ports) {
            return Err(invalid(
                "peers",
                format!("port {p} does not exist ({} has {ports} ports)", self.name),
            ));
        }
        Ok(())
    }

    /// Number of ports, as the hub counts them.
    pub fn port_count(&self) -> Result<u32, EndNodeError> {
        u32::try_from(self.port_wwpns.len()).map_err(|_| invalid("port_wwpns", "too many ports"))
    }

    /// The N_Port configuration of every port: symbolic name `name/port`, OX_IDs
    /// starting at `(port mod 16) << 12 | 1` so traces tell the ports apart.
    pub fn nport_configs(&self) -> BTreeMap<u32, NPortConfig> {
        (0u32..)
            .zip(&self.port_wwpns)
            .map(|(port, wwpn)| {
                let mut c =
                    NPortConfig::new(*wwpn, self.wwnn, self.role, format!("{}/{port}", self.name));
                c.ox_id_base = (u16::try_from(port & 0xF).unwrap_or_default() << 12) | 1;
                (port, c)
            })
            .collect()
    }
}

/// The `PortInfo` of one port: identity from the N_Port, cable state and counters from
/// the hub snapshot.
pub fn port_info(node: &str, snap: &PortSnapshot, nport: &NPort) -> pb::PortInfo {
    let state = if !snap.enabled {
        "disabled"
    } else if snap.online {
        "online"
    } else if snap.peer.is_none() {
        "no-light"
    } else {
        "offline"
    };
    pb::PortInfo {
        port: snap.port,
        name: format!("{node}/{}", snap.port),
        wwpn: nport.config().wwpn.to_string(),
        fc_id: nport.fc_id().map(|f| f.to_string()).unwrap_or_default(),
        state: state.to_string(),
        peer: snap.peer.clone().unwrap_or_default(),
        port_type: "N".to_string(),
        counters: Some(snap.counters.into()),
        rscn_received: nport.rscn_count(),
        ns_view: nport
            .ns_view()
            .iter()
            .map(|(fc_id, wwpn)| pb::NsEntry {
                fc_id: fc_id.to_string(),
                wwpn: wwpn.map(|w| w.to_string()).unwrap_or_default(),
                fc4_types: vec!["FCP".to_string()],
                domain: u32::from(fc_id.domain()),
                // Switches give a base login area = switch port (see `login`).
                switch_port: u32::from(fc_id.area()),
                ..pb::NsEntry::default()
            })
            .collect(),
        logged_in: nport
            .logged_in()
            .iter()
            .map(|(fc_id, r)| format!("{fc_id} {}", r.wwpn))
            .collect(),
        crc_errors: 0,
        drop_every: 0,
    }
}

/// A checked `PortLogin` request: port, target and time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRequest {
    /// The local port that logs in.
    pub port: u32,
    /// Whom it logs in to.
    pub target: LoginTarget,
    /// Time limit for the whole GID_PN/PLOGI/PRLI sequence.
    pub timeout: Duration,
}

/// Checks a `PortLogin` request against the node's ports. Errors are
/// `invalid_argument` naming the field (`port`, `target_wwpn`, `target_fc_id`).
pub fn parse_login_request(
    node: &str,
    req: &pb::PortLoginRequest,
    ports: &BTreeMap<u32, NPort>,
) -> Result<LoginRequest, Status> {
    if !ports.contains_key(&req.port) {
        return Err(Status::invalid_argument(format!(
            "port: {} is not a port of {node} (it has {})",
            req.port,
            ports.len()
        )));
    }
    let target = match (req.target_wwpn.trim(), req.target_fc_id.trim()) {
        ("", "") => {
            return Err(Status::invalid_argument(
                "target_wwpn: give target_wwpn or target_fc_id",
            ));
        }
        (w, "") => LoginTarget::Wwpn(
            w.parse()
                .map_err(|e| Status::invalid_argument(format!("target_wwpn: {e}")))?,
        ),
        ("", f) => {
            let fc_id: FcId = f
                .parse()
                .map_err(|e| Status::invalid_argument(format!("target_fc_id: {e}")))?;
            if fc_id.is_well_known() || fc_id == FcId::UNIDENTIFIED {
                return Err(Status::invalid_argument(format!(
                    "target_fc_id: {fc_id} is not an N_Port address"
                )));
            }
            LoginTarget::FcId(fc_id)
        }
        _ => {
            return Err(Status::invalid_argument(
                "target_fc_id: give target_wwpn or target_fc_id, not both",
            ));
        }
    };
    let timeout = match req.timeout_ms {
        0 => DEFAULT_LOGIN_TIMEOUT,
        ms => Duration::from_millis(u64::from(ms)),
    };
    Ok(LoginRequest {
        port: req.port,
        target,
        timeout,
    })
}

/// The `PortLoginResponse` for a finished login.
pub fn login_response(outcome: &LoginOutcome, req: &LoginRequest) -> pb::PortLoginResponse {
    let known = match req.target {
        LoginTarget::FcId(f) => f.to_string(),
        LoginTarget::Wwpn(_) => String::new(),
    };
    let (outcome, detail, target) = match outcome {
        LoginOutcome::Accepted { fc_id } => (
            "accepted",
            "PLOGI and PRLI (FCP) accepted".to_string(),
            fc_id.to_string(),
        ),
        LoginOutcome::Rejected { reason } => ("rejected", reason.to_string(), known),
        LoginOutcome::NotFound => (
            "not-found",
            match req.target {
                LoginTarget::Wwpn(w) => format!("the name server has no visible port {w}"),
                LoginTarget::FcId(f) => format!("no port at {f}"),
            },
            known,
        ),
        LoginOutcome::Timeout => (
            "timeout",
            format!("no reply within {} ms", req.timeout.as_millis()),
            known,
        ),
    };
    pb::PortLoginResponse {
        outcome: outcome.to_string(),
        detail,
        target_fc_id: target,
    }
}

/// A `PortLogin` waiting for its `LoginDone`.
struct Waiter {
    req: LoginRequest,
    reply: oneshot::Sender<Result<pb::PortLoginResponse, Status>>,
}

/// What an end node runs above its N_Ports: the FC-4 layer (an FCP initiator, an FCP
/// target with its logical units, a tape drive). The actor calls it with every frame the
/// N_Port engine does not handle itself, every N_Port event, its own admin requests and
/// its timer; it sends frames and starts port logins through the [`Fc4Ctx`].
pub trait Fc4Layer: Send + 'static {
    /// Requests from the layer's own gRPC services.
    type Admin: Send + 'static;

    /// A frame the N_Port engine did not handle (FCP, BLS) arrived on `port`.
    fn on_frame(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, frame: Frame);

    /// Something happened on an N_Port (online, view updated, RSCN, login done, …).
    fn on_nport_event(&mut self, _ctx: &mut Fc4Ctx<'_>, _port: u32, _ev: &NPortEvent) {}

    /// The cable of `port` went down: every exchange on it is lost.
    fn on_link_down(&mut self, _ctx: &mut Fc4Ctx<'_>, _port: u32) {}

    /// A request from the layer's gRPC services.
    fn on_admin(&mut self, ctx: &mut Fc4Ctx<'_>, req: Self::Admin);

    /// The layer's deadline passed.
    fn on_timeout(&mut self, _ctx: &mut Fc4Ctx<'_>) {}

    /// The layer's next deadline in fabric time.
    fn poll_timeout(&self) -> Option<Duration> {
        None
    }
}

/// What an [`Fc4Layer`] may use while it handles one input.
pub struct Fc4Ctx<'a> {
    /// Fabric time now.
    pub now: Duration,
    /// Node name.
    pub node: &'a str,
    /// The node's cables.
    pub hub: &'a PortHub,
    /// The node's N_Ports by port index.
    pub ports: &'a mut BTreeMap<u32, NPort>,
}

impl Fc4Ctx<'_> {
    /// Sends `frame` out of `port`; false if the port has no cable.
    pub fn send(&self, port: u32, frame: &Frame) -> bool {
        self.hub.send(port, frame.encode())
    }
}

/// The layer of a node with nothing above FC-2: FCP frames are discarded.
pub struct NoFc4;

impl Fc4Layer for NoFc4 {
    type Admin = std::convert::Infallible;

    fn on_frame(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, frame: Frame) {
        debug!(
            r_ctl = frame.header.r_ctl,
            fc_type = frame.header.fc_type,
            "frame not handled by an end node"
        );
        ctx.hub.count_discard(port);
    }

    fn on_admin(&mut self, _ctx: &mut Fc4Ctx<'_>, req: Self::Admin) {
        match req {}
    }
}

/// The node's actor state: its N_Ports, its FC-4 layer, and the gRPC callers waiting.
struct EndNode<L: Fc4Layer> {
    /// Node name (`ListPorts`, logs).
    name: String,
    /// Node kind (`ListPorts`).
    kind: String,
    /// The cables.
    hub: PortHub,
    /// Fabric time.
    clock: FabricClock,
    /// One N_Port per port index.
    ports: BTreeMap<u32, NPort>,
    /// `PortLogin` calls by (port, ticket).
    waiters: BTreeMap<(u32, LoginTicket), Waiter>,
    /// What runs above FC-2.
    layer: L,
}

impl<L: Fc4Layer> EndNode<L> {
    fn next_deadline(&self) -> Option<Duration> {
        self.ports
            .values()
            .filter_map(NPort::poll_timeout)
            .chain(self.layer.poll_timeout())
            .min()
    }

    /// Runs `f` on the layer with a context over this node.
    fn with_layer(&mut self, f: impl FnOnce(&mut L, &mut Fc4Ctx<'_>)) {
        let mut ctx = Fc4Ctx {
            now: self.clock.now(),
            node: &self.name,
            hub: &self.hub,
            ports: &mut self.ports,
        };
        f(&mut self.layer, &mut ctx);
    }

    fn on_port_event(&mut self, ev: PortEvent) {
        let now = self.clock.now();
        match ev {
            PortEvent::Up { port, peer } => {
                if let Some(np) = self.ports.get_mut(&port) {
                    info!(port, %peer, "link up: FLOGI");
                    np.handle_link_up(now);
                }
            }
            PortEvent::Down { port } => {
                if let Some(np) = self.ports.get_mut(&port) {
                    info!(port, "link down: logins lost");
                    np.handle_link_down();
                }
                self.with_layer(|l, ctx| l.on_link_down(ctx, port));
            }
            PortEvent::Frame { port, frame } => {
                let Some(np) = self.ports.get_mut(&port) else {
                    return;
                };
                match Frame::decode(frame) {
                    Ok(f) => np.handle_frame(f, now),
                    Err(e) => {
                        warn_undecodable(&self.name, port, &e);
                        self.hub.count_discard(port);
                    }
                }
            }
        }
    }

    fn on_timeout(&mut self) {
        let now = self.clock.now();
        for np in self.ports.values_mut() {
            np.handle_timeout(now);
        }
        if self.layer.poll_timeout().is_some_and(|d| d <= now) {
            self.with_layer(|l, ctx| l.on_timeout(ctx));
        }
    }

    fn list_ports(&self) -> pb::ListPortsResponse {
        let ports = self
            .hub
            .snapshot()
            .iter()
            .filter_map(|s| {
                self.ports
                    .get(&s.port)
                    .map(|np| port_info(&self.name, s, np))
            })
            .collect();
        pb::ListPortsResponse {
            node: self.name.clone(),
            kind: self.kind.clone(),
            ports,
        }
    }

    fn on_admin(&mut self, admin: LinkAdmin) {
        match admin {
            LinkAdmin::ListPorts(reply) => {
                let _ = reply.send(self.list_ports());
            }
            LinkAdmin::PortLogin(req, reply) => {
                let req = match parse_login_request(&self.name, &req, &self.ports) {
                    Ok(r) => r,
                    Err(status) => {
                        let _ = reply.send(Err(status));
                        return;
                    }
                };
                let Some(np) = self.ports.get_mut(&req.port) else {
                    return; // checked by parse_login_request
                };
                info!(port = req.port, target = ?req.target, "port login requested");
                let ticket = np.login_to_within(req.target, req.timeout, self.clock.now());
                self.waiters
                    .insert((req.port, ticket), Waiter { req, reply });
            }
        }
    }

    /// Sends what the N_Ports want sent and hands their events to the waiters and the
    /// layer, until nothing more comes out (the layer may start new logins).
    fn flush(&mut self) {
        loop {
            let mut events = Vec::new();
            for (&port, np) in &mut self.ports {
                while let Some(f) = np.poll_transmit() {
                    if !self.hub.send(port, f.encode()) {
                        debug!(port, ox_id = f.header.ox_id, "frame not sent: no cable");
                    }
                }
                while let Some(ev) = np.poll_event() {
                    events.push((port, ev));
                }
            }
            if events.is_empty() {
                return;
            }
            for (port, ev) in events {
                self.on_nport_event(port, ev);
            }
        }
    }

    fn on_nport_event(&mut self, port: u32, ev: NPortEvent) {
        let fc_id = self
            .ports
            .get(&port)
            .and_then(NPort::fc_id)
            .map_or_else(|| "-".to_string(), |f| f.to_string());
        let _span = info_span!("nport", port, fc_id = %fc_id).entered();
        match &ev {
            NPortEvent::FabricLogin { fc_id } => info!(%fc_id, "fabric login accepted"),
            NPortEvent::Online => info!("registered with the name server; online"),
            NPortEvent::FabricLoginFailed { step } => {
                warn!(%step, "fabric login failed after retries")
            }
            NPortEvent::ViewUpdated { ports } => debug!(ports, "name-server view updated"),
            NPortEvent::Rscn { affected } => info!(?affected, "RSCN received"),
            NPortEvent::RemoteLogin { fc_id, wwpn } => {
                info!(remote = %fc_id, %wwpn, "remote port logged in")
            }
            NPortEvent::RemoteLogout { fc_id } => info!(remote = %fc_id, "remote port logged out"),
            NPortEvent::LoginDone { ticket, outcome } => {
                debug!(?outcome, "port login finished");
                if let Some(w) = self.waiters.remove(&(port, *ticket)) {
                    let _ = w.reply.send(Ok(login_response(outcome, &w.req)));
                    return;
                }
            }
            NPortEvent::Unhandled { .. } => {}
        }
        if let NPortEvent::Unhandled { frame } = ev {
            self.with_layer(|l, ctx| l.on_frame(ctx, port, frame));
        } else {
            self.with_layer(|l, ctx| l.on_nport_event(ctx, port, &ev));
        }
    }

    async fn run(
        mut self,
        mut port_rx: mpsc::UnboundedReceiver<PortEvent>,
        mut admin_rx: mpsc::UnboundedReceiver<LinkAdmin>,
        mut layer_rx: mpsc::UnboundedReceiver<L::Admin>,
    ) {
        let mut admin_open = true;
        let mut layer_open = true;
        let mut alarm = Alarm::new(self.clock);
        loop {
            alarm.arm(self.next_deadline());
            tokio::select! {
                biased;
                ev = port_rx.recv() => match ev {
                    Some(ev) => self.on_port_event(ev),
                    None => return,
                },
                admin = admin_rx.recv(), if admin_open => match admin {
                    Some(a) => self.on_admin(a),
                    None => admin_open = false,
                },
                req = layer_rx.recv(), if layer_open => match req {
                    Some(r) => self.with_layer(|l, ctx| l.on_admin(ctx, r)),
                    None => layer_open = false,
                },
                () = alarm.wait() => self.on_timeout(),
            }
            self.flush();
        }
    }
}

/// Aborts the task when dropped (so the server dies with the node's actor).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one end node with nothing above FC-2 until its task is dropped.
pub async fn run_end_node(
    cfg: EndNodeConfig,
    net: Net,
    clock: FabricClock,
) -> Result<(), EndNodeError> {
    let (_tx, rx) = mpsc::unbounded_channel();
    run_end_node_with(cfg, net, clock, NoFc4, None, rx, &[]).await
}

/// Runs one end node until its task is dropped: binds `cfg.listen`, serves
/// `fcsim.v1.Link` plus the layer's `routes` (and health and reflection), dials the
/// cables it opens, and drives one [`NPort`] per port with `layer` above them.
/// `layer_rx` carries the requests of the layer's own services.
pub async fn run_end_node_with<L: Fc4Layer>(
    cfg: EndNodeConfig,
    net: Net,
    clock: FabricClock,
    layer: L,
    routes: Option<Routes>,
    layer_rx: mpsc::UnboundedReceiver<L::Admin>,
    services: &[&'static str],
) -> Result<(), EndNodeError> {
    cfg.validate()?;
    let listener = net.bind(&cfg.listen).await?;
    let (hub, port_rx) = PortHub::new(&cfg.name, cfg.port_count()?, cfg.peers.clone(), clock, net);
    let (admin_tx, admin_rx) = mpsc::unbounded_channel();
    let link = pb::link_server::LinkServer::new(LinkService {
        hub: hub.clone(),
        admin: admin_tx,
    });
    let routes = match routes {
        Some(r) => r.add_service(link),
        None => Routes::new(link),
    };
    let mut names = vec![LINK_SERVICE];
    names.extend_from_slice(services);
    let node = cfg.name.clone();
    let _server = AbortOnDrop(crate::runtime::spawn(async move {
        if let Err(e) = serve(listener, routes, &names).await {
            warn!(node = %node, "gRPC server stopped: {e}");
        }
    }));
    hub.start_dialers();
    let span = info_span!("endnode", node = %cfg.name, kind = %cfg.kind);
    let actor = EndNode {
        name: cfg.name.clone(),
        kind: cfg.kind.clone(),
        hub,
        clock,
        ports: cfg
            .nport_configs()
            .into_iter()
            .map(|(p, c)| (p, NPort::new(c)))
            .collect(),
        waiters: BTreeMap::new(),
        layer,
    };
    info!(parent: &span, ports = actor.ports.len(), listen = %cfg.listen, "end node up");
    actor
        .run(port_rx, admin_rx, layer_rx)
        .instrument(span)
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nport::RejectReason;
    use crate::runtime::ports::Counters;
    use crate::wwn::Wwn;

    fn cfg() -> EndNodeConfig {
        let json = r#"{
            "name": "h1", "kind": "host", "wwnn": "20:00:00:00:c9:00:00:01",
            "port_wwpns": ["10:00:00:00:c9:00:00:01", "10:00:00:00:c9:00:00:02"],
            "role": "initiator", "listen": "h1:7000",
            "peers": {"0": {"name": "sw1/0", "port": 0, "addr": "sw1:7000", "dial": true,
                            "distance_km": 0.0, "gfc": 32}}
        }"#;
        serde_json::from_str(json).expect("config parses")
    }

    #[test]
    fn config_parses_validates_and_roundtrips() {
        let c = cfg();
        c.validate().expect("valid");
        assert_eq!(c.role, Role::Initiator);
        assert_eq!(c.peers[&0].name, "sw1/0");
        let back: EndNodeConfig =
            serde_json::from_str(&serde_json::to_string(&c).expect("ser")).expect("de");
        assert_eq!(back.port_wwpns, c.port_wwpns);
        assert_eq!(back.peers[&0].addr, "sw1:7000");
        let nc = c.nport_configs();
        assert_eq!(nc[&1].symbolic_name, "h1/1");
        assert_eq!((nc[&0].ox_id_base, nc[&1].ox_id_base), (0x0001, 0x1001));
        assert!(serde_json::from_str::<EndNodeConfig>(r#"{"name":"x","bogus":1}"#).is_err());
    }

    #[test]
    fn config_errors_name_the_field() {
        let field = |c: EndNodeConfig| match c.validate() {
            Err(EndNodeError::InvalidConfig { field, .. }) => field,
            other => panic!("expected invalid config, got {other:?}"),
        };
        let mut c = cfg();
        c.kind = "toaster".into();
        assert_eq!(field(c), "kind");
        let mut c = cfg();
        c.port_wwpns.push(c.port_wwpns[0]);
        assert_eq!(field(c), "port_wwpns");
        let mut c = cfg();
        let peer = c.peers[&0].clone();
        c.peers.insert(5, peer);
        assert_eq!(field(c), "peers");
        let mut c = cfg();
        c.name = "a/b".into();
        assert_eq!(field(c), "name");
    }

    fn ports() -> BTreeMap<u32, NPort> {
        cfg()
            .nport_configs()
            .into_iter()
            .map(|(p, c)| (p, NPort::new(c)))
            .collect()
    }

    #[test]
    fn login_requests_are_checked_field_by_field() {
        let ports = ports();
        let req = |port, w: &str, f: &str, ms| pb::PortLoginRequest {
            port,
            target_wwpn: w.into(),
            target_fc_id: f.into(),
            timeout_ms: ms,
        };
        let err = |r| {
            parse_login_request("h1", &r, &ports)
                .expect_err("rejected")
                .message()
                .to_string()
        };
        assert!(err(req(7, "", "010200", 0)).starts_with("port: 7"));
        assert!(err(req(0, "nope", "", 0)).starts_with("target_wwpn:"));
        assert!(err(req(0, "", "01020", 0)).starts_with("target_fc_id:"));
        assert!(err(req(0, "", "fffffc", 0)).starts_with("target_fc_id:"));
        assert!(err(req(0, "", "", 0)).starts_with("target_wwpn:"));
        assert!(err(req(0, "50:00:00:00:00:00:00:01", "010200", 0)).starts_with("target_fc_id:"));
        let ok = parse_login_request("h1", &req(1, "", "010200", 0), &ports).expect("ok");
        assert_eq!(ok.target, LoginTarget::FcId(FcId::new(0x01_0200)));
        assert_eq!(ok.timeout, DEFAULT_LOGIN_TIMEOUT);
        let ok = parse_login_request("h1", &req(0, "50:00:00:00:00:00:00:01", "", 30), &ports)
            .expect("ok");
        assert_eq!(
            ok.target,
            LoginTarget::Wwpn(Wwpn(Wwn(0x5000_0000_0000_0001)))
        );
        assert_eq!(ok.timeout, Duration::from_millis(30));
    }

    #[test]
    fn login_outcomes_map_to_proto_strings() {
        let req = LoginRequest {
            port: 0,
            target: LoginTarget::FcId(FcId::new(0x01_0200)),
            timeout: Duration::from_millis(100),
        };
        let r = login_response(
            &LoginOutcome::Accepted {
                fc_id: FcId::new(0x01_0200),
            },
            &req,
        );
        assert_eq!(
            (r.outcome.as_str(), r.target_fc_id.as_str()),
            ("accepted", "010200")
        );
        let r = login_response(&LoginOutcome::Timeout, &req);
        assert_eq!(
            (r.outcome.as_str(), r.detail.as_str()),
            ("timeout", "no reply within 100 ms")
        );
        let r = login_response(
            &LoginOutcome::Rejected {
                reason: RejectReason::Offline,
            },
            &req,
        );
        assert_eq!(r.outcome, "rejected");
        let wreq = LoginRequest {
            target: LoginTarget::Wwpn(Wwpn(Wwn(7))),
            ..req
        };
        let r = login_response(&LoginOutcome::NotFound, &wreq);
        assert_eq!(
            (r.outcome.as_str(), r.target_fc_id.as_str()),
            ("not-found", "")
        );
    }

    #[test]
    fn port_info_reports_identity_state_and_counters() {
        let ports = ports();
        let snap = PortSnapshot {
            port: 1,
            enabled: true,
            online: false,
            peer: Some("sw1/1".into()),
            counters: Counters {
                frames_in: 3,
                ..Counters::default()
            },
        };
        let info = port_info("h1", &snap, &ports[&1]);
        assert_eq!(info.name, "h1/1");
        assert_eq!(info.wwpn, "10:00:00:00:c9:00:00:02");
        assert_eq!((info.state.as_str(), info.fc_id.as_str()), ("offline", ""));
        assert_eq!(info.port_type, "N");
        assert_eq!(info.counters.map(|c| c.frames_in), Some(3));
        let disabled = PortSnapshot {
            enabled: false,
            ..snap.clone()
        };
        assert_eq!(port_info("h1", &disabled, &ports[&1]).state, "disabled");
        let unplugged = PortSnapshot { peer: None, ..snap };
        assert_eq!(port_info("h1", &unplugged, &ports[&1]).state, "no-light");
    }

    fn free_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr").to_string();
        drop(l);
        a
    }

    /// The actor wired to real cables: two end nodes back to back (no switch). Each
    /// FLOGI reaches the other N_Port, which rejects it (an N_Port is no login server),
    /// so fabric login fails after its retries; the Link service answers meanwhile.
    #[tokio::test]
    async fn two_end_nodes_back_to_back_over_loopback() {
        let (a_addr, b_addr) = (free_addr(), free_addr());
        let node = |name: &str, listen: &str, n: u64, peer: Option<PeerSpec>| EndNodeConfig {
            name: name.into(),
            kind: "host".into(),
            wwnn: Wwnn(Wwn(0x2000_0000_0000_0000 | n)),
            port_wwpns: vec![Wwpn(Wwn(0x1000_0000_0000_0000 | n))],
            role: Role::Initiator,
            listen: listen.into(),
            peers: peer.into_iter().map(|p| (0, p)).collect(),
        };
        let peer = PeerSpec {
            name: "b/0".into(),
            port: 0,
            addr: b_addr.clone(),
            dial: true,
            distance_km: 0.0,
            gfc: 32,
            capture: false,
            local_key: None,
        };
        let back = PeerSpec {
            name: "a/0".into(),
            dial: false,
            addr: a_addr.clone(),
            ..peer.clone()
        };
        let clock = FabricClock::Wall {
            epoch: std::time::SystemTime::now(),
        };
        let b = tokio::spawn(run_end_node(
            node("b", &b_addr, 2, Some(back)),
            Net::Tokio,
            clock,
        ));
        let a = tokio::spawn(run_end_node(
            node("a", &a_addr, 1, Some(peer)),
            Net::Tokio,
            clock,
        ));
        let mut client = loop {
            if let Ok(ch) = Net::Tokio.channel(&a_addr).await {
                break pb::link_client::LinkClient::new(ch);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let mut info = pb::PortInfo::default();
        for _ in 0..200 {
            let r = client
                .list_ports(pb::ListPortsRequest {})
                .await
                .expect("list ports")
                .into_inner();
            assert_eq!((r.node.as_str(), r.kind.as_str()), ("a", "host"));
            info = r.ports[0].clone();
            let out = info.counters.map_or(0, |c| c.frames_out);
            if info.state == "online" && out >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!((info.state.as_str(), info.peer.as_str()), ("online", "b/0"));
        assert_eq!(info.fc_id, "", "nobody assigned an address");
        assert!(info.counters.map_or(0, |c| c.frames_in) >= 4);
        let login = client
            .port_login(pb::PortLoginRequest {
                port: 0,
                target_fc_id: "010200".into(),
                ..Default::default()
            })
            .await
            .expect("port login")
            .into_inner();
        assert_eq!(login.outcome, "rejected");
        let bad = client
            .port_login(pb::PortLoginRequest {
                port: 3,
                target_fc_id: "010200".into(),
                ..Default::default()
            })
            .await
            .expect_err("no port 3");
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(bad.message().starts_with("port: 3"));
        a.abort();
        b.abort();
    }
}
