//! The relay device core (seed 002 emb 1–4: §3.2, §4.1 S120–S129, §4.2 S140–S149,
//! §4.4(d), §7.3 "Relay exchange"): it owns the relay's buffer and non-volatile log and
//! both of its exchanges, upstream (from the primary) and downstream (to the standby).
//!
//! Per record: `handle_command` allocates a region sized from the header (or answers
//! BUSY when the buffer is full), `handle_data` stores bytes in order, and the relay
//! acknowledges upstream ([`RelayAction::AckUpstream`]) as soon as the *whole* record is
//! stored (R4), never later: the upstream acknowledgement does not wait for the standby
//! (seed §7.6 E5, decoupled). Downstream it opens an exchange
//! ([`RelayAction::OpenDownstream`]), waits for `handle_downstream_ready`, sends bytes
//! ([`RelayAction::SendDownstream`]; cut-through may send before the record is complete
//! but never a byte it has not stored, R6) and frees the region only on the standby's
//! acknowledgement (R5). An exchange with no answer within `resend_after` is opened
//! again; the standby ignores the duplicates this may cause.
//!
//! When a record goes downstream is the [`Schedule`]: at once; deferred until a trigger
//! (downstream traffic at or below a threshold, age, a clock time, or the standby's
//! forward request); or hybrid (at once unless downstream traffic is at or above a
//! threshold). Released records go in arrival order. A forward request
//! (`handle_forward_request`) releases everything held and is answered with
//! [`RelayAction::Drained`] once the relay holds nothing.
//!
//! A crash (`crash`) loses the volatile buffer; with a non-volatile log every
//! acknowledged record survives and is forwarded again after the restart (R3).
//!
//! Call order: the `handle_*` inputs and `crash` in any order, each followed by
//! draining `poll_action`; call `handle_timeout` when `poll_timeout` is reached.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{Header, RecordId, RelayError, SourceId};

/// When forwarding of a record may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forwarding {
    /// Emb 1: only once the whole record is stored.
    #[default]
    StoreAndForward,
    /// Emb 2: while it is still arriving, never past the bytes stored.
    CutThrough,
}

/// Whether the relay's buffer survives a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// RAM, as the patent's base relay: a crash loses every record not yet forwarded.
    #[default]
    Volatile,
    /// Every record is in the non-volatile log before it is acknowledged ([0114]).
    NonVolatile,
}

/// Fabric time at which a deferred relay forwards everything it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockTime {
    /// The first such time.
    pub first: Duration,
    /// Then again every `period` (non-zero); `None`: once.
    pub period: Option<Duration>,
}

/// The triggers of deferred forwarding ([0115]); any one releases records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Triggers {
    /// Forward while the downstream traffic is at or below this, bytes/s.
    pub traffic_at_most: Option<u64>,
    /// Forward a record once it has been held this long.
    pub max_age: Option<Duration>,
    /// Forward everything held at these times.
    pub clock: Option<ClockTime>,
}

/// When a stored record goes downstream. The standby's forward request releases
/// everything under any schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// At once (the downstream command goes out with the upstream one, S122).
    #[default]
    Immediate,
    /// Logged and held until a trigger fires ([0114]–[0116]).
    Deferred(Triggers),
    /// At once, but logged while the downstream traffic is at or above
    /// `log_at_traffic` bytes/s ([0117]).
    Hybrid { log_at_traffic: u64 },
}

/// A relay's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    pub forwarding: Forwarding,
    pub durability: Durability,
    pub schedule: Schedule,
    /// Buffer (or log) size; a record that does not fit is answered BUSY (E13:
    /// backpressure, the primary tries again or elsewhere).
    pub capacity_bytes: u64,
    /// A downstream exchange unanswered this long is opened again.
    pub resend_after: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            forwarding: Forwarding::default(),
            durability: Durability::default(),
            schedule: Schedule::default(),
            capacity_bytes: 64 << 20,
            resend_after: Duration::from_millis(100),
        }
    }
}

impl RelayConfig {
    /// Deferred and hybrid forwarding hold acknowledged records for a long time, so they
    /// need the non-volatile log (claim 2).
    pub fn validate(&self) -> Result<(), RelayError> {
        let held = match self.schedule {
            Schedule::Immediate => None,
            Schedule::Deferred(t) => {
                if t.clock.is_some_and(|c| c.period == Some(Duration::ZERO)) {
                    return Err(RelayError::BadConfig(
                        "a clock trigger's period must be non-zero",
                    ));
                }
                Some("deferred")
            }
            Schedule::Hybrid { .. } => Some("hybrid"),
        };
        if let Some(mode) = held
            && self.durability == Durability::Volatile
        {
            return Err(RelayError::NeedsNonVolatile(mode));
        }
        if self.capacity_bytes == 0 || self.resend_after.is_zero() {
            return Err(RelayError::BadConfig(
                "relay capacity and resend interval must be non-zero",
            ));
        }
        Ok(())
    }
}

