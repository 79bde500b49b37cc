//! Property tests of the relay cores over a model (seed 002 §7.5), each named after the
//! invariant it asserts.
//!
//! [`World`] wires one to three [`Primary`]s (one per source, each writing its own LU),
//! one to three [`Relay`]s of random configuration and a [`Standby`] the way the relay
//! node and the arrays will: primary → relay exchanges in order per relay, relay ↔
//! standby messages delivered in any order or lost. A schedule of random steps (host
//! writes and restart points, deliveries, losses, local write completions, relay crashes,
//! traffic changes, time) runs, optionally with a disaster at the primary site at a
//! random step; then the world quiesces: without a disaster every relay is asked to
//! forward and everything is delivered, with one the standby takes over (drain, fence).
//! The checks run at every action and step, and at the end; each property asserts the
//! checks of its invariants over the schedules that exercise them.
//!
//! Cases: `FCSIM_PROP_CASES` (default 64). A failure prints the schedule.
//!
//! Breakages confirmed to fail, one at a time, then restored:
//! - relay acknowledges on the command, before the data: R4, R1, R2, R3, R5, R12, R13;
//! - cut-through sends to the record's end, unstored bytes as zeros: R6;
//! - relay frees a region once its data is sent, before the standby's ack: R5, R1, R2;
//! - a crash drops the non-volatile log too: R3;
//! - the applier lands records on arrival, out of order: R13, D1, D4, D6, H2, R12;
//! - the standby applies a duplicate again: R12;
//! - split-by-speed drops the remainder blocks: R11;
//! - host completion ignores the relay acks: R11, R1, R2;
//! - host completion waits for its own records only, not for every earlier one: R2;
//! - the epoch commits in reverse order (first writer wins): D6, D1;
//! - takeover without the snapshot rollback, or applying the open epoch: H2 (and H3);
//! - no refusal after the fence: H3;
//! - the snapshot's first write without the copy: S4/S9; create without freeing the
//!   old block: S2; block 0 overwritten in place: S3;
//! - a per-piece replica restored with a piece missing: F1, F2.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::fec::encode;
use super::*;

/// Bytes per block.
const BB: usize = 4;
/// Blocks per LU.
const LU_BLOCKS: u64 = 16;

fn cases() -> u32 {
    std::env::var("FCSIM_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- the schedule -----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Write {
        source: usize,
        lba: u64,
        blocks: u64,
        val: u8,
    },
    RestartPoint {
        source: usize,
    },
    /// Deliver the next primary → relay message of this relay.
    Up(usize),
    /// Deliver one relay ↔ standby message, any of them.
    Down(usize),
    /// Lose one relay ↔ standby message.
    Lose(usize),
    /// One local media write completes.
    LocalDone(usize),
    Crash(usize),
    Traffic(usize, u64),
    Tick(u64),
}

#[derive(Debug, Clone)]
struct Setup {
    sources: usize,
    relays: Vec<RelayConfig>,
    selection: Selection,
    consistency: Consistency,
    /// Bytes per upstream data frame.
    chunk: usize,
    ops: Vec<Op>,
    /// The primary site is lost before this step (after the last: at the end).
    disaster: Option<usize>,
}

fn relay_config(nv_only: bool, cut_only: bool) -> impl Strategy<Value = RelayConfig> {
    (any::<bool>(), any::<bool>(), 0u8..4, 0u64..10).prop_map(move |(cut, nv, sched, x)| {
        let nv = nv || nv_only;
        let schedule = match sched {
            _ if !nv => Schedule::Immediate,
            0 => Schedule::Immediate,
            1 => Schedule::Deferred(Triggers {
                traffic_at_most: Some(100),
                max_age: Some(ms(5 + x)),
                clock: None,
            }),
            2 => Schedule::Deferred(Triggers {
                clock: Some(ClockTime {
                    first: ms(10 + x),
                    period: Some(ms(20)),
                }),
                ..Triggers::default()
            }),
            _ => Schedule::Hybrid {
                log_at_traffic: 500,
            },
        };
        RelayConfig {
            forwarding: if cut || cut_only {
                Forwarding::CutThrough
            } else {
                Forwarding::StoreAndForward
            },
            durability: if nv {
                Durability::NonVolatile
            } else {
                Durability::Volatile
            },
            schedule,
            capacity_bytes: 96,
            resend_after: ms(10),
        }
    })
}

fn any_selection() -> BoxedStrategy<Selection> {
    prop_oneof![
        Just(Selection::RoundRobin),
        Just(Selection::LeastLoaded),
        any::<u64>().prop_map(|seed| Selection::Random { seed }),
        (1u16..5).prop_map(|portions| Selection::SplitBySpeed { portions }),
        Just(Selection::Duplicate),
    ]
    .boxed()
}

fn op(sources: usize, relays: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..sources, 0..LU_BLOCKS - 3, 1u64..=4, any::<u8>())
            .prop_map(|(source, lba, blocks, val)| Op::Write { source, lba, blocks, val }),
        1 => (0..sources).prop_map(|source| Op::RestartPoint { source }),
        6 => (0..relays).prop_map(Op::Up),
        6 => any::<usize>().prop_map(Op::Down),
        1 => any::<usize>().prop_map(Op::Lose),
        3 => any::<usize>().prop_map(Op::LocalDone),
        1 => (0..relays).prop_map(Op::Crash),
        1 => (0..relays, prop_oneof![Just(0u64), Just(1000)]).prop_map(|(r, l)| Op::Traffic(r, l)),
        2 => (1u64..15).prop_map(Op::Tick),
    ]
}

