//! [`Chunked`]: a sorted list held in shared chunks, so that a list changed
//! in one place is a new list that shares all but one chunk with the old
//! one. A copy shares every chunk; a change copies the one chunk it
//! touches (`Arc::make_mut`); two versions compare, diff and copy the
//! chunks they share by address.
//!
//! The peer sets' address entries (`resolve::Entries`) and the sets'
//! elements (`ruleset::Elements`) are both held so: at 50,000 pods one pod
//! joins a namespace-wide set of 10,000 addresses, and every step from the
//! resolver to the dataplane's picture of the kernel follows the one chunk
//! that changed instead of walking the set.

use std::sync::Arc;

/// Items per chunk as made from a flat list; a chunk that grows to twice
/// this is split.
pub(crate) const CHUNK: usize = 64;

/// A list in shared chunks (none of them empty). Compares, prints and
/// iterates as the flat list.
pub struct Chunked<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Clone for Chunked<T> {
    /// Shares every chunk.
    fn clone(&self) -> Self {
        Self {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<T> From<Vec<T>> for Chunked<T> {
    /// The items of a list, in order, in chunks of [`CHUNK`].
    fn from(list: Vec<T>) -> Self {
        let len = list.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut rest = list.into_iter();
        loop {
            let chunk: Vec<T> = rest.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(Arc::new(chunk));
        }
        Self { chunks, len }
    }
}

impl<T> FromIterator<Arc<Vec<T>>> for Chunked<T> {
    /// The items of these chunks, in order (empty chunks are left out).
    fn from_iter<I: IntoIterator<Item = Arc<Vec<T>>>>(chunks: I) -> Self {
        let chunks: Vec<_> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let len = chunks.iter().map(|c| c.len()).sum();
        Self { chunks, len }
    }
}

impl<T> Chunked<T> {
    /// How many items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The items in order.
    pub fn iter(&self) -> <&Self as IntoIterator>::IntoIter {
        self.into_iter()
    }

    /// Whether `other` holds the very same chunks (by address): a copy of
    /// this list, or a list made of its chunks. Cheaper than `==`, which
    /// would also find them equal.
    pub fn shares_all(&self, other: &Self) -> bool {
        let (a, b) = shared_ends(self, other);
        a.is_empty() && b.is_empty()
    }

    /// The chunks in order; two versions share the chunks that one did
    /// not change (the same `Arc`), and a shared chunk holds the same items
    /// in both.
    pub fn chunks(&self) -> &[Arc<Vec<T>>] {
        &self.chunks
    }

    /// The item at `index` in the flat order.
    pub fn get(&self, mut index: usize) -> Option<&T> {
        for c in &self.chunks {
            if index < c.len() {
                return Some(&c[index]);
            }
            index -= c.len();
        }
        None
    }

    /// How many items come before the first one for which `before` is
    /// false (`before` is true of a prefix).
    pub fn partition_point(&self, before: impl Fn(&T) -> bool) -> usize {
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

    /// The item at `at` of chunk `chunk`.
    pub(crate) fn at(&self, chunk: usize, at: usize) -> Option<&T> {
        self.chunks.get(chunk)?.get(at)
    }

    /// The item just before `at` of chunk `chunk`.
    pub(crate) fn before_at(&self, chunk: usize, at: usize) -> Option<&T> {
        match at {
            0 => self.chunks.get(chunk.checked_sub(1)?)?.last(),
            at => self.chunks.get(chunk)?.get(at - 1),
        }
    }

    /// The first chunk whose last item is not before (`before` false),
    /// or the last chunk when every one is; 0 when there is none.
    pub(crate) fn chunk_for(&self, before: impl Fn(&T) -> bool) -> usize {
        self.chunks
            .partition_point(|c| c.last().is_some_and(&before))
            .min(self.chunks.len().saturating_sub(1))
    }
}

impl<T: Clone> Chunked<T> {
    /// The items as one list.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().cloned().collect()
    }

    /// Puts `item` at `at` of chunk `chunk` (copying that chunk if it is
    /// shared, splitting it when it has grown to twice [`CHUNK`]); into a
    /// new chunk when there is none.
    pub(crate) fn insert_at(&mut self, chunk: usize, at: usize, item: T) {
        self.len += 1;
        let Some(shared) = self.chunks.get_mut(chunk) else {
            self.chunks.push(Arc::new(vec![item]));
            return;
        };
        let c = Arc::make_mut(shared);
        c.insert(at, item);
        if c.len() >= 2 * CHUNK {
            let upper = c.split_off(CHUNK);
            self.chunks.insert(chunk + 1, Arc::new(upper));
        }
    }

    /// Takes out the item at `at` of chunk `chunk` (copying that chunk if
    /// it is shared, dropping it when it is left empty).
    pub(crate) fn remove_at(&mut self, chunk: usize, at: usize) -> T {
        let c = Arc::make_mut(&mut self.chunks[chunk]);
        let gone = c.remove(at);
        if c.is_empty() {
            self.chunks.remove(chunk);
        }
        self.len -= 1;
        gone
    }
}

/// A run of chunks.
pub(crate) type Run<'c, T> = &'c [Arc<Vec<T>>];

/// The chunks of `a` and `b` between the chunks both share (by address)
/// at the start and at the end.
pub(crate) fn shared_ends<'c, T>(a: &'c Chunked<T>, b: &'c Chunked<T>) -> (Run<'c, T>, Run<'c, T>) {
    let (a, b) = (&a.chunks[..], &b.chunks[..]);
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

impl<T> Chunked<T> {
    /// The items of `self` and of `other` between the chunks both share
    /// at the start and at the end: all that a diff of the two has to
    /// compare (a change to one chunk leaves that chunk's items).
    pub fn differing<'c>(&'c self, other: &'c Self) -> (Vec<&'c T>, Vec<&'c T>) {
        let (a, b) = shared_ends(self, other);
        let items = |run: Run<'c, T>| run.iter().flat_map(|c| c.iter()).collect();
        (items(a), items(b))
    }
}

impl<T: PartialEq> PartialEq for Chunked<T> {
    /// The same items in the same order, however chunked; chunks both
    /// share at the start and at the end are equal by address.
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len {
            return false;
        }
        let (a, b) = shared_ends(self, other);
        a.iter()
            .flat_map(|c| c.iter())
            .eq(b.iter().flat_map(|c| c.iter()))
    }
}

impl<T: Eq> Eq for Chunked<T> {}

impl<T: PartialEq> PartialEq<Vec<T>> for Chunked<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        self.len == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Chunked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, T> IntoIterator for &'a Chunked<T> {
    type Item = &'a T;
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Arc<Vec<T>>>,
        std::slice::Iter<'a, T>,
        fn(&'a Arc<Vec<T>>) -> std::slice::Iter<'a, T>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inserts and removes against a plain sorted list: the same items
    /// after every step, chunks split as they grow and dropped when empty,
    /// positions as in the flat list, and a copy made before the changes
    /// keeps its items.
    #[test]
    fn edits_keep_the_flat_order_and_copies_apart() {
        let mut flat: Vec<u32> = (0..300).filter(|i| i % 3 != 0).collect();
        let mut c = Chunked::from(flat.clone());
        let copy = c.clone();
        let kept = flat.clone();
        for i in (0..300).filter(|i| i % 3 == 0) {
            let chunk = c.chunk_for(|x| *x < i);
            let at = c.chunks()[chunk].partition_point(|x| *x < i);
            c.insert_at(chunk, at, i);
            flat.insert(flat.partition_point(|x| *x < i), i);
            assert_eq!(c, flat);
        }
        assert!(c
            .chunks()
            .iter()
            .all(|k| !k.is_empty() && k.len() < 2 * CHUNK));
        for i in (0..300).step_by(7) {
            let chunk = c.chunk_for(|x| *x < i);
            let at = c.chunks()[chunk].binary_search(&i).expect("there");
            assert_eq!(c.remove_at(chunk, at), i);
            flat.retain(|x| *x != i);
            assert_eq!(c, flat);
        }
        assert_eq!(c.len(), flat.len());
        for probe in [0, 1, 150, 298, 299, 10_000] {
            let want = flat.partition_point(|x| *x < probe);
            assert_eq!(c.partition_point(|x| *x < probe), want);
            assert_eq!(c.get(want), flat.get(want));
        }
        assert_eq!(c, Chunked::from(flat.clone()), "equal across chunkings");
        assert_eq!(copy, kept);
        assert_ne!(c, copy);
        let mut empty = Chunked::default();
        empty.insert_at(0, 0, 5);
        assert_eq!(empty, vec![5]);
        assert_eq!(Chunked::<u32>::default().partition_point(|_| true), 0);
    }

    /// One item of a middle chunk differs: the shared head and tail chunks
    /// are passed, the middle compared.
    #[test]
    fn equality_is_by_items_whatever_is_shared() {
        let a = Chunked::from((0..500).collect::<Vec<u32>>());
        let mut b = a.clone();
        assert_eq!(a, b);
        b.remove_at(3, 10);
        b.insert_at(3, 10, 1_000);
        let (x, y) = shared_ends(&a, &b);
        assert_eq!((x.len(), y.len()), (1, 1));
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
        // Sharing every chunk is a copy; equal items in other chunks are not.
        assert!(a.shares_all(&a.clone()));
        assert!(!a.shares_all(&b));
        let remade = Chunked::from(a.to_vec());
        assert!(remade == a && !remade.shares_all(&a));
    }
}
