//! The copy services' in-band commands between arrays: a vendor-specific SCSI operation
//! code (D6h, "COPY SERVICES") with a service action, sent by the primary array's copy
//! port to an LU of the secondary array.
//!
//! ```text
//! JOURNAL WRITE (service action 02h), data-out = the journalled write's blocks
//!   byte 0 D6h   byte 1 02h   bytes 2-7 SEQUENCE NUMBER (48 bits)
//!   bytes 8-13 LBA (48 bits)  bytes 14-15 NUMBER OF BLOCKS
//! PAIR NOTIFY (service action 01h), data-out = JSON [`PairNotice`]
//!   byte 0 D6h   byte 1 01h   bytes 10-13 PARAMETER LIST LENGTH
//! PAIR MANAGE (service action 03h), data-out = JSON [`PairRequest`]
//!   byte 0 D6h   byte 1 03h   bytes 2-5 REQUEST IDENTIFIER   bytes 10-13 PARAMETER LIST LENGTH
//! RECEIVE PAIR RESULTS (service action 04h), data-in = JSON [`ManageReply`]
//!   byte 0 D6h   byte 1 04h   bytes 2-5 REQUEST IDENTIFIER   bytes 10-13 ALLOCATION LENGTH
//! TIMESTAMPED WRITE (service action 05h), data-out = the write's blocks
//!   byte 0 D6h   byte 1 05h   bytes 2-9 TIMESTAMP (ns of fabric time, 64 bits)
//!   bytes 10-15 LBA (48 bits); blocks = data-out length / block size
//! RECOVERY MESSAGE (service action 06h), data-out = JSON `RecoveryMessage`
//!   byte 0 D6h   byte 1 06h   bytes 10-13 PARAMETER LIST LENGTH
//! RECEIVE RECOVERY MESSAGES (service action 07h), data-in = JSON list of `RecoveryMessage`
//!   byte 0 D6h   byte 1 07h   bytes 10-13 ALLOCATION LENGTH
//! ```
//!
//! RECOVERY MESSAGE carries one message of the protected recovery copy (seed 001,
//! [`super::recovery`]) from the master array's copy port to an LU of the remote array
//! (the first pair's secondary); R-DEV numbers are the remote's LUNs. The remote's
//! answers are queued and read back with RECEIVE RECOVERY MESSAGES, which the master
//! sends after each message and on its timer while a session is open; an empty list
//! means nothing new.
//!
//! TIMESTAMPED WRITE is a sync pair's propagation of a host write: the timestamp is when
//! the write landed on the primary (seed 000 §3.5), which the secondary's difference
//! tables order against clear times. Copier copies stay plain WRITE(16).
//!
//! PAIR MANAGE and RECEIVE PAIR RESULTS are how an intelligent switch that delegated a
//! pair to an array (the offload rule) manages it in band, addressed to the pair's
//! primary LU like a command device: the request goes out as data, and its answer is
//! read back under the same request identifier, as RECEIVE COPY RESULTS does for
//! EXTENDED COPY.

use bytes::Bytes;
use fcsim_fabric::Wwn;
use serde::{Deserialize, Serialize};

use super::Action;
use super::pair::{OptionsPatch, PairMode, PairOptions, PairState};
use crate::relay::wire as rw;
use crate::scsi::cdb::Write16;

pub const OPCODE: u8 = 0xD6;
pub const SA_NOTIFY: u8 = 0x01;
pub const SA_JOURNAL_WRITE: u8 = 0x02;
pub const SA_PAIR_MANAGE: u8 = 0x03;
pub const SA_RECEIVE_PAIR_RESULTS: u8 = 0x04;
pub const SA_TIMESTAMPED_WRITE: u8 = 0x05;
pub const SA_RECOVERY_MESSAGE: u8 = 0x06;
pub const SA_RECEIVE_RECOVERY_MESSAGES: u8 = 0x07;
/// What RECEIVE PAIR RESULTS allocates for the answer.
pub const RESULTS_ALLOCATION: u32 = 1 << 20;

