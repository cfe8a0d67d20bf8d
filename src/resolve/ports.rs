//! Ports of a rule: numbers and ranges as written; named ports resolved per
//! pod (ingress: the selected pod's own ports; egress: each peer pod's).

use std::collections::BTreeMap;
use std::rc::Rc;

use super::index::Index;
use super::peers::pod_entries;
use super::{AddrLists, NamedPort, Ports};
use crate::model::net::PortRange;
use crate::model::{Direction, Pod, PortRef, Protocol, Rule};

/// Resolves the ports of `rule`. `selected` are the local pods the policy
/// selects; `peer_pods` the rule's peer pods (`None`: every pod).
pub fn resolve_ports(
    index: &Index<'_>,
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
    for spec in &rule.ports {
        match &spec.port {
            None => numeric.push((spec.protocol, None)),
            Some(PortRef::Number(n)) => {
                let last = spec.end_port.map_or(n.get(), |e| e.get().max(n.get()));
                numeric.push((
                    spec.protocol,
                    Some(PortRange {
                        first: n.get(),
                        last,
                    }),
                ));
            }
            Some(PortRef::Name(name)) => match dir {
                Direction::Ingress => named.extend(local_named(selected, name, spec.protocol)),
                Direction::Egress => {
                    named.extend(peer_named(index, peer_pods, name, spec.protocol))
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

fn peer_named(
    index: &Index<'_>,
    peer_pods: Option<&Vec<usize>>,
    name: &str,
    protocol: Protocol,
) -> Vec<NamedPort> {
    let all: Rc<Vec<usize>>;
    let candidates = match peer_pods {
        Some(l) => l,
        None => {
            all = Rc::new((0..index.pods.len()).collect());
            &*all
        }
    };
    let mut by_port: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for &i in candidates {
        if let Some(port) = index.pods[i].named_port(name, protocol) {
            by_port.entry(port.get()).or_default().push(i);
        }
    }
    by_port
        .into_iter()
        .map(|(port, pods)| NamedPort::Peers {
            protocol,
            port,
            name: name.to_owned(),
            addrs: AddrLists::from_entries(
                pods.into_iter()
                    .flat_map(|i| pod_entries(index, i))
                    .collect(),
            ),
        })
        .collect()
}
