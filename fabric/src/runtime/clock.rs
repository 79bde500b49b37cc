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

    /// Where fabric time 0 lies on the Unix time line: the epoch in the wall-clock
    /// modes, the Unix epoch itself in simulation (so simulated timestamps, in a
    /// capture for instance, start at 0 and depend on nothing but the seed).
    pub fn unix_offset(&self) -> Duration {
        match self {
            FabricClock::Sim => Duration::ZERO,
            FabricClock::Wall { epoch } => epoch
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// Sleeps until fabric time reaches `at`.
    ///
    /// In simulation a host's tokio clock is not turmoil's clock (a paused runtime may
    /// auto-advance its own timers past the tick), so this re-reads turmoil's elapsed
    /// time after every wake-up instead of trusting a single tokio deadline.
    pub async fn sleep_until(&self, at: Duration) {
        match self {
            FabricClock::Sim => loop {
                let now = self.now();
                if now >= at {
                    break;
                }
                tokio::time::sleep(at - now).await;
            },
            FabricClock::Wall { .. } => {
                let now = self.now();
                if at > now {
                    tokio::time::sleep(at - now).await;
                }
            }
        }
    }

    /// Sleeps for `d` of fabric time.
    pub async fn sleep(&self, d: Duration) {
        self.sleep_until(self.now() + d).await;
    }
}

/// Prints a fabric time as `12.345678ms`-style with µs resolution: `   12.345ms`.
pub fn fmt_time(t: Duration) -> String {
    let us = t.as_micros();
    format!("{}.{:03}ms", us / 1000, us % 1000)
}
