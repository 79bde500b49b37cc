//! Frame capture during a run (`fcsim run --pcap FILE [--capture SW:PORT,...]`): which
//! ports to tap, arming them in the node specs, collecting their frames over
//! `Link/Capture`, and writing the pcap file (format: `fcsim_fabric::capture`).
//!
//! The order of work, called from the runner:
//! 1. [`CapturePlan::new`] checks the ports against the topology and writes an empty
//!    pcap file, so a bad port or an unwritable path stops the run before it starts.
//! 2. [`CapturePlan::arm`] marks the tapped ports in the node specs
//!    (`PeerSpec::capture`): each node records them from its very start (the first
//!    FLOGI included), in every mode, until someone asks for the record.
//! 3. [`Collector::start`] follows every tapped node with one task per node. It asks
//!    `Link/Capture` with `from_start`, so it gets everything since the node started.
//!    After a crash and restart it asks again and gets the new incarnation's record.
//! 4. [`Collector::finish`], after the last step, waits until no frame stamped before
//!    the end is still on its way, then sorts the frames by (time, node, arrival) and
//!    writes the file. Long IUs are cut into real-sized frames as they are written.
//!
//! It goes through gRPC like every other orchestrator action, so it works the same in
//! simulation, live and processes mode. In simulation the frames carry fabric time and
//! everything happens in turmoil's deterministic schedule: the same seed gives a
//! byte-identical file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fcsim_fabric::capture::{put_file_header, put_frame};
use fcsim_fabric::runtime::{FabricClock, Net, PeerSpec};
use fcsim_proto::v1 as pb;
use tokio_stream::StreamExt;

use crate::format::{NodeKind, PortRef, Scenario};
use crate::launch::{NodeRole, NodeSpec};

/// What to capture during a run, and where to write it.
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// The pcap file to write (created, or truncated, before the run starts).
    pub path: PathBuf,
    /// Ports to tap. Empty: one end of every cable, the switch end (the `a` end of an
    /// ISL or of a cable between two end nodes), so every frame on every cable is
    /// captured exactly once per cable it crosses.
    pub ports: Vec<PortRef>,
}

/// Why a capture could not be set up or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// A `--capture` entry is not `NODE:PORT`.
    #[error("--capture {text}: expected NODE:PORT, e.g. sw1:3")]
    BadPort {
        /// The entry as given.
        text: String,
    },
    /// A `--capture` port is not in the topology.
    #[error("--capture {port}: {detail}")]
    UnknownPort {
        /// The port asked for.
        port: PortRef,
        /// What is wrong with it.
        detail: String,
    },
    /// The pcap file cannot be written.
    #[error("cannot write the capture to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Parses one `--capture` entry: `NODE:PORT` (or `NODE/PORT`, as scenario files write
/// ports).
pub fn parse_port(text: &str) -> Result<PortRef, CaptureError> {
    let bad = || CaptureError::BadPort {
        text: text.to_string(),
    };
    let (node, port) = text
        .rsplit_once(':')
        .or_else(|| text.rsplit_once('/'))
        .ok_or_else(bad)?;
    if node.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(PortRef::new(node, port.parse().map_err(|_| bad())?))
}

/// A checked capture: the file (already created) and the ports of every tapped node.
#[derive(Debug, Clone)]
pub struct CapturePlan {
    /// The pcap file.
    path: PathBuf,
    /// Node name → tapped port indexes; every node and port exists in the topology.
    taps: BTreeMap<String, BTreeSet<u32>>,
}

impl CapturePlan {
    /// Checks `opts` against the scenario's topology and writes an empty capture (the
    /// file header) to `opts.path`.
    pub fn new(s: &Scenario, opts: &CaptureOptions) -> Result<Self, CaptureError> {
        let topo = &s.topology;
        let mut taps: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        if opts.ports.is_empty() {
            let is_switch = |p: &PortRef| {
                topo.node(&p.node)
                    .is_some_and(|n| n.kind == NodeKind::Switch)
            };
            for l in &topo.links {
                let end = if is_switch(&l.a) || !is_switch(&l.b) {
                    &l.a
                } else {
                    &l.b
                };
                taps.entry(end.node.clone()).or_default().insert(end.port);
            }
        }
        for p in &opts.ports {
            let unknown = |detail: String| CaptureError::UnknownPort {
                port: p.clone(),
                detail,
            };
            let n = topo
                .node(&p.node)
                .ok_or_else(|| unknown(format!("no node named {} in the topology", p.node)))?;
            if p.port >= n.ports {
                return Err(unknown(match n.ports {
                    0 => format!("{} has no ports", p.node),
                    1 => format!("{} has only port 0", p.node),
                    k => format!("{} has ports 0 to {}", p.node, k - 1),
                }));
            }
            taps.entry(p.node.clone()).or_default().insert(p.port);
        }
        let plan = CapturePlan {
            path: opts.path.clone(),
            taps,
        };
        plan.write(&[])?;
        Ok(plan)
    }

