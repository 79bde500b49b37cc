//! The storage array node: FCP target ports in front of logical units on block stores
//! (sparse memory, or files with `data_dir`), LUN masking per initiator WWPN, the copy
//! functions it advertises (VPD 8Fh/C0h), EXTENDED COPY between its own LUs, and the
//! `fcsim.v1.Array` management service (LU list and an oracle back door that reads the
//! medium directly).
//!
//! Start here: [`run_array`]. SCSI semantics are the sans-IO [`ScsiTarget`]; this module
//! wires it to the FCP target, the N_Ports' login table (who the initiator is) and
//! masking.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use bytes::Bytes;
use fcsim_fabric::endnode::{EndNodeConfig, EndNodeError, Fc4Ctx, Fc4Layer, run_end_node_with};
use fcsim_fabric::frame::Frame;
use fcsim_fabric::runtime::actor;
use fcsim_fabric::runtime::{FabricClock, Net};
use fcsim_fabric::{Wwn, Wwnn, Wwpn};
use fcsim_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::copysvc::recovery::{
    self as rcv, HostWrite, Outcome, Phase, Protection, RecoveryConfig, RecoveryCopy,
    RecoveryEvent, RecoveryMessage, RecoveryTarget, RemoteConfig, RollbackCause, SaveRow,
    SaveRowKind, SuspendedPair, TargetOutcome, UserConditions,
};
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
    /// The array as the remote of a protected recovery copy (seed 001).
    #[serde(default)]
    pub recovery: RecoverySettings,
}

/// How an array serves as the remote of a protected recovery copy (seed 001): its
/// protection variant, the capacities it reports at step 403, and the user conditions
/// set on it (if any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverySettings {
    pub protection: Protection,
    pub remote: RemoteConfig,
    pub conditions: Option<UserConditions>,
}

impl Default for RecoverySettings {
    /// Variant A with modest capacities: 64 logical devices on 24 disks, 1024 cache
    /// tracks, 4 parity groups and 2 spares of 4096 tracks each (the seed's example
    /// shape: n = 16).
    fn default() -> Self {
        let row = |kind| SaveRow {
            kind,
            tracks: 4096,
            usable: true,
        };
        RecoverySettings {
            protection: Protection::SaveOld,
            remote: RemoteConfig {
                logical_devices: 64,
                disks: 24,
                cache_tracks: 1024,
                save_rows: vec![
                    row(SaveRowKind::Parity),
                    row(SaveRowKind::Parity),
                    row(SaveRowKind::Parity),
                    row(SaveRowKind::Parity),
                    row(SaveRowKind::Spare),
                    row(SaveRowKind::Spare),
                ],
            },
            conditions: None,
        }
    }
}

/// How often the master reads the remote's answers back while a session is open.
const RECOVERY_POLL: std::time::Duration = std::time::Duration::from_millis(2);
/// How long the master waits for an answer before sending its request again.
const RECOVERY_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// Most updates a suspended pair's time-series queue keeps; beyond, it is dropped and a
/// recovery copy of the pair goes in address order (seed 001 §7.6 item 10).
const RECOVERY_QUEUE_NODES: usize = 1 << 16;

/// The time-series queue (108) of one suspended remote pair: its updates since the
/// suspension, oldest first, each with an array-wide sequence number so that the
/// queues of a group merge in order of occurrence.
struct SuspendQueue {
    nodes: Vec<(u64, u64, Bytes)>,
    /// Over capacity: dropped.
    overflow: bool,
}