/// Schedules: `selection` and `consistency` as given; relays all non-volatile or all
/// cut-through when asked; a disaster never, always, or at random.
fn setup(
    selection: BoxedStrategy<Selection>,
    consistency: BoxedStrategy<Consistency>,
    nv_only: bool,
    cut_only: bool,
    disaster: Option<bool>,
) -> impl Strategy<Value = Setup> {
    (1usize..=3, 1usize..=3, selection, consistency, 1usize..=9).prop_flat_map(
        move |(sources, relays, selection, consistency, chunk)| {
            let when = match disaster {
                Some(false) => Just(None).boxed(),
                Some(true) => (0usize..=120).prop_map(Some).boxed(),
                None => proptest::option::of(0usize..=120).boxed(),
            };
            (
                proptest::collection::vec(relay_config(nv_only, cut_only), relays),
                proptest::collection::vec(op(sources, relays), 0..120),
                when,
            )
                .prop_map(move |(relays, ops, disaster)| Setup {
                    sources,
                    relays,
                    selection,
                    consistency,
                    chunk,
                    ops,
                    disaster,
                })
        },
    )
}

fn immediate() -> BoxedStrategy<Consistency> {
    Just(Consistency::Immediate).boxed()
}

fn restart_points() -> BoxedStrategy<Consistency> {
    prop_oneof![Just(Consistency::Epochs), Just(Consistency::Snapshots)].boxed()
}

// ---- the world ----------------------------------------------------------------------

/// A primary → relay message.
#[derive(Debug, Clone)]
enum Up {
    Cmd(Record),
    Data {
        id: RecordId,
        offset: u64,
        data: Bytes,
    },
}

/// A relay ↔ standby message.
#[derive(Debug, Clone)]
enum Down {
    Open(usize, Header),
    Ready(usize, RecordId),
    Data(usize, RecordId, u64, Bytes),
    Ack(usize, RecordId),
}

impl Down {
    fn of(&self, relay: usize, id: Option<RecordId>) -> bool {
        let (r, i) = match self {
            Down::Open(r, h) => (*r, h.id),
            Down::Ready(r, i) | Down::Data(r, i, ..) | Down::Ack(r, i) => (*r, *i),
        };
        r == relay && id.is_none_or(|id| id == i)
    }
}

/// A downstream exchange being reassembled: its command and the bytes so far.
type Partial = (Header, Vec<Option<u8>>);

/// What the host asked for.
#[derive(Debug, Clone)]
struct HostOp {
    source: usize,
    ids: Vec<RecordId>,
    /// A write's (lba, blocks); `None` for a restart point (with its number).
    range: Option<(u64, u64)>,
    point: u64,
}

struct World {
    consistency: Consistency,
    chunk: usize,
    now: Duration,
    /// The primary site stands.
    alive: bool,
    primaries: Vec<Primary>,
    relays: Vec<Relay>,
    standby: Standby,
    up: Vec<VecDeque<Up>>,
    down: Vec<Down>,
    /// The standby node's reassembly of each open downstream exchange.
    assembly: BTreeMap<(usize, RecordId), Partial>,
    local_pending: Vec<u64>,
    next_host: u64,

    // The oracle.
    hosts: BTreeMap<u64, HostOp>,
    records: BTreeMap<RecordId, Record>,
    local_done: BTreeSet<u64>,
    /// Relay acknowledgements the primaries got.
    relay_acked: BTreeSet<RecordId>,
    completed: BTreeSet<u64>,
    /// Records of completed host requests.
    acked: BTreeSet<RecordId>,
    /// Bytes of each record delivered to each relay in its current exchange.
    delivered: Vec<BTreeMap<RecordId, u64>>,
    /// Records each relay acknowledged and the standby has not acknowledged to it.
    custody: Vec<BTreeSet<RecordId>>,
    /// Per source, the first record lost with a volatile relay.
    lost_from: BTreeMap<SourceId, u64>,
    /// Writes landed at the standby.
    landed: BTreeSet<RecordId>,
    last_landed: BTreeMap<SourceId, u64>,
    primary_image: Vec<Vec<u8>>,
    /// Per source, the primary's image at each restart point (index 0: the start).
    images_at: Vec<Vec<Vec<u8>>>,
    app_states: Vec<Vec<Bytes>>,
    /// The standby's LUs (physical under snapshots).
    media: Vec<Vec<u8>>,
    tables: Vec<SnapshotTable>,
    points: BTreeMap<SourceId, u64>,
    fenced: bool,
    resumed: BTreeSet<SourceId>,
    violations: Vec<(&'static str, String)>,
}

fn src(s: usize) -> SourceId {
    SourceId(u32::try_from(s).unwrap())
}

fn rid(r: usize) -> RelayId {
    RelayId(u16::try_from(r).unwrap())
}

fn at(block: u64) -> usize {
    usize::try_from(block).unwrap() * BB
}

impl World {
    fn new(s: &Setup) -> World {
        let n = s.relays.len();
        let relays: Vec<RelayId> = (0..n).map(rid).collect();
        let physical = if s.consistency == Consistency::Snapshots {
            2 * LU_BLOCKS
        } else {
            LU_BLOCKS
        };
        World {
            consistency: s.consistency,
            chunk: s.chunk,
            now: Duration::ZERO,
            alive: true,
            primaries: (0..s.sources)
                .map(|i| {
                    Primary::new(
                        src(i),
                        relays.clone(),
                        s.selection,
                        u32::try_from(BB).unwrap(),
                    )
                    .unwrap()
                })
                .collect(),
            relays: s.relays.iter().map(|c| Relay::new(*c).unwrap()).collect(),
            standby: Standby::new(StandbyConfig {
                consistency: s.consistency,
                sources: (0..s.sources).map(src).collect(),
                relays,
                drain_timeout: Duration::from_secs(30),
            }),
            up: vec![VecDeque::new(); n],
            down: Vec::new(),
            assembly: BTreeMap::new(),
            local_pending: Vec::new(),
            next_host: 0,
            hosts: BTreeMap::new(),
            records: BTreeMap::new(),
            local_done: BTreeSet::new(),
            relay_acked: BTreeSet::new(),
            completed: BTreeSet::new(),
            acked: BTreeSet::new(),
            delivered: vec![BTreeMap::new(); n],
            custody: vec![BTreeSet::new(); n],
            lost_from: BTreeMap::new(),
            landed: BTreeSet::new(),
            last_landed: BTreeMap::new(),
            primary_image: vec![vec![0; at(LU_BLOCKS)]; s.sources],
            images_at: vec![vec![vec![0; at(LU_BLOCKS)]]; s.sources],
            app_states: vec![vec![Bytes::new()]; s.sources],
            media: vec![vec![0; at(physical)]; s.sources],
            tables: (0..s.sources)
                .map(|_| SnapshotTable::new(LU_BLOCKS, physical).unwrap())
                .collect(),
            points: BTreeMap::new(),
            fenced: false,
            resumed: BTreeSet::new(),
            violations: Vec::new(),
        }
    }

