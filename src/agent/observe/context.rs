//! What a log record means: the [`LogMap`] and the snapshot of the ruleset
//! the dataplane applied last (and of the one before, for records still in
//! flight from it), and the mapping of a record to an [`Event`].
//!
//! The dataplane thread swaps [`Shared`] after each successful apply (a
//! pointer swap under a mutex, no copy of the snapshot); the reader thread
//! takes a reference per record. The address index is built by the reader,
//! once per applied snapshot, so that a sync never pays for it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use nftpolicy_core::model::{Direction, NamespacedName, Protocol, Snapshot};
use nftpolicy_core::resolve::explain::{explain, Endpoint, Flow};
use nftpolicy_core::ruleset::logging::{parse_prefix, LogMap, LogSubject, LogVerdict};
use nftpolicy_nft::{Headers, LogRecord};

use super::{rfc3339, Event, Peer};

/// One applied ruleset's view: its log ids and the snapshot it was built from.
#[derive(Debug)]
pub struct Applied {
    /// Log id → pod or policy.
    pub map: LogMap,
    /// The snapshot (every node's pods: any of them can be a peer).
    pub snapshot: Arc<Snapshot>,
    addrs: OnceLock<HashMap<IpAddr, NamespacedName>>,
    /// The allowing policies of flows already named, per direction and
    /// flow without the source port: `explain` indexes the whole snapshot
    /// (3.7 ms at 10,000 pods), and the connections between two pods keep
    /// coming back. At most [`ALLOWING_CACHE`] entries.
    allowing: Mutex<HashMap<AllowKey, Option<Vec<String>>>>,
}

/// How many named flows a view remembers.
pub const ALLOWING_CACHE: usize = 4096;

/// A logged allow without its source port: direction, addresses, protocol
/// number, destination port.
type AllowKey = (Direction, IpAddr, IpAddr, u8, Option<u16>);

impl Applied {
    /// The view of a ruleset built from `snapshot` with ids `map`.
    pub fn new(map: LogMap, snapshot: Arc<Snapshot>) -> Self {
        Self {
            map,
            snapshot,
            addrs: OnceLock::new(),
            allowing: Mutex::new(HashMap::new()),
        }
    }

    /// The policies that allowed the logged packet `h` in `dir`
    /// ([`allowing`]), remembered for the next connection of the same flow.
    fn allowing(&self, dir: Direction, h: &Headers) -> Option<Vec<String>> {
        let key = (dir, h.src, h.dst, h.protocol, h.dst_port);
        let lock = || self.allowing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = lock().get(&key) {
            return hit.clone();
        }
        let named = allowing(&self.snapshot, dir, h);
        let mut cache = lock();
        if cache.len() >= ALLOWING_CACHE {
            cache.clear();
        }
        cache.insert(key, named.clone());
        named
    }

    /// The pod that has `ip` (active pods only: a hostNetwork pod's address
    /// is its node's).
    pub fn pod_at(&self, ip: &IpAddr) -> Option<&NamespacedName> {
        self.addrs
            .get_or_init(|| {
                let mut m = HashMap::new();
                for p in self.snapshot.pods.values() {
                    if p.ignored().is_none() {
                        for ip in &p.ips {
                            m.entry(*ip).or_insert_with(|| p.key());
                        }
                    }
                }
                m
            })
            .get(ip)
    }
}

/// The current and the previous applied view.
pub type Views = (Option<Arc<Applied>>, Option<Arc<Applied>>);

/// The last two applied views, shared by the dataplane thread (writer) and
/// the reader (many reads).
#[derive(Debug)]
pub struct Shared {
    node: String,
    views: Mutex<Views>,
}