/// A management request for a pair whose primary is the addressed LU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PairRequest {
    /// A new pair with the addressed LU as its primary; `secondary` is another LU of the
    /// same array (a local pair) or of another array.
    Create {
        name: String,
        secondary: Wwn,
        mode: PairMode,
        group: Option<String>,
        options: PairOptions,
        journal_bytes: u64,
    },
    Split {
        pair: String,
        at: Option<std::time::Duration>,
    },
    Resync {
        pair: String,
    },
    Delete {
        pair: String,
    },
    Status {
        pair: Option<String>,
    },
    Options {
        pair: String,
        patch: OptionsPatch,
    },
}

/// The answer to a [`PairRequest`]: the pairs it names afterwards, or why it was
/// refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManageReply {
    pub pairs: Vec<super::PairStatus>,
    pub error: Option<String>,
}

/// What the primary tells the secondary array about one of its LUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairNotice {
    pub pair: String,
    pub group: String,
    /// The pair's state; `None`: the pair was deleted (the LU is Simplex again).
    pub state: Option<PairState>,
    /// Initiator WWPNs (the primary array's ports) allowed to write the LU.
    pub writers: Vec<u64>,
    /// The group journal's last sequence number when the notice was sent: after a
    /// formation or resync copy the next journalled write is the one after it.
    #[serde(default)]
    pub journal_seq: u64,
    /// The pair's mode: a sync secondary gets difference tables (seed 000 site 3).
    #[serde(default)]
    pub mode: Option<PairMode>,
    /// The image the pair's primary LU holds, when it is the secondary of a split local
    /// pair: that pair's split time (seed 000: S1v = P1 at T, carried to V2).
    #[serde(default)]
    pub image_time: Option<std::time::Duration>,
    /// A relay pair (seed 002): the relays, the source and the standby's settings; with
    /// `journal_seq`, the last sequence number of the source before a formation or
    /// resync copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<super::pair::RelayOptions>,
}

fn put48(b: &mut [u8], v: u64) {
    b.copy_from_slice(&v.to_be_bytes()[2..]);
}

fn get48(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    x[2..].copy_from_slice(b);
    u64::from_be_bytes(x)
}

fn get32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A JOURNAL WRITE CDB.
pub fn journal_write(seq: u64, lba: u64, blocks: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = SA_JOURNAL_WRITE;
    put48(&mut c[2..8], seq);
    put48(&mut c[8..14], lba);
    c[14..16].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// A TIMESTAMPED WRITE CDB.
pub fn timestamped_write(ts: std::time::Duration, lba: u64) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = SA_TIMESTAMPED_WRITE;
    let ns = u64::try_from(ts.as_nanos()).unwrap_or(u64::MAX);
    c[2..10].copy_from_slice(&ns.to_be_bytes());
    put48(&mut c[10..16], lba);
    c
}