    fn fail(&mut self, inv: &'static str, what: String) {
        self.violations.push((inv, what));
    }

    /// Violations of these invariants.
    fn of(&self, invs: &[&str]) -> Vec<&(&'static str, String)> {
        self.violations
            .iter()
            .filter(|(i, _)| invs.contains(i))
            .collect()
    }

    fn exempt(&self, id: RecordId) -> bool {
        self.lost_from.get(&id.source).is_some_and(|l| *l <= id.seq)
    }

    /// The standby's logical image of source `s`'s LU.
    fn standby_view(&self, s: usize) -> Vec<u8> {
        if self.consistency != Consistency::Snapshots {
            return self.media[s].clone();
        }
        (0..LU_BLOCKS)
            .flat_map(|b| {
                let p = at(self.tables[s].read(b).unwrap());
                self.media[s][p..p + BB].to_vec()
            })
            .collect()
    }

    // ---- steps ----

    fn run(setup: &Setup) -> World {
        let mut w = World::new(setup);
        for (i, op) in setup.ops.iter().enumerate() {
            if setup.disaster == Some(i) {
                w.disaster();
            }
            w.step(op);
            w.check_always();
        }
        if setup.disaster.is_some_and(|d| d >= setup.ops.len()) {
            w.disaster();
        }
        w.quiesce();
        w.check_end();
        w
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Write {
                source,
                lba,
                blocks,
                val,
            } if self.alive => {
                let host = self.host();
                let data: Vec<u8> = (0..at(blocks))
                    .map(|i| val.wrapping_add(u8::try_from(i & 0xff).unwrap()))
                    .collect();
                self.primary_image[source][at(lba)..at(lba + blocks)].copy_from_slice(&data);
                let p = &mut self.primaries[source];
                let before = p.last_seq();
                p.write(host, u16::try_from(source).unwrap(), lba, Bytes::from(data))
                    .unwrap();
                let ids = (before + 1..=p.last_seq())
                    .map(|seq| RecordId {
                        source: src(source),
                        seq,
                    })
                    .collect();
                self.hosts.insert(
                    host,
                    HostOp {
                        source,
                        ids,
                        range: Some((lba, blocks)),
                        point: 0,
                    },
                );
                self.local_pending.push(host);
            }
            Op::RestartPoint { source } if self.alive => {
                let host = self.host();
                let point = self.images_at[source].len() as u64;
                let state = Bytes::from(format!("source {source} point {point}"));
                let p = &mut self.primaries[source];
                assert_eq!(p.restart_point(host, state.clone()).unwrap(), point);
                let id = RecordId {
                    source: src(source),
                    seq: p.last_seq(),
                };
                self.images_at[source].push(self.primary_image[source].clone());
                self.app_states[source].push(state);
                self.hosts.insert(
                    host,
                    HostOp {
                        source,
                        ids: vec![id],
                        range: None,
                        point,
                    },
                );
            }
            Op::Write { .. } | Op::RestartPoint { .. } => {}
            Op::Up(r) => self.deliver_up(r),
            Op::Down(pick) => {
                if !self.down.is_empty() {
                    self.deliver_down(pick % self.down.len());
                }
            }
            Op::Lose(pick) => {
                if !self.down.is_empty() {
                    self.down.remove(pick % self.down.len());
                }
            }
            Op::LocalDone(pick) => {
                if !self.local_pending.is_empty() {
                    let host = self.local_pending.remove(pick % self.local_pending.len());
                    self.local_done.insert(host);
                    let s = self.hosts[&host].source;
                    self.primaries[s].local_done(host);
                }
            }
            Op::Crash(r) => self.crash(r),
            Op::Traffic(r, load) => self.relays[r].observe_traffic(load, self.now),
            Op::Tick(n) => self.tick(ms(n)),
        }
        self.settle();
    }

    fn host(&mut self) -> u64 {
        self.next_host += 1;
        self.next_host
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        for r in &mut self.relays {
            if r.poll_timeout().is_some_and(|t| t <= self.now) {
                r.handle_timeout(self.now);
            }
        }
        if self.standby.poll_timeout().is_some_and(|t| t <= self.now) {
            self.standby.handle_timeout(self.now);
        }
    }

