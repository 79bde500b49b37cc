//! `fcsim bench sim`: how fast the deterministic simulation runs.
//!
//! Two measurements, in one run:
//!
//! 1. **Simulated I/O per wall second.** Per (op, QD) one generated scenario — host →
//!    switch → array LU, 4 KiB random I/O — played by the scenario runner in simulation
//!    (`run_scenario_observed`, `Mode::Sim`). A last point runs several workloads at
//!    once (two hosts, two arrays, reads and writes at QD 1 and 16). For each, the I/Os
//!    the hosts completed over the wall time of the workload window (from the first
//!    workload's start entry to the last `workload_errors` check, stamped by a timeline
//!    observer), and fabric (simulated) time over wall time in the same window.
//! 2. **Property-style cases per minute.** The schedule of `tests/properties.rs` —
//!    a host with two paths to an array, a 30 ms write workload, random cable cuts and
//!    restores, the `no_acked_write_lost` oracle — generated from `--seed` for
//!    `--cases` cases and each played from scratch (setup, convergence, workload,
//!    faults, oracle), as the property test does.
//!
//! A benchmark, not a test: nothing here asserts a speed.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use fcsim_scenarios::{RunOptions, Scenario, TimelineEntry};
use serde::Serialize;

/// The issue's target for simulated I/Os per wall second: printed, never asserted.
pub const IOS_PER_WALL_S_TARGET: f64 = 200_000.0;

/// Options of `fcsim bench sim`.
#[derive(Debug, Clone)]
pub struct SimBench {
    /// I/Os per workload.
    pub count: u64,
    /// Queue depths of the single-workload points.
    pub qds: Vec<u32>,
    /// Ops of the single-workload points (`read`, `write`).
    pub ops: Vec<String>,
    /// Blocks of 4 KiB per array LU.
    pub lu_blocks: u64,
    /// Also run the point with several workloads at once.
    pub mixed: bool,
    /// Property-style cases to run (0: none).
    pub cases: u32,
    /// Root seed: scenarios and the property schedules derive from it.
    pub seed: u64,
}

/// One simulated I/O point.
#[derive(Debug, Clone, Serialize)]
pub struct SimPoint {
    /// `read qd 1`, …, or `mixed: 4 workloads`.
    pub name: String,
    /// Workloads running at once.
    pub workloads: u32,
    /// I/Os the hosts completed.
    pub ios: u64,
    /// I/O errors the hosts saw (expected 0).
    pub errors: u64,
    /// Wall time of the workload window, seconds.
    pub wall_s: f64,
    /// Fabric (simulated) time of the same window, µs.
    pub fabric_us: u64,
    /// `ios / wall_s`.
    pub ios_per_wall_s: f64,
    /// Fabric time ÷ wall time (above 1: the simulation runs faster than real time).
    pub sim_over_wall: f64,
    /// Wall time of the whole run (setup and convergence included), seconds.
    pub run_wall_s: f64,
}

/// The property-style cases.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRate {
    pub cases: u32,
    /// Cases whose oracle passed (expected: all).
    pub passed: u32,
    /// Wall time of all cases, seconds.
    pub wall_s: f64,
    pub cases_per_minute: f64,
    /// Simulated I/Os the cases' workloads completed in all.
    pub ios: u64,
    /// Fabric time of all cases (setup included), µs.
    pub fabric_us: u64,
}

/// The `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub seed: u64,
    pub count: u64,
    pub lu_blocks: u64,
    pub target_ios_per_wall_s: f64,
    pub points: Vec<SimPoint>,
    pub cases: Option<CaseRate>,
}

/// One workload of a generated scenario: (host, target LU, mix, qd).
type Load<'a> = (&'a str, &'a str, &'a str, u32);

