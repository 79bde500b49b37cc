//! `fcsim bench copy`: the array copy services (seed 004, DESIGN.md §7) measured side by
//! side in one run, in the deterministic simulation.
//!
//! Two tables, every point a generated scenario played by
//! [`fcsim_scenarios::run_scenario_observed`] (`Mode::Sim`):
//!
//! 1. **Host write latency, sync against async remote copy.** Per distance (`--km`),
//!    mode and queue depth one scenario with the topology of
//!    `scenarios/library/remote-sync-async-100km.json`: `arr1` in site A pairs LU 0
//!    synchronously with `arr2:0` and LU 1 asynchronously (journal) with `arr2:1` in
//!    site B, over one ISL of that length. `h1` writes 4 KiB at random LBAs to the
//!    pair's primary for a window of fabric time; the `workload_errors` check gives the
//!    I/Os and p50/p99 latency, and the window (workload start to the check) the IOPS.
//!    Right after the last write is acknowledged site A is destroyed, B takes the pair
//!    over and an `rpo_at_most` check (limit 1,000,000, so it passes) gives the
//!    acknowledged writes the secondary lacks: the async journal still in flight.
//!    One scenario per mode and QD, so that the two pairs never share the host port,
//!    the array or the ISL, and every async journal starts empty.
//! 2. **Backup time per strategy under a write storm.** Per strategy one scenario with
//!    the shape of `scenarios/library/backup-split-{R,W,M,H}.json` and
//!    `backup-combined.json`: a local pair `arr1:0` → `arr1:1` with a throttled copier
//!    (`copy_rate`), `h1` writing QD 1 4 KiB random writes all along, a split at 10 ms
//!    and at once an EXTENDED COPY of the first `--range` blocks of the secondary to
//!    `tape1` from the backup server `h2`. The time is the EXTENDED COPY's latency (R,
//!    W, M); for H (the array refuses a backup of a `split_pending` secondary with
//!    NOT READY) the host polls the pair until it is `split` and only then sends the
//!    EXTENDED COPY: the split to the copy's end. The library's H scenario first sends
//!    one EXTENDED COPY that is refused; here that attempt is left out, because when the
//!    copier is fast enough for the pair to be split before it arrives (`--copy-rate
//!    1024`) it would succeed and write the tape twice. For the combined
//!    strategy (`backup_implies_split`: h1 quiesces, the EXTENDED COPY splits the pair
//!    and is answered at once, h1 writes again) the EXTENDED COPY to the end of the
//!    RECEIVE COPY RESULTS polling. `backup_equals_split_image` says whether the tape
//!    holds the primary as it was at the split.
//!
//! Latencies, IOPS and backup times are fabric (simulated) time, so deterministic for a
//! seed; wall times are reported beside them. A benchmark, not a test: nothing here
//! asserts a speed.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use fcsim_scenarios::{Report, Scenario, TimelineEntry};
use serde::Serialize;

/// One-way latency of a cable per km (docs/scenario-format.md, `km`), µs.
const US_PER_KM: f64 = 5.0;
/// Shortest workload window of the latency table, µs.
const MIN_WINDOW_US: u64 = 30_000;
/// The window is at least this many round trips of the ISL.
const WINDOW_RTTS: f64 = 5.0;
/// Blocks of each remote-copy LU (512-byte blocks, as in the library scenario).
const REMOTE_LU_BLOCKS: u64 = 4096;
/// Queue depths of the latency table.
const QDS: [u32; 2] = [1, 8];
/// Fabric time of the split (and of the combined strategy's EXTENDED COPY), ms.
const SPLIT_AT_MS: u64 = 10;
/// Length of the write storm: longer than any backup; the run ends with its last step,
/// so the rest of the storm costs nothing.
const STORM: &str = "60s";
/// Last setup step: time for the hosts to find their LUs (convergence covers fabric
/// login and the name server, not the hosts' SCSI discovery; a small pair forms before
/// the host sees its primary).
const DISCOVERY: &str = "2ms";
/// Most blocks of one EXTENDED COPY segment (a 16-bit block count).
const MAX_SEGMENT_BLOCKS: u64 = 65_535;

/// Options of `fcsim bench copy`.
#[derive(Debug, Clone)]
pub struct CopyBench {
    /// ISL lengths of the latency table, km.
    pub kms: Vec<f64>,
    /// Blocks (512 bytes) of each LU of the backup table.
    pub blocks: u64,
    /// The copier's rate during the backup table, blocks per ms.
    pub copy_rate: u64,
    /// Blocks backed up (from LBA 0 of the secondary).
    pub range: u64,
    /// Seed of every scenario.
    pub seed: u64,
}

