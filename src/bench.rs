//! `fcsim bench fabric`: a scale benchmark (DESIGN's "239 switches and 10,000 N_Ports").
//!
//! Three numbers, each measured honestly and never asserted on:
//!
//! 1. **Convergence.** A generated scenario (a ring of switches with chords, one host
//!    per switch holding that switch's share of the N_Ports) runs in the deterministic
//!    simulation. Wall time is measured from the call to the moment the orchestrator
//!    logs "fabric converged" (through a timeline observer); fabric time is that
//!    entry's timestamp.
//! 2. **Name-server query rate.** The sans-IO `NameServer` filled with every N_Port
//!    (as a switch holds them once the records have been replicated), queried with
//!    `GID_FT` and `GID_PN` under an active `ZoneDb` of 1,000 zones of 10 members.
//! 3. **Reroute.** After setup an ISL is cut, then `route_path` checks follow at a
//!    fixed interval; the reroute time is from the cut's timeline entry to the first
//!    passing check (fabric time from the report, wall time from the observer). The
//!    checks before it fail by design and are not errors of the benchmark.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fcsim_fabric::nameserver::{DomainRecord, Entry, FC4_TYPE_FCP, NameServer, QueryScope};
use fcsim_fabric::zoning::{ZoneDb, ZoneMember};
use fcsim_fabric::{DomainId, FcId, Wwn, Wwnn, Wwpn};
use fcsim_scenarios::{
    Check, FabricState, HostSpec, LinkSpec, PortRef, RunOptions, Scenario, SimDuration, Site, Step,
    SwitchSpec, TimedStep, TimelineEntry, Topology, WaitUntil, ZoneSpec,
};
use serde::Serialize;

/// Options of `fcsim bench fabric`.
#[derive(Debug, Clone)]
pub struct FabricBench {
    pub switches: u32,
    pub nports: u32,
    pub ports_per_node: u32,
    /// N_Ports per zone; 0: no zoning.
    pub zone_size: u32,
    pub json: Option<PathBuf>,
    pub seed: u64,
}

/// When the ISL is cut, after setup.
const CUT_AT_US: u64 = 1_000;
/// Interval of the `route_path` checks after the cut.
const CHECK_EVERY_US: u64 = 10;
/// How many checks follow the cut.
const CHECKS: u64 = 100;
/// Zones of the name-server benchmark, and members per zone.
const NS_ZONES: usize = 1_000;
const NS_ZONE_MEMBERS: usize = 10;

/// The measured results (also the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct FabricBenchResult {
    pub switches: u32,
    pub isls: usize,
    pub hosts: usize,
    pub nports: u32,
    pub seed: u64,
    /// Wall time from the start of the run until the fabric converged, seconds.
    pub converge_wall_s: f64,
    /// Fabric (simulated) time from the start until the fabric converged, µs.
    pub converge_fabric_us: u64,
    /// Wall time of the whole simulated run (convergence, cut, checks), seconds.
    pub run_wall_s: f64,
    pub ns_entries: usize,
    pub ns_zones: usize,
    pub ns_gid_ft_per_s: f64,
    pub ns_gid_pn_per_s: f64,
    /// The cut ISL (`switch/port`) and the checked route.
    pub cut: String,
    pub checked_route: Vec<String>,
    /// Fabric time from the cut to the first passing `route_path` check, µs (`None`:
    /// no check passed).
    pub reroute_fabric_us: Option<u64>,
    /// Wall time from the cut to the first passing check, seconds.
    pub reroute_wall_s: Option<f64>,
    /// Step errors of the run (the failed checks before the reroute are not errors).
    pub errors: Vec<String>,
}

/// The generated fabric: a scenario plus what the benchmark needs to know about it.
struct Generated {
    scenario: Scenario,
    isls: usize,
    hosts: usize,
    cut: PortRef,
    route: Vec<String>,
}

fn switch_name(i: usize) -> String {
    format!("sw{:03}", i + 1)
}

