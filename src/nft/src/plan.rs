//! Plans a batch: the transaction that takes the kernel from the last
//! applied ruleset (in kernel order) to the desired one, or a full replace.
//! Pure: no FFI, no I/O, cannot fail (what the kernel cannot take is found
//! by the encoder). Which ops a model object becomes is `ops.rs`'s business.
//!
//! # Kernel order
//!
//! The kernel lists sets and chains in the order they were added. After a
//! full replace that is the model's order. An incremental batch appends new
//! (and re-created) sets and chains at the end of their lists and keeps
//! every other object where it was (`table.rs` follows the same rule, so
//! the dataplane's `current()` lists as the kernel does). Dispatch maps are
//! never added incrementally (`render` prints all maps before all sets, so
//! a map added after the sets could not be rendered in kernel order): any
//! change to the maps themselves is a full replace.
//!
//! # Removing chains
//!
//! A chain that just lost its last reference (a map element's `goto`, a
//! `jump` rule) may not be deletable in the same batch on older kernels.
//! So a chain that is no longer wanted is first emptied and unreferenced,
//! and deleted by the next apply, once the applied ruleset shows it has no
//! rules and nothing points at it. Until then it stays in the applied
//! ruleset (and in `nft list`), empty; `ApplyReport::deferred` counts it.

use rustc_hash::FxHashSet as HashSet;

use super::lists::{changed, ByName};
use super::ops::{self, zero_end};
use super::transaction::{ChainDef, Op, SetDef, Transaction};
use super::ApplyKind;
use nftpolicy_core::ruleset::{AddrSet, Chain, Ruleset, Verdict, TABLE_COMMENT};

/// A planned batch and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Full replace, incremental, or nothing to send.
    pub kind: ApplyKind,
    /// The batch (empty for `NoChange`).
    pub transaction: Transaction,
    /// Chains this batch empties and unhooks, for the next apply to delete.
    pub deferred: Vec<String>,
    /// Why a full replace was planned when `applied` was known.
    pub reason: Option<String>,
}

/// The plan from `applied` (what the kernel holds, in kernel order; `None`
/// when unknown) to `desired`: incremental when the change can be made in
/// place, else a full replace.
pub fn plan(applied: Option<&Ruleset>, desired: &Ruleset) -> Plan {
    match applied {
        Some(applied) => incremental(applied, desired),
        None => full_replace(desired),
    }
}

/// The plan of an apply with a pending full-replace reason: a full replace
/// carries the reason `forced` holds (taken), else the plan's own.
pub(crate) fn plan_forced(
    applied: Option<&Ruleset>,
    desired: &Ruleset,
    forced: &mut Option<String>,
) -> Plan {
    let mut plan = plan(applied, desired);
    if plan.kind == ApplyKind::Full {
        plan.reason = forced.take().or(plan.reason.take());
    }
    plan
}

/// The full replace: add table, delete table, add the table, its chains,
/// maps and sets with their elements, then every rule.
pub fn full_replace(desired: &Ruleset) -> Plan {
    let mut ops = vec![
        Op::AddTable { comment: None },
        Op::DeleteTable,
        Op::AddTable {
            comment: Some(TABLE_COMMENT.to_owned()),
        },
    ];
    ops.extend(desired.chains.iter().map(|c| Op::AddChain(ChainDef::of(c))));
    ops.extend(desired.maps.iter().flat_map(ops::add_map));
    ops.extend(desired.sets.iter().flat_map(ops::add_set));
    ops.extend(desired.chains.iter().flat_map(ops::add_rules));
    Plan {
        kind: ApplyKind::Full,
        transaction: Transaction { ops },
        deferred: Vec::new(),
        reason: None,
    }
}

