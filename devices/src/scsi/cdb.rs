//! Command descriptor blocks: one struct per command (SPC-5 §6, SBC-4 §5), each with
//! `parse(&[u8]) -> Result<Self, Sense>` and `encode() -> Bytes`, and [`Command`], which
//! dispatches on the operation code.
//!
//! Parsing checks what can be checked from the CDB alone: length, reserved bits, the
//! NACA bit of the CONTROL byte (not supported) and fields fcsim does not implement.
//! Checks that need the logical unit (LBA past the end, transfer over the block limits)
//! are [`BlockRange::check`], called by the target.
//!
//! Errors are [`Sense`] values (ILLEGAL REQUEST with INVALID FIELD IN CDB and a field
//! pointer); nothing here panics on any input.

use bytes::{BufMut, Bytes, BytesMut};

use super::sense::Sense;
use super::{be16, be32, be64};

/// Operation codes (SPC-5 annex D / SBC-4 table 16).
pub mod opcode {
    /// TEST UNIT READY.
    pub const TEST_UNIT_READY: u8 = 0x00;
    /// REQUEST SENSE.
    pub const REQUEST_SENSE: u8 = 0x03;
    /// INQUIRY.
    pub const INQUIRY: u8 = 0x12;
    /// MODE SENSE(6).
    pub const MODE_SENSE_6: u8 = 0x1A;
    /// READ CAPACITY(10).
    pub const READ_CAPACITY_10: u8 = 0x25;
    /// READ(10).
    pub const READ_10: u8 = 0x28;
    /// WRITE(10).
    pub const WRITE_10: u8 = 0x2A;
    /// SYNCHRONIZE CACHE(10).
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    /// MODE SENSE(10).
    pub const MODE_SENSE_10: u8 = 0x5A;
    /// Third-party copy OUT: EXTENDED COPY (LID1) is service action 00h.
    pub const EXTENDED_COPY: u8 = 0x83;
    /// Third-party copy IN: RECEIVE COPY RESULTS (LID1).
    pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
    /// READ(16).
    pub const READ_16: u8 = 0x88;
    /// WRITE(16).
    pub const WRITE_16: u8 = 0x8A;
    /// SYNCHRONIZE CACHE(16).
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    /// WRITE SAME(16).
    pub const WRITE_SAME_16: u8 = 0x93;
    /// SERVICE ACTION IN(16): READ CAPACITY(16) is service action 10h.
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    /// REPORT LUNS.
    pub const REPORT_LUNS: u8 = 0xA0;
}

/// SERVICE ACTION IN(16) service action of READ CAPACITY(16).
pub const SA_READ_CAPACITY_16: u8 = 0x10;

// ---- helpers ---------------------------------------------------------------------

fn check_len(cdb: &[u8], n: usize) -> Result<(), Sense> {
    if cdb.len() < n {
        Err(Sense::invalid_field_in_cdb(0, None))
    } else {
        Ok(())
    }
}

/// Rejects set bits of `mask` in byte `at`, pointing at the highest offending bit.
fn reserved(cdb: &[u8], at: usize, mask: u8) -> Result<(), Sense> {
    let bad = super::byte(cdb, at) & mask;
    if bad == 0 {
        Ok(())
    } else {
        let bit = 7 - u8::try_from(bad.leading_zeros()).unwrap_or(0);
        Err(Sense::invalid_field_in_cdb(ptr(at), Some(bit)))
    }
}

fn reserved_bytes(cdb: &[u8], range: std::ops::Range<usize>) -> Result<(), Sense> {
    for at in range {
        if super::byte(cdb, at) != 0 {
            return Err(Sense::invalid_field_in_cdb(ptr(at), None));
        }
    }
    Ok(())
}

/// CONTROL byte (SAM-5 §5.2): NACA (bit 2) is not supported; vendor bits 7:6 and the
/// obsolete LINK/FLAG bits are ignored.
fn control(cdb: &[u8], at: usize) -> Result<(), Sense> {
    reserved(cdb, at, 0x04)
}

fn ptr(at: usize) -> u16 {
    u16::try_from(at).unwrap_or(u16::MAX)
}

fn bit(b: u8, n: u8) -> bool {
    b & (1 << n) != 0
}

fn cdb_bytes(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

/// A block range named by a CDB, with the offset of its transfer-length field so that
/// limit violations point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    /// First logical block.
    pub lba: u64,
    /// Number of logical blocks (0 is allowed and moves no data).
    pub blocks: u64,
    /// CDB byte offset of the TRANSFER LENGTH / NUMBER OF BLOCKS field.
    pub length_field: u16,
}

impl BlockRange {
    /// SBC-4 §4.5: LBA + length past the capacity → LOGICAL BLOCK ADDRESS OUT OF RANGE
    /// (checked first); a length over `max_blocks` (block limits VPD) → INVALID FIELD
    /// IN CDB pointing at the length field.
    pub fn check(&self, capacity_blocks: u64, max_blocks: u64) -> Result<(), Sense> {
        let end = self.lba.checked_add(self.blocks);
        if self.lba >= capacity_blocks || end.is_none_or(|e| e > capacity_blocks) {
            return Err(Sense::lba_out_of_range());
        }
        if self.blocks > max_blocks {
            return Err(Sense::invalid_field_in_cdb(self.length_field, None));
        }
        Ok(())
    }
}

// ---- SPC-5 commands --------------------------------------------------------------

/// TEST UNIT READY (SPC-5 §6.47).
///
/// ```text
/// byte 0    OPERATION CODE (00h)
/// bytes 1-4 reserved
/// byte 5    CONTROL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestUnitReady;

impl TestUnitReady {
    /// Parses a TEST UNIT READY CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 6)?;
        reserved_bytes(cdb, 1..5)?;
        control(cdb, 5)?;
        Ok(TestUnitReady)
    }
    /// Encodes the 6-byte CDB.
    pub fn encode(&self) -> Bytes {
        cdb_bytes(&[opcode::TEST_UNIT_READY, 0, 0, 0, 0, 0])
    }
}

