//! Protected recovery copy (seed 001; DESIGN.md §7, "Protected recovery copy"): the
//! catch-up copy that brings a suspended remote mirror back without ever leaving a
//! consistency unit of the remote array as a mixture of old and new tracks.
//!
//! Start here: [`RecoveryCopy`] (the master array's session, seed 001 §4.3 and §4.7) and
//! [`RecoveryTarget`] (the remote array's side, §4.4–§4.6); their rustdoc gives the call
//! order. This file owns what both sides share: the protocol messages
//! [`RecoveryMessage`] (§4.9, §7.2), the track seam [`Tracks`], the update kinds
//! [`Update`], the remote's save capacities and the user conditions with the
//! concurrency formula (§3.5, step 404, §6), and the time-series queue
//! [`TimeSeriesQueue`] with the safe format-write rule (§3.2, §4.7, §7.6 item 8).
//!
//! - `master.rs`: [`RecoveryCopy`], steps 401–413.
//! - `remote.rs`: [`RecoveryTarget`], steps 501–520 and 751–757, variants A and B.
//! - `tests.rs`: one unit test per protocol step and per fault of §7.4, and the
//!   property tests of the §7.5 invariants.
//!
//! Sans-IO: both sides take messages, timer expiries and `now` (fabric time since start)
//! as inputs, queue messages for [`poll_message`](RecoveryCopy::poll_message), and read
//! or write whole tracks synchronously through [`Tracks`]. The node carries the messages
//! (serde, e.g. as JSON in a vendor SCSI command), arms the timers of `poll_timeout` and
//! applies host writes to its own volumes.
//!
//! # Decisions on seed 001 §7.6 (the patent is silent or odd there)
//!
//! 1. *Lost completion.* [`RecoveryMessage::Complete`] is acknowledged
//!    ([`RecoveryMessage::CompleteAck`]), and the remote reports every rollback
//!    ([`RecoveryMessage::RolledBack`], naming the rolled-back R-DEVs). The master
//!    re-marks every track it sent to those R-DEVs (and the track of a write still in
//!    flight) in its difference bitmaps and retries with a new session, up to
//!    [`RecoveryConfig::max_attempts`]. The master re-sends its one outstanding request
//!    (configuration request, start, write, completion) every
//!    [`RecoveryConfig::retry_interval`]; the remote answers duplicates idempotently.
//! 2. *Late completion.* The watchdog deadline is strict: a completion arriving at or
//!    after it is late. The remote rolls back first, exactly as on a timeout, then
//!    answers [`RecoveryMessage::CompleteRefused`]; nothing rolled back is re-applied.
//! 3. *Timer.* One watchdog T for the whole session, started at the start instruction
//!    (step 502), never reset per write, as the patent says. The caller chooses T from
//!    the data to copy and the link's bandwidth.
//! 4. *Host writes during recovery* are acknowledged by the master at once (the pair is
//!    a catching-up mirror, not yet a synchronous one, until the session completes).
//!    Before its pair has reached, a write marks the difference bitmap (and joins the
//!    time-series queue if its unit is copied in time order). After its pair has
//!    reached, it is sent in order of occurrence (mirror order). The master keeps one
//!    write in flight (steps 408–409), so the remote applies writes in the order sent.
//!    Between the completion report and its answer the node holds host writes
//!    ([`HostWrite::Hold`]).
//! 5. *Updates of reached pairs* stay protected by save/hold until every pair of their
//!    consistency unit has reached; the remote then releases the unit's save area
//!    (variant A drops the saved old data, variant B applies the held data) and applies
//!    later writes directly: they arrive in order, so the unit stays a prefix of the
//!    master's history. Releasing at the unit's reach instead of at the completion is a
//!    deviation; it changes no image after completion or timeout and bounds the save
//!    area by the n active pairs, which is the patent's own reason for n.
//! 6. *Cross-device consistency.* A consistency unit is a set of R-DEVs (one device, or
//!    a group). The remote keeps a unit at timeout only when every pair of it has
//!    reached, and rolls back the others whole; the master admits units whole.
//! 7. *Multiple overwrites.* Variant A saves the old data once, at the first overwrite;
//!    variant B replaces the held version of the track.
//! 8. *Format-write rule.* The safe rule: a new format write unlinks every earlier node
//!    of its track; a partial write unlinks nothing.
//! 9. *Coalescing vs prefix consistency.* Coalescing is an option of each
//!    [`TimeSeriesQueue`]. With it, the images of a unit in flight are no longer
//!    prefixes, so it is switched off once the unit has reached (its writes are then
//!    mirror writes); before that, save/hold covers the unit.
//! 10. *Queue and bitmap together.* The queue is unbounded in this model. A unit with no
//!     queue, or whose queue does not cover every set bit, is copied in address order
//!     under save/hold protection; so is every unit of a retried session.
//! 11. *Ack vs save.* The remote saves (A) or holds (B) before it answers
//!     [`RecoveryMessage::WriteEnd`]: an acknowledged write is already protected. A
//!     remote crash is out of scope (seed §7.4 item 9): the save state is volatile.
//! 12. *Where rollback reads from.* The slot recorded in the saved-data table (queue 119):
//!     the cache, or a parity-group or spare track.
//! 13. *Borrowed parity.* [`RecoveryTarget::parity_rows_in_use`] names the parity groups
//!     holding saved data (no RAID5 protection there); the node reports the health
//!     state and rebuilds the parity afterwards.
//! 14. *n* = ⌊LDEVs × (usable parity groups + usable spares) / physical disks⌋, at least
//!     1; the cache is not counted (see [`RemoteConfig::concurrency`]). It can be set by
//!     hand ([`RecoveryConfig::concurrency`]).
//! 15. *Handshake.* Either side may hold user conditions. If only one does, they are the
//!     session's; if both do and they differ, the session does not start (master:
//!     [`Outcome::ConditionsDisagree`]; remote: [`StartRefusal::ConditionsDisagree`]).
//! 16. *Async mirroring.* The rollback target is whatever the R-DEV held at the start
//!     instruction; that it was consistent is the caller's premise.
//! 17. *More remotes.* One [`RecoveryCopy`] and one [`RecoveryTarget`] session per remote.
//! 18. *Remote reads during recovery* are the node's: variant A's drive shows tracks
//!     being overwritten, variant B's keeps the old image until the unit reaches.
//!
//! *Save-area exhaustion.* The patent puts the remote's consistency before everything
//! (§2.2: it even gives up RAID5 for it), so a remote that cannot protect a track does
//! not overwrite it unprotected: it refuses that write (no `WriteEnd`), rolls back every
//! unreached unit at once and reports [`RollbackCause::SaveAreaExhausted`]. The master
//! ends with [`Outcome::RolledBack`] of that cause and does not retry (the same copy
//! would exhaust again): the operator enlarges the save area or lowers n.

