//! One copy pair (DESIGN.md §7, seed 004 §3.3 and §7.2): its state machine, the
//! difference bitmaps and the split-time bookkeeping. Sans-IO: the engine feeds it host
//! writes and copy completions; the pair only decides what is stale and what may change.
//!
//! State names follow array copy services: Copy (formation copy; the patent's
//! Duplex-pending), Pair (Duplex), SplitPending (primary side already Split, the
//! secondary still receiving the split-time differences), Split, Resync (copying the
//! changes made on either side since the split), Suspended (the link or the journal
//! failed; changes are tracked in the bitmap). Deleting a pair returns both volumes to
//! Simplex.

use std::collections::BTreeMap;

use bytes::Bytes;
use fcsim_fabric::Wwn;
use serde::{Deserialize, Serialize};

use crate::bitmap::DiffBitmap;

/// How writes reach the secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairMode {
    /// In-array pair (seed 004): the host is acknowledged from the primary and the update
    /// copy runs in the background from the difference bitmap.
    Local,
    /// Remote, synchronous: the host is acknowledged after the secondary holds the write.
    Sync,
    /// Remote, asynchronous: writes go to the consistency group's journal, applied in
    /// sequence order at the secondary.
    Async,
    /// Remote through relays (seed 002): each write becomes a RELAY RECORD of the
    /// group's source stream, sent to a relay (or straight to the standby); the host is
    /// acknowledged once the local write is done and a relay holds the record.
    Relay,
}

impl PairMode {
    pub fn name(self) -> &'static str {
        match self {
            PairMode::Local => "local",
            PairMode::Sync => "sync",
            PairMode::Async => "async",
            PairMode::Relay => "relay",
        }
    }
}

/// Pair state, as the primary side sees it (the secondary's status is
/// [`PairState::secondary_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairState {
    /// Formation copy (Duplex-pending).
    Copy,
    /// Full mirror (Duplex); update copies may still be pending for a local pair.
    Pair,
    /// Split: the primary is Split, the secondary still receives the split-time
    /// differences.
    SplitPending,
    Split,
    /// Copying the changes since the split back to the secondary.
    Resync,
    /// The secondary stopped receiving writes (link loss, journal full, write error).
    Suspended,
}

impl PairState {
    pub fn name(self) -> &'static str {
        match self {
            PairState::Copy => "copy",
            PairState::Pair => "pair",
            PairState::SplitPending => "split_pending",
            PairState::Split => "split",
            PairState::Resync => "resync",
            PairState::Suspended => "suspended",
        }
    }

    /// Parses [`PairState::name`].
    pub fn from_name(s: &str) -> Option<PairState> {
        [
            PairState::Copy,
            PairState::Pair,
            PairState::SplitPending,
            PairState::Split,
            PairState::Resync,
            PairState::Suspended,
        ]
        .into_iter()
        .find(|p| p.name() == s)
    }

    /// The primary side's status (seed 004 field 516): Split at once after a split.
    pub fn primary_status(self) -> PairState {
        match self {
            PairState::SplitPending => PairState::Split,
            s => s,
        }
    }

    /// The secondary side's status (seed 004 field 517).
    pub fn secondary_status(self) -> PairState {
        self
    }

    /// Whether the split-time image is being (or has been) frozen on the secondary.
    pub fn is_split(self) -> bool {
        matches!(self, PairState::SplitPending | PairState::Split)
    }
}

/// Where the secondary volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Secondary {
    /// An LU of the same array.
    Local(u16),
    /// Another array's LU, reached through the fabric by its NAA.
    Remote(Wwn),
}

/// How a backup (EXTENDED COPY from the secondary to tape) meets split-time differences
/// (seed 004 §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum BackupStrategy {
    /// Embodiment 1: copy the range's differences to the secondary first, ahead of other
    /// work, then read the secondary.
    #[default]
    R,
    /// Embodiment 2: hold the backup until every split-time difference is on the
    /// secondary.
    W,
    /// Embodiment 3: merge in the buffer, from the primary for blocks still different and
    /// from the secondary otherwise; the secondary is not written.
    M,
    /// Fig. 7: the controller refuses a backup while the secondary is SplitPending; the
    /// host polls the pair status.
    H,
}

