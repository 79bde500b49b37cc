//! Relay pairs (seed 002) in the copy engine: the primary side of a relay-mode group
//! ([`crate::relay::Primary`]) and the standby side of the groups this array is the
//! standby of ([`crate::relay::Standby`]), with the takeover.
//!
//! Primary side. A relay group is one source stream: every host write to a member's
//! primary in state `pair` becomes a record (`Primary::write`) sent as RELAY RECORD
//! ([`Action::RelayRecord`]) to the relay the core chose, DESTINATION the standby's port,
//! LUN the secondary's; with no relays configured the standby's own port is the one
//! "relay" (direct mode). The host write is answered once it landed locally and a relay
//! acknowledged its record (and every record before it): GOOD status from the relay.
//! BUSY (or TASK SET FULL): sent again after a short wait (`send_failed`). A failed
//! exchange or any other status: the relay is down (`relay_down`) until a path to it
//! comes up again (`relay_up`); with no relay left the group suspends like an async group that
//! lost its secondary: the waiting host writes are answered (GOOD, or the fence sense
//! with `fence`), their blocks marked for the resync, and the stream goes on from the
//! same sequence number after the resync copy. RESERVATION CONFLICT: the standby took
//! over and fenced this source; the group suspends.
//!
//! Standby side. The secondary's LUs get their role from PAIR NOTIFY as for the other
//! remote modes; the notice of a relay pair also carries the source, the relays and the
//! standby's settings ([`RelayOptions`]), from which the array builds one
//! [`Standby`] per source. A RELAY RECORD is accepted from the writers the notice names
//! (the primary's ports) and from the configured relays. Formation and resync copies
//! reach the LUs with plain WRITE(16) as for the other modes; the notice of a copy tells
//! the standby from which sequence number the stream goes on. Under `snapshots` the
//! standby keeps the pre-images of the blocks written since the last restart point (the
//! snapshot is the LU plus those pre-images) and writes them back at the rollback; the
//! array's block stores are addressed logically, so the emb 8 address table
//! ([`crate::relay::SnapshotTable`]) is not what stores them here.
//!
//! Takeover ([`CopyEngine::relay_takeover`]): `Standby::take_over` with the relays the
//! node reaches; each gets RELAY CONTROL `forward`, then RECEIVE RELAY STATUS until it
//! holds no record (or the drain timeout); then RELAY CONTROL `fence` to every relay,
//! the LUs become writable simplex volumes, and the old primary's ports and the relays
//! are fenced off them (RESERVATION CONFLICT for any later command of theirs).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use fcsim_fabric::{Wwn, Wwpn};
use tracing::{debug, info, warn};

use super::pair::{PairState, RelayOptions, Secondary};
use super::{Action, CopyEngine, CopyError, Pending, Volumes};
use crate::relay::wire::{RelayControl, RelayState};
use crate::relay::{
    FecReceiver, Header, Kind, Network, Primary, PrimaryAction, Receipt, Record, Redundancy,
    RelayId, Reply, RestartPoint, SourceId, Standby, StandbyAction, StandbyConfig, Unit,
};
use crate::scsi::sense::{Sense, SenseKey, asc};

/// How often a takeover asks a draining relay for its status.
const DRAIN_POLL: Duration = Duration::from_millis(1);
/// How long a record refused BUSY (the relay's buffer is full) waits before it is sent
/// again: a full relay is not hammered.
const BUSY_RETRY: Duration = Duration::from_micros(500);
/// FEC (emb 5/6): rounds of resending a record's lost units before the standby counts
/// as not reachable. Each round follows an exchange that failed on every path; the
/// first goes at once, each later one after twice the previous wait (from
/// [`FEC_RESEND_WAIT`]), so a path the initiator is rediscovering can come back (about
/// 1.3 s in all).
const FEC_RESENDS: u32 = 8;
const FEC_RESEND_WAIT: Duration = Duration::from_millis(10);
/// FEC: how long the standby keeps a group short of units before it checks whether the
/// record arrived some other way (the primary resends lost units on its exchange
/// timeouts; the standby has no channel back).
const FEC_GROUP_TIMEOUT: Duration = Duration::from_millis(500);

/// The source identifier of a group: the configured one, or one derived from the
/// group's name (FNV-1a, never 0).
pub(crate) fn source_of(opts: &RelayOptions, group: &str) -> u32 {
    if opts.source != 0 {
        return opts.source;
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in group.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

/// A relay group, primary side.
#[derive(Debug)]
pub(crate) struct RelaySource {
    pub(crate) core: Primary,
    pub(crate) opts: RelayOptions,
    pub(crate) source: u32,
    pub(crate) block_bytes: u32,
    /// Bumped at each rebuild: completions of records of an older core are ignored.
    pub(crate) generation: u32,
    /// Target port of `RelayId(i)`: `targets[i]`.
    pub(crate) targets: Vec<u64>,
    /// Relays found down since the last rebuild.
    pub(crate) down: BTreeSet<RelayId>,
    /// The ranges (pair, lba, blocks) of each host write waiting for its records.
    pub(crate) hosts: BTreeMap<u64, Vec<(String, u64, u64)>>,
    /// Restart points issued, not yet held by a relay (their tags).
    pub(crate) points: BTreeSet<u64>,
    /// Records refused BUSY, sent again at the given time: (due, relay, seq).
    pub(crate) busy: Vec<(Duration, RelayId, u64)>,
    /// FEC: the records whose units are out, by sequence number.
    pub(crate) fec: BTreeMap<u64, FecSend>,
    /// FEC: resend rounds due at the given time: (due, seq).
    pub(crate) fec_retry: Vec<(Duration, u64)>,
}

/// One record sent as a FEC group (emb 5/6, primary side). The standby answers each unit
/// GOOD once it holds it; the record is acknowledged once the GOOD units restore it
/// ([`Redundancy::restores`]) — the standby's receiver restores at that very unit, so
/// this is its "receive-complete" (S326) without waiting for the units still out (F3).
/// A lost unit (its exchange failed on every path, or BUSY) is sent again only when the
/// units still out can no longer restore the record (F2: no resend within tolerance).
#[derive(Debug)]
pub(crate) struct FecSend {
    pub(crate) redundancy: Redundancy,
    pub(crate) header: Header,
    pub(crate) units: Vec<Unit>,
    /// Units the standby answered GOOD.
    pub(crate) good: BTreeSet<u16>,
    /// Units whose exchange is still open.
    pub(crate) out: BTreeSet<u16>,
    /// Rounds of resends so far.
    pub(crate) resends: u32,
    /// The target port each unit was last sent to.
    pub(crate) via: Vec<u64>,
    /// A resend round is scheduled (in `RelaySource::fec_retry`).
    pub(crate) scheduled: bool,
}

/// What a relay takeover reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTakeoverReport {
    pub group: String,
    pub source: u32,
    /// The last sequence number applied.
    pub applied: u64,
    /// Records received behind a gap and dropped: acknowledged upstream by a relay that
    /// was lost (or still in flight), not part of the prefix.
    pub dropped: u64,
    /// The restart point the application resumes from, with its state.
    pub resumed: Option<RestartPoint>,
    /// Relays fenced (not counting this array itself in direct mode).
    pub fenced_relays: u32,
    pub luns: Vec<u16>,
}

/// The standby of one relay source, as a management client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStandbyStatus {
    pub group: String,
    pub source: u32,
    pub applied: u64,
    /// Records held behind a gap.
    pub held: u64,
    /// The last restart point landed (its number).
    pub point: Option<u64>,
    pub draining: bool,
    /// Taken over: records of the source are refused.
    pub fenced: bool,
    pub luns: Vec<u16>,
}

