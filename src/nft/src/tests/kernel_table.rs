//! The fake kernel's semantics, one rule per test: each refused op with its
//! errno, and that a refused transaction changes nothing.

use libc::{EBUSY, EEXIST, EINVAL, ENOENT, EOPNOTSUPP};

use super::{chain, elem, lookup, set, small};
use crate::table::{KernelTable, Rejected};
use crate::transaction::{ChainDef, Elements, Op, SetDef, SetKind, Transaction};
use crate::{full_replace, ApplyError};
use nftpolicy_core::ruleset::{
    AddrField, BaseChain, Chain, Family, Hook, MapElement, Rule, Ruleset, Verdict, TABLE_COMMENT,
};

/// A kernel holding `rs` after a full replace.
fn kernel(rs: &Ruleset) -> KernelTable {
    let mut k = KernelTable::default();
    k.commit(full_replace(rs).transaction)
        .expect("full replace");
    k
}

fn tx(ops: Vec<Op>) -> Transaction {
    Transaction { ops }
}

/// Commits `ops`, which must be refused as a whole: the table is unchanged.
fn refused(k: &mut KernelTable, ops: Vec<Op>) -> Rejected {
    let before = k.clone();
    let err = k.commit(tx(ops)).expect_err("must be refused");
    assert_eq!(*k, before, "a refused transaction changed the table");
    err
}

fn ok(k: &mut KernelTable, ops: Vec<Op>) {
    k.commit(tx(ops)).expect("must be taken");
    k.assert_counts();
}

fn add_chain(name: &str) -> Op {
    Op::AddChain(ChainDef::of(&chain(name, vec![])))
}

fn add_rule(chain: &str, rule: Rule) -> Op {
    Op::AddRule {
        chain: chain.into(),
        rule,
    }
}

fn jump(to: &str) -> Rule {
    Rule::new(vec![], Verdict::Jump(to.into()))
}

fn ranges(zero_end: bool, v: &[(&str, &str)]) -> Elements {
    Elements::Interval {
        family: Family::V4,
        zero_end,
        ranges: v.iter().map(|(a, b)| elem(a, b, None)).collect(),
    }
}

fn add_elements(set: &str, elements: Elements) -> Op {
    Op::AddElements {
        set: set.into(),
        elements,
    }
}

fn delete_elements(set: &str, elements: Elements) -> Op {
    Op::DeleteElements {
        set: set.into(),
        elements,
    }
}

fn goto(addr: &str, chain: &str) -> Elements {
    Elements::Map(vec![MapElement {
        addr: addr.parse().unwrap(),
        comment: "x".into(),
        chain: chain.into(),
    }])
}

#[test]
fn full_replace_builds_the_ruleset_in_order() {
    let k = kernel(&small());
    assert_eq!(k.ruleset(), Some(&small()));
    assert_eq!(k.comment(), Some(TABLE_COMMENT));
    assert!(k.has_zero_end("s"));
    k.assert_counts();
    // Again, over the existing table.
    let mut again = k.clone();
    ok(&mut again, full_replace(&small()).transaction.ops);
    assert_eq!(again, k);
}

#[test]
fn adding_what_exists_is_eexist() {
    let mut k = kernel(&small());
    let cases = [
        ("chain", add_chain("pol")),
        ("set", Op::AddSet(SetDef::of_set(&set("s", false, vec![])))),
        (
            "element",
            add_elements("s", ranges(false, &[("10.0.0.0", "10.0.0.255")])),
        ),
        (
            "overlap",
            add_elements("s", ranges(false, &[("10.0.0.9", "10.0.1.3")])),
        ),
        ("zero end", add_elements("s", ranges(true, &[]))),
        (
            "map element",
            add_elements("ingress-pods-v4", goto("10.0.0.7", "pol")),
        ),
        (
            "twice in one op",
            add_elements(
                "s",
                ranges(false, &[("10.1.0.0", "10.1.0.9"), ("10.1.0.5", "10.1.0.5")]),
            ),
        ),
    ];
    for (what, op) in cases {
        assert_eq!(refused(&mut k, vec![op]).errno, EEXIST, "{what}");
    }
}

