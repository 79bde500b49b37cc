//! The storage array node: FCP target ports in front of logical units on block stores
//! (sparse memory, or files with `data_dir`), LUN masking per initiator WWPN, the copy
//! functions it advertises (VPD 8Fh/C0h), EXTENDED COPY between its own LUs, and the
//! `fcsim.v1.Array` management service (LU list and an oracle back door that reads the
//! medium directly).
//!
//! Start here: [`run_array`]. SCSI semantics are the sans-IO [`ScsiTarget`]; this module
//! wires it to the FCP target, the N_Ports' login table (who the initiator is) and
//! masking.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use fcsim_fabric::endnode::{EndNodeConfig, EndNodeError, Fc4Ctx, Fc4Layer, run_end_node_with};
use fcsim_fabric::frame::Frame;
use fcsim_fabric::runtime::{FabricClock, Net};
use fcsim_fabric::{Wwn, Wwnn, Wwpn};
use fcsim_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::copysvc::{self, BackupRead, BackupSource, CopyEngine, Volumes};
use crate::fcp::{FcpTarget, IoRequest, TargetCommand};
use crate::history::digest;
use crate::initiator::{IoId, ScsiInitiator, cdb};
use crate::scsi::cdb::Command;
use crate::scsi::inquiry::{CopyFunction, NaaId};
use crate::scsi::sense::{Sense, Status as ScsiStatus, asc};
use crate::scsi::target::{LogicalUnit, LuConfig, Nexus, ScsiTarget};
use crate::scsi::xcopy::{CopyJob, CopyOp, CopyOutcome};
use crate::store::{BlockStore, FileStore, MemStore};

/// One logical unit of an array.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArrayLu {
    /// LUN (below 16384).
    pub lun: u16,
    /// The LU's NAA identifier (VPD 83h).
    pub naa: Wwn,
    /// Capacity in blocks.
    pub blocks: u64,
    /// Logical block size in bytes.
    pub block_bytes: u32,
    /// Initiator WWPNs that may see it; empty: every initiator.
    pub hosts: Vec<Wwpn>,
}

/// An array node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArrayConfig {
    /// Ports, names and cables.
    pub node: EndNodeConfig,
    pub lus: Vec<ArrayLu>,
    /// Copy functions advertised in VPD C0h (`xcopy`, `remote-sync`, …).
    pub functions: Vec<String>,
    /// Every acknowledged write is synced to the backing file first.
    pub write_through: bool,
    /// Keep LUs in files `<data_dir>/<array>-lun<N>.img` (durable across crashes);
    /// `None`: sparse memory, lost on a crash.
    pub data_dir: Option<PathBuf>,
    /// The array's clock against fabric time, µs (positive: ahead): the copy services
    /// date splits, clears and timestamps by it.
    #[serde(default)]
    pub clock_skew_us: i64,
}

/// Requests of the Array service.
pub enum ArrayAdmin {
    List(oneshot::Sender<pb::ListLusResponse>),
    Read {
        lun: u32,
        lba: u64,
        blocks: u32,
        reply: oneshot::Sender<Result<Bytes, Status>>,
    },
    Digests {
        lun: u32,
        lba: u64,
        blocks: u32,
        reply: oneshot::Sender<Result<Vec<u64>, Status>>,
    },
    /// A licence or firmware change: the array runs (and advertises) these functions.
    SetFunctions {
        functions: Vec<String>,
        reply: oneshot::Sender<pb::ListLusResponse>,
    },
    /// A copy-services request (`fcsim.v1.Copy`).
    Copy(crate::copy_service::CopyAdmin),
    /// The copy-manager worker restarts: running EXTENDED COPYs are aborted.
    RestartCopyManager(oneshot::Sender<u32>),
}

/// How long the copy manager waits for a path to a copy target that has none.
const COPY_TARGET_NO_PATH: std::time::Duration = std::time::Duration::from_millis(60);

/// How long the array's copy port waits for one command to another array or a tape: a
/// replication link that died must suspend a synchronous pair (and release the held
/// host write) well before the host's own exchange timeout
/// ([`crate::fcp::FcpInitiator::EXCHANGE_TIMEOUT`]).
const COPY_EXCHANGE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(80);

/// Blocks moved per read/write step of a copy through the fabric.
const COPY_CHUNK_BLOCKS: u64 = 256;
/// In-band PAIR MANAGE answers kept for RECEIVE PAIR RESULTS.
const MANAGE_RESULTS_KEPT: usize = 64;

/// An EXTENDED COPY the copy manager is running through the fabric: one chunk at a
/// time, read from the source then written to the destination.
struct CopyRun {
    /// The EXTENDED COPY command, answered when the job ends; `None` once answered
    /// early (a backup that split its pair: embodiment 4 of seed 004).
    cmd: Option<TargetCommand>,
    /// The backup source when the job reads a pair's secondary (seed 004).
    source: Option<BackupSource>,
    /// Waiting for split-time differences to reach the secondary.
    waiting: bool,
    job: CopyJob,
    /// Operation (segment) being copied.
    op: usize,
    /// Source blocks of that operation already copied.
    done: u64,
    outcome: CopyOutcome,
    /// The chunk read and waiting to be written, with its source block count.
    pending: Option<IoId>,
    /// Blocks of the chunk in flight.
    chunk: u64,
}

/// The array's FC-4 layer.
pub struct ArrayLayer {
    cfg: ArrayConfig,
    fcp: FcpTarget,
    scsi: ScsiTarget,
    /// The copy manager's initiator: reaches other arrays and tapes through the fabric.
    init: ScsiInitiator,
    copies: BTreeMap<u64, CopyRun>,
    /// Copy-manager command → copy run and whether it is the read or the write step.
    copy_ios: BTreeMap<IoId, (u64, bool)>,
    next_copy: u64,
    /// The copy-services engine (pairs, groups, journals; DESIGN.md §7).
    engine: CopyEngine,
    /// Engine commands in flight through the fabric → engine token.
    engine_ios: BTreeMap<IoId, u64>,
    /// Host writes whose answer waits for the secondary: status, sense, data-in.
    held: BTreeMap<u64, (TargetCommand, u8, Bytes)>,
    next_held: u64,
    /// Answers of in-band PAIR MANAGE requests not yet read back, by (initiator node,
    /// request identifier): the read-back may take another path of the same node.
    /// The lowest goes first when full.
    manage_results: BTreeMap<(Wwnn, u32), copysvc::wire::ManageReply>,
    /// Fabric time of the last input.
    now: std::time::Duration,
}

