//! The sans-IO SCSI target: logical units over [`BlockStore`]s and the command
//! dispatcher (SPC-5 / SBC-4 subset of DESIGN.md §4).
//!
//! Call order:
//! 1. Build [`LogicalUnit`]s from [`LuConfig`] + a store, add them to a [`ScsiTarget`].
//! 2. For every FCP_CMND call [`ScsiTarget::execute`] with the [`Nexus`] (who is asking,
//!    through which port, which LUNs masking lets them see, and which LUs they may name
//!    in a copy) and the data-out bytes. Send back status, sense and data-in.
//! 3. If the result carries a [`CopyJob`] (EXTENDED COPY), the command is not finished:
//!    run the job — locally with [`ScsiTarget::run_local_copy`] / [`run_local`], or
//!    through the fabric — then call [`ScsiTarget::complete_copy`] for the final status.
//! 4. After a node restart call [`ScsiTarget::restart`]; after a LUN map change call
//!    [`ScsiTarget::notify_luns_changed`]: both raise UNIT ATTENTIONs.
//!
//! **Security invariant (CVE-2020-28374):** an EXTENDED COPY may only name LUs for
//! which the caller's `Nexus::may_access` is true; this is checked for every CSCD
//! descriptor before any data moves, and a refused LU looks exactly like a missing one
//! (COPY ABORTED / COPY TARGET DEVICE NOT REACHABLE).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use fcsim_fabric::{Wwn, Wwpn};
use serde::{Deserialize, Serialize};

use super::cdb::{self, BlockRange, Command, PageControl, mode_page};
use super::inquiry::{
    self, BlockLimits, CopyFunction, DeviceIdentification, DeviceType, NaaId, StandardInquiry,
};
use super::sense::{Sense, SenseKey, Status, asc};
use super::xcopy::{
    CopyJob, CopyManagerStatus, CopyOp, CopyOutcome, CopyStatus, CopyTracker, OperatingParameters,
    ParameterList,
};
use super::{DecodeError, clip};
use crate::store::BlockStore;

/// Errors configuring a target (not SCSI outcomes: those are [`Sense`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// A configuration field is invalid.
    #[error("LU {lun}: invalid config: {reason}")]
    InvalidConfig {
        /// The LUN configured.
        lun: u16,
        /// What is wrong.
        reason: String,
    },
    /// The store's geometry differs from the config's.
    #[error(
        "LU {lun}: store has {store_blocks} x {store_block_bytes} B, config says {blocks} x {block_bytes} B"
    )]
    GeometryMismatch {
        /// The LUN configured.
        lun: u16,
        /// Config block size.
        block_bytes: u32,
        /// Config block count.
        blocks: u64,
        /// Store block size.
        store_block_bytes: u32,
        /// Store block count.
        store_blocks: u64,
    },
    /// Two LUs with one LUN.
    #[error("LUN {lun} already exists")]
    DuplicateLun {
        /// The LUN.
        lun: u16,
    },
    /// Two LUs with one NAA designator.
    #[error("NAA {naa} already used by LUN {lun}")]
    DuplicateNaa {
        /// The designator.
        naa: String,
        /// The LU already using it.
        lun: u16,
    },
}

fn default_block_size() -> u32 {
    512
}

/// Configuration of one logical unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuConfig {
    /// Logical unit number (0–16383: single-level peripheral or flat addressing).
    pub lun: u16,
    /// Bytes per logical block (power of two ≥ 512).
    #[serde(default = "default_block_size")]
    pub block_size_bytes: u32,
    /// Capacity in logical blocks (≥ 1).
    pub blocks: u64,
    /// Unit serial number (VPD 80h), printable ASCII, 1–252 characters.
    pub serial: String,
    /// The LU's 8-byte NAA designator (VPD 83h, EXTENDED COPY CSCDs); NAA 2, 3 or 5.
    pub naa: u64,
    /// PRODUCT IDENTIFICATION (≤ 16 characters).
    #[serde(default)]
    pub product: String,
    /// PRODUCT REVISION LEVEL (≤ 4 characters).
    #[serde(default)]
    pub revision: String,
    /// 3PC: the LU accepts EXTENDED COPY and advertises VPD 8Fh.
    #[serde(default)]
    pub third_party_copy: bool,
    /// Every acknowledged write is durable (caching page WCE = 0).
    #[serde(default)]
    pub write_through: bool,
    /// Writes are refused with DATA PROTECT.
    #[serde(default)]
    pub read_only: bool,
    /// Copy functions listed in vendor VPD page C0h.
    #[serde(default)]
    pub copy_functions: Vec<CopyFunction>,
    /// Block limits: MAXIMUM TRANSFER LENGTH in blocks for READ/WRITE (≥ 1).
    pub max_transfer_blocks: u32,
    /// Block limits: MAXIMUM WRITE SAME LENGTH in blocks (≥ 1).
    pub max_write_same_blocks: u32,
    /// Block limits: OPTIMAL TRANSFER LENGTH GRANULARITY in blocks.
    #[serde(default)]
    pub optimal_granularity_blocks: u16,
}

