//! `fcsim copy create|split|resync|delete|status|takeover|options|backup|results`,
//! `clear|differences|failover` (three sites, seed 000) and
//! `relay-status|relay-forward|relay-fence` (relay devices, seed 002): the
//! copy services of the arrays and intelligent switches (DESIGN.md §7, seed 004),
//! reached through the Control endpoint. A pair is managed at its primary's array, or at
//! the intelligent switch presenting its virtual LUs (`--array sw1`: the switch runs the
//! pair or gives it to the array holding both volumes); takeover is asked of the
//! secondary array; each serves `fcsim.v1.Copy`. `backup` and `results` are SCSI
//! commands a host sends: a server-free EXTENDED COPY from a (secondary) LU to a tape,
//! and RECEIVE COPY RESULTS about it. Server refusals (INVALID_ARGUMENT /
//! FAILED_PRECONDITION / NOT_FOUND naming the field) come back as `Err` and `main`
//! prints them.
//!
//! Start here: [`copy`] dispatches; [`status_table`] draws the status view.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use fcsim_devices::scsi::cdb::{RcrServiceAction, ReceiveCopyResults};
use fcsim_devices::scsi::inquiry::NaaId;
use fcsim_devices::scsi::xcopy::{
    CopyManagerStatus, CopyStatus, DeviceParams, ParameterList, Segment, TargetDescriptor,
};
use fcsim_fabric::Wwn;
use fcsim_proto::v1 as pb;
use pb::array_client::ArrayClient;
use pb::control_client::ControlClient;
use pb::copy_client::CopyClient;
use pb::host_client::HostClient;
use tonic::transport::Channel;

use crate::client::{channel, names};
use crate::virt_cli::table;

/// How often `status --watch` polls the array.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// Width of the text progress bar, in characters between the brackets.
const BAR_WIDTH: u64 = 20;

/// Pair states in which a background copy runs (formation, resync, split-time
/// differences): `status` shows their progress and `--watch` waits for them to end.
const COPYING: [&str; 3] = ["copy", "resync", "split_pending"];

#[derive(Subcommand)]
pub enum CopyCmd {
    /// Create a pair and start its formation copy (asked of the primary's array).
    Create {
        /// The pair's name.
        name: String,
        /// The primary volume, `ARRAY:LUN`.
        #[arg(long)]
        primary: String,
        /// The secondary volume, `ARRAY:LUN` (on the primary's array for a local pair),
        /// or a remote LU's NAA.
        #[arg(long)]
        secondary: String,
        /// local: in-array mirror; sync: remote, the host is acknowledged once the
        /// secondary has the write; async: remote, through the group's journal; relay:
        /// remote through relays (seed 002), acknowledged once a relay holds the write.
        #[arg(long, value_parser = ["local", "sync", "async", "relay"])]
        mode: String,
        /// Consistency group; default: a group of its own named after the pair.
        #[arg(long)]
        group: Option<String>,
        /// Async groups: journal capacity in bytes (default 64 MiB).
        #[arg(long)]
        journal_bytes: Option<u64>,
        #[command(flatten)]
        options: OptionArgs,
        #[command(flatten)]
        relay: RelayArgs,
    },
    /// Split a pair or a consistency group: the secondary keeps the split-time image
    /// (split_pending until the split-time differences are copied, then split).
    Split {
        /// A pair or a consistency group.
        pair: String,
        /// The primary's array.
        #[arg(long)]
        array: String,
        /// Split at this fabric time (ms since the fabric started) instead of now.
        #[arg(long)]
        at_ms: Option<u64>,
    },
    /// Copy the changes made since the split (or suspension) and return to pair.
    Resync {
        /// A pair or a consistency group.
        pair: String,
        /// The primary's array.
        #[arg(long)]
        array: String,
    },
    /// Delete a pair or group: both volumes become simplex.
    Delete {
        /// A pair or a consistency group.
        pair: String,
        /// The primary's array.
        #[arg(long)]
        array: String,
    },
    /// The array's pairs (all, or one pair or group) with their remaining differences,
    /// a progress bar for those copying, and the secondary roles the array holds.
    Status {
        /// A pair or a consistency group; default: every pair of the array.
        pair: Option<String>,
        /// The array to ask (a pair's primary; a secondary array lists its roles).
        #[arg(long)]
        array: String,
        /// Poll every 200 ms, showing the copy's progress, until no pair is in copy,
        /// resync or split_pending; then print the table.
        #[arg(long)]
        watch: bool,
    },
    /// At the secondary array: the pair's (or group's) secondary volumes become
    /// writable simplex volumes.
    Takeover {
        /// A pair or a consistency group.
        pair: String,
        /// The secondary's array.
        #[arg(long)]
        array: String,
    },
    /// Seed 002, at the standby array of a relay group: drain the reachable relays, fence
    /// the old primary and the relays, and make the volumes writable simplex.
    RelayTakeover {
        /// The standby array.
        #[arg(long)]
        array: String,
        /// The relay pairs' consistency group (or a pair).
        #[arg(long)]
        group: String,
    },
    /// Seed 002 emb 7-9, at a relay pair's primary array: an application restart point
    /// carrying the application's state.
    RestartPoint {
        /// A relay pair or its group.
        pair: String,
        /// The primary's array.
        #[arg(long)]
        array: String,
        /// The application state (text) shipped with the restart point.
        #[arg(long, default_value = "")]
        app_state: String,
    },
    /// Three sites (seed 000), at site 3: clear the sync group's older difference table
    /// at a time (the split time at site 1); refused once that time has passed there.
    Clear {
        /// The sync pairs' consistency group.
        group: String,
        /// Site 3's array.
        #[arg(long)]
        array: String,
        /// How far ahead of the fabric's current time the clear starts, ms (the split
        /// time at site 1).
        #[arg(long)]
        in_ms: u64,
    },
    /// Three sites, at site 3: the two generations of difference tables of each volume.
    Differences {
        /// A sync group; default: every group.
        group: Option<String>,
        /// Site 3's array.
        #[arg(long)]
        array: String,
    },
    /// Three sites, at site 3 after a site-1 disaster: choose one table for the whole
    /// group and copy only its blocks to V2 (take V2 over at site 2 first).
    Failover {
        /// The sync group.
        group: String,
        /// Site 3's array.
        #[arg(long)]
        array: String,
        /// One per volume of the group: `NAME=V3LUN=ARRAY:LUN` (V2 at site 2).
        #[arg(long = "pair", required = true)]
        pairs: Vec<String>,
        /// The table rule: safe (the newest table whose base is at or before V2's image
        /// time) or literal (the patent: older if the remote pair was resyncing).
        #[arg(long, default_value = "safe", value_parser = ["safe", "literal"])]
        rule: String,
        /// Site 2's report: its remote pair was resyncing.
        #[arg(long)]
        remote_resync: bool,
        /// Site 2's report: the time of V2's last complete image, ms of fabric time
        /// (`copy status --array` at site 2 shows it as the role's image time).
        #[arg(long)]
        image_time_ms: f64,
        /// The new pairs' mode.
        #[arg(long, default_value = "sync", value_parser = ["sync", "async"])]
        mode: String,
    },
    /// Seed 001: a protected recovery copy of a suspended remote pair (or group)
    /// instead of a plain resync: the remote saves the old data (or holds the new) and
    /// rolls back if the copy does not complete within `--allowed-ms`.
    Recover {
        /// A suspended pair or a consistency group.
        pair: String,
        /// The primary's array.
        #[arg(long)]
        array: String,
        /// T, the most time the remote allows for the whole copy, ms.
        #[arg(long)]
        allowed_ms: f64,
        /// Consistency unit: each pair alone, or the whole group.
        #[arg(long, default_value = "device", value_parser = ["device", "group"])]
        unit: String,
        /// Sessions tried in all after rollbacks (default 3).
        #[arg(long)]
        max_attempts: Option<u32>,
        /// n, pairs recovered at once (default: from the remote's capacities).
        #[arg(long)]
        concurrency: Option<u32>,
        /// Claim 3: send the updates oldest-first from the time-series queue.
        #[arg(long)]
        ordered: bool,
    },
    /// Seed 001: the array's recovery copy, as master (its last session) and as remote.
    Recovery {
        /// The array to ask.
        #[arg(long)]
        array: String,
    },
    /// Change some of a pair's settings; those not given keep their values.
    Options {
        /// A pair.
        pair: String,
        /// The primary's array.
        #[arg(long)]
        array: String,
        #[command(flatten)]
        options: OptionArgs,
    },
    /// Server-free backup: host `--host` sends EXTENDED COPY to the source LU's array,
    /// which copies the blocks to the tape itself (block → stream segments).
    Backup {
        /// The host that sends the command.
        #[arg(long)]
        host: String,
        /// The LU to back up, `ARRAY:LUN` (usually a pair's secondary); it is also the
        /// copy manager the command is sent to.
        #[arg(long)]
        source: String,
        /// The tape drive (`tape1` or `tape1:0`), as the host discovered it.
        #[arg(long)]
        tape: String,
        /// First block to back up.
        #[arg(long, default_value_t = 0)]
        lba: u64,
        /// Blocks to back up; default: from `--lba` to the end of the LU.
        #[arg(long)]
        blocks: Option<u64>,
        /// The EXTENDED COPY list identifier (for `copy results`).
        #[arg(long, default_value_t = 0)]
        list_id: u8,
    },
    /// A relay device's state (seed 002): records held, counters, fenced sources.
    RelayStatus {
        /// The relay node.
        #[arg(long)]
        relay: String,
    },
    /// Ask a relay to forward everything it holds now (the standby's forward request).
    RelayForward {
        /// The relay node.
        #[arg(long)]
        relay: String,
    },
    /// Fence sources at a relay: their later records are refused with RESERVATION
    /// CONFLICT and what the relay holds of them is dropped (the takeover's fence).
    RelayFence {
        /// The relay node.
        #[arg(long)]
        relay: String,
        /// A source to fence (repeat for several).
        #[arg(long = "source", required = true)]
        sources: Vec<u32>,
    },
    /// RECEIVE COPY RESULTS (COPY STATUS) of an EXTENDED COPY list identifier.
    Results {
        /// The host that sent the EXTENDED COPY (list identifiers are per initiator).
        #[arg(long)]
        host: String,
        /// The copy manager the EXTENDED COPY went to, `ARRAY:LUN`.
        #[arg(long)]
        manager: String,
        /// The list identifier.
        #[arg(long)]
        list_id: u8,
    },
}

