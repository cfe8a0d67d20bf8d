//! Op payloads (tables, chains, sets, elements) → libnftnl objects,
//! attribute for attribute as nft 1.0.6 builds them for the text `render`
//! prints (checked against `nft --debug=netlink` and against kernel dumps in
//! the kernel tests). Rules are `expr.rs`'s; the batch is `batch.rs`'s.
//!
//! Also the kernel's view of set contents (`KElem`): interval sets hold a
//! start element per range and an end element at `last + 1`, flagged
//! `NFT_SET_ELEM_INTERVAL_END`; a range that ends at the family's last
//! address has no end element and carries nft's "open interval" element
//! flag in its userdata instead; and, as nft does when it fills an empty
//! set, an end element at address zero precedes a first range that does
//! not start at zero.

use std::net::IpAddr;

use nftnl::nftnl_sys as sys;

use super::ffi;
use super::ops;
use super::transaction::{zero, ChainDef, Elements, SetDef, SetKind};
use nftpolicy_core::ruleset::{
    AddrSet, Family, Hook, MapElement, SetElement, VerdictMap, TABLE_NAME,
};

/// `BYTEORDER_BIG_ENDIAN` of nft's datatypes (set userdata).
const BYTEORDER_BIG_ENDIAN: u32 = 2;
/// nft's `ipv4_addr` / `ipv6_addr` datatype numbers (`NFTA_SET_KEY_TYPE`).
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_IPV6_ADDR: u32 = 8;

/// A model object the kernel cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct EncodeError(pub String);

/// nftnl userdata: type-length-value records, as `nftnl_udata_put` writes them.
#[derive(Default)]
pub(super) struct Udata(pub Vec<u8>);

impl Udata {
    fn put(mut self, ty: u32, value: &[u8]) -> Result<Self, EncodeError> {
        let len = u8::try_from(value.len())
            .map_err(|_| EncodeError(format!("userdata record of {} bytes", value.len())))?;
        self.0.push(ty as u8);
        self.0.push(len);
        self.0.extend_from_slice(value);
        Ok(self)
    }

    pub(super) fn str(self, ty: u32, s: &str) -> Result<Self, EncodeError> {
        if s.contains('\0') {
            return Err(EncodeError(format!("comment {s:?} contains NUL")));
        }
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(ty, &v)
            .map_err(|_| EncodeError(format!("comment of {} bytes is too long", s.len())))
    }

    fn u32(self, ty: u32, v: u32) -> Result<Self, EncodeError> {
        self.put(ty, &v.to_ne_bytes())
    }
}

/// A name the kernel accepts: 1 to 255 bytes, no NUL.
pub(super) fn check_name(name: &str) -> Result<(), EncodeError> {
    if name.is_empty() || name.len() > 255 || name.contains('\0') {
        return Err(EncodeError(format!("invalid object name {name:?}")));
    }
    Ok(())
}

/// Our table: just the name (for the add/delete pair of a full replace).
pub(super) fn table_bare() -> ffi::Table {
    let mut t = ffi::Table::new();
    t.set_str(sys::NFTNL_TABLE_NAME, TABLE_NAME);
    t.set_u32(sys::NFTNL_TABLE_FLAGS, 0);
    t
}

/// Our table with a comment.
pub(super) fn table(comment: &str) -> Result<ffi::Table, EncodeError> {
    let mut t = table_bare();
    let udata = Udata::default().str(sys::NFTNL_UDATA_TABLE_COMMENT, comment)?;
    t.set(sys::NFTNL_TABLE_USERDATA, &udata.0);
    Ok(t)
}

/// A chain reference: table and name (delete, dumps).
pub(super) fn chain_ref(name: &str) -> Result<ffi::Chain, EncodeError> {
    check_name(name)?;
    let mut c = ffi::Chain::new();
    c.set_str(sys::NFTNL_CHAIN_TABLE, TABLE_NAME);
    c.set_str(sys::NFTNL_CHAIN_NAME, name);
    Ok(c)
}

/// A chain definition (no rules): hook, priority, policy and comment.
pub(super) fn chain(chain: &ChainDef) -> Result<ffi::Chain, EncodeError> {
    let mut c = chain_ref(&chain.name)?;
    if let Some(base) = chain.base {
        let hook = match base.hook {
            Hook::Forward => libc::NF_INET_FORWARD,
            Hook::Input => libc::NF_INET_LOCAL_IN,
        };
        c.set_u32(sys::NFTNL_CHAIN_HOOKNUM, hook as u32);
        c.set(sys::NFTNL_CHAIN_PRIO, &base.priority.to_ne_bytes());
        c.set_str(sys::NFTNL_CHAIN_TYPE, "filter");
        c.set_u32(sys::NFTNL_CHAIN_POLICY, libc::NF_ACCEPT as u32);
    }
    let udata = Udata::default().str(sys::NFTNL_UDATA_CHAIN_COMMENT, &chain.comment)?;
    c.set(sys::NFTNL_CHAIN_USERDATA, &udata.0);
    Ok(c)
}

