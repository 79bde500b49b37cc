//! `fcsim.v1.Copy` (DESIGN.md §10) on an array or an intelligent switch's engine:
//! validates requests (INVALID_ARGUMENT naming the field) and hands them to the node's
//! copy engine ([`crate::copysvc::CopyEngine`]) through its admin channel.

use fcsim_fabric::Wwn;
use fcsim_fabric::runtime::actor;
use fcsim_proto::v1 as pb;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::copysvc::generations::{Generation, GenerationsError};
use crate::copysvc::{
    BackupStrategy, CopyError, FailoverPair, Granularity, OptionsPatch, PairMode, PairOptions,
    PairSpec, PairStatus, RelayConsistency, RelayFec, RelayOptions, RelaySelection,
    RelayStandbyStatus, RelayTakeoverReport, RemoteReport, Secondary, SelectionRule,
};

type Reply<T> = oneshot::Sender<Result<T, Status>>;

/// Copy requests, executed by the array node.
pub enum CopyAdmin {
    Create {
        spec: PairSpec,
        journal_bytes: u64,
        reply: Reply<pb::PairStatusResponse>,
    },
    Split {
        pair: String,
        at: Option<std::time::Duration>,
        reply: Reply<pb::PairStatusResponse>,
    },
    Resync {
        pair: String,
        reply: Reply<pb::PairStatusResponse>,
    },
    Delete {
        pair: String,
        reply: Reply<pb::PairStatusResponse>,
    },
    Status {
        pair: Option<String>,
        reply: Reply<pb::PairStatusResponse>,
    },
    Takeover {
        pair: String,
        reply: Reply<pb::TakeoverResponse>,
    },
    /// Seed 002: the takeover of a relay group at its standby array.
    RelayTakeover {
        pair: String,
        reply: Reply<pb::RelayTakeoverResponse>,
    },
    /// Seed 002 emb 7-9: a restart point at a relay pair's primary.
    RestartPoint {
        pair: String,
        app_state: bytes::Bytes,
        reply: Reply<pb::RestartPointResponse>,
    },
    Options {
        pair: String,
        patch: OptionsPatch,
        reply: Reply<pb::PairStatusResponse>,
    },
    ClearDifference {
        group: String,
        at: std::time::Duration,
        reply: Reply<pb::DifferenceStatusResponse>,
    },
    DifferenceStatus {
        group: Option<String>,
        reply: Reply<pb::DifferenceStatusResponse>,
    },
    Failover {
        request: crate::copysvc::FailoverRequest,
        reply: Reply<pb::FailoverPairsResponse>,
    },
    /// Seed 001: a protected recovery copy of suspended remote pairs.
    Recover {
        request: RecoverRequest,
        reply: Reply<pb::RecoveryStatusResponse>,
    },
    RecoveryStatus {
        reply: Reply<pb::RecoveryStatusResponse>,
    },
}

/// A validated `RecoverPair` request.
pub struct RecoverRequest {
    /// A pair or a group.
    pub target: String,
    /// T.
    pub allowed: std::time::Duration,
    /// One consistency unit for all pairs (else one per pair).
    pub group_unit: bool,
    pub max_attempts: u32,
    pub concurrency: Option<usize>,
    /// Oldest-first from the time-series queues (claim 3).
    pub ordered: bool,
}

/// An NAA of 16 hex digits (colons allowed) in field `field`.
fn parse_naa(field: &str, s: &str) -> Result<Wwn, Status> {
    let hex: String = s
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    u64::from_str_radix(&hex, 16)
        .ok()
        .filter(|_| hex.len() == 16)
        .map(Wwn)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "{field}: `{s}` is not an NAA of 16 hex digits (colons allowed)"
            ))
        })
}

