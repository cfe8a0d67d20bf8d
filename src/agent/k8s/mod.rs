//! The Kubernetes API source: watchers for Pods (all namespaces),
//! Namespaces and NetworkPolicies, and the stores that turn their events
//! into a [`Snapshot`](nftpolicy_core::model::Snapshot).
//!
//! - `watch.rs`: one kube-rs watcher per kind (LIST, then WATCH; re-list
//!   after `410 Gone`; backoff on errors). Pods are decoded into a slim
//!   type that declares only the fields policy reads (`trim.rs`:
//!   `SlimPod`; decoding whole pods was most of the time of a 100,000-pod
//!   list); namespaces and policies are trimmed on arrival (the watcher
//!   stream's `modify`). All are converted to `model` types at once by
//!   `nftpolicy_source::api`, straight from the typed object; the manifest
//!   reader ends in the same conversion.
//! - `snapshot.rs`: [`Stores`], a reflector of model objects: the current
//!   view of each kind, swapped whole when a (re-)list completes, shared
//!   copy-on-write with the sync, and the trigger of the sync loop. Invalid objects are warned about, counted and
//!   left out.
//!
//! `k8s-openapi` and `kube` types stop here: the sync loop sees a `Snapshot`.

pub mod node;
mod snapshot;
mod trim;
mod watch;

pub use snapshot::{Stores, Take, Taken};
pub use trim::SlimPod;
pub use watch::{spawn, WatchFailure, Watchers};

/// The kinds the agent watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1` Namespace.
    Namespace,
    /// `v1` Pod, in every namespace.
    Pod,
    /// `networking.k8s.io/v1` NetworkPolicy, in every namespace.
    NetworkPolicy,
}

impl Kind {
    /// `namespace`, `pod`, `networkpolicy`: for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::Pod => "pod",
            Kind::NetworkPolicy => "networkpolicy",
        }
    }

    /// The API resource, as RBAC rules and 403 messages name it: `pods`,
    /// `namespaces`, `networkpolicies`.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
            Kind::NetworkPolicy => "networkpolicies",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