/// INQUIRY (SPC-5 §6.7).
///
/// ```text
/// byte 0    OPERATION CODE (12h)
/// byte 1    reserved(7:2) | obsolete CMDDT(1) | EVPD(0)
/// byte 2    PAGE CODE (must be 0 when EVPD = 0)
/// bytes 3-4 ALLOCATION LENGTH
/// byte 5    CONTROL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inquiry {
    /// EVPD: return the VPD page `page_code` instead of standard data.
    pub evpd: bool,
    /// VPD page requested (0 when `evpd` is false).
    pub page_code: u8,
    /// Maximum bytes the initiator accepts.
    pub allocation_length: u16,
}

impl Inquiry {
    /// Parses an INQUIRY CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 6)?;
        reserved(cdb, 1, 0xFE)?;
        control(cdb, 5)?;
        let evpd = bit(cdb[1], 0);
        if !evpd && cdb[2] != 0 {
            return Err(Sense::invalid_field_in_cdb(2, None));
        }
        Ok(Inquiry {
            evpd,
            page_code: cdb[2],
            allocation_length: be16(cdb, 3),
        })
    }
    /// Encodes the 6-byte CDB.
    pub fn encode(&self) -> Bytes {
        let [hi, lo] = self.allocation_length.to_be_bytes();
        cdb_bytes(&[
            opcode::INQUIRY,
            u8::from(self.evpd),
            self.page_code,
            hi,
            lo,
            0,
        ])
    }
}

/// REPORT LUNS (SPC-5 §6.33).
///
/// ```text
/// byte 0     OPERATION CODE (A0h)
/// byte 1     reserved
/// byte 2     SELECT REPORT (00h, 01h, 02h supported)
/// bytes 3-5  reserved
/// bytes 6-9  ALLOCATION LENGTH
/// byte 10    reserved
/// byte 11    CONTROL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLuns {
    /// SELECT REPORT: 00h all LUNs with addressing, 01h well-known only, 02h all.
    pub select_report: u8,
    /// Maximum bytes the initiator accepts.
    pub allocation_length: u32,
}

impl ReportLuns {
    /// Parses a REPORT LUNS CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 12)?;
        reserved_bytes(cdb, 1..2)?;
        if cdb[2] > 0x02 {
            return Err(Sense::invalid_field_in_cdb(2, None));
        }
        reserved_bytes(cdb, 3..6)?;
        reserved_bytes(cdb, 10..11)?;
        control(cdb, 11)?;
        Ok(ReportLuns {
            select_report: cdb[2],
            allocation_length: be32(cdb, 6),
        })
    }
    /// Encodes the 12-byte CDB.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(12);
        b.put_u8(opcode::REPORT_LUNS);
        b.put_u8(0);
        b.put_u8(self.select_report);
        b.put_bytes(0, 3);
        b.put_u32(self.allocation_length);
        b.put_u8(0);
        b.put_u8(0);
        b.freeze()
    }
}

/// REQUEST SENSE (SPC-5 §6.39).
///
/// ```text
/// byte 0    OPERATION CODE (03h)
/// byte 1    reserved(7:1) | DESC(0)  (descriptor format not supported)
/// bytes 2-3 reserved
/// byte 4    ALLOCATION LENGTH
/// byte 5    CONTROL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSense {
    /// Maximum bytes the initiator accepts.
    pub allocation_length: u8,
}

impl RequestSense {
    /// Parses a REQUEST SENSE CDB; DESC = 1 is rejected (fixed format only).
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 6)?;
        reserved(cdb, 1, 0xFF)?;
        reserved_bytes(cdb, 2..4)?;
        control(cdb, 5)?;
        Ok(RequestSense {
            allocation_length: cdb[4],
        })
    }
    /// Encodes the 6-byte CDB.
    pub fn encode(&self) -> Bytes {
        cdb_bytes(&[opcode::REQUEST_SENSE, 0, 0, 0, self.allocation_length, 0])
    }
}

/// PC field of MODE SENSE (SPC-5 §6.13.2, table 101).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    /// 00b current values.
    Current,
    /// 01b changeable values (a mask).
    Changeable,
    /// 10b default values.
    Default,
    /// 11b saved values (not supported: SAVING PARAMETERS NOT SUPPORTED).
    Saved,
}

impl PageControl {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => PageControl::Current,
            1 => PageControl::Changeable,
            2 => PageControl::Default,
            _ => PageControl::Saved,
        }
    }
    fn bits(self) -> u8 {
        match self {
            PageControl::Current => 0,
            PageControl::Changeable => 1,
            PageControl::Default => 2,
            PageControl::Saved => 3,
        }
    }
}

/// Mode page codes fcsim returns.
pub mod mode_page {
    /// Caching mode page (SBC-4 §6.5.5).
    pub const CACHING: u8 = 0x08;
    /// Control mode page (SPC-5 §7.5.8).
    pub const CONTROL: u8 = 0x0A;
    /// Return all pages.
    pub const ALL: u8 = 0x3F;
}

/// MODE SENSE(6) (SPC-5 §6.13).
///
/// ```text
/// byte 0 OPERATION CODE (1Ah)
/// byte 1 reserved(7:4) | DBD(3) | reserved(2:0)
/// byte 2 PC(7:6) | PAGE CODE(5:0)
/// byte 3 SUBPAGE CODE
/// byte 4 ALLOCATION LENGTH
/// byte 5 CONTROL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSense6 {
    /// DBD: disable block descriptors.
    pub dbd: bool,
    /// Which values to return.
    pub pc: PageControl,
    /// Page requested (3Fh = all).
    pub page_code: u8,
    /// Subpage requested (00h; FFh with page 3Fh = all subpages).
    pub subpage_code: u8,
    /// Maximum bytes the initiator accepts.
    pub allocation_length: u8,
}

