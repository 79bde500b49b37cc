//! Impossible topologies get a clear error with line:column, never a panic.

fn errors(text: &str) -> String {
    match fcsim_scenarios::parse(text, "t.json") {
        Ok(_) => panic!("accepted an invalid scenario"),
        Err(d) => d.to_string(),
    }
}

const BASE: &str = r#"{"name": "t", "topology": {"sites": [{"name": "s"}],
 "switches": [{"name": "sw1", "site": "s", "domain": DOMAIN, "ports": 4}],
 "hosts": [{"name": "h1", "site": "s", "ports": 1}],
 "links": [{"a": "h1/0", "b": "LINKB"}],
 "zones": [{"name": "z", "members": ["MEMBER"]}]}}"#;

fn variant(domain: &str, link_b: &str, member: &str) -> String {
    BASE.replace("DOMAIN", domain)
        .replace("LINKB", link_b)
        .replace("MEMBER", member)
}

#[test]
fn malformed_json_names_line_and_column() {
    let e = errors("{\n  \"name\": \"x\",\n  \"topology\": {,}\n}");
    assert!(e.starts_with("t.json:3:"), "{e}");
}

#[test]
fn domain_outside_1_to_239() {
    let e = errors(&variant("240", "sw1/0", "h1/0"));
    assert!(e.contains("t.json:2:") && e.contains("240"), "{e}");
}

#[test]
fn link_to_missing_node_or_port() {
    assert!(errors(&variant("1", "sw9/0", "h1/0")).contains("sw9"));
    let e = errors(&variant("1", "sw1/7", "h1/0"));
    assert!(e.contains("sw1/7"), "{e}");
}

#[test]
fn zone_member_that_does_not_exist() {
    let e = errors(&variant("1", "sw1/0", "h7/0"));
    assert!(e.contains("h7"), "{e}");
}

#[test]
fn duplicate_wwns() {
    let text = r#"{"name": "t", "topology": {"sites": [{"name": "s"}],
 "switches": [{"name": "sw1", "site": "s", "ports": 4}],
 "hosts": [{"name": "h1", "site": "s", "ports": 1, "port_wwpns": ["50:00:00:00:00:00:00:01"]},
           {"name": "h2", "site": "s", "ports": 1, "port_wwpns": ["50:00:00:00:00:00:00:01"]}],
 "links": [{"a": "h1/0", "b": "sw1/0"}, {"a": "h2/0", "b": "sw1/1"}]}}"#;
    let e = errors(text);
    assert!(e.contains("50:00:00:00:00:00:00:01"), "{e}");
}