    /// The pcap file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Arms the tapped ports in `specs`: those nodes record them from their start.
    pub fn arm(&self, specs: &mut [NodeSpec]) {
        for spec in specs {
            let Some(ports) = self.taps.get(&spec.name) else {
                continue;
            };
            for (port, peer) in peers_mut(&mut spec.role) {
                if ports.contains(port) {
                    peer.capture = true;
                }
            }
        }
    }

    /// Writes the whole file: the header, then `records` in order.
    fn write(&self, records: &[Record]) -> Result<usize, CaptureError> {
        let err = |source| CaptureError::Write {
            path: self.path.clone(),
            source,
        };
        let file = std::fs::File::create(&self.path).map_err(err)?;
        let mut out = std::io::BufWriter::new(file);
        let mut buf = Vec::with_capacity(64 * 1024);
        put_file_header(&mut buf);
        let mut written = 0;
        for r in records {
            written += put_frame(&mut buf, Duration::from_nanos(r.timestamp_ns), &r.fc2);
            if buf.len() >= 64 * 1024 {
                out.write_all(&buf).map_err(err)?;
                buf.clear();
            }
        }
        out.write_all(&buf).map_err(err)?;
        out.flush().map_err(err)?;
        Ok(written)
    }
}

/// The cabled ports of a node spec and their far ends.
fn peers_mut(role: &mut NodeRole) -> &mut BTreeMap<u32, PeerSpec> {
    match role {
        NodeRole::Switch(c) => &mut c.peers,
        NodeRole::EndNode(c) => &mut c.peers,
        NodeRole::Host(c) => &mut c.node.peers,
        NodeRole::Array(c) => &mut c.node.peers,
        NodeRole::Tape(c) => &mut c.node.peers,
        NodeRole::Relay(c) => &mut c.node.peers,
        NodeRole::Engine(c) => &mut c.node.peers,
    }
}

/// One captured frame, as the collector keeps it until the file is written.
#[derive(Debug, Clone)]
struct Record {
    /// On the Unix time line (fabric time in simulation), ns.
    timestamp_ns: u64,
    /// The node's position in the plan (name order): breaks timestamp ties.
    node: usize,
    /// Arrival order within the node's streams: breaks the remaining ties.
    seq: u64,
    fc2: Bytes,
}

/// What a finished capture wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSummary {
    /// Frames captured, as the nodes sent them (one per information unit).
    pub frames: usize,
    /// Records in the file, after long frames were cut into real-sized ones.
    pub records: usize,
    /// Ports tapped.
    pub ports: usize,
    /// The pcap file.
    pub path: PathBuf,
}

/// The frames collected so far; shared by the per-node tasks.
type Sink = Arc<Mutex<Vec<Record>>>;

/// A capture in progress: one task per tapped node, following its `Link/Capture`.
pub struct Collector {
    plan: CapturePlan,
    sink: Sink,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    net: Net,
    clock: FabricClock,
}

impl Collector {
    /// Starts following every tapped node of `plan`; `specs` gives their addresses.
    pub fn start(
        plan: CapturePlan,
        specs: &BTreeMap<String, NodeSpec>,
        net: Net,
        clock: FabricClock,
    ) -> Self {
        let sink: Sink = Arc::new(Mutex::new(Vec::new()));
        let tasks = plan
            .taps
            .iter()
            .enumerate()
            .filter_map(|(index, (node, ports))| {
                let addr = specs.get(node)?.address.clone();
                let ports: Vec<u32> = ports.iter().copied().collect();
                Some(tokio::spawn(follow(
                    index,
                    addr,
                    ports,
                    net,
                    clock,
                    sink.clone(),
                )))
            })
            .collect();
        Collector {
            plan,
            sink,
            tasks,
            net,
            clock,
        }
    }

    /// Waits until every frame stamped before now has arrived (or a time limit has
    /// passed), stops following, and writes the file.
    pub async fn finish(self) -> Result<CaptureSummary, CaptureError> {
        let end = u64::try_from((self.clock.unix_offset() + self.clock.now()).as_nanos())
            .unwrap_or(u64::MAX);
        let (step, limit) = match self.net {
            Net::Sim => (Duration::from_millis(1), Duration::from_millis(200)),
            Net::Tokio => (Duration::from_millis(100), Duration::from_secs(3)),
        };
        let before_end = |sink: &Sink| lock(sink).iter().filter(|r| r.timestamp_ns <= end).count();
        let mut seen = before_end(&self.sink);
        let mut waited = Duration::ZERO;
        while waited < limit {
            self.clock.sleep(step).await;
            waited += step;
            let now = before_end(&self.sink);
            if now == seen {
                break;
            }
            seen = now;
        }
        for t in &self.tasks {
            t.abort();
        }
        let mut records = std::mem::take(&mut *lock(&self.sink));
        records.sort_by_key(|r| (r.timestamp_ns, r.node, r.seq));
        let written = self.plan.write(&records)?;
        Ok(CaptureSummary {
            frames: records.len(),
            records: written,
            ports: self.plan.taps.values().map(BTreeSet::len).sum(),
            path: self.plan.path.clone(),
        })
    }
}

