//! [`Elements`]: the elements of an address set, sorted, in shared chunks.
//!
//! A pod that joins a namespace-wide peer set of 10,000 addresses changes
//! one element. Held as one list, the builder copied the set's elements,
//! the plan compared the old list with the new one, and the dataplane's
//! picture of the kernel copied and compared it again: every step walked
//! the whole set. In chunks, the builder makes the chunks of a peer set's
//! elements from the chunks of its entries (`resolve::Entries`) and keeps
//! the elements of every entry chunk that did not change; two versions of
//! a set share those chunks, and compare, diff and copy them by address.

use std::net::IpAddr;

use super::SetElement;
use crate::chunked::Chunked;

/// The sorted elements of a set in shared chunks ([`Chunked`]).
pub type Elements = Chunked<SetElement>;

/// Whether `edits` elements added to or taken from a set of `len` are
/// better done by making the list again than one by one: each one-by-one
/// edit costs a search and a shift within one chunk, the whole list costs
/// `len`. A namespace of 100 pods leaving a set of 10,000 is edited in
/// place; the first fill of a set is made whole.
fn many(edits: usize, len: usize) -> bool {
    edits > 16 && edits.saturating_mul(8) > len
}

impl Chunked<SetElement> {
    /// Adds elements that overlap none held (a check made before): one by
    /// one into the chunk each falls in, or, for many against the size of
    /// the set, the list made again.
    pub fn insert_sorted(&mut self, mut new: Vec<SetElement>) {
        new.sort_by_key(|e| e.range.first);
        if self.is_empty() || many(new.len(), self.len()) {
            let mut all = self.to_vec();
            all.extend(new);
            all.sort_by_key(|e| e.range.first);
            *self = all.into();
            return;
        }
        for e in new {
            let chunk = self.chunk_for(|h| h.range.first < e.range.first);
            let at = self.chunks()[chunk].partition_point(|h| h.range.first < e.range.first);
            self.insert_at(chunk, at, e);
        }
    }

    /// Takes out the elements whose first address is in `keys`: one by
    /// one from the chunk each is in, or, for many against the size of the
    /// set, in one pass over the list.
    pub fn remove_keys(&mut self, mut keys: Vec<IpAddr>) -> Vec<SetElement> {
        keys.sort();
        if many(keys.len(), self.len()) {
            let (gone, kept): (Vec<SetElement>, Vec<SetElement>) = self
                .to_vec()
                .into_iter()
                .partition(|e| keys.binary_search(&e.range.first).is_ok());
            *self = kept.into();
            return gone;
        }
        let mut gone = Vec::new();
        for k in keys.iter().rev() {
            if self.is_empty() {
                break;
            }
            let chunk = self.chunk_for(|h| h.range.first < *k);
            if let Ok(at) = self.chunks()[chunk].binary_search_by(|h| h.range.first.cmp(k)) {
                gone.push(self.remove_at(chunk, at));
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::AddrRange;
    use std::sync::Arc;

    fn el(i: u32) -> SetElement {
        let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i));
        SetElement {
            range: AddrRange::single(ip),
            comment: Some(format!("p{i}").into()),
        }
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i))
    }

    /// Elements added and removed one by one and many at once: the flat
    /// list's result, and a copy made before keeps its elements.
    #[test]
    fn insert_and_remove_by_key_as_a_flat_list() {
        let mut flat: Vec<SetElement> = (0..300).filter(|i| i % 3 != 0).map(el).collect();
        let mut e = Elements::from(flat.clone());
        let copy = e.clone();
        let kept = flat.clone();
        for i in (0..300).filter(|i| i % 3 == 0).take(80) {
            e.insert_sorted(vec![el(i)]);
            flat.insert(flat.partition_point(|x| x.range.first < ip(i)), el(i));
            assert_eq!(e, flat);
        }
        for i in (0..300).step_by(7) {
            let gone = e.remove_keys(vec![ip(i)]);
            let was = flat.iter().position(|x| x.range.first == ip(i));
            assert_eq!(gone.len(), usize::from(was.is_some()));
            if let Some(at) = was {
                flat.remove(at);
            }
            assert_eq!(e, flat);
        }
        let many: Vec<IpAddr> = (0..300).step_by(5).map(ip).collect();
        let gone = e.remove_keys(many.clone());
        flat.retain(|x| !many.contains(&x.range.first));
        assert_eq!(e, flat);
        e.insert_sorted(gone.clone());
        flat.extend(gone);
        flat.sort_by_key(|x| x.range.first);
        assert_eq!(e, flat);
        assert_eq!(copy, kept);
    }

    /// A batch that is many edits but few against the set (a namespace's
    /// pods leaving a namespace-wide set) is made in place: the result is
    /// the flat list's, and the chunks it did not touch stay shared.
    #[test]
    fn a_batch_small_against_the_set_keeps_the_chunks_it_does_not_touch() {
        let mut flat: Vec<SetElement> = (0..2000).map(el).collect();
        let mut e = Elements::from(flat.clone());
        let before = e.clone();
        let keys: Vec<IpAddr> = (100..140).map(ip).collect();
        let gone = e.remove_keys(keys.clone());
        flat.retain(|x| !keys.contains(&x.range.first));
        assert_eq!(gone.len(), 40);
        assert_eq!(e, flat);
        let shared = |a: &Elements, b: &Elements| {
            let by_address =
                |c: &Arc<Vec<SetElement>>| b.chunks().iter().any(|n| Arc::ptr_eq(c, n));
            a.chunks().iter().filter(|c| by_address(c)).count()
        };
        assert!(
            shared(&before, &e) >= before.chunks().len() - 2,
            "edited in place"
        );
        e.insert_sorted(gone);
        assert_eq!(e, before);
        assert!(
            shared(&before, &e) >= before.chunks().len() - 2,
            "edited in place"
        );
    }

    /// The items a diff has to compare (`Chunked::differing`) hold every
    /// element that went or came, and little else: the chunks the edits
    /// left alone are passed by address.
    #[test]
    fn a_diff_compares_only_the_chunks_edits_touched() {
        let old = Elements::from((0..500).map(el).collect::<Vec<_>>());
        let mut new = old.clone();
        // Two elements gone and one relabelled, all in the third chunk.
        new.remove_keys(vec![ip(130), ip(131)]);
        let mut relabelled = el(140);
        relabelled.comment = Some("other".into());
        new.remove_keys(vec![ip(140)]);
        new.insert_sorted(vec![relabelled.clone()]);
        let (a, b) = old.differing(&new);
        let gone: Vec<&SetElement> = a.iter().copied().filter(|e| !b.contains(e)).collect();
        let came: Vec<&SetElement> = b.iter().copied().filter(|e| !a.contains(e)).collect();
        assert_eq!(gone, vec![&el(130), &el(131), &el(140)]);
        assert_eq!(came, vec![&relabelled]);
        assert_eq!((a.len(), b.len()), (64, 62), "one chunk compared");
        let shared = old
            .chunks()
            .iter()
            .filter(|c| new.chunks().iter().any(|n| Arc::ptr_eq(c, n)))
            .count();
        assert_eq!(shared, old.chunks().len() - 1, "all chunks but one shared");
        let copy = old.clone();
        let (a, b) = old.differing(&copy);
        assert!(a.is_empty() && b.is_empty());
    }
}