/// A takeover in progress.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    /// Relays whose status to read at the given time.
    pub(crate) polls: BTreeMap<u64, Duration>,
    /// Records dropped at the fence.
    pub(crate) dropped: u64,
    pub(crate) fenced_relays: u32,
}

/// This array as the standby of one relay source.
#[derive(Debug)]
pub(crate) struct RelayStandby {
    pub(crate) core: Standby,
    pub(crate) group: String,
    /// The pairs replicating here (names a takeover may be asked by).
    pub(crate) pairs: BTreeSet<String>,
    /// The core may have actions the node has not carried out yet (a relay answered
    /// outside a call that has the volumes): run [`CopyEngine::relay_pump`].
    pub(crate) dirty: bool,
    /// Target port of `RelayId(i)`: `relays[i]` (the relays other than this array).
    pub(crate) relays: Vec<u64>,
    /// Who may send records: the primary's ports and the relays.
    pub(crate) writers: BTreeSet<u64>,
    pub(crate) luns: BTreeSet<u16>,
    pub(crate) snapshots: bool,
    /// Snapshots: the pre-images of the blocks written since the last restart point.
    pub(crate) preimages: BTreeMap<(u16, u64), Bytes>,
    pub(crate) drain: Option<Drain>,
    pub(crate) report: Option<RelayTakeoverReport>,
    /// After the takeover: the sources fenced, and the relays that have not confirmed
    /// their fence yet (unreachable then): each is fenced again when a path to it comes
    /// back, so the old primary cannot go on writing through it (split brain).
    pub(crate) fence_sources: Vec<u32>,
    pub(crate) unfenced: BTreeSet<u64>,
    /// FEC groups being collected (emb 5/6, S320–S325).
    pub(crate) fec: FecReceiver,
}

impl RelayStandby {
    /// A record's sender and where it lands: CHECK CONDITION sense when refused.
    fn check_record(
        &self,
        vols: &mut dyn Volumes,
        from: Wwpn,
        header: &Header,
    ) -> Result<(), Sense> {
        if !self.writers.contains(&from.0.0) {
            return Err(Sense::new(SenseKey::DATA_PROTECT, asc::WRITE_PROTECTED));
        }
        if let Kind::Write { lun, lba } = header.kind {
            let Some((total, bb)) = vols.geometry(lun).filter(|_| self.luns.contains(&lun)) else {
                return Err(Sense::invalid_field_in_cdb(16, None));
            };
            let blocks = header.len / u64::from(bb.max(1));
            if !header.len.is_multiple_of(u64::from(bb.max(1)))
                || lba.checked_add(blocks).is_none_or(|end| end > total)
            {
                return Err(Sense::new(SenseKey::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE));
            }
        }
        Ok(())
    }

    /// FEC groups past their deadline: those whose record is here are forgotten; the
    /// others wait for the units the primary sends again.
    fn fec_timeout(&mut self, now: Duration) {
        for r in self.fec.handle_timeout(now) {
            if self.core.has(r.group) {
                self.fec.close(r.group);
            } else {
                debug!(source = r.group.source.0, seq = r.group.seq, missing = ?r.missing, "fec: group short of units");
            }
        }
    }

    /// Remembers what is held behind a gap now: the fence that may follow drops it.
    fn note_held(&mut self, source: u32) {
        let held = self.core.held(SourceId(source)) as u64;
        if let Some(d) = self.drain.as_mut() {
            d.dropped = held;
        }
    }
}

