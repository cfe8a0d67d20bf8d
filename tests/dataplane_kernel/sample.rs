//! Rulesets built by hand from the model types: every Match and Verdict
//! kind, both families, interval sets with ranges, prefixes, open ends,
//! 0.0.0.0/0 and ::/0, empty sets and maps, comments; and a large one.

use std::net::IpAddr;

use nftpolicy_core::ruleset::{
    AddrField, AddrRange, AddrSet, BaseChain, Chain, CtMatch, Family, Hook, MapElement, Match,
    PortRange, Protocol, Rule, Ruleset, SetElement, Verdict, VerdictMap,
};

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

pub fn range(a: &str, b: &str, comment: Option<&str>) -> SetElement {
    SetElement {
        range: AddrRange {
            first: ip(a),
            last: ip(b),
        },
        comment: comment.map(Into::into),
    }
}

pub fn single(a: &str, comment: Option<&str>) -> SetElement {
    range(a, a, comment)
}

pub fn set(name: &str, family: Family, interval: bool, elements: Vec<SetElement>) -> AddrSet {
    AddrSet {
        name: name.into(),
        family,
        interval,
        comment: format!("peers of {name}"),
        elements: elements.into(),
    }
}

pub fn map(name: &str, family: Family, elements: &[(&str, &str)]) -> VerdictMap {
    VerdictMap {
        name: name.into(),
        family,
        comment: format!("dispatch {name}"),
        elements: elements
            .iter()
            .map(|(addr, chain)| MapElement {
                addr: ip(addr),
                comment: format!("pod at {addr}"),
                chain: (*chain).into(),
            })
            .collect(),
    }
}

pub fn chain(name: &str, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.into(),
        base: None,
        comment: format!("chain {name}"),
        rules,
    }
}

pub fn base(name: &str, hook: Hook, priority: i32, rules: Vec<Rule>) -> Chain {
    Chain {
        base: Some(BaseChain { hook, priority }),
        ..chain(name, rules)
    }
}

pub fn in_set(family: Family, field: AddrField, set: &str) -> Match {
    Match::AddrInSet {
        family,
        field,
        set: set.into(),
    }
}

pub fn dport(protocol: Protocol, first: u16, last: u16) -> Match {
    Match::DestPort {
        protocol,
        ports: PortRange { first, last },
    }
}

pub fn dispatch(family: Family, field: AddrField, map: &str) -> Rule {
    Rule::new(
        vec![],
        Verdict::Dispatch {
            family,
            field,
            map: map.into(),
        },
    )
    .comment("isolated local pods to their chain")
}

pub fn base_rules(field: AddrField, dir: &str, invalid: bool) -> Vec<Rule> {
    let mut rules = vec![
        Rule::new(
            vec![Match::Ct(CtMatch::EstablishedRelated)],
            Verdict::Accept,
        )
        .comment("replies and related traffic"),
        Rule::new(vec![Match::Icmpv6NeighbourDiscovery], Verdict::Accept)
            .comment("IPv6 neighbour discovery"),
    ];
    if invalid {
        rules.push(Rule::new(vec![Match::Ct(CtMatch::Invalid)], Verdict::Drop));
    }
    rules.push(dispatch(Family::V4, field, &format!("{dir}-pods-v4")));
    rules.push(dispatch(Family::V6, field, &format!("{dir}-pods-v6")));
    rules
}

pub fn pod_chain(name: &str, policies: &[&str]) -> Chain {
    let mut rules: Vec<Rule> = policies
        .iter()
        .map(|p| Rule::new(vec![], Verdict::Jump((*p).into())).comment(format!("policy {p}")))
        .collect();
    rules.push(
        Rule::new(vec![], Verdict::Drop)
            .counted()
            .comment(format!("{name} isolated: no policy allowed this")),
    );
    chain(name, rules)
}

/// Every Match and Verdict kind, both families, interval sets with ranges,
/// prefixes, open ends, 0.0.0.0/0 and ::/0, empty sets and maps, comments.
pub fn sample() -> Ruleset {
    use Family::{V4, V6};
    Ruleset {
        maps: vec![
            map("egress-pods-v4", V4, &[("10.244.1.7", OUT)]),
            map("egress-pods-v6", V6, &[]),
            map(
                "ingress-pods-v4",
                V4,
                &[("10.244.1.7", WEB), ("10.244.1.9", POD_DB)],
            ),
            map("ingress-pods-v6", V6, &[("fd00:10:244:1::7", WEB)]),
        ],
        sets: sample_sets(),
        chains: sample_chains(),
    }
}

const WEB: &str = "pod-ingress-shop/web";
const OUT: &str = "pod-egress-shop/web";
const P_DB: &str = "policy-ingress-shop/allow-db";
const P_OUT: &str = "policy-egress-shop/out";

