//! `fcsim bench recovery`: what a differential resync saves against a full copy, in
//! the deterministic simulation (issue 9, "recovery").
//!
//! Per pair mode (local, sync and async remote over one ISL of `--km`) and per changed
//! fraction (`--changed`, % of a `--blocks`-block volume of 512-byte blocks) one
//! generated scenario, played by [`crate::bench_sim::run_stamped`] (`Mode::Sim`):
//!
//! 1. `h1` fills the primary (`arr1:0`) with sequential 4 KiB writes, so the copies move
//!    real data.
//! 2. **Full copy**: `pair_create` (copier at `--copy-rate` blocks/ms), wait until the
//!    pair is `pair`: the formation copy, every block of the volume.
//! 3. **Differential resync after a split**: `pair_split`, wait until `split`, `h1`
//!    writes the changed fraction as distinct blocks (sequential 4 KiB writes from LBA
//!    0, QD 8), `pair_resync`, wait until `pair`, `volumes_equal`.
//! 4. Sync pairs only, **resync after a suspension**: the ISL is cut (`link_down`), `h1`
//!    writes the same blocks again (the first write is held until the replication
//!    write times out, then the pair suspends and the writes are tracked),
//!    wait until `suspended`, `link_up`, at once `pair_resync`, wait until `pair`,
//!    `volumes_equal`. Its time includes the link and the array's login coming back.
//!
//! 5. **Differential failover** (seed 000, mode `failover`): three sites, P1 (`arr1:0`)
//!    mirrored synchronously to V3 (`arr3:0`, 10 km) and cut into images at S1v carried
//!    asynchronously to V2 (`arr2:0`, `--km` from both). After one host cycle (split
//!    at T, clear at T, remote resync and split, local resync), `h1` writes the changed
//!    fraction, site 1 is destroyed, and `failover_3dc` copies V3 → V2 only the blocks
//!    of the table the safe rule picks; then, on the same volumes, a full copy V3 → V2
//!    (`pair_delete`, `pair_create`) for comparison.
//!
//! Each phase's time runs from the start of its command step (the previous timeline
//! entry: steps play back to back) to the timeline entry of the `wait` that saw the pair
//! in `pair`: fabric time, so deterministic for a seed. Blocks are the command's own
//! count, "N of M blocks to copy" (the full copy: the whole volume). A benchmark, not a
//! test: nothing here asserts a speed.

use crate::bench_copy::{fmt_km, fmt_ms, problems};
use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use fcsim_scenarios::{Report, Scenario};
use serde::Serialize;

/// Block size of every LU, bytes.
const BLOCK_BYTES: u64 = 512;
/// Blocks per host write (4 KiB).
const BLOCKS_PER_WRITE: u64 = 8;
/// Timeline time of the failover mode's host cycle, ms: after the formation copies.
const CYCLE_MS: u64 = 400;
/// Last setup step: time for the host to find its LUs.
const DISCOVERY: &str = "2ms";

/// Options of `fcsim bench recovery`.
#[derive(Debug, Clone)]
pub struct RecoveryBench {
    /// Blocks (512 bytes) of each LU.
    pub blocks: u64,
    /// Changed fractions, % of the volume.
    pub changed: Vec<f64>,
    /// ISL length of the remote pairs, km.
    pub km: f64,
    /// The pairs' background copier, blocks per ms.
    pub copy_rate: u64,
    /// Seed of every scenario.
    pub seed: u64,
}

