//! The recorded medium: an ordered sequence of logical objects (data records and
//! filemarks, SSC-4 §4.2 "logical objects"), and its file image.
//!
//! # Image layout (version 1)
//!
//! All integers big-endian:
//!
//! ```text
//! bytes 0..8    magic "FCSIMTAP"
//! bytes 8..10   version = 1 (u16)
//! bytes 10..18  object count N (u64)
//! then N objects, each:
//!   tag u8: 00h = data record, 01h = filemark
//!   for a data record: length u32, then that many bytes
//! ```
//!
//! Nothing may follow the last object. Drive state (position, block length, faults) is
//! not in the image: a medium read from an image is loaded at beginning-of-partition.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::TapeError;

/// One logical object on the medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A data record (one logical block) with its bytes; never empty.
    Data(Bytes),
    /// A filemark.
    Filemark,
}

impl Record {
    /// Data bytes the object holds (0 for a filemark).
    pub fn data_len(&self) -> u64 {
        match self {
            Record::Data(b) => b.len() as u64,
            Record::Filemark => 0,
        }
    }

    /// Whether this is a filemark.
    pub fn is_filemark(&self) -> bool {
        matches!(self, Record::Filemark)
    }
}

/// The image magic.
pub const IMAGE_MAGIC: &[u8; 8] = b"FCSIMTAP";
/// The image version this code writes and reads.
pub const IMAGE_VERSION: u16 = 1;

const TAG_DATA: u8 = 0x00;
const TAG_FILEMARK: u8 = 0x01;

/// Recorded objects plus a running count of their data bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Medium {
    /// Objects from beginning-of-partition; the end is end-of-data.
    records: Vec<Record>,
    /// Sum of `data_len` over `records` (kept in step by every mutation).
    data_bytes: u64,
}

impl Medium {
    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Record> {
        self.records.get(i)
    }

    pub(crate) fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// Drops every object at or after `at`: writing there makes it end-of-data.
    pub(crate) fn truncate(&mut self, at: usize) {
        if at < self.records.len() {
            let dropped: u64 = self.records[at..].iter().map(Record::data_len).sum();
            self.records.truncate(at);
            self.data_bytes -= dropped;
        }
    }

    /// Appends one object at end-of-data. Empty data records are not recorded.
    pub(crate) fn push(&mut self, r: Record) {
        if matches!(&r, Record::Data(b) if b.is_empty()) {
            return;
        }
        self.data_bytes += r.data_len();
        self.records.push(r);
    }

    /// All data records concatenated, in order.
    pub(crate) fn contents(&self) -> Bytes {
        let mut out = BytesMut::new();
        for r in &self.records {
            if let Record::Data(b) = r {
                out.extend_from_slice(b);
            }
        }
        out.freeze()
    }

    /// Serialises to the version-1 image layout (see the module doc).
    pub(crate) fn to_image(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(18 + self.records.len() * 5);
        out.put_slice(IMAGE_MAGIC);
        out.put_u16(IMAGE_VERSION);
        out.put_u64(self.records.len() as u64);
        for r in &self.records {
            match r {
                Record::Data(b) => {
                    out.put_u8(TAG_DATA);
                    // Records come from 24-bit transfer lengths, so they fit in u32.
                    out.put_u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
                    out.put_slice(b);
                }
                Record::Filemark => out.put_u8(TAG_FILEMARK),
            }
        }
        out.freeze()
    }

    /// Parses a version-1 image.
    pub(crate) fn from_image(image: &[u8]) -> Result<Self, TapeError> {
        let bad = |detail: &str| TapeError::BadImage {
            detail: detail.to_string(),
        };
        let mut buf = image;
        if buf.remaining() < 18 || &buf[..8] != IMAGE_MAGIC {
            return Err(bad("missing FCSIMTAP header"));
        }
        buf.advance(8);
        let version = buf.get_u16();
        if version != IMAGE_VERSION {
            return Err(bad(&format!("unsupported version {version}")));
        }
        let count = buf.get_u64();
        let mut medium = Medium::default();
        for _ in 0..count {
            if !buf.has_remaining() {
                return Err(bad("truncated: fewer objects than the header counts"));
            }
            match buf.get_u8() {
                TAG_DATA => {
                    if buf.remaining() < 4 {
                        return Err(bad("truncated record length"));
                    }
                    let len = buf.get_u32() as usize;
                    if len == 0 || buf.remaining() < len {
                        return Err(bad("empty or truncated data record"));
                    }
                    medium.push(Record::Data(Bytes::copy_from_slice(&buf[..len])));
                    buf.advance(len);
                }
                TAG_FILEMARK => medium.push(Record::Filemark),
                tag => return Err(bad(&format!("unknown object tag {tag:#04x}"))),
            }
        }
        if buf.has_remaining() {
            return Err(bad("bytes after the last object"));
        }
        Ok(medium)
    }
}
