//! Engine unit tests: no runtime, volumes in vectors, remote commands answered by hand.

use std::collections::BTreeMap;

use bytes::Bytes;
use fcsim_fabric::{Wwn, Wwpn};

use super::*;

/// LUs of 64 blocks of 4 bytes.
#[derive(Default)]
pub(crate) struct Vols(BTreeMap<u16, Vec<u8>>);

const BB: usize = 4;

impl Vols {
    fn new(luns: &[u16]) -> Vols {
        Vols(luns.iter().map(|l| (*l, vec![0; 64 * BB])).collect())
    }
    fn block(&self, lun: u16, b: u64) -> u8 {
        self.0[&lun][b as usize * BB]
    }
    /// A host write of value `v` to block `b` of `lun` through the engine.
    fn host_write(&mut self, e: &mut CopyEngine, lun: u16, b: u64, v: u8, host: u64) -> bool {
        e.before_write(self, lun, b, 1, Wwpn(Wwn(9)), Duration::ZERO)
            .unwrap();
        let data = Bytes::from(vec![v; BB]);
        self.write(lun, b, &data);
        e.after_write(lun, b, data, host, Duration::ZERO)
    }
}

impl Volumes for Vols {
    fn geometry(&self, lun: u16) -> Option<(u64, u32)> {
        self.0.get(&lun).map(|_| (64, BB as u32))
    }
    fn read(&self, lun: u16, lba: u64, blocks: u64) -> Option<Bytes> {
        let v = self.0.get(&lun)?;
        Some(Bytes::copy_from_slice(
            &v[lba as usize * BB..(lba + blocks) as usize * BB],
        ))
    }
    fn write(&mut self, lun: u16, lba: u64, data: &Bytes) -> bool {
        let Some(v) = self.0.get_mut(&lun) else {
            return false;
        };
        v[lba as usize * BB..lba as usize * BB + data.len()].copy_from_slice(data);
        true
    }
}

fn local(e: &mut CopyEngine, v: &mut Vols, opts: PairOptions) {
    e.create(
        PairSpec {
            name: "p".into(),
            primary: 0,
            secondary: Secondary::Local(1),
            mode: PairMode::Local,
            group: None,
            options: opts,
            initial: None,
        },
        &|l| v.geometry(l),
    )
    .unwrap();
}

fn remote(e: &mut CopyEngine, v: &mut Vols, name: &str, lun: u16, mode: PairMode) {
    e.create(
        PairSpec {
            name: name.into(),
            primary: lun,
            secondary: Secondary::Remote(Wwn(0x6000 + u64::from(lun))),
            mode,
            group: Some("g".into()),
            options: PairOptions::default(),
            initial: None,
        },
        &|l| v.geometry(l),
    )
    .unwrap();
}

/// Ticks until the copier has nothing to do, answering remote commands with `ok`.
fn run(e: &mut CopyEngine, v: &mut Vols, now: &mut Duration, ok: bool) -> Vec<Action> {
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        *now += Duration::from_millis(1);
        e.tick(v, *now);
        let mut any = false;
        while let Some(a) = e.poll_action() {
            any = true;
            match &a {
                Action::Write { token, .. } | Action::JournalWrite { token, .. } => {
                    e.completed(*token, ok)
                }
                Action::Notify { token, .. } => e.completed(*token, true),
                Action::RelayRecord { token, .. }
                | Action::FecUnit { token, .. }
                | Action::RelayControl { token, .. }
                | Action::RelayStatus { token, .. } => {
                    e.relay_completed(*token, ok.then_some(0), &Bytes::new(), *now)
                }
                Action::Release { .. } => {}
                Action::Copy { .. } | Action::Proceed { .. } => unreachable!("direct mode"),
            }
            seen.push(a);
        }
        if !any && e.poll_timeout(*now).is_none() {
            break;
        }
    }
    seen
}

fn state(e: &CopyEngine, p: &str) -> PairState {
    e.pair(p).unwrap().state
}

#[test]
fn local_pair_formation_then_update_copy() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]), Duration::ZERO);
    v.write(0, 3, &Bytes::from_static(&[7; 4]));
    local(&mut e, &mut v, PairOptions::default());
    assert_eq!(state(&e, "p"), PairState::Copy);
    run(&mut e, &mut v, &mut now, true);
    assert_eq!(state(&e, "p"), PairState::Pair);
    assert_eq!(v.block(1, 3), 7);
    assert!(
        !v.host_write(&mut e, 0, 5, 9, 1),
        "a local pair never holds the host"
    );
    run(&mut e, &mut v, &mut now, true);
    assert_eq!(v.block(1, 5), 9);
}

#[test]
fn split_is_immediate_and_copy_before_write_keeps_the_split_image() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]), Duration::ZERO);
    local(&mut e, &mut v, PairOptions::default());
    run(&mut e, &mut v, &mut now, true);
    // Stall the copier, write, split.
    e.pairs.get_mut("p").unwrap().options.copy_rate = 0;
    v.host_write(&mut e, 0, 2, 1, 1);
    e.split("p", None, now).unwrap();
    assert_eq!(state(&e, "p"), PairState::SplitPending, "INV-6");
    // Post-split write to the still-dirty block: the old value goes to S first.
    v.host_write(&mut e, 0, 2, 2, 2);
    assert_eq!(v.block(1, 2), 1, "copy-before-write");
    assert_eq!(v.block(0, 2), 2);
    assert!(!e.pair("p").unwrap().diff.get(2));
    assert_eq!(state(&e, "p"), PairState::Split);
    // S is frozen; the post-split write is recorded for resync.
    assert!(e.pair("p").unwrap().post.get(2));
    e.resync("p").unwrap();
    e.pairs.get_mut("p").unwrap().options.copy_rate = 1024;
    run(&mut e, &mut v, &mut now, true);
    assert_eq!(state(&e, "p"), PairState::Pair);
    assert_eq!(v.block(1, 2), 2);
}

#[test]
fn secondary_is_write_protected_until_split() {
    let (mut e, mut v) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]));
    local(&mut e, &mut v, PairOptions::default());
    let r = e.before_write(&mut v, 1, 0, 1, Wwpn(Wwn(9)), Duration::ZERO);
    assert_eq!(r.unwrap_err().key, SenseKey::DATA_PROTECT);
}

#[test]
fn sync_write_is_held_until_the_secondary_has_it() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0]), Duration::ZERO);
    remote(&mut e, &mut v, "s", 0, PairMode::Sync);
    run(&mut e, &mut v, &mut now, true);
    assert_eq!(state(&e, "s"), PairState::Pair);
    assert!(v.host_write(&mut e, 0, 1, 5, 42));
    let Some(Action::Write { token, .. }) = e.poll_action() else {
        panic!("expected the secondary write")
    };
    assert!(e.poll_action().is_none());
    e.completed(token, true);
    assert_eq!(
        e.poll_action(),
        Some(Action::Release {
            host: 42,
            sense: None
        })
    );
}

#[test]
fn sync_link_loss_suspends_and_tracks() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0]), Duration::ZERO);
    remote(&mut e, &mut v, "s", 0, PairMode::Sync);
    run(&mut e, &mut v, &mut now, true);
    v.host_write(&mut e, 0, 1, 5, 42);
    let Some(Action::Write { token, .. }) = e.poll_action() else {
        panic!()
    };
    e.completed(token, false);
    assert_eq!(state(&e, "s"), PairState::Suspended);
    assert!(e.pair("s").unwrap().diff.get(1));
    // Later writes are tracked, not sent; the host is answered at once.
    assert!(!v.host_write(&mut e, 0, 7, 5, 43));
    assert!(e.pair("s").unwrap().diff.get(7));
    e.resync("s").unwrap();
    run(&mut e, &mut v, &mut now, true);
    assert_eq!(state(&e, "s"), PairState::Pair);
}

