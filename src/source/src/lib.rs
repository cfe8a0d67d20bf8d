//! Where the policy model comes from: Kubernetes API objects (`k8s-openapi`
//! types, as the agent's watchers receive them) and manifest files on disk
//! (what `kubectl get ns,pods,networkpolicies -A -o yaml` prints), both
//! validated as the API server validates them and converted to
//! `nftpolicy_core::model` types by the same code.
//!
//! `k8s-openapi` types stop here; nothing here does network I/O.

pub mod files;
