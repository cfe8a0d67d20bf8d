//! The cost of a packet walk as `trace` counts it: the order of a rule's
//! matches decides which lookups a new flow pays for.

use nftpolicy_core::model::{Protocol, Selector, Snapshot};
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::build::build;
use nftpolicy_core::ruleset::trace::{trace, Cost, CtState, Outcome, Packet, L4};
use nftpolicy_core::ruleset::Hook;
use nftpolicy_testkit::*;

/// The server on n1, the client on n2, and one policy allowing the server
/// TCP 80 from `app=client`.
fn server_and_client() -> Snapshot {
    snapshot(
        [namespace("shop", [])],
        [
            pod("shop", "server")
                .labels([("app", "server")])
                .ip("10.0.0.2")
                .node("n1"),
            pod("shop", "client")
                .labels([("app", "client")])
                .ip("10.0.1.2")
                .node("n2"),
        ],
        [policy("shop", "allow-client")
            .select(Selector::labels([("app", "server")]))
            .ingress(
                rule()
                    .pods(Selector::labels([("app", "client")]))
                    .port(Protocol::Tcp, 80),
            )],
    )
}

/// The server isolated also by a default deny: the walk of a new flow,
/// counted.
fn walk_cost(l4: L4) -> (Outcome, Cost) {
    let mut s = server_and_client();
    s.add_policy(policy("shop", "default-deny"));
    let t = trace(
        &build(&resolve(&s, "n1")),
        &Packet {
            src: "10.0.1.2".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            l4,
            ct: CtState::New,
            hook: Hook::Forward,
            mark: 0,
        },
    );
    (t.outcome, t.cost)
}

#[test]
fn a_rule_for_another_port_costs_no_lookup() {
    // forward-egress: 3 preamble rules, the v4 dispatch (a lookup that
    // misses: the client is not local), the v6 dispatch (no lookup for
    // an IPv4 packet). forward-ingress: 3 preamble rules and the v4
    // dispatch (a lookup that hits). The pod chain: the policy's one
    // rule (the default deny adds none), then the drop.
    let cases = [
        (
            "UDP 9 fails on the port compare, before the peer set",
            Protocol::Udp,
            9,
            Outcome::Drop,
            5 + 4 + 2,
            2,
        ),
        (
            "TCP 80 reaches the peer set",
            Protocol::Tcp,
            80,
            Outcome::Accept,
            5 + 4 + 1,
            3,
        ),
    ];
    for (case, protocol, port, outcome, rules, lookups) in cases {
        let got = walk_cost(L4::Port { protocol, port });
        assert_eq!(got, (outcome, Cost { rules, lookups }), "case: {case}");
    }
}

/// However many policies select the server, a new flow to it does the same
/// walk: the allows on every port are one lookup, the allows of its port
/// another.
#[test]
fn the_walk_does_not_grow_with_the_selecting_policies() {
    let cost = |extra: usize| {
        let mut s = server_and_client();
        for i in 0..extra {
            let app = format!("other-{i}");
            s.add_pod(
                pod("shop", &app)
                    .labels([("app", app.as_str())])
                    .ip(&format!("10.1.{}.{}", i / 200, 1 + i % 200))
                    .node("n2"),
            );
            s.add_policy(
                policy("shop", &format!("aaa-{i:03}"))
                    .select(Selector::labels([("app", "server")]))
                    .ingress(rule().pods(Selector::labels([("app", app.as_str())]))),
            );
        }
        let rs = build(&resolve(&s, "n1"));
        let packet = |port| Packet {
            src: "10.0.1.2".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            l4: L4::Port {
                protocol: Protocol::Tcp,
                port,
            },
            ct: CtState::New,
            hook: Hook::Forward,
            mark: 0,
        };
        let (allowed, denied) = (trace(&rs, &packet(80)), trace(&rs, &packet(81)));
        assert_eq!(allowed.outcome, Outcome::Accept, "{extra} policies");
        assert_eq!(denied.outcome, Outcome::Drop, "{extra} policies");
        (allowed.cost, denied.cost)
    };
    let one = cost(1);
    for n in [10, 100] {
        assert_eq!(cost(n), one, "{n} policies walk as 1 does");
    }
}

/// The index judges every packet as the scan does, on a synthetic cluster
/// (ipBlocks with except, named ports, namespace selectors), both families.
#[test]
fn the_index_judges_like_the_scan() {
    use nftpolicy_core::ruleset::trace::Index;
    use nftpolicy_testkit::synth::{cluster, Spec, LOCAL_NODE};
    let s = cluster(Spec {
        pods: 600,
        policies: 60,
        local_pods: 30,
    });
    let rs = build(&resolve(&s, LOCAL_NODE));
    let index = Index::new(&rs);
    let ips: Vec<std::net::IpAddr> = s.pods.values().flat_map(|p| p.ips.clone()).collect();
    let l4s = [
        L4::Port {
            protocol: Protocol::Tcp,
            port: 8080,
        },
        L4::Port {
            protocol: Protocol::Tcp,
            port: 9090,
        },
        L4::Port {
            protocol: Protocol::Tcp,
            port: 8050,
        },
        L4::Port {
            protocol: Protocol::Udp,
            port: 53,
        },
        L4::Port {
            protocol: Protocol::Tcp,
            port: 443,
        },
        L4::Icmp { icmp_type: 8 },
    ];
    let (mut checked, mut dropped) = (0, 0);
    for (i, src) in ips.iter().enumerate().step_by(7) {
        for dst in ips.iter().skip(i % 5).step_by(11) {
            if src.is_ipv4() != dst.is_ipv4() {
                continue;
            }
            for l4 in l4s {
                let p = Packet {
                    src: *src,
                    dst: *dst,
                    l4,
                    ct: CtState::New,
                    hook: Hook::Forward,
                    mark: 0,
                };
                let want = trace(&rs, &p);
                assert_eq!(index.verdict(&p), want.outcome, "{p:?}");
                assert_eq!(index.trace(&p), want, "{p:?}");
                checked += 1;
                dropped += usize::from(want.outcome == Outcome::Drop);
            }
        }
    }
    assert!(
        checked > 1000 && dropped > 0 && dropped < checked,
        "{checked} packets, {dropped} dropped"
    );
}
