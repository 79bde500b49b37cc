//! Processes mode: every node is its own `fcsim node` process on loopback; a crash is a
//! real SIGKILL.

use fcsim_scenarios::{Mode, RunOptions};

use crate::ring;

#[test]
fn sigkill_of_a_switch_process_reroutes_the_fabric() {
    let s = ring(
        "",
        r#"
        {"at": "100ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "arr1/0"},
        {"at": "100ms", "op": "check", "check": "route_path", "from": "sw1", "to": "sw3", "path": ["sw1", "sw2", "sw3"]},
        {"at": "200ms", "op": "crash", "node": "sw4"},
        {"at": "700ms", "op": "check", "check": "route_path", "from": "sw1", "to": "sw3", "path": ["sw1", "sw2", "sw3"]},
        {"at": "700ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "arr1/0"},
        {"at": "750ms", "op": "crash", "node": "sw2"},
        {"at": "1200ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "arr1/0", "expect": false}
        "#,
    );
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_fcsim"));
    let r = fcsim_scenarios::run_scenario(
        &s,
        &RunOptions {
            mode: Mode::Processes { exe },
            ..Default::default()
        },
    )
    .expect("processes run");
    assert_eq!(r.mode, "processes");
    assert!(r.passed, "{}\n{:#?}", r.summary_table(), r.timeline);
}