/// The array's LUs as the copy engine sees them.
struct LuStores<'a>(&'a mut ScsiTarget);

/// Fabric time `t` moved by `us` microseconds (never below zero).
fn skewed(t: std::time::Duration, us: i64) -> std::time::Duration {
    let d = std::time::Duration::from_micros(us.unsigned_abs());
    if us >= 0 { t + d } else { t.saturating_sub(d) }
}

/// (blocks, block bytes) of LU `lun`.
fn lu_geometry(scsi: &ScsiTarget, lun: u16) -> Option<(u64, u32)> {
    scsi.lu(lun)
        .map(|l| (l.store().blocks(), l.store().block_bytes()))
}

impl Volumes for LuStores<'_> {
    fn geometry(&self, lun: u16) -> Option<(u64, u32)> {
        lu_geometry(self.0, lun)
    }

    fn read(&self, lun: u16, lba: u64, blocks: u64) -> Option<Bytes> {
        self.0.lu(lun)?.store().read(lba, blocks).ok()
    }

    fn write(&mut self, lun: u16, lba: u64, data: &Bytes) -> bool {
        self.0
            .lu_mut(lun)
            .is_some_and(|l| l.store_mut().write(lba, data).is_ok())
    }
}

fn store_for(cfg: &ArrayConfig, lu: &ArrayLu) -> Result<Box<dyn BlockStore>, String> {
    match &cfg.data_dir {
        None => MemStore::new(lu.block_bytes, lu.blocks)
            .map(|s| Box::new(s) as Box<dyn BlockStore>)
            .map_err(|e| e.to_string()),
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join(format!("{}-lun{}.img", cfg.node.name, lu.lun));
            FileStore::open(&path, lu.block_bytes, lu.blocks, cfg.write_through)
                .map(|s| Box::new(s) as Box<dyn BlockStore>)
                .map_err(|e| e.to_string())
        }
    }
}

impl ArrayLayer {
    /// Builds the LUs on their stores. A file store that cannot be opened is an error.
    pub fn new(cfg: ArrayConfig) -> Result<Self, String> {
        let mut scsi = ScsiTarget::default();
        let functions: Vec<CopyFunction> = cfg
            .functions
            .iter()
            .map(|f| CopyFunction::from_name(f))
            .collect();
        let xcopy = functions.contains(&CopyFunction::Xcopy);
        for lu in &cfg.lus {
            let store = store_for(&cfg, lu)?;
            let lc = LuConfig {
                lun: lu.lun,
                block_size_bytes: lu.block_bytes,
                blocks: lu.blocks,
                serial: format!("{}-{:04}", cfg.node.name.to_uppercase(), lu.lun),
                naa: lu.naa.0,
                product: "FCSIM ARRAY LU".into(),
                third_party_copy: xcopy,
                write_through: cfg.write_through,
                copy_functions: functions.clone(),
                ..LuConfig::default()
            };
            let unit = LogicalUnit::new(lc, store).map_err(|e| e.to_string())?;
            scsi.add_lu(unit).map_err(|e| e.to_string())?;
        }
        Ok(ArrayLayer {
            fcp: FcpTarget::new(),
            scsi,
            // A copy target that vanished fails the copy soon rather than holding the
            // EXTENDED COPY for the hosts' full queue-if-no-path time.
            init: ScsiInitiator::with_timeouts(COPY_EXCHANGE_TIMEOUT, COPY_TARGET_NO_PATH),
            copies: BTreeMap::new(),
            copy_ios: BTreeMap::new(),
            next_copy: 0,
            engine: CopyEngine::new(cfg.node.port_wwpns.clone()),
            engine_ios: BTreeMap::new(),
            held: BTreeMap::new(),
            next_held: 0,
            manage_results: BTreeMap::new(),
            now: std::time::Duration::ZERO,
            cfg,
        })
    }

    /// LUNs `initiator` may see (LUN masking).
    fn visible_luns(&self, initiator: Wwpn) -> Vec<u16> {
        self.cfg
            .lus
            .iter()
            .filter(|l| l.hosts.is_empty() || l.hosts.contains(&initiator))
            .map(|l| l.lun)
            .collect()
    }

