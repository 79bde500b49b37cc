//! The N_Port engine of an end node (host HBA port, array or tape port), sans-IO:
//! fabric login (FC-LS-3 §4.2.13 FLOGI), name-server login and registration
//! (FC-LS-3 §4.2.28 PLOGI to FF FF FC; FC-GS-7 §5.2.5 RFT_ID, RFF_ID, RNN_ID,
//! RSPN_ID), state change registration (FC-LS-3 §4.3.31 SCR), discovery (FC-GS-7
//! GID_FT + GPN_ID), RSCN handling (FC-LS-3 §4.3.25), N_Port login to another port
//! (PLOGI, then PRLI for FCP, FC-LS-3 §4.2.28 / FCP-4 §6.3), and the responder side of
//! PLOGI, PRLI, LOGO and ABTS (FC-FS-4 §15.3).
//!
//! Start here: [`NPort`]. It owns no socket, no task and no clock: the driver (see
//! `endnode`) feeds it link changes, frames and the time, and drains the frames, timer
//! deadline and events it produces.
//!
//! Timing: every request this engine originates expects its reply within
//! [`NPortConfig::request_timeout`] (default 20 ms of fabric time). Real ports wait
//! 2 × R_A_TOV (20 s); the simulator scales R_A_TOV down to 10 ms so that a lost frame
//! costs milliseconds, not seconds, of simulated time. Fabric-login steps are retried
//! [`NPortConfig::max_retries`] times, each with a fresh OX_ID; a login to another
//! N_Port is not retried (hard zoning drops frames silently, so a timeout is an outcome).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::fcid::FcId;
use crate::frame::bls::BaAcc;
use crate::frame::ct::{NsAccept, NsRequest, NsResponse};
use crate::frame::els::{
    Logo, PrliPage, Scr, fcp_sp, prli_response, rjt_explanation, rjt_reason, scr_function,
};
use crate::frame::{
    AccPayload, Els, ElsCode, Fc4Types, FcHeader, Frame, Iu, LsRjt, Prli, ServiceParams, ftype,
    rctl,
};
use crate::nameserver::{FC4_TYPE_FCP, Fc4Features};
use crate::wwn::{Wwnn, Wwpn};

/// The FCP role(s) a port plays; decides its RFF_ID features and PRLI function bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// SCSI initiator (a host HBA port).
    Initiator,
    /// SCSI target (an array or tape port).
    Target,
    /// Both (an array port that also originates copy traffic).
    Both,
}

impl Role {
    /// FC-4 features registered with RFF_ID for FCP (FC-GS-7 table 51).
    pub fn fc4_features(self) -> Fc4Features {
        match self {
            Role::Initiator => Fc4Features::INITIATOR,
            Role::Target => Fc4Features::TARGET,
            Role::Both => Fc4Features(Fc4Features::INITIATOR.0 | Fc4Features::TARGET.0),
        }
    }

    /// PRLI FCP service parameter function bits (FCP-4 table 6: initiator / target).
    /// The FCP service parameters this port offers in PRLI: its functions, and
    /// "WRITE FCP_XFER_RDY DISABLED": write data follows FCP_CMND as first burst.
    pub fn prli_functions(self) -> u32 {
        let functions = match self {
            Role::Initiator => fcp_sp::INITIATOR,
            Role::Target => fcp_sp::TARGET,
            Role::Both => fcp_sp::INITIATOR | fcp_sp::TARGET,
        };
        functions | fcp_sp::WRITE_XFER_RDY_DISABLED
    }
}

/// Configuration of one N_Port.
#[derive(Debug, Clone, PartialEq)]
pub struct NPortConfig {
    /// The port's WWPN, presented in FLOGI/PLOGI and registered with the name server.
    pub wwpn: Wwpn,
    /// The node's WWNN (RNN_ID).
    pub wwnn: Wwnn,
    /// FCP role: the RFF_ID features and PRLI function bits.
    pub role: Role,
    /// Symbolic port name registered with RSPN_ID (up to 255 bytes are sent).
    pub symbolic_name: String,
    /// First OX_ID (and RX_ID) this port hands out; IDs count up from here, wrapping and
    /// skipping 0xFFFF. Give ports of one node different bases to tell them apart in
    /// traces.
    pub ox_id_base: u16,
    /// How long a request waits for its reply before it is retried (fabric steps) or
    /// fails (discovery queries). Default 20 ms = 2 × the simulator's 10 ms R_A_TOV.
    pub request_timeout: Duration,
    /// How many times a fabric-login step (FLOGI, name-server PLOGI, registrations, SCR)
    /// or a discovery query is re-sent after a reject or timeout before giving up.
    pub max_retries: u32,
    /// Default time a [`NPort::login_to`] has for its whole GID_PN/PLOGI/PRLI sequence.
    pub login_timeout: Duration,
}

impl NPortConfig {
    /// A configuration with the default timers (20 ms request timeout, 3 retries,
    /// 100 ms login timeout) and OX_ID base 0x0001.
    pub fn new(wwpn: Wwpn, wwnn: Wwnn, role: Role, symbolic_name: impl Into<String>) -> Self {
        NPortConfig {
            wwpn,
            wwnn,
            role,
            symbolic_name: symbolic_name.into(),
            ox_id_base: 0x0001,
            request_timeout: Duration::from_millis(20),
            max_retries: 3,
            login_timeout: Duration::from_millis(100),
        }
    }
}

/// One step of the fabric login sequence, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FabricStep {
    /// FLOGI to FF FF FE: obtains the FC_ID.
    Flogi,
    /// PLOGI to the name server FF FF FC.
    NsPlogi,
    /// RFT_ID: FC-4 types (FCP).
    RftId,
    /// RFF_ID: FC-4 features for FCP (initiator / target).
    RffId,
    /// RNN_ID: node name.
    RnnId,
    /// RSPN_ID: symbolic port name.
    RspnId,
    /// SCR (full registration) to the fabric controller FF FF FD.
    Scr,
}

impl FabricStep {
    /// The step after this one; `None` after SCR (the port is online).
    fn next(self) -> Option<FabricStep> {
        match self {
            FabricStep::Flogi => Some(FabricStep::NsPlogi),
            FabricStep::NsPlogi => Some(FabricStep::RftId),
            FabricStep::RftId => Some(FabricStep::RffId),
            FabricStep::RffId => Some(FabricStep::RnnId),
            FabricStep::RnnId => Some(FabricStep::RspnId),
            FabricStep::RspnId => Some(FabricStep::Scr),
            FabricStep::Scr => None,
        }
    }
}

impl fmt::Display for FabricStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FabricStep::Flogi => "FLOGI",
            FabricStep::NsPlogi => "PLOGI(name server)",
            FabricStep::RftId => "RFT_ID",
            FabricStep::RffId => "RFF_ID",
            FabricStep::RnnId => "RNN_ID",
            FabricStep::RspnId => "RSPN_ID",
            FabricStep::Scr => "SCR",
        })
    }
}

/// Where the port is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NPortState {
    /// No link (initial state, and after link down).
    Offline,
    /// Link up; this fabric-login step is outstanding.
    LoggingIn(FabricStep),
    /// Logged in, registered and SCR'd; discovery may still be refreshing the view.
    Online,
    /// This step failed after all retries; the port waits for the next link up.
    Failed(FabricStep),
}

/// Handle of one [`NPort::login_to`] request; its [`NPortEvent::LoginDone`] carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoginTicket(pub u64);

/// Whom to log in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginTarget {
    /// By port name, resolved through the name server (GID_PN).
    Wwpn(Wwpn),
    /// By address, bypassing the name server.
    FcId(FcId),
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The remote port answered the request with LS_RJT.
    LsRjt {
        /// The request that was rejected (PLOGI or PRLI).
        request: ElsCode,
        /// LS_RJT reason code.
        reason: u8,
        /// LS_RJT reason explanation.
        explanation: u8,
    },
    /// The PRLI was accepted but its FCP page did not say "request executed".
    PrliResponse {
        /// The page's response code (FC-LS-3 table 111); 0 when the page is missing.
        code: u8,
    },
    /// The port is not logged in to the fabric, or its link went down meanwhile.
    Offline,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::LsRjt {
                request,
                reason,
                explanation,
            } => write!(
                f,
                "LS_RJT to {request:?}: reason 0x{reason:02x} explanation 0x{explanation:02x}"
            ),
            RejectReason::PrliResponse { code } => {
                write!(f, "PRLI accepted with response code {code}")
            }
            RejectReason::Offline => f.write_str("port is not logged in to the fabric"),
        }
    }
}

