//! Support-function operations of the intelligent switch (seed 003 §4.8–§4.13): direct
//! backup to tape, volume copy between virtual LUs, and mirroring, each decided per
//! extent before anything is sent — delegated to the array holding the extent when TF
//! says it can run the function (the same EXTENDED COPY with only the LU and LBA fields
//! rewritten through TM, claim 4), done by the switch with plain reads and writes
//! otherwise.
//!
//! Around the decision: the switch destages dirty cache blocks of the ranges before
//! delegating and drops cached blocks of the destination after (coherence); host writes
//! to a copy's source during the copy set TB before they are acknowledged, and TB is
//! drained by the switch afterwards (S25); an array that rejects a delegated command is
//! struck from TF and the switch falls back; an array that fails a command it accepted is
//! asked with RECEIVE COPY RESULTS how far it got, and the switch resumes from there.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use fcsim_devices::bitmap::DiffBitmap;
use fcsim_devices::fcp::{IoRequest, IoResult, TargetCommand};
use fcsim_devices::initiator::{Completion, cdb};
use fcsim_devices::scsi::cdb::{ExtendedCopy, RcrServiceAction, ReceiveCopyResults};
use fcsim_devices::scsi::inquiry::NaaId;
use fcsim_devices::scsi::sense::{Sense, SenseKey, asc};
use fcsim_devices::scsi::xcopy::{
    CopyJob, CopyOp, CopyOutcome, CopyStatus, DeviceParams, ParameterList, Segment,
    TargetDescriptor,
};
use fcsim_fabric::Wwn;
use fcsim_fabric::endnode::Fc4Ctx;
use fcsim_proto::v1 as pb;
use tracing::{info, warn};

use crate::engine::{CHUNK_BLOCKS, Engine, OffloadMode, Owner, VResult, Waiter, ok};
use crate::tf::SupportFunction;
use crate::tm::Target;

/// What a command an operation sent itself is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpIo {
    /// The delegated EXTENDED COPY.
    Offload,
    /// RECEIVE COPY RESULTS after a failed delegation.
    Results,
    /// A switch-local write to a tape or another switch's LU.
    Write,
    /// A table-acquisition or coherence request to a peer switch.
    Peer,
}

/// The kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Backup,
    VolumeCopy,
    Mirror,
}

impl Kind {
    fn function(self) -> SupportFunction {
        match self {
            Kind::Backup => SupportFunction::DirectBackup,
            Kind::VolumeCopy => SupportFunction::VolumeCopy,
            Kind::Mirror => SupportFunction::Mirroring,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::VolumeCopy => "volume-copy",
            Kind::Mirror => "mirror",
        }
    }
}

/// Operation state (seed 003 §7.4, copy pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Bulk copy (InitialCopy).
    Running,
    /// Copying the blocks TB marked (S25, DiffDrain).
    Draining,
    /// Mirror in sync; later host writes are marked in TB and copied (update copy).
    Paired,
    Done,
    Failed,
}

/// Where a segment's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dest {
    Tape(Wwn),
    /// A virtual LU of this switch.
    Virtual(u16),
    /// A block LU reached through the fabric (another switch's virtual LU).
    Remote(Wwn),
}

/// Who runs a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exec {
    Undecided,
    /// Waiting for the peer switch's TF and TM (table acquisition, S21/S23).
    Acquiring,
    Array {
        device: String,
        real_src: Wwn,
        real_lba: u64,
        real_dst: Option<(Wwn, u64)>,
        /// The remote virtual LU the array writes behind its switch's back, and whether
        /// that switch has destaged and dropped the range yet.
        peer: Option<(Wwn, bool)>,
    },
    Switch,
}

/// One piece of work: a source range on one extent, going to one destination extent.
#[derive(Debug, Clone)]
struct Seg {
    src_lun: u16,
    src_lba: u64,
    dest: Dest,
    dst_lba: u64,
    blocks: u64,
    done: u64,
    exec: Exec,
    /// The last segment of host copy operation (segment descriptor) `cop`.
    ends_cop: bool,
}

/// A source range whose host writes TB tracks, and where its blocks go.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    src_lun: u16,
    src_lba: u64,
    dest: Dest,
    dst_lba: u64,
    blocks: u64,
}

/// What an operation is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Nothing,
    Destage,
    /// A chunk read (`blocks` blocks) for the bulk copy or the drain.
    Read {
        blocks: u64,
        drain: Option<(u16, u64)>,
    },
    /// The chunk's write.
    Write {
        blocks: u64,
        drain: Option<(u16, u64)>,
    },
    Offload,
    Results,
    /// Table acquisition from a peer switch.
    Tables,
    /// The peer switch destaging the destination range.
    Prepare,
    /// The peer switch dropping the range the array wrote.
    Invalidate,
}