/// One point of the latency table: one mode at one distance and QD.
#[derive(Debug, Clone, Serialize)]
pub struct RemotePoint {
    /// ISL length, km.
    pub km: f64,
    /// `sync` or `async`.
    pub mode: String,
    pub qd: u32,
    /// The workload's duration, µs of fabric time.
    pub window_us: u64,
    /// Writes completed.
    pub ios: u64,
    /// Write errors (expected 0).
    pub io_errors: u64,
    /// `ios` over the fabric time from the workload's start to its end (as the
    /// runner's check saw it, 0.5 ms resolution).
    pub iops: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// The pair's state near the end of the workload (`pair` expected; `suspended` if
    /// the async journal filled).
    pub pair_state: String,
    /// Acknowledged writes missing from the secondary after the disaster.
    pub rpo_lost_writes: u64,
    /// Acknowledged writes of the workload.
    pub rpo_acked_writes: u64,
    /// Bytes of the lost writes.
    pub rpo_lost_bytes: u64,
    /// Disaster time minus the acknowledgement of the oldest lost write, µs (none
    /// lost: `None`).
    pub rpo_lag_us: Option<u64>,
    /// Wall time of the whole run (setup, pair formation, workload, disaster), s.
    pub run_wall_s: f64,
    /// Failed checks and step errors of the run (expected none).
    pub problems: Vec<String>,
}

/// One backup strategy.
#[derive(Debug, Clone, Serialize)]
pub struct BackupCase {
    /// `R`, `W`, `M`, `H` or `combined`.
    pub strategy: String,
    /// What `backup_us` measures.
    pub measured: String,
    /// Blocks the pair still had to copy at the split.
    pub diffs_at_split: Option<u64>,
    /// Backup time, µs of fabric time.
    pub backup_us: u64,
    /// `backup_us` ÷ strategy M's.
    pub vs_m: Option<f64>,
    /// SCSI status of the (last) EXTENDED COPY: 0 (GOOD) expected.
    pub xcopy_status: u8,
    /// The `backup_equals_split_image` check passed.
    pub tape_equals_split_image: bool,
    /// Its detail.
    pub detail: String,
    /// Wall time of the run, s.
    pub run_wall_s: f64,
    /// Failed checks and step errors of the run (expected none).
    pub problems: Vec<String>,
}

/// The `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub seed: u64,
    /// `simulation`: every point runs in the deterministic simulation.
    pub mode: String,
    pub kms: Vec<f64>,
    pub remote: Vec<RemotePoint>,
    pub backup_blocks: u64,
    pub backup_range: u64,
    pub copy_rate: u64,
    pub backup: Vec<BackupCase>,
    /// Wall time of the whole bench, s.
    pub wall_s: f64,
}

/// Failed checks and step errors of a run.
pub(crate) fn problems(r: &Report) -> Vec<String> {
    r.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("check {} failed: {}", c.check, c.detail))
        .chain(r.errors.iter().cloned())
        .collect()
}

fn check_detail<'a>(r: &'a Report, check: &str) -> Option<&'a str> {
    r.checks
        .iter()
        .find(|c| c.check == check)
        .map(|c| c.detail.as_str())
}

fn entry<'a>(r: &'a Report, starts_with: &str) -> Option<&'a TimelineEntry> {
    r.timeline.iter().find(|e| e.text.starts_with(starts_with))
}

/// The fabric time of the timeline's zero (the end of setup), µs since the start of
/// the simulation: the report's end time less its last entry's timeline time.
fn t0_us(r: &Report) -> u64 {
    let last = r.timeline.last().map_or(0, |e| e.at_us);
    r.duration_us.saturating_sub(last)
}

// ---- parsers of the runner's texts ---------------------------------------------------

/// `workload w: 123 I/Os, 0 errors, 0 verify failures, p50 40µs p99 41µs…` →
/// (I/Os, errors + verify failures, p50, p99).
fn parse_workload(detail: &str) -> Option<(u64, u64, u64, u64)> {
    let (_, rest) = detail.split_once(": ")?;
    let (ios, rest) = rest.split_once(" I/Os, ")?;
    let (errors, rest) = rest.split_once(" errors, ")?;
    let (verify, rest) = rest.split_once(" verify failures, p50 ")?;
    let (p50, rest) = rest.split_once("µs p99 ")?;
    let (p99, _) = rest.split_once("µs")?;
    Some((
        ios.parse().ok()?,
        errors.parse::<u64>().ok()? + verify.parse::<u64>().ok()?,
        p50.parse().ok()?,
        p99.parse().ok()?,
    ))
}

