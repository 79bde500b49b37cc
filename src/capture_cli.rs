//! `fcsim ctl capture`: taps ports of a running fabric through `Link/Capture` and writes
//! what crosses them to a pcap file (LINKTYPE_FC_2) that Wireshark opens.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use fcsim_fabric::capture::{put_file_header, put_frame};
use fcsim_proto::v1 as pb;
use pb::control_client::ControlClient;
use pb::link_client::LinkClient;
use tokio_stream::{StreamExt, StreamMap};
use tonic::transport::Channel;

use crate::client::{channel, node_addr};

/// Captures `ports` (`SW:PORT`) into `out` for `duration`, or until Ctrl-C; returns the
/// summary line. The file exists (header only) before the first frame arrives.
pub async fn capture(
    control: &mut ControlClient<Channel>,
    ports: &[String],
    out: &Path,
    duration: Option<Duration>,
) -> anyhow::Result<String> {
    let mut by_node: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for p in ports {
        let p = fcsim_scenarios::capture::parse_port(p)?;
        by_node.entry(p.node).or_default().push(p.port);
    }
    let file = std::fs::File::create(out)
        .with_context(|| format!("cannot write the capture to {}", out.display()))?;
    let mut file = std::io::BufWriter::new(file);
    let mut buf = Vec::new();
    put_file_header(&mut buf);
    let mut streams = StreamMap::new();
    for (node, ports) in &by_node {
        let mut link = LinkClient::new(channel(&node_addr(control, node).await?).await?);
        let req = pb::CaptureRequest {
            ports: ports.clone(),
            from_start: false,
        };
        streams.insert(node.clone(), link.capture(req).await?.into_inner());
    }
    let tapped: Vec<String> = by_node
        .iter()
        .flat_map(|(n, ps)| ps.iter().map(move |p| format!("{n}/{p}")))
        .collect();
    match duration {
        Some(d) => println!("capturing on {} for {d:?}", tapped.join(", ")),
        None => println!("capturing on {} (Ctrl-C to stop)", tapped.join(", ")),
    }
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let (mut frames, mut records) = (0usize, 0usize);
    let write_err = || format!("cannot write the capture to {}", out.display());
    loop {
        tokio::select! {
            next = streams.next() => match next {
                Some((_, Ok(f))) => {
                    frames += 1;
                    records += put_frame(&mut buf, Duration::from_nanos(f.timestamp_ns), &f.fc2);
                    file.write_all(&buf).with_context(write_err)?;
                    buf.clear();
                }
                Some((node, Err(s))) => {
                    eprintln!("capture on {node} ended: {}", s.message());
                    streams.remove(&node);
                }
                None => break,
            },
            () = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    file.write_all(&buf).with_context(write_err)?;
    file.flush().with_context(write_err)?;
    Ok(format!(
        "captured {frames} frames ({records} pcap records) on {} to {}\n",
        tapped.join(", "),
        out.display()
    ))
}