/// How a [`NPort::login_to`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginOutcome {
    /// PLOGI and PRLI accepted; the remote is in [`NPort::logged_in`].
    Accepted {
        /// The remote port's address.
        fc_id: FcId,
    },
    /// A step was refused.
    Rejected {
        /// Which step and why.
        reason: RejectReason,
    },
    /// The name server does not know (or does not show us) the WWPN.
    NotFound,
    /// No reply within the login's time (e.g. hard zoning dropped the frames).
    Timeout,
}

/// What the port tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NPortEvent {
    /// FLOGI accepted: the port now has this address.
    FabricLogin {
        /// The assigned FC_ID (the D_ID of the LS_ACC).
        fc_id: FcId,
    },
    /// Name-server registration and SCR done; the port is [`NPortState::Online`].
    Online,
    /// A fabric-login step failed after all retries.
    FabricLoginFailed {
        /// The step that failed.
        step: FabricStep,
    },
    /// A GID_FT (+GPN_ID) discovery finished; [`NPort::ns_view`] is new.
    ViewUpdated {
        /// Ports in the new view.
        ports: usize,
    },
    /// An RSCN arrived (and was accepted).
    Rscn {
        /// The affected addresses it names.
        affected: Vec<FcId>,
    },
    /// Another N_Port logged in to this one (its PLOGI was accepted).
    RemoteLogin {
        /// The remote port's address.
        fc_id: FcId,
        /// The remote port's name.
        wwpn: Wwpn,
    },
    /// Another N_Port logged out (LOGO).
    RemoteLogout {
        /// The remote port's address.
        fc_id: FcId,
    },
    /// A [`NPort::login_to`] finished.
    LoginDone {
        /// The ticket `login_to` returned.
        ticket: LoginTicket,
        /// How it ended.
        outcome: LoginOutcome,
    },
    /// A frame this engine does not terminate (FCP, CT requests, unknown routing):
    /// for the upper layer (SCSI) to take or drop.
    Unhandled {
        /// The frame as received.
        frame: Frame,
    },
}

/// A remote N_Port this port is logged in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemotePort {
    /// The remote's port name (from its PLOGI or LS_ACC).
    pub wwpn: Wwpn,
    /// The remote's node name.
    pub wwnn: Wwnn,
    /// An FCP process login (PRLI) is established, in either direction.
    pub fcp: bool,
    /// The remote offered the FCP target function in its PRLI accept.
    pub target: bool,
}

/// Why a request is outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Fabric(FabricStep),
    GidFt,
    GpnId(FcId),
    Login {
        ticket: LoginTicket,
        stage: LoginStage,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginStage {
    GidPn,
    Plogi(FcId),
    Prli(FcId),
}

/// What kind of request, so that its reply can be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqKind {
    Els(ElsCode),
    Ns(u16),
}

/// The outstanding requests by OX_ID, indexed by deadline and counting those of
/// discovery, so that the next timeout and "is discovery done?" cost O(log n) and O(1)
/// instead of a walk over every request (a port discovering 10,000 others has 10,000
/// GPN_IDs outstanding).
#[derive(Debug, Default)]
struct PendingTable {
    by_ox: BTreeMap<u16, Pending>,
    deadlines: BTreeSet<(Duration, u16)>,
    discovery: usize,
}

impl PendingTable {
    fn is_discovery(p: &Pending) -> bool {
        matches!(p.purpose, Purpose::GidFt | Purpose::GpnId(_))
    }

    fn insert(&mut self, ox: u16, p: Pending) {
        self.remove(&ox);
        self.deadlines.insert((p.deadline, ox));
        self.discovery += usize::from(Self::is_discovery(&p));
        self.by_ox.insert(ox, p);
    }

    fn remove(&mut self, ox: &u16) -> Option<Pending> {
        let p = self.by_ox.remove(ox)?;
        self.deadlines.remove(&(p.deadline, *ox));
        self.discovery -= usize::from(Self::is_discovery(&p));
        Some(p)
    }

    fn get(&self, ox: &u16) -> Option<&Pending> {
        self.by_ox.get(ox)
    }

    fn contains_key(&self, ox: &u16) -> bool {
        self.by_ox.contains_key(ox)
    }

    fn values(&self) -> impl Iterator<Item = &Pending> {
        self.by_ox.values()
    }

    fn clear(&mut self) {
        *self = PendingTable::default();
    }

