//! The copy-services engine (DESIGN.md §7, seed 004): copy pairs, consistency groups,
//! synchronous and asynchronous remote copy, split with copy-before-write, resync,
//! suspension, and the backup side of seed 004 (strategies R, W, M, H; combined
//! split-and-backup). One engine per array, run when the array advertises the copy
//! functions.
//!
//! Sans-IO: the node hands it host writes ([`CopyEngine::before_write`],
//! [`CopyEngine::after_write`]), the completions of the commands it asked for
//! ([`CopyEngine::completed`]) and timer ticks ([`CopyEngine::tick`]); it answers with
//! [`Action`]s (commands to send through the fabric, held host writes to release).
//!
//! Two ways to reach the LUs:
//! - **direct** (an array): the engine reads and writes the array's own LUs through
//!   [`Volumes`], synchronously. Host writes are applied one at a time by the node, so
//!   the split, linearised at the call to [`CopyEngine::split`], falls wholly before or
//!   wholly after each write.
//! - **deferred** (the intelligent switch, whose virtual LUs live on other arrays): the
//!   node admits each host write with [`CopyEngine::admit_deferred`], the copier asks
//!   for copies with [`Action::Copy`] (the node reads the primary when it sends them),
//!   and a post-split write to a still-different block waits ([`Action::Proceed`])
//!   until that block's split-time data reached the secondary: the literal
//!   copy-before-write. A split waits for the writes admitted before it to land, and
//!   holds later ones meanwhile, so every write is again wholly before or after it.

pub mod generations;
pub mod journal;
pub mod pair;
pub mod recovery;
pub mod relaypair;
pub mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fcsim_fabric::{Wwn, Wwpn};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{info, warn};

use crate::bitmap::DiffBitmap;
use crate::scsi::sense::{Sense, SenseKey, asc};
pub use generations::{DiffGenerations, RemoteReport, SelectionRule};
pub use journal::{Journal, JournalApplier};
pub use pair::{
    BackupStrategy, CopyPair, Granularity, OptionsPatch, PairMode, PairOptions, PairState,
    Propagate, RelayConsistency, RelayFec, RelayOptions, RelaySelection, Secondary,
};
pub use relaypair::{RelayStandbyStatus, RelayTakeoverReport};

/// Synchronous access to the array's own LUs.
pub trait Volumes {
    /// (blocks, block bytes) of LU `lun`.
    fn geometry(&self, lun: u16) -> Option<(u64, u32)>;
    fn read(&self, lun: u16, lba: u64, blocks: u64) -> Option<Bytes>;
    fn write(&mut self, lun: u16, lba: u64, data: &Bytes) -> bool;
}

/// What the node must do for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// WRITE(16) `data` at `lba` of the remote LU `naa`; report with `token`. A sync
    /// pair's propagation carries `stamp`, the fabric time the host write landed on the
    /// primary (TIMESTAMPED WRITE, seed 000 §3.5); copier copies have none.
    Write {
        token: u64,
        naa: Wwn,
        lba: u64,
        data: Bytes,
        stamp: Option<Duration>,
    },
    /// JOURNAL WRITE (D6h/02h) of entry `seq` to the remote LU `naa`.
    JournalWrite {
        token: u64,
        naa: Wwn,
        seq: u64,
        lba: u64,
        data: Bytes,
    },
    /// PAIR NOTIFY (D6h/01h) to the remote LU `naa`.
    Notify {
        token: u64,
        naa: Wwn,
        notice: wire::PairNotice,
    },
    /// The host write held as `host` may now be answered: GOOD, or this sense.
    Release { host: u64, sense: Option<Sense> },
    /// Deferred mode: copy `blocks` at `lba` of LU `lun` to the same blocks of `to`,
    /// reading the LU when the command is sent; report with `token`.
    Copy {
        token: u64,
        lun: u16,
        lba: u64,
        blocks: u64,
        to: Secondary,
    },
    /// Deferred mode: the host write `host` that [`CopyEngine::admit_deferred`] held may
    /// land now.
    Proceed { host: u64 },
    /// RELAY RECORD of `record` (seed 002) to the target port `target` (a relay, or the
    /// standby in direct mode, then through the secondary LU `naa`), bound for the
    /// standby port `destination`; report with [`CopyEngine::relay_completed`].
    RelayRecord {
        token: u64,
        target: u64,
        naa: Option<Wwn>,
        destination: u64,
        record: crate::relay::Record,
    },
    /// One FEC unit (emb 5/6) of the record `header` as a RELAY RECORD of KIND 2 to the
    /// standby's target port `target` (the one of the unit's network), through its
    /// secondary LU `naa`; report with [`CopyEngine::relay_completed`].
    FecUnit {
        token: u64,
        target: u64,
        naa: Option<Wwn>,
        header: crate::relay::Header,
        redundancy: crate::relay::Redundancy,
        unit: crate::relay::Unit,
    },
    /// RELAY CONTROL to the relay at target port `target` (its LU 0).
    RelayControl {
        token: u64,
        target: u64,
        control: crate::relay::wire::RelayControl,
    },
    /// RECEIVE RELAY STATUS from the relay at target port `target`.
    RelayStatus { token: u64, target: u64 },
}

/// Refusals of management requests; nothing changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CopyError {
    #[error("name: a pair or group `{0}` already exists")]
    Exists(String),
    #[error("pair: no pair or group `{0}`")]
    NoSuchPair(String),
    #[error("primary: LU {0} does not exist on this array")]
    NoSuchLu(u16),
    #[error("secondary: {0}")]
    BadSecondary(String),
    #[error("mode: {0}")]
    BadMode(String),
    #[error("group: {0}")]
    BadGroup(String),
    #[error("state: pair `{pair}` is {state}; {what}")]
    WrongState {
        pair: String,
        state: &'static str,
        what: &'static str,
    },
    #[error("at: the split time {at:?} has already passed (now {now:?})")]
    TooLate { at: Duration, now: Duration },
    #[error("{0}")]
    Generations(#[from] generations::GenerationsError),
    #[error("pairs: {0}")]
    Failover(String),
}

/// A new pair.
#[derive(Debug, Clone)]
pub struct PairSpec {
    pub name: String,
    pub primary: u16,
    pub secondary: Secondary,
    pub mode: PairMode,
    /// Consistency group; `None`: a group of its own, named after the pair.
    pub group: Option<String>,
    pub options: PairOptions,
    /// The blocks the formation copy copies; `None`: all of them. A failover pair of
    /// seed 000 starts from site 3's selected difference table.
    pub initial: Option<DiffBitmap>,
}

/// A three-site failover at site 3 (seed 000 §4.6): the sync group, a pair V3 → V2 per
/// volume, the new pairs' mode and settings, the table rule and site 2's report.
#[derive(Debug, Clone)]
pub struct FailoverRequest {
    pub group: String,
    pub pairs: Vec<FailoverPair>,
    pub mode: PairMode,
    pub rule: SelectionRule,
    pub report: RemoteReport,
    pub options: PairOptions,
}

/// One pair of a three-site failover (seed 000 §4.6): V3 (this array's LU, a sync
/// secondary) to V2 (the far array's LU, taken over there).
#[derive(Debug, Clone)]
pub struct FailoverPair {
    pub name: String,
    pub v3_lun: u16,
    pub v2: Wwn,
}

/// What a failover pair copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverCopy {
    pub pair: String,
    pub v3_lun: u16,
    /// The base time of the selected table.
    pub base: Duration,
    /// Which table: `older` or `newer`.
    pub generation: &'static str,
    /// Blocks to copy (the table's bits) and the volume's size.
    pub blocks: u64,
    pub total: u64,
}

/// The status a management client sees.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PairStatus {
    pub name: String,
    pub group: String,
    pub mode: String,
    pub primary: u16,
    pub secondary: String,
    pub state: String,
    pub primary_status: String,
    pub secondary_status: String,
    /// Blocks still to copy to the secondary (split-time differences after a split).
    pub diff_blocks: u64,
    /// Blocks changed on the primary since the split or suspension.
    pub changed_blocks: u64,
    pub blocks: u64,
    pub copied_blocks: u64,
    pub journal_entries: u64,
    pub journal_bytes: u64,
    pub suspend_reason: Option<String>,
    /// Relay pairs: the source's last sequence number.
    #[serde(default)]
    pub relay_last_seq: u64,
    /// Relay pairs: records not yet held by a relay.
    #[serde(default)]
    pub relay_outstanding: u64,
}

/// A consistency group, primary side.
#[derive(Debug, Clone)]
struct Group {
    pairs: Vec<String>,
    journal: Journal,
    /// A split scheduled at this fabric time.
    split_at: Option<Duration>,
    /// Deferred mode: a split asked for at this time, waiting for the host writes
    /// admitted before it to land.
    draining: Option<Duration>,
}

/// A secondary LU of this array, as told by its primary.
#[derive(Debug, Clone)]
struct SecondaryRole {
    notice: wire::PairNotice,
    /// The LU's block size.
    block_bytes: u32,
    /// Site 2 of seed 000: the time of the last complete image the LU holds, set when
    /// the pair reached `pair` carrying an image time.
    image_time: Option<Duration>,
}

