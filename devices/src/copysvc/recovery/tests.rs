//! Recovery-copy tests (seed 001): the protocol steps and the faults of §7.4 one by one
//! over a deterministic two-array harness, then property tests of the §7.5 invariants.
//!
//! The harness [`Sim`] joins a [`RecoveryCopy`] and a [`RecoveryTarget`] (or an
//! unprotected remote that writes what it receives) by a wire with 1 ms latency, in
//! fabric time; devices are `BTreeMap`s of 2-byte tracks; the remote's R-DEV is the
//! M-DEV + 100. Faults: the master dies after sending its k-th message (it stops), one
//! message is lost, the completion is delayed. Every step it checks invariants 6–8
//! ([`RecoveryTarget::audit`]), 11, 15, 16 and, for a time-ordered copy without
//! coalescing, 12; every rollback is checked against invariants 1 and 10; a completion
//! refused after a rollback must change nothing (DESIGN.md §7).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRng, TestRunner};

use super::*;
use crate::bitmap::DiffBitmap;

type Vols = BTreeMap<(u16, u64), Bytes>;

const R: u16 = 100;
const LATENCY: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn b(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    ToRemote,
    ToMaster,
}

#[derive(Debug, Clone, Default)]
struct Faults {
    /// The master dies when about to send its message number k (from 0).
    dies_after: Option<usize>,
    /// Message number i (from 0, per direction) is lost.
    lose: Option<(Dir, usize)>,
    /// The completion reaches the remote this much later.
    delay_complete: Option<Duration>,
}

/// One session's inputs.
#[derive(Debug, Clone)]
struct Setup {
    devs: u16,
    tracks: u64,
    /// Track (dev, t) initially holds `init[dev * tracks + t]`.
    init: Vec<[u8; 2]>,
    /// Host writes while suspended, in order.
    suspended: Vec<(u16, u64, Update)>,
    /// Host writes during the recovery: (ms after the start, dev, track, update).
    during: Vec<(u64, u16, u64, Update)>,
    /// One consistency unit for all devices, else one per device.
    group: bool,
    /// Time-series queues kept while suspended.
    ordered: bool,
    coalesce: bool,
    protection: Protection,
    remote: RemoteConfig,
    conditions: UserConditions,
    /// The conditions are set on the master (else on the remote).
    conditions_on_master: bool,
    config: RecoveryConfig,
    faults: Faults,
    /// Replace the remote with one that writes what it receives.
    unprotected: bool,
}

impl Setup {
    /// Two devices of 4 tracks, one unit each, variant A; suspended writes out of
    /// address order: dev 0 track 3 then track 1, dev 1 track 2 then track 0.
    fn basic() -> Setup {
        Setup {
            devs: 2,
            tracks: 4,
            init: (0..8u8).map(|i| [i, 0]).collect(),
            suspended: vec![
                (0, 3, Update::Format(b(&[30, 1]))),
                (0, 1, Update::Format(b(&[10, 1]))),
                (1, 2, Update::Format(b(&[21, 1]))),
                (
                    1,
                    0,
                    Update::Partial {
                        offset: 1,
                        data: b(&[9]),
                    },
                ),
            ],
            during: Vec::new(),
            group: false,
            ordered: false,
            coalesce: false,
            protection: Protection::SaveOld,
            remote: example_config(),
            conditions: UserConditions::default(),
            conditions_on_master: false,
            config: RecoveryConfig {
                allowed: ms(1000),
                retry_interval: ms(50),
                ..RecoveryConfig::default()
            },
            faults: Faults::default(),
            unprotected: false,
        }
    }

    fn unit(&self, dev: u16) -> u16 {
        if self.group { 0 } else { dev }
    }
}

/// Seed 001 §6: 64 LDEVs on 24 disks, 4 parity groups and 2 spares (8 tracks each).
fn example_config() -> RemoteConfig {
    let row = |kind| SaveRow {
        kind,
        tracks: 8,
        usable: true,
    };
    RemoteConfig {
        logical_devices: 64,
        disks: 24,
        cache_tracks: 64,
        save_rows: [SaveRowKind::Parity; 4]
            .into_iter()
            .chain([SaveRowKind::Spare; 2])
            .map(row)
            .collect(),
    }
}

#[derive(Debug)]
struct InFlightMsg {
    at: Duration,
    order: u64,
    dir: Dir,
    msg: RecoveryMessage,
}

/// Two arrays and the wire between them.
struct Sim {
    s: Setup,
    /// `None` once dead.
    master: Option<RecoveryCopy>,
    remote: RecoveryTarget,
    mvols: Vols,
    rvols: Vols,
    now: Duration,
    wire: Vec<InFlightMsg>,
    order: u64,
    counts: BTreeMap<Dir, usize>,
    master_sent: usize,
    host: VecDeque<(Duration, u16, u64, Update)>,
    units: BTreeMap<u16, Vec<u16>>,
    /// Every image each unit had on the master, the initial one first.
    hist: BTreeMap<u16, Vec<Vec<Bytes>>>,
    /// The R-DEVs when the remote's current session started.
    start_img: Vols,
    /// Every message sent (lost ones included), in order.
    log: Vec<(Dir, RecoveryMessage)>,
    writes: BTreeMap<(u64, u64), u16>,
    ends: BTreeSet<(u64, u64)>,
    reached_sent: BTreeSet<(u64, u16)>,
    reached_seen: BTreeSet<(u64, u16)>,
    /// The master's attempt when it was last alive.
    attempt: u32,
    events: Vec<RecoveryEvent>,
}

