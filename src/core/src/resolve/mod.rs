//! `resolve`: from a `Snapshot` to what each local pod allows, per direction.
//!
//! Pure and deterministic. A policy matters to a node only if it selects one
//! of the node's pods; only those policies are compiled, each once (its
//! chain is shared by every local pod it selects). Peers are found through
//! an index of pods by namespace and by label, and identical selectors are
//! resolved once per sync, so the work grows with what the local pods'
//! policies reference, not with pods × policies × pods.

mod entries;
pub mod explain;
mod incremental;
mod index;
mod key;
mod peers;
mod ports;

use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use ipnet::IpNet;

use crate::model::net::{to_u128, AddrRange, Family, PortRange};
use crate::model::{Direction, NamespacedName, Pod, Policy, Protocol, Snapshot};

pub use entries::Entries;
pub use incremental::{changed_keys, differences, Changes, Incremental, Work};
use index::Index;
pub use key::{NamedPortKey, PeerKey, SetKey, UnionMember};

/// What the node's pods allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Every local pod that takes part in policy, sorted by key; shared
    /// with the incremental resolver while they stay the same.
    pub pods: Rc<Vec<LocalPod>>,
    /// Every (policy, direction) that selects at least one local pod,
    /// sorted; shared with the incremental resolver, which hands a policy
    /// it did not compile again over as it was (`Rc::ptr_eq`).
    pub policies: Vec<Rc<ResolvedPolicy>>,
}

/// A pod on this node and the policies that isolate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPod {
    /// `ns/pod`.
    pub key: NamespacedName,
    /// Its IPs (every family).
    pub ips: Vec<IpAddr>,
    /// Policies selecting it for ingress (empty: not isolated for ingress).
    pub ingress: Vec<NamespacedName>,
    /// Policies selecting it for egress (empty: not isolated for egress).
    pub egress: Vec<NamespacedName>,
}

impl LocalPod {
    /// The policies isolating the pod in `dir`.
    pub fn policies(&self, dir: Direction) -> &[NamespacedName] {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// The compiled rules of one policy in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPolicy {
    /// `ns/policy`.
    pub key: NamespacedName,
    /// The direction.
    pub direction: Direction,
    /// One entry per rule of the policy in that direction, in order.
    pub rules: Vec<ResolvedRule>,
}

/// One rule, its peers resolved to addresses and its ports to numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRule {
    /// The rule's index in `spec.ingress` / `spec.egress`.
    pub index: usize,
    /// Who the rule allows.
    pub peers: Peers,
    /// On which ports (shared: a policy relinked to new peer sets keeps
    /// its ports).
    pub ports: Rc<Ports>,
}

/// The peers of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// `from`/`to` missing or empty: every address.
    Any,
    /// These addresses (pods and ipBlocks), shared by every rule with the
    /// same peers.
    Addrs(Rc<PeerSet>),
}

/// The addresses of one peer definition. Rules with identical peers (same
/// selectors, same ipBlocks; same namespace where a peer means "own
/// namespace") share one `PeerSet`, hence one nftables set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSet {
    /// What the addresses are: the peer definition (or, for an egress
    /// named port, the definition, the port name and its protocol).
    /// Shared by the versions of the set: a set moved to its next version
    /// keeps its key, and compares it by address.
    pub key: Rc<SetKey>,
    /// The addresses, normalised per family.
    pub addrs: AddrLists,
}

/// What an address entry stands for: one pod or block, inline, or more.
pub type Origins = smallvec::SmallVec<[Origin; 1]>;

/// Where an address of a peer set comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A pod selected by a peer (each of its IPs is an entry).
    Pod(Rc<NamespacedName>),
    /// An ipBlock: its CIDR minus its excepts.
    Block(Rc<IpBlock>),
}

/// An `ipBlock` peer as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBlock {
    /// The block.
    pub cidr: IpNet,
    /// The holes carved out of it.
    pub except: Vec<IpNet>,
}

