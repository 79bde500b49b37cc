//! The host node: HBA N_Ports, the SCSI initiator with discovery and multipath
//! ([`ScsiInitiator`]), the workload generator, the write history (the scenario oracle),
//! and the `fcsim.v1.Host` gRPC service that outside clients use for host commands.
//!
//! Start here: [`run_host`]. The gRPC service only forwards requests to the node's actor
//! ([`HostLayer`], an [`Fc4Layer`]); SCSI errors come back as status and sense inside
//! the response, argument errors as INVALID_ARGUMENT naming the field.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use fcsim_fabric::Wwn;
use fcsim_fabric::endnode::{EndNodeConfig, EndNodeError, Fc4Ctx, Fc4Layer, run_end_node_with};
use fcsim_fabric::frame::Frame;
use fcsim_fabric::nport::NPortEvent;
use fcsim_fabric::runtime::{FabricClock, Net};
use fcsim_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};
use tracing::{debug, info};

use crate::fcp::IoRequest;
use crate::history::{History, WriteOutcome};
use crate::initiator::{Completion, InitiatorEvent, IoId, ScsiInitiator, cdb, parse};
use crate::workload::{IoDone, IoKind, Limit, Mix, Pattern, Workload, WorkloadSpec};

/// A host node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostConfig {
    /// Ports, names and cables.
    pub node: EndNodeConfig,
    /// Device aliases (multipath.conf style): `arr1:0` → the LU's NAA.
    pub aliases: BTreeMap<String, Wwn>,
}

/// What one gRPC call asked the actor for (built only by the Host service).
pub enum HostAdmin {
    ListDevices(oneshot::Sender<pb::ListDevicesResponse>),
    Scsi {
        device: String,
        op: Op,
        reply: oneshot::Sender<Result<(pb::ScsiResult, Option<u64>), Status>>,
    },
    Workload {
        req: pb::WorkloadRequest,
        progress: mpsc::Sender<Result<pb::WorkloadProgress, Status>>,
    },
    History {
        device: String,
        reply: oneshot::Sender<pb::WriteHistoryResponse>,
    },
}

/// A command from a gRPC call; reads and writes are sized by the device's block size.
pub enum Op {
    Raw(IoRequest),
    Read { lba: u64, blocks: u32 },
    Write { lba: u64, data: Bytes, fua: bool },
}

/// Who waits for a command.
enum Waiter {
    Call {
        reply: oneshot::Sender<Result<(pb::ScsiResult, Option<u64>), Status>>,
        write_id: Option<u64>,
    },
    Workload {
        run: u64,
        io: u64,
        write_id: Option<u64>,
    },
}

struct Run {
    workload: Workload,
    naa: Wwn,
    device: String,
    block_bytes: u32,
    progress: mpsc::Sender<Result<pb::WorkloadProgress, Status>>,
    /// Completions since the last progress message.
    since_report: u64,
    /// When a duration-limited workload stops issuing; cleared once it has passed (a
    /// deadline in the past would wake the actor in a loop).
    deadline: Option<Duration>,
    /// The first failed I/O, for the report.
    first_error: Option<String>,
}

/// The workload a `RunWorkload` request describes; errors name the request field.
pub fn spec_from_request(r: &pb::WorkloadRequest) -> Result<WorkloadSpec, Status> {
    let bad = |f: &str, d: String| Status::invalid_argument(format!("{f}: {d}"));
    let pattern = match r.pattern.as_str() {
        "" | "random" => Pattern::Random,
        "sequential" => Pattern::Sequential,
        other => {
            return Err(bad(
                "pattern",
                format!("`{other}` is not sequential or random"),
            ));
        }
    };
    let mix = match r.mix.as_str() {
        "" | "write" => Mix::Write,
        "read" => Mix::Read,
        "mixed" => Mix::Mixed {
            read_percent: u8::try_from(r.read_percent)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| bad("read_percent", format!("{} is not 0-100", r.read_percent)))?,
        },
        other => return Err(bad("mix", format!("`{other}` is not read, write or mixed"))),
    };
    let limit = match (r.count, r.duration_us) {
        (0, 0) => return Err(bad("count", "set count or duration_us".into())),
        (n, 0) => Limit::Count(n),
        (0, us) => Limit::Duration(Duration::from_micros(us)),
        _ => return Err(bad("count", "set only one of count and duration_us".into())),
    };
    if r.qd == 0 {
        return Err(bad("qd", "must be at least 1".into()));
    }
    if r.block_bytes == 0 {
        return Err(bad("block_bytes", "must be at least one block".into()));
    }
    Ok(WorkloadSpec {
        name: r.name.clone(),
        pattern,
        mix,
        block_bytes: r.block_bytes,
        qd: r.qd,
        limit,
        verify: r.verify,
        lba_range: None,
        seed: r.seed,
    })
}