/// A set reference: table, name and (when created in the same batch) id.
pub(super) fn set_ref(name: &str, id: Option<u32>) -> Result<ffi::Set, EncodeError> {
    check_name(name)?;
    let mut s = ffi::Set::new();
    s.set_str(sys::NFTNL_SET_TABLE, TABLE_NAME);
    s.set_str(sys::NFTNL_SET_NAME, name);
    if let Some(id) = id {
        s.set_u32(sys::NFTNL_SET_ID, id);
    }
    Ok(s)
}

/// A set definition as nft sends it: flags, key type and length, verdict
/// data for maps, and userdata with the key byte order and the comment.
pub(super) fn set(meta: &SetDef, id: Option<u32>) -> Result<ffi::Set, EncodeError> {
    let mut s = set_ref(&meta.name, id)?;
    let flags = match meta.kind {
        SetKind::Plain => 0,
        SetKind::Interval => libc::NFT_SET_INTERVAL,
        SetKind::Map => libc::NFT_SET_MAP,
    };
    s.set_u32(sys::NFTNL_SET_FLAGS, flags as u32);
    let (key_type, key_len) = match meta.family {
        Family::V4 => (TYPE_IPV4_ADDR, 4),
        Family::V6 => (TYPE_IPV6_ADDR, 16),
    };
    s.set_u32(sys::NFTNL_SET_KEY_TYPE, key_type);
    s.set_u32(sys::NFTNL_SET_KEY_LEN, key_len);
    let mut udata =
        Udata::default().u32(sys::NFTNL_UDATA_SET_KEYBYTEORDER, BYTEORDER_BIG_ENDIAN)?;
    if meta.kind == SetKind::Map {
        s.set_u32(sys::NFTNL_SET_DATA_TYPE, libc::NFT_DATA_VERDICT);
        s.set_u32(sys::NFTNL_SET_DATA_LEN, 0);
        // The verdict datatype has no byte order (BYTEORDER_INVALID) and
        // the data is not an interval.
        udata = udata
            .u32(sys::NFTNL_UDATA_SET_DATABYTEORDER, 0)?
            .u32(sys::NFTNL_UDATA_SET_DATA_INTERVAL, 0)?;
    }
    let udata = udata.str(sys::NFTNL_UDATA_SET_COMMENT, &meta.comment)?;
    s.set(sys::NFTNL_SET_USERDATA, &udata.0);
    Ok(s)
}

/// One element as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct KElem {
    /// The key, network byte order.
    pub key: Vec<u8>,
    /// `NFT_SET_ELEM_INTERVAL_END`.
    pub end: bool,
    /// Verdict-map data: `goto <chain>`.
    pub goto: Option<String>,
    /// nftnl userdata (comment, element flags).
    pub udata: Vec<u8>,
}

impl KElem {
    /// The element for messages: everything for an add, key and flags for a delete.
    pub(super) fn to_ffi(&self, add: bool) -> ffi::Elem {
        let mut e = ffi::Elem::new();
        if self.end {
            e.set(
                sys::NFTNL_SET_ELEM_FLAGS,
                &(libc::NFT_SET_ELEM_INTERVAL_END as u32).to_ne_bytes(),
            );
        }
        e.set(sys::NFTNL_SET_ELEM_KEY, &self.key);
        if add {
            if let Some(chain) = &self.goto {
                e.set(sys::NFTNL_SET_ELEM_VERDICT, &libc::NFT_GOTO.to_ne_bytes());
                let mut c = chain.as_bytes().to_vec();
                c.push(0);
                e.set(sys::NFTNL_SET_ELEM_CHAIN, &c);
            }
            if !self.udata.is_empty() {
                e.set(sys::NFTNL_SET_ELEM_USERDATA, &self.udata);
            }
        }
        e
    }

    /// Upper bound of the element's bytes in a message (for splitting).
    pub(super) fn wire_size(&self) -> usize {
        let pad = |n: usize| (n + 3) & !3;
        let data = self.goto.as_ref().map_or(0, |c| 24 + pad(c.len() + 1));
        4 + 8 + 12 + pad(self.key.len()) + data + 4 + pad(self.udata.len())
    }