/// Site 3's difference tables as the API shows them.
pub fn difference_status(
    e: &crate::copysvc::CopyEngine,
    group: Option<&str>,
) -> Result<pb::DifferenceStatusResponse, Status> {
    let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let g = e.generations();
    let groups: Vec<pb::DifferenceGroup> = g
        .groups()
        .filter(|(n, _)| group.is_none_or(|x| x == *n))
        .map(|(n, pending)| pb::DifferenceGroup {
            group: n.to_string(),
            pending_clear_ns: pending.map(ns),
            last_clear_ns: e.last_clear(n).map(ns),
        })
        .collect();
    if let Some(x) = group
        && groups.is_empty()
    {
        return Err(Status::not_found(format!(
            "group: no sync group `{x}` with difference tables here"
        )));
    }
    let volumes = g
        .volumes()
        .filter(|(_, v)| group.is_none_or(|x| x == v.group()))
        .map(|(lun, v)| {
            let older = v.table(Generation::Older);
            let newer = v.table(Generation::Newer);
            pb::DifferenceVolume {
                lun: u32::from(lun),
                group: v.group().to_string(),
                blocks: older.bits.blocks(),
                older_base_ns: ns(older.base),
                older_blocks: older.bits.count(),
                newer_base_ns: ns(newer.base),
                newer_blocks: newer.bits.count(),
                cleared: v.cleared(),
            }
        })
        .collect();
    Ok(pb::DifferenceStatusResponse { groups, volumes })
}

/// An engine refusal as a gRPC status: a bad name is NOT_FOUND, a state conflict is
/// FAILED_PRECONDITION, the rest INVALID_ARGUMENT; the message names the field.
pub fn status_of(e: CopyError) -> Status {
    match e {
        CopyError::NoSuchPair(_) => Status::not_found(e.to_string()),
        CopyError::WrongState { .. } | CopyError::TooLate { .. } | CopyError::Exists(_) => {
            Status::failed_precondition(e.to_string())
        }
        CopyError::Generations(GenerationsError::UnknownGroup { .. }) => {
            Status::not_found(format!("group: {e}"))
        }
        CopyError::Generations(GenerationsError::ClearTooLate { .. }) => {
            Status::failed_precondition(format!("at_ns: {e}"))
        }
        CopyError::Generations(
            GenerationsError::ClearPending { .. } | GenerationsError::NotAfterLastSplit { .. },
        ) => Status::failed_precondition(format!("at_ns: {e}")),
        CopyError::Generations(GenerationsError::NoCoveringTable { .. }) => {
            Status::failed_precondition(format!("image_time_ns: {e}"))
        }
        _ => Status::invalid_argument(e.to_string()),
    }
}

/// A pair's status as the API shows it; `executor` runs it.
pub fn pair_info(p: PairStatus, executor: &str) -> pb::PairInfo {
    pb::PairInfo {
        name: p.name,
        group: p.group,
        mode: p.mode,
        primary_lun: u32::from(p.primary),
        secondary: p.secondary,
        state: p.state,
        primary_status: p.primary_status,
        secondary_status: p.secondary_status,
        diff_blocks: p.diff_blocks,
        changed_blocks: p.changed_blocks,
        blocks: p.blocks,
        copied_blocks: p.copied_blocks,
        journal_entries: p.journal_entries,
        journal_bytes: p.journal_bytes,
        suspend_reason: p.suspend_reason.unwrap_or_default(),
        executor: executor.to_string(),
        relay_last_seq: p.relay_last_seq,
        relay_outstanding: p.relay_outstanding,
    }
}

/// A relay standby as the API shows it.
pub fn relay_standby_info(s: RelayStandbyStatus) -> pb::RelayStandby {
    pb::RelayStandby {
        group: s.group,
        source: s.source,
        applied_seq: s.applied,
        held_records: s.held,
        point: s.point,
        draining: s.draining,
        fenced: s.fenced,
        luns: s.luns.into_iter().map(u32::from).collect(),
    }
}

/// A relay takeover's report as the API shows it.
pub fn relay_takeover_info(r: RelayTakeoverReport) -> pb::RelayTakeoverResponse {
    pb::RelayTakeoverResponse {
        group: r.group,
        source: r.source,
        applied_seq: r.applied,
        dropped_records: r.dropped,
        resumed_point: r.resumed.as_ref().map(|p| p.point),
        app_state: r.resumed.map(|p| p.app_state).unwrap_or_default(),
        fenced_relays: r.fenced_relays,
        luns: r.luns.into_iter().map(u32::from).collect(),
    }
}

