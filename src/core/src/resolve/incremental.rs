//! The incremental resolver: the same [`Resolution`] as [`resolve`], kept
//! across syncs and brought up to date from what changed.
//!
//! It holds the index of pods, the node's active pods, each policy that
//! selects one of them compiled (the local pods it selects, its rules per
//! direction) with what the compilation read (the pod selectors of its
//! peers), and the resolved selections and peer sets (`PeerCache`). Given
//! the keys of the objects that changed since the last call ([`Changes`],
//! from the watch events), it
//!
//! 1. moves the pods of each relabelled namespace, then each changed pod,
//!    in the index and in the cached selections and peer sets, entry by
//!    entry (what cannot be moved so, a set with ipBlocks or an address
//!    two pods hold, is forgotten and computed again; one computed again
//!    with the same addresses stays the same `Rc`). A namespace's pods
//!    move only in the sets whose namespace selectors tell its old labels
//!    from its new ones;
//! 2. marks for compiling again every policy that is new, edited or
//!    deleted; every policy of a namespace where a local pod came, went or
//!    changed (what it selects, and its ingress named ports, may change);
//!    and, when a pod's addresses, ports or activity changed, every policy
//!    whose egress named ports look at every pod (a rule with named ports
//!    and no peers, or with ipBlocks);
//! 3. marks for relinking every other policy one of whose peer selectors
//!    finds a changed pod before and not after (or the reverse), or finds
//!    it and its addresses or container ports changed, or whose namespace
//!    selectors tell a relabelled namespace's old labels from its new
//!    ones: its rules are kept, each moved peer set swapped for its new
//!    version ([`relink`]; a policy with egress named ports, or whose set
//!    was forgotten, is compiled instead);
//! 4. compiles the marked policies again through the resolver's own
//!    [`Compiler`] and the kept cache, and keeps every other policy's
//!    rules as they were (the same shared peer sets, which lets the
//!    builder's cache reuse what it made of them).
//!
//! A change thus costs the policies and peer sets it touches, not the
//! cluster. The agent checks the kept state against a full [`resolve`]
//! from time to time (`docs/agent.md`); tests check it after every step of
//! random event streams.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use super::index::Index;
use super::peers::{self, PeerCache};
use super::{
    compile_policy, resolve, Compiler, LocalPod, PeerSet, Peers, Resolution, ResolvedPolicy,
    ResolvedRule, SetKey,
};
use crate::model::{
    Direction, Labels, NamespaceScope, NamespacedName, Peer, Pod, Policy, PortRef, Selector,
    Snapshot,
};

/// The objects that changed between two snapshots, by key (from the watch
/// events: a key may be listed without a real change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Pods added, changed or deleted.
    pub pods: BTreeSet<NamespacedName>,
    /// Namespaces (by name) added, changed or deleted.
    pub namespaces: BTreeSet<String>,
    /// Policies added, changed or deleted.
    pub policies: BTreeSet<NamespacedName>,
}

impl Changes {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.namespaces.is_empty() && self.policies.is_empty()
    }

    /// Adds the keys of `other`.
    pub fn merge(&mut self, other: Changes) {
        self.pods.extend(other.pods);
        self.namespaces.extend(other.namespaces);
        self.policies.extend(other.policies);
    }

    /// The keys of every object that differs between `a` and `b` (a full
    /// comparison: for tests and for callers without events).
    pub fn between(a: &Snapshot, b: &Snapshot) -> Self {
        Self {
            pods: changed_keys(&a.pods, &b.pods),
            namespaces: changed_keys(&a.namespaces, &b.namespaces),
            policies: changed_keys(&a.policies, &b.policies),
        }
    }
}

/// The keys whose objects differ between two maps of a snapshot (in one
/// and not the other, or unequal).
pub fn changed_keys<K: Ord + Clone, V: PartialEq>(
    a: &BTreeMap<K, Arc<V>>,
    b: &BTreeMap<K, Arc<V>>,
) -> BTreeSet<K> {
    let gone = a.keys().filter(|k| !b.contains_key(*k));
    let new_or_changed = b
        .iter()
        .filter(|(k, v)| {
            a.get(*k)
                .is_none_or(|old| !Arc::ptr_eq(old, v) && **old != ***v)
        })
        .map(|(k, _)| k);
    gone.chain(new_or_changed).cloned().collect()
}

