//! The SCSI initiator of a node: target discovery through the fabric and multipath I/O.
//!
//! Discovery follows what an HBA driver and `multipathd` do: every FCP port the name
//! server shows is logged in to (PLOGI + PRLI, through the node's [`NPort`]s); those
//! that accept as FCP targets get REPORT LUNS, then per LUN standard INQUIRY, VPD page
//! 83h (the NAA that names the LU across paths), VPD page C0h (the array's copy
//! functions) and READ CAPACITY(16). Paths to one NAA form one [`Device`]. I/O goes
//! round-robin over the active paths; a transport failure marks the path failed and the
//! command is retried on another path; with no path left it waits (queue_if_no_path)
//! up to [`NO_PATH_TIMEOUT`]. A path comes back when its target is rediscovered.
//!
//! Used by hosts, and by arrays as the copy manager's initiator.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use fcsim_fabric::endnode::Fc4Ctx;
use fcsim_fabric::frame::Frame;
use fcsim_fabric::nport::{LoginOutcome, LoginTarget, LoginTicket, NPort, NPortEvent};
use fcsim_fabric::{FcId, Wwn, Wwpn};
use tracing::{debug, info, warn};

use crate::fcp::{FcpInitiator, IoRequest, IoResult, Tag, TransportError};

/// How long a command waits for a path when none is active.
pub const NO_PATH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an EXTENDED COPY may run before the host gives up on it.
pub const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// SCSI status GOOD.
pub const GOOD: u8 = 0x00;

/// One path to a logical unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathState {
    /// Local port index.
    pub port: u32,
    /// Target port address.
    pub target: FcId,
    /// Target port name.
    pub target_wwpn: Wwpn,
    /// LUN on that target port.
    pub lun: u32,
    /// Usable for I/O.
    pub active: bool,
}

/// A logical unit as this initiator knows it: one NAA, several paths.
#[derive(Debug, Clone)]
pub struct Device {
    /// The LU's NAA identifier (VPD 83h).
    pub naa: Wwn,
    /// Standard INQUIRY vendor and product.
    pub vendor: String,
    pub product: String,
    /// Capacity from READ CAPACITY(16).
    pub blocks: u64,
    pub block_bytes: u32,
    /// The 3PC bit of standard INQUIRY.
    pub third_party_copy: bool,
    /// Copy functions from VPD C0h.
    pub functions: Vec<String>,
    /// Paths, in discovery order.
    pub paths: Vec<PathState>,
    /// Round-robin cursor.
    next_path: usize,
}

/// Identifies a command submitted through [`ScsiInitiator::submit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IoId(pub u64);

/// The result of a submitted command, with the path it finally used.
#[derive(Debug, Clone)]
pub struct Completion {
    pub result: IoResult,
    /// Local port of the last attempt (`None` if no path was ever available).
    pub port: Option<u32>,
    /// Fabric time from submission to completion.
    pub latency: Duration,
}