impl BackupStrategy {
    pub fn from_name(s: &str) -> Option<BackupStrategy> {
        match s {
            "R" | "r" => Some(BackupStrategy::R),
            "W" | "w" => Some(BackupStrategy::W),
            "M" | "m" => Some(BackupStrategy::M),
            "H" | "h" => Some(BackupStrategy::H),
            _ => None,
        }
    }
}

/// Whether strategy R checks the whole backup range before the first tape write or each
/// transfer unit before it is written (seed 004 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Granularity {
    #[default]
    WholeRange,
    PerTransferUnit,
}

/// Per-pair settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairOptions {
    /// Background (formation, update, resync) copy rate in blocks per millisecond;
    /// 0 stalls the copier.
    pub copy_rate: u64,
    pub strategy: BackupStrategy,
    pub granularity: Granularity,
    /// Range-priority copy for a waiting backup (strategy R).
    pub priority: bool,
    /// Embodiment 4: an EXTENDED COPY from the secondary of an unsplit pair splits it,
    /// answers at once, and runs the backup behind RECEIVE COPY RESULTS.
    pub backup_implies_split: bool,
    /// Sync pairs: fail the host write instead of suspending when the secondary cannot
    /// be written (fence level "data"); default "never" (suspend and acknowledge).
    pub fence: bool,
    /// Relay pairs: the relays, their selection and the standby's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayOptions>,
}

/// How a relay pair's records travel (seed 002), fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayOptions {
    /// Target port WWPNs of the relays, in selection order; empty: straight to the
    /// standby (the standby is the one "relay").
    pub relays: Vec<u64>,
    pub selection: RelaySelection,
    /// The source's identifier (the consistency group's stream); 0: derived from the
    /// group's name.
    pub source: u32,
    /// How records land on the standby.
    pub consistency: RelayConsistency,
    /// The longest a takeover waits for the reachable relays to drain, ms.
    pub drain_timeout_ms: u64,
    /// The standby's target port WWPN the records are addressed to (DESTINATION); 0:
    /// resolved by the array at creation from its path to the secondary.
    pub destination: u64,
    /// The secondary's LUN on the standby array; resolved with `destination`.
    pub standby_lun: u16,
    /// Forward error correction on the direct hop (emb 5/6): each record goes to the
    /// standby as the units of a redundant group. Direct mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fec: Option<RelayFec>,
    /// FEC over two networks (Fig. 17): the redundant units go to the standby's second
    /// target port `destination2` (resolved by the array at creation); 1 or 2.
    #[serde(default = "one_network")]
    pub networks: u8,
    #[serde(default)]
    pub destination2: u64,
}

fn one_network() -> u8 {
    1
}

/// [`crate::relay::Redundancy`] as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scheme")]
pub enum RelayFec {
    /// `data` pieces plus `parity` Reed–Solomon pieces.
    ErasureCode {
        data: u16,
        parity: u16,
    },
    WholeReplica,
    PieceReplica {
        pieces: u16,
    },
}

impl RelayFec {
    pub fn core(self) -> crate::relay::Redundancy {
        match self {
            RelayFec::ErasureCode { data, parity } => {
                crate::relay::Redundancy::ErasureCode { data, parity }
            }
            RelayFec::WholeReplica => crate::relay::Redundancy::WholeReplica,
            RelayFec::PieceReplica { pieces } => crate::relay::Redundancy::PieceReplica { pieces },
        }
    }