/// A pod selector a compiled policy read: its namespace scope (with the
/// policy's namespace when the scope is its own) and the selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Dep {
    /// The policy's namespace for [`NamespaceScope::Own`], else empty.
    own: String,
    scope: NamespaceScope,
    pods: Selector,
}

impl Dep {
    /// Whether `pod` (active), in a namespace labelled `ns_labels`, is one
    /// of the pods this selector finds.
    fn covers(&self, pod: &Pod, ns_labels: &Labels) -> bool {
        peers::peer_finds(&self.own, &self.scope, &self.pods, pod, ns_labels)
    }
}

/// A policy selecting local pods, compiled.
#[derive(Debug)]
struct Entry {
    /// The policy's key.
    key: NamespacedName,
    /// The policy it was compiled from: compiled again from the same one,
    /// it keeps its place in `dependents` and `global`.
    policy: Arc<Policy>,
    /// The local pods it selects, sorted.
    selected: Vec<NamespacedName>,
    /// Its rules, per direction it isolates (in `Direction::ALL` order).
    compiled: Vec<Rc<ResolvedPolicy>>,
    /// The pod selectors its peers read.
    deps: Vec<Dep>,
}

/// What a policy's compilation reads besides the local pods.
fn deps_of(policy: &Policy) -> (Vec<Dep>, bool) {
    let mut deps = Vec::new();
    let mut global = false;
    for dir in Direction::ALL {
        if !policy.isolates(dir) {
            continue;
        }
        for rule in policy.rules(dir) {
            for peer in &rule.peers {
                if let Peer::Pods { namespaces, pods } = peer {
                    let own = match namespaces {
                        NamespaceScope::Own => policy.namespace.clone(),
                        NamespaceScope::Matching(_) => String::new(),
                    };
                    deps.push(Dep {
                        own,
                        scope: namespaces.clone(),
                        pods: pods.clone(),
                    });
                }
            }
            let named = rule
                .ports
                .iter()
                .any(|p| matches!(p.port, Some(PortRef::Name(_))));
            let open = rule.peers.is_empty()
                || rule.peers.iter().any(|p| matches!(p, Peer::IpBlock { .. }));
            global |= dir == Direction::Egress && named && open;
        }
    }
    let mut seen = std::collections::HashSet::new();
    deps.retain(|d| seen.insert(d.clone()));
    (deps, global)
}

/// What the last call to [`Incremental::resolve`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// It resolved from scratch (first call, or no changes given).
    pub full: bool,
    /// Policies compiled again.
    pub compiled: usize,
    /// Policies whose compiled rules were kept with their peer sets
    /// swapped for the new versions (only pods moved in or out of them).
    pub relinked: usize,
    /// Policies kept compiled from before.
    pub kept: usize,
}

struct State {
    snapshot: Arc<Snapshot>,
    index: Index,
    /// The node's active pods.
    local: BTreeMap<NamespacedName, Arc<Pod>>,
    /// Policies that select a local pod: the place of each in `slots`.
    entries: BTreeMap<NamespacedName, usize>,
    /// The entries by place (`None`: free). `dependents` and `global`
    /// hold places, so that marking the policies a change touches
    /// compares and copies no names.
    slots: Vec<Option<Entry>>,
    /// Free places, reused first.
    free: Vec<usize>,
    /// Which entries read each selector.
    dependents: HashMap<Dep, BTreeSet<usize>>,
    /// Entries whose egress named ports read every pod.
    global: BTreeSet<usize>,
    /// Selections, peer sets and named ports, kept until a change may
    /// touch them: a policy compiled again reuses what did not change.
    cache: PeerCache,
    /// The local pods of the last resolution, while no local pod and no
    /// entry's selection changed.
    pods: Option<Rc<Vec<LocalPod>>>,
}

/// The resolver that keeps its work across syncs (see the module doc).
/// Not `Send` (the resolution shares peer sets through `Rc`): it lives on
/// the thread that syncs.
pub struct Incremental {
    node: String,
    state: Option<State>,
    work: Work,
}

fn is_local(pod: &Pod, node: &str) -> bool {
    pod.ignored().is_none() && pod.node.as_deref() == Some(node)
}