impl Default for LuConfig {
    fn default() -> Self {
        LuConfig {
            lun: 0,
            block_size_bytes: 512,
            blocks: 2048,
            serial: "FCSIM0000".to_string(),
            naa: Wwn::naa5(0x001B32, 1).0,
            product: "VIRTUAL DISK".to_string(),
            revision: "0001".to_string(),
            third_party_copy: false,
            write_through: false,
            read_only: false,
            copy_functions: Vec::new(),
            max_transfer_blocks: 8192,
            max_write_same_blocks: 65536,
            optimal_granularity_blocks: 8,
        }
    }
}

impl LuConfig {
    /// Checks every field's invariant.
    pub fn validate(&self) -> Result<(), TargetError> {
        let bad = |reason: &str| {
            Err(TargetError::InvalidConfig {
                lun: self.lun,
                reason: reason.to_string(),
            })
        };
        if self.lun >= 16384 {
            return bad("lun must be below 16384");
        }
        if self.block_size_bytes < 512 || !self.block_size_bytes.is_power_of_two() {
            return bad("block_size_bytes must be a power of two >= 512");
        }
        if self.blocks == 0
            || self
                .blocks
                .checked_mul(u64::from(self.block_size_bytes))
                .is_none()
        {
            return bad("blocks must be >= 1 and the size must fit 64 bits");
        }
        if self.serial.is_empty()
            || self.serial.len() > 252
            || !self.serial.bytes().all(|c| (0x20..0x7F).contains(&c))
        {
            return bad("serial must be 1-252 printable ASCII characters");
        }
        if NaaId::from_bytes(&self.naa.to_be_bytes()).is_none() {
            return bad("naa must be an NAA 2, 3 or 5 name");
        }
        if self.max_transfer_blocks == 0 || self.max_write_same_blocks == 0 {
            return bad("block limits must be >= 1");
        }
        Ok(())
    }

    /// The NAA designator.
    pub fn naa_id(&self) -> NaaId {
        NaaId::Short(Wwn(self.naa))
    }
}

/// A logical unit: its configuration, its store, and whether it is ready.
#[derive(Debug)]
pub struct LogicalUnit {
    /// Configuration (validated).
    config: LuConfig,
    /// Backing blocks; geometry equals the config's.
    store: Box<dyn BlockStore>,
    /// `false` answers media-access commands with NOT READY (fault injection).
    ready: bool,
}

impl LogicalUnit {
    /// Builds an LU, checking the config and that the store matches it.
    pub fn new(config: LuConfig, store: Box<dyn BlockStore>) -> Result<LogicalUnit, TargetError> {
        config.validate()?;
        if store.block_bytes() != config.block_size_bytes || store.blocks() != config.blocks {
            return Err(TargetError::GeometryMismatch {
                lun: config.lun,
                block_bytes: config.block_size_bytes,
                blocks: config.blocks,
                store_block_bytes: store.block_bytes(),
                store_blocks: store.blocks(),
            });
        }
        Ok(LogicalUnit {
            config,
            store,
            ready: true,
        })
    }
    /// The configuration.
    pub fn config(&self) -> &LuConfig {
        &self.config
    }
    /// The NAA designator.
    pub fn naa(&self) -> NaaId {
        self.config.naa_id()
    }
    /// The store.
    pub fn store(&self) -> &dyn BlockStore {
        &*self.store
    }
    /// The store, mutably (copy engines write through here).
    pub fn store_mut(&mut self) -> &mut dyn BlockStore {
        &mut *self.store
    }
    /// Whether media access is possible.
    /// Replaces the copy functions the LU advertises (VPD C0h); it accepts EXTENDED COPY
    /// (3PC) exactly when `xcopy` is one of them.
    pub fn set_copy_functions(&mut self, functions: Vec<CopyFunction>) {
        self.config.third_party_copy = functions.contains(&CopyFunction::Xcopy);
        self.config.copy_functions = functions;
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }
    /// Marks the LU ready or NOT READY.
    pub fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
    }
    fn device_type(&self) -> DeviceType {
        DeviceType::Disk
    }
}

/// Who is asking and what they may see: one I_T_L nexus plus the masking decisions,
/// which the caller (array node) makes.
pub struct Nexus<'a> {
    /// Initiator port.
    pub initiator: Wwpn,
    /// Target port the command arrived on (VPD 83h target-port designator).
    pub target_port: Wwpn,
    /// Relative target port identifier of that port (≥ 1).
    pub relative_port: u16,
    /// Addressed LUN.
    pub lun: u16,
    /// LUNs this initiator may see through this port (REPORT LUNS; any other LUN is
    /// answered as not present).
    pub visible_luns: &'a [u16],
    /// Whether this initiator may name the LU with this NAA in an EXTENDED COPY.
    pub may_access: &'a dyn Fn(NaaId) -> bool,
}

impl std::fmt::Debug for Nexus<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nexus")
            .field("initiator", &self.initiator)
            .field("target_port", &self.target_port)
            .field("relative_port", &self.relative_port)
            .field("lun", &self.lun)
            .field("visible_luns", &self.visible_luns)
            .finish_non_exhaustive()
    }
}

/// The outcome of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiResult {
    /// SCSI status.
    pub status: Status,
    /// Sense data (with CHECK CONDITION).
    pub sense: Option<Sense>,
    /// Data-in (already clipped to the allocation length).
    pub data_in: Bytes,
    /// Underrun: bytes the allocation/transfer length allowed but were not returned.
    pub residual: u32,
    /// EXTENDED COPY accepted: the command completes only after the caller runs this
    /// job and calls [`ScsiTarget::complete_copy`]; `status` is provisional.
    pub copy_job: Option<CopyJob>,
}

