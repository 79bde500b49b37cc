//! INQUIRY data (SPC-5 §6.7.2) and the vital product data pages fcsim targets return
//! (SPC-5 §7.7, SBC-4 §6.6): 00h supported pages, 80h unit serial number, 83h device
//! identification, 8Fh third-party copy, B0h block limits, and vendor page C0h listing
//! the array's copy functions.
//!
//! Every page has an encoder (target side) and the ones an initiator reads to decide
//! where to send work (83h, 8Fh, B0h, C0h) have decoders.
//!
//! VPD page header (SPC-5 §7.7.1):
//!
//! ```text
//! byte 0    PERIPHERAL QUALIFIER(7:5) | PERIPHERAL DEVICE TYPE(4:0)
//! byte 1    PAGE CODE
//! bytes 2-3 PAGE LENGTH (n - 3)
//! bytes 4-n page contents
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use fcsim_fabric::Wwn;
use serde::{Deserialize, Serialize};

use super::{DecodeError, be16, be32, be64, need};

/// SPC version claimed in standard INQUIRY data: 07h = SPC-5.
pub const VERSION_SPC5: u8 = 0x07;
/// Vendor identification reported by fcsim targets.
pub const VENDOR: &str = "FCSIM";

/// VPD page codes.
pub mod page {
    /// Supported VPD pages.
    pub const SUPPORTED: u8 = 0x00;
    /// Unit serial number.
    pub const UNIT_SERIAL: u8 = 0x80;
    /// Device identification.
    pub const DEVICE_ID: u8 = 0x83;
    /// Third-party copy.
    pub const THIRD_PARTY_COPY: u8 = 0x8F;
    /// Block limits (SBC-4 §6.6.4).
    pub const BLOCK_LIMITS: u8 = 0xB0;
    /// fcsim vendor page: copy functions.
    pub const COPY_FUNCTIONS: u8 = 0xC0;
}

/// Peripheral device type (SPC-5 §6.7.2, table 150).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceType {
    /// 00h direct access block device (disk).
    Disk,
    /// 01h sequential access device (tape).
    Tape,
    /// 1Fh unknown or no device type (with qualifier 3: no LU at this LUN).
    Unknown,
    /// Any other code.
    Unsupported(u8),
}

impl DeviceType {
    /// The 5-bit code.
    pub fn code(self) -> u8 {
        match self {
            DeviceType::Disk => 0x00,
            DeviceType::Tape => 0x01,
            DeviceType::Unknown => 0x1F,
            DeviceType::Unsupported(c) => c & 0x1F,
        }
    }
    /// From the 5-bit code.
    pub fn from_code(c: u8) -> DeviceType {
        match c & 0x1F {
            0x00 => DeviceType::Disk,
            0x01 => DeviceType::Tape,
            0x1F => DeviceType::Unknown,
            o => DeviceType::Unsupported(o),
        }
    }
}

fn ascii_field(b: &mut BytesMut, s: &str, n: usize) {
    let mut v: Vec<u8> = s
        .bytes()
        .map(|c| if (0x20..0x7F).contains(&c) { c } else { b'?' })
        .take(n)
        .collect();
    v.resize(n, b' ');
    b.put_slice(&v);
}

fn ascii_trim(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_string()
}

/// Standard INQUIRY data, 36 bytes (SPC-5 §6.7.2, table 148).
///
/// ```text
/// byte 0      PERIPHERAL QUALIFIER(7:5) | PERIPHERAL DEVICE TYPE(4:0)
/// byte 1      RMB(7) | LU_CONG(6)
/// byte 2      VERSION (07h = SPC-5)
/// byte 3      NORMACA(5) | HISUP(4) | RESPONSE DATA FORMAT(3:0) = 2
/// byte 4      ADDITIONAL LENGTH (n - 4) = 31
/// byte 5      SCCS(7) | ACC(6) | TPGS(5:4) | 3PC(3) | PROTECT(0)
/// byte 6      ENCSERV(6) | MULTIP(4)
/// byte 7      CMDQUE(1)
/// bytes 8-15  T10 VENDOR IDENTIFICATION
/// bytes 16-31 PRODUCT IDENTIFICATION
/// bytes 32-35 PRODUCT REVISION LEVEL
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardInquiry {
    /// PERIPHERAL QUALIFIER: 0 = LU present, 3 = no LU at this LUN.
    pub qualifier: u8,
    /// PERIPHERAL DEVICE TYPE.
    pub device_type: DeviceType,
    /// RMB: removable medium (tape).
    pub removable: bool,
    /// VERSION (07h for SPC-5).
    pub version: u8,
    /// 3PC: the LU has a copy manager (EXTENDED COPY).
    pub third_party_copy: bool,
    /// Vendor (8 ASCII characters, space padded on the wire).
    pub vendor: String,
    /// Product (16 ASCII characters).
    pub product: String,
    /// Revision (4 ASCII characters).
    pub revision: String,
}

