//! Relay replication on the wire (seed 002): the COPY SERVICES (D6h, vendor specific,
//! group 6) service actions that the primary array, the relay devices and the standby
//! array exchange. Numbers 01h–07h are the copy services' own (`copysvc::wire`).
//!
//! ```text
//! RELAY RECORD (service action 08h), a 48-byte CDB (FCP_CMND additional CDB length 8
//! words), data-out = the record's data (none for a zero-length restart point)
//!   byte 0 D6h   byte 1 08h   byte 2 KIND (0 write, 1 restart point, 2 FEC unit)
//!   bytes 4-7 SOURCE   bytes 8-15 SEQUENCE NUMBER   bytes 16-17 LUN (the standby's)
//!   bytes 24-31 LBA (write) or RESTART POINT   bytes 32-39 DATA LENGTH (bytes)
//!   bytes 40-47 DESTINATION: WWPN of the standby's target port the record goes to
//! KIND 2, FEC unit (emb 5/6, [`super::fec`]): data-out = one unit of the record's
//! redundant group (its size follows from the scheme and the DATA LENGTH, which stays
//! the record's); the other fields describe the record, and the reserved bytes the unit:
//!   byte 3 RECORD KIND (0 write, 1 restart point)   bytes 18-19 UNIT INDEX
//!   byte 20 SCHEME (0 N data + m parity, 1 whole replica, 2 piece replica)
//!   byte 21 N (data pieces; piece replica: pieces)   byte 22 m (parity pieces)
//! RELAY CONTROL (service action 09h), data-out = JSON [`RelayControl`]
//!   byte 0 D6h   byte 1 09h   bytes 10-13 PARAMETER LIST LENGTH
//! RECEIVE RELAY STATUS (service action 0Ah), data-in = JSON [`RelayState`]
//!   byte 0 D6h   byte 1 0Ah   bytes 10-13 ALLOCATION LENGTH
//! ```
//!
//! A RELAY RECORD goes from the primary to a relay (or straight to the standby) and from
//! a relay to the standby, unchanged: the header travels in the CDB so the data is sent
//! as it is, never copied behind a header. GOOD status is the acknowledgement (a relay:
//! the whole record is in its buffer or log; the standby: received, applied or held
//! behind a gap; a FEC unit: the standby holds it, or already restored its record — the
//! sender counts the record acknowledged once its GOOD units restore it, and a relay
//! refuses KIND 2 with INVALID FIELD IN CDB, byte 2). BUSY: the relay's buffer is full,
//! nothing was kept. RESERVATION CONFLICT: the source (or the relay) is fenced after a
//! takeover.
//!
//! RELAY CONTROL and RECEIVE RELAY STATUS are addressed to a relay's LU 0 (the standby's
//! forward request and fencing at takeover, and inspection); the standby's own state is
//! read through its node's `Copy` service.

use serde::{Deserialize, Serialize};

use super::{Header, Kind, RecordId, Redundancy, SourceId};

pub const OPCODE: u8 = 0xD6;
pub const SA_RELAY_RECORD: u8 = 0x08;
pub const SA_RELAY_CONTROL: u8 = 0x09;
pub const SA_RECEIVE_RELAY_STATUS: u8 = 0x0A;
/// RELAY RECORD's CDB length.
pub const RECORD_CDB_LEN: usize = 48;
/// What RECEIVE RELAY STATUS allocates for the answer.
pub const STATUS_ALLOCATION: u32 = 1 << 20;

const KIND_WRITE: u8 = 0;
const KIND_RESTART_POINT: u8 = 1;
const KIND_FEC_UNIT: u8 = 2;

const SCHEME_ERASURE_CODE: u8 = 0;
const SCHEME_WHOLE_REPLICA: u8 = 1;
const SCHEME_PIECE_REPLICA: u8 = 2;

/// Whether a scheme's parameters fit a FEC unit's CDB (one byte each).
pub fn fits_cdb(r: Redundancy) -> bool {
    match r {
        Redundancy::ErasureCode { data, parity } => data <= 255 && parity <= 255,
        Redundancy::WholeReplica => true,
        Redundancy::PieceReplica { pieces } => pieces <= 255,
    }
}

/// A request to a relay from the standby (or an operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RelayControl {
    /// Forward everything held now, whatever the schedule (the standby's request of
    /// [0115], and the drain at takeover). The relay node answers GOOD once it holds
    /// nothing (every record acknowledged downstream, refused or fenced); the requester
    /// bounds the wait with its exchange timeout.
    Forward,
    /// Refuse every later record of these sources, and from then on forward nothing
    /// more of them (the takeover's fence).
    Fence { sources: Vec<u32> },
}

