//! The scenario file format (DESIGN.md §8, documented field by field in
//! `docs/scenario-format.md`): serde types only, no validation.
//!
//! Conventions: a port is the string `node/port` ([`PortRef`]), an LU is `node:lun`
//! ([`LuRef`]), durations are strings with units ([`SimDuration`]). Every struct denies
//! unknown fields. [`crate::validate::parse`] turns text into a checked [`Scenario`]
//! with every derived value (domain IDs, WWNs) filled in.
//!
//! Adding a step is one variant of [`Step`] (or of [`Check`] for a check) plus its
//! section in the doc; the doc test in `validate.rs` fails until the doc shows it.

use std::fmt;
use std::str::FromStr;

use fcsim_fabric::{DomainId, Wwnn, Wwpn};
use serde::{Deserialize, Serialize};

use crate::duration::SimDuration;

/// Why a `node/port` or `node:lun` reference was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("`{text}` is not a port: expected `node/port` like \"h1/0\"")]
    BadPortRef { text: String },
    #[error("`{text}` is not an LU: expected `node:lun` like \"arr1:0\"")]
    BadLuRef { text: String },
}

/// One scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short identifier, shown in the timeline and the report.
    pub name: String,
    /// What the scenario shows, in a sentence or two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Root seed of the simulation; every node's RNG derives from it.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulation clock tick (granularity of the simulated network); default `10us`.
    #[serde(default = "default_tick")]
    pub tick: SimDuration,
    /// Sites, nodes, links and zones.
    pub topology: Topology,
    /// Untimed steps run in order before the timeline starts (time 0 is when the last
    /// one finishes).
    #[serde(default)]
    pub setup: Vec<Step>,
    /// The timeline: steps with an `at` time, non-decreasing.
    #[serde(default)]
    pub steps: Vec<TimedStep>,
}

fn default_seed() -> u64 {
    1
}

fn default_tick() -> SimDuration {
    SimDuration::from_micros(10)
}

fn default_zone_cfg() -> String {
    "cfg".to_string()
}

fn default_one() -> u32 {
    1
}

fn default_gfc() -> u32 {
    32
}

fn yes() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_true(v: &bool) -> bool {
    *v
}

fn default_at_least_one() -> u64 {
    1
}

/// The physical and logical layout.
///
/// After [`crate::validate::parse`], every `SwitchSpec::domain`, every node `wwn` and
/// every end-node `port_wwpns` is `Some` (given in the file or derived; see
/// `crate::derived`). Read them through [`Topology::switch_domain`],
/// [`Topology::node_wwnn`] and [`Topology::port_wwpn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Places; each belongs to one disaster zone.
    pub sites: Vec<Site>,
    /// Fibre Channel switches.
    #[serde(default)]
    pub switches: Vec<SwitchSpec>,
    /// Storage arrays.
    #[serde(default)]
    pub arrays: Vec<ArraySpec>,
    /// Hosts (initiators).
    #[serde(default)]
    pub hosts: Vec<HostSpec>,
    /// Tape libraries.
    #[serde(default)]
    pub tapes: Vec<TapeSpec>,
    /// Relay devices (seed 002).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<RelaySpec>,
    /// Cables between two ports; at least one end is a switch port.
    #[serde(default)]
    pub links: Vec<LinkSpec>,
    /// Zones of the initially active zone configuration.
    #[serde(default)]
    pub zones: Vec<ZoneSpec>,
    /// Name of the initially active zone configuration; default `"cfg"`.
    #[serde(default = "default_zone_cfg")]
    pub zone_cfg: String,
    /// Virtual LUs of the intelligent switches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_lus: Vec<VirtualLuSpec>,
}

/// A place, and the disaster zone it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Unique site name.
    pub name: String,
    /// Disaster zone: a `disaster` on this name destroys every site in it. Defaults to
    /// the site's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

impl Site {
    /// The disaster zone: `zone`, or the site name when absent.
    pub fn disaster_zone(&self) -> &str {
        self.zone.as_deref().unwrap_or(&self.name)
    }
}

/// A switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSpec {
    /// Unique node name.
    pub name: String,
    /// Site it stands in.
    pub site: String,
    /// Domain ID, 1–239. Absent: assigned at load (lowest free domain, switches in name
    /// order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<u32>,
    /// Number of ports, 1–256, numbered from 0.
    pub ports: u32,
    /// An intelligent (virtualizing) switch (DESIGN.md §6).
    #[serde(default)]
    pub intelligent: bool,
    /// Settings of an intelligent switch's virtualization engine; absent: the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualization: Option<VirtualizationSpec>,
    /// Switch WWN. Absent: derived (`10:00:00:05:1e:xx:xx:xx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<Wwnn>,
}

/// The virtualization engine of an intelligent switch: its N_Ports sit on the switch's
/// last `ports` ports (internal ports: no cable may use them; zone them as `switch/port`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualizationSpec {
    /// Engine ports (virtual targets and initiators), 1 up to the switch's port count;
    /// default 2.
    #[serde(default = "default_engine_ports")]
    pub ports: u32,
    /// `offload` (mode 1, the default: support functions go to capable arrays) or
    /// `local` (mode 2: the switch does all of them).
    #[serde(default)]
    pub mode: fcsim_switch::OffloadMode,
    /// Clean blocks the switch cache keeps, and dirty blocks it holds before new writes
    /// wait; default 65536.
    #[serde(default = "default_cache_blocks")]
    pub cache_blocks: usize,
    /// Map every discovered array LU no virtual LU uses to a new virtual LU.
    #[serde(default)]
    pub auto_map: bool,
    /// Manual TF cells, overriding what the arrays advertise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<FunctionOverride>,
}

impl Default for VirtualizationSpec {
    fn default() -> Self {
        VirtualizationSpec {
            ports: default_engine_ports(),
            mode: fcsim_switch::OffloadMode::Offload,
            cache_blocks: default_cache_blocks(),
            auto_map: false,
            overrides: Vec::new(),
        }
    }
}

fn default_engine_ports() -> u32 {
    2
}

fn default_cache_blocks() -> usize {
    65_536
}

/// One manual TF cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionOverride {
    /// Array name (the TF device ID).
    pub array: String,
    /// `direct-backup`, `volume-copy` or `mirroring`.
    pub function: fcsim_switch::tf::SupportFunction,
    /// Whether the switch treats the array as able to run it.
    pub can: bool,
}

/// A virtual LU of an intelligent switch: extents concatenated from block 0 (TM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualLuSpec {
    /// The intelligent switch presenting it; hosts and steps call it `switch:lun`.
    pub switch: String,
    /// LUN on the switch's virtual targets, unique per switch, below 16384.
    pub lun: u32,
    /// Display name (the patent's Vol ID); default `v<lun>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `sync` (default: acknowledged after the arrays) or `async` (after the switch
    /// cache; destaged in the background).
    #[serde(default)]
    pub ack: fcsim_switch::tm::AckMode,
    /// Block size of an LU with only INTERNAL extents; default the real LUs' (512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_bytes: Option<u32>,
    /// Its extents, in order.
    pub extents: Vec<ExtentSpec>,
}

/// One extent of a virtual LU: `blocks` blocks of a real LU from `start`, or INTERNAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtentSpec {
    /// The real LU (`array:lun`); absent for an INTERNAL extent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lu: Option<LuRef>,
    /// First real block; default 0.
    #[serde(default)]
    pub start: u64,
    /// Number of blocks, at least 1.
    pub blocks: u64,
    /// Blocks kept by the switch itself (the patent's SD1 / INTERNAL rows).
    #[serde(default)]
    pub internal: bool,
}

impl VirtualLuSpec {
    /// Capacity in blocks.
    pub fn blocks(&self) -> u64 {
        self.extents.iter().map(|e| e.blocks).sum()
    }
}

