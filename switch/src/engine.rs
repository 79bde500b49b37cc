//! The virtualization engine of an intelligent switch (seed 003, DESIGN.md §6): the
//! FC-4 layer of the switch's virtual N_Ports. Its ports are FCP targets for the hosts
//! (the virtual targets, carrying the virtual LUs) and FCP initiators towards the
//! external arrays and tapes (discovery, translated I/O, delegated commands).
//!
//! Start here: [`Engine::host_command`] (the seed's request handling, Fig. 1: analyse,
//! then read/write translation or a support function), [`Engine::vread`] /
//! [`Engine::vwrite`] (one virtual range through TM, the cache and TB), and the
//! operations in [`crate::ops`]. Tables and the cache are the sans-IO cores in
//! [`crate::tm`], [`crate::tf`] and [`crate::cache`]; this module only wires them to
//! the FCP target, the SCSI initiator and the block stores of INTERNAL extents.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fcsim_devices::bitmap::DiffBitmap;
use fcsim_devices::copysvc::CopyEngine;
use fcsim_devices::fcp::{FcpTarget, IoRequest, IoResult, TargetCommand};
use fcsim_devices::initiator::{Completion, InitiatorEvent, IoId, ScsiInitiator, cdb, parse};
use fcsim_devices::scsi::cdb::Command;
use fcsim_devices::scsi::inquiry::{CopyFunction, NaaId};
use fcsim_devices::scsi::sense::{Sense, SenseKey, asc};
use fcsim_devices::scsi::target::{LogicalUnit, LuConfig, Nexus, ScsiTarget};
use fcsim_devices::store::{BlockStore, FileStore, MemStore};
use fcsim_fabric::endnode::{EndNodeConfig, Fc4Ctx, Fc4Layer};
use fcsim_fabric::frame::Frame;
use fcsim_fabric::nport::NPortEvent;
use fcsim_fabric::{FcId, Wwn, Wwnn, Wwpn};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::cache::{DirtyRun, SwitchCache};
use crate::ops::{Op, OpIo};
use crate::service::EngineAdmin;
use crate::tf::{FunctionRow, FunctionTable, Provenance};
use crate::tm::{MappingTable, RealLu, Target, VirtualLu};

/// Blocks per backend command of a destage or a switch-local copy step.
pub const CHUNK_BLOCKS: u64 = 256;
/// [`CHUNK_BLOCKS`] as a count of cache entries.
const CHUNK_ENTRIES: usize = 256;

/// How long a backend READ or WRITE, or a command without a path, may wait.
const BACKEND_TIMEOUT: Duration = Duration::from_millis(80);

/// Pause before a failed destage is tried again.
const DESTAGE_RETRY: Duration = Duration::from_millis(10);

/// Destage commands in flight at once.
const DESTAGE_DEPTH: usize = 8;

/// The engine's operating mode (seed 003 §3.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffloadMode {
    /// Mode 1: support functions go to capable arrays.
    #[default]
    Offload,
    /// Mode 2: the switch does everything itself.
    Local,
}

/// An external array as configured (for names in TM and TF).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnownDevice {
    pub name: String,
    pub wwnn: Wwnn,
    pub ports: Vec<Wwpn>,
}

/// A real LU the configuration names: where it is and its geometry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnownLu {
    /// `array:lun`.
    pub name: String,
    pub naa: Wwn,
    /// The array holding it.
    pub device: String,
    pub blocks: u64,
    pub block_bytes: u32,
}

/// The engine's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineConfig {
    /// The engine's N_Ports (kind `virtualization`, role both).
    pub node: EndNodeConfig,
    /// The switch it belongs to: the device ID of INTERNAL rows (SD1).
    pub switch: String,
    /// Virtual LUs configured at start.
    pub lus: Vec<VirtualLu>,
    /// Map every discovered external disk LU no extent uses to a new virtual LU.
    pub auto_map: bool,
    pub mode: OffloadMode,
    /// Most clean blocks the cache keeps; dirty blocks beyond it hold new writes back.
    pub cache_blocks: usize,
    pub devices: Vec<KnownDevice>,
    pub real_lus: Vec<KnownLu>,
    /// INTERNAL extents live in files here; `None`: sparse memory.
    pub data_dir: Option<PathBuf>,
    /// Names of every LU, tape and virtual LU in the fabric (`node:lun`), for logs.
    #[serde(default)]
    pub aliases: BTreeMap<String, Wwn>,
    /// Manual TF cells: (array, function, can).
    #[serde(default)]
    pub overrides: Vec<(String, crate::tf::SupportFunction, bool)>,
}

/// What a backend command is for.
#[derive(Debug, Clone)]
pub(crate) enum Waiter {
    /// Piece `piece` of virtual request `req`.
    Piece { req: u64, piece: usize },
    /// A destage run.
    Destage { run: u64 },
    /// A command an operation sent itself (offload, RECEIVE COPY RESULTS, tape write).
    Op { op: u64, io: OpIo },
    /// A VPD C0h probe refreshing TF for a device.
    Probe { device: String },
    /// A command the copy engine asked for (token of the engine's action).
    Pair { token: u64 },
    /// A step of an in-band pair request to an array (`results`: the read-back).
    Manage { id: u64, results: bool },
}

/// Who asked for a virtual read or write.
#[derive(Debug, Clone)]
pub(crate) enum Owner {
    Host(TargetCommand),
    Op(u64),
    /// A host write admitted by the copy engine (its id in `paired`).
    Paired(u64),
    /// The primary read of the copy engine's copy `token`.
    PairCopy {
        token: u64,
        lba: u64,
        to: fcsim_devices::copysvc::Secondary,
    },
    /// The local-secondary write of the copy engine's copy `token`.
    PairCopyWrite(u64),
}

