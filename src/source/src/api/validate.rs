//! The small validators the conversion uses: port numbers and names,
//! protocols, IPs, CIDRs and `except` blocks, selector operators. Each takes
//! plain values and returns an [`Issue`]; the caller adds the field path.
//!
//! The rules are the API server's (`ValidateNetworkPolicy`,
//! `IsValidPortName`), so an object converts here iff the API server would
//! take it, whether it came from a watch or from a file, but for the
//! differences `tests/cluster_validation.rs` lists and checks against a
//! real kube-apiserver (CIDRs with host bits are taken as their network,
//! as objects stored before 1.33's strict CIDR validation may hold them;
//! names and label syntax are not checked).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::num::NonZeroU16;

use ipnet::IpNet;

use crate::issue::Issue;
use nftpolicy_core::model::{Operator, Protocol};

/// A port number: 1..=65535.
pub(super) fn port_number(n: i32) -> Result<NonZeroU16, Issue> {
    u16::try_from(n)
        .ok()
        .and_then(NonZeroU16::new)
        .ok_or(Issue::PortRange(i64::from(n)))
}

/// A port name, which must be an IANA_SVC_NAME: 1-15 characters of
/// `[a-z0-9-]`, at least one letter, no leading, trailing or double `-`.
///
/// A string of digits ("80") is rejected, as the API server rejects it: a
/// number must be written as a number.
pub(super) fn port_name(s: &str) -> Result<String, Issue> {
    let reason = if s.is_empty() || s.len() > 15 {
        Some("must be 1-15 characters long")
    } else if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("only lowercase letters, digits and '-' are allowed")
    } else if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        Some("must contain a letter (write a port number without quotes)")
    } else if s.starts_with('-') || s.ends_with('-') {
        Some("must not begin or end with '-'")
    } else if s.contains("--") {
        Some("must not contain '--'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Issue::PortName {
            value: s.to_owned(),
            reason,
        }),
        None => Ok(s.to_owned()),
    }
}

/// A protocol as Kubernetes spells it; TCP when omitted.
pub(super) fn protocol(s: Option<&str>) -> Result<Protocol, Issue> {
    match s {
        None => Ok(Protocol::Tcp),
        Some(s) => Protocol::from_k8s(s).ok_or_else(|| Issue::Protocol(s.to_owned())),
    }
}

/// An IP address (IPv4 dotted quad without leading zeros, or IPv6).
pub(super) fn ip(s: &str) -> Result<IpAddr, Issue> {
    s.parse().map_err(|_| Issue::Ip(s.to_owned()))
}

/// A CIDR block. Host bits are cleared (`10.0.0.1/24` is `10.0.0.0/24`), as
/// Go's `net.ParseCIDR`, which policy implementations use, does.
///
/// Parsed by hand: the address by `std` (no leading zeros, which Go rejects
/// too), the prefix as plain decimal digits.
pub(super) fn cidr(s: &str) -> Result<IpNet, Issue> {
    let bad = || Issue::Cidr(s.to_owned());
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let digits_ok = (1..=3).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && (prefix == "0" || !prefix.starts_with('0'));
    let prefix: u8 = match digits_ok {
        true => prefix.parse().map_err(|_| bad())?,
        false => return Err(bad()),
    };
    IpNet::new(addr, prefix)
        .map(|n| n.trunc())
        .map_err(|_| bad())
}

/// An `except` entry: a CIDR of the same family, strictly inside `block`.
pub(super) fn except(block: &IpNet, s: &str) -> Result<IpNet, Issue> {
    let hole = cidr(s)?;
    if block.contains(&hole) && hole.prefix_len() > block.prefix_len() {
        Ok(hole)
    } else {
        Err(Issue::ExceptOutside {
            except: s.to_owned(),
            cidr: block.to_string(),
        })
    }
}