/// A copy-service function an array can run (its capability table, DESIGN.md §6–§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArrayFunction {
    /// EXTENDED COPY (SPC-4 third-party copy).
    Xcopy,
    /// Local pairs (in-array copy).
    LocalPair,
    /// Synchronous remote mirroring.
    RemoteSync,
    /// Asynchronous (journal) remote replication.
    RemoteAsync,
    /// Differential (changed-block) tables.
    DiffTables,
    /// Protected resynchronization (recovery copy kept until resync completes).
    ProtectedResync,
    /// Server-free backup straight to tape.
    DirectBackup,
}

/// A storage array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraySpec {
    /// Unique node name.
    pub name: String,
    /// Site it stands in.
    pub site: String,
    /// Number of target ports, 1–256, numbered from 0; each must be linked to a switch.
    pub ports: u32,
    /// Copy-service functions it can run; each at most once.
    #[serde(default)]
    pub functions: Vec<ArrayFunction>,
    /// Logical units it serves.
    #[serde(default)]
    pub lus: Vec<LuSpec>,
    /// Every acknowledged write is durable (synced to the backing file) before the
    /// acknowledgement; default false (durable on SYNCHRONIZE CACHE or FUA).
    #[serde(default)]
    pub write_through: bool,
    /// Node WWN. Absent: derived (NAA 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<Wwnn>,
    /// One WWPN per port, in port order. Absent: derived (NAA 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_wwpns: Option<Vec<Wwpn>>,
    /// The array's clock against fabric time, in microseconds (positive: ahead). It
    /// dates everything the copy services decide (split and clear times, timestamps):
    /// the clock skew of seed 000 §7.4 item 4. Default 0, at most ±1 s.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clock_skew_us: i64,
    /// How the array serves as the remote of a protected recovery copy (seed 001).
    /// Absent: variant A (`save_old`) with the defaults below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoverySpec>,
}

/// An array's protected-recovery-copy settings as a remote (seed 001 §3.5): its
/// variant, the capacities it reports to the master (step 403), and the user
/// conditions set on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySpec {
    /// `save_old` (variant A, default) or `hold_new` (variant B).
    #[serde(default)]
    pub protection: ProtectionSpec,
    /// Logical devices the array emulates; default 64.
    #[serde(default = "default_ldevs")]
    pub logical_devices: u32,
    /// Physical disks they are emulated on; default 24.
    #[serde(default = "default_disks")]
    pub disks: u32,
    /// Cache tracks (blocks) available to saved or held data; default 1024.
    #[serde(default = "default_cache_tracks")]
    pub cache_tracks: u64,
    /// Parity groups usable as save areas; default 4.
    #[serde(default = "default_parity_rows")]
    pub parity_rows: u32,
    /// Spare disks usable as save areas; default 2.
    #[serde(default = "default_spare_rows")]
    pub spare_rows: u32,
    /// Tracks of each parity group or spare disk; default 4096.
    #[serde(default = "default_row_tracks")]
    pub row_tracks: u64,
    /// Keep the RAID5 level: parity tracks are never borrowed; default false.
    #[serde(default)]
    pub keep_raid5: bool,
    /// Spare disks may be borrowed; default true.
    #[serde(default = "yes")]
    pub use_spares: bool,
    /// Saved tracks kept in cache before spilling to parity/spare tracks; default
    /// `cache_tracks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_threshold_tracks: Option<u64>,
}

fn default_ldevs() -> u32 {
    64
}
fn default_disks() -> u32 {
    24
}
fn default_cache_tracks() -> u64 {
    1024
}
fn default_parity_rows() -> u32 {
    4
}
fn default_spare_rows() -> u32 {
    2
}
fn default_row_tracks() -> u64 {
    4096
}

/// A remote's protection variant (seed 001 claim 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionSpec {
    /// Variant A: save each target track's old data before its first overwrite.
    #[default]
    SaveOld,
    /// Variant B: hold the new data aside until its unit reaches.
    HoldNew,
}

/// The consistency unit of a recovery copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryUnitSpec {
    /// Each pair alone.
    #[default]
    Device,
    /// Every pair of the step at once.
    Group,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A logical unit on an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuSpec {
    /// LUN, unique on its array.
    pub lun: u32,
    /// Capacity in blocks (at least 1).
    pub blocks: u64,
    /// Logical block size in bytes: 512 or 4096.
    pub block_bytes: u32,
    /// LUN masking: the hosts (`h1`, every port) or host ports (`h1/0`) that may see
    /// this LU. Empty (the default): every initiator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// A host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Unique node name.
    pub name: String,
    /// Site it stands in.
    pub site: String,
    /// Number of HBA ports, 1–256, numbered from 0; each must be linked to a switch.
    pub ports: u32,
    /// Node WWN. Absent: derived (NAA 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<Wwnn>,
    /// One WWPN per port, in port order. Absent: derived (NAA 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_wwpns: Option<Vec<Wwpn>>,
}

/// A tape library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapeSpec {
    /// Unique node name.
    pub name: String,
    /// Site it stands in.
    pub site: String,
    /// Number of ports, 1–256; default 1; each must be linked to a switch.
    #[serde(default = "default_one")]
    pub ports: u32,
    /// Medium capacity in bytes; absent means unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// Node WWN. Absent: derived (NAA 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<Wwnn>,
    /// One WWPN per port, in port order. Absent: derived (NAA 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_wwpns: Option<Vec<Wwpn>>,
}

fn default_relay_capacity() -> u64 {
    64 << 20
}

fn default_resend_after() -> SimDuration {
    SimDuration::from_millis(100)
}

/// What a `relay_control` step asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayControlOp {
    Forward,
    Fence,
}

/// A relay device (seed 002): acknowledges a primary's RELAY RECORD once the whole
/// record is in its buffer or log, and forwards it to the record's destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySpec {
    /// Unique node name.
    pub name: String,
    /// Site it stands in.
    pub site: String,
    /// Number of ports, 1–256; default 1; each must be linked to a switch.
    #[serde(default = "default_one")]
    pub ports: u32,
    /// `volatile` (RAM, lost with the node; the default) or `non_volatile` (a log that
    /// survives a crash).
    #[serde(default)]
    pub durability: fcsim_devices::relaynode::DurabilitySetting,
    /// `store_and_forward` (the default) or `cut_through`.
    #[serde(default)]
    pub forwarding: fcsim_devices::relaynode::ForwardingSetting,
    /// When held records go downstream; default `{"mode": "immediate"}`.
    #[serde(default)]
    pub schedule: RelaySchedule,
    /// Buffer (or log) size; a record that does not fit is refused BUSY. Default 64 MiB.
    #[serde(default = "default_relay_capacity")]
    pub capacity_bytes: u64,
    /// A downstream RELAY RECORD unanswered this long is sent again. Default `100ms`.
    #[serde(default = "default_resend_after")]
    pub resend_after: SimDuration,
    /// Node WWN. Absent: derived (NAA 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<Wwnn>,
    /// One WWPN per port, in port order. Absent: derived (NAA 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_wwpns: Option<Vec<Wwpn>>,
}

/// When a relay forwards what it holds (seed 002 [0114]–[0117]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum RelaySchedule {
    /// At once.
    #[default]
    Immediate,
    /// Held in the log until a trigger fires (any one): downstream traffic at or below
    /// `traffic_at_most` bytes/s, a record older than `max_age`, or a clock time.
    /// Needs `"durability": "non_volatile"`.
    Deferred {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traffic_at_most: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_age: Option<SimDuration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<RelayClock>,
    },
    /// At once, but logged while downstream traffic is at or above `log_at_traffic`
    /// bytes/s. Needs `"durability": "non_volatile"`.
    Hybrid { log_at_traffic: u64 },
}

/// A deferred relay's clock trigger: everything held goes at `first`, then every
/// `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayClock {
    pub first: SimDuration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<SimDuration>,
}