impl StandardInquiry {
    /// Length of the encoded data.
    pub const LEN: usize = 36;

    /// The reply for a LUN with no logical unit: qualifier 3, type 1Fh (SPC-5 §6.7.2).
    pub fn no_lu() -> StandardInquiry {
        StandardInquiry {
            qualifier: 3,
            device_type: DeviceType::Unknown,
            removable: false,
            version: VERSION_SPC5,
            third_party_copy: false,
            vendor: VENDOR.to_string(),
            product: String::new(),
            revision: String::new(),
        }
    }

    /// Encodes the 36 bytes.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(Self::LEN);
        b.put_u8((self.qualifier << 5) | self.device_type.code());
        b.put_u8(if self.removable { 0x80 } else { 0 });
        b.put_u8(self.version);
        b.put_u8(0x10 | 0x02); // HISUP, response data format 2
        b.put_u8(31);
        b.put_u8(if self.third_party_copy { 0x08 } else { 0 });
        b.put_u8(0);
        b.put_u8(0x02); // CMDQUE
        ascii_field(&mut b, &self.vendor, 8);
        ascii_field(&mut b, &self.product, 16);
        ascii_field(&mut b, &self.revision, 4);
        b.freeze()
    }

    /// Decodes at least 36 bytes.
    pub fn decode(b: &[u8]) -> Result<StandardInquiry, DecodeError> {
        need("standard INQUIRY data", b, Self::LEN)?;
        Ok(StandardInquiry {
            qualifier: b[0] >> 5,
            device_type: DeviceType::from_code(b[0]),
            removable: b[1] & 0x80 != 0,
            version: b[2],
            third_party_copy: b[5] & 0x08 != 0,
            vendor: ascii_trim(&b[8..16]),
            product: ascii_trim(&b[16..32]),
            revision: ascii_trim(&b[32..36]),
        })
    }
}

fn peripheral_byte(dt: DeviceType) -> u8 {
    dt.code()
}

/// Wraps `body` in a VPD page header.
fn vpd(dt: DeviceType, code: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + body.len());
    b.put_u8(peripheral_byte(dt));
    b.put_u8(code);
    b.put_u16(u16::try_from(body.len()).unwrap_or(u16::MAX));
    b.put_slice(body);
    b.freeze()
}

/// Checks the VPD header and returns the page body (clipped to the page length).
fn vpd_body<'a>(what: &'static str, b: &'a [u8], code: u8) -> Result<&'a [u8], DecodeError> {
    need(what, b, 4)?;
    if b[1] != code {
        return Err(DecodeError::Malformed {
            what,
            detail: format!("page code {:#04x}", b[1]),
        });
    }
    let len = usize::from(be16(b, 2));
    need(what, b, 4 + len)?;
    Ok(&b[4..4 + len])
}

/// Supported VPD pages page 00h (SPC-5 §7.7.15): the page codes in ascending order.
pub fn supported_pages(dt: DeviceType, pages: &[u8]) -> Bytes {
    let mut v = pages.to_vec();
    v.sort_unstable();
    v.dedup();
    vpd(dt, page::SUPPORTED, &v)
}

/// Decodes page 00h into its list of page codes.
pub fn decode_supported_pages(b: &[u8]) -> Result<Vec<u8>, DecodeError> {
    Ok(vpd_body("supported VPD pages", b, page::SUPPORTED)?.to_vec())
}

/// Unit serial number page 80h (SPC-5 §7.7.18): ASCII serial.
pub fn unit_serial(dt: DeviceType, serial: &str) -> Bytes {
    let s: Vec<u8> = serial
        .bytes()
        .filter(|c| (0x20..0x7F).contains(c))
        .take(252)
        .collect();
    vpd(dt, page::UNIT_SERIAL, &s)
}

/// Decodes page 80h.
pub fn decode_unit_serial(b: &[u8]) -> Result<String, DecodeError> {
    Ok(ascii_trim(vpd_body(
        "unit serial number",
        b,
        page::UNIT_SERIAL,
    )?))
}

/// An NAA designator (SPC-5 §7.7.6.6): 8 bytes (NAA 2, 3, 5) or 16 bytes (NAA 6,
/// IEEE Registered Extended). This is how EXTENDED COPY names logical units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NaaId {
    /// 8-byte NAA name (the NAA nibble is the top four bits).
    Short(Wwn),
    /// 16-byte NAA 6 name.
    Extended(u128),
}

