//! The cable model (DESIGN.md §2): propagation 5 µs per km plus a per-hop latency, and
//! serialization at the link rate, with frames queued behind each other. Sans-IO: the
//! port driver asks it when a frame sent `now` arrives at the far end.

use std::time::Duration;

/// One direction of one cable.
#[derive(Debug, Clone)]
pub struct LinkModel {
    /// One-way propagation plus hop latency.
    latency: Duration,
    /// Payload rate in bytes per second (8GFC ≈ 800 MB/s, …).
    bytes_per_sec: u64,
    /// When the transmitter is free again (the last queued frame's last bit left).
    busy_until: Duration,
}

/// Fibre in glass: about 5 µs per km, one way.
pub const PROPAGATION_NS_PER_KM: f64 = 5_000.0;
/// A switch's cut-through forwarding latency, charged once per cable.
pub const HOP_LATENCY: Duration = Duration::from_nanos(700);

impl LinkModel {
    /// `gfc` is the FC speed class (1, 2, 4, 8, 16, 32, 64); its data rate is about
    /// 100 MB/s per GFC unit (8GFC ≈ 800 MB/s, 32GFC ≈ 3200 MB/s).
    pub fn new(distance_km: f64, gfc: u32) -> Self {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let propagation =
            Duration::from_nanos((distance_km.max(0.0) * PROPAGATION_NS_PER_KM).round() as u64);
        LinkModel {
            latency: propagation + HOP_LATENCY,
            bytes_per_sec: u64::from(gfc.max(1)) * 100_000_000,
            busy_until: Duration::ZERO,
        }
    }

    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// Time to clock `bytes` onto the wire.
    pub fn serialization(&self, bytes: usize) -> Duration {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        Duration::from_nanos(bytes.saturating_mul(1_000_000_000) / self.bytes_per_sec)
    }

    /// A frame of `bytes` handed to the transmitter at `now`: when its last bit arrives.
    pub fn transmit(&mut self, now: Duration, bytes: usize) -> Duration {
        let start = now.max(self.busy_until);
        self.busy_until = start + self.serialization(bytes);
        self.busy_until + self.latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_latency_is_5us_per_km_plus_hop() {
        let l = LinkModel::new(100.0, 32);
        assert_eq!(l.latency(), Duration::from_micros(500) + HOP_LATENCY);
    }

    #[test]
    fn frames_queue_behind_each_other() {
        let mut l = LinkModel::new(0.0, 8);
        // 2 KiB at 800 MB/s = 2.56 µs.
        let a = l.transmit(Duration::ZERO, 2048);
        let b = l.transmit(Duration::ZERO, 2048);
        assert_eq!(a, Duration::from_nanos(2560) + HOP_LATENCY);
        assert_eq!(b - a, Duration::from_nanos(2560));
        // An idle link does not carry old backlog.
        let c = l.transmit(Duration::from_millis(1), 0);
        assert_eq!(c, Duration::from_millis(1) + HOP_LATENCY);
    }
}