    fn retain(&mut self, mut keep: impl FnMut(&u16, &Pending) -> bool) {
        let gone: Vec<u16> = self
            .by_ox
            .iter()
            .filter(|(ox, p)| !keep(ox, p))
            .map(|(ox, _)| *ox)
            .collect();
        for ox in gone {
            self.remove(&ox);
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// OX_IDs whose deadline is `now` or earlier, in OX_ID order.
    fn expired(&self, now: Duration) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .deadlines
            .iter()
            .take_while(|(d, _)| *d <= now)
            .map(|(_, ox)| *ox)
            .collect();
        v.sort_unstable();
        v
    }

    fn discovery_outstanding(&self) -> bool {
        self.discovery > 0
    }
}

/// One outstanding exchange this port originated.
#[derive(Debug, Clone)]
struct Pending {
    purpose: Purpose,
    kind: ReqKind,
    /// The request as sent (re-sent with a fresh OX_ID on retry).
    request: Frame,
    /// When it times out.
    deadline: Duration,
    /// Transmissions so far minus one.
    retries: u32,
}

/// A decoded reply to one of our requests.
#[derive(Debug, Clone)]
enum Reply {
    ElsAcc(AccPayload),
    ElsRjt(LsRjt),
    NsAcc(NsAccept),
    /// FS_RJT; its reason does not change what the port does.
    NsRjt,
}

/// The discovery in progress: GID_FT answered, GPN_IDs outstanding.
#[derive(Debug, Clone, Default)]
struct Discovery {
    /// The view being built: every FC_ID GID_FT returned, with its WWPN once known.
    found: BTreeMap<FcId, Option<Wwpn>>,
    /// FC_IDs still to ask GPN_ID for (at most [`DISCOVERY_WINDOW`] are outstanding).
    queue: VecDeque<FcId>,
}

/// How many discovery queries a port keeps outstanding at once, as an HBA's exchange
/// resources limit it. A port that found 10,000 others sends its GPN_IDs as replies
/// come back, not 10,000 at once.
const DISCOVERY_WINDOW: usize = 64;

/// One end-node N_Port (FC-LS-3 / FC-GS-7), sans-IO.
///
/// Call order, from the driver's loop:
/// 1. inputs: [`handle_link_up`](Self::handle_link_up) when the cable comes up,
///    [`handle_link_down`](Self::handle_link_down) when it goes,
///    [`handle_frame`](Self::handle_frame) for each arriving frame,
///    [`handle_timeout`](Self::handle_timeout) when the time from
///    [`poll_timeout`](Self::poll_timeout) has come (calling it early is harmless);
/// 2. commands: [`login_to`](Self::login_to);
/// 3. after every input or command, drain [`poll_transmit`](Self::poll_transmit) (send
///    each frame on the port), [`poll_event`](Self::poll_event), and re-read
///    [`poll_timeout`](Self::poll_timeout).
///
/// Getters ([`fc_id`](Self::fc_id), [`state`](Self::state), [`ns_view`](Self::ns_view),
/// [`logged_in`](Self::logged_in), [`rscn_count`](Self::rscn_count)) may be called any
/// time. Link down forgets the FC_ID, the view, every login and every outstanding
/// exchange; only the RSCN counter survives (it is a statistic).
#[derive(Debug)]
pub struct NPort {
    /// Identity, role and timers; fixed for the port's life.
    cfg: NPortConfig,
    /// Life-cycle state.
    state: NPortState,
    /// Address from the last accepted FLOGI; `None` until then and after link down.
    fc_id: Option<FcId>,
    /// Next exchange ID to hand out (never 0xFFFF).
    next_xid: u16,
    /// Outstanding requests by OX_ID.
    pending: PendingTable,
    /// Result of the last finished discovery: FC_ID → WWPN (`None` if GPN_ID failed).
    ns_view: BTreeMap<FcId, Option<Wwpn>>,
    /// Discovery in progress, if any.
    discovery: Option<Discovery>,
    /// Remote N_Ports logged in (either direction), by address.
    logged_in: BTreeMap<FcId, RemotePort>,
    /// RSCNs received since the port was created.
    rscn_count: u64,
    /// Next login ticket number.
    next_ticket: u64,
    /// Frames to send, in order.
    transmit: VecDeque<Frame>,
    /// Events for the driver, in order.
    events: VecDeque<NPortEvent>,
}

impl NPort {
    /// A port with this configuration, offline.
    pub fn new(cfg: NPortConfig) -> Self {
        let next_xid = if cfg.ox_id_base == 0xFFFF {
            0
        } else {
            cfg.ox_id_base
        };
        NPort {
            cfg,
            state: NPortState::Offline,
            fc_id: None,
            next_xid,
            pending: PendingTable::default(),
            ns_view: BTreeMap::new(),
            discovery: None,
            logged_in: BTreeMap::new(),
            rscn_count: 0,
            next_ticket: 1,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &NPortConfig {
        &self.cfg
    }

    /// The port's address, once FLOGI was accepted.
    pub fn fc_id(&self) -> Option<FcId> {
        self.fc_id
    }

    /// Where the port is in its life cycle.
    pub fn state(&self) -> NPortState {
        self.state
    }

    /// The name-server view of the last finished discovery (GID_FT for FCP, then GPN_ID
    /// per port): FC_ID → WWPN, `None` where GPN_ID got no answer. Includes this port.
    pub fn ns_view(&self) -> &BTreeMap<FcId, Option<Wwpn>> {
        &self.ns_view
    }

    /// Remote N_Ports logged in with this one (PLOGI either way), by address.
    pub fn logged_in(&self) -> &BTreeMap<FcId, RemotePort> {
        &self.logged_in
    }

    /// RSCNs received since the port was created.
    pub fn rscn_count(&self) -> u64 {
        self.rscn_count
    }

    // ----- inputs -----

    /// The cable came up: starts the fabric login (FLOGI). If the port was already up
    /// it starts over as after a link bounce.
    pub fn handle_link_up(&mut self, now: Duration) {
        self.reset();
        self.start_fabric_step(FabricStep::Flogi, now);
    }

    /// The cable went away: the FC_ID, logins, view and exchanges are lost; pending
    /// [`login_to`](Self::login_to) requests end `Rejected { Offline }`.
    pub fn handle_link_down(&mut self) {
        self.reset();
    }

    /// Time has passed: requests whose deadline is at or before `now` are retried or
    /// failed.
    pub fn handle_timeout(&mut self, now: Duration) {
        for ox in self.pending.expired(now) {
            if let Some(p) = self.pending.remove(&ox) {
                self.on_no_reply(p, now);
            }
        }
    }

    /// A frame arrived on the port.
    pub fn handle_frame(&mut self, frame: Frame, now: Duration) {
        let h = frame.header;
        match (h.r_ctl, h.fc_type) {
            (rctl::ELS_REPLY, ftype::ELS) | (rctl::CT_REPLY, ftype::CT) => {
                self.on_reply_frame(&frame, now);
            }
            (rctl::ELS_REQUEST, ftype::ELS) => self.on_els_request(&frame, now),
            (rctl::BA_ABTS, ftype::BLS) => {
                // FC-FS-4 §15.3.2: BA_ACC carries the aborted exchange's IDs; the
                // whole sequence is aborted (SEQ_ID not valid, SEQ_CNT 0..FFFF).
                let acc = BaAcc {
                    seq_id_valid: false,
                    seq_id: 0,
                    ox_id: h.ox_id,
                    rx_id: h.rx_id,
                    low_seq_cnt: 0,
                    high_seq_cnt: 0xFFFF,
                };
                self.transmit.push_back(Frame::from_iu(
                    h.reply(rctl::BA_ACC, h.rx_id),
                    &Iu::BaAcc(acc),
                ));
            }
            _ => self.events.push_back(NPortEvent::Unhandled { frame }),
        }
    }

    // ----- commands -----

    /// Logs in to `target` (GID_PN if by WWPN, then PLOGI, then PRLI for FCP), with
    /// [`NPortConfig::login_timeout`] for the whole sequence. The result comes as
    /// [`NPortEvent::LoginDone`] with the returned ticket.
    pub fn login_to(&mut self, target: LoginTarget, now: Duration) -> LoginTicket {
        self.login_to_within(target, self.cfg.login_timeout, now)
    }

    /// [`login_to`](Self::login_to) with an explicit time limit for the whole sequence.
    pub fn login_to_within(
        &mut self,
        target: LoginTarget,
        timeout: Duration,
        now: Duration,
    ) -> LoginTicket {
        let ticket = LoginTicket(self.next_ticket);
        self.next_ticket += 1;
        let deadline = now + timeout;
        if self.fc_id.is_none() {
            self.login_done(
                ticket,
                LoginOutcome::Rejected {
                    reason: RejectReason::Offline,
                },
            );
            return ticket;
        }
        match target {
            LoginTarget::Wwpn(wwpn) => self.send_ns(
                NsRequest::GidPn { port_name: wwpn },
                Purpose::Login {
                    ticket,
                    stage: LoginStage::GidPn,
                },
                deadline,
            ),
            LoginTarget::FcId(fc_id) => self.send_plogi(ticket, fc_id, deadline),
        }
        ticket
    }

    // ----- outputs -----

    /// The next frame to send on the port.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmit.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.pending.next_deadline()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<NPortEvent> {
        self.events.pop_front()
    }

    // ----- internals -----

    fn reset(&mut self) {
        let logins: Vec<LoginTicket> = self
            .pending
            .values()
            .filter_map(|p| match p.purpose {
                Purpose::Login { ticket, .. } => Some(ticket),
                _ => None,
            })
            .collect();
        self.pending.clear();
        for ticket in logins {
            self.login_done(
                ticket,
                LoginOutcome::Rejected {
                    reason: RejectReason::Offline,
                },
            );
        }
        self.state = NPortState::Offline;
        self.fc_id = None;
        self.ns_view.clear();
        self.discovery = None;
        self.logged_in.clear();
        self.transmit.clear();
    }

    fn alloc_xid(&mut self) -> u16 {
        loop {
            let x = self.next_xid;
            self.next_xid = match x.wrapping_add(1) {
                0xFFFF => 0,
                n => n,
            };
            if !self.pending.contains_key(&x) {
                return x;
            }
        }
    }

    fn s_id(&self) -> FcId {
        self.fc_id.unwrap_or(FcId::UNIDENTIFIED)
    }

    fn send_request(
        &mut self,
        request: Frame,
        kind: ReqKind,
        purpose: Purpose,
        deadline: Duration,
    ) {
        let ox = self.alloc_xid();
        let mut request = request;
        request.header.ox_id = ox;
        self.transmit.push_back(request.clone());
        self.pending.insert(
            ox,
            Pending {
                purpose,
                kind,
                request,
                deadline,
                retries: 0,
            },
        );
    }

    fn send_els(&mut self, d_id: FcId, els: &Els, purpose: Purpose, deadline: Duration) {
        let h = FcHeader::request(rctl::ELS_REQUEST, ftype::ELS, d_id, self.s_id(), 0);
        let frame = Frame::els(h, els);
        self.send_request(frame, ReqKind::Els(els.code()), purpose, deadline);
    }

    fn send_ns(&mut self, req: NsRequest, purpose: Purpose, deadline: Duration) {
        let h = FcHeader::request(
            rctl::CT_REQUEST,
            ftype::CT,
            FcId::NAME_SERVER,
            self.s_id(),
            0,
        );
        let frame = Frame::ct(h, &req.to_ct());
        self.send_request(frame, ReqKind::Ns(req.command()), purpose, deadline);
    }

    /// Re-sends a request with a fresh OX_ID and a new deadline.
    fn resend(&mut self, mut p: Pending, now: Duration) {
        p.retries += 1;
        p.deadline = now + self.cfg.request_timeout;
        let ox = self.alloc_xid();
        p.request.header.ox_id = ox;
        self.transmit.push_back(p.request.clone());
        self.pending.insert(ox, p);
    }

    fn start_fabric_step(&mut self, step: FabricStep, now: Duration) {
        self.state = NPortState::LoggingIn(step);
        let deadline = now + self.cfg.request_timeout;
        let purpose = Purpose::Fabric(step);
        let port_id = self.s_id();
        match step {
            FabricStep::Flogi => {
                let sp = ServiceParams::flogi(self.cfg.wwpn, self.cfg.wwnn);
                self.send_els(FcId::FABRIC_LOGIN, &Els::Flogi(sp), purpose, deadline);
            }
            FabricStep::NsPlogi => {
                let sp = ServiceParams::plogi(self.cfg.wwpn, self.cfg.wwnn);
                self.send_els(FcId::NAME_SERVER, &Els::Plogi(sp), purpose, deadline);
            }
            FabricStep::RftId => self.send_ns(
                NsRequest::RftId {
                    port_id,
                    fc4_types: Fc4Types::fcp(),
                },
                purpose,
                deadline,
            ),
            FabricStep::RffId => self.send_ns(
                NsRequest::RffId {
                    port_id,
                    fc4_features: self.cfg.role.fc4_features().0,
                    fc4_type: FC4_TYPE_FCP,
                },
                purpose,
                deadline,
            ),
            FabricStep::RnnId => self.send_ns(
                NsRequest::RnnId {
                    port_id,
                    node_name: self.cfg.wwnn,
                },
                purpose,
                deadline,
            ),
            FabricStep::RspnId => self.send_ns(
                NsRequest::RspnId {
                    port_id,
                    symbolic_name: Bytes::from(self.cfg.symbolic_name.clone().into_bytes()),
                },
                purpose,
                deadline,
            ),
            FabricStep::Scr => self.send_els(
                FcId::FABRIC_CONTROLLER,
                &Els::Scr(Scr {
                    function: scr_function::FULL,
                }),
                purpose,
                deadline,
            ),
        }
    }

    /// Starts (or restarts) discovery: GID_FT for FCP, then GPN_ID per port.
    fn start_discovery(&mut self, now: Duration) {
        self.pending
            .retain(|_, p| !matches!(p.purpose, Purpose::GidFt | Purpose::GpnId(_)));
        self.discovery = Some(Discovery::default());
        self.send_ns(
            NsRequest::GidFt {
                domain_scope: 0,
                area_scope: 0,
                fc4_type: FC4_TYPE_FCP,
            },
            Purpose::GidFt,
            now + self.cfg.request_timeout,
        );
    }

    /// Sends queued GPN_IDs up to the window.
    fn pump_discovery(&mut self, now: Duration) {
        let deadline = now + self.cfg.request_timeout;
        while self.pending.discovery < DISCOVERY_WINDOW {
            let Some(id) = self.discovery.as_mut().and_then(|d| d.queue.pop_front()) else {
                break;
            };
            self.send_ns(
                NsRequest::GpnId { port_id: id },
                Purpose::GpnId(id),
                deadline,
            );
        }
    }

    /// Sends what the window allows, and commits the discovery once no GPN_ID is
    /// outstanding or queued.
    fn maybe_finish_discovery(&mut self, now: Duration) {
        self.pump_discovery(now);
        if self.pending.discovery_outstanding() {
            return;
        }
        if let Some(d) = self.discovery.take() {
            self.ns_view = d.found;
            self.events.push_back(NPortEvent::ViewUpdated {
                ports: self.ns_view.len(),
            });
        }
    }

    fn send_plogi(&mut self, ticket: LoginTicket, fc_id: FcId, deadline: Duration) {
        let sp = ServiceParams::plogi(self.cfg.wwpn, self.cfg.wwnn);
        self.send_els(
            fc_id,
            &Els::Plogi(sp),
            Purpose::Login {
                ticket,
                stage: LoginStage::Plogi(fc_id),
            },
            deadline,
        );
    }

    fn login_done(&mut self, ticket: LoginTicket, outcome: LoginOutcome) {
        self.events
            .push_back(NPortEvent::LoginDone { ticket, outcome });
    }

    /// A request got no (usable) reply in time.
    fn on_no_reply(&mut self, p: Pending, now: Duration) {
        match p.purpose {
            Purpose::Fabric(_) | Purpose::GidFt | Purpose::GpnId(_)
                if p.retries < self.cfg.max_retries =>
            {
                self.resend(p, now);
            }
            Purpose::Fabric(step) => self.fabric_failed(step),
            Purpose::GidFt => {
                // The fabric does not answer: keep the old view.
                self.discovery = None;
            }
            Purpose::GpnId(_) => self.maybe_finish_discovery(now),
            Purpose::Login { ticket, .. } => self.login_done(ticket, LoginOutcome::Timeout),
        }
    }

    fn fabric_failed(&mut self, step: FabricStep) {
        self.state = NPortState::Failed(step);
        self.events
            .push_back(NPortEvent::FabricLoginFailed { step });
    }

    fn on_reply_frame(&mut self, frame: &Frame, now: Duration) {
        let h = frame.header;
        let Some(p) = self.pending.get(&h.ox_id) else {
            return; // stale (retried, timed out or reset) or stray reply
        };
        if p.request.header.d_id != h.s_id {
            return;
        }
        let reply = match (
            p.kind,
            frame.iu(match p.kind {
                ReqKind::Els(code) => Some(code),
                ReqKind::Ns(_) => None,
            }),
        ) {
            (ReqKind::Els(_), Ok(Iu::Els(Els::Acc(acc)))) => Reply::ElsAcc(acc),
            (ReqKind::Els(_), Ok(Iu::Els(Els::LsRjt(rjt)))) => Reply::ElsRjt(rjt),
            (ReqKind::Ns(cmd), Ok(Iu::Ct(ct))) => match NsResponse::from_ct(&ct, cmd) {
                Ok(NsResponse::Accept(acc)) => Reply::NsAcc(acc),
                Ok(NsResponse::Reject(_)) => Reply::NsRjt,
                Err(_) => return,
            },
            // Undecodable or not a reply of the right kind: treated as no reply (the
            // deadline will retry or fail the request).
            _ => return,
        };
        let Some(p) = self.pending.remove(&h.ox_id) else {
            return;
        };
        self.on_reply(p, reply, &h, now);
    }

    fn on_reply(&mut self, p: Pending, reply: Reply, h: &FcHeader, now: Duration) {
        match p.purpose {
            Purpose::Fabric(step) => {
                let ok = matches!(reply, Reply::ElsAcc(_) | Reply::NsAcc(_));
                if !ok {
                    if p.retries < self.cfg.max_retries {
                        self.resend(p, now);
                    } else {
                        self.fabric_failed(step);
                    }
                    return;
                }
                if step == FabricStep::Flogi {
                    self.fc_id = Some(h.d_id);
                    self.events
                        .push_back(NPortEvent::FabricLogin { fc_id: h.d_id });
                }
                match step.next() {
                    Some(next) => self.start_fabric_step(next, now),
                    None => {
                        self.state = NPortState::Online;
                        self.events.push_back(NPortEvent::Online);
                        self.start_discovery(now);
                    }
                }
            }
            Purpose::GidFt => {
                let ids = match reply {
                    Reply::NsAcc(NsAccept::GidFt(ids)) => ids,
                    // A reject (typically "FC-4 types not registered") means nobody.
                    _ => Vec::new(),
                };
                let Some(d) = self.discovery.as_mut() else {
                    return;
                };
                let me = self.fc_id;
                let mut queries = Vec::new();
                for id in ids {
                    if Some(id) == me {
                        d.found.insert(id, Some(self.cfg.wwpn));
                    } else if d.found.insert(id, None).is_none() {
                        queries.push(id);
                    }
                }
                d.queue.extend(queries);
                self.maybe_finish_discovery(now);
            }
            Purpose::GpnId(id) => {
                if let (Reply::NsAcc(NsAccept::GpnId(wwpn)), Some(d)) =
                    (&reply, self.discovery.as_mut())
                {
                    d.found.insert(id, Some(*wwpn));
                }
                self.maybe_finish_discovery(now);
            }
            Purpose::Login { ticket, stage } => {
                self.on_login_reply(ticket, stage, reply, p.deadline)
            }
        }
    }

    fn on_login_reply(
        &mut self,
        ticket: LoginTicket,
        stage: LoginStage,
        reply: Reply,
        deadline: Duration,
    ) {
        match (stage, reply) {
            (LoginStage::GidPn, Reply::NsAcc(NsAccept::GidPn(fc_id))) => {
                self.send_plogi(ticket, fc_id, deadline);
            }
            (LoginStage::GidPn, _) => self.login_done(ticket, LoginOutcome::NotFound),
            (LoginStage::Plogi(fc_id), Reply::ElsAcc(AccPayload::Login(sp))) => {
                self.logged_in.insert(
                    fc_id,
                    RemotePort {
                        wwpn: sp.port_name,
                        wwnn: sp.node_name,
                        fcp: false,
                        target: false,
                    },
                );
                self.send_els(
                    fc_id,
                    &Els::Prli(Prli::fcp(self.cfg.role.prli_functions())),
                    Purpose::Login {
                        ticket,
                        stage: LoginStage::Prli(fc_id),
                    },
                    deadline,
                );
            }
            (LoginStage::Prli(fc_id), Reply::ElsAcc(AccPayload::Prli(prli))) => {
                let code = prli.fcp_page().map_or(0, |p| p.response_code);
                if code == prli_response::EXECUTED {
                    let target = prli
                        .fcp_page()
                        .is_some_and(|p| p.service_params & fcp_sp::TARGET != 0);
                    if let Some(r) = self.logged_in.get_mut(&fc_id) {
                        r.fcp = true;
                        r.target = target;
                    }
                    self.login_done(ticket, LoginOutcome::Accepted { fc_id });
                } else {
                    self.login_done(
                        ticket,
                        LoginOutcome::Rejected {
                            reason: RejectReason::PrliResponse { code },
                        },
                    );
                }
            }
            (LoginStage::Plogi(_) | LoginStage::Prli(_), Reply::ElsRjt(rjt)) => {
                let request = match stage {
                    LoginStage::Prli(_) => ElsCode::Prli,
                    _ => ElsCode::Plogi,
                };
                self.login_done(
                    ticket,
                    LoginOutcome::Rejected {
                        reason: RejectReason::LsRjt {
                            request,
                            reason: rjt.reason,
                            explanation: rjt.explanation,
                        },
                    },
                );
            }
            // An LS_ACC of the wrong shape (e.g. a PLOGI ACC without parameters).
            (LoginStage::Plogi(_) | LoginStage::Prli(_), _) => self.login_done(
                ticket,
                LoginOutcome::Rejected {
                    reason: RejectReason::LsRjt {
                        request: match stage {
                            LoginStage::Prli(_) => ElsCode::Prli,
                            _ => ElsCode::Plogi,
                        },
                        reason: rjt_reason::PROTOCOL_ERROR,
                        explanation: rjt_explanation::NONE,
                    },
                },
            ),
        }
    }

    /// Answers an ELS request from another port (or the fabric) on its exchange.
    fn on_els_request(&mut self, frame: &Frame, now: Duration) {
        let h = frame.header;
        let els = match frame.iu(None) {
            Ok(Iu::Els(els)) => els,
            _ => {
                self.reply_els(
                    &h,
                    &Els::LsRjt(LsRjt::new(
                        rjt_reason::PROTOCOL_ERROR,
                        rjt_explanation::NONE,
                    )),
                );
                return;
            }
        };
        match els {
            Els::Plogi(sp) => {
                self.logged_in.insert(
                    h.s_id,
                    RemotePort {
                        wwpn: sp.port_name,
                        wwnn: sp.node_name,
                        fcp: false,
                        target: false,
                    },
                );
                let mine = ServiceParams::plogi(self.cfg.wwpn, self.cfg.wwnn);
                self.reply_els(&h, &Els::Acc(AccPayload::Login(mine)));
                self.events.push_back(NPortEvent::RemoteLogin {
                    fc_id: h.s_id,
                    wwpn: sp.port_name,
                });
            }
            Els::Prli(prli) => {
                let Some(remote) = self.logged_in.get_mut(&h.s_id) else {
                    self.reply_els(
                        &h,
                        &Els::LsRjt(LsRjt::new(
                            rjt_reason::UNABLE_TO_PERFORM,
                            rjt_explanation::PLOGI_REQUIRED,
                        )),
                    );
                    return;
                };
                let page = if prli.fcp_page().is_some() {
                    remote.fcp = true;
                    PrliPage {
                        response_code: prli_response::EXECUTED,
                        ..PrliPage::fcp(self.cfg.role.prli_functions())
                    }
                } else {
                    PrliPage {
                        response_code: prli_response::CONFIG_PRECLUDES,
                        ..prli.pages.first().copied().unwrap_or(PrliPage::fcp(0))
                    }
                };
                self.reply_els(&h, &Els::Acc(AccPayload::Prli(Prli { pages: vec![page] })));
            }
            Els::Logo(Logo { n_port_id, .. }) => {
                let gone = if self.logged_in.remove(&h.s_id).is_some() {
                    Some(h.s_id)
                } else {
                    self.logged_in.remove(&n_port_id).map(|_| n_port_id)
                };
                self.reply_els(&h, &Els::Acc(AccPayload::Plain));
                if let Some(fc_id) = gone {
                    self.events.push_back(NPortEvent::RemoteLogout { fc_id });
                }
            }
            Els::Rscn(rscn) => {
                self.rscn_count += 1;
                self.reply_els(&h, &Els::Acc(AccPayload::Plain));
                self.events.push_back(NPortEvent::Rscn {
                    affected: rscn.pages.iter().map(|p| p.fc_id).collect(),
                });
                if self.state == NPortState::Online {
                    self.start_discovery(now);
                }
            }
            _ => self.reply_els(
                &h,
                &Els::LsRjt(LsRjt::new(
                    rjt_reason::COMMAND_NOT_SUPPORTED,
                    rjt_explanation::NONE,
                )),
            ),
        }
    }

    fn reply_els(&mut self, request: &FcHeader, els: &Els) {
        let rx = self.alloc_xid();
        self.transmit
            .push_back(Frame::els(request.reply(rctl::ELS_REPLY, rx), els));
    }
}

#[cfg(test)]
mod tests {
    //! The N_Port driven against a hand-written fake switch (login server, name
    //! server, fabric controller) and fake remote N_Ports, frame by frame through the
    //! codec.
    use super::*;
    use crate::frame::ct::ns_explanation;
    use crate::frame::ct::{ct_reason, ns_cmd};
    use crate::frame::els::{AddressFormat, Rscn, RscnPage, rscn_event};
    use crate::frame::{BaAcc as BaAccPayload, CtIu};
    use crate::wwn::Wwn;
    use std::collections::BTreeSet;

