//! Peers of a rule: pod and namespace selectors to pods, ipBlocks to address
//! ranges with `except` carved out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use super::index::{self, Index};
use super::{
    Addr, AddrLists, Entries, IpBlock, NamedPort, NamedPortKey, Origin, PeerKey, PeerSet, SetKey,
};
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
        NamespaceScope::Own => *pod.namespace == *own,
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
/// match one of `old` and `new` and not the other (a namespace's labels
/// before and after a change): the peers may find its pods before and
/// not after, or the reverse.
fn key_tells_apart(key: &PeerKey, old: &Labels, new: &Labels) -> bool {
    key.peers.iter().any(|p| match p {
        Peer::Pods {
            namespaces: NamespaceScope::Matching(sel),
            ..
        } => sel.matches(old) != sel.matches(new),
        _ => false,
    })
}

/// Resolved selectors: identical (namespace scope, pod selector) pairs,
/// common across policies, are looked up once; identical peer definitions
/// get one shared [`PeerSet`]. [`resolve`](super::resolve) uses one per
/// sync; the incremental resolver keeps one across syncs and moves what
/// each change touches ([`PeerCache::move_pod`],
/// [`PeerCache::move_namespace`]).
#[derive(Default)]
pub struct PeerCache {
    by_selector: HashMap<(String, NamespaceScope, Selector), Rc<Vec<usize>>>,
    sets: HashMap<PeerKey, Known>,
    /// Sets forgotten since the last compilation: one computed again with
    /// the same addresses is this one, so that what was built from it can
    /// be reused (`ruleset::build::BuildCache`).
    stale: HashMap<PeerKey, Rc<PeerSet>>,
    /// Each set moved or forgotten since the last compilation, as it was
    /// then, with its version now (`None`: forgotten). A peer set that a
    /// kept policy holds is one of these or still the cache's own.
    changed: Vec<(Rc<PeerSet>, Option<Rc<PeerSet>>)>,
    /// Egress named ports, per key.
    pub(super) named: HashMap<NamedPortKey, Rc<Vec<NamedPort>>>,
}

/// A peer set the cache holds, and whether a moved pod can be moved in it
/// entry by entry.
struct Known {
    set: Rc<PeerSet>,
    /// No ipBlocks, and each address is one pod's: every entry is one
    /// address of the one pod it names. Computed sets are checked; moves
    /// keep it so (a pod put at an address the set holds already makes
    /// the set be computed again).
    movable: bool,
}

/// Records in `changed` that the set `was` is now `now`.
fn record(
    changed: &mut Vec<(Rc<PeerSet>, Option<Rc<PeerSet>>)>,
    was: &Rc<PeerSet>,
    now: Option<&Rc<PeerSet>>,
) {
    let later = changed
        .iter_mut()
        .find(|(_, v)| v.as_ref().is_some_and(|v| Rc::ptr_eq(v, was)));
    match later {
        Some((_, v)) => *v = now.cloned(),
        None => changed.push((Rc::clone(was), now.cloned())),
    }
}

/// A version of a changed pod, as the peer cache sees it: its slot in the
/// index, the pod (active), and its namespace's labels.
pub(super) struct Version<'a> {
    pub slot: usize,
    pub pod: &'a Pod,
    pub ns_labels: &'a Labels,
}

/// `addrs` (a movable set: each entry one address of one pod) with the
/// entries of `old` (the IPs of a pod that left) taken out and those of
/// `new` put in; `None` when that cannot be done entry by entry: an
/// address that is not where it should be, or one another pod of the set
/// holds already.
fn moved(
    addrs: &AddrLists,
    old: Option<&[IpAddr]>,
    new: Option<(&[IpAddr], &Origin)>,
    origin: &Origin,
) -> Option<AddrLists> {
    // A copy that shares every chunk; an edit copies the chunk it touches.
    let mut out = addrs.clone();
    move_entries(&mut out, old, new, origin)?;
    Some(out)
}

