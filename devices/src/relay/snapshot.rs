//! The emb 8 address table of one LU (seed 002 §3.5, §4.8 Figs 30–35, [0244]–[0265];
//! invariants S1–S5, S9): logical blocks mapped to physical blocks, with a one-generation
//! snapshot taken at restart points by redirect-on-write and copy-on-first-write, and
//! rolled back at failover.
//!
//! The first write to a logical block after a snapshot allocates a free physical block,
//! which the node fills with a copy of the old block before writing the new bytes (a
//! write may cover part of a block, S9); the snapshot keeps pointing at the old block,
//! which no write touches until the next snapshot (S3). `create` makes the current
//! mapping the snapshot and frees the blocks it replaces (S5, the create rule of [0255],
//! not [0277]'s restore text, E16); `restore` returns to the snapshot and frees the
//! blocks written since (S4). Both are one call, so atomic as seen from outside (E17).
//! One generation suffices because the execution image travels with its restart point
//! (E18, E19; see [`super::standby`]).

use std::collections::BTreeSet;

use super::RelayError;

/// One logical block's entry (Fig. 31a). Invariant (S1): `!changed ⇔ latest == snap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Physical block of the current content.
    pub latest: u64,
    /// Written since the last snapshot.
    pub changed: bool,
    /// Physical block of the content at the last snapshot.
    pub snap: u64,
}

/// Where a write to a logical block goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockWrite {
    /// Physical block to write.
    pub pbn: u64,
    /// First write since the snapshot: copy this physical block to `pbn` first.
    pub copy_from: Option<u64>,
}

/// The address table and free list of one LU.
#[derive(Debug, Clone)]
pub struct SnapshotTable {
    entries: Vec<Entry>,
    /// Physical blocks in no mapping (the unused-block table).
    free: BTreeSet<u64>,
}

impl SnapshotTable {
    /// `logical_blocks` mapped one-to-one onto the first physical blocks, the rest free.
    /// `physical_blocks ≥ 2 × logical_blocks` never runs out of blocks.
    pub fn new(logical_blocks: u64, physical_blocks: u64) -> Result<SnapshotTable, RelayError> {
        if logical_blocks == 0 || physical_blocks < logical_blocks {
            return Err(RelayError::BadGeometry(
                "need at least one logical block and as many physical blocks",
            ));
        }
        Ok(SnapshotTable {
            entries: (0..logical_blocks)
                .map(|b| Entry {
                    latest: b,
                    changed: false,
                    snap: b,
                })
                .collect(),
            free: (logical_blocks..physical_blocks).collect(),
        })
    }

    pub fn logical_blocks(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn entry(&self, lbn: u64) -> Option<Entry> {
        self.entries.get(usize::try_from(lbn).ok()?).copied()
    }

    /// Physical blocks free.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Whether physical block `pbn` is free.
    pub fn is_free(&self, pbn: u64) -> bool {
        self.free.contains(&pbn)
    }

    /// Read-mode translation: the physical block holding logical block `lbn` now.
    pub fn read(&self, lbn: u64) -> Option<u64> {
        self.entry(lbn).map(|e| e.latest)
    }

    /// Write-mode translation (Fig. 34): allocates and asks for a copy on the first
    /// write since the snapshot.
    pub fn write(&mut self, lbn: u64) -> Result<BlockWrite, RelayError> {
        let blocks = self.logical_blocks();
        let e = usize::try_from(lbn)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
            .ok_or(RelayError::NoSuchBlock { lbn, blocks })?;
        if e.changed {
            return Ok(BlockWrite {
                pbn: e.latest,
                copy_from: None,
            });
        }
        let pbn = self
            .free
            .pop_first()
            .ok_or(RelayError::NoFreeBlock { lbn })?;
        let old = e.latest;
        e.latest = pbn;
        e.changed = true;
        Ok(BlockWrite {
            pbn,
            copy_from: Some(old),
        })
    }

    /// Snapshot-create ([0255]): the current mapping becomes the snapshot; the blocks
    /// it replaces are freed. Returns how many.
    pub fn create(&mut self) -> usize {
        let mut freed = 0;
        for e in self.entries.iter_mut().filter(|e| e.changed) {
            self.free.insert(e.snap);
            e.snap = e.latest;
            e.changed = false;
            freed += 1;
        }
        freed
    }

    /// Snapshot-restore ([0262]): back to the snapshot; the blocks written since are
    /// freed. Returns how many.
    pub fn restore(&mut self) -> usize {
        let mut freed = 0;
        for e in self.entries.iter_mut().filter(|e| e.changed) {
            self.free.insert(e.latest);
            e.latest = e.snap;
            e.changed = false;
            freed += 1;
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fig_31_life_cycle() {
        let mut t = SnapshotTable::new(2, 4).unwrap();
        // (b) → (c): the first write allocates and copies.
        assert_eq!(
            t.write(0).unwrap(),
            BlockWrite {
                pbn: 2,
                copy_from: Some(0)
            }
        );
        assert_eq!(
            t.write(0).unwrap(),
            BlockWrite {
                pbn: 2,
                copy_from: None
            }
        );
        assert_eq!(t.read(0), Some(2));
        // (c) → (d): the snapshot frees the old block.
        assert_eq!(t.create(), 1);
        assert_eq!(
            t.entry(0),
            Some(Entry {
                latest: 2,
                changed: false,
                snap: 2
            })
        );
        assert!(t.is_free(0));
        // A rollback frees the block written since.
        let w = t.write(1).unwrap();
        assert_eq!(t.restore(), 1);
        assert_eq!(t.read(1), Some(1));
        assert!(t.is_free(w.pbn));
        assert_eq!(t.free_blocks(), 2);
    }

    #[test]
    fn bad_geometry_and_exhaustion_are_errors() {
        assert!(SnapshotTable::new(4, 3).is_err());
        let mut t = SnapshotTable::new(2, 3).unwrap();
        t.write(0).unwrap();
        assert_eq!(t.write(1), Err(RelayError::NoFreeBlock { lbn: 1 }));
        assert_eq!(
            t.write(9),
            Err(RelayError::NoSuchBlock { lbn: 9, blocks: 2 })
        );
    }
}
