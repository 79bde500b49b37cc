//! Client subcommands (`ctl`, `fault`): they reach a running fabric through its Control
//! endpoint, look up the node they need, and call that node's services.

use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use fcsim_proto::v1 as pb;
use pb::control_client::ControlClient;
use pb::link_client::LinkClient;
use pb::switch_client::SwitchClient;
use tonic::transport::Channel;

pub const DEFAULT_CONTROL: &str = "127.0.0.1:7700";

#[derive(Subcommand)]
pub enum CtlCmd {
    /// Every node, its kind, site, gRPC address and whether it is alive.
    Nodes,
    /// One switch: identity, state and its ports (FOS `switchshow`).
    Switchshow { switch: String },
    /// Every switch in the fabric as `switch` sees it (FOS `fabricshow`).
    Fabricshow { switch: String },
    /// The fabric's name server (FOS `nsshow`); `--as` filters by zoning.
    Nsshow {
        switch: String,
        /// Show only what this WWPN may see.
        #[arg(long = "as")]
        as_wwpn: Option<String>,
    },
    /// The zoning database and active configuration (FOS `zoneshow`).
    Zoneshow { switch: String },
    /// Frame, byte, discard, zoning-drop and CRC-error counters per port (FOS
    /// `portstatsshow`).
    Portstatsshow { switch: String },
    /// The FSPF routing table (FOS `uroutershow`).
    Routeshow { switch: String },
    /// An end node's ports: FC_ID, login state, RSCNs and name-server view.
    Ports { node: String },
    /// Define zones and activate them as the fabric's configuration (FOS `cfgenable`).
    Zoneactivate {
        switch: String,
        /// Configuration name.
        cfg: String,
        /// Zones as `name=member;member` (members are WWPNs or `domain,port`).
        #[arg(required = true)]
        zones: Vec<String>,
    },
    /// Deactivate the active zoning configuration (FOS `cfgdisable`).
    Zonedeactivate { switch: String },
    /// Make an N_Port log in to a target (PLOGI + PRLI).
    Login {
        /// The initiating port, `node/port`.
        port: String,
        /// Target WWPN (resolved via the name server) or FC_ID (6 hex digits).
        target: String,
    },
    /// Capture every frame crossing ports into a pcap file (LINKTYPE_FC_2, wall-clock
    /// timestamps) that Wireshark opens; runs for --duration or until Ctrl-C.
    Capture {
        /// Ports to tap, `SW:PORT` (repeat the option or separate with commas).
        #[arg(
            long = "port",
            required = true,
            value_delimiter = ',',
            value_name = "SW:PORT"
        )]
        ports: Vec<String>,
        /// The pcap file to write.
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
        /// How long to capture, e.g. `2s` or `500ms`; default: until Ctrl-C.
        #[arg(long)]
        duration: Option<fcsim_scenarios::SimDuration>,
    },
    #[command(flatten)]
    Virt(crate::virt_cli::VirtCmd),
}