    fn execute(&mut self, ctx: &mut Fc4Ctx<'_>, cmd: &TargetCommand) {
        // FCP needs PLOGI/PRLI first; the login table names the initiator.
        let Some((initiator, node)) = ctx
            .ports
            .get(&cmd.port)
            .and_then(|np| np.logged_in().get(&cmd.initiator).map(|r| (r.wwpn, r.wwnn)))
        else {
            debug!(port = cmd.port, initiator = %cmd.initiator, "FCP command from a port not logged in: dropped");
            ctx.hub.count_discard(cmd.port);
            return;
        };
        let visible = self.visible_luns(initiator);
        if cmd.cdb.first() == Some(&copysvc::wire::OPCODE) {
            return self.copy_services_command(cmd, (initiator, node), &visible);
        }
        let naas: BTreeMap<NaaId, u16> = self
            .cfg
            .lus
            .iter()
            .map(|l| (NaaId::Short(l.naa), l.lun))
            .collect();
        // EXTENDED COPY may name only LUs this initiator could address itself
        // (CVE-2020-28374: LIO's XCOPY crossed LUN boundaries): a local LU only if it is
        // masked to the initiator; another array's LU or a tape only if the copy
        // manager's own port reaches it, which that array's masking and the fabric's
        // zoning decide for the copy manager's WWPN.
        let remote = |naa: NaaId| match naa {
            NaaId::Short(w) => self.init.device(w).is_some(),
            NaaId::Extended(_) => false,
        };
        let may_access = |naa: NaaId| match naas.get(&naa) {
            Some(lun) => visible.contains(lun),
            None => remote(naa),
        };
        let target_port = self
            .cfg
            .node
            .port_wwpns
            .get(cmd.port as usize)
            .copied()
            .unwrap_or_default();
        let nexus = Nexus {
            initiator,
            target_port,
            relative_port: u16::try_from(cmd.port + 1).unwrap_or(u16::MAX),
            lun: cmd
                .lun
                .and_then(|l| u16::try_from(l).ok())
                .unwrap_or(u16::MAX),
            visible_luns: &visible,
            may_access: &may_access,
        };
        let data_out = (!cmd.data_out.is_empty()).then(|| cmd.data_out.clone());
        // A write to a pair's volume goes through the copy engine first: a protected
        // secondary or a fenced primary refuses it, split-time data it would overwrite
        // is saved (copy-before-write).
        let write = write_range(&cmd.cdb).filter(|_| visible.contains(&nexus.lun));
        if let Some((lba, blocks)) = write
            && !self.engine.is_idle()
            && let Err(sense) = self.engine.before_write(
                &mut LuStores(&mut self.scsi),
                nexus.lun,
                lba,
                blocks,
                initiator,
                self.now,
            )
        {
            return self.fcp.complete(
                cmd,
                ScsiStatus::CHECK_CONDITION.0,
                sense.encode(),
                Bytes::new(),
            );
        }
        let mut r = self.scsi.execute(&nexus, &cmd.cdb, data_out);
        if let Some((lba, blocks)) = write
            && r.is_good()
            && !self.engine.is_idle()
        {
            let lun = nexus.lun;
            let bb = self.scsi.lu(lun).map_or(512, |l| l.store().block_bytes());
            // The data as it landed (WRITE SAME expands its pattern).
            let data = if cmd.data_out.len() as u64 == blocks * u64::from(bb) {
                cmd.data_out.clone()
            } else {
                LuStores(&mut self.scsi)
                    .read(lun, lba, blocks)
                    .unwrap_or_default()
            };
            self.next_held += 1;
            let token = self.next_held;
            if self.engine.after_write(lun, lba, data, token, self.now) {
                let sense = r.sense.map(|s| s.encode()).unwrap_or_default();
                self.held.insert(token, (cmd.clone(), r.status.0, sense));
                return;
            }
        }
        if let Some(job) = r.copy_job.take_if(|job| !self.may_run(job)) {
            // Block → stream (server-free backup) is a function of its own: without it
            // the array refuses the segment type, as one whose firmware lacks it would.
            let refused = Sense::new(
                crate::scsi::sense::SenseKey::ILLEGAL_REQUEST,
                asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
            );
            let outcome = CopyOutcome {
                segments_processed: 0,
                bytes: 0,
                error: Some(refused),
            };
            r = self.scsi.complete_copy(&job, &outcome);
        }
        if let Some(job) = r.copy_job.take() {
            let local = job
                .ops
                .iter()
                .all(|op| op.lus().iter().all(|n| self.scsi.lu_by_naa(*n).is_some()));
            if !local {
                // A backup of a pair's secondary meets the pair's split first (seed 004).
                let source = match self.backup_source(&job) {
                    Ok(s) => s,
                    Err(sense) => {
                        let outcome = CopyOutcome {
                            segments_processed: 0,
                            bytes: 0,
                            error: Some(sense),
                        };
                        let r = self.scsi.complete_copy(&job, &outcome);
                        let sense = r.sense.map(|s| s.encode()).unwrap_or_default();
                        return self.fcp.complete(cmd, r.status.0, sense, r.data_in);
                    }
                };
                let early = source.as_ref().is_some_and(|s| s.early);
                if early {
                    // Embodiment 4: the split is done; the answer goes now and RECEIVE
                    // COPY RESULTS reports the rest.
                    info!(list_id = job.list_id, "backup split its pair: early status");
                    self.fcp.complete(cmd, 0, Bytes::new(), Bytes::new());
                }
                // Through the fabric: the answer comes when the last chunk is written.
                self.next_copy += 1;
                info!(
                    list_id = job.list_id,
                    ops = job.ops.len(),
                    "EXTENDED COPY through the fabric"
                );
                let run = CopyRun {
                    cmd: (!early).then(|| cmd.clone()),
                    source,
                    waiting: false,
                    job,
                    op: 0,
                    done: 0,
                    outcome: CopyOutcome {
                        segments_processed: 0,
                        bytes: 0,
                        error: None,
                    },
                    pending: None,
                    chunk: 0,
                };
                self.copies.insert(self.next_copy, run);
                self.step_copy(ctx, self.next_copy);
                return;
            }
            let outcome = self.scsi.run_local_copy(&job);
            info!(list_id = job.list_id, segments = outcome.segments_processed, bytes = outcome.bytes, error = ?outcome.error, "EXTENDED COPY");
            r = self.scsi.complete_copy(&job, &outcome);
        }
        let sense = r.sense.map(|s| s.encode()).unwrap_or_default();
        self.fcp.complete(cmd, r.status.0, sense, r.data_in);
    }

    /// The backup source of `job` when it reads a pair's secondary on this array.
    fn backup_source(&mut self, job: &CopyJob) -> Result<Option<BackupSource>, Sense> {
        if self.engine.is_idle() {
            return Ok(None);
        }
        let Some((naa, lun)) = job
            .ops
            .iter()
            .find_map(|op| self.local_lun(op.source().0).map(|l| (op.source().0, l)))
        else {
            return Ok(None);
        };
        let ranges: Vec<(u64, u64)> = job
            .ops
            .iter()
            .map(CopyOp::source)
            .filter(|(n, _, _)| *n == naa)
            .map(|(_, l, b)| (l, b))
            .collect();
        let now = self.now;
        self.engine.backup_begin(lun, &ranges, now)
    }