impl ScsiResult {
    /// GOOD with data.
    pub fn good(data_in: Bytes) -> ScsiResult {
        ScsiResult {
            status: Status::GOOD,
            sense: None,
            data_in,
            residual: 0,
            copy_job: None,
        }
    }
    /// GOOD with data clipped to an allocation length.
    fn good_alloc(data: Bytes, alloc: u32) -> ScsiResult {
        let (data_in, residual) = clip(data, alloc);
        ScsiResult {
            residual,
            ..ScsiResult::good(data_in)
        }
    }
    /// CHECK CONDITION with sense.
    pub fn check(sense: Sense) -> ScsiResult {
        ScsiResult {
            status: Status::CHECK_CONDITION,
            sense: Some(sense),
            data_in: Bytes::new(),
            residual: 0,
            copy_job: None,
        }
    }
    /// Whether status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == Status::GOOD
    }
}

/// Blocks moved per store call when copying or filling.
const CHUNK_BLOCKS: u64 = 2048;

/// A SCSI target device: its LUs, unit attentions and copy manager.
#[derive(Debug)]
pub struct ScsiTarget {
    /// LUs by LUN.
    lus: BTreeMap<u16, LogicalUnit>,
    /// Copy manager limits (RECEIVE COPY RESULTS, VPD 8Fh).
    copy_limits: OperatingParameters,
    /// Copy status by (initiator, list identifier).
    tracker: CopyTracker,
    /// I_T_L nexuses that have been told POWER ON, RESET since the last restart.
    power_on_reported: BTreeSet<(Wwpn, u16)>,
    /// Other pending unit attentions per I_T_L nexus.
    pending_ua: BTreeMap<(Wwpn, u16), VecDeque<Sense>>,
    /// Initiators that have sent a command (for REPORTED LUNS DATA HAS CHANGED).
    seen: BTreeSet<Wwpn>,
}

impl Default for ScsiTarget {
    fn default() -> Self {
        ScsiTarget::new(OperatingParameters::default())
    }
}

fn medium(key_asc: super::sense::Asc, lba: u64) -> Sense {
    Sense {
        info: u32::try_from(lba).ok(),
        ..Sense::new(SenseKey::MEDIUM_ERROR, key_asc)
    }
}

impl ScsiTarget {
    /// A target with no LUs and the given copy-manager limits.
    pub fn new(copy_limits: OperatingParameters) -> ScsiTarget {
        ScsiTarget {
            lus: BTreeMap::new(),
            copy_limits,
            tracker: CopyTracker::new(),
            power_on_reported: BTreeSet::new(),
            pending_ua: BTreeMap::new(),
            seen: BTreeSet::new(),
        }
    }

    /// Adds an LU (LUN and NAA must be unique).
    pub fn add_lu(&mut self, lu: LogicalUnit) -> Result<(), TargetError> {
        let lun = lu.config.lun;
        if self.lus.contains_key(&lun) {
            return Err(TargetError::DuplicateLun { lun });
        }
        if let Some(other) = self.lus.values().find(|o| o.naa() == lu.naa()) {
            return Err(TargetError::DuplicateNaa {
                naa: lu.naa().to_string(),
                lun: other.config.lun,
            });
        }
        self.lus.insert(lun, lu);
        Ok(())
    }

    /// Removes an LU.
    pub fn remove_lu(&mut self, lun: u16) -> Option<LogicalUnit> {
        self.lus.remove(&lun)
    }

    /// The LU at `lun`.
    pub fn lu(&self, lun: u16) -> Option<&LogicalUnit> {
        self.lus.get(&lun)
    }

    /// The LU at `lun`, mutably.
    pub fn lu_mut(&mut self, lun: u16) -> Option<&mut LogicalUnit> {
        self.lus.get_mut(&lun)
    }

    /// The LU with NAA designator `naa`.
    pub fn lu_by_naa(&self, naa: NaaId) -> Option<&LogicalUnit> {
        self.lus.values().find(|l| l.naa() == naa)
    }

    /// Every LUN configured, ascending.
    pub fn luns(&self) -> Vec<u16> {
        self.lus.keys().copied().collect()
    }

    /// Copy-manager limits.
    pub fn copy_limits(&self) -> &OperatingParameters {
        &self.copy_limits
    }

    /// The copy tracker (status of EXTENDED COPY list identifiers).
    pub fn copy_tracker(&mut self) -> &mut CopyTracker {
        &mut self.tracker
    }

    /// After a (re)start: every initiator gets POWER ON, RESET once per LU; volatile
    /// copy status is lost.
    pub fn restart(&mut self) {
        self.power_on_reported.clear();
        self.pending_ua.clear();
        self.tracker.clear();
    }

    /// The LUN inventory changed: every initiator seen gets REPORTED LUNS DATA HAS
    /// CHANGED on each LU (SPC-5 §5.14).
    pub fn notify_luns_changed(&mut self) {
        let ua = Sense::new(SenseKey::UNIT_ATTENTION, asc::REPORTED_LUNS_DATA_CHANGED);
        for &ini in &self.seen {
            for &lun in self.lus.keys() {
                let q = self.pending_ua.entry((ini, lun)).or_default();
                if !q.contains(&ua) {
                    q.push_back(ua);
                }
            }
        }
    }