mod master;
mod remote;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use master::{
    HostWrite, Outcome, PairPhase, Phase, Plan, RecoveryConfig, RecoveryCopy, RecoveryError,
    RecoveryEvent, SuspendedPair,
};
pub use remote::{Protection, RecoveryTarget, TargetOutcome};

/// Whole tracks of the array's own logical devices, read and written synchronously.
///
/// A backend failure is the node's to handle (it ends the session); the core sees a
/// track as its bytes. A track never written reads as empty.
pub trait Tracks {
    fn read_track(&self, dev: u16, track: u64) -> Bytes;
    fn write_track(&mut self, dev: u16, track: u64, data: Bytes);
}

/// Volumes in memory, keyed by (device, track).
impl Tracks for BTreeMap<(u16, u64), Bytes> {
    fn read_track(&self, dev: u16, track: u64) -> Bytes {
        self.get(&(dev, track)).cloned().unwrap_or_default()
    }
    fn write_track(&mut self, dev: u16, track: u64, data: Bytes) {
        self.insert((dev, track), data);
    }
}

/// One update of a track (seed 001 §3.2 field 1102a).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Update {
    /// A format write: `data` becomes the whole track. Every copy out of the difference
    /// bitmap is one (the track's current content).
    Format(#[serde(with = "bytes_as_seq")] Bytes),
    /// A partial write: `data` replaces the bytes from `offset`; the track is extended
    /// with zeros if it is shorter.
    Partial {
        offset: u32,
        #[serde(with = "bytes_as_seq")]
        data: Bytes,
    },
}

impl Update {
    /// The track after this update is applied to `old`.
    pub fn apply(&self, old: &Bytes) -> Bytes {
        match self {
            Update::Format(data) => data.clone(),
            Update::Partial { offset, data } => {
                let at = *offset as usize;
                let mut v = old.to_vec();
                if v.len() < at + data.len() {
                    v.resize(at + data.len(), 0);
                }
                v[at..at + data.len()].copy_from_slice(data);
                Bytes::from(v)
            }
        }
    }
}

