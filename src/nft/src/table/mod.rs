//! `KernelTable`: our table as the kernel holds it, and how a transaction
//! changes it, by the kernel's rules. It owns no policy and knows nothing of
//! the planner: it only interprets ops.
//!
//! The table is the model's objects in kernel order (sets, maps and chains
//! in the order they were added; elements sorted, as `nft list` prints
//! them; rules in chain order), plus what the kernel tracks and `Ruleset`
//! cannot say: which interval sets hold nft's zero end element, and how
//! many references each chain and set has. `commit` applies a transaction
//! all or nothing, with the kernel's errors:
//!
//! - adding a chain, set or element that exists: `EEXIST` (we send them
//!   with `NLM_F_EXCL`); an interval that overlaps one held: `EEXIST`;
//! - deleting, flushing or filling a missing table, chain, set or element,
//!   or a rule naming a missing set, map or chain: `ENOENT`;
//! - deleting a chain that has rules or is referenced (`jump`, map `goto`),
//!   or a set or map a rule references: `EBUSY`;
//! - elements of the wrong kind or family: `EINVAL`; a `jump` or `goto` to
//!   a base chain: `EOPNOTSUPP`.
//!
//! The fake dataplane is one of these; the netlink dataplane keeps one as
//! its picture of the kernel, applying each batch the kernel accepted.

mod check;
mod elements;
mod undo;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::transaction::{Op, SetKind, Transaction};
use super::ApplyError;
use nftpolicy_core::ruleset::{AddrSet, Chain, Elements, Rule, Ruleset, Verdict, VerdictMap};
use undo::{Log, Undo};

/// Our table in the kernel, or its absence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KernelTable {
    table: Option<Box<State>>,
}

/// A transaction the kernel would refuse: nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// The index of the refused op in the transaction.
    pub op: usize,
    /// What the refused op (or element) is, in nft's words.
    pub object: String,
    /// The kernel's errno.
    pub errno: i32,
    /// Why.
    pub why: String,
}

impl From<Rejected> for ApplyError {
    fn from(r: Rejected) -> Self {
        ApplyError::Rejected {
            object: r.object,
            errno: r.errno,
            detail: Some(r.why),
            others: 0,
        }
    }
}

/// The table that exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    /// The table's comment.
    comment: Option<String>,
    /// Maps, sets and chains in kernel order.
    rs: Ruleset,
    /// Interval sets that hold the end element at address zero.
    zero_end: HashSet<String>,
    /// Set and map names: where they are, how many rules use them.
    sets: HashMap<String, SetMeta>,
    /// Chain names: where they are, how many references they have.
    chains: HashMap<String, ChainMeta>,
}

/// Where a set or map is, and how many rules reference it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SetMeta {
    slot: Slot,
    uses: u32,
}

/// An index into `Ruleset::maps` or `Ruleset::sets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Map(usize),
    Set(usize),
}

/// Where a chain is, whether it is a base chain, and how many `jump` rules
/// and map `goto`s point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChainMeta {
    idx: usize,
    base: bool,
    uses: u32,
}

