//! The policy core of kube-nftpolicy: from a cluster [`model::Snapshot`] to
//! the typed nftables [`ruleset::Ruleset`] of one node.
//!
//! ```text
//!  model::Snapshot ─resolve()─► resolve::Resolution ─build()─► ruleset::Ruleset ─render()─► nft text
//! ```
//!
//! Everything here is pure: no I/O, no clock, no async, no `kube` types, no
//! hash-map iteration order. The same snapshot gives the same bytes. This
//! crate depends on no Kubernetes or netlink crate, so the compiler keeps it
//! that way: the sources (`nftpolicy-source`) convert API objects into
//! `model` types, and the dataplane (`nftpolicy-nft`) puts the `Ruleset`
//! into the kernel.

pub mod chunked;
pub mod model;
pub mod resolve;
pub mod ruleset;
