//! Peers of a rule: pod and namespace selectors to pods, ipBlocks to address
//! ranges with `except` carved out.

use std::collections::HashMap;
use std::rc::Rc;

use ipnet::IpNet;

use super::index::Index;
use super::{AddrLists, PeerSet};
use crate::model::net::{carve, AddrEntry, AddrRange};
use crate::model::{NamespaceScope, Peer, Selector};

/// Resolved selectors of one sync: identical (namespace scope, pod selector)
/// pairs, common across policies, are looked up once.
#[derive(Default)]
pub struct PeerCache {
    by_selector: HashMap<(String, NamespaceScope, Selector), Rc<Vec<usize>>>,
    sets: HashMap<String, Rc<PeerSet>>,
    /// Egress named ports by (peer key, name, protocol).
    pub(super) named: HashMap<String, Rc<Vec<super::NamedPort>>>,
}

/// The identity of a rule's peers: the peers, plus the policy's namespace
/// when a peer means "own namespace".
pub fn peer_key(own: &str, peers: &[Peer]) -> String {
    let own_matters = peers.iter().any(|p| {
        matches!(
            p,
            Peer::Pods {
                namespaces: NamespaceScope::Own,
                ..
            }
        )
    });
    format!("{:?}|{peers:?}", if own_matters { own } else { "" })
}

/// The peers in words: `pods app=web in shop; ipBlock 10.0.0.0/8`.
pub fn describe(own: &str, peers: &[Peer]) -> String {
    let parts: Vec<String> = peers
        .iter()
        .map(|p| match p {
            Peer::Pods {
                namespaces: NamespaceScope::Own,
                pods,
            } => format!("pods {pods} in {own}"),
            Peer::Pods {
                namespaces: NamespaceScope::Matching(ns),
                pods,
            } => {
                format!("pods {pods} in namespaces {ns}")
            }
            Peer::IpBlock { cidr, except } => describe_block(cidr, except),
        })
        .collect();
    crate::ruleset::names::comment(&parts.join("; "))
}

/// An ipBlock in words: `ipBlock 10.0.0.0/8 except 10.1.0.0/16 10.2.0.0/16`.
fn describe_block(cidr: &IpNet, except: &[IpNet]) -> String {
    if except.is_empty() {
        return format!("ipBlock {cidr}");
    }
    let holes: Vec<String> = except.iter().map(ToString::to_string).collect();
    format!("ipBlock {cidr} except {}", holes.join(" "))
}

impl PeerCache {
    /// Positions of the pods a `Pods` peer selects, seen from a policy in `own`.
    fn pods(
        &mut self,
        index: &Index<'_>,
        own: &str,
        scope: &NamespaceScope,
        sel: &Selector,
    ) -> Rc<Vec<usize>> {
        // Only `Own` depends on the policy's namespace.
        let own_key = match scope {
            NamespaceScope::Own => own.to_owned(),
            NamespaceScope::Matching(_) => String::new(),
        };
        let key = (own_key, scope.clone(), sel.clone());
        if let Some(hit) = self.by_selector.get(&key) {
            return Rc::clone(hit);
        }
        let namespaces = index.namespaces(own, scope);
        let found = Rc::new(index.select(&namespaces, sel));
        self.by_selector.insert(key, Rc::clone(&found));
        found
    }

    /// The shared address set of a rule's peers (computed once per sync);
    /// `key` is `peer_key(own, peers)`.
    pub fn peer_set(
        &mut self,
        index: &Index<'_>,
        (own, key): (&str, &str),
        peers: &[Peer],
        pods: &Option<Rc<Vec<usize>>>,
    ) -> Rc<PeerSet> {
        if let Some(hit) = self.sets.get(key) {
            return Rc::clone(hit);
        }
        let set = Rc::new(PeerSet {
            id: crate::ruleset::names::short_hash(key),
            description: describe(own, peers),
            addrs: addresses(index, pods, peers),
        });
        self.sets.insert(key.to_owned(), Rc::clone(&set));
        set
    }

    /// The pods every `Pods` peer of a rule selects (sorted, unique), or
    /// `None` when the rule has no peers (every address).
    pub fn rule_pods(
        &mut self,
        index: &Index<'_>,
        own: &str,
        peers: &[Peer],
    ) -> Option<Rc<Vec<usize>>> {
        if peers.is_empty() {
            return None;
        }
        let mut lists: Vec<Rc<Vec<usize>>> = peers
            .iter()
            .filter_map(|p| match p {
                Peer::Pods { namespaces, pods } => Some(self.pods(index, own, namespaces, pods)),
                Peer::IpBlock { .. } => None,
            })
            .collect();
        if lists.len() == 1 {
            return lists.pop();
        }
        let mut all: Vec<usize> = lists.iter().flat_map(|l| l.iter().copied()).collect();
        all.sort_unstable();
        all.dedup();
        Some(Rc::new(all))
    }
}

/// The addresses of a rule's peers: every IP of every selected pod, and every
/// ipBlock minus its excepts.
pub fn addresses(index: &Index<'_>, pods: &Option<Rc<Vec<usize>>>, peers: &[Peer]) -> AddrLists {
    let mut entries: Vec<AddrEntry> = pods
        .iter()
        .flat_map(|l| l.iter())
        .flat_map(|&i| pod_entries(index, i))
        .collect();
    for peer in peers {
        if let Peer::IpBlock { cidr, except } = peer {
            let comment = crate::ruleset::names::comment(&describe_block(cidr, except));
            entries.extend(carve(cidr, except).into_iter().map(|range| AddrEntry {
                range,
                comment: Some(comment.clone()),
            }));
        }
    }
    AddrLists::from_entries(entries)
}

/// One entry per IP of the pod at position `i`, commented `ns/pod`.
pub fn pod_entries<'i>(index: &'i Index<'_>, i: usize) -> impl Iterator<Item = AddrEntry> + 'i {
    let comment = index.pod_comment(i);
    index.pods[i].ips.iter().map(move |ip| AddrEntry {
        range: AddrRange::single(*ip),
        comment: Some(comment.to_owned()),
    })
}