impl Shared {
    /// Nothing applied yet, on `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            views: Mutex::new((None, None)),
        }
    }

    /// The node events are reported for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A new ruleset was applied: it becomes current, the current one previous.
    pub fn publish(&self, map: LogMap, snapshot: Arc<Snapshot>) {
        let mut v = self.views.lock().unwrap_or_else(|e| e.into_inner());
        let previous = v.0.take();
        *v = (Some(Arc::new(Applied::new(map, snapshot))), previous);
    }

    /// The current and previous views.
    pub fn views(&self) -> Views {
        self.views.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The event of `record`, named from the current view (or the previous
    /// one, for a chain that went with the last apply). Records whose
    /// prefix is not ours, or whose id neither view knows, are `unknown`.
    pub fn event(&self, record: &LogRecord, received: SystemTime) -> Event {
        let (current, previous) = self.views();
        event(&self.node, record, received, [current, previous])
    }
}

/// The protocol's name as policies spell it.
fn protocol_name(n: u8) -> String {
    match n {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

/// The policies whose rules allowed the logged packet `h` in `dir`, as
/// `explain` judges it on the snapshot the ruleset was built from (an
/// accept rule of a pod chain merges the allows of several policies).
/// `None` for a protocol without ports, which `explain` does not judge.
fn allowing(snapshot: &Snapshot, dir: Direction, h: &Headers) -> Option<Vec<String>> {
    let protocol = match h.protocol {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        _ => return None,
    };
    let flow = Flow {
        from: Endpoint::Addr(h.src),
        to: Endpoint::Addr(h.dst),
        protocol,
        port: h.dst_port?,
    };
    let x = explain(snapshot, &flow).ok()?;
    let side = match dir {
        Direction::Ingress => x.ingress,
        Direction::Egress => x.egress,
    };
    let mut policies: Vec<String> = side.allowed_by.into_iter().map(|r| r.policy).collect();
    policies.dedup();
    Some(policies)
}

/// Maps `record` with the first of `views` that knows its id.
pub fn event(
    node: &str,
    record: &LogRecord,
    received: SystemTime,
    views: [Option<Arc<Applied>>; 2],
) -> Event {
    let parsed = parse_prefix(&record.prefix);
    let (id, verdict) = match parsed {
        Some((id, v)) => (id.to_owned(), v),
        None => (record.prefix.clone(), LogVerdict::Drop),
    };
    let h = record.packet;
    let mut e = Event {
        time: rfc3339(record.timestamp.unwrap_or(received)),
        node: node.to_owned(),
        verdict: verdict.as_str().to_owned(),
        direction: None,
        protocol: h.map_or_else(|| "?".to_owned(), |h| protocol_name(h.protocol)),
        src: Peer {
            ip: h.map(|h| h.src.to_string()),
            port: h.and_then(|h| h.src_port),
            ..Peer::default()
        },
        dst: Peer {
            ip: h.map(|h| h.dst.to_string()),
            port: h.and_then(|h| h.dst_port),
            ..Peer::default()
        },
        icmp_type: h.and_then(|h| h.icmp_type),
        policies: Vec::new(),
        id,
        unknown: true,
        repeats: 0,
    };
    let found = parsed.and_then(|(id, _)| {
        views
            .iter()
            .flatten()
            .find_map(|v| v.map.get(id).map(|entry| (v, entry)))
    });
    let name = |view: &Applied, ip: Option<IpAddr>| ip.and_then(|ip| view.pod_at(&ip).cloned());
    let Some((view, entry)) = found else {
        // Unknown id: the addresses may still be pods of the current view.
        if let Some(view) = &views[0] {
            let (src, dst) = (name(view, h.map(|h| h.src)), name(view, h.map(|h| h.dst)));
            set_names(&mut e, src, dst);
        }
        return e;
    };
    e.unknown = false;
    e.direction = Some(entry.direction.to_string());
    let (mut src, mut dst) = (name(view, h.map(|h| h.src)), name(view, h.map(|h| h.dst)));
    match &entry.subject {
        LogSubject::Pod { pod, isolating } => {
            // The chain's pod is the local end, whatever the address index says.
            match entry.direction {
                Direction::Ingress => dst = Some(pod.clone()),
                Direction::Egress => src = Some(pod.clone()),
            }
            let allowing = match (verdict, h) {
                (LogVerdict::Allow, Some(h)) => view.allowing(entry.direction, &h),
                _ => None,
            };
            e.policies =
                allowing.unwrap_or_else(|| isolating.iter().map(ToString::to_string).collect());
        }
    }
    set_names(&mut e, src, dst);
    e
}

fn set_names(e: &mut Event, src: Option<NamespacedName>, dst: Option<NamespacedName>) {
    for (peer, pod) in [(&mut e.src, src), (&mut e.dst, dst)] {
        if let Some(p) = pod {
            peer.namespace = Some(p.namespace.to_string());
            peer.pod = Some(p.name.to_string());
        }
    }
}
