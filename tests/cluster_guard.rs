//! The node's guards on the local cluster (id 7), with the agents as the
//! DaemonSet runs them (gate from the Node's `spec.podCIDRs`, cutting on;
//! `docs/dataplane.md`, "Guard"; issue 12):
//!
//! 1. node1's agent is stopped and a pod is created on node1 through
//!    kubectl (the node runner networks it, it is Running): it can neither
//!    send nor receive, pods the agent knew keep their verdicts, the node
//!    itself reaches the new pod, and the table does not change.
//! 2. The agent starts again: the new pod talks as its policy says.
//! 3. Long-lived TCP and UDP flows (IPv4 and IPv6, opened in the pods'
//!    namespaces to the runner's echo servers) across a tightening
//!    `kubectl apply`: the flows the new table denies stop within a second
//!    of node1's commit, the flows still allowed carry on, and node1's
//!    `flows_cut_total` counts them.
//!
//! Pods: `gd/web` and (later) `gd/late` on node1, `gd/client` and
//! `gd/stranger` on node2. `web` takes only `app=client`.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

#[path = "cluster_ops/mod.rs"]
mod cluster_ops;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use cluster_ops::{allowed, denied};
use cluster_support::Cluster;
use nftpolicy_lab::{netns, request_from, Proto};

/// Deadline of a change being enforced.
const ENFORCED: Duration = Duration::from_secs(30);
/// Deadline of pods running.
const RUNNING: Duration = Duration::from_secs(30);
/// Timeout of one probe that must fail.
const T: Duration = Duration::from_millis(400);

const NS: &str = "gd";
const WEB: &str = "gd/web";
const CLIENT: &str = "gd/client";
const STRANGER: &str = "gd/stranger";
const LATE: &str = "gd/late";

/// A pod on `node` with `labels` (`k: v`), serving TCP 80 and UDP 53.
fn pod(name: &str, node: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}, labels: {{{labels}}}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: c, image: x, ports: \
         [{{containerPort: 80}}, {{containerPort: 53, protocol: UDP}}]}}]}}\n---\n"
    )
}

/// The runner's record of pod `ns/name`: its namespace and addresses.
fn record(c: &Cluster, ns_pod: &str) -> nftpolicy_cluster::state::PodRecord {
    let (ns, name) = ns_pod.split_once('/').expect("ns/pod");
    nftpolicy_cluster::state::find(&c.place.dir, ns, name)
        .unwrap_or_else(|| panic!("{ns_pod} has no network"))
}

fn addr(c: &Cluster, ns_pod: &str, v6: bool) -> IpAddr {
    record(c, ns_pod)
        .ips
        .into_iter()
        .find(|ip| ip.is_ipv6() == v6)
        .unwrap_or_else(|| panic!("{ns_pod} has no address of that family"))
}