#[test]
fn overlapping_sync_writes_reach_the_secondary_in_order() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0]), Duration::ZERO);
    remote(&mut e, &mut v, "s", 0, PairMode::Sync);
    run(&mut e, &mut v, &mut now, true);
    while e.poll_action().is_some() {}
    v.host_write(&mut e, 0, 1, 5, 1);
    v.host_write(&mut e, 0, 1, 6, 2);
    let Some(Action::Write { token, data, .. }) = e.poll_action() else {
        panic!()
    };
    assert_eq!(data[0], 5);
    assert!(e.poll_action().is_none(), "the second waits for the first");
    e.completed(token, true);
    let mut next = None;
    while let Some(a) = e.poll_action() {
        if let Action::Write { data, .. } = a {
            next = Some(data[0]);
        }
    }
    assert_eq!(next, Some(6));
}

#[test]
fn async_journal_is_applied_as_a_prefix() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0]), Duration::ZERO);
    remote(&mut e, &mut v, "a", 0, PairMode::Async);
    run(&mut e, &mut v, &mut now, true);
    assert_eq!(state(&e, "a"), PairState::Pair);
    // Secondary side in another engine.
    let (mut sec, mut sv) = (CopyEngine::new(vec![]), Vols::new(&[0]));
    sec.on_notice(
        &sv,
        0,
        wire::PairNotice {
            pair: "a".into(),
            group: "g".into(),
            state: Some(PairState::Pair),
            writers: vec![7],
            journal_seq: 0,
            mode: Some(PairMode::Async),
            image_time: None,
            relay: None,
        },
        Duration::ZERO,
    );
    for (i, val) in [1u8, 2, 3].into_iter().enumerate() {
        assert!(!v.host_write(&mut e, 0, i as u64, val, i as u64));
    }
    let writes: Vec<Action> = std::iter::from_fn(|| e.poll_action()).collect();
    assert_eq!(writes.len(), 3);
    // Deliver out of order: 3, then 1, then 2.
    let get = |i: usize| match &writes[i] {
        Action::JournalWrite { seq, lba, data, .. } => (*seq, *lba, data.clone()),
        _ => panic!(),
    };
    let (s3, l3, d3) = get(2);
    sec.on_journal_write(&mut sv, 0, Wwpn(Wwn(7)), s3, l3, d3)
        .unwrap();
    assert_eq!(sv.block(0, 2), 0, "not applied past a gap");
    let (s1, l1, d1) = get(0);
    sec.on_journal_write(&mut sv, 0, Wwpn(Wwn(7)), s1, l1, d1)
        .unwrap();
    assert_eq!((sv.block(0, 0), sv.block(0, 2)), (1, 0));
    let (s2, l2, d2) = get(1);
    sec.on_journal_write(&mut sv, 0, Wwpn(Wwn(7)), s2, l2, d2)
        .unwrap();
    assert_eq!(sv.block(0, 2), 3);
}

#[test]
fn full_journal_suspends_the_group() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0]), Duration::ZERO);
    remote(&mut e, &mut v, "a", 0, PairMode::Async);
    run(&mut e, &mut v, &mut now, true);
    e.set_journal_capacity("g", 8).unwrap();
    v.host_write(&mut e, 0, 0, 1, 1);
    v.host_write(&mut e, 0, 1, 1, 2);
    assert_eq!(state(&e, "a"), PairState::Pair);
    v.host_write(&mut e, 0, 2, 1, 3);
    assert_eq!(state(&e, "a"), PairState::Suspended);
    let d = &e.pair("a").unwrap().diff;
    assert!(
        d.get(0) && d.get(1) && d.get(2),
        "the journal falls back to the bitmap"
    );
}

#[test]
fn group_split_waits_for_the_journal_up_to_the_split() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]), Duration::ZERO);
    remote(&mut e, &mut v, "a", 0, PairMode::Async);
    remote(&mut e, &mut v, "b", 1, PairMode::Async);
    run(&mut e, &mut v, &mut now, true);
    v.host_write(&mut e, 0, 0, 1, 1);
    let Some(Action::JournalWrite { token, .. }) = e.poll_action() else {
        panic!()
    };
    e.split("a", None, now).unwrap();
    assert_eq!(state(&e, "a"), PairState::SplitPending);
    assert_eq!(state(&e, "b"), PairState::SplitPending, "the whole group");
    v.host_write(&mut e, 1, 0, 1, 2);
    assert!(
        e.poll_action().is_none(),
        "post-split writes are not journalled"
    );
    e.completed(token, true);
    assert_eq!(state(&e, "a"), PairState::Split);
    assert_eq!(state(&e, "b"), PairState::Split);
}

#[test]
fn timed_split_and_late_split() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]), Duration::ZERO);
    local(&mut e, &mut v, PairOptions::default());
    run(&mut e, &mut v, &mut now, true);
    assert!(matches!(
        e.split("p", Some(now - Duration::from_nanos(1)), now),
        Err(CopyError::TooLate { .. })
    ));
    e.split("p", Some(now + Duration::from_nanos(500)), now)
        .unwrap();
    assert_eq!(state(&e, "p"), PairState::Pair);
    assert_eq!(e.poll_timeout(now), Some(now + Duration::from_nanos(500)));
    e.tick(&mut v, now + Duration::from_nanos(500));
    assert_eq!(state(&e, "p"), PairState::Split);
}

/// The backup image under each strategy, with the copier stalled and a post-split
/// write storm on the range.
fn backup_image(strategy: BackupStrategy, granularity: Granularity) -> (Vec<u8>, bool) {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]), Duration::ZERO);
    local(
        &mut e,
        &mut v,
        PairOptions {
            strategy,
            granularity,
            ..PairOptions::default()
        },
    );
    run(&mut e, &mut v, &mut now, true);
    e.pairs.get_mut("p").unwrap().options.copy_rate = 0;
    for b in 0..16 {
        v.host_write(&mut e, 0, b, 10 + b as u8, b);
    }
    e.split("p", None, now).unwrap();
    let split_image: Vec<u8> = (0..16).map(|b| v.block(0, b)).collect();
    for b in (0..16).step_by(3) {
        v.host_write(&mut e, 0, b, 99, 100 + b);
    }
    let src = e.backup_begin(1, &[(0, 16)], now).unwrap().unwrap();
    let mut tape = Vec::new();
    let mut waited = false;
    let mut at = 0;
    while at < 16 {
        match e.backup_read(&src, &v, at, 4, (0, 16)) {
            BackupRead::Data(d) => {
                tape.extend(d.chunks(BB).map(|c| c[0]));
                at += 4;
            }
            BackupRead::Wait => {
                waited = true;
                e.pairs.get_mut("p").unwrap().options.copy_rate = 4;
                now += Duration::from_millis(1);
                e.tick(&mut v, now);
            }
            BackupRead::Fail(s) => panic!("{s:?}"),
        }
    }
    assert_eq!(tape, split_image, "INV-1 under {strategy:?}");
    (tape, waited)
}

#[test]
fn every_strategy_writes_the_split_image() {
    let (_, waited) = backup_image(BackupStrategy::M, Granularity::WholeRange);
    assert!(!waited, "M never waits");
    assert!(backup_image(BackupStrategy::R, Granularity::WholeRange).1);
    assert!(backup_image(BackupStrategy::R, Granularity::PerTransferUnit).1);
    assert!(backup_image(BackupStrategy::W, Granularity::WholeRange).1);
}

#[test]
fn strategy_h_refuses_while_split_pending() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]), Duration::ZERO);
    local(
        &mut e,
        &mut v,
        PairOptions {
            strategy: BackupStrategy::H,
            ..PairOptions::default()
        },
    );
    run(&mut e, &mut v, &mut now, true);
    e.pairs.get_mut("p").unwrap().options.copy_rate = 0;
    v.host_write(&mut e, 0, 1, 1, 1);
    e.split("p", None, now).unwrap();
    let s = e.backup_begin(1, &[(0, 4)], now).unwrap_err();
    assert_eq!(s.key, SenseKey::NOT_READY);
}

