//! Copy-services steps, waits and checks of a scenario (DESIGN.md §7–§8, seed 004 §7):
//! pairs are created, split, resynced, deleted and taken over through the arrays'
//! `fcsim.v1.Copy` service; the checks compare volumes and tapes with the write
//! history's image at each split (the oracle never asks the engine what it copied).

use std::collections::BTreeMap;
use std::time::Duration;

use fcsim_fabric::Wwpn;
use fcsim_proto::v1 as pb;

use crate::format::{
    BackupStrategySpec, Check, CopyResultsSpec, CyclePhase, GranularitySpec, LuRef, NodeKind,
    PairModeSpec, PairSettings, PortRef, RecoveryUnitSpec, RelayConsistencySpec,
    RelaySelectionSpec, RelaySettings, SelectionRuleSpec, Step, Topology,
};
use crate::launch::lu_naa;
use crate::runner::{Orchestrator, StepResult};
use fcsim_fabric::runtime::clock::fmt_time;

/// A pair as the scenario created it.
#[derive(Debug, Clone)]
pub(crate) struct PairDef {
    pub name: String,
    pub primary: LuRef,
    pub secondary: LuRef,
    pub mode: PairModeSpec,
    pub group: String,
}

/// Every `pair_create` of a scenario (setup and timeline), by pair name.
pub(crate) fn pair_defs(s: &crate::format::Scenario) -> BTreeMap<String, PairDef> {
    s.setup
        .iter()
        .chain(s.steps.iter().map(|t| &t.step))
        .filter_map(|st| match st {
            Step::PairCreate {
                name,
                primary,
                secondary,
                mode,
                group,
                ..
            } => Some((
                name.clone(),
                PairDef {
                    name: name.clone(),
                    primary: primary.clone(),
                    secondary: secondary.clone(),
                    mode: *mode,
                    group: group.clone().unwrap_or_else(|| name.clone()),
                },
            )),
            _ => None,
        })
        .chain(
            s.setup
                .iter()
                .chain(s.steps.iter().map(|t| &t.step))
                .filter_map(|st| match st {
                    Step::Failover3dc {
                        sync, pairs, mode, ..
                    } => Some((sync, pairs, *mode)),
                    _ => None,
                })
                .flat_map(|(sync, pairs, mode)| {
                    pairs.iter().map(move |p| {
                        (
                            p.name.clone(),
                            PairDef {
                                name: p.name.clone(),
                                primary: p.primary.clone(),
                                secondary: p.secondary.clone(),
                                mode,
                                group: sync.clone(),
                            },
                        )
                    })
                }),
        )
        .collect()
}

fn ns(t: Duration) -> u64 {
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}

/// The API form of scenario pair settings: only what the scenario gives.
fn options(s: &PairSettings) -> pb::PairOptions {
    pb::PairOptions {
        copy_rate: s.copy_rate,
        strategy: s.strategy.map(|x| {
            match x {
                BackupStrategySpec::R => "R",
                BackupStrategySpec::W => "W",
                BackupStrategySpec::M => "M",
                BackupStrategySpec::H => "H",
            }
            .to_string()
        }),
        granularity: s.granularity.map(|g| {
            match g {
                GranularitySpec::PerTransferUnit => "per_transfer_unit",
                GranularitySpec::WholeRange => "whole_range",
            }
            .to_string()
        }),
        priority: None,
        backup_implies_split: s.backup_implies_split.then_some(true),
        fence: s.fence.then_some(true),
    }
}

/// The target port a relay pair's `relays` entry names: a WWPN (16 hex digits,
/// colons allowed), a port `node/port`, or a node name (its port 0), of an end node
/// that is no host or tape. `Err` says why not.
pub fn relay_target(t: &Topology, entry: &str) -> Result<Wwpn, String> {
    let hex: String = entry.chars().filter(|c| *c != ':').collect();
    if hex.len() == 16
        && let Ok(w) = u64::from_str_radix(&hex, 16)
    {
        return Ok(Wwpn(fcsim_fabric::Wwn(w)));
    }
    let port = if entry.contains('/') {
        entry
            .parse::<PortRef>()
            .map_err(|e| format!("relay \"{entry}\": {e}"))?
    } else {
        PortRef::new(entry, 0)
    };
    let node = t
        .node(&port.node)
        .ok_or_else(|| format!("relay \"{entry}\": no node named \"{}\"", port.node))?;
    if matches!(
        node.kind,
        NodeKind::Switch | NodeKind::Host | NodeKind::Tape
    ) {
        return Err(format!(
            "relay \"{entry}\": {} is a {}, not a relay (or the standby array)",
            port.node,
            node.kind.as_str()
        ));
    }
    if port.port >= node.ports {
        return Err(format!(
            "relay \"{entry}\": {} has no port {}",
            port.node, port.port
        ));
    }
    // Before the derived values are filled in (validation), the derived WWPN.
    Ok(t.port_wwpn(&port)
        .unwrap_or_else(|| crate::derived::end_node_wwpn(node.kind, node.index, port.port)))
}