/// What an outstanding command was for.
#[derive(Debug, Clone)]
enum Pending {
    Sync {
        pair: String,
        host: u64,
        lba: u64,
        blocks: u64,
        /// When the host write landed on the primary.
        stamp: Duration,
    },
    Copy {
        pair: String,
        lba: u64,
        blocks: u64,
    },
    Journal {
        group: String,
        seq: u64,
    },
    Notify,
    /// A RELAY RECORD of relay group `group`'s core `generation`.
    Relay {
        group: String,
        generation: u32,
        relay: crate::relay::RelayId,
        seq: u64,
    },
    /// One FEC unit (`index`) of record `seq` of relay group `group`'s core `generation`.
    FecUnit {
        group: String,
        generation: u32,
        seq: u64,
        index: u16,
    },
    /// A takeover's RELAY CONTROL (`forward`, else `fence`) to the relay at `target`.
    RelayControl {
        source: u32,
        target: u64,
        forward: bool,
    },
    /// A takeover's RECEIVE RELAY STATUS from the relay at `target`.
    RelayStatus {
        source: u32,
        target: u64,
    },
}

/// A sync write waiting for an overlapping one to the same pair to finish.
#[derive(Debug, Clone)]
struct QueuedSync {
    pair: String,
    host: u64,
    lba: u64,
    blocks: u64,
    data: Bytes,
    stamp: Duration,
}

/// Deferred mode: a host write waiting for copy-before-write or a draining split.
#[derive(Debug, Clone)]
struct Gated {
    host: u64,
    lun: u16,
    lba: u64,
    blocks: u64,
}

/// Whether block ranges `(lba, n)` and `(l, m)` share a block.
fn overlap(lba: u64, n: u64, l: u64, m: u64) -> bool {
    lba < l.saturating_add(m) && l < lba.saturating_add(n)
}

/// A backup's view of the pair whose secondary it reads (seed 004).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSource {
    pub pair: String,
    pub strategy: BackupStrategy,
    pub granularity: Granularity,
    /// The pair was split by this backup (embodiment 4): answer the EXTENDED COPY now and
    /// report completion through RECEIVE COPY RESULTS.
    pub early: bool,
}

/// One read of a backup source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupRead {
    Data(Bytes),
    /// Differences in the way: ask again after the copier progressed.
    Wait,
    Fail(Sense),
}

/// Copier window: remote copy commands in flight per pair.
const COPY_WINDOW: u32 = 8;
/// Blocks per copier command.
const COPY_CHUNK: u64 = 256;
/// Copier tick while there is work.
const COPIER_TICK: Duration = Duration::from_micros(200);
/// Journal entries in flight per group.
const JOURNAL_WINDOW: u64 = 64;
/// One block of copier budget: rates are blocks per millisecond, time is nanoseconds.
const BUDGET_UNIT: u128 = 1_000_000;
/// Default journal capacity per group.
pub const DEFAULT_JOURNAL_BYTES: u64 = 64 << 20;

/// The engine.
#[derive(Debug, Default)]
pub struct CopyEngine {
    pairs: BTreeMap<String, CopyPair>,
    groups: BTreeMap<String, Group>,
    /// This array's LUs that are remote secondaries, by LUN.
    roles: BTreeMap<u16, SecondaryRole>,
    /// Journal appliers of the groups this array is secondary for.
    appliers: BTreeMap<String, JournalApplier>,
    pending: BTreeMap<u64, Pending>,
    /// Held host writes: outstanding secondary writes and the sense to answer with.
    held: BTreeMap<u64, (u32, Option<Sense>)>,
    queued: Vec<QueuedSync>,
    actions: VecDeque<Action>,
    next_token: u64,
    /// Copier budget per pair, in blocks × 10⁶ (blocks per ms × ns), so that slow
    /// rates accumulate across short ticks.
    budget: BTreeMap<String, u128>,
    last_tick: Duration,
    /// The array's own port WWPNs (the writers it names in notices).
    ports: Vec<Wwpn>,
    /// Copier commands in flight per pair.
    copy_flight: BTreeMap<String, u32>,
    /// Deferred mode: admitted host writes not yet landed (host id → LU).
    landing: BTreeMap<u64, u16>,
    /// Deferred mode: host writes waiting to be admitted.
    gated: Vec<Gated>,
    /// Site 3 (seed 000): the two generations of difference tables of this array's
    /// sync secondaries, by their pairs' groups.
    generations: DiffGenerations,
    /// Site 3: the start time of each group's last completed clear.
    clears_done: BTreeMap<String, Duration>,
    /// Relay groups' primary sides (seed 002), by group.
    relay_sources: BTreeMap<String, relaypair::RelaySource>,
    /// This array as the standby of relay sources, by source identifier.
    standbys: BTreeMap<u32, relaypair::RelayStandby>,
    /// LUs taken over by a relay takeover: the ports fenced off each.
    fenced: BTreeMap<u16, std::collections::BTreeSet<u64>>,
    /// Restart points issued (their host tags count down from the top).
    next_point_tag: u64,
}

impl CopyEngine {
    pub fn new(ports: Vec<Wwpn>) -> CopyEngine {
        CopyEngine {
            ports,
            ..CopyEngine::default()
        }
    }