/// One row: one pair mode (and, for sync, one way of getting out of sync) at one
/// changed fraction.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryRow {
    /// `local`, `sync`, `async`, or `sync-suspend` (the resync after an ISL cut).
    pub mode: String,
    /// Changed fraction asked for, % of the volume.
    pub changed_pct: f64,
    /// Distinct blocks written while out of sync (whole 4 KiB writes).
    pub written_blocks: u64,
    /// Blocks of the formation copy (the whole volume).
    pub full_blocks: u64,
    /// `pair_create` to `pair`, µs of fabric time.
    pub full_us: u64,
    /// Blocks the resync copies, as the `pair_resync` step reported.
    pub resync_blocks: u64,
    /// `pair_resync` to `pair`, µs of fabric time.
    pub resync_us: u64,
    /// `resync_blocks` ÷ `full_blocks`.
    pub bytes_ratio: f64,
    /// `resync_us` ÷ `full_us`.
    pub time_ratio: f64,
    /// `volumes_equal` primary/secondary after the resync passed.
    pub volumes_equal: bool,
    /// Wall time of the scenario's run, s (the sync rows share one run).
    pub run_wall_s: f64,
    /// Failed checks and step errors of the run (expected none).
    pub problems: Vec<String>,
}

/// The `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    pub seed: u64,
    /// `simulation`: every point runs in the deterministic simulation.
    pub mode: String,
    pub blocks: u64,
    pub block_bytes: u64,
    pub km: f64,
    /// The copier rate of every pair, blocks per ms.
    pub copy_rate: u64,
    pub changed: Vec<f64>,
    pub rows: Vec<RecoveryRow>,
    /// Wall time of the whole bench, s.
    pub wall_s: f64,
}

/// The blocks to copy in a pair description, `…, 1640 of 16384 blocks to copy`, or in
/// a failover's, `… arr3 copies 1640 of 16384 blocks …`.
fn parse_to_copy(text: &str) -> Option<u64> {
    let head = match text.split_once(" blocks to copy") {
        Some((head, _)) => head,
        None => text.split_once(" copies ")?.1.split_once(" blocks")?.0,
    };
    let (head, _) = head.rsplit_once(" of ")?;
    head.rsplit(' ').next()?.parse().ok()
}

/// One phase of a run: the `nth` timeline entry starting with `command` up to the next
/// entry showing the pair in `pair` → (blocks to copy at the command, µs from the
/// command step's start to `pair`).
fn phase(r: &Report, command: &str, nth: usize) -> Option<(u64, u64)> {
    let (i, cmd) = r
        .timeline
        .iter()
        .enumerate()
        .filter(|(_, e)| e.text.starts_with(command))
        .nth(nth)?;
    let start = if i == 0 { 0 } else { r.timeline[i - 1].at_us };
    let done = r.timeline[i + 1..]
        .iter()
        .find(|e| e.text.contains("): pair [") && e.text.contains(" after "))?;
    Some((parse_to_copy(&cmd.text)?, done.at_us.saturating_sub(start)))
}

/// Distinct blocks written for `pct` % of `blocks`: whole 4 KiB writes, at least one.
fn written_blocks(blocks: u64, pct: f64) -> u64 {
    // blocks is far below 2^52 and pct in (0, 100]: exact enough, non-negative.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let b = (blocks as f64 * pct / 100.0).ceil() as u64;
    (b.div_ceil(BLOCKS_PER_WRITE) * BLOCKS_PER_WRITE).clamp(BLOCKS_PER_WRITE, blocks)
}