/// A PAIR NOTIFY CDB for a parameter list of `len` bytes.
pub fn notify(len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = SA_NOTIFY;
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

/// A PAIR MANAGE CDB for request `id` with a parameter list of `len` bytes.
pub fn pair_manage(id: u32, len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = SA_PAIR_MANAGE;
    c[2..6].copy_from_slice(&id.to_be_bytes());
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

/// A RECEIVE PAIR RESULTS CDB for request `id`.
pub fn receive_pair_results(id: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = SA_RECEIVE_PAIR_RESULTS;
    c[2..6].copy_from_slice(&id.to_be_bytes());
    c[10..14].copy_from_slice(&RESULTS_ALLOCATION.to_be_bytes());
    c
}

/// A RECOVERY MESSAGE CDB for a parameter list of `len` bytes.
pub fn recovery_message(len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = SA_RECOVERY_MESSAGE;
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

/// A RECEIVE RECOVERY MESSAGES CDB.
pub fn receive_recovery_messages() -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = SA_RECEIVE_RECOVERY_MESSAGES;
    c[10..14].copy_from_slice(&RESULTS_ALLOCATION.to_be_bytes());
    c
}

/// An engine action as the SCSI command that carries it to the remote LU `naa`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub token: u64,
    pub naa: Wwn,
    pub cdb: Bytes,
    pub data_out: Bytes,
}

/// The command for a remote-LU action (WRITE(16), JOURNAL WRITE, PAIR NOTIFY), given
/// the block size of each remote LU; `None` for the node-local actions.
pub fn outgoing(a: Action, block_bytes: impl Fn(Wwn) -> u32) -> Option<Outgoing> {
    let blocks = |naa, data: &Bytes| data.len() as u64 / u64::from(block_bytes(naa).max(1));
    let (token, naa, cdb, data_out) = match a {
        Action::Write {
            token,
            naa,
            lba,
            data,
            stamp: Some(ts),
        } => {
            let cdb = Bytes::copy_from_slice(&timestamped_write(ts, lba));
            (token, naa, cdb, data)
        }
        Action::Write {
            token,
            naa,
            lba,
            data,
            stamp: None,
        } => {
            let cdb = Write16 {
                lba,
                blocks: u32::try_from(blocks(naa, &data)).unwrap_or(u32::MAX),
                dpo: false,
                fua: false,
            }
            .encode();
            (token, naa, cdb, data)
        }
        Action::JournalWrite {
            token,
            naa,
            seq,
            lba,
            data,
        } => {
            let n = u16::try_from(blocks(naa, &data)).unwrap_or(u16::MAX);
            let cdb = Bytes::copy_from_slice(&journal_write(seq, lba, n));
            (token, naa, cdb, data)
        }
        Action::Notify { token, naa, notice } => {
            let body = Bytes::from(serde_json::to_vec(&notice).unwrap_or_default());
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            (token, naa, Bytes::copy_from_slice(&notify(len)), body)
        }
        Action::Release { .. }
        | Action::Copy { .. }
        | Action::Proceed { .. }
        | Action::RelayRecord { .. }
        | Action::FecUnit { .. }
        | Action::RelayControl { .. }
        | Action::RelayStatus { .. } => return None,
    };
    Some(Outgoing {
        token,
        naa,
        cdb,
        data_out,
    })
}

/// A relay replication action (seed 002) as the command that carries it: sent to the
/// target port `target` (a relay's, or the standby's own in direct mode), through the
/// LU `naa` when the sender knows which LU that port presents for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOutgoing {
    pub token: u64,
    pub target: u64,
    pub naa: Option<Wwn>,
    pub cdb: Bytes,
    pub data_out: Bytes,
    /// Data-in bytes the command expects (RECEIVE RELAY STATUS).
    pub data_in_len: u32,
}

/// The command for a relay action: RELAY RECORD, RELAY CONTROL (to a relay's LU 0) or
/// RECEIVE RELAY STATUS; `None` for every other action.
pub fn relay_outgoing(a: &Action) -> Option<RelayOutgoing> {
    Some(match a {
        Action::RelayRecord {
            token,
            target,
            naa,
            destination,
            record,
        } => RelayOutgoing {
            token: *token,
            target: *target,
            naa: *naa,
            cdb: Bytes::copy_from_slice(&rw::relay_record(&record.header, *destination)),
            data_out: record.data.clone(),
            data_in_len: 0,
        },
        Action::FecUnit {
            token,
            target,
            naa,
            header,
            redundancy,
            unit,
        } => RelayOutgoing {
            token: *token,
            target: *target,
            naa: *naa,
            // The scheme was checked to fit at configuration (`RelayFec::validate`).
            cdb: Bytes::copy_from_slice(&rw::fec_unit(header, *redundancy, unit.index, *target)?),
            data_out: unit.bytes.clone(),
            data_in_len: 0,
        },
        Action::RelayControl {
            token,
            target,
            control,
        } => {
            let body = Bytes::from(serde_json::to_vec(control).unwrap_or_default());
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            RelayOutgoing {
                token: *token,
                target: *target,
                naa: None,
                cdb: Bytes::copy_from_slice(&rw::relay_control(len)),
                data_out: body,
                data_in_len: 0,
            }
        }
        Action::RelayStatus { token, target } => RelayOutgoing {
            token: *token,
            target: *target,
            naa: None,
            cdb: Bytes::copy_from_slice(&rw::receive_relay_status()),
            data_out: Bytes::new(),
            data_in_len: rw::STATUS_ALLOCATION,
        },
        _ => return None,
    })
}