/// The entries of `map` in namespace `ns` (keys sort by namespace first).
fn in_namespace<'m, V>(
    map: &'m BTreeMap<NamespacedName, V>,
    ns: &str,
) -> impl Iterator<Item = (&'m NamespacedName, &'m V)> + 'm {
    let ns: Arc<str> = ns.into();
    map.range(NamespacedName::new(ns.clone(), "")..)
        .take_while(move |(k, _)| k.namespace == ns)
}

impl Incremental {
    /// A resolver for the pods of `node`; its first call resolves from scratch.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            state: None,
            work: Work::default(),
        }
    }

    /// What the last call did.
    pub fn work(&self) -> Work {
        self.work
    }

    /// Forgets the kept state: the next call resolves from scratch.
    pub fn reset(&mut self) {
        self.state = None;
    }

    /// The resolution of `snapshot`. `changes` are the keys of the objects
    /// changed since the snapshot of the last call (every change, or more);
    /// `None` resolves from scratch.
    pub fn resolve(&mut self, snapshot: &Arc<Snapshot>, changes: Option<&Changes>) -> Resolution {
        match (self.state.as_mut(), changes) {
            (Some(state), Some(changes)) => {
                let dirty = state.advance(snapshot, changes, &self.node);
                let (compiled, relinked) = state.compile(&dirty);
                self.work = Work {
                    full: false,
                    compiled,
                    relinked,
                    kept: state.entries.len().saturating_sub(compiled + relinked),
                };
            }
            _ => {
                let mut state = State::new(snapshot, &self.node);
                let all = Dirty {
                    compile: snapshot.policies.keys().cloned().collect(),
                    relink: Vec::new(),
                };
                let (compiled, _) = state.compile(&all);
                self.work = Work {
                    full: true,
                    compiled,
                    relinked: 0,
                    kept: 0,
                };
                self.state = Some(state);
            }
        }
        self.state.as_mut().expect("state set above").resolution()
    }

    /// Resolves `snapshot` from scratch and compares it with `kept` (what
    /// the last call returned for the same snapshot): the number of local
    /// pods and compiled policies that differ (0: the kept state is right).
    /// On a difference the kept state is dropped, so the next call starts
    /// over.
    pub fn check(&mut self, snapshot: &Snapshot, kept: &Resolution) -> usize {
        let full = resolve(snapshot, &self.node);
        let n = differences(&full, kept);
        if n > 0 {
            self.reset();
        }
        n
    }
}

/// How many local pods and compiled (policy, direction)s differ between
/// two resolutions, matched by key.
pub fn differences(a: &Resolution, b: &Resolution) -> usize {
    fn count<T: PartialEq, K: Ord>(a: &[T], b: &[T], key: impl Fn(&T) -> K) -> usize {
        let bm: BTreeMap<K, &T> = b.iter().map(|x| (key(x), x)).collect();
        let am: BTreeMap<K, &T> = a.iter().map(|x| (key(x), x)).collect();
        let only_or_different = am
            .iter()
            .filter(|(k, x)| bm.get(k).is_none_or(|y| y != *x))
            .count();
        only_or_different + bm.keys().filter(|k| !am.contains_key(k)).count()
    }
    count(&a.pods, &b.pods, |p: &LocalPod| p.key.clone())
        + count(&a.policies, &b.policies, |p: &Rc<ResolvedPolicy>| {
            (p.key.clone(), p.direction)
        })
}

/// Takes the entry at place `at` out of `dependents` and `global`.
fn forget(
    dependents: &mut HashMap<Dep, BTreeSet<usize>>,
    global: &mut BTreeSet<usize>,
    at: usize,
    deps: Vec<Dep>,
) {
    for dep in deps {
        if let Some(who) = dependents.get_mut(&dep) {
            who.remove(&at);
            if who.is_empty() {
                dependents.remove(&dep);
            }
        }
    }
    global.remove(&at);
}

/// The entry at place `at`, which `dependents` or `global` holds.
fn entry(slots: &[Option<Entry>], at: usize) -> &Entry {
    slots[at].as_ref().expect("a held place holds an entry")
}

/// The policies a change touches.
#[derive(Debug, Default)]
struct Dirty {
    /// To compile again: the policy changed, a local pod of its namespace
    /// did, a namespace its selectors read did, or it reads every pod.
    compile: BTreeSet<NamespacedName>,
    /// Read a selector that a peer pod moved in or out of (or whose
    /// addresses or ports changed), and nothing else: relinked when
    /// they can be (see [`relink`]), else compiled. Places, sorted.
    relink: Vec<usize>,
}

