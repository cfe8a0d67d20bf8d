//! Evaluates a packet against a `Ruleset` the way the kernel walks it: base
//! chains of the hook in priority order, `accept` hands over to the next base
//! chain, `drop` is final, `jump` returns, a dispatch map `goto`s.
//!
//! Used by the property tests (the built model must agree with the policy
//! semantics) and to show which rules decided a packet.

use std::net::IpAddr;

use std::collections::HashMap;

use super::{AddrField, Chain, CtMatch, Family, Hook, Match, Ruleset, Verdict};
use crate::model::net::to_u128;
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

/// How a walk finds chains, set members and map targets: by scanning the
/// ruleset (one packet), or through an [`Index`] built once for many.
trait Tables {
    fn ruleset(&self) -> &Ruleset;
    fn chain(&self, name: &str) -> Option<&Chain>;
    fn in_set(&self, set: &str, addr: &IpAddr) -> bool;
    fn map_target(&self, map: &str, addr: &IpAddr) -> Option<&str>;
}

impl Tables for Ruleset {
    fn ruleset(&self) -> &Ruleset {
        self
    }
    fn chain(&self, name: &str) -> Option<&Chain> {
        Ruleset::chain(self, name)
    }
    fn in_set(&self, set: &str, addr: &IpAddr) -> bool {
        self.set(set).is_some_and(|s| s.contains(addr))
    }
    fn map_target(&self, map: &str, addr: &IpAddr) -> Option<&str> {
        self.map(map)
            .and_then(|m| m.elements.iter().find(|e| e.addr == *addr))
            .map(|e| e.chain.as_str())
    }
}

/// A ruleset indexed for judging many packets: chains and maps by name and
/// key, sets as sorted ranges searched in halves. Judges exactly as
/// [`trace`] does (the same walk).
pub struct Index<'r> {
    rs: &'r Ruleset,
    chains: HashMap<&'r str, &'r Chain>,
    sets: HashMap<&'r str, Vec<(u128, u128, Family)>>,
    maps: HashMap<(&'r str, IpAddr), &'r str>,
}

impl<'r> Index<'r> {
    /// Indexes `rs`.
    pub fn new(rs: &'r Ruleset) -> Self {
        let chains = rs.chains.iter().map(|c| (c.name.as_str(), c)).collect();
        let sets = rs
            .sets
            .iter()
            .map(|s| {
                let mut ranges: Vec<(u128, u128, Family)> = s
                    .elements
                    .iter()
                    .map(|e| (to_u128(e.range.first), to_u128(e.range.last), s.family))
                    .collect();
                ranges.sort_unstable();
                (s.name.as_str(), ranges)
            })
            .collect();
        let maps = rs
            .maps
            .iter()
            .flat_map(|m| {
                m.elements
                    .iter()
                    .map(move |e| ((m.name.as_str(), e.addr), e.chain.as_str()))
            })
            .collect();
        Self {
            rs,
            chains,
            sets,
            maps,
        }
    }

    /// The outcome of `packet` (what [`trace`] says, without the steps).
    pub fn verdict(&self, packet: &Packet) -> Outcome {
        run(self, packet, false).outcome
    }

    /// [`trace`] through the index.
    pub fn trace(&self, packet: &Packet) -> Trace {
        run(self, packet, true)
    }
}

impl Tables for Index<'_> {
    fn ruleset(&self) -> &Ruleset {
        self.rs
    }
    fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.get(name).copied()
    }
    fn in_set(&self, set: &str, addr: &IpAddr) -> bool {
        let Some(ranges) = self.sets.get(set) else {
            return false;
        };
        let (a, family) = (to_u128(*addr), Family::of(addr));
        // Elements are disjoint: the last range starting at or before `a`
        // is the only candidate.
        let i = ranges.partition_point(|(first, _, _)| *first <= a);
        i > 0 && {
            let (_, last, f) = ranges[i - 1];
            f == family && a <= last
        }
    }
    fn map_target(&self, map: &str, addr: &IpAddr) -> Option<&str> {
        self.maps.get(&(map, *addr)).copied()
    }
}

