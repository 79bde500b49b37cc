//! The remote array's side of the protected recovery copy (seed 001 §4.4 steps 501–520,
//! §4.5 steps 751–757, §4.6 variant B, §7.3 "remote recovery session"): the watchdog T,
//! the "recovery in progress" flag, the recovery-reached set, the save areas (cache 114
//! up to the threshold, then parity-group and spare tracks: save-area bitmap 118) with
//! the saved-data table (queue 119), and the rollback of every unreached unit.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tracing::{info, warn};

use super::{
    PairDef, RecoveryMessage, RemoteConfig, RollbackCause, RollbackReport, SaveRowKind,
    StartRefusal, Tracks, Update, UserConditions,
};
use crate::bitmap::DiffBitmap;

/// How the remote keeps its consistent image recoverable (claim 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Variant A (operation 1): save each target track's old data before its first
    /// overwrite; a rollback writes it back.
    SaveOld,
    /// Variant B (operation 2): hold the new data aside, the target untouched; it is
    /// applied when its unit reaches (or at the completion) and discarded by a rollback.
    HoldNew,
}

/// How the remote's last session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetOutcome {
    Completed,
    RolledBack(RollbackReport),
}

/// Where one track's saved (A) or held (B) data lives (queue 119's fields 952–954).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Cache 114.
    Cache,
    /// Track `track` of save row `row` (a parity group's parity or a spare disk).
    Row { row: usize, track: u64 },
}

/// One session in progress (flag ON, steps 503–520).
#[derive(Debug, Clone)]
struct Active {
    session: u64,
    /// Watchdog expiry: start + T (502).
    deadline: Duration,
    /// Agreed at the start instruction.
    conditions: UserConditions,
    /// R-DEV → consistency unit.
    unit_of: BTreeMap<u16, u16>,
    /// R-DEVs reported reached (411).
    reached: BTreeSet<u16>,
    /// Units whose every R-DEV reached: save area released, never rolled back.
    released: BTreeSet<u16>,
    /// Highest write applied; a write at or below it is a resend.
    last_seq: u64,
    /// The saved-data table (119): (R-DEV, track) → where its data is. One entry per
    /// track; every entry owns its slot.
    saved: BTreeMap<(u16, u64), Slot>,
    /// Data of the [`Slot::Cache`] entries.
    cache: BTreeMap<(u16, u64), Bytes>,
    /// Data on save-row tracks, by (row, track).
    rows: BTreeMap<(usize, u64), Bytes>,
    /// The save-area bitmap (118): one per configured row, bit = track in use.
    in_use: Vec<DiffBitmap>,
}

#[derive(Debug, Clone)]
enum State {
    Idle,
    Active(Box<Active>),
    /// The last session, remembered to answer its late messages.
    Ended {
        session: u64,
        outcome: TargetOutcome,
    },
}

/// The remote array's side of the protected recovery copy; one session at a time.
///
/// Call order: feed every message from the master to
/// [`handle_message`](Self::handle_message) with the array's devices; send every
/// [`poll_message`](Self::poll_message) back; arm [`poll_timeout`](Self::poll_timeout)
/// (the watchdog) and call [`handle_timeout`](Self::handle_timeout) when it passes. A
/// message handled at or after the deadline first runs the timeout.
///
/// A write is saved (or held) before it is acknowledged. Saved data goes to the cache
/// while fewer than the threshold's tracks are there, then to the first free track of
/// the usable parity rows, then of the usable spare rows.
#[derive(Debug, Clone)]
pub struct RecoveryTarget {
    /// Variant A or B, fixed for the array.
    protection: Protection,
    /// What the master is told at step 403; `save_rows` index the bitmap 118 rows.
    config: RemoteConfig,
    /// User conditions set on this array, if any.
    conditions: Option<UserConditions>,
    /// Row indices in the order they are tried: parity rows, then spare rows.
    row_order: Vec<usize>,
    /// Idle, one session active, or the last one ended.
    state: State,
    /// To send to the master, in order.
    messages: VecDeque<RecoveryMessage>,
}

impl RecoveryTarget {
    pub fn new(
        protection: Protection,
        config: RemoteConfig,
        conditions: Option<UserConditions>,
    ) -> RecoveryTarget {
        let mut row_order: Vec<usize> = (0..config.save_rows.len()).collect();
        row_order.sort_by_key(|&r| config.save_rows[r].kind);
        RecoveryTarget {
            protection,
            config,
            conditions,
            row_order,
            state: State::Idle,
            messages: VecDeque::new(),
        }
    }

    // ---- getters ----------------------------------------------------------------

    /// The "recovery copy in progress" flag.
    pub fn in_progress(&self) -> bool {
        matches!(self.state, State::Active(_))
    }