/// An address range of a peer set and what put it there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    /// The addresses.
    pub range: AddrRange,
    /// Every pod or block the range stands for (more than one when
    /// overlapping entries were merged). Held inline when one: a peer
    /// set's entries are copied, compared and freed with no allocation
    /// of their own.
    pub origins: Origins,
}

impl Addr {
    /// An entry with one origin.
    pub fn new(range: AddrRange, origin: Origin) -> Self {
        Self {
            range,
            origins: smallvec::smallvec![origin],
        }
    }
}

/// Addresses of both families, each list normalised (sorted, merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrLists {
    /// IPv4 entries.
    pub v4: Entries,
    /// IPv6 entries.
    pub v6: Entries,
}

impl AddrLists {
    /// The list of one family.
    pub fn family(&self, family: Family) -> &Entries {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Splits entries by family and normalises each list.
    pub fn from_entries(entries: Vec<Addr>) -> Self {
        let (v4, v6) = entries
            .into_iter()
            .partition(|e| e.range.family() == Family::V4);
        Self {
            v4: normalise(v4).into(),
            v6: normalise(v6).into(),
        }
    }

    /// Whether `addr` is in the lists.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        self.family(Family::of(addr))
            .iter()
            .any(|e| e.range.contains(addr))
    }
}

/// A normalised list of addresses of one family: sorted, overlapping ranges
/// merged (their origins joined), duplicates removed. Adjacent entries stay
/// apart (the kernel takes adjacent intervals), so each pod keeps its own
/// element and comment.
pub fn normalise(mut entries: Vec<Addr>) -> Vec<Addr> {
    entries.sort();
    let mut out: Vec<Addr> = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(last) = out.last_mut() {
            let (lf, ll, ef, el) = (
                to_u128(last.range.first),
                to_u128(last.range.last),
                to_u128(e.range.first),
                to_u128(e.range.last),
            );
            if ef <= ll {
                if el > ll {
                    last.range.last = e.range.last;
                }
                // A single address inside a block says no more than the block.
                let adds_news = el > ll || (lf == ll && ef == el);
                if adds_news && ef != lf {
                    for o in e.origins {
                        if !last.origins.contains(&o) {
                            last.origins.push(o);
                        }
                    }
                }
                continue;
            }
        }
        out.push(e);
    }
    out
}

/// The ports of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// `ports` missing or empty: every protocol and port (ICMP too).
    Any,
    /// Only these (possibly none, when every named port resolved nowhere).
    Listed {
        /// Numeric ports: a protocol and a range, or every port of it (`None`).
        numeric: Vec<(Protocol, Option<PortRange>)>,
        /// Named ports, resolved per pod.
        named: Vec<NamedPort>,
    },
}

/// A named port resolved to a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedPort {
    /// Ingress: the selected local pod's own container port.
    Local {
        /// The pod.
        pod: NamespacedName,
        /// Its addresses (the destination of the traffic).
        addrs: Vec<IpAddr>,
        /// Protocol.
        protocol: Protocol,
        /// The resolved number.
        port: u16,
        /// The name in the policy.
        name: String,
    },
    /// Egress: the peer pods whose port of this name has this number.
    Peers {
        /// Protocol.
        protocol: Protocol,
        /// The resolved number.
        port: u16,
        /// The name in the policy.
        name: String,
        /// Those pods' addresses (shared like peer sets); its key is a
        /// [`SetKey::NamedPort`].
        set: Rc<PeerSet>,
    },
}

