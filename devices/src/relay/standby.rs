//! The standby storage's side of relay replication (seed 002 §4.1 "Standby storage 12",
//! §4.4(c) duplicate mode, §4.7 emb 7, §4.8 emb 8, §4.9 emb 9, §4.11 "Primary site
//! disaster"; invariants R12, R13, D1, D4, H1–H3; §7.6 E3, E4, E6, E9, E19, E20).
//!
//! It owns the order in which records land and the takeover. Records of each source are
//! applied strictly in sequence order, whatever path and order they arrive by: a record
//! behind a gap is held, one already received is answered as a duplicate and not applied
//! again (so duplicate mode and resends apply each record exactly once). How an in-order
//! record lands is the [`Consistency`]:
//! - [`Consistency::Immediate`] (emb 1–6): each write is applied at once.
//! - [`Consistency::Epochs`] (emb 7): writes wait in the sync buffer ([`EpochBuffer`])
//!   and are applied together, in sequence order, when the restart point that closes
//!   their epoch lands; the patent's sync ID is the number of restart points before a
//!   write and its issue ID the sequence number, and the in-order applier already waits
//!   for every earlier write and reflect (D4, D5).
//! - [`Consistency::Snapshots`] (emb 8): writes are applied at once; at each restart
//!   point the node creates the snapshot ([`super::SnapshotTable::create`]).
//!
//! A restart point carries the application's state (emb 9). The standby remembers the
//! last one its image is at, and resumes the application from exactly that one, so image
//! and state always match (E19: the state travels in the ordered stream as the restart
//! point itself, so it is never ahead of the image nor behind it; one snapshot
//! generation is enough, E18).
//!
//! Takeover (E4, E20): `take_over` asks every reachable relay to forward all it holds
//! and waits until each has answered that it is drained, or until `drain_timeout`; then
//! it fences the primaries and every relay, discards what is held behind a gap, discards
//! the open epoch or rolls back to the last snapshot, and tells the node which restart
//! point each source resumes from. From then on every record is refused (H3).
//!
//! Call order: `receive` for each whole record; `take_over` once; `relay_drained` and
//! `handle_timeout` (at `poll_timeout`) during the drain; drain `poll_action` after each
//! call and apply the media actions in the order given.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::epoch::EpochBuffer;
use super::{Kind, Record, RecordId, RelayId, RestartPoint, SourceId};
use crate::copysvc::JournalApplier;

/// How in-order records land on the standby's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Every write at once (emb 1–6); restart points are passed on but not resumed from.
    #[default]
    Immediate,
    /// Per epoch, at restart points; the open epoch is discarded at takeover (emb 7).
    Epochs,
    /// At once, with a snapshot at each restart point, rolled back at takeover (emb 8).
    Snapshots,
}

/// The standby's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyConfig {
    pub consistency: Consistency,
    /// The sources replicating here: each is fenced and resumed at takeover, even one
    /// never heard from.
    pub sources: Vec<SourceId>,
    /// Every relay that may send here: all are fenced at takeover.
    pub relays: Vec<RelayId>,
    /// The longest a takeover waits for the reachable relays to drain.
    pub drain_timeout: Duration,
}

/// The standby's answer to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Received (applied, or held behind a gap): good status.
    Received,
    /// Received before: good status, nothing applied again.
    Duplicate,
    /// After takeover: refused.
    Fenced,
}

/// What the node must do for the standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandbyAction {
    /// Write `data` at block `lba` of LU `lun` (through the snapshot table under
    /// [`Consistency::Snapshots`]).
    Write {
        id: RecordId,
        lun: u16,
        lba: u64,
        data: bytes::Bytes,
    },
    /// The image of `source` is now at restart point `point`: under
    /// [`Consistency::Snapshots`], create the snapshot of its LUs now.
    RestartPoint { source: SourceId, point: u64 },
    /// Takeover: ask `relay` to forward everything it holds.
    ForwardRequest { relay: RelayId },
    /// Takeover: cut these primaries and relays off the standby's LUs.
    Fence {
        sources: Vec<SourceId>,
        relays: Vec<RelayId>,
    },
    /// Takeover: restore the snapshot of `source`'s LUs.
    Rollback { source: SourceId },
    /// Takeover done for `source`: its image is at `point` (always `None` under
    /// [`Consistency::Immediate`]); resume the application from its state.
    Resume {
        source: SourceId,
        point: Option<RestartPoint>,
    },
}