    /// A COPY SERVICES (D6h) command from a primary array's copy port (or from a
    /// switch managing a pair it delegated here), to an LU the initiator may see (LUN
    /// masking applies as to any command).
    fn copy_services_command(
        &mut self,
        cmd: &TargetCommand,
        (initiator, node): (Wwpn, Wwnn),
        visible: &[u16],
    ) {
        let lun = cmd
            .lun
            .and_then(|l| u16::try_from(l).ok())
            .filter(|l| visible.contains(l) && self.scsi.lu(*l).is_some());
        let result = match (copysvc::wire::parse(&cmd.cdb), lun) {
            (Err(byte), _) => Err(Sense::invalid_field_in_cdb(byte, None)),
            (Ok(_), None) => Err(Sense::lu_not_supported()),
            (Ok(copysvc::wire::Command::JournalWrite { seq, lba, .. }), Some(l)) => self
                .engine
                .on_journal_write(
                    &mut LuStores(&mut self.scsi),
                    l,
                    initiator,
                    seq,
                    lba,
                    cmd.data_out.clone(),
                )
                .map(|()| Bytes::new()),
            (Ok(copysvc::wire::Command::TimestampedWrite { ts, lba }), Some(l)) => self
                .engine
                .on_timestamped_write(
                    &mut LuStores(&mut self.scsi),
                    l,
                    initiator,
                    ts,
                    lba,
                    &cmd.data_out,
                )
                .map(|()| Bytes::new()),
            (Ok(copysvc::wire::Command::Notify { .. }), Some(l)) => {
                match serde_json::from_slice::<copysvc::wire::PairNotice>(&cmd.data_out) {
                    Ok(n) => {
                        let now = self.now;
                        self.engine.on_notice(&LuStores(&mut self.scsi), l, n, now);
                        Ok(Bytes::new())
                    }
                    Err(_) => Err(Sense::invalid_field_in_param(0, None)),
                }
            }
            (Ok(copysvc::wire::Command::PairManage { id, .. }), Some(l)) => {
                match serde_json::from_slice::<copysvc::wire::PairRequest>(&cmd.data_out) {
                    Ok(req) => {
                        let reply = self.manage_in_band(l, req, visible);
                        if self.manage_results.len() >= MANAGE_RESULTS_KEPT {
                            self.manage_results.pop_first();
                        }
                        self.manage_results.insert((node, id), reply);
                        Ok(Bytes::new())
                    }
                    Err(_) => Err(Sense::invalid_field_in_param(0, None)),
                }
            }
            (Ok(copysvc::wire::Command::ReceivePairResults { id, .. }), Some(_)) => self
                .manage_results
                .remove(&(node, id))
                .map(|r| Bytes::from(serde_json::to_vec(&r).unwrap_or_default()))
                .ok_or_else(|| Sense::invalid_field_in_cdb(2, None)),
        };
        match result {
            Ok(data) => self.fcp.complete(cmd, 0, Bytes::new(), data),
            Err(sense) => self.fcp.complete(
                cmd,
                ScsiStatus::CHECK_CONDITION.0,
                sense.encode(),
                Bytes::new(),
            ),
        }
    }