    /// Takes the next unit attention for this nexus, if any.
    fn take_ua(&mut self, initiator: Wwpn, lun: u16) -> Option<Sense> {
        if self.power_on_reported.insert((initiator, lun)) {
            // Power-on supersedes anything queued before it.
            self.pending_ua.remove(&(initiator, lun));
            return Some(Sense::new(SenseKey::UNIT_ATTENTION, asc::POWER_ON_RESET));
        }
        let q = self.pending_ua.get_mut(&(initiator, lun))?;
        let s = q.pop_front();
        if q.is_empty() {
            self.pending_ua.remove(&(initiator, lun));
        }
        s
    }

    /// Executes one command. Never panics, whatever the bytes.
    pub fn execute(
        &mut self,
        nexus: &Nexus<'_>,
        cdb: &[u8],
        data_out: Option<Bytes>,
    ) -> ScsiResult {
        self.seen.insert(nexus.initiator);
        let op = cdb.first().copied();
        let present = nexus.visible_luns.contains(&nexus.lun) && self.lus.contains_key(&nexus.lun);
        let parsed = Command::parse(cdb);

        if !present {
            return match parsed {
                Ok(Command::Inquiry(c)) if !c.evpd => ScsiResult::good_alloc(
                    StandardInquiry::no_lu().encode(),
                    u32::from(c.allocation_length),
                ),
                Ok(Command::ReportLuns(c)) => report_luns(nexus.visible_luns, &c),
                Ok(Command::RequestSense(c)) => ScsiResult::good_alloc(
                    Sense::lu_not_supported().encode(),
                    u32::from(c.allocation_length),
                ),
                Err(s) => ScsiResult::check(s),
                Ok(_) => ScsiResult::check(Sense::lu_not_supported()),
            };
        }

        // Unit attention (SAM-5 §5.14): INQUIRY and REPORT LUNS neither report nor clear
        // it; REQUEST SENSE returns it as data.
        let exempt = matches!(
            op,
            Some(cdb::opcode::INQUIRY) | Some(cdb::opcode::REPORT_LUNS)
        );
        if !exempt && let Some(ua) = self.take_ua(nexus.initiator, nexus.lun) {
            return match parsed {
                Ok(Command::RequestSense(c)) => {
                    ScsiResult::good_alloc(ua.encode(), u32::from(c.allocation_length))
                }
                _ => ScsiResult::check(ua),
            };
        }

        let cmd = match parsed {
            Ok(c) => c,
            Err(s) => return ScsiResult::check(s),
        };
        let Some(lu) = self.lus.get_mut(&nexus.lun) else {
            return ScsiResult::check(Sense::lu_not_supported());
        };
        let media = !matches!(
            cmd,
            Command::Inquiry(_)
                | Command::ReportLuns(_)
                | Command::RequestSense(_)
                | Command::ModeSense6(_)
                | Command::ModeSense10(_)
                | Command::ReceiveCopyResults(_)
                | Command::Unsupported(_)
        );
        if media && !lu.ready {
            return ScsiResult::check(Sense::new(SenseKey::NOT_READY, asc::LU_NOT_READY));
        }

        match cmd {
            Command::TestUnitReady(_) => ScsiResult::good(Bytes::new()),
            Command::Inquiry(c) => inquiry(lu, nexus, &c, &self.copy_limits),
            Command::ReportLuns(c) => report_luns(nexus.visible_luns, &c),
            Command::RequestSense(c) => ScsiResult::good_alloc(
                Sense::new(SenseKey::NO_SENSE, asc::NO_ADDITIONAL_SENSE).encode(),
                u32::from(c.allocation_length),
            ),
            Command::ReadCapacity10(_) => {
                let last = lu.config.blocks - 1;
                let mut b = BytesMut::with_capacity(8);
                b.put_u32(u32::try_from(last).unwrap_or(u32::MAX));
                b.put_u32(lu.config.block_size_bytes);
                ScsiResult::good(b.freeze())
            }
            Command::ReadCapacity16(c) => {
                let mut b = BytesMut::with_capacity(32);
                b.put_u64(lu.config.blocks - 1);
                b.put_u32(lu.config.block_size_bytes);
                b.put_bytes(0, 20);
                ScsiResult::good_alloc(b.freeze(), c.allocation_length)
            }
            Command::Read10(c) => read(lu, c.range()),
            Command::Read16(c) => read(lu, c.range()),
            Command::Write10(c) => write(lu, c.range(), c.fua, data_out),
            Command::Write16(c) => write(lu, c.range(), c.fua, data_out),
            Command::WriteSame16(c) => write_same(lu, &c, data_out),
            Command::SynchronizeCache10(c) => sync_cache(lu, c.range()),
            Command::SynchronizeCache16(c) => sync_cache(lu, c.range()),
            Command::ModeSense6(c) => mode_sense(
                lu,
                ModeReq {
                    ten: false,
                    llbaa: false,
                    dbd: c.dbd,
                    pc: c.pc,
                    page: c.page_code,
                    subpage: c.subpage_code,
                    alloc: u32::from(c.allocation_length),
                },
            ),
            Command::ModeSense10(c) => mode_sense(
                lu,
                ModeReq {
                    ten: true,
                    llbaa: c.llbaa,
                    dbd: c.dbd,
                    pc: c.pc,
                    page: c.page_code,
                    subpage: c.subpage_code,
                    alloc: u32::from(c.allocation_length),
                },
            ),
            Command::ExtendedCopy(c) => {
                if !lu.config.third_party_copy {
                    return ScsiResult::check(Sense::invalid_opcode());
                }
                self.extended_copy(nexus, c.parameter_list_length, data_out)
            }
            Command::ReceiveCopyResults(c) => {
                if !lu.config.third_party_copy {
                    return ScsiResult::check(Sense::invalid_opcode());
                }
                match c.service_action {
                    cdb::RcrServiceAction::OperatingParameters => {
                        ScsiResult::good_alloc(self.copy_limits.encode(), c.allocation_length)
                    }
                    cdb::RcrServiceAction::CopyStatus => {
                        match self.tracker.status(nexus.initiator, c.list_id) {
                            Some(s) => ScsiResult::good_alloc(s.encode(), c.allocation_length),
                            None => ScsiResult::check(Sense::invalid_field_in_cdb(2, None)),
                        }
                    }
                }
            }
            Command::Unsupported(_) => ScsiResult::check(Sense::invalid_opcode()),
        }
    }

