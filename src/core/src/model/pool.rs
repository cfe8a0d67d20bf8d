//! [`Pool`]: equal values held once. Many pods have their namespace, node
//! and label set in common (the pods of a workload carry the same labels);
//! a pool swaps each new value for the copy it already holds, so 100,000
//! pods hold a few thousand label sets and names, not 100,000 of each.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

use super::Labels;

/// A value whose copies can share one allocation.
pub trait Shared: Clone + Eq + Hash {
    /// How many holders this copy has (the pool is one).
    fn holders(&self) -> usize;
    /// Whether `self` and `other` are one shared copy, not merely equal.
    fn same_copy(&self, other: &Self) -> bool;
}

impl Shared for Arc<str> {
    fn holders(&self) -> usize {
        Arc::strong_count(self)
    }

    fn same_copy(&self, other: &Self) -> bool {
        Arc::ptr_eq(self, other)
    }
}

/// Equal values held once: [`Pool::share`] swaps a value for the pool's
/// equal copy. Copies that only the pool still holds are dropped whenever
/// it has doubled since the last sweep, so it holds at most about twice
/// the values in use (and never fewer than `2 × MIN_SWEEP` before a sweep).
#[derive(Debug)]
pub struct Pool<T> {
    held: HashSet<T>,
    /// Size after the last sweep.
    swept: usize,
}

/// Below this many values the pool does not sweep.
const MIN_SWEEP: usize = 512;

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Self {
            held: HashSet::new(),
            swept: 0,
        }
    }
}

impl<T: Shared> Pool<T> {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `value` the pool's copy of an equal value (adding it if new).
    pub fn share(&mut self, value: &mut T) {
        if let Some(held) = self.held.get(value) {
            if !held.same_copy(value) {
                *value = held.clone();
            }
            return;
        }
        self.held.insert(value.clone());
        if self.held.len() > 2 * self.swept.max(MIN_SWEEP) {
            self.held.retain(|v| v.holders() > 1);
            self.swept = self.held.len();
        }
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether the pool holds none.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// The pools of the parts that pods share: namespace and node names, and
/// label sets.
#[derive(Debug, Default)]
pub struct Pools {
    /// Namespace and node names.
    pub names: Pool<Arc<str>>,
    /// Label sets.
    pub labels: Pool<Labels>,
}

impl Pools {
    /// Empty pools.
    pub fn new() -> Self {
        Self::default()
    }

    /// Shares `pod`'s namespace, node and labels with the pods pooled before.
    pub fn share_pod(&mut self, pod: &mut super::Pod) {
        self.names.share(&mut pod.namespace);
        if let Some(node) = &mut pod.node {
            self.names.share(node);
        }
        self.labels.share(&mut pod.labels);
    }

    /// Shares `ns`'s labels.
    pub fn share_namespace(&mut self, ns: &mut super::Namespace) {
        self.labels.share(&mut ns.labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::tests::labels;

    /// The pool hands out one copy per distinct set, and a change to a
    /// shared copy leaves the other holders' labels as they were.
    #[test]
    fn equal_sets_share_one_copy_and_a_change_copies() {
        let mut pool = Pool::new();
        let mut a = labels(&[("app", "web"), ("tier", "front")]);
        let mut b = labels(&[("tier", "front"), ("app", "web")]);
        let mut c = labels(&[("app", "db")]);
        pool.share(&mut a);
        pool.share(&mut b);
        pool.share(&mut c);
        assert!(a.same_copy(&b));
        assert!(!a.same_copy(&c));
        assert_eq!(pool.len(), 2);
        b.insert("tier".into(), "back".into());
        assert_eq!(a["tier"], "front");
        assert_eq!(b["tier"], "back");
        assert!(!a.same_copy(&b));
    }

    /// Values nobody else holds leave the pool when it sweeps; values in
    /// use stay and are still handed out.
    #[test]
    fn sweeps_drop_what_no_one_holds() {
        let mut pool: Pool<Arc<str>> = Pool::new();
        let mut kept: Arc<str> = "kept".into();
        pool.share(&mut kept);
        for i in 0..5_000 {
            let mut name: Arc<str> = format!("pod-{i}").into();
            pool.share(&mut name);
        }
        assert!(pool.len() <= 2 * MIN_SWEEP + 1, "pool holds {}", pool.len());
        let mut again: Arc<str> = "kept".into();
        pool.share(&mut again);
        assert!(kept.same_copy(&again));
    }

    /// A pod's namespace, node and labels come out as the pooled copies.
    #[test]
    fn pods_share_namespace_node_and_labels() {
        let pod = |name: &str| super::super::Pod {
            namespace: "shop".into(),
            name: name.into(),
            labels: labels(&[("app", "web")]),
            node: Some("n1".into()),
            ips: Vec::new(),
            host_network: false,
            phase: super::super::PodPhase::Active,
            ports: Vec::new(),
        };
        let mut pools = Pools::new();
        let (mut a, mut b) = (pod("a"), pod("b"));
        pools.share_pod(&mut a);
        pools.share_pod(&mut b);
        assert!(a.namespace.same_copy(&b.namespace));
        assert!(a.node.as_ref().unwrap().same_copy(b.node.as_ref().unwrap()));
        assert!(a.labels.same_copy(&b.labels));
        assert!(!a.name.same_copy(&b.name));
    }
}
