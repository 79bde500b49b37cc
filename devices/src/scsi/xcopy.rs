//! EXTENDED COPY (LID1) parameter lists and RECEIVE COPY RESULTS data (SPC-4 §6.3 and
//! §6.18; SPC-5 §6.5 and §6.22–6.24 for the LID1 forms; layouts cross-checked against
//! Linux LIO `target_core_xcopy.c` and sg3_utils/ddpt).
//!
//! Parameter list (LID1), all big-endian:
//!
//! ```text
//! byte 0      LIST IDENTIFIER
//! byte 1      reserved(7:6) | STR(5) | LIST ID USAGE(4:3) (SPC-3: NRCR is bit 4) | PRIORITY(2:0)
//! bytes 2-3   CSCD (TARGET) DESCRIPTOR LIST LENGTH (multiple of 32)
//! bytes 4-7   reserved
//! bytes 8-11  SEGMENT DESCRIPTOR LIST LENGTH
//! bytes 12-15 INLINE DATA LENGTH
//! bytes 16-   CSCD descriptors, then segment descriptors, then inline data
//! ```
//!
//! Identification CSCD descriptor E4h, 32 bytes (SPC-5 §6.6.5.6, table 140):
//!
//! ```text
//! byte 0      DESCRIPTOR TYPE CODE (E4h)
//! byte 1      LU ID TYPE(7:6) | obsolete(5) | PERIPHERAL DEVICE TYPE(4:0)
//! bytes 2-3   RELATIVE INITIATOR PORT IDENTIFIER
//! byte 4      reserved(7:4) | CODE SET(3:0) = 1 binary
//! byte 5      reserved(7:6) | ASSOCIATION(5:4) = 0 LU | DESIGNATOR TYPE(3:0) = 3 NAA
//! byte 6      reserved
//! byte 7      DESIGNATOR LENGTH (8 or 16)
//! bytes 8-27  DESIGNATOR (zero padded)
//! bytes 28-31 device type specific: block: PAD(byte 28 bit 2), DISK BLOCK LENGTH(29-31);
//!             stream: PAD(bit 2), FIXED(bit 0), STREAM BLOCK LENGTH(29-31)
//! ```
//!
//! Segment descriptor 02h block→block, 28 bytes (SPC-4 §6.3.7.5):
//!
//! ```text
//! byte 0 type 02h | byte 1 reserved(7:2) DC(1) CAT(0) | bytes 2-3 DESCRIPTOR LENGTH (0018h)
//! bytes 4-5 SOURCE index | bytes 6-7 DESTINATION index | bytes 8-9 reserved
//! bytes 10-11 BLOCK DEVICE NUMBER OF BLOCKS | bytes 12-19 SOURCE LBA | bytes 20-27 DESTINATION LBA
//! ```
//!
//! Segment descriptor 00h block→stream, 24 bytes (SPC-4 §6.3.7.3, SPC-5 table 149):
//!
//! ```text
//! byte 0 type 00h | byte 1 reserved(7:1) CAT(0) | bytes 2-3 DESCRIPTOR LENGTH (0014h)
//! bytes 4-5 SOURCE index | bytes 6-7 DESTINATION index | byte 8 reserved
//! bytes 9-11 STREAM DEVICE TRANSFER LENGTH | bytes 12-13 reserved
//! bytes 14-15 BLOCK DEVICE NUMBER OF BLOCKS | bytes 16-23 BLOCK DEVICE LBA
//! ```

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use fcsim_fabric::Wwpn;

use super::inquiry::{DeviceType, NaaId, ThirdPartyCopyPage};
use super::sense::{Sense, SenseKey, asc};
use super::{DecodeError, be16, be32, be64, need};

/// Parameter list header length.
pub const HEADER_LEN: usize = 16;
/// CSCD (target) descriptor length.
pub const CSCD_LEN: usize = 32;
/// Block→block segment descriptor length (DESCRIPTOR LENGTH 0018h + 4).
pub const SEG_BLOCK_TO_BLOCK_LEN: usize = 28;
/// Block→stream segment descriptor length (DESCRIPTOR LENGTH 0014h + 4).
pub const SEG_BLOCK_TO_STREAM_LEN: usize = 24;

/// Descriptor type codes (SPC-4 §6.3.5, table 110).
pub mod descriptor_type {
    /// Segment: block device → stream device.
    pub const BLOCK_TO_STREAM: u8 = 0x00;
    /// Segment: stream device → block device.
    pub const STREAM_TO_BLOCK: u8 = 0x01;
    /// Segment: block device → block device.
    pub const BLOCK_TO_BLOCK: u8 = 0x02;
    /// Segment: stream device → stream device.
    pub const STREAM_TO_STREAM: u8 = 0x03;
    /// CSCD: identification descriptor (designator from VPD page 83h).
    pub const IDENTIFICATION: u8 = 0xE4;
}

/// Device type specific parameters of a CSCD descriptor (bytes 28-31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceParams {
    /// Block device (peripheral type 00h).
    Block {
        /// PAD bit.
        pad: bool,
        /// DISK BLOCK LENGTH (0 = ask the LU with READ CAPACITY).
        block_bytes: u32,
    },
    /// Stream device (peripheral type 01h).
    Stream {
        /// PAD bit.
        pad: bool,
        /// FIXED: fixed-length records of `block_bytes` (else variable length).
        fixed: bool,
        /// STREAM BLOCK LENGTH (0 exactly when `fixed` is false).
        block_bytes: u32,
    },
}

impl DeviceParams {
    /// The peripheral device type these parameters belong to.
    pub fn device_type(&self) -> DeviceType {
        match self {
            DeviceParams::Block { .. } => DeviceType::Disk,
            DeviceParams::Stream { .. } => DeviceType::Tape,
        }
    }
    /// The block length field.
    pub fn block_bytes(&self) -> u32 {
        match self {
            DeviceParams::Block { block_bytes, .. } | DeviceParams::Stream { block_bytes, .. } => {
                *block_bytes
            }
        }
    }
}

/// An identification (E4h) CSCD descriptor: a logical unit named by its NAA designator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetDescriptor {
    /// The LU's NAA designator (as in its VPD page 83h, association LU).
    pub naa: NaaId,
    /// RELATIVE INITIATOR PORT IDENTIFIER (0 = any port).
    pub relative_initiator_port: u16,
    /// Peripheral type and its parameters.
    pub params: DeviceParams,
}