/// Things worth a line in the log or the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitiatorEvent {
    PathUp {
        naa: Wwn,
        port: u32,
        target: FcId,
        lun: u32,
    },
    PathDown {
        naa: Wwn,
        port: u32,
        target: FcId,
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct LuInfo {
    /// A stream (tape) device, peripheral type 01h, or a processor device, 03h (a
    /// relay's LU 0): no capacity, no copy functions.
    stream: bool,
    vendor: String,
    product: String,
    third_party_copy: bool,
    naa: Option<Wwn>,
    functions: Vec<String>,
}

#[derive(Debug, Clone)]
enum ProbeStep {
    ReportLuns,
    Inquiry { lun: u32 },
    Vpd83 { lun: u32, info: LuInfo },
    VpdC0 { lun: u32, info: LuInfo },
    ReadCapacity { lun: u32, info: LuInfo },
}

#[derive(Debug, Clone)]
struct Probe {
    port: u32,
    target: FcId,
    step: ProbeStep,
}

#[derive(Debug, Clone)]
struct Io {
    naa: Wwn,
    req: IoRequest,
    submitted: Duration,
    /// Paths already tried and failed for this command (port, target).
    tried: BTreeSet<(u32, FcId)>,
    last_port: Option<u32>,
    /// Waiting for a path since (queue_if_no_path).
    waiting_since: Option<Duration>,
    /// UNIT ATTENTIONs retried so far.
    unit_attentions: u8,
}

/// CHECK CONDITION with sense key UNIT ATTENTION (a reset or a LUN change the target
/// reports once): the command itself was not executed and is simply sent again.
fn is_unit_attention(r: &IoResult) -> bool {
    r.transport.is_none() && r.status == 0x02 && r.sense.get(2).is_some_and(|k| k & 0x0F == 0x06)
}

/// The initiator: discovery, devices and their paths, and multipath command routing.
#[derive(Default)]
pub struct ScsiInitiator {
    fcp: FcpInitiator,
    /// Remote ports being logged in to: (port, ticket) → target.
    logins: BTreeMap<(u32, LoginTicket), FcId>,
    /// Remote ports known per local port (logged in or being logged in to).
    remotes: BTreeSet<(u32, FcId)>,
    probes: BTreeMap<Tag, Probe>,
    devices: BTreeMap<Wwn, Device>,
    ios: BTreeMap<IoId, Io>,
    tags: BTreeMap<Tag, IoId>,
    /// Commands waiting for a path.
    parked: VecDeque<IoId>,
    /// Commands to dispatch again (a path came back).
    retry_later: Vec<IoId>,
    next_io: u64,
    done: VecDeque<(IoId, Completion)>,
    events: VecDeque<InitiatorEvent>,
    /// Timeouts other than the defaults (exchange, no path).
    timeouts: Option<(Duration, Duration)>,
}

impl ScsiInitiator {
    pub fn new() -> Self {
        Self::default()
    }

    /// An initiator that gives up sooner than a host's: a READ or WRITE exchange after
    /// `exchange`, a command without a path after `no_path`. A virtualizer in front of
    /// the arrays must answer its own initiators before their exchanges time out.
    pub fn with_timeouts(exchange: Duration, no_path: Duration) -> Self {
        ScsiInitiator {
            timeouts: Some((exchange, no_path)),
            ..Self::default()
        }
    }

    fn no_path_timeout(&self) -> Duration {
        self.timeouts.map_or(NO_PATH_TIMEOUT, |t| t.1)
    }

    /// Every discovered device, by NAA.
    pub fn devices(&self) -> &BTreeMap<Wwn, Device> {
        &self.devices
    }

    pub fn device(&self, naa: Wwn) -> Option<&Device> {
        self.devices.get(&naa)
    }

    pub fn poll_completion(&mut self) -> Option<(IoId, Completion)> {
        self.done.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<InitiatorEvent> {
        self.events.pop_front()
    }

    /// The earliest deadline: open exchanges and parked commands.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let parked = self
            .parked
            .iter()
            .filter_map(|id| self.ios.get(id)?.waiting_since)
            .map(|t| t + self.no_path_timeout())
            .min();
        [self.fcp.poll_timeout(), parked]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- inputs from the node --------------------------------------------------------------

    /// An FCP frame; returns false if it is not for this initiator.
    pub fn on_frame(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, frame: &Frame) -> bool {
        let mine = self.fcp.handle_frame(port, frame);
        self.after(ctx);
        mine
    }

    pub fn on_timeout(&mut self, ctx: &mut Fc4Ctx<'_>) {
        self.fcp.handle_timeout(ctx.now);
        let no_path = self.no_path_timeout();
        let expired: Vec<IoId> = self
            .parked
            .iter()
            .copied()
            .filter(|id| {
                self.ios
                    .get(id)
                    .and_then(|io| io.waiting_since)
                    .is_some_and(|t| t + no_path <= ctx.now)
            })
            .collect();
        for id in expired {
            self.parked.retain(|p| *p != id);
            self.fail(id, ctx.now, "no-path");
        }
        self.after(ctx);
    }

    pub fn on_link_down(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32) {
        self.fcp.port_down(port);
        let gone: Vec<(u32, FcId)> = self
            .remotes
            .range((port, FcId::new(0))..=(port, FcId::new(0xFF_FFFF)))
            .copied()
            .collect();
        for (p, t) in gone {
            self.forget_remote(p, t, "link down");
        }
        self.logins.retain(|(p, _), _| *p != port);
        self.after(ctx);
    }

    /// N_Port events drive discovery.
    pub fn on_nport_event(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, ev: &NPortEvent) {
        match ev {
            NPortEvent::Online | NPortEvent::ViewUpdated { .. } => self.rescan(ctx, port),
            NPortEvent::LoginDone { ticket, outcome } => {
                let Some(target) = self.logins.remove(&(port, *ticket)) else {
                    return;
                };
                match outcome {
                    LoginOutcome::Accepted { fc_id } => {
                        let is_target = ctx
                            .ports
                            .get(&port)
                            .and_then(|np| np.logged_in().get(fc_id))
                            .is_some_and(|r| r.target);
                        if is_target {
                            self.probe(ctx, port, target, ProbeStep::ReportLuns);
                        }
                    }
                    other => {
                        debug!(port, %target, ?other, "target login failed");
                        self.remotes.remove(&(port, target));
                    }
                }
            }
            NPortEvent::RemoteLogout { fc_id } => {
                self.forget_remote(port, *fc_id, "remote logged out")
            }
            _ => {}
        }
        self.after(ctx);
    }

    /// Logs in to every FCP port in the name-server view not yet known; forgets the
    /// ones that left the view.
    fn rescan(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32) {
        let Some(np) = ctx.ports.get_mut(&port) else {
            return;
        };
        // Never this node's own ports (a node with both roles sees itself).
        let view: BTreeSet<FcId> = np.ns_view().keys().copied().collect();
        let mine: BTreeSet<FcId> = ctx.ports.values().filter_map(NPort::fc_id).collect();
        let view: BTreeSet<FcId> = view.difference(&mine).copied().collect();
        let known: Vec<FcId> = self
            .remotes
            .iter()
            .filter(|(p, _)| *p == port)
            .map(|(_, t)| *t)
            .collect();
        for t in known.iter().filter(|t| !view.contains(t)) {
            self.forget_remote(port, *t, "left the name-server view");
        }
        let Some(np) = ctx.ports.get_mut(&port) else {
            return;
        };
        for t in view {
            if self.remotes.insert((port, t)) {
                let ticket = np.login_to(LoginTarget::FcId(t), ctx.now);
                self.logins.insert((port, ticket), t);
            }
        }
    }

    fn forget_remote(&mut self, port: u32, target: FcId, reason: &str) {
        self.remotes.remove(&(port, target));
        self.probes
            .retain(|_, p| !(p.port == port && p.target == target));
        for d in self.devices.values_mut() {
            for p in d
                .paths
                .iter_mut()
                .filter(|p| p.port == port && p.target == target && p.active)
            {
                p.active = false;
                self.events.push_back(InitiatorEvent::PathDown {
                    naa: d.naa,
                    port,
                    target,
                    reason: reason.to_string(),
                });
            }
        }
    }

    // ---- discovery -------------------------------------------------------------------------

    fn probe(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, target: FcId, step: ProbeStep) {
        let Some(s_id) = ctx.ports.get(&port).and_then(|np| np.fc_id()) else {
            return;
        };
        let req = match &step {
            ProbeStep::ReportLuns => IoRequest {
                lun: 0,
                cdb: cdb::report_luns(4096),
                data_out: Bytes::new(),
                data_in_len: 4096,
            },
            ProbeStep::Inquiry { lun } => IoRequest {
                lun: *lun,
                cdb: cdb::inquiry(None, 96),
                data_out: Bytes::new(),
                data_in_len: 96,
            },
            ProbeStep::Vpd83 { lun, .. } => IoRequest {
                lun: *lun,
                cdb: cdb::inquiry(Some(0x83), 255),
                data_out: Bytes::new(),
                data_in_len: 255,
            },
            ProbeStep::VpdC0 { lun, .. } => IoRequest {
                lun: *lun,
                cdb: cdb::inquiry(Some(0xC0), 255),
                data_out: Bytes::new(),
                data_in_len: 255,
            },
            ProbeStep::ReadCapacity { lun, .. } => IoRequest {
                lun: *lun,
                cdb: cdb::read_capacity16(32),
                data_out: Bytes::new(),
                data_in_len: 32,
            },
        };
        let tag = self.fcp.submit(port, s_id, target, req, ctx.now);
        self.probes.insert(tag, Probe { port, target, step });
    }

    fn probe_done(&mut self, ctx: &mut Fc4Ctx<'_>, probe: Probe, r: IoResult) {
        let Probe { port, target, step } = probe;
        if is_unit_attention(&r) {
            return self.probe(ctx, port, target, step);
        }
        let ok = r.transport.is_none() && r.status == GOOD;
        match step {
            ProbeStep::ReportLuns if ok => {
                for lun in parse::report_luns(&r.data_in) {
                    self.probe(ctx, port, target, ProbeStep::Inquiry { lun });
                }
            }
            ProbeStep::Inquiry { lun } if ok => {
                let Some(info) = parse::standard_inquiry(&r.data_in) else {
                    return;
                };
                // Direct-access block devices (00h), stream devices (01h, tapes) and
                // processor devices (03h, relays: commands addressed to their port).
                if r.data_in
                    .first()
                    .is_some_and(|b| matches!(b & 0x1F, 0 | 1 | 3))
                {
                    self.probe(ctx, port, target, ProbeStep::Vpd83 { lun, info });
                }
            }
            ProbeStep::Vpd83 { lun, mut info } if ok => {
                info.naa = parse::vpd83_lu_naa(&r.data_in);
                match info.naa {
                    Some(naa) if info.stream => {
                        let target_wwpn = ctx
                            .ports
                            .get(&port)
                            .and_then(|np| np.logged_in().get(&target).map(|r| r.wwpn))
                            .unwrap_or_default();
                        let path = PathState {
                            port,
                            target,
                            target_wwpn,
                            lun,
                            active: true,
                        };
                        self.add_path(naa, info, 0, 0, path);
                    }
                    Some(_) => self.probe(ctx, port, target, ProbeStep::VpdC0 { lun, info }),
                    None => {}
                }
            }
            ProbeStep::VpdC0 { lun, mut info } => {
                // Arrays without the vendor page answer CHECK CONDITION: no functions.
                if ok {
                    info.functions = parse::vpd_c0_functions(&r.data_in);
                }
                self.probe(ctx, port, target, ProbeStep::ReadCapacity { lun, info });
            }
            ProbeStep::ReadCapacity { lun, info } if ok => {
                let (Some((blocks, block_bytes)), Some(naa)) =
                    (parse::read_capacity16(&r.data_in), info.naa)
                else {
                    return;
                };
                let target_wwpn = ctx
                    .ports
                    .get(&port)
                    .and_then(|np| np.logged_in().get(&target).map(|r| r.wwpn))
                    .unwrap_or_default();
                self.add_path(
                    naa,
                    info,
                    blocks,
                    block_bytes,
                    PathState {
                        port,
                        target,
                        target_wwpn,
                        lun,
                        active: true,
                    },
                );
            }
            other => {
                debug!(port, %target, ?other, status = r.status, transport = ?r.transport, "discovery step failed")
            }
        }
    }

    fn add_path(&mut self, naa: Wwn, info: LuInfo, blocks: u64, block_bytes: u32, path: PathState) {
        let d = self.devices.entry(naa).or_insert_with(|| Device {
            naa,
            vendor: info.vendor.clone(),
            product: info.product.clone(),
            blocks,
            block_bytes,
            third_party_copy: info.third_party_copy,
            functions: info.functions.clone(),
            paths: Vec::new(),
            next_path: 0,
        });
        d.blocks = blocks;
        d.block_bytes = block_bytes;
        d.functions = info.functions;
        let (port, target, lun) = (path.port, path.target, path.lun);
        match d
            .paths
            .iter_mut()
            .find(|p| p.port == port && p.target == target && p.lun == lun)
        {
            Some(p) => *p = path,
            None => d.paths.push(path),
        }
        info!(%naa, port, %target, lun, "path up");
        self.events.push_back(InitiatorEvent::PathUp {
            naa,
            port,
            target,
            lun,
        });
        // Commands waiting for a path go now.
        let parked: Vec<IoId> = self.parked.drain(..).collect();
        self.retry_later.extend(parked);
    }

    // ---- I/O -----------------------------------------------------------------------------------

    /// Sends `req` to the device named by `naa` over one of its active paths.
    pub fn submit(&mut self, ctx: &mut Fc4Ctx<'_>, naa: Wwn, req: IoRequest) -> IoId {
        self.start(ctx, naa, req, BTreeSet::new())
    }

    /// Sends `req` to `naa` only through local port `port` (a command bound to an
    /// I_T nexus, such as RECEIVE COPY RESULTS about a copy that port started).
    pub fn submit_on(&mut self, ctx: &mut Fc4Ctx<'_>, naa: Wwn, port: u32, req: IoRequest) -> IoId {
        // The other ports' paths count as tried already.
        let tried = self
            .devices
            .get(&naa)
            .map(|d| {
                d.paths
                    .iter()
                    .filter(|p| p.port != port)
                    .map(|p| (p.port, p.target))
                    .collect()
            })
            .unwrap_or_default();
        self.start(ctx, naa, req, tried)
    }

    /// Sends `req` to `naa` only through paths to the target port `target` (a command
    /// addressed to one port, such as a RELAY RECORD to a relay or to the standby's
    /// destination port); it fails at once when no such path is active.
    pub fn submit_to_target(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        naa: Wwn,
        target: Wwpn,
        req: IoRequest,
    ) -> IoId {
        let tried = self
            .devices
            .get(&naa)
            .map(|d| {
                d.paths
                    .iter()
                    .filter(|p| p.target_wwpn != target)
                    .map(|p| (p.port, p.target))
                    .collect()
            })
            .unwrap_or_default();
        self.start(ctx, naa, req, tried)
    }

    fn start(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        naa: Wwn,
        req: IoRequest,
        tried: BTreeSet<(u32, FcId)>,
    ) -> IoId {
        self.next_io += 1;
        let id = IoId(self.next_io);
        self.ios.insert(
            id,
            Io {
                naa,
                req,
                submitted: ctx.now,
                tried,
                last_port: None,
                waiting_since: None,
                unit_attentions: 0,
            },
        );
        self.dispatch(ctx, id);
        self.after(ctx);
        id
    }

    /// Sends command `id` on the next active path not yet tried, parks it if there is none.
    fn dispatch(&mut self, ctx: &mut Fc4Ctx<'_>, id: IoId) {
        let Some(io) = self.ios.get_mut(&id) else {
            return;
        };
        let Some(dev) = self.devices.get_mut(&io.naa) else {
            self.fail(id, ctx.now, "no-path");
            return;
        };
        let n = dev.paths.len();
        let pick = (0..n).map(|i| (dev.next_path + i) % n).find(|&i| {
            let p = &dev.paths[i];
            p.active && !io.tried.contains(&(p.port, p.target))
        });
        let Some(i) = pick else {
            if dev.paths.iter().any(|p| p.active) {
                // Every active path failed this command already.
                self.fail(id, ctx.now, "all paths failed");
            } else {
                io.waiting_since.get_or_insert(ctx.now);
                self.parked.push_back(id);
            }
            return;
        };
        dev.next_path = (i + 1) % n;
        let path = dev.paths[i].clone();
        let Some(s_id) = ctx.ports.get(&path.port).and_then(|np| np.fc_id()) else {
            io.tried.insert((path.port, path.target));
            return self.dispatch(ctx, id);
        };
        let mut req = io.req.clone();
        req.lun = path.lun;
        io.last_port = Some(path.port);
        // A copy manager may take long: EXTENDED COPY waits for its status much longer
        // than a READ or WRITE (a retry on another path would copy twice).
        let timeout = if req.cdb.first() == Some(&0x83) {
            COPY_TIMEOUT
        } else {
            self.timeouts
                .map_or(FcpInitiator::EXCHANGE_TIMEOUT, |t| t.0)
        };
        let tag = self
            .fcp
            .submit_within(path.port, s_id, path.target, req, ctx.now, timeout);
        self.tags.insert(tag, id);
    }

    fn fail(&mut self, id: IoId, now: Duration, why: &str) {
        if let Some(io) = self.ios.remove(&id) {
            let transport = if why == "timeout" {
                TransportError::Timeout
            } else {
                TransportError::LinkDown
            };
            let result = IoResult {
                status: 0,
                sense: Bytes::new(),
                data_in: Bytes::new(),
                resid: 0,
                transport: Some(transport),
            };
            debug!(?id, why, "command failed");
            self.done.push_back((
                id,
                Completion {
                    result,
                    port: io.last_port,
                    latency: now - io.submitted,
                },
            ));
        }
    }

    fn io_done(&mut self, ctx: &mut Fc4Ctx<'_>, id: IoId, r: IoResult) {
        if is_unit_attention(&r) {
            if let Some(io) = self.ios.get_mut(&id).filter(|io| io.unit_attentions < 4) {
                io.unit_attentions += 1;
                return self.dispatch(ctx, id);
            }
        }
        match r.transport {
            None => {
                if let Some(io) = self.ios.remove(&id) {
                    self.done.push_back((
                        id,
                        Completion {
                            result: r,
                            port: io.last_port,
                            latency: ctx.now - io.submitted,
                        },
                    ));
                }
            }
            Some(e) => {
                // The path failed this command: mark it, and try another path.
                let Some(io) = self.ios.get_mut(&id) else {
                    return;
                };
                let Some(dev) = self.devices.get_mut(&io.naa) else {
                    return;
                };
                let failed_port = io.last_port;
                if let Some(port) = io.last_port {
                    for p in dev.paths.iter_mut().filter(|p| p.port == port && p.active) {
                        p.active = false;
                        io.tried.insert((p.port, p.target));
                        warn!(naa = %dev.naa, port, target = %p.target, ?e, "path failed");
                        self.events.push_back(InitiatorEvent::PathDown {
                            naa: dev.naa,
                            port,
                            target: p.target,
                            reason: format!("{e:?}"),
                        });
                        // Rediscover it: a new login and probe brings it back.
                        self.remotes.remove(&(port, p.target));
                    }
                }
                // Log in again at once, as an HBA recovers a target that stopped
                // answering: the name server may still list it (it restarted, or the
                // timeout belonged to an exchange from before it came back), so no RSCN
                // would ever start the rediscovery.
                if let Some(port) = failed_port {
                    self.rescan(ctx, port);
                }
                self.dispatch(ctx, id);
            }
        }
    }

    /// Routes FCP completions and sends what the FCP layer queued.
    fn after(&mut self, ctx: &mut Fc4Ctx<'_>) {
        loop {
            let mut progressed = false;
            for id in std::mem::take(&mut self.retry_later) {
                progressed = true;
                self.dispatch(ctx, id);
            }
            while let Some((tag, r)) = self.fcp.poll_completion() {
                progressed = true;
                if let Some(p) = self.probes.remove(&tag) {
                    self.probe_done(ctx, p, r);
                } else if let Some(id) = self.tags.remove(&tag) {
                    self.io_done(ctx, id, r);
                }
            }
            while let Some((port, f)) = self.fcp.poll_transmit() {
                progressed = true;
                if !ctx.send(port, &f) {
                    debug!(port, ox_id = f.header.ox_id, "FCP frame not sent: no cable");
                }
            }
            if !progressed {
                return;
            }
        }
    }
}

/// CDBs the initiator sends, built by the SCSI core's encoders (SPC-5 / SBC-4).
pub mod cdb {
    use bytes::Bytes;

    use crate::scsi::cdb::{Inquiry, Read16, ReadCapacity16, ReportLuns, Write16};

    /// REPORT LUNS (A0h), SPC-5 §6.33, select report 00h.
    pub fn report_luns(alloc: u32) -> Bytes {
        ReportLuns {
            select_report: 0,
            allocation_length: alloc,
        }
        .encode()
    }

    /// INQUIRY (12h), SPC-5 §6.7: standard data, or a VPD page with EVPD = 1.
    pub fn inquiry(vpd: Option<u8>, alloc: u16) -> Bytes {
        Inquiry {
            evpd: vpd.is_some(),
            page_code: vpd.unwrap_or(0),
            allocation_length: alloc,
        }
        .encode()
    }

    /// READ CAPACITY (16) (9Eh/10h), SBC-4 §5.20.
    pub fn read_capacity16(alloc: u32) -> Bytes {
        ReadCapacity16 {
            allocation_length: alloc,
        }
        .encode()
    }

    /// READ (16) (88h), SBC-4 §5.16.
    pub fn read16(lba: u64, blocks: u32) -> Bytes {
        Read16 {
            lba,
            blocks,
            dpo: false,
            fua: false,
        }
        .encode()
    }

    /// WRITE (6) (0Ah) to a tape, SSC-4 §8.8, variable block mode: one record of `len`
    /// bytes (at most 16 MiB − 1).
    pub fn tape_write6(len: usize) -> Bytes {
        let l = u32::try_from(len)
            .unwrap_or(u32::MAX)
            .min(0xFF_FFFF)
            .to_be_bytes();
        Bytes::copy_from_slice(&[0x0A, 0, l[1], l[2], l[3], 0])
    }

    /// WRITE (16) (8Ah), SBC-4 §5.40; FUA forces the data to durable media first.
    pub fn write16(lba: u64, blocks: u32, fua: bool) -> Bytes {
        Write16 {
            lba,
            blocks,
            dpo: false,
            fua,
        }
        .encode()
    }
}

/// Parsers for what discovery reads back.
pub mod parse {
    use super::*;

    /// REPORT LUNS parameter data (SPC-5 §6.33), via the SCSI core's decoder.
    pub fn report_luns(d: &[u8]) -> Vec<u32> {
        crate::scsi::target::decode_report_luns(d)
            .map(|l| l.into_iter().map(u32::from).collect())
            .unwrap_or_default()
    }

    pub(super) fn standard_inquiry(d: &[u8]) -> Option<LuInfo> {
        let text = |r: std::ops::Range<usize>| {
            d.get(r)
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
        };
        Some(LuInfo {
            stream: d.first().is_some_and(|b| matches!(b & 0x1F, 1 | 3)),
            vendor: text(8..16)?,
            product: text(16..32)?,
            third_party_copy: d.get(5).is_some_and(|b| b & 0x08 != 0),
            naa: None,
            functions: Vec::new(),
        })
    }

    /// The NAA designator of the addressed logical unit in VPD page 83h (SPC-5 §7.7.6).
    pub fn vpd83_lu_naa(d: &[u8]) -> Option<Wwn> {
        match crate::scsi::inquiry::DeviceIdentification::decode(d)
            .ok()?
            .lu_naa()?
        {
            crate::scsi::inquiry::NaaId::Short(w) => Some(w),
            crate::scsi::inquiry::NaaId::Extended(_) => None,
        }
    }

    /// Copy-function names of the vendor VPD page C0h.
    pub fn vpd_c0_functions(d: &[u8]) -> Vec<String> {
        crate::scsi::inquiry::decode_copy_functions(d)
            .map(|f| f.iter().map(|f| f.name().to_string()).collect())
            .unwrap_or_default()
    }

    /// READ CAPACITY (16) data: (number of blocks, block length).
    pub fn read_capacity16(d: &[u8]) -> Option<(u64, u32)> {
        let last = u64::from_be_bytes(d.get(0..8)?.try_into().ok()?);
        let len = u32::from_be_bytes(d.get(8..12)?.try_into().ok()?);
        Some((last.checked_add(1)?, len))
    }
}
