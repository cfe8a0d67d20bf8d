//! Ports of a rule: numbers and ranges as written; named ports resolved per
//! pod (ingress: the selected pod's own ports; egress: each peer pod's).

use std::collections::BTreeMap;

use super::index::Index;
use std::rc::Rc;

use super::peers::{describe, pod_entries, PeerCache};
use super::{AddrLists, NamedPort, PeerSet, Ports};
use crate::model::net::{carve, AddrEntry, AddrRange, PortRange};
use crate::model::{Direction, Peer, Pod, PortRef, Protocol, Rule};
use crate::ruleset::names::{comment, short_hash};

/// Resolves the ports of `rule` of a policy in `own`, whose peers have the
/// key `peer_key(own, &rule.peers)`. `selected` are the local pods the policy
/// selects; `peer_pods` the rule's peer pods (`None`: every pod).
pub fn resolve_ports(
    index: &Index<'_>,
    cache: &mut PeerCache,
    (own, peer_key): (&str, &str),
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
                    let key = format!("{peer_key}|{name}|{}", spec.protocol);
                    let found = match cache.named.get(&key) {
                        Some(hit) => Rc::clone(hit),
                        None => {
                            let found = Rc::new(peer_named(
                                index,
                                (&key, own),
                                rule,
                                peer_pods,
                                name,
                                spec.protocol,
                            ));
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
    index: &Index<'_>,
    (key, own): (&str, &str),
    rule: &Rule,
    peer_pods: Option<&Vec<usize>>,
    name: &str,
    protocol: Protocol,
) -> Vec<NamedPort> {
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
        _ => (0..index.pods.len()).collect(),
    };
    let mut by_port: BTreeMap<u16, Vec<AddrEntry>> = BTreeMap::new();
    for i in candidates {
        let pod = index.pods[i];
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
                id: short_hash(key),
                description: comment(&format!("port {name} of {}", describe_rule(own, rule))),
                addrs: AddrLists::from_entries(entries),
            }),
        })
        .collect()
}

fn describe_rule(own: &str, rule: &Rule) -> String {
    if rule.peers.is_empty() {
        "every pod".to_owned()
    } else {
        describe(own, &rule.peers)
    }
}
