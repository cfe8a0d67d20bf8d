//! Labels and label selectors with the Kubernetes `LabelSelector` semantics.
//!
//! A selector is the AND of its `matchLabels` pairs and its
//! `matchExpressions` requirements; an empty selector matches everything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An object's labels: one value per key, sorted by key, so that
/// iteration is deterministic. A sorted vector, not a map: objects have a
/// handful of labels, and at 100,000 pods a `BTreeMap` each (one 11-slot
/// node for two labels) was 65 MiB of the cluster model.
///
/// The pairs are shared (`Arc`): a clone costs a reference count, and a
/// a pool lets the pods of one workload, which carry the same labels,
/// hold one copy between them ([`Pool`](super::Pool); `docs/performance.md`, "The agent binary at
/// 100,000 pods"). Changing a shared set copies it first.
///
/// `Debug` prints a map, as the `BTreeMap` did: set names hash the peer
/// keys' canonical text, which contains it (`resolve/key.rs`).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Arc<Vec<(String, String)>>);

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The iterator of [`Labels::iter`].
pub type LabelsIter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, String)>,
    fn(&'a (String, String)) -> (&'a String, &'a String),
>;

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; the value it had.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(
                &mut Arc::make_mut(&mut self.0)[i].1,
                value,
            )),
            Err(i) => {
                Arc::make_mut(&mut self.0).insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; the value it had.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.find(key).ok()?;
        Some(Arc::make_mut(&mut self.0).remove(i).1)
    }

    /// (key, value) pairs, sorted by key.
    pub fn iter(&self) -> LabelsIter<'_> {
        fn pair(p: &(String, String)) -> (&String, &String) {
            (&p.0, &p.1)
        }
        self.0
            .iter()
            .map(pair as fn(&(String, String)) -> (&String, &String))
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for Labels {
    /// The last value of a key repeated in `iter` wins, as in a map.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut v: Vec<(String, String)> = iter.into_iter().collect();
        // Stable: among equal keys the last one given stays last.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
        for (k, val) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = val,
                _ => out.push((k, val)),
            }
        }
        Labels(Arc::new(out))
    }
}

impl Extend<(String, String)> for Labels {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        Labels(Arc::new(map.into_iter().collect()))
    }
}

