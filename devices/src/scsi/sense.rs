//! Status codes and fixed-format sense data (SPC-5 §4.4.3, SAM-5 §5.3).
//!
//! A [`Sense`] is a domain value: it is what a target answers for a bad CDB, a bad
//! parameter list, a missing LU or a failed copy. Sense data travels in FCP_RSP
//! (autosense) and is what REQUEST SENSE returns.
//!
//! Fixed format (response code 70h, current error), 18 bytes:
//!
//! ```text
//! byte 0      VALID(7) | RESPONSE CODE (70h)
//! byte 1      obsolete
//! byte 2      FILEMARK(7) EOM(6) ILI(5) | SENSE KEY (3:0)
//! bytes 3-6   INFORMATION (valid when VALID = 1)
//! byte 7      ADDITIONAL SENSE LENGTH (n - 7) = 10
//! bytes 8-11  COMMAND-SPECIFIC INFORMATION
//! byte 12     ADDITIONAL SENSE CODE (ASC)
//! byte 13     ADDITIONAL SENSE CODE QUALIFIER (ASCQ)
//! byte 14     FIELD REPLACEABLE UNIT CODE
//! byte 15     SKSV(7) | C/D(6) | reserved | BPV(3) | BIT POINTER(2:0)
//! bytes 16-17 FIELD POINTER
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::DecodeError;

/// SCSI status byte (SAM-5 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Status(pub u8);

impl Status {
    /// GOOD (00h).
    pub const GOOD: Status = Status(0x00);
    /// CHECK CONDITION (02h): sense data follows.
    pub const CHECK_CONDITION: Status = Status(0x02);
    /// BUSY (08h).
    pub const BUSY: Status = Status(0x08);
    /// RESERVATION CONFLICT (18h).
    pub const RESERVATION_CONFLICT: Status = Status(0x18);
    /// TASK SET FULL (28h).
    pub const TASK_SET_FULL: Status = Status(0x28);
}

/// Sense key, the 4-bit class of a sense condition (SPC-5 §4.4.8, table 49).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SenseKey(pub u8);

impl SenseKey {
    /// NO SENSE (0h).
    pub const NO_SENSE: SenseKey = SenseKey(0x0);
    /// RECOVERED ERROR (1h).
    pub const RECOVERED_ERROR: SenseKey = SenseKey(0x1);
    /// NOT READY (2h).
    pub const NOT_READY: SenseKey = SenseKey(0x2);
    /// MEDIUM ERROR (3h).
    pub const MEDIUM_ERROR: SenseKey = SenseKey(0x3);
    /// HARDWARE ERROR (4h).
    pub const HARDWARE_ERROR: SenseKey = SenseKey(0x4);
    /// ILLEGAL REQUEST (5h).
    pub const ILLEGAL_REQUEST: SenseKey = SenseKey(0x5);
    /// UNIT ATTENTION (6h).
    pub const UNIT_ATTENTION: SenseKey = SenseKey(0x6);
    /// DATA PROTECT (7h).
    pub const DATA_PROTECT: SenseKey = SenseKey(0x7);
    /// BLANK CHECK (8h).
    pub const BLANK_CHECK: SenseKey = SenseKey(0x8);
    /// COPY ABORTED (Ah): an EXTENDED COPY failed.
    pub const COPY_ABORTED: SenseKey = SenseKey(0xA);
    /// ABORTED COMMAND (Bh).
    pub const ABORTED_COMMAND: SenseKey = SenseKey(0xB);
    /// VOLUME OVERFLOW (Dh): a stream device reached end of partition.
    pub const VOLUME_OVERFLOW: SenseKey = SenseKey(0xD);
    /// MISCOMPARE (Eh).
    pub const MISCOMPARE: SenseKey = SenseKey(0xE);

    /// The name SPC gives this key.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x0 => "NO SENSE",
            0x1 => "RECOVERED ERROR",
            0x2 => "NOT READY",
            0x3 => "MEDIUM ERROR",
            0x4 => "HARDWARE ERROR",
            0x5 => "ILLEGAL REQUEST",
            0x6 => "UNIT ATTENTION",
            0x7 => "DATA PROTECT",
            0x8 => "BLANK CHECK",
            0x9 => "VENDOR SPECIFIC",
            0xA => "COPY ABORTED",
            0xB => "ABORTED COMMAND",
            0xD => "VOLUME OVERFLOW",
            0xE => "MISCOMPARE",
            0xF => "COMPLETED",
            _ => "RESERVED",
        }
    }
}

/// An additional sense code and qualifier pair (SPC-5 §4.4.9, table 50).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Asc {
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
}

