//! Turns a plan into one netlink batch: begin, one message per object (set
//! elements split into messages under 64 KiB), end; and remembers, per
//! sequence number, what each message carried, so that a message the
//! kernel rejects can be named.
//!
//! Only the last object message asks for an ACK: the kernel reports every
//! failing message anyway, and one ACK per message would overflow the
//! receive buffer of a large batch.

use std::collections::HashMap;

use super::diff::{is_map, Op};
use super::encode::{self, EncodeError, KElem, SetMeta};
use super::expr;
use super::ffi::MsgBuf;
use super::nlmsg;

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
    /// Index of the op in the plan.
    op: usize,
    /// Rules: the rule's index in its chain; elements: the index of the
    /// message's first element.
    first: usize,
    /// Byte offset of the message in the buffer.
    start: usize,
}

/// One encoded batch, and the plan it encodes (to name a rejected message).
pub(super) struct Batch<'a> {
    /// The messages, back to back.
    pub buf: MsgBuf,
    /// Sequence number of the batch-begin message.
    pub begin: u32,
    /// Sequence number of the last object message (the one with an ACK).
    pub last: u32,
    ops: &'a [Op<'a>],
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
        let what = op_text(op, label.first);
        let (Some(off), Op::AddElems(_, elems) | Op::DelElems(_, elems)) = (offset, op) else {
            return what;
        };
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

/// The text of a message made from `op` (`first`: see `Label`).
fn op_text(op: &Op<'_>, first: usize) -> String {
    match op {
        Op::AddTable { .. } => "add table inet kube-nftpolicy".to_owned(),
        Op::DelTable => "delete table inet kube-nftpolicy".to_owned(),
        Op::AddChain(c) => format!("add chain {}", c.name),
        Op::DelChain(name) => format!("delete chain {name}"),
        Op::Flush(name) => format!("flush chain {name}"),
        Op::AddRules(c) => match c.rules.get(first) {
            Some(rule) => format!("add rule {} of chain {} ({rule})", first + 1, c.name),
            None => format!("add rule {} of chain {}", first + 1, c.name),
        },
        Op::AddSet(meta) => format!("add {} {}", kind(meta), meta.name),
        Op::DelSet(name) => format!("delete set {name}"),
        Op::AddElems(meta, _) => format!("add elements of {} {}", kind(meta), meta.name),
        Op::DelElems(meta, _) => format!("delete elements of {} {}", kind(meta), meta.name),
    }
}

/// Encodes `ops` with sequence numbers from `*seq` on.
pub(super) fn build<'a>(ops: &'a [Op<'a>], seq: &mut u32) -> Result<Batch<'a>, EncodeError> {
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
    /// where it came from (op `op`, rule or first element `first`).
    fn start(&mut self, op: usize, first: usize) -> u32 {
        let start = self.buf.len();
        self.last_start = Some(start);
        self.labels.push(Label { op, first, start });
        self.next_seq()
    }

    fn op(&mut self, i: usize, op: &Op<'_>) -> Result<(), EncodeError> {
        use libc::*;
        match op {
            Op::AddTable { bare } => {
                let t = if *bare {
                    encode::table_bare()
                } else {
                    encode::table()
                };
                let seq = self.start(i, 0);
                t.write(&mut self.buf, msg(NFT_MSG_NEWTABLE), CREATE, seq);
            }
            Op::DelTable => {
                let seq = self.start(i, 0);
                encode::table_bare().write(&mut self.buf, msg(NFT_MSG_DELTABLE), 0, seq);
            }
            Op::AddChain(c) => {
                let obj = encode::chain(c)?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_NEWCHAIN), CREATE | EXCL, seq);
            }
            Op::DelChain(name) => {
                let obj = encode::chain_ref(name)?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_DELCHAIN), 0, seq);
            }
            Op::Flush(name) => {
                let obj = expr::rule_ref(name)?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_DELRULE), 0, seq);
            }
            Op::AddRules(c) => {
                for (r, rule) in c.rules.iter().enumerate() {
                    let ids = &self.ids;
                    let obj = expr::rule(&c.name, rule, &|s: &str| ids.get(s).copied())?;
                    let seq = self.start(i, r);
                    obj.write(&mut self.buf, msg(NFT_MSG_NEWRULE), CREATE | APPEND, seq);
                }
            }
            Op::AddSet(meta) => {
                let id = self.ids.len() as u32 + 1;
                self.ids.insert(meta.name.clone(), id);
                let obj = encode::set(meta, Some(id))?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_NEWSET), CREATE | EXCL, seq);
            }
            Op::DelSet(name) => {
                let obj = encode::set_ref(name, None)?;
                let seq = self.start(i, 0);
                obj.write(&mut self.buf, msg(NFT_MSG_DELSET), 0, seq);
            }
            Op::AddElems(meta, elems) => self.elems(i, meta, elems, true)?,
            Op::DelElems(meta, elems) => self.elems(i, meta, elems, false)?,
        }
        Ok(())
    }

    /// Element messages, each under `ELEMS_PER_MSG_BYTES`.
    fn elems(
        &mut self,
        i: usize,
        meta: &SetMeta,
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
            let mut set = encode::set_ref(&meta.name, self.ids.get(&meta.name).copied())?;
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

fn kind(meta: &SetMeta) -> &'static str {
    if is_map(meta) {
        "map"
    } else {
        "set"
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
