//! Helpers of the property tests that generate scenarios, run them in the simulation
//! and judge the reports (`tests/properties*.rs`).

// Each test target uses the part it needs.
#![allow(dead_code)]

use fcsim_scenarios::{Report, RunOptions};
use proptest::test_runner::TestCaseError;
use serde_json::Value;

/// Cases per property: `FCSIM_PROP_CASES`, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("FCSIM_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs a generated scenario in the simulation; a scenario the validator refuses is a
/// bug of the test, not of the code under test. `FCSIM_PROP_ECHO=1` prints every
/// report.
pub fn run(sc: &Value, opts: &RunOptions) -> Result<(Report, String), TestCaseError> {
    let text = serde_json::to_string(sc).expect("a scenario serializes");
    let parsed = fcsim_scenarios::parse(&text, "prop.json")
        .map_err(|d| TestCaseError::fail(format!("generated scenario is invalid: {d}\n{text}")))?;
    let r = fcsim_scenarios::run_scenario(&parsed, opts)
        .map_err(|e| TestCaseError::fail(format!("{e}\nscenario:\n{text}")))?;
    if std::env::var_os("FCSIM_PROP_ECHO").is_some() {
        eprintln!("{}", explain(&r, &text));
    }
    Ok((r, text))
}

/// What to print when a property fails: the report and the scenario that replays it.
pub fn explain(r: &Report, text: &str) -> String {
    format!(
        "seed={}\n{}\nerrors: {:?}\nscenario:\n{text}",
        r.seed,
        r.summary_table(),
        r.errors
    )
}

/// The run passed: every check, no step error.
pub fn passed(r: &Report, text: &str) -> Result<(), TestCaseError> {
    if r.passed {
        Ok(())
    } else {
        Err(TestCaseError::fail(explain(r, text)))
    }
}
