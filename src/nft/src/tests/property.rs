//! Planner + fake kernel, as a property: random sequences of valid
//! rulesets (`gen.rs`), applied one after the other. After
//! each apply the fake kernel — which interprets the ops with the kernel's
//! rules and never asks the planner — must hold exactly the desired
//! content; `NoChange` must be reported iff nothing differed; applying the
//! same ruleset again must change nothing (once deferred chains are gone).

use proptest::prelude::*;

use super::gen::{build, mix, spec, CHOICES};
use crate::{ops, ApplyKind, Dataplane, FakeDataplane};
use nftpolicy_core::ruleset::{Chain, Ruleset};

/// The content of a ruleset without object order.
fn content(rs: &Ruleset) -> Vec<String> {
    let maps = rs.maps.iter().map(|m| format!("{m:?}"));
    let sets = rs.sets.iter().map(|s| format!("{s:?}"));
    let chains = rs.chains.iter().map(|c| format!("{c:?}"));
    let mut all: Vec<String> = maps.chain(sets).chain(chains).collect();
    all.sort();
    all
}

/// The fake kernel holds `desired`, plus `deferred` empty chains.
fn holds(dp: &FakeDataplane, desired: &Ruleset, deferred: usize) -> Result<(), TestCaseError> {
    let held = dp.kernel().ok_or_else(|| TestCaseError::fail("no table"))?;
    prop_assert_eq!(dp.current(), Some(held));
    let mut rest = held.clone();
    let (extra, kept): (Vec<Chain>, Vec<Chain>) = std::mem::take(&mut rest.chains)
        .into_iter()
        .partition(|c| desired.chain(&c.name).is_none());
    rest.chains = kept;
    prop_assert_eq!(content(&rest), content(desired));
    prop_assert_eq!(extra.len(), deferred, "deferred chains: {:?}", extra);
    prop_assert!(extra.iter().all(|c| c.rules.is_empty()));
    for set in &desired.sets {
        prop_assert_eq!(
            dp.kernel_has_zero_end(&set.name),
            ops::zero_end(set),
            "{}",
            set.name
        );
    }
    dp.kernel_table().assert_counts();
    Ok(())
}

/// Applies `rs`: what the fake held before decides the expected kind.
fn step(dp: &mut FakeDataplane, rs: &Ruleset) -> Result<usize, TestCaseError> {
    let before = dp.current().map(content);
    let plan = dp.plan(rs);
    let report = dp
        .apply(rs)
        .map_err(|e| TestCaseError::fail(format!("{e}\nbatch:\n{}", plan.transaction)))?;
    let same = before.as_ref() == Some(&content(rs));
    prop_assert_eq!(
        report.kind == ApplyKind::NoChange,
        same,
        "batch:\n{}",
        plan.transaction
    );
    prop_assert_eq!(
        report.kind == ApplyKind::Full,
        before.is_none() || plan.reason.is_some()
    );
    holds(dp, rs, report.deferred)
        .map_err(|e| TestCaseError::fail(format!("{e}\nbatch:\n{}", plan.transaction)))?;
    Ok(report.deferred)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fake_kernel_holds_what_was_planned_for(
        first in spec(),
        steps in prop::collection::vec(
            (spec(), prop::collection::vec(prop::bool::weighted(0.8), CHOICES), any::<bool>()),
            1..8,
        )
    ) {
        let mut dp = FakeDataplane::new();
        let mut spec = first;
        for (fresh, keep, settle) in &steps {
            let rs = build(&spec);
            let deferred = step(&mut dp, &rs)?;
            // Again: nothing to do, or (with chains deferred) only their
            // deletion, and then nothing. Without settling, the next
            // ruleset starts from the deferred chains.
            if *settle {
                prop_assert_eq!(step(&mut dp, &rs)?, 0, "deferred deletions must finish");
                if deferred > 0 {
                    let report = dp.apply(&rs).expect("third apply");
                    prop_assert_eq!(report.kind, ApplyKind::NoChange);
                }
            }
            spec = mix(&spec, fresh, keep);
        }
    }
}
