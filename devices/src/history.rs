//! The write history: every host write (volume, blocks, per-block digests, issue and
//! acknowledgement times) recorded as it happens. It is the oracle of the scenario
//! checks of DESIGN.md §8 (`no_acked_write_lost`, `image_at`, `rpo_at_most`, ...): a
//! check asks the history what a volume may legitimately hold and compares it with
//! what the volume does hold.
//!
//! Start here: [`History::record_issue`] / [`History::record_ack`] /
//! [`History::record_failure`] while the workload runs, then
//! [`History::check_no_acked_write_lost`], [`History::rpo`] and
//! [`History::expected_image`] in the checks.
//!
//! # The rule (one linearizable register per block)
//!
//! SCSI does not make a multi-block write atomic, so every block is its own register and
//! a write of `n` blocks is `n` register writes sharing one interval. Each write `w` has
//! an interval from its issue to its end:
//! - an **acknowledged** write ends at its acknowledgement and has certainly taken
//!   effect by then;
//! - a **failed** write ends at its failure report and may or may not have taken effect
//!   (but not after the report);
//! - a **pending** write (or one whose ack or failure comes after the instant asked
//!   about) has no end: it may take effect at any later point, or never.
//!
//! `a` *precedes* `b` when `a` ended before `b` was issued. The order of events is the
//! order in which they were recorded (a sequence number), so an acknowledgement and an
//! issue recorded at the same simulated instant are still ordered the way the host saw
//! them. At a given instant, a block may hold the value of write `w` if and only if no
//! *acknowledged* write touching the block is preceded by `w` (nothing certainly
//! overwrote it); it may still hold its initial content if and only if no write touching
//! it has been acknowledged. So the legal values are the last acknowledged write that
//! nothing acknowledged overwrote, plus every write concurrent with it or later.
//!
//! An acknowledged write `w` is **lost** when one of its blocks holds a value that is
//! neither `w`'s nor that of a write that does not precede `w` (a write concurrent with
//! or later than `w`). Block by block this is the same as "the block holds a value
//! outside its legal set", and it names the writes whose data is gone, which is what
//! RPO counts.
//!
//! # Digests
//!
//! [`digest`] is FNV-1a 64 (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`)
//! over one block taken as little-endian 64-bit words (each word XORed in whole, then
//! one multiply), its last `len % 8` bytes one at a time as in plain FNV-1a; so any tool
//! in any language can reproduce it (a block shorter than 8 bytes digests as plain
//! FNV-1a). One multiply per 8 bytes: the digest of every recorded write and of every
//! block a check reads is on the simulation's hot path. Block `i`
//! of a write is `data[i*block_bytes .. (i+1)*block_bytes]`; if the data is shorter than
//! `blocks × block_bytes` the missing bytes are simply absent from the digested slice.
//! A volume reports a never-written block as `None`; `None` and the digest of an
//! all-zero block both match "initial content".

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The block digest every check compares: FNV-1a 64 over the little-endian 64-bit
/// words of `bytes`, then its remaining bytes (see the module doc).
pub fn digest(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut h = FNV_OFFSET;
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(FNV_PRIME);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

/// [`digest`] of each `block_bytes`-byte block of `data`, `blocks` of them (a block past
/// the end of `data` is cut short, or empty).
pub fn block_digests(data: &[u8], block_bytes: usize, blocks: usize) -> Vec<u64> {
    let bb = block_bytes.max(1);
    (0..blocks)
        .map(|i| {
            let start = i.saturating_mul(bb).min(data.len());
            digest(&data[start..start.saturating_add(bb).min(data.len())])
        })
        .collect()
}

/// Digest of an all-zero block of `block_bytes` bytes (what a fresh block reads as).
pub fn zero_digest(block_bytes: u32) -> u64 {
    let mut h = FNV_OFFSET;
    // XOR with a zero word or byte changes nothing: one multiply per word, then per byte.
    for _ in 0..block_bytes / 8 + block_bytes % 8 {
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// What became of a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum WriteOutcome {
    /// Issued, neither acknowledged nor failed yet.
    Pending,
    /// Acknowledged with GOOD status: the data must survive.
    Acked,
    /// Reported failed (status, abort, timeout); it may or may not have taken effect.
    Failed(String),
}

/// One host write as the history recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct WriteRecord {
    /// Identifier returned by [`History::record_issue`]; increasing in issue order.
    pub id: u64,
    /// Device name written to, e.g. `arr1:0` or `sw1:vlu0`.
    pub volume: String,
    /// First logical block written.
    pub lba: u64,
    /// Number of logical blocks written.
    pub blocks: u32,
    /// Size of one logical block of the volume, in bytes.
    pub block_bytes: u32,
    /// [`digest`] of each block, `block_digests[i]` for block `lba + i`; `blocks` long.
    pub block_digests: Vec<u64>,
    /// The written bytes, kept only when the history was created with `keep_data`.
    #[serde(skip)]
    pub data: Option<Bytes>,
    /// Simulated time the write was issued.
    pub issued_at: Duration,
    /// Simulated time it was acknowledged (`Some` only when `outcome` is `Acked`).
    pub acked_at: Option<Duration>,
    /// Simulated time it was reported failed (`Some` only when `outcome` is `Failed`).
    pub failed_at: Option<Duration>,
    /// What became of it.
    pub outcome: WriteOutcome,
    /// Recording sequence number of the issue event (orders events at equal times).
    #[serde(skip)]
    pub issue_seq: u64,
    /// Recording sequence number of the ack or failure event, if any.
    #[serde(skip)]
    pub end_seq: Option<u64>,
}

impl WriteRecord {
    /// The blocks `lba .. lba + blocks` this write touches.
    pub fn block_range(&self) -> std::ops::Range<u64> {
        self.lba..self.lba + u64::from(self.blocks)
    }

    /// Bytes written (`blocks × block_bytes`).
    pub fn bytes(&self) -> u64 {
        u64::from(self.blocks) * u64::from(self.block_bytes)
    }

    /// The bytes of block `lba` of this write, if data was kept and `lba` is in range.
    pub fn block_data(&self, lba: u64) -> Option<Bytes> {
        let data = self.data.as_ref()?;
        if !self.block_range().contains(&lba) {
            return None;
        }
        let bb = usize::try_from(self.block_bytes).ok()?;
        let i = usize::try_from(lba - self.lba).ok()?;
        let start = i.checked_mul(bb)?.min(data.len());
        let end = start.saturating_add(bb).min(data.len());
        Some(data.slice(start..end))
    }

    /// Digest of block `lba` of this write (must be in range).
    fn digest_at(&self, lba: u64) -> Option<u64> {
        let i = usize::try_from(lba.checked_sub(self.lba)?).ok()?;
        self.block_digests.get(i).copied()
    }
}

/// The legal contents of one block at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlockCandidates {
    /// The block may still hold its initial content (no write to it was acknowledged).
    pub initial_allowed: bool,
    /// Writes whose value the block may hold, `(write id, digest of this block)`, in
    /// issue order.
    pub writes: Vec<(u64, u64)>,
}