/// Brings `compiled` (a policy's rules, compiled from the same policy
/// against the same local pods) to the current version in the cache of
/// each of its peer sets: what compiling it again gives when only peer
/// pods moved, without selecting, hashing selectors or copying keys. A
/// direction whose sets all stayed keeps its rules. False, and `compiled`
/// left as it was, when that is not known to be so: a set the cache
/// forgot (to be computed again), or an egress named port in `policy` (it
/// reads the peers' ports, and may have resolved nowhere before).
fn relink(policy: &Policy, compiled: &mut [Rc<ResolvedPolicy>], cache: &PeerCache) -> bool {
    let named = |rule: &crate::model::Rule| {
        rule.ports
            .iter()
            .any(|p| matches!(p.port, Some(PortRef::Name(_))))
    };
    if policy.isolates(Direction::Egress) && policy.rules(Direction::Egress).iter().any(named) {
        return false;
    }
    fn sets(p: &ResolvedPolicy) -> impl Iterator<Item = &Rc<PeerSet>> {
        p.rules.iter().filter_map(|rule| match &rule.peers {
            Peers::Addrs(set) => Some(set),
            Peers::Any => None,
        })
    }
    // Every set is a set of peers the cache still holds (or moved).
    let known =
        |set: &Rc<PeerSet>| matches!(*set.key, SetKey::Peers(_)) && cache.current(set).is_some();
    if !compiled.iter().all(|p| sets(p).all(known)) {
        return false;
    }
    for policy in compiled.iter_mut() {
        let moved = |set: &Rc<PeerSet>| cache.current(set).is_some_and(|now| !Rc::ptr_eq(now, set));
        if !sets(policy).any(moved) {
            continue;
        }
        let rules = policy
            .rules
            .iter()
            .map(|rule| ResolvedRule {
                index: rule.index,
                peers: match &rule.peers {
                    Peers::Any => Peers::Any,
                    Peers::Addrs(set) => Peers::Addrs(Rc::clone(cache.current(set).unwrap_or(set))),
                },
                ports: Rc::clone(&rule.ports),
            })
            .collect();
        *policy = Rc::new(ResolvedPolicy {
            key: policy.key.clone(),
            direction: policy.direction,
            rules,
        });
    }
    true
}

impl State {
    fn new(snapshot: &Arc<Snapshot>, node: &str) -> Self {
        let local = snapshot
            .pods
            .iter()
            .filter(|(_, p)| is_local(p, node))
            .map(|(k, p)| (k.clone(), Arc::clone(p)))
            .collect();
        Self {
            snapshot: Arc::clone(snapshot),
            index: Index::new(snapshot),
            local,
            entries: BTreeMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            dependents: HashMap::new(),
            global: BTreeSet::new(),
            cache: PeerCache::default(),
            pods: None,
        }
    }

