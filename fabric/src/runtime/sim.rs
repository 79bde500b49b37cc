//! The deterministic simulation harness, on turmoil: the whole fabric is one turmoil
//! host (one single-threaded runtime), the orchestrator is a turmoil client, and time
//! is turmoil's simulated clock. One root seed fixes every choice.
//!
//! **Nodes are crash domains, not hosts.** turmoil's cost per step grows with the cube
//! of its host count (it links every pair of hosts and walks every link for every
//! host), so nodes do not get a host each. The `fabric` host runs a supervisor that
//! starts every node's software in order (the order of `hosts`), each inside its own
//! [`Domain`]: the node's tasks, spawned through [`spawn`](super::domain::spawn), are
//! registered there. A crash aborts them all, the root too; their futures are dropped
//! in the same step, and with them the node's memory, its channel ends and its
//! in-process streams, which its peers see close. A restart calls the node's factory
//! again in a fresh domain. What outlives a node (files under a data directory, a
//! relay's NVRAM image) lives outside its tasks, as before.
//!
//! Crash and restart go through a [`SimControl`]: the orchestrator sends the command to
//! the supervisor, which applies it when the fabric host next runs (at the start of the
//! next step) and acknowledges.
//!
//! **Cables and gRPC are in-process.** Nothing crosses turmoil's network. A cable
//! between two nodes is a pair of channels (`PortHub`'s in-process cables), met through
//! the run's own [`LocalEnds`] table; a gRPC connection (the orchestrator's, and any
//! between nodes) is a duplex pipe to a listener in the run's [`SimListeners`] table.
//! [`run`] creates both tables and puts them in reach of its nodes ([`cables`],
//! [`listeners`]) for as long as it runs. It stays deterministic because turmoil steps
//! the fabric and the orchestrator on this one thread in a fixed order, and the
//! fabric's runtime runs its tasks in a fixed order: a frame sent by one node wakes
//! the receiving cable's reader, which holds the frame until its modelled arrival on
//! the simulated clock. A crashed node's channel ends close and the peers' readers see
//! the cable go down; a restarted node enters its ends again and its peers re-dial.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::domain::Domain;
use super::net::SimListeners;
use super::ports::LocalEnds;

/// What the nodes of one simulated run share: where their cables and their gRPC
/// listeners meet.
#[derive(Debug, Default)]
struct SimWorld {
    cables: Arc<LocalEnds>,
    listeners: Arc<SimListeners>,
}

thread_local! {
    /// The world of the run that this thread is stepping: every node and the
    /// orchestrator of a turmoil simulation run on the thread that steps it, and only
    /// while [`run`] does.
    static WORLD: RefCell<Option<Arc<SimWorld>>> = const { RefCell::new(None) };
}

/// The cable table of the simulated run the calling node belongs to; `None` outside
/// [`run`].
pub fn cables() -> Option<Arc<LocalEnds>> {
    WORLD.with(|w| w.borrow().as_ref().map(|w| w.cables.clone()))
}

/// The gRPC listeners of the simulated run the caller belongs to; `None` outside
/// [`run`].
pub fn listeners() -> Option<Arc<SimListeners>> {
    WORLD.with(|w| w.borrow().as_ref().map(|w| w.listeners.clone()))
}

/// Gives this thread a fresh world until dropped, then puts back the one before.
struct WorldScope {
    outer: Option<Arc<SimWorld>>,
}

impl WorldScope {
    fn enter() -> Self {
        let fresh = Some(Arc::new(SimWorld::default()));
        WorldScope {
            outer: WORLD.with(|w| w.replace(fresh)),
        }
    }
}

impl Drop for WorldScope {
    fn drop(&mut self) {
        let outer = self.outer.take();
        WORLD.with(|w| w.replace(outer));
    }
}

/// What the orchestrator may ask of the simulation.
#[derive(Debug, Clone)]
pub enum SimCommand {
    /// Kill the node: every task, stream, cable and byte of memory of it goes. A node
    /// already down stays down.
    Crash(String),
    /// Start the node's software again from its configuration (a running node is
    /// crashed first).
    Restart(String),
}

