//! The tape drive core (DESIGN.md §5 "Tape"): a sans-IO stream device implementing an
//! SSC-4 subset over one medium of data records and filemarks.
//!
//! Start here: [`TapeDrive`] — build it from a [`TapeConfig`] (or an image with
//! [`TapeDrive::from_image`]), feed it CDBs with [`TapeDrive::execute`], read the
//! outcome from [`TapeResult`]. Submodules: [`cdb`] (CDB decoding), [`sense`]
//! (fixed-format sense), `medium` ([`Record`] and the file image layout).
//!
//! **Architecture Invariant:** no IO, clock or randomness here; faults are injected by
//! explicit method calls.

pub mod cdb;
mod config;
mod medium;
pub mod sense;
#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

pub use cdb::{SpaceCode, TapeCommand};
pub use config::{TapeConfig, TapeError};
pub use medium::{IMAGE_MAGIC, IMAGE_VERSION, Record};
pub use sense::{SenseKey, TapeSense, asc};

use config::MAX_BLOCK_LIMIT;
use medium::Medium;

/// SCSI status GOOD.
pub const GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION.
pub const CHECK_CONDITION: u8 = 0x02;

/// Peripheral device type of a sequential-access device (SPC-4 INQUIRY byte 0).
pub const PERIPHERAL_TYPE_SEQUENTIAL: u8 = 0x01;

/// Implementation limit: filemarks one WRITE FILEMARKS(6) may write. A larger COUNT is
/// INVALID FIELD IN CDB (keeps arbitrary CDBs from allocating millions of objects).
pub const MAX_FILEMARKS_PER_COMMAND: u32 = 4096;

/// Outcome of one command: status, sense on CHECK CONDITION, and data-in (which may be
/// non-empty with CHECK CONDITION, e.g. the blocks read before a filemark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapeResult {
    /// [`GOOD`] or [`CHECK_CONDITION`].
    pub status: u8,
    /// Sense data; `Some` exactly when `status` is CHECK CONDITION.
    pub sense: Option<TapeSense>,
    /// Data for the initiator, already cut to the allocation length.
    pub data_in: Bytes,
}

impl TapeResult {
    /// GOOD with `data_in`.
    pub fn good(data_in: Bytes) -> Self {
        TapeResult {
            status: GOOD,
            sense: None,
            data_in,
        }
    }

    /// CHECK CONDITION with `sense` and no data.
    pub fn check(sense: TapeSense) -> Self {
        Self::check_with_data(sense, Bytes::new())
    }

    /// CHECK CONDITION with `sense` and the data transferred before the condition.
    pub fn check_with_data(sense: TapeSense, data_in: Bytes) -> Self {
        TapeResult {
            status: CHECK_CONDITION,
            sense: Some(sense),
            data_in,
        }
    }

    /// Whether the status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == GOOD
    }
}

/// Cuts `data` to an allocation length.
fn cut(data: Bytes, alloc_len: usize) -> Bytes {
    if data.len() > alloc_len {
        data.slice(..alloc_len)
    } else {
        data
    }
}

fn pad(text: &str, width: usize) -> Vec<u8> {
    let mut v: Vec<u8> = text.bytes().take(width).collect();
    v.resize(width, b' ');
    v
}

/// A tape drive with its medium always inserted (it may be unloaded).
///
/// Call order: build with [`TapeDrive::new`] or [`TapeDrive::from_image`]; call
/// [`TapeDrive::execute`] once per SCSI command, in arrival order; inject faults
/// ([`TapeDrive::set_offline`], [`TapeDrive::inject_write_error`]) between commands;
/// read the getters at any time. There are no outputs to poll: every command completes
/// inside `execute`.
#[derive(Debug, Clone)]
pub struct TapeDrive {
    /// Validated configuration.
    config: TapeConfig,
    /// The recorded objects.
    medium: Medium,
    /// Current logical object identifier: index of the next object to read, in
    /// `0..=medium.len()` (== len means at end-of-data).
    position: usize,
    /// Mode block length: 0 = variable, else fixed (≤ `config.max_block_bytes`).
    block_length: u32,
    /// The medium is loaded (LOAD UNLOAD); when false, media access is NOT READY 3A/00.
    loaded: bool,
    /// Injected offline fault; media access is NOT READY 04/00.
    offline: bool,
    /// Injected write error: data bytes still accepted before a WRITE fails.
    write_error_after: Option<u64>,
    /// Sense of the previous command if it ended in CHECK CONDITION, for REQUEST SENSE.
    pending_sense: Option<TapeSense>,
}

