//! `fcsim bench fabric` runs at a tiny size and prints its table. A smoke test only:
//! nothing here looks at how fast anything was.

use std::process::Command;

#[test]
fn bench_fabric_runs_and_prints_a_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_fcsim"))
        .args(["bench", "fabric", "--switches", "4", "--nports", "16"])
        .output()
        .expect("run fcsim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
