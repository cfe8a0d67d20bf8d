//! Real-kernel tests of the netlink dataplane. Each test makes its own
//! network namespace (removed on drop, even on panic), applies rulesets
//! built by hand from the model types into it, and compares
//! `nft list table inet kube-nftpolicy` with `render()` byte for byte.
//!
//! They need root (CAP_NET_ADMIN and `ip netns add`); without it they fail
//! with a message saying so, never skip.

#[path = "dataplane_kernel/netns.rs"]
mod netns;
#[path = "dataplane_kernel/sample.rs"]
mod sample;

use nftpolicy_core::ruleset::render::render;
use nftpolicy_core::ruleset::{BaseChain, Hook, MapElement, Protocol, Rule, Ruleset, Verdict};
use nftpolicy_nft::{self as dataplane, kernel_listing, ApplyKind, Dataplane};

use netns::*;
use sample::*;

// ---- tests ----

#[test]
fn full_apply_lists_as_rendered() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::full_apply_lists_as_rendered");
    let ns = Netns::new();
    let rs = sample();
    let mut dp = ns.dataplane();
    let report = dp.apply(&rs).expect("apply");
    assert_eq!(report.kind, ApplyKind::Full);
    assert!(report.messages > 0 && report.bytes > 0);
    assert_eq!(ns.list(), render(&rs));
    assert_eq!(dp.current(), Some(&rs));
    assert_eq!(dp.verify().expect("verify"), None);
}

#[test]
fn bytecode_equals_what_nft_makes_of_render() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::bytecode_equals_what_nft_makes_of_render");
    let ns_nft = Netns::new();
    let ns_dp = Netns::new();
    let rs = sample();
    ns_nft.load(&render(&rs));
    ns_dp.dataplane().apply(&rs).expect("apply");
    let want = kernel_listing(ns_nft.name()).expect("listing nft");
    let got = kernel_listing(ns_dp.name()).expect("listing dp");
    assert!(want.contains("\telement "), "{want}");
    assert!(want.lines().filter(|l| l.starts_with("rule ")).count() > 20);
    assert_eq!(got, want);
}

#[test]
fn empty_ruleset_and_second_apply_sends_nothing() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::empty_ruleset_and_second_apply_sends_nothing");
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    let empty = Ruleset::default();
    assert_eq!(dp.apply(&empty).expect("apply").kind, ApplyKind::Full);
    assert_eq!(ns.list(), render(&empty));
    let rs = sample();
    dp.apply(&rs).expect("apply");
    let before = ns.list();
    let again = dp.apply(&rs).expect("apply again");
    assert_eq!(again.kind, ApplyKind::NoChange);
    assert_eq!((again.messages, again.bytes), (0, 0));
    assert_eq!(ns.list(), before);
}

#[test]
fn incremental_element_add_and_remove() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::incremental_element_add_and_remove");
    let a = sample();
    let mut b = sample();
    let web = set_mut(&mut b, WEB_V4);
    web.edit_elements(|e| e.remove(1)); // 10.1.0.0/16
    web.edit_elements(|e| e.insert(0, single("10.0.0.0", Some("new first")))); // zero-end element stays
    web.edit_elements(|e| e.push(range("1.0.0.0", "1.0.0.255", None)));
    web.edit_elements(|e| e.sort());
    let v6 = set_mut(&mut b, WEB_V6);
    v6.edit_elements(|e| e.remove(0));
    set_mut(&mut b, OUT_V4).edit_elements(|e| e.push(single("10.244.9.9", Some("shop/new"))));
    let m = map_mut(&mut b, "ingress-pods-v4");
    m.elements.retain(|e| e.chain != POD_DB);
    m.elements[0].comment = "renamed comment".into();
    let (ns, mut dp) = check_transition(&a, &b);
    // And back: ranges starting at zero and the open end of the family.
    let mut c = b.clone();
    set_mut(&mut c, WEB_V4).set_elements(vec![range("0.0.0.0", "0.255.255.255", None)]);
    set_mut(&mut c, WEB_V6).edit_elements(|e| e.clear());
    assert_eq!(dp.apply(&c).expect("c").kind, ApplyKind::Incremental);
    assert_consistent(&ns, &dp);
    assert_eq!(dp.apply(&a).expect("a").kind, ApplyKind::Incremental);
    assert_consistent(&ns, &dp);
    assert_eq!(dp.verify().expect("verify"), None);
}