/// A `Debug`-printed `Duration` (`150.62ms`, `1.5s`, `999µs`, `10ns`) in µs.
fn parse_debug_duration(s: &str) -> Option<u64> {
    let (num, scale) = [("ms", 1e3), ("µs", 1.0), ("ns", 1e-3), ("s", 1e6)]
        .iter()
        .find_map(|(unit, scale)| s.strip_suffix(unit).map(|n| (n, *scale)))?;
    let v: f64 = num.parse().ok()?;
    // Non-negative and far below u64::MAX µs for any simulated run.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((v * scale).round().max(0.0) as u64)
}

/// An `rpo_at_most` detail, `RPO of arr2:1 for w: 3302 of 3750 acknowledged writes lost
/// (13524992 bytes, acknowledged 150.62ms..202.66ms)` → (lost, acked, bytes, oldest
/// lost acknowledgement in µs).
fn parse_rpo(detail: &str) -> Option<(u64, u64, u64, Option<u64>)> {
    let (_, rest) = detail.split_once(": ")?;
    let (lost, rest) = rest.split_once(" of ")?;
    let (acked, rest) = rest.split_once(" acknowledged writes lost (")?;
    let (bytes, rest) = rest.split_once(" bytes")?;
    let oldest = rest
        .strip_prefix(", acknowledged ")
        .and_then(|r| r.split_once(".."))
        .and_then(|(a, _)| parse_debug_duration(a));
    Some((
        lost.parse().ok()?,
        acked.parse().ok()?,
        bytes.parse().ok()?,
        oldest,
    ))
}

/// The state in a pair description, `pa (async …): pair [P pair, S pair], …` → `pair`.
fn parse_pair_state(detail: &str) -> Option<String> {
    let (_, rest) = detail.split_once("): ")?;
    rest.split_whitespace().next().map(String::from)
}

/// The blocks left to copy in a pair description, `…, 1130 of 2048 blocks to copy`.
fn parse_diffs(text: &str) -> Option<u64> {
    let (head, _) = text.rsplit_once(" of ")?;
    head.rsplit(' ').next()?.parse().ok()
}

/// An `xcopy` step's text, `EXTENDED COPY of … status 0x00 … after 20500µs` → (status,
/// latency µs).
fn parse_xcopy(text: &str) -> Option<(u8, u64)> {
    let (_, rest) = text.split_once("status 0x")?;
    let status = u8::from_str_radix(rest.get(..2)?, 16).ok()?;
    let (_, after) = text.rsplit_once(" after ")?;
    let us = after.strip_suffix("µs")?.parse().ok()?;
    Some((status, us))
}

// ---- table 1: sync against async remote copy -----------------------------------------

/// The workload window at `km`: at least [`MIN_WINDOW_US`] and [`WINDOW_RTTS`] round
/// trips.
fn window_us(km: f64) -> u64 {
    let rtt = 2.0 * km * US_PER_KM;
    // km is validated finite and non-negative; the product is far below u64::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let by_rtt = (rtt * WINDOW_RTTS).ceil() as u64;
    // Whole ms, so that the scenario's durations stay readable.
    MIN_WINDOW_US.max(by_rtt).div_ceil(1000) * 1000
}

/// A distance without a needless `.0`.
pub(crate) fn fmt_km(km: f64) -> String {
    if km.fract() == 0.0 {
        format!("{km:.0}")
    } else {
        format!("{km}")
    }
}

