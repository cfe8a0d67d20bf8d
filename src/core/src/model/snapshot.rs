//! The snapshot: every namespace, pod and policy the resolver sees, in
//! ordered maps so that the same cluster always gives the same ruleset.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU16;
use std::sync::Arc;

use super::labels::Labels;
use super::policy::{Policy, Protocol};

/// A `namespace/name` key. Its parts are shared strings: a pod's key holds
/// the pod's own, and the copies the resolver keeps cost no allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespacedName {
    /// The namespace.
    pub namespace: Arc<str>,
    /// The object's name.
    pub name: Arc<str>,
}

impl NamespacedName {
    /// Builds a key from its parts.
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A namespace: its name and labels (with `kubernetes.io/metadata.name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The namespace name.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
}

/// The label the API server sets on every namespace to its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl Namespace {
    /// A namespace with `labels` plus `kubernetes.io/metadata.name`, as the API server sets it.
    pub fn new(name: impl Into<String>, mut labels: Labels) -> Self {
        let name = name.into();
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
        Self { name, labels }
    }
}

/// A pod's `status.phase`, as far as policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PodPhase {
    /// Pending, Running or Unknown: the pod may hold its IP.
    Active,
    /// Succeeded or Failed: the IP may already belong to another pod.
    Finished,
}

/// A named container port (only named ports matter to policy, but numbered
/// ones are kept for `explain`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerPort {
    /// `ports[].name`, if any.
    pub name: Option<String>,
    /// `ports[].containerPort`.
    pub port: NonZeroU16,
    /// `ports[].protocol` (TCP when omitted).
    pub protocol: Protocol,
}

/// A pod, trimmed to what policy needs. Its strings and labels are shared
/// (the agent's stores pool the namespace, node and label set that many
/// pods have in common, [`Pool`](super::Pool)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Namespace of the pod.
    pub namespace: Arc<str>,
    /// Name of the pod.
    pub name: Arc<str>,
    /// Its labels.
    pub labels: Labels,
    /// `spec.nodeName`, once scheduled.
    pub node: Option<Arc<str>>,
    /// Every IP of `status.podIPs` (IPv4 and IPv6), in the order given.
    pub ips: Vec<IpAddr>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// Running or finished.
    pub phase: PodPhase,
    /// Container ports of every container (and init container) of the pod.
    pub ports: Vec<ContainerPort>,
}

/// Why a pod takes no part in policy (neither selected nor a peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// `hostNetwork: true`: its traffic is the node's traffic.
    HostNetwork,
    /// No IP yet: nothing to match on.
    NoIp,
    /// Succeeded or Failed: its IP may already be reused.
    Finished,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ignored::HostNetwork => "hostNetwork pod: its traffic is node traffic",
            Ignored::NoIp => "pod has no IP",
            Ignored::Finished => "pod has finished (Succeeded/Failed)",
        })
    }
}

impl Pod {
    /// The key of this pod.
    pub fn key(&self) -> NamespacedName {
        NamespacedName::new(self.namespace.clone(), self.name.clone())
    }

    /// Why policy ignores this pod, or `None` if it takes part.
    pub fn ignored(&self) -> Option<Ignored> {
        if self.host_network {
            Some(Ignored::HostNetwork)
        } else if self.phase == PodPhase::Finished {
            Some(Ignored::Finished)
        } else if self.ips.is_empty() {
            Some(Ignored::NoIp)
        } else {
            None
        }
    }

    /// The port number a named port resolves to on this pod, for `protocol`.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<NonZeroU16> {
        self.ports
            .iter()
            .find(|p| p.protocol == protocol && p.name.as_deref() == Some(name))
            .map(|p| p.port)
    }
}

/// Everything the resolver reads, keyed for deterministic iteration.
///
/// Objects are shared (`Arc`): a copy of the snapshot copies the maps, not
/// the objects, so the agent's watch stores, the sync and the drop-log
/// reader can each hold one for about a tenth of the memory of the objects
/// (`docs/performance.md`, "The agent binary at 100,000 pods").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    /// Pods by `namespace/name`.
    pub pods: BTreeMap<NamespacedName, Arc<Pod>>,
    /// Policies by `namespace/name`.
    pub policies: BTreeMap<NamespacedName, Arc<Policy>>,
}

impl Snapshot {
    /// Adds (or replaces) a namespace.
    pub fn add_namespace(&mut self, ns: impl Into<Arc<Namespace>>) {
        let ns = ns.into();
        self.namespaces.insert(ns.name.clone(), ns);
    }

    /// Adds (or replaces) a pod.
    pub fn add_pod(&mut self, pod: impl Into<Arc<Pod>>) {
        let pod = pod.into();
        self.pods.insert(pod.key(), pod);
    }

    /// Adds (or replaces) a policy.
    pub fn add_policy(&mut self, policy: impl Into<Arc<Policy>>) {
        let policy = policy.into();
        self.policies.insert(
            NamespacedName::new(policy.namespace.clone(), policy.name.clone()),
            policy,
        );
    }

    /// The labels of namespace `name`: its own, or only `kubernetes.io/metadata.name`
    /// when the namespace object is unknown (a pod's namespace always exists in a cluster).
    pub fn namespace_labels(&self, name: &str) -> Labels {
        match self.namespaces.get(name) {
            Some(ns) => ns.labels.clone(),
            None => Namespace::new(name, Labels::new()).labels,
        }
    }
}
