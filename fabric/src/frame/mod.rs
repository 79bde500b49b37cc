//! The FC-2 frame codec (FC-FS-4 framing; payloads per FC-LS-3, FC-GS-7, FCP-4).
//!
//! A [`Frame`] is the 24-byte header plus the payload (one information unit), exactly
//! as it appears in a LINKTYPE_FC_2 (224) capture: no SOF/EOF/CRC. [`Frame::decode`]
//! keeps the payload as a zero-copy slice of the input; [`Frame::iu`] interprets it as an
//! [`Iu`], chosen from R_CTL and TYPE.
//!
//! Start here: [`Frame`] and [`Iu`]; then [`header`] (R_CTL/TYPE/F_CTL), [`els`]
//! (FLOGI, PLOGI, PRLI, LOGO, SCR, RSCN, LS_ACC, LS_RJT), [`ct`] (CT_IU and the name
//! server), [`fcp`] (FCP_CMND, FCP_XFER_RDY, FCP_RSP), [`bls`] (ABTS, BA_ACC, BA_RJT).
//!
//! Decoders never panic: short input is [`DecodeError::Incomplete`], inconsistent
//! lengths are [`DecodeError::Malformed`], and unknown codes are data
//! (`Unsupported` variants).

pub mod bls;
pub mod ct;
pub mod els;
pub mod fcp;
pub mod header;
mod wire;

#[cfg(test)]
pub(crate) mod strategies;

use bytes::{Bytes, BytesMut};

pub use bls::{BaAcc, BaRjt};
pub use ct::{CtIu, CtPreamble, CtReject, Fc4Types, NsAccept, NsRequest, NsResponse, PortObject};
pub use els::{AccPayload, Els, ElsCode, LsRjt, Prli, PrliPage, ServiceParams};
pub use fcp::{FcpCmnd, FcpRsp, FcpXferRdy};
pub use header::{FcHeader, HEADER_LEN, fctl, ftype, rctl};

/// Why bytes could not be decoded as a frame or payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before the structure does.
    #[error("incomplete: need {needed} bytes, have {have}")]
    Incomplete {
        /// Bytes the structure needs from the point where reading stopped.
        needed: usize,
        /// Bytes that were there.
        have: usize,
    },
    /// The bytes are all there but contradict themselves (e.g. a length field).
    #[error("malformed: {what}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
    },
}

/// One information unit, typed. Which variant a frame holds is decided by its
/// R_CTL and TYPE (see [`Frame::iu`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Iu {
    /// TYPE 0x01, R_CTL 0x22 (request) or 0x23 (LS_ACC / LS_RJT).
    Els(Els),
    /// TYPE 0x20, R_CTL 0x02 (request) or 0x03 (accept / reject).
    Ct(CtIu),
    /// TYPE 0x08, R_CTL 0x06.
    FcpCmnd(FcpCmnd),
    /// TYPE 0x08, R_CTL 0x05.
    FcpXferRdy(FcpXferRdy),
    /// TYPE 0x08, R_CTL 0x01: the data; the relative offset is the header parameter.
    FcpData(Bytes),
    /// TYPE 0x08, R_CTL 0x07.
    FcpRsp(FcpRsp),
    /// TYPE 0x00, R_CTL 0x81 (no payload).
    Abts,
    /// TYPE 0x00, R_CTL 0x84.
    BaAcc(BaAcc),
    /// TYPE 0x00, R_CTL 0x85.
    BaRjt(BaRjt),
    /// TYPE 0x22, R_CTL 0x02/0x03: switch-to-switch ILS, kept raw. Its first byte
    /// tells request from reply (0x01 SW_RJT and 0x02 SW_ACC are replies).
    SwIls(Bytes),
    /// Any other R_CTL / TYPE combination.
    Unsupported {
        /// The frame's R_CTL.
        r_ctl: u8,
        /// The frame's TYPE.
        fc_type: u8,
        /// The raw payload.
        payload: Bytes,
    },
}

impl Iu {
    /// The (R_CTL, TYPE) pair a frame carrying this IU must have.
    pub fn routing(&self) -> (u8, u8) {
        match self {
            Iu::Els(e) if e.is_reply() => (rctl::ELS_REPLY, ftype::ELS),
            Iu::Els(_) => (rctl::ELS_REQUEST, ftype::ELS),
            Iu::Ct(ct) if ct.is_reply() => (rctl::CT_REPLY, ftype::CT),
            Iu::Ct(_) => (rctl::CT_REQUEST, ftype::CT),
            Iu::FcpCmnd(_) => (rctl::FCP_CMND, ftype::FCP),
            Iu::FcpXferRdy(_) => (rctl::FCP_XFER_RDY, ftype::FCP),
            Iu::FcpData(_) => (rctl::FCP_DATA, ftype::FCP),
            Iu::FcpRsp(_) => (rctl::FCP_RSP, ftype::FCP),
            Iu::Abts => (rctl::BA_ABTS, ftype::BLS),
            Iu::BaAcc(_) => (rctl::BA_ACC, ftype::BLS),
            Iu::BaRjt(_) => (rctl::BA_RJT, ftype::BLS),
            Iu::SwIls(p) if matches!(p.first(), Some(0x01 | 0x02)) => {
                (rctl::SOLICITED_CONTROL, ftype::SW_ILS)
            }
            Iu::SwIls(_) => (rctl::UNSOLICITED_CONTROL, ftype::SW_ILS),
            Iu::Unsupported { r_ctl, fc_type, .. } => (*r_ctl, *fc_type),
        }
    }