/// A command and its acknowledgement.
type Order = (SimCommand, oneshot::Sender<()>);

/// The orchestrator's handle on the simulation.
#[derive(Clone)]
pub struct SimControl {
    tx: mpsc::UnboundedSender<Order>,
}

impl SimControl {
    /// Applies `cmd` when the fabric next runs and waits until it is done.
    pub async fn apply(&self, cmd: SimCommand) {
        let (ack, done) = oneshot::channel();
        if self.tx.send((cmd, ack)).is_ok() {
            let _ = done.await;
        }
    }
}

/// Settings of one simulated run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Root seed: turmoil's RNG and every node's seed derive from it.
    pub seed: u64,
    /// Simulated time per step. Smaller is more precise and costs more wall time.
    pub tick: Duration,
    /// The run fails if the orchestrator has not finished by then.
    pub limit: Duration,
}

/// Errors of a simulated run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error("simulation stopped: {detail}")]
    Turmoil { detail: String },
    #[error("the orchestrator finished without a result")]
    NoResult,
}

/// A node the simulation runs: its name and a factory for its software, called again
/// on every restart.
pub type SimHost = (
    String,
    Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>>,
);

/// The fabric host's software: starts the nodes, then applies crash and restart
/// orders. Never finishes (turmoil would stop running the host).
async fn supervise(hosts: Vec<SimHost>, mut orders: mpsc::UnboundedReceiver<Order>) {
    let mut index = BTreeMap::new();
    let mut lives: Vec<Option<Domain>> = Vec::with_capacity(hosts.len());
    for (i, (name, _)) in hosts.iter().enumerate() {
        index.insert(name.clone(), i);
        lives.push(None);
    }
    let start = |i: usize, lives: &mut Vec<Option<Domain>>| {
        let (name, factory) = &hosts[i];
        let domain = Domain::new(name);
        let root = tokio::task::spawn_local(domain.scope(factory()));
        domain.adopt(root.abort_handle());
        lives[i] = Some(domain);
    };
    for i in 0..hosts.len() {
        start(i, &mut lives);
    }
    while let Some((cmd, ack)) = orders.recv().await {
        let (name, again) = match &cmd {
            SimCommand::Crash(n) => (n, false),
            SimCommand::Restart(n) => (n, true),
        };
        match index.get(name.as_str()) {
            Some(&i) => {
                if let Some(d) = lives[i].take() {
                    d.crash();
                }
                if again {
                    start(i, &mut lives);
                }
            }
            None => tracing::warn!(node = %name, "simulation: no such node"),
        }
        let _ = ack.send(());
    }
    std::future::pending::<()>().await;
}

/// Runs `hosts` and the orchestrator `client` in one deterministic simulation and
/// returns the orchestrator's result.
pub fn run<T, F, Fut>(cfg: &SimConfig, hosts: Vec<SimHost>, client: F) -> Result<T, SimError>
where
    T: 'static,
    F: FnOnce(SimControl) -> Fut,
    Fut: Future<Output = T> + 'static,
{
    // Before the hosts: turmoil starts a host's software as soon as it is added. The
    // scope outlives `sim` (declared first, dropped last).
    let _world = WorldScope::enter();
    let mut sim = turmoil::Builder::new()
        .rng_seed(cfg.seed)
        .tick_duration(cfg.tick)
        .simulation_duration(cfg.limit)
        .build();
    let (tx, rx) = mpsc::unbounded_channel();
    // turmoil wants a factory (it could restart the host); the fabric host is never
    // restarted, so its software is made once.
    let software = RefCell::new(Some((hosts, rx)));
    sim.host("fabric", move || {
        let parts = software.borrow_mut().take();
        async move {
            if let Some((hosts, rx)) = parts {
                supervise(hosts, rx).await;
            }
            Ok(())
        }
    });
    let out: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
    let slot = out.clone();
    let fut = client(SimControl { tx });
    sim.client("orchestrator", async move {
        let v = fut.await;
        *slot.borrow_mut() = Some(v);
        Ok(())
    });
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                return Err(SimError::Turmoil {
                    detail: e.to_string(),
                });
            }
        }
    }
    out.borrow_mut().take().ok_or(SimError::NoResult)
}

