//! kube-nftpolicy: Kubernetes NetworkPolicy enforcement with one atomic
//! nftables table per node, for clusters whose CNI enforces no policy.
//!
//! # Layout
//!
//! ```text
//!  files.rs (manifests)  ─┐
//!                         ├─► model::Snapshot ─resolve()─► Resolution ─build()─► ruleset::Ruleset ─┬─ render ─► nft text
//!  k8s watchers (agent)  ─┘                                                                       └─ dataplane ─► one netlink batch
//! ```
//!
//! `model`, `resolve` and `ruleset` are pure: no I/O, no clock, no `kube`
//! types, no hash-map iteration order. Same snapshot, same bytes.

pub mod cli;
pub mod dataplane;
pub mod files;
pub mod k8s;
pub mod lab;
pub mod metrics;
pub mod model;
pub mod resolve;
pub mod ruleset;
pub mod server;
pub mod sync;
pub mod synth;
pub mod testing;