impl std::fmt::Display for Asc {
    /// `20h/00h`, as sense data is usually quoted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02X}h/{:02X}h", self.asc, self.ascq)
    }
}

/// The ASC/ASCQ pairs fcsim uses, as named in SPC-5 table 50 (checked against
/// sg3_utils' `sg_lib_data.c` and LIO's `target_core_transport.c`).
pub mod asc {
    use super::Asc;

    const fn a(asc: u8, ascq: u8) -> Asc {
        Asc { asc, ascq }
    }
    /// 08h/00h LOGICAL UNIT COMMUNICATION FAILURE.
    pub const LU_COMMUNICATION_FAILURE: Asc = a(0x08, 0x00);
    /// 00h/00h NO ADDITIONAL SENSE INFORMATION.
    pub const NO_ADDITIONAL_SENSE: Asc = a(0x00, 0x00);
    /// 00h/16h OPERATION IN PROGRESS.
    pub const OPERATION_IN_PROGRESS: Asc = a(0x00, 0x16);
    /// 04h/00h LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE.
    pub const LU_NOT_READY: Asc = a(0x04, 0x00);
    /// 04h/01h LOGICAL UNIT IS IN PROCESS OF BECOMING READY.
    pub const LU_BECOMING_READY: Asc = a(0x04, 0x01);
    /// 04h/03h LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED.
    pub const LU_NOT_READY_MANUAL_INTERVENTION: Asc = a(0x04, 0x03);
    /// 04h/07h LOGICAL UNIT NOT READY, OPERATION IN PROGRESS.
    pub const LU_NOT_READY_OPERATION_IN_PROGRESS: Asc = a(0x04, 0x07);
    /// 08h/04h UNREACHABLE COPY TARGET.
    pub const UNREACHABLE_COPY_TARGET: Asc = a(0x08, 0x04);
    /// 0Ch/00h WRITE ERROR.
    pub const WRITE_ERROR: Asc = a(0x0C, 0x00);
    /// 0Dh/01h THIRD PARTY DEVICE FAILURE.
    pub const THIRD_PARTY_DEVICE_FAILURE: Asc = a(0x0D, 0x01);
    /// 0Dh/02h COPY TARGET DEVICE NOT REACHABLE.
    pub const COPY_TARGET_DEVICE_NOT_REACHABLE: Asc = a(0x0D, 0x02);
    /// 0Dh/03h INCORRECT COPY TARGET DEVICE TYPE.
    pub const INCORRECT_COPY_TARGET_DEVICE_TYPE: Asc = a(0x0D, 0x03);
    /// 11h/00h UNRECOVERED READ ERROR.
    pub const UNRECOVERED_READ_ERROR: Asc = a(0x11, 0x00);
    /// 1Ah/00h PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH_ERROR: Asc = a(0x1A, 0x00);
    /// 20h/00h INVALID COMMAND OPERATION CODE.
    pub const INVALID_COMMAND_OPERATION_CODE: Asc = a(0x20, 0x00);
    /// 21h/00h LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Asc = a(0x21, 0x00);
    /// 24h/00h INVALID FIELD IN CDB.
    pub const INVALID_FIELD_IN_CDB: Asc = a(0x24, 0x00);
    /// 25h/00h LOGICAL UNIT NOT SUPPORTED.
    pub const LU_NOT_SUPPORTED: Asc = a(0x25, 0x00);
    /// 26h/00h INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Asc = a(0x26, 0x00);
    /// 26h/06h TOO MANY TARGET DESCRIPTORS.
    pub const TOO_MANY_TARGET_DESCRIPTORS: Asc = a(0x26, 0x06);
    /// 26h/07h UNSUPPORTED TARGET DESCRIPTOR TYPE CODE.
    pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: Asc = a(0x26, 0x07);
    /// 26h/08h TOO MANY SEGMENT DESCRIPTORS.
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: Asc = a(0x26, 0x08);
    /// 26h/09h UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE.
    pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: Asc = a(0x26, 0x09);
    /// 26h/0Bh INLINE DATA LENGTH EXCEEDED.
    pub const INLINE_DATA_LENGTH_EXCEEDED: Asc = a(0x26, 0x0B);
    /// 26h/0Ch INVALID OPERATION FOR COPY SOURCE OR DESTINATION.
    pub const INVALID_OPERATION_FOR_COPY_SOURCE_OR_DESTINATION: Asc = a(0x26, 0x0C);
    /// 27h/00h WRITE PROTECTED.
    pub const WRITE_PROTECTED: Asc = a(0x27, 0x00);
    /// 2Ch/00h COMMAND SEQUENCE ERROR.
    pub const COMMAND_SEQUENCE_ERROR: Asc = a(0x2C, 0x00);
    /// 29h/00h POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const POWER_ON_RESET: Asc = a(0x29, 0x00);
    /// 39h/00h SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Asc = a(0x39, 0x00);
    /// 3Ah/00h MEDIUM NOT PRESENT.
    pub const MEDIUM_NOT_PRESENT: Asc = a(0x3A, 0x00);
    /// 3Fh/0Eh REPORTED LUNS DATA HAS CHANGED.
    pub const REPORTED_LUNS_DATA_CHANGED: Asc = a(0x3F, 0x0E);
    /// 44h/00h INTERNAL TARGET FAILURE.
    pub const INTERNAL_TARGET_FAILURE: Asc = a(0x44, 0x00);
    /// 4Bh/00h DATA PHASE ERROR.
    pub const DATA_PHASE_ERROR: Asc = a(0x4B, 0x00);
}