fn lock(sink: &Sink) -> std::sync::MutexGuard<'_, Vec<Record>> {
    sink.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Follows one node for the whole run: takes its record since start, and again after
/// every restart; if the record was already taken (the stream broke, the node lived
/// on), taps it from now on.
async fn follow(
    index: usize,
    addr: String,
    ports: Vec<u32>,
    net: Net,
    clock: FabricClock,
    sink: Sink,
) {
    let pause = match net {
        Net::Sim => Duration::from_millis(1),
        Net::Tokio => Duration::from_millis(100),
    };
    let mut from_start = true;
    let mut seq = 0u64;
    loop {
        if let Ok(channel) = net.channel(&addr).await {
            let mut client = pb::link_client::LinkClient::new(channel);
            let req = pb::CaptureRequest {
                ports: ports.clone(),
                from_start,
            };
            match client.capture(req).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    while let Some(Ok(f)) = stream.next().await {
                        lock(&sink).push(Record {
                            timestamp_ns: f.timestamp_ns,
                            node: index,
                            seq,
                            fc2: f.fc2,
                        });
                        seq += 1;
                    }
                    // The node stopped; a restarted node records from its start again.
                    from_start = true;
                }
                Err(s) if s.code() == tonic::Code::FailedPrecondition => from_start = false,
                Err(_) => {}
            }
        }
        clock.sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        let text = r#"{
          "name": "t", "seed": 1,
          "topology": {
            "sites": [{"name": "dc1"}],
            "switches": [
              {"name": "sw1", "site": "dc1", "domain": 1, "ports": 8},
              {"name": "sw2", "site": "dc1", "domain": 2, "ports": 8}
            ],
            "hosts": [{"name": "h1", "site": "dc1", "ports": 1}],
            "links": [
              {"a": "h1/0", "b": "sw1/0"},
              {"a": "sw1/7", "b": "sw2/7"}
            ]
          },
          "steps": []
        }"#;
        crate::parse(text, "t.json").expect("valid scenario")
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("fcsim-capture-{}-{name}", std::process::id()))
    }

    #[test]
    fn ports_parse_with_colon_or_slash() {
        assert_eq!(parse_port("sw1:3").unwrap(), PortRef::new("sw1", 3));
        assert_eq!(parse_port("sw1/3").unwrap(), PortRef::new("sw1", 3));
        for bad in ["sw1", "sw1:", ":3", "sw1:x", "sw1:-1"] {
            let e = parse_port(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("--capture {bad}: expected NODE:PORT, e.g. sw1:3")
            );
        }
    }

    /// Default: one end of each cable, the switch end; for an ISL the `a` end.
    #[test]
    fn default_taps_one_end_of_every_cable() {
        let path = temp("default.pcap");
        let plan = CapturePlan::new(
            &scenario(),
            &CaptureOptions {
                path: path.clone(),
                ports: vec![],
            },
        )
        .unwrap();
        assert_eq!(
            plan.taps,
            BTreeMap::from([("sw1".to_string(), BTreeSet::from([0, 7]))])
        );
        // An empty but valid capture is there before the run starts.
        assert_eq!(std::fs::read(&path).unwrap().len(), 24);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn unknown_ports_are_refused_before_the_run() {
        let path = temp("bad.pcap");
        let err = |p: &str| {
            CapturePlan::new(
                &scenario(),
                &CaptureOptions {
                    path: path.clone(),
                    ports: vec![parse_port(p).unwrap()],
                },
            )
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            err("sw9:1"),
            "--capture sw9/1: no node named sw9 in the topology"
        );
        assert_eq!(err("sw1:8"), "--capture sw1/8: sw1 has ports 0 to 7");
        assert_eq!(err("h1:1"), "--capture h1/1: h1 has only port 0");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn an_unwritable_path_is_refused_before_the_run() {
        let path = temp("no-such-dir").join("out.pcap");
        let e = CapturePlan::new(
            &scenario(),
            &CaptureOptions {
                path: path.clone(),
                ports: vec![],
            },
        )
        .unwrap_err();
        assert!(matches!(e, CaptureError::Write { .. }));
        assert!(
            e.to_string()
                .starts_with(&format!("cannot write the capture to {}: ", path.display())),
            "{e}"
        );
    }

    #[test]
    fn arming_marks_exactly_the_tapped_ports() {
        let s = scenario();
        let path = temp("arm.pcap");
        let plan = CapturePlan::new(
            &s,
            &CaptureOptions {
                path: path.clone(),
                ports: vec![PortRef::new("h1", 0), PortRef::new("sw2", 7)],
            },
        )
        .unwrap();
        let mut specs =
            crate::launch::plan(&s, &crate::launch::Addressing::Sim, None).expect("plan");
        plan.arm(&mut specs);
        let mut armed = Vec::new();
        for spec in &mut specs {
            for (port, peer) in peers_mut(&mut spec.role) {
                if peer.capture {
                    armed.push(format!("{}/{port}", spec.name));
                }
            }
        }
        armed.sort();
        assert_eq!(armed, ["h1/0", "sw2/7"]);
        let _ = std::fs::remove_file(path);
    }
}
