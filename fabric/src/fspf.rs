//! FSPF-style link-state routing for one switch (FC-SW-6 §8 Fabric Shortest Path First):
//! the link-state database, reliable-enough flooding of Link State Records over ISLs,
//! shortest-path computation with equal-cost multipath, and exchange-based load sharing.
//!
//! Simplifications against FC-SW-6, chosen for the simulator:
//! - No Hello / dead-interval / retransmission timers: the driver reports ISL up/down
//!   (port-down triggers immediate flooding, as real switches do with hold time 0), and
//!   links are assumed to deliver LSUs.
//! - No LSR aging (MaxAge): a domain that dies keeps its last LSR in the database, but
//!   its neighbours stop reporting it, so the two-way check drops it from the graph.
//! - Link cost is per FC-SW ([`link_cost`]); costs of 0 are refused.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::dijkstra;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use serde::{Deserialize, Serialize};

use crate::fcid::{DomainId, FcId};

/// Maximum equal-cost next hops kept per destination (Cisco MDS: 16).
pub const MAX_ECMP: usize = 16;

/// Caller errors of FSPF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FspfError {
    #[error("ISL on port {port} reports this switch's own domain {domain} as neighbour")]
    SelfAdjacency { port: u8, domain: DomainId },
    #[error("ISL on port {port} has cost 0; FSPF link costs are at least 1")]
    ZeroCost { port: u8 },
}

/// FSPF link cost of an ISL of `gbps` gigabit FC (FC-SW-6 §8.5.3: cost = 1.0625e12 /
/// baud rate, S_Cost×…). The baud rate is taken as `gbps` × 1.0625 Gbaud, the 1GFC
/// rate scaled by the speed multiple, so the cost is `1000 / gbps` **truncated**, with
/// a floor of 1: 1GFC → 1000, 2 → 500, 4 → 250, 8 → 125, 16 → 62, 32 → 31, 64 → 15,
/// 128 → 7. (16GFC and faster really use 64b/66b at other baud rates; switches quote the
/// nominal-speed costs, which this reproduces.) `gbps = 0` is treated as 1.
pub fn link_cost(gbps: u32) -> u32 {
    (1000 / gbps.max(1)).max(1)
}

/// One link reported in a Link State Record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LsrLink {
    /// Domain at the far end of the ISL.
    pub neighbor: DomainId,
    /// The reporting switch's port of the ISL.
    pub out_port: u8,
    /// Cost of sending over this ISL (≥ 1).
    pub cost: u32,
}

/// A Link State Record: one switch's view of its own ISLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lsr {
    /// The switch the record describes (and the only one that originates it).
    pub domain: DomainId,
    /// Strictly increases with every new record the switch originates.
    pub incarnation: u64,
    /// Its up ISLs, ordered by `out_port`.
    pub links: Vec<LsrLink>,
}

/// One way to forward toward a destination domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NextHop {
    /// Local E_Port to send on.
    pub port: u8,
    /// Domain of the switch on the other end.
    pub neighbor: DomainId,
}

/// Routing-table row for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Shortest path cost.
    pub cost: u64,
    /// All equal-cost next hops (ascending port, at most [`MAX_ECMP`]); never empty.
    pub next_hops: Vec<NextHop>,
}

/// Something the driver must react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FspfEvent {
    /// The set of reachable domains changed (trigger domain RSCNs and name-server
    /// filtering; `lost` domains' name-server copies may be forgotten).
    ReachabilityChanged {
        gained: BTreeSet<DomainId>,
        lost: BTreeSet<DomainId>,
    },
    /// Some route's cost or next hops changed (in-flight exchanges on removed next hops
    /// fail and are retried by their initiators).
    RoutesChanged,
}

/// An up ISL as seen by this switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Isl {
    neighbor: DomainId,
    cost: u32,
}

