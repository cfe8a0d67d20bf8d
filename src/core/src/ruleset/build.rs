//! `build`: from a `Resolution` to the `Ruleset`, in a fixed order.
//!
//! Layout (`docs/ruleset.md`): base chains whose first rules accept
//! established traffic and neighbour discovery, then dispatch each packet by
//! the local pod's address to that pod's chain. A pod chain holds every
//! allow of the policies that select the pod, merged: the allows on every
//! port in one lookup per family, then, per protocol, disjoint port ranges
//! each with one lookup of the peers allowed there; it ends in a counted
//! drop. A new flow thus does one address lookup for the rules on every
//! port and at most one for its port, however many policies select the
//! pod. The peers merged into one lookup are the union of the policy
//! rules' peer sets, shared by every pod chain that merges the same ones;
//! a peer set too large to copy ([`MERGE_LIMIT`]) keeps its own set and
//! rule. Rule comments name the policy rules, set comments the peer
//! definitions, elements their pods or blocks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use super::{guard, names};
use super::{
    AddrField, AddrSet, BaseChain, Chain, CtMatch, Elements, Family, Hook, MapElement, Match,
    PortRange, Protocol, Rule, Ruleset, SetElement, Verdict, VerdictMap,
};
use crate::model::{Direction, NamespacedName, Peer};
use crate::resolve::{
    normalise, Addr, LocalPod, NamedPort, PeerSet, Peers, Ports, Resolution, ResolvedPolicy,
    SetKey, UnionMember,
};

/// Peer sets with more addresses of one family than this are not copied
/// into unions: each keeps its one shared set and gets its own rule in the
/// pod chains that use it (a union of large namespace-wide sets per pod
/// would cost more memory and build time than the lookup it saves).
pub const MERGE_LIMIT: usize = 256;

/// Every port of a protocol.
const ALL_PORTS: PortRange = PortRange {
    first: 0,
    last: u16::MAX,
};

/// Priority of the egress base chains: before ingress, so that an egress
/// `accept` hands the packet on to the ingress chain of the same hook.
pub const EGRESS_PRIORITY: i32 = -1;
/// Priority of the ingress base chain.
pub const INGRESS_PRIORITY: i32 = 0;

/// What the node adds to the policies: the guards of `guard.rs`. The
/// default (no guard) is the table the policies alone make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Reject traffic of pod addresses not known yet ([`guard::Gate`]).
    pub gate: Option<guard::Gate>,
    /// Drop flows whose conntrack mark has this bit (flows cut by the agent).
    pub cut_mark: Option<u32>,
}

/// What the last build made, for the next: each set's elements with the
/// peer sets they were made of, and each pod chain with the compiled
/// policies it was planned from. A build given the cache reuses the
/// elements of a set whose peer sets are the very same (`Rc::ptr_eq`: the
/// incremental resolver hands unchanged peer sets over as they were), and
/// a pod chain whose policies compiled to the same rules (and whose sets
/// keep their names), instead of writing them again with their names and
/// comments. It keeps the peer sets alive, so an address cannot be reused
/// by another set meanwhile; it is not `Send` and lives with the resolver.
#[derive(Debug, Default)]
pub struct BuildCache {
    sets: HashMap<String, Cached>,
    /// The pod chains, in the order of the local pods (by key) and of
    /// `Direction::ALL`: the next build walks them beside its own.
    chains: Vec<((NamespacedName, Direction), CachedChain)>,
    /// The set ids of the last build: the ids of the keys its pod chains
    /// look up, which the next build keeps when it takes every pod chain
    /// from the cache and no other.
    ids: Option<names::SetIds>,
    /// The dispatch maps of the last build and the local pods they were
    /// made of.
    maps: Option<(Rc<Vec<LocalPod>>, Vec<VerdictMap>)>,
    /// The (key, direction) of each compiled policy of the last build, in
    /// order: while they and the local pods stay, each pod chain's
    /// policies are at the positions it recorded, and no name is hashed.
    policies: Vec<(NamespacedName, Direction)>,
    reused_sets: usize,
    reused_chains: usize,
}

/// Whether the dispatch maps of `a` and `b` are the same: they read each
/// local pod's key, addresses, and whether policies isolate it in each
/// direction (the incremental resolver hands the same list over while no
/// selection changed).
fn same_dispatch(a: &Rc<Vec<LocalPod>>, b: &Rc<Vec<LocalPod>>) -> bool {
    let isolated = |p: &LocalPod| Direction::ALL.map(|d| !p.policies(d).is_empty());
    Rc::ptr_eq(a, b)
        || (a.len() == b.len()
            && a.iter()
                .zip(b.iter())
                .all(|(p, q)| p.key == q.key && p.ips == q.ips && isolated(p) == isolated(q)))
}

/// A set of the last build.
#[derive(Debug)]
struct Cached {
    family: Family,
    comment: String,
    members: Vec<(Rc<PeerSet>, Option<u16>)>,
    elements: Elements,
    /// Whether any element is a range (`flags interval`).
    interval: bool,
}

