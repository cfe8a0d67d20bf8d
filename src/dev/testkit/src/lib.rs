//! Builders that read like sentences, for tests, benches and examples:
//! `pod("shop", "web").labels([("app", "web")]).ip("10.0.0.7").node("n1")`.
//!
//! Plain constructors of model types; no I/O. A dev-only crate
//! (`publish = false`): tests, benches and the lab use it, the shipped
//! binary does not. [`synth`] builds deterministic synthetic clusters,
//! [`strategies`] holds the proptest strategies the property tests share.

pub mod strategies;
pub mod synth;

use std::num::NonZeroU16;

use ipnet::IpNet;

use nftpolicy_core::model::{
    ContainerPort, Labels, Namespace, NamespaceScope, Peer, Pod, PodPhase, Policy, PolicyTypes,
    PortRef, PortSpec, Protocol, Rule, Selector, Snapshot,
};

fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Labels {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn port(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).expect("test port must not be 0")
}

/// A namespace with labels (plus `kubernetes.io/metadata.name`).
pub fn namespace<'a>(name: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Namespace {
    Namespace::new(name, labels(pairs))
}

/// A running pod with no labels, IPs or node yet.
pub fn pod(namespace: &str, name: &str) -> Pod {
    Pod {
        namespace: namespace.into(),
        name: name.into(),
        labels: Labels::new(),
        node: None,
        ips: Vec::new(),
        host_network: false,
        phase: PodPhase::Active,
        ports: Vec::new(),
    }
}

/// Chained setters for `Pod`.
pub trait PodExt: Sized {
    /// Adds labels.
    fn labels<'a>(self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self;
    /// Adds an IP (IPv4 or IPv6).
    fn ip(self, ip: &str) -> Self;
    /// Schedules the pod on `node`.
    fn node(self, node: &str) -> Self;
    /// Makes it a hostNetwork pod.
    fn host_network(self) -> Self;
    /// Marks it Succeeded/Failed.
    fn finished(self) -> Self;
    /// Adds a named container port.
    fn port(self, name: &str, number: u16, protocol: Protocol) -> Self;
}

impl PodExt for Pod {
    fn labels<'a>(mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.labels.extend(labels(pairs));
        self
    }
    fn ip(mut self, ip: &str) -> Self {
        self.ips.push(ip.parse().expect("test IP must parse"));
        self
    }
    fn node(mut self, node: &str) -> Self {
        self.node = Some(node.into());
        self
    }
    fn host_network(mut self) -> Self {
        self.host_network = true;
        self
    }
    fn finished(mut self) -> Self {
        self.phase = PodPhase::Finished;
        self
    }
    fn port(mut self, name: &str, number: u16, protocol: Protocol) -> Self {
        self.ports.push(ContainerPort {
            name: Some(name.to_owned()),
            port: port(number),
            protocol,
        });
        self
    }
}

/// A policy selecting every pod of its namespace, with no rules and
/// `policyTypes` omitted (so: ingress default-deny).
pub fn policy(namespace: &str, name: &str) -> Policy {
    Policy {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        pod_selector: Selector::everything(),
        policy_types: None,
        ingress: Vec::new(),
        egress: Vec::new(),
    }
}

/// Chained setters for `Policy`.
pub trait PolicyExt: Sized {
    /// Sets `spec.podSelector`.
    fn select(self, selector: Selector) -> Self;
    /// Sets `spec.policyTypes`.
    fn types(self, ingress: bool, egress: bool) -> Self;
    /// Adds an ingress rule.
    fn ingress(self, rule: Rule) -> Self;
    /// Adds an egress rule.
    fn egress(self, rule: Rule) -> Self;
}

impl PolicyExt for Policy {
    fn select(mut self, selector: Selector) -> Self {
        self.pod_selector = selector;
        self
    }
    fn types(mut self, ingress: bool, egress: bool) -> Self {
        self.policy_types = Some(PolicyTypes { ingress, egress });
        self
    }
    fn ingress(mut self, rule: Rule) -> Self {
        self.ingress.push(rule);
        self
    }
    fn egress(mut self, rule: Rule) -> Self {
        self.egress.push(rule);
        self
    }
}

/// A rule that allows everything (no peers, no ports) until narrowed.
pub fn rule() -> Rule {
    Rule::default()
}