    /// EXTENDED COPY (LID1): validate, check access, then hand back a [`CopyJob`].
    fn extended_copy(
        &mut self,
        nexus: &Nexus<'_>,
        len: u32,
        data_out: Option<Bytes>,
    ) -> ScsiResult {
        if len == 0 {
            return ScsiResult::good(Bytes::new()); // SPC-4 §6.3.1: not an error
        }
        let data = data_out.unwrap_or_default();
        let want = usize::try_from(len).unwrap_or(usize::MAX);
        if data.len() < want {
            return ScsiResult::check(Sense::new(
                SenseKey::ILLEGAL_REQUEST,
                asc::PARAMETER_LIST_LENGTH_ERROR,
            ));
        }
        let list = match ParameterList::parse(&data[..want], &self.copy_limits) {
            Ok(l) => l,
            Err(s) => return ScsiResult::check(s),
        };
        // CVE-2020-28374: every CSCD must be addressable by this initiator. A refused
        // LU is reported exactly like a missing one.
        for (i, t) in list.targets.iter().enumerate() {
            if !(nexus.may_access)(t.naa) {
                return ScsiResult::check(Sense::copy_aborted(
                    asc::COPY_TARGET_DEVICE_NOT_REACHABLE,
                ));
            }
            if let Some(lu) = self.lu_by_naa(t.naa) {
                let bb = t.params.block_bytes();
                if bb != 0 && bb != lu.config.block_size_bytes {
                    let at = super::xcopy::HEADER_LEN + i * super::xcopy::CSCD_LEN + 29;
                    return ScsiResult::check(Sense::invalid_field_in_param(
                        u16::try_from(at).unwrap_or(u16::MAX),
                        None,
                    ));
                }
            }
        }
        let job = CopyJob::from_list(nexus.initiator, &list);
        // Ranges on LUs this target owns are checked before anything moves.
        for op in &job.ops {
            let (checks, dst): (Vec<(NaaId, u64, u64)>, Option<NaaId>) = match *op {
                CopyOp::BlockToBlock {
                    src,
                    src_lba,
                    dst,
                    dst_lba,
                    blocks,
                    ..
                } => (
                    vec![(src, src_lba, blocks), (dst, dst_lba, blocks)],
                    Some(dst),
                ),
                CopyOp::BlockToStream {
                    src, lba, blocks, ..
                } => (vec![(src, lba, blocks)], None),
            };
            for (naa, lba, blocks) in checks {
                if let Some(lu) = self.lu_by_naa(naa) {
                    let r = BlockRange {
                        lba,
                        blocks,
                        length_field: 0,
                    };
                    if blocks > 0 && r.check(lu.config.blocks, u64::MAX).is_err() {
                        return ScsiResult::check(Sense::lba_out_of_range());
                    }
                }
            }
            if let Some(lu) = dst.and_then(|d| self.lu_by_naa(d))
                && lu.config.read_only
            {
                return ScsiResult::check(Sense::new(SenseKey::DATA_PROTECT, asc::WRITE_PROTECTED));
            }
        }
        if let Err(s) = self.tracker.begin(&job) {
            return ScsiResult::check(s);
        }
        ScsiResult {
            copy_job: Some(job),
            ..ScsiResult::good(Bytes::new())
        }
    }

    /// Runs `job` against this target's own LUs (the local case).
    pub fn run_local_copy(&mut self, job: &CopyJob) -> CopyOutcome {
        let mut map: BTreeMap<NaaId, &mut LogicalUnit> =
            self.lus.values_mut().map(|l| (l.naa(), l)).collect();
        run_local(job, &mut map)
    }

    /// Finishes an EXTENDED COPY: records the outcome for RECEIVE COPY RESULTS and
    /// returns the command's final status.
    pub fn complete_copy(&mut self, job: &CopyJob, outcome: &CopyOutcome) -> ScsiResult {
        self.tracker.finish(job, outcome);
        match outcome.error {
            Some(s) => ScsiResult::check(s),
            None => ScsiResult::good(Bytes::new()),
        }
    }