#[test]
fn deleting_or_using_what_is_missing_is_enoent() {
    let mut k = kernel(&small());
    let cases = [
        (
            "chain",
            Op::DeleteChain {
                name: "nope".into(),
            },
        ),
        (
            "flush",
            Op::FlushChain {
                name: "nope".into(),
            },
        ),
        (
            "set",
            Op::DeleteSet {
                name: "nope".into(),
            },
        ),
        (
            "element",
            delete_elements("s", ranges(false, &[("10.9.0.0", "10.9.0.1")])),
        ),
        (
            "part of a range",
            delete_elements("s", ranges(false, &[("10.0.0.0", "10.0.0.7")])),
        ),
        (
            "elements of no set",
            add_elements("nope", ranges(false, &[])),
        ),
        ("rule in no chain", add_rule("nope", jump("pol"))),
        ("rule jumping nowhere", add_rule("pod", jump("nope"))),
        ("rule with no set", add_rule("pod", lookup("nope"))),
        (
            "goto nowhere",
            add_elements("ingress-pods-v4", goto("10.0.0.8", "nope")),
        ),
    ];
    for (what, op) in cases {
        assert_eq!(refused(&mut k, vec![op]).errno, ENOENT, "{what}");
    }
    let mut none = KernelTable::default();
    assert_eq!(refused(&mut none, vec![Op::DeleteTable]).errno, ENOENT);
    assert_eq!(refused(&mut none, vec![add_chain("c")]).errno, ENOENT);
}

#[test]
fn zero_end_is_an_element_of_its_own() {
    let mut k = kernel(&small());
    let whole = ranges(true, &[("10.0.0.0", "10.0.0.255")]);
    ok(&mut k, vec![delete_elements("s", whole.clone())]);
    assert!(!k.has_zero_end("s"));
    assert_eq!(
        refused(&mut k, vec![delete_elements("s", ranges(true, &[]))]).errno,
        ENOENT
    );
    ok(&mut k, vec![add_elements("s", whole)]);
    assert!(k.has_zero_end("s"));
    assert_eq!(k.ruleset(), Some(&small()));
}

#[test]
fn busy_chains_and_sets_are_not_deleted() {
    let mut k = kernel(&small());
    let del = |name: &str| Op::DeleteChain { name: name.into() };
    // pol has a rule; pod is the target of a map element; after a flush,
    // pol is still the target of pod's jump.
    assert_eq!(refused(&mut k, vec![del("pol")]).errno, EBUSY);
    assert_eq!(
        refused(
            &mut k,
            vec![Op::FlushChain { name: "pod".into() }, del("pod")]
        )
        .errno,
        EBUSY
    );
    let flush_pol = Op::FlushChain { name: "pol".into() };
    assert_eq!(
        refused(&mut k, vec![flush_pol.clone(), del("pol")]).errno,
        EBUSY
    );
    let set_gone = Op::DeleteSet { name: "s".into() };
    assert_eq!(refused(&mut k, vec![set_gone.clone()]).errno, EBUSY);
    // Flushed, the references go: pol's lookup of s, pod's jump to pol.
    ok(&mut k, vec![flush_pol, set_gone]);
    ok(
        &mut k,
        vec![Op::FlushChain { name: "pod".into() }, del("pol")],
    );
    let unmap = delete_elements("ingress-pods-v4", goto("10.0.0.7", "pod"));
    ok(&mut k, vec![unmap, del("pod")]);
    let rs = k.ruleset().unwrap();
    assert!(rs.chains.is_empty() && rs.sets.is_empty() && rs.maps[0].elements.is_empty());
}

#[test]
fn flush_removes_every_rule() {
    let mut k = kernel(&small());
    ok(
        &mut k,
        vec![add_rule("pol", lookup("s")), add_rule("pol", jump("pod"))],
    );
    assert_eq!(k.ruleset().unwrap().chain("pol").unwrap().rules.len(), 3);
    ok(&mut k, vec![Op::FlushChain { name: "pol".into() }]);
    assert!(k.ruleset().unwrap().chain("pol").unwrap().rules.is_empty());
}