#[test]
fn backup_of_an_unsplit_secondary_is_a_sequence_error_unless_it_implies_the_split() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]), Duration::ZERO);
    local(&mut e, &mut v, PairOptions::default());
    run(&mut e, &mut v, &mut now, true);
    let s = e.backup_begin(1, &[(0, 4)], now).unwrap_err();
    assert_eq!(s.asc_pair(), asc::COMMAND_SEQUENCE_ERROR);
    e.pairs.get_mut("p").unwrap().options.backup_implies_split = true;
    let src = e.backup_begin(1, &[(0, 4)], now).unwrap().unwrap();
    assert!(src.early);
    assert!(state(&e, "p").is_split());
}

/// What a model-based run does after the split.
#[derive(Debug, Clone)]
enum Op {
    /// A host write of `v` to block `b` of the primary.
    Write(u64, u8),
    /// The copier runs 1 ms at this rate (blocks per ms).
    Tick(u64),
    /// A backup reads `n` blocks at `lba` of the secondary, as part of range `range`.
    Read {
        strategy: BackupStrategy,
        granularity: Granularity,
        lba: u64,
        n: u64,
    },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0u64..64, 1u8..255).prop_map(|(b, v)| Op::Write(b, v)),
        2 => (0u64..6).prop_map(Op::Tick),
        2 => (
            prop::sample::select(vec![BackupStrategy::R, BackupStrategy::W, BackupStrategy::M]),
            any::<bool>(),
            0u64..60,
            1u64..5,
        )
            .prop_map(|(strategy, unit, lba, n)| Op::Read {
                strategy,
                granularity: if unit {
                    Granularity::PerTransferUnit
                } else {
                    Granularity::WholeRange
                },
                lba,
                n,
            }),
    ]
}

proptest::proptest! {
    /// Seed 004 §7.6 over the engine alone, checked after every step of a random run
    /// (pre-split writes with a slow copier, a split, then host writes, copier ticks and
    /// backup reads in any order):
    /// INV-3 a still-different block of the primary holds its split value; INV-4 a
    /// clean block of the secondary holds the split value; INV-5 the secondary only
    /// ever holds its value at the split or the split value; INV-6 the split is
    /// SplitPending exactly when differences remain; INV-7 Split only when none do;
    /// INV-8 split-time bits only clear; INV-11 strategy R returns data only when its
    /// range (or unit) has no difference left; INV-12 strategy W only when the volume
    /// has none; INV-13 strategy M never waits, and every backup read returns the split
    /// image (the backup path takes the volumes read-only, so it cannot write the
    /// secondary).
    /// Broken engines it failed on: no copy-before-write (INV-3); the copier clearing a
    /// bit it did not copy (INV-4); strategy M reading the secondary for all blocks.
    #[test]
    fn split_invariants_hold_at_every_step(
        before in proptest::collection::vec((0u64..64, 1u8..255, 0u64..3), 0..40),
        after in proptest::collection::vec(op(), 0..80),
    ) {
        let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]), Duration::ZERO);
        local(&mut e, &mut v, PairOptions::default());
        run(&mut e, &mut v, &mut now, true);
        let set_rate = |e: &mut CopyEngine, r: u64| e.set_options("p", &OptionsPatch { copy_rate: Some(r), ..OptionsPatch::default() }).unwrap();
        set_rate(&mut e, 0);
        for (i, (b, val, rate)) in before.iter().enumerate() {
            v.host_write(&mut e, 0, *b, *val, i as u64);
            set_rate(&mut e, *rate);
            now += Duration::from_micros(300);
            e.tick(&mut v, now);
            set_rate(&mut e, 0);
        }
        e.split("p", None, now).unwrap();
        let p_split: Vec<u8> = (0..64).map(|b| v.block(0, b)).collect();
        let s_split: Vec<u8> = (0..64).map(|b| v.block(1, b)).collect();
        let pair = e.pair("p").unwrap();
        // INV-6.
        proptest::prop_assert_eq!(pair.state == PairState::SplitPending, !pair.diff.is_clear());
        let mut diff = pair.diff.clone();
        for (i, o) in after.iter().enumerate() {
            match o {
                Op::Write(b, val) => { v.host_write(&mut e, 0, *b, *val, 1000 + i as u64); }
                Op::Tick(r) => {
                    set_rate(&mut e, *r);
                    now += Duration::from_millis(1);
                    e.tick(&mut v, now);
                    set_rate(&mut e, 0);
                }
                Op::Read { strategy, granularity, lba, n } => {
                    e.pairs.get_mut("p").unwrap().options.priority = false;
                    let src = BackupSource { pair: "p".into(), strategy: *strategy, granularity: *granularity, early: false };
                    let range = (lba.saturating_sub(3), (n + 6).min(64 - lba.saturating_sub(3)));
                    let pair = e.pair("p").unwrap().clone();
                    match e.backup_read(&src, &v, *lba, *n, range) {
                        BackupRead::Data(d) => {
                            let got: Vec<u8> = d.chunks(BB).map(|c| c[0]).collect();
                            let want = &p_split[*lba as usize..(*lba + *n) as usize];
                            proptest::prop_assert_eq!(got.as_slice(), want, "a backup read returned other than the split image");
                            if pair.state == PairState::SplitPending {
                                match (strategy, granularity) {
                                    (BackupStrategy::R, Granularity::WholeRange) => proptest::prop_assert!(!pair.range_dirty(range.0, range.1), "INV-11"),
                                    (BackupStrategy::R, Granularity::PerTransferUnit) => proptest::prop_assert!(!pair.range_dirty(*lba, *n), "INV-11"),
                                    (BackupStrategy::W, _) => proptest::prop_assert!(pair.diff.is_clear(), "INV-12"),
                                    _ => {}
                                }
                            }
                        }
                        BackupRead::Wait => proptest::prop_assert!(*strategy != BackupStrategy::M, "INV-13: M never waits"),
                        BackupRead::Fail(s) => proptest::prop_assert!(false, "backup read failed: {s:?}"),
                    }
                }
            }
            let pair = e.pair("p").unwrap();
            for b in 0..64u64 {
                let (pb, sb, i) = (v.block(0, b), v.block(1, b), b as usize);
                proptest::prop_assert!(!pair.diff.get(b) || diff.get(b), "INV-8: bit {b} set after the split");
                if pair.diff.get(b) {
                    proptest::prop_assert_eq!(pb, p_split[i], "INV-3 at block {}", b);
                } else {
                    proptest::prop_assert_eq!(sb, p_split[i], "INV-4 at block {}", b);
                }
                proptest::prop_assert!(sb == s_split[i] || sb == p_split[i], "INV-5 at block {b}");
            }
            proptest::prop_assert!(pair.state != PairState::Split || pair.diff.is_clear(), "INV-7");
            diff = pair.diff.clone();
        }
    }
}

#[test]
fn one_primary_fans_out_to_several_secondaries() {
    let (mut e, mut v, mut now) = (
        CopyEngine::new(vec![]),
        Vols::new(&[0, 1, 2]),
        Duration::ZERO,
    );
    local(&mut e, &mut v, PairOptions::default());
    e.create(
        PairSpec {
            name: "p2".into(),
            primary: 0,
            secondary: Secondary::Local(2),
            mode: PairMode::Local,
            group: None,
            options: PairOptions::default(),
            initial: None,
        },
        &|l| v.geometry(l),
    )
    .unwrap();
    remote(&mut e, &mut v, "r", 0, PairMode::Sync);
    run(&mut e, &mut v, &mut now, true);
    assert!(
        v.host_write(&mut e, 0, 9, 4, 1),
        "held for the sync secondary"
    );
    let sent: Vec<Action> = std::iter::from_fn(|| e.poll_action()).collect();
    assert!(matches!(sent.as_slice(), [Action::Write { lba: 9, .. }]));
    run(&mut e, &mut v, &mut now, true);
    assert_eq!((v.block(1, 9), v.block(2, 9)), (4, 4));
    // Splitting one local pair leaves the others mirroring.
    e.split("p", None, now).unwrap();
    v.host_write(&mut e, 0, 9, 5, 2);
    run(&mut e, &mut v, &mut now, true);
    assert_eq!((v.block(1, 9), v.block(2, 9)), (4, 5));
}