/// Why `desired` cannot be reached from `applied` in place, if it cannot.
fn full_replace_reason(applied: &Ruleset, desired: &Ruleset, old: &ByName<'_>) -> Option<String> {
    let maps_same = applied.maps.len() == desired.maps.len()
        && applied
            .maps
            .iter()
            .zip(&desired.maps)
            .all(|(a, d)| SetDef::same_as_map(a, d));
    if !maps_same {
        return Some("the dispatch maps changed".to_owned());
    }
    desired
        .chains
        .iter()
        .find(|d| {
            old.chains.get(d.name.as_str()).is_some_and(|&i| {
                applied.chains[i].base != d.base || applied.chains[i].comment != d.comment
            })
        })
        .map(|c| format!("chain {} changed its hook or comment", c.name))
}

/// The incremental batch from `applied` (kernel order) to `desired`, or a
/// full replace when the change cannot be made in place.
fn incremental(applied: &Ruleset, desired: &Ruleset) -> Plan {
    let old = ByName::of(applied);
    if let Some(reason) = full_replace_reason(applied, desired, &old) {
        let mut plan = full_replace(desired);
        plan.reason = Some(reason);
        return plan;
    }
    let sides = Sides {
        applied,
        desired,
        old,
        new: ByName::of(desired),
    };
    let recreated = recreated_sets(&sides);
    let mut ops = Vec::new();
    let mut touched = HashSet::default();
    let deferred = chain_ops(&sides, &recreated, &mut touched, &mut ops);
    set_ops(&sides, &recreated, &mut ops);
    // Rules last: they reference sets and chains added above.
    for c in &desired.chains {
        if !sides.old.chains.contains_key(c.name.as_str()) || touched.contains(c.name.as_str()) {
            ops.extend(ops::add_rules(c));
        }
    }
    ops.sort_by_key(rank);
    let kind = if ops.is_empty() {
        ApplyKind::NoChange
    } else {
        ApplyKind::Incremental
    };
    Plan {
        kind,
        transaction: Transaction { ops },
        deferred,
        reason: None,
    }
}

/// Both rulesets of a plan and their objects by name.
struct Sides<'o, 'a> {
    applied: &'o Ruleset,
    desired: &'a Ruleset,
    old: ByName<'o>,
    new: ByName<'a>,
}

/// Batch order: deletions of dead objects, flushes, element and set
/// deletions, then additions (chains before the sets and elements that
/// name them, rules last). The sort is stable: ops of one rank keep the
/// order they were planned in.
fn rank(op: &Op) -> u8 {
    match op {
        Op::AddTable { .. } | Op::DeleteTable => 0,
        Op::DeleteChain { .. } => 1,
        Op::FlushChain { .. } => 2,
        Op::DeleteElements { .. } => 3,
        Op::DeleteSet { .. } => 4,
        Op::AddChain(_) => 5,
        Op::AddSet(_) | Op::AddElements { .. } => 6,
        Op::AddRule { .. } => 7,
    }
}

/// Sets whose definition changed: deleted and added again.
fn recreated_sets<'o>(sides: &Sides<'o, '_>) -> HashSet<&'o str> {
    sides
        .applied
        .sets
        .iter()
        .filter(|a| {
            sides
                .new
                .sets
                .get(a.name.as_str())
                .is_some_and(|&i| !SetDef::same_as_set(a, &sides.desired.sets[i]))
        })
        .map(|a| a.name.as_str())
        .collect()
}

fn references_any(chain: &Chain, sets: &HashSet<&str>) -> bool {
    !sets.is_empty()
        && chain.rules.iter().any(|r| {
            r.matches
                .iter()
                .any(|m| m.set().is_some_and(|set| sets.contains(set)))
        })
}

