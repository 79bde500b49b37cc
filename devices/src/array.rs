//! The storage array node: FCP target ports in front of logical units on block stores
//! (sparse memory, or files with `data_dir`), LUN masking per initiator WWPN, the copy
//! functions it advertises (VPD 8Fh/C0h), EXTENDED COPY between its own LUs, and the
//! `fcsim.v1.Array` management service (LU list and an oracle back door that reads the
//! medium directly).
//!
//! Start here: [`run_array`]. SCSI semantics are the sans-IO [`ScsiTarget`]; this module
//! wires it to the FCP target, the N_Ports' login table (who the initiator is) and
//! masking.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use fcsim_fabric::endnode::{EndNodeConfig, EndNodeError, Fc4Ctx, Fc4Layer, run_end_node_with};
use fcsim_fabric::frame::Frame;
use fcsim_fabric::runtime::{FabricClock, Net};
use fcsim_fabric::{Wwn, Wwpn};
use fcsim_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::fcp::{FcpTarget, TargetCommand};
use crate::history::digest;
use crate::scsi::inquiry::{CopyFunction, NaaId};
use crate::scsi::target::{LogicalUnit, LuConfig, Nexus, ScsiTarget};
use crate::store::{BlockStore, FileStore, MemStore};

/// One logical unit of an array.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArrayLu {
    /// LUN (below 16384).
    pub lun: u16,
    /// The LU's NAA identifier (VPD 83h).
    pub naa: Wwn,
    /// Capacity in blocks.
    pub blocks: u64,
    /// Logical block size in bytes.
    pub block_bytes: u32,
    /// Initiator WWPNs that may see it; empty: every initiator.
    pub hosts: Vec<Wwpn>,
}

/// An array node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArrayConfig {
    /// Ports, names and cables.
    pub node: EndNodeConfig,
    pub lus: Vec<ArrayLu>,
    /// Copy functions advertised in VPD C0h (`xcopy`, `remote-sync`, …).
    pub functions: Vec<String>,
    /// Every acknowledged write is synced to the backing file first.
    pub write_through: bool,
    /// Keep LUs in files `<data_dir>/<array>-lun<N>.img` (durable across crashes);
    /// `None`: sparse memory, lost on a crash.
    pub data_dir: Option<PathBuf>,
}

/// Requests of the Array service.
pub enum ArrayAdmin {
    List(oneshot::Sender<pb::ListLusResponse>),
    Read {
        lun: u32,
        lba: u64,
        blocks: u32,
        reply: oneshot::Sender<Result<Bytes, Status>>,
    },
    Digests {
        lun: u32,
        lba: u64,
        blocks: u32,
        reply: oneshot::Sender<Result<Vec<u64>, Status>>,
    },
}

/// The array's FC-4 layer.
pub struct ArrayLayer {
    cfg: ArrayConfig,
    fcp: FcpTarget,
    scsi: ScsiTarget,
}

fn store_for(cfg: &ArrayConfig, lu: &ArrayLu) -> Result<Box<dyn BlockStore>, String> {
    match &cfg.data_dir {
        None => MemStore::new(lu.block_bytes, lu.blocks)
            .map(|s| Box::new(s) as Box<dyn BlockStore>)
            .map_err(|e| e.to_string()),
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join(format!("{}-lun{}.img", cfg.node.name, lu.lun));
            FileStore::open(&path, lu.block_bytes, lu.blocks, cfg.write_through)
                .map(|s| Box::new(s) as Box<dyn BlockStore>)
                .map_err(|e| e.to_string())
        }
    }
}

impl ArrayLayer {
    /// Builds the LUs on their stores. A file store that cannot be opened is an error.
    pub fn new(cfg: ArrayConfig) -> Result<Self, String> {
        let mut scsi = ScsiTarget::default();
        let functions: Vec<CopyFunction> = cfg
            .functions
            .iter()
            .map(|f| CopyFunction::from_name(f))
            .collect();
        let xcopy = functions.contains(&CopyFunction::Xcopy);
        for lu in &cfg.lus {
            let store = store_for(&cfg, lu)?;
            let lc = LuConfig {
                lun: lu.lun,
                block_size_bytes: lu.block_bytes,
                blocks: lu.blocks,
                serial: format!("{}-{:04}", cfg.node.name.to_uppercase(), lu.lun),
                naa: lu.naa.0,
                product: "FCSIM ARRAY LU".into(),
                third_party_copy: xcopy,
                write_through: cfg.write_through,
                copy_functions: functions.clone(),
                ..LuConfig::default()
            };
            let unit = LogicalUnit::new(lc, store).map_err(|e| e.to_string())?;
            scsi.add_lu(unit).map_err(|e| e.to_string())?;
        }
        Ok(ArrayLayer {
            cfg,
            fcp: FcpTarget::new(),
            scsi,
        })
    }

