//! Fixed-format sense data for the tape drive (SPC-4 §4.5.3), with the stream bits
//! FILEMARK, EOM and ILI that SSC-4 adds in byte 2.
//!
//! Self-contained on purpose: the block SCSI core has its own `Sense`; a later merge
//! unifies them. Both encode the same 18-byte layout:
//!
//! ```text
//! byte 0      VALID (bit 7) | RESPONSE CODE 70h (current error)
//! byte 1      obsolete (0)
//! byte 2      FILEMARK (7) | EOM (6) | ILI (5) | reserved (4) | SENSE KEY (3..0)
//! bytes 3..7  INFORMATION (big-endian; the residue for READ/WRITE/SPACE), valid iff VALID
//! byte 7      ADDITIONAL SENSE LENGTH = 10
//! bytes 8..12 COMMAND-SPECIFIC INFORMATION (0)
//! byte 12     ADDITIONAL SENSE CODE (ASC)
//! byte 13     ADDITIONAL SENSE CODE QUALIFIER (ASCQ)
//! byte 14     FIELD REPLACEABLE UNIT CODE (0)
//! bytes 15..18 SKSV | SENSE-KEY SPECIFIC (0)
//! ```

use bytes::Bytes;

/// The sense keys a tape drive reports (SPC-4 §4.5.6, table "Sense key descriptions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseKey {
    /// 0h: no error to report, but FILEMARK/EOM/ILI may carry stream information.
    NoSense,
    /// 2h: the logical unit cannot be accessed (offline, no medium).
    NotReady,
    /// 3h: an unrecovered medium error (e.g. a write error).
    MediumError,
    /// 5h: the CDB or parameter list is invalid.
    IllegalRequest,
    /// 6h: the logical unit was reset or its medium changed.
    UnitAttention,
    /// 8h: blank medium or end-of-data encountered while reading or spacing.
    BlankCheck,
    /// Dh: the write reached the physical end of the partition; data remains unwritten.
    VolumeOverflow,
    /// Any other key, as read from raw sense bytes.
    Other(u8),
}

impl SenseKey {
    /// The 4-bit sense key code.
    pub fn code(self) -> u8 {
        match self {
            SenseKey::NoSense => 0x0,
            SenseKey::NotReady => 0x2,
            SenseKey::MediumError => 0x3,
            SenseKey::IllegalRequest => 0x5,
            SenseKey::UnitAttention => 0x6,
            SenseKey::BlankCheck => 0x8,
            SenseKey::VolumeOverflow => 0xD,
            SenseKey::Other(k) => k & 0x0f,
        }
    }

    /// The key for a 4-bit code.
    pub fn from_code(code: u8) -> Self {
        match code & 0x0f {
            0x0 => SenseKey::NoSense,
            0x2 => SenseKey::NotReady,
            0x3 => SenseKey::MediumError,
            0x5 => SenseKey::IllegalRequest,
            0x6 => SenseKey::UnitAttention,
            0x8 => SenseKey::BlankCheck,
            0xD => SenseKey::VolumeOverflow,
            k => SenseKey::Other(k),
        }
    }
}

/// Additional sense code / qualifier pairs used by the tape drive (SPC-4 Annex D).
pub mod asc {
    /// 00/00 NO ADDITIONAL SENSE INFORMATION.
    pub const NO_ADDITIONAL: (u8, u8) = (0x00, 0x00);
    /// 00/01 FILEMARK DETECTED.
    pub const FILEMARK_DETECTED: (u8, u8) = (0x00, 0x01);
    /// 00/02 END-OF-PARTITION/MEDIUM DETECTED.
    pub const END_OF_PARTITION_MEDIUM: (u8, u8) = (0x00, 0x02);
    /// 00/04 BEGINNING-OF-PARTITION/MEDIUM DETECTED.
    pub const BEGINNING_OF_PARTITION_MEDIUM: (u8, u8) = (0x00, 0x04);
    /// 00/05 END-OF-DATA DETECTED.
    pub const END_OF_DATA: (u8, u8) = (0x00, 0x05);
    /// 04/00 LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE.
    pub const LU_NOT_READY: (u8, u8) = (0x04, 0x00);
    /// 0C/00 WRITE ERROR.
    pub const WRITE_ERROR: (u8, u8) = (0x0C, 0x00);
    /// 1A/00 PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH_ERROR: (u8, u8) = (0x1A, 0x00);
    /// 20/00 INVALID COMMAND OPERATION CODE.
    pub const INVALID_COMMAND_OPERATION_CODE: (u8, u8) = (0x20, 0x00);
    /// 24/00 INVALID FIELD IN CDB.
    pub const INVALID_FIELD_IN_CDB: (u8, u8) = (0x24, 0x00);
    /// 26/00 INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_FIELD_IN_PARAMETER_LIST: (u8, u8) = (0x26, 0x00);
    /// 39/00 SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: (u8, u8) = (0x39, 0x00);
    /// 3A/00 MEDIUM NOT PRESENT.
    pub const MEDIUM_NOT_PRESENT: (u8, u8) = (0x3A, 0x00);
}

