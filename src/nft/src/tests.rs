//! Unit tests of the pure parts: planning (`diff`), the kernel view of set
//! contents and userdata (`encode`), batch labels, and the fake. The kernel
//! itself is exercised in `tests/dataplane_kernel.rs`.

use std::net::IpAddr;

use super::diff::{self, Op};
use super::encode::{self, KElem};
use super::{batch, ApplyKind, Dataplane, FakeDataplane};
use nftpolicy_core::ruleset::{
    AddrRange, AddrSet, Chain, Family, MapElement, Match, Rule, Ruleset, SetElement, Verdict,
    VerdictMap,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn elem(a: &str, b: &str, comment: Option<&str>) -> SetElement {
    SetElement {
        range: AddrRange {
            first: ip(a),
            last: ip(b),
        },
        comment: comment.map(str::to_owned),
    }
}

fn set(name: &str, interval: bool, elements: Vec<SetElement>) -> AddrSet {
    AddrSet {
        name: name.into(),
        family: Family::V4,
        interval,
        comment: "c".into(),
        elements,
    }
}

fn chain(name: &str, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.into(),
        base: None,
        comment: name.into(),
        rules,
    }
}

fn lookup(set: &str) -> Rule {
    Rule::new(
        vec![Match::AddrInSet {
            family: Family::V4,
            field: nftpolicy_core::ruleset::AddrField::Source,
            set: set.into(),
        }],
        Verdict::Accept,
    )
}

/// A map pointing at `pod`, a set, a policy chain using the set, the pod chain.
fn small() -> Ruleset {
    Ruleset {
        maps: vec![VerdictMap {
            name: "ingress-pods-v4".into(),
            family: Family::V4,
            comment: "m".into(),
            elements: vec![MapElement {
                addr: ip("10.0.0.7"),
                comment: "ns/pod".into(),
                chain: "pod".into(),
            }],
        }],
        sets: vec![set("s", true, vec![elem("10.0.0.0", "10.0.0.255", None)])],
        chains: vec![
            chain("pod", vec![Rule::new(vec![], Verdict::Jump("pol".into()))]),
            chain("pol", vec![lookup("s")]),
        ],
    }
}

fn names(ops: &[Op<'_>]) -> Vec<String> {
    ops.iter()
        .map(|op| match op {
            Op::AddTable { bare } => format!("add table{}", if *bare { " bare" } else { "" }),
            Op::DelTable => "del table".into(),
            Op::AddChain(c) => format!("add chain {}", c.name),
            Op::DelChain(n) => format!("del chain {n}"),
            Op::Flush(n) => format!("flush {n}"),
            Op::AddRules(c) => format!("rules {}", c.name),
            Op::AddSet(m) => format!("add set {}", m.name),
            Op::DelSet(n) => format!("del set {n}"),
            Op::AddElems(m, e) => format!("add {} to {}", e.len(), m.name),
            Op::DelElems(m, e) => format!("del {} from {}", e.len(), m.name),
        })
        .collect()
}

#[test]
fn same_ruleset_plans_nothing() {
    let a = small();
    let plan = diff::plan(&a, &a).unwrap();
    assert_eq!(plan.kind, ApplyKind::NoChange);
    assert!(plan.ops.is_empty());
    assert!(plan.deferred.is_empty());
}

#[test]
fn full_replace_orders_table_chains_sets_rules() {
    let a = small();
    let plan = diff::full(&a).unwrap();
    assert_eq!(
        names(&plan.ops),
        [
            "add table bare",
            "del table",
            "add table",
            "add chain pod",
            "add chain pol",
            "add set ingress-pods-v4",
            "add 1 to ingress-pods-v4",
            "add set s",
            "add 3 to s", // zero end, start, end
            "rules pod",
            "rules pol",
        ]
    );
}

#[test]
fn new_objects_go_to_the_end_of_kernel_order() {
    let a = small();
    let mut b = small();
    b.sets.insert(0, set("first", false, vec![]));
    b.chains.insert(0, chain("new", vec![]));
    b.chains[2].rules.push(lookup("first"));
    let plan = diff::plan(&a, &b).unwrap();
    assert_eq!(
        names(&plan.ops),
        ["flush pol", "add chain new", "add set first", "rules pol"]
    );
    let next = plan.next(Some(a.clone()), &b);
    let order = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        next.sets.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        order(vec!["s", "first"])
    );
    assert_eq!(
        next.chains
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>(),
        order(vec!["pod", "pol", "new"])
    );
}

#[test]
fn removed_chains_are_emptied_then_deleted() {
    let a = small();
    let mut b = small();
    b.maps[0].elements.clear();
    b.chains.clear();
    let plan = diff::plan(&a, &b).unwrap();
    assert_eq!(
        names(&plan.ops),
        ["flush pod", "flush pol", "del 1 from ingress-pods-v4"]
    );
    assert_eq!(plan.deferred, ["pod", "pol"]);
    let next = plan.next(Some(a.clone()), &b);
    assert!(next.chains.iter().all(|c| c.rules.is_empty()));
    let plan = diff::plan(&next, &b).unwrap();
    assert_eq!(names(&plan.ops), ["del chain pod", "del chain pol"]);
    assert!(plan.deferred.is_empty());
    assert_eq!(plan.next(Some(next.clone()), &b), b);
}

