//! `fcsim bench io`: 4 KiB random read and write IOPS with p50/p99 latency from a host
//! to an LU at several queue depths, measured in one run and reported side by side with
//! their ratios. Two comparisons:
//!
//! - default: host → switch → array LU in embedded live mode and in processes mode;
//! - `--virtual`: in embedded live mode, a virtual LU through an intelligent switch
//!   (host → switch → engine → switch → array) against the direct path (host → plain
//!   switch → array LU), with the overhead ratios;
//! - `--tgt`: the same two paths and, as the outside reference, `tgt` serving a sparse
//!   file LU over iSCSI on loopback ([`crate::bench_iscsi`]), all three measured in
//!   turns, with fcsim ÷ tgt ratios.
//!
//! A benchmark, not a test: nothing here asserts a speed.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use fcsim_proto::v1 as pb;
use fcsim_scenarios::{LiveFabric, Mode, Scenario};
use serde::Serialize;
use tokio_stream::StreamExt;

/// One measured point.
#[derive(Debug, Clone, Serialize)]
pub struct IoPoint {
    /// `live`, `processes`, or `iscsi` (tgt).
    pub mode: String,
    /// `direct` (host → switch → array LU), `virtual` (a virtual LU of an intelligent
    /// switch) or `tgt` (tgt over iSCSI on loopback).
    pub path: String,
    /// The device the workload ran against (`arr1:0`, `sw1:0`).
    pub device: String,
    pub op: String,
    pub qd: u32,
    pub ios: u64,
    pub iops: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

/// Virtual over direct at one (op, QD): the cost of the virtualization engine.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    pub op: String,
    pub qd: u32,
    /// Virtual p50 latency ÷ direct p50 latency.
    pub p50_ratio: f64,
    /// Virtual p99 latency ÷ direct p99 latency.
    pub p99_ratio: f64,
    /// Direct IOPS ÷ virtual IOPS.
    pub iops_ratio: f64,
}

/// The `--virtual` JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualReport {
    pub points: Vec<IoPoint>,
    pub overhead: Vec<Overhead>,
    /// With `--tgt`: each fcsim path against tgt.
    pub vs_tgt: Vec<VsTgt>,
}

/// The issue's target for 4 KiB random reads through a virtual LU: reported next to
/// the measured ratio, never asserted.
const READ_OVERHEAD_TARGET: f64 = 1.15;

/// Direct path: host → switch → array LU `arr1:0`.
const TOPOLOGY: &str = r#"{
  "name": "bench-io",
  "topology": {
    "sites": [{"name": "lab"}],
    "switches": [{"name": "sw1", "site": "lab", "domain": 1, "ports": 4}],
    "arrays": [{"name": "arr1", "site": "lab", "ports": 1,
                "lus": [{"lun": 0, "blocks": 262144, "block_bytes": 4096}]}],
    "hosts": [{"name": "h1", "site": "lab", "ports": 1}],
    "links": [{"a": "h1/0", "b": "sw1/0"}, {"a": "arr1/0", "b": "sw1/1"}]
  },
  "setup": [{"op": "wait", "until": {"fabric": "converged"}}]
}"#;

/// Virtual path: the same host and array, but the switch is intelligent (engine ports
/// sw1/2 and sw1/3) and the host uses virtual LU `sw1:0`, all of `arr1:0`. The host sees
/// only the engine's virtual targets, the engine only the array.
const VIRTUAL_TOPOLOGY: &str = r#"{
  "name": "bench-io-virtual",
  "topology": {
    "sites": [{"name": "lab"}],
    "switches": [{"name": "sw1", "site": "lab", "domain": 1, "ports": 4, "intelligent": true}],
    "arrays": [{"name": "arr1", "site": "lab", "ports": 1,
                "lus": [{"lun": 0, "blocks": 262144, "block_bytes": 4096}]}],
    "hosts": [{"name": "h1", "site": "lab", "ports": 1}],
    "links": [{"a": "h1/0", "b": "sw1/0"}, {"a": "arr1/0", "b": "sw1/1"}],
    "zones": [
      {"name": "z_h1_vt", "members": ["h1/0", "sw1/2", "sw1/3"]},
      {"name": "z_vi_arr1", "members": ["sw1/2", "sw1/3", "arr1/0"]}
    ],
    "virtual_lus": [
      {"switch": "sw1", "lun": 0, "name": "bench", "extents": [{"lu": "arr1:0", "blocks": 262144}]}
    ]
  },
  "setup": [{"op": "wait", "until": {"fabric": "converged"}}]
}"#;