impl RelaySpec {
    /// The relay node's settings.
    pub fn settings(&self) -> fcsim_devices::relaynode::RelaySettings {
        use fcsim_devices::relaynode::{RelaySettings, ScheduleSetting};
        RelaySettings {
            durability: self.durability,
            forwarding: self.forwarding,
            schedule: match self.schedule {
                RelaySchedule::Immediate => ScheduleSetting::Immediate,
                RelaySchedule::Deferred {
                    traffic_at_most,
                    max_age,
                    clock,
                } => ScheduleSetting::Deferred {
                    traffic_at_most,
                    max_age_us: max_age.map(SimDuration::as_micros),
                    clock_first_us: clock.map(|c| c.first.as_micros()),
                    clock_period_us: clock.and_then(|c| c.period).map(SimDuration::as_micros),
                },
                RelaySchedule::Hybrid { log_at_traffic } => {
                    ScheduleSetting::Hybrid { log_at_traffic }
                }
            },
            capacity_bytes: self.capacity_bytes,
            resend_after_us: self.resend_after.as_micros(),
        }
    }
}

/// A cable between two ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// One end.
    pub a: PortRef,
    /// The other end.
    pub b: PortRef,
    /// Cable length in km (≥ 0); one-way latency is `km × 5 µs`. Default 0.
    #[serde(default)]
    pub km: f64,
    /// Line rate in gigabit Fibre Channel: 1, 2, 4, 8, 16, 32 or 64. Default 32.
    #[serde(default = "default_gfc")]
    pub gfc: u32,
}

/// The allowed `gfc` rates.
pub const GFC_RATES: [u32; 7] = [1, 2, 4, 8, 16, 32, 64];

/// A zone: ports that may talk to each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    /// Unique zone name within its configuration.
    pub name: String,
    /// Member ports: end-node ports (WWPN zoning) or switch ports (domain,port zoning).
    pub members: Vec<PortRef>,
}

/// A port: `node/port`, e.g. `"h1/0"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRef {
    /// Node name.
    pub node: String,
    /// Port index on that node, from 0.
    pub port: u32,
}

impl PortRef {
    pub fn new(node: impl Into<String>, port: u32) -> Self {
        PortRef {
            node: node.into(),
            port,
        }
    }
}

/// Parses `<node>/<decimal port>`; the node part is non-empty.
fn split_ref(s: &str, sep: char) -> Option<(String, u32)> {
    let (node, num) = s.rsplit_once(sep)?;
    if node.is_empty() || num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((node.to_string(), num.parse().ok()?))
}

impl FromStr for PortRef {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split_ref(s, '/')
            .filter(|(node, _)| !node.contains('/'))
            .map(|(node, port)| PortRef { node, port })
            .ok_or_else(|| FormatError::BadPortRef {
                text: s.to_string(),
            })
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.port)
    }
}

/// A logical unit: `node:lun`, e.g. `"arr1:0"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LuRef {
    /// Array (or, for virtual LUs, switch) name.
    pub node: String,
    /// LUN on that node.
    pub lun: u32,
}

impl FromStr for LuRef {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split_ref(s, ':')
            .filter(|(node, _)| !node.contains(':'))
            .map(|(node, lun)| LuRef { node, lun })
            .ok_or_else(|| FormatError::BadLuRef {
                text: s.to_string(),
            })
    }
}

impl fmt::Display for LuRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.lun)
    }
}