/// A pod chain of the last build.
#[derive(Debug)]
struct CachedChain {
    /// The compiled policies it was planned from, in the pod's order.
    inputs: Vec<Rc<ResolvedPolicy>>,
    /// Their positions in the resolution's policies.
    positions: Vec<usize>,
    chain: Chain,
    /// The sets its rules look up, in order.
    sets: Vec<ChainSet>,
}

/// A set a cached pod chain looks up.
#[derive(Debug)]
struct ChainSet {
    key: SetKey,
    id: String,
    name: String,
    family: Family,
    /// The peer sets it is made of: their keys, and the port of a named port.
    members: Vec<(SetKey, Option<u16>)>,
}

/// How a cached pod chain is taken.
#[derive(Debug, Clone, Copy)]
enum Reuse {
    /// Its policies compiled to the same rules: its sets are as they were.
    AsItWas,
    /// Only the contents of its peer sets changed, not what the plan reads
    /// of them: the chain is the same, its sets are made again.
    WithNewSets,
}

/// Whether two compilations of a policy plan the same pod chain: the same
/// rules and ports, and peer sets of the same keys that differ at most in
/// addresses the plan does not look at (which families are empty, and
/// whether each is small enough to merge).
fn same_shape(a: &ResolvedPolicy, b: &ResolvedPolicy, merge_limit: usize) -> bool {
    let sets = |x: &PeerSet, y: &PeerSet| {
        x.key == y.key
            && Family::ALL.iter().all(|&f| {
                let (p, q) = (x.addrs.family(f), y.addrs.family(f));
                p.is_empty() == q.is_empty() && (p.len() <= merge_limit) == (q.len() <= merge_limit)
            })
    };
    let named = |x: &NamedPort, y: &NamedPort| match (x, y) {
        (
            NamedPort::Peers {
                protocol: p1,
                port: n1,
                name: m1,
                set: s1,
            },
            NamedPort::Peers {
                protocol: p2,
                port: n2,
                name: m2,
                set: s2,
            },
        ) => p1 == p2 && n1 == n2 && m1 == m2 && sets(s1, s2),
        _ => x == y,
    };
    let ports = |x: &Ports, y: &Ports| match (x, y) {
        (
            Ports::Listed {
                numeric: n1,
                named: m1,
            },
            Ports::Listed {
                numeric: n2,
                named: m2,
            },
        ) => n1 == n2 && m1.len() == m2.len() && m1.iter().zip(m2).all(|(p, q)| named(p, q)),
        _ => x == y,
    };
    a.key == b.key
        && a.direction == b.direction
        && a.rules.len() == b.rules.len()
        && a.rules.iter().zip(&b.rules).all(|(x, y)| {
            x.index == y.index
                && (Rc::ptr_eq(&x.ports, &y.ports) || ports(&x.ports, &y.ports))
                && match (&x.peers, &y.peers) {
                    (Peers::Any, Peers::Any) => true,
                    (Peers::Addrs(p), Peers::Addrs(q)) => sets(p, q),
                    _ => false,
                }
        })
}

impl BuildCache {
    /// How many sets the last build took from the cache.
    pub fn reused_sets(&self) -> usize {
        self.reused_sets
    }

    /// How many pod chains the last build took from the cache.
    pub fn reused_chains(&self) -> usize {
        self.reused_chains
    }
}

/// Builds the ruleset for a resolution.
pub fn build(resolution: &Resolution) -> Ruleset {
    build_with(resolution, &Options::default())
}

/// Builds the ruleset for a resolution, with the node's guards.
pub fn build_with(resolution: &Resolution, opts: &Options) -> Ruleset {
    build_with_hash(resolution, opts, names::hash64)
}

/// [`build_with`], reusing the elements of the sets of the last build
/// whose peer sets did not change, and keeping this build's for the next.
/// The ruleset is the one [`build_with`] makes.
pub fn build_cached(resolution: &Resolution, opts: &Options, cache: &mut BuildCache) -> Ruleset {
    build_inner(resolution, opts, names::hash64, MERGE_LIMIT, Some(cache))
}

/// [`build_with`], with set ids made from `hash` instead of the usual hash:
/// tests use a constant to force every set id to collide.
pub fn build_with_hash(resolution: &Resolution, opts: &Options, hash: fn(&str) -> u64) -> Ruleset {
    build_inner(resolution, opts, hash, MERGE_LIMIT, None)
}

/// [`build_with`], with `merge_limit` in place of [`MERGE_LIMIT`]: the
/// benchmark measures what the limit trades (set elements and build time
/// against lookups per new flow).
pub fn build_with_merge_limit(
    resolution: &Resolution,
    opts: &Options,
    merge_limit: usize,
) -> Ruleset {
    build_inner(resolution, opts, names::hash64, merge_limit, None)
}

