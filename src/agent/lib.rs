//! kube-nftpolicy: Kubernetes NetworkPolicy enforcement with one atomic
//! nftables table per node, for clusters whose CNI enforces no policy.
//!
//! This crate is the binary: the command line, the node agent's watchers,
//! sync loop, metrics and health server. The work is done by the layers it
//! drives, each its own crate:
//!
//! ```text
//!  nftpolicy_source (files, API objects) ─┐
//!                                         ├─► model::Snapshot ─resolve()─► Resolution ─build()─► Ruleset ─┬─ render ─► nft text
//!  k8s watchers (this crate)             ─┘        nftpolicy_core (pure)                                  └─ nftpolicy_nft ─► one netlink batch
//! ```

pub mod addrs;
pub mod cli;
pub mod cut;
pub mod health;
pub mod k8s;
pub mod metrics;
pub mod observe;
pub mod server;
pub mod sync;
