//! All or nothing: what each applied op of a transaction changed, so that a
//! later op the kernel refuses takes the table back to where the
//! transaction found it. Once the table itself was replaced (deleted or
//! created), the snapshot taken then is enough and nothing more is logged.

use std::net::IpAddr;

use super::elements::{put_back, remove_keys};
use super::{KernelTable, Slot, State};
use nftpolicy_core::ruleset::{AddrSet, Chain, MapElement, Rule, SetElement, VerdictMap};

/// The undo log of one transaction.
#[derive(Debug, Default)]
pub(super) struct Log {
    undo: Vec<Undo>,
    /// A snapshot of the whole table is in the log.
    whole: bool,
}

/// How to take back one change.
#[derive(Debug)]
pub(super) enum Undo {
    /// The table before it was deleted or created.
    Table(Option<Box<State>>),
    /// The last chain was added.
    ChainAdded,
    /// A chain was deleted from this position.
    ChainDeleted(usize, Chain),
    /// A chain was flushed: its rules.
    Flushed(String, Vec<Rule>),
    /// A rule was appended to a chain.
    RuleAdded(String),
    /// The last map or set was added.
    SetAdded(Slot),
    /// A map or set was deleted from this position (with its zero end).
    SetDeleted(Slot, Body, bool),
    /// Elements were added to a set or map: their first addresses (and the
    /// zero end).
    Added(String, Vec<IpAddr>, bool),
    /// Elements were deleted (and the zero end).
    Deleted(String, Removed, bool),
}

/// A deleted map or set.
#[derive(Debug)]
pub(super) enum Body {
    Map(VerdictMap),
    Set(AddrSet),
}

/// Deleted elements.
#[derive(Debug)]
pub(super) enum Removed {
    Map(Vec<MapElement>),
    Set(Vec<SetElement>),
}

impl Log {
    /// Records `u`, unless a snapshot of the whole table already covers it.
    pub(super) fn push(&mut self, u: Undo) {
        if self.whole {
            return;
        }
        self.whole = matches!(u, Undo::Table(_));
        self.undo.push(u);
    }
}

impl KernelTable {
    /// Takes back every change in `log`, newest first.
    pub(super) fn rollback(&mut self, log: Log) {
        for u in log.undo.into_iter().rev() {
            match (u, self.table.as_deref_mut()) {
                (Undo::Table(t), _) => self.table = t,
                (u, Some(t)) => t.undo(u),
                (_, None) => {}
            }
        }
        if let Some(t) = self.table.as_deref_mut() {
            t.reindex();
        }
    }
}

impl State {
    /// Puts deleted elements (and the zero end) back into `set`.
    fn put_back(&mut self, set: String, removed: Removed, zero: bool) {
        let rs = &mut self.rs;
        match removed {
            Removed::Map(v) => {
                if let Some(m) = rs.maps.iter_mut().find(|m| m.name == set) {
                    put_back(&mut m.elements, v);
                }
            }
            Removed::Set(v) => {
                if let Some(s) = rs.sets.iter_mut().find(|s| s.name == set) {
                    s.elements.insert_sorted(v);
                }
            }
        }
        if zero {
            self.zero_end.insert(set);
        }
    }

    /// Takes back one change. The name indexes may be stale here (they are
    /// rebuilt after the rollback): objects are found by name.
    fn undo(&mut self, u: Undo) {
        let rs = &mut self.rs;
        match u {
            Undo::Table(_) => {}
            Undo::ChainAdded => {
                rs.chains.pop();
            }
            Undo::ChainDeleted(i, chain) => rs.chains.insert(i, chain),
            Undo::Flushed(name, rules) => {
                if let Some(c) = rs.chains.iter_mut().find(|c| c.name == name) {
                    c.rules = rules;
                }
            }
            Undo::RuleAdded(name) => {
                if let Some(c) = rs.chains.iter_mut().find(|c| c.name == name) {
                    c.rules.pop();
                }
            }
            Undo::SetAdded(Slot::Map(_)) => {
                rs.maps.pop();
            }
            Undo::SetAdded(Slot::Set(_)) => {
                rs.sets.pop();
            }
            Undo::SetDeleted(slot, body, zero) => {
                let name = match (slot, body) {
                    (Slot::Map(i), Body::Map(m)) => {
                        let name = m.name.clone();
                        rs.maps.insert(i, m);
                        name
                    }
                    (Slot::Set(i), Body::Set(s)) => {
                        let name = s.name.clone();
                        rs.sets.insert(i, s);
                        name
                    }
                    _ => return,
                };
                if zero {
                    self.zero_end.insert(name);
                }
            }
            Undo::Added(set, keys, zero) => {
                if let Some(m) = rs.maps.iter_mut().find(|m| m.name == set) {
                    remove_keys(&mut m.elements, keys);
                } else if let Some(s) = rs.sets.iter_mut().find(|s| s.name == set) {
                    s.elements.remove_keys(keys);
                }
                if zero {
                    self.zero_end.remove(&set);
                }
            }
            Undo::Deleted(set, removed, zero) => self.put_back(set, removed, zero),
        }
    }
}
