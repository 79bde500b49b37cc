//! The plain FC switch node: F_Ports for N_Port logins, E_Ports (ISLs) to other switches,
//! the fabric services at the well-known addresses, hard zoning at ingress, and frame
//! forwarding by FSPF route.
//!
//! The protocol logic lives in the sans-IO cores ([`FabricLogin`], [`NameServer`],
//! [`ZoneDb`], [`Fspf`], [`ScrTable`]); this module is the wiring: it decodes frames,
//! calls the cores, encodes their answers and sends them through the [`PortHub`], and it
//! serves the `fcsim.v1.Switch` views. Switch-to-switch traffic is SW_ILS ([`crate::swils`]).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use fcsim_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::fcid::{DomainId, FcId};
use crate::frame::els::{
    AccPayload, AddressFormat, LsRjt, Rscn, RscnPage as ElsRscnPage, rjt_explanation, rjt_reason,
    rscn_event,
};
use crate::frame::{
    Els, FcHeader, Frame, Iu, NsAccept, NsRequest, NsResponse, ServiceParams, ftype, rctl,
};
use crate::fspf::{Fspf, FspfEvent, link_cost};
use crate::login::{FabricLogin, FlogiOutcome, LoggedOut};
use crate::nameserver::{
    DomainRecord, Entry, Fc4Features, NameServer, NsReject, NsReply, QueryScope,
};
use crate::rscn::{RscnDelivery, RscnPage, ScrFunction, ScrTable};
use crate::runtime::ports::warn_undecodable;
use crate::runtime::{FabricClock, LinkAdmin, LinkService, Net, PeerSpec, PortEvent, PortHub};
use crate::swils::SwIls;
use crate::wwn::{Wwnn, Wwpn};
use crate::zoning::{PortIdentity, ZoneDb, ZoneMember};

/// Everything a switch node needs to start. Built from the topology by the launcher.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwitchConfig {
    /// Node name (`sw1`).
    pub name: String,
    /// The switch WWN (also its fabric name in FLOGI ACC).
    pub wwn: Wwnn,
    /// Domain ID, fixed by the topology.
    pub domain: DomainId,
    /// Port WWPNs, one per port; their count is the port count (≤ 256).
    pub port_wwpns: Vec<Wwpn>,
    /// gRPC listen address.
    pub listen: String,
    /// Cabled ports and their far ends.
    pub peers: BTreeMap<u32, PeerSpec>,
    /// Ports whose far end is another switch (E_Ports).
    pub e_ports: BTreeSet<u32>,
    /// Zoning configuration in effect at start, if any.
    pub zoning: Option<ZoningConfig>,
}

/// A zoning configuration: named zones and the configuration that activates them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZoningConfig {
    /// Configuration name (`cfg`).
    pub cfg: String,
    /// Zones: name → members.
    pub zones: Vec<(String, Vec<ZoneMember>)>,
}

/// What the Switch service asks of the actor.
#[derive(Debug)]
enum SwitchAdmin {
    Show(oneshot::Sender<pb::SwitchShowResponse>),
    Fabric(oneshot::Sender<pb::FabricShowResponse>),
    Ns(String, oneshot::Sender<Result<pb::NsShowResponse, Status>>),
    Zones(oneshot::Sender<pb::ZoneShowResponse>),
    Activate(
        ZoningConfig,
        oneshot::Sender<Result<pb::ZoneShowResponse, Status>>,
    ),
    Deactivate(oneshot::Sender<pb::ZoneShowResponse>),
    Stats(
        Vec<u32>,
        oneshot::Sender<Result<pb::PortStatsShowResponse, Status>>,
    ),
    Routes(oneshot::Sender<pb::RouteShowResponse>),
    PortErrors(u32, u32, oneshot::Sender<Result<pb::PortInfo, Status>>),
}

/// A `port_errors` fault on one port: every `every`-th frame received for forwarding is
/// discarded, as a port with bit errors discards the frames that fail their CRC.
#[derive(Debug, Clone, Copy, Default)]
struct PortErrors {
    every: u32,
    /// Frames received for forwarding since the setting.
    seen: u64,
}

impl PortErrors {
    /// Counts one more frame received; whether it is the one to discard.
    fn discards_next(&mut self) -> bool {
        self.seen += 1;
        self.every != 0 && self.seen.is_multiple_of(u64::from(self.every))
    }
}

/// The switch's state: the cores plus what the wiring needs to remember.
struct SwitchNode {
    cfg: SwitchConfig,
    hub: PortHub,
    login: FabricLogin,
    ns: NameServer,
    zones: ZoneDb,
    fspf: Fspf,
    scr: ScrTable,
    /// Switch name and WWN per domain, learned from HLO and name-server records.
    switches: BTreeMap<DomainId, (String, Wwnn)>,
    /// The name-server entries visible fabric-wide at the last check (for RSCN diffs),
    /// per domain.
    visible: BTreeMap<DomainId, BTreeMap<FcId, Entry>>,
    /// The reachable domains at the last check.
    shown_reachable: BTreeSet<DomainId>,
    /// Our name-server record changed and must be flooded.
    ns_dirty: bool,
    /// OX_IDs for frames the switch originates.
    next_ox_id: u16,
    /// `port_errors` faults in force, by port.
    port_errors: BTreeMap<u32, PortErrors>,
    /// Frames discarded by `port_errors` faults, by port (kept after a clear).
    crc_errors: BTreeMap<u32, u64>,
}

/// Runs a switch node until its task is dropped.
pub async fn run_switch(cfg: SwitchConfig, net: Net, clock: FabricClock) {
    // Instrumented, never entered across an await: nodes share a runtime in simulation,
    // and an entered span would stay on while other nodes' tasks run.
    let span = info_span!("switch", node = %cfg.name, domain = %cfg.domain);
    switch_main(cfg, net, clock).instrument(span).await;
}

