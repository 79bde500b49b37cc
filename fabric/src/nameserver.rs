//! The distributed name server (dNS) of one switch, well-known address FF FF FC
//! (FC-GS-7 §5.2 Name Server; registrations RFT_ID, RFF_ID, RNN_ID, RSPN_ID, RSNN_NN;
//! queries GID_PN, GPN_ID, GNN_ID, GID_FT, GA_NXT; inter-switch distribution in the
//! spirit of FC-SW-6 §6.1 distributed services).
//!
//! Each switch owns the entries of its own domain and keeps a copy of every other
//! domain's entries as a versioned [`DomainRecord`]. Queries answer for the whole fabric
//! but only show entries that are (a) in a reachable domain and (b) visible to the
//! requester under zoning ([`Visibility`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::fcid::{DomainId, FcId};
use crate::wwn::{Wwnn, Wwpn};

/// FC-4 TYPE code of FCP (SCSI over Fibre Channel).
pub const FC4_TYPE_FCP: u8 = 0x08;

/// Caller errors of the name server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameServerError {
    #[error("FC_ID {fc_id} is not in this switch's domain {domain}")]
    ForeignFcId { fc_id: FcId, domain: DomainId },
}

/// FC-4 features of one FC-4 type (FC-GS-7 §5.2.3.12). For FCP: bit 0 target, bit 1
/// initiator.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Fc4Features(pub u8);

impl Fc4Features {
    /// FCP target function.
    pub const TARGET: Fc4Features = Fc4Features(0x01);
    /// FCP initiator function.
    pub const INITIATOR: Fc4Features = Fc4Features(0x02);

    pub fn is_target(self) -> bool {
        self.0 & Self::TARGET.0 != 0
    }

    pub fn is_initiator(self) -> bool {
        self.0 & Self::INITIATOR.0 != 0
    }
}

impl std::ops::BitOr for Fc4Features {
    type Output = Fc4Features;
    fn bitor(self, rhs: Self) -> Self {
        Fc4Features(self.0 | rhs.0)
    }
}

/// Port type as registered in the name server (FC-GS-7 Table "Port Type").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PortType {
    /// 0x01.
    NPort,
    /// Any other code, kept as received.
    Unsupported(u8),
}

impl PortType {
    pub fn code(self) -> u8 {
        match self {
            PortType::NPort => 0x01,
            PortType::Unsupported(c) => c,
        }
    }
}

/// One name-server object: an N_Port and what it registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Address assigned at FLOGI/FDISC; the key of the entry.
    pub fc_id: FcId,
    /// Port name (from the login).
    pub wwpn: Wwpn,
    /// Node name (from the login, or RNN_ID).
    pub wwnn: Wwnn,
    /// Registered FC-4 TYPE codes (RFT_ID), e.g. [`FC4_TYPE_FCP`].
    pub fc4_types: BTreeSet<u8>,
    /// Registered FC-4 features per type code (RFF_ID).
    pub fc4_features: BTreeMap<u8, Fc4Features>,
    /// Symbolic port name (RSPN_ID), at most 255 bytes.
    pub symbolic_port_name: String,
    /// Symbolic node name (RSNN_NN), at most 255 bytes.
    pub symbolic_node_name: String,
    /// Port type.
    pub port_type: PortType,
    /// Switch port the N_Port is attached to (on the switch of its domain).
    pub switch_port: u8,
}

impl Entry {
    /// A fresh entry as created on FLOGI/FDISC accept: nothing registered yet.
    pub fn new(fc_id: FcId, wwpn: Wwpn, wwnn: Wwnn, switch_port: u8) -> Self {
        Entry {
            fc_id,
            wwpn,
            wwnn,
            fc4_types: BTreeSet::new(),
            fc4_features: BTreeMap::new(),
            symbolic_port_name: String::new(),
            symbolic_node_name: String::new(),
            port_type: PortType::NPort,
            switch_port,
        }
    }

    /// Domain of the switch that owns this entry.
    ///
    /// # Panics
    /// If the FC_ID's domain byte is outside 1–239, which entries never have.
    pub fn domain(&self) -> DomainId {
        DomainId::new(u32::from(self.fc_id.domain())).expect("entry FC_ID has a valid domain")
    }
}

/// Which candidates a requester may see (backed by zoning: `impl Visibility for ZoneDb`).
/// A port always sees itself; the name server does not ask for that pair.
pub trait Visibility {
    fn visible(&self, requester: &Entry, candidate: &Entry) -> bool;