/// A segment descriptor: one unit of copy work, naming CSCDs by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// 02h block → block.
    BlockToBlock {
        /// CAT bit.
        cat: bool,
        /// DC: `blocks` counts destination blocks (else source blocks).
        dc: bool,
        /// Source CSCD index.
        src: u16,
        /// Destination CSCD index.
        dst: u16,
        /// BLOCK DEVICE NUMBER OF BLOCKS.
        blocks: u16,
        /// Source LBA.
        src_lba: u64,
        /// Destination LBA.
        dst_lba: u64,
    },
    /// 00h block → stream.
    BlockToStream {
        /// CAT bit.
        cat: bool,
        /// Source (block) CSCD index.
        src: u16,
        /// Destination (stream) CSCD index.
        dst: u16,
        /// STREAM DEVICE TRANSFER LENGTH (24 bits): bytes per write (variable) or
        /// records per write (fixed).
        stream_transfer_length: u32,
        /// BLOCK DEVICE NUMBER OF BLOCKS.
        blocks: u16,
        /// BLOCK DEVICE LOGICAL BLOCK ADDRESS.
        lba: u64,
    },
}

impl Segment {
    /// (source index, destination index).
    pub fn indices(&self) -> (u16, u16) {
        match *self {
            Segment::BlockToBlock { src, dst, .. } | Segment::BlockToStream { src, dst, .. } => {
                (src, dst)
            }
        }
    }
}

/// An EXTENDED COPY (LID1) parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterList {
    /// LIST IDENTIFIER: names the copy in RECEIVE COPY RESULTS.
    pub list_id: u8,
    /// STR: sequential striped hint.
    pub str_bit: bool,
    /// LIST ID USAGE (2 bits): 00b keep status, 10b don't keep (SPC-3 NRCR), 11b no id.
    pub list_id_usage: u8,
    /// PRIORITY (3 bits).
    pub priority: u8,
    /// CSCD descriptors, indexed by segment descriptors.
    pub targets: Vec<TargetDescriptor>,
    /// Segment descriptors, processed in order.
    pub segments: Vec<Segment>,
    /// Inline data (fcsim advertises a maximum of 0 bytes by default).
    pub inline_data: Bytes,
}

/// RECEIVE COPY RESULTS operating parameters (SPC-4 §6.18.4, table 175) — and the limits
/// a copy manager enforces on parameter lists.
///
/// ```text
/// bytes 0-3   AVAILABLE DATA (n - 3)        byte 4 reserved(7:1) | SNLID(0)
/// bytes 8-9   MAXIMUM TARGET (CSCD) DESCRIPTOR COUNT
/// bytes 10-11 MAXIMUM SEGMENT DESCRIPTOR COUNT
/// bytes 12-15 MAXIMUM DESCRIPTOR LIST LENGTH
/// bytes 16-19 MAXIMUM SEGMENT LENGTH        bytes 20-23 MAXIMUM INLINE DATA LENGTH
/// bytes 24-27 HELD DATA LIMIT               bytes 28-31 MAXIMUM STREAM DEVICE TRANSFER SIZE
/// bytes 34-35 TOTAL CONCURRENT COPIES       byte 36 MAXIMUM CONCURRENT COPIES
/// byte 37 DATA SEGMENT GRANULARITY (log2)   byte 38 INLINE DATA GRANULARITY (log2)
/// byte 39 HELD DATA GRANULARITY (log2)      byte 43 IMPLEMENTED DESCRIPTOR LIST LENGTH
/// bytes 44-   implemented descriptor type codes (ascending)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatingParameters {
    /// SNLID: the copy manager supports LIST ID USAGE 11b (no list identifier).
    pub supports_no_list_id: bool,
    /// Maximum CSCD descriptors per list.
    pub max_target_descriptors: u16,
    /// Maximum segment descriptors per list.
    pub max_segment_descriptors: u16,
    /// Maximum CSCD + segment descriptor bytes.
    pub max_descriptor_list_length: u32,
    /// Maximum bytes one segment may move.
    pub max_segment_length: u32,
    /// Maximum inline data bytes.
    pub max_inline_data_length: u32,
    /// HELD DATA LIMIT bytes.
    pub held_data_limit: u32,
    /// MAXIMUM STREAM DEVICE TRANSFER SIZE bytes.
    pub max_stream_device_transfer_size: u32,
    /// TOTAL CONCURRENT COPIES.
    pub total_concurrent_copies: u16,
    /// MAXIMUM CONCURRENT COPIES (tracked list identifiers).
    pub max_concurrent_copies: u8,
    /// DATA SEGMENT GRANULARITY, log2 bytes.
    pub data_segment_granularity_log2: u8,
    /// INLINE DATA GRANULARITY, log2 bytes.
    pub inline_data_granularity_log2: u8,
    /// HELD DATA GRANULARITY, log2 bytes.
    pub held_data_granularity_log2: u8,
    /// Implemented segment and CSCD descriptor type codes.
    pub implemented_descriptors: Vec<u8>,
}

impl Default for OperatingParameters {
    /// fcsim's copy manager: 8 CSCDs, 64 segments, block→block and block→stream,
    /// 256 MiB per segment, no inline or held data.
    fn default() -> Self {
        OperatingParameters {
            supports_no_list_id: true,
            max_target_descriptors: 8,
            max_segment_descriptors: 64,
            max_descriptor_list_length: 8 * 32 + 64 * 28,
            max_segment_length: 256 << 20,
            max_inline_data_length: 0,
            held_data_limit: 0,
            max_stream_device_transfer_size: 1 << 20,
            total_concurrent_copies: 16,
            max_concurrent_copies: 16,
            data_segment_granularity_log2: 9,
            inline_data_granularity_log2: 0,
            held_data_granularity_log2: 0,
            implemented_descriptors: vec![
                descriptor_type::BLOCK_TO_STREAM,
                descriptor_type::BLOCK_TO_BLOCK,
                descriptor_type::IDENTIFICATION,
            ],
        }
    }
}

