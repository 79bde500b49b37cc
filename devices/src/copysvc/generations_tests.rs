//! Site 3's difference generations, against seed 000 §7.5. The unit tests cover the
//! clear rules (S1011–S1022) and the Fig. 7 example (inv. 16). Two properties run a
//! model of the whole seed-000 cycle. P1, S1v, V2 and V3 are block arrays, H11 runs its
//! loop S911–S918, and the sync writes reach site 3 in any order within a window, before
//! or after its timer fires. A site-1 disaster comes after a random run.
//!
//! - `safe_failover_brings_v2_up_to_v3`: inv. 5, 6 (exact when arrivals are in
//!   order), 7 and 8 after every step. At the disaster, inv. 10, 11, then 9 and 13 with
//!   the safe rule. Broken cores it failed on: marking only the newer table (inv. 5),
//!   no lazy clear or a lazy clear only for ts > T (inv. 5), clearing the newer table
//!   instead of the older (inv. 7), a rotation that keeps the bits (inv. 6), completing
//!   the clear when the first volume is cleared (inv. 8), the safe rule taking the newer
//!   table always (inv. 9).
//! - `literal_rule_misses_only_in_windows_b_and_c`: inv. 12. It failed on "the newer
//!   table always" (a miss in window d). That the windows it allows do miss is shown by
//!   `literal_rule_misses_in_windows_b_and_c_and_safe_rule_does_not`.
//!
//! Cases: `FCSIM_PROP_CASES` (default 256).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use proptest::prelude::*;

use super::Generation::{Newer, Older};
use super::*;

const GROUP: &str = "cg0";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Site 3 with LUs `luns` of `blocks` blocks in [`GROUP`], created at time 0.
fn site3(luns: &[u16], blocks: u64) -> DiffGenerations {
    let mut s = DiffGenerations::new();
    for l in luns {
        s.add_volume(*l, blocks, GROUP, Duration::ZERO).unwrap();
    }
    s
}

/// The base of `lun`'s `generation` table, and its set blocks.
fn table(s: &DiffGenerations, lun: u16, generation: Generation) -> (Duration, Vec<u64>) {
    let t = s.volume(lun).unwrap().table(generation);
    (
        t.base,
        (0..t.bits.blocks()).filter(|b| t.bits.get(*b)).collect(),
    )
}

/// Block values per LU.
type Vols = BTreeMap<u16, Vec<u32>>;

/// The failover copy (seed §4.6 step 8): the selected blocks, from V3 to V2.
fn copy(selection: &BTreeMap<u16, Selection>, v3: &Vols, v2: &mut Vols) {
    for (lun, s) in selection {
        copy_blocks(&s.blocks, &v3[lun], v2.get_mut(lun).unwrap());
    }
}

fn copy_blocks(bits: &DiffBitmap, from: &[u32], to: &mut [u32]) {
    for (b, (dst, src)) in (0u64..).zip(to.iter_mut().zip(from)) {
        if bits.get(b) {
            *dst = *src;
        }
    }
}

#[test]
fn writes_mark_both_tables_and_every_covered_block() {
    let mut s = site3(&[0], 16);
    for g in [Older, Newer] {
        assert_eq!(
            table(&s, 0, g),
            (Duration::ZERO, vec![]),
            "seed §7.6 item 12"
        );
    }
    s.record_write(0, 3, 3, ms(1)).unwrap();
    s.record_write(0, 15, 4, ms(2)).unwrap();
    for g in [Older, Newer] {
        assert_eq!(table(&s, 0, g), (Duration::ZERO, vec![3, 4, 5, 15]));
    }
    assert_eq!(
        s.record_write(9, 0, 1, ms(3)),
        Err(GenerationsError::UnknownLu { lun: 9 })
    );
}