/// One operation.
#[derive(Debug)]
pub(crate) struct Op {
    pub id: u64,
    kind: Kind,
    state: State,
    /// The host's EXTENDED COPY, answered at the end (none for a mirror started by gRPC).
    host: Option<(TargetCommand, CopyJob)>,
    segs: VecDeque<Seg>,
    tracked: Vec<Tracked>,
    tb: BTreeMap<u16, DiffBitmap>,
    wait: Wait,
    executors: Vec<String>,
    log: Vec<String>,
    data_bytes: u64,
    bytes: u64,
    segments_done: u16,
    list_id: u8,
    source: String,
    destination: String,
    error: Option<Sense>,
}

impl Op {
    /// Whether the operation reads or writes virtual LU `lun`.
    pub(crate) fn uses(&self, lun: u16) -> bool {
        self.state != State::Done
            && self.state != State::Failed
            && (self
                .segs
                .iter()
                .any(|s| s.src_lun == lun || s.dest == Dest::Virtual(lun))
                || self
                    .tracked
                    .iter()
                    .any(|t| t.src_lun == lun || t.dest == Dest::Virtual(lun)))
    }

    /// A host wrote `blocks` blocks of `lun` at `lba`: mark TB where this operation
    /// copies from (before the write is acknowledged).
    pub(crate) fn host_wrote(&mut self, lun: u16, lba: u64, blocks: u64) {
        if matches!(self.state, State::Done | State::Failed) {
            return;
        }
        tracing::debug!(op = self.id, lun, lba, blocks, state = ?self.state, wait = ?self.wait, "host wrote");
        for t in self.tracked.iter().filter(|t| t.src_lun == lun) {
            let from = lba.max(t.src_lba);
            let to = (lba + blocks).min(t.src_lba + t.blocks);
            if from < to
                && let Some(bm) = self.tb.get_mut(&lun)
            {
                bm.set_range(from, to - from);
            }
        }
    }

    pub(crate) fn waiting_for_destage(&self) -> bool {
        self.wait == Wait::Destage
    }

    /// A paired mirror with marked blocks and nothing in flight.
    pub(crate) fn wants_drain(&self) -> bool {
        self.state == State::Paired
            && self.wait == Wait::Nothing
            && self.tb.values().any(|b| !b.is_clear())
    }

    fn tb_blocks(&self) -> u64 {
        self.tb.values().map(DiffBitmap::count).sum()
    }

    fn say(&mut self, line: String) {
        info!(op = self.id, "{line}");
        self.log.push(line);
    }

    fn executed_by(&mut self, who: String) {
        if self.executors.last() != Some(&who) {
            self.executors.push(who);
        }
    }

    pub(crate) fn info(&self) -> pb::Operation {
        pb::Operation {
            id: self.id,
            kind: self.kind.name().to_string(),
            state: match self.state {
                State::Running => "running",
                State::Draining => "draining",
                State::Paired => "paired",
                State::Done => "done",
                State::Failed => "failed",
            }
            .to_string(),
            executors: self.executors.clone(),
            switch_data_bytes: self.data_bytes,
            bytes: self.bytes,
            tb_blocks: self.tb_blocks(),
            log: self.log.clone(),
            source: self.source.clone(),
            destination: self.destination.clone(),
        }
    }
}

fn copy_aborted(a: fcsim_devices::scsi::sense::Asc) -> Sense {
    Sense::copy_aborted(a)
}

impl Engine {
    /// A host EXTENDED COPY the SCSI target accepted: plan it per extent and start.
    pub(crate) fn start_copy(&mut self, ctx: &mut Fc4Ctx<'_>, cmd: TargetCommand, job: CopyJob) {
        let mut segs = VecDeque::new();
        let mut tracked = Vec::new();
        let mut kind = Kind::VolumeCopy;
        for op in &job.ops {
            let (src, src_lba, blocks, dest, dst_lba) = match *op {
                CopyOp::BlockToStream {
                    src,
                    lba,
                    blocks,
                    dst,
                    ..
                } => {
                    kind = Kind::Backup;
                    let NaaId::Short(d) = dst else {
                        return self.refuse_copy(&cmd, &job);
                    };
                    (src, lba, blocks, Dest::Tape(d), 0)
                }
                CopyOp::BlockToBlock {
                    src,
                    src_lba,
                    dst,
                    dst_lba,
                    blocks,
                    ..
                } => {
                    let NaaId::Short(d) = dst else {
                        return self.refuse_copy(&cmd, &job);
                    };
                    let dest = match self.tm.lu_by_naa(d) {
                        Some(l) => Dest::Virtual(l.lun),
                        None => Dest::Remote(d),
                    };
                    (src, src_lba, blocks, dest, dst_lba)
                }
            };
            // The source must be one of this switch's virtual LUs.
            let Some(src_lun) = (match src {
                NaaId::Short(w) => self.tm.lu_by_naa(w).map(|l| l.lun),
                NaaId::Extended(_) => None,
            }) else {
                return self.refuse_copy(&cmd, &job);
            };
            // Pairs the switch runs: a backup reads only a split image, and nothing but
            // host writes (admitted by the copy engine) changes a paired volume.
            if let Err(s) = self.pairs.split_image_ready(src_lun) {
                return self.answer(&cmd, Err(s));
            }
            if let Dest::Virtual(d) = dest
                && self.pairs.is_paired(d)
            {
                let s = Sense::new(SenseKey::DATA_PROTECT, asc::WRITE_PROTECTED);
                return self.answer(&cmd, Err(s));
            }
            let Some(plan) = self.plan(src_lun, src_lba, blocks, dest, dst_lba) else {
                return self.refuse_copy(&cmd, &job);
            };
            if let Some(last) = plan.len().checked_sub(1) {
                segs.extend(plan.into_iter().enumerate().map(|(i, mut s)| {
                    s.ends_cop = i == last;
                    s
                }));
            }
            if !matches!(dest, Dest::Tape(_)) {
                tracked.push(Tracked {
                    src_lun,
                    src_lba,
                    dest,
                    dst_lba,
                    blocks,
                });
            }
        }
        let id = self.next_op();
        let op = self.new_op(id, kind, Some((cmd, job)), segs, tracked);
        self.ops.insert(id, op);
        self.step_op(ctx, id);
    }

