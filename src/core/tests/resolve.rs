//! Resolution scenarios: one per rule of docs/semantics.md,
//! checked by walking the built ruleset with real-looking packets and, where
//! the shape matters, on the `Resolution` itself.

use nftpolicy_core::model::{Operator, Policy, Protocol::*, Rule, Selector, Snapshot};
use nftpolicy_core::resolve::*;
use nftpolicy_core::ruleset::build::build;
use nftpolicy_core::ruleset::trace::L4;
use nftpolicy_testkit::*;

/// Whether a new flow from `src` to `dst` passes: the source's node judges
/// egress, the destination's node judges ingress (forward hook on both).
fn allowed(s: &Snapshot, src: &str, dst: &str, l4: L4) -> bool {
    NodeRulesets::new(s).allows(src.parse().unwrap(), dst.parse().unwrap(), l4)
}

fn tcp(port: u16) -> L4 {
    L4::Port {
        protocol: Tcp,
        port,
    }
}
fn udp(port: u16) -> L4 {
    L4::Port {
        protocol: Udp,
        port,
    }
}
fn sctp(port: u16) -> L4 {
    L4::Port {
        protocol: Sctp,
        port,
    }
}
const PING: L4 = L4::Icmp { icmp_type: 8 };

/// x/a, x/b on n1; y/c on n2; namespace y labelled team=blue.
fn cluster(policies: Vec<Policy>) -> Snapshot {
    snapshot(
        [namespace("x", []), namespace("y", [("team", "blue")])],
        [
            pod("x", "a")
                .labels([("app", "a")])
                .ip("10.0.1.1")
                .ip("fd00::1:1")
                .node("n1"),
            pod("x", "b")
                .labels([("app", "b"), ("tier", "db")])
                .ip("10.0.1.2")
                .ip("fd00::1:2")
                .node("n1"),
            pod("y", "c")
                .labels([("app", "c")])
                .ip("10.0.2.3")
                .ip("fd00::2:3")
                .node("n2"),
        ],
        policies,
    )
}

const A: &str = "10.0.1.1";
const B: &str = "10.0.1.2";
const C: &str = "10.0.2.3";
const OUTSIDE: &str = "192.0.2.9";

#[test]
fn no_policy_allows_everything() {
    let s = cluster(vec![]);
    assert!(allowed(&s, A, B, tcp(80)));
    assert!(allowed(&s, C, A, udp(53)));
    let r = resolve(&s, "n1");
    assert!(r.policies.is_empty());
    assert!(r
        .pods
        .iter()
        .all(|p| p.ingress.is_empty() && p.egress.is_empty()));
}

#[test]
fn policy_types_default_and_isolation_per_direction() {
    // (case, policy, a->b tcp/80 allowed, b->c tcp/80 allowed)
    let cases = [
        (
            "ingress deny-all (types omitted) isolates b's ingress only",
            policy("x", "p").select(Selector::labels([("app", "b")])),
            false,
            true,
        ),
        (
            "egress rule without types isolates egress too",
            policy("x", "p")
                .select(Selector::labels([("app", "b")]))
                .egress(rule().port(Tcp, 53)),
            false,
            false,
        ),
        (
            "explicit Egress only leaves ingress open",
            policy("x", "p")
                .select(Selector::labels([("app", "b")]))
                .types(false, true),
            true,
            false,
        ),
        (
            "explicit Egress ignores ingress rules",
            policy("x", "p")
                .select(Selector::labels([("app", "b")]))
                .types(false, true)
                .ingress(rule()),
            true,
            false,
        ),
    ];
    for (case, p, a_to_b, b_to_c) in cases {
        let s = cluster(vec![p]);
        assert_eq!(allowed(&s, A, B, tcp(80)), a_to_b, "case: {case} (a->b)");
        assert_eq!(allowed(&s, B, C, tcp(80)), b_to_c, "case: {case} (b->c)");
    }
}