impl NaaId {
    /// Parses an 8- or 16-byte NAA designator; `None` for other lengths or an NAA
    /// nibble that does not fit the length.
    pub fn from_bytes(b: &[u8]) -> Option<NaaId> {
        match b.len() {
            8 => {
                let w = Wwn(be64(b, 0));
                matches!(w.naa(), 2 | 3 | 5).then_some(NaaId::Short(w))
            }
            16 => {
                let v = u128::from_be_bytes(<[u8; 16]>::try_from(b).ok()?);
                (v >> 124 == 6).then_some(NaaId::Extended(v))
            }
            _ => None,
        }
    }
    /// The designator bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        match self {
            NaaId::Short(w) => w.to_bytes().to_vec(),
            NaaId::Extended(v) => v.to_be_bytes().to_vec(),
        }
    }
}

impl std::fmt::Display for NaaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NaaId::Short(w) => write!(f, "naa.{:016x}", w.0),
            NaaId::Extended(v) => write!(f, "naa.{v:032x}"),
        }
    }
}

/// Code set values (SPC-5 table 518).
pub mod code_set {
    /// Binary.
    pub const BINARY: u8 = 1;
    /// ASCII.
    pub const ASCII: u8 = 2;
}

/// Association values (SPC-5 table 520).
pub mod association {
    /// The addressed logical unit.
    pub const LU: u8 = 0;
    /// The target port that received the command.
    pub const TARGET_PORT: u8 = 1;
    /// The SCSI target device.
    pub const TARGET_DEVICE: u8 = 2;
}

/// Designator types (SPC-5 table 521).
pub mod designator_type {
    /// NAA.
    pub const NAA: u8 = 3;
    /// Relative target port identifier.
    pub const RELATIVE_TARGET_PORT: u8 = 4;
}

/// Protocol identifier for Fibre Channel (SPC-5 table 564).
pub const PROTOCOL_FCP: u8 = 0;

/// One designation descriptor of page 83h (SPC-5 §7.7.6.1, table 517).
///
/// ```text
/// byte 0    PROTOCOL IDENTIFIER(7:4) | CODE SET(3:0)
/// byte 1    PIV(7) | reserved(6) | ASSOCIATION(5:4) | DESIGNATOR TYPE(3:0)
/// byte 2    reserved
/// byte 3    DESIGNATOR LENGTH (n - 3)
/// bytes 4-n DESIGNATOR
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Designator {
    /// NAA designator of the logical unit (association 0, binary).
    LuNaa(NaaId),
    /// The target port's WWPN as NAA (association 1, protocol FCP with PIV = 1).
    TargetPortNaa(Wwn),
    /// Relative target port identifier (association 1, type 4).
    RelativeTargetPort(u16),
    /// Any other descriptor, kept raw.
    Unsupported {
        /// PROTOCOL IDENTIFIER when PIV = 1.
        protocol: Option<u8>,
        /// CODE SET.
        code_set: u8,
        /// ASSOCIATION.
        association: u8,
        /// DESIGNATOR TYPE.
        designator_type: u8,
        /// DESIGNATOR bytes.
        value: Vec<u8>,
    },
}

impl Designator {
    fn put(&self, b: &mut BytesMut) {
        let (protocol, cs, assoc, ty, value): (Option<u8>, u8, u8, u8, Vec<u8>) = match self {
            Designator::LuNaa(n) => (
                None,
                code_set::BINARY,
                association::LU,
                designator_type::NAA,
                n.to_bytes(),
            ),
            Designator::TargetPortNaa(w) => (
                Some(PROTOCOL_FCP),
                code_set::BINARY,
                association::TARGET_PORT,
                designator_type::NAA,
                w.to_bytes().to_vec(),
            ),
            Designator::RelativeTargetPort(p) => {
                let [hi, lo] = p.to_be_bytes();
                (
                    Some(PROTOCOL_FCP),
                    code_set::BINARY,
                    association::TARGET_PORT,
                    designator_type::RELATIVE_TARGET_PORT,
                    vec![0, 0, hi, lo],
                )
            }
            Designator::Unsupported {
                protocol,
                code_set,
                association,
                designator_type,
                value,
            } => (
                *protocol,
                *code_set,
                *association,
                *designator_type,
                value.clone(),
            ),
        };
        b.put_u8((protocol.unwrap_or(0) << 4) | (cs & 0x0F));
        let piv = if protocol.is_some() { 0x80 } else { 0 };
        b.put_u8(piv | ((assoc & 3) << 4) | (ty & 0x0F));
        b.put_u8(0);
        let value = &value[..value.len().min(255)];
        b.put_u8(u8::try_from(value.len()).unwrap_or(u8::MAX));
        b.put_slice(value);
    }
}

/// Device identification page 83h (SPC-5 §7.7.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceIdentification {
    /// The designation descriptors, in page order.
    pub descriptors: Vec<Designator>,
}

impl DeviceIdentification {
    /// The page fcsim LUs return: the LU's NAA, the receiving port's WWPN and its
    /// relative port identifier.
    pub fn for_lu(lu: NaaId, target_port: Wwn, relative_port: u16) -> DeviceIdentification {
        DeviceIdentification {
            descriptors: vec![
                Designator::LuNaa(lu),
                Designator::TargetPortNaa(target_port),
                Designator::RelativeTargetPort(relative_port),
            ],
        }
    }

