//! CDB decoding for the tape drive: one variant per command, parsed apart from
//! execution. An unknown opcode is data ([`TapeCommand::Unsupported`]), a malformed CDB
//! of a known command is an [`TapeSense`] (ILLEGAL REQUEST) the drive answers with.

use super::sense::TapeSense;

/// Operation codes (SPC-4 / SSC-4).
pub mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REWIND: u8 = 0x01;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_BLOCK_LIMITS: u8 = 0x05;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const WRITE_FILEMARKS_6: u8 = 0x10;
    pub const SPACE_6: u8 = 0x11;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const LOAD_UNLOAD: u8 = 0x1B;
    pub const READ_POSITION: u8 = 0x34;
}

/// What a SPACE(6) counts (SSC-4 §8.6, CODE field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceCode {
    /// 0h: logical blocks.
    Blocks,
    /// 1h: filemarks.
    Filemarks,
    /// 3h: to end-of-data.
    EndOfData,
}

/// A decoded tape CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapeCommand {
    /// TEST UNIT READY (SPC-4): `00 | reserved ×4 | control`.
    TestUnitReady,
    /// REWIND (SSC-4 §7.10): `01 | IMMED(b0) | reserved ×3 | control`.
    Rewind,
    /// REQUEST SENSE (SPC-4): `03 | DESC(b0) | reserved ×2 | ALLOCATION LENGTH | control`.
    RequestSense {
        /// Descriptor-format sense requested (unsupported: INVALID FIELD IN CDB).
        desc: bool,
        /// Bytes the initiator accepts.
        alloc_len: u8,
    },
    /// READ BLOCK LIMITS (SSC-4 §7.6): `05 | MLOI(b0) | reserved ×3 | control`.
    ReadBlockLimits,
    /// READ(6) (SSC-4 §8.4): `08 | SILI(b1) FIXED(b0) | TRANSFER LENGTH (3) | control`.
    Read6 {
        /// Transfer length counts blocks of the mode block length, not bytes.
        fixed: bool,
        /// Suppress incorrect-length indication for short records.
        sili: bool,
        /// Blocks (fixed) or bytes (variable).
        transfer_length: u32,
    },
    /// WRITE(6) (SSC-4 §8.8): `0A | FIXED(b0) | TRANSFER LENGTH (3) | control`.
    Write6 {
        /// Transfer length counts blocks of the mode block length, not bytes.
        fixed: bool,
        /// Blocks (fixed) or bytes (variable).
        transfer_length: u32,
    },
    /// WRITE FILEMARKS(6) (SSC-4 §8.9): `10 | WSMK(b1) IMMED(b0) | COUNT (3) | control`.
    WriteFilemarks6 {
        /// Filemarks to write.
        count: u32,
    },
    /// SPACE(6) (SSC-4 §8.6): `11 | CODE(b3..0) | COUNT (3, signed) | control`.
    Space6 {
        /// What to count.
        code: SpaceCode,
        /// Signed count; negative spaces toward beginning-of-partition.
        count: i32,
    },
    /// INQUIRY (SPC-4): `12 | EVPD(b0) | PAGE CODE | ALLOCATION LENGTH (2) | control`.
    Inquiry {
        /// Vital product data page requested.
        evpd: bool,
        /// The VPD page (must be 0 without EVPD).
        page: u8,
        /// Bytes the initiator accepts.
        alloc_len: u16,
    },
    /// MODE SELECT(6) (SPC-4): `15 | PF(b4) SP(b0) | reserved ×2 | PARAMETER LIST LENGTH | control`.
    ModeSelect6 {
        /// Save pages (unsupported: SAVING PARAMETERS NOT SUPPORTED).
        save: bool,
        /// Bytes of parameter list in the data-out buffer.
        param_len: u8,
    },
    /// MODE SENSE(6) (SPC-4): `1A | DBD(b3) | PC(b7..6) PAGE CODE(b5..0) | SUBPAGE | ALLOCATION LENGTH | control`.
    ModeSense6 {
        /// Disable block descriptors.
        dbd: bool,
        /// Page control: 0 current, 1 changeable, 2 default, 3 saved.
        pc: u8,
        /// Page code (00h: none, 3Fh: all).
        page: u8,
        /// Subpage code.
        subpage: u8,
        /// Bytes the initiator accepts.
        alloc_len: u8,
    },
    /// LOAD UNLOAD (SSC-4 §7.3): `1B | IMMED(b0) | reserved ×2 | HOLD(b3) EOT(b2) RETEN(b1) LOAD(b0) | control`.
    LoadUnload {
        /// Load (true) or unload (false) the medium.
        load: bool,
        /// Position at end-of-tape (invalid together with LOAD).
        eot: bool,
    },
    /// READ POSITION (SSC-4 §7.7): `34 | SERVICE ACTION(b4..0) | reserved ×5 | ALLOCATION LENGTH (2) | control`.
    ReadPosition {
        /// 00h short form (block id), 01h short form (vendor); others unsupported.
        service_action: u8,
    },
    /// Any other opcode: answered with INVALID COMMAND OPERATION CODE.
    Unsupported(u8),
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

