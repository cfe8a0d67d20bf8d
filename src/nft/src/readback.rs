//! Reading our table back from the kernel: does it exist, and what does it
//! hold (chains, sets and rules; elements only when asked, they are the
//! expensive part). Also a raw listing of every attribute the kernel reports,
//! for tests that prove two tables identical down to the bytecode.

use std::collections::HashMap;
use std::fmt::Write;
use std::io;

use nftnl::nftnl_sys as sys;

use super::conn::Conn;
use super::encode;
use super::ffi::{self, MsgBuf};
use super::image::{self, ChainImage, Image, SetImage};
use super::nlmsg::{self, Msg};
use super::ApplyError;
use nftpolicy_core::ruleset::TABLE_NAME;

const ACK: u16 = libc::NLM_F_ACK as u16;
const DUMP: u16 = (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16;

fn ty(t: i32) -> u16 {
    t as u16
}

/// Our table's NEWTABLE message, or `None` when it does not exist.
fn table_msg(conn: &mut Conn) -> io::Result<Option<Vec<u8>>> {
    let res = conn.request(false, |buf, seq| {
        encode::table_bare().write(buf, ty(libc::NFT_MSG_GETTABLE), ACK, seq)
    });
    match res {
        Ok(mut msgs) => Ok(msgs.pop()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn table_filter() -> ffi::Set {
    let mut s = ffi::Set::new();
    s.set_str(sys::NFTNL_SET_TABLE, TABLE_NAME);
    s
}

fn dump_sets(conn: &mut Conn) -> io::Result<Vec<Vec<u8>>> {
    conn.request(true, |buf, seq| {
        table_filter().write(buf, ty(libc::NFT_MSG_GETSET), DUMP, seq)
    })
}

fn dump_elems(conn: &mut Conn, set: &str) -> io::Result<Vec<Vec<u8>>> {
    let mut s = table_filter();
    s.set_str(sys::NFTNL_SET_NAME, set);
    conn.request(true, |buf: &mut MsgBuf, seq| {
        s.write_elems(buf, ty(libc::NFT_MSG_GETSETELEM), DUMP, seq)
    })
}

fn dump_chains(conn: &mut Conn) -> io::Result<Vec<Vec<u8>>> {
    conn.request(true, |buf, seq| {
        let mut c = ffi::Chain::new();
        c.set_str(sys::NFTNL_CHAIN_TABLE, TABLE_NAME);
        c.write(buf, ty(libc::NFT_MSG_GETCHAIN), DUMP, seq)
    })
}

fn dump_rules(conn: &mut Conn) -> io::Result<Vec<Vec<u8>>> {
    conn.request(true, |buf, seq| {
        let mut r = ffi::Rule::new();
        r.set_str(sys::NFTNL_RULE_TABLE, TABLE_NAME);
        r.write(buf, ty(libc::NFT_MSG_GETRULE), DUMP, seq)
    })
}

/// What the kernel holds in our table (elements only if `with_elements`).
pub(super) fn image(conn: &mut Conn, with_elements: bool) -> io::Result<Image> {
    read(conn, with_elements, true)
}

/// Our table's definitions only: the table, its sets and maps, its chains,
/// without elements and rules (all a full replace in place needs).
pub(super) fn definitions(conn: &mut Conn) -> io::Result<Image> {
    read(conn, false, false)
}

fn read(conn: &mut Conn, with_elements: bool, with_rules: bool) -> io::Result<Image> {
    let Some(table) = table_msg(conn)?.and_then(|m| ffi::Table::parse(&m)) else {
        return Ok(Image::default());
    };
    let mut img = Image {
        table: Some(image::table_image(&table)),
        ..Image::default()
    };
    let ours = |t: Option<String>| t.as_deref() == Some(TABLE_NAME);
    for m in dump_sets(conn)? {
        let Some(s) = ffi::Set::parse(&m).filter(|s| ours(s.get_str(sys::NFTNL_SET_TABLE))) else {
            continue;
        };
        let mut si = SetImage::of(&s);
        if with_elements {
            let mut holder = table_filter();
            for em in dump_elems(conn, &si.name)? {
                holder.parse_elems(&em);
            }
            let mut elems = Vec::new();
            holder.for_each_elem(|e| elems.push(image::kelem(e)));
            si.elements = Some(image::sorted(elems));
        }
        img.sets.push(si);
    }
    for m in dump_chains(conn)? {
        if let Some(c) = ffi::Chain::parse(&m).filter(|c| ours(c.get_str(sys::NFTNL_CHAIN_TABLE))) {
            img.chains.push(ChainImage::of(&c));
        }
    }
    if !with_rules {
        return Ok(img);
    }
    let index: HashMap<String, usize> = img
        .chains
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    for m in dump_rules(conn)? {
        let Some(r) = ffi::Rule::parse(&m).filter(|r| ours(r.get_str(sys::NFTNL_RULE_TABLE)))
        else {
            continue;
        };
        let chain = r.get_str(sys::NFTNL_RULE_CHAIN).unwrap_or_default();
        if let Some(&i) = index.get(&chain) {
            img.chains[i].rules.push(image::rule_text(&r));
        }
    }
    Ok(img)
}

/// Every attribute the kernel reports for our table, one object per line,
/// without what differs between two equal tables (handles, use counts,
/// positions); elements sorted. Empty when the table does not exist.
pub fn kernel_listing(netns: Option<&str>) -> Result<String, ApplyError> {
    let mut conn = Conn::open(netns)?;
    listing(&mut conn).map_err(|source| ApplyError::Io {
        context: "reading the table back",
        source,
    })
}

fn listing(conn: &mut Conn) -> io::Result<String> {
    let mut out = String::new();
    let Some(table) = table_msg(conn)? else {
        return Ok(out);
    };
    // Attribute numbers from linux/netfilter/nf_tables.h.
    const TABLE_SKIP: &[u16] = &[3, 4, 5]; // use, handle, pad
    const SET_SKIP: &[u16] = &[10, 14, 16]; // id, pad, handle
    const CHAIN_SKIP: &[u16] = &[2, 6, 8, 9, 11]; // handle, use, counters, pad, id
    const RULE_SKIP: &[u16] = &[3, 6, 8, 9]; // handle, position, pad, id
    line(&mut out, "table", &table, TABLE_SKIP);
    let ours = |m: &[u8]| attr_str(m, 1) == TABLE_NAME;
    for m in dump_sets(conn)?.into_iter().filter(|m| ours(m)) {
        line(&mut out, "set", &m, SET_SKIP);
        let name = attr_str(&m, 2);
        let mut elems: Vec<String> = Vec::new();
        for em in dump_elems(conn, &name)? {
            let msg = msg_of(&em);
            for (t, payload) in nlmsg::nft_attrs(&msg) {
                if t == 3 {
                    elems.extend(nlmsg::attrs(payload).iter().map(|(_, e)| image::hex(e)));
                }
            }
        }
        elems.sort();
        for e in elems {
            let _ = writeln!(out, "\telement {e}");
        }
    }
    for m in dump_chains(conn)?.into_iter().filter(|m| ours(m)) {
        line(&mut out, "chain", &m, CHAIN_SKIP);
    }
    for m in dump_rules(conn)?.into_iter().filter(|m| ours(m)) {
        line(&mut out, "rule", &m, RULE_SKIP);
    }
    Ok(out)
}

fn msg_of(bytes: &[u8]) -> Msg<'_> {
    nlmsg::messages(bytes).into_iter().next().unwrap_or(Msg {
        ty: 0,
        flags: 0,
        seq: 0,
        bytes,
    })
}

fn attr_str(m: &[u8], attr: u16) -> String {
    nlmsg::nft_attrs(&msg_of(m))
        .into_iter()
        .find(|(t, _)| *t == attr)
        .map(|(_, p)| ffi::c_bytes_to_string(p))
        .unwrap_or_default()
}

fn line(out: &mut String, kind: &str, m: &[u8], skip: &[u16]) {
    let msg = msg_of(m);
    let _ = write!(out, "{kind}");
    for (t, payload) in nlmsg::nft_attrs(&msg) {
        if !skip.contains(&t) {
            let _ = write!(out, " {t}={}", image::hex(payload));
        }
    }
    out.push('\n');
}
