//! The switch cache (seed 003 §4.3–§4.4, §7.2 "Cache in the SW"): per-block entries of
//! virtual LUs, dirty (acknowledged to the host in `async` mode, not yet on the array) or
//! clean (a copy of what the array holds, for read hits).
//!
//! Sans-IO: the engine asks for dirty runs to destage, reports which writes the array
//! acknowledged, and drops entries an array changed behind the switch's back
//! (coherence after an offload). An entry re-dirtied while its destage was in flight
//! stays dirty: every dirty block carries a generation and only the generation that was
//! written is cleaned. Blocks are `Bytes` slices of the host's buffer, never copied.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

#[derive(Debug, Clone)]
struct Entry {
    data: Bytes,
    dirty: bool,
    /// Bumped on every write of the block.
    generation: u64,
    /// A destage of this generation is in flight.
    destaging: bool,
}

/// A run of dirty blocks handed out for destage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyRun {
    pub lun: u16,
    pub lba: u64,
    /// One slice per block, in order.
    pub blocks: Vec<Bytes>,
    /// The generation of each block written.
    pub generations: Vec<u64>,
}

/// The block cache of one switch.
#[derive(Debug, Default)]
pub struct SwitchCache {
    entries: BTreeMap<(u16, u64), Entry>,
    /// Clean entries in the order they became clean (eviction order; may hold stale keys).
    clean_order: VecDeque<(u16, u64)>,
    /// Most clean blocks kept.
    capacity: usize,
    next_generation: u64,
    dirty: usize,
}

impl SwitchCache {
    /// A cache keeping at most `capacity` clean blocks (dirty blocks are never evicted).
    pub fn new(capacity: usize) -> Self {
        SwitchCache {
            capacity,
            ..Default::default()
        }
    }

    /// Dirty blocks not yet on their array.
    pub fn dirty_blocks(&self) -> usize {
        self.dirty
    }

