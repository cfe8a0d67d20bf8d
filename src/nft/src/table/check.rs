//! Whether the kernel takes one op, given the table as the ops before it
//! left it: the errno and reason when it does not. Checks only; the change
//! itself is `mod.rs`'s and `elements.rs`'s `exec`.

use libc::{EBUSY, EEXIST, EINVAL, ENOENT, EOPNOTSUPP};

use super::{refs, ChainMeta, KernelTable, Ref, Rejected, Slot, State};
use crate::transaction::Op;

/// A refusal of `op`.
pub(super) fn refuse(op: &Op, errno: i32, why: impl Into<String>) -> Rejected {
    refuse_object(op.to_string(), errno, why)
}

/// A refusal naming `object` (one element of a long element op).
pub(super) fn refuse_object(object: String, errno: i32, why: impl Into<String>) -> Rejected {
    Rejected {
        op: 0,
        object,
        errno,
        why: why.into(),
    }
}

impl KernelTable {
    /// Whether the kernel takes `op` now.
    pub(super) fn check(&self, op: &Op) -> Result<(), Rejected> {
        match (op, self.table.as_deref()) {
            (Op::AddTable { .. }, _) => Ok(()),
            (_, None) => Err(refuse(op, ENOENT, "the table does not exist")),
            (Op::DeleteTable, Some(_)) => Ok(()),
            (_, Some(t)) => t.check(op),
        }
    }
}

impl State {
    fn chain(&self, op: &Op, name: &str) -> Result<&ChainMeta, Rejected> {
        self.chains
            .get(name)
            .ok_or_else(|| refuse(op, ENOENT, format!("chain {name} does not exist")))
    }

    fn check(&self, op: &Op) -> Result<(), Rejected> {
        match op {
            Op::AddTable { .. } | Op::DeleteTable => Ok(()),
            Op::AddChain(def) if self.chains.contains_key(&def.name) => {
                Err(refuse(op, EEXIST, format!("chain {} exists", def.name)))
            }
            Op::AddChain(_) => Ok(()),
            Op::DeleteChain { name } => {
                let meta = self.chain(op, name)?;
                let rules = self.rs.chains[meta.idx].rules.len();
                if rules > 0 {
                    return Err(refuse(op, EBUSY, format!("chain {name} has {rules} rules")));
                }
                if meta.uses > 0 {
                    let why = format!("chain {name} is referenced {} times", meta.uses);
                    return Err(refuse(op, EBUSY, why));
                }
                Ok(())
            }
            Op::FlushChain { name } => self.chain(op, name).map(drop),
            Op::FlushRules => Ok(()),
            Op::FlushSet { name } if !self.sets.contains_key(name) => {
                Err(refuse(op, ENOENT, format!("set {name} does not exist")))
            }
            Op::FlushSet { .. } => Ok(()),
            Op::AddRule { chain, rule } => {
                self.chain(op, chain)?;
                refs(rule).try_for_each(|r| self.check_ref(op, r))
            }
            Op::AddSet(def) if self.sets.contains_key(&def.name) => {
                Err(refuse(op, EEXIST, format!("set {} exists", def.name)))
            }
            Op::AddSet(_) => Ok(()),
            Op::DeleteSet { name } => match self.sets.get(name) {
                None => Err(refuse(op, ENOENT, format!("set {name} does not exist"))),
                Some(m) if m.uses > 0 => {
                    let why = format!("set {name} is used by {} rules", m.uses);
                    Err(refuse(op, EBUSY, why))
                }
                Some(_) => Ok(()),
            },
            Op::AddElements { .. } | Op::DeleteElements { .. } => self.check_elements(op),
        }
    }

    /// Whether a rule may point at `r`.
    fn check_ref(&self, op: &Op, r: Ref<'_>) -> Result<(), Rejected> {
        match r {
            Ref::Set(name) | Ref::Map(name) => {
                let Some(meta) = self.sets.get(name) else {
                    return Err(refuse(op, ENOENT, format!("set {name} does not exist")));
                };
                if matches!(r, Ref::Map(_)) && !matches!(meta.slot, Slot::Map(_)) {
                    return Err(refuse(op, EINVAL, format!("{name} is not a map")));
                }
                Ok(())
            }
            Ref::Chain(name) => self.check_target(op, name),
        }
    }

    /// Whether a `jump` or `goto` may lead to chain `name`.
    pub(super) fn check_target(&self, op: &Op, name: &str) -> Result<(), Rejected> {
        if self.chain(op, name)?.base {
            let why = format!("chain {name} is a base chain");
            return Err(refuse(op, EOPNOTSUPP, why));
        }
        Ok(())
    }
}