fn build_inner(
    resolution: &Resolution,
    opts: &Options,
    hash: fn(&str) -> u64,
    merge_limit: usize,
    mut cache: Option<&mut BuildCache>,
) -> Ruleset {
    let mut rs = Ruleset::default();
    let dispatch_maps = || -> Vec<VerdictMap> {
        Direction::ALL
            .into_iter()
            .flat_map(|dir| Family::ALL.map(|family| dispatch_map(resolution, dir, family)))
            .collect()
    };
    // The same local pods and compiled policies (by key) as the last build.
    let same_pods = cache.as_deref().is_some_and(|c| {
        c.maps
            .as_ref()
            .is_some_and(|(was, _)| Rc::ptr_eq(was, &resolution.pods))
    });
    let same_policies = cache.as_deref().is_some_and(|c| {
        c.policies.len() == resolution.policies.len()
            && c.policies
                .iter()
                .zip(&resolution.policies)
                .all(|((key, dir), p)| *dir == p.direction && *key == p.key)
    });
    let at_recorded_positions = same_pods && same_policies;
    rs.maps = match cache.as_deref_mut() {
        Some(c) => {
            let maps = match c.maps.take() {
                Some((was, maps)) if same_dispatch(&was, &resolution.pods) => maps,
                _ => dispatch_maps(),
            };
            c.maps = Some((Rc::clone(&resolution.pods), maps.clone()));
            maps
        }
        None => dispatch_maps(),
    };
    if let Some(gate) = &opts.gate {
        rs.sets = guard::sets(gate, resolution);
    }
    rs.chains
        .push(base_chain(Hook::Forward, Direction::Egress, opts));
    rs.chains
        .push(base_chain(Hook::Forward, Direction::Ingress, opts));
    rs.chains
        .push(base_chain(Hook::Input, Direction::Egress, opts));
    // Positions of the compiled policies by key, made when first needed.
    let mut by_key: Option<HashMap<(&NamespacedName, Direction), usize>> = None;
    // Each pod chain: taken from the cache when its policies compiled to
    // the same rules, else planned.
    let prev_chains = cache
        .as_deref_mut()
        .map(|c| std::mem::take(&mut c.chains))
        .unwrap_or_default();
    let cached_chains = prev_chains.len();
    let mut prev_chains = prev_chains.into_iter().peekable();
    let mut taken = 0;
    let mut work = Vec::new();
    for pod in resolution.pods.iter() {
        for dir in Direction::ALL {
            if pod.policies(dir).is_empty() {
                continue;
            }
            // Both lists come in (pod key, direction) order: the chain of
            // this pod and direction is next, or there is none (an order
            // that is not so only costs hits).
            let here = (&pod.key, dir);
            while prev_chains.next_if(|(k, _)| (&k.0, k.1) < here).is_some() {}
            let hit = prev_chains
                .next_if(|(k, _)| (&k.0, k.1) == here)
                .map(|(_, c)| c);
            taken += usize::from(hit.is_some());
            let positions: Vec<usize> = match &hit {
                Some(c) if at_recorded_positions => c.positions.clone(),
                _ => {
                    let by_key = by_key.get_or_insert_with(|| {
                        let keys = resolution.policies.iter().map(|p| (&p.key, p.direction));
                        keys.zip(0..).collect()
                    });
                    let found = pod
                        .policies(dir)
                        .iter()
                        .map(|name| by_key.get(&(name, dir)));
                    found.flatten().copied().collect()
                }
            };
            let inputs: Vec<&Rc<ResolvedPolicy>> =
                positions.iter().map(|&i| &resolution.policies[i]).collect();
            let hit = hit.filter(|c| c.inputs.len() == inputs.len());
            let planned = match hit {
                Some(c) if c.inputs.iter().zip(&inputs).all(|(a, b)| a == *b) => {
                    Err((c, Reuse::AsItWas))
                }
                Some(c)
                    if c.inputs
                        .iter()
                        .zip(&inputs)
                        .all(|(a, b)| same_shape(a, b, merge_limit)) =>
                {
                    Err((c, Reuse::WithNewSets))
                }
                _ => Ok(plan_pod(pod, dir, &inputs, merge_limit)),
            };
            work.push((pod, dir, positions, inputs, planned));
        }
    }
    // The same pod chains, each taken from the cache (and no other cached
    // one left over), look up the same keys: their ids stay.
    let kept_ids = cache
        .as_deref_mut()
        .and_then(|c| c.ids.take())
        .filter(|_| taken == cached_chains && work.iter().all(|w| w.4.is_err()));
    drop(prev_chains);
    let keys = work
        .iter()
        .flat_map(|(_, _, _, _, planned)| -> Vec<&SetKey> {
            match planned {
                Ok(plan) => plan
                    .rules
                    .iter()
                    .filter_map(|r| r.lookup.as_ref())
                    .map(|l| &l.key)
                    .collect(),
                Err((cached, _)) => cached.sets.iter().map(|set| &set.key).collect(),
            }
        });
    let ids_kept = kept_ids.is_some();
    let mut b = Builder {
        sets: Vec::new(),
        ids: kept_ids.unwrap_or_else(|| names::SetIds::with_hash(keys, hash)),
        ids_kept,
        added: HashSet::new(),
        cache,
        next: HashMap::new(),
        reused_sets: 0,
        used: Vec::new(),
        recording: false,
    };
    let mut next_chains = Vec::new();
    let mut reused_chains = 0;
    for (pod, dir, positions, inputs, planned) in work {
        let planned = match planned {
            Err((cached, how)) => match b.reuse_chain(cached, how, &inputs) {
                Ok(mut cached) => {
                    reused_chains += 1;
                    if let Reuse::WithNewSets = how {
                        cached.inputs = inputs.into_iter().cloned().collect();
                    }
                    cached.positions = positions;
                    rs.chains.push(cached.chain.clone());
                    next_chains.push(((pod.key.clone(), dir), cached));
                    continue;
                }
                // A set id moved (a new colliding key): plan it again.
                Err(()) => plan_pod(pod, dir, &inputs, merge_limit),
            },
            Ok(plan) => plan,
        };
        b.used.clear();
        b.recording = b.cache.is_some();
        let mut rules: Vec<Rule> = planned.rules.iter().map(|r| b.rule(dir, r)).collect();
        b.recording = false;
        rules.push(
            Rule::new(vec![], Verdict::Drop)
                .counted()
                .comment(names::drop_comment(dir, &planned.deny_only)),
        );
        let chain = Chain {
            name: names::pod_chain(dir, &pod.key),
            base: None,
            comment: names::pod_chain_comment(dir, &pod.key),
            rules,
        };
        if b.cache.is_some() {
            let cached = CachedChain {
                inputs: inputs.into_iter().cloned().collect(),
                positions,
                chain: chain.clone(),
                sets: std::mem::take(&mut b.used),
            };
            next_chains.push(((pod.key.clone(), dir), cached));
        }
        rs.chains.push(chain);
    }
    rs.sets.append(&mut b.sets);
    if let Some(cache) = b.cache {
        cache.ids = Some(b.ids);
        cache.reused_chains = reused_chains;
        cache.reused_sets = b.reused_sets;
        cache.sets = b.next;
        cache.chains = next_chains;
        if !same_policies {
            let keys = resolution
                .policies
                .iter()
                .map(|p| (p.key.clone(), p.direction));
            cache.policies = keys.collect();
        }
    }
    rs
}