/// The host's FC-4 layer: everything above the N_Ports.
pub struct HostLayer {
    init: ScsiInitiator,
    aliases: BTreeMap<String, Wwn>,
    history: History,
    waiting: BTreeMap<IoId, Waiter>,
    runs: BTreeMap<u64, Run>,
    next_run: u64,
}

impl HostLayer {
    pub fn new(aliases: BTreeMap<String, Wwn>) -> Self {
        HostLayer {
            init: ScsiInitiator::new(),
            aliases,
            history: History::default(),
            waiting: BTreeMap::new(),
            runs: BTreeMap::new(),
            next_run: 0,
        }
    }

    /// A device name (alias or NAA) → its NAA.
    fn resolve(&self, device: &str) -> Result<Wwn, Status> {
        if device.is_empty() {
            return Err(Status::invalid_argument(
                "device: must name a device (alias like `arr1:0` or an NAA)",
            ));
        }
        self.aliases
            .get(device)
            .copied()
            .or_else(|| device.parse::<Wwn>().ok())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "device: `{device}` is neither an alias nor an NAA"
                ))
            })
    }

    fn name_of(&self, naa: Wwn) -> String {
        self.aliases
            .iter()
            .find(|(_, v)| **v == naa)
            .map_or_else(|| naa.to_string(), |(k, _)| k.clone())
    }

    fn list_devices(&self) -> pb::ListDevicesResponse {
        let devices = self
            .init
            .devices()
            .values()
            .map(|d| pb::Device {
                name: self.name_of(d.naa),
                naa: d.naa.to_string(),
                vendor: d.vendor.clone(),
                product: d.product.clone(),
                blocks: d.blocks,
                block_bytes: d.block_bytes,
                paths: d
                    .paths
                    .iter()
                    .map(|p| pb::Path {
                        port: p.port,
                        target_fc_id: p.target.to_string(),
                        target_wwpn: p.target_wwpn.to_string(),
                        lun: p.lun,
                        state: if p.active { "active" } else { "failed" }.into(),
                    })
                    .collect(),
                functions: d.functions.clone(),
                third_party_copy: d.third_party_copy,
            })
            .collect();
        pb::ListDevicesResponse { devices }
    }

    fn start_workload(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        req: pb::WorkloadRequest,
        progress: mpsc::Sender<Result<pb::WorkloadProgress, Status>>,
    ) {
        let started = (|| {
            let naa = self.resolve(&req.device)?;
            let dev = self.init.device(naa).ok_or_else(|| {
                Status::not_found(format!(
                    "device: `{}` is not visible to this host",
                    req.device
                ))
            })?;
            let spec = spec_from_request(&req)?;
            let workload = Workload::new(spec, dev.blocks, dev.block_bytes)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            Ok::<_, Status>((naa, dev.block_bytes, workload))
        })();
        match started {
            Err(s) => {
                let _ = progress.try_send(Err(s));
            }
            Ok((naa, block_bytes, mut workload)) => {
                self.next_run += 1;
                workload.start(ctx.now);
                let deadline = match workload.spec().limit {
                    Limit::Duration(d) => Some(ctx.now + d),
                    Limit::Count(_) => None,
                };
                info!(workload = %req.name, device = %req.device, "workload started");
                let run = Run {
                    workload,
                    naa,
                    device: req.device.clone(),
                    block_bytes,
                    progress,
                    since_report: 0,
                    deadline,
                    first_error: None,
                };
                self.runs.insert(self.next_run, run);
                self.pump(ctx, self.next_run);
            }
        }
    }

    /// Issues what workload `run` wants issued now.
    fn pump(&mut self, ctx: &mut Fc4Ctx<'_>, run: u64) {
        loop {
            let Some(r) = self.runs.get_mut(&run) else {
                return;
            };
            if r.deadline.is_some_and(|d| d <= ctx.now) {
                r.deadline = None;
            }
            let Some(io) = r.workload.poll_io(ctx.now) else {
                break;
            };
            let (naa, device, bb) = (r.naa, r.device.clone(), r.block_bytes);
            let (req, write_id) = match io.kind {
                IoKind::Write => {
                    let data = io.data.clone().unwrap_or_default();
                    let id = self
                        .history
                        .record_issue(&device, io.lba, io.blocks, bb, &data, ctx.now);
                    let req = IoRequest {
                        lun: 0,
                        cdb: cdb::write16(io.lba, io.blocks, false),
                        data_out: data,
                        data_in_len: 0,
                    };
                    (req, Some(id))
                }
                IoKind::Read | IoKind::Verify => {
                    let len = io.blocks * bb;
                    (
                        IoRequest {
                            lun: 0,
                            cdb: cdb::read16(io.lba, io.blocks),
                            data_out: Bytes::new(),
                            data_in_len: len,
                        },
                        None,
                    )
                }
            };
            let id = self.init.submit(ctx, naa, req);
            self.waiting.insert(
                id,
                Waiter::Workload {
                    run,
                    io: io.id,
                    write_id,
                },
            );
        }
        self.report(run, false);
    }

    fn report(&mut self, run: u64, force: bool) {
        let Some(r) = self.runs.get_mut(&run) else {
            return;
        };
        let done = r.workload.is_done();
        if !(force || done || r.since_report >= 64) {
            return;
        }
        r.since_report = 0;
        let p = r.workload.progress();
        let msg = pb::WorkloadProgress {
            issued: p.issued,
            completed: p.completed,
            reads: p.reads,
            writes: p.writes,
            errors: p.errors,
            verify_failures: p.verify_failures,
            bytes_read: p.bytes_read,
            bytes_written: p.bytes_written,
            p50_latency_us: p.latency_us.p50,
            p99_latency_us: p.latency_us.p99,
            iops: p.iops,
            done,
            first_error: r
                .first_error
                .clone()
                .or_else(|| r.workload.verify_failure_messages().first().cloned())
                .unwrap_or_default(),
        };
        // A slow client misses intermediate reports, never the last one.
        if done {
            let tx = r.progress.clone();
            fcsim_fabric::runtime::spawn(async move {
                let _ = tx.send(Ok(msg)).await;
            });
            self.runs.remove(&run);
        } else {
            let _ = r.progress.try_send(Ok(msg));
        }
    }

    fn completed(&mut self, ctx: &mut Fc4Ctx<'_>, id: IoId, c: Completion) {
        let Some(w) = self.waiting.remove(&id) else {
            return;
        };
        let ok = c.result.transport.is_none() && c.result.status == crate::initiator::GOOD;
        let error = c.result.transport.map(|t| format!("{t:?}")).or_else(|| {
            (!ok).then(|| {
                format!(
                    "status {:#04x} {}",
                    c.result.status,
                    sense_text(&c.result.sense)
                )
            })
        });
        let write_id = match &w {
            Waiter::Call { write_id, .. } | Waiter::Workload { write_id, .. } => *write_id,
        };
        if let Some(wid) = write_id {
            let known = match &error {
                None => self.history.record_ack(wid, ctx.now),
                Some(e) => self.history.record_failure(wid, e, ctx.now),
            };
            debug_assert!(known, "write {wid} was recorded when issued");
        }
        match w {
            Waiter::Call { reply, write_id } => {
                let _ = reply.send(Ok((scsi_result(&c), write_id)));
            }
            Waiter::Workload { run, io, .. } => {
                if let Some(r) = self.runs.get_mut(&run) {
                    let data = (!c.result.data_in.is_empty()).then(|| c.result.data_in.clone());
                    if r.first_error.is_none() {
                        r.first_error.clone_from(&error);
                    }
                    if let Err(e) = r.workload.complete(io, IoDone { ok, data, error }, ctx.now) {
                        debug!("workload bookkeeping: {e}");
                    }
                    r.since_report += 1;
                }
                self.pump(ctx, run);
            }
        }
    }

    fn drain(&mut self, ctx: &mut Fc4Ctx<'_>) {
        while let Some((id, c)) = self.init.poll_completion() {
            self.completed(ctx, id, c);
        }
        while let Some(ev) = self.init.poll_event() {
            match ev {
                InitiatorEvent::PathUp {
                    naa,
                    port,
                    target,
                    lun,
                } => {
                    info!(device = %self.name_of(naa), port, %target, lun, "path up");
                }
                InitiatorEvent::PathDown {
                    naa,
                    port,
                    target,
                    reason,
                } => {
                    info!(device = %self.name_of(naa), port, %target, %reason, "path down");
                }
            }
        }
        // Duration-limited workloads end on time even with no I/O completing.
        let runs: Vec<u64> = self.runs.keys().copied().collect();
        for r in runs {
            self.pump(ctx, r);
        }
    }
}