/// ISLs of a ring of `n` switches with chords `i — i+k`, `k ≈ √n`: every switch has 2
/// (ring only) to 4 ISLs.
fn isl_pairs(n: usize) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    match n {
        0 | 1 => {}
        2 => pairs.push((0, 1)),
        _ => {
            pairs.extend((0..n).map(|i| (i, (i + 1) % n)));
            let k = n.isqrt();
            if k >= 2 && n > 2 * k {
                pairs.extend((0..n).map(|i| (i, (i + k) % n)));
            }
        }
    }
    pairs
}

/// A shortest path from `from` to `to` over `adj` (all ISLs cost the same), taking at
/// each hop the lowest-numbered neighbour one step closer that is not `avoid` when
/// there is a choice: so the checked route differs from the one before the cut.
fn shortest_path(
    adj: &BTreeMap<usize, BTreeSet<usize>>,
    from: usize,
    to: usize,
    avoid: usize,
) -> Option<Vec<usize>> {
    let mut dist = BTreeMap::from([(to, 0usize)]);
    let mut q = VecDeque::from([to]);
    while let Some(n) = q.pop_front() {
        for m in adj.get(&n).into_iter().flatten() {
            if !dist.contains_key(m) {
                dist.insert(*m, dist[&n] + 1);
                q.push_back(*m);
            }
        }
    }
    let mut path = vec![from];
    let mut here = from;
    while here != to {
        let d = *dist.get(&here)?;
        let closer: Vec<usize> = adj[&here]
            .iter()
            .copied()
            .filter(|m| dist.get(m) == Some(&(d - 1)))
            .collect();
        here = closer
            .iter()
            .copied()
            .find(|m| *m != avoid)
            .or_else(|| closer.first().copied())?;
        path.push(here);
    }
    Some(path)
}

