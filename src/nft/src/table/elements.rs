//! Set and map elements in the kernel table: checks and changes. Elements
//! are kept sorted by their first address (as `nft list` prints them and as
//! the model keeps them), and looked up by binary search.
//!
//! An element is its key: for a set, the address or range (two ranges
//! that share an address are one too many: `EEXIST`); for a map, the
//! address. A delete names the key exactly (a range, its start and end
//! elements) or fails with `ENOENT`. nft's zero end element of an interval
//! set is a flag of its own.

use std::net::IpAddr;

use libc::{EEXIST, EINVAL, ENOENT};

use super::check::{refuse, refuse_object};
use super::undo::{Log, Removed, Undo};
use super::{Rejected, Slot, State};
use crate::ops;
use crate::transaction::{Elements, Op};
use nftpolicy_core::ruleset::{
    AddrSet, Elements as SetElements, Family, MapElement, SetElement, VerdictMap,
};

/// An element with an address range as its key.
pub(super) trait Keyed {
    fn first(&self) -> IpAddr;
    fn last(&self) -> IpAddr;
}

impl Keyed for SetElement {
    fn first(&self) -> IpAddr {
        self.range.first
    }
    fn last(&self) -> IpAddr {
        self.range.last
    }
}

impl Keyed for MapElement {
    fn first(&self) -> IpAddr {
        self.addr
    }
    fn last(&self) -> IpAddr {
        self.addr
    }
}

/// Sorted elements held: a map's list, or a set's chunks.
pub(super) trait Held<T> {
    /// How many come before the first one for which `before` is false.
    fn partition_point(&self, before: impl Fn(&T) -> bool) -> usize;
    /// The element at `index`.
    fn get(&self, index: usize) -> Option<&T>;
}

impl<T> Held<T> for [T] {
    fn partition_point(&self, before: impl Fn(&T) -> bool) -> usize {
        <[T]>::partition_point(self, before)
    }
    fn get(&self, index: usize) -> Option<&T> {
        <[T]>::get(self, index)
    }
}

impl Held<SetElement> for SetElements {
    fn partition_point(&self, before: impl Fn(&SetElement) -> bool) -> usize {
        SetElements::partition_point(self, before)
    }
    fn get(&self, index: usize) -> Option<&SetElement> {
        SetElements::get(self, index)
    }
}

/// The op of one element, for error messages.
fn one(op: &Op, set: &str, elements: Elements) -> String {
    let set = set.to_owned();
    match op {
        Op::AddElements { .. } => Op::AddElements { set, elements },
        _ => Op::DeleteElements { set, elements },
    }
    .to_string()
}

/// For an add: the first new element that is held, or overlaps one held or
/// another new one. For a delete: the first that is not held exactly, or
/// is named twice.
fn conflict<T: Keyed, H: Held<T> + ?Sized>(held: &H, new: &[T], add: bool) -> Option<usize> {
    let mut order: Vec<usize> = (0..new.len()).collect();
    order.sort_by_key(|&i| new[i].first());
    for w in order.windows(2) {
        let (a, b) = (&new[w[0]], &new[w[1]]);
        if (add && a.last() >= b.first()) || (!add && a.first() == b.first()) {
            return Some(w[1]);
        }
    }
    new.iter().position(|e| {
        let pos = held.partition_point(|h| h.first() < e.first());
        if add {
            let next = held.get(pos).is_some_and(|h| h.first() <= e.last());
            let prev = pos > 0 && held.get(pos - 1).is_some_and(|h| h.last() >= e.first());
            next || prev
        } else {
            held.get(pos)
                .is_none_or(|h| h.first() != e.first() || h.last() != e.last())
        }
    })
}

/// Adds `new` to the sorted `held`.
fn insert_sorted<T: Keyed>(held: &mut Vec<T>, mut new: Vec<T>) {
    new.sort_by_key(|e| e.first());
    if held.is_empty() {
        *held = new;
    } else if new.len() <= 16 {
        for e in new {
            let pos = held.partition_point(|h| h.first() < e.first());
            held.insert(pos, e);
        }
    } else {
        let old = std::mem::take(held);
        held.reserve(old.len() + new.len());
        let mut new = new.into_iter().peekable();
        for o in old {
            while let Some(n) = new.next_if(|n| n.first() < o.first()) {
                held.push(n);
            }
            held.push(o);
        }
        held.extend(new);
    }
}

/// Takes the elements whose first address is in `keys` out of `held`.
pub(super) fn remove_keys<T: Keyed>(held: &mut Vec<T>, mut keys: Vec<IpAddr>) -> Vec<T> {
    keys.sort();
    if keys.len() <= 16 {
        keys.iter()
            .rev()
            .filter_map(|k| {
                let pos = held.binary_search_by(|h| h.first().cmp(k)).ok()?;
                Some(held.remove(pos))
            })
            .collect()
    } else {
        held.extract_if(.., |h| keys.binary_search(&h.first()).is_ok())
            .collect()
    }
}

/// Puts removed elements back (rollback).
pub(super) fn put_back<T: Keyed>(held: &mut Vec<T>, removed: Vec<T>) {
    insert_sorted(held, removed);
}

/// Whether the addresses of `v` are of `family` (and, for a set without
/// `flags interval`, single): the first one that is not.
fn misfit(v: &[SetElement], family: Family, interval: bool) -> Option<usize> {
    v.iter().position(|e| {
        let r = &e.range;
        r.family() != family
            || Family::of(&r.last) != family
            || r.last < r.first
            || (!interval && r.is_range())
    })
}