// ---- deferred mode (the switch) -----------------------------------------------------

/// Runs the [`Action::Copy`]s queued so far on the vectors (reading the primary now)
/// and reports them; returns the hosts told to proceed.
fn serve_copies(e: &mut CopyEngine, v: &mut Vols) -> Vec<u64> {
    let mut proceed = Vec::new();
    while let Some(a) = e.poll_action() {
        match a {
            Action::Copy {
                token,
                lun,
                lba,
                blocks,
                to: Secondary::Local(s),
            } => {
                let data = v.read(lun, lba, blocks).unwrap();
                let ok = v.write(s, lba, &data);
                e.completed(token, ok);
            }
            Action::Proceed { host } => proceed.push(host),
            Action::Notify { token, .. } => e.completed(token, true),
            a => panic!("unexpected {a:?}"),
        }
    }
    proceed
}

/// A deferred local pair 0 → 1 in pair state, its copier stopped.
fn deferred_pair() -> (CopyEngine, Vols) {
    let (mut e, mut v) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]));
    local(&mut e, &mut v, PairOptions::default());
    let mut now = Duration::ZERO;
    while state(&e, "p") != PairState::Pair {
        now += Duration::from_millis(1);
        e.tick_deferred(now);
        serve_copies(&mut e, &mut v);
    }
    e.pairs.get_mut("p").unwrap().options.copy_rate = 0;
    (e, v)
}

/// Lands host write `host` (value `x` at block `b` of LU 0) that was admitted.
fn land(e: &mut CopyEngine, v: &mut Vols, b: u64, x: u8, host: u64) {
    let data = Bytes::from(vec![x; BB]);
    v.write(0, b, &data);
    e.after_write(0, b, data, host, Duration::ZERO);
}

#[test]
fn deferred_copy_before_write_holds_the_host_write_until_the_old_block_is_copied() {
    let (mut e, mut v) = deferred_pair();
    let w = Wwpn(Wwn(9));
    assert_eq!(e.admit_deferred(0, 2, 1, w, Duration::ZERO, 1), Ok(false));
    land(&mut e, &mut v, 2, 1, 1);
    e.split("p", None, Duration::ZERO).unwrap();
    assert_eq!(state(&e, "p"), PairState::SplitPending);
    // A post-split write to the still-different block waits for its copy.
    assert_eq!(e.admit_deferred(0, 2, 1, w, Duration::ZERO, 2), Ok(true));
    assert_eq!(
        serve_copies(&mut e, &mut v),
        vec![2],
        "proceeds once copied"
    );
    land(&mut e, &mut v, 2, 2, 2);
    assert_eq!((v.block(1, 2), v.block(0, 2)), (1, 2), "split image kept");
    assert_eq!(state(&e, "p"), PairState::Split);
    // A write to a block without split-time differences lands at once.
    assert_eq!(e.admit_deferred(0, 9, 1, w, Duration::ZERO, 3), Ok(false));
}

#[test]
fn deferred_split_waits_for_admitted_writes_and_holds_later_ones() {
    let (mut e, mut v) = deferred_pair();
    let w = Wwpn(Wwn(9));
    assert_eq!(e.admit_deferred(0, 3, 1, w, Duration::ZERO, 1), Ok(false));
    e.split("p", None, Duration::ZERO).unwrap();
    assert_eq!(
        state(&e, "p"),
        PairState::Pair,
        "draining the admitted write"
    );
    assert_eq!(e.admit_deferred(0, 4, 1, w, Duration::ZERO, 2), Ok(true));
    land(&mut e, &mut v, 3, 7, 1);
    assert_eq!(state(&e, "p"), PairState::SplitPending);
    assert_eq!(serve_copies(&mut e, &mut v), vec![2]);
    land(&mut e, &mut v, 4, 8, 2);
    let mut now = Duration::ZERO;
    e.pairs.get_mut("p").unwrap().options.copy_rate = 1024;
    while state(&e, "p") != PairState::Split {
        now += Duration::from_millis(1);
        e.tick_deferred(now);
        serve_copies(&mut e, &mut v);
    }
    assert_eq!(
        v.block(1, 3),
        7,
        "the write admitted before the split is in its image"
    );
    assert_eq!(v.block(1, 4), 0, "the one held behind it is not");
}

#[test]
fn deferred_backup_reads_only_a_split_image() {
    let (mut e, mut v) = deferred_pair();
    let w = Wwpn(Wwn(9));
    assert_eq!(
        e.split_image_ready(1),
        Err(Sense::new(
            SenseKey::ILLEGAL_REQUEST,
            asc::COMMAND_SEQUENCE_ERROR
        )),
        "a secondary in pair state holds no split image"
    );
    assert_eq!(e.admit_deferred(0, 2, 1, w, Duration::ZERO, 1), Ok(false));
    land(&mut e, &mut v, 2, 1, 1);
    e.split("p", None, Duration::ZERO).unwrap();
    assert_eq!(
        e.split_image_ready(1).unwrap_err().key,
        SenseKey::NOT_READY,
        "polls"
    );
    assert!(e.is_paired(0) && e.is_paired(1) && !e.is_paired(2));
    e.pairs.get_mut("p").unwrap().options.copy_rate = 1024;
    e.tick_deferred(Duration::from_millis(1));
    serve_copies(&mut e, &mut v);
    assert_eq!(state(&e, "p"), PairState::Split);
    assert_eq!(e.split_image_ready(1), Ok(()));
    assert_eq!(e.split_image_ready(0), Ok(()), "a primary is no secondary");
}

// ---- three sites (seed 000) ------------------------------------------------------

/// A host write of value `x` to block `b` of `lun` landing at `now`.
fn write_at(e: &mut CopyEngine, v: &mut Vols, lun: u16, b: u64, x: u8, host: u64, now: Duration) {
    e.before_write(v, lun, b, 1, Wwpn(Wwn(9)), now).unwrap();
    let data = Bytes::from(vec![x; BB]);
    v.write(lun, b, &data);
    e.after_write(lun, b, data, host, now);
}

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

#[test]
fn a_local_split_waits_for_the_sync_acks_stamped_before_it() {
    let (mut e, mut v, mut now) = (CopyEngine::new(vec![]), Vols::new(&[0, 1]), Duration::ZERO);
    remote(&mut e, &mut v, "s", 0, PairMode::Sync);
    local(&mut e, &mut v, PairOptions::default());
    run(&mut e, &mut v, &mut now, true);
    assert_eq!(state(&e, "p"), PairState::Pair);
    assert_eq!(state(&e, "s"), PairState::Pair);
    let t = now + ms(1);
    write_at(&mut e, &mut v, 0, 4, 7, 1, t);
    let Some(Action::Write {
        token,
        stamp: Some(stamp),
        ..
    }) = e.poll_action()
    else {
        panic!("a stamped sync write")
    };
    assert_eq!(stamp, t);
    e.split("p", None, t + ms(1)).unwrap();
    for i in 2..20 {
        e.tick(&mut v, t + ms(i));
    }
    assert_eq!(
        state(&e, "p"),
        PairState::SplitPending,
        "the sync write stamped before the split is not acknowledged yet"
    );
    e.completed(token, true);
    assert_eq!(state(&e, "p"), PairState::Split);
}

fn sync_notice(state: Option<PairState>) -> wire::PairNotice {
    wire::PairNotice {
        pair: "s".into(),
        group: "gs".into(),
        state,
        writers: vec![7],
        journal_seq: 0,
        mode: Some(PairMode::Sync),
        image_time: None,
        relay: None,
    }
}