fn family(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// A request that must not be answered (refused, rejected or timed out);
/// what happened instead, and how long it took.
fn closed(c: &Cluster, from: &str, to: &str, port: &str, v6: bool) -> (String, Duration) {
    let start = Instant::now();
    match c.request(from, to, port, v6, T) {
        Ok(who) => panic!("{from} -> {to}:{port} ({}) answered by {who}", family(v6)),
        Err(why) => (why, start.elapsed()),
    }
}

/// A long-lived flow from a pod's namespace to a pod's echo server.
enum Conn {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

struct Flow {
    what: String,
    conn: Conn,
}

impl Flow {
    /// Opens `proto` from pod `from` to pod `to` (TCP 80, UDP 53) and
    /// checks one exchange.
    fn open(c: &Cluster, from: &str, to: &str, proto: Proto, v6: bool) -> Self {
        let what = format!("{proto} {from} -> {to} ({})", family(v6));
        let netns_name = record(c, from).netns;
        let port = if proto == Proto::Tcp { 80 } else { 53 };
        let peer = SocketAddr::new(addr(c, to, v6), port);
        let conn = netns::in_netns(&netns_name, move || {
            let io = |e: std::io::Error| nftpolicy_lab::LabError::Setup(e.to_string());
            match proto {
                Proto::Tcp => {
                    let s =
                        TcpStream::connect_timeout(&peer, Duration::from_secs(2)).map_err(io)?;
                    s.set_nodelay(true).map_err(io)?;
                    Ok(Conn::Tcp(s))
                }
                Proto::Udp => {
                    let any: SocketAddr = if v6 { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap();
                    let s = UdpSocket::bind(any).map_err(io)?;
                    s.connect(peer).map_err(io)?;
                    Ok(Conn::Udp(s))
                }
            }
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut flow = Self { what, conn };
        assert!(flow.carries(), "{}: no answer before the change", flow.what);
        flow
    }

    /// One exchange: a byte or a datagram, and the echo within `timeout`.
    fn exchange(&mut self, timeout: Duration) -> bool {
        match &mut self.conn {
            Conn::Tcp(s) => {
                if s.write_all(b"?").is_err() {
                    return false;
                }
                let deadline = Instant::now() + timeout;
                let mut got = Vec::new();
                let mut buf = [0u8; 128];
                while !got.contains(&b'\n') {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
                        return false;
                    }
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                true
            }
            Conn::Udp(u) => {
                let mut buf = [0u8; 128];
                u.set_read_timeout(Some(timeout)).is_ok()
                    && u.send(b"?").is_ok()
                    && u.recv(&mut buf).is_ok()
            }
        }
    }

    /// An exchange with room for a busy machine.
    fn carries(&mut self) -> bool {
        match self.conn {
            Conn::Tcp(_) => self.exchange(Duration::from_secs(2)),
            Conn::Udp(_) => (0..3).any(|_| self.exchange(Duration::from_millis(300))),
        }
    }
}

/// node1's successful syncs (each one a commit).
fn syncs(c: &Cluster) -> f64 {
    c.metric(1, "kube_nftpolicy_syncs_total{result=\"success\"}")
}

fn setup(c: &Cluster) {
    let objects = [
        cluster_ops::namespace(NS),
        pod("web", "node1", "app: web"),
        pod("client", "node2", "app: client"),
        pod("stranger", "node2", "app: stranger"),
        cluster_ops::ingress_policy(NS, "web", "app: web", &["app: client"]),
    ];
    c.apply(&objects.concat());
    c.wait_running(NS, &["web", "client", "stranger"], RUNNING);
    cluster_ops::expect_flows(
        c,
        "set-up",
        &[allowed(CLIENT, WEB), denied(STRANGER, WEB)],
        ENFORCED,
    );
    assert_eq!(
        c.metric(1, "kube_nftpolicy_gate_armed"),
        1.0,
        "node1's gate is not armed (its Node's pod CIDRs)"
    );
}

/// 1: a pod created while node1's agent is stopped stays closed.
fn created_while_stopped(c: &Cluster) {
    c.script(&["agent", "stop", "node1"]);
    let table = c.nft(1);
    assert!(table.contains("local-pods-v4"), "no gate in:\n{table}");
    c.apply(&format!(
        "{}{}",
        pod("late", "node1", "app: late"),
        cluster_ops::ingress_policy(NS, "late", "app: late", &["app: client"])
    ));
    c.wait_running(NS, &["late"], RUNNING);
    let node1 = c.node_netns(1);
    for v6 in [false, true] {
        let f = family(v6);
        let (why, took) = closed(c, LATE, WEB, "80", v6);
        eprintln!("{f}: late -> web: {why} after {took:.0?}");
        let (why, took) = closed(c, CLIENT, LATE, "80", v6);
        eprintln!("{f}: client -> late: {why} after {took:.0?}");
        if !v6 {
            // Rejected, not dropped (IPv6 TCP only gives up at the first
            // retransmitted SYN, after a second).
            assert!(
                !why.contains("timed out") && took < T,
                "{f}: client -> late was dropped, not rejected: {why} after {took:?}"
            );
        }
        closed(c, LATE, CLIENT, "80", v6);
        closed(c, STRANGER, LATE, "80", v6);
        closed(c, LATE, WEB, "53/udp", v6);
        let to = SocketAddr::new(addr(c, LATE, v6), 80);
        let node = request_from(&node1, to, Proto::Tcp, Duration::from_secs(2));
        assert!(
            node.is_ok(),
            "{f}: node1 itself (kubelet probes) cannot reach late: {node:?}"
        );
    }
    cluster_ops::probe_all(c, &[allowed(CLIENT, WEB), denied(STRANGER, WEB)])
        .unwrap_or_else(|e| panic!("known pods while the agent is stopped: {e}"));
    assert_eq!(
        cluster_ops::without_counters(&c.nft(1)),
        cluster_ops::without_counters(&table),
        "the table changed while no agent ran"
    );
}

/// 2: the agent starts again and programs the new pod.
fn programmed_after_start(c: &Cluster) {
    let start = Instant::now();
    c.script(&["agent", "start", "node1"]);
    cluster_ops::expect_flows(
        c,
        "the pod created while the agent was stopped",
        &[
            allowed(CLIENT, LATE),
            denied(STRANGER, LATE),
            allowed(LATE, CLIENT),
            denied(LATE, WEB),
            allowed(CLIENT, WEB),
            denied(STRANGER, WEB),
        ],
        ENFORCED,
    );
    eprintln!(
        "late programmed as its policy says {:.1?} after `agent start`",
        start.elapsed()
    );
}

/// 3: a tightening `kubectl apply` under long-lived flows.
fn tighten_under_flows(c: &Cluster) {
    let mut doomed = Vec::new();
    let mut kept = Vec::new();
    for v6 in [false, true] {
        for proto in [Proto::Tcp, Proto::Udp] {
            doomed.push(Flow::open(c, CLIENT, LATE, proto, v6));
            kept.push(Flow::open(c, CLIENT, WEB, proto, v6));
        }
    }
    // Let node1's last sync (and any follow-up) pass.
    std::thread::sleep(Duration::from_millis(500));
    let cut_before = c.metric(1, "kube_nftpolicy_flows_cut_total");
    let before = syncs(c);
    // node1's metrics are polled while kubectl applies: the commit came
    // after the start of the last poll that did not see it, and the bound
    // below counts from there (never later than the commit).
    let applied = Instant::now();
    let mut polls = 0;
    let mut commit = applied;
    let apply_took = std::thread::scope(|scope| {
        let apply = scope.spawn(|| {
            c.apply(&cluster_ops::ingress_policy(
                NS,
                "late",
                "app: late",
                &["app: friend"],
            ));
            applied.elapsed()
        });
        loop {
            let poll = Instant::now();
            polls += 1;
            if syncs(c) > before {
                break;
            }
            commit = poll;
            assert!(
                applied.elapsed() < ENFORCED,
                "node1 did not sync after the apply"
            );
        }
        apply.join().expect("kubectl apply")
    });
    eprintln!(
        "kubectl apply took {apply_took:.0?}; node1 committed later than {:.0?} after it started \
         ({polls} polls of its metrics)",
        commit - applied
    );
    let give_up = commit + Duration::from_secs(3);
    let stopped: Vec<(String, Option<Duration>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = doomed
            .iter_mut()
            .map(|flow| {
                scope.spawn(move || {
                    while Instant::now() < give_up {
                        let at = commit.elapsed();
                        if !flow.exchange(Duration::from_millis(150)) {
                            return (flow.what.clone(), Some(at));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    (flow.what.clone(), None)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|h| h.join().expect("flow thread"))
            .collect()
    });
    for (what, at) in &stopped {
        let at = at.unwrap_or_else(|| panic!("{what}: still passes 3 s after the commit"));
        eprintln!("  {what}: stopped {at:.0?} after that");
        assert!(
            at < Duration::from_secs(1),
            "{what}: still passed {at:?} after the commit"
        );
    }
    for round in 0..3 {
        for flow in &mut doomed {
            assert!(
                !flow.exchange(Duration::from_millis(150)),
                "{}: passes again (round {round})",
                flow.what
            );
        }
        for flow in &mut kept {
            assert!(flow.carries(), "{}: disturbed (round {round})", flow.what);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let cut = c.metric(1, "kube_nftpolicy_flows_cut_total") - cut_before;
    eprintln!("node1 flows_cut_total +{cut}");
    assert!(
        cut >= doomed.len() as f64,
        "{} flows stopped, node1's flows_cut_total rose by {cut}",
        doomed.len()
    );
    cluster_ops::expect_flows(
        c,
        "after the tightening",
        &[denied(CLIENT, LATE), allowed(CLIENT, WEB)],
        ENFORCED,
    );
}

#[test]
fn a_pod_created_while_the_agent_is_stopped_stays_closed_and_tightening_cuts_flows() {
    nftpolicy_lab::kernel_test!("cluster_guard");
    let start = Instant::now();
    let mut lap = Instant::now();
    let c = cluster_ops::up(7, 2, "");
    let mut timed = |what: &str| {
        eprintln!("{what}: {:.1?}", lap.elapsed());
        lap = Instant::now();
    };
    timed("up");
    setup(&c);
    timed("set-up");
    created_while_stopped(&c);
    timed("a pod created while the agent is stopped");
    programmed_after_start(&c);
    timed("agent start");
    tighten_under_flows(&c);
    timed("tightening under flows");
    for n in 1..=2 {
        assert_eq!(c.agent_get(n, "/healthz").0, 200, "node{n} /healthz");
        assert_eq!(c.agent_get(n, "/readyz").0, 200, "node{n} /readyz");
    }
    eprintln!("total: {:.1?}", start.elapsed());
}