impl State {
    /// Whether the kernel takes an element op now.
    pub(super) fn check_elements(&self, op: &Op) -> Result<(), Rejected> {
        let (Op::AddElements { set, elements } | Op::DeleteElements { set, elements }) = op else {
            return Ok(());
        };
        let add = matches!(op, Op::AddElements { .. });
        let Some(meta) = self.sets.get(set) else {
            return Err(refuse(op, ENOENT, format!("set {set} does not exist")));
        };
        match (meta.slot, elements) {
            (Slot::Map(i), Elements::Map(v)) => self.check_map(op, &self.rs.maps[i], v, add),
            (Slot::Set(i), Elements::Plain(v)) if !self.rs.sets[i].interval => {
                self.check_addrs(op, &self.rs.sets[i], v, add)
            }
            (
                Slot::Set(i),
                Elements::Interval {
                    family,
                    zero_end,
                    ranges,
                },
            ) if self.rs.sets[i].interval && self.rs.sets[i].family == *family => {
                if *zero_end && add == self.zero_end.contains(set) {
                    return Err(if add {
                        refuse(op, EEXIST, "the zero end element exists")
                    } else {
                        refuse(op, ENOENT, "the zero end element does not exist")
                    });
                }
                self.check_addrs(op, &self.rs.sets[i], ranges, add)
            }
            _ => Err(refuse(
                op,
                EINVAL,
                format!("elements of another kind than set {set}"),
            )),
        }
    }

    /// Addresses or ranges of a set: of its family (single addresses
    /// unless `flags interval`), and new (add) or held (delete).
    fn check_addrs(
        &self,
        op: &Op,
        held: &AddrSet,
        v: &[SetElement],
        add: bool,
    ) -> Result<(), Rejected> {
        let object = |j: usize| one(op, &held.name, ops::set_elements(held, [&v[j]], false));
        if let Some(j) = misfit(v, held.family, held.interval) {
            let why = "not an address or range of the set's type";
            return Err(refuse_object(object(j), EINVAL, why));
        }
        self.check_keys(&held.elements, v, add, object)
    }

    /// Map entries: of the map's family, going to chains that may be
    /// jumped to (add), and new (add) or held (delete).
    fn check_map(
        &self,
        op: &Op,
        map: &VerdictMap,
        v: &[MapElement],
        add: bool,
    ) -> Result<(), Rejected> {
        let object = |j: usize| one(op, &map.name, Elements::Map(vec![v[j].clone()]));
        if let Some(j) = v.iter().position(|e| Family::of(&e.addr) != map.family) {
            return Err(refuse_object(object(j), EINVAL, "wrong address family"));
        }
        if add {
            for (j, e) in v.iter().enumerate() {
                self.check_target(op, &e.chain)
                    .map_err(|r| refuse_object(object(j), r.errno, r.why))?;
            }
        }
        self.check_keys(map.elements.as_slice(), v, add, object)
    }

    fn check_keys<T: Keyed, H: Held<T> + ?Sized>(
        &self,
        held: &H,
        new: &[T],
        add: bool,
        object: impl Fn(usize) -> String,
    ) -> Result<(), Rejected> {
        match conflict(held, new, add) {
            None => Ok(()),
            Some(j) if add => Err(refuse_object(object(j), EEXIST, "the element exists")),
            Some(j) => Err(refuse_object(object(j), ENOENT, "no such element")),
        }
    }

    /// Adds elements `check_elements` accepted.
    pub(super) fn add_elements(&mut self, set: &str, elements: Elements, log: &mut Log) {
        let Some(meta) = self.sets.get(set) else {
            return;
        };
        let keys: Vec<IpAddr>;
        let mut zero = false;
        match (meta.slot, elements) {
            (Slot::Map(i), Elements::Map(v)) => {
                v.iter().for_each(|e| self.count_goto(&e.chain, true));
                keys = v.iter().map(Keyed::first).collect();
                insert_sorted(&mut self.rs.maps[i].elements, v);
            }
            (Slot::Set(i), Elements::Plain(v)) => {
                keys = v.iter().map(Keyed::first).collect();
                self.rs.sets[i].elements.insert_sorted(v);
            }
            (
                Slot::Set(i),
                Elements::Interval {
                    zero_end, ranges, ..
                },
            ) => {
                if zero_end {
                    self.zero_end.insert(set.to_owned());
                    zero = true;
                }
                keys = ranges.iter().map(Keyed::first).collect();
                self.rs.sets[i].elements.insert_sorted(ranges);
            }
            _ => return,
        }
        log.push(Undo::Added(set.to_owned(), keys, zero));
    }

    /// Deletes elements `check_elements` accepted.
    pub(super) fn delete_elements(&mut self, set: &str, elements: &Elements, log: &mut Log) {
        let Some(meta) = self.sets.get(set) else {
            return;
        };
        let removed = match (meta.slot, elements) {
            (Slot::Map(i), Elements::Map(v)) => {
                let keys = v.iter().map(Keyed::first).collect();
                let gone = remove_keys(&mut self.rs.maps[i].elements, keys);
                gone.iter().for_each(|e| self.count_goto(&e.chain, false));
                Removed::Map(gone)
            }
            (Slot::Set(i), Elements::Plain(v) | Elements::Interval { ranges: v, .. }) => {
                let keys = v.iter().map(Keyed::first).collect();
                Removed::Set(self.rs.sets[i].elements.remove_keys(keys))
            }
            _ => return,
        };
        let zero = matches!(elements, Elements::Interval { zero_end: true, .. });
        if zero {
            self.zero_end.remove(set);
        }
        log.push(Undo::Deleted(set.to_owned(), removed, zero));
    }
}
