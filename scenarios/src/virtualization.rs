//! Intelligent-switch steps and checks of the orchestrator (seed 003): mirrors, array
//! licence changes, and what the switch's `fcsim.v1.Virtualization` service reports
//! about its operations, its function table and its virtual LUs.

use fcsim_proto::v1 as pb;
use tonic::transport::Channel;

use crate::format::{Check, LuRef, Step};
use crate::launch::engine_name;
use crate::runner::{Orchestrator, StepResult};

impl Orchestrator {
    /// The virtualization service of intelligent switch `switch`.
    pub(crate) async fn engine(
        &mut self,
        switch: &str,
    ) -> Result<pb::virtualization_client::VirtualizationClient<Channel>, String> {
        Ok(pb::virtualization_client::VirtualizationClient::new(
            self.channel(&engine_name(switch)).await?,
        ))
    }

    pub(crate) async fn virtualization_step(&mut self, step: &Step) -> StepResult {
        match step {
            Step::MirrorStart { src, dst } => {
                let op = self
                    .engine(&src.node)
                    .await?
                    .start_mirror(pb::StartMirrorRequest {
                        src_lun: src.lun,
                        dst_lun: dst.lun,
                    })
                    .await
                    .map_err(|s| format!("{}: {}", src.node, s.message()))?
                    .into_inner();
                Ok(format!(
                    "mirror {src} → {dst} started as operation {} ({})",
                    op.id,
                    op.log.join("; ")
                ))
            }
            Step::ArrayFunctions { array, functions } => {
                let names: Vec<String> = functions
                    .iter()
                    .filter_map(|f| serde_json::to_value(f).ok()?.as_str().map(str::to_string))
                    .collect();
                let mut c = pb::array_client::ArrayClient::new(self.channel(array).await?);
                c.set_functions(pb::SetFunctionsRequest {
                    functions: names.clone(),
                })
                .await
                .map_err(|s| format!("{array}: {}", s.message()))?;
                Ok(format!("{array} now runs [{}]", names.join(", ")))
            }
            _ => Err("not an intelligent-switch step".into()),
        }
    }

    /// The virtual LU `r` as its switch reports it.
    pub(crate) async fn virtual_lu_info(&mut self, r: &LuRef) -> Result<pb::VirtualLuInfo, String> {
        self.engine(&r.node)
            .await?
            .list_virtual_lus(pb::ListVirtualLusRequest {})
            .await
            .map_err(|s| format!("{}: {}", r.node, s.message()))?
            .into_inner()
            .lus
            .into_iter()
            .find(|l| l.lun == r.lun)
            .ok_or_else(|| format!("{r}: no such virtual LU"))
    }

    pub(crate) async fn virtualization_check(&mut self, c: &Check) -> StepResult {
        match c {
            Check::Operation {
                switch,
                operation: op,
                executors,
                state,
                switch_bytes_at_most,
                switch_bytes_at_least,
            } => {
                let ops = self
                    .engine(switch)
                    .await?
                    .list_operations(pb::ListOperationsRequest {})
                    .await
                    .map_err(|s| format!("{switch}: {}", s.message()))?
                    .into_inner()
                    .operations;
                let o = ops.iter().find(|o| o.id == *op).ok_or_else(|| {
                    format!("{switch} has no operation {op} ({} so far)", ops.len())
                })?;
                let text = format!(
                    "{switch} operation {op} ({} {} → {}): {} by [{}], {} bytes, {} through the switch",
                    o.kind,
                    o.source,
                    o.destination,
                    o.state,
                    o.executors.join(", "),
                    o.bytes,
                    o.switch_data_bytes
                );
                let mut wrong = Vec::new();
                if o.state != *state {
                    wrong.push(format!("state is {}, expected {state}", o.state));
                }
                if o.executors != *executors {
                    wrong.push(format!("executors expected [{}]", executors.join(", ")));
                }
                if let Some(m) = switch_bytes_at_most
                    && o.switch_data_bytes > *m
                {
                    wrong.push(format!("more than {m} bytes crossed the switch"));
                }
                if let Some(m) = switch_bytes_at_least
                    && o.switch_data_bytes < *m
                {
                    wrong.push(format!("fewer than {m} bytes crossed the switch"));
                }
                if wrong.is_empty() {
                    Ok(text)
                } else {
                    Err(format!(
                        "{text}: {}; log: {}",
                        wrong.join("; "),
                        o.log.join("; ")
                    ))
                }
            }
            Check::FunctionTable {
                switch,
                array,
                function,
                can,
                provenance,
            } => {
                let tf = self
                    .engine(switch)
                    .await?
                    .get_function_table(pb::GetFunctionTableRequest {})
                    .await
                    .map_err(|s| format!("{switch}: {}", s.message()))?
                    .into_inner();
                let cell = tf
                    .rows
                    .iter()
                    .find(|r| r.device_id == *array)
                    .and_then(|r| r.cells.iter().find(|c| c.function == function.name()))
                    .ok_or_else(|| format!("{switch}: TF has no row for {array}"))?;
                let text = format!(
                    "{switch} TF: {array} {} {function} ({}, learned at {}µs)",
                    if cell.can { "can" } else { "cannot" },
                    cell.provenance,
                    cell.learned_at_us
                );
                if cell.can == *can && provenance.as_ref().is_none_or(|p| *p == cell.provenance) {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
            Check::BackendCommands { lu, at_most } => {
                let info = self.virtual_lu_info(lu).await?;
                let text = format!("{lu} sent {} commands to arrays", info.backend_commands);
                if info.backend_commands <= *at_most {
                    Ok(text)
                } else {
                    Err(format!("{text}, expected at most {at_most}"))
                }
            }
            _ => Err("not an intelligent-switch check".into()),
        }
    }
}