/// This array's protected recovery copy as the master (seed 001 §4.3): the sans-IO
/// session and its transport (one D6h command in flight at a time, in order).
struct MasterRecovery {
    copy: RecoveryCopy,
    /// The remote LU the messages are addressed to (the first pair's secondary).
    remote: fcsim_fabric::Wwn,
    /// (pair name, primary LUN), as the session was asked for.
    pairs: Vec<(String, u16)>,
    /// Messages not yet sent, in order.
    outbox: VecDeque<RecoveryMessage>,
    /// The RECOVERY MESSAGE (false) or RECEIVE RECOVERY MESSAGES (true) in flight.
    io: Option<(IoId, bool)>,
    /// Read the answers back as soon as the channel is free.
    receive_due: bool,
    /// The next timed read-back.
    next_poll: std::time::Duration,
    /// Host writes held while the completion is on its way.
    held: Vec<TargetCommand>,
    /// Pairs reported reached, in order.
    reached: Vec<String>,
    rollbacks: u32,
    last_cause: Option<RollbackCause>,
    tracks_sent: u64,
    started: std::time::Duration,
    ended: Option<std::time::Duration>,
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
    /// This array as the remote of a protected recovery copy (seed 001).
    rcv_target: RecoveryTarget,
    /// The most tracks saved on parity/spare rows at once, and the parity rows borrowed.
    rcv_peak: (u64, BTreeSet<usize>),
    /// This array as the master: the current or last session.
    rcv_master: Option<MasterRecovery>,
    /// Time-series queues of the suspended remote pairs, by pair name.
    rcv_queues: BTreeMap<String, SuspendQueue>,
    /// Sequence of the last update recorded in any queue.
    rcv_seq: u64,
    /// Fabric time of the last input.
    now: std::time::Duration,
    /// Relay takeovers asked for and not yet done (seed 002): group or pair, reply.
    relay_takeovers: Vec<(
        String,
        oneshot::Sender<Result<pb::RelayTakeoverResponse, Status>>,
    )>,
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

/// A track of the protected recovery copy is one block (seed 001's tracks map to the
/// LU's blocks); a device is an LUN.
impl rcv::Tracks for LuStores<'_> {
    fn read_track(&self, dev: u16, track: u64) -> Bytes {
        self.0
            .lu(dev)
            .and_then(|l| l.store().read(track, 1).ok())
            .unwrap_or_default()
    }

