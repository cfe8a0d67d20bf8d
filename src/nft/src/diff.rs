//! Plans a batch: the operations that take the kernel from the last applied
//! ruleset to the desired one (or a full replace), and the ruleset the
//! kernel will hold afterwards, in the kernel's order. Pure: no FFI, no I/O.
//!
//! # Kernel order
//!
//! The kernel lists sets and chains in the order they were added. After a
//! full replace that is the model's order. An incremental apply appends new
//! (and re-created) sets and chains at the end of their lists and keeps
//! every other object where it was, so `Plan::next` is the desired content
//! in the kernel's order: `render(next)` is what `nft list table` prints.
//! Dispatch maps are never added incrementally (`render` prints all maps
//! before all sets, so a map added after the sets could not be rendered in
//! kernel order): any change to the maps themselves is a full replace.
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

use super::encode::{self, EncodeError, KElem, SetKind, SetMeta};
use super::next::{self, ByName};
use super::ApplyKind;
use nftpolicy_core::ruleset::{AddrSet, Chain, Match, Ruleset, Verdict};

/// One step of a batch, in batch order.
#[derive(Debug)]
pub(super) enum Op<'a> {
    /// NEWTABLE; `bare`: name only (the add before the delete of a full replace).
    AddTable {
        /// Without comment.
        bare: bool,
    },
    /// DELTABLE.
    DelTable,
    /// NEWCHAIN, without rules.
    AddChain(&'a Chain),
    /// DELCHAIN.
    DelChain(String),
    /// DELRULE without handle: every rule of the chain.
    Flush(String),
    /// NEWRULE for each rule of the chain, appended.
    AddRules(&'a Chain),
    /// NEWSET.
    AddSet(SetMeta),
    /// DELSET.
    DelSet(String),
    /// NEWSETELEM.
    AddElems(SetMeta, Vec<KElem>),
    /// DELSETELEM.
    DelElems(SetMeta, Vec<KElem>),
}

/// A planned batch and its outcome.
#[derive(Debug)]
pub(super) struct Plan<'a> {
    /// Full, incremental, or nothing to send.
    pub kind: ApplyKind,
    /// The batch.
    pub ops: Vec<Op<'a>>,
    /// Chains emptied by this batch, to be deleted by the next apply.
    pub deferred: Vec<String>,
    /// Sets deleted and added again (they move to the end of the list).
    recreated: HashSet<String>,
    /// Kept sets, maps and chains whose content this batch changes: the
    /// only ones `next` has to rebuild (everything else is moved as is).
    touched: HashSet<String>,
    /// The desired ruleset's objects by name (incremental plans only).
    wanted: ByName<'a>,
    /// Why an apply that could have been incremental is a full replace.
    pub reason: Option<String>,
}

impl Plan<'_> {
    /// What the kernel holds once this plan's batch is committed, in kernel
    /// order, given what it held before (`applied`, consumed: unchanged
    /// objects are moved, not copied).
    pub(super) fn next(&self, applied: Option<Ruleset>, desired: &Ruleset) -> Ruleset {
        match (self.kind, applied) {
            (ApplyKind::Incremental, Some(a)) => next::next_model(
                a,
                desired,
                &self.wanted,
                &self.recreated,
                &self.touched,
                &self.deferred,
            ),
            (ApplyKind::NoChange, Some(a)) => a,
            _ => desired.clone(),
        }
    }
}

/// The plan of an apply: incremental from `applied` when the dataplane
/// knows what the kernel holds, else a full replace. A full replace carries
/// its reason: the one `forced` holds (taken), else the plan's own.
pub(super) fn plan_for<'a>(
    applied: Option<&Ruleset>,
    desired: &'a Ruleset,
    forced: &mut Option<String>,
) -> Result<Plan<'a>, EncodeError> {
    let mut plan = match applied {
        Some(applied) => plan(applied, desired)?,
        None => full(desired)?,
    };
    if plan.kind == ApplyKind::Full {
        plan.reason = forced.take().or(plan.reason.take());
    }
    Ok(plan)
}

