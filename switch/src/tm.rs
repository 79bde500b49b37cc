//! The mapping table TM (seed 003 §3.3, Figs. 9(a)–(c), 16, 19): which real block of which
//! external array holds each block of a virtual LU, or INTERNAL for blocks the switch
//! keeps itself.
//!
//! Rows are extents `(virtual LU, start, blocks) → (device, port, real LU, real start)`
//! and a block is translated by offset (`real = real_start + (x − start)`), the
//! "table plus computation" form the patent allows. A virtual LU is the concatenation of
//! its extents, in order, from block 0: TM is a total function on `[0, capacity)`.
//! [`MappingTable::add_lu`] refuses overlapping extents, extents past the real LU's end,
//! real LUs that do not exist, mismatched block sizes and two virtual blocks on one real
//! block, and changes nothing when it refuses.

use std::collections::BTreeMap;
use std::fmt;

use fcsim_fabric::{Wwn, Wwpn};
use serde::{Deserialize, Serialize};

/// Where an extent's blocks live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backing {
    /// On the switch itself (the patent's SD1 / INTERNAL rows): block `x` of the virtual LU
    /// is block `x` of the switch's own store for that LU.
    Internal,
    /// On an external array's logical unit.
    External {
        /// The real LU's NAA identifier (VPD 83h).
        lu: Wwn,
        /// First real block of the extent.
        start: u64,
    },
}

/// One TM row: `blocks` blocks of a virtual LU from `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// First virtual block.
    pub start: u64,
    /// Number of blocks (at least 1).
    pub blocks: u64,
    /// Where they live.
    pub backing: Backing,
}

/// Write acknowledgement of a virtual LU (seed 003 §4.3 step 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// After every array holding the blocks acknowledged them.
    #[default]
    Sync,
    /// As soon as the switch cache holds the data; destaged in the background.
    Async,
}

impl fmt::Display for AckMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AckMode::Sync => "sync",
            AckMode::Async => "async",
        })
    }
}

/// A virtual LU: its identity and its extents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualLu {
    /// LUN on the switch's virtual targets.
    pub lun: u16,
    /// Display name (the patent's Vol ID, α, β …).
    pub name: String,
    /// NAA identifier the hosts see in VPD 83h.
    pub naa: Wwn,
    /// Logical block size; every external extent's LU has the same.
    pub block_bytes: u32,
    /// Write acknowledgement.
    pub ack: AckMode,
    /// Extents in virtual block order, contiguous from 0.
    pub extents: Vec<Extent>,
}

impl VirtualLu {
    /// Capacity in blocks: the sum of the extents.
    pub fn blocks(&self) -> u64 {
        self.extents.last().map_or(0, |e| e.start + e.blocks)
    }

    /// Whether any block lives on the switch itself.
    pub fn has_internal(&self) -> bool {
        self.extents.iter().any(|e| e.backing == Backing::Internal)
    }
}

/// The NAA identifier of virtual LU `lun` of the engine named `engine` (VPD 83h):
/// under the switch vendor's OUI, from the engine's node name and the LUN, so the same
/// configuration always gives the same names.
pub fn virtual_lu_naa(engine: fcsim_fabric::Wwnn, lun: u16) -> Wwn {
    Wwn::naa5(0x00_05_1e, ((engine.0.0 & 0xF_FFFF) << 16) | u64::from(lun))
}

/// A real LU as the switch knows it (from discovery or configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealLu {
    pub blocks: u64,
    pub block_bytes: u32,
}

/// One piece of a translated command: `blocks` blocks at `offset` blocks into the
/// request, on `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Blocks from the start of the request.
    pub offset: u64,
    pub blocks: u64,
    pub target: Target,
}

/// A translated address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The switch's own store of the virtual LU, at this block.
    Internal { lba: u64 },
    /// A real LU at this block.
    External { lu: Wwn, lba: u64 },
}

