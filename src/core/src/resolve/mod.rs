//! `resolve`: from a `Snapshot` to what each local pod allows, per direction.
//!
//! Pure and deterministic. A policy matters to a node only if it selects one
//! of the node's pods; only those policies are compiled, each once (its
//! chain is shared by every local pod it selects). Peers are found through
//! an index of pods by namespace and by label, and identical selectors are
//! resolved once per sync, so the work grows with what the local pods'
//! policies reference, not with pods × policies × pods.

pub mod explain;
mod index;
mod peers;
mod ports;

use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use crate::model::net::{AddrEntry, Family, PortRange};
use crate::model::{Direction, NamespacedName, Policy, Protocol, Snapshot};

use index::Index;

/// What the node's pods allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Every local pod that takes part in policy, sorted by key.
    pub pods: Vec<LocalPod>,
    /// Every (policy, direction) that selects at least one local pod, sorted.
    pub policies: Vec<ResolvedPolicy>,
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
    /// On which ports.
    pub ports: Ports,
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
    /// A stable id derived from the peer definition alone (8 characters).
    pub id: String,
    /// The peers in words, for the set's comment.
    pub description: String,
    /// The addresses, normalised per family.
    pub addrs: AddrLists,
}

/// Addresses of both families, each list normalised (sorted, merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrLists {
    /// IPv4 entries.
    pub v4: Vec<AddrEntry>,
    /// IPv6 entries.
    pub v6: Vec<AddrEntry>,
}

impl AddrLists {
    /// The list of one family.
    pub fn family(&self, family: Family) -> &[AddrEntry] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Splits entries by family and normalises each list.
    pub fn from_entries(entries: Vec<AddrEntry>) -> Self {
        let (v4, v6) = entries
            .into_iter()
            .partition(|e| e.range.family() == Family::V4);
        Self {
            v4: crate::model::net::normalise(v4),
            v6: crate::model::net::normalise(v6),
        }
    }
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
        /// Those pods' addresses (shared like peer sets).
        set: Rc<PeerSet>,
    },
}

/// Resolves the snapshot for the pods of `node`.
pub fn resolve(snapshot: &Snapshot, node: &str) -> Resolution {
    let index = Index::new(snapshot);
    let mut peers = peers::PeerCache::default();
    let local = index.local_pods(node);
    let mut ingress: Vec<Vec<NamespacedName>> = vec![Vec::new(); local.len()];
    let mut egress: Vec<Vec<NamespacedName>> = vec![Vec::new(); local.len()];
    let mut policies = Vec::new();
    // Positions in `local`, per namespace: a policy selects only pods of its own.
    let mut local_by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in local.iter().enumerate() {
        local_by_namespace
            .entry(p.namespace.as_str())
            .or_default()
            .push(i);
    }

    // Policies come sorted by key and `Direction::ALL` is in `Direction`'s
    // order, so `policies` comes out sorted by (key, direction).
    for (key, policy) in &snapshot.policies {
        if !Direction::ALL.iter().any(|&dir| policy.isolates(dir)) {
            continue;
        }
        let Some(candidates) = local_by_namespace.get(policy.namespace.as_str()) else {
            continue;
        };
        let selected: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| policy.selects(local[i]))
            .collect();
        if selected.is_empty() {
            continue;
        }
        let selected_pods: Vec<_> = selected.iter().map(|&i| local[i]).collect();
        for dir in Direction::ALL {
            if !policy.isolates(dir) {
                continue;
            }
            for &i in &selected {
                match dir {
                    Direction::Ingress => ingress[i].push(key.clone()),
                    Direction::Egress => egress[i].push(key.clone()),
                }
            }
            policies.push(ResolvedPolicy {
                key: key.clone(),
                direction: dir,
                rules: compile_rules(&index, &mut peers, policy, dir, &selected_pods),
            });
        }
    }
    debug_assert!(policies.is_sorted_by(|a, b| (&a.key, a.direction) < (&b.key, b.direction)));

    let pods = local
        .iter()
        .zip(ingress.into_iter().zip(egress))
        .map(|(p, (ingress, egress))| LocalPod {
            key: p.key(),
            ips: p.ips.clone(),
            ingress,
            egress,
        })
        .collect();
    Resolution { pods, policies }
}

fn compile_rules(
    index: &Index<'_>,
    cache: &mut peers::PeerCache,
    policy: &Policy,
    dir: Direction,
    selected: &[&crate::model::Pod],
) -> Vec<ResolvedRule> {
    policy
        .rules(dir)
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let own = policy.namespace.as_str();
            let key = peers::peer_key(own, &rule.peers);
            let peer_pods = cache.rule_pods(index, own, &rule.peers);
            let peers = if rule.peers.is_empty() {
                Peers::Any
            } else {
                Peers::Addrs(cache.peer_set(index, (own, &key), &rule.peers, &peer_pods))
            };
            let ports = ports::resolve_ports(
                index,
                cache,
                (own, &key),
                dir,
                rule,
                selected,
                peer_pods.as_deref(),
            );
            ResolvedRule {
                index: i,
                peers,
                ports,
            }
        })
        .collect()
}
