use crate::{assert_passed, ring, run_sim};

#[test]
fn partition_between_sites_splits_the_fabric_and_heal_joins_it() {
    let s = ring(
        "",
        r#"
        {"at": "1ms", "op": "partition", "a": "tokyo", "b": "osaka"},
        {"at": "5ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "arr1/0", "expect": false},
        {"at": "5ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "h2/0"},
        {"at": "6ms", "op": "heal", "a": "tokyo", "b": "osaka"},
        {"at": "15ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "arr1/0"},
        {"at": "15ms", "op": "check", "check": "route_path", "from": "sw1", "to": "sw3", "path": ["sw1", "sw4", "sw3"]}
        "#,
    );
    assert_passed(&run_sim(&s));
}

#[test]
fn site_disaster_destroys_every_node_there_for_good() {
    let s = ring(
        "",
        r#"
        {"at": "1ms", "op": "disaster", "site": "osaka"},
        {"at": "5ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "arr1/0", "expect": false},
        {"at": "5ms", "op": "check", "check": "route_path", "from": "sw1", "to": "sw2", "path": ["sw1", "sw2"]},
        {"at": "6ms", "op": "restart", "node": "sw3"}
        "#,
    );
    let r = run_sim(&s);
    assert!(r.checks.iter().all(|c| c.passed), "{}", r.summary_table());
    assert_eq!(
        r.errors.len(),
        1,
        "restarting a destroyed node is refused: {:?}",
        r.errors
    );
    assert!(r.errors[0].contains("destroyed"), "{}", r.errors[0]);
}