/// FSPF for one switch.
///
/// Call order: [`Fspf::new`] with the switch's domain; feed
/// [`handle_isl_up`](Self::handle_isl_up) / [`handle_isl_down`](Self::handle_isl_down)
/// when an E_Port's adjacency comes up or goes down, and
/// [`handle_lsu`](Self::handle_lsu) for every LSU received; after each call drain
/// [`poll_transmit`](Self::poll_transmit) (send each batch as an LSU on that port) and
/// [`poll_event`](Self::poll_event). Forward frames with [`route`](Self::route). Routes
/// are recomputed at the first `poll_event` after a change, so a batch of LSUs (a
/// whole fabric's records arriving together) costs one shortest-path computation, as
/// FSPF's hold-down between computations intends; queries in between see the routes
/// of the last computation. There is no time input.
///
/// Flooding rules: a change of our own ISLs originates a new own LSR (incarnation + 1)
/// sent to every up ISL; a new adjacency gets the whole database; a foreign LSR newer
/// than the held copy is stored and re-flooded to every up ISL except the one it came
/// on; an older one is answered with our newer copy; our own LSR coming back with a
/// higher incarnation (from before a restart) makes us jump past it. LSUs are accepted
/// on any port (they may race the local ISL-up report), sends go only to up ISLs.
#[derive(Debug, Clone)]
pub struct Fspf {
    /// This switch.
    domain: DomainId,
    /// Up ISLs by local port.
    isls: BTreeMap<u8, Isl>,
    /// Link-state database, including our own current LSR.
    lsdb: BTreeMap<DomainId, Lsr>,
    /// Routing table for every reachable domain other than ours.
    routes: BTreeMap<DomainId, Route>,
    /// Reachable domains, ours included.
    reachable: BTreeSet<DomainId>,
    /// Pending LSUs: port → (domain → latest LSR to send). Coalesced, port order.
    outbox: BTreeMap<u8, BTreeMap<DomainId, Lsr>>,
    /// Pending events, oldest first.
    events: Vec<FspfEvent>,
    /// The database or our ISLs changed since the routes were last computed.
    stale: bool,
}

impl Fspf {
    /// A switch with no ISLs: own LSR at incarnation 1, only itself reachable.
    pub fn new(domain: DomainId) -> Self {
        let own = Lsr {
            domain,
            incarnation: 1,
            links: Vec::new(),
        };
        Fspf {
            domain,
            isls: BTreeMap::new(),
            lsdb: BTreeMap::from([(domain, own)]),
            routes: BTreeMap::new(),
            reachable: BTreeSet::from([domain]),
            outbox: BTreeMap::new(),
            events: Vec::new(),
            stale: false,
        }
    }

    /// This switch's domain.
    pub fn domain(&self) -> DomainId {
        self.domain
    }

    /// The link-state database in domain order.
    pub fn lsdb(&self) -> impl Iterator<Item = &Lsr> {
        self.lsdb.values()
    }

    /// Our own current LSR.
    pub fn own_lsr(&self) -> &Lsr {
        &self.lsdb[&self.domain]
    }

