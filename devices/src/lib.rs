//! Devices (DESIGN.md §4–§5): SCSI targets over FCP, block stores, and (later) arrays,
//! hosts, tapes and relays.
//!
//! **Start here:** [`scsi::target::ScsiTarget::execute`] — one CDB in, status + sense +
//! data out, against a [`store::BlockStore`].
//!
//! Module map:
//! - [`scsi`] — SPC-5 / SBC-4 subset, all sans-IO:
//!   - [`scsi::cdb`] — one struct per command (`parse` / `encode`) and [`scsi::cdb::Command`];
//!   - [`scsi::sense`] — fixed-format sense data, sense keys, ASC/ASCQ pairs, status codes;
//!   - [`scsi::inquiry`] — standard INQUIRY data and VPD pages 00h/80h/83h/8Fh/B0h/C0h;
//!   - [`scsi::xcopy`] — EXTENDED COPY (LID1) parameter lists and RECEIVE COPY RESULTS data;
//!   - [`scsi::target`] — logical units, the command dispatcher, copy jobs and tracking.
//! - [`store`] — the `BlockStore` seam: sparse in-memory and file-backed stores.
//!
//! **Architecture Invariant:** nothing here imports tokio or tonic, reads a clock or draws
//! random numbers; bad input from the wire is answered with sense data, never a panic.

pub mod scsi;
pub mod store;
