//! `fcsim bench fabric`, `bench io --virtual` (and `--tgt` where tgt is installed),
//! `bench sim`, `bench offload` and `bench copy` run at tiny sizes and print their
//! tables. Smoke tests only: nothing here looks at how fast anything was.

use std::process::Command;

fn run_bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fcsim"))
        .args(args)
        .output()
        .expect("run fcsim");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn bench_fabric_runs_and_prints_a_table() {
    let stdout = run_bench(&["bench", "fabric", "--switches", "4", "--nports", "16"]);
    for row in [
        "4 sw / 4 ISL / 16 N_Ports",
        "converge, wall",
        "converge, fabric",
        "NS GID_FT",
        "NS GID_PN",
        "reroute, fabric",
        "reroute, wall",
    ] {
        assert!(stdout.contains(row), "no `{row}` in:\n{stdout}");
    }
    assert!(
        !stdout.contains("n/a"),
        "the reroute was not measured:\n{stdout}"
    );
}

/// `fcsim bench io --virtual`: both paths measured at every point, with the overhead
/// rows, and the JSON holds both.
#[test]
fn bench_io_virtual_runs_both_paths() {
    let dir = std::env::temp_dir().join(format!("fcsim-bench-io-virtual-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("io.json");
    let stdout = run_bench(&[
        "bench",
        "io",
        "--virtual",
        "--count",
        "50",
        "--qd",
        "1,4",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    for row in [
        "direct   arr1:0",
        "virtual  sw1:0",
        "virtual / direct overhead",
    ] {
        assert!(stdout.contains(row), "no `{row}` in:\n{stdout}");
    }
    for (op, qd) in [("read", 1), ("read", 4), ("write", 1), ("write", 4)] {
        let row = format!("{op:<6} qd {qd:>3}: p50");
        assert!(stdout.contains(&row), "no `{row}` in:\n{stdout}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid JSON");
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 8, "{v}");
    for p in points {
        assert_eq!(p["ios"], 50, "{p}");
        assert_eq!(p["errors"], 0, "{p}");
    }
    assert_eq!(v["overhead"].as_array().map(Vec::len), Some(4), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fcsim bench offload` at 4 MiB: the delegated copy ran on the array with no data
/// through the switch, the switch-local copy on the switch with all of it.
#[test]
fn bench_offload_runs_both_cases() {
    let dir = std::env::temp_dir().join(format!("fcsim-bench-offload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("offload.json");
    let stdout = run_bench(&[
        "bench",
        "offload",
        "--gib",
        "0.004",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    for row in ["delegated", "switch-local", "switch-local / delegated"] {
        assert!(stdout.contains(row), "no `{row}` in:\n{stdout}");
    }
    assert!(!stdout.contains("warning"), "{stdout}");
    assert!(!stdout.contains("error"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid JSON");
    let bytes = 4u64 << 20;
    assert_eq!(v["copy_bytes"], bytes, "{v}");
    let cases = v["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 2, "{v}");
    let (d, l) = (&cases[0], &cases[1]);
    assert_eq!(d["executors"], serde_json::json!(["array:arr1"]), "{d}");
    assert_eq!(d["switch_data_bytes"], 0, "{d}");
    assert_eq!(l["executors"], serde_json::json!(["switch"]), "{l}");
    assert_eq!(l["switch_data_bytes"], bytes, "{l}");
    for c in cases {
        assert_eq!(c["state"], "done", "{c}");
        assert_eq!(c["bytes"], bytes, "{c}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fcsim bench sim` at a tiny size: every point completed all its I/Os without errors,
/// and the property-style cases ran and passed their oracle.
#[test]
fn bench_sim_runs_points_and_cases() {
    let dir = std::env::temp_dir().join(format!("fcsim-bench-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("sim.json");
    let stdout = run_bench(&[
        "bench",
        "sim",
        "--count",
        "40",
        "--qd",
        "1,4",
        "--cases",
        "2",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    for row in [
        "read qd 1",
        "write qd 4",
        "mixed: 4 workloads",
        "I/O per wall s",
        "cases/minute",
    ] {
        assert!(stdout.contains(row), "no `{row}` in:\n{stdout}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid JSON");
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 5, "{v}");
    for p in points {
        assert_eq!(p["ios"], 40, "{p}");
        assert_eq!(p["errors"], 0, "{p}");
    }
    assert_eq!(v["cases"]["cases"], 2, "{v}");
    assert_eq!(v["cases"]["passed"], 2, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fcsim bench io --tgt` at a tiny size, when `tgtd` is installed and we are root
/// (it starts a private tgtd); skipped, with a note on stderr, otherwise. The three
/// paths are measured at every point and the fcsim ÷ tgt ratios printed.
#[test]
fn bench_io_tgt_runs_three_paths_when_tgt_is_installed() {
    let has_tgtd = ["/usr/sbin/tgtd", "/sbin/tgtd", "/usr/local/sbin/tgtd"]
        .iter()
        .any(|p| std::path::Path::new(p).is_file());
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !has_tgtd || !root {
        eprintln!("skipped: tgtd not installed or not root (scripts/bench-tgt.sh installs tgt)");
        return;
    }
    let stdout = run_bench(&["bench", "io", "--tgt", "--count", "30", "--qd", "1,4"]);
    for row in [
        "direct   arr1:0",
        "virtual  sw1:0",
        "tgt      tgt:1",
        "fcsim / tgt over iSCSI",
        "virtual read   qd   4: p50",
    ] {
        assert!(stdout.contains(row), "no `{row}` in:\n{stdout}");
    }
}

/// `fcsim bench copy` at a tiny size: the latency table has a row per QD at each
/// distance with sync and async side by side, the backup table a row per strategy, and
/// the JSON holds every point and case.
#[test]
fn bench_copy_runs_both_tables() {
    let dir = std::env::temp_dir().join(format!("fcsim-bench-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("copy.json");
    let stdout = run_bench(&[
        "bench",
        "copy",
        "--km",
        "10",
        "--blocks",
        "256",
        "--range",
        "64",
        "--copy-rate",
        "16",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    for row in [
        "sync IOPS",
        "sync÷async",
        "async lost",
        "diffs at split",
        "whole bench:",
    ] {
        assert!(stdout.contains(row), "no `{row}` in:\n{stdout}");
    }
    for (km, qd) in [(10, 1), (10, 8)] {
        let row = format!("{km:>6} {qd:>3} ");
        assert!(
            stdout.lines().any(|l| l.starts_with(&row)),
            "no `{row}` row in:\n{stdout}"
        );
    }
    for strategy in ["M ", "R ", "W ", "H ", "combined "] {
        assert!(
            stdout.lines().any(|l| l.starts_with(strategy)),
            "no `{strategy}` row in:\n{stdout}"
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid JSON");
    assert_eq!(v["remote"].as_array().map(Vec::len), Some(4), "{v}");
    let strategies: Vec<&str> = v["backup"]
        .as_array()
        .expect("backup")
        .iter()
        .filter_map(|c| c["strategy"].as_str())
        .collect();
    assert_eq!(strategies, ["M", "R", "W", "H", "combined"], "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fcsim bench recovery` at a tiny size: a row per mode (local, sync, the sync
/// suspension variant, async) and the JSON holds them.
#[test]
fn bench_recovery_runs_every_mode() {
    let dir = std::env::temp_dir().join(format!("fcsim-bench-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("recovery.json");
    let stdout = run_bench(&[
        "bench",
        "recovery",
        "--blocks",
        "1024",
        "--changed",
        "10",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    for mode in ["local ", "sync ", "sync-suspend ", "async ", "failover "] {
        assert!(
            stdout.lines().any(|l| l.starts_with(mode)),
            "no `{mode}` row in:\n{stdout}"
        );
    }
    assert!(stdout.contains("whole bench:"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid JSON");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(5), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
