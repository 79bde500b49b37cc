//! Forward error correction on the primary → standby hop of a relay pair (seed 002
//! emb 5/6), end to end in the simulation through the scenario runner.
//!
//! - `fec_beats_resends_under_losses`: the library scenario `relay-fec-losses` — a
//!   4+2 FEC pair over two networks and a plain direct pair, a `port_errors` fault on
//!   the first network: every check holds (discards counted, FEC's median below the
//!   plain pair's, nothing acknowledged lost after the disaster and takeover).
//! - `replicas_restore_on_one_network`: whole and piece replicas on one network with
//!   a lossy port: the pairs keep replicating and nothing acknowledged is lost.
//! - `a_whole_replica_survives_either_network`: F5 — a whole replica on two networks
//!   keeps replicating with either network's ISL cut.
//! - `bad_fec_settings_name_their_field`: refusals at validation.

use fcsim_scenarios::{Report, RunOptions};
use serde_json::{Value, json};

fn run_text(text: &str) -> Report {
    if std::env::var_os("FCSIM_TRACE").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("FCSIM_TRACE"))
            .try_init();
    }
    let parsed = fcsim_scenarios::parse(text, "relay-fec.json")
        .unwrap_or_else(|d| panic!("scenario is invalid: {d}\n{text}"));
    let r = fcsim_scenarios::run_scenario(&parsed, &RunOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    if std::env::var_os("FCSIM_PROP_ECHO").is_some() {
        eprintln!("{}", r.summary_table());
    }
    assert!(
        r.passed,
        "seed={}\n{}\nerrors: {:?}",
        r.seed,
        r.summary_table(),
        r.errors
    );
    r
}

fn library() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/library/relay-fec-losses.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("library scenario")).unwrap()
}

#[test]
fn fec_beats_resends_under_losses() {
    run_text(&library().to_string());
}

#[test]
fn replicas_restore_on_one_network() {
    let mut sc = library();
    sc["name"] = json!("relay-fec-replicas");
    sc["setup"] = json!([
        {"op": "wait", "until": {"fabric": "converged"}},
        {"op": "pair_create", "name": "pw", "primary": "arr1:0", "secondary": "arr2:0",
         "mode": "relay", "group": "gw", "relay": {"source": 1, "fec": {"replica": "whole"}}},
        {"op": "pair_create", "name": "pq", "primary": "arr1:1", "secondary": "arr2:1",
         "mode": "relay", "group": "gq",
         "relay": {"source": 2, "fec": {"replica": "pieces", "pieces": 2}}},
        {"op": "wait", "until": {"pair": "pw", "state": "pair"}},
        {"op": "wait", "until": {"pair": "pq", "state": "pair"}},
    ]);
    sc["steps"] = json!([
        {"at": "0ms", "op": "port_errors", "port": "sw2/7", "drop_every": 7},
        {"at": "1ms", "op": "workload", "name": "ww", "host": "h1", "target": "arr1:0",
         "mix": "write", "block_bytes": 1024, "qd": 2, "duration": "100ms"},
        {"at": "1ms", "op": "workload", "name": "wq", "host": "h1", "target": "arr1:1",
         "mix": "write", "block_bytes": 1024, "qd": 2, "duration": "100ms"},
        {"at": "150ms", "op": "check", "check": "pair_state", "pair": "pw", "state": "pair"},
        {"at": "150ms", "op": "check", "check": "pair_state", "pair": "pq", "state": "pair"},
        {"at": "400ms", "op": "port_errors", "port": "sw2/7", "drop_every": 0},
        {"at": "401ms", "op": "disaster", "site": "tokyo"},
        {"at": "402ms", "op": "relay_takeover", "standby": "arr2", "group": "gw"},
        {"at": "402ms", "op": "relay_takeover", "standby": "arr2", "group": "gq"},
        {"at": "450ms", "op": "check", "check": "no_acked_write_lost", "workload": "ww",
         "volume": "arr2:0"},
        {"at": "450ms", "op": "check", "check": "no_acked_write_lost", "workload": "wq",
         "volume": "arr2:1"},
        {"at": "450ms", "op": "check", "check": "prefix_consistent", "workload": "wq",
         "volume": "arr2:1"},
    ]);
    run_text(&sc.to_string());
}

#[test]
fn a_whole_replica_survives_either_network() {
    for cut in ["sw1/7", "sw3/7"] {
        let mut sc = library();
        sc["name"] = json!(format!("relay-fec-f5-{}", cut.replace('/', "-")));
        sc["setup"] = json!([
            {"op": "wait", "until": {"fabric": "converged"}},
            {"op": "pair_create", "name": "pw", "primary": "arr1:0", "secondary": "arr2:0",
             "mode": "relay", "group": "gw",
             "relay": {"source": 1, "fec": {"replica": "whole"}, "networks": 2}},
            {"op": "wait", "until": {"pair": "pw", "state": "pair"}},
        ]);
        sc["steps"] = json!([
            {"at": "1ms", "op": "workload", "name": "w", "host": "h1", "target": "arr1:0",
             "mix": "write", "block_bytes": 2048, "qd": 4, "duration": "200ms"},
            {"at": "50ms", "op": "link_down", "port": cut},
            {"at": "260ms", "op": "check", "check": "pair_state", "pair": "pw", "state": "pair"},
            {"at": "270ms", "op": "disaster", "site": "tokyo"},
            {"at": "271ms", "op": "relay_takeover", "standby": "arr2", "group": "gw"},
            {"at": "300ms", "op": "check", "check": "no_acked_write_lost", "workload": "w",
             "volume": "arr2:0"},
            {"at": "300ms", "op": "check", "check": "prefix_consistent", "workload": "w",
             "volume": "arr2:0"},
        ]);
        run_text(&sc.to_string());
    }
}

#[test]
fn bad_fec_settings_name_their_field() {
    let refused = |edit: &dyn Fn(&mut Value), want: &str| {
        let mut sc = library();
        edit(&mut sc);
        let text = sc.to_string();
        let e = fcsim_scenarios::parse(&text, "bad.json")
            .err()
            .unwrap_or_else(|| panic!("accepted: {want}"))
            .to_string();
        assert!(e.contains(want), "{e}\nwanted: {want}");
    };
    // The setup's pf pair_create is setup[1].
    refused(
        &|s| s["setup"][1]["relay"]["relays"] = json!(["arr2/1"]),
        "forward error correction is for the direct hop",
    );
    refused(
        &|s| s["setup"][1]["relay"]["fec"] = json!({"data": 4, "parity": 0}),
        "relay.fec",
    );
    refused(
        &|s| s["setup"][1]["relay"]["fec"] = json!({"replica": "halves"}),
        "fec.replica: `halves`",
    );
    refused(
        &|s| s["setup"][1]["relay"]["networks"] = json!(3),
        "relay.networks: 3 is not 1 or 2",
    );
    refused(
        &|s| s["steps"][0]["port"] = json!("arr2/0"),
        "is not a switch",
    );
}
