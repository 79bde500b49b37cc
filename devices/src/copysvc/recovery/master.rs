//! The master array's recovery-copy session (seed 001 §4.3 steps 401–413, §4.7 and
//! claim 3 for the time-ordered variant, §7.3 "master recovery session"): it owns the
//! suspended pairs' difference bitmaps (107) and time-series queues (108) for the
//! session, the configuration handshake and n, the choice of the next track to copy,
//! the per-pair reached reports, the completion, and the reaction to a rollback.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use thiserror::Error;
use tracing::{info, warn};

use super::{
    PairDef, RecoveryMessage, RollbackCause, RollbackReport, StartRefusal, TimeSeriesQueue, Tracks,
    Update, UserConditions,
};
use crate::bitmap::DiffBitmap;

/// A suspended pair handed to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspendedPair {
    /// The M-DEV (this array's device).
    pub dev: u16,
    /// The R-DEV (the remote array's device).
    pub r_dev: u16,
    /// Its consistency unit: its own number for per-device consistency, or a group's.
    pub unit: u16,
    /// One bit per track changed since the suspension (bitmap 107's row).
    pub diff: DiffBitmap,
}

/// The session's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// T, the most time the remote allows for the whole session (step 402).
    pub allowed: Duration,
    /// The user conditions set on the master, if any (§7.6 item 15).
    pub conditions: Option<UserConditions>,
    /// n set by hand; `None`: computed from the remote's configuration.
    pub concurrency: Option<usize>,
    /// How long the master waits for the answer to a request before sending it again.
    pub retry_interval: Duration,
    /// Sessions tried in all, the first one included (at least 1).
    pub max_attempts: u32,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            allowed: Duration::from_secs(60),
            conditions: None,
            concurrency: None,
            retry_interval: Duration::from_secs(1),
            max_attempts: 3,
        }
    }
}

/// What was agreed at step 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The user conditions both sides hold for the session.
    pub conditions: UserConditions,
    /// n: the most pairs whose units are being recovered at once.
    pub concurrency: usize,
    /// Tracks the remote can save or hold under the conditions.
    pub save_capacity_tracks: u64,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The remote acknowledged the completion: every pair is a mirror again.
    Completed,
    /// The last attempt was rolled back and no retry follows (save area exhausted, or
    /// [`RecoveryConfig::max_attempts`] used up). The pairs are suspended, their bitmaps
    /// ([`RecoveryCopy::diff`]) hold every track still to copy.
    RolledBack(RollbackCause),
    /// The remote refused to start.
    Refused(StartRefusal),
    /// Both sides hold user conditions and they differ; nothing was started.
    ConditionsDisagree {
        master: UserConditions,
        remote: UserConditions,
    },
}

/// Where the session is (§7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Configuration requested (403).
    Configuring,
    /// Start sent, waiting for ready (405–406).
    Starting,
    /// Copying tracks (407–412).
    Copying,
    /// Completion sent, waiting for its acknowledgement (413).
    Completing,
    Ended(Outcome),
}

/// A pair's progress within the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairPhase {
    /// Its unit is not admitted yet (step 412 will).
    Waiting,
    /// Recovering.
    Copying,
    /// Its reached report was sent (411).
    Reached,
}

/// What the node does with a host write to an M-DEV while the session exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostWrite {
    /// Write the M-DEV, acknowledge the host, then call [`RecoveryCopy::after_write`].
    Proceed,
    /// Hold the write (the completion is on its way); ask again when the phase changes.
    Hold,
    /// Not the session's: the device is not in it, or the session has ended.
    Outside,
}

/// What the node may want to show or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryEvent {
    /// The reached report of M-DEV `dev` was sent.
    Reached {
        dev: u16,
    },
    /// The remote rolled back; its tracks are marked again. A retry follows unless
    /// [`RecoveryEvent::Ended`] comes next.
    RolledBack {
        session: u64,
        report: RollbackReport,
    },
    Ended(Outcome),
}

