//! Values a topology may leave out, derived deterministically: the same file always
//! gives the same domain IDs and names, and all of them are distinct.
//!
//! - **Domain IDs**: switches without `domain`, taken in name order (byte-wise string
//!   order), get the lowest domain in 1–239 not fixed by the file or already handed out.
//! - **Switch WWN** (Brocade style, NAA 1): `10:00:00:05:1e:ss:ss:ss`, `ss` = the
//!   switch's index in `switches` (file order) + 1.
//! - **Switch port WWPN** (NAA 2): `20:pp:00:05:1e:ss:ss:ss`, `pp` = port index.
//!   Never written in the file; see [`crate::format::Topology::port_wwpn`].
//! - **End nodes** (NAA 5, `Wwn::naa5(oui, serial)`): OUI `00:60:e8` for arrays,
//!   `00:00:c9` for hosts, `00:50:76` for tapes, `00:05:9b` for relays; serial = `(index + 1) << 12 | slot`,
//!   where `index` is the node's position in its list (file order), slot 0 is the WWNN
//!   and slot `p + 1` the WWPN of port `p`.
//!
//! - **Virtualization engine** of an intelligent switch (NAA 5 under the switch OUI):
//!   serial `0x8_0000_0000 | (index + 1) << 12 | slot`, as for end nodes.
//!
//! A name given in the file is kept; validation rejects one that collides with a
//! derived name.

use fcsim_fabric::{Wwn, Wwnn, Wwpn};

use crate::format::{NodeKind, Topology};

/// OUI for derived array names (Hitachi).
pub const ARRAY_OUI: u32 = 0x00_60_e8;
/// OUI for derived host names (Emulex).
pub const HOST_OUI: u32 = 0x00_00_c9;
/// OUI for derived tape names (IBM).
pub const TAPE_OUI: u32 = 0x00_50_76;
/// OUI for derived relay names (fcsim's own relay devices, under Cisco's OUI as
/// storage-network appliances often are).
pub const RELAY_OUI: u32 = 0x00_05_9b;
/// Brocade's OUI, used in derived switch names.
const SWITCH_OUI: u64 = 0x00_05_1e;

/// Derived switch WWN for the switch at `index` in `switches`.
pub fn switch_wwn(index: usize) -> Wwnn {
    Wwnn(Wwn((0x10u64 << 56)
        | (SWITCH_OUI << 24)
        | (index as u64 + 1) & 0xff_ffff))
}

/// WWPN of port `port` of the switch at `index` in `switches`.
pub fn switch_port_wwpn(index: usize, port: u32) -> Wwpn {
    Wwpn(Wwn((0x20u64 << 56)
        | (u64::from(port & 0xff) << 48)
        | (SWITCH_OUI << 24)
        | (index as u64 + 1) & 0xff_ffff))
}

fn oui(kind: NodeKind) -> u32 {
    match kind {
        NodeKind::Array => ARRAY_OUI,
        NodeKind::Host => HOST_OUI,
        NodeKind::Tape => TAPE_OUI,
        NodeKind::Relay => RELAY_OUI,
        NodeKind::Switch => 0,
    }
}

/// WWNN of the virtualization engine of the switch at `index` in `switches` (NAA 5
/// under the switch vendor's OUI, serial `0x8_0000_0000 | (index + 1) << 12`).
pub fn engine_wwnn(index: usize) -> Wwnn {
    Wwnn(Wwn::naa5(
        SWITCH_OUI as u32,
        0x8_0000_0000 | ((index as u64 + 1) << 12),
    ))
}

/// WWPN of port `port` of that engine (slot `port + 1`).
pub fn engine_wwpn(index: usize, port: u32) -> Wwpn {
    Wwpn(Wwn::naa5(
        SWITCH_OUI as u32,
        0x8_0000_0000 | ((index as u64 + 1) << 12) | (u64::from(port) + 1),
    ))
}

/// Derived WWNN of the end node at `index` of its list.
pub fn end_node_wwnn(kind: NodeKind, index: usize) -> Wwnn {
    Wwnn(Wwn::naa5(oui(kind), (index as u64 + 1) << 12))
}

/// Derived WWPN of port `port` of the end node at `index` of its list.
pub fn end_node_wwpn(kind: NodeKind, index: usize, port: u32) -> Wwpn {
    Wwpn(Wwn::naa5(
        oui(kind),
        ((index as u64 + 1) << 12) | (u64::from(port) + 1),
    ))
}

/// Assigns domains in name order: the lowest free domain for each switch without one.
/// Returns `(switch index, domain)` for the switches that got one; stops when 1–239 is
/// exhausted (validation rejects more than 239 switches first).
pub fn assign_domains(topology: &Topology) -> Vec<(usize, u32)> {
    let mut used: std::collections::BTreeSet<u32> =
        topology.switches.iter().filter_map(|s| s.domain).collect();
    let mut missing: Vec<usize> = (0..topology.switches.len())
        .filter(|&i| topology.switches[i].domain.is_none())
        .collect();
    missing.sort_by(|&a, &b| topology.switches[a].name.cmp(&topology.switches[b].name));
    let mut out = Vec::new();
    let mut next = 1u32;
    for i in missing {
        while used.contains(&next) {
            next += 1;
        }
        if next > 239 {
            break;
        }
        used.insert(next);
        out.push((i, next));
    }
    out
}

/// Fills every absent domain, WWN and port-WWPN list. Call on a validated topology.
pub fn fill(topology: &mut Topology) {
    for (i, d) in assign_domains(topology) {
        topology.switches[i].domain = Some(d);
    }
    for (i, s) in topology.switches.iter_mut().enumerate() {
        s.wwn.get_or_insert(switch_wwn(i));
    }
    macro_rules! fill_end {
        ($list:expr, $kind:expr) => {
            for (i, n) in $list.iter_mut().enumerate() {
                n.wwn.get_or_insert(end_node_wwnn($kind, i));
                let ports = n.ports;
                n.port_wwpns.get_or_insert_with(|| {
                    (0..ports).map(|p| end_node_wwpn($kind, i, p)).collect()
                });
            }
        };
    }
    fill_end!(topology.arrays, NodeKind::Array);
    fill_end!(topology.hosts, NodeKind::Host);
    fill_end!(topology.tapes, NodeKind::Tape);
    fill_end!(topology.relays, NodeKind::Relay);
}