impl Sim {
    fn new(s: Setup) -> Sim {
        let mut mvols = Vols::new();
        for d in 0..s.devs {
            for t in 0..s.tracks {
                mvols.insert(
                    (d, t),
                    b(&s.init[usize::try_from(u64::from(d) * s.tracks + t).unwrap()]),
                );
            }
        }
        let rvols: Vols = mvols
            .iter()
            .map(|((d, t), v)| ((d + R, *t), v.clone()))
            .collect();
        let mut units: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
        for d in 0..s.devs {
            units.entry(s.unit(d)).or_default().push(d);
        }
        let mut diffs: Vec<DiffBitmap> = (0..s.devs).map(|_| DiffBitmap::new(s.tracks)).collect();
        // The node keeps a queue per unit from the suspension on (empty if no write came).
        let mut queues: BTreeMap<u16, TimeSeriesQueue> = BTreeMap::new();
        if s.ordered {
            for d in 0..s.devs {
                queues.insert(s.unit(d), TimeSeriesQueue::new(s.coalesce));
            }
        }
        let mut sim = Sim {
            master: None,
            remote: RecoveryTarget::new(
                s.protection,
                s.remote.clone(),
                (!s.conditions_on_master).then_some(s.conditions),
            ),
            mvols,
            rvols: rvols.clone(),
            now: Duration::ZERO,
            wire: Vec::new(),
            order: 0,
            counts: BTreeMap::new(),
            master_sent: 0,
            host: s
                .during
                .iter()
                .map(|(at, d, t, u)| (ms(*at), *d, *t, u.clone()))
                .collect(),
            hist: BTreeMap::new(),
            units,
            start_img: rvols,
            log: Vec::new(),
            writes: BTreeMap::new(),
            ends: BTreeSet::new(),
            reached_sent: BTreeSet::new(),
            reached_seen: BTreeSet::new(),
            attempt: 1,
            events: Vec::new(),
            s,
        };
        sim.host.make_contiguous().sort_by_key(|h| h.0);
        for u in sim.units.keys().copied().collect::<Vec<_>>() {
            let img = sim.master_image(u);
            sim.hist.insert(u, vec![img]);
        }
        for (d, t, up) in sim.s.suspended.clone() {
            sim.host_apply(d, t, &up);
            diffs[usize::from(d)].set_range(t, 1);
            if sim.s.ordered {
                queues.get_mut(&sim.s.unit(d)).unwrap().record(d, t, up);
            }
        }
        let pairs = diffs
            .into_iter()
            .zip(0u16..)
            .map(|(diff, dev)| SuspendedPair {
                dev,
                r_dev: dev + R,
                unit: sim.s.unit(dev),
                diff,
            })
            .collect();
        let mut config = sim.s.config.clone();
        config.conditions = config
            .conditions
            .or(sim.s.conditions_on_master.then_some(sim.s.conditions));
        sim.master = Some(RecoveryCopy::start(1, pairs, queues, config, Duration::ZERO).unwrap());
        sim
    }

    fn host_apply(&mut self, d: u16, t: u64, up: &Update) {
        let new = up.apply(&self.mvols.read_track(d, t));
        self.mvols.write_track(d, t, new);
        let u = self.s.unit(d);
        let img = self.master_image(u);
        self.hist.get_mut(&u).unwrap().push(img);
    }

    fn image(&self, vols: &Vols, unit: u16, off: u16) -> Vec<Bytes> {
        self.units[&unit]
            .iter()
            .flat_map(|d| (0..self.s.tracks).map(move |t| vols.read_track(d + off, t)))
            .collect()
    }

    fn master_image(&self, unit: u16) -> Vec<Bytes> {
        self.image(&self.mvols, unit, 0)
    }

    fn remote_image(&self, unit: u16) -> Vec<Bytes> {
        self.image(&self.rvols, unit, R)
    }

    fn master(&self) -> &RecoveryCopy {
        self.master.as_ref().expect("the master is alive")
    }

    /// Queues what both sides want to send.
    fn collect(&mut self) -> Result<(), String> {
        if let Some(m) = &mut self.master {
            let mut out = Vec::new();
            while let Some(msg) = m.poll_message() {
                out.push(msg);
            }
            while let Some(e) = m.poll_event() {
                self.events.push(e);
            }
            self.attempt = m.attempt();
            for msg in out {
                if self.s.faults.dies_after == Some(self.master_sent) {
                    self.master = None;
                    break;
                }
                self.master_sent += 1;
                self.send(Dir::ToRemote, msg)?;
            }
        }
        while let Some(msg) = self.remote.poll_message() {
            self.send(Dir::ToMaster, msg)?;
        }
        Ok(())
    }

    /// Invariant 16 on every master message, then the wire (losses, delays).
    fn send(&mut self, dir: Dir, msg: RecoveryMessage) -> Result<(), String> {
        match &msg {
            RecoveryMessage::Write {
                session,
                seq,
                r_dev,
                ..
            } => {
                self.writes.insert((*session, *seq), *r_dev);
            }
            RecoveryMessage::Reached { session, r_dev } => {
                if let Some((k, _)) = self
                    .writes
                    .iter()
                    .find(|(k, r)| k.0 == *session && **r == *r_dev && !self.ends.contains(k))
                {
                    return Err(format!("inv 16: reached {r_dev} before write {k:?} ended"));
                }
                self.reached_sent.insert((*session, *r_dev));
            }
            RecoveryMessage::Complete { session } => {
                for d in 0..self.s.devs {
                    if !self.reached_sent.contains(&(*session, d + R)) {
                        return Err(format!("inv 16: complete before reached {}", d + R));
                    }
                }
            }
            _ => {}
        }
        self.log.push((dir, msg.clone()));
        let n = self.counts.entry(dir).or_default();
        let i = *n;
        *n += 1;
        if self.s.faults.lose == Some((dir, i)) {
            return Ok(());
        }
        let mut at = self.now + LATENCY;
        if let (RecoveryMessage::Complete { .. }, Some(d)) = (&msg, self.s.faults.delay_complete) {
            at += d;
        }
        self.order += 1;
        self.wire.push(InFlightMsg {
            at,
            order: self.order,
            dir,
            msg,
        });
        Ok(())
    }

