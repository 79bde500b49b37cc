//! Fabric addresses (FC-FS-4 §13): the 24-bit `FcId` = domain · area · port, the
//! well-known addresses (FC-LS / FC-GS), and `DomainId` (1–239, FC-SW-6 §4.8).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an FC_ID or domain was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FcIdError {
    #[error("`{text}` is not an FC_ID: expected six hex digits like 010200")]
    Malformed { text: String },
    #[error("domain ID {domain} is outside 1–239")]
    DomainOutOfRange { domain: u32 },
}

/// A 24-bit N_Port or well-known address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FcId(u32);

impl FcId {
    /// Name server / directory server (FC-GS-7 §4.1).
    pub const NAME_SERVER: FcId = FcId(0xFF_FFFC);
    /// Fabric controller: SCR goes here, RSCN comes from here.
    pub const FABRIC_CONTROLLER: FcId = FcId(0xFF_FFFD);
    /// F_Port login server: FLOGI goes here.
    pub const FABRIC_LOGIN: FcId = FcId(0xFF_FFFE);
    /// Management server.
    pub const MANAGEMENT_SERVER: FcId = FcId(0xFF_FFFA);
    /// S_ID of an N_Port before FLOGI.
    pub const UNIDENTIFIED: FcId = FcId(0);

    /// Builds an address from its 24 low bits; the top byte is ignored.
    pub const fn new(raw: u32) -> Self {
        FcId(raw & 0x00ff_ffff)
    }

    pub const fn from_parts(domain: u8, area: u8, port: u8) -> Self {
        FcId(((domain as u32) << 16) | ((area as u32) << 8) | port as u32)
    }

    /// The domain controller of switch `domain` (FF FC dd), the address of
    /// switch-to-switch services.
    pub const fn domain_controller(domain: DomainId) -> Self {
        FcId(0xFF_FC00 | domain.0 as u32)
    }

    pub const fn raw(self) -> u32 {
        self.0
    }

    // The byte is the point: an FC_ID is three bytes.
    #[allow(clippy::cast_possible_truncation)]
    pub const fn domain(self) -> u8 {
        (self.0 >> 16) as u8
    }

    // The byte is the point: an FC_ID is three bytes.
    #[allow(clippy::cast_possible_truncation)]
    pub const fn area(self) -> u8 {
        (self.0 >> 8) as u8
    }

    // The byte is the point: an FC_ID is three bytes.
    #[allow(clippy::cast_possible_truncation)]
    pub const fn port(self) -> u8 {
        self.0 as u8
    }

    /// Well-known addresses (FF FF F0 – FF FF FF) and domain controllers (FF FC xx).
    pub const fn is_well_known(self) -> bool {
        self.0 >= 0xFF_FFF0 || (self.0 & 0xFF_FF00) == 0xFF_FC00
    }

    /// The 3 big-endian bytes used in frame headers and payloads.
    pub fn to_bytes(self) -> [u8; 3] {
        let b = self.0.to_be_bytes();
        [b[1], b[2], b[3]]
    }

    pub fn from_bytes(b: [u8; 3]) -> Self {
        FcId(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
}

impl fmt::Display for FcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06x}", self.0)
    }
}

impl fmt::Debug for FcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FcId({:06x})", self.0)
    }
}

impl FromStr for FcId {
    type Err = FcIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.strip_prefix("0x").unwrap_or(s);
        if t.len() != 6 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(FcIdError::Malformed {
                text: s.to_string(),
            });
        }
        u32::from_str_radix(t, 16)
            .map(FcId)
            .map_err(|_| FcIdError::Malformed {
                text: s.to_string(),
            })
    }
}

impl Serialize for FcId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FcId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A switch's domain ID: 1–239 (0x01–0xEF) by construction.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DomainId(u8);

impl DomainId {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 239;

    pub fn new(domain: u32) -> Result<Self, FcIdError> {
        if (u32::from(Self::MIN)..=u32::from(Self::MAX)).contains(&domain) {
            // In 1..=239, checked just above.
            #[allow(clippy::cast_possible_truncation)]
            Ok(DomainId(domain as u8))
        } else {
            Err(FcIdError::DomainOutOfRange { domain })
        }
    }

    pub const fn get(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for DomainId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DomainId::new(u32::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parts_and_print() {
        let id = FcId::from_parts(1, 2, 0);
        assert_eq!(id.to_string(), "010200");
        assert_eq!((id.domain(), id.area(), id.port()), (1, 2, 0));
        assert_eq!("010200".parse::<FcId>().unwrap(), id);
        assert_eq!("0xfffffc".parse::<FcId>().unwrap(), FcId::NAME_SERVER);
    }

    #[test]
    fn well_known() {
        assert!(FcId::NAME_SERVER.is_well_known());
        assert!(FcId::domain_controller(DomainId::new(7).unwrap()).is_well_known());
        assert!(!FcId::from_parts(1, 0, 0).is_well_known());
    }

    #[test]
    fn domain_range_is_1_to_239() {
        assert!(DomainId::new(0).is_err());
        assert!(DomainId::new(1).is_ok());
        assert!(DomainId::new(239).is_ok());
        assert_eq!(
            DomainId::new(240),
            Err(FcIdError::DomainOutOfRange { domain: 240 })
        );
    }

    proptest! {
        #[test]
        fn bytes_roundtrip(v in 0u32..0x0100_0000) {
            let id = FcId::new(v);
            prop_assert_eq!(FcId::from_bytes(id.to_bytes()), id);
            prop_assert_eq!(id.to_string().parse::<FcId>().unwrap(), id);
        }
    }
}