    const ME: FcId = FcId::new(0x01_0100);
    const T2: FcId = FcId::new(0x01_0200);
    const T3: FcId = FcId::new(0x01_0300);
    const MS: Duration = Duration::from_millis(1);

    fn wwpn(n: u64) -> Wwpn {
        Wwpn(Wwn(0x2100_0000_0000_0000 | n))
    }
    fn wwnn(n: u64) -> Wwnn {
        Wwnn(Wwn(0x2000_0000_0000_0000 | n))
    }

    fn port(role: Role) -> NPort {
        let mut cfg = NPortConfig::new(wwpn(1), wwnn(1), role, "h1/0");
        cfg.ox_id_base = 0x100;
        NPort::new(cfg)
    }

    /// What the fake fabric does with one request.
    #[derive(Default)]
    struct FakeSwitch {
        /// Name-server contents: FC_ID → WWPN (every one registered for FCP).
        ns: BTreeMap<FcId, Wwpn>,
        /// Remote N_Ports that answer PLOGI/PRLI.
        remotes: BTreeSet<FcId>,
        /// Destinations whose frames are silently dropped (hard zoning).
        blackhole: BTreeSet<FcId>,
        /// Drop this many FLOGIs before answering.
        drop_flogi: u32,
        /// Reject this many RFT_IDs before accepting.
        reject_rft: u32,
        /// Requests seen, as short names.
        log: Vec<String>,
        /// OX_IDs of the requests seen, in order.
        ox_ids: Vec<u16>,
    }

