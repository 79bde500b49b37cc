//! The relay node (seed 002, DESIGN.md §5 "Relay"): N_Ports that are FCP targets *and*
//! initiators, one logical unit (LUN 0, peripheral type 03h "processor"), and the
//! sans-IO [`Relay`] core wired to exchanges.
//!
//! **Start here:** `RelayLayer::record` (a RELAY RECORD from the primary) and
//! `RelayLayer::pump` (the core's actions become SCSI status upstream and RELAY
//! RECORD commands downstream).
//!
//! Upstream, a RELAY RECORD (`relay::wire`) arrives whole (FCP first burst: the data
//! follows the command without FCP_XFER_RDY): [`Relay::handle_command`] then
//! [`Relay::handle_data`]; GOOD once the whole record is held (the core's
//! `AckUpstream`), BUSY when the buffer is full, RESERVATION CONFLICT for a fenced
//! source. Downstream, every `OpenDownstream` becomes a RELAY RECORD to the record's
//! DESTINATION WWPN (PLOGI/PRLI through the node's N_Port on first use; a login the
//! destination made to the relay serves too, and a name-server change retries a failed
//! login at once), its data sent as first burst once the core releases it; GOOD frees
//! the record, RESERVATION CONFLICT (the standby fenced the source) drops it, anything
//! else (BUSY, CHECK CONDITION, no answer) waits for the core's resend timer. An
//! exchange lives several resend intervals, so a standby whose answer takes longer than
//! one (a long cable, a queue of records after a restart) is still heard.
//!
//! RELAY CONTROL (`forward`, `fence`) and RECEIVE RELAY STATUS are answered at LU 0; a
//! `forward` completes with GOOD once the relay holds nothing (the core's `Drained`),
//! so the standby's takeover knows the drain finished (its own exchange timeout bounds
//! the wait). The node's `fcsim.v1.Copy` service answers `RelayStatus` and
//! `RelayControl` and UNIMPLEMENTED for the pair RPCs.
//!
//! Durability: a volatile relay loses every held record with its node (crash, SIGKILL).
//! A non-volatile relay keeps every acknowledged record in its log before the GOOD
//! status: a file `<data_dir>/<relay>.relaylog` when the node has a data directory
//! ([`RelayNodeConfig::log_path`]), else an in-process NVRAM image keyed by
//! [`RelayNodeConfig::nvram_key`] that survives the node's task (simulation and
//! embedded live mode; a SIGKILLed process without a data directory loses it). At
//! start the log is replayed into a fresh core and [`Relay::crash`] restarts the
//! forwarding of every record.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fcsim_fabric::endnode::{EndNodeConfig, EndNodeError, Fc4Ctx, Fc4Layer, run_end_node_with};
use fcsim_fabric::frame::Frame;
use fcsim_fabric::nport::{LoginOutcome, LoginTarget, LoginTicket, NPortEvent, NPortState};
use fcsim_fabric::runtime::actor;
use fcsim_fabric::runtime::{FabricClock, Net};
use fcsim_fabric::{FcId, Wwn, Wwpn};
use fcsim_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};
use tracing::{debug, debug_span, info, warn};

use crate::fcp::{FcpInitiator, FcpTarget, IoRequest, Tag, TargetCommand};
use crate::relay::wire::{self, RelayControl, RelayState};
use crate::relay::{
    Admit, ClockTime, Durability, Forwarding, Header, RecordId, Relay, RelayAction, RelayConfig,
    Schedule, SourceId, Triggers,
};
use crate::scsi::cdb::Command;
use crate::scsi::inquiry::{self, DeviceIdentification, DeviceType, NaaId, StandardInquiry, page};
use crate::scsi::sense::{Sense, SenseKey, Status as ScsiStatus, asc};
use crate::scsi::target::encode_lun;

/// Downstream traffic is measured over windows this long (deferred and hybrid
/// schedules).
const TRAFFIC_WINDOW: Duration = Duration::from_millis(10);

/// A downstream exchange is given this many resend intervals to be answered (the core
/// opens it again after one).
const EXCHANGE_LIFETIME_RESENDS: u32 = 8;

/// The relay LU's peripheral device type: processor (SPC-5 table 150, 03h); hosts'
/// discovery skips it, as it is no block or stream device.
const DEVICE_TYPE: DeviceType = DeviceType::Unsupported(0x03);

/// `durability` of a relay's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilitySetting {
    #[default]
    Volatile,
    NonVolatile,
}

/// `forwarding` of a relay's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardingSetting {
    #[default]
    StoreAndForward,
    CutThrough,
}

/// `schedule` of a relay's settings (times in µs of fabric time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSetting {
    #[default]
    Immediate,
    Deferred {
        /// Forward while downstream traffic is at or below this many bytes/s.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traffic_at_most: Option<u64>,
        /// Forward a record held this long.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_age_us: Option<u64>,
        /// Forward everything at this fabric time …
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock_first_us: Option<u64>,
        /// … and again every period (non-zero).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock_period_us: Option<u64>,
    },
    Hybrid {
        /// Log instead of forwarding while downstream traffic is at or above this.
        log_at_traffic: u64,
    },
}

