//! The zone database of the Zone Server (FC-GS-7 §6.4) with Brocade FOS semantics:
//! zones of WWPN or `domain,port` members, zone configurations (zone sets), one
//! effective configuration, "default zone all access" when none is active, and
//! fabric-wide distribution of the whole database.
//!
//! **Well-known addresses are always permitted.** [`ZoneDb::permits`] only judges two
//! N_Ports; traffic to or from a well-known address (name server, fabric controller,
//! domain controllers, see [`FcId::is_well_known`](crate::fcid::FcId::is_well_known)) is
//! never zoned, and the caller must not ask.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::fcid::DomainId;
use crate::nameserver::{Entry, Reach, Visibility};
use crate::wwn::Wwpn;

/// Brocade limit on zone and configuration names, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Caller errors of zone administration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZoningError {
    #[error("zone `{zone}` has no members")]
    EmptyZone { zone: String },
    #[error("configuration `{cfg}` has no zones")]
    EmptyCfg { cfg: String },
    #[error("name `{name}` is already defined")]
    DuplicateName { name: String },
    #[error("name `{name}` is {len} bytes; the limit is {MAX_NAME_BYTES}")]
    NameTooLong { name: String, len: usize },
    #[error("name `{name}` must start with a letter and hold only letters, digits and `_`")]
    InvalidName { name: String },
    #[error("no zone named `{zone}`")]
    UnknownZone { zone: String },
    #[error("no configuration named `{cfg}`")]
    UnknownCfg { cfg: String },
    #[error("zone `{zone}` is used by configuration `{cfg}`")]
    ZoneInUse { zone: String, cfg: String },
    #[error("`{text}` is not a zone member: expected a WWPN (50:06:..) or `domain,port`")]
    BadMember { text: String },
}

/// A zone member: a port by WWPN, or a switch port by `domain,port` (which covers every
/// N_Port logged in on it, NPIV included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ZoneMember {
    /// Printed `50:06:0e:80:12:34:56:78`.
    Wwpn(Wwpn),
    /// Printed `1,3`.
    DomainPort(DomainId, u8),
}

impl ZoneMember {
    /// Does this member designate `port`?
    pub fn matches(&self, port: &PortIdentity) -> bool {
        match *self {
            ZoneMember::Wwpn(w) => w == port.wwpn,
            ZoneMember::DomainPort(d, p) => d == port.domain && p == port.port,
        }
    }
}

impl fmt::Display for ZoneMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneMember::Wwpn(w) => write!(f, "{w}"),
            ZoneMember::DomainPort(d, p) => write!(f, "{},{}", d.get(), p),
        }
    }
}

impl FromStr for ZoneMember {
    type Err = ZoningError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ZoningError::BadMember {
            text: s.to_string(),
        };
        let t = s.trim();
        if let Some((d, p)) = t.split_once(',') {
            let d: u32 = d.trim().parse().map_err(|_| bad())?;
            let p: u8 = p.trim().parse().map_err(|_| bad())?;
            return Ok(ZoneMember::DomainPort(
                DomainId::new(d).map_err(|_| bad())?,
                p,
            ));
        }
        t.parse::<Wwpn>().map(ZoneMember::Wwpn).map_err(|_| bad())
    }
}

/// What zoning knows about an N_Port: its name and where it is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortIdentity {
    /// The port's WWPN.
    pub wwpn: Wwpn,
    /// Domain of the switch it is logged in to.
    pub domain: DomainId,
    /// Switch port it is attached to.
    pub port: u8,
}

/// The effective (active) configuration: a copy taken at activation, so later edits
/// of the defined database do not change enforcement until the next activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveCfg {
    /// Name of the configuration that was activated.
    pub name: String,
    /// Its zones, as they were at activation.
    pub zones: BTreeMap<String, BTreeSet<ZoneMember>>,
}