/// `Bytes` as a sequence of bytes (the `bytes` crate is built without serde here).
mod bytes_as_seq {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        Vec::<u8>::deserialize(d).map(Bytes::from)
    }
}

/// The user conditions of step 404 (§3.5). Both sides must agree before the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConditions {
    /// Keep the RAID5 level: parity tracks are not used as save areas.
    pub keep_raid5: bool,
    /// Spare disks may be used as save areas.
    pub use_spares: bool,
    /// Most saved (variant A) or held (variant B) tracks kept in the remote's cache
    /// before spilling to parity/spare tracks (steps 511–512); capped by the cache.
    pub cache_threshold_tracks: u64,
}

impl Default for UserConditions {
    /// The patent's preference: consistency before RAID5, so parity and spares may be
    /// borrowed; 1024 tracks in cache.
    fn default() -> Self {
        UserConditions {
            keep_raid5: false,
            use_spares: true,
            cache_threshold_tracks: 1024,
        }
    }
}

/// Parity-group or spare-disk row of the save-area bitmap (§3.3, bitmap 118).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaveRowKind {
    /// The parity tracks of one RAID5 parity group (220).
    Parity,
    /// One spare disk (230).
    Spare,
}

/// One row of the save-area bitmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveRow {
    /// Parity group or spare disk.
    pub kind: SaveRowKind,
    /// Tracks it can hold (the bitmap row's columns).
    pub tracks: u64,
    /// The per-row usable flag (801), set by the user.
    pub usable: bool,
}

impl SaveRow {
    /// Whether saved data may go here under `c`.
    pub fn allowed(&self, c: &UserConditions) -> bool {
        self.usable
            && match self.kind {
                SaveRowKind::Parity => !c.keep_raid5,
                SaveRowKind::Spare => c.use_spares,
            }
    }
}

/// The remote's configuration the master asks for at step 403.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Logical devices the remote emulates.
    pub logical_devices: u32,
    /// Physical (small) disks they are emulated on.
    pub disks: u32,
    /// Tracks of cache 114 available to saved or held data.
    pub cache_tracks: u64,
    /// The parity groups and spare disks, in the order they are tried: every parity row
    /// before any spare row.
    pub save_rows: Vec<SaveRow>,
}

impl RemoteConfig {
    /// Tracks that may hold saved data under `c` (step 404's save-area capacity).
    pub fn save_capacity_tracks(&self, c: &UserConditions) -> u64 {
        let rows: u64 = self
            .save_rows
            .iter()
            .filter(|r| r.allowed(c))
            .map(|r| r.tracks)
            .sum();
        self.cache_threshold_tracks(c) + rows
    }

    /// The cache tracks saved data may occupy under `c`.
    pub fn cache_threshold_tracks(&self, c: &UserConditions) -> u64 {
        c.cache_threshold_tracks.min(self.cache_tracks)
    }

    /// n, the most pairs recovered at once (step 404, §6): ⌊LDEVs × S / disks⌋, at least
    /// 1, where S counts the parity groups and spare disks usable under `c`.
    ///
    /// The seed's only example (64 LDEVs on 24 disks, 4 parity groups, 2 spares →
    /// ⌊64/24 × 6⌋ = 16) reads as: one physical disk backs LDEVs/disks logical devices,
    /// so a save disk (a parity group's parity, or a spare) can hold the old data of as
    /// many devices as one disk backs, and S save disks that of LDEVs × S / disks
    /// devices at once. Multiplying first keeps it exact in integers. The cache is not
    /// counted, as in the example; with no usable parity or spare the cache alone
    /// serves, one pair at a time ([0046] allows that).
    pub fn concurrency(&self, c: &UserConditions) -> usize {
        let save_disks = self.save_rows.iter().filter(|r| r.allowed(c)).count() as u64;
        let n = (u64::from(self.logical_devices) * save_disks)
            .checked_div(u64::from(self.disks))
            .unwrap_or(0);
        usize::try_from(n).unwrap_or(usize::MAX).max(1)
    }
}

/// Why the remote rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackCause {
    /// No completion report within T (step 515): the master or the path failed.
    Timeout,
    /// No free save area for a track's old (A) or new (B) data.
    SaveAreaExhausted,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackReport {
    /// Why the session was rolled back.
    pub cause: RollbackCause,
    /// R-DEVs returned to their image at the start instruction, ascending.
    pub rolled_back: Vec<u16>,
}

/// Why the remote refused to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartRefusal {
    /// Another session is in progress.
    Busy { session: u64 },
    /// The remote holds other user conditions.
    ConditionsDisagree { remote: UserConditions },
}

