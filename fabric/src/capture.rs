//! Frame capture as a libpcap file that Wireshark decodes: the file format and the
//! cutting of long information units into real-sized FC frames. Sans-IO: it encodes
//! into `impl BufMut` and never touches a file, a socket or a clock.
//!
//! The file is a classic libpcap file (nanosecond timestamps, magic `0xa1b23c4d`,
//! little-endian) with link type **LINKTYPE_FC_2 (224)**: every record is one FC-2
//! frame, the 24-byte header followed by the data field, with no SOF, EOF or CRC —
//! exactly what [`Frame::encode`] produces. Wireshark and tshark decode it as FC, then
//! ELS, CT/dNS, FCP and SCSI.
//!
//! **Segmentation.** fcsim sends one message per information unit (an FCP_DATA IU may
//! be 256 KiB), but a real FC frame carries at most [`MAX_PAYLOAD`] (2112) bytes. So
//! [`segment`] cuts a frame whose data field is longer into a sequence of frames the
//! way an HBA would: [`SEGMENT_PAYLOAD`] (2048) bytes each, the last one shorter; the
//! same R_CTL, TYPE, addresses, OX_ID, RX_ID and SEQ_ID; SEQ_CNT counting up from the
//! original's; F_CTL "relative offset present" set in every frame with the PARAMETER
//! word holding that frame's relative offset (the original's offset plus the bytes
//! before it); and the bits that are meaningful only in the last frame of a sequence
//! (end of sequence, sequence initiative, end connection, continue-sequence condition,
//! fill bytes) kept only in the last frame, as the original had them. A frame of at
//! most 2112 data bytes is written unchanged.
//!
//! Start here: [`put_file_header`], then [`put_frame`] for each captured frame.

use std::time::Duration;

use bytes::{BufMut, Bytes};

use crate::frame::{FcHeader, Frame, HEADER_LEN, fctl};

/// libpcap link type for FC-2 frames without delimiters (tcpdump.org link-layer
/// header types): the header and data field, no SOF/EOF/CRC.
pub const LINKTYPE_FC_2: u32 = 224;

/// The classic libpcap magic number for nanosecond-resolution timestamps.
pub const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;

/// Length of the libpcap file header.
pub const FILE_HEADER_LEN: usize = 24;

/// Length of a libpcap record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// The largest data field of an FC frame (FC-FS-4 §9.1): 2112 bytes.
pub const MAX_PAYLOAD: usize = 2112;

/// The data field of every frame but the last when a long frame is cut: 2048 bytes,
/// a whole number of 512-byte blocks, as HBAs send FCP_DATA.
pub const SEGMENT_PAYLOAD: usize = 2048;

/// Snapshot length written in the file header; every record is shorter.
const SNAPLEN: u32 = 65_535;

/// F_CTL bits that are meaningful only in the last frame of a sequence (FC-FS-4
/// table 43): End_Sequence (19), End_Connection (18), Sequence_Initiative (16),
/// Continue Sequence Condition (7–6) and Fill Data Bytes (1–0).
const LAST_FRAME_ONLY: u32 =
    fctl::END_SEQUENCE | (1 << 18) | fctl::SEQUENCE_INITIATIVE | (0b11 << 6) | 0b11;

/// Which way a captured frame crossed its port, seen from the node that owns the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// The frame arrived on the port.
    Received,
    /// The frame left through the port.
    Sent,
}

/// Writes the 24-byte libpcap file header (LINKTYPE_FC_2, nanosecond timestamps).
pub fn put_file_header(buf: &mut impl BufMut) {
    buf.put_u32_le(PCAP_MAGIC_NS);
    buf.put_u16_le(2); // version major
    buf.put_u16_le(4); // version minor
    buf.put_i32_le(0); // thiszone: timestamps are UTC
    buf.put_u32_le(0); // sigfigs
    buf.put_u32_le(SNAPLEN);
    buf.put_u32_le(LINKTYPE_FC_2);
}

/// Writes one record: the record header for `ts` (time since the Unix epoch) and then
/// `parts`, concatenated, as the packet bytes.
pub fn put_record(buf: &mut impl BufMut, ts: Duration, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    buf.put_u32_le(u32::try_from(ts.as_secs()).unwrap_or(u32::MAX));
    buf.put_u32_le(ts.subsec_nanos());
    buf.put_u32_le(len);
    buf.put_u32_le(len);
    for p in parts {
        buf.put_slice(p);
    }
}

/// Writes one captured frame (`fc2`: header and data field as sent on the cable) as
/// one record, or, when its data field exceeds [`MAX_PAYLOAD`], as the records of its
/// [`segment`]s, all stamped `ts`. Returns the number of records written. Bytes too
/// short to hold a header are written as they are.
pub fn put_frame(buf: &mut impl BufMut, ts: Duration, fc2: &Bytes) -> usize {
    if fc2.len() <= HEADER_LEN + MAX_PAYLOAD {
        put_record(buf, ts, &[fc2]);
        return 1;
    }
    let Ok(frame) = Frame::decode(fc2.clone()) else {
        put_record(buf, ts, &[fc2]);
        return 1;
    };
    let parts = segment(&frame);
    let mut header = Vec::with_capacity(HEADER_LEN);
    for p in &parts {
        header.clear();
        p.header.encode(&mut header);
        put_record(buf, ts, &[&header, &p.payload]);
    }
    parts.len()
}

