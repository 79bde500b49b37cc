//! Scenarios (DESIGN.md §8): format, validation, runner, checks and report.