/// A relay device's settings: the serializable form of [`RelayConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    #[serde(default)]
    pub durability: DurabilitySetting,
    #[serde(default)]
    pub forwarding: ForwardingSetting,
    #[serde(default)]
    pub schedule: ScheduleSetting,
    /// Buffer (or log) size; a record that does not fit is answered BUSY.
    pub capacity_bytes: u64,
    /// A downstream exchange unanswered this long is sent again, µs.
    pub resend_after_us: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        let c = RelayConfig::default();
        RelaySettings {
            durability: DurabilitySetting::default(),
            forwarding: ForwardingSetting::default(),
            schedule: ScheduleSetting::default(),
            capacity_bytes: c.capacity_bytes,
            resend_after_us: u64::try_from(c.resend_after.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

impl RelaySettings {
    /// The core's configuration (not yet validated: see [`RelayConfig::validate`]).
    pub fn config(&self) -> RelayConfig {
        let us = Duration::from_micros;
        RelayConfig {
            forwarding: match self.forwarding {
                ForwardingSetting::StoreAndForward => Forwarding::StoreAndForward,
                ForwardingSetting::CutThrough => Forwarding::CutThrough,
            },
            durability: match self.durability {
                DurabilitySetting::Volatile => Durability::Volatile,
                DurabilitySetting::NonVolatile => Durability::NonVolatile,
            },
            schedule: match self.schedule {
                ScheduleSetting::Immediate => Schedule::Immediate,
                ScheduleSetting::Deferred {
                    traffic_at_most,
                    max_age_us,
                    clock_first_us,
                    clock_period_us,
                } => Schedule::Deferred(Triggers {
                    traffic_at_most,
                    max_age: max_age_us.map(us),
                    clock: clock_first_us.map(|f| ClockTime {
                        first: us(f),
                        period: clock_period_us.map(us),
                    }),
                }),
                ScheduleSetting::Hybrid { log_at_traffic } => Schedule::Hybrid { log_at_traffic },
            },
            capacity_bytes: self.capacity_bytes,
            resend_after: us(self.resend_after_us),
        }
    }
}

/// A relay node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayNodeConfig {
    /// Ports, names and cables (`kind` "relay", role both).
    pub node: EndNodeConfig,
    pub relay: RelaySettings,
    /// The non-volatile log's file (with a data directory); `None`: the NVRAM image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_path: Option<PathBuf>,
    /// Names this relay's NVRAM image in the process (unique per run and relay).
    #[serde(default)]
    pub nvram_key: String,
}

// ---- the non-volatile log ------------------------------------------------------------

/// One logged record: its header, where it goes, its data.
#[derive(Debug, Clone)]
struct Logged {
    header: Header,
    destination: u64,
    data: Bytes,
}

/// What a non-volatile relay's log holds: the acknowledged records in log order and
/// the fenced sources.
#[derive(Debug, Clone, Default)]
struct NvImage {
    records: BTreeMap<u64, Logged>,
    index: BTreeMap<RecordId, u64>,
    next: u64,
    fenced: BTreeSet<u32>,
    /// Data bytes of the records.
    bytes: u64,
}

impl NvImage {
    fn put(&mut self, l: Logged) {
        if self.index.contains_key(&l.header.id) {
            return;
        }
        self.bytes += l.data.len() as u64;
        self.index.insert(l.header.id, self.next);
        self.records.insert(self.next, l);
        self.next += 1;
    }
    fn remove(&mut self, id: RecordId) {
        if let Some(l) = self.index.remove(&id).and_then(|k| self.records.remove(&k)) {
            self.bytes -= l.data.len() as u64;
        }
    }
}

/// The NVRAM of the relays of this process, by [`RelayNodeConfig::nvram_key`]: it
/// outlives a relay node's task as battery-backed memory outlives a power cut. Each
/// relay touches only its own image.
static NVRAM: LazyLock<Mutex<BTreeMap<String, NvImage>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

fn nvram() -> std::sync::MutexGuard<'static, BTreeMap<String, NvImage>> {
    NVRAM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const LOG_PUT: u8 = 1;
const LOG_DEL: u8 = 2;
const LOG_FENCE: u8 = 3;

/// Decodes a log file; a torn last entry (power lost mid-append) ends it.
fn decode_log(mut b: &[u8]) -> NvImage {
    let mut img = NvImage::default();
    let take = |b: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h.to_vec())
    };
    while let Some(tag) = take(&mut b, 1) {
        match tag[0] {
            LOG_PUT => {
                let Some(cdb) = take(&mut b, wire::RECORD_CDB_LEN) else {
                    break;
                };
                let Ok(wire::Command::Record {
                    header,
                    destination,
                }) = wire::parse(&cdb)
                else {
                    break;
                };
                let Some(data) = usize::try_from(header.len)
                    .ok()
                    .and_then(|n| take(&mut b, n))
                else {
                    break;
                };
                img.put(Logged {
                    header,
                    destination,
                    data: Bytes::from(data),
                });
            }
            LOG_DEL => {
                let Some(x) = take(&mut b, 12) else { break };
                img.remove(RecordId {
                    source: SourceId(u32::from_be_bytes([x[0], x[1], x[2], x[3]])),
                    seq: u64::from_be_bytes(x[4..12].try_into().unwrap_or_default()),
                });
            }
            LOG_FENCE => {
                let Some(x) = take(&mut b, 4) else { break };
                img.fenced
                    .insert(u32::from_be_bytes([x[0], x[1], x[2], x[3]]));
            }
            _ => break,
        }
    }
    img
}

fn encode_put(l: &Logged) -> BytesMut {
    let mut b = BytesMut::with_capacity(1 + wire::RECORD_CDB_LEN + l.data.len());
    b.extend_from_slice(&[LOG_PUT]);
    b.extend_from_slice(&wire::relay_record(&l.header, l.destination));
    b.extend_from_slice(&l.data);
    b
}

fn encode_del(id: RecordId) -> Vec<u8> {
    let mut b = vec![LOG_DEL];
    b.extend_from_slice(&id.source.0.to_be_bytes());
    b.extend_from_slice(&id.seq.to_be_bytes());
    b
}

/// Where a non-volatile relay keeps its log.
enum NvLog {
    /// A volatile relay: nothing is kept.
    None,
    /// The process NVRAM image under this key.
    Memory(String),
    /// An append-only file, synced before each acknowledgement, with its live content
    /// (sharing the records' bytes) for compaction.
    File {
        path: PathBuf,
        file: File,
        img: NvImage,
        /// The file's length.
        len: u64,
    },
}

/// A file log is rewritten with its live content once it is this long and more than
/// twice that content.
const COMPACT_AT: u64 = 1 << 20;

/// Writes `img` as a fresh log at `path` (through a temporary file and a rename) and
/// opens it for appending; returns it and its length.
fn rewrite(path: &std::path::Path, img: &NvImage) -> std::io::Result<(File, u64)> {
    let mut fresh = Vec::new();
    for l in img.records.values() {
        fresh.extend_from_slice(&encode_put(l));
    }
    for s in &img.fenced {
        fresh.push(LOG_FENCE);
        fresh.extend_from_slice(&s.to_be_bytes());
    }
    let tmp = path.with_extension("relaylog.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&fresh)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    Ok((file, fresh.len() as u64))
}

impl NvLog {
    /// Opens the log and returns what it held.
    fn open(cfg: &RelayNodeConfig) -> (NvLog, NvImage) {
        if cfg.relay.durability == DurabilitySetting::Volatile {
            if !cfg.nvram_key.is_empty() {
                nvram().remove(&cfg.nvram_key);
            }
            return (NvLog::None, NvImage::default());
        }
        if let Some(path) = &cfg.log_path {
            let mut old = Vec::new();
            if let Ok(mut f) = File::open(path)
                && let Err(e) = f.read_to_end(&mut old)
            {
                warn!(path = %path.display(), "relay log unreadable: {e}");
            }
            let img = decode_log(&old);
            // Compact: the live records and the fence, then append from there.
            return match rewrite(path, &img) {
                Ok((file, len)) => (
                    NvLog::File {
                        path: path.clone(),
                        file,
                        img: img.clone(),
                        len,
                    },
                    img,
                ),
                Err(e) => {
                    warn!(path = %path.display(), "relay log cannot be written, using NVRAM: {e}");
                    (NvLog::Memory(cfg.nvram_key.clone()), img)
                }
            };
        }
        let img = nvram().get(&cfg.nvram_key).cloned().unwrap_or_default();
        (NvLog::Memory(cfg.nvram_key.clone()), img)
    }

    /// Appends `b` to a file log (synced), then compacts it if it grew too long.
    fn append(&mut self, b: &[u8]) {
        let NvLog::File {
            path,
            file,
            img,
            len,
        } = self
        else {
            return;
        };
        if let Err(e) = file.write_all(b).and_then(|()| file.sync_data()) {
            warn!(path = %path.display(), "relay log write failed: {e}");
        }
        *len += b.len() as u64;
        let live = img.bytes + (img.records.len() * (1 + wire::RECORD_CDB_LEN)) as u64;
        if *len >= COMPACT_AT && *len > 2 * live {
            match rewrite(path, img) {
                Ok((f, n)) => {
                    debug!(path = %path.display(), from = *len, to = n, "relay log compacted");
                    *file = f;
                    *len = n;
                }
                Err(e) => warn!(path = %path.display(), "relay log compaction failed: {e}"),
            }
        }
    }

    fn put(&mut self, l: Logged) {
        match self {
            NvLog::None => {}
            NvLog::Memory(k) => nvram().entry(k.clone()).or_default().put(l),
            NvLog::File { img, .. } => {
                let b = encode_put(&l);
                img.put(l);
                self.append(&b);
            }
        }
    }

    fn remove(&mut self, id: RecordId) {
        match self {
            NvLog::None => {}
            NvLog::Memory(k) => {
                if let Some(img) = nvram().get_mut(k) {
                    img.remove(id);
                }
            }
            NvLog::File { img, .. } => {
                img.remove(id);
                self.append(&encode_del(id));
            }
        }
    }

    fn fence(&mut self, sources: &[u32]) {
        match self {
            NvLog::None => {}
            NvLog::Memory(k) => nvram().entry(k.clone()).or_default().fenced.extend(sources),
            NvLog::File { img, .. } => {
                img.fenced.extend(sources);
                let mut b = Vec::new();
                for s in sources {
                    b.push(LOG_FENCE);
                    b.extend_from_slice(&s.to_be_bytes());
                }
                self.append(&b);
            }
        }
    }
}

// ---- the FC-4 layer ------------------------------------------------------------------

/// Counters since the node started.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    acked: u64,
    forwarded: u64,
    busy: u64,
    refused: u64,
    dropped: u64,
    resent: u64,
}