    /// LUNs `initiator` may see (LUN masking).
    fn visible_luns(&self, initiator: Wwpn) -> Vec<u16> {
        self.cfg
            .lus
            .iter()
            .filter(|l| l.hosts.is_empty() || l.hosts.contains(&initiator))
            .map(|l| l.lun)
            .collect()
    }

    fn execute(&mut self, ctx: &mut Fc4Ctx<'_>, cmd: &TargetCommand) {
        // FCP needs PLOGI/PRLI first; the login table names the initiator.
        let Some(initiator) = ctx
            .ports
            .get(&cmd.port)
            .and_then(|np| np.logged_in().get(&cmd.initiator).map(|r| r.wwpn))
        else {
            debug!(port = cmd.port, initiator = %cmd.initiator, "FCP command from a port not logged in: dropped");
            ctx.hub.count_discard(cmd.port);
            return;
        };
        let visible = self.visible_luns(initiator);
        let naas: BTreeMap<NaaId, u16> = self
            .cfg
            .lus
            .iter()
            .map(|l| (NaaId::Short(l.naa), l.lun))
            .collect();
        // EXTENDED COPY may name only LUs this initiator could address itself
        // (CVE-2020-28374: LIO's XCOPY crossed LUN boundaries).
        let may_access = |naa: NaaId| naas.get(&naa).is_some_and(|lun| visible.contains(lun));
        let target_port = self
            .cfg
            .node
            .port_wwpns
            .get(cmd.port as usize)
            .copied()
            .unwrap_or_default();
        let nexus = Nexus {
            initiator,
            target_port,
            relative_port: u16::try_from(cmd.port + 1).unwrap_or(u16::MAX),
            lun: cmd
                .lun
                .and_then(|l| u16::try_from(l).ok())
                .unwrap_or(u16::MAX),
            visible_luns: &visible,
            may_access: &may_access,
        };
        let data_out = (!cmd.data_out.is_empty()).then(|| cmd.data_out.clone());
        let mut r = self.scsi.execute(&nexus, &cmd.cdb, data_out);
        if let Some(job) = r.copy_job.take() {
            // Every LU of a copy this array can run is its own; a job naming another
            // array's LU or a tape ends with COPY ABORTED, visibly.
            let outcome = self.scsi.run_local_copy(&job);
            info!(list_id = job.list_id, segments = outcome.segments_processed, bytes = outcome.bytes, error = ?outcome.error, "EXTENDED COPY");
            r = self.scsi.complete_copy(&job, &outcome);
        }
        let sense = r.sense.map(|s| s.encode()).unwrap_or_default();
        self.fcp.complete(cmd, r.status.0, sense, r.data_in);
    }

    fn flush(&mut self, ctx: &mut Fc4Ctx<'_>) {
        while let Some(cmd) = self.fcp.poll_command() {
            self.execute(ctx, &cmd);
        }
        while let Some((port, f)) = self.fcp.poll_transmit() {
            if !ctx.send(port, &f) {
                debug!(port, "FCP reply not sent: no cable");
            }
        }
    }

    fn list(&self) -> pb::ListLusResponse {
        let lus = self
            .cfg
            .lus
            .iter()
            .map(|l| pb::LuInfo {
                lun: u32::from(l.lun),
                naa: l.naa.to_string(),
                blocks: l.blocks,
                block_bytes: l.block_bytes,
                masking: l.hosts.iter().map(ToString::to_string).collect(),
                store: self.cfg.data_dir.as_ref().map_or_else(
                    || "memory".to_string(),
                    |d| {
                        d.join(format!("{}-lun{}.img", self.cfg.node.name, l.lun))
                            .display()
                            .to_string()
                    },
                ),
            })
            .collect();
        pb::ListLusResponse {
            lus,
            functions: self.cfg.functions.clone(),
        }
    }

