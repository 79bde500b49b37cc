//! Text → checked [`Scenario`]: JSON syntax and type errors from serde_json, then every
//! semantic problem at once, each pointing at the line:column of the offending value.
//!
//! Start at [`parse`]. The rules are listed in `docs/scenario-format.md` ("Validation").
//! On success every derived value is filled in ([`crate::derived`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use fcsim_fabric::DomainId;

use crate::derived;
use crate::format::{
    ArrayFunction, Check, ExpectStatus, GFC_RATES, LuRef, LuSpec, NodeKind, NodeView, PairModeSpec,
    PortRef, Scenario, Step, WaitUntil, ZoneSpec,
};
use crate::locate::{Locator, Position};

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Line, from 1; 0 when the problem concerns the whole file (e.g. unreadable).
    pub line: usize,
    /// Column in characters, from 1; 0 with `line` 0.
    pub column: usize,
    /// What is wrong, naming the value.
    pub message: String,
}

/// Every problem found in one file, sorted by position. Prints one per line as
/// `path:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// The file path as given by the caller, used as the prefix of each line.
    pub path: String,
    /// The problems, at least one, in line:column order.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// A single whole-file problem (no position).
    pub fn whole_file(path: &str, message: impl Into<String>) -> Self {
        Diagnostics {
            path: path.to_string(),
            items: vec![Diagnostic {
                line: 0,
                column: 0,
                message: message.into(),
            }],
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if d.line == 0 {
                write!(f, "{}: {}", self.path, d.message)?;
            } else {
                write!(f, "{}:{}:{}: {}", self.path, d.line, d.column, d.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Parses and validates a scenario. `path` only labels the diagnostics.
///
/// Returns the scenario with every absent domain ID and WWN derived, or every problem
/// found: a syntax or type error stops at the first one (serde_json), semantic checks
/// report all.
pub fn parse(source: &str, path: &str) -> Result<Scenario, Diagnostics> {
    let locator = Locator::new(source);
    let mut scenario: Scenario = serde_json::from_str(source).map_err(|e| {
        let text = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = text.strip_suffix(&suffix).unwrap_or(&text).to_string();
        let Position { line, column } = match e.classify() {
            _ if e.line() == 0 => Position { line: 0, column: 0 },
            serde_json::error::Category::Data => locator.from_serde(e.line(), e.column()),
            _ => locator.position_of_serde(e.line(), e.column()),
        };
        Diagnostics {
            path: path.to_string(),
            items: vec![Diagnostic {
                line,
                column,
                message,
            }],
        }
    })?;
    let mut items = Validator::new(&scenario, &locator).run();
    if !items.is_empty() {
        items.sort_by_key(|d| (d.line, d.column));
        return Err(Diagnostics {
            path: path.to_string(),
            items,
        });
    }
    derived::fill(&mut scenario.topology);
    Ok(scenario)
}

fn list_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Switch => "switches",
        NodeKind::Array => "arrays",
        NodeKind::Host => "hosts",
        NodeKind::Tape => "tapes",
        NodeKind::Relay => "relays",
    }
}

fn node_ptr(n: &NodeView<'_>) -> String {
    format!("/topology/{}/{}", list_name(n.kind), n.index)
}

/// The SPC sense-key names a `read_returns` check may expect (SPC-5 §4.4.8, table 51;
/// VENDOR SPECIFIC and the reserved keys left out).
pub const SENSE_KEYS: [&str; 13] = [
    "NO SENSE",
    "RECOVERED ERROR",
    "NOT READY",
    "MEDIUM ERROR",
    "HARDWARE ERROR",
    "ILLEGAL REQUEST",
    "UNIT ATTENTION",
    "DATA PROTECT",
    "BLANK CHECK",
    "COPY ABORTED",
    "ABORTED COMMAND",
    "VOLUME OVERFLOW",
    "MISCOMPARE",
];

/// Capacity and block size of an LU, array or virtual.
#[derive(Debug, Clone, Copy)]
struct LuGeometry {
    blocks: u64,
    block_bytes: u32,
}

/// The first port of an intelligent switch that belongs to its engine.
pub(crate) fn engine_first_port(t: &crate::format::Topology, switch: &str) -> Option<u32> {
    let sw = t.switches.iter().find(|s| s.name == switch)?;
    let v = t.virtualization(switch)?;
    Some(sw.ports.saturating_sub(v.ports))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

struct Validator<'a> {
    s: &'a Scenario,
    loc: &'a Locator<'a>,
    diags: Vec<Diagnostic>,
    /// First node of each name.
    nodes: BTreeMap<&'a str, NodeView<'a>>,
    sites: BTreeSet<&'a str>,
    disaster_zones: BTreeSet<&'a str>,
    /// Which link (index) uses each port.
    port_link: HashMap<(&'a str, u32), usize>,
    /// Switch pairs joined by at least one ISL (smaller name first).
    isls: BTreeSet<(&'a str, &'a str)>,
    /// Every workload name in the file (setup and steps).
    all_workloads: BTreeSet<&'a str>,
    /// Workloads started by the steps validated so far, with the pointer of their step.
    workloads: BTreeMap<&'a str, String>,
    /// Copy pairs created by the steps validated so far, and their groups.
    pairs: BTreeMap<&'a str, String>,
}

impl<'a> Validator<'a> {
    fn new(s: &'a Scenario, loc: &'a Locator<'a>) -> Self {
        Validator {
            s,
            loc,
            diags: Vec::new(),
            nodes: BTreeMap::new(),
            sites: BTreeSet::new(),
            disaster_zones: BTreeSet::new(),
            port_link: HashMap::new(),
            isls: BTreeSet::new(),
            all_workloads: BTreeSet::new(),
            workloads: BTreeMap::new(),
            pairs: BTreeMap::new(),
        }
    }

    fn err(&mut self, pointer: &str, message: impl Into<String>) {
        let Position { line, column } = self.loc.position(pointer);
        self.diags.push(Diagnostic {
            line,
            column,
            message: message.into(),
        });
    }

    fn run(mut self) -> Vec<Diagnostic> {
        if self.s.tick.as_nanos() == 0 {
            self.err("/tick", "tick must be longer than 0");
        }
        self.sites();
        self.nodes();
        self.wwns();
        self.links();
        self.virtualization();
        let t = &self.s.topology;
        if t.zone_cfg.is_empty() {
            self.err("/topology/zone_cfg", "zone_cfg must not be empty");
        }
        self.zones("/topology/zones", &t.zones);
        let all_steps = self
            .s
            .setup
            .iter()
            .chain(self.s.steps.iter().map(|t| &t.step));
        for step in all_steps {
            if let Step::Workload { name, .. } = step {
                self.all_workloads.insert(name);
            }
        }
        for (i, step) in self.s.setup.iter().enumerate() {
            self.step(&format!("/setup/{i}"), step, true);
        }
        let mut prev = None;
        for (i, ts) in self.s.steps.iter().enumerate() {
            let ptr = format!("/steps/{i}");
            if let Some(p) = prev
                && ts.at < p
            {
                self.err(
                    &format!("{ptr}/at"),
                    format!("step at \"{}\" comes before the previous step's \"{p}\"; steps must be in time order", ts.at),
                );
            }
            prev = Some(ts.at);
            self.step(&ptr, &ts.step, false);
        }
        self.diags
    }

    fn sites(&mut self) {
        let sites = &self.s.topology.sites;
        for (i, site) in sites.iter().enumerate() {
            let ptr = format!("/topology/sites/{i}");
            if !valid_name(&site.name) {
                self.err(
                    &format!("{ptr}/name"),
                    format!(
                        "site name \"{}\": must be non-empty, without '/', ':' or spaces",
                        site.name
                    ),
                );
            }
            if !self.sites.insert(&site.name) {
                self.err(
                    &format!("{ptr}/name"),
                    format!("duplicate site name \"{}\"", site.name),
                );
            }
            if let Some(zone) = &site.zone
                && zone != &site.name
                && sites.iter().any(|o| &o.name == zone)
            {
                self.err(
                    &format!("{ptr}/zone"),
                    format!("disaster zone \"{zone}\" is also the name of another site; a disaster on it would be ambiguous"),
                );
            }
            self.disaster_zones.insert(site.disaster_zone());
        }
    }

    fn nodes(&mut self) {
        let t = &self.s.topology;
        if t.switches.len() > 239 {
            self.err(
                "/topology/switches",
                format!(
                    "{} switches: a fabric has at most 239 domains",
                    t.switches.len()
                ),
            );
        }
        for n in t.nodes() {
            let ptr = node_ptr(&n);
            if !valid_name(n.name) {
                self.err(
                    &format!("{ptr}/name"),
                    format!(
                        "node name \"{}\": must be non-empty, without '/', ':' or spaces",
                        n.name
                    ),
                );
            }
            if let Some(first) = self.nodes.get(n.name) {
                let msg = format!(
                    "duplicate node name \"{}\" (already used by {} {})",
                    n.name,
                    first.kind.as_str(),
                    first.index
                );
                self.err(&format!("{ptr}/name"), msg);
            } else {
                self.nodes.insert(n.name, n);
            }
            if !self.sites.contains(n.site) {
                self.err(
                    &format!("{ptr}/site"),
                    format!(
                        "{} \"{}\": no site named \"{}\"",
                        n.kind.as_str(),
                        n.name,
                        n.site
                    ),
                );
            }
            if !(1..=256).contains(&n.ports) {
                self.err(
                    &format!("{ptr}/ports"),
                    format!(
                        "{} \"{}\": ports must be 1–256, got {}",
                        n.kind.as_str(),
                        n.name,
                        n.ports
                    ),
                );
            }
            if let Some(w) = n.port_wwpns
                && w.len() != usize::try_from(n.ports).unwrap_or(usize::MAX)
            {
                self.err(
                    &format!("{ptr}/port_wwpns"),
                    format!(
                        "{} \"{}\": {} port_wwpns for {} ports; give one per port",
                        n.kind.as_str(),
                        n.name,
                        w.len(),
                        n.ports
                    ),
                );
            }
        }
        let mut domains: BTreeMap<u32, &str> = BTreeMap::new();
        for (i, sw) in t.switches.iter().enumerate() {
            let Some(d) = sw.domain else { continue };
            let ptr = format!("/topology/switches/{i}/domain");
            if let Err(e) = DomainId::new(d) {
                self.err(&ptr, format!("switch \"{}\": {e}", sw.name));
            } else if let Some(other) = domains.get(&d) {
                self.err(
                    &ptr,
                    format!(
                        "switch \"{}\": domain {d} is already used by switch \"{other}\"",
                        sw.name
                    ),
                );
            } else {
                domains.insert(d, &sw.name);
            }
        }
        for (i, a) in t.arrays.iter().enumerate() {
            let ptr = format!("/topology/arrays/{i}");
            if a.clock_skew_us.unsigned_abs() > 1_000_000 {
                self.err(
                    &format!("{ptr}/clock_skew_us"),
                    format!(
                        "array \"{}\": clock_skew_us {} is beyond ±1 s (1000000)",
                        a.name, a.clock_skew_us
                    ),
                );
            }
            if let Some(r) = &a.recovery {
                let rp = format!("{ptr}/recovery");
                if r.logical_devices == 0 || r.disks == 0 {
                    self.err(
                        &rp,
                        format!(
                            "array \"{}\": recovery needs at least 1 logical device and 1 disk",
                            a.name
                        ),
                    );
                }
                if r.cache_threshold_tracks.is_some_and(|t| t > r.cache_tracks) {
                    self.err(
                        &format!("{rp}/cache_threshold_tracks"),
                        format!(
                            "array \"{}\": cache_threshold_tracks is above cache_tracks {}",
                            a.name, r.cache_tracks
                        ),
                    );
                }
            }
            let mut seen: BTreeSet<ArrayFunction> = BTreeSet::new();
            for (j, f) in a.functions.iter().enumerate() {
                if !seen.insert(*f) {
                    let name = serde_json::to_string(f).unwrap_or_default();
                    self.err(
                        &format!("{ptr}/functions/{j}"),
                        format!("array \"{}\": function {name} listed twice", a.name),
                    );
                }
            }
            let mut luns: BTreeSet<u32> = BTreeSet::new();
            for (j, lu) in a.lus.iter().enumerate() {
                let lptr = format!("{ptr}/lus/{j}");
                if !luns.insert(lu.lun) {
                    self.err(
                        &format!("{lptr}/lun"),
                        format!("array \"{}\": LUN {} defined twice", a.name, lu.lun),
                    );
                }
                if lu.blocks == 0 {
                    self.err(
                        &format!("{lptr}/blocks"),
                        format!("LU \"{}:{}\": blocks must be at least 1", a.name, lu.lun),
                    );
                }
                if lu.block_bytes != 512 && lu.block_bytes != 4096 {
                    self.err(
                        &format!("{lptr}/block_bytes"),
                        format!(
                            "LU \"{}:{}\": block_bytes must be 512 or 4096, got {}",
                            a.name, lu.lun, lu.block_bytes
                        ),
                    );
                }
                self.lu_hosts(&lptr, &a.name, lu);
            }
        }
        for (i, r) in t.relays.iter().enumerate() {
            self.relay_settings(i, r);
        }
        for (i, tape) in t.tapes.iter().enumerate() {
            if tape.capacity_bytes == Some(0) {
                self.err(
                    &format!("/topology/tapes/{i}/capacity_bytes"),
                    format!("tape \"{}\": capacity_bytes must be at least 1", tape.name),
                );
            }
        }
    }

    /// A relay's settings: the combinations its core refuses, each at its field.
    fn relay_settings(&mut self, i: usize, r: &crate::format::RelaySpec) {
        use crate::format::RelaySchedule;
        use fcsim_devices::relay::RelayError;
        let ptr = format!("/topology/relays/{i}");
        if r.capacity_bytes == 0 {
            self.err(
                &format!("{ptr}/capacity_bytes"),
                format!("relay \"{}\": capacity_bytes must be at least 1", r.name),
            );
        }
        if r.resend_after.as_nanos() == 0 {
            self.err(
                &format!("{ptr}/resend_after"),
                format!("relay \"{}\": resend_after must be longer than 0", r.name),
            );
        }
        if let RelaySchedule::Deferred { clock: Some(c), .. } = r.schedule
            && c.period.is_some_and(|p| p.as_nanos() == 0)
        {
            self.err(
                &format!("{ptr}/schedule/clock/period"),
                format!(
                    "relay \"{}\": a clock trigger's period must be longer than 0",
                    r.name
                ),
            );
        }
        if let Err(RelayError::NeedsNonVolatile(mode)) = r.settings().config().validate() {
            self.err(
                &format!("{ptr}/schedule/mode"),
                format!(
                    "relay \"{}\": {mode} forwarding holds acknowledged records, so it needs \"durability\": \"non_volatile\"",
                    r.name
                ),
            );
        }
    }

    /// Node and port WWNs, given and derived, must all differ.
    fn wwns(&mut self) {
        struct Name {
            owner: String,
            /// Pointer of the value in the file; `None` when derived.
            given_at: Option<String>,
        }
        let t = &self.s.topology;
        let mut names: BTreeMap<u64, Name> = BTreeMap::new();
        let mut clashes: Vec<(String, String)> = Vec::new();
        let mut add = |w: u64,
                       owner: String,
                       given_at: Option<String>,
                       names: &mut BTreeMap<u64, Name>| {
            if let Some(first) = names.get(&w) {
                let wwn = fcsim_fabric::Wwn(w);
                let (at, what) = match (&given_at, &first.given_at) {
                    (Some(p), g) => (
                        p.clone(),
                        format!(
                            "WWN {wwn} of \"{owner}\" is also the {}WWN of \"{}\"",
                            if g.is_some() { "" } else { "derived " },
                            first.owner
                        ),
                    ),
                    (None, Some(p)) => (
                        p.clone(),
                        format!(
                            "WWN {wwn} of \"{}\" is also the derived WWN of \"{owner}\"; choose another",
                            first.owner
                        ),
                    ),
                    (None, None) => (
                        "/topology".to_string(),
                        format!("derived WWN {wwn} of \"{owner}\" repeats"),
                    ),
                };
                clashes.push((at, what));
            } else {
                names.insert(w, Name { owner, given_at });
            }
        };
        for n in t.nodes() {
            let ptr = node_ptr(&n);
            let (wwnn, given) = match (n.wwn, n.kind) {
                (Some(w), _) => (w, Some(format!("{ptr}/wwn"))),
                (None, NodeKind::Switch) => (derived::switch_wwn(n.index), None),
                (None, k) => (derived::end_node_wwnn(k, n.index), None),
            };
            add(wwnn.0.0, n.name.to_string(), given, &mut names);
            for p in 0..n.ports.min(256) {
                let owner = format!("{}/{p}", n.name);
                let (wwpn, given) = match (n.port_wwpns, n.kind) {
                    (_, NodeKind::Switch) => (derived::switch_port_wwpn(n.index, p), None),
                    (Some(list), _) => match list.get(p as usize) {
                        Some(w) => (*w, Some(format!("{ptr}/port_wwpns/{p}"))),
                        None => continue,
                    },
                    (None, k) => (derived::end_node_wwpn(k, n.index, p), None),
                };
                add(wwpn.0.0, owner, given, &mut names);
            }
        }
        for (at, what) in clashes {
            self.err(&at, what);
        }
    }

    /// Checks a port reference; returns its node when the node exists and the port is in
    /// range.
    fn port_ref(&mut self, ptr: &str, what: &str, r: &PortRef) -> Option<NodeView<'a>> {
        let Some(n) = self.nodes.get(r.node.as_str()).copied() else {
            self.err(ptr, format!("{what} \"{r}\": no node named \"{}\"", r.node));
            return None;
        };
        if r.port >= n.ports {
            let msg = format!(
                "{what} \"{r}\": no port {}; {} \"{}\" has {} port{} (0–{})",
                r.port,
                n.kind.as_str(),
                n.name,
                n.ports,
                if n.ports == 1 { "" } else { "s" },
                n.ports.saturating_sub(1)
            );
            self.err(ptr, msg);
            return None;
        }
        Some(n)
    }

    /// A port that must belong to an end node (host, array, tape).
    fn end_port(&mut self, ptr: &str, what: &str, r: &PortRef) -> Option<NodeView<'a>> {
        let n = self.port_ref(ptr, what, r)?;
        if !n.kind.is_end_node() {
            self.err(
                ptr,
                format!(
                    "{what} \"{r}\": \"{}\" is a switch; expected an end-node port",
                    n.name
                ),
            );
            return None;
        }
        Some(n)
    }

    fn node_named(&mut self, ptr: &str, what: &str, name: &str) -> Option<NodeView<'a>> {
        let n = self.nodes.get(name).copied();
        if n.is_none() {
            self.err(ptr, format!("{what}: no node named \"{name}\""));
        }
        n
    }

    /// A node name that must name a node of `kind`.
    fn kind_named(
        &mut self,
        ptr: &str,
        what: &str,
        name: &str,
        kind: NodeKind,
    ) -> Option<NodeView<'a>> {
        let n = self.node_named(ptr, what, name)?;
        if n.kind != kind {
            self.err(
                ptr,
                format!(
                    "{what}: \"{name}\" is {} {}, not {} {}",
                    article(n.kind),
                    n.kind.as_str(),
                    article(kind),
                    kind.as_str()
                ),
            );
            return None;
        }
        Some(n)
    }

    fn switch_named(&mut self, ptr: &str, what: &str, name: &str) -> Option<NodeView<'a>> {
        self.kind_named(ptr, what, name, NodeKind::Switch)
    }

    /// An intelligent switch by name.
    fn intelligent(&mut self, ptr: &str, what: &str, name: &str) {
        if let Some(n) = self.switch_named(ptr, &format!("{what} switch"), name)
            && !self.s.topology.switches[n.index].intelligent
        {
            self.err(ptr, format!("{what}: switch \"{name}\" is not intelligent"));
        }
    }

    fn host_named(&mut self, ptr: &str, what: &str, name: &str) {
        self.kind_named(ptr, what, name, NodeKind::Host);
    }

    /// An `array:lun` reference (an array serving that LUN) or a `switch:lun` one (a
    /// virtual LU of an intelligent switch). Returns the LU's geometry.
    fn lu_ref(&mut self, ptr: &str, what: &str, r: &LuRef) -> Option<LuGeometry> {
        let what = format!("{what} \"{r}\"");
        let n = self.node_named(ptr, &what, &r.node)?;
        if n.kind == NodeKind::Switch && self.s.topology.switches[n.index].intelligent {
            let t = &self.s.topology;
            if let Some(v) = t.virtual_lu(r) {
                return Some(LuGeometry {
                    blocks: v.blocks(),
                    block_bytes: t.virtual_block_bytes(v),
                });
            }
            let luns: Vec<String> = t
                .virtual_lus
                .iter()
                .filter(|v| v.switch == r.node)
                .map(|v| v.lun.to_string())
                .collect();
            self.err(
                ptr,
                format!(
                    "{what}: switch \"{}\" has no virtual LU {} (virtual LUNs: {})",
                    n.name,
                    r.lun,
                    if luns.is_empty() {
                        "none".to_string()
                    } else {
                        luns.join(", ")
                    }
                ),
            );
            return None;
        }
        if n.kind != NodeKind::Array {
            self.err(
                ptr,
                format!(
                    "{what}: \"{}\" is {} {}, not an array; an LU is `array:lun` (or `switch:lun` on an intelligent switch)",
                    n.name,
                    article(n.kind),
                    n.kind.as_str()
                ),
            );
            return None;
        }
        let array = &self.s.topology.arrays[n.index];
        let lu = array.lus.iter().find(|lu| lu.lun == r.lun);
        if lu.is_none() {
            let luns: Vec<String> = array.lus.iter().map(|lu| lu.lun.to_string()).collect();
            let has = if luns.is_empty() {
                "it has no LUs".to_string()
            } else {
                format!("LUNs: {}", luns.join(", "))
            };
            self.err(
                ptr,
                format!("{what}: array \"{}\" has no LUN {} ({has})", n.name, r.lun),
            );
        }
        lu.map(|l| LuGeometry {
            blocks: l.blocks,
            block_bytes: l.block_bytes,
        })
    }

    /// Intelligent switches' engines and virtual LUs: engine ports inside the switch and
    /// free of cables, overrides naming arrays, and every virtual LU accepted by TM's
    /// own rules (no overlap, inside the real LU, one block size).
    fn virtualization(&mut self) {
        let t = &self.s.topology;
        for (i, sw) in t.switches.iter().enumerate() {
            let ptr = format!("/topology/switches/{i}");
            let Some(v) = &sw.virtualization else {
                continue;
            };
            if !sw.intelligent {
                self.err(
                    &format!("{ptr}/virtualization"),
                    format!(
                        "switch \"{}\": virtualization needs \"intelligent\": true",
                        sw.name
                    ),
                );
                continue;
            }
            if v.ports == 0 || v.ports > sw.ports {
                self.err(
                    &format!("{ptr}/virtualization/ports"),
                    format!(
                        "switch \"{}\": the engine needs 1 to {} of its ports, not {}",
                        sw.name, sw.ports, v.ports
                    ),
                );
            }
            for (j, o) in v.overrides.iter().enumerate() {
                let optr = format!("{ptr}/virtualization/overrides/{j}/array");
                self.kind_named(&optr, "override array", &o.array, NodeKind::Array);
            }
        }
        for (i, l) in t.links.iter().enumerate() {
            for (end, r) in [("a", &l.a), ("b", &l.b)] {
                if let Some(first) = engine_first_port(t, &r.node)
                    && r.port >= first
                {
                    self.err(
                        &format!("/topology/links/{i}/{end}"),
                        format!(
                            "link {end} \"{r}\": ports {first} and up of \"{}\" belong to its virtualization engine",
                            r.node
                        ),
                    );
                }
            }
        }
        let mut tables: BTreeMap<&str, fcsim_switch::tm::MappingTable> = BTreeMap::new();
        for (i, v) in t.virtual_lus.iter().enumerate() {
            let ptr = format!("/topology/virtual_lus/{i}");
            let Some(sw) =
                self.switch_named(&format!("{ptr}/switch"), "virtual LU switch", &v.switch)
            else {
                continue;
            };
            if !t.switches[sw.index].intelligent {
                self.err(
                    &format!("{ptr}/switch"),
                    format!("virtual LU: switch \"{}\" is not intelligent", v.switch),
                );
                continue;
            }
            let Some(lun) = u16::try_from(v.lun).ok().filter(|l| *l < 16384) else {
                self.err(
                    &format!("{ptr}/lun"),
                    format!("virtual LU: LUN {} is not below 16384", v.lun),
                );
                continue;
            };
            let mut extents = Vec::new();
            let mut ok = true;
            for (j, e) in v.extents.iter().enumerate() {
                let eptr = format!("{ptr}/extents/{j}");
                let backing = match (&e.lu, e.internal) {
                    (Some(r), false) => {
                        let Some(_) = self.lu_ref(&format!("{eptr}/lu"), "extent lu", r) else {
                            ok = false;
                            continue;
                        };
                        if t.virtual_lu(r).is_some() || t.arrays.iter().all(|a| a.name != r.node) {
                            self.err(
                                &format!("{eptr}/lu"),
                                format!("extent lu \"{r}\": must be an array LU"),
                            );
                            ok = false;
                            continue;
                        }
                        fcsim_switch::tm::Backing::External {
                            lu: crate::launch::lu_naa(t, &r.node, r.lun).unwrap_or_default(),
                            start: e.start,
                        }
                    }
                    (None, true) => fcsim_switch::tm::Backing::Internal,
                    _ => {
                        self.err(&eptr, "extent: give either \"lu\" or \"internal\": true");
                        ok = false;
                        continue;
                    }
                };
                extents.push(fcsim_switch::tm::Extent {
                    start: 0,
                    blocks: e.blocks,
                    backing,
                });
            }
            if !ok {
                continue;
            }
            let lu = fcsim_switch::tm::VirtualLu {
                lun,
                name: v.name.clone().unwrap_or_else(|| format!("v{lun}")),
                naa: fcsim_fabric::Wwn::default(),
                block_bytes: t.virtual_block_bytes(v),
                ack: v.ack,
                extents,
            };
            let real = |naa: fcsim_fabric::Wwn| {
                t.arrays.iter().find_map(|a| {
                    a.lus.iter().find_map(|l| {
                        (crate::launch::lu_naa(t, &a.name, l.lun) == Some(naa)).then_some(
                            fcsim_switch::tm::RealLu {
                                blocks: l.blocks,
                                block_bytes: l.block_bytes,
                            },
                        )
                    })
                })
            };
            let names = |naa: fcsim_fabric::Wwn| {
                crate::launch::lu_aliases(t)
                    .into_iter()
                    .find(|(_, n)| *n == naa)
                    .map_or_else(|| naa.to_string(), |(k, _)| k)
            };
            if let Err(e) = tables.entry(&v.switch).or_default().add_lu(lu, real) {
                let msg = match e {
                    fcsim_switch::tm::TmError::Overlap {
                        index,
                        lu,
                        start,
                        end,
                        other,
                        ..
                    } => (
                        index,
                        format!(
                            "extent overlaps blocks {start}..{end} of {}, already mapped to virtual LU {other}",
                            names(lu)
                        ),
                    ),
                    fcsim_switch::tm::TmError::PastEnd {
                        index,
                        lu,
                        end,
                        blocks,
                        ..
                    } => (
                        index,
                        format!(
                            "extent ends at block {end} of {}, which has {blocks} blocks",
                            names(lu)
                        ),
                    ),
                    fcsim_switch::tm::TmError::BlockSize {
                        index,
                        lu,
                        real,
                        virt,
                        ..
                    } => (
                        index,
                        format!(
                            "extent is on {} with {real}-byte blocks, the LU has {virt}-byte blocks",
                            names(lu)
                        ),
                    ),
                    fcsim_switch::tm::TmError::ZeroBlocks { index, .. } => {
                        (index, "extent has 0 blocks".to_string())
                    }
                    other => (usize::MAX, other.to_string()),
                };
                let at = match msg.0 {
                    usize::MAX => ptr.clone(),
                    i => format!("{ptr}/extents/{i}"),
                };
                self.err(&at, format!("virtual LU {}:{}: {}", v.switch, v.lun, msg.1));
            }
        }
    }

    /// A `pair_create`: the pair's volumes are array LUs of equal geometry, on one array
    /// for a local pair and on two for a remote one, and the primary's array runs the
    /// mode's function.
    fn pair_create(
        &mut self,
        ptr: &str,
        name: &'a str,
        primary: &LuRef,
        secondary: &LuRef,
        mode: PairModeSpec,
        group: Option<&str>,
    ) {
        let at = |field: &str| format!("{ptr}/{field}");
        if name.is_empty() {
            self.err(&at("name"), "pair_create: name must not be empty");
        }
        if self.pairs.contains_key(name) {
            self.err(
                &at("name"),
                format!("pair_create: a pair named \"{name}\" already exists"),
            );
        }
        let group = group.unwrap_or(name).to_string();
        let t = &self.s.topology;
        // The intelligent switch runs pairs of its virtual LUs (or gives them to the
        // array holding both volumes); the engine at a secondary is an array's.
        if t.virtual_lu(secondary).is_some()
            && !(t.virtual_lu(primary).is_some() && mode == PairModeSpec::Local)
        {
            self.err(
                &at("secondary"),
                format!("pair_create secondary \"{secondary}\": a virtual LU is the secondary only of a local pair of its switch's virtual LUs; a remote secondary is an array LU"),
            );
            return;
        }
        let a = self.lu_ref(&at("primary"), "pair_create primary", primary);
        let b = self.lu_ref(&at("secondary"), "pair_create secondary", secondary);
        match mode {
            PairModeSpec::Local if primary.node != secondary.node => self.err(
                &at("secondary"),
                format!("pair_create: a local pair's secondary must be on {} (it is on {})", primary.node, secondary.node),
            ),
            PairModeSpec::Local if primary == secondary => {
                self.err(&at("secondary"), "pair_create: primary and secondary are the same LU")
            }
            PairModeSpec::Sync | PairModeSpec::Async | PairModeSpec::Relay if primary.node == secondary.node => self.err(
                &at("mode"),
                format!("pair_create: a {} pair copies to another array; use mode local for two LUs of {}", mode.name(), primary.node),
            ),
            _ => {}
        }
        if let (Some(a), Some(b)) = (a, b)
            && (a.blocks != b.blocks || a.block_bytes != b.block_bytes)
        {
            self.err(
                &at("secondary"),
                format!(
                    "pair_create: {secondary} ({} blocks of {} bytes) differs from {primary} ({} blocks of {} bytes)",
                    b.blocks, b.block_bytes, a.blocks, a.block_bytes
                ),
            );
        }
        if let Some(arr) = t.arrays.iter().find(|x| x.name == primary.node)
            && !arr.functions.contains(&mode.function())
        {
            self.err(
                &at("mode"),
                format!(
                    "pair_create: array {} does not run `{}` (add it to its functions)",
                    arr.name,
                    serde_json::to_value(mode.function())
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            );
        }
        // A group lives in one array (its primary's) and holds pairs of one mode.
        let first = self
            .pairs
            .iter()
            .find(|(_, g)| **g == group)
            .and_then(|(n, _)| crate::copy::pair_defs(self.s).get(*n).cloned());
        if let Some(o) = first {
            if o.primary.node != primary.node {
                self.err(
                    &at("group"),
                    format!("pair_create: group \"{group}\" is run by {} (pair \"{}\"); all its primaries must be on that array", o.primary.node, o.name),
                );
            } else if o.mode != mode {
                self.err(
                    &at("group"),
                    format!(
                        "pair_create: group \"{group}\" holds {} pairs (\"{}\"); this one is {}",
                        o.mode.name(),
                        o.name,
                        mode.name()
                    ),
                );
            }
        }
        self.pairs.insert(name, group);
    }

    /// A pair or group named by a step or check: created by an earlier step.
    fn pair_ref(&mut self, ptr: &str, what: &str, name: &str) {
        if self.pairs.contains_key(name) || self.pairs.values().any(|g| g == name) {
            return;
        }
        let later = crate::copy::pair_defs(self.s)
            .values()
            .any(|d| d.name == name || d.group == name);
        if later {
            self.err(
                ptr,
                format!("{what} \"{name}\": the pair is created by a later step"),
            );
        } else {
            self.err(ptr, format!("{what}: no pair or group named \"{name}\""));
        }
    }

    /// A consistency group named by a three-site step: created by an earlier step, its
    /// pairs of one of the modes `want`.
    fn group_of(&mut self, ptr: &str, what: &str, name: &str, want: &[PairModeSpec]) {
        if !self.pairs.values().any(|g| g == name) {
            return self.pair_ref(ptr, what, name);
        }
        let defs = crate::copy::pair_defs(self.s);
        if let Some(d) = defs
            .values()
            .find(|d| d.group == name && !want.contains(&d.mode))
        {
            let want: Vec<&str> = want.iter().map(|m| m.name()).collect();
            self.err(
                ptr,
                format!(
                    "{what} \"{name}\": pair \"{}\" is {}, expected {}",
                    d.name,
                    d.mode.name(),
                    want.join(" or ")
                ),
            );
        }
    }

    fn pair_state_name(&mut self, ptr: &str, state: &str) {
        if fcsim_devices::copysvc::PairState::from_name(state).is_none() {
            self.err(
                ptr,
                format!("pair state \"{state}\" is not one of copy, pair, split_pending, split, resync, suspended"),
            );
        }
    }

    /// A workload name used by a check: it must be started by an earlier step.
    fn workload_ref(&mut self, ptr: &str, what: &str, name: &str) {
        if self.workloads.contains_key(name) {
            return;
        }
        if self.all_workloads.contains(name) {
            self.err(
                ptr,
                format!(
                    "{what} \"{name}\": the workload is started by a later step; a check must come after its workload"
                ),
            );
        } else {
            self.err(ptr, format!("{what}: no workload named \"{name}\""));
        }
    }

    /// LUN masking entries of one LU: hosts (`h1`) or host ports (`h1/0`).
    fn lu_hosts(&mut self, lptr: &str, array: &str, lu: &'a LuSpec) {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for (k, h) in lu.hosts.iter().enumerate() {
            let hptr = format!("{lptr}/hosts/{k}");
            let what = format!("LU \"{array}:{}\" hosts entry \"{h}\"", lu.lun);
            let ok = if h.contains('/') {
                match h.parse::<PortRef>() {
                    Err(_) => {
                        self.err(
                            &hptr,
                            format!("{what}: expected a host name like \"h1\" or a host port like \"h1/0\""),
                        );
                        false
                    }
                    Ok(p) => match self.port_ref(
                        &hptr,
                        &format!("LU \"{array}:{}\" hosts entry", lu.lun),
                        &p,
                    ) {
                        Some(n) if n.kind != NodeKind::Host => {
                            self.err(
                                &hptr,
                                format!(
                                    "{what}: \"{}\" is {} {}, not a host",
                                    n.name,
                                    article(n.kind),
                                    n.kind.as_str()
                                ),
                            );
                            false
                        }
                        n => n.is_some(),
                    },
                }
            } else {
                self.kind_named(&hptr, &what, h, NodeKind::Host).is_some()
            };
            if ok && !seen.insert(h) {
                self.err(&hptr, format!("{what} listed twice"));
            }
        }
    }

    fn links(&mut self) {
        let t = &self.s.topology;
        for (i, l) in t.links.iter().enumerate() {
            let ptr = format!("/topology/links/{i}");
            let mut ends = Vec::new();
            for (end, r) in [("a", &l.a), ("b", &l.b)] {
                let eptr = format!("{ptr}/{end}");
                let Some(n) = self.port_ref(&eptr, &format!("link {end}"), r) else {
                    continue;
                };
                if let Some(&other) = self.port_link.get(&(n.name, r.port)) {
                    let o = &t.links[other];
                    self.err(
                        &eptr,
                        format!(
                            "link {end} \"{r}\": port already used by link {other} (\"{}\"–\"{}\")",
                            o.a, o.b
                        ),
                    );
                } else {
                    self.port_link.insert((n.name, r.port), i);
                }
                ends.push(n);
            }
            if let [x, y] = ends[..] {
                if x.name == y.name {
                    self.err(
                        &ptr,
                        format!("link \"{}\"–\"{}\" joins a node to itself", l.a, l.b),
                    );
                } else if x.kind.is_end_node() && y.kind.is_end_node() {
                    self.err(
                        &ptr,
                        format!(
                            "link \"{}\"–\"{}\" joins two end nodes; one end must be a switch port",
                            l.a, l.b
                        ),
                    );
                } else if !x.kind.is_end_node() && !y.kind.is_end_node() {
                    let pair = if x.name < y.name {
                        (x.name, y.name)
                    } else {
                        (y.name, x.name)
                    };
                    self.isls.insert(pair);
                }
            }
            if !l.km.is_finite() || l.km < 0.0 {
                self.err(
                    &format!("{ptr}/km"),
                    format!(
                        "link \"{}\"–\"{}\": km must be a number ≥ 0, got {}",
                        l.a, l.b, l.km
                    ),
                );
            }
            if !GFC_RATES.contains(&l.gfc) {
                self.err(
                    &format!("{ptr}/gfc"),
                    format!("link \"{}\"–\"{}\": gfc {} is not a Fibre Channel rate (1, 2, 4, 8, 16, 32, 64)", l.a, l.b, l.gfc),
                );
            }
        }
        // Every end-node port must reach the fabric.
        let unlinked: Vec<(NodeView<'a>, Vec<u32>)> = t
            .nodes()
            .filter(|n| {
                n.kind.is_end_node()
                    && self
                        .nodes
                        .get(n.name)
                        .is_some_and(|f| f.kind == n.kind && f.index == n.index)
            })
            .map(|n| {
                (
                    n,
                    (0..n.ports.min(256))
                        .filter(|p| !self.port_link.contains_key(&(n.name, *p)))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, ports)| !ports.is_empty())
            .collect();
        for (n, ports) in unlinked {
            let list: Vec<String> = ports
                .iter()
                .map(|p| format!("\"{}/{p}\"", n.name))
                .collect();
            self.err(
                &format!("{}/ports", node_ptr(&n)),
                format!(
                    "{} \"{}\": {} {} not linked to a switch; every end-node port needs a link",
                    n.kind.as_str(),
                    n.name,
                    list.join(", "),
                    if ports.len() == 1 { "is" } else { "are" },
                ),
            );
        }
    }

    fn zones(&mut self, ptr: &str, zones: &'a [ZoneSpec]) {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for (i, z) in zones.iter().enumerate() {
            let zptr = format!("{ptr}/{i}");
            if z.name.is_empty() {
                self.err(&format!("{zptr}/name"), "zone name must not be empty");
            }
            if !names.insert(&z.name) {
                self.err(
                    &format!("{zptr}/name"),
                    format!("duplicate zone name \"{}\"", z.name),
                );
            }
            if z.members.is_empty() {
                self.err(
                    &format!("{zptr}/members"),
                    format!("zone \"{}\" has no members", z.name),
                );
            }
            let mut seen: BTreeSet<&PortRef> = BTreeSet::new();
            for (j, m) in z.members.iter().enumerate() {
                let mptr = format!("{zptr}/members/{j}");
                if self
                    .port_ref(&mptr, &format!("zone \"{}\" member", z.name), m)
                    .is_some()
                    && !seen.insert(m)
                {
                    self.err(
                        &mptr,
                        format!("zone \"{}\" member \"{m}\" listed twice", z.name),
                    );
                }
            }
        }
    }

    fn site_named(&mut self, ptr: &str, what: &str, name: &str) {
        if !self.sites.contains(name) {
            self.err(ptr, format!("{what}: no site named \"{name}\""));
        }
    }

    fn step(&mut self, ptr: &str, step: &'a Step, in_setup: bool) {
        let at = |field: &str| format!("{ptr}/{field}");
        let op = step.op();
        match step {
            Step::LinkDown { port } | Step::LinkUp { port } => {
                if let Some(n) = self.port_ref(&at("port"), &format!("{op} port"), port)
                    && !self.port_link.contains_key(&(n.name, port.port))
                {
                    self.err(
                        &at("port"),
                        format!("{op} port \"{port}\": port has no link"),
                    );
                }
            }
            Step::PortErrors { port, .. } => {
                if let Some(n) = self.port_ref(&at("port"), "port_errors port", port)
                    && n.kind != NodeKind::Switch
                {
                    self.err(
                        &at("port"),
                        format!(
                            "port_errors port \"{port}\": {} \"{}\" is not a switch (port errors are a switch port's)",
                            n.kind.as_str(),
                            n.name
                        ),
                    );
                }
            }
            Step::Crash { node } | Step::Restart { node } => {
                self.node_named(&at("node"), &format!("{op} node"), node);
            }
            Step::Disaster { site } => {
                if !self.sites.contains(site.as_str())
                    && !self.disaster_zones.contains(site.as_str())
                {
                    self.err(
                        &at("site"),
                        format!("disaster \"{site}\": neither a site nor a disaster zone"),
                    );
                }
            }
            Step::Partition { a, b } | Step::Heal { a, b } => {
                self.site_named(&at("a"), &format!("{op} a"), a);
                self.site_named(&at("b"), &format!("{op} b"), b);
                if a == b {
                    self.err(&at("b"), format!("{op}: a and b are the same site \"{a}\""));
                }
            }
            Step::ZoneActivate { cfg, zones } => {
                if cfg.is_empty() {
                    self.err(&at("cfg"), "zone_activate: cfg must not be empty");
                }
                self.zones(&at("zones"), zones);
            }
            Step::ZoneDeactivate {} => {}
            Step::MirrorStart { src, dst } => {
                let a = self.lu_ref(&at("src"), "mirror_start src", src);
                let b = self.lu_ref(&at("dst"), "mirror_start dst", dst);
                let t = &self.s.topology;
                if t.virtual_lu(src).is_none() && a.is_some() {
                    self.err(
                        &at("src"),
                        format!("mirror_start src \"{src}\": must be a virtual LU `switch:lun`"),
                    );
                } else if src.node != dst.node || (t.virtual_lu(dst).is_none() && b.is_some()) {
                    self.err(
                        &at("dst"),
                        format!(
                            "mirror_start dst \"{dst}\": must be a virtual LU of switch \"{}\"",
                            src.node
                        ),
                    );
                } else if src == dst {
                    self.err(&at("dst"), "mirror_start: src and dst are the same LU");
                } else if let (Some(a), Some(b)) = (a, b)
                    && (b.blocks < a.blocks || a.block_bytes != b.block_bytes)
                {
                    self.err(&at("dst"), format!("mirror_start: {dst} ({} blocks of {} bytes) cannot hold {src} ({} blocks of {} bytes)", b.blocks, b.block_bytes, a.blocks, a.block_bytes));
                }
            }
            Step::ArrayFunctions { array, .. } => {
                self.kind_named(
                    &at("array"),
                    "array_functions array",
                    array,
                    NodeKind::Array,
                );
            }
            Step::PairCreate {
                name,
                primary,
                secondary,
                mode,
                group,
                relay,
                ..
            } => {
                self.pair_create(ptr, name, primary, secondary, *mode, group.as_deref());
                if let Some(r) = relay {
                    if *mode != PairModeSpec::Relay {
                        self.err(
                            &at("relay"),
                            format!(
                                "pair_create: relay settings belong to mode relay, not {}",
                                mode.name()
                            ),
                        );
                    }
                    if let Some(f) = &r.fec {
                        if let Err(e) = f.scheme() {
                            self.err(&at("relay/fec"), format!("pair_create: relay.{e}"));
                        }
                        if !r.relays.is_empty() {
                            self.err(
                                &at("relay/fec"),
                                "pair_create: relay.fec: forward error correction is for the direct hop to the standby; remove `relays` or `fec`".to_string(),
                            );
                        }
                    }
                    match (r.networks, &r.fec) {
                        (None | Some(1), _) | (Some(2), Some(_)) => {}
                        (Some(2), None) => self.err(
                            &at("relay/networks"),
                            "pair_create: relay.networks: 2 networks carry FEC units; set `fec`"
                                .to_string(),
                        ),
                        (Some(n), _) => self.err(
                            &at("relay/networks"),
                            format!("pair_create: relay.networks: {n} is not 1 or 2"),
                        ),
                    }
                    for (i, w) in r.relays.iter().enumerate() {
                        if let Err(e) = crate::copy::relay_target(&self.s.topology, w) {
                            self.err(
                                &at(&format!("relay/relays/{i}")),
                                format!("pair_create: {e}"),
                            );
                        }
                    }
                    // Seed 002 R10: relays named by the topology (not by a bare WWPN)
                    // stand outside the primary's disaster zone, closer than the standby.
                    let named: Vec<String> = r
                        .relays
                        .iter()
                        .map(|w| w.split('/').next().unwrap_or(w).to_string())
                        .filter(|n| {
                            self.s
                                .topology
                                .node(n)
                                .is_some_and(|v| v.kind == NodeKind::Relay)
                        })
                        .collect();
                    if !named.is_empty()
                        && let Err(e) = validate_relay_placement(
                            &self.s.topology,
                            &primary.to_string(),
                            &secondary.to_string(),
                            &named,
                        )
                    {
                        self.err(&at("relay/relays"), format!("pair_create: {e}"));
                    }
                }
            }
            Step::PairSplit { pair, .. }
            | Step::PairResync { pair }
            | Step::PairDelete { pair }
            | Step::Takeover { pair, .. } => {
                self.pair_ref(&at("pair"), &format!("{op} pair"), pair);
                if let Step::Takeover { host: Some(h), .. } = step {
                    self.host_named(&at("host"), "takeover host", h);
                }
                if let Step::Takeover { pair, .. } = step
                    && let Some(d) = crate::copy::pair_defs(self.s).values().find(|d| {
                        (d.name == *pair || d.group == *pair) && d.mode == PairModeSpec::Relay
                    })
                {
                    self.err(
                        &at("pair"),
                        format!("takeover: \"{}\" is a relay pair; its standby takes over with relay_takeover", d.name),
                    );
                }
                if let Step::PairSplit { pair, .. } = step
                    && let Some(d) = crate::copy::pair_defs(self.s).values().find(|d| {
                        (d.name == *pair || d.group == *pair) && d.mode == PairModeSpec::Relay
                    })
                {
                    self.err(
                        &at("pair"),
                        format!("pair_split: \"{}\" is a relay pair, which does not split (use restart_point, or relay_takeover at the standby)", d.name),
                    );
                }
            }
            Step::RelayTakeover { standby, group } => {
                self.kind_named(
                    &at("standby"),
                    "relay_takeover standby",
                    standby,
                    NodeKind::Array,
                );
                self.group_of(
                    &at("group"),
                    "relay_takeover group",
                    group,
                    &[PairModeSpec::Relay],
                );
                if let Some(d) = crate::copy::pair_defs(self.s).values().find(|d| {
                    (d.group == *group || d.name == *group) && d.secondary.node != *standby
                }) {
                    self.err(
                        &at("standby"),
                        format!("relay_takeover: the standby of group \"{group}\" is {} (pair \"{}\"), not {standby}", d.secondary.node, d.name),
                    );
                }
            }
            Step::RestartPoint { pair, .. } => {
                self.group_of(
                    &at("pair"),
                    "restart_point pair",
                    pair,
                    &[PairModeSpec::Relay],
                );
            }
            Step::CopyManagerRestart { array } => {
                self.kind_named(
                    &at("array"),
                    "copy_manager_restart array",
                    array,
                    NodeKind::Array,
                );
            }
            Step::PairOptions { pair, .. } => {
                self.pair_ref(&at("pair"), "pair_options pair", pair);
            }
            Step::RecoverPair {
                pair,
                allowed,
                max_attempts,
                concurrency,
                ..
            } => {
                self.group_of(
                    &at("pair"),
                    "recover_pair pair",
                    pair,
                    &[PairModeSpec::Sync, PairModeSpec::Async],
                );
                if allowed.as_nanos() == 0 {
                    self.err(&at("allowed"), "recover_pair: allowed must be above 0");
                }
                if *max_attempts == Some(0) {
                    self.err(
                        &at("max_attempts"),
                        "recover_pair: max_attempts must be at least 1",
                    );
                }
                if *concurrency == Some(0) {
                    self.err(
                        &at("concurrency"),
                        "recover_pair: concurrency must be at least 1",
                    );
                }
            }
            Step::ClearDifference { group, .. } => {
                self.group_of(
                    &at("group"),
                    "clear_difference group",
                    group,
                    &[PairModeSpec::Sync],
                );
            }
            Step::ThreeDcCycle {
                local,
                remote,
                sync,
                ..
            } => {
                self.group_of(
                    &at("local"),
                    "three_dc_cycle local",
                    local,
                    &[PairModeSpec::Local],
                );
                self.group_of(
                    &at("remote"),
                    "three_dc_cycle remote",
                    remote,
                    &[PairModeSpec::Async, PairModeSpec::Sync],
                );
                self.group_of(
                    &at("sync"),
                    "three_dc_cycle sync",
                    sync,
                    &[PairModeSpec::Sync],
                );
            }
            Step::Failover3dc {
                sync,
                remote,
                pairs,
                mode,
                ..
            } => {
                self.group_of(
                    &at("sync"),
                    "failover_3dc sync",
                    sync,
                    &[PairModeSpec::Sync],
                );
                self.group_of(
                    &at("remote"),
                    "failover_3dc remote",
                    remote,
                    &[PairModeSpec::Async, PairModeSpec::Sync],
                );
                if *mode == PairModeSpec::Local {
                    self.err(&at("mode"), "failover_3dc: the new pairs are sync or async");
                }
                if pairs.is_empty() {
                    self.err(
                        &at("pairs"),
                        "failover_3dc: give one pair per volume of the sync group",
                    );
                }
                let defs = crate::copy::pair_defs(self.s);
                for (i, p) in pairs.iter().enumerate() {
                    let ptr = format!("{ptr}/pairs/{i}");
                    if self.pairs.contains_key(p.name.as_str()) {
                        self.err(
                            &format!("{ptr}/name"),
                            format!("failover_3dc: pair \"{}\" already exists", p.name),
                        );
                    }
                    if !defs
                        .values()
                        .any(|d| &d.group == sync && d.secondary == p.primary)
                    {
                        self.err(
                            &format!("{ptr}/primary"),
                            format!(
                                "failover_3dc: {} is no secondary of group \"{sync}\"",
                                p.primary
                            ),
                        );
                    }
                    if !defs
                        .values()
                        .any(|d| &d.group == remote && d.secondary == p.secondary)
                    {
                        self.err(
                            &format!("{ptr}/secondary"),
                            format!(
                                "failover_3dc: {} is no secondary of group \"{remote}\"",
                                p.secondary
                            ),
                        );
                    }
                    self.pairs.insert(p.name.as_str(), sync.clone());
                }
            }
            Step::RelayControl {
                relay,
                control,
                sources,
            } => {
                self.kind_named(&at("relay"), "relay_control relay", relay, NodeKind::Relay);
                match control {
                    crate::format::RelayControlOp::Fence if sources.is_empty() => {
                        self.err(
                            &at("control"),
                            "relay_control fence: name at least one source in `sources`",
                        );
                    }
                    crate::format::RelayControlOp::Forward if !sources.is_empty() => {
                        self.err(
                            &at("sources"),
                            "relay_control forward: only `fence` takes `sources`",
                        );
                    }
                    _ => {}
                }
            }
            Step::TapeFault {
                tape,
                offline,
                write_error_after_bytes,
            } => {
                self.kind_named(&at("tape"), "tape_fault tape", tape, NodeKind::Tape);
                if offline.is_none() && write_error_after_bytes.is_none() {
                    self.err(
                        ptr,
                        "tape_fault: give `offline` and/or `write_error_after_bytes`",
                    );
                }
            }
            Step::Write {
                host,
                target,
                lba,
                blocks,
                ..
            } => {
                self.host_named(&at("host"), "write host", host);
                let lu = self.lu_ref(&at("target"), "write target", target);
                if *blocks == 0 {
                    self.err(&at("blocks"), "write: blocks must be at least 1");
                } else if let Some(lu) = lu
                    && lba.saturating_add(u64::from(*blocks)) > lu.blocks
                {
                    self.err(
                        &at("lba"),
                        format!(
                            "write: {lba}+{blocks} is outside {target} ({} blocks)",
                            lu.blocks
                        ),
                    );
                }
            }
            Step::Xcopy {
                host,
                manager,
                segments,
                ..
            } => {
                self.host_named(&at("host"), "xcopy host", host);
                self.lu_ref(&at("manager"), "xcopy manager", manager);
                if segments.is_empty() {
                    self.err(&at("segments"), "xcopy: at least one segment is required");
                }
                for (i, seg) in segments.iter().enumerate() {
                    let sp = format!("{}/segments/{i}", ptr);
                    if let Some(lu) = self.lu_ref(&format!("{sp}/src"), "xcopy src", &seg.src) {
                        if seg.blocks == 0 || seg.src_lba.saturating_add(seg.blocks) > lu.blocks {
                            self.err(
                                &format!("{sp}/blocks"),
                                format!(
                                    "xcopy: {}+{} is outside {} ({} blocks)",
                                    seg.src_lba, seg.blocks, seg.src, lu.blocks
                                ),
                            );
                        }
                    }
                    let to_tape = self.s.topology.tapes.iter().any(|t| t.name == seg.dst.node);
                    if to_tape {
                        if seg.dst.lun != 0 {
                            self.err(
                                &format!("{sp}/dst"),
                                format!("xcopy dst \"{}\": a tape has one LU, 0", seg.dst),
                            );
                        }
                    } else if let Some(lu) =
                        self.lu_ref(&format!("{sp}/dst"), "xcopy dst", &seg.dst)
                    {
                        if seg.dst_lba.saturating_add(seg.blocks) > lu.blocks {
                            self.err(
                                &format!("{sp}/dst_lba"),
                                format!(
                                    "xcopy: {}+{} is outside {} ({} blocks)",
                                    seg.dst_lba, seg.blocks, seg.dst, lu.blocks
                                ),
                            );
                        }
                    }
                }
            }
            Step::Workload {
                name,
                host,
                target,
                read_percent,
                block_bytes,
                qd,
                count,
                duration,
                ..
            } => self.workload(
                ptr,
                name,
                host,
                target,
                *read_percent,
                *block_bytes,
                *qd,
                *count,
                duration.map(|d| d.as_nanos()),
            ),
            Step::Wait {
                for_duration,
                until,
            } => {
                if for_duration.is_some() == until.is_some() {
                    self.err(ptr, "wait needs exactly one of \"for\" and \"until\"");
                }
                let blocking = matches!(
                    until,
                    Some(
                        WaitUntil::Pair { .. }
                            | WaitUntil::CopyResults { .. }
                            | WaitUntil::Recovery(_)
                    )
                );
                if let Some(WaitUntil::Recovery(r)) = until {
                    self.recovery_point(&at("until"), r);
                }
                if let Some(WaitUntil::Pair { pair, state }) = until {
                    self.pair_ref(&at("until"), "wait until pair", pair);
                    self.pair_state_name(&at("until"), state);
                }
                if let Some(WaitUntil::CopyResults { copy_results }) = until {
                    self.host_named(
                        &at("until"),
                        "wait until copy_results host",
                        &copy_results.host,
                    );
                    self.lu_ref(
                        &at("until"),
                        "wait until copy_results manager",
                        &copy_results.manager,
                    );
                }
                if until.is_some() && !in_setup && !blocking {
                    self.err(
                        &at("until"),
                        "wait \"until\" is allowed only in setup; use \"for\" on the timeline",
                    );
                }
            }
            Step::Check(c) => self.check(ptr, c),
        }
    }

    /// A `wait` on a recovery copy: its pair exists, and exactly one side is watched
    /// with the fields that side has.
    fn recovery_point(&mut self, ptr: &str, r: &crate::format::RecoveryPoint) {
        self.pair_ref(ptr, "wait until recovery", &r.recovery);
        match (r.master.as_deref(), r.remote.as_deref()) {
            (Some(phase), None) => {
                if !["configuring", "starting", "copying", "completing", "ended"].contains(&phase) {
                    self.err(
                        ptr,
                        &format!(
                            "master: unknown phase {phase:?}: expected configuring, starting, copying, completing or ended"
                        ),
                    );
                }
                if r.writes.is_some() {
                    self.err(ptr, "writes: counted at the remote; use with \"remote\"");
                }
            }
            (None, Some(point)) => {
                if point != "started" && point != "ended" {
                    self.err(
                        ptr,
                        &format!("remote: unknown point {point:?}: expected started or ended"),
                    );
                }
                if point == "ended" && (r.writes.is_some() || r.reached.is_some()) {
                    self.err(ptr, "remote \"ended\" takes no writes or reached count");
                }
                if r.tracks_left.is_some() {
                    self.err(
                        ptr,
                        "tracks_left: counted at the master; use with \"master\"",
                    );
                }
            }
            _ => self.err(
                ptr,
                "recovery: give exactly one of \"master\" and \"remote\"",
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn workload(
        &mut self,
        ptr: &str,
        name: &'a str,
        host: &str,
        target: &LuRef,
        read_percent: u8,
        block_bytes: u32,
        qd: u32,
        count: Option<u64>,
        duration_ns: Option<u64>,
    ) {
        let at = |field: &str| format!("{ptr}/{field}");
        if name.is_empty() {
            self.err(&at("name"), "workload name must not be empty");
        } else if self.workloads.contains_key(name) {
            self.err(
                &at("name"),
                format!("duplicate workload name \"{name}\"; workload names are unique across setup and steps"),
            );
        } else {
            self.workloads.insert(name, ptr.to_string());
        }
        let w = format!("workload \"{name}\"");
        self.host_named(&at("host"), &format!("{w} host"), host);
        let lu = self.lu_ref(&at("target"), &format!("{w} target"), target);
        if count.is_some() == duration_ns.is_some() {
            self.err(
                ptr,
                format!("{w} needs exactly one of \"count\" and \"duration\""),
            );
        }
        if count == Some(0) {
            self.err(&at("count"), format!("{w}: count must be at least 1"));
        }
        if duration_ns.is_some_and(|ns| ns < 1_000) {
            self.err(
                &at("duration"),
                format!(
                    "{w}: duration must be at least 1us (hosts count it in whole microseconds)"
                ),
            );
        }
        if qd == 0 {
            self.err(&at("qd"), format!("{w}: qd must be at least 1"));
        }
        if read_percent > 100 {
            self.err(
                &at("read_percent"),
                format!("{w}: read_percent must be 0–100, got {read_percent}"),
            );
        }
        if block_bytes == 0 {
            self.err(
                &at("block_bytes"),
                format!("{w}: block_bytes must be at least 1 block"),
            );
        } else if let Some(lu) = lu
            && (lu.block_bytes == 512 || lu.block_bytes == 4096)
        {
            let lu_bytes = lu.blocks.saturating_mul(u64::from(lu.block_bytes));
            if !block_bytes.is_multiple_of(lu.block_bytes) {
                self.err(
                    &at("block_bytes"),
                    format!(
                        "{w}: block_bytes {block_bytes} is not a multiple of the block size of LU \"{target}\" ({} bytes)",
                        lu.block_bytes
                    ),
                );
            } else if lu.blocks > 0 && u64::from(block_bytes) > lu_bytes {
                self.err(
                    &at("block_bytes"),
                    format!(
                        "{w}: block_bytes {block_bytes} is larger than LU \"{target}\" ({lu_bytes} bytes)"
                    ),
                );
            }
        }
    }

    fn check(&mut self, ptr: &str, c: &'a Check) {
        let at = |field: &str| format!("{ptr}/{field}");
        let name = c.name();
        match c {
            Check::PortBytesAtMost { port, .. } => {
                self.port_ref(&at("port"), name, port);
            }
            Check::FailoverCopied {
                sync,
                blocks_at_least,
                blocks_at_most,
                ..
            } => {
                self.group_of(&at("sync"), name, sync, &[PairModeSpec::Sync]);
                if let (Some(a), Some(b)) = (blocks_at_least, blocks_at_most)
                    && a > b
                {
                    self.err(
                        &at("blocks_at_least"),
                        format!("{name}: blocks_at_least {a} is above blocks_at_most {b}"),
                    );
                }
            }
            Check::RelayStandby { array, group, .. } => {
                self.kind_named(&at("array"), name, array, NodeKind::Array);
                self.group_of(&at("group"), name, group, &[PairModeSpec::Relay]);
            }
            Check::PairState { pair, state, .. } => {
                self.pair_ref(&at("pair"), name, pair);
                self.pair_state_name(&at("state"), state);
            }
            Check::BackupEqualsSplitImage {
                tape,
                pair,
                workload,
                blocks,
                ..
            } => {
                self.kind_named(&at("tape"), name, tape, NodeKind::Tape);
                self.pair_ref(&at("pair"), name, pair);
                self.workload_ref(&at("workload"), name, workload);
                if *blocks == 0 {
                    self.err(&at("blocks"), format!("{name}: blocks must be at least 1"));
                }
            }
            Check::SecondaryEqualsSplitImage { pair, workload } => {
                self.pair_ref(&at("pair"), name, pair);
                self.workload_ref(&at("workload"), name, workload);
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
                self.pair_ref(&at("pair"), name, pair);
                if rolled_back.is_some() && side.as_deref() != Some("remote") {
                    self.err(
                        &at("rolled_back"),
                        format!("{name}: rolled_back is reported by the remote (side \"remote\")"),
                    );
                }
                let remote = match side.as_deref() {
                    None | Some("master") => false,
                    Some("remote") => true,
                    Some(s) => {
                        self.err(
                            &at("side"),
                            format!("{name}: side \"{s}\" is not master or remote"),
                        );
                        false
                    }
                };
                if resent_at_least.is_some() && remote {
                    self.err(
                        &at("resent_at_least"),
                        format!(
                            "{name}: resent_at_least is counted by the master (side \"master\")"
                        ),
                    );
                }
                let outcomes: &[&str] = if remote {
                    &["completed", "rolled_back", "none"]
                } else {
                    &["completed", "rolled_back", "refused"]
                };
                if !outcomes.contains(&outcome.as_str()) {
                    self.err(
                        &at("outcome"),
                        format!(
                            "{name}: outcome \"{outcome}\" is not {}",
                            outcomes.join(", ")
                        ),
                    );
                }
                if let Some(c) = cause
                    && !["timeout", "save_area_exhausted"].contains(&c.as_str())
                {
                    self.err(
                        &at("cause"),
                        format!("{name}: cause \"{c}\" is not timeout or save_area_exhausted"),
                    );
                }
                if row_tracks_at_least.is_some() && !remote {
                    self.err(
                        &at("row_tracks_at_least"),
                        format!("{name}: row_tracks_at_least is reported by the remote (side \"remote\")"),
                    );
                }
            }
            Check::PrefixConsistent {
                workload, volume, ..
            }
            | Check::RpoAtMost {
                workload, volume, ..
            } => {
                self.workload_ref(&at("workload"), name, workload);
                self.lu_ref(&at("volume"), name, volume);
            }
            Check::CopyResults {
                host,
                manager,
                status,
                ..
            } => {
                self.host_named(&at("host"), name, host);
                self.lu_ref(&at("manager"), name, manager);
                if !["completed", "failed", "in_progress"].contains(&status.as_str()) {
                    self.err(
                        &at("status"),
                        format!(
                            "{name}: status \"{status}\" is not completed, failed or in_progress"
                        ),
                    );
                }
            }
            Check::Operation {
                switch,
                operation: op,
                state,
                ..
            } => {
                self.intelligent(&at("switch"), name, switch);
                if *op == 0 {
                    self.err(
                        &at("operation"),
                        format!("{name}: operations are numbered from 1"),
                    );
                }
                const STATES: [&str; 5] = ["running", "draining", "paired", "done", "failed"];
                if !STATES.contains(&state.as_str()) {
                    self.err(
                        &at("state"),
                        format!(
                            "{name}: state \"{state}\" is not one of {}",
                            STATES.join(", ")
                        ),
                    );
                }
            }
            Check::FunctionTable {
                switch,
                array,
                provenance,
                ..
            } => {
                self.intelligent(&at("switch"), name, switch);
                self.kind_named(
                    &at("array"),
                    &format!("{name} array"),
                    array,
                    NodeKind::Array,
                );
                const PROVENANCES: [&str; 3] = ["discovered", "rejected", "manual"];
                if let Some(p) = provenance
                    && !PROVENANCES.contains(&p.as_str())
                {
                    self.err(
                        &at("provenance"),
                        format!(
                            "{name}: provenance \"{p}\" is not one of {}",
                            PROVENANCES.join(", ")
                        ),
                    );
                }
            }
            Check::BackendCommands { lu, .. } => {
                if self.lu_ref(&at("lu"), &format!("{name} lu"), lu).is_some()
                    && self.s.topology.virtual_lu(lu).is_none()
                {
                    self.err(
                        &at("lu"),
                        format!("{name} lu \"{lu}\": must be a virtual LU `switch:lun`"),
                    );
                }
            }
            Check::NsSees {
                host_port,
                target_port,
                ..
            } => {
                if let Some(n) =
                    self.port_ref(&at("host_port"), &format!("{name} host_port"), host_port)
                    && n.kind != NodeKind::Host
                {
                    self.err(
                        &at("host_port"),
                        format!(
                            "{name} host_port \"{host_port}\": \"{}\" is {} {}, not a host",
                            n.name,
                            article(n.kind),
                            n.kind.as_str()
                        ),
                    );
                }
                self.end_port(
                    &at("target_port"),
                    &format!("{name} target_port"),
                    target_port,
                );
            }
            Check::ZoningDenied { from, to } => {
                self.end_port(&at("from"), &format!("{name} from"), from);
                self.end_port(&at("to"), &format!("{name} to"), to);
            }
            Check::RoutePath { from, to, path } => {
                self.switch_named(&at("from"), &format!("{name} from"), from);
                self.switch_named(&at("to"), &format!("{name} to"), to);
                if path.is_empty() {
                    self.err(
                        &at("path"),
                        format!("{name}: path must list the switches from \"{from}\" to \"{to}\""),
                    );
                    return;
                }
                let mut all_known = true;
                for (j, sw) in path.iter().enumerate() {
                    all_known &= self
                        .switch_named(&format!("{ptr}/path/{j}"), &format!("{name} path"), sw)
                        .is_some();
                    if path[..j].contains(sw) {
                        self.err(
                            &format!("{ptr}/path/{j}"),
                            format!("{name} path: \"{sw}\" appears twice"),
                        );
                    }
                }
                if path.first() != Some(from) {
                    self.err(
                        &format!("{ptr}/path/0"),
                        format!("{name} path must start at from \"{from}\""),
                    );
                }
                if path.last() != Some(to) {
                    self.err(
                        &format!("{ptr}/path/{}", path.len() - 1),
                        format!("{name} path must end at to \"{to}\""),
                    );
                }
                if all_known {
                    for (j, hop) in path.windows(2).enumerate() {
                        let pair = if hop[0] < hop[1] {
                            (hop[0].as_str(), hop[1].as_str())
                        } else {
                            (hop[1].as_str(), hop[0].as_str())
                        };
                        if !self.isls.contains(&pair) {
                            self.err(
                                &format!("{ptr}/path/{}", j + 1),
                                format!(
                                    "{name} path: no ISL between \"{}\" and \"{}\"",
                                    hop[0], hop[1]
                                ),
                            );
                        }
                    }
                }
            }
            Check::PortErrorsAtLeast { port, .. } => {
                if let Some(n) = self.port_ref(&at("port"), &format!("{name} port"), port)
                    && n.kind != NodeKind::Switch
                {
                    self.err(
                        &at("port"),
                        format!("{name} port \"{port}\": \"{}\" is not a switch", n.name),
                    );
                }
            }
            Check::FramesDropped { switch, port, .. } => {
                if let Some(n) = self.switch_named(&at("switch"), &format!("{name} switch"), switch)
                    && let Some(p) = port
                    && *p >= n.ports
                {
                    self.err(
                        &at("port"),
                        format!(
                            "{name}: switch \"{switch}\" has no port {p} ({} ports)",
                            n.ports
                        ),
                    );
                }
            }
            Check::RelayState { relay, .. } => {
                self.kind_named(
                    &at("relay"),
                    &format!("{name} relay"),
                    relay,
                    NodeKind::Relay,
                );
            }
            Check::RscnSeen { port, .. } | Check::LoggedIn { port } => {
                self.end_port(&at("port"), &format!("{name} port"), port);
            }
            Check::NoAckedWriteLost { workload, volume } => {
                self.workload_ref(&at("workload"), &format!("{name} workload"), workload);
                self.lu_ref(&at("volume"), &format!("{name} volume"), volume);
            }
            Check::WorkloadErrors {
                workload,
                p50_below,
                ..
            } => {
                self.workload_ref(&at("workload"), &format!("{name} workload"), workload);
                if let Some(other) = p50_below {
                    self.workload_ref(&at("p50_below"), &format!("{name} p50_below"), other);
                }
            }
            Check::TapeMatches {
                tape,
                volume,
                lba,
                blocks,
            } => {
                self.kind_named(&at("tape"), &format!("{name} tape"), tape, NodeKind::Tape);
                if let Some(lu) = self.lu_ref(&at("volume"), &format!("{name} volume"), volume) {
                    if *blocks == 0 || lba.saturating_add(*blocks) > lu.blocks {
                        self.err(
                            &at("blocks"),
                            format!(
                                "{name}: {lba}+{blocks} is outside {volume} ({} blocks)",
                                lu.blocks
                            ),
                        );
                    }
                }
            }
            Check::BlocksHold { volume, lba, bytes } => {
                let lu = self.lu_ref(&at("volume"), &format!("{name} volume"), volume);
                if bytes.is_empty() {
                    self.err(
                        &at("bytes"),
                        format!("{name}: give at least one byte value"),
                    );
                } else if let Some(lu) = lu
                    && lba.saturating_add(bytes.len() as u64) > lu.blocks
                {
                    self.err(
                        &at("lba"),
                        format!(
                            "{name}: {lba}+{} is outside {volume} ({} blocks)",
                            bytes.len(),
                            lu.blocks
                        ),
                    );
                }
            }
            Check::VolumesEqual { a, b, .. } => {
                self.lu_ref(&at("a"), &format!("{name} a"), a);
                self.lu_ref(&at("b"), &format!("{name} b"), b);
                if a == b {
                    self.err(&at("b"), format!("{name}: a and b are the same LU \"{a}\""));
                }
            }
            Check::Masked { host, target } => {
                self.host_named(&at("host"), &format!("{name} host"), host);
                self.lu_ref(&at("target"), &format!("{name} target"), target);
            }
            Check::ReadReturns {
                host,
                target,
                lba,
                blocks,
                status,
                sense_key,
            } => {
                self.host_named(&at("host"), &format!("{name} host"), host);
                let lu = self.lu_ref(&at("target"), &format!("{name} target"), target);
                if *blocks == 0 {
                    self.err(&at("blocks"), format!("{name}: blocks must be at least 1"));
                } else if let Some(lu) = lu
                    && lu.blocks > 0
                {
                    let n = lu.blocks;
                    let end = lba.saturating_add(u64::from(*blocks));
                    if *lba >= n {
                        self.err(
                            &at("lba"),
                            format!(
                                "{name}: lba {lba} is past the end of LU \"{target}\" ({n} blocks, LBAs 0–{})",
                                n - 1
                            ),
                        );
                    } else if end > n {
                        self.err(
                            &at("blocks"),
                            format!(
                                "{name}: {blocks} blocks from lba {lba} run past the end of LU \"{target}\" ({n} blocks, LBAs 0–{})",
                                n - 1
                            ),
                        );
                    }
                }
                if let Some(key) = sense_key {
                    if *status != ExpectStatus::CheckCondition {
                        self.err(
                            &at("sense_key"),
                            format!(
                                "{name}: sense_key is allowed only with status \"check_condition\""
                            ),
                        );
                    }
                    if !SENSE_KEYS.contains(&key.as_str()) {
                        let fixed = key.trim().to_uppercase().replace(['_', '-'], " ");
                        let hint = if SENSE_KEYS.contains(&fixed.as_str()) {
                            format!("; write it \"{fixed}\"")
                        } else {
                            format!("; expected one of: {}", SENSE_KEYS.join(", "))
                        };
                        self.err(
                            &at("sense_key"),
                            format!("{name}: unknown sense key \"{key}\"{hint}"),
                        );
                    }
                }
            }
        }
    }
}

/// One-way fabric latency between two nodes: the least, over paths of cables that
/// pass only through switches, of the sum of each cable's latency as the link model
/// charges it (`km × 5 µs` + the hop latency, `fcsim_fabric::runtime::linkmodel`).
/// `None` when no such path joins them.
pub fn fabric_latency(
    t: &crate::format::Topology,
    from: &str,
    to: &str,
) -> Option<std::time::Duration> {
    use fcsim_fabric::runtime::linkmodel::LinkModel;
    use std::time::Duration;
    let switch = |n: &str| t.switches.iter().any(|s| s.name == n);
    let mut best: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut queue: BTreeSet<(Duration, &str)> = BTreeSet::new();
    best.insert(from, Duration::ZERO);
    queue.insert((Duration::ZERO, from));
    while let Some((d, n)) = queue.pop_first() {
        if n == to {
            return Some(d);
        }
        if best.get(n).is_some_and(|b| *b < d) || (n != from && !switch(n)) {
            continue;
        }
        for l in &t.links {
            let other = if l.a.node == n {
                &l.b.node
            } else if l.b.node == n {
                &l.a.node
            } else {
                continue;
            };
            let nd = d + LinkModel::new(l.km, l.gfc).latency();
            if best.get(other.as_str()).is_none_or(|b| nd < *b) {
                best.insert(other, nd);
                queue.insert((nd, other));
            }
        }
    }
    None
}

/// Relay placement (seed 002 §2.2, R10) for a relay pair from `primary` to `standby`
/// (array names, or `array:lun` volumes) through `relays`: no relay in the primary's
/// disaster zone, and every relay closer to the primary in fabric latency
/// ([`fabric_latency`]) than the standby is. The message names the relay and the
/// reason.
pub fn validate_relay_placement(
    t: &crate::format::Topology,
    primary: &str,
    standby: &str,
    relays: &[String],
) -> Result<(), String> {
    use fcsim_devices::relay::{RelayPlacement, validate_placement};
    let node = |s: &str| s.split(':').next().unwrap_or(s).to_string();
    let (primary, standby) = (node(primary), node(standby));
    let zone_of = |n: &str| -> Result<String, String> {
        let v = t.node(n).ok_or_else(|| format!("no node named \"{n}\""))?;
        let site = t
            .site(v.site)
            .ok_or_else(|| format!("{n}: no site named \"{}\"", v.site))?;
        Ok(site.disaster_zone().to_string())
    };
    let primary_zone = zone_of(&primary)?;
    let standby_latency = fabric_latency(t, &primary, &standby)
        .ok_or_else(|| format!("no fabric path from {primary} to the standby {standby}"))?;
    let mut placed = Vec::new();
    for r in relays {
        match t.node(r) {
            Some(v) if v.kind == NodeKind::Relay => {}
            Some(v) => {
                return Err(format!(
                    "\"{r}\" is {} {}, not a relay",
                    article(v.kind),
                    v.kind.as_str()
                ));
            }
            None => return Err(format!("no relay named \"{r}\"")),
        }
        placed.push(RelayPlacement {
            name: r.clone(),
            zone: zone_of(r)?,
            latency: fabric_latency(t, &primary, r)
                .ok_or_else(|| format!("no fabric path from {primary} to the relay {r}"))?,
        });
    }
    validate_placement(&primary_zone, standby_latency, &placed).map_err(|e| e.to_string())
}

fn article(kind: NodeKind) -> &'static str {
    if kind == NodeKind::Array { "an" } else { "a" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::TimedStep;

    const BASE: &str = r#"{
  "name": "t",
  "topology": {
    "sites": [{"name": "tokyo"}, {"name": "osaka", "zone": "kansai"}],
    "switches": [
      {"name": "sw1", "site": "tokyo", "ports": 8},
      {"name": "sw2", "site": "osaka", "ports": 8}
    ],
    "arrays": [
      {"name": "arr1", "site": "osaka", "ports": 1, "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}]}
    ],
    "hosts": [
      {"name": "h1", "site": "tokyo", "ports": 1}
    ],
    "links": [
      {"a": "h1/0", "b": "sw1/0"},
      {"a": "arr1/0", "b": "sw2/0"},
      {"a": "sw1/7", "b": "sw2/7", "km": 10}
    ],
    "zones": [
      {"name": "z1", "members": ["h1/0", "arr1/0"]}
    ]
  },
  "steps": [
    {"at": "1ms", "op": "check", "check": "logged_in", "port": "h1/0"}
  ]
}"#;

    /// BASE with `from` replaced by `to` (which must occur exactly once).
    fn with(from: &str, to: &str) -> String {
        assert_eq!(
            BASE.matches(from).count(),
            1,
            "{from:?} must occur once in BASE"
        );
        BASE.replace(from, to)
    }

    /// 1-based line and character column of the `nth` (from 0) occurrence of `needle`.
    fn pos(src: &str, needle: &str, nth: usize) -> (usize, usize) {
        let (off, _) = src
            .match_indices(needle)
            .nth(nth)
            .unwrap_or_else(|| panic!("{needle:?} #{nth} not in source"));
        let p = Locator::new(src).position_of_offset(off);
        (p.line, p.column)
    }

    fn diags(src: &str) -> Vec<Diagnostic> {
        match parse(src, "x.json") {
            Ok(_) => Vec::new(),
            Err(d) => d.items,
        }
    }

    /// Asserts exactly one diagnostic, at the `nth` occurrence of `needle`, whose message
    /// contains `text`.
    fn one_at(src: &str, needle: &str, nth: usize, text: &str) {
        let d = diags(src);
        assert_eq!(d.len(), 1, "expected one diagnostic, got {d:#?}");
        has_at(src, needle, nth, text);
    }

    /// Asserts some diagnostic at the `nth` occurrence of `needle` contains `text`.
    fn has_at(src: &str, needle: &str, nth: usize, text: &str) {
        let (line, column) = pos(src, needle, nth);
        let d = diags(src);
        assert!(
            d.iter()
                .any(|x| x.line == line && x.column == column && x.message.contains(text)),
            "no diagnostic at {line}:{column} containing {text:?}; got {d:#?}"
        );
    }

    #[test]
    fn base_is_valid_and_gets_derived_values() {
        let s = parse(BASE, "x.json").unwrap();
        let t = &s.topology;
        assert_eq!(s.seed, 1);
        assert_eq!(s.tick, crate::SimDuration::from_micros(10));
        assert_eq!(t.zone_cfg, "cfg");
        assert_eq!(t.switch_domain("sw1").unwrap().get(), 1);
        assert_eq!(t.switch_domain("sw2").unwrap().get(), 2);
        assert_eq!(
            t.node_wwnn("sw1").unwrap().to_string(),
            "10:00:00:05:1e:00:00:01"
        );
        assert_eq!(
            t.port_wwpn(&PortRef::new("sw2", 7)).unwrap().to_string(),
            "20:07:00:05:1e:00:00:02"
        );
        assert_eq!(
            t.node_wwnn("h1").unwrap().to_string(),
            "50:00:0c:90:00:00:10:00"
        );
        assert_eq!(
            t.port_wwpn(&PortRef::new("h1", 0)).unwrap().to_string(),
            "50:00:0c:90:00:00:10:01"
        );
        assert_eq!(
            t.port_wwpn(&PortRef::new("arr1", 0)).unwrap().to_string(),
            "50:06:0e:80:00:00:10:01"
        );
        assert_eq!(t.port_wwpn(&PortRef::new("arr1", 1)), None);
        assert_eq!(t.disaster_sites("kansai"), vec!["osaka"]);
        assert_eq!(t.disaster_sites("tokyo"), vec!["tokyo"]);
    }

    #[test]
    fn display_is_path_line_column_message() {
        let src = with(
            r#"{"a": "h1/0", "b": "sw1/0"}"#,
            r#"{"a": "h1/0", "b": "sw9/0"}"#,
        );
        let e = parse(&src, "scenarios/x.json").unwrap_err();
        let (l, c) = pos(&src, "\"sw9/0\"", 0);
        assert_eq!(
            e.to_string(),
            format!("scenarios/x.json:{l}:{c}: link b \"sw9/0\": no node named \"sw9\"")
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let src = "{\n  \"name\": \"t\"\n  \"topology\": {}\n}";
        let d = diags(src);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].line, d[0].column), (3, 3), "{d:?}");
        assert!(d[0].message.contains("expected `,`"), "{}", d[0].message);
        assert!(!d[0].message.contains(" at line "), "{}", d[0].message);
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let cases = [
            (
                r#""ports": 8},"#,
                r#""ports": "eight"},"#,
                "\"eight\"",
                "invalid type",
            ),
            (r#""a": "h1/0""#, r#""a": "h1-0""#, "\"h1-0\"", "not a port"),
            (
                r#"["h1/0", "arr1/0"]"#,
                r#"["h1/0", "arr1:0"]"#,
                "\"arr1:0\"",
                "not a port",
            ),
            (
                r#""block_bytes": 512"#,
                r#""block_bytes": -512"#,
                "-512",
                "invalid value",
            ),
            // Step fields are buffered by serde: the error points at the step.
            (
                r#"{"at": "1ms","#,
                r#"{"at": "1 ms","#,
                r#"{"at": "1 ms""#,
                "not a duration",
            ),
            (
                r#""port": "h1/0"}"#,
                r#""port": 7}"#,
                r#"{"at": "1ms""#,
                "invalid type",
            ),
        ];
        for (from, to, needle, text) in cases {
            let src = with(from, to);
            let d = diags(&src);
            assert_eq!(d.len(), 1, "{to}: {d:?}");
            assert!(d[0].message.contains(text), "{to}: {}", d[0].message);
            assert_eq!(
                (d[0].line, d[0].column),
                pos(&src, needle, 0),
                "{to}: {d:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_rejected_everywhere() {
        let cases = [
            (r#""name": "t","#, r#""name": "t", "colour": 1,"#, "colour"),
            (
                r#"{"name": "tokyo"}"#,
                r#"{"name": "tokyo", "city": "x"}"#,
                "city",
            ),
            (r#""ports": 8},"#, r#""ports": 8, "speed": 1},"#, "speed"),
            (
                r#""block_bytes": 512}"#,
                r#""block_bytes": 512, "thin": true}"#,
                "thin",
            ),
            (r#""km": 10}"#, r#""km": 10, "miles": 6}"#, "miles"),
            (
                r#""port": "h1/0"}"#,
                r#""port": "h1/0", "extra": 1}"#,
                "extra",
            ),
            (
                r#""check": "logged_in""#,
                r#""check": "looged_in""#,
                "looged_in",
            ),
            (r#""op": "check""#, r#""op": "chek""#, "chek"),
            (
                r#""members": ["h1/0", "arr1/0"]}"#,
                r#""members": ["h1/0", "arr1/0"], "x": 1}"#,
                "`x`",
            ),
        ];
        for (from, to, word) in cases {
            let src = with(from, to);
            let d = diags(&src);
            assert_eq!(d.len(), 1, "{to}: {d:?}");
            assert!(d[0].message.contains(word), "{to}: {}", d[0].message);
            assert_eq!(d[0].line, pos(&src, to, 0).0, "{to}: {d:?}");
        }
        // Setup steps must not carry `at`, and timed steps must.
        let src = with(
            r#""steps": ["#,
            r#""setup": [{"op": "wait", "for": "1ms", "at": "1ms"}], "steps": ["#,
        );
        assert!(
            diags(&src)[0].message.contains("unknown field `at`"),
            "{:?}",
            diags(&src)
        );
        let src = with(r#"{"at": "1ms", "op""#, r#"{"op""#);
        assert!(
            diags(&src)[0].message.contains("missing field `at`"),
            "{:?}",
            diags(&src)
        );
    }

    #[test]
    fn duplicate_node_names() {
        let src = with(
            r#""links""#,
            r#""tapes": [{"name": "h1", "site": "tokyo"}], "links""#,
        );
        one_at(
            &src,
            "\"h1\", \"site\": \"tokyo\"}",
            0,
            "duplicate node name \"h1\"",
        );
    }

    #[test]
    fn unknown_site() {
        let src = with(
            r#""site": "tokyo", "ports": 1}"#,
            r#""site": "kyoto", "ports": 1}"#,
        );
        one_at(&src, "\"kyoto\"", 0, "no site named \"kyoto\"");
    }

    #[test]
    fn bad_names_and_site_zones() {
        let src = with(
            r#"{"name": "osaka", "zone": "kansai"}"#,
            r#"{"name": "osaka", "zone": "tokyo"}"#,
        );
        one_at(&src, "\"tokyo\"}", 1, "also the name of another site");
        let src = with(
            r#"{"name": "osaka", "zone": "kansai"}"#,
            r#"{"name": "tokyo"}"#,
        );
        has_at(&src, "\"tokyo\"", 1, "duplicate site name");
    }

    #[test]
    fn unknown_node_and_port_out_of_range_in_link() {
        let src = with(
            r#"{"a": "h1/0", "b": "sw1/0"}"#,
            r#"{"a": "h1/0", "b": "sw9/0"}"#,
        );
        one_at(
            &src,
            "\"sw9/0\"",
            0,
            "link b \"sw9/0\": no node named \"sw9\"",
        );
        let src = with(
            r#"{"a": "h1/0", "b": "sw1/0"}"#,
            r#"{"a": "h1/0", "b": "sw1/8"}"#,
        );
        one_at(
            &src,
            "\"sw1/8\"",
            0,
            "no port 8; switch \"sw1\" has 8 ports (0–7)",
        );
    }

    #[test]
    fn port_used_by_two_links() {
        let src = with(
            r#"{"a": "arr1/0", "b": "sw2/0"},"#,
            r#"{"a": "arr1/0", "b": "sw2/0"}, {"a": "arr1/0", "b": "sw2/1"},"#,
        );
        one_at(&src, "\"arr1/0\"", 1, "port already used by link 1");
    }

    #[test]
    fn end_node_to_end_node_link_rejected() {
        let src = with(r#"{"name": "h1", "site": "tokyo", "ports": 1}"#, r#"{"name": "h1", "site": "tokyo", "ports": 1}, {"name": "h2", "site": "tokyo", "ports": 1}"#)
            .replace(r#"{"a": "arr1/0", "b": "sw2/0"}"#, r#"{"a": "h2/0", "b": "arr1/0"}"#);
        one_at(&src, r#"{"a": "h2/0""#, 0, "joins two end nodes");
        let src = with(
            r#"{"a": "sw1/7", "b": "sw2/7", "km": 10}"#,
            r#"{"a": "sw1/7", "b": "sw1/6"}"#,
        );
        one_at(&src, r#"{"a": "sw1/7""#, 0, "joins a node to itself");
    }

    #[test]
    fn unlinked_end_node_port() {
        let src = with(
            r#""site": "tokyo", "ports": 1}"#,
            r#""site": "tokyo", "ports": 3}"#,
        );
        one_at(
            &src,
            "3}",
            0,
            "host \"h1\": \"h1/1\", \"h1/2\" are not linked to a switch",
        );
    }

    #[test]
    fn ports_range() {
        let src = with(r#""ports": 8},"#, r#""ports": 300},"#);
        has_at(&src, "300", 0, "ports must be 1–256");
    }

    #[test]
    fn domains() {
        let src = with(
            r#""site": "tokyo", "ports": 8}"#,
            r#""site": "tokyo", "domain": 240, "ports": 8}"#,
        );
        one_at(&src, "240", 0, "outside 1–239");
        let src = with(
            r#""site": "tokyo", "ports": 8}"#,
            r#""site": "tokyo", "domain": 0, "ports": 8}"#,
        );
        one_at(&src, "0, \"ports\"", 0, "outside 1–239");
        let src = with(
            r#""site": "tokyo", "ports": 8}"#,
            r#""site": "tokyo", "domain": 5, "ports": 8}"#,
        )
        .replace(
            r#""site": "osaka", "ports": 8}"#,
            r#""site": "osaka", "domain": 5, "ports": 8}"#,
        );
        one_at(&src, "5,", 1, "domain 5 is already used by switch \"sw1\"");
    }

    #[test]
    fn domains_assigned_in_name_order() {
        let src = BASE
            .replace(r#"{"name": "sw1", "site": "tokyo", "ports": 8}"#, r#"{"name": "sw1", "site": "tokyo", "domain": 1, "ports": 8}, {"name": "sw10", "site": "tokyo", "ports": 8}"#)
            .replace(r#"{"name": "sw2", "site": "osaka", "ports": 8}"#, r#"{"name": "sw2", "site": "osaka", "ports": 8}, {"name": "sw0", "site": "osaka", "domain": 3, "ports": 8}"#);
        let s = parse(&src, "x.json").unwrap();
        let d = |n: &str| s.topology.switch_domain(n).unwrap().get();
        assert_eq!((d("sw1"), d("sw10"), d("sw2"), d("sw0")), (1, 2, 4, 3));
    }

    #[test]
    fn duplicate_and_miscounted_wwns() {
        let w = "50:06:0e:80:12:34:56:78";
        let src = with(
            r#""site": "tokyo", "ports": 1}"#,
            &format!(r#""site": "tokyo", "ports": 1, "wwn": "{w}"}}"#),
        )
        .replace(
            r#""ports": 1, "lus""#,
            &format!(r#""ports": 1, "port_wwpns": ["{w}"], "lus""#),
        );
        one_at(
            &src,
            &format!("\"{w}\""),
            1,
            "is also the WWN of \"arr1/0\"",
        );
        let src = with(
            r#""site": "tokyo", "ports": 1}"#,
            r#""site": "tokyo", "ports": 1, "port_wwpns": []}"#,
        );
        one_at(&src, "[]}", 0, "0 port_wwpns for 1 ports");
        // A written WWN equal to a derived one (arr1's derived WWNN).
        let src = with(
            r#""site": "tokyo", "ports": 1}"#,
            r#""site": "tokyo", "ports": 1, "wwn": "50:06:0e:80:00:00:10:00"}"#,
        );
        one_at(
            &src,
            "\"50:06:0e:80:00:00:10:00\"",
            0,
            "also the derived WWN of \"arr1\"",
        );
    }

    #[test]
    fn zones() {
        let src = with(r#"["h1/0", "arr1/0"]"#, r#"["h1/0", "arr9/0"]"#);
        one_at(
            &src,
            "\"arr9/0\"",
            0,
            "zone \"z1\" member \"arr9/0\": no node named \"arr9\"",
        );
        let src = with(r#"["h1/0", "arr1/0"]"#, r#"["h1/0", "arr1/3"]"#);
        one_at(&src, "\"arr1/3\"", 0, "no port 3");
        let src = with(r#"["h1/0", "arr1/0"]"#, r#"[]"#);
        one_at(&src, "[]", 0, "zone \"z1\" has no members");
        let src = with(
            r#"["h1/0", "arr1/0"]}"#,
            r#"["h1/0", "arr1/0"]}, {"name": "z1", "members": ["h1/0", "h1/0"]}"#,
        );
        has_at(&src, "\"z1\"", 1, "duplicate zone name \"z1\"");
        has_at(&src, "\"h1/0\"", 3, "listed twice");
        assert_eq!(diags(&src).len(), 2);
    }

    #[test]
    fn luns_and_block_sizes() {
        let src = with(
            r#"{"lun": 0, "blocks": 100, "block_bytes": 512}"#,
            r#"{"lun": 0, "blocks": 100, "block_bytes": 512}, {"lun": 0, "blocks": 0, "block_bytes": 1024}"#,
        );
        has_at(&src, "0, \"blocks\": 0", 0, "LUN 0 defined twice");
        has_at(
            &src,
            "0, \"block_bytes\": 1024",
            0,
            "blocks must be at least 1",
        );
        has_at(&src, "1024", 0, "block_bytes must be 512 or 4096");
        assert_eq!(diags(&src).len(), 3);
        let src = with(
            r#""ports": 1, "lus""#,
            r#""ports": 1, "functions": ["xcopy", "xcopy"], "lus""#,
        );
        one_at(&src, "\"xcopy\"", 1, "listed twice");
        let src = with(
            r#""ports": 1, "lus""#,
            r#""ports": 1, "functions": ["teleport"], "lus""#,
        );
        assert!(
            diags(&src)[0]
                .message
                .contains("unknown variant `teleport`")
        );
    }

    #[test]
    fn link_rate_and_distance() {
        let src = with(r#""km": 10}"#, r#""km": -1, "gfc": 10}"#);
        has_at(&src, "-1", 0, "km must be a number ≥ 0");
        has_at(&src, "10}", 0, "gfc 10 is not a Fibre Channel rate");
        assert_eq!(diags(&src).len(), 2);
    }

    #[test]
    fn steps_must_be_in_time_order() {
        let src = with(
            r#""port": "h1/0"}"#,
            r#""port": "h1/0"}, {"at": "500us", "op": "crash", "node": "arr1"}"#,
        );
        one_at(
            &src,
            "\"500us\"",
            0,
            "comes before the previous step's \"1ms\"",
        );
    }

    #[test]
    fn step_refs() {
        let step = |s: &str| {
            with(
                r#"{"at": "1ms", "op": "check", "check": "logged_in", "port": "h1/0"}"#,
                &format!(r#"{{"at": "1ms", {s}}}"#),
            )
        };
        one_at(
            &step(r#""op": "crash", "node": "h9""#),
            "\"h9\"",
            0,
            "crash node: no node named \"h9\"",
        );
        one_at(
            &step(r#""op": "link_down", "port": "sw1/3""#),
            "\"sw1/3\"",
            0,
            "port has no link",
        );
        one_at(
            &step(r#""op": "link_up", "port": "h1/1""#),
            "\"h1/1\"",
            0,
            "no port 1",
        );
        one_at(
            &step(r#""op": "disaster", "site": "kanto""#),
            "\"kanto\"",
            0,
            "neither a site nor a disaster zone",
        );
        assert!(diags(&step(r#""op": "disaster", "site": "kansai""#)).is_empty());
        one_at(
            &step(r#""op": "partition", "a": "tokyo", "b": "nara""#),
            "\"nara\"",
            0,
            "partition b: no site named \"nara\"",
        );
        one_at(
            &step(r#""op": "heal", "a": "tokyo", "b": "tokyo""#),
            "\"tokyo\"",
            4,
            "same site",
        );
        one_at(
            &step(
                r#""op": "zone_activate", "cfg": "c2", "zones": [{"name": "z", "members": ["h7/0"]}]"#,
            ),
            "\"h7/0\"",
            0,
            "no node named \"h7\"",
        );
        one_at(
            &step(r#""op": "zone_activate", "cfg": "", "zones": []"#),
            "\"\"",
            0,
            "cfg must not be empty",
        );
        assert!(diags(&step(r#""op": "zone_deactivate""#)).is_empty());
        one_at(
            &step(r#""op": "wait""#),
            r#"{"at": "1ms", "op": "wait""#,
            0,
            "exactly one of",
        );
        one_at(
            &step(r#""op": "wait", "until": {"fabric": "converged"}"#),
            "{\"fabric\"",
            0,
            "only in setup",
        );
        let d = diags(&step(r#""op": "wait", "until": {"fabric": "molten"}"#));
        assert!(d[0].message.contains("unknown variant `molten`"), "{d:?}");
        let d = diags(&step(r#""op": "wait", "until": {"pair": "p0"}"#));
        assert!(d[0].message.contains("missing field `state`"), "{d:?}");
        let d = diags(&step(r#""op": "wait", "until": {"disk": "p0"}"#));
        assert!(d[0].message.contains("unknown wait condition"), "{d:?}");
    }

    #[test]
    fn pairs_are_checked() {
        // arr1 runs no copy function, has one LU; arr2 is added with two.
        let two = with(
            r#"{"name": "arr1", "site": "osaka", "ports": 1, "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}]}"#,
            r#"{"name": "arr1", "site": "osaka", "ports": 1, "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}]},
      {"name": "arr2", "site": "osaka", "ports": 1, "functions": ["local-pair"], "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}, {"lun": 1, "blocks": 50, "block_bytes": 512}]}"#,
        )
        .replace(
            r#"{"a": "arr1/0", "b": "sw2/0"},"#,
            r#"{"a": "arr1/0", "b": "sw2/0"}, {"a": "arr2/0", "b": "sw2/1"},"#,
        );
        let steps = |s: &str| {
            two.replace(
                r#"{"at": "1ms", "op": "check", "check": "logged_in", "port": "h1/0"}"#,
                s,
            )
        };
        let d = diags(&steps(
            r#"{"at": "1ms", "op": "pair_create", "name": "p", "primary": "arr1:0", "secondary": "arr2:0", "mode": "sync"}"#,
        ));
        assert!(
            d.len() == 1 && d[0].message.contains("does not run `remote-sync`"),
            "{d:?}"
        );
        let d = diags(&steps(
            r#"{"at": "1ms", "op": "pair_create", "name": "p", "primary": "arr2:0", "secondary": "arr2:1", "mode": "local"}"#,
        ));
        assert!(
            d.len() == 1 && d[0].message.contains("differs from arr2:0"),
            "{d:?}"
        );
        let d = diags(&steps(
            r#"{"at": "1ms", "op": "pair_create", "name": "p", "primary": "arr2:0", "secondary": "arr1:0", "mode": "local"}"#,
        ));
        assert!(d[0].message.contains("must be on arr2"), "{d:?}");
        let d = diags(&steps(
            r#"{"at": "1ms", "op": "pair_split", "pair": "p"}, {"at": "2ms", "op": "pair_create", "name": "p", "primary": "arr2:0", "secondary": "arr2:1", "mode": "local"}"#,
        ));
        assert!(
            d.iter()
                .any(|x| x.message.contains("created by a later step")),
            "{d:?}"
        );
        let d = diags(&steps(
            r#"{"at": "1ms", "op": "check", "check": "pair_state", "pair": "nope", "state": "gone"}"#,
        ));
        assert!(
            d.iter()
                .any(|x| x.message.contains("no pair or group named \"nope\"")),
            "{d:?}"
        );
        assert!(
            d.iter().any(|x| x.message.contains("pair state \"gone\"")),
            "{d:?}"
        );
    }

    #[test]
    fn relay_fields_are_checked() {
        // arr1 and arr2 run remote-async; a relay pair p (group g) arr1:0 → arr2:0.
        let two = with(
            r#"{"name": "arr1", "site": "osaka", "ports": 1, "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}]}"#,
            r#"{"name": "arr1", "site": "osaka", "ports": 1, "functions": ["remote-async"], "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}]},
      {"name": "arr2", "site": "osaka", "ports": 1, "functions": ["remote-async"], "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}]}"#,
        )
        .replace(
            r#"{"a": "arr1/0", "b": "sw2/0"},"#,
            r#"{"a": "arr1/0", "b": "sw2/0"}, {"a": "arr2/0", "b": "sw2/1"},"#,
        );
        let steps = |create: &str, s: &str| {
            two.replace(
                r#"{"at": "1ms", "op": "check", "check": "logged_in", "port": "h1/0"}"#,
                &format!(r#"{create}, {s}"#),
            )
        };
        let relay = r#"{"at": "1ms", "op": "pair_create", "name": "p", "primary": "arr1:0", "secondary": "arr2:0", "mode": "relay", "group": "g", "relay": {"relays": ["50:06:0e:80:00:00:00:01", "arr2/0", "arr2"], "consistency": "epochs"}}"#;
        let ok = diags(&steps(
            relay,
            r#"{"at": "2ms", "op": "restart_point", "pair": "g", "app_state": "x"}, {"at": "3ms", "op": "relay_takeover", "standby": "arr2", "group": "g"}, {"at": "4ms", "op": "check", "check": "relay_standby", "array": "arr2", "group": "g", "fenced": true}"#,
        ));
        assert!(ok.is_empty(), "{ok:?}");
        let d = diags(&steps(
            &relay
                .replace("50:06:0e:80:00:00:00:01", "r1")
                .replace("\"arr2\"]", "\"h1/0\"]"),
            r#"{"at": "3ms", "op": "relay_takeover", "standby": "arr1", "group": "g"}, {"at": "4ms", "op": "takeover", "pair": "p"}, {"at": "5ms", "op": "pair_split", "pair": "g"}"#,
        ));
        for want in [
            "relay \"r1\": no node named \"r1\"",
            "relay \"h1/0\": h1 is a host",
            "the standby of group \"g\" is arr2",
            "its standby takes over with relay_takeover",
            "which does not split",
        ] {
            assert!(d.iter().any(|x| x.message.contains(want)), "{want}: {d:?}");
        }
        let d = diags(&steps(
            r#"{"at": "1ms", "op": "pair_create", "name": "p", "primary": "arr1:0", "secondary": "arr2:0", "mode": "async", "relay": {}}"#,
            r#"{"at": "2ms", "op": "restart_point", "pair": "p"}"#,
        ));
        assert!(
            d.iter()
                .any(|x| x.message.contains("relay settings belong to mode relay")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|x| x.message.contains("is async, expected relay")),
            "{d:?}"
        );
    }

    #[test]
    fn recovery_fields_are_checked() {
        // arr2 (remote-sync, a recovery block) is added; a local pair gives a name.
        let two = with(
            r#"{"name": "arr1", "site": "osaka", "ports": 1, "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}]}"#,
            r#"{"name": "arr1", "site": "osaka", "ports": 1, "functions": ["remote-sync"], "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}]},
      {"name": "arr2", "site": "osaka", "ports": 1, "functions": ["remote-sync"], "recovery": {"protection": "hold_new", "cache_tracks": 8, "cache_threshold_tracks": 9}, "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}]}"#,
        )
        .replace(
            r#"{"a": "arr1/0", "b": "sw2/0"},"#,
            r#"{"a": "arr1/0", "b": "sw2/0"}, {"a": "arr2/0", "b": "sw2/1"},"#,
        );
        let steps = |s: &str| {
            two.replace(
                r#"{"at": "1ms", "op": "check", "check": "logged_in", "port": "h1/0"}"#,
                &format!(
                    r#"{{"at": "1ms", "op": "pair_create", "name": "p", "primary": "arr1:0", "secondary": "arr2:0", "mode": "sync"}}, {s}"#
                ),
            )
        };
        let d = diags(&steps(
            r#"{"at": "2ms", "op": "recover_pair", "pair": "p", "allowed": "0ms", "max_attempts": 0}"#,
        ));
        assert!(
            d.iter()
                .any(|x| x.message.contains("cache_threshold_tracks is above")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|x| x.message.contains("allowed must be above 0")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|x| x.message.contains("max_attempts must be at least 1")),
            "{d:?}"
        );
        let d = diags(&steps(
            r#"{"at": "2ms", "op": "check", "check": "recovery_outcome", "pair": "p", "outcome": "fine", "cause": "rain", "row_tracks_at_least": 1, "rolled_back": [0]}"#,
        ));
        for text in [
            "outcome \"fine\" is not",
            "cause \"rain\" is not",
            "row_tracks_at_least is reported by the remote",
            "rolled_back is reported by the remote",
            "cache_threshold_tracks is above",
        ] {
            assert!(d.iter().any(|x| x.message.contains(text)), "{text}: {d:?}");
        }
        let d = diags(&steps(
            r#"{"at": "2ms", "op": "wait", "until": {"recovery": "p", "master": "dozing", "writes": 2}},
               {"at": "2ms", "op": "wait", "until": {"recovery": "p", "remote": "ended", "reached": 1}},
               {"at": "2ms", "op": "wait", "until": {"recovery": "p", "remote": "started", "master": "copying"}},
               {"at": "2ms", "op": "wait", "until": {"recovery": "zz", "remote": "started", "tracks_left": 0}},
               {"at": "3ms", "op": "check", "check": "recovery_outcome", "pair": "p", "side": "remote", "outcome": "none", "resent_at_least": 1}"#,
        ));
        for text in [
            "master: unknown phase \"dozing\"",
            "writes: counted at the remote",
            "remote \"ended\" takes no writes or reached count",
            "give exactly one of \"master\" and \"remote\"",
            "no pair or group named \"zz\"",
            "tracks_left: counted at the master",
            "resent_at_least is counted by the master",
        ] {
            assert!(d.iter().any(|x| x.message.contains(text)), "{text}: {d:?}");
        }
        assert_eq!(d.len(), 8, "{d:?}");
        let d = diags(&steps(
            r#"{"at": "2ms", "op": "recover_pair", "pair": "q", "allowed": "1s", "unit": "rack"}"#,
        ));
        assert!(
            d.iter()
                .any(|x| x.message.contains("unknown variant `rack`")),
            "{d:?}"
        );
    }

    #[test]
    fn check_refs() {
        let step = |s: &str| {
            with(
                r#"{"at": "1ms", "op": "check", "check": "logged_in", "port": "h1/0"}"#,
                &format!(r#"{{"at": "1ms", "op": "check", {s}}}"#),
            )
        };
        one_at(
            &step(r#""check": "ns_sees", "host_port": "hx/0", "target_port": "arr1/0""#),
            "\"hx/0\"",
            0,
            "ns_sees host_port \"hx/0\": no node named \"hx\"",
        );
        one_at(
            &step(r#""check": "ns_sees", "host_port": "arr1/0", "target_port": "h1/0""#),
            "\"arr1/0\"",
            2,
            "is an array, not a host",
        );
        one_at(
            &step(r#""check": "ns_sees", "host_port": "h1/0", "target_port": "sw1/1""#),
            "\"sw1/1\"",
            0,
            "is a switch; expected an end-node port",
        );
        one_at(
            &step(r#""check": "zoning_denied", "from": "h1/0", "to": "arr1/5""#),
            "\"arr1/5\"",
            0,
            "no port 5",
        );
        one_at(
            &step(r#""check": "rscn_seen", "port": "sw2/0""#),
            "\"sw2/0\"",
            1,
            "expected an end-node port",
        );
        one_at(
            &step(r#""check": "frames_dropped", "switch": "h1", "at_least": 1"#),
            "\"h1\"",
            1,
            "\"h1\" is a host, not a switch",
        );
        one_at(
            &step(r#""check": "frames_dropped", "switch": "sw1", "port": 9, "at_least": 1"#),
            "9,",
            0,
            "has no port 9",
        );
        let src =
            step(r#""check": "route_path", "from": "sw1", "to": "sw3", "path": ["sw1", "sw3"]"#);
        has_at(&src, "\"sw3\"", 0, "route_path to: no node named \"sw3\"");
        has_at(&src, "\"sw3\"", 1, "route_path path: no node named \"sw3\"");
        assert_eq!(diags(&src).len(), 2);
        let src =
            step(r#""check": "route_path", "from": "sw1", "to": "sw2", "path": ["sw2", "sw1"]"#);
        has_at(&src, "\"sw2\"", 2, "must start at from");
        has_at(&src, "\"sw1\"", 2, "must end at to");
        assert!(
            diags(&step(
                r#""check": "route_path", "from": "sw1", "to": "sw2", "path": ["sw1", "sw2"]"#
            ))
            .is_empty()
        );
        let src =
            step(r#""check": "route_path", "from": "sw1", "to": "sw2", "path": ["sw1", "sw2"]"#)
                .replace(
                    r#"{"a": "sw1/7", "b": "sw2/7", "km": 10}"#,
                    r#"{"a": "sw1/7", "b": "sw1/6"}"#,
                );
        has_at(&src, "\"sw2\"", 2, "no ISL between \"sw1\" and \"sw2\"");
    }

    /// BASE with its one timeline step replaced by `steps` (comma-separated timed steps).
    fn with_steps(steps: &str) -> String {
        with(
            r#"{"at": "1ms", "op": "check", "check": "logged_in", "port": "h1/0"}"#,
            steps,
        )
    }

    /// Asserts exactly one diagnostic, at the value of the first `"key": value` that
    /// `key_value` matches, whose message contains `text`.
    fn one_at_value(src: &str, key_value: &str, text: &str) {
        let d = diags(src);
        assert_eq!(d.len(), 1, "expected one diagnostic, got {d:#?}");
        has_at_value(src, key_value, text);
    }

    /// Asserts some diagnostic at the value of the first `"key": value` that `key_value`
    /// matches contains `text`.
    fn has_at_value(src: &str, key_value: &str, text: &str) {
        let (off, _) = src
            .match_indices(key_value)
            .next()
            .unwrap_or_else(|| panic!("{key_value:?} not in source"));
        let colon = key_value.find(": ").expect("needle is `\"key\": value`");
        let p = Locator::new(src).position_of_offset(off + colon + 2);
        let d = diags(src);
        assert!(
            d.iter()
                .any(|x| x.line == p.line && x.column == p.column && x.message.contains(text)),
            "no diagnostic at {}:{} containing {text:?}; got {d:#?}",
            p.line,
            p.column
        );
    }

    /// A timeline workload step at 1ms with the given extra fields.
    fn workload(fields: &str) -> String {
        format!(
            r#"{{"at": "1ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:0", {fields}}}"#
        )
    }

    #[test]
    fn workload_host_and_target() {
        let ok = with_steps(&workload(r#""count": 10"#));
        assert!(diags(&ok).is_empty(), "{:?}", diags(&ok));
        let s = parse(&ok, "x.json").unwrap();
        let Step::Workload {
            pattern,
            mix,
            read_percent,
            block_bytes,
            qd,
            verify,
            seed,
            ..
        } = &s.steps[0].step
        else {
            panic!("{:?}", s.steps[0]);
        };
        assert_eq!(
            (
                *pattern,
                *mix,
                *read_percent,
                *block_bytes,
                *qd,
                *verify,
                *seed
            ),
            (
                crate::format::WorkloadPattern::Random,
                crate::format::WorkloadMix::Write,
                50,
                4096,
                1,
                false,
                None
            )
        );
        let src =
            with_steps(&workload(r#""count": 10"#).replace(r#""host": "h1""#, r#""host": "hx""#));
        one_at(
            &src,
            "\"hx\"",
            0,
            "workload \"w1\" host: no node named \"hx\"",
        );
        let src =
            with_steps(&workload(r#""count": 10"#).replace(r#""host": "h1""#, r#""host": "sw1""#));
        one_at(&src, "\"sw1\"", 1, "\"sw1\" is a switch, not a host");
        for (target, text) in [
            (
                "arr1:5",
                "workload \"w1\" target \"arr1:5\": array \"arr1\" has no LUN 5 (LUNs: 0)",
            ),
            ("arr9:0", "target \"arr9:0\": no node named \"arr9\""),
            ("h1:0", "\"h1\" is a host, not an array"),
            ("sw2:0", "\"sw2\" is a switch, not an array"),
        ] {
            let src = with_steps(
                &workload(r#""count": 10"#)
                    .replace(r#""target": "arr1:0""#, &format!(r#""target": "{target}""#)),
            );
            one_at_value(&src, &format!(r#""target": "{target}""#), text);
        }
        let src = with_steps(&workload(r#""count": 10"#)).replace(
            r#""ports": 1, "lus": [{"lun": 0, "blocks": 100, "block_bytes": 512}]"#,
            r#""ports": 1"#,
        );
        one_at_value(&src, r#""target": "arr1:0""#, "(it has no LUs)");
    }

    #[test]
    fn a_tape_is_no_lu() {
        let src = with(
            r#""links""#,
            r#""tapes": [{"name": "lib1", "site": "osaka"}], "links""#,
        )
        .replace(
            r#"{"a": "arr1/0", "b": "sw2/0"},"#,
            r#"{"a": "arr1/0", "b": "sw2/0"}, {"a": "lib1/0", "b": "sw2/1"},"#,
        )
        .replace(
            r#"{"at": "1ms", "op": "check", "check": "logged_in", "port": "h1/0"}"#,
            r#"{"at": "1ms", "op": "check", "check": "volumes_equal", "a": "arr1:0", "b": "lib1:0"}"#,
        );
        one_at_value(
            &src,
            r#""b": "lib1:0""#,
            "volumes_equal b \"lib1:0\": \"lib1\" is a tape, not an array",
        );
    }

    #[test]
    fn workload_counts_and_sizes() {
        for (fields, key_value, text) in [
            (
                r#""qd": 4"#,
                "",
                "exactly one of \"count\" and \"duration\"",
            ),
            (
                r#""count": 5, "duration": "10ms""#,
                "",
                "exactly one of \"count\" and \"duration\"",
            ),
            (r#""count": 0"#, r#""count": 0"#, "count must be at least 1"),
            (
                r#""duration": "0ms""#,
                r#""duration": "0ms""#,
                "duration must be at least 1us",
            ),
            (
                r#""duration": "500ns""#,
                r#""duration": "500ns""#,
                "duration must be at least 1us",
            ),
            (
                r#""count": 1, "qd": 0"#,
                r#""qd": 0"#,
                "qd must be at least 1",
            ),
            (
                r#""count": 1, "mix": "mixed", "read_percent": 101"#,
                r#""read_percent": 101"#,
                "read_percent must be 0–100, got 101",
            ),
            (
                r#""count": 1, "block_bytes": 0"#,
                r#""block_bytes": 0"#,
                "block_bytes must be at least 1 block",
            ),
            (
                r#""count": 1, "block_bytes": 1000"#,
                r#""block_bytes": 1000"#,
                "block_bytes 1000 is not a multiple of the block size of LU \"arr1:0\" (512 bytes)",
            ),
            (
                r#""count": 1, "block_bytes": 51712"#,
                r#""block_bytes": 51712"#,
                "block_bytes 51712 is larger than LU \"arr1:0\" (51200 bytes)",
            ),
        ] {
            let src = with_steps(&workload(fields));
            if key_value.is_empty() {
                one_at(&src, r#"{"at": "1ms", "op": "workload""#, 0, text);
            } else {
                one_at_value(&src, key_value, text);
            }
        }
        // The largest I/O is the whole LU, in whole blocks.
        let src = with_steps(&workload(
            r#""duration": "1us", "block_bytes": 51200, "qd": 32, "mix": "mixed", "read_percent": 100, "verify": true, "seed": 7, "pattern": "sequential""#,
        ));
        assert!(diags(&src).is_empty(), "{:?}", diags(&src));
        // A 4096-byte LU needs 4096-byte multiples, and the 4096 default fits it.
        let lu4k = |fields: &str| {
            with_steps(&workload(fields)).replace(
                r#""blocks": 100, "block_bytes": 512"#,
                r#""blocks": 100, "block_bytes": 4096"#,
            )
        };
        assert!(diags(&lu4k(r#""count": 1"#)).is_empty());
        one_at_value(
            &lu4k(r#""count": 1, "block_bytes": 512"#),
            r#""block_bytes": 512"#,
            "not a multiple of the block size of LU \"arr1:0\" (4096 bytes)",
        );
        // The default I/O size (4096) against a 1-block LU: pointed at the step.
        let src = with_steps(&workload(r#""count": 1"#)).replace(
            r#""blocks": 100, "block_bytes": 512"#,
            r#""blocks": 1, "block_bytes": 512"#,
        );
        one_at(
            &src,
            r#"{"at": "1ms", "op": "workload""#,
            0,
            "block_bytes 4096 is larger than LU \"arr1:0\" (512 bytes)",
        );
        // Every problem of one step at once, in position order.
        let src = with_steps(&workload(r#""count": 0, "qd": 0, "read_percent": 101"#));
        let d = diags(&src);
        assert_eq!(d.len(), 3, "{d:#?}");
        has_at_value(&src, r#""count": 0"#, "count must be at least 1");
        has_at_value(&src, r#""qd": 0"#, "qd must be at least 1");
        has_at_value(&src, r#""read_percent": 101"#, "read_percent must be 0–100");
    }

    #[test]
    fn workload_names_are_unique_and_defined_before_use() {
        let wl = |name: &str, at: &str| {
            format!(
                r#"{{"at": "{at}", "op": "workload", "name": "{name}", "host": "h1", "target": "arr1:0", "count": 4}}"#
            )
        };
        let check = |c: &str, name: &str, at: &str| {
            format!(
                r#"{{"at": "{at}", "op": "check", "check": "{c}", "workload": "{name}"{}}}"#,
                if c == "no_acked_write_lost" {
                    r#", "volume": "arr1:0""#
                } else {
                    ""
                }
            )
        };
        // Defined earlier in the timeline, or in setup; equal `at` runs in file order.
        for c in ["no_acked_write_lost", "workload_errors"] {
            let src = with_steps(&format!("{}, {}", wl("w1", "1ms"), check(c, "w1", "1ms")));
            assert!(diags(&src).is_empty(), "{c}: {:?}", diags(&src));
            let src = with_steps(&check(c, "w1", "1ms")).replace(
                r#""steps": ["#,
                r#""setup": [{"op": "workload", "name": "w1", "host": "h1", "target": "arr1:0", "duration": "5ms"}], "steps": ["#,
            );
            assert!(diags(&src).is_empty(), "{c}: {:?}", diags(&src));
            let src = with_steps(&format!("{}, {}", check(c, "w1", "1ms"), wl("w1", "1ms")));
            one_at_value(
                &src,
                r#""workload": "w1""#,
                &format!("{c} workload \"w1\": the workload is started by a later step"),
            );
            let src = with_steps(&check(c, "w9", "1ms"));
            one_at_value(
                &src,
                r#""workload": "w9""#,
                &format!("{c} workload: no workload named \"w9\""),
            );
        }
        // Unique across setup and steps.
        let src = with_steps(&wl("w1", "1ms")).replace(
            r#""steps": ["#,
            r#""setup": [{"op": "workload", "name": "w1", "host": "h1", "target": "arr1:0", "count": 1}], "steps": ["#,
        );
        one_at(&src, "\"w1\"", 1, "duplicate workload name \"w1\"");
        let src = with_steps(&format!("{}, {}", wl("w1", "1ms"), wl("w1", "2ms")));
        one_at(&src, "\"w1\"", 1, "duplicate workload name \"w1\"");
        let src = with_steps(&wl("", "1ms"));
        one_at(&src, "\"\"", 0, "workload name must not be empty");
    }

    /// BASE with sw1 intelligent and `vlus` as its virtual LUs.
    fn with_vlus(vlus: &str) -> String {
        with(
            r#"{"name": "sw1", "site": "tokyo", "ports": 8},"#,
            r#"{"name": "sw1", "site": "tokyo", "ports": 8, "intelligent": true},"#,
        )
        .replace(r#""sw1/7", "b": "sw2/7""#, r#""sw1/5", "b": "sw2/7""#)
        .replace(
            r#"      {"name": "z1", "members": ["h1/0", "arr1/0"]}
    ]"#,
            &format!(
                r#"      {{"name": "z1", "members": ["h1/0", "arr1/0"]}}
    ],
    "virtual_lus": [{vlus}]"#
            ),
        )
    }

    #[test]
    fn virtual_lus_follow_the_mapping_table_rules() {
        let ok = with_vlus(
            r#"{"switch": "sw1", "lun": 0, "extents": [{"lu": "arr1:0", "blocks": 50}, {"internal": true, "blocks": 10}]}"#,
        );
        assert!(diags(&ok).is_empty(), "{:#?}", diags(&ok));
        let s = parse(&ok, "x.json").unwrap();
        let lu: LuRef = "sw1:0".parse().unwrap();
        assert_eq!(s.topology.virtual_lu(&lu).unwrap().blocks(), 60);
        // Past the end of the real LU.
        let src = with_vlus(
            r#"{"switch": "sw1", "lun": 0, "extents": [{"lu": "arr1:0", "start": 60, "blocks": 50}]}"#,
        );
        one_at(
            &src,
            r#"{"lu": "arr1:0""#,
            0,
            "extent ends at block 110 of arr1:0, which has 100 blocks",
        );
        // Two virtual LUs on one real block.
        let src = with_vlus(
            r#"{"switch": "sw1", "lun": 0, "extents": [{"lu": "arr1:0", "blocks": 50}]}, {"switch": "sw1", "lun": 1, "extents": [{"lu": "arr1:0", "start": 40, "blocks": 20}]}"#,
        );
        one_at(
            &src,
            r#"{"lu": "arr1:0""#,
            1,
            "extent overlaps blocks 40..50 of arr1:0, already mapped to virtual LU 0",
        );
        // An LU that does not exist.
        let src =
            with_vlus(r#"{"switch": "sw1", "lun": 0, "extents": [{"lu": "arr1:3", "blocks": 5}]}"#);
        has_at(&src, r#""arr1:3""#, 0, "array \"arr1\" has no LUN 3");
        // Neither lu nor internal.
        let src = with_vlus(r#"{"switch": "sw1", "lun": 0, "extents": [{"blocks": 5}]}"#);
        one_at(
            &src,
            r#"{"blocks": 5}"#,
            0,
            "give either \"lu\" or \"internal\": true",
        );
        // A plain switch has no virtual LUs.
        let src = with_vlus(
            r#"{"switch": "sw2", "lun": 0, "extents": [{"internal": true, "blocks": 5}]}"#,
        );
        one_at(
            &src,
            r#""sw2", "lun""#,
            0,
            "switch \"sw2\" is not intelligent",
        );
        // A cable on an engine port.
        let src = with_vlus("").replace(r#""sw1/5""#, r#""sw1/6""#);
        one_at(
            &src,
            r#""sw1/6""#,
            0,
            "ports 6 and up of \"sw1\" belong to its virtualization engine",
        );
        // Steps and checks on virtual LUs.
        let steps = |s: &str| {
            with_vlus(r#"{"switch": "sw1", "lun": 0, "extents": [{"lu":"arr1:0", "blocks": 50}]}, {"switch": "sw1", "lun": 1, "extents": [{"internal": true, "blocks": 40}]}"#)
                .replace(r#"{"at": "1ms", "op": "check", "check": "logged_in", "port": "h1/0"}"#, s)
        };
        one_at_value(
            &steps(r#"{"at": "1ms", "op": "mirror_start", "src": "sw1:0", "dst": "sw1:1"}"#),
            r#""dst": "sw1:1""#,
            "cannot hold sw1:0",
        );
        one_at_value(
            &steps(
                r#"{"at": "1ms", "op": "check", "check": "backend_commands", "lu": "arr1:0", "at_most": 0}"#,
            ),
            r#""lu": "arr1:0""#,
            "must be a virtual LU",
        );
        one_at_value(
            &steps(
                r#"{"at": "1ms", "op": "check", "check": "operation", "switch": "sw2", "operation": 1, "executors": []}"#,
            ),
            r#""switch": "sw2""#,
            "switch \"sw2\" is not intelligent",
        );
    }

    #[test]
    fn storage_check_refs() {
        let step = |s: &str| with_steps(&format!(r#"{{"at": "1ms", "op": "check", {s}}}"#));
        assert!(
            diags(&step(
                r#""check": "masked", "host": "h1", "target": "arr1:0""#
            ))
            .is_empty()
        );
        one_at_value(
            &step(r#""check": "masked", "host": "arr1", "target": "arr1:0""#),
            r#""host": "arr1""#,
            "masked host: \"arr1\" is an array, not a host",
        );
        one_at_value(
            &step(r#""check": "masked", "host": "h1", "target": "arr1:1""#),
            r#""target": "arr1:1""#,
            "masked target \"arr1:1\": array \"arr1\" has no LUN 1",
        );
        one_at_value(
            &step(r#""check": "volumes_equal", "a": "arr1:0", "b": "arr1:0""#),
            r#""b": "arr1:0""#,
            "volumes_equal: a and b are the same LU \"arr1:0\"",
        );
        let src = step(r#""check": "volumes_equal", "a": "sw1:0", "b": "arr2:0""#);
        has_at_value(
            &src,
            r#""a": "sw1:0""#,
            "volumes_equal a \"sw1:0\": \"sw1\" is a switch, not an array",
        );
        has_at_value(
            &src,
            r#""b": "arr2:0""#,
            "volumes_equal b \"arr2:0\": no node named \"arr2\"",
        );
        assert_eq!(diags(&src).len(), 2);
        let src = with_steps(&format!(
            r#"{}, {{"at": "2ms", "op": "check", "check": "no_acked_write_lost", "workload": "w1", "volume": "h1:0"}}"#,
            workload(r#""count": 1"#)
        ));
        one_at_value(
            &src,
            r#""volume": "h1:0""#,
            "no_acked_write_lost volume \"h1:0\": \"h1\" is a host, not an array",
        );
    }

    #[test]
    fn read_returns_rules() {
        let read = |fields: &str| {
            with_steps(&format!(
                r#"{{"at": "1ms", "op": "check", "check": "read_returns", "host": "h1", "target": "arr1:0", {fields}}}"#
            ))
        };
        for ok in [
            r#""lba": 0, "blocks": 100, "status": "good""#,
            r#""lba": 99, "blocks": 1, "status": "transport_error""#,
            r#""lba": 0, "blocks": 1, "status": "check_condition""#,
            r#""lba": 0, "blocks": 1, "status": "check_condition", "sense_key": "ILLEGAL REQUEST""#,
            r#""lba": 0, "blocks": 1, "status": "check_condition", "sense_key": "MISCOMPARE""#,
        ] {
            assert!(diags(&read(ok)).is_empty(), "{ok}: {:?}", diags(&read(ok)));
        }
        one_at_value(
            &read(r#""lba": 100, "blocks": 1, "status": "good""#),
            r#""lba": 100"#,
            "read_returns: lba 100 is past the end of LU \"arr1:0\" (100 blocks, LBAs 0–99)",
        );
        one_at_value(
            &read(r#""lba": 90, "blocks": 11, "status": "good""#),
            r#""blocks": 11"#,
            "11 blocks from lba 90 run past the end of LU \"arr1:0\"",
        );
        one_at_value(
            &read(r#""lba": 0, "blocks": 0, "status": "good""#),
            r#""blocks": 0"#,
            "read_returns: blocks must be at least 1",
        );
        one_at_value(
            &read(r#""lba": 0, "blocks": 1, "status": "good", "sense_key": "NOT READY""#),
            r#""sense_key": "NOT READY""#,
            "sense_key is allowed only with status \"check_condition\"",
        );
        one_at_value(
            &read(
                r#""lba": 0, "blocks": 1, "status": "check_condition", "sense_key": "illegal_request""#,
            ),
            r#""sense_key": "illegal_request""#,
            "unknown sense key \"illegal_request\"; write it \"ILLEGAL REQUEST\"",
        );
        one_at_value(
            &read(
                r#""lba": 0, "blocks": 1, "status": "check_condition", "sense_key": "LBA OUT OF RANGE""#,
            ),
            r#""sense_key": "LBA OUT OF RANGE""#,
            "expected one of: NO SENSE, RECOVERED ERROR,",
        );
        let src =
            read(r#""lba": 0, "blocks": 1, "status": "transport_error", "sense_key": "BOGUS""#);
        has_at_value(&src, r#""sense_key": "BOGUS""#, "allowed only with status");
        has_at_value(
            &src,
            r#""sense_key": "BOGUS""#,
            "unknown sense key \"BOGUS\"",
        );
        assert_eq!(diags(&src).len(), 2);
        let src = read(r#""lba": 0, "blocks": 1, "status": "fine""#);
        assert!(
            diags(&src)[0].message.contains("unknown variant `fine`"),
            "{:?}",
            diags(&src)
        );
        let src = with_steps(
            r#"{"at": "1ms", "op": "check", "check": "read_returns", "host": "hz", "target": "arr1:3", "lba": 0, "blocks": 1, "status": "good"}"#,
        );
        has_at_value(
            &src,
            r#""host": "hz""#,
            "read_returns host: no node named \"hz\"",
        );
        has_at_value(&src, r#""target": "arr1:3""#, "has no LUN 3");
        assert_eq!(diags(&src).len(), 2);
    }

    #[test]
    fn lun_masking_hosts_and_write_through() {
        let lu = |hosts: &str| {
            with(
                r#"{"lun": 0, "blocks": 100, "block_bytes": 512}"#,
                &format!(r#"{{"lun": 0, "blocks": 100, "block_bytes": 512, "hosts": {hosts}}}"#),
            )
        };
        let s = parse(&lu(r#"["h1", "h1/0"]"#), "x.json").unwrap();
        assert_eq!(s.topology.arrays[0].lus[0].hosts, ["h1", "h1/0"]);
        assert!(!s.topology.arrays[0].write_through);
        one_at(
            &lu(r#"["h9"]"#),
            "\"h9\"",
            0,
            "LU \"arr1:0\" hosts entry \"h9\": no node named \"h9\"",
        );
        one_at(
            &lu(r#"["sw1"]"#),
            "\"sw1\"",
            1,
            "\"sw1\" is a switch, not a host",
        );
        one_at(
            &lu(r#"["arr1/0"]"#),
            "\"arr1/0\"",
            0,
            "hosts entry \"arr1/0\": \"arr1\" is an array, not a host",
        );
        one_at(
            &lu(r#"["h1/3"]"#),
            "\"h1/3\"",
            0,
            "hosts entry \"h1/3\": no port 3; host \"h1\" has 1 port (0–0)",
        );
        one_at(&lu(r#"["h9/0"]"#), "\"h9/0\"", 0, "no node named \"h9\"");
        one_at(
            &lu(r#"["h1/x"]"#),
            "\"h1/x\"",
            0,
            "expected a host name like \"h1\" or a host port like \"h1/0\"",
        );
        one_at(
            &lu(r#"["h1", "h1"]"#),
            "\"h1\"",
            1,
            "hosts entry \"h1\" listed twice",
        );
        let src = lu(r#"["h1/0", "hq", "sw2/0"]"#);
        has_at(&src, "\"hq\"", 0, "no node named \"hq\"");
        has_at(&src, "\"sw2/0\"", 0, "\"sw2\" is a switch, not a host");
        assert_eq!(diags(&src).len(), 2);
        let src = with(
            r#""ports": 1, "lus""#,
            r#""ports": 1, "write_through": true, "lus""#,
        );
        assert!(parse(&src, "x.json").unwrap().topology.arrays[0].write_through);
    }

    #[test]
    fn reports_every_problem_sorted() {
        let src = with(
            r#""site": "tokyo", "ports": 1}"#,
            r#""site": "kyoto", "ports": 1}"#,
        )
        .replace(r#""km": 10}"#, r#""km": 10, "gfc": 3}"#)
        .replace(r#""port": "h1/0"}"#, r#""port": "h1/4"}"#);
        let d = diags(&src);
        assert_eq!(d.len(), 3, "{d:#?}");
        assert!(
            d.windows(2)
                .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column))
        );
    }

    #[test]
    fn derived_names_are_distinct_and_stable() {
        let a = parse(LIB_FABRIC_BASICS, "a").unwrap();
        let b = parse(LIB_FABRIC_BASICS, "b").unwrap();
        assert_eq!(a, b);
        let t = &a.topology;
        let mut all = BTreeSet::new();
        for n in t.nodes() {
            assert!(all.insert(n.wwn.unwrap().0), "{}", n.name);
            for p in 0..n.ports {
                assert!(
                    all.insert(t.port_wwpn(&PortRef::new(n.name, p)).unwrap().0),
                    "{}/{p}",
                    n.name
                );
            }
        }
        assert_eq!(t.switch_domain("sw3").unwrap().get(), 3);
        assert_eq!(t.switch_domain("sw4").unwrap().get(), 4);
        // Derived values survive a round trip through JSON as explicit ones.
        let again = parse(&serde_json::to_string_pretty(&a).unwrap(), "c").unwrap();
        assert_eq!(again, a);
    }

    const LIB_FABRIC_BASICS: &str = include_str!("../library/fabric-basics.json");

    #[test]
    fn library_files_validate() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/library");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Err(d) = crate::check_file(&path) {
                    panic!("{d}");
                }
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    #[test]
    fn unreadable_file_is_one_clean_diagnostic() {
        let e = crate::check_file(std::path::Path::new("/nonexistent/x.json")).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e.to_string()
                .starts_with("/nonexistent/x.json: cannot read: "),
            "{e}"
        );
    }

    /// The names serde lists in "unknown variant `…`, expected one of …" for a bogus tag:
    /// the enum's real variant list, so a new variant cannot hide from the doc test.
    fn variants_of(json: &str) -> Vec<String> {
        let err = serde_json::from_str::<crate::format::Step>(json)
            .unwrap_err()
            .to_string();
        let list = err
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{err}"));
        list.split(", ")
            .map(|v| {
                v.trim_matches(|c: char| c == '`' || c == ' ')
                    .split('`')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn every_doc_example_parses_and_names_every_op_and_check() {
        let doc = include_str!("../../docs/scenario-format.md");
        let mut blocks = Vec::new();
        let mut cur: Option<String> = None;
        for line in doc.lines() {
            match (&mut cur, line.trim_start()) {
                (None, "```json") => cur = Some(String::new()),
                (Some(b), "```") => {
                    blocks.push(std::mem::take(b));
                    cur = None;
                }
                (Some(b), _) => {
                    b.push_str(line);
                    b.push('\n');
                }
                _ => {}
            }
        }
        let (mut ops, mut checks, mut full) = (BTreeSet::new(), BTreeSet::new(), 0);
        let mut note = |step: &Step| {
            ops.insert(step.op().to_string());
            if let Step::Check(c) = step {
                checks.insert(c.name().to_string());
            }
        };
        for block in &blocks {
            if block.trim_start().starts_with("{\n") {
                let s = parse(block, "docs/scenario-format.md")
                    .unwrap_or_else(|d| panic!("{d}\n{block}"));
                s.setup.iter().for_each(&mut note);
                s.steps.iter().for_each(|t| note(&t.step));
                full += 1;
                continue;
            }
            for line in block.lines().filter(|l| !l.trim().is_empty()) {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                if v.get("at").is_some() {
                    note(
                        &serde_json::from_str::<TimedStep>(line)
                            .unwrap_or_else(|e| panic!("{e}: {line}"))
                            .step,
                    );
                } else if v.get("op").is_some() {
                    note(
                        &serde_json::from_str::<Step>(line)
                            .unwrap_or_else(|e| panic!("{e}: {line}")),
                    );
                } else {
                    use crate::format::*;
                    fn ok<T: serde::de::DeserializeOwned>(l: &str) -> bool {
                        serde_json::from_str::<T>(l).is_ok()
                    }
                    let fits = ok::<Site>(line)
                        || ok::<SwitchSpec>(line)
                        || ok::<ArraySpec>(line)
                        || ok::<HostSpec>(line)
                        || ok::<TapeSpec>(line)
                        || ok::<RelaySpec>(line)
                        || ok::<LinkSpec>(line)
                        || ok::<ZoneSpec>(line)
                        || ok::<LuSpec>(line)
                        || ok::<VirtualLuSpec>(line);
                    assert!(fits, "doc example is no topology item: {line}");
                }
            }
        }
        assert!(full >= 1, "the doc must hold a complete example");
        let all_ops: BTreeSet<String> = variants_of(r#"{"op": "?"}"#).into_iter().collect();
        let all_checks: BTreeSet<String> = variants_of(r#"{"op": "check", "check": "?"}"#)
            .into_iter()
            .collect();
        assert!(
            all_ops.contains("link_down") && all_checks.contains("ns_sees"),
            "{all_ops:?} {all_checks:?}"
        );
        assert_eq!(
            ops, all_ops,
            "every op needs a parsed example in docs/scenario-format.md"
        );
        assert_eq!(
            checks, all_checks,
            "every check needs a parsed example in docs/scenario-format.md"
        );
        for key in SENSE_KEYS {
            assert!(
                doc.contains(&format!("`{key}`")),
                "sense key {key} must be listed in docs/scenario-format.md"
            );
        }
    }

    /// BASE with relay `r1` (given by `relay`, a JSON object) cabled to sw2/1, and
    /// `steps` as the timeline.
    fn with_relay(relay: &str, steps: &str) -> String {
        with_steps(steps)
            .replace(
                r#""hosts": ["#,
                &format!(r#""relays": [{relay}], "hosts": ["#),
            )
            .replace(
                r#"{"a": "arr1/0", "b": "sw2/0"},"#,
                r#"{"a": "arr1/0", "b": "sw2/0"}, {"a": "r1/0", "b": "sw2/1"},"#,
            )
    }

    #[test]
    fn relays_are_nodes_with_checked_settings() {
        let ok = r#"{"at": "1ms", "op": "check", "check": "logged_in", "port": "r1/0"}"#;
        let s = parse(
            &with_relay(r#"{"name": "r1", "site": "osaka"}"#, ok),
            "x.json",
        )
        .unwrap_or_else(|d| panic!("{d}"));
        let r = &s.topology.relays[0];
        assert_eq!(
            r.port_wwpns.as_deref().map(|w| w[0].to_string()),
            Some("50:00:59:b0:00:00:10:01".to_string()),
            "NAA 5 under the relay OUI"
        );
        assert_eq!(r.settings().config().validate(), Ok(()));
        // Deferred on a volatile relay: the schedule's mode is pointed at.
        let src = with_relay(
            r#"{"name": "r1", "site": "osaka", "schedule": {"mode": "deferred", "max_age": "5ms"}}"#,
            ok,
        );
        one_at_value(
            &src,
            r#""mode": "deferred""#,
            "needs \"durability\": \"non_volatile\"",
        );
        let src = with_relay(
            r#"{"name": "r1", "site": "osaka", "durability": "non_volatile", "capacity_bytes": 0}"#,
            ok,
        );
        one_at_value(
            &src,
            r#""capacity_bytes": 0"#,
            "capacity_bytes must be at least 1",
        );
        let src = with_relay(
            r#"{"name": "r1", "site": "osaka", "durability": "non_volatile", "schedule": {"mode": "deferred", "clock": {"first": "1ms", "period": "0ms"}}}"#,
            ok,
        );
        one_at_value(&src, r#""period": "0ms""#, "period must be longer than 0");
        // Unknown fields and bad enum words are syntax errors.
        assert_eq!(
            diags(&with_relay(
                r#"{"name": "r1", "site": "osaka", "durability": "ram"}"#,
                ok
            ))
            .len(),
            1
        );
        // A relay port in a zone.
        let src = with_relay(r#"{"name": "r1", "site": "osaka"}"#, ok)
            .replace(r#"["h1/0", "arr1/0"]"#, r#"["h1/0", "arr1/0", "r1/0"]"#);
        assert!(diags(&src).is_empty(), "{:?}", diags(&src));
    }

    #[test]
    fn relay_steps_and_checks_name_relays() {
        let relay = r#"{"name": "r1", "site": "osaka"}"#;
        let src = with_relay(
            relay,
            r#"{"at": "1ms", "op": "relay_control", "relay": "r1", "control": "fence", "sources": [1]},
               {"at": "2ms", "op": "check", "check": "relay_state", "relay": "r1", "held_records": 0, "fenced": [1]}"#,
        );
        assert!(diags(&src).is_empty(), "{:?}", diags(&src));
        let src = with_relay(
            relay,
            r#"{"at": "1ms", "op": "relay_control", "relay": "arr1", "control": "forward"}"#,
        );
        one_at_value(
            &src,
            r#""relay": "arr1""#,
            "\"arr1\" is an array, not a relay",
        );
        let src = with_relay(
            relay,
            r#"{"at": "1ms", "op": "relay_control", "relay": "r1", "control": "fence"}"#,
        );
        one_at_value(&src, r#""control": "fence""#, "at least one source");
        let src = with_relay(
            relay,
            r#"{"at": "1ms", "op": "check", "check": "relay_state", "relay": "h1"}"#,
        );
        one_at_value(&src, r#""relay": "h1""#, "not a relay");
    }

    fn placement_topology(relay_site: &str, relay_km: f64) -> crate::format::Topology {
        let src = format!(
            r#"{{"name": "p", "topology": {{
  "sites": [{{"name": "tokyo", "zone": "kanto"}}, {{"name": "yokohama", "zone": "kanto"}},
            {{"name": "nagoya", "zone": "chubu"}}, {{"name": "osaka", "zone": "kansai"}}],
  "switches": [{{"name": "sw1", "site": "tokyo", "ports": 8}}, {{"name": "sw2", "site": "{relay_site}", "ports": 8}},
               {{"name": "sw3", "site": "osaka", "ports": 8}}],
  "arrays": [{{"name": "p1", "site": "tokyo", "ports": 1, "lus": [{{"lun": 0, "blocks": 8, "block_bytes": 512}}]}},
             {{"name": "s1", "site": "osaka", "ports": 1, "lus": [{{"lun": 0, "blocks": 8, "block_bytes": 512}}]}}],
  "relays": [{{"name": "r1", "site": "{relay_site}"}}],
  "hosts": [{{"name": "h1", "site": "tokyo", "ports": 1}}],
  "links": [{{"a": "p1/0", "b": "sw1/0"}}, {{"a": "h1/0", "b": "sw1/1"}}, {{"a": "r1/0", "b": "sw2/0"}}, {{"a": "s1/0", "b": "sw3/0"}},
            {{"a": "sw1/7", "b": "sw2/7", "km": {relay_km}}}, {{"a": "sw2/6", "b": "sw3/6", "km": 300}},
            {{"a": "sw1/6", "b": "sw3/7", "km": 400}}]
}}}}"#
        );
        parse(&src, "p.json")
            .unwrap_or_else(|d| panic!("{d}"))
            .topology
    }

    #[test]
    fn relay_placement_uses_zones_and_fabric_latency() {
        use fcsim_fabric::runtime::linkmodel::HOP_LATENCY;
        let t = placement_topology("nagoya", 100.0);
        // p1 → s1: the direct 400 km ISL (three cables) beats 100 + 300 km (four).
        let standby = fabric_latency(&t, "p1", "s1").expect("connected");
        assert_eq!(
            standby,
            std::time::Duration::from_micros(2000) + HOP_LATENCY * 3
        );
        assert_eq!(
            fabric_latency(&t, "p1", "r1"),
            Some(std::time::Duration::from_micros(500) + HOP_LATENCY * 3)
        );
        // An end node is no transit: h1 → r1 does not pass through p1.
        assert_eq!(fabric_latency(&t, "p1", "nowhere"), None);
        let relays = ["r1".to_string()];
        assert_eq!(
            validate_relay_placement(&t, "p1:0", "s1:0", &relays),
            Ok(())
        );
        // Too far: 450 km to the relay is not closer than the standby's 400 km.
        let t = placement_topology("nagoya", 450.0);
        let e = validate_relay_placement(&t, "p1", "s1", &relays).unwrap_err();
        assert!(e.contains("`r1`") && e.contains("not closer"), "{e}");
        // In the primary's disaster zone (yokohama is kanto, as tokyo).
        let t = placement_topology("yokohama", 30.0);
        let e = validate_relay_placement(&t, "p1", "s1", &relays).unwrap_err();
        assert!(e.contains("disaster zone `kanto`"), "{e}");
        let e = validate_relay_placement(&t, "p1", "s1", &["h1".to_string()]).unwrap_err();
        assert!(e.contains("not a relay"), "{e}");
    }
}