impl BlockCandidates {
    /// Whether a block reading as `found` (`None` = never written) is legal.
    /// `zero` is the digest of an all-zero block, which also counts as initial content.
    pub fn allows(&self, found: Option<u64>, zero: u64) -> bool {
        match found {
            None => self.initial_allowed,
            Some(d) => {
                (self.initial_allowed && d == zero) || self.writes.iter().any(|&(_, w)| w == d)
            }
        }
    }

    /// The one legal value when the block is fully determined: `Some((id, digest))`.
    pub fn definite(&self) -> Option<(u64, u64)> {
        match self.writes.as_slice() {
            [only] if !self.initial_allowed => Some(*only),
            _ => None,
        }
    }
}

/// A block whose content is not among its legal values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockMismatch {
    /// The block.
    pub lba: u64,
    /// Its digest as read (`None` = never written).
    pub found: Option<u64>,
    /// What it may legally hold.
    pub expected: BlockCandidates,
}

/// What every block of a volume may legally hold at one instant.
///
/// Blocks touched only by writes issued after that instant hold their initial content
/// only; blocks never written are absent.
#[derive(Debug, Clone, Serialize)]
pub struct ImageModel {
    /// The volume.
    pub volume: String,
    /// The instant (`None` = after everything recorded).
    pub at: Option<Duration>,
    /// Block size of the volume (from its writes; 0 when nothing was written).
    pub block_bytes: u32,
    /// Legal values of every touched block.
    pub blocks: BTreeMap<u64, BlockCandidates>,
}

impl ImageModel {
    /// Legal values of block `lba` (`None`: untouched, initial content only).
    pub fn candidates(&self, lba: u64) -> Option<&BlockCandidates> {
        self.blocks.get(&lba)
    }

    /// Whether every touched block has exactly one legal value.
    pub fn is_definite(&self) -> bool {
        self.blocks.values().all(|c| c.definite().is_some())
    }

    /// Compare every touched block with `read_block`; `Ok(blocks checked)` when all are
    /// legal. Untouched blocks are not read.
    pub fn check(
        &self,
        read_block: impl Fn(u64) -> Option<u64>,
    ) -> Result<usize, Vec<BlockMismatch>> {
        let zero = zero_digest(self.block_bytes);
        let mut bad = Vec::new();
        for (&lba, cands) in &self.blocks {
            let found = read_block(lba);
            if !cands.allows(found, zero) {
                bad.push(BlockMismatch {
                    lba,
                    found,
                    expected: cands.clone(),
                });
            }
        }
        if bad.is_empty() {
            Ok(self.blocks.len())
        } else {
            Err(bad)
        }
    }
}

