//! `fcsim up`: a fabric that stays up in real time, with the `fcsim.v1.Control` endpoint
//! through which `fcsim ctl`, `fcsim fault` and any gRPC client find the nodes and
//! inject faults. Also `fcsim node`, one node as its own process.

use std::net::SocketAddr;
use std::sync::Arc;

use fcsim_fabric::runtime::Net;
use fcsim_proto::v1 as pb;
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::format::{PortRef, Scenario, Step};
use crate::launch::NodeSpec;
use crate::runner::{Mode, Orchestrator, RunError, node_infos};

struct ControlService {
    fabric: Arc<Mutex<Orchestrator>>,
    topology_json: String,
    mode: &'static str,
}

fn port_arg(field: &str, text: &str) -> Result<PortRef, Status> {
    text.parse::<PortRef>()
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn non_empty<'a>(field: &str, text: &'a str) -> Result<&'a str, Status> {
    if text.is_empty() {
        Err(Status::invalid_argument(format!(
            "{field}: must not be empty"
        )))
    } else {
        Ok(text)
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    async fn list_nodes(
        &self,
        _r: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let o = self.fabric.lock().await;
        Ok(Response::new(pb::ListNodesResponse {
            nodes: node_infos(&o),
        }))
    }

    async fn get_topology(
        &self,
        _r: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::GetTopologyResponse>, Status> {
        Ok(Response::new(pb::GetTopologyResponse {
            json: self.topology_json.clone(),
        }))
    }

    async fn inject_fault(
        &self,
        r: Request<pb::FaultRequest>,
    ) -> Result<Response<pb::FaultResponse>, Status> {
        use pb::fault_request::Fault;
        let fault = r
            .into_inner()
            .fault
            .ok_or_else(|| Status::invalid_argument("fault: one fault must be set"))?;
        let mut o = self.fabric.lock().await;
        let node = |o: &Orchestrator, field: &str, n: &str| -> Result<String, Status> {
            let n = non_empty(field, n)?;
            if o.has_node(n) {
                Ok(n.to_string())
            } else {
                Err(Status::invalid_argument(format!(
                    "{field}: no node named `{n}`"
                )))
            }
        };
        let site = |o: &Orchestrator, field: &str, s: &str| -> Result<String, Status> {
            let s = non_empty(field, s)?;
            if o.has_site(s) {
                Ok(s.to_string())
            } else {
                Err(Status::invalid_argument(format!(
                    "{field}: no site or zone `{s}`"
                )))
            }
        };
        let step = match fault {
            Fault::LinkDown(l) => Step::LinkDown {
                port: port_arg("link_down.port", &l.port)?,
            },
            Fault::LinkUp(l) => Step::LinkUp {
                port: port_arg("link_up.port", &l.port)?,
            },
            Fault::PortErrors(e) => {
                let port = port_arg("port_errors.port", &e.port)?;
                if !o.is_switch(&port.node) {
                    return Err(Status::invalid_argument(format!(
                        "port_errors.port: `{port}` is not a switch port"
                    )));
                }
                Step::PortErrors {
                    port,
                    drop_every: e.drop_every,
                }
            }
            Fault::Crash(n) => Step::Crash {
                node: node(&o, "crash.node", &n.node)?,
            },
            Fault::Restart(n) => Step::Restart {
                node: node(&o, "restart.node", &n.node)?,
            },
            Fault::Disaster(s) => Step::Disaster {
                site: site(&o, "disaster.site", &s.site)?,
            },
            Fault::Partition(p) => Step::Partition {
                a: site(&o, "partition.site_a", &p.site_a)?,
                b: site(&o, "partition.site_b", &p.site_b)?,
            },
            Fault::Heal(p) => Step::Heal {
                a: site(&o, "heal.site_a", &p.site_a)?,
                b: site(&o, "heal.site_b", &p.site_b)?,
            },
        };
        match o.act(&step).await {
            Ok(summary) => Ok(Response::new(pb::FaultResponse { summary })),
            Err(e) => Err(Status::failed_precondition(e)),
        }
    }

    async fn status(
        &self,
        _r: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let o = self.fabric.lock().await;
        let nodes = node_infos(&o);
        Ok(Response::new(pb::StatusResponse {
            mode: self.mode.to_string(),
            now_us: u64::try_from(o.now().as_micros()).unwrap_or(u64::MAX),
            nodes: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
            nodes_alive: u32::try_from(nodes.iter().filter(|n| n.alive).count())
                .unwrap_or(u32::MAX),
        }))
    }
}

/// Starts the fabric of `s` (live or processes), plays its setup, and serves the Control
/// endpoint on `control` until Ctrl-C.
pub fn serve_fabric(
    s: &Scenario,
    mode: &Mode,
    control: &str,
    data_dir: Option<&std::path::Path>,
) -> Result<(), RunError> {
    let addr: SocketAddr = control.parse().map_err(|e| RunError::NodeStart {
        node: "control".into(),
        detail: format!("--control {control}: {e}"),
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    rt.block_on(async {
        let listener =
            Net::Tokio
                .bind(&addr.to_string())
                .await
                .map_err(|e| RunError::NodeStart {
                    node: "control".into(),
                    detail: e.to_string(),
                })?;
        let mut o = Orchestrator::start_wall(s, mode, s.seed, true, data_dir, None).await?;
        o.setup().await;
        let fabric = Arc::new(Mutex::new(o));
        let svc = ControlService {
            fabric: fabric.clone(),
            topology_json: serde_json::to_string_pretty(&s.topology).unwrap_or_default(),
            mode: mode.name(),
        };
        let routes = tonic::service::Routes::new(pb::control_server::ControlServer::new(svc));
        println!("fabric up: Control endpoint on {addr} (Ctrl-C to stop)");
        tokio::select! {
            r = fcsim_fabric::runtime::server::serve(listener, routes, &["fcsim.v1.Control"]) => {
                if let Err(e) = r { eprintln!("control endpoint failed: {e}"); }
            }
            _ = tokio::signal::ctrl_c() => println!("stopping"),
        }
        fabric.lock().await.driver.shutdown().await;
        Ok(())
    })
}

/// Runs one node in this process (`fcsim node --spec FILE`) until killed or Ctrl-C.
pub fn run_node_process(spec: NodeSpec) -> Result<(), RunError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    rt.block_on(async move {
        tokio::select! {
            () = spec.run(Net::Tokio) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    Ok(())
}

/// A fabric running in real time (live or processes mode) for programs that drive it
/// themselves, such as `fcsim bench io`: started, set up, then used through the nodes'
/// gRPC addresses, and stopped.
pub struct LiveFabric {
    orchestrator: Orchestrator,
}

impl LiveFabric {
    /// Starts every node of `s` and plays its setup (e.g. waiting for convergence).
    pub async fn start(s: &Scenario, mode: &Mode) -> Result<Self, RunError> {
        let mut orchestrator = Orchestrator::start_wall(s, mode, s.seed, false, None, None).await?;
        orchestrator.setup().await;
        if let Some(e) = orchestrator.report.errors.first() {
            let detail = e.clone();
            orchestrator.driver.shutdown().await;
            return Err(RunError::NodeStart {
                node: "fabric".into(),
                detail,
            });
        }
        Ok(LiveFabric { orchestrator })
    }

    /// The gRPC address of node `name`.
    pub fn address(&self, name: &str) -> Option<String> {
        node_infos(&self.orchestrator)
            .into_iter()
            .find(|n| n.name == name)
            .map(|n| n.address)
    }

    /// Stops every node (SIGKILL in processes mode).
    pub async fn stop(mut self) {
        self.orchestrator.driver.shutdown().await;
    }
}