/// Host → switch → array with `hosts` hosts and `arrays` arrays (one LU of `lu_blocks`
/// 4 KiB blocks each, sparse memory), every workload started at 1 ms with `count` I/Os and checked
/// at 2 ms (the check waits for the workload).
fn io_scenario(
    name: &str,
    hosts: u32,
    arrays: u32,
    loads: &[Load<'_>],
    count: u64,
    lu_blocks: u64,
    seed: u64,
) -> anyhow::Result<Scenario> {
    let ports = hosts + arrays;
    let host_list: Vec<String> = (1..=hosts)
        .map(|h| format!(r#"{{"name": "h{h}", "site": "lab", "ports": 1}}"#))
        .collect();
    let array_list: Vec<String> = (1..=arrays)
        .map(|a| {
            format!(
                r#"{{"name": "arr{a}", "site": "lab", "ports": 1,
                     "lus": [{{"lun": 0, "blocks": {lu_blocks}, "block_bytes": 4096}}]}}"#
            )
        })
        .collect();
    let links: Vec<String> = (1..=hosts)
        .map(|h| format!(r#"{{"a": "h{h}/0", "b": "sw1/{}"}}"#, h - 1))
        .chain(
            (1..=arrays).map(|a| format!(r#"{{"a": "arr{a}/0", "b": "sw1/{}"}}"#, hosts + a - 1)),
        )
        .collect();
    let mut steps = Vec::new();
    for (i, (host, target, mix, qd)) in loads.iter().enumerate() {
        steps.push(format!(
            r#"{{"at": "1ms", "op": "workload", "name": "w{i}", "host": "{host}", "target": "{target}",
                "pattern": "random", "mix": "{mix}", "block_bytes": 4096, "qd": {qd}, "count": {count}}}"#
        ));
    }
    for i in 0..loads.len() {
        steps.push(format!(
            r#"{{"at": "2ms", "op": "check", "check": "workload_errors", "workload": "w{i}"}}"#
        ));
    }
    let text = format!(
        r#"{{
  "name": "bench-sim-{name}",
  "description": "generated by `fcsim bench sim`",
  "seed": {seed},
  "topology": {{
    "sites": [{{"name": "lab"}}],
    "switches": [{{"name": "sw1", "site": "lab", "domain": 1, "ports": {ports}}}],
    "arrays": [{arrays}],
    "hosts": [{hosts}],
    "links": [{links}]
  }},
  "setup": [{{"op": "wait", "until": {{"fabric": "converged"}}}}],
  "steps": [{steps}]
}}"#,
        arrays = array_list.join(", "),
        hosts = host_list.join(", "),
        links = links.join(", "),
        steps = steps.join(",\n"),
    );
    fcsim_scenarios::parse(&text, "<bench sim>")
        .map_err(|d| anyhow!("generated scenario is invalid:\n{d}"))
}

/// `workload wN: 123 I/Os, 0 errors, …` → (123, 0).
fn parse_workload(detail: &str) -> Option<(u64, u64)> {
    let (_, rest) = detail.split_once(": ")?;
    let (ios, rest) = rest.split_once(" I/Os, ")?;
    let (errors, _) = rest.split_once(" errors")?;
    Some((ios.parse().ok()?, errors.parse().ok()?))
}

/// Timeline entries with the wall time since the run started.
pub(crate) type Stamps = Vec<(TimelineEntry, Duration)>;

/// Runs `s` in simulation with a wall-clock stamp on every timeline entry; also
/// returns the run's wall time.
pub(crate) fn run_stamped(
    s: &Scenario,
    seed: u64,
) -> anyhow::Result<(fcsim_scenarios::Report, Stamps, Duration)> {
    let stamps: Arc<Mutex<Stamps>> = Arc::default();
    let start = Instant::now();
    let sink = stamps.clone();
    let observer: fcsim_scenarios::TimelineObserver = Box::new(move |e: &TimelineEntry| {
        if let Ok(mut v) = sink.lock() {
            v.push((e.clone(), start.elapsed()));
        }
    });
    let report = fcsim_scenarios::run_scenario_observed(
        s,
        &RunOptions {
            seed: Some(seed),
            ..Default::default()
        },
        Some(observer),
    )
    .with_context(|| format!("simulated run of {}", s.name))?;
    let wall = start.elapsed();
    let stamps = stamps.lock().map(|v| v.clone()).unwrap_or_default();
    Ok((report, stamps, wall))
}

fn io_point(
    name: &str,
    hosts: u32,
    arrays: u32,
    loads: &[Load<'_>],
    count: u64,
    b: &SimBench,
) -> anyhow::Result<SimPoint> {
    let seed = b.seed;
    let s = io_scenario(name, hosts, arrays, loads, count, b.lu_blocks, seed)?;
    let (report, stamps, run_wall) = run_stamped(&s, seed)?;
    let first = stamps
        .iter()
        .find(|(e, _)| e.text.starts_with("workload "))
        .with_context(|| format!("{name}: no workload started: {:?}", report.errors))?;
    let last = stamps
        .iter()
        .rev()
        .find(|(e, _)| e.text.contains(" I/Os, "))
        .with_context(|| format!("{name}: no workload finished: {:?}", report.errors))?;
    let (mut ios, mut errors) = (0, 0);
    for c in report
        .checks
        .iter()
        .filter(|c| c.check == "workload_errors")
    {
        let (i, e) = parse_workload(&c.detail)
            .with_context(|| format!("{name}: unreadable check: {}", c.detail))?;
        ios += i;
        errors += e;
    }
    let wall = last.1.saturating_sub(first.1).as_secs_f64();
    let fabric_us = last.0.at_us.saturating_sub(first.0.at_us);
    Ok(SimPoint {
        name: name.to_string(),
        workloads: u32::try_from(loads.len()).unwrap_or(u32::MAX),
        ios,
        errors: errors + report.errors.len() as u64,
        wall_s: wall,
        fabric_us,
        ios_per_wall_s: if wall > 0.0 { ios as f64 / wall } else { 0.0 },
        sim_over_wall: if wall > 0.0 {
            fabric_us as f64 / 1e6 / wall
        } else {
            0.0
        },
        run_wall_s: run_wall.as_secs_f64(),
    })
}

/// splitmix64: the property schedules' generator (no dependency, same on every
/// platform).
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A value in `lo..hi`.
fn below(state: &mut u64, lo: u32, hi: u32) -> u32 {
    lo + u32::try_from(next(state) % u64::from(hi - lo)).unwrap_or(0)
}

/// The scenario of one property-style case, as `tests/properties.rs` builds it: a QD
/// 1–15 write workload for 30 ms over two paths, 0–5 cable cuts and restores at 2–29
/// ms, every cable back at 31 ms, the oracle at 50 ms; plus a `workload_errors` check
/// that reads the I/O count (it may fail under cuts: only its count is used).
fn case_scenario(state: &mut u64) -> anyhow::Result<Scenario> {
    let seed = next(state);
    let qd = below(state, 1, 16);
    let pattern = if next(state).is_multiple_of(2) {
        "random"
    } else {
        "sequential"
    };
    let mut cuts: Vec<(u32, u32, bool)> = (0..below(state, 0, 6))
        .map(|_| {
            (
                below(state, 2, 30),
                below(state, 0, 2),
                next(state).is_multiple_of(2),
            )
        })
        .collect();
    cuts.sort_by_key(|c| c.0);
    let mut steps = vec![format!(
        r#"{{"at": "1ms", "op": "workload", "name": "w", "host": "h1", "target": "arr1:0", "pattern": "{pattern}", "mix": "write", "qd": {qd}, "duration": "30ms"}}"#
    )];
    for (t, port, down) in &cuts {
        let op = if *down { "link_down" } else { "link_up" };
        steps.push(format!(
            r#"{{"at": "{t}ms", "op": "{op}", "port": "h1/{port}"}}"#
        ));
    }
    steps.push(r#"{"at": "31ms", "op": "link_up", "port": "h1/0"}"#.into());
    steps.push(r#"{"at": "31ms", "op": "link_up", "port": "h1/1"}"#.into());
    steps.push(r#"{"at": "50ms", "op": "check", "check": "no_acked_write_lost", "workload": "w", "volume": "arr1:0"}"#.into());
    steps.push(
        r#"{"at": "50ms", "op": "check", "check": "workload_errors", "workload": "w", "at_most": 1000000000}"#
            .into(),
    );
    let text = format!(
        r#"{{"name": "prop-multipath", "seed": {seed},
  "topology": {{"sites": [{{"name": "dc1"}}],
    "switches": [{{"name": "sw1", "site": "dc1", "domain": 1, "ports": 8}}, {{"name": "sw2", "site": "dc1", "domain": 2, "ports": 8}}],
    "arrays": [{{"name": "arr1", "site": "dc1", "ports": 2, "lus": [{{"lun": 0, "blocks": 1024, "block_bytes": 512}}]}}],
    "hosts": [{{"name": "h1", "site": "dc1", "ports": 2}}],
    "links": [{{"a": "h1/0", "b": "sw1/0"}}, {{"a": "h1/1", "b": "sw2/0"}}, {{"a": "arr1/0", "b": "sw1/1"}},
              {{"a": "arr1/1", "b": "sw2/1"}}, {{"a": "sw1/7", "b": "sw2/7"}}]}},
  "setup": [{{"op": "wait", "until": {{"fabric": "converged"}}}}],
  "steps": [{}]}}"#,
        steps.join(",\n"),
    );
    fcsim_scenarios::parse(&text, "<bench sim case>")
        .map_err(|d| anyhow!("generated case is invalid:\n{d}"))
}

fn run_cases(n: u32, seed: u64) -> anyhow::Result<CaseRate> {
    let mut state = seed;
    let scenarios = (0..n)
        .map(|_| case_scenario(&mut state))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut passed, mut ios, mut fabric_us) = (0, 0, 0);
    let start = Instant::now();
    for s in &scenarios {
        let r = fcsim_scenarios::run_scenario(s, &RunOptions::default())
            .with_context(|| format!("property case seed {}", s.seed))?;
        if r.checks
            .iter()
            .any(|c| c.check == "no_acked_write_lost" && c.passed)
        {
            passed += 1;
        }
        ios += r
            .checks
            .iter()
            .filter(|c| c.check == "workload_errors")
            .filter_map(|c| parse_workload(&c.detail))
            .map(|(i, _)| i)
            .sum::<u64>();
        fabric_us += r.duration_us;
    }
    let wall = start.elapsed().as_secs_f64();
    Ok(CaseRate {
        cases: n,
        passed,
        wall_s: wall,
        cases_per_minute: if wall > 0.0 {
            f64::from(n) * 60.0 / wall
        } else {
            0.0
        },
        ios,
        fabric_us,
    })
}

/// Runs the points and the cases.
pub fn sim(b: &SimBench) -> anyhow::Result<SimReport> {
    let mut points = Vec::new();
    for op in &b.ops {
        for &qd in &b.qds {
            let name = format!("{op} qd {qd}");
            points.push(io_point(
                &name,
                1,
                1,
                &[("h1", "arr1:0", op, qd)],
                b.count,
                b,
            )?);
        }
    }
    let mixed: [Load<'_>; 4] = [
        ("h1", "arr1:0", "read", 16),
        ("h1", "arr2:0", "write", 16),
        ("h2", "arr1:0", "write", 1),
        ("h2", "arr2:0", "read", 1),
    ];
    if b.mixed {
        points.push(io_point(
            "mixed: 4 workloads",
            2,
            2,
            &mixed,
            b.count / 4,
            b,
        )?);
    }
    let cases = if b.cases > 0 {
        Some(run_cases(b.cases, b.seed)?)
    } else {
        None
    };
    Ok(SimReport {
        seed: b.seed,
        count: b.count,
        lu_blocks: b.lu_blocks,
        target_ios_per_wall_s: IOS_PER_WALL_S_TARGET,
        points,
        cases,
    })
}

impl SimReport {
    /// The tables printed to stdout.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "simulated 4 KiB random I/O, host → switch → array LU of {} × 4 KiB \
             (deterministic simulation, seed {})",
            self.lu_blocks, self.seed
        );
        let _ = writeln!(
            s,
            "{:<20} {:>9} {:>7} {:>9} {:>12} {:>14} {:>11} {:>9}",
            "point",
            "I/Os",
            "errors",
            "wall s",
            "fabric ms",
            "I/O per wall s",
            "sim ÷ wall",
            "run s"
        );
        for p in &self.points {
            let _ = writeln!(
                s,
                "{:<20} {:>9} {:>7} {:>9.3} {:>12.3} {:>14.0} {:>10.3}× {:>9.2}",
                p.name,
                p.ios,
                p.errors,
                p.wall_s,
                p.fabric_us as f64 / 1000.0,
                p.ios_per_wall_s,
                p.sim_over_wall,
                p.run_wall_s
            );
        }
        let _ = writeln!(
            s,
            "issue target: ≥ {:.0} simulated I/Os per wall second (measured, not asserted)",
            self.target_ios_per_wall_s
        );
        if let Some(c) = &self.cases {
            let _ = writeln!(
                s,
                "\nproperty-style cases (tests/properties.rs schedule: 2 paths, 30 ms writes, cable cuts, oracle)"
            );
            let _ = writeln!(
                s,
                "{:>6} {:>7} {:>9} {:>14} {:>9} {:>12} {:>14}",
                "cases", "passed", "wall s", "cases/minute", "I/Os", "fabric ms", "I/O per wall s"
            );
            let _ = writeln!(
                s,
                "{:>6} {:>7} {:>9.2} {:>14.1} {:>9} {:>12.3} {:>14.0}",
                c.cases,
                c.passed,
                c.wall_s,
                c.cases_per_minute,
                c.ios,
                c.fabric_us as f64 / 1000.0,
                if c.wall_s > 0.0 {
                    c.ios as f64 / c.wall_s
                } else {
                    0.0
                }
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_detail_parses() {
        assert_eq!(
            parse_workload("workload w0: 123 I/Os, 4 errors, 0 verify failures, p50 1µs p99 2µs"),
            Some((123, 4))
        );
    }

    #[test]
    fn generated_scenarios_are_valid() {
        io_scenario("x", 2, 2, &[("h1", "arr2:0", "read", 4)], 10, 64, 1).unwrap();
        let mut st = 7;
        for _ in 0..20 {
            case_scenario(&mut st).unwrap();
        }
    }
}
