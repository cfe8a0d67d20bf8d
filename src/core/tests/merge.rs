//! How a pod chain merges the allows of the policies that select the pod:
//! unions shared between pods, large peer sets kept apart, overlapping port
//! ranges cut into disjoint ones, and the verdicts unchanged by any of it.

use std::net::IpAddr;

use nftpolicy_core::model::{Protocol, Selector, Snapshot};
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::build::{build, MERGE_LIMIT};
use nftpolicy_core::ruleset::trace::{trace, CtState, Outcome, Packet, L4};
use nftpolicy_core::ruleset::{Hook, Ruleset};
use nftpolicy_testkit::*;

/// Two local `app=web` pods, one remote pod per label in `peers`, and the
/// policies given.
fn shop(peers: &[&str], policies: Vec<nftpolicy_core::model::Policy>) -> Snapshot {
    let mut pods = vec![
        pod("shop", "web-1")
            .labels([("app", "web")])
            .ip("10.0.0.1")
            .node("n1"),
        pod("shop", "web-2")
            .labels([("app", "web")])
            .ip("10.0.0.2")
            .node("n1"),
    ];
    for (i, app) in peers.iter().enumerate() {
        pods.push(
            pod("shop", app)
                .labels([("app", *app)])
                .ip(&format!("10.0.1.{}", i + 1))
                .node("n2"),
        );
    }
    snapshot([namespace("shop", [])], pods, policies)
}

fn web_from(name: &str, from: &str) -> nftpolicy_core::model::Policy {
    policy("shop", name)
        .select(Selector::labels([("app", "web")]))
        .ingress(rule().pods(Selector::labels([("app", from)])))
}

