//! The primary array's side of relay replication (seed 002 emb 3 §4.3, emb 4 §4.4(a)–(c),
//! the ack table §4.0; invariants R7, R11, R12): it numbers the source's records,
//! chooses the relays each one goes to, and tells the node when a host write may
//! complete: once the local media write is done *and* the record has reached a relay.
//!
//! Selection ([`Selection`]): one relay per record, chosen round-robin, least-loaded
//! (fewest unacknowledged records) or at random (seeded); split-by-speed, where a write
//! is cut into portions at block boundaries and every relay gets the next portion as soon
//! as it has acknowledged its previous one (Fig. 12), so faster relays carry more; or
//! duplicate, where every relay gets every record and the first acknowledgement counts.
//! With no relay at all (emb 5–8, direct) give the standby as the one "relay".
//!
//! Host requests complete in sequence order: a request completes only once every record
//! up to its own has reached a relay, so a request the host saw complete never depends
//! on an earlier record that the primary site could still take with it (the standby
//! applies each source as a prefix: without this, an acknowledged record behind a lost
//! unacknowledged one could never be applied, R2). Sending is not held back, only the
//! completion.
//!
//! A relay's acknowledgement is final (the patent's rule; seed §7.6 E2): the primary
//! keeps no copy for the standby. A record that a relay refused (BUSY), or that was in
//! flight to a relay that went down, is sent again, to another relay where there is one,
//! under the same sequence number, so the standby takes it once.
//!
//! Call order: `write` / `restart_point`, then `local_done`, `relay_acked`,
//! `send_failed`, `relay_down` / `relay_up` as they happen, each followed by draining
//! `poll_action`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Kind, Record, RecordId, RelayError, RelayId, SourceId};

/// How records are spread over the relays (emb 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    RoundRobin,
    LeastLoaded,
    /// Uniform over the live relays, from this seed.
    Random {
        seed: u64,
    },
    /// A write is cut into up to `portions` records (at block boundaries); each relay
    /// carries one unacknowledged portion at a time.
    SplitBySpeed {
        portions: u16,
    },
    /// Every record to every live relay; the first acknowledgement counts.
    Duplicate,
}

/// What the node must do for the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryAction {
    /// Send `record` to `relay` (command, then data once ready).
    Send { relay: RelayId, record: Record },
    /// The host request tagged `host` is complete.
    Complete { host: u64 },
}

/// A host request waiting for completion.
#[derive(Debug, Clone)]
struct HostOp {
    /// The local media write is not done yet (writes only).
    local_pending: bool,
    /// Its last record's sequence number.
    last: u64,
}

/// A record not yet acknowledged by any relay.
#[derive(Debug, Clone)]
struct Outstanding {
    record: Record,
    /// The relays it is in flight to.
    at: BTreeSet<RelayId>,
}

/// One source's primary side. See the module doc for the call order.
#[derive(Debug, Clone)]
pub struct Primary {
    source: SourceId,
    block_bytes: u32,
    /// The configured relays, in configuration order (round-robin order, tie order).
    relays: Vec<RelayId>,
    /// The relays believed up.
    live: BTreeSet<RelayId>,
    selection: Selection,
    rng: StdRng,
    /// Index into `relays` of the next round-robin choice.
    next_rr: usize,
    /// Last sequence number handed out.
    last_seq: u64,
    /// Last restart point handed out.
    last_point: u64,
    hosts: BTreeMap<u64, HostOp>,
    outstanding: BTreeMap<u64, Outstanding>,
    /// Records waiting for a relay, in the order they go.
    queue: VecDeque<u64>,
    actions: VecDeque<PrimaryAction>,
}

