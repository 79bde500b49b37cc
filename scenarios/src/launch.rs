//! From a checked scenario to running nodes: the per-node specs (`NodeSpec`), the
//! addresses they listen on in each mode, and the function that runs one node.
//!
//! The same `NodeSpec` starts a node as a crash domain of the simulation, as a thread
//! with its own runtime (embedded live) or as an OS process (`fcsim node --spec FILE`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fcsim_devices::array::{ArrayConfig, ArrayLu, run_array};
use fcsim_devices::host::{HostConfig, run_host};
use fcsim_devices::relaynode::{RelayNodeConfig, run_relay};
use fcsim_devices::tape::TapeConfig;
use fcsim_devices::tapenode::{TapeNodeConfig, run_tape};
use fcsim_fabric::endnode::{EndNodeConfig, run_end_node};
use fcsim_fabric::nport::Role;
use fcsim_fabric::runtime::{FabricClock, Net, PeerSpec};
use fcsim_fabric::switch::{SwitchConfig, ZoningConfig, run_switch};
use fcsim_fabric::zoning::ZoneMember;
use fcsim_fabric::{DomainId, Wwn, Wwpn};
use fcsim_switch::tm::{Backing, Extent, VirtualLu, virtual_lu_naa};
use fcsim_switch::{EngineConfig, KnownDevice, KnownLu, run_engine};
use serde::{Deserialize, Serialize};

use crate::format::{NodeKind, PortRef, Scenario, Topology, ZoneSpec};

/// The gRPC port every node listens on in simulation (its address is `name:7000`).
pub const SIM_PORT: u16 = 7000;

/// One node, ready to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Node name from the topology.
    pub name: String,
    /// Site the node stands in.
    pub site: String,
    /// The node's gRPC address as other nodes and the orchestrator reach it.
    pub address: String,
    /// Fabric start as nanoseconds since the Unix epoch (wall-clock modes; 0 in simulation).
    pub epoch_unix_ns: u64,
    /// What the node is.
    pub role: NodeRole,
}

/// The node's kind and its kind-specific configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Switch(SwitchConfig),
    /// An end node with nothing above FC-2 (tapes until their node lands).
    EndNode(EndNodeConfig),
    Host(HostConfig),
    Array(ArrayConfig),
    Tape(TapeNodeConfig),
    /// A relay device (seed 002).
    Relay(RelayNodeConfig),
    /// The virtualization engine of an intelligent switch.
    Engine(EngineConfig),
}

impl NodeSpec {
    pub fn kind(&self) -> &str {
        match &self.role {
            NodeRole::Switch(_) => "switch",
            NodeRole::EndNode(c) => &c.kind,
            NodeRole::Host(_) => "host",
            NodeRole::Array(_) => "array",
            NodeRole::Tape(_) => "tape",
            NodeRole::Relay(_) => "relay",
            NodeRole::Engine(_) => "virtualization",
        }
    }

    /// Runs the node on `net` until its task is dropped.
    pub async fn run(self, net: Net) {
        let clock = match net {
            Net::Sim => FabricClock::Sim,
            Net::Tokio => FabricClock::Wall {
                epoch: UNIX_EPOCH + Duration::from_nanos(self.epoch_unix_ns),
            },
        };
        match self.role {
            NodeRole::Switch(cfg) => {
                let _chassis = (net == Net::Tokio).then(|| chassis::enter(&self.address));
                run_switch(cfg, net, clock).await;
            }
            NodeRole::EndNode(cfg) => {
                let name = cfg.name.clone();
                if let Err(e) = run_end_node(cfg, net, clock).await {
                    tracing::error!(node = %name, "end node stopped: {e}");
                }
            }
            NodeRole::Host(cfg) => {
                let name = cfg.node.name.clone();
                if let Err(e) = run_host(cfg, net, clock).await {
                    tracing::error!(node = %name, "host stopped: {e}");
                }
            }
            NodeRole::Array(cfg) => {
                let name = cfg.node.name.clone();
                if let Err(e) = run_array(cfg, net, clock).await {
                    tracing::error!(node = %name, "array stopped: {e}");
                }
            }
            NodeRole::Tape(cfg) => {
                let name = cfg.node.name.clone();
                if let Err(e) = run_tape(cfg, net, clock).await {
                    tracing::error!(node = %name, "tape stopped: {e}");
                }
            }
            NodeRole::Relay(cfg) => {
                let name = cfg.node.name.clone();
                if let Err(e) = run_relay(cfg, net, clock).await {
                    tracing::error!(node = %name, "relay stopped: {e}");
                }
            }
            NodeRole::Engine(cfg) => {
                let name = cfg.node.name.clone();
                let switch = cfg.node.peers.values().next().map(|p| p.addr.clone());
                let engine = async move {
                    if let Err(e) = run_engine(cfg, net, clock).await {
                        tracing::error!(node = %name, "virtualization engine stopped: {e}");
                    }
                };
                let chassis = match (net, &switch) {
                    (Net::Tokio, Some(addr)) => chassis::runtime_of(addr).await,
                    _ => None,
                };
                match chassis {
                    // Live, with its switch in this process: the engine runs on the
                    // switch's runtime (one chassis, one thread), its task ending with
                    // this node (crash) or with the switch's runtime.
                    Some(rt) => {
                        let task = rt.spawn(engine);
                        let _stop = chassis::AbortOnDrop(task.abort_handle());
                        let _ = task.await;
                    }
                    None => engine.await,
                }
            }
        }
    }
}