/// A record the relay holds: where it goes and its bytes (kept for the log).
#[derive(Debug, Clone)]
struct Held {
    destination: Wwpn,
    header: Header,
}

/// A downstream exchange being assembled or in flight.
#[derive(Debug, Clone)]
struct Down {
    /// Opening number of this record (a reopened exchange gets the next).
    generation: u64,
    header: Header,
    destination: Wwpn,
    /// Bytes released so far, in order.
    parts: Vec<Bytes>,
    released: u64,
    /// The FCP exchange, once submitted.
    tag: Option<Tag>,
}

/// A destination port's login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    /// PLOGI/PRLI under way on this local port.
    Pending {
        port: u32,
        ticket: LoginTicket,
    },
    Done {
        port: u32,
        fc_id: FcId,
    },
}

/// The relay node's FC-4 layer.
pub struct RelayLayer {
    name: String,
    /// The LU's NAA (the node's WWNN).
    naa: Wwn,
    /// The node's own port names: no record may be bound for one of them.
    own: Vec<Wwpn>,
    settings: RelaySettings,
    relay: Relay,
    log: NvLog,
    fcp: FcpTarget,
    init: FcpInitiator,
    /// Upstream RELAY RECORD commands waiting for the core's acknowledgement.
    upstream: BTreeMap<RecordId, (TargetCommand, Option<Bytes>)>,
    /// Every record the core holds (or is receiving): its destination.
    held: BTreeMap<RecordId, Held>,
    down: BTreeMap<RecordId, Down>,
    /// Submitted downstream exchanges: tag → (record, generation, the login used).
    tags: BTreeMap<Tag, (RecordId, u64, Login)>,
    logins: BTreeMap<Wwpn, Login>,
    /// RELAY CONTROL `forward` commands answered at the next `Drained`.
    drains: Vec<TargetCommand>,
    next_generation: u64,
    counters: Counters,
    /// The traffic window: its start and the ports' bytes out then.
    window: (Duration, u64),
}

impl RelayLayer {
    /// A relay layer recovered from its log (empty for a volatile relay).
    fn new(cfg: &RelayNodeConfig, now: Duration) -> Result<RelayLayer, crate::relay::RelayError> {
        let mut relay = Relay::new(cfg.relay.config())?;
        let (log, img) = NvLog::open(cfg);
        let mut held = BTreeMap::new();
        for l in img.records.values() {
            if relay.handle_command(l.header, now) == Admit::Ready {
                relay.handle_data_bytes(l.header.id, 0, l.data.clone(), now);
                held.insert(
                    l.header.id,
                    Held {
                        destination: Wwpn(Wwn(l.destination)),
                        header: l.header,
                    },
                );
            }
        }
        relay.fence(img.fenced.iter().map(|s| SourceId(*s)), now);
        // The restart: the log's records are forwarded again.
        relay.crash(now);
        if !img.records.is_empty() {
            info!(
                records = relay.held_records(),
                bytes = relay.held_bytes(),
                "relay log recovered"
            );
        }
        Ok(RelayLayer {
            name: cfg.node.name.clone(),
            naa: cfg.node.wwnn.0,
            own: cfg.node.port_wwpns.clone(),
            settings: cfg.relay,
            relay,
            log,
            fcp: FcpTarget::new(),
            init: FcpInitiator::new(),
            upstream: BTreeMap::new(),
            held,
            down: BTreeMap::new(),
            tags: BTreeMap::new(),
            logins: BTreeMap::new(),
            drains: Vec::new(),
            next_generation: 0,
            counters: Counters::default(),
            window: (now, 0),
        })
    }

    /// Whether the schedule looks at downstream traffic.
    fn traffic_sensitive(&self) -> bool {
        match self.settings.schedule {
            ScheduleSetting::Deferred {
                traffic_at_most, ..
            } => traffic_at_most.is_some(),
            ScheduleSetting::Hybrid { .. } => true,
            ScheduleSetting::Immediate => false,
        }
    }

    /// Downstream traffic: the bytes the node's ports sent per second over the last
    /// window, handed to the core when a window ends (the relay's egress stands for
    /// the load on its downstream path).
    fn measure(&mut self, ctx: &mut Fc4Ctx<'_>) {
        let (start, base) = self.window;
        if !self.traffic_sensitive() || ctx.now < start + TRAFFIC_WINDOW {
            return;
        }
        let out: u64 = ctx
            .hub
            .snapshot()
            .iter()
            .map(|p| p.counters.bytes_out)
            .sum();
        let ns = (ctx.now - start).as_nanos().max(1);
        let rate = u128::from(out.saturating_sub(base)) * 1_000_000_000 / ns;
        self.window = (ctx.now, out);
        self.relay
            .observe_traffic(u64::try_from(rate).unwrap_or(u64::MAX), ctx.now);
    }

    /// What RECEIVE RELAY STATUS and `RelayStatus` report.
    pub fn state(&self) -> RelayState {
        RelayState {
            held_records: self.relay.held_records(),
            held_bytes: self.relay.held_bytes(),
            acked: self.counters.acked,
            forwarded: self.counters.forwarded,
            busy: self.counters.busy,
            fenced: self.relay.fenced().map(|s| s.0).collect(),
            durability: match self.settings.durability {
                DurabilitySetting::Volatile => "volatile",
                DurabilitySetting::NonVolatile => "non_volatile",
            }
            .to_string(),
            refused: self.counters.refused,
            dropped: self.counters.dropped,
            resent: self.counters.resent,
        }
    }

