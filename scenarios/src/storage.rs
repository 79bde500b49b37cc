//! Storage steps and checks of the orchestrator: workloads run on hosts through the
//! `fcsim.v1.Host` service, and the oracle checks compare what hosts acknowledged (their
//! write history) with what is really on the arrays' media (read through the
//! `fcsim.v1.Array` back door, not through the fabric).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fcsim_devices::history::{History, WriteOutcome, WriteRecord};
use fcsim_proto::v1 as pb;
use tokio_stream::StreamExt;

use fcsim_devices::scsi::inquiry::NaaId;
use fcsim_devices::scsi::xcopy::{DeviceParams, ParameterList, Segment, TargetDescriptor};

use crate::format::{Check, ExpectStatus, LuRef, Step, WorkloadMix, WorkloadPattern};
use crate::launch::{lu_naa, tape_naa};
use crate::runner::{Orchestrator, StepResult};

/// What the orchestrator knows of a running workload.
#[derive(Debug, Default)]
pub struct WorkloadState {
    /// Host running it.
    pub host: String,
    /// Its device (`array:lun`).
    pub device: String,
    /// The latest progress report.
    pub last: Option<pb::WorkloadProgress>,
    /// The stream ended (normally or not).
    pub finished: bool,
    /// The stream failed.
    pub error: Option<String>,
    /// The host's write history, saved just before the host crashed or was destroyed
    /// (the oracle outlives the host).
    pub saved_history: Option<Vec<WriteRecord>>,
}

pub type WorkloadHandle = Arc<Mutex<WorkloadState>>;

/// Largest number of blocks read per `LuDigests` call.
const DIGEST_CHUNK: u64 = 65_536;