/// Builds the scenario programmatically, then round-trips it through JSON and
/// `fcsim_scenarios::parse` so that validation runs and derived values are filled in.
fn generate(b: &FabricBench) -> anyhow::Result<Generated> {
    if !(1..=239).contains(&b.switches) {
        bail!("--switches must be 1–239, not {}", b.switches);
    }
    if !(1..=256).contains(&b.ports_per_node) {
        bail!("--ports-per-node must be 1–256, not {}", b.ports_per_node);
    }
    let n = b.switches as usize;
    let pairs = isl_pairs(n);
    let mut next_port = vec![0u32; n];
    let mut links = Vec::new();
    let mut isl_at: BTreeMap<(usize, usize), PortRef> = BTreeMap::new();
    for &(x, y) in &pairs {
        let a = PortRef::new(switch_name(x), next_port[x]);
        let bb = PortRef::new(switch_name(y), next_port[y]);
        next_port[x] += 1;
        next_port[y] += 1;
        isl_at.insert((x, y), a.clone());
        links.push(LinkSpec {
            a,
            b: bb,
            km: 0.0,
            gfc: 32,
        });
    }
    // N_Ports spread evenly over the switches; each switch's share split evenly over
    // as few hosts as `ports_per_node` allows.
    let base = b.nports / b.switches;
    let extra = b.nports % b.switches;
    let mut hosts = Vec::new();
    for (i, np) in next_port.iter_mut().enumerate() {
        let share = base + u32::from(u32::try_from(i)? < extra);
        if share == 0 {
            continue;
        }
        let count = share.div_ceil(b.ports_per_node);
        for h in 0..count {
            let ports = share / count + u32::from(h < share % count);
            let name = if count == 1 {
                format!("h{:03}", i + 1)
            } else {
                format!("h{:03}_{}", i + 1, h + 1)
            };
            for p in 0..ports {
                links.push(LinkSpec {
                    a: PortRef::new(&name, p),
                    b: PortRef::new(switch_name(i), *np),
                    km: 0.0,
                    gfc: 32,
                });
                *np += 1;
            }
            hosts.push(HostSpec {
                name,
                site: "dc".into(),
                ports,
                wwn: None,
                port_wwpns: None,
            });
        }
    }
    if let Some(i) = next_port.iter().position(|p| *p > 256) {
        bail!(
            "{} would need {} ports (at most 256): use more switches or fewer N_Ports",
            switch_name(i),
            next_port[i]
        );
    }
    let switches = (0..n)
        .map(|i| SwitchSpec {
            name: switch_name(i),
            site: "dc".into(),
            domain: Some(u32::try_from(i + 1).unwrap_or(1)),
            ports: next_port[i].max(1),
            intelligent: false,
            virtualization: None,
            wwn: None,
        })
        .collect();
    // Cut the ring ISL sw001—sw002 and check the route from sw001's other ring
    // neighbour to sw002, which went through the cut before.
    let (cut, route) = if pairs.is_empty() {
        (None, Vec::new())
    } else {
        let (x, y) = pairs[0];
        let mut adj: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for &(p, q) in pairs.iter().skip(1) {
            adj.entry(p).or_default().insert(q);
            adj.entry(q).or_default().insert(p);
        }
        let from = if n >= 3 { n - 1 } else { x };
        let path = shortest_path(&adj, from, y, x).unwrap_or_default();
        (
            Some(isl_at[&(x, y)].clone()),
            path.into_iter().map(switch_name).collect::<Vec<_>>(),
        )
    };
    let mut steps = Vec::new();
    if let Some(cut) = &cut {
        steps.push(TimedStep {
            at: SimDuration::from_micros(CUT_AT_US),
            step: Step::LinkDown { port: cut.clone() },
        });
        if route.len() >= 2 {
            for k in 1..=CHECKS {
                steps.push(TimedStep {
                    at: SimDuration::from_micros(CUT_AT_US + k * CHECK_EVERY_US),
                    step: Step::Check(Check::RoutePath {
                        from: route[0].clone(),
                        to: route[route.len() - 1].clone(),
                        path: route.clone(),
                    }),
                });
            }
        }
    }
    let isls = pairs.len();
    let host_count = hosts.len();
    let fabric_zones = zones(&hosts, b.zone_size);
    let scenario = Scenario {
        name: format!("bench-fabric-{}sw-{}np", b.switches, b.nports),
        description: Some("generated by `fcsim bench fabric`".into()),
        seed: b.seed,
        tick: SimDuration::from_micros(10),
        topology: Topology {
            sites: vec![Site {
                name: "dc".into(),
                zone: None,
            }],
            switches,
            arrays: Vec::new(),
            hosts,
            tapes: Vec::new(),
            relays: Vec::new(),
            zones: fabric_zones,
            links,
            zone_cfg: "cfg".into(),
            virtual_lus: Vec::new(),
        },
        setup: vec![Step::Wait {
            for_duration: None,
            until: Some(WaitUntil::Fabric {
                fabric: FabricState::Converged,
            }),
        }],
        steps,
    };
    let text = serde_json::to_string(&scenario)?;
    let scenario = fcsim_scenarios::parse(&text, "<bench fabric>")
        .map_err(|d| anyhow::anyhow!("generated scenario is invalid:\n{d}"))?;
    Ok(Generated {
        scenario,
        isls,
        hosts: host_count,
        cut: cut.unwrap_or_else(|| PortRef::new(switch_name(0), 0)),
        route,
    })
}

/// Queries per second of `f`, run for at least `min` and at least `min_calls` times.
fn rate(min: Duration, min_calls: u32, mut f: impl FnMut(u32)) -> f64 {
    let start = Instant::now();
    let mut calls = 0u32;
    while calls < min_calls || start.elapsed() < min {
        f(calls);
        calls += 1;
    }
    f64::from(calls) / start.elapsed().as_secs_f64()
}