impl ResolvedRule {
    /// Whether this rule allows a connection with the other end `peer` to
    /// `dest` on `protocol`/`port`: the peer is in the rule's addresses and
    /// the port is one of the rule's (a named port counts where it resolved
    /// for `dest`). This is the one place a resolved rule is judged; the
    /// ruleset the node loads is built from the same values.
    pub fn allows(&self, peer: IpAddr, dest: IpAddr, protocol: Protocol, port: u16) -> bool {
        let peer_ok = match &self.peers {
            Peers::Any => true,
            Peers::Addrs(set) => set.addrs.contains(&peer),
        };
        let port_ok = match &*self.ports {
            Ports::Any => true,
            Ports::Listed { numeric, named } => {
                numeric
                    .iter()
                    .any(|(p, r)| *p == protocol && r.is_none_or(|r| r.contains(port)))
                    || named.iter().any(|n| match n {
                        NamedPort::Local {
                            addrs,
                            protocol: p,
                            port: n,
                            ..
                        } => *p == protocol && *n == port && addrs.contains(&dest),
                        NamedPort::Peers {
                            protocol: p,
                            port: n,
                            set,
                            ..
                        } => *p == protocol && *n == port && set.addrs.contains(&dest),
                    })
            }
        };
        peer_ok && port_ok
    }
}

/// Compiles policies against one snapshot: its index of pods and the
/// cache of resolved selectors and peer sets. [`resolve`], the
/// [`Incremental`] resolver and [`explain`](explain::explain) all judge
/// through it, so they cannot disagree on what a rule allows.
pub(crate) struct Compiler<'s> {
    snapshot: &'s Snapshot,
    index: &'s Index,
    cache: peers::PeerCache,
}

impl<'s> Compiler<'s> {
    /// A compiler for `snapshot`, whose active pods `index` holds.
    pub(crate) fn new(snapshot: &'s Snapshot, index: &'s Index) -> Self {
        Self::with_cache(snapshot, index, peers::PeerCache::default())
    }

    /// A compiler that starts from `cache` (resolved against `index` as
    /// it is now: anything a change touched already forgotten).
    pub(crate) fn with_cache(
        snapshot: &'s Snapshot,
        index: &'s Index,
        cache: peers::PeerCache,
    ) -> Self {
        Self {
            snapshot,
            index,
            cache,
        }
    }

    /// The cache as it is now.
    pub(crate) fn cache(&self) -> &peers::PeerCache {
        &self.cache
    }

    /// The cache, for the next compilation.
    pub(crate) fn into_cache(self) -> peers::PeerCache {
        self.cache
    }

    /// The rules of `policy` in `dir`, for the local pods it selects
    /// (`selected`: they decide ingress named ports).
    pub(crate) fn rules(
        &mut self,
        policy: &Policy,
        dir: Direction,
        selected: &[&Pod],
    ) -> Vec<ResolvedRule> {
        let own = policy.namespace.as_str();
        let (index, snapshot, cache) = (self.index, self.snapshot, &mut self.cache);
        policy
            .rules(dir)
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let key = PeerKey::new(own, &rule.peers);
                let peer_pods = cache.rule_pods(index, snapshot, own, &rule.peers);
                let peers = if rule.peers.is_empty() {
                    Peers::Any
                } else {
                    Peers::Addrs(cache.peer_set(index, &key, &peer_pods))
                };
                let ports = ports::resolve_ports(
                    index,
                    cache,
                    &key,
                    dir,
                    rule,
                    selected,
                    peer_pods.as_deref(),
                );
                ResolvedRule {
                    index: i,
                    peers,
                    ports: Rc::new(ports),
                }
            })
            .collect()
    }
}

/// Which of `candidates` (local pods of the policy's namespace) `policy`
/// selects, as positions in `candidates`, and its compiled rules per
/// direction it isolates; `None` when it isolates nothing or selects none
/// of them.
pub(crate) fn compile_policy(
    compiler: &mut Compiler<'_>,
    key: &NamespacedName,
    policy: &Policy,
    candidates: &[&Pod],
) -> Option<(Vec<usize>, Vec<Rc<ResolvedPolicy>>)> {
    if !Direction::ALL.iter().any(|&dir| policy.isolates(dir)) {
        return None;
    }
    let chosen: Vec<usize> = (0..candidates.len())
        .filter(|&i| policy.selects(candidates[i]))
        .collect();
    if chosen.is_empty() {
        return None;
    }
    let selected: Vec<&Pod> = chosen.iter().map(|&i| candidates[i]).collect();
    let compiled = Direction::ALL
        .into_iter()
        .filter(|&dir| policy.isolates(dir))
        .map(|dir| {
            Rc::new(ResolvedPolicy {
                key: key.clone(),
                direction: dir,
                rules: compiler.rules(policy, dir, &selected),
            })
        })
        .collect();
    Some((chosen, compiled))
}