    /// Refuses a scheme the coder or the FEC unit's CDB cannot carry.
    pub fn validate(self) -> Result<(), String> {
        let r = self.core();
        r.validate().map_err(|e| e.to_string())?;
        if !crate::relay::wire::fits_cdb(r) {
            return Err(format!(
                "fec: {self:?}: at most 255 data (or replicated) pieces and 255 parity pieces"
            ));
        }
        Ok(())
    }
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            relays: Vec::new(),
            selection: RelaySelection::RoundRobin,
            source: 0,
            consistency: RelayConsistency::Immediate,
            drain_timeout_ms: 100,
            destination: 0,
            standby_lun: 0,
            fec: None,
            networks: 1,
            destination2: 0,
        }
    }
}

/// [`crate::relay::Selection`] as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelaySelection {
    RoundRobin,
    LeastLoaded,
    /// Seeded from the source identifier.
    Random,
    /// Writes cut into up to 4 portions.
    SplitBySpeed,
    Duplicate,
}

impl RelaySelection {
    pub fn from_name(s: &str) -> Option<RelaySelection> {
        Some(match s {
            "round_robin" => RelaySelection::RoundRobin,
            "least_loaded" => RelaySelection::LeastLoaded,
            "random" => RelaySelection::Random,
            "split_by_speed" => RelaySelection::SplitBySpeed,
            "duplicate" => RelaySelection::Duplicate,
            _ => return None,
        })
    }

    /// The core's selection for source `source`.
    pub fn core(self, source: u32) -> crate::relay::Selection {
        use crate::relay::Selection as S;
        match self {
            RelaySelection::RoundRobin => S::RoundRobin,
            RelaySelection::LeastLoaded => S::LeastLoaded,
            RelaySelection::Random => S::Random {
                seed: u64::from(source),
            },
            RelaySelection::SplitBySpeed => S::SplitBySpeed { portions: 4 },
            RelaySelection::Duplicate => S::Duplicate,
        }
    }
}

/// [`crate::relay::Consistency`] as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RelayConsistency {
    #[default]
    Immediate,
    Epochs,
    Snapshots,
}

impl RelayConsistency {
    pub fn from_name(s: &str) -> Option<RelayConsistency> {
        Some(match s {
            "immediate" => RelayConsistency::Immediate,
            "epochs" => RelayConsistency::Epochs,
            "snapshots" => RelayConsistency::Snapshots,
            _ => return None,
        })
    }

    pub fn core(self) -> crate::relay::Consistency {
        match self {
            RelayConsistency::Immediate => crate::relay::Consistency::Immediate,
            RelayConsistency::Epochs => crate::relay::Consistency::Epochs,
            RelayConsistency::Snapshots => crate::relay::Consistency::Snapshots,
        }
    }
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            copy_rate: 1024,
            strategy: BackupStrategy::R,
            granularity: Granularity::WholeRange,
            priority: true,
            backup_implies_split: false,
            fence: false,
            relay: None,
        }
    }
}

/// A change of some of a pair's settings; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionsPatch {
    pub copy_rate: Option<u64>,
    pub strategy: Option<BackupStrategy>,
    pub granularity: Option<Granularity>,
    pub priority: Option<bool>,
    pub backup_implies_split: Option<bool>,
    pub fence: Option<bool>,
}

impl PairOptions {
    /// Applies the fields `patch` sets.
    pub fn apply(&mut self, patch: &OptionsPatch) {
        if let Some(v) = patch.copy_rate {
            self.copy_rate = v;
        }
        if let Some(v) = patch.strategy {
            self.strategy = v;
        }
        if let Some(v) = patch.granularity {
            self.granularity = v;
        }
        if let Some(v) = patch.priority {
            self.priority = v;
        }
        if let Some(v) = patch.backup_implies_split {
            self.backup_implies_split = v;
        }
        if let Some(v) = patch.fence {
            self.fence = v;
        }
    }
}

