//! `fcsim ctl tm|tf|vlus|ops|map|unmap|function|mirror|cache SWITCH`: the intelligent
//! switch's virtualization engine (seed 003 §3.3–3.4), reached through the Control
//! endpoint. The user names the switch (`sw1`); the engine is its node `sw1.ve`, which
//! serves `fcsim.v1.Virtualization`. Server errors (INVALID_ARGUMENT naming the field)
//! come back as `Err` and `main` prints them.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use fcsim_proto::v1 as pb;
use pb::control_client::ControlClient;
use pb::virtualization_client::VirtualizationClient;
use tonic::transport::Channel;

use crate::client::{channel, names};

/// The intelligent-switch commands of `fcsim ctl` (flattened into `CtlCmd`).
#[derive(Subcommand)]
pub enum VirtCmd {
    /// The mapping table TM, in the patent's column order (seed 003 Fig. 9): virtual
    /// Vol ID and BLK ADDR, then Device ID, Port ID, real Vol ID and BLK ADDR.
    Tm { switch: String },
    /// The function table TF: one row per array, can/cannot per support function, where
    /// each cell came from and when (fabric time, ms).
    Tf { switch: String },
    /// The switch's virtual LUs: capacity, ack mode, state, extents, backend commands.
    Vlus { switch: String },
    /// Operations the switch ran or delegated (backup, volume copy, mirror), with their
    /// logs.
    Ops { switch: String },
    /// Map a virtual LU from extents of real LUs (`arr1:0@START+BLOCKS`) and/or switch
    /// memory (`internal+BLOCKS`), concatenated in the order given.
    Map {
        switch: String,
        /// The virtual LU's LUN.
        #[arg(long)]
        lun: u32,
        /// Its name (Vol ID in TM); `v<LUN>` if not given.
        #[arg(long)]
        name: Option<String>,
        /// When a write is acknowledged: after the array has it (sync) or once it is in
        /// the switch cache (async).
        #[arg(long, default_value = "sync", value_parser = ["sync", "async"])]
        ack: String,
        /// An extent: `ARRAY:LUN@START+BLOCKS` (START defaults to 0) or `internal+BLOCKS`.
        #[arg(long = "extent", required = true)]
        extents: Vec<String>,
    },
    /// Remove a virtual LU no operation uses and with no dirty blocks.
    Unmap {
        switch: String,
        #[arg(long)]
        lun: u32,
    },
    /// Override one TF cell by hand, or clear the override.
    Function {
        switch: String,
        /// The array (TF's Device ID).
        #[arg(long)]
        array: String,
        #[arg(long, value_parser = ["direct-backup", "volume-copy", "mirroring"])]
        function: String,
        #[arg(long, value_parser = ["can", "cannot", "clear"])]
        value: String,
    },
    /// Mirror virtual LU `--src` onto virtual LU `--dst` (embodiment 3).
    Mirror {
        switch: String,
        #[arg(long)]
        src: u32,
        #[arg(long)]
        dst: u32,
    },
    /// The switch cache: blocks written but not yet destaged to the arrays.
    Cache { switch: String },
}

