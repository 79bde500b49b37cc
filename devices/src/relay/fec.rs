//! Forward error correction on one hop (seed 002 emb 5/6: §3.3, §4.5 S300–S327,
//! [0143]–[0154], §4.6; invariants F1–F5; seed §7.6 E8): a record's bytes travel as a
//! redundant group of independently sent units, and the receiver restores the record as
//! soon as it holds enough of them, with no retransmission while the losses stay within
//! the scheme's tolerance.
//!
//! Schemes ([`Redundancy`]): `N` data pieces plus `m` Reed–Solomon parity pieces (any `N`
//! units restore; `m = 1` is the patent's single parity, `m = 2` its double parity),
//! computed by the `reed-solomon-simd` crate; a whole replica (2 units, either restores);
//! per-piece replicas (`2N` units, each piece index once restores). With two networks
//! (Fig. 17) the data units go on the first and the redundant units on the second.
//!
//! Decisions (E8): the required count is `N`; the scheme travels with each command
//! ([`FecReceiver::open`]); a corrupted unit is a lost one (the network drops it on its
//! CRC). A group still short of units `timeout` after it opened gets a typed
//! [`Retransmit`] naming the missing units, again every `timeout`; it never waits
//! forever. Units of a group already restored (or never opened) are discarded with no
//! effect (F3).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::{RecordId, RelayError};

/// How a record is made redundant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redundancy {
    /// `data` pieces plus `parity` Reed–Solomon pieces.
    ErasureCode { data: u16, parity: u16 },
    /// The record and one copy of it.
    WholeReplica,
    /// `pieces` pieces, each sent twice.
    PieceReplica { pieces: u16 },
}

impl Redundancy {
    pub fn validate(&self) -> Result<(), RelayError> {
        let ok = match *self {
            Redundancy::ErasureCode { data, parity } => {
                data > 0
                    && parity > 0
                    && reed_solomon_simd::ReedSolomonEncoder::supports(
                        usize::from(data),
                        usize::from(parity),
                    )
            }
            Redundancy::WholeReplica => true,
            Redundancy::PieceReplica { pieces } => pieces > 0 && pieces <= u16::MAX / 2,
        };
        if ok {
            Ok(())
        } else {
            Err(RelayError::BadRedundancy(format!(
                "{self:?} is not a usable scheme"
            )))
        }
    }

    /// Units in a group.
    pub fn units(&self) -> usize {
        match *self {
            Redundancy::ErasureCode { data, parity } => usize::from(data) + usize::from(parity),
            Redundancy::WholeReplica => 2,
            Redundancy::PieceReplica { pieces } => 2 * usize::from(pieces),
        }
    }

    /// Losses that never prevent restoration, whichever units they hit.
    pub fn tolerance(&self) -> usize {
        match *self {
            Redundancy::ErasureCode { parity, .. } => usize::from(parity),
            Redundancy::WholeReplica | Redundancy::PieceReplica { .. } => 1,
        }
    }

    /// Data pieces: the units that carry the record itself.
    fn pieces(&self) -> usize {
        match *self {
            Redundancy::ErasureCode { data, .. } => usize::from(data),
            Redundancy::WholeReplica => 1,
            Redundancy::PieceReplica { pieces } => usize::from(pieces),
        }
    }

    /// Whether the units `indices` (distinct or not) restore a record: `N` distinct
    /// units of an erasure code, either copy of a whole replica, each piece index once
    /// of piece replicas. What a sender counts its acknowledged units with.
    pub fn restores(&self, indices: &std::collections::BTreeSet<u16>) -> bool {
        match *self {
            Redundancy::ErasureCode { data, .. } => indices.len() >= usize::from(data),
            Redundancy::WholeReplica => !indices.is_empty(),
            Redundancy::PieceReplica { pieces } => {
                (0..pieces).all(|i| indices.contains(&i) || indices.contains(&(i + pieces)))
            }
        }
    }

    /// Bytes per unit for a record of `len` bytes (Reed–Solomon wants them even, and
    /// non-zero).
    pub fn unit_bytes(&self, len: usize) -> usize {
        let n = len.div_ceil(self.pieces());
        match self {
            Redundancy::ErasureCode { .. } => n.next_multiple_of(2).max(2),
            _ => n,
        }
    }
}

/// Which of two independent networks a unit travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Network {
    First,
    Second,
}

/// One transmission unit of a redundant group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The record (source and command identifiers) the unit belongs to.
    pub group: RecordId,
    /// Position in the group: the data pieces first, then the redundant units.
    pub index: u16,
    pub network: Network,
    pub bytes: Bytes,
}