    /// Up ISLs: (local port, neighbour domain, cost), port order.
    pub fn isls(&self) -> impl Iterator<Item = (u8, DomainId, u32)> + '_ {
        self.isls.iter().map(|(&p, i)| (p, i.neighbor, i.cost))
    }

    // ---- inputs -------------------------------------------------------------------

    /// An E_Port adjacency to `neighbor` came up on `port` with `cost` (see
    /// [`link_cost`]). Re-reporting an up port replaces its neighbour and cost.
    pub fn handle_isl_up(
        &mut self,
        port: u8,
        neighbor: DomainId,
        cost: u32,
    ) -> Result<(), FspfError> {
        if neighbor == self.domain {
            return Err(FspfError::SelfAdjacency {
                port,
                domain: neighbor,
            });
        }
        if cost == 0 {
            return Err(FspfError::ZeroCost { port });
        }
        self.isls.insert(port, Isl { neighbor, cost });
        self.originate();
        // The new neighbour gets the whole database (own LSR included).
        let all: Vec<Lsr> = self.lsdb.values().cloned().collect();
        for lsr in all {
            self.queue(port, lsr);
        }
        self.stale = true;
        Ok(())
    }

    /// The ISL on `port` went down (unknown ports are ignored).
    pub fn handle_isl_down(&mut self, port: u8) {
        if self.isls.remove(&port).is_none() {
            return;
        }
        self.outbox.remove(&port);
        self.originate();
        self.stale = true;
    }

    /// An LSU with `lsrs` arrived on `from_port`.
    pub fn handle_lsu(&mut self, from_port: u8, lsrs: Vec<Lsr>) {
        let mut changed = false;
        for lsr in lsrs {
            let held = self.lsdb.get(&lsr.domain).map(|h| h.incarnation);
            if lsr.domain == self.domain {
                let own = held.unwrap_or(0);
                if lsr.incarnation >= own && lsr != self.lsdb[&self.domain] {
                    // A stale copy of ours from before a restart: jump past it.
                    self.lsdb
                        .get_mut(&self.domain)
                        .expect("own LSR")
                        .incarnation = lsr.incarnation;
                    self.originate();
                    changed = true;
                } else if lsr.incarnation < own {
                    self.queue(from_port, self.lsdb[&self.domain].clone());
                }
                continue;
            }
            match held {
                Some(h) if h > lsr.incarnation => {
                    self.queue(from_port, self.lsdb[&lsr.domain].clone());
                }
                Some(h) if h == lsr.incarnation => {}
                _ => {
                    let ports: Vec<u8> = self
                        .isls
                        .keys()
                        .copied()
                        .filter(|&p| p != from_port)
                        .collect();
                    for p in ports {
                        self.queue(p, lsr.clone());
                    }
                    self.lsdb.insert(lsr.domain, lsr);
                    changed = true;
                }
            }
        }
        if changed {
            self.stale = true;
        }
    }

    // ---- outputs ------------------------------------------------------------------

    /// Recomputes the routes if anything changed since the last computation (the
    /// first [`poll_event`](Self::poll_event) after a change does it too).
    pub fn settle(&mut self) {
        if std::mem::take(&mut self.stale) {
            self.recompute();
        }
    }

    /// Next LSU to send: (local port, records). Ports in ascending order; records for
    /// one port are coalesced (latest per domain, domain order).
    pub fn poll_transmit(&mut self) -> Option<(u8, Vec<Lsr>)> {
        let (port, lsrs) = self.outbox.pop_first()?;
        Some((port, lsrs.into_values().collect()))
    }

    /// Next event for the driver, oldest first.
    pub fn poll_event(&mut self) -> Option<FspfEvent> {
        self.settle();
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    // ---- routing queries ----------------------------------------------------------

    /// Equal-cost next hops toward `dest` (empty if unreachable or `dest` is us).
    pub fn next_hops(&self, dest: DomainId) -> &[NextHop] {
        self.routes
            .get(&dest)
            .map_or(&[], |r| r.next_hops.as_slice())
    }

    /// Egress port for a frame of exchange (`s_id`, `d_id`, `ox_id`) toward domain
    /// `dest`: one of the equal-cost next hops chosen by a fixed hash of the exchange,
    /// so an exchange always takes the same port while exchanges spread over all paths.
    /// `None` if `dest` is unreachable or is this switch (deliver locally).
    pub fn route(&self, dest: DomainId, s_id: FcId, d_id: FcId, ox_id: u16) -> Option<u8> {
        let hops = self.next_hops(dest);
        if hops.is_empty() {
            return None;
        }
        let h = exchange_hash(s_id, d_id, ox_id);
        let n = u64::try_from(hops.len()).expect("≤ 16 hops");
        let i = usize::try_from(h % n).expect("< 16");
        Some(hops[i].port)
    }

    /// Reachable domains, this switch included.
    pub fn reachable_domains(&self) -> &BTreeSet<DomainId> {
        &self.reachable
    }

    /// The routing table (`fspf route` / `topologyshow`), destination order.
    pub fn routes(&self) -> impl Iterator<Item = (DomainId, &Route)> {
        self.routes.iter().map(|(&d, r)| (d, r))
    }

    /// Shortest path cost to `dest` (0 for ourselves, `None` if unreachable).
    pub fn path_cost(&self, dest: DomainId) -> Option<u64> {
        if dest == self.domain {
            return Some(0);
        }
        self.routes.get(&dest).map(|r| r.cost)
    }

    // ---- internals ----------------------------------------------------------------

    fn queue(&mut self, port: u8, lsr: Lsr) {
        if !self.isls.contains_key(&port) {
            return;
        }
        let slot = self.outbox.entry(port).or_default();
        match slot.get(&lsr.domain) {
            Some(q) if q.incarnation >= lsr.incarnation => {}
            _ => {
                slot.insert(lsr.domain, lsr);
            }
        }
    }

    /// New own LSR from the current ISLs, flooded to every up ISL.
    fn originate(&mut self) {
        let incarnation = self.lsdb[&self.domain].incarnation + 1;
        let links = self
            .isls
            .iter()
            .map(|(&out_port, i)| LsrLink {
                neighbor: i.neighbor,
                out_port,
                cost: i.cost,
            })
            .collect();
        let own = Lsr {
            domain: self.domain,
            incarnation,
            links,
        };
        let ports: Vec<u8> = self.isls.keys().copied().collect();
        for p in ports {
            self.queue(p, own.clone());
        }
        self.lsdb.insert(self.domain, own);
    }

    /// Does `to` report a link back to `from`?
    fn reports(&self, to: DomainId, from: DomainId) -> bool {
        self.lsdb
            .get(&to)
            .is_some_and(|l| l.links.iter().any(|k| k.neighbor == from))
    }

    /// Dijkstra over two-way links, then equal-cost next hops by walking domains in
    /// (distance, domain) order.
    fn recompute(&mut self) {
        let mut g: StableDiGraph<DomainId, u64> = StableDiGraph::new();
        let idx: BTreeMap<DomainId, NodeIndex> =
            self.lsdb.keys().map(|&d| (d, g.add_node(d))).collect();
        // Incoming two-way edges per node: (from, cost, from's out_port).
        let mut incoming: BTreeMap<DomainId, Vec<(DomainId, u64, u8)>> = BTreeMap::new();
        for lsr in self.lsdb.values() {
            for link in &lsr.links {
                let Some(&to) = idx.get(&link.neighbor) else {
                    continue;
                };
                if link.neighbor == lsr.domain || !self.reports(link.neighbor, lsr.domain) {
                    continue;
                }
                let cost = u64::from(link.cost.max(1));
                g.add_edge(idx[&lsr.domain], to, cost);
                incoming
                    .entry(link.neighbor)
                    .or_default()
                    .push((lsr.domain, cost, link.out_port));
            }
        }
        let dist_by_idx = dijkstra(&g, idx[&self.domain], None, |e| *e.weight());
        // Lookups only (never iterate the HashMap): distances in domain order.
        let dist: BTreeMap<DomainId, u64> = idx
            .iter()
            .filter_map(|(&d, i)| dist_by_idx.get(i).map(|&c| (d, c)))
            .collect();
        let mut order: Vec<(u64, DomainId)> = dist.iter().map(|(&d, &c)| (c, d)).collect();
        order.sort_unstable();

        let mut hops: BTreeMap<DomainId, BTreeSet<NextHop>> = BTreeMap::new();
        let mut routes = BTreeMap::new();
        for &(cost, d) in &order {
            if d == self.domain {
                continue;
            }
            let mut set = BTreeSet::new();
            for &(from, w, out_port) in incoming.get(&d).into_iter().flatten() {
                if dist.get(&from).is_some_and(|&df| df + w == cost) {
                    if from == self.domain {
                        set.insert(NextHop {
                            port: out_port,
                            neighbor: d,
                        });
                    } else if let Some(h) = hops.get(&from) {
                        set.extend(h.iter().copied());
                    }
                }
            }
            let next_hops: Vec<NextHop> = set.iter().copied().take(MAX_ECMP).collect();
            hops.insert(d, set);
            routes.insert(d, Route { cost, next_hops });
        }
        let reachable: BTreeSet<DomainId> = dist.keys().copied().collect();

        if reachable != self.reachable {
            let gained = reachable.difference(&self.reachable).copied().collect();
            let lost = self.reachable.difference(&reachable).copied().collect();
            self.events
                .push(FspfEvent::ReachabilityChanged { gained, lost });
            self.reachable = reachable;
        }
        if routes != self.routes {
            self.routes = routes;
            self.events.push(FspfEvent::RoutesChanged);
        }
    }
}