    /// Invariants 6–8, 11, 12 (when asked) and 15, now.
    fn check(&self) -> Result<(), String> {
        self.remote.audit(&self.start_img, &self.rvols)?;
        if let Some(m) = &self.master {
            let n = m.plan().map_or(1, |p| p.concurrency);
            let largest = self.units.values().map(Vec::len).max().unwrap_or(0);
            if m.active_pairs() > n.max(largest) {
                return Err(format!(
                    "inv 11: {} active pairs, n = {n}",
                    m.active_pairs()
                ));
            }
            for u in self.units.keys() {
                for node in m.queue(*u).unwrap().nodes() {
                    if !m.diff(node.dev).unwrap().get(node.track) {
                        return Err(format!("inv 15: queued {node:?} not in the bitmap"));
                    }
                }
            }
        }
        let strict = self.s.ordered
            && !self.s.coalesce
            && self.s.protection == Protection::SaveOld
            && self.attempt == 1
            && !self.s.unprotected;
        if strict {
            for u in self.units.keys() {
                if !self.hist[u].contains(&self.remote_image(*u)) {
                    return Err(format!("inv 12: unit {u} is no prefix of its updates"));
                }
            }
        }
        Ok(())
    }

    /// The unprotected remote: writes what it receives, acknowledges everything.
    fn unprotected(&mut self, msg: RecoveryMessage) -> Option<RecoveryMessage> {
        match msg {
            RecoveryMessage::ConfigRequest { session } => Some(RecoveryMessage::Config {
                session,
                config: self.s.remote.clone(),
                conditions: None,
            }),
            RecoveryMessage::Start { session, .. } => Some(RecoveryMessage::Ready { session }),
            RecoveryMessage::Write {
                session,
                seq,
                r_dev,
                track,
                update,
            } => {
                let new = update.apply(&self.rvols.read_track(r_dev, track));
                self.rvols.write_track(r_dev, track, new);
                Some(RecoveryMessage::WriteEnd { session, seq })
            }
            RecoveryMessage::Complete { session } => Some(RecoveryMessage::CompleteAck { session }),
            _ => None,
        }
    }

    /// Delivers to the remote; checks invariants 1 and 10 on a rollback, and that a
    /// refused completion changes nothing.
    fn deliver_to_remote(&mut self, msg: RecoveryMessage) -> Result<(), String> {
        if self.s.unprotected {
            if let Some(answer) = self.unprotected(msg) {
                self.send(Dir::ToMaster, answer)?;
            }
            return Ok(());
        }
        // A reached report counts if it arrives before T.
        if let RecoveryMessage::Reached { session, r_dev } = &msg
            && self.remote.poll_timeout().is_some_and(|d| self.now < d)
        {
            self.reached_seen.insert((*session, *r_dev));
        }
        let was_active = self.remote.in_progress();
        let was_ended = self.remote.last_outcome().map(|(s, _)| s);
        let before = self.rvols.clone();
        let session = msg.session();
        let complete = matches!(msg, RecoveryMessage::Complete { .. });
        let mut rvols = std::mem::take(&mut self.rvols);
        self.remote.handle_message(msg, &mut rvols, self.now);
        self.rvols = rvols;
        if !was_active && self.remote.in_progress() {
            self.start_img = self.rvols.clone();
        }
        self.after_remote(was_active)?;
        let answers: Vec<RecoveryMessage> =
            std::iter::from_fn(|| self.remote.poll_message()).collect();
        if complete
            && let Some((s, TargetOutcome::RolledBack(_))) = self.remote.last_outcome()
            && s == session
        {
            if was_ended == Some(s) && self.rvols != before {
                return Err("a refused completion changed the remote".into());
            }
            if !matches!(
                answers.last(),
                Some(RecoveryMessage::CompleteRefused { .. })
            ) {
                return Err("a late completion was not refused".into());
            }
        }
        for a in answers {
            self.send(Dir::ToMaster, a)?;
        }
        Ok(())
    }

    /// If the remote's session just ended in a rollback: invariants 1 and 10.
    fn after_remote(&mut self, was_active: bool) -> Result<(), String> {
        if !was_active || self.remote.in_progress() {
            return Ok(());
        }
        let Some((session, TargetOutcome::RolledBack(report))) = self.remote.last_outcome() else {
            return Ok(());
        };
        let expected: Vec<u16> = self
            .units
            .values()
            .filter(|devs| {
                !devs
                    .iter()
                    .all(|d| self.reached_seen.contains(&(session, d + R)))
            })
            .flatten()
            .map(|d| d + R)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if report.rolled_back != expected {
            return Err(format!(
                "inv 10: rolled back {:?}, unreached {expected:?}",
                report.rolled_back
            ));
        }
        for r in &report.rolled_back {
            for t in 0..self.s.tracks {
                if self.rvols.read_track(*r, t) != self.start_img.read_track(*r, t) {
                    return Err(format!("inv 1: R-DEV {r} track {t} not restored"));
                }
            }
        }
        Ok(())
    }

    fn deliver_to_master(&mut self, msg: RecoveryMessage) {
        if let RecoveryMessage::WriteEnd { session, seq } = &msg {
            self.ends.insert((*session, *seq));
        }
        if let Some(m) = &mut self.master {
            m.handle_message(msg, &self.mvols, self.now);
        }
    }