macro_rules! string_serde {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
string_serde!(PortRef, "a port string `node/port` like \"h1/0\"");
string_serde!(LuRef, "an LU string `node:lun` like \"arr1:0\"");

/// A step of `setup` (no time) or, wrapped in [`TimedStep`], of the timeline.
/// Tagged by `"op"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Take a port's link down (both ends see loss of signal).
    LinkDown {
        /// Either end of the link.
        port: PortRef,
    },
    /// Bring a port's link back up.
    LinkUp {
        /// Either end of the link.
        port: PortRef,
    },
    /// A switch port with bit errors: it discards every `drop_every`-th frame it receives
    /// for forwarding (the frame fails its CRC), counted in its `crc_errors`; 0 clears.
    PortErrors {
        /// A switch port `switch/port`.
        port: PortRef,
        drop_every: u32,
    },
    /// Crash a node: volatile state is lost, durable state kept.
    Crash {
        /// Node name.
        node: String,
    },
    /// Restart a crashed node.
    Restart {
        /// Node name.
        node: String,
    },
    /// Destroy every node of a site or of a disaster zone; they never return.
    Disaster {
        /// A site name or a disaster-zone name.
        site: String,
    },
    /// Cut every link between two sites.
    Partition {
        /// One site.
        a: String,
        /// The other site.
        b: String,
    },
    /// Restore the links cut by `partition`.
    Heal {
        /// One site.
        a: String,
        /// The other site.
        b: String,
    },
    /// Activate a zone configuration fabric-wide, replacing the active one.
    ZoneActivate {
        /// Configuration name.
        cfg: String,
        /// Its zones.
        zones: Vec<ZoneSpec>,
    },
    /// Deactivate zoning fabric-wide (no active configuration: the default zone lets
    /// every port talk to every other, as Brocade's "all access").
    ZoneDeactivate {},
    /// A host writes `blocks` blocks at `lba` of an LU, every byte `byte` (one WRITE,
    /// recorded in the host's write history). The step fails unless it ends with GOOD.
    Write {
        /// Host that writes.
        host: String,
        /// The LU.
        target: LuRef,
        /// First block.
        lba: u64,
        /// Blocks written; default 1.
        #[serde(default = "one_block")]
        blocks: u32,
        /// The value of every byte.
        byte: u8,
    },
    /// A host sends EXTENDED COPY (LID1) to a copy manager (an array LU whose array
    /// advertises `xcopy`): block→block segments between array LUs, or block→stream
    /// segments to a tape (`tape:0`). The step fails unless the copy ends with GOOD.
    Xcopy {
        /// Host that sends the command.
        host: String,
        /// The LU the command is sent to; its array runs the copy.
        manager: LuRef,
        /// LIST IDENTIFIER (for RECEIVE COPY RESULTS); default 0.
        #[serde(default)]
        list_id: u8,
        /// What to copy, in order.
        segments: Vec<XcopySegment>,
        /// The outcome the step expects; default `good` (`check_condition` for a copy
        /// that must be refused, e.g. naming an LU masked from the host).
        #[serde(default = "expect_good")]
        expect: ExpectStatus,
    },
    /// A relay device control (seed 002): the standby's forward request or the
    /// takeover's fence, as an operator gives it through the relay's `Copy` service.
    RelayControl {
        /// Relay node name.
        relay: String,
        /// `forward`: release everything held now; `fence`: refuse later records of
        /// `sources` (RESERVATION CONFLICT) and drop what the relay holds of them.
        control: RelayControlOp,
        /// The sources to fence (`fence` only; at least one).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<u32>,
    },
    /// A tape drive fault: take the drive offline (NOT READY) or back online, and/or
    /// arm a write error that fails the next WRITE crossing `write_error_after_bytes`.
    TapeFault {
        /// Tape node name.
        tape: String,
        /// `true`: offline; `false`: back online.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offline: Option<bool>,
        /// Bytes from now after which a WRITE fails with MEDIUM ERROR.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        write_error_after_bytes: Option<u64>,
    },
    /// Mirror one virtual LU of an intelligent switch onto another (seed 003
    /// embodiment 3): the initial copy, delegated or not, then TB-driven update copy.
    MirrorStart {
        /// The source virtual LU, `switch:lun`.
        src: LuRef,
        /// The destination virtual LU on the same switch.
        dst: LuRef,
    },
    /// A licence or firmware change on an array: from now on it runs (and advertises)
    /// exactly these functions. Nothing tells the switches (a stale TF).
    ArrayFunctions {
        /// Array name.
        array: String,
        /// Its new functions.
        functions: Vec<ArrayFunction>,
    },
    /// Start a workload on a host against a device; it runs in the background while the
    /// timeline goes on. Its writes are recorded in the host's write history.
    Workload {
        /// Workload name, unique in the scenario; checks refer to it.
        name: String,
        /// Host that runs it.
        host: String,
        /// Device (an array LU `array:lun`, or a virtual LU `switch:lun`).
        target: LuRef,
        /// Access pattern; default random.
        #[serde(default)]
        pattern: WorkloadPattern,
        /// Reads, writes or both; default write.
        #[serde(default)]
        mix: WorkloadMix,
        /// Percentage of reads for `mix: mixed` (0-100); default 50.
        #[serde(default = "default_read_percent")]
        read_percent: u8,
        /// I/O size in bytes, a multiple of the LU's block size; default 4096.
        #[serde(default = "default_io_bytes")]
        block_bytes: u32,
        /// Queue depth (outstanding I/Os), at least 1; default 1.
        #[serde(default = "default_qd")]
        qd: u32,
        /// Stop after this many I/Os (exactly one of `count` and `duration`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        /// Stop issuing after this much time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<SimDuration>,
        /// Read back and compare every write after it is acknowledged.
        #[serde(default)]
        verify: bool,
        /// Seed of the I/O sequence; default derived from the scenario seed and the name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
    },
    /// Wait: a fixed time (`for`), or in `setup` only, until a condition holds (`until`).
    /// Exactly one of the two.
    Wait {
        /// How long to wait.
        #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
        for_duration: Option<SimDuration>,
        /// Condition to wait for (setup only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<WaitUntil>,
    },
    /// Create a copy pair at the primary's array (DESIGN.md §7): `local` (both LUs on
    /// one array), `sync` or `async` (another array's LU, reached through the fabric by
    /// the primary array's ports). The formation copy starts at once.
    PairCreate {
        /// Pair name, unique in the scenario.
        name: String,
        /// Primary volume.
        primary: LuRef,
        /// Secondary volume.
        secondary: LuRef,
        mode: PairModeSpec,
        /// Consistency group; default a group of its own named after the pair.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// Settings; see [`PairSettings`].
        #[serde(flatten)]
        settings: PairSettings,
        /// Async groups: journal capacity in bytes; default 64 MiB.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        journal_bytes: Option<u64>,
        /// Relay pairs (seed 002): relays, selection and the standby's settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relay: Option<RelaySettings>,
    },
    /// Split a pair (and its whole consistency group): acknowledged at once, the
    /// secondary `split_pending` until the split-time differences are copied. With
    /// `split_at`, the split happens at that timeline time.
    PairSplit {
        /// Pair or consistency group.
        pair: String,
        /// Timeline time at which the split happens; default now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        split_at: Option<SimDuration>,
    },
    /// Resynchronise a split or suspended pair (or group).
    PairResync {
        /// Pair or consistency group.
        pair: String,
    },
    /// Delete a pair (or group): both volumes become simplex.
    PairDelete {
        /// Pair or consistency group.
        pair: String,
    },
    /// Change a pair's settings.
    PairOptions {
        /// Pair or consistency group.
        pair: String,
        #[serde(flatten)]
        settings: PairSettings,
    },
    /// At the secondary's array: the pair's (or group's) secondary volumes become
    /// writable simplex volumes with the last complete prefix of the primary's writes.
    Takeover {
        /// Pair or consistency group.
        pair: String,
        /// The host that will use the secondary (informational; it must be zoned to it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// Seed 002, at the standby array of a relay group: drain the reachable relays (or
    /// wait the drain timeout), fence the old primary and the relays, and make the LUs
    /// writable simplex volumes resuming from the last restart point.
    RelayTakeover {
        /// The standby array.
        standby: String,
        /// The relay pair's consistency group (or the pair).
        group: String,
    },
    /// Seed 002 emb 7-9, at a relay pair's primary array: an application restart point
    /// carrying the application's state, sent in order with the writes.
    RestartPoint {
        /// Relay pair or group.
        pair: String,
        /// The application state shipped with it (UTF-8 text); default empty.
        #[serde(default)]
        app_state: String,
    },
    /// A fault: an array's copy-manager worker restarts. Running EXTENDED COPYs end in
    /// COPY ABORTED; copy pairs are kept.
    CopyManagerRestart {
        /// Array name.
        array: String,
    },
    /// Three sites (seed 000), at site 3 (the sync secondaries' array): clear the older
    /// difference table of every volume of sync group `group` at timeline time `at`.
    ClearDifference {
        /// The sync pairs' consistency group.
        group: String,
        /// The clear start time (the split time at site 1).
        clear_at: SimDuration,
        /// The step expects site 3 to refuse the clear (its time has passed there).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        refused: bool,
    },
    /// Three sites: one turn of site 1's host cycle (seed 000 §4.4, S911–S918): split
    /// the local group at `split_at` and clear the sync group's tables at the same time;
    /// wait until that time passed, the split completed and the clear completed (never
    /// past S915 otherwise); resync the remote group, wait for `pair`, split it; resync
    /// the local group. `stop_after` ends the step early at a phase, so that a
    /// following step (a `disaster`) falls in that window of seed 000 §7.4.
    ThreeDcCycle {
        /// The local pairs' group (P1 → S1v) at site 1.
        local: String,
        /// The remote pairs' group (S1v → V2).
        remote: String,
        /// The sync pairs' group (P1 → V3).
        sync: String,
        /// Timeline time of the split and of the clear.
        split_at: SimDuration,
        /// End the step after this phase; default: the whole cycle.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_after: Option<CyclePhase>,
    },
    /// Three sites, after a site-1 disaster (seed 000 §4.6): read the remote pairs'
    /// state and V2's image time at site 2, take V2 over there, then at site 3 create
    /// pairs V3 → V2 that copy only the blocks of the selected difference table.
    #[serde(rename = "failover_3dc")]
    Failover3dc {
        /// The sync pairs' group (P1 → V3): its volumes fail over together.
        sync: String,
        /// The remote pairs' group (S1v → V2).
        remote: String,
        /// The new pairs, one per volume of the sync group.
        pairs: Vec<FailoverPairSpec>,
        /// `safe` (default) or `literal` (the patent's rule).
        #[serde(default)]
        rule: SelectionRuleSpec,
        /// The new pairs' mode, `sync` (default) or `async`.
        #[serde(default = "sync_mode")]
        mode: PairModeSpec,
    },
    /// Seed 001, at the primary array: a protected recovery copy of a suspended remote
    /// pair (or of every pair of a group): the remote saves the old data (or holds the
    /// new) and rolls back if the copy does not complete within `allowed`.
    RecoverPair {
        /// Pair or consistency group; every pair suspended, secondaries on one array.
        pair: String,
        /// T, the most time the remote allows for the whole copy.
        allowed: SimDuration,
        /// `device` (default) or `group`.
        #[serde(default)]
        unit: RecoveryUnitSpec,
        /// Sessions tried in all after rollbacks; default 3.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_attempts: Option<u32>,
        /// n, pairs recovered at once; default computed from the remote's capacities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        concurrency: Option<u32>,
        /// Claim 3: send the updates oldest-first from the time-series queue the
        /// primary kept since the suspension; default false (address order).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ordered: bool,
    },
    /// Evaluate a check; a failed check fails the run.
    Check(Check),
}

/// A pair V3 → V2 of a `failover_3dc` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverPairSpec {
    /// The new pair's name.
    pub name: String,
    /// V3: a sync secondary at site 3.
    pub primary: LuRef,
    /// V2: the far site's volume.
    pub secondary: LuRef,
}

/// How site 3 chooses the difference table at failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionRuleSpec {
    /// The newest table whose base is at or before V2's image time (DESIGN.md §7).
    #[default]
    Safe,
    /// The patent's rule: the older table if the remote pair was resyncing, else the
    /// newer one (misses blocks in windows b and c).
    Literal,
}