/// One source's stream.
#[derive(Debug, Clone, Default)]
struct Stream {
    order: JournalApplier<Record>,
    /// Writes of the open epoch (emb 7).
    epoch: EpochBuffer,
    /// The last restart point that landed.
    point: Option<RestartPoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Replicating,
    Draining {
        waiting: BTreeSet<RelayId>,
        deadline: Duration,
    },
    Active,
}

/// The standby storage. See the module doc for the call order.
#[derive(Debug, Clone)]
pub struct Standby {
    config: StandbyConfig,
    streams: BTreeMap<SourceId, Stream>,
    phase: Phase,
    actions: VecDeque<StandbyAction>,
}

impl Standby {
    pub fn new(config: StandbyConfig) -> Standby {
        Standby {
            streams: config
                .sources
                .iter()
                .map(|s| (*s, Stream::default()))
                .collect(),
            config,
            phase: Phase::Replicating,
            actions: VecDeque::new(),
        }
    }

    /// The last sequence number of `source` applied (landed in order).
    pub fn applied(&self, source: SourceId) -> u64 {
        self.streams.get(&source).map_or(0, |s| s.order.applied)
    }

    /// Whether record `id` was received (applied, or held behind a gap).
    pub fn has(&self, id: RecordId) -> bool {
        self.streams
            .get(&id.source)
            .is_some_and(|s| s.order.has(id.seq))
    }

    /// Records of `source` received behind a gap (dropped at takeover).
    pub fn held(&self, source: SourceId) -> usize {
        self.streams.get(&source).map_or(0, |s| s.order.held())
    }

    /// The last restart point of `source` that landed.
    pub fn restart_point(&self, source: SourceId) -> Option<&RestartPoint> {
        self.streams.get(&source).and_then(|s| s.point.as_ref())
    }

