//! `fcsim up` as a user runs it: a live fabric in its own process, reached through the
//! Control endpoint with plain gRPC clients. Invalid arguments come back as
//! INVALID_ARGUMENT naming the field; faults change what the switches report.

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