    /// Every port `requester` may see, named as zone members name them, when the
    /// filter can list them (zoning: the members of the requester's zones); `None` when
    /// it cannot. A listing must agree with [`visible`](Self::visible): a query then
    /// looks the listed ports up instead of judging every entry of the fabric.
    fn reach(&self, _requester: &Entry) -> Option<Reach> {
        None
    }
}

/// The ports a requester may see, as [`Visibility::reach`] lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// Ports named by WWPN.
    pub wwpns: BTreeSet<Wwpn>,
    /// Ports named by the switch port they are attached to: (domain, port).
    pub domain_ports: BTreeSet<(DomainId, u8)>,
}

impl<F: Fn(&Entry, &Entry) -> bool> Visibility for F {
    fn visible(&self, requester: &Entry, candidate: &Entry) -> bool {
        self(requester, candidate)
    }
}

/// No filtering (e.g. for a switch-internal requester or tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllVisible;

impl Visibility for AllVisible {
    fn visible(&self, _: &Entry, _: &Entry) -> bool {
        true
    }
}

/// Who asks and what they may see.
#[derive(Clone, Copy)]
pub struct QueryScope<'a, V: Visibility + ?Sized> {
    /// S_ID of the CT request. A well-known requester sees every reachable entry; an
    /// N_Port not in the name server sees nothing.
    pub requester: FcId,
    /// Zoning filter.
    pub visibility: &'a V,
    /// Domains FSPF can reach; the local domain is always included.
    pub reachable: &'a BTreeSet<DomainId>,
}

/// CT reject explanation of a name-server request (FC-GS-7 §5.2.4, reason code 0x09
/// "unable to perform command request").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsReject {
    /// 0x01: no visible entry with that FC_ID.
    PortIdNotRegistered,
    /// 0x02: no visible entry with that WWPN.
    PortNameNotRegistered,
    /// 0x03: no local entry with that node name.
    NodeNameNotRegistered,
    /// 0x07: no visible entry with that FC-4 type.
    Fc4TypesNotRegistered,
}

impl NsReject {
    /// CT_IU reason code.
    pub const REASON_UNABLE: u8 = 0x09;

    /// CT_IU reason code explanation byte.
    pub fn explanation(self) -> u8 {
        match self {
            NsReject::PortIdNotRegistered => 0x01,
            NsReject::PortNameNotRegistered => 0x02,
            NsReject::NodeNameNotRegistered => 0x03,
            NsReject::Fc4TypesNotRegistered => 0x07,
        }
    }
}

/// Answer to a name-server request: CT ACC with a payload, or CT RJT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsReply<T> {
    Accept(T),
    Reject(NsReject),
}

impl<T> NsReply<T> {
    /// The accepted value, if any.
    pub fn accepted(self) -> Option<T> {
        match self {
            NsReply::Accept(t) => Some(t),
            NsReply::Reject(_) => None,
        }
    }

    fn from_option(v: Option<T>, reject: NsReject) -> Self {
        v.map_or(NsReply::Reject(reject), NsReply::Accept)
    }
}

/// One domain's share of the name server, as distributed between switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    /// The owning switch.
    pub domain: DomainId,
    /// Bumped on every change of the owner's entries; newer replaces older.
    pub version: u64,
    /// The entries, in FC_ID order, all with FC_IDs in `domain`.
    pub entries: Vec<Entry>,
}

/// The name server of one switch.
///
/// Call order: [`NameServer::new`]; on FLOGI/FDISC accept call
/// [`register_login`](Self::register_login), on logout [`deregister`](Self::deregister);
/// CT registrations from local N_Ports go to `rft_id`/`rff_id`/`rnn_id`/`rspn_id`/
/// `rsnn_nn`. After any local change (see [`version`](Self::version)) the driver sends
/// [`local_record`](Self::local_record) to every switch, which calls
/// [`apply_remote`](Self::apply_remote); when FSPF reports a domain gone for good the
/// driver may call [`forget_domain`](Self::forget_domain) (so that a restarted switch's
/// records, whose versions restart, are accepted). Queries take a [`QueryScope`].
#[derive(Debug, Clone)]
pub struct NameServer {
    /// This switch's domain; local entries all lie in it.
    domain: DomainId,
    /// Local entries by FC_ID.
    local: BTreeMap<FcId, Entry>,
    /// FC_IDs by port name over local and remote entries (zoned queries look ports up
    /// by the WWPNs their zones name).
    by_wwpn: BTreeMap<Wwpn, BTreeSet<FcId>>,
    /// Version of `local`; bumped on every local change.
    version: u64,
    /// Copies of other domains' records (never this domain).
    remote: BTreeMap<DomainId, DomainRecord>,
    /// Domains whose entries changed since the last [`take_changed`](Self::take_changed).
    changed: BTreeSet<DomainId>,
}

