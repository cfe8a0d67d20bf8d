//! [`Stores`]: the agent's view of the cluster, fed by the watchers and read
//! by the sync loop.
//!
//! A reflector of `model` objects: each watch event is converted on arrival
//! and applied to one [`Snapshot`]. A (re-)list is buffered from `Init` to
//! `InitDone` and then replaces that kind's objects whole, so a re-list
//! after `410 Gone` or a lost connection never shows a half-listed kind; the
//! old view stays enforced meanwhile. [`Stores::take`] gives nothing until
//! every kind has listed once: a partial view could open or close traffic
//! wrongly. An event or re-list that leaves the view as it was (a pod's
//! status update, once trimmed and converted, usually does) is no change:
//! it does not wake the sync loop.
//!
//! The view is shared, not copied, with the sync that takes it and with
//! the drop-log reader that keeps the applied views (`observe`): the first
//! change after a take copies it (`Arc::make_mut`) only while one of them
//! still holds it. At 100,000 pods a copy is about 140 MiB and 0.1 s, and
//! copying on every take kept one more copy resident than this does
//! (`examples/scale_agent.rs`).
//!
//! Each take also hands over the keys of the objects that changed since the
//! previous take ([`Changes`]), so the sync can resolve only what they
//! touch; a re-list records the keys that differ from what the kind held.
//!
//! An object that cannot be read is warned about (once per change), counted
//! in `kube_nftpolicy_invalid_objects` and `errors_total{kind="invalid_object"}`,
//! and left out of the snapshot; the other objects still apply.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use tokio::sync::Notify;
use tracing::warn;

use super::trim::{Convert, Object};
use super::watch::WatchFailure;
use super::Kind;
use crate::metrics::Metrics;
use nftpolicy_core::model::{NamespacedName, Pools, Snapshot};
use nftpolicy_core::resolve::{changed_keys, Changes};

/// What [`Stores::take`] hands to a sync.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The whole view: every namespace, pod and policy (shared with the
    /// stores until their next change).
    pub snapshot: Arc<Snapshot>,
    /// Arrival of the oldest event not covered by an earlier take.
    pub pending_since: Option<Instant>,
    /// The keys of the objects changed since the previous take; `None`
    /// for the first take, or after more than [`MAX_CHANGES`] changes
    /// (resolve from scratch).
    pub changes: Option<Changes>,
    /// The number of this take (1, 2, ...): the changes are complete
    /// relative to take `sequence - 1` only.
    pub sequence: u64,
}

/// What [`Stores::take`] found.
#[derive(Debug, Clone)]
pub enum Take {
    /// Some kind has not listed completely yet: apply nothing.
    NotListed,
    /// Nothing changed since the last take, and no sync was forced.
    Unchanged,
    /// The view to sync.
    Snapshot(Taken),
}

/// A watcher event, its object converted (before the store is locked).
enum Step {
    Init,
    /// An object of a list; its key if it could not be read.
    Listed(Result<Object, NamespacedName>),
    Done,
    /// An added or modified object; its key if it could not be read.
    Apply(Result<Object, NamespacedName>),
    Delete(NamespacedName),
}

#[derive(Debug, Default)]
struct KindState {
    listed: bool,
    /// Objects of a list in progress (`Init` .. `InitDone`).
    relist: Option<Vec<Object>>,
    relist_invalid: BTreeSet<NamespacedName>,
    invalid: BTreeSet<NamespacedName>,
    /// 403s in a row (an API server that just started answers 403 for a
    /// few seconds, before its RBAC caches are filled).
    forbidden: u32,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Arc<Snapshot>,
    kinds: [KindState; 3],
    changed: bool,
    pending_since: Option<Instant>,
    generation: u64,
    /// Keys changed since the last take; `None` until the first take and
    /// when too many to be worth it.
    changes: Option<Changes>,
    /// Takes so far.
    takes: u64,
}

/// The three stores (namespaces, pods, policies) and the sync trigger.
pub struct Stores {
    state: Mutex<State>,
    /// One copy of each distinct namespace name, node name and label set
    /// that pods have in common (the pods of a workload carry the same
    /// labels): about a third of the objects' memory at 100,000 pods.
    /// Locked on its own, while converting, not under `state`.
    pools: Mutex<Pools>,
    notify: Notify,
    metrics: Arc<Metrics>,
}

fn key_of<K: Resource>(kind: Kind, obj: &K) -> NamespacedName {
    match kind {
        Kind::Namespace => NamespacedName::new("", obj.name_any()),
        _ => NamespacedName::new(obj.namespace().unwrap_or_default(), obj.name_any()),
    }
}