/// [`moved`], in place: `None` (and `out` half edited) when the move
/// cannot be done entry by entry.
fn move_entries(
    out: &mut AddrLists,
    old: Option<&[IpAddr]>,
    new: Option<(&[IpAddr], &Origin)>,
    origin: &Origin,
) -> Option<()> {
    fn list<'l>(out: &'l mut AddrLists, ip: &IpAddr) -> &'l mut Entries {
        match ip {
            IpAddr::V4(_) => &mut out.v4,
            IpAddr::V6(_) => &mut out.v6,
        }
    }
    for ip in old.unwrap_or_default() {
        let l = list(out, ip);
        let at = l.find(ip).ok()?;
        let entry = l.entry(at)?;
        if entry.range.last != *ip || entry.origins.as_slice() != std::slice::from_ref(origin) {
            return None;
        }
        l.take(at);
    }
    if let Some((ips, origin)) = new {
        for ip in ips {
            let l = list(out, ip);
            // An address another pod of the set holds (or in a range,
            // never here: no ipBlocks): leave it to a full computation,
            // which keeps one of them.
            let at = l.find(ip).err()?;
            if l.before(at).is_some_and(|a| a.range.contains(ip)) {
                return None;
            }
            l.put(at, Addr::new(AddrRange::single(*ip), origin.clone()));
        }
    }
    Some(())
}