impl serde::Serialize for Labels {
    /// As a map, the way the API writes labels.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = String;
    /// The value of `key`; panics if it is not set, as a map does.
    fn index(&self, key: &str) -> &String {
        self.get(key).unwrap_or_else(|| panic!("no label {key:?}"))
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        Arc::unwrap_or_clone(self.0).into_iter()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = LabelsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl super::pool::Shared for Labels {
    fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    fn same_copy(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One `matchExpressions` operator with its values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// The label exists and its value is one of these (never empty: validated at the source).
    In(BTreeSet<String>),
    /// The label is absent, or its value is none of these.
    NotIn(BTreeSet<String>),
    /// The label exists, with any value.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// One `matchExpressions` entry: a key and an operator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// What must hold of that key.
    pub op: Operator,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            Operator::In(values) => value.is_some_and(|v| values.contains(v)),
            Operator::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// A `LabelSelector`: `matchLabels` AND every `matchExpressions` requirement.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    /// `matchLabels`: each key must have exactly this value.
    pub match_labels: Labels,
    /// `matchExpressions`: each must hold.
    pub match_expressions: Vec<Requirement>,
}

impl Selector {
    /// The empty selector `{}`, which matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector from `matchLabels` pairs only.
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            match_labels: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Adds one `matchExpressions` requirement.
    pub fn with(mut self, key: &str, op: Operator) -> Self {
        self.match_expressions.push(Requirement {
            key: key.to_owned(),
            op,
        });
        self
    }

    /// True for `{}`: matches every object.
    pub fn is_everything(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy every part of the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl std::fmt::Display for Selector {
    /// Prints the selector as `kubectl` would write it: `app=web,tier in (a,b),!x`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_everything() {
            return f.write_str("{}");
        }
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            let join = |vs: &BTreeSet<String>| vs.iter().cloned().collect::<Vec<_>>().join(",");
            parts.push(match &r.op {
                Operator::In(vs) => format!("{} in ({})", r.key, join(vs)),
                Operator::NotIn(vs) => format!("{} notin ({})", r.key, join(vs)),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            });
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Labels of `pairs` (for tests here and in `pool`).
    pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn set(vs: &[&str]) -> BTreeSet<String> {
        vs.iter().map(|v| (*v).to_owned()).collect()
    }

    /// Labels behave as the map they replace: sorted, one value per key,
    /// the last value given wins, the same order and equality.
    #[test]
    fn labels_behave_as_a_map() {
        let pairs = [("b", "1"), ("a", "2"), ("c", "3"), ("a", "4")];
        let l = labels(&pairs);
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let got: Vec<(&String, &String)> = l.iter().collect();
        let want: Vec<(&String, &String)> = map.iter().collect();
        assert_eq!(got, want);
        assert_eq!(l, Labels::from(map));
        let mut m = l.clone();
        assert_eq!(m.insert("a".into(), "5".into()), Some("4".into()));
        assert_eq!(m.insert("0".into(), "6".into()), None);
        assert_eq!(m.remove("c"), Some("3".into()));
        assert_eq!(m.remove("c"), None);
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["0", "a", "b"]);
        assert_eq!((m.get("a").map(String::as_str), m.len()), (Some("5"), 3));
        assert!(m.contains_key("0") && !m.contains_key("c"));
        m.extend([("b".to_owned(), "7".to_owned())]);
        assert_eq!(m["b"], "7");
        assert!(labels(&[]).is_empty());
    }

    #[test]
    fn selector_table() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let bare = labels(&[]);
        let cases: Vec<(&str, Selector, &Labels, bool)> = vec![
            (
                "empty selector matches labelled pod",
                Selector::everything(),
                &web,
                true,
            ),
            (
                "empty selector matches unlabelled pod",
                Selector::everything(),
                &bare,
                true,
            ),
            (
                "matchLabels equal",
                Selector::labels([("app", "web")]),
                &web,
                true,
            ),
            (
                "matchLabels other value",
                Selector::labels([("app", "db")]),
                &web,
                false,
            ),
            (
                "matchLabels missing key",
                Selector::labels([("app", "web")]),
                &bare,
                false,
            ),
            (
                "matchLabels all pairs must hold",
                Selector::labels([("app", "web"), ("tier", "back")]),
                &web,
                false,
            ),
            (
                "In hit",
                Selector::everything().with("tier", Operator::In(set(&["front", "x"]))),
                &web,
                true,
            ),
            (
                "In miss",
                Selector::everything().with("tier", Operator::In(set(&["back"]))),
                &web,
                false,
            ),
            (
                "In on absent key",
                Selector::everything().with("tier", Operator::In(set(&["front"]))),
                &bare,
                false,
            ),
            (
                "NotIn hit",
                Selector::everything().with("tier", Operator::NotIn(set(&["back"]))),
                &web,
                true,
            ),
            (
                "NotIn miss",
                Selector::everything().with("tier", Operator::NotIn(set(&["front"]))),
                &web,
                false,
            ),
            (
                "NotIn on absent key matches",
                Selector::everything().with("tier", Operator::NotIn(set(&["front"]))),
                &bare,
                true,
            ),
            (
                "Exists hit",
                Selector::everything().with("app", Operator::Exists),
                &web,
                true,
            ),
            (
                "Exists miss",
                Selector::everything().with("app", Operator::Exists),
                &bare,
                false,
            ),
            (
                "DoesNotExist hit",
                Selector::everything().with("app", Operator::DoesNotExist),
                &bare,
                true,
            ),
            (
                "DoesNotExist miss",
                Selector::everything().with("app", Operator::DoesNotExist),
                &web,
                false,
            ),
            (
                "labels AND expressions",
                Selector::labels([("app", "web")]).with("tier", Operator::DoesNotExist),
                &web,
                false,
            ),
        ];
        for (name, selector, labels, want) in cases {
            assert_eq!(selector.matches(labels), want, "case: {name}");
        }
    }

    #[test]
    fn display_reads_like_kubectl() {
        let s = Selector::labels([("app", "web")])
            .with("tier", Operator::In(set(&["b", "a"])))
            .with("x", Operator::DoesNotExist)
            .with("y", Operator::Exists);
        assert_eq!(s.to_string(), "app=web,tier in (a,b),!x,y");
        assert_eq!(Selector::everything().to_string(), "{}");
    }
}
