//! The relay node end to end in the deterministic simulation (seed 002): a primary
//! stand-in sends RELAY RECORD commands through the fabric to relay nodes, which
//! acknowledge them early and forward them to a standby stand-in.
//!
//! - `relay_node_serves_scsi_and_relays_records`: LU 0 (INQUIRY, REPORT LUNS, TEST
//!   UNIT READY, bad CDBs with sense), early acknowledgement and forwarding, resends
//!   while the standby does not answer, a volatile relay's crash losing its records,
//!   a non-volatile relay keeping them across a crash and forwarding them on the
//!   standby's forward request, BUSY when full, the takeover's fence (RESERVATION
//!   CONFLICT, held records dropped), a standby's RESERVATION CONFLICT dropping the
//!   record, RELAY CONTROL and RECEIVE RELAY STATUS as SCSI commands, and the relay's
//!   `Copy` service (`RelayStatus`, `RelayControl`, UNIMPLEMENTED pair RPCs).
//! - `a_non_volatile_relay_forwards_its_log_once_the_destination_is_reachable_again`:
//!   the cable to the standby's switch cut while relays hold records, a crash and
//!   restart while it is cut, the cable back: the log is forwarded, a relay that did not
//!   crash forwards too, a volatile relay lost its records; the standby's round trip is
//!   longer than the resend interval.
//! - `scenario_steps_reach_the_relay`: `relay_control` and `relay_state` in a scenario.
//! - `a_crash_keeps_a_non_volatile_relays_log_in_every_mode`: crash and restart in the
//!   simulation, live and as processes (the file log).
//! - `fcsim_copy_relay_commands`: `fcsim copy relay-status|relay-fence|relay-forward`
//!   against `fcsim up`.
//!
//! The two stand-ins are end nodes of the topology (listed as hosts so the fabric cables
//! them) whose FC-4 layer is defined here: the primary's relay mode and the standby's
//! RELAY RECORD handling belong to the array.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fcsim_devices::fcp::{FcpInitiator, FcpTarget, IoRequest, IoResult, Tag};
use fcsim_devices::relay::wire::{self, RelayState};
use fcsim_devices::relay::{Header, Kind, RecordId, SourceId};
use fcsim_fabric::endnode::{Fc4Ctx, Fc4Layer, run_end_node_with};
use fcsim_fabric::frame::Frame;
use fcsim_fabric::nport::{LoginOutcome, LoginTarget, LoginTicket, NPortEvent, NPortState, Role};
use fcsim_fabric::runtime::sim::{self, SimCommand, SimConfig, SimControl};
use fcsim_fabric::runtime::{FabricClock, Net};
use fcsim_fabric::{FcId, Wwpn};
use fcsim_proto::v1 as pb;
use fcsim_scenarios::launch::{Addressing, NodeRole, NodeSpec, plan};
use tokio::sync::{mpsc, oneshot};

#[allow(dead_code)]
mod common;

type IoReply = oneshot::Sender<Result<IoResult, String>>;

/// A command for the primary stand-in: send `req` to port `wwpn`.
struct Io {
    wwpn: Wwpn,
    req: IoRequest,
    reply: IoReply,
}

/// The primary stand-in: an FCP initiator that logs in to a port by WWPN on first use.
#[derive(Default)]
struct Primary {
    init: FcpInitiator,
    logins: BTreeMap<Wwpn, FcId>,
    pending: BTreeMap<LoginTicket, Wwpn>,
    queued: Vec<Io>,
    inflight: BTreeMap<Tag, (Wwpn, IoReply)>,
}

impl Primary {
    fn send(&mut self, ctx: &mut Fc4Ctx<'_>, io: Io) {
        let Some(np) = ctx.ports.get_mut(&0) else {
            return;
        };
        let (Some(s_id), true) = (np.fc_id(), np.state() == NPortState::Online) else {
            let _ = io.reply.send(Err("primary offline".into()));
            return;
        };
        match self.logins.get(&io.wwpn) {
            Some(d_id) => {
                let tag = self.init.submit(0, s_id, *d_id, io.req, ctx.now);
                self.inflight.insert(tag, (io.wwpn, io.reply));
            }
            None => {
                let t = np.login_to(LoginTarget::Wwpn(io.wwpn), ctx.now);
                self.pending.insert(t, io.wwpn);
                self.queued.push(io);
            }
        }
        self.flush(ctx);
    }

    fn flush(&mut self, ctx: &mut Fc4Ctx<'_>) {
        while let Some((tag, r)) = self.init.poll_completion() {
            if let Some((w, reply)) = self.inflight.remove(&tag) {
                if r.transport.is_some() {
                    // The target may have restarted and forgotten us: log in again.
                    self.logins.remove(&w);
                }
                let _ = reply.send(Ok(r));
            }
        }
        while let Some((p, f)) = self.init.poll_transmit() {
            ctx.send(p, &f);
        }
    }
}

