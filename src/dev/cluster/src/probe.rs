//! One request from a pod of the cluster to another pod or an address, with
//! real packets: the prober enters the source pod's network namespace (from
//! the runners' records) and connects, or sends one datagram, to the
//! destination's echo server, which answers with its pod's name.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use nftpolicy_lab::Proto;

use crate::state;
use crate::Error;

/// A pod (`namespace/name`) or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A pod of the cluster.
    Pod(String, String),
    /// An address.
    Addr(IpAddr),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse() {
            return Ok(Target::Addr(ip));
        }
        match s.split_once('/') {
            Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() => {
                Ok(Target::Pod(ns.to_owned(), pod.to_owned()))
            }
            _ => Err(format!("{s:?} is neither namespace/pod nor an address")),
        }
    }
}

/// Which address family to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// The address of `target` in `family`.
pub fn address(dir: &Path, target: &Target, family: Family) -> Result<IpAddr, Error> {
    match target {
        Target::Addr(ip) => Ok(*ip),
        Target::Pod(ns, name) => {
            let r = state::find(dir, ns, name)
                .ok_or_else(|| Error::Other(format!("pod {ns}/{name} has no network (yet)")))?;
            r.ips
                .iter()
                .copied()
                .find(|ip| ip.is_ipv6() == (family == Family::V6))
                .ok_or_else(|| Error::Other(format!("pod {ns}/{name} has no {family:?} address")))
        }
    }
}

/// One request from pod `from` (`namespace`, `name`) to `to` on
/// `proto`/`port`: the name of the pod that answered, or why none did.
pub fn request(
    dir: &Path,
    (namespace, name): (&str, &str),
    to: &Target,
    (proto, port): (Proto, u16),
    family: Family,
    timeout: Duration,
) -> Result<String, Error> {
    let from = state::find(dir, namespace, name)
        .ok_or_else(|| Error::Other(format!("pod {namespace}/{name} has no network (yet)")))?;
    let addr = address(dir, to, family)?;
    let reply =
        nftpolicy_lab::request_from(&from.netns, SocketAddr::new(addr, port), proto, timeout)?;
    Ok(reply)
}