    fn write_track(&mut self, dev: u16, track: u64, data: Bytes) {
        if let Some(l) = self.0.lu_mut(dev)
            && l.store_mut().write(track, &data).is_err()
        {
            warn!(lun = dev, track, "recovery copy: track write failed");
        }
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
            rcv_target: RecoveryTarget::new(
                cfg.recovery.protection,
                cfg.recovery.remote.clone(),
                cfg.recovery.conditions,
            ),
            rcv_peak: (0, BTreeSet::new()),
            rcv_master: None,
            rcv_queues: BTreeMap::new(),
            rcv_seq: 0,
            now: std::time::Duration::ZERO,
            relay_takeovers: Vec::new(),
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
        // A relay takeover fenced the old primary's ports and the relays off its LUs
        // (seed 002): their writes and copy-services commands meet RESERVATION CONFLICT.
        if let Some(lun) = cmd.lun.and_then(|l| u16::try_from(l).ok())
            && (cmd.cdb.first() == Some(&copysvc::wire::OPCODE) || write_range(&cmd.cdb).is_some())
            && self.engine.is_fenced(lun, initiator)
        {
            debug!(lun, initiator = %initiator, "fenced initiator: reservation conflict");
            return self.fcp.complete(
                cmd,
                ScsiStatus::RESERVATION_CONFLICT.0,
                Bytes::new(),
                Bytes::new(),
            );
        }
        if cmd.cdb.first() == Some(&crate::relay::wire::OPCODE)
            && matches!(
                cmd.cdb.get(1),
                Some(
                    &(crate::relay::wire::SA_RELAY_RECORD
                        ..=crate::relay::wire::SA_RECEIVE_RELAY_STATUS)
                )
            )
        {
            return self.relay_command(cmd, initiator, &visible);
        }
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
        // A recovery copy about to complete holds writes to its primaries (seed 001).
        if write.is_some()
            && let Some(m) = self.rcv_master.as_mut()
            && m.copy.before_write(nexus.lun) == HostWrite::Hold
        {
            m.held.push(cmd.clone());
            return;
        }
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
        {
            recovery_after_write(
                &mut self.rcv_master,
                &mut self.scsi,
                (nexus.lun, lba, blocks),
                self.now,
            );
            record_suspended(
                &self.engine,
                &mut self.rcv_queues,
                &mut self.rcv_seq,
                &mut self.scsi,
                (nexus.lun, lba, blocks),
            );
        }
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

    /// A relay replication command (seed 002) to this array: RELAY RECORD to a
    /// standby's LU (from the primary directly or from a relay). RELAY CONTROL and
    /// RECEIVE RELAY STATUS are for relays: an array refuses them (INVALID FIELD IN
    /// CDB, the service action).
    fn relay_command(&mut self, cmd: &TargetCommand, initiator: Wwpn, visible: &[u16]) {
        let lun = cmd
            .lun
            .and_then(|l| u16::try_from(l).ok())
            .filter(|l| visible.contains(l) && self.scsi.lu(*l).is_some());
        let result = match (crate::relay::wire::parse(&cmd.cdb), lun) {
            (Err(byte), _) => Err(Sense::invalid_field_in_cdb(byte, None)),
            (Ok(_), None) => Err(Sense::lu_not_supported()),
            (Ok(crate::relay::wire::Command::Record { header, .. }), Some(_)) => {
                self.engine.on_relay_record(
                    &mut LuStores(&mut self.scsi),
                    initiator,
                    header,
                    cmd.data_out.clone(),
                )
            }
            (
                Ok(crate::relay::wire::Command::Unit {
                    header,
                    redundancy,
                    index,
                    ..
                }),
                Some(_),
            ) => {
                let now = self.now;
                self.engine.on_fec_unit(
                    &mut LuStores(&mut self.scsi),
                    initiator,
                    (header, redundancy, index),
                    cmd.data_out.clone(),
                    now,
                )
            }
            (Ok(_), Some(_)) => Err(Sense::invalid_field_in_cdb(1, None)),
        };
        match result {
            Ok(true) => self.fcp.complete(cmd, 0, Bytes::new(), Bytes::new()),
            Ok(false) => self.fcp.complete(
                cmd,
                ScsiStatus::RESERVATION_CONFLICT.0,
                Bytes::new(),
                Bytes::new(),
            ),
            Err(sense) => self.fcp.complete(
                cmd,
                ScsiStatus::CHECK_CONDITION.0,
                sense.encode(),
                Bytes::new(),
            ),
        }
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
            (Ok(copysvc::wire::Command::RecoveryMessage { .. }), Some(_)) => {
                match serde_json::from_slice::<RecoveryMessage>(&cmd.data_out) {
                    Ok(m) => {
                        let now = self.now;
                        self.rcv_target
                            .handle_message(m, &mut LuStores(&mut self.scsi), now);
                        self.note_recovery_peak();
                        Ok(Bytes::new())
                    }
                    Err(_) => Err(Sense::invalid_field_in_param(0, None)),
                }
            }
            (Ok(copysvc::wire::Command::ReceiveRecoveryMessages { .. }), Some(_)) => {
                let mut out = Vec::new();
                while let Some(m) = self.rcv_target.poll_message() {
                    out.push(m);
                }
                Ok(Bytes::from(serde_json::to_vec(&out).unwrap_or_default()))
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
        if !self.engine.is_idle() {
            self.engine.relay_pump(&mut LuStores(&mut self.scsi));
        }
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
            if let Some(out) = copysvc::wire::relay_outgoing(&a) {
                self.send_relay(ctx, out);
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
        let asked = std::mem::take(&mut self.relay_takeovers);
        for (group, reply) in asked {
            match self.engine.relay_takeover_report(&group) {
                Some(r) => {
                    let _ = reply.send(Ok(crate::copy_service::relay_takeover_info(r)));
                }
                None => self.relay_takeovers.push((group, reply)),
            }
        }
    }

    /// Sends a relay command (seed 002) to the target port it names: through the LU
    /// the engine gave (direct mode: the standby's secondary), else through any LU that
    /// port presents to this array (a relay's LU 0 first).
    fn send_relay(&mut self, ctx: &mut Fc4Ctx<'_>, out: copysvc::wire::RelayOutgoing) {
        let target = Wwpn(Wwn(out.target));
        let via = |d: &crate::initiator::Device| {
            d.paths
                .iter()
                .filter(|p| p.target_wwpn == target)
                .map(|p| p.lun)
                .min()
        };
        let naa = out
            .naa
            .filter(|n| self.init.device(*n).and_then(via).is_some())
            .or_else(|| {
                self.init
                    .devices()
                    .values()
                    .filter_map(|d| via(d).map(|lun| (lun, d.naa)))
                    .min()
                    .map(|(_, n)| n)
            });
        let Some(naa) = naa else {
            debug!(target = %target, "relay target not reachable");
            let now = self.now;
            self.engine
                .relay_completed(out.token, None, &Bytes::new(), now);
            return;
        };
        let req = IoRequest {
            lun: 0,
            cdb: out.cdb,
            data_out: out.data_out,
            data_in_len: out.data_in_len,
        };
        let io = self.init.submit_to_target(ctx, naa, target, req);
        self.engine_ios.insert(io, out.token);
    }

    /// Whether this array's copy port reaches target port `wwpn` now.
    fn reaches(&self, wwpn: u64) -> bool {
        self.init.devices().values().any(|d| {
            d.paths
                .iter()
                .any(|p| p.active && p.target_wwpn.0.0 == wwpn)
        })
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
            CopyAdmin::RelayTakeover { pair, reply } => {
                let reach: Vec<u64> = self
                    .init
                    .devices()
                    .values()
                    .flat_map(|d| d.paths.iter())
                    .map(|p| p.target_wwpn.0.0)
                    .filter(|w| self.reaches(*w))
                    .collect();
                let r = self.engine.relay_takeover(
                    &mut LuStores(&mut self.scsi),
                    &pair,
                    &|w| reach.contains(&w),
                    now,
                );
                match r {
                    Ok(()) => self.relay_takeovers.push((pair, reply)),
                    Err(e) => {
                        let _ = reply.send(Err(status_of(e)));
                    }
                }
            }
            CopyAdmin::RestartPoint {
                pair,
                app_state,
                reply,
            } => {
                let r = self
                    .engine
                    .restart_point(&pair, app_state)
                    .map_err(status_of);
                let _ = reply.send(r.map(|point| pb::RestartPointResponse { point }));
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
            CopyAdmin::Recover { request, reply } => {
                let r = self.start_recovery(request);
                let _ = reply.send(r.map(|()| self.recovery_status()));
            }
            CopyAdmin::RecoveryStatus { reply } => {
                let _ = reply.send(Ok(self.recovery_status()));
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
        // A relay pair is asynchronous to its standby: it runs under `remote-async`.
        let function = match spec.mode {
            copysvc::PairMode::Local => "local-pair",
            copysvc::PairMode::Sync => "remote-sync",
            copysvc::PairMode::Async | copysvc::PairMode::Relay => "remote-async",
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
        let mut spec = spec;
        // A relay pair's records are addressed to the standby's port and LUN through
        // which this array reaches the secondary (an active path first).
        if let copysvc::Secondary::Remote(naa) = spec.secondary
            && let Some(o) = spec.options.relay.as_mut()
            && let Some(d) = self.init.device(naa)
        {
            let path = d
                .paths
                .iter()
                .find(|p| p.active && (o.destination == 0 || p.target_wwpn.0.0 == o.destination))
                .or_else(|| d.paths.first());
            if let Some(p) = path {
                if o.destination == 0 {
                    o.destination = p.target_wwpn.0.0;
                }
                if o.networks == 2 && o.destination2 == 0 {
                    // Fig. 17: the second network is a path through another standby port.
                    let first = o.destination;
                    o.destination2 = d
                        .paths
                        .iter()
                        .filter(|q| q.target_wwpn.0.0 != first && q.lun == p.lun)
                        .min_by_key(|q| !q.active)
                        .map(|q| q.target_wwpn.0.0)
                        .ok_or_else(|| {
                            Status::failed_precondition(format!(
                                "networks: 2 networks need a second path to LU {naa} through another standby port"
                            ))
                        })?;
                }
                o.standby_lun = u16::try_from(p.lun).map_err(|_| {
                    Status::failed_precondition(format!(
                        "secondary_naa: LU {naa} is at LUN {} (above 65535)",
                        p.lun
                    ))
                })?;
            }
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
            && !self
                .engine
                .relay_standbys()
                .iter()
                .any(|s| pair.is_some_and(|x| x == s.group))
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
            relay_standbys: self
                .engine
                .relay_standbys()
                .into_iter()
                .filter(|s| pair.is_none_or(|x| x == s.group))
                .map(crate::copy_service::relay_standby_info)
                .collect(),
        })
    }

    /// Seed 001: starts a protected recovery copy of the suspended remote pairs `r`
    /// names. Their secondaries must be LUs of one remote array.
    fn start_recovery(&mut self, r: crate::copy_service::RecoverRequest) -> Result<(), Status> {
        use crate::copy_service::status_of;
        if self.rcv_master.as_ref().is_some_and(|m| m.ended.is_none()) {
            return Err(Status::failed_precondition(
                "pair: a recovery copy is already running on this array",
            ));
        }
        let found = self
            .engine
            .recovery_candidates(&r.target)
            .map_err(status_of)?;
        let mut pairs = Vec::new();
        let mut remote_ports: Option<BTreeSet<Wwpn>> = None;
        for (i, (name, lun, naa, diff)) in found.iter().enumerate() {
            let Some(d) = self.init.device(*naa).filter(|d| !d.paths.is_empty()) else {
                return Err(Status::failed_precondition(format!(
                    "pair: the secondary of `{name}` is not reachable from {}'s ports",
                    self.cfg.node.name
                )));
            };
            let ports: BTreeSet<Wwpn> = d.paths.iter().map(|p| p.target_wwpn).collect();
            match &remote_ports {
                Some(p) if p.is_disjoint(&ports) => {
                    return Err(Status::failed_precondition(format!(
                        "pair: the secondaries of `{}` are on more than one array",
                        r.target
                    )));
                }
                _ => remote_ports = Some(ports),
            }
            let r_dev = u16::try_from(d.paths[0].lun).unwrap_or(u16::MAX);
            pairs.push(SuspendedPair {
                dev: *lun,
                r_dev,
                unit: if r.group_unit {
                    0
                } else {
                    u16::try_from(i).unwrap_or(u16::MAX)
                },
                diff: diff.clone(),
            });
        }
        // Claim 3: each unit's queue, merged in order of occurrence.
        let mut queues = BTreeMap::new();
        if r.ordered {
            let mut by_unit: BTreeMap<u16, Vec<(u64, u16, u64, Bytes)>> = BTreeMap::new();
            for ((name, lun, _, _), p) in found.iter().zip(&pairs) {
                if let Some(q) = self.rcv_queues.get(name).filter(|q| !q.overflow) {
                    by_unit
                        .entry(p.unit)
                        .or_default()
                        .extend(q.nodes.iter().map(|(s, t, d)| (*s, *lun, *t, d.clone())));
                }
            }
            for (unit, mut nodes) in by_unit {
                nodes.sort_by_key(|n| n.0);
                let mut q = rcv::TimeSeriesQueue::new(false);
                for (_, dev, t, d) in nodes {
                    q.record(dev, t, rcv::Update::Format(d));
                }
                queues.insert(unit, q);
            }
        }
        let now = self.now;
        let session = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX).max(1);
        let config = RecoveryConfig {
            allowed: r.allowed,
            conditions: None,
            concurrency: r.concurrency,
            retry_interval: RECOVERY_RETRY,
            max_attempts: r.max_attempts,
        };
        let copy = RecoveryCopy::start(session, pairs, queues, config, now)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ordered: Vec<bool> = (0..found.len())
            .filter_map(|i| {
                copy.is_ordered(if r.group_unit {
                    0
                } else {
                    u16::try_from(i).unwrap_or(u16::MAX)
                })
            })
            .collect();
        info!(target = %r.target, pairs = found.len(), session, ?ordered, "recovery copy starts");
        self.rcv_master = Some(MasterRecovery {
            copy,
            remote: found[0].2,
            pairs: found.iter().map(|(n, l, _, _)| (n.clone(), *l)).collect(),
            outbox: VecDeque::new(),
            io: None,
            receive_due: false,
            next_poll: now + RECOVERY_POLL,
            held: Vec::new(),
            reached: Vec::new(),
            rollbacks: 0,
            last_cause: None,
            tracks_sent: 0,
            started: now,
            ended: None,
        });
        Ok(())
    }

    /// Moves the master's session on: its events, the held host writes, and the next
    /// message or read-back through the copy port.
    fn pump_recovery(&mut self, ctx: &mut Fc4Ctx<'_>) {
        let now = self.now;
        let Some(m) = self.rcv_master.as_mut() else {
            return;
        };
        while let Some(msg) = m.copy.poll_message() {
            if matches!(msg, RecoveryMessage::Write { .. }) {
                m.tracks_sent += 1;
            }
            m.outbox.push_back(msg);
        }
        let mut ended = None;
        while let Some(ev) = m.copy.poll_event() {
            match ev {
                RecoveryEvent::Reached { dev } => {
                    if let Some((n, _)) = m.pairs.iter().find(|(_, l)| *l == dev) {
                        m.reached.push(n.clone());
                    }
                }
                RecoveryEvent::RolledBack { report, .. } => {
                    m.rollbacks += 1;
                    m.last_cause = Some(report.cause);
                }
                RecoveryEvent::Ended(o) => ended = Some(o),
            }
        }
        if let Some(outcome) = ended {
            m.ended = Some(now);
            m.outbox.clear();
            let ends: Vec<(String, Option<crate::bitmap::DiffBitmap>)> = m
                .pairs
                .iter()
                .map(|(n, l)| {
                    let rest = (outcome != Outcome::Completed)
                        .then(|| m.copy.diff(*l).cloned())
                        .flatten();
                    (n.clone(), rest)
                })
                .collect();
            for (n, rest) in ends {
                if outcome == Outcome::Completed {
                    // A later suspension starts a queue of its own.
                    self.rcv_queues.remove(&n);
                }
                let rest = match (&outcome, rest) {
                    (Outcome::Completed, _) => None,
                    (_, Some(d)) => Some(d),
                    (_, None) => continue,
                };
                self.engine.end_recovery(&n, rest);
            }
        }
        let Some(m) = self.rcv_master.as_mut() else {
            return;
        };
        // Held host writes go on once the completion is answered.
        if m.copy.phase() != &Phase::Completing && !m.held.is_empty() {
            let held = std::mem::take(&mut m.held);
            for cmd in held {
                self.execute(ctx, &cmd);
            }
        }
        let Some(m) = self.rcv_master.as_mut() else {
            return;
        };
        if m.io.is_some() || m.ended.is_some() {
            return;
        }
        let (cdb, data_out, receive) = if let Some(msg) = m.outbox.pop_front() {
            let body = Bytes::from(serde_json::to_vec(&msg).unwrap_or_default());
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            m.receive_due = true;
            (copysvc::wire::recovery_message(len), body, false)
        } else if m.receive_due || now >= m.next_poll {
            m.receive_due = false;
            m.next_poll = now + RECOVERY_POLL;
            (
                copysvc::wire::receive_recovery_messages(),
                Bytes::new(),
                true,
            )
        } else {
            return;
        };
        let req = IoRequest {
            lun: 0,
            cdb: Bytes::copy_from_slice(&cdb),
            data_out,
            data_in_len: if receive {
                copysvc::wire::RESULTS_ALLOCATION
            } else {
                0
            },
        };
        let remote = m.remote;
        let io = self.init.submit(ctx, remote, req);
        if let Some(m) = self.rcv_master.as_mut() {
            m.io = Some((io, receive));
        }
    }

    /// Remembers the remote side's peak use of parity/spare save tracks.
    fn note_recovery_peak(&mut self) {
        let (_, rows) = self.rcv_target.saved_tracks();
        self.rcv_peak.0 = self.rcv_peak.0.max(rows);
        self.rcv_peak.1.extend(self.rcv_target.parity_rows_in_use());
    }

    /// The Copy service's view of the recovery copy on this array.
    fn recovery_status(&self) -> pb::RecoveryStatusResponse {
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let cause = |c: RollbackCause| match c {
            RollbackCause::Timeout => "timeout",
            RollbackCause::SaveAreaExhausted => "save_area_exhausted",
        };
        let master = self.rcv_master.as_ref().map(|m| {
            let (phase, outcome) = match m.copy.phase() {
                Phase::Configuring => ("configuring", ""),
                Phase::Starting => ("starting", ""),
                Phase::Copying => ("copying", ""),
                Phase::Completing => ("completing", ""),
                Phase::Ended(o) => (
                    "ended",
                    match o {
                        Outcome::Completed => "completed",
                        Outcome::RolledBack(_) => "rolled_back",
                        Outcome::Refused(_) => "refused",
                        Outcome::ConditionsDisagree { .. } => "conditions_disagree",
                    },
                ),
            };
            let plan = m.copy.plan();
            pb::RecoveryMaster {
                pairs: m.pairs.iter().map(|(n, _)| n.clone()).collect(),
                phase: phase.into(),
                outcome: outcome.into(),
                cause: m.last_cause.map(cause).unwrap_or_default().into(),
                attempt: m.copy.attempt(),
                session: m.copy.session(),
                reached: m.reached.clone(),
                rollbacks: m.rollbacks,
                concurrency: plan.map_or(0, |p| u32::try_from(p.concurrency).unwrap_or(0)),
                save_capacity_tracks: plan.map_or(0, |p| p.save_capacity_tracks),
                started_ns: ns(m.started),
                ended_ns: m.ended.map_or(0, ns),
                tracks_sent: m.tracks_sent,
                tracks_left: m.copy.tracks_left(),
                resent: m.copy.resent(),
            }
        });
        let (session, writes_received, reached) =
            self.rcv_target.session_progress().unwrap_or_default();
        let (cache_tracks, row_tracks) = self.rcv_target.saved_tracks();
        let (last_outcome, last_cause, rolled_back) = match self.rcv_target.last_outcome() {
            Some((_, TargetOutcome::Completed)) => ("completed", "", Vec::new()),
            Some((_, TargetOutcome::RolledBack(r))) => (
                "rolled_back",
                cause(r.cause),
                r.rolled_back.iter().map(|l| u32::from(*l)).collect(),
            ),
            None => ("", "", Vec::new()),
        };
        pb::RecoveryStatusResponse {
            master,
            remote: Some(pb::RecoveryRemote {
                protection: match self.rcv_target.protection() {
                    Protection::SaveOld => "save_old",
                    Protection::HoldNew => "hold_new",
                }
                .into(),
                in_progress: self.rcv_target.in_progress(),
                cache_tracks,
                row_tracks,
                peak_row_tracks: self.rcv_peak.0,
                parity_rows_borrowed: self
                    .rcv_peak
                    .1
                    .iter()
                    .map(|r| u32::try_from(*r).unwrap_or(u32::MAX))
                    .collect(),
                last_outcome: last_outcome.into(),
                last_cause: last_cause.into(),
                rolled_back,
                session,
                writes_received,
                reached: reached.into_iter().map(u32::from).collect(),
            }),
        }
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
            if let Some(m) = self.rcv_master.as_mut()
                && m.io.is_some_and(|(i, _)| i == io)
            {
                let receive = m.io.take().is_some_and(|(_, r)| r);
                let ok = c.result.transport.is_none() && c.result.status == 0;
                if !ok {
                    debug!(receive, "recovery copy: a message was lost");
                } else if receive {
                    let msgs: Vec<RecoveryMessage> =
                        serde_json::from_slice(&c.result.data_in).unwrap_or_default();
                    let now = self.now;
                    for msg in msgs {
                        m.copy.handle_message(msg, &LuStores(&mut self.scsi), now);
                    }
                }
                continue;
            }
            if let Some(token) = self.engine_ios.remove(&io) {
                let status = c.result.transport.is_none().then_some(c.result.status);
                let now = self.now;
                self.engine
                    .command_done(token, status, &c.result.data_in, now);
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
        while let Some(ev) = self.init.poll_event() {
            // A relay found down gets records again once a path to it comes back.
            if let crate::initiator::InitiatorEvent::PathUp { naa, target, .. } = ev
                && let Some(wwpn) = self.init.device(naa).and_then(|d| {
                    d.paths
                        .iter()
                        .find(|p| p.target == target)
                        .map(|p| p.target_wwpn.0.0)
                })
            {
                self.engine.relay_path_up(wwpn);
            }
        }
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
        self.pump_recovery(ctx);
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

/// A host write of `blocks` at `lba` landed on LU `lun`: every suspended remote pair of
/// it records the written blocks in its time-series queue (steps 1201–1205; the bitmap
/// is the engine's). A queue starts at the first write after the suspension with the
/// blocks already marked (the writes the suspension cut off), oldest of all.
fn record_suspended(
    engine: &CopyEngine,
    queues: &mut BTreeMap<String, SuspendQueue>,
    seq: &mut u64,
    scsi: &mut ScsiTarget,
    (lun, lba, blocks): (u16, u64, u64),
) {
    queues.retain(|n, _| {
        engine
            .pair(n)
            .is_some_and(|p| p.state == copysvc::PairState::Suspended)
    });
    let suspended: Vec<(String, u64)> = engine
        .pairs()
        .filter(|p| {
            p.primary == lun
                && p.state == copysvc::PairState::Suspended
                && matches!(p.secondary, copysvc::Secondary::Remote(_))
        })
        .map(|p| (p.name.clone(), p.blocks))
        .collect();
    for (name, size) in suspended {
        let vols = LuStores(scsi);
        let q = queues.entry(name.clone()).or_insert_with(|| {
            let mut q = SuspendQueue {
                nodes: Vec::new(),
                overflow: false,
            };
            if let Some(p) = engine.pair(&name) {
                let mut at = 0;
                while let Some((t, _)) = p.diff.next_run(at, 1) {
                    if !(lba..lba.saturating_add(blocks)).contains(&t) {
                        *seq += 1;
                        q.nodes
                            .push((*seq, t, rcv::Tracks::read_track(&vols, lun, t)));
                    }
                    at = t + 1;
                }
            }
            q
        });
        if q.overflow {
            continue;
        }
        for b in lba..lba.saturating_add(blocks).min(size) {
            *seq += 1;
            q.nodes
                .push((*seq, b, rcv::Tracks::read_track(&vols, lun, b)));
        }
        if q.nodes.len() > RECOVERY_QUEUE_NODES {
            q.nodes = Vec::new();
            q.overflow = true;
        }
    }
}

/// A host write of `blocks` at `lba` landed on LU `lun`: a recovery copy of its pair
/// marks it (and, for a reached pair, sends it in order).
fn recovery_after_write(
    master: &mut Option<MasterRecovery>,
    scsi: &mut ScsiTarget,
    (lun, lba, blocks): (u16, u64, u64),
    now: std::time::Duration,
) {
    let Some(m) = master.as_mut() else {
        return;
    };
    if m.copy.before_write(lun) != HostWrite::Proceed {
        return;
    }
    let end = m
        .copy
        .diff(lun)
        .map_or(0, |d| d.blocks())
        .min(lba.saturating_add(blocks));
    for b in lba..end {
        let vols = LuStores(scsi);
        let data = rcv::Tracks::read_track(&vols, lun, b);
        m.copy
            .after_write(lun, b, rcv::Update::Format(data), &vols, now);
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
        let now = self.clock(ctx.now);
        self.now = now;
        self.rcv_target
            .handle_timeout(&mut LuStores(&mut self.scsi), now);
        if let Some(m) = self.rcv_master.as_mut() {
            m.copy.handle_timeout(now);
        }
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
        let unskew = |t| skewed(t, -self.cfg.clock_skew_us);
        let master = self.rcv_master.as_ref().and_then(|m| {
            let poll = (m.ended.is_none() && m.io.is_none()).then_some(m.next_poll);
            [m.copy.poll_timeout(), poll].into_iter().flatten().min()
        });
        [
            self.init.poll_timeout(),
            engine,
            self.rcv_target.poll_timeout().map(unskew),
            master.map(unskew),
        ]
        .into_iter()
        .flatten()
        .min()
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
        actor::ask(&self.tx, "array", make).await?
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