    /// Whether a takeover is draining the relays.
    pub fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
    }

    /// A resync copy brought `source`'s image up to date outside the stream: its next
    /// record is `seq + 1`. Whatever was held or in the open epoch is superseded by the
    /// copy. Ignored after takeover, and when `seq` is not ahead of what was applied.
    pub fn resync_after(&mut self, source: SourceId, seq: u64) {
        if self.phase != Phase::Replicating {
            return;
        }
        let stream = self.streams.entry(source).or_default();
        if seq > stream.order.applied {
            stream.order = JournalApplier::after(seq);
            stream.epoch.discard();
        }
    }

    /// Whether the takeover is done: the standby is the active storage.
    pub fn is_active(&self) -> bool {
        self.phase == Phase::Active
    }

    /// A whole record, from a relay or from the primary directly.
    pub fn receive(&mut self, record: Record) -> Reply {
        if self.phase == Phase::Active {
            return Reply::Fenced;
        }
        let id = record.id();
        let consistency = self.config.consistency;
        let stream = self.streams.entry(id.source).or_default();
        if stream.order.has(id.seq) {
            return Reply::Duplicate;
        }
        for (_, r) in stream.order.receive(id.seq, record) {
            match r.header.kind {
                Kind::Write { lun, lba } => {
                    if consistency == Consistency::Epochs {
                        stream.epoch.hold(r);
                    } else {
                        self.actions.push_back(write(r.id(), lun, lba, r.data));
                    }
                }
                Kind::RestartPoint { point } => {
                    for w in stream.epoch.commit() {
                        if let Kind::Write { lun, lba } = w.header.kind {
                            self.actions.push_back(write(w.id(), lun, lba, w.data));
                        }
                    }
                    stream.point = Some(RestartPoint {
                        point,
                        app_state: r.data,
                    });
                    self.actions.push_back(StandbyAction::RestartPoint {
                        source: id.source,
                        point,
                    });
                }
            }
        }
        Reply::Received
    }

    /// Starts the takeover: drains the `reachable` relays, then fences. Ignored unless
    /// still replicating.
    pub fn take_over(&mut self, reachable: &[RelayId], now: Duration) {
        if self.phase != Phase::Replicating {
            return;
        }
        for relay in reachable {
            self.actions
                .push_back(StandbyAction::ForwardRequest { relay: *relay });
        }
        self.phase = Phase::Draining {
            waiting: reachable.iter().copied().collect(),
            deadline: now + self.config.drain_timeout,
        };
        self.maybe_finish(now);
    }

    /// `relay` answered the forward request: it holds nothing more.
    pub fn relay_drained(&mut self, relay: RelayId, now: Duration) {
        if let Phase::Draining { waiting, .. } = &mut self.phase {
            waiting.remove(&relay);
        }
        self.maybe_finish(now);
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        self.maybe_finish(now);
    }

    /// The drain deadline, while draining.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match &self.phase {
            Phase::Draining { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    pub fn poll_action(&mut self) -> Option<StandbyAction> {
        self.actions.pop_front()
    }

    fn maybe_finish(&mut self, now: Duration) {
        let Phase::Draining { waiting, deadline } = &self.phase else {
            return;
        };
        if !waiting.is_empty() && now < *deadline {
            return;
        }
        self.phase = Phase::Active;
        self.actions.push_back(StandbyAction::Fence {
            sources: self.streams.keys().copied().collect(),
            relays: self.config.relays.clone(),
        });
        for (source, s) in &mut self.streams {
            s.order.takeover();
            s.epoch.discard();
            let point = match self.config.consistency {
                Consistency::Immediate => None,
                Consistency::Epochs => s.point.clone(),
                Consistency::Snapshots => {
                    self.actions
                        .push_back(StandbyAction::Rollback { source: *source });
                    s.point.clone()
                }
            };
            self.actions.push_back(StandbyAction::Resume {
                source: *source,
                point,
            });
        }
    }
}

