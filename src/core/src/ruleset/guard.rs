//! The rules that guard the node before any policy is asked: flows a
//! policy change no longer allows, and addresses of the node's pod CIDRs
//! that no known pod has.
//!
//! - **Cut flows.** The agent re-judges established flows after a commit
//!   and sets a conntrack mark bit on those the table now denies; the
//!   first rule of each egress base chain drops them (before the
//!   `ct state established,related accept` that would let them through).
//!   Every forwarded packet passes `forward-egress` first, in both
//!   directions, so one rule per hook suffices.
//! - **The gate.** The node's pod CIDRs hold the addresses the CNI gives
//!   this node's pods. A pod whose address the agent has not seen yet (it
//!   was just created, or the agent is restarting) must not talk until its
//!   rules are in: a packet from (egress chains) or to (`forward-ingress`)
//!   an address of those CIDRs that is not a known local pod or one of the
//!   node's own addresses (the `cni0` gateway, `flannel.1`) is rejected,
//!   and counted. Known pods are every local pod with an address, selected
//!   by a policy or not, updated in the same batch as their rules.
//!   Node-originated traffic (kubelet probes) leaves through the output
//!   hook, which has no chain of ours, and replies to it are established.
//!   The gate's rules come after the established, neighbour-discovery and
//!   invalid rules.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{names, AddrField, AddrRange, AddrSet, Family, Match, Rule, SetElement, Verdict};
use crate::model::Direction;
use crate::resolve::Resolution;

/// What the gate needs to know about the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gate {
    /// The node's pod CIDRs (from the Node object or a flag).
    pub pod_cidrs: Vec<IpNet>,
    /// The node's own addresses (any interface); those inside a pod CIDR
    /// are always let through.
    pub node_addrs: Vec<IpAddr>,
}

pub use super::names::{gate_cidr_set as cidr_set, gate_known_set as known_set};

/// The families the gate guards (those with a pod CIDR).
fn families(gate: &Gate) -> Vec<Family> {
    Family::ALL
        .into_iter()
        .filter(|f| gate.pod_cidrs.iter().any(|c| Family::of_net(c) == *f))
        .collect()
}

/// The gate's sets: per guarded family, the CIDRs and the known addresses.
pub fn sets(gate: &Gate, resolution: &Resolution) -> Vec<AddrSet> {
    let mut out = Vec::new();
    for family in families(gate) {
        let mut cidrs: Vec<SetElement> = gate
            .pod_cidrs
            .iter()
            .filter(|c| Family::of_net(c) == family)
            .map(|c| SetElement {
                range: AddrRange {
                    first: c.network(),
                    last: c.broadcast(),
                },
                comment: Some("pod CIDR of this node".into()),
            })
            .collect();
        cidrs.sort();
        cidrs.dedup_by(|a, b| a.range == b.range);
        let inside = |ip: &IpAddr| {
            gate.pod_cidrs
                .iter()
                .any(|c| Family::of_net(c) == family && c.contains(ip))
        };
        let pods = resolution.pods.iter().flat_map(|p| {
            p.ips.iter().map(move |ip| SetElement {
                range: AddrRange::single(*ip),
                comment: Some(names::comment(&p.key.to_string()).into()),
            })
        });
        let node = gate.node_addrs.iter().map(|ip| SetElement {
            range: AddrRange::single(*ip),
            comment: Some("this node".into()),
        });
        let mut known: Vec<SetElement> = pods
            .chain(node)
            .filter(|e| Family::of(&e.range.first) == family && inside(&e.range.first))
            .collect();
        known.sort();
        known.dedup_by(|a, b| a.range == b.range);
        out.push(AddrSet {
            name: cidr_set(family),
            family,
            interval: true,
            comment: "this node's pod CIDRs".into(),
            elements: cidrs.into(),
        });
        out.push(AddrSet {
            name: known_set(family),
            family,
            interval: false,
            comment: "known addresses of the pod CIDRs: local pods and this node".into(),
            elements: known.into(),
        });
    }
    out
}

/// The gate's rules for a base chain of `dir` (egress chains judge the
/// source, the ingress chain the destination).
pub fn gate_rules(gate: &Gate, dir: Direction) -> Vec<Rule> {
    let field = match dir {
        Direction::Egress => AddrField::Source,
        Direction::Ingress => AddrField::Destination,
    };
    families(gate)
        .into_iter()
        .map(|family| {
            Rule::new(
                vec![
                    Match::AddrInSet {
                        family,
                        field,
                        set: cidr_set(family),
                    },
                    Match::AddrNotInSet {
                        family,
                        field,
                        set: known_set(family),
                    },
                ],
                Verdict::Reject(family),
            )
            .counted()
            .comment(names::gate_rule_comment(dir))
        })
        .collect()
}

/// The first rule of an egress base chain: drop the flows marked as cut.
pub fn cut_rule(mark: u32) -> Rule {
    Rule::new(vec![Match::CtMarkBit(mark)], Verdict::Drop)
        .counted()
        .comment("flows a policy change no longer allows (cut)")
}
