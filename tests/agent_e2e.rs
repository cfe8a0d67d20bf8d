//! End to end, with real packets: the FAKE API (scripted list/watch on the
//! client's service layer, see tests/agent_fake_api/) feeds the real agent
//! loop (`sync::run`, kube-rs watchers), which applies with the real
//! `NetlinkDataplane` into a lab node's network namespace; the lab's prober
//! checks the result of each event. Needs root (CI runs as root).

#[allow(dead_code)]
mod agent_fake_api {
    pub mod fake;
    pub mod harness;
}

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_fake_api::fake::{FakeApi, Res};
use agent_fake_api::harness::{namespace, pod, policy};
use kube_nftpolicy::health::Health;
use kube_nftpolicy::metrics::Metrics;
use kube_nftpolicy::sync::{self, SyncConfig};
use nftpolicy_lab::{Cluster, Host, Proto, Serve, Stack};
use nftpolicy_nft::NetlinkDataplane;
use serde_json::json;
use tokio::sync::oneshot;

const PROBE: Duration = Duration::from_millis(300);
const DEADLINE: Duration = Duration::from_secs(15);

/// Probes `from` → `to`:80 until it gives `want` (the agent is asynchronous);
/// panics with `what` if it does not within the deadline.
fn until_reachable(c: &Cluster, from: &Host, to: IpAddr, want: bool, what: &str) -> Duration {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if c.lab.probe(from, to, 80, Proto::Tcp, PROBE) == want {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what}: {} -> {to}:80 still {} after {DEADLINE:?}",
        from.name(),
        if want { "blocked" } else { "open" }
    );
}

/// The lab of both tests: pods `a` and `b` (serving :80 as `http`) on
/// node1, `r` on node2, all in namespace `x`.
struct Pods {
    c: Cluster,
    a: Host,
    b: Host,
    remote: Host,
    /// node1, where the agent runs.
    node: Host,
    /// node2's name.
    node2: String,
}

impl Pods {
    fn new() -> Self {
        let mut c = Cluster::new().expect("lab cluster (needs root)");
        let serve = [Serve {
            proto: Proto::Tcp,
            port: 80,
            name: Some("http"),
        }];
        let a = c.add_pod(1, "x", "a", &[], Stack::V4, &serve).unwrap();
        let b = c.add_pod(1, "x", "b", &[], Stack::V4, &serve).unwrap();
        let remote = c.add_pod(2, "x", "r", &[], Stack::V4, &serve).unwrap();
        let node = c.lab.node(1).unwrap().clone();
        let node2 = c.lab.node(2).unwrap().name().to_owned();
        Self {
            c,
            a,
            b,
            remote,
            node,
            node2,
        }
    }

    /// The IPv4 addresses of `a`, `b` and `r`.
    fn ips(&self) -> (IpAddr, IpAddr, IpAddr) {
        let ip = |h: &Host| IpAddr::V4(h.ipv4().unwrap());
        (ip(&self.a), ip(&self.b), ip(&self.remote))
    }

    /// A fake API holding namespace `x` and its pods `a` (app=a) and `b`
    /// (app=b) on node1.
    fn api(&self) -> Arc<FakeApi> {
        let fake = FakeApi::new();
        let (a_ip, b_ip, _) = self.ips();
        fake.apply(namespace("x", json!({})));
        for (name, ip) in [("a", a_ip), ("b", b_ip)] {
            let labels = json!({ "app": name });
            fake.apply(pod("x", name, self.node.name(), &ip.to_string(), labels));
        }
        fake
    }
}

/// The real agent loop on `node` of the lab, fed by `fake`, applying
/// over netlink into the node's namespace.
struct Agent {
    rt: tokio::runtime::Runtime,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    fn start(fake: &Arc<FakeApi>, node: &Host) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dp = NetlinkDataplane::new(Some(node.netns())).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let client = {
            let _guard = rt.enter();
            fake.client()
        };
        let name = node.name().to_owned();
        let task = rt.spawn(async move {
            let cfg = SyncConfig::new(&name);
            let health = Arc::new(Health::new(
                Duration::from_secs(60),
                Duration::from_secs(60),
            ));
            sync::run(client, dp, &cfg, Arc::new(Metrics::new()), health, async {
                let _ = stopped.await;
            })
            .await;
        });
        Self { rt, stop, task }
    }

    /// Stops the loop and waits for it.
    fn stop(self) {
        let _ = self.stop.send(());
        self.rt.block_on(self.task).unwrap();
    }
}