/// One pair, primary side.
#[derive(Debug, Clone)]
pub struct CopyPair {
    pub name: String,
    pub primary: u16,
    pub secondary: Secondary,
    pub mode: PairMode,
    pub group: String,
    pub state: PairState,
    pub options: PairOptions,
    pub blocks: u64,
    pub block_bytes: u32,
    /// Blocks on which the secondary is stale (seed 004 field 514). After a split it
    /// holds only split-time differences and bits only clear (INV-8).
    pub diff: DiffBitmap,
    /// Primary blocks changed since the split (or since the suspension), for resync.
    pub post: DiffBitmap,
    /// Secondary blocks written by hosts after the split (local pairs), for resync.
    pub s_changed: DiffBitmap,
    /// Blocks whose copy to the secondary is in flight.
    pub inflight: DiffBitmap,
    /// In-flight blocks written again meanwhile: their bit stays set.
    pub redirty: DiffBitmap,
    /// Copy-before-write: the split-time data of still-different blocks that the host
    /// overwrote on the primary (the copier and the merge read it from here).
    pub preserved: BTreeMap<u64, Bytes>,
    /// Async pairs: the group sequence number of the last write before the split.
    pub split_seq: Option<u64>,
    /// Synchronous writes to the secondary in flight (a split waits for them).
    pub sync_inflight: u32,
    /// Priority copy requested by a waiting backup: ranges (lba, blocks).
    pub priority_ranges: Vec<(u64, u64)>,
    /// Blocks copied to the secondary by this pair (formation, update, resync,
    /// copy-before-write, priority).
    pub copied_blocks: u64,
    /// Why the pair was suspended.
    pub suspend_reason: Option<String>,
    /// Fabric time of the split.
    pub split_at: Option<std::time::Duration>,
}

impl CopyPair {
    pub fn new(
        name: String,
        primary: u16,
        secondary: Secondary,
        mode: PairMode,
        group: String,
        options: PairOptions,
        (blocks, block_bytes): (u64, u32),
    ) -> CopyPair {
        let mut diff = DiffBitmap::new(blocks);
        diff.set_range(0, blocks);
        CopyPair {
            name,
            primary,
            secondary,
            mode,
            group,
            state: PairState::Copy,
            options,
            blocks,
            block_bytes,
            diff,
            post: DiffBitmap::new(blocks),
            s_changed: DiffBitmap::new(blocks),
            inflight: DiffBitmap::new(blocks),
            redirty: DiffBitmap::new(blocks),
            preserved: BTreeMap::new(),
            split_seq: None,
            sync_inflight: 0,
            priority_ranges: Vec::new(),
            copied_blocks: 0,
            suspend_reason: None,
            split_at: None,
        }
    }

    /// Whether a host write on the primary must, before it lands, save the block's
    /// split-time data (copy-before-write, seed 004 §7.8 item 1).
    pub fn needs_cbw(&self, block: u64) -> bool {
        self.state == PairState::SplitPending
            && self.diff.get(block)
            && !self.preserved.contains_key(&block)
    }

    /// Records a host write of `n` blocks at `lba` on the primary (after it landed).
    /// Returns how it must reach the secondary.
    pub fn on_primary_write(&mut self, lba: u64, n: u64) -> Propagate {
        match self.state {
            PairState::SplitPending | PairState::Split => {
                // After the split: never reaches the secondary (INV-5, INV-8).
                self.post.set_range(lba, n);
                Propagate::None
            }
            PairState::Suspended => {
                self.mark_stale(lba, n);
                Propagate::None
            }
            PairState::Copy | PairState::Resync => {
                self.mark_stale(lba, n);
                Propagate::None
            }
            PairState::Pair => match self.mode {
                PairMode::Local => {
                    self.mark_stale(lba, n);
                    Propagate::None
                }
                PairMode::Sync => Propagate::Sync,
                PairMode::Async => Propagate::Journal,
                PairMode::Relay => Propagate::Relay,
            },
        }
    }

    /// Marks blocks stale on the secondary; blocks being copied right now stay stale
    /// after that copy completes.
    pub fn mark_stale(&mut self, lba: u64, n: u64) {
        self.diff.set_range(lba, n);
        for b in lba..lba.saturating_add(n).min(self.blocks) {
            if self.inflight.get(b) {
                self.redirty.set_range(b, 1);
            }
        }
    }