    fn deliver_up(&mut self, r: usize) {
        let now = self.now;
        match self.up[r].pop_front() {
            None => {}
            Some(Up::Cmd(record)) => {
                let id = record.id();
                match self.relays[r].handle_command(record.header, now) {
                    Admit::Ready => {
                        self.delivered[r].insert(id, 0);
                        let mut offset = 0;
                        for c in record.data.chunks(self.chunk) {
                            self.up[r].push_back(Up::Data {
                                id,
                                offset,
                                data: Bytes::copy_from_slice(c),
                            });
                            offset += c.len() as u64;
                        }
                    }
                    Admit::Busy => {
                        if self.alive {
                            self.primaries[id.source.0 as usize].send_failed(rid(r), id.seq);
                        }
                    }
                    Admit::AlreadyHeld | Admit::Fenced => {}
                }
            }
            Some(Up::Data { id, offset, data }) => {
                self.relays[r].handle_data(id, offset, &data, now);
                if let Some(d) = self.delivered[r].get_mut(&id).filter(|d| **d == offset) {
                    *d += data.len() as u64;
                }
            }
        }
    }

    fn deliver_down(&mut self, i: usize) {
        let now = self.now;
        match self.down.remove(i) {
            Down::Open(r, header) => {
                let len = usize::try_from(header.len).unwrap();
                self.assembly
                    .insert((r, header.id), (header, vec![None; len]));
                if len == 0 {
                    self.land(r, header.id);
                } else {
                    self.down.push(Down::Ready(r, header.id));
                }
            }
            Down::Ready(r, id) => self.relays[r].handle_downstream_ready(id, now),
            Down::Data(r, id, offset, data) => {
                let Some((_, buf)) = self.assembly.get_mut(&(r, id)) else {
                    return;
                };
                let o = usize::try_from(offset).unwrap();
                for (k, b) in data.iter().enumerate() {
                    if let Some(slot) = buf.get_mut(o + k) {
                        *slot = Some(*b);
                    }
                }
                if buf.iter().all(Option::is_some) {
                    self.land(r, id);
                }
            }
            Down::Ack(r, id) => {
                self.relays[r].handle_downstream_ack(id, now);
                self.custody[r].remove(&id);
            }
        }
    }

    /// A whole record reached the standby from relay `r`.
    fn land(&mut self, r: usize, id: RecordId) {
        let (header, buf) = self.assembly.remove(&(r, id)).unwrap();
        let record = Record {
            header,
            data: buf.into_iter().map(Option::unwrap).collect(),
        };
        if self.records.get(&id) != Some(&record) {
            self.fail(
                "R6",
                format!("relay {r} delivered {id:?} with other bytes than the primary sent"),
            );
        }
        match self.standby.receive(record) {
            Reply::Received | Reply::Duplicate => self.down.push(Down::Ack(r, id)),
            Reply::Fenced if !self.fenced => {
                self.fail("H3", format!("{id:?} refused before the takeover"));
            }
            Reply::Fenced => {}
        }
    }

    fn crash(&mut self, r: usize) {
        let nv = self.relays[r].config().durability == Durability::NonVolatile;
        if !nv {
            for id in std::mem::take(&mut self.custody[r]) {
                let elsewhere = self.standby.has(id)
                    || (0..self.relays.len()).any(|o| o != r && self.relays[o].holds(id));
                if !elsewhere {
                    let l = self.lost_from.entry(id.source).or_insert(u64::MAX);
                    *l = (*l).min(id.seq);
                }
            }
        }
        self.relays[r].crash(self.now);
        for id in self.custody[r].clone() {
            if !self.relays[r].holds(id) {
                self.fail(
                    "R3",
                    format!("non-volatile relay {r} lost {id:?} in a crash"),
                );
            }
        }
        let relay = &self.relays[r];
        self.delivered[r].retain(|id, _| relay.holds(*id));
        self.up[r].clear();
        self.down.retain(|d| !d.of(r, None));
        self.assembly.retain(|(o, _), _| *o != r);
        if self.alive {
            for p in &mut self.primaries {
                p.relay_down(rid(r));
                p.relay_up(rid(r));
            }
        }
    }

    fn disaster(&mut self) {
        self.alive = false;
        self.local_pending.clear();
        for (r, q) in self.up.iter_mut().enumerate() {
            q.clear();
            for id in self.delivered[r].keys() {
                self.relays[r].handle_upstream_aborted(*id, self.now);
            }
        }
        self.settle();
    }

    // ---- actions ----

    fn settle(&mut self) {
        loop {
            let mut any = false;
            for s in 0..self.primaries.len() {
                while let Some(a) = self.primaries[s].poll_action() {
                    any = true;
                    self.on_primary(a);
                }
            }
            for r in 0..self.relays.len() {
                while let Some(a) = self.relays[r].poll_action() {
                    any = true;
                    self.on_relay(r, a);
                }
            }
            while let Some(a) = self.standby.poll_action() {
                any = true;
                self.on_standby(a);
            }
            if !any {
                return;
            }
        }
    }

    fn on_primary(&mut self, a: PrimaryAction) {
        match a {
            PrimaryAction::Send { relay, record } => {
                self.records.insert(record.id(), record.clone());
                self.up[usize::from(relay.0)].push_back(Up::Cmd(record));
            }
            PrimaryAction::Complete { host } => {
                if !self.completed.insert(host) {
                    self.fail("R12", format!("host request {host} completed twice"));
                }
                let op = self.hosts[&host].clone();
                if op.range.is_some() && !self.local_done.contains(&host) {
                    self.fail(
                        "R7",
                        format!("host write {host} completed before its local write"),
                    );
                }
                if let Some(id) = op.ids.iter().find(|id| !self.relay_acked.contains(id)) {
                    self.fail(
                        "R11",
                        format!("host request {host} completed before {id:?} reached a relay"),
                    );
                }
                if let Some((lba, blocks)) = op.range {
                    let mut pieces: Vec<(u64, u64)> = op
                        .ids
                        .iter()
                        .filter_map(|id| self.records.get(id))
                        .filter_map(|r| match r.header.kind {
                            Kind::Write { lba, .. } => Some((lba, r.header.len / BB as u64)),
                            Kind::RestartPoint { .. } => None,
                        })
                        .collect();
                    pieces.sort_unstable();
                    let mut next = lba;
                    let exact = pieces.len() == op.ids.len()
                        && pieces.iter().all(|(l, n)| {
                            let ok = *l == next && *n > 0;
                            next = l + n;
                            ok
                        })
                        && next == lba + blocks;
                    if !exact {
                        self.fail(
                            "R11",
                            format!("portions {pieces:?} do not partition ({lba}, {blocks})"),
                        );
                    }
                }
                self.acked.extend(op.ids);
            }
        }
    }