    /// Sends what the copy engine asked for, answers released host writes, and retries
    /// backups that were waiting for differences.
    fn pump_engine(&mut self, ctx: &mut Fc4Ctx<'_>) {
        while let Some(a) = self.engine.poll_action() {
            if let copysvc::Action::Release { host, sense } = a {
                if let Some((cmd, status, held_sense)) = self.held.remove(&host) {
                    match sense {
                        Some(s) => self.fcp.complete(
                            &cmd,
                            ScsiStatus::CHECK_CONDITION.0,
                            s.encode(),
                            Bytes::new(),
                        ),
                        None => self.fcp.complete(&cmd, status, held_sense, Bytes::new()),
                    }
                }
                continue;
            }
            let init = &self.init;
            // The array runs the engine in direct mode: every other action is a command.
            let Some(out) =
                copysvc::wire::outgoing(a, |naa| init.device(naa).map_or(512, |d| d.block_bytes))
            else {
                continue;
            };
            let (token, naa) = (out.token, out.naa);
            let req = IoRequest {
                lun: 0,
                cdb: out.cdb,
                data_out: out.data_out,
                data_in_len: 0,
            };
            if self.init.device(naa).is_none() {
                self.engine.completed(token, false);
                continue;
            }
            let io = self.init.submit(ctx, naa, req);
            self.engine_ios.insert(io, token);
        }
        let waiting: Vec<u64> = self
            .copies
            .iter()
            .filter(|(_, r)| r.waiting)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.step_copy(ctx, id);
        }
    }

    /// A `fcsim.v1.Copy` request.
    fn copy_admin(&mut self, req: crate::copy_service::CopyAdmin) {
        use crate::copy_service::{CopyAdmin, difference_status, status_of};
        let now = self.now;
        match req {
            CopyAdmin::Create {
                spec,
                journal_bytes,
                reply,
            } => {
                let r = self.create_pair(spec, journal_bytes);
                let _ = reply.send(r.and_then(|name| self.pair_status(Some(&name))));
            }
            CopyAdmin::Split { pair, at, reply } => {
                let r = self.engine.split(&pair, at, now).map_err(status_of);
                let _ = reply.send(r.and_then(|()| self.pair_status(Some(&pair))));
            }
            CopyAdmin::Resync { pair, reply } => {
                let r = self.engine.resync(&pair).map_err(status_of);
                let _ = reply.send(r.and_then(|()| self.pair_status(Some(&pair))));
            }
            CopyAdmin::Delete { pair, reply } => {
                let r = self.engine.delete(&pair).map_err(status_of);
                let _ = reply.send(r.and_then(|()| self.pair_status(None)));
            }
            CopyAdmin::Status { pair, reply } => {
                let _ = reply.send(self.pair_status(pair.as_deref()));
            }
            CopyAdmin::Takeover { pair, reply } => {
                let r = self.engine.takeover(&pair).map_err(status_of);
                let _ = reply.send(r.map(|luns| pb::TakeoverResponse {
                    luns: luns.into_iter().map(u32::from).collect(),
                }));
            }
            CopyAdmin::Options { pair, patch, reply } => {
                let r = self.engine.set_options(&pair, &patch).map_err(status_of);
                let _ = reply.send(r.and_then(|()| self.pair_status(Some(&pair))));
            }
            CopyAdmin::ClearDifference { group, at, reply } => {
                let r = self.engine.clear_difference(&group, at, now);
                let _ = reply.send(
                    r.map_err(status_of)
                        .and_then(|()| difference_status(&self.engine, Some(&group))),
                );
            }
            CopyAdmin::DifferenceStatus { group, reply } => {
                let _ = reply.send(difference_status(&self.engine, group.as_deref()));
            }
            CopyAdmin::Failover { request, reply } => {
                let _ = reply.send(self.failover(request));
            }
        }
    }

    /// The array's clock at fabric time `t` (`clock_skew_us`).
    fn clock(&self, t: std::time::Duration) -> std::time::Duration {
        skewed(t, self.cfg.clock_skew_us)
    }

    /// An in-band PAIR MANAGE request addressed to LU `lun`: a pair it creates has that
    /// LU as its primary, and a pair it names must have primaries the initiator sees.
    fn manage_in_band(
        &mut self,
        lun: u16,
        req: copysvc::wire::PairRequest,
        visible: &[u16],
    ) -> copysvc::wire::ManageReply {
        use crate::copy_service::status_of;
        use copysvc::wire::PairRequest as R;
        let now = self.now;
        let named = match &req {
            R::Create { .. } | R::Status { pair: None } => None,
            R::Split { pair, .. }
            | R::Resync { pair }
            | R::Delete { pair }
            | R::Options { pair, .. }
            | R::Status { pair: Some(pair) } => Some(pair.clone()),
        };
        let hidden = named.as_deref().and_then(|p| {
            let pairs = self.engine.status(Some(p)).ok()?;
            pairs
                .into_iter()
                .find(|s| !visible.contains(&s.primary))
                .map(|s| s.name)
        });
        let r: Result<Option<String>, Status> = match (hidden, req) {
            (Some(h), _) => Err(Status::permission_denied(format!(
                "pair: the primary of `{h}` is not an LU this initiator may see"
            ))),
            (
                None,
                R::Create {
                    name,
                    secondary,
                    mode,
                    group,
                    options,
                    journal_bytes,
                },
            ) => {
                let secondary = match self.local_lun(NaaId::Short(secondary)) {
                    Some(s) => copysvc::Secondary::Local(s),
                    None => copysvc::Secondary::Remote(secondary),
                };
                let spec = copysvc::PairSpec {
                    name,
                    primary: lun,
                    secondary,
                    mode,
                    group,
                    options,
                    initial: None,
                };
                self.create_pair(spec, journal_bytes).map(Some)
            }
            (None, R::Split { pair, at }) => self
                .engine
                .split(&pair, at, now)
                .map(|()| Some(pair))
                .map_err(status_of),
            (None, R::Resync { pair }) => self
                .engine
                .resync(&pair)
                .map(|()| Some(pair))
                .map_err(status_of),
            (None, R::Options { pair, patch }) => self
                .engine
                .set_options(&pair, &patch)
                .map(|()| Some(pair))
                .map_err(status_of),
            (None, R::Status { pair }) => Ok(pair),
            (None, R::Delete { pair }) => {
                let r = self.engine.delete(&pair).map_err(status_of);
                return copysvc::wire::ManageReply {
                    pairs: Vec::new(),
                    error: r.err().map(|s| s.message().to_string()),
                };
            }
        };
        match r.and_then(|t| self.engine.status(t.as_deref()).map_err(status_of)) {
            Ok(pairs) => copysvc::wire::ManageReply { pairs, error: None },
            Err(s) => copysvc::wire::ManageReply {
                pairs: Vec::new(),
                error: Some(s.message().to_string()),
            },
        }
    }

    /// Creates a pair: the array must run the mode's function, and a remote secondary
    /// must be reachable from its copy ports.
    fn create_pair(
        &mut self,
        spec: copysvc::PairSpec,
        journal_bytes: u64,
    ) -> Result<String, Status> {
        let function = match spec.mode {
            copysvc::PairMode::Local => "local-pair",
            copysvc::PairMode::Sync => "remote-sync",
            copysvc::PairMode::Async => "remote-async",
        };
        if !self.cfg.functions.iter().any(|f| f == function) {
            return Err(Status::failed_precondition(format!(
                "mode: {} does not run `{function}` (functions: {})",
                self.cfg.node.name,
                self.cfg.functions.join(", ")
            )));
        }
        if let copysvc::Secondary::Remote(naa) = spec.secondary
            && self.init.device(naa).is_none()
        {
            return Err(Status::failed_precondition(format!(
                "secondary_naa: LU {naa} is not reachable from {}'s ports (zoning, masking or no path)",
                self.cfg.node.name
            )));
        }
        let name = spec.name.clone();
        let group = spec.group.clone().unwrap_or_else(|| name.clone());
        let scsi = &self.scsi;
        self.engine
            .create(spec, &|l| lu_geometry(scsi, l))
            .map_err(crate::copy_service::status_of)?;
        if journal_bytes > 0 {
            let _ = self.engine.set_journal_capacity(&group, journal_bytes);
        }
        Ok(name)
    }

    /// Site 3's differential failover (seed 000 §4.6): the far LUs must be reachable.
    fn failover(
        &mut self,
        r: copysvc::FailoverRequest,
    ) -> Result<pb::FailoverPairsResponse, Status> {
        use crate::copy_service::status_of;
        let function = match r.mode {
            copysvc::PairMode::Async => "remote-async",
            _ => "remote-sync",
        };
        if !self.cfg.functions.iter().any(|f| f == function) {
            return Err(Status::failed_precondition(format!(
                "mode: {} does not run `{function}`",
                self.cfg.node.name
            )));
        }
        for (i, p) in r.pairs.iter().enumerate() {
            if self.init.device(p.v2).is_none() {
                return Err(Status::failed_precondition(format!(
                    "pairs[{i}].v2_naa: LU {} is not reachable from {}'s ports",
                    p.v2, self.cfg.node.name
                )));
            }
        }
        let scsi = &self.scsi;
        let copies = self
            .engine
            .failover(&r, &|l| lu_geometry(scsi, l))
            .map_err(status_of)?;
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Ok(pb::FailoverPairsResponse {
            copies: copies
                .into_iter()
                .map(|c| pb::FailoverCopy {
                    pair: c.pair,
                    v3_lun: u32::from(c.v3_lun),
                    generation: c.generation.to_string(),
                    base_ns: ns(c.base),
                    blocks: c.blocks,
                    total_blocks: c.total,
                })
                .collect(),
            status: Some(self.pair_status(Some(&r.group))?),
        })
    }

    fn pair_status(&self, pair: Option<&str>) -> Result<pb::PairStatusResponse, Status> {
        let pairs = match pair {
            // A pair asked for by name that this array only holds as a secondary.
            Some(p) if self.engine.pair(p).is_none() && self.engine.status(Some(p)).is_err() => {
                Vec::new()
            }
            p => self
                .engine
                .status(p)
                .map_err(crate::copy_service::status_of)?,
        };
        let secondaries = self
            .engine
            .roles()
            .into_iter()
            .filter(|(_, p, g, _, _)| pair.is_none_or(|x| x == p || x == g))
            .map(|(lun, pair, group, state, applied)| pb::SecondaryRole {
                image_time_ns: self
                    .engine
                    .role_image_time(lun)
                    .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                lun: u32::from(lun),
                pair,
                group,
                state: state.map(|s| s.name().to_string()).unwrap_or_default(),
                applied_seq: applied,
            })
            .collect::<Vec<_>>();
        if pairs.is_empty()
            && secondaries.is_empty()
            && let Some(p) = pair
        {
            return Err(Status::not_found(format!(
                "pair: no pair or group `{p}` on {}",
                self.cfg.node.name
            )));
        }
        Ok(pb::PairStatusResponse {
            pairs: pairs
                .into_iter()
                .map(|p| crate::copy_service::pair_info(p, &self.cfg.node.name))
                .collect(),
            secondaries,
        })
    }

    /// The copy-manager worker restarts: every running copy ends in COPY ABORTED
    /// (answered, or recorded for RECEIVE COPY RESULTS if it was answered early); the
    /// commands it had in flight are forgotten. Pairs are not touched.
    fn restart_copy_manager(&mut self) -> u32 {
        let ids: Vec<u64> = self.copies.keys().copied().collect();
        warn!(running = ids.len(), "copy manager restarts");
        self.copy_ios.clear();
        for id in &ids {
            if let Some(r) = self.copies.get_mut(id) {
                r.pending = None;
            }
            self.fail_copy(*id, asc::THIRD_PARTY_DEVICE_FAILURE);
        }
        u32::try_from(ids.len()).unwrap_or(u32::MAX)
    }

    /// Whether the array's functions include what `job` needs.
    fn may_run(&self, job: &CopyJob) -> bool {
        let backup = job
            .ops
            .iter()
            .any(|op| matches!(op, CopyOp::BlockToStream { .. }));
        !backup || self.cfg.functions.iter().any(|f| f == "direct-backup")
    }

    /// A licence or firmware change.
    fn set_functions(&mut self, functions: Vec<String>) {
        let parsed: Vec<CopyFunction> = functions
            .iter()
            .map(|f| CopyFunction::from_name(f))
            .collect();
        for lun in self.scsi.luns() {
            if let Some(lu) = self.scsi.lu_mut(lun) {
                lu.set_copy_functions(parsed.clone());
            }
        }
        info!(functions = ?functions, "array functions changed");
        self.cfg.functions = functions;
    }

    /// A local LU by NAA (its LUN).
    fn local_lun(&self, naa: NaaId) -> Option<u16> {
        self.cfg
            .lus
            .iter()
            .find(|l| NaaId::Short(l.naa) == naa)
            .map(|l| l.lun)
    }

    /// Starts the next chunk of copy `id`, or finishes it.
    fn step_copy(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64) {
        let Some(run) = self.copies.get_mut(&id) else {
            return;
        };
        if run.pending.is_some() {
            return;
        }
        let Some(op) = run.job.ops.get(run.op).copied() else {
            return self.finish_copy(id);
        };
        let (src, lba, blocks) = op.source();
        if run.done >= blocks {
            run.op += 1;
            run.done = 0;
            run.outcome.segments_processed += 1;
            return self.step_copy(ctx, id);
        }
        let n = (blocks - run.done).min(COPY_CHUNK_BLOCKS);
        let at = lba + run.done;
        run.chunk = n;
        run.waiting = false;
        let source = run.source.clone();
        match self.local_lun(src) {
            Some(lun) => {
                let read = match &source {
                    Some(source) => self.engine.backup_read(
                        source,
                        &LuStores(&mut self.scsi),
                        at,
                        n,
                        (lba, blocks),
                    ),
                    None => LuStores(&mut self.scsi).read(lun, at, n).map_or(
                        BackupRead::Fail(Sense::copy_aborted(asc::THIRD_PARTY_DEVICE_FAILURE)),
                        BackupRead::Data,
                    ),
                };
                match read {
                    BackupRead::Data(d) => self.write_chunk(ctx, id, d),
                    BackupRead::Wait => {
                        if let Some(r) = self.copies.get_mut(&id) {
                            r.waiting = true;
                        }
                    }
                    BackupRead::Fail(sense) => {
                        if let Some(r) = self.copies.get_mut(&id) {
                            r.outcome.error = Some(sense);
                        }
                        self.finish_copy(id);
                    }
                }
            }
            None => {
                let NaaId::Short(w) = src else {
                    return self.fail_copy(id, asc::COPY_TARGET_DEVICE_NOT_REACHABLE);
                };
                let bb = self.init.device(w).map_or(512, |d| d.block_bytes);
                let req = IoRequest {
                    lun: 0,
                    cdb: cdb::read16(at, u32::try_from(n).unwrap_or(u32::MAX)),
                    data_out: Bytes::new(),
                    data_in_len: u32::try_from(n).unwrap_or(0) * bb,
                };
                let io = self.init.submit(ctx, w, req);
                self.copy_ios.insert(io, (id, true));
                if let Some(r) = self.copies.get_mut(&id) {
                    r.pending = Some(io);
                }
            }
        }
    }

    /// Writes a chunk read for copy `id` to the current operation's destination.
    fn write_chunk(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, data: Bytes) {
        let Some(run) = self.copies.get(&id) else {
            return;
        };
        let Some(op) = run.job.ops.get(run.op).copied() else {
            return;
        };
        let done = run.done;
        match op {
            CopyOp::BlockToBlock { dst, dst_lba, .. } => match self.local_lun(dst) {
                Some(lun) => {
                    let ok = self
                        .scsi
                        .lu_mut(lun)
                        .is_some_and(|l| l.store_mut().write(dst_lba + done, &data).is_ok());
                    if ok {
                        self.chunk_written(ctx, id, data.len() as u64)
                    } else {
                        self.fail_copy(id, asc::THIRD_PARTY_DEVICE_FAILURE)
                    }
                }
                None => {
                    let NaaId::Short(w) = dst else {
                        return self.fail_copy(id, asc::COPY_TARGET_DEVICE_NOT_REACHABLE);
                    };
                    let bb = self.init.device(w).map_or(512, |d| d.block_bytes).max(1);
                    let blocks = u32::try_from(data.len() / bb as usize).unwrap_or(u32::MAX);
                    let req = IoRequest {
                        lun: 0,
                        cdb: cdb::write16(dst_lba + done, blocks, false),
                        data_out: data,
                        data_in_len: 0,
                    };
                    self.submit_write(ctx, id, w, req);
                }
            },
            CopyOp::BlockToStream { dst, .. } => {
                let NaaId::Short(w) = dst else {
                    return self.fail_copy(id, asc::COPY_TARGET_DEVICE_NOT_REACHABLE);
                };
                // One tape record per chunk.
                let c = cdb::tape_write6(data.len());
                self.submit_write(
                    ctx,
                    id,
                    w,
                    IoRequest {
                        lun: 0,
                        cdb: c,
                        data_out: data,
                        data_in_len: 0,
                    },
                );
            }
        }
    }

    fn submit_write(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, dst: Wwn, req: IoRequest) {
        if self.init.device(dst).is_none() {
            return self.fail_copy(id, asc::COPY_TARGET_DEVICE_NOT_REACHABLE);
        }
        let io = self.init.submit(ctx, dst, req);
        self.copy_ios.insert(io, (id, false));
        if let Some(r) = self.copies.get_mut(&id) {
            r.pending = Some(io);
        }
    }

    fn chunk_written(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, bytes: u64) {
        if let Some(r) = self.copies.get_mut(&id) {
            r.pending = None;
            r.done += r.chunk;
            r.outcome.bytes += bytes;
            // RECEIVE COPY RESULTS shows the progress while the copy runs.
            let (ini, list, segs, total) = (
                r.job.initiator,
                r.job.list_id,
                r.outcome.segments_processed,
                r.outcome.bytes,
            );
            self.scsi.copy_tracker().progress(ini, list, segs, total);
        }
        self.step_copy(ctx, id);
    }

    fn fail_copy(&mut self, id: u64, why: crate::scsi::sense::Asc) {
        if let Some(r) = self.copies.get_mut(&id) {
            r.outcome.error = Some(Sense::copy_aborted(why));
        }
        self.finish_copy(id);
    }

    fn finish_copy(&mut self, id: u64) {
        let Some(run) = self.copies.remove(&id) else {
            return;
        };
        info!(list_id = run.job.list_id, segments = run.outcome.segments_processed, bytes = run.outcome.bytes, error = ?run.outcome.error, "EXTENDED COPY done");
        let r = self.scsi.complete_copy(&run.job, &run.outcome);
        if let Some(cmd) = &run.cmd {
            let sense = r.sense.map(|s| s.encode()).unwrap_or_default();
            self.fcp.complete(cmd, r.status.0, sense, r.data_in);
        }
    }

    /// The copy manager's commands that completed.
    fn drain_initiator(&mut self, ctx: &mut Fc4Ctx<'_>) {
        while let Some((io, c)) = self.init.poll_completion() {
            if let Some(token) = self.engine_ios.remove(&io) {
                let ok = c.result.transport.is_none() && c.result.status == 0;
                self.engine.completed(token, ok);
                continue;
            }
            let Some((id, read)) = self.copy_ios.remove(&io) else {
                continue;
            };
            let ok = c.result.transport.is_none() && c.result.status == 0;
            if !ok {
                let why = if c.result.transport.is_some() {
                    asc::COPY_TARGET_DEVICE_NOT_REACHABLE
                } else {
                    asc::THIRD_PARTY_DEVICE_FAILURE
                };
                warn!(copy = id, status = c.result.status, transport = ?c.result.transport, "copy step failed");
                self.fail_copy(id, why);
            } else if read {
                if let Some(r) = self.copies.get_mut(&id) {
                    r.pending = None;
                }
                self.write_chunk(ctx, id, c.result.data_in);
            } else {
                let chunk_bytes =
                    self.copies
                        .get(&id)
                        .and_then(|r| r.job.ops.get(r.op))
                        .map(|op| match op {
                            CopyOp::BlockToBlock { src, .. }
                            | CopyOp::BlockToStream { src, .. } => *src,
                        })
                        .map(|src| self.block_bytes_of(src))
                        .unwrap_or(512);
                let n = self.copies.get(&id).map_or(0, |r| r.chunk);
                self.chunk_written(ctx, id, n * u64::from(chunk_bytes));
            }
        }
        while self.init.poll_event().is_some() {}
    }

    fn block_bytes_of(&self, naa: NaaId) -> u32 {
        match self.local_lun(naa) {
            Some(lun) => self
                .cfg
                .lus
                .iter()
                .find(|l| l.lun == lun)
                .map_or(512, |l| l.block_bytes),
            None => match naa {
                NaaId::Short(w) => self.init.device(w).map_or(512, |d| d.block_bytes),
                NaaId::Extended(_) => 512,
            },
        }
    }

    fn flush(&mut self, ctx: &mut Fc4Ctx<'_>) {
        self.now = self.clock(ctx.now);
        self.drain_initiator(ctx);
        while let Some(cmd) = self.fcp.poll_command() {
            self.execute(ctx, &cmd);
        }
        self.drain_initiator(ctx);
        self.pump_engine(ctx);
        while let Some((port, f)) = self.fcp.poll_transmit() {
            if !ctx.send(port, &f) {
                debug!(port, "FCP reply not sent: no cable");
            }
        }
    }

    fn list(&self) -> pb::ListLusResponse {
        let lus = self
            .cfg
            .lus
            .iter()
            .map(|l| pb::LuInfo {
                lun: u32::from(l.lun),
                naa: l.naa.to_string(),
                blocks: l.blocks,
                block_bytes: l.block_bytes,
                masking: l.hosts.iter().map(ToString::to_string).collect(),
                store: self.cfg.data_dir.as_ref().map_or_else(
                    || "memory".to_string(),
                    |d| {
                        d.join(format!("{}-lun{}.img", self.cfg.node.name, l.lun))
                            .display()
                            .to_string()
                    },
                ),
            })
            .collect();
        pb::ListLusResponse {
            lus,
            functions: self.cfg.functions.clone(),
        }
    }

    /// Reads the medium directly, no SCSI and no fabric involved.
    fn read(&self, lun: u32, lba: u64, blocks: u32) -> Result<(Bytes, usize), Status> {
        let lu = u16::try_from(lun)
            .ok()
            .and_then(|l| self.scsi.lu(l))
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "lun: {lun} is not an LU of {}",
                    self.cfg.node.name
                ))
            })?;
        let store = lu.store();
        if blocks == 0
            || lba
                .checked_add(u64::from(blocks))
                .is_none_or(|end| end > store.blocks())
        {
            return Err(Status::invalid_argument(format!(
                "blocks: {lba}+{blocks} is outside the LU ({} blocks)",
                store.blocks()
            )));
        }
        let data = store
            .read(lba, u64::from(blocks))
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok((data, store.block_bytes() as usize))
    }

    /// One digest per block, as the write history computes them.
    fn digests(&self, lun: u32, lba: u64, blocks: u32) -> Result<Vec<u64>, Status> {
        let (data, bb) = self.read(lun, lba, blocks)?;
        Ok(data.chunks(bb.max(1)).map(digest).collect())
    }
}