#[test]
fn wrong_kinds_and_base_chain_targets() {
    let mut rs = small();
    rs.chains.push(Chain {
        base: Some(BaseChain {
            hook: Hook::Forward,
            priority: 0,
        }),
        ..chain("forward-ingress", vec![])
    });
    let mut k = kernel(&rs);
    let plain = Elements::Plain(vec![elem("10.0.0.1", "10.0.0.1", None)]);
    let v6 = Elements::Interval {
        family: Family::V6,
        zero_end: false,
        ranges: vec![elem("::1", "::1", None)],
    };
    let dispatch_to_set = Rule::new(
        vec![],
        Verdict::Dispatch {
            family: Family::V4,
            field: AddrField::Source,
            map: "s".into(),
        },
    );
    let cases = [
        (
            "plain elements in an interval set",
            add_elements("s", plain),
            EINVAL,
        ),
        ("v6 in a v4 set", add_elements("s", v6), EINVAL),
        (
            "set elements in a map",
            add_elements("ingress-pods-v4", ranges(false, &[])),
            EINVAL,
        ),
        ("vmap of a set", add_rule("pod", dispatch_to_set), EINVAL),
        (
            "jump to a base chain",
            add_rule("pod", jump("forward-ingress")),
            EOPNOTSUPP,
        ),
        (
            "goto a base chain",
            add_elements("ingress-pods-v4", goto("10.0.0.9", "forward-ingress")),
            EOPNOTSUPP,
        ),
    ];
    for (what, op, errno) in cases {
        assert_eq!(refused(&mut k, vec![op]).errno, errno, "{what}");
    }
    let plain_range = Elements::Plain(vec![elem("10.0.0.0", "10.0.0.3", None)]);
    ok(
        &mut k,
        vec![Op::AddSet(SetDef {
            name: "p".into(),
            family: Family::V4,
            kind: SetKind::Plain,
            comment: "p".into(),
        })],
    );
    assert_eq!(
        refused(&mut k, vec![add_elements("p", plain_range)]).errno,
        EINVAL
    );
}

#[test]
fn a_refused_op_takes_back_the_whole_transaction() {
    let mut k = kernel(&small());
    let mut full = full_replace(&Ruleset::default()).transaction.ops;
    full.push(add_chain("c"));
    full.push(add_rule("c", jump("missing")));
    let err = refused(&mut k, full);
    assert_eq!((err.op, err.errno), (4, ENOENT));
    let busy = vec![
        add_chain("new"),
        add_rule("new", jump("pol")),
        Op::AddSet(SetDef::of_set(&set("t", true, vec![]))),
        add_elements("t", ranges(true, &[("10.0.0.0", "10.0.0.1")])),
        delete_elements("s", ranges(true, &[("10.0.0.0", "10.0.0.255")])),
        add_elements("ingress-pods-v4", goto("10.0.0.8", "new")),
        Op::FlushChain { name: "pol".into() },
        Op::DeleteSet { name: "s".into() },
        Op::DeleteChain {
            name: "nope".into(),
        },
    ];
    assert_eq!(refused(&mut k, busy).op, 8);
    let mut none = KernelTable::default();
    let mut ops = full_replace(&small()).transaction.ops;
    ops.push(Op::DeleteChain { name: "pol".into() });
    refused(&mut none, ops);
    assert_eq!(none.ruleset(), None);
}

#[test]
fn refusals_read_like_the_kernels() {
    let mut k = kernel(&small());
    let op = add_elements(
        "s",
        ranges(
            false,
            &[("10.1.0.0", "10.1.0.0"), ("10.0.0.0", "10.0.0.255")],
        ),
    );
    let err = ApplyError::from(refused(&mut k, vec![op]));
    assert_eq!(
        err.to_string(),
        format!(
            "kernel rejected add element s {{ 10.0.0.0/24 }}: {} (the element exists)",
            std::io::Error::from_raw_os_error(EEXIST)
        )
    );
}
