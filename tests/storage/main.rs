//! End-to-end storage tests: hosts, arrays and SCSI over FCP through the fabric.
//!
//! - `durability`: an acknowledged write survives an array crash only when the array
//!   keeps its LUs in files with `write_through`; with memory LUs the oracle reports the
//!   loss (so `no_acked_write_lost` can fail). Also a real SIGKILL in processes mode.
//! - `multipath`: a cable cut under load fails over to the other path with no error.

mod durability;
mod multipath;

use std::path::PathBuf;

use fcsim_scenarios::{Mode, Report, RunOptions, Scenario};

/// One switch, host h1 with `host_ports` HBA ports, array arr1 with two ports (LU 0:
/// 2048 × 512 B). `write_through` goes on the array; `steps` is the timeline.
pub fn san(host_ports: u32, write_through: bool, steps: &str) -> Scenario {
    let extra_link = if host_ports > 1 {
        r#", {"a": "h1/1", "b": "sw1/3"}"#
    } else {
        ""
    };
    let text = format!(
        r#"{{
  "name": "san",
  "seed": 21,
  "topology": {{
    "sites": [{{"name": "dc1"}}],
    "switches": [{{"name": "sw1", "site": "dc1", "domain": 1, "ports": 8}}],
    "arrays": [{{"name": "arr1", "site": "dc1", "ports": 2, "write_through": {write_through},
                "lus": [{{"lun": 0, "blocks": 2048, "block_bytes": 512}}]}}],
    "hosts": [{{"name": "h1", "site": "dc1", "ports": {host_ports}}}],
    "links": [{{"a": "h1/0", "b": "sw1/0"}}, {{"a": "arr1/0", "b": "sw1/1"}}, {{"a": "arr1/1", "b": "sw1/2"}}{extra_link}]
  }},
  "setup": [{{"op": "wait", "until": {{"fabric": "converged"}}}}],
  "steps": [{steps}]
}}"#
    );
    fcsim_scenarios::parse(&text, "san.json")
        .unwrap_or_else(|d| panic!("test scenario does not validate:\n{d}"))
}

/// A fresh directory for file-backed LUs.
pub fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fcsim-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn run(s: &Scenario, mode: Mode, data_dir: Option<PathBuf>) -> Report {
    fcsim_scenarios::run_scenario(
        s,
        &RunOptions {
            mode,
            data_dir,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("run failed: {e}"))
}
