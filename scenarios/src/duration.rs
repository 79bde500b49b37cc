//! Simulated durations written as strings with units (`"500us"`, `"120ms"`, `"1.5ms"`,
//! `"2s"`, `"1m"`), the DESIGN.md §8 convention for every time in a scenario.
//!
//! [`SimDuration`] is a count of nanoseconds. It parses exactly (a fraction that does not
//! land on a whole nanosecond is an error, never rounded) and prints the shortest exact
//! form, so `parse(print(d)) == d` for every value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    #[error(
        "`{text}` is not a duration: expected a number and a unit (ns, us, µs, ms, s, m) like \"120ms\" or \"1.5ms\""
    )]
    Malformed { text: String },
    #[error("`{text}` is not a whole number of nanoseconds")]
    NotWholeNanos { text: String },
    #[error("`{text}` is too long: durations must fit in 2^64 ns (about 584 years)")]
    Overflow { text: String },
}

/// A span of simulated time, in nanoseconds.
///
/// Serialized as a string with a unit (see the module doc); ordered and additive.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimDuration(u64);

/// Units accepted on input, with their length in nanoseconds. `µs` (micro sign) and
/// `μs` (Greek mu) are spellings of `us`.
const UNITS: [(&str, u64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
];

/// Units tried when printing, in tie-break order (see `Display`).
const PRINT_UNITS: [(&str, u64); 5] = [
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
    ("m", 60_000_000_000),
];

impl SimDuration {
    pub const ZERO: SimDuration = SimDuration(0);

    pub const fn from_nanos(ns: u64) -> Self {
        SimDuration(ns)
    }

    pub const fn from_micros(us: u64) -> Self {
        SimDuration(us * 1_000)
    }

    pub const fn from_millis(ms: u64) -> Self {
        SimDuration(ms * 1_000_000)
    }

    pub const fn from_secs(s: u64) -> Self {
        SimDuration(s * 1_000_000_000)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole microseconds, rounded down.
    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    pub fn checked_add(self, other: SimDuration) -> Option<SimDuration> {
        self.0.checked_add(other.0).map(SimDuration)
    }

    /// The same span as a `std::time::Duration` (for handing to a simulated clock).
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0)
    }

    /// `self` written in `unit_ns` units, if that is an exact decimal of at most 9
    /// fraction digits.
    fn in_unit(self, unit: &str, unit_ns: u64) -> Option<String> {
        let whole = self.0 / unit_ns;
        let mut rem = u128::from(self.0 % unit_ns);
        if rem == 0 {
            return Some(format!("{whole}{unit}"));
        }
        let mut frac = String::new();
        for _ in 0..9 {
            rem *= 10;
            let digit = rem / u128::from(unit_ns);
            rem %= u128::from(unit_ns);
            frac.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
            if rem == 0 {
                return Some(format!("{whole}.{frac}{unit}"));
            }
        }
        None
    }
}

impl std::ops::Add for SimDuration {
    type Output = SimDuration;
    /// Panics on overflow (584 years of simulated time), like integer addition.
    fn add(self, rhs: SimDuration) -> SimDuration {
        SimDuration(self.0.checked_add(rhs.0).expect("SimDuration overflow"))
    }
}

impl fmt::Display for SimDuration {
    /// The shortest exact form; on equal length a whole number beats a fraction
    /// (`500us`, not `0.5ms`), then `s` beats `ms`, `us`, `ns`, `m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key: (length, has a decimal point, tie-break order); the smallest wins.
        let best = PRINT_UNITS
            .iter()
            .enumerate()
            .filter_map(|(i, (unit, ns))| {
                self.in_unit(unit, *ns)
                    .map(|s| ((s.len(), s.contains('.'), i), s))
            })
            .min_by_key(|(key, _)| *key)
            .map(|(_, s)| s)
            .unwrap_or_else(|| format!("{}ns", self.0));
        f.write_str(&best)
    }
}

impl fmt::Debug for SimDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for SimDuration {
    type Err = DurationError;