/// Refusals of a session's inputs; nothing was started.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryError {
    #[error("pairs: a recovery copy needs at least one pair")]
    NoPairs,
    #[error("pairs: M-DEV {dev} appears twice")]
    DuplicateDevice { dev: u16 },
    #[error("pairs: R-DEV {r_dev} appears twice")]
    DuplicateRemoteDevice { r_dev: u16 },
    #[error("queues: a queue is given for unit {unit}, which has no pair")]
    UnknownUnit { unit: u16 },
    #[error("queues: unit {unit} queues track {track} of M-DEV {dev}, not one of its tracks")]
    ForeignQueueNode { unit: u16, dev: u16, track: u64 },
    #[error("config: n and max_attempts must be at least 1")]
    Zero,
}

#[derive(Debug, Clone)]
struct Pair {
    /// M-DEV, R-DEV and consistency unit, as given.
    dev: u16,
    r_dev: u16,
    unit: u16,
    /// Tracks whose current content the remote may lack (bitmap 107). Cleared when the
    /// track is sent, set again by a host write.
    diff: DiffBitmap,
    /// Tracks written to the remote in this attempt: marked again if it rolls back.
    sent: DiffBitmap,
    /// Waiting → Copying → Reached; back to Waiting for a retry.
    phase: PairPhase,
}

#[derive(Debug, Clone)]
struct Unit {
    /// Indices into `pairs`, ascending M-DEV.
    pairs: Vec<usize>,
    /// In time order: every update of the unit (when `ordered`); otherwise only the
    /// writes to its reached pairs, in the order they happened.
    queue: TimeSeriesQueue,
    /// Copied oldest-first from `queue` rather than in address order.
    ordered: bool,
    /// Step 412 let it in; it stays in until the attempt ends.
    admitted: bool,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// The write's sequence number, echoed by its write-end.
    seq: u64,
    /// Index into `pairs`, and the track written.
    pair: usize,
    track: u64,
}

/// The master's side of one protected recovery copy: one session per remote array.
///
/// Call order: [`RecoveryCopy::start`] builds it and queues the configuration request.
/// Then, until [`RecoveryCopy::phase`] is [`Phase::Ended`]: send every
/// [`poll_message`](Self::poll_message) to the remote; feed the remote's answers to
/// [`handle_message`](Self::handle_message); arm [`poll_timeout`](Self::poll_timeout) and
/// call [`handle_timeout`](Self::handle_timeout) when it passes; for each host write to
/// a device, ask [`before_write`](Self::before_write) and, on
/// [`HostWrite::Proceed`], write the M-DEV, then call [`after_write`](Self::after_write).
/// [`poll_event`](Self::poll_event) tells what happened.
///
/// One write is in flight at a time (steps 408–409). Units are admitted whole while at
/// most n pairs are active (a unit larger than n is admitted alone). A unit is copied
/// oldest-first from its time-series queue when that queue covers its bitmap, else in
/// address order. A pair reaches when its bitmap is clear and nothing of it is in
/// flight; the completion follows the last pair and the last queued write.
#[derive(Debug, Clone)]
pub struct RecoveryCopy {
    /// As given; `conditions` is this side's own setting, not the agreed one.
    config: RecoveryConfig,
    /// The current attempt's session number; each retry takes the next.
    session: u64,
    /// Attempts made, the current one included.
    attempt: u32,
    phase: Phase,
    /// Set by the remote's configuration answer, cleared by a retry.
    plan: Option<Plan>,
    /// Ascending (unit, M-DEV).
    pairs: Vec<Pair>,
    /// M-DEV → index into `pairs`.
    by_dev: BTreeMap<u16, usize>,
    /// By unit number: the admission order.
    units: BTreeMap<u16, Unit>,
    /// Writes sent in this attempt.
    seq: u64,
    /// The one write awaiting its write-end (steps 408–409).
    in_flight: Option<InFlight>,
    /// The request awaiting its answer and when it was last sent.
    outstanding: Option<(RecoveryMessage, Duration)>,
    /// To send to the remote, in order.
    messages: VecDeque<RecoveryMessage>,
    /// Not yet polled by the node.
    events: VecDeque<RecoveryEvent>,
    /// Requests sent again because their answer was overdue, all attempts.
    resent: u64,
}