/// Runs `cmd` against the engine of the switch it names and returns what to print.
pub async fn ctl(control: &mut ControlClient<Channel>, cmd: VirtCmd) -> anyhow::Result<String> {
    Ok(match cmd {
        VirtCmd::Tm { switch } => {
            let r = engine(control, &switch)
                .await?
                .get_mapping_table(pb::GetMappingTableRequest {})
                .await?;
            tm(&r.into_inner())
        }
        VirtCmd::Tf { switch } => {
            let r = engine(control, &switch)
                .await?
                .get_function_table(pb::GetFunctionTableRequest {})
                .await?;
            tf(&r.into_inner())
        }
        VirtCmd::Vlus { switch } => {
            let r = engine(control, &switch)
                .await?
                .list_virtual_lus(pb::ListVirtualLusRequest {})
                .await?;
            vlus(&r.into_inner())
        }
        VirtCmd::Ops { switch } => {
            let r = engine(control, &switch)
                .await?
                .list_operations(pb::ListOperationsRequest {})
                .await?;
            ops(&r.into_inner().operations)
        }
        VirtCmd::Map {
            switch,
            lun,
            name,
            ack,
            extents,
        } => {
            let extents = extents
                .iter()
                .map(|e| parse_extent(e))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let req = pb::MapVirtualLuRequest {
                lun,
                name: name.unwrap_or_default(),
                ack,
                block_bytes: 0,
                extents,
            };
            let r = engine(control, &switch).await?.map_virtual_lu(req).await?;
            vlus(&r.into_inner())
        }
        VirtCmd::Unmap { switch, lun } => {
            let r = engine(control, &switch)
                .await?
                .unmap_virtual_lu(pb::UnmapVirtualLuRequest { lun })
                .await?;
            vlus(&r.into_inner())
        }
        VirtCmd::Function {
            switch,
            array,
            function,
            value,
        } => {
            let req = pb::SetFunctionRequest {
                device_id: array,
                function,
                value,
            };
            let r = engine(control, &switch).await?.set_function(req).await?;
            tf(&r.into_inner())
        }
        VirtCmd::Mirror { switch, src, dst } => {
            let req = pb::StartMirrorRequest {
                src_lun: src,
                dst_lun: dst,
            };
            let r = engine(control, &switch).await?.start_mirror(req).await?;
            ops(&[r.into_inner()])
        }
        VirtCmd::Cache { switch } => {
            let r = engine(control, &switch)
                .await?
                .cache_status(pb::CacheStatusRequest {})
                .await?;
            cache(&r.into_inner())
        }
    })
}

/// The virtualization service of `switch` (`sw1` or its engine node `sw1.ve`).
async fn engine(
    control: &mut ControlClient<Channel>,
    switch: &str,
) -> anyhow::Result<VirtualizationClient<Channel>> {
    let (switch, node) = match switch.strip_suffix(".ve") {
        Some(sw) => (sw.to_string(), switch.to_string()),
        None => (
            switch.to_string(),
            fcsim_scenarios::launch::engine_name(switch),
        ),
    };
    let nodes = control
        .list_nodes(pb::ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    let Some(n) = nodes.iter().find(|n| n.name == node) else {
        match nodes.iter().find(|n| n.name == switch) {
            Some(n) if n.kind == "switch" => {
                bail!("`{switch}` is not an intelligent switch (it has no engine node `{node}`)")
            }
            Some(n) => bail!("`{switch}` is a {}, not a switch", n.kind),
            None => {}
        }
        bail!("no switch named `{switch}` (known: {})", names(&nodes));
    };
    if !n.alive {
        bail!("the virtualization engine `{node}` of `{switch}` is down");
    }
    Ok(VirtualizationClient::new(channel(&n.address).await?))
}

/// An extent argument: `ARRAY:LUN@START+BLOCKS`, `ARRAY:LUN+BLOCKS` (from block 0), an
/// NAA instead of `ARRAY:LUN`, or `internal+BLOCKS`.
fn parse_extent(text: &str) -> anyhow::Result<pb::ExtentInfo> {
    let usage =
        || anyhow!("--extent `{text}`: expected `ARRAY:LUN@START+BLOCKS` or `internal+BLOCKS`");
    let (lu, blocks) = text.rsplit_once('+').ok_or_else(usage)?;
    let blocks: u64 = blocks
        .parse()
        .map_err(|_| anyhow!("--extent `{text}`: `{blocks}` is not a block count"))?;
    if lu == "internal" {
        return Ok(pb::ExtentInfo {
            blocks,
            internal: true,
            ..Default::default()
        });
    }
    let (lu, real_start) = match lu.rsplit_once('@') {
        Some((lu, start)) => (
            lu,
            start
                .parse()
                .map_err(|_| anyhow!("--extent `{text}`: `{start}` is not a block address"))?,
        ),
        None => (lu, 0),
    };
    if lu.is_empty() {
        return Err(usage());
    }
    Ok(pb::ExtentInfo {
        start: 0,
        blocks,
        lu: lu.to_string(),
        real_start,
        internal: false,
    })
}

/// Left-aligned columns two spaces apart, the header underlined with `=` as in the
/// FOS-style views. Widths count characters, not bytes (`→`, `—`).
pub(crate) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (c, w) in cells.zip(&widths) {
            let pad = w.saturating_sub(c.chars().count());
            let _ = write!(s, "{c}{}  ", " ".repeat(pad));
        }
        s.trim_end().to_string() + "\n"
    };
    let mut s = line(&mut head.iter().copied());
    let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    s.push_str(&"=".repeat(total));
    s.push('\n');
    for r in rows {
        s.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    s
}