    /// Current copy status for RECEIVE COPY RESULTS.
    pub fn copy_status(&self, initiator: Wwpn, list_id: u8) -> Option<CopyStatus> {
        self.tracker.status(initiator, list_id)
    }
}

/// Runs the block→block operations of `job` between LUs found in `lus` (by NAA), in
/// order, stopping at the first failure. Block→stream operations are not local (tapes
/// are reached through the fabric) and fail with COPY TARGET DEVICE NOT REACHABLE.
pub fn run_local(job: &CopyJob, lus: &mut BTreeMap<NaaId, &mut LogicalUnit>) -> CopyOutcome {
    let mut out = CopyOutcome {
        segments_processed: 0,
        bytes: 0,
        error: None,
    };
    for op in &job.ops {
        match copy_block_to_block(op, lus, &mut out.bytes) {
            Ok(()) => out.segments_processed = out.segments_processed.saturating_add(1),
            Err(s) => {
                out.error = Some(s);
                break;
            }
        }
    }
    out
}

fn copy_block_to_block(
    op: &CopyOp,
    lus: &mut BTreeMap<NaaId, &mut LogicalUnit>,
    moved: &mut u64,
) -> Result<(), Sense> {
    let unreachable = || Sense::copy_aborted(asc::COPY_TARGET_DEVICE_NOT_REACHABLE);
    let CopyOp::BlockToBlock {
        src,
        src_lba,
        dst,
        dst_lba,
        blocks,
        ..
    } = *op
    else {
        return Err(unreachable());
    };
    let (sbb, scap) = {
        let s = lus.get(&src).ok_or_else(unreachable)?;
        (s.config.block_size_bytes, s.config.blocks)
    };
    let (dbb, dcap, dro) = {
        let d = lus.get(&dst).ok_or_else(unreachable)?;
        (
            d.config.block_size_bytes,
            d.config.blocks,
            d.config.read_only,
        )
    };
    if sbb != dbb {
        return Err(Sense::copy_aborted(
            asc::INVALID_OPERATION_FOR_COPY_SOURCE_OR_DESTINATION,
        ));
    }
    if dro {
        return Err(Sense::copy_aborted(asc::WRITE_PROTECTED));
    }
    let in_range = |lba: u64, cap: u64| lba.checked_add(blocks).is_some_and(|e| e <= cap);
    if !in_range(src_lba, scap) || !in_range(dst_lba, dcap) {
        return Err(Sense::copy_aborted(asc::LBA_OUT_OF_RANGE));
    }
    let failure = || Sense::copy_aborted(asc::THIRD_PARTY_DEVICE_FAILURE);
    let mut done = 0;
    while done < blocks {
        let n = (blocks - done).min(CHUNK_BLOCKS);
        let data = {
            let s = lus.get(&src).ok_or_else(unreachable)?;
            if !s.ready {
                return Err(failure());
            }
            s.store.read(src_lba + done, n).map_err(|_| failure())?
        };
        let d = lus.get_mut(&dst).ok_or_else(unreachable)?;
        if !d.ready {
            return Err(failure());
        }
        d.store
            .write(dst_lba + done, &data)
            .map_err(|_| failure())?;
        if d.config.write_through {
            d.store.flush().map_err(|_| failure())?;
        }
        *moved += u64::try_from(data.len()).unwrap_or(0);
        done += n;
    }
    Ok(())
}

/// SPC-5 §6.33.2: LUN list; LUNs < 256 use peripheral device addressing, others flat
/// space addressing (SAM-5 §4.7.7).
pub fn encode_lun(lun: u16) -> [u8; 8] {
    let [hi, lo] = lun.to_be_bytes();
    if lun < 256 {
        [0, lo, 0, 0, 0, 0, 0, 0]
    } else {
        [0x40 | (hi & 0x3F), lo, 0, 0, 0, 0, 0, 0]
    }
}

/// Decodes a single-level LUN (peripheral or flat space addressing).
pub fn decode_lun(b: [u8; 8]) -> Option<u16> {
    match b[0] >> 6 {
        0 if b[0] == 0 => Some(u16::from(b[1])),
        1 => Some((u16::from(b[0] & 0x3F) << 8) | u16::from(b[1])),
        _ => None,
    }
}

/// Decodes REPORT LUNS parameter data (initiator side).
pub fn decode_report_luns(b: &[u8]) -> Result<Vec<u16>, DecodeError> {
    super::need("REPORT LUNS data", b, 8)?;
    let n = usize::try_from(super::be32(b, 0)).unwrap_or(usize::MAX) / 8;
    let avail = (b.len() - 8) / 8;
    Ok((0..n.min(avail))
        .filter_map(|i| {
            let e = <[u8; 8]>::try_from(&b[8 + i * 8..16 + i * 8]).ok()?;
            decode_lun(e)
        })
        .collect())
}

fn report_luns(visible: &[u16], c: &cdb::ReportLuns) -> ScsiResult {
    let mut luns: Vec<u16> = if c.select_report == 0x01 {
        Vec::new() // no well-known LUs
    } else {
        visible.to_vec()
    };
    luns.sort_unstable();
    luns.dedup();
    let mut b = BytesMut::with_capacity(8 + 8 * luns.len());
    b.put_u32(u32::try_from(luns.len() * 8).unwrap_or(u32::MAX));
    b.put_u32(0);
    for l in luns {
        b.put_slice(&encode_lun(l));
    }
    ScsiResult::good_alloc(b.freeze(), c.allocation_length)
}

