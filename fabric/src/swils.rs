//! Switch-to-switch messages on ISLs (FC-SW-6 SW_ILS, TYPE 0x22): FSPF Hello (HLO, §8.5.2)
//! and Link State Update (LSU, §8.5.3) laid out after the standard (the LSR incarnation is
//! widened to 64 bits and HLO carries the switch WWN and name after its standard fields), plus two
//! vendor-specific SW_ILS codes fcsim uses to replicate the distributed name server and
//! the zoning database across the fabric (real switches do this with dNS queries and
//! the zone-merge/commit SW_ILS family; fcsim floods versioned records instead). A
//! name-server record is binary: owner domain and version first (a switch drops a copy it
//! already holds without parsing the rest), then each entry laid out like the FC-GS
//! name-server objects. The zoning database travels as JSON (it is small and rare).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::fcid::DomainId;
use crate::fcid::FcId;
use crate::frame::DecodeError;
use crate::fspf::{Lsr, LsrLink};
use crate::nameserver::{DomainRecord, Entry, Fc4Features, PortType};
use crate::wwn::{Wwn, Wwnn, Wwpn};
use crate::zoning::ZoneDbRecord;

/// SW_ILS command codes (first payload word).
pub mod code {
    pub const SW_RJT: u32 = 0x0100_0000;
    pub const SW_ACC: u32 = 0x0200_0000;
    pub const HLO: u32 = 0x1400_0000;
    pub const LSU: u32 = 0x1200_0000;
    pub const LSA: u32 = 0x1300_0000;
    /// Vendor-specific: a domain's name-server record.
    pub const VS_NS_RECORD: u32 = 0x7F00_0001;
    /// Vendor-specific: the fabric zoning database.
    pub const VS_ZONE_DB: u32 = 0x7F00_0002;
}

/// FSPF hello/dead intervals (Cisco/Brocade defaults: 20 s / 80 s).
pub const HELLO_INTERVAL_S: u32 = 20;
pub const DEAD_INTERVAL_S: u32 = 80;

/// One decoded switch-to-switch message.
#[derive(Debug, Clone, PartialEq)]
pub enum SwIls {
    /// FSPF Hello: who is at the other end of this ISL.
    Hello {
        origin: DomainId,
        recipient: Option<DomainId>,
        origin_port: u8,
        switch_wwn: Wwnn,
        switch_name: String,
    },
    /// FSPF Link State Update carrying LSRs.
    Lsu { origin: DomainId, lsrs: Vec<Lsr> },
    /// A domain's name-server entries, with the owning switch's identity.
    NsRecord {
        switch_name: String,
        switch_wwn: Wwnn,
        record: DomainRecord,
    },
    /// The fabric zoning database.
    ZoneDb(ZoneDbRecord),
    /// Anything else (answered with SW_RJT by the receiver, or ignored if a reply).
    Unsupported(u32),
}

fn fspf_header(buf: &mut BytesMut, cmd: u32, origin: DomainId) {
    buf.put_u32(cmd);
    buf.put_u8(2); // FSPF version
    buf.put_u8(0); // AR number
    buf.put_u8(0); // authentication type: none
    buf.put_u8(0);
    buf.put_u32(u32::from(origin.get()));
    buf.put_u64(0); // authentication
    buf.put_u32(0); // reserved to 20 bytes of FSPF header
}

fn domain(v: u32) -> Result<DomainId, DecodeError> {
    DomainId::new(v).map_err(|_| DecodeError::Malformed {
        what: "FSPF domain outside 1-239",
    })
}