impl Primary {
    /// A primary for `source` sending through `relays` (all believed up), whose LUs have
    /// blocks of `block_bytes`.
    pub fn new(
        source: SourceId,
        relays: Vec<RelayId>,
        selection: Selection,
        block_bytes: u32,
    ) -> Result<Primary, RelayError> {
        let unique: BTreeSet<RelayId> = relays.iter().copied().collect();
        if relays.is_empty() || unique.len() != relays.len() {
            return Err(RelayError::BadConfig("at least one relay, each named once"));
        }
        if block_bytes == 0 || selection == (Selection::SplitBySpeed { portions: 0 }) {
            return Err(RelayError::BadConfig(
                "block size and portions must be non-zero",
            ));
        }
        let seed = match selection {
            Selection::Random { seed } => seed,
            _ => 0,
        };
        Ok(Primary {
            source,
            block_bytes,
            relays,
            live: unique,
            selection,
            rng: StdRng::seed_from_u64(seed),
            next_rr: 0,
            last_seq: 0,
            last_point: 0,
            hosts: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            queue: VecDeque::new(),
            actions: VecDeque::new(),
        })
    }

    /// A primary like [`Primary::new`] whose numbering goes on after `last_seq` and
    /// restart point `last_point`: the stream of a pair resumed after a suspension (the
    /// standby is told to expect `last_seq + 1` once the resync copy is done).
    pub fn resume_after(
        source: SourceId,
        relays: Vec<RelayId>,
        selection: Selection,
        block_bytes: u32,
        (last_seq, last_point): (u64, u64),
    ) -> Result<Primary, RelayError> {
        let mut p = Primary::new(source, relays, selection, block_bytes)?;
        p.last_seq = last_seq;
        p.last_point = last_point;
        Ok(p)
    }

    pub fn source(&self) -> SourceId {
        self.source
    }

    /// The last restart point handed out.
    pub fn last_point(&self) -> u64 {
        self.last_point
    }

