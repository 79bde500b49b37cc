//! Basic link services (FC-FS-4 §15): ABTS (no payload), BA_ACC and BA_RJT payloads.

use bytes::{Buf, BufMut};

use super::DecodeError;
use super::wire::need;

/// Length of a BA_ACC payload.
pub const BA_ACC_LEN: usize = 12;
/// Length of a BA_RJT payload.
pub const BA_RJT_LEN: usize = 4;

/// BA_ACC payload (FC-FS-4 §15.3.2): 12 bytes.
///
/// ```text
/// 0 SEQ_ID validity (0x80 = valid) | SEQ_ID | reserved (2)
/// 4 OX_ID (2) | RX_ID (2)
/// 8 low SEQ_CNT (2) | high SEQ_CNT (2)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaAcc {
    /// Whether `seq_id` names the last deliverable sequence.
    pub seq_id_valid: bool,
    /// SEQ_ID of the last deliverable sequence.
    pub seq_id: u8,
    /// OX_ID of the aborted exchange.
    pub ox_id: u16,
    /// RX_ID of the aborted exchange.
    pub rx_id: u16,
    /// Lowest SEQ_CNT of the aborted sequence.
    pub low_seq_cnt: u16,
    /// Highest SEQ_CNT of the aborted sequence.
    pub high_seq_cnt: u16,
}

impl BaAcc {
    /// Writes the payload.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(if self.seq_id_valid { 0x80 } else { 0 });
        buf.put_u8(self.seq_id);
        buf.put_u16(0);
        buf.put_u16(self.ox_id);
        buf.put_u16(self.rx_id);
        buf.put_u16(self.low_seq_cnt);
        buf.put_u16(self.high_seq_cnt);
    }

    /// Reads the payload.
    pub fn decode(buf: &mut impl Buf) -> Result<BaAcc, DecodeError> {
        need(buf, BA_ACC_LEN)?;
        let seq_id_valid = buf.get_u8() & 0x80 != 0;
        let seq_id = buf.get_u8();
        buf.advance(2);
        Ok(BaAcc {
            seq_id_valid,
            seq_id,
            ox_id: buf.get_u16(),
            rx_id: buf.get_u16(),
            low_seq_cnt: buf.get_u16(),
            high_seq_cnt: buf.get_u16(),
        })
    }
}

/// BA_RJT reason codes (FC-FS-4 table 122).
pub mod ba_rjt_reason {
    /// Invalid command code.
    pub const INVALID_COMMAND: u8 = 0x01;
    /// Logical error.
    pub const LOGICAL_ERROR: u8 = 0x03;
    /// Logical busy.
    pub const LOGICAL_BUSY: u8 = 0x05;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x07;
    /// Unable to perform command request.
    pub const UNABLE_TO_PERFORM: u8 = 0x09;
    /// Vendor unique.
    pub const VENDOR: u8 = 0xFF;
}

/// BA_RJT reason explanations (FC-FS-4 table 123).
pub mod ba_rjt_explanation {
    /// No additional explanation.
    pub const NONE: u8 = 0x00;
    /// Invalid OX_ID–RX_ID combination.
    pub const INVALID_OX_RX_ID: u8 = 0x03;
    /// Sequence aborted, no sequence information provided.
    pub const SEQUENCE_ABORTED: u8 = 0x05;
}

/// BA_RJT payload (FC-FS-4 §15.3.3): reserved, reason, explanation, vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaRjt {
    /// Reason code (see [`ba_rjt_reason`]).
    pub reason: u8,
    /// Reason explanation (see [`ba_rjt_explanation`]).
    pub explanation: u8,
    /// Vendor unique byte.
    pub vendor: u8,
}

impl BaRjt {
    /// Writes the payload.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&[0, self.reason, self.explanation, self.vendor]);
    }

    /// Reads the payload.
    pub fn decode(buf: &mut impl Buf) -> Result<BaRjt, DecodeError> {
        need(buf, BA_RJT_LEN)?;
        buf.advance(1);
        Ok(BaRjt {
            reason: buf.get_u8(),
            explanation: buf.get_u8(),
            vendor: buf.get_u8(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::strategies::{arb_ba_acc, arb_ba_rjt};
    use proptest::prelude::*;

    #[test]
    fn ba_acc_known_answer() {
        let a = BaAcc {
            seq_id_valid: false,
            seq_id: 0,
            ox_id: 0x1234,
            rx_id: 0x5678,
            low_seq_cnt: 0,
            high_seq_cnt: 0xFFFF,
        };
        let mut b = Vec::new();
        a.encode(&mut b);
        assert_eq!(b, [0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0xFF, 0xFF]);
    }

    #[test]
    fn ba_rjt_known_answer() {
        let r = BaRjt {
            reason: ba_rjt_reason::LOGICAL_ERROR,
            explanation: ba_rjt_explanation::INVALID_OX_RX_ID,
            vendor: 0,
        };
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(b, [0, 3, 3, 0]);
    }

    proptest! {
        #[test]
        fn roundtrip(a in arb_ba_acc(), r in arb_ba_rjt()) {
            let mut b = Vec::new();
            a.encode(&mut b);
            prop_assert_eq!(BaAcc::decode(&mut b.as_slice()).unwrap(), a);
            let mut b = Vec::new();
            r.encode(&mut b);
            prop_assert_eq!(BaRjt::decode(&mut b.as_slice()).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = BaAcc::decode(&mut b.as_slice());
            let _ = BaRjt::decode(&mut b.as_slice());
        }
    }
}