    /// Embodiment 3: mirror virtual LU `src` onto `dst` (whole LUs).
    pub(crate) fn start_mirror(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        src: u16,
        dst: u16,
    ) -> Result<pb::Operation, String> {
        let s = self
            .tm
            .lu(src)
            .ok_or(format!("src_lun: virtual LU {src} does not exist"))?;
        let d = self
            .tm
            .lu(dst)
            .ok_or(format!("dst_lun: virtual LU {dst} does not exist"))?;
        if src == dst {
            return Err("dst_lun: a virtual LU cannot mirror onto itself".into());
        }
        if self.pairs.is_paired(dst) {
            return Err(format!(
                "dst_lun: virtual LU {dst} is a volume of a copy pair"
            ));
        }
        if d.blocks() < s.blocks() || d.block_bytes != s.block_bytes {
            return Err(format!(
                "dst_lun: virtual LU {dst} ({} blocks of {} bytes) cannot hold {src} ({} blocks of {} bytes)",
                d.blocks(),
                d.block_bytes,
                s.blocks(),
                s.block_bytes
            ));
        }
        if let Some(o) = self.ops.values().find(|o| o.uses(src) || o.uses(dst)) {
            return Err(format!(
                "src_lun: operation {} already uses these LUs",
                o.id
            ));
        }
        let blocks = s.blocks();
        let plan = self
            .plan(src, 0, blocks, Dest::Virtual(dst), 0)
            .ok_or("src_lun: cannot be translated")?;
        let tracked = vec![Tracked {
            src_lun: src,
            src_lba: 0,
            dest: Dest::Virtual(dst),
            dst_lba: 0,
            blocks,
        }];
        let id = self.next_op();
        let op = self.new_op(id, Kind::Mirror, None, plan.into(), tracked);
        self.ops.insert(id, op);
        self.step_op(ctx, id);
        Ok(self.ops.get(&id).map(Op::info).unwrap_or_default())
    }

    fn new_op(
        &mut self,
        id: u64,
        kind: Kind,
        host: Option<(TargetCommand, CopyJob)>,
        segs: VecDeque<Seg>,
        tracked: Vec<Tracked>,
    ) -> Op {
        let tb = tracked
            .iter()
            .map(|t| (t.src_lun, self.new_tb(t.src_lun)))
            .collect();
        let name = |e: &Engine, lun: u16| {
            e.tm.lu(lun)
                .map_or_else(|| lun.to_string(), |l| l.name.clone())
        };
        let source = segs
            .front()
            .map(|s| name(self, s.src_lun))
            .unwrap_or_default();
        let destination = match segs.front().map(|s| s.dest) {
            Some(Dest::Virtual(l)) => name(self, l),
            Some(Dest::Tape(w) | Dest::Remote(w)) => self.lu_name(w),
            None => String::new(),
        };
        Op {
            id,
            kind,
            state: State::Running,
            host,
            segs,
            tracked,
            tb,
            wait: Wait::Nothing,
            executors: Vec::new(),
            log: Vec::new(),
            data_bytes: 0,
            bytes: 0,
            segments_done: 0,
            list_id: (id & 0xFF) as u8,
            source,
            destination,
            error: None,
        }
    }

    /// Cuts a copy at every extent boundary of the source and of a virtual destination.
    fn plan(
        &self,
        src_lun: u16,
        src_lba: u64,
        blocks: u64,
        dest: Dest,
        dst_lba: u64,
    ) -> Option<Vec<Seg>> {
        let mut out = Vec::new();
        for p in self.tm.translate(src_lun, src_lba, blocks).ok()? {
            let cuts = match dest {
                Dest::Virtual(d) => self
                    .tm
                    .translate(d, dst_lba + p.offset, p.blocks)
                    .ok()?
                    .into_iter()
                    .map(|q| (p.offset + q.offset, q.blocks))
                    .collect(),
                _ => vec![(p.offset, p.blocks)],
            };
            for (off, n) in cuts {
                out.push(Seg {
                    src_lun,
                    src_lba: src_lba + off,
                    dest,
                    dst_lba: dst_lba + off,
                    blocks: n,
                    done: 0,
                    exec: Exec::Undecided,
                    ends_cop: false,
                });
            }
        }
        Some(out)
    }

