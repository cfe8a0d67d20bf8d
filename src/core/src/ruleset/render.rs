//! Prints a `Ruleset` exactly as `nft list table inet kube-nftpolicy` prints
//! it back after an apply (nft 1.0.6), counters at zero.
//!
//! The layout rules copied here from nft's printer: blocks in kernel order
//! separated by one blank line; comments before the hook line; set elements
//! wrapped two per line for IPv4 keys and one per line for IPv6 keys
//! (nft's `calculate_delim`); ranges printed as prefixes when they are one.

use std::fmt::{self, Display, Formatter, Write};
use std::net::IpAddr;

use crate::model::net::to_u128;

use super::{
    AddrRange, AddrSet, Chain, CtMatch, Family, Match, Rule, Ruleset, Verdict, VerdictMap,
    TABLE_COMMENT, TABLE_FAMILY, TABLE_NAME,
};

/// Renders the ruleset as nft text, loadable with `nft -f`.
pub fn render(ruleset: &Ruleset) -> String {
    ruleset.to_string()
}

impl Display for Ruleset {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "table {TABLE_FAMILY} {TABLE_NAME} {{")?;
        writeln!(f, "\tcomment \"{TABLE_COMMENT}\"")?;
        let mut delim = "";
        for map in &self.maps {
            f.write_str(delim)?;
            write_map(f, map)?;
            delim = "\n";
        }
        for set in &self.sets {
            f.write_str(delim)?;
            write_set(f, set)?;
            delim = "\n";
        }
        for chain in &self.chains {
            f.write_str(delim)?;
            write_chain(f, chain)?;
            delim = "\n";
        }
        f.write_str("}\n")
    }
}

fn write_map(f: &mut Formatter<'_>, map: &VerdictMap) -> fmt::Result {
    writeln!(f, "\tmap {} {{", map.name)?;
    writeln!(f, "\t\ttype {} : verdict", map.family.addr_type())?;
    writeln!(f, "\t\tcomment \"{}\"", map.comment)?;
    let elements = map
        .elements
        .iter()
        .map(|e| format!("{} comment \"{}\" : goto {}", e.addr, e.comment, e.chain));
    write_elements(f, map.family, elements)?;
    f.write_str("\t}\n")
}

fn write_set(f: &mut Formatter<'_>, set: &AddrSet) -> fmt::Result {
    writeln!(f, "\tset {} {{", set.name)?;
    writeln!(f, "\t\ttype {}", set.family.addr_type())?;
    if set.interval {
        f.write_str("\t\tflags interval\n")?;
    }
    writeln!(f, "\t\tcomment \"{}\"", set.comment)?;
    let elements = set.elements.iter().map(|e| {
        let mut s = range_text(&e.range);
        if let Some(c) = &e.comment {
            let _ = write!(s, " comment \"{c}\"");
        }
        s
    });
    write_elements(f, set.family, elements)?;
    f.write_str("\t}\n")
}

/// `elements = { a, b,\n\t\t\t     c }`: nft puts two IPv4 keys on a line and
/// one IPv6 key.
fn write_elements(
    f: &mut Formatter<'_>,
    family: Family,
    elements: impl Iterator<Item = String>,
) -> fmt::Result {
    let per_line = match family {
        Family::V4 => 2,
        Family::V6 => 1,
    };
    let mut first = true;
    for (i, e) in elements.enumerate() {
        if first {
            f.write_str("\t\telements = { ")?;
            first = false;
        } else if i % per_line == 0 {
            f.write_str(",\n\t\t\t     ")?;
        } else {
            f.write_str(", ")?;
        }
        f.write_str(&e)?;
    }
    if !first {
        f.write_str(" }\n")?;
    }
    Ok(())
}

fn write_chain(f: &mut Formatter<'_>, chain: &Chain) -> fmt::Result {
    writeln!(f, "\tchain {} {{", chain.name)?;
    writeln!(f, "\t\tcomment \"{}\"", chain.comment)?;
    if let Some(base) = chain.base {
        let prio = match base.priority {
            0 => "filter".to_owned(),
            p if p < 0 => format!("filter - {}", -p),
            p => format!("filter + {p}"),
        };
        writeln!(
            f,
            "\t\ttype filter hook {} priority {prio}; policy accept;",
            base.hook.as_str()
        )?;
    }
    for rule in &chain.rules {
        writeln!(f, "\t\t{rule}")?;
    }
    f.write_str("\t}\n")
}