fn dispatch_map(resolution: &Resolution, dir: Direction, family: Family) -> VerdictMap {
    let mut elements: Vec<MapElement> = resolution
        .pods
        .iter()
        .filter(|p| !p.policies(dir).is_empty())
        .flat_map(|p| {
            p.ips
                .iter()
                .filter(|ip| Family::of(ip) == family)
                .map(|ip| MapElement {
                    addr: *ip,
                    comment: names::comment(&p.key.to_string()),
                    chain: names::pod_chain(dir, &p.key),
                })
        })
        .collect();
    elements.sort();
    elements.dedup_by(|a, b| a.addr == b.addr);
    VerdictMap {
        name: names::dispatch_map(dir, family),
        family,
        comment: names::dispatch_map_comment(dir),
        elements,
    }
}

fn base_chain(hook: Hook, dir: Direction, opts: &Options) -> Chain {
    let (priority, field) = match dir {
        Direction::Egress => (EGRESS_PRIORITY, AddrField::Source),
        Direction::Ingress => (INGRESS_PRIORITY, AddrField::Destination),
    };
    let mut rules = Vec::new();
    if let (Some(mark), Direction::Egress) = (opts.cut_mark, dir) {
        rules.push(guard::cut_rule(mark));
    }
    rules.extend([
        Rule::new(
            vec![Match::Ct(CtMatch::EstablishedRelated)],
            Verdict::Accept,
        )
        .comment("replies and related traffic of allowed flows"),
        Rule::new(vec![Match::Icmpv6NeighbourDiscovery], Verdict::Accept)
            .comment("IPv6 neighbour discovery is always allowed"),
    ]);
    // Invalid packets are dropped on the forward path only: on input they are
    // the node's own business.
    if hook == Hook::Forward {
        rules.push(
            Rule::new(vec![Match::Ct(CtMatch::Invalid)], Verdict::Drop)
                .comment("conntrack invalid"),
        );
    }
    if let Some(gate) = &opts.gate {
        rules.extend(guard::gate_rules(gate, dir));
    }
    for family in Family::ALL {
        rules.push(
            Rule::new(
                vec![],
                Verdict::Dispatch {
                    family,
                    field,
                    map: names::dispatch_map(dir, family),
                },
            )
            .comment(names::dispatch_rule_comment(dir)),
        );
    }
    Chain {
        name: names::base_chain(hook, dir),
        base: Some(BaseChain { hook, priority }),
        comment: names::base_chain_comment(hook, dir).to_owned(),
        rules,
    }
}

/// One allow of a pod chain before merging: who, on which ports, and the
/// policy rule it comes from.
struct Part<'r> {
    /// `ns/policy ingress[0]` (with ` port <name>` for a named port).
    label: String,
    /// `None`: any address.
    peers: Option<Member<'r>>,
    /// `None`: every protocol and port (ICMP too).
    ports: Option<(Protocol, PortRange)>,
}

/// A peer set as a lookup or a union member: the set, and for an egress
/// named port the number it resolved to.
#[derive(Clone, Copy)]
struct Member<'r> {
    set: &'r Rc<PeerSet>,
    port: Option<u16>,
}

impl Member<'_> {
    fn union_member(&self) -> UnionMember {
        UnionMember {
            key: SetKey::clone(&self.set.key),
            port: self.port,
        }
    }

    fn same(&self, other: &Member<'_>) -> bool {
        self.port == other.port && self.set.key == other.set.key
    }
}