impl ModeSense6 {
    /// Parses a MODE SENSE(6) CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 6)?;
        reserved(cdb, 1, 0xF7)?;
        control(cdb, 5)?;
        Ok(ModeSense6 {
            dbd: bit(cdb[1], 3),
            pc: PageControl::from_bits(cdb[2] >> 6),
            page_code: cdb[2] & 0x3F,
            subpage_code: cdb[3],
            allocation_length: cdb[4],
        })
    }
    /// Encodes the 6-byte CDB.
    pub fn encode(&self) -> Bytes {
        cdb_bytes(&[
            opcode::MODE_SENSE_6,
            if self.dbd { 0x08 } else { 0 },
            (self.pc.bits() << 6) | (self.page_code & 0x3F),
            self.subpage_code,
            self.allocation_length,
            0,
        ])
    }
}

/// MODE SENSE(10) (SPC-5 §6.14).
///
/// ```text
/// byte 0    OPERATION CODE (5Ah)
/// byte 1    reserved(7:5) | LLBAA(4) | DBD(3) | reserved(2:0)
/// byte 2    PC(7:6) | PAGE CODE(5:0)
/// byte 3    SUBPAGE CODE
/// bytes 4-6 reserved
/// bytes 7-8 ALLOCATION LENGTH
/// byte 9    CONTROL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSense10 {
    /// LLBAA: long LBA block descriptors accepted.
    pub llbaa: bool,
    /// DBD: disable block descriptors.
    pub dbd: bool,
    /// Which values to return.
    pub pc: PageControl,
    /// Page requested (3Fh = all).
    pub page_code: u8,
    /// Subpage requested.
    pub subpage_code: u8,
    /// Maximum bytes the initiator accepts.
    pub allocation_length: u16,
}

impl ModeSense10 {
    /// Parses a MODE SENSE(10) CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 10)?;
        reserved(cdb, 1, 0xE7)?;
        reserved_bytes(cdb, 4..7)?;
        control(cdb, 9)?;
        Ok(ModeSense10 {
            llbaa: bit(cdb[1], 4),
            dbd: bit(cdb[1], 3),
            pc: PageControl::from_bits(cdb[2] >> 6),
            page_code: cdb[2] & 0x3F,
            subpage_code: cdb[3],
            allocation_length: be16(cdb, 7),
        })
    }
    /// Encodes the 10-byte CDB.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(10);
        b.put_u8(opcode::MODE_SENSE_10);
        b.put_u8(if self.llbaa { 0x10 } else { 0 } | if self.dbd { 0x08 } else { 0 });
        b.put_u8((self.pc.bits() << 6) | (self.page_code & 0x3F));
        b.put_u8(self.subpage_code);
        b.put_bytes(0, 3);
        b.put_u16(self.allocation_length);
        b.put_u8(0);
        b.freeze()
    }
}

/// EXTENDED COPY (LID1) (SPC-5 §6.5; SPC-4 §6.3; LIO `target_do_xcopy`).
///
/// ```text
/// byte 0      OPERATION CODE (83h)
/// byte 1      reserved(7:5) | SERVICE ACTION(4:0) = 00h (LID1)
/// bytes 2-9   reserved
/// bytes 10-13 PARAMETER LIST LENGTH
/// byte 14     reserved
/// byte 15     CONTROL
/// ```
///
/// Service action 01h (EXTENDED COPY LID4) is rejected with INVALID FIELD IN CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedCopy {
    /// Bytes of parameter list ([`super::xcopy::ParameterList`]) in the data-out.
    pub parameter_list_length: u32,
}

impl ExtendedCopy {
    /// Parses an EXTENDED COPY (LID1) CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 16)?;
        reserved(cdb, 1, 0xE0)?;
        if cdb[1] & 0x1F != 0 {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)));
        }
        reserved_bytes(cdb, 2..10)?;
        reserved_bytes(cdb, 14..15)?;
        control(cdb, 15)?;
        Ok(ExtendedCopy {
            parameter_list_length: be32(cdb, 10),
        })
    }
    /// Encodes the 16-byte CDB.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_u8(opcode::EXTENDED_COPY);
        b.put_bytes(0, 9);
        b.put_u32(self.parameter_list_length);
        b.put_u8(0);
        b.put_u8(0);
        b.freeze()
    }
}

/// RECEIVE COPY RESULTS service actions fcsim implements (SPC-4 §6.18, table 173).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcrServiceAction {
    /// 00h COPY STATUS.
    CopyStatus,
    /// 03h OPERATING PARAMETERS.
    OperatingParameters,
}

impl RcrServiceAction {
    /// The SERVICE ACTION code.
    pub fn code(self) -> u8 {
        match self {
            RcrServiceAction::CopyStatus => 0x00,
            RcrServiceAction::OperatingParameters => 0x03,
        }
    }
}

/// RECEIVE COPY RESULTS (LID1) (SPC-4 §6.18; SPC-5 §6.22–6.24 RECEIVE COPY STATUS /
/// OPERATING PARAMETERS LID1).
///
/// ```text
/// byte 0      OPERATION CODE (84h)
/// byte 1      reserved(7:5) | SERVICE ACTION(4:0): 00h COPY STATUS, 03h OPERATING PARAMETERS
/// byte 2      LIST IDENTIFIER (COPY STATUS only)
/// bytes 3-9   reserved
/// bytes 10-13 ALLOCATION LENGTH
/// byte 14     reserved
/// byte 15     CONTROL
/// ```
///
/// Service actions 01h RECEIVE DATA and 04h FAILED SEGMENT DETAILS are rejected with
/// INVALID FIELD IN CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveCopyResults {
    /// Which report.
    pub service_action: RcrServiceAction,
    /// The EXTENDED COPY list identifier asked about.
    pub list_id: u8,
    /// Maximum bytes the initiator accepts.
    pub allocation_length: u32,
}

