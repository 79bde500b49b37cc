//! Every scenario in `scenarios/library/` validates and passes in the deterministic
//! simulation.

use fcsim_scenarios::RunOptions;

#[test]
fn every_library_scenario_passes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/library");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios/library")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failed = Vec::new();
    for f in &files {
        let s = match fcsim_scenarios::check_file(f) {
            Ok(s) => s,
            Err(d) => panic!("{d}"),
        };
        let r = fcsim_scenarios::run_scenario(&s, &RunOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if !r.passed {
            failed.push(format!("{}:\n{}", f.display(), r.summary_table()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