#[cfg(test)]
mod tests {
    //! In-process cables under turmoil: modelled latency on the simulated clock, crash
    //! and restart, one table per run, same seed same run.

    use std::collections::BTreeMap;
    use std::pin::Pin;

    use bytes::Bytes;

    use super::*;
    use crate::runtime::linkmodel::LinkModel;
    use crate::runtime::{FabricClock, Net, PeerSpec, PortEvent, PortHub};

    /// What the nodes and the orchestrator saw: (fabric time, who, what).
    type Log = Rc<RefCell<Vec<(Duration, &'static str, String)>>>;

    const KM: f64 = 1000.0;
    const TICK: Duration = Duration::from_micros(10);

    fn cfg() -> SimConfig {
        SimConfig {
            seed: 7,
            tick: TICK,
            limit: Duration::from_secs(1),
        }
    }

    fn note(log: &Log, who: &'static str, what: String) {
        log.borrow_mut().push((FabricClock::Sim.now(), who, what));
    }

    /// A node with one port cabled to `peer` (`KM` long). Node `a` dials and sends one
    /// frame, `"{tag} frame {n}"`, every time its cable comes up.
    fn node(name: &'static str, peer: &'static str, tag: &'static str, log: &Log) -> SimHost {
        let log = log.clone();
        let factory = move || {
            let log = log.clone();
            let spec = PeerSpec {
                name: format!("{peer}/0"),
                port: 0,
                addr: format!("{peer}:7000"),
                dial: name == "a",
                distance_km: KM,
                gfc: 32,
                capture: false,
                local_key: None,
            };
            Box::pin(async move {
                let peers = BTreeMap::from([(0, spec)]);
                let (hub, mut rx) = PortHub::new(name, 1, peers, FabricClock::Sim, Net::Sim);
                hub.start_dialers();
                let mut sent = 0;
                while let Some(ev) = rx.recv().await {
                    match ev {
                        PortEvent::Up { .. } => {
                            note(&log, name, "up".into());
                            if name == "a" {
                                sent += 1;
                                let f = format!("{tag} frame {sent}");
                                let ok = hub.send(0, Bytes::from(f.clone()));
                                note(&log, name, format!("sent {f}: {ok}"));
                            }
                        }
                        PortEvent::Down { .. } => note(&log, name, "down".into()),
                        PortEvent::Frame { frame, .. } => {
                            note(&log, name, String::from_utf8_lossy(&frame).into_owned());
                        }
                    }
                }
            }) as Pin<Box<dyn Future<Output = ()>>>
        };
        (name.to_string(), Box::new(factory))
    }

    fn when(log: &Log, who: &str, what: &str) -> Option<Duration> {
        log.borrow()
            .iter()
            .find(|(_, w, x)| *w == who && x == what)
            .map(|(t, ..)| *t)
    }

    /// `a` sends over 1,000 km (5 ms); `b` crashes 1 ms later with the frame still in
    /// the fibre, and restarts 1 ms after that. Returns everything that was seen.
    fn crash_while_in_flight() -> Vec<(Duration, &'static str, String)> {
        let log: Log = Rc::default();
        let hosts = vec![node("a", "b", "x", &log), node("b", "a", "x", &log)];
        let seen = log.clone();
        run(&cfg(), hosts, move |ctl| async move {
            while when(&seen, "a", "sent x frame 1: true").is_none() {
                FabricClock::Sim.sleep(TICK).await;
            }
            FabricClock::Sim.sleep(Duration::from_millis(1)).await;
            ctl.apply(SimCommand::Crash("b".into())).await;
            note(&seen, "orchestrator", "crashed b".into());
            FabricClock::Sim.sleep(Duration::from_millis(1)).await;
            ctl.apply(SimCommand::Restart("b".into())).await;
            note(&seen, "orchestrator", "restarted b".into());
            FabricClock::Sim.sleep(Duration::from_millis(20)).await;
        })
        .unwrap();
        log.take()
    }

    #[test]
    fn frames_arrive_after_the_modelled_latency_and_die_with_a_crashed_node() {
        let log: Log = Rc::new(RefCell::new(crash_while_in_flight()));
        let at = |who, what: &str| when(&log, who, what).unwrap_or_else(|| panic!("{what}"));
        let crashed = at("orchestrator", "crashed b");
        let restarted = at("orchestrator", "restarted b");
        // The frame in flight when b crashed is lost, not delivered to its next life.
        assert_eq!(when(&log, "b", "x frame 1"), None, "{:#?}", log.borrow());
        // a sees its cable go down, and up again once b is back.
        let down = at("a", "down");
        assert!(down >= crashed && down <= crashed + 2 * TICK, "{down:?}");
        let sent = at("a", "sent x frame 2: true");
        assert!(sent >= restarted, "{sent:?}");
        // The second frame arrives no earlier than modelled, at most a tick late.
        let modelled = LinkModel::new(KM, 32).transmit(sent, "x frame 2".len());
        let got = at("b", "x frame 2");
        assert!(
            got >= modelled && got <= modelled + TICK,
            "{got:?} vs {modelled:?}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        assert_eq!(crash_while_in_flight(), crash_while_in_flight());
    }

    /// A node that only serves gRPC (health and reflection).
    fn server(name: &'static str) -> SimHost {
        let factory = move || {
            Box::pin(async move {
                let l = Net::Sim.bind("0.0.0.0:7000").await.expect("bind");
                let _ =
                    crate::runtime::server::serve(l, tonic::service::Routes::default(), &[]).await;
            }) as Pin<Box<dyn Future<Output = ()>>>
        };
        (name.to_string(), Box::new(factory))
    }

    /// gRPC runs over in-process streams: a crash fails the calls on an open channel
    /// and refuses new ones, and the restarted node serves again.
    #[test]
    fn grpc_dies_with_a_crashed_node_and_comes_back_with_it() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        let hosts = vec![server("s")];
        let got = run(&cfg(), hosts, move |ctl| async move {
            let mut seen = Vec::new();
            let check = |ch| async move {
                HealthClient::new(ch)
                    .check(HealthCheckRequest::default())
                    .await
                    .map(|r| r.into_inner().status)
            };
            let ch = loop {
                match Net::Sim.channel("s:7000").await {
                    Ok(ch) => break ch,
                    Err(_) => FabricClock::Sim.sleep(TICK).await,
                }
            };
            seen.push(check(ch.clone()).await.is_ok());
            ctl.apply(SimCommand::Crash("s".into())).await;
            seen.push(check(ch.clone()).await.is_ok());
            seen.push(Net::Sim.channel("s:7000").await.is_ok());
            // Crashing a crashed node changes nothing.
            ctl.apply(SimCommand::Crash("s".into())).await;
            ctl.apply(SimCommand::Restart("s".into())).await;
            FabricClock::Sim.sleep(TICK).await;
            let ch = Net::Sim.channel("s:7000").await.expect("restarted");
            seen.push(check(ch).await.is_ok());
            seen
        })
        .unwrap();
        assert_eq!(got, vec![true, false, false, true]);
    }

    /// Two runs at once on two threads, with the same node names: each run's cables
    /// stay within it.
    #[test]
    fn runs_at_once_never_share_cables() {
        fn pair(tag: &'static str) -> Vec<String> {
            let log: Log = Rc::default();
            let hosts = vec![node("a", "b", tag, &log), node("b", "a", tag, &log)];
            let seen = log.clone();
            run(&cfg(), hosts, move |_| async move {
                FabricClock::Sim.sleep(Duration::from_millis(30)).await;
                let mut got = Vec::new();
                for (_, who, what) in seen.borrow().iter() {
                    if *who == "b" && what.contains("frame") {
                        got.push(what.clone());
                    }
                }
                got
            })
            .unwrap()
        }
        let threads: Vec<_> = ["one", "two", "three"]
            .into_iter()
            .map(|tag| std::thread::spawn(move || (tag, pair(tag))))
            .collect();
        for t in threads {
            let (tag, got) = t.join().unwrap();
            assert_eq!(got, vec![format!("{tag} frame 1")]);
        }
    }
}
