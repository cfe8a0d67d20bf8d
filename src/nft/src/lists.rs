//! Lists by name and the difference of two element lists: the indexes the
//! planner (`plan.rs`) builds once per plan for each side.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::hash::Hash;

use nftpolicy_core::ruleset::Ruleset;

/// The positions of a ruleset's sets and chains by name, built once per
/// plan for each side.
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
        // Equality first: kept elements share their comments, which `==`
        // compares by address and `cmp` by content.
        if old[i] == new[j] {
            i += 1;
            j += 1;
            continue;
        }
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
    fn changed_agrees_sorted_or_not() {
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
        }
    }
}
