//! Copy pairs on virtual LUs (DESIGN.md §7): the one copy-services engine
//! ([`CopyEngine`]) runs here over the switch's virtual LUs, in deferred mode — their
//! data is reached only through TM, the cache and the arrays, so the engine's copies are
//! virtual reads and writes, and a post-split host write waits until copy-before-write
//! moved the block's split-time data — unless the offload rule gives the pair to an
//! array (seed 003 §4.8: a support function goes to the array holding the data when TF
//! says it runs it).
//!
//! A pair is delegated when its primary (and, for a local pair, its secondary) is one
//! whole LU of one array, acknowledged write-through (no switch cache between the hosts
//! and that array's copy services), and TF says the array runs the pair's function
//! (`local-pair`, `remote-sync`, `remote-async`). The switch then creates the pair on the
//! array in band (D6h PAIR MANAGE to the primary LU, [`fcsim_devices::copysvc::wire`])
//! and forwards every later request for it there; an array that refuses leaves the pair
//! to the switch. Mode 2 (`local`) keeps every pair on the switch.

use std::collections::BTreeSet;

use bytes::Bytes;
use fcsim_devices::copy_service::{CopyAdmin, pair_info, status_of};
use fcsim_devices::copysvc::wire::{self, ManageReply, PairRequest};
use fcsim_devices::copysvc::{Action, CopyEngine, CopyError, PairSpec, PairStatus, Secondary};
use fcsim_devices::fcp::{IoRequest, TargetCommand};
use fcsim_devices::initiator::{Completion, cdb};
use fcsim_fabric::endnode::Fc4Ctx;
use fcsim_fabric::{Wwn, Wwpn};
use fcsim_proto::v1 as pb;
use tokio::sync::oneshot;
use tonic::Status;
use tracing::{info, warn};

use crate::engine::{Engine, OffloadMode, Owner, VResult, Waiter, ok};
use crate::tf::SupportFunction;
use crate::tm::{AckMode, Backing};

type Reply<T> = oneshot::Sender<Result<T, Status>>;

/// What the switch reports as the executor of the pairs it runs itself.
const SWITCH: &str = "switch";

/// A pair the offload rule gave to an array.
#[derive(Debug, Clone)]
pub(crate) struct Delegated {
    pub array: String,
    /// The pair's primary LU on that array: where its requests go.
    pub lu: Wwn,
    pub group: String,
    /// The virtual LU the user named as the primary.
    pub primary: u16,
    /// The secondary as the user named it (`lun N`: a virtual LU of this switch).
    pub secondary: String,
}

/// A host write to a virtual LU under the copy engine, from admission to its answer.
#[derive(Debug)]
pub(crate) struct PairedWrite {
    cmd: TargetCommand,
    lun: u16,
    lba: u64,
    data: Bytes,
}

/// Why an in-band request has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unanswered {
    /// The array refused it (or could not be asked): nothing changed there.
    Refused(String),
    /// The array took it, but its answer was lost: the outcome is unknown.
    Lost(String),
}

impl Unanswered {
    fn status(self) -> Status {
        match self {
            Unanswered::Refused(why) => Status::failed_precondition(why),
            Unanswered::Lost(why) => Status::unavailable(format!(
                "{why}; the array took the request, ask for the pair's status"
            )),
        }
    }
}