#[test]
fn a_late_or_second_clear_is_refused_and_changes_nothing() {
    let mut s = site3(&[0, 1], 8);
    s.record_write(0, 1, 1, ms(1)).unwrap();
    let before = s.clone();
    // Seed §7.6 item 3: T must still be ahead of site 3's clock.
    for at in [ms(5), ms(4)] {
        assert_eq!(
            s.clear_request(GROUP, at, ms(5)),
            Err(GenerationsError::ClearTooLate {
                group: GROUP.into(),
                at,
                now: ms(5)
            })
        );
    }
    assert_eq!(
        s.clear_request("cg9", ms(9), ms(5)),
        Err(GenerationsError::UnknownGroup {
            group: "cg9".into()
        })
    );
    assert_eq!(s, before);
    assert_eq!(s.poll_timeout(), None);

    s.clear_request(GROUP, ms(10), ms(5)).unwrap();
    let pending = s.clone();
    let busy = GenerationsError::ClearPending {
        group: GROUP.into(),
        at: ms(10),
    };
    assert_eq!(s.clear_request(GROUP, ms(20), ms(6)), Err(busy.clone()));
    assert_eq!(s.add_volume(2, 8, GROUP, ms(6)), Err(busy.clone()));
    assert_eq!(s.remove_volume(1), Err(busy));
    assert_eq!(s, pending);
    assert_eq!(s.pending_clear(GROUP), Some(ms(10)));
    assert_eq!(s.poll_timeout(), Some(ms(10)));
}

/// Clock skew (seed §7.4 item 4): a write stamped ahead of site 3's clock can finish a
/// clear early. The next clear must still be after it (inv. 7: T_prev < T).
#[test]
fn a_clear_never_goes_back_before_the_last_split() {
    let mut s = site3(&[0], 8);
    s.clear_request(GROUP, ms(10), ms(5)).unwrap();
    s.record_write(0, 1, 1, ms(10)).unwrap();
    assert_eq!(
        s.poll_event(),
        Some(ClearComplete {
            group: GROUP.into(),
            at: ms(10)
        })
    );
    assert_eq!(
        s.clear_request(GROUP, ms(8), ms(6)),
        Err(GenerationsError::NotAfterLastSplit {
            group: GROUP.into(),
            at: ms(8),
            last: ms(10)
        })
    );
}

/// Inv. 8: the completion comes once every volume of the group is cleared, after the
/// pending time is gone (S1020–S1022).
#[test]
fn the_clear_completes_only_when_every_volume_is_cleared() {
    let mut s = site3(&[0, 1], 8);
    s.clear_request(GROUP, ms(10), ms(1)).unwrap();
    s.tick(ms(9));
    s.record_write(0, 2, 1, ms(10)).unwrap();
    assert!(s.volume(0).unwrap().cleared() && !s.volume(1).unwrap().cleared());
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.pending_clear(GROUP), Some(ms(10)));
    s.tick(ms(10));
    assert_eq!(
        s.poll_event(),
        Some(ClearComplete {
            group: GROUP.into(),
            at: ms(10)
        })
    );
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.groups().collect::<Vec<_>>(), vec![(GROUP, None)]);
    assert_eq!(s.poll_timeout(), None);
    for (_, v) in s.volumes() {
        assert!(!v.cleared());
        assert_eq!(v.table(Newer).base, ms(10));
    }
}

/// S1015–S1019: a volume is cleared at its first write stamped at or after T, or when T
/// passes, whichever comes first. The table with the older base is cleared and becomes
/// the newer one; the other is untouched (inv. 7).
#[test]
fn a_volume_is_cleared_at_its_first_later_dated_write_or_when_t_passes() {
    let mut s = site3(&[0, 1], 8);
    s.record_write(0, 0, 1, ms(1)).unwrap();
    s.record_write(1, 0, 1, ms(1)).unwrap();
    s.clear_request(GROUP, ms(10), ms(2)).unwrap();
    s.record_write(0, 1, 1, ms(9)).unwrap();
    assert_eq!(table(&s, 0, Newer), (Duration::ZERO, vec![0, 1]), "S1017");
    s.record_write(0, 2, 1, ms(10)).unwrap();
    assert_eq!(table(&s, 0, Older), (Duration::ZERO, vec![0, 1, 2]));
    assert_eq!(table(&s, 0, Newer), (ms(10), vec![2]), "S1015");
    assert_eq!(table(&s, 1, Newer), (Duration::ZERO, vec![0]));
    s.tick(ms(10));
    assert_eq!(table(&s, 1, Older), (Duration::ZERO, vec![0]));
    assert_eq!(table(&s, 1, Newer), (ms(10), vec![]), "S1019");
    // The next cycle drops the oldest generation.
    s.clear_request(GROUP, ms(20), ms(11)).unwrap();
    s.tick(ms(20));
    assert_eq!(table(&s, 0, Older), (ms(10), vec![2]));
    assert_eq!(table(&s, 0, Newer), (ms(20), vec![]));
}