/// The two-site scenario of one point: both pairs formed, one workload on `mode`'s
/// pair, then the disaster at site A as soon as it is done.
fn remote_scenario(
    km: f64,
    mode: &str,
    qd: u32,
    window_us: u64,
    seed: u64,
) -> anyhow::Result<Scenario> {
    let (pair, lun) = if mode == "sync" { ("ps", 0) } else { ("pa", 1) };
    let km_text = fmt_km(km);
    let window_ms = window_us / 1000;
    // The pair's state is read just before the workload ends (0.5 ms, at least 1 ms
    // into it).
    let state_at_us = window_us.saturating_sub(500).max(1000);
    let text = format!(
        r#"{{
  "name": "bench-copy-{mode}-{km_text}km-qd{qd}",
  "description": "generated by `fcsim bench copy`",
  "seed": {seed},
  "topology": {{
    "sites": [{{"name": "siteA"}}, {{"name": "siteB"}}],
    "switches": [{{"name": "sw1", "site": "siteA", "domain": 1, "ports": 8}},
                 {{"name": "sw2", "site": "siteB", "domain": 2, "ports": 8}}],
    "arrays": [
      {{"name": "arr1", "site": "siteA", "ports": 2, "functions": ["xcopy", "remote-sync", "remote-async"],
        "lus": [{{"lun": 0, "blocks": {REMOTE_LU_BLOCKS}, "block_bytes": 512}},
                {{"lun": 1, "blocks": {REMOTE_LU_BLOCKS}, "block_bytes": 512}}]}},
      {{"name": "arr2", "site": "siteB", "ports": 1, "functions": ["xcopy", "remote-sync", "remote-async"],
        "lus": [{{"lun": 0, "blocks": {REMOTE_LU_BLOCKS}, "block_bytes": 512}},
                {{"lun": 1, "blocks": {REMOTE_LU_BLOCKS}, "block_bytes": 512}}]}}],
    "hosts": [{{"name": "h1", "site": "siteA", "ports": 1}}, {{"name": "h2", "site": "siteB", "ports": 1}}],
    "links": [{{"a": "h1/0", "b": "sw1/0"}}, {{"a": "arr1/0", "b": "sw1/1"}}, {{"a": "arr1/1", "b": "sw1/2"}},
              {{"a": "h2/0", "b": "sw2/0"}}, {{"a": "arr2/0", "b": "sw2/1"}},
              {{"a": "sw1/7", "b": "sw2/7", "km": {km_text}}}],
    "zones": [{{"name": "z_h1", "members": ["h1/0", "arr1/0"]}},
              {{"name": "z_rep", "members": ["arr1/1", "arr2/0"]}},
              {{"name": "z_h2", "members": ["h2/0", "arr2/0"]}}]
  }},
  "setup": [
    {{"op": "wait", "until": {{"fabric": "converged"}}}},
    {{"op": "pair_create", "name": "ps", "primary": "arr1:0", "secondary": "arr2:0", "mode": "sync"}},
    {{"op": "pair_create", "name": "pa", "primary": "arr1:1", "secondary": "arr2:1", "mode": "async"}},
    {{"op": "wait", "until": {{"pair": "ps", "state": "pair"}}}},
    {{"op": "wait", "until": {{"pair": "pa", "state": "pair"}}}},
    {{"op": "wait", "for": "{DISCOVERY}"}}
  ],
  "steps": [
    {{"at": "0ms", "op": "workload", "name": "w", "host": "h1", "target": "arr1:{lun}", "pattern": "random",
     "mix": "write", "block_bytes": 4096, "qd": {qd}, "duration": "{window_ms}ms"}},
    {{"at": "{state_at_us}us", "op": "check", "check": "pair_state", "pair": "{pair}", "state": "pair"}},
    {{"at": "{state_at_us}us", "op": "check", "check": "workload_errors", "workload": "w"}},
    {{"at": "{state_at_us}us", "op": "disaster", "site": "siteA"}},
    {{"at": "{state_at_us}us", "op": "takeover", "pair": "{pair}", "host": "h2"}},
    {{"at": "{state_at_us}us", "op": "check", "check": "rpo_at_most", "workload": "w", "volume": "arr2:{lun}",
     "writes": 1000000}}
  ]
}}"#
    );
    fcsim_scenarios::parse(&text, "<bench copy remote>")
        .map_err(|d| anyhow!("generated scenario is invalid:\n{d}"))
}