/// What a relay reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RelayState {
    /// Records held (acknowledged upstream, not yet acknowledged downstream).
    pub held_records: u64,
    pub held_bytes: u64,
    /// Records acknowledged upstream, and acknowledged by the standby, since start.
    pub acked: u64,
    pub forwarded: u64,
    /// Records refused BUSY since start.
    pub busy: u64,
    /// Fenced sources.
    pub fenced: Vec<u32>,
    /// "volatile" or "non_volatile".
    pub durability: String,
    /// Records refused RESERVATION CONFLICT (fenced source) since start.
    #[serde(default)]
    pub refused: u64,
    /// Records dropped: refused by the standby, or dropped by a fence.
    #[serde(default)]
    pub dropped: u64,
    /// Downstream exchanges opened again after no answer or an error.
    #[serde(default)]
    pub resent: u64,
}

/// A record's header as a RELAY RECORD CDB bound for `destination` (a WWPN).
pub fn relay_record(header: &Header, destination: u64) -> [u8; RECORD_CDB_LEN] {
    let mut c = [0u8; RECORD_CDB_LEN];
    c[0] = OPCODE;
    c[1] = SA_RELAY_RECORD;
    let (kind, lun, at) = match header.kind {
        Kind::Write { lun, lba } => (KIND_WRITE, lun, lba),
        Kind::RestartPoint { point } => (KIND_RESTART_POINT, 0, point),
    };
    c[2] = kind;
    c[4..8].copy_from_slice(&header.id.source.0.to_be_bytes());
    c[8..16].copy_from_slice(&header.id.seq.to_be_bytes());
    c[16..18].copy_from_slice(&lun.to_be_bytes());
    c[24..32].copy_from_slice(&at.to_be_bytes());
    c[32..40].copy_from_slice(&header.len.to_be_bytes());
    c[40..48].copy_from_slice(&destination.to_be_bytes());
    c
}

/// One FEC unit (`index` of the redundant group of the record `header` under
/// `redundancy`) as a RELAY RECORD CDB of KIND 2 bound for `destination`. `None` when
/// the scheme does not fit the CDB ([`fits_cdb`]).
pub fn fec_unit(
    header: &Header,
    redundancy: Redundancy,
    index: u16,
    destination: u64,
) -> Option<[u8; RECORD_CDB_LEN]> {
    let mut c = relay_record(header, destination);
    let (scheme, n, m) = match redundancy {
        Redundancy::ErasureCode { data, parity } => (SCHEME_ERASURE_CODE, data, parity),
        Redundancy::WholeReplica => (SCHEME_WHOLE_REPLICA, 1, 0),
        Redundancy::PieceReplica { pieces } => (SCHEME_PIECE_REPLICA, pieces, 0),
    };
    c[3] = c[2];
    c[2] = KIND_FEC_UNIT;
    c[18..20].copy_from_slice(&index.to_be_bytes());
    c[20] = scheme;
    c[21] = u8::try_from(n).ok()?;
    c[22] = u8::try_from(m).ok()?;
    Some(c)
}

/// A RELAY CONTROL CDB for a parameter list of `len` bytes.
pub fn relay_control(len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = SA_RELAY_CONTROL;
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

/// A RECEIVE RELAY STATUS CDB.
pub fn receive_relay_status() -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = SA_RECEIVE_RELAY_STATUS;
    c[10..14].copy_from_slice(&STATUS_ALLOCATION.to_be_bytes());
    c
}

/// A parsed relay command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Record {
        header: Header,
        destination: u64,
    },
    /// One FEC unit of the record `header` (whose `len` is the record's).
    Unit {
        header: Header,
        destination: u64,
        redundancy: Redundancy,
        index: u16,
    },
    Control {
        len: u32,
    },
    ReceiveStatus {
        allocation: u32,
    },
}