/// TM, columns exactly as Fig. 9 shows them.
fn tm(r: &pb::GetMappingTableResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|m| {
            vec![
                m.vol_id.clone(),
                m.blk_addr.clone(),
                m.device_id.clone(),
                m.port_id.clone(),
                m.real_vol_id.clone(),
                m.real_blk_addr.clone(),
            ]
        })
        .collect();
    let mut s = format!(
        "TM of {}: virtual LU blocks (left) → real LU blocks (right)\n",
        r.switch
    );
    s.push_str(&table(
        &[
            "Vol ID",
            "BLK ADDR",
            "Device ID",
            "Port ID",
            "Vol ID",
            "BLK ADDR",
        ],
        &rows,
    ));
    if r.rows.is_empty() {
        s.push_str("(no virtual LUs)\n");
    }
    s
}

/// Fabric time in µs as milliseconds, `12.345`.
fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

/// TF: Device ID, Port ID, one can/cannot column per function, then where the cells
/// came from and when. A cell whose provenance or time differs from the row's usual one
/// is named in those columns.
fn tf(r: &pb::GetFunctionTableResponse) -> String {
    let functions: Vec<String> = r
        .rows
        .first()
        .map(|row| row.cells.iter().map(|c| c.function.clone()).collect())
        .unwrap_or_else(|| {
            fcsim_switch::tf::SupportFunction::ALL
                .iter()
                .map(|f| f.name().to_string())
                .collect()
        });
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            let mut cells = vec![row.device_id.clone(), row.port_id.clone()];
            for f in &functions {
                let v = match row.cells.iter().find(|c| &c.function == f) {
                    Some(c) if c.can => "can",
                    _ => "cannot",
                };
                cells.push(v.to_string());
            }
            // The most common (provenance, time) is the row's; others are listed.
            let mut count: BTreeMap<(&str, u64), usize> = BTreeMap::new();
            for c in &row.cells {
                *count.entry((&c.provenance, c.learned_at_us)).or_default() += 1;
            }
            let base = count
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(k, _)| *k)
                .unwrap_or(("", 0));
            let mut prov = base.0.to_string();
            let mut learned = ms(base.1);
            for c in &row.cells {
                if (c.provenance.as_str(), c.learned_at_us) != base {
                    let _ = write!(prov, "; {}: {}", c.function, c.provenance);
                    let _ = write!(learned, "; {}: {}", c.function, ms(c.learned_at_us));
                }
            }
            cells.push(prov);
            cells.push(learned);
            cells
        })
        .collect();
    let mut head = vec!["Device ID", "Port ID"];
    head.extend(functions.iter().map(String::as_str));
    head.extend(["Provenance", "Learned (ms)"]);
    let mut s = table(&head, &rows);
    if r.rows.is_empty() {
        s.push_str("(no arrays discovered yet)\n");
    }
    s
}

/// `1024 × 512 B = 512 KiB`.
fn capacity(blocks: u64, block_bytes: u32) -> String {
    let bytes = blocks * u64::from(block_bytes);
    let human = if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    };
    format!("{blocks} × {block_bytes} B = {human}")
}

/// A range of blocks, `first-last`.
fn span(start: u64, blocks: u64) -> String {
    format!("{start}-{}", (start + blocks).saturating_sub(1))
}

