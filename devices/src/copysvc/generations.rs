//! Site 3's two generations of difference tables (seed 000 §3.3–3.5, §4.3–4.8, §7.1,
//! §7.5–7.6; DESIGN.md §7 "Three-site differential failover"). The near site holds V3,
//! a synchronous copy of the primary P1. Per V3 volume it keeps one bitmap of the blocks
//! written since the last split at site 1 and one since the split before it. It rotates
//! them at each time-specified clear, and at a site-1 disaster it picks, for the whole
//! consistency group, the table whose blocks, copied from V3, bring the far volume V2 up
//! to V3.
//!
//! Sans-IO. Its inputs are replicated writes stamped with the primary's time
//! ([`DiffGenerations::record_write`]), clear requests ([`DiffGenerations::clear_request`])
//! and ticks ([`DiffGenerations::tick`]). Its outputs are [`ClearComplete`] events
//! ([`DiffGenerations::poll_event`]) and the time of the next tick it needs
//! ([`DiffGenerations::poll_timeout`]). At failover, [`DiffGenerations::select`] names
//! the blocks to copy for each volume.
//!
//! Time rule (seed §7.6 item 1): a split at T holds the writes with ts < T, and a table
//! with base T holds every write with ts ≥ T. So a write with ts ≥ T to a volume not yet
//! cleared for T first clears it (S1015), and a write with ts < T does not (S1017). Every
//! write marks both tables (§7.6 item 4). A clear request must arrive before its T
//! (§7.6 item 3). A late one is refused: the rotation would drop the bits of the writes
//! with ts ≥ T already recorded.
//!
//! What the other sites must guarantee (the model in the tests relies on both):
//! - Site 1 reports its split at T complete (S914) only once site 3 has acknowledged
//!   every write stamped before T. Otherwise the remote resync can give V2 a write that
//!   V3 never received, and no table marks it.
//! - Under [`SelectionRule::Literal`], a clear still pending at the disaster rotates the
//!   tables when its T passes at site 3. Window a then behaves like window b, so the
//!   choice must be made before T passes. [`SelectionRule::Safe`] does not care.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use thiserror::Error;

use crate::bitmap::DiffBitmap;

/// One generation: the blocks written since `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffTable {
    /// Every replicated write with a timestamp ≥ `base` has its blocks set (seed §7.5
    /// inv. 5). The only extra bits come from writes with ts < `base` that arrived after
    /// the table was cleared (inv. 6).
    pub base: Duration,
    /// One bit per block of the volume.
    pub bits: DiffBitmap,
}

/// Which of a volume's two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Since the split before the last one.
    Older,
    /// Since the last split.
    Newer,
}

/// One V3 volume's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeTables {
    /// Its consistency group.
    group: String,
    /// Base: the split before the last one. `older.base ≤ newer.base`.
    older: DiffTable,
    /// Base: the last split.
    newer: DiffTable,
    /// Already rotated for its group's pending clear. Always false when no clear is
    /// pending.
    cleared: bool,
}

impl VolumeTables {
    /// Its consistency group.
    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn table(&self, generation: Generation) -> &DiffTable {
        match generation {
            Generation::Older => &self.older,
            Generation::Newer => &self.newer,
        }
    }

    /// Already cleared for its group's pending clear.
    pub fn cleared(&self) -> bool {
        self.cleared
    }

    /// Clears the table with the older base and makes it the newer one, with base `at`
    /// (S1015/S1019). The other table is not touched.
    fn rotate(&mut self, at: Duration) {
        std::mem::swap(&mut self.older, &mut self.newer);
        self.newer = DiffTable {
            base: at,
            bits: DiffBitmap::new(self.newer.bits.blocks()),
        };
        self.cleared = true;
    }
}

/// A consistency group's clear is done: every volume of the group was cleared, and the
/// group has no pending clear any more (S1020–S1022, seed §7.5 inv. 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearComplete {
    pub group: String,
    /// The clear start time: the new base of every volume's newer table.
    pub at: Duration,
}

/// How [`DiffGenerations::select`] chooses a volume's table at failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionRule {
    /// DESIGN.md §7: the newest table whose base is at or before V2's image time.
    Safe,
    /// The patent (seed §4.6 step 7): the older table if the S1v→V2 pair was in Resync,
    /// otherwise the newer one. It misses blocks between the rotation at site 3 and the
    /// start of the remote resync (seed §7.4 windows b and c, §7.5 inv. 12).
    Literal,
}

/// What site 2 reports about V2 at failover (seed §4.6 steps 1–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteReport {
    /// The S1v→V2 pair was in Resync.
    pub resync: bool,
    /// V2's last complete image is P1 as of this time. It is set when the remote pair is
    /// split after reaching Paired (S917), and it is the creation time after the initial
    /// copy. During a resync V2 is this image with some later blocks already copied in.
    pub image_time: Duration,
}

/// The table chosen for one volume at failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub generation: Generation,
    pub base: Duration,
    /// The blocks to copy from V3 to V2: exactly the table's bits (seed §7.5 inv. 10).
    pub blocks: DiffBitmap,
}

