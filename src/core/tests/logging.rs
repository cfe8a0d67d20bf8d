//! Drop and allow logging in the built ruleset: where the log rules go,
//! what their prefixes say, what the id map names, and that logging never
//! changes a verdict (`trace` with and without it agree on every packet).

use std::net::IpAddr;

use nftpolicy_core::model::{Direction, NamespacedName, Protocol, Selector, Snapshot};
use nftpolicy_core::resolve::explain::{explain, Endpoint, Flow};
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::build::build;
use nftpolicy_core::ruleset::logging::{
    build_logged, log_map, parse_prefix, prefix, LogOptions, LogSubject, LogVerdict,
};
use nftpolicy_core::ruleset::render::render;
use nftpolicy_core::ruleset::trace::{trace, CtState, Packet, L4};
use nftpolicy_core::ruleset::{Hook, Limit, RateUnit};
use nftpolicy_testkit::synth::{cluster, Spec, LOCAL_NODE};
use nftpolicy_testkit::*;

fn shop() -> Snapshot {
    snapshot(
        [namespace("shop", [])],
        [
            pod("shop", "db")
                .labels([("app", "db")])
                .ip("10.0.0.2")
                .node("n1"),
            pod("shop", "api")
                .labels([("app", "api")])
                .ip("10.0.1.2")
                .node("n2"),
        ],
        [
            policy("shop", "default-deny"),
            policy("shop", "db-from-api")
                .select(Selector::labels([("app", "db")]))
                .ingress(
                    rule()
                        .pods(Selector::labels([("app", "api")]))
                        .port(Protocol::Tcp, 5432),
                ),
        ],
    )
}

fn opts(drops: bool, allows: bool) -> LogOptions {
    LogOptions {
        group: 7,
        drops: drops.then(|| Limit::per(10, RateUnit::Second)),
        allows: allows.then(|| Limit::per(2, RateUnit::Minute).burst(1)),
    }
}

#[test]
fn without_logging_the_build_is_untouched() {
    for s in [
        shop(),
        cluster(Spec {
            pods: 1_000,
            policies: 100,
            local_pods: 50,
        }),
    ] {
        let r = resolve(&s, LOCAL_NODE);
        assert_eq!(build_logged(&r, &LogOptions::OFF).0, build(&r));
        let r = resolve(&s, "n1");
        assert_eq!(
            render(&build_logged(&r, &LogOptions::OFF).0),
            render(&build(&r))
        );
    }
}

#[test]
fn drops_and_allows_get_a_limited_logging_twin() {
    let r = resolve(&shop(), "n1");
    let (rs, map) = build_logged(&r, &opts(true, true));
    let pod_chain = rs.chain("pod-ingress-shop/db").expect("pod chain");
    let text: Vec<String> = pod_chain.rules.iter().map(|r| r.to_string()).collect();
    let id = map
        .iter()
        .find(|(_, e)| e.chain == "pod-ingress-shop/db")
        .map(|(id, _)| id.clone())
        .expect("id of the pod chain");
    assert_eq!(id.len(), 8, "{id}");
    let comment = "no policy allowed this ingress; shop/default-deny allows nothing";
    let accept = format!(
        "tcp dport 5432 ip saddr @{} accept comment \"shop/db-from-api ingress[0]\"",
        peer_set(&rs)
    );
    assert_eq!(
        text,
        [
            format!(
                "tcp dport 5432 ip saddr @{} limit rate 2/minute burst 1 packets log prefix \"knp:{id}:allow\" group 7 accept comment \"shop/db-from-api ingress[0]\"",
                peer_set(&rs)
            ),
            accept.clone(),
            format!(
                "limit rate 10/second counter packets 0 bytes 0 log prefix \"knp:{id}:drop\" group 7 drop comment \"{comment}\""
            ),
            format!("counter packets 0 bytes 0 drop comment \"{comment}\""),
        ]
    );
    // Drops only: the accepts stay as they are.
    let (drops_only, _) = build_logged(&r, &opts(true, false));
    let text: Vec<String> = drops_only
        .chain("pod-ingress-shop/db")
        .expect("pod chain")
        .rules
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(text[0], accept);
    assert_eq!(text.len(), 3, "{text:?}");
}