/// Builds the redundant group of `data` (S304); with `two_networks` the redundant units
/// go on [`Network::Second`].
pub fn encode(
    redundancy: Redundancy,
    two_networks: bool,
    group: RecordId,
    data: &[u8],
) -> Result<Vec<Unit>, RelayError> {
    redundancy.validate()?;
    let size = redundancy.unit_bytes(data.len());
    let pieces: Vec<Vec<u8>> = (0..redundancy.pieces())
        .map(|i| {
            let mut p = data.get(i * size..).unwrap_or_default().to_vec();
            p.resize(size, 0);
            p
        })
        .collect();
    let extra = match redundancy {
        Redundancy::ErasureCode { data, parity } => {
            reed_solomon_simd::encode(usize::from(data), usize::from(parity), &pieces)
                .map_err(|e| RelayError::BadRedundancy(e.to_string()))?
        }
        Redundancy::WholeReplica | Redundancy::PieceReplica { .. } => pieces.clone(),
    };
    let second = if two_networks {
        Network::Second
    } else {
        Network::First
    };
    let units = pieces
        .into_iter()
        .map(|p| (Network::First, p))
        .chain(extra.into_iter().map(|p| (second, p)))
        .enumerate()
        .map(|(i, (network, p))| Unit {
            group,
            index: u16::try_from(i).expect("validated unit count"),
            network,
            bytes: Bytes::from(p),
        })
        .collect();
    Ok(units)
}

/// What a received unit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Not enough units yet.
    Pending,
    /// Restored: the record's bytes. Acknowledge the command now (F3).
    Restored(Bytes),
    /// No open group takes it (late, already restored, unknown, or malformed): dropped.
    Discarded,
}

/// A group still short of units at its deadline: ask the sender for these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retransmit {
    pub group: RecordId,
    pub missing: Vec<u16>,
}

/// A group being collected (S320–S325).
#[derive(Debug, Clone)]
struct Group {
    redundancy: Redundancy,
    len: usize,
    units: BTreeMap<u16, Bytes>,
    deadline: Duration,
}

impl Group {
    /// The restored record, once the units suffice.
    fn restore(&self) -> Option<Bytes> {
        let n = self.redundancy.pieces();
        let piece = |i: usize| {
            let i = u16::try_from(i).ok()?;
            self.units.get(&i).or_else(|| match self.redundancy {
                Redundancy::PieceReplica { pieces } => self.units.get(&(i + pieces)),
                Redundancy::WholeReplica => self.units.get(&1),
                Redundancy::ErasureCode { .. } => None,
            })
        };
        let mut out: Vec<u8> = Vec::with_capacity(self.len);
        let direct: Option<Vec<&Bytes>> = (0..n).map(piece).collect();
        if let Some(all) = direct {
            all.iter().for_each(|p| out.extend_from_slice(p));
        } else {
            let Redundancy::ErasureCode { data, parity } = self.redundancy else {
                return None;
            };
            if self.units.len() < n {
                return None;
            }
            let (orig, rec): (Vec<_>, Vec<_>) = self.units.iter().partition(|(i, _)| **i < data);
            let restored = reed_solomon_simd::decode(
                usize::from(data),
                usize::from(parity),
                orig.iter().map(|(i, b)| (usize::from(**i), &b[..])),
                rec.iter().map(|(i, b)| (usize::from(**i - data), &b[..])),
            )
            .expect("N distinct units of equal size restore");
            for i in 0..n {
                match piece(i) {
                    Some(p) => out.extend_from_slice(p),
                    None => out.extend_from_slice(&restored[&i]),
                }
            }
        }
        out.truncate(self.len);
        Some(Bytes::from(out))
    }
}

/// The receiving side: open groups by (source, command). See the module doc.
#[derive(Debug, Clone)]
pub struct FecReceiver {
    /// How long a group may stay short of units before a retransmission is asked for.
    timeout: Duration,
    groups: BTreeMap<RecordId, Group>,
}

impl FecReceiver {
    pub fn new(timeout: Duration) -> FecReceiver {
        FecReceiver {
            timeout,
            groups: BTreeMap::new(),
        }
    }

    /// The redundant write command for `group`: `len` bytes under `redundancy`.
    pub fn open(
        &mut self,
        group: RecordId,
        redundancy: Redundancy,
        len: usize,
        now: Duration,
    ) -> Result<(), RelayError> {
        redundancy.validate()?;
        self.groups.insert(
            group,
            Group {
                redundancy,
                len,
                units: BTreeMap::new(),
                deadline: now + self.timeout,
            },
        );
        Ok(())
    }

