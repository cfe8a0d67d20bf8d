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

use super::Addr;
use crate::chunked::Chunked;

/// Sorted, normalised address entries (see [`normalise`](super::normalise))
/// in shared chunks ([`Chunked`]).
pub type Entries = Chunked<Addr>;

/// A place in [`Entries`]: a chunk and an index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    chunk: usize,
    at: usize,
}

impl Chunked<Addr> {
    /// Where the entry that starts at `ip` is (`Ok`), or where one would
    /// go (`Err`).
    pub(super) fn find(&self, ip: &IpAddr) -> Result<Pos, Pos> {
        let chunk = self.chunk_for(|a| a.range.first < *ip);
        let Some(c) = self.chunks().get(chunk) else {
            return Err(Pos { chunk: 0, at: 0 });
        };
        if c.last().is_some_and(|a| a.range.first < *ip) {
            // After every entry: the end of the last chunk.
            return Err(Pos { chunk, at: c.len() });
        }
        match c.binary_search_by(|a| a.range.first.cmp(ip)) {
            Ok(at) => Ok(Pos { chunk, at }),
            Err(at) => Err(Pos { chunk, at }),
        }
    }

    /// The entry at `pos`.
    pub(super) fn entry(&self, pos: Pos) -> Option<&Addr> {
        self.at(pos.chunk, pos.at)
    }

    /// The entry just before `pos`.
    pub(super) fn before(&self, pos: Pos) -> Option<&Addr> {
        self.before_at(pos.chunk, pos.at)
    }

    /// Takes the entry at `pos` (found by [`Chunked::find`]) out.
    pub(super) fn take(&mut self, pos: Pos) -> Addr {
        self.remove_at(pos.chunk, pos.at)
    }

    /// Puts `entry` at `pos` (from [`Chunked::find`]: the list stays sorted).
    pub(super) fn put(&mut self, pos: Pos, entry: Addr) {
        self.insert_at(pos.chunk, pos.at, entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunked::CHUNK;
    use crate::model::net::AddrRange;
    use crate::model::NamespacedName;
    use crate::resolve::Origin;
    use std::rc::Rc;

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
            e.put(pos, addr(i));
            let at = flat.binary_search(&addr(i)).expect_err("not there");
            flat.insert(at, addr(i));
            assert_eq!(
                e.iter().collect::<Vec<_>>(),
                flat.iter().collect::<Vec<_>>()
            );
        }
        assert!(e.chunks().iter().all(|c| c.len() < 2 * CHUNK), "split");
        for i in (0..300).filter(|i| i % 7 == 0) {
            let pos = e.find(&ip(i)).expect("there");
            assert_eq!(e.entry(pos), Some(&addr(i)));
            assert_eq!(e.take(pos), addr(i));
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
        empty.put(pos, addr(5));
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
        b.take(pos);
        let pos = b.find(&ip(250)).expect_err("gone");
        let mut other = addr(250);
        other.origins = smallvec::smallvec![Origin::Pod(Rc::new(NamespacedName::new("ns", "x")))];
        b.put(pos, other);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
    }
}