/// Embedded live mode: an intelligent switch and its engine share one runtime.
///
/// A switch running live enters its runtime here under its address while it runs; an
/// engine started live in the same process looks its switch up and runs its whole
/// node (actor, ports, gRPC server) on that runtime, so frames between the two never
/// cross threads. In processes mode (or in simulation) nothing is found and every
/// node keeps its own runtime.
mod chassis {
    use std::collections::BTreeMap;
    use std::sync::{LazyLock, Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    use tokio::runtime::Handle;

    /// Live switch runtimes of this process by switch address.
    static SWITCHES: LazyLock<Mutex<BTreeMap<String, Handle>>> =
        LazyLock::new(|| Mutex::new(BTreeMap::new()));

    /// How long an engine waits for its switch to enter, when this process runs other
    /// switches live (embedded mode starts the switch thread first; this covers the
    /// race between the two threads' first steps).
    const WAIT: Duration = Duration::from_secs(2);

    fn switches() -> MutexGuard<'static, BTreeMap<String, Handle>> {
        SWITCHES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The switch at `address` is running on the current runtime until this is dropped.
    pub(super) struct Entered(String);

    impl Drop for Entered {
        fn drop(&mut self) {
            switches().remove(&self.0);
        }
    }

    pub(super) fn enter(address: &str) -> Option<Entered> {
        let rt = Handle::try_current().ok()?;
        switches().insert(address.to_string(), rt);
        Some(Entered(address.to_string()))
    }

    /// The runtime of the switch at `address`, if it runs live in this process. Waits
    /// up to [`WAIT`] for it only while other switches of this process are running.
    pub(super) async fn runtime_of(address: &str) -> Option<Handle> {
        let started = Instant::now();
        loop {
            {
                let s = switches();
                if let Some(rt) = s.get(address) {
                    return Some(rt.clone());
                }
                if s.is_empty() || started.elapsed() > WAIT {
                    return None;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Aborts a task when dropped.
    pub(super) struct AbortOnDrop(pub(super) tokio::task::AbortHandle);

    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
}

/// Where each node listens: simulated hosts by name, or loopback ports.
#[derive(Debug, Clone)]
pub enum Addressing {
    /// `name:7000` on the simulation's in-process network.
    Sim,
    /// `127.0.0.1:port`, ports chosen free by the operating system.
    Loopback,
}

/// Errors while planning the nodes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    #[error("no free loopback port for node {node}: {source}")]
    NoPort {
        node: String,
        source: std::io::Error,
    },
    #[error("zone {zone}: {detail}")]
    Zone { zone: String, detail: String },
}

fn free_loopback_port(node: &str) -> Result<u16, LaunchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| LaunchError::NoPort {
            node: node.to_string(),
            source,
        })
}

/// The zoning configuration a topology starts with (WWPN members for end-node ports,
/// domain,port members for switch ports). `None` when the topology has no zones.
pub fn zoning_config(
    s: &Scenario,
    cfg: &str,
    zones: &[ZoneSpec],
) -> Result<Option<ZoningConfig>, LaunchError> {
    if zones.is_empty() {
        return Ok(None);
    }
    let topo = &s.topology;
    let mut out = Vec::new();
    for z in zones {
        let mut members = Vec::new();
        for m in &z.members {
            let member = match topo.switch_domain(&m.node) {
                Some(d) => u8::try_from(m.port)
                    .ok()
                    .map(|p| ZoneMember::DomainPort(d, p)),
                None => topo.port_wwpn(m).map(ZoneMember::Wwpn),
            };
            members.push(member.ok_or_else(|| LaunchError::Zone {
                zone: z.name.clone(),
                detail: format!("member {m} is not a known port"),
            })?);
        }
        out.push((z.name.clone(), members));
    }
    Ok(Some(ZoningConfig {
        cfg: cfg.to_string(),
        zones: out,
    }))
}

/// The NAA identifier of LU `lun` of `array` (VPD page 83h): NAA 6-style registered name
/// under the array's OUI, derived from the array's position and the LUN so that the same
/// file always gives the same names, distinct from every port and node name.
pub fn lu_naa(t: &Topology, array: &str, lun: u32) -> Option<Wwn> {
    let index = t.arrays.iter().position(|a| a.name == array)?;
    t.arrays[index].lus.iter().find(|l| l.lun == lun)?;
    let serial = ((index as u64 + 1) << 24) | 0x80_0000 | u64::from(lun & 0x7F_FFFF);
    Some(Wwn::naa5(0x00_60_e8, serial))
}

/// The NAA of a tape drive's LU 0, under the tape vendor's OUI.
pub fn tape_naa(t: &Topology, tape: &str) -> Option<Wwn> {
    let index = t.tapes.iter().position(|x| x.name == tape)?;
    Some(Wwn::naa5(
        0x00_50_76,
        ((index as u64 + 1) << 24) | 0x40_0000,
    ))
}

/// The node name of an intelligent switch's virtualization engine.
pub fn engine_name(switch: &str) -> String {
    format!("{switch}.ve")
}

/// The NAA of virtual LU `switch:lun`.
pub fn virtual_naa(t: &Topology, switch: &str, lun: u32) -> Option<Wwn> {
    let index = t.switches.iter().position(|s| s.name == switch)?;
    t.virtual_lus
        .iter()
        .find(|v| v.switch == switch && v.lun == lun)?;
    Some(virtual_lu_naa(
        crate::derived::engine_wwnn(index),
        u16::try_from(lun).ok()?,
    ))
}

/// Every array LU and tape drive by its `node:lun` name and NAA: the hosts' aliases.
pub fn lu_aliases(t: &Topology) -> BTreeMap<String, Wwn> {
    let lus = t
        .arrays
        .iter()
        .flat_map(|a| a.lus.iter().map(move |l| (a.name.clone(), l.lun)))
        .filter_map(|(a, lun)| lu_naa(t, &a, lun).map(|n| (format!("{a}:{lun}"), n)));
    let tapes = t
        .tapes
        .iter()
        .filter_map(|x| tape_naa(t, &x.name).map(|n| (format!("{}:0", x.name), n)));
    let virtual_lus = t.virtual_lus.iter().filter_map(|v| {
        virtual_naa(t, &v.switch, v.lun).map(|n| (format!("{}:{}", v.switch, v.lun), n))
    });
    lus.chain(tapes).chain(virtual_lus).collect()
}

/// The configuration of the engine of intelligent switch `index`, its N_Ports cabled
/// to the switch's last ports.
fn engine_config(
    topo: &Topology,
    index: usize,
    listen: String,
    peers: BTreeMap<u32, PeerSpec>,
    data_dir: Option<&std::path::Path>,
) -> Option<EngineConfig> {
    let sw = &topo.switches[index];
    let v = topo.virtualization(&sw.name)?;
    let wwnn = crate::derived::engine_wwnn(index);
    let devices = topo
        .arrays
        .iter()
        .map(|a| KnownDevice {
            name: a.name.clone(),
            wwnn: topo.node_wwnn(&a.name).unwrap_or_default(),
            ports: a.port_wwpns.clone().unwrap_or_default(),
        })
        .collect();
    let real_lus = topo
        .arrays
        .iter()
        .flat_map(|a| a.lus.iter().map(move |l| (a, l)))
        .filter_map(|(a, l)| {
            Some(KnownLu {
                name: format!("{}:{}", a.name, l.lun),
                naa: lu_naa(topo, &a.name, l.lun)?,
                device: a.name.clone(),
                blocks: l.blocks,
                block_bytes: l.block_bytes,
            })
        })
        .collect();
    let lus = topo
        .virtual_lus
        .iter()
        .filter(|l| l.switch == sw.name)
        .filter_map(|l| {
            let lun = u16::try_from(l.lun).ok()?;
            Some(VirtualLu {
                lun,
                name: l.name.clone().unwrap_or_else(|| format!("v{lun}")),
                naa: virtual_lu_naa(wwnn, lun),
                block_bytes: topo.virtual_block_bytes(l),
                ack: l.ack,
                extents: l
                    .extents
                    .iter()
                    .map(|e| Extent {
                        start: 0,
                        blocks: e.blocks,
                        backing: match &e.lu {
                            Some(r) => Backing::External {
                                lu: lu_naa(topo, &r.node, r.lun).unwrap_or_default(),
                                start: e.start,
                            },
                            None => Backing::Internal,
                        },
                    })
                    .collect(),
            })
        })
        .collect();
    Some(EngineConfig {
        node: EndNodeConfig {
            name: engine_name(&sw.name),
            kind: "virtualization".to_string(),
            wwnn,
            port_wwpns: (0..v.ports)
                .map(|p| crate::derived::engine_wwpn(index, p))
                .collect(),
            role: Role::Both,
            listen,
            peers,
        },
        switch: sw.name.clone(),
        lus,
        auto_map: v.auto_map,
        mode: v.mode,
        cache_blocks: v.cache_blocks,
        devices,
        real_lus,
        data_dir: data_dir.map(std::path::Path::to_path_buf),
        aliases: lu_aliases(topo),
        overrides: v
            .overrides
            .iter()
            .map(|o| (o.array.clone(), o.function, o.can))
            .collect(),
    })
}

/// The WWPNs a LU's `hosts` masking list names (host names mean all their ports).
fn masking(t: &Topology, hosts: &[String]) -> Vec<Wwpn> {
    let mut out = Vec::new();
    for h in hosts {
        match h.parse::<PortRef>() {
            Ok(p) => out.extend(t.port_wwpn(&p)),
            Err(_) => {
                let ports = t.node(h).map_or(0, |n| n.ports);
                out.extend((0..ports).filter_map(|p| t.port_wwpn(&PortRef::new(h.clone(), p))));
            }
        }
    }
    out
}

/// An array's configuration from its topology entry.
fn array_config(
    topo: &Topology,
    node: EndNodeConfig,
    data_dir: Option<&std::path::Path>,
) -> ArrayConfig {
    let spec = topo.arrays.iter().find(|a| a.name == node.name);
    let lus = spec
        .map(|a| {
            a.lus
                .iter()
                .filter_map(|l| {
                    Some(ArrayLu {
                        lun: u16::try_from(l.lun).ok()?,
                        naa: lu_naa(topo, &a.name, l.lun)?,
                        blocks: l.blocks,
                        block_bytes: l.block_bytes,
                        hosts: masking(topo, &l.hosts),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let functions = spec
        .map(|a| {
            a.functions
                .iter()
                .filter_map(|f| serde_json::to_value(f).ok()?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ArrayConfig {
        node,
        lus,
        functions,
        write_through: spec.is_some_and(|a| a.write_through),
        clock_skew_us: spec.map_or(0, |a| a.clock_skew_us),
        recovery: spec
            .and_then(|a| a.recovery.as_ref())
            .map(recovery_settings)
            .unwrap_or_default(),
        data_dir: data_dir.map(std::path::Path::to_path_buf),
    }
}

/// An array's recovery-copy settings from its `recovery` block (seed 001).
fn recovery_settings(r: &crate::format::RecoverySpec) -> fcsim_devices::array::RecoverySettings {
    use fcsim_devices::copysvc::recovery::{
        Protection, RemoteConfig, SaveRow, SaveRowKind, UserConditions,
    };
    let row = |kind| SaveRow {
        kind,
        tracks: r.row_tracks,
        usable: true,
    };
    let mut save_rows = Vec::new();
    save_rows.extend((0..r.parity_rows).map(|_| row(SaveRowKind::Parity)));
    save_rows.extend((0..r.spare_rows).map(|_| row(SaveRowKind::Spare)));
    fcsim_devices::array::RecoverySettings {
        protection: match r.protection {
            crate::format::ProtectionSpec::SaveOld => Protection::SaveOld,
            crate::format::ProtectionSpec::HoldNew => Protection::HoldNew,
        },
        remote: RemoteConfig {
            logical_devices: r.logical_devices,
            disks: r.disks,
            cache_tracks: r.cache_tracks,
            save_rows,
        },
        conditions: Some(UserConditions {
            keep_raid5: r.keep_raid5,
            use_spares: r.use_spares,
            cache_threshold_tracks: r.cache_threshold_tracks.unwrap_or(r.cache_tracks),
        }),
    }
}

/// Plans made in this process (see `nvram_key`).
static NEXT_PLAN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Builds every node's spec. `data_dir` makes arrays keep their LUs in files there, and
/// non-volatile relays their logs (`<relay>.relaylog`).
pub fn plan(
    s: &Scenario,
    addressing: &Addressing,
    data_dir: Option<&std::path::Path>,
) -> Result<Vec<NodeSpec>, LaunchError> {
    let topo = &s.topology;
    let epoch_unix_ns = match addressing {
        Addressing::Sim => 0,
        Addressing::Loopback => u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        )
        .unwrap_or(0),
    };
    // Names this plan's relays' NVRAM images: a crash and restart of the same spec
    // finds its image, another run in this process (a parallel test) never does.
    let run = NEXT_PLAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut addresses = BTreeMap::new();
    let mut listen = BTreeMap::new();
    for n in topo.nodes() {
        let (addr, bind) = match addressing {
            Addressing::Sim => (
                format!("{}:{SIM_PORT}", n.name),
                format!("0.0.0.0:{SIM_PORT}"),
            ),
            Addressing::Loopback => {
                let port = free_loopback_port(n.name)?;
                (format!("127.0.0.1:{port}"), format!("127.0.0.1:{port}"))
            }
        };
        addresses.insert(n.name.to_string(), addr);
        listen.insert(n.name.to_string(), bind);
    }
    let engines: Vec<(usize, String, u32, u32)> = topo
        .switches
        .iter()
        .enumerate()
        .filter_map(|(i, sw)| {
            let v = topo.virtualization(&sw.name)?;
            Some((
                i,
                engine_name(&sw.name),
                sw.ports.saturating_sub(v.ports),
                v.ports,
            ))
        })
        .collect();
    for (_, name, ..) in &engines {
        let (addr, bind) = match addressing {
            Addressing::Sim => (format!("{name}:{SIM_PORT}"), format!("0.0.0.0:{SIM_PORT}")),
            Addressing::Loopback => {
                let port = free_loopback_port(name)?;
                (format!("127.0.0.1:{port}"), format!("127.0.0.1:{port}"))
            }
        };
        addresses.insert(name.clone(), addr);
        listen.insert(name.clone(), bind);
    }
    // Every cable, seen from both ends.
    let mut peers: BTreeMap<String, BTreeMap<u32, PeerSpec>> = BTreeMap::new();
    // The engines' internal cables: engine port p ↔ switch port first + p. Inside one
    // chassis: when the engine and its switch share a process (embedded live mode),
    // the cable is an in-process channel (`local_key`, named after the engine's
    // address and port, which no other cable of the process has).
    for (i, name, first, ports) in &engines {
        let sw = &topo.switches[*i].name;
        for p in 0..*ports {
            let local_key = match addressing {
                Addressing::Loopback => addresses.get(name).map(|a| format!("{a}/{p}")),
                Addressing::Sim => None,
            };
            let end = |node: &str, port: u32, dial: bool| PeerSpec {
                name: format!("{node}/{port}"),
                port,
                addr: addresses.get(node).cloned().unwrap_or_default(),
                dial,
                distance_km: 0.0,
                gfc: 32,
                capture: false,
                local_key: local_key.clone(),
            };
            peers
                .entry(name.clone())
                .or_default()
                .insert(p, end(sw, first + p, true));
            peers
                .entry(sw.clone())
                .or_default()
                .insert(first + p, end(name, p, false));
        }
    }
    for l in &topo.links {
        for (me, other, dial) in [(&l.a, &l.b, true), (&l.b, &l.a, false)] {
            let spec = PeerSpec {
                name: other.to_string(),
                port: other.port,
                addr: addresses.get(&other.node).cloned().unwrap_or_default(),
                dial,
                distance_km: l.km,
                gfc: l.gfc,
                capture: false,
                local_key: None,
            };
            peers
                .entry(me.node.clone())
                .or_default()
                .insert(me.port, spec);
        }
    }
    let zoning = zoning_config(s, &topo.zone_cfg, &topo.zones)?;
    let switch_names: BTreeSet<&str> = topo.switches.iter().map(|s| s.name.as_str()).collect();
    let mut specs = Vec::new();
    for n in topo.nodes() {
        let node_peers = peers.remove(n.name).unwrap_or_default();
        let port_wwpns: Vec<Wwpn> = (0..n.ports)
            .filter_map(|p| topo.port_wwpn(&PortRef::new(n.name, p)))
            .collect();
        let wwnn = topo.node_wwnn(n.name).unwrap_or_default();
        let role = match n.kind {
            NodeKind::Switch => {
                let e_ports = node_peers
                    .iter()
                    .filter(|(_, p)| {
                        p.name
                            .split('/')
                            .next()
                            .is_some_and(|peer| switch_names.contains(peer))
                    })
                    .map(|(port, _)| *port)
                    .collect();
                NodeRole::Switch(SwitchConfig {
                    name: n.name.to_string(),
                    wwn: wwnn,
                    domain: topo
                        .switch_domain(n.name)
                        .unwrap_or_else(|| DomainId::new(1).expect("1 is a domain")),
                    port_wwpns,
                    listen: listen[n.name].clone(),
                    peers: node_peers,
                    e_ports,
                    zoning: zoning.clone(),
                })
            }
            kind => {
                let node = EndNodeConfig {
                    name: n.name.to_string(),
                    kind: kind.as_str().to_string(),
                    wwnn,
                    port_wwpns,
                    role: match kind {
                        NodeKind::Host => Role::Initiator,
                        // A relay takes records as a target and forwards them as an
                        // initiator.
                        NodeKind::Relay => Role::Both,
                        _ => Role::Target,
                    },
                    listen: listen[n.name].clone(),
                    peers: node_peers,
                };
                match kind {
                    NodeKind::Host => NodeRole::Host(HostConfig {
                        node,
                        aliases: lu_aliases(topo),
                    }),
                    NodeKind::Array => NodeRole::Array(array_config(topo, node, data_dir)),
                    NodeKind::Tape => {
                        let spec = topo.tapes.iter().find(|x| x.name == node.name);
                        let tape = TapeConfig {
                            serial: format!("{}-0001", node.name.to_uppercase()),
                            lu_naa: tape_naa(topo, &node.name).unwrap_or_default(),
                            capacity_bytes: spec.and_then(|x| x.capacity_bytes),
                            ..TapeConfig::default()
                        };
                        NodeRole::Tape(TapeNodeConfig { node, tape })
                    }
                    NodeKind::Relay => {
                        let spec = topo.relays.iter().find(|x| x.name == node.name);
                        NodeRole::Relay(RelayNodeConfig {
                            relay: spec
                                .map(crate::format::RelaySpec::settings)
                                .unwrap_or_default(),
                            log_path: data_dir.map(|d| d.join(format!("{}.relaylog", node.name))),
                            nvram_key: format!("{run}/{}", node.name),
                            node,
                        })
                    }
                    _ => NodeRole::EndNode(node),
                }
            }
        };
        specs.push(NodeSpec {
            name: n.name.to_string(),
            site: n.site.to_string(),
            address: addresses[n.name].clone(),
            epoch_unix_ns,
            role,
        });
    }
    for (i, name, ..) in engines {
        let sw = &topo.switches[i];
        let node_peers = peers.remove(&name).unwrap_or_default();
        if let Some(cfg) = engine_config(topo, i, listen[&name].clone(), node_peers, data_dir) {
            specs.push(NodeSpec {
                address: addresses[&name].clone(),
                name,
                site: sw.site.clone(),
                epoch_unix_ns,
                role: NodeRole::Engine(cfg),
            });
        }
    }
    Ok(specs)
}
