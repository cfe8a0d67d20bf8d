//! Model objects → the payloads of ops: the one place that says which
//! `Op`s and `Elements` a chain, set or map of the ruleset becomes. The
//! planner (`plan.rs`) decides which of them a batch needs; `image.rs` uses
//! the same mapping to know what a full replace puts in the kernel.

use nftpolicy_core::ruleset::{AddrSet, Chain, MapElement, SetElement, VerdictMap};

use super::transaction::{zero, ChainDef, Elements, Op, SetDef, SetKind};

impl ChainDef {
    /// The definition of `chain` (its rules left out).
    pub fn of(chain: &Chain) -> Self {
        Self {
            name: chain.name.clone(),
            base: chain.base,
            comment: chain.comment.clone(),
        }
    }
}

impl SetDef {
    /// The definition of a peer set.
    pub fn of_set(s: &AddrSet) -> Self {
        let kind = if s.interval {
            SetKind::Interval
        } else {
            SetKind::Plain
        };
        Self {
            name: s.name.clone(),
            family: s.family,
            kind,
            comment: s.comment.clone(),
        }
    }

    /// The definition of a dispatch map.
    pub fn of_map(m: &VerdictMap) -> Self {
        Self {
            name: m.name.clone(),
            family: m.family,
            kind: SetKind::Map,
            comment: m.comment.clone(),
        }
    }

    /// Whether sets `a` and `b` have equal definitions: `of_set(a) ==
    /// of_set(b)`, without the clones.
    pub(crate) fn same_as_set(a: &AddrSet, b: &AddrSet) -> bool {
        a.name == b.name
            && a.family == b.family
            && a.interval == b.interval
            && a.comment == b.comment
    }

    /// Whether maps `a` and `b` have equal definitions: `of_map(a) ==
    /// of_map(b)`, without the clones.
    pub(crate) fn same_as_map(a: &VerdictMap, b: &VerdictMap) -> bool {
        a.name == b.name && a.family == b.family && a.comment == b.comment
    }
}

/// Whether nft puts an end element at address zero in front of `set`'s
/// elements: an interval set whose first range does not start at zero.
pub(crate) fn zero_end(set: &AddrSet) -> bool {
    set.interval
        && set
            .elements
            .iter()
            .next()
            .is_some_and(|e| e.range.first != zero(set.family))
}

/// Some of `set`'s elements as the payload of an element op; `zero_end`:
/// with the zero end element (interval sets only).
pub(crate) fn set_elements<'a>(
    set: &AddrSet,
    elements: impl IntoIterator<Item = &'a SetElement>,
    zero_end: bool,
) -> Elements {
    let v = elements.into_iter().cloned().collect();
    if set.interval {
        Elements::Interval {
            family: set.family,
            zero_end,
            ranges: v,
        }
    } else {
        Elements::Plain(v)
    }
}

/// Some entries of a map as the payload of an element op.
pub(crate) fn map_elements<'a>(entries: impl IntoIterator<Item = &'a MapElement>) -> Elements {
    Elements::Map(entries.into_iter().cloned().collect())
}

/// The ops that fill `chain` (empty or new) with its rules, in order.
pub(crate) fn add_rules(chain: &Chain) -> impl Iterator<Item = Op> + '_ {
    chain.rules.iter().map(|r| Op::AddRule {
        chain: chain.name.clone(),
        rule: r.clone(),
    })
}

/// The ops that create `set` with all its elements.
pub(crate) fn add_set(set: &AddrSet) -> impl Iterator<Item = Op> {
    let elements = set_elements(set, set.elements.iter(), zero_end(set));
    add_set_def(SetDef::of_set(set), elements)
}

/// The ops that create `map` with all its elements.
pub(crate) fn add_map(map: &VerdictMap) -> impl Iterator<Item = Op> {
    add_set_def(SetDef::of_map(map), map_elements(&map.elements))
}

fn add_set_def(def: SetDef, elements: Elements) -> impl Iterator<Item = Op> {
    let fill = (!elements.is_empty()).then(|| Op::AddElements {
        set: def.name.clone(),
        elements,
    });
    std::iter::once(Op::AddSet(def)).chain(fill)
}