    /// Moves to `snapshot`: updates the index and the local pods, and
    /// returns the policies to compile again or relink.
    fn advance(&mut self, snapshot: &Arc<Snapshot>, changes: &Changes, node: &str) -> Dirty {
        let prev = std::mem::replace(&mut self.snapshot, Arc::clone(snapshot));
        let mut dirty = Dirty {
            compile: changes.policies.clone(),
            relink: Vec::new(),
        };
        let slots = &self.slots;
        let mut mark = |who: &BTreeSet<usize>| {
            let keys = who.iter().map(|&at| entry(slots, at).key.clone());
            dirty.compile.extend(keys);
        };
        let mut peers_moved = Vec::new();

        // Namespaces whose pods the cache sees with their new labels.
        let mut relabelled: BTreeSet<&str> = BTreeSet::new();
        for ns in &changes.namespaces {
            let (old, new) = (prev.namespace_labels(ns), snapshot.namespace_labels(ns));
            if old == new {
                continue;
            }
            let in_ns = self.index.in_namespace(ns);
            self.cache.move_namespace(&self.index, in_ns, &old, &new);
            relabelled.insert(ns);
            // A selector whose namespace selector tells the two apart
            // finds the namespace's pods, or no longer does.
            for (dep, who) in &self.dependents {
                if let NamespaceScope::Matching(sel) = &dep.scope {
                    if sel.matches(&old) != sel.matches(&new) {
                        peers_moved.extend(who.iter().copied());
                    }
                }
            }
        }

        let mut local_namespaces: BTreeSet<&str> = BTreeSet::new();
        for key in &changes.pods {
            let (old, new) = (prev.pods.get(key), snapshot.pods.get(key));
            match (old, new) {
                (None, None) => continue,
                (Some(a), Some(b)) if Arc::ptr_eq(a, b) || a == b => continue,
                _ => {}
            }
            let old_slot = self.index.slot(key);
            self.index.update(key, new);
            let new_slot = self.index.slot(key);
            let now_local = new.filter(|p| is_local(p, node));
            if old.is_some_and(|p| is_local(p, node)) || now_local.is_some() {
                local_namespaces.insert(&*key.namespace);
                self.pods = None;
                match now_local {
                    Some(p) => self.local.insert(key.clone(), Arc::clone(p)),
                    None => self.local.remove(key),
                };
            }
            // The old version as the cache saw it: in a namespace
            // relabelled above, with the new labels.
            let old_view = |p: &Pod| match relabelled.contains(&*p.namespace) {
                true => snapshot.namespace_labels(&p.namespace),
                false => prev.namespace_labels(&p.namespace),
            };
            let versions = [
                old.filter(|p| p.ignored().is_none())
                    .map(|p| (p, old_view(p))),
                new.filter(|p| p.ignored().is_none())
                    .map(|p| (p, snapshot.namespace_labels(&p.namespace))),
            ];
            let [old_v, new_v] =
                [(&versions[0], old_slot), (&versions[1], new_slot)].map(|(version, slot)| {
                    Some(peers::Version {
                        slot: slot?,
                        pod: version.as_ref()?.0,
                        ns_labels: &version.as_ref()?.1,
                    })
                });
            self.cache
                .move_pod(&self.index, old_v.as_ref(), new_v.as_ref());
            // What a compiled policy reads of a peer pod: whether its
            // selectors find it, and then its addresses and container
            // ports (its key never changes). A change of anything else
            // (a label no selector's verdict depends on) recompiles
            // nothing.
            let [was, is] = &versions;
            let data_changed = match (was, is) {
                (Some((a, _)), Some((b, _))) => a.ips != b.ips || a.ports != b.ports,
                _ => true,
            };
            for (dep, who) in &self.dependents {
                let found_before = was.as_ref().is_some_and(|(p, l)| dep.covers(p, l));
                let found_now = is.as_ref().is_some_and(|(p, l)| dep.covers(p, l));
                if found_before != found_now || (found_now && data_changed) {
                    peers_moved.extend(who.iter().copied());
                }
            }
            if data_changed {
                mark(&self.global);
            }
        }
        for ns in local_namespaces {
            let keys = in_namespace(&snapshot.policies, ns).map(|(k, _)| k.clone());
            dirty.compile.extend(keys);
            let keys = in_namespace(&self.entries, ns).map(|(k, _)| k.clone());
            dirty.compile.extend(keys);
        }
        peers_moved.sort_unstable();
        peers_moved.dedup();
        if !dirty.compile.is_empty() {
            peers_moved.retain(|&at| !dirty.compile.contains(&entry(slots, at).key));
        }
        dirty.relink = peers_moved;
        dirty
    }