fn need(buf: &impl Buf, n: usize) -> Result<(), DecodeError> {
    if buf.remaining() < n {
        Err(DecodeError::Incomplete {
            needed: n,
            have: buf.remaining(),
        })
    } else {
        Ok(())
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    buf.put_u8(u8::try_from(b.len()).unwrap_or(u8::MAX));
    buf.put_slice(b);
}

/// One name-server entry in a record, laid out like the FC-GS name-server objects it
/// holds: port type, port identifier, port and node names, switch port, the 32-byte
/// FC-4 TYPEs bitmap, the FC-4 features registered (type, bits), symbolic names.
fn put_entry(b: &mut BytesMut, e: &Entry) {
    b.put_u8(e.port_type.code());
    b.put_slice(&e.fc_id.to_bytes());
    b.put_u64(e.wwpn.0.0);
    b.put_u64(e.wwnn.0.0);
    b.put_u8(e.switch_port);
    let mut types = [0u8; 32];
    for t in &e.fc4_types {
        types[usize::from(t / 8)] |= 1 << (t % 8);
    }
    b.put_slice(&types);
    b.put_u8(u8::try_from(e.fc4_features.len()).unwrap_or(u8::MAX));
    for (t, f) in e.fc4_features.iter().take(255) {
        b.put_u8(*t);
        b.put_u8(f.0);
    }
    put_str(b, &e.symbolic_port_name);
    put_str(b, &e.symbolic_node_name);
}

fn get_entry(buf: &mut impl Buf) -> Result<Entry, DecodeError> {
    need(buf, 1 + 3 + 8 + 8 + 1 + 32 + 1)?;
    let port_type = match buf.get_u8() {
        0x01 => PortType::NPort,
        c => PortType::Unsupported(c),
    };
    let mut id = [0u8; 3];
    buf.copy_to_slice(&mut id);
    let fc_id = FcId::from_bytes(id);
    let wwpn = Wwpn(Wwn(buf.get_u64()));
    let wwnn = Wwnn(Wwn(buf.get_u64()));
    let switch_port = buf.get_u8();
    let mut types = [0u8; 32];
    buf.copy_to_slice(&mut types);
    let fc4_types = (0..=u8::MAX)
        .filter(|t| types[usize::from(t / 8)] & (1 << (t % 8)) != 0)
        .collect();
    let n = usize::from(buf.get_u8());
    need(buf, 2 * n)?;
    let fc4_features = (0..n)
        .map(|_| (buf.get_u8(), Fc4Features(buf.get_u8())))
        .collect();
    let symbolic_port_name = get_str(buf)?;
    let symbolic_node_name = get_str(buf)?;
    Ok(Entry {
        fc_id,
        wwpn,
        wwnn,
        fc4_types,
        fc4_features,
        symbolic_port_name,
        symbolic_node_name,
        port_type,
        switch_port,
    })
}

fn get_str(buf: &mut impl Buf) -> Result<String, DecodeError> {
    need(buf, 1)?;
    let n = usize::from(buf.get_u8());
    need(buf, n)?;
    let mut v = vec![0; n];
    buf.copy_to_slice(&mut v);
    String::from_utf8(v).map_err(|_| DecodeError::Malformed {
        what: "switch name is not UTF-8",
    })
}

impl SwIls {
    /// The payload bytes (command word first).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        match self {
            SwIls::Hello {
                origin,
                recipient,
                origin_port,
                switch_wwn,
                switch_name,
            } => {
                fspf_header(&mut b, code::HLO, *origin);
                b.put_u32(0); // options
                b.put_u32(HELLO_INTERVAL_S);
                b.put_u32(DEAD_INTERVAL_S);
                b.put_u32(recipient.map_or(0xFFFF_FFFF, |d| u32::from(d.get())));
                b.put_u32(u32::from(*origin_port)); // reserved byte + 3-byte port index
                // Vendor extension after the standard fields: the switch's WWN and name.
                b.put_u64(switch_wwn.0.0);
                put_str(&mut b, switch_name);
            }
            SwIls::Lsu { origin, lsrs } => {
                fspf_header(&mut b, code::LSU, *origin);
                b.put_u32(0); // flags
                b.put_u32(u32::try_from(lsrs.len()).unwrap_or(u32::MAX));
                for lsr in lsrs {
                    let links = u16::try_from(lsr.links.len()).unwrap_or(u16::MAX);
                    b.put_u8(1); // LSR type: switch link record
                    b.put_u8(0);
                    b.put_u16(0); // LSR age
                    b.put_u32(0);
                    b.put_u32(u32::from(lsr.domain.get())); // link state ID
                    b.put_u32(u32::from(lsr.domain.get())); // advertising domain
                    b.put_u64(lsr.incarnation);
                    b.put_u16(0); // checksum (not computed; FC-SW allows 0 on reliable links)
                    b.put_u16(24 + 4 + 16 * links); // LSR length
                    b.put_u16(links);
                    b.put_u16(0);
                    for l in lsr.links.iter().take(usize::from(links)) {
                        b.put_u32(u32::from(l.neighbor.get())); // link ID
                        b.put_u32(u32::from(l.out_port)); // output port index
                        b.put_u32(0); // neighbour port index (not tracked)
                        b.put_u8(1); // link type: point-to-point
                        b.put_u8(0);
                        b.put_u16(u16::try_from(l.cost).unwrap_or(u16::MAX));
                    }
                }
            }
            SwIls::NsRecord {
                switch_name,
                switch_wwn,
                record,
            } => {
                b.put_u32(code::VS_NS_RECORD);
                b.put_u64(switch_wwn.0.0);
                put_str(&mut b, switch_name);
                // Domain and version ahead of the entries, so that a switch can drop a
                // flooded copy it already holds without parsing it.
                b.put_u32(u32::from(record.domain.get()));
                b.put_u64(record.version);
                b.put_u32(u32::try_from(record.entries.len()).unwrap_or(u32::MAX));
                for e in &record.entries {
                    put_entry(&mut b, e);
                }
            }
            SwIls::ZoneDb(rec) => {
                b.put_u32(code::VS_ZONE_DB);
                // Generation and origin ahead of the database, as for name-server
                // records: a copy not taken is dropped unparsed.
                b.put_u64(rec.generation);
                b.put_u32(u32::from(rec.origin.get()));
                b.put_slice(&serde_json::to_vec(rec).unwrap_or_default());
            }
            SwIls::Unsupported(c) => b.put_u32(*c),
        }
        b.freeze()
    }

    /// The (domain, version) of a name-server record payload, read without parsing its
    /// entries; `None` for any other payload or a malformed one.
    pub fn peek_ns_record(payload: &Bytes) -> Option<(DomainId, u64)> {
        let mut buf = payload.clone();
        need(&buf, 12).ok()?;
        if buf.get_u32() != code::VS_NS_RECORD {
            return None;
        }
        buf.advance(8);
        get_str(&mut buf).ok()?;
        need(&buf, 12).ok()?;
        let owner = domain(buf.get_u32()).ok()?;
        Some((owner, buf.get_u64()))
    }

    /// The (generation, origin) of a zoning-database payload, read without parsing the
    /// database; `None` for any other payload or a malformed one.
    pub fn peek_zone_db(payload: &Bytes) -> Option<(u64, DomainId)> {
        let mut buf = payload.clone();
        need(&buf, 16).ok()?;
        if buf.get_u32() != code::VS_ZONE_DB {
            return None;
        }
        let generation = buf.get_u64();
        Some((generation, domain(buf.get_u32()).ok()?))
    }

    /// Decodes an SW_ILS payload. Never panics.
    pub fn decode(mut buf: Bytes) -> Result<SwIls, DecodeError> {
        need(&buf, 4)?;
        let cmd = buf.get_u32();
        let json_err = |_| DecodeError::Malformed {
            what: "vendor SW_ILS record",
        };
        match cmd {
            code::HLO | code::LSU => {
                need(&buf, 20)?;
                buf.advance(4);
                let origin = domain(buf.get_u32())?;
                buf.advance(12);
                if cmd == code::HLO {
                    need(&buf, 20 + 8)?;
                    buf.advance(12);
                    let r = buf.get_u32();
                    let recipient = if r == 0xFFFF_FFFF {
                        None
                    } else {
                        Some(domain(r)?)
                    };
                    let origin_port = u8::try_from(buf.get_u32() & 0xFF_FFFF).map_err(|_| {
                        DecodeError::Malformed {
                            what: "HLO port index",
                        }
                    })?;
                    let switch_wwn = Wwnn(crate::wwn::Wwn(buf.get_u64()));
                    let switch_name = get_str(&mut buf)?;
                    return Ok(SwIls::Hello {
                        origin,
                        recipient,
                        origin_port,
                        switch_wwn,
                        switch_name,
                    });
                }
                need(&buf, 8)?;
                buf.advance(4);
                let n = buf.get_u32();
                let mut lsrs = Vec::new();
                for _ in 0..n {
                    need(&buf, 32)?;
                    buf.advance(8);
                    let _id = buf.get_u32();
                    let dom = domain(buf.get_u32())?;
                    let incarnation = buf.get_u64();
                    buf.advance(4);
                    let links = buf.get_u16();
                    buf.advance(2);
                    let mut v = Vec::with_capacity(usize::from(links).min(256));
                    for _ in 0..links {
                        need(&buf, 16)?;
                        let neighbor = domain(buf.get_u32())?;
                        let out_port = u8::try_from(buf.get_u32() & 0xFF_FFFF).map_err(|_| {
                            DecodeError::Malformed {
                                what: "LSR output port",
                            }
                        })?;
                        buf.advance(6);
                        let cost = u32::from(buf.get_u16());
                        v.push(LsrLink {
                            neighbor,
                            out_port,
                            cost,
                        });
                    }
                    lsrs.push(Lsr {
                        domain: dom,
                        incarnation,
                        links: v,
                    });
                }
                Ok(SwIls::Lsu { origin, lsrs })
            }
            code::VS_NS_RECORD => {
                need(&buf, 8)?;
                let switch_wwn = Wwnn(crate::wwn::Wwn(buf.get_u64()));
                let switch_name = get_str(&mut buf)?;
                need(&buf, 12)?;
                let owner = domain(buf.get_u32())?;
                let version = buf.get_u64();
                need(&buf, 4)?;
                let n = buf.get_u32();
                let mut entries = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1024));
                for _ in 0..n {
                    entries.push(get_entry(&mut buf)?);
                }
                let record = DomainRecord {
                    domain: owner,
                    version,
                    entries,
                };
                Ok(SwIls::NsRecord {
                    switch_name,
                    switch_wwn,
                    record,
                })
            }
            code::VS_ZONE_DB => {
                need(&buf, 12)?;
                let generation = buf.get_u64();
                let origin = domain(buf.get_u32())?;
                let rec: ZoneDbRecord = serde_json::from_slice(&buf).map_err(json_err)?;
                if (rec.generation, rec.origin) != (generation, origin) {
                    return Err(DecodeError::Malformed {
                        what: "zoning database header does not match its body",
                    });
                }
                Ok(SwIls::ZoneDb(rec))
            }
            other => Ok(SwIls::Unsupported(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry with every field registered.
    fn full_entry(fc_id: FcId) -> Entry {
        let mut e = Entry::new(fc_id, Wwpn(Wwn(7)), Wwnn(Wwn(8)), 1);
        e.fc4_types = [0x08, 0x20, 0xFF].into();
        e.fc4_features = [(0x08, Fc4Features::TARGET), (0x20, Fc4Features(0x03))].into();
        e.symbolic_port_name = "arr1 port 0 – FC".into();
        e.symbolic_node_name = "arr1".into();
        e.port_type = PortType::Unsupported(0x7F);
        e
    }

    fn record(domain: u32, version: u64) -> SwIls {
        let d = DomainId::new(domain).unwrap();
        let fc_id = FcId::from_parts(u8::try_from(domain).unwrap(), 1, 0);
        SwIls::NsRecord {
            switch_name: format!("sw{domain}"),
            switch_wwn: Wwnn(Wwn(0x1000_0000_0000_0000 | u64::from(domain))),
            record: DomainRecord {
                domain: d,
                version,
                entries: vec![
                    full_entry(fc_id),
                    Entry::new(fc_id, Wwpn(Wwn(9)), Wwnn(Wwn(8)), 2),
                ],
            },
        }
    }

    #[test]
    fn a_name_server_record_round_trips_and_its_version_is_read_unparsed() {
        let m = record(3, 42);
        let bytes = m.encode();
        assert_eq!(SwIls::decode(bytes.clone()).unwrap(), m);
        assert_eq!(
            SwIls::peek_ns_record(&bytes),
            Some((DomainId::new(3).unwrap(), 42))
        );
        let zones = SwIls::ZoneDb(crate::zoning::ZoneDb::new(DomainId::new(1).unwrap()).export());
        assert_eq!(SwIls::peek_ns_record(&zones.encode()), None);
        assert_eq!(SwIls::decode(zones.encode()).unwrap(), zones);
        assert_eq!(
            SwIls::peek_zone_db(&zones.encode()),
            Some((0, DomainId::new(1).unwrap()))
        );
        assert_eq!(SwIls::peek_zone_db(&bytes), None);
    }

    #[test]
    fn a_truncated_record_is_malformed_not_a_panic() {
        let bytes = record(3, 42).encode();
        for n in 0..bytes.len() {
            let cut = bytes.slice(..n);
            assert!(SwIls::decode(cut.clone()).is_err() || n < 4, "{n}");
            let _ = SwIls::peek_ns_record(&cut);
        }
    }
}