/// The name server of domain 1 holding every N_Port of the fabric, and the WWPNs.
fn filled_name_server(switches: u32, nports: u32) -> anyhow::Result<(NameServer, Vec<Entry>)> {
    let local = DomainId::new(1)?;
    let mut ns = NameServer::new(local);
    let mut all = Vec::new();
    let base = nports / switches;
    let extra = nports % switches;
    for d in 1..=switches {
        let domain = DomainId::new(d)?;
        let share = base + u32::from(d - 1 < extra);
        let mut entries = Vec::new();
        for k in 0..share {
            let fc_id = FcId::from_parts(
                u8::try_from(d)?,
                u8::try_from(k % 256)?,
                u8::try_from(k / 256)?,
            );
            let serial = u64::from(d) << 16 | u64::from(k);
            let wwpn = Wwpn(Wwn::naa5(0x001b32, serial));
            let wwnn = Wwnn(Wwn::naa5(0x001b32, u64::from(d) << 16 | 0xffff));
            let mut e = Entry::new(fc_id, wwpn, wwnn, u8::try_from(k % 256)?);
            e.fc4_types.insert(FC4_TYPE_FCP);
            entries.push(e);
        }
        all.extend(entries.iter().cloned());
        if domain == local {
            for e in entries {
                ns.register_login(e.fc_id, e.wwpn, e.wwnn, e.switch_port)?;
                let _ = ns.rft_id(e.fc_id, [FC4_TYPE_FCP]);
            }
        } else {
            ns.apply_remote(DomainRecord {
                domain,
                version: 1,
                entries,
            });
        }
    }
    Ok((ns, all))
}

/// Zones of `size` N_Ports each, every zone's ports on different hosts where there are
/// enough: port `k` (in host order) joins zone `k mod zones`.
fn zones(hosts: &[HostSpec], size: u32) -> Vec<ZoneSpec> {
    let ports: Vec<PortRef> = hosts
        .iter()
        .flat_map(|h| (0..h.ports).map(|p| PortRef::new(&h.name, p)))
        .collect();
    if size == 0 || ports.is_empty() {
        return Vec::new();
    }
    let count = ports.len().div_ceil(size as usize);
    let mut zones: Vec<ZoneSpec> = (0..count)
        .map(|z| ZoneSpec {
            name: format!("z{z:05}"),
            members: Vec::new(),
        })
        .collect();
    for (k, p) in ports.into_iter().enumerate() {
        zones[k % count].members.push(p);
    }
    zones
}

/// GID_FT and GID_PN per second under 1,000 zones of 10 members.
fn name_server_rates(switches: u32, nports: u32) -> anyhow::Result<(usize, usize, f64, f64)> {
    let (ns, all) = filled_name_server(switches, nports)?;
    let mut zones = ZoneDb::new(DomainId::new(1)?);
    let mut names = Vec::new();
    for z in 0..NS_ZONES {
        let members: Vec<ZoneMember> = (0..NS_ZONE_MEMBERS)
            .map(|m| ZoneMember::Wwpn(all[(z * NS_ZONE_MEMBERS + m) % all.len()].wwpn))
            .collect();
        let name = format!("z{z:04}");
        zones.define_zone(&name, members)?;
        names.push(name);
    }
    zones.define_cfg("bench", names.iter())?;
    zones.activate("bench")?;
    let reachable: BTreeSet<DomainId> = (1..=switches)
        .map(DomainId::new)
        .collect::<Result<_, _>>()?;
    // Requesters spread over the fabric; a deterministic sequence of looked-up names.
    let pick = |i: u32| &all[(i as usize).wrapping_mul(7919) % all.len()];
    let min = Duration::from_millis(500);
    let mut sink = 0usize;
    let gid_ft = rate(min, 20, |i| {
        let scope = QueryScope {
            requester: pick(i).fc_id,
            visibility: &zones,
            reachable: &reachable,
        };
        sink += ns
            .gid_ft(&scope, FC4_TYPE_FCP)
            .accepted()
            .map_or(0, |v| v.len());
    });
    let gid_pn = rate(min, 20, |i| {
        let scope = QueryScope {
            requester: pick(i).fc_id,
            visibility: &zones,
            reachable: &reachable,
        };
        let target = pick(i.wrapping_mul(31).wrapping_add(1)).wwpn;
        sink += usize::from(ns.gid_pn(&scope, target).accepted().is_some());
    });
    std::hint::black_box(sink);
    Ok((all.len(), NS_ZONES, gid_ft, gid_pn))
}

fn find(
    t: &[(TimelineEntry, Duration)],
    p: impl Fn(&str) -> bool,
) -> Option<&(TimelineEntry, Duration)> {
    t.iter().find(|(e, _)| p(&e.text))
}