/// Sense data of one CHECK CONDITION (or of REQUEST SENSE), in the terms of the fixed
/// format. `information: Some(_)` sets the VALID bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TapeSense {
    /// The sense key (byte 2, bits 3..0).
    pub key: SenseKey,
    /// Additional sense code (byte 12).
    pub asc: u8,
    /// Additional sense code qualifier (byte 13).
    pub ascq: u8,
    /// A filemark was encountered (byte 2, bit 7; SSC-4 READ(6)/SPACE(6)).
    pub filemark: bool,
    /// End- or beginning-of-medium/partition, or early warning (byte 2, bit 6).
    pub eom: bool,
    /// Incorrect length indicator (byte 2, bit 5; SSC-4 READ(6)).
    pub ili: bool,
    /// INFORMATION field (bytes 3..7), the residue; `Some` sets VALID. Negative for an
    /// overlength READ, encoded in two's complement.
    pub information: Option<i32>,
}

impl TapeSense {
    /// Length of the encoded fixed-format sense data.
    pub const LEN: usize = 18;

    /// Sense with `key` and `(asc, ascq)`, no stream bits, no INFORMATION.
    pub fn new(key: SenseKey, (asc, ascq): (u8, u8)) -> Self {
        TapeSense {
            key,
            asc,
            ascq,
            filemark: false,
            eom: false,
            ili: false,
            information: None,
        }
    }

    /// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (20/00).
    pub fn invalid_opcode() -> Self {
        Self::new(
            SenseKey::IllegalRequest,
            asc::INVALID_COMMAND_OPERATION_CODE,
        )
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN CDB (24/00).
    pub fn invalid_field_in_cdb() -> Self {
        Self::new(SenseKey::IllegalRequest, asc::INVALID_FIELD_IN_CDB)
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (26/00).
    pub fn invalid_field_in_parameter_list() -> Self {
        Self::new(
            SenseKey::IllegalRequest,
            asc::INVALID_FIELD_IN_PARAMETER_LIST,
        )
    }

    /// With the INFORMATION field (residue) set, and VALID.
    pub fn with_information(mut self, residue: i64) -> Self {
        // Residues come from 24-bit transfer lengths, so they always fit.
        self.information = Some(i32::try_from(residue).unwrap_or(i32::MAX));
        self
    }

    /// With the FILEMARK bit.
    pub fn with_filemark(mut self) -> Self {
        self.filemark = true;
        self
    }

    /// With the EOM bit.
    pub fn with_eom(mut self) -> Self {
        self.eom = true;
        self
    }

    /// With the ILI bit.
    pub fn with_ili(mut self) -> Self {
        self.ili = true;
        self
    }

    /// The 18-byte fixed-format sense data (response code 70h, current error).
    pub fn encode(&self) -> Bytes {
        let mut b = [0u8; Self::LEN];
        b[0] = 0x70 | if self.information.is_some() { 0x80 } else { 0 };
        b[2] = self.key.code()
            | if self.filemark { 0x80 } else { 0 }
            | if self.eom { 0x40 } else { 0 }
            | if self.ili { 0x20 } else { 0 };
        b[3..7].copy_from_slice(&self.information.unwrap_or(0).to_be_bytes());
        // Sense bytes after byte 7: 18 - 8.
        b[7] = 10;
        b[12] = self.asc;
        b[13] = self.ascq;
        Bytes::copy_from_slice(&b)
    }

    /// Decodes fixed-format sense (70h or 71h). `None` if too short or another format.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < 14 || !matches!(b[0] & 0x7f, 0x70 | 0x71) {
            return None;
        }
        let valid = b[0] & 0x80 != 0;
        Some(TapeSense {
            key: SenseKey::from_code(b[2]),
            asc: b[12],
            ascq: b[13],
            filemark: b[2] & 0x80 != 0,
            eom: b[2] & 0x40 != 0,
            ili: b[2] & 0x20 != 0,
            information: valid.then(|| i32::from_be_bytes([b[3], b[4], b[5], b[6]])),
        })
    }

    /// `(asc, ascq)` as a pair, to compare with the [`asc`] constants.
    pub fn asc_ascq(&self) -> (u8, u8) {
        (self.asc, self.ascq)
    }
}