/// Something a rule points at.
enum Ref<'a> {
    Set(&'a str),
    Map(&'a str),
    Chain(&'a str),
}

/// What `rule` references: the sets it looks up, the map it dispatches
/// through, the chain it jumps to. The one place that knows which matches
/// and verdicts name other objects.
fn refs(rule: &Rule) -> impl Iterator<Item = Ref<'_>> {
    let sets = rule.matches.iter().filter_map(|m| m.set().map(Ref::Set));
    let verdict = match &rule.verdict {
        Verdict::Jump(chain) => Some(Ref::Chain(chain)),
        Verdict::Dispatch { map, .. } => Some(Ref::Map(map)),
        Verdict::Accept | Verdict::Drop | Verdict::Reject(_) => None,
    };
    sets.chain(verdict)
}

impl KernelTable {
    /// A table as read back from the kernel, without its rules and
    /// elements: its comment, its chains, maps and sets in kernel order.
    /// Enough to interpret a batch that empties every chain and set it
    /// keeps (a full replace in place) and deletes the others.
    pub(crate) fn read_back(
        comment: Option<String>,
        chains: Vec<super::transaction::ChainDef>,
        sets: Vec<super::transaction::SetDef>,
    ) -> Self {
        let mut state = State {
            comment,
            ..State::default()
        };
        for def in chains {
            state.rs.chains.push(Chain {
                name: def.name,
                base: def.base,
                comment: def.comment,
                rules: Vec::new(),
            });
        }
        for def in sets {
            match def.kind {
                SetKind::Map => state.rs.maps.push(VerdictMap {
                    name: def.name,
                    family: def.family,
                    comment: def.comment,
                    elements: Vec::new(),
                }),
                SetKind::Plain | SetKind::Interval => state.rs.sets.push(AddrSet {
                    name: def.name,
                    family: def.family,
                    interval: def.kind == SetKind::Interval,
                    comment: def.comment,
                    elements: Elements::default(),
                }),
            }
        }
        state.reindex();
        Self {
            table: Some(Box::new(state)),
        }
    }

    /// Gives each set whose elements are those of the set of the same name
    /// in `desired` (the ruleset the last batch put in) `desired`'s shared
    /// chunks: the next plan passes the chunks that the next build keeps
    /// by address, and compares only those it changed. Changes nothing the
    /// table holds. The comparison itself passes the chunks the two share
    /// at either end by address: a set the batch left alone is shared
    /// already, and one it changed differs in the chunks it touched.
    pub(crate) fn share_elements(&mut self, desired: &Ruleset) {
        let Some(table) = self.table.as_mut() else {
            return;
        };
        for d in &desired.sets {
            let Some(SetMeta {
                slot: Slot::Set(i), ..
            }) = table.sets.get(&d.name)
            else {
                continue;
            };
            let set = &mut table.rs.sets[*i];
            // Most sets share every chunk already: nothing to copy.
            if !set.elements.shares_all(&d.elements) && set.elements == d.elements {
                set.elements = d.elements.clone();
            }
        }
    }

    /// What the table holds, in kernel order; `None` when it does not exist.
    pub(crate) fn ruleset(&self) -> Option<&Ruleset> {
        self.table.as_ref().map(|t| &t.rs)
    }

    /// Whether interval set `set` holds nft's end element at address zero.
    pub(crate) fn has_zero_end(&self, set: &str) -> bool {
        self.table
            .as_ref()
            .is_some_and(|t| t.zero_end.contains(set))
    }

    /// Applies `tx` as the kernel would: every op, or (on the first op the
    /// kernel would refuse) none.
    pub(crate) fn commit(&mut self, tx: Transaction) -> Result<(), Rejected> {
        let mut log = Log::default();
        for (i, op) in tx.ops.into_iter().enumerate() {
            if let Err(mut e) = self.check(&op) {
                e.op = i;
                self.rollback(log);
                return Err(e);
            }
            self.exec(op, &mut log);
        }
        Ok(())
    }

    /// Makes one op that `check` accepted.
    fn exec(&mut self, op: Op, log: &mut Log) {
        match op {
            Op::AddTable { comment } => {
                if self.table.is_none() {
                    log.push(Undo::Table(None));
                    self.table = Some(Box::new(State {
                        comment,
                        ..State::default()
                    }));
                }
            }
            Op::DeleteTable => {
                if let Some(t) = self.table.take() {
                    log.push(Undo::Table(Some(t)));
                }
            }
            op => {
                if let Some(t) = self.table.as_deref_mut() {
                    t.exec(op, log);
                }
            }
        }
    }
}

impl State {
    fn exec(&mut self, op: Op, log: &mut Log) {
        match op {
            Op::AddTable { .. } | Op::DeleteTable => {}
            Op::AddChain(def) => {
                let meta = ChainMeta {
                    idx: self.rs.chains.len(),
                    base: def.base.is_some(),
                    uses: 0,
                };
                self.chains.insert(def.name.clone(), meta);
                self.rs.chains.push(Chain {
                    name: def.name,
                    base: def.base,
                    comment: def.comment,
                    rules: Vec::new(),
                });
                log.push(Undo::ChainAdded);
            }
            Op::DeleteChain { name } => {
                let Some(meta) = self.chains.remove(&name) else {
                    return;
                };
                let chain = self.rs.chains.remove(meta.idx);
                for m in self.chains.values_mut().filter(|m| m.idx > meta.idx) {
                    m.idx -= 1;
                }
                log.push(Undo::ChainDeleted(meta.idx, chain));
            }
            Op::FlushChain { name } => {
                let Some(idx) = self.chains.get(&name).map(|m| m.idx) else {
                    return;
                };
                let rules = std::mem::take(&mut self.rs.chains[idx].rules);
                rules.iter().for_each(|r| self.count_refs(r, false));
                log.push(Undo::Flushed(name, rules));
            }
            Op::FlushRules => {
                for idx in 0..self.rs.chains.len() {
                    if self.rs.chains[idx].rules.is_empty() {
                        continue;
                    }
                    let rules = std::mem::take(&mut self.rs.chains[idx].rules);
                    rules.iter().for_each(|r| self.count_refs(r, false));
                    log.push(Undo::Flushed(self.rs.chains[idx].name.clone(), rules));
                }
            }
            Op::FlushSet { name } => self.flush_set(&name, log),
            Op::AddRule { chain, rule } => {
                let Some(idx) = self.chains.get(&chain).map(|m| m.idx) else {
                    return;
                };
                self.count_refs(&rule, true);
                self.rs.chains[idx].rules.push(rule);
                log.push(Undo::RuleAdded(chain));
            }
            Op::AddSet(def) => self.add_set(def, log),
            Op::DeleteSet { name } => self.delete_set(&name, log),
            Op::AddElements { set, elements } => self.add_elements(&set, elements, log),
            Op::DeleteElements { set, elements } => self.delete_elements(&set, &elements, log),
        }
    }

    fn add_set(&mut self, def: super::transaction::SetDef, log: &mut Log) {
        let slot = match def.kind {
            SetKind::Map => {
                self.rs.maps.push(VerdictMap {
                    name: def.name.clone(),
                    family: def.family,
                    comment: def.comment,
                    elements: Vec::new(),
                });
                Slot::Map(self.rs.maps.len() - 1)
            }
            SetKind::Plain | SetKind::Interval => {
                self.rs.sets.push(AddrSet {
                    name: def.name.clone(),
                    family: def.family,
                    interval: def.kind == SetKind::Interval,
                    comment: def.comment,
                    elements: Elements::default(),
                });
                Slot::Set(self.rs.sets.len() - 1)
            }
        };
        self.sets.insert(def.name, SetMeta { slot, uses: 0 });
        log.push(Undo::SetAdded(slot));
    }

    fn delete_set(&mut self, name: &str, log: &mut Log) {
        let Some(meta) = self.sets.remove(name) else {
            return;
        };
        let zero_end = self.zero_end.remove(name);
        let body = match meta.slot {
            Slot::Map(i) => {
                let map = self.rs.maps.remove(i);
                for e in &map.elements {
                    self.count_goto(&e.chain, false);
                }
                undo::Body::Map(map)
            }
            Slot::Set(i) => undo::Body::Set(self.rs.sets.remove(i)),
        };
        for m in self.sets.values_mut() {
            match (&mut m.slot, meta.slot) {
                (Slot::Map(j), Slot::Map(i)) | (Slot::Set(j), Slot::Set(i)) if *j > i => *j -= 1,
                _ => {}
            }
        }
        log.push(Undo::SetDeleted(meta.slot, body, zero_end));
    }

    /// Removes every element of a set or map (the set stays).
    fn flush_set(&mut self, name: &str, log: &mut Log) {
        let Some(meta) = self.sets.get(name).copied() else {
            return;
        };
        let zero = self.zero_end.remove(name);
        let removed = match meta.slot {
            Slot::Map(i) => {
                let elements = std::mem::take(&mut self.rs.maps[i].elements);
                for e in &elements {
                    self.count_goto(&e.chain, false);
                }
                undo::Removed::Map(elements)
            }
            Slot::Set(i) => {
                undo::Removed::Set(std::mem::take(&mut self.rs.sets[i].elements).to_vec())
            }
        };
        log.push(Undo::Deleted(name.to_owned(), removed, zero));
    }

    /// Counts (`up`) or uncounts the references of `rule`.
    fn count_refs(&mut self, rule: &Rule, up: bool) {
        for r in refs(rule) {
            let uses = match r {
                Ref::Set(n) | Ref::Map(n) => self.sets.get_mut(n).map(|m| &mut m.uses),
                Ref::Chain(n) => self.chains.get_mut(n).map(|m| &mut m.uses),
            };
            if let Some(u) = uses {
                *u = if up { *u + 1 } else { u.saturating_sub(1) };
            }
        }
    }

    /// Counts (`up`) or uncounts a map element's `goto chain`.
    fn count_goto(&mut self, chain: &str, up: bool) {
        if let Some(m) = self.chains.get_mut(chain) {
            m.uses = if up {
                m.uses + 1
            } else {
                m.uses.saturating_sub(1)
            };
        }
    }

    /// Rebuilds the indexes and reference counts from `rs` (after a
    /// rollback; and in tests, to check the counts kept along the way).
    fn reindex(&mut self) {
        self.sets.clear();
        self.chains.clear();
        for (i, m) in self.rs.maps.iter().enumerate() {
            let meta = SetMeta {
                slot: Slot::Map(i),
                uses: 0,
            };
            self.sets.insert(m.name.clone(), meta);
        }
        for (i, s) in self.rs.sets.iter().enumerate() {
            let meta = SetMeta {
                slot: Slot::Set(i),
                uses: 0,
            };
            self.sets.insert(s.name.clone(), meta);
        }
        for (idx, c) in self.rs.chains.iter().enumerate() {
            let base = c.base.is_some();
            let meta = ChainMeta { idx, base, uses: 0 };
            self.chains.insert(c.name.clone(), meta);
        }
        let rs = std::mem::take(&mut self.rs);
        for rule in rs.chains.iter().flat_map(|c| &c.rules) {
            self.count_refs(rule, true);
        }
        for e in rs.maps.iter().flat_map(|m| &m.elements) {
            self.count_goto(&e.chain, true);
        }
        self.rs = rs;
    }
}

#[cfg(test)]
impl KernelTable {
    /// The table's comment (`None` also when there is no table).
    pub(crate) fn comment(&self) -> Option<&str> {
        self.table.as_ref().and_then(|t| t.comment.as_deref())
    }

    /// Panics when the counts kept along the way differ from a recount.
    pub(crate) fn assert_counts(&self) {
        if let Some(t) = &self.table {
            let mut fresh = (**t).clone();
            fresh.reindex();
            assert_eq!(fresh, **t, "reference counts or indexes drifted");
        }
    }
}