#[test]
fn egress_of_source_and_ingress_of_destination_must_both_allow() {
    let deny_egress_a = policy("x", "deny-a")
        .select(Selector::labels([("app", "a")]))
        .types(false, true);
    let allow_a_egress = policy("x", "allow-a")
        .select(Selector::labels([("app", "a")]))
        .egress(rule().pods(Selector::labels([("app", "b")])));
    let deny_ingress_b = policy("x", "deny-b").select(Selector::labels([("app", "b")]));
    let allow_b_ingress = policy("x", "allow-b")
        .select(Selector::labels([("app", "b")]))
        .ingress(rule().pods(Selector::labels([("app", "a")])));
    let cases = [
        (
            "egress denied, ingress open",
            vec![deny_egress_a.clone()],
            false,
        ),
        (
            "egress open, ingress denied",
            vec![deny_ingress_b.clone()],
            false,
        ),
        (
            "egress allowed, ingress denied",
            vec![
                deny_egress_a.clone(),
                allow_a_egress.clone(),
                deny_ingress_b.clone(),
            ],
            false,
        ),
        (
            "egress denied, ingress allowed",
            vec![deny_egress_a.clone(), allow_b_ingress.clone()],
            false,
        ),
        (
            "both allowed",
            vec![
                deny_egress_a,
                allow_a_egress,
                deny_ingress_b,
                allow_b_ingress,
            ],
            true,
        ),
    ];
    for (case, policies, want) in cases {
        assert_eq!(
            allowed(&cluster(policies), A, B, tcp(80)),
            want,
            "case: {case}"
        );
    }
}

#[test]
fn policies_and_rules_are_additive() {
    let only_b = |name: &str, r: Rule| {
        policy("x", name)
            .select(Selector::labels([("app", "b")]))
            .ingress(r)
    };
    let s = cluster(vec![
        only_b(
            "p1",
            rule().pods(Selector::labels([("app", "a")])).port(Tcp, 80),
        ),
        only_b("p2", rule().port(Udp, 53)).ingress(rule().ip_block("192.0.2.0/24", &[])),
    ]);
    assert!(allowed(&s, A, B, tcp(80)), "p1 rule 0");
    assert!(!allowed(&s, A, B, tcp(81)), "port not in p1");
    assert!(allowed(&s, C, B, udp(53)), "p2 rule 0: any peer on udp/53");
    assert!(
        allowed(&s, OUTSIDE, B, tcp(9999)),
        "p2 rule 1: ipBlock, any port"
    );
    assert!(!allowed(&s, C, B, tcp(80)), "c matches no rule");
}

#[test]
fn peers_table() {
    let to_b = |r: Rule| {
        vec![policy("x", "p")
            .select(Selector::labels([("app", "b")]))
            .ingress(r)]
    };
    // (case, rule, from a, from c, from outside)
    let cases = [
        ("no peers: anyone", rule(), true, true, true),
        (
            "podSelector alone: own namespace only",
            rule().pods(Selector::everything()),
            true,
            false,
            false,
        ),
        (
            "podSelector by label",
            rule().pods(Selector::labels([("app", "c")])),
            false,
            false,
            false,
        ),
        (
            "namespaceSelector alone: all pods there",
            rule().namespaces(Selector::labels([("team", "blue")])),
            false,
            true,
            false,
        ),
        (
            "namespaceSelector {}: every pod, no outside",
            rule().namespaces(Selector::everything()),
            true,
            true,
            false,
        ),
        (
            "both selectors: AND",
            rule().pods_in(
                Selector::labels([("team", "blue")]),
                Selector::labels([("app", "a")]),
            ),
            false,
            false,
            false,
        ),
        (
            "both selectors matching c",
            rule().pods_in(
                Selector::labels([("team", "blue")]),
                Selector::labels([("app", "c")]),
            ),
            false,
            true,
            false,
        ),
        (
            "namespace by metadata.name label",
            rule().namespaces(Selector::labels([("kubernetes.io/metadata.name", "x")])),
            true,
            false,
            false,
        ),
        (
            "ipBlock",
            rule().ip_block("10.0.0.0/16", &[]),
            true,
            true,
            false,
        ),
        (
            "ipBlock except carves",
            rule().ip_block("10.0.0.0/16", &["10.0.2.0/24"]),
            true,
            false,
            false,
        ),
        (
            "ipBlock 0.0.0.0/0",
            rule().ip_block("0.0.0.0/0", &["10.0.1.0/24"]),
            false,
            true,
            true,
        ),
    ];
    for (case, r, from_a, from_c, from_outside) in cases {
        let s = cluster(to_b(r));
        assert_eq!(allowed(&s, A, B, tcp(80)), from_a, "case: {case} (from a)");
        assert_eq!(allowed(&s, C, B, tcp(80)), from_c, "case: {case} (from c)");
        assert_eq!(
            allowed(&s, OUTSIDE, B, tcp(80)),
            from_outside,
            "case: {case} (from outside)"
        );
    }
}