fn inquiry(
    lu: &LogicalUnit,
    nexus: &Nexus<'_>,
    c: &cdb::Inquiry,
    limits: &OperatingParameters,
) -> ScsiResult {
    let dt = lu.device_type();
    let cfg = &lu.config;
    let alloc = u32::from(c.allocation_length);
    if !c.evpd {
        let s = StandardInquiry {
            qualifier: 0,
            device_type: dt,
            removable: false,
            version: inquiry::VERSION_SPC5,
            third_party_copy: cfg.third_party_copy,
            vendor: inquiry::VENDOR.to_string(),
            product: cfg.product.clone(),
            revision: cfg.revision.clone(),
        };
        return ScsiResult::good_alloc(s.encode(), alloc);
    }
    let mut pages = vec![
        inquiry::page::SUPPORTED,
        inquiry::page::UNIT_SERIAL,
        inquiry::page::DEVICE_ID,
        inquiry::page::BLOCK_LIMITS,
        inquiry::page::COPY_FUNCTIONS,
    ];
    if cfg.third_party_copy {
        pages.push(inquiry::page::THIRD_PARTY_COPY);
    }
    let data = match c.page_code {
        inquiry::page::SUPPORTED => inquiry::supported_pages(dt, &pages),
        inquiry::page::UNIT_SERIAL => inquiry::unit_serial(dt, &cfg.serial),
        inquiry::page::DEVICE_ID => {
            DeviceIdentification::for_lu(lu.naa(), nexus.target_port.0, nexus.relative_port)
                .encode(dt)
        }
        inquiry::page::THIRD_PARTY_COPY if cfg.third_party_copy => {
            limits.third_party_copy_page().encode(dt)
        }
        inquiry::page::BLOCK_LIMITS => BlockLimits {
            wsnz: true,
            optimal_granularity_blocks: cfg.optimal_granularity_blocks,
            max_transfer_blocks: cfg.max_transfer_blocks,
            optimal_transfer_blocks: cfg.max_transfer_blocks,
            max_write_same_blocks: u64::from(cfg.max_write_same_blocks),
        }
        .encode(dt),
        inquiry::page::COPY_FUNCTIONS => inquiry::encode_copy_functions(dt, &cfg.copy_functions),
        _ => return ScsiResult::check(Sense::invalid_field_in_cdb(2, None)),
    };
    ScsiResult::good_alloc(data, alloc)
}

fn read(lu: &LogicalUnit, r: BlockRange) -> ScsiResult {
    if let Err(s) = r.check(lu.config.blocks, u64::from(lu.config.max_transfer_blocks)) {
        return ScsiResult::check(s);
    }
    match lu.store.read(r.lba, r.blocks) {
        Ok(d) => ScsiResult::good(d),
        Err(_) => ScsiResult::check(medium(asc::UNRECOVERED_READ_ERROR, r.lba)),
    }
}

fn write(lu: &mut LogicalUnit, r: BlockRange, fua: bool, data_out: Option<Bytes>) -> ScsiResult {
    if lu.config.read_only {
        return ScsiResult::check(Sense::new(SenseKey::DATA_PROTECT, asc::WRITE_PROTECTED));
    }
    if let Err(s) = r.check(lu.config.blocks, u64::from(lu.config.max_transfer_blocks)) {
        return ScsiResult::check(s);
    }
    if r.blocks == 0 {
        return ScsiResult::good(Bytes::new());
    }
    let len =
        usize::try_from(r.blocks * u64::from(lu.config.block_size_bytes)).unwrap_or(usize::MAX);
    let data = data_out.unwrap_or_default();
    if data.len() < len {
        return ScsiResult::check(Sense::new(SenseKey::ABORTED_COMMAND, asc::DATA_PHASE_ERROR));
    }
    if lu.store.write(r.lba, &data.slice(..len)).is_err() {
        return ScsiResult::check(medium(asc::WRITE_ERROR, r.lba));
    }
    if fua && lu.store.flush().is_err() {
        return ScsiResult::check(medium(asc::WRITE_ERROR, r.lba));
    }
    ScsiResult::good(Bytes::new())
}

fn write_same(lu: &mut LogicalUnit, c: &cdb::WriteSame16, data_out: Option<Bytes>) -> ScsiResult {
    if lu.config.read_only {
        return ScsiResult::check(Sense::new(SenseKey::DATA_PROTECT, asc::WRITE_PROTECTED));
    }
    let r = c.range();
    if let Err(s) = r.check(lu.config.blocks, u64::from(lu.config.max_write_same_blocks)) {
        return ScsiResult::check(s);
    }
    let bb = usize::try_from(lu.config.block_size_bytes).unwrap_or(usize::MAX);
    let block = if c.ndob {
        Bytes::from(vec![0u8; bb])
    } else {
        let d = data_out.unwrap_or_default();
        if d.len() < bb {
            return ScsiResult::check(Sense::new(SenseKey::ABORTED_COMMAND, asc::DATA_PHASE_ERROR));
        }
        d.slice(..bb)
    };
    let mut done = 0;
    while done < r.blocks {
        let n = (r.blocks - done).min(CHUNK_BLOCKS);
        let mut buf = BytesMut::with_capacity(bb * usize::try_from(n).unwrap_or(0));
        for _ in 0..n {
            buf.put_slice(&block);
        }
        if lu.store.write(r.lba + done, &buf.freeze()).is_err() {
            return ScsiResult::check(medium(asc::WRITE_ERROR, r.lba + done));
        }
        done += n;
    }
    if lu.config.write_through && lu.store.flush().is_err() {
        return ScsiResult::check(medium(asc::WRITE_ERROR, r.lba));
    }
    ScsiResult::good(Bytes::new())
}