fn vlus(r: &pb::ListVirtualLusResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .lus
        .iter()
        .map(|l| {
            let extents: Vec<String> = l
                .extents
                .iter()
                .map(|e| {
                    let real = if e.internal {
                        "internal".to_string()
                    } else {
                        format!("{}@{}", e.lu, span(e.real_start, e.blocks))
                    };
                    format!("{} → {real}", span(e.start, e.blocks))
                })
                .collect();
            vec![
                l.lun.to_string(),
                l.name.clone(),
                capacity(l.blocks, l.block_bytes),
                l.ack.clone(),
                l.state.clone(),
                l.backend_commands.to_string(),
                extents.join(", "),
            ]
        })
        .collect();
    let mut s = table(
        &[
            "LUN",
            "Name",
            "Capacity",
            "Ack",
            "State",
            "Backend cmds",
            "Extents",
        ],
        &rows,
    );
    for l in &r.lus {
        let _ = writeln!(s, "LUN {} NAA {}", l.lun, l.naa);
    }
    if r.lus.is_empty() {
        s.push_str("(no virtual LUs)\n");
    }
    s
}

fn ops(ops: &[pb::Operation]) -> String {
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|o| {
            vec![
                o.id.to_string(),
                o.kind.clone(),
                o.state.clone(),
                format!("{} → {}", o.source, o.destination),
                o.executors.join(", "),
                o.bytes.to_string(),
                o.switch_data_bytes.to_string(),
                o.tb_blocks.to_string(),
            ]
        })
        .collect();
    let mut s = table(
        &[
            "ID",
            "Kind",
            "State",
            "Source → Destination",
            "Executors",
            "Bytes",
            "Via switch",
            "TB blocks",
        ],
        &rows,
    );
    for o in ops {
        for line in &o.log {
            let _ = writeln!(s, "op {}: {line}", o.id);
        }
    }
    if ops.is_empty() {
        s.push_str("(no operations)\n");
    }
    s
}

/// Dirty blocks per LUN as ranges.
fn cache(r: &pb::CacheStatusResponse) -> String {
    let mut per_lun: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for b in &r.dirty {
        per_lun.entry(b.lun).or_default().push(b.lba);
    }
    let mut s = format!("{} dirty blocks not yet destaged\n", r.dirty_blocks);
    for (lun, mut lbas) in per_lun {
        lbas.sort_unstable();
        lbas.dedup();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for lba in lbas {
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 == lba => *last = lba,
                _ => ranges.push((lba, lba)),
            }
        }
        let text: Vec<String> = ranges
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        let _ = writeln!(s, "LUN {lun}: {}", text.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_parse() {
        let e = parse_extent("arr1:0@1024+512").unwrap();
        assert_eq!(
            (e.lu.as_str(), e.real_start, e.blocks, e.internal),
            ("arr1:0", 1024, 512, false)
        );
        let e = parse_extent("arr1:1+64").unwrap();
        assert_eq!((e.lu.as_str(), e.real_start, e.blocks), ("arr1:1", 0, 64));
        let e = parse_extent("internal+256").unwrap();
        assert!(e.internal);
        assert_eq!(e.blocks, 256);
        for bad in ["arr1:0", "arr1:0@x+1", "arr1:0@0+", "+5", "@3+5"] {
            assert!(parse_extent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tm_columns_in_fig9_order() {
        let r = pb::GetMappingTableResponse {
            switch: "sw1".into(),
            rows: vec![pb::MappingRow {
                vol_id: "alpha".into(),
                blk_addr: "0-1023".into(),
                device_id: "arr1".into(),
                port_id: "50:00".into(),
                real_vol_id: "60:0a".into(),
                real_blk_addr: "1024-2047".into(),
            }],
        };
        let out = tm(&r);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1],
            "Vol ID  BLK ADDR  Device ID  Port ID  Vol ID  BLK ADDR"
        );
        assert_eq!(
            lines[3],
            "alpha   0-1023    arr1       50:00    60:0a   1024-2047"
        );
    }

    #[test]
    fn cache_ranges() {
        let r = pb::CacheStatusResponse {
            dirty_blocks: 4,
            dirty: [(1, 5), (1, 6), (1, 7), (1, 9)]
                .map(|(lun, lba)| pb::CacheBlock { lun, lba })
                .to_vec(),
        };
        assert!(cache(&r).contains("LUN 1: 5-7, 9"));
    }
}
