//! The transaction: what one netlink batch does, op by op, in batch order,
//! as owned model values. The planner (`plan.rs`) makes it, the encoder
//! (`batch.rs`) sends it, and the fake kernel (`table.rs`) interprets it.
//! `Display` prints one line per op in nft's words, for test failures and
//! debug logs. Pure data: no FFI here.
//!
//! To teach the dataplane a new kind of object, add its payload here, make
//! it in `ops.rs` (model → op), encode it in `encode.rs` / `expr.rs`
//! (op → libnftnl) and give it the kernel's semantics in `table.rs`.

use std::fmt::{self, Display, Formatter};
use std::net::IpAddr;

use nftpolicy_core::ruleset::render::range_text;
use nftpolicy_core::ruleset::{
    BaseChain, Family, MapElement, Rule, SetElement, TABLE_FAMILY, TABLE_NAME,
};

/// The ops of one batch, in the order the kernel applies them. All or
/// nothing: the kernel commits every op or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    /// The ops, in batch order.
    pub ops: Vec<Op>,
}

/// One step of a batch. Every add of a chain, set or element is sent with
/// `NLM_F_EXCL` (it fails with `EEXIST` when the object exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// NEWTABLE of our table, without `EXCL`. `comment`: `None` for the
    /// bare add before the delete of a full replace (it makes the delete
    /// succeed when the table does not exist).
    AddTable {
        /// The table's comment.
        comment: Option<String>,
    },
    /// DELTABLE: the table and everything in it.
    DeleteTable,
    /// NEWCHAIN, without rules.
    AddChain(ChainDef),
    /// DELCHAIN of an empty, unreferenced chain.
    DeleteChain {
        /// The chain.
        name: String,
    },
    /// DELRULE without a handle: every rule of the chain.
    FlushChain {
        /// The chain.
        name: String,
    },
    /// DELRULE without a chain: every rule of every chain of the table (as
    /// `nft flush table` does; chains, sets and elements stay).
    FlushRules,
    /// NEWRULE, appended to the chain.
    AddRule {
        /// The chain.
        chain: String,
        /// The rule.
        rule: Rule,
    },
    /// NEWSET (a set or a map), without elements.
    AddSet(SetDef),
    /// DELSET of a set or map no rule references.
    DeleteSet {
        /// The set or map.
        name: String,
    },
    /// DELSETELEM without elements: every element of the set or map (the
    /// set stays).
    FlushSet {
        /// The set or map.
        name: String,
    },
    /// NEWSETELEM (split into messages under 64 KiB when encoded).
    AddElements {
        /// The set or map.
        set: String,
        /// What to add.
        elements: Elements,
    },
    /// DELSETELEM.
    DeleteElements {
        /// The set or map.
        set: String,
        /// What to delete (keys matter; comments are ignored).
        elements: Elements,
    },
}

/// A chain without its rules: what cannot change without a full replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDef {
    /// Name.
    pub name: String,
    /// `Some` for base chains.
    pub base: Option<BaseChain>,
    /// Comment.
    pub comment: String,
}

/// What kind of set: plain, with `flags interval`, or a verdict map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// A hash of single addresses.
    Plain,
    /// `flags interval`: ranges.
    Interval,
    /// `type <addr> : verdict`.
    Map,
}

/// A set or map without its elements: what cannot change without deleting
/// and re-creating it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDef {
    /// Name.
    pub name: String,
    /// Key family.
    pub family: Family,
    /// Kind.
    pub kind: SetKind,
    /// Comment (in the set's userdata).
    pub comment: String,
}

/// Elements of one set or map, as one op adds or deletes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elements {
    /// Single addresses of a plain set.
    Plain(Vec<SetElement>),
    /// Ranges of an interval set: each a start element and, unless it runs
    /// to the family's last address, an end element at `last + 1`.
    Interval {
        /// The key family (for the zero end element).
        family: Family,
        /// Also the end element at address zero that nft puts before a
        /// first range that does not start at zero (sent first).
        zero_end: bool,
        /// The ranges.
        ranges: Vec<SetElement>,
    },
    /// Entries of a dispatch map: address → `goto` chain.
    Map(Vec<MapElement>),
}

impl Elements {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        match self {
            Elements::Plain(v) => v.is_empty(),
            Elements::Interval {
                zero_end, ranges, ..
            } => !zero_end && ranges.is_empty(),
            Elements::Map(v) => v.is_empty(),
        }
    }

    /// The number of model elements (the zero end counts as one).
    pub fn len(&self) -> usize {
        match self {
            Elements::Plain(v) => v.len(),
            Elements::Interval {
                zero_end, ranges, ..
            } => usize::from(*zero_end) + ranges.len(),
            Elements::Map(v) => v.len(),
        }
    }
}