    /// The encoded payload.
    pub fn to_payload(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Iu::Els(e) => e.encode(&mut b),
            Iu::Ct(ct) => ct.encode(&mut b),
            Iu::FcpCmnd(c) => c.encode(&mut b),
            Iu::FcpXferRdy(x) => x.encode(&mut b),
            Iu::FcpRsp(r) => r.encode(&mut b),
            Iu::BaAcc(a) => a.encode(&mut b),
            Iu::BaRjt(r) => r.encode(&mut b),
            Iu::Abts => {}
            Iu::FcpData(p) | Iu::SwIls(p) | Iu::Unsupported { payload: p, .. } => return p.clone(),
        }
        b.freeze()
    }
}

/// One FC-2 frame: header and payload (no SOF/EOF/CRC).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The 24-byte header.
    pub header: FcHeader,
    /// The payload (one IU, or one piece of an FCP_DATA IU).
    pub payload: Bytes,
}

impl Frame {
    /// A frame with this header and payload, as given.
    pub fn new(header: FcHeader, payload: Bytes) -> Frame {
        Frame { header, payload }
    }

    /// A frame carrying `iu`; R_CTL and TYPE are set from the IU, the rest of `header`
    /// is kept.
    pub fn from_iu(mut header: FcHeader, iu: &Iu) -> Frame {
        (header.r_ctl, header.fc_type) = iu.routing();
        Frame {
            header,
            payload: iu.to_payload(),
        }
    }

    /// An ELS frame.
    pub fn els(header: FcHeader, els: &Els) -> Frame {
        let mut b = BytesMut::new();
        els.encode(&mut b);
        let mut header = header;
        header.r_ctl = if els.is_reply() {
            rctl::ELS_REPLY
        } else {
            rctl::ELS_REQUEST
        };
        header.fc_type = ftype::ELS;
        Frame {
            header,
            payload: b.freeze(),
        }
    }

    /// A CT frame (R_CTL 0x02 for requests, 0x03 for accepts/rejects).
    pub fn ct(header: FcHeader, ct: &CtIu) -> Frame {
        let mut b = BytesMut::new();
        ct.encode(&mut b);
        let mut header = header;
        header.r_ctl = if ct.is_reply() {
            rctl::CT_REPLY
        } else {
            rctl::CT_REQUEST
        };
        header.fc_type = ftype::CT;
        Frame {
            header,
            payload: b.freeze(),
        }
    }

    /// An FCP_DATA frame: `data` at `rel_offset`, which goes into the parameter field
    /// with F_CTL's relative-offset-present bit set.
    pub fn fcp_data(header: FcHeader, rel_offset: u32, data: Bytes) -> Frame {
        let mut header = header;
        header.r_ctl = rctl::FCP_DATA;
        header.fc_type = ftype::FCP;
        header.f_ctl |= fctl::RELATIVE_OFFSET;
        header.parameter = rel_offset;
        Frame {
            header,
            payload: data,
        }
    }