/// Seed §7.6 item 15 and inv. 6: a write stamped before T that arrives after the
/// volume's lazy clear also marks the new table: an extra bit, never a missing one.
#[test]
fn an_earlier_dated_write_arriving_after_the_lazy_clear_marks_the_new_table_too() {
    let mut s = site3(&[0], 8);
    s.clear_request(GROUP, ms(10), ms(2)).unwrap();
    s.record_write(0, 5, 1, ms(10)).unwrap();
    s.record_write(0, 3, 1, ms(9)).unwrap();
    assert_eq!(table(&s, 0, Older), (Duration::ZERO, vec![3, 5]));
    assert_eq!(table(&s, 0, Newer), (ms(10), vec![3, 5]));
}

/// Seed §4.7, Fig. 7 and inv. 16. Blocks 1–6 were written between T0 and T1 with
/// 1, 5, 9, 3, 4, 2. The disaster strikes during the remote resync, after "1" and "5"
/// were copied to V2 and before "9". Both rules choose the split-before-last table, and
/// copying its blocks makes V2 = V3. The newer table alone would not.
#[test]
fn fig7_the_older_generation_brings_a_half_resynced_v2_up_to_v3() {
    let (t0, t1) = (ms(10), ms(20));
    let mut s = site3(&[0], 7);
    s.clear_request(GROUP, t0, ms(1)).unwrap();
    s.tick(t0);
    let mut v3: Vols = BTreeMap::from([(0, vec![0; 7])]);
    let mut v2 = v3.clone();
    for (b, (value, ts)) in [1, 5, 9, 3, 4, 2].into_iter().zip(11..).enumerate() {
        v3.get_mut(&0).unwrap()[b + 1] = value;
        s.record_write(0, b as u64 + 1, 1, ms(ts)).unwrap();
    }
    s.clear_request(GROUP, t1, ms(17)).unwrap();
    s.tick(t1);
    // The split image S1v is V3 (no write after T1); the resync copied blocks 1 and 2.
    let s1v = v3[&0].clone();
    v2.get_mut(&0).unwrap()[1..3].copy_from_slice(&s1v[1..3]);
    assert_eq!(table(&s, 0, Older), (t0, vec![1, 2, 3, 4, 5, 6]));
    let report = RemoteReport {
        resync: true,
        image_time: t0,
    };
    for rule in [SelectionRule::Literal, SelectionRule::Safe] {
        let sel = s.select(GROUP, rule, &report).unwrap();
        assert_eq!((sel[&0].generation, sel[&0].base), (Older, t0), "{rule:?}");
        let mut after = v2.clone();
        copy(&sel, &v3, &mut after);
        assert_eq!(after[&0][1..=6], [1, 5, 9, 3, 4, 2]);
        assert_eq!(after, v3);
    }
    let mut newer_only = v2.clone();
    copy_blocks(
        &s.volume(0).unwrap().table(Newer).bits,
        &v3[&0],
        newer_only.get_mut(&0).unwrap(),
    );
    assert_ne!(newer_only, v3);
}

#[test]
fn the_safe_rule_takes_the_newest_covering_table_or_refuses() {
    let mut s = site3(&[0], 8);
    for t in [10, 20] {
        s.clear_request(GROUP, ms(t), ms(t - 1)).unwrap();
        s.tick(ms(t));
    }
    let report = |image_time| RemoteReport {
        resync: false,
        image_time,
    };
    let chosen = |image_time| s.select(GROUP, SelectionRule::Safe, &report(image_time));
    assert_eq!(chosen(ms(20)).unwrap()[&0].generation, Newer);
    assert_eq!(chosen(ms(15)).unwrap()[&0].generation, Older);
    assert_eq!(
        chosen(ms(5)),
        Err(GenerationsError::NoCoveringTable {
            lun: 0,
            image_time: ms(5),
            older_base: ms(10)
        }),
        "rather than under-copy"
    );
    assert_eq!(
        s.select("cg9", SelectionRule::Safe, &report(ms(20))),
        Err(GenerationsError::UnknownGroup {
            group: "cg9".into()
        })
    );
    s.remove_volume(0).unwrap();
    assert_eq!(s.groups().count(), 0);
}

// ---- a model of the seed-000 cycle ---------------------------------------------------------

