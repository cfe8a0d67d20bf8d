//! Turns a transaction into one netlink batch: begin, one message per op
//! (set elements split into messages under 64 KiB), end; and remembers, per
//! sequence number, which op each message came from, so that a message the
//! kernel rejects can be named. The one place that maps ops to libnftnl
//! objects (through `encode.rs` and `expr.rs`).
//!
//! Only the last object message asks for an ACK: the kernel reports every
//! failing message anyway, and one ACK per message would overflow the
//! receive buffer of a large batch.

use std::collections::HashMap;

use nftnl::nftnl_sys as sys;

use super::encode::{self, EncodeError, KElem};
use super::expr;
use super::ffi::{self, MsgBuf};
use super::nlmsg;
use super::transaction::{Elements, Op, SetKind, Transaction};
use nftpolicy_core::ruleset::TABLE_NAME;

const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
const CREATE: u16 = libc::NLM_F_CREATE as u16;
const EXCL: u16 = libc::NLM_F_EXCL as u16;
const APPEND: u16 = libc::NLM_F_APPEND as u16;
/// Keep element lists well below the 64 KiB limit of a netlink attribute.
const ELEMS_PER_MSG_BYTES: usize = 48 * 1024;

fn msg(t: i32) -> u16 {
    t as u16
}

/// Where one message came from. Its text is made only when the kernel
/// rejects the message: an apply that succeeds formats nothing.
#[derive(Debug, Clone, Copy)]
struct Label {
    /// Index of the op in the transaction.
    op: usize,
    /// Elements: the index of the message's first kernel element.
    first: usize,
    /// Byte offset of the message in the buffer.
    start: usize,
}

/// One encoded batch, and the transaction it encodes (to name a rejected
/// message).
pub(super) struct Batch<'a> {
    /// The messages, back to back.
    pub buf: MsgBuf,
    /// Sequence number of the batch-begin message.
    pub begin: u32,
    /// Sequence number of the last object message (the one with an ACK).
    pub last: u32,
    ops: &'a [Op],
    labels: Vec<Label>,
}

impl Batch<'_> {
    /// Number of object messages (begin and end not counted).
    pub(super) fn messages(&self) -> usize {
        self.labels.len()
    }

    /// What the message with sequence number `seq` carried; with an
    /// extended-ACK `offset`, the element it points at.
    pub(super) fn describe(&self, seq: u32, offset: Option<u32>) -> String {
        if seq == self.begin {
            return "the batch".to_owned();
        }
        let index = seq.wrapping_sub(self.begin).wrapping_sub(1) as usize;
        let Some(label) = self.labels.get(index) else {
            return format!("message {seq} of the batch");
        };
        let op = &self.ops[label.op];
        let what = op_text(&self.ops[..=label.op]);
        let (Some(off), Op::AddElements { set, elements } | Op::DeleteElements { set, elements }) =
            (offset, op)
        else {
            return what;
        };
        let elems = encode::elements(set, elements).unwrap_or_default();
        let bytes = &self.buf.bytes()[label.start..];
        let len = nlmsg::messages(bytes).first().map_or(0, |m| m.bytes.len());
        element_offsets(&bytes[..len])
            .iter()
            .rposition(|o| *o <= off)
            .and_then(|i| elems.get(label.first + i))
            .map_or(what.clone(), |e| {
                format!("{what} (element {})", e.describe())
            })
    }
}

/// The text of a message made from the last of `ops` (the ones before it
/// count the rules of its chain).
fn op_text(ops: &[Op]) -> String {
    let Some(op) = ops.last() else {
        return String::new();
    };
    match op {
        Op::AddTable { .. } => "add table inet kube-nftpolicy".to_owned(),
        Op::AddRule { chain, rule } => {
            let n = ops
                .iter()
                .filter(|o| matches!(o, Op::AddRule { chain: c, .. } if c == chain))
                .count();
            format!("add rule {n} of chain {chain} ({rule})")
        }
        Op::AddSet(def) => format!("add {} {}", kind(def.kind), def.name),
        Op::AddElements { set, elements } => {
            format!("add elements of {} {set}", elements_kind(elements))
        }
        Op::DeleteElements { set, elements } => {
            format!("delete elements of {} {set}", elements_kind(elements))
        }
        other => other.to_string(),
    }
}

/// Encodes `tx` with sequence numbers from `*seq` on.
pub(super) fn build<'a>(tx: &'a Transaction, seq: &mut u32) -> Result<Batch<'a>, EncodeError> {
    let ops = &tx.ops[..];
    let mut b = Builder {
        buf: MsgBuf::default(),
        labels: Vec::new(),
        seq: *seq,
        begin: *seq,
        ids: HashMap::new(),
        last_start: None,
    };
    let begin = b.next_seq();
    b.buf.batch_begin(begin);
    for (i, op) in ops.iter().enumerate() {
        b.op(i, op)?;
    }
    let last = b.seq.wrapping_sub(1);
    if let Some(start) = b.last_start {
        b.buf.or_flags(start, NLM_F_ACK);
    }
    let end = b.next_seq();
    b.buf.batch_end(end);
    *seq = b.seq;
    Ok(Batch {
        buf: b.buf,
        begin: b.begin,
        last,
        ops,
        labels: b.labels,
    })
}