    /// Encodes page 83h.
    pub fn encode(&self, dt: DeviceType) -> Bytes {
        let mut body = BytesMut::new();
        for d in &self.descriptors {
            d.put(&mut body);
        }
        vpd(dt, page::DEVICE_ID, &body)
    }

    /// Decodes page 83h.
    pub fn decode(b: &[u8]) -> Result<DeviceIdentification, DecodeError> {
        const WHAT: &str = "device identification VPD";
        let body = vpd_body(WHAT, b, page::DEVICE_ID)?;
        let mut descriptors = Vec::new();
        let mut at = 0;
        while at < body.len() {
            need(WHAT, &body[at..], 4)?;
            let d = &body[at..];
            let len = usize::from(d[3]);
            need(WHAT, d, 4 + len)?;
            let value = &d[4..4 + len];
            let protocol = (d[1] & 0x80 != 0).then_some(d[0] >> 4);
            let cs = d[0] & 0x0F;
            let assoc = (d[1] >> 4) & 3;
            let ty = d[1] & 0x0F;
            let parsed = match (assoc, ty, cs) {
                (association::LU, designator_type::NAA, code_set::BINARY) => {
                    NaaId::from_bytes(value).map(Designator::LuNaa)
                }
                (association::TARGET_PORT, designator_type::NAA, code_set::BINARY) if len == 8 => {
                    Some(Designator::TargetPortNaa(Wwn(be64(value, 0))))
                }
                (association::TARGET_PORT, designator_type::RELATIVE_TARGET_PORT, _)
                    if len == 4 =>
                {
                    Some(Designator::RelativeTargetPort(be16(value, 2)))
                }
                _ => None,
            };
            descriptors.push(parsed.unwrap_or_else(|| Designator::Unsupported {
                protocol,
                code_set: cs,
                association: assoc,
                designator_type: ty,
                value: value.to_vec(),
            }));
            at += 4 + len;
        }
        Ok(DeviceIdentification { descriptors })
    }

    /// The logical unit's NAA designator, if present.
    pub fn lu_naa(&self) -> Option<NaaId> {
        self.descriptors.iter().find_map(|d| match d {
            Designator::LuNaa(n) => Some(*n),
            _ => None,
        })
    }

    /// The target port's WWPN, if present.
    pub fn target_port(&self) -> Option<Wwn> {
        self.descriptors.iter().find_map(|d| match d {
            Designator::TargetPortNaa(w) => Some(*w),
            _ => None,
        })
    }

    /// The relative target port identifier, if present.
    pub fn relative_port(&self) -> Option<u16> {
        self.descriptors.iter().find_map(|d| match d {
            Designator::RelativeTargetPort(p) => Some(*p),
            _ => None,
        })
    }
}

/// Third-party copy descriptor types used in page 8Fh (SPC-4 §7.8.17, table 629).
pub mod tpc_descriptor {
    /// Supported Commands (mandatory).
    pub const SUPPORTED_COMMANDS: u16 = 0x0001;
    /// Parameter Data (EXTENDED COPY LID1 limits).
    pub const PARAMETER_DATA: u16 = 0x0004;
    /// Supported Descriptors (segment and CSCD descriptor type codes).
    pub const SUPPORTED_DESCRIPTORS: u16 = 0x0008;
    /// General Copy Operations (mandatory).
    pub const GENERAL_COPY_OPERATIONS: u16 = 0x8001;
}