async fn switch_main(cfg: SwitchConfig, net: Net, clock: FabricClock) {
    let listener = match net.bind(&cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            warn!("{e}");
            return;
        }
    };
    let ports = u32::try_from(cfg.port_wwpns.len()).unwrap_or(u32::MAX);
    let (hub, mut port_rx) = PortHub::new(&cfg.name, ports, cfg.peers.clone(), clock, net);
    let (link_tx, mut link_rx) = mpsc::unbounded_channel();
    let (sw_tx, mut sw_rx) = mpsc::unbounded_channel();
    let routes = Routes::new(pb::link_server::LinkServer::new(LinkService {
        hub: hub.clone(),
        admin: link_tx,
    }))
    .add_service(pb::switch_server::SwitchServer::new(SwitchService {
        tx: sw_tx,
    }));
    crate::runtime::spawn(async move {
        if let Err(e) =
            crate::runtime::server::serve(listener, routes, &["fcsim.v1.Link", "fcsim.v1.Switch"])
                .await
        {
            warn!("{e}");
        }
    });
    hub.start_dialers();
    let mut node = SwitchNode::new(cfg, hub);
    loop {
        tokio::select! {
            biased;
            Some(ev) = port_rx.recv() => node.handle_port_event(ev),
            Some(a) = link_rx.recv() => node.handle_link_admin(a),
            Some(a) = sw_rx.recv() => node.handle_switch_admin(a),
            else => break,
        }
        // Frames that arrived together are handled as one batch, and what they changed
        // is flooded once: a burst of 40 registrations is one name-server record on each
        // ISL, not 40 (real switches coalesce the same way).
        while let Ok(ev) = port_rx.try_recv() {
            node.handle_port_event(ev);
        }
        node.after_input();
    }
}

impl SwitchNode {
    fn new(cfg: SwitchConfig, hub: PortHub) -> Self {
        let domain = cfg.domain;
        let ports = u16::try_from(cfg.port_wwpns.len()).unwrap_or(256);
        let mut zones = ZoneDb::new(domain);
        if let Some(z) = &cfg.zoning {
            if let Err(e) = apply_zoning(&mut zones, z) {
                warn!("initial zoning not applied: {e}");
            }
        }
        let mut switches = BTreeMap::new();
        switches.insert(domain, (cfg.name.clone(), cfg.wwn));
        SwitchNode {
            login: FabricLogin::new(domain, ports),
            ns: NameServer::new(domain),
            zones,
            fspf: Fspf::new(domain),
            scr: ScrTable::new(domain),
            switches,
            visible: BTreeMap::new(),
            shown_reachable: BTreeSet::new(),
            ns_dirty: false,
            next_ox_id: 0,
            port_errors: BTreeMap::new(),
            crc_errors: BTreeMap::new(),
            cfg,
            hub,
        }
    }

    fn domain(&self) -> DomainId {
        self.cfg.domain
    }

    fn ox_id(&mut self) -> u16 {
        self.next_ox_id = self.next_ox_id.wrapping_add(1) % 0xFFFF;
        self.next_ox_id
    }

    fn send(&self, port: u32, frame: &Frame) {
        self.hub.send(port, frame.encode());
    }

    // ---- inputs ------------------------------------------------------------------

    fn handle_port_event(&mut self, ev: PortEvent) {
        match ev {
            PortEvent::Up { port, peer } => {
                debug!(port, %peer, "port online");
                if self.cfg.e_ports.contains(&port) {
                    self.send_hello(port);
                }
            }
            PortEvent::Down { port } => {
                if self.cfg.e_ports.contains(&port) {
                    if let Ok(p) = u8::try_from(port) {
                        self.fspf.handle_isl_down(p);
                    }
                } else if let Ok(p) = u8::try_from(port) {
                    if let Ok(gone) = self.login.port_offline(p) {
                        for g in gone {
                            self.forget_login(&g);
                        }
                    }
                }
            }
            PortEvent::Frame { port, frame } => self.handle_frame(port, frame),
        }
    }

    fn handle_frame(&mut self, port: u32, bytes: Bytes) {
        let frame = match Frame::decode(bytes.clone()) {
            Ok(f) => f,
            Err(e) => {
                warn_undecodable(&self.cfg.name, port, &e);
                self.hub.count_discard(port);
                return;
            }
        };
        let h = frame.header;
        if self.cfg.e_ports.contains(&port) {
            if h.fc_type == ftype::SW_ILS {
                self.handle_sw_ils(port, &frame);
            } else {
                self.forward(port, bytes, &h);
            }
            return;
        }
        match h.d_id {
            FcId::FABRIC_LOGIN => self.handle_login_server(port, &frame),
            FcId::NAME_SERVER => self.handle_name_server(port, &frame),
            FcId::FABRIC_CONTROLLER => self.handle_fabric_controller(port, &frame),
            d if d.is_well_known() => self.hub.count_discard(port),
            _ => self.ingress_data(port, bytes, &h),
        }
    }

    /// A frame from an N_Port to another N_Port: anti-spoofing, hard zoning, forward.
    fn ingress_data(&mut self, port: u32, bytes: Bytes, h: &FcHeader) {
        let src_ok = self
            .login
            .by_fc_id(h.s_id)
            .is_some_and(|l| u32::from(l.port) == port);
        let (Some(src), Some(dst)) = (self.ns.entry(h.s_id), self.ns.entry(h.d_id)) else {
            self.hub.count_discard(port);
            return;
        };
        if !src_ok || !self.fspf.reachable_domains().contains(&dst.domain()) {
            self.hub.count_discard(port);
            return;
        }
        if !self
            .zones
            .permits(&PortIdentity::from(src), &PortIdentity::from(dst))
        {
            debug!(port, s_id = %h.s_id, d_id = %h.d_id, ox_id = h.ox_id, "hard zoning drop");
            self.hub.count_zoning_drop(port);
            return;
        }
        self.forward(port, bytes, h);
    }

