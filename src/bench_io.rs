//! `fcsim bench io`: 4 KiB random read and write IOPS with p50/p99 latency from a host
//! through a switch to an array LU, at several queue depths, in embedded live mode and in
//! processes mode, measured in one run and reported side by side with their ratio.
//! A benchmark, not a test: nothing here asserts a speed.

use std::time::Instant;

use anyhow::{Context, anyhow};
use fcsim_proto::v1 as pb;
use fcsim_scenarios::{LiveFabric, Mode};
use serde::Serialize;
use tokio_stream::StreamExt;

/// One measured point.
#[derive(Debug, Clone, Serialize)]
pub struct IoPoint {
    pub mode: String,
    pub op: String,
    pub qd: u32,
    pub ios: u64,
    pub iops: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

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

async fn run_point(
    host: &str,
    op: &str,
    qd: u32,
    count: u64,
    mode: &str,
) -> anyhow::Result<IoPoint> {
    let ch = fcsim_fabric::runtime::Net::Tokio.channel(host).await?;
    let mut h = pb::host_client::HostClient::new(ch);
    let req = pb::WorkloadRequest {
        name: format!("bench-{op}-qd{qd}"),
        device: "arr1:0".into(),
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
        mode: mode.into(),
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

/// Runs the whole matrix: {live, processes} × {read, write} × `qds`.
pub fn io(count: u64, qds: &[u32], json: Option<&std::path::Path>) -> anyhow::Result<()> {
    let scenario = fcsim_scenarios::parse(TOPOLOGY, "bench-io").map_err(|d| anyhow!("{d}"))?;
    let exe = std::env::current_exe()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut points = Vec::new();
    for (mode, name) in [
        (Mode::Live, "live"),
        (Mode::Processes { exe: exe.clone() }, "processes"),
    ] {
        let got: anyhow::Result<Vec<IoPoint>> = rt.block_on(async {
            let fabric = LiveFabric::start(&scenario, &mode)
                .await
                .context("starting the fabric")?;
            let host = fabric.address("h1").ok_or_else(|| anyhow!("no host h1"))?;
            // Discovery finishes shortly after login; warm up the path first.
            let mut out = Vec::new();
            let warm = run_point(&host, "write", 1, 16, name).await;
            if let Err(e) = warm {
                fabric.stop().await;
                return Err(e);
            }
            for op in ["read", "write"] {
                for &qd in qds {
                    match run_point(&host, op, qd, count, name).await {
                        Ok(p) => out.push(p),
                        Err(e) => {
                            fabric.stop().await;
                            return Err(e);
                        }
                    }
                }
            }
            fabric.stop().await;
            Ok(out)
        });
        points.extend(got?);
    }
    println!(
        "{:<10} {:<6} {:>4} {:>8} {:>10} {:>9} {:>9} {:>7}",
        "mode", "op", "qd", "I/Os", "IOPS", "p50 µs", "p99 µs", "errors"
    );
    for p in &points {
        println!(
            "{:<10} {:<6} {:>4} {:>8} {:>10.0} {:>9} {:>9} {:>7}",
            p.mode, p.op, p.qd, p.ios, p.iops, p.p50_us, p.p99_us, p.errors
        );
    }
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
                if l.iops > 0.0 { p.iops / l.iops } else { 0.0 }
            );
        }
    }
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&points)? + "\n")?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}