impl Fc4Layer for Primary {
    type Admin = Io;

    fn on_frame(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, frame: Frame) {
        self.init.handle_frame(port, &frame);
        self.flush(ctx);
    }

    fn on_nport_event(&mut self, ctx: &mut Fc4Ctx<'_>, _port: u32, ev: &NPortEvent) {
        if let NPortEvent::LoginDone { ticket, outcome } = ev
            && let Some(w) = self.pending.remove(ticket)
        {
            let (ready, rest): (Vec<Io>, Vec<Io>) =
                self.queued.drain(..).partition(|io| io.wwpn == w);
            self.queued = rest;
            match outcome {
                LoginOutcome::Accepted { fc_id } => {
                    self.logins.insert(w, *fc_id);
                    for io in ready {
                        self.send(ctx, io);
                    }
                }
                other => {
                    for io in ready {
                        let _ = io.reply.send(Err(format!("login to {w}: {other:?}")));
                    }
                }
            }
        }
    }

    fn on_admin(&mut self, ctx: &mut Fc4Ctx<'_>, io: Io) {
        self.send(ctx, io);
    }

    fn on_timeout(&mut self, ctx: &mut Fc4Ctx<'_>) {
        self.init.handle_timeout(ctx.now);
        self.flush(ctx);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        self.init.poll_timeout()
    }
}

/// What the standby stand-in answers a RELAY RECORD with; `None`: nothing.
#[derive(Default)]
struct SinkState {
    answer: Option<u8>,
    /// Every RELAY RECORD received: (source, seq, data).
    received: Vec<(u32, u64, Bytes)>,
}

/// The standby stand-in: an FCP target taking RELAY RECORD commands.
struct Standby {
    fcp: FcpTarget,
    state: Arc<Mutex<SinkState>>,
}

impl Fc4Layer for Standby {
    type Admin = std::convert::Infallible;

    fn on_frame(&mut self, ctx: &mut Fc4Ctx<'_>, port: u32, frame: Frame) {
        self.fcp.handle_frame(port, &frame);
        while let Some(cmd) = self.fcp.poll_command() {
            let logged_in = ctx
                .ports
                .get(&cmd.port)
                .is_some_and(|np| np.logged_in().contains_key(&cmd.initiator));
            if !logged_in {
                continue;
            }
            let mut st = self.state.lock().expect("sink");
            match wire::parse(&cmd.cdb) {
                Ok(wire::Command::Record { header, .. }) => {
                    st.received
                        .push((header.id.source.0, header.id.seq, cmd.data_out.clone()));
                    if let Some(status) = st.answer {
                        self.fcp.complete(&cmd, status, Bytes::new(), Bytes::new());
                    }
                }
                _ => self.fcp.complete(&cmd, 0, Bytes::new(), Bytes::new()),
            }
        }
        while let Some((p, f)) = self.fcp.poll_transmit() {
            ctx.send(p, &f);
        }
    }

    fn on_admin(&mut self, _ctx: &mut Fc4Ctx<'_>, req: Self::Admin) {
        match req {}
    }
}

const TOPOLOGY: &str = r#"{
  "name": "relay-node",
  "topology": {
    "sites": [{"name": "tokyo", "zone": "kanto"}, {"name": "nagoya", "zone": "chubu"},
              {"name": "osaka", "zone": "kansai"}],
    "switches": [{"name": "sw1", "site": "nagoya", "ports": 16}],
    "hosts": [{"name": "p1", "site": "tokyo", "ports": 1}, {"name": "s1", "site": "osaka", "ports": 1}],
    "relays": [
      {"name": "r1", "site": "nagoya", "resend_after": "20ms"},
      {"name": "r2", "site": "nagoya", "durability": "non_volatile", "schedule": {"mode": "deferred"},
       "resend_after": "20ms"},
      {"name": "r3", "site": "nagoya", "capacity_bytes": 8192, "resend_after": "20ms"},
      {"name": "r4", "site": "nagoya", "durability": "non_volatile",
       "schedule": {"mode": "deferred", "traffic_at_most": 100000}, "resend_after": "20ms"},
      {"name": "r5", "site": "nagoya", "durability": "non_volatile", "resend_after": "20ms"}
    ],
    "links": [
      {"a": "p1/0", "b": "sw1/0", "km": 10}, {"a": "s1/0", "b": "sw1/1", "km": 300},
      {"a": "r1/0", "b": "sw1/2"}, {"a": "r2/0", "b": "sw1/3"}, {"a": "r3/0", "b": "sw1/4"},
      {"a": "r4/0", "b": "sw1/5"}, {"a": "r5/0", "b": "sw1/6"}
    ]
  }
}"#;