/// The scenario of one mode (`local`, `sync` or `async`) at one changed fraction.
fn scenario(mode: &str, pct: f64, b: &RecoveryBench) -> anyhow::Result<Scenario> {
    if mode == "failover" {
        return failover_scenario(pct, b);
    }
    let blocks = b.blocks;
    let rate = b.copy_rate;
    let seed = b.seed;
    let km = fmt_km(b.km);
    let fill = blocks / BLOCKS_PER_WRITE;
    let writes = written_blocks(blocks, pct) / BLOCKS_PER_WRITE;
    let secondary = if mode == "local" { "arr1:1" } else { "arr2:0" };
    let mut steps = vec![
        format!(
            r#"{{"at": "0ms", "op": "workload", "name": "fill", "host": "h1", "target": "arr1:0", "pattern": "sequential",
             "block_bytes": 4096, "qd": 16, "count": {fill}}}"#
        ),
        r#"{"at": "0ms", "op": "check", "check": "workload_errors", "workload": "fill"}"#.into(),
        format!(
            r#"{{"at": "0ms", "op": "pair_create", "name": "p", "primary": "arr1:0", "secondary": "{secondary}",
             "mode": "{mode}", "copy_rate": {rate}}}"#
        ),
        r#"{"at": "0ms", "op": "wait", "until": {"pair": "p", "state": "pair"}}"#.into(),
        r#"{"at": "0ms", "op": "pair_split", "pair": "p"}"#.into(),
        r#"{"at": "0ms", "op": "wait", "until": {"pair": "p", "state": "split"}}"#.into(),
        format!(
            r#"{{"at": "0ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:0", "pattern": "sequential",
             "block_bytes": 4096, "qd": 8, "count": {writes}}}"#
        ),
        r#"{"at": "0ms", "op": "check", "check": "workload_errors", "workload": "w1"}"#.into(),
        r#"{"at": "0ms", "op": "pair_resync", "pair": "p"}"#.into(),
        r#"{"at": "0ms", "op": "wait", "until": {"pair": "p", "state": "pair"}}"#.into(),
        format!(
            r#"{{"at": "0ms", "op": "check", "check": "volumes_equal", "a": "arr1:0", "b": "{secondary}"}}"#
        ),
    ];
    if mode == "sync" {
        steps.extend([
            r#"{"at": "0ms", "op": "link_down", "port": "sw1/7"}"#.to_string(),
            format!(
                r#"{{"at": "0ms", "op": "workload", "name": "w2", "host": "h1", "target": "arr1:0", "pattern": "sequential",
                 "block_bytes": 4096, "qd": 8, "count": {writes}}}"#
            ),
            r#"{"at": "0ms", "op": "check", "check": "workload_errors", "workload": "w2"}"#.into(),
            r#"{"at": "0ms", "op": "wait", "until": {"pair": "p", "state": "suspended"}}"#.into(),
            r#"{"at": "0ms", "op": "link_up", "port": "sw1/7"}"#.into(),
            r#"{"at": "0ms", "op": "pair_resync", "pair": "p"}"#.into(),
            r#"{"at": "0ms", "op": "wait", "until": {"pair": "p", "state": "pair"}}"#.into(),
            format!(r#"{{"at": "0ms", "op": "check", "check": "volumes_equal", "a": "arr1:0", "b": "{secondary}"}}"#),
        ]);
    }
    let text = format!(
        r#"{{
  "name": "bench-recovery-{mode}-{pct}pct",
  "description": "generated by `fcsim bench recovery`",
  "seed": {seed},
  "topology": {{
    "sites": [{{"name": "siteA"}}, {{"name": "siteB"}}],
    "switches": [{{"name": "sw1", "site": "siteA", "domain": 1, "ports": 8}},
                 {{"name": "sw2", "site": "siteB", "domain": 2, "ports": 8}}],
    "arrays": [
      {{"name": "arr1", "site": "siteA", "ports": 2, "functions": ["local-pair", "remote-sync", "remote-async"],
        "lus": [{{"lun": 0, "blocks": {blocks}, "block_bytes": {BLOCK_BYTES}}},
                {{"lun": 1, "blocks": {blocks}, "block_bytes": {BLOCK_BYTES}}}]}},
      {{"name": "arr2", "site": "siteB", "ports": 1, "functions": ["remote-sync", "remote-async"],
        "lus": [{{"lun": 0, "blocks": {blocks}, "block_bytes": {BLOCK_BYTES}}}]}}],
    "hosts": [{{"name": "h1", "site": "siteA", "ports": 1}}],
    "links": [{{"a": "h1/0", "b": "sw1/0"}}, {{"a": "arr1/0", "b": "sw1/1"}}, {{"a": "arr1/1", "b": "sw1/2"}},
              {{"a": "arr2/0", "b": "sw2/1"}}, {{"a": "sw1/7", "b": "sw2/7", "km": {km}}}],
    "zones": [{{"name": "z_h1", "members": ["h1/0", "arr1/0"]}},
              {{"name": "z_rep", "members": ["arr1/1", "arr2/0"]}}]
  }},
  "setup": [
    {{"op": "wait", "until": {{"fabric": "converged"}}}},
    {{"op": "wait", "for": "{DISCOVERY}"}}
  ],
  "steps": [{steps}]
}}"#,
        steps = steps.join(",\n"),
    );
    fcsim_scenarios::parse(&text, "<bench recovery>")
        .map_err(|d| anyhow!("generated scenario is invalid:\n{d}"))
}