/// (first block, blocks) a command writes, for the write commands the copy engine
/// tracks.
fn write_range(cdb: &[u8]) -> Option<(u64, u64)> {
    let r = match Command::parse(cdb).ok()? {
        Command::Write10(c) => c.range(),
        Command::Write16(c) => c.range(),
        Command::WriteSame16(c) => c.range(),
        _ => return None,
    };
    Some((r.lba, r.blocks))
}

impl Fc4Layer for ArrayLayer {
    type Admin = ArrayAdmin;

    fn on_frame(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, frame: Frame) {
        let mine = if frame.header.from_responder() {
            self.init.on_frame(ctx, port, &frame)
        } else {
            self.fcp.handle_frame(port, &frame)
        };
        if !mine {
            ctx.hub.count_discard(port);
        }
        self.flush(ctx);
    }

    fn on_nport_event(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        port: u32,
        ev: &fcsim_fabric::nport::NPortEvent,
    ) {
        self.init.on_nport_event(ctx, port, ev);
        self.flush(ctx);
    }

    fn on_link_down(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32) {
        self.fcp.port_down(port);
        self.init.on_link_down(ctx, port);
        self.flush(ctx);
    }

    fn on_timeout(&mut self, ctx: &mut Fc4Ctx<'_>) {
        self.init.on_timeout(ctx);
        if !self.engine.is_idle() {
            let now = self.clock(ctx.now);
            self.engine.tick(&mut LuStores(&mut self.scsi), now);
        }
        self.flush(ctx);
    }