fn remote_point(km: f64, mode: &str, qd: u32, seed: u64) -> anyhow::Result<RemotePoint> {
    let window = window_us(km);
    let s = remote_scenario(km, mode, qd, window, seed)?;
    let (r, _, wall) = crate::bench_sim::run_stamped(&s, seed)?;
    let name = &s.name;
    let w = check_detail(&r, "workload_errors")
        .with_context(|| format!("{name}: no workload check: {:?}", r.errors))?;
    let (ios, io_errors, p50_us, p99_us) =
        parse_workload(w).with_context(|| format!("{name}: unreadable workload check: {w}"))?;
    let started = entry(&r, "workload w started")
        .with_context(|| format!("{name}: the workload did not start: {:?}", r.errors))?;
    let ended = r
        .timeline
        .iter()
        .find(|e| e.text.starts_with("check workload_errors"))
        .with_context(|| format!("{name}: no workload check"))?;
    let elapsed_us = ended.at_us.saturating_sub(started.at_us);
    let pair_state = check_detail(&r, "pair_state")
        .and_then(parse_pair_state)
        .unwrap_or_else(|| "?".into());
    let rpo = check_detail(&r, "rpo_at_most")
        .with_context(|| format!("{name}: no RPO check: {:?}", r.errors))?;
    let (lost, acked, bytes, oldest) =
        parse_rpo(rpo).with_context(|| format!("{name}: unreadable RPO check: {rpo}"))?;
    let disaster_us = r
        .timeline
        .iter()
        .find(|e| e.text.starts_with("disaster at siteA"))
        .map(|e| t0_us(&r) + e.at_us);
    let rpo_lag_us = match (disaster_us, oldest) {
        (Some(d), Some(o)) => Some(d.saturating_sub(o)),
        _ => None,
    };
    Ok(RemotePoint {
        km,
        mode: mode.into(),
        qd,
        window_us: window,
        ios,
        io_errors,
        iops: if elapsed_us > 0 {
            ios as f64 * 1e6 / elapsed_us as f64
        } else {
            0.0
        },
        p50_us,
        p99_us,
        pair_state,
        rpo_lost_writes: lost,
        rpo_acked_writes: acked,
        rpo_lost_bytes: bytes,
        rpo_lag_us,
        run_wall_s: wall.as_secs_f64(),
        problems: problems(&r),
    })
}

// ---- table 2: backup time per strategy ----------------------------------------------

/// The strategies of the backup table, in table order.
const STRATEGIES: [&str; 5] = ["M", "R", "W", "H", "combined"];

fn backup_scenario(strategy: &str, b: &CopyBench) -> anyhow::Result<Scenario> {
    let (blocks, range, rate, seed) = (b.blocks, b.range, b.copy_rate, b.seed);
    let combined = strategy == "combined";
    let (engine_strategy, implies) = if combined {
        ("R", true)
    } else {
        (strategy, false)
    };
    let segments = format!(r#"[{{"src": "arr1:1", "dst": "tape1:0", "blocks": {range}}}]"#);
    let at = format!("{SPLIT_AT_MS}ms");
    let storm = |name: &str, duration: &str, at: &str| {
        format!(
            r#"{{"at": "{at}", "op": "workload", "name": "{name}", "host": "h1", "target": "arr1:0", "pattern": "random",
               "mix": "write", "block_bytes": 4096, "qd": 1, "duration": "{duration}"}}"#
        )
    };
    let backup_check = format!(
        r#"{{"at": "{at}", "op": "check", "check": "backup_equals_split_image", "tape": "tape1", "pair": "p0",
           "workload": "w1", "blocks": {range}}}"#
    );
    let steps: Vec<String> = match strategy {
        "H" => vec![
            storm("w1", STORM, "0ms"),
            format!(r#"{{"at": "{at}", "op": "pair_split", "pair": "p0"}}"#),
            format!(
                r#"{{"at": "{at}", "op": "wait", "until": {{"pair": "p0", "state": "split"}}}}"#
            ),
            format!(
                r#"{{"at": "{at}", "op": "xcopy", "host": "h2", "manager": "arr1:1", "segments": {segments}}}"#
            ),
            backup_check,
        ],
        "combined" => vec![
            storm("w1", &at, "0ms"),
            format!(
                r#"{{"at": "{at}", "op": "check", "check": "workload_errors", "workload": "w1"}}"#
            ),
            format!(
                r#"{{"at": "{at}", "op": "check", "check": "pair_state", "pair": "p0", "state": "pair"}}"#
            ),
            format!(
                r#"{{"at": "{at}", "op": "xcopy", "host": "h2", "manager": "arr1:1", "list_id": 7, "segments": {segments}}}"#
            ),
            storm("w2", STORM, &at),
            format!(
                r#"{{"at": "{at}", "op": "wait", "until": {{"copy_results": {{"host": "h2", "manager": "arr1:1", "list_id": 7}}}}}}"#
            ),
            format!(
                r#"{{"at": "{at}", "op": "check", "check": "copy_results", "host": "h2", "manager": "arr1:1", "list_id": 7,
                   "status": "completed"}}"#
            ),
            backup_check,
        ],
        _ => vec![
            storm("w1", STORM, "0ms"),
            format!(r#"{{"at": "{at}", "op": "pair_split", "pair": "p0"}}"#),
            format!(
                r#"{{"at": "{at}", "op": "xcopy", "host": "h2", "manager": "arr1:1", "segments": {segments}}}"#
            ),
            backup_check,
        ],
    };
    let text = format!(
        r#"{{
  "name": "bench-copy-backup-{strategy}",
  "description": "generated by `fcsim bench copy`",
  "seed": {seed},
  "topology": {{
    "sites": [{{"name": "dc1"}}],
    "switches": [{{"name": "sw1", "site": "dc1", "domain": 1, "ports": 8}}],
    "arrays": [{{"name": "arr1", "site": "dc1", "ports": 1, "functions": ["xcopy", "direct-backup", "local-pair"],
                "lus": [{{"lun": 0, "blocks": {blocks}, "block_bytes": 512}},
                        {{"lun": 1, "blocks": {blocks}, "block_bytes": 512}}]}}],
    "hosts": [{{"name": "h1", "site": "dc1", "ports": 1}}, {{"name": "h2", "site": "dc1", "ports": 1}}],
    "tapes": [{{"name": "tape1", "site": "dc1"}}],
    "links": [{{"a": "h1/0", "b": "sw1/0"}}, {{"a": "h2/0", "b": "sw1/1"}}, {{"a": "arr1/0", "b": "sw1/2"}},
              {{"a": "tape1/0", "b": "sw1/3"}}]
  }},
  "setup": [
    {{"op": "wait", "until": {{"fabric": "converged"}}}},
    {{"op": "pair_create", "name": "p0", "primary": "arr1:0", "secondary": "arr1:1", "mode": "local",
     "strategy": "{engine_strategy}", "backup_implies_split": {implies}}},
    {{"op": "wait", "until": {{"pair": "p0", "state": "pair"}}}},
    {{"op": "pair_options", "pair": "p0", "copy_rate": {rate}, "strategy": "{engine_strategy}",
     "backup_implies_split": {implies}}},
    {{"op": "wait", "for": "{DISCOVERY}"}}
  ],
  "steps": [{steps}]
}}"#,
        steps = steps.join(",\n"),
    );
    fcsim_scenarios::parse(&text, "<bench copy backup>")
        .map_err(|d| anyhow!("generated scenario is invalid:\n{d}"))
}