    /// Sends a frame toward its D_ID: out of the F_Port it is logged in on, or along
    /// the FSPF route to its domain (exchange-based load sharing).
    fn forward(&mut self, in_port: u32, bytes: Bytes, h: &FcHeader) {
        if self.corrupted(in_port) {
            debug!(port = in_port, s_id = %h.s_id, d_id = %h.d_id, ox_id = h.ox_id, "CRC error: frame discarded");
            return;
        }
        let out = if h.d_id.domain() == self.domain().get() {
            self.login.by_fc_id(h.d_id).map(|l| u32::from(l.port))
        } else {
            DomainId::new(u32::from(h.d_id.domain()))
                .ok()
                .and_then(|d| self.fspf.route(d, h.s_id, h.d_id, h.ox_id))
                .map(u32::from)
        };
        match out {
            Some(p) if self.hub.send(p, bytes) => {}
            _ => self.hub.count_discard(in_port),
        }
    }

    /// Whether the frame just received on `port` for forwarding is one its
    /// `port_errors` fault discards (counted in `crc_errors`). Frames to the switch's own
    /// servers (logins, name server, FSPF) are not counted: the fault models lost
    /// payload traffic, not a flapping control plane.
    fn corrupted(&mut self, port: u32) -> bool {
        let Some(e) = self.port_errors.get_mut(&port) else {
            return false;
        };
        if e.discards_next() {
            *self.crc_errors.entry(port).or_default() += 1;
            true
        } else {
            false
        }
    }

    /// Sets (or with `every` 0 clears) the `port_errors` fault of `port`.
    fn set_port_errors(&mut self, port: u32, every: u32) -> Result<pb::PortInfo, Status> {
        if usize::try_from(port).map_or(true, |p| p >= self.cfg.port_wwpns.len()) {
            return Err(Status::invalid_argument(format!(
                "port: {port} is not a port of {}",
                self.cfg.name
            )));
        }
        if every == 0 {
            self.port_errors.remove(&port);
        } else {
            self.port_errors.insert(port, PortErrors { every, seen: 0 });
        }
        info!(port, drop_every = every, "port errors set");
        self.port_info()
            .into_iter()
            .find(|p| p.port == port)
            .ok_or_else(|| Status::internal(format!("port {port} has no state")))
    }

    // ---- F_Port services -----------------------------------------------------------

    fn reply_els(&self, port: u32, req: &FcHeader, els: &Els) {
        let h = req.reply(rctl::ELS_REPLY, req.ox_id);
        self.send(port, &Frame::els(h, els));
    }

    fn ls_rjt(&self, port: u32, req: &FcHeader, reason: u8, explanation: u8) {
        self.reply_els(port, req, &Els::LsRjt(LsRjt::new(reason, explanation)));
    }

    fn decode_els(&self, port: u32, frame: &Frame) -> Option<Els> {
        if frame.header.fc_type != ftype::ELS {
            return None;
        }
        match frame.iu(None) {
            Ok(Iu::Els(e)) => Some(e),
            Ok(_) => None,
            Err(e) => {
                warn_undecodable(&self.cfg.name, port, &e);
                None
            }
        }
    }

    fn handle_login_server(&mut self, port: u32, frame: &Frame) {
        let h = frame.header;
        let Some(els) = self.decode_els(port, frame) else {
            return self.hub.count_discard(port);
        };
        let Ok(p8) = u8::try_from(port) else { return };
        let outcome = match &els {
            Els::Flogi(sp) => self.login.handle_flogi(p8, sp.port_name, sp.node_name),
            Els::Fdisc(sp) => self.login.handle_fdisc(p8, sp.port_name, sp.node_name),
            Els::Logo(l) => {
                for g in self.login.handle_logo(l.n_port_id) {
                    self.forget_login(&g);
                }
                return self.reply_els(port, &h, &Els::Acc(AccPayload::Plain));
            }
            Els::Acc(_) | Els::LsRjt(_) => return,
            _ => {
                return self.ls_rjt(
                    port,
                    &h,
                    rjt_reason::COMMAND_NOT_SUPPORTED,
                    rjt_explanation::NONE,
                );
            }
        };
        let (Ok(FlogiOutcome::Accept { fc_id, replaced }), Els::Flogi(sp) | Els::Fdisc(sp)) =
            (&outcome, &els)
        else {
            if let Ok(FlogiOutcome::Reject { reason }) = outcome {
                let (r, e) = reason.ls_rjt_codes();
                self.ls_rjt(port, &h, r, e);
            }
            return;
        };
        for g in replaced {
            self.forget_login(g);
        }
        if let Err(e) = self
            .ns
            .register_login(*fc_id, sp.port_name, sp.node_name, p8)
        {
            warn!("name server refused a login: {e}");
        }
        self.ns_dirty = true;
        info!(port, fc_id = %fc_id, wwpn = %sp.port_name, "FLOGI accepted");
        let f_port = self
            .cfg
            .port_wwpns
            .get(port as usize)
            .copied()
            .unwrap_or_default();
        let acc = Els::Acc(AccPayload::Login(ServiceParams::flogi_acc(
            f_port,
            self.cfg.wwn,
        )));
        let mut rh = h.reply(rctl::ELS_REPLY, h.ox_id);
        rh.d_id = *fc_id;
        self.send(port, &Frame::els(rh, &acc));
    }

    fn forget_login(&mut self, gone: &LoggedOut) {
        self.ns.deregister(gone.fc_id);
        self.scr.deregister(gone.fc_id);
        self.ns_dirty = true;
        info!(fc_id = %gone.fc_id, wwpn = %gone.wwpn, "logged out");
    }

    /// PLOGI to a well-known server is accepted with the switch's parameters.
    fn accept_plogi(&self, port: u32, h: &FcHeader) {
        let wwpn = self
            .cfg
            .port_wwpns
            .get(port as usize)
            .copied()
            .unwrap_or_default();
        self.reply_els(
            port,
            h,
            &Els::Acc(AccPayload::Login(ServiceParams::plogi(wwpn, self.cfg.wwn))),
        );
    }