    fn poll_timeout(&self) -> Option<std::time::Duration> {
        let engine = self
            .engine
            .poll_timeout(self.now)
            .map(|t| skewed(t, -self.cfg.clock_skew_us));
        match (self.init.poll_timeout(), engine) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_admin(&mut self, ctx: &mut Fc4Ctx<'_>, req: ArrayAdmin) {
        match req {
            ArrayAdmin::List(reply) => {
                let _ = reply.send(self.list());
            }
            ArrayAdmin::Read {
                lun,
                lba,
                blocks,
                reply,
            } => {
                let _ = reply.send(self.read(lun, lba, blocks).map(|(d, _)| d));
            }
            ArrayAdmin::Digests {
                lun,
                lba,
                blocks,
                reply,
            } => {
                let _ = reply.send(self.digests(lun, lba, blocks));
            }
            ArrayAdmin::SetFunctions { functions, reply } => {
                self.set_functions(functions);
                let _ = reply.send(self.list());
            }
            ArrayAdmin::RestartCopyManager(reply) => {
                let _ = reply.send(self.restart_copy_manager());
                self.flush(ctx);
            }
            ArrayAdmin::Copy(req) => {
                self.now = self.clock(ctx.now);
                self.copy_admin(req);
                self.flush(ctx);
            }
        }
    }
}

struct ArrayService {
    tx: mpsc::UnboundedSender<ArrayAdmin>,
}

impl ArrayService {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Status>>) -> ArrayAdmin,
    ) -> Result<T, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| Status::unavailable("array is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("array is shutting down"))?
    }
}