/// Third-party copy page 8Fh (SPC-4 §7.8.17), the parts fcsim fills in.
///
/// Each third-party copy descriptor is `TYPE(2) LENGTH(2) contents`, padded to a
/// multiple of 4 bytes:
///
/// ```text
/// 0001h Supported Commands: byte 4 LIST LENGTH, then per command
///       OPERATION CODE, SERVICE ACTION LIST LENGTH, SERVICE ACTIONs
/// 0004h Parameter Data (length 1Ch): bytes 8-9 MAX CSCD DESCRIPTOR COUNT,
///       10-11 MAX SEGMENT DESCRIPTOR COUNT, 12-15 MAX DESCRIPTOR LIST LENGTH,
///       16-19 MAX INLINE DATA LENGTH
/// 0008h Supported Descriptors: byte 4 LIST LENGTH, then descriptor type codes
/// 8001h General Copy Operations (length 1Ch): 4-7 TOTAL CONCURRENT COPIES,
///       8-11 MAX IDENTIFIED CONCURRENT COPIES, 12-15 MAX SEGMENT LENGTH,
///       16 DATA SEGMENT GRANULARITY (log2), 17 INLINE DATA GRANULARITY (log2)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ThirdPartyCopyPage {
    /// (operation code, service actions) pairs, e.g. 83h with 00h and 84h with 00h, 03h.
    pub commands: Vec<(u8, Vec<u8>)>,
    /// MAXIMUM CSCD DESCRIPTOR COUNT.
    pub max_cscd_descriptors: u16,
    /// MAXIMUM SEGMENT DESCRIPTOR COUNT.
    pub max_segment_descriptors: u16,
    /// MAXIMUM DESCRIPTOR LIST LENGTH in bytes.
    pub max_descriptor_list_length: u32,
    /// MAXIMUM INLINE DATA LENGTH in bytes.
    pub max_inline_data_length: u32,
    /// Supported segment and CSCD descriptor type codes.
    pub supported_descriptors: Vec<u8>,
    /// TOTAL CONCURRENT COPIES.
    pub total_concurrent_copies: u32,
    /// MAXIMUM IDENTIFIED CONCURRENT COPIES.
    pub max_identified_concurrent_copies: u32,
    /// MAXIMUM SEGMENT LENGTH in bytes.
    pub max_segment_length: u32,
    /// DATA SEGMENT GRANULARITY (log2 bytes).
    pub data_segment_granularity_log2: u8,
    /// INLINE DATA GRANULARITY (log2 bytes).
    pub inline_data_granularity_log2: u8,
}

fn put_tpc_descriptor(b: &mut BytesMut, ty: u16, contents: &[u8]) {
    let mut c = contents.to_vec();
    while !(4 + c.len()).is_multiple_of(4) {
        c.push(0);
    }
    b.put_u16(ty);
    b.put_u16(u16::try_from(c.len()).unwrap_or(u16::MAX));
    b.put_slice(&c);
}

impl ThirdPartyCopyPage {
    /// Encodes page 8Fh.
    pub fn encode(&self, dt: DeviceType) -> Bytes {
        let mut body = BytesMut::new();
        // Supported Commands.
        let mut list = Vec::new();
        for (op, sas) in &self.commands {
            list.push(*op);
            list.push(u8::try_from(sas.len()).unwrap_or(u8::MAX));
            list.extend_from_slice(sas);
        }
        let mut c = vec![u8::try_from(list.len()).unwrap_or(u8::MAX)];
        c.extend(list);
        put_tpc_descriptor(&mut body, tpc_descriptor::SUPPORTED_COMMANDS, &c);
        // Parameter Data.
        let mut c = BytesMut::new();
        c.put_bytes(0, 4);
        c.put_u16(self.max_cscd_descriptors);
        c.put_u16(self.max_segment_descriptors);
        c.put_u32(self.max_descriptor_list_length);
        c.put_u32(self.max_inline_data_length);
        c.put_bytes(0, 12);
        put_tpc_descriptor(&mut body, tpc_descriptor::PARAMETER_DATA, &c);
        // Supported Descriptors.
        let mut c = vec![u8::try_from(self.supported_descriptors.len()).unwrap_or(u8::MAX)];
        c.extend_from_slice(&self.supported_descriptors);
        put_tpc_descriptor(&mut body, tpc_descriptor::SUPPORTED_DESCRIPTORS, &c);
        // General Copy Operations.
        let mut c = BytesMut::new();
        c.put_u32(self.total_concurrent_copies);
        c.put_u32(self.max_identified_concurrent_copies);
        c.put_u32(self.max_segment_length);
        c.put_u8(self.data_segment_granularity_log2);
        c.put_u8(self.inline_data_granularity_log2);
        c.put_bytes(0, 10);
        put_tpc_descriptor(&mut body, tpc_descriptor::GENERAL_COPY_OPERATIONS, &c);
        vpd(dt, page::THIRD_PARTY_COPY, &body)
    }

    /// Decodes page 8Fh (unknown descriptor types are skipped).
    pub fn decode(b: &[u8]) -> Result<ThirdPartyCopyPage, DecodeError> {
        const WHAT: &str = "third-party copy VPD";
        let body = vpd_body(WHAT, b, page::THIRD_PARTY_COPY)?;
        let mut p = ThirdPartyCopyPage::default();
        let mut at = 0;
        while at < body.len() {
            need(WHAT, &body[at..], 4)?;
            let ty = be16(body, at);
            let len = usize::from(be16(body, at + 2));
            need(WHAT, &body[at..], 4 + len)?;
            let d = &body[at..at + 4 + len];
            match ty {
                tpc_descriptor::SUPPORTED_COMMANDS if len >= 1 => {
                    let list_len = usize::from(d[4]).min(len - 1);
                    let list = &d[5..5 + list_len];
                    let mut i = 0;
                    while i + 2 <= list.len() {
                        let n = usize::from(list[i + 1]);
                        let end = (i + 2 + n).min(list.len());
                        p.commands.push((list[i], list[i + 2..end].to_vec()));
                        i = i + 2 + n;
                    }
                }
                tpc_descriptor::PARAMETER_DATA if len >= 16 => {
                    p.max_cscd_descriptors = be16(d, 8);
                    p.max_segment_descriptors = be16(d, 10);
                    p.max_descriptor_list_length = be32(d, 12);
                    p.max_inline_data_length = be32(d, 16);
                }
                tpc_descriptor::SUPPORTED_DESCRIPTORS if len >= 1 => {
                    let n = usize::from(d[4]).min(len - 1);
                    p.supported_descriptors = d[5..5 + n].to_vec();
                }
                tpc_descriptor::GENERAL_COPY_OPERATIONS if len >= 14 => {
                    p.total_concurrent_copies = be32(d, 4);
                    p.max_identified_concurrent_copies = be32(d, 8);
                    p.max_segment_length = be32(d, 12);
                    p.data_segment_granularity_log2 = d[16];
                    p.inline_data_granularity_log2 = d[17];
                }
                _ => {}
            }
            at += 4 + len;
        }
        Ok(p)
    }