#[test]
fn incremental_chain_rules_changed() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::incremental_chain_rules_changed");
    let a = sample();
    let mut b = sample();
    let web = chain_mut(&mut b, P_WEB);
    web.rules.swap(0, 1);
    web.rules[2].comment = Some("changed".into());
    web.rules.push(Rule::new(
        vec![dport(Protocol::Udp, 53, 53)],
        Verdict::Accept,
    ));
    check_transition(&a, &b);
}

#[test]
fn incremental_pod_chain_added_then_removed() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::incremental_pod_chain_added_then_removed");
    let a = sample();
    let mut b = sample();
    let ghost = "pod-ingress-shop/new-pod";
    b.chains.insert(6, pod_chain(ghost, &[P_WEB]));
    let m = map_mut(&mut b, "ingress-pods-v6");
    m.elements.push(MapElement {
        addr: ip("fd00:10:244:1::42"),
        comment: "shop/new-pod".into(),
        chain: ghost.into(),
    });
    let (ns, mut dp) = check_transition(&a, &b);
    // The added chain sits at the end of the kernel's list.
    let current = dp.current().expect("current");
    assert_eq!(current.chains.last().map(|c| c.name.as_str()), Some(ghost));
    // Removing it: emptied and unhooked first, deleted by the next apply.
    let report = dp.apply(&a).expect("remove");
    assert_eq!((report.kind, report.deferred), (ApplyKind::Incremental, 1));
    assert_consistent(&ns, &dp);
    assert!(ns.list().contains(&format!("chain {ghost} {{")));
    let report = dp.apply(&a).expect("delete");
    assert_eq!((report.kind, report.deferred), (ApplyKind::Incremental, 0));
    assert!(!ns.list().contains(ghost));
    assert_eq!(dp.apply(&a).expect("settled").kind, ApplyKind::NoChange);
    assert_eq!(by_name(dp.current().expect("current")), by_name(&a));
}

#[test]
fn incremental_policy_and_set_removed_and_recreated() {
    nftpolicy_lab::kernel_test!(
        "dataplane_kernel::incremental_policy_and_set_removed_and_recreated"
    );
    let a = sample();
    let mut b = sample();
    // The db pod loses its policy on allow-web; policy chain allow-db and its sets go.
    b.chains
        .retain(|c| c.name != "policy-ingress-shop/allow-db");
    b.sets
        .retain(|s| !s.name.starts_with("peers-shop/allow-db/"));
    chain_mut(&mut b, P_WEB).rules.remove(2);
    chain_mut(&mut b, "policy-egress-shop/out").rules.remove(0);
    chain_mut(&mut b, POD_DB).rules.remove(0);
    // A set that gains a range must be re-created with flags interval.
    let out = set_mut(&mut b, OUT_V4);
    out.interval = true;
    out.edit_elements(|e| e.push(range("10.245.0.0", "10.245.255.255", Some("ipBlock"))));
    check_transition(&a, &b);
}

#[test]
fn model_changes_that_need_a_full_replace() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::model_changes_that_need_a_full_replace");
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    let a = sample();
    dp.apply(&a).expect("a");
    let mut b = sample();
    chain_mut(&mut b, "forward-ingress").base = Some(BaseChain {
        hook: Hook::Forward,
        priority: 5,
    });
    map_mut(&mut b, "egress-pods-v6").comment = "new comment".into();
    let report = dp.apply(&b).expect("b");
    assert_eq!(report.kind, ApplyKind::Full);
    assert_eq!(ns.list(), render(&b));
}