#[derive(Subcommand)]
pub enum FaultCmd {
    /// Take a cable down (`node/port` of either end).
    LinkDown { port: String },
    /// Bring a cable back.
    LinkUp { port: String },
    /// Crash a node: volatile state is lost.
    Crash { node: String },
    /// Restart a crashed node from its configuration.
    Restart { node: String },
    /// Destroy every node of a site or disaster zone, for good.
    Disaster { site: String },
    /// Cut every cable between two sites.
    Partition { a: String, b: String },
    /// Restore the cables between two sites.
    Heal { a: String, b: String },
    /// Bit errors on a switch port (`switch/port`): it discards every DROP_EVERY-th
    /// frame it receives (CRC errors); 0 clears.
    PortErrors { port: String, drop_every: u32 },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub(crate) async fn channel(addr: &str) -> anyhow::Result<Channel> {
    fcsim_fabric::runtime::Net::Tokio
        .channel(addr)
        .await
        .with_context(|| format!("is a fabric running (`fcsim up`)? could not reach {addr}"))
}

pub(crate) async fn node_addr(
    control: &mut ControlClient<Channel>,
    node: &str,
) -> anyhow::Result<String> {
    let nodes = control
        .list_nodes(pb::ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    let n = nodes
        .iter()
        .find(|n| n.name == node)
        .ok_or_else(|| anyhow!("no node named `{node}` (known: {})", names(&nodes)))?;
    if !n.alive {
        bail!("node `{node}` is down");
    }
    Ok(n.address.clone())
}

pub(crate) fn names(nodes: &[pb::NodeInfo]) -> String {
    nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn switch_client(
    control: &mut ControlClient<Channel>,
    sw: &str,
) -> anyhow::Result<SwitchClient<Channel>> {
    Ok(SwitchClient::new(
        channel(&node_addr(control, sw).await?).await?,
    ))
}

pub fn ctl(control_addr: &str, cmd: CtlCmd) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let mut control = ControlClient::new(channel(control_addr).await?);
        let out = match cmd {
            CtlCmd::Nodes => {
                let nodes = control
                    .list_nodes(pb::ListNodesRequest {})
                    .await?
                    .into_inner()
                    .nodes;
                fcsim_scenarios::views::nodes(&nodes)
            }
            CtlCmd::Switchshow { switch } => {
                let r = switch_client(&mut control, &switch)
                    .await?
                    .switch_show(pb::SwitchShowRequest {})
                    .await?;
                fcsim_scenarios::views::switchshow(&r.into_inner())
            }
            CtlCmd::Fabricshow { switch } => {
                let r = switch_client(&mut control, &switch)
                    .await?
                    .fabric_show(pb::FabricShowRequest {})
                    .await?;
                fcsim_scenarios::views::fabricshow(&r.into_inner())
            }
            CtlCmd::Nsshow { switch, as_wwpn } => {
                let req = pb::NsShowRequest {
                    as_wwpn: as_wwpn.unwrap_or_default(),
                };
                let r = switch_client(&mut control, &switch)
                    .await?
                    .ns_show(req)
                    .await?;
                fcsim_scenarios::views::nsshow(&r.into_inner())
            }
            CtlCmd::Zoneshow { switch } => {
                let r = switch_client(&mut control, &switch)
                    .await?
                    .zone_show(pb::ZoneShowRequest {})
                    .await?;
                fcsim_scenarios::views::zoneshow(&r.into_inner())
            }
            CtlCmd::Portstatsshow { switch } => {
                let req = pb::PortStatsShowRequest { ports: vec![] };
                let r = switch_client(&mut control, &switch)
                    .await?
                    .port_stats_show(req)
                    .await?;
                fcsim_scenarios::views::portstatsshow(&r.into_inner().ports)
            }
            CtlCmd::Routeshow { switch } => {
                let r = switch_client(&mut control, &switch)
                    .await?
                    .route_show(pb::RouteShowRequest {})
                    .await?;
                fcsim_scenarios::views::routeshow(&r.into_inner())
            }
            CtlCmd::Ports { node } => {
                let mut link =
                    LinkClient::new(channel(&node_addr(&mut control, &node).await?).await?);
                let r = link.list_ports(pb::ListPortsRequest {}).await?;
                fcsim_scenarios::views::ports(&r.into_inner())
            }
            CtlCmd::Zoneactivate { switch, cfg, zones } => {
                let zones = zones
                    .iter()
                    .map(|z| parse_zone(z))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let req = pb::ZoneActivateRequest {
                    cfg_name: cfg,
                    zones,
                };
                let r = switch_client(&mut control, &switch)
                    .await?
                    .zone_activate(req)
                    .await?;
                fcsim_scenarios::views::zoneshow(&r.into_inner())
            }
            CtlCmd::Zonedeactivate { switch } => {
                let r = switch_client(&mut control, &switch)
                    .await?
                    .zone_deactivate(pb::ZoneDeactivateRequest {})
                    .await?;
                fcsim_scenarios::views::zoneshow(&r.into_inner())
            }
            CtlCmd::Login { port, target } => {
                let (node, idx) = port
                    .split_once('/')
                    .ok_or_else(|| anyhow!("port: expected `node/port`, got `{port}`"))?;
                let idx: u32 = idx
                    .parse()
                    .map_err(|_| anyhow!("port: `{idx}` is not a port number"))?;
                let mut link =
                    LinkClient::new(channel(&node_addr(&mut control, node).await?).await?);
                let (target_wwpn, target_fc_id) = if target.contains(':') {
                    (target, String::new())
                } else {
                    (String::new(), target)
                };
                let req = pb::PortLoginRequest {
                    port: idx,
                    target_wwpn,
                    target_fc_id,
                    timeout_ms: 0,
                };
                let r = link.port_login(req).await?.into_inner();
                format!("{} {} {}\n", r.outcome, r.target_fc_id, r.detail)
            }
            CtlCmd::Capture {
                ports,
                out,
                duration,
            } => {
                let duration = duration.map(|d| d.to_std());
                crate::capture_cli::capture(&mut control, &ports, &out, duration).await?
            }
            CtlCmd::Virt(cmd) => crate::virt_cli::ctl(&mut control, cmd).await?,
        };
        print!("{out}");
        Ok(ExitCode::SUCCESS)
    })
}

fn parse_zone(text: &str) -> anyhow::Result<pb::Zone> {
    let (name, members) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("zone `{text}`: expected `name=member;member`"))?;
    Ok(pb::Zone {
        name: name.to_string(),
        members: members.split(';').map(str::to_string).collect(),
    })
}

pub fn fault(control_addr: &str, cmd: FaultCmd) -> anyhow::Result<ExitCode> {
    use pb::fault_request::Fault;
    let fault = match cmd {
        FaultCmd::LinkDown { port } => Fault::LinkDown(pb::LinkFault { port }),
        FaultCmd::LinkUp { port } => Fault::LinkUp(pb::LinkFault { port }),
        FaultCmd::Crash { node } => Fault::Crash(pb::NodeFault { node }),
        FaultCmd::Restart { node } => Fault::Restart(pb::NodeFault { node }),
        FaultCmd::Disaster { site } => Fault::Disaster(pb::SiteFault { site }),
        FaultCmd::Partition { a, b } => Fault::Partition(pb::PartitionFault {
            site_a: a,
            site_b: b,
        }),
        FaultCmd::Heal { a, b } => Fault::Heal(pb::PartitionFault {
            site_a: a,
            site_b: b,
        }),
        FaultCmd::PortErrors { port, drop_every } => {
            Fault::PortErrors(pb::PortErrorsFault { port, drop_every })
        }
    };
    runtime()?.block_on(async move {
        let mut control = ControlClient::new(channel(control_addr).await?);
        let r = control
            .inject_fault(pb::FaultRequest { fault: Some(fault) })
            .await?;
        println!("{}", r.into_inner().summary);
        Ok(ExitCode::SUCCESS)
    })
}