/// Where a `three_dc_cycle` step may stop (the windows of seed 000 §7.4 item 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CyclePhase {
    /// S911/S912 issued, the split time not reached (window a).
    Requested,
    /// The split time passed (window b).
    TimePassed,
    /// Split and clear complete, remote pair still split (window c).
    SplitDone,
    /// Remote resync issued (window d).
    RemoteResync,
    /// Remote pair back to `pair` (window e).
    RemotePair,
    /// Remote pair split again: V2 holds the image at the split time (window f).
    RemoteSplit,
    /// Local resync issued (window g).
    LocalResync,
}

fn sync_mode() -> PairModeSpec {
    PairModeSpec::Sync
}

/// How a pair copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairModeSpec {
    Local,
    Sync,
    Async,
    /// Through relays to a standby (seed 002).
    Relay,
}

impl PairModeSpec {
    pub fn name(self) -> &'static str {
        match self {
            PairModeSpec::Local => "local",
            PairModeSpec::Sync => "sync",
            PairModeSpec::Async => "async",
            PairModeSpec::Relay => "relay",
        }
    }

    /// The array function the primary must run for this mode.
    pub fn function(self) -> ArrayFunction {
        match self {
            PairModeSpec::Local => ArrayFunction::LocalPair,
            PairModeSpec::Sync => ArrayFunction::RemoteSync,
            PairModeSpec::Async | PairModeSpec::Relay => ArrayFunction::RemoteAsync,
        }
    }
}

/// A relay pair's settings (seed 002).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// The relays, in selection order, each a node name (its port 0), a port
    /// `node/port`, or a target port WWPN (16 hex digits, colons allowed); empty
    /// (default): the records go straight to the standby's port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<String>,
    /// `round_robin` (default), `least_loaded`, `random`, `split_by_speed` or
    /// `duplicate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<RelaySelectionSpec>,
    /// The source (stream) identifier; default derived from the group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<u32>,
    /// How records land on the standby: `immediate` (default), `epochs` (emb 7) or
    /// `snapshots` (emb 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<RelayConsistencySpec>,
    /// The longest a takeover waits for the relays to drain; default 100ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<SimDuration>,
    /// Forward error correction on the direct hop to the standby (emb 5/6); no relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fec: Option<FecSpec>,
    /// With `fec`: 1 (default) or 2 networks (the redundant units through the
    /// standby's second port, Fig. 17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<u8>,
}

/// A FEC scheme: `{"data": N, "parity": m}`, `{"replica": "whole"}` or
/// `{"replica": "pieces", "pieces": N}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FecSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<u32>,
    /// `whole` or `pieces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pieces: Option<u32>,
}

impl FecSpec {
    /// The scheme, or what is wrong with it (naming the field under `fec`).
    pub fn scheme(&self) -> Result<fcsim_devices::copysvc::RelayFec, String> {
        use fcsim_devices::copysvc::RelayFec;
        let small =
            |f: &str, n: u32| u16::try_from(n).map_err(|_| format!("fec.{f}: {n} is too large"));
        let fec = match (self.replica.as_deref(), self.data, self.parity, self.pieces) {
            (None, Some(d), Some(p), None) => RelayFec::ErasureCode {
                data: small("data", d)?,
                parity: small("parity", p)?,
            },
            (None, _, _, _) => {
                return Err(
                    "fec: give `data` and `parity`, or `replica` (`whole`, or `pieces` with `pieces`)"
                        .into(),
                );
            }
            (Some("whole"), None, None, None) => RelayFec::WholeReplica,
            (Some("pieces"), None, None, Some(n)) => RelayFec::PieceReplica {
                pieces: small("pieces", n)?,
            },
            (Some("whole" | "pieces"), ..) => {
                return Err(
                    "fec.replica: `whole` takes no other field, `pieces` only `pieces`".into(),
                );
            }
            (Some(x), ..) => return Err(format!("fec.replica: `{x}` is not whole or pieces")),
        };
        fec.validate()?;
        Ok(fec)
    }
}

/// Relay selection (seed 002 emb 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelaySelectionSpec {
    RoundRobin,
    LeastLoaded,
    Random,
    SplitBySpeed,
    Duplicate,
}

/// How a relay standby applies records (seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayConsistencySpec {
    Immediate,
    Epochs,
    Snapshots,
}

/// Pair settings (seed 004 §7.3); absent fields keep the array's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSettings {
    /// Background copy rate, blocks per millisecond (default 1024); 0 stalls the copier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_rate: Option<u64>,
    /// Backup strategy for a backup of the secondary: `R`, `W`, `M` or `H` (default R).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<BackupStrategySpec>,
    /// `whole_range` (default) or `per_transfer_unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granularity: Option<GranularitySpec>,
    /// Embodiment 4: a backup of the unsplit secondary splits the pair and answers at
    /// once (RECEIVE COPY RESULTS reports the rest).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup_implies_split: bool,
    /// Sync pairs: fail host writes when the secondary cannot be written (fence level
    /// data) instead of suspending.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fence: bool,
}

/// Backup strategies of seed 004.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupStrategySpec {
    R,
    W,
    M,
    H,
}

/// When strategy R checks for differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GranularitySpec {
    WholeRange,
    PerTransferUnit,
}

impl Step {
    /// The `op` string of this step.
    pub fn op(&self) -> &'static str {
        match self {
            Step::LinkDown { .. } => "link_down",
            Step::LinkUp { .. } => "link_up",
            Step::PortErrors { .. } => "port_errors",
            Step::Crash { .. } => "crash",
            Step::Restart { .. } => "restart",
            Step::Disaster { .. } => "disaster",
            Step::Partition { .. } => "partition",
            Step::Heal { .. } => "heal",
            Step::ZoneActivate { .. } => "zone_activate",
            Step::ZoneDeactivate {} => "zone_deactivate",
            Step::Write { .. } => "write",
            Step::Workload { .. } => "workload",
            Step::Xcopy { .. } => "xcopy",
            Step::TapeFault { .. } => "tape_fault",
            Step::RelayControl { .. } => "relay_control",
            Step::MirrorStart { .. } => "mirror_start",
            Step::ArrayFunctions { .. } => "array_functions",
            Step::Wait { .. } => "wait",
            Step::PairCreate { .. } => "pair_create",
            Step::PairSplit { .. } => "pair_split",
            Step::PairResync { .. } => "pair_resync",
            Step::PairDelete { .. } => "pair_delete",
            Step::PairOptions { .. } => "pair_options",
            Step::Takeover { .. } => "takeover",
            Step::RelayTakeover { .. } => "relay_takeover",
            Step::RestartPoint { .. } => "restart_point",
            Step::CopyManagerRestart { .. } => "copy_manager_restart",
            Step::ClearDifference { .. } => "clear_difference",
            Step::ThreeDcCycle { .. } => "three_dc_cycle",
            Step::Failover3dc { .. } => "failover_3dc",
            Step::RecoverPair { .. } => "recover_pair",
            Step::Check(_) => "check",
        }
    }
}

fn one_block() -> u32 {
    1
}

/// One range of an `xcopy` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XcopySegment {
    /// Source array LU.
    pub src: LuRef,
    /// First source block.
    #[serde(default)]
    pub src_lba: u64,
    /// Destination: an array LU, or a tape (`tape1:0`), written at its current position.
    pub dst: LuRef,
    /// First destination block (block destinations only).
    #[serde(default)]
    pub dst_lba: u64,
    /// Source blocks to copy (at least 1).
    pub blocks: u64,
}

/// Workload access patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadPattern {
    Sequential,
    #[default]
    Random,
}

/// Workload read/write mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadMix {
    Read,
    #[default]
    Write,
    Mixed,
}

/// What a `read_returns` check expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectStatus {
    /// SCSI status GOOD.
    Good,
    /// SCSI status CHECK CONDITION (optionally with a given sense key).
    CheckCondition,
    /// No SCSI status at all: the host has no path, or the exchange timed out.
    TransportError,
}

