//! "See why": the flow events of drop and allow logging, from the kernel's
//! NFLOG records to logs, metrics and the live stream of
//! `kube-nftpolicy observe` (`docs/observability.md`).
//!
//! ```text
//!  kernel: log prefix "knp:<id>:drop" group G ──NFLOG──► reader thread (reader.rs)
//!    record ─► Event (context.rs: id → pod, direction, policies from the
//!              LogMap of the applied ruleset; addresses → pods from its snapshot)
//!           ─► dedupe (dedupe.rs: identical flows within 1 s folded, repeats counted)
//!           ─► tracing event (JSON with --log-format json), metrics, Hub (hub.rs)
//!                                                               └► GET /events ─► observe
//! ```
//!
//! The reader runs on its own thread and never waits for the sync loop:
//! the dataplane thread only swaps the [`context::Shared`] map after each
//! apply. A record whose id no recent ruleset knows is reported as an
//! unknown event, never dropped silently, never a crash.

pub mod context;
pub mod dedupe;
pub mod hub;
pub mod reader;
mod time;

use serde::{Deserialize, Serialize};

pub use context::{Applied, Shared};
pub use hub::Hub;
pub use time::rfc3339;

/// One end of a flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The pod's namespace, when the address is a known pod's.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
    /// The pod's name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<String>,
    /// The address.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ip: Option<String>,
    /// The TCP, UDP or SCTP port.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub port: Option<u16>,
}

impl Peer {
    /// `ns/pod`, when known.
    pub fn name(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.namespace.as_ref()?,
            self.pod.as_ref()?
        ))
    }
}

/// A logged verdict on one flow, as logs and `observe` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When the packet was seen (RFC 3339, UTC).
    pub time: String,
    /// The node whose agent logged it.
    pub node: String,
    /// `drop` or `allow`.
    pub verdict: String,
    /// `ingress` or `egress` of the pod the rule belongs to (none when the
    /// id is unknown).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub direction: Option<String>,
    /// `tcp`, `udp`, `sctp`, `icmp`, `icmpv6`, or the protocol number.
    pub protocol: String,
    /// The sender.
    pub src: Peer,
    /// The receiver.
    pub dst: Peer,
    /// ICMP type, for ICMP.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub icmp_type: Option<u8>,
    /// Drop: every policy isolating the pod in that direction (none allowed
    /// the flow). Allow: the policy whose rule accepted it.
    pub policies: Vec<String>,
    /// The log id of the rule (`knp:<id>:<verdict>`).
    pub id: String,
    /// No recent ruleset of this agent has the id: names are missing.
    #[serde(default)]
    pub unknown: bool,
    /// Identical records (same addresses, protocol, port and verdict)
    /// folded into this event in the second after the first one; the first
    /// is reported at once with 0.
    #[serde(default)]
    pub repeats: u64,
}

impl Event {
    /// One line, `hubble observe` style:
    /// `TIME node DROPPED ingress tcp shop/api (10.0.1.2:40000) -> shop/db (10.0.0.2:5432) policies: …`.
    pub fn text(&self) -> String {
        let end = |p: &Peer| {
            let addr = match (&p.ip, p.port) {
                (Some(ip), Some(port)) if ip.contains(':') => format!("[{ip}]:{port}"),
                (Some(ip), Some(port)) => format!("{ip}:{port}"),
                (Some(ip), None) => ip.clone(),
                (None, _) => "?".to_owned(),
            };
            match p.name() {
                Some(n) => format!("{n} ({addr})"),
                None => addr,
            }
        };
        let verdict = match self.verdict.as_str() {
            "drop" => "DROPPED",
            "allow" => "ALLOWED",
            v => v,
        };
        let mut line = format!(
            "{} {} {verdict} {} {} {} -> {}",
            self.time,
            self.node,
            self.direction.as_deref().unwrap_or("?"),
            self.protocol,
            end(&self.src),
            end(&self.dst)
        );
        if let Some(t) = self.icmp_type {
            line.push_str(&format!(" type {t}"));
        }
        if self.unknown {
            line.push_str(&format!(" unknown id {}", self.id));
        } else if !self.policies.is_empty() {
            let what = if self.verdict == "drop" {
                "isolated by"
            } else {
                "allowed by"
            };
            line.push_str(&format!(" {what} {}", self.policies.join(", ")));
        }
        if self.repeats > 0 {
            line.push_str(&format!(" (repeated {} more times)", self.repeats));
        }
        line
    }
}

/// What a client of the stream wants to see; empty fields match all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Either end is a pod of this namespace.
    pub namespace: Option<String>,
    /// Either end is this pod (`name`, or `ns/name`).
    pub pod: Option<String>,
    /// `drop` or `allow`.
    pub verdict: Option<String>,
}

impl Filter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        let ends = [&e.src, &e.dst];
        let ns_ok = self.namespace.as_ref().is_none_or(|ns| {
            ends.iter()
                .any(|p| p.namespace.as_deref() == Some(ns.as_str()))
        });
        let pod_ok = self.pod.as_ref().is_none_or(|want| {
            ends.iter().any(|p| match want.split_once('/') {
                Some(_) => p.name().as_deref() == Some(want.as_str()),
                None => p.pod.as_deref() == Some(want.as_str()),
            })
        });
        let verdict_ok = self.verdict.as_ref().is_none_or(|v| *v == e.verdict);
        ns_ok && pod_ok && verdict_ok
    }

    /// Reads `namespace=..&pod=..&verdict=..` (unknown keys are an error).
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut f = Filter::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            let v = (!v.is_empty()).then_some(v);
            match k {
                "namespace" => f.namespace = v,
                "pod" => f.pod = v,
                "verdict" => match v.as_deref() {
                    None | Some("drop") | Some("allow") => f.verdict = v,
                    Some(other) => return Err(format!("verdict {other:?}: use drop or allow")),
                },
                _ => return Err(format!("unknown parameter {k:?}")),
            }
        }
        Ok(f)
    }

    /// The query string of this filter (the inverse of `from_query`).
    pub fn to_query(&self) -> String {
        let parts: Vec<String> = [
            ("namespace", &self.namespace),
            ("pod", &self.pod),
            ("verdict", &self.verdict),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", v.replace('/', "%2F"))))
        .collect();
        parts.join("&")
    }
}

/// `%2F` → `/` and friends; malformed escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