/// An acknowledged write whose data is not on the volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostWrite {
    /// The write.
    pub id: u64,
    /// The first of its blocks found without its value (or a later one).
    pub lba: u64,
    /// This write's digest of that block.
    pub expected: u64,
    /// The digest read there (`None` = never written).
    pub found: Option<u64>,
    /// When the write was acknowledged.
    pub acked_at: Duration,
    /// Bytes of the whole write.
    pub bytes: u64,
}

/// Recovery point: what acknowledged data a volume has lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rpo {
    /// Acknowledged writes with at least one block missing.
    pub lost_writes: usize,
    /// Sum of the sizes of those writes.
    pub lost_bytes: u64,
    /// Earliest acknowledgement among them (the start of the lost window).
    pub oldest_lost_ack: Option<Duration>,
    /// Latest acknowledgement among them.
    pub newest_lost_ack: Option<Duration>,
}

/// The recorded history of host writes, for all volumes.
///
/// Call order: [`record_issue`](Self::record_issue) when a write is sent, then exactly
/// one of [`record_ack`](Self::record_ack) / [`record_failure`](Self::record_failure)
/// when its status arrives (a write never answered stays pending). Queries may be made
/// at any time.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Keep the written bytes in each record (for exact image reconstruction).
    keep_data: bool,
    /// All writes by id (ids are dense from 0, in issue order).
    writes: Vec<WriteRecord>,
    /// Per volume, per block: ids of the writes touching it, in issue order.
    index: BTreeMap<String, BTreeMap<u64, Vec<u64>>>,
    /// Next recording sequence number.
    seq: u64,
}

/// How one write stands at the instant a query asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Not issued yet at that instant: ignored.
    Future,
    /// In flight: no end.
    Open,
    /// Acknowledged by then, at this sequence number.
    Acked(u64),
    /// Failed by then, at this sequence number.
    Failed(u64),
}

impl Status {
    /// End of the interval; `u64::MAX` for an open one.
    fn end(self) -> u64 {
        match self {
            Status::Acked(s) | Status::Failed(s) => s,
            Status::Open | Status::Future => u64::MAX,
        }
    }
}