/// Refusals; nothing changed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GenerationsError {
    #[error("LU {lun} already has difference tables")]
    LuExists { lun: u16 },
    #[error("LU {lun} has no difference tables")]
    UnknownLu { lun: u16 },
    #[error("group `{group}` has no volume with difference tables")]
    UnknownGroup { group: String },
    #[error("group `{group}` has a clear pending at {at:?}")]
    ClearPending { group: String, at: Duration },
    #[error("the clear time {at:?} of group `{group}` has already passed (now {now:?})")]
    ClearTooLate {
        group: String,
        at: Duration,
        now: Duration,
    },
    #[error("the clear time {at:?} of group `{group}` is not after its last split {last:?}")]
    NotAfterLastSplit {
        group: String,
        at: Duration,
        last: Duration,
    },
    #[error(
        "LU {lun}: no table starts at or before V2's image time {image_time:?} (older base {older_base:?})"
    )]
    NoCoveringTable {
        lun: u16,
        image_time: Duration,
        older_base: Duration,
    },
}

/// Site 3's difference tables for all its V3 volumes, and its consistency-group table
/// (table 200 of seed 000).
///
/// Call order:
/// 1. [`add_volume`](Self::add_volume) when the sync pair P1→V3 is created.
/// 2. [`record_write`](Self::record_write) for every replicated write, before it is
///    acknowledged to the primary.
/// 3. [`clear_request`](Self::clear_request) when the host orders the clear that goes
///    with the time-specified split at site 1. Then call [`tick`](Self::tick) at
///    [`poll_timeout`](Self::poll_timeout). After each `record_write` and `tick`, send
///    every [`poll_event`](Self::poll_event) to the host.
/// 4. At a site-1 disaster, [`select`](Self::select) the blocks of the whole group to
///    copy from V3 to V2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffGenerations {
    /// V3 volumes by LU number.
    volumes: BTreeMap<u16, VolumeTables>,
    /// Table 200: every group with a volume, with the start time of its pending clear.
    groups: BTreeMap<String, Option<Duration>>,
    /// Completions not yet polled.
    events: VecDeque<ClearComplete>,
}

impl DiffGenerations {
    pub fn new() -> DiffGenerations {
        DiffGenerations::default()
    }

    /// Starts difference tables for LU `lun` of `blocks` blocks in `group`. Both tables
    /// have base `now` and are empty (seed §7.6 item 12). Refused while the group has a
    /// clear pending.
    pub fn add_volume(
        &mut self,
        lun: u16,
        blocks: u64,
        group: &str,
        now: Duration,
    ) -> Result<(), GenerationsError> {
        if self.volumes.contains_key(&lun) {
            return Err(GenerationsError::LuExists { lun });
        }
        self.refuse_if_pending(group)?;
        let empty = DiffTable {
            base: now,
            bits: DiffBitmap::new(blocks),
        };
        self.volumes.insert(
            lun,
            VolumeTables {
                group: group.to_string(),
                older: empty.clone(),
                newer: empty,
                cleared: false,
            },
        );
        self.groups.entry(group.to_string()).or_insert(None);
        Ok(())
    }

    /// Drops LU `lun`'s tables. Refused while its group has a clear pending.
    pub fn remove_volume(&mut self, lun: u16) -> Result<(), GenerationsError> {
        let group = self
            .volumes
            .get(&lun)
            .ok_or(GenerationsError::UnknownLu { lun })?
            .group
            .clone();
        self.refuse_if_pending(&group)?;
        self.volumes.remove(&lun);
        if self.members(&group).next().is_none() {
            self.groups.remove(&group);
        }
        Ok(())
    }

    /// Records a replicated write of `blocks` blocks at `lba` of LU `lun`, stamped `ts`
    /// by the primary. If the volume's group has a clear pending at T ≤ `ts` and the
    /// volume is not cleared yet, it is cleared first. The write then marks every block
    /// it covers in both tables (clipped to the volume).
    pub fn record_write(
        &mut self,
        lun: u16,
        lba: u64,
        blocks: u64,
        ts: Duration,
    ) -> Result<(), GenerationsError> {
        let v = self
            .volumes
            .get_mut(&lun)
            .ok_or(GenerationsError::UnknownLu { lun })?;
        let mut rotated = None;
        if !v.cleared
            && let Some(Some(at)) = self.groups.get(&v.group)
            && ts >= *at
        {
            v.rotate(*at);
            rotated = Some(v.group.clone());
        }
        v.older.bits.set_range(lba, blocks);
        v.newer.bits.set_range(lba, blocks);
        if let Some(group) = rotated {
            self.finish(&group);
        }
        Ok(())
    }

