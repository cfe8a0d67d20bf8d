//! Labels and label selectors with the Kubernetes `LabelSelector` semantics.
//!
//! A selector is the AND of its `matchLabels` pairs and its
//! `matchExpressions` requirements; an empty selector matches everything.

use std::collections::{BTreeMap, BTreeSet};

/// An object's labels, ordered so that iteration is deterministic.
pub type Labels = BTreeMap<String, String>;

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
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn set(vs: &[&str]) -> BTreeSet<String> {
        vs.iter().map(|v| (*v).to_owned()).collect()
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