impl ReceiveCopyResults {
    /// Parses a RECEIVE COPY RESULTS CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 16)?;
        reserved(cdb, 1, 0xE0)?;
        let service_action = match cdb[1] & 0x1F {
            0x00 => RcrServiceAction::CopyStatus,
            0x03 => RcrServiceAction::OperatingParameters,
            _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
        };
        reserved_bytes(cdb, 3..10)?;
        reserved_bytes(cdb, 14..15)?;
        control(cdb, 15)?;
        Ok(ReceiveCopyResults {
            service_action,
            list_id: cdb[2],
            allocation_length: be32(cdb, 10),
        })
    }
    /// Encodes the 16-byte CDB.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_u8(opcode::RECEIVE_COPY_RESULTS);
        b.put_u8(self.service_action.code());
        b.put_u8(self.list_id);
        b.put_bytes(0, 7);
        b.put_u32(self.allocation_length);
        b.put_u8(0);
        b.put_u8(0);
        b.freeze()
    }
}

// ---- SBC-4 commands --------------------------------------------------------------

/// READ CAPACITY(10) (SBC-4 §5.20).
///
/// ```text
/// byte 0    OPERATION CODE (25h)
/// byte 1    reserved
/// bytes 2-5 obsolete LOGICAL BLOCK ADDRESS (must be 0)
/// bytes 6-7 reserved
/// byte 8    reserved(7:1) | obsolete PMI(0) (must be 0)
/// byte 9    CONTROL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCapacity10;

impl ReadCapacity10 {
    /// Parses a READ CAPACITY(10) CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 10)?;
        reserved_bytes(cdb, 1..8)?;
        reserved(cdb, 8, 0xFF)?;
        control(cdb, 9)?;
        Ok(ReadCapacity10)
    }
    /// Encodes the 10-byte CDB.
    pub fn encode(&self) -> Bytes {
        cdb_bytes(&[opcode::READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }
}

/// READ CAPACITY(16) (SBC-4 §5.21), SERVICE ACTION IN(16) service action 10h.
///
/// ```text
/// byte 0      OPERATION CODE (9Eh)
/// byte 1      reserved(7:5) | SERVICE ACTION(4:0) = 10h
/// bytes 2-9   obsolete LOGICAL BLOCK ADDRESS (must be 0)
/// bytes 10-13 ALLOCATION LENGTH
/// byte 14     reserved(7:1) | obsolete PMI(0) (must be 0)
/// byte 15     CONTROL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCapacity16 {
    /// Maximum bytes the initiator accepts (the full reply is 32 bytes).
    pub allocation_length: u32,
}

impl ReadCapacity16 {
    /// Parses a READ CAPACITY(16) CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 16)?;
        reserved(cdb, 1, 0xE0)?;
        if cdb[1] & 0x1F != SA_READ_CAPACITY_16 {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)));
        }
        reserved_bytes(cdb, 2..10)?;
        reserved(cdb, 14, 0xFF)?;
        control(cdb, 15)?;
        Ok(ReadCapacity16 {
            allocation_length: be32(cdb, 10),
        })
    }
    /// Encodes the 16-byte CDB.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_u8(opcode::SERVICE_ACTION_IN_16);
        b.put_u8(SA_READ_CAPACITY_16);
        b.put_bytes(0, 8);
        b.put_u32(self.allocation_length);
        b.put_u8(0);
        b.put_u8(0);
        b.freeze()
    }
}

/// Byte 1 of READ/WRITE(10/16): xxPROTECT(7:5) must be 0 (no protection information),
/// DPO(4) and FUA(3) are accepted, bit 2 (RARC / reserved) is accepted and ignored,
/// bits 1:0 (obsolete / reserved) must be 0.
fn rw_flags(cdb: &[u8]) -> Result<(bool, bool), Sense> {
    reserved(cdb, 1, 0xE3)?;
    Ok((bit(cdb[1], 4), bit(cdb[1], 3)))
}

macro_rules! rw10 {
    ($(#[$doc:meta])* $name:ident, $op:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            /// LOGICAL BLOCK ADDRESS of the first block.
            pub lba: u32,
            /// TRANSFER LENGTH in blocks (0 = no data).
            pub blocks: u16,
            /// DPO: disable page out (a cache hint, ignored).
            pub dpo: bool,
            /// FUA: force unit access (writes reach stable storage before GOOD).
            pub fua: bool,
        }

        impl $name {
            /// Parses the 10-byte CDB.
            pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
                check_len(cdb, 10)?;
                let (dpo, fua) = rw_flags(cdb)?;
                reserved(cdb, 6, 0xE0)?;
                control(cdb, 9)?;
                Ok($name { lba: be32(cdb, 2), blocks: be16(cdb, 7), dpo, fua })
            }
            /// Encodes the 10-byte CDB.
            pub fn encode(&self) -> Bytes {
                let mut b = BytesMut::with_capacity(10);
                b.put_u8($op);
                b.put_u8(if self.dpo { 0x10 } else { 0 } | if self.fua { 0x08 } else { 0 });
                b.put_u32(self.lba);
                b.put_u8(0);
                b.put_u16(self.blocks);
                b.put_u8(0);
                b.freeze()
            }
            /// The block range, for [`BlockRange::check`].
            pub fn range(&self) -> BlockRange {
                BlockRange { lba: u64::from(self.lba), blocks: u64::from(self.blocks), length_field: 7 }
            }
        }
    };
}