fn sample_sets() -> Vec<AddrSet> {
    use Family::{V4, V6};
    vec![
        set(
            "peers-shop/allow-web/ingress-0-v4",
            V4,
            true,
            vec![
                single("10.0.0.1", Some("shop/frontend")),
                range("10.1.0.0", "10.1.255.255", Some("ipBlock 10.1.0.0/16")),
                range("192.168.1.5", "192.168.1.9", None),
                range("224.0.0.0", "255.255.255.255", Some("to the end")),
            ],
        ),
        set(
            "peers-shop/allow-web/ingress-0-v6",
            V6,
            true,
            vec![
                range(
                    "fd00::",
                    "fd00::ffff:ffff:ffff:ffff",
                    Some("ipBlock fd00::/64"),
                ),
                range("fe80::1", "fe80::5", None),
                range("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
            ],
        ),
        set(
            "peers-shop/allow-db/ingress-0-v4",
            V4,
            true,
            vec![range(
                "0.0.0.0",
                "255.255.255.255",
                Some("ipBlock 0.0.0.0/0"),
            )],
        ),
        set(
            "peers-shop/allow-db/ingress-0-v6",
            V6,
            true,
            vec![range("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None)],
        ),
        set(
            "peers-shop/out/egress-0-v4",
            V4,
            false,
            vec![
                single("10.244.2.3", Some("shop/api-1")),
                single("10.244.2.4", Some("shop/api-2")),
                single("10.244.3.1", None),
            ],
        ),
        set(
            "peers-shop/out/egress-0-v6",
            V6,
            false,
            vec![single("fd00:10:244:2::3", Some("shop/api-1"))],
        ),
        set(
            "node-pod-cidrs-v4",
            V4,
            true,
            vec![range("10.244.1.0", "10.244.1.255", Some("node pod CIDR"))],
        ),
        set(
            "node-known-v6",
            V6,
            false,
            vec![single("fd00:10:244:1::7", Some("shop/web"))],
        ),
        set("peers-shop/out/egress-1-v4", V4, false, vec![]),
        set("peers-shop/out/egress-1-v6", V6, true, vec![]),
    ]
}

/// The gate's constructs: a conntrack mark bit, negated set lookups, reject.
fn gate_chain() -> Chain {
    use AddrField::Source as S;
    use Family::{V4, V6};
    let not_in = |family, set: &str| Match::AddrNotInSet {
        family,
        field: S,
        set: set.into(),
    };
    chain(
        "gate",
        vec![
            Rule::new(vec![Match::CtMarkBit(0x2000_0000)], Verdict::Drop)
                .counted()
                .comment("cut flows"),
            Rule::new(
                vec![
                    in_set(V4, S, "node-pod-cidrs-v4"),
                    not_in(V4, "peers-shop/out/egress-0-v4"),
                ],
                Verdict::Reject(V4),
            )
            .counted()
            .comment("unknown pod address"),
            Rule::new(vec![not_in(V6, "node-known-v6")], Verdict::Reject(V6)),
        ],
    )
}

/// Drop and allow logging: `limit` (default and other bursts, several
/// units), `counter` and `log prefix … group …` in nft's order, with and
/// without matches and comments.
fn log_chain() -> Chain {
    use nftpolicy_core::ruleset::{Limit, Log, RateUnit};
    let log = |prefix: &str, group| Log {
        prefix: prefix.into(),
        group,
    };
    chain(
        "pod-egress-shop/logged",
        vec![
            Rule::new(vec![dport(Protocol::Tcp, 443, 443)], Verdict::Accept)
                .limited(Limit::per(2, RateUnit::Minute).burst(1))
                .logged(log("knp:abcdefgh:allow", 9841))
                .comment("shop/out egress[0]"),
            Rule::new(vec![dport(Protocol::Tcp, 443, 443)], Verdict::Accept),
            Rule::new(vec![], Verdict::Drop)
                .limited(Limit::per(10, RateUnit::Second))
                .counted()
                .logged(log("knp:zyxwvuts:drop", 9841))
                .comment("no policy allowed this egress"),
            Rule::new(vec![], Verdict::Drop)
                .limited(Limit::per(3, RateUnit::Hour).burst(20))
                .logged(log("knp:zyxwvuts-1:drop", 65535)),
            Rule::new(vec![], Verdict::Drop)
                .counted()
                .comment("no policy allowed this egress"),
        ],
    )
}

fn sample_chains() -> Vec<Chain> {
    use AddrField::{Destination as D, Source as S};
    use Family::{V4, V6};
    vec![
        base(
            "forward-egress",
            Hook::Forward,
            -1,
            base_rules(S, "egress", true),
        ),
        base(
            "forward-ingress",
            Hook::Forward,
            0,
            base_rules(D, "ingress", true),
        ),
        base(
            "input-egress",
            Hook::Input,
            -1,
            base_rules(S, "egress", false),
        ),
        base("input-ingress", Hook::Input, 10, vec![]),
        gate_chain(),
        log_chain(),
        pod_chain(WEB, &[P_WEB]),
        pod_chain(POD_DB, &[P_DB, P_WEB]),
        pod_chain(OUT, &[P_OUT]),
        chain(
            P_WEB,
            vec![
                Rule::new(
                    vec![
                        in_set(V4, S, "peers-shop/allow-web/ingress-0-v4"),
                        dport(Protocol::Tcp, 80, 80),
                    ],
                    Verdict::Accept,
                )
                .comment("ingress[0]"),
                Rule::new(
                    vec![
                        in_set(V6, S, "peers-shop/allow-web/ingress-0-v6"),
                        dport(Protocol::Udp, 5000, 5100),
                    ],
                    Verdict::Accept,
                ),
                Rule::new(
                    vec![
                        in_set(V4, S, "peers-shop/allow-db/ingress-0-v4"),
                        Match::AddrIs {
                            field: D,
                            addr: ip("10.244.1.7"),
                        },
                        dport(Protocol::Sctp, 9000, 9000),
                    ],
                    Verdict::Accept,
                )
                .counted()
                .comment("named port"),
                Rule::new(
                    vec![
                        Match::AddrIs {
                            field: D,
                            addr: ip("fd00:10:244:1::7"),
                        },
                        Match::L4Proto(Protocol::Udp),
                    ],
                    Verdict::Accept,
                ),
                Rule::new(vec![Match::L4Proto(Protocol::Tcp)], Verdict::Accept),
            ],
        ),
        chain(
            P_DB,
            vec![Rule::new(
                vec![in_set(V6, S, "peers-shop/allow-db/ingress-0-v6")],
                Verdict::Accept,
            )
            .comment("ingress[0]")],
        ),
        chain(
            P_OUT,
            vec![
                Rule::new(
                    vec![
                        in_set(V4, S, "peers-shop/allow-db/ingress-0-v4"),
                        in_set(V4, D, "peers-shop/out/egress-0-v4"),
                    ],
                    Verdict::Accept,
                )
                .comment("egress[0]"),
                Rule::new(
                    vec![in_set(V6, D, "peers-shop/out/egress-0-v6")],
                    Verdict::Accept,
                ),
                Rule::new(
                    vec![
                        in_set(V4, D, "peers-shop/out/egress-1-v4"),
                        dport(Protocol::Tcp, 1, 65535),
                    ],
                    Verdict::Accept,
                ),
                Rule::new(
                    vec![
                        in_set(V6, D, "peers-shop/out/egress-1-v6"),
                        dport(Protocol::Sctp, 1000, 2000),
                    ],
                    Verdict::Accept,
                ),
                Rule::new(vec![], Verdict::Accept).comment("egress[2]: any peer, any port"),
            ],
        ),
    ]
}

pub fn chain_mut<'a>(rs: &'a mut Ruleset, name: &str) -> &'a mut Chain {
    rs.chains
        .iter_mut()
        .find(|c| c.name == name)
        .expect("chain")
}

pub fn set_mut<'a>(rs: &'a mut Ruleset, name: &str) -> &'a mut AddrSet {
    rs.sets.iter_mut().find(|s| s.name == name).expect("set")
}

