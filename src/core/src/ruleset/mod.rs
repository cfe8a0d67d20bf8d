//! The typed nftables model: one table `inet kube-nftpolicy`, its sets,
//! verdict maps and chains.
//!
//! This is the single truth between resolution and the kernel: `render`
//! prints it as `nft list table` does, the dataplane turns it into one
//! netlink batch, and `trace` evaluates packets against it. It is plain
//! data: no I/O, no `kube` types.

pub mod build;
pub mod elements;
pub mod guard;
pub mod logging;
pub mod names;
pub mod render;
mod stmt;
pub mod trace;

use std::net::IpAddr;

pub use crate::model::net::{AddrEntry as SetElement, AddrRange, Family, PortRange};
pub use crate::model::Protocol;
pub use elements::Elements;
pub use stmt::{Limit, Log, RateError, RateUnit, DEFAULT_BURST};

/// The nftables family of our table.
pub const TABLE_FAMILY: &str = "inet";
/// The name of our table (ours alone: nothing else is ever touched).
pub const TABLE_NAME: &str = "kube-nftpolicy";
/// The comment on our table.
pub const TABLE_COMMENT: &str = "managed by kube-nftpolicy; do not edit";

/// Which address of the packet a match reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrField {
    /// The source address (`saddr`).
    Source,
    /// The destination address (`daddr`).
    Destination,
}

impl AddrField {
    /// `saddr` / `daddr`.
    pub fn keyword(self) -> &'static str {
        match self {
            AddrField::Source => "saddr",
            AddrField::Destination => "daddr",
        }
    }
}

/// A named set of addresses of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrSet {
    /// The set name (see `names`).
    pub name: String,
    /// IPv4 or IPv6.
    pub family: Family,
    /// `flags interval`: set when any element is a range.
    pub interval: bool,
    /// What the set holds and why.
    pub comment: String,
    /// Disjoint, non-adjacent elements, sorted by address (as `nft list`
    /// prints them), in chunks shared with the builder's cache, which
    /// hands the chunks whose peers stay the same to the next build.
    pub elements: Elements,
}

impl AddrSet {
    /// Replaces the elements (sorted, disjoint) with `list`, in chunks.
    pub fn set_elements(&mut self, list: Vec<SetElement>) {
        self.elements = list.into();
    }

    /// Changes the elements as one list: copies them out, lets `edit`
    /// change them (they must stay sorted and disjoint) and chunks them
    /// again. For edits by hand; the builder keeps chunks it can.
    pub fn edit_elements<R>(&mut self, edit: impl FnOnce(&mut Vec<SetElement>) -> R) -> R {
        let mut list = self.elements.to_vec();
        let out = edit(&mut list);
        self.elements = list.into();
        out
    }

    /// Whether `addr` is in the set.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        self.elements.iter().any(|e| e.range.contains(addr))
    }
}

/// An element of a dispatch map: pod address → `goto` the pod's chain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapElement {
    /// The pod address.
    pub addr: IpAddr,
    /// `ns/pod`.
    pub comment: String,
    /// The chain to `goto`.
    pub chain: String,
}

/// A verdict map from one address to a `goto` (the dispatch maps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictMap {
    /// The map name (`ingress-pods-v4`, ...).
    pub name: String,
    /// IPv4 or IPv6 keys.
    pub family: Family,
    /// What the map is for.
    pub comment: String,
    /// Elements sorted by address.
    pub elements: Vec<MapElement>,
}

/// A netfilter hook our base chains attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// Routed and (with br_netfilter) bridged traffic.
    Forward,
    /// Traffic to the node itself.
    Input,
}

impl Hook {
    /// `forward` / `input`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Forward => "forward",
            Hook::Input => "input",
        }
    }
}

/// What makes a chain a base chain: `type filter hook <hook> priority <p>; policy accept;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// The hook.
    pub hook: Hook,
    /// Priority relative to `filter` (0); egress chains run first (negative).
    pub priority: i32,
}

/// Conntrack states a rule can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtMatch {
    /// `ct state established,related`.
    EstablishedRelated,
    /// `ct state invalid`.
    Invalid,
}