impl Orchestrator {
    pub(crate) async fn start_workload(&mut self, step: &Step) -> StepResult {
        let Step::Workload {
            name,
            host,
            target,
            pattern,
            mix,
            read_percent,
            block_bytes,
            qd,
            count,
            duration,
            verify,
            seed,
        } = step
        else {
            return Err("not a workload step".into());
        };
        let seed = seed.unwrap_or_else(|| {
            name.bytes()
                .fold(self.scenario.seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| {
                    h.rotate_left(5) ^ u64::from(b)
                })
        });
        let req = pb::WorkloadRequest {
            name: name.clone(),
            device: target.to_string(),
            pattern: match pattern {
                WorkloadPattern::Sequential => "sequential",
                WorkloadPattern::Random => "random",
            }
            .into(),
            mix: match mix {
                WorkloadMix::Read => "read",
                WorkloadMix::Write => "write",
                WorkloadMix::Mixed => "mixed",
            }
            .into(),
            read_percent: u32::from(*read_percent),
            block_bytes: *block_bytes,
            qd: *qd,
            count: count.unwrap_or(0),
            duration_us: duration.map_or(0, |d| {
                u64::try_from(d.to_std().as_micros()).unwrap_or(u64::MAX)
            }),
            verify: *verify,
            seed,
        };
        let mut client = pb::host_client::HostClient::new(self.channel(host).await?);
        let mut stream = client
            .run_workload(req)
            .await
            .map_err(|s| format!("{}: {}", host, s.message()))?
            .into_inner();
        let state: WorkloadHandle = Arc::new(Mutex::new(WorkloadState {
            host: host.clone(),
            device: target.to_string(),
            ..Default::default()
        }));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                match stream.next().await {
                    Some(Ok(p)) => {
                        let done = p.done;
                        lock(&st).last = Some(p);
                        if done {
                            break;
                        }
                    }
                    Some(Err(s)) => {
                        lock(&st).error = Some(s.message().to_string());
                        break;
                    }
                    None => break,
                }
            }
            lock(&st).finished = true;
        });
        self.workloads.insert(name.clone(), state);
        Ok(format!(
            "workload {name} started on {host} against {target}"
        ))
    }

    /// One WRITE of a byte pattern from a host (`write` step).
    pub(crate) async fn host_write(&mut self, step: &Step) -> StepResult {
        let Step::Write {
            host,
            target,
            lba,
            blocks,
            byte,
        } = step
        else {
            return Err("not a write step".into());
        };
        let bb = self.scenario.topology.lu_block_bytes(target).unwrap_or(512);
        let data = vec![*byte; *blocks as usize * bb as usize];
        let mut hc = self.host(host).await?;
        let r = hc
            .write(pb::WriteRequest {
                device: target.to_string(),
                lba: *lba,
                data: data.into(),
                fua: false,
            })
            .await
            .map_err(|s| format!("{host}: {:?}: {}", s.code(), s.message()))?
            .into_inner()
            .result
            .unwrap_or_default();
        if r.status == 0 && r.transport_error.is_empty() {
            Ok(format!(
                "WRITE {target} LBA {lba}+{blocks} = {byte} from {host}"
            ))
        } else {
            Err(format!(
                "WRITE {target} LBA {lba}+{blocks} from {host}: status {:#04x} {}",
                r.status, r.transport_error
            ))
        }
    }

    pub(crate) async fn xcopy(&mut self, step: &Step) -> StepResult {
        let Step::Xcopy {
            host,
            manager,
            list_id,
            segments,
            expect,
        } = step
        else {
            return Err("not an xcopy step".into());
        };
        let parameter_list = xcopy_parameter_list(&self.scenario.topology, *list_id, segments)?;
        let issued = self.now();
        let mut hc = self.host(host).await?;
        let r = hc
            .extended_copy(pb::ExtendedCopyRequest {
                device: manager.to_string(),
                parameter_list,
            })
            .await
            .map_err(|s| format!("{host}: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        let blocks: u64 = segments.iter().map(|s| s.blocks).sum();
        let got = outcome_of(&r);
        if got == ExpectStatus::Good {
            let sources: Vec<LuRef> = segments.iter().map(|s| s.src.clone()).collect();
            let window = (issued, self.now());
            self.note_backup_split(&sources, window);
        }
        let text = format!(
            "EXTENDED COPY of {blocks} blocks via {manager} from {host}: status {:#04x} {}{} after {}µs",
            r.status, r.sense_text, r.transport_error, r.latency_us
        );
        if got == *expect {
            Ok(text)
        } else {
            Err(format!("{text}, expected {expect:?}"))
        }
    }

    pub(crate) async fn tape_fault(&mut self, step: &Step) -> StepResult {
        let Step::TapeFault {
            tape,
            offline,
            write_error_after_bytes,
        } = step
        else {
            return Err("not a tape_fault step".into());
        };
        let mut c = pb::tape_client::TapeClient::new(self.channel(tape).await?);
        let mut said = Vec::new();
        if let Some(off) = offline {
            c.set_offline(pb::SetOfflineRequest { offline: *off })
                .await
                .map_err(|s| s.message().to_string())?;
            said.push(if *off {
                "offline".to_string()
            } else {
                "online".to_string()
            });
        }
        if let Some(after) = write_error_after_bytes {
            c.inject_write_error(pb::InjectWriteErrorRequest {
                after_bytes: *after,
            })
            .await
            .map_err(|s| s.message().to_string())?;
            said.push(format!("write error armed after {after} bytes"));
        }
        Ok(format!("tape {tape}: {}", said.join(", ")))
    }

    /// Waits (in fabric time) for a workload's stream to end.
    async fn await_workload(&mut self, name: &str) -> Result<WorkloadHandle, String> {
        let h = self
            .workloads
            .get(name)
            .cloned()
            .ok_or_else(|| format!("workload {name} was never started"))?;
        let (limit, pause) = match self.net {
            fcsim_fabric::runtime::Net::Sim => {
                (Duration::from_secs(120), Duration::from_micros(500))
            }
            fcsim_fabric::runtime::Net::Tokio => {
                (Duration::from_secs(120), Duration::from_millis(20))
            }
        };
        let start = self.now();
        while !lock(&h).finished {
            if self.now() - start > limit {
                return Err(format!("workload {name} did not finish"));
            }
            self.clock.sleep(pause).await;
        }
        Ok(h)
    }

    /// A workload's last progress report once its stream ended; an error if it failed.
    async fn finished_workload(&mut self, name: &str) -> Result<pb::WorkloadProgress, String> {
        let h = self.await_workload(name).await?;
        let st = lock(&h);
        if let Some(e) = &st.error {
            return Err(format!("workload {name} failed: {e}"));
        }
        Ok(st.last.clone().unwrap_or_default())
    }

    /// A host's write history for one device.
    async fn write_history(
        &mut self,
        host: &str,
        device: &str,
    ) -> Result<Vec<WriteRecord>, String> {
        let mut hc = self.host(host).await?;
        let hist = hc
            .write_history(pb::WriteHistoryRequest {
                device: device.to_string(),
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        Ok(hist.writes.into_iter().map(record_from_pb).collect())
    }

    /// A workload's device and its write history (kept from before its host went
    /// down, or asked of the host), after the workload finished if `wait`.
    pub(crate) async fn workload_history(
        &mut self,
        workload: &str,
        wait: bool,
    ) -> Result<(String, History), String> {
        let h = if wait {
            self.await_workload(workload).await?
        } else {
            self.workloads
                .get(workload)
                .cloned()
                .ok_or_else(|| format!("workload {workload} was never started"))?
        };
        let (host, device, saved) = {
            let st = lock(&h);
            (st.host.clone(), st.device.clone(), st.saved_history.clone())
        };
        let records = match saved {
            Some(r) => r,
            None => self.write_history(&host, &device).await?,
        };
        Ok((device, History::from_records(records)))
    }

    /// Keeps the write history of every workload of `host`, which is about to go down.
    pub(crate) async fn save_histories(&mut self, host: &str) {
        let mine: Vec<WorkloadHandle> = self
            .workloads
            .values()
            .filter(|h| lock(h).host == host && lock(h).saved_history.is_none())
            .cloned()
            .collect();
        for h in mine {
            let device = lock(&h).device.clone();
            if let Ok(records) = self.write_history(host, &device).await {
                lock(&h).saved_history = Some(records);
            }
        }
    }

    async fn array(
        &mut self,
        node: &str,
    ) -> Result<pb::array_client::ArrayClient<tonic::transport::Channel>, String> {
        Ok(pb::array_client::ArrayClient::new(
            self.channel(node).await?,
        ))
    }

    /// A tape's status with per-block digests of its medium, read back in blocks of
    /// `block_bytes`.
    pub(crate) async fn tape_digests(
        &mut self,
        tape: &str,
        block_bytes: u32,
    ) -> Result<pb::TapeStatusResponse, String> {
        let mut tc = pb::tape_client::TapeClient::new(self.channel(tape).await?);
        Ok(tc
            .tape_status(pb::TapeStatusRequest {
                digest_block_bytes: block_bytes,
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner())
    }

    pub(crate) async fn host(
        &mut self,
        node: &str,
    ) -> Result<pb::host_client::HostClient<tonic::transport::Channel>, String> {
        Ok(pb::host_client::HostClient::new(self.channel(node).await?))
    }

    /// Per-block digests of a whole LU, from the arrays' media. A virtual LU is read
    /// through the extents the scenario gives it (the configuration, not what the switch
    /// reports: the oracle must not trust the code it checks).
    pub(crate) async fn lu_digests(&mut self, lu: &LuRef) -> Result<Vec<u64>, String> {
        let Some(v) = self.scenario.topology.virtual_lu(lu).cloned() else {
            return self.array_digests(lu, 0, None).await;
        };
        let mut out = Vec::new();
        for e in &v.extents {
            let Some(real) = &e.lu else {
                return Err(format!(
                    "{lu}: an INTERNAL extent has no array medium to read"
                ));
            };
            out.extend(self.array_digests(real, e.start, Some(e.blocks)).await?);
        }
        Ok(out)
    }

    /// Per-block digests of `blocks` blocks (default: to the end) of an array LU from `from`.
    async fn array_digests(
        &mut self,
        lu: &LuRef,
        from: u64,
        blocks: Option<u64>,
    ) -> Result<Vec<u64>, String> {
        let total = self
            .scenario
            .topology
            .array_lu(lu)
            .map(|l| l.blocks)
            .ok_or_else(|| format!("{lu}: no such LU"))?;
        let blocks = blocks.map_or(total, |n| (from + n).min(total));
        let mut c = self.array(&lu.node).await?;
        let mut out = Vec::new();
        let mut lba = from;
        while lba < blocks {
            let n = (blocks - lba).min(DIGEST_CHUNK);
            let r = c
                .lu_digests(pb::LuDigestsRequest {
                    lun: lu.lun,
                    lba,
                    blocks: u32::try_from(n).unwrap_or(u32::MAX),
                })
                .await
                .map_err(|s| format!("{lu}: {}", s.message()))?;
            out.extend(r.into_inner().digests);
            lba += n;
        }
        Ok(out)
    }

    pub(crate) async fn storage_check(&mut self, c: &Check) -> StepResult {
        match c {
            Check::WorkloadErrors {
                workload,
                at_most,
                p50_at_most,
                p50_below,
            } => {
                let p = self.finished_workload(workload).await?;
                let other = match p50_below {
                    Some(o) => Some((o, self.finished_workload(o).await?.p50_latency_us)),
                    None => None,
                };
                let errors = p.errors + p.verify_failures;
                let text = format!(
                    "workload {workload}: {} I/Os, {} errors, {} verify failures, p50 {}µs p99 {}µs{}",
                    p.completed,
                    p.errors,
                    p.verify_failures,
                    p.p50_latency_us,
                    p.p99_latency_us,
                    if p.first_error.is_empty() {
                        String::new()
                    } else {
                        format!(" (first: {})", p.first_error)
                    }
                );
                let mut text = text;
                let mut ok = errors <= *at_most;
                if let Some(d) = p50_at_most {
                    let limit = u64::try_from(d.to_std().as_micros()).unwrap_or(u64::MAX);
                    ok &= p.p50_latency_us <= limit;
                    text += &format!("; p50 at most {d} expected");
                }
                if let Some((o, theirs)) = other {
                    ok &= p.p50_latency_us < theirs;
                    text += &format!("; {o}'s p50 is {theirs}µs, this one expected below it");
                }
                if ok { Ok(text) } else { Err(text) }
            }
            Check::NoAckedWriteLost { workload, volume } => {
                let (device, history) = self.workload_history(workload, true).await?;
                let digests = self.lu_digests(volume).await?;
                let acked = history.acked_count(&device);
                match history.check_no_acked_write_lost(&device, |lba| {
                    usize::try_from(lba)
                        .ok()
                        .and_then(|i| digests.get(i).copied())
                }) {
                    Ok(blocks) => Ok(format!(
                        "{acked} acknowledged writes of {workload}: all {blocks} blocks on {volume} hold them"
                    )),
                    Err(lost) => Err(format!(
                        "{} of {acked} acknowledged writes of {workload} are not on {volume} (first: write {} at LBA {})",
                        lost.len(),
                        lost.first().map_or(0, |l| l.id),
                        lost.first().map_or(0, |l| l.lba)
                    )),
                }
            }
            Check::VolumesEqual { a, b, differ } => {
                let da = self.lu_digests(a).await?;
                let db = self.lu_digests(b).await?;
                if da.len() != db.len() {
                    return Err(format!("{a} has {} blocks, {b} has {}", da.len(), db.len()));
                }
                let diff: Vec<usize> = (0..da.len()).filter(|i| da[*i] != db[*i]).collect();
                let shown: Vec<String> = diff.iter().take(8).map(usize::to_string).collect();
                let text = match diff.len() {
                    0 => format!("{a} and {b} are identical ({} blocks)", da.len()),
                    n => format!(
                        "{a} and {b} differ in {n} blocks (LBAs {}{})",
                        shown.join(", "),
                        if n > shown.len() { ", …" } else { "" }
                    ),
                };
                if diff.is_empty() != *differ {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
            Check::BlocksHold { volume, lba, bytes } => {
                let bb = self.scenario.topology.lu_block_bytes(volume).unwrap_or(512);
                let d = self.lu_digests(volume).await?;
                let bad: Vec<String> = bytes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| {
                        let at = *lba + i as u64;
                        let want = fcsim_devices::history::digest(&vec![*v; bb as usize]);
                        let got = usize::try_from(at).ok().and_then(|a| d.get(a));
                        (got != Some(&want)).then(|| format!("LBA {at} is not {v}"))
                    })
                    .collect();
                let values: Vec<String> = bytes.iter().map(u8::to_string).collect();
                let text = format!(
                    "{volume} LBAs {lba}–{} hold ({})",
                    *lba + bytes.len() as u64 - 1,
                    values.join(", ")
                );
                if bad.is_empty() {
                    Ok(text)
                } else {
                    Err(format!(
                        "{}; expected ({})",
                        bad.join(", "),
                        values.join(", ")
                    ))
                }
            }
            Check::Masked { host, target } => {
                let naa = lu_naa(&self.scenario.topology, &target.node, target.lun)
                    .ok_or_else(|| format!("{target}: no such LU"))?
                    .to_string();
                let mut hc = self.host(host).await?;
                let devices = hc
                    .list_devices(pb::ListDevicesRequest {})
                    .await
                    .map_err(|s| s.message().to_string())?;
                let seen = devices.into_inner().devices.iter().any(|d| d.naa == naa);
                let text = format!(
                    "{host} {} {target}",
                    if seen { "sees" } else { "does not see" }
                );
                if seen { Err(text) } else { Ok(text) }
            }
            Check::ReadReturns {
                host,
                target,
                lba,
                blocks,
                status,
                sense_key,
            } => {
                let mut hc = self.host(host).await?;
                let r = hc
                    .read(pb::ReadRequest {
                        device: target.to_string(),
                        lba: *lba,
                        blocks: *blocks,
                    })
                    .await
                    .map_err(|s| format!("{host}: {:?}: {}", s.code(), s.message()))?
                    .into_inner()
                    .result
                    .unwrap_or_default();
                let got = outcome_of(&r);
                let text = format!(
                    "READ {target} LBA {lba}+{blocks} from {host}: status {:#04x} {}{}",
                    r.status,
                    r.sense_text,
                    if r.transport_error.is_empty() {
                        String::new()
                    } else {
                        format!("transport error {}", r.transport_error)
                    }
                );
                let key_ok = sense_key
                    .as_ref()
                    .is_none_or(|k| r.sense_text.starts_with(k.as_str()));
                if got == *status && key_ok {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
            Check::TapeMatches {
                tape,
                volume,
                lba,
                blocks,
            } => {
                let bb = self.scenario.topology.lu_block_bytes(volume).unwrap_or(512);
                let t = self.tape_digests(tape, bb).await?;
                let vol = self.lu_digests(volume).await?;
                let want = vol
                    .get(*lba as usize..(*lba + *blocks) as usize)
                    .unwrap_or_default();
                if t.digests.as_slice() == want {
                    Ok(format!(
                        "{tape} holds {volume} blocks {lba}+{blocks} exactly ({} bytes)",
                        t.bytes_written
                    ))
                } else {
                    let first = t.digests.iter().zip(want).position(|(a, b)| a != b);
                    Err(format!(
                        "{tape} has {} blocks ({} bytes), {volume} range has {}; first difference at block {:?}",
                        t.digests.len(),
                        t.bytes_written,
                        want.len(),
                        first
                    ))
                }
            }
            _ => Err(format!("{} is not a storage check", c.name())),
        }
    }
}

/// The EXTENDED COPY (LID1) parameter list of an `xcopy` step: one identification
/// target descriptor per device, segments of at most 65535 blocks.
pub fn xcopy_parameter_list(
    topo: &crate::format::Topology,
    list_id: u8,
    segments: &[crate::format::XcopySegment],
) -> Result<bytes::Bytes, String> {
    let mut targets: Vec<TargetDescriptor> = Vec::new();
    let index = |r: &LuRef, targets: &mut Vec<TargetDescriptor>| -> Result<u16, String> {
        let block = crate::launch::virtual_naa(topo, &r.node, r.lun)
            .or_else(|| lu_naa(topo, &r.node, r.lun));
        let (naa, params) = match block {
            Some(n) => {
                let bb = topo.lu_block_bytes(r).unwrap_or(512);
                (
                    n,
                    DeviceParams::Block {
                        pad: false,
                        block_bytes: bb,
                    },
                )
            }
            None => (
                tape_naa(topo, &r.node).ok_or_else(|| format!("{r}: not an LU or a tape"))?,
                DeviceParams::Stream {
                    pad: false,
                    fixed: false,
                    block_bytes: 0,
                },
            ),
        };
        let naa = NaaId::Short(naa);
        if let Some(i) = targets.iter().position(|t| t.naa == naa) {
            return Ok(u16::try_from(i).unwrap_or(u16::MAX));
        }
        targets.push(TargetDescriptor {
            naa,
            relative_initiator_port: 0,
            params,
        });
        Ok(u16::try_from(targets.len() - 1).unwrap_or(u16::MAX))
    };
    let mut segs = Vec::new();
    for seg in segments {
        let src = index(&seg.src, &mut targets)?;
        let dst = index(&seg.dst, &mut targets)?;
        let to_tape = tape_naa(topo, &seg.dst.node).is_some();
        let mut done = 0u64;
        while done < seg.blocks {
            let n = (seg.blocks - done).min(u64::from(u16::MAX));
            let blocks = u16::try_from(n).unwrap_or(u16::MAX);
            segs.push(if to_tape {
                Segment::BlockToStream {
                    cat: false,
                    src,
                    dst,
                    stream_transfer_length: 0,
                    blocks,
                    lba: seg.src_lba + done,
                }
            } else {
                Segment::BlockToBlock {
                    cat: false,
                    dc: false,
                    src,
                    dst,
                    blocks,
                    src_lba: seg.src_lba + done,
                    dst_lba: seg.dst_lba + done,
                }
            });
            done += n;
        }
    }
    let list = ParameterList {
        list_id,
        str_bit: false,
        list_id_usage: 0,
        priority: 0,
        targets,
        segments: segs,
        inline_data: bytes::Bytes::new(),
    };
    Ok(list.encode())
}

/// How a SCSI command ended, in the terms checks and steps expect.
fn outcome_of(r: &pb::ScsiResult) -> ExpectStatus {
    if !r.transport_error.is_empty() {
        ExpectStatus::TransportError
    } else if r.status == 0 {
        ExpectStatus::Good
    } else {
        ExpectStatus::CheckCondition
    }
}

fn lock(h: &WorkloadHandle) -> std::sync::MutexGuard<'_, WorkloadState> {
    h.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A history record as the host reported it over gRPC.
fn record_from_pb(w: pb::WriteRecord) -> WriteRecord {
    let us = Duration::from_micros;
    let outcome = match w.outcome.as_str() {
        "acked" => WriteOutcome::Acked,
        "pending" => WriteOutcome::Pending,
        other => WriteOutcome::Failed(other.trim_start_matches("failed: ").to_string()),
    };
    WriteRecord {
        id: w.id,
        volume: w.device,
        lba: w.lba,
        blocks: w.blocks,
        block_bytes: w.block_bytes,
        block_digests: w.block_digests,
        data: None,
        issued_at: us(w.issued_us),
        acked_at: (w.acked_us > 0).then(|| us(w.acked_us)),
        failed_at: None,
        outcome,
        issue_seq: w.issue_seq,
        end_seq: (w.end_seq > 0).then_some(w.end_seq),
    }
}