impl NameServer {
    pub fn new(domain: DomainId) -> Self {
        NameServer {
            domain,
            local: BTreeMap::new(),
            by_wwpn: BTreeMap::new(),
            version: 0,
            remote: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }

    /// The domains whose entries changed (local changes, records taken or dropped)
    /// since the last call, and forgets them: so a driver that diffs what it has shown
    /// (RSCNs) looks at those domains only, not at every entry of the fabric.
    pub fn take_changed(&mut self) -> BTreeSet<DomainId> {
        std::mem::take(&mut self.changed)
    }

    /// The entries held for `domain` (local or a remote copy), in FC_ID order.
    pub fn domain_entries(&self, domain: DomainId) -> Box<dyn Iterator<Item = &Entry> + '_> {
        if domain == self.domain {
            Box::new(self.local.values())
        } else {
            Box::new(
                self.remote
                    .get(&domain)
                    .into_iter()
                    .flat_map(|r| r.entries.iter()),
            )
        }
    }

    fn local_changed(&mut self) {
        self.version += 1;
        self.changed.insert(self.domain);
    }

    /// This switch's domain.
    pub fn domain(&self) -> DomainId {
        self.domain
    }

    /// Version of the local record; changes exactly when the local entries change.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn check_local(&self, fc_id: FcId) -> Result<(), NameServerError> {
        if fc_id.domain() == self.domain.get() {
            Ok(())
        } else {
            Err(NameServerError::ForeignFcId {
                fc_id,
                domain: self.domain,
            })
        }
    }

    fn index(&mut self, e: &Entry) {
        self.by_wwpn.entry(e.wwpn).or_default().insert(e.fc_id);
    }

    fn unindex(&mut self, e: &Entry) {
        if let Some(ids) = self.by_wwpn.get_mut(&e.wwpn) {
            ids.remove(&e.fc_id);
            if ids.is_empty() {
                self.by_wwpn.remove(&e.wwpn);
            }
        }
    }

    /// Unindexes the entries of a replaced remote record that its successor (already
    /// indexed and held) no longer has under the same name.
    fn unindex_replaced(&mut self, old: &DomainRecord) {
        for e in &old.entries {
            if self.entry(e.fc_id).is_none_or(|now| now.wwpn != e.wwpn) {
                self.unindex(e);
            }
        }
    }

    /// Creates (or replaces) the entry of a port that just logged in.
    pub fn register_login(
        &mut self,
        fc_id: FcId,
        wwpn: Wwpn,
        wwnn: Wwnn,
        switch_port: u8,
    ) -> Result<(), NameServerError> {
        self.check_local(fc_id)?;
        let entry = Entry::new(fc_id, wwpn, wwnn, switch_port);
        self.index(&entry);
        if let Some(old) = self.local.insert(fc_id, entry)
            && old.wwpn != wwpn
        {
            self.unindex(&old);
        }
        self.local_changed();
        Ok(())
    }

    /// Removes a local entry (logout). Returns it, if it existed.
    pub fn deregister(&mut self, fc_id: FcId) -> Option<Entry> {
        let e = self.local.remove(&fc_id)?;
        self.unindex(&e);
        self.local_changed();
        Some(e)
    }

    fn update(&mut self, fc_id: FcId, f: impl FnOnce(&mut Entry)) -> NsReply<()> {
        match self.local.get_mut(&fc_id) {
            None => NsReply::Reject(NsReject::PortIdNotRegistered),
            Some(e) => {
                f(e);
                self.local_changed();
                NsReply::Accept(())
            }
        }
    }

    /// RFT_ID: replace the registered FC-4 types of local port `fc_id`.
    pub fn rft_id(&mut self, fc_id: FcId, types: impl IntoIterator<Item = u8>) -> NsReply<()> {
        let types: BTreeSet<u8> = types.into_iter().collect();
        self.update(fc_id, |e| e.fc4_types = types)
    }

    /// RFF_ID: register the FC-4 features of one FC-4 type.
    pub fn rff_id(&mut self, fc_id: FcId, fc4_type: u8, features: Fc4Features) -> NsReply<()> {
        self.update(fc_id, |e| {
            e.fc4_features.insert(fc4_type, features);
        })
    }

    /// RNN_ID: register the node name.
    pub fn rnn_id(&mut self, fc_id: FcId, wwnn: Wwnn) -> NsReply<()> {
        self.update(fc_id, |e| e.wwnn = wwnn)
    }

    /// RSPN_ID: register the symbolic port name (truncated to 255 bytes).
    pub fn rspn_id(&mut self, fc_id: FcId, name: &str) -> NsReply<()> {
        let name = truncate(name, 255);
        self.update(fc_id, |e| e.symbolic_port_name = name)
    }

    /// RSNN_NN: register the symbolic node name of every local port of node `wwnn`.
    /// Accepts with the number of entries updated.
    pub fn rsnn_nn(&mut self, wwnn: Wwnn, name: &str) -> NsReply<usize> {
        let name = truncate(name, 255);
        let mut n = 0;
        for e in self.local.values_mut().filter(|e| e.wwnn == wwnn) {
            e.symbolic_node_name.clone_from(&name);
            n += 1;
        }
        if n == 0 {
            return NsReply::Reject(NsReject::NodeNameNotRegistered);
        }
        self.local_changed();
        NsReply::Accept(n)
    }

    /// This switch's share, for distribution.
    pub fn local_record(&self) -> DomainRecord {
        DomainRecord {
            domain: self.domain,
            version: self.version,
            entries: self.local.values().cloned().collect(),
        }
    }

    /// Whether a record of `domain` at `version` would be taken: another switch's, and
    /// newer than the held copy. Lets a switch drop a flooded duplicate unparsed.
    pub fn takes(&self, domain: DomainId, version: u64) -> bool {
        domain != self.domain && self.remote.get(&domain).is_none_or(|h| h.version < version)
    }

    /// Takes another switch's record if it is newer than the held copy. Records for
    /// this switch's own domain, or with entries outside their domain, are ignored.
    pub fn apply_remote(&mut self, mut record: DomainRecord) -> bool {
        if !self.takes(record.domain, record.version)
            || record
                .entries
                .iter()
                .any(|e| e.fc_id.domain() != record.domain.get())
        {
            return false;
        }
        record.entries.sort_by_key(|e| e.fc_id);
        self.changed.insert(record.domain);
        record.entries.iter().for_each(|e| self.index(e));
        if let Some(old) = self.remote.insert(record.domain, record) {
            self.unindex_replaced(&old);
        }
        true
    }

    /// Drops the copy of `domain`'s entries.
    pub fn forget_domain(&mut self, domain: DomainId) -> Option<DomainRecord> {
        let r = self.remote.remove(&domain)?;
        r.entries.iter().for_each(|e| self.unindex(e));
        self.changed.insert(domain);
        Some(r)
    }

    /// The copies held of other domains' records, in domain order (sent to a new
    /// neighbour switch so that it learns the whole fabric at once).
    pub fn remote_records(&self) -> impl Iterator<Item = &DomainRecord> {
        self.remote.values()
    }

    /// Every entry held, local and remote, reachable or not, in FC_ID order (`nsshow`).
    pub fn all_entries(&self) -> impl Iterator<Item = &Entry> {
        // Domains are disjoint FC_ID ranges: walk them in domain order, local in place.
        let own = self.domain;
        let before = self.remote.range(..own).flat_map(|(_, r)| r.entries.iter());
        let after = self.remote.range(own..).flat_map(|(_, r)| r.entries.iter());
        before.chain(self.local.values()).chain(after)
    }

    /// Local entries only, in FC_ID order.
    pub fn local_entries(&self) -> impl Iterator<Item = &Entry> {
        self.local.values()
    }

    /// The entry with `fc_id`, whatever its visibility.
    pub fn entry(&self, fc_id: FcId) -> Option<&Entry> {
        if fc_id.domain() == self.domain.get() {
            return self.local.get(&fc_id);
        }
        let d = DomainId::new(u32::from(fc_id.domain())).ok()?;
        let r = self.remote.get(&d)?;
        r.entries
            .binary_search_by_key(&fc_id, |e| e.fc_id)
            .ok()
            .map(|i| &r.entries[i])
    }

    /// The entries `scope` may see, in FC_ID order.
    ///
    /// When the filter lists what the requester may see ([`Visibility::reach`]), only
    /// those ports are looked up (by WWPN through an index, by switch port within their
    /// domain), so a zoned query costs the size of the requester's zones, not of the
    /// fabric; otherwise every entry is judged.
    pub fn visible_entries<V: Visibility + ?Sized>(
        &self,
        scope: &QueryScope<'_, V>,
    ) -> Vec<&Entry> {
        let reachable =
            |c: &Entry| c.domain() == self.domain || scope.reachable.contains(&c.domain());
        if scope.requester.is_well_known() {
            return self.all_entries().filter(|c| reachable(c)).collect();
        }
        let Some(r) = self.entry(scope.requester) else {
            return Vec::new();
        };
        let Some(reach) = scope.visibility.reach(r) else {
            return self
                .all_entries()
                .filter(|c| reachable(c) && (c.fc_id == r.fc_id || scope.visibility.visible(r, c)))
                .collect();
        };
        let mut found: BTreeMap<FcId, &Entry> = BTreeMap::from([(r.fc_id, r)]);
        let by_name = reach
            .wwpns
            .iter()
            .filter_map(|w| self.by_wwpn.get(w))
            .flatten()
            .filter_map(|id| self.entry(*id));
        let by_port = reach
            .domain_ports
            .iter()
            .flat_map(|&(d, p)| self.domain_entries(d).filter(move |e| e.switch_port == p));
        for e in by_name.chain(by_port) {
            found.insert(e.fc_id, e);
        }
        found.into_values().filter(|c| reachable(c)).collect()
    }

    /// Whether `scope` may see `c` (the filter of [`visible_entries`](Self::visible_entries)
    /// for one entry: a point query judges the one entry it found, not the whole
    /// fabric).
    fn sees<V: Visibility + ?Sized>(&self, scope: &QueryScope<'_, V>, c: &Entry) -> bool {
        let reachable = c.domain() == self.domain || scope.reachable.contains(&c.domain());
        reachable
            && if scope.requester.is_well_known() {
                true
            } else {
                match self.entry(scope.requester) {
                    None => false,
                    Some(r) => r.fc_id == c.fc_id || scope.visibility.visible(r, c),
                }
            }
    }

    /// GID_PN: FC_ID of the port named `wwpn`.
    pub fn gid_pn<V: Visibility + ?Sized>(
        &self,
        scope: &QueryScope<'_, V>,
        wwpn: Wwpn,
    ) -> NsReply<FcId> {
        let hit = self
            .all_entries()
            .filter(|e| e.wwpn == wwpn)
            .find(|e| self.sees(scope, e))
            .map(|e| e.fc_id);
        NsReply::from_option(hit, NsReject::PortNameNotRegistered)
    }

    /// GPN_ID: port name of `fc_id`.
    pub fn gpn_id<V: Visibility + ?Sized>(
        &self,
        scope: &QueryScope<'_, V>,
        fc_id: FcId,
    ) -> NsReply<Wwpn> {
        let hit = self
            .entry(fc_id)
            .filter(|e| self.sees(scope, e))
            .map(|e| e.wwpn);
        NsReply::from_option(hit, NsReject::PortIdNotRegistered)
    }

    /// GNN_ID: node name of `fc_id`.
    pub fn gnn_id<V: Visibility + ?Sized>(
        &self,
        scope: &QueryScope<'_, V>,
        fc_id: FcId,
    ) -> NsReply<Wwnn> {
        let hit = self
            .entry(fc_id)
            .filter(|e| self.sees(scope, e))
            .map(|e| e.wwnn);
        NsReply::from_option(hit, NsReject::PortIdNotRegistered)
    }

    /// GID_FT: FC_IDs of every visible port registered for FC-4 type `fc4_type`, in
    /// FC_ID order.
    pub fn gid_ft<V: Visibility + ?Sized>(
        &self,
        scope: &QueryScope<'_, V>,
        fc4_type: u8,
    ) -> NsReply<Vec<FcId>> {
        let ids: Vec<FcId> = self
            .visible_entries(scope)
            .into_iter()
            .filter(|e| e.fc4_types.contains(&fc4_type))
            .map(|e| e.fc_id)
            .collect();
        if ids.is_empty() {
            NsReply::Reject(NsReject::Fc4TypesNotRegistered)
        } else {
            NsReply::Accept(ids)
        }
    }

    /// GA_NXT: the first visible entry with an FC_ID greater than `after`, wrapping to
    /// the lowest visible entry. Rejects when nothing is visible.
    pub fn ga_nxt<V: Visibility + ?Sized>(
        &self,
        scope: &QueryScope<'_, V>,
        after: FcId,
    ) -> NsReply<Entry> {
        let mut first = None;
        for e in self.visible_entries(scope) {
            if e.fc_id > after {
                return NsReply::Accept(e.clone());
            }
            if first.is_none() {
                first = Some(e);
            }
        }
        NsReply::from_option(first.cloned(), NsReject::PortIdNotRegistered)
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wwn::Wwn;
    use crate::zoning::{ZoneDb, ZoneMember};

    fn d(n: u32) -> DomainId {
        DomainId::new(n).unwrap()
    }
    fn p(n: u64) -> Wwpn {
        Wwpn(Wwn(0x1000_0000_0000_0000 | n))
    }
    fn nn(n: u64) -> Wwnn {
        Wwnn(Wwn(0x2000_0000_0000_0000 | n))
    }
    fn all_domains() -> BTreeSet<DomainId> {
        (1..=3).map(d).collect()
    }

    /// Switch 1 with ports h1 (010100) and t1 (010200); switch 2 with t2 (020100)
    /// and h2 (020200), its record applied on switch 1.
    fn fabric() -> (NameServer, NameServer) {
        let mut a = NameServer::new(d(1));
        let mut b = NameServer::new(d(2));
        a.register_login(FcId::from_parts(1, 1, 0), p(1), nn(1), 1)
            .unwrap();
        a.register_login(FcId::from_parts(1, 2, 0), p(2), nn(2), 2)
            .unwrap();
        b.register_login(FcId::from_parts(2, 1, 0), p(3), nn(3), 1)
            .unwrap();
        b.register_login(FcId::from_parts(2, 2, 0), p(4), nn(4), 2)
            .unwrap();
        for (ns, ids) in [(&mut a, [(1, 1), (1, 2)]), (&mut b, [(2, 1), (2, 2)])] {
            for (dom, area) in ids {
                let id = FcId::from_parts(dom, area, 0);
                assert_eq!(ns.rft_id(id, [FC4_TYPE_FCP]), NsReply::Accept(()));
            }
        }
        assert!(a.apply_remote(b.local_record()));
        (a, b)
    }

    proptest::proptest! {
        /// A zoned query looks up the ports the requester's zones list (by WWPN index
        /// and switch port) and must find exactly what judging every entry finds, through
        /// logins, logouts, re-logins under another name and replaced remote records.
        /// Seen to fail when ports named by switch port are not looked up, and when a
        /// replaced record's names stay in the index.
        #[test]
        fn zoned_lookups_find_what_judging_every_entry_finds(
            logins in proptest::collection::vec((1u8..4, 1u8..6, 1u64..9), 1..24),
            logouts in proptest::collection::vec((1u8..4, 1u8..6), 0..6),
            zones in proptest::collection::vec(
                proptest::collection::vec((proptest::bool::ANY, 1u64..9, 1u8..4, 1u8..6), 1..4),
                1..5,
            ),
        ) {
            use crate::zoning::{ZoneDb, ZoneMember};
            let mut servers: Vec<NameServer> = (1..4).map(|n| NameServer::new(d(n))).collect();
            let mut a = NameServer::new(d(1));
            for (dom, area, w) in &logins {
                let id = FcId::from_parts(*dom, *area, 0);
                if *dom == 1 {
                    a.register_login(id, p(*w), nn(*w), *area).unwrap();
                    let _ = a.rft_id(id, [FC4_TYPE_FCP]);
                } else {
                    let ns = &mut servers[usize::from(*dom) - 1];
                    ns.register_login(id, p(*w), nn(*w), *area).unwrap();
                    let _ = ns.rft_id(id, [FC4_TYPE_FCP]);
                    // Flooded after every change: records replace records.
                    a.apply_remote(ns.local_record());
                }
            }
            for (dom, area) in &logouts {
                let id = FcId::from_parts(*dom, *area, 0);
                if *dom == 1 {
                    a.deregister(id);
                } else {
                    let ns = &mut servers[usize::from(*dom) - 1];
                    ns.deregister(id);
                    a.apply_remote(ns.local_record());
                }
            }
            let mut z = ZoneDb::new(d(1));
            let mut names = Vec::new();
            for (i, members) in zones.iter().enumerate() {
                let members = members.iter().map(|&(by_name, w, dom, port)| {
                    if by_name {
                        ZoneMember::Wwpn(p(w))
                    } else {
                        ZoneMember::DomainPort(d(u32::from(dom)), port)
                    }
                });
                let name = format!("z{i}");
                z.define_zone(&name, members).unwrap();
                names.push(name);
            }
            z.define_cfg("c", names.iter()).unwrap();
            z.activate("c").unwrap();
            let judge = |r: &Entry, c: &Entry| z.permits(&r.into(), &c.into());
            let reachable: BTreeSet<DomainId> = (1..4).map(d).collect();
            let requesters: Vec<FcId> = a.all_entries().map(|e| e.fc_id).collect();
            for requester in requesters {
                let listed = QueryScope { requester, visibility: &z, reachable: &reachable };
                let judged = QueryScope { requester, visibility: &judge, reachable: &reachable };
                proptest::prop_assert_eq!(a.visible_entries(&listed), a.visible_entries(&judged));
            }
        }
    }

    #[test]
    fn registration_bumps_version_and_rejects_unknown() {
        let mut a = NameServer::new(d(1));
        assert_eq!(a.version(), 0);
        let id = FcId::from_parts(1, 4, 0);
        assert_eq!(
            a.register_login(FcId::from_parts(2, 4, 0), p(1), nn(1), 4),
            Err(NameServerError::ForeignFcId {
                fc_id: FcId::from_parts(2, 4, 0),
                domain: d(1)
            })
        );
        a.register_login(id, p(1), nn(1), 4).unwrap();
        a.rff_id(id, FC4_TYPE_FCP, Fc4Features::INITIATOR);
        a.rspn_id(id, "host1 port0");
        assert_eq!(a.rsnn_nn(nn(1), "host1"), NsReply::Accept(1));
        assert_eq!(
            a.rsnn_nn(nn(9), "x"),
            NsReply::Reject(NsReject::NodeNameNotRegistered)
        );
        assert_eq!(a.version(), 4);
        let e = a.entry(id).unwrap();
        assert!(e.fc4_features[&FC4_TYPE_FCP].is_initiator());
        assert_eq!(e.symbolic_node_name, "host1");
        assert_eq!(
            a.rft_id(FcId::from_parts(1, 9, 0), [FC4_TYPE_FCP]),
            NsReply::Reject(NsReject::PortIdNotRegistered)
        );
        assert!(a.deregister(id).is_some());
        assert!(a.deregister(id).is_none());
        assert_eq!(a.version(), 5);
    }

    #[test]
    fn remote_records_newer_wins() {
        let (mut a, mut b) = fabric();
        let old = b.local_record();
        assert!(!a.apply_remote(old.clone()), "same version is not newer");
        b.deregister(FcId::from_parts(2, 2, 0));
        assert!(a.apply_remote(b.local_record()));
        assert!(!a.apply_remote(old));
        assert_eq!(a.all_entries().count(), 3);
        assert!(
            !a.apply_remote(a.local_record()),
            "own domain is never remote"
        );
        a.forget_domain(d(2));
        assert_eq!(a.all_entries().count(), 2);
    }

    #[test]
    fn queries_answer_for_the_whole_fabric() {
        let (a, _) = fabric();
        let reach = all_domains();
        let s = QueryScope {
            requester: FcId::from_parts(1, 1, 0),
            visibility: &AllVisible,
            reachable: &reach,
        };
        assert_eq!(
            a.gid_pn(&s, p(4)),
            NsReply::Accept(FcId::from_parts(2, 2, 0))
        );
        assert_eq!(
            a.gpn_id(&s, FcId::from_parts(2, 1, 0)),
            NsReply::Accept(p(3))
        );
        assert_eq!(
            a.gnn_id(&s, FcId::from_parts(1, 2, 0)),
            NsReply::Accept(nn(2))
        );
        assert_eq!(
            a.gid_pn(&s, p(99)),
            NsReply::Reject(NsReject::PortNameNotRegistered)
        );
        assert_eq!(
            a.gpn_id(&s, FcId::from_parts(3, 1, 0)),
            NsReply::Reject(NsReject::PortIdNotRegistered)
        );
        assert_eq!(
            a.gid_ft(&s, 0x05),
            NsReply::Reject(NsReject::Fc4TypesNotRegistered)
        );
        assert_eq!(NsReject::Fc4TypesNotRegistered.explanation(), 0x07);
    }

    /// GID_FT lists FC_IDs in ascending order across domains.
    #[test]
    fn gid_ft_is_ordered_by_fc_id() {
        let (one, _) = fabric();
        let mut three = NameServer::new(d(3));
        three
            .register_login(FcId::from_parts(3, 0, 0), p(7), nn(7), 0)
            .unwrap();
        three.rft_id(FcId::from_parts(3, 0, 0), [FC4_TYPE_FCP]);
        // The local domain (2) sits between a lower (1) and a higher (3) remote one.
        let mut two = NameServer::new(d(2));
        two.register_login(FcId::from_parts(2, 5, 0), p(8), nn(8), 5)
            .unwrap();
        two.rft_id(FcId::from_parts(2, 5, 0), [FC4_TYPE_FCP]);
        two.apply_remote(three.local_record());
        two.apply_remote(one.local_record());
        let reach = all_domains();
        let s = QueryScope {
            requester: FcId::NAME_SERVER,
            visibility: &AllVisible,
            reachable: &reach,
        };
        let ids = two.gid_ft(&s, FC4_TYPE_FCP).accepted().unwrap();
        let want: Vec<FcId> = [(1, 1), (1, 2), (2, 5), (3, 0)]
            .iter()
            .map(|&(x, y)| FcId::from_parts(x, y, 0))
            .collect();
        assert_eq!(ids, want);
        let all: Vec<FcId> = two.all_entries().map(|e| e.fc_id).collect();
        assert_eq!(all, want);
    }

    /// Entries of unreachable domains are invisible.
    #[test]
    fn unreachable_domains_are_hidden() {
        let (a, _) = fabric();
        let reach: BTreeSet<DomainId> = [d(1)].into();
        let s = QueryScope {
            requester: FcId::from_parts(1, 1, 0),
            visibility: &AllVisible,
            reachable: &reach,
        };
        assert_eq!(
            a.gid_pn(&s, p(3)),
            NsReply::Reject(NsReject::PortNameNotRegistered)
        );
        assert_eq!(
            a.gid_ft(&s, FC4_TYPE_FCP),
            NsReply::Accept(vec![FcId::from_parts(1, 1, 0), FcId::from_parts(1, 2, 0)])
        );
        // The local domain is reachable even if the set forgot it.
        let none = BTreeSet::new();
        let s = QueryScope {
            requester: FcId::from_parts(1, 1, 0),
            visibility: &AllVisible,
            reachable: &none,
        };
        assert_eq!(
            a.gid_pn(&s, p(2)),
            NsReply::Accept(FcId::from_parts(1, 2, 0))
        );
    }

    /// The name server hides ports outside the requester's zones (FC-GS-7 §6.4).
    #[test]
    fn queries_filtered_by_zoning() {
        let (a, _) = fabric();
        let mut z = ZoneDb::new(d(1));
        z.define_zone("h1_t2", [ZoneMember::Wwpn(p(1)), ZoneMember::Wwpn(p(3))])
            .unwrap();
        z.define_cfg("cfg", ["h1_t2"]).unwrap();
        z.activate("cfg").unwrap();
        let reach = all_domains();
        let h1 = QueryScope {
            requester: FcId::from_parts(1, 1, 0),
            visibility: &z,
            reachable: &reach,
        };
        assert_eq!(
            a.gid_ft(&h1, FC4_TYPE_FCP),
            NsReply::Accept(vec![FcId::from_parts(1, 1, 0), FcId::from_parts(2, 1, 0)])
        );
        assert_eq!(
            a.gid_pn(&h1, p(2)),
            NsReply::Reject(NsReject::PortNameNotRegistered)
        );
        let h2 = QueryScope {
            requester: FcId::from_parts(2, 2, 0),
            visibility: &z,
            reachable: &reach,
        };
        assert_eq!(
            a.gid_ft(&h2, FC4_TYPE_FCP),
            NsReply::Accept(vec![FcId::from_parts(2, 2, 0)])
        );
        // A closure works as a filter too; an unknown N_Port requester sees nothing.
        let none = |_: &Entry, _: &Entry| false;
        let ghost = QueryScope {
            requester: FcId::from_parts(1, 9, 0),
            visibility: &none,
            reachable: &reach,
        };
        assert!(a.visible_entries(&ghost).is_empty());
    }

    #[test]
    fn ga_nxt_walks_and_wraps() {
        let (a, _) = fabric();
        let reach = all_domains();
        let only_even = |_: &Entry, c: &Entry| c.fc_id.area() == 2;
        let s = QueryScope {
            requester: FcId::from_parts(1, 2, 0),
            visibility: &only_even,
            reachable: &reach,
        };
        let next = |after| a.ga_nxt(&s, after).accepted().map(|e| e.fc_id);
        assert_eq!(next(FcId::UNIDENTIFIED), Some(FcId::from_parts(1, 2, 0)));
        assert_eq!(
            next(FcId::from_parts(1, 2, 0)),
            Some(FcId::from_parts(2, 2, 0))
        );
        assert_eq!(
            next(FcId::from_parts(2, 2, 0)),
            Some(FcId::from_parts(1, 2, 0)),
            "wraps"
        );
        let empty = NameServer::new(d(5));
        assert_eq!(
            empty.ga_nxt(&s, FcId::UNIDENTIFIED),
            NsReply::Reject(NsReject::PortIdNotRegistered)
        );
    }
}