/// The three-site scenario of mode `failover` at one fraction.
fn failover_scenario(pct: f64, b: &RecoveryBench) -> anyhow::Result<Scenario> {
    let (blocks, rate, seed, km) = (b.blocks, b.copy_rate, b.seed, fmt_km(b.km));
    let fill = blocks / BLOCKS_PER_WRITE;
    let writes = written_blocks(blocks, pct) / BLOCKS_PER_WRITE;
    let lu =
        |n: u32| format!(r#"{{"lun": {n}, "blocks": {blocks}, "block_bytes": {BLOCK_BYTES}}}"#);
    let pair = |name: &str, p: &str, s: &str, mode: &str, group: &str| {
        format!(
            r#"{{"at": "0ms", "op": "pair_create", "name": "{name}", "primary": "{p}", "secondary": "{s}",
             "mode": "{mode}", "group": "{group}", "copy_rate": {rate}}}"#
        )
    };
    let wait = |p: &str, state: &str| {
        format!(r#"{{"at": "0ms", "op": "wait", "until": {{"pair": "{p}", "state": "{state}"}}}}"#)
    };
    let at0 = |op: &str| format!(r#"{{"at": "0ms", {op}}}"#);
    let steps = [
        format!(
            r#"{{"at": "0ms", "op": "workload", "name": "fill", "host": "h1", "target": "arr1:0", "pattern": "sequential",
             "block_bytes": 4096, "qd": 16, "count": {fill}}}"#
        ),
        r#"{"at": "0ms", "op": "check", "check": "workload_errors", "workload": "fill"}"#.into(),
        pair("pl", "arr1:0", "arr1:1", "local", "cg-loc"),
        pair("ps", "arr1:0", "arr3:0", "sync", "cg-sync"),
        wait("pl", "pair"),
        wait("ps", "pair"),
        at0(r#""op": "pair_split", "pair": "cg-loc""#),
        wait("pl", "split"),
        pair("pr", "arr1:1", "arr2:0", "async", "cg-rem"),
        wait("pr", "pair"),
        at0(r#""op": "pair_split", "pair": "cg-rem""#),
        wait("pr", "split"),
        at0(r#""op": "pair_resync", "pair": "cg-loc""#),
        wait("pl", "pair"),
        // One host cycle, far enough ahead that the formation copies are done.
        format!(
            r#"{{"at": "{CYCLE_MS}ms", "op": "three_dc_cycle", "local": "cg-loc", "remote": "cg-rem",
             "sync": "cg-sync", "split_at": "{}ms"}}"#,
            CYCLE_MS + 3
        ),
        format!(
            r#"{{"at": "{CYCLE_MS}ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:0",
             "pattern": "sequential", "block_bytes": 4096, "qd": 8, "count": {writes}}}"#
        ),
        format!(
            r#"{{"at": "{CYCLE_MS}ms", "op": "check", "check": "workload_errors", "workload": "w1"}}"#
        ),
        format!(r#"{{"at": "{CYCLE_MS}ms", "op": "disaster", "site": "siteA"}}"#),
        format!(
            r#"{{"at": "{CYCLE_MS}ms", "op": "failover_3dc", "sync": "cg-sync", "remote": "cg-rem",
             "pairs": [{{"name": "f0", "primary": "arr3:0", "secondary": "arr2:0"}}]}}"#
        ),
        format!(
            r#"{{"at": "{CYCLE_MS}ms", "op": "wait", "until": {{"pair": "f0", "state": "pair"}}}}"#
        ),
        format!(
            r#"{{"at": "{CYCLE_MS}ms", "op": "check", "check": "volumes_equal", "a": "arr3:0", "b": "arr2:0"}}"#
        ),
        format!(r#"{{"at": "{CYCLE_MS}ms", "op": "pair_delete", "pair": "f0"}}"#),
        format!(
            r#"{{"at": "{CYCLE_MS}ms", "op": "pair_create", "name": "full", "primary": "arr3:0", "secondary": "arr2:0",
             "mode": "sync", "copy_rate": {rate}}}"#
        ),
        format!(
            r#"{{"at": "{CYCLE_MS}ms", "op": "wait", "until": {{"pair": "full", "state": "pair"}}}}"#
        ),
    ];
    let text = format!(
        r#"{{
  "name": "bench-recovery-failover-{pct}pct",
  "description": "generated by `fcsim bench recovery`",
  "seed": {seed},
  "topology": {{
    "sites": [{{"name": "siteA"}}, {{"name": "siteC"}}, {{"name": "siteB"}}],
    "switches": [{{"name": "sw1", "site": "siteA", "domain": 1, "ports": 8}},
                 {{"name": "sw3", "site": "siteC", "domain": 3, "ports": 8}},
                 {{"name": "sw2", "site": "siteB", "domain": 2, "ports": 8}}],
    "arrays": [
      {{"name": "arr1", "site": "siteA", "ports": 2, "functions": ["local-pair", "remote-sync", "remote-async"],
        "lus": [{lu0}, {lu1}]}},
      {{"name": "arr3", "site": "siteC", "ports": 1, "functions": ["remote-sync", "remote-async"], "lus": [{lu0}]}},
      {{"name": "arr2", "site": "siteB", "ports": 1, "functions": ["remote-sync", "remote-async"], "lus": [{lu0}]}}],
    "hosts": [{{"name": "h1", "site": "siteA", "ports": 1}}],
    "links": [{{"a": "h1/0", "b": "sw1/0"}}, {{"a": "arr1/0", "b": "sw1/1"}}, {{"a": "arr1/1", "b": "sw1/2"}},
              {{"a": "arr3/0", "b": "sw3/1"}}, {{"a": "arr2/0", "b": "sw2/1"}},
              {{"a": "sw1/7", "b": "sw3/7", "km": 10}}, {{"a": "sw1/6", "b": "sw2/6", "km": {km}}},
              {{"a": "sw3/6", "b": "sw2/7", "km": {km}}}],
    "zones": [{{"name": "z_h1", "members": ["h1/0", "arr1/0"]}},
              {{"name": "z_rep", "members": ["arr1/1", "arr3/0", "arr2/0"]}}]
  }},
  "setup": [
    {{"op": "wait", "until": {{"fabric": "converged"}}}},
    {{"op": "wait", "for": "{DISCOVERY}"}}
  ],
  "steps": [{steps}]
}}"#,
        lu0 = lu(0),
        lu1 = lu(1),
        steps = steps.join(",\n"),
    );
    fcsim_scenarios::parse(&text, "<bench recovery>")
        .map_err(|d| anyhow!("generated scenario is invalid:\n{d}"))
}