    /// Reads the medium directly, no SCSI and no fabric involved.
    fn read(&self, lun: u32, lba: u64, blocks: u32) -> Result<(Bytes, usize), Status> {
        let lu = u16::try_from(lun)
            .ok()
            .and_then(|l| self.scsi.lu(l))
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "lun: {lun} is not an LU of {}",
                    self.cfg.node.name
                ))
            })?;
        let store = lu.store();
        if blocks == 0
            || lba
                .checked_add(u64::from(blocks))
                .is_none_or(|end| end > store.blocks())
        {
            return Err(Status::invalid_argument(format!(
                "blocks: {lba}+{blocks} is outside the LU ({} blocks)",
                store.blocks()
            )));
        }
        let data = store
            .read(lba, u64::from(blocks))
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok((data, store.block_bytes() as usize))
    }

    /// One digest per block, as the write history computes them.
    fn digests(&self, lun: u32, lba: u64, blocks: u32) -> Result<Vec<u64>, Status> {
        let (data, bb) = self.read(lun, lba, blocks)?;
        Ok(data.chunks(bb.max(1)).map(digest).collect())
    }
}

impl Fc4Layer for ArrayLayer {
    type Admin = ArrayAdmin;

    fn on_frame(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, frame: Frame) {
        if !self.fcp.handle_frame(port, &frame) {
            ctx.hub.count_discard(port);
        }
        self.flush(ctx);
    }

    fn on_link_down(&mut self, _ctx: &mut Fc4Ctx<'_>, port: u32) {
        self.fcp.port_down(port);
    }

    fn on_admin(&mut self, _ctx: &mut Fc4Ctx<'_>, req: ArrayAdmin) {
        match req {
            ArrayAdmin::List(reply) => {
                let _ = reply.send(self.list());
            }
            ArrayAdmin::Read {
                lun,
                lba,
                blocks,
                reply,
            } => {
                let _ = reply.send(self.read(lun, lba, blocks).map(|(d, _)| d));
            }
            ArrayAdmin::Digests {
                lun,
                lba,
                blocks,
                reply,
            } => {
                let _ = reply.send(self.digests(lun, lba, blocks));
            }
        }
    }
}

struct ArrayService {
    tx: mpsc::UnboundedSender<ArrayAdmin>,
}

impl ArrayService {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Status>>) -> ArrayAdmin,
    ) -> Result<T, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| Status::unavailable("array is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("array is shutting down"))?
    }
}

#[tonic::async_trait]
impl pb::array_server::Array for ArrayService {
    async fn list_lus(
        &self,
        _r: Request<pb::ListLusRequest>,
    ) -> Result<Response<pb::ListLusResponse>, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ArrayAdmin::List(reply))
            .map_err(|_| Status::unavailable("array is shutting down"))?;
        rx.await
            .map(Response::new)
            .map_err(|_| Status::unavailable("array is shutting down"))
    }

    async fn read_lu(
        &self,
        r: Request<pb::ReadLuRequest>,
    ) -> Result<Response<pb::ReadLuResponse>, Status> {
        let r = r.into_inner();
        let data = self
            .ask(|reply| ArrayAdmin::Read {
                lun: r.lun,
                lba: r.lba,
                blocks: r.blocks,
                reply,
            })
            .await?;
        Ok(Response::new(pb::ReadLuResponse { data }))
    }

    async fn lu_digests(
        &self,
        r: Request<pb::LuDigestsRequest>,
    ) -> Result<Response<pb::LuDigestsResponse>, Status> {
        let r = r.into_inner();
        let digests = self
            .ask(|reply| ArrayAdmin::Digests {
                lun: r.lun,
                lba: r.lba,
                blocks: r.blocks,
                reply,
            })
            .await?;
        Ok(Response::new(pb::LuDigestsResponse { digests }))
    }
}

/// Runs an array node until its task is dropped.
pub async fn run_array(cfg: ArrayConfig, net: Net, clock: FabricClock) -> Result<(), EndNodeError> {
    let layer = match ArrayLayer::new(cfg.clone()) {
        Ok(l) => l,
        Err(e) => {
            warn!(node = %cfg.node.name, "array cannot start: {e}");
            return Ok(());
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let routes =
        tonic::service::Routes::new(pb::array_server::ArrayServer::new(ArrayService { tx }));
    run_end_node_with(
        cfg.node,
        net,
        clock,
        layer,
        Some(routes),
        rx,
        &["fcsim.v1.Array"],
    )
    .await
}
