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
use std::sync::Arc;

use super::SetElement;

/// Elements per chunk as made from a flat list; a chunk that grows to
/// twice this is split.
const CHUNK: usize = 64;

/// The sorted elements of a set, in shared chunks (none of them empty).
/// Compares, prints and iterates as the flat list.
#[derive(Clone, Default)]
pub struct Elements {
    chunks: Vec<Arc<Vec<SetElement>>>,
    len: usize,
}

impl From<Vec<SetElement>> for Elements {
    /// The elements of a sorted list, in chunks.
    fn from(list: Vec<SetElement>) -> Self {
        let len = list.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut rest = list.into_iter();
        loop {
            let chunk: Vec<SetElement> = rest.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(Arc::new(chunk));
        }
        Self { chunks, len }
    }
}

impl FromIterator<Arc<Vec<SetElement>>> for Elements {
    /// The elements of these chunks, in order (empty chunks are left out).
    fn from_iter<I: IntoIterator<Item = Arc<Vec<SetElement>>>>(chunks: I) -> Self {
        let chunks: Vec<_> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let len = chunks.iter().map(|c| c.len()).sum();
        Self { chunks, len }
    }
}

impl Elements {
    /// How many elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &SetElement> + Clone + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The chunks in order; two versions of a set share the chunks that
    /// one did not change (the same `Arc`).
    pub fn chunks(&self) -> &[Arc<Vec<SetElement>>] {
        &self.chunks
    }

    /// The elements as one list.
    pub fn to_vec(&self) -> Vec<SetElement> {
        self.iter().cloned().collect()
    }

    /// The element at `index` in the flat order.
    pub fn get(&self, mut index: usize) -> Option<&SetElement> {
        for c in &self.chunks {
            if index < c.len() {
                return Some(&c[index]);
            }
            index -= c.len();
        }
        None
    }

    /// How many elements come before the first one for which `before`
    /// is false (the elements are sorted and `before` true of a prefix).
    pub fn partition_point(&self, before: impl Fn(&SetElement) -> bool) -> usize {
        let chunk = self
            .chunks
            .partition_point(|c| c.last().is_some_and(&before));
        let passed: usize = self.chunks[..chunk].iter().map(|c| c.len()).sum();
        passed
            + self
                .chunks
                .get(chunk)
                .map_or(0, |c| c.partition_point(&before))
    }

    /// The chunk where an element that starts at `first` is or would go.
    fn chunk_for(&self, first: IpAddr) -> usize {
        self.chunks
            .partition_point(|c| c.last().is_some_and(|e| e.range.first < first))
            .min(self.chunks.len().saturating_sub(1))
    }

    /// Adds elements that overlap none held (a check made before).
    pub fn insert_sorted(&mut self, mut new: Vec<SetElement>) {
        new.sort_by_key(|e| e.range.first);
        if self.chunks.is_empty() || new.len() > 16 {
            let mut all = self.to_vec();
            all.extend(new);
            all.sort_by_key(|e| e.range.first);
            *self = all.into();
            return;
        }
        for e in new {
            let i = self.chunk_for(e.range.first);
            let chunk = Arc::make_mut(&mut self.chunks[i]);
            let at = chunk.partition_point(|h| h.range.first < e.range.first);
            chunk.insert(at, e);
            if chunk.len() >= 2 * CHUNK {
                let upper = chunk.split_off(CHUNK);
                self.chunks.insert(i + 1, Arc::new(upper));
            }
            self.len += 1;
        }
    }

    /// Takes out the elements whose first address is in `keys`.
    pub fn remove_keys(&mut self, mut keys: Vec<IpAddr>) -> Vec<SetElement> {
        keys.sort();
        if keys.len() > 16 {
            let (gone, kept): (Vec<SetElement>, Vec<SetElement>) = self
                .to_vec()
                .into_iter()
                .partition(|e| keys.binary_search(&e.range.first).is_ok());
            *self = kept.into();
            return gone;
        }
        let mut gone = Vec::new();
        for k in keys.iter().rev() {
            if self.chunks.is_empty() {
                break;
            }
            let i = self.chunk_for(*k);
            let Ok(at) = self.chunks[i].binary_search_by(|h| h.range.first.cmp(k)) else {
                continue;
            };
            let chunk = Arc::make_mut(&mut self.chunks[i]);
            gone.push(chunk.remove(at));
            if chunk.is_empty() {
                self.chunks.remove(i);
            }
            self.len -= 1;
        }
        gone
    }

    /// What is only in `old`, and what is only in `new` (an element whose
    /// comment changed is in both), each in order. Chunks both share at
    /// the start and at the end are passed by address.
    pub fn changed<'e>(
        old: &'e Elements,
        new: &'e Elements,
    ) -> (Vec<&'e SetElement>, Vec<&'e SetElement>) {
        let (a, b) = shared_ends(&old.chunks, &new.chunks);
        let (mut a, mut b) = (
            a.iter().flat_map(|c| c.iter()).peekable(),
            b.iter().flat_map(|c| c.iter()).peekable(),
        );
        let (mut gone, mut came) = (Vec::new(), Vec::new());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x == y => {
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) => match x.cmp(y) {
                    std::cmp::Ordering::Greater => came.extend(b.next()),
                    _ => gone.extend(a.next()),
                },
                (Some(_), None) => gone.extend(a.next()),
                (None, Some(_)) => came.extend(b.next()),
                (None, None) => break,
            }
        }
        (gone, came)
    }
}