fn expect_good() -> ExpectStatus {
    ExpectStatus::Good
}

fn default_read_percent() -> u8 {
    50
}

fn default_io_bytes() -> u32 {
    4096
}

fn default_qd() -> u32 {
    1
}

/// A condition for `{"op": "wait", "until": {...}}`, told apart by its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum WaitUntil {
    /// `{"fabric": "converged"}`.
    Fabric {
        /// The fabric state to reach.
        fabric: FabricState,
    },
    /// `{"pair": "p0", "state": "pair"}`: a copy pair reaches a state (as its primary
    /// array reports it).
    Pair {
        /// Pair name.
        pair: String,
        /// `copy`, `pair`, `split_pending`, `split`, `resync` or `suspended`.
        state: String,
    },
    /// `{"copy_results": {...}}`: RECEIVE COPY RESULTS reports the copy finished.
    CopyResults {
        /// Which copy.
        copy_results: CopyResultsSpec,
    },
    /// `{"recovery": "ps", "master": "completing"}` or `{"recovery": "ps", "remote":
    /// "started", "writes": 3}`: a protected recovery copy (seed 001) reaches a point of
    /// its protocol, as its master or its remote array sees it; places a fault there.
    Recovery(RecoveryPoint),
}

/// A point of a protected recovery copy, for `wait` (seed 001 §7.4 item 3). Every
/// field given must hold at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryPoint {
    /// The pair (or group) given to `recover_pair`.
    pub recovery: String,
    /// The master's phase: `configuring`, `starting`, `copying`, `completing` or `ended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The remote's session: `started` (its "recovery in progress" flag is on) or
    /// `ended` (seen open, then closed: completed or rolled back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// With `master`: it has at most this many tracks left to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks_left: Option<u64>,
    /// With `remote`: it has applied at least this many writes of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<u64>,
    /// At least this many reached reports: sent (with `master`) or received (`remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<u32>,
}

/// A copy known to a copy manager, for RECEIVE COPY RESULTS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyResultsSpec {
    /// Host that sent the EXTENDED COPY (and asks).
    pub host: String,
    /// The LU the EXTENDED COPY was sent to.
    pub manager: LuRef,
    /// Its LIST IDENTIFIER; default 0.
    #[serde(default)]
    pub list_id: u8,
}

/// Fabric states a `wait` can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FabricState {
    /// Every switch has its domain, routes agree, every linked end-node port is logged in
    /// and registered with the name server.
    Converged,
}

impl<'de> Deserialize<'de> for WaitUntil {
    /// Dispatches on the condition's key so that errors name the field, unlike
    /// `#[serde(untagged)]`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fabric {
            fabric: FabricState,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            pair: String,
            state: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Results {
            copy_results: CopyResultsSpec,
        }
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let value = serde_json::Value::Object(map.clone());
        if map.contains_key("fabric") {
            let f = Fabric::deserialize(value).map_err(D::Error::custom)?;
            return Ok(WaitUntil::Fabric { fabric: f.fabric });
        }
        if map.contains_key("pair") {
            let p = Pair::deserialize(value).map_err(D::Error::custom)?;
            return Ok(WaitUntil::Pair {
                pair: p.pair,
                state: p.state,
            });
        }
        if map.contains_key("recovery") {
            let r = RecoveryPoint::deserialize(value).map_err(D::Error::custom)?;
            return Ok(WaitUntil::Recovery(r));
        }
        if map.contains_key("copy_results") {
            let r = Results::deserialize(value).map_err(D::Error::custom)?;
            return Ok(WaitUntil::CopyResults {
                copy_results: r.copy_results,
            });
        }
        Err(D::Error::custom(format!(
            "unknown wait condition with keys {:?}: expected {{\"fabric\": \"converged\"}}, {{\"pair\": …, \"state\": …}}, {{\"copy_results\": …}} or {{\"recovery\": …}}",
            map.keys().collect::<Vec<_>>()
        )))
    }
}

