//! `fcsim host`: host commands against a running fabric, through one host's
//! `fcsim.v1.Host` service (found via the Control endpoint).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use fcsim_proto::v1 as pb;
use pb::control_client::ControlClient;
use pb::host_client::HostClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum HostCmd {
    /// Devices the host discovered, with their paths.
    Devices,
    /// INQUIRY: standard data, or a VPD page.
    Inquiry {
        device: String,
        /// VPD page code (e.g. 0x83 as 131).
        #[arg(long)]
        vpd: Option<u32>,
    },
    /// READ CAPACITY (16).
    Readcap { device: String },
    /// READ blocks and print them as hex.
    Read {
        device: String,
        lba: u64,
        blocks: u32,
    },
    /// WRITE blocks of one repeated byte (or hex data).
    Write {
        device: String,
        lba: u64,
        /// Number of blocks to write with `--fill`.
        #[arg(long, default_value_t = 1)]
        blocks: u32,
        /// The byte to fill with (decimal or 0x-hex).
        #[arg(long, default_value = "0xa5", value_parser = parse_byte)]
        fill: u8,
        /// Block size of the device (bytes).
        #[arg(long, default_value_t = 512)]
        block_bytes: u32,
        /// Force Unit Access.
        #[arg(long)]
        fua: bool,
    },
    /// EXTENDED COPY through the copy manager `device`: `--copy SRC@LBA=DST@LBA+BLOCKS`.
    Xcopy {
        device: String,
        /// A segment, e.g. `arr1:0@0=arr2:0@0+2048` or `arr1:0@0=tape1:0+2048`.
        #[arg(long = "copy", required = true)]
        copies: Vec<String>,
        #[arg(long, default_value_t = 0)]
        list_id: u8,
    },
    /// Run a workload and show its progress.
    Workload {
        device: String,
        #[arg(long, default_value = "random")]
        pattern: String,
        #[arg(long, default_value = "write")]
        mix: String,
        #[arg(long, default_value_t = 50)]
        read_percent: u32,
        #[arg(long = "bs", default_value_t = 4096)]
        block_bytes: u32,
        #[arg(long, default_value_t = 8)]
        qd: u32,
        /// Number of I/Os.
        #[arg(long)]
        count: Option<u64>,
        /// Duration in milliseconds.
        #[arg(long)]
        duration_ms: Option<u64>,
        #[arg(long)]
        verify: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn parse_byte(s: &str) -> Result<u8, String> {
    match s.strip_prefix("0x") {
        Some(h) => u8::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("`{s}`: {e}"))
}

fn result_line(r: &pb::ScsiResult) -> String {
    if !r.transport_error.is_empty() {
        return format!("transport error: {} (port {})", r.transport_error, r.port);
    }
    match r.status {
        0 => format!(
            "GOOD, {} bytes, {}µs via port {}",
            r.data.len(),
            r.latency_us,
            r.port
        ),
        s => format!("status {s:#04x} {}", r.sense_text),
    }
}

fn hexdump(data: &[u8]) -> String {
    data.chunks(16)
        .enumerate()
        .map(|(i, c)| {
            let hex: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
            let txt: String = c
                .iter()
                .map(|b| {
                    if b.is_ascii_graphic() {
                        *b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            format!("{:08x}  {:<48} {txt}\n", i * 16, hex.join(" "))
        })
        .collect()
}

/// `SRC@LBA=DST@LBA+BLOCKS` (LBAs optional).
fn parse_copy(text: &str) -> anyhow::Result<fcsim_scenarios::XcopySegment> {
    let bad =
        || anyhow!("--copy `{text}`: expected SRC@LBA=DST@LBA+BLOCKS, e.g. arr1:0@0=arr2:0@0+2048");
    let (left, blocks) = text.rsplit_once('+').ok_or_else(bad)?;
    let (src, dst) = left.split_once('=').ok_or_else(bad)?;
    let side = |s: &str| -> anyhow::Result<(fcsim_scenarios::LuRef, u64)> {
        let (lu, lba) = s.split_once('@').unwrap_or((s, "0"));
        Ok((
            lu.parse().map_err(|_| bad())?,
            lba.parse().map_err(|_| bad())?,
        ))
    };
    let ((src, src_lba), (dst, dst_lba)) = (side(src)?, side(dst)?);
    Ok(fcsim_scenarios::XcopySegment {
        src,
        src_lba,
        dst,
        dst_lba,
        blocks: blocks.parse().map_err(|_| bad())?,
    })
}

pub fn host(control_addr: &str, host: &str, cmd: HostCmd) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let net = fcsim_fabric::runtime::Net::Tokio;
        let ch: Channel = net.channel(control_addr).await.with_context(|| format!("is a fabric running? {control_addr}"))?;
        let mut control = ControlClient::new(ch);
        let nodes = control.list_nodes(pb::ListNodesRequest {}).await?.into_inner().nodes;
        let n = nodes
            .iter()
            .find(|n| n.name == host && n.kind == "host")
            .ok_or_else(|| anyhow!("no host named `{host}`"))?;
        let mut h = HostClient::new(net.channel(&n.address).await?);
        match cmd {
            HostCmd::Devices => {
                for d in h.list_devices(pb::ListDevicesRequest {}).await?.into_inner().devices {
                    println!(
                        "{:<10} {}  {} {}  {} blocks × {} B  3PC={}  functions=[{}]",
                        d.name, d.naa, d.vendor, d.product, d.blocks, d.block_bytes, d.third_party_copy, d.functions.join(",")
                    );
                    for p in d.paths {
                        println!("    port {} → {} ({}) LUN {}  {}", p.port, p.target_fc_id, p.target_wwpn, p.lun, p.state);
                    }
                }
            }
            HostCmd::Inquiry { device, vpd } => {
                let r = h.inquiry(pb::InquiryRequest { device, vpd_page: vpd }).await?.into_inner().result.unwrap_or_default();
                println!("{}", result_line(&r));
                print!("{}", hexdump(&r.data));
            }
            HostCmd::Readcap { device } => {
                let r = h.read_capacity(pb::ReadCapacityRequest { device }).await?.into_inner();
                println!("{} blocks of {} bytes ({})", r.blocks, r.block_bytes, result_line(&r.result.unwrap_or_default()));
            }
            HostCmd::Read { device, lba, blocks } => {
                let r = h.read(pb::ReadRequest { device, lba, blocks }).await?.into_inner().result.unwrap_or_default();
                println!("{}", result_line(&r));
                print!("{}", hexdump(&r.data));
            }
            HostCmd::Write { device, lba, blocks, fill, block_bytes, fua } => {
                let data = vec![fill; (blocks as usize) * (block_bytes as usize)];
                let r = h.write(pb::WriteRequest { device, lba, data: data.into(), fua }).await?.into_inner();
                println!("write {}: {}", r.write_id, result_line(&r.result.unwrap_or_default()));
            }
            HostCmd::Xcopy { device, copies, list_id } => {
                let segments = copies.iter().map(|c| parse_copy(c)).collect::<anyhow::Result<Vec<_>>>()?;
                let json = control.get_topology(pb::GetTopologyRequest {}).await?.into_inner().json;
                let topo: fcsim_scenarios::Topology = serde_json::from_str(&json)?;
                let parameter_list = fcsim_scenarios::storage::xcopy_parameter_list(&topo, list_id, &segments)
                    .map_err(|e| anyhow!(e))?;
                let r = h.extended_copy(pb::ExtendedCopyRequest { device, parameter_list }).await?.into_inner();
                println!("EXTENDED COPY: {}", result_line(&r));
                if r.status != 0 || !r.transport_error.is_empty() {
                    return Ok(ExitCode::FAILURE);
                }
            }
            HostCmd::Workload { device, pattern, mix, read_percent, block_bytes, qd, count, duration_ms, verify, seed } => {
                if count.is_none() == duration_ms.is_none() {
                    bail!("give exactly one of --count and --duration-ms");
                }
                let req = pb::WorkloadRequest {
                    name: "cli".into(),
                    device,
                    pattern,
                    mix,
                    read_percent,
                    block_bytes,
                    qd,
                    count: count.unwrap_or(0),
                    duration_us: duration_ms.unwrap_or(0) * 1000,
                    verify,
                    seed,
                };
                let mut stream = h.run_workload(req).await?.into_inner();
                let bar = std::io::stdout().is_terminal().then(|| {
                    let b = indicatif::ProgressBar::new(count.unwrap_or(0));
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} I/Os {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    b
                });
                let mut last = pb::WorkloadProgress::default();
                while let Some(p) = stream.next().await {
                    last = p?;
                    if let Some(b) = &bar {
                        b.set_position(last.issued);
                        b.set_message(format!("{:.0} IOPS, p99 {}µs, {} errors", last.iops, last.p99_latency_us, last.errors));
                    }
                }
                if let Some(b) = bar {
                    b.finish();
                }
                println!(
                    "{} I/Os ({} reads, {} writes), {} errors, {} verify failures, {:.0} IOPS, p50 {}µs, p99 {}µs",
                    last.completed, last.reads, last.writes, last.errors, last.verify_failures, last.iops, last.p50_latency_us, last.p99_latency_us
                );
                if last.errors + last.verify_failures > 0 {
                    println!("first error: {}", last.first_error);
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