    fn ct_name(cmd: u16) -> &'static str {
        match cmd {
            ns_cmd::RFT_ID => "RFT_ID",
            ns_cmd::RFF_ID => "RFF_ID",
            ns_cmd::RNN_ID => "RNN_ID",
            ns_cmd::RSPN_ID => "RSPN_ID",
            ns_cmd::GID_FT => "GID_FT",
            ns_cmd::GPN_ID => "GPN_ID",
            ns_cmd::GID_PN => "GID_PN",
            _ => "CT?",
        }
    }

    impl FakeSwitch {
        fn new() -> Self {
            let mut sw = FakeSwitch::default();
            sw.ns.insert(ME, wwpn(1));
            sw.ns.insert(T2, wwpn(2));
            sw.ns.insert(T3, wwpn(3));
            sw.remotes.insert(T2);
            sw.remotes.insert(T3);
            sw
        }

        fn answer(&mut self, f: &Frame) -> Option<Frame> {
            let h = f.header;
            self.ox_ids.push(h.ox_id);
            match f.iu(None).ok()? {
                Iu::Els(els) => {
                    let name = match (&els, h.d_id) {
                        (Els::Plogi(_), FcId::NAME_SERVER) => "PLOGI(ns)".to_string(),
                        (e, d) => format!("{:?}>{d}", e.code()),
                    };
                    self.log.push(name);
                    if self.blackhole.contains(&h.d_id) {
                        return None;
                    }
                    let reply = |els: &Els| Some(Frame::els(h.reply(rctl::ELS_REPLY, 0x77), els));
                    match els {
                        Els::Flogi(sp) => {
                            assert_eq!((h.s_id, h.d_id), (FcId::UNIDENTIFIED, FcId::FABRIC_LOGIN));
                            assert_eq!(sp.port_name, wwpn(1));
                            if self.drop_flogi > 0 {
                                self.drop_flogi -= 1;
                                return None;
                            }
                            let acc = ServiceParams::flogi_acc(wwpn(0xF0), wwnn(0xF0));
                            let mut rh = h.reply(rctl::ELS_REPLY, 0x77);
                            rh.d_id = ME;
                            Some(Frame::els(rh, &Els::Acc(AccPayload::Login(acc))))
                        }
                        Els::Plogi(_) if h.d_id == FcId::NAME_SERVER => reply(&Els::Acc(
                            AccPayload::Login(ServiceParams::plogi(wwpn(0xFC), wwnn(0xFC))),
                        )),
                        Els::Scr(s) if h.d_id == FcId::FABRIC_CONTROLLER => {
                            assert_eq!(s.function, scr_function::FULL);
                            reply(&Els::Acc(AccPayload::Plain))
                        }
                        Els::Plogi(_) if self.remotes.contains(&h.d_id) => {
                            let n = u64::from(h.d_id.raw() >> 8 & 0xFF);
                            reply(&Els::Acc(AccPayload::Login(ServiceParams::plogi(
                                wwpn(n),
                                wwnn(n),
                            ))))
                        }
                        Els::Prli(p) if self.remotes.contains(&h.d_id) => {
                            assert!(p.fcp_page().is_some());
                            let page = PrliPage {
                                response_code: prli_response::EXECUTED,
                                ..PrliPage::fcp(fcp_sp::TARGET)
                            };
                            reply(&Els::Acc(AccPayload::Prli(Prli { pages: vec![page] })))
                        }
                        _ => reply(&Els::LsRjt(LsRjt::new(
                            rjt_reason::COMMAND_NOT_SUPPORTED,
                            rjt_explanation::NONE,
                        ))),
                    }
                }
                Iu::Ct(ct) => {
                    assert_eq!(h.d_id, FcId::NAME_SERVER);
                    let req = NsRequest::from_ct(&ct).ok()?;
                    self.log.push(ct_name(req.command()).to_string());
                    let resp = match req {
                        NsRequest::RftId { port_id, fc4_types } => {
                            assert_eq!(port_id, ME);
                            assert!(fc4_types.contains(FC4_TYPE_FCP));
                            if self.reject_rft > 0 {
                                self.reject_rft -= 1;
                                NsResponse::reject(ct_reason::LOGICAL_BUSY, 0)
                            } else {
                                NsResponse::Accept(NsAccept::Empty)
                            }
                        }
                        NsRequest::RffId { .. }
                        | NsRequest::RnnId { .. }
                        | NsRequest::RspnId { .. } => NsResponse::Accept(NsAccept::Empty),
                        NsRequest::GidFt { fc4_type, .. } => {
                            assert_eq!(fc4_type, FC4_TYPE_FCP);
                            NsResponse::Accept(NsAccept::GidFt(self.ns.keys().copied().collect()))
                        }
                        NsRequest::GpnId { port_id } => match self.ns.get(&port_id) {
                            Some(w) => NsResponse::Accept(NsAccept::GpnId(*w)),
                            None => NsResponse::reject(
                                ct_reason::UNABLE_TO_PERFORM,
                                ns_explanation::PORT_ID_NOT_REGISTERED,
                            ),
                        },
                        NsRequest::GidPn { port_name } => {
                            match self.ns.iter().find(|(_, w)| **w == port_name) {
                                Some((id, _)) => NsResponse::Accept(NsAccept::GidPn(*id)),
                                None => NsResponse::reject(
                                    ct_reason::UNABLE_TO_PERFORM,
                                    ns_explanation::PORT_NAME_NOT_REGISTERED,
                                ),
                            }
                        }
                        _ => NsResponse::reject(ct_reason::COMMAND_NOT_SUPPORTED, 0),
                    };
                    Some(Frame::ct(h.reply(rctl::CT_REPLY, 0x77), &resp.to_ct()))
                }
                _ => None,
            }
        }
    }