#[test]
fn deleted_table_is_detected_and_repaired() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::deleted_table_is_detected_and_repaired");
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    let rs = sample();
    dp.apply(&rs).expect("apply");
    ns.nft(&["delete", "table", "inet", "kube-nftpolicy"], None)
        .expect("delete by hand");
    let report = dp.apply(&rs).expect("repair");
    assert_eq!(report.kind, ApplyKind::Full);
    assert!(
        report.reason.as_deref().unwrap_or("").contains("missing"),
        "{report:?}"
    );
    assert_eq!(ns.list(), render(&rs));
    assert_eq!(dp.apply(&rs).expect("again").kind, ApplyKind::NoChange);
}

#[test]
fn rule_added_by_hand_is_detected_and_repaired() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::rule_added_by_hand_is_detected_and_repaired");
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    let rs = sample();
    dp.apply(&rs).expect("apply");
    ns.nft(
        &[
            "insert",
            "rule",
            "inet",
            "kube-nftpolicy",
            "forward-ingress",
            "accept",
        ],
        None,
    )
    .expect("add by hand");
    let report = dp.apply(&rs).expect("repair");
    assert_eq!(report.kind, ApplyKind::Full, "{report:?}");
    assert_eq!(ns.list(), render(&rs));
}

#[test]
fn element_deleted_by_hand_is_found_by_verify() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::element_deleted_by_hand_is_found_by_verify");
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    let rs = sample();
    dp.apply(&rs).expect("apply");
    ns.nft(
        &[
            "delete",
            "element",
            "inet",
            "kube-nftpolicy",
            OUT_V4,
            "{ 10.244.3.1 }",
        ],
        None,
    )
    .expect("delete element by hand");
    let drift = dp.verify().expect("verify");
    assert!(drift.as_deref().unwrap_or("").contains(OUT_V4), "{drift:?}");
    assert_eq!(dp.apply(&rs).expect("repair").kind, ApplyKind::Full);
    assert_eq!(ns.list(), render(&rs));
}

const NAT: &str = "table ip nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 8080 dnat to 10.0.0.5:80
	}
}
table inet filter {
	set blocked {
		type ipv4_addr
		elements = { 192.0.2.1 }
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @blocked counter packets 0 bytes 0 drop
	}
}
";

#[test]
fn other_tables_are_untouched() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::other_tables_are_untouched");
    let ns = Netns::new();
    ns.load(NAT);
    let others = || {
        let nat = ns.nft(&["list", "table", "ip", "nat"], None).expect("nat");
        let filter = ns
            .nft(&["list", "table", "inet", "filter"], None)
            .expect("filter");
        format!("{nat}{filter}")
    };
    let before = others();
    let mut dp = ns.dataplane();
    let a = sample();
    let mut b = sample();
    set_mut(&mut b, OUT_V4).edit_elements(|e| e.pop());
    dp.apply(&a).expect("full");
    assert_eq!(others(), before);
    dp.apply(&b).expect("incremental");
    assert_eq!(others(), before);
    // Someone else commits to their table: our next apply checks our table,
    // finds it intact and stays incremental.
    ns.nft(
        &[
            "add",
            "element",
            "inet",
            "filter",
            "blocked",
            "{ 192.0.2.2 }",
        ],
        None,
    )
    .expect("their change");
    let before = others();
    let report = dp.apply(&a).expect("incremental after their change");
    assert_eq!(report.kind, ApplyKind::Incremental, "{report:?}");
    assert_eq!(others(), before);
    dp.invalidate("test");
    assert_eq!(dp.apply(&a).expect("full again").kind, ApplyKind::Full);
    assert_eq!(others(), before);
    assert!(dp.cleanup().expect("cleanup"));
    assert_eq!(others(), before);
    assert!(!dataplane::cleanup(ns.name()).expect("cleanup again"));
    assert_eq!(others(), before);
    assert_eq!(
        ns.list_ruleset(),
        zero_counters(&NAT.replace("192.0.2.1 }", "192.0.2.1, 192.0.2.2 }"))
    );
}

