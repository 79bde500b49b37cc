//! Devices (DESIGN.md §5): SCSI over FCP, arrays, hosts, tapes and relays.
//!
//! Start here: [`fcp`] (FCP exchanges, initiator and target side), then [`initiator`]
//! (discovery and multipath), [`host`] (the host node and its gRPC service).
//! Sans-IO device cores: [`tape`] (SSC-4 tape drive), [`workload`] (the I/O generator)
//! and [`history`] (every host write: the scenario oracle).
pub mod fcp;
pub mod history;
pub mod host;
pub mod initiator;
pub mod tape;
pub mod workload;
