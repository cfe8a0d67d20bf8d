//! `NetlinkDataplane`: applies rulesets to the kernel over netlink, one
//! batch per apply.
//!
//! - The first apply, any apply after a failure, and any apply after drift
//!   was found is a full replace, in ONE batch. It reads our table's
//!   definitions back first and, when it can, keeps the table, its chains
//!   and its dispatch maps, emptying and refilling them
//!   (`plan::full_replace_in_place`: deleting the table lets a packet that
//!   is inside an old base chain at the commit through); otherwise, or if
//!   the kernel refuses that batch, it deletes and adds the table
//!   (`plan::full_replace`).
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

use std::collections::HashMap;
use std::time::Instant;

use super::batch;
use super::conn::Conn;
use super::encode::{self, EncodeError};
use super::image::{self, ChainImage, SetImage};
use super::plan::{self, Plan};
use super::readback;
use super::table::KernelTable;
use super::transaction::{ChainDef, Op, SetDef, SetKind, Transaction};
use super::{ApplyError, ApplyKind, ApplyReport, Dataplane};
use nftpolicy_core::ruleset::{Family, Ruleset, TABLE_COMMENT};

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
    /// When the last batch was sent, and when the kernel's answer to it
    /// came: the kernel checks and commits a batch inside the `send`.
    last_batch: Option<(Instant, Instant)>,
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
            last_batch: None,
        })
    }

    /// Makes the next apply a full replace.
    pub fn invalidate(&mut self, reason: impl Into<String>) {
        self.applied = None;
        self.genid = None;
        self.reason = Some(reason.into());
    }

    /// When the last batch was sent and when the kernel answered it. The
    /// kernel checks and commits a batch while the sender is in `send`, so
    /// this brackets the moment the new ruleset took over (for tests that
    /// relate what packets saw to the batches in flight).
    pub fn last_batch(&self) -> Option<(Instant, Instant)> {
        self.last_batch
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

    /// The full replace of `desired` that keeps our table, its chains and
    /// maps, and the kernel's table as it stands (chains, sets and maps,
    /// without rules and elements) to apply it to; `None` when the table
    /// cannot be kept (`plan::full_replace_in_place`).
    fn in_place(&mut self, desired: &Ruleset) -> Result<Option<(Plan, KernelTable)>, ApplyError> {
        let kernel = readback::definitions(&mut self.conn).map_err(read_error)?;
        let Some(table) = &kernel.table else {
            return Ok(None);
        };
        let ours = image::table_image(&encode::table(TABLE_COMMENT)?);
        let chain_defs: HashMap<&str, (ChainDef, ChainImage)> = desired
            .chains
            .iter()
            .map(|c| {
                let def = ChainDef::of(c);
                let image = ChainImage::of(&encode::chain(&def)?);
                Ok((c.name.as_str(), (def, image)))
            })
            .collect::<Result<_, EncodeError>>()?;
        let map_defs: HashMap<&str, (SetDef, SetImage)> = desired
            .maps
            .iter()
            .map(|m| {
                let def = SetDef::of_map(m);
                let image = SetImage::of(&encode::set(&def, None)?);
                Ok((m.name.as_str(), (def, image)))
            })
            .collect::<Result<_, EncodeError>>()?;
        let mut existing = plan::Existing {
            table_ours: *table == ours,
            ..plan::Existing::default()
        };
        let (mut chains, mut sets) = (Vec::new(), Vec::new());
        for c in &kernel.chains {
            let same = chain_defs.get(c.name.as_str()).filter(|(_, want)| {
                (&want.name, &want.attrs, &want.kind, &want.udata)
                    == (&c.name, &c.attrs, &c.kind, &c.udata)
            });
            existing.chains.push((c.name.clone(), same.is_some()));
            chains.push(same.map_or_else(
                || ChainDef {
                    name: c.name.clone(),
                    base: None,
                    comment: String::new(),
                },
                |(def, _)| def.clone(),
            ));
        }
        for s in &kernel.sets {
            let same = map_defs.get(s.name.as_str()).filter(|(_, want)| {
                (&want.name, &want.attrs, &want.udata) == (&s.name, &s.attrs, &s.udata)
            });
            existing.sets.push((s.name.clone(), same.is_some()));
            let is_map = s.attrs[0].unwrap_or(0) & libc::NFT_SET_MAP as u32 != 0;
            sets.push(same.map_or_else(
                || SetDef {
                    name: s.name.clone(),
                    family: Family::V4,
                    kind: if is_map { SetKind::Map } else { SetKind::Plain },
                    comment: String::new(),
                },
                |(def, _)| def.clone(),
            ));
        }
        Ok(plan::full_replace_in_place(desired, &existing).map(|plan| {
            let table = KernelTable::read_back(Some(TABLE_COMMENT.to_owned()), chains, sets);
            (plan, table)
        }))
    }

    fn send(&mut self, tx: &Transaction) -> Result<(usize, usize), ApplyError> {
        let batch = batch::build(tx, &mut self.conn.seq)?;
        let sent = Instant::now();
        let res = self.conn.send_batch(&batch);
        self.last_batch = Some((sent, Instant::now()));
        res?;
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
        let mut plan = plan::plan_forced(applied, desired, &mut self.reason);
        // A full replace keeps the table, its chains and maps when it can
        // (`plan::full_replace_in_place`), and then starts from what the
        // kernel holds, read back now.
        let mut picture = None;
        if plan.kind == ApplyKind::Full {
            match self.in_place(desired) {
                Ok(Some((in_place, table))) => {
                    let reason = plan.reason.take();
                    plan = in_place;
                    plan.reason = reason;
                    picture = Some(table);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read our table back; replacing it whole");
                }
            }
        }
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
        let mut sent = self.send(&plan.transaction);
        if let (Err(e @ ApplyError::Rejected { .. }), Some(_)) = (&sent, &picture) {
            // The kernel refused the batch that keeps the table: replace
            // it whole (if the ruleset itself is wrong, that fails too,
            // and its error is the one reported).
            tracing::warn!(error = %e, "full replace in place refused; replacing the table whole");
            plan = plan::full_replace(desired);
            report.deferred = 0;
            picture = None;
            sent = self.send(&plan.transaction);
        }
        match sent {
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
        let mut table = picture.or_else(|| self.applied.take()).unwrap_or_default();
        self.applied = None;
        match table.commit(plan.transaction) {
            Ok(()) => {
                table.share_elements(desired);
                self.applied = Some(table)
            }
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
