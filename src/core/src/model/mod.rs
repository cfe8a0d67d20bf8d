//! The cluster as policy sees it: our own trimmed, owned types.
//!
//! Nothing here knows `kube` or `k8s-openapi`, and nothing here does I/O.
//! The sources (`files`, later the API watchers) build these types; `resolve`
//! reads them.

pub mod labels;
pub mod net;
pub mod policy;
pub mod pool;
pub mod snapshot;

pub use labels::{Labels, Operator, Requirement, Selector};
pub use policy::{
    Direction, NamespaceScope, Peer, Policy, PolicyTypes, PortRef, PortSpec, Protocol, Rule,
};
pub use pool::{Pool, Pools, Shared};
pub use snapshot::{ContainerPort, Namespace, NamespacedName, Pod, PodPhase, Snapshot};