    fn refuse_copy(&mut self, cmd: &TargetCommand, job: &CopyJob) {
        let s = copy_aborted(asc::INVALID_OPERATION_FOR_COPY_SOURCE_OR_DESTINATION);
        let outcome = CopyOutcome {
            segments_processed: 0,
            bytes: 0,
            error: Some(s),
        };
        let r = self.scsi.complete_copy(job, &outcome);
        self.answer(cmd, Err(r.sense.unwrap_or(s)));
    }

    /// The offload decision for one segment (seed 003 Fig. 14 S3/S4, Fig. 20 S21/S22),
    /// made before anything is sent: every array involved must be able to run the
    /// function according to TF.
    fn decide(&self, kind: Kind, seg: &Seg, now: std::time::Duration) -> (Exec, String) {
        let f = kind.function();
        let src = self
            .tm
            .translate(seg.src_lun, seg.src_lba, seg.blocks)
            .ok()
            .and_then(|p| p.first().map(|p| p.target));
        let Some(Target::External {
            lu: real_src,
            lba: real_lba,
        }) = src
        else {
            return (Exec::Switch, "INTERNAL source: the switch copies".into());
        };
        let a = self.device_of(real_src).unwrap_or_default();
        if self.cfg.mode == OffloadMode::Local {
            return (
                Exec::Switch,
                format!("mode 2: the switch copies (array {a} not asked)"),
            );
        }
        let real_dst = match seg.dest {
            Dest::Tape(_) => None,
            Dest::Virtual(d) => {
                match self
                    .tm
                    .translate(d, seg.dst_lba, seg.blocks)
                    .ok()
                    .and_then(|p| p.first().map(|p| p.target))
                {
                    Some(Target::External { lu, lba }) => Some((lu, lba)),
                    _ => {
                        return (
                            Exec::Switch,
                            "INTERNAL destination: the switch copies".into(),
                        );
                    }
                }
            }
            Dest::Remote(w) => {
                // Fig. 20: both sites' arrays must be able to, by both switches' TFs.
                let Some(peer) = self
                    .peers
                    .get(&w)
                    .filter(|p| p.fresh(now) && p.lu.is_some())
                else {
                    return (
                        Exec::Acquiring,
                        format!(
                            "asking the switch presenting {} for its TF and TM",
                            self.lu_name(w)
                        ),
                    );
                };
                let sw2 = peer
                    .lu
                    .as_ref()
                    .map(|p| p.switch.clone())
                    .unwrap_or_default();
                let Some((b, lu, lba, _)) = peer.place(seg.dst_lba) else {
                    return (
                        Exec::Switch,
                        format!("{sw2}: INTERNAL destination: the switch copies"),
                    );
                };
                if !self.tf.can(&a, f) || !peer.can(&b, f) {
                    let no = if self.tf.can(&a, f) {
                        format!("{sw2}'s TF: {b}")
                    } else {
                        format!("TF: {a}")
                    };
                    return (
                        Exec::Switch,
                        format!("{no} cannot {f}: the switch copies (S26)"),
                    );
                }
                return (
                    Exec::Array {
                        device: a.clone(),
                        real_src,
                        real_lba,
                        real_dst: Some((lu, lba)),
                        peer: Some((w, false)),
                    },
                    format!("TF: {a} can {f}, {sw2}'s TF: {b} can {f}: delegated to {a} (S24)"),
                );
            }
        };
        let mut who = vec![a.clone()];
        if let Some((lu, _)) = real_dst {
            let b = self.device_of(lu).unwrap_or_default();
            if b != a {
                who.push(b);
            }
        }
        if let Some(no) = who.iter().find(|d| !self.tf.can(d, f)) {
            return (
                Exec::Switch,
                format!("TF: {no} cannot {f}: the switch copies"),
            );
        }
        (
            Exec::Array {
                device: a.clone(),
                real_src,
                real_lba,
                real_dst,
                peer: None,
            },
            format!("TF: {} can {f}: delegated to {a}", who.join(" and ")),
        )
    }