/// Blocks per volume.
const NB: usize = 8;
/// The group's LUs, numbered alike at every site (seed §7.6 item 7).
const LUNS: [u16; 2] = [0, 1];
/// Sync writes in flight to site 3 at most: the reordering window.
const WINDOW: usize = 4;

/// Where H11's loop (seed §4.4) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Local pair Paired, remote pair Split: before S911, or after S918's local resync.
    Idle,
    /// S911/S912 sent for T; S913/S914 not done.
    Splitting(Duration),
    /// S914 done, before S915.
    Cleared(Duration),
    /// S915–S916: the remote pair is in Resync.
    RemoteResync(Duration),
    /// S916 saw Paired, before S917.
    RemotePaired(Duration),
    /// After S917.
    RemoteSplit,
    /// S918: the local pair resynchronises.
    LocalResync,
}

/// The disaster windows of seed §7.4 item 1. Window h (a write in flight) combines with
/// any of them; it is reported beside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    /// A clear is pending and no volume is rotated yet.
    A,
    /// A volume is rotated, S914 not done.
    B,
    /// S914 done, before S915: the remote pair is Split and V2 = ST0.
    C,
    /// The remote pair is in Resync.
    D,
    /// The remote pair is Paired, before S917.
    E,
    /// After S917 (and the idle time after the local resync): V2 = ST1.
    F,
    /// The local resync.
    G,
}

#[derive(Debug, Clone)]
enum Op {
    /// A host write of `n` blocks at `lba` of LU `lun`, stamped now.
    Write { lun: u16, lba: usize, n: usize },
    /// The clock moves on by this many milliseconds.
    Advance(u64),
    /// Site 3's timer fires (so writes stamped after a clear time can arrive before it).
    Tick,
    /// Site 3 receives the write in flight with this index (modulo; the oldest when in
    /// order).
    Deliver(usize),
    /// H11's next step. The number picks the split delay or the block the resync copies.
    H11(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2u16, 0..NB, 1..4usize).prop_map(|(lun, lba, n)| Op::Write { lun, lba, n }),
        2 => (1..4u64).prop_map(Op::Advance),
        1 => Just(Op::Tick),
        2 => any::<usize>().prop_map(Op::Deliver),
        3 => (0..8usize).prop_map(Op::H11),
    ]
}

#[derive(Debug, Clone)]
struct Write {
    lun: u16,
    lba: usize,
    n: usize,
    ts: Duration,
    value: u32,
}

/// The three sites around the core under test.
struct Model {
    site3: DiffGenerations,
    now: Duration,
    /// Site 3 receives the writes in timestamp order, each before its next tick.
    in_order: bool,
    p1: Vols,
    s1v: Vols,
    v2: Vols,
    v3: Vols,
    in_flight: VecDeque<Write>,
    /// What site 3 received, in arrival order.
    delivered: Vec<Write>,
    phase: Phase,
    /// Site 2's record of V2's last complete image (DESIGN.md §7).
    image_time: Duration,
    /// The last clear completion H11 received.
    completed: Option<Duration>,
    /// For each clear time, how many writes site 3 had received at the request.
    requested: BTreeMap<Duration, usize>,
    /// Each volume's newer table at the current clear request.
    before_clear: BTreeMap<u16, DiffTable>,
    values: u32,
}

/// Site 3 at failover and what it did.
struct Failover {
    site3: DiffGenerations,
    window: Window,
    report: RemoteReport,
    selection: BTreeMap<u16, Selection>,
    /// V2 after the copy.
    v2: Vols,
}

impl Model {
    fn new(in_order: bool) -> Model {
        let zero: Vols = LUNS.iter().map(|l| (*l, vec![0; NB])).collect();
        Model {
            site3: site3(&LUNS, NB as u64),
            now: Duration::ZERO,
            in_order,
            p1: zero.clone(),
            s1v: zero.clone(),
            v2: zero.clone(),
            v3: zero,
            in_flight: VecDeque::new(),
            delivered: Vec::new(),
            phase: Phase::Idle,
            image_time: Duration::ZERO,
            completed: None,
            requested: BTreeMap::new(),
            before_clear: BTreeMap::new(),
            values: 0,
        }
    }

    fn run(in_order: bool, ops: &[Op]) -> Result<Model, TestCaseError> {
        let mut m = Model::new(in_order);
        for op in ops {
            m.apply(op)?;
        }
        Ok(m)
    }

