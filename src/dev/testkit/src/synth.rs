//! A deterministic synthetic cluster for benches and scale tests: namespaces
//! of ~100 pods, a realistic mix of policies (per-namespace default-deny,
//! app-to-app podSelector allows, namespaceSelector allows, ipBlocks with
//! except, named ports, DNS egress), and a chosen number of pods on the node
//! under test. Same parameters, same cluster: no randomness. Pods share
//! their namespace, node and label set through a [`Pools`], as the agent's
//! watch stores share them.

use crate::*;
use nftpolicy_core::model::{Operator, Pools, Protocol, Selector, Snapshot};

/// Size of a synthetic cluster.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Pods in the cluster.
    pub pods: usize,
    /// NetworkPolicies in the cluster.
    pub policies: usize,
    /// Pods on the node under test (`node-0`).
    pub local_pods: usize,
}

/// Pods per namespace.
const NS_SIZE: usize = 100;
/// Apps per namespace (pods of an app share its labels).
const APPS: usize = 10;

/// The node whose ruleset is built in benches.
pub const LOCAL_NODE: &str = "node-0";

/// Builds the cluster described by `spec`.
pub fn cluster(spec: Spec) -> Snapshot {
    let namespaces = spec.pods.div_ceil(NS_SIZE).max(1);
    let mut s = Snapshot::default();
    for n in 0..namespaces {
        let team = format!("t{}", n % 5);
        s.add_namespace(namespace(&ns_name(n), [("team", team.as_str())]));
    }
    s.add_namespace(namespace("kube-system", []));
    // Local pods are spread over the namespaces: every (pods / local)-th pod.
    let stride = (spec.pods / spec.local_pods.max(1)).max(1);
    let mut pools = Pools::new();
    for i in 0..spec.pods {
        let n = i / NS_SIZE;
        let app = format!("app-{}", i % APPS);
        let tier = if i % 3 == 0 { "front" } else { "back" };
        let node = if i % stride == 0 && i / stride < spec.local_pods {
            LOCAL_NODE.to_owned()
        } else {
            format!("node-{}", 1 + i / 110)
        };
        let mut p = pod(&ns_name(n), &format!("{app}-{i}"))
            .labels([("app", app.as_str()), ("tier", tier)])
            .ip(&format!(
                "10.{}.{}.{}",
                64 + i / 65536,
                (i / 256) % 256,
                i % 256
            ))
            .node(&node)
            .port("http", 8080, Protocol::Tcp)
            .port("metrics", 9090, Protocol::Tcp);
        if i % 4 == 0 {
            // Two groups: one group of 5 hex digits (past 65,535 pods) is
            // not an address. Below that, `::0:h` is the address `::h`.
            let h = i + 1;
            p = p.ip(&format!("fd00:10:244::{:x}:{:x}", h >> 16, h & 0xffff));
        }
        pools.share_pod(&mut p);
        s.add_pod(p);
    }
    for k in 0..spec.policies {
        s.add_policy(policy_for(k, namespaces));
    }
    s
}

fn ns_name(n: usize) -> String {
    format!("ns-{n}")
}

/// The k-th policy: the kind cycles so every mix has all kinds.
fn policy_for(k: usize, namespaces: usize) -> nftpolicy_core::model::Policy {
    let n = k % namespaces;
    let ns = ns_name(n);
    let app = |j: usize| {
        let value = format!("app-{}", j % APPS);
        Selector::labels([("app", value.as_str())])
    };
    let team = format!("t{}", n % 5);
    let kind = (k / namespaces) % 6;
    let name = format!("policy-{k}");
    match kind {
        // Default deny for the namespace, both directions.
        0 => policy(&ns, &name).types(true, true),
        // app-a may reach app-b on 8080.
        1 => policy(&ns, &name)
            .select(app(k))
            .ingress(rule().pods(app(k + 1)).port(Protocol::Tcp, 8080)),
        // Monitoring namespaces (team t0) may scrape metrics (named port).
        2 => policy(&ns, &name).select(Selector::everything()).ingress(
            rule()
                .namespaces(Selector::labels([("team", "t0")]))
                .named_port(Protocol::Tcp, "metrics"),
        ),
        // Egress to DNS in kube-system and to the app's backends by named port.
        3 => policy(&ns, &name)
            .select(app(k))
            .egress(
                rule()
                    .namespaces(Selector::labels([(
                        "kubernetes.io/metadata.name",
                        "kube-system",
                    )]))
                    .port(Protocol::Udp, 53)
                    .port(Protocol::Tcp, 53),
            )
            .egress(rule().pods(app(k + 2)).named_port(Protocol::Tcp, "http")),
        // Outside world except private ranges, on 443.
        4 => policy(&ns, &name).select(app(k)).egress(
            rule()
                .ip_block(
                    "0.0.0.0/0",
                    &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                )
                .port(Protocol::Tcp, 443),
        ),
        // Front tier from the same team's namespaces, range of ports.
        _ => policy(&ns, &name)
            .select(Selector::everything().with("tier", Operator::In(["front".to_owned()].into())))
            .ingress(
                rule()
                    .pods_in(
                        Selector::labels([("team", team.as_str())]),
                        Selector::labels([("tier", "front")]),
                    )
                    .port_range(Protocol::Tcp, 8000, 8100),
            ),
    }
}