    /// Whether the page lists `op` with service action `sa`.
    pub fn supports_command(&self, op: u8, sa: u8) -> bool {
        self.commands
            .iter()
            .any(|(o, sas)| *o == op && sas.contains(&sa))
    }
}

/// Block limits page B0h (SBC-4 §6.6.4, table 229), 64 bytes.
///
/// ```text
/// byte 4      WSNZ(0)
/// byte 5      MAXIMUM COMPARE AND WRITE LENGTH
/// bytes 6-7   OPTIMAL TRANSFER LENGTH GRANULARITY
/// bytes 8-11  MAXIMUM TRANSFER LENGTH
/// bytes 12-15 OPTIMAL TRANSFER LENGTH
/// bytes 16-19 MAXIMUM PREFETCH LENGTH
/// bytes 20-35 unmap fields (0: no logical block provisioning)
/// bytes 36-43 MAXIMUM WRITE SAME LENGTH
/// bytes 44-63 atomic-write fields (0)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLimits {
    /// WSNZ: WRITE SAME with zero blocks is rejected.
    pub wsnz: bool,
    /// OPTIMAL TRANSFER LENGTH GRANULARITY in blocks.
    pub optimal_granularity_blocks: u16,
    /// MAXIMUM TRANSFER LENGTH in blocks (0 = no limit reported).
    pub max_transfer_blocks: u32,
    /// OPTIMAL TRANSFER LENGTH in blocks.
    pub optimal_transfer_blocks: u32,
    /// MAXIMUM WRITE SAME LENGTH in blocks.
    pub max_write_same_blocks: u64,
}

impl BlockLimits {
    /// Encodes page B0h.
    pub fn encode(&self, dt: DeviceType) -> Bytes {
        let mut c = BytesMut::with_capacity(60);
        c.put_u8(u8::from(self.wsnz));
        c.put_u8(0);
        c.put_u16(self.optimal_granularity_blocks);
        c.put_u32(self.max_transfer_blocks);
        c.put_u32(self.optimal_transfer_blocks);
        c.put_u32(0);
        c.put_bytes(0, 16);
        c.put_u64(self.max_write_same_blocks);
        c.put_bytes(0, 20);
        vpd(dt, page::BLOCK_LIMITS, &c)
    }

    /// Decodes page B0h.
    pub fn decode(b: &[u8]) -> Result<BlockLimits, DecodeError> {
        const WHAT: &str = "block limits VPD";
        let body = vpd_body(WHAT, b, page::BLOCK_LIMITS)?;
        need(WHAT, body, 40)?;
        Ok(BlockLimits {
            wsnz: body[0] & 1 != 0,
            optimal_granularity_blocks: be16(body, 2),
            max_transfer_blocks: be32(body, 4),
            optimal_transfer_blocks: be32(body, 8),
            max_write_same_blocks: be64(body, 32),
        })
    }
}

/// A copy function an array advertises in page C0h (DESIGN.md §5), by its ASCII name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyFunction {
    /// `xcopy`: EXTENDED COPY (LID1) offload.
    Xcopy,
    /// `local-pair`: local mirror pairs.
    LocalPair,
    /// `remote-sync`: synchronous remote copy.
    RemoteSync,
    /// `remote-async`: journaled asynchronous remote copy.
    RemoteAsync,
    /// `diff-tables`: difference bitmaps (three-site failover).
    DiffTables,
    /// `protected-resync`: protected recovery copy.
    ProtectedResync,
    /// `direct-backup`: server-free backup to tape.
    DirectBackup,
    /// A name fcsim does not know, kept as read.
    Unsupported(String),
}

