use crate::{ring, run_sim};

#[test]
fn same_seed_gives_identical_reports() {
    let steps = r#"
        {"at": "1ms", "op": "link_down", "port": "sw2/6"},
        {"at": "3ms", "op": "check", "check": "route_path", "from": "sw2", "to": "sw3", "path": ["sw2", "sw1", "sw4", "sw3"]},
        {"at": "4ms", "op": "crash", "node": "h2"},
        {"at": "6ms", "op": "check", "check": "rscn_seen", "port": "h1/0"}
    "#;
    let s = ring("", steps);
    let a = serde_json::to_string(&run_sim(&s)).unwrap();
    let b = serde_json::to_string(&run_sim(&s)).unwrap();
    assert_eq!(a, b, "two runs with one seed differ");
}
