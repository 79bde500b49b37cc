use crate::{assert_passed, ring, run_sim};

#[test]
fn isl_cut_reroutes_and_restores() {
    let s = ring(
        "",
        r#"
        {"at": "1ms", "op": "check", "check": "route_path", "from": "sw1", "to": "sw2", "path": ["sw1", "sw2"]},
        {"at": "2ms", "op": "link_down", "port": "sw1/7"},
        {"at": "5ms", "op": "check", "check": "route_path", "from": "sw1", "to": "sw2", "path": ["sw1", "sw4", "sw3", "sw2"]},
        {"at": "5ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "arr1/0"},
        {"at": "6ms", "op": "link_up", "port": "sw1/7"},
        {"at": "10ms", "op": "check", "check": "route_path", "from": "sw1", "to": "sw2", "path": ["sw1", "sw2"]}
        "#,
    );
    let r = run_sim(&s);
    assert_passed(&r);
    assert_eq!(r.checks.len(), 4);
}

#[test]
fn a_wrong_path_fails_the_check() {
    // The check must be able to fail: sw1 → sw2 is one hop, never via sw4.
    let s = ring(
        "",
        r#"{"at": "1ms", "op": "check", "check": "route_path", "from": "sw1", "to": "sw2", "path": ["sw1", "sw4", "sw3", "sw2"]}"#,
    );
    let r = run_sim(&s);
    assert!(!r.passed);
    assert!(
        r.checks[0].detail.contains("not sw4"),
        "{}",
        r.checks[0].detail
    );
}

#[test]
fn switch_crash_reroutes_around_it() {
    let s = ring(
        "",
        r#"
        {"at": "1ms", "op": "crash", "node": "sw2"},
        {"at": "5ms", "op": "check", "check": "route_path", "from": "sw1", "to": "sw3", "path": ["sw1", "sw4", "sw3"]},
        {"at": "5ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "h2/0", "expect": false},
        {"at": "6ms", "op": "restart", "node": "sw2"},
        {"at": "20ms", "op": "check", "check": "logged_in", "port": "h2/0"},
        {"at": "20ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "h2/0"}
        "#,
    );
    assert_passed(&run_sim(&s));
}