/// A virtual read or write in progress: one part per TM piece.
#[derive(Debug)]
pub(crate) struct VRequest {
    owner: Owner,
    lun: u16,
    lba: u64,
    blocks: u64,
    /// Write data (whole blocks); `None` for a read.
    data: Option<Bytes>,
    parts: Vec<Option<Bytes>>,
    outstanding: usize,
    failed: Option<Sense>,
}

/// How a virtual read or write ended.
pub(crate) type VResult = Result<Bytes, Sense>;

struct DestageRun {
    run: DirtyRun,
    outstanding: usize,
    ok: bool,
}

/// The engine: tables, cache, operations, and the FCP target and initiator under them.
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    fcp: FcpTarget,
    /// The virtual LUs' SCSI personality (INQUIRY, REPORT LUNS, …) and INTERNAL stores.
    pub(crate) scsi: ScsiTarget,
    pub(crate) init: ScsiInitiator,
    pub(crate) tm: MappingTable,
    pub(crate) tf: FunctionTable,
    pub(crate) cache: SwitchCache,
    reqs: BTreeMap<u64, VRequest>,
    pub(crate) waiters: BTreeMap<IoId, Waiter>,
    destages: BTreeMap<u64, DestageRun>,
    pub(crate) ops: BTreeMap<u64, Op>,
    /// Host writes held back while the cache is full of dirty blocks.
    held: Vec<TargetCommand>,
    /// SYNCHRONIZE CACHE commands waiting for their range to be destaged.
    syncs: Vec<(TargetCommand, u16, u64, u64)>,
    next_id: u64,
    /// Devices whose TF row is being refreshed.
    probing: BTreeSet<String>,
    /// Commands sent to arrays on behalf of each virtual LU.
    pub(crate) backend_commands: BTreeMap<u16, u64>,
    /// When to try a failed destage again.
    destage_retry_at: Option<Duration>,
    /// Tables fetched from peer switches, by the remote virtual LU they present.
    pub(crate) peers: BTreeMap<Wwn, crate::peer::PeerTables>,
    /// Copy pairs of virtual LUs the switch runs itself ([`crate::pairs`]).
    pub(crate) pairs: CopyEngine,
    /// Pairs the offload rule gave to arrays, by name.
    pub(crate) delegated: BTreeMap<String, crate::pairs::Delegated>,
    /// Host writes under the copy engine, from admission to their answer.
    pub(crate) paired: BTreeMap<u64, crate::pairs::PairedWrite>,
    /// In-band pair requests to arrays in progress.
    pub(crate) manages: BTreeMap<u64, crate::pairs::Manage>,
    /// Fabric time of the last input.
    pub(crate) now: Duration,
}

fn sense_of(r: &IoResult) -> Sense {
    if r.transport.is_none()
        && let Ok(s) = Sense::decode(&r.sense)
    {
        return s;
    }
    // The array cannot be reached.
    Sense::new(SenseKey::ABORTED_COMMAND, asc::LU_COMMUNICATION_FAILURE)
}