/// The one peer set of the shop's ruleset.
fn peer_set(rs: &nftpolicy_core::ruleset::Ruleset) -> String {
    let names: Vec<&str> = rs
        .sets
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| n.starts_with("peers-"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].to_owned()
}

#[test]
fn the_map_names_the_pod_and_every_isolating_policy_as_explain_does() {
    let s = shop();
    let map = log_map(&resolve(&s, "n1"));
    let entry = map
        .iter()
        .map(|(_, e)| e)
        .find(|e| e.chain == "pod-ingress-shop/db")
        .expect("entry");
    assert_eq!(entry.direction, Direction::Ingress);
    let LogSubject::Pod { pod, isolating } = &entry.subject;
    assert_eq!(pod, &NamespacedName::new("shop", "db"));
    let e = explain(
        &s,
        &Flow {
            from: Endpoint::Pod(NamespacedName::new("shop", "api")),
            to: Endpoint::Pod(NamespacedName::new("shop", "db")),
            protocol: Protocol::Udp,
            port: 53,
        },
    )
    .expect("explain");
    let names: Vec<String> = isolating.iter().map(|p| p.to_string()).collect();
    assert_eq!(names, e.ingress.isolated_by);
    assert_eq!(names, ["shop/db-from-api", "shop/default-deny"]);
    // One entry per pod chain; the remote api pod has no chain here.
    assert_eq!(map.len(), 1, "{map:?}");
    assert!(!map.iter().any(|(_, e)| e.chain.contains("shop/api")));
}

#[test]
fn ids_depend_only_on_the_chain() {
    let small = log_map(&resolve(&shop(), "n1"));
    let mut s = shop();
    s.add_pod(
        pod("shop", "db-2")
            .labels([("app", "db")])
            .ip("10.0.0.3")
            .node("n1"),
    );
    let bigger = log_map(&resolve(&s, "n1"));
    assert!(bigger.len() > small.len());
    for (id, entry) in small.iter() {
        assert_eq!(bigger.get(id), Some(entry), "{id} kept its meaning");
    }
}

#[test]
fn prefixes_round_trip_and_strangers_are_refused() {
    for v in [LogVerdict::Drop, LogVerdict::Allow] {
        let p = prefix("abcd2345", v);
        assert_eq!(parse_prefix(&p), Some(("abcd2345", v)));
    }
    assert_eq!(prefix("abcd2345", LogVerdict::Drop), "knp:abcd2345:drop");
    assert_eq!(
        parse_prefix("knp:abcd2345-1:allow"),
        Some(("abcd2345-1", LogVerdict::Allow))
    );
    for bad in [
        "",
        "knp:",
        "knp::drop",
        "knp:abc:reject",
        "xyz:abcd2345:drop",
        "knp:ABC:drop",
        "knp:a b:drop",
        "IN=eth0 OUT=",
    ] {
        assert_eq!(parse_prefix(bad), None, "case: {bad:?}");
    }
}

#[test]
fn logging_never_changes_a_verdict() {
    let s = cluster(Spec {
        pods: 300,
        policies: 40,
        local_pods: 30,
    });
    let r = resolve(&s, LOCAL_NODE);
    let plain = build(&r);
    let (logged, _) = build_logged(&r, &opts(true, true));
    assert!(logged.rule_count() > plain.rule_count());
    let ips: Vec<IpAddr> = s.pods.values().flat_map(|p| p.ips.clone()).collect();
    let l4s = [
        L4::Port {
            protocol: Protocol::Tcp,
            port: 80,
        },
        L4::Port {
            protocol: Protocol::Udp,
            port: 53,
        },
        L4::Port {
            protocol: Protocol::Tcp,
            port: 8080,
        },
        L4::Icmp { icmp_type: 8 },
    ];
    let mut checked = 0;
    for (i, src) in ips.iter().enumerate().step_by(7) {
        for dst in ips.iter().skip(i % 5).step_by(11) {
            for l4 in l4s {
                for hook in [Hook::Forward, Hook::Input] {
                    let p = Packet {
                        src: *src,
                        dst: *dst,
                        l4,
                        ct: CtState::New,
                        hook,
                        mark: 0,
                    };
                    assert_eq!(
                        trace(&logged, &p).outcome,
                        trace(&plain, &p).outcome,
                        "{p:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1_000, "{checked}");
}
