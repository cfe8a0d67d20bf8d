//! The ruleset the kernel holds after an incremental batch, in kernel
//! order (see `diff.rs`): built from the previous one by moving what did not
//! change, so a one-element change costs a walk over the lists, not a copy
//! of them. Also the list difference both use.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::hash::Hash;

use nftpolicy_core::ruleset::Ruleset;

/// The positions of a ruleset's sets and chains by name, built once per
/// plan for each side and shared by the plan and `next_model`.
#[derive(Debug, Default)]
pub(super) struct ByName<'r> {
    /// Set name to its index in `sets`.
    pub sets: HashMap<&'r str, usize>,
    /// Chain name to its index in `chains`.
    pub chains: HashMap<&'r str, usize>,
}

impl<'r> ByName<'r> {
    /// The index of `rs`.
    pub(super) fn of(rs: &'r Ruleset) -> Self {
        Self {
            sets: rs
                .sets
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.as_str(), i))
                .collect(),
            chains: rs
                .chains
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.as_str(), i))
                .collect(),
        }
    }
}

/// The ruleset after an incremental batch: kept objects where they were,
/// with the desired content where the batch `touched` it; emptied chains
/// kept until deleted; new and re-created objects at the end of their
/// lists, in desired order. `wanted` indexes `desired`.
pub(super) fn next_model(
    applied: Ruleset,
    desired: &Ruleset,
    wanted: &ByName<'_>,
    recreated: &HashSet<String>,
    touched: &HashSet<String>,
    deferred: &[String],
) -> Ruleset {
    let mut next = Ruleset::default();
    // Maps are the same objects in the same order (else: full replace).
    for (mut a, d) in applied.maps.into_iter().zip(&desired.maps) {
        if touched.contains(&a.name) {
            a.elements = merge(std::mem::take(&mut a.elements), &d.elements);
        }
        next.maps.push(a);
    }
    let mut kept = vec![false; desired.sets.len()];
    for mut a in applied.sets {
        let Some(&i) = wanted.sets.get(a.name.as_str()) else {
            continue;
        };
        if recreated.contains(&a.name) {
            continue;
        }
        kept[i] = true;
        if touched.contains(&a.name) {
            a.elements = merge(std::mem::take(&mut a.elements), &desired.sets[i].elements);
        }
        next.sets.push(a);
    }
    let fresh = desired.sets.iter().zip(&kept).filter(|(_, k)| !**k);
    next.sets.extend(fresh.map(|(s, _)| s.clone()));
    let mut kept = vec![false; desired.chains.len()];
    for mut a in applied.chains {
        if let Some(&i) = wanted.chains.get(a.name.as_str()) {
            kept[i] = true;
            if touched.contains(&a.name) {
                a.rules = desired.chains[i].rules.clone();
            }
            next.chains.push(a);
        } else if deferred.contains(&a.name) {
            a.rules.clear();
            next.chains.push(a);
        }
    }
    let fresh = desired.chains.iter().zip(&kept).filter(|(_, k)| !**k);
    next.chains.extend(fresh.map(|(c, _)| c.clone()));
    next
}

/// `new`, reusing the equal elements of `old` (both sorted, as the model
/// keeps them; otherwise a copy of `new`).
fn merge<T: Ord + Clone>(old: Vec<T>, new: &[T]) -> Vec<T> {
    if !old.is_sorted() || !new.is_sorted() {
        return new.to_vec();
    }
    let mut out = Vec::with_capacity(new.len());
    let mut old = old.into_iter().peekable();
    for d in new {
        while old.next_if(|o| o < d).is_some() {}
        out.push(old.next_if(|o| o == d).unwrap_or_else(|| d.clone()));
    }
    out
}

/// What is only in `old`, and what is only in `new` (an entry whose
/// comment or target changed is in both), each in list order.
pub(super) fn changed<'e, T: Ord + Hash>(old: &'e [T], new: &'e [T]) -> (Vec<&'e T>, Vec<&'e T>) {
    if !old.is_sorted() || !new.is_sorted() {
        let old_set: HashSet<&T> = old.iter().collect();
        let new_set: HashSet<&T> = new.iter().collect();
        return (
            old.iter().filter(|e| !new_set.contains(e)).collect(),
            new.iter().filter(|e| !old_set.contains(e)).collect(),
        );
    }
    let (mut gone, mut came) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        match old[i].cmp(&new[j]) {
            std::cmp::Ordering::Less => {
                gone.push(&old[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                came.push(&new[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    gone.extend(&old[i..]);
    came.extend(&new[j..]);
    (gone, came)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_and_merge_agree_sorted_or_not() {
        for (old, new) in [
            (vec![1, 3, 5, 7], vec![2, 3, 7, 9]),
            (vec![5, 1, 3], vec![3, 9, 1]),
            (vec![], vec![1]),
            (vec![1, 2], vec![]),
        ] {
            let (gone, came) = changed(&old, &new);
            let mut expect_gone: Vec<i32> =
                old.iter().copied().filter(|o| !new.contains(o)).collect();
            let mut expect_came: Vec<i32> =
                new.iter().copied().filter(|n| !old.contains(n)).collect();
            let (mut g, mut c): (Vec<i32>, Vec<i32>) = (
                gone.into_iter().copied().collect(),
                came.into_iter().copied().collect(),
            );
            for v in [&mut expect_gone, &mut expect_came, &mut g, &mut c] {
                v.sort();
            }
            assert_eq!((g, c), (expect_gone, expect_came));
            assert_eq!(merge(old.clone(), &new), new);
        }
    }
}