    /// The last session that ended, and how.
    pub fn last_outcome(&self) -> Option<(u64, &TargetOutcome)> {
        match &self.state {
            State::Ended { session, outcome } => Some((*session, outcome)),
            _ => None,
        }
    }

    /// Parity groups (indices into [`RemoteConfig::save_rows`]) holding saved data now:
    /// they have no RAID5 protection and need their parity rebuilt afterwards.
    pub fn parity_rows_in_use(&self) -> Vec<usize> {
        let State::Active(a) = &self.state else {
            return Vec::new();
        };
        (0..self.config.save_rows.len())
            .filter(|&r| {
                self.config.save_rows[r].kind == SaveRowKind::Parity && !a.in_use[r].is_clear()
            })
            .collect()
    }

    /// Tracks saved (A) or held (B) now: (in cache, on parity or spare tracks).
    pub fn saved_tracks(&self) -> (u64, u64) {
        let State::Active(a) = &self.state else {
            return (0, 0);
        };
        (a.cache.len() as u64, a.rows.len() as u64)
    }

    /// The open session: its number, the writes it applied (resends counted once) and
    /// the R-DEVs reported reached; `None` while no session is open.
    pub fn session_progress(&self) -> Option<(u64, u64, Vec<u16>)> {
        let State::Active(a) = &self.state else {
            return None;
        };
        Some((a.session, a.last_seq, a.reached.iter().copied().collect()))
    }

    /// Variant A or B.
    pub fn protection(&self) -> Protection {
        self.protection
    }

    // ---- outputs ----------------------------------------------------------------

    pub fn poll_message(&mut self) -> Option<RecoveryMessage> {
        self.messages.pop_front()
    }