#[test]
fn twenty_thousand_elements_in_one_batch() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::twenty_thousand_elements_in_one_batch");
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    let rs = large(10_000);
    let t = std::time::Instant::now();
    let report = dp.apply(&rs).expect("apply");
    eprintln!("full replace, 20k elements: {:?} ({report:?})", t.elapsed());
    assert_eq!(report.kind, ApplyKind::Full);
    assert!(report.bytes > 1 << 20, "{report:?}");
    assert_eq!(ns.list(), render(&rs));
    let mut b = rs.clone();
    set_mut(&mut b, OUT_V4).edit_elements(|e| e.push(single("10.200.0.1", Some("one more"))));
    let t = std::time::Instant::now();
    let report = dp.apply(&b).expect("one element");
    eprintln!("incremental, one element: {:?} ({report:?})", t.elapsed());
    assert_eq!((report.kind, report.messages), (ApplyKind::Incremental, 1));
    assert_eq!(dp.verify().expect("verify"), None);
}

#[test]
fn rejected_rule_leaves_previous_ruleset_whole() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::rejected_rule_leaves_previous_ruleset_whole");
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    let good = sample();
    dp.apply(&good).expect("apply");
    let before = ns.list();
    let mut bad = sample();
    chain_mut(&mut bad, POD_DB).rules.insert(
        1,
        Rule::new(vec![], Verdict::Jump("policy-ingress-nope/missing".into())),
    );
    set_mut(&mut bad, OUT_V4).edit_elements(|e| e.push(single("10.9.9.9", None)));
    let err = dp.apply(&bad).expect_err("must be rejected");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("kernel rejected add rule 2 of chain {POD_DB}"))
            && text.contains("jump policy-ingress-nope/missing")
            && text.contains("No such file or directory"),
        "{text}"
    );
    assert_eq!(err.metric_label(), "rejected");
    assert_eq!(ns.list(), before);
    assert!(dp.current().is_none());
    let report = dp.apply(&good).expect("recover");
    assert_eq!(report.kind, ApplyKind::Full);
    assert!(report.reason.is_some());
    assert_eq!(ns.list(), before);
}

#[test]
fn rejected_map_element_is_named() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::rejected_map_element_is_named");
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    let good = sample();
    dp.apply(&good).expect("apply");
    let before = ns.list();
    let mut bad = sample();
    let m = map_mut(&mut bad, "ingress-pods-v4");
    m.elements.push(MapElement {
        addr: ip("10.244.1.50"),
        comment: "shop/ghost".into(),
        chain: "pod-ingress-shop/ghost".into(),
    });
    let err = dp.apply(&bad).expect_err("must be rejected");
    let text = err.to_string();
    assert!(
        text.contains("map ingress-pods-v4")
            && text.contains("element 10.244.1.50 : goto pod-ingress-shop/ghost"),
        "{text}"
    );
    assert_eq!(ns.list(), before);
    // A broken first apply (full replace) leaves no table at all.
    let fresh = Netns::new();
    let err = fresh.dataplane().apply(&bad).expect_err("rejected");
    assert!(err.to_string().contains("pod-ingress-shop/ghost"), "{err}");
    assert!(fresh.list().starts_with("<no table"));
}

#[test]
fn cleanup_removes_only_our_table() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::cleanup_removes_only_our_table");
    let ns = Netns::new();
    assert!(!dataplane::cleanup(ns.name()).expect("nothing to clean"));
    let mut dp = ns.dataplane();
    dp.apply(&sample()).expect("apply");
    assert!(dataplane::cleanup(ns.name()).expect("cleanup"));
    assert!(ns.list().starts_with("<no table"));
    assert_eq!(ns.list_ruleset(), "");
    // The dataplane notices and replaces.
    assert_eq!(dp.apply(&sample()).expect("again").kind, ApplyKind::Full);
}