    /// One unit off a network.
    pub fn receive(&mut self, unit: Unit) -> Receipt {
        let Some(g) = self.groups.get_mut(&unit.group) else {
            return Receipt::Discarded;
        };
        if usize::from(unit.index) >= g.redundancy.units()
            || unit.bytes.len() != g.redundancy.unit_bytes(g.len)
        {
            return Receipt::Discarded;
        }
        g.units.entry(unit.index).or_insert(unit.bytes);
        match g.restore() {
            Some(data) => {
                self.groups.remove(&unit.group);
                Receipt::Restored(data)
            }
            None => Receipt::Pending,
        }
    }

    /// Groups past their deadline: retransmission requests; each gets a new deadline.
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<Retransmit> {
        let mut out = Vec::new();
        for (id, g) in &mut self.groups {
            if g.deadline <= now {
                g.deadline = now + self.timeout;
                let units = u16::try_from(g.redundancy.units()).expect("validated unit count");
                out.push(Retransmit {
                    group: *id,
                    missing: (0..units).filter(|i| !g.units.contains_key(i)).collect(),
                });
            }
        }
        out
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.groups.values().map(|g| g.deadline).min()
    }

    /// Groups being collected.
    pub fn open_groups(&self) -> usize {
        self.groups.len()
    }

    /// Whether `group` is being collected.
    pub fn is_open(&self, group: RecordId) -> bool {
        self.groups.contains_key(&group)
    }

    /// Forgets `group` (its record arrived some other way, or will never be needed);
    /// its later units are discarded.
    pub fn close(&mut self, group: RecordId) {
        self.groups.remove(&group);
    }

