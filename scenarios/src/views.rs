//! Text views of a running fabric, modelled on Brocade FOS output (`switchshow`,
//! `fabricshow`, `nsshow`, `zoneshow`, `portstatsshow`) plus fcsim's own node and port
//! listings. Pure formatting of `fcsim.v1` responses.

use std::fmt::Write;

use fcsim_proto::v1 as pb;

pub fn nodes(nodes: &[pb::NodeInfo]) -> String {
    let mut s = format!(
        "{:<12} {:<8} {:<10} {:<22} {:<6} {}\n",
        "Node", "Kind", "Site", "Address", "Alive", "Pid"
    );
    s.push_str(&"=".repeat(66));
    s.push('\n');
    for n in nodes {
        let pid = if n.pid == 0 {
            "-".to_string()
        } else {
            n.pid.to_string()
        };
        let _ = writeln!(
            s,
            "{:<12} {:<8} {:<10} {:<22} {:<6} {}",
            n.name, n.kind, n.site, n.address, n.alive, pid
        );
    }
    s
}

fn port_rows(s: &mut String, ports: &[pb::PortInfo]) {
    let _ = writeln!(s, "Index Port Address State     Type Peer         WWPN");
    s.push_str(&"=".repeat(72));
    s.push('\n');
    for p in ports {
        let addr = if p.fc_id.is_empty() {
            "------".to_string()
        } else {
            p.fc_id.clone()
        };
        let _ = writeln!(
            s,
            "{:>5} {:>4} {:<7} {:<9} {:<4} {:<12} {}",
            p.port, p.port, addr, p.state, p.port_type, p.peer, p.wwpn
        );
    }
}

pub fn switchshow(r: &pb::SwitchShowResponse) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "switchName:\t{}", r.name);
    let _ = writeln!(s, "switchState:\t{}", r.state);
    let _ = writeln!(
        s,
        "switchRole:\t{}",
        if r.principal {
            "Principal"
        } else {
            "Subordinate"
        }
    );
    let _ = writeln!(s, "switchDomain:\t{}", r.domain);
    let _ = writeln!(s, "switchId:\tfffc{:02x}", r.domain);
    let _ = writeln!(s, "switchWwn:\t{}", r.wwn);
    s.push('\n');
    port_rows(&mut s, &r.ports);
    s
}

pub fn fabricshow(r: &pb::FabricShowResponse) -> String {
    let mut s = format!(
        "{:<10}{:<25}{:<12}{}\n",
        "Domain", "Worldwide Name", "Name", "State"
    );
    s.push_str(&"-".repeat(60));
    s.push('\n');
    for sw in &r.switches {
        let role = if sw.principal { ">" } else { " " };
        let state = if sw.reachable {
            "reachable"
        } else {
            "unreachable"
        };
        let _ = writeln!(
            s,
            "{:>3}{}      {:<25}{:<12}{}",
            sw.domain, role, sw.wwn, sw.name, state
        );
    }
    let _ = writeln!(
        s,
        "\nThe Fabric has {} switches (> marks the principal)",
        r.switches.len()
    );
    s
}

pub fn nsshow(r: &pb::NsShowResponse) -> String {
    let mut s =
        String::from("{\n Type Pid    COS     PortName                NodeName                 \n");
    for e in &r.entries {
        let _ = writeln!(s, " N    {};      3;{};{};", e.fc_id, e.wwpn, e.wwnn);
        let _ = writeln!(s, "    FC4s: {}", e.fc4_types.join(" "));
        if !e.features.is_empty() {
            let _ = writeln!(s, "    Device type: {}", e.features.join(" + "));
        }
        if !e.symbolic_name.is_empty() {
            let _ = writeln!(
                s,
                "    PortSymb: [{}] \"{}\"",
                e.symbolic_name.len(),
                e.symbolic_name
            );
        }
        let _ = writeln!(s, "    Switch: domain {} port {}", e.domain, e.switch_port);
    }
    let _ = writeln!(
        s,
        "The Local Name Server has {} entries }}",
        r.entries.len()
    );
    s
}

