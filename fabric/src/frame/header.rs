//! The 24-byte FC-2 frame header (FC-FS-4 §9–§12): R_CTL, D_ID, CS_CTL, S_ID, TYPE,
//! F_CTL, SEQ_ID, DF_CTL, SEQ_CNT, OX_ID, RX_ID and the parameter word, all big-endian,
//! plus the R_CTL / TYPE / F_CTL code points this simulator uses.
//!
//! ```text
//! word 0 | R_CTL  | D_ID (3 bytes)           |
//! word 1 | CS_CTL | S_ID (3 bytes)           |
//! word 2 | TYPE   | F_CTL (3 bytes)          |
//! word 3 | SEQ_ID | DF_CTL | SEQ_CNT (2)     |
//! word 4 | OX_ID (2)       | RX_ID (2)       |
//! word 5 | Parameter (relative offset for FCP_DATA)
//! ```

use bytes::{Buf, BufMut};

use super::DecodeError;
use super::wire::{get_fcid, need, put_fcid};
use crate::fcid::FcId;

/// Length of the FC-2 frame header in bytes.
pub const HEADER_LEN: usize = 24;

/// RX_ID (or OX_ID) value meaning "not yet assigned" (FC-FS-4 §12.3.3).
pub const UNASSIGNED_XID: u16 = 0xFFFF;

/// R_CTL values (FC-FS-4 §9.3, table 36): routing bits (high nibble) + information
/// category (low nibble).
pub mod rctl {
    /// Device data, uncategorized.
    pub const UNCATEGORIZED: u8 = 0x00;
    /// Device data, solicited data (FCP_DATA).
    pub const SOLICITED_DATA: u8 = 0x01;
    /// Device data, unsolicited control (CT request, SW_ILS request).
    pub const UNSOLICITED_CONTROL: u8 = 0x02;
    /// Device data, solicited control (CT reply, SW_ILS reply).
    pub const SOLICITED_CONTROL: u8 = 0x03;
    /// Device data, unsolicited data.
    pub const UNSOLICITED_DATA: u8 = 0x04;
    /// Device data, data descriptor (FCP_XFER_RDY).
    pub const DATA_DESCRIPTOR: u8 = 0x05;
    /// Device data, unsolicited command (FCP_CMND).
    pub const UNSOLICITED_COMMAND: u8 = 0x06;
    /// Device data, command status (FCP_RSP).
    pub const COMMAND_STATUS: u8 = 0x07;
    /// Extended link data, request.
    pub const ELS_REQUEST: u8 = 0x22;
    /// Extended link data, reply (LS_ACC / LS_RJT).
    pub const ELS_REPLY: u8 = 0x23;
    /// Basic link data: NOP.
    pub const BA_NOP: u8 = 0x80;
    /// Basic link data: ABTS.
    pub const BA_ABTS: u8 = 0x81;
    /// Basic link data: BA_ACC.
    pub const BA_ACC: u8 = 0x84;
    /// Basic link data: BA_RJT.
    pub const BA_RJT: u8 = 0x85;

    /// FCP_CMND IU (FCP-4 table 2).
    pub const FCP_CMND: u8 = UNSOLICITED_COMMAND;
    /// FCP_XFER_RDY IU.
    pub const FCP_XFER_RDY: u8 = DATA_DESCRIPTOR;
    /// FCP_DATA IU.
    pub const FCP_DATA: u8 = SOLICITED_DATA;
    /// FCP_RSP IU.
    pub const FCP_RSP: u8 = COMMAND_STATUS;
    /// CT_IU request (FC-GS-7 §4.4).
    pub const CT_REQUEST: u8 = UNSOLICITED_CONTROL;
    /// CT_IU accept / reject.
    pub const CT_REPLY: u8 = SOLICITED_CONTROL;
}

/// TYPE values (FC-FS-4 §9.6, table 42).
pub mod ftype {
    /// Basic link services.
    pub const BLS: u8 = 0x00;
    /// Extended link services.
    pub const ELS: u8 = 0x01;
    /// SCSI FCP.
    pub const FCP: u8 = 0x08;
    /// Fibre Channel services (CT / GS).
    pub const CT: u8 = 0x20;
    /// Switch internal link services (FC-SW).
    pub const SW_ILS: u8 = 0x22;
}

