//! FCP information units (FCP-4 §9): FCP_CMND, FCP_XFER_RDY and FCP_RSP payloads.
//! FCP_DATA has no structure of its own: it is the data bytes, with the relative offset
//! in the frame header's parameter field (see `Frame::fcp_data`).

use bytes::{Buf, BufMut, Bytes};

use super::DecodeError;
use super::wire::{get_array, len_u32, need, take};

/// Length of an FCP_CMND with a 16-byte CDB and no additional CDB.
pub const FCP_CMND_LEN: usize = 32;
/// Length of an FCP_XFER_RDY.
pub const FCP_XFER_RDY_LEN: usize = 12;
/// Length of the fixed part of an FCP_RSP.
pub const FCP_RSP_LEN: usize = 24;
/// Largest CDB an FCP_CMND can carry: 16 + 63 × 4 bytes.
pub const MAX_CDB_LEN: usize = 16 + 63 * 4;

/// Task attributes (FCP-4 table 25), bits 2–0 of byte 9.
pub mod task_attribute {
    /// SIMPLE.
    pub const SIMPLE: u8 = 0;
    /// HEAD OF QUEUE.
    pub const HEAD_OF_QUEUE: u8 = 1;
    /// ORDERED.
    pub const ORDERED: u8 = 2;
    /// ACA.
    pub const ACA: u8 = 4;
}

/// Task management flags (FCP-4 table 26), byte 10.
pub mod tmf {
    /// CLEAR ACA.
    pub const CLEAR_ACA: u8 = 0x40;
    /// TARGET RESET (obsolete in FCP-4).
    pub const TARGET_RESET: u8 = 0x20;
    /// LOGICAL UNIT RESET.
    pub const LUN_RESET: u8 = 0x10;
    /// CLEAR TASK SET.
    pub const CLEAR_TASK_SET: u8 = 0x04;
    /// ABORT TASK SET.
    pub const ABORT_TASK_SET: u8 = 0x02;
}

/// FCP_CMND IU (FCP-4 §9.2), 32 bytes for a 16-byte CDB.
///
/// ```text
/// 0  FCP_LUN (8)
/// 8  CRN | priority (bits 6–3) + task attribute (bits 2–0) | TMF flags |
///    additional CDB length in words (bits 7–2) + RDDATA (bit 1) + WRDATA (bit 0)
/// 12 FCP_CDB (16 + 4 × additional)
/// .. FCP_DL (4)
/// ```
/// The bidirectional FCP_BIDIRECTIONAL_READ_DL word is not modelled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FcpCmnd {
    /// The 8-byte SAM LUN.
    pub lun: [u8; 8],
    /// Command reference number, 0 when not used.
    pub crn: u8,
    /// Task priority, 4 bits.
    pub priority: u8,
    /// Task attribute, 3 bits (see [`task_attribute`]).
    pub task_attribute: u8,
    /// Task management flags (see [`tmf`]); 0 for a SCSI command.
    pub task_mgmt_flags: u8,
    /// The initiator expects data from the target (read).
    pub rddata: bool,
    /// The initiator will send data (write).
    pub wrdata: bool,
    /// The CDB, 16 + 4k bytes (k ≤ 63). On encode a shorter CDB is zero-padded to 16
    /// (or to the next word) and a longer one truncated to [`MAX_CDB_LEN`].
    pub cdb: Bytes,
    /// Expected data length in bytes.
    pub fcp_dl: u32,
}

impl FcpCmnd {
    /// A SIMPLE command to `lun` with `cdb` (padded to 16 bytes here, so that decoding
    /// the encoding gives back the same value).
    pub fn new(lun: [u8; 8], cdb: &[u8], rddata: bool, wrdata: bool, fcp_dl: u32) -> FcpCmnd {
        let mut c = cdb[..cdb.len().min(MAX_CDB_LEN)].to_vec();
        let len = c.len().max(16);
        c.resize(len + super::wire::pad4(len), 0);
        FcpCmnd {
            lun,
            crn: 0,
            priority: 0,
            task_attribute: task_attribute::SIMPLE,
            task_mgmt_flags: 0,
            rddata,
            wrdata,
            cdb: Bytes::from(c),
            fcp_dl,
        }
    }

    /// Additional CDB length in words as it will be encoded.
    fn additional_words(&self) -> usize {
        let len = self.cdb.len().min(MAX_CDB_LEN);
        len.saturating_sub(16).div_ceil(4)
    }