    fn on_relay(&mut self, r: usize, a: RelayAction) {
        match a {
            RelayAction::AckUpstream { id } => {
                let len = self.records[&id].header.len;
                let got = self.delivered[r].get(&id).copied().unwrap_or(0);
                if got != len {
                    self.fail(
                        "R4",
                        format!("relay {r} acknowledged {id:?} with {got} of {len} bytes"),
                    );
                }
                self.custody[r].insert(id);
                if self.alive {
                    self.relay_acked.insert(id);
                    self.primaries[id.source.0 as usize].relay_acked(id.seq);
                }
            }
            RelayAction::OpenDownstream { header } => self.down.push(Down::Open(r, header)),
            RelayAction::SendDownstream { id, offset, data } => {
                let stored = self.delivered[r].get(&id).copied().unwrap_or(0);
                let end = offset + data.len() as u64;
                let record = &self.records[&id];
                if end > stored {
                    self.fail(
                        "R6",
                        format!("relay {r} sent {id:?} up to {end} with {stored} stored"),
                    );
                } else if self.relays[r].config().forwarding == Forwarding::StoreAndForward
                    && stored != record.header.len
                {
                    self.fail(
                        "R6",
                        format!("store-and-forward relay {r} sent part of {id:?}"),
                    );
                }
                self.down.push(Down::Data(r, id, offset, data));
            }
            RelayAction::AbortDownstream { id } => {
                self.down.retain(|d| !d.of(r, Some(id)));
                self.assembly.remove(&(r, id));
            }
            RelayAction::Drained => self.standby.relay_drained(rid(r), self.now),
        }
    }

    fn on_standby(&mut self, a: StandbyAction) {
        match a {
            StandbyAction::Write { id, lun, lba, data } => {
                if self.fenced {
                    self.fail("H3", format!("{id:?} applied after the fence"));
                }
                if !self.landed.insert(id) {
                    self.fail("R12", format!("{id:?} applied twice"));
                }
                let previous = self
                    .records
                    .range(
                        RecordId {
                            source: id.source,
                            seq: 0,
                        }..id,
                    )
                    .filter(|(_, r)| matches!(r.header.kind, Kind::Write { .. }))
                    .map(|(i, _)| i.seq)
                    .next_back()
                    .unwrap_or(0);
                let last = self.last_landed.insert(id.source, id.seq).unwrap_or(0);
                if last != previous {
                    self.fail("R13", format!("{id:?} applied after write {last}, not after write {previous}: not a prefix"));
                }
                let s = usize::from(lun);
                for (k, block) in data.chunks(BB).enumerate() {
                    let lbn = lba + k as u64;
                    let pbn = if self.consistency == Consistency::Snapshots {
                        let w = self.tables[s].write(lbn).unwrap();
                        if let Some(from) = w.copy_from {
                            self.media[s].copy_within(at(from)..at(from + 1), at(w.pbn));
                        }
                        w.pbn
                    } else {
                        lbn
                    };
                    self.media[s][at(pbn)..at(pbn + 1)].copy_from_slice(block);
                }
            }
            StandbyAction::RestartPoint { source, point } => {
                let last = self.points.insert(source, point).unwrap_or(0);
                if point != last + 1 {
                    self.fail(
                        "D4",
                        format!("{source:?} reached restart point {point} after {last}"),
                    );
                }
                let s = source.0 as usize;
                match self.consistency {
                    Consistency::Snapshots => {
                        self.tables[s].create();
                    }
                    Consistency::Epochs => {
                        if self.standby_view(s)
                            != self.images_at[s][usize::try_from(point).unwrap()]
                        {
                            self.fail("D6", format!("{source:?} committed epoch {point} with other data than the primary's"));
                        }
                    }
                    Consistency::Immediate => {}
                }
            }
            StandbyAction::ForwardRequest { relay } => {
                self.relays[usize::from(relay.0)].handle_forward_request(self.now)
            }
            StandbyAction::Fence { .. } => self.fenced = true,
            StandbyAction::Rollback { source } => {
                self.tables[source.0 as usize].restore();
            }
            StandbyAction::Resume { source, point } => self.resume(source, point),
        }
    }

    fn resume(&mut self, source: SourceId, point: Option<RestartPoint>) {
        self.resumed.insert(source);
        if !self.fenced {
            self.fail("H3", format!("{source:?} resumed before the fence"));
        }
        if self.consistency == Consistency::Immediate {
            if point.is_some() {
                self.fail(
                    "H2",
                    "a restart point resumed under immediate landing".into(),
                );
            }
            return;
        }
        let s = source.0 as usize;
        let k = point.as_ref().map_or(0, |p| p.point);
        let i = usize::try_from(k).unwrap();
        if self.standby_view(s) != self.images_at[s][i] {
            self.fail(
                "H2",
                format!("{source:?} resumes at point {k} on another image"),
            );
        }
        if point.is_some_and(|p| p.app_state != self.app_states[s][i]) {
            self.fail(
                "H2",
                format!("{source:?} resumes point {k} with another application state"),
            );
        }
        let acked = self
            .hosts
            .iter()
            .filter(|(h, op)| op.source == s && op.range.is_none() && self.completed.contains(h))
            .filter(|(_, op)| !self.exempt(op.ids[0]))
            .map(|(_, op)| op.point)
            .max()
            .unwrap_or(0);
        if k < acked {
            self.fail(
                "D2",
                format!("{source:?} resumes at point {k}, before acknowledged point {acked}"),
            );
        }
    }