impl CopyEngine {
    /// Builds (or rebuilds, going on after the old core's numbering) the primary side of
    /// relay group `group` whose first pair has options `opts`.
    pub(crate) fn relay_source_for(
        &mut self,
        group: &str,
        opts: &RelayOptions,
        block_bytes: u32,
    ) -> Result<(), CopyError> {
        if let Some(s) = self.relay_sources.get(group) {
            if s.opts.relays != opts.relays
                || s.opts.selection != opts.selection
                || s.opts.destination != opts.destination
            {
                return Err(CopyError::BadGroup(format!(
                    "group `{group}`: every relay pair of a group uses the same relays, selection and standby port"
                )));
            }
            return Ok(());
        }
        if opts.destination == 0 {
            return Err(CopyError::BadSecondary(
                "relay pairs need the standby's target port (destination)".into(),
            ));
        }
        if let Some(fec) = opts.fec {
            if !opts.relays.is_empty() {
                return Err(CopyError::BadMode(
                    "fec: forward error correction is for the direct hop to the standby; a pair with relays cannot use it".into(),
                ));
            }
            fec.validate().map_err(CopyError::BadMode)?;
        }
        if opts.networks == 2 && (opts.fec.is_none() || opts.destination2 == 0) {
            return Err(CopyError::BadMode(
                "networks: 2 networks need fec and a second standby port".into(),
            ));
        }
        let targets = if opts.relays.is_empty() {
            vec![opts.destination]
        } else {
            opts.relays.clone()
        };
        let source = source_of(opts, group);
        let ids = relay_ids(targets.len())?;
        let core = Primary::new(
            SourceId(source),
            ids,
            opts.selection.core(source),
            block_bytes,
        )
        .map_err(|e| CopyError::BadMode(e.to_string()))?;
        self.relay_sources.insert(
            group.to_string(),
            RelaySource {
                core,
                opts: opts.clone(),
                source,
                block_bytes,
                generation: 0,
                targets,
                down: BTreeSet::new(),
                hosts: BTreeMap::new(),
                points: BTreeSet::new(),
                busy: Vec::new(),
                fec: BTreeMap::new(),
                fec_retry: Vec::new(),
            },
        );
        Ok(())
    }

    /// The last sequence number of relay group `group`'s stream (what a notice of a
    /// formation or resync copy carries).
    pub(crate) fn relay_last_seq(&self, group: &str) -> Option<u64> {
        self.relay_sources.get(group).map(|s| s.core.last_seq())
    }

    /// A host write `host` of `blocks` at `lba` landed on the primary of relay pair
    /// `pair`: its record goes out, and the answer waits for a relay.
    pub(crate) fn relay_write(&mut self, pair: &str, host: u64, lba: u64, data: Bytes) {
        let Some(p) = self.pairs.get(pair) else {
            return;
        };
        let group = p.group.clone();
        let blocks = data.len() as u64 / u64::from(p.block_bytes.max(1));
        let lun = p.options.relay.as_ref().map_or(0, |o| o.standby_lun);
        let Some(s) = self.relay_sources.get_mut(&group) else {
            return;
        };
        if let Err(e) = s.core.write(host, lun, lba, data) {
            warn!(pair, error = %e, "relay record refused: the range goes to the resync copy");
            if let Some(p) = self.pairs.get_mut(pair) {
                p.mark_stale(lba, blocks);
            }
            return;
        }
        s.core.local_done(host);
        s.hosts
            .entry(host)
            .or_default()
            .push((pair.to_string(), lba, blocks));
        self.held.entry(host).or_insert((0, None)).0 += 1;
        self.pump_relay(&group);
    }

    /// Issues a restart point with the application's state at relay pair (or group)
    /// `target` (emb 7–9). Returns the restart point's number; it travels in order with
    /// the writes.
    pub fn restart_point(&mut self, target: &str, app_state: Bytes) -> Result<u64, CopyError> {
        let group = self
            .pairs
            .get(target)
            .map(|p| p.group.clone())
            .or_else(|| self.groups.contains_key(target).then(|| target.to_string()))
            .ok_or_else(|| CopyError::NoSuchPair(target.to_string()))?;
        let not_pair = self.groups[&group]
            .pairs
            .iter()
            .filter_map(|p| self.pairs.get(p))
            .map(|p| p.state)
            .find(|s| *s != PairState::Pair);
        if let Some(state) = not_pair {
            return Err(CopyError::WrongState {
                pair: target.to_string(),
                state: state.name(),
                what: "a restart point needs every pair of the group in pair",
            });
        }
        self.next_point_tag += 1;
        let tag = u64::MAX - self.next_point_tag;
        let s = self
            .relay_sources
            .get_mut(&group)
            .ok_or_else(|| CopyError::BadMode(format!("`{target}` is not a relay pair")))?;
        let point = s
            .core
            .restart_point(tag, app_state)
            .map_err(|e| CopyError::BadMode(e.to_string()))?;
        s.points.insert(tag);
        info!(group = %group, point, "restart point issued");
        self.pump_relay(&group);
        Ok(point)
    }

    /// Turns the group's core actions into commands and released host writes.
    pub(crate) fn pump_relay(&mut self, group: &str) {
        loop {
            let Some(s) = self.relay_sources.get_mut(group) else {
                return;
            };
            let Some(a) = s.core.poll_action() else {
                return;
            };
            match a {
                PrimaryAction::Complete { host } => {
                    s.points.remove(&host);
                    s.hosts.remove(&host);
                    self.release(host, None);
                }
                PrimaryAction::Send { relay, record } if s.opts.fec.is_some() => {
                    self.send_fec(group, relay, &record);
                }
                PrimaryAction::Send { relay, record } => {
                    let target = s.targets[usize::from(relay.0)];
                    let generation = s.generation;
                    let direct = s.opts.relays.is_empty();
                    let destination = s.opts.destination;
                    let seq = record.id().seq;
                    let naa = direct.then(|| self.lane_naa(group, &record)).flatten();
                    let token = self.token(Pending::Relay {
                        group: group.to_string(),
                        generation,
                        relay,
                        seq,
                    });
                    self.actions.push_back(Action::RelayRecord {
                        token,
                        target,
                        naa,
                        destination,
                        record,
                    });
                }
            }
        }
    }

