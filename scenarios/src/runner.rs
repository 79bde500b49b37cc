//! The orchestrator: starts a scenario's nodes in one of three modes, plays setup and the
//! timeline (faults, zoning, waits, checks), and writes the report.
//!
//! It talks to nodes only through their gRPC services, the same in every mode, so a
//! check that passes in simulation means the same thing against processes. Crashes go
//! to the mode's driver: a crash of the node's domain in simulation, stopping a node's
//! runtime live, SIGKILL in processes mode.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use fcsim_fabric::runtime::clock::fmt_time;
use fcsim_fabric::runtime::sim::{self, SimCommand, SimConfig, SimControl};
use fcsim_fabric::runtime::{FabricClock, Net};
use fcsim_proto::v1 as pb;
use serde::Serialize;
use tonic::transport::Channel;

use crate::capture::{CaptureError, CaptureOptions, CapturePlan, CaptureSummary, Collector};
use crate::format::{Check, FabricState, NodeKind, PortRef, Scenario, Step, WaitUntil};
use crate::launch::{Addressing, LaunchError, NodeSpec, plan, zoning_config};

/// How the nodes run.
#[derive(Debug, Clone, Default)]
pub enum Mode {
    /// One process, in-process cables and gRPC on turmoil's simulated clock,
    /// deterministic.
    #[default]
    Sim,
    /// One process, one thread and runtime per node, loopback TCP, real time.
    Live,
    /// One OS process per node (`exe node --spec FILE`), loopback TCP, real time.
    Processes { exe: PathBuf },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Sim => "simulation",
            Mode::Live => "live",
            Mode::Processes { .. } => "processes",
        }
    }
}

/// Options of one run. `RunOptions::default()` is a quiet simulation with the
/// scenario's seed.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    pub mode: Mode,
    /// Print the timeline to stdout as it happens.
    pub echo: bool,
    /// Keep array LUs in files in this directory (durable across crashes); default: memory.
    pub data_dir: Option<PathBuf>,
    /// Capture the frames on these ports into a pcap file (`--pcap`); default: none.
    pub capture: Option<CaptureOptions>,
}

/// Errors that stop a run (a failed check does not: it is in the report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start node {node}: {detail}")]
    NodeStart { node: String, detail: String },
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// Fabric time since the end of setup, µs (negative during setup is shown as 0).
    pub at_us: u64,
    pub text: String,
}

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    pub at_us: u64,
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub mode: String,
    /// Every check passed and no step failed.
    pub passed: bool,
    pub checks: Vec<CheckOutcome>,
    /// Steps that could not be carried out.
    pub errors: Vec<String>,
    pub timeline: Vec<TimelineEntry>,
    /// Fabric time from start to the end of the last step, µs.
    pub duration_us: u64,
}

impl Report {
    /// The summary table printed after the timeline.
    pub fn summary_table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{:<10} {:<18} {:<7} {}",
            "at", "check", "result", "detail"
        );
        let _ = writeln!(s, "{}", "-".repeat(78));
        for c in &self.checks {
            let at = fmt_time(Duration::from_micros(c.at_us));
            let result = if c.passed { "pass" } else { "FAIL" };
            let _ = writeln!(s, "{at:<10} {:<18} {result:<7} {}", c.check, c.detail);
        }
        for e in &self.errors {
            let _ = writeln!(s, "error: {e}");
        }
        let passed = self.checks.iter().filter(|c| c.passed).count();
        let _ = writeln!(
            s,
            "{}: {} of {} checks passed, {} step errors ({} mode, seed {}, {} of fabric time)",
            self.scenario,
            passed,
            self.checks.len(),
            self.errors.len(),
            self.mode,
            self.seed,
            fmt_time(Duration::from_micros(self.duration_us)),
        );
        s
    }
}

/// Called with every timeline entry as the orchestrator logs it, e.g. by a benchmark
/// that stamps entries with wall-clock time (which the report itself never holds, so
/// that same seed still means same bytes).
pub type TimelineObserver = Box<dyn FnMut(&TimelineEntry) + Send>;

/// Runs a scenario to completion and returns its report.
pub fn run_scenario(s: &Scenario, opts: &RunOptions) -> Result<Report, RunError> {
    run_scenario_observed(s, opts, None)
}

