//! An index of the snapshot's active pods by namespace and by label, and of
//! namespaces by label, so that selectors are answered without scanning
//! every pod.
//!
//! The index owns its pods (shared `Arc`s of the snapshot's) and keeps each
//! in a slot; posting lists hold slots, sorted. A full resolve builds it
//! once per sync; the incremental resolver keeps one across syncs and
//! moves only the pods that changed ([`Index::update`]).

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use super::Origin;

use crate::model::{NamespaceScope, NamespacedName, Pod, Selector, Snapshot};

/// Active pods (not hostNetwork, with an IP, not finished), indexed.
#[derive(Default)]
pub struct Index {
    /// Slot → pod; `None` for a free slot.
    slots: Vec<Option<Arc<Pod>>>,
    /// Each pod as the origin of set entries, per slot; made on first use
    /// (most pods are nobody's peer).
    origins: Vec<OnceCell<Origin>>,
    /// Free slots, reused first.
    free: Vec<usize>,
    active: usize,
    by_namespace: BTreeMap<Arc<str>, Vec<usize>>,
    by_label: HashMap<String, HashMap<String, Vec<usize>>>,
}

/// Inserts `v` into the sorted `list`.
pub(super) fn insert_sorted(list: &mut Vec<usize>, v: usize) {
    if let Err(at) = list.binary_search(&v) {
        list.insert(at, v);
    }
}

/// Removes `v` from the sorted `list`; whether the list is now empty.
pub(super) fn remove_sorted(list: &mut Vec<usize>, v: usize) -> bool {
    if let Ok(at) = list.binary_search(&v) {
        list.remove(at);
    }
    list.is_empty()
}

/// Puts the sorted `new` into the sorted `list` (each once): the stable
/// sort finds the two sorted runs and merges them in one pass.
pub(super) fn insert_all_sorted(list: &mut Vec<usize>, new: &[usize]) {
    list.extend_from_slice(new);
    list.sort();
    list.dedup();
}

/// Takes the sorted `gone` out of the sorted `list` in one pass.
pub(super) fn remove_all_sorted(list: &mut Vec<usize>, gone: &[usize]) {
    let mut gone = gone.iter().copied().peekable();
    list.retain(|&v| {
        while gone.next_if(|&g| g < v).is_some() {}
        gone.next_if_eq(&v).is_none()
    });
}

impl Index {
    /// Indexes the active pods of `snapshot`; slots follow the snapshot's
    /// order (`ns/name`).
    pub fn new(snapshot: &Snapshot) -> Self {
        let mut index = Self::default();
        for p in snapshot.pods.values() {
            if p.ignored().is_none() {
                index.add(Arc::clone(p));
            }
        }
        index
    }