    /// Writes the IU.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let add = self.additional_words();
        buf.put_slice(&self.lun);
        buf.put_u8(self.crn);
        buf.put_u8(((self.priority & 0x0F) << 3) | (self.task_attribute & 0x07));
        buf.put_u8(self.task_mgmt_flags);
        let add_u8 = u8::try_from(add).unwrap_or(63) & 0x3F;
        buf.put_u8((add_u8 << 2) | (u8::from(self.rddata) << 1) | u8::from(self.wrdata));
        let cdb_len = 16 + 4 * add;
        let cdb = &self.cdb[..self.cdb.len().min(cdb_len)];
        buf.put_slice(cdb);
        buf.put_bytes(0, cdb_len - cdb.len());
        buf.put_u32(self.fcp_dl);
    }

    /// Reads the IU; trailing bytes are ignored.
    pub fn decode(buf: &mut impl Buf) -> Result<FcpCmnd, DecodeError> {
        need(buf, 12)?;
        let lun = get_array::<8>(buf);
        let crn = buf.get_u8();
        let pta = buf.get_u8();
        let task_mgmt_flags = buf.get_u8();
        let flags = buf.get_u8();
        let cdb_len = 16 + 4 * usize::from(flags >> 2);
        need(buf, cdb_len + 4)?;
        let cdb = take(buf, cdb_len)?;
        Ok(FcpCmnd {
            lun,
            crn,
            priority: (pta >> 3) & 0x0F,
            task_attribute: pta & 0x07,
            task_mgmt_flags,
            rddata: flags & 0x02 != 0,
            wrdata: flags & 0x01 != 0,
            cdb,
            fcp_dl: buf.get_u32(),
        })
    }
}

/// FCP_XFER_RDY IU (FCP-4 §9.3): 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FcpXferRdy {
    /// Relative offset of the first byte the target wants.
    pub rel_offset: u32,
    /// Number of bytes the target wants in this burst.
    pub burst_len: u32,
}

impl FcpXferRdy {
    /// Writes the IU.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u32(self.rel_offset);
        buf.put_u32(self.burst_len);
        buf.put_u32(0);
    }

    /// Reads the IU (the reserved last word may be missing).
    pub fn decode(buf: &mut impl Buf) -> Result<FcpXferRdy, DecodeError> {
        need(buf, 8)?;
        Ok(FcpXferRdy {
            rel_offset: buf.get_u32(),
            burst_len: buf.get_u32(),
        })
    }
}

/// FCP_RSP flag bits (FCP-4 table 30), byte 10.
pub mod rsp_flags {
    /// FCP_CONF_REQ: confirmation requested.
    pub const CONFIRM_REQUESTED: u8 = 0x10;
    /// FCP_RESID_UNDER.
    pub const RESID_UNDER: u8 = 0x08;
    /// FCP_RESID_OVER.
    pub const RESID_OVER: u8 = 0x04;
    /// FCP_SNS_LEN_VALID.
    pub const SNS_LEN_VALID: u8 = 0x02;
    /// FCP_RSP_LEN_VALID.
    pub const RSP_LEN_VALID: u8 = 0x01;
}

/// FCP_RSP IU (FCP-4 §9.5): 24 fixed bytes, then FCP_RSP_INFO, then sense data.
///
/// ```text
/// 0  reserved (8)
/// 8  retry delay timer (2) | flags | SCSI status
/// 12 FCP_RESID (4) | 16 FCP_SNS_LEN (4) | 20 FCP_RSP_LEN (4)
/// 24 FCP_RSP_INFO (FCP_RSP_LEN) | FCP_SNS_INFO (FCP_SNS_LEN)
/// ```
/// The length-valid flags are derived: set exactly when the field is non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FcpRsp {
    /// SCSI status (0 GOOD, 2 CHECK CONDITION, …).
    pub status: u8,
    /// Retry delay timer / status qualifier (SAM-5), 0 when unused.
    pub retry_delay_timer: u16,
    /// FCP_CONF_REQ.
    pub confirm_requested: bool,
    /// FCP_RESID_UNDER: fewer bytes moved than FCP_DL.
    pub resid_under: bool,
    /// FCP_RESID_OVER: the transfer needed more than FCP_DL.
    pub resid_over: bool,
    /// The residual byte count (meaningful when under/over is set).
    pub resid: u32,
    /// FCP_RSP_INFO (4 or 8 bytes for task management responses), else empty.
    pub rsp_info: Bytes,
    /// Sense data, empty unless status is CHECK CONDITION.
    pub sense: Bytes,
}

impl FcpRsp {
    /// A response with `status` and nothing else.
    pub fn status(status: u8) -> FcpRsp {
        FcpRsp {
            status,
            retry_delay_timer: 0,
            confirm_requested: false,
            resid_under: false,
            resid_over: false,
            resid: 0,
            rsp_info: Bytes::new(),
            sense: Bytes::new(),
        }
    }