    fn handle_fabric_controller(&mut self, port: u32, frame: &Frame) {
        let h = frame.header;
        let Some(els) = self.decode_els(port, frame) else {
            return;
        };
        match els {
            Els::Scr(scr) => match ScrFunction::from_code(scr.function) {
                Some(f) if self.login.by_fc_id(h.s_id).is_some() => {
                    let _ = self.scr.register(h.s_id, f);
                    self.reply_els(port, &h, &Els::Acc(AccPayload::Plain));
                }
                _ => self.ls_rjt(
                    port,
                    &h,
                    rjt_reason::UNABLE_TO_PERFORM,
                    rjt_explanation::NONE,
                ),
            },
            Els::Plogi(_) => self.accept_plogi(port, &h),
            Els::Acc(_) | Els::LsRjt(_) => {} // answers to our RSCNs
            _ => self.ls_rjt(
                port,
                &h,
                rjt_reason::COMMAND_NOT_SUPPORTED,
                rjt_explanation::NONE,
            ),
        }
    }

    fn handle_name_server(&mut self, port: u32, frame: &Frame) {
        let h = frame.header;
        if h.fc_type == ftype::ELS {
            match self.decode_els(port, frame) {
                Some(Els::Plogi(_)) => self.accept_plogi(port, &h),
                Some(Els::Logo(_)) => self.reply_els(port, &h, &Els::Acc(AccPayload::Plain)),
                Some(Els::Acc(_) | Els::LsRjt(_)) | None => {}
                Some(_) => self.ls_rjt(
                    port,
                    &h,
                    rjt_reason::COMMAND_NOT_SUPPORTED,
                    rjt_explanation::NONE,
                ),
            }
            return;
        }
        let ct = match frame.iu(None) {
            Ok(Iu::Ct(ct)) => ct,
            _ => return self.hub.count_discard(port),
        };
        let resp = match NsRequest::from_ct(&ct) {
            Ok(req) => self.name_server_request(h.s_id, req),
            Err(e) => {
                debug!("malformed name-server request: {e}");
                NsResponse::reject(crate::frame::ct::ct_reason::INVALID_COMMAND, 0)
            }
        };
        let reply = h.reply(rctl::CT_REPLY, h.ox_id);
        self.send(port, &Frame::ct(reply, &resp.to_ct()));
    }

    fn name_server_request(&mut self, requester: FcId, req: NsRequest) -> NsResponse {
        let unable = |r: NsReject| NsResponse::reject(NsReject::REASON_UNABLE, r.explanation());
        fn done<T>(r: NsReply<T>, ok: impl FnOnce(T) -> NsAccept) -> NsResponse {
            match r {
                NsReply::Accept(v) => NsResponse::Accept(ok(v)),
                NsReply::Reject(r) => NsResponse::reject(NsReject::REASON_UNABLE, r.explanation()),
            }
        }
        // Registrations may only name the requester itself (FC-GS: the S_ID must match).
        let own = |id: FcId| id == requester;
        let reachable = self.fspf.reachable_domains().clone();
        let scope = QueryScope {
            requester,
            visibility: &self.zones,
            reachable: &reachable,
        };
        let resp = match req {
            NsRequest::GidPn { port_name } => {
                done(self.ns.gid_pn(&scope, port_name), NsAccept::GidPn)
            }
            NsRequest::GpnId { port_id } => done(self.ns.gpn_id(&scope, port_id), NsAccept::GpnId),
            NsRequest::GnnId { port_id } => done(self.ns.gnn_id(&scope, port_id), NsAccept::GnnId),
            NsRequest::GidFt {
                domain_scope,
                area_scope,
                fc4_type,
            } => {
                let r = self.ns.gid_ft(&scope, fc4_type);
                let r = match r {
                    NsReply::Accept(ids) => {
                        let ids: Vec<FcId> = ids
                            .into_iter()
                            .filter(|id| domain_scope == 0 || id.domain() == domain_scope)
                            .filter(|id| area_scope == 0 || id.area() == area_scope)
                            .collect();
                        if ids.is_empty() {
                            NsReply::Reject(NsReject::Fc4TypesNotRegistered)
                        } else {
                            NsReply::Accept(ids)
                        }
                    }
                    other => other,
                };
                done(r, NsAccept::GidFt)
            }
            NsRequest::GaNxt { port_id } => {
                match self.ns.ga_nxt(&scope, port_id) {
                    NsReply::Accept(e) => {
                        // The F_Port's name is known for ports on this switch only.
                        let fabric_port = (e.domain() == self.domain())
                            .then(|| self.cfg.port_wwpns.get(usize::from(e.switch_port)).copied())
                            .flatten()
                            .unwrap_or_default();
                        NsResponse::Accept(NsAccept::GaNxt(Box::new(port_object(&e, fabric_port))))
                    }
                    NsReply::Reject(r) => unable(r),
                }
            }
            NsRequest::RftId { port_id, fc4_types } if own(port_id) => {
                self.ns_dirty = true;
                done(
                    self.ns
                        .rft_id(port_id, (0..=255u8).filter(|t| fc4_types.contains(*t))),
                    |()| NsAccept::Empty,
                )
            }
            NsRequest::RffId {
                port_id,
                fc4_features,
                fc4_type,
            } if own(port_id) => {
                self.ns_dirty = true;
                done(
                    self.ns.rff_id(port_id, fc4_type, Fc4Features(fc4_features)),
                    |()| NsAccept::Empty,
                )
            }
            NsRequest::RnnId { port_id, node_name } if own(port_id) => {
                self.ns_dirty = true;
                done(self.ns.rnn_id(port_id, node_name), |()| NsAccept::Empty)
            }
            NsRequest::RspnId {
                port_id,
                symbolic_name,
            } if own(port_id) => {
                self.ns_dirty = true;
                let name = String::from_utf8_lossy(&symbolic_name).into_owned();
                done(self.ns.rspn_id(port_id, &name), |()| NsAccept::Empty)
            }
            NsRequest::RsnnNn {
                node_name,
                symbolic_name,
            } => {
                self.ns_dirty = true;
                let name = String::from_utf8_lossy(&symbolic_name).into_owned();
                done(self.ns.rsnn_nn(node_name, &name), |_| NsAccept::Empty)
            }
            NsRequest::RpnId { .. }
            | NsRequest::RftId { .. }
            | NsRequest::RffId { .. }
            | NsRequest::RnnId { .. }
            | NsRequest::RspnId { .. } => unable(NsReject::PortIdNotRegistered),
            NsRequest::Unsupported { command, .. } => {
                debug!(command, "unsupported name-server command");
                NsResponse::reject(crate::frame::ct::ct_reason::INVALID_COMMAND, 0)
            }
        };
        resp
    }