/// A check, tagged by `"check"`. Evaluated at its step's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The host port's name-server view contains (or, with `expect: false`, does not
    /// contain) the target port.
    NsSees {
        /// The querying host port.
        host_port: PortRef,
        /// The port looked for.
        target_port: PortRef,
        /// Whether it should be visible; default true.
        #[serde(default = "yes")]
        expect: bool,
    },
    /// A PLOGI from `from` to `to` is not delivered and is counted as a zoning drop.
    ZoningDenied {
        /// Sending end-node port.
        from: PortRef,
        /// Addressed end-node port.
        to: PortRef,
    },
    /// The fabric's current route from one switch to another is exactly `path`.
    RoutePath {
        /// First switch.
        from: String,
        /// Last switch.
        to: String,
        /// Switch names along the route, both ends included.
        path: Vec<String>,
    },
    /// A switch port has discarded at least `at_least` frames for CRC errors (a
    /// `port_errors` fault).
    PortErrorsAtLeast {
        /// A switch port `switch/port`.
        port: PortRef,
        at_least: u64,
    },
    /// A switch has dropped at least `at_least` frames for zoning (on one port, or on all).
    FramesDropped {
        /// Switch name.
        switch: String,
        /// Port index; absent means the sum over all ports.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u32>,
        /// Minimum count of zoning drops.
        at_least: u64,
    },
    /// An end-node port has carried at most `at_most` bytes (in plus out) since it came
    /// up: a server-free backup moves its data without the backup server's port.
    PortBytesAtMost {
        /// End-node port.
        port: PortRef,
        /// Largest acceptable byte count.
        at_most: u64,
    },
    /// A relay's state (seed 002): every field given must equal the relay's.
    RelayState {
        /// Relay node name.
        relay: String,
        /// Records held (acknowledged upstream, not yet by the standby).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held_records: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held_bytes: Option<u64>,
        /// Records acknowledged upstream since the node started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acked: Option<u64>,
        /// Records acknowledged by the standby since the node started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forwarded: Option<u64>,
        /// Records refused BUSY since the node started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        busy: Option<u64>,
        /// Records refused RESERVATION CONFLICT (fenced source) since the node started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<u64>,
        /// Records dropped (refused by the standby or by a fence).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dropped: Option<u64>,
        /// Fenced sources, in order.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fenced: Option<Vec<u32>>,
    },
    /// An end-node port has received at least `at_least` RSCNs (default 1).
    RscnSeen {
        /// End-node port.
        port: PortRef,
        /// Minimum RSCN count.
        #[serde(default = "default_at_least_one")]
        at_least: u64,
    },
    /// An end-node port is logged in to the fabric (has an FC_ID).
    LoggedIn {
        /// End-node port.
        port: PortRef,
    },
    /// Every write the workload had acknowledged is on `volume` (the workload's target,
    /// or a copy of it): each block holds the last acknowledged value or a value written
    /// concurrently. Waits for the workload to finish first.
    NoAckedWriteLost {
        /// Workload name.
        workload: String,
        /// The LU to inspect.
        volume: LuRef,
    },
    /// Two LUs hold the same data, block for block.
    VolumesEqual {
        /// One LU.
        a: LuRef,
        /// The other.
        b: LuRef,
        /// Expect them to differ instead (the detail lists where).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        differ: bool,
    },
    /// The LU's blocks from `lba` hold whole blocks of the given byte values, one per
    /// block, on the array's medium.
    BlocksHold {
        /// The LU (an array LU, or a virtual LU read through its extents).
        volume: LuRef,
        /// First block.
        lba: u64,
        /// The byte value every byte of each block holds.
        bytes: Vec<u8>,
    },
    /// LUN masking hides the LU from the host: it is not among the host's devices.
    Masked {
        /// Host name.
        host: String,
        /// The LU.
        target: LuRef,
    },
    /// A READ from a host returns the expected status.
    ReadReturns {
        /// Host name.
        host: String,
        /// The LU.
        target: LuRef,
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// Expected outcome.
        status: ExpectStatus,
        /// Expected sense key with `check_condition`, e.g. "ILLEGAL REQUEST".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sense_key: Option<String>,
    },
    /// The data on a tape is exactly blocks `lba .. lba + blocks` of an array LU (a
    /// backup image check).
    TapeMatches {
        /// Tape node name.
        tape: String,
        /// The source LU.
        volume: LuRef,
        /// First block of the source range; default 0.
        #[serde(default)]
        lba: u64,
        /// Number of blocks.
        blocks: u64,
    },
    /// An intelligent switch's operation `op` (1 = the first it started) was run by
    /// exactly `executors`, in order (`switch`, `array:<name>`), and ended in `state`.
    Operation {
        /// Intelligent switch.
        switch: String,
        /// Operation number.
        operation: u64,
        /// Expected executors, in order.
        executors: Vec<String>,
        /// Expected state; default `done`.
        #[serde(default = "default_op_state")]
        state: String,
        /// Most data bytes of the operation that may have crossed the switch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        switch_bytes_at_most: Option<u64>,
        /// Fewest data bytes of the operation that must have crossed the switch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        switch_bytes_at_least: Option<u64>,
    },
    /// An intelligent switch's TF says `array` can (or cannot) run `function`.
    FunctionTable {
        /// Intelligent switch.
        switch: String,
        /// Array (TF device ID).
        array: String,
        /// `direct-backup`, `volume-copy` or `mirroring`.
        function: fcsim_switch::tf::SupportFunction,
        /// Expected cell.
        can: bool,
        /// Expected provenance (`discovered`, `rejected`, `manual`), if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provenance: Option<String>,
    },
    /// Commands an intelligent switch sent to arrays for a virtual LU's host I/O are at
    /// most `at_most` (0: the LU's I/O never left the switch).
    BackendCommands {
        /// The virtual LU, `switch:lun`.
        lu: LuRef,
        /// Largest acceptable count.
        at_most: u64,
    },
    /// The standby of a relay group on `array` (seed 002): at least `min_applied`
    /// records applied, the restart point it resumed from (after `relay_takeover`), and
    /// whether the old primary is fenced.
    RelayStandby {
        /// The standby array.
        array: String,
        /// The relay pair's consistency group.
        group: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_applied: Option<u64>,
        /// The restart point number the standby resumed from (0: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumed_point: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fenced: Option<bool>,
    },
    /// A copy pair is in `state` (as its primary array reports it), with at most
    /// `diff_blocks_at_most` blocks still to copy.
    PairState {
        /// Pair name.
        pair: String,
        /// Expected state.
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diff_blocks_at_most: Option<u64>,
        /// Who must run the pair: `array:NAME` or `switch` (virtual LUs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        executor: Option<String>,
    },
    /// The tape holds exactly the primary's image at the pair's split (seed 004 INV-1):
    /// block by block, the last write to the primary acknowledged before the split, or
    /// one in flight across it; never a write issued after the split was acknowledged.
    BackupEqualsSplitImage {
        /// Tape node.
        tape: String,
        /// The pair whose split the backup captured.
        pair: String,
        /// The workload writing the primary.
        workload: String,
        /// First block of the backed-up range; default 0.
        #[serde(default)]
        lba: u64,
        /// Blocks backed up.
        blocks: u64,
    },
    /// The pair's secondary holds exactly the primary's image at the split (INV-4,
    /// INV-5): checked once the pair is `split`.
    SecondaryEqualsSplitImage {
        /// The pair.
        pair: String,
        /// The workload writing the primary.
        workload: String,
    },
    /// The volume holds the workload's writes up to some instant and nothing after it:
    /// a prefix of the primary's write order (async remote copy).
    PrefixConsistent {
        /// Workload name.
        workload: String,
        /// The volume (a secondary).
        volume: LuRef,
        /// Whether it must be a prefix; `false`: the volume must mix writes out of
        /// order (a counter-example). Default true.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        expect: bool,
    },
    /// Seed 001: how the last recovery copy of `pair` ended, as its primary array (the
    /// master) or its secondary array (the remote) reports it. Waits until it ended.
    RecoveryOutcome {
        /// The pair (or group) given to `recover_pair`.
        pair: String,
        /// `completed` or `rolled_back` (master also: `refused`; remote also: `none`, no
        /// session was ever opened there).
        outcome: String,
        /// `master` (default) or `remote`: who reports. A remote rolled back by its
        /// watchdog after the master died can only be asked there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        side: Option<String>,
        /// The rollback cause: `timeout` or `save_area_exhausted`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
        /// Remote only: at least this many tracks were saved on parity/spare tracks
        /// at once (the save area spilled out of the cache).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        row_tracks_at_least: Option<u64>,
        /// Remote only: exactly these LUNs were rolled back (ascending); a unit whose
        /// every pair reached is kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rolled_back: Option<Vec<u32>>,
        /// Master only: it sent at least this many requests again because their answer
        /// was overdue (a message or its answer was lost).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resent_at_least: Option<u64>,
    },
    /// At most `writes` acknowledged writes of the workload are missing from the volume
    /// (the recovery point); the detail gives the lost writes, bytes and time window.
    RpoAtMost {
        /// Workload name.
        workload: String,
        /// The volume (a secondary after takeover).
        volume: LuRef,
        /// Largest acceptable number of lost acknowledged writes.
        writes: u64,
        /// At least this many acknowledged writes are missing: the loss a scenario
        /// demonstrates (e.g. a volatile relay's crash); default 0.
        #[serde(default)]
        lost_at_least: u64,
    },
    /// RECEIVE COPY RESULTS for a copy: `completed` (good), `failed` (completed with
    /// error) or `in_progress`.
    CopyResults {
        /// Host that sent the EXTENDED COPY.
        host: String,
        /// The LU it was sent to.
        manager: LuRef,
        /// Its LIST IDENTIFIER; default 0.
        #[serde(default)]
        list_id: u8,
        /// Expected status.
        status: String,
    },
    /// Three sites: the failover pairs of sync group `sync` (at site 3) copied between
    /// `blocks_at_least` and `blocks_at_most` blocks in all, and (default) fewer than a
    /// full copy of the group's volumes.
    FailoverCopied {
        /// The sync group that failed over.
        sync: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blocks_at_least: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blocks_at_most: Option<u64>,
        /// Require fewer blocks than a full copy; default true.
        #[serde(default = "yes")]
        below_full: bool,
    },
    /// The workload saw at most `at_most` failed I/Os (default 0). Waits for it to finish.
    WorkloadErrors {
        /// Workload name.
        workload: String,
        /// Largest acceptable number of failed I/Os and verify mismatches.
        #[serde(default)]
        at_most: u64,
        /// The workload's median latency (fabric time) is at most this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p50_at_most: Option<SimDuration>,
        /// The workload's median latency is below that of this other workload (the
        /// cheaper path, side by side in one run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p50_below: Option<String>,
    },
}

impl Check {
    /// The `check` string of this check.
    pub fn name(&self) -> &'static str {
        match self {
            Check::NsSees { .. } => "ns_sees",
            Check::ZoningDenied { .. } => "zoning_denied",
            Check::RoutePath { .. } => "route_path",
            Check::FramesDropped { .. } => "frames_dropped",
            Check::PortErrorsAtLeast { .. } => "port_errors_at_least",
            Check::RscnSeen { .. } => "rscn_seen",
            Check::RelayState { .. } => "relay_state",
            Check::PortBytesAtMost { .. } => "port_bytes_at_most",
            Check::LoggedIn { .. } => "logged_in",
            Check::NoAckedWriteLost { .. } => "no_acked_write_lost",
            Check::VolumesEqual { .. } => "volumes_equal",
            Check::BlocksHold { .. } => "blocks_hold",
            Check::Masked { .. } => "masked",
            Check::ReadReturns { .. } => "read_returns",
            Check::WorkloadErrors { .. } => "workload_errors",
            Check::PairState { .. } => "pair_state",
            Check::RelayStandby { .. } => "relay_standby",
            Check::BackupEqualsSplitImage { .. } => "backup_equals_split_image",
            Check::SecondaryEqualsSplitImage { .. } => "secondary_equals_split_image",
            Check::PrefixConsistent { .. } => "prefix_consistent",
            Check::RecoveryOutcome { .. } => "recovery_outcome",
            Check::RpoAtMost { .. } => "rpo_at_most",
            Check::CopyResults { .. } => "copy_results",
            Check::FailoverCopied { .. } => "failover_copied",
            Check::TapeMatches { .. } => "tape_matches",
            Check::Operation { .. } => "operation",
            Check::FunctionTable { .. } => "function_table",
            Check::BackendCommands { .. } => "backend_commands",
        }
    }
}

