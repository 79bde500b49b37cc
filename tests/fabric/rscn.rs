use crate::{assert_passed, ring, run_sim};

#[test]
fn logout_reaches_registered_ports_as_rscn() {
    let s = ring(
        "",
        r#"
        {"at": "1ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "h2/0"},
        {"at": "2ms", "op": "link_down", "port": "h2/0"},
        {"at": "5ms", "op": "check", "check": "rscn_seen", "port": "h1/0"},
        {"at": "5ms", "op": "check", "check": "ns_sees", "host_port": "h1/0", "target_port": "h2/0", "expect": false}
        "#,
    );
    assert_passed(&run_sim(&s));
}

#[test]
fn no_rscn_crosses_a_zone_boundary() {
    // h2 shares no zone with h1: h2's logout must not reach h1.
    let s = ring(
        r#"{"name": "z1", "members": ["h1/0", "arr1/0"]}, {"name": "z2", "members": ["h2/0", "arr1/0"]}"#,
        r#"
        {"at": "2ms", "op": "link_down", "port": "h2/0"},
        {"at": "5ms", "op": "check", "check": "rscn_seen", "port": "h1/0"}
        "#,
    );
    let r = run_sim(&s);
    assert!(!r.passed, "{}", r.summary_table());
    assert!(
        r.checks[0].detail.contains("received 0"),
        "{}",
        r.checks[0].detail
    );
}
