//! Shared read/write helpers for the frame codecs: bounds-checked reads from `impl Buf`
//! and big-endian FC_ID / WWN writes to `impl BufMut`. Every multi-byte read goes through
//! [`need`] first, so no decoder can run `Buf::get_*` past the end of its input.

use bytes::{Buf, BufMut, Bytes};

use super::DecodeError;
use crate::fcid::FcId;
use crate::wwn::Wwn;

/// Fails with [`DecodeError::Incomplete`] unless `buf` holds at least `n` more bytes.
pub(crate) fn need(buf: &impl Buf, n: usize) -> Result<(), DecodeError> {
    let have = buf.remaining();
    if have < n {
        Err(DecodeError::Incomplete { needed: n, have })
    } else {
        Ok(())
    }
}

/// Reads a 3-byte FC_ID; the caller has checked the length with [`need`].
pub(crate) fn get_fcid(buf: &mut impl Buf) -> FcId {
    let mut b = [0u8; 3];
    buf.copy_to_slice(&mut b);
    FcId::from_bytes(b)
}

/// Reads an 8-byte WWN; the caller has checked the length with [`need`].
pub(crate) fn get_wwn(buf: &mut impl Buf) -> Wwn {
    Wwn(buf.get_u64())
}

/// Reads `N` raw bytes; the caller has checked the length with [`need`].
pub(crate) fn get_array<const N: usize>(buf: &mut impl Buf) -> [u8; N] {
    let mut b = [0u8; N];
    buf.copy_to_slice(&mut b);
    b
}

/// Takes `n` bytes as `Bytes` (zero-copy when `buf` is itself `Bytes`).
pub(crate) fn take(buf: &mut impl Buf, n: usize) -> Result<Bytes, DecodeError> {
    need(buf, n)?;
    Ok(buf.copy_to_bytes(n))
}

/// Takes everything left in `buf`.
pub(crate) fn take_rest(buf: &mut impl Buf) -> Bytes {
    let n = buf.remaining();
    buf.copy_to_bytes(n)
}

/// Writes a 3-byte FC_ID.
pub(crate) fn put_fcid(buf: &mut impl BufMut, id: FcId) {
    buf.put_slice(&id.to_bytes());
}

/// Writes one reserved byte followed by a 3-byte FC_ID (the FC "port identifier" word).
pub(crate) fn put_fcid_word(buf: &mut impl BufMut, flags: u8, id: FcId) {
    buf.put_u8(flags);
    put_fcid(buf, id);
}

/// Number of zero bytes that pad `len` to a multiple of four.
pub(crate) fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Converts a length to `u8`, saturating (callers cap their data first).
pub(crate) fn len_u8(len: usize) -> u8 {
    u8::try_from(len).unwrap_or(u8::MAX)
}

/// Converts a length to `u16`, saturating (callers cap their data first).
pub(crate) fn len_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// Converts a length to `u32`, saturating (callers cap their data first).
pub(crate) fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}
