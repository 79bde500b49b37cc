//! World Wide Names (FC-FS-4 §19): 64-bit NAA names, `Wwnn` per node and `Wwpn` per port,
//! printed and parsed as `50:06:0e:80:12:34:56:78`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a WWN string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WwnParseError {
    #[error(
        "`{text}` is not a WWN: expected 8 colon-separated hex bytes like 50:06:0e:80:12:34:56:78"
    )]
    Malformed { text: String },
}

/// A raw 64-bit World Wide Name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Wwn(pub u64);

impl Wwn {
    /// The NAA nibble (the top four bits): 1, 2, 5 or 6 for real names.
    pub fn naa(self) -> u8 {
        (self.0 >> 60) as u8
    }

    /// The big-endian bytes, as they appear in ELS and CT payloads.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(b: [u8; 8]) -> Self {
        Wwn(u64::from_be_bytes(b))
    }

    /// An NAA 5 (IEEE Registered) name under `oui` with a 36-bit vendor serial:
    /// how fcsim gives names to topology nodes that do not state their own.
    pub fn naa5(oui: u32, serial: u64) -> Self {
        Wwn((5u64 << 60) | (u64::from(oui & 0x00ff_ffff) << 36) | (serial & 0x0f_ffff_ffff))
    }
}

impl fmt::Display for Wwn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
        )
    }
}

impl fmt::Debug for Wwn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Wwn {
    type Err = WwnParseError;

    /// Accepts `50:06:0e:80:12:34:56:78`, and also the 16-digit forms with `-`
    /// separators or none (`50060e8012345678`), as switch CLIs print them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || WwnParseError::Malformed {
            text: s.to_string(),
        };
        let digits: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
        let separated = digits.len() != s.len();
        if digits.len() != 16 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        if separated && s.split([':', '-']).any(|g| g.len() != 2) {
            return Err(bad());
        }
        u64::from_str_radix(&digits, 16).map(Wwn).map_err(|_| bad())
    }
}

impl Serialize for Wwn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Wwn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! wwn_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub Wwn);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = WwnParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

wwn_newtype!(
    /// A port's World Wide Port Name.
    Wwpn
);
wwn_newtype!(
    /// A node's (or switch's) World Wide Node Name.
    Wwnn
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prints_and_parses_colon_form() {
        let w: Wwpn = "50:06:0e:80:12:34:56:78".parse().unwrap();
        assert_eq!(w.0.0, 0x5006_0e80_1234_5678);
        assert_eq!(w.to_string(), "50:06:0e:80:12:34:56:78");
        assert_eq!(w.0.naa(), 5);
    }

    #[test]
    fn accepts_bare_and_dashed_forms() {
        assert_eq!(
            "50060e8012345678".parse::<Wwn>().unwrap().0,
            0x5006_0e80_1234_5678
        );
        assert_eq!(
            "50-06-0e-80-12-34-56-78".parse::<Wwn>().unwrap().0,
            0x5006_0e80_1234_5678
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "50:06",
            "50:06:0e:80:12:34:56:7g",
            "500:6:0e:80:12:34:56:78",
            "50:06:0e:80:12:34:56:78:9a",
        ] {
            assert!(bad.parse::<Wwn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn naa5_layout() {
        let w = Wwn::naa5(0x00_0e_80, 0x12345);
        assert_eq!(w.naa(), 5);
        assert_eq!(w.to_string(), "50:00:e8:00:00:01:23:45");
    }

    proptest! {
        #[test]
        fn display_parse_roundtrip(v in any::<u64>()) {
            let w = Wwn(v);
            prop_assert_eq!(w.to_string().parse::<Wwn>().unwrap(), w);
            prop_assert_eq!(Wwn::from_bytes(w.to_bytes()), w);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Wwn>();
        }
    }
}