fn header(source: u32, seq: u64, len: usize) -> Header {
    Header {
        id: RecordId {
            source: SourceId(source),
            seq,
        },
        kind: Kind::Write { lun: 0, lba: seq },
        len: len as u64,
    }
}

/// The test's hands: the primary stand-in's channel, the sink, names, the sim.
struct Rig {
    primary: mpsc::UnboundedSender<Io>,
    sink: Arc<Mutex<SinkState>>,
    wwpn: BTreeMap<String, Wwpn>,
    control: SimControl,
}

impl Rig {
    async fn io(&self, node: &str, req: IoRequest) -> Result<IoResult, String> {
        let (reply, rx) = oneshot::channel();
        self.primary
            .send(Io {
                wwpn: self.wwpn[node],
                req,
                reply,
            })
            .map_err(|_| "primary gone".to_string())?;
        rx.await.map_err(|_| "no reply".to_string())?
    }

    /// `req` to `node` until it gets a SCSI status (the fabric may still be coming up).
    async fn scsi(&self, node: &str, req: IoRequest) -> IoResult {
        for _ in 0..200 {
            if let Ok(r) = self.io(node, req.clone()).await
                && r.transport.is_none()
            {
                return r;
            }
            sleep(Duration::from_millis(5)).await;
        }
        panic!("{node} never answered");
    }

    async fn record(&self, relay: &str, source: u32, seq: u64, data: &Bytes) -> u8 {
        let h = header(source, seq, data.len());
        let req = IoRequest {
            lun: 0,
            cdb: Bytes::copy_from_slice(&wire::relay_record(&h, self.wwpn["s1"].0.0)),
            data_out: data.clone(),
            data_in_len: 0,
        };
        self.scsi(relay, req).await.status
    }

    async fn status(&self, relay: &str) -> pb::RelayStatusResponse {
        copy(relay)
            .await
            .relay_status(pb::RelayStatusRequest {})
            .await
            .expect("relay status")
            .into_inner()
    }

    fn answer(&self, a: Option<u8>) {
        self.sink.lock().expect("sink").answer = a;
    }

    fn received(&self, source: u32, seq: u64) -> usize {
        self.sink
            .lock()
            .expect("sink")
            .received
            .iter()
            .filter(|(s, q, _)| *s == source && *q == seq)
            .count()
    }

    /// Enables or disables port `port` of node `node` (a disabled port drops its cable).
    async fn set_port(&self, node: &str, port: u32, enabled: bool) {
        let mut c = pb::link_client::LinkClient::new(
            Net::Sim
                .channel(&format!("{node}:7000"))
                .await
                .expect("channel"),
        );
        c.set_port(pb::SetPortRequest { port, enabled })
            .await
            .expect("set port");
    }

    async fn bounce(&self, node: &str) {
        self.control.apply(SimCommand::Crash(node.into())).await;
        self.control.apply(SimCommand::Restart(node.into())).await;
    }
}

/// Fabric time passes (turmoil's clock; a host's tokio timers may run ahead of it).
async fn sleep(d: Duration) {
    FabricClock::Sim.sleep(d).await;
}

async fn copy(node: &str) -> pb::copy_client::CopyClient<tonic::transport::Channel> {
    for _ in 0..100 {
        if let Ok(ch) = Net::Sim.channel(&format!("{node}:7000")).await {
            return pb::copy_client::CopyClient::new(ch);
        }
        sleep(Duration::from_millis(1)).await;
    }
    panic!("no channel to {node}");
}

fn cdb(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

fn plain(cdb: Bytes, data_in_len: u32) -> IoRequest {
    IoRequest {
        lun: 0,
        cdb,
        data_out: Bytes::new(),
        data_in_len,
    }
}

/// Runs `body` in a simulation of [`TOPOLOGY`] with the stand-ins in place.
fn simulate<F, Fut>(body: F)
where
    F: FnOnce(Rig) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    simulate_in(TOPOLOGY, body);
}