    fn status_response(&self) -> pb::RelayStatusResponse {
        let s = self.state();
        pb::RelayStatusResponse {
            relay: self.name.clone(),
            held_records: s.held_records,
            held_bytes: s.held_bytes,
            acked: s.acked,
            forwarded: s.forwarded,
            busy: s.busy,
            fenced: s.fenced,
            durability: s.durability,
            refused: s.refused,
            dropped: s.dropped,
            resent: s.resent,
        }
    }

    fn answer(&mut self, cmd: &TargetCommand, r: Result<Bytes, Sense>) {
        match r {
            Ok(data) => self
                .fcp
                .complete(cmd, ScsiStatus::GOOD.0, Bytes::new(), data),
            Err(s) => {
                self.fcp
                    .complete(cmd, ScsiStatus::CHECK_CONDITION.0, s.encode(), Bytes::new())
            }
        }
    }

    /// One command from an initiator logged in with us.
    fn execute(&mut self, ctx: &mut Fc4Ctx<'_>, cmd: TargetCommand) {
        let fc_id = ctx
            .ports
            .get(&cmd.port)
            .and_then(|np| np.fc_id())
            .map_or_else(|| "-".to_string(), |f| f.to_string());
        let _span = debug_span!(
            "scsi",
            port = cmd.port,
            fc_id = %fc_id,
            initiator = %cmd.initiator,
            ox_id = cmd.ox_id(),
            op = cmd.cdb.first().copied().unwrap_or_default()
        )
        .entered();
        let op = cmd.cdb.first().copied();
        // REPORT LUNS is answered for any LUN (SPC-5 §6.33).
        if op == Some(0xA0) {
            let r = self.report_luns(&cmd.cdb);
            return self.answer(&cmd, r);
        }
        if cmd.lun != Some(0) {
            if op == Some(0x12) {
                // INQUIRY at a LUN with no LU: qualifier 3 (SPC-5 §6.7.2).
                let alloc = cmd
                    .cdb
                    .get(3..5)
                    .map_or(36, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                let d = StandardInquiry::no_lu().encode();
                let n = alloc.min(d.len());
                return self.answer(&cmd, Ok(d.slice(..n)));
            }
            return self.answer(&cmd, Err(Sense::lu_not_supported()));
        }
        if op == Some(wire::OPCODE) {
            return match wire::parse(&cmd.cdb) {
                Ok(wire::Command::Record {
                    header,
                    destination,
                }) => self.record(ctx, cmd, header, destination),
                // FEC units are for the direct hop to the standby (emb 5/6): a relay
                // does not restore groups (KIND).
                Ok(wire::Command::Unit { .. }) => {
                    self.answer(&cmd, Err(Sense::invalid_field_in_cdb(2, None)))
                }
                Ok(wire::Command::Control { len }) => self.control(ctx, cmd, len),
                Ok(wire::Command::ReceiveStatus { allocation }) => {
                    let json = serde_json::to_vec(&self.state()).unwrap_or_default();
                    let n = json
                        .len()
                        .min(usize::try_from(allocation).unwrap_or(usize::MAX));
                    self.answer(&cmd, Ok(Bytes::from(json).slice(..n)))
                }
                Err(0) if cmd.cdb.len() >= 2 && cmd.cdb[1] == wire::SA_RELAY_RECORD => {
                    // A RELAY RECORD needs its 48-byte CDB.
                    self.answer(&cmd, Err(Sense::invalid_field_in_cdb(0, None)))
                }
                Err(1) => self.answer(&cmd, Err(Sense::invalid_field_in_cdb(1, Some(4)))),
                Err(byte) => self.answer(&cmd, Err(Sense::invalid_field_in_cdb(byte, None))),
            };
        }
        let r = match Command::parse(&cmd.cdb) {
            Err(s) => Err(s),
            Ok(Command::TestUnitReady(_)) => Ok(Bytes::new()),
            Ok(Command::Inquiry(c)) => self.inquiry(&cmd, &c),
            Ok(Command::RequestSense(_)) => {
                Ok(Sense::new(SenseKey::NO_SENSE, asc::NO_ADDITIONAL_SENSE).encode())
            }
            Ok(_) => Err(Sense::invalid_opcode()),
        };
        self.answer(&cmd, r);
    }

    fn report_luns(&self, cdb: &[u8]) -> Result<Bytes, Sense> {
        let c = crate::scsi::cdb::ReportLuns::parse(cdb)?;
        let mut d = vec![0u8; 16];
        if c.select_report == 0x01 {
            d.truncate(8); // no well-known LUs
        } else {
            d[3] = 8;
            d[8..16].copy_from_slice(&encode_lun(0));
        }
        let n = d
            .len()
            .min(usize::try_from(c.allocation_length).unwrap_or(usize::MAX));
        Ok(Bytes::from(d).slice(..n))
    }

    fn inquiry(&self, cmd: &TargetCommand, c: &crate::scsi::cdb::Inquiry) -> Result<Bytes, Sense> {
        let data = if c.evpd {
            match c.page_code {
                page::SUPPORTED => inquiry::supported_pages(
                    DEVICE_TYPE,
                    &[page::SUPPORTED, page::UNIT_SERIAL, page::DEVICE_ID],
                ),
                page::UNIT_SERIAL => inquiry::unit_serial(
                    DEVICE_TYPE,
                    &format!("{}-RELAY", self.name.to_uppercase()),
                ),
                page::DEVICE_ID => {
                    let rel = u16::try_from(cmd.port + 1).unwrap_or(u16::MAX);
                    DeviceIdentification::for_lu(NaaId::Short(self.naa), self.naa, rel)
                        .encode(DEVICE_TYPE)
                }
                _ => return Err(Sense::invalid_field_in_cdb(2, None)),
            }
        } else {
            StandardInquiry {
                qualifier: 0,
                device_type: DEVICE_TYPE,
                removable: false,
                version: inquiry::VERSION_SPC5,
                third_party_copy: false,
                vendor: inquiry::VENDOR.to_string(),
                product: "RELAY".to_string(),
                revision: "0001".to_string(),
            }
            .encode()
        };
        let n = data.len().min(usize::from(c.allocation_length));
        Ok(data.slice(..n))
    }

    /// A RELAY RECORD from the primary (seed 002 S120/S140).
    fn record(
        &mut self,
        ctx: &mut Fc4Ctx<'_>,
        cmd: TargetCommand,
        header: Header,
        destination: u64,
    ) {
        if u64::from(cmd.fcp_dl) != header.len || cmd.data_out.len() as u64 != header.len {
            // The DATA LENGTH field disagrees with what is transferred.
            return self.answer(&cmd, Err(Sense::invalid_field_in_cdb(32, None)));
        }
        if destination == 0 || self.own.contains(&Wwpn(Wwn(destination))) {
            // No destination, or this relay itself: the record would go nowhere.
            return self.answer(&cmd, Err(Sense::invalid_field_in_cdb(40, None)));
        }
        let id = header.id;
        match self.relay.handle_command(header, ctx.now) {
            Admit::Busy => {
                debug!(source = id.source.0, seq = id.seq, "relay full: BUSY");
                self.counters.busy += 1;
                self.fcp
                    .complete(&cmd, ScsiStatus::BUSY.0, Bytes::new(), Bytes::new());
            }
            Admit::Fenced => {
                debug!(
                    source = id.source.0,
                    seq = id.seq,
                    "fenced source: RESERVATION CONFLICT"
                );
                self.counters.refused += 1;
                self.fcp.complete(
                    &cmd,
                    ScsiStatus::RESERVATION_CONFLICT.0,
                    Bytes::new(),
                    Bytes::new(),
                );
            }
            Admit::AlreadyHeld => {
                self.upstream.insert(id, (cmd, None));
            }
            Admit::Ready => {
                let data = cmd.data_out.clone();
                self.held.insert(
                    id,
                    Held {
                        destination: Wwpn(Wwn(destination)),
                        header,
                    },
                );
                self.upstream.insert(id, (cmd, Some(data.clone())));
                if !data.is_empty() {
                    self.relay.handle_data_bytes(id, 0, data, ctx.now);
                }
            }
        }
        self.pump(ctx);
    }

    /// RELAY CONTROL: the JSON parameter list.
    fn control(&mut self, ctx: &mut Fc4Ctx<'_>, cmd: TargetCommand, len: u32) {
        if u64::from(len) != cmd.data_out.len() as u64 {
            return self.answer(
                &cmd,
                Err(Sense::param_error(
                    asc::PARAMETER_LIST_LENGTH_ERROR,
                    10,
                    None,
                )),
            );
        }
        match serde_json::from_slice::<RelayControl>(&cmd.data_out) {
            Ok(RelayControl::Forward) => {
                info!("forward request: releasing everything held");
                self.drains.push(cmd);
                self.relay.handle_forward_request(ctx.now);
            }
            Ok(RelayControl::Fence { sources }) => {
                self.fence(ctx, &sources);
                self.answer(&cmd, Ok(Bytes::new()));
            }
            Err(_) => self.answer(&cmd, Err(Sense::invalid_field_in_param(0, None))),
        }
        self.pump(ctx);
    }

    fn fence(&mut self, ctx: &mut Fc4Ctx<'_>, sources: &[u32]) {
        info!(
            ?sources,
            "fenced: later records of these sources are refused"
        );
        self.log.fence(sources);
        let dropped = self
            .relay
            .fence(sources.iter().map(|s| SourceId(*s)), ctx.now);
        for id in dropped {
            self.forget(id);
            self.counters.dropped += 1;
        }
    }

    /// A record leaves the relay: freed, refused or fenced.
    fn forget(&mut self, id: RecordId) {
        self.held.remove(&id);
        self.down.remove(&id);
        if let Some((cmd, _)) = self.upstream.remove(&id) {
            // Fenced before it was whole: the primary hears the fence.
            self.fcp.complete(
                &cmd,
                ScsiStatus::RESERVATION_CONFLICT.0,
                Bytes::new(),
                Bytes::new(),
            );
        }
        self.log.remove(id);
    }

    /// Carries out the core's actions until it has none.
    fn pump(&mut self, ctx: &mut Fc4Ctx<'_>) {
        while let Some(a) = self.relay.poll_action() {
            match a {
                RelayAction::AckUpstream { id } => {
                    if let Some((cmd, data)) = self.upstream.remove(&id) {
                        if let (Some(h), Some(data)) = (self.held.get(&id), data) {
                            // In the log before the acknowledgement ([0114]); a resent
                            // record is there already.
                            self.log.put(Logged {
                                header: h.header,
                                destination: h.destination.0.0,
                                data,
                            });
                        }
                        self.counters.acked += 1;
                        self.fcp
                            .complete(&cmd, ScsiStatus::GOOD.0, Bytes::new(), Bytes::new());
                    }
                }
                RelayAction::OpenDownstream { header } => {
                    let Some(h) = self.held.get(&header.id) else {
                        continue;
                    };
                    self.next_generation += 1;
                    if self.down.contains_key(&header.id) {
                        self.counters.resent += 1;
                    }
                    self.down.insert(
                        header.id,
                        Down {
                            generation: self.next_generation,
                            header,
                            destination: h.destination,
                            parts: Vec::new(),
                            released: 0,
                            tag: None,
                        },
                    );
                    if header.len == 0 {
                        self.submit(ctx, header.id);
                    } else {
                        // First burst: the standby needs no FCP_XFER_RDY, it is ready.
                        self.relay.handle_downstream_ready(header.id, ctx.now);
                    }
                }
                RelayAction::SendDownstream { id, offset, data } => {
                    let Some(d) = self.down.get_mut(&id) else {
                        continue;
                    };
                    if offset != d.released {
                        continue;
                    }
                    d.released += data.len() as u64;
                    d.parts.push(data);
                    if d.released == d.header.len {
                        self.submit(ctx, id);
                    }
                }
                RelayAction::AbortDownstream { id } => {
                    // A late answer of its exchange finds no generation to match.
                    self.down.remove(&id);
                }
                RelayAction::Drained => {
                    for cmd in std::mem::take(&mut self.drains) {
                        self.fcp
                            .complete(&cmd, ScsiStatus::GOOD.0, Bytes::new(), Bytes::new());
                    }
                }
            }
        }
        self.flush(ctx);
    }

    /// Sends the RELAY RECORD of `id` downstream once its destination is logged in.
    fn submit(&mut self, ctx: &mut Fc4Ctx<'_>, id: RecordId) {
        let Some(d) = self.down.get(&id) else { return };
        let dest = d.destination;
        let (port, fc_id) = match self.logins.get(&dest) {
            Some(Login::Done { port, fc_id }) => (*port, *fc_id),
            Some(Login::Pending { .. }) => return,
            None => {
                self.login(ctx, dest);
                return;
            }
        };
        let Some(s_id) = ctx.ports.get(&port).and_then(|np| np.fc_id()) else {
            self.logins.remove(&dest);
            return;
        };
        let Some(d) = self.down.get_mut(&id) else {
            return;
        };
        if d.tag.is_some() {
            return;
        }
        let data = join(&d.parts);
        let req = IoRequest {
            lun: 0,
            cdb: Bytes::copy_from_slice(&wire::relay_record(&d.header, dest.0.0)),
            data_out: data,
            data_in_len: 0,
        };
        // The exchange outlives the core's resend interval: a standby farther than that
        // (a long round trip, a queue of records after a restart) still answers it, and
        // its GOOD frees the record even if the core opened the exchange again.
        let timeout = Duration::from_micros(self.settings.resend_after_us.max(1))
            .saturating_mul(EXCHANGE_LIFETIME_RESENDS);
        let tag = self
            .init
            .submit_within(port, s_id, fc_id, req, ctx.now, timeout);
        debug!(source = id.source.0, seq = id.seq, %dest, port, "RELAY RECORD downstream");
        d.tag = Some(tag);
        self.tags
            .insert(tag, (id, d.generation, Login::Done { port, fc_id }));
    }

    /// Logs in to `dest` from the first online port.
    fn login(&mut self, ctx: &mut Fc4Ctx<'_>, dest: Wwpn) {
        let Some((&port, np)) = ctx
            .ports
            .iter_mut()
            .find(|(_, np)| np.state() == NPortState::Online && np.fc_id().is_some())
        else {
            debug!(%dest, "no port online: the record waits for its resend");
            return;
        };
        let ticket = np.login_to(LoginTarget::Wwpn(dest), ctx.now);
        self.logins.insert(dest, Login::Pending { port, ticket });
    }

    /// `dest` is logged in at `fc_id` through local port `port`: the records waiting for
    /// it go now.
    fn logged_in(&mut self, ctx: &mut Fc4Ctx<'_>, dest: Wwpn, port: u32, fc_id: FcId) {
        self.logins.insert(dest, Login::Done { port, fc_id });
        let waiting: Vec<RecordId> = self
            .down
            .iter()
            .filter(|(_, d)| d.destination == dest && d.tag.is_none() && d.released == d.header.len)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.submit(ctx, id);
        }
        self.flush(ctx);
    }

