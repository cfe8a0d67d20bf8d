//! [`Stores`]: the agent's view of the cluster, fed by the watchers and read
//! by the sync loop.
//!
//! A reflector of `model` objects: each watch event is converted on arrival
//! and applied to one [`Snapshot`]. A (re-)list is buffered from `Init` to
//! `InitDone` and then replaces that kind's objects whole, so a re-list
//! after `410 Gone` or a lost connection never shows a half-listed kind; the
//! old view stays enforced meanwhile. [`Stores::take`] gives nothing until
//! every kind has listed once: a partial view could open or close traffic
//! wrongly.
//!
//! An object that cannot be read is warned about (once per change), counted
//! in `kube_nftpolicy_invalid_objects` and `errors_total{kind="invalid_object"}`,
//! and left out of the snapshot; the other objects still apply.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use tokio::sync::Notify;
use tracing::warn;

use super::trim::{convert, Object};
use super::Kind;
use crate::metrics::Metrics;
use crate::model::{NamespacedName, Snapshot};

/// What [`Stores::take`] hands to a sync.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The whole view: every namespace, pod and policy.
    pub snapshot: Snapshot,
    /// Whether anything changed since the last take.
    pub changed: bool,
    /// Arrival of the oldest event not covered by an earlier take.
    pub pending_since: Option<Instant>,
}

#[derive(Debug, Default)]
struct KindState {
    listed: bool,
    /// Objects of a list in progress (`Init` .. `InitDone`).
    relist: Option<Vec<Object>>,
    relist_invalid: BTreeSet<NamespacedName>,
    invalid: BTreeSet<NamespacedName>,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Snapshot,
    kinds: [KindState; 3],
    changed: bool,
    pending_since: Option<Instant>,
    generation: u64,
}

/// The three stores (namespaces, pods, policies) and the sync trigger.
pub struct Stores {
    state: Mutex<State>,
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

fn insert(s: &mut Snapshot, o: Object) {
    match o {
        Object::Namespace(n) => s.add_namespace(n),
        Object::Pod(p) => s.add_pod(p),
        Object::Policy(p) => s.add_policy(p),
    }
}

fn remove(s: &mut Snapshot, kind: Kind, key: &NamespacedName) -> bool {
    match kind {
        Kind::Namespace => s.namespaces.remove(&key.name).is_some(),
        Kind::Pod => s.pods.remove(key).is_some(),
        Kind::NetworkPolicy => s.policies.remove(key).is_some(),
    }
}

impl Stores {
    /// Empty stores; nothing listed yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one watcher event of `kind`.
    pub fn handle<K: Resource + Serialize>(&self, kind: Kind, event: Event<K>) {
        let arrived = Instant::now();
        self.metrics.watch_event(kind.as_str());
        let mut st = self.lock();
        let st = &mut *st;
        let ks = &mut st.kinds[kind.index()];
        let changed = match event {
            Event::Init => {
                ks.relist = Some(Vec::new());
                ks.relist_invalid.clear();
                false
            }
            Event::InitApply(obj) => {
                let key = key_of(kind, &obj);
                match self.read(kind, &key, &obj) {
                    Some(o) => ks.relist.get_or_insert_with(Vec::new).push(o),
                    None => drop(ks.relist_invalid.insert(key)),
                }
                false
            }
            Event::InitDone => {
                let objects = ks.relist.take().unwrap_or_default();
                ks.invalid = std::mem::take(&mut ks.relist_invalid);
                ks.listed = true;
                let s = &mut st.snapshot;
                match kind {
                    Kind::Namespace => s.namespaces.clear(),
                    Kind::Pod => s.pods.clear(),
                    Kind::NetworkPolicy => s.policies.clear(),
                }
                for o in objects {
                    insert(s, o);
                }
                true
            }
            Event::Apply(obj) => {
                let key = key_of(kind, &obj);
                match self.read(kind, &key, &obj) {
                    Some(o) => {
                        ks.invalid.remove(&key);
                        insert(&mut st.snapshot, o);
                    }
                    None => {
                        ks.invalid.insert(key.clone());
                        remove(&mut st.snapshot, kind, &key);
                    }
                }
                true
            }
            Event::Delete(obj) => {
                let key = key_of(kind, &obj);
                ks.invalid.remove(&key);
                remove(&mut st.snapshot, kind, &key)
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

    /// Converts an object; on failure warns, counts and returns `None`.
    fn read<K: Serialize>(&self, kind: Kind, key: &NamespacedName, obj: &K) -> Option<Object> {
        match convert(kind, obj) {
            Ok(o) if object_key(&o) == *key => Some(o),
            Ok(o) => {
                let got = object_key(&o);
                warn!(%kind, object = %key, %got, "object read under another name; skipped");
                self.metrics.error("invalid_object");
                None
            }
            Err(error) => {
                warn!(%kind, object = %key, %error, "invalid object skipped (the rest still applies)");
                self.metrics.error("invalid_object");
                None
            }
        }
    }

    /// A watch or list of `kind` failed; the watcher retries with backoff
    /// and re-lists, and the last view stays enforced.
    pub fn watch_error(&self, kind: Kind, error: &dyn std::fmt::Display) {
        warn!(%kind, %error, "watch failed; retrying (the last state stays enforced)");
        self.metrics.error("watch");
    }

    /// A counter of changes: equal values, no change in between.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Whether every kind has listed completely at least once.
    pub fn listed(&self) -> bool {
        self.lock().kinds.iter().all(|k| k.listed)
    }

    /// The whole view, or `None` until every kind has listed once. Marks
    /// everything as taken.
    pub fn take(&self) -> Option<Taken> {
        let mut st = self.lock();
        if !st.kinds.iter().all(|k| k.listed) {
            return None;
        }
        Some(Taken {
            snapshot: st.snapshot.clone(),
            changed: std::mem::take(&mut st.changed),
            pending_since: st.pending_since.take(),
        })
    }

    /// Waits for a change (returns at once if one came since the last wait).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}
