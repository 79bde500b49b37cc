//! Relay devices in a run (seed 002): the `relay_control` step and the `relay_state`
//! check, both through the relay node's `fcsim.v1.Copy` service.

use fcsim_proto::v1 as pb;

use crate::format::{Check, RelayControlOp, Step};
use crate::runner::{Orchestrator, StepResult};

/// One line about a relay's state.
pub fn describe(s: &pb::RelayStatusResponse) -> String {
    format!(
        "{} holds {} records ({} bytes); acked {}, forwarded {}, busy {}, refused {}, dropped {}, fenced {:?}",
        s.relay,
        s.held_records,
        s.held_bytes,
        s.acked,
        s.forwarded,
        s.busy,
        s.refused,
        s.dropped,
        s.fenced
    )
}

impl Orchestrator {
    pub(crate) async fn relay_control(&mut self, step: &Step) -> StepResult {
        let Step::RelayControl {
            relay,
            control,
            sources,
        } = step
        else {
            return Err("not a relay_control step".into());
        };
        let mut c = pb::copy_client::CopyClient::new(self.channel(relay).await?);
        let op = match control {
            RelayControlOp::Forward => "forward",
            RelayControlOp::Fence => "fence",
        };
        let s = c
            .relay_control(pb::RelayControlRequest {
                op: op.to_string(),
                sources: sources.clone(),
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        Ok(format!("relay {relay}: {op}; {}", describe(&s)))
    }

    pub(crate) async fn relay_check(&mut self, c: &Check) -> StepResult {
        let Check::RelayState {
            relay,
            held_records,
            held_bytes,
            acked,
            forwarded,
            busy,
            refused,
            dropped,
            fenced,
        } = c
        else {
            return Err("not a relay_state check".into());
        };
        let mut client = pb::copy_client::CopyClient::new(self.channel(relay).await?);
        let s = client
            .relay_status(pb::RelayStatusRequest {})
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let mut wrong = Vec::new();
        let fields = [
            ("held_records", *held_records, s.held_records),
            ("held_bytes", *held_bytes, s.held_bytes),
            ("acked", *acked, s.acked),
            ("forwarded", *forwarded, s.forwarded),
            ("busy", *busy, s.busy),
            ("refused", *refused, s.refused),
            ("dropped", *dropped, s.dropped),
        ];
        for (name, want, got) in fields {
            if let Some(w) = want
                && w != got
            {
                wrong.push(format!("{name} {got}, expected {w}"));
            }
        }
        if let Some(f) = fenced
            && *f != s.fenced
        {
            wrong.push(format!("fenced {:?}, expected {f:?}", s.fenced));
        }
        let text = describe(&s);
        if wrong.is_empty() {
            Ok(text)
        } else {
            Err(format!("{text}: {}", wrong.join(", ")))
        }
    }
}
