//! SCSI over FCP: the SPC-5 / SBC-4 subset fcsim targets answer (DESIGN.md §4).
//!
//! Start with [`target::ScsiTarget`]; the codecs ([`cdb`], [`sense`], [`inquiry`],
//! [`xcopy`]) are shared with the initiator side (hosts, the intelligent switch), which
//! builds CDBs and parameter lists with `encode` and reads replies with `decode`.
//!
//! Integers on the wire are big-endian throughout (SPC-5 §3.5.3).

pub mod cdb;
pub mod inquiry;
pub mod sense;
pub mod target;
pub mod xcopy;

pub use cdb::Command;
pub use sense::{FieldPointer, Sense, SenseKey, Status};
pub use target::{LogicalUnit, LuConfig, Nexus, ScsiResult, ScsiTarget};

/// A reply or parameter block that could not be decoded (initiator side, and the
/// copy-results decoders). Targets never return this for CDBs: those get [`Sense`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ends before the structure does.
    #[error("{what}: need {needed} bytes, got {got}")]
    Incomplete {
        /// Which structure was being decoded.
        what: &'static str,
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// A field holds a value the structure does not allow.
    #[error("{what}: malformed ({detail})")]
    Malformed {
        /// Which structure was being decoded.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// Byte at `at`, 0 past the end.
pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

/// Checks `b` holds at least `needed` bytes.
pub(crate) fn need(what: &'static str, b: &[u8], needed: usize) -> Result<(), DecodeError> {
    if b.len() < needed {
        Err(DecodeError::Incomplete {
            what,
            needed,
            got: b.len(),
        })
    } else {
        Ok(())
    }
}

/// Truncates reply data to an allocation length (SPC-5 §4.2.5.6) and returns the
/// residual (bytes the allocation length allowed but the reply did not fill).
pub(crate) fn clip(data: bytes::Bytes, alloc: u32) -> (bytes::Bytes, u32) {
    let alloc_us = usize::try_from(alloc).unwrap_or(usize::MAX);
    if data.len() >= alloc_us {
        (data.slice(..alloc_us), 0)
    } else {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        (data, alloc - len)
    }
}

/// Big-endian u16 at `at` (0 past the end; callers check lengths first).
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at.saturating_add(2)) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Big-endian u32 at `at` (0 past the end).
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at.saturating_add(4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_be_bytes)
}

/// Big-endian u64 at `at` (0 past the end).
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at.saturating_add(8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_be_bytes)
}