    /// Runs the earliest event at or before `until`; false if there is none.
    fn step(&mut self, until: Duration) -> Result<bool, String> {
        self.collect()?;
        self.check()?;
        let wire = self
            .wire
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| (w.at, w.order))
            .map(|(i, w)| (w.at, i));
        let alive = self.master.is_some();
        let host = self.host.front().map(|h| h.0).filter(|_| alive);
        let rt = self.remote.poll_timeout();
        let mt = self.master.as_ref().and_then(RecoveryCopy::poll_timeout);
        let next = [wire.map(|w| w.0), host, rt, mt]
            .into_iter()
            .flatten()
            .min();
        let Some(at) = next.filter(|at| *at <= until) else {
            return Ok(false);
        };
        self.now = self.now.max(at);
        if let Some((t, i)) = wire
            && t == at
        {
            let w = self.wire.remove(i);
            match w.dir {
                Dir::ToRemote => self.deliver_to_remote(w.msg)?,
                Dir::ToMaster => self.deliver_to_master(w.msg),
            }
        } else if host == Some(at) {
            let (_, d, t, up) = self.host.pop_front().unwrap();
            let m = self.master.as_ref().unwrap();
            if m.before_write(d) == HostWrite::Proceed {
                self.host_apply(d, t, &up);
                let m = self.master.as_mut().unwrap();
                m.after_write(d, t, up, &self.mvols, self.now);
            }
        } else if rt == Some(at) {
            let was_active = self.remote.in_progress();
            let mut rvols = std::mem::take(&mut self.rvols);
            self.remote.handle_timeout(&mut rvols, at);
            self.rvols = rvols;
            self.after_remote(was_active)?;
        } else if let Some(m) = &mut self.master {
            m.handle_timeout(at);
        }
        Ok(true)
    }

    fn run_until(&mut self, until: Duration) -> Result<(), String> {
        for _ in 0..100_000 {
            if !self.step(until)? {
                return self.collect();
            }
        }
        Err("no end in 100000 steps".into())
    }

    /// Runs to quiescence, then checks liveness, invariant 5 (every unit is an image
    /// the master's unit had: before the recovery, after it, or a prefix kept whole)
    /// and invariant 3 after a completion.
    fn run(&mut self) -> Result<(), String> {
        self.run_until(Duration::MAX)?;
        if self.remote.in_progress() {
            return Err("the remote is still in recovery".into());
        }
        for u in self.units.keys() {
            if !self.hist[u].contains(&self.remote_image(*u)) {
                return Err(format!(
                    "inv 5: unit {u} is a mixture: {:?}, history {:?}",
                    self.remote_image(*u),
                    self.hist[u]
                ));
            }
        }
        if let Some(m) = &self.master {
            match m.phase() {
                Phase::Ended(Outcome::Completed) => {
                    for u in self.units.keys() {
                        if self.remote_image(*u) != self.master_image(*u) {
                            return Err(format!("inv 3: unit {u} differs after completion"));
                        }
                    }
                    let remote = self.remote.last_outcome();
                    if !self.s.unprotected
                        && !matches!(remote, Some((s, TargetOutcome::Completed)) if s == m.session())
                    {
                        return Err("master completed, remote did not".into());
                    }
                }
                Phase::Ended(_) => {}
                p => return Err(format!("the master hangs in {p:?}")),
            }
        }
        Ok(())
    }

    /// Kinds of the messages sent one way.
    fn kinds(&self, dir: Dir) -> Vec<&'static str> {
        self.log
            .iter()
            .filter(|(d, _)| *d == dir)
            .map(|(_, m)| kind(m))
            .collect()
    }
}

fn kind(m: &RecoveryMessage) -> &'static str {
    match m {
        RecoveryMessage::ConfigRequest { .. } => "config?",
        RecoveryMessage::Config { .. } => "config",
        RecoveryMessage::Start { .. } => "start",
        RecoveryMessage::Ready { .. } => "ready",
        RecoveryMessage::StartRefused { .. } => "start-refused",
        RecoveryMessage::Write { .. } => "write",
        RecoveryMessage::WriteEnd { .. } => "end",
        RecoveryMessage::Reached { .. } => "reached",
        RecoveryMessage::Complete { .. } => "complete",
        RecoveryMessage::CompleteAck { .. } => "ack",
        RecoveryMessage::RolledBack { .. } => "rolled-back",
        RecoveryMessage::CompleteRefused { .. } => "complete-refused",
    }
}

fn run(s: Setup) -> Sim {
    let mut sim = Sim::new(s);
    sim.run().unwrap_or_else(|e| panic!("{e}"));
    sim
}

fn outcome(sim: &Sim) -> Outcome {
    match sim.master().phase() {
        Phase::Ended(o) => o.clone(),
        p => panic!("not ended: {p:?}"),
    }
}

// ---- step 404 -------------------------------------------------------------------

/// Seed 001 §6: 64 LDEVs on 24 disks with 4 parity groups and 2 spares give n = 16.
#[test]
fn the_seed_example_gives_n_16() {
    let c = example_config();
    assert_eq!(c.concurrency(&UserConditions::default()), 16);
    let keep = UserConditions {
        keep_raid5: true,
        ..UserConditions::default()
    };
    assert_eq!(c.concurrency(&keep), 5, "⌊64 × 2 / 24⌋");
    let none = UserConditions {
        keep_raid5: true,
        use_spares: false,
        ..UserConditions::default()
    };
    assert_eq!(c.concurrency(&none), 1, "the cache alone: one at a time");
    assert_eq!(c.save_capacity_tracks(&none), 64);
    assert_eq!(c.save_capacity_tracks(&UserConditions::default()), 64 + 48);
    // And the master takes it from the handshake.
    let sim = run(Setup::basic());
    assert_eq!(sim.master().plan().unwrap().concurrency, 16);
}

#[test]
fn messages_round_trip_as_json() {
    let report = RollbackReport {
        cause: RollbackCause::Timeout,
        rolled_back: vec![100, 101],
    };
    let all = [
        RecoveryMessage::ConfigRequest { session: 1 },
        RecoveryMessage::Config {
            session: 1,
            config: example_config(),
            conditions: Some(UserConditions::default()),
        },
        RecoveryMessage::Start {
            session: 1,
            allowed: ms(1500),
            conditions: UserConditions::default(),
            pairs: vec![PairDef {
                r_dev: 100,
                unit: 0,
            }],
        },
        RecoveryMessage::Ready { session: 1 },
        RecoveryMessage::StartRefused {
            session: 1,
            reason: StartRefusal::Busy { session: 7 },
        },
        RecoveryMessage::Write {
            session: 1,
            seq: 3,
            r_dev: 100,
            track: 9,
            update: Update::Partial {
                offset: 2,
                data: b(&[1, 2]),
            },
        },
        RecoveryMessage::Write {
            session: 1,
            seq: 4,
            r_dev: 100,
            track: 9,
            update: Update::Format(b(&[5; 4])),
        },
        RecoveryMessage::WriteEnd { session: 1, seq: 3 },
        RecoveryMessage::Reached {
            session: 1,
            r_dev: 100,
        },
        RecoveryMessage::Complete { session: 1 },
        RecoveryMessage::CompleteAck { session: 1 },
        RecoveryMessage::RolledBack {
            session: 1,
            report: report.clone(),
        },
        RecoveryMessage::CompleteRefused { session: 1, report },
    ];
    for m in all {
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            serde_json::from_str::<RecoveryMessage>(&json).unwrap(),
            m,
            "{json}"
        );
    }
}