    /// Logs in to every destination that records wait for and that has no login, done
    /// or under way.
    fn login_waiting(&mut self, ctx: &mut Fc4Ctx<'_>) {
        let dests: BTreeSet<Wwpn> = self
            .down
            .values()
            .filter(|d| d.tag.is_none() && d.released == d.header.len)
            .map(|d| d.destination)
            .filter(|w| !self.logins.contains_key(w))
            .collect();
        for dest in dests {
            debug!(%dest, "name server changed: logging in to the destination");
            self.login(ctx, dest);
        }
    }

    /// Downstream exchanges that ended.
    fn completions(&mut self, ctx: &mut Fc4Ctx<'_>) {
        while let Some((tag, r)) = self.init.poll_completion() {
            let Some((id, generation, used)) = self.tags.remove(&tag) else {
                continue;
            };
            let current = self
                .down
                .get(&id)
                .is_some_and(|d| d.generation == generation);
            if let Some(t) = r.transport {
                debug!(
                    source = id.source.0,
                    seq = id.seq,
                    ?t,
                    "downstream exchange failed"
                );
                if let Some(d) = self.down.get(&id)
                    && self.logins.get(&d.destination) == Some(&used)
                {
                    // The destination may have a new address: look it up again. Only
                    // the login this exchange went through: a newer one (or one under
                    // way, whose answer would otherwise find no login to complete)
                    // stays.
                    self.logins.remove(&d.destination);
                }
                if current && let Some(d) = self.down.get_mut(&id) {
                    d.tag = None;
                }
                continue;
            }
            match r.status {
                0x00 => {
                    if self.held.contains_key(&id) {
                        self.relay.handle_downstream_ack(id, ctx.now);
                        if !self.relay.holds(id) {
                            self.counters.forwarded += 1;
                            self.held.remove(&id);
                            self.down.remove(&id);
                            self.log.remove(id);
                        }
                    }
                }
                0x18 => {
                    info!(
                        source = id.source.0,
                        seq = id.seq,
                        "standby refused the record (fenced): dropped"
                    );
                    if self.relay.handle_downstream_refused(id, ctx.now) {
                        self.counters.dropped += 1;
                        self.forget(id);
                    }
                }
                s => {
                    debug!(
                        source = id.source.0,
                        seq = id.seq,
                        status = s,
                        "downstream not taken; resent later"
                    );
                    if current && let Some(d) = self.down.get_mut(&id) {
                        d.tag = None;
                    }
                }
            }
        }
        self.pump(ctx);
    }