macro_rules! rw16 {
    ($(#[$doc:meta])* $name:ident, $op:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            /// LOGICAL BLOCK ADDRESS of the first block.
            pub lba: u64,
            /// TRANSFER LENGTH in blocks (0 = no data).
            pub blocks: u32,
            /// DPO: disable page out (a cache hint, ignored).
            pub dpo: bool,
            /// FUA: force unit access (writes reach stable storage before GOOD).
            pub fua: bool,
        }

        impl $name {
            /// Parses the 16-byte CDB.
            pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
                check_len(cdb, 16)?;
                let (dpo, fua) = rw_flags(cdb)?;
                reserved(cdb, 14, 0xC0)?;
                control(cdb, 15)?;
                Ok($name { lba: be64(cdb, 2), blocks: be32(cdb, 10), dpo, fua })
            }
            /// Encodes the 16-byte CDB.
            pub fn encode(&self) -> Bytes {
                let mut b = BytesMut::with_capacity(16);
                b.put_u8($op);
                b.put_u8(if self.dpo { 0x10 } else { 0 } | if self.fua { 0x08 } else { 0 });
                b.put_u64(self.lba);
                b.put_u32(self.blocks);
                b.put_u8(0);
                b.put_u8(0);
                b.freeze()
            }
            /// The block range, for [`BlockRange::check`].
            pub fn range(&self) -> BlockRange {
                BlockRange { lba: self.lba, blocks: u64::from(self.blocks), length_field: 10 }
            }
        }
    };
}

rw10!(
    /// READ(10) (SBC-4 §5.16).
    ///
    /// ```text
    /// byte 0    OPERATION CODE (28h)
    /// byte 1    RDPROTECT(7:5)=0 | DPO(4) | FUA(3) | RARC(2) | obsolete(1:0)
    /// bytes 2-5 LOGICAL BLOCK ADDRESS
    /// byte 6    reserved(7:5) | GROUP NUMBER(4:0)
    /// bytes 7-8 TRANSFER LENGTH
    /// byte 9    CONTROL
    /// ```
    Read10,
    opcode::READ_10
);
rw16!(
    /// READ(16) (SBC-4 §5.17).
    ///
    /// ```text
    /// byte 0      OPERATION CODE (88h)
    /// byte 1      RDPROTECT(7:5)=0 | DPO(4) | FUA(3) | RARC(2) | obsolete(1) | DLD2(0)=0
    /// bytes 2-9   LOGICAL BLOCK ADDRESS
    /// bytes 10-13 TRANSFER LENGTH
    /// byte 14     DLD1(7)=0 | DLD0(6)=0 | GROUP NUMBER(5:0)
    /// byte 15     CONTROL
    /// ```
    Read16,
    opcode::READ_16
);
rw10!(
    /// WRITE(10) (SBC-4 §5.40).
    ///
    /// ```text
    /// byte 0    OPERATION CODE (2Ah)
    /// byte 1    WRPROTECT(7:5)=0 | DPO(4) | FUA(3) | reserved(2) | obsolete(1:0)
    /// bytes 2-5 LOGICAL BLOCK ADDRESS
    /// byte 6    reserved(7:5) | GROUP NUMBER(4:0)
    /// bytes 7-8 TRANSFER LENGTH
    /// byte 9    CONTROL
    /// ```
    Write10,
    opcode::WRITE_10
);
rw16!(
    /// WRITE(16) (SBC-4 §5.42).
    ///
    /// ```text
    /// byte 0      OPERATION CODE (8Ah)
    /// byte 1      WRPROTECT(7:5)=0 | DPO(4) | FUA(3) | reserved(2) | obsolete(1) | DLD2(0)=0
    /// bytes 2-9   LOGICAL BLOCK ADDRESS
    /// bytes 10-13 TRANSFER LENGTH
    /// byte 14     DLD1(7)=0 | DLD0(6)=0 | GROUP NUMBER(5:0)
    /// byte 15     CONTROL
    /// ```
    Write16,
    opcode::WRITE_16
);

/// WRITE SAME(16) (SBC-4 §5.50).
///
/// ```text
/// byte 0      OPERATION CODE (93h)
/// byte 1      WRPROTECT(7:5)=0 | ANCHOR(4)=0 | UNMAP(3)=0 | obsolete(2:1) | NDOB(0)
/// bytes 2-9   LOGICAL BLOCK ADDRESS
/// bytes 10-13 NUMBER OF LOGICAL BLOCKS (0 rejected: WSNZ = 1 in the block limits page)
/// byte 14     reserved(7:6) | GROUP NUMBER(5:0)
/// byte 15     CONTROL
/// ```
///
/// Logical block provisioning is off, so UNMAP and ANCHOR are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSame16 {
    /// First block written.
    pub lba: u64,
    /// Blocks written (≥ 1).
    pub blocks: u32,
    /// NDOB: no data-out buffer; the blocks are filled with zeros.
    pub ndob: bool,
}

impl WriteSame16 {
    /// Parses a WRITE SAME(16) CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 16)?;
        reserved(cdb, 1, 0xFE)?;
        reserved(cdb, 14, 0xC0)?;
        control(cdb, 15)?;
        let blocks = be32(cdb, 10);
        if blocks == 0 {
            return Err(Sense::invalid_field_in_cdb(10, None));
        }
        Ok(WriteSame16 {
            lba: be64(cdb, 2),
            blocks,
            ndob: bit(cdb[1], 0),
        })
    }
    /// Encodes the 16-byte CDB.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_u8(opcode::WRITE_SAME_16);
        b.put_u8(u8::from(self.ndob));
        b.put_u64(self.lba);
        b.put_u32(self.blocks);
        b.put_u8(0);
        b.put_u8(0);
        b.freeze()
    }
    /// The block range, for [`BlockRange::check`].
    pub fn range(&self) -> BlockRange {
        BlockRange {
            lba: self.lba,
            blocks: u64::from(self.blocks),
            length_field: 10,
        }
    }
}

/// SYNCHRONIZE CACHE(10) (SBC-4 §5.32).
///
/// ```text
/// byte 0    OPERATION CODE (35h)
/// byte 1    reserved(7:3) | obsolete SYNC_NV(2) | IMMED(1) | obsolete(0)
/// bytes 2-5 LOGICAL BLOCK ADDRESS
/// byte 6    reserved(7:5) | GROUP NUMBER(4:0)
/// bytes 7-8 NUMBER OF LOGICAL BLOCKS (0 = to the end of the medium)
/// byte 9    CONTROL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynchronizeCache10 {
    /// First block to synchronize.
    pub lba: u32,
    /// Blocks to synchronize (0 = through the last block).
    pub blocks: u16,
    /// IMMED: return GOOD before the flush completes (fcsim flushes anyway).
    pub immed: bool,
}

