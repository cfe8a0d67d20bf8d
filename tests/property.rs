//! Property: for random small clusters and policies, walking the *built
//! ruleset model* for a packet gives the same verdict as an independent
//! evaluator of the NetworkPolicy semantics written here (it shares nothing
//! with `resolve` but the model types). Also: `explain` agrees, the output
//! does not depend on input order, and names are unique, valid and short.

use std::collections::BTreeSet;
use std::net::IpAddr;

use nftpolicy_core::model::net::Family;
use nftpolicy_core::model::*;
use nftpolicy_core::resolve::explain::{explain, Endpoint, Flow};
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::build::build;
use nftpolicy_core::ruleset::trace::L4;
use nftpolicy_testkit::*;
use proptest::prelude::*;

// ---------- the independent oracle ----------

fn labels_match(sel: &Selector, labels: &Labels) -> bool {
    for (k, v) in &sel.match_labels {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for r in &sel.match_expressions {
        let ok = match (&r.op, labels.get(&r.key)) {
            (Operator::In(vs), Some(v)) => vs.contains(v),
            (Operator::In(_), None) => false,
            (Operator::NotIn(vs), Some(v)) => !vs.contains(v),
            (Operator::NotIn(_), None) => true,
            (Operator::Exists, v) => v.is_some(),
            (Operator::DoesNotExist, v) => v.is_none(),
        };
        if !ok {
            return false;
        }
    }
    true
}

fn in_cidr(addr: IpAddr, cidr: &ipnet::IpNet) -> bool {
    cidr.contains(&addr)
}

struct Oracle<'a> {
    s: &'a Snapshot,
}

impl Oracle<'_> {
    fn live(&self, p: &Pod) -> bool {
        !p.host_network && !p.ips.is_empty() && p.phase == PodPhase::Active
    }

    fn pod_at(&self, addr: IpAddr) -> Option<&Pod> {
        self.s
            .pods
            .values()
            .find(|p| self.live(p) && p.ips.contains(&addr))
            .map(|p| &**p)
    }

    fn ns_labels(&self, ns: &str) -> Labels {
        let mut l = self
            .s
            .namespaces
            .get(ns)
            .map(|n| n.labels.clone())
            .unwrap_or_default();
        l.insert("kubernetes.io/metadata.name".into(), ns.into());
        l
    }

    fn types(p: &Policy) -> (bool, bool) {
        match p.policy_types {
            Some(t) => (t.ingress, t.egress),
            None => (true, !p.egress.is_empty()),
        }
    }

    /// The rules of every policy isolating `pod` in `ingress` (true) or egress; None = not isolated.
    fn rules(&self, pod: &Pod, ingress: bool) -> Option<Vec<(&Policy, &Rule)>> {
        let mut isolated = false;
        let mut out = vec![];
        for p in self.s.policies.values() {
            let (i, e) = Self::types(p);
            let applies = if ingress { i } else { e };
            if *p.namespace != *pod.namespace
                || !applies
                || !labels_match(&p.pod_selector, &pod.labels)
            {
                continue;
            }
            isolated = true;
            for r in if ingress { &p.ingress } else { &p.egress } {
                out.push((&**p, r));
            }
        }
        isolated.then_some(out)
    }

    fn peer_ok(&self, policy: &Policy, rule: &Rule, addr: IpAddr) -> bool {
        if rule.peers.is_empty() {
            return true;
        }
        let other = self.pod_at(addr);
        rule.peers.iter().any(|peer| match peer {
            Peer::IpBlock { cidr, except } => {
                in_cidr(addr, cidr) && !except.iter().any(|e| in_cidr(addr, e))
            }
            Peer::Pods { namespaces, pods } => other.is_some_and(|o| {
                let ns_ok = match namespaces {
                    NamespaceScope::Own => *o.namespace == *policy.namespace,
                    NamespaceScope::Matching(sel) => {
                        labels_match(sel, &self.ns_labels(&o.namespace))
                    }
                };
                ns_ok && labels_match(pods, &o.labels)
            }),
        })
    }

    fn port_ok(&self, rule: &Rule, dest: Option<&Pod>, proto: Protocol, port: u16) -> bool {
        if rule.ports.is_empty() {
            return true;
        }
        rule.ports.iter().any(|spec| {
            if spec.protocol != proto {
                return false;
            }
            match &spec.port {
                None => true,
                Some(PortRef::Number(n)) => {
                    let end = spec.end_port.map(|e| e.get()).unwrap_or(n.get());
                    n.get() <= port && port <= end
                }
                Some(PortRef::Name(name)) => dest.is_some_and(|d| {
                    d.ports.iter().any(|cp| {
                        cp.name.as_deref() == Some(name)
                            && cp.protocol == proto
                            && cp.port.get() == port
                    })
                }),
            }
        })
    }

    fn allows(&self, src: IpAddr, dst: IpAddr, proto: Protocol, port: u16) -> bool {
        let dst_pod = self.pod_at(dst);
        let egress = match self.pod_at(src).and_then(|p| self.rules(p, false)) {
            None => true,
            Some(rules) => rules
                .iter()
                .any(|(p, r)| self.peer_ok(p, r, dst) && self.port_ok(r, dst_pod, proto, port)),
        };
        let ingress = match dst_pod.and_then(|p| self.rules(p, true)) {
            None => true,
            Some(rules) => rules
                .iter()
                .any(|(p, r)| self.peer_ok(p, r, src) && self.port_ok(r, dst_pod, proto, port)),
        };
        egress && ingress
    }
}