    // ---- checks ----

    fn check_always(&mut self) {
        if !self.standby.is_active() {
            let unheld: Vec<RecordId> = self
                .acked
                .iter()
                .copied()
                .filter(|id| {
                    !self.exempt(*id)
                        && !self.alive
                        && !self.standby.has(*id)
                        && !self.relays.iter().any(|r| r.holds(*id))
                })
                .collect();
            for id in unheld {
                self.fail("R1", format!("acknowledged {id:?} is held nowhere"));
            }
        }
        for r in 0..self.relays.len() {
            for id in self.custody[r].clone() {
                if !self.relays[r].holds(id) {
                    self.fail(
                        "R5",
                        format!("relay {r} freed {id:?} before the standby's acknowledgement"),
                    );
                }
            }
        }
        if self.consistency == Consistency::Epochs && !self.standby.is_active() {
            for s in 0..self.primaries.len() {
                let k = self.points.get(&src(s)).copied().unwrap_or(0);
                if self.standby_view(s) != self.images_at[s][usize::try_from(k).unwrap()] {
                    self.fail(
                        "D1",
                        format!("source {s}'s image is not the primary's at restart point {k}"),
                    );
                }
            }
        }
    }

    fn idle(&self) -> bool {
        self.up.iter().all(VecDeque::is_empty)
            && self.down.is_empty()
            && self.relays.iter().all(Relay::is_empty)
            && if self.alive {
                self.local_pending.is_empty() && self.primaries.iter().all(|p| p.outstanding() == 0)
            } else {
                self.standby.is_active()
            }
    }

    /// Links heal; every survivor drains (a takeover after a disaster).
    fn quiesce(&mut self) {
        if !self.alive {
            let all: Vec<RelayId> = (0..self.relays.len()).map(rid).collect();
            self.standby.take_over(&all, self.now);
            self.settle();
        }
        for _ in 0..1000 {
            if self.alive {
                for host in std::mem::take(&mut self.local_pending) {
                    self.local_done.insert(host);
                    let s = self.hosts[&host].source;
                    self.primaries[s].local_done(host);
                }
                for r in &mut self.relays {
                    r.handle_forward_request(self.now);
                }
                self.settle();
            }
            for r in 0..self.relays.len() {
                for _ in 0..self.up[r].len() {
                    self.deliver_up(r);
                    self.settle();
                }
            }
            while !self.down.is_empty() {
                self.deliver_down(0);
                self.settle();
            }
            self.check_always();
            if self.idle() {
                return;
            }
            self.tick(ms(20));
            self.settle();
        }
        self.fail("R2", "the world never quiesced".into());
    }

    fn check_end(&mut self) {
        if self.consistency == Consistency::Immediate {
            let missing: Vec<RecordId> = self
                .acked
                .iter()
                .copied()
                .filter(|id| !self.exempt(*id) && self.standby.applied(id.source) < id.seq)
                .collect();
            for id in missing {
                self.fail(
                    "R2",
                    format!("acknowledged {id:?} never reached the standby"),
                );
            }
        }
        if self.alive && self.lost_from.is_empty() {
            let open: Vec<&u64> = self
                .hosts
                .keys()
                .filter(|h| !self.completed.contains(h))
                .collect();
            if !open.is_empty() {
                let what = format!("host requests {open:?} never completed");
                self.fail("R13", what);
            }
            for s in 0..self.primaries.len() {
                let want = match self.consistency {
                    Consistency::Epochs => self.images_at[s].last().unwrap().clone(),
                    _ => self.primary_image[s].clone(),
                };
                if self.standby_view(s) != want {
                    self.fail("R13", format!("source {s}: the standby did not converge"));
                }
            }
        }
        if !self.alive {
            if self.resumed.len() != self.primaries.len() {
                self.fail("H2", "a source was not resumed".into());
            }
            for record in self.records.values().cloned().collect::<Vec<_>>() {
                let id = record.id();
                if self.standby.receive(record) != Reply::Fenced {
                    self.fail("H3", format!("{id:?} accepted after the takeover"));
                }
            }
            self.settle();
        }
    }
}

