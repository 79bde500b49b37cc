//! Relay-based replication (DESIGN.md §5 "Relay", §7 "Relay replication"; seed 002,
//! embodiments 1–9). Sans-IO cores only: each is a plain struct that takes events (with
//! `now`, fabric time since start, where time matters) and returns actions; the relay
//! node, the `Copy` service and the array wire them to exchanges and media.
//!
//! **Start here:** [`Record`] is what travels: one replicated write or one application
//! restart point, named by its source and that source's sequence number ([`RecordId`]).
//! It goes [`Primary`] → one or more [`Relay`]s → [`Standby`], or straight from the
//! primary to the standby (then the "relay" a [`Primary`] sends to is the standby).
//!
//! Module map:
//! - [`primary`] — the primary array's side (emb 3, 4): sequence numbers, relay
//!   selection (round-robin, least-loaded, random, split-by-speed, duplicate) and the
//!   mirroring rule "host completion = local write + relay acknowledgement".
//! - [`buffer`] — the relay device (emb 1–4): early acknowledgement once a record is
//!   wholly buffered, store-and-forward or cut-through, volatile buffer or
//!   non-volatile log, immediate, deferred or hybrid forwarding.
//! - [`standby`] — the standby storage: per-source in-order application, duplicates
//!   ignored, and takeover (drain the reachable relays, then fence); how records land
//!   is [`Consistency`]: at once, per epoch (emb 7), or under snapshots (emb 8), each
//!   restart point carrying the application state (emb 9).
//! - [`epoch`] — the emb 7 sync buffer; [`snapshot`] — the emb 8 address table
//!   (copy-on-first-write, create, restore); [`fec`] — emb 5/6 forward error correction;
//!   [`placement`] — the relay placement rules (§2.2).
//!
//! Decisions on the seed's open points (§7.6): every record carries a per-source
//! sequence number, and the standby applies each source strictly in that order (E3);
//! the duplicate-send identifier of emb 4 *is* that sequence number, so the standby's
//! watermark makes duplicates exactly-once with no unbounded "seen" set and no
//! wrap-around (E6); a relay acknowledgement is final, the primary keeps no copy for
//! the standby (E2, as the patent); host requests complete in sequence order, so an
//! acknowledged record never sits behind one the primary site could still take with it.
//! A volatile relay lost with acknowledged records leaves a gap; the standby holds what
//! follows and drops it at takeover, so its image stays a prefix of the source's order.
//! The relay's upstream acknowledgement does not wait for the standby (E5); a full relay
//! answers BUSY (E13); deferred and hybrid forwarding need the non-volatile log (E1,
//! E7); placement checks the primary's zone only (E21).
//!
//! **Architecture Invariant:** this directory imports no tokio or tonic, reads no clock,
//! draws no OS randomness (random relay selection takes a seed), iterates no
//! hash-ordered collection and names no proto type (`tests/architecture.rs`).

pub mod buffer;
pub mod epoch;
pub mod fec;
pub mod placement;
pub mod primary;
pub mod snapshot;
pub mod standby;
pub mod wire;

#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

pub use buffer::{
    Admit, ClockTime, Durability, Forwarding, Relay, RelayAction, RelayConfig, Schedule, Triggers,
};
pub use fec::{FecReceiver, Network, Receipt, Redundancy, Retransmit, Unit};
pub use placement::{RelayPlacement, validate_placement};
pub use primary::{Primary, PrimaryAction, Selection};
pub use snapshot::{BlockWrite, SnapshotTable};
pub use standby::{Consistency, Reply, Standby, StandbyAction, StandbyConfig};

/// A replication source: one primary array's stream (or consistency group), with its
/// own sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// A relay device, as the primary and the standby know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RelayId(pub u16);

/// A record's name: its source and the source's sequence number (from 1, no gaps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordId {
    pub source: SourceId,
    pub seq: u64,
}

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A write of the record's data at block `lba` of the standby LU `lun`.
    Write { lun: u16, lba: u64 },
    /// Application restart point `point` (1, 2, …) of the source; the data is the
    /// application state shipped with it (emb 9), empty when the application has its
    /// own restart function (emb 7, 8).
    RestartPoint { point: u64 },
}

/// The command part of a record: all a receiver needs to allocate its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: RecordId,
    pub kind: Kind,
    /// Data bytes that follow.
    pub len: u64,
}

/// One replicated write or restart point. Invariant: `data.len() == header.len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub header: Header,
    pub data: Bytes,
}

impl Record {
    /// A record whose header length is its data's.
    pub fn new(id: RecordId, kind: Kind, data: Bytes) -> Record {
        Record {
            header: Header {
                id,
                kind,
                len: data.len() as u64,
            },
            data,
        }
    }

    pub fn id(&self) -> RecordId {
        self.header.id
    }
}

/// A restart point as it landed on the standby: the application resumes from
/// `app_state` on the storage image of this point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPoint {
    pub point: u64,
    pub app_state: Bytes,
}

/// Refused configurations and requests of the relay cores; nothing changed.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayError {
    #[error("placement: relay `{relay}` stands in the primary's disaster zone `{zone}`")]
    InDisasterZone { relay: String, zone: String },
    #[error(
        "placement: relay `{relay}` is {relay_latency:?} from the primary, not closer than the standby ({standby_latency:?})"
    )]
    NotCloser {
        relay: String,
        relay_latency: Duration,
        standby_latency: Duration,
    },
    #[error("relay: {0} forwarding needs a non-volatile log")]
    NeedsNonVolatile(&'static str),
    #[error("primary: {0}")]
    BadConfig(&'static str),
    #[error("write: {len} bytes is not a positive multiple of the {block_bytes}-byte block")]
    BadLength { len: usize, block_bytes: u32 },
    #[error("write: host tag {0} is already in use")]
    TagInUse(u64),
    #[error("fec: {0}")]
    BadRedundancy(String),
    #[error("snapshot: {0}")]
    BadGeometry(&'static str),
    #[error("snapshot: logical block {lbn} is beyond the table's {blocks} blocks")]
    NoSuchBlock { lbn: u64, blocks: u64 },
    #[error("snapshot: no free physical block for logical block {lbn}")]
    NoFreeBlock { lbn: u64 },
}
