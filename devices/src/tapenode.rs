//! The tape node: an FCP target port in front of one [`TapeDrive`] (LUN 0), so that
//! hosts and copy managers reach it through the fabric like a real FC tape drive.
//! REPORT LUNS is answered here (the drive core has one LU); everything else goes to
//! the drive. The medium lives in memory. The `fcsim.v1.Tape` service shows the drive's
//! state and injects its faults (offline, a write error); end of medium comes from the
//! topology's `capacity_bytes`.

use bytes::Bytes;
use fcsim_fabric::endnode::{EndNodeConfig, EndNodeError, Fc4Ctx, Fc4Layer, run_end_node_with};
use fcsim_fabric::frame::Frame;
use fcsim_fabric::runtime::actor;
use fcsim_fabric::runtime::{FabricClock, Net};
use fcsim_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::history::digest;

use crate::fcp::{FcpTarget, TargetCommand};
use crate::scsi::sense::Sense;
use crate::scsi::target::encode_lun;
use crate::tape::{TapeConfig, TapeDrive};

/// A tape node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TapeNodeConfig {
    /// Ports, names and cables.
    pub node: EndNodeConfig,
    /// The drive and its medium.
    pub tape: TapeConfig,
}

/// The tape's FC-4 layer.
pub struct TapeLayer {
    fcp: FcpTarget,
    drive: TapeDrive,
}

impl TapeLayer {
    fn execute(&mut self, cmd: &TargetCommand) {
        let (status, sense, data) = match (cmd.lun, cmd.cdb.first()) {
            // SPC-5 §6.33: one LU, LUN 0.
            (_, Some(0xA0)) => {
                let mut d = vec![0u8; 16];
                d[3] = 8;
                d[8..16].copy_from_slice(&encode_lun(0));
                let alloc = cmd.cdb.get(6..10).map_or(16, |b| {
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
                });
                (0, Bytes::new(), Bytes::from(d).slice(..alloc.min(16)))
            }
            (Some(0), _) => {
                let data_out = (!cmd.data_out.is_empty()).then(|| cmd.data_out.clone());
                let r = self.drive.execute(&cmd.cdb, data_out);
                (
                    r.status,
                    r.sense.map(|s| s.encode()).unwrap_or_default(),
                    r.data_in,
                )
            }
            _ => (2, Sense::lu_not_supported().encode(), Bytes::new()),
        };
        self.fcp.complete(cmd, status, sense, data);
    }
}

/// Requests of the Tape service.
pub enum TapeAdmin {
    Status(u32, oneshot::Sender<pb::TapeStatusResponse>),
    Offline(bool, oneshot::Sender<pb::TapeStatusResponse>),
    WriteError(u64, oneshot::Sender<pb::TapeStatusResponse>),
}

impl TapeLayer {
    fn status(&self, digest_block_bytes: u32) -> pb::TapeStatusResponse {
        let digests = if digest_block_bytes == 0 {
            Vec::new()
        } else {
            self.drive
                .contents()
                .chunks(digest_block_bytes as usize)
                .map(digest)
                .collect()
        };
        pb::TapeStatusResponse {
            offline: self.drive.is_offline(),
            bytes_written: self.drive.bytes_written(),
            records: self.drive.records().count() as u64,
            position: self.drive.position(),
            early_warning: self.drive.in_early_warning(),
            digests,
            digest_block_bytes,
        }
    }
}

impl Fc4Layer for TapeLayer {
    type Admin = TapeAdmin;

    fn on_frame(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, frame: Frame) {
        if !self.fcp.handle_frame(port, &frame) {
            ctx.hub.count_discard(port);
        }
        while let Some(cmd) = self.fcp.poll_command() {
            let logged_in = ctx
                .ports
                .get(&cmd.port)
                .is_some_and(|np| np.logged_in().contains_key(&cmd.initiator));
            if logged_in {
                self.execute(&cmd);
            } else {
                debug!(initiator = %cmd.initiator, "FCP command from a port not logged in: dropped");
            }
        }
        while let Some((p, f)) = self.fcp.poll_transmit() {
            ctx.send(p, &f);
        }
    }

    fn on_link_down(&mut self, _ctx: &mut Fc4Ctx<'_>, port: u32) {
        self.fcp.port_down(port);
    }

    fn on_admin(&mut self, _ctx: &mut Fc4Ctx<'_>, req: Self::Admin) {
        match req {
            TapeAdmin::Status(bb, reply) => {
                let _ = reply.send(self.status(bb));
            }
            TapeAdmin::Offline(off, reply) => {
                info!(offline = off, "tape drive state set");
                self.drive.set_offline(off);
                let _ = reply.send(self.status(0));
            }
            TapeAdmin::WriteError(after, reply) => {
                info!(after_bytes = after, "tape write error armed");
                self.drive.inject_write_error(after);
                let _ = reply.send(self.status(0));
            }
        }
    }
}

/// Runs a tape node until its task is dropped.
pub async fn run_tape(
    cfg: TapeNodeConfig,
    net: Net,
    clock: FabricClock,
) -> Result<(), EndNodeError> {
    let drive = match TapeDrive::new(cfg.tape.clone()) {
        Ok(d) => d,
        Err(e) => {
            warn!(node = %cfg.node.name, "tape cannot start: {e}");
            return Ok(());
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let routes = tonic::service::Routes::new(pb::tape_server::TapeServer::new(TapeService { tx }));
    let layer = TapeLayer {
        fcp: FcpTarget::new(),
        drive,
    };
    run_end_node_with(
        cfg.node,
        net,
        clock,
        layer,
        Some(routes),
        rx,
        &["fcsim.v1.Tape"],
    )
    .await
}

struct TapeService {
    tx: mpsc::UnboundedSender<TapeAdmin>,
}

impl TapeService {
    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<pb::TapeStatusResponse>) -> TapeAdmin,
    ) -> Result<Response<pb::TapeStatusResponse>, Status> {
        actor::ask(&self.tx, "tape", make).await.map(Response::new)
    }
}

#[tonic::async_trait]
impl pb::tape_server::Tape for TapeService {
    async fn tape_status(
        &self,
        r: Request<pb::TapeStatusRequest>,
    ) -> Result<Response<pb::TapeStatusResponse>, Status> {
        let bb = r.into_inner().digest_block_bytes;
        if bb != 0 && !(512..=1 << 20).contains(&bb) {
            return Err(Status::invalid_argument(format!(
                "digest_block_bytes: {bb} is not 0 or 512 B to 1 MiB"
            )));
        }
        self.ask(|tx| TapeAdmin::Status(bb, tx)).await
    }

    async fn set_offline(
        &self,
        r: Request<pb::SetOfflineRequest>,
    ) -> Result<Response<pb::TapeStatusResponse>, Status> {
        let off = r.into_inner().offline;
        self.ask(|tx| TapeAdmin::Offline(off, tx)).await
    }

    async fn inject_write_error(
        &self,
        r: Request<pb::InjectWriteErrorRequest>,
    ) -> Result<Response<pb::TapeStatusResponse>, Status> {
        let after = r.into_inner().after_bytes;
        self.ask(|tx| TapeAdmin::WriteError(after, tx)).await
    }
}