/// The failover row: the differential copy against the full copy of the same volumes.
fn failover_row(pct: f64, b: &RecoveryBench) -> anyhow::Result<RecoveryRow> {
    let s = scenario("failover", pct, b)?;
    let (r, _, wall) = crate::bench_sim::run_stamped(&s, b.seed)?;
    let name = &s.name;
    let (resync_blocks, resync_us) = phase(&r, "failover of", 0)
        .with_context(|| format!("{name}: the failover never completed: {:?}", r.errors))?;
    let (_, full_us) = phase(&r, "pair created arr3:0", 0)
        .with_context(|| format!("{name}: the full copy never completed: {:?}", r.errors))?;
    Ok(RecoveryRow {
        mode: "failover".into(),
        changed_pct: pct,
        written_blocks: written_blocks(b.blocks, pct),
        full_blocks: b.blocks,
        full_us,
        resync_blocks,
        resync_us,
        bytes_ratio: resync_blocks as f64 / b.blocks as f64,
        time_ratio: if full_us > 0 {
            resync_us as f64 / full_us as f64
        } else {
            f64::NAN
        },
        volumes_equal: r
            .checks
            .iter()
            .any(|c| c.check == "volumes_equal" && c.passed),
        run_wall_s: wall.as_secs_f64(),
        problems: problems(&r),
    })
}