    /// One step, then the table invariants.
    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Write { lun, lba, n } => self.write(lun, lba, n)?,
            Op::Advance(d) => self.now += ms(d),
            Op::Tick => {
                while self.in_order && !self.in_flight.is_empty() {
                    self.deliver(0)?;
                }
                self.site3.tick(self.now);
                self.events()?;
            }
            Op::Deliver(i) if !self.in_flight.is_empty() => {
                let i = if self.in_order {
                    0
                } else {
                    i % self.in_flight.len()
                };
                self.deliver(i)?;
            }
            Op::Deliver(_) => {}
            Op::H11(p) => self.h11(p)?,
        }
        self.check_tables()
    }

    fn write(&mut self, lun: u16, lba: usize, n: usize) -> Result<(), TestCaseError> {
        let end = (lba + n).min(NB);
        // A sync host waits for the acknowledgement before writing a block again, and
        // keeps at most WINDOW writes in flight.
        while let Some(i) = self
            .in_flight
            .iter()
            .position(|w| w.lun == lun && w.lba < end && lba < w.lba + w.n)
        {
            self.deliver(if self.in_order { 0 } else { i })?;
        }
        if self.in_flight.len() == WINDOW {
            self.deliver(0)?;
        }
        self.values += 1;
        let (ts, value) = (self.now, self.values);
        let mirrored = match self.phase {
            Phase::Idle => true,
            Phase::Splitting(t) => ts < t,
            _ => false,
        };
        for b in lba..end {
            self.p1.get_mut(&lun).unwrap()[b] = value;
            if mirrored {
                self.s1v.get_mut(&lun).unwrap()[b] = value;
            }
        }
        self.in_flight.push_back(Write {
            lun,
            lba,
            n: end - lba,
            ts,
            value,
        });
        Ok(())
    }

    fn deliver(&mut self, i: usize) -> Result<(), TestCaseError> {
        let Some(w) = self.in_flight.remove(i) else {
            return Ok(());
        };
        self.v3.get_mut(&w.lun).unwrap()[w.lba..w.lba + w.n].fill(w.value);
        self.site3
            .record_write(w.lun, w.lba as u64, w.n as u64, w.ts)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        self.delivered.push(w);
        self.events()
    }

    /// Takes site 3's completions to H11, checking inv. 7 and 8 at each.
    fn events(&mut self) -> Result<(), TestCaseError> {
        while let Some(e) = self.site3.poll_event() {
            prop_assert_eq!(self.site3.pending_clear(GROUP), None, "inv. 8");
            for (lun, v) in self.site3.volumes() {
                let (older, newer, before) =
                    (v.table(Older), v.table(Newer), &self.before_clear[&lun]);
                prop_assert_eq!(newer.base, e.at, "inv. 8: LU {} not cleared", lun);
                prop_assert_eq!(
                    older.base,
                    before.base,
                    "inv. 7: LU {} lost its last split",
                    lun
                );
                prop_assert!(older.base < newer.base, "inv. 7");
                prop_assert!(
                    (0..NB as u64).all(|b| !before.bits.get(b) || older.bits.get(b)),
                    "inv. 7: LU {lun}'s last-split table lost bits in the clear"
                );
            }
            self.completed = Some(e.at);
        }
        Ok(())
    }

    fn h11(&mut self, p: usize) -> Result<(), TestCaseError> {
        self.phase = match self.phase {
            Phase::Idle => {
                // S911 and S912: split and clear at the same T, a little ahead.
                let t = self.now + ms(1 + p as u64 % 4);
                self.site3
                    .clear_request(GROUP, t, self.now)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                self.requested.insert(t, self.delivered.len());
                self.before_clear = self
                    .site3
                    .volumes()
                    .map(|(l, v)| (l, v.table(Newer).clone()))
                    .collect();
                Phase::Splitting(t)
            }
            // S913/S914. Site 1's split-complete notice waits for the sync
            // acknowledgements of the writes stamped before T, so V3 holds all of S1v.
            Phase::Splitting(t)
                if self.now >= t
                    && self.completed == Some(t)
                    && self.in_flight.iter().all(|w| w.ts >= t) =>
            {
                Phase::Cleared(t)
            }
            Phase::Cleared(t) => Phase::RemoteResync(t),
            // The resync copies the blocks where V2 differs from the frozen S1v, in any
            // order (Fig. 7); S916 sees Paired when none is left.
            Phase::RemoteResync(t) => {
                let stale: Vec<(u16, usize)> = LUNS
                    .iter()
                    .flat_map(|l| (0..NB).map(move |b| (*l, b)))
                    .filter(|(l, b)| self.v2[l][*b] != self.s1v[l][*b])
                    .collect();
                match stale.get(p % stale.len().max(1)) {
                    Some(&(l, b)) => {
                        self.v2.get_mut(&l).unwrap()[b] = self.s1v[&l][b];
                        Phase::RemoteResync(t)
                    }
                    None => Phase::RemotePaired(t),
                }
            }
            Phase::RemotePaired(t) => {
                self.image_time = t;
                Phase::RemoteSplit
            }
            Phase::RemoteSplit => Phase::LocalResync,
            Phase::LocalResync => {
                self.s1v = self.p1.clone();
                Phase::Idle
            }
            waiting => waiting,
        };
        Ok(())
    }

    /// Inv. 5 and 6 for every table, against the writes site 3 received.
    fn check_tables(&self) -> Result<(), TestCaseError> {
        for (lun, v) in self.site3.volumes() {
            let received: Vec<&Write> = self.delivered.iter().filter(|w| w.lun == lun).collect();
            let blocks_of = |ws: &[&Write]| {
                let mut set = [false; NB];
                for w in ws {
                    set[w.lba..w.lba + w.n].fill(true);
                }
                set
            };
            for g in [Older, Newer] {
                let t = v.table(g);
                let since: Vec<&Write> = received
                    .iter()
                    .copied()
                    .filter(|w| w.ts >= t.base)
                    .collect();
                let since = blocks_of(&since);
                // Extra bits may only come from writes that arrived after the clear that
                // gave this table its base was requested.
                let after_request: Vec<&Write> = match self.requested.get(&t.base) {
                    Some(n) => self.delivered[*n..]
                        .iter()
                        .filter(|w| w.lun == lun)
                        .collect(),
                    None => Vec::new(),
                };
                let late = blocks_of(&after_request);
                for (b, (since, late)) in (0u64..).zip(since.into_iter().zip(late)) {
                    let bit = t.bits.get(b);
                    prop_assert!(
                        bit || !since,
                        "inv. 5: LU {} {:?} (base {:?}) misses block {}",
                        lun,
                        g,
                        t.base,
                        b
                    );
                    prop_assert!(
                        !bit || since || late,
                        "inv. 6: LU {} {:?} (base {:?}) has a spurious block {}",
                        lun,
                        g,
                        t.base,
                        b
                    );
                    prop_assert!(
                        !self.in_order || bit == since,
                        "inv. 6 in order: LU {} {:?} block {}",
                        lun,
                        g,
                        b
                    );
                }
            }
        }
        Ok(())
    }

    fn window(&self, site3: &DiffGenerations) -> Window {
        match self.phase {
            Phase::Splitting(t) if site3.volumes().any(|(_, v)| v.table(Newer).base == t) => {
                Window::B
            }
            Phase::Splitting(_) => Window::A,
            Phase::Cleared(_) => Window::C,
            Phase::RemoteResync(_) => Window::D,
            Phase::RemotePaired(_) => Window::E,
            Phase::Idle | Phase::RemoteSplit => Window::F,
            Phase::LocalResync => Window::G,
        }
    }

    /// The site-1 disaster now: the writes in flight are lost. Site 3 chooses by `rule`,
    /// at once or (`late`) after its clock has run on by a second, and copies. Checks
    /// inv. 10: the blocks copied are exactly the chosen table's bits.
    fn failover(&self, rule: SelectionRule, late: bool) -> Result<Failover, TestCaseError> {
        let mut site3 = self.site3.clone();
        if late {
            site3.tick(self.now + ms(1000));
        }
        let report = RemoteReport {
            resync: matches!(self.phase, Phase::RemoteResync(_)),
            image_time: self.image_time,
        };
        let selection = site3
            .select(GROUP, rule, &report)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            selection.len(),
            LUNS.len(),
            "the whole group (seed §7.6 item 8)"
        );
        for (lun, s) in &selection {
            let t = site3.volume(*lun).unwrap().table(s.generation);
            prop_assert_eq!((s.base, &s.blocks), (t.base, &t.bits), "inv. 10");
        }
        let mut v2 = self.v2.clone();
        copy(&selection, &self.v3, &mut v2);
        Ok(Failover {
            window: self.window(&site3),
            site3,
            report,
            selection,
            v2,
        })
    }
}