    // ---- E_Ports ----------------------------------------------------------------------

    fn sw_ils_frame(&mut self, payload: Bytes) -> Frame {
        let ox = self.ox_id();
        let h = FcHeader::request(
            rctl::UNSOLICITED_CONTROL,
            ftype::SW_ILS,
            FcId::FABRIC_CONTROLLER,
            FcId::domain_controller(self.domain()),
            ox,
        );
        Frame::new(h, payload)
    }

    fn send_sw_ils(&mut self, port: u32, msg: &SwIls) {
        self.send_sw_ils_payload(port, msg.encode());
    }

    /// Sends an encoded SW_ILS payload (shared, not copied) in a new exchange.
    fn send_sw_ils_payload(&mut self, port: u32, payload: Bytes) {
        let f = self.sw_ils_frame(payload);
        self.send(port, &f);
    }

    /// Sends one encoded payload on every ISL but `except` (the one it came in on).
    fn flood_sw_ils(&mut self, payload: &Bytes, except: Option<u32>) {
        for p in self.isl_ports() {
            if Some(p) != except {
                self.send_sw_ils_payload(p, payload.clone());
            }
        }
    }

    fn send_hello(&mut self, port: u32) {
        let hello = SwIls::Hello {
            origin: self.domain(),
            recipient: None,
            origin_port: u8::try_from(port).unwrap_or(u8::MAX),
            switch_wwn: self.cfg.wwn,
            switch_name: self.cfg.name.clone(),
        };
        self.send_sw_ils(port, &hello);
    }

    fn isl_ports(&self) -> Vec<u32> {
        self.fspf.isls().map(|(p, _, _)| u32::from(p)).collect()
    }

    fn ns_record_msg(&self, record: DomainRecord) -> SwIls {
        let (switch_name, switch_wwn) = self
            .switches
            .get(&record.domain)
            .cloned()
            .unwrap_or_default();
        SwIls::NsRecord {
            switch_name,
            switch_wwn,
            record,
        }
    }

    fn handle_sw_ils(&mut self, port: u32, frame: &Frame) {
        // A flooded name-server record or zoning database reaches us once per ISL: only
        // the first copy of each version is news, the others are dropped unparsed.
        if let Some((d, version)) = SwIls::peek_ns_record(&frame.payload)
            && !self.ns.takes(d, version)
        {
            return;
        }
        if let Some((generation, origin)) = SwIls::peek_zone_db(&frame.payload)
            && !self.zones.takes(generation, origin)
        {
            return;
        }
        let msg = match SwIls::decode(frame.payload.clone()) {
            Ok(m) => m,
            Err(e) => return warn_undecodable(&self.cfg.name, port, &e),
        };
        let Ok(p8) = u8::try_from(port) else { return };
        match msg {
            SwIls::Hello {
                origin,
                switch_wwn,
                switch_name,
                ..
            } => {
                self.switches.insert(origin, (switch_name, switch_wwn));
                let gfc = self.cfg.peers.get(&port).map_or(32, |p| p.gfc);
                match self.fspf.handle_isl_up(p8, origin, link_cost(gfc)) {
                    Ok(()) => {
                        info!(port, neighbor = %origin, "ISL up");
                        // A new neighbour learns everything we hold.
                        let mut records = vec![self.ns.local_record()];
                        records.extend(self.remote_records());
                        for r in records {
                            let m = self.ns_record_msg(r);
                            self.send_sw_ils(port, &m);
                        }
                        let z = SwIls::ZoneDb(self.zones.export());
                        self.send_sw_ils(port, &z);
                    }
                    Err(e) => warn!(port, "ISL refused: {e}"),
                }
            }
            SwIls::Lsu { lsrs, .. } => self.fspf.handle_lsu(p8, lsrs),
            SwIls::NsRecord {
                switch_name,
                switch_wwn,
                record,
            } => {
                if record.domain == self.domain() {
                    return;
                }
                self.switches
                    .insert(record.domain, (switch_name, switch_wwn));
                if self.ns.apply_remote(record) {
                    // Passed on as received: the same bytes, not a re-encoding.
                    self.flood_sw_ils(&frame.payload, Some(port));
                }
            }
            SwIls::ZoneDb(rec) => {
                let generation = rec.generation;
                if self.zones.apply_remote(rec) {
                    info!(generation, "zoning database updated from the fabric");
                    self.flood_sw_ils(&frame.payload, Some(port));
                    self.rscn_all();
                }
            }
            SwIls::Unsupported(code) => debug!(code, "unsupported SW_ILS ignored"),
        }
    }

    fn remote_records(&self) -> Vec<DomainRecord> {
        self.ns.remote_records().cloned().collect()
    }

    // ---- after every input -------------------------------------------------------------

    fn after_input(&mut self) {
        while let Some((port, lsrs)) = self.fspf.poll_transmit() {
            let m = SwIls::Lsu {
                origin: self.domain(),
                lsrs,
            };
            self.send_sw_ils(u32::from(port), &m);
        }
        while let Some(ev) = self.fspf.poll_event() {
            if let FspfEvent::ReachabilityChanged { gained, lost } = ev {
                for d in &lost {
                    self.ns.forget_domain(*d);
                }
                info!(?gained, ?lost, "fabric reachability changed");
            }
        }
        if self.ns_dirty {
            self.ns_dirty = false;
            let m = self.ns_record_msg(self.ns.local_record()).encode();
            self.flood_sw_ils(&m, None);
        }
        self.rscn_changes();
    }