    /// The next run of stale blocks to copy (not already in flight), priority ranges
    /// first; at most `max` blocks.
    pub fn next_copy(&self, max: u64) -> Option<(u64, u64)> {
        self.priority_ranges
            .iter()
            .find_map(|&(lba, n)| self.next_copy_in(lba, lba + n, max))
            .or_else(|| self.next_copy_in(0, self.blocks, max))
    }

    /// The first run of stale blocks not in flight within `from..end`; at most `max`.
    pub fn next_copy_in(&self, from: u64, end: u64, max: u64) -> Option<(u64, u64)> {
        let mut at = from;
        while let Some((s, n)) = self.diff.next_run(at, max) {
            if s >= end {
                return None;
            }
            let n = n.min(end - s);
            // Trim to the part not already in flight.
            let mut start = s;
            while start < s + n && self.inflight.get(start) {
                start += 1;
            }
            let mut stop = start;
            while stop < s + n && !self.inflight.get(stop) {
                stop += 1;
            }
            if stop > start {
                return Some((start, stop - start));
            }
            at = s + n;
        }
        None
    }

    /// A copy of `n` blocks at `lba` to the secondary started.
    pub fn copy_started(&mut self, lba: u64, n: u64) {
        self.inflight.set_range(lba, n);
    }

    /// A copy of `n` blocks at `lba` ended: on success the bits clear (unless the blocks
    /// were written again meanwhile) and any preserved data is dropped.
    pub fn copy_done(&mut self, lba: u64, n: u64, ok: bool) {
        self.inflight.clear_range(lba, n);
        if !ok {
            return;
        }
        for b in lba..lba.saturating_add(n).min(self.blocks) {
            if self.redirty.get(b) {
                self.redirty.clear_range(b, 1);
            } else {
                self.diff.clear_range(b, 1);
                self.preserved.remove(&b);
            }
        }
        self.copied_blocks += n;
        self.priority_ranges
            .retain(|&(l, c)| (l..l + c).any(|b| self.diff.get(b)));
    }

    /// Whether the range has split-time (or formation) differences left.
    pub fn range_dirty(&self, lba: u64, n: u64) -> bool {
        self.diff
            .next_run(lba, n)
            .is_some_and(|(s, _)| s < lba.saturating_add(n))
    }

    /// Moves to the state that follows once the copier has nothing left.
    /// Returns the new state if it changed.
    pub fn settle(&mut self, journal_drained_to: Option<u64>) -> Option<PairState> {
        let drained = self.diff.is_clear() && self.inflight.is_clear();
        let next = match self.state {
            PairState::Copy | PairState::Resync if drained => PairState::Pair,
            PairState::SplitPending
                if drained
                    && self.sync_inflight == 0
                    && self
                        .split_seq
                        .is_none_or(|s| journal_drained_to.is_some_and(|d| d >= s)) =>
            {
                PairState::Split
            }
            _ => return None,
        };
        self.state = next;
        Some(next)
    }

    /// Splits the pair (the linearisation point of the split): the primary is Split at
    /// once; the secondary is SplitPending until the differences recorded now drain.
    pub fn split(&mut self, now: std::time::Duration, last_seq: Option<u64>) {
        self.state = PairState::SplitPending;
        self.split_seq = if self.mode == PairMode::Async {
            last_seq
        } else {
            None
        };
        self.post = DiffBitmap::new(self.blocks);
        self.s_changed = DiffBitmap::new(self.blocks);
        self.split_at = Some(now);
    }

