use crate::{assert_passed, ring, run_sim};

const ZONES: &str =
    r#"{"name": "z1", "members": ["h1/0", "arr1/0"]}, {"name": "z2", "members": ["h2/0", "h1/0"]}"#;

#[test]
fn zoned_out_port_cannot_reach_target_and_drops_are_counted() {
    let s = ring(
        ZONES,
        r#"
        {"at": "1ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "arr1/0"},
        {"at": "1ms", "op": "check", "check": "ns_sees", "host_port": "h2/0", "target_port": "arr1/0", "expect": false},
        {"at": "2ms", "op": "check", "check": "zoning_denied", "from": "h2/0", "to": "arr1/0"},
        {"at": "3ms", "op": "check", "check": "frames_dropped", "switch": "sw2", "port": 0, "at_least": 1}
        "#,
    );
    assert_passed(&run_sim(&s));
}

#[test]
fn zoning_denied_fails_when_the_ports_share_a_zone() {
    let s = ring(
        ZONES,
        r#"{"at": "2ms", "op": "check", "check": "zoning_denied", "from": "h1/0", "to": "arr1/0"}"#,
    );
    let r = run_sim(&s);
    assert!(
        !r.passed,
        "h1 and arr1 share z1, so the PLOGI must be accepted"
    );
    assert!(
        r.checks[0].detail.contains("accepted"),
        "{}",
        r.checks[0].detail
    );
}

#[test]
fn zone_activation_changes_views_fabric_wide() {
    let s = ring(
        ZONES,
        r#"
        {"at": "1ms", "op": "zone_activate", "cfg": "cfg2", "zones": [{"name": "z3", "members": ["h2/0", "arr1/0"]}]},
        {"at": "5ms", "op": "check", "check": "ns_sees", "host_port": "h2/0", "target_port": "arr1/0"},
        {"at": "5ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "arr1/0", "expect": false},
        {"at": "5ms", "op": "check", "check": "rscn_seen", "port": "h1/0"},
        {"at": "6ms", "op": "check", "check": "zoning_denied", "from": "h1/0", "to": "arr1/0"}
        "#,
    );
    assert_passed(&run_sim(&s));
}
