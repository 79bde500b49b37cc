//! Relay placement rules (seed 002 §2.2, [0055], [0076], [0093], claim 1; invariant R10):
//! a relay must survive a disaster at the primary, so it may not stand in the primary's
//! disaster zone, and it must be closer (in latency) to the primary than the standby is,
//! or the early acknowledgement gains nothing.
//!
//! Decision (seed §7.6 E21): only the primary's zone is checked, as claim 1 and [0076]
//! require; a relay sharing the standby's zone is allowed.

use std::time::Duration;

use super::RelayError;

/// Where a relay stands, as the topology sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayPlacement {
    /// The relay's node name.
    pub name: String,
    /// The disaster zone of its site.
    pub zone: String,
    /// One-way latency between the primary and the relay.
    pub latency: Duration,
}

/// Checks every relay against the primary's disaster zone `primary_zone` and the
/// primary–standby latency `standby_latency`; the first violation, in the order given,
/// names the relay and the reason.
pub fn validate_placement(
    primary_zone: &str,
    standby_latency: Duration,
    relays: &[RelayPlacement],
) -> Result<(), RelayError> {
    for r in relays {
        if r.zone == primary_zone {
            return Err(RelayError::InDisasterZone {
                relay: r.name.clone(),
                zone: r.zone.clone(),
            });
        }
        if r.latency >= standby_latency {
            return Err(RelayError::NotCloser {
                relay: r.name.clone(),
                relay_latency: r.latency,
                standby_latency,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(name: &str, zone: &str, latency_us: u64) -> RelayPlacement {
        RelayPlacement {
            name: name.into(),
            zone: zone.into(),
            latency: Duration::from_micros(latency_us),
        }
    }

    #[test]
    fn relays_outside_the_zone_and_closer_than_the_standby_pass() {
        let standby = Duration::from_micros(2500);
        assert_eq!(
            validate_placement(
                "kanto",
                standby,
                &[relay("r1", "chubu", 500), relay("r2", "kansai", 2499)]
            ),
            Ok(())
        );
    }

    #[test]
    fn a_violation_names_the_relay_and_the_reason() {
        let standby = Duration::from_micros(2500);
        assert_eq!(
            validate_placement(
                "kanto",
                standby,
                &[relay("r1", "chubu", 500), relay("r2", "kanto", 100)]
            ),
            Err(RelayError::InDisasterZone {
                relay: "r2".into(),
                zone: "kanto".into()
            })
        );
        let e = validate_placement("kanto", standby, &[relay("r3", "kansai", 2500)]).unwrap_err();
        assert_eq!(
            e,
            RelayError::NotCloser {
                relay: "r3".into(),
                relay_latency: standby,
                standby_latency: standby
            }
        );
        assert!(e.to_string().contains("`r3`"));
    }
}