impl RecoveryCopy {
    /// Builds the session for `pairs` (step 401) and queues the configuration request
    /// (403). `queues` are the time-series queues kept during the suspension, by unit;
    /// their tracks are marked in the bitmaps (invariant 15). `session` numbers the first
    /// attempt; pick one the remote has not seen.
    pub fn start(
        session: u64,
        mut pairs: Vec<SuspendedPair>,
        mut queues: BTreeMap<u16, TimeSeriesQueue>,
        config: RecoveryConfig,
        now: Duration,
    ) -> Result<RecoveryCopy, RecoveryError> {
        if pairs.is_empty() {
            return Err(RecoveryError::NoPairs);
        }
        if config.concurrency == Some(0) || config.max_attempts == 0 {
            return Err(RecoveryError::Zero);
        }
        pairs.sort_by_key(|p| (p.unit, p.dev));
        let mut by_dev = BTreeMap::new();
        let mut r_devs = BTreeMap::new();
        let mut units: BTreeMap<u16, Unit> = BTreeMap::new();
        for (i, p) in pairs.iter().enumerate() {
            if by_dev.insert(p.dev, i).is_some() {
                return Err(RecoveryError::DuplicateDevice { dev: p.dev });
            }
            if r_devs.insert(p.r_dev, i).is_some() {
                return Err(RecoveryError::DuplicateRemoteDevice { r_dev: p.r_dev });
            }
            units
                .entry(p.unit)
                .or_insert_with(|| Unit {
                    pairs: Vec::new(),
                    queue: TimeSeriesQueue::new(false),
                    ordered: false,
                    admitted: false,
                })
                .pairs
                .push(i);
        }
        for (unit, q) in &queues {
            if !units.contains_key(unit) {
                return Err(RecoveryError::UnknownUnit { unit: *unit });
            }
            for n in q.nodes() {
                match by_dev.get(&n.dev) {
                    Some(&i) if pairs[i].unit == *unit && n.track < pairs[i].diff.blocks() => {
                        pairs[i].diff.set_range(n.track, 1);
                    }
                    _ => {
                        return Err(RecoveryError::ForeignQueueNode {
                            unit: *unit,
                            dev: n.dev,
                            track: n.track,
                        });
                    }
                }
            }
        }
        for (id, u) in &mut units {
            let Some(q) = queues.remove(id) else {
                continue;
            };
            // Time order only if the queue accounts for every marked track (item 10).
            let covered = u.pairs.iter().all(|&i| {
                let p = &pairs[i];
                let mut at = 0;
                while let Some((t, _)) = p.diff.next_run(at, 1) {
                    if !q.holds(p.dev, t) {
                        return false;
                    }
                    at = t + 1;
                }
                true
            });
            if covered {
                u.queue = q;
                u.ordered = true;
            }
        }
        let pairs = pairs
            .into_iter()
            .map(|p| Pair {
                sent: DiffBitmap::new(p.diff.blocks()),
                dev: p.dev,
                r_dev: p.r_dev,
                unit: p.unit,
                diff: p.diff,
                phase: PairPhase::Waiting,
            })
            .collect();
        let mut s = RecoveryCopy {
            config,
            session,
            attempt: 1,
            phase: Phase::Configuring,
            plan: None,
            pairs,
            by_dev,
            units,
            seq: 0,
            in_flight: None,
            outstanding: None,
            resent: 0,
            messages: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.request(RecoveryMessage::ConfigRequest { session }, now);
        Ok(s)
    }

    // ---- getters ----------------------------------------------------------------

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Requests sent again because their answer was overdue (a lost message or a
    /// lost answer), over every attempt.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Tracks this attempt has still to write to the remote (marked, not yet sent).
    pub fn tracks_left(&self) -> u64 {
        self.pairs.iter().map(|p| p.diff.count()).sum()
    }

    /// The current attempt's session number.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Attempts made, the current one included.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// What step 404 agreed, once the remote's configuration is known.
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    pub fn pair_phase(&self, dev: u16) -> Option<PairPhase> {
        self.by_dev.get(&dev).map(|&i| self.pairs[i].phase)
    }

    /// The tracks of M-DEV `dev` the remote may still lack.
    pub fn diff(&self, dev: u16) -> Option<&DiffBitmap> {
        self.by_dev.get(&dev).map(|&i| &self.pairs[i].diff)
    }

    /// A unit's time-series queue (the updates not yet sent).
    pub fn queue(&self, unit: u16) -> Option<&TimeSeriesQueue> {
        self.units.get(&unit).map(|u| &u.queue)
    }

    /// Whether `unit` is copied oldest-first from its queue.
    pub fn is_ordered(&self, unit: u16) -> Option<bool> {
        self.units.get(&unit).map(|u| u.ordered)
    }

    /// Pairs of admitted units that have not all reached (at most n, or one unit).
    pub fn active_pairs(&self) -> usize {
        self.units
            .values()
            .filter(|u| u.admitted && !self.unit_reached(u))
            .map(|u| u.pairs.len())
            .sum()
    }

    // ---- outputs ----------------------------------------------------------------

    pub fn poll_message(&mut self) -> Option<RecoveryMessage> {
        self.messages.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<RecoveryEvent> {
        self.events.pop_front()
    }

    /// When the outstanding request is sent again.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.outstanding
            .as_ref()
            .map(|(_, at)| *at + self.config.retry_interval)
    }

    // ---- inputs -----------------------------------------------------------------

    /// Sends the outstanding request again if its answer is overdue.
    pub fn handle_timeout(&mut self, now: Duration) {
        if let Some((msg, at)) = &mut self.outstanding
            && now >= *at + self.config.retry_interval
        {
            *at = now;
            self.messages.push_back(msg.clone());
            self.resent += 1;
        }
    }

    /// A message from the remote. `vols` are this array's devices (read to copy tracks).
    pub fn handle_message(&mut self, msg: RecoveryMessage, vols: &dyn Tracks, now: Duration) {
        if msg.session() != self.session {
            return;
        }
        match (&self.phase, msg) {
            (
                Phase::Configuring,
                RecoveryMessage::Config {
                    config, conditions, ..
                },
            ) => {
                let conditions = match (self.config.conditions, conditions) {
                    (Some(master), Some(remote)) if master != remote => {
                        return self.end(Outcome::ConditionsDisagree { master, remote });
                    }
                    (mine, theirs) => mine.or(theirs).unwrap_or_default(),
                };
                self.plan = Some(Plan {
                    conditions,
                    concurrency: self
                        .config
                        .concurrency
                        .unwrap_or_else(|| config.concurrency(&conditions)),
                    save_capacity_tracks: config.save_capacity_tracks(&conditions),
                });
                self.phase = Phase::Starting;
                let pairs = self
                    .pairs
                    .iter()
                    .map(|p| PairDef {
                        r_dev: p.r_dev,
                        unit: p.unit,
                    })
                    .collect();
                self.request(
                    RecoveryMessage::Start {
                        session: self.session,
                        allowed: self.config.allowed,
                        conditions,
                        pairs,
                    },
                    now,
                );
            }
            (Phase::Starting, RecoveryMessage::Ready { .. }) => {
                self.outstanding = None;
                self.phase = Phase::Copying;
                self.pump(vols, now);
            }
            (Phase::Starting, RecoveryMessage::StartRefused { reason, .. }) => {
                self.end(Outcome::Refused(reason));
            }
            (Phase::Copying, RecoveryMessage::WriteEnd { seq, .. })
                if self.in_flight.is_some_and(|f| f.seq == seq) =>
            {
                self.in_flight = None;
                self.outstanding = None;
                self.pump(vols, now);
            }
            (Phase::Completing, RecoveryMessage::CompleteAck { .. }) => {
                self.end(Outcome::Completed);
            }
            (
                Phase::Starting | Phase::Copying | Phase::Completing,
                RecoveryMessage::RolledBack { report, .. }
                | RecoveryMessage::CompleteRefused { report, .. },
            ) => self.rolled_back(report, now),
            _ => {}
        }
    }

    /// Whether a host write to M-DEV `dev` may go ahead now.
    pub fn before_write(&self, dev: u16) -> HostWrite {
        match self.phase {
            _ if !self.by_dev.contains_key(&dev) => HostWrite::Outside,
            Phase::Ended(_) => HostWrite::Outside,
            Phase::Completing => HostWrite::Hold,
            _ => HostWrite::Proceed,
        }
    }

    /// A host write `update` to `track` of M-DEV `dev`, already on the M-DEV
    /// (§7.6 item 4): marks the bitmap, and queues the update if the unit is copied in
    /// time order or the pair has reached.
    ///
    /// # Panics
    /// If the track lies beyond the device (a node bug).
    pub fn after_write(
        &mut self,
        dev: u16,
        track: u64,
        update: Update,
        vols: &dyn Tracks,
        now: Duration,
    ) {
        if self.before_write(dev) != HostWrite::Proceed {
            return;
        }
        let i = self.by_dev[&dev];
        let p = &mut self.pairs[i];
        assert!(track < p.diff.blocks(), "track {track} beyond M-DEV {dev}");
        p.diff.set_range(track, 1);
        let u = self
            .units
            .get_mut(&p.unit)
            .expect("every pair has its unit");
        if u.ordered || p.phase == PairPhase::Reached {
            u.queue.record(dev, track, update);
        }
        self.pump(vols, now);
    }

    // ---- internals --------------------------------------------------------------

    fn request(&mut self, msg: RecoveryMessage, now: Duration) {
        self.messages.push_back(msg.clone());
        self.outstanding = Some((msg, now));
    }

    fn end(&mut self, outcome: Outcome) {
        info!(
            session = self.session,
            attempt = self.attempt,
            ?outcome,
            "recovery copy ended"
        );
        self.outstanding = None;
        self.in_flight = None;
        self.phase = Phase::Ended(outcome.clone());
        self.events.push_back(RecoveryEvent::Ended(outcome));
    }

    fn unit_reached(&self, u: &Unit) -> bool {
        u.pairs
            .iter()
            .all(|&i| self.pairs[i].phase == PairPhase::Reached)
    }

    /// Advances the copy while nothing is in flight: admits units (412), sends reached
    /// reports (411), then the next write (407–408) or the completion (413).
    fn pump(&mut self, vols: &dyn Tracks, now: Duration) {
        if self.phase != Phase::Copying || self.in_flight.is_some() {
            return;
        }
        while self.admit() | self.report_reached() {}
        if let Some((i, track, update)) = self.next_write(vols) {
            let p = &mut self.pairs[i];
            if !self.units[&p.unit].queue.holds(p.dev, track) {
                p.diff.clear_range(track, 1);
            }
            p.sent.set_range(track, 1);
            self.seq += 1;
            self.in_flight = Some(InFlight {
                seq: self.seq,
                pair: i,
                track,
            });
            let msg = RecoveryMessage::Write {
                session: self.session,
                seq: self.seq,
                r_dev: p.r_dev,
                track,
                update,
            };
            self.request(msg, now);
        } else if self.pairs.iter().all(|p| p.phase == PairPhase::Reached)
            && self.units.values().all(|u| u.queue.is_empty())
        {
            self.phase = Phase::Completing;
            self.request(
                RecoveryMessage::Complete {
                    session: self.session,
                },
                now,
            );
        }
    }

    /// Admits waiting units in order while they fit in n; true if any was.
    fn admit(&mut self) -> bool {
        let n = self.plan.map_or(1, |p| p.concurrency);
        let mut active = self.active_pairs();
        let mut any = false;
        let ids: Vec<u16> = self.units.keys().copied().collect();
        for id in ids {
            let u = &self.units[&id];
            if u.admitted {
                continue;
            }
            if active > 0 && active + u.pairs.len() > n {
                break;
            }
            active += u.pairs.len();
            for &i in &u.pairs {
                self.pairs[i].phase = PairPhase::Copying;
            }
            if let Some(u) = self.units.get_mut(&id) {
                u.admitted = true;
            }
            any = true;
        }
        any
    }

    /// Reports every copying pair with nothing left; true if any was.
    fn report_reached(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.pairs.len() {
            let p = &mut self.pairs[i];
            if p.phase != PairPhase::Copying || !p.diff.is_clear() {
                continue;
            }
            p.phase = PairPhase::Reached;
            let (dev, r_dev, unit) = (p.dev, p.r_dev, p.unit);
            self.messages.push_back(RecoveryMessage::Reached {
                session: self.session,
                r_dev,
            });
            self.events.push_back(RecoveryEvent::Reached { dev });
            if self.unit_reached(&self.units[&unit])
                && let Some(u) = self.units.get_mut(&unit)
            {
                // Its writes are mirror writes now: strictly in order (item 9).
                u.queue.coalesce = false;
            }
            any = true;
        }
        any
    }

    /// The next write: the oldest queued update of an admitted unit, else (address
    /// order) the lowest marked track of a copying pair.
    fn next_write(&mut self, vols: &dyn Tracks) -> Option<(usize, u64, Update)> {
        for u in self.units.values_mut().filter(|u| u.admitted) {
            if let Some(n) = u.queue.nodes.pop_front() {
                return Some((self.by_dev[&n.dev], n.track, n.update));
            }
            if u.ordered {
                continue;
            }
            for &i in &u.pairs {
                let p = &self.pairs[i];
                if p.phase != PairPhase::Copying {
                    continue;
                }
                if let Some((t, _)) = p.diff.next_run(0, 1) {
                    return Some((i, t, Update::Format(vols.read_track(p.dev, t))));
                }
            }
        }
        None
    }

    /// The remote rolled back (or refused a late completion): mark again what it lost,
    /// then retry in address order or end.
    fn rolled_back(&mut self, report: RollbackReport, now: Duration) {
        for p in &mut self.pairs {
            if report.rolled_back.contains(&p.r_dev) {
                let mut at = 0;
                while let Some((t, n)) = p.sent.next_run(at, u64::MAX) {
                    p.diff.set_range(t, n);
                    at = t + n;
                }
            }
        }
        // Whether the remote applied it is unknown.
        if let Some(f) = self.in_flight.take() {
            self.pairs[f.pair].diff.set_range(f.track, 1);
        }
        let cause = report.cause;
        warn!(
            session = self.session,
            ?report,
            "recovery copy rolled back by the remote"
        );
        self.events.push_back(RecoveryEvent::RolledBack {
            session: self.session,
            report,
        });
        if cause == RollbackCause::SaveAreaExhausted || self.attempt >= self.config.max_attempts {
            return self.end(Outcome::RolledBack(cause));
        }
        self.attempt += 1;
        self.session += 1;
        self.seq = 0;
        self.plan = None;
        for p in &mut self.pairs {
            p.sent = DiffBitmap::new(p.diff.blocks());
            p.phase = PairPhase::Waiting;
        }
        // The bitmaps cover the queues (invariant 15): retry in address order.
        for u in self.units.values_mut() {
            u.queue = TimeSeriesQueue::new(false);
            u.ordered = false;
            u.admitted = false;
        }
        self.phase = Phase::Configuring;
        self.request(
            RecoveryMessage::ConfigRequest {
                session: self.session,
            },
            now,
        );
    }
}
