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
    ArrayFunction, Check, GFC_RATES, NodeKind, NodeView, PortRef, Scenario, Step, ZoneSpec,
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
    }
}

fn node_ptr(n: &NodeView<'_>) -> String {
    format!("/topology/{}/{}", list_name(n.kind), n.index)
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
        let t = &self.s.topology;
        if t.zone_cfg.is_empty() {
            self.err("/topology/zone_cfg", "zone_cfg must not be empty");
        }
        self.zones("/topology/zones", &t.zones);
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
            }
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

    fn switch_named(&mut self, ptr: &str, what: &str, name: &str) -> Option<NodeView<'a>> {
        let n = self.node_named(ptr, what, name)?;
        if n.kind != NodeKind::Switch {
            self.err(
                ptr,
                format!(
                    "{what}: \"{name}\" is {} {}, not a switch",
                    article(n.kind),
                    n.kind.as_str()
                ),
            );
            return None;
        }
        Some(n)
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
            Step::Wait {
                for_duration,
                until,
            } => {
                if for_duration.is_some() == until.is_some() {
                    self.err(ptr, "wait needs exactly one of \"for\" and \"until\"");
                }
                if until.is_some() && !in_setup {
                    self.err(
                        &at("until"),
                        "wait \"until\" is allowed only in setup; use \"for\" on the timeline",
                    );
                }
            }
            Step::Check(c) => self.check(ptr, c),
        }
    }

    fn check(&mut self, ptr: &str, c: &'a Check) {
        let at = |field: &str| format!("{ptr}/{field}");
        let name = c.name();
        match c {
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
            Check::RscnSeen { port, .. } | Check::LoggedIn { port } => {
                self.end_port(&at("port"), &format!("{name} port"), port);
            }
        }
    }
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
        assert!(d[0].message.contains("unknown wait condition"), "{d:?}");
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
                        || ok::<LinkSpec>(line)
                        || ok::<ZoneSpec>(line)
                        || ok::<LuSpec>(line);
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
    }
}