/// Runs `body` in a simulation of `topology` (with hosts `p1` and `s1`) with the
/// stand-ins in place.
fn simulate_in<F, Fut>(topology: &str, body: F)
where
    F: FnOnce(Rig) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let s = fcsim_scenarios::parse(topology, "relay-node.json").unwrap_or_else(|d| panic!("{d}"));
    let specs = plan(&s, &Addressing::Sim, None).expect("plan");
    let wwpn: BTreeMap<String, Wwpn> = s
        .topology
        .nodes()
        .filter_map(|n| Some((n.name.to_string(), *n.port_wwpns?.first()?)))
        .collect();
    let sink = Arc::new(Mutex::new(SinkState {
        answer: Some(0),
        ..SinkState::default()
    }));
    let (primary_tx, primary_rx) = mpsc::unbounded_channel();
    let primary_rx = Arc::new(Mutex::new(Some(primary_rx)));
    type Factory = Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>;
    let hosts: Vec<(String, Factory)> = specs
        .into_iter()
        .map(|spec: NodeSpec| {
            let name = spec.name.clone();
            let factory: Factory = match (&spec.role, name.as_str()) {
                (NodeRole::Host(h), "p1") => {
                    let mut node = h.node.clone();
                    node.role = Role::Both;
                    let rx = primary_rx.clone();
                    Box::new(move || {
                        let node = node.clone();
                        let rx = rx.lock().expect("rx").take();
                        Box::pin(async move {
                            let Some(rx) = rx else { return };
                            let _ = run_end_node_with(
                                node,
                                Net::Sim,
                                FabricClock::Sim,
                                Primary::default(),
                                None,
                                rx,
                                &[],
                            )
                            .await;
                        })
                    })
                }
                (NodeRole::Host(h), "s1") => {
                    let mut node = h.node.clone();
                    node.role = Role::Both;
                    let state = sink.clone();
                    Box::new(move || {
                        let layer = Standby {
                            fcp: FcpTarget::new(),
                            state: state.clone(),
                        };
                        let node = node.clone();
                        Box::pin(async move {
                            let (_tx, rx) = mpsc::unbounded_channel();
                            let _ = run_end_node_with(
                                node,
                                Net::Sim,
                                FabricClock::Sim,
                                layer,
                                None,
                                rx,
                                &[],
                            )
                            .await;
                        })
                    })
                }
                _ => Box::new(move || Box::pin(spec.clone().run(Net::Sim))),
            };
            (name, factory)
        })
        .collect();
    let cfg = SimConfig {
        seed: 7,
        tick: Duration::from_micros(10),
        limit: Duration::from_secs(60),
    };
    sim::run(&cfg, hosts, move |control| async move {
        body(Rig {
            primary: primary_tx,
            sink,
            wwpn,
            control,
        })
        .await;
    })
    .expect("simulation");
}