#[test]
fn match_expressions_table() {
    let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    // Ingress to every pod of x from pods of x chosen by expression; source a (app=a) or b (app=b,tier=db).
    let cases = [
        (
            "In",
            Selector::everything().with("app", Operator::In(set(&["a", "z"]))),
            true,
            false,
        ),
        (
            "NotIn",
            Selector::everything().with("app", Operator::NotIn(set(&["a"]))),
            false,
            true,
        ),
        (
            "Exists",
            Selector::everything().with("tier", Operator::Exists),
            false,
            true,
        ),
        (
            "DoesNotExist",
            Selector::everything().with("tier", Operator::DoesNotExist),
            true,
            false,
        ),
    ];
    for (case, sel, from_a, from_b) in cases {
        let s = cluster(vec![policy("x", "p").ingress(rule().pods(sel))]);
        assert_eq!(allowed(&s, A, B, tcp(1)), from_a, "case: {case} (a->b)");
        assert_eq!(allowed(&s, B, A, tcp(1)), from_b, "case: {case} (b->a)");
    }
}

#[test]
fn ports_table() {
    let to_b = |r: Rule| {
        cluster(vec![policy("x", "p")
            .select(Selector::labels([("app", "b")]))
            .ingress(r)])
    };
    let cases: Vec<(&str, Rule, L4, bool)> = vec![
        ("no ports: every protocol", rule(), udp(9), true),
        ("no ports: ICMP too", rule(), PING, true),
        ("ports: no ICMP", rule().port(Tcp, 80), PING, false),
        ("numeric tcp", rule().port(Tcp, 80), tcp(80), true),
        (
            "numeric tcp, other port",
            rule().port(Tcp, 80),
            tcp(81),
            false,
        ),
        (
            "tcp port does not open udp",
            rule().port(Tcp, 80),
            udp(80),
            false,
        ),
        ("udp", rule().port(Udp, 53), udp(53), true),
        ("sctp", rule().port(Sctp, 9), sctp(9), true),
        (
            "protocol without port: all its ports",
            rule().protocol(Udp),
            udp(4000),
            true,
        ),
        (
            "protocol without port: not others",
            rule().protocol(Udp),
            tcp(4000),
            false,
        ),
        (
            "endPort: first",
            rule().port_range(Tcp, 8000, 8010),
            tcp(8000),
            true,
        ),
        (
            "endPort: last",
            rule().port_range(Tcp, 8000, 8010),
            tcp(8010),
            true,
        ),
        (
            "endPort: past the end",
            rule().port_range(Tcp, 8000, 8010),
            tcp(8011),
            false,
        ),
    ];
    for (case, r, l4, want) in cases {
        assert_eq!(allowed(&to_b(r), A, B, l4), want, "case: {case}");
    }
}

