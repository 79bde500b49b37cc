//! The `fcsim.v1.Virtualization` service of an intelligent switch's engine node, and
//! the function that runs the node. Every call runs as one closure on the engine's
//! actor ([`EngineAdmin`]), so it sees the tables exactly as the I/O path does.

use fcsim_fabric::Wwn;
use fcsim_fabric::endnode::{EndNodeError, Fc4Ctx, run_end_node_with};
use fcsim_fabric::runtime::actor;
use fcsim_fabric::runtime::{FabricClock, Net};
use fcsim_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::engine::{Engine, EngineConfig};
use crate::tf::SupportFunction;
use crate::tm::{AckMode, Backing, Extent, VirtualLu, virtual_lu_naa};

/// A closure run on the engine's actor with the engine and its context.
type AdminFn = Box<dyn FnOnce(&mut Engine, &mut Fc4Ctx<'_>) + Send>;

/// A request to the engine's actor.
pub struct EngineAdmin(AdminFn);

impl Engine {
    pub(crate) fn admin(&mut self, ctx: &mut Fc4Ctx<'_>, req: EngineAdmin) {
        (req.0)(self, ctx);
    }

    fn list(&self) -> pb::ListVirtualLusResponse {
        let lus = self
            .tm
            .lus()
            .values()
            .map(|l| {
                let ready = l.extents.iter().all(|e| match e.backing {
                    Backing::Internal => true,
                    Backing::External { lu, .. } => self.init.device(lu).is_some(),
                });
                pb::VirtualLuInfo {
                    lun: u32::from(l.lun),
                    name: l.name.clone(),
                    naa: l.naa.to_string(),
                    blocks: l.blocks(),
                    block_bytes: l.block_bytes,
                    ack: l.ack.to_string(),
                    state: if ready { "ready" } else { "waiting" }.to_string(),
                    backend_commands: self.backend_commands.get(&l.lun).copied().unwrap_or(0),
                    extents: l
                        .extents
                        .iter()
                        .map(|e| match e.backing {
                            Backing::Internal => pb::ExtentInfo {
                                start: e.start,
                                blocks: e.blocks,
                                internal: true,
                                ..Default::default()
                            },
                            Backing::External { lu, start } => pb::ExtentInfo {
                                start: e.start,
                                blocks: e.blocks,
                                lu: self.lu_name(lu),
                                real_start: start,
                                internal: false,
                            },
                        })
                        .collect(),
                }
            })
            .collect();
        pb::ListVirtualLusResponse { lus }
    }

    fn mapping_table(&self) -> pb::GetMappingTableResponse {
        let rows = self
            .tm
            .rows(&self.cfg.switch, |naa| {
                let port = self
                    .init
                    .device(naa)
                    .and_then(|d| d.paths.iter().find(|p| p.active).or(d.paths.first()))
                    .map(|p| p.target_wwpn);
                Some((self.device_of(naa)?, port))
            })
            .into_iter()
            .map(
                |[
                    vol_id,
                    blk_addr,
                    device_id,
                    port_id,
                    real_vol_id,
                    real_blk_addr,
                ]| {
                    pb::MappingRow {
                        vol_id,
                        blk_addr,
                        device_id,
                        port_id,
                        real_vol_id,
                        real_blk_addr,
                    }
                },
            )
            .collect();
        pb::GetMappingTableResponse {
            switch: self.cfg.switch.clone(),
            rows,
        }
    }

    fn function_table(&self) -> pb::GetFunctionTableResponse {
        let rows = self
            .tf
            .rows()
            .values()
            .map(|r| pb::FunctionRowInfo {
                device_id: r.device.clone(),
                wwnn: r.wwnn.to_string(),
                port_id: r.port.to_string(),
                advertised: r.functions.clone(),
                cells: SupportFunction::ALL
                    .iter()
                    .map(|f| {
                        let (prov, at) = self
                            .tf
                            .source(&r.device, *f)
                            .unwrap_or((r.provenance.clone(), r.learned_at));
                        pb::FunctionCell {
                            function: f.name().to_string(),
                            can: self.tf.can(&r.device, *f),
                            provenance: prov.to_string(),
                            learned_at_us: u64::try_from(at.as_micros()).unwrap_or(u64::MAX),
                        }
                    })
                    .collect(),
            })
            .collect();
        pb::GetFunctionTableResponse { rows }
    }

    /// A virtual LU from a `MapVirtualLu` request; errors name the field.
    fn lu_from_request(&self, r: &pb::MapVirtualLuRequest) -> Result<VirtualLu, Status> {
        let bad = |m: String| Status::invalid_argument(m);
        let lun = u16::try_from(r.lun)
            .ok()
            .filter(|l| *l < 16384)
            .ok_or_else(|| bad(format!("lun: {} is not a LUN (0–16383)", r.lun)))?;
        let ack = match r.ack.as_str() {
            "" | "sync" => AckMode::Sync,
            "async" => AckMode::Async,
            other => return Err(bad(format!("ack: `{other}` is not sync or async"))),
        };
        let mut extents = Vec::new();
        let mut block_bytes = r.block_bytes;
        for (i, e) in r.extents.iter().enumerate() {
            let backing = if e.internal {
                Backing::Internal
            } else {
                let lu = self.resolve_lu(&e.lu).ok_or_else(|| {
                    bad(format!(
                        "extents[{i}].lu: `{}` is not a real LU the switch knows",
                        e.lu
                    ))
                })?;
                if block_bytes == 0 {
                    block_bytes = self.real_lu(lu).map_or(0, |r| r.block_bytes);
                }
                Backing::External {
                    lu,
                    start: e.real_start,
                }
            };
            extents.push(Extent {
                start: 0,
                blocks: e.blocks,
                backing,
            });
        }
        if block_bytes == 0 {
            block_bytes = 512;
        }
        Ok(VirtualLu {
            lun,
            name: if r.name.is_empty() {
                format!("v{lun}")
            } else {
                r.name.clone()
            },
            naa: virtual_lu_naa(self.cfg.node.wwnn, lun),
            block_bytes,
            ack,
            extents,
        })
    }

    /// A real LU by NAA or `array:lun` name.
    fn resolve_lu(&self, text: &str) -> Option<Wwn> {
        if let Some(k) = self.cfg.real_lus.iter().find(|k| k.name == text) {
            return Some(k.naa);
        }
        let naa: Wwn = text.parse().ok()?;
        self.real_lu(naa).map(|_| naa)
    }
}

/// The gRPC face of the engine.
pub struct VirtualizationService {
    tx: mpsc::UnboundedSender<EngineAdmin>,
}

impl VirtualizationService {
    /// Runs `f` on the engine's actor and returns its answer.
    async fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, &mut Fc4Ctx<'_>) -> Result<T, Status> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let job = |reply: oneshot::Sender<_>| {
            EngineAdmin(Box::new(move |e, ctx| {
                let _ = reply.send(f(e, ctx));
            }))
        };
        actor::ask(&self.tx, "the virtualization engine", job)
            .await?
            .map(Response::new)
    }
}