#[test]
fn site_3_keeps_two_generations_and_fails_over_the_selected_blocks() {
    let (mut e, mut v) = (CopyEngine::new(vec![]), Vols::new(&[0]));
    e.on_notice(&v, 0, sync_notice(Some(PairState::Pair)), ms(0));
    let w = |e: &mut CopyEngine, v: &mut Vols, b: u64, ts: u64| {
        e.on_timestamped_write(v, 0, Wwpn(Wwn(7)), ms(ts), b, &Bytes::from(vec![1; BB]))
            .unwrap();
    };
    w(&mut e, &mut v, 1, 1);
    assert!(matches!(
        e.on_timestamped_write(&mut v, 0, Wwpn(Wwn(8)), ms(1), 0, &Bytes::from(vec![1; BB])),
        Err(_)
    ));
    e.clear_difference("gs", ms(10), ms(2)).unwrap();
    assert!(matches!(
        e.clear_difference("gs", ms(11), ms(3)),
        Err(CopyError::Generations(_))
    ));
    w(&mut e, &mut v, 2, 9);
    w(&mut e, &mut v, 3, 10); // rotates: the newer table starts at 10
    assert_eq!(e.last_clear("gs"), Some(ms(10)));
    assert!(e.generations().pending_clear("gs").is_none());
    // A late clear is refused and changes nothing.
    assert!(e.clear_difference("gs", ms(12), ms(20)).is_err());
    let report = RemoteReport {
        resync: false,
        image_time: ms(10),
    };
    let request = FailoverRequest {
        group: "gs".into(),
        pairs: vec![FailoverPair {
            name: "f".into(),
            v3_lun: 0,
            v2: Wwn(0x9000),
        }],
        mode: PairMode::Sync,
        rule: SelectionRule::Safe,
        report,
        options: PairOptions::default(),
    };
    let geo = |l: u16| (l == 0).then_some((64, BB as u32));
    let out = e.failover(&request, &geo).unwrap();
    assert_eq!(out[0].blocks, 1, "only block 3 was written since 10");
    assert_eq!(out[0].generation, "newer");
    assert_eq!(e.pair("f").unwrap().diff.count(), 1);
    assert!(e.roles().is_empty(), "V3 was taken over");
}

#[test]
fn site_2_remembers_the_image_time_of_the_last_complete_image() {
    let (mut e, v) = (CopyEngine::new(vec![]), Vols::new(&[0]));
    let mut n = sync_notice(Some(PairState::Resync));
    n.mode = Some(PairMode::Async);
    n.image_time = Some(ms(5));
    e.on_notice(&v, 0, n.clone(), ms(6));
    assert_eq!(e.role_image_time(0), None, "not complete while resyncing");
    n.state = Some(PairState::Pair);
    e.on_notice(&v, 0, n.clone(), ms(7));
    n.state = Some(PairState::Resync);
    n.image_time = Some(ms(9));
    e.on_notice(&v, 0, n, ms(9));
    assert_eq!(e.role_image_time(0), Some(ms(5)));
    assert!(e.generations().volume(0).is_none(), "async: no tables");
}

// ---- relay pairs (seed 002) -------------------------------------------------------------

const STANDBY_PORT: u64 = 0x5000_0000_0000_0002;
const PRIMARY_PORT: u64 = 0x5000_0000_0000_0001;

fn relay_opts(relays: Vec<u64>, consistency: RelayConsistency) -> RelayOptions {
    RelayOptions {
        relays,
        consistency,
        source: 7,
        destination: STANDBY_PORT,
        standby_lun: 0,
        ..RelayOptions::default()
    }
}

/// A primary engine with relay pair `p` (arr1:0 → LU 0 of the standby), formed.
fn relay_primary(relays: Vec<u64>) -> (CopyEngine, Vols, Duration) {
    relay_primary_with(relay_opts(relays, RelayConsistency::Immediate))
}

fn relay_primary_with(opts: RelayOptions) -> (CopyEngine, Vols, Duration) {
    let (mut e, mut v, mut now) = (
        CopyEngine::new(vec![Wwpn(Wwn(PRIMARY_PORT))]),
        Vols::new(&[0]),
        Duration::ZERO,
    );
    let options = PairOptions {
        relay: Some(opts),
        ..PairOptions::default()
    };
    e.create(
        PairSpec {
            name: "p".into(),
            primary: 0,
            secondary: Secondary::Remote(Wwn(0x6000)),
            mode: PairMode::Relay,
            group: Some("g".into()),
            options,
            initial: None,
        },
        &|l| v.geometry(l),
    )
    .unwrap();
    run(&mut e, &mut v, &mut now, true);
    assert_eq!(state(&e, "p"), PairState::Pair);
    (e, v, now)
}

fn drain(e: &mut CopyEngine) -> Vec<Action> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

/// (token, target, seq) of the RELAY RECORDs among `a`.
fn records(a: &[Action]) -> Vec<(u64, u64, u64)> {
    a.iter()
        .filter_map(|a| match a {
            Action::RelayRecord {
                token,
                target,
                record,
                destination,
                ..
            } => {
                assert_eq!(*destination, STANDBY_PORT);
                Some((*token, *target, record.id().seq))
            }
            _ => None,
        })
        .collect()
}