/// One pair of the session as the remote sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairDef {
    /// The R-DEV.
    pub r_dev: u16,
    /// Its consistency unit.
    pub unit: u16,
}

/// The recovery-copy protocol between the master and the remote array (seed 001 §4.9).
/// Every message names its `session`; a message of another session is ignored, except
/// as said for the remote's last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RecoveryMessage {
    /// Master → remote, step 403: send your configuration.
    ConfigRequest { session: u64 },
    /// Remote → master, answer to 403, with the user conditions the remote holds.
    Config {
        session: u64,
        config: RemoteConfig,
        conditions: Option<UserConditions>,
    },
    /// Master → remote, steps 405–406: start, with T, the agreed conditions and the pairs.
    Start {
        session: u64,
        allowed: Duration,
        conditions: UserConditions,
        pairs: Vec<PairDef>,
    },
    /// Remote → master, step 504.
    Ready { session: u64 },
    /// Remote → master instead of [`RecoveryMessage::Ready`].
    StartRefused { session: u64, reason: StartRefusal },
    /// Master → remote, step 408: write one track. `seq` counts the session's writes
    /// from 1.
    Write {
        session: u64,
        seq: u64,
        r_dev: u16,
        track: u64,
        update: Update,
    },
    /// Remote → master, step 508: write `seq` is held and protected.
    WriteEnd { session: u64, seq: u64 },
    /// Master → remote, step 411: every difference of this pair is acknowledged.
    Reached { session: u64, r_dev: u16 },
    /// Master → remote, step 413.
    Complete { session: u64 },
    /// Remote → master: the completion is processed (step 520).
    CompleteAck { session: u64 },
    /// Remote → master: the session ended in a rollback (timeout or exhaustion); also
    /// the answer to a write of a rolled-back session.
    RolledBack {
        session: u64,
        report: RollbackReport,
    },
    /// Remote → master: a completion that came after the rollback, refused.
    CompleteRefused {
        session: u64,
        report: RollbackReport,
    },
}

impl RecoveryMessage {
    pub fn session(&self) -> u64 {
        match self {
            RecoveryMessage::ConfigRequest { session }
            | RecoveryMessage::Config { session, .. }
            | RecoveryMessage::Start { session, .. }
            | RecoveryMessage::Ready { session }
            | RecoveryMessage::StartRefused { session, .. }
            | RecoveryMessage::Write { session, .. }
            | RecoveryMessage::WriteEnd { session, .. }
            | RecoveryMessage::Reached { session, .. }
            | RecoveryMessage::Complete { session }
            | RecoveryMessage::CompleteAck { session }
            | RecoveryMessage::RolledBack { session, .. }
            | RecoveryMessage::CompleteRefused { session, .. } => *session,
        }
    }
}

/// One node of a time-series queue (§3.2; the valid flag is modelled by unlinking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNode {
    /// The M-DEV.
    pub dev: u16,
    /// The logical track (1103).
    pub track: u64,
    /// The update's kind and data (1102a, 1105).
    pub update: Update,
}

/// The master's time-series queue of one consistency unit (108, claim 3): its
/// updates, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeSeriesQueue {
    /// Oldest first; an unlinked node is gone (its valid flag 1102b off).
    nodes: VecDeque<QueueNode>,
    /// Whether a format write unlinks the track's earlier nodes (§7.6 items 8–9).
    coalesce: bool,
}

impl TimeSeriesQueue {
    pub fn new(coalesce: bool) -> Self {
        TimeSeriesQueue {
            nodes: VecDeque::new(),
            coalesce,
        }
    }

    /// Records an update at the tail (steps 1204–1207, with the safe rule of §7.6 item
    /// 8 when coalescing): a format write unlinks every earlier node of its track, since
    /// it overwrites all of them; a partial write unlinks nothing. The caller marks the
    /// difference bitmap (1208) in every case.
    pub fn record(&mut self, dev: u16, track: u64, update: Update) {
        if self.coalesce && matches!(update, Update::Format(_)) {
            self.nodes.retain(|n| (n.dev, n.track) != (dev, track));
        }
        self.nodes.push_back(QueueNode { dev, track, update });
    }

    pub fn nodes(&self) -> impl Iterator<Item = &QueueNode> {
        self.nodes.iter()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn holds(&self, dev: u16, track: u64) -> bool {
        self.nodes.iter().any(|n| (n.dev, n.track) == (dev, track))
    }
}