/// Runs the benchmark and prints the table (and writes JSON with `--json`).
pub fn fabric(b: &FabricBench) -> anyhow::Result<FabricBenchResult> {
    let g = generate(b)?;
    eprintln!(
        "bench: {} switches, {} ISLs, {} hosts, {} N_Ports; running the simulation…",
        b.switches, g.isls, g.hosts, b.nports
    );
    let stamps: Arc<Mutex<Vec<(TimelineEntry, Duration)>>> = Arc::default();
    let start = Instant::now();
    let sink = stamps.clone();
    let observer: fcsim_scenarios::TimelineObserver = Box::new(move |e: &TimelineEntry| {
        if let Ok(mut v) = sink.lock() {
            v.push((e.clone(), start.elapsed()));
        }
    });
    let report = fcsim_scenarios::run_scenario_observed(
        &g.scenario,
        &RunOptions {
            seed: Some(b.seed),
            ..Default::default()
        },
        Some(observer),
    )
    .context("simulated run")?;
    let run_wall = start.elapsed();
    let stamps = stamps.lock().map(|v| v.clone()).unwrap_or_default();
    let converged = find(&stamps, |t| t.starts_with("fabric converged"))
        .with_context(|| format!("the fabric did not converge: {:?}", report.errors))?;
    let cut_text = format!("link down at {}", g.cut);
    let cut = find(&stamps, |t| t == cut_text);
    let first_pass = find(&stamps, |t| t.starts_with("check route_path passed"));
    let (reroute_fabric_us, reroute_wall_s) = match (cut, first_pass) {
        (Some(c), Some(p)) => (
            Some(p.0.at_us.saturating_sub(c.0.at_us)),
            Some(p.1.saturating_sub(c.1).as_secs_f64()),
        ),
        _ => (None, None),
    };
    eprintln!("bench: simulation done in {run_wall:.1?}; timing the name server…");
    let (ns_entries, ns_zones, gid_ft, gid_pn) = name_server_rates(b.switches, b.nports)?;
    let errors = report.errors.clone();
    Ok(FabricBenchResult {
        switches: b.switches,
        isls: g.isls,
        hosts: g.hosts,
        nports: b.nports,
        seed: b.seed,
        converge_wall_s: converged.1.as_secs_f64(),
        converge_fabric_us: converged.0.at_us,
        run_wall_s: run_wall.as_secs_f64(),
        ns_entries,
        ns_zones,
        ns_gid_ft_per_s: gid_ft,
        ns_gid_pn_per_s: gid_pn,
        cut: g.cut.to_string(),
        checked_route: g.route,
        reroute_fabric_us,
        reroute_wall_s,
        errors,
    })
}

fn fmt_us(us: u64) -> String {
    fcsim_fabric::runtime::clock::fmt_time(Duration::from_micros(us))
}

impl FabricBenchResult {
    /// The table printed to stdout.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let size = format!(
            "{} sw / {} ISL / {} N_Ports",
            self.switches, self.isls, self.nports
        );
        let opt = |v: Option<String>| v.unwrap_or_else(|| "n/a".into());
        let rows = [
            ("size", size),
            ("converge, wall", format!("{:.2} s", self.converge_wall_s)),
            ("converge, fabric", fmt_us(self.converge_fabric_us)),
            (
                "NS GID_FT",
                format!(
                    "{:.0} q/s ({} entries, {} zones)",
                    self.ns_gid_ft_per_s, self.ns_entries, self.ns_zones
                ),
            ),
            ("NS GID_PN", format!("{:.0} q/s", self.ns_gid_pn_per_s)),
            ("reroute, fabric", opt(self.reroute_fabric_us.map(fmt_us))),
            (
                "reroute, wall",
                opt(self.reroute_wall_s.map(|w| format!("{:.3} s", w))),
            ),
            ("whole run, wall", format!("{:.2} s", self.run_wall_s)),
        ];
        let _ = writeln!(s, "{:<18} value", "metric");
        let _ = writeln!(s, "{}", "-".repeat(60));
        for (k, v) in rows {
            let _ = writeln!(s, "{k:<18} {v}");
        }
        let _ = writeln!(
            s,
            "(cut {}; checked route {})",
            self.cut,
            self.checked_route.join(" → ")
        );
        for e in &self.errors {
            let _ = writeln!(s, "error: {e}");
        }
        s
    }
}