fn backup_case(strategy: &str, b: &CopyBench) -> anyhow::Result<BackupCase> {
    let s = backup_scenario(strategy, b)?;
    let (r, _, wall) = crate::bench_sim::run_stamped(&s, b.seed)?;
    let name = &s.name;
    let last_xcopy = r
        .timeline
        .iter()
        .rev()
        .find(|e| e.text.starts_with("EXTENDED COPY"))
        .with_context(|| format!("{name}: no EXTENDED COPY ran: {:?}", r.errors))?;
    let (xcopy_status, xcopy_us) = parse_xcopy(&last_xcopy.text)
        .with_context(|| format!("{name}: unreadable EXTENDED COPY: {}", last_xcopy.text))?;
    let split = entry(&r, "split p0");
    let (measured, backup_us, diffs) = match strategy {
        "H" => {
            let split = split.with_context(|| format!("{name}: no split: {:?}", r.errors))?;
            (
                "pair_split to the end of the EXTENDED COPY sent once the host saw the pair split (200 µs polls)",
                last_xcopy.at_us.saturating_sub(split.at_us),
                parse_diffs(&split.text),
            )
        }
        "combined" => {
            let done = entry(&r, "copy 7 at ").with_context(|| {
                format!("{name}: the copy results never completed: {:?}", r.errors)
            })?;
            let issued = last_xcopy.at_us.saturating_sub(xcopy_us);
            (
                "EXTENDED COPY issued to RECEIVE COPY RESULTS completed (200 µs polls)",
                done.at_us.saturating_sub(issued),
                check_detail(&r, "pair_state").and_then(parse_diffs),
            )
        }
        _ => (
            "EXTENDED COPY latency (sent just after the split)",
            xcopy_us,
            split.and_then(|e| parse_diffs(&e.text)),
        ),
    };
    let check = r
        .checks
        .iter()
        .find(|c| c.check == "backup_equals_split_image");
    let mut problems = problems(&r);
    if diffs == Some(0) {
        problems.push(
            "no differences left at the split (copier faster than the storm, or the storm \
             did not write): every strategy backs up a clean secondary"
                .into(),
        );
    }
    Ok(BackupCase {
        strategy: strategy.into(),
        measured: measured.into(),
        diffs_at_split: diffs,
        backup_us,
        vs_m: None,
        xcopy_status,
        tape_equals_split_image: check.is_some_and(|c| c.passed),
        detail: check.map(|c| c.detail.clone()).unwrap_or_default(),
        run_wall_s: wall.as_secs_f64(),
        problems,
    })
}