    /// FEC: builds the redundant group of `record` (S304) and sends every unit to the
    /// standby as its own RELAY RECORD (S305), the redundant ones on the second network
    /// when there are two.
    fn send_fec(&mut self, group: &str, relay: RelayId, record: &Record) {
        let Some(s) = self.relay_sources.get_mut(group) else {
            return;
        };
        let Some(fec) = s.opts.fec else {
            return;
        };
        let redundancy = fec.core();
        let seq = record.id().seq;
        match crate::relay::fec::encode(redundancy, s.opts.networks == 2, record.id(), &record.data)
        {
            Ok(units) => {
                let all: Vec<u16> = units.iter().map(|u| u.index).collect();
                let via = vec![0; units.len()];
                s.fec.insert(
                    seq,
                    FecSend {
                        redundancy,
                        header: record.header,
                        units,
                        good: BTreeSet::new(),
                        out: BTreeSet::new(),
                        resends: 0,
                        via,
                        scheduled: false,
                    },
                );
                self.send_fec_units(group, seq, &all);
            }
            Err(e) => {
                warn!(group, error = %e, "fec: record not encoded");
                s.down.insert(relay);
                s.core.relay_down(relay);
                if s.core.live_relays() == 0 {
                    self.suspend_group(group, "fec: records not encoded");
                }
            }
        }
    }

    /// Sends units `indices` of record `seq` of group `group`.
    fn send_fec_units(&mut self, group: &str, seq: u64, indices: &[u16]) {
        let record_lun = self
            .relay_sources
            .get(group)
            .and_then(|s| s.fec.get(&seq))
            .map(|f| f.header);
        let Some(header) = record_lun else {
            return;
        };
        let naa = self.lane_naa(
            group,
            &Record {
                header,
                data: Bytes::new(),
            },
        );
        for &index in indices {
            let Some(s) = self.relay_sources.get_mut(group) else {
                return;
            };
            let (generation, destination, second) =
                (s.generation, s.opts.destination, s.opts.destination2);
            let Some(f) = s.fec.get_mut(&seq) else {
                return;
            };
            let Some(unit) = f.units.get(usize::from(index)).cloned() else {
                continue;
            };
            f.out.insert(index);
            let redundancy = f.redundancy;
            let home = match unit.network {
                Network::Second if second != 0 => second,
                _ => destination,
            };
            // A unit sent again goes through the other network when there are two: the
            // one it was lost on may be the lossy one (or its path down).
            let last = f.via[usize::from(index)];
            let target = match (last, second) {
                (0, _) | (_, 0) => home,
                (l, s) if l == destination => s,
                _ => destination,
            };
            f.via[usize::from(index)] = target;
            let token = self.token(Pending::FecUnit {
                group: group.to_string(),
                generation,
                seq,
                index,
            });
            self.actions.push_back(Action::FecUnit {
                token,
                target,
                naa,
                header,
                redundancy,
                unit,
            });
        }
    }

    /// A FEC unit's RELAY RECORD ended: `status` is the SCSI status, `None` when the
    /// exchange failed on every path (a frame of it was lost).
    pub(crate) fn fec_unit_done(
        &mut self,
        group: &str,
        generation: u32,
        seq: u64,
        index: u16,
        status: Option<u8>,
        now: Duration,
    ) {
        let now = self.last_tick.max(now);
        let Some(s) = self.relay_sources.get_mut(group) else {
            return;
        };
        if s.generation != generation {
            return;
        }
        // Acknowledged already: a unit beyond what restored the record.
        let Some(f) = s.fec.get_mut(&seq) else {
            return;
        };
        f.out.remove(&index);
        match status {
            Some(0x00) => {
                f.good.insert(index);
                if f.redundancy.restores(&f.good) {
                    s.fec.remove(&seq);
                    s.core.relay_acked(seq);
                }
            }
            Some(0x18) => {
                warn!(group, "fec unit refused: the standby fenced this source");
                self.suspend_group(group, "fenced by the standby (takeover)");
                return;
            }
            // Lost (no answer on any path), or BUSY / TASK SET FULL: resend what the
            // units still out cannot make up for.
            None | Some(0x08 | 0x28) => {
                let mut could = f.good.clone();
                could.extend(f.out.iter().copied());
                if !f.redundancy.restores(&could) && !f.scheduled {
                    if f.resends >= FEC_RESENDS {
                        warn!(
                            group,
                            seq, "fec: units lost again and again: standby not reachable"
                        );
                        s.fec.remove(&seq);
                        return self.fec_standby_down(group);
                    }
                    f.resends += 1;
                    if f.resends == 1 {
                        self.fec_resend(group, seq);
                    } else {
                        f.scheduled = true;
                        let wait = FEC_RESEND_WAIT * 2u32.pow(f.resends - 2);
                        s.fec_retry.push((now + wait, seq));
                    }
                }
            }
            Some(other) => {
                warn!(
                    group,
                    seq,
                    index,
                    status = other,
                    "fec unit refused by the standby"
                );
                s.fec.remove(&seq);
                return self.fec_standby_down(group);
            }
        }
        self.pump_relay(group);
    }

    /// Sends again the units of record `seq` that are neither acknowledged nor out.
    fn fec_resend(&mut self, group: &str, seq: u64) {
        let Some(f) = self
            .relay_sources
            .get_mut(group)
            .and_then(|s| s.fec.get_mut(&seq))
        else {
            return;
        };
        f.scheduled = false;
        let missing: Vec<u16> = (0..u16::try_from(f.units.len()).unwrap_or(u16::MAX))
            .filter(|i| !f.good.contains(i) && !f.out.contains(i))
            .collect();
        info!(group, seq, units = ?missing, round = f.resends, "fec: beyond tolerance, units sent again");
        self.send_fec_units(group, seq, &missing);
    }

    /// The standby (the one "relay" of a FEC pair) is not reachable.
    fn fec_standby_down(&mut self, group: &str) {
        let Some(s) = self.relay_sources.get_mut(group) else {
            return;
        };
        let relay = RelayId(0);
        s.down.insert(relay);
        s.core.relay_down(relay);
        if s.core.live_relays() == 0 {
            self.suspend_group(group, "standby not reachable");
            return;
        }
        self.pump_relay(group);
    }