/// Pair settings, for `create` and `options`.
#[derive(Args)]
pub struct OptionArgs {
    /// Background copy rate, blocks per millisecond (default 1024).
    #[arg(long)]
    copy_rate: Option<u64>,
    /// How a backup of the secondary meets split-time differences: R copies them first,
    /// W waits for them, M merges from the primary, H refuses while split_pending.
    #[arg(long, value_parser = ["R", "W", "M", "H"])]
    strategy: Option<String>,
    /// Strategy R checks the whole backup range before the first tape write, or each
    /// transfer unit.
    #[arg(long, value_parser = ["whole_range", "per_transfer_unit"])]
    granularity: Option<String>,
    /// Range-priority copy for a waiting backup (default on); `--priority false` turns
    /// it off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    priority: Option<bool>,
    /// A backup of the unsplit secondary splits the pair and answers at once.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    backup_implies_split: Option<bool>,
    /// Sync pairs: fail host writes when the secondary cannot be written (instead of
    /// suspending the pair).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    fence: Option<bool>,
}

impl OptionArgs {
    /// Only the settings given on the command line; the array keeps the rest.
    fn to_pb(&self) -> pb::PairOptions {
        pb::PairOptions {
            copy_rate: self.copy_rate,
            strategy: self.strategy.clone(),
            granularity: self.granularity.clone(),
            priority: self.priority,
            backup_implies_split: self.backup_implies_split,
            fence: self.fence,
        }
    }
}

/// Runs `cmd` against the fabric behind `control_addr`, printing to stdout.
pub fn copy(control_addr: &str, cmd: CopyCmd) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut control = ControlClient::new(channel(control_addr).await?);
        let nodes = control
            .list_nodes(pb::ListNodesRequest {})
            .await?
            .into_inner()
            .nodes;
        let now = control
            .status(pb::StatusRequest {})
            .await?
            .into_inner()
            .now_us;
        let mut cmd = cmd;
        // Relays named by node or port are resolved through the fabric's topology.
        if let CopyCmd::Create { relay, .. } = &mut cmd
            && !relay.relays.is_empty()
        {
            let json = control
                .get_topology(pb::GetTopologyRequest {})
                .await?
                .into_inner()
                .json;
            let topo: fcsim_scenarios::Topology = serde_json::from_str(&json)?;
            relay.relays = relay
                .relays
                .iter()
                .map(|r| {
                    fcsim_scenarios::copy::relay_target(&topo, r)
                        .map(|w| format!("{:016x}", w.0.0))
                        .map_err(|e| anyhow!("relays: {e}"))
                })
                .collect::<anyhow::Result<_>>()?;
        }
        run(&nodes, Duration::from_micros(now), cmd).await
    })
}

