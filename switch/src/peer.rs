//! Table acquisition between intelligent switches (seed 003 §3.7, Fig. 20 S21/S23):
//! one switch asks the switch presenting a remote virtual LU for its function table TF
//! and for that LU's mapping-table rows TM, in band, from its initiator port to the
//! other's target port, so a partition of the fabric blocks it as it would a real one.
//! The same command carries the coherence requests an inter-site offload needs (destage
//! and drop the cached blocks of the destination range before the arrays write it, drop
//! them again after).
//!
//! The command is vendor specific (operation code D5h, SPC-5 §4.2.5.1 reserves C0h–FFh):
//!
//! ```text
//! byte 0      D5h                      byte 1  SERVICE ACTION (1 TF, 2 TM, 3 PREPARE, 4 INVALIDATE)
//! bytes 2-9   LOGICAL BLOCK ADDRESS    bytes 10-13  NUMBER OF BLOCKS / ALLOCATION LENGTH
//! byte 14     reserved                 byte 15 CONTROL
//! ```
//!
//! TF and TM come back as JSON data-in (like fcsim's vendor SW_ILS payloads).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use fcsim_fabric::Wwn;
use serde::{Deserialize, Serialize};

use crate::tf::{FunctionTable, SupportFunction};
use crate::tm::{Backing, VirtualLu};

/// The vendor-specific operation code.
pub const OPCODE: u8 = 0xD5;

/// How long a fetched peer table may be used (I18).
pub const PEER_TTL: Duration = Duration::from_secs(1);

/// What a table-acquisition command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The whole function table.
    FunctionTable,
    /// The TM rows of the addressed virtual LU.
    MappingTable,
    /// Destage the range's dirty blocks and drop its cached blocks; GOOD when clean.
    Prepare { lba: u64, blocks: u64 },
    /// Drop the range's cached blocks (an array wrote it directly).
    Invalidate { lba: u64, blocks: u64 },
}

impl Request {
    /// The 16-byte CDB.
    pub fn encode(self) -> Bytes {
        let (sa, lba, n) = match self {
            Request::FunctionTable => (1, 0, 65_535),
            Request::MappingTable => (2, 0, 65_535),
            Request::Prepare { lba, blocks } => (3, lba, blocks),
            Request::Invalidate { lba, blocks } => (4, lba, blocks),
        };
        let mut b = BytesMut::with_capacity(16);
        b.put_u8(OPCODE);
        b.put_u8(sa);
        b.put_u64(lba);
        b.put_u32(u32::try_from(n).unwrap_or(u32::MAX));
        b.put_u8(0);
        b.put_u8(0);
        b.freeze()
    }

    /// Parses a CDB; `None` if it is not a valid table-acquisition command.
    pub fn parse(cdb: &[u8]) -> Option<Request> {
        if cdb.len() != 16 || cdb[0] != OPCODE {
            return None;
        }
        let lba = u64::from_be_bytes(cdb[2..10].try_into().ok()?);
        let blocks = u64::from(u32::from_be_bytes(cdb[10..14].try_into().ok()?));
        match cdb[1] {
            1 => Some(Request::FunctionTable),
            2 => Some(Request::MappingTable),
            3 => Some(Request::Prepare { lba, blocks }),
            4 => Some(Request::Invalidate { lba, blocks }),
            _ => None,
        }
    }

    /// Bytes of data-in the asker accepts.
    pub fn allocation(self) -> u32 {
        match self {
            Request::FunctionTable | Request::MappingTable => 65_535,
            _ => 0,
        }
    }
}

/// The answer to `MappingTable`: the LU's rows and the arrays holding them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerLu {
    /// The answering switch (TF provenance `peer:<switch>`).
    pub switch: String,
    pub lu: VirtualLu,
    /// Real LU → array (device ID).
    pub devices: BTreeMap<Wwn, String>,
}

/// One array's row of a peer's TF as sent: the cells as that switch decides them
/// (its overrides included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRow {
    pub device: String,
    pub cells: BTreeMap<SupportFunction, bool>,
}

impl PeerRow {
    /// The rows of `tf` as a peer sees them.
    pub fn all(tf: &FunctionTable) -> Vec<PeerRow> {
        tf.rows()
            .keys()
            .map(|d| PeerRow {
                device: d.clone(),
                cells: SupportFunction::ALL
                    .iter()
                    .map(|f| (*f, tf.can(d, *f)))
                    .collect(),
            })
            .collect()
    }
}

/// What a switch learned about a remote virtual LU and the switch presenting it.
#[derive(Debug, Clone)]
pub struct PeerTables {
    pub rows: Vec<PeerRow>,
    pub lu: Option<PeerLu>,
    /// Fabric time of the TF fetch.
    pub fetched_at: Duration,
}

impl PeerTables {
    /// Whether the tables may still be used at `now` (I18).
    pub fn fresh(&self, now: Duration) -> bool {
        now.saturating_sub(self.fetched_at) <= PEER_TTL
    }

    /// The real place of remote virtual block `lba` and how many blocks from there stay
    /// on that extent: (array, real LU, real LBA, blocks).
    pub fn place(&self, lba: u64) -> Option<(String, Wwn, u64, u64)> {
        let p = self.lu.as_ref()?;
        let e =
            p.lu.extents
                .iter()
                .find(|e| e.start <= lba && lba < e.start + e.blocks)?;
        match e.backing {
            Backing::External { lu, start } => Some((
                p.devices.get(&lu).cloned().unwrap_or_default(),
                lu,
                start + (lba - e.start),
                e.start + e.blocks - lba,
            )),
            Backing::Internal => None,
        }
    }

    /// Whether the peer's array `device` can run `f`, according to its switch.
    pub fn can(&self, device: &str, f: SupportFunction) -> bool {
        self.rows
            .iter()
            .find(|r| r.device == device)
            .and_then(|r| r.cells.get(&f).copied())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdbs_round_trip() {
        for r in [
            Request::FunctionTable,
            Request::MappingTable,
            Request::Prepare { lba: 7, blocks: 9 },
            Request::Invalidate {
                lba: u64::MAX,
                blocks: 1,
            },
        ] {
            assert_eq!(Request::parse(&r.encode()), Some(r));
        }
        assert_eq!(Request::parse(&[OPCODE, 9, 0, 0]), None);
        let mut bad = Request::FunctionTable.encode().to_vec();
        bad[1] = 7;
        assert_eq!(Request::parse(&bad), None);
    }
}