fn object_key(o: &Object) -> NamespacedName {
    match o {
        Object::Namespace(n) => NamespacedName::new("", n.name.clone()),
        Object::Pod(p) => p.key(),
        Object::Policy(p) => NamespacedName::new(p.namespace.clone(), p.name.clone()),
    }
}

/// Most changed keys recorded between two takes; past them, the next sync
/// resolves from scratch (cheaper than following them one by one, and the
/// keys of a cluster-wide re-list are not kept).
pub const MAX_CHANGES: usize = 5_000;

/// Records `key` of `kind` as changed (nothing once `changes` is `None`).
fn record(changes: &mut Option<Changes>, kind: Kind, key: NamespacedName) {
    let Some(c) = changes else {
        return;
    };
    if c.pods.len() + c.namespaces.len() + c.policies.len() >= MAX_CHANGES {
        *changes = None;
        return;
    }
    let changes = c;
    match kind {
        Kind::Namespace => {
            changes.namespaces.insert(key.name.to_string());
        }
        Kind::Pod => {
            changes.pods.insert(key);
        }
        Kind::NetworkPolicy => {
            changes.policies.insert(key);
        }
    }
}

fn kind_of(o: &Object) -> Kind {
    match o {
        Object::Namespace(_) => Kind::Namespace,
        Object::Pod(_) => Kind::Pod,
        Object::Policy(_) => Kind::NetworkPolicy,
    }
}

/// Adds or replaces `o`; `false` if an equal object was already there
/// (then `s` is not copied).
fn insert(s: &mut Arc<Snapshot>, o: Object) -> bool {
    let same = match &o {
        Object::Namespace(n) => s.namespaces.get(&n.name).map(|x| &**x) == Some(n),
        Object::Pod(p) => s.pods.get(&p.key()).map(|x| &**x) == Some(p),
        Object::Policy(p) => s.policies.get(&object_key(&o)).map(|x| &**x) == Some(p),
    };
    if same {
        return false;
    }
    add(Arc::make_mut(s), o);
    true
}

fn add(s: &mut Snapshot, o: Object) {
    match o {
        Object::Namespace(n) => s.add_namespace(n),
        Object::Pod(p) => s.add_pod(p),
        Object::Policy(p) => s.add_policy(p),
    }
}

/// Replaces the objects of `kind` with those of `fresh` if they differ
/// (only then is `s` copied), recording the keys that differ in
/// `changes`; whether they differed.
fn replace_kind(
    s: &mut Arc<Snapshot>,
    kind: Kind,
    fresh: Snapshot,
    changes: &mut Option<Changes>,
) -> bool {
    let differ = match changes {
        // Nothing is recorded (before the first take, or past the cap):
        // comparing is enough, without a set of every differing key (all
        // 100,000 of them on the first list of a large cluster's pods).
        None => match kind {
            Kind::Namespace => s.namespaces != fresh.namespaces,
            Kind::Pod => s.pods != fresh.pods,
            Kind::NetworkPolicy => s.policies != fresh.policies,
        },
        Some(_) => {
            let keys = match kind {
                Kind::Namespace => changed_keys(&s.namespaces, &fresh.namespaces)
                    .into_iter()
                    .map(|name| NamespacedName::new("", name))
                    .collect(),
                Kind::Pod => changed_keys(&s.pods, &fresh.pods),
                Kind::NetworkPolicy => changed_keys(&s.policies, &fresh.policies),
            };
            let differ = !keys.is_empty();
            for key in keys {
                record(changes, kind, key);
            }
            differ
        }
    };
    if differ {
        let s = Arc::make_mut(s);
        match kind {
            Kind::Namespace => s.namespaces = fresh.namespaces,
            Kind::Pod => s.pods = fresh.pods,
            Kind::NetworkPolicy => s.policies = fresh.policies,
        }
    }
    differ
}

fn remove(s: &mut Arc<Snapshot>, kind: Kind, key: &NamespacedName) -> bool {
    let present = match kind {
        Kind::Namespace => s.namespaces.contains_key(&*key.name),
        Kind::Pod => s.pods.contains_key(key),
        Kind::NetworkPolicy => s.policies.contains_key(key),
    };
    if !present {
        return false;
    }
    let s = Arc::make_mut(s);
    match kind {
        Kind::Namespace => s.namespaces.remove(&*key.name).is_some(),
        Kind::Pod => s.pods.remove(key).is_some(),
        Kind::NetworkPolicy => s.policies.remove(key).is_some(),
    }
}