// ---------- generators ----------

use nftpolicy_testkit::strategies::APPS;

fn selector() -> impl Strategy<Value = Selector> {
    nftpolicy_testkit::strategies::pod_selector()
}

fn ns_selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        Just(Selector::everything()),
        Just(Selector::labels([("team", "red")])),
        (0..3usize).prop_map(|i| Selector::labels([(
            "kubernetes.io/metadata.name",
            ["n0", "n1", "n2"][i]
        )])),
    ]
}

fn peer() -> impl Strategy<Value = Peer> {
    nftpolicy_testkit::strategies::peer(selector, ns_selector)
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    let n = |v: u16| Some(PortRef::Number(std::num::NonZeroU16::new(v).unwrap()));
    prop_oneof![
        Just(PortSpec {
            protocol: Protocol::Tcp,
            port: n(80),
            end_port: None
        }),
        Just(PortSpec {
            protocol: Protocol::Udp,
            port: n(53),
            end_port: None
        }),
        Just(PortSpec {
            protocol: Protocol::Tcp,
            port: n(8000),
            end_port: std::num::NonZeroU16::new(8080)
        }),
        Just(PortSpec {
            protocol: Protocol::Tcp,
            port: Some(PortRef::Name("http".into())),
            end_port: None
        }),
        Just(PortSpec {
            protocol: Protocol::Udp,
            port: None,
            end_port: None
        }),
    ]
}

fn rule_s() -> impl Strategy<Value = Rule> {
    (
        prop::collection::vec(peer(), 0..3),
        prop::collection::vec(port_spec(), 0..3),
    )
        .prop_map(|(peers, ports)| Rule { peers, ports })
}

fn policy_s() -> impl Strategy<Value = Policy> {
    (
        0..3usize,
        selector(),
        0..4u8,
        prop::collection::vec(rule_s(), 0..3),
        prop::collection::vec(rule_s(), 0..3),
        0..1000u32,
    )
        .prop_map(|(ns, sel, types, ingress, egress, id)| Policy {
            namespace: format!("n{ns}"),
            name: format!("p{id}"),
            pod_selector: sel,
            policy_types: match types {
                0 => None,
                1 => Some(PolicyTypes {
                    ingress: true,
                    egress: false,
                }),
                2 => Some(PolicyTypes {
                    ingress: false,
                    egress: true,
                }),
                _ => Some(PolicyTypes {
                    ingress: true,
                    egress: true,
                }),
            },
            ingress,
            egress,
        })
}

fn pod_s(i: usize) -> impl Strategy<Value = Pod> {
    (
        0..3usize,
        0..3usize,
        any::<bool>(),
        0..2usize,
        0..3u8,
        0..6u8,
    )
        .prop_map(move |(ns, app, tier, node, http, kind)| {
            let mut p = pod(&format!("n{ns}"), &format!("pod{i}"))
                .labels([("app", APPS[app])])
                .ip(&format!("10.1.0.{}", i + 1))
                .ip(&format!("fd00::{:x}", i + 1))
                .node(&format!("node{node}"));
            if tier {
                p = p.labels([("tier", "x")]);
            }
            match http {
                0 => p = p.port("http", 80, Protocol::Tcp),
                1 => p = p.port("http", 8080, Protocol::Tcp),
                _ => {}
            }
            match kind {
                0 => p.host_network(),
                1 => p.finished(),
                _ => p,
            }
        })
}