/// SplitMix64 finaliser over (S_ID, D_ID, OX_ID): a fixed, platform-independent hash.
fn exchange_hash(s_id: FcId, d_id: FcId, ox_id: u16) -> u64 {
    let mut z = (u64::from(s_id.raw()) << 40) ^ (u64::from(d_id.raw()) << 16) ^ u64::from(ox_id);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(n: u32) -> DomainId {
        DomainId::new(n).unwrap()
    }

    /// A tiny in-test fabric: switches `0..n` with domains `1..=n`, ISLs between
    /// (switch, port) pairs, LSUs delivered in a fixed order until quiet.
    struct Net {
        sw: Vec<Fspf>,
        /// (switch, port) → (peer switch, peer port), both directions, up links only.
        links: BTreeMap<(usize, u8), (usize, u8)>,
        next_port: Vec<u8>,
    }

    impl Net {
        fn new(n: usize) -> Self {
            let sw = (1..=n)
                .map(|i| Fspf::new(d(u32::try_from(i).unwrap())))
                .collect();
            Net {
                sw,
                links: BTreeMap::new(),
                next_port: vec![0; n],
            }
        }

        /// Connects `a` and `b` with cost `c`; returns the two ports.
        fn connect(&mut self, a: usize, b: usize, c: u32) -> (u8, u8) {
            let (pa, pb) = (self.next_port[a], self.next_port[b]);
            self.next_port[a] += 1;
            self.next_port[b] += 1;
            self.links.insert((a, pa), (b, pb));
            self.links.insert((b, pb), (a, pa));
            let (da, db) = (self.sw[a].domain(), self.sw[b].domain());
            self.sw[a].handle_isl_up(pa, db, c).unwrap();
            self.sw[b].handle_isl_up(pb, da, c).unwrap();
            (pa, pb)
        }

        fn cut(&mut self, a: usize, pa: u8) {
            if let Some((b, pb)) = self.links.remove(&(a, pa)) {
                self.links.remove(&(b, pb));
                self.sw[a].handle_isl_down(pa);
                self.sw[b].handle_isl_down(pb);
            }
        }

        /// Delivers LSUs until no switch has anything to send; returns messages sent.
        fn pump(&mut self) -> usize {
            let mut sent = 0;
            loop {
                let mut any = false;
                for i in 0..self.sw.len() {
                    while let Some((port, lsrs)) = self.sw[i].poll_transmit() {
                        any = true;
                        sent += 1;
                        assert!(sent < 100_000, "flooding does not quiesce");
                        if let Some(&(j, pj)) = self.links.get(&(i, port)) {
                            self.sw[j].handle_lsu(pj, lsrs);
                        }
                    }
                }
                if !any {
                    // The end of a batch: each switch's driver would poll now.
                    self.sw.iter_mut().for_each(Fspf::settle);
                    return sent;
                }
            }
        }
    }

    #[test]
    fn link_cost_table() {
        let got: Vec<u32> = [1, 2, 4, 8, 16, 32, 64, 0]
            .iter()
            .map(|&g| link_cost(g))
            .collect();
        assert_eq!(got, vec![1000, 500, 250, 125, 62, 31, 15, 1000]);
        assert_eq!(link_cost(5000), 1);
    }

    /// Ring 1-2-3-4-1: domain 3 is two hops away both ways round.
    fn ring() -> (Net, [(u8, u8); 4]) {
        let mut n = Net::new(4);
        let l = [
            n.connect(0, 1, 125),
            n.connect(1, 2, 125),
            n.connect(2, 3, 125),
            n.connect(3, 0, 125),
        ];
        n.pump();
        (n, l)
    }

    #[test]
    fn ring_has_two_equal_cost_paths() {
        let (n, _) = ring();
        let s1 = &n.sw[0];
        assert_eq!(
            s1.next_hops(d(3)),
            &[
                NextHop {
                    port: 0,
                    neighbor: d(2)
                },
                NextHop {
                    port: 1,
                    neighbor: d(4)
                }
            ]
        );
        assert_eq!(
            s1.next_hops(d(2)),
            &[NextHop {
                port: 0,
                neighbor: d(2)
            }]
        );
        assert_eq!(s1.path_cost(d(3)), Some(250));
        assert_eq!(s1.path_cost(d(1)), Some(0));
        assert_eq!(s1.reachable_domains().len(), 4);
        assert_eq!(s1.routes().count(), 3);
        assert!(s1.next_hops(d(1)).is_empty());
        assert_eq!(
            s1.route(d(1), FcId::new(0x010100), FcId::new(0x010200), 1),
            None
        );
    }

    /// Exchange-based load sharing: same exchange → same port; many exchanges spread
    /// over both equal-cost paths; result independent of call history.
    #[test]
    fn load_sharing_is_per_exchange_and_spread() {
        let (n, _) = ring();
        let s1 = &n.sw[0];
        let (s, t) = (FcId::from_parts(1, 1, 0), FcId::from_parts(3, 1, 0));
        let mut count = [0usize; 2];
        for ox in 0..1000u16 {
            let p = s1.route(d(3), s, t, ox).unwrap();
            assert_eq!(s1.route(d(3), s, t, ox), Some(p));
            count[usize::from(p)] += 1;
        }
        assert!(count[0] > 400 && count[1] > 400, "{count:?}");
        let clone = s1.clone();
        assert_eq!(clone.route(d(3), s, t, 77), s1.route(d(3), s, t, 77));
    }

    #[test]
    fn cut_isl_reroutes_then_partition_is_unreachable() {
        let (mut n, l) = ring();
        while n.sw[0].poll_event().is_some() {}
        n.cut(0, l[0].0); // 1-2 down
        n.pump();
        assert_eq!(
            n.sw[0].next_hops(d(3)),
            &[NextHop {
                port: 1,
                neighbor: d(4)
            }]
        );
        assert_eq!(
            n.sw[0].next_hops(d(2)),
            &[NextHop {
                port: 1,
                neighbor: d(4)
            }]
        );
        assert_eq!(n.sw[0].path_cost(d(2)), Some(375));
        assert_eq!(n.sw[0].poll_event(), Some(FspfEvent::RoutesChanged));
        assert_eq!(n.sw[0].poll_event(), None);
        n.cut(2, l[2].0); // 3-4 down: {1,4} | {2,3}
        n.pump();
        let want: BTreeSet<DomainId> = [d(1), d(4)].into();
        assert_eq!(n.sw[0].reachable_domains(), &want);
        assert_eq!(n.sw[3].reachable_domains(), &want);
        assert!(n.sw[0].next_hops(d(3)).is_empty());
        assert_eq!(n.sw[0].route(d(3), FcId::new(1), FcId::new(2), 3), None);
        assert_eq!(
            n.sw[0].poll_event(),
            Some(FspfEvent::ReachabilityChanged {
                gained: BTreeSet::new(),
                lost: [d(2), d(3)].into()
            })
        );
        // Heal: everything comes back.
        n.connect(0, 1, 125);
        n.pump();
        assert_eq!(n.sw[2].reachable_domains().len(), 4);
    }

    /// FC-SW-6 §8: a link is used only if both ends report it.
    #[test]
    fn one_way_link_is_not_used() {
        let mut a = Fspf::new(d(1));
        a.handle_isl_up(0, d(2), 100).unwrap();
        assert!(a.next_hops(d(2)).is_empty(), "neighbour's LSR not yet seen");
        // Domain 2 claims a link to 3, but 3 does not report 2 back.
        a.handle_lsu(
            0,
            vec![
                Lsr {
                    domain: d(2),
                    incarnation: 5,
                    links: vec![
                        LsrLink {
                            neighbor: d(1),
                            out_port: 0,
                            cost: 100,
                        },
                        LsrLink {
                            neighbor: d(3),
                            out_port: 1,
                            cost: 100,
                        },
                    ],
                },
                Lsr {
                    domain: d(3),
                    incarnation: 5,
                    links: vec![],
                },
            ],
        );
        a.settle();
        assert_eq!(
            a.next_hops(d(2)),
            &[NextHop {
                port: 0,
                neighbor: d(2)
            }]
        );
        assert!(a.next_hops(d(3)).is_empty());
        assert!(!a.reachable_domains().contains(&d(3)));
    }

    #[test]
    fn flooding_converges_and_adjacency_gets_whole_db() {
        // A line 1-2-3-4-5, then 6 joins at 5.
        let mut n = Net::new(6);
        for i in 0..4 {
            n.connect(i, i + 1, 10);
        }
        n.pump();
        n.connect(4, 5, 10);
        n.pump();
        for s in &n.sw {
            assert_eq!(s.lsdb().count(), 6);
            assert_eq!(s.reachable_domains().len(), 6);
        }
        assert_eq!(n.sw[5].path_cost(d(1)), Some(50));
        // All databases identical.
        let db0: Vec<Lsr> = n.sw[0].lsdb().cloned().collect();
        assert!(
            n.sw.iter()
                .all(|s| s.lsdb().cloned().collect::<Vec<_>>() == db0)
        );
    }

    /// A restarted switch (fresh incarnation) jumps past its old LSR held by others.
    #[test]
    fn restart_keeps_incarnations_monotone() {
        let mut n = Net::new(3);
        n.connect(0, 1, 10);
        let (mut p12, _) = n.connect(1, 2, 10);
        n.pump();
        for _ in 0..3 {
            n.cut(1, p12);
            p12 = n.connect(1, 2, 10).0;
            n.pump();
        }
        let old = n.sw[2].own_lsr().incarnation;
        assert!(old > 2);
        // Switch 3 restarts with fresh state, then its ISL comes back.
        n.cut(1, p12);
        n.sw[2] = Fspf::new(d(3));
        n.next_port[2] = 0;
        n.pump();
        assert_eq!(n.sw[0].reachable_domains().len(), 2);
        n.connect(1, 2, 10);
        n.pump();
        assert!(n.sw[2].own_lsr().incarnation > old);
        for s in &n.sw {
            assert_eq!(s.reachable_domains().len(), 3);
            assert_eq!(s.lsdb().find(|l| l.domain == d(3)), Some(n.sw[2].own_lsr()));
        }
    }

    #[test]
    fn bad_isl_reports_are_errors() {
        let mut a = Fspf::new(d(1));
        assert_eq!(
            a.handle_isl_up(0, d(1), 10),
            Err(FspfError::SelfAdjacency {
                port: 0,
                domain: d(1)
            })
        );
        assert_eq!(
            a.handle_isl_up(0, d(2), 0),
            Err(FspfError::ZeroCost { port: 0 })
        );
    }

    /// Reference: Floyd–Warshall over the up links; next hops of `s` toward `t` are the
    /// local links (port, neighbour, cost) with cost + dist(neighbour, t) == dist(s, t).
    fn reference(n: &Net) -> Vec<BTreeMap<DomainId, Vec<NextHop>>> {
        let k = n.sw.len();
        const INF: u64 = u64::MAX / 4;
        let mut dist = vec![vec![INF; k]; k];
        for (i, row) in dist.iter_mut().enumerate() {
            row[i] = 0;
        }
        let mut adj: Vec<Vec<(u8, usize, u64)>> = vec![Vec::new(); k];
        for (&(a, pa), &(b, _)) in &n.links {
            let c = u64::from(n.sw[a].isls().find(|&(p, _, _)| p == pa).unwrap().2);
            adj[a].push((pa, b, c));
            dist[a][b] = dist[a][b].min(c);
        }
        for m in 0..k {
            for i in 0..k {
                for j in 0..k {
                    if dist[i][m] + dist[m][j] < dist[i][j] {
                        dist[i][j] = dist[i][m] + dist[m][j];
                    }
                }
            }
        }
        (0..k)
            .map(|s| {
                let mut out = BTreeMap::new();
                for t in (0..k).filter(|&t| t != s && dist[s][t] < INF) {
                    let mut hops: Vec<NextHop> = adj[s]
                        .iter()
                        .filter(|&&(_, nb, c)| c + dist[nb][t] == dist[s][t])
                        .map(|&(port, nb, _)| NextHop {
                            port,
                            neighbor: n.sw[nb].domain(),
                        })
                        .collect();
                    hops.sort();
                    hops.truncate(MAX_ECMP);
                    out.insert(n.sw[t].domain(), hops);
                }
                out
            })
            .collect()
    }

    fn check_against_reference(n: &Net) -> Result<(), TestCaseError> {
        let want = reference(n);
        for (s, w) in n.sw.iter().zip(&want) {
            let got: BTreeMap<DomainId, Vec<NextHop>> =
                s.routes().map(|(d, r)| (d, r.next_hops.clone())).collect();
            prop_assert_eq!(&got, w, "switch {}", s.domain());
            // Reachability agrees with the reference and is symmetric.
            for t in &n.sw {
                prop_assert_eq!(
                    s.reachable_domains().contains(&t.domain()),
                    t.reachable_domains().contains(&s.domain())
                );
            }
        }
        Ok(())
    }

    proptest! {
        /// Random connected graphs of ≤ 12 switches (a random spanning tree plus extra
        /// ISLs, parallel ones included), random costs with many ties, random ISL cuts:
        /// after flooding quiesces every switch's next hops equal the Floyd–Warshall
        /// reference and all switches agree on reachability.
        #[test]
        fn converges_to_shortest_paths(
            n in 2usize..=12,
            tree in proptest::collection::vec(any::<u32>(), 11),
            extra in proptest::collection::vec((0usize..12, 0usize..12), 0..12),
            costs in proptest::collection::vec(prop_oneof![Just(1u32), Just(2), Just(3), Just(125)], 30),
            cuts in proptest::collection::vec(any::<bool>(), 30),
        ) {
            let mut net = Net::new(n);
            let mut edges = Vec::new();
            for i in 1..n {
                let parent = usize::try_from(tree[i - 1]).unwrap() % i;
                edges.push((parent, i));
            }
            for &(a, b) in &extra {
                let (a, b) = (a % n, b % n);
                if a != b {
                    edges.push((a, b));
                }
            }
            let mut ports = Vec::new();
            for (k, &(a, b)) in edges.iter().enumerate() {
                let (pa, _) = net.connect(a, b, costs[k % costs.len()]);
                ports.push((a, pa));
            }
            net.pump();
            check_against_reference(&net)?;
            for (k, &(a, pa)) in ports.iter().enumerate() {
                if cuts[k % cuts.len()] {
                    net.cut(a, pa);
                }
            }
            net.pump();
            check_against_reference(&net)?;
            let r0 = net.sw[0].reachable_domains().clone();
            for s in &net.sw {
                if r0.contains(&s.domain()) {
                    prop_assert_eq!(s.reachable_domains(), &r0);
                }
            }
        }
    }
}