    fn token(&mut self, p: Pending) -> u64 {
        self.next_token += 1;
        self.pending.insert(self.next_token, p);
        self.next_token
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn pair(&self, name: &str) -> Option<&CopyPair> {
        self.pairs.get(name)
    }

    pub fn pairs(&self) -> impl Iterator<Item = &CopyPair> {
        self.pairs.values()
    }

    /// Whether any pair or role involves this array (the node may skip the engine
    /// otherwise).
    pub fn is_idle(&self) -> bool {
        self.pairs.is_empty()
            && self.roles.is_empty()
            && self.standbys.is_empty()
            && self.fenced.is_empty()
    }

    // ---- management -------------------------------------------------------------

    /// Creates a pair and starts its formation copy. `geometry` gives (blocks, block
    /// bytes) of the node's LUs.
    pub fn create(
        &mut self,
        spec: PairSpec,
        geometry: &dyn Fn(u16) -> Option<(u64, u32)>,
    ) -> Result<(), CopyError> {
        if self.pairs.contains_key(&spec.name) {
            return Err(CopyError::Exists(spec.name));
        }
        let (blocks, bb) = geometry(spec.primary).ok_or(CopyError::NoSuchLu(spec.primary))?;
        match (spec.mode, spec.secondary) {
            (PairMode::Local, Secondary::Local(s)) => {
                if s == spec.primary {
                    return Err(CopyError::BadSecondary(
                        "the secondary must be another volume than the primary".into(),
                    ));
                }
                let Some(g) = geometry(s) else {
                    return Err(CopyError::BadSecondary(format!(
                        "LU {s} does not exist on this array"
                    )));
                };
                if g != (blocks, bb) {
                    return Err(CopyError::BadSecondary(format!(
                        "LU {s} has {} blocks of {} bytes; the primary has {blocks} of {bb}",
                        g.0, g.1
                    )));
                }
                if self.is_secondary(s) {
                    return Err(CopyError::BadSecondary(format!(
                        "LU {s} is already a secondary"
                    )));
                }
            }
            (PairMode::Local, Secondary::Remote(_)) => {
                return Err(CopyError::BadMode(
                    "a local pair needs a secondary LU of the same array".into(),
                ));
            }
            (_, Secondary::Local(_)) => {
                return Err(CopyError::BadMode(
                    "a remote pair (sync, async or relay) needs another array's LU".into(),
                ));
            }
            (PairMode::Relay, Secondary::Remote(_)) if spec.options.relay.is_none() => {
                return Err(CopyError::BadMode(
                    "a relay pair needs its relay settings".into(),
                ));
            }
            (_, Secondary::Remote(_)) => {}
        }
        // A cascade: a local pair's secondary may feed a remote pair (seed 000: S1v → V2).
        let cascade = spec.mode != PairMode::Local && !self.roles.contains_key(&spec.primary);
        if self.is_secondary(spec.primary) && !cascade {
            return Err(CopyError::BadSecondary(format!(
                "LU {} is a secondary and cannot be a primary",
                spec.primary
            )));
        }
        let group = spec.group.clone().unwrap_or_else(|| spec.name.clone());
        if let Some(g) = self.groups.get(&group)
            && let Some(other) = g.pairs.first().and_then(|p| self.pairs.get(p))
            && other.mode != spec.mode
        {
            return Err(CopyError::BadGroup(format!(
                "group `{group}` holds {} pairs; `{}` is {}",
                other.mode.name(),
                spec.name,
                spec.mode.name()
            )));
        }
        if let Some(b) = &spec.initial
            && b.blocks() != blocks
        {
            return Err(CopyError::BadSecondary(format!(
                "the initial bitmap has {} blocks; LU {} has {blocks}",
                b.blocks(),
                spec.primary
            )));
        }
        if spec.mode == PairMode::Relay
            && let Some(o) = &spec.options.relay
        {
            self.relay_source_for(&group, o, bb)?;
        }
        let mut pair = CopyPair::new(
            spec.name.clone(),
            spec.primary,
            spec.secondary,
            spec.mode,
            group.clone(),
            spec.options,
            (blocks, bb),
        );
        if let Some(b) = spec.initial {
            pair.diff = b;
        }
        info!(pair = %spec.name, mode = spec.mode.name(), group = %group, blocks = pair.diff.count(), "pair created: formation copy");
        self.groups
            .entry(group)
            .or_insert_with(|| Group {
                pairs: Vec::new(),
                journal: Journal::new(DEFAULT_JOURNAL_BYTES),
                split_at: None,
                draining: None,
            })
            .pairs
            .push(spec.name.clone());
        self.pairs.insert(spec.name.clone(), pair);
        self.notify(&spec.name);
        Ok(())
    }

    /// Sets a group's journal capacity.
    pub fn set_journal_capacity(&mut self, group: &str, bytes: u64) -> Result<(), CopyError> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| CopyError::NoSuchPair(group.to_string()))?;
        g.journal.capacity = bytes;
        Ok(())
    }

    /// Changes some settings of a pair (or of every member of a group).
    pub fn set_options(&mut self, target: &str, patch: &OptionsPatch) -> Result<(), CopyError> {
        for m in self.members(target)? {
            if let Some(p) = self.pairs.get_mut(&m) {
                p.options.apply(patch);
            }
        }
        Ok(())
    }

    /// The pairs `target` names, refused unless every one is in one of `states`.
    fn all_in(
        &self,
        target: &str,
        states: &[PairState],
        what: &'static str,
    ) -> Result<Vec<String>, CopyError> {
        let members = self.members(target)?;
        if let Some(p) = members
            .iter()
            .map(|m| &self.pairs[m])
            .find(|p| !states.contains(&p.state))
        {
            return Err(CopyError::WrongState {
                pair: p.name.clone(),
                state: p.state.name(),
                what,
            });
        }
        Ok(members)
    }

    /// The pairs `target` names: a pair, or every pair of a group.
    fn members(&self, target: &str) -> Result<Vec<String>, CopyError> {
        if self.pairs.contains_key(target) {
            return Ok(vec![target.to_string()]);
        }
        self.groups
            .get(target)
            .map(|g| g.pairs.clone())
            .ok_or_else(|| CopyError::NoSuchPair(target.to_string()))
    }

    /// Splits a pair or a whole consistency group, now or at simulated time `at_ns`.
    /// A pair of a group is split with its whole group. Acknowledged at once (INV-6).
    pub fn split(
        &mut self,
        target: &str,
        at: Option<Duration>,
        now: Duration,
    ) -> Result<(), CopyError> {
        let group = match self.pairs.get(target) {
            Some(p) => p.group.clone(),
            None if self.groups.contains_key(target) => target.to_string(),
            None => return Err(CopyError::NoSuchPair(target.to_string())),
        };
        // A relay stream has no split point the standby could hold: records already
        // acknowledged by a relay may still be on their way (seed 002 has takeover and
        // restart points instead).
        if self.relay_sources.contains_key(&group) {
            return Err(CopyError::BadMode(format!(
                "`{target}` is a relay pair: it does not split (use a restart point, or a relay takeover at the standby)"
            )));
        }
        self.all_in(
            &group,
            &[PairState::Copy, PairState::Pair],
            "only a pair in copy or pair state can be split",
        )?;
        match at {
            Some(at) if at < now => Err(CopyError::TooLate { at, now }),
            Some(at) if at > now => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.split_at = Some(at);
                }
                info!(group = %group, at = ?at, "split scheduled");
                Ok(())
            }
            _ => {
                self.split_now(&group, now);
                Ok(())
            }
        }
    }

    fn split_now(&mut self, group: &str, now: Duration) {
        let landing = self.landing_in(group);
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        g.split_at = None;
        if landing {
            g.draining.get_or_insert(now);
            info!(group = %group, "split: waiting for admitted host writes to land");
            return;
        }
        g.draining = None;
        let last_seq = g.journal.last_seq;
        let members = g.pairs.clone();
        for m in &members {
            if let Some(p) = self.pairs.get_mut(m) {
                p.split(now, Some(last_seq));
                info!(pair = %m, diff = p.diff.count(), "split: primary Split, secondary SplitPending");
            }
        }
        self.settle_all();
    }

    /// Resynchronises a split or suspended pair (or group).
    pub fn resync(&mut self, target: &str) -> Result<(), CopyError> {
        let members = self.all_in(
            target,
            &[PairState::Split, PairState::Suspended],
            "only a split or suspended pair can be resynchronised",
        )?;
        for m in &members {
            if let Some(p) = self.pairs.get_mut(m) {
                p.resync();
                info!(pair = %m, diff = p.diff.count(), "resync");
            }
            self.notify(m);
        }
        // Nothing changed since the split: back to pair at once.
        self.settle_all();
        Ok(())
    }

    /// The suspended remote pairs `target` names (a pair, or every pair of a group) for
    /// a protected recovery copy (seed 001): (name, primary LUN, secondary NAA, the
    /// difference bitmap). Every member must be suspended with a remote secondary.
    pub fn recovery_candidates(
        &self,
        target: &str,
    ) -> Result<Vec<(String, u16, Wwn, crate::bitmap::DiffBitmap)>, CopyError> {
        let members = self.all_in(
            target,
            &[PairState::Suspended],
            "only a suspended pair gets a recovery copy",
        )?;
        members
            .iter()
            .map(|m| {
                let p = &self.pairs[m];
                match p.secondary {
                    Secondary::Remote(naa) => Ok((m.clone(), p.primary, naa, p.diff.clone())),
                    Secondary::Local(_) => Err(CopyError::BadSecondary(format!(
                        "pair `{m}` is local; a recovery copy needs a remote secondary"
                    ))),
                }
            })
            .collect()
    }

    /// A protected recovery copy of suspended pair `name` ended. `remaining`: `None`
    /// when it completed (the secondary holds the primary: back to pair with a clear
    /// bitmap); otherwise the pair stays suspended with these blocks still to copy.
    pub fn end_recovery(&mut self, name: &str, remaining: Option<crate::bitmap::DiffBitmap>) {
        let Some(p) = self.pairs.get_mut(name) else {
            return;
        };
        if p.state != PairState::Suspended {
            return;
        }
        match remaining {
            None => {
                p.diff = crate::bitmap::DiffBitmap::new(p.blocks);
                p.inflight = crate::bitmap::DiffBitmap::new(p.blocks);
                p.redirty = crate::bitmap::DiffBitmap::new(p.blocks);
                p.post = crate::bitmap::DiffBitmap::new(p.blocks);
                p.suspend_reason = None;
                p.state = PairState::Pair;
                info!(pair = %name, "recovery copy completed: pair");
            }
            Some(d) => {
                p.diff = d;
                p.suspend_reason = Some("recovery copy rolled back".into());
                warn!(pair = %name, diff = p.diff.count(), "recovery copy failed: still suspended");
            }
        }
        self.notify(name);
    }

    /// Deletes a pair (or every pair of a group): both volumes become Simplex.
    pub fn delete(&mut self, target: &str) -> Result<(), CopyError> {
        let members = self.members(target)?;
        for m in &members {
            let Some(p) = self.pairs.remove(m) else {
                continue;
            };
            info!(pair = %m, "pair deleted");
            if let Secondary::Remote(naa) = p.secondary {
                let token = self.token(Pending::Notify);
                self.actions.push_back(Action::Notify {
                    token,
                    naa,
                    notice: wire::PairNotice {
                        pair: m.clone(),
                        group: p.group.clone(),
                        state: None,
                        writers: Vec::new(),
                        journal_seq: 0,
                        mode: Some(p.mode),
                        image_time: None,
                        relay: None,
                    },
                });
            }
            if let Some(g) = self.groups.get_mut(&p.group) {
                g.pairs.retain(|x| x != m);
                if g.pairs.is_empty() {
                    self.groups.remove(&p.group);
                    self.relay_sources.remove(&p.group);
                }
            }
            self.budget.remove(m);
        }
        self.finish_drains();
        self.release_gates();
        Ok(())
    }

    pub fn status(&self, target: Option<&str>) -> Result<Vec<PairStatus>, CopyError> {
        let names = match target {
            Some(t) => self.members(t)?,
            None => self.pairs.keys().cloned().collect(),
        };
        Ok(names
            .iter()
            .filter_map(|n| self.pairs.get(n))
            .map(|p| {
                let j = &self.groups[&p.group].journal;
                PairStatus {
                    name: p.name.clone(),
                    group: p.group.clone(),
                    mode: p.mode.name().into(),
                    primary: p.primary,
                    secondary: match p.secondary {
                        Secondary::Local(l) => format!("lun {l}"),
                        Secondary::Remote(w) => w.to_string(),
                    },
                    state: p.state.name().into(),
                    primary_status: p.state.primary_status().name().into(),
                    secondary_status: p.state.secondary_status().name().into(),
                    diff_blocks: p.diff.count(),
                    changed_blocks: p.post.count(),
                    blocks: p.blocks,
                    copied_blocks: p.copied_blocks,
                    journal_entries: j.len() as u64,
                    journal_bytes: j.bytes(),
                    suspend_reason: p.suspend_reason.clone(),
                    relay_last_seq: self.relay_last_seq(&p.group).unwrap_or(0),
                    relay_outstanding: self
                        .relay_sources
                        .get(&p.group)
                        .map_or(0, |s| s.core.outstanding() as u64),
                }
            })
            .collect())
    }

    /// Tells a remote secondary its pair's state.
    fn notify(&mut self, pair: &str) {
        let Some(p) = self.pairs.get(pair) else {
            return;
        };
        let Secondary::Remote(naa) = p.secondary else {
            return;
        };
        let notice = wire::PairNotice {
            pair: p.name.clone(),
            group: p.group.clone(),
            state: Some(p.state),
            writers: self.ports.iter().map(|w| w.0.0).collect(),
            journal_seq: self
                .relay_last_seq(&p.group)
                .unwrap_or_else(|| self.groups.get(&p.group).map_or(0, |g| g.journal.last_seq)),
            mode: Some(p.mode),
            image_time: self.image_time(p.primary),
            relay: p.options.relay.clone(),
        };
        let token = self.token(Pending::Notify);
        self.actions
            .push_back(Action::Notify { token, naa, notice });
    }

    /// When LU `lun` is the secondary of a split local pair: that pair's split time,
    /// the image it holds (seed 000: S1v at T, which the remote pair carries to V2).
    fn image_time(&self, lun: u16) -> Option<Duration> {
        self.pairs
            .values()
            .find(|p| p.secondary == Secondary::Local(lun) && p.state == PairState::Split)
            .and_then(|p| p.split_at)
    }

    // ---- host writes --------------------------------------------------------------

    /// The secondary role of LU `lun`, if `from` (a port of its primary array) may
    /// write it: COMMAND SEQUENCE ERROR for an LU that is no secondary, DATA PROTECT for
    /// another writer.
    fn role_writable_by(&self, lun: u16, from: Wwpn) -> Result<&SecondaryRole, Sense> {
        let role = self
            .roles
            .get(&lun)
            .ok_or_else(|| Sense::new(SenseKey::ILLEGAL_REQUEST, asc::COMMAND_SEQUENCE_ERROR))?;
        if role.notice.writers.contains(&from.0.0) {
            Ok(role)
        } else {
            Err(Sense::new(SenseKey::DATA_PROTECT, asc::WRITE_PROTECTED))
        }
    }

    /// The pairs whose primary is LU `lun`.
    fn pairs_of(&self, lun: u16) -> Vec<String> {
        self.pairs
            .values()
            .filter(|p| p.primary == lun)
            .map(|p| p.name.clone())
            .collect()
    }

    fn is_secondary(&self, lun: u16) -> bool {
        self.roles.contains_key(&lun)
            || self
                .pairs
                .values()
                .any(|p| p.secondary == Secondary::Local(lun))
    }

    /// Before a host write of `blocks` at `lba` of LU `lun` from `initiator` lands:
    /// refuses writes to a protected secondary or a fenced suspended primary, runs a
    /// due split, and saves split-time data the write would overwrite
    /// (copy-before-write).
    pub fn before_write(
        &mut self,
        vols: &mut dyn Volumes,
        lun: u16,
        lba: u64,
        blocks: u64,
        initiator: Wwpn,
        now: Duration,
    ) -> Result<(), Sense> {
        self.admit(lun, lba, blocks, initiator, now)?;
        self.copy_before_write(vols, lun, lba, blocks);
        Ok(())
    }

    /// Deferred mode's [`CopyEngine::before_write`] for host write `host`: `Ok(true)`
    /// when the write must wait for an [`Action::Proceed`] (copy-before-write of
    /// split-time differences in its range, or a split draining); `Ok(false)`: it may
    /// land now. Either way the node reports its landing with
    /// [`CopyEngine::after_write`].
    pub fn admit_deferred(
        &mut self,
        lun: u16,
        lba: u64,
        blocks: u64,
        initiator: Wwpn,
        now: Duration,
        host: u64,
    ) -> Result<bool, Sense> {
        self.admit(lun, lba, blocks, initiator, now)?;
        if self.must_wait(lun, lba, blocks) {
            self.gated.push(Gated {
                host,
                lun,
                lba,
                blocks,
            });
            return Ok(true);
        }
        self.landing.insert(host, lun);
        Ok(false)
    }

    /// Deferred mode: an admitted host write failed to land (part of its range may
    /// have): every pair of the LU treats the range as changed.
    pub fn write_failed(&mut self, lun: u16, lba: u64, blocks: u64, host: u64) {
        let landed = self.landing.remove(&host).is_some();
        for n in self.pairs_of(lun) {
            if let Some(p) = self.pairs.get_mut(&n) {
                if p.state.is_split() {
                    p.post.set_range(lba, blocks);
                } else {
                    p.mark_stale(lba, blocks);
                }
            }
        }
        if landed {
            self.finish_drains();
        }
        self.settle_all();
    }

    /// Deferred mode: whether a host write must wait; starts the copies of split-time
    /// differences in its range that are not in flight yet.
    fn must_wait(&mut self, lun: u16, lba: u64, blocks: u64) -> bool {
        let mut wait = false;
        for n in self.pairs_of(lun) {
            let p = &self.pairs[&n];
            if self
                .groups
                .get(&p.group)
                .is_some_and(|g| g.draining.is_some())
            {
                wait = true;
                continue;
            }
            if p.state != PairState::SplitPending || !p.range_dirty(lba, blocks) {
                continue;
            }
            wait = true;
            let end = lba.saturating_add(blocks).min(p.blocks);
            while let Some((s, c)) = self.pairs[&n].next_copy_in(lba, end, COPY_CHUNK) {
                self.send_copy(&n, s, c);
            }
        }
        wait
    }

    /// Deferred mode: lets every held host write whose wait is over proceed.
    fn release_gates(&mut self) {
        for g in std::mem::take(&mut self.gated) {
            if self.must_wait(g.lun, g.lba, g.blocks) {
                self.gated.push(g);
            } else {
                self.landing.insert(g.host, g.lun);
                self.actions.push_back(Action::Proceed { host: g.host });
            }
        }
    }

    /// Whether admitted host writes to a primary of `group` have yet to land.
    fn landing_in(&self, group: &str) -> bool {
        self.landing.values().any(|lun| {
            self.pairs
                .values()
                .any(|p| p.group == group && p.primary == *lun)
        })
    }

    /// Runs the splits that waited for admitted host writes to land.
    fn finish_drains(&mut self) {
        let ready: Vec<(String, Duration)> = self
            .groups
            .iter()
            .filter_map(|(n, g)| g.draining.map(|at| (n.clone(), at)))
            .filter(|(n, _)| !self.landing_in(n))
            .collect();
        for (g, at) in ready {
            self.split_now(&g, at);
        }
    }

    /// A copier command of pair `n` goes out: it counts against the pair's window.
    fn copy_token(&mut self, n: &str, lba: u64, cnt: u64) -> u64 {
        *self.copy_flight.entry(n.to_string()).or_insert(0) += 1;
        self.token(Pending::Copy {
            pair: n.to_string(),
            lba,
            blocks: cnt,
        })
    }

    /// Deferred mode: asks the node to copy `cnt` blocks at `lba` of pair `n`.
    fn send_copy(&mut self, n: &str, lba: u64, cnt: u64) {
        let Some(p) = self.pairs.get_mut(n) else {
            return;
        };
        p.copy_started(lba, cnt);
        let (lun, to) = (p.primary, p.secondary);
        let token = self.copy_token(n, lba, cnt);
        self.actions.push_back(Action::Copy {
            token,
            lun,
            lba,
            blocks: cnt,
            to,
        });
    }

    /// The checks every host write passes before it lands: protected secondaries, a
    /// fenced suspended primary; due splits run first.
    fn admit(
        &mut self,
        lun: u16,
        lba: u64,
        blocks: u64,
        initiator: Wwpn,
        now: Duration,
    ) -> Result<(), Sense> {
        self.run_due_splits(now);
        if let Some(r) = self.roles.get(&lun)
            && !r.notice.writers.contains(&initiator.0.0)
        {
            return Err(Sense::new(SenseKey::DATA_PROTECT, asc::WRITE_PROTECTED));
        }
        for p in self.pairs.values_mut() {
            if p.secondary == Secondary::Local(lun) {
                if p.state != PairState::Split {
                    return Err(Sense::new(SenseKey::DATA_PROTECT, asc::WRITE_PROTECTED));
                }
                p.s_changed.set_range(lba, blocks);
            }
        }
        for p in self.pairs.values().filter(|p| p.primary == lun) {
            if p.state == PairState::Suspended && p.options.fence {
                return Err(Sense::new(
                    SenseKey::ABORTED_COMMAND,
                    asc::LU_COMMUNICATION_FAILURE,
                ));
            }
        }
        Ok(())
    }

    /// The engine wrote blocks of local secondary `lun`: the pairs it is the primary of
    /// (a cascade) track them, for their next resync or copy.
    fn cascade_changed(&mut self, lun: u16, lba: u64, blocks: u64) {
        for p in self.pairs.values_mut().filter(|p| p.primary == lun) {
            if p.state.is_split() {
                p.post.set_range(lba, blocks);
            } else {
                p.mark_stale(lba, blocks);
            }
        }
    }

    /// Direct mode: saves the split-time data of still-different blocks a host write
    /// is about to overwrite.
    fn copy_before_write(&mut self, vols: &mut dyn Volumes, lun: u16, lba: u64, blocks: u64) {
        for n in self.pairs_of(lun) {
            let p = self.pairs.get(&n).expect("listed");
            let cbw: Vec<u64> = (lba..lba.saturating_add(blocks).min(p.blocks))
                .filter(|b| p.needs_cbw(*b))
                .collect();
            if cbw.is_empty() {
                continue;
            }
            let (secondary, mode) = (p.secondary, p.mode);
            for b in cbw {
                let Some(old) = vols.read(lun, b, 1) else {
                    continue;
                };
                let p = self.pairs.get_mut(&n).expect("listed");
                match (mode, secondary) {
                    // The literal copy-before-write: the old block goes to the secondary
                    // now, and its bit clears.
                    (PairMode::Local, Secondary::Local(s)) if vols.write(s, b, &old) => {
                        p.copy_started(b, 1);
                        p.copy_done(b, 1, true);
                        self.cascade_changed(s, b, 1);
                    }
                    // Remote (or the write failed): keep the split-time version; the
                    // copier sends it.
                    _ => {
                        p.preserved.insert(b, old);
                    }
                }
            }
        }
    }

    /// A host write of `data` at `lba` of LU `lun` landed on the primary at `now`.
    /// Returns whether the host's answer must wait for an [`Action::Release`] of `host`.
    pub fn after_write(
        &mut self,
        lun: u16,
        lba: u64,
        data: Bytes,
        host: u64,
        now: Duration,
    ) -> bool {
        // Deferred mode: a write admitted before a draining split is wholly before it.
        let landed = self.landing.remove(&host).is_some();
        // Site 3: any other write that changes a tracked LU (a copier copy) marks its
        // tables at this site's time, which never under-approximates.
        if let Some(r) = self.roles.get(&lun)
            && self.generations.volume(lun).is_some()
        {
            let blocks = data.len() as u64 / u64::from(r.block_bytes.max(1));
            let _ = self.generations.record_write(lun, lba, blocks, now);
            self.drain_clears();
        }
        let names = self.pairs_of(lun);
        for n in names {
            let Some(p) = self.pairs.get_mut(&n) else {
                continue;
            };
            let blocks = data.len() as u64 / u64::from(p.block_bytes.max(1));
            match p.on_primary_write(lba, blocks) {
                Propagate::None => {}
                Propagate::Sync => {
                    // Overlapping writes reach the secondary in the order they landed.
                    let overlapping = self.sync_in_flight(&n, lba, blocks)
                        || self
                            .queued
                            .iter()
                            .any(|q| q.pair == n && overlap(q.lba, q.blocks, lba, blocks));
                    self.held.entry(host).or_insert((0, None)).0 += 1;
                    if overlapping {
                        self.queued.push(QueuedSync {
                            pair: n.clone(),
                            host,
                            lba,
                            blocks,
                            data: data.clone(),
                            stamp: now,
                        });
                    } else {
                        self.send_sync(&n, host, lba, data.clone(), now);
                    }
                }
                Propagate::Relay => self.relay_write(&n, host, lba, data.clone()),
                Propagate::Journal => {
                    let Secondary::Remote(naa) = p.secondary else {
                        continue;
                    };
                    let group = p.group.clone();
                    let g = self.groups.get_mut(&group).expect("pair's group");
                    if g.journal
                        .append(&n, naa, lba, blocks, data.clone())
                        .is_err()
                    {
                        warn!(group = %group, "journal full: the group suspends");
                        self.suspend_group(&group, "journal full");
                        if let Some(p) = self.pairs.get_mut(&n) {
                            p.mark_stale(lba, blocks);
                        }
                    }
                }
            }
        }
        self.ship_journals();
        if landed {
            self.finish_drains();
        }
        self.settle_all();
        self.held.contains_key(&host)
    }

    /// Whether a synchronous write overlapping `(lba, n)` of `pair` is in flight.
    fn sync_in_flight(&self, pair: &str, lba: u64, n: u64) -> bool {
        self.pending.values().any(|x| {
            matches!(x, Pending::Sync { pair: p, lba: l, blocks: m, .. }
                if p == pair && overlap(*l, *m, lba, n))
        })
    }

    fn send_sync(&mut self, pair: &str, host: u64, lba: u64, data: Bytes, stamp: Duration) {
        let Some(p) = self.pairs.get_mut(pair) else {
            return;
        };
        let Secondary::Remote(naa) = p.secondary else {
            return;
        };
        let blocks = data.len() as u64 / u64::from(p.block_bytes.max(1));
        p.sync_inflight += 1;
        let token = self.token(Pending::Sync {
            pair: pair.to_string(),
            host,
            lba,
            blocks,
            stamp,
        });
        self.actions.push_back(Action::Write {
            token,
            naa,
            lba,
            data,
            stamp: Some(stamp),
        });
    }

    fn release(&mut self, host: u64, sense: Option<Sense>) {
        if let Some(h) = self.held.get_mut(&host) {
            h.0 = h.0.saturating_sub(1);
            if sense.is_some() {
                h.1 = sense;
            }
            if h.0 == 0 {
                let (_, sense) = self.held.remove(&host).expect("present");
                self.actions.push_back(Action::Release { host, sense });
            }
        }
    }

    fn suspend_group(&mut self, group: &str, why: &str) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let lost = g.journal.discard();
        let members = g.pairs.clone();
        for e in lost {
            if let Some(p) = self.pairs.get_mut(&e.pair) {
                p.mark_stale(e.lba, e.blocks);
            }
        }
        for m in &members {
            if let Some(p) = self.pairs.get_mut(m)
                && matches!(
                    p.state,
                    PairState::Pair | PairState::Copy | PairState::Resync
                )
            {
                p.suspend(why);
                warn!(pair = %m, why, "pair suspended");
            }
        }
        self.abandon_relay(group);
        for m in &members {
            self.notify(m);
        }
    }

    // ---- completions and time -------------------------------------------------------

    /// A command the engine asked for ended.
    pub fn completed(&mut self, token: u64, ok: bool) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        match p {
            Pending::Sync {
                pair,
                host,
                lba,
                blocks,
                ..
            } => {
                let mut sense = None;
                if let Some(p) = self.pairs.get_mut(&pair) {
                    p.sync_inflight = p.sync_inflight.saturating_sub(1);
                    if !ok {
                        p.mark_stale(lba, blocks);
                        if p.options.fence {
                            sense = Some(Sense::new(
                                SenseKey::ABORTED_COMMAND,
                                asc::LU_COMMUNICATION_FAILURE,
                            ));
                        }
                        if p.state == PairState::Pair {
                            p.suspend("secondary not reachable");
                            warn!(pair = %pair, "sync write to the secondary failed: pair suspended");
                            self.notify(&pair);
                        }
                    }
                }
                self.release(host, sense);
                // Writes queued behind this one: each goes once nothing overlapping
                // is in flight or queued ahead of it.
                let mut i = 0;
                while i < self.queued.len() {
                    let q = &self.queued[i];
                    let blocked = self.sync_in_flight(&q.pair, q.lba, q.blocks)
                        || self.queued[..i]
                            .iter()
                            .any(|a| a.pair == q.pair && overlap(a.lba, a.blocks, q.lba, q.blocks));
                    if blocked {
                        i += 1;
                        continue;
                    }
                    let q = self.queued.remove(i);
                    if self.pairs.get(&q.pair).map(|p| p.state) == Some(PairState::Pair) {
                        self.send_sync(&q.pair, q.host, q.lba, q.data, q.stamp);
                    } else {
                        if let Some(p) = self.pairs.get_mut(&q.pair) {
                            p.mark_stale(q.lba, q.blocks);
                        }
                        self.release(q.host, None);
                    }
                }
            }
            Pending::Copy { pair, lba, blocks } => {
                if let Some(f) = self.copy_flight.get_mut(&pair) {
                    *f = f.saturating_sub(1);
                }
                if let Some(p) = self.pairs.get_mut(&pair) {
                    p.copy_done(lba, blocks, ok);
                    if !ok {
                        p.suspend("copy to the secondary failed");
                        warn!(pair = %pair, "copy to the secondary failed: pair suspended");
                        self.notify(&pair);
                    }
                }
            }
            Pending::Journal { group, seq } => {
                if ok {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.journal.ack(seq);
                    }
                } else if self
                    .groups
                    .get(&group)
                    .is_some_and(|g| g.journal.drained_to() < seq)
                {
                    self.suspend_group(&group, "secondary not reachable");
                }
                self.ship_journals();
            }
            Pending::Notify => {
                if !ok {
                    warn!("pair notice to the secondary array failed");
                }
            }
            p @ (Pending::Relay { .. }
            | Pending::FecUnit { .. }
            | Pending::RelayControl { .. }
            | Pending::RelayStatus { .. }) => {
                let now = self.last_tick;
                self.relay_pending_done(p, ok.then_some(0), &Bytes::new(), now);
            }
        }
        self.settle_all();
    }

    /// Any command the engine asked for ended: SCSI `status` (`None`: the exchange
    /// failed) and its data-in. Relay commands need the status itself (BUSY, RESERVATION
    /// CONFLICT); the others only whether it was GOOD.
    pub fn command_done(&mut self, token: u64, status: Option<u8>, data_in: &Bytes, now: Duration) {
        let relay = matches!(
            self.pending.get(&token),
            Some(
                Pending::Relay { .. }
                    | Pending::FecUnit { .. }
                    | Pending::RelayControl { .. }
                    | Pending::RelayStatus { .. }
            )
        );
        if relay {
            self.relay_completed(token, status, data_in, now);
        } else {
            self.completed(token, status == Some(0));
        }
    }

    /// A relay command (RELAY RECORD, RELAY CONTROL, RECEIVE RELAY STATUS) the engine
    /// asked for ended with SCSI `status` (`None`: the exchange failed) and `data_in`.
    pub fn relay_completed(
        &mut self,
        token: u64,
        status: Option<u8>,
        data_in: &Bytes,
        now: Duration,
    ) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        self.relay_pending_done(p, status, data_in, now);
        self.settle_all();
    }

    fn relay_pending_done(
        &mut self,
        p: Pending,
        status: Option<u8>,
        data_in: &Bytes,
        now: Duration,
    ) {
        match p {
            Pending::Relay {
                group,
                generation,
                relay,
                seq,
            } => self.relay_record_done(&group, generation, relay, seq, status, now),
            Pending::FecUnit {
                group,
                generation,
                seq,
                index,
            } => self.fec_unit_done(&group, generation, seq, index, status, now),
            Pending::RelayControl {
                source,
                target,
                forward,
            } => self.relay_control_done(source, target, Some(forward), status, data_in, now),
            Pending::RelayStatus { source, target } => {
                self.relay_control_done(source, target, None, status, data_in, now);
            }
            _ => {}
        }
    }

    fn ship_journals(&mut self) {
        let groups: Vec<String> = self.groups.keys().cloned().collect();
        for gname in groups {
            loop {
                let Some(e) = self
                    .groups
                    .get_mut(&gname)
                    .and_then(|g| g.journal.next_to_send(JOURNAL_WINDOW))
                else {
                    break;
                };
                let token = self.token(Pending::Journal {
                    group: gname.clone(),
                    seq: e.seq,
                });
                self.actions.push_back(Action::JournalWrite {
                    token,
                    naa: e.secondary,
                    seq: e.seq,
                    lba: e.lba,
                    data: e.data,
                });
            }
        }
    }

    fn run_due_splits(&mut self, now: Duration) {
        let due: Vec<(String, Duration)> = self
            .groups
            .iter()
            .filter_map(|(n, g)| g.split_at.filter(|t| *t <= now).map(|t| (n.clone(), t)))
            .collect();
        // The split holds the writes stamped before its time, even when it runs late
        // (every write is admitted after the due splits ran).
        for (g, at) in due {
            self.split_now(&g, at.min(now));
        }
    }

    /// Moves pairs whose copying finished to their next state; held host writes whose
    /// wait is over proceed.
    fn settle_all(&mut self) {
        let names: Vec<String> = self.pairs.keys().cloned().collect();
        for n in names {
            let drained = {
                let p = &self.pairs[&n];
                self.groups.get(&p.group).map(|g| g.journal.drained_to())
            };
            if self.awaits_sync_acks(&n) {
                continue;
            }
            let changed = self.pairs.get_mut(&n).and_then(|p| p.settle(drained));
            if let Some(s) = changed {
                info!(pair = %n, state = s.name(), "pair state");
                self.notify(&n);
            }
        }
        if !self.gated.is_empty() {
            self.release_gates();
        }
    }

    /// Site 1 of seed 000: a local pair split at T whose primary is also a sync pair's
    /// primary stays SplitPending until the sync secondary acknowledged every write
    /// stamped before T. Otherwise the remote resync could give V2 a write that V3 and
    /// its difference tables never saw.
    fn awaits_sync_acks(&self, name: &str) -> bool {
        let Some(p) = self.pairs.get(name) else {
            return false;
        };
        let (PairMode::Local, PairState::SplitPending, Some(at)) = (p.mode, p.state, p.split_at)
        else {
            return false;
        };
        let sync_of_primary = |pair: &str| {
            self.pairs
                .get(pair)
                .is_some_and(|s| s.mode == PairMode::Sync && s.primary == p.primary)
        };
        self.pending.values().any(|x| {
            matches!(x, Pending::Sync { pair, stamp, .. } if *stamp < at && sync_of_primary(pair))
        }) || self
            .queued
            .iter()
            .any(|q| q.stamp < at && sync_of_primary(&q.pair))
    }

    /// The next time the engine wants [`CopyEngine::tick`].
    pub fn poll_timeout(&self, now: Duration) -> Option<Duration> {
        let copying = self.pairs.values().any(|p| {
            p.options.copy_rate > 0
                && !p.diff.is_clear()
                && matches!(
                    p.state,
                    PairState::Copy | PairState::Pair | PairState::SplitPending | PairState::Resync
                )
        });
        let split = self
            .groups
            .values()
            .filter_map(|g| g.split_at)
            .chain(self.generations.poll_timeout())
            .chain(self.relay_timeout())
            .min();
        // From the last tick, not from now: a stream of host writes must not keep pushing
        // the copier's deadline away.
        let tick =
            copying.then(|| self.last_tick.max(now.saturating_sub(COPIER_TICK)) + COPIER_TICK);
        match (tick, split) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs due splits and the background copier.
    pub fn tick(&mut self, vols: &mut dyn Volumes, now: Duration) {
        self.tick_with(Some(vols), now);
    }

    /// Deferred mode's [`CopyEngine::tick`]: the copier asks for [`Action::Copy`].
    pub fn tick_deferred(&mut self, now: Duration) {
        self.tick_with(None, now);
    }

    fn tick_with<'v>(&mut self, mut vols: Option<&mut (dyn Volumes + 'v)>, now: Duration) {
        self.run_due_splits(now);
        self.relay_resend(now);
        if let Some(v) = vols.as_deref_mut() {
            self.relay_tick(v, now);
        }
        self.generations.tick(now);
        self.drain_clears();
        let elapsed = now.saturating_sub(self.last_tick).as_nanos();
        self.last_tick = now;
        let names: Vec<String> = self.pairs.keys().cloned().collect();
        for n in names {
            let (rate, state) = {
                let p = &self.pairs[&n];
                (p.options.copy_rate, p.state)
            };
            if rate == 0
                || !matches!(
                    state,
                    PairState::Copy | PairState::Pair | PairState::SplitPending | PairState::Resync
                )
            {
                self.budget.remove(&n);
                continue;
            }
            // At most a few ticks' worth accumulates while idle.
            let cap = u128::from((rate * 2).max(COPY_CHUNK)) * BUDGET_UNIT;
            let b = self.budget.entry(n.clone()).or_insert(0);
            *b = (*b + u128::from(rate) * elapsed).min(cap);
            self.copy_some(&n, vols.as_deref_mut());
        }
        self.ship_journals();
        self.settle_all();
    }

    /// Copies stale blocks of pair `n` within its budget (deferred mode: without
    /// `vols`, asks the node to).
    fn copy_some<'v>(&mut self, n: &str, mut vols: Option<&mut (dyn Volumes + 'v)>) {
        loop {
            let blocks = self.budget.get(n).copied().unwrap_or(0) / BUDGET_UNIT;
            if blocks == 0 {
                return;
            }
            if self.copy_flight.get(n).copied().unwrap_or(0) >= COPY_WINDOW {
                return;
            }
            let Some(p) = self.pairs.get(n) else {
                return;
            };
            let max = u64::try_from(blocks).unwrap_or(u64::MAX).min(COPY_CHUNK);
            let Some((lba, cnt)) = p.next_copy(max) else {
                return;
            };
            let Some(vols) = vols.as_deref_mut() else {
                *self.budget.get_mut(n).expect("budget") -= u128::from(cnt) * BUDGET_UNIT;
                self.send_copy(n, lba, cnt);
                continue;
            };
            let Some(data) = self.source_blocks(n, vols, lba, cnt) else {
                if let Some(p) = self.pairs.get_mut(n) {
                    p.suspend("primary read error");
                }
                return;
            };
            *self.budget.get_mut(n).expect("budget") -= u128::from(cnt) * BUDGET_UNIT;
            let p = self.pairs.get_mut(n).expect("present");
            p.copy_started(lba, cnt);
            match p.secondary {
                Secondary::Local(s) => {
                    let ok = vols.write(s, lba, &data);
                    self.cascade_changed(s, lba, cnt);
                    let p = self.pairs.get_mut(n).expect("present");
                    p.copy_done(lba, cnt, ok);
                    if !ok {
                        p.suspend("secondary write error");
                        return;
                    }
                }
                Secondary::Remote(naa) => {
                    let token = self.copy_token(n, lba, cnt);
                    self.actions.push_back(Action::Write {
                        token,
                        naa,
                        lba,
                        data,
                        stamp: None,
                    });
                }
            }
        }
    }

    /// The split-time (or current, before a split) primary data of `cnt` blocks at
    /// `lba`: preserved copies where the host overwrote them, the primary otherwise.
    fn source_blocks(&self, n: &str, vols: &dyn Volumes, lba: u64, cnt: u64) -> Option<Bytes> {
        let p = self.pairs.get(n)?;
        let live = vols.read(p.primary, lba, cnt)?;
        if p.preserved.range(lba..lba + cnt).next().is_none() {
            return Some(live);
        }
        let bb = p.block_bytes as usize;
        let mut out = BytesMut::with_capacity(live.len());
        for (i, b) in (lba..lba + cnt).enumerate() {
            match p.preserved.get(&b) {
                Some(old) => out.extend_from_slice(old),
                None => out.extend_from_slice(&live[i * bb..(i + 1) * bb]),
            }
        }
        Some(out.freeze())
    }

    // ---- backup (seed 004) ----------------------------------------------------------

    /// Deferred mode's guard for a copy reading LU `lun`: a volume that is no pair's
    /// secondary, or a split one, may be read; while SplitPending the reader polls
    /// (NOT READY, OPERATION IN PROGRESS: strategy H, the only one a node that cannot
    /// read the volumes itself can offer); a secondary holding no split image is a
    /// COMMAND SEQUENCE ERROR.
    pub fn split_image_ready(&self, lun: u16) -> Result<(), Sense> {
        match self
            .pairs
            .values()
            .find(|p| p.secondary == Secondary::Local(lun))
            .map(|p| p.state)
        {
            None | Some(PairState::Split) => Ok(()),
            Some(PairState::SplitPending) => Err(Sense::new(
                SenseKey::NOT_READY,
                asc::LU_NOT_READY_OPERATION_IN_PROGRESS,
            )),
            Some(_) => Err(Sense::new(
                SenseKey::ILLEGAL_REQUEST,
                asc::COMMAND_SEQUENCE_ERROR,
            )),
        }
    }

    /// Whether LU `lun` is the primary or the local secondary of a pair.
    pub fn is_paired(&self, lun: u16) -> bool {
        self.pairs
            .values()
            .any(|p| p.primary == lun || p.secondary == Secondary::Local(lun))
    }

    /// A backup (EXTENDED COPY) reading LU `lun` of this array over `ranges` begins.
    /// `Ok(None)`: the LU is no pair's secondary, a plain copy. Refusals: a secondary
    /// that holds no split image (COMMAND SEQUENCE ERROR, unless the pair splits on a
    /// backup: embodiment 4), strategy H while SplitPending (NOT READY, OPERATION IN
    /// PROGRESS: the host polls).
    pub fn backup_begin(
        &mut self,
        lun: u16,
        ranges: &[(u64, u64)],
        now: Duration,
    ) -> Result<Option<BackupSource>, Sense> {
        self.run_due_splits(now);
        if let Some(r) = self.roles.get(&lun) {
            return match r.notice.state {
                Some(PairState::Split) => Ok(None),
                _ => Err(Sense::new(
                    SenseKey::NOT_READY,
                    asc::LU_NOT_READY_OPERATION_IN_PROGRESS,
                )),
            };
        }
        let Some(p) = self
            .pairs
            .values()
            .find(|p| p.secondary == Secondary::Local(lun))
        else {
            return Ok(None);
        };
        let name = p.name.clone();
        let mut early = false;
        match p.state {
            PairState::Copy | PairState::Pair if p.options.backup_implies_split => {
                let group = p.group.clone();
                self.split_now(&group, now);
                early = true;
            }
            PairState::SplitPending if p.options.strategy == BackupStrategy::H => {
                return Err(Sense::new(
                    SenseKey::NOT_READY,
                    asc::LU_NOT_READY_OPERATION_IN_PROGRESS,
                ));
            }
            PairState::SplitPending | PairState::Split => {}
            _ => {
                return Err(Sense::new(
                    SenseKey::ILLEGAL_REQUEST,
                    asc::COMMAND_SEQUENCE_ERROR,
                ));
            }
        }
        let p = self.pairs.get_mut(&name).expect("present");
        if p.state == PairState::SplitPending
            && p.options.strategy == BackupStrategy::R
            && p.options.priority
            && p.options.granularity == Granularity::WholeRange
        {
            p.priority_ranges.extend_from_slice(ranges);
        }
        Ok(Some(BackupSource {
            pair: name,
            strategy: p.options.strategy,
            granularity: p.options.granularity,
            early,
        }))
    }

    /// Reads `cnt` blocks at `lba` of the backup source for the tape; `range` is the
    /// segment the unit belongs to.
    pub fn backup_read(
        &mut self,
        src: &BackupSource,
        vols: &dyn Volumes,
        lba: u64,
        cnt: u64,
        range: (u64, u64),
    ) -> BackupRead {
        let Some(p) = self.pairs.get_mut(&src.pair) else {
            return BackupRead::Fail(Sense::copy_aborted(asc::COMMAND_SEQUENCE_ERROR));
        };
        let Secondary::Local(s) = p.secondary else {
            return BackupRead::Fail(Sense::copy_aborted(asc::COMMAND_SEQUENCE_ERROR));
        };
        if !p.state.is_split() {
            // Resynced or deleted under the backup: the image is gone.
            return BackupRead::Fail(Sense::copy_aborted(asc::COMMAND_SEQUENCE_ERROR));
        }
        let read_s = |vols: &dyn Volumes| {
            vols.read(s, lba, cnt).map_or(
                BackupRead::Fail(Sense::copy_aborted(asc::THIRD_PARTY_DEVICE_FAILURE)),
                BackupRead::Data,
            )
        };
        if p.state == PairState::Split {
            return read_s(vols);
        }
        match src.strategy {
            BackupStrategy::R | BackupStrategy::H => {
                let (l, n) = match src.granularity {
                    Granularity::WholeRange => range,
                    Granularity::PerTransferUnit => (lba, cnt),
                };
                if p.range_dirty(l, n) {
                    if p.options.priority && !p.priority_ranges.contains(&(l, n)) {
                        p.priority_ranges.push((l, n));
                    }
                    BackupRead::Wait
                } else {
                    read_s(vols)
                }
            }
            BackupStrategy::W => {
                if p.diff.is_clear() && p.inflight.is_clear() {
                    read_s(vols)
                } else {
                    BackupRead::Wait
                }
            }
            BackupStrategy::M => {
                // P_split(b) = diff(b) ? P(b) (or its preserved copy) : S(b), block by
                // block, checked and read in one step (INV-4, INV-13).
                let name = src.pair.clone();
                if !p.range_dirty(lba, cnt) {
                    return read_s(vols);
                }
                let (Some(sd), Some(pd)) = (
                    vols.read(s, lba, cnt),
                    self.source_blocks(&name, vols, lba, cnt),
                ) else {
                    return BackupRead::Fail(Sense::copy_aborted(asc::THIRD_PARTY_DEVICE_FAILURE));
                };
                let p = &self.pairs[&name];
                let bb = p.block_bytes as usize;
                let mut out = BytesMut::with_capacity(sd.len());
                for (i, b) in (lba..lba + cnt).enumerate() {
                    let from = if p.diff.get(b) { &pd } else { &sd };
                    out.extend_from_slice(&from[i * bb..(i + 1) * bb]);
                }
                BackupRead::Data(out.freeze())
            }
        }
    }

    // ---- secondary side -------------------------------------------------------------

    /// A PAIR NOTIFY from the primary array about LU `lun`, at `now`. A sync
    /// secondary gets difference tables under its pair's group (site 3 of seed 000);
    /// releasing it drops them.
    pub fn on_notice(
        &mut self,
        vols: &dyn Volumes,
        lun: u16,
        notice: wire::PairNotice,
        now: Duration,
    ) {
        match notice.state {
            None => {
                info!(lun, pair = %notice.pair, "secondary released: simplex");
                self.roles.remove(&lun);
                self.untrack(lun);
                self.relay_release(lun);
            }
            Some(s) => {
                if !self.roles.contains_key(&lun) {
                    info!(lun, pair = %notice.pair, "LU is now a secondary");
                }
                if notice.mode == Some(PairMode::Sync)
                    && self.generations.volume(lun).is_none()
                    && let Some((blocks, _)) = vols.geometry(lun)
                {
                    match self.generations.add_volume(lun, blocks, &notice.group, now) {
                        Ok(()) => info!(lun, group = %notice.group, "difference tables started"),
                        Err(e) => warn!(lun, error = %e, "no difference tables"),
                    }
                }
                self.appliers.entry(notice.group.clone()).or_default();
                self.relay_notice(lun, &notice);
                if s == PairState::Copy || s == PairState::Resync {
                    // A formation or resync copy: the journal goes on after it from the
                    // primary's current sequence number.
                    self.appliers.insert(
                        notice.group.clone(),
                        JournalApplier::after(notice.journal_seq),
                    );
                }
                let block_bytes = vols.geometry(lun).map_or(512, |g| g.1);
                let kept = self.roles.get(&lun).and_then(|r| r.image_time);
                let image_time = match (s, notice.image_time) {
                    (PairState::Pair, Some(t)) => Some(t),
                    _ => kept,
                };
                self.roles.insert(
                    lun,
                    SecondaryRole {
                        notice,
                        block_bytes,
                        image_time,
                    },
                );
            }
        }
    }

    /// Drops LU `lun`'s difference tables, if any.
    fn untrack(&mut self, lun: u16) {
        if self.generations.volume(lun).is_some()
            && let Err(e) = self.generations.remove_volume(lun)
        {
            warn!(lun, error = %e, "difference tables kept");
        }
    }

    /// A TIMESTAMPED WRITE for LU `lun` from port `from`: a sync pair's propagation of
    /// a host write that landed on the primary at `ts`. Applied like any write from the
    /// primary array, then recorded in the LU's difference tables.
    pub fn on_timestamped_write(
        &mut self,
        vols: &mut dyn Volumes,
        lun: u16,
        from: Wwpn,
        ts: Duration,
        lba: u64,
        data: &Bytes,
    ) -> Result<(), Sense> {
        self.role_writable_by(lun, from)?;
        let Some((total, bb)) = vols.geometry(lun) else {
            return Err(Sense::lu_not_supported());
        };
        let blocks = data.len() as u64 / u64::from(bb.max(1));
        if !(data.len() as u64).is_multiple_of(u64::from(bb.max(1)))
            || lba.checked_add(blocks).is_none_or(|end| end > total)
        {
            return Err(Sense::new(SenseKey::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE));
        }
        if !vols.write(lun, lba, data) {
            return Err(Sense::new(SenseKey::MEDIUM_ERROR, asc::WRITE_ERROR));
        }
        if self.generations.volume(lun).is_some() {
            let _ = self.generations.record_write(lun, lba, blocks, ts);
            self.drain_clears();
        }
        Ok(())
    }

    /// Records the completed clears.
    fn drain_clears(&mut self) {
        while let Some(c) = self.generations.poll_event() {
            info!(group = %c.group, at = ?c.at, "difference clear complete");
            self.clears_done.insert(c.group, c.at);
        }
    }

    /// Site 3's difference tables.
    pub fn generations(&self) -> &DiffGenerations {
        &self.generations
    }

    /// The start time of `group`'s last completed clear.
    pub fn last_clear(&self, group: &str) -> Option<Duration> {
        self.clears_done.get(group).copied()
    }

    /// A JOURNAL WRITE for LU `lun` from port `from`: buffered, and applied in sequence
    /// order with the rest of its group.
    pub fn on_journal_write(
        &mut self,
        vols: &mut dyn Volumes,
        lun: u16,
        from: Wwpn,
        seq: u64,
        lba: u64,
        data: Bytes,
    ) -> Result<(), Sense> {
        // Only the primary array's ports feed a secondary's journal.
        let role = self.role_writable_by(lun, from)?;
        let group = role.notice.group.clone();
        let applier = self.appliers.entry(group).or_default();
        for (_, (l, at, d)) in applier.receive(seq, (lun, lba, data)) {
            if !vols.write(l, at, &d) {
                return Err(Sense::new(SenseKey::MEDIUM_ERROR, asc::WRITE_ERROR));
            }
        }
        Ok(())
    }

    /// Takeover at the secondary: the LUs of `pair` (or of every pair of its group)
    /// become writable Simplex volumes holding the last applicable prefix. Returns the
    /// LUNs taken over.
    pub fn takeover(&mut self, pair: &str) -> Result<Vec<u16>, CopyError> {
        if self.relay_takeover_report(pair).is_none() && self.has_relay_standby(pair) {
            return Err(CopyError::BadMode(format!(
                "`{pair}` is a relay pair: its standby takes over with a relay takeover (drain, fence)"
            )));
        }
        let group = self
            .roles
            .values()
            .find(|r| r.notice.pair == pair || r.notice.group == pair)
            .map(|r| r.notice.group.clone())
            .ok_or_else(|| CopyError::NoSuchPair(pair.to_string()))?;
        let luns: Vec<u16> = self
            .roles
            .iter()
            .filter(|(_, r)| r.notice.group == group)
            .map(|(l, _)| *l)
            .collect();
        for l in &luns {
            self.roles.remove(l);
        }
        if let Some(mut a) = self.appliers.remove(&group) {
            let dropped = a.takeover();
            info!(group = %group, applied = a.applied, dropped, "takeover");
        }
        Ok(luns)
    }

    /// Site 3: the host's clear of `group`'s older difference tables at `at` (seed 000
    /// S912). A clear whose time has passed at this site is refused.
    pub fn clear_difference(
        &mut self,
        group: &str,
        at: Duration,
        now: Duration,
    ) -> Result<(), CopyError> {
        self.generations.clear_request(group, at, now)?;
        info!(group = %group, at = ?at, "difference clear pending");
        Ok(())
    }

    /// Site 3, at a site-1 disaster (seed 000 §4.6): selects the table of every volume
    /// of sync group `group` by `rule` and site 2's `report`, takes the volumes over,
    /// and creates pairs V3 → V2 (in a group of the same name) whose formation copy is
    /// only the selected blocks. Every volume of the group needs a pair.
    pub fn failover(
        &mut self,
        r: &FailoverRequest,
        geometry: &dyn Fn(u16) -> Option<(u64, u32)>,
    ) -> Result<Vec<FailoverCopy>, CopyError> {
        let FailoverRequest {
            group,
            pairs,
            mode,
            rule,
            report,
            options,
        } = r;
        let (mode, rule) = (*mode, *rule);
        if mode == PairMode::Local {
            return Err(CopyError::BadMode(
                "a failover pair is remote (sync or async)".into(),
            ));
        }
        let selection = self.generations.select(group, rule, report)?;
        for lun in selection.keys() {
            if !pairs.iter().any(|p| p.v3_lun == *lun) {
                return Err(CopyError::Failover(format!(
                    "LU {lun} of group `{group}` has no failover pair (the whole group fails over)"
                )));
            }
        }
        for p in pairs {
            if !selection.contains_key(&p.v3_lun) {
                return Err(CopyError::Failover(format!(
                    "LU {} of pair `{}` has no difference tables in group `{group}`",
                    p.v3_lun, p.name
                )));
            }
            if self.pairs.contains_key(&p.name) {
                return Err(CopyError::Exists(p.name.clone()));
            }
        }
        if self.groups.contains_key(group) {
            return Err(CopyError::Exists(group.to_string()));
        }
        self.takeover(group)?;
        let mut out = Vec::new();
        for p in pairs {
            self.untrack(p.v3_lun);
            let sel = &selection[&p.v3_lun];
            self.create(
                PairSpec {
                    name: p.name.clone(),
                    primary: p.v3_lun,
                    secondary: Secondary::Remote(p.v2),
                    mode,
                    group: Some(group.to_string()),
                    options: options.clone(),
                    initial: Some(sel.blocks.clone()),
                },
                geometry,
            )?;
            info!(pair = %p.name, base = ?sel.base, blocks = sel.blocks.count(), "failover pair: differential copy");
            out.push(FailoverCopy {
                pair: p.name.clone(),
                v3_lun: p.v3_lun,
                base: sel.base,
                generation: match sel.generation {
                    generations::Generation::Older => "older",
                    generations::Generation::Newer => "newer",
                },
                blocks: sel.blocks.count(),
                total: sel.blocks.blocks(),
            });
        }
        Ok(out)
    }

    /// The time of the last complete image secondary LU `lun` holds (seed 000 site 2).
    pub fn role_image_time(&self, lun: u16) -> Option<Duration> {
        self.roles.get(&lun).and_then(|r| r.image_time)
    }

    /// Secondary roles held by this array: (lun, pair, group, state).
    pub fn roles(&self) -> Vec<(u16, String, String, Option<PairState>, u64)> {
        self.roles
            .iter()
            .map(|(l, r)| {
                let applied = self.appliers.get(&r.notice.group).map_or(0, |a| a.applied);
                (
                    *l,
                    r.notice.pair.clone(),
                    r.notice.group.clone(),
                    r.notice.state,
                    applied,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