/// Where a series of points runs: a started fabric's host and the device it uses, or
/// (path `tgt`) the iSCSI portal of a `tgtd`.
struct Target {
    mode: &'static str,
    path: &'static str,
    host: String,
    device: &'static str,
}

/// One point against `tgt` over iSCSI: a fresh session, the same op, QD and count.
async fn run_tgt_point(t: &Target, op: &str, qd: u32, count: u64) -> anyhow::Result<IoPoint> {
    let portal = t.host.clone();
    let write = op == "write";
    let p = tokio::task::spawn_blocking(move || {
        let mut s = crate::bench_iscsi::Session::login(&portal)?;
        s.workload(write, qd, count, u64::from(qd))
    })
    .await??;
    Ok(IoPoint {
        mode: t.mode.into(),
        path: t.path.into(),
        device: t.device.into(),
        op: op.into(),
        qd,
        ios: p.ios,
        iops: p.iops,
        p50_us: p.p50_us,
        p99_us: p.p99_us,
        errors: p.errors,
    })
}

async fn run_point(t: &Target, op: &str, qd: u32, count: u64) -> anyhow::Result<IoPoint> {
    if t.path == "tgt" {
        return run_tgt_point(t, op, qd, count).await;
    }
    let ch = fcsim_fabric::runtime::Net::Tokio.channel(&t.host).await?;
    let mut h = pb::host_client::HostClient::new(ch);
    let req = pb::WorkloadRequest {
        name: format!("bench-{op}-qd{qd}"),
        device: t.device.into(),
        pattern: "random".into(),
        mix: op.into(),
        read_percent: 0,
        block_bytes: 4096,
        qd,
        count,
        duration_us: 0,
        verify: false,
        seed: u64::from(qd),
    };
    let started = Instant::now();
    let mut stream = h.run_workload(req).await?.into_inner();
    let mut last = pb::WorkloadProgress::default();
    while let Some(p) = stream.next().await {
        last = p?;
    }
    let wall = started.elapsed().as_secs_f64();
    Ok(IoPoint {
        mode: t.mode.into(),
        path: t.path.into(),
        device: t.device.into(),
        op: op.into(),
        qd,
        ios: last.completed,
        iops: if wall > 0.0 {
            last.completed as f64 / wall
        } else {
            0.0
        },
        p50_us: last.p50_latency_us,
        p99_us: last.p99_latency_us,
        errors: last.errors,
    })
}

/// Warms the path up: discovery (and, through an intelligent switch, the engine's own
/// discovery of the array) finishes shortly after login, so short write runs are
/// retried until one completes without errors.
async fn warm_up(t: &Target) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = run_point(t, "write", 1, 16).await;
        match got {
            Ok(p) if p.errors == 0 && p.ios == 16 => return Ok(()),
            _ if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(p) => {
                return Err(anyhow!(
                    "{} path: warm-up on {} still has {} errors after 30 s",
                    t.path,
                    t.device,
                    p.errors
                ));
            }
            Err(e) => return Err(e.context(format!("{} path: warm-up on {}", t.path, t.device))),
        }
    }
}