fn released(a: &[Action]) -> Vec<(u64, Option<Sense>)> {
    a.iter()
        .filter_map(|a| match a {
            Action::Release { host, sense } => Some((*host, sense.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn relay_pair_completes_the_host_on_the_relay_ack() {
    let (mut e, mut v, now) = relay_primary(vec![]);
    assert!(
        v.host_write(&mut e, 0, 3, 9, 1),
        "the host waits for a relay"
    );
    let a = drain(&mut e);
    let sent = records(&a);
    assert_eq!(sent.len(), 1);
    let (token, target, seq) = sent[0];
    assert_eq!(
        (target, seq),
        (STANDBY_PORT, 1),
        "direct: the standby is the relay"
    );
    assert!(
        matches!(&a[0], Action::RelayRecord { naa: Some(Wwn(0x6000)), record, .. }
            if record.data == Bytes::from(vec![9; BB]) && record.header.kind == crate::relay::Kind::Write { lun: 0, lba: 3 })
    );
    assert!(
        released(&a).is_empty(),
        "not before the relay's GOOD status"
    );
    e.relay_completed(token, Some(0), &Bytes::new(), now);
    assert_eq!(released(&drain(&mut e)), vec![(1, None)]);
    assert_eq!(state(&e, "p"), PairState::Pair);
    let st = &e.status(Some("p")).unwrap()[0];
    assert_eq!((st.mode.as_str(), st.relay_last_seq), ("relay", 1));
}

#[test]
fn relay_busy_is_sent_again_and_lost_relays_suspend_the_pair() {
    let (mut e, mut v, now) = relay_primary(vec![0xA1, 0xA2]);
    v.host_write(&mut e, 0, 3, 9, 1);
    let (t1, r1, s1) = records(&drain(&mut e))[0];
    assert_eq!((r1, s1), (0xA1, 1), "round robin starts at the first relay");
    // BUSY (relay full): after a short wait the same record goes again, to the other
    // relay.
    e.relay_completed(t1, Some(0x08), &Bytes::new(), now);
    assert!(records(&drain(&mut e)).is_empty(), "not at once");
    let due = e.poll_timeout(now).expect("a resend is due");
    assert!(due > now);
    e.tick(&mut v, due);
    let (t2, r2, s2) = records(&drain(&mut e))[0];
    assert_eq!((r2, s2), (0xA2, 1));
    // The exchange fails: that relay is down, the record goes back to the first.
    e.relay_completed(t2, None, &Bytes::new(), now);
    let (t3, r3, _) = records(&drain(&mut e))[0];
    assert_eq!(r3, 0xA1);
    // The last relay is lost as well: the pair suspends, the host is answered, and
    // the block waits for the resync.
    e.relay_completed(t3, None, &Bytes::new(), now);
    let a = drain(&mut e);
    assert_eq!(released(&a), vec![(1, None)]);
    assert_eq!(state(&e, "p"), PairState::Suspended);
    assert!(e.pair("p").unwrap().diff.get(3));
    assert_eq!(
        e.pair("p").unwrap().suspend_reason.as_deref(),
        Some("relays not reachable")
    );
    // The notice of the suspension names the stream's last sequence number.
    assert!(a.iter().any(|x| matches!(x, Action::Notify { notice, .. }
        if notice.journal_seq == 1 && notice.relay.is_some())));
}

#[test]
fn a_fenced_relay_pair_suspends() {
    let (mut e, mut v, now) = relay_primary(vec![]);
    v.host_write(&mut e, 0, 3, 9, 1);
    let (t, _, _) = records(&drain(&mut e))[0];
    e.relay_completed(t, Some(0x18), &Bytes::new(), now);
    assert_eq!(released(&drain(&mut e)), vec![(1, None)]);
    assert_eq!(
        e.pair("p").unwrap().suspend_reason.as_deref(),
        Some("fenced by the standby (takeover)")
    );
}

#[test]
fn relay_restart_points_need_pair_and_travel_in_order() {
    let (mut e, mut v, now) = relay_primary(vec![]);
    // A second pair of the group, still in its formation copy: no restart point yet.
    e.create(
        PairSpec {
            name: "p2".into(),
            primary: 1,
            secondary: Secondary::Remote(Wwn(0x6001)),
            mode: PairMode::Relay,
            group: Some("g".into()),
            options: PairOptions {
                relay: Some(relay_opts(vec![], RelayConsistency::Immediate)),
                ..PairOptions::default()
            },
            initial: None,
        },
        &|_| Some((64, BB as u32)),
    )
    .unwrap();
    assert!(matches!(
        e.restart_point("g", Bytes::new()),
        Err(CopyError::WrongState { state: "copy", .. })
    ));
    e.delete("p2").unwrap();
    drain(&mut e);
    v.host_write(&mut e, 0, 3, 9, 1);
    assert_eq!(e.restart_point("g", Bytes::from_static(b"state")), Ok(1));
    let sent = records(&drain(&mut e));
    assert_eq!(sent.iter().map(|s| s.2).collect::<Vec<_>>(), vec![1, 2]);
    for (t, _, _) in sent {
        e.relay_completed(t, Some(0), &Bytes::new(), now);
    }
    assert_eq!(
        e.restart_point("nope", Bytes::new()),
        Err(CopyError::NoSuchPair("nope".into()))
    );
    assert!(
        matches!(e.split("p", None, now), Err(CopyError::BadMode(_))),
        "a relay pair does not split"
    );
}

/// A standby engine holding LU 0 for relay source 7, fed by PRIMARY_PORT (and relays).
fn relay_standby(relays: Vec<u64>, consistency: RelayConsistency) -> (CopyEngine, Vols) {
    let (mut e, v) = (
        CopyEngine::new(vec![Wwpn(Wwn(STANDBY_PORT))]),
        Vols::new(&[0]),
    );
    for state in [PairState::Copy, PairState::Pair] {
        e.on_notice(
            &v,
            0,
            wire::PairNotice {
                pair: "p".into(),
                group: "g".into(),
                state: Some(state),
                writers: vec![PRIMARY_PORT],
                journal_seq: 0,
                mode: Some(PairMode::Relay),
                image_time: None,
                relay: Some(relay_opts(relays.clone(), consistency)),
            },
            Duration::ZERO,
        );
    }
    (e, v)
}

fn rec(seq: u64, lba: u64, val: u8) -> (crate::relay::Header, Bytes) {
    let r = crate::relay::Record::new(
        crate::relay::RecordId {
            source: crate::relay::SourceId(7),
            seq,
        },
        crate::relay::Kind::Write { lun: 0, lba },
        Bytes::from(vec![val; BB]),
    );
    (r.header, r.data)
}

fn point(seq: u64, p: u64, state: &'static [u8]) -> (crate::relay::Header, Bytes) {
    let r = crate::relay::Record::new(
        crate::relay::RecordId {
            source: crate::relay::SourceId(7),
            seq,
        },
        crate::relay::Kind::RestartPoint { point: p },
        Bytes::from_static(state),
    );
    (r.header, r.data)
}

#[test]
fn relay_standby_applies_in_order_and_fences_after_takeover() {
    let (mut e, mut v) = relay_standby(vec![], RelayConsistency::Immediate);
    let from = Wwpn(Wwn(PRIMARY_PORT));
    let (h2, d2) = rec(2, 5, 2);
    assert_eq!(e.on_relay_record(&mut v, from, h2, d2.clone()), Ok(true));
    assert_eq!(v.block(0, 5), 0, "held behind the gap");
    let (h1, d1) = rec(1, 4, 1);
    assert_eq!(e.on_relay_record(&mut v, from, h1, d1), Ok(true));
    assert_eq!((v.block(0, 4), v.block(0, 5)), (1, 2));
    assert_eq!(
        e.on_relay_record(&mut v, from, h2, d2),
        Ok(true),
        "a duplicate"
    );
    // Someone else: not a writer of this standby.
    let (h3, d3) = rec(3, 6, 3);
    let other = e.on_relay_record(&mut v, Wwpn(Wwn(0xBAD)), h3, d3.clone());
    assert_eq!(
        other.unwrap_err().key,
        crate::scsi::sense::SenseKey::DATA_PROTECT
    );
    // A record that outruns its data length is malformed.
    assert!(e.on_relay_record(&mut v, from, h3, Bytes::new()).is_err());
    // Record 4 arrives, 3 never does: dropped at the takeover.
    let (h4, d4) = rec(4, 7, 4);
    e.on_relay_record(&mut v, from, h4, d4).unwrap();
    assert!(
        matches!(e.takeover("p"), Err(CopyError::BadMode(_))),
        "a plain takeover would leave the source unfenced"
    );
    e.relay_takeover(&mut v, "g", &|_| true, Duration::ZERO)
        .unwrap();
    let r = e.relay_takeover_report("p").expect("direct: done at once");
    assert_eq!(
        (r.applied, r.dropped, r.resumed, r.luns),
        (2, 1, None, vec![0])
    );
    assert_eq!(v.block(0, 7), 0);
    // The old primary is fenced: records refused, writes too.
    assert_eq!(e.on_relay_record(&mut v, from, h3, d3), Ok(false));
    assert!(e.is_fenced(0, from));
    assert!(
        !e.is_fenced(0, Wwpn(Wwn(0x1234))),
        "other hosts use the volume"
    );
    let s = &e.relay_standbys()[0];
    assert!(s.fenced && s.applied == 2);
}

#[test]
fn deleting_a_relay_pair_releases_its_standby() {
    let (mut e, mut v) = relay_standby(vec![], RelayConsistency::Immediate);
    let mut notice = sync_notice(None);
    notice.pair = "p".into();
    notice.group = "g".into();
    e.on_notice(&v, 0, notice, Duration::ZERO);
    assert!(e.relay_standbys().is_empty());
    let (h, d) = rec(1, 4, 1);
    let r = e.on_relay_record(&mut v, Wwpn(Wwn(PRIMARY_PORT)), h, d);
    assert_eq!(
        r.unwrap_err().asc,
        crate::scsi::sense::asc::COMMAND_SEQUENCE_ERROR.asc,
        "no stream of that source here"
    );
}

#[test]
fn relay_standby_snapshots_roll_back_to_the_last_restart_point() {
    let (mut e, mut v) = relay_standby(vec![], RelayConsistency::Snapshots);
    let from = Wwpn(Wwn(PRIMARY_PORT));
    for (h, d) in [
        rec(1, 4, 1),
        point(2, 1, b"app"),
        rec(3, 4, 9),
        rec(4, 5, 9),
    ] {
        e.on_relay_record(&mut v, from, h, d).unwrap();
    }
    assert_eq!((v.block(0, 4), v.block(0, 5)), (9, 9));
    e.relay_takeover(&mut v, "g", &|_| true, Duration::ZERO)
        .unwrap();
    let r = e.relay_takeover_report("g").unwrap();
    assert_eq!(
        (v.block(0, 4), v.block(0, 5)),
        (1, 0),
        "the image of restart point 1"
    );
    let p = r.resumed.expect("resumed from point 1");
    assert_eq!((p.point, p.app_state), (1, Bytes::from_static(b"app")));
}

#[test]
fn relay_takeover_drains_the_reachable_relays_then_fences_them() {
    let (mut e, mut v) = relay_standby(vec![0xA1, 0xA2], RelayConsistency::Immediate);
    // The relays are writers of the standby: a record a relay forwards is taken.
    let (h1, d1) = rec(1, 4, 1);
    assert_eq!(e.on_relay_record(&mut v, Wwpn(Wwn(0xA2)), h1, d1), Ok(true));
    assert_eq!(v.block(0, 4), 1);
    let mut now = Duration::from_millis(1);
    // A2 is not reachable: only A1 is asked to forward.
    e.relay_takeover(&mut v, "g", &|w| w == 0xA1, now).unwrap();
    let a = drain(&mut e);
    let [
        Action::RelayControl {
            token,
            target: 0xA1,
            control: crate::relay::wire::RelayControl::Forward,
        },
    ] = a.as_slice()
    else {
        panic!("{a:?}");
    };
    e.relay_completed(*token, Some(0), &Bytes::new(), now);
    let held = |n: u64| {
        Bytes::from(
            serde_json::to_vec(&crate::relay::wire::RelayState {
                held_records: n,
                ..Default::default()
            })
            .unwrap(),
        )
    };
    let mut polls = 0;
    let mut fenced = Vec::new();
    for _ in 0..100 {
        for a in drain(&mut e) {
            match a {
                Action::RelayStatus { token, target } => {
                    assert_eq!(target, 0xA1);
                    polls += 1;
                    let left = if polls < 3 { 1 } else { 0 };
                    e.relay_completed(token, Some(0), &held(left), now);
                }
                Action::RelayControl {
                    token,
                    target,
                    control: crate::relay::wire::RelayControl::Fence { sources },
                } => {
                    assert_eq!(sources, vec![7]);
                    fenced.push(target);
                    e.relay_completed(token, Some(0), &Bytes::new(), now);
                }
                other => panic!("{other:?}"),
            }
        }
        if e.relay_takeover_report("g").is_some() {
            break;
        }
        now = e.poll_timeout(now).expect("a poll is due");
        e.tick(&mut v, now);
    }
    assert_eq!(polls, 3, "asked until the relay held nothing");
    assert_eq!(e.relay_standbys()[0].applied, 1);
    fenced.extend(drain(&mut e).iter().filter_map(|a| match a {
        Action::RelayControl { target, .. } => Some(*target),
        _ => None,
    }));
    assert_eq!(
        fenced,
        vec![0xA1, 0xA2],
        "every relay is fenced, reachable or not"
    );
    assert_eq!(e.relay_takeover_report("g").unwrap().fenced_relays, 2);
    assert!(e.is_fenced(0, Wwpn(Wwn(0xA2))));
}

#[test]
fn relay_takeover_times_out_on_a_silent_relay() {
    let (mut e, mut v) = relay_standby(vec![0xA1], RelayConsistency::Immediate);
    e.relay_takeover(&mut v, "g", &|_| true, Duration::ZERO)
        .unwrap();
    drain(&mut e);
    assert!(e.relay_takeover_report("g").is_none(), "draining");
    let deadline = e.poll_timeout(Duration::ZERO).unwrap();
    assert_eq!(
        deadline,
        Duration::from_millis(100),
        "the default drain timeout"
    );
    e.tick(&mut v, deadline);
    assert!(e.relay_takeover_report("g").is_some());
}

/// Primary engine → two relays (store and forward, emulated: GOOD upstream at once, the
/// same RELAY RECORD sent on unchanged later) → standby engine. The host is answered on
/// the relays' acknowledgements, before the standby has anything; the standby applies
/// in order whatever relay a record came through; a relay lost with a record leaves a
/// gap that the takeover drops.
#[test]
fn relay_records_cross_relays_unchanged_and_in_order() {
    let (mut p, mut pv, now) = relay_primary(vec![0xA1, 0xA2]);
    let (mut s, mut sv) = relay_standby(vec![0xA1, 0xA2], RelayConsistency::Immediate);
    let mut held: BTreeMap<u64, Vec<(Bytes, Bytes)>> = BTreeMap::new();
    let mut answered = Vec::new();
    for (i, host) in (1..=5u64).enumerate() {
        assert!(pv.host_write(&mut p, 0, i as u64, 10 + i as u8, host));
        for a in drain(&mut p) {
            let Some(out) = wire::relay_outgoing(&a) else {
                answered.extend(released(&[a]).iter().map(|r| r.0));
                continue;
            };
            assert_eq!(out.naa, None, "through a relay, not to the secondary LU");
            held.entry(out.target)
                .or_default()
                .push((out.cdb.clone(), out.data_out.clone()));
            // The relay holds the whole record: GOOD upstream.
            p.relay_completed(out.token, Some(0), &Bytes::new(), now);
        }
    }
    answered.extend(released(&drain(&mut p)).iter().map(|r| r.0));
    assert_eq!(
        answered,
        vec![1, 2, 3, 4, 5],
        "every host write answered, in order"
    );
    assert_eq!(
        held.values().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 2],
        "round robin"
    );
    // Relay A2 forwards first (out of order), A1 forwards only its first record and is
    // then lost with the other two.
    let deliver = |s: &mut CopyEngine, v: &mut Vols, relay: u64, (cdb, data): &(Bytes, Bytes)| {
        let crate::relay::wire::Command::Record {
            header,
            destination,
        } = crate::relay::wire::parse(cdb).expect("a RELAY RECORD")
        else {
            panic!("not a record");
        };
        assert_eq!(destination, STANDBY_PORT);
        s.on_relay_record(v, Wwpn(Wwn(relay)), header, data.clone())
    };
    for r in &held[&0xA2] {
        assert_eq!(deliver(&mut s, &mut sv, 0xA2, r), Ok(true));
    }
    assert_eq!(s.relay_standbys()[0].applied, 0, "2 and 4 wait for 1");
    assert_eq!(deliver(&mut s, &mut sv, 0xA1, &held[&0xA1][0]), Ok(true));
    let st = &s.relay_standbys()[0];
    assert_eq!(
        (st.applied, st.held),
        (2, 1),
        "1, 2 applied; 4 behind the gap at 3"
    );
    s.relay_takeover(&mut sv, "g", &|_| false, now).unwrap();
    let r = s
        .relay_takeover_report("g")
        .expect("no relay reachable: at once");
    assert_eq!((r.applied, r.dropped, r.fenced_relays), (2, 1, 2));
    assert_eq!(
        (sv.block(0, 0), sv.block(0, 1), sv.block(0, 3)),
        (10, 11, 0)
    );
    assert_eq!(
        deliver(&mut s, &mut sv, 0xA1, &held[&0xA1][1]),
        Ok(false),
        "fenced"
    );
}

/// After a suspension the stream goes on with the same numbering: the resync's notice
/// tells the standby the last sequence number, and the next record is the one after it.
#[test]
fn a_resynced_relay_pair_goes_on_numbering() {
    let (mut e, mut v, mut now) = relay_primary(vec![]);
    v.host_write(&mut e, 0, 3, 9, 1);
    let (t, _, _) = records(&drain(&mut e))[0];
    e.relay_completed(t, None, &Bytes::new(), now);
    drain(&mut e);
    assert_eq!(state(&e, "p"), PairState::Suspended);
    e.resync("p").unwrap();
    let a = run(&mut e, &mut v, &mut now, true);
    let notices: Vec<(Option<PairState>, u64)> = a
        .iter()
        .filter_map(|x| match x {
            Action::Notify { notice, .. } => Some((notice.state, notice.journal_seq)),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices,
        vec![(Some(PairState::Resync), 1), (Some(PairState::Pair), 1)]
    );
    v.host_write(&mut e, 0, 4, 9, 2);
    assert_eq!(records(&drain(&mut e))[0].2, 2);
    // The standby told so skips what the resync copy superseded.
    let (mut s2, mut sv) = relay_standby(vec![], RelayConsistency::Immediate);
    let mut n = sync_notice(Some(PairState::Resync));
    (n.pair, n.group, n.journal_seq, n.mode) = ("p".into(), "g".into(), 1, Some(PairMode::Relay));
    n.writers = vec![PRIMARY_PORT];
    n.relay = Some(relay_opts(vec![], RelayConsistency::Immediate));
    s2.on_notice(&sv, 0, n, Duration::ZERO);
    let (h, d) = rec(2, 4, 9);
    s2.on_relay_record(&mut sv, Wwpn(Wwn(PRIMARY_PORT)), h, d)
        .unwrap();
    assert_eq!(s2.relay_standbys()[0].applied, 2);
}

#[test]
fn a_relay_comes_back_when_a_path_to_it_does() {
    let (mut e, mut v, now) = relay_primary(vec![0xA1, 0xA2]);
    let send = |e: &mut CopyEngine, v: &mut Vols, host: u64| {
        v.host_write(e, 0, host, 1, host);
        records(&drain(e))[0]
    };
    let (t, r, _) = send(&mut e, &mut v, 1);
    assert_eq!(r, 0xA1);
    e.relay_completed(t, None, &Bytes::new(), now);
    let (t, r, seq) = records(&drain(&mut e))[0];
    assert_eq!((r, seq), (0xA2, 1), "A1 is down: to A2");
    e.relay_completed(t, Some(0), &Bytes::new(), now);
    let (t, r, _) = send(&mut e, &mut v, 2);
    assert_eq!(r, 0xA2, "still only A2");
    e.relay_completed(t, Some(0), &Bytes::new(), now);
    e.relay_path_up(0xA1);
    let (_, r, _) = send(&mut e, &mut v, 3);
    assert_eq!(r, 0xA1, "A1 is back in the round robin");
}

// ---- FEC relay pairs (seed 002 emb 5/6) ----------------------------------------------------

/// (token, target, header, redundancy, unit) of the FEC units among `a`.
type FecOut = (
    u64,
    u64,
    crate::relay::Header,
    crate::relay::Redundancy,
    crate::relay::Unit,
);

fn fec_units(a: &[Action]) -> Vec<FecOut> {
    a.iter()
        .filter_map(|a| match a {
            Action::FecUnit {
                token,
                target,
                header,
                redundancy,
                unit,
                ..
            } => Some((*token, *target, *header, *redundancy, unit.clone())),
            _ => None,
        })
        .collect()
}

fn fec_opts(fec: RelayFec, networks: u8) -> RelayOptions {
    RelayOptions {
        fec: Some(fec),
        networks,
        destination2: if networks == 2 {
            STANDBY_PORT + 0x10
        } else {
            0
        },
        ..relay_opts(vec![], RelayConsistency::Immediate)
    }
}

#[test]
fn fec_pair_completes_on_a_restoring_set_and_the_standby_applies_once() {
    let (mut p, mut pv, now) =
        relay_primary_with(fec_opts(RelayFec::ErasureCode { data: 4, parity: 2 }, 2));
    let (mut sb, mut sv) = relay_standby(vec![], RelayConsistency::Immediate);
    let from = Wwpn(Wwn(PRIMARY_PORT));
    pv.host_write(&mut p, 0, 3, 9, 1);
    let units = fec_units(&drain(&mut p));
    assert_eq!(units.len(), 6);
    // Fig. 17: data units on the first network, parity on the second.
    let targets: Vec<u64> = units.iter().map(|u| u.1).collect();
    assert_eq!(targets[..4], [STANDBY_PORT; 4]);
    assert_eq!(targets[4..], [STANDBY_PORT + 0x10; 2]);
    // Units 1 and 2 are lost; the others reach the standby, parity first.
    let mut released_at = None;
    for (i, u) in [5usize, 4, 0, 3].into_iter().enumerate() {
        let (token, _, header, redundancy, unit) = units[u].clone();
        let r = sb.on_fec_unit(
            &mut sv,
            from,
            (header, redundancy, unit.index),
            unit.bytes.clone(),
            now,
        );
        assert_eq!(r, Ok(true));
        p.relay_completed(token, Some(0), &Bytes::new(), now);
        if !released(&drain(&mut p)).is_empty() {
            released_at = Some(i);
        }
    }
    assert_eq!(
        released_at,
        Some(3),
        "the 4th GOOD unit completes the host (F3)"
    );
    assert_eq!(sv.read(0, 3, 1).unwrap(), Bytes::from(vec![9u8; BB]));
    // The lost units' exchanges fail afterwards: nothing is sent again (F2).
    for u in [1usize, 2] {
        p.relay_completed(units[u].0, None, &Bytes::new(), now);
    }
    assert!(fec_units(&drain(&mut p)).is_empty());
    // A late unit of the restored record is answered GOOD and applies nothing again.
    let (_, _, header, redundancy, unit) = units[1].clone();
    assert_eq!(
        sb.on_fec_unit(
            &mut sv,
            from,
            (header, redundancy, unit.index),
            unit.bytes,
            now
        ),
        Ok(true)
    );
    let st = sb.relay_standbys();
    assert_eq!((st[0].applied, st[0].held), (1, 0));
    assert_eq!(state(&p, "p"), PairState::Pair);
}

#[test]
fn fec_units_beyond_tolerance_are_sent_again_and_bad_units_refused() {
    let (mut p, mut pv, now) =
        relay_primary_with(fec_opts(RelayFec::ErasureCode { data: 2, parity: 1 }, 1));
    pv.host_write(&mut p, 0, 3, 7, 1);
    let units = fec_units(&drain(&mut p));
    assert_eq!(units.len(), 3);
    // Unit 0 lost: units 1 and 2 still restore, nothing is resent.
    p.relay_completed(units[0].0, None, &Bytes::new(), now);
    assert!(fec_units(&drain(&mut p)).is_empty());
    // Unit 1 lost too: beyond tolerance, the missing units go again.
    p.relay_completed(units[1].0, None, &Bytes::new(), now);
    let again = fec_units(&drain(&mut p));
    let idx: Vec<u16> = again.iter().map(|u| u.4.index).collect();
    assert_eq!(idx, vec![0, 1]);
    p.relay_completed(units[2].0, Some(0), &Bytes::new(), now);
    p.relay_completed(again[0].0, Some(0), &Bytes::new(), now);
    assert_eq!(released(&drain(&mut p)), vec![(1, None)]);

    // The standby names the field of a malformed unit.
    let (mut sb, mut sv) = relay_standby(vec![], RelayConsistency::Immediate);
    let from = Wwpn(Wwn(PRIMARY_PORT));
    let (_, _, header, redundancy, unit) = units[0].clone();
    let short = unit.bytes.slice(1..);
    let err = sb
        .on_fec_unit(&mut sv, from, (header, redundancy, 0), short, now)
        .unwrap_err();
    assert_eq!(err, Sense::invalid_field_in_cdb(32, None));
    let err = sb
        .on_fec_unit(
            &mut sv,
            Wwpn(Wwn(0xBAD)),
            (header, redundancy, 0),
            unit.bytes,
            now,
        )
        .unwrap_err();
    assert_eq!(err.key, SenseKey::DATA_PROTECT);
}

#[test]
fn fec_is_refused_with_relays() {
    let mut e = CopyEngine::new(vec![Wwpn(Wwn(PRIMARY_PORT))]);
    let v = Vols::new(&[0]);
    let mut opts = fec_opts(RelayFec::WholeReplica, 1);
    opts.relays = vec![0xA1];
    let r = e.create(
        PairSpec {
            name: "p".into(),
            primary: 0,
            secondary: Secondary::Remote(Wwn(0x6000)),
            mode: PairMode::Relay,
            group: Some("g".into()),
            options: PairOptions {
                relay: Some(opts),
                ..PairOptions::default()
            },
            initial: None,
        },
        &|l| v.geometry(l),
    );
    assert!(
        matches!(&r, Err(CopyError::BadMode(m)) if m.starts_with("fec:")),
        "{r:?}"
    );
}
