//! The deterministic simulation harness, on turmoil: every node is a turmoil host (its
//! own single-threaded runtime on simulated TCP), the orchestrator is a turmoil client,
//! and time is turmoil's simulated clock. One root seed fixes every choice.
//!
//! Crash and restart act on the `Sim` itself, which only the stepping loop may touch,
//! so the orchestrator asks for them through a [`SimControl`] and the loop applies
//! them between two steps.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

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