impl SynchronizeCache10 {
    /// Parses a SYNCHRONIZE CACHE(10) CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 10)?;
        reserved(cdb, 1, 0xF9)?;
        reserved(cdb, 6, 0xE0)?;
        control(cdb, 9)?;
        Ok(SynchronizeCache10 {
            lba: be32(cdb, 2),
            blocks: be16(cdb, 7),
            immed: bit(cdb[1], 1),
        })
    }
    /// Encodes the 10-byte CDB.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(10);
        b.put_u8(opcode::SYNCHRONIZE_CACHE_10);
        b.put_u8(if self.immed { 0x02 } else { 0 });
        b.put_u32(self.lba);
        b.put_u8(0);
        b.put_u16(self.blocks);
        b.put_u8(0);
        b.freeze()
    }
    /// The block range, for [`BlockRange::check`].
    pub fn range(&self) -> BlockRange {
        BlockRange {
            lba: u64::from(self.lba),
            blocks: u64::from(self.blocks),
            length_field: 7,
        }
    }
}

/// SYNCHRONIZE CACHE(16) (SBC-4 §5.33).
///
/// ```text
/// byte 0      OPERATION CODE (91h)
/// byte 1      reserved(7:3) | obsolete SYNC_NV(2) | IMMED(1) | reserved(0)
/// bytes 2-9   LOGICAL BLOCK ADDRESS
/// bytes 10-13 NUMBER OF LOGICAL BLOCKS (0 = to the end of the medium)
/// byte 14     reserved(7:6) | GROUP NUMBER(5:0)
/// byte 15     CONTROL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynchronizeCache16 {
    /// First block to synchronize.
    pub lba: u64,
    /// Blocks to synchronize (0 = through the last block).
    pub blocks: u32,
    /// IMMED: return GOOD before the flush completes (fcsim flushes anyway).
    pub immed: bool,
}

impl SynchronizeCache16 {
    /// Parses a SYNCHRONIZE CACHE(16) CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        check_len(cdb, 16)?;
        reserved(cdb, 1, 0xF9)?;
        reserved(cdb, 14, 0xC0)?;
        control(cdb, 15)?;
        Ok(SynchronizeCache16 {
            lba: be64(cdb, 2),
            blocks: be32(cdb, 10),
            immed: bit(cdb[1], 1),
        })
    }
    /// Encodes the 16-byte CDB.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_u8(opcode::SYNCHRONIZE_CACHE_16);
        b.put_u8(if self.immed { 0x02 } else { 0 });
        b.put_u64(self.lba);
        b.put_u32(self.blocks);
        b.put_u8(0);
        b.put_u8(0);
        b.freeze()
    }
    /// The block range, for [`BlockRange::check`].
    pub fn range(&self) -> BlockRange {
        BlockRange {
            lba: self.lba,
            blocks: u64::from(self.blocks),
            length_field: 10,
        }
    }
}

// ---- dispatch --------------------------------------------------------------------

/// Every command fcsim targets understand, parsed; unknown operation codes are kept as
/// `Unsupported(opcode)` and answered with INVALID COMMAND OPERATION CODE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// TEST UNIT READY.
    TestUnitReady(TestUnitReady),
    /// INQUIRY.
    Inquiry(Inquiry),
    /// REPORT LUNS.
    ReportLuns(ReportLuns),
    /// READ CAPACITY(10).
    ReadCapacity10(ReadCapacity10),
    /// READ CAPACITY(16).
    ReadCapacity16(ReadCapacity16),
    /// READ(10).
    Read10(Read10),
    /// READ(16).
    Read16(Read16),
    /// WRITE(10).
    Write10(Write10),
    /// WRITE(16).
    Write16(Write16),
    /// WRITE SAME(16).
    WriteSame16(WriteSame16),
    /// SYNCHRONIZE CACHE(10).
    SynchronizeCache10(SynchronizeCache10),
    /// SYNCHRONIZE CACHE(16).
    SynchronizeCache16(SynchronizeCache16),
    /// MODE SENSE(6).
    ModeSense6(ModeSense6),
    /// MODE SENSE(10).
    ModeSense10(ModeSense10),
    /// EXTENDED COPY (LID1).
    ExtendedCopy(ExtendedCopy),
    /// RECEIVE COPY RESULTS (COPY STATUS / OPERATING PARAMETERS).
    ReceiveCopyResults(ReceiveCopyResults),
    /// REQUEST SENSE.
    RequestSense(RequestSense),
    /// An operation code fcsim does not implement.
    Unsupported(u8),
}

impl Command {
    /// Parses any CDB. An empty CDB is INVALID FIELD IN CDB; an unknown operation code
    /// is `Ok(Unsupported(op))`; a known one with a bad field is `Err(sense)`.
    pub fn parse(cdb: &[u8]) -> Result<Command, Sense> {
        let Some(&op) = cdb.first() else {
            return Err(Sense::invalid_field_in_cdb(0, None));
        };
        Ok(match op {
            opcode::TEST_UNIT_READY => Command::TestUnitReady(TestUnitReady::parse(cdb)?),
            opcode::REQUEST_SENSE => Command::RequestSense(RequestSense::parse(cdb)?),
            opcode::INQUIRY => Command::Inquiry(Inquiry::parse(cdb)?),
            opcode::MODE_SENSE_6 => Command::ModeSense6(ModeSense6::parse(cdb)?),
            opcode::READ_CAPACITY_10 => Command::ReadCapacity10(ReadCapacity10::parse(cdb)?),
            opcode::READ_10 => Command::Read10(Read10::parse(cdb)?),
            opcode::WRITE_10 => Command::Write10(Write10::parse(cdb)?),
            opcode::SYNCHRONIZE_CACHE_10 => {
                Command::SynchronizeCache10(SynchronizeCache10::parse(cdb)?)
            }
            opcode::MODE_SENSE_10 => Command::ModeSense10(ModeSense10::parse(cdb)?),
            opcode::EXTENDED_COPY => Command::ExtendedCopy(ExtendedCopy::parse(cdb)?),
            opcode::RECEIVE_COPY_RESULTS => {
                Command::ReceiveCopyResults(ReceiveCopyResults::parse(cdb)?)
            }
            opcode::READ_16 => Command::Read16(Read16::parse(cdb)?),
            opcode::WRITE_16 => Command::Write16(Write16::parse(cdb)?),
            opcode::SYNCHRONIZE_CACHE_16 => {
                Command::SynchronizeCache16(SynchronizeCache16::parse(cdb)?)
            }
            opcode::WRITE_SAME_16 => Command::WriteSame16(WriteSame16::parse(cdb)?),
            opcode::SERVICE_ACTION_IN_16 => Command::ReadCapacity16(ReadCapacity16::parse(cdb)?),
            opcode::REPORT_LUNS => Command::ReportLuns(ReportLuns::parse(cdb)?),
            other => Command::Unsupported(other),
        })
    }