    /// Compares the fabric-wide visible name-server entries with the last check and
    /// sends port-format RSCNs to the local registrants that may see each change.
    ///
    /// Only the domains whose entries changed (as the name server reports) or whose
    /// reachability changed are compared, so the cost follows the change, not the size
    /// of the fabric. The affected entries come in the same order as a full comparison
    /// would give: changed or new ones in FC_ID order, then removed ones in FC_ID order.
    fn rscn_changes(&mut self) {
        let reachable = self.fspf.reachable_domains().clone();
        let mut dirty = self.ns.take_changed();
        if reachable != self.shown_reachable {
            dirty.extend(
                reachable
                    .symmetric_difference(&self.shown_reachable)
                    .copied(),
            );
            self.shown_reachable.clone_from(&reachable);
        }
        if dirty.is_empty() {
            return;
        }
        let mut changed: Vec<Entry> = Vec::new();
        let mut removed: Vec<Entry> = Vec::new();
        for d in dirty {
            let now: BTreeMap<FcId, Entry> = if reachable.contains(&d) {
                self.ns
                    .domain_entries(d)
                    .map(|e| (e.fc_id, e.clone()))
                    .collect()
            } else {
                BTreeMap::new()
            };
            let before = self.visible.remove(&d).unwrap_or_default();
            changed.extend(
                now.iter()
                    .filter(|(id, e)| before.get(id) != Some(e))
                    .map(|(_, e)| e.clone()),
            );
            removed.extend(
                before
                    .iter()
                    .filter(|(id, _)| !now.contains_key(id))
                    .map(|(_, e)| e.clone()),
            );
            if !now.is_empty() {
                self.visible.insert(d, now);
            }
        }
        changed.extend(removed);
        let mut per_recipient: BTreeMap<FcId, Vec<FcId>> = BTreeMap::new();
        for affected in &changed {
            let delivery = self.scr.recipients_for_port(affected.fc_id, |r| {
                self.ns
                    .entry(r)
                    .is_some_and(|re| self.zones.permits(&re.into(), &affected.into()))
            });
            for r in delivery.recipients {
                per_recipient.entry(r).or_default().push(affected.fc_id);
            }
        }
        for (recipient, ids) in per_recipient {
            let pages = ids
                .into_iter()
                .map(|id| els_page(RscnPage::Port(id)))
                .collect();
            self.send_rscn(recipient, pages);
        }
    }

    /// A fabric-format RSCN to every local registrant (zoning changes).
    fn rscn_all(&mut self) {
        let RscnDelivery { page, recipients } = self.scr.recipients_all();
        for r in recipients {
            self.send_rscn(r, vec![els_page(page)]);
        }
    }

    fn send_rscn(&mut self, to: FcId, pages: Vec<ElsRscnPage>) {
        let Some(port) = self.login.by_fc_id(to).map(|l| u32::from(l.port)) else {
            return;
        };
        let ox = self.ox_id();
        let h = FcHeader::request(
            rctl::ELS_REQUEST,
            ftype::ELS,
            to,
            FcId::FABRIC_CONTROLLER,
            ox,
        );
        debug!(%to, "RSCN");
        self.send(port, &Frame::els(h, &Els::Rscn(Rscn { pages })));
    }

    // ---- admin -------------------------------------------------------------------------

    fn port_info(&self) -> Vec<pb::PortInfo> {
        self.hub
            .snapshot()
            .into_iter()
            .map(|s| {
                let p8 = u8::try_from(s.port).unwrap_or(u8::MAX);
                let isl = self.fspf.isls().find(|(p, _, _)| *p == p8);
                let base = self.login.on_port(p8).next();
                let port_type = if isl.is_some() || self.cfg.e_ports.contains(&s.port) {
                    "E"
                } else if base.is_some() {
                    "F"
                } else {
                    "U"
                };
                let state = if !s.enabled {
                    "disabled"
                } else if s.online {
                    "online"
                } else {
                    "no-light"
                };
                pb::PortInfo {
                    port: s.port,
                    name: format!("{}/{}", self.cfg.name, s.port),
                    wwpn: self
                        .cfg
                        .port_wwpns
                        .get(s.port as usize)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    fc_id: base.map(|l| l.fc_id.to_string()).unwrap_or_default(),
                    state: state.into(),
                    peer: s.peer.unwrap_or_default(),
                    port_type: port_type.into(),
                    counters: Some(s.counters.into()),
                    logged_in: self
                        .login
                        .on_port(p8)
                        .map(|l| format!("{} {}", l.fc_id, l.wwpn))
                        .collect(),
                    crc_errors: self.crc_errors.get(&s.port).copied().unwrap_or(0),
                    drop_every: self.port_errors.get(&s.port).map_or(0, |e| e.every),
                    ..Default::default()
                }
            })
            .collect()
    }

    fn handle_link_admin(&mut self, a: LinkAdmin) {
        match a {
            LinkAdmin::ListPorts(tx) => {
                let _ = tx.send(pb::ListPortsResponse {
                    node: self.cfg.name.clone(),
                    kind: "switch".into(),
                    ports: self.port_info(),
                });
            }
            LinkAdmin::PortLogin(_, tx) => {
                let _ = tx.send(Err(Status::failed_precondition(
                    "switch ports do not log in to targets; use an end node",
                )));
            }
        }
    }

    fn zone_show(&self) -> pb::ZoneShowResponse {
        let zones = match self.zones.active() {
            Some(a) => a.zones.iter().map(|(n, m)| zone_pb(n, m.iter())).collect(),
            None => self
                .zones
                .zones()
                .iter()
                .map(|(n, m)| zone_pb(n, m.iter()))
                .collect(),
        };
        pb::ZoneShowResponse {
            active_cfg: self
                .zones
                .active()
                .map(|a| a.name.clone())
                .unwrap_or_default(),
            zones,
            generation: self.zones.generation(),
        }
    }

    fn ns_entry_pb(e: &Entry) -> pb::NsEntry {
        let mut features = Vec::new();
        if let Some(f) = e.fc4_features.get(&crate::nameserver::FC4_TYPE_FCP) {
            if f.is_initiator() {
                features.push("initiator".into());
            }
            if f.is_target() {
                features.push("target".into());
            }
        }
        pb::NsEntry {
            fc_id: e.fc_id.to_string(),
            wwpn: e.wwpn.to_string(),
            wwnn: e.wwnn.to_string(),
            fc4_types: e
                .fc4_types
                .iter()
                .map(|t| {
                    if *t == 8 {
                        "FCP".into()
                    } else {
                        format!("0x{t:02x}")
                    }
                })
                .collect(),
            features,
            symbolic_name: e.symbolic_port_name.clone(),
            domain: u32::from(e.domain().get()),
            switch_port: u32::from(e.switch_port),
        }
    }

