//! Relay replication at the arrays (seed 002), end to end in the simulation through the
//! scenario runner: a relay-mode pair arr1:0 → arr2:0 whose records go straight to the
//! standby's port (direct mode: the standby is the one "relay").
//!
//! - `nothing_acknowledged_is_lost_after_takeover`: host workload, primary-site
//!   disaster, `relay_takeover` at osaka: every write h1 saw acknowledged is on arr2:0,
//!   arr2:0 is a prefix of h1's writes, the standby reports itself fenced, and h2 can
//!   write the taken-over volume.
//! - `restart_points_resume_with_their_state`: restart points with application state
//!   (emb 7 epochs, emb 8 snapshots, emb 9 state) before the disaster; the takeover
//!   resumes from the last one that landed.
//! - `a_fenced_primary_cannot_write_the_standby`: the link between the sites is cut,
//!   osaka takes over, the link heals; arr1 (still running its pair) has its records
//!   refused with RESERVATION CONFLICT (its pair suspends), and a restarted arr1 that
//!   creates the pair again cannot copy to arr2:0 either. arr2:0 keeps what h2 wrote.

use fcsim_scenarios::{Report, RunOptions};
use serde_json::{Value, json};

fn topology() -> Value {
    json!({
        "sites": [{"name": "tokyo"}, {"name": "osaka"}],
        "switches": [{"name": "sw1", "site": "tokyo", "domain": 1, "ports": 8},
                     {"name": "sw2", "site": "osaka", "domain": 2, "ports": 8}],
        "arrays": [
            {"name": "arr1", "site": "tokyo", "ports": 2, "functions": ["remote-async"],
             "lus": [{"lun": 0, "blocks": 2048, "block_bytes": 512}]},
            {"name": "arr2", "site": "osaka", "ports": 1, "functions": ["remote-async"],
             "lus": [{"lun": 0, "blocks": 2048, "block_bytes": 512}]}],
        "hosts": [{"name": "h1", "site": "tokyo", "ports": 1}, {"name": "h2", "site": "osaka", "ports": 1}],
        "links": [{"a": "h1/0", "b": "sw1/0"}, {"a": "arr1/0", "b": "sw1/1"}, {"a": "arr1/1", "b": "sw1/2"},
                  {"a": "h2/0", "b": "sw2/0"}, {"a": "arr2/0", "b": "sw2/1"},
                  {"a": "sw1/7", "b": "sw2/7", "km": 100}],
        "zones": [{"name": "z_h1", "members": ["h1/0", "arr1/0"]},
                  {"name": "z_rep", "members": ["arr1/1", "arr2/0"]},
                  {"name": "z_h2", "members": ["h2/0", "arr2/0"]}],
    })
}

fn scenario(name: &str, relay: Value, steps: Vec<Value>) -> Value {
    json!({
        "name": name, "seed": 7, "topology": topology(),
        "setup": [
            {"op": "wait", "until": {"fabric": "converged"}},
            {"op": "pair_create", "name": "p", "primary": "arr1:0", "secondary": "arr2:0",
             "mode": "relay", "group": "g", "relay": relay},
            {"op": "wait", "until": {"pair": "p", "state": "pair"}},
        ],
        "steps": steps,
    })
}

