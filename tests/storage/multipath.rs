use fcsim_scenarios::Mode;

use crate::{run, san};

/// h1 reaches arr1 over two HBA ports; the cable of one is cut mid-workload and later
/// restored. The workload sees no error and every acknowledged write is on the LU.
#[test]
fn link_cut_mid_workload_fails_over_without_errors() {
    let steps = r#"
        {"at": "1ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:0", "mix": "mixed",
         "read_percent": 30, "qd": 8, "duration": "30ms", "verify": true},
        {"at": "10ms", "op": "link_down", "port": "h1/0"},
        {"at": "20ms", "op": "link_up", "port": "h1/0"},
        {"at": "50ms", "op": "check", "check": "workload_errors", "workload": "w1"},
        {"at": "50ms", "op": "check", "check": "no_acked_write_lost", "workload": "w1", "volume": "arr1:0"}
    "#;
    let r = run(&san(2, false, steps), Mode::Sim, None);
    assert!(r.passed, "{}", r.summary_table());
}

/// With a single path, the same cut makes I/O wait for the path (queue_if_no_path)
/// and then fail: the workload reports errors, so `workload_errors` can fail.
#[test]
fn single_path_cut_longer_than_the_no_path_timeout_shows_errors() {
    let steps = r#"
        {"at": "1ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:0", "mix": "write", "qd": 4, "duration": "20ms"},
        {"at": "5ms", "op": "link_down", "port": "h1/0"},
        {"at": "3s", "op": "check", "check": "workload_errors", "workload": "w1"}
    "#;
    let r = run(&san(1, false, steps), Mode::Sim, None);
    assert!(!r.passed, "{}", r.summary_table());
}