/// Sense-key-specific field pointer (SPC-5 §4.4.2.4.2, table 45): which byte (and
/// optionally bit) of the CDB or parameter list was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldPointer {
    /// C/D bit: `true` = the error is in the CDB, `false` = in the parameter list.
    pub in_cdb: bool,
    /// FIELD POINTER: byte offset of the bad field (its most significant byte).
    pub byte: u16,
    /// BIT POINTER (0–7) with BPV = 1, or `None` (BPV = 0) for a whole-byte field.
    pub bit: Option<u8>,
}

/// Sense data: what went wrong, carried with CHECK CONDITION (SPC-5 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sense {
    /// SENSE KEY: the class of the condition.
    pub key: SenseKey,
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
    /// INFORMATION field with VALID = 1 (e.g. the failing LBA when it fits 32 bits).
    pub info: Option<u32>,
    /// Sense-key-specific field pointer (SKSV = 1), for ILLEGAL REQUEST and COPY ABORTED.
    pub field_pointer: Option<FieldPointer>,
}

/// Length of the fixed-format sense data this module encodes.
pub const FIXED_SENSE_LEN: usize = 18;

impl Sense {
    /// Sense with `key` and `asc`, no information and no field pointer.
    pub const fn new(key: SenseKey, a: Asc) -> Sense {
        Sense {
            key,
            asc: a.asc,
            ascq: a.ascq,
            info: None,
            field_pointer: None,
        }
    }

    /// The ASC/ASCQ pair.
    pub fn asc_pair(&self) -> Asc {
        Asc {
            asc: self.asc,
            ascq: self.ascq,
        }
    }