fn run(sc: &Value) -> Report {
    let text = serde_json::to_string_pretty(sc).expect("serializes");
    let parsed = fcsim_scenarios::parse(&text, "relay.json")
        .unwrap_or_else(|d| panic!("scenario is invalid: {d}\n{text}"));
    let r = fcsim_scenarios::run_scenario(&parsed, &RunOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    if std::env::var_os("FCSIM_PROP_ECHO").is_some() {
        eprintln!("{}", r.summary_table());
    }
    assert!(
        r.passed,
        "seed={}\n{}\nerrors: {:?}\nscenario:\n{text}",
        r.seed,
        r.summary_table(),
        r.errors
    );
    r
}

#[test]
fn nothing_acknowledged_is_lost_after_takeover() {
    let sc = scenario(
        "relay-direct-disaster",
        json!({}),
        vec![
            json!({"at": "0ms", "op": "workload", "name": "w", "host": "h1", "target": "arr1:0",
                   "mix": "write", "block_bytes": 4096, "qd": 4, "duration": "30ms"}),
            json!({"at": "12ms", "op": "check", "check": "relay_standby", "array": "arr2",
                   "group": "g", "min_applied": 1, "fenced": false}),
            json!({"at": "20ms", "op": "disaster", "site": "tokyo"}),
            json!({"at": "21ms", "op": "relay_takeover", "standby": "arr2", "group": "g"}),
            json!({"at": "22ms", "op": "check", "check": "no_acked_write_lost",
                   "workload": "w", "volume": "arr2:0"}),
            json!({"at": "22ms", "op": "check", "check": "prefix_consistent",
                   "workload": "w", "volume": "arr2:0"}),
            json!({"at": "22ms", "op": "check", "check": "relay_standby", "array": "arr2",
                   "group": "g", "min_applied": 1, "fenced": true, "resumed_point": 0}),
            json!({"at": "23ms", "op": "write", "host": "h2", "target": "arr2:0", "lba": 2000,
                   "blocks": 2, "byte": 171}),
            json!({"at": "25ms", "op": "check", "check": "blocks_hold", "volume": "arr2:0",
                   "lba": 2000, "bytes": [171, 171]}),
        ],
    );
    run(&sc);
}

#[test]
fn restart_points_resume_with_their_state() {
    for consistency in ["epochs", "snapshots"] {
        let sc = scenario(
            &format!("relay-restart-points-{consistency}"),
            json!({"consistency": consistency}),
            vec![
                json!({"at": "0ms", "op": "workload", "name": "w", "host": "h1", "target": "arr1:0",
                       "mix": "write", "block_bytes": 4096, "qd": 2, "duration": "30ms"}),
                json!({"at": "5ms", "op": "restart_point", "pair": "p", "app_state": "ckpt-1"}),
                json!({"at": "10ms", "op": "restart_point", "pair": "g", "app_state": "ckpt-2"}),
                json!({"at": "18ms", "op": "check", "check": "relay_standby", "array": "arr2",
                       "group": "g", "min_applied": 2, "fenced": false}),
                json!({"at": "20ms", "op": "disaster", "site": "tokyo"}),
                json!({"at": "21ms", "op": "relay_takeover", "standby": "arr2", "group": "g"}),
                json!({"at": "22ms", "op": "check", "check": "relay_standby", "array": "arr2",
                       "group": "g", "fenced": true, "resumed_point": 2}),
                json!({"at": "22ms", "op": "check", "check": "prefix_consistent",
                       "workload": "w", "volume": "arr2:0"}),
            ],
        );
        let r = run(&sc);
        let text = serde_json::to_string(&r).expect("report serializes");
        assert!(
            text.contains("restart point 2 (6 bytes of state)"),
            "{consistency}: the takeover resumes from point 2 with its state\n{text}"
        );
    }
}

#[test]
fn a_fenced_primary_cannot_write_the_standby() {
    let sc = scenario(
        "relay-fence",
        json!({"drain_timeout": "5ms"}),
        vec![
            json!({"at": "0ms", "op": "workload", "name": "w", "host": "h1", "target": "arr1:0",
                   "mix": "write", "block_bytes": 4096, "qd": 2, "duration": "40ms"}),
            // A takeover while arr1 still replicates (split brain): arr1's next records
            // meet RESERVATION CONFLICT and its pair suspends.
            json!({"at": "10ms", "op": "relay_takeover", "standby": "arr2", "group": "g"}),
            json!({"at": "11ms", "op": "write", "host": "h2", "target": "arr2:0", "lba": 2000,
                   "blocks": 2, "byte": 90}),
            json!({"at": "50ms", "op": "check", "check": "pair_state", "pair": "p",
                   "state": "suspended"}),
            json!({"at": "50ms", "op": "check", "check": "relay_standby", "array": "arr2",
                   "group": "g", "fenced": true}),
            json!({"at": "50ms", "op": "check", "check": "blocks_hold", "volume": "arr2:0",
                   "lba": 2000, "bytes": [90, 90]}),
            // Resynchronising cannot get through either: the copy meets the fence.
            json!({"at": "55ms", "op": "pair_resync", "pair": "p"}),
            json!({"at": "100ms", "op": "check", "check": "pair_state", "pair": "p",
                   "state": "suspended"}),
            // arr1 restarted (its pairs are gone) creates the pair again: the formation
            // copy meets the fence and the pair suspends; arr2:0 is untouched.
            json!({"at": "105ms", "op": "crash", "node": "arr1"}),
            json!({"at": "106ms", "op": "restart", "node": "arr1"}),
            json!({"at": "170ms", "op": "pair_create", "name": "p2", "primary": "arr1:0",
                   "secondary": "arr2:0", "mode": "relay", "group": "g"}),
            json!({"at": "270ms", "op": "check", "check": "pair_state", "pair": "p2",
                   "state": "suspended"}),
            json!({"at": "270ms", "op": "check", "check": "blocks_hold", "volume": "arr2:0",
                   "lba": 2000, "bytes": [90, 90]}),
        ],
    );
    let r = run(&sc);
    let text = serde_json::to_string(&r).expect("report serializes");
    assert!(
        text.contains("suspended: fenced by the standby (takeover)"),
        "arr1's records were refused by the fence\n{}",
        r.summary_table()
    );
}

/// The replication link is cut: the records in flight time out, the pair suspends
/// (`relays not reachable`) and the host writes go on, tracked in the bitmap. The link
/// heals, the pair is resynchronised (the copy, then the stream going on after the
/// sequence number the standby was told) and a second workload is replicated again:
/// arr2:0 ends equal to arr1:0 and holds every acknowledged write.
#[test]
fn a_suspended_relay_pair_resyncs_and_replicates_again() {
    let sc = scenario(
        "relay-suspend-resync",
        json!({}),
        vec![
            json!({"at": "0ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:0",
                   "mix": "write", "block_bytes": 4096, "qd": 2, "duration": "60ms"}),
            json!({"at": "9ms", "op": "check", "check": "relay_standby", "array": "arr2",
                   "group": "g", "min_applied": 1}),
            json!({"at": "10ms", "op": "partition", "a": "tokyo", "b": "osaka"}),
            json!({"at": "150ms", "op": "check", "check": "pair_state", "pair": "p",
                   "state": "suspended"}),
            json!({"at": "160ms", "op": "heal", "a": "tokyo", "b": "osaka"}),
            json!({"at": "400ms", "op": "pair_resync", "pair": "p"}),
            json!({"at": "600ms", "op": "check", "check": "pair_state", "pair": "p",
                   "state": "pair"}),
            json!({"at": "610ms", "op": "workload", "name": "w2", "host": "h1", "target": "arr1:0",
                   "mix": "write", "block_bytes": 4096, "qd": 4, "duration": "20ms"}),
            json!({"at": "700ms", "op": "check", "check": "no_acked_write_lost",
                   "workload": "w2", "volume": "arr2:0"}),
            json!({"at": "700ms", "op": "check", "check": "volumes_equal", "a": "arr1:0",
                   "b": "arr2:0"}),
            json!({"at": "700ms", "op": "check", "check": "relay_standby", "array": "arr2",
                   "group": "g", "fenced": false, "min_applied": 10}),
        ],
    );
    let r = run(&sc);
    let text = serde_json::to_string(&r).expect("report serializes");
    assert!(
        text.contains("suspended: relays not reachable"),
        "{}",
        r.summary_table()
    );
}