    /// Puts `pod` (active) in a slot and in the posting lists.
    fn add(&mut self, pod: Arc<Pod>) {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.origins.push(OnceCell::new());
                self.slots.len() - 1
            }
        };
        insert_sorted(
            self.by_namespace.entry(pod.namespace.clone()).or_default(),
            slot,
        );
        for (k, v) in &pod.labels {
            let values = match self.by_label.get_mut(k.as_str()) {
                Some(values) => values,
                None => self.by_label.entry(k.clone()).or_default(),
            };
            match values.get_mut(v.as_str()) {
                Some(list) => insert_sorted(list, slot),
                None => {
                    values.insert(v.clone(), vec![slot]);
                }
            }
        }
        self.slots[slot] = Some(pod);
        self.active += 1;
    }

    /// Takes the pod in `slot` out of the index.
    fn take(&mut self, slot: usize) {
        let Some(pod) = self.slots[slot].take() else {
            return;
        };
        self.origins[slot] = OnceCell::new();
        if let Some(list) = self.by_namespace.get_mut(&*pod.namespace) {
            if remove_sorted(list, slot) {
                self.by_namespace.remove(&*pod.namespace);
            }
        }
        for (k, v) in &pod.labels {
            if let Some(values) = self.by_label.get_mut(k.as_str()) {
                if values
                    .get_mut(v.as_str())
                    .is_some_and(|l| remove_sorted(l, slot))
                {
                    values.remove(v.as_str());
                }
                if values.is_empty() {
                    self.by_label.remove(k.as_str());
                }
            }
        }
        self.free.push(slot);
        self.active -= 1;
    }

    /// Moves pod `key` to its new version (`None`: deleted). An inactive
    /// version is not indexed.
    pub fn update(&mut self, key: &NamespacedName, new: Option<&Arc<Pod>>) {
        if let Some(slot) = self.slot(key) {
            self.take(slot);
        }
        if let Some(pod) = new.filter(|p| p.ignored().is_none()) {
            self.add(Arc::clone(pod));
        }
    }

    /// The slot of the active pod `key`: a search of its namespace's pods
    /// (no map of keys: at 100,000 pods one would cost 12 MiB).
    pub fn slot(&self, key: &NamespacedName) -> Option<usize> {
        self.by_namespace
            .get(&*key.namespace)?
            .iter()
            .copied()
            .find(|&slot| self.pod(slot).name == key.name)
    }

    /// The slots of the active pods of namespace `ns`, ascending.
    pub fn in_namespace(&self, ns: &str) -> &[usize] {
        self.by_namespace.get(ns).map_or(&[], Vec::as_slice)
    }

    /// The pod in `slot` (a slot a selection returned).
    pub fn pod(&self, slot: usize) -> &Pod {
        self.slots[slot]
            .as_deref()
            .expect("a selection returns occupied slots")
    }

    /// Every occupied slot, ascending.
    pub fn all(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .collect()
    }

    /// The pod in `slot` as the origin of set entries (shared by all of its
    /// entries in every set).
    pub fn pod_origin(&self, slot: usize) -> Origin {
        self.origins[slot]
            .get_or_init(|| Origin::Pod(Rc::new(self.pod(slot).key())))
            .clone()
    }

    /// Active pods whose `spec.nodeName` is `node`, sorted by key.
    pub fn local_pods(&self, node: &str) -> Vec<&Pod> {
        let mut local: Vec<&Pod> = self
            .slots
            .iter()
            .flatten()
            .filter(|p| p.node.as_deref() == Some(node))
            .map(|p| &**p)
            .collect();
        local.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        local
    }

    /// Names of the namespaces in `scope` (seen from a policy in `own`).
    /// Namespaces known only through their pods count, with the label the API
    /// server would give them.
    pub fn namespaces<'i>(
        &'i self,
        snapshot: &'i Snapshot,
        own: &str,
        scope: &NamespaceScope,
    ) -> Vec<&'i str> {
        match scope {
            NamespaceScope::Own => self
                .by_namespace
                .get_key_value(own)
                .map(|(ns, _)| &**ns)
                .into_iter()
                .collect(),
            NamespaceScope::Matching(sel) => {
                let mut names: Vec<&str> = snapshot
                    .namespaces
                    .values()
                    .filter(|ns| sel.matches(&ns.labels))
                    .map(|ns| ns.name.as_str())
                    .collect();
                for ns in self.by_namespace.keys() {
                    if !snapshot.namespaces.contains_key(&**ns)
                        && sel.matches(&snapshot.namespace_labels(ns))
                    {
                        names.push(ns);
                    }
                }
                names.sort_unstable();
                names
            }
        }
    }

    /// Slots of the active pods in `namespaces` that `selector` matches, sorted.
    pub fn select(&self, namespaces: &[&str], selector: &Selector) -> Vec<usize> {
        // The shortest posting list of a matchLabels pair bounds the candidates.
        let posting = selector
            .match_labels
            .iter()
            .map(|(k, v)| {
                self.by_label
                    .get(k.as_str())
                    .and_then(|values| values.get(v.as_str()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|l| l.len());
        let in_scope = |i: &usize| namespaces.binary_search(&&*self.pod(*i).namespace).is_ok();
        let matches = |i: &usize| selector.matches(&self.pod(*i).labels);
        match posting {
            Some(list) if list.len() < self.active / 4 || namespaces.len() > 8 => list
                .iter()
                .copied()
                .filter(|i| in_scope(i) && matches(i))
                .collect(),
            _ => {
                let mut out: Vec<usize> = namespaces
                    .iter()
                    .filter_map(|ns| self.by_namespace.get(*ns))
                    .flatten()
                    .copied()
                    .filter(|i| matches(i))
                    .collect();
                out.sort_unstable();
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batch_edits_of_a_sorted_list_are_the_one_by_one_edits() {
        let lists: [&[usize]; 4] = [&[], &[3], &[1, 4, 9, 10], &[0, 2, 4, 6, 8, 100]];
        for list in lists {
            for batch in lists {
                let mut one_by_one = list.to_vec();
                batch
                    .iter()
                    .for_each(|&v| super::insert_sorted(&mut one_by_one, v));
                let mut at_once = list.to_vec();
                super::insert_all_sorted(&mut at_once, batch);
                assert_eq!(at_once, one_by_one, "insert {batch:?} into {list:?}");
                batch.iter().for_each(|&v| {
                    super::remove_sorted(&mut one_by_one, v);
                });
                super::remove_all_sorted(&mut at_once, batch);
                assert_eq!(at_once, one_by_one, "remove {batch:?} from {list:?}");
            }
        }
    }
}