/// Cuts `frame` into frames of at most [`MAX_PAYLOAD`] data bytes (see the module
/// doc for the rule). A frame that already fits comes back alone and unchanged. The
/// payloads are zero-copy slices of the original.
pub fn segment(frame: &Frame) -> Vec<Frame> {
    let len = frame.payload.len();
    if len <= MAX_PAYLOAD {
        return vec![frame.clone()];
    }
    let h = frame.header;
    let base = if h.f_ctl & fctl::RELATIVE_OFFSET != 0 {
        h.parameter
    } else {
        0
    };
    let count = len.div_ceil(SEGMENT_PAYLOAD);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let start = i * SEGMENT_PAYLOAD;
        let end = (start + SEGMENT_PAYLOAD).min(len);
        let last = i + 1 == count;
        let f_ctl = if last {
            h.f_ctl | fctl::RELATIVE_OFFSET
        } else {
            (h.f_ctl & !LAST_FRAME_ONLY) | fctl::RELATIVE_OFFSET
        };
        let offset = u32::try_from(start).unwrap_or(u32::MAX);
        // SEQ_CNT wraps after 65535 (FC-FS-4 §9.11), and so does the offset field.
        let seq_cnt = h.seq_cnt.wrapping_add(u16::try_from(i).unwrap_or(u16::MAX));
        let header = FcHeader {
            f_ctl,
            seq_cnt,
            parameter: base.wrapping_add(offset),
            ..h
        };
        out.push(Frame::new(header, frame.payload.slice(start..end)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcid::FcId;
    use crate::frame::strategies::arb_header;
    use crate::frame::{ftype, rctl};
    use proptest::prelude::*;

    /// Puts the data fields of a cut sequence back together by relative offset, as a
    /// receiver does; `None` if they leave a gap or overlap.
    fn reassemble(parts: &[Frame]) -> Option<Vec<u8>> {
        let base = parts.first()?.header.parameter;
        let mut out = Vec::new();
        for p in parts {
            let at = usize::try_from(p.header.parameter.wrapping_sub(base)).ok()?;
            if at != out.len() {
                return None;
            }
            out.extend_from_slice(&p.payload);
        }
        Some(out)
    }

    fn data_frame(len: usize, rel: u32) -> Frame {
        let h = FcHeader::request(
            rctl::FCP_DATA,
            ftype::FCP,
            FcId::new(0x01_02_00),
            FcId::new(0x01_01_00),
            0x1234,
        );
        let payload: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
        Frame::fcp_data(h, rel, Bytes::from(payload))
    }

    #[test]
    fn file_header_is_classic_pcap_fc2_ns() {
        let mut b = Vec::new();
        put_file_header(&mut b);
        assert_eq!(b.len(), FILE_HEADER_LEN);
        assert_eq!(&b[..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(&b[4..8], &[2, 0, 4, 0]);
        assert_eq!(&b[20..24], &[224, 0, 0, 0]);
    }

    #[test]
    fn record_header_carries_seconds_nanoseconds_and_lengths() {
        let mut b = Vec::new();
        put_record(&mut b, Duration::new(3, 250), &[&[1, 2], &[3]]);
        assert_eq!(
            b,
            [3, 0, 0, 0, 250, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3]
        );
    }

    #[test]
    fn a_frame_that_fits_is_one_record_byte_for_byte() {
        let f = data_frame(MAX_PAYLOAD, 0);
        let wire = f.encode();
        let mut b = Vec::new();
        assert_eq!(put_frame(&mut b, Duration::ZERO, &wire), 1);
        assert_eq!(&b[RECORD_HEADER_LEN..], &wire[..]);
        assert_eq!(segment(&f), vec![f]);
    }

    /// 5000 data bytes at offset 0x10000 from the exchange responder: 2048 + 2048 +
    /// 904, offsets 0x10000, 0x10800, 0x11000, SEQ_CNT 0, 1, 2; only the last frame
    /// ends the sequence and transfers the initiative.
    #[test]
    fn a_long_frame_is_cut_into_a_sequence() {
        let mut f = data_frame(5000, 0x1_0000);
        f.header.f_ctl |= fctl::EXCHANGE_CONTEXT | fctl::LAST_SEQUENCE;
        f.header.rx_id = 0x0042;
        let parts = segment(&f);
        let lens: Vec<usize> = parts.iter().map(|p| p.payload.len()).collect();
        assert_eq!(lens, [2048, 2048, 904]);
        let offsets: Vec<u32> = parts.iter().map(|p| p.header.parameter).collect();
        assert_eq!(offsets, [0x1_0000, 0x1_0800, 0x1_1000]);
        let cnts: Vec<u16> = parts.iter().map(|p| p.header.seq_cnt).collect();
        assert_eq!(cnts, [0, 1, 2]);
        for (i, p) in parts.iter().enumerate() {
            let last = i == 2;
            let h = p.header;
            assert_eq!((h.ox_id, h.rx_id, h.seq_id), (0x1234, 0x0042, 0));
            assert_eq!((h.s_id, h.d_id, h.r_ctl), (f.header.s_id, f.header.d_id, 1));
            assert!(h.f_ctl & fctl::RELATIVE_OFFSET != 0);
            assert!(h.f_ctl & fctl::EXCHANGE_CONTEXT != 0);
            assert!(h.f_ctl & fctl::FIRST_SEQUENCE != 0);
            assert_eq!(h.f_ctl & fctl::END_SEQUENCE != 0, last);
            assert_eq!(h.f_ctl & fctl::SEQUENCE_INITIATIVE != 0, last);
        }
        assert_eq!(parts[2].header.f_ctl, f.header.f_ctl);
        assert_eq!(reassemble(&parts).unwrap(), f.payload.to_vec());
        // Zero-copy: the pieces are slices of the original payload.
        assert_eq!(parts[1].payload.as_ptr(), f.payload[2048..].as_ptr());
    }

    #[test]
    fn a_long_frame_without_relative_offset_gets_one_from_zero() {
        let h = FcHeader::request(
            rctl::CT_REQUEST,
            ftype::CT,
            FcId::NAME_SERVER,
            FcId::new(0x01_01_00),
            7,
        );
        let f = Frame::new(h.with_parameter(0xdead), Bytes::from(vec![0u8; 4096]));
        let parts = segment(&f);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].header.parameter, 0);
        assert_eq!(parts[1].header.parameter, 2048);
        assert!(
            parts
                .iter()
                .all(|p| p.header.f_ctl & fctl::RELATIVE_OFFSET != 0)
        );
    }

    #[test]
    fn put_frame_writes_every_segment_as_a_record() {
        let f = data_frame(256 * 1024, 0);
        let mut b = Vec::new();
        assert_eq!(
            put_frame(&mut b, Duration::from_micros(5), &f.encode()),
            128
        );
        let mut rest = &b[..];
        let mut parts = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
            let rec = Bytes::copy_from_slice(&rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len]);
            assert!(rec.len() <= HEADER_LEN + MAX_PAYLOAD);
            parts.push(Frame::decode(rec).unwrap());
            rest = &rest[RECORD_HEADER_LEN + len..];
        }
        assert_eq!(parts.len(), 128);
        assert_eq!(reassemble(&parts).unwrap(), f.payload.to_vec());
    }

    #[test]
    fn bytes_shorter_than_a_header_are_written_as_they_are() {
        let mut b = Vec::new();
        assert_eq!(
            put_frame(&mut b, Duration::ZERO, &Bytes::from_static(&[1, 2, 3])),
            1
        );
        assert_eq!(&b[RECORD_HEADER_LEN..], &[1, 2, 3]);
    }

    proptest! {
        /// Cutting and putting back gives the original data field, every piece fits a
        /// real frame, SEQ_CNT counts up, and only the last piece ends the sequence.
        #[test]
        fn segments_reassemble_to_the_original(
            h in arb_header(),
            len in 0usize..20_000,
            fill in any::<u8>(),
        ) {
            let f = Frame::new(h, Bytes::from(vec![fill; len]));
            let parts = segment(&f);
            prop_assert!(!parts.is_empty());
            prop_assert!(parts.iter().all(|p| p.payload.len() <= MAX_PAYLOAD));
            let joined: Vec<u8> = parts.iter().flat_map(|p| p.payload.to_vec()).collect();
            prop_assert_eq!(&joined, &f.payload.to_vec());
            if parts.len() == 1 {
                prop_assert_eq!(&parts[0], &f);
            } else {
                prop_assert_eq!(reassemble(&parts).unwrap(), f.payload.to_vec());
                for (i, p) in parts.iter().enumerate() {
                    let last = i + 1 == parts.len();
                    let n = u16::try_from(i).unwrap();
                    prop_assert_eq!(p.header.seq_cnt, h.seq_cnt.wrapping_add(n));
                    prop_assert_eq!(p.header.ox_id, h.ox_id);
                    prop_assert_eq!(p.header.seq_id, h.seq_id);
                    prop_assert_eq!(p.header.f_ctl & fctl::END_SEQUENCE != 0,
                        last && h.f_ctl & fctl::END_SEQUENCE != 0);
                    prop_assert!(p.header.f_ctl & fctl::RELATIVE_OFFSET != 0);
                    // Each piece is a frame the codec reads back as it was written.
                    prop_assert_eq!(&Frame::decode(p.encode()).unwrap(), p);
                }
            }
        }

        /// Whatever bytes a node captured, writing them never panics and every record
        /// holds at most one real-sized frame.
        #[test]
        fn put_frame_never_panics(b in proptest::collection::vec(any::<u8>(), 0..6000)) {
            let mut out = Vec::new();
            let n = put_frame(&mut out, Duration::ZERO, &Bytes::from(b));
            prop_assert!(n >= 1);
        }
    }
}