fn rules(rs: &Ruleset, chain: &str) -> Vec<String> {
    rs.chain(chain)
        .unwrap_or_else(|| panic!("no chain {chain}"))
        .rules
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn verdict(rs: &Ruleset, src: &str, dst: &str, protocol: Protocol, port: u16) -> Outcome {
    trace(
        rs,
        &Packet {
            src: src.parse::<IpAddr>().unwrap(),
            dst: dst.parse::<IpAddr>().unwrap(),
            l4: L4::Port { protocol, port },
            ct: CtState::New,
            hook: Hook::Forward,
            mark: 0,
        },
    )
    .outcome
}

#[test]
fn pods_selected_by_the_same_policies_share_one_union() {
    let s = shop(
        &["a", "b"],
        vec![web_from("from-a", "a"), web_from("from-b", "b")],
    );
    let rs = build(&resolve(&s, "n1"));
    let (one, two) = (
        rules(&rs, "pod-ingress-shop/web-1"),
        rules(&rs, "pod-ingress-shop/web-2"),
    );
    assert_eq!(one, two, "the same rules, the same set");
    assert_eq!(one.len(), 2, "{one:?}");
    let set = one[0]
        .split_once("ip saddr @")
        .and_then(|(_, rest)| rest.split_once(' '))
        .map(|(name, _)| name)
        .expect("a lookup");
    assert!(set.starts_with("allow-"), "{set}");
    assert!(
        one[0].ends_with("accept comment \"shop/from-a ingress[0], shop/from-b ingress[0]\""),
        "{}",
        one[0]
    );
    let union = rs.set(set).expect("the union set");
    let addrs: Vec<String> = union
        .elements
        .iter()
        .map(|e| e.range.first.to_string())
        .collect();
    assert_eq!(addrs, ["10.0.1.1", "10.0.1.2"]);
    assert!(
        union.comment.starts_with("union of 2: "),
        "{}",
        union.comment
    );
    // The members' own sets are not in the table: nothing looks them up.
    assert_eq!(
        rs.sets
            .iter()
            .filter(|s| s.name.starts_with("peers-"))
            .count(),
        0
    );
    for (src, want) in [
        ("10.0.1.1", Outcome::Accept),
        ("10.0.1.2", Outcome::Accept),
        ("10.0.9.9", Outcome::Drop),
    ] {
        assert_eq!(
            verdict(&rs, src, "10.0.0.2", Protocol::Tcp, 80),
            want,
            "{src}"
        );
    }
}

#[test]
fn a_large_peer_set_keeps_its_own_set_and_rule() {
    let mut s = shop(
        &["a", "b"],
        vec![web_from("from-a", "a"), web_from("from-b", "b")],
    );
    let big = MERGE_LIMIT + 10;
    for i in 0..big {
        s.add_pod(
            pod("shop", &format!("crowd-{i}"))
                .labels([("app", "crowd")])
                .ip(&format!("10.1.{}.{}", i / 250, 1 + i % 250))
                .node("n2"),
        );
    }
    s.add_policy(web_from("from-crowd", "crowd"));
    let rs = build(&resolve(&s, "n1"));
    let chain = rules(&rs, "pod-ingress-shop/web-1");
    assert_eq!(chain.len(), 3, "union, the large set, the drop: {chain:?}");
    assert!(chain[0].contains("@allow-"), "{}", chain[0]);
    assert!(chain[1].contains("@peers-"), "{}", chain[1]);
    assert!(
        chain[1].ends_with("comment \"shop/from-crowd ingress[0]\""),
        "{}",
        chain[1]
    );
    let sizes: Vec<(bool, usize)> = rs
        .sets
        .iter()
        .map(|s| (s.name.starts_with("allow-"), s.elements.len()))
        .collect();
    assert_eq!(sizes, [(true, 2), (false, big)], "the crowd is not copied");
    for (src, want) in [
        ("10.0.1.2", Outcome::Accept),
        ("10.1.0.7", Outcome::Accept),
        ("10.2.0.1", Outcome::Drop),
    ] {
        assert_eq!(
            verdict(&rs, src, "10.0.0.1", Protocol::Udp, 53),
            want,
            "{src}"
        );
    }
}

#[test]
fn overlapping_port_ranges_become_disjoint_ranges_each_with_one_lookup() {
    let policies = vec![
        policy("shop", "range")
            .select(Selector::labels([("app", "web")]))
            .ingress(rule().pods(Selector::labels([("app", "a")])).port_range(
                Protocol::Tcp,
                1000,
                2000,
            )),
        policy("shop", "single")
            .select(Selector::labels([("app", "web")]))
            .ingress(
                rule()
                    .pods(Selector::labels([("app", "b")]))
                    .port(Protocol::Tcp, 1500),
            ),
        policy("shop", "all-tcp")
            .select(Selector::labels([("app", "web")]))
            .ingress(
                rule()
                    .pods(Selector::labels([("app", "d")]))
                    .protocol(Protocol::Tcp),
            ),
    ];
    let s = shop(&["a", "b", "d"], policies);
    let rs = build(&resolve(&s, "n1"));
    let chain = rules(&rs, "pod-ingress-shop/web-1");
    let ports: Vec<&str> = chain
        .iter()
        .filter_map(|r| r.strip_prefix("tcp dport "))
        .map(|r| r.split_once(' ').map_or(r, |(p, _)| p))
        .collect();
    assert_eq!(
        ports,
        ["0-999", "1000-1499", "1500", "1501-2000", "2001-65535"],
        "{chain:#?}"
    );
    assert_eq!(chain.len(), 6, "five ranges and the drop: {chain:#?}");
    let (a, b, d, x) = ("10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.9.9");
    for port in [0, 999, 1000, 1499, 1500, 1501, 2000, 2001, 65535] {
        let allowed = |who: &str| match who {
            _ if who == a => (1000..=2000).contains(&port),
            _ if who == b => port == 1500,
            _ if who == d => true,
            _ => false,
        };
        for src in [a, b, d, x] {
            let want = if allowed(src) {
                Outcome::Accept
            } else {
                Outcome::Drop
            };
            assert_eq!(
                verdict(&rs, src, "10.0.0.1", Protocol::Tcp, port),
                want,
                "{src} tcp/{port}"
            );
        }
        // UDP is allowed by none of them.
        assert_eq!(
            verdict(&rs, d, "10.0.0.1", Protocol::Udp, port),
            Outcome::Drop
        );
    }
}