    /// Encodes the CDB (an `Unsupported` opcode becomes a 6-byte CDB of zeros after it).
    pub fn encode(&self) -> Bytes {
        match self {
            Command::TestUnitReady(c) => c.encode(),
            Command::Inquiry(c) => c.encode(),
            Command::ReportLuns(c) => c.encode(),
            Command::ReadCapacity10(c) => c.encode(),
            Command::ReadCapacity16(c) => c.encode(),
            Command::Read10(c) => c.encode(),
            Command::Read16(c) => c.encode(),
            Command::Write10(c) => c.encode(),
            Command::Write16(c) => c.encode(),
            Command::WriteSame16(c) => c.encode(),
            Command::SynchronizeCache10(c) => c.encode(),
            Command::SynchronizeCache16(c) => c.encode(),
            Command::ModeSense6(c) => c.encode(),
            Command::ModeSense10(c) => c.encode(),
            Command::ExtendedCopy(c) => c.encode(),
            Command::ReceiveCopyResults(c) => c.encode(),
            Command::RequestSense(c) => c.encode(),
            Command::Unsupported(op) => cdb_bytes(&[*op, 0, 0, 0, 0, 0]),
        }
    }

    /// The operation code.
    pub fn opcode(&self) -> u8 {
        self.encode().first().copied().unwrap_or(0)
    }

    /// PARAMETER LIST LENGTH in bytes for commands that carry a parameter list in the
    /// data-out (EXTENDED COPY); write payloads are [`Command::data_out_blocks`].
    pub fn parameter_list_length(&self) -> Option<u32> {
        match self {
            Command::ExtendedCopy(c) => Some(c.parameter_list_length),
            _ => None,
        }
    }

