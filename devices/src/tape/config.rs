//! Drive configuration and the errors a caller can act on.

use fcsim_fabric::Wwn;
use serde::{Deserialize, Serialize};

/// Largest block length a 24-bit transfer length can describe.
pub(crate) const MAX_BLOCK_LIMIT: u32 = 0x00ff_ffff;

/// Errors a caller can act on: bad configuration or a bad image. SCSI outcomes are
/// [`TapeResult`] values, never errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TapeError {
    /// The configuration is unusable.
    #[error("tape config: {field}: {detail}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A medium image could not be parsed.
    #[error("tape image: {detail}")]
    BadImage {
        /// What is wrong with it.
        detail: String,
    },
    /// The image holds more data than the configured capacity.
    #[error("tape image holds {data_bytes} bytes, capacity is {capacity_bytes}")]
    ImageExceedsCapacity {
        /// Data bytes in the image.
        data_bytes: u64,
        /// Configured capacity.
        capacity_bytes: u64,
    },
}

fn invalid(field: &'static str, detail: impl Into<String>) -> TapeError {
    TapeError::InvalidConfig {
        field,
        detail: detail.into(),
    }
}

/// Configuration of one tape drive and its medium.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TapeConfig {
    /// Unit serial number (VPD 80h): 1..=32 printable ASCII characters.
    pub serial: String,
    /// NAA designator of the logical unit (VPD 83h): NAA 2, 3 or 5 (8 bytes).
    #[serde(with = "wwn_text")]
    pub lu_naa: Wwn,
    /// Product revision level (INQUIRY bytes 32..36): up to 4 printable ASCII characters.
    pub revision: String,
    /// Medium capacity in data bytes; `None` = unlimited. Filemarks take no capacity.
    pub capacity_bytes: Option<u64>,
    /// Size of the early-warning zone before the physical end; `None` = 1% of the
    /// capacity. Must be ≤ `capacity_bytes`; needs a capacity.
    pub early_warning_bytes: Option<u64>,
    /// Maximum block length (READ BLOCK LIMITS), 1..=FFFFFFh bytes.
    pub max_block_bytes: u32,
    /// Density code reported in the MODE SENSE block descriptor.
    pub density_code: u8,
    /// Block length at power-on: 0 = variable-block mode, else fixed blocks of this many
    /// bytes (≤ `max_block_bytes`).
    pub block_length_bytes: u32,
}

impl Default for TapeConfig {
    fn default() -> Self {
        TapeConfig {
            serial: "FCSIMTAPE0001".to_string(),
            lu_naa: Wwn::naa5(0x00_0f_c5, 0x7a9e_0001),
            revision: "0001".to_string(),
            capacity_bytes: None,
            early_warning_bytes: None,
            max_block_bytes: MAX_BLOCK_LIMIT,
            density_code: 0x00,
            block_length_bytes: 0,
        }
    }
}

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl TapeConfig {
    /// Checks identities, limits and the capacity/early-warning pair.
    pub fn validate(&self) -> Result<(), TapeError> {
        if self.serial.is_empty() || self.serial.len() > 32 || !printable(&self.serial) {
            return Err(invalid(
                "serial",
                format!("`{}` must be 1..=32 printable ASCII", self.serial),
            ));
        }
        if !matches!(self.lu_naa.naa(), 2 | 3 | 5) {
            return Err(invalid(
                "lu_naa",
                format!("{} is not an 8-byte NAA (2, 3 or 5)", self.lu_naa),
            ));
        }
        if self.revision.len() > 4 || !printable(&self.revision) {
            return Err(invalid(
                "revision",
                format!("`{}` must be at most 4 printable ASCII", self.revision),
            ));
        }
        if self.max_block_bytes == 0 || self.max_block_bytes > MAX_BLOCK_LIMIT {
            return Err(invalid("max_block_bytes", "must be 1..=16777215"));
        }
        if self.block_length_bytes > self.max_block_bytes {
            return Err(invalid("block_length_bytes", "exceeds max_block_bytes"));
        }
        match (self.capacity_bytes, self.early_warning_bytes) {
            (None, Some(_)) => {
                return Err(invalid("early_warning_bytes", "needs capacity_bytes"));
            }
            (Some(c), Some(ew)) if ew > c => {
                return Err(invalid("early_warning_bytes", "exceeds capacity_bytes"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Data bytes at which the early-warning zone begins, if there is a capacity.
    pub(crate) fn early_warning_at(&self) -> Option<u64> {
        let cap = self.capacity_bytes?;
        Some(cap - self.early_warning_bytes.unwrap_or(cap / 100))
    }
}

/// Serde for a [`Wwn`] as its `50:06:…` text form.
mod wwn_text {
    use fcsim_fabric::Wwn;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(w: &Wwn, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(w)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Wwn, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