    /// Through the codec, as on a cable.
    fn wire(f: &Frame) -> Frame {
        Frame::decode(f.encode()).expect("decodes")
    }

    /// Delivers everything the port sends to the switch and every answer back, until
    /// quiet.
    fn pump(p: &mut NPort, sw: &mut FakeSwitch, now: Duration) {
        loop {
            let out: Vec<Frame> = std::iter::from_fn(|| p.poll_transmit()).collect();
            if out.is_empty() {
                return;
            }
            for f in out {
                if let Some(r) = sw.answer(&wire(&f)) {
                    p.handle_frame(wire(&r), now);
                }
            }
        }
    }

    fn events(p: &mut NPort) -> Vec<NPortEvent> {
        std::iter::from_fn(|| p.poll_event()).collect()
    }

    fn online(role: Role) -> (NPort, FakeSwitch) {
        let mut p = port(role);
        let mut sw = FakeSwitch::new();
        p.handle_link_up(Duration::ZERO);
        pump(&mut p, &mut sw, Duration::ZERO);
        assert_eq!(p.state(), NPortState::Online);
        sw.log.clear();
        events(&mut p);
        (p, sw)
    }

    fn full_view() -> BTreeMap<FcId, Option<Wwpn>> {
        [
            (ME, Some(wwpn(1))),
            (T2, Some(wwpn(2))),
            (T3, Some(wwpn(3))),
        ]
        .into()
    }

    /// FC-LS-3 §4.2.13, FC-GS-7 §5.2.5: FLOGI → PLOGI(NS) → RFT/RFF/RNN/RSPN → SCR →
    /// GID_FT → GPN_ID per other port.
    #[test]
    fn fabric_login_sequence_and_view() {
        let mut p = port(Role::Initiator);
        let mut sw = FakeSwitch::new();
        assert_eq!(p.state(), NPortState::Offline);
        p.handle_link_up(Duration::ZERO);
        assert_eq!(p.state(), NPortState::LoggingIn(FabricStep::Flogi));
        assert_eq!(p.poll_timeout(), Some(20 * MS));
        pump(&mut p, &mut sw, Duration::ZERO);
        assert_eq!(
            sw.log,
            [
                "Flogi>fffffe",
                "PLOGI(ns)",
                "RFT_ID",
                "RFF_ID",
                "RNN_ID",
                "RSPN_ID",
                "Scr>fffffd",
                "GID_FT",
                "GPN_ID",
                "GPN_ID"
            ]
        );
        assert_eq!(p.fc_id(), Some(ME));
        assert_eq!(p.state(), NPortState::Online);
        assert_eq!(p.ns_view(), &full_view());
        assert_eq!(p.poll_timeout(), None);
        assert_eq!(
            events(&mut p),
            [
                NPortEvent::FabricLogin { fc_id: ME },
                NPortEvent::Online,
                NPortEvent::ViewUpdated { ports: 3 }
            ]
        );
        // Every request opened its own exchange.
        let distinct: BTreeSet<u16> = sw.ox_ids.iter().copied().collect();
        assert_eq!(distinct.len(), sw.ox_ids.len());
        assert_eq!(sw.ox_ids[0], 0x100);
    }

    #[test]
    fn registrations_carry_role_and_names() {
        let mut p = port(Role::Both);
        p.handle_link_up(Duration::ZERO);
        let mut sw = FakeSwitch::new();
        let mut seen = Vec::new();
        loop {
            let out: Vec<Frame> = std::iter::from_fn(|| p.poll_transmit()).collect();
            if out.is_empty() {
                break;
            }
            for f in out {
                if let Ok(Iu::Ct(ct)) = f.iu(None) {
                    seen.push(NsRequest::from_ct(&ct).expect("ns request"));
                }
                if let Some(r) = sw.answer(&f) {
                    p.handle_frame(r, Duration::ZERO);
                }
            }
        }
        assert!(seen.contains(&NsRequest::RffId {
            port_id: ME,
            fc4_features: 0x03,
            fc4_type: FC4_TYPE_FCP
        }));
        assert!(seen.contains(&NsRequest::RnnId {
            port_id: ME,
            node_name: wwnn(1)
        }));
        assert!(seen.contains(&NsRequest::RspnId {
            port_id: ME,
            symbolic_name: Bytes::from_static(b"h1/0")
        }));
    }