pub(crate) fn ok(r: &IoResult) -> bool {
    r.transport.is_none() && r.status == 0
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Result<Self, String> {
        let mut e = Engine {
            cache: SwitchCache::new(cfg.cache_blocks),
            // The engine's ports are the writers a remote secondary admits.
            pairs: CopyEngine::new(cfg.node.port_wwpns.clone()),
            cfg,
            fcp: FcpTarget::new(),
            scsi: ScsiTarget::default(),
            // Answer the hosts (whose exchanges wait 200 ms) before they give up.
            init: ScsiInitiator::with_timeouts(BACKEND_TIMEOUT, BACKEND_TIMEOUT),
            tm: MappingTable::new(),
            tf: FunctionTable::new(),
            reqs: BTreeMap::new(),
            waiters: BTreeMap::new(),
            destages: BTreeMap::new(),
            ops: BTreeMap::new(),
            held: Vec::new(),
            syncs: Vec::new(),
            next_id: 0,
            probing: BTreeSet::new(),
            backend_commands: BTreeMap::new(),
            destage_retry_at: None,
            peers: BTreeMap::new(),
            delegated: BTreeMap::new(),
            paired: BTreeMap::new(),
            manages: BTreeMap::new(),
            now: Duration::ZERO,
        };
        for (device, f, can) in e.cfg.overrides.clone() {
            e.tf.set_override(&device, f, Some(can), Duration::ZERO);
        }
        for lu in e.cfg.lus.clone() {
            e.map_lu(lu).map_err(|err| err.to_string())?;
        }
        Ok(e)
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Operations are numbered 1, 2, … in the order they start.
    pub(crate) fn next_op(&mut self) -> u64 {
        self.ops.keys().next_back().map_or(1, |k| k + 1)
    }

    /// What the engine knows of a real LU: configuration first, then discovery.
    pub(crate) fn real_lu(&self, naa: Wwn) -> Option<RealLu> {
        if let Some(k) = self.cfg.real_lus.iter().find(|k| k.naa == naa) {
            return Some(RealLu {
                blocks: k.blocks,
                block_bytes: k.block_bytes,
            });
        }
        self.init
            .device(naa)
            .filter(|d| d.block_bytes > 0)
            .map(|d| RealLu {
                blocks: d.blocks,
                block_bytes: d.block_bytes,
            })
    }

    /// The array holding a real LU, by name.
    pub(crate) fn device_of(&self, naa: Wwn) -> Option<String> {
        if let Some(k) = self.cfg.real_lus.iter().find(|k| k.naa == naa) {
            return Some(k.device.clone());
        }
        let port = self.init.device(naa)?.paths.first()?.target_wwpn;
        Some(self.device_named(port))
    }

    /// The configured name of the device owning port `wwpn` (else the WWPN).
    fn device_named(&self, wwpn: Wwpn) -> String {
        self.cfg
            .devices
            .iter()
            .find(|d| d.ports.contains(&wwpn))
            .map_or_else(|| wwpn.to_string(), |d| d.name.clone())
    }

    /// A real LU's display name.
    pub(crate) fn lu_name(&self, naa: Wwn) -> String {
        self.cfg
            .aliases
            .iter()
            .find(|(_, n)| **n == naa)
            .map_or_else(|| naa.to_string(), |(k, _)| k.clone())
    }

    /// Adds a virtual LU to TM (validated) and to the SCSI target.
    pub(crate) fn map_lu(&mut self, lu: VirtualLu) -> Result<(), String> {
        let known: BTreeMap<Wwn, RealLu> = lu
            .extents
            .iter()
            .filter_map(|e| match e.backing {
                crate::tm::Backing::External { lu, .. } => Some((lu, self.real_lu(lu)?)),
                crate::tm::Backing::Internal => None,
            })
            .collect();
        let mut tm = self.tm.clone();
        tm.add_lu(lu.clone(), |n| known.get(&n).copied())
            .map_err(|e| e.to_string())?;
        let added = tm.lu(lu.lun).cloned().ok_or("virtual LU vanished")?;
        let store: Box<dyn BlockStore> = match (&self.cfg.data_dir, added.has_internal()) {
            (Some(dir), true) => {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let path = dir.join(format!("{}-vlu{}.img", self.cfg.switch, added.lun));
                Box::new(
                    FileStore::open(&path, added.block_bytes, added.blocks(), false)
                        .map_err(|e| e.to_string())?,
                )
            }
            _ => Box::new(
                MemStore::new(added.block_bytes, added.blocks()).map_err(|e| e.to_string())?,
            ),
        };
        let lc = LuConfig {
            lun: added.lun,
            block_size_bytes: added.block_bytes,
            blocks: added.blocks(),
            serial: format!("{}-V{:04}", self.cfg.switch.to_uppercase(), added.lun),
            naa: added.naa.0,
            product: "FCSIM VIRTUAL LU".into(),
            // The switch is a copy manager: it runs every support function itself.
            third_party_copy: true,
            copy_functions: vec![
                CopyFunction::Xcopy,
                CopyFunction::DirectBackup,
                CopyFunction::LocalPair,
            ],
            ..LuConfig::default()
        };
        let unit = LogicalUnit::new(lc, store).map_err(|e| e.to_string())?;
        self.scsi.add_lu(unit).map_err(|e| e.to_string())?;
        self.tm = tm;
        self.scsi.notify_luns_changed();
        info!(lun = added.lun, name = %added.name, blocks = added.blocks(), "virtual LU mapped");
        Ok(())
    }

    /// Removes a virtual LU no operation uses.
    pub(crate) fn unmap_lu(&mut self, lun: u16) -> Result<(), String> {
        if self.ops.values().any(|o| o.uses(lun)) {
            return Err(format!("virtual LU {lun} is in use by an operation"));
        }
        if self.lu_paired(lun) {
            return Err(format!("virtual LU {lun} is a volume of a copy pair"));
        }
        if self.cache.any_dirty(lun, 0, u64::MAX) {
            return Err(format!(
                "virtual LU {lun} has dirty blocks not yet destaged"
            ));
        }
        self.tm.remove_lu(lun).map_err(|e| e.to_string())?;
        self.scsi.remove_lu(lun);
        self.cache.invalidate(lun, 0, u64::MAX);
        self.scsi.notify_luns_changed();
        Ok(())
    }

    // ---- host commands -------------------------------------------------------------------

    /// One host command on a virtual target port (seed 003 §4.2): reads and writes are
    /// translated; EXTENDED COPY is a support function; everything else (INQUIRY, REPORT
    /// LUNS, READ CAPACITY, RECEIVE COPY RESULTS, …) is about the switch's own virtual
    /// LUs and answered here, never delegated.
    fn host_command(&mut self, ctx: &mut Fc4Ctx<'_>, cmd: TargetCommand) {
        let Some(initiator) = ctx
            .ports
            .get(&cmd.port)
            .and_then(|np| np.logged_in().get(&cmd.initiator).map(|r| r.wwpn))
        else {
            debug!(port = cmd.port, initiator = %cmd.initiator, "FCP command from a port not logged in: dropped");
            ctx.hub.count_discard(cmd.port);
            return;
        };
        let lun = cmd.lun.and_then(|l| u16::try_from(l).ok());
        let vlu = lun.and_then(|l| self.tm.lu(l)).cloned();
        if let (Some(lu), Some(req)) = (&vlu, crate::peer::Request::parse(&cmd.cdb)) {
            return self.table_request(ctx, cmd, lu, req);
        }
        if let Some(lu) = &vlu {
            match Command::parse(&cmd.cdb) {
                Ok(Command::Read10(c)) => {
                    return self.host_rw(ctx, cmd, initiator, lu, c.range(), None);
                }
                Ok(Command::Read16(c)) => {
                    return self.host_rw(ctx, cmd, initiator, lu, c.range(), None);
                }
                Ok(Command::Write10(c)) => {
                    let data = cmd.data_out.clone();
                    return self.host_rw(ctx, cmd, initiator, lu, c.range(), Some(data));
                }
                Ok(Command::Write16(c)) => {
                    let data = cmd.data_out.clone();
                    return self.host_rw(ctx, cmd, initiator, lu, c.range(), Some(data));
                }
                Ok(Command::SynchronizeCache10(c)) => {
                    return self.host_sync(ctx, cmd, lu, c.range());
                }
                Ok(Command::SynchronizeCache16(c)) => {
                    return self.host_sync(ctx, cmd, lu, c.range());
                }
                Ok(Command::WriteSame16(_)) => {
                    // Not translated: refused like any unsupported opcode.
                    return self.answer(&cmd, Err(Sense::invalid_opcode()));
                }
                _ => {}
            }
        }
        let visible: Vec<u16> = self.tm.lus().keys().copied().collect();
        let tm = &self.tm;
        let init = &self.init;
        let may_access = |naa: NaaId| match naa {
            NaaId::Short(w) => tm.lu_by_naa(w).is_some() || init.device(w).is_some(),
            NaaId::Extended(_) => false,
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
            lun: lun.unwrap_or(u16::MAX),
            visible_luns: &visible,
            may_access: &may_access,
        };
        let data_out = (!cmd.data_out.is_empty()).then(|| cmd.data_out.clone());
        let mut r = self.scsi.execute(&nexus, &cmd.cdb, data_out);
        if let Some(job) = r.copy_job.take() {
            return self.start_copy(ctx, cmd, job);
        }
        let sense = r.sense.map(|s| s.encode()).unwrap_or_default();
        self.fcp.complete(&cmd, r.status.0, sense, r.data_in);
    }

    fn host_rw(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        cmd: TargetCommand,
        initiator: Wwpn,
        lu: &VirtualLu,
        r: fcsim_devices::scsi::cdb::BlockRange,
        data: Option<Bytes>,
    ) {
        if let Err(s) = r.check(lu.blocks(), 0xFFFF_FFFF) {
            return self.answer(&cmd, Err(s));
        }
        if r.blocks == 0 {
            return self.answer(&cmd, Ok(Bytes::new()));
        }
        let bb = lu.block_bytes as usize;
        let len = usize::try_from(r.blocks)
            .unwrap_or(usize::MAX)
            .saturating_mul(bb);
        let data = match data {
            None => None,
            Some(d) if d.len() < len => {
                return self.answer(
                    &cmd,
                    Err(Sense::new(SenseKey::ABORTED_COMMAND, asc::DATA_PHASE_ERROR)),
                );
            }
            Some(d) => Some(d.slice(..len)),
        };
        if data.is_some()
            && lu.ack == crate::tm::AckMode::Async
            && self.cache.dirty_blocks() >= self.cfg.cache_blocks.max(1)
        {
            // Write pending limit: hold the command until destage frees the cache.
            self.held.push(cmd);
            return self.destage(ctx);
        }
        match data {
            None => self.vread(ctx, Owner::Host(cmd), lu.lun, r.lba, r.blocks),
            // Every write is admitted by the copy engine, so a pair created while it is
            // in flight still sees it land.
            Some(d) => self.paired_write(ctx, cmd, initiator, (lu.lun, r.lba), d),
        }
    }

    /// A peer switch's table acquisition or coherence request (seed 003 §3.7).
    fn table_request(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        cmd: TargetCommand,
        lu: &VirtualLu,
        req: crate::peer::Request,
    ) {
        use crate::peer::{PeerLu, PeerRow, Request};
        match req {
            Request::FunctionTable => {
                let rows = PeerRow::all(&self.tf);
                self.answer(&cmd, Ok(to_json(&rows)));
            }
            Request::MappingTable => {
                let devices = lu
                    .extents
                    .iter()
                    .filter_map(|e| match e.backing {
                        crate::tm::Backing::External { lu, .. } => Some((lu, self.device_of(lu)?)),
                        crate::tm::Backing::Internal => None,
                    })
                    .collect();
                let p = PeerLu {
                    switch: self.cfg.switch.clone(),
                    lu: lu.clone(),
                    devices,
                };
                self.answer(&cmd, Ok(to_json(&p)));
            }
            Request::Prepare { lba, blocks } => {
                // Dirty blocks first go to the array, then the range is dropped (below,
                // once clean): what the array will write must not be shadowed.
                self.syncs.push((cmd, lu.lun, lba, blocks));
                self.destage(ctx);
                self.answer_syncs();
            }
            Request::Invalidate { lba, blocks } => {
                self.cache.invalidate(lu.lun, lba, blocks);
                self.answer(&cmd, Ok(Bytes::new()));
            }
        }
    }

    /// SYNCHRONIZE CACHE: destage the range's dirty blocks, then GOOD.
    fn host_sync(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        cmd: TargetCommand,
        lu: &VirtualLu,
        r: fcsim_devices::scsi::cdb::BlockRange,
    ) {
        let blocks = if r.blocks == 0 {
            lu.blocks().saturating_sub(r.lba)
        } else {
            r.blocks
        };
        if r.lba > lu.blocks() {
            return self.answer(&cmd, Err(Sense::lba_out_of_range()));
        }
        self.syncs.push((cmd, lu.lun, r.lba, blocks));
        self.destage(ctx);
        self.answer_syncs();
    }

    /// SYNCHRONIZE CACHE commands whose range has no dirty block left get GOOD.
    fn answer_syncs(&mut self) {
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.syncs)
            .into_iter()
            .partition(|(_, lun, lba, n)| self.range_clean(*lun, *lba, *n));
        self.syncs = wait;
        for (cmd, lun, lba, n) in done {
            if crate::peer::Request::parse(&cmd.cdb).is_some() {
                self.cache.invalidate(lun, lba, n);
            }
            self.answer(&cmd, Ok(Bytes::new()));
        }
    }

    /// Answers a host command.
    pub(crate) fn answer(&mut self, cmd: &TargetCommand, r: VResult) {
        match r {
            Ok(data) => self.fcp.complete(cmd, 0, Bytes::new(), data),
            Err(s) => self.fcp.complete(cmd, 2, s.encode(), Bytes::new()),
        }
    }

    // ---- the virtual I/O path --------------------------------------------------------------

    /// Reads `blocks` blocks of virtual LU `lun` (seed 003 §4.4): each TM piece from the
    /// cache when it holds all of it, else from its array or the INTERNAL store; cached
    /// blocks (newer than the array's, or equal) are laid over the result.
    pub(crate) fn vread(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        owner: Owner,
        lun: u16,
        lba: u64,
        blocks: u64,
    ) {
        let pieces = match self.tm.translate(lun, lba, blocks) {
            Ok(p) => p,
            Err(_) => return self.finish_owner(ctx, owner, Err(Sense::lba_out_of_range())),
        };
        let id = self.next_id();
        let mut req = VRequest {
            owner,
            lun,
            lba,
            blocks,
            data: None,
            parts: vec![None; pieces.len()],
            outstanding: 0,
            failed: None,
        };
        let bb = self.block_bytes(lun);
        for (i, p) in pieces.iter().enumerate() {
            let at = lba + p.offset;
            if self.cache.covers(lun, at, p.blocks) {
                req.parts[i] = Some(self.cached(lun, at, p.blocks, bb));
                continue;
            }
            match p.target {
                Target::Internal { lba } => {
                    let r = self.scsi.lu(lun).map(|l| l.store().read(lba, p.blocks));
                    match r {
                        Some(Ok(d)) => req.parts[i] = Some(d),
                        _ => {
                            req.failed = Some(Sense::new(
                                SenseKey::MEDIUM_ERROR,
                                asc::UNRECOVERED_READ_ERROR,
                            ))
                        }
                    }
                }
                Target::External { lu, lba } => {
                    let blocks = u32::try_from(p.blocks).unwrap_or(u32::MAX);
                    let read = IoRequest {
                        lun: 0,
                        cdb: cdb::read16(lba, blocks),
                        data_out: Bytes::new(),
                        data_in_len: blocks.saturating_mul(u32::try_from(bb).unwrap_or(0)),
                    };
                    self.backend(ctx, lun, lu, read, Waiter::Piece { req: id, piece: i });
                    req.outstanding += 1;
                }
            }
        }
        self.reqs.insert(id, req);
        self.maybe_done(ctx, id);
    }

    /// Writes whole blocks to virtual LU `lun` (seed 003 §4.3). TB of every operation
    /// copying from `lun` is marked first; an `async` LU acknowledges once the cache
    /// holds the data, a `sync` LU once every array holding a piece acknowledged it.
    pub(crate) fn vwrite(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        owner: Owner,
        lun: u16,
        lba: u64,
        data: Bytes,
    ) {
        let bb = self.block_bytes(lun);
        let blocks = (data.len() / bb) as u64;
        let pieces = match self.tm.translate(lun, lba, blocks) {
            Ok(p) => p,
            Err(_) => return self.finish_owner(ctx, owner, Err(Sense::lba_out_of_range())),
        };
        let async_ack = self
            .tm
            .lu(lun)
            .is_some_and(|l| l.ack == crate::tm::AckMode::Async);
        if async_ack {
            self.cache.put(lun, lba, &data, bb, true);
            self.written(ctx, &owner, lun, lba, blocks);
            self.finish_owner(ctx, owner, Ok(Bytes::new()));
            return self.destage(ctx);
        }
        let id = self.next_id();
        let mut req = VRequest {
            owner,
            lun,
            lba,
            blocks,
            data: Some(data.clone()),
            parts: vec![None; pieces.len()],
            outstanding: 0,
            failed: None,
        };
        for (i, p) in pieces.iter().enumerate() {
            let slice = data.slice(bytes_of(p.offset, p.blocks, bb));
            match self.write_piece(ctx, lun, p, slice, Waiter::Piece { req: id, piece: i }) {
                None => req.outstanding += 1,
                Some(true) => req.parts[i] = Some(Bytes::new()),
                Some(false) => {
                    req.failed = Some(Sense::new(SenseKey::MEDIUM_ERROR, asc::WRITE_ERROR));
                }
            }
        }
        self.reqs.insert(id, req);
        self.maybe_done(ctx, id);
    }

    /// A write to `lun` landed (on its arrays, or dirty in the cache): every other
    /// operation copying from that range marks TB before the writer is answered, and a
    /// paired mirror starts copying it. Marking only once the data is where a copy reads
    /// it means a copy that reads after the mark always sees the new data.
    fn written(&mut self, ctx: &mut Fc4Ctx<'_>, owner: &Owner, lun: u16, lba: u64, blocks: u64) {
        let from_op = match owner {
            Owner::Op(op) => Some(*op),
            _ => None,
        };
        for op in self.ops.values_mut() {
            if Some(op.id) != from_op {
                op.host_wrote(lun, lba, blocks);
            }
        }
        self.kick_ops(ctx);
    }

    /// Writes one TM piece of virtual LU `lun` where it lives: the INTERNAL store at once
    /// (`Some(written)`), or its array (`None`; `waiter` hears the completion).
    fn write_piece(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        lun: u16,
        p: &crate::tm::Piece,
        data: Bytes,
        waiter: Waiter,
    ) -> Option<bool> {
        match p.target {
            Target::Internal { lba } => Some(
                self.scsi
                    .lu_mut(lun)
                    .is_some_and(|l| l.store_mut().write(lba, &data).is_ok()),
            ),
            Target::External { lu, lba } => {
                let blocks = u32::try_from(p.blocks).unwrap_or(u32::MAX);
                let write = IoRequest {
                    lun: 0,
                    cdb: cdb::write16(lba, blocks, false),
                    data_out: data,
                    data_in_len: 0,
                };
                self.backend(ctx, lun, lu, write, waiter);
                None
            }
        }
    }

    /// Sends a command for virtual LU `lun` to real LU `real`.
    fn backend(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        lun: u16,
        real: Wwn,
        req: IoRequest,
        waiter: Waiter,
    ) {
        *self.backend_commands.entry(lun).or_default() += 1;
        let io = self.init.submit(ctx, real, req);
        self.waiters.insert(io, waiter);
    }

    fn block_bytes(&self, lun: u16) -> usize {
        self.block_bytes_of(lun) as usize
    }

    /// The block size of virtual LU `lun` (512 if there is no such LU).
    pub(crate) fn block_bytes_of(&self, lun: u16) -> u32 {
        self.tm.lu(lun).map_or(512, |l| l.block_bytes).max(1)
    }

    /// The cached blocks of a range (all present), as one buffer.
    fn cached(&self, lun: u16, lba: u64, blocks: u64, bb: usize) -> Bytes {
        if blocks == 1 {
            return self.cache.get(lun, lba).cloned().unwrap_or_default();
        }
        let mut b = BytesMut::with_capacity(bytes_of(0, blocks, bb).end);
        for at in lba..lba + blocks {
            if let Some(d) = self.cache.get(lun, at) {
                b.extend_from_slice(d);
            }
        }
        b.freeze()
    }

    fn maybe_done(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64) {
        let Some(req) = self.reqs.get(&id) else {
            return;
        };
        if req.outstanding > 0 {
            return;
        }
        let Some(req) = self.reqs.remove(&id) else {
            return;
        };
        if let Some(s) = req.failed {
            return self.finish_owner(ctx, req.owner, Err(s));
        }
        let bb = self.block_bytes(req.lun);
        let wrote = req.data.is_some();
        let result = match req.data {
            Some(data) => {
                // Keep a clean copy for read hits, unless a newer write is dirty there.
                if !self.cache.any_dirty(req.lun, req.lba, req.blocks) {
                    self.cache.put(req.lun, req.lba, &data, bb, false);
                }
                Bytes::new()
            }
            None => {
                let overlay =
                    (req.lba..req.lba + req.blocks).any(|b| self.cache.get(req.lun, b).is_some());
                let mut parts: Vec<Bytes> = req.parts.into_iter().flatten().collect();
                match (parts.len(), overlay) {
                    (1, false) => parts.pop().unwrap_or_default(),
                    _ => {
                        let mut b = BytesMut::with_capacity(bytes_of(0, req.blocks, bb).end);
                        for p in parts {
                            b.extend_from_slice(&p);
                        }
                        for (i, at) in (req.lba..req.lba + req.blocks).enumerate() {
                            if let Some(c) = self.cache.get(req.lun, at) {
                                b[i * bb..(i + 1) * bb].copy_from_slice(c);
                            }
                        }
                        b.freeze()
                    }
                }
            }
        };
        if wrote {
            self.written(ctx, &req.owner, req.lun, req.lba, req.blocks);
        }
        self.finish_owner(ctx, req.owner, Ok(result));
    }

    fn finish_owner(&mut self, ctx: &mut Fc4Ctx<'_>, owner: Owner, r: VResult) {
        match owner {
            Owner::Host(cmd) => self.answer(&cmd, r),
            Owner::Op(op) => self.op_io_done(ctx, op, r),
            Owner::Paired(host) => self.paired_landed(host, r),
            Owner::PairCopy { token, lba, to } => self.pair_copy_read(ctx, token, lba, to, r),
            Owner::PairCopyWrite(token) => self.pairs.completed(token, r.is_ok()),
        }
    }

    // ---- destage ---------------------------------------------------------------------------

    /// Starts destaging dirty runs, up to [`DESTAGE_DEPTH`] at once.
    pub(crate) fn destage(&mut self, ctx: &mut Fc4Ctx<'_>) {
        while self.destages.len() < DESTAGE_DEPTH {
            let Some(run) = self.cache.next_dirty_run(None, CHUNK_ENTRIES) else {
                break;
            };
            let id = self.next_id();
            let lun = run.lun;
            let bb = self.block_bytes(lun);
            let blocks = run.blocks.len() as u64;
            let mut d = DestageRun {
                run,
                outstanding: 0,
                ok: true,
            };
            let pieces = self
                .tm
                .translate(lun, d.run.lba, blocks)
                .unwrap_or_default();
            // One buffer for the run (its blocks may come from several host writes).
            let mut buf = BytesMut::with_capacity(bytes_of(0, blocks, bb).end);
            for b in &d.run.blocks {
                buf.extend_from_slice(b);
            }
            let data = buf.freeze();
            for p in pieces {
                let slice = data.slice(bytes_of(p.offset, p.blocks, bb));
                match self.write_piece(ctx, lun, &p, slice, Waiter::Destage { run: id }) {
                    None => d.outstanding += 1,
                    Some(ok) => d.ok &= ok,
                }
            }
            self.destages.insert(id, d);
            self.destage_done(ctx, id, None);
        }
    }

    fn destage_done(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, ok: Option<bool>) {
        let Some(d) = self.destages.get_mut(&id) else {
            return;
        };
        if let Some(ok) = ok {
            d.outstanding -= 1;
            d.ok &= ok;
        }
        if d.outstanding > 0 {
            return;
        }
        let Some(d) = self.destages.remove(&id) else {
            return;
        };
        if !d.ok {
            warn!(
                lun = d.run.lun,
                lba = d.run.lba,
                "destage failed; the blocks stay dirty"
            );
            self.destage_retry_at.get_or_insert(ctx.now + DESTAGE_RETRY);
        }
        self.cache.destaged(&d.run, d.ok);
        self.answer_syncs();
        // Held writes go once there is room again; a failed destage is retried later.
        if self.cache.dirty_blocks() < self.cfg.cache_blocks.max(1) {
            for cmd in std::mem::take(&mut self.held) {
                self.host_command(ctx, cmd);
            }
        }
        self.kick_ops(ctx);
        if d.ok {
            self.destage(ctx);
        }
    }

    /// Whether a destage could make progress on a range (or it is already clean).
    pub(crate) fn range_clean(&self, lun: u16, lba: u64, blocks: u64) -> bool {
        !self.cache.any_dirty(lun, lba, blocks)
    }

    // ---- the function table --------------------------------------------------------------

    /// Learns a TF row from what discovery read (VPD C0h of the array's LUs).
    fn learn_functions(&mut self, now: Duration, naa: Wwn) {
        let Some(dev) = self.init.device(naa) else {
            return;
        };
        if dev.block_bytes == 0 {
            return; // a stream device: tapes are destinations, not executors
        }
        let Some(path) = dev.paths.iter().find(|p| p.active).or(dev.paths.first()) else {
            return;
        };
        let device = self.device_named(path.target_wwpn);
        let wwnn = self
            .cfg
            .devices
            .iter()
            .find(|d| d.name == device)
            .map_or_else(Wwnn::default, |d| d.wwnn);
        let mut functions = dev.functions.clone();
        if !dev.third_party_copy {
            functions.retain(|f| f != "xcopy");
        }
        self.tf.learn(FunctionRow {
            device,
            wwnn,
            port: path.target_wwpn,
            functions,
            provenance: Provenance::Discovered,
            learned_at: now,
        });
    }

    /// Asks `device` again what it can do (VPD C0h of one of its LUs).
    pub(crate) fn probe_functions(&mut self, ctx: &mut Fc4Ctx<'_>, device: &str) {
        if !self.probing.insert(device.to_string()) {
            return;
        }
        let naa = self
            .init
            .devices()
            .values()
            .filter(|d| d.block_bytes > 0)
            .find(|d| {
                d.paths
                    .first()
                    .is_some_and(|p| self.device_named(p.target_wwpn) == device)
            })
            .map(|d| d.naa);
        let Some(naa) = naa else {
            self.probing.remove(device);
            return;
        };
        let io = self.init.submit(
            ctx,
            naa,
            IoRequest {
                lun: 0,
                cdb: cdb::inquiry(Some(0xC0), 255),
                data_out: Bytes::new(),
                data_in_len: 255,
            },
        );
        self.waiters.insert(
            io,
            Waiter::Probe {
                device: device.to_string(),
            },
        );
    }

    fn probe_done(&mut self, now: Duration, device: String, r: &IoResult) {
        self.probing.remove(&device);
        if !ok(r) {
            return;
        }
        let functions = parse::vpd_c0_functions(&r.data_in);
        if let Some(row) = self.tf.row(&device).cloned() {
            info!(%device, ?functions, "TF row refreshed");
            self.tf.learn(FunctionRow {
                functions,
                provenance: Provenance::Discovered,
                learned_at: now,
                ..row
            });
        }
    }

    /// Auto-mapping: every discovered disk LU no extent uses becomes a virtual LU.
    fn auto_map(&mut self, naa: Wwn) {
        if !self.cfg.auto_map || self.tm.users_of(naa).next().is_some() {
            return;
        }
        let Some(real) = self.real_lu(naa) else {
            return;
        };
        let lun = (0u16..)
            .find(|l| self.tm.lu(*l).is_none())
            .unwrap_or(u16::MAX);
        let name = self.lu_name(naa);
        let lu = VirtualLu {
            lun,
            name,
            naa: crate::tm::virtual_lu_naa(self.cfg.node.wwnn, lun),
            block_bytes: real.block_bytes,
            ack: crate::tm::AckMode::Sync,
            extents: vec![crate::tm::Extent {
                start: 0,
                blocks: real.blocks,
                backing: crate::tm::Backing::External { lu: naa, start: 0 },
            }],
        };
        if let Err(e) = self.map_lu(lu) {
            warn!(%naa, "auto-mapping failed: {e}");
        }
    }

    // ---- plumbing ----------------------------------------------------------------------------

    fn drain_initiator(&mut self, ctx: &mut Fc4Ctx<'_>) {
        loop {
            let mut progressed = false;
            while let Some((io, c)) = self.init.poll_completion() {
                progressed = true;
                self.backend_done(ctx, io, c);
            }
            while let Some(ev) = self.init.poll_event() {
                progressed = true;
                if let InitiatorEvent::PathUp { naa, .. } = ev {
                    // Discovery (at start, or again after an RSCN) read VPD C0h anew.
                    self.learn_functions(ctx.now, naa);
                    self.auto_map(naa);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn backend_done(&mut self, ctx: &mut Fc4Ctx<'_>, io: IoId, c: Completion) {
        let Some(w) = self.waiters.remove(&io) else {
            return;
        };
        match w {
            Waiter::Piece { req, piece } => {
                let Some(r) = self.reqs.get_mut(&req) else {
                    return;
                };
                r.outstanding -= 1;
                if ok(&c.result) {
                    r.parts[piece] = Some(c.result.data_in);
                } else {
                    r.failed.get_or_insert(sense_of(&c.result));
                }
                self.maybe_done(ctx, req);
            }
            Waiter::Destage { run } => self.destage_done(ctx, run, Some(ok(&c.result))),
            Waiter::Op { op, io } => self.op_backend_done(ctx, op, io, c),
            Waiter::Probe { device } => self.probe_done(ctx.now, device, &c.result),
            Waiter::Pair { token } => self.pairs.completed(token, ok(&c.result)),
            Waiter::Manage { id, results } => self.manage_done(ctx, id, results, c),
        }
    }

    fn flush(&mut self, ctx: &mut Fc4Ctx<'_>) {
        self.now = ctx.now;
        loop {
            self.drain_initiator(ctx);
            let mut progressed = false;
            while let Some(cmd) = self.fcp.poll_command() {
                progressed = true;
                self.host_command(ctx, cmd);
            }
            progressed |= self.pump_pairs(ctx);
            if !progressed {
                break;
            }
        }
        while let Some((port, f)) = self.fcp.poll_transmit() {
            if !ctx.send(port, &f) {
                debug!(port, "FCP reply not sent: no cable");
            }
        }
    }

    /// The FC_IDs of the ports of `device`, as the initiator's paths know them.
    fn device_ports(&self, device: &str) -> BTreeSet<FcId> {
        self.init
            .devices()
            .values()
            .flat_map(|d| d.paths.iter())
            .filter(|p| self.device_named(p.target_wwpn) == device)
            .map(|p| p.target)
            .collect()
    }

    /// An RSCN names these addresses: refresh TF for every array behind one of them.
    fn rscn(&mut self, ctx: &mut Fc4Ctx<'_>, affected: &[FcId]) {
        let devices: Vec<String> = self.tf.rows().keys().cloned().collect();
        for d in devices {
            let ports = self.device_ports(&d);
            let hit = affected.iter().any(|a| {
                ports.contains(a)
                    || (a.port() == 0
                        && ports.iter().any(|p| {
                            p.domain() == a.domain() && (a.area() == 0 || p.area() == a.area())
                        }))
            });
            if hit {
                self.probe_functions(ctx, &d);
            }
        }
    }

    /// TB of a new operation copying from `lun`.
    pub(crate) fn new_tb(&self, lun: u16) -> DiffBitmap {
        DiffBitmap::new(self.tm.lu(lun).map_or(0, VirtualLu::blocks))
    }

    /// The cache's dirty blocks (LUN, LBA): acknowledged, not yet on their arrays.
    pub fn dirty_blocks(&self) -> Vec<(u16, u64)> {
        self.cache.dirty_keys()
    }

    /// Resumes the operations waiting for a destage, and paired mirrors with blocks to
    /// copy.
    pub(crate) fn kick_ops(&mut self, ctx: &mut Fc4Ctx<'_>) {
        let waiting: Vec<u64> = self
            .ops
            .values()
            .filter(|o| o.waiting_for_destage() || o.wants_drain())
            .map(|o| o.id)
            .collect();
        for id in waiting {
            self.step_op(ctx, id);
        }
    }
}

impl Fc4Layer for Engine {
    type Admin = EngineAdmin;

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

    fn on_nport_event(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, ev: &NPortEvent) {
        self.init.on_nport_event(ctx, port, ev);
        if let NPortEvent::Rscn { affected } = ev {
            self.rscn(ctx, affected);
        }
        self.flush(ctx);
    }

    fn on_link_down(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32) {
        self.fcp.port_down(port);
        self.init.on_link_down(ctx, port);
        self.flush(ctx);
    }

    fn on_timeout(&mut self, ctx: &mut Fc4Ctx<'_>) {
        self.init.on_timeout(ctx);
        if self.destage_retry_at.is_some_and(|t| t <= ctx.now) {
            self.destage_retry_at = None;
            self.destage(ctx);
        }
        if !self.pairs.is_idle() {
            self.pairs.tick_deferred(ctx.now);
        }
        self.flush(ctx);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        [
            self.init.poll_timeout(),
            self.destage_retry_at,
            self.pairs.poll_timeout(self.now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_admin(&mut self, ctx: &mut Fc4Ctx<'_>, req: EngineAdmin) {
        self.admin(ctx, req);
        self.flush(ctx);
    }
}

/// The bytes of `blocks` blocks from block `offset` of a buffer of `bb`-byte blocks.
fn bytes_of(offset: u64, blocks: u64, bb: usize) -> std::ops::Range<usize> {
    let at = |b: u64| usize::try_from(b).unwrap_or(usize::MAX).saturating_mul(bb);
    at(offset)..at(offset.saturating_add(blocks))
}

/// Table-acquisition data-in.
fn to_json(v: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}
