//! Ports of a rule: numbers and ranges as written; named ports resolved per
//! pod (ingress: the selected pod's own ports; egress: each peer pod's).

use std::collections::BTreeMap;
use std::rc::Rc;

use super::index::Index;
use super::peers::{pod_entries, PeerCache};
use super::{Addr, AddrLists, NamedPort, NamedPortKey, PeerKey, PeerSet, Ports, SetKey};
use crate::model::net::{carve, AddrRange, PortRange};
use crate::model::{Direction, Peer, Pod, PortRef, Protocol, Rule};

/// Resolves the ports of `rule`, whose peers have the key `peer_key`.
/// `selected` are the local pods the policy selects; `peer_pods` the rule's
/// peer pods (`None`: every pod).
pub fn resolve_ports(
    index: &Index,
    cache: &mut PeerCache,
    peer_key: &PeerKey,
    dir: Direction,
    rule: &Rule,
    selected: &[&Pod],
    peer_pods: Option<&Vec<usize>>,
) -> Ports {
    if rule.ports.is_empty() {
        return Ports::Any;
    }
    let mut numeric = Vec::new();
    let mut named = Vec::new();
    let mut specs: Vec<_> = rule.ports.iter().collect();
    specs.sort();
    specs.dedup();
    for spec in specs {
        match &spec.port {
            None => numeric.push((spec.protocol, None)),
            Some(PortRef::Number(n)) => {
                numeric.push((spec.protocol, Some(PortRange::with_end(*n, spec.end_port))))
            }
            Some(PortRef::Name(name)) => match dir {
                Direction::Ingress => named.extend(local_named(selected, name, spec.protocol)),
                Direction::Egress => {
                    let key = NamedPortKey {
                        peers: peer_key.clone(),
                        name: name.clone(),
                        protocol: spec.protocol,
                    };
                    let found = match cache.named.get(&key) {
                        Some(hit) => Rc::clone(hit),
                        None => {
                            let found = Rc::new(peer_named(index, &key, rule, peer_pods));
                            cache.named.insert(key, Rc::clone(&found));
                            found
                        }
                    };
                    named.extend(found.iter().cloned());
                }
            },
        }
    }
    numeric.sort();
    numeric.dedup();
    // "Every port of TCP" makes every TCP range redundant.
    let whole: Vec<Protocol> = numeric
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(p, _)| *p)
        .collect();
    numeric.retain(|(p, r)| r.is_none() || !whole.contains(p));
    Ports::Listed { numeric, named }
}

fn local_named(selected: &[&Pod], name: &str, protocol: Protocol) -> Vec<NamedPort> {
    selected
        .iter()
        .filter_map(|pod| {
            pod.named_port(name, protocol).map(|port| NamedPort::Local {
                pod: pod.key(),
                addrs: pod.ips.clone(),
                protocol,
                port: port.get(),
                name: name.to_owned(),
            })
        })
        .collect()
}

/// Egress: the pairs (peer address, number) for a named port. A peer is a
/// selected pod (all its addresses) or a pod whose address lies in one of the
/// rule's ipBlocks (those addresses only); with no peers, every pod.
fn peer_named(
    index: &Index,
    key: &NamedPortKey,
    rule: &Rule,
    peer_pods: Option<&Vec<usize>>,
) -> Vec<NamedPort> {
    let (name, protocol) = (key.name.as_str(), key.protocol);
    let blocks: Vec<AddrRange> = rule
        .peers
        .iter()
        .flat_map(|p| match p {
            Peer::IpBlock { cidr, except } => carve(cidr, except),
            Peer::Pods { .. } => Vec::new(),
        })
        .collect();
    let candidates: Vec<usize> = match peer_pods {
        Some(list) if blocks.is_empty() => list.clone(),
        _ => index.all(),
    };
    let mut by_port: BTreeMap<u16, Vec<Addr>> = BTreeMap::new();
    for i in candidates {
        let pod = index.pod(i);
        let Some(port) = pod.named_port(name, protocol) else {
            continue;
        };
        let whole = peer_pods.is_none_or(|l| l.binary_search(&i).is_ok());
        let entries = pod_entries(index, i)
            .filter(|e| whole || blocks.iter().any(|b| b.contains(&e.range.first)));
        by_port.entry(port.get()).or_default().extend(entries);
    }
    by_port
        .into_iter()
        .filter(|(_, entries)| !entries.is_empty())
        .map(|(port, entries)| NamedPort::Peers {
            protocol,
            port,
            name: name.to_owned(),
            set: Rc::new(PeerSet {
                key: Rc::new(SetKey::NamedPort(key.clone())),
                addrs: AddrLists::from_entries(entries),
            }),
        })
        .collect()
}