    /// The dirty blocks as (LUN, LBA), in order.
    pub fn dirty_keys(&self) -> Vec<(u16, u64)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.dirty)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Stores `data` (whole blocks of `block_bytes`) at `lun`/`lba`, dirty or clean.
    pub fn put(&mut self, lun: u16, lba: u64, data: &Bytes, block_bytes: usize, dirty: bool) {
        let bb = block_bytes.max(1);
        for (i, at) in (0..data.len() / bb).zip(lba..) {
            self.next_generation += 1;
            let block = data.slice(i * bb..(i + 1) * bb);
            let was_dirty = self.entries.get(&(lun, at)).is_some_and(|e| e.dirty);
            match (was_dirty, dirty) {
                (false, true) => self.dirty += 1,
                (true, false) => self.dirty -= 1,
                _ => {}
            }
            if !dirty {
                self.clean_order.push_back((lun, at));
            }
            // A destage of an older generation still in flight: this one waits for it,
            // or two writes of one block could land on the array out of order.
            let destaging = self.entries.get(&(lun, at)).is_some_and(|e| e.destaging);
            self.entries.insert(
                (lun, at),
                Entry {
                    data: block,
                    dirty,
                    generation: self.next_generation,
                    destaging,
                },
            );
        }
        self.evict();
    }

    /// The cached block at `lun`/`lba`.
    pub fn get(&self, lun: u16, lba: u64) -> Option<&Bytes> {
        self.entries.get(&(lun, lba)).map(|e| &e.data)
    }

    /// Whether every block of the range is cached (a read hit).
    pub fn covers(&self, lun: u16, lba: u64, blocks: u64) -> bool {
        (lba..lba + blocks).all(|b| self.entries.contains_key(&(lun, b)))
    }

    /// Whether any block of the range is dirty.
    pub fn any_dirty(&self, lun: u16, lba: u64, blocks: u64) -> bool {
        self.entries
            .range((lun, lba)..(lun, lba.saturating_add(blocks)))
            .any(|(_, e)| e.dirty)
    }

    /// Up to `max_blocks` of the next contiguous run of dirty blocks not already being
    /// destaged, in `lun` range order when `only` is given; marks them in flight.
    pub fn next_dirty_run(
        &mut self,
        only: Option<(u16, u64, u64)>,
        max_blocks: usize,
    ) -> Option<DirtyRun> {
        let (lo, hi) = match only {
            Some((lun, lba, n)) => ((lun, lba), (lun, lba.saturating_add(n))),
            None => ((0, 0), (u16::MAX, u64::MAX)),
        };
        let start = self
            .entries
            .range(lo..hi)
            .find(|(_, e)| e.dirty && !e.destaging)
            .map(|(k, _)| *k)?;
        let mut run = DirtyRun {
            lun: start.0,
            lba: start.1,
            blocks: Vec::new(),
            generations: Vec::new(),
        };
        let mut at = start.1;
        while run.blocks.len() < max_blocks && (start.0, at) < hi {
            match self.entries.get_mut(&(start.0, at)) {
                Some(e) if e.dirty && !e.destaging => {
                    e.destaging = true;
                    run.blocks.push(e.data.clone());
                    run.generations.push(e.generation);
                }
                _ => break,
            }
            at += 1;
        }
        Some(run)
    }

    /// The array acknowledged (`ok`) or failed the destage of `run`: written blocks of
    /// the same generation become clean; others stay dirty and may be handed out again.
    pub fn destaged(&mut self, run: &DirtyRun, ok: bool) {
        for (at, g) in (run.lba..).zip(&run.generations) {
            let Some(e) = self.entries.get_mut(&(run.lun, at)) else {
                continue;
            };
            e.destaging = false;
            if e.generation != *g {
                continue;
            }
            if ok && e.dirty {
                e.dirty = false;
                self.dirty -= 1;
                self.clean_order.push_back((run.lun, at));
            }
        }
        self.evict();
    }

    /// Drops clean entries of a range (an array wrote it directly). Dirty entries stay:
    /// they are newer than anything the array holds.
    pub fn invalidate(&mut self, lun: u16, lba: u64, blocks: u64) {
        let keys: Vec<(u16, u64)> = self
            .entries
            .range((lun, lba)..(lun, lba.saturating_add(blocks)))
            .filter(|(_, e)| !e.dirty)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.entries.remove(&k);
        }
    }

    /// Forgets everything (the switch lost power): the dirty blocks are gone.
    pub fn clear(&mut self) {
        *self = SwitchCache::new(self.capacity);
    }

    fn evict(&mut self) {
        let clean = self.entries.len() - self.dirty;
        let mut over = clean.saturating_sub(self.capacity);
        while over > 0 {
            let Some(k) = self.clean_order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&k)
                .is_some_and(|e| !e.dirty && !e.destaging)
            {
                self.entries.remove(&k);
                over -= 1;
            }
        }
        // Keys of entries that were re-dirtied or removed pile up; compact now and then.
        if self.clean_order.len() > 4 * self.capacity.max(1024) {
            let entries = &self.entries;
            self.clean_order
                .retain(|k| entries.get(k).is_some_and(|e| !e.dirty));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(fill: &[u8]) -> Bytes {
        Bytes::from(fill.iter().flat_map(|&b| [b; 4]).collect::<Vec<u8>>())
    }

    #[test]
    fn a_write_during_destage_stays_dirty() {
        let mut c = SwitchCache::new(8);
        c.put(0, 10, &blocks(&[1, 2]), 4, true);
        let run = c.next_dirty_run(None, 16).unwrap();
        assert_eq!((run.lba, run.blocks.len()), (10, 2));
        assert!(c.next_dirty_run(None, 16).is_none(), "in flight");
        c.put(0, 11, &blocks(&[9]), 4, true);
        c.destaged(&run, true);
        assert_eq!(c.dirty_keys(), vec![(0, 11)]);
        assert_eq!(c.get(0, 11).unwrap()[0], 9);
        let again = c.next_dirty_run(None, 16).unwrap();
        assert_eq!(again.lba, 11);
        c.destaged(&again, true);
        assert_eq!(c.dirty_blocks(), 0);
    }

    #[test]
    fn a_block_rewritten_during_its_destage_waits_for_that_destage() {
        let mut c = SwitchCache::new(8);
        c.put(0, 10, &blocks(&[1]), 4, true);
        let first = c.next_dirty_run(None, 16).unwrap();
        c.put(0, 10, &blocks(&[2]), 4, true);
        // Two writes of one block in flight at once may land out of order.
        assert!(c.next_dirty_run(None, 16).is_none());
        c.destaged(&first, true);
        let second = c.next_dirty_run(None, 16).unwrap();
        assert_eq!(second.blocks[0][0], 2);
        c.destaged(&second, true);
        assert!(c.dirty_keys().is_empty());
    }

    #[test]
    fn a_failed_destage_is_retried() {
        let mut c = SwitchCache::new(8);
        c.put(1, 0, &blocks(&[5]), 4, true);
        let run = c.next_dirty_run(Some((1, 0, 1)), 16).unwrap();
        c.destaged(&run, false);
        assert_eq!(c.dirty_blocks(), 1);
        assert!(c.next_dirty_run(Some((1, 0, 1)), 16).is_some());
    }

    #[test]
    fn clean_blocks_are_evicted_dirty_never() {
        let mut c = SwitchCache::new(2);
        c.put(0, 0, &blocks(&[1, 2, 3]), 4, false);
        assert!(!c.covers(0, 0, 3));
        assert!(c.covers(0, 1, 2));
        c.put(0, 10, &blocks(&[7, 7, 7, 7]), 4, true);
        assert!(c.covers(0, 10, 4));
        c.invalidate(0, 0, 20);
        assert!(c.covers(0, 10, 4), "dirty blocks survive invalidation");
        assert!(!c.covers(0, 1, 1));
    }
}
