//! Statements a rule can carry besides its matches, counter and verdict:
//! `limit rate …` and `log prefix "…" group …` (drop and allow logging,
//! `docs/observability.md`).
//!
//! They are printed exactly as nft 1.0.6 prints them back (`limit rate
//! 10/second`, the burst only when it is not nft's default of 5;
//! `log prefix "knp:…" group 9841`), and put in a rule in nft's order:
//! matches, `limit`, `counter`, `log`, verdict. Plain data; no I/O.

use std::fmt::{self, Display, Formatter};
use std::str::FromStr;

/// The burst nft assumes (and leaves out when printing) for a packet limit.
pub const DEFAULT_BURST: u32 = 5;

/// The unit of a `limit rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RateUnit {
    /// `/second`.
    Second,
    /// `/minute`.
    Minute,
    /// `/hour`.
    Hour,
    /// `/day`.
    Day,
    /// `/week`.
    Week,
}

impl RateUnit {
    /// Every unit, shortest first.
    pub const ALL: [RateUnit; 5] = [
        RateUnit::Second,
        RateUnit::Minute,
        RateUnit::Hour,
        RateUnit::Day,
        RateUnit::Week,
    ];

    /// The unit in seconds (what the kernel's `NFTA_LIMIT_UNIT` holds).
    pub fn seconds(self) -> u64 {
        match self {
            RateUnit::Second => 1,
            RateUnit::Minute => 60,
            RateUnit::Hour => 3600,
            RateUnit::Day => 86_400,
            RateUnit::Week => 604_800,
        }
    }

    /// `second`, `minute`, ... as nft prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
            RateUnit::Week => "week",
        }
    }
}

/// `limit rate <rate>/<unit> [burst <burst> packets]`: the rule goes on
/// only while the packet rate is within the limit (a token bucket of
/// `burst` packets refilled at `rate` per `unit`, one per rule); over it,
/// the rule does not match and the next rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Limit {
    /// Packets per `unit` (at least 1).
    pub rate: u64,
    /// The unit of `rate`.
    pub unit: RateUnit,
    /// Packets allowed at once (at least 1; nft refuses 0).
    pub burst: u32,
}

impl Limit {
    /// `rate` packets per `unit`, nft's default burst.
    pub fn per(rate: u64, unit: RateUnit) -> Self {
        Self {
            rate,
            unit,
            burst: DEFAULT_BURST,
        }
    }

    /// The same limit with another burst.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The most packets the limit lets through in `secs` seconds from a
    /// full bucket: the burst, plus the rate over that time (rounded up).
    pub fn max_in(&self, secs: f64) -> u64 {
        let refill = (self.rate as f64) * secs / self.unit.seconds() as f64;
        u64::from(self.burst) + refill.ceil() as u64
    }
}

/// Why a rate does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad rate {0:?}: use <packets>/<second|minute|hour|day|week>, e.g. 10/second")]
pub struct RateError(pub String);

impl FromStr for Limit {
    type Err = RateError;

    /// `10/second`, `100/minute`, `5/s` (the unit may be cut short, as
    /// nft allows: `s`, `sec`, `m`, `min`, `h`, `d`, `w`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RateError(s.to_owned());
        let (rate, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let rate: u64 = rate.trim().parse().map_err(|_| bad())?;
        let unit = unit.trim().to_ascii_lowercase();
        let unit = RateUnit::ALL
            .into_iter()
            .find(|u| !unit.is_empty() && u.as_str().starts_with(&unit))
            .ok_or_else(bad)?;
        if rate == 0 {
            return Err(bad());
        }
        Ok(Limit::per(rate, unit))
    }
}

impl Display for Limit {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "limit rate {}/{}", self.rate, self.unit.as_str())?;
        if self.burst != DEFAULT_BURST {
            write!(f, " burst {} packets", self.burst)?;
        }
        Ok(())
    }
}

/// `log prefix "<prefix>" group <group>`: a copy of the packet's headers,
/// with the prefix, goes to the NFLOG netlink group `group` (read by the
/// agent; nothing is written to the kernel log).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Log {
    /// The prefix (at most 127 bytes; ours are `knp:<id>:<verdict>`).
    pub prefix: String,
    /// The NFLOG group.
    pub group: u16,
}

impl Display for Log {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "log prefix \"{}\" group {}", self.prefix, self.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_print_as_nft_does() {
        // (case, limit, text nft 1.0.6 lists)
        let cases = [
            (
                "default burst is left out",
                Limit::per(10, RateUnit::Second),
                "limit rate 10/second",
            ),
            (
                "other burst",
                Limit::per(10, RateUnit::Second).burst(6),
                "limit rate 10/second burst 6 packets",
            ),
            (
                "burst 1",
                Limit::per(7, RateUnit::Hour).burst(1),
                "limit rate 7/hour burst 1 packets",
            ),
            (
                "minute is not normalised",
                Limit::per(60, RateUnit::Minute),
                "limit rate 60/minute",
            ),
        ];
        for (case, limit, want) in cases {
            assert_eq!(limit.to_string(), want, "case: {case}");
        }
        let log = Log {
            prefix: "knp:abcdefgh:drop".into(),
            group: 9841,
        };
        assert_eq!(
            log.to_string(),
            "log prefix \"knp:abcdefgh:drop\" group 9841"
        );
    }

    #[test]
    fn rates_parse() {
        let ok = [
            ("10/second", Limit::per(10, RateUnit::Second)),
            ("5/s", Limit::per(5, RateUnit::Second)),
            ("100/min", Limit::per(100, RateUnit::Minute)),
            (" 3/Hour ", Limit::per(3, RateUnit::Hour)),
            ("1/w", Limit::per(1, RateUnit::Week)),
        ];
        for (text, want) in ok {
            assert_eq!(text.parse::<Limit>(), Ok(want), "case: {text}");
        }
        for bad in [
            "",
            "10",
            "0/second",
            "x/second",
            "10/fortnight",
            "10/",
            "-1/s",
        ] {
            assert!(bad.parse::<Limit>().is_err(), "case: {bad:?}");
        }
    }

    #[test]
    fn max_in_is_burst_plus_refill() {
        let l = Limit::per(10, RateUnit::Second);
        assert_eq!(l.max_in(0.0), 5);
        assert_eq!(l.max_in(1.0), 15);
        assert_eq!(l.max_in(0.25), 8, "2.5 rounds up");
        assert_eq!(Limit::per(60, RateUnit::Minute).burst(1).max_in(2.0), 3);
    }
}