/// Fixed-format sense in words: "ILLEGAL REQUEST (24/00)".
pub fn sense_text(sense: &[u8]) -> String {
    if sense.len() < 14 {
        return String::new();
    }
    let key = crate::scsi::sense::SenseKey(sense[2] & 0x0F);
    format!("{} ({:02x}/{:02x})", key.name(), sense[12], sense[13])
}

fn scsi_result(c: &Completion) -> pb::ScsiResult {
    let r = &c.result;
    pb::ScsiResult {
        status: u32::from(r.status),
        sense: r.sense.clone(),
        sense_text: sense_text(&r.sense),
        data: r.data_in.clone(),
        transport_error: match r.transport {
            None => String::new(),
            Some(crate::fcp::TransportError::Timeout) => "timeout".into(),
            Some(crate::fcp::TransportError::LinkDown) => "link-down".into(),
        },
        port: c.port.unwrap_or(u32::MAX),
        latency_us: u64::try_from(c.latency.as_micros()).unwrap_or(u64::MAX),
    }
}

impl Fc4Layer for HostLayer {
    type Admin = HostAdmin;

    fn on_frame(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, frame: Frame) {
        if !self.init.on_frame(ctx, port, &frame) {
            debug!(
                port,
                r_ctl = frame.header.r_ctl,
                "frame for no open exchange"
            );
            ctx.hub.count_discard(port);
        }
        self.drain(ctx);
    }

