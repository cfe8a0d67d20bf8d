//! [`Entries`]: the sorted address entries of one family of a peer set,
//! held in shared chunks, so that a set changed by one pod is a new set
//! that shares all but one chunk with the old one.
//!
//! The incremental resolver keeps each peer set until a change moves a pod
//! in or out of it; the old version stays alive meanwhile (the compiled
//! policies and the last build hold it). With one list per family, moving
//! one pod copied, compared and freed every entry of the set: 10,000 for a
//! namespace-wide set at 50k pods. With chunks, a copy shares every chunk,
//! a change copies the one chunk it touches, and two versions compare
//! equal chunks by address.

use std::net::IpAddr;
use std::rc::Rc;

use super::Addr;

/// Entries per chunk as made; a chunk that grows to twice this is split.
const CHUNK: usize = 64;

/// Sorted, normalised address entries (see [`normalise`](super::normalise))
/// in shared chunks. Compares, prints and iterates as the flat list.
#[derive(Clone, Default)]
pub struct Entries {
    chunks: Vec<Rc<Vec<Addr>>>,
    len: usize,
}

/// A place in [`Entries`]: a chunk and an index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    chunk: usize,
    at: usize,
}

impl From<Vec<Addr>> for Entries {
    /// The entries of a normalised list, in chunks.
    fn from(list: Vec<Addr>) -> Self {
        let len = list.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut rest = list.into_iter();
        loop {
            let chunk: Vec<Addr> = rest.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(Rc::new(chunk));
        }
        Self { chunks, len }
    }
}