/// F_CTL bits (FC-FS-4 §9.7, table 43); F_CTL is 24 bits wide.
pub mod fctl {
    /// Set by the exchange responder, clear from the originator.
    pub const EXCHANGE_CONTEXT: u32 = 1 << 23;
    /// Set by the sequence recipient, clear from the sequence initiator.
    pub const SEQUENCE_CONTEXT: u32 = 1 << 22;
    /// First sequence of the exchange.
    pub const FIRST_SEQUENCE: u32 = 1 << 21;
    /// Last sequence of the exchange.
    pub const LAST_SEQUENCE: u32 = 1 << 20;
    /// Last frame of the sequence.
    pub const END_SEQUENCE: u32 = 1 << 19;
    /// Sequence initiative is transferred to the other port.
    pub const SEQUENCE_INITIATIVE: u32 = 1 << 16;
    /// The parameter field is a relative offset (FCP_DATA).
    pub const RELATIVE_OFFSET: u32 = 1 << 3;
    /// The 24 meaningful bits.
    pub const MASK: u32 = 0x00FF_FFFF;

    /// A single-frame request that opens an exchange and hands over the initiative
    /// (0x290000, as on an ELS or CT request).
    pub const REQUEST: u32 = FIRST_SEQUENCE | END_SEQUENCE | SEQUENCE_INITIATIVE;
    /// The responder's single-frame final reply that closes the exchange (0x980000).
    pub const REPLY: u32 = EXCHANGE_CONTEXT | LAST_SEQUENCE | END_SEQUENCE;
}

/// An FC-2 frame header; encodes to exactly [`HEADER_LEN`] big-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FcHeader {
    /// Routing control: routing bits + information category (see [`rctl`]).
    pub r_ctl: u8,
    /// Destination N_Port or well-known address.
    pub d_id: FcId,
    /// Class-specific control / priority; 0 in this simulator.
    pub cs_ctl: u8,
    /// Source N_Port or well-known address.
    pub s_id: FcId,
    /// Data structure type of the payload (see [`ftype`]).
    pub fc_type: u8,
    /// Frame control; only the low 24 bits are sent (see [`fctl`]).
    pub f_ctl: u32,
    /// Sequence identifier chosen by the sequence initiator.
    pub seq_id: u8,
    /// Data field control (optional headers); 0 in this simulator.
    pub df_ctl: u8,
    /// Frame number within the sequence.
    pub seq_cnt: u16,
    /// Originator exchange ID.
    pub ox_id: u16,
    /// Responder exchange ID ([`UNASSIGNED_XID`] until the responder assigns one).
    pub rx_id: u16,
    /// Parameter word: relative offset for FCP_DATA, otherwise IU specific (often 0).
    pub parameter: u32,
}

impl FcHeader {
    /// A header for the first (and only) frame of a new exchange sent by its
    /// originator: F_CTL = [`fctl::REQUEST`], RX_ID unassigned, SEQ_ID/SEQ_CNT 0.
    pub fn request(r_ctl: u8, fc_type: u8, d_id: FcId, s_id: FcId, ox_id: u16) -> FcHeader {
        FcHeader {
            r_ctl,
            d_id,
            cs_ctl: 0,
            s_id,
            fc_type,
            f_ctl: fctl::REQUEST,
            seq_id: 0,
            df_ctl: 0,
            seq_cnt: 0,
            ox_id,
            rx_id: UNASSIGNED_XID,
            parameter: 0,
        }
    }

    /// The header of the responder's final reply to `self`: addresses swapped, same
    /// TYPE and OX_ID, the responder's `rx_id`, F_CTL = [`fctl::REPLY`] (exchange
    /// context = responder, last sequence, end of sequence), SEQ_ID one higher.
    pub fn reply(&self, r_ctl: u8, rx_id: u16) -> FcHeader {
        FcHeader {
            r_ctl,
            d_id: self.s_id,
            cs_ctl: 0,
            s_id: self.d_id,
            fc_type: self.fc_type,
            f_ctl: fctl::REPLY,
            seq_id: self.seq_id.wrapping_add(1),
            df_ctl: 0,
            seq_cnt: 0,
            ox_id: self.ox_id,
            rx_id,
            parameter: 0,
        }
    }

    /// The same header with another F_CTL (masked to 24 bits).
    pub fn with_f_ctl(mut self, f_ctl: u32) -> FcHeader {
        self.f_ctl = f_ctl & fctl::MASK;
        self
    }