/// One condition of a rule; a rule matches when all of its matches do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Match {
    /// `ct state ...`.
    Ct(CtMatch),
    /// `ip saddr @set` / `ip6 daddr @set`.
    AddrInSet {
        /// The family of the set (also implies the packet's family).
        family: Family,
        /// Source or destination.
        field: AddrField,
        /// The set's name.
        set: String,
    },
    /// `ip daddr 10.0.0.1` (a single address; implies the family).
    AddrIs {
        /// Source or destination.
        field: AddrField,
        /// The address.
        addr: IpAddr,
    },
    /// `meta l4proto tcp`.
    L4Proto(Protocol),
    /// `tcp dport 80` / `udp dport 8000-9000`.
    DestPort {
        /// The protocol (also implies it).
        protocol: Protocol,
        /// The port or range.
        ports: PortRange,
    },
    /// `icmpv6 type 133-136`: router and neighbour solicitation/advertisement.
    Icmpv6NeighbourDiscovery,
    /// `ip saddr != @set`: the address is NOT in the set (implies the family).
    AddrNotInSet {
        /// The family of the set.
        family: Family,
        /// Source or destination.
        field: AddrField,
        /// The set's name.
        set: String,
    },
    /// `ct mark & 0x20000000 == 0x20000000`: the flow's conntrack mark has
    /// this bit set.
    CtMarkBit(u32),
}

impl Match {
    /// The set this match looks up, if any: the one place that knows which
    /// matches name a set (the dataplane's references and plans use it).
    pub fn set(&self) -> Option<&str> {
        match self {
            Match::AddrInSet { set, .. } | Match::AddrNotInSet { set, .. } => Some(set),
            Match::Ct(_)
            | Match::AddrIs { .. }
            | Match::L4Proto(_)
            | Match::DestPort { .. }
            | Match::Icmpv6NeighbourDiscovery
            | Match::CtMarkBit(_) => None,
        }
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `reject with icmp admin-prohibited` (or `icmpv6`, for the family of
    /// the rule's address matches): the sender learns at once.
    Reject(Family),
    /// `jump <chain>`: come back if nothing there decides.
    Jump(String),
    /// `ip saddr vmap @map`: look the address up, `goto` the chain found, else go on.
    Dispatch {
        /// Family of the map (and of the packet).
        family: Family,
        /// Which address is the key.
        field: AddrField,
        /// The map's name.
        map: String,
    },
}

/// A rule: matches, an optional counter, a verdict and a comment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// All must hold.
    pub matches: Vec<Match>,
    /// `limit rate …`, after the matches and before the counter: over the
    /// limit, the rule does not match.
    pub limit: Option<Limit>,
    /// `counter` (rendered with the kernel's values, zero in `render`).
    pub counter: bool,
    /// `log prefix … group …`, after the counter, before the verdict.
    pub log: Option<Log>,
    /// What happens on a match.
    pub verdict: Verdict,
    /// Where the rule came from, if it says more than its chain.
    pub comment: Option<String>,
}

impl Rule {
    /// A rule with the given matches and verdict, no counter, no comment.
    pub fn new(matches: Vec<Match>, verdict: Verdict) -> Self {
        Self {
            matches,
            limit: None,
            counter: false,
            log: None,
            verdict,
            comment: None,
        }
    }

    /// Sets the comment.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(names::comment(&comment.into()));
        self
    }

    /// Adds a counter.
    pub fn counted(mut self) -> Self {
        self.counter = true;
        self
    }

    /// Adds a `limit` statement.
    pub fn limited(mut self, limit: Limit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Adds a `log` statement.
    pub fn logged(mut self, log: Log) -> Self {
        self.log = Some(log);
        self
    }
}

/// A chain: a base chain on a hook, or a regular chain reached by jump/goto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The chain's name (see `names`).
    pub name: String,
    /// `Some` for base chains.
    pub base: Option<BaseChain>,
    /// Where the chain came from.
    pub comment: String,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

/// The whole table: everything we put in the kernel.
///
/// Objects appear in the order `nft list table` prints them after a full
/// replace: maps, then sets, then chains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Dispatch maps.
    pub maps: Vec<VerdictMap>,
    /// Peer sets.
    pub sets: Vec<AddrSet>,
    /// Base chains, then per-pod chains.
    pub chains: Vec<Chain>,
}

impl Ruleset {
    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The set called `name`.
    pub fn set(&self, name: &str) -> Option<&AddrSet> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// The map called `name`.
    pub fn map(&self, name: &str) -> Option<&VerdictMap> {
        self.maps.iter().find(|m| m.name == name)
    }

    /// Number of rules in all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// Number of set and map elements.
    pub fn element_count(&self) -> usize {
        self.sets.iter().map(|s| s.elements.len()).sum::<usize>()
            + self.maps.iter().map(|m| m.elements.len()).sum::<usize>()
    }
}