impl Entries {
    /// How many entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &Addr> + Clone + '_ {
        self.into_iter()
    }

    /// The chunks in order: two versions of a set share the chunks a
    /// change did not touch (the same `Rc`), and a shared chunk holds the
    /// same entries in both.
    pub fn chunks(&self) -> &[Rc<Vec<Addr>>] {
        &self.chunks
    }

    /// Where the entry that starts at `ip` is (`Ok`), or where one would
    /// go (`Err`).
    pub(super) fn find(&self, ip: &IpAddr) -> Result<Pos, Pos> {
        let chunk = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|a| a.range.first < *ip));
        let Some(c) = self.chunks.get(chunk) else {
            // After every entry: the end of the last chunk.
            let chunk = self.chunks.len().saturating_sub(1);
            let at = self.chunks.get(chunk).map_or(0, |c| c.len());
            return Err(Pos { chunk, at });
        };
        match c.binary_search_by(|a| a.range.first.cmp(ip)) {
            Ok(at) => Ok(Pos { chunk, at }),
            Err(at) => Err(Pos { chunk, at }),
        }
    }

    /// The entry at `pos`.
    pub(super) fn get(&self, pos: Pos) -> Option<&Addr> {
        self.chunks.get(pos.chunk)?.get(pos.at)
    }

    /// The entry just before `pos`.
    pub(super) fn before(&self, pos: Pos) -> Option<&Addr> {
        match pos.at {
            0 => self.chunks.get(pos.chunk.checked_sub(1)?)?.last(),
            at => self.chunks.get(pos.chunk)?.get(at - 1),
        }
    }

    /// Takes the entry at `pos` (found by [`Entries::find`]) out.
    pub(super) fn remove(&mut self, pos: Pos) -> Addr {
        let chunk = Rc::make_mut(&mut self.chunks[pos.chunk]);
        let gone = chunk.remove(pos.at);
        if chunk.is_empty() {
            self.chunks.remove(pos.chunk);
        }
        self.len -= 1;
        gone
    }

    /// Puts `entry` at `pos` (from [`Entries::find`]: the list stays sorted).
    pub(super) fn insert(&mut self, pos: Pos, entry: Addr) {
        self.len += 1;
        let Some(shared) = self.chunks.get_mut(pos.chunk) else {
            self.chunks.push(Rc::new(vec![entry]));
            return;
        };
        let chunk = Rc::make_mut(shared);
        chunk.insert(pos.at, entry);
        if chunk.len() >= 2 * CHUNK {
            let upper = chunk.split_off(CHUNK);
            self.chunks.insert(pos.chunk + 1, Rc::new(upper));
        }
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = &'a Addr;
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Rc<Vec<Addr>>>,
        std::slice::Iter<'a, Addr>,
        fn(&'a Rc<Vec<Addr>>) -> std::slice::Iter<'a, Addr>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

impl PartialEq for Entries {
    /// The same entries in the same order. Chunks two versions share, at
    /// the start and at the end, are equal by address.
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len {
            return false;
        }
        let (a, b) = (&self.chunks[..], &other.chunks[..]);
        let head = a
            .iter()
            .zip(b)
            .take_while(|(x, y)| Rc::ptr_eq(x, y))
            .count();
        let (a, b) = (&a[head..], &b[head..]);
        let tail = a
            .iter()
            .rev()
            .zip(b.iter().rev())
            .take_while(|(x, y)| Rc::ptr_eq(x, y))
            .count();
        let (a, b) = (&a[..a.len() - tail], &b[..b.len() - tail]);
        a.iter()
            .flat_map(|c| c.iter())
            .eq(b.iter().flat_map(|c| c.iter()))
    }
}

impl Eq for Entries {}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::net::AddrRange;
    use crate::model::NamespacedName;
    use crate::resolve::Origin;

    fn addr(i: u32) -> Addr {
        let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i));
        let pod = NamespacedName::new("ns", format!("p{i}"));
        Addr::new(AddrRange::single(ip), Origin::Pod(Rc::new(pod)))
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i))
    }

    /// Inserts and removes through `find`, against a plain sorted list:
    /// the same entries after every step, chunks split as they grow, and
    /// a copy made before the changes keeps its entries.
    #[test]
    fn edits_keep_the_flat_order_and_copies_apart() {
        let mut flat: Vec<Addr> = (0..300).filter(|i| i % 3 != 0).map(addr).collect();
        let mut e = Entries::from(flat.clone());
        let before = e.clone();
        let kept: Vec<Addr> = flat.clone();
        // Insert every multiple of 3 (front, middle, end of chunks), then
        // remove every 7th entry.
        for i in (0..300).filter(|i| i % 3 == 0) {
            let pos = e.find(&ip(i)).expect_err("not there yet");
            e.insert(pos, addr(i));
            let at = flat.binary_search(&addr(i)).expect_err("not there");
            flat.insert(at, addr(i));
            assert_eq!(
                e.iter().collect::<Vec<_>>(),
                flat.iter().collect::<Vec<_>>()
            );
        }
        assert!(e.chunks.iter().all(|c| c.len() < 2 * CHUNK), "split");
        for i in (0..300).filter(|i| i % 7 == 0) {
            let pos = e.find(&ip(i)).expect("there");
            assert_eq!(e.get(pos), Some(&addr(i)));
            assert_eq!(e.remove(pos), addr(i));
            flat.retain(|a| *a != addr(i));
        }
        assert_eq!(e.len(), flat.len());
        assert_eq!(e, Entries::from(flat.clone()), "equal across chunkings");
        assert_eq!(before.iter().cloned().collect::<Vec<_>>(), kept);
        assert_ne!(e, before);
        // The entry before a place: across a chunk boundary too.
        let pos = e.find(&ip(1)).expect("there");
        assert_eq!(e.before(pos), None, "nothing before the first");
        for (i, a) in flat.iter().enumerate().skip(1) {
            let pos = e.find(&a.range.first).expect("there");
            assert_eq!(e.before(pos), Some(&flat[i - 1]));
        }
        // Past the end, and into an empty list.
        let end = e.find(&ip(10_000)).expect_err("after all");
        assert_eq!(e.before(end), flat.last());
        let mut empty = Entries::default();
        let pos = empty.find(&ip(5)).expect_err("empty");
        empty.insert(pos, addr(5));
        assert_eq!(empty.iter().collect::<Vec<_>>(), [&addr(5)]);
    }

    #[test]
    fn equality_is_by_entries_whatever_is_shared() {
        let a = Entries::from((0..500).map(addr).collect::<Vec<_>>());
        let mut b = a.clone();
        assert_eq!(a, b);
        // One entry of a middle chunk differs: shared head and tail
        // chunks are skipped, the middle one is compared.
        let pos = b.find(&ip(250)).expect("there");
        b.remove(pos);
        let pos = b.find(&ip(250)).expect_err("gone");
        let mut other = addr(250);
        other.origins = smallvec::smallvec![Origin::Pod(Rc::new(NamespacedName::new("ns", "x")))];
        b.insert(pos, other);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
    }
}