#[test]
fn relay_node_serves_scsi_and_relays_records() {
    simulate(|rig| async move {
        // ---- LU 0 (SPC-5) ----
        let tur = rig.scsi("r1", plain(cdb(&[0; 6]), 0)).await;
        assert_eq!(tur.status, 0, "TEST UNIT READY");
        let inq = rig
            .scsi("r1", plain(cdb(&[0x12, 0, 0, 0, 36, 0]), 36))
            .await;
        assert_eq!((inq.status, inq.data_in.len()), (0, 36));
        assert_eq!(inq.data_in[0], 0x03, "peripheral type: processor");
        let luns = rig
            .scsi(
                "r1",
                plain(cdb(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0]), 64),
            )
            .await;
        assert_eq!(&luns.data_in[..4], &[0, 0, 0, 8], "one LUN");
        // READ(10) is no relay command: ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
        let bad = rig
            .scsi("r1", plain(cdb(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), 512))
            .await;
        assert_eq!(bad.status, 2);
        assert_eq!((bad.sense[2] & 0x0F, bad.sense[12]), (0x05, 0x20));
        // An unknown D6h service action: INVALID FIELD IN CDB.
        let mut sa = [0u8; 16];
        sa[0] = 0xD6;
        sa[1] = 0x1F;
        let bad = rig.scsi("r1", plain(cdb(&sa), 0)).await;
        assert_eq!((bad.status, bad.sense[12]), (2, 0x24));
        // A LUN with no LU.
        let mut req = plain(cdb(&[0; 6]), 0);
        req.lun = 3;
        let bad = rig.scsi("r1", req).await;
        assert_eq!((bad.status, bad.sense[12]), (2, 0x25));

        // ---- early acknowledgement and forwarding ----
        let data = Bytes::from(vec![0xA5; 4096]);
        assert_eq!(rig.record("r1", 1, 1, &data).await, 0, "GOOD once held");
        sleep(Duration::from_millis(20)).await;
        assert_eq!(rig.received(1, 1), 1);
        assert_eq!(
            rig.sink.lock().expect("sink").received[0].2,
            data,
            "the standby got the record's bytes"
        );
        let s = rig.status("r1").await;
        assert_eq!((s.acked, s.forwarded, s.held_records), (1, 1, 0));
        assert_eq!(s.durability, "volatile");

        // A restart point with no application state: a zero-length record.
        let rp = Header {
            kind: Kind::RestartPoint { point: 1 },
            ..header(9, 1, 0)
        };
        let req = IoRequest {
            lun: 0,
            cdb: cdb(&wire::relay_record(&rp, rig.wwpn["s1"].0.0)),
            data_out: Bytes::new(),
            data_in_len: 0,
        };
        assert_eq!(rig.scsi("r1", req).await.status, 0);
        sleep(Duration::from_millis(20)).await;
        assert_eq!(rig.received(9, 1), 1);
        assert_eq!(rig.status("r1").await.forwarded, 2);

        // The standby does not answer: the relay acknowledged anyway and resends.
        rig.answer(None);
        assert_eq!(rig.record("r1", 1, 2, &data).await, 0);
        sleep(Duration::from_millis(75)).await;
        let s = rig.status("r1").await;
        assert_eq!((s.held_records, s.held_bytes), (1, 4096));
        assert!(s.resent >= 2, "resent {}", s.resent);
        assert!(rig.received(1, 2) >= 3);
        rig.answer(Some(0));
        sleep(Duration::from_millis(60)).await;
        let s = rig.status("r1").await;
        assert_eq!((s.held_records, s.forwarded), (0, 3));

        // ---- a volatile relay's crash loses what it held ----
        rig.answer(None);
        assert_eq!(rig.record("r1", 1, 3, &data).await, 0);
        assert_eq!(rig.status("r1").await.held_records, 1);
        rig.bounce("r1").await;
        let s = rig.status("r1").await;
        assert_eq!((s.held_records, s.acked), (0, 0), "lost with the node");

        // ---- a non-volatile, deferred relay keeps them, and forwards on request ----
        rig.answer(Some(0));
        assert_eq!(rig.record("r2", 1, 4, &data).await, 0);
        sleep(Duration::from_millis(30)).await;
        assert_eq!(rig.received(1, 4), 0, "deferred: held until a trigger");
        rig.bounce("r2").await;
        let s = rig.status("r2").await;
        assert_eq!((s.held_records, s.durability.as_str()), (1, "non_volatile"));
        // RELAY CONTROL forward, as the standby sends it: GOOD once drained.
        let json = serde_json::to_vec(&wire::RelayControl::Forward).expect("json");
        let fwd = IoRequest {
            lun: 0,
            cdb: cdb(&wire::relay_control(
                u32::try_from(json.len()).expect("len"),
            )),
            data_out: Bytes::from(json),
            data_in_len: 0,
        };
        assert_eq!(rig.scsi("r2", fwd).await.status, 0);
        assert_eq!(rig.received(1, 4), 1);
        let s = rig.status("r2").await;
        assert_eq!((s.held_records, s.forwarded), (0, 1));

        // ---- a non-volatile relay forwards what it kept as soon as it is back ----
        rig.answer(None);
        assert_eq!(rig.record("r5", 1, 30, &data).await, 0);
        rig.bounce("r5").await;
        rig.answer(Some(0));
        let before = rig.received(1, 30);
        sleep(Duration::from_millis(30)).await;
        assert_eq!(
            rig.received(1, 30),
            before + 1,
            "forwarded after the restart"
        );
        let s = rig.status("r5").await;
        assert_eq!((s.held_records, s.forwarded, s.acked), (0, 1, 0));

        // ---- deferred on traffic: held while the relay's egress is above 100 kB/s ----
        rig.answer(Some(0));
        assert_eq!(rig.record("r4", 1, 20, &data).await, 0);
        sleep(Duration::from_millis(15)).await;
        assert_eq!(rig.received(1, 20), 1, "an idle link: forwarded at once");
        // The last window carried that record (about 4 kB in 15 ms, 270 kB/s).
        assert_eq!(rig.record("r4", 1, 21, &data).await, 0);
        assert_eq!(
            rig.status("r4").await.held_records,
            1,
            "held: the link is busy"
        );
        assert_eq!(rig.received(1, 21), 0);
        // The next window saw only the acknowledgement: released.
        sleep(Duration::from_millis(40)).await;
        assert_eq!(rig.received(1, 21), 1);
        assert_eq!(rig.status("r4").await.held_records, 0);

        // ---- BUSY when full ----
        rig.answer(None);
        assert_eq!(rig.record("r3", 1, 10, &data).await, 0);
        assert_eq!(rig.record("r3", 2, 10, &data).await, 0);
        assert_eq!(rig.record("r3", 1, 11, &data).await, 0x08, "BUSY");
        let s = rig.status("r3").await;
        assert_eq!((s.busy, s.held_records, s.held_bytes), (1, 2, 8192));

        // ---- the takeover's fence, through the Copy service ----
        let mut c = copy("r3").await;
        let s = c
            .relay_control(pb::RelayControlRequest {
                op: "fence".into(),
                sources: vec![1],
            })
            .await
            .expect("fence")
            .into_inner();
        assert_eq!(
            (s.fenced.clone(), s.dropped, s.held_records),
            (vec![1], 1, 1)
        );
        assert_eq!(
            rig.record("r3", 1, 11, &data).await,
            0x18,
            "RESERVATION CONFLICT"
        );
        assert_eq!(rig.record("r3", 3, 1, &data).await, 0, "other sources pass");
        let bad = c
            .relay_control(pb::RelayControlRequest {
                op: "fence".into(),
                sources: vec![],
            })
            .await
            .expect_err("no sources");
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(bad.message().starts_with("sources"));
        let none = c
            .pair_status(pb::PairRequest::default())
            .await
            .expect_err("no pairs");
        assert_eq!(none.code(), tonic::Code::Unimplemented);
        assert!(none.message().contains("relay r3 runs no copy pairs"));

        // ---- the standby fenced the source: the relay drops the record ----
        rig.answer(Some(0x18));
        assert_eq!(rig.record("r1", 2, 1, &data).await, 0);
        sleep(Duration::from_millis(20)).await;
        let s = rig.status("r1").await;
        assert_eq!((s.held_records, s.dropped, s.forwarded), (0, 1, 0));

        // ---- RELAY CONTROL fence and RECEIVE RELAY STATUS as SCSI ----
        let json =
            serde_json::to_vec(&wire::RelayControl::Fence { sources: vec![5] }).expect("json");
        let fence = IoRequest {
            lun: 0,
            cdb: cdb(&wire::relay_control(
                u32::try_from(json.len()).expect("len"),
            )),
            data_out: Bytes::from(json),
            data_in_len: 0,
        };
        assert_eq!(rig.scsi("r1", fence).await.status, 0);
        let st = rig
            .scsi(
                "r1",
                plain(cdb(&wire::receive_relay_status()), wire::STATUS_ALLOCATION),
            )
            .await;
        assert_eq!(st.status, 0);
        let state: RelayState = serde_json::from_slice(&st.data_in).expect("JSON RelayState");
        assert_eq!((state.fenced, state.dropped), (vec![5], 1));
        // A malformed parameter list: INVALID FIELD IN PARAMETER LIST.
        let junk = IoRequest {
            lun: 0,
            cdb: cdb(&wire::relay_control(3)),
            data_out: Bytes::from_static(b"{x}"),
            data_in_len: 0,
        };
        let r = rig.scsi("r1", junk).await;
        assert_eq!((r.status, r.sense[12]), (2, 0x26));
        // A record whose DATA LENGTH disagrees with the data sent.
        let h = header(7, 1, 512);
        let short = IoRequest {
            lun: 0,
            cdb: cdb(&wire::relay_record(&h, rig.wwpn["s1"].0.0)),
            data_out: Bytes::from(vec![1; 256]),
            data_in_len: 0,
        };
        let r = rig.scsi("r1", short).await;
        assert_eq!((r.status, r.sense[12]), (2, 0x24));
        // Arbitrary CDBs (many D6h) never take the relay down: each gets a status.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..100 {
            let len = [6, 10, 12, 16, 32, 48][usize::try_from(next() % 6).unwrap_or(0)];
            let mut c: Vec<u8> = (0..len).map(|_| (next() & 0xFF) as u8).collect();
            if next() % 2 == 0 {
                c[0] = 0xD6;
                c[1] = (next() % 12) as u8;
            }
            let data_out = Bytes::from(vec![0x5A; (next() % 3) as usize * 512]);
            let req = IoRequest {
                lun: 0,
                cdb: Bytes::from(c),
                data_out,
                data_in_len: if next() % 2 == 0 { 512 } else { 0 },
            };
            let r = rig.scsi("r3", req).await;
            assert!([0x00, 0x02, 0x08, 0x18].contains(&r.status), "{}", r.status);
        }

        // A record bound for the relay itself: INVALID FIELD IN CDB at DESTINATION.
        let h = header(7, 2, 0);
        let to_self = IoRequest {
            lun: 0,
            cdb: cdb(&wire::relay_record(&h, rig.wwpn["r1"].0.0)),
            data_out: Bytes::new(),
            data_in_len: 0,
        };
        let r = rig.scsi("r1", to_self).await;
        assert_eq!((r.status, r.sense[12]), (2, 0x24));
        assert_eq!(
            (r.sense[15] & 0x80, r.sense[16], r.sense[17]),
            (0x80, 0, 40)
        );
    });
}