/// Walks `packet` through the base chains of its hook.
pub fn trace(ruleset: &Ruleset, packet: &Packet) -> Trace {
    run(ruleset, packet, true)
}

fn run<T: Tables>(t: &T, packet: &Packet, record: bool) -> Trace {
    let mut bases: Vec<_> = t
        .ruleset()
        .chains
        .iter()
        .filter_map(|c| {
            c.base
                .filter(|b| b.hook == packet.hook)
                .map(|b| (b.priority, c))
        })
        .collect();
    bases.sort_by_key(|(p, _)| *p);
    let mut w = Walk {
        pkt: packet,
        steps: Vec::new(),
        record,
        cost: Cost::default(),
    };
    for (_, chain) in bases {
        if let Flow::Drop = w.walk(t, &chain.name, 0) {
            return Trace {
                outcome: Outcome::Drop,
                steps: w.steps,
                cost: w.cost,
            };
        }
    }
    Trace {
        outcome: Outcome::Accept,
        steps: w.steps,
        cost: w.cost,
    }
}

/// One walk's state.
struct Walk<'p> {
    pkt: &'p Packet,
    steps: Vec<Step>,
    record: bool,
    cost: Cost,
}

impl Walk<'_> {
    /// Runs one chain; `Continue` means it ended without a verdict.
    fn walk<T: Tables>(&mut self, t: &T, chain: &str, depth: usize) -> Flow {
        // The kernel refuses loops; a bound keeps a malformed model from recursing forever.
        let Some(chain) = t.chain(chain).filter(|_| depth < 16) else {
            return Flow::Continue;
        };
        let pkt = self.pkt;
        for (index, rule) in chain.rules.iter().enumerate() {
            self.cost.rules += 1;
            if !rule.matches.iter().all(|m| {
                if let Match::AddrInSet { family, field, .. }
                | Match::AddrNotInSet { family, field, .. } = m
                {
                    // The family check runs first; only then the lookup.
                    if Family::of(&field_addr(pkt, *field)) == *family {
                        self.cost.lookups += 1;
                    }
                }
                matches(t, m, pkt)
            }) {
                continue;
            }
            if self.record {
                self.steps.push(Step {
                    chain: chain.name.clone(),
                    index,
                    rule: rule.to_string(),
                });
            }
            match &rule.verdict {
                Verdict::Accept => return Flow::Accept,
                Verdict::Drop | Verdict::Reject(_) => return Flow::Drop,
                Verdict::Jump(target) => match self.walk(t, target, depth + 1) {
                    Flow::Continue => {}
                    decided => return decided,
                },
                Verdict::Dispatch { family, field, map } => {
                    let addr = field_addr(pkt, *field);
                    if Family::of(&addr) != *family {
                        if self.record {
                            self.steps.pop();
                        }
                        continue;
                    }
                    self.cost.lookups += 1;
                    match t.map_target(map, &addr) {
                        // `goto`: whatever the target decides ends this chain too.
                        Some(target) => return self.walk(t, target, depth + 1),
                        None => {
                            if self.record {
                                self.steps.pop();
                            }
                        }
                    }
                }
            }
        }
        Flow::Continue
    }
}

fn field_addr(pkt: &Packet, field: AddrField) -> IpAddr {
    match field {
        AddrField::Source => pkt.src,
        AddrField::Destination => pkt.dst,
    }
}

fn matches<T: Tables>(t: &T, m: &Match, pkt: &Packet) -> bool {
    match m {
        Match::Ct(CtMatch::EstablishedRelated) => pkt.ct == CtState::Established,
        Match::Ct(CtMatch::Invalid) => pkt.ct == CtState::Invalid,
        Match::AddrInSet { family, field, set } => {
            let addr = field_addr(pkt, *field);
            Family::of(&addr) == *family && t.in_set(set, &addr)
        }
        Match::AddrNotInSet { family, field, set } => {
            let addr = field_addr(pkt, *field);
            Family::of(&addr) == *family && !t.in_set(set, &addr)
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