    /// ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE (20h/00h), pointing at byte 0.
    pub fn invalid_opcode() -> Sense {
        Sense {
            field_pointer: Some(FieldPointer {
                in_cdb: true,
                byte: 0,
                bit: None,
            }),
            ..Sense::new(
                SenseKey::ILLEGAL_REQUEST,
                asc::INVALID_COMMAND_OPERATION_CODE,
            )
        }
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN CDB (24h/00h) pointing at `byte` (and `bit`).
    pub fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Sense {
        Sense {
            field_pointer: Some(FieldPointer {
                in_cdb: true,
                byte,
                bit,
            }),
            ..Sense::new(SenseKey::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB)
        }
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST (26h/00h) at `byte` (and `bit`).
    pub fn invalid_field_in_param(byte: u16, bit: Option<u8>) -> Sense {
        Sense::param_error(asc::INVALID_FIELD_IN_PARAMETER_LIST, byte, bit)
    }

    /// ILLEGAL REQUEST with `a` and a parameter-list field pointer.
    pub fn param_error(a: Asc, byte: u16, bit: Option<u8>) -> Sense {
        Sense {
            field_pointer: Some(FieldPointer {
                in_cdb: false,
                byte,
                bit,
            }),
            ..Sense::new(SenseKey::ILLEGAL_REQUEST, a)
        }
    }

    /// ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h).
    pub fn lba_out_of_range() -> Sense {
        Sense::new(SenseKey::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE)
    }

    /// ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED (25h/00h).
    pub fn lu_not_supported() -> Sense {
        Sense::new(SenseKey::ILLEGAL_REQUEST, asc::LU_NOT_SUPPORTED)
    }

    /// COPY ABORTED with `a` (SPC-5 §5.17.7.4).
    pub fn copy_aborted(a: Asc) -> Sense {
        Sense::new(SenseKey::COPY_ABORTED, a)
    }

    /// Encodes fixed-format sense data, 18 bytes (SPC-5 §4.4.3, table 47).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(FIXED_SENSE_LEN);
        b.put_u8(if self.info.is_some() { 0xF0 } else { 0x70 });
        b.put_u8(0);
        b.put_u8(self.key.0 & 0x0F);
        b.put_u32(self.info.unwrap_or(0));
        b.put_u8(10); // additional sense length: 18 - 8
        b.put_u32(0); // command-specific information
        b.put_u8(self.asc);
        b.put_u8(self.ascq);
        b.put_u8(0); // FRU code
        match self.field_pointer {
            Some(fp) => {
                let mut b15 = 0x80;
                if fp.in_cdb {
                    b15 |= 0x40;
                }
                if let Some(bit) = fp.bit {
                    b15 |= 0x08 | (bit & 0x07);
                }
                b.put_u8(b15);
                b.put_u16(fp.byte);
            }
            None => {
                b.put_u8(0);
                b.put_u16(0);
            }
        }
        b.freeze()
    }

    /// Decodes fixed-format sense data (response code 70h or 71h). Descriptor format
    /// (72h/73h) is reported as malformed: fcsim targets never send it.
    pub fn decode(b: &[u8]) -> Result<Sense, DecodeError> {
        const WHAT: &str = "fixed sense data";
        super::need(WHAT, b, 14)?;
        let code = b[0] & 0x7F;
        if code != 0x70 && code != 0x71 {
            return Err(DecodeError::Malformed {
                what: WHAT,
                detail: format!("response code {code:#04x}"),
            });
        }
        let valid = b[0] & 0x80 != 0;
        let info = valid.then(|| super::be32(b, 3));
        let field_pointer = if b.len() >= 18 && b[15] & 0x80 != 0 {
            Some(FieldPointer {
                in_cdb: b[15] & 0x40 != 0,
                byte: super::be16(b, 16),
                bit: (b[15] & 0x08 != 0).then_some(b[15] & 0x07),
            })
        } else {
            None
        };
        Ok(Sense {
            key: SenseKey(b[2] & 0x0F),
            asc: b[12],
            ascq: b[13],
            info,
            field_pointer,
        })
    }
}

impl std::fmt::Display for Sense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} asc={:02x}h ascq={:02x}h",
            self.key.name(),
            self.asc,
            self.ascq
        )?;
        if let Some(fp) = self.field_pointer {
            let area = if fp.in_cdb { "cdb" } else { "param" };
            write!(f, " field={area}[{}]", fp.byte)?;
            if let Some(bit) = fp.bit {
                write!(f, ".{bit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // SPC-5 §4.4.3 fixed format sense data: 70h, key in byte 2, ASC/ASCQ in 12/13,
    // sense-key-specific field pointer in 15-17.
    #[test]
    fn fixed_format_layout() {
        let s = Sense::invalid_field_in_cdb(2, Some(5));
        let b = s.encode();
        assert_eq!(b.len(), 18);
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], 0x05);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x24, 0x00));
        assert_eq!(b[15], 0x80 | 0x40 | 0x08 | 5);
        assert_eq!((b[16], b[17]), (0, 2));
        assert_eq!(Sense::decode(&b), Ok(s));
    }

    #[test]
    fn info_sets_valid_bit() {
        let s = Sense {
            info: Some(0x1234_5678),
            ..Sense::new(SenseKey::MEDIUM_ERROR, asc::UNRECOVERED_READ_ERROR)
        };
        let b = s.encode();
        assert_eq!(b[0], 0xF0);
        assert_eq!(&b[3..7], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(Sense::decode(&b), Ok(s));
    }

    #[test]
    fn decode_rejects_short_and_descriptor_format() {
        assert!(matches!(
            Sense::decode(&[0x70; 5]),
            Err(DecodeError::Incomplete { .. })
        ));
        let mut b = Sense::lba_out_of_range().encode().to_vec();
        b[0] = 0x72;
        assert!(matches!(
            Sense::decode(&b),
            Err(DecodeError::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(key in 0u8..16, a in any::<u8>(), q in any::<u8>(), info in any::<Option<u32>>(),
                      fp in any::<Option<(bool, u16, Option<u8>)>>()) {
            let s = Sense { key: SenseKey(key), asc: a, ascq: q, info,
                field_pointer: fp.map(|(in_cdb, byte, bit)| FieldPointer { in_cdb, byte, bit: bit.map(|x| x & 7) }) };
            prop_assert_eq!(Sense::decode(&s.encode()), Ok(s));
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Sense::decode(&b);
        }
    }
}