/// [`run_scenario`], calling `observer` with each timeline entry as it is logged.
pub fn run_scenario_observed(
    s: &Scenario,
    opts: &RunOptions,
    observer: Option<TimelineObserver>,
) -> Result<Report, RunError> {
    let seed = opts.seed.unwrap_or(s.seed);
    let capture = match &opts.capture {
        Some(c) => Some(CapturePlan::new(s, c)?),
        None => None,
    };
    let (report, captured) = match &opts.mode {
        Mode::Sim => {
            let mut specs = plan(s, &Addressing::Sim, opts.data_dir.as_deref())?;
            if let Some(c) = &capture {
                c.arm(&mut specs);
            }
            let hosts = specs
                .iter()
                .map(|spec| {
                    let name = spec.name.clone();
                    let spec = spec.clone();
                    let factory: Box<
                        dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
                    > = Box::new(move || Box::pin(spec.clone().run(Net::Sim)));
                    (name, factory)
                })
                .collect();
            let cfg = SimConfig {
                seed,
                tick: s.tick.to_std(),
                limit: sim_limit(s),
            };
            let scenario = s.clone();
            let echo = opts.echo;
            sim::run(&cfg, hosts, move |control| async move {
                let mut o = Orchestrator::new(
                    scenario,
                    specs,
                    Driver::Sim(control),
                    Net::Sim,
                    FabricClock::Sim,
                    seed,
                    echo,
                );
                o.observer = observer;
                let captured = o.play_captured(capture).await;
                (o.report, captured)
            })?
        }
        Mode::Live | Mode::Processes { .. } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(RunError::Runtime)?;
            rt.block_on(async {
                let mut o = Orchestrator::start_wall(
                    s,
                    &opts.mode,
                    seed,
                    opts.echo,
                    opts.data_dir.as_deref(),
                    capture.as_ref(),
                )
                .await?;
                o.observer = observer;
                let captured = o.play_captured(capture).await;
                o.driver.shutdown().await;
                Ok::<_, RunError>((o.report, captured))
            })?
        }
    };
    if let Some(c) = captured {
        let c = c?;
        if opts.echo {
            println!(
                "capture: {} frames ({} pcap records) on {} ports written to {}",
                c.frames,
                c.records,
                c.ports,
                c.path.display()
            );
        }
    }
    Ok(report)
}

/// Enough simulated time for the timeline plus generous convergence and check time.
fn sim_limit(s: &Scenario) -> Duration {
    let last = s.steps.last().map_or(Duration::ZERO, |t| t.at.to_std());
    last + Duration::from_secs(60)
}

// ---- drivers --------------------------------------------------------------------------

pub(crate) struct LiveNode {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts and kills nodes in the current mode.
pub(crate) enum Driver {
    Sim(SimControl),
    Live(BTreeMap<String, LiveNode>),
    Processes {
        exe: PathBuf,
        dir: PathBuf,
        children: BTreeMap<String, tokio::process::Child>,
    },
}

impl Driver {
    fn start(&mut self, spec: &NodeSpec) -> Result<(), RunError> {
        match self {
            Driver::Sim(_) => Ok(()),
            Driver::Live(nodes) => {
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let spec2 = spec.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("node-{}", spec.name))
                    .spawn(move || {
                        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        else {
                            return;
                        };
                        rt.block_on(async move {
                            tokio::select! {
                                () = spec2.run(Net::Tokio) => {}
                                _ = stopped => {}
                            }
                        });
                        // Crash: every task, socket and buffer of the node goes at once.
                        rt.shutdown_background();
                    })
                    .map_err(|e| RunError::NodeStart {
                        node: spec.name.clone(),
                        detail: e.to_string(),
                    })?;
                nodes.insert(
                    spec.name.clone(),
                    LiveNode {
                        stop: Some(stop),
                        thread: Some(thread),
                    },
                );
                Ok(())
            }
            Driver::Processes { exe, dir, children } => {
                let path = dir.join(format!("{}.json", spec.name));
                let err = |e: std::io::Error| RunError::NodeStart {
                    node: spec.name.clone(),
                    detail: e.to_string(),
                };
                std::fs::write(&path, serde_json::to_vec_pretty(spec).unwrap_or_default())
                    .map_err(err)?;
                let child = tokio::process::Command::new(exe.as_path())
                    .arg("node")
                    .arg("--spec")
                    .arg(&path)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(err)?;
                children.insert(spec.name.clone(), child);
                Ok(())
            }
        }
    }

    fn pid(&self, node: &str) -> u32 {
        match self {
            Driver::Processes { children, .. } => children
                .get(node)
                .and_then(tokio::process::Child::id)
                .unwrap_or(0),
            _ => 0,
        }
    }

    async fn crash(&mut self, node: &str) {
        match self {
            Driver::Sim(c) => c.apply(SimCommand::Crash(node.to_string())).await,
            Driver::Live(nodes) => {
                if let Some(n) = nodes.get_mut(node) {
                    if let Some(stop) = n.stop.take() {
                        let _ = stop.send(());
                    }
                    if let Some(t) = n.thread.take() {
                        let _ = tokio::task::spawn_blocking(move || t.join()).await;
                    }
                }
            }
            Driver::Processes { children, .. } => {
                if let Some(mut c) = children.remove(node) {
                    // SIGKILL: no chance to flush or say goodbye.
                    let _ = c.start_kill();
                    let _ = c.wait().await;
                }
            }
        }
    }

    async fn restart(&mut self, spec: &NodeSpec) -> Result<(), RunError> {
        match self {
            Driver::Sim(c) => {
                c.apply(SimCommand::Restart(spec.name.clone())).await;
                Ok(())
            }
            _ => self.start(spec),
        }
    }