impl OperatingParameters {
    /// Encodes the RECEIVE COPY RESULTS / OPERATING PARAMETERS data.
    pub fn encode(&self) -> Bytes {
        let n = self.implemented_descriptors.len().min(255);
        let mut b = BytesMut::with_capacity(44 + n);
        b.put_u32(u32::try_from(40 + n).unwrap_or(u32::MAX));
        b.put_u8(u8::from(self.supports_no_list_id));
        b.put_bytes(0, 3);
        b.put_u16(self.max_target_descriptors);
        b.put_u16(self.max_segment_descriptors);
        b.put_u32(self.max_descriptor_list_length);
        b.put_u32(self.max_segment_length);
        b.put_u32(self.max_inline_data_length);
        b.put_u32(self.held_data_limit);
        b.put_u32(self.max_stream_device_transfer_size);
        b.put_u16(0);
        b.put_u16(self.total_concurrent_copies);
        b.put_u8(self.max_concurrent_copies);
        b.put_u8(self.data_segment_granularity_log2);
        b.put_u8(self.inline_data_granularity_log2);
        b.put_u8(self.held_data_granularity_log2);
        b.put_bytes(0, 3);
        b.put_u8(u8::try_from(n).unwrap_or(u8::MAX));
        b.put_slice(&self.implemented_descriptors[..n]);
        b.freeze()
    }

    /// Decodes operating parameters data.
    pub fn decode(b: &[u8]) -> Result<OperatingParameters, DecodeError> {
        const WHAT: &str = "operating parameters";
        need(WHAT, b, 44)?;
        let n = usize::from(b[43]);
        need(WHAT, b, 44 + n)?;
        Ok(OperatingParameters {
            supports_no_list_id: b[4] & 1 != 0,
            max_target_descriptors: be16(b, 8),
            max_segment_descriptors: be16(b, 10),
            max_descriptor_list_length: be32(b, 12),
            max_segment_length: be32(b, 16),
            max_inline_data_length: be32(b, 20),
            held_data_limit: be32(b, 24),
            max_stream_device_transfer_size: be32(b, 28),
            total_concurrent_copies: be16(b, 34),
            max_concurrent_copies: b[36],
            data_segment_granularity_log2: b[37],
            inline_data_granularity_log2: b[38],
            held_data_granularity_log2: b[39],
            implemented_descriptors: b[44..44 + n].to_vec(),
        })
    }

    /// The third-party copy VPD page (8Fh) advertising these limits.
    pub fn third_party_copy_page(&self) -> ThirdPartyCopyPage {
        ThirdPartyCopyPage {
            commands: vec![(0x83, vec![0x00]), (0x84, vec![0x00, 0x03])],
            max_cscd_descriptors: self.max_target_descriptors,
            max_segment_descriptors: self.max_segment_descriptors,
            max_descriptor_list_length: self.max_descriptor_list_length,
            max_inline_data_length: self.max_inline_data_length,
            supported_descriptors: self.implemented_descriptors.clone(),
            total_concurrent_copies: u32::from(self.total_concurrent_copies),
            max_identified_concurrent_copies: u32::from(self.max_concurrent_copies),
            max_segment_length: self.max_segment_length,
            data_segment_granularity_log2: self.data_segment_granularity_log2,
            inline_data_granularity_log2: self.inline_data_granularity_log2,
        }
    }
}

fn fp(at: usize) -> u16 {
    u16::try_from(at).unwrap_or(u16::MAX)
}

fn field(at: usize, bit: Option<u8>) -> Sense {
    Sense::invalid_field_in_param(fp(at), bit)
}

fn length_error() -> Sense {
    Sense::new(SenseKey::ILLEGAL_REQUEST, asc::PARAMETER_LIST_LENGTH_ERROR)
}

fn top_bit(b: u8) -> Option<u8> {
    (b != 0).then(|| 7 - u8::try_from(b.leading_zeros()).unwrap_or(7))
}

