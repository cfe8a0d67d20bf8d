//! `explain`: why one flow is allowed or dropped, told from the policies.
//!
//! Works on the `Snapshot` for any two endpoints, wherever their pods run:
//! the source's egress and the destination's ingress are judged on their own
//! and the flow passes only if both allow it. Each policy is compiled by the
//! resolver's own [`Compiler`](super::Compiler) and each rule judged by
//! [`ResolvedRule::allows`](super::ResolvedRule::allows): `explain` has no
//! peer or port semantics of its own. Pure; the CLI prints it.

use std::net::IpAddr;

use serde::Serialize;

use super::index::Index;
use super::Compiler;
use crate::model::{Direction, NamespacedName, Pod, Protocol, Snapshot};

/// One end of a flow as the user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `ns/pod`.
    Pod(NamespacedName),
    /// An address (a pod's, when an active pod has it).
    Addr(IpAddr),
}

/// A flow to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Who opens the connection.
    pub from: Endpoint,
    /// Who receives it.
    pub to: Endpoint,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
}

/// Why a flow cannot be explained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// The named pod is not in the snapshot.
    #[error("pod {0} not found")]
    NoSuchPod(String),
    /// The two ends share no IP family.
    #[error("{from} and {to} have no IP family in common")]
    NoCommonFamily {
        /// Source.
        from: String,
        /// Destination.
        to: String,
    },
}

/// A policy rule that allowed the flow on one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    /// `ns/policy`.
    pub policy: String,
    /// Index in `spec.ingress` / `spec.egress`.
    pub rule: usize,
}

/// How one side (egress of the source, ingress of the destination) judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SideResult {
    /// The endpoint is not a pod: no policy applies on this side.
    NotAPod,
    /// The pod takes no part in policy (hostNetwork, no IP, finished).
    Ignored,
    /// No policy isolates the pod in this direction.
    NotIsolated,
    /// Isolated, and at least one rule allows the flow.
    Allowed,
    /// Isolated, and no rule allows the flow.
    Denied,
}

/// One side's verdict with its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// `ingress` or `egress`.
    pub direction: String,
    /// The pod judged on this side, if any.
    pub pod: Option<String>,
    /// The verdict of this side.
    pub result: SideResult,
    /// Why a pod is ignored, when it is.
    pub note: Option<String>,
    /// Policies that isolate the pod in this direction.
    pub isolated_by: Vec<String>,
    /// Rules that allow the flow.
    pub allowed_by: Vec<RuleRef>,
}

impl Side {
    fn passes(&self) -> bool {
        self.result != SideResult::Denied
    }
}

/// The verdict on a flow and the reasons on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Both sides allow it.
    pub allowed: bool,
    /// Source address used.
    pub from: IpAddr,
    /// Destination address used.
    pub to: IpAddr,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Destination port.
    pub port: u16,
    /// The source's egress.
    pub egress: Side,
    /// The destination's ingress.
    pub ingress: Side,
}

/// Explains `flow` against `snapshot`.
pub fn explain(snapshot: &Snapshot, flow: &Flow) -> Result<Explanation, ExplainError> {
    let from_pod = endpoint_pod(snapshot, &flow.from)?;
    let to_pod = endpoint_pod(snapshot, &flow.to)?;
    let (from, to) = addresses(&flow.from, from_pod, &flow.to, to_pod)?;
    let index = Index::new(snapshot);
    let mut compiler = Compiler::new(snapshot, &index);
    let egress = judge(
        snapshot,
        &mut compiler,
        (Direction::Egress, from_pod),
        (to, to),
        flow,
    );
    let ingress = judge(
        snapshot,
        &mut compiler,
        (Direction::Ingress, to_pod),
        (from, to),
        flow,
    );
    Ok(Explanation {
        allowed: egress.passes() && ingress.passes(),
        from,
        to,
        protocol: flow.protocol.to_string(),
        port: flow.port,
        egress,
        ingress,
    })
}

fn endpoint_pod<'a>(s: &'a Snapshot, e: &Endpoint) -> Result<Option<&'a Pod>, ExplainError> {
    match e {
        Endpoint::Pod(key) => s
            .pods
            .get(key)
            .map(|p| Some(&**p))
            .ok_or_else(|| ExplainError::NoSuchPod(key.to_string())),
        Endpoint::Addr(ip) => Ok(s
            .pods
            .values()
            .find(|p| p.ignored().is_none() && p.ips.contains(ip))
            .map(|p| &**p)),
    }
}

/// Picks the addresses of the flow: the ones given, else the first family
/// both ends have (IPv4 first).
fn addresses(
    from: &Endpoint,
    from_pod: Option<&Pod>,
    to: &Endpoint,
    to_pod: Option<&Pod>,
) -> Result<(IpAddr, IpAddr), ExplainError> {
    let candidates = |e: &Endpoint, p: Option<&Pod>| -> Vec<IpAddr> {
        match (e, p) {
            (Endpoint::Addr(ip), _) => vec![*ip],
            (_, Some(p)) => p.ips.clone(),
            (_, None) => vec![],
        }
    };
    let (fs, ts) = (candidates(from, from_pod), candidates(to, to_pod));
    for v6 in [false, true] {
        let f = fs.iter().find(|a| a.is_ipv6() == v6);
        let t = ts.iter().find(|a| a.is_ipv6() == v6);
        if let (Some(f), Some(t)) = (f, t) {
            return Ok((*f, *t));
        }
    }
    let name = |e: &Endpoint| match e {
        Endpoint::Pod(k) => k.to_string(),
        Endpoint::Addr(a) => a.to_string(),
    };
    Err(ExplainError::NoCommonFamily {
        from: name(from),
        to: name(to),
    })
}

/// Judges one side: `pod` is the pod whose policies apply in `dir`, `peer`
/// the other end's address, `dst` the flow's destination (named ports
/// resolve against it).
fn judge(
    s: &Snapshot,
    compiler: &mut Compiler<'_>,
    (dir, pod): (Direction, Option<&Pod>),
    (peer, dst): (IpAddr, IpAddr),
    flow: &Flow,
) -> Side {
    let mut side = Side {
        direction: dir.to_string(),
        pod: pod.map(|p| p.key().to_string()),
        result: SideResult::NotAPod,
        note: None,
        isolated_by: vec![],
        allowed_by: vec![],
    };
    let Some(pod) = pod else { return side };
    if let Some(why) = pod.ignored() {
        side.result = SideResult::Ignored;
        side.note = Some(why.to_string());
        return side;
    }
    for (key, policy) in &s.policies {
        if !policy.isolates(dir) || !policy.selects(pod) {
            continue;
        }
        side.isolated_by.push(key.to_string());
        for rule in compiler.rules(policy, dir, &[pod]) {
            if rule.allows(peer, dst, flow.protocol, flow.port) {
                side.allowed_by.push(RuleRef {
                    policy: key.to_string(),
                    rule: rule.index,
                });
            }
        }
    }
    side.result = match (side.isolated_by.is_empty(), side.allowed_by.is_empty()) {
        (true, _) => SideResult::NotIsolated,
        (false, false) => SideResult::Allowed,
        (false, true) => SideResult::Denied,
    };
    side
}