/// The relay fields of a `CreatePairRequest` (seed 002): the relays as target port
/// WWPNs.
fn relay_request(t: &Topology, r: Option<&RelaySettings>) -> Result<pb::CreatePairRequest, String> {
    let Some(r) = r else {
        return Ok(pb::CreatePairRequest::default());
    };
    let relays = r
        .relays
        .iter()
        .map(|e| relay_target(t, e).map(|w| format!("{:016x}", w.0.0)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(pb::CreatePairRequest {
        relays,
        selection: r
            .selection
            .map(|s| {
                match s {
                    RelaySelectionSpec::RoundRobin => "round_robin",
                    RelaySelectionSpec::LeastLoaded => "least_loaded",
                    RelaySelectionSpec::Random => "random",
                    RelaySelectionSpec::SplitBySpeed => "split_by_speed",
                    RelaySelectionSpec::Duplicate => "duplicate",
                }
                .to_string()
            })
            .unwrap_or_default(),
        source: r.source.unwrap_or(0),
        consistency: r
            .consistency
            .map(|c| {
                match c {
                    RelayConsistencySpec::Immediate => "immediate",
                    RelayConsistencySpec::Epochs => "epochs",
                    RelayConsistencySpec::Snapshots => "snapshots",
                }
                .to_string()
            })
            .unwrap_or_default(),
        drain_timeout_ms: r.drain_timeout.map_or(0, |d| {
            u64::try_from(d.to_std().as_millis())
                .unwrap_or(u64::MAX)
                .max(1)
        }),
        fec: r.fec.as_ref().map(|f| pb::RelayFec {
            data: f.data.unwrap_or(0),
            parity: f.parity.unwrap_or(0),
            replica: f.replica.clone().unwrap_or_default(),
            pieces: f.pieces.unwrap_or(0),
        }),
        networks: r.networks.map_or(0, u32::from),
        ..pb::CreatePairRequest::default()
    })
}

fn describe(p: &pb::PairInfo) -> String {
    format!(
        "{} ({} {}, group {}): {} [P {}, S {}], {} of {} blocks to copy{}",
        p.name,
        p.mode,
        p.secondary,
        p.group,
        p.state,
        p.primary_status,
        p.secondary_status,
        p.diff_blocks,
        p.blocks,
        if p.suspend_reason.is_empty() {
            String::new()
        } else {
            format!(", suspended: {}", p.suspend_reason)
        }
    )
}

impl Orchestrator {
    /// The pair named `name` (or the first pair of group `name`).
    pub(crate) fn pair_def(&self, name: &str) -> Result<PairDef, String> {
        let defs = pair_defs(&self.scenario);
        defs.get(name)
            .or_else(|| defs.values().find(|d| d.group == name))
            .cloned()
            .ok_or_else(|| format!("no pair or group `{name}`"))
    }

    /// The `Copy` service of the node running `node`'s pairs: an array, or the
    /// virtualization engine of an intelligent switch.
    async fn copy_client(
        &mut self,
        node: &str,
    ) -> Result<pb::copy_client::CopyClient<tonic::transport::Channel>, String> {
        let intelligent = self
            .scenario
            .topology
            .switches
            .iter()
            .any(|s| s.name == node && s.intelligent);
        let node = if intelligent {
            crate::launch::engine_name(node)
        } else {
            node.to_string()
        };
        Ok(pb::copy_client::CopyClient::new(self.channel(&node).await?))
    }

    /// The members of a pair's group (or of group `target`) as the scenario defines them.
    fn group_members(&self, target: &str) -> Vec<String> {
        let defs = pair_defs(&self.scenario);
        let group = defs.get(target).map_or(target, |d| d.group.as_str());
        defs.values()
            .filter(|x| x.group == group)
            .map(|x| x.name.clone())
            .collect()
    }

    pub(crate) async fn copy_step(&mut self, step: &Step) -> StepResult {
        let err = |s: tonic::Status| s.message().to_string();
        match step {
            Step::PairCreate {
                name,
                primary,
                secondary,
                mode,
                group,
                settings,
                journal_bytes,
                relay,
            } => {
                let secondary_naa = match mode {
                    PairModeSpec::Local => String::new(),
                    _ => lu_naa(&self.scenario.topology, &secondary.node, secondary.lun)
                        .ok_or_else(|| format!("{secondary}: no such LU"))?
                        .to_string(),
                };
                let req = pb::CreatePairRequest {
                    name: name.clone(),
                    primary_lun: primary.lun,
                    mode: mode.name().to_string(),
                    secondary_lun: secondary.lun,
                    secondary_naa,
                    group: group.clone().unwrap_or_default(),
                    options: Some(options(settings)),
                    journal_bytes: journal_bytes.unwrap_or(0),
                    ..relay_request(&self.scenario.topology, relay.as_ref())?
                };
                // A remote secondary needs the primary array's copy port to have found
                // it (its remote path); an operator retries until it has.
                let (limit, pause) = self.poll_pause();
                let start = self.now();
                let r = loop {
                    let mut c = self.copy_client(&primary.node).await?;
                    match c.create_pair(req.clone()).await {
                        Ok(r) => break r.into_inner(),
                        Err(s)
                            if s.code() == tonic::Code::FailedPrecondition
                                && s.message().contains("not reachable")
                                && self.now() - start < limit.min(Duration::from_secs(2)) =>
                        {
                            self.clock.sleep(pause).await;
                        }
                        Err(s) => return Err(err(s)),
                    }
                };
                Ok(format!(
                    "pair created {primary} → {secondary}: {}",
                    r.pairs.first().map(describe).unwrap_or_default()
                ))
            }
            Step::PairSplit { pair, split_at } => {
                let def = self.pair_def(pair)?;
                let at_fabric = split_at.map(|a| self.t0() + a.to_std());
                let issued = self.now();
                let mut c = self.copy_client(&def.primary.node).await?;
                let r = c
                    .split_pair(pb::SplitPairRequest {
                        pair: pair.clone(),
                        at_ns: at_fabric
                            .map_or(0, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
                    })
                    .await
                    .map_err(err)?
                    .into_inner();
                let window = match at_fabric {
                    Some(t) => (t, t),
                    None => (issued, self.now()),
                };
                for m in self.group_members(pair) {
                    self.splits.insert(m, window);
                }
                let states: Vec<String> = r.pairs.iter().map(describe).collect();
                Ok(match split_at {
                    Some(a) => format!("split of {pair} scheduled at {a}: {}", states.join("; ")),
                    None => format!("split {pair}: {}", states.join("; ")),
                })
            }
            Step::PairResync { pair } | Step::PairDelete { pair } => {
                let def = self.pair_def(pair)?;
                let mut c = self.copy_client(&def.primary.node).await?;
                let req = pb::PairRequest { pair: pair.clone() };
                let resync = matches!(step, Step::PairResync { .. });
                let r = if resync {
                    c.resync_pair(req).await
                } else {
                    c.delete_pair(req).await
                }
                .map_err(err)?
                .into_inner();
                for m in self.group_members(pair) {
                    self.splits.remove(&m);
                }
                Ok(if resync {
                    format!(
                        "resync {pair}: {}",
                        r.pairs.iter().map(describe).collect::<Vec<_>>().join("; ")
                    )
                } else {
                    format!("deleted {pair}: simplex")
                })
            }
            Step::PairOptions { pair, settings } => {
                let def = self.pair_def(pair)?;
                let mut c = self.copy_client(&def.primary.node).await?;
                let r = c
                    .set_pair_options(pb::SetPairOptionsRequest {
                        pair: pair.clone(),
                        options: Some(options(settings)),
                    })
                    .await
                    .map_err(err)?
                    .into_inner();
                Ok(format!(
                    "options of {pair}: {}",
                    r.pairs.iter().map(describe).collect::<Vec<_>>().join("; ")
                ))
            }
            Step::Takeover { pair, host } => {
                let def = self.pair_def(pair)?;
                let mut c = self.copy_client(&def.secondary.node).await?;
                let r = c
                    .takeover(pb::PairRequest { pair: pair.clone() })
                    .await
                    .map_err(err)?
                    .into_inner();
                Ok(format!(
                    "takeover of {pair} at {}: LUNs {:?} are simplex and writable{}",
                    def.secondary.node,
                    r.luns,
                    host.as_ref()
                        .map(|h| format!(" for {h}"))
                        .unwrap_or_default()
                ))
            }
            Step::RelayTakeover { standby, group } => {
                let mut c = self.copy_client(standby).await?;
                let r = c
                    .relay_takeover(pb::PairRequest {
                        pair: group.clone(),
                    })
                    .await
                    .map_err(err)?
                    .into_inner();
                let text = format!(
                    "relay takeover of {group} at {standby}: applied up to record {}, {} dropped behind a gap, resumed from {}, {} relays fenced, LUNs {:?} simplex and writable",
                    r.applied_seq,
                    r.dropped_records,
                    r.resumed_point
                        .map_or("no restart point".to_string(), |p| format!(
                            "restart point {p} ({} bytes of state)",
                            r.app_state.len()
                        )),
                    r.fenced_relays,
                    r.luns
                );
                self.relay_takeovers
                    .insert((standby.clone(), group.clone()), r);
                Ok(text)
            }
            Step::RestartPoint { pair, app_state } => {
                let def = self.pair_def(pair)?;
                let mut c = self.copy_client(&def.primary.node).await?;
                let r = c
                    .restart_point(pb::RestartPointRequest {
                        pair: pair.clone(),
                        app_state: app_state.clone().into_bytes().into(),
                    })
                    .await
                    .map_err(err)?
                    .into_inner();
                Ok(format!(
                    "restart point {} of {pair} issued at {} ({} bytes of state)",
                    r.point,
                    def.primary.node,
                    app_state.len()
                ))
            }
            Step::CopyManagerRestart { array } => {
                let mut c = pb::array_client::ArrayClient::new(self.channel(array).await?);
                let r = c
                    .restart_copy_manager(pb::RestartCopyManagerRequest {})
                    .await
                    .map_err(err)?
                    .into_inner();
                Ok(format!(
                    "{array}: copy manager restarted, {} running copies aborted",
                    r.aborted
                ))
            }
            Step::ClearDifference {
                group,
                clear_at: at,
                refused,
            } => {
                let node = self.site3_of(group)?;
                let at = self.t0() + at.to_std();
                let mut c = self.copy_client(&node).await?;
                let r = c
                    .clear_difference(pb::ClearDifferenceRequest {
                        group: group.clone(),
                        at_ns: ns(at),
                    })
                    .await;
                match (r, refused) {
                    (Ok(_), false) => Ok(format!(
                        "clear of {group}'s older difference tables at {node} scheduled at {}",
                        fmt_time(at)
                    )),
                    (Ok(_), true) => Err(format!(
                        "{node} accepted the clear of {group} at {}; expected a refusal",
                        fmt_time(at)
                    )),
                    (Err(s), true) if s.code() == tonic::Code::FailedPrecondition => Ok(format!(
                        "{node} refused the clear of {group} at {}: {}",
                        fmt_time(at),
                        s.message()
                    )),
                    (Err(s), _) => Err(err(s)),
                }
            }
            Step::ThreeDcCycle {
                local,
                remote,
                sync,
                split_at,
                stop_after,
            } => {
                self.three_dc_cycle(
                    local,
                    remote,
                    sync,
                    self.t0() + split_at.to_std(),
                    *stop_after,
                )
                .await
            }
            Step::Failover3dc {
                sync,
                remote,
                pairs,
                rule,
                mode,
            } => self.failover_3dc(sync, remote, pairs, *rule, *mode).await,
            Step::RecoverPair {
                pair,
                allowed,
                unit,
                max_attempts,
                concurrency,
                ordered,
            } => {
                let def = self.pair_def(pair)?;
                let mut c = self.copy_client(&def.primary.node).await?;
                let r = c
                    .recover_pair(pb::RecoverPairRequest {
                        pair: pair.clone(),
                        allowed_ns: allowed.as_nanos(),
                        unit: match unit {
                            RecoveryUnitSpec::Device => "device",
                            RecoveryUnitSpec::Group => "group",
                        }
                        .into(),
                        max_attempts: max_attempts.unwrap_or(0),
                        concurrency: concurrency.unwrap_or(0),
                        ordered: *ordered,
                    })
                    .await
                    .map_err(err)?
                    .into_inner();
                let m = r.master.unwrap_or_default();
                Ok(format!(
                    "recovery copy of {} started at {} (session {}, T = {allowed})",
                    m.pairs.join(", "),
                    def.primary.node,
                    m.session
                ))
            }
            _ => Err(format!("{} is not a copy step", step.op())),
        }
    }

    /// Site 3: the array holding the sync group's secondaries (and, after failover,
    /// the primaries of the pairs V3 → V2 in a group of the same name).
    fn site3_of(&self, sync: &str) -> Result<String, String> {
        let failover: Vec<&str> = self
            .scenario
            .steps
            .iter()
            .filter_map(|t| match &t.step {
                Step::Failover3dc { pairs, .. } => Some(pairs),
                _ => None,
            })
            .flatten()
            .map(|p| p.name.as_str())
            .collect();
        pair_defs(&self.scenario)
            .values()
            .filter(|d| d.group == sync || d.name == sync)
            .map(|d| {
                if failover.contains(&d.name.as_str()) {
                    d.primary.node.clone()
                } else {
                    d.secondary.node.clone()
                }
            })
            .next()
            .ok_or_else(|| format!("no pair or group `{sync}`"))
    }

    /// The pairs of `group` at `node`.
    async fn group_pairs(
        &mut self,
        node: &str,
        group: &str,
    ) -> Result<pb::PairStatusResponse, String> {
        let mut c = self.copy_client(node).await?;
        Ok(c.pair_status(pb::PairRequest {
            pair: group.to_string(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner())
    }

    /// Polls until every pair of `group` (at its primary array) is in `state`.
    async fn wait_group(
        &mut self,
        group: &str,
        state: &str,
        limit: Duration,
    ) -> Result<(), String> {
        let node = self.pair_def(group)?.primary.node;
        let pause = self.poll_pause().1;
        let start = self.now();
        loop {
            let r = self.group_pairs(&node, group).await?;
            if !r.pairs.is_empty() && r.pairs.iter().all(|p| p.state == state) {
                return Ok(());
            }
            if self.now() - start > limit {
                return Err(format!(
                    "{group} not {state} after {}: {}",
                    fmt_time(limit),
                    r.pairs.iter().map(describe).collect::<Vec<_>>().join("; ")
                ));
            }
            self.clock.sleep(pause).await;
        }
    }

    /// One turn of site 1's host loop (seed 000 §4.4, S911–S918).
    async fn three_dc_cycle(
        &mut self,
        local: &str,
        remote: &str,
        sync: &str,
        t: Duration,
        stop: Option<CyclePhase>,
    ) -> StepResult {
        let err = |s: tonic::Status| s.message().to_string();
        let site1 = self.pair_def(local)?.primary.node;
        let site3 = self.site3_of(sync)?;
        let (limit, pause) = self.poll_pause();
        let mut log = Vec::new();
        let done = |log: Vec<String>, phase: &str| {
            Ok(format!("{} (stopped after {phase})", log.join("; ")))
        };
        // S911 and S912.
        self.copy_client(&site1)
            .await?
            .split_pair(pb::SplitPairRequest {
                pair: local.to_string(),
                at_ns: ns(t),
            })
            .await
            .map_err(err)?;
        for m in self.group_members(local) {
            self.splits.insert(m, (t, t));
        }
        self.copy_client(&site3)
            .await?
            .clear_difference(pb::ClearDifferenceRequest {
                group: sync.to_string(),
                at_ns: ns(t),
            })
            .await
            .map_err(|s| format!("S912 clear of {sync} at {site3}: {}", s.message()))?;
        log.push(format!(
            "S911/S912 split {local} and clear {sync} at {}",
            fmt_time(t)
        ));
        if stop == Some(CyclePhase::Requested) {
            return done(log, "requested");
        }
        // S913.
        let now = self.now();
        if now <= t {
            self.clock.sleep(t - now + pause).await;
        }
        if stop == Some(CyclePhase::TimePassed) {
            return done(log, "time_passed");
        }
        // S914: split complete and clear complete, or never past S915.
        let start = self.now();
        loop {
            let split = self.group_pairs(&site1, local).await?;
            let split_done =
                !split.pairs.is_empty() && split.pairs.iter().all(|p| p.state == "split");
            let mut c = self.copy_client(&site3).await?;
            let d = c
                .difference_status(pb::PairRequest {
                    pair: sync.to_string(),
                })
                .await
                .map_err(err)?
                .into_inner();
            let cleared = d
                .groups
                .iter()
                .any(|g| g.pending_clear_ns.is_none() && g.last_clear_ns == Some(ns(t)));
            if split_done && cleared {
                break;
            }
            if self.now() - start > limit {
                return Err(format!(
                    "S914: split of {local} {}, clear of {sync} at {site3} {}: not proceeding to S915",
                    if split_done {
                        "complete"
                    } else {
                        "not complete"
                    },
                    if cleared {
                        "complete"
                    } else {
                        "never completed"
                    }
                ));
            }
            self.clock.sleep(pause).await;
        }
        log.push(format!(
            "S914 split and clear complete after {}",
            fmt_time(self.now() - start)
        ));
        if stop == Some(CyclePhase::SplitDone) {
            return done(log, "split_done");
        }
        // S915–S917.
        self.copy_client(&site1)
            .await?
            .resync_pair(pb::PairRequest {
                pair: remote.to_string(),
            })
            .await
            .map_err(err)?;
        for m in self.group_members(remote) {
            self.splits.remove(&m);
        }
        log.push(format!("S915 resync {remote}"));
        if stop == Some(CyclePhase::RemoteResync) {
            return done(log, "remote_resync");
        }
        self.wait_group(remote, "pair", limit).await?;
        log.push(format!("S916 {remote} pair"));
        if stop == Some(CyclePhase::RemotePair) {
            return done(log, "remote_pair");
        }
        let issued = self.now();
        self.copy_client(&site1)
            .await?
            .split_pair(pb::SplitPairRequest {
                pair: remote.to_string(),
                at_ns: 0,
            })
            .await
            .map_err(err)?;
        for m in self.group_members(remote) {
            self.splits.insert(m, (issued, self.now()));
        }
        self.wait_group(remote, "split", limit).await?;
        log.push(format!("S917 {remote} split"));
        if stop == Some(CyclePhase::RemoteSplit) {
            return done(log, "remote_split");
        }
        // S918.
        self.copy_client(&site1)
            .await?
            .resync_pair(pb::PairRequest {
                pair: local.to_string(),
            })
            .await
            .map_err(err)?;
        for m in self.group_members(local) {
            self.splits.remove(&m);
        }
        log.push(format!("S918 resync {local}"));
        if stop == Some(CyclePhase::LocalResync) {
            return done(log, "local_resync");
        }
        self.wait_group(local, "pair", limit).await?;
        log.push(format!("{local} pair"));
        Ok(log.join("; "))
    }

    /// Seed 000 §4.6: site 2's report, takeover there, failover pairs at site 3.
    async fn failover_3dc(
        &mut self,
        sync: &str,
        remote: &str,
        pairs: &[crate::format::FailoverPairSpec],
        rule: SelectionRuleSpec,
        mode: PairModeSpec,
    ) -> StepResult {
        let err = |s: tonic::Status| s.message().to_string();
        let site2 = self.pair_def(remote)?.secondary.node;
        let site3 = self.site3_of(sync)?;
        let roles = self.group_pairs(&site2, remote).await?.secondaries;
        let resync = roles.iter().any(|r| r.state == "resync");
        let image_time = roles
            .iter()
            .map(|r| r.image_time_ns.unwrap_or(0))
            .min()
            .unwrap_or(0);
        let states: Vec<String> = roles
            .iter()
            .map(|r| format!("{} {}", r.pair, r.state))
            .collect();
        self.copy_client(&site2)
            .await?
            .takeover(pb::PairRequest {
                pair: remote.to_string(),
            })
            .await
            .map_err(err)?;
        let mut req_pairs = Vec::new();
        for p in pairs {
            let naa = lu_naa(&self.scenario.topology, &p.secondary.node, p.secondary.lun)
                .ok_or_else(|| format!("{}: no such LU", p.secondary))?;
            req_pairs.push(pb::FailoverPair {
                name: p.name.clone(),
                v3_lun: p.primary.lun,
                v2_naa: naa.to_string(),
            });
        }
        let rule_name = match rule {
            SelectionRuleSpec::Safe => "safe",
            SelectionRuleSpec::Literal => "literal",
        };
        let r = self
            .copy_client(&site3)
            .await?
            .failover_pairs(pb::FailoverPairsRequest {
                group: sync.to_string(),
                pairs: req_pairs,
                mode: mode.name().to_string(),
                rule: rule_name.to_string(),
                remote_resync: resync,
                image_time_ns: image_time,
                options: None,
            })
            .await
            .map_err(err)?
            .into_inner();
        let blocks: u64 = r.copies.iter().map(|c| c.blocks).sum();
        let full: u64 = r.copies.iter().map(|c| c.total_blocks).sum();
        let bb = pairs
            .first()
            .and_then(|p| self.scenario.topology.lu_block_bytes(&p.primary))
            .map_or(512, u64::from);
        let tables: Vec<String> = r
            .copies
            .iter()
            .map(|c| {
                format!(
                    "{} LU {} {} table (base {})",
                    c.pair,
                    c.v3_lun,
                    c.generation,
                    fmt_time(Duration::from_nanos(c.base_ns))
                )
            })
            .collect();
        Ok(format!(
            "failover of {sync} ({rule_name} rule; at {site2}: {}, V2 image at {}): {} copies {blocks} of {full} blocks ({} of {} bytes); {}",
            states.join(", "),
            fmt_time(Duration::from_nanos(image_time)),
            site3,
            blocks * bb,
            full * bb,
            tables.join(", ")
        ))
    }

    /// The pair's status at its primary array.
    async fn pair_info(&mut self, pair: &str) -> Result<pb::PairInfo, String> {
        let def = self.pair_def(pair)?;
        let mut c = self.copy_client(&def.primary.node).await?;
        let r = c
            .pair_status(pb::PairRequest {
                pair: pair.to_string(),
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        r.pairs
            .into_iter()
            .find(|p| p.name == pair)
            .ok_or_else(|| format!("{} does not know pair {pair}", def.primary.node))
    }

    fn poll_pause(&self) -> (Duration, Duration) {
        match self.net {
            fcsim_fabric::runtime::Net::Sim => {
                (Duration::from_secs(120), Duration::from_micros(200))
            }
            fcsim_fabric::runtime::Net::Tokio => {
                (Duration::from_secs(120), Duration::from_millis(20))
            }
        }
    }

    /// Seed 001: waits until the last recovery copy of `pair` ended (at its primary
    /// array, or at its secondary array with `remote`), then compares.
    async fn recovery_outcome(
        &mut self,
        pair: &str,
        outcome: &str,
        remote: bool,
        expect: RecoveryExpect<'_>,
    ) -> StepResult {
        let RecoveryExpect {
            cause,
            row_tracks_at_least,
            rolled_back,
            resent_at_least,
        } = expect;
        let def = self.pair_def(pair)?;
        let node = if remote {
            def.secondary.node.clone()
        } else {
            def.primary.node.clone()
        };
        let (limit, pause) = self.poll_pause();
        let start = self.now();
        loop {
            let mut c = self.copy_client(&node).await?;
            let r = c
                .recovery_status(pb::PairRequest {
                    pair: pair.to_string(),
                })
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            let rem = r.remote.unwrap_or_default();
            let mut resent = 0;
            let (done, got, got_cause, text) = if remote {
                (
                    // `none` is judged at once: no session open, none ended.
                    !rem.in_progress && (outcome == "none" || !rem.last_outcome.is_empty()),
                    if rem.last_outcome.is_empty() && !rem.in_progress {
                        "none".to_string()
                    } else {
                        rem.last_outcome.clone()
                    },
                    rem.last_cause.clone(),
                    format!(
                        "{node} (remote, {}): {} {}, rolled back LUNs {:?}, at most {} tracks on parity/spare, parity rows borrowed {:?}",
                        rem.protection,
                        if rem.last_outcome.is_empty() {
                            "no session ended"
                        } else {
                            rem.last_outcome.as_str()
                        },
                        rem.last_cause,
                        rem.rolled_back,
                        rem.peak_row_tracks,
                        rem.parity_rows_borrowed
                    ),
                )
            } else {
                let Some(m) = r.master else {
                    return Err(format!("{node} ran no recovery copy"));
                };
                resent = m.resent;
                (
                    m.phase == "ended",
                    m.outcome.clone(),
                    m.cause.clone(),
                    format!(
                        "{node} (master) {}: {} {}{}, attempt {}, {} rollbacks, reached [{}], {} tracks sent, {} requests resent, n = {}, save capacity {}",
                        m.pairs.join(", "),
                        m.phase,
                        m.outcome,
                        if m.cause.is_empty() {
                            String::new()
                        } else {
                            format!(" (last rollback: {})", m.cause)
                        },
                        m.attempt,
                        m.rollbacks,
                        m.reached.join(", "),
                        m.tracks_sent,
                        m.resent,
                        m.concurrency,
                        m.save_capacity_tracks
                    ),
                )
            };
            if done {
                let ok = got == outcome
                    && cause.is_none_or(|c| c == got_cause)
                    && row_tracks_at_least.is_none_or(|n| rem.peak_row_tracks >= n)
                    && rolled_back.is_none_or(|l| l == rem.rolled_back.as_slice())
                    && resent_at_least.is_none_or(|n| resent >= n);
                return if ok {
                    Ok(text)
                } else {
                    Err(format!(
                        "{text}; expected {outcome}{}{}{}{}",
                        cause.map(|c| format!(" ({c})")).unwrap_or_default(),
                        row_tracks_at_least
                            .map(|n| format!(", at least {n} tracks on parity/spare"))
                            .unwrap_or_default(),
                        rolled_back
                            .map(|l| format!(", rolled back LUNs {l:?}"))
                            .unwrap_or_default(),
                        resent_at_least
                            .map(|n| format!(", at least {n} requests resent"))
                            .unwrap_or_default()
                    ))
                };
            }
            if self.now() - start > limit {
                return Err(format!("{text}; still running"));
            }
            self.clock.sleep(pause).await;
        }
    }

    /// Seed 001 §7.4 item 3: waits until a recovery copy reaches `point`, polling its
    /// master or remote array often enough to place a fault between two messages.
    pub(crate) async fn wait_recovery(
        &mut self,
        point: &crate::format::RecoveryPoint,
    ) -> StepResult {
        let def = self.pair_def(&point.recovery)?;
        let remote = point.remote.is_some();
        let node = if remote {
            def.secondary.node.clone()
        } else {
            def.primary.node.clone()
        };
        let (limit, pause) = self.poll_pause();
        let pause = pause / 4;
        let start = self.now();
        // A point not reached when the session is over never comes: fail at once.
        let mut seen_open = false;
        loop {
            let mut c = self.copy_client(&node).await?;
            let r = c
                .recovery_status(pb::PairRequest {
                    pair: point.recovery.clone(),
                })
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            let (reached, over, text) = if remote {
                let rem = r.remote.unwrap_or_default();
                let ended = seen_open && !rem.in_progress;
                seen_open |= rem.in_progress;
                let want_end = point.remote.as_deref() == Some("ended");
                let over = ended && !want_end;
                let reached = u32::try_from(rem.reached.len()).unwrap_or(u32::MAX);
                let there = if want_end {
                    ended
                } else {
                    rem.in_progress && point.writes.is_none_or(|n| rem.writes_received >= n)
                };
                (
                    there && point.reached.is_none_or(|n| reached >= n),
                    over,
                    format!(
                        "{node} (remote): session {}{}, {} writes applied, reached LUNs {:?}",
                        rem.session,
                        if rem.in_progress {
                            " in progress"
                        } else {
                            " not open"
                        },
                        rem.writes_received,
                        rem.reached
                    ),
                )
            } else {
                let m = r.master.unwrap_or_default();
                let reached = u32::try_from(m.reached.len()).unwrap_or(u32::MAX);
                (
                    point.master.as_deref() == Some(m.phase.as_str())
                        && point.tracks_left.is_none_or(|n| m.tracks_left <= n)
                        && point.reached.is_none_or(|n| reached >= n),
                    m.phase == "ended",
                    format!(
                        "{node} (master): {}, {} tracks left, reached [{}]",
                        m.phase,
                        m.tracks_left,
                        m.reached.join(", ")
                    ),
                )
            };
            if reached {
                return Ok(format!("{text} after {}", fmt_time(self.now() - start)));
            }
            if over {
                return Err(format!("{text}; the session ended before the point"));
            }
            if self.now() - start > limit {
                return Err(format!("{text}; the point never came"));
            }
            self.clock.sleep(pause).await;
        }
    }

    /// Waits until a pair reaches `state`.
    pub(crate) async fn wait_pair(&mut self, pair: &str, state: &str) -> StepResult {
        let (limit, pause) = self.poll_pause();
        let start = self.now();
        loop {
            let p = self.pair_info(pair).await?;
            if p.state == state {
                return Ok(format!(
                    "{} after {}",
                    describe(&p),
                    fcsim_fabric::runtime::clock::fmt_time(self.now() - start)
                ));
            }
            if self.now() - start > limit {
                return Err(format!("{} — not {state}", describe(&p)));
            }
            self.clock.sleep(pause).await;
        }
    }

    async fn copy_results(
        &mut self,
        host: &str,
        manager: &LuRef,
        list_id: u8,
    ) -> Result<pb::ReceiveCopyResultsResponse, String> {
        let mut hc = self.host(host).await?;
        Ok(hc
            .receive_copy_results(pb::ReceiveCopyResultsRequest {
                device: manager.to_string(),
                list_id: u32::from(list_id),
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner())
    }

    /// Polls RECEIVE COPY RESULTS until the copy is no longer in progress.
    pub(crate) async fn wait_copy_results(&mut self, spec: &CopyResultsSpec) -> StepResult {
        let (limit, pause) = self.poll_pause();
        let start = self.now();
        let mut polls = 0u64;
        loop {
            let r = self
                .copy_results(&spec.host, &spec.manager, spec.list_id)
                .await?;
            polls += 1;
            if r.copy_status != "in-progress" && !r.copy_status.is_empty() {
                return Ok(format!(
                    "copy {} at {}: {} ({} segments, {} bytes) after {} and {polls} polls",
                    spec.list_id,
                    spec.manager,
                    r.copy_status,
                    r.segments_processed,
                    r.transfer_count,
                    fcsim_fabric::runtime::clock::fmt_time(self.now() - start)
                ));
            }
            if self.now() - start > limit {
                return Err(format!("copy {} still {}", spec.list_id, r.copy_status));
            }
            self.clock.sleep(pause).await;
        }
    }

    /// An `xcopy` step whose source is the secondary of a pair that splits on a backup
    /// (embodiment 4) split the pair while it ran.
    pub(crate) fn note_backup_split(&mut self, sources: &[LuRef], window: (Duration, Duration)) {
        let defs = pair_defs(&self.scenario);
        for d in defs.values() {
            if sources.contains(&d.secondary) && !self.splits.contains_key(&d.name) {
                let implied = self.scenario.setup.iter().chain(self.scenario.steps.iter().map(|t| &t.step)).any(|s| {
                    matches!(s, Step::PairCreate { name, settings, .. } | Step::PairOptions { pair: name, settings }
                        if name == &d.name && settings.backup_implies_split)
                });
                if implied {
                    self.splits.insert(d.name.clone(), window);
                }
            }
        }
    }

    /// The primary's image at the pair's split, from the workload's history.
    async fn split_image(
        &mut self,
        pair: &str,
        workload: &str,
    ) -> Result<(PairDef, fcsim_devices::history::ImageModel), String> {
        let def = self.pair_def(pair)?;
        let (from, to) = *self
            .splits
            .get(pair)
            .ok_or_else(|| format!("pair {pair} was not split by the scenario"))?;
        let (device, history) = self.workload_history(workload, false).await?;
        if device != def.primary.to_string() {
            return Err(format!(
                "workload {workload} writes {device}, not the primary {} of {pair}",
                def.primary
            ));
        }
        Ok((
            def,
            history.expected_image_across(&device, Some(from), Some(to)),
        ))
    }

    pub(crate) async fn copy_check(&mut self, c: &Check) -> StepResult {
        match c {
            Check::RelayStandby {
                array,
                group,
                min_applied,
                resumed_point,
                fenced,
            } => {
                let mut c = self.copy_client(array).await?;
                let r = c
                    .pair_status(pb::PairRequest {
                        pair: group.clone(),
                    })
                    .await
                    .map_err(|s| s.message().to_string())?
                    .into_inner();
                let s = r
                    .relay_standbys
                    .into_iter()
                    .find(|s| s.group == *group)
                    .ok_or_else(|| format!("{array} is no relay standby of group {group}"))?;
                let resumed = self
                    .relay_takeovers
                    .get(&(array.clone(), group.clone()))
                    .map(|t| t.resumed_point.unwrap_or(0));
                let text = format!(
                    "{array} standby of {group}: applied up to record {}, {} held behind a gap, last restart point {}, {}{}",
                    s.applied_seq,
                    s.held_records,
                    s.point.map_or("none".to_string(), |p| p.to_string()),
                    if s.fenced {
                        "taken over, source fenced"
                    } else {
                        "replicating"
                    },
                    resumed.map_or(String::new(), |p| format!(", resumed from point {p}"))
                );
                let mut bad = Vec::new();
                if let Some(m) = min_applied
                    && s.applied_seq < *m
                {
                    bad.push(format!("expected at least {m} records applied"));
                }
                if let Some(p) = resumed_point
                    && resumed != Some(*p)
                {
                    bad.push(format!("expected a takeover resumed from point {p}"));
                }
                if let Some(f) = fenced
                    && s.fenced != *f
                {
                    bad.push(format!("expected fenced: {f}"));
                }
                if bad.is_empty() {
                    Ok(text)
                } else {
                    Err(format!("{text}; {}", bad.join(", ")))
                }
            }
            Check::PairState {
                pair,
                state,
                diff_blocks_at_most,
                executor,
            } => {
                let p = self.pair_info(pair).await?;
                let text = format!("{}, run by {}", describe(&p), p.executor);
                let ok = p.state == *state
                    && diff_blocks_at_most.is_none_or(|m| p.diff_blocks <= m)
                    && executor.as_ref().is_none_or(|e| *e == p.executor);
                match (ok, executor) {
                    (true, _) => Ok(text),
                    (false, Some(e)) => Err(format!("{text}; expected {state}, run by {e}")),
                    (false, None) => Err(format!("{text}; expected {state}")),
                }
            }
            Check::BackupEqualsSplitImage {
                tape,
                pair,
                workload,
                lba,
                blocks,
            } => {
                let (def, model) = self.split_image(pair, workload).await?;
                let bb = self
                    .scenario
                    .topology
                    .lu_block_bytes(&def.primary)
                    .unwrap_or(512);
                let t = self.tape_digests(tape, bb).await?;
                if t.digests.len() as u64 != *blocks {
                    return Err(format!(
                        "{tape} holds {} blocks, the backup range has {blocks}",
                        t.digests.len()
                    ));
                }
                let range = *lba..lba + blocks;
                let touched = model.blocks.keys().filter(|b| range.contains(b)).count();
                // Blocks outside the range are not on the tape: only the range counts.
                let bad: Vec<u64> = model
                    .check(|b| {
                        b.checked_sub(*lba)
                            .and_then(|i| usize::try_from(i).ok())
                            .and_then(|i| t.digests.get(i).copied())
                    })
                    .err()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| m.lba)
                    .filter(|b| range.contains(b))
                    .collect();
                match bad.first() {
                    None => Ok(format!(
                        "{tape} holds {} at the split of {pair} exactly: {blocks} blocks, {touched} written by {workload}",
                        def.primary
                    )),
                    Some(first) => Err(format!(
                        "{tape} differs from {} at the split of {pair} in {} blocks (first: LBA {first})",
                        def.primary,
                        bad.len()
                    )),
                }
            }
            Check::SecondaryEqualsSplitImage { pair, workload } => {
                let (def, model) = self.split_image(pair, workload).await?;
                let digests = self.lu_digests(&def.secondary).await?;
                match model.check(|b| {
                    usize::try_from(b)
                        .ok()
                        .and_then(|i| digests.get(i).copied())
                }) {
                    Ok(n) => Ok(format!(
                        "{} holds {} at the split of {pair} ({n} written blocks checked)",
                        def.secondary, def.primary
                    )),
                    Err(bad) => Err(format!(
                        "{} differs from {} at the split of {pair} in {} blocks (first: LBA {})",
                        def.secondary,
                        def.primary,
                        bad.len(),
                        bad[0].lba
                    )),
                }
            }
            Check::RecoveryOutcome {
                pair,
                outcome,
                side,
                cause,
                row_tracks_at_least,
                rolled_back,
                resent_at_least,
            } => {
                self.recovery_outcome(
                    pair,
                    outcome,
                    side.as_deref() == Some("remote"),
                    RecoveryExpect {
                        cause: cause.as_deref(),
                        row_tracks_at_least: *row_tracks_at_least,
                        rolled_back: rolled_back.as_deref(),
                        resent_at_least: *resent_at_least,
                    },
                )
                .await
            }
            Check::PrefixConsistent {
                workload,
                volume,
                expect,
            } => {
                let (device, history) = self.workload_history(workload, true).await?;
                let digests = self.lu_digests(volume).await?;
                let read = |b: u64| {
                    usize::try_from(b)
                        .ok()
                        .and_then(|i| digests.get(i).copied())
                };
                let acked = history.acked_count(&device);
                match history.prefix_instant(&device, read) {
                    Some(t) if !*expect => Err(format!(
                        "{volume} is {device} as of {}: a prefix, expected writes out of order",
                        t.map_or("the end".to_string(), |t| format!("{:?}", t)),
                    )),
                    None if !*expect => Ok(format!(
                        "{volume} matches no instant of {device}: writes applied out of order, as expected"
                    )),
                    Some(t) => {
                        let rpo = history.rpo(&device, read);
                        Ok(format!(
                            "{volume} is {device} as of {}: a prefix of {workload}'s writes ({} of {acked} acknowledged writes behind)",
                            t.map_or("the end".to_string(), |t| format!("{:?}", t)),
                            rpo.lost_writes
                        ))
                    }
                    None => Err(format!(
                        "{volume} matches no instant of {device}: writes applied out of order"
                    )),
                }
            }
            Check::RpoAtMost {
                workload,
                volume,
                writes,
                lost_at_least,
            } => {
                let (device, history) = self.workload_history(workload, true).await?;
                let digests = self.lu_digests(volume).await?;
                let rpo = history.rpo(&device, |b| {
                    usize::try_from(b)
                        .ok()
                        .and_then(|i| digests.get(i).copied())
                });
                let text = format!(
                    "RPO of {volume} for {workload}: {} of {} acknowledged writes lost ({} bytes{})",
                    rpo.lost_writes,
                    history.acked_count(&device),
                    rpo.lost_bytes,
                    match (rpo.oldest_lost_ack, rpo.newest_lost_ack) {
                        (Some(a), Some(b)) => format!(", acknowledged {a:?}..{b:?}"),
                        _ => String::new(),
                    }
                );
                let lost = rpo.lost_writes as u64;
                if lost <= *writes && lost >= *lost_at_least {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
            Check::CopyResults {
                host,
                manager,
                list_id,
                status,
            } => {
                let r = self.copy_results(host, manager, *list_id).await?;
                let want = match status.as_str() {
                    "completed" => "completed",
                    "failed" => "completed-with-error",
                    _ => "in-progress",
                };
                let text = format!(
                    "copy {list_id} at {manager}: {} ({} segments, {} bytes)",
                    r.copy_status, r.segments_processed, r.transfer_count
                );
                if r.copy_status == want {
                    Ok(text)
                } else {
                    Err(format!("{text}; expected {want}"))
                }
            }
            Check::FailoverCopied {
                sync,
                blocks_at_least,
                blocks_at_most,
                below_full,
            } => {
                let node = self.site3_of(sync)?;
                let r = self.group_pairs(&node, sync).await?;
                let copied: u64 = r.pairs.iter().map(|p| p.copied_blocks).sum();
                let full: u64 = r.pairs.iter().map(|p| p.blocks).sum();
                let text = format!(
                    "failover pairs of {sync} at {node} copied {copied} of {full} blocks: {}",
                    r.pairs.iter().map(describe).collect::<Vec<_>>().join("; ")
                );
                let ok = !r.pairs.is_empty()
                    && blocks_at_least.is_none_or(|m| copied >= m)
                    && blocks_at_most.is_none_or(|m| copied <= m)
                    && (!below_full || copied < full);
                if ok { Ok(text) } else { Err(text) }
            }
            _ => Err(format!("{} is not a copy check", c.name())),
        }
    }
}

/// What a `recovery_outcome` check expects besides the outcome.
pub(crate) struct RecoveryExpect<'a> {
    cause: Option<&'a str>,
    row_tracks_at_least: Option<u64>,
    rolled_back: Option<&'a [u32]>,
    resent_at_least: Option<u64>,
}