    /// Advances operation `id` as far as it can go without waiting.
    pub(crate) fn step_op(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64) {
        loop {
            let Some(op) = self.ops.get_mut(&id) else {
                return;
            };
            match op.wait {
                Wait::Nothing => {}
                Wait::Destage => op.wait = Wait::Nothing,
                _ => return,
            }
            match op.state {
                State::Done | State::Failed => return,
                State::Draining | State::Paired => {
                    let run = op
                        .tb
                        .iter()
                        .find_map(|(lun, bm)| bm.next_run(0, CHUNK_BLOCKS).map(|r| (*lun, r)));
                    let Some((lun, (lba, n))) = run else {
                        if op.state == State::Draining {
                            if op.kind == Kind::Mirror {
                                op.state = State::Paired;
                                op.say(
                                    "mirror in sync: paired, later writes are copied from TB"
                                        .into(),
                                );
                            } else {
                                self.finish_op(id, None);
                            }
                        }
                        return;
                    };
                    // Clear now; a host write landing after this read sets the bit again.
                    if let Some(bm) = op.tb.get_mut(&lun) {
                        bm.clear_range(lba, n);
                    }
                    op.wait = Wait::Read {
                        blocks: n,
                        drain: Some((lun, lba)),
                    };
                    op.executed_by("switch".into());
                    return self.vread(ctx, Owner::Op(id), lun, lba, n);
                }
                State::Running => {}
            }
            let Some(seg) = op.segs.front().cloned() else {
                if op.tracked.is_empty() {
                    return self.finish_op(id, None);
                }
                op.state = State::Draining;
                let marked = op.tb_blocks();
                op.say(format!(
                    "bulk copy done; {marked} blocks marked in TB during it"
                ));
                continue;
            };
            if seg.done >= seg.blocks {
                op.segs.pop_front();
                if seg.ends_cop {
                    op.segments_done += 1;
                }
                // RECEIVE COPY RESULTS from the host shows the progress.
                if let Some((_, job)) = &op.host {
                    let (ini, list) = (job.initiator, job.list_id);
                    let (segs, bytes) = (op.segments_done, op.bytes);
                    self.scsi.copy_tracker().progress(ini, list, segs, bytes);
                }
                continue;
            }
            match seg.exec.clone() {
                Exec::Acquiring => return,
                Exec::Undecided => {
                    let kind = op.kind;
                    let (exec, why) = self.decide(kind, &seg, ctx.now);
                    // A remote destination spread over several of the peer's extents is
                    // decided per extent too.
                    let run = match (&exec, seg.dest) {
                        (Exec::Array { peer: Some(_), .. }, Dest::Remote(w)) => self
                            .peers
                            .get(&w)
                            .and_then(|p| p.place(seg.dst_lba))
                            .map_or(seg.blocks, |(.., n)| n.min(seg.blocks)),
                        _ => seg.blocks,
                    };
                    if exec == Exec::Acquiring
                        && let Dest::Remote(w) = seg.dest
                    {
                        self.acquire(ctx, id, w, crate::peer::Request::FunctionTable);
                    }
                    let Some(op) = self.ops.get_mut(&id) else {
                        return;
                    };
                    if run < seg.blocks
                        && let Some(front) = op.segs.front_mut()
                    {
                        let mut rest = front.clone();
                        front.blocks = run;
                        front.ends_cop = false;
                        rest.src_lba += run;
                        rest.dst_lba += run;
                        rest.blocks -= run;
                        op.segs.insert(1, rest);
                    }
                    let seg = op.segs.front().cloned().unwrap_or(seg);
                    op.say(format!(
                        "blocks {}..{}: {why}",
                        seg.src_lba,
                        seg.src_lba + seg.blocks
                    ));
                    if let Some(s) = op.segs.front_mut() {
                        s.exec = exec;
                    }
                }
                Exec::Array {
                    device,
                    real_src,
                    real_lba,
                    real_dst,
                    peer,
                } => {
                    if let Some((w, false)) = peer {
                        // The peer switch destages and drops the range first.
                        op.wait = Wait::Prepare;
                        let req = crate::peer::Request::Prepare {
                            lba: seg.dst_lba,
                            blocks: seg.blocks,
                        };
                        return self.peer_request(ctx, id, w, req);
                    }
                    // Coherence: what the array reads (and overwrites) must be current.
                    let dst_range = match seg.dest {
                        Dest::Virtual(d) => Some((d, seg.dst_lba, seg.blocks)),
                        _ => None,
                    };
                    let clean = self.range_clean(seg.src_lun, seg.src_lba, seg.blocks)
                        && dst_range.is_none_or(|(d, l, n)| self.range_clean(d, l, n));
                    let Some(op) = self.ops.get_mut(&id) else {
                        return;
                    };
                    if !clean {
                        op.wait = Wait::Destage;
                        return self.destage(ctx);
                    }
                    op.executed_by(format!("array:{device}"));
                    op.wait = Wait::Offload;
                    let list_id = op.list_id;
                    let bb = self.block_bytes_of(seg.src_lun);
                    let list = offload_list(
                        list_id, real_src, real_lba, seg.blocks, bb, seg.dest, real_dst,
                    );
                    let io = self.init.submit(
                        ctx,
                        real_src,
                        IoRequest {
                            lun: 0,
                            cdb: ExtendedCopy {
                                parameter_list_length: u32::try_from(list.len()).unwrap_or(0),
                            }
                            .encode(),
                            data_out: list,
                            data_in_len: 0,
                        },
                    );
                    self.waiters.insert(
                        io,
                        Waiter::Op {
                            op: id,
                            io: crate::ops::OpIo::Offload,
                        },
                    );
                    return;
                }
                Exec::Switch => {
                    op.executed_by("switch".into());
                    let n = (seg.blocks - seg.done).min(CHUNK_BLOCKS);
                    op.wait = Wait::Read {
                        blocks: n,
                        drain: None,
                    };
                    return self.vread(ctx, Owner::Op(id), seg.src_lun, seg.src_lba + seg.done, n);
                }
            }
        }
    }