/// The set a planned rule looks the other end's address up in.
struct Lookup<'r> {
    /// One peer set, or the union of two or more.
    members: Vec<Member<'r>>,
    /// The family of the set.
    family: Family,
    /// Its key: the member's own, or [`SetKey::Union`] of the members.
    key: SetKey,
}

impl<'r> Lookup<'r> {
    fn new(members: Vec<Member<'r>>, family: Family) -> Self {
        let key = match members.as_slice() {
            [one] => SetKey::clone(&one.set.key),
            _ => SetKey::Union(members.iter().map(Member::union_member).collect()),
        };
        Self {
            members,
            family,
            key,
        }
    }
}

/// One accept rule of a pod chain: ports, then the address lookup.
struct Planned<'r> {
    ports: Option<(Protocol, PortRange)>,
    /// `None`: any address, either family.
    lookup: Option<Lookup<'r>>,
    /// The policy rules merged into it, sorted.
    labels: Vec<String>,
}

/// A pod chain in one direction, before set names are known.
struct Plan<'r> {
    rules: Vec<Planned<'r>>,
    /// Policies selecting the pod that allow it nothing in the direction.
    deny_only: Vec<&'r NamespacedName>,
}

/// The allows of `pod` in `dir`: every part of every policy selecting it
/// (`policies`, compiled for `dir`), merged by port range.
fn plan_pod<'r>(
    pod: &LocalPod,
    dir: Direction,
    policies: &[&'r Rc<ResolvedPolicy>],
    merge_limit: usize,
) -> Plan<'r> {
    let mut all_ports: Vec<Part<'r>> = Vec::new();
    let mut by_proto: BTreeMap<Protocol, Vec<Part<'r>>> = BTreeMap::new();
    let mut deny_only = Vec::new();
    for policy in policies {
        debug_assert_eq!(policy.direction, dir);
        let parts = policy_parts(pod, policy);
        if parts.is_empty() {
            deny_only.push(&policy.key);
        }
        for part in parts {
            match part.ports {
                None => all_ports.push(part),
                Some((protocol, _)) => by_proto.entry(protocol).or_default().push(part),
            }
        }
    }
    let mut rules = Vec::new();
    let all: Vec<&Part<'r>> = all_ports.iter().collect();
    merge(&all, None, merge_limit, &mut rules);
    for (protocol, parts) in &by_proto {
        for (range, covering) in segments(parts) {
            merge(&covering, Some((*protocol, range)), merge_limit, &mut rules);
        }
    }
    Plan { rules, deny_only }
}

/// The parts of `policy` for `pod`: one per rule and port entry whose
/// peers hold any address (named ports of the pod's own containers only).
fn policy_parts<'r>(pod: &LocalPod, policy: &'r ResolvedPolicy) -> Vec<Part<'r>> {
    let dir = policy.direction;
    let mut parts = Vec::new();
    for rule in &policy.rules {
        let label = names::rule_label(&policy.key, dir, rule.index);
        let peers = match &rule.peers {
            Peers::Any => None,
            Peers::Addrs(set) if set.addrs.v4.is_empty() && set.addrs.v6.is_empty() => continue,
            Peers::Addrs(set) => Some(Member { set, port: None }),
        };
        let part = |label: String, peers: Option<Member<'r>>, ports| Part {
            label,
            peers,
            ports,
        };
        match &*rule.ports {
            Ports::Any => parts.push(part(label, peers, None)),
            Ports::Listed { numeric, named } => {
                for (protocol, range) in numeric {
                    let ports = Some((*protocol, range.unwrap_or(ALL_PORTS)));
                    parts.push(part(label.clone(), peers, ports));
                }
                for np in named {
                    match np {
                        NamedPort::Local {
                            pod: owner,
                            protocol,
                            port,
                            name,
                            ..
                        } if *owner == pod.key => parts.push(part(
                            names::named_port_label(&label, name),
                            peers,
                            Some((*protocol, PortRange::single(*port))),
                        )),
                        NamedPort::Local { .. } => {}
                        NamedPort::Peers {
                            protocol,
                            port,
                            name,
                            set,
                        } => parts.push(part(
                            names::named_port_label(&label, name),
                            Some(Member {
                                set,
                                port: Some(*port),
                            }),
                            Some((*protocol, PortRange::single(*port))),
                        )),
                    }
                }
            }
        }
    }
    parts
}