// ---- the bench -------------------------------------------------------------------------

/// Runs both tables, one scenario after the other.
pub fn copy(b: &CopyBench) -> anyhow::Result<CopyReport> {
    if b.kms.is_empty() {
        bail!("--km needs at least one distance");
    }
    if let Some(km) = b
        .kms
        .iter()
        .find(|k| !k.is_finite() || **k < 0.0 || **k > 20_000.0)
    {
        bail!("--km: {km} is not a distance from 0 to 20,000 km");
    }
    if b.blocks < 2 {
        bail!("--blocks must be at least 2");
    }
    if b.range == 0 || b.range > b.blocks || b.range > MAX_SEGMENT_BLOCKS {
        bail!(
            "--range must be from 1 to --blocks ({}) and at most {MAX_SEGMENT_BLOCKS}, not {}",
            b.blocks,
            b.range
        );
    }
    if b.copy_rate == 0 {
        bail!("--copy-rate must be at least 1 block per ms (0 stalls the copier)");
    }
    let start = Instant::now();
    let mut remote = Vec::new();
    for &km in &b.kms {
        for qd in QDS {
            for mode in ["sync", "async"] {
                eprintln!("bench: {mode} remote copy, {} km, QD {qd}…", fmt_km(km));
                remote.push(remote_point(km, mode, qd, b.seed)?);
            }
        }
    }
    let mut backup = Vec::new();
    for strategy in STRATEGIES {
        eprintln!("bench: backup under a write storm, strategy {strategy}…");
        backup.push(backup_case(strategy, b)?);
    }
    let m_us = backup
        .iter()
        .find(|c| c.strategy == "M")
        .map(|c| c.backup_us);
    for c in &mut backup {
        c.vs_m = m_us
            .filter(|m| *m > 0)
            .map(|m| c.backup_us as f64 / m as f64);
    }
    Ok(CopyReport {
        seed: b.seed,
        mode: "simulation".into(),
        kms: b.kms.clone(),
        remote,
        backup_blocks: b.blocks,
        backup_range: b.range,
        copy_rate: b.copy_rate,
        backup,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// Microseconds as milliseconds with three decimals.
pub(crate) fn fmt_ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn fmt_bytes(b: u64) -> String {
    if b < 1 << 20 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20))
    }
}

impl CopyReport {
    fn point(&self, km: f64, mode: &str, qd: u32) -> Option<&RemotePoint> {
        self.remote
            .iter()
            .find(|p| p.km.to_bits() == km.to_bits() && p.mode == mode && p.qd == qd)
    }