/// The whole zone database as flooded between switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneDbRecord {
    /// Fabric-wide change counter of this database.
    pub generation: u64,
    /// Domain of the switch where the change at `generation` was made.
    pub origin: DomainId,
    /// Defined zones.
    pub zones: BTreeMap<String, BTreeSet<ZoneMember>>,
    /// Defined configurations: name → zone names.
    pub cfgs: BTreeMap<String, BTreeSet<String>>,
    /// Effective configuration, if any.
    pub active: Option<ActiveCfg>,
}

/// The zone database of one switch.
///
/// Call order: [`ZoneDb::new`] with the local domain; administrative commands
/// ([`define_zone`](Self::define_zone), [`define_cfg`](Self::define_cfg),
/// [`activate`](Self::activate), [`deactivate`](Self::deactivate), deletes) bump the
/// generation; after each, the driver floods [`export`](Self::export) to every switch,
/// which calls [`apply_remote`](Self::apply_remote) (and re-floods if it returns `true`).
/// When the effective configuration changes the driver sends RSCNs. Enforcement and
/// name-server filtering ask [`permits`](Self::permits).
///
/// Precedence between records is the total order (higher `generation`, then lower
/// `origin` domain), so every switch converges to the same database whatever the
/// delivery order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneDb {
    /// The switch holding this copy; the `origin` of local changes.
    local: DomainId,
    /// Change counter; strictly increases on every local change.
    generation: u64,
    /// Where the change at `generation` was made.
    origin: DomainId,
    /// Defined zones, name → members (never empty).
    zones: BTreeMap<String, BTreeSet<ZoneMember>>,
    /// Defined configurations, name → zone names (each defined in `zones`).
    cfgs: BTreeMap<String, BTreeSet<String>>,
    /// Effective configuration; `None` = default zone all access.
    active: Option<ActiveCfg>,
    /// The effective zones by member, derived from `active` (rebuilt whenever it
    /// changes): `permits` intersects two short lists instead of scanning every zone.
    index: ZoneIndex,
}

/// Which effective zones (by their rank in name order) each member appears in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ZoneIndex {
    by_wwpn: BTreeMap<Wwpn, Vec<usize>>,
    by_domain_port: BTreeMap<(DomainId, u8), Vec<usize>>,
    /// Each zone's members, by rank.
    members: Vec<Vec<ZoneMember>>,
}

impl ZoneIndex {
    fn of(active: Option<&ActiveCfg>) -> Self {
        let mut ix = ZoneIndex::default();
        for (z, members) in active.iter().flat_map(|c| c.zones.values()).enumerate() {
            ix.members.push(members.iter().copied().collect());
            for m in members {
                let list = match *m {
                    ZoneMember::Wwpn(w) => ix.by_wwpn.entry(w).or_default(),
                    ZoneMember::DomainPort(d, p) => ix.by_domain_port.entry((d, p)).or_default(),
                };
                if list.last() != Some(&z) {
                    list.push(z);
                }
            }
        }
        ix
    }

    /// The zone ranks that contain `port`: two sorted lists, by WWPN and by
    /// domain,port (a zone may name the port both ways).
    fn zones(&self, port: &PortIdentity) -> [&[usize]; 2] {
        let by_wwpn = self.by_wwpn.get(&port.wwpn).map_or(&[][..], Vec::as_slice);
        let by_domain_port = self
            .by_domain_port
            .get(&(port.domain, port.port))
            .map_or(&[][..], Vec::as_slice);
        [by_wwpn, by_domain_port]
    }

    /// Whether some zone contains both ports. No allocation: the name server asks
    /// this once per candidate entry of every GID_FT.
    fn share_zone(&self, a: &PortIdentity, b: &PortIdentity) -> bool {
        zones_meet(self.zones(a), self.zones(b))
    }
}

/// Whether two ports' zone lists (from [`ZoneIndex::zones`]) share a zone.
fn zones_meet(za: [&[usize]; 2], zb: [&[usize]; 2]) -> bool {
    za.iter()
        .any(|x| zb.iter().any(|y| sorted_lists_meet(x, y)))
}

