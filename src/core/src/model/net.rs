//! Address and port ranges, and address lists with the comments that say
//! where each entry came from. Shared by resolution and the ruleset model.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU16;
use std::sync::Arc;

use ipnet::IpNet;

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4 (`ip`, `ipv4_addr`).
    V4,
    /// IPv6 (`ip6`, `ipv6_addr`).
    V6,
}

impl std::fmt::Display for Family {
    /// `ipv4` / `ipv6`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The family of a network.
    pub fn of_net(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// `v4` / `v6`, the suffix of per-family set and map names.
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    /// `ip` / `ip6`, the payload keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// `ipv4_addr` / `ipv6_addr`, the set key type.
    pub fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
}

/// An inclusive range of addresses of one family (a single address when
/// `first == last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrRange {
    /// First address (inclusive).
    pub first: IpAddr,
    /// Last address (inclusive), same family as `first`.
    pub last: IpAddr,
}

impl AddrRange {
    /// A single address.
    pub fn single(addr: IpAddr) -> Self {
        Self {
            first: addr,
            last: addr,
        }
    }

    /// The family of the range.
    pub fn family(&self) -> Family {
        Family::of(&self.first)
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        Family::of(addr) == self.family() && self.first <= *addr && *addr <= self.last
    }

    /// Whether the range holds more than one address.
    pub fn is_range(&self) -> bool {
        self.first != self.last
    }
}

/// The address as a number (IPv4 in the low 32 bits).
pub(crate) fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(family: Family, v: u128) -> IpAddr {
    match family {
        // Values come from addresses of this family, so they fit.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// `cidr` minus every `except` block, as disjoint sorted ranges.
pub fn carve(cidr: &IpNet, except: &[IpNet]) -> Vec<AddrRange> {
    let family = Family::of_net(cidr);
    let mut holes: Vec<(u128, u128)> = except
        .iter()
        .filter(|e| Family::of_net(e) == family)
        .map(|e| (to_u128(e.network()), to_u128(e.broadcast())))
        .collect();
    holes.sort();
    let (mut next, end) = (to_u128(cidr.network()), to_u128(cidr.broadcast()));
    let mut out = Vec::new();
    let mut done = false;
    for (lo, hi) in holes {
        if done || hi < next {
            continue;
        }
        if lo > next {
            out.push((next, (lo - 1).min(end)));
        }
        if hi >= end {
            done = true;
        } else {
            next = next.max(hi + 1);
        }
    }
    if !done && next <= end {
        out.push((next, end));
    }
    out.into_iter()
        .map(|(a, b)| AddrRange {
            first: from_u128(family, a),
            last: from_u128(family, b),
        })
        .collect()
}

/// A port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (≥ first).
    pub last: u16,
}

impl PortRange {
    /// A single port.
    pub fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    /// The ports of a numeric `port` with an optional `endPort`: `first` alone
    /// without one, and also when `end` lies below `first`.
    pub fn with_end(first: NonZeroU16, end: Option<NonZeroU16>) -> Self {
        let first = first.get();
        Self {
            first,
            last: end.map_or(first, |e| e.get().max(first)),
        }
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

/// An address range and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrEntry {
    /// The addresses.
    pub range: AddrRange,
    /// `ns/pod`, `ipBlock 10.0.0.0/8`, ... Shared: a set written again
    /// with most of its elements as they were copies their comments with
    /// no allocation, and compares them by address first.
    pub comment: Option<Arc<str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn text(rs: &[AddrRange]) -> Vec<String> {
        rs.iter()
            .map(|r| format!("{}-{}", r.first, r.last))
            .collect()
    }

    #[test]
    fn carve_table() {
        let cases: [(&str, &str, &[&str], &[&str]); 6] = [
            ("no except", "10.0.0.0/8", &[], &["10.0.0.0-10.255.255.255"]),
            (
                "hole in the middle",
                "10.0.0.0/8",
                &["10.1.0.0/16"],
                &["10.0.0.0-10.0.255.255", "10.2.0.0-10.255.255.255"],
            ),
            (
                "hole at the start",
                "10.0.0.0/24",
                &["10.0.0.0/25"],
                &["10.0.0.128-10.0.0.255"],
            ),
            (
                "hole at the end",
                "10.0.0.0/24",
                &["10.0.0.128/25"],
                &["10.0.0.0-10.0.0.127"],
            ),
            (
                "nested and overlapping holes",
                "0.0.0.0/0",
                &["10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16"],
                &[
                    "0.0.0.0-9.255.255.255",
                    "11.0.0.0-192.167.255.255",
                    "192.169.0.0-255.255.255.255",
                ],
            ),
            ("everything carved", "fd00::/64", &["fd00::/64"], &[]),
        ];
        for (case, cidr, except, want) in cases {
            let except: Vec<IpNet> = except.iter().map(|e| net(e)).collect();
            assert_eq!(text(&carve(&net(cidr), &except)), want, "case: {case}");
        }
    }
}