/// Runs one mode at one fraction: one row, two for sync.
fn rows(mode: &str, pct: f64, b: &RecoveryBench) -> anyhow::Result<Vec<RecoveryRow>> {
    if mode == "failover" {
        return Ok(vec![failover_row(pct, b)?]);
    }
    let s = scenario(mode, pct, b)?;
    let (r, _, wall) = crate::bench_sim::run_stamped(&s, b.seed)?;
    let name = &s.name;
    let (_, full_us) = phase(&r, "pair created", 0)
        .with_context(|| format!("{name}: the pair never formed: {:?}", r.errors))?;
    let full_blocks = b.blocks;
    let equal: Vec<bool> = r
        .checks
        .iter()
        .filter(|c| c.check == "volumes_equal")
        .map(|c| c.passed)
        .collect();
    let variants: &[&str] = if mode == "sync" {
        &["sync", "sync-suspend"]
    } else {
        &[mode]
    };
    let mut out = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let (resync_blocks, resync_us) = phase(&r, "resync p:", i).with_context(|| {
            format!(
                "{name}: resync {} never returned to pair: {:?}",
                i + 1,
                r.errors
            )
        })?;
        out.push(RecoveryRow {
            mode: (*v).into(),
            changed_pct: pct,
            written_blocks: written_blocks(b.blocks, pct),
            full_blocks,
            full_us,
            resync_blocks,
            resync_us,
            bytes_ratio: resync_blocks as f64 / full_blocks as f64,
            time_ratio: if full_us > 0 {
                resync_us as f64 / full_us as f64
            } else {
                f64::NAN
            },
            volumes_equal: equal.get(i).copied().unwrap_or(false),
            run_wall_s: wall.as_secs_f64(),
            problems: problems(&r),
        });
    }
    Ok(out)
}