    /// The watchdog's expiry.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match &self.state {
            State::Active(a) => Some(a.deadline),
            _ => None,
        }
    }

    // ---- inputs -----------------------------------------------------------------

    /// Rolls back every unreached unit if T has expired (515–519).
    pub fn handle_timeout(&mut self, vols: &mut dyn Tracks, now: Duration) {
        if let State::Active(a) = &self.state
            && now >= a.deadline
        {
            self.roll_back(RollbackCause::Timeout, vols);
        }
    }

    /// A message from the master; `vols` are this array's devices.
    pub fn handle_message(&mut self, msg: RecoveryMessage, vols: &mut dyn Tracks, now: Duration) {
        self.handle_timeout(vols, now);
        match msg {
            RecoveryMessage::ConfigRequest { session } => {
                self.messages.push_back(RecoveryMessage::Config {
                    session,
                    config: self.config.clone(),
                    conditions: self.conditions,
                });
            }
            RecoveryMessage::Start {
                session,
                allowed,
                conditions,
                pairs,
            } => self.start(session, now + allowed, conditions, &pairs),
            RecoveryMessage::Write {
                session,
                seq,
                r_dev,
                track,
                update,
            } => self.write(session, seq, r_dev, track, &update, vols),
            RecoveryMessage::Reached { session, r_dev } => {
                let State::Active(a) = &mut self.state else {
                    return;
                };
                if a.session != session || !a.reached.insert(r_dev) {
                    return;
                }
                if let Some(&unit) = a.unit_of.get(&r_dev)
                    && a.unit_of
                        .iter()
                        .all(|(r, u)| *u != unit || a.reached.contains(r))
                {
                    self.release(unit, vols);
                }
            }
            RecoveryMessage::Complete { session } => self.complete(session, vols),
            _ => {}
        }
    }

    // ---- internals --------------------------------------------------------------

    /// Steps 501–504.
    fn start(
        &mut self,
        session: u64,
        deadline: Duration,
        conditions: UserConditions,
        pairs: &[PairDef],
    ) {
        let answer = match &self.state {
            State::Active(a) if a.session == session => RecoveryMessage::Ready { session },
            State::Active(a) => RecoveryMessage::StartRefused {
                session,
                reason: StartRefusal::Busy { session: a.session },
            },
            // A session number is never reused: repeat how it ended.
            State::Ended {
                session: s,
                outcome: TargetOutcome::RolledBack(report),
            } if *s == session => RecoveryMessage::RolledBack {
                session,
                report: report.clone(),
            },
            State::Ended { session: s, .. } if *s == session => return,
            _ => match self.conditions {
                Some(mine) if mine != conditions => RecoveryMessage::StartRefused {
                    session,
                    reason: StartRefusal::ConditionsDisagree { remote: mine },
                },
                _ => {
                    self.state = State::Active(Box::new(Active {
                        session,
                        deadline,
                        conditions,
                        unit_of: pairs.iter().map(|p| (p.r_dev, p.unit)).collect(),
                        reached: BTreeSet::new(),
                        released: BTreeSet::new(),
                        last_seq: 0,
                        saved: BTreeMap::new(),
                        cache: BTreeMap::new(),
                        rows: BTreeMap::new(),
                        in_use: self
                            .config
                            .save_rows
                            .iter()
                            .map(|r| DiffBitmap::new(r.tracks))
                            .collect(),
                    }));
                    RecoveryMessage::Ready { session }
                }
            },
        };
        self.messages.push_back(answer);
    }

    /// Steps 506–512 / 751–757 (A) or their variant-B form.
    fn write(
        &mut self,
        session: u64,
        seq: u64,
        r_dev: u16,
        track: u64,
        update: &Update,
        vols: &mut dyn Tracks,
    ) {
        let a = match &mut self.state {
            State::Active(a) if a.session == session => a,
            State::Ended {
                session: s,
                outcome: TargetOutcome::RolledBack(report),
            } if *s == session => {
                let report = report.clone();
                self.messages
                    .push_back(RecoveryMessage::RolledBack { session, report });
                return;
            }
            _ => return,
        };
        if seq <= a.last_seq {
            self.messages
                .push_back(RecoveryMessage::WriteEnd { session, seq });
            return;
        }
        // A device outside the session cannot be rolled back: never written.
        let Some(unit) = a.unit_of.get(&r_dev) else {
            return;
        };
        let key = (r_dev, track);
        if a.released.contains(unit) {
            vols.write_track(r_dev, track, update.apply(&vols.read_track(r_dev, track)));
        } else {
            let held = a.saved.get(&key).copied();
            let slot = match held {
                Some(slot) => slot,
                None => match self.allocate() {
                    Some(slot) => slot,
                    None => return self.roll_back(RollbackCause::SaveAreaExhausted, vols),
                },
            };
            let State::Active(a) = &mut self.state else {
                return;
            };
            a.saved.insert(key, slot);
            let current = vols.read_track(r_dev, track);
            match self.protection {
                Protection::SaveOld => {
                    if held.is_none() {
                        a.put(key, slot, current.clone());
                    }
                    vols.write_track(r_dev, track, update.apply(&current));
                }
                Protection::HoldNew => {
                    let base = if held.is_some() {
                        a.get(key, slot)
                    } else {
                        current
                    };
                    a.put(key, slot, update.apply(&base));
                }
            }
        }
        let State::Active(a) = &mut self.state else {
            return;
        };
        a.last_seq = seq;
        self.messages
            .push_back(RecoveryMessage::WriteEnd { session, seq });
    }

    /// A free save slot (509/753): the cache below the threshold, else the first free
    /// track of a usable row.
    fn allocate(&mut self) -> Option<Slot> {
        let State::Active(a) = &mut self.state else {
            return None;
        };
        if (a.cache.len() as u64) < self.config.cache_threshold_tracks(&a.conditions) {
            return Some(Slot::Cache);
        }
        for &row in &self.row_order {
            if !self.config.save_rows[row].allowed(&a.conditions) {
                continue;
            }
            let bm = &mut a.in_use[row];
            if let Some(track) = (0..bm.blocks()).find(|t| !bm.get(*t)) {
                bm.set_range(track, 1);
                return Some(Slot::Row { row, track });
            }
        }
        None
    }

    /// Every R-DEV of `unit` reached: A drops its saved data, B applies its held data.
    fn release(&mut self, unit: u16, vols: &mut dyn Tracks) {
        let protection = self.protection;
        let State::Active(a) = &mut self.state else {
            return;
        };
        if !a.released.insert(unit) {
            return;
        }
        let keys: Vec<(u16, u64)> = a
            .saved
            .keys()
            .filter(|(r, _)| a.unit_of.get(r) == Some(&unit))
            .copied()
            .collect();
        for key in keys {
            let data = a.take(key);
            if protection == Protection::HoldNew {
                vols.write_track(key.0, key.1, data);
            }
        }
    }

    /// Step 520: the completion, or its refusal after a rollback.
    fn complete(&mut self, session: u64, vols: &mut dyn Tracks) {
        match &self.state {
            State::Active(a) if a.session == session => {
                let units: BTreeSet<u16> = a.unit_of.values().copied().collect();
                for unit in units {
                    self.release(unit, vols);
                }
                self.state = State::Ended {
                    session,
                    outcome: TargetOutcome::Completed,
                };
                info!(session, "recovery copy complete");
                self.messages
                    .push_back(RecoveryMessage::CompleteAck { session });
            }
            State::Ended {
                session: s,
                outcome,
            } if *s == session => {
                let answer = match outcome {
                    TargetOutcome::Completed => RecoveryMessage::CompleteAck { session },
                    TargetOutcome::RolledBack(report) => RecoveryMessage::CompleteRefused {
                        session,
                        report: report.clone(),
                    },
                };
                self.messages.push_back(answer);
            }
            _ => {}
        }
    }

    /// Steps 516–519: every unit not released returns to its image at the start (A
    /// writes the saved data back, B discards the held data); reported to the master.
    fn roll_back(&mut self, cause: RollbackCause, vols: &mut dyn Tracks) {
        let protection = self.protection;
        let State::Active(a) = &mut self.state else {
            return;
        };
        let keys: Vec<(u16, u64)> = a.saved.keys().copied().collect();
        for key in keys {
            let data = a.take(key);
            if protection == Protection::SaveOld {
                vols.write_track(key.0, key.1, data);
            }
        }
        let rolled_back = a
            .unit_of
            .iter()
            .filter(|(_, u)| !a.released.contains(u))
            .map(|(r, _)| *r)
            .collect();
        let report = RollbackReport { cause, rolled_back };
        let session = a.session;
        warn!(session, ?report, "recovery copy rolled back");
        self.messages.push_back(RecoveryMessage::RolledBack {
            session,
            report: report.clone(),
        });
        self.state = State::Ended {
            session,
            outcome: TargetOutcome::RolledBack(report),
        };
    }
}