    fn flush(&mut self, ctx: &mut Fc4Ctx<'_>) {
        while let Some((p, f)) = self.fcp.poll_transmit() {
            ctx.send(p, &f);
        }
        while let Some((p, f)) = self.init.poll_transmit() {
            ctx.send(p, &f);
        }
    }
}

/// Joins released pieces; one piece goes as it is.
fn join(parts: &[Bytes]) -> Bytes {
    match parts {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut b = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for p in many {
                b.extend_from_slice(p);
            }
            b.freeze()
        }
    }
}

/// Requests of the relay's `Copy` service.
pub enum RelayAdmin {
    Status(oneshot::Sender<pb::RelayStatusResponse>),
    Control(RelayControl, oneshot::Sender<pb::RelayStatusResponse>),
}

impl Fc4Layer for RelayLayer {
    type Admin = RelayAdmin;

    fn on_frame(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, frame: Frame) {
        self.measure(ctx);
        let mine = if frame.header.from_responder() {
            self.init.handle_frame(port, &frame)
        } else {
            self.fcp.handle_frame(port, &frame)
        };
        if !mine {
            ctx.hub.count_discard(port);
        }
        while let Some(cmd) = self.fcp.poll_command() {
            let logged_in = ctx
                .ports
                .get(&cmd.port)
                .is_some_and(|np| np.logged_in().contains_key(&cmd.initiator));
            if logged_in {
                self.execute(ctx, cmd);
            } else {
                debug!(initiator = %cmd.initiator, "FCP command from a port not logged in: dropped");
            }
        }
        self.completions(ctx);
    }

    fn on_nport_event(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, ev: &NPortEvent) {
        match ev {
            NPortEvent::LoginDone { ticket, outcome } => {
                let Some(dest) = self.logins.iter().find_map(|(w, l)| {
                    (*l == Login::Pending {
                        port,
                        ticket: *ticket,
                    })
                    .then_some(*w)
                }) else {
                    return;
                };
                match outcome {
                    LoginOutcome::Accepted { fc_id } => {
                        info!(%dest, %fc_id, port, "logged in to the destination");
                        self.logged_in(ctx, dest, port, *fc_id);
                    }
                    other => {
                        warn!(%dest, outcome = ?other, "login to the destination failed; records wait for their resend");
                        self.logins.remove(&dest);
                    }
                }
            }
            // A port came online (at start: what the log released can go now).
            NPortEvent::Online => self.pump(ctx),
            // The name server changed (a destination may have come back behind a cable
            // that was down): log in at once rather than at the next resend.
            NPortEvent::ViewUpdated { .. } => self.login_waiting(ctx),
            // The destination logged in to us (a standby reaching its relays once a
            // path is back): that login serves our records too, without waiting for
            // our own PLOGI and PRLI, two round trips on a long cable.
            NPortEvent::RemoteLogin { fc_id, wwpn }
                if !matches!(self.logins.get(wwpn), Some(Login::Done { .. }))
                    && self.down.values().any(|d| d.destination == *wwpn) =>
            {
                info!(dest = %wwpn, %fc_id, port, "the destination logged in to us");
                self.logged_in(ctx, *wwpn, port, *fc_id);
            }
            NPortEvent::RemoteLogout { fc_id } => {
                self.logins
                    .retain(|_, l| !matches!(l, Login::Done { fc_id: f, port: p } if f == fc_id && *p == port));
            }
            _ => {}
        }
    }

    fn on_link_down(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32) {
        self.fcp.port_down(port);
        self.init.port_down(port);
        self.logins.retain(|_, l| match l {
            Login::Pending { port: p, .. } | Login::Done { port: p, .. } => *p != port,
        });
        self.completions(ctx);
    }