fn cases() -> u32 {
    std::env::var("FCSIM_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Inv. 5–8 at every step; at the disaster, inv. 10 and 11, and 9/13 with the safe
    /// rule: V2 = V3, and copying again changes nothing.
    #[test]
    fn safe_failover_brings_v2_up_to_v3(
        in_order in any::<bool>(),
        late in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..160),
    ) {
        let m = Model::run(in_order, &ops)?;
        let f = m.failover(SelectionRule::Safe, late)?;
        let h = !m.in_flight.is_empty();
        prop_assert_eq!(&f.v2, &m.v3, "inv. 9 in window {:?} (h: {})", f.window, h);
        let mut again = f.v2.clone();
        copy(&f.selection, &m.v3, &mut again);
        prop_assert_eq!(&again, &f.v2, "inv. 13");
        // Inv. 11: the older table always covers V2's image, and any table that does
        // brings V2 up to V3.
        for (lun, v) in f.site3.volumes() {
            prop_assert!(v.table(Older).base <= f.report.image_time, "inv. 11: LU {}", lun);
            for g in [Older, Newer] {
                if v.table(g).base <= f.report.image_time {
                    let mut v2 = m.v2[&lun].clone();
                    copy_blocks(&v.table(g).bits, &m.v3[&lun], &mut v2);
                    prop_assert_eq!(&v2, &m.v3[&lun], "inv. 11: LU {} {:?}", lun, g);
                }
            }
        }
    }

    /// Inv. 12: the patent's rule leaves V2 different from V3 only in windows b and c.
    #[test]
    fn literal_rule_misses_only_in_windows_b_and_c(
        in_order in any::<bool>(),
        late in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..160),
    ) {
        let m = Model::run(in_order, &ops)?;
        let f = m.failover(SelectionRule::Literal, late)?;
        prop_assert!(
            f.v2 == m.v3 || matches!(f.window, Window::B | Window::C),
            "the literal rule missed blocks in window {:?}", f.window
        );
    }
}

