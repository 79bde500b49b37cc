//! Devices (DESIGN.md §4–§5): SCSI over FCP, block stores, arrays, hosts, tapes.
//!
//! **Start here:** [`scsi::target::ScsiTarget::execute`] — one CDB in, status + sense +
//! data out, against a [`store::BlockStore`]; then [`fcp`] (FCP exchanges, initiator
//! and target side), [`initiator`] (discovery and multipath) and [`host`] (the host
//! node and its gRPC service).
//!
//! Module map:
//! - [`scsi`] — SPC-5 / SBC-4 subset, all sans-IO:
//!   - [`scsi::cdb`] — one struct per command (`parse` / `encode`) and [`scsi::cdb::Command`];
//!   - [`scsi::sense`] — fixed-format sense data, sense keys, ASC/ASCQ pairs, status codes;
//!   - [`scsi::inquiry`] — standard INQUIRY data and VPD pages 00h/80h/83h/8Fh/B0h/C0h;
//!   - [`scsi::xcopy`] — EXTENDED COPY (LID1) parameter lists and RECEIVE COPY RESULTS data;
//!   - [`scsi::target`] — logical units, the command dispatcher, copy jobs and tracking.
//! - [`store`] — the `BlockStore` seam: sparse in-memory and file-backed stores.
//! - [`tape`] — the SSC-4 tape drive core.
//! - [`workload`] — the I/O generator; [`history`] — every host write, the scenario oracle.
//! - [`relay`] — relay-based replication (seed 002), all sans-IO: the primary's relay
//!   selection and mirroring rule, the relay device, the standby's ordered applier and
//!   takeover, delayed-write epochs, snapshots, forward error correction, placement.
//! - [`relaynode`] — the relay device node: the [`relay::Relay`] core on FCP exchanges.
//! - [`fcp`], [`initiator`], [`host`] — the node side (FC-4 layers over the fabric's N_Ports).
//!
//! **Architecture Invariant:** `scsi`, `store`, `tape`, `workload`, `history` and `relay` import
//! no tokio or tonic, read no clock and draw no random numbers; bad input from the wire is
//! answered with sense data, never a panic.

pub mod array;
pub mod bitmap;
pub mod copy_service;
pub mod copysvc;
pub mod fcp;
pub mod history;
pub mod host;
pub mod initiator;
pub mod relay;
pub mod relaynode;
pub mod scsi;
pub mod store;
pub mod tape;
pub mod tapenode;
pub mod workload;