    /// `10.0.0.1`, `10.0.0.4 (interval end)`, `... : goto <chain>`.
    pub(super) fn describe(&self) -> String {
        let addr = match self.key.len() {
            4 => <[u8; 4]>::try_from(&self.key[..]).map(|a| IpAddr::from(a).to_string()),
            16 => <[u8; 16]>::try_from(&self.key[..]).map(|a| IpAddr::from(a).to_string()),
            _ => Ok(format!("{:02x?}", self.key)),
        }
        .unwrap_or_default();
        let end = if self.end { " (interval end)" } else { "" };
        match &self.goto {
            Some(c) => format!("{addr}{end} : goto {c}"),
            None => format!("{addr}{end}"),
        }
    }
}

/// An address as a set key or `cmp` operand: network byte order.
pub(super) fn key_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `addr + 1`, or `None` past the family's last address.
fn next_addr(addr: &IpAddr) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(a) => u32::from(*a)
            .checked_add(1)
            .map(|v| IpAddr::from(v.to_be_bytes())),
        IpAddr::V6(a) => u128::from(*a)
            .checked_add(1)
            .map(|v| IpAddr::from(v.to_be_bytes())),
    }
}

fn elem_udata(comment: Option<&str>, open: bool) -> Result<Vec<u8>, EncodeError> {
    let mut u = Udata::default();
    if let Some(c) = comment {
        u = u.str(sys::NFTNL_UDATA_SET_ELEM_COMMENT, c)?;
    }
    if open {
        u = u.u32(
            sys::NFTNL_UDATA_SET_ELEM_FLAGS,
            sys::NFTNL_SET_ELEM_F_INTERVAL_OPEN,
        )?;
    }
    Ok(u.0)
}

/// The kernel elements of an element op on set `set`, in the order nft
/// sends them: the zero end element first, then per address or range its
/// start and end elements; per map entry its key and verdict.
pub(super) fn elements(set: &str, elements: &Elements) -> Result<Vec<KElem>, EncodeError> {
    match elements {
        Elements::Plain(v) => range_elements(set, None, v),
        Elements::Interval {
            family,
            zero_end,
            ranges,
        } => {
            let head = zero_end.then(|| KElem {
                key: key_bytes(&zero(*family)),
                end: true,
                goto: None,
                udata: Vec::new(),
            });
            let mut out: Vec<KElem> = head.into_iter().collect();
            out.extend(range_elements(set, Some(*family), ranges)?);
            Ok(out)
        }
        Elements::Map(v) => map_entries(set, v),
    }
}

/// The kernel elements of a whole peer set, as a full replace sends them.
pub(super) fn set_elements(set: &AddrSet) -> Result<Vec<KElem>, EncodeError> {
    let all = ops::set_elements(set, set.elements.iter(), ops::zero_end(set));
    elements(&set.name, &all)
}

/// The kernel elements of a whole dispatch map.
pub(super) fn map_elements(map: &VerdictMap) -> Result<Vec<KElem>, EncodeError> {
    map_entries(&map.name, &map.elements)
}

/// The kernel elements of addresses or ranges: one per address in a plain
/// set (`interval` is `None`), a start and (unless the range runs to the
/// family's end) an end per range in an interval set of family `interval`.
fn range_elements(
    set: &str,
    interval: Option<Family>,
    elements: &[SetElement],
) -> Result<Vec<KElem>, EncodeError> {
    let mut out = Vec::with_capacity(elements.len() * 2);
    for e in elements {
        let r = &e.range;
        let family = interval.unwrap_or(r.family());
        if r.family() != family || Family::of(&r.last) != family || r.last < r.first {
            return Err(EncodeError(format!("set {set}: bad element {r:?}")));
        }
        if r.is_range() && interval.is_none() {
            return Err(EncodeError(format!(
                "set {set}: range {r:?} in a set without flags interval"
            )));
        }
        let end = if interval.is_some() {
            next_addr(&r.last)
        } else {
            None
        };
        let open = interval.is_some() && end.is_none();
        out.push(KElem {
            key: key_bytes(&r.first),
            end: false,
            goto: None,
            udata: elem_udata(e.comment.as_deref(), open)?,
        });
        if let Some(end) = end {
            out.push(KElem {
                key: key_bytes(&end),
                end: true,
                goto: None,
                udata: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// The kernel elements of map entries.
fn map_entries(map: &str, entries: &[MapElement]) -> Result<Vec<KElem>, EncodeError> {
    entries
        .iter()
        .map(|e| {
            check_name(&e.chain)?;
            Ok(KElem {
                key: key_bytes(&e.addr),
                end: false,
                goto: Some(e.chain.clone()),
                udata: elem_udata(Some(&e.comment), false)?,
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|e: EncodeError| EncodeError(format!("map {map}: {}", e.0)))
}