impl ParameterList {
    /// Parses and validates a parameter list against `limits`. Every error is an
    /// ILLEGAL REQUEST sense (or COPY ABORTED / INCORRECT COPY TARGET DEVICE TYPE when
    /// a segment names the wrong kind of device) with a parameter-list field pointer.
    pub fn parse(b: &[u8], limits: &OperatingParameters) -> Result<ParameterList, Sense> {
        if b.len() < HEADER_LEN {
            return Err(length_error());
        }
        if let Some(bit) = top_bit(b[1] & 0xC0) {
            return Err(field(1, Some(bit)));
        }
        if b[4..8].iter().any(|&x| x != 0) {
            return Err(field(4, None));
        }
        let list_id = b[0];
        let list_id_usage = (b[1] >> 3) & 3;
        if list_id_usage == 0b01 {
            return Err(field(1, Some(4)));
        }
        if list_id_usage == 0b11 && (list_id != 0 || !limits.supports_no_list_id) {
            return Err(field(0, None));
        }
        let tdll = usize::from(be16(b, 2));
        let sdll = usize::try_from(be32(b, 8)).unwrap_or(usize::MAX);
        let inline = usize::try_from(be32(b, 12)).unwrap_or(usize::MAX);
        if tdll % CSCD_LEN != 0 {
            return Err(field(2, None));
        }
        if tdll / CSCD_LEN > usize::from(limits.max_target_descriptors) {
            return Err(Sense::param_error(
                asc::TOO_MANY_TARGET_DESCRIPTORS,
                2,
                None,
            ));
        }
        let max_list = usize::try_from(limits.max_descriptor_list_length).unwrap_or(usize::MAX);
        if tdll.saturating_add(sdll) > max_list {
            return Err(length_error());
        }
        if inline > usize::try_from(limits.max_inline_data_length).unwrap_or(usize::MAX) {
            return Err(Sense::param_error(
                asc::INLINE_DATA_LENGTH_EXCEEDED,
                12,
                None,
            ));
        }
        let total = HEADER_LEN
            .saturating_add(tdll)
            .saturating_add(sdll)
            .saturating_add(inline);
        if total > b.len() {
            return Err(length_error());
        }
        let implemented = |code: u8| limits.implemented_descriptors.contains(&code);

        let mut targets = Vec::with_capacity(tdll / CSCD_LEN);
        for i in 0..tdll / CSCD_LEN {
            let off = HEADER_LEN + i * CSCD_LEN;
            let d = &b[off..off + CSCD_LEN];
            if d[0] != descriptor_type::IDENTIFICATION || !implemented(d[0]) {
                return Err(Sense::param_error(
                    asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
                    fp(off),
                    None,
                ));
            }
            let dtype = DeviceType::from_code(d[1]);
            if let Some(bit) = top_bit(d[4] & 0xF0) {
                return Err(field(off + 4, Some(bit)));
            }
            if d[4] & 0x0F != super::inquiry::code_set::BINARY {
                return Err(field(off + 4, Some(3)));
            }
            if (d[5] >> 4) & 3 != super::inquiry::association::LU || d[5] & 0xC0 != 0 {
                return Err(field(off + 5, Some(5)));
            }
            if d[5] & 0x0F != super::inquiry::designator_type::NAA {
                return Err(field(off + 5, Some(3)));
            }
            let len = usize::from(d[7]);
            if len > 20 {
                return Err(field(off + 7, None));
            }
            let Some(naa) = NaaId::from_bytes(&d[8..8 + len]) else {
                return Err(field(off + 8, None));
            };
            let pad = d[28] & 0x04 != 0;
            let block_bytes = (u32::from(d[29]) << 16) | u32::from(be16(d, 30));
            let params = match dtype {
                DeviceType::Disk => {
                    if let Some(bit) = top_bit(d[28] & !0x04) {
                        return Err(field(off + 28, Some(bit)));
                    }
                    DeviceParams::Block { pad, block_bytes }
                }
                DeviceType::Tape => {
                    if let Some(bit) = top_bit(d[28] & !0x05) {
                        return Err(field(off + 28, Some(bit)));
                    }
                    let fixed = d[28] & 0x01 != 0;
                    // SPC-5 table 138: FIXED and STREAM BLOCK LENGTH must agree.
                    if fixed == (block_bytes == 0) {
                        return Err(field(off + 29, None));
                    }
                    DeviceParams::Stream {
                        pad,
                        fixed,
                        block_bytes,
                    }
                }
                _ => return Err(field(off + 1, Some(4))),
            };
            targets.push(TargetDescriptor {
                naa,
                relative_initiator_port: be16(d, 2),
                params,
            });
        }

        let seg_start = HEADER_LEN + tdll;
        let seg_end = seg_start + sdll;
        let mut segments = Vec::new();
        let mut off = seg_start;
        while off < seg_end {
            if segments.len() >= usize::from(limits.max_segment_descriptors) {
                return Err(Sense::param_error(
                    asc::TOO_MANY_SEGMENT_DESCRIPTORS,
                    8,
                    None,
                ));
            }
            if seg_end - off < 4 {
                return Err(field(8, None));
            }
            let code = b[off];
            let desc_len = usize::from(be16(b, off + 2));
            let (want, ok_flags) = match code {
                descriptor_type::BLOCK_TO_BLOCK if implemented(code) => {
                    (SEG_BLOCK_TO_BLOCK_LEN - 4, 0x03)
                }
                descriptor_type::BLOCK_TO_STREAM if implemented(code) => {
                    (SEG_BLOCK_TO_STREAM_LEN - 4, 0x01)
                }
                _ => {
                    return Err(Sense::param_error(
                        asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
                        fp(off),
                        None,
                    ));
                }
            };
            if desc_len != want || seg_end - off < 4 + want {
                return Err(field(off + 2, None));
            }
            if let Some(bit) = top_bit(b[off + 1] & !ok_flags) {
                return Err(field(off + 1, Some(bit)));
            }
            let d = &b[off..off + 4 + want];
            let (src, dst) = (be16(d, 4), be16(d, 6));
            let src_t = targets.get(usize::from(src)).ok_or(field(off + 4, None))?;
            let dst_t = targets.get(usize::from(dst)).ok_or(field(off + 6, None))?;
            let wrong_type = |at: usize| Sense {
                field_pointer: Some(super::sense::FieldPointer {
                    in_cdb: false,
                    byte: fp(at),
                    bit: None,
                }),
                ..Sense::copy_aborted(asc::INCORRECT_COPY_TARGET_DEVICE_TYPE)
            };
            let cat = d[1] & 1 != 0;
            let seg = match code {
                descriptor_type::BLOCK_TO_BLOCK => {
                    if !matches!(src_t.params, DeviceParams::Block { .. }) {
                        return Err(wrong_type(off + 4));
                    }
                    if !matches!(dst_t.params, DeviceParams::Block { .. }) {
                        return Err(wrong_type(off + 6));
                    }
                    if be16(d, 8) != 0 {
                        return Err(field(off + 8, None));
                    }
                    Segment::BlockToBlock {
                        cat,
                        dc: d[1] & 2 != 0,
                        src,
                        dst,
                        blocks: be16(d, 10),
                        src_lba: be64(d, 12),
                        dst_lba: be64(d, 20),
                    }
                }
                _ => {
                    if !matches!(src_t.params, DeviceParams::Block { .. }) {
                        return Err(wrong_type(off + 4));
                    }
                    if !matches!(dst_t.params, DeviceParams::Stream { .. }) {
                        return Err(wrong_type(off + 6));
                    }
                    if d[8] != 0 || be16(d, 12) != 0 {
                        return Err(field(off + if d[8] != 0 { 8 } else { 12 }, None));
                    }
                    Segment::BlockToStream {
                        cat,
                        src,
                        dst,
                        stream_transfer_length: (u32::from(d[9]) << 16) | u32::from(be16(d, 10)),
                        blocks: be16(d, 14),
                        lba: be64(d, 16),
                    }
                }
            };
            // MAXIMUM SEGMENT LENGTH, when the block size is stated.
            let blocks = match seg {
                Segment::BlockToBlock { blocks, .. } | Segment::BlockToStream { blocks, .. } => {
                    blocks
                }
            };
            let bytes = u64::from(blocks) * u64::from(src_t.params.block_bytes());
            if bytes > u64::from(limits.max_segment_length) {
                return Err(field(off + if code == 2 { 10 } else { 14 }, None));
            }
            segments.push(seg);
            off += 4 + want;
        }
        Ok(ParameterList {
            list_id,
            str_bit: b[1] & 0x20 != 0,
            list_id_usage,
            priority: b[1] & 0x07,
            targets,
            segments,
            inline_data: Bytes::copy_from_slice(&b[seg_end..seg_end + inline]),
        })
    }