impl Active {
    fn put(&mut self, key: (u16, u64), slot: Slot, data: Bytes) {
        match slot {
            Slot::Cache => self.cache.insert(key, data),
            Slot::Row { row, track } => self.rows.insert((row, track), data),
        };
    }

    /// Reads from the slot the table records (518 from cache, 519 from a save row).
    fn get(&self, key: (u16, u64), slot: Slot) -> Bytes {
        match slot {
            Slot::Cache => self.cache.get(&key),
            Slot::Row { row, track } => self.rows.get(&(row, track)),
        }
        .cloned()
        .expect("every table entry owns its slot's data")
    }

    /// Removes a table entry and frees its slot; its data.
    fn take(&mut self, key: (u16, u64)) -> Bytes {
        let slot = self
            .saved
            .remove(&key)
            .expect("taken keys come from the table");
        let data = self.get(key, slot);
        match slot {
            Slot::Cache => {
                self.cache.remove(&key);
            }
            Slot::Row { row, track } => {
                self.rows.remove(&(row, track));
                self.in_use[row].clear_range(track, 1);
            }
        }
        data
    }
}

#[cfg(test)]
impl RecoveryTarget {
    /// Invariants 6–8 against `start`, the devices at the start instruction: saved data
    /// is the start image (save once, before the overwrite); a track of an unreleased
    /// unit differs from `start` only if saved (A) and never (B); the cache holds at
    /// most the threshold, rows are used only where allowed, every used track has
    /// exactly one table entry.
    pub(super) fn audit(
        &self,
        start: &BTreeMap<(u16, u64), Bytes>,
        vols: &BTreeMap<(u16, u64), Bytes>,
    ) -> Result<(), String> {
        let State::Active(a) = &self.state else {
            return Ok(());
        };
        let threshold = self.config.cache_threshold_tracks(&a.conditions);
        if a.cache.len() as u64 > threshold {
            return Err(format!("{} tracks in cache > {threshold}", a.cache.len()));
        }
        let mut rows = BTreeSet::new();
        for (key, slot) in &a.saved {
            match slot {
                Slot::Cache if !a.cache.contains_key(key) => {
                    return Err(format!("{key:?}: no cache data"));
                }
                Slot::Row { row, track } => {
                    if !self.config.save_rows[*row].allowed(&a.conditions) {
                        return Err(format!("{key:?} saved on forbidden row {row}"));
                    }
                    if !a.in_use[*row].get(*track) || !rows.insert((*row, *track)) {
                        return Err(format!("{key:?}: row {row} track {track} misaccounted"));
                    }
                }
                Slot::Cache => {}
            }
            if self.protection == Protection::SaveOld
                && a.get(*key, *slot) != start.read_track(key.0, key.1)
            {
                return Err(format!("{key:?}: saved data is not the start image"));
            }
        }
        let used: u64 = a.in_use.iter().map(DiffBitmap::count).sum();
        if used != rows.len() as u64 || a.rows.len() != rows.len() {
            return Err(format!("{used} row tracks in use, {} entries", rows.len()));
        }
        if a.cache.len() + rows.len() != a.saved.len() {
            return Err("data without a table entry".into());
        }
        for key in start.keys().chain(vols.keys()) {
            let Some(unit) = a.unit_of.get(&key.0) else {
                continue;
            };
            if a.released.contains(unit)
                || vols.read_track(key.0, key.1) == start.read_track(key.0, key.1)
            {
                continue;
            }
            if self.protection == Protection::HoldNew || !a.saved.contains_key(key) {
                return Err(format!("{key:?} overwritten unprotected"));
            }
        }
        Ok(())
    }
}