fn parse(text: &str, label: &str) -> anyhow::Result<Scenario> {
    fcsim_scenarios::parse(text, label).map_err(|d| anyhow!("{d}"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Starts one fabric per `(scenario, mode)`, warms each up, then measures `op` × `qds`
/// on every target, the targets taking turns point by point (in alternating order, so
/// neither always goes first), and stops the fabrics.
async fn measure(
    fabrics: Vec<(Scenario, Mode, &'static str, &'static str, &'static str)>,
    tgt: Option<&str>,
    count: u64,
    qds: &[u32],
) -> anyhow::Result<Vec<IoPoint>> {
    let mut started = Vec::new();
    let mut targets = Vec::new();
    let mut result = Ok(());
    for (scenario, mode, mode_name, path, device) in fabrics {
        match LiveFabric::start(&scenario, &mode)
            .await
            .with_context(|| format!("starting the {path} fabric ({mode_name})"))
        {
            Ok(f) => {
                let host = f.address("h1");
                started.push(f);
                match host {
                    Some(host) => targets.push(Target {
                        mode: mode_name,
                        path,
                        host,
                        device,
                    }),
                    None => {
                        result = Err(anyhow!("no host h1"));
                        break;
                    }
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if let Some(portal) = tgt {
        targets.push(Target {
            mode: "iscsi",
            path: "tgt",
            host: portal.to_string(),
            device: "tgt:1",
        });
    }
    let mut out = Vec::new();
    if result.is_ok() {
        result = async {
            for t in &targets {
                warm_up(t).await?;
            }
            let mut turn = 0usize;
            for op in ["read", "write"] {
                for &qd in qds {
                    let mut order: Vec<&Target> = targets.iter().collect();
                    if turn % 2 == 1 {
                        order.reverse();
                    }
                    turn += 1;
                    let mut here = Vec::new();
                    for t in order {
                        here.push(run_point(t, op, qd, count).await?);
                    }
                    // Report in target order whatever the measuring order was.
                    here.sort_by_key(|p| {
                        targets
                            .iter()
                            .position(|t| t.path == p.path && t.mode == p.mode)
                    });
                    out.extend(here);
                }
            }
            Ok(())
        }
        .await;
    }
    for f in started {
        f.stop().await;
    }
    result.map(|()| out)
}

/// Runs the default matrix, {live, processes} × {read, write} × `qds`, one mode after
/// the other.
pub fn io(count: u64, qds: &[u32], json: Option<&std::path::Path>) -> anyhow::Result<()> {
    let scenario = parse(TOPOLOGY, "bench-io")?;
    let exe = std::env::current_exe()?;
    let rt = runtime()?;
    let mut points = Vec::new();
    for (mode, name) in [(Mode::Live, "live"), (Mode::Processes { exe }, "processes")] {
        let fabrics = vec![(scenario.clone(), mode, name, "direct", "arr1:0")];
        points.extend(rt.block_on(measure(fabrics, None, count, qds))?);
    }
    print_points(&points);
    println!("\nprocesses / live IOPS ratio:");
    for p in points.iter().filter(|p| p.mode == "processes") {
        if let Some(l) = points
            .iter()
            .find(|l| l.mode == "live" && l.op == p.op && l.qd == p.qd)
        {
            println!(
                "  {:<6} qd {:>3}: {:.2}×",
                p.op,
                p.qd,
                ratio(p.iops, l.iops)
            );
        }
    }
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&points)? + "\n")?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

/// fcsim ÷ tgt at one (op, QD) for one fcsim path.
#[derive(Debug, Clone, Serialize)]
pub struct VsTgt {
    /// `direct` or `virtual`.
    pub path: String,
    pub op: String,
    pub qd: u32,
    /// fcsim p50 latency ÷ tgt p50 latency.
    pub p50_ratio: f64,
    /// fcsim p99 latency ÷ tgt p99 latency.
    pub p99_ratio: f64,
    /// fcsim IOPS ÷ tgt IOPS.
    pub iops_ratio: f64,
}

/// `--virtual`: {direct, virtual} × {read, write} × `qds` in embedded live mode, both
/// fabrics up at once and measured in turns, then the overhead ratios. With `tgt`, a
/// private `tgtd` serving a sparse file LU over iSCSI on loopback is the third path,
/// measured in the same turns, and fcsim ÷ tgt ratios follow.
pub fn io_virtual(
    count: u64,
    qds: &[u32],
    tgt: bool,
    json: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let direct = parse(TOPOLOGY, "bench-io")?;
    let virt = parse(VIRTUAL_TOPOLOGY, "bench-io-virtual")?;
    let rt = runtime()?;
    let fabrics = vec![
        (direct, Mode::Live, "live", "direct", "arr1:0"),
        (virt, Mode::Live, "live", "virtual", "sw1:0"),
    ];
    // The same size as the fabric's array LU: 262,144 × 4 KiB.
    let tgtd = if tgt {
        Some(crate::bench_iscsi::Tgtd::start(262_144 * 4096)?)
    } else {
        None
    };
    let portal = tgtd.as_ref().map(|t| t.portal.clone());
    let points = rt.block_on(measure(fabrics, portal.as_deref(), count, qds))?;
    drop(tgtd);
    let mut vs_tgt = Vec::new();
    for p in points.iter().filter(|p| p.path != "tgt") {
        if let Some(t) = points
            .iter()
            .find(|t| t.path == "tgt" && t.op == p.op && t.qd == p.qd)
        {
            vs_tgt.push(VsTgt {
                path: p.path.clone(),
                op: p.op.clone(),
                qd: p.qd,
                p50_ratio: ratio(p.p50_us as f64, t.p50_us as f64),
                p99_ratio: ratio(p.p99_us as f64, t.p99_us as f64),
                iops_ratio: ratio(p.iops, t.iops),
            });
        }
    }
    let mut overhead = Vec::new();
    for v in points.iter().filter(|p| p.path == "virtual") {
        if let Some(d) = points
            .iter()
            .find(|d| d.path == "direct" && d.op == v.op && d.qd == v.qd)
        {
            overhead.push(Overhead {
                op: v.op.clone(),
                qd: v.qd,
                p50_ratio: ratio(v.p50_us as f64, d.p50_us as f64),
                p99_ratio: ratio(v.p99_us as f64, d.p99_us as f64),
                iops_ratio: ratio(d.iops, v.iops),
            });
        }
    }
    print_points(&points);
    println!(
        "\nvirtual / direct overhead (latency: virtual ÷ direct; IOPS: direct ÷ virtual; \
         issue target for 4 KiB random reads ≤ {READ_OVERHEAD_TARGET:.2}×, measured, not asserted):"
    );
    for o in &overhead {
        println!(
            "  {:<6} qd {:>3}: p50 {:.2}×  p99 {:.2}×  IOPS {:.2}×",
            o.op, o.qd, o.p50_ratio, o.p99_ratio, o.iops_ratio
        );
    }
    if !vs_tgt.is_empty() {
        println!("\nfcsim / tgt over iSCSI on loopback (latency: fcsim ÷ tgt; IOPS: fcsim ÷ tgt):");
        for v in &vs_tgt {
            println!(
                "  {:<7} {:<6} qd {:>3}: p50 {:.2}×  p99 {:.2}×  IOPS {:.2}×",
                v.path, v.op, v.qd, v.p50_ratio, v.p99_ratio, v.iops_ratio
            );
        }
    }
    let report = VirtualReport {
        points,
        overhead,
        vs_tgt,
    };
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

/// `a / b`, or 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn print_points(points: &[IoPoint]) {
    println!(
        "{:<10} {:<8} {:<7} {:<6} {:>4} {:>8} {:>10} {:>9} {:>9} {:>7}",
        "mode", "path", "device", "op", "qd", "I/Os", "IOPS", "p50 µs", "p99 µs", "errors"
    );
    for p in points {
        println!(
            "{:<10} {:<8} {:<7} {:<6} {:>4} {:>8} {:>10.0} {:>9} {:>9} {:>7}",
            p.mode, p.path, p.device, p.op, p.qd, p.ios, p.iops, p.p50_us, p.p99_us, p.errors
        );
    }
}