    /// A virtual read or write an operation asked for finished.
    pub(crate) fn op_io_done(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, r: VResult) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let data = match r {
            Ok(d) => d,
            Err(s) => {
                if let Wait::Write {
                    drain: Some((lun, lba)),
                    blocks,
                }
                | Wait::Read {
                    drain: Some((lun, lba)),
                    blocks,
                } = op.wait
                    && let Some(bm) = op.tb.get_mut(&lun)
                {
                    bm.set_range(lba, blocks);
                }
                warn!(op = id, sense = ?s, "copy step failed");
                let why = if s.key == SenseKey::ABORTED_COMMAND {
                    asc::COPY_TARGET_DEVICE_NOT_REACHABLE
                } else {
                    asc::THIRD_PARTY_DEVICE_FAILURE
                };
                op.say(format!(
                    "copy step failed ({}): operation aborted",
                    s.asc_pair()
                ));
                return self.finish_op(id, Some(copy_aborted(why)));
            }
        };
        match op.wait {
            Wait::Read { blocks, drain } => {
                op.data_bytes += data.len() as u64;
                op.wait = Wait::Write { blocks, drain };
                let (dest, dst_lba) = match drain {
                    Some((lun, lba)) => {
                        let Some(t) = op.tracked.iter().find(|t| {
                            t.src_lun == lun && t.src_lba <= lba && lba < t.src_lba + t.blocks
                        }) else {
                            return self.finish_op(
                                id,
                                Some(copy_aborted(asc::THIRD_PARTY_DEVICE_FAILURE)),
                            );
                        };
                        (t.dest, t.dst_lba + (lba - t.src_lba))
                    }
                    None => match op.segs.front() {
                        Some(s) => (s.dest, s.dst_lba + s.done),
                        None => return,
                    },
                };
                self.write_chunk(ctx, id, dest, dst_lba, data);
            }
            Wait::Write { blocks, drain } => {
                op.wait = Wait::Nothing;
                let lun = match drain {
                    Some((lun, _)) => lun,
                    None => op.segs.front().map_or(0, |s| s.src_lun),
                };
                if drain.is_none()
                    && let Some(s) = op.segs.front_mut()
                {
                    s.done += blocks;
                }
                let bb = u64::from(self.block_bytes_of(lun));
                if let Some(op) = self.ops.get_mut(&id) {
                    op.bytes += blocks * bb;
                }
                self.step_op(ctx, id);
            }
            _ => {}
        }
    }

    fn write_chunk(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, dest: Dest, lba: u64, data: Bytes) {
        let (to, cdb) = match dest {
            Dest::Virtual(d) => return self.vwrite(ctx, Owner::Op(id), d, lba, data),
            // One tape record per chunk, as the arrays' copy managers write it (so both
            // paths leave the same tape).
            Dest::Tape(w) => (w, cdb::tape_write6(data.len())),
            Dest::Remote(w) => {
                let bb = self.init.device(w).map_or(512, |d| d.block_bytes).max(1);
                let blocks = u32::try_from(data.len() / bb as usize).unwrap_or(u32::MAX);
                (w, cdb::write16(lba, blocks, false))
            }
        };
        let req = IoRequest {
            lun: 0,
            cdb,
            data_out: data,
            data_in_len: 0,
        };
        let io = self.init.submit(ctx, to, req);
        self.waiters.insert(
            io,
            Waiter::Op {
                op: id,
                io: OpIo::Write,
            },
        );
    }

    /// A command an operation sent itself completed.
    pub(crate) fn op_backend_done(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        id: u64,
        io: OpIo,
        c: Completion,
    ) {
        let r = c.result;
        match io {
            OpIo::Write => {
                let res = if ok(&r) {
                    Ok(Bytes::new())
                } else {
                    Err(Sense::decode(&r.sense).unwrap_or(Sense::new(
                        SenseKey::ABORTED_COMMAND,
                        asc::THIRD_PARTY_DEVICE_FAILURE,
                    )))
                };
                self.op_io_done(ctx, id, res);
            }
            OpIo::Offload => self.offload_done(ctx, id, r, c.port),
            OpIo::Peer => self.peer_done(ctx, id, r),
            OpIo::Results => self.results_done(ctx, id, r),
        }
    }

    fn offload_done(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, r: IoResult, port: Option<u32>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.wait = Wait::Nothing;
        let Some(seg) = op.segs.front().cloned() else {
            return;
        };
        let Exec::Array {
            device, real_src, ..
        } = seg.exec.clone()
        else {
            return;
        };
        if ok(&r) {
            let bb = u64::from(self.block_bytes_of(seg.src_lun));
            let Some(op) = self.ops.get_mut(&id) else {
                return;
            };
            op.bytes += (seg.blocks - seg.done) * bb;
            if let Some(s) = op.segs.front_mut() {
                s.done = s.blocks;
            }
            // Coherence: the array wrote the destination behind the cache.
            match seg.dest {
                Dest::Virtual(d) => self.cache.invalidate(d, seg.dst_lba, seg.blocks),
                Dest::Remote(w) => {
                    if let Some(op) = self.ops.get_mut(&id) {
                        op.wait = Wait::Invalidate;
                    }
                    let req = crate::peer::Request::Invalidate {
                        lba: seg.dst_lba,
                        blocks: seg.blocks,
                    };
                    return self.peer_request(ctx, id, w, req);
                }
                Dest::Tape(_) => {}
            }
            return self.step_op(ctx, id);
        }
        let sense = Sense::decode(&r.sense)
            .ok()
            .filter(|_| r.transport.is_none());
        let rejected = sense.is_some_and(|s| s.key == SenseKey::ILLEGAL_REQUEST);
        let kind = op.kind;
        if rejected {
            // The array refused the function TF said it had (stale TF): strike it,
            // ask the array again, and copy on the switch from the start of the segment.
            op.say(format!(
                "{device} rejected {} ({}): TF updated, the switch copies",
                kind.function(),
                sense.map(|s| s.asc_pair().to_string()).unwrap_or_default()
            ));
            if let Some(s) = op.segs.front_mut() {
                s.exec = Exec::Switch;
            }
            self.tf.rejected(&device, kind.function(), ctx.now);
            self.probe_functions(ctx, &device);
            return self.step_op(ctx, id);
        }
        // Accepted and then failed: how far did it get?
        op.say(format!(
            "{device} failed the delegated copy: asking RECEIVE COPY RESULTS"
        ));
        op.wait = Wait::Results;
        let list_id = op.list_id;
        // Asked on the same I_T nexus as the copy.
        let io = self.init.submit_on(
            ctx,
            real_src,
            port.unwrap_or(0),
            IoRequest {
                lun: 0,
                cdb: ReceiveCopyResults {
                    service_action: RcrServiceAction::CopyStatus,
                    list_id,
                    allocation_length: 64,
                }
                .encode(),
                data_out: Bytes::new(),
                data_in_len: 64,
            },
        );
        self.waiters.insert(
            io,
            Waiter::Op {
                op: id,
                io: OpIo::Results,
            },
        );
    }

    fn results_done(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, r: IoResult) {
        let bb = self
            .ops
            .get(&id)
            .and_then(|o| o.segs.front())
            .map_or(512, |s| u64::from(self.block_bytes_of(s.src_lun)));
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.wait = Wait::Nothing;
        let Some(seg) = op.segs.front().cloned() else {
            return;
        };
        let status = if ok(&r) {
            CopyStatus::decode(&r.data_in).ok()
        } else {
            None
        };
        match (status, seg.dest) {
            (Some(st), _) => {
                // Whole chunks only: the array writes a chunk, then counts it.
                let done = (st.transfer_bytes() / bb).min(seg.blocks);
                op.bytes += done * bb;
                op.say(format!(
                    "the array copied {done} of {} blocks: the switch resumes from there",
                    seg.blocks
                ));
                if let Some(s) = op.segs.front_mut() {
                    s.done = done;
                    s.exec = Exec::Switch;
                }
                self.step_op(ctx, id)
            }
            (None, Dest::Tape(_)) => {
                op.say(
                    "no copy status from the array: the tape position is unknown, backup aborted"
                        .into(),
                );
                self.finish_op(
                    id,
                    Some(copy_aborted(asc::COPY_TARGET_DEVICE_NOT_REACHABLE)),
                );
            }
            (None, _) => {
                // A block copy is idempotent (I17): start the segment again on the switch.
                op.say("no copy status from the array: the switch copies the segment again".into());
                if let Some(s) = op.segs.front_mut() {
                    s.done = 0;
                    s.exec = Exec::Switch;
                }
                self.step_op(ctx, id)
            }
        }
    }

    /// Ends an operation and answers the host's EXTENDED COPY.
    fn finish_op(&mut self, id: u64, error: Option<Sense>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.state = if error.is_some() {
            State::Failed
        } else {
            State::Done
        };
        op.error = error;
        op.wait = Wait::Nothing;
        let line = match error {
            None => format!(
                "done: {} bytes, {} through the switch",
                op.bytes, op.data_bytes
            ),
            Some(s) => format!("failed: COPY ABORTED {}", s.asc_pair()),
        };
        op.say(line);
        if let Some((cmd, job)) = op.host.take() {
            let outcome = CopyOutcome {
                segments_processed: op.segments_done,
                bytes: op.bytes,
                error,
            };
            let r = self.scsi.complete_copy(&job, &outcome);
            let res = match r.sense {
                None => Ok(Bytes::new()),
                Some(s) => Err(s),
            };
            self.answer(&cmd, res);
        }
    }
}

