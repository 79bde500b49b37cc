//! The deterministic simulation harness, on turmoil: every node is a turmoil host (its
//! own single-threaded runtime on simulated TCP), the orchestrator is a turmoil client,
//! and time is turmoil's simulated clock. One root seed fixes every choice.
//!
//! Crash and restart act on the `Sim` itself, which only the stepping loop may touch,
//! so the orchestrator asks for them through a [`SimControl`] and the loop applies
//! them between two steps.
//!
//! **Cables are in-process channels.** Only gRPC calls (the orchestrator's, and any
//! between nodes) cross turmoil's simulated TCP. A cable between two nodes is a pair of
//! channels (`PortHub`'s in-process cables), met through the run's own [`LocalEnds`]
//! table, which [`run`] creates and puts in reach of its nodes ([`cables`]) for as long
//! as it runs. It stays deterministic because turmoil steps every host on this one
//! thread in a fixed order: a frame sent by one host wakes the receiving cable's reader
//! in the peer host's runtime, which runs it when turmoil next steps that host (later
//! in the same step or in the next one), and the reader holds the frame until its
//! modelled arrival on the simulated clock. A crash drops the host's runtime, so its
//! channel ends close and the peers' readers see the cable go down; a restarted node
//! enters its ends again and its peers re-dial.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::ports::LocalEnds;

thread_local! {
    /// The cable table of the run that this thread is stepping: every host of a
    /// turmoil simulation runs on the thread that steps it, and only while [`run`]
    /// does.
    static CABLES: RefCell<Option<Arc<LocalEnds>>> = const { RefCell::new(None) };
}

/// The cable table of the simulated run the calling node belongs to; `None` outside
/// [`run`] (a node on its own in a turmoil host then cables over simulated TCP).
pub fn cables() -> Option<Arc<LocalEnds>> {
    CABLES.with(|c| c.borrow().clone())
}

/// Gives this thread a fresh cable table until dropped, then puts back the one before.
struct CablesScope {
    outer: Option<Arc<LocalEnds>>,
}

impl CablesScope {
    fn enter() -> Self {
        let fresh = Some(Arc::new(LocalEnds::default()));
        CablesScope {
            outer: CABLES.with(|c| c.replace(fresh)),
        }
    }
}

impl Drop for CablesScope {
    fn drop(&mut self) {
        let outer = self.outer.take();
        CABLES.with(|c| c.replace(outer));
    }
}

/// What the orchestrator may ask of the simulation between steps.
#[derive(Debug, Clone)]
pub enum SimCommand {
    /// Kill the host: its runtime and every task, socket and byte of memory go.
    Crash(String),
    /// Start a crashed host's software again from its configuration.
    Restart(String),
}

/// The orchestrator's handle on the simulation loop.
#[derive(Clone)]
pub struct SimControl {
    tx: std_mpsc::Sender<(SimCommand, oneshot::Sender<()>)>,
}

impl SimControl {
    /// Applies `cmd` before the next simulation step and waits until it is done.
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

/// A node the simulation runs: its host name and a factory for its software, called
/// again on every restart.
pub type SimHost = (
    String,
    Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>>,
);

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
    let _cables = CablesScope::enter();
    let mut sim = turmoil::Builder::new()
        .rng_seed(cfg.seed)
        .tick_duration(cfg.tick)
        .simulation_duration(cfg.limit)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::ZERO)
        .tcp_capacity(1 << 20)
        .build();
    for (name, factory) in hosts {
        let factory = Rc::new(factory);
        sim.host(name.as_str(), move || {
            let f = factory.clone();
            async move {
                f().await;
                Ok(())
            }
        });
    }
    let (tx, rx) = std_mpsc::channel();
    let out: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
    let slot = out.clone();
    let fut = client(SimControl { tx });
    sim.client("orchestrator", async move {
        let v = fut.await;
        *slot.borrow_mut() = Some(v);
        Ok(())
    });
    loop {
        while let Ok((cmd, ack)) = rx.try_recv() {
            match cmd {
                SimCommand::Crash(h) => sim.crash(h.as_str()),
                SimCommand::Restart(h) => sim.bounce(h.as_str()),
            }
            let _ = ack.send(());
        }
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
