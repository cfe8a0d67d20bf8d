//! The local test cluster's own parts (dev only, never shipped): a node
//! runner that plays the kubelet's part in networking against a real
//! kube-apiserver, with the real CNI plugins, and a prober that sends real
//! packets from a pod's network namespace. `scripts/cluster.sh` starts the
//! rest (etcd, kube-apiserver, the nodes' namespaces, our agent).
//!
//! - `node.rs`: the runner (Node, Lease, binding, pod networks, pod status).
//! - `cni.rs`: calls the `bridge`, `host-local` and `loopback` plugins.
//! - `forward.rs`: the API server on a node's own loopback.
//! - `state.rs`: which pod has which namespace and addresses, on disk.
//! - `probe.rs`: one request from a pod to a pod or address.

pub mod cni;
pub mod forward;
pub mod node;
pub mod probe;
pub mod state;

use std::path::Path;

/// Why something of the test cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file or program.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CNI plugin failed.
    #[error("CNI: {0}")]
    Cni(String),
    /// The Kubernetes API refused or failed.
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    /// A namespace operation of the lab failed.
    #[error(transparent)]
    Lab(#[from] nftpolicy_lab::LabError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