/// The answer to an upstream command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A region is allocated: send the data (XFER_RDY).
    Ready,
    /// The whole record is already held (a resend): acknowledged again, send no data.
    AlreadyHeld,
    /// No room: BUSY; nothing allocated.
    Busy,
    /// The record's source is fenced (a takeover happened): RESERVATION CONFLICT;
    /// nothing allocated.
    Fenced,
}

/// What the node must do for the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAction {
    /// Good status to the primary: the whole record is in the buffer (or log).
    AckUpstream { id: RecordId },
    /// The write command to the standby; opening an exchange again replaces the old one.
    /// A record of zero bytes is whole with its command: the standby acknowledges it
    /// without asking for data.
    OpenDownstream { header: Header },
    /// Record bytes `offset..offset + data.len()` on the open exchange.
    SendDownstream {
        id: RecordId,
        offset: u64,
        data: Bytes,
    },
    /// Abandon the downstream exchange: the record will never be complete.
    AbortDownstream { id: RecordId },
    /// Answer to the forward request: nothing is held any more.
    Drained,
}

/// One buffer region.
#[derive(Debug, Clone)]
struct Region {
    header: Header,
    /// The bytes stored so far, from offset 0, as they arrived (shared, never copied).
    chunks: Vec<Bytes>,
    /// The store pointer: the chunks' total length.
    stored: u64,
    arrived: Duration,
    down: Down,
}

impl Region {
    fn stored(&self) -> u64 {
        self.stored
    }

    /// Stored bytes `from..to`: a slice of one chunk when they lie in one (no copy),
    /// else joined.
    fn range(&self, from: u64, to: u64) -> Bytes {
        let mut at = 0u64;
        let mut parts = Vec::new();
        for c in &self.chunks {
            let end = at + c.len() as u64;
            if end > from && at < to {
                let a = usize::try_from(from.max(at) - at).unwrap_or(0);
                let b = usize::try_from(to.min(end) - at).unwrap_or(0);
                parts.push(c.slice(a..b));
            }
            at = end;
        }
        match parts.len() {
            1 => parts.pop().unwrap_or_default(),
            _ => {
                let mut b = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                for p in parts {
                    b.extend_from_slice(&p);
                }
                b.freeze()
            }
        }
    }
    fn complete(&self) -> bool {
        self.stored() == self.header.len
    }
}

/// A region's downstream exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Down {
    /// Not released yet.
    Held,
    /// Command sent at `at`, waiting for the standby's ready.
    Opened { at: Duration },
    /// Bytes `..sent` sent (the read pointer), last at `at`.
    Sending { sent: u64, at: Duration },
}

/// A relay device. See the module doc for the call order.
#[derive(Debug, Clone)]
pub struct Relay {
    config: RelayConfig,
    /// Regions by arrival number: the log order.
    regions: BTreeMap<u64, Region>,
    by_id: BTreeMap<RecordId, u64>,
    next_arrival: u64,
    /// Bytes allocated to regions; never above `capacity_bytes`.
    allocated: u64,
    /// Last observed downstream traffic, bytes/s.
    traffic: u64,
    /// Records that arrived at or before this instant are released (clock, request).
    release_before: Option<Duration>,
    next_clock: Option<Duration>,
    /// A forward request waits for [`RelayAction::Drained`].
    drain_requested: bool,
    /// Sources refused after a takeover's fence; their records are neither taken nor
    /// forwarded any more.
    fenced: BTreeSet<SourceId>,
    actions: VecDeque<RelayAction>,
}

impl Relay {
    pub fn new(config: RelayConfig) -> Result<Relay, RelayError> {
        config.validate()?;
        let next_clock = match config.schedule {
            Schedule::Deferred(t) => t.clock.map(|c| c.first),
            _ => None,
        };
        Ok(Relay {
            config,
            regions: BTreeMap::new(),
            by_id: BTreeMap::new(),
            next_arrival: 0,
            allocated: 0,
            traffic: 0,
            release_before: None,
            next_clock,
            drain_requested: false,
            fenced: BTreeSet::new(),
            actions: VecDeque::new(),
        })
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Whether the whole record `id` is in the buffer or log.
    pub fn holds(&self, id: RecordId) -> bool {
        self.region(id).is_some_and(Region::complete)
    }

    /// Bytes allocated to records not yet acknowledged by the standby.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Records held: wholly stored (so acknowledged upstream), not yet acknowledged by
    /// the standby.
    pub fn held_records(&self) -> u64 {
        self.regions.values().filter(|r| r.complete()).count() as u64
    }

    /// Data bytes of the held records.
    pub fn held_bytes(&self) -> u64 {
        self.regions
            .values()
            .filter(|r| r.complete())
            .map(|r| r.header.len)
            .sum()
    }

    /// The fenced sources, in order.
    pub fn fenced(&self) -> impl Iterator<Item = SourceId> + '_ {
        self.fenced.iter().copied()
    }