impl PeerCache {
    /// Moves a changed pod in every selection and peer set that found its
    /// `old` version or finds its `new` one, entry by entry; forgets what
    /// cannot be moved so (sets with ipBlocks, an address two pods hold)
    /// and every named port that may read it. `index` is the index with
    /// the change made.
    pub(super) fn move_pod(
        &mut self,
        index: &Index,
        old: Option<&Version<'_>>,
        new: Option<&Version<'_>>,
    ) {
        let finds = |v: Option<&Version<'_>>, own: &str, scope: &NamespaceScope, sel: &Selector| {
            v.is_some_and(|v| peer_finds(own, scope, sel, v.pod, v.ns_labels))
        };
        let same_slot = matches!((old, new), (Some(a), Some(b)) if a.slot == b.slot);
        for ((own, scope, sel), slots) in self.by_selector.iter_mut() {
            let (was, is) = (finds(old, own, scope, sel), finds(new, own, scope, sel));
            if (was == is && same_slot) || (!was && !is) {
                continue;
            }
            let list = Rc::make_mut(slots);
            if let (true, Some(v)) = (was, old) {
                index::remove_sorted(list, v.slot);
            }
            if let (true, Some(v)) = (is, new) {
                index::insert_sorted(list, v.slot);
            }
        }
        let origin = new.or(old).map(|v| Origin::Pod(Rc::new(v.pod.key())));
        let mut forget = Vec::new();
        for (key, known) in &mut self.sets {
            let in_key =
                |v: Option<&Version<'_>>| v.is_some_and(|v| key_finds(key, v.pod, v.ns_labels));
            let (was, is) = (in_key(old), in_key(new));
            if !was && !is {
                continue;
            }
            let (old_ips, new_ips) = (
                old.filter(|_| was).map(|v| v.pod.ips.as_slice()),
                new.filter(|_| is).map(|v| v.pod.ips.as_slice()),
            );
            if old_ips.is_some() && old_ips == new_ips {
                continue; // in it before and after, at the same addresses
            }
            let origin = origin.as_ref().expect("a version exists");
            let new_origin = new.filter(|_| is).map(|v| index.pod_origin(v.slot));
            let new_entry = new
                .filter(|_| is)
                .map(|v| v.pod.ips.as_slice())
                .zip(new_origin.as_ref());
            let set = &known.set;
            let patched = known
                .movable
                .then(|| moved(&set.addrs, old_ips, new_entry, origin))
                .flatten();
            match patched {
                Some(addrs) => {
                    let now = Rc::new(PeerSet {
                        key: Rc::clone(&set.key),
                        addrs,
                    });
                    record(&mut self.changed, set, Some(&now));
                    known.set = now;
                }
                None => forget.push(key.clone()),
            }
        }
        self.forget(forget);
        // Named ports of a rule without pod peers, or with ipBlocks, read
        // every pod.
        for v in [old, new].into_iter().flatten() {
            self.named.retain(|key, _| {
                let open = key.peers.peers.is_empty()
                    || key
                        .peers
                        .peers
                        .iter()
                        .any(|p| matches!(p, Peer::IpBlock { .. }));
                !open && !key_finds(&key.peers, v.pod, v.ns_labels)
            });
        }
    }

    /// Moves the pods of a namespace whose labels changed from `old` to
    /// `new` (`slots`: their slots in `index`, which holds them as the
    /// cache last saw them) in every selection and peer set whose
    /// namespace selectors tell the two apart, entry by entry: the work is
    /// the namespace's pods times the sets that read it, not the sets'
    /// sizes. Forgets the sets that cannot be moved so, and every egress
    /// named port that reads the namespace.
    pub(super) fn move_namespace(
        &mut self,
        index: &Index,
        slots: &[usize],
        old: &Labels,
        new: &Labels,
    ) {
        for ((_, scope, sel), list) in self.by_selector.iter_mut() {
            let NamespaceScope::Matching(ns_sel) = scope else {
                continue;
            };
            let (was, is) = (ns_sel.matches(old), ns_sel.matches(new));
            if was == is {
                continue;
            }
            // The namespace's slots are sorted: one pass over the list.
            let found: Vec<usize> = slots
                .iter()
                .copied()
                .filter(|&slot| sel.matches(&index.pod(slot).labels))
                .collect();
            let list = Rc::make_mut(list);
            match was {
                true => index::remove_all_sorted(list, &found),
                false => index::insert_all_sorted(list, &found),
            }
        }
        let mut forget = Vec::new();
        for (key, known) in &mut self.sets {
            if !key_tells_apart(key, old, new) {
                continue;
            }
            // A copy made at the first pod that moves in or out.
            let mut addrs: Option<AddrLists> = None;
            let mut movable = known.movable;
            for &slot in slots {
                let pod = index.pod(slot);
                let (was, is) = (key_finds(key, pod, old), key_finds(key, pod, new));
                if was == is {
                    continue;
                }
                let out = addrs.get_or_insert_with(|| known.set.addrs.clone());
                let (origin, ips) = (index.pod_origin(slot), pod.ips.as_slice());
                let (gone, came) = (was.then_some(ips), is.then_some((ips, &origin)));
                movable = movable && move_entries(out, gone, came, &origin).is_some();
                if !movable {
                    break;
                }
            }
            match addrs {
                None => {}
                Some(_) if !movable => forget.push(key.clone()),
                Some(addrs) => {
                    let now = Rc::new(PeerSet {
                        key: Rc::clone(&known.set.key),
                        addrs,
                    });
                    record(&mut self.changed, &known.set, Some(&now));
                    known.set = now;
                }
            }
        }
        self.forget(forget);
        self.named
            .retain(|key, _| !key_tells_apart(&key.peers, old, new));
    }

    /// Forgets the sets of `keys`: the next compilation computes them
    /// again (keeping a version whose addresses did not change).
    fn forget(&mut self, keys: Vec<PeerKey>) {
        for key in keys {
            if let Some(known) = self.sets.remove(&key) {
                record(&mut self.changed, &known.set, None);
                self.stale.insert(key, known.set);
            }
        }
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
            return Rc::clone(&hit.set);
        }
        let addrs = addresses(index, pods, &key.peers);
        // One entry per address of each pod, none merged away: no two
        // pods (and no pod twice) at one address, and no ipBlocks.
        let blocks = key.peers.iter().any(|p| matches!(p, Peer::IpBlock { .. }));
        let pod_ips: usize = pods
            .iter()
            .flat_map(|l| l.iter())
            .map(|&i| index.pod(i).ips.len())
            .sum();
        let movable = !blocks && pod_ips == addrs.v4.len() + addrs.v6.len();
        let set = match self.stale.remove(key) {
            Some(old) if old.addrs == addrs => old,
            _ => Rc::new(PeerSet {
                key: Rc::new(SetKey::Peers(key.clone())),
                addrs,
            }),
        };
        let known = Known {
            set: Rc::clone(&set),
            movable,
        };
        self.sets.insert(key.clone(), known);
        set
    }

    /// The current version of `set`, a peer set of the last compilation
    /// (or one kept from before it): itself, the version it was moved
    /// to, or `None` when it was forgotten. A pointer search of the few
    /// sets changed since: no key is hashed or compared.
    pub(super) fn current<'s>(&'s self, set: &'s Rc<PeerSet>) -> Option<&'s Rc<PeerSet>> {
        match self.changed.iter().find(|(was, _)| Rc::ptr_eq(was, set)) {
            Some((_, now)) => now.as_ref(),
            None => Some(set),
        }
    }

    /// Drops the forgotten sets nobody computed again, and the record of
    /// what changed (call after a compilation).
    pub(super) fn clear_stale(&mut self) {
        self.stale.clear();
        self.changed.clear();
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
