//! `fcsim up` as a user runs it: a live fabric in its own process, reached through the
//! Control endpoint with plain gRPC clients. Invalid arguments come back as
//! INVALID_ARGUMENT naming the field; faults change what the switches report. The
//! intelligent switch's `fcsim ctl tm|tf|vlus|map` commands, run as a user would.

use std::time::Duration;

use fcsim_proto::v1 as pb;
use pb::control_client::ControlClient;
use pb::switch_client::SwitchClient;
use tonic::Code;
use tonic::transport::Channel;

mod common;

async fn connect(addr: &str) -> Channel {
    for _ in 0..200 {
        if let Ok(c) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fcsim up never served {addr}");
}

async fn switch(control: &mut ControlClient<Channel>, name: &str) -> SwitchClient<Channel> {
    let nodes = control
        .list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let n = nodes.iter().find(|n| n.name == name).expect("node listed");
    SwitchClient::new(connect(&n.address).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_control_views_faults_and_rejects_bad_arguments() {
    let up = common::Up::start("fabric-basics.json");
    let addr = up.addr.clone();
    let mut control = ControlClient::new(connect(&addr).await);

    // Setup (wait until converged) has run before the endpoint answers.
    let status = control
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (status.mode.as_str(), status.nodes, status.nodes_alive),
        ("live", 8, 8)
    );

    let mut sw1 = switch(&mut control, "sw1").await;
    let ns = sw1
        .ns_show(pb::NsShowRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ns.entries.len(), 4, "two hosts and two arrays logged in");

    // Invalid arguments name the field and change nothing.
    let bad = sw1
        .ns_show(pb::NsShowRequest {
            as_wwpn: "zz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("as_wwpn"), "{}", bad.message());
    let bad = sw1
        .zone_activate(pb::ZoneActivateRequest {
            cfg_name: String::new(),
            zones: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("cfg_name"), "{}", bad.message());
    let crash_nobody = pb::FaultRequest {
        fault: Some(pb::fault_request::Fault::Crash(pb::NodeFault {
            node: "nosuch".into(),
        })),
    };
    let bad = control.inject_fault(crash_nobody).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("crash.node"), "{}", bad.message());
    let status = control
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.nodes_alive, 8);

    // A cut ISL reroutes: sw1 reaches sw2 the long way round.
    let routes =
        |r: pb::RouteShowResponse| r.routes.into_iter().find(|r| r.dest_domain == 2).unwrap();
    let before = routes(
        sw1.route_show(pb::RouteShowRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        before
            .next_hops
            .iter()
            .map(|h| h.neighbor_domain)
            .collect::<Vec<_>>(),
        vec![2]
    );
    let cut = pb::FaultRequest {
        fault: Some(pb::fault_request::Fault::LinkDown(pb::LinkFault {
            port: "sw1/15".into(),
        })),
    };
    control.inject_fault(cut).await.unwrap();
    let mut rerouted = false;
    for _ in 0..100 {
        let r = routes(
            sw1.route_show(pb::RouteShowRequest {})
                .await
                .unwrap()
                .into_inner(),
        );
        if r.next_hops.iter().all(|h| h.neighbor_domain == 4) {
            rerouted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rerouted, "sw1 still routes to domain 2 over the cut ISL");
}

/// Runs `fcsim ctl --control ADDR ARGS…` and returns (success, stdout, stderr).
fn ctl(addr: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fcsim"))
        .args(["ctl", "--control", addr])
        .args(args)
        .output()
        .expect("run fcsim ctl");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Runs `fcsim ctl` until `done` accepts its stdout (at most `tries` × 50 ms).
fn ctl_until(addr: &str, args: &[&str], tries: u32, done: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..tries {
        let (ok, out, err) = ctl(addr, args);
        if ok && done(&out) {
            return out;
        }
        last = format!("{out}{err}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "`fcsim ctl {}` never got there; last said:\n{last}",
        args.join(" ")
    );
}

/// The words of each table row whose first word is `first`.
fn rows<'a>(out: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first() == Some(&first))
        .collect()
}

/// Seed 003 Fig. 9(a) from the command line: TM in the patent's column order, TF after
/// discovery, and `ctl map` refusing an overlap (nothing changed) and taking a good one.
#[test]
fn ctl_shows_tm_tf_and_maps_virtual_lus() {
    let mut up = common::Up::start("vsw-fig6.json");
    let addr = up.addr.clone();
    let addr = addr.as_str();
    for _ in 0..200 {
        if let Some(status) = up.child.try_wait().unwrap() {
            panic!("fcsim up exited: {status}");
        }
        if ctl(addr, &["nodes"]).1.contains("sw1.ve") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tf = ctl_until(addr, &["tf", "sw1"], 100, |o| !rows(o, "arr1").is_empty());
    let head: Vec<&str> = tf.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        [
            "Device",
            "ID",
            "Port",
            "ID",
            "direct-backup",
            "volume-copy",
            "mirroring",
            "local-pair",
            "remote-sync",
            "remote-async",
            "Provenance",
            "Learned",
            "(ms)"
        ]
    );
    assert_eq!(rows(&tf, "arr1")[0][8], "discovered", "{tf}");

    let (ok, tm, err) = ctl(addr, &["tm", "sw1"]);
    assert!(ok, "{err}");
    let head = tm.lines().find(|l| l.starts_with("Vol ID")).expect(&tm);
    assert_eq!(
        head.split_whitespace().collect::<Vec<_>>().join(" "),
        "Vol ID BLK ADDR Device ID Port ID Vol ID BLK ADDR",
        "{tm}"
    );
    let alpha = rows(&tm, "alpha");
    let alpha_async = rows(&tm, "alpha-async");
    assert_eq!((alpha.len(), alpha_async.len()), (1, 1), "{tm}");
    let (a, b) = (&alpha[0], &alpha_async[0]);
    assert_eq!((a[1], a[2], a[5]), ("0-1023", "arr1", "1024-2047"), "{tm}");
    assert_eq!((b[1], b[2], b[5]), ("0-1023", "arr1", "0-1023"), "{tm}");
    assert_eq!(a[3], b[3], "both behind arr1's one port");
    assert_ne!(a[4], b[4], "alpha and alpha-async map different real LUs");

    let vlus = |expect: usize| {
        let (ok, out, err) = ctl(addr, &["vlus", "sw1"]);
        assert!(ok, "{err}");
        let luns: Vec<Vec<&str>> = out
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|w| w.first().is_some_and(|c| c.parse::<u32>().is_ok()))
            .map(|w| w[..2].to_vec())
            .collect();
        assert_eq!(luns.len(), expect, "{out}");
        out
    };
    let before = vlus(2);
    assert!(before.contains("0-1023 → arr1:1@0-1023"), "{before}");

    // Blocks 1500.. of arr1:0 already belong to alpha: refused, the field named, no change.
    let (ok, out, err) = ctl(
        addr,
        &[
            "map",
            "sw1",
            "--lun",
            "2",
            "--name",
            "beta",
            "--extent",
            "arr1:0@1500+100",
        ],
    );
    assert!(!ok, "an overlapping map succeeded: {out}");
    assert!(
        err.contains("InvalidArgument: extents") && err.contains("overlaps"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(vlus(2), before);

    let (ok, out, err) = ctl(
        addr,
        &[
            "map",
            "sw1",
            "--lun",
            "2",
            "--name",
            "beta",
            "--extent",
            "arr1:0@0+512",
            "--extent",
            "internal+256",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("0-511 → arr1:0@0-511, 512-767 → internal"),
        "{out}"
    );
    vlus(3);
    let (_, tm, _) = ctl(addr, &["tm", "sw1"]);
    let beta = rows(&tm, "beta");
    assert_eq!(beta.len(), 2, "{tm}");
    assert_eq!(
        (beta[1][1], beta[1][2], beta[1][3]),
        ("512-767", "sw1", "INTERNAL")
    );
}

/// Auto-mapping: every LU the engine discovers becomes a virtual LU, with no mapping
/// in the file.
#[test]
fn auto_map_presents_discovered_lus() {
    let up = common::Up::start("vsw-auto-map.json");
    let addr = up.addr.as_str();
    let tm = ctl_until(addr, &["tm", "sw1"], 200, |o| {
        rows(o, "arr1:0").len() == 1 && rows(o, "arr1:1").len() == 1
    });
    let a = &rows(&tm, "arr1:0")[0];
    let b = &rows(&tm, "arr1:1")[0];
    assert_eq!((a[1], a[2], a[5]), ("0-2047", "arr1", "0-2047"), "{tm}");
    assert_eq!((b[1], b[2], b[5]), ("0-1023", "arr1", "0-1023"), "{tm}");
}