    /// The secondary LU a record goes to in direct mode: the pair whose standby LUN the
    /// record names (restart points: the group's first pair).
    fn lane_naa(&self, group: &str, record: &Record) -> Option<Wwn> {
        let members = &self.groups.get(group)?.pairs;
        let lun = match record.header.kind {
            Kind::Write { lun, .. } => Some(lun),
            Kind::RestartPoint { .. } => None,
        };
        members
            .iter()
            .filter_map(|m| self.pairs.get(m))
            .find(|p| {
                lun.is_none_or(|l| p.options.relay.as_ref().map(|o| o.standby_lun) == Some(l))
            })
            .and_then(|p| match p.secondary {
                Secondary::Remote(naa) => Some(naa),
                Secondary::Local(_) => None,
            })
    }

    /// A RELAY RECORD ended: `status` is the SCSI status, `None` when the exchange
    /// failed.
    pub(crate) fn relay_record_done(
        &mut self,
        group: &str,
        generation: u32,
        relay: RelayId,
        seq: u64,
        status: Option<u8>,
        now: Duration,
    ) {
        let Some(s) = self.relay_sources.get_mut(group) else {
            return;
        };
        if s.generation != generation {
            return;
        }
        match status {
            Some(0x00) => s.core.relay_acked(seq),
            // BUSY, or TASK SET FULL: the relay could not take it now.
            Some(0x08 | 0x28) => {
                let due = self.last_tick.max(now) + BUSY_RETRY;
                s.busy.push((due, relay, seq));
                return;
            }
            Some(0x18) => {
                warn!(
                    group,
                    "relay record refused: the standby fenced this source"
                );
                self.suspend_group(group, "fenced by the standby (takeover)");
                return;
            }
            _ => {
                warn!(group, relay = relay.0, ?status, "relay not reachable");
                s.down.insert(relay);
                s.core.relay_down(relay);
                if s.core.live_relays() == 0 {
                    self.suspend_group(group, "relays not reachable");
                    return;
                }
            }
        }
        self.pump_relay(group);
    }

    /// A path to target port `wwpn` came up: a relay found down there gets records
    /// again, and a relay a takeover could not fence then is fenced now.
    pub fn relay_path_up(&mut self, wwpn: u64) {
        let refence: Vec<(u32, Vec<u32>)> = self
            .standbys
            .iter()
            .filter(|(_, sb)| sb.unfenced.contains(&wwpn))
            .map(|(src, sb)| (*src, sb.fence_sources.clone()))
            .collect();
        for (source, sources) in refence {
            info!(
                source,
                relay = wwpn,
                "fencing a relay the takeover could not reach"
            );
            let token = self.token(Pending::RelayControl {
                source,
                target: wwpn,
                forward: false,
            });
            self.actions.push_back(Action::RelayControl {
                token,
                target: wwpn,
                control: RelayControl::Fence { sources },
            });
        }
        let groups: Vec<String> = self.relay_sources.keys().cloned().collect();
        for g in groups {
            let Some(s) = self.relay_sources.get_mut(&g) else {
                continue;
            };
            let up: Vec<RelayId> = s
                .down
                .iter()
                .copied()
                .filter(|r| s.targets.get(usize::from(r.0)) == Some(&wwpn))
                .collect();
            for r in up {
                info!(group = %g, relay = wwpn, "relay reachable again");
                s.down.remove(&r);
                s.core.relay_up(r);
            }
            self.pump_relay(&g);
        }
    }

    /// The group suspended: its waiting host writes are answered, their blocks go to
    /// the resync, and the stream restarts (same numbering) with every relay live.
    pub(crate) fn abandon_relay(&mut self, group: &str) {
        let Some(s) = self.relay_sources.get_mut(group) else {
            return;
        };
        let hosts = std::mem::take(&mut s.hosts);
        s.points.clear();
        s.busy.clear();
        s.fec.clear();
        s.fec_retry.clear();
        let fresh = Primary::resume_after(
            SourceId(s.source),
            relay_ids(s.targets.len()).unwrap_or_default(),
            s.opts.selection.core(s.source),
            s.block_bytes,
            (s.core.last_seq(), s.core.last_point()),
        );
        match fresh {
            Ok(core) => {
                s.core = core;
                s.generation += 1;
                s.down.clear();
            }
            Err(e) => warn!(group, error = %e, "relay stream not rebuilt"),
        }
        for (host, ranges) in hosts {
            let mut sense = None;
            for (pair, lba, blocks) in ranges {
                if let Some(p) = self.pairs.get_mut(&pair) {
                    p.mark_stale(lba, blocks);
                    if p.options.fence {
                        sense = Some(Sense::new(
                            SenseKey::ABORTED_COMMAND,
                            asc::LU_COMMUNICATION_FAILURE,
                        ));
                    }
                }
                self.release(host, sense);
            }
        }
    }

    // ---- standby side ----------------------------------------------------------------

    /// A PAIR NOTIFY of a relay pair for LU `lun`: the standby of its source.
    pub(crate) fn relay_notice(&mut self, lun: u16, notice: &super::wire::PairNotice) {
        let Some(opts) = notice.relay.as_ref() else {
            return;
        };
        let source = source_of(opts, &notice.group);
        let own: BTreeSet<u64> = self.ports.iter().map(|w| w.0.0).collect();
        let relays: Vec<u64> = opts
            .relays
            .iter()
            .copied()
            .filter(|r| !own.contains(r))
            .collect();
        let sb = self.standbys.entry(source).or_insert_with(|| {
            info!(lun, group = %notice.group, source, "relay standby");
            RelayStandby {
                core: Standby::new(StandbyConfig {
                    consistency: opts.consistency.core(),
                    sources: vec![SourceId(source)],
                    relays: relay_ids(relays.len()).unwrap_or_default(),
                    drain_timeout: Duration::from_millis(opts.drain_timeout_ms),
                }),
                group: notice.group.clone(),
                pairs: BTreeSet::new(),
                dirty: false,
                relays: relays.clone(),
                writers: BTreeSet::new(),
                luns: BTreeSet::new(),
                snapshots: opts.consistency == super::pair::RelayConsistency::Snapshots,
                preimages: BTreeMap::new(),
                drain: None,
                report: None,
                fence_sources: Vec::new(),
                unfenced: BTreeSet::new(),
                fec: FecReceiver::new(FEC_GROUP_TIMEOUT),
            }
        });
        if sb.core.is_active() {
            return;
        }
        sb.luns.insert(lun);
        sb.pairs.insert(notice.pair.clone());
        sb.writers.extend(notice.writers.iter().copied());
        sb.writers.extend(relays.iter().copied());
        if matches!(notice.state, Some(PairState::Copy | PairState::Resync)) {
            sb.core.resync_after(SourceId(source), notice.journal_seq);
            sb.preimages.clear();
        }
    }

