//! Probe checks shared by the real-packet suites (tests/paths.rs,
//! tests/seeds_kernel.rs): a `Check` is one flow and whether it must
//! connect; `verify` runs a list of them in parallel and reports every
//! mismatch with the step's name.
#![allow(dead_code)]

use std::net::IpAddr;
use std::time::Duration;

use nftpolicy_core::model::Selector;
use nftpolicy_lab::{Family, Host, Lab, Proto};

/// Timeout of a probe expected to be blocked (and of the first try of one
/// expected to connect).
pub const T: Duration = Duration::from_millis(400);
/// Timeout of the second try of a probe expected to connect: a loaded
/// machine must not turn a slow "connected" into a false "blocked".
pub const RETRY: Duration = Duration::from_secs(2);

/// How a check talks to its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Connect, send a byte, read the server's name.
    Tcp(u16),
    /// One datagram, one reply datagram.
    Udp(u16),
    /// ICMP / ICMPv6 echo.
    Ping,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Tcp(p) => write!(f, "tcp/{p}"),
            Via::Udp(p) => write!(f, "udp/{p}"),
            Via::Ping => f.write_str("ping"),
        }
    }
}

/// One expected connectivity fact.
#[derive(Clone, Debug)]
pub struct Check {
    pub from: Host,
    pub to: IpAddr,
    pub via: Via,
    pub want: bool,
    /// For an allowed TCP/UDP check: the name of the server that must answer.
    pub who: Option<String>,
    pub what: String,
}

impl Check {
    pub fn who(mut self, name: &str) -> Self {
        self.who = Some(name.to_owned());
        self
    }
}

/// `from` → address `to`.
pub fn at(from: &Host, to: IpAddr, via: Via, want: bool, what: &str) -> Check {
    Check {
        from: from.clone(),
        to,
        via,
        want,
        who: None,
        what: what.to_owned(),
    }
}

/// `from` → host `to` in every family both have; an allowed TCP/UDP check
/// must be answered by `to` itself.
pub fn flows(from: &Host, to: &Host, vias: &[Via], want: bool, what: &str) -> Vec<Check> {
    let mut out = Vec::new();
    for f in Family::ALL {
        if let (Some(_), Some(addr)) = (from.ip(f), to.ip(f)) {
            for via in vias {
                let mut c = at(from, addr, *via, want, what);
                if *via != Via::Ping {
                    c.who = Some(to.name().to_owned());
                }
                out.push(c);
            }
        }
    }
    assert!(
        !out.is_empty(),
        "{what}: {} and {} share no family",
        from.name(),
        to.name()
    );
    out
}

/// `from` → host `to` in family `f` only.
pub fn flows_in(
    from: &Host,
    to: &Host,
    f: Family,
    vias: &[Via],
    want: bool,
    what: &str,
) -> Vec<Check> {
    let addr = to
        .ip(f)
        .unwrap_or_else(|| panic!("{what}: {} has no {f} address", to.name()));
    vias.iter()
        .map(|via| {
            let c = at(from, addr, *via, want, what);
            if *via == Via::Ping {
                c
            } else {
                c.who(to.name())
            }
        })
        .collect()
}

pub fn attempt(lab: &Lab, c: &Check, timeout: Duration) -> Result<String, String> {
    match c.via {
        Via::Tcp(p) => lab
            .request(&c.from, c.to, p, Proto::Tcp, timeout)
            .map_err(|e| e.to_string()),
        Via::Udp(p) => lab
            .request(&c.from, c.to, p, Proto::Udp, timeout)
            .map_err(|e| e.to_string()),
        Via::Ping => {
            nftpolicy_lab::ping::ping(&c.from, c.to, timeout).map(|()| "echo reply".to_owned())
        }
    }
}

/// Runs every check in parallel; a check expected to connect that fails is
/// tried once more with a longer timeout. Panics listing every mismatch.
pub fn verify(lab: &Lab, step: &str, checks: &[Check]) {
    let run = |idx: &[usize], timeout: Duration| -> Vec<Result<String, String>> {
        let mut out = Vec::with_capacity(idx.len());
        for chunk in idx.chunks(48) {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|i| s.spawn(move || attempt(lab, &checks[*i], timeout)))
                    .collect();
                for h in handles {
                    out.push(h.join().unwrap_or_else(|_| Err("probe panicked".into())));
                }
            });
        }
        out
    };
    let all: Vec<usize> = (0..checks.len()).collect();
    let mut results = run(&all, T);
    let again: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| checks[*i].want && results[*i].is_err())
        .collect();
    for (i, r) in again.iter().zip(run(&again, RETRY)) {
        results[*i] = r;
    }
    let mut bad = Vec::new();
    for (c, r) in checks.iter().zip(&results) {
        let wrong = match (c.want, r) {
            (true, Ok(name)) => c.who.as_ref().is_some_and(|w| w != name),
            (true, Err(_)) => true,
            (false, Ok(_)) => true,
            (false, Err(_)) => false,
        };
        if wrong {
            bad.push(format!(
                "  {}: {} -> {} {}: want {}{}, got {}",
                c.what,
                c.from.name(),
                c.to,
                c.via,
                if c.want { "connected" } else { "blocked" },
                c.who
                    .as_ref()
                    .map(|w| format!(" (answered by {w})"))
                    .unwrap_or_default(),
                match r {
                    Ok(name) => format!("connected (answered by {name})"),
                    Err(e) => format!("blocked ({e})"),
                }
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{step}: {} of {} checks wrong:\n{}",
        bad.len(),
        checks.len(),
        bad.join("\n")
    );
}

pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Selector {
    Selector::labels(pairs)
}