/// The port axis of one protocol cut into disjoint ranges, each with the
/// parts that cover all of it; neighbours covered by the same parts are
/// joined. Ranges no part covers are left out.
fn segments<'p, 'r>(parts: &'p [Part<'r>]) -> Vec<(PortRange, Vec<&'p Part<'r>>)> {
    let range = |p: &Part<'_>| p.ports.map_or(ALL_PORTS, |(_, r)| r);
    let mut cuts: Vec<u32> = parts
        .iter()
        .flat_map(|p| {
            let r = range(p);
            [u32::from(r.first), u32::from(r.last) + 1]
        })
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<(PortRange, Vec<usize>)> = Vec::new();
    for w in cuts.windows(2) {
        let (first, last) = (w[0], w[1] - 1);
        let covering: Vec<usize> = (0..parts.len())
            .filter(|&i| {
                let r = range(&parts[i]);
                u32::from(r.first) <= first && last <= u32::from(r.last)
            })
            .collect();
        if covering.is_empty() {
            continue;
        }
        // Ports fit in u16: every cut but the last is a port.
        let (first, last) = (first as u16, last as u16);
        match out.last_mut() {
            Some((prev, idx))
                if u32::from(prev.last) + 1 == u32::from(first) && *idx == covering =>
            {
                prev.last = last;
            }
            _ => out.push((PortRange { first, last }, covering)),
        }
    }
    out.into_iter()
        .map(|(r, idx)| (r, idx.into_iter().map(|i| &parts[i]).collect()))
        .collect()
}

/// The rules for `parts`, all on `ports`: one accept without lookup if any
/// of them allows every address; else per family one lookup of the union
/// of the small peer sets (at most `merge_limit` addresses) and one of
/// each large one.
fn merge<'r>(
    parts: &[&Part<'r>],
    ports: Option<(Protocol, PortRange)>,
    merge_limit: usize,
    out: &mut Vec<Planned<'r>>,
) {
    if parts.is_empty() {
        return;
    }
    if parts.iter().any(|p| p.peers.is_none()) {
        out.push(Planned {
            ports,
            lookup: None,
            labels: labels(parts.iter().copied().filter(|p| p.peers.is_none())),
        });
        return;
    }
    for family in Family::ALL {
        // (member, labels of the parts that use it), members distinct.
        let mut members: Vec<(Member<'r>, Vec<&Part<'r>>)> = Vec::new();
        for part in parts {
            let Some(m) = part.peers else { continue };
            if m.set.addrs.family(family).is_empty() {
                continue;
            }
            match members.iter_mut().find(|(x, _)| x.same(&m)) {
                Some((_, users)) => users.push(part),
                None => members.push((m, vec![part])),
            }
        }
        let (small, large): (Vec<_>, Vec<_>) = members
            .into_iter()
            .partition(|(m, _)| m.set.addrs.family(family).len() <= merge_limit);
        if !small.is_empty() {
            let mut ms: Vec<Member<'r>> = small.iter().map(|(m, _)| *m).collect();
            ms.sort_by(|a, b| (&a.set.key, a.port).cmp(&(&b.set.key, b.port)));
            out.push(Planned {
                ports,
                lookup: Some(Lookup::new(ms, family)),
                labels: labels(small.iter().flat_map(|(_, u)| u.iter().copied())),
            });
        }
        for (m, users) in large {
            out.push(Planned {
                ports,
                lookup: Some(Lookup::new(vec![m], family)),
                labels: labels(users.into_iter()),
            });
        }
    }
}

/// The labels of `parts`, sorted, each once.
fn labels<'p, 'r: 'p>(parts: impl Iterator<Item = &'p Part<'r>>) -> Vec<String> {
    let mut l: Vec<String> = parts.map(|p| p.label.clone()).collect();
    l.sort();
    l.dedup();
    l
}

/// The sets made so far, the set ids, and the names already in the table.
struct Builder<'c> {
    sets: Vec<AddrSet>,
    ids: names::SetIds,
    /// The ids are the last build's: every cached chain's sets keep theirs.
    ids_kept: bool,
    /// A set joins the table once, whichever pod chains look it up.
    added: HashSet<String>,
    /// The last build's sets, if caching.
    cache: Option<&'c mut BuildCache>,
    /// This build's sets, for the next.
    next: HashMap<String, Cached>,
    reused_sets: usize,
    /// The sets the chain being planned looks up, if caching.
    used: Vec<ChainSet>,
    /// Whether `set` records into `used` (while a chain is planned, with a
    /// cache).
    recording: bool,
}

