//! Block stores: the storage seam under every logical unit (DESIGN.md §2 "two seams").
//!
//! - [`MemStore`]: sparse, in memory — a `BTreeMap` of fixed-size chunks; blocks never
//!   written read as zeros and cost nothing, so a 16 TiB LU fits in a test.
//! - [`FileStore`]: one real file per LU, pre-sized with `set_len`; `flush` is
//!   `sync_data`, and with `write_through` every write is followed by `sync_data`.
//!
//! Writes are all-or-nothing: a range error is detected before any byte changes, and a
//! file write that fails part-way puts the old contents back (best effort) before
//! returning the error.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

/// Errors from a block store: something the caller (the LU) can act on, typically by
/// answering MEDIUM ERROR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The range runs past the end of the store.
    #[error("blocks {lba}+{blocks} past the end ({capacity} blocks)")]
    OutOfRange {
        /// First block asked for.
        lba: u64,
        /// Blocks asked for.
        blocks: u64,
        /// Store capacity in blocks.
        capacity: u64,
    },
    /// A write whose length is not a whole number of blocks.
    #[error("write of {len} bytes is not a multiple of the {block_bytes}-byte block")]
    Misaligned {
        /// Bytes supplied.
        len: usize,
        /// Block size.
        block_bytes: u32,
    },
    /// Block size zero or not a power of two ≥ 512, or capacity overflowing u64 bytes.
    #[error("invalid geometry: {block_bytes}-byte blocks x {blocks}")]
    InvalidGeometry {
        /// Block size asked for.
        block_bytes: u32,
        /// Block count asked for.
        blocks: u64,
    },
    /// The backing file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (open, read, write, sync).
        op: &'static str,
        /// The backing file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A fixed-geometry array of logical blocks.
pub trait BlockStore: std::fmt::Debug + Send {
    /// Bytes per logical block.
    fn block_bytes(&self) -> u32;
    /// Capacity in logical blocks.
    fn blocks(&self) -> u64;
    /// Reads `blocks` blocks from `lba`; blocks never written read as zeros.
    fn read(&self, lba: u64, blocks: u64) -> Result<Bytes, StoreError>;
    /// Writes whole blocks starting at `lba`; all-or-nothing.
    fn write(&mut self, lba: u64, data: &Bytes) -> Result<(), StoreError>;
    /// Makes every acknowledged write durable.
    fn flush(&mut self) -> Result<(), StoreError>;
}

fn check_geometry(block_bytes: u32, blocks: u64) -> Result<u64, StoreError> {
    let bad = StoreError::InvalidGeometry {
        block_bytes,
        blocks,
    };
    if block_bytes < 512 || !block_bytes.is_power_of_two() {
        return Err(bad);
    }
    blocks.checked_mul(u64::from(block_bytes)).ok_or(bad)
}

fn check_range(lba: u64, blocks: u64, capacity: u64) -> Result<(), StoreError> {
    match lba.checked_add(blocks) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(StoreError::OutOfRange {
            lba,
            blocks,
            capacity,
        }),
    }
}

fn write_blocks(data: &Bytes, block_bytes: u32) -> Result<u64, StoreError> {
    let bb = usize::try_from(block_bytes).unwrap_or(usize::MAX);
    if !data.len().is_multiple_of(bb) {
        return Err(StoreError::Misaligned {
            len: data.len(),
            block_bytes,
        });
    }
    Ok(u64::try_from(data.len() / bb).unwrap_or(u64::MAX))
}

/// Bytes per [`MemStore`] chunk (rounded up to one block for larger blocks).
pub const MEM_CHUNK_BYTES: u32 = 64 * 1024;

/// Sparse in-memory block store.
#[derive(Debug, Clone)]
pub struct MemStore {
    /// Bytes per block (power of two ≥ 512).
    block_bytes: u32,
    /// Capacity in blocks.
    blocks: u64,
    /// Blocks per chunk (≥ 1).
    chunk_blocks: u64,
    /// Written chunks by chunk index; each holds `chunk_blocks * block_bytes` bytes.
    chunks: BTreeMap<u64, Box<[u8]>>,
}

impl MemStore {
    /// A store of `blocks` zeroed blocks of `block_bytes`; allocates nothing up front.
    pub fn new(block_bytes: u32, blocks: u64) -> Result<MemStore, StoreError> {
        check_geometry(block_bytes, blocks)?;
        Ok(MemStore {
            block_bytes,
            blocks,
            chunk_blocks: u64::from((MEM_CHUNK_BYTES / block_bytes).max(1)),
            chunks: BTreeMap::new(),
        })
    }