/// Relay pair settings of `create --mode relay` (seed 002).
#[derive(Args, Default)]
pub struct RelayArgs {
    /// The relays, comma-separated, in selection order: node names (port 0), ports
    /// `NODE/PORT` or target port WWPNs (16 hex digits); none: the records go straight
    /// to the standby.
    #[arg(long, value_delimiter = ',')]
    relays: Vec<String>,
    /// How records are spread over the relays.
    #[arg(long, value_parser = ["round_robin", "least_loaded", "random", "split_by_speed", "duplicate"])]
    selection: Option<String>,
    /// The source (stream) identifier; default derived from the group's name.
    #[arg(long)]
    source: Option<u32>,
    /// How records land on the standby.
    #[arg(long, value_parser = ["immediate", "epochs", "snapshots"])]
    consistency: Option<String>,
    /// The longest a takeover waits for the relays to drain, ms (default 100).
    #[arg(long)]
    drain_timeout_ms: Option<u64>,
    /// Forward error correction on the direct hop (emb 5/6): N data units ...
    #[arg(long)]
    fec_data: Option<u32>,
    /// ... plus M Reed–Solomon parity units; any N restore a record.
    #[arg(long)]
    fec_parity: Option<u32>,
    /// Or replicas: `whole` (the record twice) or `pieces` (each of `--fec-pieces` twice).
    #[arg(long, value_parser = ["whole", "pieces"])]
    fec_replica: Option<String>,
    #[arg(long)]
    fec_pieces: Option<u32>,
    /// With FEC: 1 or 2 networks (with 2 the redundant units take the second).
    #[arg(long)]
    networks: Option<u32>,
}

impl RelayArgs {
    fn is_set(&self) -> bool {
        !self.relays.is_empty()
            || self.selection.is_some()
            || self.source.is_some()
            || self.consistency.is_some()
            || self.drain_timeout_ms.is_some()
            || self.fec().is_some()
            || self.networks.is_some()
    }

    /// The FEC scheme asked for, if any (the array checks the combination).
    fn fec(&self) -> Option<pb::RelayFec> {
        let any = self.fec_data.is_some()
            || self.fec_parity.is_some()
            || self.fec_replica.is_some()
            || self.fec_pieces.is_some();
        any.then(|| pb::RelayFec {
            data: self.fec_data.unwrap_or(0),
            parity: self.fec_parity.unwrap_or(0),
            replica: self.fec_replica.clone().unwrap_or_default(),
            pieces: self.fec_pieces.unwrap_or(0),
        })
    }

    fn to_pb(&self) -> pb::CreatePairRequest {
        pb::CreatePairRequest {
            relays: self.relays.clone(),
            selection: self.selection.clone().unwrap_or_default(),
            source: self.source.unwrap_or(0),
            consistency: self.consistency.clone().unwrap_or_default(),
            drain_timeout_ms: self.drain_timeout_ms.unwrap_or(0),
            fec: self.fec(),
            networks: self.networks.unwrap_or(0),
            ..pb::CreatePairRequest::default()
        }
    }
}