    /// Encodes the parameter list (the host side builds these).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(self.list_id);
        b.put_u8(
            (if self.str_bit { 0x20 } else { 0 })
                | ((self.list_id_usage & 3) << 3)
                | (self.priority & 7),
        );
        b.put_u16(u16::try_from(self.targets.len() * CSCD_LEN).unwrap_or(u16::MAX));
        b.put_u32(0);
        let seg_len: usize = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::BlockToBlock { .. } => SEG_BLOCK_TO_BLOCK_LEN,
                Segment::BlockToStream { .. } => SEG_BLOCK_TO_STREAM_LEN,
            })
            .sum();
        b.put_u32(u32::try_from(seg_len).unwrap_or(u32::MAX));
        b.put_u32(u32::try_from(self.inline_data.len()).unwrap_or(u32::MAX));
        for t in &self.targets {
            b.put_u8(descriptor_type::IDENTIFICATION);
            b.put_u8(t.params.device_type().code());
            b.put_u16(t.relative_initiator_port);
            b.put_u8(super::inquiry::code_set::BINARY);
            b.put_u8((super::inquiry::association::LU << 4) | super::inquiry::designator_type::NAA);
            b.put_u8(0);
            let id = t.naa.to_bytes();
            b.put_u8(u8::try_from(id.len()).unwrap_or(0));
            let mut field = id;
            field.resize(20, 0);
            b.put_slice(&field);
            let (flags, len) = match t.params {
                DeviceParams::Block { pad, block_bytes } => {
                    (if pad { 0x04 } else { 0 }, block_bytes)
                }
                DeviceParams::Stream {
                    pad,
                    fixed,
                    block_bytes,
                } => ((if pad { 0x04 } else { 0 }) | u8::from(fixed), block_bytes),
            };
            b.put_u8(flags);
            put_u24(&mut b, len);
        }
        for s in &self.segments {
            match *s {
                Segment::BlockToBlock {
                    cat,
                    dc,
                    src,
                    dst,
                    blocks,
                    src_lba,
                    dst_lba,
                } => {
                    b.put_u8(descriptor_type::BLOCK_TO_BLOCK);
                    b.put_u8((if dc { 2 } else { 0 }) | u8::from(cat));
                    b.put_u16(0x18);
                    b.put_u16(src);
                    b.put_u16(dst);
                    b.put_u16(0);
                    b.put_u16(blocks);
                    b.put_u64(src_lba);
                    b.put_u64(dst_lba);
                }
                Segment::BlockToStream {
                    cat,
                    src,
                    dst,
                    stream_transfer_length,
                    blocks,
                    lba,
                } => {
                    b.put_u8(descriptor_type::BLOCK_TO_STREAM);
                    b.put_u8(u8::from(cat));
                    b.put_u16(0x14);
                    b.put_u16(src);
                    b.put_u16(dst);
                    b.put_u8(0);
                    put_u24(&mut b, stream_transfer_length);
                    b.put_u16(0);
                    b.put_u16(blocks);
                    b.put_u64(lba);
                }
            }
        }
        b.put_slice(&self.inline_data);
        b.freeze()
    }
}

fn put_u24(b: &mut BytesMut, v: u32) {
    let [_, x, y, z] = v.to_be_bytes();
    b.put_slice(&[x, y, z]);
}

/// COPY MANAGER STATUS (SPC-4 §6.18.2, table 174).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyManagerStatus {
    /// 00h operation in progress.
    InProgress,
    /// 01h completed, no errors.
    CompletedGood,
    /// 02h completed with errors.
    CompletedWithError,
    /// Any other code.
    Unsupported(u8),
}

impl CopyManagerStatus {
    /// The 7-bit code.
    pub fn code(self) -> u8 {
        match self {
            CopyManagerStatus::InProgress => 0,
            CopyManagerStatus::CompletedGood => 1,
            CopyManagerStatus::CompletedWithError => 2,
            CopyManagerStatus::Unsupported(c) => c & 0x7F,
        }
    }
    fn from_code(c: u8) -> Self {
        match c & 0x7F {
            0 => CopyManagerStatus::InProgress,
            1 => CopyManagerStatus::CompletedGood,
            2 => CopyManagerStatus::CompletedWithError,
            o => CopyManagerStatus::Unsupported(o),
        }
    }
}

/// RECEIVE COPY RESULTS / COPY STATUS data, 12 bytes (SPC-4 §6.18.2, table 174).
///
/// ```text
/// bytes 0-3  AVAILABLE DATA (00000008h)
/// byte 4     HDD(7) | COPY MANAGER STATUS(6:0)
/// bytes 5-6  SEGMENTS PROCESSED
/// byte 7     TRANSFER COUNT UNITS (00h bytes, 01h KiB, F1h MiB, F2h GiB, F3h TiB ...)
/// bytes 8-11 TRANSFER COUNT
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyStatus {
    /// HDD: held data discarded.
    pub held_data_discarded: bool,
    /// Progress / outcome.
    pub status: CopyManagerStatus,
    /// Segments fully processed.
    pub segments_processed: u16,
    /// TRANSFER COUNT UNITS code.
    pub transfer_count_units: u8,
    /// TRANSFER COUNT in those units.
    pub transfer_count: u32,
}

impl CopyStatus {
    /// Builds status data for `bytes` moved, choosing the smallest unit that fits.
    pub fn new(status: CopyManagerStatus, segments_processed: u16, bytes: u64) -> CopyStatus {
        let units: [(u8, u32); 7] = [
            (0x00, 0),
            (0x01, 10),
            (0xF1, 20),
            (0xF2, 30),
            (0xF3, 40),
            (0xF4, 50),
            (0xF5, 60),
        ];
        let (unit, count) = units
            .iter()
            .find_map(|&(u, shift)| u32::try_from(bytes >> shift).ok().map(|c| (u, c)))
            .unwrap_or((0xF5, u32::MAX));
        CopyStatus {
            held_data_discarded: false,
            status,
            segments_processed,
            transfer_count_units: unit,
            transfer_count: count,
        }
    }

    /// The transfer count in bytes (saturating).
    pub fn transfer_bytes(&self) -> u64 {
        let shift = match self.transfer_count_units {
            0x00 => 0,
            0x01 => 10,
            u @ 0xF1..=0xF5 => 10 * u32::from(u - 0xEF),
            _ => 0,
        };
        u64::from(self.transfer_count).saturating_mul(1u64 << shift)
    }

