//! Fabric time: nanoseconds since the fabric started, the same on every node.
//!
//! In simulation it is turmoil's simulated elapsed time; live it is the wall clock
//! measured from an epoch that the orchestrator hands every node (so that processes
//! agree). Node code reads time only here; sans-IO cores get `now` as an argument.

use std::time::{Duration, SystemTime};

/// Where fabric time comes from.
#[derive(Debug, Clone, Copy)]
pub enum FabricClock {
    /// turmoil's simulated clock.
    Sim,
    /// Wall-clock time since `epoch`.
    Wall { epoch: SystemTime },
}

impl FabricClock {
    /// Time since the fabric started.
    pub fn now(&self) -> Duration {
        match self {
            FabricClock::Sim => turmoil::sim_elapsed().unwrap_or_default(),
            FabricClock::Wall { epoch } => {
                SystemTime::now().duration_since(*epoch).unwrap_or_default()
            }
        }
    }

    /// The tokio instant at which fabric time reaches `at` (for `sleep_until`).
    pub fn instant_at(&self, at: Duration) -> tokio::time::Instant {
        let now = self.now();
        tokio::time::Instant::now() + at.saturating_sub(now)
    }
}

/// Prints a fabric time as `12.345678ms`-style with µs resolution: `   12.345ms`.
pub fn fmt_time(t: Duration) -> String {
    let us = t.as_micros();
    format!("{}.{:03}ms", us / 1000, us % 1000)
}