    /// Relinks the policies `dirty.relink` where it can, and compiles the
    /// others and `dirty.compile` again (dropping the old entries);
    /// returns how many now select a local pod, compiled and relinked.
    fn compile(&mut self, dirty: &Dirty) -> (usize, usize) {
        let Self {
            snapshot,
            index,
            local,
            entries,
            slots,
            free,
            dependents,
            global,
            cache,
            pods,
        } = self;
        let mut compiler = Compiler::with_cache(snapshot, index, std::mem::take(cache));
        let mut relinked = 0;
        let mut keys: Vec<NamespacedName> = dirty.compile.iter().cloned().collect();
        for &at in &dirty.relink {
            // Relinked in place: the entry keeps its selection, its
            // selectors and its place in `dependents`. The policy is the
            // same: a changed one is in `dirty.compile`.
            let Some(entry) = slots[at].as_mut() else {
                continue;
            };
            debug_assert!(snapshot.policies.get(&entry.key) == Some(&entry.policy));
            if relink(&entry.policy, &mut entry.compiled, compiler.cache()) {
                relinked += 1;
            } else {
                keys.push(entry.key.clone());
            }
        }
        let mut compiled = 0;
        for key in &keys {
            let place = entries.get(key).copied();
            let old = place.and_then(|at| slots[at].take());
            let policy = snapshot.policies.get(key);
            let candidates: Vec<&Pod> = policy
                .map(|p| {
                    in_namespace(local, &p.namespace)
                        .map(|(_, p)| &**p)
                        .collect()
                })
                .unwrap_or_default();
            let made = policy
                .and_then(|p| compile_policy(&mut compiler, key, p, &candidates).map(|c| (p, c)));
            let Some((policy, (chosen, rules))) = made else {
                if let (Some(at), Some(old)) = (place, old) {
                    forget(dependents, global, at, old.deps);
                    entries.remove(key);
                    free.push(at);
                    *pods = None;
                }
                continue;
            };
            let at = place.unwrap_or_else(|| {
                let at = free.pop().unwrap_or_else(|| {
                    slots.push(None);
                    slots.len() - 1
                });
                entries.insert(key.clone(), at);
                at
            });
            let selected: Vec<NamespacedName> =
                chosen.iter().map(|&i| candidates[i].key()).collect();
            let same_pods = old.as_ref().is_some_and(|o| {
                let was = o.compiled.iter().map(|r| r.direction);
                o.selected == selected && was.eq(rules.iter().map(|r| r.direction))
            });
            if !same_pods {
                *pods = None;
            }
            // The same policy reads the same selectors: most policies
            // compiled again are so (a peer pod moved), and keep their
            // place in `dependents`.
            let deps = match old {
                // `Arc`'s equality compares addresses first.
                Some(old) if old.policy == *policy => old.deps,
                old => {
                    if let Some(old) = old {
                        forget(dependents, global, at, old.deps);
                    }
                    let (deps, reads_all) = deps_of(policy);
                    for dep in &deps {
                        dependents.entry(dep.clone()).or_default().insert(at);
                    }
                    if reads_all {
                        global.insert(at);
                    }
                    deps
                }
            };
            slots[at] = Some(Entry {
                key: key.clone(),
                policy: Arc::clone(policy),
                selected,
                compiled: rules,
                deps,
            });
            compiled += 1;
        }
        *cache = compiler.into_cache();
        cache.clear_stale();
        (compiled, relinked)
    }

    /// The resolution the kept state stands for.
    fn resolution(&mut self) -> Resolution {
        let policies = self
            .entries
            .values()
            .flat_map(|&at| entry(&self.slots, at).compiled.iter().map(Rc::clone))
            .collect();
        let pods = match &self.pods {
            Some(pods) => Rc::clone(pods),
            None => Rc::clone(self.pods.insert(Rc::new(self.local_pods()))),
        };
        Resolution { pods, policies }
    }

    /// The local pods with the policies that isolate them.
    fn local_pods(&self) -> Vec<LocalPod> {
        let mut isolating: HashMap<&NamespacedName, [Vec<NamespacedName>; 2]> = HashMap::new();
        for (key, &at) in &self.entries {
            let entry = entry(&self.slots, at);
            for r in &entry.compiled {
                let side = match r.direction {
                    Direction::Ingress => 0,
                    Direction::Egress => 1,
                };
                for pod in &entry.selected {
                    isolating.entry(pod).or_default()[side].push(key.clone());
                }
            }
        }
        self.local
            .iter()
            .map(|(key, p)| {
                let [ingress, egress] = isolating.remove(key).unwrap_or_default();
                LocalPod {
                    key: key.clone(),
                    ips: p.ips.clone(),
                    ingress,
                    egress,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_between_snapshots_list_every_differing_key() {
        let mut a = Snapshot::default();
        a.add_namespace(crate::model::Namespace::new("ns", Labels::new()));
        let b = a.clone();
        assert!(Changes::between(&a, &b).is_empty());
        let mut c = b.clone();
        c.namespaces.clear();
        let changes = Changes::between(&a, &c);
        assert_eq!(changes.namespaces, BTreeSet::from(["ns".to_owned()]));
    }
}