    /// Encodes the 12 bytes.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(12);
        b.put_u32(8);
        b.put_u8((if self.held_data_discarded { 0x80 } else { 0 }) | self.status.code());
        b.put_u16(self.segments_processed);
        b.put_u8(self.transfer_count_units);
        b.put_u32(self.transfer_count);
        b.freeze()
    }

    /// Decodes copy status data.
    pub fn decode(b: &[u8]) -> Result<CopyStatus, DecodeError> {
        need("copy status", b, 12)?;
        Ok(CopyStatus {
            held_data_discarded: b[4] & 0x80 != 0,
            status: CopyManagerStatus::from_code(b[4]),
            segments_processed: be16(b, 5),
            transfer_count_units: b[7],
            transfer_count: be32(b, 8),
        })
    }
}

/// One copy operation of a [`CopyJob`], with CSCD indices resolved to NAA designators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOp {
    /// Copy `blocks` blocks from `src`@`src_lba` to `dst`@`dst_lba`.
    BlockToBlock {
        /// Source LU.
        src: NaaId,
        /// First source block.
        src_lba: u64,
        /// Destination LU.
        dst: NaaId,
        /// First destination block.
        dst_lba: u64,
        /// Blocks to copy (source blocks, or destination blocks when `dc`).
        blocks: u64,
        /// DC bit of the segment.
        dc: bool,
        /// Source DISK BLOCK LENGTH from the descriptor (0 = ask the LU).
        src_block_bytes: u32,
        /// Destination DISK BLOCK LENGTH from the descriptor (0 = ask the LU).
        dst_block_bytes: u32,
    },
    /// Read `blocks` blocks from `src`@`lba` and write them to the stream device `dst`
    /// at its current position.
    BlockToStream {
        /// Source LU.
        src: NaaId,
        /// First source block.
        lba: u64,
        /// Source blocks.
        blocks: u64,
        /// Source DISK BLOCK LENGTH (0 = ask the LU).
        src_block_bytes: u32,
        /// Destination stream device.
        dst: NaaId,
        /// FIXED bit of the destination descriptor.
        fixed: bool,
        /// STREAM BLOCK LENGTH of the destination descriptor.
        stream_block_bytes: u32,
        /// STREAM DEVICE TRANSFER LENGTH of the segment.
        stream_transfer_length: u32,
    },
}

impl CopyOp {
    /// The source LU, its first block and the source blocks.
    pub fn source(&self) -> (NaaId, u64, u64) {
        match *self {
            CopyOp::BlockToBlock {
                src,
                src_lba,
                blocks,
                ..
            } => (src, src_lba, blocks),
            CopyOp::BlockToStream {
                src, lba, blocks, ..
            } => (src, lba, blocks),
        }
    }

    /// Every LU the operation touches (source first).
    pub fn lus(&self) -> [NaaId; 2] {
        match *self {
            CopyOp::BlockToBlock { src, dst, .. } | CopyOp::BlockToStream { src, dst, .. } => {
                [src, dst]
            }
        }
    }
}

/// An accepted EXTENDED COPY, ready for the caller to execute: the source or the
/// destination may be on another array or a tape reachable only through the fabric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJob {
    /// Initiator port that sent the EXTENDED COPY.
    pub initiator: Wwpn,
    /// LIST IDENTIFIER.
    pub list_id: u8,
    /// Whether RECEIVE COPY RESULTS may ask about it (LIST ID USAGE 00b).
    pub tracked: bool,
    /// The operations, in segment order.
    pub ops: Vec<CopyOp>,
}

impl CopyJob {
    /// Resolves a validated parameter list into operations.
    pub fn from_list(initiator: Wwpn, list: &ParameterList) -> CopyJob {
        let mut ops = Vec::with_capacity(list.segments.len());
        for s in &list.segments {
            let (si, di) = s.indices();
            let (Some(st), Some(dt)) = (
                list.targets.get(usize::from(si)),
                list.targets.get(usize::from(di)),
            ) else {
                continue; // parse() guarantees indices are valid
            };
            ops.push(match *s {
                Segment::BlockToBlock {
                    dc,
                    blocks,
                    src_lba,
                    dst_lba,
                    ..
                } => CopyOp::BlockToBlock {
                    src: st.naa,
                    src_lba,
                    dst: dt.naa,
                    dst_lba,
                    blocks: u64::from(blocks),
                    dc,
                    src_block_bytes: st.params.block_bytes(),
                    dst_block_bytes: dt.params.block_bytes(),
                },
                Segment::BlockToStream {
                    stream_transfer_length,
                    blocks,
                    lba,
                    ..
                } => {
                    let (fixed, sbb) = match dt.params {
                        DeviceParams::Stream {
                            fixed, block_bytes, ..
                        } => (fixed, block_bytes),
                        DeviceParams::Block { block_bytes, .. } => (false, block_bytes),
                    };
                    CopyOp::BlockToStream {
                        src: st.naa,
                        lba,
                        blocks: u64::from(blocks),
                        src_block_bytes: st.params.block_bytes(),
                        dst: dt.naa,
                        fixed,
                        stream_block_bytes: sbb,
                        stream_transfer_length,
                    }
                }
            });
        }
        CopyJob {
            initiator,
            list_id: list.list_id,
            tracked: list.list_id_usage == 0,
            ops,
        }
    }
}

/// How a copy job ended, reported by whoever executed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOutcome {
    /// Operations fully completed.
    pub segments_processed: u16,
    /// Bytes written to destinations.
    pub bytes: u64,
    /// `None` = success; otherwise the COPY ABORTED sense to return.
    pub error: Option<Sense>,
}

/// Per (initiator, list identifier) copy status for RECEIVE COPY RESULTS.
#[derive(Debug, Clone, Default)]
pub struct CopyTracker {
    /// Status of each tracked copy.
    entries: BTreeMap<(Wwpn, u8), CopyStatus>,
}

impl CopyTracker {
    /// An empty tracker.
    pub fn new() -> CopyTracker {
        CopyTracker::default()
    }

    /// Records `job` as in progress; ILLEGAL REQUEST / OPERATION IN PROGRESS if the
    /// same initiator already has a copy with this list identifier running.
    pub fn begin(&mut self, job: &CopyJob) -> Result<(), Sense> {
        if !job.tracked {
            return Ok(());
        }
        let key = (job.initiator, job.list_id);
        if matches!(self.entries.get(&key), Some(s) if s.status == CopyManagerStatus::InProgress) {
            return Err(Sense::new(
                SenseKey::ILLEGAL_REQUEST,
                asc::OPERATION_IN_PROGRESS,
            ));
        }
        self.entries
            .insert(key, CopyStatus::new(CopyManagerStatus::InProgress, 0, 0));
        Ok(())
    }