fn sync_cache(lu: &mut LogicalUnit, r: BlockRange) -> ScsiResult {
    // NUMBER OF LOGICAL BLOCKS 0 means "through the last block" (SBC-4 §5.32).
    let blocks = if r.blocks == 0 {
        lu.config.blocks.saturating_sub(r.lba)
    } else {
        r.blocks
    };
    let r = BlockRange { blocks, ..r };
    if let Err(s) = r.check(lu.config.blocks, u64::MAX) {
        return ScsiResult::check(s);
    }
    match lu.store.flush() {
        Ok(()) => ScsiResult::good(Bytes::new()),
        Err(_) => ScsiResult::check(medium(asc::WRITE_ERROR, r.lba)),
    }
}

struct ModeReq {
    ten: bool,
    llbaa: bool,
    dbd: bool,
    pc: PageControl,
    page: u8,
    subpage: u8,
    alloc: u32,
}

/// Caching mode page 08h (SBC-4 §6.5.5): 20 bytes, WCE = byte 2 bit 2.
fn caching_page(lu: &LogicalUnit, changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = mode_page::CACHING;
    p[1] = 0x12;
    if !changeable && !lu.config.write_through {
        p[2] = 0x04; // WCE: write-back cache
    }
    p
}

/// Control mode page 0Ah (SPC-5 §7.5.8): 12 bytes; QUEUE ALGORITHM MODIFIER 1
/// (unrestricted), BUSY TIMEOUT PERIOD FFFFh (unlimited).
fn control_page(changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[0] = mode_page::CONTROL;
    p[1] = 0x0A;
    if !changeable {
        p[3] = 0x10;
        p[8] = 0xFF;
        p[9] = 0xFF;
    }
    p
}

fn mode_sense(lu: &LogicalUnit, m: ModeReq) -> ScsiResult {
    if m.pc == PageControl::Saved {
        return ScsiResult::check(Sense {
            field_pointer: Some(super::sense::FieldPointer {
                in_cdb: true,
                byte: 2,
                bit: Some(7),
            }),
            ..Sense::new(
                SenseKey::ILLEGAL_REQUEST,
                asc::SAVING_PARAMETERS_NOT_SUPPORTED,
            )
        });
    }
    let changeable = m.pc == PageControl::Changeable;
    let all = m.page == mode_page::ALL;
    if !(m.subpage == 0 || (all && m.subpage == 0xFF)) {
        return ScsiResult::check(Sense::invalid_field_in_cdb(3, None));
    }
    let mut pages = Vec::new();
    match m.page {
        mode_page::CACHING => pages.extend(caching_page(lu, changeable)),
        mode_page::CONTROL => pages.extend(control_page(changeable)),
        mode_page::ALL => {
            pages.extend(caching_page(lu, changeable));
            pages.extend(control_page(changeable));
        }
        _ => return ScsiResult::check(Sense::invalid_field_in_cdb(2, Some(5))),
    }
    let long = m.ten && m.llbaa;
    let mut bd = Vec::new();
    if !m.dbd {
        let blocks = lu.config.blocks;
        let bs = lu.config.block_size_bytes;
        if long {
            bd.extend_from_slice(&blocks.to_be_bytes());
            bd.extend_from_slice(&[0; 4]);
            bd.extend_from_slice(&bs.to_be_bytes());
        } else {
            bd.extend_from_slice(&u32::try_from(blocks).unwrap_or(u32::MAX).to_be_bytes());
            let [_, a, b, c] = bs.to_be_bytes();
            bd.extend_from_slice(&[0, a, b, c]);
        }
    }
    // Device-specific parameter (SBC-4 §6.5.1): WP(7), DPOFUA(4).
    let dsp = if lu.config.read_only { 0x80 } else { 0 } | 0x10;
    let mut b = BytesMut::new();
    if m.ten {
        let total = 8 + bd.len() + pages.len();
        b.put_u16(u16::try_from(total - 2).unwrap_or(u16::MAX));
        b.put_u8(0);
        b.put_u8(dsp);
        b.put_u8(u8::from(long));
        b.put_u8(0);
        b.put_u16(u16::try_from(bd.len()).unwrap_or(0));
    } else {
        let total = 4 + bd.len() + pages.len();
        b.put_u8(u8::try_from(total - 1).unwrap_or(u8::MAX));
        b.put_u8(0);
        b.put_u8(dsp);
        b.put_u8(u8::try_from(bd.len()).unwrap_or(0));
    }
    b.put_slice(&bd);
    b.put_slice(&pages);
    ScsiResult::good_alloc(b.freeze(), m.alloc)
}

/// Marks an in-progress copy status (for callers that run jobs in steps).
pub fn copy_in_progress(segments: u16, bytes: u64) -> CopyStatus {
    CopyStatus::new(CopyManagerStatus::InProgress, segments, bytes)
}

#[cfg(test)]
mod tests;