fn write(id: RecordId, lun: u16, lba: u64, data: bytes::Bytes) -> StandbyAction {
    StandbyAction::Write { id, lun, lba, data }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const S: SourceId = SourceId(1);

    fn w(seq: u64, lba: u64, v: u8) -> Record {
        Record::new(
            RecordId { source: S, seq },
            Kind::Write { lun: 0, lba },
            Bytes::from(vec![v; 4]),
        )
    }

    fn rp(seq: u64, point: u64) -> Record {
        Record::new(
            RecordId { source: S, seq },
            Kind::RestartPoint { point },
            Bytes::from(format!("state {point}")),
        )
    }

    fn standby(consistency: Consistency) -> Standby {
        Standby::new(StandbyConfig {
            consistency,
            sources: vec![S],
            relays: vec![RelayId(1), RelayId(2)],
            drain_timeout: Duration::from_secs(1),
        })
    }

    fn actions(s: &mut Standby) -> Vec<StandbyAction> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn written(a: &[StandbyAction]) -> Vec<u64> {
        a.iter()
            .filter_map(|a| match a {
                StandbyAction::Write { lba, .. } => Some(*lba),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn records_apply_in_sequence_order_and_duplicates_once() {
        let mut s = standby(Consistency::Immediate);
        assert_eq!(s.receive(w(2, 20, 2)), Reply::Received);
        assert!(actions(&mut s).is_empty(), "held behind the gap");
        assert_eq!(s.receive(w(2, 20, 2)), Reply::Duplicate);
        assert_eq!(s.receive(w(1, 10, 1)), Reply::Received);
        assert_eq!(written(&actions(&mut s)), vec![10, 20]);
        assert_eq!(s.receive(w(1, 10, 1)), Reply::Duplicate);
        assert!(actions(&mut s).is_empty());
        assert_eq!(s.applied(S), 2);
    }

    #[test]
    fn epochs_commit_at_restart_points_and_are_discarded_at_takeover() {
        let mut s = standby(Consistency::Epochs);
        s.receive(w(1, 10, 1));
        s.receive(w(2, 11, 1));
        assert!(actions(&mut s).is_empty(), "in the sync buffer");
        s.receive(rp(3, 1));
        let a = actions(&mut s);
        assert_eq!(written(&a), vec![10, 11]);
        assert_eq!(
            a.last(),
            Some(&StandbyAction::RestartPoint {
                source: S,
                point: 1
            })
        );
        s.receive(w(4, 12, 1));
        s.take_over(&[], Duration::ZERO);
        let a = actions(&mut s);
        assert!(written(&a).is_empty(), "the open epoch is discarded");
        assert_eq!(
            a.last(),
            Some(&StandbyAction::Resume {
                source: S,
                point: Some(RestartPoint {
                    point: 1,
                    app_state: Bytes::from_static(b"state 1")
                })
            })
        );
    }

    #[test]
    fn a_reflect_waits_for_the_data_of_its_epoch() {
        // D5: the restart point arrives before a write of its epoch.
        let mut s = standby(Consistency::Epochs);
        s.receive(w(1, 10, 1));
        s.receive(rp(3, 1));
        assert!(actions(&mut s).is_empty());
        s.receive(w(2, 11, 1));
        assert_eq!(written(&actions(&mut s)), vec![10, 11]);
    }

    #[test]
    fn snapshots_apply_at_once_and_roll_back_at_takeover() {
        let mut s = standby(Consistency::Snapshots);
        s.receive(w(1, 10, 1));
        s.receive(rp(2, 1));
        s.receive(w(3, 11, 1));
        let a = actions(&mut s);
        assert_eq!(written(&a), vec![10, 11]);
        assert_eq!(
            a[1],
            StandbyAction::RestartPoint {
                source: S,
                point: 1
            }
        );
        s.take_over(&[], Duration::ZERO);
        let a = actions(&mut s);
        assert_eq!(a[1], StandbyAction::Rollback { source: S });
        assert!(matches!(&a[2], StandbyAction::Resume { point: Some(p), .. } if p.point == 1));
    }

    #[test]
    fn takeover_drains_the_reachable_relays_then_fences() {
        let mut s = standby(Consistency::Immediate);
        s.receive(w(1, 10, 1));
        actions(&mut s);
        let t0 = Duration::from_secs(5);
        s.take_over(&[RelayId(1), RelayId(2)], t0);
        assert_eq!(
            actions(&mut s),
            vec![
                StandbyAction::ForwardRequest { relay: RelayId(1) },
                StandbyAction::ForwardRequest { relay: RelayId(2) }
            ]
        );
        // A relay forwards what it held; still replicating.
        s.receive(w(2, 11, 1));
        s.relay_drained(RelayId(1), t0);
        assert!(!s.is_active());
        assert_eq!(written(&actions(&mut s)), vec![11]);
        s.relay_drained(RelayId(2), t0);
        let a = actions(&mut s);
        assert_eq!(
            a[0],
            StandbyAction::Fence {
                sources: vec![S],
                relays: vec![RelayId(1), RelayId(2)]
            }
        );
        assert_eq!(
            a[1],
            StandbyAction::Resume {
                source: S,
                point: None
            }
        );
        assert_eq!(s.receive(w(3, 12, 1)), Reply::Fenced);
    }

    #[test]
    fn a_relay_that_never_drains_is_cut_off_by_the_timeout() {
        let mut s = standby(Consistency::Immediate);
        s.receive(w(2, 11, 1));
        s.take_over(&[RelayId(1)], Duration::ZERO);
        actions(&mut s);
        assert_eq!(s.poll_timeout(), Some(Duration::from_secs(1)));
        s.handle_timeout(Duration::from_millis(999));
        assert!(!s.is_active());
        s.handle_timeout(Duration::from_secs(1));
        assert!(s.is_active());
        assert!(
            !s.has(RecordId { source: S, seq: 2 }),
            "held behind a gap: dropped"
        );
    }
}