    /// Updates progress of a running copy.
    pub fn progress(&mut self, initiator: Wwpn, list_id: u8, segments: u16, bytes: u64) {
        if let Some(s) = self.entries.get_mut(&(initiator, list_id)) {
            *s = CopyStatus::new(CopyManagerStatus::InProgress, segments, bytes);
        }
    }

    /// Records the end of a copy.
    pub fn finish(&mut self, job: &CopyJob, outcome: &CopyOutcome) {
        if !job.tracked {
            return;
        }
        let status = if outcome.error.is_some() {
            CopyManagerStatus::CompletedWithError
        } else {
            CopyManagerStatus::CompletedGood
        };
        self.entries.insert(
            (job.initiator, job.list_id),
            CopyStatus::new(status, outcome.segments_processed, outcome.bytes),
        );
    }

    /// The status of a copy, if known.
    pub fn status(&self, initiator: Wwpn, list_id: u8) -> Option<CopyStatus> {
        self.entries.get(&(initiator, list_id)).copied()
    }

    /// Forgets everything (a target reset).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fcsim_fabric::Wwn;
    use proptest::prelude::*;

    pub(crate) fn naa(n: u64) -> NaaId {
        NaaId::Short(Wwn::naa5(0x001B32, n))
    }

    fn sample() -> ParameterList {
        ParameterList {
            list_id: 7,
            str_bit: false,
            list_id_usage: 0,
            priority: 1,
            targets: vec![
                TargetDescriptor {
                    naa: naa(1),
                    relative_initiator_port: 0,
                    params: DeviceParams::Block {
                        pad: false,
                        block_bytes: 512,
                    },
                },
                TargetDescriptor {
                    naa: naa(2),
                    relative_initiator_port: 0,
                    params: DeviceParams::Block {
                        pad: false,
                        block_bytes: 512,
                    },
                },
                TargetDescriptor {
                    naa: naa(3),
                    relative_initiator_port: 1,
                    params: DeviceParams::Stream {
                        pad: false,
                        fixed: false,
                        block_bytes: 0,
                    },
                },
            ],
            segments: vec![
                Segment::BlockToBlock {
                    cat: false,
                    dc: false,
                    src: 0,
                    dst: 1,
                    blocks: 16,
                    src_lba: 100,
                    dst_lba: 200,
                },
                Segment::BlockToStream {
                    cat: false,
                    src: 0,
                    dst: 2,
                    stream_transfer_length: 4096,
                    blocks: 8,
                    lba: 0,
                },
            ],
            inline_data: Bytes::new(),
        }
    }

