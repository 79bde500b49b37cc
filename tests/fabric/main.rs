//! End-to-end fabric tests over the deterministic simulation (and one in processes mode).
//!
//! - `reroute`: an ISL cut moves traffic to the other path of a ring (FC-SW-6 §8 FSPF).
//! - `zoning`: a zoned-out port cannot reach a target; its frames count as zoning drops.
//! - `rscn`: an N_Port's logout reaches the ports that may see it as an RSCN (FC-LS-3 §4.3.27).
//! - `faults`: partition and heal between sites; a site disaster is for good.
//! - `determinism`: the same seed gives the same report, byte for byte.
//! - `bad_input`: impossible topologies are rejected with line:column, never a panic.
//! - `processes`: one OS process per node; SIGKILL of a switch makes the fabric reroute.

mod bad_input;
mod determinism;
mod faults;
mod processes;
mod reroute;
mod rscn;
mod zoning;

use fcsim_scenarios::{Report, RunOptions, Scenario};

/// A four-switch ring over two sites with one host and one array per site. `extra_zones`
/// is spliced into the topology; `steps` is the timeline (JSON array body).
pub fn ring(zones: &str, steps: &str) -> Scenario {
    let text = format!(
        r#"{{
  "name": "ring",
  "seed": 3,
  "topology": {{
    "sites": [{{"name": "tokyo"}}, {{"name": "osaka"}}],
    "switches": [
      {{"name": "sw1", "site": "tokyo", "domain": 1, "ports": 8}},
      {{"name": "sw2", "site": "tokyo", "domain": 2, "ports": 8}},
      {{"name": "sw3", "site": "osaka", "domain": 3, "ports": 8}},
      {{"name": "sw4", "site": "osaka", "domain": 4, "ports": 8}}
    ],
    "arrays": [{{"name": "arr1", "site": "osaka", "ports": 1, "lus": [{{"lun": 0, "blocks": 1024, "block_bytes": 512}}]}}],
    "hosts": [{{"name": "h1", "site": "tokyo", "ports": 1}}, {{"name": "h2", "site": "tokyo", "ports": 1}}],
    "links": [
      {{"a": "h1/0", "b": "sw1/0"}},
      {{"a": "h2/0", "b": "sw2/0"}},
      {{"a": "arr1/0", "b": "sw3/0"}},
      {{"a": "sw1/7", "b": "sw2/7", "km": 1}},
      {{"a": "sw2/6", "b": "sw3/6", "km": 50}},
      {{"a": "sw3/7", "b": "sw4/7", "km": 1}},
      {{"a": "sw4/6", "b": "sw1/6", "km": 50}}
    ],
    "zones": [{zones}]
  }},
  "setup": [{{"op": "wait", "until": {{"fabric": "converged"}}}}],
  "steps": [{steps}]
}}"#
    );
    match fcsim_scenarios::parse(&text, "ring.json") {
        Ok(s) => s,
        Err(d) => panic!("test scenario does not validate:\n{d}"),
    }
}

pub fn run_sim(s: &Scenario) -> Report {
    fcsim_scenarios::run_scenario(s, &RunOptions::default())
        .unwrap_or_else(|e| panic!("run failed: {e}"))
}

/// Asserts every check passed, printing the report otherwise.
pub fn assert_passed(r: &Report) {
    assert!(
        r.passed,
        "scenario failed:\n{}\n{:#?}",
        r.summary_table(),
        r.timeline
    );
}