pub fn zoneshow(r: &pb::ZoneShowResponse) -> String {
    let mut s = String::from("Defined configuration:\n");
    for z in &r.zones {
        let _ = writeln!(s, " zone:\t{}\t{}", z.name, z.members.join("; "));
    }
    s.push_str("\nEffective configuration:\n");
    if r.active_cfg.is_empty() {
        s.push_str(" no configuration in effect (default zone: all access)\n");
    } else {
        let _ = writeln!(s, " cfg:\t{}", r.active_cfg);
    }
    let _ = writeln!(s, " generation:\t{}", r.generation);
    s
}

pub fn portstatsshow(ports: &[pb::PortInfo]) -> String {
    let mut s = format!(
        "{:>4} {:<10} {:>10} {:>10} {:>12} {:>12} {:>9} {:>9} {:>9}\n",
        "Port",
        "State",
        "stat_ftx",
        "stat_frx",
        "stat_wtx",
        "stat_wrx",
        "discards",
        "zone_drp",
        "crc_err"
    );
    s.push_str(&"=".repeat(92));
    s.push('\n');
    for p in ports {
        let c = p.counters.unwrap_or_default();
        let _ = writeln!(
            s,
            "{:>4} {:<10} {:>10} {:>10} {:>12} {:>12} {:>9} {:>9} {:>9}",
            p.port,
            p.state,
            c.frames_out,
            c.frames_in,
            c.bytes_out,
            c.bytes_in,
            c.discards,
            c.zoning_drops,
            p.crc_errors
        );
    }
    s
}

pub fn routeshow(r: &pb::RouteShowResponse) -> String {
    let mut s = format!(
        "{:<8} {:<8} {}\n",
        "Domain", "Cost", "Out ports (neighbour domain)"
    );
    s.push_str(&"=".repeat(50));
    s.push('\n');
    for rt in &r.routes {
        let hops: Vec<String> = rt
            .next_hops
            .iter()
            .map(|h| format!("{} ({})", h.port, h.neighbor_domain))
            .collect();
        let _ = writeln!(
            s,
            "{:<8} {:<8} {}",
            rt.dest_domain,
            rt.cost,
            hops.join(", ")
        );
    }
    s
}

pub fn ports(r: &pb::ListPortsResponse) -> String {
    let mut s = format!("{} ({})\n", r.node, r.kind);
    port_rows(&mut s, &r.ports);
    for p in &r.ports {
        if p.rscn_received > 0 || !p.ns_view.is_empty() || !p.logged_in.is_empty() {
            let _ = writeln!(s, "port {}: {} RSCNs received", p.port, p.rscn_received);
            for e in &p.ns_view {
                let _ = writeln!(s, "  sees {} {}", e.fc_id, e.wwpn);
            }
            for l in &p.logged_in {
                let _ = writeln!(s, "  logged in to {l}");
            }
        }
    }
    s
}

/// `fcsim topo`: nodes with their names and domains, and cables with their modelled
/// one-way latency and rate.
pub fn topology(s: &crate::Scenario) -> String {
    use fcsim_fabric::runtime::linkmodel::LinkModel;
    let t = &s.topology;
    let mut out = format!(
        "{}: {} sites, {} nodes, {} cables\n\n",
        s.name,
        t.sites.len(),
        t.nodes().count(),
        t.links.len()
    );
    let _ = writeln!(
        out,
        "{:<10} {:<7} {:<10} {:<7} {}",
        "Node", "Kind", "Site", "Domain", "WWNN"
    );
    for n in t.nodes() {
        let domain = t
            .switch_domain(n.name)
            .map(|d| d.to_string())
            .unwrap_or_else(|| "-".into());
        let wwnn = t
            .node_wwnn(n.name)
            .map(|w| w.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<10} {:<7} {:<10} {:<7} {}",
            n.name,
            n.kind.as_str(),
            n.site,
            domain,
            wwnn
        );
    }
    let _ = writeln!(
        out,
        "\n{:<10} {:<10} {:>8} {:>5} {:>12}",
        "A", "B", "km", "GFC", "latency"
    );
    for l in &t.links {
        let m = LinkModel::new(l.km, l.gfc);
        let us = m.latency().as_nanos() as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{:<10} {:<10} {:>8} {:>5} {:>10.1}µs",
            l.a.to_string(),
            l.b.to_string(),
            l.km,
            l.gfc,
            us
        );
    }
    out
}