    /// LU `lun`'s relay pair was deleted: it leaves its standby, which goes when it
    /// has no LU left (unless it took over: the fence stays).
    pub(crate) fn relay_release(&mut self, lun: u16) {
        self.standbys.retain(|source, sb| {
            sb.luns.remove(&lun);
            let keep = !sb.luns.is_empty() || sb.core.is_active();
            if !keep {
                info!(source, group = %sb.group, "relay standby released");
            }
            keep
        });
    }

    /// Whether `from` is fenced off LU `lun` by a relay takeover (RESERVATION CONFLICT).
    pub fn is_fenced(&self, lun: u16, from: Wwpn) -> bool {
        self.fenced.get(&lun).is_some_and(|w| w.contains(&from.0.0))
    }

    /// A RELAY RECORD addressed to LU `lun` of this array from port `from`. `Ok(true)`:
    /// GOOD (received, or a duplicate); `Ok(false)`: RESERVATION CONFLICT (fenced);
    /// `Err`: CHECK CONDITION with this sense.
    pub fn on_relay_record(
        &mut self,
        vols: &mut dyn Volumes,
        from: Wwpn,
        header: crate::relay::Header,
        data: Bytes,
    ) -> Result<bool, Sense> {
        let source = header.id.source.0;
        let Some(sb) = self.standbys.get_mut(&source) else {
            return Err(Sense::new(
                SenseKey::ILLEGAL_REQUEST,
                asc::COMMAND_SEQUENCE_ERROR,
            ));
        };
        if sb.core.is_active() {
            return Ok(false);
        }
        if data.len() as u64 != header.len {
            return Err(Sense::invalid_field_in_cdb(32, None));
        }
        sb.check_record(vols, from, &header)?;
        let reply = sb.core.receive(Record { header, data });
        self.drain_standby(vols, source)?;
        Ok(reply != Reply::Fenced)
    }

    /// One FEC unit (emb 5/6) of the record `header` to LU `lun` of this array from port
    /// `from` (S322–S326). The unit is kept in its group (opened by the first unit: the
    /// scheme travels with each one); the unit that completes the group restores the
    /// record, which the standby receives as any record. `Ok(true)`: GOOD (the unit is
    /// held, or restored the record, or the record is here already: a late unit);
    /// `Ok(false)`: RESERVATION CONFLICT (fenced); `Err`: CHECK CONDITION.
    pub fn on_fec_unit(
        &mut self,
        vols: &mut dyn Volumes,
        from: Wwpn,
        (header, redundancy, index): (Header, Redundancy, u16),
        data: Bytes,
        now: Duration,
    ) -> Result<bool, Sense> {
        let source = header.id.source.0;
        let Some(sb) = self.standbys.get_mut(&source) else {
            return Err(Sense::new(
                SenseKey::ILLEGAL_REQUEST,
                asc::COMMAND_SEQUENCE_ERROR,
            ));
        };
        if sb.core.is_active() {
            return Ok(false);
        }
        sb.check_record(vols, from, &header)?;
        if sb.core.has(header.id) {
            // Restored before (S325 started): a later unit is discarded.
            sb.fec.close(header.id);
            return Ok(true);
        }
        let len = usize::try_from(header.len).map_err(|_| Sense::invalid_field_in_cdb(32, None))?;
        if data.len() != redundancy.unit_bytes(len) {
            // The unit's size follows from the scheme and the record's length.
            return Err(Sense::invalid_field_in_cdb(32, None));
        }
        if !sb.fec.is_open(header.id) {
            sb.fec
                .open(header.id, redundancy, len, now)
                .map_err(|_| Sense::invalid_field_in_cdb(20, None))?;
        }
        let unit = Unit {
            group: header.id,
            index,
            network: Network::First,
            bytes: data,
        };
        match sb.fec.receive(unit) {
            Receipt::Pending => Ok(true),
            Receipt::Restored(data) => {
                let reply = sb.core.receive(Record { header, data });
                self.drain_standby(vols, source)?;
                Ok(reply != Reply::Fenced)
            }
            // Not of the open group's shape (another scheme or length for the same
            // record).
            Receipt::Discarded => Err(Sense::invalid_field_in_cdb(20, None)),
        }
    }