/// Inv. 12 as a regression: a write between T0 and T1 on each volume, then a disaster
/// in each window around the rotation at T1. The literal rule misses those writes in b
/// and c, and in a when site 3 chooses after T1 has passed (its tables are rotated by
/// then, so that is window b). The safe rule never misses.
#[test]
fn literal_rule_misses_in_windows_b_and_c_and_safe_rule_does_not() {
    let mut m = Model::new(true);
    let script = [
        Op::Advance(1),
        Op::Write {
            lun: 0,
            lba: 2,
            n: 1,
        },
        Op::Write {
            lun: 1,
            lba: 3,
            n: 2,
        },
        Op::Deliver(0),
        Op::Deliver(0),
        // S911/S912 at T1 = 2 ms.
        Op::H11(0),
    ];
    for op in &script {
        m.apply(op).unwrap();
    }
    let outcome = |m: &Model, rule, late| {
        let f = m.failover(rule, late).unwrap();
        (f.window, f.v2 == m.v3)
    };
    let check = |m: &Model, window, literal_ok| {
        assert_eq!(
            outcome(m, SelectionRule::Literal, false),
            (window, literal_ok)
        );
        assert_eq!(outcome(m, SelectionRule::Safe, false), (window, true));
        assert!(outcome(m, SelectionRule::Safe, true).1);
    };
    check(&m, Window::A, true);
    assert_eq!(
        outcome(&m, SelectionRule::Literal, true),
        (Window::B, false)
    );
    // T1 passes. A write stamped at T1 clears LU 0; then site 3's timer clears LU 1 and
    // completes the clear.
    m.apply(&Op::Advance(1)).unwrap();
    m.apply(&Op::Write {
        lun: 0,
        lba: 5,
        n: 1,
    })
    .unwrap();
    m.apply(&Op::Deliver(0)).unwrap();
    check(&m, Window::B, false);
    m.apply(&Op::Tick).unwrap();
    check(&m, Window::B, false);
    m.apply(&Op::H11(0)).unwrap();
    check(&m, Window::C, false);
    m.apply(&Op::H11(0)).unwrap();
    check(&m, Window::D, true);
    m.apply(&Op::H11(0)).unwrap();
    check(&m, Window::D, true);
}