    /// The tables printed to stdout.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "host write latency, sync vs async remote copy: 4 KiB random writes to arr1 (site A), \
             pair → arr2 (site B) over one ISL; deterministic simulation, seed {}; \
             latencies and IOPS in fabric time",
            self.seed
        );
        let _ = writeln!(
            s,
            "{:>6} {:>3} {:>8} | {:>8} {:>8} {:>8} {:>5} | {:>8} {:>8} {:>8} {:>9} | {:>10} | {:>12} {:>10} {:>9} {:>9}",
            "km",
            "QD",
            "window",
            "sync IOPS",
            "p50 µs",
            "p99 µs",
            "lost",
            "asyncIOPS",
            "p50 µs",
            "p99 µs",
            "state",
            "sync÷async",
            "async lost",
            "bytes",
            "lag ms",
            "wall s"
        );
        let _ = writeln!(s, "{}", "-".repeat(150));
        for &km in &self.kms {
            for qd in QDS {
                let (Some(sy), Some(a)) = (self.point(km, "sync", qd), self.point(km, "async", qd))
                else {
                    continue;
                };
                let ratio = if a.p50_us > 0 {
                    format!("{:.1}×", sy.p50_us as f64 / a.p50_us as f64)
                } else {
                    "n/a".into()
                };
                let _ = writeln!(
                    s,
                    "{:>6} {:>3} {:>6}ms | {:>9.0} {:>8} {:>8} {:>5} | {:>9.0} {:>8} {:>8} {:>9} | {:>10} | {:>12} {:>10} {:>9} {:>9.2}",
                    fmt_km(km),
                    qd,
                    sy.window_us / 1000,
                    sy.iops,
                    sy.p50_us,
                    sy.p99_us,
                    sy.rpo_lost_writes,
                    a.iops,
                    a.p50_us,
                    a.p99_us,
                    a.pair_state,
                    ratio,
                    format!("{} of {}", a.rpo_lost_writes, a.rpo_acked_writes),
                    fmt_bytes(a.rpo_lost_bytes),
                    a.rpo_lag_us.map_or_else(|| "0".into(), fmt_ms),
                    sy.run_wall_s + a.run_wall_s
                );
            }
        }
        let _ = writeln!(
            s,
            "lost: acknowledged writes missing from the secondary when site A is destroyed right \
             after the last write is acknowledged (sync: expected 0); lag: the disaster less the \
             oldest lost write's acknowledgement"
        );
        let _ = writeln!(
            s,
            "\nbackup of arr1:1 (local pair of arr1:0, {} × 512-byte blocks, copier {} blocks/ms) → \
             tape1, first {} blocks, under a QD 1 4 KiB write storm; split at {SPLIT_AT_MS} ms; \
             fabric time",
            self.backup_blocks, self.copy_rate, self.backup_range
        );
        let _ = writeln!(
            s,
            "{:<9} {:>15} {:>12} {:>7} {:>12} {:>7}  measured",
            "strategy", "diffs at split", "backup ms", "÷ M", "tape = split", "wall s"
        );
        let _ = writeln!(s, "{}", "-".repeat(130));
        for c in &self.backup {
            let _ = writeln!(
                s,
                "{:<9} {:>15} {:>12} {:>7} {:>12} {:>7.2}  {}",
                c.strategy,
                c.diffs_at_split
                    .map_or_else(|| "?".into(), |d| d.to_string()),
                fmt_ms(c.backup_us),
                c.vs_m.map_or_else(|| "n/a".into(), |r| format!("{r:.1}×")),
                if c.tape_equals_split_image {
                    "yes"
                } else {
                    "NO"
                },
                c.run_wall_s,
                c.measured
            );
        }
        let _ = writeln!(s, "\nwhole bench: {:.2} s wall", self.wall_s);
        for p in &self.remote {
            for e in &p.problems {
                let _ = writeln!(
                    s,
                    "warning ({} {} km QD {}): {e}",
                    p.mode,
                    fmt_km(p.km),
                    p.qd
                );
            }
        }
        for c in &self.backup {
            for e in &c.problems {
                let _ = writeln!(s, "warning (backup {}): {e}", c.strategy);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_texts_parse() {
        assert_eq!(
            parse_workload("workload w: 750 I/Os, 0 errors, 1 verify failures, p50 40µs p99 41µs"),
            Some((750, 1, 40, 41))
        );
        assert_eq!(
            parse_rpo(
                "RPO of arr2:1 for w: 3302 of 3750 acknowledged writes lost (13524992 bytes, acknowledged 150.62ms..202.66ms)"
            ),
            Some((3302, 3750, 13_524_992, Some(150_620)))
        );
        assert_eq!(
            parse_rpo("RPO of arr2:0 for w: 0 of 11 acknowledged writes lost (0 bytes)"),
            Some((0, 11, 0, None))
        );
        assert_eq!(parse_debug_duration("1.5s"), Some(1_500_000));
        assert_eq!(parse_debug_duration("999µs"), Some(999));
        assert_eq!(
            parse_pair_state(
                "pa (async 50:06, group pa): pair [P pair, S pair], 0 of 4096 blocks to copy"
            ),
            Some("pair".into())
        );
        assert_eq!(
            parse_diffs(
                "split p0: p0 (local lun 1, group p0): split_pending [P split, S split_pending], 1130 of 2048 blocks to copy"
            ),
            Some(1130)
        );
        assert_eq!(
            parse_xcopy(
                "EXTENDED COPY of 1024 blocks via arr1:1 from h2: status 0x00  after 20500µs"
            ),
            Some((0, 20_500))
        );
        assert_eq!(
            parse_xcopy(
                "EXTENDED COPY of 1024 blocks via arr1:1 from h2: status 0x02 NOT READY (04/07) after 40µs"
            ),
            Some((2, 40))
        );
    }

    #[test]
    fn generated_scenarios_are_valid() {
        for km in [0.0, 100.0, 1000.0, 12.5] {
            assert!(window_us(km) >= MIN_WINDOW_US);
            for mode in ["sync", "async"] {
                remote_scenario(km, mode, 8, window_us(km), 1).unwrap();
            }
        }
        assert_eq!(window_us(1000.0), 50_000);
        let b = CopyBench {
            kms: vec![0.0],
            blocks: 2048,
            copy_rate: 8,
            range: 1024,
            seed: 1,
        };
        for s in STRATEGIES {
            backup_scenario(s, &b).unwrap();
        }
    }
}