impl Transaction {
    /// Whether the batch would carry nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl Display for Transaction {
    /// One line per op.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

impl Display for Op {
    /// The op in nft's words: `add element peers-x-v4 { 10.0.0.1 }`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddTable { comment: None } => write!(f, "add table {TABLE_FAMILY} {TABLE_NAME}"),
            Op::AddTable { comment: Some(c) } => {
                write!(
                    f,
                    "add table {TABLE_FAMILY} {TABLE_NAME} {{ comment \"{c}\" }}"
                )
            }
            Op::DeleteTable => write!(f, "delete table {TABLE_FAMILY} {TABLE_NAME}"),
            Op::AddChain(c) => write!(f, "add chain {c}"),
            Op::DeleteChain { name } => write!(f, "delete chain {name}"),
            Op::FlushChain { name } => write!(f, "flush chain {name}"),
            Op::FlushRules => write!(f, "flush table {TABLE_FAMILY} {TABLE_NAME}"),
            Op::FlushSet { name } => write!(f, "flush set {name}"),
            Op::AddRule { chain, rule } => write!(f, "add rule {chain} {rule}"),
            Op::AddSet(s) => write!(f, "add {s}"),
            Op::DeleteSet { name } => write!(f, "delete set {name}"),
            Op::AddElements { set, elements } => {
                write!(f, "add element {set} {{ ")?;
                elements.write(f, true)?;
                f.write_str(" }")
            }
            Op::DeleteElements { set, elements } => {
                write!(f, "delete element {set} {{ ")?;
                elements.write(f, false)?;
                f.write_str(" }")
            }
        }
    }
}

impl Display for ChainDef {
    /// `forward-egress { type filter hook forward priority filter - 10; policy accept; comment "…" }`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {{ ", self.name)?;
        if let Some(base) = self.base {
            let prio = match base.priority {
                0 => "filter".to_owned(),
                p if p < 0 => format!("filter - {}", -p),
                p => format!("filter + {p}"),
            };
            write!(
                f,
                "type filter hook {} priority {prio}; policy accept; ",
                base.hook.as_str()
            )?;
        }
        write!(f, "comment \"{}\" }}", self.comment)
    }
}

impl Display for SetDef {
    /// `set s { type ipv4_addr; flags interval; comment "…" }`, `map m { type ipv4_addr : verdict; … }`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let ty = self.family.addr_type();
        match self.kind {
            SetKind::Plain => write!(f, "set {} {{ type {ty}; ", self.name)?,
            SetKind::Interval => write!(f, "set {} {{ type {ty}; flags interval; ", self.name)?,
            SetKind::Map => write!(f, "map {} {{ type {ty} : verdict; ", self.name)?,
        }
        write!(f, "comment \"{}\" }}", self.comment)
    }
}

impl Elements {
    /// The elements, comma separated; with comments and verdicts when `full`.
    fn write(&self, f: &mut Formatter<'_>, full: bool) -> fmt::Result {
        let mut sep = "";
        let mut item = |f: &mut Formatter<'_>, text: fmt::Arguments<'_>| {
            let r = write!(f, "{sep}{text}");
            sep = ", ";
            r
        };
        let addr = |e: &SetElement| match (&e.comment, full) {
            (Some(c), true) => format!("{} comment \"{c}\"", range_text(&e.range)),
            _ => range_text(&e.range),
        };
        match self {
            Elements::Plain(v) => v
                .iter()
                .try_for_each(|e| item(f, format_args!("{}", addr(e)))),
            Elements::Interval {
                family,
                zero_end,
                ranges,
            } => {
                if *zero_end {
                    item(f, format_args!("{} (interval end)", zero(*family)))?;
                }
                ranges
                    .iter()
                    .try_for_each(|e| item(f, format_args!("{}", addr(e))))
            }
            Elements::Map(v) => v.iter().try_for_each(|e| {
                if full {
                    let (a, c, t) = (e.addr, &e.comment, &e.chain);
                    item(f, format_args!("{a} comment \"{c}\" : goto {t}"))
                } else {
                    item(f, format_args!("{}", e.addr))
                }
            }),
        }
    }
}

/// Address zero of `family`.
pub(crate) fn zero(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::from([0u8; 4]),
        Family::V6 => IpAddr::from([0u8; 16]),
    }
}