    /// The host requests not yet complete.
    pub fn waiting_hosts(&self) -> impl Iterator<Item = u64> + '_ {
        self.hosts.keys().copied()
    }

    /// The relays believed up.
    pub fn live_relays(&self) -> usize {
        self.live.len()
    }

    /// The last sequence number handed out.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Records not yet acknowledged by any relay.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// A host write of `data` at block `lba` of LU `lun`, wholly received from the host
    /// and registered for the local media write; completes after `local_done(host)` and
    /// the relay acknowledgements.
    pub fn write(&mut self, host: u64, lun: u16, lba: u64, data: Bytes) -> Result<(), RelayError> {
        let bb = self.block_bytes as usize;
        if data.is_empty() || !data.len().is_multiple_of(bb) {
            return Err(RelayError::BadLength {
                len: data.len(),
                block_bytes: self.block_bytes,
            });
        }
        let blocks = data.len() / bb;
        let portions = match self.selection {
            Selection::SplitBySpeed { portions } => usize::from(portions).min(blocks),
            _ => 1,
        };
        let mut records = Vec::with_capacity(portions);
        let mut at = 0;
        for i in 0..portions {
            let n = blocks / portions + usize::from(i < blocks % portions);
            let kind = Kind::Write {
                lun,
                lba: lba + at as u64,
            };
            records.push((kind, data.slice(at * bb..(at + n) * bb)));
            at += n;
        }
        self.submit(host, true, records)
    }

    /// The application reached a restart point; `app_state` is its execution image
    /// (emb 9; empty for an application with its own restart function). Returns the
    /// restart point's number. Completes once a relay holds it.
    pub fn restart_point(&mut self, host: u64, app_state: Bytes) -> Result<u64, RelayError> {
        let point = self.last_point + 1;
        self.submit(host, false, vec![(Kind::RestartPoint { point }, app_state)])?;
        self.last_point = point;
        Ok(point)
    }

    fn submit(
        &mut self,
        host: u64,
        local: bool,
        records: Vec<(Kind, Bytes)>,
    ) -> Result<(), RelayError> {
        if self.hosts.contains_key(&host) {
            return Err(RelayError::TagInUse(host));
        }
        for (kind, data) in records {
            self.last_seq += 1;
            let id = RecordId {
                source: self.source,
                seq: self.last_seq,
            };
            let record = Record::new(id, kind, data);
            self.outstanding.insert(
                id.seq,
                Outstanding {
                    record,
                    at: BTreeSet::new(),
                },
            );
            self.queue.push_back(id.seq);
        }
        self.hosts.insert(
            host,
            HostOp {
                local_pending: local,
                last: self.last_seq,
            },
        );
        self.pump();
        Ok(())
    }

    /// The local media write of host write `host` is done.
    pub fn local_done(&mut self, host: u64) {
        if let Some(op) = self.hosts.get_mut(&host) {
            op.local_pending = false;
            self.complete_ready();
        }
    }

    /// A relay holds record `seq` (its good status): any relay's counts. Later
    /// acknowledgements of the same record (duplicate mode, resends) are ignored.
    pub fn relay_acked(&mut self, seq: u64) {
        if self.outstanding.remove(&seq).is_none() {
            return;
        }
        self.queue.retain(|s| *s != seq);
        self.complete_ready();
        self.pump();
    }

    /// `relay` did not take record `seq` (BUSY, or the exchange failed): send it again.
    pub fn send_failed(&mut self, relay: RelayId, seq: u64) {
        self.forget(relay, |s| s == seq);
    }

    /// `relay` is down: what was in flight to it alone goes again elsewhere, and it gets
    /// nothing until `relay_up`.
    pub fn relay_down(&mut self, relay: RelayId) {
        self.live.remove(&relay);
        self.forget(relay, |_| true);
    }

    pub fn relay_up(&mut self, relay: RelayId) {
        if self.relays.contains(&relay) {
            self.live.insert(relay);
            self.pump();
        }
    }

    pub fn poll_action(&mut self) -> Option<PrimaryAction> {
        self.actions.pop_front()
    }

    /// Takes `relay` off the records matching `which`; those in flight nowhere else go
    /// back to the front of the queue, in sequence order.
    fn forget(&mut self, relay: RelayId, which: impl Fn(u64) -> bool) {
        let mut again = Vec::new();
        for (seq, o) in &mut self.outstanding {
            if which(*seq) && o.at.remove(&relay) && o.at.is_empty() {
                again.push(*seq);
            }
        }
        for seq in again.into_iter().rev() {
            self.queue.push_front(seq);
        }
        self.pump();
    }

    /// Completes, in sequence order, the requests whose local write is done and whose
    /// records, and all before them, have reached a relay.
    fn complete_ready(&mut self) {
        let held = self.outstanding.keys().next().map_or(u64::MAX, |s| *s);
        let mut ready: Vec<(u64, u64)> = self
            .hosts
            .iter()
            .filter(|(_, op)| !op.local_pending && op.last < held)
            .map(|(host, op)| (op.last, *host))
            .collect();
        ready.sort_unstable();
        for (_, host) in ready {
            self.hosts.remove(&host);
            self.actions.push_back(PrimaryAction::Complete { host });
        }
    }

    /// Unacknowledged records in flight to `relay`.
    fn load(&self, relay: RelayId) -> usize {
        self.outstanding
            .values()
            .filter(|o| o.at.contains(&relay))
            .count()
    }

    /// Sends the queued records, in order, while relays can take them.
    fn pump(&mut self) {
        while let Some(&seq) = self.queue.front() {
            let targets = self.choose(seq);
            if targets.is_empty() {
                return;
            }
            self.queue.pop_front();
            let o = self
                .outstanding
                .get_mut(&seq)
                .expect("queued records are outstanding");
            for relay in targets {
                o.at.insert(relay);
                self.actions.push_back(PrimaryAction::Send {
                    relay,
                    record: o.record.clone(),
                });
            }
        }
    }

    /// The relays record `seq` goes to now; none: it waits.
    fn choose(&mut self, seq: u64) -> Vec<RelayId> {
        let live: Vec<RelayId> = self
            .relays
            .iter()
            .copied()
            .filter(|r| self.live.contains(r))
            .collect();
        if live.is_empty() {
            return Vec::new();
        }
        match self.selection {
            Selection::Duplicate => {
                let at = &self.outstanding[&seq].at;
                live.into_iter().filter(|r| !at.contains(r)).collect()
            }
            Selection::SplitBySpeed { .. } => live
                .into_iter()
                .find(|r| self.load(*r) == 0)
                .into_iter()
                .collect(),
            Selection::LeastLoaded => live
                .into_iter()
                .min_by_key(|r| self.load(*r))
                .into_iter()
                .collect(),
            Selection::Random { .. } => vec![live[self.rng.random_range(0..live.len())]],
            Selection::RoundRobin => {
                let n = self.relays.len();
                let pick = (0..n)
                    .map(|i| (self.next_rr + i) % n)
                    .find(|i| self.live.contains(&self.relays[*i]))
                    .expect("a live relay");
                self.next_rr = (pick + 1) % n;
                vec![self.relays[pick]]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: [RelayId; 3] = [RelayId(1), RelayId(2), RelayId(3)];

    fn primary(selection: Selection) -> Primary {
        Primary::new(SourceId(7), R.to_vec(), selection, 4).unwrap()
    }

    fn actions(p: &mut Primary) -> Vec<PrimaryAction> {
        std::iter::from_fn(|| p.poll_action()).collect()
    }

    /// (relay, seq, lba, blocks) of the sends.
    fn sends(a: &[PrimaryAction]) -> Vec<(u16, u64, u64, usize)> {
        a.iter()
            .filter_map(|a| match a {
                PrimaryAction::Send { relay, record } => match record.header.kind {
                    Kind::Write { lba, .. } => {
                        Some((relay.0, record.id().seq, lba, record.data.len() / 4))
                    }
                    Kind::RestartPoint { .. } => Some((relay.0, record.id().seq, 0, 0)),
                },
                PrimaryAction::Complete { .. } => None,
            })
            .collect()
    }

    fn data(blocks: usize) -> Bytes {
        Bytes::from(vec![1; blocks * 4])
    }

    #[test]
    fn completion_needs_the_local_write_and_the_relay_ack() {
        let mut p = primary(Selection::RoundRobin);
        p.write(10, 0, 0, data(1)).unwrap();
        assert_eq!(sends(&actions(&mut p)), vec![(1, 1, 0, 1)]);
        p.relay_acked(1);
        assert!(actions(&mut p).is_empty(), "the local write is not done");
        p.local_done(10);
        assert_eq!(actions(&mut p), vec![PrimaryAction::Complete { host: 10 }]);
        // And the other way round.
        p.write(11, 0, 0, data(1)).unwrap();
        p.local_done(11);
        assert_eq!(actions(&mut p).len(), 1, "only the send");
        p.relay_acked(2);
        assert_eq!(actions(&mut p), vec![PrimaryAction::Complete { host: 11 }]);
    }

    #[test]
    fn requests_complete_in_sequence_order() {
        let mut p = primary(Selection::RoundRobin);
        p.write(1, 0, 0, data(1)).unwrap();
        p.write(2, 0, 1, data(1)).unwrap();
        p.local_done(1);
        p.local_done(2);
        actions(&mut p);
        p.relay_acked(2);
        assert!(
            actions(&mut p).is_empty(),
            "record 1 has not reached a relay"
        );
        p.relay_acked(1);
        assert_eq!(
            actions(&mut p),
            vec![
                PrimaryAction::Complete { host: 1 },
                PrimaryAction::Complete { host: 2 }
            ]
        );
    }

    #[test]
    fn round_robin_skips_a_relay_that_is_down() {
        let mut p = primary(Selection::RoundRobin);
        p.relay_down(R[1]);
        for h in 0..3 {
            p.write(h, 0, h, data(1)).unwrap();
        }
        let relays: Vec<u16> = sends(&actions(&mut p)).iter().map(|s| s.0).collect();
        assert_eq!(relays, vec![1, 3, 1]);
    }

    #[test]
    fn least_loaded_picks_the_relay_with_fewest_unacknowledged_records() {
        let mut p = primary(Selection::LeastLoaded);
        for h in 0..3 {
            p.write(h, 0, h, data(1)).unwrap();
        }
        assert_eq!(
            sends(&actions(&mut p))
                .iter()
                .map(|s| s.0)
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        p.relay_acked(2);
        p.write(3, 0, 3, data(1)).unwrap();
        assert_eq!(sends(&actions(&mut p))[0].0, 2);
    }

    #[test]
    fn random_selection_is_reproducible_from_its_seed() {
        let run = |seed| {
            let mut p = primary(Selection::Random { seed });
            for h in 0..20 {
                p.write(h, 0, h, data(1)).unwrap();
            }
            sends(&actions(&mut p))
                .iter()
                .map(|s| s.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn split_by_speed_gives_the_next_portion_to_the_relay_that_acked() {
        // Fig. 12: five portions over three relays; relays 2 and 3 answer first.
        let mut p = primary(Selection::SplitBySpeed { portions: 5 });
        p.write(1, 0, 100, data(5)).unwrap();
        assert_eq!(
            sends(&actions(&mut p)),
            vec![(1, 1, 100, 1), (2, 2, 101, 1), (3, 3, 102, 1)]
        );
        p.relay_acked(2);
        p.relay_acked(3);
        assert_eq!(
            sends(&actions(&mut p)),
            vec![(2, 4, 103, 1), (3, 5, 104, 1)]
        );
        p.local_done(1);
        p.relay_acked(4);
        p.relay_acked(5);
        assert!(actions(&mut p).is_empty(), "relay 1 has not acknowledged");
        p.relay_acked(1);
        assert_eq!(actions(&mut p), vec![PrimaryAction::Complete { host: 1 }]);
    }

    #[test]
    fn split_portions_cover_the_write_exactly() {
        let mut p = primary(Selection::SplitBySpeed { portions: 3 });
        p.write(1, 0, 10, data(7)).unwrap();
        let mut a = actions(&mut p);
        for seq in 1..=3 {
            p.relay_acked(seq);
            a.extend(actions(&mut p));
        }
        let s = sends(&a);
        assert_eq!(
            s.iter().map(|s| (s.2, s.3)).collect::<Vec<_>>(),
            vec![(10, 3), (13, 2), (15, 2)]
        );
    }

    #[test]
    fn duplicate_mode_completes_once_on_the_first_ack() {
        let mut p = primary(Selection::Duplicate);
        p.write(1, 0, 0, data(1)).unwrap();
        p.local_done(1);
        assert_eq!(
            sends(&actions(&mut p))
                .iter()
                .map(|s| (s.0, s.1))
                .collect::<Vec<_>>(),
            vec![(1, 1), (2, 1), (3, 1)]
        );
        p.relay_acked(1);
        p.relay_acked(1);
        p.relay_acked(1);
        assert_eq!(actions(&mut p), vec![PrimaryAction::Complete { host: 1 }]);
    }

    #[test]
    fn a_record_in_flight_to_a_lost_relay_goes_elsewhere_under_its_number() {
        let mut p = primary(Selection::RoundRobin);
        p.write(1, 0, 0, data(1)).unwrap();
        actions(&mut p);
        p.relay_down(R[0]);
        assert_eq!(sends(&actions(&mut p)), vec![(2, 1, 0, 1)]);
        p.send_failed(R[1], 1);
        assert_eq!(sends(&actions(&mut p)), vec![(3, 1, 0, 1)]);
        // No relay left: it waits.
        p.relay_down(R[1]);
        p.relay_down(R[2]);
        assert!(actions(&mut p).is_empty());
        p.relay_up(R[1]);
        assert_eq!(sends(&actions(&mut p)), vec![(2, 1, 0, 1)]);
    }

    #[test]
    fn restart_points_are_numbered_and_need_no_local_write() {
        let mut p = primary(Selection::RoundRobin);
        assert_eq!(p.restart_point(1, Bytes::from_static(b"img")).unwrap(), 1);
        assert_eq!(sends(&actions(&mut p)), vec![(1, 1, 0, 0)]);
        p.relay_acked(1);
        assert_eq!(actions(&mut p), vec![PrimaryAction::Complete { host: 1 }]);
        assert_eq!(p.restart_point(2, Bytes::new()).unwrap(), 2);
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut p = primary(Selection::RoundRobin);
        assert!(matches!(
            p.write(1, 0, 0, Bytes::from_static(&[0; 5])),
            Err(RelayError::BadLength { len: 5, .. })
        ));
        p.write(1, 0, 0, data(1)).unwrap();
        assert_eq!(p.write(1, 0, 0, data(1)), Err(RelayError::TagInUse(1)));
        assert!(Primary::new(SourceId(1), vec![R[0], R[0]], Selection::Duplicate, 4).is_err());
    }
}