    /// Carries out what the standby of `source` asked for, in order.
    pub(crate) fn drain_standby(
        &mut self,
        vols: &mut dyn Volumes,
        source: u32,
    ) -> Result<(), Sense> {
        let mut failed = None;
        loop {
            let Some(sb) = self.standbys.get_mut(&source) else {
                return Ok(());
            };
            let Some(a) = sb.core.poll_action() else {
                break;
            };
            match a {
                StandbyAction::Write { lun, lba, data, .. } => {
                    if sb.snapshots {
                        let bb = vols.geometry(lun).map_or(512, |g| g.1);
                        let blocks = data.len() as u64 / u64::from(bb.max(1));
                        for b in lba..lba + blocks {
                            if !sb.preimages.contains_key(&(lun, b))
                                && let Some(old) = vols.read(lun, b, 1)
                            {
                                sb.preimages.insert((lun, b), old);
                            }
                        }
                    }
                    if !vols.write(lun, lba, &data) {
                        failed = Some(Sense::new(SenseKey::MEDIUM_ERROR, asc::WRITE_ERROR));
                    }
                }
                StandbyAction::RestartPoint { point, .. } => {
                    // The snapshot of this point: the image as it is now.
                    sb.preimages.clear();
                    info!(source, point, "restart point landed");
                }
                StandbyAction::ForwardRequest { relay } => {
                    let target = sb.relays[usize::from(relay.0)];
                    let token = self.token(Pending::RelayControl {
                        source,
                        target,
                        forward: true,
                    });
                    self.actions.push_back(Action::RelayControl {
                        token,
                        target,
                        control: RelayControl::Forward,
                    });
                }
                StandbyAction::Fence { sources, relays } => {
                    let targets: Vec<u64> =
                        relays.iter().map(|r| sb.relays[usize::from(r.0)]).collect();
                    let fenced: BTreeSet<u64> = sb.writers.clone();
                    let luns = sb.luns.clone();
                    let d = sb.drain.get_or_insert_with(Drain::default);
                    d.fenced_relays = u32::try_from(targets.len()).unwrap_or(u32::MAX);
                    d.polls.clear();
                    sb.fence_sources = sources.iter().map(|s| s.0).collect();
                    sb.unfenced = targets.iter().copied().collect();
                    for target in targets {
                        let token = self.token(Pending::RelayControl {
                            source,
                            target,
                            forward: false,
                        });
                        self.actions.push_back(Action::RelayControl {
                            token,
                            target,
                            control: RelayControl::Fence {
                                sources: sources.iter().map(|s| s.0).collect(),
                            },
                        });
                    }
                    for l in luns {
                        self.roles.remove(&l);
                        self.fenced
                            .entry(l)
                            .or_default()
                            .extend(fenced.iter().copied());
                    }
                }
                StandbyAction::Rollback { .. } => {
                    let pre = std::mem::take(&mut sb.preimages);
                    let n = pre.len();
                    for ((lun, b), old) in pre {
                        if !vols.write(lun, b, &old) {
                            failed = Some(Sense::new(SenseKey::MEDIUM_ERROR, asc::WRITE_ERROR));
                        }
                    }
                    info!(
                        source,
                        blocks = n,
                        "standby rolled back to its last snapshot"
                    );
                }
                StandbyAction::Resume { point, .. } => {
                    let d = sb.drain.take().unwrap_or_default();
                    let report = RelayTakeoverReport {
                        group: sb.group.clone(),
                        source,
                        applied: sb.core.applied(SourceId(source)),
                        dropped: d.dropped,
                        resumed: point,
                        fenced_relays: d.fenced_relays,
                        luns: sb.luns.iter().copied().collect(),
                    };
                    info!(group = %report.group, applied = report.applied, dropped = report.dropped, point = ?report.resumed.as_ref().map(|p| p.point), "relay takeover done: standby active, source fenced");
                    sb.report = Some(report);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// The standby of relay group (or pair) `target`'s source.
    fn standby_of(&self, target: &str) -> Option<u32> {
        self.standbys
            .iter()
            .find(|(_, s)| s.group == target || s.pairs.contains(target))
            .map(|(src, _)| *src)
    }

    /// Carries out what the standbys asked for since the last call that had the
    /// volumes (a takeover finishing on a relay's answer).
    pub fn relay_pump(&mut self, vols: &mut dyn Volumes) {
        let dirty: Vec<u32> = self
            .standbys
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(src, _)| *src)
            .collect();
        for source in dirty {
            if let Some(sb) = self.standbys.get_mut(&source) {
                sb.dirty = false;
            }
            if let Err(sense) = self.drain_standby(vols, source) {
                warn!(source, ?sense, "relay standby: a media write failed");
            }
        }
    }

    /// Starts the takeover of relay group (or pair) `target` at this standby array:
    /// `reachable` says which relay target ports the node reaches now. The report comes
    /// with [`CopyEngine::relay_takeover_report`] once the drain and fence are done.
    pub fn relay_takeover(
        &mut self,
        vols: &mut dyn Volumes,
        target: &str,
        reachable: &dyn Fn(u64) -> bool,
        now: Duration,
    ) -> Result<(), CopyError> {
        let source = self
            .standby_of(target)
            .ok_or_else(|| CopyError::NoSuchPair(target.to_string()))?;
        let sb = self.standbys.get_mut(&source).expect("found");
        if sb.core.is_active() || sb.core.is_draining() {
            return Ok(());
        }
        let live: Vec<RelayId> = sb
            .relays
            .iter()
            .enumerate()
            .filter(|(_, r)| reachable(**r))
            .filter_map(|(i, _)| u16::try_from(i).ok().map(RelayId))
            .collect();
        info!(group = %sb.group, reachable = live.len(), of = sb.relays.len(), "relay takeover: draining");
        sb.drain = Some(Drain {
            dropped: sb.core.held(SourceId(source)) as u64,
            ..Drain::default()
        });
        // Groups short of units were never acknowledged: they go.
        sb.fec.close_all();
        sb.core.take_over(&live, now);
        let _ = self.drain_standby(vols, source);
        Ok(())
    }

    /// Whether this array is the standby of relay group (or pair) `target`.
    pub(crate) fn has_relay_standby(&self, target: &str) -> bool {
        self.standby_of(target).is_some()
    }

    /// The report of the takeover of relay group (or pair) `target`, once done.
    pub fn relay_takeover_report(&self, target: &str) -> Option<RelayTakeoverReport> {
        let source = self.standby_of(target)?;
        self.standbys.get(&source)?.report.clone()
    }

    /// The relay standbys of this array.
    pub fn relay_standbys(&self) -> Vec<RelayStandbyStatus> {
        self.standbys
            .iter()
            .map(|(src, s)| RelayStandbyStatus {
                group: s.group.clone(),
                source: *src,
                applied: s.core.applied(SourceId(*src)),
                held: s.core.held(SourceId(*src)) as u64,
                point: s.core.restart_point(SourceId(*src)).map(|p| p.point),
                draining: s.core.is_draining(),
                fenced: s.core.is_active(),
                luns: s.luns.iter().copied().collect(),
            })
            .collect()
    }

    /// A RELAY CONTROL (or its RECEIVE RELAY STATUS) of a takeover ended.
    pub(crate) fn relay_control_done(
        &mut self,
        source: u32,
        target: u64,
        forward: Option<bool>,
        status: Option<u8>,
        data_in: &Bytes,
        now: Duration,
    ) {
        let Some(sb) = self.standbys.get_mut(&source) else {
            return;
        };
        let Some(relay) = sb
            .relays
            .iter()
            .position(|r| *r == target)
            .and_then(|i| u16::try_from(i).ok())
            .map(RelayId)
        else {
            return;
        };
        match (forward, status) {
            // The fence went out (or could not): nothing waits for it.
            (Some(false), s) => {
                if s == Some(0) {
                    sb.unfenced.remove(&target);
                } else {
                    warn!(
                        source,
                        relay = target,
                        ?s,
                        "relay fence not confirmed: sent again when the relay is reachable"
                    );
                }
            }
            // The forward request was taken: read the relay's status now.
            (Some(true), Some(0)) => self.relay_status_poll(source, target),
            // A status answer: drained when it holds nothing.
            (None, Some(0)) => {
                let held = serde_json::from_slice::<RelayState>(data_in)
                    .map_or(u64::MAX, |s| s.held_records);
                if held == 0 {
                    sb.note_held(source);
                    sb.core.relay_drained(relay, now);
                    sb.dirty = true;
                } else if let Some(d) = sb.drain.as_mut() {
                    d.polls.insert(target, now + DRAIN_POLL);
                }
            }
            // The relay did not answer: the drain timeout ends the wait.
            _ => warn!(
                source,
                relay = target,
                ?status,
                "relay did not answer the takeover"
            ),
        }
    }

    fn relay_status_poll(&mut self, source: u32, target: u64) {
        let token = self.token(Pending::RelayStatus { source, target });
        self.actions
            .push_back(Action::RelayStatus { token, target });
    }

    /// Timers of relay pairs: BUSY resends; and of the standbys: drain deadlines and
    /// status polls.
    pub(crate) fn relay_timeout(&self) -> Option<Duration> {
        let busy = self
            .relay_sources
            .values()
            .flat_map(|s| {
                s.busy
                    .iter()
                    .map(|b| b.0)
                    .chain(s.fec_retry.iter().map(|r| r.0))
            })
            .min();
        self.standbys
            .values()
            .flat_map(|s| {
                s.core
                    .poll_timeout()
                    .into_iter()
                    .chain(s.fec.poll_timeout())
                    .chain(s.drain.iter().flat_map(|d| d.polls.values().copied()))
                    .chain(s.dirty.then_some(self.last_tick))
            })
            .chain(busy)
            .min()
    }

    /// Sends again the records refused BUSY whose wait is over.
    pub(crate) fn relay_resend(&mut self, now: Duration) {
        let groups: Vec<String> = self
            .relay_sources
            .iter()
            .filter(|(_, s)| s.fec_retry.iter().any(|r| r.0 <= now))
            .map(|(g, _)| g.clone())
            .collect();
        for g in groups {
            let due: Vec<u64> = match self.relay_sources.get_mut(&g) {
                Some(s) => {
                    let (due, later): (Vec<_>, Vec<_>) =
                        s.fec_retry.drain(..).partition(|r| r.0 <= now);
                    s.fec_retry = later;
                    due.into_iter().map(|r| r.1).collect()
                }
                None => continue,
            };
            for seq in due {
                self.fec_resend(&g, seq);
            }
            self.pump_relay(&g);
        }
        let groups: Vec<String> = self
            .relay_sources
            .iter()
            .filter(|(_, s)| s.busy.iter().any(|b| b.0 <= now))
            .map(|(g, _)| g.clone())
            .collect();
        for g in groups {
            if let Some(s) = self.relay_sources.get_mut(&g) {
                let (due, later): (Vec<_>, Vec<_>) = s.busy.drain(..).partition(|b| b.0 <= now);
                s.busy = later;
                for (_, relay, seq) in due {
                    s.core.send_failed(relay, seq);
                }
            }
            self.pump_relay(&g);
        }
    }

    /// Runs the standbys' due timers.
    pub(crate) fn relay_tick(&mut self, vols: &mut dyn Volumes, now: Duration) {
        let sources: Vec<u32> = self.standbys.keys().copied().collect();
        for source in sources {
            let due: Vec<u64> = self.standbys[&source]
                .drain
                .as_ref()
                .map(|d| {
                    d.polls
                        .iter()
                        .filter(|(_, t)| **t <= now)
                        .map(|(r, _)| *r)
                        .collect()
                })
                .unwrap_or_default();
            for target in due {
                if let Some(d) = self
                    .standbys
                    .get_mut(&source)
                    .and_then(|s| s.drain.as_mut())
                {
                    d.polls.remove(&target);
                }
                self.relay_status_poll(source, target);
            }
            if let Some(sb) = self.standbys.get_mut(&source) {
                sb.dirty = false;
                if sb.fec.poll_timeout().is_some_and(|t| t <= now) {
                    sb.fec_timeout(now);
                }
                if sb.core.poll_timeout().is_some_and(|t| t <= now) {
                    sb.note_held(source);
                    sb.core.handle_timeout(now);
                }
            }
            let _ = self.drain_standby(vols, source);
        }
    }
}

/// `RelayId(0)..RelayId(n)`.
fn relay_ids(n: usize) -> Result<Vec<RelayId>, CopyError> {
    (0..n)
        .map(|i| {
            u16::try_from(i)
                .map(RelayId)
                .map_err(|_| CopyError::BadMode("at most 65536 relays".into()))
        })
        .collect()
}
