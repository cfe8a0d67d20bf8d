//! The nftables dataplane of kube-nftpolicy: puts a `Ruleset` into the
//! kernel as ONE netlink batch (all or nothing), remembers what the kernel
//! holds, and sends only the difference next time.
//!
//! ```text
//!  what the kernel holds (KernelTable) + desired Ruleset
//!        │ plan()  pure: full replace or the difference
//!        ▼
//!  Plan { kind, transaction: Transaction { ops: Vec<Op> }, deferred, reason }
//!        │ batch::build  ops → libnftnl objects → one message buffer
//!        ├─► NetlinkDataplane: one netlink batch to the kernel, then, once
//!        │   the kernel took it, KernelTable::commit(transaction)
//!        └─► FakeDataplane: KernelTable::commit(transaction) only: the
//!            kernel's rules and errors, all or nothing
//! ```
//!
//! - `transaction.rs`: `Transaction` and `Op`, what one batch does, as
//!   owned model values; `Display` prints it in nft's words.
//! - `plan.rs`: `plan()`, the pure planner: full replace or the difference.
//!   `ops.rs`: the one place that maps model objects to op payloads;
//!   `lists.rs`: name indexes and list differences it uses.
//! - `batch.rs`: transaction → one message buffer, a label per message; the
//!   one place that maps ops to libnftnl objects, through `encode.rs`
//!   (tables, chains, sets, elements) and `expr.rs` (rules), as nft 1.0.6
//!   builds them. `msgbuf.rs` holds the buffer.
//! - `table/`: `KernelTable`, the kernel's table as ops leave it, with the
//!   kernel's errors (`EEXIST`, `ENOENT`, `EBUSY`, ...), all or nothing.
//! - `netlink.rs`: `NetlinkDataplane`, full replace / incremental / drift.
//!   `conn.rs`, `socket.rs`, `nlmsg.rs`: the netlink conversation.
//!   `readback.rs`, `image.rs`: reading our table back and comparing.
//! - `fake.rs`: `FakeDataplane`, for tests of code that drives a dataplane:
//!   it plans and encodes like the netlink dataplane, then interprets the
//!   transaction on its own `KernelTable` (never the planner's prediction).
//! - `nflog/`: `NflogSocket`, the records of our `log … group N` rules
//!   (drop and allow logging) read over netlink, and their headers parsed.
//! - `ffi.rs`: libnftnl objects. `unsafe` lives only in `ffi.rs`,
//!   `msgbuf.rs` and `socket.rs`.
//!
//! Nothing here decides policy: the ruleset arrives complete.
//!
//! # Kernel order
//!
//! `nft list table` prints sets and chains in the order the kernel got
//! them. After a full replace that is the model's order; an incremental
//! apply leaves existing objects where they are and appends new ones. The
//! dataplanes' `current()` is the `KernelTable` the batches built, so
//! `render(current())` is byte for byte what `nft list table inet
//! kube-nftpolicy` prints, while `current()` may list objects in another
//! order than the desired ruleset (same objects, same content).

mod batch;
mod conn;
pub mod conntrack;
mod encode;
mod expr;
mod fake;
mod ffi;
mod image;
mod lists;
mod msgbuf;
mod netlink;
mod nflog;
mod nlmsg;
mod ops;
mod plan;
mod readback;
mod socket;
mod table;
#[cfg(test)]
mod tests;
mod transaction;

use std::time::Duration;

pub use fake::FakeDataplane;
pub use netlink::{cleanup, NetlinkDataplane};
pub use nflog::{headers, Headers, LogRecord, NflogError, NflogSocket, COPY_RANGE};
pub use plan::{full_replace, plan, Plan};
pub use readback::kernel_listing;
pub use transaction::{ChainDef, Elements, Op, SetDef, SetKind, Transaction};

use nftpolicy_core::ruleset::Ruleset;

/// Something that can hold our ruleset: the kernel, or a fake.
pub trait Dataplane {
    /// Makes the dataplane hold `desired`, atomically: on error nothing
    /// changed, and the next apply is a full replace.
    fn apply(&mut self, desired: &Ruleset) -> Result<ApplyReport, ApplyError>;

    /// Removes our table (and nothing else). `Ok(false)`: it was not there.
    fn cleanup(&mut self) -> Result<bool, ApplyError>;

    /// Makes the next apply a full replace (the agent's slow periodic
    /// repair, which also rewrites element drift the cheap check cannot see).
    /// The default does nothing, for dataplanes that have no kernel to repair.
    fn force_full_replace(&mut self, _reason: &str) {}

    /// What the dataplane holds after the last successful apply, in the
    /// kernel's listing order (`render` of it is what `nft list table`
    /// prints); `None` before the first apply or after a failure.
    fn current(&self) -> Option<&Ruleset>;
}

/// How an apply changed the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyKind {
    /// The table was replaced as a whole (add, delete, add everything).
    Full,
    /// Only the difference to the last apply was sent.
    Incremental,
    /// Nothing to send.
    NoChange,
}

impl ApplyKind {
    /// `full`, `incremental`, `no_change`: for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyKind::Full => "full",
            ApplyKind::Incremental => "incremental",
            ApplyKind::NoChange => "no_change",
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Full replace, incremental, or nothing.
    pub kind: ApplyKind,
    /// Netlink messages in the batch (begin and end not counted).
    pub messages: usize,
    /// Bytes of the batch.
    pub bytes: usize,
    /// Wall time of the apply, drift check included.
    pub duration: Duration,
    /// Chains this apply emptied and unhooked; the next apply deletes them
    /// (some kernels refuse to delete a chain in the batch that drops its
    /// last reference). Apply again soon when this is not zero.
    pub deferred: usize,
    /// Why a full replace was chosen, when it was not the first apply.
    pub reason: Option<String>,
}

/// Why an apply failed. In every case nothing of the batch was applied (or,
/// for `Io`, the outcome is unknown) and the next apply is a full replace.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The kernel rejected a message of the batch; the whole batch was
    /// discarded.
    #[error(
        "kernel rejected {object}: {}{}{}",
        std::io::Error::from_raw_os_error(*.errno),
        .detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default(),
        if *.others > 0 { format!(" (and {} more messages)", .others) } else { String::new() }
    )]
    Rejected {
        /// What the rejected message carried (`add rule 3 of chain X (...)`).
        object: String,
        /// The kernel's errno.
        errno: i32,
        /// The kernel's extended-ACK text, if any.
        detail: Option<String>,
        /// How many other messages of the batch were rejected too.
        others: usize,
    },
    /// The netfilter socket could not be opened (or the namespace entered).
    #[error("cannot open a netfilter socket{}", .netns.as_ref().map(|n| format!(" in netns {n}")).unwrap_or_default())]
    Socket {
        /// The network namespace asked for.
        netns: Option<String>,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the kernel failed midway: the outcome is unknown.
    #[error("netlink: {context}")]
    Io {
        /// What we were doing.
        context: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The ruleset holds something that cannot be put into the kernel.
    #[error("cannot encode the ruleset: {0}")]
    Invalid(String),
}

impl ApplyError {
    /// A short stable name for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ApplyError::Rejected { .. } => "rejected",
            ApplyError::Socket { .. } => "socket",
            ApplyError::Io { .. } => "io",
            ApplyError::Invalid(_) => "invalid",
        }
    }
}

impl From<encode::EncodeError> for ApplyError {
    fn from(e: encode::EncodeError) -> Self {
        ApplyError::Invalid(e.0)
    }
}
