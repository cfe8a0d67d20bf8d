//! A comparable picture of our table, taken either from kernel dumps or
//! from the objects `encode` builds for a model: the attributes we set,
//! read back through the same libnftnl getters on both sides, with what the
//! kernel adds on its own (handles, counter values, default flags) left out.
//! Two equal images mean the kernel holds what we think it holds.

use std::fmt::Write;

use nftnl::nftnl_sys as sys;

use super::encode::{self, EncodeError, KElem};
use super::expr;
use super::ffi::{self, ElemRef, ExprRef};
use super::transaction::{ChainDef, SetDef};
use nftpolicy_core::ruleset::{Ruleset, TABLE_COMMENT};

/// Our table as objects, in kernel order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Image {
    /// Table flags and userdata; `None` when the table does not exist.
    pub table: Option<(u32, Vec<u8>)>,
    /// Sets and maps in kernel order.
    pub sets: Vec<SetImage>,
    /// Chains in kernel order.
    pub chains: Vec<ChainImage>,
}

/// A set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SetImage {
    /// Name.
    pub name: String,
    /// flags, key type, key length, data type.
    pub attrs: [Option<u32>; 4],
    /// Userdata (key byte order, comment).
    pub udata: Vec<u8>,
    /// Sorted elements, when they were read.
    pub elements: Option<Vec<KElem>>,
}

/// A chain and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChainImage {
    /// Name.
    pub name: String,
    /// hook number, priority, policy (base chains).
    pub attrs: [Option<u32>; 3],
    /// Chain type (`filter`).
    pub kind: Option<String>,
    /// Userdata (comment).
    pub udata: Vec<u8>,
    /// One line per rule: expressions and userdata.
    pub rules: Vec<String>,
}

impl SetImage {
    /// The image of a set object.
    pub(super) fn of(s: &ffi::Set) -> Self {
        let a = |attr| s.get_u32(attr);
        Self {
            name: s.get_str(sys::NFTNL_SET_NAME).unwrap_or_default(),
            // The kernel leaves out flags that are zero.
            attrs: [
                a(sys::NFTNL_SET_FLAGS).or(Some(0)),
                a(sys::NFTNL_SET_KEY_TYPE),
                a(sys::NFTNL_SET_KEY_LEN),
                a(sys::NFTNL_SET_DATA_TYPE),
            ],
            udata: s.get(sys::NFTNL_SET_USERDATA).unwrap_or_default(),
            elements: None,
        }
    }
}

impl ChainImage {
    /// The image of a chain object (rules added separately).
    pub(super) fn of(c: &ffi::Chain) -> Self {
        let a = |attr| c.get_u32(attr);
        Self {
            name: c.get_str(sys::NFTNL_CHAIN_NAME).unwrap_or_default(),
            attrs: [
                a(sys::NFTNL_CHAIN_HOOKNUM),
                a(sys::NFTNL_CHAIN_PRIO),
                a(sys::NFTNL_CHAIN_POLICY),
            ],
            kind: c.get_str(sys::NFTNL_CHAIN_TYPE),
            udata: c.get(sys::NFTNL_CHAIN_USERDATA).unwrap_or_default(),
            rules: Vec::new(),
        }
    }
}

/// Lower-case hex of `b`.
pub(super) fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// Attributes the kernel reports on its own and we never set.
fn ignored(name: &str, attr: u32, value: &[u8]) -> bool {
    let zero = value.iter().all(|b| *b == 0);
    match name {
        "counter" => true,
        "lookup" => {
            attr == sys::NFTNL_EXPR_LOOKUP_SET_ID || (attr == sys::NFTNL_EXPR_LOOKUP_FLAGS && zero)
        }
        "bitwise" => attr == sys::NFTNL_EXPR_BITWISE_OP && zero,
        "immediate" => attr == sys::NFTNL_EXPR_IMM_CHAIN_ID,
        _ => false,
    }
}

fn expr_text(e: &ExprRef<'_>) -> String {
    let name = e.name();
    let mut s = format!("[{name}");
    for attr in 1..=12 {
        if let Some(v) = e.get(attr) {
            if !ignored(&name, attr, &v) {
                let _ = write!(s, " {attr}={}", hex(&v));
            }
        }
    }
    s.push(']');
    s
}

/// One line for a rule: its expressions and its userdata.
pub(super) fn rule_text(r: &ffi::Rule) -> String {
    let mut s = String::new();
    r.for_each_expr(|e| s.push_str(&expr_text(e)));
    if let Some(u) = r.get(sys::NFTNL_RULE_USERDATA) {
        let _ = write!(s, " udata={}", hex(&u));
    }
    s
}

