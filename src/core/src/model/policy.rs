//! NetworkPolicy as the resolver needs it: validated, owned, no `kube` types.
//!
//! Validation (CIDRs, port ranges, protocols) happens at the source that
//! builds these values, so every `Policy` here can be compiled.

use std::num::NonZeroU16;

use ipnet::IpNet;

use super::labels::Selector;
use super::snapshot::Pod;

/// A direction of traffic relative to the selected pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Traffic arriving at the pod (`spec.ingress`).
    Ingress,
    /// Traffic leaving the pod (`spec.egress`).
    Egress,
}

impl Direction {
    /// Both directions, ingress first.
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// `ingress` or `egress`, as used in names and comments.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A layer-4 protocol a NetworkPolicy port can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP, the default when `protocol` is omitted.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lower-case name nft prints (`tcp`, `udp`, `sctp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// Parses the Kubernetes spelling (`TCP`, `UDP`, `SCTP`, exactly).
    pub fn from_k8s(s: &str) -> Option<Self> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port as a policy names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortRef {
    /// A port number, possibly the start of an `endPort` range.
    Number(NonZeroU16),
    /// A container port name (IANA_SVC_NAME), resolved per pod.
    Name(String),
}

/// One entry of a rule's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    /// The protocol (TCP when omitted in the policy).
    pub protocol: Protocol,
    /// The port; `None` means every port of `protocol`.
    pub port: Option<PortRef>,
    /// The last port of a range starting at a numeric `port` (inclusive, ≥ port).
    pub end_port: Option<NonZeroU16>,
}

/// Which namespaces a pod peer is looked for in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamespaceScope {
    /// No `namespaceSelector`: the policy's own namespace.
    Own,
    /// A `namespaceSelector`: every namespace whose labels match (`{}` = all).
    Matching(Selector),
}

/// One entry of a rule's `from` / `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Pods chosen by `podSelector` and/or `namespaceSelector` (both = AND).
    Pods {
        /// Where to look for pods.
        namespaces: NamespaceScope,
        /// Which pods there (`{}` when `podSelector` is omitted).
        pods: Selector,
    },
    /// An `ipBlock`: `cidr` minus every `except` (each inside `cidr`).
    IpBlock {
        /// The block.
        cidr: IpNet,
        /// Holes carved out of it.
        except: Vec<IpNet>,
    },
}

/// One ingress or egress rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// `from` / `to`; empty means every peer, anywhere.
    pub peers: Vec<Peer>,
    /// `ports`; empty means every port of every protocol.
    pub ports: Vec<PortSpec>,
}

/// `spec.policyTypes` as written; `None` when omitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyTypes {
    /// `Ingress` is listed.
    pub ingress: bool,
    /// `Egress` is listed.
    pub egress: bool,
}

/// A NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Policy {
    /// Namespace of the policy (and of the pods it selects).
    pub namespace: String,
    /// Name of the policy.
    pub name: String,
    /// `spec.podSelector` (`{}` selects every pod of the namespace).
    pub pod_selector: Selector,
    /// `spec.policyTypes` when present.
    pub policy_types: Option<PolicyTypes>,
    /// `spec.ingress` rules, in order (indices appear in names and comments).
    pub ingress: Vec<Rule>,
    /// `spec.egress` rules, in order.
    pub egress: Vec<Rule>,
}

impl Policy {
    /// Whether the policy selects `pod`: same namespace, and `podSelector`
    /// matches its labels (whatever the direction or the pod's state).
    pub fn selects(&self, pod: &Pod) -> bool {
        *pod.namespace == *self.namespace && self.pod_selector.matches(&pod.labels)
    }

    /// Whether the policy isolates its pods in `dir`.
    ///
    /// With `policyTypes` omitted the API server defaults it to `[Ingress]`,
    /// plus `Egress` when the policy has any egress rule.
    pub fn isolates(&self, dir: Direction) -> bool {
        match (self.policy_types, dir) {
            (Some(t), Direction::Ingress) => t.ingress,
            (Some(t), Direction::Egress) => t.egress,
            (None, Direction::Ingress) => true,
            (None, Direction::Egress) => !self.egress.is_empty(),
        }
    }

    /// The rules for `dir` that count: none when the policy does not isolate in `dir`
    /// (rules of a direction absent from `policyTypes` are ignored, as by the API).
    pub fn rules(&self, dir: Direction) -> &[Rule] {
        if !self.isolates(dir) {
            return &[];
        }
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(types: Option<PolicyTypes>, ingress: usize, egress: usize) -> Policy {
        Policy {
            namespace: "ns".into(),
            name: "p".into(),
            pod_selector: Selector::everything(),
            policy_types: types,
            ingress: vec![Rule::default(); ingress],
            egress: vec![Rule::default(); egress],
        }
    }

    #[test]
    fn policy_types_defaulting() {
        let both = Some(PolicyTypes {
            ingress: true,
            egress: true,
        });
        let egress_only = Some(PolicyTypes {
            ingress: false,
            egress: true,
        });
        // (case, policy, isolates ingress, isolates egress, counted ingress rules)
        let cases = [
            (
                "omitted, no rules: ingress only",
                policy(None, 0, 0),
                true,
                false,
                0,
            ),
            (
                "omitted, ingress rules: ingress only",
                policy(None, 2, 0),
                true,
                false,
                2,
            ),
            (
                "omitted, egress rules: both",
                policy(None, 0, 1),
                true,
                true,
                0,
            ),
            (
                "explicit both, no rules: deny all",
                policy(both, 0, 0),
                true,
                true,
                0,
            ),
            (
                "explicit egress: ingress rules ignored",
                policy(egress_only, 3, 0),
                false,
                true,
                0,
            ),
        ];
        for (name, p, ing, eg, n) in cases {
            assert_eq!(
                p.isolates(Direction::Ingress),
                ing,
                "case: {name} (ingress)"
            );
            assert_eq!(p.isolates(Direction::Egress), eg, "case: {name} (egress)");
            assert_eq!(p.rules(Direction::Ingress).len(), n, "case: {name} (rules)");
        }
    }
}