/// §7.6 item 8: a format write unlinks the track's earlier nodes, a partial write none.
#[test]
fn format_write_unlinks_earlier_nodes_of_its_track_only() {
    let mut q = TimeSeriesQueue::new(true);
    q.record(0, 1, Update::Format(b(&[1, 1])));
    q.record(0, 2, Update::Format(b(&[2, 2])));
    q.record(
        0,
        1,
        Update::Partial {
            offset: 0,
            data: b(&[3]),
        },
    );
    assert_eq!(q.len(), 3, "a partial write needs the format data under it");
    q.record(0, 1, Update::Format(b(&[4, 4])));
    let left: Vec<(u64, Update)> = q.nodes().map(|n| (n.track, n.update.clone())).collect();
    assert_eq!(
        left,
        vec![
            (2, Update::Format(b(&[2, 2]))),
            (1, Update::Format(b(&[4, 4])))
        ]
    );
    let mut keep = TimeSeriesQueue::new(false);
    keep.record(0, 1, Update::Format(b(&[1, 1])));
    keep.record(0, 1, Update::Format(b(&[4, 4])));
    assert_eq!(keep.len(), 2, "no coalescing: every node stays");
}

// ---- the protocol, step by step -------------------------------------------------

/// §4.9: 403 → config → 405/406 → 504 → 408/508 per track → 411 per pair → 413 → ack;
/// address order within a pair; the flag is ON only in between.
#[test]
fn a_session_runs_every_step_in_order() {
    for protection in [Protection::SaveOld, Protection::HoldNew] {
        let mut sim = Sim::new(Setup {
            protection,
            ..Setup::basic()
        });
        assert!(!sim.remote.in_progress());
        sim.run_until(ms(3)).unwrap();
        assert!(sim.remote.in_progress(), "flag ON after the start");
        sim.run().unwrap();
        assert!(!sim.remote.in_progress(), "flag OFF after the completion");
        assert_eq!(
            sim.kinds(Dir::ToRemote),
            [
                "config?", "start", "write", "write", "reached", "write", "write", "reached",
                "complete"
            ]
        );
        assert_eq!(
            sim.kinds(Dir::ToMaster),
            ["config", "ready", "end", "end", "end", "end", "ack"]
        );
        let tracks: Vec<(u16, u64)> = sim
            .log
            .iter()
            .filter_map(|(_, m)| match m {
                RecoveryMessage::Write { r_dev, track, .. } => Some((*r_dev, *track)),
                _ => None,
            })
            .collect();
        assert_eq!(
            tracks,
            [(100, 1), (100, 3), (101, 0), (101, 2)],
            "address order"
        );
        assert_eq!(outcome(&sim), Outcome::Completed);
        assert_eq!(
            sim.events,
            [
                RecoveryEvent::Reached { dev: 0 },
                RecoveryEvent::Reached { dev: 1 },
                RecoveryEvent::Ended(Outcome::Completed)
            ]
        );
        assert!(sim.master().diff(0).unwrap().is_clear());
    }
}