/// Every golden case, resolved and built for its node, applied one after
/// the other into one namespace: real rulesets, full and incremental.
#[test]
fn golden_rulesets_apply_one_after_another() {
    nftpolicy_lab::kernel_test!("dataplane_kernel::golden_rulesets_apply_one_after_another");
    use nftpolicy_core::{resolve::resolve, ruleset::build::build};
    use nftpolicy_source::files;
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    let mut dirs: Vec<_> = std::fs::read_dir("tests/golden")
        .expect("tests/golden")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("input.yaml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() > 5, "golden cases: {dirs:?}");
    let mut kinds = Vec::new();
    for dir in dirs.iter().chain(dirs.iter().rev()) {
        let input = dir.join("input.yaml");
        let text = std::fs::read_to_string(&input).expect("input");
        let node = text
            .lines()
            .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("node:"))
            .map_or("node-1".to_owned(), |n| n.trim().to_owned());
        let loaded = files::load(std::slice::from_ref(&input)).expect("load");
        let rs = build(&resolve(&loaded.snapshot, &node));
        let report = dp
            .apply(&rs)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        kinds.push(report.kind);
        if report.deferred > 0 {
            dp.apply(&rs).expect("deferred deletions");
        }
        assert_eq!(
            by_name(dp.current().expect("current")),
            by_name(&rs),
            "{}",
            dir.display()
        );
        assert_consistent(&ns, &dp);
        assert_eq!(dp.verify().expect("verify"), None, "{}", dir.display());
    }
    assert!(kinds.contains(&ApplyKind::Incremental), "{kinds:?}");
}

/// `name -> handle` of the table, chains, sets and maps, from `nft -a list`.
fn handles(ns: &Netns) -> std::collections::BTreeMap<String, String> {
    let out = ns
        .nft(&["-a", "list", "table", "inet", "kube-nftpolicy"], None)
        .expect("nft -a list");
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let (head, handle) = l.split_once(" { # handle ")?;
            Some((head.to_owned(), handle.trim().to_owned()))
        })
        .collect()
}

#[test]
fn a_full_replace_keeps_the_table_its_chains_and_maps() {
    nftpolicy_lab::kernel_test!(
        "dataplane_kernel::a_full_replace_keeps_the_table_its_chains_and_maps"
    );
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    let rs = sample();
    dp.apply(&rs).expect("apply");
    let before = handles(&ns);
    assert!(
        before.contains_key("table inet kube-nftpolicy"),
        "{before:?}"
    );
    // Drift by hand: a chain and a set of someone else's, a rule, a map
    // element gone.
    for cmd in [
        "add chain inet kube-nftpolicy stray",
        "add set inet kube-nftpolicy stray-set { type ipv4_addr; }",
        "insert rule inet kube-nftpolicy forward-ingress accept",
    ] {
        ns.load(cmd);
    }
    let map = &rs.maps[0];
    ns.load(&format!(
        "delete element inet kube-nftpolicy {} {{ {} }}",
        map.name, map.elements[0].addr
    ));

    let report = dp.apply(&rs).expect("repair");
    assert_eq!(report.kind, ApplyKind::Full, "{report:?}");
    assert_eq!(report.deferred, 0);
    assert_eq!(ns.list(), render(&rs));
    assert_consistent(&ns, &dp);
    let after = handles(&ns);
    for (what, handle) in &before {
        let kept =
            what.starts_with("table ") || what.starts_with("map ") || what.starts_with("chain ");
        if kept {
            assert_eq!(after.get(what), Some(handle), "{what} was not kept");
        } else {
            assert!(what.starts_with("set "), "{what}");
            assert_ne!(after.get(what), Some(handle), "{what} was not added again");
        }
    }
    assert!(!after.contains_key("set stray-set"), "{after:?}");
    assert!(!after.contains_key("chain stray"), "{after:?}");
    assert_eq!(dp.verify().expect("verify"), None);
    assert_eq!(dp.apply(&rs).expect("again").kind, ApplyKind::NoChange);

    // Forced replaces of an unchanged table keep everything but the sets.
    dp.force_full_replace("test");
    assert_eq!(dp.apply(&rs).expect("forced").kind, ApplyKind::Full);
    assert_eq!(ns.list(), render(&rs));
    assert_consistent(&ns, &dp);
    assert_eq!(
        handles(&ns).get("table inet kube-nftpolicy"),
        before.get("table inet kube-nftpolicy")
    );
}
