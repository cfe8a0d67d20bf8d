//! An index of the snapshot's active pods by namespace and by label, and of
//! namespaces by label, so that selectors are answered without scanning
//! every pod.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::Origin;

use crate::model::{NamespaceScope, Pod, Selector, Snapshot};

/// Active pods (not hostNetwork, with an IP, not finished), indexed.
pub struct Index<'a> {
    snapshot: &'a Snapshot,
    /// Active pods sorted by `ns/name`; everything else refers to them by position.
    pub pods: Vec<&'a Pod>,
    by_namespace: BTreeMap<&'a str, Vec<usize>>,
    by_label: HashMap<(&'a str, &'a str), Vec<usize>>,
    /// Each pod as the origin of set entries, aligned with `pods`; made on
    /// first use (most pods are nobody's peer).
    origins: Vec<OnceCell<Origin>>,
}

impl<'a> Index<'a> {
    /// Indexes the active pods of `snapshot`.
    pub fn new(snapshot: &'a Snapshot) -> Self {
        let pods: Vec<&Pod> = snapshot
            .pods
            .values()
            .filter(|p| p.ignored().is_none())
            .map(|p| &**p)
            .collect();
        let mut by_namespace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut by_label: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, p) in pods.iter().enumerate() {
            by_namespace
                .entry(p.namespace.as_str())
                .or_default()
                .push(i);
            for (k, v) in &p.labels {
                by_label
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(i);
            }
        }
        Self {
            snapshot,
            origins: vec![OnceCell::new(); pods.len()],
            pods,
            by_namespace,
            by_label,
        }
    }

    /// The pod at position `i` as the origin of set entries (shared by all
    /// of its entries in every set).
    pub fn pod_origin(&self, i: usize) -> Origin {
        self.origins[i]
            .get_or_init(|| Origin::Pod(Rc::new(self.pods[i].key())))
            .clone()
    }

    /// Active pods whose `spec.nodeName` is `node`, sorted.
    pub fn local_pods(&self, node: &str) -> Vec<&'a Pod> {
        self.pods
            .iter()
            .copied()
            .filter(|p| p.node.as_deref() == Some(node))
            .collect()
    }

    /// Names of the namespaces in `scope` (seen from a policy in `own`).
    /// Namespaces known only through their pods count, with the label the API
    /// server would give them.
    pub fn namespaces(&self, own: &str, scope: &NamespaceScope) -> Vec<&'a str> {
        match scope {
            NamespaceScope::Own => self
                .by_namespace
                .get_key_value(own)
                .map(|(ns, _)| *ns)
                .into_iter()
                .collect(),
            NamespaceScope::Matching(sel) => {
                let mut names: Vec<&str> = self
                    .snapshot
                    .namespaces
                    .values()
                    .filter(|ns| sel.matches(&ns.labels))
                    .map(|ns| ns.name.as_str())
                    .collect();
                for ns in self.by_namespace.keys() {
                    if !self.snapshot.namespaces.contains_key(*ns)
                        && sel.matches(&self.snapshot.namespace_labels(ns))
                    {
                        names.push(ns);
                    }
                }
                names.sort_unstable();
                names
            }
        }
    }

    /// Positions of the active pods in `namespaces` that `selector` matches, sorted.
    pub fn select(&self, namespaces: &[&str], selector: &Selector) -> Vec<usize> {
        // The shortest posting list of a matchLabels pair bounds the candidates.
        let posting = selector
            .match_labels
            .iter()
            .map(|(k, v)| {
                self.by_label
                    .get(&(k.as_str(), v.as_str()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|l| l.len());
        let in_scope = |i: &usize| {
            namespaces
                .binary_search(&self.pods[*i].namespace.as_str())
                .is_ok()
        };
        let matches = |i: &usize| selector.matches(&self.pods[*i].labels);
        match posting {
            Some(list) if list.len() < self.pods.len() / 4 || namespaces.len() > 8 => list
                .iter()
                .copied()
                .filter(|i| in_scope(i) && matches(i))
                .collect(),
            _ => {
                let mut out: Vec<usize> = namespaces
                    .iter()
                    .filter_map(|ns| self.by_namespace.get(ns))
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
