//! Scenarios (DESIGN.md §8): the JSON scenario language, its validation, and
//! the runner, checks and report.
//!
//! Start here: [`check_file`] / [`parse`] turn a file into a checked [`Scenario`]; the
//! types are in [`format`], documented for users in `docs/scenario-format.md`.
//!
//! - [`duration`]: `SimDuration`, times as strings with units (`"120ms"`).
//! - [`format`]: the serde types: `Scenario`, `Topology`, `Step`, `Check`, `PortRef`, …
//! - [`validate`]: `parse` = serde_json + every semantic rule, as line:column
//!   `Diagnostics`.
//! - [`derived`]: domain IDs and WWNs a file leaves out, derived deterministically.
//! - [`locate`]: JSON pointer → line:column over the source text.
//! - [`launch`]: per-node specs and addresses; runs one node in any mode.
//! - [`relays`]: the `relay_control` step and `relay_state` check (seed 002).
//! - [`runner`]: the orchestrator: modes, steps, faults, checks, the report.
//! - [`capture`]: `--pcap`: taps ports during a run and writes a pcap Wireshark reads.
//! - [`control`]: `fcsim up`'s Control endpoint and `fcsim node`.
//! - [`views`]: FOS-style text views of the fabric.
//!
//! **API Boundary:** the scenario JSON schema. Unknown fields are errors; every field
//! is documented in `docs/scenario-format.md`, and a test parses every example there.

pub mod capture;
pub mod control;
pub mod copy;
pub mod derived;
pub mod duration;
pub mod format;
pub mod launch;
pub mod locate;
pub mod relays;
pub mod runner;
pub mod storage;
pub mod validate;
pub mod views;
pub mod virtualization;

use std::path::Path;

pub use capture::{CaptureError, CaptureOptions, CaptureSummary};
pub use control::{LiveFabric, run_node_process, serve_fabric};
pub use duration::SimDuration;
pub use format::{
    ArrayFunction, ArraySpec, Check, ExpectStatus, FabricState, HostSpec, LinkSpec, LuRef, LuSpec,
    NodeKind, NodeView, PortRef, RecoveryPoint, Scenario, Site, Step, SwitchSpec, TapeSpec,
    TimedStep, Topology, WaitUntil, WorkloadMix, WorkloadPattern, XcopySegment, ZoneSpec,
};
pub use launch::NodeSpec;
pub use runner::{
    CheckOutcome, Mode, Report, RunError, RunOptions, TimelineEntry, TimelineObserver,
    run_scenario, run_scenario_observed,
};
pub use validate::{Diagnostic, Diagnostics, parse};
pub use views::topology as topology_summary;

/// Reads, parses and validates the scenario file at `path`. An unreadable file is a
/// single whole-file diagnostic (`path: cannot read: …`).
pub fn check_file(path: &Path) -> Result<Scenario, Diagnostics> {
    let label = path.display().to_string();
    let source = std::fs::read_to_string(path)
        .map_err(|e| Diagnostics::whole_file(&label, format!("cannot read: {e}")))?;
    parse(&source, &label)
}