impl TapeDrive {
    /// A drive with a blank, loaded medium at beginning-of-partition.
    pub fn new(config: TapeConfig) -> Result<Self, TapeError> {
        config.validate()?;
        Ok(TapeDrive {
            block_length: config.block_length_bytes,
            config,
            medium: Medium::default(),
            position: 0,
            loaded: true,
            offline: false,
            write_error_after: None,
            pending_sense: None,
        })
    }

    /// A drive whose loaded medium is read from an image (layout: `medium` module doc),
    /// positioned at beginning-of-partition.
    pub fn from_image(config: TapeConfig, image: &[u8]) -> Result<Self, TapeError> {
        let mut drive = Self::new(config)?;
        let medium = Medium::from_image(image)?;
        if let Some(cap) = drive.config.capacity_bytes
            && medium.data_bytes() > cap
        {
            return Err(TapeError::ImageExceedsCapacity {
                data_bytes: medium.data_bytes(),
                capacity_bytes: cap,
            });
        }
        drive.medium = medium;
        Ok(drive)
    }

    /// The medium as an image (layout: `medium` module doc).
    pub fn to_image(&self) -> Bytes {
        self.medium.to_image()
    }

    // ---- getters ----

    /// The configuration.
    pub fn config(&self) -> &TapeConfig {
        &self.config
    }