/// The relay settings of a `CreatePairRequest` (seed 002); the standby's port and LUN
/// are resolved by the array.
fn relay_options(r: &pb::CreatePairRequest) -> Result<RelayOptions, Status> {
    let mut relays = Vec::new();
    for (i, w) in r.relays.iter().enumerate() {
        relays.push(parse_naa(&format!("relays[{i}]"), w)?.0);
    }
    let selection = match r.selection.as_str() {
        "" => RelaySelection::RoundRobin,
        x => RelaySelection::from_name(x).ok_or_else(|| {
            Status::invalid_argument(format!(
                "selection: `{x}` is not round_robin, least_loaded, random, split_by_speed or duplicate"
            ))
        })?,
    };
    let consistency = match r.consistency.as_str() {
        "" => RelayConsistency::Immediate,
        x => RelayConsistency::from_name(x).ok_or_else(|| {
            Status::invalid_argument(format!(
                "consistency: `{x}` is not immediate, epochs or snapshots"
            ))
        })?,
    };
    Ok(RelayOptions {
        relays,
        selection,
        source: r.source,
        consistency,
        drain_timeout_ms: if r.drain_timeout_ms == 0 {
            RelayOptions::default().drain_timeout_ms
        } else {
            r.drain_timeout_ms
        },
        destination: 0,
        standby_lun: 0,
        fec: r.fec.as_ref().map(relay_fec).transpose()?,
        networks: match r.networks {
            0 | 1 => 1,
            2 => 2,
            n => {
                return Err(Status::invalid_argument(format!(
                    "networks: {n} is not 1 or 2"
                )));
            }
        },
        destination2: 0,
    })
}

/// A `RelayFec` as the scheme it names.
fn relay_fec(f: &pb::RelayFec) -> Result<RelayFec, Status> {
    let small = |field: &str, n: u32| {
        u16::try_from(n)
            .map_err(|_| Status::invalid_argument(format!("fec.{field}: {n} is too large")))
    };
    let fec = match f.replica.as_str() {
        "" => RelayFec::ErasureCode {
            data: small("data", f.data)?,
            parity: small("parity", f.parity)?,
        },
        "whole" => RelayFec::WholeReplica,
        "pieces" => RelayFec::PieceReplica {
            pieces: small("pieces", f.pieces)?,
        },
        x => {
            return Err(Status::invalid_argument(format!(
                "fec.replica: `{x}` is not whole or pieces"
            )));
        }
    };
    fec.validate()
        .map_err(|e| Status::invalid_argument(format!("fec: {e}")))?;
    Ok(fec)
}

/// Parses API pair options into the settings they change.
pub fn options_patch(o: Option<pb::PairOptions>) -> Result<OptionsPatch, Status> {
    let Some(o) = o else {
        return Ok(OptionsPatch::default());
    };
    let strategy = match o.strategy.as_deref() {
        None => None,
        Some(x) => Some(BackupStrategy::from_name(x).ok_or_else(|| {
            Status::invalid_argument(format!("options.strategy: `{x}` is not R, W, M or H"))
        })?),
    };
    let granularity = match o.granularity.as_deref() {
        None => None,
        Some("whole_range") => Some(Granularity::WholeRange),
        Some("per_transfer_unit") => Some(Granularity::PerTransferUnit),
        Some(g) => {
            return Err(Status::invalid_argument(format!(
                "options.granularity: `{g}` is not whole_range or per_transfer_unit"
            )));
        }
    };
    Ok(OptionsPatch {
        copy_rate: o.copy_rate,
        strategy,
        granularity,
        priority: o.priority,
        backup_implies_split: o.backup_implies_split,
        fence: o.fence,
    })
}

/// Hands a request to the node's actor; `false` when the node is gone.
type Handoff = Box<dyn Fn(CopyAdmin) -> bool + Send + Sync>;

struct CopyService {
    send: Handoff,
}

impl CopyService {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> CopyAdmin) -> Result<T, Status> {
        actor::ask_with("node", |reply| (self.send)(make(reply))).await?
    }
}

fn named(pair: String) -> Result<String, Status> {
    if pair.is_empty() {
        Err(Status::invalid_argument(
            "pair: a pair or group name is required",
        ))
    } else {
        Ok(pair)
    }
}