fn assert_holds(setup: &Setup, invs: &[&str]) -> Result<(), TestCaseError> {
    let w = World::run(setup);
    let bad = w.of(invs);
    prop_assert!(bad.is_empty(), "{bad:#?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// R1: at every step, every acknowledged record is on the primary (while its site
    /// stands), in a relay or at the standby, unless a volatile relay crashed with it.
    #[test]
    fn r1_ack_implies_custody(s in setup(any_selection(), immediate(), false, false, None)) {
        assert_holds(&s, &["R1"])?;
    }

    /// R2: after a primary-site disaster and the takeover's drain, every acknowledged
    /// record is applied at the standby, unless it (or one before it) was lost with a
    /// crashed volatile relay.
    #[test]
    fn r2_acked_records_survive_a_primary_disaster(s in setup(any_selection(), immediate(), false, false, Some(true))) {
        assert_holds(&s, &["R2"])?;
    }

    /// R3: with non-volatile relays, crashes lose nothing: every record a relay
    /// acknowledged survives its crashes and reaches the standby.
    #[test]
    fn r3_nv_relay_crashes_lose_nothing(s in setup(any_selection(), immediate(), true, false, None)) {
        let w = World::run(&s);
        prop_assert!(w.lost_from.is_empty());
        let bad = w.of(&["R3", "R2", "R13"]);
        prop_assert!(bad.is_empty(), "{bad:#?}");
    }

    /// R4: a relay acknowledges a record only once all of its bytes are stored.
    #[test]
    fn r4_ack_only_after_full_receipt(s in setup(any_selection(), immediate(), false, false, None)) {
        assert_holds(&s, &["R4"])?;
    }

    /// R5: a relay frees a record only after the standby acknowledged it.
    #[test]
    fn r5_free_only_after_the_standby_ack(s in setup(any_selection(), immediate(), false, false, None)) {
        assert_holds(&s, &["R5"])?;
    }

    /// R6: a cut-through relay never sends a byte it has not stored, and what reaches
    /// the standby is what the primary sent.
    #[test]
    fn r6_cut_through_sends_only_stored_bytes(s in setup(any_selection(), immediate(), false, true, None)) {
        assert_holds(&s, &["R6"])?;
    }

    /// R11 (and R7): split portions partition each write exactly, and the host completion
    /// waits for the local write and for every portion to reach a relay.
    #[test]
    fn r11_split_portions_partition_the_write(
        s in setup((1u16..6).prop_map(|portions| Selection::SplitBySpeed { portions }).boxed(), immediate(), false, false, None)
    ) {
        assert_holds(&s, &["R11", "R7"])?;
    }

    /// R12: in duplicate mode every host request completes once and the standby applies
    /// every record exactly once (once at most here; at least once is R2, R13).
    #[test]
    fn r12_duplicate_mode_applies_exactly_once(s in setup(Just(Selection::Duplicate).boxed(), immediate(), false, false, None)) {
        assert_holds(&s, &["R12", "R2", "R13"])?;
    }

    /// R13: the standby applies each source as a prefix of its order at every step, and
    /// after quiesce with no data-losing fault it equals the primary.
    #[test]
    fn r13_the_standby_is_a_prefix_and_converges(s in setup(any_selection(), immediate(), false, false, Some(false))) {
        assert_holds(&s, &["R13"])?;
    }

    /// D1: under delayed-write epochs the standby's image is, at every step, the
    /// primary's image at its last restart point: never a partial epoch.
    #[test]
    fn d1_the_standby_is_always_at_a_restart_point(
        s in setup(any_selection(), Just(Consistency::Epochs).boxed(), false, false, None)
    ) {
        assert_holds(&s, &["D1"])?;
    }

    /// D4: restart points commit in strictly increasing order with no gap, whatever the
    /// arrival order.
    #[test]
    fn d4_restart_points_commit_in_order(s in setup(any_selection(), restart_points(), false, false, None)) {
        assert_holds(&s, &["D4"])?;
    }

    /// D6: within an epoch the write with the higher sequence number wins on overlapping
    /// blocks, whatever the arrival order: each committed epoch is the primary's image.
    #[test]
    fn d6_last_writer_wins_within_an_epoch(
        s in setup(any_selection(), Just(Consistency::Epochs).boxed(), false, false, None)
    ) {
        assert_holds(&s, &["D6"])?;
    }

    /// H2 (and D2): after a primary disaster the standby resumes each source from the
    /// restart point its image is at (rolled back or with the open epoch discarded),
    /// with that point's application state, and not before any restart point the host
    /// saw acknowledged.
    #[test]
    fn h2_failover_resumes_the_matching_app_state(s in setup(any_selection(), restart_points(), false, false, Some(true))) {
        assert_holds(&s, &["H2", "D2"])?;
    }

    /// H3: after the takeover's fence nothing from the old primary or the relays lands.
    #[test]
    fn h3_nothing_lands_after_the_fence(
        s in setup(any_selection(), prop_oneof![Just(Consistency::Immediate), Just(Consistency::Epochs), Just(Consistency::Snapshots)].boxed(), false, false, Some(true))
    ) {
        assert_holds(&s, &["H3"])?;
    }
}

// ---- snapshots (S2–S4) ----------------------------------------------------------------

#[derive(Debug, Clone)]
enum SnapOp {
    /// Write `len` bytes of `val` at byte `offset` of logical block `lbn`.
    Write {
        lbn: u64,
        offset: usize,
        len: usize,
        val: u8,
    },
    Create,
    Restore,
}

fn snap_op() -> impl Strategy<Value = SnapOp> {
    prop_oneof![
        6 => (0u64..8, 0..BB, 1..=BB, any::<u8>()).prop_map(|(lbn, offset, len, val)| SnapOp::Write {
            lbn,
            offset,
            len: len.min(BB - offset),
            val
        }),
        1 => Just(SnapOp::Create),
        1 => Just(SnapOp::Restore),
    ]
}

/// S2: free list, snapshot blocks and changed latest blocks are disjoint and cover the
/// medium.
fn s2_conserved(t: &SnapshotTable, physical: u64) -> Result<(), TestCaseError> {
    let mut seen = BTreeSet::new();
    for b in 0..physical {
        if t.is_free(b) {
            seen.insert(b);
        }
    }
    for lbn in 0..t.logical_blocks() {
        let e = t.entry(lbn).unwrap();
        prop_assert_eq!(!e.changed, e.latest == e.snap, "S1 at {}", lbn);
        prop_assert!(seen.insert(e.snap), "S2: block {} twice", e.snap);
        if e.changed {
            prop_assert!(seen.insert(e.latest), "S2: block {} twice", e.latest);
        }
    }
    prop_assert_eq!(seen.len() as u64, physical, "S2: a block leaked");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// S2, S3, S4 (and S1, S5, S9) over random partial-block writes, creates and
    /// restores, against a model of the logical content.
    #[test]
    fn s2_s3_s4_snapshot_table(ops in proptest::collection::vec(snap_op(), 0..80)) {
        const LOGICAL: u64 = 8;
        const PHYSICAL: u64 = 16;
        let mut t = SnapshotTable::new(LOGICAL, PHYSICAL).unwrap();
        let mut media = vec![0u8; at(PHYSICAL)];
        let mut latest = vec![0u8; at(LOGICAL)];
        let mut snap = latest.clone();
        let read = |t: &SnapshotTable, media: &[u8]| -> Vec<u8> {
            (0..LOGICAL).flat_map(|b| { let p = at(t.read(b).unwrap()); media[p..p + BB].to_vec() }).collect()
        };
        for op in ops {
            match op {
                SnapOp::Write { lbn, offset, len, val } => {
                    let w = t.write(lbn).unwrap();
                    let snaps: BTreeSet<u64> = (0..LOGICAL).map(|b| t.entry(b).unwrap().snap).collect();
                    prop_assert!(!snaps.contains(&w.pbn), "S3: a write targets snapshot block {}", w.pbn);
                    if let Some(from) = w.copy_from {
                        media.copy_within(at(from)..at(from + 1), at(w.pbn));
                    }
                    let p = at(w.pbn) + offset;
                    media[p..p + len].fill(val);
                    latest[at(lbn) + offset..at(lbn) + offset + len].fill(val);
                }
                SnapOp::Create => {
                    t.create();
                    snap = latest.clone();
                }
                SnapOp::Restore => {
                    let changed = (0..LOGICAL).filter(|b| t.entry(*b).unwrap().changed).count();
                    let free = t.free_blocks();
                    t.restore();
                    prop_assert_eq!(t.free_blocks(), free + changed, "S4: free list");
                    latest = snap.clone();
                }
            }
            prop_assert_eq!(read(&t, &media), latest.clone(), "S4/S9: logical content");
            s2_conserved(&t, PHYSICAL)?;
        }
    }
}

// ---- forward error correction (F1, F2) ------------------------------------------------

fn redundancy() -> impl Strategy<Value = Redundancy> {
    prop_oneof![
        (1u16..8, 1u16..4).prop_map(|(data, parity)| Redundancy::ErasureCode { data, parity }),
        Just(Redundancy::WholeReplica),
        (1u16..6).prop_map(|pieces| Redundancy::PieceReplica { pieces }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// F1: from any subset of units that suffices, in any order, the receiver restores
    /// exactly the original bytes (and says nothing before it suffices).
    #[test]
    fn f1_fec_restores_exactly(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        scheme in redundancy(),
        two in any::<bool>(),
        keep in proptest::collection::vec(any::<bool>(), 16),
        order in any::<u64>(),
    ) {
        let g = RecordId { source: SourceId(1), seq: 1 };
        let mut units = encode(scheme, two, g, &data).unwrap();
        prop_assert_eq!(units.len(), scheme.units());
        units.retain(|u| keep[usize::from(u.index) % keep.len()]);
        let n = units.len();
        units.rotate_left(usize::try_from(order % (n as u64).max(1)).unwrap());
        let indices: BTreeSet<u16> = units.iter().map(|u| u.index).collect();
        let enough = match scheme {
            Redundancy::ErasureCode { data, .. } => indices.len() >= usize::from(data),
            Redundancy::WholeReplica => !indices.is_empty(),
            Redundancy::PieceReplica { pieces } => (0..pieces).all(|i| indices.contains(&i) || indices.contains(&(i + pieces))),
        };
        let mut r = FecReceiver::new(ms(10));
        r.open(g, scheme, data.len(), Duration::ZERO).unwrap();
        let restored: Vec<Bytes> = units.into_iter().filter_map(|u| match r.receive(u) {
            Receipt::Restored(b) => Some(b),
            _ => None,
        }).collect();
        if enough {
            prop_assert_eq!(restored, vec![Bytes::from(data)]);
        } else {
            prop_assert!(restored.is_empty(), "F1: restored from too few units");
            prop_assert_eq!(r.handle_timeout(ms(10)).len(), 1, "beyond tolerance: a retransmission request");
        }
    }

    /// F2 (and F3, F5): losing at most the scheme's tolerance of units, or a whole
    /// network under replicas on two networks, completes with no retransmission
    /// request, and later units change nothing.
    #[test]
    fn f2_no_retransmission_within_tolerance(
        data in proptest::collection::vec(any::<u8>(), 1..200),
        scheme in redundancy(),
        lose in proptest::collection::vec(any::<u16>(), 0..4),
        network in any::<bool>(),
    ) {
        let g = RecordId { source: SourceId(2), seq: 5 };
        let units = encode(scheme, true, g, &data).unwrap();
        let lost: BTreeSet<u16> = if matches!(scheme, Redundancy::WholeReplica) && network {
            // F5: one whole network fails.
            units.iter().filter(|u| u.network == Network::First).map(|u| u.index).collect()
        } else {
            let n = u16::try_from(units.len()).unwrap();
            lose.iter().take(scheme.tolerance()).map(|i| i % n).collect()
        };
        let mut r = FecReceiver::new(ms(10));
        r.open(g, scheme, data.len(), Duration::ZERO).unwrap();
        let mut got = None;
        for u in units.into_iter().filter(|u| !lost.contains(&u.index)) {
            match r.receive(u) {
                Receipt::Restored(b) => {
                    prop_assert!(got.is_none(), "F3: restored twice");
                    got = Some(b);
                }
                Receipt::Pending => prop_assert!(got.is_none(), "F3: a late unit was taken"),
                Receipt::Discarded => prop_assert!(got.is_some()),
            }
        }
        prop_assert_eq!(got, Some(Bytes::from(data)));
        prop_assert!(r.handle_timeout(ms(10)).is_empty(), "F2: a retransmission was asked for");
    }
}