    fn handle_switch_admin(&mut self, a: SwitchAdmin) {
        match a {
            SwitchAdmin::Show(tx) => {
                let reachable = self.fspf.reachable_domains();
                let online = self.switches.keys().all(|d| reachable.contains(d));
                let _ = tx.send(pb::SwitchShowResponse {
                    name: self.cfg.name.clone(),
                    wwn: self.cfg.wwn.to_string(),
                    domain: u32::from(self.domain().get()),
                    state: if online { "Online" } else { "Segmented" }.into(),
                    principal: self.principal() == Some(self.domain()),
                    ports: self.port_info(),
                });
            }
            SwitchAdmin::Fabric(tx) => {
                let reachable = self.fspf.reachable_domains();
                let principal = self.principal();
                let switches = self
                    .switches
                    .iter()
                    .map(|(d, (name, wwn))| pb::FabricSwitch {
                        domain: u32::from(d.get()),
                        wwn: wwn.to_string(),
                        name: name.clone(),
                        principal: principal == Some(*d),
                        reachable: reachable.contains(d),
                    })
                    .collect();
                let isl_ports = self.isl_ports();
                let _ = tx.send(pb::FabricShowResponse {
                    switches,
                    isl_ports,
                });
            }
            SwitchAdmin::Ns(as_wwpn, tx) => {
                let reachable = self.fspf.reachable_domains();
                let visible = self
                    .ns
                    .all_entries()
                    .filter(|e| reachable.contains(&e.domain()));
                let r = if as_wwpn.is_empty() {
                    Ok(visible.map(Self::ns_entry_pb).collect())
                } else {
                    match as_wwpn.parse::<Wwpn>() {
                        Err(e) => Err(Status::invalid_argument(format!("as_wwpn: {e}"))),
                        Ok(w) => match self.ns.all_entries().find(|e| e.wwpn == w) {
                            None => Ok(Vec::new()),
                            Some(me) => Ok(visible
                                .filter(|e| {
                                    e.fc_id == me.fc_id
                                        || self.zones.permits(&me.into(), &(*e).into())
                                })
                                .map(Self::ns_entry_pb)
                                .collect()),
                        },
                    }
                };
                let _ = tx.send(r.map(|entries| pb::NsShowResponse { entries }));
            }
            SwitchAdmin::Zones(tx) => {
                let _ = tx.send(self.zone_show());
            }
            SwitchAdmin::Activate(z, tx) => {
                let r = apply_zoning(&mut self.zones, &z)
                    .map_err(|e| Status::invalid_argument(format!("zones: {e}")));
                if r.is_ok() {
                    info!(cfg = %z.cfg, generation = self.zones.generation(), "zoning configuration activated");
                    self.flood_zoning();
                }
                let _ = tx.send(r.map(|()| self.zone_show()));
            }
            SwitchAdmin::Deactivate(tx) => {
                if self.zones.deactivate() {
                    self.flood_zoning();
                }
                let _ = tx.send(self.zone_show());
            }
            SwitchAdmin::Stats(ports, tx) => {
                let all = self.port_info();
                let r = match ports.iter().find(|p| !all.iter().any(|i| i.port == **p)) {
                    Some(bad) => Err(Status::invalid_argument(format!(
                        "ports: {bad} is not a port of {}",
                        self.cfg.name
                    ))),
                    None => Ok(all
                        .into_iter()
                        .filter(|i| ports.is_empty() || ports.contains(&i.port))
                        .collect()),
                };
                let _ = tx.send(r.map(|ports| pb::PortStatsShowResponse { ports }));
            }
            SwitchAdmin::PortErrors(port, every, tx) => {
                let _ = tx.send(self.set_port_errors(port, every));
            }
            SwitchAdmin::Routes(tx) => {
                let routes = self
                    .fspf
                    .routes()
                    .map(|(d, r)| pb::Route {
                        dest_domain: u32::from(d.get()),
                        cost: r.cost,
                        next_hops: r
                            .next_hops
                            .iter()
                            .map(|h| pb::NextHop {
                                port: u32::from(h.port),
                                neighbor_domain: u32::from(h.neighbor.get()),
                            })
                            .collect(),
                    })
                    .collect();
                let _ = tx.send(pb::RouteShowResponse { routes });
            }
        }
    }

    fn flood_zoning(&mut self) {
        let m = SwIls::ZoneDb(self.zones.export()).encode();
        self.flood_sw_ils(&m, None);
        self.rscn_all();
    }

    /// The principal switch: the lowest WWN among the reachable switches (FC-SW-6 §7).
    fn principal(&self) -> Option<DomainId> {
        let reachable = self.fspf.reachable_domains();
        self.switches
            .iter()
            .filter(|(d, _)| reachable.contains(d))
            .min_by_key(|(_, (_, w))| *w)
            .map(|(d, _)| *d)
    }
}

/// The wire form of an RSCN page (FC-LS-3 §4.3.27).
fn els_page(page: RscnPage) -> ElsRscnPage {
    let format = match page {
        RscnPage::Port(_) => AddressFormat::Port,
        RscnPage::Area { .. } => AddressFormat::Area,
        RscnPage::Domain(_) => AddressFormat::Domain,
        RscnPage::Fabric => AddressFormat::Fabric,
    };
    ElsRscnPage {
        format,
        event_qualifier: rscn_event::NAME_SERVER_OBJECT,
        fc_id: page.affected(),
    }
}

fn zone_pb<'a>(name: &str, members: impl Iterator<Item = &'a ZoneMember>) -> pb::Zone {
    pb::Zone {
        name: name.to_string(),
        members: members.map(ToString::to_string).collect(),
    }
}