#[test]
fn named_ports_resolve_per_destination_pod() {
    let pods = [
        pod("x", "a")
            .labels([("app", "web")])
            .ip("10.0.1.1")
            .node("n1")
            .port("http", 8080, Tcp),
        pod("x", "b")
            .labels([("app", "web")])
            .ip("10.0.1.2")
            .node("n1")
            .port("http", 9090, Tcp),
        pod("x", "c")
            .labels([("app", "client")])
            .ip("10.0.1.3")
            .node("n1"),
        pod("x", "d")
            .labels([("app", "web")])
            .ip("10.0.1.4")
            .node("n2")
            .port("http", 7070, Tcp),
    ];
    // Ingress: each selected pod's own number.
    let s = snapshot(
        [],
        pods.clone(),
        [policy("x", "in")
            .select(Selector::labels([("app", "web")]))
            .ingress(rule().named_port(Tcp, "http"))],
    );
    assert!(allowed(&s, "10.0.1.3", "10.0.1.1", tcp(8080)));
    assert!(
        !allowed(&s, "10.0.1.3", "10.0.1.1", tcp(9090)),
        "b's number is not a's"
    );
    assert!(allowed(&s, "10.0.1.3", "10.0.1.2", tcp(9090)));
    assert!(
        allowed(&s, "10.0.1.3", "10.0.1.4", tcp(7070)),
        "remote node resolves d's own port"
    );
    assert!(
        !allowed(
            &s,
            "10.0.1.3",
            "10.0.1.1",
            L4::Port {
                protocol: Udp,
                port: 8080
            }
        ),
        "name is per protocol"
    );
    // Egress: (peer address, port) pairs.
    let s = snapshot(
        [],
        pods.clone(),
        [policy("x", "out")
            .select(Selector::labels([("app", "client")]))
            .egress(
                rule()
                    .pods(Selector::labels([("app", "web")]))
                    .named_port(Tcp, "http"),
            )],
    );
    assert!(allowed(&s, "10.0.1.3", "10.0.1.1", tcp(8080)));
    assert!(
        !allowed(&s, "10.0.1.3", "10.0.1.1", tcp(9090)),
        "pairs, not a cross product"
    );
    assert!(allowed(&s, "10.0.1.3", "10.0.1.2", tcp(9090)));
    assert!(allowed(&s, "10.0.1.3", "10.0.1.4", tcp(7070)));
    // A name that resolves nowhere allows nothing (and never everything).
    let s = snapshot(
        [],
        pods,
        [policy("x", "none")
            .select(Selector::labels([("app", "web")]))
            .ingress(rule().named_port(Tcp, "nope"))],
    );
    assert!(!allowed(&s, "10.0.1.3", "10.0.1.1", tcp(8080)));
    let r = resolve(&s, "n1");
    assert_eq!(
        *r.policies[0].rules[0].ports,
        Ports::Listed {
            numeric: vec![],
            named: vec![]
        }
    );
}

#[test]
fn ignored_pods_are_neither_selected_nor_peers() {
    let s = snapshot(
        [namespace("x", [])],
        [
            pod("x", "web")
                .labels([("app", "web")])
                .ip("10.0.1.1")
                .node("n1"),
            pod("x", "host")
                .labels([("app", "client")])
                .ip("192.168.0.10")
                .node("n1")
                .host_network(),
            pod("x", "done")
                .labels([("app", "client")])
                .ip("10.0.1.7")
                .node("n1")
                .finished(),
            pod("x", "pending").labels([("app", "client")]).node("n1"),
            pod("x", "client")
                .labels([("app", "client")])
                .ip("10.0.1.8")
                .node("n1"),
        ],
        [
            policy("x", "allow-clients")
                .select(Selector::labels([("app", "web")]))
                .ingress(rule().pods(Selector::labels([("app", "client")]))),
            policy("x", "deny-clients-egress")
                .select(Selector::labels([("app", "client")]))
                .types(false, true),
        ],
    );
    let r = resolve(&s, "n1");
    let keys: Vec<String> = r.pods.iter().map(|p| p.key.to_string()).collect();
    assert_eq!(keys, ["x/client", "x/web"], "only active pods take part");
    let Peers::Addrs(peers) = &r.policies[0].rules[0].peers else {
        panic!("expected addresses")
    };
    let ips: Vec<String> = peers
        .addrs
        .v4
        .iter()
        .map(|e| e.range.first.to_string())
        .collect();
    assert_eq!(
        ips,
        ["10.0.1.8"],
        "hostNetwork and finished pods are not peers"
    );
    // The hostNetwork pod's traffic is node traffic: not judged as the pod's egress.
    assert!(
        !allowed(&s, "192.168.0.10", "10.0.1.1", tcp(80)),
        "node IP is no client peer"
    );
}

#[test]
fn only_local_pods_get_chains_but_remote_pods_are_peers() {
    let s =
        cluster(vec![policy("x", "p").ingress(
            rule().namespaces(Selector::labels([("team", "blue")])),
        )]);
    let r = resolve(&s, "n1");
    let isolated: Vec<String> = r
        .pods
        .iter()
        .filter(|p| !p.ingress.is_empty())
        .map(|p| p.key.to_string())
        .collect();
    assert_eq!(isolated, ["x/a", "x/b"]);
    let Peers::Addrs(peers) = &r.policies[0].rules[0].peers else {
        panic!("expected addresses")
    };
    assert_eq!(peers.addrs.v4.len(), 1, "y/c on n2 is a peer");
    let r2 = resolve(&s, "n2");
    assert!(r2.policies.is_empty(), "no local pod of n2 is selected");
    assert!(r2.pods.iter().all(|p| p.ingress.is_empty()));
}

