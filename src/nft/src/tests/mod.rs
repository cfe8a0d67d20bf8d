//! Unit tests of the pure parts: planning (`plan`), the kernel view of set
//! contents and userdata (`encode`), batch labels, and the fake; the fake
//! kernel's semantics in `kernel_table.rs`, planner + fake kernel as a
//! property in `property.rs`. The kernel itself is exercised in
//! `tests/dataplane_kernel.rs`.

mod gen;
mod kernel_table;
mod property;

use std::net::IpAddr;
use std::sync::Arc;

use super::encode::{self, KElem};
use super::{
    batch, full_replace, plan, ApplyKind, ChainDef, Dataplane, Elements, FakeDataplane, Op, Plan,
    SetDef, Transaction,
};
use nftpolicy_core::ruleset::{
    AddrRange, AddrSet, BaseChain, Chain, Family, Hook, MapElement, Match, Rule, Ruleset,
    SetElement, Verdict, VerdictMap,
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
        comment: comment.map(Into::into),
    }
}

fn set(name: &str, interval: bool, elements: Vec<SetElement>) -> AddrSet {
    AddrSet {
        name: name.into(),
        family: Family::V4,
        interval,
        comment: "c".into(),
        elements: elements.into(),
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

/// The transaction of `plan`, one op per line.
fn lines(plan: &Plan) -> Vec<String> {
    plan.transaction
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn same_ruleset_plans_nothing() {
    let a = small();
    let plan = plan(Some(&a), &a);
    assert_eq!(plan.kind, ApplyKind::NoChange);
    assert!(plan.transaction.is_empty());
    assert!(plan.deferred.is_empty());
}

/// After every batch the picture of the kernel holds the desired sets' own
/// chunks (the next plan passes the chunks the next build kept by
/// address), whether the batch wrote the set or left it alone; and a
/// change to one chunk leaves the others shared.
#[test]
fn the_picture_shares_the_desired_elements_after_each_batch() {
    let chunks = |rs: &Ruleset, name: &str| {
        let set = rs.sets.iter().find(|s| s.name == name).expect("the set");
        set.elements.chunks().to_vec()
    };
    let shared = |dp: &FakeDataplane, desired: &Ruleset, name: &str| {
        let (held, want) = (
            chunks(dp.current().expect("applied"), name),
            chunks(desired, name),
        );
        held.len() == want.len() && held.iter().zip(&want).all(|(h, w)| Arc::ptr_eq(h, w))
    };
    let a = small();
    let mut dp = FakeDataplane::new();
    dp.apply(&a).unwrap();
    assert!(
        shared(&dp, &a, "s"),
        "written by the full replace, then shared"
    );
    // The same ruleset again, as another value: nothing to do, and the
    // equal set is shared.
    let again = Ruleset {
        sets: vec![set("s", true, vec![elem("10.0.0.0", "10.0.0.255", None)])],
        ..a.clone()
    };
    assert_eq!(dp.apply(&again).unwrap().kind, ApplyKind::NoChange);
    assert!(shared(&dp, &again, "s"));
    // A changed set is written, and shared after the batch.
    let mut b = again.clone();
    b.sets[0].edit_elements(|e| e.push(elem("10.0.1.0", "10.0.1.255", None)));
    assert_eq!(dp.apply(&b).unwrap().kind, ApplyKind::Incremental);
    assert!(shared(&dp, &b, "s"));
    assert_eq!(dp.current().unwrap().sets, b.sets);
    // A change elsewhere: shared, and the plan after that finds nothing.
    let mut c = b.clone();
    c.chains[1].rules.push(lookup("s"));
    assert_eq!(dp.apply(&c).unwrap().kind, ApplyKind::Incremental);
    assert!(shared(&dp, &c, "s"));
    assert_eq!(plan(dp.current(), &c).kind, ApplyKind::NoChange);
    // A set of many chunks, one element added in the middle: the batch
    // adds that element alone, and the picture shares every chunk after.
    let big: Vec<SetElement> = (0..1_000u32)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + 4 * i).to_string();
            elem(&ip, &ip, Some(&format!("p{i}")))
        })
        .collect();
    let mut d = c.clone();
    d.sets[0].set_elements(big.clone());
    dp.apply(&d).unwrap();
    let mut e = d.clone();
    let mut chunks_e = e.sets[0].elements.chunks().to_vec();
    let mut seventh = (*chunks_e[7]).clone();
    seventh.push(elem("10.0.7.1", "10.0.7.1", Some("joins")));
    seventh.sort();
    chunks_e[7] = Arc::new(seventh);
    e.sets[0].elements = chunks_e.into_iter().collect();
    assert_eq!(
        lines(&plan(dp.current(), &e)),
        ["add element s { 10.0.7.1 comment \"joins\" }"]
    );
    dp.apply(&e).unwrap();
    assert!(shared(&dp, &e, "s"));
}