fn cluster() -> impl Strategy<Value = Snapshot> {
    let pods = (0..10usize).map(pod_s).collect::<Vec<_>>();
    (
        pods,
        2..10usize,
        prop::collection::vec(policy_s(), 0..5),
        any::<bool>(),
    )
        .prop_map(|(pods, n, policies, red)| {
            let nss = [
                namespace("n0", [("team", "red")]),
                namespace("n1", if red { vec![("team", "red")] } else { vec![] }),
                namespace("n2", []),
            ];
            snapshot(nss, pods.into_iter().take(n), policies)
        })
}

// ---------- the model under test ----------

fn addresses(s: &Snapshot, family: Family) -> Vec<IpAddr> {
    let mut out: BTreeSet<IpAddr> = s
        .pods
        .values()
        .flat_map(|p| p.ips.iter().copied())
        .filter(|a| Family::of(a) == family)
        .collect();
    out.insert(match family {
        Family::V4 => "192.0.2.1".parse().unwrap(),
        Family::V6 => "2001:db8::1".parse().unwrap(),
    });
    out.insert(match family {
        Family::V4 => "10.1.0.3".parse().unwrap(),
        Family::V6 => "fd00::3".parse().unwrap(),
    });
    out.into_iter().collect()
}

const FLOWS: [(Protocol, u16); 5] = [
    (Protocol::Tcp, 80),
    (Protocol::Tcp, 8080),
    (Protocol::Udp, 53),
    (Protocol::Tcp, 22),
    (Protocol::Udp, 80),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn built_ruleset_agrees_with_the_semantics(s in cluster()) {
        let rulesets = NodeRulesets::new(&s);
        let oracle = Oracle { s: &s };
        for family in Family::ALL {
            let addrs = addresses(&s, family);
            for &src in &addrs {
                for &dst in &addrs {
                    if src == dst {
                        continue;
                    }
                    for (proto, port) in FLOWS {
                        let want = oracle.allows(src, dst, proto, port);
                        let got = rulesets.allows(src, dst, L4::Port { protocol: proto, port });
                        prop_assert_eq!(got, want, "{} -> {} {}/{}", src, dst, port, proto);
                        let flow = Flow { from: Endpoint::Addr(src), to: Endpoint::Addr(dst), protocol: proto, port };
                        let e = explain(&s, &flow).unwrap();
                        prop_assert_eq!(e.allowed, want, "explain {} -> {} {}/{}", src, dst, port, proto);
                    }
                }
            }
        }
    }

    #[test]
    fn output_does_not_depend_on_input_order(s in cluster()) {
        let mut reversed = Snapshot::default();
        s.policies.values().rev().for_each(|p| reversed.add_policy(p.clone()));
        s.pods.values().rev().for_each(|p| reversed.add_pod(p.clone()));
        s.namespaces.values().rev().for_each(|n| reversed.add_namespace(n.clone()));
        for node in ["node0", "node1"] {
            prop_assert_eq!(
                nftpolicy_core::ruleset::render::render(&build(&resolve(&s, node))),
                nftpolicy_core::ruleset::render::render(&build(&resolve(&reversed, node)))
            );
        }
    }

    #[test]
    fn names_are_unique_valid_and_short(s in cluster()) {
        let rs = build(&resolve(&s, "node0"));
        let mut seen = BTreeSet::new();
        let names = rs.chains.iter().map(|c| c.name.clone())
            .chain(rs.sets.iter().map(|x| x.name.clone()))
            .chain(rs.maps.iter().map(|m| m.name.clone()));
        for name in names {
            prop_assert!(name.len() <= 255, "{} too long", name);
            prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c)), "{}", name);
            prop_assert!(name.starts_with(|c: char| c.is_ascii_alphabetic()), "{}", name);
            prop_assert!(seen.insert(name.clone()), "duplicate {}", name);
        }
    }
}
