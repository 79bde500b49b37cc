use fcsim_scenarios::Mode;

use crate::{data_dir, run, san};

const STEPS: &str = r#"
    {"at": "1ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:0", "mix": "write", "qd": 4, "count": 200},
    {"at": "15ms", "op": "check", "check": "workload_errors", "workload": "w1"},
    {"at": "20ms", "op": "crash", "node": "arr1"},
    {"at": "21ms", "op": "restart", "node": "arr1"},
    {"at": "40ms", "op": "check", "check": "no_acked_write_lost", "workload": "w1", "volume": "arr1:0"}
"#;

#[test]
fn acknowledged_writes_survive_a_crash_of_a_write_through_file_backed_array() {
    let dir = data_dir("sim-wt");
    let r = run(&san(1, true, STEPS), Mode::Sim, Some(dir.clone()));
    assert!(r.passed, "{}", r.summary_table());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_memory_array_loses_acknowledged_writes_on_a_crash_and_the_oracle_says_so() {
    let r = run(&san(1, false, STEPS), Mode::Sim, None);
    let lost = r
        .checks
        .iter()
        .find(|c| c.check == "no_acked_write_lost")
        .expect("check ran");
    assert!(!lost.passed, "{}", r.summary_table());
    assert!(lost.detail.contains("are not on arr1:0"), "{}", lost.detail);
}

#[test]
fn sigkill_of_a_file_backed_array_process_loses_no_acknowledged_write() {
    let steps = r#"
        {"at": "10ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:0", "mix": "write", "qd": 4, "count": 300},
        {"at": "800ms", "op": "check", "check": "workload_errors", "workload": "w1"},
        {"at": "900ms", "op": "crash", "node": "arr1"},
        {"at": "950ms", "op": "restart", "node": "arr1"},
        {"at": "1500ms", "op": "check", "check": "no_acked_write_lost", "workload": "w1", "volume": "arr1:0"}
    "#;
    let dir = data_dir("proc-wt");
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_fcsim"));
    let r = run(
        &san(1, true, steps),
        Mode::Processes { exe },
        Some(dir.clone()),
    );
    assert_eq!(r.mode, "processes");
    assert!(r.passed, "{}\n{:#?}", r.summary_table(), r.timeline);
    let _ = std::fs::remove_dir_all(dir);
}