/// The chunks of `a` and `b` between the chunks both share (by address)
/// at the start and at the end.
#[allow(clippy::type_complexity)]
fn shared_ends<'e>(
    a: &'e [Arc<Vec<SetElement>>],
    b: &'e [Arc<Vec<SetElement>>],
) -> (&'e [Arc<Vec<SetElement>>], &'e [Arc<Vec<SetElement>>]) {
    let head = a
        .iter()
        .zip(b)
        .take_while(|(x, y)| Arc::ptr_eq(x, y))
        .count();
    let (a, b) = (&a[head..], &b[head..]);
    let tail = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| Arc::ptr_eq(x, y))
        .count();
    (&a[..a.len() - tail], &b[..b.len() - tail])
}

impl PartialEq for Elements {
    /// The same elements in the same order; shared chunks at the start
    /// and at the end are equal by address.
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len {
            return false;
        }
        let (a, b) = shared_ends(&self.chunks, &other.chunks);
        a.iter()
            .flat_map(|c| c.iter())
            .eq(b.iter().flat_map(|c| c.iter()))
    }
}

impl Eq for Elements {}

impl PartialEq<Vec<SetElement>> for Elements {
    fn eq(&self, other: &Vec<SetElement>) -> bool {
        self.len == other.len() && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for Elements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Elements {
    type Item = &'a SetElement;
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Arc<Vec<SetElement>>>,
        std::slice::Iter<'a, SetElement>,
        fn(&'a Arc<Vec<SetElement>>) -> std::slice::Iter<'a, SetElement>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::AddrRange;

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

    /// Inserts and removes against a plain sorted list: the same elements
    /// after every step, chunks split as they grow and dropped when empty,
    /// and a copy made before the changes keeps its elements.
    #[test]
    fn edits_keep_the_flat_order_and_copies_apart() {
        let mut flat: Vec<SetElement> = (0..300).filter(|i| i % 3 != 0).map(el).collect();
        let mut e = Elements::from(flat.clone());
        let copy = e.clone();
        let kept = flat.clone();
        for i in (0..300).filter(|i| i % 3 == 0).take(80) {
            e.insert_sorted(vec![el(i)]);
            let at = flat.partition_point(|x| x.range.first < ip(i));
            flat.insert(at, el(i));
            assert_eq!(e, flat);
        }
        assert!(e
            .chunks()
            .iter()
            .all(|c| !c.is_empty() && c.len() < 2 * CHUNK));
        for i in (0..300).step_by(7) {
            let gone = e.remove_keys(vec![ip(i)]);
            let was = flat.iter().position(|x| x.range.first == ip(i));
            assert_eq!(gone.len(), usize::from(was.is_some()));
            if let Some(at) = was {
                flat.remove(at);
            }
            assert_eq!(e, flat);
            assert_eq!(e.len(), flat.len());
        }
        // Many at once take the whole-list path: the same result.
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

    /// `changed` finds what a merge of the flat lists finds, and passes
    /// the chunks the two versions share.
    #[test]
    fn changed_is_the_flat_difference() {
        let old = Elements::from((0..500).map(el).collect::<Vec<_>>());
        let mut new = old.clone();
        new.remove_keys(vec![ip(130), ip(131)]);
        new.insert_sorted(vec![el(1000)]);
        let mut relabelled = el(7);
        relabelled.comment = Some("other".into());
        new.remove_keys(vec![ip(7)]);
        new.insert_sorted(vec![relabelled.clone()]);
        let (gone, came) = Elements::changed(&old, &new);
        assert_eq!(gone, vec![&el(7), &el(130), &el(131)]);
        assert_eq!(came, vec![&relabelled, &el(1000)]);
        let shared = old
            .chunks()
            .iter()
            .filter(|c| new.chunks().iter().any(|n| Arc::ptr_eq(c, n)))
            .count();
        assert!(shared >= old.chunks().len() - 3, "{shared} chunks shared");
        let copy = old.clone();
        let (gone, came) = Elements::changed(&old, &copy);
        assert!(gone.is_empty() && came.is_empty());
    }

    /// Positions and indexing agree with the flat list.
    #[test]
    fn positions_agree_with_the_flat_list() {
        let flat: Vec<SetElement> = (0..200).map(|i| el(3 * i)).collect();
        let e = Elements::from(flat.clone());
        for probe in [0, 1, 3, 150, 299, 597, 600, 10_000] {
            let want = flat.partition_point(|x| x.range.first < ip(probe));
            assert_eq!(e.partition_point(|x| x.range.first < ip(probe)), want);
            assert_eq!(e.get(want), flat.get(want));
        }
        assert_eq!(Elements::default().partition_point(|_| true), 0);
    }
}