/// Two switches: the relays and the primary on sw1, the standby behind a 520 km ISL on
/// sw2: a round trip (5.2 ms) longer than the relays' resend interval (5 ms).
const TWO_SWITCHES: &str = r#"{
  "name": "relay-node-isl",
  "topology": {
    "sites": [{"name": "tokyo", "zone": "kanto"}, {"name": "chiba", "zone": "boso"},
              {"name": "osaka", "zone": "kansai"}],
    "switches": [{"name": "sw1", "site": "chiba", "domain": 1, "ports": 8},
                 {"name": "sw2", "site": "osaka", "domain": 2, "ports": 8}],
    "hosts": [{"name": "p1", "site": "tokyo", "ports": 1}, {"name": "s1", "site": "osaka", "ports": 1}],
    "relays": [
      {"name": "rn", "site": "chiba", "durability": "non_volatile", "resend_after": "5ms"},
      {"name": "rv", "site": "chiba", "resend_after": "5ms"},
      {"name": "rw", "site": "chiba", "resend_after": "5ms"}
    ],
    "links": [
      {"a": "p1/0", "b": "sw1/0", "km": 10}, {"a": "s1/0", "b": "sw2/0"},
      {"a": "sw1/7", "b": "sw2/7", "km": 520},
      {"a": "rn/0", "b": "sw1/1"}, {"a": "rv/0", "b": "sw1/2"}, {"a": "rw/0", "b": "sw1/3"}
    ]
  }
}"#;