/// An element as read from a dump.
pub(super) fn kelem(e: &ElemRef<'_>) -> KElem {
    let flags = e
        .get(sys::NFTNL_SET_ELEM_FLAGS)
        .and_then(|b| Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?)))
        .unwrap_or(0);
    let verdict = e
        .get(sys::NFTNL_SET_ELEM_VERDICT)
        .and_then(|b| Some(i32::from_ne_bytes(b.get(..4)?.try_into().ok()?)));
    let goto = match verdict {
        Some(libc::NFT_GOTO) => e
            .get(sys::NFTNL_SET_ELEM_CHAIN)
            .map(|c| ffi::c_bytes_to_string(&c)),
        Some(v) => Some(format!("<verdict {v}>")),
        None => None,
    };
    KElem {
        key: e.get(sys::NFTNL_SET_ELEM_KEY).unwrap_or_default(),
        end: flags & libc::NFT_SET_ELEM_INTERVAL_END as u32 != 0,
        goto,
        udata: e.get(sys::NFTNL_SET_ELEM_USERDATA).unwrap_or_default(),
    }
}

/// What we compare of a table: its flags and userdata (the comment).
pub(super) fn table_image(table: &ffi::Table) -> (u32, Vec<u8>) {
    (
        table.get_u32(sys::NFTNL_TABLE_FLAGS).unwrap_or(0),
        table.get(sys::NFTNL_TABLE_USERDATA).unwrap_or_default(),
    )
}

/// The image of the objects `encode` builds for `rs`.
pub(super) fn of_model(rs: &Ruleset, with_elements: bool) -> Result<Image, EncodeError> {
    let mut image = Image {
        table: Some(table_image(&encode::table(TABLE_COMMENT)?)),
        ..Image::default()
    };
    for map in &rs.maps {
        let mut s = SetImage::of(&encode::set(&SetDef::of_map(map), None)?);
        if with_elements {
            s.elements = Some(sorted(encode::map_elements(map)?));
        }
        image.sets.push(s);
    }
    for set in &rs.sets {
        let mut s = SetImage::of(&encode::set(&SetDef::of_set(set), None)?);
        if with_elements {
            s.elements = Some(sorted(encode::set_elements(set)?));
        }
        image.sets.push(s);
    }
    for chain in &rs.chains {
        let mut c = ChainImage::of(&encode::chain(&ChainDef::of(chain))?);
        for rule in &chain.rules {
            c.rules
                .push(rule_text(&expr::rule(&chain.name, rule, &|_: &str| None)?));
        }
        image.chains.push(c);
    }
    Ok(image)
}

/// Elements in a fixed order (the kernel dumps hash and tree order).
pub(super) fn sorted(mut v: Vec<KElem>) -> Vec<KElem> {
    v.sort();
    v
}

/// The first difference between what the kernel holds and what we expect.
pub(super) fn first_difference(kernel: &Image, expected: &Image) -> Option<String> {
    if kernel.table.is_none() {
        return Some("table inet kube-nftpolicy is missing".into());
    }
    if kernel.table != expected.table {
        return Some("the table's flags or comment differ".into());
    }
    let names = |v: &[SetImage]| v.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if names(&kernel.sets) != names(&expected.sets) {
        return Some(format!(
            "sets differ: kernel has {:?}, expected {:?}",
            names(&kernel.sets),
            names(&expected.sets)
        ));
    }
    for (k, e) in kernel.sets.iter().zip(&expected.sets) {
        if k.attrs != e.attrs || k.udata != e.udata {
            return Some(format!("set {}: definition differs", k.name));
        }
        if k.elements != e.elements {
            return Some(format!("set {}: elements differ", k.name));
        }
    }
    let names = |v: &[ChainImage]| v.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    if names(&kernel.chains) != names(&expected.chains) {
        return Some(format!(
            "chains differ: kernel has {:?}, expected {:?}",
            names(&kernel.chains),
            names(&expected.chains)
        ));
    }
    for (k, e) in kernel.chains.iter().zip(&expected.chains) {
        if k.attrs != e.attrs || k.kind != e.kind || k.udata != e.udata {
            return Some(format!("chain {}: definition differs", k.name));
        }
        if k.rules != e.rules {
            let i = k
                .rules
                .iter()
                .zip(&e.rules)
                .take_while(|(a, b)| a == b)
                .count();
            return Some(format!("chain {}: rule {} differs", k.name, i + 1));
        }
    }
    None
}