impl History {
    /// An empty history; `keep_data` keeps every written buffer (memory grows with the
    /// bytes written).
    pub fn new(keep_data: bool) -> Self {
        Self {
            keep_data,
            ..Self::default()
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Rebuilds a history from records reported elsewhere (a host's `WriteHistory`
    /// answer), ordered by their recording sequence numbers. Ids are renumbered densely
    /// in issue order, so a subset of another history (one volume's writes) is fine.
    pub fn from_records(mut records: Vec<WriteRecord>) -> Self {
        records.sort_by_key(|r| r.issue_seq);
        let mut h = Self::default();
        for (i, mut r) in records.into_iter().enumerate() {
            r.id = i as u64;
            h.seq = h.seq.max(r.issue_seq).max(r.end_seq.unwrap_or(0));
            let per_block = h.index.entry(r.volume.clone()).or_default();
            for b in r.block_range() {
                per_block.entry(b).or_default().push(r.id);
            }
            h.writes.push(r);
        }
        h
    }

    /// Record a write sent to `volume` and return its id.
    pub fn record_issue(
        &mut self,
        volume: &str,
        lba: u64,
        blocks: u32,
        block_bytes: u32,
        data: &Bytes,
        now: Duration,
    ) -> u64 {
        let id = self.writes.len() as u64;
        let bb = usize::try_from(block_bytes).unwrap_or(usize::MAX);
        let block_digests = block_digests(data, bb, blocks as usize);
        let issue_seq = self.next_seq();
        let rec = WriteRecord {
            id,
            volume: volume.to_owned(),
            lba,
            blocks,
            block_bytes,
            block_digests,
            data: self.keep_data.then(|| data.clone()),
            issued_at: now,
            acked_at: None,
            failed_at: None,
            outcome: WriteOutcome::Pending,
            issue_seq,
            end_seq: None,
        };
        let per_block = self.index.entry(volume.to_owned()).or_default();
        for b in rec.block_range() {
            per_block.entry(b).or_default().push(id);
        }
        self.writes.push(rec);
        id
    }

    /// Record the acknowledgement (GOOD status) of write `id`. Returns `false` (and
    /// changes nothing) if `id` is unknown or already acknowledged or failed.
    pub fn record_ack(&mut self, id: u64, now: Duration) -> bool {
        let seq = self.seq + 1;
        let Some(w) = self.pending_mut(id) else {
            return false;
        };
        w.acked_at = Some(now);
        w.outcome = WriteOutcome::Acked;
        w.end_seq = Some(seq);
        self.seq = seq;
        true
    }

    /// Record that write `id` failed. Returns `false` (and changes nothing) if `id` is
    /// unknown or already acknowledged or failed.
    pub fn record_failure(&mut self, id: u64, reason: &str, now: Duration) -> bool {
        let seq = self.seq + 1;
        let Some(w) = self.pending_mut(id) else {
            return false;
        };
        w.failed_at = Some(now);
        w.outcome = WriteOutcome::Failed(reason.to_owned());
        w.end_seq = Some(seq);
        self.seq = seq;
        true
    }

    fn pending_mut(&mut self, id: u64) -> Option<&mut WriteRecord> {
        let w = self.writes.get_mut(usize::try_from(id).ok()?)?;
        (w.outcome == WriteOutcome::Pending).then_some(w)
    }

    /// Write `id`.
    pub fn get(&self, id: u64) -> Option<&WriteRecord> {
        self.writes.get(usize::try_from(id).ok()?)
    }

    /// All writes, in issue order.
    pub fn writes(&self) -> &[WriteRecord] {
        &self.writes
    }

    /// The writes to `volume`, in issue order.
    pub fn writes_to<'a>(&'a self, volume: &'a str) -> impl Iterator<Item = &'a WriteRecord> {
        self.writes.iter().filter(move |w| w.volume == volume)
    }

    /// Volumes written to, in name order.
    pub fn volumes(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Number of acknowledged writes to `volume`.
    pub fn acked_count(&self, volume: &str) -> usize {
        self.writes_to(volume)
            .filter(|w| w.outcome == WriteOutcome::Acked)
            .count()
    }

    /// Number of writes to `volume` neither acknowledged nor failed.
    pub fn pending_count(&self, volume: &str) -> usize {
        self.writes_to(volume)
            .filter(|w| w.outcome == WriteOutcome::Pending)
            .count()
    }

    /// How write `w` stands at an instant known only to lie in `[from, to]`: ended if
    /// it ended by `from`, not yet issued if issued after `to`, in flight otherwise.
    fn status_across(w: &WriteRecord, from: Option<Duration>, to: Option<Duration>) -> Status {
        let by = |t: Option<Duration>| t.is_some_and(|t| from.is_none_or(|at| t <= at));
        if to.is_some_and(|to| w.issued_at > to) {
            return Status::Future;
        }
        match (w.end_seq, &w.outcome) {
            (Some(s), WriteOutcome::Acked) if by(w.acked_at) => Status::Acked(s),
            (Some(s), WriteOutcome::Failed(_)) if by(w.failed_at) => Status::Failed(s),
            _ => Status::Open,
        }
    }

    fn block_size_of(&self, volume: &str) -> u32 {
        self.writes_to(volume).next().map_or(0, |w| w.block_bytes)
    }

    /// What every block of `volume` may legally hold at instant `at` (`None` = after
    /// everything recorded), by the rule in the module doc.
    pub fn expected_image(&self, volume: &str, at: Option<Duration>) -> ImageModel {
        self.expected_image_across(volume, at, at)
    }

    /// What every block may hold at a cut that happened somewhere in `[from, to]` (a
    /// split acknowledged at `to` after it was asked for at `from`): writes ended by
    /// `from` are in, writes issued after `to` are out, the rest may fall either side.
    pub fn expected_image_across(
        &self,
        volume: &str,
        from: Option<Duration>,
        to: Option<Duration>,
    ) -> ImageModel {
        let at = to;
        let mut blocks = BTreeMap::new();
        for (&lba, ids) in self.index.get(volume).into_iter().flatten() {
            let touching: Vec<(&WriteRecord, Status)> = ids
                .iter()
                .filter_map(|&id| self.get(id))
                .map(|w| (w, Self::status_across(w, from, to)))
                .filter(|(_, s)| *s != Status::Future)
                .collect();
            if touching.is_empty() {
                // Written only later: it must still hold its initial content.
                blocks.insert(
                    lba,
                    BlockCandidates {
                        initial_allowed: true,
                        writes: Vec::new(),
                    },
                );
                continue;
            }
            // The latest issue among writes acknowledged by `at`: anything that ended
            // before it was certainly overwritten.
            let last_acked_issue = touching
                .iter()
                .filter(|(_, s)| matches!(s, Status::Acked(_)))
                .map(|(w, _)| w.issue_seq)
                .max();
            let writes = touching
                .iter()
                .filter(|(_, s)| last_acked_issue.is_none_or(|i| s.end() >= i))
                .filter_map(|(w, _)| Some((w.id, w.digest_at(lba)?)))
                .collect();
            blocks.insert(
                lba,
                BlockCandidates {
                    initial_allowed: last_acked_issue.is_none(),
                    writes,
                },
            );
        }
        ImageModel {
            volume: volume.to_owned(),
            at,
            block_bytes: self.block_size_of(volume),
            blocks,
        }
    }

    /// The earliest instant whose image `volume` holds (`read_block` as in
    /// [`History::check_no_acked_write_lost`]): the volume is a prefix of the write
    /// order, cut there. `None`: no instant fits, the volume mixes writes out of order.
    pub fn prefix_instant(
        &self,
        volume: &str,
        read_block: impl Fn(u64) -> Option<u64>,
    ) -> Option<Option<Duration>> {
        let mut instants: Vec<Duration> = self
            .writes_to(volume)
            .flat_map(|w| [Some(w.issued_at), w.acked_at, w.failed_at])
            .flatten()
            .collect();
        instants.sort();
        instants.dedup();
        // Before the first write (only initial content), then after each event.
        let before = instants
            .first()
            .map(|t| t.saturating_sub(Duration::from_nanos(1)));
        std::iter::once(before)
            .chain(instants.into_iter().map(Some))
            .chain(std::iter::once(None))
            .find(|t| self.expected_image(volume, *t).check(&read_block).is_ok())
    }

    /// The acknowledged writes to `volume` that the volume no longer reflects.
    ///
    /// `read_block(lba)` gives the [`digest`] of block `lba` as it is now (`None` =
    /// never written). Returns `Ok(blocks checked)` — every block touched by an
    /// acknowledged write — or one [`LostWrite`] per lost write, in id order.
    pub fn check_no_acked_write_lost(
        &self,
        volume: &str,
        read_block: impl Fn(u64) -> Option<u64>,
    ) -> Result<usize, Vec<LostWrite>> {
        let (checked, lost) = self.lost_writes(volume, read_block);
        if lost.is_empty() {
            Ok(checked)
        } else {
            Err(lost)
        }
    }

    /// Recovery point of `volume`: how many acknowledged writes (and bytes) it lost.
    pub fn rpo(&self, volume: &str, read_block: impl Fn(u64) -> Option<u64>) -> Rpo {
        let (_, lost) = self.lost_writes(volume, read_block);
        Rpo {
            lost_writes: lost.len(),
            lost_bytes: lost.iter().map(|l| l.bytes).sum(),
            oldest_lost_ack: lost.iter().map(|l| l.acked_at).min(),
            newest_lost_ack: lost.iter().map(|l| l.acked_at).max(),
        }
    }

    /// Blocks checked and lost writes (one entry each, first bad block), by the rule in
    /// the module doc: acknowledged `w` is lost at a block holding value `v` unless some
    /// write carrying `v` there ended at or after `w`'s issue (or has not ended).
    fn lost_writes(
        &self,
        volume: &str,
        read_block: impl Fn(u64) -> Option<u64>,
    ) -> (usize, Vec<LostWrite>) {
        let mut checked = 0;
        let mut lost: BTreeMap<u64, LostWrite> = BTreeMap::new();
        for (&lba, ids) in self.index.get(volume).into_iter().flatten() {
            let touching: Vec<&WriteRecord> = ids.iter().filter_map(|&id| self.get(id)).collect();
            if !touching.iter().any(|w| w.outcome == WriteOutcome::Acked) {
                continue;
            }
            checked += 1;
            let found = read_block(lba);
            // Latest end among the writes whose value the block holds. Initial content
            // (`None`, or zeros nobody wrote) ended before everything and keeps nothing.
            let holder_end = touching
                .iter()
                .filter(|w| found.is_some() && w.digest_at(lba) == found)
                .map(|w| w.end_seq.unwrap_or(u64::MAX))
                .max();
            for w in touching.iter().filter(|w| w.outcome == WriteOutcome::Acked) {
                let kept = holder_end.is_some_and(|end| end >= w.issue_seq);
                if kept || lost.contains_key(&w.id) {
                    continue;
                }
                let (Some(expected), Some(acked_at)) = (w.digest_at(lba), w.acked_at) else {
                    continue;
                };
                lost.insert(
                    w.id,
                    LostWrite {
                        id: w.id,
                        lba,
                        expected,
                        found,
                        acked_at,
                        bytes: w.bytes(),
                    },
                );
            }
        }
        (checked, lost.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use proptest::prelude::*;

    const BB: u32 = 16;
    const VOL: &str = "arr1:0";

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    proptest! {
        /// The lockstep digests are exactly `digest` of each block, for any length
        /// (whole, short or missing blocks) and block count.
        #[test]
        fn block_digests_match_digest(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
            bb in 1usize..40,
            blocks in 0usize..12,
        ) {
            let want: Vec<u64> = (0..blocks)
                .map(|i| {
                    let s = (i * bb).min(bytes.len());
                    digest(&bytes[s..(s + bb).min(bytes.len())])
                })
                .collect();
            prop_assert_eq!(block_digests(&bytes, bb, blocks), want);
        }
    }

    /// Data unique to (tag, block): every block of every write has its own digest.
    fn data(tag: u64, blocks: u32) -> Bytes {
        let mut v = Vec::new();
        for b in 0..u64::from(blocks) {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&b.to_le_bytes());
        }
        Bytes::from(v)
    }

    /// A volume as a map of block digests.
    #[derive(Default, Clone)]
    struct Vol(BTreeMap<u64, u64>);

    impl Vol {
        fn apply(&mut self, w: &WriteRecord) {
            for (i, d) in w.block_digests.iter().enumerate() {
                self.0.insert(w.lba + i as u64, *d);
            }
        }
        fn read(&self) -> impl Fn(u64) -> Option<u64> + '_ {
            |lba| self.0.get(&lba).copied()
        }
    }

    #[test]
    fn fnv1a_reference_values() {
        // Shorter than a word: plain FNV-1a 64.
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(digest(b"foobar"), 0x8594_4171_f739_67e8);
        // One word, then one byte, by hand.
        let word = u64::from_le_bytes(*b"abcdefgh");
        let h = (0xcbf2_9ce4_8422_2325 ^ word).wrapping_mul(0x0000_0100_0000_01b3);
        let h = (h ^ u64::from(b'i')).wrapping_mul(0x0000_0100_0000_01b3);
        assert_eq!(digest(b"abcdefghi"), h);
        for n in [0, 7, 8, 9, 512, 4099] {
            assert_eq!(zero_digest(n), digest(&vec![0u8; n as usize]), "{n} bytes");
        }
    }

    #[test]
    fn sequential_writes_are_definite() {
        let mut h = History::new(true);
        let mut vol = Vol::default();
        for i in 0..4u64 {
            let id = h.record_issue(VOL, i * 2, 2, BB, &data(i, 2), us(i * 10));
            vol.apply(h.get(id).unwrap());
            assert!(h.record_ack(id, us(i * 10 + 5)));
        }
        let img = h.expected_image(VOL, None);
        assert!(img.is_definite());
        assert_eq!(img.blocks.len(), 8);
        assert_eq!(img.check(vol.read()), Ok(8));
        assert_eq!(h.check_no_acked_write_lost(VOL, vol.read()), Ok(8));
        assert_eq!(h.rpo(VOL, vol.read()), Rpo::default());
        // Exact data kept for reconstruction.
        let w = h.get(1).unwrap();
        assert_eq!(w.block_data(3).unwrap(), data(1, 2).slice(16..32));
        // Before the third write was issued, blocks 4..8 must hold initial content.
        let early = h.expected_image(VOL, Some(us(15)));
        assert_eq!(early.blocks.len(), 8);
        assert!(
            (4..8).all(|b| early.candidates(b).unwrap().writes.is_empty()
                && early.candidates(b).unwrap().initial_allowed)
        );
        assert!(
            early.check(vol.read()).is_err(),
            "the final volume is not that image"
        );
    }

    #[test]
    fn overlapping_later_write_supersedes() {
        let mut h = History::new(false);
        let a = h.record_issue(VOL, 0, 4, BB, &data(1, 4), us(0));
        h.record_ack(a, us(1));
        let b = h.record_issue(VOL, 2, 4, BB, &data(2, 4), us(2));
        h.record_ack(b, us(3));
        let img = h.expected_image(VOL, None);
        assert_eq!(img.candidates(1).unwrap().definite().unwrap().0, a);
        assert_eq!(img.candidates(2).unwrap().definite().unwrap().0, b);
        assert_eq!(img.candidates(5).unwrap().definite().unwrap().0, b);
        // At t=2 b is in flight: blocks 2..4 may hold a's or b's value.
        let mid = h.expected_image(VOL, Some(us(2)));
        let c = mid.candidates(3).unwrap();
        assert_eq!(c.writes.iter().map(|w| w.0).collect::<Vec<_>>(), vec![a, b]);
        assert!(!c.initial_allowed);
        // Block 4 at t=2: initial or b.
        assert!(mid.candidates(4).unwrap().initial_allowed);
        // A volume holding a's value where b was acknowledged has lost b.
        let mut vol = Vol::default();
        vol.apply(h.get(a).unwrap());
        vol.apply(h.get(b).unwrap());
        let wa = h.get(a).unwrap().block_digests[3];
        vol.0.insert(3, wa);
        let lost = h.check_no_acked_write_lost(VOL, vol.read()).unwrap_err();
        assert_eq!(lost.len(), 1);
        assert_eq!((lost[0].id, lost[0].lba, lost[0].found), (b, 3, Some(wa)));
    }

    #[test]
    fn in_flight_write_allows_either_value() {
        let mut h = History::new(false);
        let a = h.record_issue(VOL, 0, 1, BB, &data(1, 1), us(0));
        h.record_ack(a, us(1));
        let b = h.record_issue(VOL, 0, 1, BB, &data(2, 1), us(2));
        let mut vol = Vol::default();
        vol.apply(h.get(a).unwrap());
        assert_eq!(h.check_no_acked_write_lost(VOL, vol.read()), Ok(1));
        vol.apply(h.get(b).unwrap());
        assert_eq!(h.check_no_acked_write_lost(VOL, vol.read()), Ok(1));
        // A failed write may or may not have landed.
        h.record_failure(b, "aborted", us(3));
        assert_eq!(h.check_no_acked_write_lost(VOL, vol.read()), Ok(1));
        assert!(h.expected_image(VOL, None).check(vol.read()).is_ok());
        // ...but a write acknowledged after the failure supersedes it.
        let c = h.record_issue(VOL, 0, 1, BB, &data(3, 1), us(4));
        h.record_ack(c, us(5));
        assert_eq!(
            h.expected_image(VOL, None)
                .candidates(0)
                .unwrap()
                .definite()
                .unwrap()
                .0,
            c
        );
        assert!(h.check_no_acked_write_lost(VOL, vol.read()).is_err());
        // Two concurrent writes both acknowledged: either may be last.
        let d = h.record_issue(VOL, 0, 1, BB, &data(4, 1), us(6));
        let e = h.record_issue(VOL, 0, 1, BB, &data(5, 1), us(6));
        h.record_ack(e, us(7));
        h.record_ack(d, us(7));
        let c0 = h.expected_image(VOL, None).candidates(0).unwrap().clone();
        assert_eq!(
            c0.writes.iter().map(|w| w.0).collect::<Vec<_>>(),
            vec![d, e]
        );
        assert!(!h.record_ack(d, us(8)), "double ack is refused");
    }

    #[test]
    fn lost_acked_write_counts_in_rpo() {
        let mut h = History::new(false);
        let mut primary = Vol::default();
        for i in 0..5u64 {
            let id = h.record_issue(VOL, i, 2, BB, &data(i, 2), us(i * 10));
            primary.apply(h.get(id).unwrap());
            h.record_ack(id, us(i * 10 + 1));
        }
        // An async secondary that received only the first three writes.
        let mut secondary = Vol::default();
        for id in 0..3 {
            secondary.apply(h.get(id).unwrap());
        }
        let rpo = h.rpo(VOL, secondary.read());
        assert_eq!(rpo.lost_writes, 2);
        assert_eq!(rpo.lost_bytes, 2 * 2 * u64::from(BB));
        assert_eq!(rpo.oldest_lost_ack, Some(us(31)));
        assert_eq!(rpo.newest_lost_ack, Some(us(41)));
        let lost = h
            .check_no_acked_write_lost(VOL, secondary.read())
            .unwrap_err();
        assert_eq!(lost.iter().map(|l| l.id).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(lost[1].found, None);
        assert_eq!(h.rpo(VOL, primary.read()), Rpo::default());
        // Other volumes are independent.
        assert_eq!(h.rpo("arr2:0", secondary.read()), Rpo::default());
    }

    /// One step of a random history.
    #[derive(Debug, Clone)]
    enum Op {
        Issue { lba: u64, blocks: u32 },
        Apply(usize),
        Ack(usize),
        Fail(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..6, 1u32..4).prop_map(|(lba, blocks)| Op::Issue { lba, blocks }),
            1 => any::<usize>().prop_map(Op::Apply),
            3 => any::<usize>().prop_map(Op::Ack),
            1 => any::<usize>().prop_map(Op::Fail),
        ]
    }

    /// The test's own log of one write: event indices and times, independent of the
    /// history's internals.
    #[derive(Debug, Clone)]
    struct Log {
        issue: (usize, Duration),
        end: Option<(usize, Duration, bool /* acked */)>,
        applied: bool,
    }

    /// Play `ops` against a history and a store that applies each write at some point
    /// inside its interval (or never, if it is not acknowledged).
    fn play(ops: &[Op], steps: &[u64]) -> (History, Vol, Vec<Log>) {
        let mut h = History::new(false);
        let mut vol = Vol::default();
        let mut logs: Vec<Log> = Vec::new();
        let mut t = 0;
        for (ev, op) in ops.iter().enumerate() {
            t += steps[ev % steps.len()];
            let open: Vec<usize> = logs
                .iter()
                .enumerate()
                .filter(|(_, l)| l.end.is_none())
                .map(|(i, _)| i)
                .collect();
            match *op {
                Op::Issue { lba, blocks } => {
                    let id = h.record_issue(
                        VOL,
                        lba,
                        blocks,
                        BB,
                        &data(logs.len() as u64, blocks),
                        us(t),
                    );
                    assert_eq!(id, logs.len() as u64);
                    logs.push(Log {
                        issue: (ev, us(t)),
                        end: None,
                        applied: false,
                    });
                }
                Op::Apply(k) | Op::Ack(k) | Op::Fail(k) if !open.is_empty() => {
                    let i = open[k % open.len()];
                    if matches!(op, Op::Apply(_) | Op::Ack(_)) && !logs[i].applied {
                        vol.apply(h.get(i as u64).unwrap());
                        logs[i].applied = true;
                    }
                    match op {
                        Op::Ack(_) => {
                            assert!(h.record_ack(i as u64, us(t)));
                            logs[i].end = Some((ev, us(t), true));
                        }
                        Op::Fail(_) => {
                            assert!(h.record_failure(i as u64, "x", us(t)));
                            logs[i].end = Some((ev, us(t), false));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        (h, vol, logs)
    }

    /// Brute force: every value a block may hold at `at`, by trying every set of
    /// writes that took effect (acknowledged ones must have) and every order of them
    /// consistent with real time. `None` = initial content.
    fn brute_force(
        h: &History,
        logs: &[Log],
        lba: u64,
        at: Option<Duration>,
    ) -> BTreeSet<Option<u64>> {
        let visible = |t: Duration| at.is_none_or(|at| t <= at);
        let ws: Vec<usize> = (0..logs.len())
            .filter(|&i| h.get(i as u64).unwrap().block_range().contains(&lba))
            .filter(|&i| visible(logs[i].issue.1))
            .collect();
        let end = |i: usize| logs[i].end.filter(|e| visible(e.1));
        let must = |i: usize| end(i).is_some_and(|e| e.2);
        let precedes = |a: usize, b: usize| end(a).is_some_and(|e| e.0 < logs[b].issue.0);
        let mut out = BTreeSet::new();
        for mask in 0u32..(1 << ws.len()) {
            let set: Vec<usize> = ws
                .iter()
                .enumerate()
                .filter(|(j, _)| mask & (1 << j) != 0)
                .map(|(_, &i)| i)
                .collect();
            if ws.iter().any(|&i| must(i) && !set.contains(&i)) {
                continue;
            }
            permute(&mut set.clone(), 0, &mut |perm: &[usize]| {
                let ok = (0..perm.len())
                    .all(|x| (x + 1..perm.len()).all(|y| !precedes(perm[y], perm[x])));
                if ok {
                    out.insert(
                        perm.last()
                            .map(|&i| h.get(i as u64).unwrap().digest_at(lba).unwrap()),
                    );
                }
            });
        }
        out
    }

    fn permute(v: &mut Vec<usize>, k: usize, f: &mut impl FnMut(&[usize])) {
        if k == v.len() {
            f(v);
            return;
        }
        for i in k..v.len() {
            v.swap(k, i);
            permute(v, k + 1, f);
            v.swap(k, i);
        }
    }

    fn model_set(img: &ImageModel, lba: u64) -> BTreeSet<Option<u64>> {
        let Some(c) = img.candidates(lba) else {
            return BTreeSet::from([None]);
        };
        let mut s: BTreeSet<Option<u64>> = c.writes.iter().map(|w| Some(w.1)).collect();
        if c.initial_allowed {
            s.insert(None);
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The oracle agrees with brute force, accepts every legal execution, and
        /// reports a dropped acknowledged write every time.
        #[test]
        fn oracle_matches_brute_force(
            ops in prop::collection::vec(op(), 1..24),
            steps in prop::collection::vec(0u64..3, 1..8),
            cut in 0u64..40,
            victim in any::<usize>(),
        ) {
            let (h, vol, logs) = play(&ops, &steps);
            // A legal execution never loses anything.
            prop_assert!(h.check_no_acked_write_lost(VOL, vol.read()).is_ok());
            prop_assert!(h.expected_image(VOL, None).check(vol.read()).is_ok());
            prop_assert_eq!(h.rpo(VOL, vol.read()), Rpo::default());
            // Candidate sets equal brute force, at the end and at an earlier instant.
            for at in [None, Some(us(cut))] {
                let img = h.expected_image(VOL, at);
                for lba in 0..8 {
                    let n = (0..logs.len())
                        .filter(|&i| h.get(i as u64).unwrap().block_range().contains(&lba))
                        .count();
                    if n > 6 { continue; }
                    prop_assert_eq!(model_set(&img, lba), brute_force(&h, &logs, lba, at),
                        "block {} at {:?}", lba, at);
                }
            }
            // Drop an acknowledged write: put one of its blocks back to a value that
            // precedes it. It must be reported, and counted in RPO.
            let acked: Vec<usize> =
                (0..logs.len()).filter(|&i| logs[i].end.is_some_and(|e| e.2)).collect();
            if !acked.is_empty() {
                let w = acked[victim % acked.len()];
                let rec = h.get(w as u64).unwrap();
                let lba = rec.lba + (victim as u64 / 7) % u64::from(rec.blocks);
                let older = (0..w).rev().find(|&i| {
                    h.get(i as u64).unwrap().block_range().contains(&lba)
                        && logs[i].end.is_some_and(|e| e.0 < logs[w].issue.0)
                });
                let mut bad = vol.clone();
                match older {
                    Some(i) => { bad.0.insert(lba, h.get(i as u64).unwrap().digest_at(lba).unwrap()); }
                    None => { bad.0.remove(&lba); }
                }
                let lost = h.check_no_acked_write_lost(VOL, bad.read());
                prop_assert!(lost.as_ref().is_err_and(|l| l.iter().any(|l| l.id == w as u64)),
                    "dropped write {} at block {} not reported: {:?}", w, lba, lost);
                prop_assert!(h.rpo(VOL, bad.read()).lost_writes >= 1);
                prop_assert!(h.expected_image(VOL, None).check(bad.read()).is_err());
            }
        }
    }
}