/// The cable to the standby's switch is cut while relays hold acknowledged records
/// (their logins to the destination fail): a non-volatile relay that crashes and
/// restarts while it is still cut forwards every record of its log once the cable is
/// back; a relay that did not crash forwards what it held too; a volatile relay's
/// crash loses what it held. The standby's answers take longer than the resend
/// interval: a downstream exchange must outlive it (an exchange that timed out after
/// one interval never saw its GOOD, and dropped the destination's login each time, so
/// nothing was ever forwarded).
#[test]
fn a_non_volatile_relay_forwards_its_log_once_the_destination_is_reachable_again() {
    simulate_in(TWO_SWITCHES, |rig| async move {
        let data = Bytes::from(vec![0x5A; 512]);
        // The path works: each relay has logged in to the standby once.
        for (relay, seq) in [("rn", 1), ("rv", 300), ("rw", 200)] {
            assert_eq!(rig.record(relay, 1, seq, &data).await, 0);
        }
        sleep(Duration::from_millis(30)).await;
        for seq in [1, 300, 200] {
            assert!(rig.received(1, seq) >= 1, "record {seq} forwarded");
        }

        // ---- the cable between the switches is cut: records are held ----
        rig.set_port("sw1", 7, false).await;
        rig.set_port("sw2", 7, false).await;
        sleep(Duration::from_millis(20)).await;
        let held_nv: Vec<u64> = (2..=117).collect();
        for &seq in &held_nv {
            assert_eq!(rig.record("rn", 1, seq, &data).await, 0, "GOOD once held");
        }
        for seq in 301..=303 {
            assert_eq!(rig.record("rv", 1, seq, &data).await, 0);
        }
        for seq in 201..=203 {
            assert_eq!(rig.record("rw", 1, seq, &data).await, 0);
        }
        // Several resend intervals: the logins to the destination fail.
        sleep(Duration::from_millis(30)).await;
        let s = rig.status("rn").await;
        assert_eq!((s.held_records, s.forwarded), (116, 1));

        // ---- both crash and restart while the cable is still cut ----
        rig.bounce("rn").await;
        rig.bounce("rv").await;
        sleep(Duration::from_millis(2)).await;
        let s = rig.status("rn").await;
        assert_eq!((s.held_records, s.acked), (116, 0), "the log kept them");
        let s = rig.status("rv").await;
        assert_eq!((s.held_records, s.acked), (0, 0), "lost with the node");
        assert_eq!(rig.status("rw").await.held_records, 3);

        // ---- the cable is back: everything held reaches the standby ----
        rig.set_port("sw1", 7, true).await;
        rig.set_port("sw2", 7, true).await;
        let mut s = rig.status("rn").await;
        for _ in 0..60 {
            if s.held_records == 0 {
                break;
            }
            sleep(Duration::from_millis(5)).await;
            s = rig.status("rn").await;
        }
        assert_eq!(
            (s.held_records, s.forwarded),
            (0, 116),
            "the recovered log is forwarded: {s:?}"
        );
        for &seq in &held_nv {
            assert!(
                rig.received(1, seq) >= 1,
                "record {seq} reached the standby"
            );
        }
        let s = rig.status("rw").await;
        assert_eq!(
            (s.held_records, s.forwarded),
            (0, 4),
            "held without a crash, forwarded: {s:?}"
        );
        for seq in 201..=203 {
            assert!(
                rig.received(1, seq) >= 1,
                "record {seq} reached the standby"
            );
        }
        for seq in 301..=303 {
            assert_eq!(rig.received(1, seq), 0, "the volatile relay lost {seq}");
        }
        assert_eq!(rig.status("rv").await.held_records, 0);
    });
}