impl Builder<'_> {
    /// The rule of `planned` in a pod chain of `dir`; adds its set.
    fn rule(&mut self, dir: Direction, planned: &Planned<'_>) -> Rule {
        let field = match dir {
            Direction::Ingress => AddrField::Source,
            Direction::Egress => AddrField::Destination,
        };
        let mut matches = Vec::new();
        // The protocol and port first: a packet for another port fails on
        // a compare and skips the set lookup.
        match planned.ports {
            None => {}
            Some((protocol, ALL_PORTS)) => matches.push(Match::L4Proto(protocol)),
            Some((protocol, ports)) => matches.push(Match::DestPort { protocol, ports }),
        }
        if let Some(lookup) = &planned.lookup {
            let set = self.set(lookup);
            let family = lookup.family;
            matches.push(Match::AddrInSet { family, field, set });
        }
        Rule::new(matches, Verdict::Accept).comment(names::label_list(&planned.labels))
    }

    /// The name of the set `lookup` reads, added to the table on first use.
    fn set(&mut self, lookup: &Lookup<'_>) -> String {
        // Kept ids hold every key of the cached chains, and a chain planned
        // again in their place plans the same keys.
        debug_assert!(!self.ids_kept || self.ids.has(&lookup.key));
        let (id, family) = (self.ids.id(&lookup.key), lookup.family);
        let name = match lookup.members.as_slice() {
            [Member {
                set,
                port: Some(port),
            }] => match &*set.key {
                SetKey::NamedPort(k) => names::named_port_set(&id, k.protocol, *port, family),
                _ => names::peer_set(&id, family),
            },
            [_] => names::peer_set(&id, family),
            _ => names::union_set(&id, family),
        };
        if self.recording {
            self.used.push(ChainSet {
                key: lookup.key.clone(),
                id: id.clone(),
                name: name.clone(),
                family,
                members: lookup
                    .members
                    .iter()
                    .map(|m| (SetKey::clone(&m.set.key), m.port))
                    .collect(),
            });
        }
        if !self.added.contains(&name) {
            self.add_set(name.clone(), lookup);
        }
        name
    }

    /// Adds the set `name` that `lookup` reads to the table (not added yet).
    fn add_set(&mut self, name: String, lookup: &Lookup<'_>) {
        let comment = names::describe_set(&lookup.key);
        let (elements, interval) = self.elements(&name, &comment, lookup);
        self.added.insert(name.clone());
        self.sets.push(AddrSet {
            name,
            family: lookup.family,
            interval,
            comment,
            elements,
        });
    }

    /// Takes a cached pod chain into this build with its sets, if each
    /// set still has the id it had (a new key whose hash collides can move
    /// ids): the sets as they were, or made again of the current peer sets
    /// of the same keys (`peer_sets`). The chain back if so.
    fn reuse_chain(
        &mut self,
        cached: CachedChain,
        how: Reuse,
        inputs: &[&Rc<ResolvedPolicy>],
    ) -> Result<CachedChain, ()> {
        let cache = self.cache.as_deref_mut().ok_or(())?;
        let available = |set: &ChainSet| match how {
            Reuse::AsItWas => self.added.contains(&set.name) || cache.sets.contains_key(&set.name),
            Reuse::WithNewSets => set
                .members
                .iter()
                .all(|(k, port)| peer_set(inputs, k, *port).is_some()),
        };
        let ids_kept = self.ids_kept;
        if !cached
            .sets
            .iter()
            .all(|set| (ids_kept || self.ids.id(&set.key) == set.id) && available(set))
        {
            return Err(());
        }
        if let Reuse::WithNewSets = how {
            // Its sets keep their ids, hence their names: each is made
            // again once, by the first chain that looks it up.
            for set in &cached.sets {
                if self.added.contains(&set.name) {
                    continue;
                }
                let members = set
                    .members
                    .iter()
                    .filter_map(|(k, port)| {
                        let set = peer_set(inputs, k, *port)?;
                        Some(Member { set, port: *port })
                    })
                    .collect();
                self.add_set(set.name.clone(), &Lookup::new(members, set.family));
            }
            return Ok(cached);
        }
        for set in &cached.sets {
            if !self.added.insert(set.name.clone()) {
                continue;
            }
            let made = cache.sets.remove(&set.name).ok_or(())?;
            self.reused_sets += 1;
            self.sets.push(AddrSet {
                name: set.name.clone(),
                family: made.family,
                interval: made.interval,
                comment: made.comment.clone(),
                elements: made.elements.clone(),
            });
            self.next.insert(set.name.clone(), made);
        }
        Ok(cached)
    }

    /// The elements of the set `name` for `lookup`, and whether any is a
    /// range: the cached ones when the last build made it of the same peer
    /// sets, else written anew (keeping the chunks whose entries stayed).
    fn elements(&mut self, name: &str, comment: &str, lookup: &Lookup<'_>) -> (Elements, bool) {
        let family = lookup.family;
        let same = |c: &Cached| {
            c.family == family
                && c.members.len() == lookup.members.len()
                && c.members
                    .iter()
                    .zip(&lookup.members)
                    .all(|((set, port), m)| Rc::ptr_eq(set, m.set) && *port == m.port)
        };
        let Some(cache) = self.cache.as_deref_mut() else {
            let elements = write_elements(lookup);
            let interval = has_ranges(lookup, &elements);
            return (elements, interval);
        };
        let (elements, interval) = match cache.sets.remove(name) {
            Some(hit) if same(&hit) => {
                self.reused_sets += 1;
                (hit.elements, hit.interval)
            }
            other => {
                let elements = match other {
                    Some(old) => rewrite_elements(&old, lookup),
                    None => write_elements(lookup),
                };
                let interval = has_ranges(lookup, &elements);
                (elements, interval)
            }
        };
        let members = lookup
            .members
            .iter()
            .map(|m| (Rc::clone(m.set), m.port))
            .collect();
        let cached = Cached {
            family,
            comment: comment.to_owned(),
            members,
            elements: elements.clone(),
            interval,
        };
        self.next.insert(name.to_owned(), cached);
        (elements, interval)
    }
}