    pub fn is_fenced(&self, source: SourceId) -> bool {
        self.fenced.contains(&source)
    }

    fn region(&self, id: RecordId) -> Option<&Region> {
        self.by_id.get(&id).and_then(|k| self.regions.get(k))
    }

    fn region_mut(&mut self, id: RecordId) -> Option<&mut Region> {
        self.by_id.get(&id).and_then(|k| self.regions.get_mut(k))
    }

    fn remove(&mut self, id: RecordId) -> Option<Region> {
        let r = self.regions.remove(&self.by_id.remove(&id)?)?;
        self.allocated -= r.header.len;
        Some(r)
    }

    /// The primary's write command for a record (S120/S140).
    pub fn handle_command(&mut self, header: Header, now: Duration) -> Admit {
        if self.fenced.contains(&header.id.source) {
            return Admit::Fenced;
        }
        if self.holds(header.id) {
            self.actions
                .push_back(RelayAction::AckUpstream { id: header.id });
            return Admit::AlreadyHeld;
        }
        // A partial region of an earlier attempt is replaced.
        if self.remove(header.id).is_some() {
            self.actions
                .push_back(RelayAction::AbortDownstream { id: header.id });
        }
        if self.allocated + header.len > self.config.capacity_bytes {
            return Admit::Busy;
        }
        let k = self.next_arrival;
        self.next_arrival += 1;
        self.allocated += header.len;
        self.by_id.insert(header.id, k);
        self.regions.insert(
            k,
            Region {
                header,
                chunks: Vec::new(),
                stored: 0,
                arrived: now,
                down: Down::Held,
            },
        );
        if header.len == 0 {
            self.actions
                .push_back(RelayAction::AckUpstream { id: header.id });
        }
        self.pump(now);
        Admit::Ready
    }

    /// Record bytes from the primary. They arrive in order (FC in-order delivery within
    /// an exchange): bytes not at the store pointer, past the record's end or for no
    /// region are ignored.
    pub fn handle_data(&mut self, id: RecordId, offset: u64, data: &[u8], now: Duration) {
        self.handle_data_bytes(id, offset, Bytes::copy_from_slice(data), now);
    }

    /// [`handle_data`](Self::handle_data) keeping the caller's buffer: the relay holds
    /// and forwards slices of `data`, never a copy.
    pub fn handle_data_bytes(&mut self, id: RecordId, offset: u64, data: Bytes, now: Duration) {
        let forwarding = self.config.forwarding;
        let Some(r) = self.region_mut(id) else {
            return;
        };
        if offset != r.stored() || r.stored() + data.len() as u64 > r.header.len {
            return;
        }
        if data.is_empty() {
            return;
        }
        r.stored += data.len() as u64;
        r.chunks.push(data);
        if r.complete() {
            // With a non-volatile log the record is logged here, before the ack.
            self.actions.push_back(RelayAction::AckUpstream { id });
        }
        let r = self.region_mut(id).expect("region just written");
        if let Some(a) = send_more(r, forwarding, now) {
            self.actions.push_back(a);
        }
        self.pump(now);
    }

    /// The primary abandoned the upstream exchange: an incomplete region is dropped
    /// (a whole record stays: it was acknowledged).
    pub fn handle_upstream_aborted(&mut self, id: RecordId, now: Duration) {
        if self.region(id).is_some_and(|r| !r.complete()) {
            let r = self.remove(id).expect("region exists");
            if r.down != Down::Held {
                self.actions.push_back(RelayAction::AbortDownstream { id });
            }
            self.pump(now);
        }
    }

    /// The standby is ready for the record's data (S127/S145).
    pub fn handle_downstream_ready(&mut self, id: RecordId, now: Duration) {
        let forwarding = self.config.forwarding;
        let Some(r) = self.region_mut(id) else {
            return;
        };
        if let Down::Opened { .. } = r.down {
            r.down = Down::Sending { sent: 0, at: now };
            if let Some(a) = send_more(r, forwarding, now) {
                self.actions.push_back(a);
            }
        }
    }

