//! Devices (DESIGN.md §5): SCSI over FCP, arrays, hosts, tapes and relays. Grown in the SCSI/hosts issue.
//!
//! Start here: [`tape`] — the sans-IO tape drive core (SSC-4 subset).
pub mod tape;