impl CopyFunction {
    /// The ASCII name on the wire.
    pub fn name(&self) -> &str {
        match self {
            CopyFunction::Xcopy => "xcopy",
            CopyFunction::LocalPair => "local-pair",
            CopyFunction::RemoteSync => "remote-sync",
            CopyFunction::RemoteAsync => "remote-async",
            CopyFunction::DiffTables => "diff-tables",
            CopyFunction::ProtectedResync => "protected-resync",
            CopyFunction::DirectBackup => "direct-backup",
            CopyFunction::Unsupported(s) => s,
        }
    }
    /// From the ASCII name.
    pub fn from_name(s: &str) -> CopyFunction {
        match s {
            "xcopy" => CopyFunction::Xcopy,
            "local-pair" => CopyFunction::LocalPair,
            "remote-sync" => CopyFunction::RemoteSync,
            "remote-async" => CopyFunction::RemoteAsync,
            "diff-tables" => CopyFunction::DiffTables,
            "protected-resync" => CopyFunction::ProtectedResync,
            "direct-backup" => CopyFunction::DirectBackup,
            other => CopyFunction::Unsupported(other.to_string()),
        }
    }
    /// Every function fcsim defines.
    pub fn all() -> Vec<CopyFunction> {
        vec![
            CopyFunction::Xcopy,
            CopyFunction::LocalPair,
            CopyFunction::RemoteSync,
            CopyFunction::RemoteAsync,
            CopyFunction::DiffTables,
            CopyFunction::ProtectedResync,
            CopyFunction::DirectBackup,
        ]
    }
}

/// Format version of page C0h.
pub const COPY_FUNCTIONS_VERSION: u8 = 0x01;

/// Encodes vendor page C0h, fcsim's copy-function list:
///
/// ```text
/// bytes 0-3 VPD header (page code C0h)
/// byte 4    FORMAT VERSION (01h)
/// byte 5    NUMBER OF FUNCTIONS (n)
/// then n times: NAME LENGTH (1 byte, ≤ 32) | NAME (ASCII, no padding)
/// ```
pub fn encode_copy_functions(dt: DeviceType, functions: &[CopyFunction]) -> Bytes {
    let mut c = BytesMut::new();
    let names: Vec<&[u8]> = functions
        .iter()
        .map(|f| {
            let b = f.name().as_bytes();
            &b[..b.len().min(32)]
        })
        .take(255)
        .collect();
    c.put_u8(COPY_FUNCTIONS_VERSION);
    c.put_u8(u8::try_from(names.len()).unwrap_or(u8::MAX));
    for n in names {
        c.put_u8(u8::try_from(n.len()).unwrap_or(u8::MAX));
        c.put_slice(n);
    }
    vpd(dt, page::COPY_FUNCTIONS, &c)
}

