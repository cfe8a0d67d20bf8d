//! Set names when hashes collide: every peer definition keeps its own set,
//! whatever the hash does. The build is forced to collide (a constant hash)
//! and must enforce exactly what the normal build enforces.

use std::collections::BTreeSet;
use std::net::IpAddr;

use nftpolicy_core::model::{Protocol, Selector, Snapshot};
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::build::{build, build_with_hash};
use nftpolicy_core::ruleset::trace::{trace, CtState, Outcome, Packet, L4};
use nftpolicy_core::ruleset::{Hook, Ruleset};
use nftpolicy_testkit::*;

/// A server selected by policies with five distinct peer definitions (two
/// selectors, an ipBlock, an egress named port, both families).
fn cluster() -> Snapshot {
    snapshot(
        [namespace("shop", []), namespace("ops", [("team", "ops")])],
        [
            pod("shop", "server")
                .labels([("app", "server")])
                .ip("10.0.0.2")
                .ip("fd00::2")
                .node("n1")
                .port("http", 8080, Protocol::Tcp),
            pod("shop", "web")
                .labels([("app", "web")])
                .ip("10.0.1.2")
                .ip("fd00::1:2")
                .node("n2")
                .port("http", 8081, Protocol::Tcp),
            pod("shop", "api")
                .labels([("app", "api")])
                .ip("10.0.1.3")
                .node("n2"),
            pod("ops", "monitor")
                .labels([("app", "monitor")])
                .ip("10.0.2.2")
                .ip("fd00::2:2")
                .node("n2"),
        ],
        [
            policy("shop", "from-web")
                .select(Selector::labels([("app", "server")]))
                .ingress(
                    rule()
                        .pods(Selector::labels([("app", "web")]))
                        .port(Protocol::Tcp, 80),
                ),
            policy("shop", "from-api")
                .select(Selector::labels([("app", "server")]))
                .ingress(
                    rule()
                        .pods(Selector::labels([("app", "api")]))
                        .port(Protocol::Tcp, 81),
                ),
            policy("shop", "from-ops")
                .select(Selector::labels([("app", "server")]))
                .ingress(rule().namespaces(Selector::labels([("team", "ops")]))),
            policy("shop", "from-block")
                .select(Selector::labels([("app", "server")]))
                .ingress(rule().ip_block("10.0.1.3/32", &[]).port(Protocol::Udp, 53)),
            policy("shop", "to-web")
                .select(Selector::labels([("app", "server")]))
                .egress(
                    rule()
                        .pods(Selector::labels([("app", "web")]))
                        .named_port(Protocol::Tcp, "http"),
                ),
        ],
    )
}

fn set_names(rs: &Ruleset) -> Vec<&str> {
    rs.sets.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn colliding_hashes_never_share_a_set() {
    let s = cluster();
    let resolution = resolve(&s, "n1");
    let normal = build(&resolution);
    let collided = build_with_hash(&resolution, &Default::default(), |_| 7);

    let names = set_names(&collided);
    let distinct: BTreeSet<&&str> = names.iter().collect();
    assert_eq!(
        distinct.len(),
        names.len(),
        "duplicate set names: {names:?}"
    );
    assert_eq!(names.len(), normal.sets.len(), "{names:?}");
    assert!(
        names.iter().all(|n| n.len() > "peers-aaaaaaaa-v4".len()),
        "colliding ids are longer than short ones: {names:?}"
    );
    // Same sets, same elements, only the names differ.
    let contents = |rs: &Ruleset| {
        let mut v: Vec<_> = rs
            .sets
            .iter()
            .map(|s| (s.comment.clone(), s.elements.to_vec()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(contents(&collided), contents(&normal));

    // Every packet gets the same verdict from both tables.
    let addrs: Vec<IpAddr> = s.pods.values().flat_map(|p| p.ips.clone()).collect();
    let l4s = [
        L4::Port {
            protocol: Protocol::Tcp,
            port: 80,
        },
        L4::Port {
            protocol: Protocol::Tcp,
            port: 81,
        },
        L4::Port {
            protocol: Protocol::Tcp,
            port: 8081,
        },
        L4::Port {
            protocol: Protocol::Udp,
            port: 53,
        },
        L4::Icmp { icmp_type: 8 },
    ];
    let mut accepted = 0;
    for &src in &addrs {
        for &dst in &addrs {
            if src == dst || src.is_ipv4() != dst.is_ipv4() {
                continue;
            }
            for l4 in l4s {
                let p = Packet {
                    src,
                    dst,
                    l4,
                    ct: CtState::New,
                    hook: Hook::Forward,
                    mark: 0,
                };
                let want = trace(&normal, &p).outcome;
                assert_eq!(trace(&collided, &p).outcome, want, "{p:?}");
                accepted += usize::from(want == Outcome::Accept);
            }
        }
    }
    assert!(accepted > 0, "the table allows something");
}