/// What to do with the answer of an in-band request: the pairs it names, or why there
/// is none.
type ManageThen =
    Box<dyn FnOnce(&mut Engine, &mut Fc4Ctx<'_>, Result<Vec<PairStatus>, Unanswered>) + Send>;

/// An in-band request between its PAIR MANAGE and its RECEIVE PAIR RESULTS.
pub(crate) struct Manage {
    lu: Wwn,
    request_id: u32,
    then: ManageThen,
}

/// What a pair request does once it ran: with the array's answer for a delegated pair
/// (`Some`), or `None` once the switch's engine ran it.
type AfterOp = Box<dyn FnOnce(&mut Engine, Result<Option<pb::PairStatusResponse>, Status>) + Send>;

/// Where the offload rule sends a new pair.
struct Plan {
    array: String,
    primary: Wwn,
    secondary: Wwn,
}

impl Engine {
    // ---- host writes and engine actions ---------------------------------------------------

    /// A host write to virtual LU `lun`: admitted by the copy engine (write protection,
    /// copy-before-write, a draining split), then written.
    pub(crate) fn paired_write(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        cmd: TargetCommand,
        initiator: Wwpn,
        (lun, lba): (u16, u64),
        data: Bytes,
    ) {
        let host = self.next_id();
        let blocks = data.len() as u64 / u64::from(self.block_bytes_of(lun));
        match self
            .pairs
            .admit_deferred(lun, lba, blocks, initiator, ctx.now, host)
        {
            Err(s) => self.answer(&cmd, Err(s)),
            Ok(wait) => {
                self.paired.insert(
                    host,
                    PairedWrite {
                        cmd,
                        lun,
                        lba,
                        data,
                    },
                );
                if !wait {
                    self.land(ctx, host);
                }
            }
        }
    }

    /// Writes an admitted host write to its virtual LU.
    fn land(&mut self, ctx: &mut Fc4Ctx<'_>, host: u64) {
        let Some(w) = self.paired.get(&host) else {
            return;
        };
        let (lun, lba, data) = (w.lun, w.lba, w.data.clone());
        self.vwrite(ctx, Owner::Paired(host), lun, lba, data);
    }

    /// An admitted host write landed (or failed): the engine propagates it; the host is
    /// answered now unless a synchronous secondary must have it first.
    pub(crate) fn paired_landed(&mut self, host: u64, r: VResult) {
        let Some(w) = self.paired.get(&host) else {
            return;
        };
        let held = match r {
            Ok(_) => self
                .pairs
                .after_write(w.lun, w.lba, w.data.clone(), host, self.now),
            Err(s) => {
                let blocks = w.data.len() as u64 / u64::from(self.block_bytes_of(w.lun));
                self.pairs.write_failed(w.lun, w.lba, blocks, host);
                if let Some(w) = self.paired.remove(&host) {
                    self.answer(&w.cmd, Err(s));
                }
                return;
            }
        };
        if !held && let Some(w) = self.paired.remove(&host) {
            self.answer(&w.cmd, Ok(Bytes::new()));
        }
    }

    /// The primary blocks of an [`Action::Copy`] were read: on to the secondary.
    pub(crate) fn pair_copy_read(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        token: u64,
        lba: u64,
        to: Secondary,
        r: VResult,
    ) {
        let data = match r {
            Ok(d) => d,
            Err(_) => return self.pairs.completed(token, false),
        };
        match to {
            Secondary::Local(s) => self.vwrite(ctx, Owner::PairCopyWrite(token), s, lba, data),
            Secondary::Remote(naa) => {
                let bb = self.init.device(naa).map_or(512, |d| d.block_bytes).max(1);
                let blocks = u32::try_from(data.len() / bb as usize).unwrap_or(u32::MAX);
                self.pair_command(ctx, token, naa, cdb::write16(lba, blocks, false), data);
            }
        }
    }

    /// Carries out what the engine asked for; whether there was anything.
    pub(crate) fn pump_pairs(&mut self, ctx: &mut Fc4Ctx<'_>) -> bool {
        let mut any = false;
        while let Some(a) = self.pairs.poll_action() {
            any = true;
            match a {
                Action::Release { host, sense } => {
                    if let Some(w) = self.paired.remove(&host) {
                        self.answer(&w.cmd, sense.map_or(Ok(Bytes::new()), Err));
                    }
                }
                Action::Proceed { host } => self.land(ctx, host),
                Action::Copy {
                    token,
                    lun,
                    lba,
                    blocks,
                    to,
                } => self.vread(ctx, Owner::PairCopy { token, lba, to }, lun, lba, blocks),
                a => {
                    let init = &self.init;
                    let Some(out) =
                        wire::outgoing(a, |naa| init.device(naa).map_or(512, |d| d.block_bytes))
                    else {
                        continue;
                    };
                    self.pair_command(ctx, out.token, out.naa, out.cdb, out.data_out);
                }
            }
        }
        any
    }

    /// Sends an engine command to the remote LU `naa`.
    fn pair_command(&mut self, ctx: &mut Fc4Ctx<'_>, token: u64, naa: Wwn, c: Bytes, data: Bytes) {
        if self.init.device(naa).is_none() {
            return self.pairs.completed(token, false);
        }
        let req = IoRequest {
            lun: 0,
            cdb: c,
            data_out: data,
            data_in_len: 0,
        };
        let io = self.init.submit(ctx, naa, req);
        self.waiters.insert(io, Waiter::Pair { token });
    }

    /// Whether a pair (run here or delegated) uses virtual LU `lun`.
    pub(crate) fn lu_paired(&self, lun: u16) -> bool {
        self.pairs
            .pairs()
            .any(|p| p.primary == lun || p.secondary == Secondary::Local(lun))
            || self.delegated.values().any(|d| d.primary == lun)
    }

    // ---- management -------------------------------------------------------------------

    /// A `fcsim.v1.Copy` request to the switch.
    pub(crate) fn copy_admin(&mut self, ctx: &mut Fc4Ctx<'_>, req: CopyAdmin) {
        let now = ctx.now;
        match req {
            CopyAdmin::Create {
                spec,
                journal_bytes,
                reply,
            } => self.create_pair(ctx, spec, journal_bytes, reply),
            CopyAdmin::Split { pair, at, reply } => {
                let req = PairRequest::Split {
                    pair: pair.clone(),
                    at,
                };
                self.pair_op(ctx, &pair, req, reply, |e| e.split(&pair, at, now));
            }
            CopyAdmin::Resync { pair, reply } => {
                let req = PairRequest::Resync { pair: pair.clone() };
                self.pair_op(ctx, &pair, req, reply, |e| e.resync(&pair));
            }
            CopyAdmin::Options { pair, patch, reply } => {
                let req = PairRequest::Options {
                    pair: pair.clone(),
                    patch: patch.clone(),
                };
                self.pair_op(ctx, &pair, req, reply, |e| e.set_options(&pair, &patch));
            }
            CopyAdmin::Delete { pair, reply } => {
                let req = PairRequest::Delete { pair: pair.clone() };
                let gone = pair.clone();
                let reply = Box::new(move |e: &mut Engine, r: Result<_, Status>| {
                    if r.is_ok() {
                        e.delegated.retain(|n, d| *n != gone && d.group != gone);
                    }
                    let _ = reply.send(r.and_then(|_| e.switch_status(None)));
                });
                self.pair_op_then(ctx, &pair, req, reply, |e| e.delete(&pair));
            }
            CopyAdmin::Status {
                pair: Some(pair),
                reply,
            } => {
                let req = PairRequest::Status {
                    pair: Some(pair.clone()),
                };
                self.pair_op(ctx, &pair, req, reply, |_| Ok(()));
            }
            CopyAdmin::Status { pair: None, reply } => {
                let lus: BTreeSet<Wwn> = self.delegated.values().map(|d| d.lu).collect();
                let mine = self.switch_status(None);
                self.status_all(ctx, lus.into_iter().collect(), mine, reply);
            }
            CopyAdmin::Takeover { pair, reply } => {
                let r = self.pairs.takeover(&pair).map_err(status_of);
                let _ = reply.send(r.map(|luns| pb::TakeoverResponse {
                    luns: luns.into_iter().map(u32::from).collect(),
                }));
            }
            // Difference tables live at an array holding sync secondaries (site 3).
            CopyAdmin::ClearDifference { reply, .. }
            | CopyAdmin::DifferenceStatus { reply, .. } => {
                let _ = reply.send(Err(three_site_unsupported()));
            }
            CopyAdmin::Failover { reply, .. } => {
                let _ = reply.send(Err(three_site_unsupported()));
            }
            // The protected recovery copy runs between arrays (seed 001).
            CopyAdmin::RelayTakeover { reply, .. } => {
                let _ = reply.send(Err(tonic::Status::unimplemented(
                    "relay takeover: run at the standby array, not at a switch",
                )));
            }
            CopyAdmin::RestartPoint { reply, .. } => {
                let _ = reply.send(Err(tonic::Status::unimplemented(
                    "restart point: run at a relay pair's primary array, not at a switch",
                )));
            }
            CopyAdmin::Recover { reply, .. } | CopyAdmin::RecoveryStatus { reply } => {
                let _ = reply.send(Err(tonic::Status::unimplemented(
                    "recovery copy: run at the primary array, not at a switch",
                )));
            }
        }
    }

    /// A request for pair or group `target`, answered with its status afterwards.
    fn pair_op(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        target: &str,
        req: PairRequest,
        reply: Reply<pb::PairStatusResponse>,
        run: impl FnOnce(&mut CopyEngine) -> Result<(), CopyError>,
    ) {
        let name = target.to_string();
        let answer = Box::new(move |e: &mut Engine, r: Result<_, Status>| {
            let _ = reply.send(r.and_then(|r| match r {
                Some(delegated) => Ok(delegated),
                None => e.switch_status(Some(&name)),
            }));
        });
        self.pair_op_then(ctx, target, req, answer, run);
    }

    /// Forwards a request for a delegated pair or group to its array, or runs it on the
    /// switch's engine; then `then`.
    fn pair_op_then(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        target: &str,
        req: PairRequest,
        then: AfterOp,
        run: impl FnOnce(&mut CopyEngine) -> Result<(), CopyError>,
    ) {
        let lu = self
            .delegated
            .iter()
            .find(|(n, d)| *n == target || d.group == target)
            .map(|(_, d)| d.lu);
        match lu {
            Some(lu) => self.manage(
                ctx,
                lu,
                req,
                Box::new(move |e, _, r| {
                    let r = r
                        .map(|pairs| Some(e.delegated_status(pairs)))
                        .map_err(Unanswered::status);
                    then(e, r);
                }),
            ),
            None => {
                let r = run(&mut self.pairs).map(|()| None).map_err(status_of);
                then(self, r);
            }
        }
    }

    /// The status of every pair: the switch's own, then each array's delegated ones.
    fn status_all(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        mut lus: Vec<Wwn>,
        acc: Result<pb::PairStatusResponse, Status>,
        reply: Reply<pb::PairStatusResponse>,
    ) {
        let Some(lu) = lus.pop() else {
            let _ = reply.send(acc);
            return;
        };
        let req = PairRequest::Status { pair: None };
        self.manage(
            ctx,
            lu,
            req,
            Box::new(move |e, ctx, r| {
                let acc = acc.map(|mut acc| {
                    match r {
                        Ok(pairs) => acc.pairs.extend(e.delegated_status(pairs).pairs),
                        // The array's pairs are still listed, their state unknown.
                        Err(Unanswered::Refused(why) | Unanswered::Lost(why)) => {
                            acc.pairs.extend(e.unknown_status(lu, &why));
                        }
                    }
                    acc
                });
                e.status_all(ctx, lus, acc, reply);
            }),
        );
    }

    /// The pairs the switch runs, as the API shows them (`target`: one pair or group).
    fn switch_status(&self, target: Option<&str>) -> Result<pb::PairStatusResponse, Status> {
        let pairs = self.pairs.status(target).map_err(status_of)?;
        Ok(pb::PairStatusResponse {
            pairs: pairs.into_iter().map(|p| pair_info(p, SWITCH)).collect(),
            secondaries: Vec::new(),
            relay_standbys: Vec::new(),
        })
    }

    /// An array's answer about pairs, as the API shows the ones delegated by this
    /// switch: named by their virtual LUs.
    fn delegated_status(&self, pairs: Vec<PairStatus>) -> pb::PairStatusResponse {
        pb::PairStatusResponse {
            pairs: pairs
                .into_iter()
                .filter_map(|p| {
                    let d = self.delegated.get(&p.name)?;
                    Some(pb::PairInfo {
                        primary_lun: u32::from(d.primary),
                        secondary: d.secondary.clone(),
                        ..pair_info(p, &format!("array:{}", d.array))
                    })
                })
                .collect(),
            secondaries: Vec::new(),
            relay_standbys: Vec::new(),
        }
    }

    /// The pairs delegated through LU `lu` when its array cannot be asked.
    fn unknown_status(&self, lu: Wwn, why: &str) -> Vec<pb::PairInfo> {
        self.delegated
            .iter()
            .filter(|(_, d)| d.lu == lu)
            .map(|(name, d)| pb::PairInfo {
                name: name.clone(),
                group: d.group.clone(),
                primary_lun: u32::from(d.primary),
                secondary: d.secondary.clone(),
                state: "unknown".into(),
                suspend_reason: why.to_string(),
                executor: format!("array:{}", d.array),
                ..pb::PairInfo::default()
            })
            .collect()
    }

    /// A new pair of virtual LUs: delegated to an array when the offload rule allows,
    /// run by the switch otherwise (or when the array refuses).
    fn create_pair(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        spec: PairSpec,
        journal_bytes: u64,
        reply: Reply<pb::PairStatusResponse>,
    ) {
        if self.pairs.pair(&spec.name).is_some() || self.delegated.contains_key(&spec.name) {
            let _ = reply.send(Err(status_of(CopyError::Exists(spec.name))));
            return;
        }
        // Relay replication (seed 002) runs between arrays and relays, not on virtual LUs.
        if spec.mode == fcsim_devices::copysvc::PairMode::Relay {
            let _ = reply.send(Err(Status::invalid_argument(
                "mode: relay pairs run at an array, not at a switch's virtual LUs",
            )));
            return;
        }
        let plan = match self.offload_pair(&spec) {
            Ok(plan) => plan,
            Err(why) => {
                info!(pair = %spec.name, "pair runs on the switch: {why}");
                let _ = reply.send(self.run_pair(spec, journal_bytes));
                return;
            }
        };
        info!(pair = %spec.name, array = %plan.array, "pair delegated to the array (offload rule)");
        let req = PairRequest::Create {
            name: spec.name.clone(),
            secondary: plan.secondary,
            mode: spec.mode,
            group: spec.group.clone(),
            options: spec.options.clone(),
            journal_bytes,
        };
        let delegated = Delegated {
            array: plan.array,
            lu: plan.primary,
            group: spec.group.clone().unwrap_or_else(|| spec.name.clone()),
            primary: spec.primary,
            secondary: match spec.secondary {
                Secondary::Local(s) => format!("lun {s}"),
                Secondary::Remote(w) => w.to_string(),
            },
        };
        self.manage(
            ctx,
            plan.primary,
            req,
            Box::new(move |e, _, r| match r {
                Ok(pairs) => {
                    e.delegated.insert(spec.name.clone(), delegated);
                    let _ = reply.send(Ok(e.delegated_status(pairs)));
                }
                Err(Unanswered::Refused(why)) => {
                    warn!(pair = %spec.name, array = %delegated.array, "the array refused the pair ({why}): the switch runs it");
                    let _ = reply.send(e.run_pair(spec, journal_bytes));
                }
                Err(lost) => {
                    // The array may run it: the switch must not run it as well.
                    e.delegated.insert(spec.name.clone(), delegated);
                    let _ = reply.send(Err(lost.status()));
                }
            }),
        );
    }

    /// The offload rule for a new pair: the array to run it, or why the switch does.
    fn offload_pair(&self, spec: &PairSpec) -> Result<Plan, String> {
        if self.cfg.mode == OffloadMode::Local {
            return Err("mode 2: the switch runs every pair".into());
        }
        let (primary, array) = self.whole_array_lu(spec.primary)?;
        let secondary = match spec.secondary {
            Secondary::Local(s) => {
                let (lu, other) = self.whole_array_lu(s)?;
                if other != array {
                    return Err(format!(
                        "the primary is on {array}, the secondary on {other}"
                    ));
                }
                lu
            }
            Secondary::Remote(naa) => naa,
        };
        let f = SupportFunction::pair(spec.mode);
        if !self.tf.can(&array, f) {
            return Err(format!("TF: {array} cannot run {f}"));
        }
        Ok(Plan {
            array,
            primary,
            secondary,
        })
    }

    /// The array LU that virtual LU `lun` is, whole (one extent from block 0 over all of
    /// it), and its array; written through (no cache between hosts and the array).
    fn whole_array_lu(&self, lun: u16) -> Result<(Wwn, String), String> {
        let lu = self
            .tm
            .lu(lun)
            .ok_or_else(|| format!("no virtual LU {lun}"))?;
        if lu.ack == AckMode::Async {
            return Err(format!(
                "virtual LU {lun} is acknowledged from the switch cache"
            ));
        }
        let [e] = lu.extents.as_slice() else {
            return Err(format!(
                "virtual LU {lun} spans {} extents",
                lu.extents.len()
            ));
        };
        let Backing::External { lu: real, start } = e.backing else {
            return Err(format!("virtual LU {lun} is INTERNAL"));
        };
        if start != 0 || self.real_lu(real).map(|r| r.blocks) != Some(e.blocks) {
            return Err(format!(
                "virtual LU {lun} is part of {}",
                self.lu_name(real)
            ));
        }
        let array = self
            .device_of(real)
            .ok_or_else(|| format!("the array of {} is unknown", self.lu_name(real)))?;
        Ok((real, array))
    }

    /// Creates a pair on the switch's own engine.
    fn run_pair(
        &mut self,
        spec: PairSpec,
        journal_bytes: u64,
    ) -> Result<pb::PairStatusResponse, Status> {
        if let Secondary::Remote(naa) = spec.secondary
            && self.init.device(naa).is_none()
        {
            return Err(Status::failed_precondition(format!(
                "secondary_naa: LU {naa} is not reachable from {}'s virtual initiators",
                self.cfg.switch
            )));
        }
        let name = spec.name.clone();
        let group = spec.group.clone().unwrap_or_else(|| name.clone());
        let tm = &self.tm;
        self.pairs
            .create(spec, &|l| tm.lu(l).map(|v| (v.blocks(), v.block_bytes)))
            .map_err(status_of)?;
        if journal_bytes > 0 {
            let _ = self.pairs.set_journal_capacity(&group, journal_bytes);
        }
        self.switch_status(Some(&name))
    }

    // ---- in-band requests to arrays ---------------------------------------------------

    /// Sends `req` to the array LU `lu` (PAIR MANAGE), then reads its answer back
    /// (RECEIVE PAIR RESULTS) for `then`.
    fn manage(&mut self, ctx: &mut Fc4Ctx<'_>, lu: Wwn, req: PairRequest, then: ManageThen) {
        if self.init.device(lu).is_none() {
            let why = format!("{} is not reachable", self.lu_name(lu));
            return then(self, ctx, Err(Unanswered::Refused(why)));
        }
        let id = self.next_id();
        let request_id = u32::try_from(id & 0xFFFF_FFFF).unwrap_or_default();
        let body = Bytes::from(serde_json::to_vec(&req).unwrap_or_default());
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        self.manages.insert(
            id,
            Manage {
                lu,
                request_id,
                then,
            },
        );
        let io = self.init.submit(
            ctx,
            lu,
            IoRequest {
                lun: 0,
                cdb: Bytes::copy_from_slice(&wire::pair_manage(request_id, len)),
                data_out: body,
                data_in_len: 0,
            },
        );
        self.waiters
            .insert(io, Waiter::Manage { id, results: false });
    }

    /// A step of an in-band request ended.
    pub(crate) fn manage_done(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        id: u64,
        results: bool,
        c: Completion,
    ) {
        if !ok(&c.result) {
            let Some(m) = self.manages.remove(&id) else {
                return;
            };
            let why = format!(
                "{}: status {:#04x}{}",
                self.lu_name(m.lu),
                c.result.status,
                c.result
                    .transport
                    .as_ref()
                    .map_or(String::new(), |t| format!(", {t:?}"))
            );
            // A refused PAIR MANAGE changed nothing; a lost read-back leaves it unknown.
            let e = if results {
                Unanswered::Lost(why)
            } else {
                Unanswered::Refused(why)
            };
            return (m.then)(self, ctx, Err(e));
        }
        if !results {
            let Some(m) = self.manages.get(&id) else {
                return;
            };
            let (lu, request_id) = (m.lu, m.request_id);
            let io = self.init.submit(
                ctx,
                lu,
                IoRequest {
                    lun: 0,
                    cdb: Bytes::copy_from_slice(&wire::receive_pair_results(request_id)),
                    data_out: Bytes::new(),
                    data_in_len: wire::RESULTS_ALLOCATION,
                },
            );
            self.waiters
                .insert(io, Waiter::Manage { id, results: true });
            return;
        }
        let Some(m) = self.manages.remove(&id) else {
            return;
        };
        let r = match serde_json::from_slice::<ManageReply>(&c.result.data_in) {
            Ok(ManageReply { error: Some(e), .. }) => Err(Unanswered::Refused(e)),
            Ok(ManageReply { pairs, error: None }) => Ok(pairs),
            Err(e) => Err(Unanswered::Lost(format!("unreadable answer: {e}"))),
        };
        (m.then)(self, ctx, r);
    }
}

/// Three-site requests go to the array holding the sync secondaries (site 3).
fn three_site_unsupported() -> tonic::Status {
    tonic::Status::unimplemented(
        "group: difference tables and failover pairs are kept by arrays (site 3), not by an intelligent switch",
    )
}