struct Builder {
    buf: MsgBuf,
    labels: Vec<Label>,
    seq: u32,
    begin: u32,
    /// Batch ids of the sets added by this batch.
    ids: HashMap<String, u32>,
    /// Byte offset of the last object message.
    last_start: Option<usize>,
}

impl Builder {
    fn next_seq(&mut self) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }

    /// Starts an object message: returns its sequence number and records
    /// where it came from (op `op`, first element `first`).
    fn start(&mut self, op: usize, first: usize) -> u32 {
        let start = self.buf.len();
        self.last_start = Some(start);
        self.labels.push(Label { op, first, start });
        self.next_seq()
    }

    fn op(&mut self, i: usize, op: &Op) -> Result<(), EncodeError> {
        use libc::*;
        match op {
            Op::AddTable { comment } => {
                let t = match comment {
                    None => encode::table_bare(),
                    Some(c) => encode::table(c)?,
                };
                let seq = self.start(i, 0);
                t.write(&mut self.buf, msg(NFT_MSG_NEWTABLE), CREATE, seq);
            }
            Op::DeleteTable => {
                let seq = self.start(i, 0);
                encode::table_bare().write(&mut self.buf, msg(NFT_MSG_DELTABLE), 0, seq);
            }
            Op::AddChain(c) => {
                let obj = encode::chain(c)?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_NEWCHAIN), CREATE | EXCL, seq);
            }
            Op::DeleteChain { name } => {
                let obj = encode::chain_ref(name)?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_DELCHAIN), 0, seq);
            }
            Op::FlushChain { name } => {
                let obj = expr::rule_ref(name)?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_DELRULE), 0, seq);
            }
            Op::FlushRules => {
                let mut r = ffi::Rule::new();
                r.set_u32(sys::NFTNL_RULE_FAMILY, u32::from(ffi::NFPROTO_INET));
                r.set_str(sys::NFTNL_RULE_TABLE, TABLE_NAME);
                let seq = self.start(i, 0);
                r.write(&mut self.buf, msg(NFT_MSG_DELRULE), 0, seq);
            }
            Op::FlushSet { name } => {
                // No element list: the kernel flushes the set.
                let obj = encode::set_ref(name, None)?;
                let seq = self.start(i, 0);
                obj.write_elems(&mut self.buf, msg(NFT_MSG_DELSETELEM), 0, seq);
            }
            Op::AddRule { chain, rule } => {
                let ids = &self.ids;
                let obj = expr::rule(chain, rule, &|s: &str| ids.get(s).copied())?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_NEWRULE), CREATE | APPEND, seq);
            }
            Op::AddSet(def) => {
                let id = self.ids.len() as u32 + 1;
                self.ids.insert(def.name.clone(), id);
                let obj = encode::set(def, Some(id))?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_NEWSET), CREATE | EXCL, seq);
            }
            Op::DeleteSet { name } => {
                let obj = encode::set_ref(name, None)?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_DELSET), 0, seq);
            }
            Op::AddElements { set, elements } => {
                self.elems(i, set, &encode::elements(set, elements)?, true)?
            }
            Op::DeleteElements { set, elements } => {
                self.elems(i, set, &encode::elements(set, elements)?, false)?
            }
        }
        Ok(())
    }

    /// Element messages, each under `ELEMS_PER_MSG_BYTES`.
    fn elems(
        &mut self,
        i: usize,
        name: &str,
        elems: &[KElem],
        add: bool,
    ) -> Result<(), EncodeError> {
        let (ty, flags) = if add {
            (msg(libc::NFT_MSG_NEWSETELEM), CREATE | EXCL)
        } else {
            (msg(libc::NFT_MSG_DELSETELEM), 0)
        };
        let mut first = 0;
        while first < elems.len() {
            let mut size = 0;
            let n = elems[first..]
                .iter()
                .take_while(|e| {
                    size += e.wire_size();
                    size <= ELEMS_PER_MSG_BYTES
                })
                .count()
                .max(1);
            let mut set = encode::set_ref(name, self.ids.get(name).copied())?;
            for e in &elems[first..first + n] {
                set.add_elem(e.to_ffi(add));
            }
            let seq = self.start(i, first);
            set.write_elems(&mut self.buf, ty, flags, seq);
            first += n;
        }
        Ok(())
    }
}

fn kind(kind: SetKind) -> &'static str {
    match kind {
        SetKind::Map => "map",
        SetKind::Plain | SetKind::Interval => "set",
    }
}

fn elements_kind(e: &Elements) -> &'static str {
    match e {
        Elements::Map(_) => "map",
        Elements::Plain(_) | Elements::Interval { .. } => "set",
    }
}

/// Offsets (from the message start) of each element attribute of an
/// element message.
fn element_offsets(msg: &[u8]) -> Vec<u32> {
    const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
    let base = nlmsg::HDR_LEN + nlmsg::NFGEN_LEN;
    let top = nlmsg::attrs_at(msg.get(base..).unwrap_or(&[]), base);
    top.iter()
        .find(|(_, ty, _)| *ty == NFTA_SET_ELEM_LIST_ELEMENTS)
        .map(|(off, _, payload)| {
            nlmsg::attrs_at(payload, off + 4)
                .into_iter()
                .map(|(o, _, _)| o as u32)
                .collect()
        })
        .unwrap_or_default()
}