    fn on_admin(&mut self, ctx: &mut Fc4Ctx<'_>, req: Self::Admin) {
        match req {
            RelayAdmin::Status(reply) => {
                let _ = reply.send(self.status_response());
            }
            RelayAdmin::Control(c, reply) => {
                match c {
                    RelayControl::Forward => {
                        info!("forward requested by an operator");
                        self.relay.handle_forward_request(ctx.now);
                    }
                    RelayControl::Fence { sources } => self.fence(ctx, &sources),
                }
                self.pump(ctx);
                let _ = reply.send(self.status_response());
            }
        }
    }

    fn on_timeout(&mut self, ctx: &mut Fc4Ctx<'_>) {
        self.init.handle_timeout(ctx.now);
        self.measure(ctx);
        if self.relay.poll_timeout().is_some_and(|t| t <= ctx.now) {
            self.relay.handle_timeout(ctx.now);
        }
        self.completions(ctx);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        // While records wait on a traffic trigger, traffic is measured every window.
        let window = (self.traffic_sensitive() && !self.relay.is_empty())
            .then(|| self.window.0 + TRAFFIC_WINDOW);
        self.init
            .poll_timeout()
            .into_iter()
            .chain(self.relay.poll_timeout())
            .chain(window)
            .min()
    }
}

/// Runs a relay node until its task is dropped.
pub async fn run_relay(
    cfg: RelayNodeConfig,
    net: Net,
    clock: FabricClock,
) -> Result<(), EndNodeError> {
    let layer = match RelayLayer::new(&cfg, clock.now()) {
        Ok(l) => l,
        Err(e) => {
            return Err(EndNodeError::InvalidConfig {
                field: "relay",
                detail: e.to_string(),
            });
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let routes = tonic::service::Routes::new(pb::copy_server::CopyServer::new(RelayCopyService {
        name: cfg.node.name.clone(),
        tx,
    }));
    run_end_node_with(
        cfg.node,
        net,
        clock,
        layer,
        Some(routes),
        rx,
        &["fcsim.v1.Copy"],
    )
    .await
}

/// `fcsim.v1.Copy` on a relay: `RelayStatus` and `RelayControl`.
struct RelayCopyService {
    name: String,
    tx: mpsc::UnboundedSender<RelayAdmin>,
}

impl RelayCopyService {
    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<pb::RelayStatusResponse>) -> RelayAdmin,
    ) -> Result<Response<pb::RelayStatusResponse>, Status> {
        actor::ask(&self.tx, "relay", make).await.map(Response::new)
    }

    fn no_pairs<T>(&self) -> Result<Response<T>, Status> {
        Err(Status::unimplemented(format!(
            "relay {} runs no copy pairs",
            self.name
        )))
    }
}

/// Parses a `RelayControlRequest` (INVALID_ARGUMENT naming the field).
pub fn parse_relay_control(r: &pb::RelayControlRequest) -> Result<RelayControl, Status> {
    match r.op.as_str() {
        "forward" if r.sources.is_empty() => Ok(RelayControl::Forward),
        "forward" => Err(Status::invalid_argument(
            "sources: only op \"fence\" takes sources",
        )),
        "fence" if r.sources.is_empty() => Err(Status::invalid_argument(
            "sources: a fence names at least one source",
        )),
        "fence" => Ok(RelayControl::Fence {
            sources: r.sources.clone(),
        }),
        other => Err(Status::invalid_argument(format!(
            "op: `{other}` is not \"forward\" or \"fence\""
        ))),
    }
}