/// Replaces the defined zoning database with `z`'s zones and configuration and
/// activates it (FOS `cfgclear; zonecreate …; cfgcreate; cfgenable`).
fn apply_zoning(db: &mut ZoneDb, z: &ZoningConfig) -> Result<(), crate::zoning::ZoningError> {
    let cfgs: Vec<String> = db.cfgs().keys().cloned().collect();
    for c in cfgs {
        db.delete_cfg(&c)?;
    }
    let zones: Vec<String> = db.zones().keys().cloned().collect();
    for name in zones {
        db.delete_zone(&name)?;
    }
    for (name, members) in &z.zones {
        db.define_zone(name, members.iter().copied())?;
    }
    db.define_cfg(&z.cfg, z.zones.iter().map(|(n, _)| n.as_str()))?;
    db.activate(&z.cfg)
}

fn port_object(e: &Entry, fabric_port: Wwpn) -> crate::frame::ct::PortObject {
    use crate::frame::ct::{Fc4Types, PortObject, class_of_service};
    let types = e
        .fc4_types
        .iter()
        .fold(Fc4Types::default(), |t, ty| t.with(*ty));
    PortObject {
        port_type: e.port_type.code(),
        port_id: e.fc_id,
        port_name: e.wwpn,
        symbolic_port_name: Bytes::from(e.symbolic_port_name.clone().into_bytes()),
        node_name: e.wwnn,
        symbolic_node_name: Bytes::from(e.symbolic_node_name.clone().into_bytes()),
        initial_process_associator: [0; 8],
        node_ip_address: [0; 16],
        class_of_service: class_of_service::CLASS_3,
        fc4_types: types,
        port_ip_address: [0; 16],
        fabric_port_name: fabric_port,
        hard_address: FcId::new(0),
    }
}

/// The `fcsim.v1.Switch` service: forwards to the actor and waits for its answer.
struct SwitchService {
    tx: mpsc::UnboundedSender<SwitchAdmin>,
}

impl SwitchService {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> SwitchAdmin,
    ) -> Result<T, Status> {
        crate::runtime::actor::ask(&self.tx, "switch", make).await
    }
}

fn parse_zones(zones: Vec<pb::Zone>, cfg: String) -> Result<ZoningConfig, Status> {
    if cfg.is_empty() {
        return Err(Status::invalid_argument("cfg_name: must not be empty"));
    }
    if zones.is_empty() {
        return Err(Status::invalid_argument(
            "zones: at least one zone is required",
        ));
    }
    let mut out = Vec::new();
    for (i, z) in zones.into_iter().enumerate() {
        let members = z
            .members
            .iter()
            .map(|m| {
                m.parse::<ZoneMember>().map_err(|e| {
                    Status::invalid_argument(format!("zones[{i}].members: `{m}`: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push((z.name, members));
    }
    Ok(ZoningConfig { cfg, zones: out })
}

#[tonic::async_trait]
impl pb::switch_server::Switch for SwitchService {
    async fn switch_show(
        &self,
        _r: Request<pb::SwitchShowRequest>,
    ) -> Result<Response<pb::SwitchShowResponse>, Status> {
        self.ask(SwitchAdmin::Show).await.map(Response::new)
    }
    async fn fabric_show(
        &self,
        _r: Request<pb::FabricShowRequest>,
    ) -> Result<Response<pb::FabricShowResponse>, Status> {
        self.ask(SwitchAdmin::Fabric).await.map(Response::new)
    }
    async fn ns_show(
        &self,
        r: Request<pb::NsShowRequest>,
    ) -> Result<Response<pb::NsShowResponse>, Status> {
        let as_wwpn = r.into_inner().as_wwpn;
        self.ask(|tx| SwitchAdmin::Ns(as_wwpn, tx))
            .await?
            .map(Response::new)
    }
    async fn zone_show(
        &self,
        _r: Request<pb::ZoneShowRequest>,
    ) -> Result<Response<pb::ZoneShowResponse>, Status> {
        self.ask(SwitchAdmin::Zones).await.map(Response::new)
    }
    async fn port_stats_show(
        &self,
        r: Request<pb::PortStatsShowRequest>,
    ) -> Result<Response<pb::PortStatsShowResponse>, Status> {
        let ports = r.into_inner().ports;
        self.ask(|tx| SwitchAdmin::Stats(ports, tx))
            .await?
            .map(Response::new)
    }
    async fn zone_activate(
        &self,
        r: Request<pb::ZoneActivateRequest>,
    ) -> Result<Response<pb::ZoneShowResponse>, Status> {
        let r = r.into_inner();
        let z = parse_zones(r.zones, r.cfg_name)?;
        self.ask(|tx| SwitchAdmin::Activate(z, tx))
            .await?
            .map(Response::new)
    }
    async fn zone_deactivate(
        &self,
        _r: Request<pb::ZoneDeactivateRequest>,
    ) -> Result<Response<pb::ZoneShowResponse>, Status> {
        self.ask(SwitchAdmin::Deactivate).await.map(Response::new)
    }
    async fn route_show(
        &self,
        _r: Request<pb::RouteShowRequest>,
    ) -> Result<Response<pb::RouteShowResponse>, Status> {
        self.ask(SwitchAdmin::Routes).await.map(Response::new)
    }
    async fn set_port_errors(
        &self,
        r: Request<pb::SetPortErrorsRequest>,
    ) -> Result<Response<pb::PortInfo>, Status> {
        let r = r.into_inner();
        self.ask(|tx| SwitchAdmin::PortErrors(r.port, r.drop_every, tx))
            .await?
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::PortErrors;

    #[test]
    fn port_errors_discard_every_kth_frame_deterministically() {
        let mut e = PortErrors { every: 3, seen: 0 };
        let got: Vec<bool> = (0..9).map(|_| e.discards_next()).collect();
        assert_eq!(
            got,
            [false, false, true, false, false, true, false, false, true]
        );
        let mut all = PortErrors { every: 1, seen: 0 };
        assert!((0..4).all(|_| all.discards_next()));
        let mut none = PortErrors { every: 0, seen: 0 };
        assert!((0..4).all(|_| !none.discards_next()));
    }
}
