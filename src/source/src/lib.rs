//! Where the policy model comes from: Kubernetes API objects (`k8s-openapi`
//! types, as the agent's watchers receive them) and manifest files on disk
//! (what `kubectl get ns,pods,networkpolicies -A -o yaml` prints), both
//! validated as the API server validates them and converted to
//! `nftpolicy_core::model` types by the same code.
//!
//! - [`api`]: typed object → model, the one conversion.
//! - [`files`]: files → documents → typed objects → [`api`], with every
//!   problem reported by file, document, object and field.
//!
//! `k8s-openapi` types stop here; nothing here does network I/O.

pub mod api;
pub mod files;
mod issue;