/// Chains: delete dead ones, flush changed and unwanted ones, add new ones.
/// Records the kept chains to refill in `touched`; returns the chains left
/// empty for the next apply to delete.
fn chain_ops<'o>(
    sides: &Sides<'o, '_>,
    recreated: &HashSet<&str>,
    touched: &mut HashSet<&'o str>,
    ops: &mut Vec<Op>,
) -> Vec<String> {
    let (applied, desired) = (sides.applied, sides.desired);
    let mut referenced: Option<HashSet<&str>> = None;
    let mut deferred = Vec::new();
    for a in &applied.chains {
        let name = a.name.as_str();
        if let Some(&i) = sides.new.chains.get(name) {
            if a.rules != desired.chains[i].rules || references_any(a, recreated) {
                touched.insert(name);
                if !a.rules.is_empty() {
                    ops.push(Op::FlushChain {
                        name: a.name.clone(),
                    });
                }
            }
            continue;
        }
        let referenced = referenced.get_or_insert_with(|| referenced_chains(applied));
        if a.rules.is_empty() && !referenced.contains(name) {
            ops.push(Op::DeleteChain {
                name: a.name.clone(),
            });
            continue;
        }
        if !a.rules.is_empty() {
            ops.push(Op::FlushChain {
                name: a.name.clone(),
            });
        }
        deferred.push(a.name.clone());
    }
    ops.extend(
        desired
            .chains
            .iter()
            .filter(|d| !sides.old.chains.contains_key(d.name.as_str()))
            .map(|d| Op::AddChain(ChainDef::of(d))),
    );
    deferred
}

/// Chains something in `rs` points at: map elements and jump rules.
fn referenced_chains(rs: &Ruleset) -> HashSet<&str> {
    let maps = rs
        .maps
        .iter()
        .flat_map(|m| m.elements.iter().map(|e| e.chain.as_str()));
    let jumps = rs.chains.iter().flat_map(|c| {
        c.rules.iter().filter_map(|r| match &r.verdict {
            Verdict::Jump(t) => Some(t.as_str()),
            _ => None,
        })
    });
    maps.chain(jumps).collect()
}

/// Sets and maps: element diffs, deleted, added and re-created sets.
fn set_ops(sides: &Sides<'_, '_>, recreated: &HashSet<&str>, ops: &mut Vec<Op>) {
    let (applied, desired) = (sides.applied, sides.desired);
    for (a, d) in applied.maps.iter().zip(&desired.maps) {
        if a.elements != d.elements {
            let (gone, came) = changed(&a.elements, &d.elements);
            let dels = ops::map_elements(gone);
            let adds = ops::map_elements(came);
            push_elements(&d.name, dels, adds, ops);
        }
    }
    for a in &applied.sets {
        match sides.new.sets.get(a.name.as_str()) {
            Some(&i) if !recreated.contains(a.name.as_str()) => {
                let d = &desired.sets[i];
                if a.elements != d.elements {
                    element_diff(a, d, ops);
                }
            }
            _ => ops.push(Op::DeleteSet {
                name: a.name.clone(),
            }),
        }
    }
    for d in &desired.sets {
        if !sides.old.sets.contains_key(d.name.as_str()) || recreated.contains(d.name.as_str()) {
            ops.extend(ops::add_set(d));
        }
    }
}

/// The element changes of a kept set: the elements that went and came,
/// and the zero end element when the first range starts at zero in one
/// and not in the other.
fn element_diff(a: &AddrSet, d: &AddrSet, ops: &mut Vec<Op>) {
    let (gone, came) = changed(&a.elements, &d.elements);
    let (za, zd) = (zero_end(a), zero_end(d));
    let dels = ops::set_elements(a, gone, za && !zd);
    let adds = ops::set_elements(d, came, zd && !za);
    push_elements(&d.name, dels, adds, ops);
}

/// Deletions before additions: an element deleted and added again (its
/// comment changed) must go first.
fn push_elements(
    set: &str,
    dels: super::transaction::Elements,
    adds: super::transaction::Elements,
    ops: &mut Vec<Op>,
) {
    if !dels.is_empty() {
        ops.push(Op::DeleteElements {
            set: set.to_owned(),
            elements: dels,
        });
    }
    if !adds.is_empty() {
        ops.push(Op::AddElements {
            set: set.to_owned(),
            elements: adds,
        });
    }
}