/// Whether two ascending lists have an element in common.
fn sorted_lists_meet(a: &[usize], b: &[usize]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    false
}

fn check_name(name: &str) -> Result<(), ZoningError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(ZoningError::NameTooLong {
            name: name.to_string(),
            len: name.len(),
        });
    }
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ZoningError::InvalidName {
            name: name.to_string(),
        })
    }
}

impl ZoneDb {
    /// An empty database (no zones, no active configuration: all access) at generation 0.
    pub fn new(local: DomainId) -> Self {
        ZoneDb {
            local,
            generation: 0,
            origin: local,
            zones: BTreeMap::new(),
            cfgs: BTreeMap::new(),
            active: None,
            index: ZoneIndex::default(),
        }
    }

    /// Fabric-wide change counter.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Domain where the current generation was made.
    pub fn origin(&self) -> DomainId {
        self.origin
    }

    /// Defined zones.
    pub fn zones(&self) -> &BTreeMap<String, BTreeSet<ZoneMember>> {
        &self.zones
    }

    /// Defined configurations.
    pub fn cfgs(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.cfgs
    }

    /// The effective configuration (`None`: default zone all access).
    pub fn active(&self) -> Option<&ActiveCfg> {
        self.active.as_ref()
    }

    fn bump(&mut self) {
        self.generation += 1;
        self.origin = self.local;
    }