    fn on_nport_event(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, ev: &NPortEvent) {
        self.init.on_nport_event(ctx, port, ev);
        self.drain(ctx);
    }

    fn on_link_down(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32) {
        self.init.on_link_down(ctx, port);
        self.drain(ctx);
    }

    fn on_admin(&mut self, ctx: &mut Fc4Ctx<'_>, req: HostAdmin) {
        match req {
            HostAdmin::ListDevices(reply) => {
                let _ = reply.send(self.list_devices());
            }
            HostAdmin::Scsi { device, op, reply } => {
                let naa = match self.resolve(&device) {
                    Ok(n) => n,
                    Err(s) => {
                        let _ = reply.send(Err(s));
                        return;
                    }
                };
                let Some(dev) = self.init.device(naa) else {
                    let _ = reply.send(Err(Status::not_found(format!(
                        "device: `{device}` is not visible to this host"
                    ))));
                    return;
                };
                let bb = dev.block_bytes.max(1);
                let (req, write_id) = match op {
                    Op::Raw(req) => (req, None),
                    Op::Read { lba, blocks } => {
                        let Some(len) = blocks.checked_mul(bb) else {
                            let _ = reply.send(Err(Status::invalid_argument(format!(
                                "blocks: {blocks} is too many"
                            ))));
                            return;
                        };
                        (
                            IoRequest {
                                lun: 0,
                                cdb: cdb::read16(lba, blocks),
                                data_out: Bytes::new(),
                                data_in_len: len,
                            },
                            None,
                        )
                    }
                    Op::Write { lba, data, fua } => {
                        let blocks = u32::try_from(data.len() / bb as usize).unwrap_or(u32::MAX);
                        if data.len() % bb as usize != 0 {
                            let msg = format!(
                                "data: {} bytes is not a whole number of {bb}-byte blocks",
                                data.len()
                            );
                            let _ = reply.send(Err(Status::invalid_argument(msg)));
                            return;
                        }
                        let wid = self
                            .history
                            .record_issue(&device, lba, blocks, bb, &data, ctx.now);
                        (
                            IoRequest {
                                lun: 0,
                                cdb: cdb::write16(lba, blocks, fua),
                                data_out: data,
                                data_in_len: 0,
                            },
                            Some(wid),
                        )
                    }
                };
                let id = self.init.submit(ctx, naa, req);
                self.waiting.insert(id, Waiter::Call { reply, write_id });
            }
            HostAdmin::Workload { req, progress } => self.start_workload(ctx, req, progress),
            HostAdmin::History { device, reply } => {
                let writes = self
                    .history
                    .writes()
                    .iter()
                    .filter(|w| device.is_empty() || w.volume == device)
                    .map(|w| pb::WriteRecord {
                        id: w.id,
                        device: w.volume.clone(),
                        lba: w.lba,
                        blocks: w.blocks,
                        block_bytes: w.block_bytes,
                        block_digests: w.block_digests.clone(),
                        issued_us: u64::try_from(w.issued_at.as_micros()).unwrap_or(u64::MAX),
                        acked_us: w
                            .acked_at
                            .map_or(0, |t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX)),
                        outcome: match &w.outcome {
                            WriteOutcome::Pending => "pending".into(),
                            WriteOutcome::Acked => "acked".into(),
                            WriteOutcome::Failed(why) => format!("failed: {why}"),
                        },
                        issue_seq: w.issue_seq,
                        end_seq: w.end_seq.unwrap_or(0),
                    })
                    .collect();
                let _ = reply.send(pb::WriteHistoryResponse { writes });
            }
        }
        self.drain(ctx);
    }

    fn on_timeout(&mut self, ctx: &mut Fc4Ctx<'_>) {
        self.init.on_timeout(ctx);
        self.drain(ctx);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let workloads = self.runs.values().filter_map(|r| r.deadline).min();
        [self.init.poll_timeout(), workloads]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The `fcsim.v1.Host` service: validates arguments, then asks the actor.
struct HostService {
    tx: mpsc::UnboundedSender<HostAdmin>,
}

impl HostService {
    async fn call(&self, device: String, op: Op) -> Result<(pb::ScsiResult, Option<u64>), Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(HostAdmin::Scsi { device, op, reply })
            .map_err(|_| Status::unavailable("host is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("host is shutting down"))?
    }

    async fn scsi(&self, device: String, req: IoRequest) -> Result<pb::ScsiResult, Status> {
        self.call(device, Op::Raw(req)).await.map(|(r, _)| r)
    }
}

fn to_u32(field: &str, v: u64) -> Result<u32, Status> {
    u32::try_from(v).map_err(|_| Status::invalid_argument(format!("{field}: {v} is too large")))
}

#[tonic::async_trait]
impl pb::host_server::Host for HostService {
    async fn list_devices(
        &self,
        _r: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(HostAdmin::ListDevices(reply))
            .map_err(|_| Status::unavailable("host is shutting down"))?;
        rx.await
            .map(Response::new)
            .map_err(|_| Status::unavailable("host is shutting down"))
    }

    async fn inquiry(
        &self,
        r: Request<pb::InquiryRequest>,
    ) -> Result<Response<pb::InquiryResponse>, Status> {
        let r = r.into_inner();
        let page = match r.vpd_page {
            None => None,
            Some(p) => Some(u8::try_from(p).map_err(|_| {
                Status::invalid_argument(format!("vpd_page: {p} is not a page code (0-255)"))
            })?),
        };
        let req = IoRequest {
            lun: 0,
            cdb: cdb::inquiry(page, 255),
            data_out: Bytes::new(),
            data_in_len: 255,
        };
        let result = self.scsi(r.device, req).await?;
        Ok(Response::new(pb::InquiryResponse {
            result: Some(result),
        }))
    }

    async fn read_capacity(
        &self,
        r: Request<pb::ReadCapacityRequest>,
    ) -> Result<Response<pb::ReadCapacityResponse>, Status> {
        let req = IoRequest {
            lun: 0,
            cdb: cdb::read_capacity16(32),
            data_out: Bytes::new(),
            data_in_len: 32,
        };
        let result = self.scsi(r.into_inner().device, req).await?;
        let (blocks, block_bytes) = parse::read_capacity16(&result.data).unwrap_or((0, 0));
        Ok(Response::new(pb::ReadCapacityResponse {
            result: Some(result),
            blocks,
            block_bytes,
        }))
    }

    async fn read(
        &self,
        r: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let r = r.into_inner();
        if r.blocks == 0 {
            return Err(Status::invalid_argument("blocks: must be at least 1"));
        }
        let (result, _) = self
            .call(
                r.device,
                Op::Read {
                    lba: r.lba,
                    blocks: r.blocks,
                },
            )
            .await?;
        Ok(Response::new(pb::ReadResponse {
            result: Some(result),
        }))
    }

    async fn write(
        &self,
        r: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = r.into_inner();
        if r.data.is_empty() {
            return Err(Status::invalid_argument(
                "data: must hold at least one block",
            ));
        }
        let (result, id) = self
            .call(
                r.device,
                Op::Write {
                    lba: r.lba,
                    data: r.data,
                    fua: r.fua,
                },
            )
            .await?;
        Ok(Response::new(pb::WriteResponse {
            result: Some(result),
            write_id: id.unwrap_or(0),
        }))
    }

    async fn scsi_passthrough(
        &self,
        r: Request<pb::PassthroughRequest>,
    ) -> Result<Response<pb::ScsiResult>, Status> {
        let r = r.into_inner();
        if r.cdb.is_empty() || r.cdb.len() > 32 {
            return Err(Status::invalid_argument(format!(
                "cdb: {} bytes; a CDB has 1 to 32",
                r.cdb.len()
            )));
        }
        let req = IoRequest {
            lun: 0,
            cdb: r.cdb,
            data_out: r.data_out,
            data_in_len: r.data_in_len,
        };
        self.scsi(r.device, req).await.map(Response::new)
    }

    async fn extended_copy(
        &self,
        r: Request<pb::ExtendedCopyRequest>,
    ) -> Result<Response<pb::ScsiResult>, Status> {
        let r = r.into_inner();
        if r.parameter_list.len() < 16 {
            return Err(Status::invalid_argument(
                "parameter_list: an EXTENDED COPY (LID1) list has a 16-byte header",
            ));
        }
        let len = to_u32("parameter_list", r.parameter_list.len() as u64)?;
        let req = IoRequest {
            lun: 0,
            cdb: crate::scsi::cdb::ExtendedCopy {
                parameter_list_length: len,
            }
            .encode(),
            data_out: r.parameter_list,
            data_in_len: 0,
        };
        self.scsi(r.device, req).await.map(Response::new)
    }

    async fn receive_copy_results(
        &self,
        r: Request<pb::ReceiveCopyResultsRequest>,
    ) -> Result<Response<pb::ReceiveCopyResultsResponse>, Status> {
        let r = r.into_inner();
        let list_id = u8::try_from(r.list_id)
            .map_err(|_| Status::invalid_argument("list_id: LID1 list identifiers are 0-255"))?;
        let rcr = crate::scsi::cdb::ReceiveCopyResults {
            service_action: crate::scsi::cdb::RcrServiceAction::CopyStatus,
            list_id,
            allocation_length: 64,
        };
        let req = IoRequest {
            lun: 0,
            cdb: rcr.encode(),
            data_out: Bytes::new(),
            data_in_len: 64,
        };
        let result = self.scsi(r.device, req).await?;
        // COPY STATUS parameter data (SPC-4 §6.18.3): byte 4 status, bytes 5-6 segments,
        // byte 7 units, bytes 8-11 transfer count.
        let d = &result.data;
        let copy_status = match d.get(4).map(|b| b & 0x7F) {
            Some(0) => "in-progress",
            Some(1) => "completed",
            Some(2) => "completed-with-error",
            _ => "",
        };
        let segments_processed = d
            .get(5..7)
            .map_or(0, |b| u32::from(u16::from_be_bytes([b[0], b[1]])));
        let transfer_count = d.get(8..12).map_or(0, |b| {
            u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        });
        Ok(Response::new(pb::ReceiveCopyResultsResponse {
            result: Some(result),
            copy_status: copy_status.into(),
            segments_processed,
            transfer_count,
        }))
    }

    type RunWorkloadStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::WorkloadProgress, Status>>;

    async fn run_workload(
        &self,
        r: Request<pb::WorkloadRequest>,
    ) -> Result<Response<Self::RunWorkloadStream>, Status> {
        let req = r.into_inner();
        spec_from_request(&req)?;
        let (tx, rx) = mpsc::channel(16);
        self.tx
            .send(HostAdmin::Workload { req, progress: tx })
            .map_err(|_| Status::unavailable("host is shutting down"))?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn write_history(
        &self,
        r: Request<pb::WriteHistoryRequest>,
    ) -> Result<Response<pb::WriteHistoryResponse>, Status> {
        let (reply, rx) = oneshot::channel();
        let device = r.into_inner().device;
        self.tx
            .send(HostAdmin::History { device, reply })
            .map_err(|_| Status::unavailable("host is shutting down"))?;
        rx.await
            .map(Response::new)
            .map_err(|_| Status::unavailable("host is shutting down"))
    }
}

/// Runs a host node until its task is dropped.
pub async fn run_host(cfg: HostConfig, net: Net, clock: FabricClock) -> Result<(), EndNodeError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let routes = tonic::service::Routes::new(pb::host_server::HostServer::new(HostService { tx }));
    run_end_node_with(
        cfg.node,
        net,
        clock,
        HostLayer::new(cfg.aliases),
        Some(routes),
        rx,
        &["fcsim.v1.Host"],
    )
    .await
}