    /// `<digits>[.<digits>]<unit>`, no sign, no spaces, unit required.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || DurationError::Malformed {
            text: s.to_string(),
        };
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(malformed)?;
        let (number, unit) = s.split_at(split);
        let unit_ns = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, ns)| *ns)
            .ok_or_else(malformed)?;
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
            return Err(malformed());
        }
        let overflow = || DurationError::Overflow {
            text: s.to_string(),
        };
        let whole: u128 = whole.parse().map_err(|_| overflow())?;
        let mut total = whole
            .checked_mul(u128::from(unit_ns))
            .ok_or_else(overflow)?;
        if !frac.is_empty() {
            // Trailing zeros carry no value; more than 30 significant digits cannot be exact.
            let frac = frac.trim_end_matches('0');
            if frac.len() > 30 {
                return Err(DurationError::NotWholeNanos {
                    text: s.to_string(),
                });
            }
            let digits: u128 = if frac.is_empty() {
                0
            } else {
                frac.parse().map_err(|_| malformed())?
            };
            let scale = 10u128.pow(u32::try_from(frac.len()).unwrap_or(0));
            let scaled = digits
                .checked_mul(u128::from(unit_ns))
                .ok_or_else(overflow)?;
            if scaled % scale != 0 {
                return Err(DurationError::NotWholeNanos {
                    text: s.to_string(),
                });
            }
            total = total.checked_add(scaled / scale).ok_or_else(overflow)?;
        }
        u64::try_from(total)
            .map(SimDuration)
            .map_err(|_| overflow())
    }
}

impl Serialize for SimDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SimDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SimDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string with a unit, like \"120ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SimDuration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> u64 {
        s.parse::<SimDuration>().unwrap().as_nanos()
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(d("7ns"), 7);
        assert_eq!(d("500us"), 500_000);
        assert_eq!(d("500µs"), 500_000);
        assert_eq!(d("500μs"), 500_000);
        assert_eq!(d("120ms"), 120_000_000);
        assert_eq!(d("2s"), 2_000_000_000);
        assert_eq!(d("1m"), 60_000_000_000);
        assert_eq!(d("0ms"), 0);
    }

    #[test]
    fn parses_exact_fractions() {
        assert_eq!(d("1.5ms"), 1_500_000);
        assert_eq!(d("0.25us"), 250);
        assert_eq!(d("1.5m"), 90_000_000_000);
        assert_eq!(d("2.000s"), 2_000_000_000);
        assert_eq!(d("0.000000001s"), 1);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "", "5", "ms", "1.ms", ".5ms", "1..5ms", "-1ms", "+1ms", "1 ms", "1MS", "1h", "1.2.3s",
            "1e3ms",
        ] {
            assert!(
                matches!(
                    bad.parse::<SimDuration>(),
                    Err(DurationError::Malformed { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            "1.5ns".parse::<SimDuration>(),
            Err(DurationError::NotWholeNanos { .. })
        ));
        assert!(matches!(
            "0.0000000001s".parse::<SimDuration>(),
            Err(DurationError::NotWholeNanos { .. })
        ));
        assert!(matches!(
            "999999999999m".parse::<SimDuration>(),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn prints_shortest_exact_form() {
        let p = |ns: u64| SimDuration::from_nanos(ns).to_string();
        assert_eq!(p(0), "0s");
        assert_eq!(p(1_500_000), "1.5ms");
        assert_eq!(p(500_000), "500us");
        assert_eq!(p(120_000_000), "120ms");
        assert_eq!(p(2_000_000_000), "2s");
        assert_eq!(p(60_000_000_000), "1m");
        assert_eq!(p(90_000_000_000), "90s");
        assert_eq!(p(120_000_000_000), "2m");
        assert_eq!(p(150_000_000_000), "150s");
        assert_eq!(p(100_000_000_000), "100s");
        assert_eq!(p(10_000), "10us");
        assert_eq!(p(1), "1ns");
        assert_eq!(p(1_234_567), "1234567ns");
        assert_eq!(p(1_234_500), "1.2345ms");
    }

    #[test]
    fn serde_is_a_string() {
        let v: SimDuration = serde_json::from_str("\"10us\"").unwrap();
        assert_eq!(v, SimDuration::from_micros(10));
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"10us\"");
        assert!(serde_json::from_str::<SimDuration>("10").is_err());
    }

    proptest! {
        #[test]
        fn print_parse_roundtrip(ns in any::<u64>()) {
            let v = SimDuration::from_nanos(ns);
            prop_assert_eq!(v.to_string().parse::<SimDuration>().unwrap(), v);
        }

        #[test]
        fn printed_form_is_no_longer_than_ns(ns in any::<u64>()) {
            let v = SimDuration::from_nanos(ns);
            let plain = format!("{ns}ns");
            prop_assert!(v.to_string().len() <= plain.len());
        }

        #[test]
        fn parse_never_panics(s in "[0-9.]{0,25}(ns|us|µs|ms|s|m|h|)") {
            let _ = s.parse::<SimDuration>();
        }
    }
}