    pub(crate) async fn shutdown(&mut self) {
        let names: Vec<String> = match self {
            Driver::Sim(_) => return,
            Driver::Live(n) => n.keys().cloned().collect(),
            Driver::Processes { children, .. } => children.keys().cloned().collect(),
        };
        for n in names {
            self.crash(&n).await;
        }
        if let Driver::Processes { dir, .. } = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

// ---- the orchestrator -------------------------------------------------------------------

pub(crate) struct Orchestrator {
    pub(crate) scenario: Scenario,
    pub(crate) specs: BTreeMap<String, NodeSpec>,
    pub(crate) alive: BTreeMap<String, bool>,
    /// Nodes lost to a site disaster: they never come back.
    destroyed: BTreeSet<String>,
    /// Indexes of topology links that are down by a fault.
    down_links: BTreeSet<usize>,
    pub(crate) net: Net,
    pub(crate) clock: FabricClock,
    pub(crate) driver: Driver,
    channels: BTreeMap<String, Channel>,
    pub(crate) report: Report,
    echo: bool,
    /// Fabric time at the end of setup (the timeline's zero).
    t0: Duration,
    /// RSCNs each end-node port had received at the end of setup; `rscn_seen` counts
    /// from there.
    rscn_base: BTreeMap<PortRef, u64>,
    /// Workloads started by the timeline, by name.
    pub(crate) workloads: BTreeMap<String, crate::storage::WorkloadHandle>,
    /// Sees every timeline entry as it is logged.
    observer: Option<TimelineObserver>,
    /// Copy pairs split by the scenario: the fabric-time window in which each split
    /// took effect (asked, acknowledged).
    pub(crate) splits: BTreeMap<String, (Duration, Duration)>,
    /// Relay takeovers done (seed 002), by (standby array, group).
    pub(crate) relay_takeovers: BTreeMap<(String, String), pb::RelayTakeoverResponse>,
}

pub(crate) type StepResult = Result<String, String>;

impl Orchestrator {
    fn new(
        scenario: Scenario,
        specs: Vec<NodeSpec>,
        driver: Driver,
        net: Net,
        clock: FabricClock,
        seed: u64,
        echo: bool,
    ) -> Self {
        let report = Report {
            scenario: scenario.name.clone(),
            seed,
            mode: match driver {
                Driver::Sim(_) => "simulation",
                Driver::Live(_) => "live",
                Driver::Processes { .. } => "processes",
            }
            .to_string(),
            passed: true,
            checks: Vec::new(),
            errors: Vec::new(),
            timeline: Vec::new(),
            duration_us: 0,
        };
        Orchestrator {
            alive: specs.iter().map(|s| (s.name.clone(), true)).collect(),
            specs: specs.into_iter().map(|s| (s.name.clone(), s)).collect(),
            destroyed: BTreeSet::new(),
            down_links: BTreeSet::new(),
            net,
            clock,
            driver,
            channels: BTreeMap::new(),
            report,
            echo,
            t0: Duration::ZERO,
            rscn_base: BTreeMap::new(),
            workloads: BTreeMap::new(),
            observer: None,
            splits: BTreeMap::new(),
            relay_takeovers: BTreeMap::new(),
            scenario,
        }
    }

    /// Plans and starts every node in a wall-clock mode.
    pub(crate) async fn start_wall(
        s: &Scenario,
        mode: &Mode,
        seed: u64,
        echo: bool,
        data_dir: Option<&std::path::Path>,
        capture: Option<&CapturePlan>,
    ) -> Result<Self, RunError> {
        let mut specs = plan(s, &Addressing::Loopback, data_dir)?;
        if let Some(c) = capture {
            c.arm(&mut specs);
        }
        let epoch = specs.first().map_or(0, |s| s.epoch_unix_ns);
        let clock = FabricClock::Wall {
            epoch: std::time::UNIX_EPOCH + Duration::from_nanos(epoch),
        };
        let driver = match mode {
            Mode::Processes { exe } => {
                let dir =
                    std::env::temp_dir().join(format!("fcsim-{}-{}", std::process::id(), seed));
                std::fs::create_dir_all(&dir).map_err(RunError::Runtime)?;
                Driver::Processes {
                    exe: exe.clone(),
                    dir,
                    children: BTreeMap::new(),
                }
            }
            _ => Driver::Live(BTreeMap::new()),
        };
        let mut o = Orchestrator::new(s.clone(), specs, driver, Net::Tokio, clock, seed, echo);
        let all: Vec<NodeSpec> = o.specs.values().cloned().collect();
        for spec in &all {
            o.driver.start(spec)?;
        }
        Ok(o)
    }

    pub(crate) fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Fabric time at the end of setup (the timeline's zero).
    pub(crate) fn t0(&self) -> Duration {
        self.t0
    }

    fn since_t0_us(&self) -> u64 {
        u64::try_from(self.now().saturating_sub(self.t0).as_micros()).unwrap_or(u64::MAX)
    }

    fn log(&mut self, text: String) {
        let at_us = self.since_t0_us();
        if self.echo {
            println!("[{:>12}] {text}", fmt_time(Duration::from_micros(at_us)));
        }
        let entry = TimelineEntry { at_us, text };
        if let Some(f) = self.observer.as_mut() {
            f(&entry);
        }
        self.report.timeline.push(entry);
    }

    /// [`Orchestrator::play`] with the capture of `plan` (if any) around it: it follows
    /// the tapped nodes from before setup to after the last step, then writes the file.
    async fn play_captured(
        &mut self,
        plan: Option<CapturePlan>,
    ) -> Option<Result<CaptureSummary, CaptureError>> {
        let collector = plan.map(|p| Collector::start(p, &self.specs, self.net, self.clock));
        self.play().await;
        match collector {
            Some(c) => Some(c.finish().await),
            None => None,
        }
    }

    /// Setup, then the timeline, then the report's totals.
    pub(crate) async fn play(&mut self) {
        self.setup().await;
        self.snapshot_rscns().await;
        self.t0 = self.now();
        for ts in self.scenario.steps.clone() {
            let due = self.t0 + ts.at.to_std();
            self.clock.sleep_until(due).await;
            self.exec(&ts.step).await;
        }
        self.report.duration_us = u64::try_from(self.now().as_micros()).unwrap_or(u64::MAX);
        self.report.passed =
            self.report.errors.is_empty() && self.report.checks.iter().all(|c| c.passed);
    }

    async fn snapshot_rscns(&mut self) {
        let end_nodes: Vec<String> = self
            .specs
            .values()
            .filter(|s| s.kind() != "switch")
            .map(|s| s.name.clone())
            .collect();
        for n in end_nodes {
            if let Ok(ports) = self.ports(&n).await {
                for p in ports.ports {
                    self.rscn_base
                        .insert(PortRef::new(n.clone(), p.port), p.rscn_received);
                }
            }
        }
    }

    /// Announces the run and plays the setup steps.
    pub(crate) async fn setup(&mut self) {
        let mode = self.report.mode.clone();
        self.log(format!(
            "scenario {} ({} nodes, {mode} mode, seed {})",
            self.scenario.name,
            self.specs.len(),
            self.report.seed
        ));
        for step in self.scenario.setup.clone() {
            self.exec(&step).await;
        }
    }

    pub(crate) async fn exec(&mut self, step: &Step) {
        let r = match step {
            Step::Check(c) => {
                let r = self.check(c).await;
                let (passed, detail) = match r {
                    Ok(d) => (true, d),
                    Err(d) => (false, d),
                };
                let at_us = self.since_t0_us();
                self.log(format!(
                    "check {} {}: {detail}",
                    c.name(),
                    if passed { "passed" } else { "FAILED" }
                ));
                self.report.checks.push(CheckOutcome {
                    at_us,
                    check: c.name().to_string(),
                    passed,
                    detail,
                });
                return;
            }
            _ => self.act(step).await,
        };
        match r {
            Ok(text) => self.log(text),
            Err(e) => {
                let e = format!("{}: {e}", step.op());
                self.log(format!("error: {e}"));
                self.report.errors.push(e);
            }
        }
    }

    // ---- node access -------------------------------------------------------------------

    pub(crate) async fn channel(&mut self, node: &str) -> Result<Channel, String> {
        if !self.alive.get(node).copied().unwrap_or(false) {
            return Err(format!("node {node} is down"));
        }
        if let Some(c) = self.channels.get(node) {
            return Ok(c.clone());
        }
        let addr = self
            .specs
            .get(node)
            .map(|s| s.address.clone())
            .ok_or_else(|| format!("no node {node}"))?;
        let (tries, pause) = match self.net {
            Net::Sim => (20, Duration::from_micros(200)),
            Net::Tokio => (100, Duration::from_millis(50)),
        };
        let mut last = String::new();
        for _ in 0..tries {
            match self.net.channel(&addr).await {
                Ok(c) => {
                    self.channels.insert(node.to_string(), c.clone());
                    return Ok(c);
                }
                Err(e) => last = e.to_string(),
            }
            self.clock.sleep(pause).await;
        }
        Err(last)
    }

    pub(crate) async fn link(
        &mut self,
        node: &str,
    ) -> Result<pb::link_client::LinkClient<Channel>, String> {
        Ok(pb::link_client::LinkClient::new(self.channel(node).await?))
    }

    pub(crate) async fn switch(
        &mut self,
        node: &str,
    ) -> Result<pb::switch_client::SwitchClient<Channel>, String> {
        Ok(pb::switch_client::SwitchClient::new(
            self.channel(node).await?,
        ))
    }

    async fn ports(&mut self, node: &str) -> Result<pb::ListPortsResponse, String> {
        let mut c = self.link(node).await?;
        c.list_ports(pb::ListPortsRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| s.message().to_string())
    }

    async fn port_info(&mut self, p: &PortRef) -> Result<pb::PortInfo, String> {
        self.ports(&p.node)
            .await?
            .ports
            .into_iter()
            .find(|i| i.port == p.port)
            .ok_or_else(|| format!("{p}: no such port"))
    }

    pub(crate) fn wwpn(&self, p: &PortRef) -> String {
        self.scenario
            .topology
            .port_wwpn(p)
            .map(|w| w.to_string())
            .unwrap_or_default()
    }

    pub(crate) fn has_node(&self, node: &str) -> bool {
        self.specs.contains_key(node)
    }

    pub(crate) fn has_site(&self, site: &str) -> bool {
        !self.scenario.topology.disaster_sites(site).is_empty()
    }

    pub(crate) fn is_switch(&self, node: &str) -> bool {
        self.scenario
            .topology
            .node(node)
            .is_some_and(|n| n.kind == NodeKind::Switch)
    }

    // ---- actions -------------------------------------------------------------------------

    async fn set_port(&mut self, p: &PortRef, enabled: bool) -> Result<(), String> {
        let mut c = self.link(&p.node).await?;
        c.set_port(pb::SetPortRequest {
            port: p.port,
            enabled,
        })
        .await
        .map_err(|s| s.message().to_string())?;
        Ok(())
    }

    /// Takes a cable down or up at whichever of its ends is alive.
    async fn set_link(&mut self, index: usize, up: bool) -> Result<(), String> {
        let l = self.scenario.topology.links[index].clone();
        let mut done = false;
        let mut last = String::new();
        for end in [&l.a, &l.b] {
            if self.alive.get(&end.node).copied().unwrap_or(false) {
                match self.set_port(end, up).await {
                    Ok(()) => done = true,
                    Err(e) => last = e,
                }
            }
        }
        if up {
            self.down_links.remove(&index);
        } else {
            self.down_links.insert(index);
        }
        if done {
            Ok(())
        } else {
            Err(format!("neither end of {}–{} answered: {last}", l.a, l.b))
        }
    }

    fn link_index(&self, p: &PortRef) -> Option<usize> {
        self.scenario
            .topology
            .links
            .iter()
            .position(|l| l.a == *p || l.b == *p)
    }

    fn site_links(&self, a: &str, b: &str) -> Vec<usize> {
        let site_of = |n: &str| {
            self.specs
                .get(n)
                .map(|s| s.site.clone())
                .unwrap_or_default()
        };
        self.scenario
            .topology
            .links
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                let (x, y) = (site_of(&l.a.node), site_of(&l.b.node));
                (x == a && y == b) || (x == b && y == a)
            })
            .map(|(i, _)| i)
            .collect()
    }

    async fn crash(&mut self, node: &str) {
        self.save_histories(node).await;
        self.driver.crash(node).await;
        self.alive.insert(node.to_string(), false);
        self.channels.remove(node);
    }

    pub(crate) async fn act(&mut self, step: &Step) -> StepResult {
        match step {
            Step::LinkDown { port } => {
                let i = self
                    .link_index(port)
                    .ok_or_else(|| format!("{port} has no cable"))?;
                self.set_link(i, false).await?;
                Ok(format!("link down at {port}"))
            }
            Step::LinkUp { port } => {
                let i = self
                    .link_index(port)
                    .ok_or_else(|| format!("{port} has no cable"))?;
                self.set_link(i, true).await?;
                Ok(format!("link up at {port}"))
            }
            Step::PortErrors { port, drop_every } => {
                let mut c = self.switch(&port.node).await?;
                let info = c
                    .set_port_errors(pb::SetPortErrorsRequest {
                        port: port.port,
                        drop_every: *drop_every,
                    })
                    .await
                    .map_err(|s| s.message().to_string())?
                    .into_inner();
                Ok(if *drop_every == 0 {
                    format!(
                        "port errors cleared at {port} ({} frames discarded)",
                        info.crc_errors
                    )
                } else {
                    format!("port errors at {port}: every {drop_every}th frame discarded")
                })
            }
            Step::Crash { node } => {
                // An intelligent switch's engine goes down with it.
                let engine = crate::launch::engine_name(node);
                if self.specs.contains_key(&engine) {
                    self.crash(&engine).await;
                }
                self.crash(node).await;
                Ok(format!("{node} crashed"))
            }
            Step::Restart { node } => {
                if self.destroyed.contains(node) {
                    return Err(format!("{node} was destroyed in a site disaster"));
                }
                let spec = self
                    .specs
                    .get(node)
                    .cloned()
                    .ok_or_else(|| format!("no node {node}"))?;
                self.driver
                    .restart(&spec)
                    .await
                    .map_err(|e| e.to_string())?;
                self.alive.insert(node.clone(), true);
                self.channels.remove(node);
                let engine = crate::launch::engine_name(node);
                if let Some(spec) = self.specs.get(&engine).cloned() {
                    self.driver
                        .restart(&spec)
                        .await
                        .map_err(|e| e.to_string())?;
                    self.alive.insert(engine.clone(), true);
                    self.channels.remove(&engine);
                }
                Ok(format!("{node} restarted"))
            }
            Step::Disaster { site } => {
                let sites: BTreeSet<String> = self
                    .scenario
                    .topology
                    .disaster_sites(site)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                let victims: Vec<String> = self
                    .specs
                    .values()
                    .filter(|s| sites.contains(&s.site))
                    .map(|s| s.name.clone())
                    .collect();
                for v in &victims {
                    self.crash(v).await;
                    self.destroyed.insert(v.clone());
                }
                Ok(format!(
                    "disaster at {site}: {} destroyed",
                    victims.join(", ")
                ))
            }
            Step::Partition { a, b } | Step::Heal { a, b } => {
                let up = matches!(step, Step::Heal { .. });
                let links = self.site_links(a, b);
                for i in &links {
                    self.set_link(*i, up).await?;
                }
                let verb = if up { "healed" } else { "partitioned" };
                Ok(format!("sites {a} and {b} {verb} ({} cables)", links.len()))
            }
            Step::ZoneActivate { cfg, zones } => {
                let z = zoning_config(&self.scenario, cfg, zones).map_err(|e| e.to_string())?;
                let zones = z
                    .map(|z| {
                        z.zones
                            .into_iter()
                            .map(|(name, m)| pb::Zone {
                                name,
                                members: m.iter().map(ToString::to_string).collect(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let sw = self.any_switch()?;
                let mut c = self.switch(&sw).await?;
                let r = c
                    .zone_activate(pb::ZoneActivateRequest {
                        cfg_name: cfg.clone(),
                        zones,
                    })
                    .await
                    .map_err(|s| s.message().to_string())?
                    .into_inner();
                Ok(format!(
                    "zoning configuration {cfg} activated from {sw} (generation {})",
                    r.generation
                ))
            }
            Step::Workload { .. } => self.start_workload(step).await,
            Step::Xcopy { .. } => self.xcopy(step).await,
            Step::Write { .. } => self.host_write(step).await,
            Step::TapeFault { .. } => self.tape_fault(step).await,
            Step::RelayControl { .. } => self.relay_control(step).await,
            Step::MirrorStart { .. } | Step::ArrayFunctions { .. } => {
                self.virtualization_step(step).await
            }
            Step::PairCreate { .. }
            | Step::PairSplit { .. }
            | Step::PairResync { .. }
            | Step::PairDelete { .. }
            | Step::PairOptions { .. }
            | Step::Takeover { .. }
            | Step::RelayTakeover { .. }
            | Step::RestartPoint { .. }
            | Step::CopyManagerRestart { .. }
            | Step::ClearDifference { .. }
            | Step::ThreeDcCycle { .. }
            | Step::Failover3dc { .. }
            | Step::RecoverPair { .. } => self.copy_step(step).await,
            Step::ZoneDeactivate {} => {
                let sw = self.any_switch()?;
                let mut c = self.switch(&sw).await?;
                c.zone_deactivate(pb::ZoneDeactivateRequest {})
                    .await
                    .map_err(|s| s.message().to_string())?;
                Ok(format!("zoning deactivated from {sw}"))
            }
            Step::Wait {
                for_duration,
                until,
            } => {
                if let Some(d) = for_duration {
                    self.clock.sleep(d.to_std()).await;
                    return Ok(format!("waited {d}"));
                }
                match until {
                    Some(WaitUntil::Fabric {
                        fabric: FabricState::Converged,
                    }) => self.wait_converged().await,
                    Some(WaitUntil::Pair { pair, state }) => self.wait_pair(pair, state).await,
                    Some(WaitUntil::Recovery(point)) => self.wait_recovery(point).await,
                    Some(WaitUntil::CopyResults { copy_results }) => {
                        self.wait_copy_results(copy_results).await
                    }
                    None => Ok("nothing to wait for".into()),
                }
            }
            Step::Check(_) => unreachable!("checks are handled by exec"),
        }
    }

    fn any_switch(&self) -> Result<String, String> {
        self.scenario
            .topology
            .switches
            .iter()
            .map(|s| s.name.clone())
            .find(|n| self.alive.get(n).copied().unwrap_or(false))
            .ok_or_else(|| "no switch is alive".to_string())
    }

    /// Waits until every live switch reaches every switch connected to it and every cabled
    /// end-node port is logged in and registered.
    async fn wait_converged(&mut self) -> StepResult {
        let (limit, pause) = match self.net {
            Net::Sim => (Duration::from_secs(2), Duration::from_micros(250)),
            Net::Tokio => (Duration::from_secs(20), Duration::from_millis(20)),
        };
        let start = self.now();
        let mut why = String::new();
        while self.now() - start < limit {
            match self.converged().await {
                Ok(()) => {
                    return Ok(format!(
                        "fabric converged in {}",
                        fmt_time(self.now() - start)
                    ));
                }
                Err(e) => why = e,
            }
            self.clock.sleep(pause).await;
        }
        Err(format!(
            "fabric did not converge within {}: {why}",
            fmt_time(limit)
        ))
    }

    async fn converged(&mut self) -> Result<(), String> {
        let topo = self.scenario.topology.clone();
        let live = |o: &Self, n: &str| o.alive.get(n).copied().unwrap_or(false);
        // Switch graph over working ISLs.
        let mut adj: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (i, l) in topo.links.iter().enumerate() {
            if self.down_links.contains(&i)
                || !self.is_switch(&l.a.node)
                || !self.is_switch(&l.b.node)
            {
                continue;
            }
            if live(self, &l.a.node) && live(self, &l.b.node) {
                adj.entry(l.a.node.clone())
                    .or_default()
                    .insert(l.b.node.clone());
                adj.entry(l.b.node.clone())
                    .or_default()
                    .insert(l.a.node.clone());
            }
        }
        let live_switches: Vec<String> = topo
            .switches
            .iter()
            .map(|s| s.name.clone())
            .filter(|s| live(self, s))
            .collect();
        // Every switch is asked at once: a check is one round of calls, not one per
        // switch (in simulation each round trip from the orchestrator takes a tick).
        let shows = self
            .ask_switches(&live_switches, |mut c| async move {
                c.fabric_show(pb::FabricShowRequest {})
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| s.message().to_string())
            })
            .await?;
        let mut adjacent: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        let mut components: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (sw, fabric) in shows {
            let mut comp = BTreeSet::from([sw.clone()]);
            let mut todo = vec![sw.clone()];
            while let Some(n) = todo.pop() {
                for m in adj.get(&n).into_iter().flatten() {
                    if comp.insert(m.clone()) {
                        todo.push(m.clone());
                    }
                }
            }
            let reachable: BTreeSet<String> = fabric
                .switches
                .iter()
                .filter(|s| s.reachable)
                .map(|s| s.name.clone())
                .collect();
            if reachable != comp {
                return Err(format!("{sw} reaches {reachable:?}, expected {comp:?}"));
            }
            adjacent.insert(sw.clone(), fabric.isl_ports.into_iter().collect());
            components.insert(sw, comp);
        }
        // Reachable is not enough: every working ISL must carry an FSPF adjacency at
        // both ends, or the fabric still has a path to learn (a later cut would isolate).
        for (i, l) in topo.links.iter().enumerate() {
            let (Some(a), Some(b)) = (adjacent.get(&l.a.node), adjacent.get(&l.b.node)) else {
                continue;
            };
            if self.down_links.contains(&i) {
                continue;
            }
            for (ports, end) in [(a, &l.a), (b, &l.b)] {
                if !ports.contains(&end.port) {
                    return Err(format!(
                        "ISL {}/{} has no FSPF adjacency yet",
                        end.node, end.port
                    ));
                }
            }
        }
        // The cabled end-node ports, each with its switch.
        let mut cabled = Vec::new();
        for (i, l) in topo.links.iter().enumerate() {
            if self.down_links.contains(&i) {
                continue;
            }
            let (end, sw) = match (self.is_switch(&l.a.node), self.is_switch(&l.b.node)) {
                (false, true) => (&l.a, &l.b),
                (true, false) => (&l.b, &l.a),
                _ => continue,
            };
            if live(self, &end.node) && live(self, &sw.node) {
                cabled.push((end, sw.node.clone()));
            }
        }
        // One NsShow per switch per check, however many ports it has (asking per cable
        // made a check quadratic in the fabric size). An entry exists from FLOGI on, and
        // has FC-4 types once the port, holding its FC_ID, registered them; the
        // distributed name server has converged once every switch of the port's part of
        // the fabric holds it so.
        let switches: Vec<String> = components.keys().cloned().collect();
        let entries = self
            .ask_switches(&switches, |mut c| async move {
                c.ns_show(pb::NsShowRequest {
                    as_wwpn: String::new(),
                })
                .await
                .map(|ns| {
                    ns.into_inner()
                        .entries
                        .into_iter()
                        .map(|e| (e.wwpn, !e.fc4_types.is_empty()))
                        .collect::<BTreeMap<String, bool>>()
                })
                .map_err(|s| s.message().to_string())
            })
            .await?;
        for (end, sw) in cabled {
            let wwpn = self.wwpn(end);
            match entries.get(&sw).and_then(|e| e.get(&wwpn)) {
                None => return Err(format!("{end} is not logged in")),
                Some(false) => {
                    return Err(format!("{end} is not registered with the name server"));
                }
                Some(true) => {}
            }
            for other in components.get(&sw).into_iter().flatten() {
                if entries.get(other).and_then(|e| e.get(&wwpn)) != Some(&true) {
                    return Err(format!("{end} is not yet in {other}'s name server"));
                }
            }
        }
        Ok(())
    }

    /// Makes `call` on every switch of `names` at once and returns the answers by
    /// switch; the first error in name order if any failed.
    async fn ask_switches<T, F, Fut>(
        &mut self,
        names: &[String],
        call: F,
    ) -> Result<BTreeMap<String, T>, String>
    where
        F: Fn(pb::switch_client::SwitchClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
        T: Send + 'static,
    {
        let mut calls = tokio::task::JoinSet::new();
        for name in names {
            let answer = call(self.switch(name).await?);
            let name = name.clone();
            calls.spawn(async move { (name, answer.await) });
        }
        let mut answers = BTreeMap::new();
        while let Some(done) = calls.join_next().await {
            let (name, answer) = done.map_err(|e| e.to_string())?;
            answers.insert(name, answer);
        }
        answers
            .into_iter()
            .map(|(name, answer)| answer.map(|a| (name, a)))
            .collect()
    }

    // ---- checks --------------------------------------------------------------------------

    async fn check(&mut self, c: &Check) -> StepResult {
        match c {
            Check::LoggedIn { port } => {
                let p = self.port_info(port).await?;
                if p.fc_id.is_empty() {
                    Err(format!("{port} has no FC_ID"))
                } else {
                    Ok(format!("{port} is {}", p.fc_id))
                }
            }
            Check::NsSees {
                host_port,
                target_port,
                expect,
            } => {
                let p = self.port_info(host_port).await?;
                let target = self.wwpn(target_port);
                let sees = p.ns_view.iter().any(|e| e.wwpn == target);
                let text = format!(
                    "{host_port} {} {target_port} ({target})",
                    if sees { "sees" } else { "does not see" }
                );
                if sees == *expect { Ok(text) } else { Err(text) }
            }
            Check::ZoningDenied { from, to } => {
                let target = self.port_info(to).await?;
                if target.fc_id.is_empty() {
                    return Err(format!(
                        "{to} is not logged in, so the check proves nothing"
                    ));
                }
                let mut c = self.link(&from.node).await?;
                let r = c
                    .port_login(pb::PortLoginRequest {
                        port: from.port,
                        target_wwpn: String::new(),
                        target_fc_id: target.fc_id.clone(),
                        timeout_ms: 20,
                    })
                    .await
                    .map_err(|s| s.message().to_string())?
                    .into_inner();
                let text = format!("PLOGI {from} → {to} ({}): {}", target.fc_id, r.outcome);
                if r.outcome == "accepted" {
                    Err(text)
                } else {
                    Ok(text)
                }
            }
            Check::RoutePath { from, to, path } => self.check_route(from, to, path).await,
            Check::PortErrorsAtLeast { port, at_least } => {
                let mut c = self.switch(&port.node).await?;
                let stats = c
                    .port_stats_show(pb::PortStatsShowRequest {
                        ports: vec![port.port],
                    })
                    .await
                    .map_err(|s| s.message().to_string())?;
                let n: u64 = stats.into_inner().ports.iter().map(|p| p.crc_errors).sum();
                let text = format!(
                    "{port} discarded {n} frames for CRC errors (at least {at_least} expected)"
                );
                if n >= *at_least { Ok(text) } else { Err(text) }
            }
            Check::FramesDropped {
                switch,
                port,
                at_least,
            } => {
                let mut c = self.switch(switch).await?;
                let ports = port.map(|p| vec![p]).unwrap_or_default();
                let stats = c
                    .port_stats_show(pb::PortStatsShowRequest { ports })
                    .await
                    .map_err(|s| s.message().to_string())?;
                let drops: u64 = stats
                    .into_inner()
                    .ports
                    .iter()
                    .filter_map(|p| p.counters)
                    .map(|c| c.zoning_drops)
                    .sum();
                let text = format!(
                    "{switch} dropped {drops} frames by zoning (at least {at_least} expected)"
                );
                if drops >= *at_least {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
            Check::NoAckedWriteLost { .. }
            | Check::VolumesEqual { .. }
            | Check::BlocksHold { .. }
            | Check::Masked { .. }
            | Check::ReadReturns { .. }
            | Check::WorkloadErrors { .. }
            | Check::TapeMatches { .. } => self.storage_check(c).await,
            Check::RelayState { .. } => self.relay_check(c).await,
            Check::Operation { .. }
            | Check::FunctionTable { .. }
            | Check::BackendCommands { .. } => self.virtualization_check(c).await,
            Check::PairState { .. }
            | Check::BackupEqualsSplitImage { .. }
            | Check::SecondaryEqualsSplitImage { .. }
            | Check::PrefixConsistent { .. }
            | Check::RpoAtMost { .. }
            | Check::CopyResults { .. }
            | Check::FailoverCopied { .. }
            | Check::RecoveryOutcome { .. }
            | Check::RelayStandby { .. } => self.copy_check(c).await,
            Check::PortBytesAtMost { port, at_most } => {
                let p = self.port_info(port).await?;
                let c = p.counters.unwrap_or_default();
                let bytes = c.bytes_in + c.bytes_out;
                let text = format!(
                    "{port} carried {bytes} bytes ({} in, {} out; at most {at_most} expected)",
                    c.bytes_in, c.bytes_out
                );
                if bytes <= *at_most {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
            Check::RscnSeen { port, at_least } => {
                let p = self.port_info(port).await?;
                let seen = p
                    .rscn_received
                    .saturating_sub(self.rscn_base.get(port).copied().unwrap_or(0));
                let text = format!(
                    "{port} received {seen} RSCNs since setup (at least {at_least} expected)"
                );
                if seen >= *at_least {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
        }
    }

    /// Each hop of `path` must be one of the equal-cost next hops FSPF chose.
    async fn check_route(&mut self, from: &str, to: &str, path: &[String]) -> StepResult {
        let domain = |o: &Self, s: &str| {
            o.scenario
                .topology
                .switch_domain(s)
                .map(|d| u32::from(d.get()))
        };
        let dest = domain(self, to).ok_or_else(|| format!("{to} is not a switch"))?;
        for hop in path.windows(2) {
            let (here, next) = (&hop[0], &hop[1]);
            let want = domain(self, next).ok_or_else(|| format!("{next} is not a switch"))?;
            let mut c = self.switch(here).await?;
            let routes = c
                .route_show(pb::RouteShowRequest {})
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            let route = routes.routes.iter().find(|r| r.dest_domain == dest);
            let Some(route) = route else {
                return Err(format!("{here} has no route to {to}"));
            };
            if !route.next_hops.iter().any(|h| h.neighbor_domain == want) {
                let via: Vec<String> = route
                    .next_hops
                    .iter()
                    .map(|h| format!("domain {}", h.neighbor_domain))
                    .collect();
                return Err(format!(
                    "{here} routes to {to} via {}, not {next}",
                    via.join(" or ")
                ));
            }
        }
        Ok(format!("{from} → {to} via {}", path.join(" → ")))
    }
}

/// Node list for the Control service.
pub(crate) fn node_infos(o: &Orchestrator) -> Vec<pb::NodeInfo> {
    o.specs
        .values()
        .map(|s| pb::NodeInfo {
            name: s.name.clone(),
            kind: s.kind().to_string(),
            site: s.site.clone(),
            address: s.address.clone(),
            alive: o.alive.get(&s.name).copied().unwrap_or(false),
            pid: o.driver.pid(&s.name),
        })
        .collect()
}