    /// Blocks of data-out for WRITE(10/16) and WRITE SAME(16) (1 block unless NDOB).
    pub fn data_out_blocks(&self) -> Option<u64> {
        match self {
            Command::Write10(c) => Some(u64::from(c.blocks)),
            Command::Write16(c) => Some(u64::from(c.blocks)),
            Command::WriteSame16(c) => Some(u64::from(!c.ndob)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::{SenseKey, asc};
    use proptest::prelude::*;

    fn expect_field(r: Result<Command, Sense>, byte: u16, bit: Option<u8>) {
        let s = r.expect_err("should be rejected");
        assert_eq!(s.key, SenseKey::ILLEGAL_REQUEST);
        assert_eq!(s.asc_pair(), asc::INVALID_FIELD_IN_CDB);
        let fp = s.field_pointer.expect("field pointer");
        assert!(fp.in_cdb);
        assert_eq!((fp.byte, fp.bit), (byte, bit));
    }

    #[test]
    fn empty_and_short_cdbs() {
        expect_field(Command::parse(&[]), 0, None);
        // SBC-4 §5.17 READ(16) needs 16 bytes.
        expect_field(Command::parse(&[0x88, 0, 0, 0]), 0, None);
        expect_field(Command::parse(&[0x12]), 0, None);
    }

    #[test]
    fn unknown_opcode_is_data() {
        assert_eq!(
            Command::parse(&[0xC5, 0, 0, 0, 0, 0]),
            Ok(Command::Unsupported(0xC5))
        );
    }

    // SPC-5 §6.7 INQUIRY: PAGE CODE must be zero without EVPD; CMDDT is reserved.
    #[test]
    fn inquiry_fields() {
        let c = Inquiry {
            evpd: true,
            page_code: 0x83,
            allocation_length: 0x1234,
        };
        assert_eq!(Command::parse(&c.encode()), Ok(Command::Inquiry(c)));
        expect_field(Command::parse(&[0x12, 0, 0x80, 0, 36, 0]), 2, None);
        expect_field(Command::parse(&[0x12, 0x02, 0, 0, 36, 0]), 1, Some(1));
        // NACA in the CONTROL byte is not supported.
        expect_field(Command::parse(&[0x12, 0, 0, 0, 36, 0x04]), 5, Some(2));
    }

    // SBC-4 §5.17 READ(16) / §5.42 WRITE(16): RDPROTECT/WRPROTECT must be zero.
    #[test]
    fn read_write_round_trip_and_protect_rejected() {
        let r = Read16 {
            lba: 0x0102_0304_0506_0708,
            blocks: 9,
            dpo: false,
            fua: true,
        };
        assert_eq!(Command::parse(&r.encode()), Ok(Command::Read16(r)));
        let w = Write10 {
            lba: 77,
            blocks: 3,
            dpo: true,
            fua: false,
        };
        assert_eq!(Command::parse(&w.encode()), Ok(Command::Write10(w)));
        let mut b = r.encode().to_vec();
        b[1] |= 0x20;
        expect_field(Command::parse(&b), 1, Some(5));
    }

    // SBC-4 §5.50 WRITE SAME(16): UNMAP unsupported, zero length rejected (WSNZ).
    #[test]
    fn write_same_checks() {
        let w = WriteSame16 {
            lba: 5,
            blocks: 4,
            ndob: false,
        };
        assert_eq!(Command::parse(&w.encode()), Ok(Command::WriteSame16(w)));
        let mut b = w.encode().to_vec();
        b[1] |= 0x08;
        expect_field(Command::parse(&b), 1, Some(3));
        let z = WriteSame16 { blocks: 0, ..w }.encode();
        expect_field(Command::parse(&z), 10, None);
    }

    // SBC-4 §5.21 READ CAPACITY(16) is SERVICE ACTION IN(16) SA 10h.
    #[test]
    fn service_action_in_other_sa_rejected() {
        let c = ReadCapacity16 {
            allocation_length: 32,
        };
        assert_eq!(Command::parse(&c.encode()), Ok(Command::ReadCapacity16(c)));
        let mut b = c.encode().to_vec();
        b[1] = 0x12;
        expect_field(Command::parse(&b), 1, Some(4));
    }

    // SPC-4 §6.3: EXTENDED COPY LID1 is SA 00h; LID4 (01h) is not supported.
    #[test]
    fn extended_copy_and_rcr() {
        let x = ExtendedCopy {
            parameter_list_length: 124,
        };
        assert_eq!(Command::parse(&x.encode()), Ok(Command::ExtendedCopy(x)));
        let mut b = x.encode().to_vec();
        b[1] = 0x01;
        expect_field(Command::parse(&b), 1, Some(4));
        let r = ReceiveCopyResults {
            service_action: RcrServiceAction::OperatingParameters,
            list_id: 0,
            allocation_length: 64,
        };
        assert_eq!(
            Command::parse(&r.encode()),
            Ok(Command::ReceiveCopyResults(r))
        );
        let mut b = r.encode().to_vec();
        b[1] = 0x04; // FAILED SEGMENT DETAILS
        expect_field(Command::parse(&b), 1, Some(4));
    }

    #[test]
    fn others_round_trip() {
        let cmds = [
            Command::TestUnitReady(TestUnitReady),
            Command::ReportLuns(ReportLuns {
                select_report: 2,
                allocation_length: 4096,
            }),
            Command::ReadCapacity10(ReadCapacity10),
            Command::Read10(Read10 {
                lba: 1,
                blocks: 2,
                dpo: false,
                fua: false,
            }),
            Command::Write16(Write16 {
                lba: 1 << 40,
                blocks: 1 << 20,
                dpo: false,
                fua: true,
            }),
            Command::SynchronizeCache10(SynchronizeCache10 {
                lba: 0,
                blocks: 0,
                immed: true,
            }),
            Command::SynchronizeCache16(SynchronizeCache16 {
                lba: 9,
                blocks: 10,
                immed: false,
            }),
            Command::ModeSense6(ModeSense6 {
                dbd: true,
                pc: PageControl::Changeable,
                page_code: 0x3F,
                subpage_code: 0,
                allocation_length: 255,
            }),
            Command::ModeSense10(ModeSense10 {
                llbaa: true,
                dbd: false,
                pc: PageControl::Default,
                page_code: 0x08,
                subpage_code: 0,
                allocation_length: 512,
            }),
            Command::RequestSense(RequestSense {
                allocation_length: 18,
            }),
        ];
        for c in cmds {
            assert_eq!(Command::parse(&c.encode()), Ok(c), "{c:?}");
        }
        // SPC-5 §6.33 REPORT LUNS: SELECT REPORT 03h+ unsupported here.
        expect_field(
            Command::parse(&[0xA0, 0, 0x10, 0, 0, 0, 0, 0, 0, 16, 0, 0]),
            2,
            None,
        );
        // SPC-5 §6.39 REQUEST SENSE: descriptor format not supported.
        expect_field(Command::parse(&[0x03, 0x01, 0, 0, 18, 0]), 1, Some(0));
    }

    // SBC-4 §4.5: range checks against capacity and the block limits.
    #[test]
    fn block_range_check() {
        let r = Read16 {
            lba: 98,
            blocks: 2,
            dpo: false,
            fua: false,
        }
        .range();
        assert_eq!(r.check(100, 1000), Ok(()));
        let past = Read16 {
            lba: 99,
            blocks: 2,
            dpo: false,
            fua: false,
        }
        .range();
        assert_eq!(past.check(100, 1000), Err(Sense::lba_out_of_range()));
        let at_end = Read16 {
            lba: 100,
            blocks: 0,
            dpo: false,
            fua: false,
        }
        .range();
        assert_eq!(at_end.check(100, 1000), Err(Sense::lba_out_of_range()));
        let overflow = Read16 {
            lba: u64::MAX,
            blocks: 2,
            dpo: false,
            fua: false,
        }
        .range();
        assert_eq!(overflow.check(100, 1000), Err(Sense::lba_out_of_range()));
        let big = Read16 {
            lba: 0,
            blocks: 64,
            dpo: false,
            fua: false,
        }
        .range();
        assert_eq!(
            big.check(100, 32),
            Err(Sense::invalid_field_in_cdb(10, None))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_cdb_never_panics(b in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(c) = Command::parse(&b) {
                // Whatever parses re-encodes to something that parses the same way.
                if !matches!(c, Command::Unsupported(_)) {
                    prop_assert_eq!(Command::parse(&c.encode()), Ok(c));
                }
            }
        }

        #[test]
        fn known_opcodes_with_random_tails(op in prop::sample::select(vec![
            0x00u8, 0x03, 0x12, 0x1A, 0x25, 0x28, 0x2A, 0x35, 0x5A, 0x83, 0x84, 0x88, 0x8A,
            0x91, 0x93, 0x9E, 0xA0]), tail in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut b = vec![op];
            b.extend(tail);
            let _ = Command::parse(&b);
        }
    }
}