    /// Forgets every group (a takeover: what was not restored was never acknowledged).
    pub fn close_all(&mut self) {
        self.groups.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::SourceId;
    use super::*;

    const G: RecordId = RecordId {
        source: SourceId(3),
        seq: 9,
    };

    fn collect(r: &mut FecReceiver, units: impl IntoIterator<Item = Unit>) -> Vec<Receipt> {
        units.into_iter().map(|u| r.receive(u)).collect()
    }

    #[test]
    fn parity_restores_any_lost_unit() {
        let data: Vec<u8> = (0..23).collect();
        let scheme = Redundancy::ErasureCode { data: 4, parity: 1 };
        let units = encode(scheme, false, G, &data).unwrap();
        assert_eq!(units.len(), 5);
        for lost in 0..5 {
            let mut r = FecReceiver::new(Duration::from_secs(1));
            r.open(G, scheme, data.len(), Duration::ZERO).unwrap();
            let got = collect(&mut r, units.iter().filter(|u| u.index != lost).cloned());
            assert_eq!(
                got.last(),
                Some(&Receipt::Restored(Bytes::from(data.clone())))
            );
            // The unit that arrives after restoration is discarded.
            assert_eq!(
                r.receive(units[usize::from(lost)].clone()),
                Receipt::Discarded
            );
        }
    }

    #[test]
    fn the_receiver_acknowledges_as_soon_as_it_has_n_units() {
        let data = vec![5u8; 40];
        let scheme = Redundancy::ErasureCode { data: 3, parity: 2 };
        let units = encode(scheme, true, G, &data).unwrap();
        assert_eq!(
            units
                .iter()
                .filter(|u| u.network == Network::Second)
                .count(),
            2
        );
        let mut r = FecReceiver::new(Duration::from_secs(1));
        r.open(G, scheme, data.len(), Duration::ZERO).unwrap();
        // Parity units first: the third unit restores.
        let got = collect(
            &mut r,
            [units[4].clone(), units[3].clone(), units[0].clone()],
        );
        assert_eq!(got[..2], [Receipt::Pending, Receipt::Pending]);
        assert_eq!(got[2], Receipt::Restored(Bytes::from(data)));
        assert_eq!(r.open_groups(), 0);
    }

    #[test]
    fn replicas_restore_from_either_copy_or_every_piece_once() {
        let data: Vec<u8> = (0..10).collect();
        let whole = encode(Redundancy::WholeReplica, true, G, &data).unwrap();
        let mut r = FecReceiver::new(Duration::from_secs(1));
        r.open(G, Redundancy::WholeReplica, 10, Duration::ZERO)
            .unwrap();
        assert_eq!(
            r.receive(whole[1].clone()),
            Receipt::Restored(Bytes::from(data.clone()))
        );
        let scheme = Redundancy::PieceReplica { pieces: 3 };
        let pieces = encode(scheme, false, G, &data).unwrap();
        r.open(G, scheme, 10, Duration::ZERO).unwrap();
        let got = collect(
            &mut r,
            [pieces[0].clone(), pieces[3].clone(), pieces[4].clone()],
        );
        assert_eq!(got[1], Receipt::Pending, "index 0 twice is not index 1");
        assert_eq!(
            r.receive(pieces[2].clone()),
            Receipt::Restored(Bytes::from(data))
        );
    }

    #[test]
    fn beyond_tolerance_the_receiver_asks_for_the_missing_units() {
        let data = vec![1u8; 16];
        let scheme = Redundancy::ErasureCode { data: 2, parity: 1 };
        let units = encode(scheme, false, G, &data).unwrap();
        let mut r = FecReceiver::new(Duration::from_millis(50));
        r.open(G, scheme, 16, Duration::ZERO).unwrap();
        assert_eq!(r.receive(units[1].clone()), Receipt::Pending);
        assert!(r.handle_timeout(Duration::from_millis(49)).is_empty());
        assert_eq!(
            r.handle_timeout(Duration::from_millis(50)),
            vec![Retransmit {
                group: G,
                missing: vec![0, 2]
            }]
        );
        assert_eq!(r.poll_timeout(), Some(Duration::from_millis(100)));
        assert_eq!(
            r.receive(units[2].clone()),
            Receipt::Restored(Bytes::from(data))
        );
    }

    /// F1 end to end: for every subset of `N` distinct units of a 3+2 group the record
    /// is restored byte for byte, handed to the standby, and applied exactly once
    /// however many units (and duplicates) follow.
    #[test]
    fn any_n_units_restore_a_record_applied_exactly_once() {
        use super::super::standby::{Standby, StandbyAction, StandbyConfig};
        use super::super::{Consistency, Kind, Record};
        use std::collections::BTreeSet;
        let data: Vec<u8> = (0..1536u32).map(|i| (i * 7 % 251) as u8).collect();
        let scheme = Redundancy::ErasureCode { data: 3, parity: 2 };
        // The stream's first record: the standby applies it at once.
        let g = RecordId {
            source: SourceId(3),
            seq: 1,
        };
        let units = encode(scheme, true, g, &data).unwrap();
        for mask in 0u32..32 {
            if mask.count_ones() != 3 {
                continue;
            }
            let mut sb = Standby::new(StandbyConfig {
                consistency: Consistency::Immediate,
                sources: vec![g.source],
                relays: Vec::new(),
                drain_timeout: Duration::from_secs(1),
            });
            let mut r = FecReceiver::new(Duration::from_secs(1));
            r.open(g, scheme, data.len(), Duration::ZERO).unwrap();
            let chosen: Vec<&Unit> = units
                .iter()
                .filter(|u| mask & (1 << u.index) != 0)
                .collect();
            let indices: BTreeSet<u16> = chosen.iter().map(|u| u.index).collect();
            assert!(scheme.restores(&indices));
            let mut writes = 0;
            // The chosen units, then every unit again (late and duplicate units).
            for u in chosen.into_iter().chain(units.iter()) {
                if let Receipt::Restored(bytes) = r.receive(u.clone()) {
                    assert_eq!(&bytes[..], &data[..], "mask {mask:05b}");
                    sb.receive(Record::new(g, Kind::Write { lun: 0, lba: 0 }, bytes));
                }
                while let Some(a) = sb.poll_action() {
                    if matches!(a, StandbyAction::Write { .. }) {
                        writes += 1;
                    }
                }
            }
            assert_eq!(writes, 1, "mask {mask:05b}: applied exactly once");
            assert_eq!(sb.applied(g.source), 1);
        }
        let two: BTreeSet<u16> = [0, 4].into();
        assert!(!scheme.restores(&two));
        let pieces = Redundancy::PieceReplica { pieces: 2 };
        assert!(!pieces.restores(&[0, 2].into()), "piece 0 twice");
        assert!(pieces.restores(&[0, 3].into()));
    }

    #[test]
    fn bad_schemes_and_units_are_refused() {
        assert!(
            Redundancy::ErasureCode { data: 0, parity: 1 }
                .validate()
                .is_err()
        );
        assert!(
            Redundancy::ErasureCode { data: 2, parity: 0 }
                .validate()
                .is_err()
        );
        assert!(Redundancy::PieceReplica { pieces: 0 }.validate().is_err());
        let mut r = FecReceiver::new(Duration::from_secs(1));
        r.open(G, Redundancy::WholeReplica, 4, Duration::ZERO)
            .unwrap();
        let bad = Unit {
            group: G,
            index: 0,
            network: Network::First,
            bytes: Bytes::from_static(&[1, 2]),
        };
        assert_eq!(r.receive(bad), Receipt::Discarded);
        assert_eq!(r.open_groups(), 1);
    }
}