/// A parsed COPY SERVICES command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    JournalWrite { seq: u64, lba: u64, blocks: u16 },
    Notify { len: u32 },
    PairManage { id: u32, len: u32 },
    ReceivePairResults { id: u32, allocation: u32 },
    TimestampedWrite { ts: std::time::Duration, lba: u64 },
    RecoveryMessage { len: u32 },
    ReceiveRecoveryMessages { allocation: u32 },
}

/// Parses a D6h CDB; `Err(byte)` names the invalid field.
pub fn parse(cdb: &[u8]) -> Result<Command, u16> {
    if cdb.len() < 16 || cdb[0] != OPCODE {
        return Err(0);
    }
    match cdb[1] {
        SA_JOURNAL_WRITE => Ok(Command::JournalWrite {
            seq: get48(&cdb[2..8]),
            lba: get48(&cdb[8..14]),
            blocks: u16::from_be_bytes([cdb[14], cdb[15]]),
        }),
        SA_NOTIFY => Ok(Command::Notify {
            len: get32(&cdb[10..14]),
        }),
        SA_PAIR_MANAGE => Ok(Command::PairManage {
            id: get32(&cdb[2..6]),
            len: get32(&cdb[10..14]),
        }),
        SA_RECEIVE_PAIR_RESULTS => Ok(Command::ReceivePairResults {
            id: get32(&cdb[2..6]),
            allocation: get32(&cdb[10..14]),
        }),
        SA_TIMESTAMPED_WRITE => {
            let mut ns = [0u8; 8];
            ns.copy_from_slice(&cdb[2..10]);
            Ok(Command::TimestampedWrite {
                ts: std::time::Duration::from_nanos(u64::from_be_bytes(ns)),
                lba: get48(&cdb[10..16]),
            })
        }
        SA_RECOVERY_MESSAGE => Ok(Command::RecoveryMessage {
            len: get32(&cdb[10..14]),
        }),
        SA_RECEIVE_RECOVERY_MESSAGES => Ok(Command::ReceiveRecoveryMessages {
            allocation: get32(&cdb[10..14]),
        }),
        _ => Err(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_write_round_trips() {
        let c = journal_write(0x0000_1234_5678_9abc, 77, 8);
        assert_eq!(
            parse(&c),
            Ok(Command::JournalWrite {
                seq: 0x1234_5678_9abc,
                lba: 77,
                blocks: 8
            })
        );
        assert_eq!(parse(&notify(40)), Ok(Command::Notify { len: 40 }));
        assert_eq!(
            parse(&pair_manage(7, 90)),
            Ok(Command::PairManage { id: 7, len: 90 })
        );
        assert_eq!(
            parse(&receive_pair_results(7)),
            Ok(Command::ReceivePairResults {
                id: 7,
                allocation: RESULTS_ALLOCATION
            })
        );
        assert_eq!(
            parse(&timestamped_write(
                std::time::Duration::from_nanos(1_234_567),
                99
            )),
            Ok(Command::TimestampedWrite {
                ts: std::time::Duration::from_nanos(1_234_567),
                lba: 99
            })
        );
        assert_eq!(
            parse(&recovery_message(300)),
            Ok(Command::RecoveryMessage { len: 300 })
        );
        assert_eq!(
            parse(&receive_recovery_messages()),
            Ok(Command::ReceiveRecoveryMessages {
                allocation: RESULTS_ALLOCATION
            })
        );
        let mut bad = notify(1);
        bad[1] = 9;
        assert_eq!(parse(&bad), Err(1));
        assert_eq!(parse(&[0xD6]), Err(0));
    }
}