    /// The standby holds the record (S129/S149): its region is freed.
    pub fn handle_downstream_ack(&mut self, id: RecordId, now: Duration) {
        if self.region(id).is_some_and(|r| r.down != Down::Held) {
            self.remove(id);
            self.pump(now);
        }
    }

    /// The standby refused the record (RESERVATION CONFLICT: it fenced the source at a
    /// takeover): the record will never be applied, so its region is freed and it is
    /// not sent again. Returns whether the relay held it.
    pub fn handle_downstream_refused(&mut self, id: RecordId, now: Duration) -> bool {
        if self.region(id).is_some_and(|r| r.down != Down::Held) {
            self.remove(id);
            self.pump(now);
            return true;
        }
        false
    }

    /// The takeover's fence (seed §7.3 "Takeover"): every later record of `sources` is
    /// refused ([`Admit::Fenced`]) and every record of theirs still held is dropped,
    /// its downstream exchange abandoned. Returns the records dropped, in log order.
    pub fn fence(
        &mut self,
        sources: impl IntoIterator<Item = SourceId>,
        now: Duration,
    ) -> Vec<RecordId> {
        self.fenced.extend(sources);
        let dropped: Vec<(RecordId, bool)> = self
            .regions
            .values()
            .filter(|r| self.fenced.contains(&r.header.id.source))
            .map(|r| (r.header.id, r.down != Down::Held))
            .collect();
        for &(id, open) in &dropped {
            self.remove(id);
            if open {
                self.actions.push_back(RelayAction::AbortDownstream { id });
            }
        }
        self.pump(now);
        dropped.into_iter().map(|(id, _)| id).collect()
    }

    /// The standby's forward request: release everything held now; answered with
    /// [`RelayAction::Drained`] once nothing is held.
    pub fn handle_forward_request(&mut self, now: Duration) {
        self.release_before = Some(now);
        self.drain_requested = true;
        self.pump(now);
    }

    /// The measured downstream traffic (deferred and hybrid schedules).
    pub fn observe_traffic(&mut self, bytes_per_s: u64, now: Duration) {
        self.traffic = bytes_per_s;
        self.pump(now);
    }

    /// Clock triggers, age triggers and downstream resends due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        while let Some(c) = self.next_clock.filter(|c| *c <= now) {
            self.release_before = self.release_before.max(Some(c));
            self.next_clock = match self.config.schedule {
                Schedule::Deferred(Triggers {
                    clock:
                        Some(ClockTime {
                            period: Some(p), ..
                        }),
                    ..
                }) => Some(c + p),
                _ => None,
            };
        }
        let resend = self.config.resend_after;
        for r in self.regions.values_mut() {
            if waiting_since(r).is_some_and(|at| at + resend <= now) {
                r.down = Down::Opened { at: now };
                self.actions
                    .push_back(RelayAction::OpenDownstream { header: r.header });
            }
        }
        self.pump(now);
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let max_age = match self.config.schedule {
            Schedule::Deferred(t) => t.max_age,
            _ => None,
        };
        let resend = self.config.resend_after;
        let per_region = self.regions.values().filter_map(|r| match r.down {
            Down::Held => max_age.filter(|_| r.complete()).map(|a| r.arrived + a),
            _ => waiting_since(r).map(|at| at + resend),
        });
        per_region.chain(self.next_clock).min()
    }

    /// Power loss and restart at `now`. The volatile buffer is lost; the non-volatile
    /// log keeps every whole record (each was acknowledged), and their downstream
    /// exchanges start again. Queued actions not yet taken are lost; so is a fence
    /// unless it is in the log.
    pub fn crash(&mut self, now: Duration) {
        self.actions.clear();
        let keep = self.config.durability == Durability::NonVolatile;
        if !keep {
            self.fenced.clear();
        }
        let lost: Vec<RecordId> = self
            .regions
            .values()
            .filter(|r| !(keep && r.complete()))
            .map(|r| r.header.id)
            .collect();
        for id in lost {
            self.remove(id);
        }
        for r in self.regions.values_mut() {
            r.down = Down::Held;
        }
        self.pump(now);
    }

    pub fn poll_action(&mut self) -> Option<RelayAction> {
        self.actions.pop_front()
    }

    /// Whether the schedule lets held record `r` go downstream now.
    fn may_forward(&self, r: &Region, now: Duration) -> bool {
        let requested = self.release_before.is_some_and(|b| r.arrived <= b) && r.complete();
        requested
            || match self.config.schedule {
                Schedule::Immediate => true,
                Schedule::Hybrid { log_at_traffic } => self.traffic < log_at_traffic,
                Schedule::Deferred(t) => {
                    r.complete()
                        && (t.traffic_at_most.is_some_and(|x| self.traffic <= x)
                            || t.max_age.is_some_and(|a| r.arrived + a <= now))
                }
            }
    }

    /// Opens the downstream exchange of every released record, in arrival order, and
    /// answers a forward request once nothing is held.
    fn pump(&mut self, now: Duration) {
        let go: Vec<u64> = self
            .regions
            .iter()
            .filter(|(_, r)| r.down == Down::Held && self.may_forward(r, now))
            .map(|(k, _)| *k)
            .collect();
        for k in go {
            let r = self.regions.get_mut(&k).expect("region listed");
            r.down = Down::Opened { at: now };
            self.actions
                .push_back(RelayAction::OpenDownstream { header: r.header });
        }
        if self.drain_requested && self.regions.is_empty() {
            self.drain_requested = false;
            self.actions.push_back(RelayAction::Drained);
        }
    }
}