#[test]
fn dual_stack_every_ip_is_enforced() {
    let s = cluster(vec![policy("x", "p")
        .select(Selector::labels([("app", "b")]))
        .ingress(rule().pods(Selector::labels([("app", "a")])).port(Tcp, 80))]);
    assert!(
        allowed(&s, "fd00::1:1", "fd00::1:2", tcp(80)),
        "v6 a->b allowed"
    );
    assert!(
        !allowed(&s, "fd00::2:3", "fd00::1:2", tcp(80)),
        "v6 c->b denied"
    );
    assert!(!allowed(&s, "fd00::1:1", "fd00::1:2", tcp(81)));
    let rs = build(&resolve(&s, "n1"));
    let v6 = rs.map("ingress-pods-v6").unwrap();
    assert_eq!(v6.elements.len(), 1, "b's IPv6 address is dispatched");
}

/// Equal snapshots (built in different orders; `Snapshot` keeps sorted maps,
/// so the snapshots are the same) resolve to equal resolutions: nothing in
/// resolution depends on hash order or on anything but the snapshot.
#[test]
fn equal_snapshots_resolve_identically() {
    let policies = vec![
        policy("x", "p2").ingress(rule().pods(Selector::labels([("app", "a")]))),
        policy("y", "p1").egress(rule().namespaces(Selector::everything()).port(Udp, 53)),
        policy("x", "p0")
            .select(Selector::labels([("app", "b")]))
            .types(true, true),
    ];
    let mut reversed = policies.clone();
    reversed.reverse();
    let a = cluster(policies);
    let mut b = Snapshot::default();
    for p in a.pods.values().rev() {
        b.add_pod(p.clone());
    }
    for n in a.namespaces.values().rev() {
        b.add_namespace(n.clone());
    }
    reversed.into_iter().for_each(|p| b.add_policy(p));
    for node in ["n1", "n2"] {
        assert_eq!(resolve(&a, node), resolve(&b, node), "node {node}");
    }
}

#[test]
fn egress_named_port_to_an_ip_block_resolves_against_pods_inside_it() {
    // Found by the property test: peers and ports are separate conditions, so
    // a named port with an ipBlock peer allows the block's pods that have the port.
    let s = snapshot(
        [],
        [
            pod("x", "client")
                .labels([("app", "client")])
                .ip("10.0.1.1")
                .ip("fd00::1")
                .node("n1"),
            pod("y", "web")
                .ip("10.0.1.2")
                .ip("fd00::2")
                .node("n1")
                .port("http", 8080, Tcp),
        ],
        [policy("x", "out")
            .select(Selector::labels([("app", "client")]))
            .egress(rule().ip_block("10.0.1.0/24", &[]).named_port(Tcp, "http"))],
    );
    assert!(
        allowed(&s, "10.0.1.1", "10.0.1.2", tcp(8080)),
        "pod inside the block, its port"
    );
    assert!(
        !allowed(&s, "10.0.1.1", "10.0.1.2", tcp(80)),
        "not another port"
    );
    assert!(
        !allowed(&s, "fd00::1", "fd00::2", tcp(8080)),
        "the pod's IPv6 address is outside the block"
    );
}

#[test]
fn explain_agrees_with_resolution_on_an_end_port_below_the_port() {
    // Sources reject `endPort` < `port`; should one get through, resolution
    // allows `port` alone, and explain must say the same.
    let s = cluster(vec![policy("x", "p")
        .select(Selector::labels([("app", "b")]))
        .ingress(rule().port_range(Tcp, 90, 80))]);
    let explained = |port: u16| {
        let flow = explain::Flow {
            from: explain::Endpoint::Addr(A.parse().unwrap()),
            to: explain::Endpoint::Addr(B.parse().unwrap()),
            protocol: Tcp,
            port,
        };
        explain::explain(&s, &flow).unwrap().allowed
    };
    for (port, want) in [(90, true), (85, false), (80, false), (91, false)] {
        assert_eq!(allowed(&s, A, B, tcp(port)), want, "data path, port {port}");
        assert_eq!(explained(port), want, "explain, port {port}");
    }
}