impl Engine {
    /// Sends a table-acquisition or coherence request about remote LU `w` to the switch
    /// presenting it.
    fn peer_request(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, w: Wwn, req: crate::peer::Request) {
        let io = self.init.submit(
            ctx,
            w,
            IoRequest {
                lun: 0,
                cdb: req.encode(),
                data_out: Bytes::new(),
                data_in_len: req.allocation(),
            },
        );
        self.waiters.insert(
            io,
            Waiter::Op {
                op: id,
                io: OpIo::Peer,
            },
        );
    }

    /// Table acquisition, S21 (TF) then S23 (TM).
    fn acquire(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, w: Wwn, req: crate::peer::Request) {
        if let Some(op) = self.ops.get_mut(&id) {
            op.wait = Wait::Tables;
            if let Some(s) = op.segs.front_mut() {
                s.exec = Exec::Acquiring;
            }
        }
        self.peer_request(ctx, id, w, req);
    }

    fn peer_done(&mut self, ctx: &mut Fc4Ctx<'_>, id: u64, r: IoResult) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let wait = op.wait;
        op.wait = Wait::Nothing;
        let Some(seg) = op.segs.front().cloned() else {
            return;
        };
        let Dest::Remote(w) = seg.dest else {
            return;
        };
        let good = ok(&r);
        match wait {
            Wait::Tables => {
                let have_rows = self
                    .peers
                    .get(&w)
                    .is_some_and(|p| p.fresh(ctx.now) && p.lu.is_none());
                let parsed = good.then_some(()).and_then(|()| {
                    if have_rows {
                        let lu: crate::peer::PeerLu = serde_json::from_slice(&r.data_in).ok()?;
                        if let Some(p) = self.peers.get_mut(&w) {
                            p.lu = Some(lu);
                        }
                    } else {
                        let rows = serde_json::from_slice(&r.data_in).ok()?;
                        self.peers.insert(
                            w,
                            crate::peer::PeerTables {
                                rows,
                                lu: None,
                                fetched_at: ctx.now,
                            },
                        );
                    }
                    Some(())
                });
                let Some(op) = self.ops.get_mut(&id) else {
                    return;
                };
                match parsed {
                    Some(()) if !have_rows => {
                        op.say("S21: got the peer switch's TF; S23: asking for its TM".into());
                        return self.acquire(ctx, id, w, crate::peer::Request::MappingTable);
                    }
                    Some(()) => {
                        op.say("S23: got the peer switch's TM".into());
                        if let Some(s) = op.segs.front_mut() {
                            s.exec = Exec::Undecided;
                        }
                    }
                    None => {
                        op.say("table acquisition from the peer switch failed: the switch copies (S26)".into());
                        if let Some(s) = op.segs.front_mut() {
                            s.exec = Exec::Switch;
                        }
                    }
                }
            }
            Wait::Prepare => {
                if good {
                    if let Some(Exec::Array {
                        peer: Some((_, prepared)),
                        ..
                    }) = op.segs.front_mut().map(|s| &mut s.exec)
                    {
                        *prepared = true;
                    }
                } else {
                    op.say(
                        "the peer switch could not destage the destination: the switch copies"
                            .into(),
                    );
                    if let Some(s) = op.segs.front_mut() {
                        s.exec = Exec::Switch;
                    }
                }
            }
            Wait::Invalidate if !good => {
                op.say("the peer switch did not confirm dropping the copied range".into());
            }
            _ => {}
        }
        self.step_op(ctx, id);
    }
}