/// Runs `cmd`; `now` is the fabric's time.
async fn run(nodes: &[pb::NodeInfo], now: Duration, cmd: CopyCmd) -> anyhow::Result<ExitCode> {
    // Management commands answer with the pairs' status, shown as one table.
    let (array, r) = match cmd {
        CopyCmd::Create {
            name,
            primary,
            secondary,
            mode,
            group,
            journal_bytes,
            options,
            relay,
        } => {
            let (array, primary_lun) = parse_lu("primary", &primary)?;
            if mode != "relay" && relay.is_set() {
                bail!(
                    "relays, selection, source, consistency, drain-timeout-ms: only with --mode relay"
                );
            }
            let (secondary_lun, secondary_naa) = if mode == "local" {
                let (s_array, lun) = parse_lu("secondary", &secondary)?;
                if s_array != array {
                    bail!(
                        "secondary: a local pair's secondary must be on the primary's array \
                         `{array}`, not `{s_array}`"
                    );
                }
                (lun, String::new())
            } else {
                (0, remote_naa(nodes, &secondary).await?)
            };
            let req = pb::CreatePairRequest {
                name,
                primary_lun,
                mode,
                secondary_lun,
                secondary_naa,
                group: group.unwrap_or_default(),
                options: Some(options.to_pb()),
                journal_bytes: journal_bytes.unwrap_or(0),
                ..relay.to_pb()
            };
            let r = copy_client(nodes, array).await?.create_pair(req).await?;
            (array.to_string(), r.into_inner())
        }
        CopyCmd::Split { pair, array, at_ms } => {
            let req = pb::SplitPairRequest {
                pair,
                at_ns: at_ms.map_or(0, |ms| ms.saturating_mul(1_000_000)),
            };
            let r = copy_client(nodes, &array).await?.split_pair(req).await?;
            (array, r.into_inner())
        }
        CopyCmd::Resync { pair, array } => {
            let r = copy_client(nodes, &array)
                .await?
                .resync_pair(pb::PairRequest { pair })
                .await?;
            (array, r.into_inner())
        }
        CopyCmd::Delete { pair, array } => {
            let r = copy_client(nodes, &array)
                .await?
                .delete_pair(pb::PairRequest { pair: pair.clone() })
                .await?;
            println!("deleted `{pair}` on {array}: its volumes are simplex");
            (array, r.into_inner())
        }
        CopyCmd::Status { pair, array, watch } => {
            let mut client = copy_client(nodes, &array).await?;
            let req = pb::PairRequest {
                pair: pair.unwrap_or_default(),
            };
            let mut r = client.pair_status(req.clone()).await?.into_inner();
            if watch {
                r = watch_copies(&mut client, req, r).await?;
            }
            (array, r)
        }
        CopyCmd::Options {
            pair,
            array,
            options,
        } => {
            let req = pb::SetPairOptionsRequest {
                pair,
                options: Some(options.to_pb()),
            };
            let r = copy_client(nodes, &array)
                .await?
                .set_pair_options(req)
                .await?;
            (array, r.into_inner())
        }
        CopyCmd::Clear {
            group,
            array,
            in_ms,
        } => {
            let at = now + Duration::from_millis(in_ms);
            let r = copy_client(nodes, &array)
                .await?
                .clear_difference(pb::ClearDifferenceRequest {
                    group,
                    at_ns: u64::try_from(at.as_nanos()).unwrap_or(u64::MAX),
                })
                .await?;
            print!("{}", differences_table(&r.into_inner()));
            return Ok(ExitCode::SUCCESS);
        }
        CopyCmd::Recover {
            pair,
            array,
            allowed_ms,
            unit,
            max_attempts,
            concurrency,
            ordered,
        } => {
            let r = copy_client(nodes, &array)
                .await?
                .recover_pair(pb::RecoverPairRequest {
                    pair,
                    allowed_ns: ms_to_ns("allowed-ms", allowed_ms)?,
                    unit,
                    max_attempts: max_attempts.unwrap_or(0),
                    concurrency: concurrency.unwrap_or(0),
                    ordered,
                })
                .await?;
            print!("{}", recovery_table(&r.into_inner()));
            return Ok(ExitCode::SUCCESS);
        }
        CopyCmd::Recovery { array } => {
            let r = copy_client(nodes, &array)
                .await?
                .recovery_status(pb::PairRequest::default())
                .await?;
            print!("{}", recovery_table(&r.into_inner()));
            return Ok(ExitCode::SUCCESS);
        }
        CopyCmd::Differences { group, array } => {
            let r = copy_client(nodes, &array)
                .await?
                .difference_status(pb::PairRequest {
                    pair: group.unwrap_or_default(),
                })
                .await?;
            print!("{}", differences_table(&r.into_inner()));
            return Ok(ExitCode::SUCCESS);
        }
        CopyCmd::Failover {
            group,
            array,
            pairs,
            rule,
            remote_resync,
            image_time_ms,
            mode,
        } => {
            let mut list = Vec::new();
            for p in &pairs {
                list.push(failover_pair(nodes, p).await?);
            }
            let r = copy_client(nodes, &array)
                .await?
                .failover_pairs(pb::FailoverPairsRequest {
                    group,
                    pairs: list,
                    mode,
                    rule,
                    remote_resync,
                    image_time_ns: ms_to_ns("image_time_ms", image_time_ms)?,
                    options: None,
                })
                .await?
                .into_inner();
            for c in &r.copies {
                println!(
                    "{}: LU {} copies {} of {} blocks ({} table, base {})",
                    c.pair,
                    c.v3_lun,
                    c.blocks,
                    c.total_blocks,
                    c.generation,
                    fmt_ns(c.base_ns)
                );
            }
            (array, r.status.unwrap_or_default())
        }
        CopyCmd::RelayTakeover { array, group } => {
            let r = copy_client(nodes, &array)
                .await?
                .relay_takeover(pb::PairRequest {
                    pair: group.clone(),
                })
                .await?
                .into_inner();
            let luns: Vec<String> = r.luns.iter().map(|l| format!("{array}:{l}")).collect();
            println!(
                "relay takeover of `{group}` at {array}: source {} applied up to record {}, {} dropped behind a gap; {} relays fenced",
                r.source, r.applied_seq, r.dropped_records, r.fenced_relays
            );
            match r.resumed_point {
                Some(p) => println!(
                    "resumed from restart point {p} ({} bytes of application state)",
                    r.app_state.len()
                ),
                None => println!("no restart point to resume from"),
            }
            println!("{} now writable simplex", luns.join(", "));
            return Ok(ExitCode::SUCCESS);
        }
        CopyCmd::RestartPoint {
            pair,
            array,
            app_state,
        } => {
            let r = copy_client(nodes, &array)
                .await?
                .restart_point(pb::RestartPointRequest {
                    pair: pair.clone(),
                    app_state: app_state.clone().into_bytes().into(),
                })
                .await?
                .into_inner();
            println!(
                "restart point {} of `{pair}` issued at {array} ({} bytes of state)",
                r.point,
                app_state.len()
            );
            return Ok(ExitCode::SUCCESS);
        }
        CopyCmd::Takeover { pair, array } => {
            let r = copy_client(nodes, &array)
                .await?
                .takeover(pb::PairRequest { pair: pair.clone() })
                .await?
                .into_inner();
            let luns: Vec<String> = r.luns.iter().map(|l| format!("{array}:{l}")).collect();
            match luns.len() {
                0 => println!("takeover of `{pair}` at {array}: no volume changed"),
                n => println!(
                    "takeover of `{pair}` at {array}: {} {} now writable simplex",
                    luns.join(", "),
                    plural(n, "is", "are")
                ),
            }
            return Ok(ExitCode::SUCCESS);
        }
        CopyCmd::Backup {
            host,
            source,
            tape,
            lba,
            blocks,
            list_id,
        } => return backup(nodes, &host, &source, &tape, lba, blocks, list_id).await,
        CopyCmd::Results {
            host,
            manager,
            list_id,
        } => return results(nodes, &host, &manager, list_id).await,
        CopyCmd::RelayStatus { relay } => {
            let r = relay_client(nodes, &relay)
                .await?
                .relay_status(pb::RelayStatusRequest {})
                .await?;
            print!("{}", relay_table(&r.into_inner()));
            return Ok(ExitCode::SUCCESS);
        }
        CopyCmd::RelayForward { relay } => {
            let r = relay_client(nodes, &relay)
                .await?
                .relay_control(pb::RelayControlRequest {
                    op: "forward".into(),
                    sources: Vec::new(),
                })
                .await?;
            println!("{relay}: forwarding everything held");
            print!("{}", relay_table(&r.into_inner()));
            return Ok(ExitCode::SUCCESS);
        }
        CopyCmd::RelayFence { relay, sources } => {
            let r = relay_client(nodes, &relay)
                .await?
                .relay_control(pb::RelayControlRequest {
                    op: "fence".into(),
                    sources,
                })
                .await?;
            print!("{}", relay_table(&r.into_inner()));
            return Ok(ExitCode::SUCCESS);
        }
    };
    print!("{}", status_table(&r, &array, &lu_names(nodes).await));
    Ok(ExitCode::SUCCESS)
}