pub fn map_mut<'a>(rs: &'a mut Ruleset, name: &str) -> &'a mut VerdictMap {
    rs.maps.iter_mut().find(|m| m.name == name).expect("map")
}

pub const WEB_V4: &str = "peers-shop/allow-web/ingress-0-v4";
pub const WEB_V6: &str = "peers-shop/allow-web/ingress-0-v6";
pub const OUT_V4: &str = "peers-shop/out/egress-0-v4";
pub const P_WEB: &str = "policy-ingress-shop/allow-web";
pub const POD_DB: &str = "pod-ingress-shop/db";

/// 10,000 pods in a map and 10,000 peers in a set: a batch of many pages.
pub fn large(n: u32) -> Ruleset {
    let mut rs = sample();
    let addr = |i: u32| -> String {
        let v = 0x0a80_0000u32 + i;
        std::net::Ipv4Addr::from(v).to_string()
    };
    let elems: Vec<(String, &str)> = (0..n).map(|i| (addr(i), POD_DB)).collect();
    let refs: Vec<(&str, &str)> = elems.iter().map(|(a, c)| (a.as_str(), *c)).collect();
    *map_mut(&mut rs, "ingress-pods-v4") = map("ingress-pods-v4", Family::V4, &refs);
    set_mut(&mut rs, OUT_V4).set_elements(
        (0..n)
            .map(|i| single(&addr(i * 2), Some(&format!("shop/peer-{i}"))))
            .collect(),
    );
    rs
}