    /// Writes the IU.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let mut flags = 0;
        if self.confirm_requested {
            flags |= rsp_flags::CONFIRM_REQUESTED;
        }
        if self.resid_under {
            flags |= rsp_flags::RESID_UNDER;
        }
        if self.resid_over {
            flags |= rsp_flags::RESID_OVER;
        }
        if !self.sense.is_empty() {
            flags |= rsp_flags::SNS_LEN_VALID;
        }
        if !self.rsp_info.is_empty() {
            flags |= rsp_flags::RSP_LEN_VALID;
        }
        buf.put_u64(0);
        buf.put_u16(self.retry_delay_timer);
        buf.put_u8(flags);
        buf.put_u8(self.status);
        buf.put_u32(self.resid);
        buf.put_u32(len_u32(self.sense.len()));
        buf.put_u32(len_u32(self.rsp_info.len()));
        buf.put_slice(&self.rsp_info);
        buf.put_slice(&self.sense);
    }

    /// Reads the IU. A 12-byte FCP_RSP without residual or length flags (sent by some
    /// early implementations, FCP-3 note 6) is accepted.
    pub fn decode(buf: &mut impl Buf) -> Result<FcpRsp, DecodeError> {
        need(buf, 12)?;
        buf.advance(8);
        let retry_delay_timer = buf.get_u16();
        let flags = buf.get_u8();
        let status = buf.get_u8();
        let mut rsp = FcpRsp {
            status,
            retry_delay_timer,
            confirm_requested: flags & rsp_flags::CONFIRM_REQUESTED != 0,
            resid_under: flags & rsp_flags::RESID_UNDER != 0,
            resid_over: flags & rsp_flags::RESID_OVER != 0,
            resid: 0,
            rsp_info: Bytes::new(),
            sense: Bytes::new(),
        };
        let needs_ext = rsp_flags::RESID_UNDER
            | rsp_flags::RESID_OVER
            | rsp_flags::SNS_LEN_VALID
            | rsp_flags::RSP_LEN_VALID;
        if flags & needs_ext == 0 && !buf.has_remaining() {
            return Ok(rsp);
        }
        need(buf, 12)?;
        rsp.resid = buf.get_u32();
        let sns_len = buf.get_u32();
        let rsp_len = buf.get_u32();
        let as_len = |v: u32| {
            usize::try_from(v).map_err(|_| DecodeError::Malformed {
                what: "FCP_RSP length too large",
            })
        };
        if flags & rsp_flags::RSP_LEN_VALID != 0 {
            rsp.rsp_info = take(buf, as_len(rsp_len)?)?;
        }
        if flags & rsp_flags::SNS_LEN_VALID != 0 {
            rsp.sense = take(buf, as_len(sns_len)?)?;
        }
        Ok(rsp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::strategies::{arb_fcp_cmnd, arb_fcp_rsp, arb_xfer_rdy};
    use proptest::prelude::*;

    /// FCP-4 §9.2 + SBC-3 READ(10): LBA 0x1000, 8 blocks, read 4096 bytes from LUN 1.
    #[test]
    fn fcp_cmnd_read10_known_answer() {
        let cdb = [0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0];
        let c = FcpCmnd::new([0, 1, 0, 0, 0, 0, 0, 0], &cdb, true, false, 4096);
        let mut b = Vec::new();
        c.encode(&mut b);
        assert_eq!(b.len(), FCP_CMND_LEN);
        assert_eq!(&b[..12], &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02]);
        assert_eq!(
            &b[12..28],
            &[0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&b[28..], &[0, 0, 0x10, 0]);
        assert_eq!(FcpCmnd::decode(&mut b.as_slice()).unwrap(), c);
    }

    #[test]
    fn long_cdb_sets_additional_length() {
        let c = FcpCmnd::new([0; 8], &[0x7F; 32], false, true, 0);
        let mut b = Vec::new();
        c.encode(&mut b);
        assert_eq!(b.len(), 48);
        assert_eq!(b[11], (4 << 2) | 1);
    }

    #[test]
    fn fcp_rsp_check_condition_known_answer() {
        let mut r = FcpRsp::status(0x02);
        r.sense = Bytes::from_static(&[0x70, 0, 0x05, 0, 0, 0, 0, 0x0A]);
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(b.len(), 32);
        assert_eq!(
            &b[8..24],
            &[0, 0, 0x02, 0x02, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0]
        );
        assert_eq!(FcpRsp::decode(&mut b.as_slice()).unwrap(), r);
        // 12-byte legacy GOOD response.
        assert_eq!(
            FcpRsp::decode(&mut &[0u8; 12][..]).unwrap(),
            FcpRsp::status(0)
        );
    }

    #[test]
    fn xfer_rdy_known_answer() {
        let x = FcpXferRdy {
            rel_offset: 0x2000,
            burst_len: 0x1000,
        };
        let mut b = Vec::new();
        x.encode(&mut b);
        assert_eq!(b, [0, 0, 0x20, 0, 0, 0, 0x10, 0, 0, 0, 0, 0]);
    }

    proptest! {
        #[test]
        fn cmnd_roundtrip(c in arb_fcp_cmnd()) {
            let mut b = Vec::new();
            c.encode(&mut b);
            prop_assert_eq!(FcpCmnd::decode(&mut b.as_slice()).unwrap(), c);
        }

        #[test]
        fn xfer_rdy_roundtrip(x in arb_xfer_rdy()) {
            let mut b = Vec::new();
            x.encode(&mut b);
            prop_assert_eq!(FcpXferRdy::decode(&mut b.as_slice()).unwrap(), x);
        }

        #[test]
        fn rsp_roundtrip(r in arb_fcp_rsp()) {
            let mut b = Vec::new();
            r.encode(&mut b);
            prop_assert_eq!(FcpRsp::decode(&mut b.as_slice()).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = FcpCmnd::decode(&mut b.as_slice());
            let _ = FcpXferRdy::decode(&mut b.as_slice());
            let _ = FcpRsp::decode(&mut b.as_slice());
        }
    }
}
