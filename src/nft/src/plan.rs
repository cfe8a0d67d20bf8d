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

/// The full replace that deletes the table: add table, delete table, add
/// the table, its chains, maps and sets with their elements, then every
/// rule. For a table that does not exist (or that cannot be kept: see
/// `full_replace_in_place`, which the netlink dataplane prefers).
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

/// What our table in the kernel holds, as read back before a full replace:
/// names in kernel order, and which objects already have the definition
/// the desired ruleset gives them. Rules and elements are not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Existing {
    /// The table exists with the comment and flags we give it.
    pub table_ours: bool,
    /// Chains: name, and whether a desired chain of that name has the same
    /// definition (hook, priority, policy, comment).
    pub chains: Vec<(String, bool)>,
    /// Sets and maps: name, and whether it is a desired map with the same
    /// definition.
    pub sets: Vec<(String, bool)>,
}

/// The full replace that keeps the table, its chains and its dispatch
/// maps, in ONE batch: every rule of the table is deleted, every kept map
/// flushed, every other set and map deleted; then the missing chains, the
/// maps' elements, every set (added again) and every rule. `None` when it
/// cannot be done in place: no table, a table we did not make, or a chain
/// the desired ruleset defines otherwise (hook, priority or comment); then
/// it is [`full_replace`].
///
/// Why not delete and add the table: a packet that is inside one of the old
/// base chains when the transaction commits keeps the old chain's rules
/// (the kernel reads the generation once per chain walk) but looks its
/// address up in the dispatch map with the new generation's elements. A
/// deleted map has none (the kernel takes its elements out of the next
/// generation), so the lookup misses, the packet falls off the end of the
/// base chain and is accepted: a denied flow passes. Kept base chains and
/// kept maps never have that moment: an old-generation walk finds the new
/// elements, whose `goto` leads to kept chains, whose old-generation rules
/// are the old ones. Peer sets are deleted and added again instead of
/// flushed: the old rules keep looking up the old set, whose elements stay
/// (only a map's are taken out).
///
/// Chains that exist and are not wanted are deleted in the same batch,
/// after the rules and map elements that point at them. Should a kernel
/// refuse that (or anything else of this batch), the caller falls back to
/// [`full_replace`].
pub(crate) fn full_replace_in_place(desired: &Ruleset, existing: &Existing) -> Option<Plan> {
    if !existing.table_ours {
        return None;
    }
    let new = ByName::of(desired);
    let mut kept_chains: HashSet<&str> = HashSet::default();
    let mut dead_chains = Vec::new();
    for (name, same) in &existing.chains {
        match (new.chains.contains_key(name.as_str()), same) {
            (true, true) => {
                kept_chains.insert(name);
            }
            (true, false) => return None,
            (false, _) => dead_chains.push(Op::DeleteChain { name: name.clone() }),
        }
    }
    let is_map = |name: &str| desired.maps.iter().any(|m| m.name == name);
    let mut kept_maps: HashSet<&str> = HashSet::default();
    let mut ops = vec![Op::FlushRules];
    for (name, same) in &existing.sets {
        if *same && is_map(name) && kept_maps.insert(name) {
            ops.push(Op::FlushSet { name: name.clone() });
        }
    }
    for (name, _) in &existing.sets {
        if !kept_maps.contains(name.as_str()) {
            ops.push(Op::DeleteSet { name: name.clone() });
        }
    }
    // Nothing points at them any more: no rule is left, and every map that
    // could `goto` them is flushed or deleted above.
    ops.extend(dead_chains);
    ops.extend(
        desired
            .chains
            .iter()
            .filter(|c| !kept_chains.contains(c.name.as_str()))
            .map(|c| Op::AddChain(ChainDef::of(c))),
    );
    for m in &desired.maps {
        if kept_maps.contains(m.name.as_str()) {
            if !m.elements.is_empty() {
                ops.push(Op::AddElements {
                    set: m.name.clone(),
                    elements: ops::map_elements(&m.elements),
                });
            }
        } else {
            ops.extend(ops::add_map(m));
        }
    }
    ops.extend(desired.sets.iter().flat_map(ops::add_set));
    ops.extend(desired.chains.iter().flat_map(ops::add_rules));
    Some(Plan {
        kind: ApplyKind::Full,
        transaction: Transaction { ops },
        deferred: Vec::new(),
        reason: None,
    })
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
        Op::FlushChain { .. } | Op::FlushRules => 2,
        Op::DeleteElements { .. } | Op::FlushSet { .. } => 3,
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
    // Only the chunks the two do not share have to be compared.
    let (old, new) = a.elements.differing(&d.elements);
    let (gone, came) = changed(&old, &new);
    let (za, zd) = (zero_end(a), zero_end(d));
    let dels = ops::set_elements(a, gone.into_iter().copied(), za && !zd);
    let adds = ops::set_elements(d, came.into_iter().copied(), zd && !za);
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

#[cfg(test)]
mod in_place_tests {
    use std::net::IpAddr;

    use super::{full_replace, full_replace_in_place, ApplyKind, Existing};
    use crate::table::KernelTable;
    use crate::transaction::{ChainDef, Op, SetDef};
    use nftpolicy_core::ruleset::{
        AddrField, AddrRange, AddrSet, BaseChain, Chain, Family, Hook, MapElement, Match, Rule,
        Ruleset, SetElement, Verdict, VerdictMap, TABLE_COMMENT,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn chain(name: &str, rules: Vec<Rule>) -> Chain {
        Chain {
            name: name.into(),
            base: None,
            comment: name.into(),
            rules,
        }
    }

    fn lookup(set: &str) -> Rule {
        let m = Match::AddrInSet {
            family: Family::V4,
            field: AddrField::Source,
            set: set.into(),
        };
        Rule::new(vec![m], Verdict::Accept)
    }

    /// A base chain dispatching through `ingress-pods-v4` to pod chains
    /// (`pod-<p>`, jumping to `pol-<p>`, which looks up `peers-<p>`).
    fn ruleset(pods: &[(&str, &str)], peers: &[(&str, &str)]) -> Ruleset {
        let base = Chain {
            base: Some(BaseChain {
                hook: Hook::Forward,
                priority: 0,
            }),
            ..chain(
                "forward-ingress",
                vec![Rule::new(
                    Vec::new(),
                    Verdict::Dispatch {
                        family: Family::V4,
                        field: AddrField::Destination,
                        map: "ingress-pods-v4".into(),
                    },
                )],
            )
        };
        let mut chains = vec![base];
        let mut map = VerdictMap {
            name: "ingress-pods-v4".into(),
            family: Family::V4,
            comment: "pods".into(),
            elements: Vec::new(),
        };
        for (pod, addr) in pods {
            map.elements.push(MapElement {
                addr: ip(addr),
                comment: (*pod).into(),
                chain: format!("pod-{pod}"),
            });
            chains.push(chain(
                &format!("pod-{pod}"),
                vec![
                    Rule::new(Vec::new(), Verdict::Jump(format!("pol-{pod}"))),
                    Rule::new(Vec::new(), Verdict::Drop),
                ],
            ));
        }
        map.elements.sort_by_key(|e| e.addr);
        for (pod, _) in pods {
            chains.push(chain(
                &format!("pol-{pod}"),
                vec![lookup(&format!("peers-{pod}"))],
            ));
        }
        let sets = pods
            .iter()
            .map(|(pod, _)| AddrSet {
                name: format!("peers-{pod}"),
                family: Family::V4,
                interval: pod.len() > 1,
                comment: "peers".into(),
                elements: peers
                    .iter()
                    .filter(|(p, _)| p == pod)
                    .map(|(_, a)| SetElement {
                        range: AddrRange {
                            first: ip(a),
                            last: ip(a),
                        },
                        comment: None,
                    })
                    .collect::<Vec<_>>()
                    .into(),
            })
            .collect();
        Ruleset {
            maps: vec![map],
            sets,
            chains,
        }
    }

    /// What a read-back of `kernel` tells the planner about `desired`.
    fn existing(kernel: &Ruleset, desired: &Ruleset) -> Existing {
        Existing {
            table_ours: true,
            chains: kernel
                .chains
                .iter()
                .map(|c| {
                    let same = desired
                        .chain(&c.name)
                        .is_some_and(|d| ChainDef::of(d) == ChainDef::of(c));
                    (c.name.clone(), same)
                })
                .collect(),
            sets: kernel
                .maps
                .iter()
                .map(|m| {
                    let same = desired
                        .maps
                        .iter()
                        .any(|d| SetDef::of_map(d) == SetDef::of_map(m));
                    (m.name.clone(), same)
                })
                .chain(kernel.sets.iter().map(|s| (s.name.clone(), false)))
                .collect(),
        }
    }

    fn kernel_of(rs: &Ruleset) -> KernelTable {
        let mut k = KernelTable::default();
        k.commit(full_replace(rs).transaction).unwrap();
        k
    }

    #[test]
    fn keeps_the_table_base_chains_and_maps() {
        let old = ruleset(
            &[("a", "10.0.0.1"), ("bb", "10.0.0.2")],
            &[("a", "10.1.0.1"), ("bb", "10.1.0.2")],
        );
        let new = ruleset(
            &[("a", "10.0.0.1"), ("c", "10.0.0.3")],
            &[("a", "10.1.0.9"), ("c", "10.1.0.3")],
        );
        let plan = full_replace_in_place(&new, &existing(&old, &new)).expect("in place");
        let ops = &plan.transaction.ops;
        // Nothing that unhooks a base chain or empties a map by deleting it.
        assert!(ops.iter().all(|op| !matches!(op, Op::DeleteTable)));
        assert!(!ops.contains(&Op::DeleteSet {
            name: "ingress-pods-v4".into()
        }));
        assert!(!ops
            .iter()
            .any(|op| matches!(op, Op::DeleteChain { name } if name.starts_with("forward"))));
        assert_eq!(ops[0], Op::FlushRules);
        assert_eq!(
            ops[1],
            Op::FlushSet {
                name: "ingress-pods-v4".into()
            }
        );
        assert!(plan.deferred.is_empty());

        // On the kernel as the old ruleset left it, rules and elements and
        // all: taken, and it holds the new ruleset.
        let mut k = kernel_of(&old);
        k.commit(plan.transaction.clone())
            .expect("the kernel takes it");
        let got = k.ruleset().unwrap();
        assert_eq!(got.maps, new.maps);
        assert_eq!(got.sets, new.sets);
        assert_eq!(got.chains.len(), new.chains.len());
        for c in &new.chains {
            assert_eq!(got.chain(&c.name), Some(c), "{}", c.name);
        }
        // The kept chains kept their places; the new ones come after.
        let names: Vec<&str> = got.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["forward-ingress", "pod-a", "pol-a", "pod-c", "pol-c"]
        );

        // The picture read back without rules and elements ends the same.
        let defs = |rs: &Ruleset| -> (Vec<ChainDef>, Vec<SetDef>) {
            (
                rs.chains.iter().map(ChainDef::of).collect(),
                rs.maps
                    .iter()
                    .map(SetDef::of_map)
                    .chain(rs.sets.iter().map(SetDef::of_set))
                    .collect(),
            )
        };
        let (chains, sets) = defs(&old);
        let mut read = KernelTable::read_back(Some(TABLE_COMMENT.into()), chains, sets);
        read.commit(plan.transaction).expect("the picture takes it");
        assert_eq!(read.ruleset(), k.ruleset());
        read.assert_counts();
        k.assert_counts();
        assert_eq!(super::plan(k.ruleset(), &new).kind, ApplyKind::NoChange);
    }

    #[test]
    fn a_table_or_chain_it_cannot_keep_is_replaced_whole() {
        let rs = ruleset(&[("a", "10.0.0.1")], &[("a", "10.1.0.1")]);
        let mut e = existing(&rs, &rs);
        assert!(full_replace_in_place(&rs, &e).is_some());
        e.table_ours = false;
        assert_eq!(full_replace_in_place(&rs, &e), None);
        let mut moved = rs.clone();
        moved.chains[0].base = Some(BaseChain {
            hook: Hook::Forward,
            priority: 5,
        });
        assert_eq!(full_replace_in_place(&moved, &existing(&rs, &moved)), None);
        // A map defined otherwise is deleted and added again.
        let mut renamed = rs.clone();
        renamed.maps[0].comment = "other".into();
        let plan = full_replace_in_place(&renamed, &existing(&rs, &renamed)).unwrap();
        assert!(plan.transaction.ops.contains(&Op::DeleteSet {
            name: "ingress-pods-v4".into()
        }));
        let mut k = kernel_of(&rs);
        k.commit(plan.transaction).unwrap();
        assert_eq!(k.ruleset().unwrap().maps, renamed.maps);
    }
}