    /// Chunks currently allocated (for tests and memory accounting).
    pub fn allocated_chunks(&self) -> usize {
        self.chunks.len()
    }

    fn chunk_len(&self) -> usize {
        usize::try_from(self.chunk_blocks * u64::from(self.block_bytes)).unwrap_or(usize::MAX)
    }

    /// Visits (chunk index, byte offset in chunk, byte offset in buffer, length) for the
    /// byte range of blocks `lba..lba+blocks`.
    fn spans(&self, lba: u64, blocks: u64) -> Vec<(u64, usize, usize, usize)> {
        let bb = u64::from(self.block_bytes);
        let chunk_bytes = self.chunk_blocks * bb;
        let mut out = Vec::new();
        let mut pos = lba * bb;
        let end = (lba + blocks) * bb;
        let start = pos;
        while pos < end {
            let idx = pos / chunk_bytes;
            let off = pos % chunk_bytes;
            let n = (chunk_bytes - off).min(end - pos);
            out.push((
                idx,
                usize::try_from(off).unwrap_or(0),
                usize::try_from(pos - start).unwrap_or(0),
                usize::try_from(n).unwrap_or(0),
            ));
            pos += n;
        }
        out
    }
}

impl BlockStore for MemStore {
    fn block_bytes(&self) -> u32 {
        self.block_bytes
    }
    fn blocks(&self) -> u64 {
        self.blocks
    }
    fn read(&self, lba: u64, blocks: u64) -> Result<Bytes, StoreError> {
        check_range(lba, blocks, self.blocks)?;
        let len = usize::try_from(blocks * u64::from(self.block_bytes)).map_err(|_| {
            StoreError::OutOfRange {
                lba,
                blocks,
                capacity: self.blocks,
            }
        })?;
        let mut buf = BytesMut::zeroed(len);
        for (idx, off, at, n) in self.spans(lba, blocks) {
            if let Some(chunk) = self.chunks.get(&idx) {
                buf[at..at + n].copy_from_slice(&chunk[off..off + n]);
            }
        }
        Ok(buf.freeze())
    }
    fn write(&mut self, lba: u64, data: &Bytes) -> Result<(), StoreError> {
        let blocks = write_blocks(data, self.block_bytes)?;
        check_range(lba, blocks, self.blocks)?;
        let chunk_len = self.chunk_len();
        for (idx, off, at, n) in self.spans(lba, blocks) {
            let src = &data[at..at + n];
            match self.chunks.get_mut(&idx) {
                Some(chunk) => chunk[off..off + n].copy_from_slice(src),
                None if src.iter().all(|&b| b == 0) => {} // zeros over zeros: stay sparse
                None => {
                    let mut chunk = vec![0u8; chunk_len].into_boxed_slice();
                    chunk[off..off + n].copy_from_slice(src);
                    self.chunks.insert(idx, chunk);
                }
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// File-backed block store: one file of exactly `blocks * block_bytes` bytes.
#[derive(Debug)]
pub struct FileStore {
    /// The open backing file.
    file: File,
    /// Its path (for error messages).
    path: PathBuf,
    /// Bytes per block.
    block_bytes: u32,
    /// Capacity in blocks.
    blocks: u64,
    /// `sync_data` after every write (acknowledged = durable).
    write_through: bool,
}

impl FileStore {
    /// Opens (creating if needed) `path` and sizes it to the capacity with `set_len`;
    /// existing contents within the capacity are kept.
    pub fn open(
        path: impl AsRef<Path>,
        block_bytes: u32,
        blocks: u64,
        write_through: bool,
    ) -> Result<FileStore, StoreError> {
        let bytes = check_geometry(block_bytes, blocks)?;
        let path = path.as_ref().to_path_buf();
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { op, path, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open", &path))?;
        file.set_len(bytes).map_err(io("set_len", &path))?;
        Ok(FileStore {
            file,
            path,
            block_bytes,
            blocks,
            write_through,
        })
    }

    /// The backing file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            op,
            path: self.path.clone(),
            source,
        }
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(data)
    }
}

impl BlockStore for FileStore {
    fn block_bytes(&self) -> u32 {
        self.block_bytes
    }
    fn blocks(&self) -> u64 {
        self.blocks
    }
    fn read(&self, lba: u64, blocks: u64) -> Result<Bytes, StoreError> {
        check_range(lba, blocks, self.blocks)?;
        let bb = u64::from(self.block_bytes);
        let len = usize::try_from(blocks * bb).map_err(|_| StoreError::OutOfRange {
            lba,
            blocks,
            capacity: self.blocks,
        })?;
        let mut buf = BytesMut::zeroed(len);
        let mut f = &self.file;
        f.seek(SeekFrom::Start(lba * bb))
            .map_err(self.err("seek"))?;
        f.read_exact(&mut buf).map_err(self.err("read"))?;
        Ok(buf.freeze())
    }
    fn write(&mut self, lba: u64, data: &Bytes) -> Result<(), StoreError> {
        let blocks = write_blocks(data, self.block_bytes)?;
        check_range(lba, blocks, self.blocks)?;
        let offset = lba * u64::from(self.block_bytes);
        // Keep the old contents so a failed write can be undone (all-or-nothing).
        let old = self.read(lba, blocks)?;
        if let Err(e) = self.write_at(offset, data) {
            let _ = self.write_at(offset, &old);
            return Err(self.err("write")(e));
        }
        if self.write_through {
            self.file.sync_data().map_err(self.err("sync_data"))?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(self.err("sync_data"))
    }
}

impl<S: BlockStore + ?Sized> BlockStore for Box<S> {
    fn block_bytes(&self) -> u32 {
        (**self).block_bytes()
    }
    fn blocks(&self) -> u64 {
        (**self).blocks()
    }
    fn read(&self, lba: u64, blocks: u64) -> Result<Bytes, StoreError> {
        (**self).read(lba, blocks)
    }
    fn write(&mut self, lba: u64, data: &Bytes) -> Result<(), StoreError> {
        (**self).write(lba, data)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        (**self).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p =
                std::env::temp_dir().join(format!("fcsim-store-{}-{}", std::process::id(), name));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("create temp dir");
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pattern(blocks: usize, bb: usize, seed: u8) -> Bytes {
        Bytes::from(
            (0..blocks * bb)
                .map(|i| i.to_le_bytes()[0].wrapping_mul(31).wrapping_add(seed))
                .collect::<Vec<u8>>(),
        )
    }

    fn exercise(s: &mut dyn BlockStore) {
        let bb = s.block_bytes() as usize;
        assert_eq!(
            s.read(0, 2).expect("read").as_ref(),
            vec![0u8; 2 * bb].as_slice()
        );
        let d = pattern(3, bb, 7);
        s.write(5, &d).expect("write");
        assert_eq!(s.read(5, 3).expect("read"), d);
        assert_eq!(&s.read(4, 5).expect("read")[bb..4 * bb], &d[..]);
        // Past the end: rejected, nothing changed.
        let last = s.blocks() - 1;
        let before = s.read(last, 1).expect("read");
        assert!(matches!(
            s.write(last, &pattern(2, bb, 9)),
            Err(StoreError::OutOfRange { .. })
        ));
        assert_eq!(s.read(last, 1).expect("read"), before);
        assert!(matches!(
            s.write(0, &Bytes::from_static(&[1, 2, 3])),
            Err(StoreError::Misaligned { .. })
        ));
        assert!(matches!(
            s.read(u64::MAX, 2),
            Err(StoreError::OutOfRange { .. })
        ));
        s.flush().expect("flush");
    }

    #[test]
    fn mem_store_basics_and_sparse() {
        let mut s = MemStore::new(512, 1 << 40).expect("huge sparse LU");
        exercise(&mut s);
        assert_eq!(s.allocated_chunks(), 1);
        // A write straddling a chunk boundary.
        let per_chunk = u64::from(MEM_CHUNK_BYTES / 512);
        let d = pattern(4, 512, 3);
        s.write(per_chunk - 2, &d).expect("write");
        assert_eq!(s.read(per_chunk - 2, 4).expect("read"), d);
        // Zeros into an empty chunk do not allocate.
        s.write(1 << 30, &Bytes::from(vec![0u8; 512]))
            .expect("write");
        assert_eq!(s.allocated_chunks(), 2);
        assert!(MemStore::new(100, 10).is_err());
    }

    #[test]
    fn file_store_basics_and_persistence() {
        let dir = TempDir::new("basics");
        let path = dir.0.join("lu0.img");
        {
            let mut s = FileStore::open(&path, 4096, 64, true).expect("open");
            exercise(&mut s);
            assert_eq!(std::fs::metadata(&path).expect("meta").len(), 4096 * 64);
        }
        let s = FileStore::open(&path, 4096, 64, false).expect("reopen");
        assert_eq!(s.read(5, 3).expect("read"), pattern(3, 4096, 7));
    }

    #[test]
    fn file_store_open_error_is_io() {
        let dir = TempDir::new("openerr");
        let path = dir.0.join("missing-dir").join("x.img");
        assert!(matches!(
            FileStore::open(&path, 512, 8, false),
            Err(StoreError::Io { op: "open", .. })
        ));
    }
}
