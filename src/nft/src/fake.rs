//! `FakeDataplane`: an in-memory dataplane for tests of code that drives a
//! dataplane (the sync loop), and for the planner's own tests. It plans and
//! encodes every batch as the netlink dataplane does (same reports), then,
//! instead of sending it, interprets the transaction on its own picture of
//! the kernel's table (`KernelTable`), with the kernel's rules and errors.
//! What it holds is what the ops made, never what the planner predicted: a
//! planner bug shows up as a refused batch or as content that differs from
//! the desired ruleset.

use std::time::Instant;

use super::batch;
use super::plan::{self, Plan};
use super::table::KernelTable;
use super::{ApplyError, ApplyKind, ApplyReport, Dataplane};
use nftpolicy_core::ruleset::Ruleset;

/// Records applies in memory; can be told to fail.
#[derive(Debug)]
pub struct FakeDataplane {
    /// Every ruleset passed to a successful `apply`, in order (empty when
    /// made with `without_history`).
    pub applied: Vec<Ruleset>,
    /// When set, the next apply fails with this (then it is cleared).
    pub fail_next: Option<ApplyError>,
    /// The kernel's table, as the committed transactions left it.
    kernel: KernelTable,
    /// Whether the dataplane trusts `kernel` (false before the first apply
    /// and after a failure: the next apply is a full replace).
    known: bool,
    seq: u32,
    /// Why the next apply is a full replace, when forced.
    forced: Option<String>,
    /// Whether `applied` records a copy of every ruleset.
    history: bool,
}

impl Default for FakeDataplane {
    fn default() -> Self {
        Self {
            applied: Vec::new(),
            fail_next: None,
            kernel: KernelTable::default(),
            known: false,
            seq: 0,
            forced: None,
            history: true,
        }
    }
}

impl FakeDataplane {
    /// An empty fake: the first apply is a full replace.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake that keeps no copy of each applied ruleset (`applied` stays
    /// empty): an apply then costs what the netlink dataplane's does minus
    /// the kernel (benches).
    pub fn without_history() -> Self {
        Self {
            history: false,
            ..Self::default()
        }
    }

    /// Makes the next apply fail as if the kernel rejected `object`.
    pub fn reject_next(&mut self, object: impl Into<String>) {
        self.fail_next = Some(ApplyError::Rejected {
            object: object.into(),
            errno: libc::EINVAL,
            detail: None,
            others: 0,
        });
    }

    /// What the fake kernel's table holds, known to the dataplane or not
    /// (after a failed apply `current()` is `None`, but the table is still
    /// there, as the failed batch left it: untouched). `None`: no table.
    pub fn kernel(&self) -> Option<&Ruleset> {
        self.kernel.ruleset()
    }

    /// Whether interval set `set` holds nft's end element at address zero.
    pub fn kernel_has_zero_end(&self, set: &str) -> bool {
        self.kernel.has_zero_end(set)
    }

    /// The fake kernel itself (tests of its bookkeeping).
    #[cfg(test)]
    pub(crate) fn kernel_table(&self) -> &KernelTable {
        &self.kernel
    }

    /// The plan of the next apply of `desired`, without applying it.
    pub fn plan(&self, desired: &Ruleset) -> Plan {
        let mut forced = self.forced.clone();
        plan::plan_forced(self.current(), desired, &mut forced)
    }

    /// Interprets `plan` on the kernel table: the report, or the error
    /// (and then the dataplane forgets what it held).
    fn commit(
        &mut self,
        mut plan: Plan,
        desired: &Ruleset,
        start: Instant,
    ) -> Result<ApplyReport, ApplyError> {
        let (messages, bytes) = if plan.kind == ApplyKind::NoChange {
            (0, 0)
        } else {
            let b = batch::build(&plan.transaction, &mut self.seq)?;
            (b.messages(), b.buf.len())
        };
        self.kernel.commit(std::mem::take(&mut plan.transaction))?;
        self.kernel.share_elements(desired);
        Ok(ApplyReport {
            kind: plan.kind,
            messages,
            bytes,
            duration: start.elapsed(),
            deferred: plan.deferred.len(),
            reason: plan.reason,
        })
    }
}

impl Dataplane for FakeDataplane {
    fn force_full_replace(&mut self, reason: &str) {
        self.known = false;
        self.forced = Some(reason.to_owned());
    }

    fn apply(&mut self, desired: &Ruleset) -> Result<ApplyReport, ApplyError> {
        let start = Instant::now();
        if let Some(e) = self.fail_next.take() {
            self.known = false;
            return Err(e);
        }
        let applied = self.known.then(|| self.kernel.ruleset()).flatten();
        let plan = plan::plan_forced(applied, desired, &mut self.forced);
        match self.commit(plan, desired, start) {
            Ok(report) => {
                self.known = true;
                if self.history {
                    self.applied.push(desired.clone());
                }
                Ok(report)
            }
            Err(e) => {
                self.known = false;
                Err(e)
            }
        }
    }

    fn cleanup(&mut self) -> Result<bool, ApplyError> {
        self.known = false;
        let tx = super::Transaction {
            ops: vec![super::Op::DeleteTable],
        };
        Ok(self.kernel.commit(tx).is_ok())
    }

    fn current(&self) -> Option<&Ruleset> {
        self.known.then(|| self.kernel.ruleset()).flatten()
    }
}