    /// Data records and filemarks in medium order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.medium.records().iter()
    }

    /// Data bytes on the medium (filemarks count 0).
    pub fn bytes_written(&self) -> u64 {
        self.medium.data_bytes()
    }

    /// Current logical object identifier (0 = beginning-of-partition).
    pub fn position(&self) -> u64 {
        self.position as u64
    }

    /// Whether the offline fault is set.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Whether the medium is loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Current mode block length (0 = variable).
    pub fn block_length(&self) -> u32 {
        self.block_length
    }

    /// All data records concatenated, in order.
    pub fn contents(&self) -> Bytes {
        self.medium.contents()
    }

    /// Whether end-of-data lies in the early-warning zone.
    pub fn in_early_warning(&self) -> bool {
        self.config
            .early_warning_at()
            .is_some_and(|ew| self.medium.data_bytes() > ew)
    }

    // ---- fault injection ----

    /// Takes the drive offline (media access → NOT READY, LOGICAL UNIT NOT READY 04/00)
    /// or back online. INQUIRY, REQUEST SENSE, MODE SENSE/SELECT and READ BLOCK LIMITS
    /// keep working.
    pub fn set_offline(&mut self, offline: bool) {
        self.offline = offline;
    }

    /// Arms a one-shot write error: WRITE commands accept `after_bytes` more data bytes;
    /// the WRITE that would cross that point records data up to the point exactly (a
    /// torn record), then fails with MEDIUM ERROR, WRITE ERROR (0C/00).
    pub fn inject_write_error(&mut self, after_bytes: u64) {
        self.write_error_after = Some(after_bytes);
    }

    /// Disarms an injected write error that has not fired.
    pub fn clear_write_error(&mut self) {
        self.write_error_after = None;
    }

    // ---- commands ----

    /// Executes one CDB with its data-out buffer. Never panics on any input.
    pub fn execute(&mut self, cdb: &[u8], data_out: Option<Bytes>) -> TapeResult {
        let result = match TapeCommand::parse(cdb) {
            Err(sense) => TapeResult::check(sense),
            Ok(TapeCommand::RequestSense { desc, alloc_len }) => {
                return self.request_sense(desc, alloc_len);
            }
            Ok(cmd) => match self.check_ready(&cmd) {
                Err(sense) => TapeResult::check(sense),
                Ok(()) => self.run(cmd, data_out),
            },
        };
        self.pending_sense = result.sense;
        result
    }

    fn check_ready(&self, cmd: &TapeCommand) -> Result<(), TapeSense> {
        let needs_online = cmd.is_media_access() || matches!(cmd, TapeCommand::LoadUnload { .. });
        if needs_online && self.offline {
            return Err(TapeSense::new(SenseKey::NotReady, asc::LU_NOT_READY));
        }
        if cmd.is_media_access() && !self.loaded {
            return Err(TapeSense::new(SenseKey::NotReady, asc::MEDIUM_NOT_PRESENT));
        }
        Ok(())
    }

    fn run(&mut self, cmd: TapeCommand, data_out: Option<Bytes>) -> TapeResult {
        match cmd {
            TapeCommand::TestUnitReady => TapeResult::good(Bytes::new()),
            TapeCommand::Rewind => {
                self.position = 0;
                TapeResult::good(Bytes::new())
            }
            TapeCommand::RequestSense { desc, alloc_len } => self.request_sense(desc, alloc_len),
            TapeCommand::ReadBlockLimits => self.read_block_limits(),
            TapeCommand::Read6 {
                fixed,
                sili,
                transfer_length,
            } => self.read6(fixed, sili, transfer_length),
            TapeCommand::Write6 {
                fixed,
                transfer_length,
            } => self.write6(fixed, transfer_length, data_out.unwrap_or_default()),
            TapeCommand::WriteFilemarks6 { count } => self.write_filemarks(count),
            TapeCommand::Space6 { code, count } => self.space6(code, count),
            TapeCommand::Inquiry {
                evpd,
                page,
                alloc_len,
            } => self.inquiry(evpd, page, alloc_len),
            TapeCommand::ModeSelect6 { save, param_len } => {
                self.mode_select6(save, param_len, data_out.unwrap_or_default())
            }
            TapeCommand::ModeSense6 {
                dbd,
                pc,
                page,
                subpage,
                alloc_len,
            } => self.mode_sense6(dbd, pc, page, subpage, alloc_len),
            TapeCommand::LoadUnload { load, .. } => {
                self.loaded = load;
                self.position = 0;
                TapeResult::good(Bytes::new())
            }
            TapeCommand::ReadPosition { .. } => self.read_position(),
            TapeCommand::Unsupported(_) => TapeResult::check(TapeSense::invalid_opcode()),
        }
    }

    /// REQUEST SENSE (SPC-4): the previous command's CHECK CONDITION sense if any, else
    /// the drive's state (NOT READY while offline or unloaded), else NO SENSE. GOOD.
    fn request_sense(&mut self, desc: bool, alloc_len: u8) -> TapeResult {
        if desc {
            let sense = TapeSense::invalid_field_in_cdb();
            self.pending_sense = Some(sense);
            return TapeResult::check(sense);
        }
        let sense = self.pending_sense.take().unwrap_or_else(|| {
            if self.offline {
                TapeSense::new(SenseKey::NotReady, asc::LU_NOT_READY)
            } else if !self.loaded {
                TapeSense::new(SenseKey::NotReady, asc::MEDIUM_NOT_PRESENT)
            } else {
                TapeSense::new(SenseKey::NoSense, asc::NO_ADDITIONAL)
            }
        });
        TapeResult::good(cut(sense.encode(), usize::from(alloc_len)))
    }

    /// READ BLOCK LIMITS (SSC-4 §7.6): 6 bytes — granularity (byte 0, bits 4..0), maximum
    /// block length (bytes 1..4), minimum block length (bytes 4..6).
    fn read_block_limits(&self) -> TapeResult {
        let max = self.config.max_block_bytes.to_be_bytes();
        let data = [0, max[1], max[2], max[3], 0, 1];
        TapeResult::good(Bytes::copy_from_slice(&data))
    }

    /// READ POSITION short form (SSC-4 §7.7), 20 bytes: flags BOP (byte 0 bit 7), EOP
    /// (bit 6), BPU (bit 2, position unknown); partition (byte 1); first and last block
    /// location (bytes 4..8, 8..12, equal: nothing is buffered); blocks and bytes in
    /// buffer (12..16, 16..20, zero).
    fn read_position(&self) -> TapeResult {
        let mut d = [0u8; 20];
        if self.position == 0 {
            d[0] |= 0x80;
        }
        let full = self
            .config
            .capacity_bytes
            .is_some_and(|c| self.medium.data_bytes() >= c);
        if full && self.position == self.medium.len() {
            d[0] |= 0x40;
        }
        match u32::try_from(self.position) {
            Ok(p) => {
                d[4..8].copy_from_slice(&p.to_be_bytes());
                d[8..12].copy_from_slice(&p.to_be_bytes());
            }
            Err(_) => d[0] |= 0x04,
        }
        TapeResult::good(Bytes::copy_from_slice(&d))
    }

    /// READ(6) (SSC-4 §8.4).
    ///
    /// Variable mode reads one record: a shorter record than asked is ILI with a
    /// positive residue (suppressed by SILI), a longer one is ILI with a negative residue
    /// and the data cut to the transfer length. Fixed mode reads blocks of the mode
    /// block length; a block of another length stops with ILI (positioned after it, not
    /// transferred). A filemark stops with NO SENSE, FILEMARK, 00/01, positioned after
    /// it; end-of-data stops with BLANK CHECK, 00/05. The residue is in INFORMATION.
    fn read6(&mut self, fixed: bool, sili: bool, len: u32) -> TapeResult {
        if len == 0 {
            return TapeResult::good(Bytes::new());
        }
        let len64 = i64::from(len);
        if !fixed {
            return match self.medium.get(self.position) {
                None => TapeResult::check(
                    TapeSense::new(SenseKey::BlankCheck, asc::END_OF_DATA).with_information(len64),
                ),
                Some(Record::Filemark) => {
                    self.position += 1;
                    TapeResult::check(
                        TapeSense::new(SenseKey::NoSense, asc::FILEMARK_DETECTED)
                            .with_filemark()
                            .with_information(len64),
                    )
                }
                Some(Record::Data(d)) => {
                    let d = d.clone();
                    self.position += 1;
                    let actual = d.len() as i64;
                    if actual == len64 || (actual < len64 && sili) {
                        TapeResult::good(d)
                    } else {
                        let sense = TapeSense::new(SenseKey::NoSense, asc::NO_ADDITIONAL)
                            .with_ili()
                            .with_information(len64 - actual);
                        TapeResult::check_with_data(sense, cut(d, len as usize))
                    }
                }
            };
        }
        if self.block_length == 0 {
            return TapeResult::check(TapeSense::invalid_field_in_cdb());
        }
        let block = self.block_length as usize;
        let mut out = BytesMut::new();
        let mut blocks: i64 = 0;
        while blocks < len64 {
            let residue = len64 - blocks;
            match self.medium.get(self.position) {
                None => {
                    let sense = TapeSense::new(SenseKey::BlankCheck, asc::END_OF_DATA)
                        .with_information(residue);
                    return TapeResult::check_with_data(sense, out.freeze());
                }
                Some(Record::Filemark) => {
                    self.position += 1;
                    let sense = TapeSense::new(SenseKey::NoSense, asc::FILEMARK_DETECTED)
                        .with_filemark()
                        .with_information(residue);
                    return TapeResult::check_with_data(sense, out.freeze());
                }
                Some(Record::Data(d)) => {
                    self.position += 1;
                    if d.len() != block {
                        let sense = TapeSense::new(SenseKey::NoSense, asc::NO_ADDITIONAL)
                            .with_ili()
                            .with_information(residue);
                        return TapeResult::check_with_data(sense, out.freeze());
                    }
                    out.extend_from_slice(d);
                    blocks += 1;
                }
            }
        }
        TapeResult::good(out.freeze())
    }

    /// WRITE(6) (SSC-4 §8.8). Writing makes the current position end-of-data (later
    /// objects are discarded). Fixed mode writes `len` blocks of the mode block length,
    /// variable mode one record of `len` bytes; the data-out buffer must hold at least
    /// that much (else INVALID FIELD IN CDB, nothing written).
    ///
    /// - Injected write error reached: the data up to the error point is recorded (the
    ///   last record torn), then MEDIUM ERROR, WRITE ERROR 0C/00, INFORMATION = blocks
    ///   (fixed) or bytes (variable) not written.
    /// - Physical end reached: VOLUME OVERFLOW, EOM, 00/02. Choice (SSC-4 §8.8, logical
    ///   blocks are atomic on the medium): in fixed mode the whole blocks that fit are
    ///   written and INFORMATION = blocks not written; in variable mode the record is
    ///   not written and INFORMATION = the transfer length. Position is end-of-data.
    /// - Otherwise written; if end-of-data is then in the early-warning zone, CHECK
    ///   CONDITION with NO SENSE, EOM, 00/02 and INFORMATION = 0 (data IS written).
    fn write6(&mut self, fixed: bool, len: u32, data: Bytes) -> TapeResult {
        if len == 0 {
            return TapeResult::good(Bytes::new());
        }
        let (block, count) = if fixed {
            if self.block_length == 0 {
                return TapeResult::check(TapeSense::invalid_field_in_cdb());
            }
            (self.block_length, len)
        } else {
            if len > self.config.max_block_bytes {
                return TapeResult::check(TapeSense::invalid_field_in_cdb());
            }
            (len, 1)
        };
        let block = block as usize;
        let total = u64::from(count) * block as u64;
        if (data.len() as u64) < total {
            return TapeResult::check(TapeSense::invalid_field_in_cdb());
        }
        self.medium.truncate(self.position);
        let mut cap_room = self
            .config
            .capacity_bytes
            .map_or(u64::MAX, |c| c.saturating_sub(self.medium.data_bytes()));
        let count = count as usize;
        for i in 0..count {
            let b = data.slice(i * block..(i + 1) * block);
            let need = b.len() as u64;
            if let Some(rem) = self.write_error_after
                && need > rem
                && rem <= cap_room
            {
                let torn = usize::try_from(rem).unwrap_or(0);
                self.medium.push(Record::Data(b.slice(..torn)));
                self.write_error_after = None;
                self.position = self.medium.len();
                let residue = if fixed {
                    (count - i) as i64
                } else {
                    (block - torn) as i64
                };
                return TapeResult::check(
                    TapeSense::new(SenseKey::MediumError, asc::WRITE_ERROR)
                        .with_information(residue),
                );
            }
            if need > cap_room {
                self.position = self.medium.len();
                let residue = if fixed {
                    (count - i) as i64
                } else {
                    i64::from(len)
                };
                return TapeResult::check(
                    TapeSense::new(SenseKey::VolumeOverflow, asc::END_OF_PARTITION_MEDIUM)
                        .with_eom()
                        .with_information(residue),
                );
            }
            self.medium.push(Record::Data(b));
            cap_room -= need;
            if let Some(rem) = self.write_error_after.as_mut() {
                *rem -= need;
            }
        }
        self.position = self.medium.len();
        self.early_warning_or_good()
    }

    /// GOOD, or — when end-of-data is in the early-warning zone — CHECK CONDITION with
    /// NO SENSE, EOM, END-OF-PARTITION/MEDIUM DETECTED and a zero residue.
    fn early_warning_or_good(&self) -> TapeResult {
        if self.in_early_warning() {
            TapeResult::check(
                TapeSense::new(SenseKey::NoSense, asc::END_OF_PARTITION_MEDIUM)
                    .with_eom()
                    .with_information(0),
            )
        } else {
            TapeResult::good(Bytes::new())
        }
    }

    /// WRITE FILEMARKS(6) (SSC-4 §8.9). COUNT 0 writes nothing and leaves the medium as
    /// is; otherwise the position becomes end-of-data and the filemarks are appended.
    /// Filemarks take no capacity; in the early-warning zone the command reports EOM
    /// like WRITE(6).
    fn write_filemarks(&mut self, count: u32) -> TapeResult {
        if count == 0 {
            return TapeResult::good(Bytes::new());
        }
        if count > MAX_FILEMARKS_PER_COMMAND {
            return TapeResult::check(TapeSense::invalid_field_in_cdb());
        }
        self.medium.truncate(self.position);
        for _ in 0..count {
            self.medium.push(Record::Filemark);
        }
        self.position = self.medium.len();
        self.early_warning_or_good()
    }

    /// SPACE(6) (SSC-4 §8.6). Forward over blocks, a filemark stops with FILEMARK 00/01
    /// positioned after it; backward, positioned before it (on its BOP side). End-of-data
    /// stops with BLANK CHECK 00/05; beginning-of-partition with NO SENSE, EOM, 00/04.
    /// INFORMATION is the absolute value of the count not spaced.
    fn space6(&mut self, code: SpaceCode, count: i32) -> TapeResult {
        let n = i64::from(count).abs();
        let forward = count > 0;
        let mut done: i64 = 0;
        if code == SpaceCode::EndOfData {
            self.position = self.medium.len();
            return TapeResult::good(Bytes::new());
        }
        while done < n {
            let residue = n - done;
            if forward {
                let Some(r) = self.medium.get(self.position) else {
                    return TapeResult::check(
                        TapeSense::new(SenseKey::BlankCheck, asc::END_OF_DATA)
                            .with_information(residue),
                    );
                };
                let is_fm = r.is_filemark();
                self.position += 1;
                match (code, is_fm) {
                    (SpaceCode::Blocks, true) => {
                        return TapeResult::check(
                            TapeSense::new(SenseKey::NoSense, asc::FILEMARK_DETECTED)
                                .with_filemark()
                                .with_information(residue),
                        );
                    }
                    (SpaceCode::Blocks, false) | (SpaceCode::Filemarks, true) => done += 1,
                    _ => {}
                }
            } else {
                if self.position == 0 {
                    return TapeResult::check(
                        TapeSense::new(SenseKey::NoSense, asc::BEGINNING_OF_PARTITION_MEDIUM)
                            .with_eom()
                            .with_information(residue),
                    );
                }
                let is_fm = self
                    .medium
                    .get(self.position - 1)
                    .is_some_and(Record::is_filemark);
                self.position -= 1;
                match (code, is_fm) {
                    (SpaceCode::Blocks, true) => {
                        return TapeResult::check(
                            TapeSense::new(SenseKey::NoSense, asc::FILEMARK_DETECTED)
                                .with_filemark()
                                .with_information(residue),
                        );
                    }
                    (SpaceCode::Blocks, false) | (SpaceCode::Filemarks, true) => done += 1,
                    _ => {}
                }
            }
        }
        TapeResult::good(Bytes::new())
    }

    /// INQUIRY (SPC-4): standard data (36 bytes, peripheral type 01h, RMB, version 06h
    /// SPC-4, vendor "FCSIM", product "VTAPE") or VPD pages 00h, 80h, 83h.
    fn inquiry(&self, evpd: bool, page: u8, alloc_len: u16) -> TapeResult {
        let t = PERIPHERAL_TYPE_SEQUENTIAL;
        let data: Vec<u8> = if !evpd {
            if page != 0 {
                return TapeResult::check(TapeSense::invalid_field_in_cdb());
            }
            let mut d = vec![t, 0x80, 0x06, 0x02, 31, 0, 0, 0];
            d.extend(pad("FCSIM", 8));
            d.extend(pad("VTAPE", 16));
            d.extend(pad(&self.config.revision, 4));
            d
        } else {
            match page {
                0x00 => vec![t, 0x00, 0, 3, 0x00, 0x80, 0x83],
                0x80 => {
                    let s = self.config.serial.as_bytes();
                    let mut d = vec![t, 0x80, 0, u8::try_from(s.len()).unwrap_or(32)];
                    d.extend_from_slice(s);
                    d
                }
                0x83 => {
                    // One designator: code set 1 (binary), association 0 (LU),
                    // designator type 3 (NAA), 8 bytes.
                    let mut d = vec![t, 0x83, 0, 12, 0x01, 0x03, 0x00, 8];
                    d.extend_from_slice(&self.config.lu_naa.to_bytes());
                    d
                }
                _ => return TapeResult::check(TapeSense::invalid_field_in_cdb()),
            }
        };
        TapeResult::good(cut(Bytes::from(data), usize::from(alloc_len)))
    }

    /// MODE SENSE(6) (SPC-4; SSC-4 block descriptor): header (mode data length, medium
    /// type 0, device-specific 0, block descriptor length 8 or 0) then the block
    /// descriptor (density code, number of blocks 0, block length). Pages 00h and 3Fh
    /// only, with no mode pages; PC 1 (changeable) reports the block length as
    /// changeable (FFFFFFh mask).
    fn mode_sense6(&self, dbd: bool, pc: u8, page: u8, subpage: u8, alloc_len: u8) -> TapeResult {
        let subpage_ok = subpage == 0 || (page == 0x3f && subpage == 0xff);
        if !matches!(page, 0x00 | 0x3f) || !subpage_ok {
            return TapeResult::check(TapeSense::invalid_field_in_cdb());
        }
        let mut d = vec![0u8, 0, 0, 0];
        if !dbd {
            d[3] = 8;
            let (density, bl) = match pc {
                1 => (0, MAX_BLOCK_LIMIT),
                2 => (self.config.density_code, self.config.block_length_bytes),
                _ => (self.config.density_code, self.block_length),
            };
            let bl = bl.to_be_bytes();
            d.extend_from_slice(&[density, 0, 0, 0, 0, bl[1], bl[2], bl[3]]);
        }
        d[0] = u8::try_from(d.len() - 1).unwrap_or(0);
        TapeResult::good(cut(Bytes::from(d), usize::from(alloc_len)))
    }

    /// MODE SELECT(6) (SPC-4): a 4-byte header, then an optional 8-byte block descriptor
    /// whose block length sets fixed (1..=max) or variable (0) mode; density must be 0
    /// or the configured code. Mode pages after it are accepted and ignored. SP is
    /// SAVING PARAMETERS NOT SUPPORTED; a list shorter than its header or descriptor
    /// claims is PARAMETER LIST LENGTH ERROR.
    fn mode_select6(&mut self, save: bool, param_len: u8, data: Bytes) -> TapeResult {
        if save {
            return TapeResult::check(TapeSense::new(
                SenseKey::IllegalRequest,
                asc::SAVING_PARAMETERS_NOT_SUPPORTED,
            ));
        }
        let param_len = usize::from(param_len);
        if param_len == 0 {
            return TapeResult::good(Bytes::new());
        }
        let length_error = || {
            TapeResult::check(TapeSense::new(
                SenseKey::IllegalRequest,
                asc::PARAMETER_LIST_LENGTH_ERROR,
            ))
        };
        if data.len() < param_len || param_len < 4 {
            return length_error();
        }
        let p = &data[..param_len];
        let bd_len = usize::from(p[3]);
        if bd_len == 0 {
            return TapeResult::good(Bytes::new());
        }
        if bd_len != 8 {
            return TapeResult::check(TapeSense::invalid_field_in_parameter_list());
        }
        if p.len() < 12 {
            return length_error();
        }
        let bd = &p[4..12];
        if bd[0] != 0 && bd[0] != self.config.density_code {
            return TapeResult::check(TapeSense::invalid_field_in_parameter_list());
        }
        let bl = (u32::from(bd[5]) << 16) | (u32::from(bd[6]) << 8) | u32::from(bd[7]);
        if bl > self.config.max_block_bytes {
            return TapeResult::check(TapeSense::invalid_field_in_parameter_list());
        }
        self.block_length = bl;
        TapeResult::good(Bytes::new())
    }
}