#[tonic::async_trait]
impl pb::copy_server::Copy for CopyService {
    async fn create_pair(
        &self,
        r: Request<pb::CreatePairRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        let r = r.into_inner();
        if r.name.is_empty() {
            return Err(Status::invalid_argument("name: a pair needs a name"));
        }
        let primary = u16::try_from(r.primary_lun)
            .map_err(|_| Status::invalid_argument("primary_lun: above 65535"))?;
        let mode = match r.mode.as_str() {
            "local" => PairMode::Local,
            "sync" => PairMode::Sync,
            "async" => PairMode::Async,
            "relay" => PairMode::Relay,
            m => {
                return Err(Status::invalid_argument(format!(
                    "mode: `{m}` is not local, sync, async or relay"
                )));
            }
        };
        let relay = (mode == PairMode::Relay)
            .then(|| relay_options(&r))
            .transpose()?;
        let secondary = if mode == PairMode::Local {
            Secondary::Local(
                u16::try_from(r.secondary_lun)
                    .map_err(|_| Status::invalid_argument("secondary_lun: above 65535"))?,
            )
        } else {
            Secondary::Remote(parse_naa("secondary_naa", &r.secondary_naa)?)
        };
        let spec = PairSpec {
            name: r.name,
            primary,
            secondary,
            mode,
            group: (!r.group.is_empty()).then_some(r.group),
            options: {
                let mut o = PairOptions::default();
                o.apply(&options_patch(r.options)?);
                o.relay = relay;
                o
            },
            initial: None,
        };
        let journal_bytes = r.journal_bytes;
        self.ask(|reply| CopyAdmin::Create {
            spec,
            journal_bytes,
            reply,
        })
        .await
        .map(Response::new)
    }

    async fn split_pair(
        &self,
        r: Request<pb::SplitPairRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        let r = r.into_inner();
        let pair = named(r.pair)?;
        let at = (r.at_ns > 0).then(|| std::time::Duration::from_nanos(r.at_ns));
        self.ask(|reply| CopyAdmin::Split { pair, at, reply })
            .await
            .map(Response::new)
    }

    async fn resync_pair(
        &self,
        r: Request<pb::PairRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        let pair = named(r.into_inner().pair)?;
        self.ask(|reply| CopyAdmin::Resync { pair, reply })
            .await
            .map(Response::new)
    }

    async fn delete_pair(
        &self,
        r: Request<pb::PairRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        let pair = named(r.into_inner().pair)?;
        self.ask(|reply| CopyAdmin::Delete { pair, reply })
            .await
            .map(Response::new)
    }

    async fn pair_status(
        &self,
        r: Request<pb::PairRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        let pair = r.into_inner().pair;
        let pair = (!pair.is_empty()).then_some(pair);
        self.ask(|reply| CopyAdmin::Status { pair, reply })
            .await
            .map(Response::new)
    }

    async fn takeover(
        &self,
        r: Request<pb::PairRequest>,
    ) -> Result<Response<pb::TakeoverResponse>, Status> {
        let pair = named(r.into_inner().pair)?;
        self.ask(|reply| CopyAdmin::Takeover { pair, reply })
            .await
            .map(Response::new)
    }

    async fn relay_takeover(
        &self,
        r: Request<pb::PairRequest>,
    ) -> Result<Response<pb::RelayTakeoverResponse>, Status> {
        let pair = named(r.into_inner().pair)?;
        self.ask(|reply| CopyAdmin::RelayTakeover { pair, reply })
            .await
            .map(Response::new)
    }

    async fn restart_point(
        &self,
        r: Request<pb::RestartPointRequest>,
    ) -> Result<Response<pb::RestartPointResponse>, Status> {
        let r = r.into_inner();
        let pair = named(r.pair)?;
        let app_state = r.app_state;
        self.ask(|reply| CopyAdmin::RestartPoint {
            pair,
            app_state,
            reply,
        })
        .await
        .map(Response::new)
    }

    async fn clear_difference(
        &self,
        r: Request<pb::ClearDifferenceRequest>,
    ) -> Result<Response<pb::DifferenceStatusResponse>, Status> {
        let r = r.into_inner();
        if r.group.is_empty() {
            return Err(Status::invalid_argument("group: a sync group is required"));
        }
        if r.at_ns == 0 {
            return Err(Status::invalid_argument(
                "at_ns: a clear start time is required",
            ));
        }
        let (group, at) = (r.group, std::time::Duration::from_nanos(r.at_ns));
        self.ask(|reply| CopyAdmin::ClearDifference { group, at, reply })
            .await
            .map(Response::new)
    }

    async fn difference_status(
        &self,
        r: Request<pb::PairRequest>,
    ) -> Result<Response<pb::DifferenceStatusResponse>, Status> {
        let g = r.into_inner().pair;
        let group = (!g.is_empty()).then_some(g);
        self.ask(|reply| CopyAdmin::DifferenceStatus { group, reply })
            .await
            .map(Response::new)
    }