/// Chained setters for `Rule`.
pub trait RuleExt: Sized {
    /// Adds a `podSelector`-only peer (the policy's namespace).
    fn pods(self, pods: Selector) -> Self;
    /// Adds a `namespaceSelector`-only peer.
    fn namespaces(self, namespaces: Selector) -> Self;
    /// Adds a peer with both selectors (AND).
    fn pods_in(self, namespaces: Selector, pods: Selector) -> Self;
    /// Adds an `ipBlock` peer.
    fn ip_block(self, cidr: &str, except: &[&str]) -> Self;
    /// Adds a numeric port.
    fn port(self, protocol: Protocol, port: u16) -> Self;
    /// Adds a port range (`port` .. `endPort`).
    fn port_range(self, protocol: Protocol, first: u16, last: u16) -> Self;
    /// Adds a named port.
    fn named_port(self, protocol: Protocol, name: &str) -> Self;
    /// Adds every port of a protocol.
    fn protocol(self, protocol: Protocol) -> Self;
}

impl RuleExt for Rule {
    fn pods(mut self, pods: Selector) -> Self {
        self.peers.push(Peer::Pods {
            namespaces: NamespaceScope::Own,
            pods,
        });
        self
    }
    fn namespaces(mut self, namespaces: Selector) -> Self {
        self.peers.push(Peer::Pods {
            namespaces: NamespaceScope::Matching(namespaces),
            pods: Selector::everything(),
        });
        self
    }
    fn pods_in(mut self, namespaces: Selector, pods: Selector) -> Self {
        self.peers.push(Peer::Pods {
            namespaces: NamespaceScope::Matching(namespaces),
            pods,
        });
        self
    }
    fn ip_block(mut self, cidr: &str, except: &[&str]) -> Self {
        let net = |s: &str| s.parse::<IpNet>().expect("test CIDR must parse");
        self.peers.push(Peer::IpBlock {
            cidr: net(cidr),
            except: except.iter().map(|e| net(e)).collect(),
        });
        self
    }
    fn port(mut self, protocol: Protocol, p: u16) -> Self {
        self.ports.push(PortSpec {
            protocol,
            port: Some(PortRef::Number(port(p))),
            end_port: None,
        });
        self
    }
    fn port_range(mut self, protocol: Protocol, first: u16, last: u16) -> Self {
        self.ports.push(PortSpec {
            protocol,
            port: Some(PortRef::Number(port(first))),
            end_port: Some(port(last)),
        });
        self
    }
    fn named_port(mut self, protocol: Protocol, name: &str) -> Self {
        self.ports.push(PortSpec {
            protocol,
            port: Some(PortRef::Name(name.to_owned())),
            end_port: None,
        });
        self
    }
    fn protocol(mut self, protocol: Protocol) -> Self {
        self.ports.push(PortSpec {
            protocol,
            port: None,
            end_port: None,
        });
        self
    }
}

/// A snapshot from namespaces, pods and policies.
pub fn snapshot(
    namespaces: impl IntoIterator<Item = Namespace>,
    pods: impl IntoIterator<Item = Pod>,
    policies: impl IntoIterator<Item = Policy>,
) -> Snapshot {
    let mut s = Snapshot::default();
    namespaces.into_iter().for_each(|n| s.add_namespace(n));
    pods.into_iter().for_each(|p| s.add_pod(p));
    policies.into_iter().for_each(|p| s.add_policy(p));
    s
}

/// Every node's built ruleset, to walk packets through a whole cluster as
/// the kernels would: the source's node judges egress, the destination's
/// ingress, and a node with neither end local lets the packet pass.
pub struct NodeRulesets(std::collections::BTreeMap<String, nftpolicy_core::ruleset::Ruleset>);

impl NodeRulesets {
    /// Resolves and builds the table of every node a pod of `s` runs on.
    pub fn new(s: &Snapshot) -> Self {
        let nodes: std::collections::BTreeSet<&str> =
            s.pods.values().filter_map(|p| p.node.as_deref()).collect();
        Self(
            nodes
                .into_iter()
                .map(|n| {
                    let rs = nftpolicy_core::ruleset::build::build(
                        &nftpolicy_core::resolve::resolve(s, n),
                    );
                    (n.to_owned(), rs)
                })
                .collect(),
        )
    }

    /// Whether every node accepts `packet` on the forward hook.
    pub fn passes(&self, packet: &nftpolicy_core::ruleset::trace::Packet) -> bool {
        use nftpolicy_core::ruleset::trace::{trace, Outcome};
        self.0
            .values()
            .all(|rs| trace(rs, packet).outcome == Outcome::Accept)
    }

    /// Whether the first packet of a new flow `src` → `dst` passes.
    pub fn allows(
        &self,
        src: std::net::IpAddr,
        dst: std::net::IpAddr,
        l4: nftpolicy_core::ruleset::trace::L4,
    ) -> bool {
        self.passes(&nftpolicy_core::ruleset::trace::Packet {
            src,
            dst,
            l4,
            ct: nftpolicy_core::ruleset::trace::CtState::New,
            hook: nftpolicy_core::ruleset::Hook::Forward,
            mark: 0,
        })
    }
}
