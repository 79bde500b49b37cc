//! Property tests over the deterministic simulation: random workloads and random cable
//! faults against a host with two paths to an array; nothing acknowledged may be lost.
//!
//! Cases: `FCSIM_PROP_CASES` (default 6; CI keeps it small, long runs raise it). A
//! failure prints the generated schedule; the scenario it builds replays exactly with
//! `fcsim run` because everything, seed included, is in it.

use fcsim_scenarios::RunOptions;

#[allow(dead_code)]
mod common;
use common::harness::cases;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Schedule {
    seed: u64,
    qd: u32,
    pattern: &'static str,
    /// (time ms, host port, down?) cable events.
    cuts: Vec<(u32, u32, bool)>,
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        any::<u64>(),
        1u32..16,
        prop_oneof![Just("random"), Just("sequential")],
        proptest::collection::vec((2u32..30, 0u32..2, any::<bool>()), 0..6),
    )
        .prop_map(|(seed, qd, pattern, mut cuts)| {
            cuts.sort_by_key(|c| c.0);
            Schedule {
                seed,
                qd,
                pattern,
                cuts,
            }
        })
}

fn scenario(s: &Schedule) -> String {
    let mut steps = vec![format!(
        r#"{{"at": "1ms", "op": "workload", "name": "w", "host": "h1", "target": "arr1:0", "pattern": "{}", "mix": "write", "qd": {}, "duration": "30ms"}}"#,
        s.pattern, s.qd
    )];
    for (t, port, down) in &s.cuts {
        let op = if *down { "link_down" } else { "link_up" };
        steps.push(format!(
            r#"{{"at": "{t}ms", "op": "{op}", "port": "h1/{port}"}}"#
        ));
    }
    // Every cable back, then the oracle.
    steps.push(r#"{"at": "31ms", "op": "link_up", "port": "h1/0"}"#.into());
    steps.push(r#"{"at": "31ms", "op": "link_up", "port": "h1/1"}"#.into());
    steps.push(r#"{"at": "50ms", "op": "check", "check": "no_acked_write_lost", "workload": "w", "volume": "arr1:0"}"#.into());
    format!(
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
        seed = s.seed
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(6), failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever cables fail and come back, every write the host saw acknowledged is on
    /// the array afterwards.
    #[test]
    fn no_acknowledged_write_is_lost_under_path_faults(s in schedule()) {
        let text = scenario(&s);
        let sc = fcsim_scenarios::parse(&text, "prop.json").map_err(|d| TestCaseError::fail(d.to_string()))?;
        let r = fcsim_scenarios::run_scenario(&sc, &RunOptions::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let oracle = r.checks.iter().find(|c| c.check == "no_acked_write_lost");
        prop_assert!(oracle.is_some_and(|c| c.passed), "seed={} schedule={s:?}\n{}\nscenario:\n{text}", s.seed, r.summary_table());
    }
}