/// Resolves the snapshot for the pods of `node`.
pub fn resolve(snapshot: &Snapshot, node: &str) -> Resolution {
    let index = Index::new(snapshot);
    let mut compiler = Compiler::new(snapshot, &index);
    let local = index.local_pods(node);
    let mut ingress: Vec<Vec<NamespacedName>> = vec![Vec::new(); local.len()];
    let mut egress: Vec<Vec<NamespacedName>> = vec![Vec::new(); local.len()];
    let mut policies = Vec::new();
    // Positions in `local`, per namespace: a policy selects only pods of its own.
    let mut local_by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in local.iter().enumerate() {
        local_by_namespace.entry(&*p.namespace).or_default().push(i);
    }

    // Policies come sorted by key and `Direction::ALL` is in `Direction`'s
    // order, so `policies` comes out sorted by (key, direction).
    for (key, policy) in &snapshot.policies {
        let Some(positions) = local_by_namespace.get(policy.namespace.as_str()) else {
            continue;
        };
        let candidates: Vec<&Pod> = positions.iter().map(|&i| local[i]).collect();
        let Some((chosen, compiled)) = compile_policy(&mut compiler, key, policy, &candidates)
        else {
            continue;
        };
        for r in &compiled {
            for &c in &chosen {
                match r.direction {
                    Direction::Ingress => ingress[positions[c]].push(key.clone()),
                    Direction::Egress => egress[positions[c]].push(key.clone()),
                }
            }
        }
        policies.extend(compiled);
    }
    debug_assert!(policies.is_sorted_by(|a, b| (&a.key, a.direction) < (&b.key, b.direction)));

    let pods: Vec<LocalPod> = local
        .iter()
        .zip(ingress.into_iter().zip(egress))
        .map(|(p, (ingress, egress))| LocalPod {
            key: p.key(),
            ips: p.ips.clone(),
            ingress,
            egress,
        })
        .collect();
    Resolution {
        pods: Rc::new(pods),
        policies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Origin {
        Origin::Pod(Rc::new(NamespacedName::new("ns", name)))
    }

    fn block(cidr: &str) -> Origin {
        Origin::Block(Rc::new(IpBlock {
            cidr: cidr.parse().unwrap(),
            except: vec![],
        }))
    }

    fn e(a: &str, b: &str, origin: Origin) -> Addr {
        let range = AddrRange {
            first: a.parse().unwrap(),
            last: b.parse().unwrap(),
        };
        Addr::new(range, origin)
    }

    #[test]
    fn normalise_merges_and_keeps_origins() {
        let out = normalise(vec![
            e("10.0.0.5", "10.0.0.5", pod("pod-in-block")),
            e("10.0.0.0", "10.0.0.255", block("10.0.0.0/24")),
            e("10.0.0.200", "10.0.1.9", block("10.0.0.200/29")),
            e("10.0.0.220", "10.0.1.9", block("10.0.0.0/24")),
            e("10.0.1.10", "10.0.1.10", pod("adjacent")),
            e("10.9.0.1", "10.9.0.1", pod("a")),
            e("10.9.0.1", "10.9.0.1", pod("a")),
        ]);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0].range.last, "10.0.1.9".parse::<IpAddr>().unwrap());
        assert_eq!(
            out[0].origins.as_slice(),
            [block("10.0.0.0/24"), block("10.0.0.200/29")],
            "a pod inside a block adds nothing; a block met twice is named once"
        );
        assert_eq!(
            out[1].origins.as_slice(),
            [pod("adjacent")],
            "adjacent entries stay apart"
        );
        assert_eq!(out[2].origins.as_slice(), [pod("a")], "duplicates removed");
    }
}