impl Display for Rule {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for m in &self.matches {
            write!(f, "{sep}{m}")?;
            sep = " ";
        }
        // nft lists statements in the rule's order: limit, counter, log.
        if let Some(limit) = &self.limit {
            write!(f, "{sep}{limit}")?;
            sep = " ";
        }
        if self.counter {
            write!(f, "{sep}counter packets 0 bytes 0")?;
            sep = " ";
        }
        if let Some(log) = &self.log {
            write!(f, "{sep}{log}")?;
            sep = " ";
        }
        write!(f, "{sep}{}", self.verdict)?;
        if let Some(c) = &self.comment {
            write!(f, " comment \"{c}\"")?;
        }
        Ok(())
    }
}

impl Display for Match {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Match::Ct(CtMatch::EstablishedRelated) => f.write_str("ct state established,related"),
            Match::Ct(CtMatch::Invalid) => f.write_str("ct state invalid"),
            Match::AddrInSet { family, field, set } => {
                write!(f, "{} {} @{set}", family.keyword(), field.keyword())
            }
            Match::AddrIs { field, addr } => {
                write!(
                    f,
                    "{} {} {addr}",
                    Family::of(addr).keyword(),
                    field.keyword()
                )
            }
            Match::L4Proto(p) => write!(f, "meta l4proto {p}"),
            Match::DestPort { protocol, ports } if ports.first == ports.last => {
                write!(f, "{protocol} dport {}", ports.first)
            }
            Match::DestPort { protocol, ports } => {
                write!(f, "{protocol} dport {}-{}", ports.first, ports.last)
            }
            Match::Icmpv6NeighbourDiscovery => f.write_str("icmpv6 type 133-136"),
            Match::AddrNotInSet { family, field, set } => {
                write!(f, "{} {} != @{set}", family.keyword(), field.keyword())
            }
            Match::CtMarkBit(bit) => write!(f, "ct mark & {bit:#010x} == {bit:#010x}"),
        }
    }
}

impl Display for Verdict {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Reject(Family::V4) => f.write_str("reject with icmp admin-prohibited"),
            Verdict::Reject(Family::V6) => f.write_str("reject with icmpv6 admin-prohibited"),
            Verdict::Jump(chain) => write!(f, "jump {chain}"),
            Verdict::Dispatch { family, field, map } => {
                write!(f, "{} {} vmap @{map}", family.keyword(), field.keyword())
            }
        }
    }
}

/// An address, a prefix (`10.0.0.0/8`) when the range is exactly one, or `a-b`.
pub fn range_text(r: &AddrRange) -> String {
    if r.first == r.last {
        return r.first.to_string();
    }
    match prefix_len(r) {
        Some(len) => format!("{}/{len}", r.first),
        None => format!("{}-{}", r.first, r.last),
    }
}

/// The prefix length when `r` is exactly one CIDR block.
fn prefix_len(r: &AddrRange) -> Option<u8> {
    let bits = match (r.first, r.last) {
        (IpAddr::V4(_), IpAddr::V4(_)) => 32,
        (IpAddr::V6(_), IpAddr::V6(_)) => 128,
        _ => return None,
    };
    let (first, last) = (to_u128(r.first), to_u128(r.last));
    let host = first ^ last;
    // host must be 0…01…1 and first must have those bits clear.
    if host.wrapping_add(1) & host != 0 || first & host != 0 {
        return None;
    }
    Some(bits - host.count_ones() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: &str, b: &str) -> AddrRange {
        AddrRange {
            first: a.parse().unwrap(),
            last: b.parse().unwrap(),
        }
    }

    #[test]
    fn range_text_table() {
        let cases = [
            ("single v4", r("10.0.0.1", "10.0.0.1"), "10.0.0.1"),
            ("prefix v4", r("10.0.0.0", "10.255.255.255"), "10.0.0.0/8"),
            (
                "everything v4",
                r("0.0.0.0", "255.255.255.255"),
                "0.0.0.0/0",
            ),
            (
                "unaligned range",
                r("10.0.0.1", "10.0.0.2"),
                "10.0.0.1-10.0.0.2",
            ),
            (
                "aligned but not power of two",
                r("10.0.0.0", "10.0.0.2"),
                "10.0.0.0-10.0.0.2",
            ),
            (
                "prefix v6",
                r("fd00::", "fd00::ffff:ffff:ffff:ffff"),
                "fd00::/64",
            ),
            (
                "everything v6",
                r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                "::/0",
            ),
            ("range v6", r("fe80::1", "fe80::5"), "fe80::1-fe80::5"),
        ];
        for (case, range, want) in cases {
            assert_eq!(range_text(&range), want, "case: {case}");
        }
    }
}
