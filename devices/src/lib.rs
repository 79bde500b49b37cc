//! Devices (DESIGN.md §5): SCSI over FCP, arrays, hosts, tapes and relays.
//!
//! Start here: [`fcp`] (FCP exchanges, initiator and target side).
pub mod fcp;
pub mod history;
pub mod workload;