    // SPC-4 §6.3.1 header, §6.3.6.x E4h descriptor, §6.3.7.5 segment 02h.
    #[test]
    fn layout_matches_lio() {
        let b = sample().encode();
        assert_eq!(b[0], 7);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]), 96);
        assert_eq!(u32::from_be_bytes([b[8], b[9], b[10], b[11]]), 28 + 24);
        // First CSCD: E4h, disk, binary, LU association, NAA, length 8.
        assert_eq!(&b[16..24], &[0xE4, 0x00, 0, 0, 0x01, 0x03, 0x00, 0x08]);
        assert_eq!(&b[16 + 29..16 + 32], &[0x00, 0x02, 0x00]); // 512
        // Segment 02h at 16 + 96: DESCRIPTOR LENGTH 0018h, NOLB at 10, LBAs at 12/20.
        let s = 16 + 96;
        assert_eq!(&b[s..s + 4], &[0x02, 0x00, 0x00, 0x18]);
        assert_eq!(u16::from_be_bytes([b[s + 10], b[s + 11]]), 16);
        assert_eq!(b[s + 19], 100);
        assert_eq!(b[s + 27], 200);
        // Segment 00h: DESCRIPTOR LENGTH 0014h, blocks at 14, LBA at 16.
        let s = s + 28;
        assert_eq!(&b[s..s + 4], &[0x00, 0x00, 0x00, 0x14]);
        assert_eq!(u16::from_be_bytes([b[s + 14], b[s + 15]]), 8);
        let limits = OperatingParameters::default();
        assert_eq!(ParameterList::parse(&b, &limits), Ok(sample()));
    }

    fn err_of(b: &[u8]) -> Sense {
        ParameterList::parse(b, &OperatingParameters::default()).expect_err("must reject")
    }

    #[test]
    fn rejects_bad_descriptors() {
        let good = sample().encode().to_vec();
        // Wrong CSCD type code.
        let mut b = good.clone();
        b[16] = 0xE0;
        let s = err_of(&b);
        assert_eq!(s.asc_pair(), asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE);
        assert_eq!(
            s.field_pointer.map(|f| (f.in_cdb, f.byte)),
            Some((false, 16))
        );
        // Unsupported segment type (03h stream→stream).
        let mut b = good.clone();
        b[16 + 96] = 0x03;
        assert_eq!(
            err_of(&b).asc_pair(),
            asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE
        );
        // Index out of range.
        let mut b = good.clone();
        b[16 + 96 + 7] = 9;
        let s = err_of(&b);
        assert_eq!(s.asc_pair(), asc::INVALID_FIELD_IN_PARAMETER_LIST);
        assert_eq!(s.field_pointer.map(|f| f.byte), Some(16 + 96 + 6));
        // Block→block to a tape: incorrect device type.
        let mut b = good.clone();
        b[16 + 96 + 7] = 2;
        let s = err_of(&b);
        assert_eq!(
            (s.key, s.asc_pair()),
            (
                SenseKey::COPY_ABORTED,
                asc::INCORRECT_COPY_TARGET_DEVICE_TYPE
            )
        );
        // Association other than LU (CVE-2020-28374 class: only LU designators).
        let mut b = good.clone();
        b[16 + 5] = 0x13;
        assert_eq!(err_of(&b).asc_pair(), asc::INVALID_FIELD_IN_PARAMETER_LIST);
        // Truncated list.
        assert_eq!(
            err_of(&good[..good.len() - 1]).asc_pair(),
            asc::PARAMETER_LIST_LENGTH_ERROR
        );
        assert_eq!(
            err_of(&good[..10]).asc_pair(),
            asc::PARAMETER_LIST_LENGTH_ERROR
        );
        // Too many CSCDs for the advertised limit.
        let tight = OperatingParameters {
            max_target_descriptors: 2,
            ..Default::default()
        };
        let s = ParameterList::parse(&good, &tight).expect_err("too many");
        assert_eq!(s.asc_pair(), asc::TOO_MANY_TARGET_DESCRIPTORS);
        let tight = OperatingParameters {
            max_segment_descriptors: 1,
            ..Default::default()
        };
        let s = ParameterList::parse(&good, &tight).expect_err("too many");
        assert_eq!(s.asc_pair(), asc::TOO_MANY_SEGMENT_DESCRIPTORS);
        // Block→stream not implemented by a LIO-shaped copy manager.
        let lio = OperatingParameters {
            implemented_descriptors: vec![0x02, 0xE4],
            ..Default::default()
        };
        let s = ParameterList::parse(&good, &lio).expect_err("no 00h");
        assert_eq!(s.asc_pair(), asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE);
    }

    // SPC-4 §6.18.4: AVAILABLE DATA = 40 + implemented descriptor count (LIO: 42 for 2).
    #[test]
    fn operating_parameters_round_trip() {
        let p = OperatingParameters::default();
        let b = p.encode();
        assert_eq!(b.len(), 47);
        assert_eq!(u32::from_be_bytes([b[0], b[1], b[2], b[3]]), 43);
        assert_eq!(&b[44..], &[0x00, 0x02, 0xE4]);
        assert_eq!(OperatingParameters::decode(&b), Ok(p));
    }

    #[test]
    fn copy_status_units() {
        let s = CopyStatus::new(CopyManagerStatus::CompletedGood, 3, 1 << 40);
        assert_eq!(s.transfer_count_units, 0x01);
        assert_eq!(s.transfer_bytes(), 1 << 40);
        let b = s.encode();
        assert_eq!(&b[..5], &[0, 0, 0, 8, 1]);
        assert_eq!(CopyStatus::decode(&b), Ok(s));
        let small = CopyStatus::new(CopyManagerStatus::InProgress, 0, 4096);
        assert_eq!(
            (small.transfer_count_units, small.transfer_count),
            (0, 4096)
        );
    }

    #[test]
    fn tracker_lifecycle() {
        let ini = Wwpn(Wwn(0x2100_0000_0000_0001));
        let job = CopyJob::from_list(ini, &sample());
        assert_eq!(job.ops.len(), 2);
        let mut t = CopyTracker::new();
        t.begin(&job).expect("begin");
        assert_eq!(
            t.begin(&job).map_err(|s| s.asc_pair()),
            Err(asc::OPERATION_IN_PROGRESS)
        );
        assert_eq!(
            t.status(ini, 7).map(|s| s.status),
            Some(CopyManagerStatus::InProgress)
        );
        let out = CopyOutcome {
            segments_processed: 1,
            bytes: 8192,
            error: Some(Sense::copy_aborted(asc::THIRD_PARTY_DEVICE_FAILURE)),
        };
        t.finish(&job, &out);
        let s = t.status(ini, 7).expect("status");
        assert_eq!(
            (s.status, s.segments_processed),
            (CopyManagerStatus::CompletedWithError, 1)
        );
    }

    fn arb_target() -> impl Strategy<Value = TargetDescriptor> {
        (
            any::<u64>(),
            any::<u16>(),
            any::<bool>(),
            prop_oneof![Just(0u32), Just(512), Just(4096)],
            any::<bool>(),
        )
            .prop_map(|(n, port, pad, bb, tape)| TargetDescriptor {
                naa: naa(n),
                relative_initiator_port: port,
                params: if tape {
                    DeviceParams::Stream {
                        pad,
                        fixed: bb != 0,
                        block_bytes: bb,
                    }
                } else {
                    DeviceParams::Block {
                        pad,
                        block_bytes: bb,
                    }
                },
            })
    }

    proptest! {
        #[test]
        fn round_trip(targets in proptest::collection::vec(arb_target(), 1..8),
                      segs in proptest::collection::vec((any::<u16>(), any::<u16>(), 0u16..1024, any::<u64>(), any::<u64>(), any::<bool>(), 0u32..0x100_0000), 0..20),
                      list_id in any::<u8>(), prio in 0u8..8, str_bit in any::<bool>()) {
            let n = u16::try_from(targets.len()).unwrap_or(1);
            let blocks_idx: Vec<u16> = (0..n).filter(|&i| matches!(targets[usize::from(i)].params, DeviceParams::Block { .. })).collect();
            let tape_idx: Vec<u16> = (0..n).filter(|&i| matches!(targets[usize::from(i)].params, DeviceParams::Stream { .. })).collect();
            let mut segments = Vec::new();
            for (a, b, blocks, l1, l2, dc, stl) in segs {
                if blocks_idx.is_empty() { break; }
                let src = blocks_idx[usize::from(a) % blocks_idx.len()];
                if !tape_idx.is_empty() && dc {
                    let dst = tape_idx[usize::from(b) % tape_idx.len()];
                    segments.push(Segment::BlockToStream { cat: false, src, dst, stream_transfer_length: stl, blocks, lba: l1 });
                } else {
                    let dst = blocks_idx[usize::from(b) % blocks_idx.len()];
                    segments.push(Segment::BlockToBlock { cat: l2 & 1 == 1, dc, src, dst, blocks, src_lba: l1, dst_lba: l2 });
                }
            }
            let list = ParameterList { list_id, str_bit, list_id_usage: 0, priority: prio, targets, segments, inline_data: Bytes::new() };
            let limits = OperatingParameters { max_segment_descriptors: 64, max_descriptor_list_length: 1 << 20, ..Default::default() };
            prop_assert_eq!(ParameterList::parse(&list.encode(), &limits), Ok(list));
        }

        #[test]
        fn arbitrary_lists_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = ParameterList::parse(&b, &OperatingParameters::default());
        }

        #[test]
        fn mutated_lists_never_panic(i in 0usize..200, v in any::<u8>()) {
            let mut b = sample().encode().to_vec();
            let n = b.len();
            b[i % n] = v;
            let _ = ParameterList::parse(&b, &OperatingParameters::default());
        }

        #[test]
        fn results_decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = OperatingParameters::decode(&b);
            let _ = CopyStatus::decode(&b);
        }
    }
}