    /// Starts copying every change made on either side since the split (or since the
    /// suspension) back to the secondary.
    pub fn resync(&mut self) {
        let mut b = 0;
        while let Some((s, n)) = self.post.next_run(b, u64::MAX) {
            self.mark_stale(s, n);
            b = s + n;
        }
        b = 0;
        while let Some((s, n)) = self.s_changed.next_run(b, u64::MAX) {
            self.mark_stale(s, n);
            b = s + n;
        }
        self.post = DiffBitmap::new(self.blocks);
        self.s_changed = DiffBitmap::new(self.blocks);
        self.preserved.clear();
        self.split_seq = None;
        self.split_at = None;
        self.suspend_reason = None;
        self.state = PairState::Resync;
    }

    /// The secondary stopped receiving writes.
    pub fn suspend(&mut self, why: &str) {
        if self.state != PairState::Suspended {
            self.suspend_reason = Some(why.to_string());
            self.state = PairState::Suspended;
            self.priority_ranges.clear();
        }
    }
}

/// How a primary write reaches the secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagate {
    /// Not now (tracked in a bitmap, or after the split).
    None,
    /// Written to the secondary before the host is acknowledged.
    Sync,
    /// Appended to the group's journal.
    Journal,
    /// A record of the group's relay stream.
    Relay,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(mode: PairMode) -> CopyPair {
        CopyPair::new(
            "p".into(),
            0,
            Secondary::Local(1),
            mode,
            "p".into(),
            PairOptions::default(),
            (64, 512),
        )
    }

    fn drain(p: &mut CopyPair) {
        while let Some((l, n)) = p.next_copy(16) {
            p.copy_started(l, n);
            p.copy_done(l, n, true);
        }
    }

    #[test]
    fn formation_copy_then_pair() {
        let mut p = pair(PairMode::Local);
        assert_eq!(p.diff.count(), 64);
        drain(&mut p);
        assert_eq!(p.settle(None), Some(PairState::Pair));
    }

    #[test]
    fn a_write_during_its_copy_stays_stale() {
        let mut p = pair(PairMode::Local);
        p.copy_started(0, 8);
        p.mark_stale(3, 1);
        p.copy_done(0, 8, true);
        assert!(p.diff.get(3));
        assert!(!p.diff.get(2));
        assert_eq!(p.next_copy(16), Some((3, 1)));
    }

    #[test]
    fn split_time_bits_only_clear() {
        let mut p = pair(PairMode::Local);
        drain(&mut p);
        p.settle(None);
        p.on_primary_write(5, 2);
        p.split(std::time::Duration::ZERO, None);
        assert_eq!(p.state.primary_status(), PairState::Split);
        assert_eq!(p.state.secondary_status(), PairState::SplitPending);
        assert!(p.needs_cbw(5));
        assert!(!p.needs_cbw(7));
        assert_eq!(p.on_primary_write(5, 4), Propagate::None);
        assert_eq!(
            p.diff.count(),
            2,
            "post-split writes never set split-time bits"
        );
        assert!(p.post.get(8));
        drain(&mut p);
        assert_eq!(p.settle(None), Some(PairState::Split));
    }

    #[test]
    fn priority_ranges_are_copied_first() {
        let mut p = pair(PairMode::Local);
        p.priority_ranges.push((40, 4));
        assert_eq!(p.next_copy(16), Some((40, 4)));
    }

    #[test]
    fn resync_copies_both_sides_changes() {
        let mut p = pair(PairMode::Local);
        drain(&mut p);
        p.settle(None);
        p.split(std::time::Duration::ZERO, None);
        p.settle(None);
        p.on_primary_write(1, 1);
        p.s_changed.set_range(9, 1);
        p.resync();
        assert_eq!(p.state, PairState::Resync);
        assert!(p.diff.get(1) && p.diff.get(9));
        assert_eq!(p.diff.count(), 2);
    }

    #[test]
    fn async_split_waits_for_the_journal() {
        let mut p = pair(PairMode::Async);
        drain(&mut p);
        p.settle(None);
        p.split(std::time::Duration::ZERO, Some(10));
        assert_eq!(p.settle(Some(9)), None);
        assert_eq!(p.settle(Some(10)), Some(PairState::Split));
    }
}