impl Stores {
    /// Empty stores; nothing listed yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            pools: Mutex::new(Pools::new()),
            notify: Notify::new(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one watcher event of `kind`. An event that leaves the view
    /// as it was (a status update of a pod, say: trimmed and converted, it
    /// is the same model object) does not wake the sync loop.
    pub fn handle<K: Resource + Convert>(&self, kind: Kind, event: Event<K>) {
        let arrived = Instant::now();
        self.metrics.watch_event(kind.as_str());
        // Convert before locking: the sync loop's `take` waits for the lock.
        let step = match event {
            Event::Init => Step::Init,
            Event::InitApply(obj) => Step::Listed(self.read(kind, &obj)),
            Event::InitDone => Step::Done,
            Event::Apply(obj) => Step::Apply(self.read(kind, &obj)),
            Event::Delete(obj) => Step::Delete(key_of(kind, &obj)),
        };
        let mut st = self.lock();
        let st = &mut *st;
        let ks = &mut st.kinds[kind.index()];
        let changed = match step {
            Step::Init => {
                ks.relist = Some(Vec::new());
                ks.relist_invalid.clear();
                false
            }
            Step::Listed(Ok(o)) => {
                ks.relist.get_or_insert_with(Vec::new).push(o);
                false
            }
            Step::Listed(Err(key)) => {
                ks.relist_invalid.insert(key);
                false
            }
            Step::Done => {
                self.metrics.list(kind.as_str());
                ks.forbidden = 0;
                let mut fresh = Snapshot::default();
                for o in ks.relist.take().unwrap_or_default() {
                    add(&mut fresh, o);
                }
                ks.invalid = std::mem::take(&mut ks.relist_invalid);
                let first = !std::mem::replace(&mut ks.listed, true);
                let differ = replace_kind(&mut st.snapshot, kind, fresh, &mut st.changes);
                // The first list always counts: it may complete the view.
                first || differ
            }
            Step::Apply(Ok(o)) => {
                let key = object_key(&o);
                ks.invalid.remove(&key);
                let kind = kind_of(&o);
                let changed = insert(&mut st.snapshot, o);
                if changed {
                    record(&mut st.changes, kind, key);
                }
                changed
            }
            Step::Apply(Err(key)) => {
                let removed = remove(&mut st.snapshot, kind, &key);
                ks.invalid.insert(key.clone());
                if removed {
                    record(&mut st.changes, kind, key);
                }
                removed
            }
            Step::Delete(key) => {
                ks.invalid.remove(&key);
                let removed = remove(&mut st.snapshot, kind, &key);
                if removed {
                    record(&mut st.changes, kind, key);
                }
                removed
            }
        };
        let ks = &st.kinds[kind.index()];
        self.metrics.set_invalid(kind.as_str(), ks.invalid.len());
        if changed {
            st.changed = true;
            st.generation += 1;
            st.pending_since.get_or_insert(arrived);
            self.notify.notify_one();
        }
    }

    /// Converts an object; on failure warns, counts and returns its key.
    fn read<K: Resource + Convert>(&self, kind: Kind, obj: &K) -> Result<Object, NamespacedName> {
        let key = key_of(kind, obj);
        match obj.convert() {
            Ok(mut o) if object_key(&o) == key => {
                let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
                match &mut o {
                    Object::Pod(p) => pools.share_pod(p),
                    Object::Namespace(n) => pools.share_namespace(n),
                    Object::Policy(_) => {}
                }
                Ok(o)
            }
            Ok(o) => {
                let got = object_key(&o);
                warn!(%kind, object = %key, %got, "object read under another name; skipped");
                self.metrics.error("invalid_object");
                Err(key)
            }
            Err(error) => {
                warn!(%kind, object = %key, %error, "invalid object skipped (the rest still applies)");
                self.metrics.error("invalid_object");
                Err(key)
            }
        }
    }

    /// A watch or list of `kind` failed; the watcher retries with backoff
    /// and re-lists, and the last view stays enforced.
    pub fn watch_error(&self, kind: Kind, failure: WatchFailure, error: &dyn std::fmt::Display) {
        let streak = {
            let mut st = self.lock();
            let ks = &mut st.kinds[kind.index()];
            ks.forbidden = match failure {
                WatchFailure::Forbidden => ks.forbidden + 1,
                _ => 0,
            };
            ks.forbidden
        };
        match failure {
            // The first 403 of a kind that listed before may be an API
            // server that has just started: an error only when it lasts.
            WatchFailure::Forbidden if streak == 1 && self.lock().kinds[kind.index()].listed => {
                warn!(
                    %kind, %error,
                    "the API server refused to list/watch {} (an API server that just started \
                     may do so for a few seconds); retrying",
                    kind.resource()
                )
            }
            WatchFailure::Forbidden => tracing::error!(
                %kind, %error,
                "the agent may not list/watch {}: check the ClusterRole kube-nftpolicy \
                 (manifests/00-rbac.yaml); retrying, the last state stays enforced",
                kind.resource()
            ),
            WatchFailure::Unauthorized => tracing::error!(
                %kind, %error,
                "the API server does not accept the agent's credentials; retrying, \
                 the last state stays enforced"
            ),
            WatchFailure::Gone => {
                tracing::info!(%kind, %error, "resource version too old; listing again")
            }
            WatchFailure::Other => {
                warn!(%kind, %error, "watch failed; retrying (the last state stays enforced)")
            }
        }
        self.metrics.error(failure.metric_label());
    }

    /// A counter of changes: equal values, no change in between.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The whole view if something changed since the last take or `force`
    /// is set (and marks everything as taken), shared: the next change
    /// copies it if the taker still holds it. Nothing until every kind has
    /// listed once.
    pub fn take(&self, force: bool) -> Take {
        let mut st = self.lock();
        if !st.kinds.iter().all(|k| k.listed) {
            return Take::NotListed;
        }
        if !st.changed && !force {
            return Take::Unchanged;
        }
        st.changed = false;
        st.takes += 1;
        Take::Snapshot(Taken {
            snapshot: st.snapshot.clone(),
            pending_since: st.pending_since.take(),
            changes: st.changes.replace(Changes::default()),
            sequence: st.takes,
        })
    }

    /// Waits for a change (returns at once if one came since the last wait).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Namespace as ApiNamespace, Pod as ApiPod};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use serde_json::json;

    use super::*;
    use nftpolicy_core::model::Shared;

    fn pod(name: &str, app: &str, ip: &str) -> ApiPod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip}
        }))
        .unwrap()
    }

    fn list_pods(s: &Stores, pods: &[ApiPod]) {
        s.handle::<ApiPod>(Kind::Pod, Event::Init);
        for p in pods {
            s.handle(Kind::Pod, Event::InitApply(p.clone()));
        }
        s.handle::<ApiPod>(Kind::Pod, Event::InitDone);
    }

    #[test]
    fn only_real_changes_wake_the_loop() {
        let s = Stores::new(Arc::new(Metrics::new()));
        s.handle::<ApiNamespace>(Kind::Namespace, Event::Init);
        s.handle::<ApiNamespace>(Kind::Namespace, Event::InitDone);
        s.handle::<NetworkPolicy>(Kind::NetworkPolicy, Event::Init);
        assert!(matches!(s.take(true), Take::NotListed));
        s.handle::<NetworkPolicy>(Kind::NetworkPolicy, Event::InitDone);
        let web = pod("web", "web", "10.0.0.1");
        list_pods(&s, std::slice::from_ref(&web));
        assert!(matches!(s.take(false), Take::Snapshot(_)));
        assert!(matches!(s.take(false), Take::Unchanged));
        assert!(matches!(s.take(true), Take::Snapshot(_)));

        let g = s.generation();
        s.handle(Kind::Pod, Event::Apply(web.clone()));
        list_pods(&s, std::slice::from_ref(&web));
        // Invalid and not stored: counted, but the view is the same.
        s.handle(Kind::Pod, Event::Apply(pod("bad", "x", "not-an-ip")));
        assert_eq!(s.generation(), g, "nothing changed");
        assert!(matches!(s.take(false), Take::Unchanged));
        assert_eq!(s.lock().kinds[Kind::Pod.index()].invalid.len(), 1);

        // The stored pod turns invalid: removed, a change.
        s.handle(Kind::Pod, Event::Apply(pod("web", "web", "not-an-ip")));
        assert_eq!(s.generation(), g + 1);
        assert_eq!(s.lock().kinds[Kind::Pod.index()].invalid.len(), 2);
        let Take::Snapshot(t) = s.take(false) else {
            panic!("a change")
        };
        assert!(t.snapshot.pods.is_empty());
        s.handle(Kind::Pod, Event::Apply(pod("web", "other", "10.0.0.1")));
        assert_eq!(s.generation(), g + 2);
        assert_eq!(s.lock().kinds[Kind::Pod.index()].invalid.len(), 1);
    }

    /// Pods with equal labels hold one copy of them, and of their
    /// namespace and node names, listed or watched.
    #[test]
    fn pods_of_one_app_share_their_labels() {
        let s = Stores::new(Arc::new(Metrics::new()));
        for kind in [Kind::Namespace, Kind::NetworkPolicy] {
            s.handle::<ApiNamespace>(kind, Event::Init);
            s.handle::<ApiNamespace>(kind, Event::InitDone);
        }
        list_pods(
            &s,
            &[pod("a", "web", "10.0.0.1"), pod("b", "web", "10.0.0.2")],
        );
        s.handle(Kind::Pod, Event::Apply(pod("c", "web", "10.0.0.3")));
        s.handle(Kind::Pod, Event::Apply(pod("d", "db", "10.0.0.4")));
        let Take::Snapshot(t) = s.take(false) else {
            panic!("listed")
        };
        let pod = |name: &str| &t.snapshot.pods[&NamespacedName::new("shop", name)];
        assert!(pod("a").labels.same_copy(&pod("b").labels));
        assert!(pod("a").labels.same_copy(&pod("c").labels));
        assert!(!pod("a").labels.same_copy(&pod("d").labels));
        assert_eq!(pod("d").labels["app"], "db");
        let node = |name: &str| pod(name).node.clone().unwrap();
        assert!(node("a").same_copy(&node("d")));
        assert!(pod("b").namespace.same_copy(&pod("c").namespace));
    }

    #[test]
    fn each_take_hands_over_the_keys_changed_since_the_last() {
        let s = Stores::new(Arc::new(Metrics::new()));
        s.handle::<ApiNamespace>(Kind::Namespace, Event::Init);
        s.handle::<ApiNamespace>(Kind::Namespace, Event::InitDone);
        s.handle::<NetworkPolicy>(Kind::NetworkPolicy, Event::Init);
        s.handle::<NetworkPolicy>(Kind::NetworkPolicy, Event::InitDone);
        let (web, db) = (pod("web", "web", "10.0.0.1"), pod("db", "db", "10.0.0.2"));
        list_pods(&s, &[web.clone(), db.clone()]);
        let Take::Snapshot(first) = s.take(false) else {
            panic!("listed")
        };
        let key = |n: &str| NamespacedName::new("shop", n);
        assert_eq!(first.sequence, 1);
        assert_eq!(first.changes, None, "the first take resolves from scratch");

        // An unchanged object is no change; a relabelled one is.
        s.handle(Kind::Pod, Event::Apply(web.clone()));
        s.handle(Kind::Pod, Event::Apply(pod("db", "other", "10.0.0.2")));
        let Take::Snapshot(second) = s.take(false) else {
            panic!("a change")
        };
        assert_eq!(second.sequence, 2);
        let changes = second.changes.expect("recorded after the first take");
        assert_eq!(changes.pods, BTreeSet::from([key("db")]));
        assert!(changes.namespaces.is_empty() && changes.policies.is_empty());

        // A forced take with nothing changed hands over no keys.
        let Take::Snapshot(third) = s.take(true) else {
            panic!("forced")
        };
        assert!(third.changes.is_some_and(|c| c.is_empty()));

        // A re-list: only the keys that differ from what was held (db
        // back to its old labels, web gone, api new).
        list_pods(&s, &[db, pod("api", "api", "10.0.0.3")]);
        let Take::Snapshot(fourth) = s.take(false) else {
            panic!("a change")
        };
        assert_eq!(fourth.sequence, 4);
        assert_eq!(
            fourth.changes.expect("recorded").pods,
            BTreeSet::from([key("web"), key("db"), key("api")])
        );
        assert_eq!(fourth.snapshot.pods.len(), 2);

        // More keys than are worth following: the next sync from scratch.
        for i in 0..=MAX_CHANGES {
            let ip = format!("10.1.{}.{}", i / 250, i % 250 + 1);
            s.handle(Kind::Pod, Event::Apply(pod(&format!("p{i}"), "x", &ip)));
        }
        let Take::Snapshot(fifth) = s.take(false) else {
            panic!("a change")
        };
        assert_eq!(fifth.changes, None);
        s.handle(Kind::Pod, Event::Apply(pod("one-more", "x", "10.9.0.1")));
        let Take::Snapshot(sixth) = s.take(false) else {
            panic!("a change")
        };
        assert_eq!(
            sixth.changes.map(|c| c.pods.len()),
            Some(1),
            "recording again"
        );
    }
}