/// Why TM refused a change or a translation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TmError {
    #[error("virtual LU {lun} already exists")]
    Exists { lun: u16 },
    #[error("virtual LU {lun} does not exist")]
    NoSuchLu { lun: u16 },
    #[error("virtual LU {lun}: it needs at least one extent")]
    Empty { lun: u16 },
    #[error("virtual LU {lun}: extent {index} has 0 blocks")]
    ZeroBlocks { lun: u16, index: usize },
    #[error("virtual LU {lun}: extent {index} names {lu}, which no array presents")]
    UnknownRealLu { lun: u16, index: usize, lu: Wwn },
    #[error(
        "virtual LU {lun}: extent {index} ends at block {end} of {lu}, which has {blocks} blocks"
    )]
    PastEnd {
        lun: u16,
        index: usize,
        lu: Wwn,
        end: u64,
        blocks: u64,
    },
    #[error(
        "virtual LU {lun}: extent {index} is on {lu} with {real}-byte blocks, the LU has {virt}-byte blocks"
    )]
    BlockSize {
        lun: u16,
        index: usize,
        lu: Wwn,
        real: u32,
        virt: u32,
    },
    #[error(
        "virtual LU {lun}: extent {index} overlaps blocks {start}..{end} of {lu}, already mapped to virtual LU {other}"
    )]
    Overlap {
        lun: u16,
        index: usize,
        lu: Wwn,
        start: u64,
        end: u64,
        other: u16,
    },
    #[error("virtual LU {lun}: blocks {lba}..{end} are past its capacity of {blocks}")]
    OutOfRange {
        lun: u16,
        lba: u64,
        end: u64,
        blocks: u64,
    },
}

/// The mapping table of one switch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MappingTable {
    lus: BTreeMap<u16, VirtualLu>,
}