/// The peer set of key `key` among the rules of `inputs`: their peers
/// (`port` `None`), or the pods of an egress named port that has the
/// number `port`.
fn peer_set<'r>(
    inputs: &[&'r Rc<ResolvedPolicy>],
    key: &SetKey,
    port: Option<u16>,
) -> Option<&'r Rc<PeerSet>> {
    let rules = inputs.iter().flat_map(|p| &p.rules);
    let found = |set: &'r Rc<PeerSet>| (*set.key == *key).then_some(set);
    match port {
        None => rules
            .filter_map(|r| match &r.peers {
                Peers::Addrs(set) => found(set),
                Peers::Any => None,
            })
            .next(),
        Some(number) => rules
            .filter_map(|r| match &*r.ports {
                Ports::Listed { named, .. } => named.iter().find_map(|n| match n {
                    NamedPort::Peers { set, port, .. } if *port == number => found(set),
                    _ => None,
                }),
                Ports::Any => None,
            })
            .next(),
    }
}

/// The elements of the set `lookup` reads, from those of `old`, the same
/// set of the last build made of other peer sets: when both are one peer
/// set of the same definition, the element chunks of the entry chunks
/// both versions share (a change copies only the entry chunks it touches)
/// are taken over by address, and in the other chunks the entries that
/// stayed keep their element (a copy, not a new comment).
fn rewrite_elements(old: &Cached, lookup: &Lookup<'_>) -> Elements {
    let family = lookup.family;
    let (Some((was, port)), [now]) = (old.members.first(), lookup.members.as_slice()) else {
        return write_elements(lookup);
    };
    if old.members.len() != 1 || old.family != family || *port != now.port || was.key != now.set.key
    {
        return write_elements(lookup);
    }
    let (before, after) = (was.addrs.family(family), now.set.addrs.family(family));
    // The old elements mirror the old entries, chunk for chunk.
    let mirrored = before.chunks().len() == old.elements.chunks().len()
        && before
            .chunks()
            .iter()
            .zip(old.elements.chunks())
            .all(|(a, e)| a.len() == e.len());
    if !mirrored {
        return write_elements(lookup);
    }
    // The old chunks by address, sorted for a binary search (a few
    // hundred at most; no hashing).
    let mut index: Vec<(*const Vec<Addr>, usize)> = before
        .chunks()
        .iter()
        .enumerate()
        .map(|(i, c)| (Arc::as_ptr(c), i))
        .collect();
    index.sort_unstable();
    let old_chunk = |c: &Arc<Vec<Addr>>| {
        let at = index
            .binary_search_by(|(p, _)| p.cmp(&Arc::as_ptr(c)))
            .ok()?;
        Some(index[at].1)
    };
    let order = |a: &Addr| (a.range.first, a.range.last);
    // The next old entry not yet passed: its chunk and index in it.
    let (mut chunk, mut at) = (0, 0);
    let mut out = Vec::with_capacity(after.chunks().len());
    for c in after.chunks() {
        if let Some(i) = old_chunk(c) {
            out.push(Arc::clone(&old.elements.chunks()[i]));
            (chunk, at) = (i + 1, 0);
            continue;
        }
        let mut made = Vec::with_capacity(c.len());
        for a in c.iter() {
            // Pass the old entries before `a`; keep the element of an equal one.
            let mut kept = None;
            loop {
                while before.chunks().get(chunk).is_some_and(|c| at >= c.len()) {
                    (chunk, at) = (chunk + 1, 0);
                }
                let Some(b) = before.chunks().get(chunk).map(|c| &c[at]) else {
                    break;
                };
                if b == a {
                    kept = Some(&old.elements.chunks()[chunk][at]);
                    at += 1;
                    break;
                }
                if order(b) >= order(a) {
                    break;
                }
                at += 1;
            }
            made.push(kept.cloned().unwrap_or_else(|| element(a)));
        }
        out.push(Arc::new(made));
    }
    out.into_iter().collect()
}

/// Whether any of `elements`, the elements of the set `lookup` reads, is
/// a range. Only ipBlocks make ranges: the elements of a set of pods'
/// addresses (most sets, and the largest) are not read.
fn has_ranges(lookup: &Lookup<'_>, elements: &Elements) -> bool {
    let pods_only = |key: &SetKey| match key {
        SetKey::Peers(k) => k.peers.iter().all(|p| matches!(p, Peer::Pods { .. })),
        _ => false,
    };
    !lookup.members.iter().all(|m| pods_only(&m.set.key))
        && elements.iter().any(|e| e.range.is_range())
}

/// The element of one address entry, its comment naming the pods or blocks.
fn element(a: &Addr) -> SetElement {
    SetElement {
        range: a.range,
        comment: Some(names::element_comment(&a.origins).into()),
    }
}

/// The elements of the set `lookup` reads, each with its comment: for
/// one peer set, a chunk of elements per chunk of its entries.
fn write_elements(lookup: &Lookup<'_>) -> Elements {
    let family = lookup.family;
    match lookup.members.as_slice() {
        [one] => one
            .set
            .addrs
            .family(family)
            .chunks()
            .iter()
            .map(|c| Arc::new(c.iter().map(element).collect()))
            .collect(),
        ms => Elements::from(
            normalise(
                ms.iter()
                    .flat_map(|m| m.set.addrs.family(family).iter().cloned())
                    .collect(),
            )
            .iter()
            .map(element)
            .collect::<Vec<_>>(),
        ),
    }
}
