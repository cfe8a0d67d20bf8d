//! This node's own addresses (every interface of its network namespace):
//! the gate lets those inside a pod CIDR through (the `cni0` gateway,
//! `flannel.1`), and flows they opened are not re-judged.

use std::net::IpAddr;

/// The addresses of every interface, here or in `/run/netns/<netns>`
/// (read by a short-lived thread that enters it), sorted.
pub fn node_addrs(netns: Option<&str>) -> std::io::Result<Vec<IpAddr>> {
    let Some(name) = netns else {
        return here();
    };
    let path = std::path::Path::new("/run/netns").join(name);
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&path)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            here()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
    })
}

fn here() -> std::io::Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map_err(std::io::Error::from)?
        .filter_map(|i| i.address)
        .filter_map(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_an_address_of_this_namespace() {
        let addrs = super::node_addrs(None).expect("getifaddrs");
        assert!(addrs.iter().any(|a| a.is_loopback()), "{addrs:?}");
    }
}