#[tonic::async_trait]
impl pb::copy_server::Copy for RelayCopyService {
    async fn create_pair(
        &self,
        _: Request<pb::CreatePairRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        self.no_pairs()
    }
    async fn split_pair(
        &self,
        _: Request<pb::SplitPairRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        self.no_pairs()
    }
    async fn resync_pair(
        &self,
        _: Request<pb::PairRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        self.no_pairs()
    }
    async fn delete_pair(
        &self,
        _: Request<pb::PairRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        self.no_pairs()
    }
    async fn pair_status(
        &self,
        _: Request<pb::PairRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        self.no_pairs()
    }
    async fn takeover(
        &self,
        _: Request<pb::PairRequest>,
    ) -> Result<Response<pb::TakeoverResponse>, Status> {
        self.no_pairs()
    }
    async fn clear_difference(
        &self,
        _: Request<pb::ClearDifferenceRequest>,
    ) -> Result<Response<pb::DifferenceStatusResponse>, Status> {
        self.no_pairs()
    }
    async fn difference_status(
        &self,
        _: Request<pb::PairRequest>,
    ) -> Result<Response<pb::DifferenceStatusResponse>, Status> {
        self.no_pairs()
    }
    async fn failover_pairs(
        &self,
        _: Request<pb::FailoverPairsRequest>,
    ) -> Result<Response<pb::FailoverPairsResponse>, Status> {
        self.no_pairs()
    }
    async fn set_pair_options(
        &self,
        _: Request<pb::SetPairOptionsRequest>,
    ) -> Result<Response<pb::PairStatusResponse>, Status> {
        self.no_pairs()
    }
    async fn recover_pair(
        &self,
        _: Request<pb::RecoverPairRequest>,
    ) -> Result<Response<pb::RecoveryStatusResponse>, Status> {
        self.no_pairs()
    }
    async fn recovery_status(
        &self,
        _: Request<pb::PairRequest>,
    ) -> Result<Response<pb::RecoveryStatusResponse>, Status> {
        self.no_pairs()
    }
    async fn relay_takeover(
        &self,
        _: Request<pb::PairRequest>,
    ) -> Result<Response<pb::RelayTakeoverResponse>, Status> {
        self.no_pairs()
    }
    async fn restart_point(
        &self,
        _: Request<pb::RestartPointRequest>,
    ) -> Result<Response<pb::RestartPointResponse>, Status> {
        self.no_pairs()
    }
    async fn relay_status(
        &self,
        _: Request<pb::RelayStatusRequest>,
    ) -> Result<Response<pb::RelayStatusResponse>, Status> {
        self.ask(RelayAdmin::Status).await
    }
    async fn relay_control(
        &self,
        r: Request<pb::RelayControlRequest>,
    ) -> Result<Response<pb::RelayStatusResponse>, Status> {
        let c = parse_relay_control(&r.into_inner())?;
        self.ask(|tx| RelayAdmin::Control(c, tx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::Kind;

    fn logged(seq: u64, len: usize) -> Logged {
        Logged {
            header: Header {
                id: RecordId {
                    source: SourceId(3),
                    seq,
                },
                kind: Kind::Write { lun: 1, lba: seq },
                len: len as u64,
            },
            destination: 0x5006_0e80_0000_0001,
            data: Bytes::from(vec![u8::try_from(seq % 256).unwrap_or(0); len]),
        }
    }

    #[test]
    fn the_log_replays_puts_deletes_and_fences_and_stops_at_a_torn_entry() {
        let mut b = Vec::new();
        for s in 1..=3 {
            b.extend_from_slice(&encode_put(&logged(s, 512)));
        }
        b.extend_from_slice(&encode_del(logged(2, 0).header.id));
        b.extend_from_slice(&[LOG_FENCE, 0, 0, 0, 9]);
        let whole = decode_log(&b);
        let seqs: Vec<u64> = whole.records.values().map(|l| l.header.id.seq).collect();
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(whole.fenced.iter().copied().collect::<Vec<_>>(), vec![9]);
        assert_eq!(
            whole.records.values().next().map(|l| l.data.len()),
            Some(512)
        );
        // Power lost in the middle of the fourth record: the first three stand.
        b.extend_from_slice(&encode_put(&logged(4, 512))[..100]);
        assert_eq!(decode_log(&b).records.len(), 2);
        // Garbage never panics.
        assert!(decode_log(&[LOG_PUT, 0xD6, 0x08]).records.is_empty());
        assert!(decode_log(&[0xFF; 64]).records.is_empty());
    }

    #[test]
    fn settings_become_the_core_config_and_bad_combinations_are_refused() {
        let s: RelaySettings = serde_json::from_str(
            r#"{"durability": "non_volatile", "forwarding": "cut_through",
                "schedule": {"mode": "deferred", "max_age_us": 50000, "clock_first_us": 1000,
                             "clock_period_us": 2000},
                "capacity_bytes": 4096, "resend_after_us": 100000}"#,
        )
        .expect("parses");
        let c = s.config();
        assert_eq!(c.forwarding, Forwarding::CutThrough);
        assert!(c.validate().is_ok());
        assert!(
            matches!(c.schedule, Schedule::Deferred(t) if t.max_age == Some(Duration::from_millis(50)))
        );
        let v = RelaySettings {
            durability: DurabilitySetting::Volatile,
            ..s
        };
        assert!(v.config().validate().is_err(), "deferred needs the log");
        assert!(
            serde_json::from_str::<RelaySettings>(
                r#"{"capacity_bytes": 1, "resend_after_us": 1, "x": 1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn control_requests_are_checked_field_by_field() {
        let req = |op: &str, sources: Vec<u32>| pb::RelayControlRequest {
            op: op.into(),
            sources,
        };
        assert_eq!(
            parse_relay_control(&req("forward", vec![])).ok(),
            Some(RelayControl::Forward)
        );
        assert_eq!(
            parse_relay_control(&req("fence", vec![1, 2])).ok(),
            Some(RelayControl::Fence {
                sources: vec![1, 2]
            })
        );
        for (op, s, field) in [
            ("fence", vec![], "sources"),
            ("forward", vec![1], "sources"),
            ("drop", vec![], "op"),
        ] {
            let e = parse_relay_control(&req(op, s)).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().starts_with(field), "{}", e.message());
        }
    }

    #[test]
    fn the_nvram_image_outlives_a_layer_and_a_volatile_relay_keeps_nothing() {
        let node = |n: &str| EndNodeConfig {
            name: n.into(),
            kind: "relay".into(),
            wwnn: fcsim_fabric::Wwnn(Wwn(0x5000_0000_0000_1000)),
            port_wwpns: vec![Wwpn(Wwn(0x5000_0000_0000_1001))],
            role: fcsim_fabric::nport::Role::Both,
            listen: "r:7000".into(),
            peers: BTreeMap::new(),
        };
        let cfg = |durability| RelayNodeConfig {
            node: node("r"),
            relay: RelaySettings {
                durability,
                ..RelaySettings::default()
            },
            log_path: None,
            nvram_key: "relaynode-test-nvram".into(),
        };
        let nv = cfg(DurabilitySetting::NonVolatile);
        let (mut log, img) = NvLog::open(&nv);
        assert!(img.records.is_empty());
        log.put(logged(1, 8));
        log.put(logged(2, 8));
        log.remove(logged(1, 0).header.id);
        log.fence(&[7]);
        let layer = RelayLayer::new(&nv, Duration::from_millis(5)).expect("starts");
        assert_eq!(layer.state().held_records, 1);
        assert_eq!(layer.state().fenced, vec![7]);
        assert_eq!(layer.state().durability, "non_volatile");
        // A volatile relay under the same key starts empty and clears the image.
        let v = RelayLayer::new(&cfg(DurabilitySetting::Volatile), Duration::ZERO).expect("starts");
        assert_eq!(v.state().held_records, 0);
        assert!(nvram().get("relaynode-test-nvram").is_none());
    }

    #[test]
    fn a_file_log_survives_the_node() {
        let dir = std::env::temp_dir().join(format!("fcsim-relaylog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("r.relaylog");
        let _ = std::fs::remove_file(&path);
        let cfg = RelayNodeConfig {
            node: EndNodeConfig {
                name: "r".into(),
                kind: "relay".into(),
                wwnn: fcsim_fabric::Wwnn(Wwn(0x5000_0000_0000_1000)),
                port_wwpns: vec![Wwpn(Wwn(0x5000_0000_0000_1001))],
                role: fcsim_fabric::nport::Role::Both,
                listen: "r:7000".into(),
                peers: BTreeMap::new(),
            },
            relay: RelaySettings {
                durability: DurabilitySetting::NonVolatile,
                ..RelaySettings::default()
            },
            log_path: Some(path.clone()),
            nvram_key: String::new(),
        };
        {
            let (mut log, _) = NvLog::open(&cfg);
            log.put(logged(1, 16));
            log.put(logged(2, 16));
            log.remove(logged(2, 0).header.id);
        }
        let layer = RelayLayer::new(&cfg, Duration::ZERO).expect("starts");
        assert_eq!(
            (layer.state().held_records, layer.state().held_bytes),
            (1, 16)
        );
        drop(layer);
        // Records come and go: the file stays near its live content.
        {
            let (mut log, _) = NvLog::open(&cfg);
            for seq in 10..400 {
                log.put(logged(seq, 8192));
                log.remove(logged(seq, 0).header.id);
            }
            log.fence(&[2]);
        }
        let len = std::fs::metadata(&path).expect("log").len();
        assert!(len < COMPACT_AT, "compacted: {len} bytes");
        let img = decode_log(&std::fs::read(&path).expect("read"));
        assert_eq!(img.records.len(), 1);
        assert_eq!(img.fenced.iter().copied().collect::<Vec<_>>(), vec![2]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_log_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_log(&b);
        }

        #[test]
        fn log_entries_round_trip(
            puts in proptest::collection::vec((1u64..50, 0usize..600), 0..12),
            dels in proptest::collection::vec(1u64..50, 0..6),
            fence in proptest::collection::btree_set(proptest::num::u32::ANY, 0..3),
        ) {
            let mut want = NvImage::default();
            let mut b = Vec::new();
            for (seq, len) in &puts {
                let l = logged(*seq, *len);
                b.extend_from_slice(&encode_put(&l));
                want.put(l);
            }
            for seq in &dels {
                let id = logged(*seq, 0).header.id;
                b.extend_from_slice(&encode_del(id));
                want.remove(id);
            }
            for s in &fence {
                b.push(LOG_FENCE);
                b.extend_from_slice(&s.to_be_bytes());
            }
            let got = decode_log(&b);
            let ids = |i: &NvImage| i.records.values().map(|l| (l.header, l.data.clone())).collect::<Vec<_>>();
            proptest::prop_assert_eq!(ids(&got), ids(&want));
            proptest::prop_assert_eq!(got.bytes, want.bytes);
            proptest::prop_assert_eq!(got.fenced, fence);
        }
    }
}