    #[test]
    fn dropped_flogi_is_retried_after_timeout_with_fresh_ox_id() {
        let mut p = port(Role::Initiator);
        let mut sw = FakeSwitch {
            drop_flogi: 1,
            ..FakeSwitch::new()
        };
        p.handle_link_up(Duration::ZERO);
        pump(&mut p, &mut sw, Duration::ZERO);
        assert_eq!(p.state(), NPortState::LoggingIn(FabricStep::Flogi));
        assert_eq!(p.poll_timeout(), Some(20 * MS));
        p.handle_timeout(19 * MS);
        assert!(p.poll_transmit().is_none(), "not yet");
        p.handle_timeout(20 * MS);
        pump(&mut p, &mut sw, 20 * MS);
        assert_eq!(p.state(), NPortState::Online);
        assert_eq!(&sw.log[..2], ["Flogi>fffffe", "Flogi>fffffe"]);
        assert_ne!(sw.ox_ids[0], sw.ox_ids[1]);
        assert_eq!(p.ns_view(), &full_view());
    }

    #[test]
    fn flogi_gives_up_after_max_retries() {
        let mut p = port(Role::Initiator);
        let mut sw = FakeSwitch {
            drop_flogi: u32::MAX,
            ..FakeSwitch::new()
        };
        p.handle_link_up(Duration::ZERO);
        let mut now = Duration::ZERO;
        pump(&mut p, &mut sw, now);
        while let Some(t) = p.poll_timeout() {
            now = t;
            p.handle_timeout(now);
            pump(&mut p, &mut sw, now);
        }
        assert_eq!(sw.log.len(), 4, "1 + max_retries FLOGIs");
        assert_eq!(now, 80 * MS);
        assert_eq!(p.state(), NPortState::Failed(FabricStep::Flogi));
        assert_eq!(
            events(&mut p),
            [NPortEvent::FabricLoginFailed {
                step: FabricStep::Flogi
            }]
        );
        assert_eq!(p.fc_id(), None);
    }

    #[test]
    fn rejected_registration_is_retried() {
        let mut p = port(Role::Target);
        let mut sw = FakeSwitch {
            reject_rft: 2,
            ..FakeSwitch::new()
        };
        p.handle_link_up(Duration::ZERO);
        pump(&mut p, &mut sw, Duration::ZERO);
        assert_eq!(p.state(), NPortState::Online);
        assert_eq!(sw.log.iter().filter(|l| *l == "RFT_ID").count(), 3);
    }

    fn rscn_frame(ox_id: u16, affected: FcId) -> Frame {
        let h = FcHeader::request(
            rctl::ELS_REQUEST,
            ftype::ELS,
            ME,
            FcId::FABRIC_CONTROLLER,
            ox_id,
        );
        Frame::els(
            h,
            &Els::Rscn(Rscn {
                pages: vec![RscnPage {
                    format: AddressFormat::Port,
                    event_qualifier: rscn_event::NAME_SERVER_OBJECT,
                    fc_id: affected,
                }],
            }),
        )
    }

    /// FC-LS-3 §4.3.25: an RSCN is accepted on its exchange, and the port re-queries
    /// the name server.
    #[test]
    fn rscn_is_accepted_counted_and_requeried() {
        let (mut p, mut sw) = online(Role::Initiator);
        let t4 = FcId::new(0x01_0400);
        sw.ns.insert(t4, wwpn(4));
        sw.ns.remove(&T3);
        p.handle_frame(wire(&rscn_frame(0x4321, t4)), 5 * MS);
        let acc = p.poll_transmit().expect("LS_ACC");
        assert_eq!(acc.header.r_ctl, rctl::ELS_REPLY);
        assert_eq!(
            (acc.header.ox_id, acc.header.d_id, acc.header.s_id),
            (0x4321, FcId::FABRIC_CONTROLLER, ME)
        );
        assert!(acc.header.from_responder());
        assert_eq!(
            acc.iu(Some(ElsCode::Rscn)),
            Ok(Iu::Els(Els::Acc(AccPayload::Plain)))
        );
        pump(&mut p, &mut sw, 5 * MS);
        assert_eq!(sw.log, ["GID_FT", "GPN_ID", "GPN_ID"]);
        assert_eq!(p.rscn_count(), 1);
        assert_eq!(
            p.ns_view(),
            &[
                (ME, Some(wwpn(1))),
                (T2, Some(wwpn(2))),
                (t4, Some(wwpn(4)))
            ]
            .into()
        );
        assert_eq!(
            events(&mut p),
            [
                NPortEvent::Rscn { affected: vec![t4] },
                NPortEvent::ViewUpdated { ports: 3 }
            ]
        );
    }

    #[test]
    fn gpn_id_without_answer_leaves_wwpn_unknown() {
        let (mut p, mut sw) = online(Role::Initiator);
        // GID_FT lists T3 but GPN_ID for it is never answered.
        p.handle_frame(wire(&rscn_frame(1, T3)), Duration::ZERO);
        let acc = p.poll_transmit().expect("acc");
        assert_eq!(acc.header.r_ctl, rctl::ELS_REPLY);
        let gid_ft = p.poll_transmit().expect("GID_FT");
        let r = sw.answer(&gid_ft).expect("answer");
        p.handle_frame(r, Duration::ZERO);
        let gpns: Vec<Frame> = std::iter::from_fn(|| p.poll_transmit()).collect();
        assert_eq!(gpns.len(), 2);
        for f in gpns {
            let Ok(Iu::Ct(ct)) = f.iu(None) else {
                panic!("CT")
            };
            if NsRequest::from_ct(&ct) == Ok(NsRequest::GpnId { port_id: T2 }) {
                let r = sw.answer(&f).expect("answer");
                p.handle_frame(r, Duration::ZERO);
            }
        }
        let mut now = Duration::ZERO;
        while let Some(t) = p.poll_timeout() {
            now = t;
            p.handle_timeout(now);
            while p.poll_transmit().is_some() {} // retries dropped too
        }
        assert_eq!(now, 80 * MS);
        assert_eq!(
            p.ns_view(),
            &[(ME, Some(wwpn(1))), (T2, Some(wwpn(2))), (T3, None)].into()
        );
    }

    fn request_from(remote: FcId, ox_id: u16, els: &Els) -> Frame {
        Frame::els(
            FcHeader::request(rctl::ELS_REQUEST, ftype::ELS, ME, remote, ox_id),
            els,
        )
    }

    fn reply_to(p: &mut NPort, req: &Frame, hint: ElsCode) -> Els {
        p.handle_frame(wire(req), Duration::ZERO);
        let r = wire(&p.poll_transmit().expect("a reply"));
        assert_eq!(r.header.ox_id, req.header.ox_id);
        assert_eq!((r.header.d_id, r.header.s_id), (req.header.s_id, ME));
        assert!(r.header.from_responder());
        assert_ne!(r.header.rx_id, 0xFFFF);
        match r.iu(Some(hint)) {
            Ok(Iu::Els(e)) => e,
            other => panic!("not an ELS: {other:?}"),
        }
    }

    /// FC-LS-3 §4.2.28 / FCP-4 §6.3: a target answers PLOGI with its service
    /// parameters and PRLI with an FCP page "request executed", target function set.
    #[test]
    fn incoming_plogi_prli_logo_are_answered() {
        let (mut p, _sw) = online(Role::Target);
        let host = FcId::new(0x02_0100);
        // PRLI before PLOGI: refused.
        let prli = request_from(host, 0x10, &Els::Prli(Prli::fcp(fcp_sp::INITIATOR)));
        assert_eq!(
            reply_to(&mut p, &prli, ElsCode::Prli),
            Els::LsRjt(LsRjt::new(
                rjt_reason::UNABLE_TO_PERFORM,
                rjt_explanation::PLOGI_REQUIRED
            ))
        );
        let plogi = request_from(
            host,
            0x11,
            &Els::Plogi(ServiceParams::plogi(wwpn(9), wwnn(9))),
        );
        assert_eq!(
            reply_to(&mut p, &plogi, ElsCode::Plogi),
            Els::Acc(AccPayload::Login(ServiceParams::plogi(wwpn(1), wwnn(1))))
        );
        assert_eq!(p.logged_in().get(&host).map(|r| r.wwpn), Some(wwpn(9)));
        let Els::Acc(AccPayload::Prli(acc)) = reply_to(&mut p, &prli, ElsCode::Prli) else {
            panic!("PRLI not accepted");
        };
        let page = acc.fcp_page().expect("FCP page");
        assert_eq!(page.response_code, prli_response::EXECUTED);
        assert!(page.service_params & fcp_sp::TARGET != 0);
        assert!(page.service_params & fcp_sp::INITIATOR == 0);
        assert!(p.logged_in()[&host].fcp);
        let logo = request_from(
            host,
            0x12,
            &Els::Logo(Logo {
                n_port_id: host,
                port_name: wwpn(9),
            }),
        );
        assert_eq!(
            reply_to(&mut p, &logo, ElsCode::Logo),
            Els::Acc(AccPayload::Plain)
        );
        assert!(p.logged_in().is_empty());
        assert_eq!(
            events(&mut p),
            [
                NPortEvent::RemoteLogin {
                    fc_id: host,
                    wwpn: wwpn(9)
                },
                NPortEvent::RemoteLogout { fc_id: host }
            ]
        );
    }