#[test]
fn changed_set_definition_recreates_set_and_refills_users() {
    let a = small();
    let mut b = small();
    b.sets[0].comment = "new".into();
    let plan = diff::plan(&a, &b).unwrap();
    assert_eq!(
        names(&plan.ops),
        [
            "flush pol",
            "del set s",
            "add set s",
            "add 3 to s",
            "rules pol"
        ]
    );
}

#[test]
fn map_or_chain_definition_change_is_a_full_replace() {
    let a = small();
    let mut b = small();
    b.maps[0].comment = "other".into();
    assert_eq!(diff::plan(&a, &b).unwrap().kind, ApplyKind::Full);
    let mut c = small();
    c.chains[0].comment = "other".into();
    assert_eq!(diff::plan(&a, &c).unwrap().kind, ApplyKind::Full);
}

#[test]
fn zero_end_element_follows_the_first_range() {
    let a = small();
    let mut b = small();
    b.sets[0].elements = vec![elem("0.0.0.0", "0.0.0.255", None)];
    let plan = diff::plan(&a, &b).unwrap();
    let Op::DelElems(_, dels) = &plan.ops[0] else {
        panic!("{:?}", names(&plan.ops))
    };
    let zero_end = KElem {
        key: vec![0; 4],
        end: true,
        goto: None,
        udata: vec![],
    };
    assert!(dels.contains(&zero_end), "{dels:?}");
    let Op::AddElems(_, adds) = &plan.ops[1] else {
        panic!()
    };
    assert_eq!(adds.len(), 2);
    assert_eq!((adds[0].key.clone(), adds[0].end), (vec![0; 4], false));
}

#[test]
fn interval_elements_as_nft_sends_them() {
    let s = set(
        "s",
        true,
        vec![
            elem("10.0.0.1", "10.0.0.1", Some("a")),
            elem("224.0.0.0", "255.255.255.255", Some("all")),
        ],
    );
    let got = encode::set_elements(&s).unwrap();
    let k = |b: [u8; 4], end: bool, udata: &[u8]| KElem {
        key: b.to_vec(),
        end,
        goto: None,
        udata: udata.to_vec(),
    };
    let open = 1u32.to_ne_bytes();
    let mut all = b"\x00\x04all\x00\x01\x04".to_vec();
    all.extend_from_slice(&open);
    assert_eq!(
        got,
        [
            k([0, 0, 0, 0], true, b""),
            k([10, 0, 0, 1], false, b"\x00\x02a\x00"),
            k([10, 0, 0, 2], true, b""),
            k([224, 0, 0, 0], false, &all),
        ]
    );
    let plain = set("p", false, vec![elem("10.0.0.0", "10.0.0.3", None)]);
    assert!(encode::set_elements(&plain).is_err());
}

#[test]
fn batch_labels_name_rules_and_elements() {
    let a = small();
    let plan = diff::full(&a).unwrap();
    let mut seq = 100;
    let b = batch::build(&plan.ops, &mut seq).unwrap();
    assert_eq!(b.messages(), plan.ops.len());
    assert_eq!(seq, 100 + plan.ops.len() as u32 + 2);
    assert_eq!(
        b.describe(b.last, None),
        "add rule 1 of chain pol (ip saddr @s accept)"
    );
    // The map's element message is the 7th object message.
    assert_eq!(
        b.describe(b.begin + 7, Some(200)),
        "add elements of map ingress-pods-v4 (element 10.0.0.7 : goto pod)"
    );
}

#[test]
fn sequence_numbers_wrap() {
    let a = small();
    let plan = diff::full(&a).unwrap();
    let mut seq = u32::MAX - 3;
    let b = batch::build(&plan.ops, &mut seq).unwrap();
    assert!(b.last < b.begin);
    assert_eq!(
        b.describe(b.last, None),
        "add rule 1 of chain pol (ip saddr @s accept)"
    );
    assert_eq!(
        b.describe(b.begin.wrapping_add(1), None),
        "add table inet kube-nftpolicy"
    );
}

#[test]
fn fake_records_and_fails_on_demand() {
    let mut dp = FakeDataplane::new();
    let a = small();
    assert_eq!(dp.apply(&a).unwrap().kind, ApplyKind::Full);
    assert_eq!(dp.apply(&a).unwrap().kind, ApplyKind::NoChange);
    dp.reject_next("rule 1 of chain pol");
    let err = dp.apply(&a).unwrap_err();
    assert!(err.to_string().contains("rule 1 of chain pol"), "{err}");
    assert_eq!(dp.apply(&a).unwrap().kind, ApplyKind::Full);
    assert_eq!(dp.applied.len(), 3);
    assert!(dp.cleanup().unwrap());
    assert!(dp.current().is_none());
}

#[test]
fn dataplanes_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<super::NetlinkDataplane>();
    send::<FakeDataplane>();
}