fn default_op_state() -> String {
    "done".to_string()
}

/// A timeline step: `{"at": "10ms", "op": ..., ...}`.
///
/// Deserialized by hand: `at` is taken out and the rest must be a valid [`Step`]
/// (serde's `flatten` would silently allow unknown fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimedStep {
    /// When the step fires, from the end of `setup`.
    pub at: SimDuration,
    /// What it does.
    #[serde(flatten)]
    pub step: Step,
}

impl<'de> Deserialize<'de> for TimedStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let at = map
            .remove("at")
            .ok_or_else(|| D::Error::missing_field("at"))?;
        let at = SimDuration::deserialize(at).map_err(|e| D::Error::custom(format!("at: {e}")))?;
        let step = Step::deserialize(serde_json::Value::Object(map)).map_err(D::Error::custom)?;
        Ok(TimedStep { at, step })
    }
}

/// Kinds of node, in the order their lists appear in [`Topology`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    Switch,
    Array,
    Host,
    Tape,
    Relay,
}

impl NodeKind {
    /// The word used in messages and in the topology's list names (`switch`, `array`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Switch => "switch",
            NodeKind::Array => "array",
            NodeKind::Host => "host",
            NodeKind::Tape => "tape",
            NodeKind::Relay => "relay",
        }
    }

    /// Whether this is an end node (N_Port owner) rather than a switch.
    pub fn is_end_node(self) -> bool {
        self != NodeKind::Switch
    }
}

/// A node of any kind, as seen through [`Topology::node`].
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// Which list it comes from.
    pub kind: NodeKind,
    /// Index in that list (file order).
    pub index: usize,
    /// Node name.
    pub name: &'a str,
    /// Site name.
    pub site: &'a str,
    /// Number of ports.
    pub ports: u32,
    /// Node WWN (always `Some` after validation).
    pub wwn: Option<Wwnn>,
    /// Port WWPNs of an end node (always `Some` after validation); `None` for switches.
    pub port_wwpns: Option<&'a [Wwpn]>,
}

impl Topology {
    /// Every node, switches first, then arrays, hosts, tapes, relays, each in file order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeView<'_>> {
        let sw = self.switches.iter().enumerate().map(|(index, s)| NodeView {
            kind: NodeKind::Switch,
            index,
            name: &s.name,
            site: &s.site,
            ports: s.ports,
            wwn: s.wwn,
            port_wwpns: None,
        });
        let ar = self.arrays.iter().enumerate().map(|(index, n)| NodeView {
            kind: NodeKind::Array,
            index,
            name: &n.name,
            site: &n.site,
            ports: n.ports,
            wwn: n.wwn,
            port_wwpns: n.port_wwpns.as_deref(),
        });
        let ho = self.hosts.iter().enumerate().map(|(index, n)| NodeView {
            kind: NodeKind::Host,
            index,
            name: &n.name,
            site: &n.site,
            ports: n.ports,
            wwn: n.wwn,
            port_wwpns: n.port_wwpns.as_deref(),
        });
        let ta = self.tapes.iter().enumerate().map(|(index, n)| NodeView {
            kind: NodeKind::Tape,
            index,
            name: &n.name,
            site: &n.site,
            ports: n.ports,
            wwn: n.wwn,
            port_wwpns: n.port_wwpns.as_deref(),
        });
        let re = self.relays.iter().enumerate().map(|(index, n)| NodeView {
            kind: NodeKind::Relay,
            index,
            name: &n.name,
            site: &n.site,
            ports: n.ports,
            wwn: n.wwn,
            port_wwpns: n.port_wwpns.as_deref(),
        });
        sw.chain(ar).chain(ho).chain(ta).chain(re)
    }

    /// The virtual LU `switch:lun`, if `r` names one.
    pub fn virtual_lu(&self, r: &LuRef) -> Option<&VirtualLuSpec> {
        self.virtual_lus
            .iter()
            .find(|v| v.switch == r.node && v.lun == r.lun)
    }

    /// The block size of a virtual LU: its first external extent's LU's, else the one
    /// given, else 512.
    pub fn virtual_block_bytes(&self, v: &VirtualLuSpec) -> u32 {
        v.extents
            .iter()
            .filter_map(|e| e.lu.as_ref())
            .find_map(|r| self.array_lu(r).map(|l| l.block_bytes))
            .or(v.block_bytes)
            .unwrap_or(512)
    }

    /// The array LU `array:lun`, if `r` names one.
    pub fn array_lu(&self, r: &LuRef) -> Option<&LuSpec> {
        self.arrays
            .iter()
            .find(|a| a.name == r.node)?
            .lus
            .iter()
            .find(|l| l.lun == r.lun)
    }

    /// The block size of an array LU or a virtual LU.
    pub fn lu_block_bytes(&self, r: &LuRef) -> Option<u32> {
        match self.virtual_lu(r) {
            Some(v) => Some(self.virtual_block_bytes(v)),
            None => self.array_lu(r).map(|l| l.block_bytes),
        }
    }

    /// The engine settings of an intelligent switch (defaults when not given).
    pub fn virtualization(&self, switch: &str) -> Option<VirtualizationSpec> {
        let s = self
            .switches
            .iter()
            .find(|s| s.name == switch && s.intelligent)?;
        Some(s.virtualization.clone().unwrap_or_default())
    }

    /// The node called `name` (the first one, if a broken file repeats it).
    pub fn node(&self, name: &str) -> Option<NodeView<'_>> {
        self.nodes().find(|n| n.name == name)
    }

    /// The switch's domain ID (`Some` for every switch after validation).
    pub fn switch_domain(&self, switch: &str) -> Option<DomainId> {
        let s = self.switches.iter().find(|s| s.name == switch)?;
        s.domain.and_then(|d| DomainId::new(d).ok())
    }

    /// The node's WWNN (switch WWN for a switch).
    pub fn node_wwnn(&self, node: &str) -> Option<Wwnn> {
        self.node(node)?.wwn
    }

    /// The WWPN of any port, switch ports included (switch port WWPNs are always
    /// derived: `20:pp:00:05:1e:xx:xx:xx`).
    pub fn port_wwpn(&self, port: &PortRef) -> Option<Wwpn> {
        let n = self.node(&port.node)?;
        if port.port >= n.ports {
            return None;
        }
        match n.kind {
            NodeKind::Switch => Some(crate::derived::switch_port_wwpn(n.index, port.port)),
            _ => n.port_wwpns?.get(usize::try_from(port.port).ok()?).copied(),
        }
    }

    /// The site called `name`.
    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// Sites destroyed by `disaster {site: name}`: the site itself if `name` is a site,
    /// else every site whose disaster zone is `name`.
    pub fn disaster_sites(&self, name: &str) -> Vec<&str> {
        if let Some(s) = self.site(name) {
            return vec![&s.name];
        }
        self.sites
            .iter()
            .filter(|s| s.disaster_zone() == name)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// The link attached to `port`, if any.
    pub fn link_at(&self, port: &PortRef) -> Option<&LinkSpec> {
        self.links.iter().find(|l| l.a == *port || l.b == *port)
    }
}
