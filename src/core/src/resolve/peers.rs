//! Peers of a rule: pod and namespace selectors to pods, ipBlocks to address
//! ranges with `except` carved out.

use std::collections::HashMap;
use std::rc::Rc;

use super::index::Index;
use super::{Addr, AddrLists, IpBlock, NamedPort, NamedPortKey, Origin, PeerKey, PeerSet, SetKey};
use crate::model::net::{carve, AddrRange};
use crate::model::{NamespaceScope, Peer, Selector, Snapshot};

/// Resolved selectors of one sync: identical (namespace scope, pod selector)
/// pairs, common across policies, are looked up once; identical peer
/// definitions get one shared [`PeerSet`].
#[derive(Default)]
pub struct PeerCache {
    by_selector: HashMap<(String, NamespaceScope, Selector), Rc<Vec<usize>>>,
    sets: HashMap<PeerKey, Rc<PeerSet>>,
    /// Egress named ports, per key.
    pub(super) named: HashMap<NamedPortKey, Rc<Vec<NamedPort>>>,
}

impl PeerCache {
    /// Positions of the pods a `Pods` peer selects, seen from a policy in `own`.
    fn pods(
        &mut self,
        index: &Index,
        snapshot: &Snapshot,
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
        let namespaces = index.namespaces(snapshot, own, scope);
        let found = Rc::new(index.select(&namespaces, sel));
        self.by_selector.insert(key, Rc::clone(&found));
        found
    }

    /// The shared address set of the peers `key` (computed once per sync);
    /// `pods` are the rule's peer pods (`rule_pods`).
    pub fn peer_set(
        &mut self,
        index: &Index,
        key: &PeerKey,
        pods: &Option<Rc<Vec<usize>>>,
    ) -> Rc<PeerSet> {
        if let Some(hit) = self.sets.get(key) {
            return Rc::clone(hit);
        }
        let set = Rc::new(PeerSet {
            key: SetKey::Peers(key.clone()),
            addrs: addresses(index, pods, &key.peers),
        });
        self.sets.insert(key.clone(), Rc::clone(&set));
        set
    }

    /// The pods every `Pods` peer of a rule selects (sorted, unique), or
    /// `None` when the rule has no peers (every address).
    pub fn rule_pods(
        &mut self,
        index: &Index,
        snapshot: &Snapshot,
        own: &str,
        peers: &[Peer],
    ) -> Option<Rc<Vec<usize>>> {
        if peers.is_empty() {
            return None;
        }
        let mut lists: Vec<Rc<Vec<usize>>> = peers
            .iter()
            .filter_map(|p| match p {
                Peer::Pods { namespaces, pods } => {
                    Some(self.pods(index, snapshot, own, namespaces, pods))
                }
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
pub fn addresses(index: &Index, pods: &Option<Rc<Vec<usize>>>, peers: &[Peer]) -> AddrLists {
    let mut entries: Vec<Addr> = pods
        .iter()
        .flat_map(|l| l.iter())
        .flat_map(|&i| pod_entries(index, i))
        .collect();
    for peer in peers {
        if let Peer::IpBlock { cidr, except } = peer {
            let origin = Origin::Block(Rc::new(IpBlock {
                cidr: *cidr,
                except: except.clone(),
            }));
            entries.extend(
                carve(cidr, except)
                    .into_iter()
                    .map(|range| Addr::new(range, origin.clone())),
            );
        }
    }
    AddrLists::from_entries(entries)
}

/// One entry per IP of the pod at position `i`.
pub fn pod_entries(index: &Index, i: usize) -> impl Iterator<Item = Addr> + '_ {
    let origin = index.pod_origin(i);
    index
        .pod(i)
        .ips
        .iter()
        .map(move |ip| Addr::new(AddrRange::single(*ip), origin.clone()))
}
