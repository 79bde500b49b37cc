//! `fcsim.v1.Copy` (DESIGN.md §10) on an array or an intelligent switch's engine:
//! validates requests (INVALID_ARGUMENT naming the field) and hands them to the node's
//! copy engine ([`crate::copysvc::CopyEngine`]) through its admin channel.

use fcsim_fabric::Wwn;
use fcsim_proto::v1 as pb;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::copysvc::{
    BackupStrategy, CopyError, Granularity, OptionsPatch, PairMode, PairOptions, PairSpec,
    PairStatus, Secondary,
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
    Options {
        pair: String,
        patch: OptionsPatch,
        reply: Reply<pb::PairStatusResponse>,
    },
}

/// An engine refusal as a gRPC status: a bad name is NOT_FOUND, a state conflict is
/// FAILED_PRECONDITION, the rest INVALID_ARGUMENT; the message names the field.
pub fn status_of(e: CopyError) -> Status {
    match e {
        CopyError::NoSuchPair(_) => Status::not_found(e.to_string()),
        CopyError::WrongState { .. } | CopyError::TooLate { .. } | CopyError::Exists(_) => {
            Status::failed_precondition(e.to_string())
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
    }
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
        let (reply, rx) = oneshot::channel();
        if !(self.send)(make(reply)) {
            return Err(Status::unavailable("node is shutting down"));
        }
        rx.await
            .map_err(|_| Status::unavailable("node is shutting down"))?
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
            m => {
                return Err(Status::invalid_argument(format!(
                    "mode: `{m}` is not local, sync or async"
                )));
            }
        };
        let secondary = if mode == PairMode::Local {
            Secondary::Local(
                u16::try_from(r.secondary_lun)
                    .map_err(|_| Status::invalid_argument("secondary_lun: above 65535"))?,
            )
        } else {
            let hex: String = r
                .secondary_naa
                .trim_start_matches("0x")
                .chars()
                .filter(|c| *c != ':')
                .collect();
            let naa = u64::from_str_radix(&hex, 16)
                .ok()
                .filter(|_| hex.len() == 16)
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "secondary_naa: `{}` is not an NAA of 16 hex digits (colons allowed)",
                        r.secondary_naa
                    ))
                })?;
            Secondary::Remote(Wwn(naa))
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
}

/// The Copy service's routes for a node; `send` hands a request to its actor.
pub fn routes(
    send: impl Fn(CopyAdmin) -> bool + Send + Sync + 'static,
) -> pb::copy_server::CopyServer<impl pb::copy_server::Copy> {
    pb::copy_server::CopyServer::new(CopyService {
        send: Box::new(send),
    })
}