    #[test]
    fn unknown_els_is_rejected_and_abts_gets_ba_acc() {
        let (mut p, _sw) = online(Role::Initiator);
        let odd = request_from(
            T2,
            0x20,
            &Els::Unsupported {
                code: 0x7A,
                body: Bytes::from_static(&[0, 0, 0]),
            },
        );
        assert_eq!(
            reply_to(&mut p, &odd, ElsCode::Unsupported(0x7A)),
            Els::LsRjt(LsRjt::new(
                rjt_reason::COMMAND_NOT_SUPPORTED,
                rjt_explanation::NONE
            ))
        );
        let mut h = FcHeader::request(rctl::BA_ABTS, ftype::BLS, ME, T2, 0x21);
        h.rx_id = 0x0042;
        p.handle_frame(wire(&Frame::from_iu(h, &Iu::Abts)), Duration::ZERO);
        let r = p.poll_transmit().expect("BA_ACC");
        assert_eq!(
            (r.header.r_ctl, r.header.ox_id, r.header.rx_id),
            (rctl::BA_ACC, 0x21, 0x42)
        );
        let Ok(Iu::BaAcc(BaAccPayload { ox_id, rx_id, .. })) = r.iu(None) else {
            panic!("not BA_ACC");
        };
        assert_eq!((ox_id, rx_id), (0x21, 0x42));
        // FCP and other frames go up to the driver.
        let fcp = Frame::from_iu(
            FcHeader::request(0, 0, ME, T2, 0x22),
            &Iu::FcpData(Bytes::from_static(b"x")),
        );
        p.handle_frame(fcp.clone(), Duration::ZERO);
        assert_eq!(events(&mut p), [NPortEvent::Unhandled { frame: fcp }]);
    }

    #[test]
    fn login_by_wwpn_resolves_then_plogi_prli() {
        let (mut p, mut sw) = online(Role::Initiator);
        let t = p.login_to(LoginTarget::Wwpn(wwpn(2)), Duration::ZERO);
        pump(&mut p, &mut sw, Duration::ZERO);
        assert_eq!(sw.log, ["GID_PN", "Plogi>010200", "Prli>010200"]);
        assert_eq!(
            events(&mut p),
            [NPortEvent::LoginDone {
                ticket: t,
                outcome: LoginOutcome::Accepted { fc_id: T2 }
            }]
        );
        let r = p.logged_in()[&T2];
        assert_eq!((r.wwpn, r.fcp), (wwpn(2), true));
    }

    #[test]
    fn login_by_unknown_wwpn_is_not_found() {
        let (mut p, mut sw) = online(Role::Initiator);
        let t = p.login_to(LoginTarget::Wwpn(wwpn(0x99)), Duration::ZERO);
        pump(&mut p, &mut sw, Duration::ZERO);
        assert_eq!(sw.log, ["GID_PN"]);
        assert_eq!(
            events(&mut p),
            [NPortEvent::LoginDone {
                ticket: t,
                outcome: LoginOutcome::NotFound
            }]
        );
        assert!(p.logged_in().is_empty());
    }

    #[test]
    fn plogi_rejected_by_remote() {
        let (mut p, mut sw) = online(Role::Initiator);
        let stranger = FcId::new(0x01_0500); // not a remote: the fake answers LS_RJT
        let t = p.login_to(LoginTarget::FcId(stranger), Duration::ZERO);
        pump(&mut p, &mut sw, Duration::ZERO);
        assert_eq!(
            events(&mut p),
            [NPortEvent::LoginDone {
                ticket: t,
                outcome: LoginOutcome::Rejected {
                    reason: RejectReason::LsRjt {
                        request: ElsCode::Plogi,
                        reason: rjt_reason::COMMAND_NOT_SUPPORTED,
                        explanation: 0
                    }
                }
            }]
        );
    }

    /// Hard zoning drops frames silently: the login times out, once, at its deadline.
    #[test]
    fn login_times_out_without_retries() {
        let (mut p, mut sw) = online(Role::Initiator);
        sw.blackhole.insert(T3);
        let start = 7 * MS;
        let t = p.login_to_within(LoginTarget::FcId(T3), 50 * MS, start);
        pump(&mut p, &mut sw, start);
        assert_eq!(p.poll_timeout(), Some(57 * MS));
        p.handle_timeout(56 * MS);
        assert!(events(&mut p).is_empty());
        p.handle_timeout(57 * MS);
        assert!(p.poll_transmit().is_none(), "no retry");
        assert_eq!(
            events(&mut p),
            [NPortEvent::LoginDone {
                ticket: t,
                outcome: LoginOutcome::Timeout
            }]
        );
        assert_eq!(sw.log, ["Plogi>010300"]);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn link_down_resets_everything() {
        let (mut p, mut sw) = online(Role::Initiator);
        let t1 = p.login_to(LoginTarget::FcId(T2), Duration::ZERO);
        pump(&mut p, &mut sw, Duration::ZERO);
        assert!(p.logged_in().contains_key(&T2));
        sw.blackhole.insert(T3);
        let t2 = p.login_to(LoginTarget::FcId(T3), Duration::ZERO);
        pump(&mut p, &mut sw, Duration::ZERO);
        p.handle_frame(wire(&rscn_frame(3, T3)), Duration::ZERO);
        events(&mut p);
        p.handle_link_down();
        assert_eq!(p.state(), NPortState::Offline);
        assert_eq!(p.fc_id(), None);
        assert!(p.ns_view().is_empty() && p.logged_in().is_empty());
        assert_eq!(p.poll_timeout(), None);
        assert!(p.poll_transmit().is_none());
        assert_eq!(p.rscn_count(), 1, "a statistic survives");
        assert_eq!(
            events(&mut p),
            [NPortEvent::LoginDone {
                ticket: t2,
                outcome: LoginOutcome::Rejected {
                    reason: RejectReason::Offline
                }
            }]
        );
        assert_ne!(t1, t2);
        // While offline a login is refused at once; a late reply is ignored.
        let t3 = p.login_to(LoginTarget::Wwpn(wwpn(2)), Duration::ZERO);
        assert!(p.poll_transmit().is_none());
        assert_eq!(
            events(&mut p),
            [NPortEvent::LoginDone {
                ticket: t3,
                outcome: LoginOutcome::Rejected {
                    reason: RejectReason::Offline
                }
            }]
        );
        // Link up again: the whole sequence restarts.
        sw.log.clear();
        p.handle_link_up(MS);
        pump(&mut p, &mut sw, MS);
        assert_eq!(p.state(), NPortState::Online);
        assert_eq!(sw.log[0], "Flogi>fffffe");
        assert_eq!(p.ns_view(), &full_view());
    }

    #[test]
    fn stray_and_garbled_replies_are_ignored() {
        let mut p = port(Role::Initiator);
        p.handle_link_up(Duration::ZERO);
        let flogi = p.poll_transmit().expect("FLOGI");
        // Wrong OX_ID.
        let mut h = flogi.header.reply(rctl::ELS_REPLY, 1);
        h.ox_id ^= 0x5555;
        p.handle_frame(Frame::els(h, &Els::Acc(AccPayload::Plain)), Duration::ZERO);
        // Right OX_ID, truncated LS_ACC to FLOGI (no service parameters).
        let h = flogi.header.reply(rctl::ELS_REPLY, 1);
        p.handle_frame(Frame::els(h, &Els::Acc(AccPayload::Plain)), Duration::ZERO);
        // A CT reply on an ELS exchange.
        let ct: CtIu = NsResponse::Accept(NsAccept::Empty).to_ct();
        p.handle_frame(
            Frame::ct(flogi.header.reply(rctl::CT_REPLY, 1), &ct),
            Duration::ZERO,
        );
        assert_eq!(p.state(), NPortState::LoggingIn(FabricStep::Flogi));
        assert_eq!(p.fc_id(), None);
        assert_eq!(p.poll_timeout(), Some(20 * MS));
    }
}
