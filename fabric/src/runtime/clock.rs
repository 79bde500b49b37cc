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

/// A node actor's timer: the next deadline of its sans-IO cores, re-armed after every
/// input, without a timer registration per input.
///
/// Live, one tokio `Sleep` lives as long as the actor. [`Alarm::arm`] moves it only
/// when the new deadline is earlier than the one it is set for; a later deadline (the
/// usual case: each new exchange adds one further away) keeps the earlier timer, and
/// when that one fires early [`Alarm::wait`] re-arms it and goes on sleeping. So the
/// timer driver is not touched per frame, and the runtime is not woken through its
/// driver (an `eventfd` write) every time an idle actor arms a fresh timer. In
/// simulation it sleeps on [`FabricClock::sleep_until`] each time, as before.
///
/// [`Alarm::wait`] returns only once fabric time has reached the armed deadline, never
/// early; it is cancel-safe (for `select!`).
pub struct Alarm {
    clock: FabricClock,
    /// The deadline the actor wants now (fabric time); `None`: none.
    want: Option<Duration>,
    /// Live: the timer and the fabric time it is set for (never later than `want`
    /// while `want` is set).
    timer: Option<(Duration, std::pin::Pin<Box<tokio::time::Sleep>>)>,
}

impl std::fmt::Debug for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarm")
            .field("want", &self.want)
            .field("set_for", &self.timer.as_ref().map(|(at, _)| *at))
            .finish()
    }
}

impl Alarm {
    pub fn new(clock: FabricClock) -> Self {
        Alarm {
            clock,
            want: None,
            timer: None,
        }
    }

    /// Sets the deadline to wait for (fabric time), or none.
    pub fn arm(&mut self, at: Option<Duration>) {
        self.want = at;
        if !matches!(self.clock, FabricClock::Wall { .. }) {
            return;
        }
        let Some(at) = at else {
            return;
        };
        if self.timer.as_ref().is_some_and(|(set, _)| *set <= at) {
            return;
        }
        let deadline = self.instant_of(at);
        match &mut self.timer {
            Some((set, sleep)) => {
                *set = at;
                sleep.as_mut().reset(deadline);
            }
            None => self.timer = Some((at, Box::pin(tokio::time::sleep_until(deadline)))),
        }
    }

    /// The tokio instant of fabric time `at` (now, if `at` has passed).
    fn instant_of(&self, at: Duration) -> tokio::time::Instant {
        tokio::time::Instant::now() + at.saturating_sub(self.clock.now())
    }

    /// Completes once fabric time reaches the armed deadline; pending while none is.
    pub async fn wait(&mut self) {
        loop {
            let Some(want) = self.want else {
                return std::future::pending().await;
            };
            match self.clock {
                FabricClock::Sim => return self.clock.sleep_until(want).await,
                FabricClock::Wall { .. } => {
                    if let Some((_, sleep)) = &mut self.timer {
                        sleep.as_mut().await;
                    }
                    if self.clock.now() >= want {
                        return;
                    }
                    // Fired early (set for an earlier deadline that went away):
                    // set it for the one wanted now.
                    let deadline = self.instant_of(want);
                    match &mut self.timer {
                        Some((set, sleep)) => {
                            *set = want;
                            sleep.as_mut().reset(deadline);
                        }
                        None => {
                            self.timer = Some((want, Box::pin(tokio::time::sleep_until(deadline))));
                        }
                    }
                }
            }
        }
    }
}

/// Prints a fabric time as `12.345678ms`-style with µs resolution: `   12.345ms`.
pub fn fmt_time(t: Duration) -> String {
    let us = t.as_micros();
    format!("{}.{:03}ms", us / 1000, us % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall() -> FabricClock {
        FabricClock::Wall {
            epoch: SystemTime::now(),
        }
    }

    /// An earlier deadline moves the timer; the wait never ends before it.
    #[tokio::test]
    async fn alarm_moves_to_an_earlier_deadline() {
        let clock = wall();
        let mut alarm = Alarm::new(clock);
        let far = clock.now() + Duration::from_secs(3600);
        alarm.arm(Some(far));
        let near = clock.now() + Duration::from_millis(3);
        alarm.arm(Some(near));
        alarm.wait().await;
        assert!(clock.now() >= near);
    }

    /// A timer set for a deadline that went away fires early: the wait goes on to the
    /// deadline wanted now instead of returning.
    #[tokio::test]
    async fn alarm_never_returns_before_the_wanted_deadline() {
        let clock = wall();
        let mut alarm = Alarm::new(clock);
        alarm.arm(Some(clock.now() + Duration::from_millis(1)));
        let later = clock.now() + Duration::from_millis(8);
        alarm.arm(Some(later));
        alarm.wait().await;
        assert!(clock.now() >= later);
        // Armed for a deadline already past: at once.
        alarm.arm(Some(Duration::ZERO));
        alarm.wait().await;
    }

    /// With no deadline the wait stays pending.
    #[tokio::test]
    async fn alarm_without_deadline_is_pending() {
        let clock = wall();
        let mut alarm = Alarm::new(clock);
        alarm.arm(Some(clock.now() + Duration::from_millis(1)));
        alarm.arm(None);
        let got = tokio::time::timeout(Duration::from_millis(20), alarm.wait()).await;
        assert!(got.is_err(), "no deadline: nothing to wait for");
    }
}