#[tonic::async_trait]
impl pb::virtualization_server::Virtualization for VirtualizationService {
    async fn list_virtual_lus(
        &self,
        _r: Request<pb::ListVirtualLusRequest>,
    ) -> Result<Response<pb::ListVirtualLusResponse>, Status> {
        self.ask(|e, _| Ok(e.list())).await
    }

    async fn get_mapping_table(
        &self,
        _r: Request<pb::GetMappingTableRequest>,
    ) -> Result<Response<pb::GetMappingTableResponse>, Status> {
        self.ask(|e, _| Ok(e.mapping_table())).await
    }

    async fn get_function_table(
        &self,
        _r: Request<pb::GetFunctionTableRequest>,
    ) -> Result<Response<pb::GetFunctionTableResponse>, Status> {
        self.ask(|e, _| Ok(e.function_table())).await
    }

    async fn map_virtual_lu(
        &self,
        r: Request<pb::MapVirtualLuRequest>,
    ) -> Result<Response<pb::ListVirtualLusResponse>, Status> {
        let r = r.into_inner();
        self.ask(move |e, _| {
            let lu = e.lu_from_request(&r)?;
            e.map_lu(lu)
                .map_err(|m| Status::invalid_argument(format!("extents: {m}")))?;
            Ok(e.list())
        })
        .await
    }