/// Claim 3: with time-series queues the oldest update goes first.
#[test]
fn a_time_ordered_copy_sends_the_oldest_update_first() {
    let sim = run(Setup {
        ordered: true,
        ..Setup::basic()
    });
    let sent: Vec<(u16, u64)> = sim
        .log
        .iter()
        .filter_map(|(_, m)| match m {
            RecoveryMessage::Write { r_dev, track, .. } => Some((*r_dev, *track)),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [(100, 3), (100, 1), (101, 2), (101, 0)]);
    assert!(sim.master().is_ordered(0).unwrap());
}

/// Invariant 11: with n = 1, one unit at a time, in unit order.
#[test]
fn n_bounds_the_units_in_recovery() {
    let mut s = Setup::basic();
    s.devs = 3;
    s.init = (0..12u8).map(|i| [i, 0]).collect();
    s.suspended.push((2, 1, Update::Format(b(&[7, 7]))));
    s.config.concurrency = Some(1);
    let sim = run(s);
    let order: Vec<u16> = sim
        .log
        .iter()
        .filter_map(|(_, m)| match m {
            RecoveryMessage::Write { r_dev, .. } | RecoveryMessage::Reached { r_dev, .. } => {
                Some(*r_dev)
            }
            _ => None,
        })
        .collect();
    assert_eq!(order, [100, 100, 100, 101, 101, 101, 102, 102]);
}

/// §7.6 items 4–5: a write before its pair reached marks the bitmap (a sent track is
/// sent again); after it reached, it goes in order; during the completion it is held.
#[test]
fn host_writes_during_the_recovery_are_copied() {
    let mut s = Setup::basic();
    s.during = vec![
        // dev 0's track 1 is already sent at 3 ms; track 0 is new.
        (4, 0, 1, Update::Format(b(&[11, 11]))),
        (4, 0, 0, Update::Format(b(&[12, 12]))),
        // dev 0 reached by then: mirror order.
        (13, 0, 3, Update::Format(b(&[13, 13]))),
        (13, 0, 2, Update::Format(b(&[14, 14]))),
    ];
    let mut sim = Sim::new(s);
    sim.run().unwrap();
    assert_eq!(outcome(&sim), Outcome::Completed);
    let dev0: Vec<u64> = sim
        .log
        .iter()
        .filter_map(|(_, m)| match m {
            RecoveryMessage::Write {
                r_dev: 100, track, ..
            } => Some(*track),
            _ => None,
        })
        .collect();
    assert_eq!(dev0, [1, 0, 1, 3, 3, 2]);
    // During the completion the node holds host writes.
    let mut sim = Sim::new(Setup::basic());
    sim.run_until(ms(1000)).unwrap();
    let m = sim.master.as_mut().unwrap();
    assert_eq!(m.before_write(0), HostWrite::Outside, "ended");
    let mut sim = Sim::new(Setup::basic());
    while sim.master().phase() != &Phase::Completing {
        assert!(sim.step(Duration::MAX).unwrap());
    }
    assert_eq!(sim.master().before_write(0), HostWrite::Hold);
    assert_eq!(sim.master().before_write(9), HostWrite::Outside);
}

// ---- faults of §7.4 -------------------------------------------------------------

/// §7.4 item 3: the master dies at every point: before 405, between 405 and 504, after
/// every write and acknowledgement, between 411 and 412, just before and after 413. Each
/// unit ends as before the recovery or after it: after it exactly when its reached
/// report got through (or the completion did).
#[test]
fn the_master_dies_at_every_point() {
    for protection in [Protection::SaveOld, Protection::HoldNew] {
        for group in [false, true] {
            let base = Setup {
                protection,
                group,
                ..Setup::basic()
            };
            let total = run(base.clone())
                .log
                .iter()
                .filter(|(d, _)| *d == Dir::ToRemote)
                .count();
            for k in 0..=total {
                let mut sim = Sim::new(Setup {
                    faults: Faults {
                        dies_after: Some(k),
                        ..Faults::default()
                    },
                    ..base.clone()
                });
                sim.run().unwrap_or_else(|e| panic!("k = {k}: {e}"));
                let completed = k == total;
                for (u, devs) in &sim.units {
                    let reached = devs.iter().all(|d| sim.reached_seen.contains(&(1, d + R)));
                    let want = if completed || reached {
                        sim.master_image(*u)
                    } else {
                        sim.hist[u][0].clone()
                    };
                    assert_eq!(
                        sim.remote_image(*u),
                        want,
                        "{protection:?} group {group} k {k} unit {u}"
                    );
                }
                match k {
                    // 403 only, or 405 without 504: nothing was written.
                    1 | 2 => assert_eq!(sim.rvols, sim.start_img),
                    _ if completed => {
                        assert!(matches!(
                            sim.remote.last_outcome(),
                            Some((1, TargetOutcome::Completed))
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// §7.4 item 4: a lost write-end is answered by the resent write, applied once; the
/// old data is saved once (invariant 6, checked every step).
#[test]
fn a_lost_write_end_is_resent() {
    for protection in [Protection::SaveOld, Protection::HoldNew] {
        let sim = run(Setup {
            protection,
            faults: Faults {
                lose: Some((Dir::ToMaster, 2)),
                ..Faults::default()
            },
            ..Setup::basic()
        });
        assert_eq!(outcome(&sim), Outcome::Completed);
        assert_eq!(sim.master().attempt(), 1);
        assert_eq!(
            sim.kinds(Dir::ToRemote)
                .iter()
                .filter(|k| **k == "write")
                .count(),
            5
        );
    }
}

/// §7.4 item 4: a lost write-end while the master dies: rolled back.
#[test]
fn a_lost_write_end_then_master_death_rolls_back() {
    let sim = run(Setup {
        faults: Faults {
            lose: Some((Dir::ToMaster, 3)),
            dies_after: Some(4),
            ..Faults::default()
        },
        ..Setup::basic()
    });
    assert!(matches!(
        sim.remote.last_outcome(),
        Some((1, TargetOutcome::RolledBack(r))) if r.rolled_back == [100, 101]
    ));
    assert_eq!(sim.rvols, sim.start_img);
}

/// §7.4 item 4: a lost reached report does not matter if the completion gets through,
/// and rolls that unit back if the master then dies.
#[test]
fn a_lost_reached_report() {
    // ToRemote: config?, start, write, write, reached(100), ...
    let lost = Faults {
        lose: Some((Dir::ToRemote, 4)),
        ..Faults::default()
    };
    let sim = run(Setup {
        faults: lost.clone(),
        ..Setup::basic()
    });
    assert_eq!(outcome(&sim), Outcome::Completed);
    let sim = run(Setup {
        faults: Faults {
            dies_after: Some(8),
            ..lost
        },
        ..Setup::basic()
    });
    assert!(sim.reached_sent.contains(&(1, 100)));
    assert!(matches!(
        sim.remote.last_outcome(),
        Some((1, TargetOutcome::RolledBack(r))) if r.rolled_back == [100]
    ));
    assert_eq!(sim.remote_image(0), sim.hist[&0][0], "rolled back");
    assert_eq!(sim.remote_image(1), sim.master_image(1), "reached: kept");
}

/// §7.4 item 4 and §7.6 item 1: a lost completion is resent; if the remote times out
/// first, its rollback report makes the master mark the tracks again and retry.
#[test]
fn a_lost_completion() {
    let lost = Faults {
        lose: Some((Dir::ToRemote, 8)),
        ..Faults::default()
    };
    let sim = run(Setup {
        faults: lost.clone(),
        ..Setup::basic()
    });
    assert_eq!(sim.kinds(Dir::ToRemote)[8], "complete");
    assert_eq!(outcome(&sim), Outcome::Completed);
    assert_eq!(sim.master().attempt(), 1);
    let mut s = Setup::basic();
    s.config.allowed = ms(30);
    s.config.retry_interval = ms(200);
    s.faults = lost;
    let sim = run(s);
    assert_eq!(outcome(&sim), Outcome::Completed);
    assert_eq!(sim.master().attempt(), 2);
    // Both units had reached: the remote kept them, nothing is copied again.
    assert!(sim.events.iter().any(|e| matches!(
        e,
        RecoveryEvent::RolledBack { session: 1, report }
            if report.cause == RollbackCause::Timeout && report.rolled_back.is_empty()
    )));
    assert_eq!(
        sim.kinds(Dir::ToRemote)
            .iter()
            .filter(|k| **k == "write")
            .count(),
        4
    );
}

/// §7.4 item 5 and §7.6 item 2: a completion that arrives after T is refused; the
/// rollback stands.
#[test]
fn a_late_completion_is_refused() {
    for protection in [Protection::SaveOld, Protection::HoldNew] {
        let mut s = Setup {
            protection,
            ..Setup::basic()
        };
        s.config.allowed = ms(30);
        s.config.retry_interval = ms(500);
        s.config.max_attempts = 1;
        // Dev 0's reached report is lost, so its unit is rolled back at T.
        s.faults.lose = Some((Dir::ToRemote, 4));
        s.faults.delay_complete = Some(ms(100));
        let sim = run(s);
        assert_eq!(sim.kinds(Dir::ToMaster).last(), Some(&"complete-refused"));
        assert_eq!(outcome(&sim), Outcome::RolledBack(RollbackCause::Timeout));
        assert_eq!(sim.remote_image(0), sim.hist[&0][0]);
        assert_eq!(sim.remote_image(1), sim.master_image(1));
        assert_eq!(sim.master().diff(0).unwrap().count(), 2, "marked again");
        assert!(sim.master().diff(1).unwrap().is_clear());
    }
}

/// §7.4 item 6: no save area left is a typed outcome: the remote refuses the write it
/// cannot protect, rolls back and says why; the master does not retry.
#[test]
fn save_area_exhaustion_ends_the_session() {
    for protection in [Protection::SaveOld, Protection::HoldNew] {
        let mut s = Setup {
            protection,
            group: true,
            ..Setup::basic()
        };
        s.conditions = UserConditions {
            keep_raid5: true,
            use_spares: false,
            cache_threshold_tracks: 2,
        };
        let sim = run(s);
        assert_eq!(
            outcome(&sim),
            Outcome::RolledBack(RollbackCause::SaveAreaExhausted)
        );
        assert_eq!(sim.master().attempt(), 1);
        assert_eq!(
            sim.kinds(Dir::ToMaster),
            ["config", "ready", "end", "end", "rolled-back"]
        );
        assert_eq!(sim.rvols, sim.start_img);
        assert_eq!(
            sim.master().diff(0).unwrap().count() + sim.master().diff(1).unwrap().count(),
            4
        );
    }
}

/// §7.4 item 7: past the cache threshold saves spill to parity, then spare tracks; a
/// rollback reads them back from there (519).
#[test]
fn saves_spill_to_parity_then_spares_and_roll_back_from_there() {
    for protection in [Protection::SaveOld, Protection::HoldNew] {
        let mut s = Setup {
            protection,
            group: true,
            ..Setup::basic()
        };
        let row = |kind, tracks, usable| SaveRow {
            kind,
            tracks,
            usable,
        };
        s.remote.save_rows = vec![
            row(SaveRowKind::Spare, 1, false),
            row(SaveRowKind::Spare, 2, true),
            row(SaveRowKind::Parity, 1, true),
        ];
        s.conditions.cache_threshold_tracks = 1;
        // ToRemote: config?, start, 2 writes, reached, 2 writes: the master dies before
        // the second reached report.
        s.faults.dies_after = Some(7);
        let mut sim = Sim::new(s);
        sim.run_until(ms(50)).unwrap();
        assert!(sim.remote.in_progress());
        assert_eq!(
            sim.remote.parity_rows_in_use(),
            [2],
            "parity borrowed: no RAID5"
        );
        sim.run().unwrap();
        assert!(sim.remote.parity_rows_in_use().is_empty());
        assert_eq!(
            sim.rvols, sim.start_img,
            "restored from cache, parity and spare"
        );
    }
}

/// §7.6 item 15: both sides hold conditions and they differ: nothing starts.
#[test]
fn disagreeing_conditions_stop_before_the_start() {
    let mut s = Setup::basic();
    s.config.conditions = Some(UserConditions {
        keep_raid5: true,
        ..UserConditions::default()
    });
    let sim = run(s);
    assert!(
        matches!(outcome(&sim), Outcome::ConditionsDisagree { master, remote }
        if master.keep_raid5 && !remote.keep_raid5)
    );
    assert_eq!(sim.kinds(Dir::ToRemote), ["config?"]);
    // The remote checks too, whatever the master says.
    let mut t = RecoveryTarget::new(
        Protection::SaveOld,
        example_config(),
        Some(UserConditions::default()),
    );
    let mut v = Vols::new();
    let other = UserConditions {
        use_spares: false,
        ..UserConditions::default()
    };
    t.handle_message(
        RecoveryMessage::Start {
            session: 1,
            allowed: ms(10),
            conditions: other,
            pairs: vec![],
        },
        &mut v,
        ms(0),
    );
    assert!(matches!(
        t.poll_message(),
        Some(RecoveryMessage::StartRefused {
            reason: StartRefusal::ConditionsDisagree { .. },
            ..
        })
    ));
    assert!(!t.in_progress());
}

/// One session at a time on the remote; a second one is refused as busy.
#[test]
fn a_busy_remote_refuses_a_second_session() {
    let mut sim = Sim::new(Setup::basic());
    let mut v = Vols::new();
    sim.remote.handle_message(
        RecoveryMessage::Start {
            session: 77,
            allowed: ms(10_000),
            conditions: UserConditions::default(),
            pairs: vec![],
        },
        &mut v,
        ms(0),
    );
    sim.remote.poll_message();
    sim.run_until(ms(100)).unwrap();
    assert_eq!(
        outcome(&sim),
        Outcome::Refused(StartRefusal::Busy { session: 77 })
    );
}

// ---- properties -----------------------------------------------------------------

fn cases() -> u32 {
    std::env::var("FCSIM_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn update() -> impl Strategy<Value = Update> {
    prop_oneof![
        any::<[u8; 2]>().prop_map(|v| Update::Format(b(&v))),
        (0u32..2, any::<u8>()).prop_map(|(offset, v)| Update::Partial {
            offset,
            data: b(&[v])
        }),
    ]
}

/// A random session: 1–3 devices of 2–5 tracks, random images, suspended writes,
/// host writes during the recovery, save areas, T and retry interval, and faults.
fn setup() -> impl Strategy<Value = Setup> {
    (1u16..=3, 2u64..=5)
        .prop_flat_map(|(devs, tracks)| {
            let write = move || (0..devs, 0..tracks, update());
            (
                (
                    Just((devs, tracks)),
                    proptest::collection::vec(
                        any::<[u8; 2]>(),
                        usize::try_from(u64::from(devs) * tracks).unwrap(),
                    ),
                    proptest::collection::vec(write(), 0..12),
                    proptest::collection::vec((0u64..60, write()), 0..6),
                    any::<(bool, bool, bool, bool)>(),
                ),
                (
                    1u32..8,
                    0u64..10,
                    proptest::collection::vec(
                        (any::<bool>(), 0u64..6, proptest::bool::weighted(0.8)),
                        0..4,
                    ),
                    any::<(bool, bool)>(),
                ),
                (
                    proptest::option::weighted(0.6, 0usize..30),
                    proptest::option::weighted(0.3, (any::<bool>(), 0usize..25)),
                    proptest::bool::weighted(0.15),
                    10u64..300,
                    3u64..60,
                ),
            )
        })
        .prop_map(
            |(
                ((devs, tracks), init, suspended, during, (group, ordered, coalesce, on_master)),
                (ldevs, cache, rows, (keep_raid5, use_spares)),
                (dies_after, lose, delay, allowed, retry),
            )| Setup {
                devs,
                tracks,
                init,
                suspended,
                during: during
                    .into_iter()
                    .map(|(at, (d, t, u))| (at, d, t, u))
                    .collect(),
                group,
                ordered,
                coalesce,
                protection: Protection::SaveOld,
                remote: RemoteConfig {
                    logical_devices: ldevs,
                    disks: 8,
                    cache_tracks: 6,
                    save_rows: rows
                        .into_iter()
                        .map(|(spare, tracks, usable)| SaveRow {
                            kind: if spare {
                                SaveRowKind::Spare
                            } else {
                                SaveRowKind::Parity
                            },
                            tracks,
                            usable,
                        })
                        .collect(),
                },
                conditions: UserConditions {
                    keep_raid5,
                    use_spares,
                    cache_threshold_tracks: cache,
                },
                conditions_on_master: on_master,
                config: RecoveryConfig {
                    allowed: ms(allowed),
                    conditions: None,
                    concurrency: None,
                    retry_interval: ms(retry),
                    max_attempts: 3,
                },
                faults: Faults {
                    dies_after,
                    lose: lose.map(|(up, i)| (if up { Dir::ToRemote } else { Dir::ToMaster }, i)),
                    delay_complete: delay.then_some(ms(400)),
                },
                unprotected: false,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Seed 001 §7.5 over random sessions and faults (the master dies after k messages,
    /// one lost message, a completion delayed past T, T too short, save areas too
    /// small), per-device and group consistency units, address and time order, with and
    /// without coalescing, run once with each variant:
    /// every step: invariants 6, 7, 8 (audit), 11, 12 (time order, no coalescing, A),
    /// 15, 16; every rollback: 1 (exact restore), 10 (exactly the unreached units); a
    /// late completion is refused and changes nothing; at the end: 5 (each unit is an
    /// image the master's unit had, never a mixture), 2 (kept units), 3 (after a
    /// completion the remote equals the master), liveness; and 4: variants A and B
    /// leave identical remote images and outcomes.
    /// Broken cores it failed on: variant A saving the new data of track 0 (inv 6; inv
    /// 1 with the audit off); a rollback restoring only even R-DEVs (inv 1); variant B
    /// applying held data at a rollback (inv 1) or dropping it at release (inv 3); a
    /// late completion acknowledged (refusal check); an exhausted save area written
    /// unprotected (inv 7); reached reports sent before the last write-end (inv 16); no
    /// re-marking after a rollback (inv 3); admission ignoring n (inv 11); time-series
    /// queues ignored (inv 12); coalescing on partial writes (inv 3); variant B's
    /// cache unbounded with the audit off (inv 4).
    #[test]
    fn every_unit_ends_before_or_after_the_recovery(s in setup()) {
        let mut a = Sim::new(s.clone());
        a.run().map_err(|e| TestCaseError::fail(format!("A: {e}")))?;
        let mut bsim = Sim::new(Setup { protection: Protection::HoldNew, ..s });
        bsim.run().map_err(|e| TestCaseError::fail(format!("B: {e}")))?;
        prop_assert_eq!(&a.rvols, &bsim.rvols, "inv 4: A and B differ");
        prop_assert_eq!(a.remote.last_outcome(), bsim.remote.last_outcome(), "inv 4: outcomes differ");
        prop_assert_eq!(a.master.map(|m| m.phase().clone()), bsim.master.map(|m| m.phase().clone()), "inv 4");
    }

    /// Invariant 14: coalescing format writes changes no final image (the skipped nodes
    /// are wholly overwritten), and never sends more. Failed on coalescing on partial
    /// writes (Fig. 13 read literally).
    #[test]
    fn coalescing_changes_no_final_image(s in setup()) {
        let s = Setup { ordered: true, during: Vec::new(), faults: Faults::default(), ..s };
        let mut plain = Sim::new(Setup { coalesce: false, ..s.clone() });
        plain.run().map_err(TestCaseError::fail)?;
        let mut co = Sim::new(Setup { coalesce: true, ..s });
        co.run().map_err(TestCaseError::fail)?;
        if outcome(&plain) == Outcome::Completed && outcome(&co) == Outcome::Completed {
            prop_assert_eq!(&plain.rvols, &co.rvols);
            if plain.master().attempt() == 1 && co.master().attempt() == 1 {
                prop_assert!(co.kinds(Dir::ToRemote).len() <= plain.kinds(Dir::ToRemote).len());
            }
        }
    }
}

/// Invariant 13, the problem the patent solves: an address-order copy with neither save
/// nor hold, interrupted by the master's death, leaves some unit equal to no image the
/// master ever had. Proptest must find such a case; the protected remote (variant A)
/// given the same case must not.
#[test]
fn an_unprotected_address_order_copy_is_found_inconsistent() {
    let strategy = setup().prop_map(|s| Setup {
        ordered: false,
        during: Vec::new(),
        faults: Faults {
            lose: None,
            delay_complete: None,
            ..s.faults
        },
        unprotected: true,
        ..s
    });
    let config = Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let found = runner.run(&strategy, |s| {
        Sim::new(s).run().map_err(TestCaseError::fail)
    });
    let Err(TestError::Fail(why, s)) = found else {
        panic!("no mixed image found: {found:?}");
    };
    assert!(why.message().contains("inv 5"), "{why}");
    eprintln!("mixed image found: {why}\n{s:#?}");
    Sim::new(Setup {
        unprotected: false,
        remote: example_config(),
        conditions: UserConditions::default(),
        ..s
    })
    .run()
    .unwrap();
}