#[tonic::async_trait]
impl pb::array_server::Array for ArrayService {
    async fn list_lus(
        &self,
        _r: Request<pb::ListLusRequest>,
    ) -> Result<Response<pb::ListLusResponse>, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ArrayAdmin::List(reply))
            .map_err(|_| Status::unavailable("array is shutting down"))?;
        rx.await
            .map(Response::new)
            .map_err(|_| Status::unavailable("array is shutting down"))
    }

    async fn read_lu(
        &self,
        r: Request<pb::ReadLuRequest>,
    ) -> Result<Response<pb::ReadLuResponse>, Status> {
        let r = r.into_inner();
        let data = self
            .ask(|reply| ArrayAdmin::Read {
                lun: r.lun,
                lba: r.lba,
                blocks: r.blocks,
                reply,
            })
            .await?;
        Ok(Response::new(pb::ReadLuResponse { data }))
    }

    async fn lu_digests(
        &self,
        r: Request<pb::LuDigestsRequest>,
    ) -> Result<Response<pb::LuDigestsResponse>, Status> {
        let r = r.into_inner();
        let digests = self
            .ask(|reply| ArrayAdmin::Digests {
                lun: r.lun,
                lba: r.lba,
                blocks: r.blocks,
                reply,
            })
            .await?;
        Ok(Response::new(pb::LuDigestsResponse { digests }))
    }

    async fn restart_copy_manager(
        &self,
        _r: Request<pb::RestartCopyManagerRequest>,
    ) -> Result<Response<pb::RestartCopyManagerResponse>, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ArrayAdmin::RestartCopyManager(reply))
            .map_err(|_| Status::unavailable("array is shutting down"))?;
        rx.await
            .map(|aborted| Response::new(pb::RestartCopyManagerResponse { aborted }))
            .map_err(|_| Status::unavailable("array is shutting down"))
    }

    async fn set_functions(
        &self,
        r: Request<pb::SetFunctionsRequest>,
    ) -> Result<Response<pb::ListLusResponse>, Status> {
        let functions = r.into_inner().functions;
        if let Some(bad) = functions
            .iter()
            .find(|f| matches!(CopyFunction::from_name(f), CopyFunction::Unsupported(_)))
        {
            return Err(Status::invalid_argument(format!(
                "functions: `{bad}` is not a copy function"
            )));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ArrayAdmin::SetFunctions { functions, reply })
            .map_err(|_| Status::unavailable("array is shutting down"))?;
        rx.await
            .map(Response::new)
            .map_err(|_| Status::unavailable("array is shutting down"))
    }
}

/// Runs an array node until its task is dropped.
pub async fn run_array(cfg: ArrayConfig, net: Net, clock: FabricClock) -> Result<(), EndNodeError> {
    let layer = match ArrayLayer::new(cfg.clone()) {
        Ok(l) => l,
        Err(e) => {
            warn!(node = %cfg.node.name, "array cannot start: {e}");
            return Ok(());
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let routes = tonic::service::Routes::new(pb::array_server::ArrayServer::new(ArrayService {
        tx: tx.clone(),
    }))
    .add_service(crate::copy_service::routes(move |req| {
        tx.send(ArrayAdmin::Copy(req)).is_ok()
    }));
    run_end_node_with(
        cfg.node,
        net,
        clock,
        layer,
        Some(routes),
        rx,
        &["fcsim.v1.Array", "fcsim.v1.Copy"],
    )
    .await
}
