//! Evaluates a packet against a `Ruleset` the way the kernel walks it: base
//! chains of the hook in priority order, `accept` hands over to the next base
//! chain, `drop` is final, `jump` returns, a dispatch map `goto`s.
//!
//! Used by the property tests (the built model must agree with the policy
//! semantics) and to show which rules decided a packet.

use std::net::IpAddr;

use super::{AddrField, CtMatch, Family, Hook, Match, Ruleset, Verdict};
use crate::model::Protocol;

/// The layer-4 part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP, UDP or SCTP to a destination port.
    Port {
        /// The protocol.
        protocol: Protocol,
        /// Destination port.
        port: u16,
    },
    /// ICMP (IPv4) or ICMPv6 with its type.
    Icmp {
        /// The ICMP type.
        icmp_type: u8,
    },
}

/// What conntrack says of the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtState {
    /// The first packet of a flow.
    New,
    /// A packet of a flow already accepted (or related to one).
    Established,
    /// A packet conntrack could not make sense of.
    Invalid,
}

/// A packet at a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (after any DNAT).
    pub dst: IpAddr,
    /// Protocol and port.
    pub l4: L4,
    /// Conntrack state.
    pub ct: CtState,
    /// Where the packet is seen.
    pub hook: Hook,
    /// The flow's conntrack mark (0 for a new flow).
    pub mark: u32,
}

/// The end of a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every base chain let it pass.
    Accept,
    /// A rule dropped it.
    Drop,
}

/// One rule that matched on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The chain.
    pub chain: String,
    /// The rule's position in the chain.
    pub index: usize,
    /// The rule as nft prints it.
    pub rule: String,
}

/// The outcome and the rules that matched, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Accepted or dropped.
    pub outcome: Outcome,
    /// Every matching rule, in walk order.
    pub steps: Vec<Step>,
    /// What the walk cost the kernel.
    pub cost: Cost,
}

/// The work of a walk as the kernel does it: every rule it starts to
/// evaluate, and every set or map lookup it reaches (the matches of a rule
/// run in order and stop at the first that fails).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Rules evaluated, matching or not.
    pub rules: usize,
    /// Set and verdict-map lookups done.
    pub lookups: usize,
}

enum Flow {
    Continue,
    Accept,
    Drop,
}

/// Walks `packet` through the base chains of its hook.
pub fn trace(ruleset: &Ruleset, packet: &Packet) -> Trace {
    let mut bases: Vec<_> = ruleset
        .chains
        .iter()
        .filter_map(|c| {
            c.base
                .filter(|b| b.hook == packet.hook)
                .map(|b| (b.priority, c))
        })
        .collect();
    bases.sort_by_key(|(p, _)| *p);
    let mut steps = Vec::new();
    let mut cost = Cost::default();
    for (_, chain) in bases {
        if let Flow::Drop = walk(ruleset, &chain.name, packet, &mut steps, &mut cost, 0) {
            return Trace {
                outcome: Outcome::Drop,
                steps,
                cost,
            };
        }
    }
    Trace {
        outcome: Outcome::Accept,
        steps,
        cost,
    }
}

/// Runs one chain; `Continue` means it ended without a verdict.
fn walk(
    rs: &Ruleset,
    chain: &str,
    pkt: &Packet,
    steps: &mut Vec<Step>,
    cost: &mut Cost,
    depth: usize,
) -> Flow {
    // The kernel refuses loops; a bound keeps a malformed model from recursing forever.
    let Some(chain) = rs.chain(chain).filter(|_| depth < 16) else {
        return Flow::Continue;
    };
    for (index, rule) in chain.rules.iter().enumerate() {
        cost.rules += 1;
        if !rule.matches.iter().all(|m| {
            if let Match::AddrInSet { family, field, .. }
            | Match::AddrNotInSet { family, field, .. } = m
            {
                // The family check runs first; only then the lookup.
                if Family::of(&field_addr(pkt, *field)) == *family {
                    cost.lookups += 1;
                }
            }
            matches(rs, m, pkt)
        }) {
            continue;
        }
        let step = |steps: &mut Vec<Step>| {
            steps.push(Step {
                chain: chain.name.clone(),
                index,
                rule: rule.to_string(),
            })
        };
        match &rule.verdict {
            Verdict::Accept => {
                step(steps);
                return Flow::Accept;
            }
            Verdict::Drop | Verdict::Reject(_) => {
                step(steps);
                return Flow::Drop;
            }
            Verdict::Jump(target) => {
                step(steps);
                match walk(rs, target, pkt, steps, cost, depth + 1) {
                    Flow::Continue => {}
                    decided => return decided,
                }
            }
            Verdict::Dispatch { family, field, map } => {
                let addr = field_addr(pkt, *field);
                if Family::of(&addr) != *family {
                    continue;
                }
                cost.lookups += 1;
                let target = rs
                    .map(map)
                    .and_then(|m| m.elements.iter().find(|e| e.addr == addr));
                if let Some(element) = target {
                    step(steps);
                    // `goto`: whatever the target decides ends this chain too.
                    return walk(rs, &element.chain, pkt, steps, cost, depth + 1);
                }
            }
        }
    }
    Flow::Continue
}

fn field_addr(pkt: &Packet, field: AddrField) -> IpAddr {
    match field {
        AddrField::Source => pkt.src,
        AddrField::Destination => pkt.dst,
    }
}

fn matches(rs: &Ruleset, m: &Match, pkt: &Packet) -> bool {
    match m {
        Match::Ct(CtMatch::EstablishedRelated) => pkt.ct == CtState::Established,
        Match::Ct(CtMatch::Invalid) => pkt.ct == CtState::Invalid,
        Match::AddrInSet { family, field, set } => {
            let addr = field_addr(pkt, *field);
            Family::of(&addr) == *family && rs.set(set).is_some_and(|s| s.contains(&addr))
        }
        Match::AddrNotInSet { family, field, set } => {
            let addr = field_addr(pkt, *field);
            Family::of(&addr) == *family && !rs.set(set).is_some_and(|s| s.contains(&addr))
        }
        Match::CtMarkBit(bit) => pkt.mark & bit == *bit,
        Match::AddrIs { field, addr } => field_addr(pkt, *field) == *addr,
        Match::L4Proto(p) => matches!(pkt.l4, L4::Port { protocol, .. } if protocol == *p),
        Match::DestPort { protocol, ports } => {
            matches!(pkt.l4, L4::Port { protocol: p, port } if p == *protocol && ports.contains(port))
        }
        Match::Icmpv6NeighbourDiscovery => {
            Family::of(&pkt.src) == Family::V6
                && matches!(pkt.l4, L4::Icmp { icmp_type } if (133..=136).contains(&icmp_type))
        }
    }
}