    /// The same header with another parameter word.
    pub fn with_parameter(mut self, parameter: u32) -> FcHeader {
        self.parameter = parameter;
        self
    }

    /// The same header with another SEQ_ID and SEQ_CNT.
    pub fn with_seq(mut self, seq_id: u8, seq_cnt: u16) -> FcHeader {
        self.seq_id = seq_id;
        self.seq_cnt = seq_cnt;
        self
    }

    /// True when the frame comes from the exchange responder (F_CTL bit 23).
    pub fn from_responder(&self) -> bool {
        self.f_ctl & fctl::EXCHANGE_CONTEXT != 0
    }

    /// True when this is the last frame of its sequence (F_CTL bit 19).
    pub fn end_of_sequence(&self) -> bool {
        self.f_ctl & fctl::END_SEQUENCE != 0
    }

    /// Writes the 24 header bytes.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.r_ctl);
        put_fcid(buf, self.d_id);
        buf.put_u8(self.cs_ctl);
        put_fcid(buf, self.s_id);
        buf.put_u8(self.fc_type);
        let f = (self.f_ctl & fctl::MASK).to_be_bytes();
        buf.put_slice(&f[1..]);
        buf.put_u8(self.seq_id);
        buf.put_u8(self.df_ctl);
        buf.put_u16(self.seq_cnt);
        buf.put_u16(self.ox_id);
        buf.put_u16(self.rx_id);
        buf.put_u32(self.parameter);
    }

    /// Reads 24 header bytes; fails with `Incomplete` on fewer.
    pub fn decode(buf: &mut impl Buf) -> Result<FcHeader, DecodeError> {
        need(buf, HEADER_LEN)?;
        let r_ctl = buf.get_u8();
        let d_id = get_fcid(buf);
        let cs_ctl = buf.get_u8();
        let s_id = get_fcid(buf);
        let fc_type = buf.get_u8();
        let f = super::wire::get_array::<3>(buf);
        let f_ctl = u32::from_be_bytes([0, f[0], f[1], f[2]]);
        Ok(FcHeader {
            r_ctl,
            d_id,
            cs_ctl,
            s_id,
            fc_type,
            f_ctl,
            seq_id: buf.get_u8(),
            df_ctl: buf.get_u8(),
            seq_cnt: buf.get_u16(),
            ox_id: buf.get_u16(),
            rx_id: buf.get_u16(),
            parameter: buf.get_u32(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::strategies::arb_header;
    use proptest::prelude::*;

    /// FC-FS-4 §9: an ELS request to the F_Port login server from an unidentified port.
    #[test]
    fn flogi_header_known_answer() {
        let h = FcHeader::request(
            rctl::ELS_REQUEST,
            ftype::ELS,
            FcId::FABRIC_LOGIN,
            FcId::UNIDENTIFIED,
            0x1234,
        );
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(
            out,
            [
                0x22, 0xFF, 0xFF, 0xFE, 0x00, 0x00, 0x00, 0x00, 0x01, 0x29, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x12, 0x34, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00
            ]
        );
    }

    #[test]
    fn reply_flips_context_and_swaps_addresses() {
        let req = FcHeader::request(
            rctl::ELS_REQUEST,
            ftype::ELS,
            FcId::new(0x010200),
            FcId::new(0x010100),
            7,
        );
        let rep = req.reply(rctl::ELS_REPLY, 0x42);
        assert_eq!(
            (rep.d_id, rep.s_id, rep.ox_id, rep.rx_id),
            (req.s_id, req.d_id, 7, 0x42)
        );
        assert!(rep.from_responder() && !req.from_responder());
        assert_eq!(rep.f_ctl, 0x98_0000);
    }

    #[test]
    fn short_header_is_incomplete() {
        let mut b: &[u8] = &[0u8; 23];
        assert_eq!(
            FcHeader::decode(&mut b),
            Err(DecodeError::Incomplete {
                needed: 24,
                have: 23
            })
        );
    }

    proptest! {
        #[test]
        fn roundtrip(h in arb_header()) {
            let mut out = Vec::new();
            h.encode(&mut out);
            prop_assert_eq!(out.len(), HEADER_LEN);
            prop_assert_eq!(FcHeader::decode(&mut out.as_slice()).unwrap(), h);
        }
    }
}