/// Decodes vendor page C0h.
pub fn decode_copy_functions(b: &[u8]) -> Result<Vec<CopyFunction>, DecodeError> {
    const WHAT: &str = "copy functions VPD";
    let body = vpd_body(WHAT, b, page::COPY_FUNCTIONS)?;
    need(WHAT, body, 2)?;
    if body[0] != COPY_FUNCTIONS_VERSION {
        return Err(DecodeError::Malformed {
            what: WHAT,
            detail: format!("format version {}", body[0]),
        });
    }
    let n = usize::from(body[1]);
    let mut out = Vec::with_capacity(n);
    let mut at = 2;
    for _ in 0..n {
        need(WHAT, body, at + 1)?;
        let len = usize::from(body[at]);
        need(WHAT, body, at + 1 + len)?;
        let name = std::str::from_utf8(&body[at + 1..at + 1 + len]).map_err(|_| {
            DecodeError::Malformed {
                what: WHAT,
                detail: "name is not ASCII".to_string(),
            }
        })?;
        out.push(CopyFunction::from_name(name));
        at += 1 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // SPC-5 §6.7.2: 3PC is byte 5 bit 3; version 07h; vendor in bytes 8-15.
    #[test]
    fn standard_inquiry_layout() {
        let s = StandardInquiry {
            qualifier: 0,
            device_type: DeviceType::Disk,
            removable: false,
            version: VERSION_SPC5,
            third_party_copy: true,
            vendor: VENDOR.into(),
            product: "ARRAY".into(),
            revision: "0001".into(),
        };
        let b = s.encode();
        assert_eq!(b.len(), 36);
        assert_eq!(b[0], 0x00);
        assert_eq!(b[2], 0x07);
        assert_eq!(b[4], 31);
        assert_eq!(b[5] & 0x08, 0x08);
        assert_eq!(&b[8..16], b"FCSIM   ");
        assert_eq!(StandardInquiry::decode(&b), Ok(s));
        assert_eq!(StandardInquiry::no_lu().encode()[0], 0x7F);
    }

    // SPC-5 §7.7.6: NAA designators for the LU and the target port, relative port.
    #[test]
    fn device_identification_round_trip() {
        let lu = NaaId::Short(Wwn::naa5(0x001B32, 0x42));
        let wwpn = Wwn(0x5006_0e80_1234_5678);
        let d = DeviceIdentification::for_lu(lu, wwpn, 3);
        let b = d.encode(DeviceType::Disk);
        assert_eq!(b[1], 0x83);
        // First descriptor: binary, LU association, NAA, 8 bytes.
        assert_eq!(&b[4..8], &[0x01, 0x03, 0x00, 0x08]);
        assert_eq!(&b[8..16], &lu.to_bytes()[..]);
        // Second: FCP protocol with PIV, target port association, NAA.
        assert_eq!(&b[16..20], &[0x01, 0x93, 0x00, 0x08]);
        let back = DeviceIdentification::decode(&b).expect("decode");
        assert_eq!(back, d);
        assert_eq!(back.lu_naa(), Some(lu));
        assert_eq!(back.target_port(), Some(wwpn));
        assert_eq!(back.relative_port(), Some(3));
    }

    #[test]
    fn naa_id_forms() {
        let ext = NaaId::Extended(0x6001_4050_0000_0000_0000_0000_0000_0001);
        assert_eq!(NaaId::from_bytes(&ext.to_bytes()), Some(ext));
        assert_eq!(NaaId::from_bytes(&[0x10; 8]), None); // NAA 1 is not accepted
        assert_eq!(NaaId::from_bytes(&[0x50; 7]), None);
    }

    // SPC-4 §7.8.17: 8Fh lists EXTENDED COPY (83h/00h) and RECEIVE COPY RESULTS.
    #[test]
    fn third_party_copy_round_trip() {
        let p = ThirdPartyCopyPage {
            commands: vec![(0x83, vec![0x00]), (0x84, vec![0x00, 0x03])],
            max_cscd_descriptors: 8,
            max_segment_descriptors: 64,
            max_descriptor_list_length: 4096,
            max_inline_data_length: 0,
            supported_descriptors: vec![0x00, 0x02, 0xE4],
            total_concurrent_copies: 16,
            max_identified_concurrent_copies: 16,
            max_segment_length: 256 << 20,
            data_segment_granularity_log2: 9,
            inline_data_granularity_log2: 0,
        };
        let b = p.encode(DeviceType::Disk);
        assert_eq!(b.len() % 4, 0);
        let back = ThirdPartyCopyPage::decode(&b).expect("decode");
        assert_eq!(back, p);
        assert!(back.supports_command(0x83, 0x00));
        assert!(back.supports_command(0x84, 0x03));
        assert!(!back.supports_command(0x83, 0x01));
    }

    #[test]
    fn block_limits_round_trip() {
        let l = BlockLimits {
            wsnz: true,
            optimal_granularity_blocks: 8,
            max_transfer_blocks: 8192,
            optimal_transfer_blocks: 2048,
            max_write_same_blocks: 65536,
        };
        let b = l.encode(DeviceType::Disk);
        assert_eq!(b.len(), 64);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]), 0x3C);
        assert_eq!(BlockLimits::decode(&b), Ok(l));
    }

    #[test]
    fn copy_functions_round_trip() {
        let mut fs = CopyFunction::all();
        fs.push(CopyFunction::Unsupported("snapshot".into()));
        let b = encode_copy_functions(DeviceType::Disk, &fs);
        assert_eq!(b[1], 0xC0);
        assert_eq!(b[5], 8);
        assert_eq!(b[6], 5);
        assert_eq!(&b[7..12], b"xcopy");
        assert_eq!(decode_copy_functions(&b), Ok(fs));
    }

    #[test]
    fn supported_pages_sorted() {
        let b = supported_pages(DeviceType::Disk, &[0xC0, 0x83, 0x00, 0x80]);
        assert_eq!(decode_supported_pages(&b), Ok(vec![0x00, 0x80, 0x83, 0xC0]));
        assert_eq!(
            decode_unit_serial(&unit_serial(DeviceType::Tape, "SN01")),
            Ok("SN01".into())
        );
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80), code in prop::sample::select(vec![0x83u8, 0x8F, 0xB0, 0xC0])) {
            let mut b = b;
            if b.len() > 1 { b[1] = code; }
            let _ = DeviceIdentification::decode(&b);
            let _ = ThirdPartyCopyPage::decode(&b);
            let _ = BlockLimits::decode(&b);
            let _ = decode_copy_functions(&b);
            let _ = StandardInquiry::decode(&b);
        }

        #[test]
        fn copy_function_names_round_trip(names in proptest::collection::vec("[a-z-]{1,32}", 0..20)) {
            let fs: Vec<CopyFunction> = names.iter().map(|n| CopyFunction::from_name(n)).collect();
            prop_assert_eq!(decode_copy_functions(&encode_copy_functions(DeviceType::Disk, &fs)), Ok(fs));
        }
    }
}