/// Since when region `r` waits for the standby (its ready, or its acknowledgement of
/// the whole record); `None` while it waits for nothing or for upstream bytes.
fn waiting_since(r: &Region) -> Option<Duration> {
    match r.down {
        Down::Held => None,
        Down::Opened { at } => Some(at),
        Down::Sending { sent, at } => (sent == r.header.len).then_some(at),
    }
}

/// The next bytes of `r` the standby may get: up to the store pointer in cut-through,
/// the whole record once stored in store-and-forward.
fn send_more(r: &mut Region, forwarding: Forwarding, now: Duration) -> Option<RelayAction> {
    let Down::Sending { sent, .. } = r.down else {
        return None;
    };
    let upto = match forwarding {
        Forwarding::CutThrough => r.stored(),
        Forwarding::StoreAndForward if r.complete() => r.stored(),
        Forwarding::StoreAndForward => sent,
    };
    if upto == sent {
        return None;
    }
    r.down = Down::Sending {
        sent: upto,
        at: now,
    };
    Some(RelayAction::SendDownstream {
        id: r.header.id,
        offset: sent,
        data: r.range(sent, upto),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, SourceId};
    use super::*;

    const T0: Duration = Duration::ZERO;

    fn id(seq: u64) -> RecordId {
        RecordId {
            source: SourceId(1),
            seq,
        }
    }

    fn header(seq: u64, len: u64) -> Header {
        Header {
            id: id(seq),
            kind: Kind::Write { lun: 0, lba: seq },
            len,
        }
    }

    fn relay(forwarding: Forwarding, durability: Durability, schedule: Schedule) -> Relay {
        Relay::new(RelayConfig {
            forwarding,
            durability,
            schedule,
            capacity_bytes: 64,
            resend_after: Duration::from_millis(10),
        })
        .unwrap()
    }

    fn actions(r: &mut Relay) -> Vec<RelayAction> {
        std::iter::from_fn(|| r.poll_action()).collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn store_and_forward_acks_only_the_whole_record_and_frees_on_the_standby_ack() {
        let mut r = relay(
            Forwarding::StoreAndForward,
            Durability::Volatile,
            Schedule::Immediate,
        );
        assert_eq!(r.handle_command(header(1, 8), T0), Admit::Ready);
        // S122: the downstream command goes out before the data arrives.
        assert_eq!(
            actions(&mut r),
            vec![RelayAction::OpenDownstream {
                header: header(1, 8)
            }]
        );
        r.handle_downstream_ready(id(1), T0);
        r.handle_data(id(1), 0, &[1; 4], T0);
        assert!(
            actions(&mut r).is_empty(),
            "no ack and no data before the whole record"
        );
        r.handle_data(id(1), 4, &[2; 4], T0);
        let a = actions(&mut r);
        assert_eq!(a[0], RelayAction::AckUpstream { id: id(1) });
        assert!(
            matches!(&a[1], RelayAction::SendDownstream { offset: 0, data, .. } if data.len() == 8)
        );
        assert!(r.holds(id(1)));
        r.handle_downstream_ack(id(1), T0);
        assert!(r.is_empty());
        assert_eq!(r.allocated_bytes(), 0);
    }

    #[test]
    fn cut_through_forwards_stored_bytes_only() {
        let mut r = relay(
            Forwarding::CutThrough,
            Durability::Volatile,
            Schedule::Immediate,
        );
        r.handle_command(header(1, 8), T0);
        r.handle_data(id(1), 0, &[1; 3], T0);
        r.handle_downstream_ready(id(1), T0);
        let a = actions(&mut r);
        assert!(
            matches!(&a[1], RelayAction::SendDownstream { offset: 0, data, .. } if data.len() == 3)
        );
        // Out-of-order bytes are not stored, so not sent.
        r.handle_data(id(1), 5, &[9; 3], T0);
        assert!(actions(&mut r).is_empty());
        r.handle_data(id(1), 3, &[2; 5], T0);
        let a = actions(&mut r);
        assert_eq!(a[0], RelayAction::AckUpstream { id: id(1) });
        assert!(
            matches!(&a[1], RelayAction::SendDownstream { offset: 3, data, .. } if data.len() == 5)
        );
    }

    #[test]
    fn a_full_buffer_answers_busy() {
        let mut r = relay(
            Forwarding::StoreAndForward,
            Durability::Volatile,
            Schedule::Immediate,
        );
        assert_eq!(r.handle_command(header(1, 60), T0), Admit::Ready);
        assert_eq!(r.handle_command(header(2, 8), T0), Admit::Busy);
        assert!(!r.holds(id(2)));
    }

    #[test]
    fn a_crash_loses_the_volatile_buffer_and_keeps_the_log() {
        for (durability, kept) in [
            (Durability::Volatile, false),
            (Durability::NonVolatile, true),
        ] {
            let mut r = relay(Forwarding::StoreAndForward, durability, Schedule::Immediate);
            r.handle_command(header(1, 4), T0);
            r.handle_data(id(1), 0, &[1; 4], T0);
            r.handle_command(header(2, 4), T0);
            r.handle_data(id(2), 0, &[1; 2], T0);
            actions(&mut r);
            r.crash(ms(1));
            assert_eq!(r.holds(id(1)), kept);
            assert_eq!(r.is_empty(), !kept, "a partial record never survives");
            // The survivor is forwarded again.
            assert_eq!(
                actions(&mut r),
                if kept {
                    vec![RelayAction::OpenDownstream {
                        header: header(1, 4),
                    }]
                } else {
                    vec![]
                }
            );
        }
    }

    /// A record recovered from the log while the standby is unreachable: its exchange
    /// is opened again every resend interval, however long that lasts, and the first
    /// acknowledgement frees it (the relay node's side of this is
    /// `tests/relay_node.rs`).
    #[test]
    fn a_recovered_record_is_resent_until_the_standby_answers() {
        let mut r = relay(
            Forwarding::StoreAndForward,
            Durability::NonVolatile,
            Schedule::Immediate,
        );
        stored(&mut r, 1, T0);
        actions(&mut r);
        r.crash(ms(3));
        assert_eq!(opened(&actions(&mut r)), vec![1]);
        // Unreachable: the node gets no ready, or sends and hears nothing.
        let mut now = ms(3);
        for round in 0..5 {
            assert_eq!(r.poll_timeout(), Some(now + ms(10)), "round {round}");
            now += ms(10);
            r.handle_timeout(now);
            assert_eq!(opened(&actions(&mut r)), vec![1]);
            if round % 2 == 1 {
                r.handle_downstream_ready(id(1), now);
                assert!(matches!(
                    actions(&mut r).as_slice(),
                    [RelayAction::SendDownstream { offset: 0, .. }]
                ));
            }
        }
        // Reachable again: an acknowledgement (of any of the exchanges) frees it.
        r.handle_downstream_ack(id(1), now + ms(1));
        assert!(r.is_empty());
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn deferred_and_hybrid_need_the_log() {
        let c = RelayConfig {
            schedule: Schedule::Hybrid { log_at_traffic: 1 },
            ..RelayConfig::default()
        };
        assert_eq!(c.validate(), Err(RelayError::NeedsNonVolatile("hybrid")));
        assert!(
            RelayConfig {
                durability: Durability::NonVolatile,
                ..c
            }
            .validate()
            .is_ok()
        );
    }

    fn stored(r: &mut Relay, seq: u64, now: Duration) {
        r.handle_command(header(seq, 2), now);
        r.handle_data(id(seq), 0, &[7; 2], now);
    }

    fn opened(a: &[RelayAction]) -> Vec<u64> {
        a.iter()
            .filter_map(|a| match a {
                RelayAction::OpenDownstream { header } => Some(header.id.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn deferred_triggers_release_records() {
        let nv = Durability::NonVolatile;
        // Traffic.
        let mut r = relay(
            Forwarding::StoreAndForward,
            nv,
            Schedule::Deferred(Triggers {
                traffic_at_most: Some(100),
                ..Triggers::default()
            }),
        );
        r.observe_traffic(500, T0);
        stored(&mut r, 1, T0);
        assert!(opened(&actions(&mut r)).is_empty());
        r.observe_traffic(100, ms(1));
        assert_eq!(opened(&actions(&mut r)), vec![1]);
        // Age: the oldest first.
        let mut r = relay(
            Forwarding::StoreAndForward,
            nv,
            Schedule::Deferred(Triggers {
                max_age: Some(ms(10)),
                ..Triggers::default()
            }),
        );
        stored(&mut r, 1, T0);
        stored(&mut r, 2, ms(5));
        assert_eq!(r.poll_timeout(), Some(ms(10)));
        r.handle_timeout(ms(10));
        assert_eq!(opened(&actions(&mut r)), vec![1]);
        assert_eq!(r.poll_timeout(), Some(ms(15)));
        // Clock: everything held at that time, then every period.
        let mut r = relay(
            Forwarding::StoreAndForward,
            nv,
            Schedule::Deferred(Triggers {
                clock: Some(ClockTime {
                    first: ms(50),
                    period: Some(ms(100)),
                }),
                ..Triggers::default()
            }),
        );
        stored(&mut r, 1, T0);
        stored(&mut r, 2, ms(20));
        assert_eq!(r.poll_timeout(), Some(ms(50)));
        r.handle_timeout(ms(50));
        assert_eq!(opened(&actions(&mut r)), vec![1, 2]);
        for seq in [1, 2] {
            r.handle_downstream_ack(id(seq), ms(51));
        }
        stored(&mut r, 3, ms(60));
        assert!(opened(&actions(&mut r)).is_empty());
        r.handle_timeout(ms(150));
        assert_eq!(opened(&actions(&mut r)), vec![3]);
    }

    #[test]
    fn a_forward_request_drains_the_whole_log() {
        let mut r = relay(
            Forwarding::StoreAndForward,
            Durability::NonVolatile,
            Schedule::Deferred(Triggers::default()),
        );
        stored(&mut r, 1, T0);
        stored(&mut r, 2, T0);
        assert!(opened(&actions(&mut r)).is_empty());
        r.handle_forward_request(ms(1));
        assert_eq!(opened(&actions(&mut r)), vec![1, 2]);
        for seq in [1, 2] {
            r.handle_downstream_ready(id(seq), ms(2));
            r.handle_downstream_ack(id(seq), ms(2));
        }
        assert_eq!(actions(&mut r).last(), Some(&RelayAction::Drained));
    }

    #[test]
    fn hybrid_logs_while_the_downstream_is_busy() {
        let mut r = relay(
            Forwarding::StoreAndForward,
            Durability::NonVolatile,
            Schedule::Hybrid {
                log_at_traffic: 1000,
            },
        );
        stored(&mut r, 1, T0);
        assert_eq!(opened(&actions(&mut r)), vec![1]);
        r.observe_traffic(1000, T0);
        stored(&mut r, 2, T0);
        stored(&mut r, 3, T0);
        assert!(opened(&actions(&mut r)).is_empty());
        r.observe_traffic(999, ms(1));
        assert_eq!(opened(&actions(&mut r)), vec![2, 3]);
    }

    #[test]
    fn an_unanswered_exchange_is_opened_again() {
        let mut r = relay(
            Forwarding::StoreAndForward,
            Durability::Volatile,
            Schedule::Immediate,
        );
        stored(&mut r, 1, T0);
        actions(&mut r);
        assert_eq!(r.poll_timeout(), Some(ms(10)));
        r.handle_timeout(ms(10));
        assert_eq!(opened(&actions(&mut r)), vec![1]);
        r.handle_downstream_ready(id(1), ms(11));
        actions(&mut r);
        // Waiting for the acknowledgement of the whole record.
        assert_eq!(r.poll_timeout(), Some(ms(21)));
    }

    #[test]
    fn an_aborted_upstream_exchange_drops_its_partial_region() {
        let mut r = relay(
            Forwarding::CutThrough,
            Durability::NonVolatile,
            Schedule::Immediate,
        );
        r.handle_command(header(1, 4), T0);
        r.handle_data(id(1), 0, &[1; 2], T0);
        actions(&mut r);
        r.handle_upstream_aborted(id(1), T0);
        assert_eq!(
            actions(&mut r),
            vec![RelayAction::AbortDownstream { id: id(1) }]
        );
        assert!(r.is_empty());
        // A resent command after a relay restart re-acknowledges a held record.
        stored(&mut r, 2, T0);
        actions(&mut r);
        assert_eq!(r.handle_command(header(2, 2), T0), Admit::AlreadyHeld);
        assert_eq!(
            actions(&mut r),
            vec![RelayAction::AckUpstream { id: id(2) }]
        );
    }

    #[test]
    fn a_fence_refuses_later_records_and_drops_held_ones() {
        let mut r = relay(
            Forwarding::StoreAndForward,
            Durability::NonVolatile,
            Schedule::Immediate,
        );
        stored(&mut r, 1, T0);
        let other = Header {
            id: RecordId {
                source: SourceId(2),
                seq: 1,
            },
            kind: Kind::Write { lun: 0, lba: 0 },
            len: 2,
        };
        r.handle_command(other, T0);
        r.handle_data(other.id, 0, &[1; 2], T0);
        actions(&mut r);
        assert_eq!(r.held_records(), 2);
        assert_eq!(r.fence([SourceId(1)], ms(1)), vec![id(1)]);
        assert_eq!(
            actions(&mut r),
            vec![RelayAction::AbortDownstream { id: id(1) }]
        );
        assert!(r.is_fenced(SourceId(1)) && !r.is_fenced(SourceId(2)));
        assert_eq!((r.held_records(), r.held_bytes()), (1, 2));
        assert_eq!(r.handle_command(header(2, 2), ms(2)), Admit::Fenced);
        assert!(actions(&mut r).is_empty(), "a fenced record is not kept");
        // The log keeps the fence across a crash; RAM does not.
        r.crash(ms(3));
        assert_eq!(r.fenced().collect::<Vec<_>>(), vec![SourceId(1)]);
        let mut v = relay(
            Forwarding::StoreAndForward,
            Durability::Volatile,
            Schedule::Immediate,
        );
        v.fence([SourceId(1)], T0);
        v.crash(ms(1));
        assert!(!v.is_fenced(SourceId(1)));
    }

    #[test]
    fn a_refused_record_is_dropped_not_resent() {
        let mut r = relay(
            Forwarding::StoreAndForward,
            Durability::Volatile,
            Schedule::Immediate,
        );
        stored(&mut r, 1, T0);
        actions(&mut r);
        r.handle_downstream_ready(id(1), T0);
        actions(&mut r);
        assert!(r.handle_downstream_refused(id(1), ms(1)));
        assert!(r.is_empty());
        assert_eq!(r.poll_timeout(), None, "nothing to resend");
        assert!(!r.handle_downstream_refused(id(1), ms(2)));
    }

    #[test]
    fn held_bytes_are_the_callers_never_copied() {
        for forwarding in [Forwarding::StoreAndForward, Forwarding::CutThrough] {
            let mut r = relay(forwarding, Durability::Volatile, Schedule::Immediate);
            let data = Bytes::from(vec![3u8; 8]);
            r.handle_command(header(1, 8), T0);
            r.handle_downstream_ready(id(1), T0);
            r.handle_data_bytes(id(1), 0, data.slice(..5), T0);
            r.handle_data_bytes(id(1), 5, data.slice(5..), T0);
            let sent: Vec<Bytes> = actions(&mut r)
                .into_iter()
                .filter_map(|a| match a {
                    RelayAction::SendDownstream { data, .. } => Some(data),
                    _ => None,
                })
                .collect();
            let joined: Vec<u8> = sent.iter().flat_map(|b| b.iter().copied()).collect();
            assert_eq!(joined, vec![3u8; 8]);
            if forwarding == Forwarding::CutThrough {
                // Each piece went as it arrived: slices of the caller's buffer.
                assert_eq!(sent[0].as_ptr(), data.as_ptr());
                assert_eq!(sent[1].as_ptr(), data[5..].as_ptr());
            }
            // A resend after the exchange is opened again: the whole record, joined
            // from its two pieces, or one slice when it arrived whole.
            r.handle_timeout(ms(100));
            r.handle_downstream_ready(id(1), ms(100));
            let again = actions(&mut r);
            assert!(
                again.iter().any(|a| matches!(a, RelayAction::SendDownstream { offset: 0, data, .. } if data.len() == 8))
            );
        }
        let mut r = relay(
            Forwarding::StoreAndForward,
            Durability::Volatile,
            Schedule::Immediate,
        );
        let data = Bytes::from(vec![9u8; 8]);
        r.handle_command(header(1, 8), T0);
        r.handle_data_bytes(id(1), 0, data.clone(), T0);
        r.handle_downstream_ready(id(1), T0);
        let sent = actions(&mut r).into_iter().find_map(|a| match a {
            RelayAction::SendDownstream { data, .. } => Some(data),
            _ => None,
        });
        assert_eq!(sent.map(|b| b.as_ptr()), Some(data.as_ptr()));
    }
}