/// The delegated EXTENDED COPY (CS): the host's request with the source (and a block
/// destination) rewritten to the real LU and LBA through TM; a tape stays as named.
fn offload_list(
    list_id: u8,
    src: Wwn,
    lba: u64,
    blocks: u64,
    block_bytes: u32,
    dest: Dest,
    real_dst: Option<(Wwn, u64)>,
) -> Bytes {
    let block = DeviceParams::Block {
        pad: false,
        block_bytes,
    };
    let mut targets = vec![TargetDescriptor {
        naa: NaaId::Short(src),
        relative_initiator_port: 0,
        params: block,
    }];
    let dst_index = match (dest, real_dst) {
        (_, Some((d, _))) if d == src => 0,
        (_, Some((d, _))) => {
            targets.push(TargetDescriptor {
                naa: NaaId::Short(d),
                relative_initiator_port: 0,
                params: block,
            });
            1
        }
        (Dest::Tape(t), None) | (Dest::Remote(t), None) => {
            targets.push(TargetDescriptor {
                naa: NaaId::Short(t),
                relative_initiator_port: 0,
                params: DeviceParams::Stream {
                    pad: false,
                    fixed: false,
                    block_bytes: 0,
                },
            });
            1
        }
        (Dest::Virtual(_), None) => 0,
    };
    let mut segments = Vec::new();
    let mut done = 0u64;
    while done < blocks {
        let n = u16::try_from((blocks - done).min(u64::from(u16::MAX))).unwrap_or(u16::MAX);
        segments.push(match real_dst {
            Some((_, dst_lba)) => Segment::BlockToBlock {
                cat: false,
                dc: false,
                src: 0,
                dst: dst_index,
                blocks: n,
                src_lba: lba + done,
                dst_lba: dst_lba + done,
            },
            None => Segment::BlockToStream {
                cat: false,
                src: 0,
                dst: dst_index,
                stream_transfer_length: 0,
                blocks: n,
                lba: lba + done,
            },
        });
        done += u64::from(n);
    }
    ParameterList {
        list_id,
        str_bit: false,
        list_id_usage: 0,
        priority: 0,
        targets,
        segments,
        inline_data: Bytes::new(),
    }
    .encode()
}
