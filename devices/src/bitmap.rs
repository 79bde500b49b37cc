//! The difference bitmap (seed 003 §3.9 TB, seed 004 and DESIGN.md §7): one bit per
//! block of a volume, set when the block changed and must be copied again, cleared once
//! the copy of it is confirmed. Sans-IO; shared by the intelligent switch and the
//! copy-services engine.

/// One bit per block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiffBitmap {
    words: Vec<u64>,
    blocks: u64,
    set: u64,
}

impl DiffBitmap {
    /// A clear bitmap of `blocks` blocks.
    pub fn new(blocks: u64) -> Self {
        let words = usize::try_from(blocks.div_ceil(64)).unwrap_or(usize::MAX);
        DiffBitmap {
            words: vec![0; words],
            blocks,
            set: 0,
        }
    }

    /// Blocks covered.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Bits set.
    pub fn count(&self) -> u64 {
        self.set
    }

    pub fn is_clear(&self) -> bool {
        self.set == 0
    }

    pub fn get(&self, block: u64) -> bool {
        block < self.blocks && self.words[(block / 64) as usize] & (1 << (block % 64)) != 0
    }

    /// Sets `n` bits from `block` (clipped to the volume).
    pub fn set_range(&mut self, block: u64, n: u64) {
        for b in block..block.saturating_add(n).min(self.blocks) {
            let (w, m) = ((b / 64) as usize, 1u64 << (b % 64));
            if self.words[w] & m == 0 {
                self.words[w] |= m;
                self.set += 1;
            }
        }
    }

    /// Clears `n` bits from `block` (clipped to the volume).
    pub fn clear_range(&mut self, block: u64, n: u64) {
        for b in block..block.saturating_add(n).min(self.blocks) {
            let (w, m) = ((b / 64) as usize, 1u64 << (b % 64));
            if self.words[w] & m != 0 {
                self.words[w] &= !m;
                self.set -= 1;
            }
        }
    }

    /// The first run of set bits at or after `from`, at most `max` long: (start, length).
    pub fn next_run(&self, from: u64, max: u64) -> Option<(u64, u64)> {
        let mut b = from;
        while b < self.blocks {
            let w = self.words[(b / 64) as usize] >> (b % 64);
            if w == 0 {
                b = (b / 64 + 1) * 64;
                continue;
            }
            b += u64::from(w.trailing_zeros());
            if b >= self.blocks {
                return None;
            }
            let start = b;
            while b < self.blocks && b - start < max && self.get(b) {
                b += 1;
            }
            return Some((start, b - start));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The runs cover exactly the set bits, and the count matches.
        #[test]
        fn runs_cover_the_set_bits(blocks in 1u64..300, ops in proptest::collection::vec((any::<bool>(), 0u64..300, 0u64..70), 0..20), max in 1u64..100) {
            let mut bm = DiffBitmap::new(blocks);
            let mut model = vec![false; blocks as usize];
            for (set, at, n) in ops {
                if set { bm.set_range(at, n) } else { bm.clear_range(at, n) }
                for b in at..(at + n).min(blocks) { model[b as usize] = set; }
            }
            prop_assert_eq!(bm.count(), model.iter().filter(|b| **b).count() as u64);
            let mut seen = vec![false; blocks as usize];
            let mut at = 0;
            while let Some((s, n)) = bm.next_run(at, max) {
                prop_assert!(n >= 1 && n <= max);
                for b in s..s + n { seen[b as usize] = true; }
                at = s + n;
            }
            prop_assert_eq!(seen, model);
        }
    }
}