    async fn failover_pairs(
        &self,
        r: Request<pb::FailoverPairsRequest>,
    ) -> Result<Response<pb::FailoverPairsResponse>, Status> {
        let r = r.into_inner();
        if r.group.is_empty() {
            return Err(Status::invalid_argument("group: a sync group is required"));
        }
        if r.pairs.is_empty() {
            return Err(Status::invalid_argument(
                "pairs: at least one pair V3 -> V2",
            ));
        }
        let mut pairs = Vec::new();
        for (i, p) in r.pairs.into_iter().enumerate() {
            if p.name.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "pairs[{i}].name: a pair needs a name"
                )));
            }
            pairs.push(FailoverPair {
                name: p.name,
                v3_lun: u16::try_from(p.v3_lun).map_err(|_| {
                    Status::invalid_argument(format!("pairs[{i}].v3_lun: above 65535"))
                })?,
                v2: parse_naa(&format!("pairs[{i}].v2_naa"), &p.v2_naa)?,
            });
        }
        let mode = match r.mode.as_str() {
            "" | "sync" => PairMode::Sync,
            "async" => PairMode::Async,
            m => {
                return Err(Status::invalid_argument(format!(
                    "mode: `{m}` is not sync or async"
                )));
            }
        };
        let rule = match r.rule.as_str() {
            "" | "safe" => SelectionRule::Safe,
            "literal" => SelectionRule::Literal,
            x => {
                return Err(Status::invalid_argument(format!(
                    "rule: `{x}` is not safe or literal"
                )));
            }
        };
        let mut options = PairOptions::default();
        options.apply(&options_patch(r.options)?);
        let request = crate::copysvc::FailoverRequest {
            group: r.group,
            pairs,
            mode,
            rule,
            report: RemoteReport {
                resync: r.remote_resync,
                image_time: std::time::Duration::from_nanos(r.image_time_ns),
            },
            options,
        };
        self.ask(|reply| CopyAdmin::Failover { request, reply })
            .await
            .map(Response::new)
    }

    async fn recover_pair(
        &self,
        r: Request<pb::RecoverPairRequest>,
    ) -> Result<Response<pb::RecoveryStatusResponse>, Status> {
        let r = r.into_inner();
        let target = named(r.pair)?;
        if r.allowed_ns == 0 {
            return Err(Status::invalid_argument(
                "allowed_ns: the most time for the recovery copy is required",
            ));
        }
        let group_unit = match r.unit.as_str() {
            "" | "device" => false,
            "group" => true,
            u => {
                return Err(Status::invalid_argument(format!(
                    "unit: `{u}` is not device or group"
                )));
            }
        };
        let request = RecoverRequest {
            target,
            allowed: std::time::Duration::from_nanos(r.allowed_ns),
            group_unit,
            max_attempts: if r.max_attempts == 0 {
                3
            } else {
                r.max_attempts
            },
            concurrency: (r.concurrency > 0).then_some(r.concurrency as usize),
            ordered: r.ordered,
        };
        self.ask(|reply| CopyAdmin::Recover { request, reply })
            .await
            .map(Response::new)
    }

    async fn recovery_status(
        &self,
        _r: Request<pb::PairRequest>,
    ) -> Result<Response<pb::RecoveryStatusResponse>, Status> {
        self.ask(|reply| CopyAdmin::RecoveryStatus { reply })
            .await
            .map(Response::new)
    }

    async fn set_pair_options(
        &self,
        r: Request<pb::SetPairOptionsRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        let r = r.into_inner();
        let pair = named(r.pair)?;
        let patch = options_patch(r.options)?;
        self.ask(|reply| CopyAdmin::Options { pair, patch, reply })
            .await
            .map(Response::new)
    }

    async fn relay_status(
        &self,
        _: Request<pb::RelayStatusRequest>,
    ) -> Result<Response<pb::RelayStatusResponse>, Status> {
        Err(Status::unimplemented("not a relay"))
    }

    async fn relay_control(
        &self,
        _: Request<pb::RelayControlRequest>,
    ) -> Result<Response<pb::RelayStatusResponse>, Status> {
        Err(Status::unimplemented("not a relay"))
    }
}

/// The Copy service's routes for a node; `send` hands a request to its actor.
pub fn routes(
    send: impl Fn(CopyAdmin) -> bool + Send + Sync + 'static,
) -> pb::copy_server::CopyServer<impl pb::copy_server::Copy> {
    pb::copy_server::CopyServer::new(CopyService {
        send: Box::new(send),
    })
}