/// The full replace: add table, delete table, add the table and everything.
pub(super) fn full(desired: &Ruleset) -> Result<Plan<'_>, EncodeError> {
    let mut ops = vec![
        Op::AddTable { bare: true },
        Op::DelTable,
        Op::AddTable { bare: false },
    ];
    ops.extend(desired.chains.iter().map(Op::AddChain));
    for map in &desired.maps {
        let meta = SetMeta::of_map(map);
        ops.push(Op::AddSet(meta.clone()));
        ops.push(Op::AddElems(meta, encode::map_elements(map)?));
    }
    for set in &desired.sets {
        let meta = SetMeta::of_set(set);
        ops.push(Op::AddSet(meta.clone()));
        ops.push(Op::AddElems(meta, encode::set_elements(set)?));
    }
    ops.extend(desired.chains.iter().map(Op::AddRules));
    ops.retain(|op| match op {
        Op::AddElems(_, e) => !e.is_empty(),
        Op::AddRules(c) => !c.rules.is_empty(),
        _ => true,
    });
    Ok(Plan {
        kind: ApplyKind::Full,
        ops,
        deferred: Vec::new(),
        recreated: HashSet::default(),
        touched: HashSet::default(),
        wanted: ByName::default(),
        reason: None,
    })
}

/// The incremental batch from `applied` (kernel order) to `desired`, or a
/// full replace when the change cannot be made in place.
pub(super) fn plan<'a>(applied: &Ruleset, desired: &'a Ruleset) -> Result<Plan<'a>, EncodeError> {
    let unchanged = Plan {
        kind: ApplyKind::NoChange,
        ops: Vec::new(),
        deferred: Vec::new(),
        recreated: HashSet::default(),
        touched: HashSet::default(),
        wanted: ByName::default(),
        reason: None,
    };
    let maps_same = applied.maps.len() == desired.maps.len()
        && applied
            .maps
            .iter()
            .zip(&desired.maps)
            .all(|(a, d)| SetMeta::of_map(a) == SetMeta::of_map(d));
    let old = ByName::of(applied);
    let changed_chain = desired.chains.iter().find(|d| {
        old.chains.get(d.name.as_str()).is_some_and(|&i| {
            applied.chains[i].base != d.base || applied.chains[i].comment != d.comment
        })
    });
    let reason = if !maps_same {
        Some("the dispatch maps changed".to_owned())
    } else {
        changed_chain.map(|c| format!("chain {} changed its hook or comment", c.name))
    };
    if reason.is_some() {
        let mut plan = full(desired)?;
        plan.reason = reason;
        return Ok(plan);
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
    set_ops(&sides, &recreated, &mut touched, &mut ops)?;
    // Rules last: they reference sets and chains added above.
    for c in &desired.chains {
        let fill = !sides.old.chains.contains_key(c.name.as_str()) || touched.contains(&c.name);
        if fill && !c.rules.is_empty() {
            ops.push(Op::AddRules(c));
        }
    }
    if ops.is_empty() {
        return Ok(unchanged);
    }
    ops.sort_by_key(op_rank);
    Ok(Plan {
        kind: ApplyKind::Incremental,
        ops,
        deferred,
        recreated,
        touched,
        wanted: sides.new,
        reason: None,
    })
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
/// name them, rules last).
fn op_rank(op: &Op<'_>) -> u8 {
    match op {
        Op::AddTable { .. } | Op::DelTable => 0,
        Op::DelChain(_) => 1,
        Op::Flush(_) => 2,
        Op::DelElems(..) => 3,
        Op::DelSet(_) => 4,
        Op::AddChain(_) => 5,
        Op::AddSet(_) | Op::AddElems(..) => 6,
        Op::AddRules(_) => 7,
    }
}

/// Sets whose definition changed: deleted and added again.
fn recreated_sets(sides: &Sides<'_, '_>) -> HashSet<String> {
    sides
        .applied
        .sets
        .iter()
        .filter(|a| {
            sides
                .new
                .sets
                .get(a.name.as_str())
                .is_some_and(|&i| SetMeta::of_set(a) != SetMeta::of_set(&sides.desired.sets[i]))
        })
        .map(|a| a.name.clone())
        .collect()
}

fn references_any(chain: &Chain, sets: &HashSet<String>) -> bool {
    !sets.is_empty()
        && chain.rules.iter().any(|r| {
            r.matches
                .iter()
                .any(|m| matches!(m, Match::AddrInSet { set, .. } if sets.contains(set)))
        })
}

/// Chains: delete dead ones, flush changed and unwanted ones, add new ones.
/// Returns the chains left empty for the next apply to delete.
fn chain_ops<'a>(
    sides: &Sides<'_, 'a>,
    recreated: &HashSet<String>,
    touched: &mut HashSet<String>,
    ops: &mut Vec<Op<'a>>,
) -> Vec<String> {
    let (applied, desired) = (sides.applied, sides.desired);
    let mut referenced: Option<HashSet<&str>> = None;
    let mut deferred = Vec::new();
    for a in &applied.chains {
        if let Some(&i) = sides.new.chains.get(a.name.as_str()) {
            let refill = a.rules != desired.chains[i].rules || references_any(a, recreated);
            if refill {
                touched.insert(a.name.clone());
                if !a.rules.is_empty() {
                    ops.push(Op::Flush(a.name.clone()));
                }
            }
            continue;
        }
        let referenced = referenced.get_or_insert_with(|| referenced_chains(applied));
        if a.rules.is_empty() && !referenced.contains(a.name.as_str()) {
            ops.push(Op::DelChain(a.name.clone()));
            continue;
        }
        if !a.rules.is_empty() {
            ops.push(Op::Flush(a.name.clone()));
        }
        deferred.push(a.name.clone());
    }
    ops.extend(
        desired
            .chains
            .iter()
            .filter(|d| !sides.old.chains.contains_key(d.name.as_str()))
            .map(Op::AddChain),
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
fn set_ops<'a>(
    sides: &Sides<'_, 'a>,
    recreated: &HashSet<String>,
    touched: &mut HashSet<String>,
    ops: &mut Vec<Op<'a>>,
) -> Result<(), EncodeError> {
    let (applied, desired) = (sides.applied, sides.desired);
    for (a, d) in applied.maps.iter().zip(&desired.maps) {
        if a.elements != d.elements {
            touched.insert(a.name.clone());
            let (gone, came) = next::changed(&a.elements, &d.elements);
            let dels = encode::map_entries(a, gone)?;
            let adds = encode::map_entries(d, came)?;
            push_elems(SetMeta::of_map(d), dels, adds, ops);
        }
    }
    for a in &applied.sets {
        match sides.new.sets.get(a.name.as_str()) {
            Some(&i) if !recreated.contains(&a.name) => {
                let d = &desired.sets[i];
                if a.elements != d.elements {
                    touched.insert(a.name.clone());
                    element_diff(a, d, ops)?;
                }
            }
            _ => ops.push(Op::DelSet(a.name.clone())),
        }
    }
    for d in &desired.sets {
        if !sides.old.sets.contains_key(d.name.as_str()) || recreated.contains(&d.name) {
            let meta = SetMeta::of_set(d);
            ops.push(Op::AddSet(meta.clone()));
            let elems = encode::set_elements(d)?;
            if !elems.is_empty() {
                ops.push(Op::AddElems(meta, elems));
            }
        }
    }
    Ok(())
}

/// The element changes of a kept set: the kernel elements of the ranges
/// that went and came, and the zero end element when the first range
/// starts at zero in one and not in the other.
fn element_diff(a: &AddrSet, d: &AddrSet, ops: &mut Vec<Op<'_>>) -> Result<(), EncodeError> {
    let (gone, came) = next::changed(&a.elements, &d.elements);
    let mut dels = encode::range_elements(a, gone)?;
    let mut adds = encode::range_elements(d, came)?;
    match (encode::zero_end(a), encode::zero_end(d)) {
        (Some(z), None) => dels.push(z),
        (None, Some(z)) => adds.insert(0, z),
        _ => {}
    }
    push_elems(SetMeta::of_set(d), dels, adds, ops);
    Ok(())
}

/// Deletions before additions: an element deleted and added again (its
/// comment changed) must go first.
fn push_elems(meta: SetMeta, dels: Vec<KElem>, adds: Vec<KElem>, ops: &mut Vec<Op<'_>>) {
    if !dels.is_empty() {
        ops.push(Op::DelElems(meta.clone(), dels));
    }
    if !adds.is_empty() {
        ops.push(Op::AddElems(meta, adds));
    }
}

/// Whether `meta` is a map (for messages and labels).
pub(super) fn is_map(meta: &SetMeta) -> bool {
    meta.kind == SetKind::Map
}
