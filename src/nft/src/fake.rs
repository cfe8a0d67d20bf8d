//! `FakeDataplane`: an in-memory dataplane for tests of code that drives a
//! dataplane (the sync loop). It plans and encodes every batch exactly as
//! the netlink dataplane does, so reports and the kernel-order `current()`
//! match, but sends nothing.

use std::time::Instant;

use super::batch;
use super::diff;
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
    current: Option<Ruleset>,
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
            current: None,
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
}

impl Dataplane for FakeDataplane {
    fn force_full_replace(&mut self, reason: &str) {
        self.current = None;
        self.forced = Some(reason.to_owned());
    }

    fn apply(&mut self, desired: &Ruleset) -> Result<ApplyReport, ApplyError> {
        let start = Instant::now();
        if let Some(e) = self.fail_next.take() {
            self.current = None;
            return Err(e);
        }
        let mut plan = diff::plan_for(self.current.as_ref(), desired, &mut self.forced)?;
        let (messages, bytes) = if plan.kind == ApplyKind::NoChange {
            (0, 0)
        } else {
            let b = batch::build(&plan.ops, &mut self.seq)?;
            (b.messages(), b.buf.len())
        };
        let report = ApplyReport {
            kind: plan.kind,
            messages,
            bytes,
            duration: start.elapsed(),
            deferred: plan.deferred.len(),
            reason: plan.reason.take(),
        };
        self.current = Some(plan.next(self.current.take(), desired));
        if self.history {
            self.applied.push(desired.clone());
        }
        Ok(report)
    }

    fn cleanup(&mut self) -> Result<bool, ApplyError> {
        Ok(self.current.take().is_some())
    }

    fn current(&self) -> Option<&Ruleset> {
        self.current.as_ref()
    }
}