#[test]
fn scenario_steps_reach_the_relay() {
    let src = TOPOLOGY.replace(
        "\n  }\n}",
        r#"
  },
  "steps": [
    {"at": "5ms", "op": "relay_control", "relay": "r1", "control": "fence", "sources": [4, 2]},
    {"at": "6ms", "op": "relay_control", "relay": "r2", "control": "forward"},
    {"at": "7ms", "op": "check", "check": "relay_state", "relay": "r1", "held_records": 0, "fenced": [2, 4], "busy": 0},
    {"at": "7ms", "op": "check", "check": "relay_state", "relay": "r2", "fenced": [], "acked": 0}
  ]
}"#,
    );
    let s = fcsim_scenarios::parse(&src, "relay-steps.json").unwrap_or_else(|d| panic!("{d}"));
    let r =
        fcsim_scenarios::run_scenario(&s, &fcsim_scenarios::RunOptions::default()).expect("runs");
    assert!(r.passed, "{}", r.summary_table());
    assert_eq!(r.checks.len(), 2);
}

/// A fence is control state in the relay's log: a non-volatile relay keeps it across a
/// crash, a volatile one forgets it — in the simulation, live, and as processes (with
/// `--data-dir`, where the log is a file that outlives the SIGKILLed process).
#[test]
fn a_crash_keeps_a_non_volatile_relays_log_in_every_mode() {
    let src = TOPOLOGY.replace(
        "\n  }\n}",
        r#"
  },
  "steps": [
    {"at": "5ms", "op": "relay_control", "relay": "r1", "control": "fence", "sources": [4]},
    {"at": "5ms", "op": "relay_control", "relay": "r2", "control": "fence", "sources": [4]},
    {"at": "10ms", "op": "crash", "node": "r1"},
    {"at": "10ms", "op": "crash", "node": "r2"},
    {"at": "20ms", "op": "restart", "node": "r1"},
    {"at": "20ms", "op": "restart", "node": "r2"},
    {"at": "300ms", "op": "check", "check": "relay_state", "relay": "r1", "fenced": [], "held_records": 0},
    {"at": "300ms", "op": "check", "check": "relay_state", "relay": "r2", "fenced": [4]}
  ]
}"#,
    );
    let s = fcsim_scenarios::parse(&src, "relay-crash.json").unwrap_or_else(|d| panic!("{d}"));
    let dir = std::env::temp_dir().join(format!("fcsim-relay-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("data dir");
    let modes = [
        (fcsim_scenarios::Mode::Sim, None),
        (fcsim_scenarios::Mode::Live, None),
        (
            fcsim_scenarios::Mode::Processes {
                exe: env!("CARGO_BIN_EXE_fcsim").into(),
            },
            Some(dir.clone()),
        ),
    ];
    for (mode, data_dir) in modes {
        let name = mode.name();
        let opts = fcsim_scenarios::RunOptions {
            mode,
            data_dir,
            ..fcsim_scenarios::RunOptions::default()
        };
        let r = fcsim_scenarios::run_scenario(&s, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(r.passed, "{name}:\n{}\n{:?}", r.summary_table(), r.errors);
    }
    assert!(dir.join("r2.relaylog").exists(), "the file log");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `fcsim copy --control ADDR ARGS…`: (success, stdout, stderr).
fn fcsim_copy(addr: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fcsim"))
        .args(["copy", "--control", addr])
        .args(args)
        .output()
        .expect("run fcsim copy");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn fcsim_copy_relay_commands() {
    let dir = std::env::temp_dir().join(format!("fcsim-relay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("relays.json");
    std::fs::write(&file, TOPOLOGY).expect("write");
    let mut up = common::Up::start_path(&file);
    let addr = up.addr.clone();
    let mut out = String::new();
    for _ in 0..200 {
        if let Some(status) = up.child.try_wait().expect("poll fcsim up") {
            panic!("fcsim up exited: {status}");
        }
        let (ok, o, _) = fcsim_copy(&addr, &["relay-status", "--relay", "r2"]);
        if ok {
            out = o;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("r2"))
        .unwrap_or_else(|| panic!("no r2 row:\n{out}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1], "non_volatile", "{out}");
    assert_eq!(row[2], "0", "nothing held: {out}");
    let (ok, out, err) = fcsim_copy(
        &addr,
        &[
            "relay-fence",
            "--relay",
            "r1",
            "--source",
            "3",
            "--source",
            "1",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("r1") && l.trim_end().ends_with("1,3")),
        "{out}"
    );
    let (ok, out, err) = fcsim_copy(&addr, &["relay-forward", "--relay", "r2"]);
    assert!(
        ok && out.contains("forwarding everything held"),
        "{out}{err}"
    );
    // Not a relay: refused, naming what it is.
    let (ok, _, err) = fcsim_copy(&addr, &["relay-status", "--relay", "s1"]);
    assert!(!ok && err.contains("not a relay"), "{err}");
    let (ok, _, _) = fcsim_copy(&addr, &["relay-fence", "--relay", "r1"]);
    assert!(!ok, "a fence names a source");
    drop(up);
    let _ = std::fs::remove_dir_all(&dir);
}