/// Sign-extends a 24-bit two's complement value.
fn be24_signed(b: &[u8]) -> i32 {
    let v = be24(b);
    if v & 0x80_0000 != 0 {
        i32::try_from(v).unwrap_or(0) - 0x100_0000
    } else {
        i32::try_from(v).unwrap_or(0)
    }
}

/// The CDB length of an operation code's group (SPC-4 §4.3.2).
fn cdb_len(op: u8) -> usize {
    match op >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 6,
    }
}

impl TapeCommand {
    /// Decodes a CDB. An unknown opcode is [`TapeCommand::Unsupported`]; an empty CDB is
    /// `Err(INVALID COMMAND OPERATION CODE)`; a known opcode in a CDB shorter than its
    /// group length, or with an invalid field, is `Err(INVALID FIELD IN CDB)`.
    pub fn parse(cdb: &[u8]) -> Result<Self, TapeSense> {
        use opcode::*;
        let Some(&op) = cdb.first() else {
            return Err(TapeSense::invalid_opcode());
        };
        let known = matches!(
            op,
            TEST_UNIT_READY
                | REWIND
                | REQUEST_SENSE
                | READ_BLOCK_LIMITS
                | READ_6
                | WRITE_6
                | WRITE_FILEMARKS_6
                | SPACE_6
                | INQUIRY
                | MODE_SELECT_6
                | MODE_SENSE_6
                | LOAD_UNLOAD
                | READ_POSITION
        );
        if !known {
            return Ok(TapeCommand::Unsupported(op));
        }
        if cdb.len() < cdb_len(op) {
            return Err(TapeSense::invalid_field_in_cdb());
        }
        let bad = || Err(TapeSense::invalid_field_in_cdb());
        Ok(match op {
            TEST_UNIT_READY => TapeCommand::TestUnitReady,
            REWIND => TapeCommand::Rewind,
            REQUEST_SENSE => TapeCommand::RequestSense {
                desc: cdb[1] & 0x01 != 0,
                alloc_len: cdb[4],
            },
            READ_BLOCK_LIMITS => {
                // MLOI (maximum logical object identifier form) is not supported.
                if cdb[1] & 0x01 != 0 {
                    return bad();
                }
                TapeCommand::ReadBlockLimits
            }
            READ_6 => {
                let fixed = cdb[1] & 0x01 != 0;
                let sili = cdb[1] & 0x02 != 0;
                // SSC-4 §8.4: SILI and FIXED both one is an invalid field.
                if fixed && sili {
                    return bad();
                }
                TapeCommand::Read6 {
                    fixed,
                    sili,
                    transfer_length: be24(&cdb[2..5]),
                }
            }
            WRITE_6 => TapeCommand::Write6 {
                fixed: cdb[1] & 0x01 != 0,
                transfer_length: be24(&cdb[2..5]),
            },
            WRITE_FILEMARKS_6 => {
                // Setmarks (WSMK) are not supported.
                if cdb[1] & 0x02 != 0 {
                    return bad();
                }
                TapeCommand::WriteFilemarks6 {
                    count: be24(&cdb[2..5]),
                }
            }
            SPACE_6 => {
                let code = match cdb[1] & 0x0f {
                    0 => SpaceCode::Blocks,
                    1 => SpaceCode::Filemarks,
                    3 => SpaceCode::EndOfData,
                    _ => return bad(),
                };
                TapeCommand::Space6 {
                    code,
                    count: be24_signed(&cdb[2..5]),
                }
            }
            INQUIRY => TapeCommand::Inquiry {
                evpd: cdb[1] & 0x01 != 0,
                page: cdb[2],
                alloc_len: u16::from_be_bytes([cdb[3], cdb[4]]),
            },
            MODE_SELECT_6 => TapeCommand::ModeSelect6 {
                save: cdb[1] & 0x01 != 0,
                param_len: cdb[4],
            },
            MODE_SENSE_6 => TapeCommand::ModeSense6 {
                dbd: cdb[1] & 0x08 != 0,
                pc: cdb[2] >> 6,
                page: cdb[2] & 0x3f,
                subpage: cdb[3],
                alloc_len: cdb[4],
            },
            LOAD_UNLOAD => {
                let load = cdb[4] & 0x01 != 0;
                let eot = cdb[4] & 0x04 != 0;
                // SSC-4 §7.3: EOT together with LOAD is an invalid field.
                if load && eot {
                    return bad();
                }
                TapeCommand::LoadUnload { load, eot }
            }
            READ_POSITION => {
                let service_action = cdb[1] & 0x1f;
                if service_action > 1 {
                    return bad();
                }
                TapeCommand::ReadPosition { service_action }
            }
            _ => TapeCommand::Unsupported(op),
        })
    }

    /// Whether the command touches the medium, so needs a ready (online, loaded) drive.
    pub fn is_media_access(&self) -> bool {
        matches!(
            self,
            TapeCommand::TestUnitReady
                | TapeCommand::Rewind
                | TapeCommand::Read6 { .. }
                | TapeCommand::Write6 { .. }
                | TapeCommand::WriteFilemarks6 { .. }
                | TapeCommand::Space6 { .. }
                | TapeCommand::ReadPosition { .. }
        )
    }
}
