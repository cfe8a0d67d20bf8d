//! `NetlinkDataplane`: applies rulesets to the kernel over netlink, one
//! batch per apply.
//!
//! - The first apply, any apply after a failure, and any apply after drift
//!   was found is a full replace: add table, delete table, add the table
//!   and every object, in ONE batch (no moment without rules).
//! - Otherwise the batch carries only the difference to the last applied
//!   ruleset (see `plan.rs`).
//! - What the kernel holds is kept as a `KernelTable`: each batch the kernel
//!   accepted is applied to it by the kernel's rules (`table.rs`), so it is
//!   in the kernel's listing order. Should our picture refuse a batch the
//!   kernel took, it is dropped and the next apply is a full replace.
//! - Drift: the ruleset generation id is read before each apply. If anyone
//!   committed since our last batch, our table is dumped (chains, sets and
//!   rules; not elements, which are the expensive part) and compared with
//!   what we applied; if it is missing or differs, this apply is a full
//!   replace. `verify` compares elements too (for a slow periodic check).
//!   An incremental batch also fails (and the next apply replaces) when an
//!   element it adds already exists or one it deletes does not.

use std::time::Instant;

use super::batch;
use super::conn::Conn;
use super::image;
use super::plan;
use super::readback;
use super::table::KernelTable;
use super::transaction::{Op, Transaction};
use super::{ApplyError, ApplyKind, ApplyReport, Dataplane};
use nftpolicy_core::ruleset::Ruleset;

/// The kernel's nf_tables, in the current or a named network namespace.
pub struct NetlinkDataplane {
    conn: Conn,
    /// What the kernel holds, in kernel order; `None`: unknown.
    applied: Option<KernelTable>,
    /// Generation id right after our last batch, when nobody else
    /// committed in between.
    genid: Option<u32>,
    /// Why the next apply is a full replace (after the first one).
    reason: Option<String>,
}

impl NetlinkDataplane {
    /// Opens a netlink socket in the current network namespace, or in
    /// `/run/netns/<netns>`. Reads nothing yet: the first apply is a full
    /// replace.
    pub fn new(netns: Option<&str>) -> Result<Self, ApplyError> {
        Ok(Self {
            conn: Conn::open(netns)?,
            applied: None,
            genid: None,
            reason: None,
        })
    }

    /// Makes the next apply a full replace.
    pub fn invalidate(&mut self, reason: impl Into<String>) {
        self.applied = None;
        self.genid = None;
        self.reason = Some(reason.into());
    }

    /// Compares our table in the kernel, elements included, with the last
    /// applied ruleset. `Ok(Some(difference))` means drift: the next apply
    /// is a full replace. `Ok(None)` also when nothing was applied yet (the
    /// next apply is a full replace anyway). Costs a dump of every set: for
    /// a slow periodic timer, not every sync.
    pub fn verify(&mut self) -> Result<Option<String>, ApplyError> {
        let Some(applied) = self.applied.as_ref().and_then(KernelTable::ruleset) else {
            return Ok(None);
        };
        let expected = image::of_model(applied, true)?;
        let kernel = readback::image(&mut self.conn, true).map_err(read_error)?;
        let diff = image::first_difference(&kernel, &expected);
        if let Some(d) = &diff {
            self.invalidate(format!("drift: {d}"));
        }
        Ok(diff)
    }

    /// Drops `applied` when someone else changed our table since our last
    /// batch. Returns the current generation id.
    fn check_drift(&mut self) -> Result<u32, ApplyError> {
        let gen = self.conn.genid().map_err(read_error)?;
        let Some(applied) = self.applied.as_ref().and_then(KernelTable::ruleset) else {
            return Ok(gen);
        };
        if self.genid == Some(gen) {
            return Ok(gen);
        }
        let expected = image::of_model(applied, false)?;
        let kernel = readback::image(&mut self.conn, false).map_err(read_error)?;
        match image::first_difference(&kernel, &expected) {
            Some(d) => {
                tracing::warn!(drift = %d, "our nftables table was changed by someone else; replacing it");
                self.invalidate(format!("drift: {d}"));
            }
            None => self.genid = Some(gen),
        }
        Ok(gen)
    }

    fn send(&mut self, tx: &Transaction) -> Result<(usize, usize), ApplyError> {
        let batch = batch::build(tx, &mut self.conn.seq)?;
        self.conn.send_batch(&batch)?;
        Ok((batch.messages(), batch.buf.len()))
    }
}

fn read_error(source: std::io::Error) -> ApplyError {
    ApplyError::Io {
        context: "reading our table back",
        source,
    }
}

impl Dataplane for NetlinkDataplane {
    fn force_full_replace(&mut self, reason: &str) {
        self.invalidate(reason);
    }

    fn apply(&mut self, desired: &Ruleset) -> Result<ApplyReport, ApplyError> {
        let start = Instant::now();
        let before = self.check_drift()?;
        let applied = self.applied.as_ref().and_then(KernelTable::ruleset);
        let plan = plan::plan_forced(applied, desired, &mut self.reason);
        let mut report = ApplyReport {
            kind: plan.kind,
            messages: 0,
            bytes: 0,
            duration: start.elapsed(),
            deferred: plan.deferred.len(),
            reason: plan.reason,
        };
        match plan.kind {
            ApplyKind::NoChange => return Ok(report),
            // A full replace spells out the whole table: only when tracing.
            ApplyKind::Full => tracing::trace!(batch = %plan.transaction, "full replace"),
            ApplyKind::Incremental => tracing::debug!(batch = %plan.transaction, "incremental"),
        }
        match self.send(&plan.transaction) {
            Ok((messages, bytes)) => {
                report.messages = messages;
                report.bytes = bytes;
            }
            Err(e) => {
                self.invalidate(format!("the previous apply failed: {e}"));
                return Err(e);
            }
        }
        // Our batch is generation `before + 1`; anything else means someone
        // committed in between, and the next apply checks our table.
        let after = self.conn.genid().ok();
        self.genid = Some(before.wrapping_add(1)).filter(|g| after == Some(*g));
        let mut table = self.applied.take().unwrap_or_default();
        match table.commit(plan.transaction) {
            Ok(()) => self.applied = Some(table),
            Err(e) => {
                let e = ApplyError::from(e);
                tracing::warn!(error = %e, "the kernel took a batch our picture of it refuses; replacing next time");
                self.invalidate(format!(
                    "our picture of the kernel refused the last batch: {e}"
                ));
            }
        }
        report.duration = start.elapsed();
        Ok(report)
    }

    fn cleanup(&mut self) -> Result<bool, ApplyError> {
        self.invalidate("cleanup removed the table");
        // A delete of a missing table is rejected with ENOENT and commits
        // nothing: no need to ask first.
        let tx = Transaction {
            ops: vec![Op::DeleteTable],
        };
        match self.send(&tx) {
            Ok(_) => Ok(true),
            Err(ApplyError::Rejected { errno, .. }) if errno == libc::ENOENT => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn current(&self) -> Option<&Ruleset> {
        self.applied.as_ref().and_then(KernelTable::ruleset)
    }
}

/// Deletes our table in the current or a named network namespace, and
/// nothing else. `Ok(false)`: there was no table.
pub fn cleanup(netns: Option<&str>) -> Result<bool, ApplyError> {
    NetlinkDataplane::new(netns)?.cleanup()
}