    async fn unmap_virtual_lu(
        &self,
        r: Request<pb::UnmapVirtualLuRequest>,
    ) -> Result<Response<pb::ListVirtualLusResponse>, Status> {
        let lun = r.into_inner().lun;
        self.ask(move |e, _| {
            let lun = u16::try_from(lun)
                .map_err(|_| Status::invalid_argument(format!("lun: {lun} is not a LUN")))?;
            e.unmap_lu(lun)
                .map_err(|m| Status::failed_precondition(format!("lun: {m}")))?;
            Ok(e.list())
        })
        .await
    }

    async fn set_function(
        &self,
        r: Request<pb::SetFunctionRequest>,
    ) -> Result<Response<pb::GetFunctionTableResponse>, Status> {
        let r = r.into_inner();
        let f = SupportFunction::ALL
            .into_iter()
            .find(|f| f.name() == r.function)
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "function: `{}` is not direct-backup, volume-copy or mirroring",
                    r.function
                ))
            })?;
        let can = match r.value.as_str() {
            "can" => Some(true),
            "cannot" => Some(false),
            "clear" => None,
            v => {
                return Err(Status::invalid_argument(format!(
                    "value: `{v}` is not can, cannot or clear"
                )));
            }
        };
        if r.device_id.is_empty() {
            return Err(Status::invalid_argument("device_id: give the array's name"));
        }
        self.ask(move |e, ctx| {
            e.tf.set_override(&r.device_id, f, can, ctx.now);
            Ok(e.function_table())
        })
        .await
    }

    async fn list_operations(
        &self,
        _r: Request<pb::ListOperationsRequest>,
    ) -> Result<Response<pb::ListOperationsResponse>, Status> {
        self.ask(|e, _| {
            Ok(pb::ListOperationsResponse {
                operations: e.ops.values().map(crate::ops::Op::info).collect(),
            })
        })
        .await
    }

    async fn start_mirror(
        &self,
        r: Request<pb::StartMirrorRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let r = r.into_inner();
        let (src, dst) = match (u16::try_from(r.src_lun), u16::try_from(r.dst_lun)) {
            (Ok(s), Ok(d)) => (s, d),
            (Err(_), _) => return Err(Status::invalid_argument("src_lun: not a LUN")),
            (_, Err(_)) => return Err(Status::invalid_argument("dst_lun: not a LUN")),
        };
        self.ask(move |e, ctx| {
            e.start_mirror(ctx, src, dst)
                .map_err(Status::invalid_argument)
        })
        .await
    }

    async fn cache_status(
        &self,
        _r: Request<pb::CacheStatusRequest>,
    ) -> Result<Response<pb::CacheStatusResponse>, Status> {
        self.ask(|e, _| {
            let dirty: Vec<pb::CacheBlock> = e
                .dirty_blocks()
                .into_iter()
                .map(|(lun, lba)| pb::CacheBlock {
                    lun: u32::from(lun),
                    lba,
                })
                .collect();
            Ok(pb::CacheStatusResponse {
                dirty_blocks: dirty.len() as u64,
                dirty,
            })
        })
        .await
    }
}

/// Runs an intelligent switch's virtualization engine until its task is dropped.
pub async fn run_engine(
    cfg: EngineConfig,
    net: Net,
    clock: FabricClock,
) -> Result<(), EndNodeError> {
    let node = cfg.node.clone();
    let engine = match Engine::new(cfg) {
        Ok(e) => e,
        Err(e) => {
            warn!(node = %node.name, "virtualization engine cannot start: {e}");
            return Ok(());
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let copy_tx = tx.clone();
    let routes = tonic::service::Routes::new(pb::virtualization_server::VirtualizationServer::new(
        VirtualizationService { tx },
    ))
    .add_service(fcsim_devices::copy_service::routes(move |req| {
        copy_tx
            .send(EngineAdmin(Box::new(move |e, ctx| e.copy_admin(ctx, req))))
            .is_ok()
    }));
    run_end_node_with(
        node,
        net,
        clock,
        engine,
        Some(routes),
        rx,
        &["fcsim.v1.Virtualization", "fcsim.v1.Copy"],
    )
    .await
}
