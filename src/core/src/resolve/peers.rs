//! Peers of a rule: pod and namespace selectors to pods, ipBlocks to address
//! ranges with `except` carved out.

use std::collections::HashMap;
use std::rc::Rc;

use super::index::Index;
use super::{Addr, AddrLists, IpBlock, NamedPort, NamedPortKey, Origin, PeerKey, PeerSet, SetKey};
use crate::model::net::{carve, AddrRange};
use crate::model::{Labels, NamespaceScope, Peer, Pod, Selector, Snapshot};

/// Whether `pod` (active, in a namespace labelled `ns_labels`) is one of
/// the pods a `Pods` peer of scope `scope` and selector `pods` finds, seen
/// from a policy in namespace `own`.
pub(super) fn peer_finds(
    own: &str,
    scope: &NamespaceScope,
    pods: &Selector,
    pod: &Pod,
    ns_labels: &Labels,
) -> bool {
    let in_scope = match scope {
        NamespaceScope::Own => pod.namespace == own,
        NamespaceScope::Matching(sel) => sel.matches(ns_labels),
    };
    in_scope && pods.matches(&pod.labels)
}

/// Whether any `Pods` peer of `key` finds `pod`.
fn key_finds(key: &PeerKey, pod: &Pod, ns_labels: &Labels) -> bool {
    let own = key.namespace.as_deref().unwrap_or("");
    key.peers.iter().any(|p| match p {
        Peer::Pods { namespaces, pods } => peer_finds(own, namespaces, pods, pod, ns_labels),
        Peer::IpBlock { .. } => false,
    })
}

/// Whether any `Pods` peer of `key` selects namespaces by labels that
/// `old` or `new` match.
fn key_reads_namespace(key: &PeerKey, old: &Labels, new: &Labels) -> bool {
    key.peers.iter().any(|p| match p {
        Peer::Pods {
            namespaces: NamespaceScope::Matching(sel),
            ..
        } => sel.matches(old) || sel.matches(new),
        _ => false,
    })
}

/// Resolved selectors: identical (namespace scope, pod selector) pairs,
/// common across policies, are looked up once; identical peer definitions
/// get one shared [`PeerSet`]. [`resolve`](super::resolve) uses one per
/// sync; the incremental resolver keeps one across syncs and forgets
/// what each change may touch ([`PeerCache::forget_pod`],
/// [`PeerCache::forget_namespace`]).
#[derive(Default)]
pub struct PeerCache {
    by_selector: HashMap<(String, NamespaceScope, Selector), Rc<Vec<usize>>>,
    sets: HashMap<PeerKey, Rc<PeerSet>>,
    /// Sets forgotten since the last compilation: one computed again with
    /// the same addresses is this one, so that what was built from it can
    /// be reused (`ruleset::build::BuildCache`).
    stale: HashMap<PeerKey, Rc<PeerSet>>,
    /// Egress named ports, per key.
    pub(super) named: HashMap<NamedPortKey, Rc<Vec<NamedPort>>>,
}

impl PeerCache {
    /// Forgets every selection, peer set and named port that a version of
    /// `pod` (active, in a namespace labelled `ns_labels`) may be part of:
    /// call it with the old and the new version of a changed pod.
    pub(super) fn forget_pod(&mut self, pod: &Pod, ns_labels: &Labels) {
        self.by_selector
            .retain(|(own, scope, sel), _| !peer_finds(own, scope, sel, pod, ns_labels));
        let gone = self
            .sets
            .extract_if(|key, _| key_finds(key, pod, ns_labels));
        self.stale.extend(gone);
        // Named ports of a rule without pod peers, or with ipBlocks, read
        // every pod.
        self.named.retain(|key, _| {
            let open = key.peers.peers.is_empty()
                || key
                    .peers
                    .peers
                    .iter()
                    .any(|p| matches!(p, Peer::IpBlock { .. }));
            !open && !key_finds(&key.peers, pod, ns_labels)
        });
    }

    /// Forgets everything that selects namespaces by labels that `old` or
    /// `new` (a changed namespace's labels before and after) match.
    pub(super) fn forget_namespace(&mut self, old: &Labels, new: &Labels) {
        self.by_selector.retain(|(_, scope, _), _| match scope {
            NamespaceScope::Matching(sel) => !sel.matches(old) && !sel.matches(new),
            NamespaceScope::Own => true,
        });
        let gone = self
            .sets
            .extract_if(|key, _| key_reads_namespace(key, old, new));
        self.stale.extend(gone);
        self.named
            .retain(|key, _| !key_reads_namespace(&key.peers, old, new));
    }

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
        let addrs = addresses(index, pods, &key.peers);
        let set = match self.stale.remove(key) {
            Some(old) if old.addrs == addrs => old,
            _ => Rc::new(PeerSet {
                key: SetKey::Peers(key.clone()),
                addrs,
            }),
        };
        self.sets.insert(key.clone(), Rc::clone(&set));
        set
    }

    /// Drops the forgotten sets nobody computed again (call after a
    /// compilation).
    pub(super) fn clear_stale(&mut self) {
        self.stale.clear();
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