/// A `matchExpressions` operator with its values. On error, also says
/// which sub-field (`operator` or `values`) is wrong.
pub(super) fn requirement(
    op: &str,
    values: Option<&[String]>,
) -> Result<Operator, (&'static str, Issue)> {
    let values = values.unwrap_or_default();
    let set = || values.iter().cloned().collect::<BTreeSet<String>>();
    let (name, operator) = match op {
        "In" => ("In", Operator::In(set())),
        "NotIn" => ("NotIn", Operator::NotIn(set())),
        "Exists" => ("Exists", Operator::Exists),
        "DoesNotExist" => ("DoesNotExist", Operator::DoesNotExist),
        other => return Err(("operator", Issue::Operator(other.to_owned()))),
    };
    match (&operator, values.is_empty()) {
        (Operator::In(_) | Operator::NotIn(_), true) => {
            Err(("values", Issue::ValuesRequired(name)))
        }
        (Operator::Exists | Operator::DoesNotExist, false) => {
            Err(("values", Issue::ValuesForbidden(name)))
        }
        _ => Ok(operator),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names() {
        // (case, input, accepted)
        let cases = [
            ("plain name", "http", true),
            ("letters, digits, dash", "metrics-9090", true),
            ("15 characters", "abcdefghijklmno", true),
            ("16 characters", "abcdefghijklmnop", false),
            ("empty", "", false),
            ("digits only", "80", false),
            ("upper case", "HTTP", false),
            ("underscore", "my_port", false),
            ("leading dash", "-http", false),
            ("trailing dash", "http-", false),
            ("double dash", "ht--tp", false),
            ("non-ASCII", "hétp", false),
        ];
        for (name, input, ok) in cases {
            assert_eq!(port_name(input).is_ok(), ok, "case: {name}");
        }
    }

    #[test]
    fn port_numbers() {
        let cases = [
            ("zero", 0, None),
            ("one", 1, Some(1)),
            ("top", 65535, Some(65535)),
            ("above", 65536, None),
            ("negative", -80, None),
        ];
        for (name, input, want) in cases {
            assert_eq!(
                port_number(input).ok().map(NonZeroU16::get),
                want,
                "case: {name}"
            );
        }
        assert_eq!(
            port_number(0),
            Err(Issue::PortRange(0)),
            "message carries the value"
        );
    }

    #[test]
    fn protocols() {
        let cases = [
            ("omitted is TCP", None, Some(Protocol::Tcp)),
            ("UDP", Some("UDP"), Some(Protocol::Udp)),
            ("SCTP", Some("SCTP"), Some(Protocol::Sctp)),
            ("lower case", Some("tcp"), None),
            ("ICMP", Some("ICMP"), None),
            ("empty", Some(""), None),
        ];
        for (name, input, want) in cases {
            assert_eq!(protocol(input).ok(), want, "case: {name}");
        }
    }

    #[test]
    fn cidrs_and_excepts() {
        let block: IpNet = "10.0.0.0/16".parse().unwrap();
        // (case, except, accepted)
        let cases = [
            ("inside", "10.0.1.0/24", true),
            ("host bits cleared", "10.0.1.7/24", true),
            ("same block", "10.0.0.0/16", false),
            ("wider", "10.0.0.0/8", false),
            ("outside", "10.1.0.0/24", false),
            ("other family", "fd00::/64", false),
            ("no prefix", "10.0.1.0", false),
            ("garbage", "ten", false),
        ];
        for (name, input, ok) in cases {
            assert_eq!(except(&block, input).is_ok(), ok, "case: {name}");
        }
        assert_eq!(cidr("10.0.0.1/24").unwrap().to_string(), "10.0.0.0/24");
        assert!(cidr("10.0.0.0/33").is_err(), "prefix too long");
        for bad in [
            "010.0.0.0/8",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "/8",
            "::/129",
        ] {
            assert!(cidr(bad).is_err(), "case: {bad}");
        }
        assert_eq!(cidr("::/0").unwrap().to_string(), "::/0");
        assert!(ip("fd00::1").is_ok() && ip("10.0.0.256").is_err());
    }

    #[test]
    fn requirements() {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // (case, operator, values, error sub-field or None when accepted)
        let cases = [
            ("In with values", "In", Some(v(&["a"])), None),
            ("In without values", "In", None, Some("values")),
            (
                "NotIn with empty values",
                "NotIn",
                Some(v(&[])),
                Some("values"),
            ),
            ("Exists", "Exists", None, None),
            ("Exists with empty list", "Exists", Some(v(&[])), None),
            (
                "Exists with values",
                "Exists",
                Some(v(&["a"])),
                Some("values"),
            ),
            (
                "DoesNotExist with values",
                "DoesNotExist",
                Some(v(&["a"])),
                Some("values"),
            ),
            ("unknown operator", "Equals", None, Some("operator")),
        ];
        for (name, op, values, want) in cases {
            let got = requirement(op, values.as_deref()).err().map(|(f, _)| f);
            assert_eq!(got, want, "case: {name}");
        }
    }
}