impl MappingTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every virtual LU by LUN.
    pub fn lus(&self) -> &BTreeMap<u16, VirtualLu> {
        &self.lus
    }

    pub fn lu(&self, lun: u16) -> Option<&VirtualLu> {
        self.lus.get(&lun)
    }

    /// The virtual LU with this NAA.
    pub fn lu_by_naa(&self, naa: Wwn) -> Option<&VirtualLu> {
        self.lus.values().find(|l| l.naa == naa)
    }

    /// Every virtual LU whose extents use `real`.
    pub fn users_of(&self, real: Wwn) -> impl Iterator<Item = &VirtualLu> {
        self.lus.values().filter(move |l| {
            l.extents
                .iter()
                .any(|e| matches!(e.backing, Backing::External { lu, .. } if lu == real))
        })
    }

    /// Adds a virtual LU after checking every rule against the table and the real LUs
    /// `real` knows. Extents' `start` fields are recomputed as the running sum.
    pub fn add_lu(
        &mut self,
        mut lu: VirtualLu,
        real: impl Fn(Wwn) -> Option<RealLu>,
    ) -> Result<(), TmError> {
        let lun = lu.lun;
        if self.lus.contains_key(&lun) {
            return Err(TmError::Exists { lun });
        }
        if lu.extents.is_empty() {
            return Err(TmError::Empty { lun });
        }
        let mut at = 0u64;
        // Real ranges this LU uses, to catch two of its own extents on one block.
        let mut mine: Vec<(Wwn, u64, u64, usize)> = Vec::new();
        for (index, e) in lu.extents.iter_mut().enumerate() {
            if e.blocks == 0 {
                return Err(TmError::ZeroBlocks { lun, index });
            }
            e.start = at;
            at += e.blocks;
            let Backing::External { lu: naa, start } = e.backing else {
                continue;
            };
            let r = real(naa).ok_or(TmError::UnknownRealLu {
                lun,
                index,
                lu: naa,
            })?;
            let end = start.saturating_add(e.blocks);
            if end > r.blocks {
                return Err(TmError::PastEnd {
                    lun,
                    index,
                    lu: naa,
                    end,
                    blocks: r.blocks,
                });
            }
            if r.block_bytes != lu.block_bytes {
                return Err(TmError::BlockSize {
                    lun,
                    index,
                    lu: naa,
                    real: r.block_bytes,
                    virt: lu.block_bytes,
                });
            }
            let others = self.lus.values().flat_map(|o| {
                o.extents.iter().filter_map(move |x| match x.backing {
                    Backing::External { lu, start } => Some((lu, start, start + x.blocks, o.lun)),
                    Backing::Internal => None,
                })
            });
            let own = mine.iter().map(|&(l, s, t, _)| (l, s, t, lun));
            if let Some((_, s, t, other)) = others
                .chain(own)
                .find(|&(l, s, t, _)| l == naa && s < end && start < t)
            {
                return Err(TmError::Overlap {
                    lun,
                    index,
                    lu: naa,
                    start: s.max(start),
                    end: t.min(end),
                    other,
                });
            }
            mine.push((naa, start, end, index));
        }
        self.lus.insert(lun, lu);
        Ok(())
    }

    /// Removes a virtual LU.
    pub fn remove_lu(&mut self, lun: u16) -> Result<VirtualLu, TmError> {
        self.lus.remove(&lun).ok_or(TmError::NoSuchLu { lun })
    }

    /// Translates `blocks` blocks of virtual LU `lun` from `lba`: one piece per extent
    /// the range touches, in order, disjoint, lengths summing to `blocks` (I4).
    pub fn translate(&self, lun: u16, lba: u64, blocks: u64) -> Result<Vec<Piece>, TmError> {
        let lu = self.lus.get(&lun).ok_or(TmError::NoSuchLu { lun })?;
        let end = lba.saturating_add(blocks);
        if end > lu.blocks() {
            return Err(TmError::OutOfRange {
                lun,
                lba,
                end,
                blocks: lu.blocks(),
            });
        }
        let mut out = Vec::new();
        // The extent holding `lba`, then the ones after it.
        let first = lu.extents.partition_point(|e| e.start + e.blocks <= lba);
        for e in &lu.extents[first..] {
            if e.start >= end {
                break;
            }
            let from = lba.max(e.start);
            let to = end.min(e.start + e.blocks);
            let target = match e.backing {
                Backing::Internal => Target::Internal { lba: from },
                Backing::External { lu, start } => Target::External {
                    lu,
                    lba: start + (from - e.start),
                },
            };
            out.push(Piece {
                offset: from - lba,
                blocks: to - from,
                target,
            });
        }
        Ok(out)
    }

    /// The patent's table, one row per extent in column order: Vol ID, BLK ADDR,
    /// device ID, Port ID, Vol ID, BLK ADDR. `place` names the array and port of a
    /// real LU; `me` is the switch's own device ID for INTERNAL rows.
    pub fn rows(
        &self,
        me: &str,
        place: impl Fn(Wwn) -> Option<(String, Option<Wwpn>)>,
    ) -> Vec<[String; 6]> {
        let mut out = Vec::new();
        for lu in self.lus.values() {
            for e in &lu.extents {
                let vaddr = format!("{}-{}", e.start, e.start + e.blocks - 1);
                let row = match e.backing {
                    Backing::Internal => [
                        lu.name.clone(),
                        vaddr,
                        me.to_string(),
                        "INTERNAL".to_string(),
                        "—".to_string(),
                        "—".to_string(),
                    ],
                    Backing::External { lu: naa, start } => {
                        let (device, port) = place(naa).unwrap_or_else(|| ("?".to_string(), None));
                        [
                            lu.name.clone(),
                            vaddr,
                            device,
                            port.map_or_else(|| "-".to_string(), |p| p.to_string()),
                            naa.to_string(),
                            format!("{}-{}", start, start + e.blocks - 1),
                        ]
                    }
                };
                out.push(row);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naa(n: u64) -> Wwn {
        Wwn::naa5(0x00_60_e8, n)
    }

    fn ext(lu: u64, start: u64, blocks: u64) -> Extent {
        Extent {
            start: 0,
            blocks,
            backing: Backing::External { lu: naa(lu), start },
        }
    }

    fn vlu(lun: u16, extents: Vec<Extent>) -> VirtualLu {
        VirtualLu {
            lun,
            name: format!("v{lun}"),
            naa: naa(1000 + u64::from(lun)),
            block_bytes: 512,
            ack: AckMode::Sync,
            extents,
        }
    }

    fn real(n: Wwn) -> Option<RealLu> {
        (n == naa(1) || n == naa(2)).then_some(RealLu {
            blocks: 1000,
            block_bytes: 512,
        })
    }

    #[test]
    fn fig_9c_concatenation_translates_per_extent() {
        let mut tm = MappingTable::new();
        tm.add_lu(vlu(0, vec![ext(1, 100, 50), ext(2, 0, 50)]), real)
            .unwrap();
        assert_eq!(tm.lu(0).unwrap().blocks(), 100);
        let p = tm.translate(0, 40, 20).unwrap();
        assert_eq!(
            p,
            vec![
                Piece {
                    offset: 0,
                    blocks: 10,
                    target: Target::External {
                        lu: naa(1),
                        lba: 140
                    }
                },
                Piece {
                    offset: 10,
                    blocks: 10,
                    target: Target::External { lu: naa(2), lba: 0 }
                },
            ]
        );
    }

    #[test]
    fn rejected_mappings_change_nothing() {
        let mut tm = MappingTable::new();
        tm.add_lu(vlu(0, vec![ext(1, 0, 100)]), real).unwrap();
        let before = tm.lus().clone();
        let cases = [
            (vlu(1, vec![ext(1, 50, 100)]), "overlaps"),
            (vlu(1, vec![ext(2, 950, 100)]), "has 1000 blocks"),
            (vlu(1, vec![ext(3, 0, 10)]), "no array presents"),
            (vlu(1, vec![ext(2, 0, 10), ext(2, 5, 10)]), "overlaps"),
            (vlu(0, vec![ext(2, 0, 10)]), "already exists"),
            (vlu(1, vec![]), "at least one extent"),
        ];
        for (lu, want) in cases {
            let e = tm.add_lu(lu, real).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert_eq!(tm.lus(), &before);
        }
        let mut odd = vlu(1, vec![ext(2, 0, 10)]);
        odd.block_bytes = 4096;
        assert!(matches!(
            tm.add_lu(odd, real),
            Err(TmError::BlockSize { .. })
        ));
        assert!(matches!(
            tm.translate(0, 90, 20),
            Err(TmError::OutOfRange { .. })
        ));
    }

    #[test]
    fn rows_follow_the_patent_column_order() {
        let mut tm = MappingTable::new();
        let mut lu = vlu(0, vec![ext(1, 10, 5)]);
        lu.extents.push(Extent {
            start: 0,
            blocks: 5,
            backing: Backing::Internal,
        });
        tm.add_lu(lu, real).unwrap();
        let rows = tm.rows("sw1", |_| Some(("arr1".into(), None)));
        assert_eq!(rows[0][..4], ["v0", "0-4", "arr1", "-"]);
        assert_eq!(rows[0][5], "10-14");
        assert_eq!(
            rows[1],
            ["v0", "5-9", "sw1", "INTERNAL", "—", "—"].map(String::from)
        );
    }

    proptest! {
        /// I4: pieces are in order, disjoint, sum to the request, and each block maps
        /// to the same place block-by-block translation gives (extent and per-block
        /// forms agree).
        #[test]
        fn split_is_exact(sizes in proptest::collection::vec(1u64..40, 1..6), lba in 0u64..200, n in 1u64..80) {
            let mut tm = MappingTable::new();
            let mut start = 0;
            let extents: Vec<Extent> = sizes.iter().map(|&b| { let e = ext(1, start, b); start += b; e }).collect();
            tm.add_lu(vlu(0, extents), real).unwrap();
            let cap = tm.lu(0).unwrap().blocks();
            let lba = lba % cap;
            let n = 1 + (n - 1) % (cap - lba);
            let pieces = tm.translate(0, lba, n).unwrap();
            let mut off = 0;
            for p in &pieces {
                prop_assert_eq!(p.offset, off);
                prop_assert!(p.blocks > 0);
                off += p.blocks;
                for b in 0..p.blocks {
                    let one = tm.translate(0, lba + p.offset + b, 1).unwrap();
                    let want = match p.target { Target::External { lu, lba } => Target::External { lu, lba: lba + b }, Target::Internal { lba } => Target::Internal { lba: lba + b } };
                    prop_assert_eq!(one[0].target, want);
                }
            }
            prop_assert_eq!(off, n);
        }
    }
}