#[test]
fn fake_api_events_are_enforced_with_real_packets() {
    nftpolicy_lab::kernel_test!("agent_e2e::fake_api_events_are_enforced_with_real_packets");
    let pods = Pods::new();
    let (a_ip, b_ip, r_ip) = pods.ips();
    let fake = pods.api();
    let Pods {
        c,
        a,
        b,
        remote,
        node,
        node2,
        ..
    } = &pods;
    fake.apply(pod(
        "x",
        "r",
        node2,
        &r_ip.to_string(),
        json!({"app": "client"}),
    ));
    fake.apply(policy(
        "x",
        "allow-clients",
        json!({"podSelector": {"matchLabels": {"app": "b"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                            "ports": [{"port": "http"}]}]}),
    ));

    let node_name = node.name().to_owned();
    let agent = Agent::start(&fake, node);

    // Initial lists: b is isolated, r (a client on the other node) may reach it, a may not.
    until_reachable(c, a, b_ip, false, "after the initial lists");
    assert!(
        c.lab.probe(remote, b_ip, 80, Proto::Tcp, PROBE),
        "a client on node2 reaches b"
    );
    assert!(
        c.lab.probe(b, a_ip, 80, Proto::Tcp, PROBE),
        "a is not isolated"
    );

    // A label change on a opens a -> b.
    fake.apply(pod(
        "x",
        "a",
        node_name.as_str(),
        &a_ip.to_string(),
        json!({"app": "client"}),
    ));
    let took = until_reachable(c, a, b_ip, true, "after a became a client");
    eprintln!("label change enforced (as seen by the prober) within {took:?}");

    // Losing the watch (410 Gone, re-list) keeps enforcing, then a new event still applies.
    fake.expire();
    fake.apply(pod(
        "x",
        "r",
        node2,
        &r_ip.to_string(),
        json!({"app": "other"}),
    ));
    until_reachable(
        c,
        remote,
        b_ip,
        false,
        "after r stopped being a client (after a 410 re-list)",
    );
    assert!(
        c.lab.probe(a, b_ip, 80, Proto::Tcp, PROBE),
        "a still allowed after the re-list"
    );

    // Deleting the last policy of b removes its isolation.
    assert!(fake.delete(Res::Policies, "x", "allow-clients"));
    until_reachable(c, remote, b_ip, true, "after the policy was deleted");

    agent.stop();
    // The table stays when the agent stops (a rolling update never opens the node).
    let listing = c
        .lab
        .nft(c.lab.node(1).unwrap(), &["list", "tables"])
        .unwrap();
    assert!(
        listing.contains("inet kube-nftpolicy"),
        "the table outlives the agent: {listing}"
    );
}