#[test]
fn full_replace_orders_table_chains_sets_rules() {
    let a = small();
    let plan = full_replace(&a);
    assert_eq!(
        lines(&plan),
        [
            "add table inet kube-nftpolicy",
            "delete table inet kube-nftpolicy",
            "add table inet kube-nftpolicy { comment \"managed by kube-nftpolicy; do not edit\" }",
            "add chain pod { comment \"pod\" }",
            "add chain pol { comment \"pol\" }",
            "add map ingress-pods-v4 { type ipv4_addr : verdict; comment \"m\" }",
            "add element ingress-pods-v4 { 10.0.0.7 comment \"ns/pod\" : goto pod }",
            "add set s { type ipv4_addr; flags interval; comment \"c\" }",
            "add element s { 0.0.0.0 (interval end), 10.0.0.0/24 }",
            "add rule pod jump pol",
            "add rule pol ip saddr @s accept",
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
    let plan = plan(Some(&a), &b);
    assert_eq!(
        lines(&plan),
        [
            "flush chain pol",
            "add chain new { comment \"new\" }",
            "add set first { type ipv4_addr; comment \"c\" }",
            "add rule pol ip saddr @s accept",
            "add rule pol ip saddr @first accept",
        ]
    );
    let mut dp = FakeDataplane::new();
    dp.apply(&a).unwrap();
    assert_eq!(dp.apply(&b).unwrap().kind, ApplyKind::Incremental);
    let next = dp.current().unwrap();
    let names = |v: Vec<&String>| v.into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(next.sets.iter().map(|s| &s.name).collect()),
        ["s", "first"]
    );
    assert_eq!(
        names(next.chains.iter().map(|c| &c.name).collect()),
        ["pod", "pol", "new"]
    );
}

#[test]
fn removed_chains_are_emptied_then_deleted() {
    let a = small();
    let mut b = small();
    b.maps[0].elements.clear();
    b.chains.clear();
    let p = plan(Some(&a), &b);
    assert_eq!(
        lines(&p),
        [
            "flush chain pod",
            "flush chain pol",
            "delete element ingress-pods-v4 { 10.0.0.7 }"
        ]
    );
    assert_eq!(p.deferred, ["pod", "pol"]);
    let mut dp = FakeDataplane::new();
    dp.apply(&a).unwrap();
    assert_eq!(dp.apply(&b).unwrap().deferred, 2);
    let next = dp.current().unwrap().clone();
    assert!(next.chains.iter().all(|c| c.rules.is_empty()));
    let p = plan(Some(&next), &b);
    assert_eq!(lines(&p), ["delete chain pod", "delete chain pol"]);
    assert!(p.deferred.is_empty());
    assert_eq!(dp.apply(&b).unwrap().deferred, 0);
    assert_eq!(dp.current(), Some(&b));
}

#[test]
fn changed_set_definition_recreates_set_and_refills_users() {
    let a = small();
    let mut b = small();
    b.sets[0].comment = "new".into();
    assert_eq!(
        lines(&plan(Some(&a), &b)),
        [
            "flush chain pol",
            "delete set s",
            "add set s { type ipv4_addr; flags interval; comment \"new\" }",
            "add element s { 0.0.0.0 (interval end), 10.0.0.0/24 }",
            "add rule pol ip saddr @s accept",
        ]
    );
}

#[test]
fn map_or_chain_definition_change_is_a_full_replace() {
    let a = small();
    let mut b = small();
    b.maps[0].comment = "other".into();
    let p = plan(Some(&a), &b);
    assert_eq!(p.kind, ApplyKind::Full);
    assert_eq!(p.reason.as_deref(), Some("the dispatch maps changed"));
    let mut c = small();
    c.chains[0].comment = "other".into();
    assert_eq!(plan(Some(&a), &c).kind, ApplyKind::Full);
}

#[test]
fn zero_end_element_follows_the_first_range() {
    let a = small();
    let mut b = small();
    b.sets[0].set_elements(vec![elem("0.0.0.0", "0.0.0.255", None)]);
    assert_eq!(
        lines(&plan(Some(&a), &b)),
        [
            "delete element s { 0.0.0.0 (interval end), 10.0.0.0/24 }",
            "add element s { 0.0.0.0/24 }",
        ]
    );
    assert_eq!(
        lines(&plan(Some(&b), &a)),
        [
            "delete element s { 0.0.0.0/24 }",
            "add element s { 0.0.0.0 (interval end), 10.0.0.0/24 }",
        ]
    );
    let Op::DeleteElements { set, elements } = &plan(Some(&a), &b).transaction.ops[0] else {
        panic!()
    };
    let zero_end = KElem {
        key: vec![0; 4],
        end: true,
        goto: None,
        udata: vec![],
    };
    assert_eq!(encode::elements(set, elements).unwrap()[0], zero_end);
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
    let plan = full_replace(&a);
    let mut seq = 100;
    let b = batch::build(&plan.transaction, &mut seq).unwrap();
    let ops = plan.transaction.ops.len();
    assert_eq!(b.messages(), ops);
    assert_eq!(seq, 100 + ops as u32 + 2);
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
    let plan = full_replace(&a);
    let mut seq = u32::MAX - 3;
    let b = batch::build(&plan.transaction, &mut seq).unwrap();
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
fn ops_print_in_nfts_words() {
    let base = Chain {
        base: Some(BaseChain {
            hook: Hook::Forward,
            priority: -10,
        }),
        ..chain("forward-egress", vec![])
    };
    let v6 = AddrSet {
        family: Family::V6,
        ..set("peers-v6", true, vec![])
    };
    let ops = [
        Op::AddChain(ChainDef::of(&base)),
        Op::DeleteChain { name: "c".into() },
        Op::DeleteSet { name: "s".into() },
        Op::DeleteElements {
            set: "peers-v6".into(),
            elements: Elements::Interval {
                family: Family::V6,
                zero_end: true,
                ranges: vec![elem("2001:db8::", "2001:db8::ffff", Some("gone"))],
            },
        },
        Op::AddSet(SetDef::of_set(&v6)),
    ];
    let tx = Transaction { ops: ops.to_vec() };
    assert_eq!(
        tx.to_string(),
        "add chain forward-egress { type filter hook forward priority filter - 10; \
         policy accept; comment \"forward-egress\" }\n\
         delete chain c\n\
         delete set s\n\
         delete element peers-v6 { :: (interval end), 2001:db8::/112 }\n\
         add set peers-v6 { type ipv6_addr; flags interval; comment \"c\" }\n"
    );
}

#[test]
fn fake_refuses_what_the_kernel_would_and_recovers() {
    let mut dp = FakeDataplane::new();
    let good = small();
    dp.apply(&good).unwrap();
    let mut bad = small();
    bad.chains[1].rules.push(lookup("missing"));
    let err = dp.apply(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel rejected add rule pol ip saddr @missing accept: \
         No such file or directory (os error 2) (set missing does not exist)"
    );
    assert!(dp.current().is_none());
    assert_eq!(
        dp.kernel(),
        Some(&good),
        "the refused batch changed nothing"
    );
    let report = dp.apply(&good).unwrap();
    assert_eq!(report.kind, ApplyKind::Full);
    assert_eq!(dp.current(), Some(&good));
}

#[test]
fn dataplanes_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<super::NetlinkDataplane>();
    send::<FakeDataplane>();
}