    /// Header followed by payload, as one buffer.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        self.header.encode(&mut b);
        b.extend_from_slice(&self.payload);
        b.freeze()
    }

    /// Splits `bytes` into header and payload; the payload is a zero-copy slice.
    pub fn decode(bytes: Bytes) -> Result<Frame, DecodeError> {
        let header = FcHeader::decode(&mut &bytes[..])?;
        Ok(Frame {
            header,
            payload: bytes.slice(HEADER_LEN..),
        })
    }

    /// Interprets the payload from R_CTL and TYPE. `els_request_hint` is the request
    /// an ELS LS_ACC answers (see [`Els::decode`]); it is ignored for other IUs.
    pub fn iu(&self, els_request_hint: Option<ElsCode>) -> Result<Iu, DecodeError> {
        let mut p = self.payload.clone();
        let h = &self.header;
        Ok(match (h.r_ctl, h.fc_type) {
            (rctl::ELS_REQUEST | rctl::ELS_REPLY, ftype::ELS) => {
                Iu::Els(Els::decode(&mut p, els_request_hint)?)
            }
            (rctl::CT_REQUEST | rctl::CT_REPLY, ftype::CT) => Iu::Ct(CtIu::decode(&mut p)?),
            (rctl::FCP_CMND, ftype::FCP) => Iu::FcpCmnd(FcpCmnd::decode(&mut p)?),
            (rctl::FCP_XFER_RDY, ftype::FCP) => Iu::FcpXferRdy(FcpXferRdy::decode(&mut p)?),
            (rctl::FCP_DATA, ftype::FCP) => Iu::FcpData(p),
            (rctl::FCP_RSP, ftype::FCP) => Iu::FcpRsp(FcpRsp::decode(&mut p)?),
            (rctl::BA_ABTS, ftype::BLS) => Iu::Abts,
            (rctl::BA_ACC, ftype::BLS) => Iu::BaAcc(BaAcc::decode(&mut p)?),
            (rctl::BA_RJT, ftype::BLS) => Iu::BaRjt(BaRjt::decode(&mut p)?),
            (rctl::UNSOLICITED_CONTROL | rctl::SOLICITED_CONTROL, ftype::SW_ILS) => Iu::SwIls(p),
            (r_ctl, fc_type) => Iu::Unsupported {
                r_ctl,
                fc_type,
                payload: p,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcid::FcId;
    use crate::frame::strategies::{arb_header, arb_iu_with_hint};
    use crate::wwn::{Wwn, Wwnn, Wwpn};
    use proptest::prelude::*;

    #[test]
    fn flogi_frame_known_answer() {
        let h = FcHeader::request(0, 0, FcId::FABRIC_LOGIN, FcId::UNIDENTIFIED, 0x0001);
        let sp = ServiceParams::flogi(
            Wwpn(Wwn(0x1000_0000_0000_0001)),
            Wwnn(Wwn(0x2000_0000_0000_0001)),
        );
        let f = Frame::els(h, &Els::Flogi(sp));
        let b = f.encode();
        assert_eq!(b.len(), 24 + 116);
        assert_eq!(
            &b[..12],
            &[0x22, 0xFF, 0xFF, 0xFE, 0, 0, 0, 0, 0x01, 0x29, 0, 0]
        );
        assert_eq!(&b[24..28], &[0x04, 0, 0, 0]);
        let back = Frame::decode(b).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.iu(None).unwrap(), Iu::Els(Els::Flogi(sp)));
    }

    #[test]
    fn decode_payload_is_zero_copy() {
        let f = Frame::fcp_data(
            FcHeader::request(0, 0, FcId::new(1), FcId::new(2), 3),
            0x800,
            Bytes::from_static(&[9; 64]),
        );
        let wire = f.encode();
        let back = Frame::decode(wire.clone()).unwrap();
        assert_eq!(back.payload.as_ptr(), wire[HEADER_LEN..].as_ptr());
        assert_eq!(back.header.parameter, 0x800);
        assert!(back.header.f_ctl & fctl::RELATIVE_OFFSET != 0);
        assert_eq!(
            back.iu(None).unwrap(),
            Iu::FcpData(Bytes::from_static(&[9; 64]))
        );
    }

    #[test]
    fn unknown_routing_is_data() {
        let f = Frame::new(
            FcHeader {
                r_ctl: 0xC0,
                fc_type: 0x05,
                ..FcHeader::default()
            },
            Bytes::new(),
        );
        assert_eq!(
            f.iu(None).unwrap(),
            Iu::Unsupported {
                r_ctl: 0xC0,
                fc_type: 0x05,
                payload: Bytes::new()
            }
        );
        assert!(matches!(
            Frame::decode(Bytes::from_static(&[0; 10])),
            Err(DecodeError::Incomplete {
                needed: 24,
                have: 10
            })
        ));
    }

    proptest! {
        #[test]
        fn frame_roundtrip(h in arb_header(), (iu, hint) in arb_iu_with_hint()) {
            let f = Frame::from_iu(h, &iu);
            let back = Frame::decode(f.encode()).unwrap();
            prop_assert_eq!(&back, &f);
            prop_assert_eq!(back.iu(hint).unwrap(), iu);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            b in proptest::collection::vec(any::<u8>(), 0..400),
            hint in any::<u8>(),
        ) {
            if let Ok(f) = Frame::decode(Bytes::from(b)) {
                let _ = f.iu(None);
                let _ = f.iu(Some(ElsCode::from_u8(hint)));
            }
        }

        /// Arbitrary payloads under every routing this codec knows.
        #[test]
        fn arbitrary_payloads_never_panic(
            p in proptest::collection::vec(any::<u8>(), 0..700),
            route in prop::sample::select(vec![
                (0x22u8, 1u8), (0x23, 1), (0x02, 0x20), (0x03, 0x20), (0x06, 8), (0x05, 8),
                (0x01, 8), (0x07, 8), (0x81, 0), (0x84, 0), (0x85, 0), (0x02, 0x22),
            ]),
            hint in prop::sample::select(vec![None, Some(ElsCode::Plogi), Some(ElsCode::Prli), Some(ElsCode::Logo)]),
        ) {
            let f = Frame::new(FcHeader { r_ctl: route.0, fc_type: route.1, ..FcHeader::default() }, Bytes::from(p));
            if let Ok(Iu::Ct(ct)) = f.iu(hint) {
                let _ = NsRequest::from_ct(&ct);
                let _ = NsResponse::from_ct(&ct, ct::ns_cmd::GA_NXT);
                let _ = NsResponse::from_ct(&ct, ct::ns_cmd::GID_FT);
            }
        }
    }
}