fn be64(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[..8]);
    u64::from_be_bytes(x)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses a relay CDB; `Err(byte)` names the invalid field (for ILLEGAL REQUEST,
/// INVALID FIELD IN CDB with that field pointer). Other D6h service actions are
/// `Err(1)`.
pub fn parse(cdb: &[u8]) -> Result<Command, u16> {
    if cdb.len() < 16 || cdb[0] != OPCODE {
        return Err(0);
    }
    match cdb[1] {
        SA_RELAY_RECORD => {
            if cdb.len() < RECORD_CDB_LEN {
                return Err(0);
            }
            let at = be64(&cdb[24..32]);
            let fec = cdb[2] == KIND_FEC_UNIT;
            let (kind_byte, kind_at) = if fec { (cdb[3], 3) } else { (cdb[2], 2) };
            let kind = match kind_byte {
                KIND_WRITE => Kind::Write {
                    lun: u16::from_be_bytes([cdb[16], cdb[17]]),
                    lba: at,
                },
                KIND_RESTART_POINT => Kind::RestartPoint { point: at },
                _ => return Err(kind_at),
            };
            let seq = be64(&cdb[8..16]);
            if seq == 0 {
                return Err(8);
            }
            let header = Header {
                id: RecordId {
                    source: SourceId(be32(&cdb[4..8])),
                    seq,
                },
                kind,
                len: be64(&cdb[32..40]),
            };
            let destination = be64(&cdb[40..48]);
            if !fec {
                return Ok(Command::Record {
                    header,
                    destination,
                });
            }
            let (n, m) = (u16::from(cdb[21]), u16::from(cdb[22]));
            let redundancy = match cdb[20] {
                SCHEME_ERASURE_CODE => Redundancy::ErasureCode { data: n, parity: m },
                SCHEME_WHOLE_REPLICA => Redundancy::WholeReplica,
                SCHEME_PIECE_REPLICA => Redundancy::PieceReplica { pieces: n },
                _ => return Err(20),
            };
            if redundancy.validate().is_err() {
                return Err(21);
            }
            let index = u16::from_be_bytes([cdb[18], cdb[19]]);
            if usize::from(index) >= redundancy.units() {
                return Err(18);
            }
            Ok(Command::Unit {
                header,
                destination,
                redundancy,
                index,
            })
        }
        SA_RELAY_CONTROL => Ok(Command::Control {
            len: be32(&cdb[10..14]),
        }),
        SA_RECEIVE_RELAY_STATUS => Ok(Command::ReceiveStatus {
            allocation: be32(&cdb[10..14]),
        }),
        _ => Err(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind, len: u64) -> Header {
        Header {
            id: RecordId {
                source: SourceId(7),
                seq: 0x0102_0304_0506,
            },
            kind,
            len,
        }
    }

    #[test]
    fn records_round_trip() {
        for h in [
            header(Kind::Write { lun: 3, lba: 99 }, 4096),
            header(Kind::RestartPoint { point: 12 }, 0),
        ] {
            let c = relay_record(&h, 0x5006_0000_0000_0001);
            assert_eq!(
                parse(&c),
                Ok(Command::Record {
                    header: h,
                    destination: 0x5006_0000_0000_0001
                })
            );
        }
        assert_eq!(parse(&relay_control(20)), Ok(Command::Control { len: 20 }));
        assert_eq!(
            parse(&receive_relay_status()),
            Ok(Command::ReceiveStatus {
                allocation: STATUS_ALLOCATION
            })
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let h = header(Kind::Write { lun: 0, lba: 0 }, 512);
        let mut c = relay_record(&h, 1);
        c[2] = 9;
        assert_eq!(parse(&c), Err(2));
        let mut c = relay_record(&h, 1);
        c[8..16].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(parse(&c), Err(8));
        assert_eq!(parse(&relay_record(&h, 1)[..16]), Err(0));
        let mut c = relay_control(1);
        c[1] = 0x05;
        assert_eq!(parse(&c), Err(1));
    }

    #[test]
    fn fec_units_round_trip_and_bad_unit_fields_are_named() {
        let h = header(Kind::Write { lun: 2, lba: 40 }, 4096);
        for (r, i) in [
            (Redundancy::ErasureCode { data: 4, parity: 2 }, 5),
            (Redundancy::WholeReplica, 1),
            (Redundancy::PieceReplica { pieces: 3 }, 4),
        ] {
            let c = fec_unit(&h, r, i, 0x5006).unwrap();
            assert_eq!(c[2], 2);
            assert_eq!(
                parse(&c),
                Ok(Command::Unit {
                    header: h,
                    destination: 0x5006,
                    redundancy: r,
                    index: i
                })
            );
        }
        let p = header(Kind::RestartPoint { point: 3 }, 10);
        let c = fec_unit(&p, Redundancy::WholeReplica, 0, 1).unwrap();
        assert!(matches!(parse(&c), Ok(Command::Unit { header, .. }) if header == p));
        let ec = Redundancy::ErasureCode { data: 4, parity: 2 };
        let mut c = fec_unit(&h, ec, 0, 1).unwrap();
        c[18..20].copy_from_slice(&6u16.to_be_bytes());
        assert_eq!(parse(&c), Err(18), "index beyond the group");
        let mut c = fec_unit(&h, ec, 0, 1).unwrap();
        c[20] = 7;
        assert_eq!(parse(&c), Err(20));
        let mut c = fec_unit(&h, ec, 0, 1).unwrap();
        c[22] = 0;
        assert_eq!(parse(&c), Err(21), "no parity is no scheme");
        let mut c = fec_unit(&h, ec, 0, 1).unwrap();
        c[3] = 9;
        assert_eq!(parse(&c), Err(3), "the record's kind");
        assert!(fec_unit(&h, Redundancy::PieceReplica { pieces: 300 }, 0, 1).is_none());
        assert!(!fits_cdb(Redundancy::ErasureCode {
            data: 256,
            parity: 1
        }));
    }

    #[test]
    fn control_is_json() {
        let f = RelayControl::Fence { sources: vec![1] };
        let s = serde_json::to_string(&f).unwrap();
        assert_eq!(s, r#"{"op":"fence","sources":[1]}"#);
        assert_eq!(serde_json::from_str::<RelayControl>(&s).unwrap(), f);
    }
}