/// A peer set of many chunks, followed event by event with real packets.
/// 300 client pods on a node of no lab (API objects only, addressed
/// below and above the lab's 10.244.0.0/16) put the two real peers in the
/// middle chunks of a set of five: each event changes one chunk, which
/// the incremental resolve, the cached build and the netlink picture
/// follow while sharing the others.
#[test]
fn a_peer_set_of_many_chunks_follows_each_event_with_real_packets() {
    nftpolicy_lab::kernel_test!(
        "agent_e2e::a_peer_set_of_many_chunks_follows_each_event_with_real_packets"
    );
    let pods = Pods::new();
    let (a_ip, b_ip, r_ip) = pods.ips();
    let fake = pods.api();
    let Pods {
        c,
        a,
        remote,
        node,
        node2,
        ..
    } = &pods;
    let on = |name: &str, node: &str, ip: IpAddr, app: &str| {
        pod("x", name, node, &ip.to_string(), json!({ "app": app }))
    };
    fake.apply(on("r", node2, r_ip, "client"));
    let filler = |i: u8, high: bool| {
        let addr = IpAddr::from([10, if high { 245 } else { 243 }, 0, i]);
        on(&format!("far-{high}-{i}"), "far-away", addr, "client")
    };
    for i in 0..150 {
        fake.apply(filler(i, false));
        fake.apply(filler(i, true));
    }
    fake.apply(policy(
        "x",
        "allow-clients",
        json!({"podSelector": {"matchLabels": {"app": "b"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
    ));
    let agent = Agent::start(&fake, node);

    until_reachable(c, a, b_ip, false, "after the initial lists");
    assert!(
        c.lab.probe(remote, b_ip, 80, Proto::Tcp, PROBE),
        "r, a client, reaches b"
    );
    let listing = c.lab.nft(node, &["list", "ruleset"]).unwrap();
    let clients = listing.matches("\"x/far-").count();
    assert!(clients >= 300, "{clients} far clients in the table");

    fake.apply(on("a", node.name(), a_ip, "client"));
    until_reachable(c, a, b_ip, true, "after a became a client");
    fake.apply(on("r", node2, r_ip, "other"));
    until_reachable(c, remote, b_ip, false, "after r stopped being a client");
    // Changes in the first and the last chunk leave a's entry alone.
    assert!(fake.delete(Res::Pods, "x", "far-false-0"));
    fake.apply(filler(200, true));
    let start = Instant::now();
    while !c
        .lab
        .nft(node, &["list", "ruleset"])
        .unwrap()
        .contains("\"x/far-true-200\"")
    {
        assert!(start.elapsed() < DEADLINE, "far-true-200 never enforced");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        c.lab.probe(a, b_ip, 80, Proto::Tcp, PROBE),
        "a still a client after changes at both ends"
    );
    assert!(
        !c.lab.probe(remote, b_ip, 80, Proto::Tcp, PROBE),
        "r still not a client"
    );
    fake.apply(on("r", node2, r_ip, "client"));
    until_reachable(c, remote, b_ip, true, "after r became a client again");
    fake.apply(on("a", node.name(), a_ip, "a"));
    until_reachable(c, a, b_ip, false, "after a stopped being a client");
    agent.stop();
}

/// A namespace relabelled, followed with real packets: `r` and 40 other
/// pods of namespace `tools` join and leave the peer set of a
/// namespaceSelector (400 pods of a `blue` namespace keep it large), so
/// the incremental resolve moves the namespace's pods entry by entry and
/// the netlink picture takes the 41 addresses in and out in place.
#[test]
fn a_namespace_relabelled_moves_its_pods_with_real_packets() {
    nftpolicy_lab::kernel_test!(
        "agent_e2e::a_namespace_relabelled_moves_its_pods_with_real_packets"
    );
    let pods = Pods::new();
    let (_, b_ip, r_ip) = pods.ips();
    let fake = pods.api();
    let Pods {
        c,
        a,
        remote,
        node,
        node2,
        ..
    } = &pods;
    fake.apply(namespace("blue", json!({"team": "blue"})));
    fake.apply(namespace("tools", json!({"team": "red"})));
    fake.apply(pod(
        "tools",
        "r",
        node2,
        &r_ip.to_string(),
        json!({"app": "probe"}),
    ));
    for i in 0..400u16 {
        let addr = IpAddr::from([10, 243, (i / 256) as u8, (i % 256) as u8]);
        let name = format!("blue-{i}");
        fake.apply(pod("blue", &name, "far-away", &addr.to_string(), json!({})));
    }
    for i in 0..40u8 {
        let addr = IpAddr::from([10, 245, 0, i]);
        let name = format!("tool-{i}");
        fake.apply(pod(
            "tools",
            &name,
            "far-away",
            &addr.to_string(),
            json!({}),
        ));
    }
    fake.apply(policy(
        "x",
        "allow-blue",
        json!({"podSelector": {"matchLabels": {"app": "b"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}),
    ));
    let agent = Agent::start(&fake, node);

    until_reachable(c, a, b_ip, false, "after the initial lists");
    until_reachable(c, remote, b_ip, false, "r, in a red namespace");
    for round in 0..2 {
        fake.apply(namespace("tools", json!({"team": "blue"})));
        until_reachable(c, remote, b_ip, true, "after tools turned blue");
        let listing = c.lab.nft(node, &["list", "ruleset"]).unwrap();
        let tools = listing.matches("\"tools/tool-").count();
        assert_eq!(tools, 40, "round {round}: the other pods of tools came too");
        assert!(
            !c.lab.probe(a, b_ip, 80, Proto::Tcp, PROBE),
            "a, in x, still not a peer"
        );
        fake.apply(namespace("tools", json!({"team": "red"})));
        until_reachable(c, remote, b_ip, false, "after tools turned red again");
        let listing = c.lab.nft(node, &["list", "ruleset"]).unwrap();
        assert!(
            !listing.contains("\"tools/"),
            "round {round}: tools left whole"
        );
        assert!(listing.contains("\"blue/blue-399\""), "blue stays");
    }
    agent.stop();
}