/// Runs every mode at every fraction, one scenario after the other.
pub fn recovery(b: &RecoveryBench) -> anyhow::Result<RecoveryReport> {
    if b.changed.is_empty() {
        bail!("--changed needs at least one percentage");
    }
    if let Some(p) = b
        .changed
        .iter()
        .find(|p| !p.is_finite() || **p <= 0.0 || **p > 100.0)
    {
        bail!("--changed: {p} is not a percentage above 0 and at most 100");
    }
    if b.blocks < 64 || !b.blocks.is_multiple_of(BLOCKS_PER_WRITE) {
        bail!("--blocks must be a multiple of {BLOCKS_PER_WRITE}, at least 64");
    }
    if !b.km.is_finite() || b.km < 0.0 || b.km > 20_000.0 {
        bail!("--km: {} is not a distance from 0 to 20,000 km", b.km);
    }
    if b.copy_rate == 0 {
        bail!("--copy-rate must be at least 1 block per ms (0 stalls the copier)");
    }
    let start = Instant::now();
    let mut rows_out = Vec::new();
    for mode in ["local", "sync", "async", "failover"] {
        for &pct in &b.changed {
            eprintln!("bench: {mode} pair, {pct}% changed…");
            rows_out.extend(rows(mode, pct, b)?);
        }
    }
    // The suspension rows after the split rows of sync.
    rows_out.sort_by_key(|r| {
        ["local", "sync", "sync-suspend", "async", "failover"]
            .iter()
            .position(|m| *m == r.mode)
    });
    Ok(RecoveryReport {
        seed: b.seed,
        mode: "simulation".into(),
        blocks: b.blocks,
        block_bytes: BLOCK_BYTES,
        km: b.km,
        copy_rate: b.copy_rate,
        changed: b.changed.clone(),
        rows: rows_out,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

impl RecoveryReport {
    /// The table printed to stdout.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "differential resync vs full copy: {} × {}-byte blocks ({:.1} MiB), remote pairs over \
             {} km, copier {} blocks/ms; deterministic simulation, seed {}; times in fabric ms",
            self.blocks,
            self.block_bytes,
            (self.blocks * self.block_bytes) as f64 / f64::from(1u32 << 20),
            fmt_km(self.km),
            self.copy_rate,
            self.seed
        );
        let _ = writeln!(
            s,
            "{:<13} {:>8} {:>8} | {:>8} {:>9} | {:>8} {:>9} | {:>8} {:>8} | {:>5} {:>7}",
            "mode",
            "changed",
            "written",
            "full blk",
            "full ms",
            "resync",
            "resync ms",
            "bytes ÷",
            "time ÷",
            "equal",
            "wall s"
        );
        let _ = writeln!(s, "{}", "-".repeat(110));
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:<13} {:>7}% {:>8} | {:>8} {:>9} | {:>8} {:>9} | {:>7.1}% {:>7.1}% | {:>5} {:>7.2}",
                r.mode,
                r.changed_pct,
                r.written_blocks,
                r.full_blocks,
                fmt_ms(r.full_us),
                r.resync_blocks,
                fmt_ms(r.resync_us),
                r.bytes_ratio * 100.0,
                r.time_ratio * 100.0,
                if r.volumes_equal { "yes" } else { "NO" },
                r.run_wall_s
            );
        }
        let _ = writeln!(
            s,
            "full: pair_create to pair (formation copy of the whole volume); resync: pair_resync \
             to pair after a split (sync-suspend: after an ISL cut, resync at once on link_up; \
             failover: site 3's differential copy V3 → V2 after a site-1 disaster, against a full \
             copy V3 → V2); ÷: resync over full copy"
        );
        let _ = writeln!(s, "\nwhole bench: {:.2} s wall", self.wall_s);
        for r in &self.rows {
            for e in &r.problems {
                let _ = writeln!(s, "warning ({} {}%): {e}", r.mode, r.changed_pct);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_parse_and_scenarios_are_valid() {
        assert_eq!(
            parse_to_copy(
                "resync p: p (sync 50:06:0e:80:02:80:00:00, group p): resync [P resync, S resync], 1640 of 16384 blocks to copy"
            ),
            Some(1640)
        );
        assert_eq!(
            parse_to_copy(
                "p (sync 50:06, group p): suspended [P suspended, S suspended], 1640 of 16384 blocks to copy, suspended: secondary not reachable after 0.010ms"
            ),
            Some(1640)
        );
        assert_eq!(
            parse_to_copy(
                "failover of cg-sync (safe rule; at arr2: pr split, V2 image at 5ms): arr3 copies 168 of 16384 blocks (86016 of 8388608 bytes); f0 LU 0 newer table"
            ),
            Some(168)
        );
        assert_eq!(written_blocks(16384, 1.0), 168);
        assert_eq!(written_blocks(16384, 50.0), 8192);
        assert_eq!(written_blocks(64, 0.1), 8);
        let b = RecoveryBench {
            blocks: 1024,
            changed: vec![10.0],
            km: 100.0,
            copy_rate: 1024,
            seed: 1,
        };
        for mode in ["local", "sync", "async", "failover"] {
            scenario(mode, 10.0, &b).unwrap();
        }
    }
}