    fn name_free(&self, name: &str) -> Result<(), ZoningError> {
        check_name(name)?;
        if self.zones.contains_key(name) || self.cfgs.contains_key(name) {
            return Err(ZoningError::DuplicateName {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Defines zone `name` (Brocade `zonecreate`). Zone and configuration names share one
    /// namespace.
    pub fn define_zone(
        &mut self,
        name: &str,
        members: impl IntoIterator<Item = ZoneMember>,
    ) -> Result<(), ZoningError> {
        self.name_free(name)?;
        let members: BTreeSet<ZoneMember> = members.into_iter().collect();
        if members.is_empty() {
            return Err(ZoningError::EmptyZone {
                zone: name.to_string(),
            });
        }
        self.zones.insert(name.to_string(), members);
        self.bump();
        Ok(())
    }

    /// Deletes zone `name` (`zonedelete`); refused while a configuration lists it.
    pub fn delete_zone(&mut self, name: &str) -> Result<(), ZoningError> {
        if !self.zones.contains_key(name) {
            return Err(ZoningError::UnknownZone {
                zone: name.to_string(),
            });
        }
        if let Some((cfg, _)) = self.cfgs.iter().find(|(_, z)| z.contains(name)) {
            return Err(ZoningError::ZoneInUse {
                zone: name.to_string(),
                cfg: cfg.clone(),
            });
        }
        self.zones.remove(name);
        self.bump();
        Ok(())
    }

    /// Defines configuration `name` listing `zones` (`cfgcreate`). Zones must exist.
    pub fn define_cfg<S: AsRef<str>>(
        &mut self,
        name: &str,
        zones: impl IntoIterator<Item = S>,
    ) -> Result<(), ZoningError> {
        self.name_free(name)?;
        let zones: BTreeSet<String> = zones.into_iter().map(|z| z.as_ref().to_string()).collect();
        if zones.is_empty() {
            return Err(ZoningError::EmptyCfg {
                cfg: name.to_string(),
            });
        }
        if let Some(z) = zones.iter().find(|z| !self.zones.contains_key(*z)) {
            return Err(ZoningError::UnknownZone { zone: z.clone() });
        }
        self.cfgs.insert(name.to_string(), zones);
        self.bump();
        Ok(())
    }

    /// Deletes configuration `name` (`cfgdelete`); the effective copy stays in force.
    pub fn delete_cfg(&mut self, name: &str) -> Result<(), ZoningError> {
        if self.cfgs.remove(name).is_none() {
            return Err(ZoningError::UnknownCfg {
                cfg: name.to_string(),
            });
        }
        self.bump();
        Ok(())
    }

    /// Makes `cfg` the effective configuration (`cfgenable`), copying its zones.
    pub fn activate(&mut self, cfg: &str) -> Result<(), ZoningError> {
        let names = self.cfgs.get(cfg).ok_or_else(|| ZoningError::UnknownCfg {
            cfg: cfg.to_string(),
        })?;
        let mut zones = BTreeMap::new();
        for z in names {
            let members = self
                .zones
                .get(z)
                .ok_or_else(|| ZoningError::UnknownZone { zone: z.clone() })?;
            zones.insert(z.clone(), members.clone());
        }
        self.active = Some(ActiveCfg {
            name: cfg.to_string(),
            zones,
        });
        self.index = ZoneIndex::of(self.active.as_ref());
        self.bump();
        Ok(())
    }

    /// Removes the effective configuration (`cfgdisable`): default zone all access.
    /// Returns whether a configuration was active.
    pub fn deactivate(&mut self) -> bool {
        let was = self.active.take().is_some();
        self.index = ZoneIndex::default();
        if was {
            self.bump();
        }
        was
    }

    /// May `a` and `b` talk? Yes iff no configuration is active, or some zone of the
    /// effective configuration contains both. Symmetric. Only for N_Ports: well-known
    /// addresses are always permitted by the caller.
    pub fn permits(&self, a: &PortIdentity, b: &PortIdentity) -> bool {
        if self.active.is_none() {
            return true;
        }
        // Same answer as asking every zone whether it holds both, through the index.
        self.index.share_zone(a, b)
    }

    /// Names of the effective zones that contain `port` (for `zoneshow` / diagnostics).
    pub fn zones_of(&self, port: &PortIdentity) -> Vec<&str> {
        self.active
            .iter()
            .flat_map(|c| c.zones.iter())
            .filter(|(_, m)| m.iter().any(|m| m.matches(port)))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The whole database for flooding.
    pub fn export(&self) -> ZoneDbRecord {
        ZoneDbRecord {
            generation: self.generation,
            origin: self.origin,
            zones: self.zones.clone(),
            cfgs: self.cfgs.clone(),
            active: self.active.clone(),
        }
    }

    /// Whether a database at (`generation`, `origin`) would be adopted (see
    /// [`apply_remote`](Self::apply_remote)). Lets a switch drop a flooded copy unparsed.
    pub fn takes(&self, generation: u64, origin: DomainId) -> bool {
        generation > self.generation || (generation == self.generation && origin < self.origin)
    }

    /// Adopts `record` if it takes precedence over the held database: higher
    /// generation, or equal generation and lower origin domain. Returns whether it was
    /// adopted (the driver then re-floods it and, if the effective configuration
    /// changed, sends RSCNs).
    pub fn apply_remote(&mut self, record: ZoneDbRecord) -> bool {
        if !self.takes(record.generation, record.origin) {
            return false;
        }
        self.generation = record.generation;
        self.origin = record.origin;
        self.zones = record.zones;
        self.cfgs = record.cfgs;
        self.active = record.active;
        self.index = ZoneIndex::of(self.active.as_ref());
        true
    }
}

impl From<&Entry> for PortIdentity {
    fn from(e: &Entry) -> Self {
        PortIdentity {
            wwpn: e.wwpn,
            domain: e.domain(),
            port: e.switch_port,
        }
    }
}

/// Name-server filtering by zoning: a candidate is visible iff zoning permits it.
impl Visibility for ZoneDb {
    fn visible(&self, requester: &Entry, candidate: &Entry) -> bool {
        self.permits(&requester.into(), &candidate.into())
    }

    fn reach(&self, requester: &Entry) -> Option<Reach> {
        self.active.as_ref()?;
        let mut reach = Reach::default();
        for rank in self.index.zones(&requester.into()).into_iter().flatten() {
            for m in self.index.members.get(*rank).into_iter().flatten() {
                match *m {
                    ZoneMember::Wwpn(w) => reach.wwpns.insert(w),
                    ZoneMember::DomainPort(d, p) => reach.domain_ports.insert((d, p)),
                };
            }
        }
        Some(reach)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcid::FcId;
    use crate::wwn::{Wwn, Wwnn};

    fn d(n: u32) -> DomainId {
        DomainId::new(n).unwrap()
    }
    fn w(n: u64) -> Wwpn {
        Wwpn(Wwn(0x5006_0e80_0000_0000 | n))
    }
    fn id(n: u64, domain: u32, port: u8) -> PortIdentity {
        PortIdentity {
            wwpn: w(n),
            domain: d(domain),
            port,
        }
    }

    #[test]
    fn member_parse_and_print() {
        let m: ZoneMember = "50:06:0e:80:12:34:56:78".parse().unwrap();
        assert_eq!(m, ZoneMember::Wwpn(Wwpn(Wwn(0x5006_0e80_1234_5678))));
        assert_eq!(m.to_string(), "50:06:0e:80:12:34:56:78");
        let m: ZoneMember = "1,3".parse().unwrap();
        assert_eq!(m, ZoneMember::DomainPort(d(1), 3));
        assert_eq!(m.to_string(), "1,3");
        assert!("0,3".parse::<ZoneMember>().is_err());
        assert!("1,300".parse::<ZoneMember>().is_err());
        assert!("nonsense".parse::<ZoneMember>().is_err());
    }

    /// Brocade "default zone all access": with no effective configuration every pair
    /// may talk.
    #[test]
    fn default_all_access_then_activation_restricts() {
        let mut z = ZoneDb::new(d(1));
        assert!(z.permits(&id(1, 1, 1), &id(2, 2, 2)));
        z.define_zone(
            "host_array",
            [ZoneMember::Wwpn(w(1)), ZoneMember::Wwpn(w(2))],
        )
        .unwrap();
        z.define_zone(
            "tape",
            [ZoneMember::Wwpn(w(1)), ZoneMember::DomainPort(d(3), 7)],
        )
        .unwrap();
        z.define_cfg("prod", ["host_array", "tape"]).unwrap();
        // Defined but not active: still all access.
        assert!(z.permits(&id(2, 1, 1), &id(3, 1, 2)));
        z.activate("prod").unwrap();
        assert!(z.permits(&id(1, 1, 1), &id(2, 2, 2)));
        assert!(z.permits(&id(2, 2, 2), &id(1, 1, 1)));
        assert!(z.permits(&id(1, 1, 1), &id(9, 3, 7)), "domain,port member");
        assert!(!z.permits(&id(2, 2, 2), &id(9, 3, 7)));
        assert!(!z.permits(&id(1, 1, 1), &id(9, 3, 8)));
        assert_eq!(z.zones_of(&id(1, 1, 1)), vec!["host_array", "tape"]);
        // What `reach` lists for a requester is exactly what `permits` lets it see.
        let ports = [
            id(1, 1, 1),
            id(2, 2, 2),
            id(9, 3, 7),
            id(9, 3, 8),
            id(4, 3, 7),
        ];
        for a in &ports {
            let fc_id = FcId::from_parts(a.domain.get(), a.port, 0);
            let reach = z.reach(&Entry::new(fc_id, a.wwpn, Wwnn(Wwn(0)), a.port));
            let reach = reach.expect("zoning is active");
            for b in &ports {
                let listed = reach.wwpns.contains(&b.wwpn)
                    || reach.domain_ports.contains(&(b.domain, b.port));
                assert_eq!(listed, z.permits(a, b), "{a:?} {b:?}");
            }
        }
        assert!(z.deactivate());
        assert!(z.permits(&id(2, 2, 2), &id(9, 3, 7)));
        assert!(!z.deactivate());
    }

    #[test]
    fn effective_config_is_a_copy() {
        let mut z = ZoneDb::new(d(1));
        z.define_zone("a", [ZoneMember::Wwpn(w(1)), ZoneMember::Wwpn(w(2))])
            .unwrap();
        z.define_cfg("c", ["a"]).unwrap();
        z.activate("c").unwrap();
        z.delete_cfg("c").unwrap();
        z.delete_zone("a").unwrap();
        assert!(z.permits(&id(1, 1, 1), &id(2, 1, 2)));
        assert!(!z.permits(&id(1, 1, 1), &id(3, 1, 3)));
    }

    #[test]
    fn validation_errors() {
        let mut z = ZoneDb::new(d(1));
        let m = [ZoneMember::Wwpn(w(1))];
        assert_eq!(
            z.define_zone("empty", []),
            Err(ZoningError::EmptyZone {
                zone: "empty".into()
            })
        );
        z.define_zone("a", m).unwrap();
        assert_eq!(
            z.define_zone("a", m),
            Err(ZoningError::DuplicateName { name: "a".into() })
        );
        let long = "z".repeat(65);
        assert_eq!(
            z.define_zone(&long, m),
            Err(ZoningError::NameTooLong {
                name: long.clone(),
                len: 65
            })
        );
        z.define_zone(&"z".repeat(64), m).unwrap();
        assert!(matches!(
            z.define_zone("1bad", m),
            Err(ZoningError::InvalidName { .. })
        ));
        assert_eq!(
            z.define_cfg("c", ["nope"]),
            Err(ZoningError::UnknownZone {
                zone: "nope".into()
            })
        );
        assert_eq!(
            z.activate("nope"),
            Err(ZoningError::UnknownCfg { cfg: "nope".into() })
        );
        z.define_cfg("c", ["a"]).unwrap();
        assert_eq!(
            z.define_zone("c", m),
            Err(ZoningError::DuplicateName { name: "c".into() })
        );
        assert!(matches!(
            z.delete_zone("a"),
            Err(ZoningError::ZoneInUse { .. })
        ));
    }

    #[test]
    fn newer_generation_wins() {
        let mut a = ZoneDb::new(d(1));
        let mut b = ZoneDb::new(d(2));
        a.define_zone("z", [ZoneMember::Wwpn(w(1))]).unwrap();
        a.define_cfg("c", ["z"]).unwrap();
        a.activate("c").unwrap();
        assert!(b.apply_remote(a.export()));
        assert_eq!(b.export(), a.export());
        assert!(
            !b.apply_remote(a.export()),
            "same record twice is not newer"
        );
        b.deactivate();
        assert!(a.apply_remote(b.export()));
        assert!(a.active().is_none());
        assert_eq!(a.origin(), d(2));
        // An old record is ignored.
        let mut c = ZoneDb::new(d(3));
        c.define_zone("old", [ZoneMember::Wwpn(w(5))]).unwrap();
        assert!(!a.apply_remote(c.export()));
    }

    /// Concurrent changes at the same generation: the lower origin domain wins on every
    /// switch, whatever the delivery order.
    #[test]
    fn ties_broken_by_lower_origin_deterministically() {
        let mut a = ZoneDb::new(d(5));
        let mut b = ZoneDb::new(d(2));
        a.define_zone("from_a", [ZoneMember::Wwpn(w(1))]).unwrap();
        b.define_zone("from_b", [ZoneMember::Wwpn(w(2))]).unwrap();
        let (ra, rb) = (a.export(), b.export());
        assert!(a.apply_remote(rb.clone()));
        assert!(!b.apply_remote(ra.clone()));
        assert_eq!(a.export(), b.export());
        assert!(a.zones().contains_key("from_b"));
        // A third switch converges the same way in either order.
        for order in [[ra.clone(), rb.clone()], [rb.clone(), ra.clone()]] {
            let mut c = ZoneDb::new(d(9));
            for r in order {
                c.apply_remote(r);
            }
            assert_eq!(c.export(), rb);
        }
    }
}