/// `NAME=V3LUN=ARRAY:LUN` → the API's failover pair (V2's NAA looked up at its array).
async fn failover_pair(nodes: &[pb::NodeInfo], text: &str) -> anyhow::Result<pb::FailoverPair> {
    let bad = || anyhow!("pair: expected `NAME=V3LUN=ARRAY:LUN`, e.g. `f0=0=arr2:0`, got `{text}`");
    let mut parts = text.splitn(3, '=');
    let (Some(name), Some(lun), Some(v2)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if name.is_empty() {
        return Err(bad());
    }
    Ok(pb::FailoverPair {
        name: name.to_string(),
        v3_lun: lun.parse().map_err(|_| bad())?,
        v2_naa: remote_naa(nodes, v2).await?,
    })
}

/// Milliseconds (fractions allowed) as ns; `field` names the argument in errors.
fn ms_to_ns(field: &str, ms: f64) -> anyhow::Result<u64> {
    if !(0.0..=1e12).contains(&ms) {
        bail!("{field}: {ms} is not a time in ms");
    }
    // Checked above: non-negative and far below 2^64 ns.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((ms * 1e6).round() as u64)
}

/// A fabric time in ns as milliseconds.
fn fmt_ns(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

/// The difference tables of site 3: one row per group, one per volume.
pub fn differences_table(r: &pb::DifferenceStatusResponse) -> String {
    let mut s = String::new();
    if r.groups.is_empty() {
        return "(no difference tables: this array holds no sync secondary)\n".into();
    }
    let groups: Vec<Vec<String>> = r
        .groups
        .iter()
        .map(|g| {
            vec![
                g.group.clone(),
                g.pending_clear_ns.map_or("-".into(), fmt_ns),
                g.last_clear_ns.map_or("-".into(), fmt_ns),
            ]
        })
        .collect();
    s.push_str(&table(&["Group", "Clear pending", "Last clear"], &groups));
    s.push('\n');
    let volumes: Vec<Vec<String>> = r
        .volumes
        .iter()
        .map(|v| {
            vec![
                v.lun.to_string(),
                v.group.clone(),
                format!("{} since {}", v.older_blocks, fmt_ns(v.older_base_ns)),
                format!("{} since {}", v.newer_blocks, fmt_ns(v.newer_base_ns)),
                if v.cleared { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    s.push_str(&table(
        &["LU", "Group", "Older table", "Newer table", "Cleared"],
        &volumes,
    ));
    s
}

/// `ARRAY:LUN` → (array, LUN); `field` names the argument in errors.
/// A recovery-copy status: the master's session and the remote side.
pub fn recovery_table(r: &pb::RecoveryStatusResponse) -> String {
    let mut out = String::new();
    match &r.master {
        Some(m) => {
            out.push_str(&format!(
                "master: {} — {}{}, session {} attempt {}, {} rollbacks{}\n",
                m.pairs.join(", "),
                m.phase,
                if m.outcome.is_empty() {
                    String::new()
                } else {
                    format!(" {}", m.outcome)
                },
                m.session,
                m.attempt,
                m.rollbacks,
                if m.cause.is_empty() {
                    String::new()
                } else {
                    format!(" (last: {})", m.cause)
                }
            ));
            out.push_str(&format!(
                "  reached [{}], {} tracks sent ({} left), {} requests resent, n = {}, save capacity {} tracks, started {}{}\n",
                m.reached.join(", "),
                m.tracks_sent,
                m.tracks_left,
                m.resent,
                m.concurrency,
                m.save_capacity_tracks,
                fmt_ns(m.started_ns),
                if m.ended_ns == 0 {
                    String::new()
                } else {
                    format!(", ended {}", fmt_ns(m.ended_ns))
                }
            ));
        }
        None => out.push_str("master: no recovery copy\n"),
    }
    if let Some(x) = &r.remote {
        out.push_str(&format!(
            "remote ({}): {}, saved {} in cache + {} on parity/spare (peak {}), parity rows borrowed {:?}; last: {}{}{}\n",
            x.protection,
            if x.in_progress {
                format!(
                    "session {} in progress, {} writes applied, reached LUNs {:?}",
                    x.session, x.writes_received, x.reached
                )
            } else {
                "idle".to_string()
            },
            x.cache_tracks,
            x.row_tracks,
            x.peak_row_tracks,
            x.parity_rows_borrowed,
            if x.last_outcome.is_empty() { "none" } else { x.last_outcome.as_str() },
            if x.last_cause.is_empty() {
                String::new()
            } else {
                format!(" ({})", x.last_cause)
            },
            if x.rolled_back.is_empty() {
                String::new()
            } else {
                format!(", rolled back LUNs {:?}", x.rolled_back)
            }
        ));
    }
    out
}

fn parse_lu<'a>(field: &str, text: &'a str) -> anyhow::Result<(&'a str, u32)> {
    let bad = || anyhow!("{field}: expected `ARRAY:LUN`, e.g. `arr1:0`, got `{text}`");
    let (array, lun) = text.rsplit_once(':').ok_or_else(bad)?;
    if array.is_empty() {
        return Err(bad());
    }
    Ok((array, lun.parse().map_err(|_| bad())?))
}

/// The address of node `name`, which must be a live node of `kind`.
fn node_of_kind<'a>(nodes: &'a [pb::NodeInfo], name: &str, kind: &str) -> anyhow::Result<&'a str> {
    let n = nodes.iter().find(|n| n.name == name).ok_or_else(|| {
        let known: Vec<pb::NodeInfo> = nodes.iter().filter(|n| n.kind == kind).cloned().collect();
        anyhow!("no {kind} named `{name}` (known: {})", names(&known))
    })?;
    if n.kind != kind {
        bail!("`{name}` is {}, not {}", a(&n.kind), a(kind));
    }
    if !n.alive {
        bail!("{kind} `{name}` is down");
    }
    Ok(&n.address)
}

/// The `Copy` service of relay `node`.
async fn relay_client(nodes: &[pb::NodeInfo], node: &str) -> anyhow::Result<CopyClient<Channel>> {
    Ok(CopyClient::new(
        channel(node_of_kind(nodes, node, "relay")?).await?,
    ))
}

/// A relay's state as a table: one row.
pub fn relay_table(r: &pb::RelayStatusResponse) -> String {
    let fenced = if r.fenced.is_empty() {
        "-".to_string()
    } else {
        r.fenced
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    table(
        &[
            "Relay",
            "Durability",
            "Held",
            "Held bytes",
            "Acked",
            "Forwarded",
            "Busy",
            "Refused",
            "Dropped",
            "Resent",
            "Fenced",
        ],
        &[vec![
            r.relay.clone(),
            r.durability.clone(),
            r.held_records.to_string(),
            r.held_bytes.to_string(),
            r.acked.to_string(),
            r.forwarded.to_string(),
            r.busy.to_string(),
            r.refused.to_string(),
            r.dropped.to_string(),
            r.resent.to_string(),
            fenced,
        ]],
    )
}

/// The `Copy` service of `node`: an array, or an intelligent switch, whose engine node
/// (`NODE.ve`) runs the pairs of its virtual LUs or hands them to an array.
async fn copy_client(nodes: &[pb::NodeInfo], node: &str) -> anyhow::Result<CopyClient<Channel>> {
    let engine = fcsim_scenarios::launch::engine_name(node);
    let addr = match nodes.iter().find(|n| n.name == engine && n.alive) {
        Some(n) => n.address.as_str(),
        None => node_of_kind(nodes, node, "array")?,
    };
    Ok(CopyClient::new(channel(addr).await?))
}

async fn array_lus(nodes: &[pb::NodeInfo], array: &str) -> anyhow::Result<Vec<pb::LuInfo>> {
    let addr = node_of_kind(nodes, array, "array")?;
    let r = ArrayClient::new(channel(addr).await?)
        .list_lus(pb::ListLusRequest {})
        .await?;
    Ok(r.into_inner().lus)
}

/// LU `lun` of `array`, from its `Array/ListLus`.
async fn array_lu(
    nodes: &[pb::NodeInfo],
    field: &str,
    array: &str,
    lun: u32,
) -> anyhow::Result<pb::LuInfo> {
    let lus = array_lus(nodes, array).await?;
    let luns: Vec<String> = lus.iter().map(|l| l.lun.to_string()).collect();
    lus.into_iter().find(|l| l.lun == lun).ok_or_else(|| {
        anyhow!(
            "{field}: {array} has no LU {lun} (LUNs: {})",
            luns.join(", ")
        )
    })
}

/// An NAA as the Copy service takes it: 16 hex digits.
fn naa_digits(naa: Wwn) -> String {
    format!("{:016x}", naa.0)
}

/// A remote secondary: `ARRAY:LUN` resolved through that array's `ListLus`, or an NAA.
async fn remote_naa(nodes: &[pb::NodeInfo], secondary: &str) -> anyhow::Result<String> {
    if let Ok(w) = secondary.parse::<Wwn>() {
        return Ok(naa_digits(w));
    }
    let (array, lun) = parse_lu("secondary", secondary)?;
    let lu = array_lu(nodes, "secondary", array, lun).await?;
    let w: Wwn = lu
        .naa
        .parse()
        .map_err(|_| anyhow!("secondary: {array} reports LU {lun}'s NAA as `{}`", lu.naa))?;
    Ok(naa_digits(w))
}

/// Every array LU's NAA → `ARRAY:LUN`, to show remote secondaries by name. Arrays that
/// do not answer are left out (their LUs show as NAAs).
async fn lu_names(nodes: &[pb::NodeInfo]) -> BTreeMap<Wwn, String> {
    let mut out = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.kind == "array" && n.alive) {
        let Ok(lus) = array_lus(nodes, &n.name).await else {
            continue;
        };
        for l in lus {
            if let Ok(w) = l.naa.parse::<Wwn>() {
                out.insert(w, format!("{}:{}", n.name, l.lun));
            }
        }
    }
    out
}

/// `an array`, `a host`.
fn a(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// The secondary as the engine reports it (`lun 1` or an NAA), named `ARRAY:LUN` when
/// known.
fn secondary_name(primary_array: &str, secondary: &str, names: &BTreeMap<Wwn, String>) -> String {
    if let Some(lun) = secondary.strip_prefix("lun ") {
        return format!("{primary_array}:{lun}");
    }
    match secondary.parse::<Wwn>() {
        Ok(w) => names
            .get(&w)
            .cloned()
            .unwrap_or_else(|| secondary.to_string()),
        Err(_) => secondary.to_string(),
    }
}

/// `[########............] 40%`: `done` of `total`.
fn progress_bar(done: u64, total: u64) -> String {
    let done = done.min(total);
    let (filled, pct) = match total {
        0 => (BAR_WIDTH, 100),
        t => (done * BAR_WIDTH / t, done * 100 / t),
    };
    let filled = usize::try_from(filled).unwrap_or(0);
    let width = usize::try_from(BAR_WIDTH).unwrap_or(0);
    format!(
        "[{}{}] {pct}%",
        "#".repeat(filled),
        ".".repeat(width.saturating_sub(filled))
    )
}

/// `part` as a percentage of `whole`, one decimal.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0.0%".to_string();
    }
    let tenths = u128::from(part) * 1000 / u128::from(whole);
    format!("{}.{}%", tenths / 10, tenths % 10)
}

/// Blocks already on the secondary.
fn copied(p: &pb::PairInfo) -> u64 {
    p.blocks.saturating_sub(p.diff_blocks)
}

/// The status view: one row per pair, a progress line per pair still copying, then
/// the secondary roles `array` holds. `names` maps LU NAAs to `ARRAY:LUN`.
pub fn status_table(
    r: &pb::PairStatusResponse,
    array: &str,
    names: &BTreeMap<Wwn, String>,
) -> String {
    let mut s = String::new();
    let rows: Vec<Vec<String>> = r
        .pairs
        .iter()
        .map(|p| {
            let journal = if p.mode == "async" {
                format!("{} / {} B", p.journal_entries, p.journal_bytes)
            } else {
                "-".to_string()
            };
            let secondary = secondary_name(array, &p.secondary, names);
            vec![
                p.name.clone(),
                p.mode.clone(),
                p.group.clone(),
                format!("{array}:{} → {secondary}", p.primary_lun),
                p.state.clone(),
                p.primary_status.clone(),
                p.secondary_status.clone(),
                format!("{} ({})", p.diff_blocks, percent(p.diff_blocks, p.blocks)),
                journal,
                if p.executor.is_empty() {
                    "-".to_string()
                } else {
                    p.executor.clone()
                },
                if p.suspend_reason.is_empty() {
                    "-".to_string()
                } else {
                    p.suspend_reason.clone()
                },
            ]
        })
        .collect();
    if r.pairs.is_empty() {
        s.push_str("(no pairs)\n");
    } else {
        s.push_str(&table(
            &[
                "Pair",
                "Mode",
                "Group",
                "Primary → Secondary",
                "State",
                "P status",
                "S status",
                "Diff blocks",
                "Journal",
                "Run by",
                "Suspend reason",
            ],
            &rows,
        ));
        for p in r
            .pairs
            .iter()
            .filter(|p| COPYING.contains(&p.state.as_str()))
        {
            let _ = writeln!(
                s,
                "{} {}: {} {}/{} blocks copied",
                p.name,
                p.state,
                progress_bar(copied(p), p.blocks),
                copied(p),
                p.blocks
            );
        }
    }
    if !r.secondaries.is_empty() {
        s.push_str("\nSecondary roles of this array:\n");
        let rows: Vec<Vec<String>> = r
            .secondaries
            .iter()
            .map(|x| {
                vec![
                    x.lun.to_string(),
                    x.pair.clone(),
                    x.group.clone(),
                    if x.state.is_empty() {
                        "released".to_string()
                    } else {
                        x.state.clone()
                    },
                    x.applied_seq.to_string(),
                    x.image_time_ns.map_or("-".into(), fmt_ns),
                ]
            })
            .collect();
        s.push_str(&table(
            &["LUN", "Pair", "Group", "State", "Applied seq", "Image time"],
            &rows,
        ));
    }
    if !r.relay_standbys.is_empty() {
        s.push_str("\nRelay standbys of this array (seed 002):\n");
        let rows: Vec<Vec<String>> = r
            .relay_standbys
            .iter()
            .map(|x| {
                vec![
                    x.group.clone(),
                    x.source.to_string(),
                    x.luns
                        .iter()
                        .map(|l| l.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    x.applied_seq.to_string(),
                    x.held_records.to_string(),
                    x.point.map_or("-".into(), |p| p.to_string()),
                    if x.fenced {
                        "taken over".into()
                    } else if x.draining {
                        "draining".into()
                    } else {
                        "replicating".into()
                    },
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "Group",
                "Source",
                "LUNs",
                "Applied seq",
                "Held",
                "Restart point",
                "State",
            ],
            &rows,
        ));
    }
    s
}

/// Polls until no pair of the answer is copying, showing progress: indicatif bars on a
/// terminal, else a line whenever a pair's state or percentage changes. Returns the
/// last answer.
async fn watch_copies(
    client: &mut CopyClient<Channel>,
    req: pb::PairRequest,
    mut r: pb::PairStatusResponse,
) -> anyhow::Result<pb::PairStatusResponse> {
    let multi = std::io::stdout()
        .is_terminal()
        .then(indicatif::MultiProgress::new);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:12} [{bar:30}] {percent:>3}% {pos}/{len} blocks {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("#>.");
    let mut bars: BTreeMap<String, indicatif::ProgressBar> = BTreeMap::new();
    let mut shown: BTreeMap<String, (String, String)> = BTreeMap::new();
    loop {
        for p in &r.pairs {
            let line = progress_bar(copied(p), p.blocks);
            match &multi {
                Some(m) => {
                    let b = bars.entry(p.name.clone()).or_insert_with(|| {
                        let b = m.add(indicatif::ProgressBar::new(p.blocks));
                        b.set_style(style.clone());
                        b.set_prefix(p.name.clone());
                        b
                    });
                    b.set_length(p.blocks);
                    b.set_position(copied(p));
                    b.set_message(p.state.clone());
                }
                None => {
                    // A line per change while copying, and one when the copy ends.
                    let now = (p.state.clone(), line);
                    let before = shown.insert(p.name.clone(), now.clone());
                    let copying = COPYING.contains(&p.state.as_str());
                    let left = before.as_ref().is_some_and(|(s, _)| *s != p.state);
                    if before.as_ref() != Some(&now) && (copying || left) {
                        println!("{} {}: {}", p.name, p.state, now.1);
                    }
                }
            }
        }
        if !r.pairs.iter().any(|p| COPYING.contains(&p.state.as_str())) {
            break;
        }
        tokio::time::sleep(WATCH_EVERY).await;
        r = client.pair_status(req.clone()).await?.into_inner();
    }
    for b in bars.values() {
        b.finish();
    }
    if !bars.is_empty() {
        // indicatif leaves the cursor at the end of the last bar.
        eprintln!();
    }
    Ok(r)
}

/// The host's device for tape `tape` (`tape1` or `tape1:0`).
fn tape_device<'a>(
    devices: &'a [pb::Device],
    host: &str,
    tape: &str,
) -> anyhow::Result<&'a pb::Device> {
    let want = if tape.contains(':') {
        tape.to_string()
    } else {
        format!("{tape}:0")
    };
    devices
        .iter()
        .find(|d| d.name == want || d.name == tape)
        .ok_or_else(|| {
            let seen: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
            anyhow!(
                "tape: {host} does not see `{tape}` (devices: {})",
                seen.join(", ")
            )
        })
}

async fn host_client(nodes: &[pb::NodeInfo], host: &str) -> anyhow::Result<HostClient<Channel>> {
    let addr = node_of_kind(nodes, host, "host")?;
    Ok(HostClient::new(channel(addr).await?))
}

/// The EXTENDED COPY (LID1) parameter list of a backup: the source LU and the tape as
/// identification descriptors, block → stream segments of at most 65535 blocks.
fn backup_parameter_list(
    list_id: u8,
    source: Wwn,
    block_bytes: u32,
    tape: Wwn,
    lba: u64,
    blocks: u64,
) -> ParameterList {
    let targets = vec![
        TargetDescriptor {
            naa: NaaId::Short(source),
            relative_initiator_port: 0,
            params: DeviceParams::Block {
                pad: false,
                block_bytes,
            },
        },
        TargetDescriptor {
            naa: NaaId::Short(tape),
            relative_initiator_port: 0,
            params: DeviceParams::Stream {
                pad: false,
                fixed: false,
                block_bytes: 0,
            },
        },
    ];
    let mut segments = Vec::new();
    let mut done = 0u64;
    while done < blocks {
        let n = (blocks - done).min(u64::from(u16::MAX));
        segments.push(Segment::BlockToStream {
            cat: false,
            src: 0,
            dst: 1,
            stream_transfer_length: 0,
            blocks: u16::try_from(n).unwrap_or(u16::MAX),
            lba: lba + done,
        });
        done += n;
    }
    ParameterList {
        list_id,
        str_bit: false,
        list_id_usage: 0,
        priority: 0,
        targets,
        segments,
        inline_data: Default::default(),
    }
}

/// A SCSI result for people: GOOD with latency, a status and its sense, or a
/// transport error.
fn scsi_line(r: &pb::ScsiResult) -> String {
    if !r.transport_error.is_empty() {
        return format!("transport error: {} (port {})", r.transport_error, r.port);
    }
    match r.status {
        0 => format!("GOOD, {} µs via port {}", r.latency_us, r.port),
        s => format!(
            "status {s:#04x} {}, {} µs via port {}",
            r.sense_text, r.latency_us, r.port
        ),
    }
}

async fn backup(
    nodes: &[pb::NodeInfo],
    host: &str,
    source: &str,
    tape: &str,
    lba: u64,
    blocks: Option<u64>,
    list_id: u8,
) -> anyhow::Result<ExitCode> {
    let (array, lun) = parse_lu("source", source)?;
    let lu = array_lu(nodes, "source", array, lun).await?;
    let source_naa: Wwn = lu
        .naa
        .parse()
        .map_err(|_| anyhow!("source: {array} reports LU {lun}'s NAA as `{}`", lu.naa))?;
    if lba >= lu.blocks {
        bail!(
            "lba: {lba} is past the end of {source} ({} blocks)",
            lu.blocks
        );
    }
    let blocks = blocks.unwrap_or(lu.blocks - lba);
    if blocks == 0 || lba.saturating_add(blocks) > lu.blocks {
        bail!(
            "blocks: {blocks} blocks from {lba} do not fit {source} ({} blocks)",
            lu.blocks
        );
    }
    let mut h = host_client(nodes, host).await?;
    let devices = h
        .list_devices(pb::ListDevicesRequest {})
        .await?
        .into_inner()
        .devices;
    let t = tape_device(&devices, host, tape)?;
    let tape_naa: Wwn = t
        .naa
        .parse()
        .map_err(|_| anyhow!("tape: {host} reports {}'s NAA as `{}`", t.name, t.naa))?;
    let list = backup_parameter_list(list_id, source_naa, lu.block_bytes, tape_naa, lba, blocks);
    let segments = list.segments.len();
    let r = h
        .extended_copy(pb::ExtendedCopyRequest {
            device: source.to_string(),
            parameter_list: list.encode(),
        })
        .await?
        .into_inner();
    println!(
        "EXTENDED COPY list {list_id}: {source}@{lba}+{blocks} → {} ({segments} {}) by {host}: {}",
        t.name,
        plural(segments, "segment", "segments"),
        scsi_line(&r)
    );
    Ok(if r.status == 0 && r.transport_error.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn results(
    nodes: &[pb::NodeInfo],
    host: &str,
    manager: &str,
    list_id: u8,
) -> anyhow::Result<ExitCode> {
    parse_lu("manager", manager)?;
    let mut h = host_client(nodes, host).await?;
    let cdb = ReceiveCopyResults {
        service_action: RcrServiceAction::CopyStatus,
        list_id,
        allocation_length: 12,
    };
    let r = h
        .scsi_passthrough(pb::PassthroughRequest {
            device: manager.to_string(),
            cdb: cdb.encode(),
            data_out: Default::default(),
            data_in_len: 12,
        })
        .await?
        .into_inner();
    if r.status != 0 || !r.transport_error.is_empty() {
        println!(
            "RECEIVE COPY RESULTS list {list_id} at {manager}: {}",
            scsi_line(&r)
        );
        return Ok(ExitCode::FAILURE);
    }
    let s = CopyStatus::decode(&r.data)
        .map_err(|e| anyhow!("{manager} answered COPY STATUS that does not decode: {e:?}"))?;
    let status = match s.status {
        CopyManagerStatus::InProgress => "in progress".to_string(),
        CopyManagerStatus::CompletedGood => "completed good".to_string(),
        CopyManagerStatus::CompletedWithError => "completed with error".to_string(),
        CopyManagerStatus::Unsupported(c) => format!("status {c:#04x}"),
    };
    println!(
        "list {list_id} at {manager}: {status}, {} {} processed, {} bytes{}",
        s.segments_processed,
        plural(usize::from(s.segments_processed), "segment", "segments"),
        s.transfer_bytes(),
        if s.held_data_discarded {
            " (held data discarded)"
        } else {
            ""
        }
    );
    Ok(
        if matches!(s.status, CopyManagerStatus::CompletedWithError) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_view_is_one_row_with_the_fence() {
        let r = pb::RelayStatusResponse {
            relay: "r1".into(),
            held_records: 2,
            held_bytes: 8192,
            acked: 5,
            forwarded: 3,
            busy: 1,
            fenced: vec![1, 4],
            durability: "non_volatile".into(),
            refused: 2,
            dropped: 0,
            resent: 7,
        };
        let t = relay_table(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("Relay") && lines[0].contains("Fenced"),
            "{t}"
        );
        let row = lines.iter().find(|l| l.starts_with("r1")).expect("row");
        for cell in ["non_volatile", "8192", "1,4"] {
            assert!(row.contains(cell), "{row}");
        }
        assert!(relay_table(&pb::RelayStatusResponse::default()).contains(" -"));
    }

    #[test]
    fn relay_fec_arguments_reach_the_request() {
        let a = RelayArgs {
            fec_data: Some(4),
            fec_parity: Some(2),
            networks: Some(2),
            ..RelayArgs::default()
        };
        assert!(a.is_set());
        let r = a.to_pb();
        assert_eq!(
            (r.fec.map(|f| (f.data, f.parity)), r.networks),
            (Some((4, 2)), 2)
        );
        assert!(RelayArgs::default().to_pb().fec.is_none());
    }

    #[test]
    fn recovery_view_shows_both_sides() {
        let r = pb::RecoveryStatusResponse {
            master: Some(pb::RecoveryMaster {
                pairs: vec!["ps".into()],
                phase: "ended".into(),
                outcome: "rolled_back".into(),
                cause: "save_area_exhausted".into(),
                attempt: 1,
                session: 7,
                reached: vec![],
                rollbacks: 1,
                concurrency: 1,
                save_capacity_tracks: 64,
                started_ns: 320_000_000,
                ended_ns: 340_000_000,
                tracks_sent: 65,
                tracks_left: 0,
                resent: 2,
            }),
            remote: Some(pb::RecoveryRemote {
                protection: "save_old".into(),
                last_outcome: "rolled_back".into(),
                last_cause: "timeout".into(),
                rolled_back: vec![0],
                ..Default::default()
            }),
        };
        let t = recovery_table(&r);
        assert!(t.contains("master: ps — ended rolled_back"), "{t}");
        assert!(t.contains("(last: save_area_exhausted)"), "{t}");
        assert!(
            t.contains("65 tracks sent (0 left), 2 requests resent"),
            "{t}"
        );
        assert!(t.contains("remote (save_old): idle"), "{t}");
        assert!(t.contains("rolled back LUNs [0]"), "{t}");
        let none = recovery_table(&pb::RecoveryStatusResponse::default());
        assert_eq!(none, "master: no recovery copy\n");
    }

    #[test]
    fn bars_and_percentages() {
        assert_eq!(progress_bar(0, 100), "[....................] 0%");
        assert_eq!(progress_bar(52, 100), "[##########..........] 52%");
        assert_eq!(progress_bar(2048, 2048), "[####################] 100%");
        assert_eq!(progress_bar(0, 0), "[####################] 100%");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(0, 0), "0.0%");
    }

    #[test]
    fn lus_parse() {
        assert_eq!(parse_lu("primary", "arr1:0").unwrap(), ("arr1", 0));
        for bad in ["arr1", ":0", "arr1:x", "arr1:"] {
            let e = parse_lu("primary", bad).unwrap_err().to_string();
            assert!(e.starts_with("primary:"), "{e}");
        }
    }

    #[test]
    fn backup_list_round_trips() {
        use fcsim_devices::scsi::xcopy::OperatingParameters;
        let src = Wwn(0x5000_60e8_0180_0001);
        let tape = Wwn(0x5000_5076_0140_0000);
        let list = backup_parameter_list(7, src, 512, tape, 10, 70_000);
        assert_eq!(list.segments.len(), 2);
        let parsed = ParameterList::parse(&list.encode(), &OperatingParameters::default());
        assert_eq!(parsed.as_ref(), Ok(&list));
    }

    #[test]
    fn status_view_names_columns_and_shows_progress() {
        let r = pb::PairStatusResponse {
            pairs: vec![pb::PairInfo {
                name: "p1".into(),
                group: "p1".into(),
                mode: "local".into(),
                primary_lun: 0,
                secondary: "lun 1".into(),
                state: "copy".into(),
                primary_status: "copy".into(),
                secondary_status: "copy".into(),
                diff_blocks: 1024,
                blocks: 2048,
                ..Default::default()
            }],
            secondaries: vec![],
            relay_standbys: vec![],
        };
        let out = status_table(&r, "arr1", &BTreeMap::new());
        assert!(
            out.starts_with("Pair  Mode   Group  Primary → Secondary"),
            "{out}"
        );
        assert!(out.contains("1024 (50.0%)"), "{out}");
        assert!(
            out.contains("p1 copy: [##########..........] 50% 1024/2048 blocks copied"),
            "{out}"
        );
    }
}