    /// The host's clear of `group`'s tables at time `at` (S912/S1011), which goes with
    /// the split at `at` at site 1. Refused if the group is unknown or already has a
    /// clear pending, if `at` is not after site 3's clock `now`, or if `at` is not after
    /// the group's last split.
    pub fn clear_request(
        &mut self,
        group: &str,
        at: Duration,
        now: Duration,
    ) -> Result<(), GenerationsError> {
        self.refuse_if_unknown(group)?;
        self.refuse_if_pending(group)?;
        if at <= now {
            return Err(GenerationsError::ClearTooLate {
                group: group.to_string(),
                at,
                now,
            });
        }
        // After a write stamped ahead of site 3's clock, a group can be fully rotated
        // before `now` reaches its T.
        if let Some(last) = self.members(group).map(|(_, v)| v.newer.base).max()
            && at <= last
        {
            return Err(GenerationsError::NotAfterLastSplit {
                group: group.to_string(),
                at,
                last,
            });
        }
        self.groups.insert(group.to_string(), Some(at));
        Ok(())
    }

    /// Site 3's clock reads `now`. Every volume of a group whose clear time has come
    /// and that is not cleared yet is cleared now (S1018/S1019).
    pub fn tick(&mut self, now: Duration) {
        let due: Vec<(String, Duration)> = self
            .groups
            .iter()
            .filter_map(|(g, at)| at.filter(|at| *at <= now).map(|at| (g.clone(), at)))
            .collect();
        for (group, at) in due {
            for v in self.volumes.values_mut() {
                if v.group == group && !v.cleared {
                    v.rotate(at);
                }
            }
            self.finish(&group);
        }
    }

    /// The next completion to send to the host.
    pub fn poll_event(&mut self) -> Option<ClearComplete> {
        self.events.pop_front()
    }

    /// When [`tick`](Self::tick) is next needed: the earliest pending clear time.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.groups.values().flatten().min().copied()
    }

    /// At failover, the table to copy for each volume of `group`, by `rule`, given site
    /// 2's `report`. The whole group is chosen at once (seed §7.6 item 8).
    pub fn select(
        &self,
        group: &str,
        rule: SelectionRule,
        report: &RemoteReport,
    ) -> Result<BTreeMap<u16, Selection>, GenerationsError> {
        self.refuse_if_unknown(group)?;
        self.members(group)
            .map(|(lun, v)| {
                let generation = match rule {
                    SelectionRule::Literal if report.resync => Generation::Older,
                    SelectionRule::Literal => Generation::Newer,
                    SelectionRule::Safe if v.newer.base <= report.image_time => Generation::Newer,
                    SelectionRule::Safe if v.older.base <= report.image_time => Generation::Older,
                    SelectionRule::Safe => {
                        return Err(GenerationsError::NoCoveringTable {
                            lun,
                            image_time: report.image_time,
                            older_base: v.older.base,
                        });
                    }
                };
                let t = v.table(generation);
                Ok((
                    lun,
                    Selection {
                        generation,
                        base: t.base,
                        blocks: t.bits.clone(),
                    },
                ))
            })
            .collect()
    }

    /// LU `lun`'s tables.
    pub fn volume(&self, lun: u16) -> Option<&VolumeTables> {
        self.volumes.get(&lun)
    }

    /// Every volume, by LU number.
    pub fn volumes(&self) -> impl Iterator<Item = (u16, &VolumeTables)> {
        self.volumes.iter().map(|(l, v)| (*l, v))
    }

    /// Table 200: every group, with the start time of its pending clear.
    pub fn groups(&self) -> impl Iterator<Item = (&str, Option<Duration>)> {
        self.groups.iter().map(|(g, at)| (g.as_str(), *at))
    }

    /// The start time of `group`'s pending clear.
    pub fn pending_clear(&self, group: &str) -> Option<Duration> {
        self.groups.get(group).copied().flatten()
    }

    fn members<'a>(&'a self, group: &'a str) -> impl Iterator<Item = (u16, &'a VolumeTables)> {
        self.volumes().filter(move |(_, v)| v.group == group)
    }

    /// Refuses if `group` has a clear pending.
    fn refuse_if_pending(&self, group: &str) -> Result<(), GenerationsError> {
        match self.pending_clear(group) {
            Some(at) => Err(GenerationsError::ClearPending {
                group: group.to_string(),
                at,
            }),
            None => Ok(()),
        }
    }

    fn refuse_if_unknown(&self, group: &str) -> Result<(), GenerationsError> {
        if self.groups.contains_key(group) {
            Ok(())
        } else {
            Err(GenerationsError::UnknownGroup {
                group: group.to_string(),
            })
        }
    }

    /// If every volume of `group` is cleared for its pending clear: removes the pending
    /// time, then queues the completion.
    fn finish(&mut self, group: &str) {
        let Some(Some(at)) = self.groups.get(group).copied() else {
            return;
        };
        if self.members(group).any(|(_, v)| !v.cleared) {
            return;
        }
        for v in self.volumes.values_mut() {
            if v.group == group {
                v.cleared = false;
            }
        }
        self.groups.insert(group.to_string(), None);
        self.events.push_back(ClearComplete {
            group: group.to_string(),
            at,
        });
    }
}

#[cfg(test)]
#[path = "generations_tests.rs"]
mod tests;
