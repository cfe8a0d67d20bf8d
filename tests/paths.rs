//! Every traffic path of docs/dataplane.md ("The traffic paths"), with real packets, in IPv4 and
//! IPv6, each both allowed and denied by a policy. The lab (`lab::Cluster`)
//! runs two nodes wired together, pods on each node's `cni0` bridge, and an
//! external host `ext` (192.0.2.2, 2001:db8:0:1::2) behind node 1; each node's
//! table is resolved, built and applied by the real engine (a full replace
//! first, then incrementally).
//!
//! | test | path |
//! | --- | --- |
//! | `same_node_pod_to_pod_across_the_bridge` | 1: same node, bridged (`br_netfilter`) |
//! | `cross_node_egress_on_the_sender_ingress_on_the_receiver` | 2: routed between nodes |
//! | `service_cluster_ip_is_judged_by_the_backend_address` | 3: ClusterIP and NodePort DNAT (kube-proxy) |
//! | `node_to_local_pod_and_pod_to_its_own_node` | 4: kubelet probes, input hook |
//! | `external_host_ip_block_with_except` | 5: outside world, ipBlock minus except |
//! | `dual_stack_a_v4_ip_block_does_not_open_v6` | 6: families, all of a pod's IPs |
//! | `ipv6_neighbour_discovery_survives_default_deny` | ND (and ARP) under deny both ways |
//! | `a_rule_without_ports_allows_ping` | ICMP / ICMPv6 echo, ICMP errors as related |
//! | `fragmented_datagrams_are_judged_whole` | IP fragments (reassembled before policy) |
//!
//! There is no `ping` binary on the machine, so ICMP echo is sent from a raw
//! socket opened inside the source namespace (`lab::ping`).
//!
//! They need root; without it they fail with a clear message, never skip.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use nftpolicy_core::model::{Policy, Protocol, Selector};
use nftpolicy_lab::{netns, Cluster, Family, Host, Lab, Matrix, Proto, Serve, Stack};
use nftpolicy_nft::ApplyKind;
use nftpolicy_testkit::*;

// ---------------------------------------------------------------------------
// Helpers (tests/kernel_checks/)
// ---------------------------------------------------------------------------

mod kernel_checks;
use kernel_checks::*;

/// Applies the cluster's policies to both nodes; the first apply of a
/// cluster is a full replace, every later one incremental (or no change).
fn apply(c: &mut Cluster, first: bool) {
    let reports = c.apply().unwrap_or_else(|e| panic!("apply: {e}"));
    for (node, r) in reports {
        if first {
            assert_eq!(r.kind, ApplyKind::Full, "{node}: first apply");
        } else {
            assert_ne!(
                r.kind,
                ApplyKind::Full,
                "{node}: later applies are incremental: {r:?}"
            );
        }
    }
}

fn check_matrix(m: &Matrix, want: &Matrix, step: &str) {
    m.check(want)
        .unwrap_or_else(|e| panic!("{step}: connectivity matrix wrong:\n{e}"));
}

fn ip(h: &Host, f: Family) -> IpAddr {
    h.ip(f)
        .unwrap_or_else(|| panic!("{} has no {f} address", h.name()))
}

const TCP80: Via = Via::Tcp(80);
const TCP8080: Via = Via::Tcp(8080);
const UDP8080: Via = Via::Udp(8080);
const PING: Via = Via::Ping;

/// What every lab pod serves.
const SERVE: &[Serve<'static>] = &[
    Serve {
        proto: Proto::Tcp,
        port: 80,
        name: Some("http"),
    },
    Serve {
        proto: Proto::Tcp,
        port: 8080,
        name: Some("alt"),
    },
    Serve {
        proto: Proto::Udp,
        port: 8080,
        name: Some("alt-udp"),
    },
];
/// The same ports for `probe_matrix`.
const PORTS: &[(Proto, u16)] = &[(Proto::Tcp, 80), (Proto::Tcp, 8080), (Proto::Udp, 8080)];

fn cluster() -> Cluster {
    Cluster::new().unwrap_or_else(|e| panic!("lab cluster: {e}"))
}

fn pod(c: &mut Cluster, node: u8, ns: &str, name: &str, stack: Stack) -> Host {
    c.add_pod(node, ns, name, &[("app", name)], stack, SERVE)
        .unwrap_or_else(|e| panic!("pod {ns}/{name}: {e}"))
}

fn app(name: &str) -> Selector {
    labels([("app", name)])
}

fn set(c: &mut Cluster, policies: impl IntoIterator<Item = Policy>) {
    c.set_policies(policies);
    apply(c, false);
}

// ---------------------------------------------------------------------------
// 1. Same node, pod to pod across cni0 (br_netfilter)
// ---------------------------------------------------------------------------

#[test]
fn same_node_pod_to_pod_across_the_bridge() {
    nftpolicy_lab::kernel_test!("paths::same_node_pod_to_pod_across_the_bridge");
    let started = Instant::now();
    let mut c = cluster();
    c.add_namespace("p", &[]);
    let n1 = c.lab.node(1).unwrap().clone();
    for name in ["a", "b", "x"] {
        pod(&mut c, 1, "p", name, Stack::Dual);
    }
    // Bridged traffic reaches the inet forward hook only with these on.
    for key in [
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
    ] {
        assert_eq!(
            netns::sysctl_get(n1.netns(), key).unwrap().as_deref(),
            Some("1"),
            "{key} on node1"
        );
    }
    apply(&mut c, true);
    let m = c.matrix(PORTS, T);
    check_matrix(&m, &m.expect(|_| true), "no policy: everything connects");

    // b takes TCP and UDP 8080 from a only; x may talk to a only.
    set(
        &mut c,
        [
            policy("p", "b-from-a").select(app("b")).ingress(
                rule()
                    .pods(app("a"))
                    .port(Protocol::Tcp, 8080)
                    .port(Protocol::Udp, 8080),
            ),
            policy("p", "x-to-a")
                .select(app("x"))
                .types(false, true)
                .egress(rule().pods(app("a"))),
        ],
    );
    let m = c.matrix(PORTS, T);
    let want = m.expect(|k| {
        if k.from == k.to {
            return true; // a pod talking to itself never leaves its namespace
        }
        let ingress_ok = k.to != "p-b" || (k.from == "p-a" && k.port == 8080);
        let egress_ok = k.from != "p-x" || k.to == "p-a";
        ingress_ok && egress_ok
    });
    eprintln!("same node:\n{m}");
    check_matrix(&m, &want, "b from a on 8080, x to a only");
    // Every cell was probed in both families.
    assert_eq!(m.results.len(), 3 * 3 * 3 * 2);
    eprintln!(
        "same_node_pod_to_pod_across_the_bridge: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 2. Cross node, routed
// ---------------------------------------------------------------------------

/// Whether `node`'s kernel table dispatches nothing (all four maps empty).
fn maps_empty(c: &Cluster, node: &str) -> bool {
    let n = c.lab.host(node).unwrap().clone();
    [
        "ingress-pods-v4",
        "ingress-pods-v6",
        "egress-pods-v4",
        "egress-pods-v6",
    ]
    .iter()
    .all(|map| {
        let out = c
            .lab
            .nft(&n, &["list", "map", "inet", "kube-nftpolicy", map])
            .unwrap_or_else(|e| panic!("{node}: list map {map}: {e}"));
        !out.contains("elements")
    })
}

#[test]
fn cross_node_egress_on_the_sender_ingress_on_the_receiver() {
    nftpolicy_lab::kernel_test!("paths::cross_node_egress_on_the_sender_ingress_on_the_receiver");
    let started = Instant::now();
    let mut c = cluster();
    c.add_namespace("p", &[]);
    pod(&mut c, 1, "p", "a", Stack::Dual);
    pod(&mut c, 1, "p", "w", Stack::Dual);
    pod(&mut c, 2, "p", "b", Stack::Dual);
    pod(&mut c, 2, "p", "u", Stack::Dual);
    apply(&mut c, true);

    // a (node1) may send nothing: node1 drops a -> b although node2, where
    // b lives, has no rule about a at all.
    set(
        &mut c,
        [policy("p", "a-deny-egress")
            .select(app("a"))
            .types(false, true)],
    );
    assert!(maps_empty(&c, "node2"), "node2 must hold no pod chain");
    assert!(!maps_empty(&c, "node1"), "node1 dispatches a");
    let m = c.matrix(PORTS, T);
    eprintln!("a denied egress:\n{m}");
    check_matrix(
        &m,
        &m.expect(|k| k.from != "p-a" || k.to == "p-a"),
        "egress of a judged on node1",
    );

    // b (node2) takes only w (node1): node2 drops a -> b and u -> b; node1,
    // which forwards a's and w's packets, holds no rule about b.
    set(
        &mut c,
        [policy("p", "b-from-w")
            .select(app("b"))
            .ingress(rule().pods(app("w")))],
    );
    assert!(maps_empty(&c, "node1"), "node1 must hold no pod chain");
    let m = c.matrix(PORTS, T);
    eprintln!("b ingress from w:\n{m}");
    check_matrix(
        &m,
        &m.expect(|k| k.to != "p-b" || k.from == "p-w" || k.from == "p-b"),
        "ingress of b judged on node2",
    );

    // Both ends isolated: a's egress to b passes node1, b's ingress (w only)
    // still drops it on node2; adding a to b's ingress opens it.
    set(
        &mut c,
        [
            policy("p", "a-to-b")
                .select(app("a"))
                .types(false, true)
                .egress(rule().pods(app("b"))),
            policy("p", "b-from-w")
                .select(app("b"))
                .ingress(rule().pods(app("w"))),
        ],
    );
    let (a, b, w) = (
        c.pod("p", "a").unwrap().clone(),
        c.pod("p", "b").unwrap().clone(),
        c.pod("p", "w").unwrap().clone(),
    );
    let mut checks = flows(
        &a,
        &b,
        &[TCP8080, UDP8080],
        false,
        "a's egress allows, b's ingress does not",
    );
    checks.extend(flows(&a, &w, &[TCP8080], false, "a may only reach b"));
    checks.extend(flows(&w, &b, &[TCP8080, UDP8080], true, "w to b"));
    verify(&c.lab, "AND of both ends", &checks);
    set(
        &mut c,
        [
            policy("p", "a-to-b")
                .select(app("a"))
                .types(false, true)
                .egress(rule().pods(app("b"))),
            policy("p", "b-from-w")
                .select(app("b"))
                .ingress(rule().pods(app("w")).pods(app("a"))),
        ],
    );
    let mut checks = flows(&a, &b, &[TCP8080, UDP8080, TCP80], true, "both ends allow");
    checks.extend(flows(&a, &w, &[TCP8080], false, "a may only reach b"));
    verify(&c.lab, "both ends allow", &checks);
    eprintln!(
        "cross_node_egress_on_the_sender_ingress_on_the_receiver: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 3. Pod -> Service ClusterIP, DNAT'ed to a backend pod
// ---------------------------------------------------------------------------

#[test]
fn service_cluster_ip_is_judged_by_the_backend_address() {
    nftpolicy_lab::kernel_test!("paths::service_cluster_ip_is_judged_by_the_backend_address");
    let started = Instant::now();
    let mut c = cluster();
    c.add_namespace("p", &[]);
    let client = pod(&mut c, 1, "p", "client", Stack::Dual);
    let other = pod(&mut c, 1, "p", "other", Stack::Dual);
    // One backend on the other node (routed), one on the client's node
    // (DNAT, then back across the same bridge).
    let remote = c
        .add_pod(2, "p", "be", &[("app", "backend")], Stack::Dual, SERVE)
        .unwrap();
    let local = c
        .add_pod(
            1,
            "p",
            "bl",
            &[("app", "backend-local")],
            Stack::Dual,
            SERVE,
        )
        .unwrap();
    // Service port 80 -> target port 8080, as kube-proxy would install it.
    let vips: [(&str, &Host, Family); 4] = [
        ("10.96.0.10", &remote, Family::V4),
        ("fd00:10:96::a", &remote, Family::V6),
        ("10.96.0.11", &local, Family::V4),
        ("fd00:10:96::b", &local, Family::V6),
    ];
    let vips: Vec<(IpAddr, Host, Family)> = vips
        .iter()
        .map(|(v, h, f)| (v.parse().unwrap(), (*h).clone(), *f))
        .collect();
    for (vip, backend, f) in &vips {
        for proto in [Proto::Tcp, Proto::Udp] {
            c.lab
                .add_service(
                    SocketAddr::new(*vip, 80),
                    proto,
                    SocketAddr::new(ip(backend, *f), 8080),
                )
                .unwrap();
        }
    }
    apply(&mut c, true);
    let via_vip = |from: &Host, want: bool, what: &str, only: Option<&str>| -> Vec<Check> {
        vips.iter()
            .filter(|(_, b, _)| only.is_none_or(|o| b.name() == o))
            .flat_map(|(vip, b, _)| {
                [Via::Tcp(80), Via::Udp(80)]
                    .map(|via| at(from, *vip, via, want, what).who(b.name()))
            })
            .collect()
    };
    let mut checks = via_vip(&client, true, "no policy: the ClusterIP answers", None);
    checks.extend(via_vip(
        &other,
        true,
        "no policy: the ClusterIP answers",
        None,
    ));
    verify(&c.lab, "no policy", &checks);

    // Ingress of both backends from the client pod, on the target port.
    let backends = || {
        Selector::everything().with(
            "app",
            nftpolicy_core::model::Operator::In(
                ["backend".to_owned(), "backend-local".to_owned()].into(),
            ),
        )
    };
    set(
        &mut c,
        [policy("p", "backend-from-client")
            .select(backends())
            .ingress(
                rule()
                    .pods(app("client"))
                    .port(Protocol::Tcp, 8080)
                    .port(Protocol::Udp, 8080),
            )],
    );
    let mut checks = via_vip(
        &client,
        true,
        "podSelector of the client, seen after DNAT",
        None,
    );
    checks.extend(via_vip(
        &other,
        false,
        "another pod through the ClusterIP",
        None,
    ));
    verify(&c.lab, "ingress of the backends", &checks);

    // The same ingress on the Service port (80) instead of the target port:
    // after DNAT the packet goes to 8080, so it opens nothing.
    set(
        &mut c,
        [policy("p", "backend-from-client")
            .select(backends())
            .ingress(
                rule()
                    .pods(app("client"))
                    .port(Protocol::Tcp, 80)
                    .port(Protocol::Udp, 80),
            )],
    );
    verify(
        &c.lab,
        "ingress on the service port",
        &via_vip(&client, false, "policy sees port 8080, not 80", None),
    );

    // Egress of the client to the remote backend's pods: the ClusterIP that
    // maps to it works, the one that maps to the local backend does not.
    set(
        &mut c,
        [policy("p", "client-to-backend")
            .select(app("client"))
            .types(false, true)
            .egress(
                rule()
                    .pods(app("backend"))
                    .port(Protocol::Tcp, 8080)
                    .port(Protocol::Udp, 8080),
            )],
    );
    let mut checks = via_vip(
        &client,
        true,
        "egress podSelector of the backend",
        Some("p-be"),
    );
    checks.extend(via_vip(&client, false, "the other backend", Some("p-bl")));
    verify(&c.lab, "egress to the backend pods", &checks);

    // An ipBlock of the ClusterIP range does not match: policy never sees it.
    set(
        &mut c,
        [policy("p", "client-to-cluster-ip")
            .select(app("client"))
            .types(false, true)
            .egress(
                rule()
                    .ip_block("10.96.0.0/12", &[])
                    .ip_block("fd00:10:96::/108", &[]),
            )],
    );
    let mut checks = via_vip(&client, false, "ipBlock of the ClusterIP", None);
    checks.extend(via_vip(&other, true, "other is not isolated", None));
    verify(&c.lab, "egress ipBlock of the ClusterIP", &checks);

    // NodePort: ext connects to node1's address on 30080, DNAT'ed to the
    // backend on node2; node2 judges the backend's ingress by ext's address.
    let ext = c.lab.host("ext").unwrap().clone();
    let node_port: Vec<IpAddr> = ["192.0.2.1", "2001:db8:0:1::1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    for (a, f) in node_port.iter().zip(Family::ALL) {
        c.lab
            .add_service(
                SocketAddr::new(*a, 30080),
                Proto::Tcp,
                SocketAddr::new(ip(&remote, f), 8080),
            )
            .unwrap();
    }
    let from_ext = |want: bool, what: &str| -> Vec<Check> {
        node_port
            .iter()
            .map(|a| at(&ext, *a, Via::Tcp(30080), want, what).who(remote.name()))
            .collect()
    };
    verify(&c.lab, "NodePort, no policy", &from_ext(true, "NodePort"));
    set(
        &mut c,
        [policy("p", "backend-from-outside")
            .select(app("backend"))
            .ingress(
                rule()
                    .ip_block("192.0.2.0/26", &[])
                    .ip_block("2001:db8:0:1::/64", &[])
                    .port(Protocol::Tcp, 8080),
            )],
    );
    let mut checks = from_ext(true, "NodePort, ipBlock of the client");
    checks.extend(via_vip(
        &client,
        false,
        "a pod is not in the block",
        Some("p-be"),
    ));
    verify(&c.lab, "NodePort allowed", &checks);
    set(
        &mut c,
        [policy("p", "backend-from-outside")
            .select(app("backend"))
            .ingress(
                rule()
                    .ip_block("192.0.2.64/26", &[])
                    .ip_block("2001:db8:0:2::/64", &[])
                    .port(Protocol::Tcp, 8080),
            )],
    );
    verify(
        &c.lab,
        "NodePort denied",
        &from_ext(false, "NodePort, ext not in the block"),
    );
    eprintln!(
        "service_cluster_ip_is_judged_by_the_backend_address: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 4. Node -> local pod (kubelet), pod -> its own node (input hook)
// ---------------------------------------------------------------------------

#[test]
fn node_to_local_pod_and_pod_to_its_own_node() {
    nftpolicy_lab::kernel_test!("paths::node_to_local_pod_and_pod_to_its_own_node");
    let started = Instant::now();
    let mut c = cluster();
    c.add_namespace("p", &[]);
    c.add_namespace("q", &[]);
    let a = pod(&mut c, 1, "p", "a", Stack::Dual);
    let r = pod(&mut c, 2, "p", "r", Stack::Dual);
    let b = pod(&mut c, 1, "q", "b", Stack::Dual);
    let (n1, n2, ext) = (
        c.lab.node(1).unwrap().clone(),
        c.lab.node(2).unwrap().clone(),
        c.lab.host("ext").unwrap().clone(),
    );
    // The nodes serve on all their addresses (cni0 gateway and wire).
    let ports = [(Proto::Tcp, 8080), (Proto::Udp, 8080)];
    let _servers = [
        c.lab.serve(&n1, &ports).unwrap(),
        c.lab.serve(&n2, &ports).unwrap(),
    ];
    apply(&mut c, true);
    // Default deny, both directions, for every pod of p.
    set(&mut c, [policy("p", "deny-all").types(true, true)]);

    let wire1: IpAddr = "10.0.0.1".parse().unwrap();
    let v = [TCP8080, UDP8080];
    let mut checks = Vec::new();
    // Kubelet probes: a pod's own node always connects.
    checks.extend(flows(
        &n1,
        &a,
        &[TCP8080, UDP8080, PING],
        true,
        "node1 probes its pod a",
    ));
    checks.extend(flows(
        &n2,
        &r,
        &[TCP8080, UDP8080, PING],
        true,
        "node2 probes its pod r",
    ));
    // ... but only its own node: node2 -> a crosses node1's forward hook.
    checks.extend(flows(&n2, &a, &v, false, "node2 is not a's node"));
    checks.extend(flows(&n1, &r, &v, false, "node1 is not r's node"));
    checks.extend(flows(&ext, &a, &v, false, "outside"));
    // Pod -> its own node: the input hook judges the pod's egress.
    checks.extend(flows(&a, &n1, &v, false, "a to its node, egress denied"));
    checks.push(at(&a, wire1, TCP8080, false, "a to node1's wire address"));
    checks.extend(flows(&r, &n2, &v, false, "r to its node, egress denied"));
    checks.extend(flows(&b, &n1, &v, true, "b (not isolated) to its node"));
    verify(&c.lab, "default deny in p", &checks);

    // a may reach its node's cni0 address (ipBlock), nothing else of it.
    set(
        &mut c,
        [
            policy("p", "deny-all").types(true, true),
            policy("p", "a-to-node")
                .select(app("a"))
                .types(false, true)
                .egress(
                    rule()
                        .ip_block("10.244.1.1/32", &[])
                        .ip_block("fd00:10:244:1::1/128", &[]),
                ),
        ],
    );
    let mut checks = flows(
        &a,
        &n1,
        &[TCP8080, UDP8080, PING],
        true,
        "a to node1's cni0 address",
    );
    checks.push(at(&a, wire1, TCP8080, false, "a to node1's wire address"));
    checks.extend(flows(&a, &n2, &v, false, "a to node2"));
    checks.extend(flows(&r, &n2, &v, false, "r still denied"));
    checks.extend(flows(&n1, &a, &v, true, "node1 still probes a"));
    verify(&c.lab, "a allowed to its node", &checks);
    eprintln!(
        "node_to_local_pod_and_pod_to_its_own_node: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 5. External host <-> pod: ipBlock with except
// ---------------------------------------------------------------------------

#[test]
fn external_host_ip_block_with_except() {
    nftpolicy_lab::kernel_test!("paths::external_host_ip_block_with_except");
    let started = Instant::now();
    let mut c = cluster();
    // ext is 192.0.2.2 / 2001:db8:0:1::2; ext2 is 192.0.2.66 / 2001:db8:0:2::2.
    let ext2 = c.lab.add_external("ext2").unwrap();
    let ext = c.lab.host("ext").unwrap().clone();
    assert_eq!(ext2.ipv4(), Some("192.0.2.66".parse().unwrap()));
    let ports = [(Proto::Tcp, 8080), (Proto::Udp, 8080)];
    let _servers = [
        c.lab.serve(&ext, &ports).unwrap(),
        c.lab.serve(&ext2, &ports).unwrap(),
    ];
    c.add_namespace("p", &[]);
    c.add_namespace("q", &[]);
    let w = pod(&mut c, 1, "p", "w", Stack::Dual);
    let v = pod(&mut c, 2, "p", "v", Stack::Dual);
    let z = pod(&mut c, 1, "q", "z", Stack::Dual);
    apply(&mut c, true);

    let outside = || {
        rule()
            .ip_block("192.0.2.0/24", &["192.0.2.64/26"])
            .ip_block("2001:db8::/32", &["2001:db8:0:2::/64"])
    };
    set(
        &mut c,
        [policy("p", "outside-only")
            .types(true, true)
            .ingress(outside())
            .egress(outside())],
    );
    let all = [TCP8080, UDP8080];
    let mut checks = Vec::new();
    for p in [&w, &v] {
        checks.extend(flows(&ext, p, &all, true, "ext inside the block"));
        checks.extend(flows(&ext2, p, &all, false, "ext2 in the except"));
        checks.extend(flows(p, &ext, &all, true, "to ext"));
        checks.extend(flows(p, &ext2, &all, false, "to ext2, the except"));
        checks.extend(flows(&z, p, &[TCP8080], false, "a pod is not in the block"));
        checks.extend(flows(p, &z, &[TCP8080], false, "nor as a destination"));
    }
    checks.extend(flows(&ext2, &z, &all, true, "z is not isolated"));
    verify(&c.lab, "ipBlock with except", &checks);
    eprintln!(
        "external_host_ip_block_with_except: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 6. Dual stack
// ---------------------------------------------------------------------------

#[test]
fn dual_stack_a_v4_ip_block_does_not_open_v6() {
    nftpolicy_lab::kernel_test!("paths::dual_stack_a_v4_ip_block_does_not_open_v6");
    let started = Instant::now();
    let mut c = cluster();
    c.add_namespace("p", &[]);
    let d = pod(&mut c, 1, "p", "d", Stack::Dual);
    let e = pod(&mut c, 2, "p", "e", Stack::Dual);
    let f4 = pod(&mut c, 2, "p", "f4", Stack::V4);
    let f6 = pod(&mut c, 1, "p", "f6", Stack::V6);
    let ext = c.lab.host("ext").unwrap().clone();
    let _server = c.lab.serve(&ext, &[(Proto::Tcp, 8080)]).unwrap();
    apply(&mut c, true);
    let tcp = [TCP8080];

    set(
        &mut c,
        [policy("p", "d-from-v4")
            .select(app("d"))
            .ingress(rule().ip_block("0.0.0.0/0", &[]))],
    );
    let mut checks = Vec::new();
    for from in [&e, &ext] {
        checks.extend(flows_in(
            from,
            &d,
            Family::V4,
            &tcp,
            true,
            "0.0.0.0/0, IPv4",
        ));
        checks.extend(flows_in(
            from,
            &d,
            Family::V6,
            &tcp,
            false,
            "0.0.0.0/0 opens no IPv6",
        ));
    }
    checks.extend(flows(&f4, &d, &tcp, true, "IPv4-only pod"));
    checks.extend(flows(&f6, &d, &tcp, false, "IPv6-only pod"));
    verify(&c.lab, "ingress from 0.0.0.0/0", &checks);

    set(
        &mut c,
        [policy("p", "d-from-v6")
            .select(app("d"))
            .ingress(rule().ip_block("::/0", &[]))],
    );
    let mut checks = Vec::new();
    for from in [&e, &ext] {
        checks.extend(flows_in(
            from,
            &d,
            Family::V4,
            &tcp,
            false,
            "::/0 opens no IPv4",
        ));
        checks.extend(flows_in(from, &d, Family::V6, &tcp, true, "::/0, IPv6"));
    }
    verify(&c.lab, "ingress from ::/0", &checks);

    set(
        &mut c,
        [policy("p", "d-to-v4")
            .select(app("d"))
            .types(false, true)
            .egress(rule().ip_block("0.0.0.0/0", &[]))],
    );
    let mut checks = Vec::new();
    for to in [&e, &ext] {
        checks.extend(flows_in(
            &d,
            to,
            Family::V4,
            &tcp,
            true,
            "egress 0.0.0.0/0, IPv4",
        ));
        checks.extend(flows_in(
            &d,
            to,
            Family::V6,
            &tcp,
            false,
            "egress 0.0.0.0/0, no IPv6",
        ));
    }
    checks.extend(flows(&d, &f4, &tcp, true, "to the IPv4-only pod"));
    checks.extend(flows(&d, &f6, &tcp, false, "to the IPv6-only pod"));
    verify(&c.lab, "egress to 0.0.0.0/0", &checks);

    // A podSelector peer brings all of the pod's addresses.
    set(
        &mut c,
        [policy("p", "d-from-e")
            .select(app("d"))
            .ingress(rule().pods(app("e")))],
    );
    let mut checks = flows(&e, &d, &tcp, true, "e, both families");
    checks.extend(flows(&f4, &d, &tcp, false, "f4"));
    checks.extend(flows(&f6, &d, &tcp, false, "f6"));
    checks.extend(flows(&ext, &d, &tcp, false, "ext"));
    verify(&c.lab, "podSelector, both families", &checks);
    eprintln!(
        "dual_stack_a_v4_ip_block_does_not_open_v6: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// IPv6 neighbour discovery under default deny
// ---------------------------------------------------------------------------

/// The link-layer address `host` has for `addr`, if any (`ip neigh show`).
fn neighbour(lab: &Lab, host: &Host, addr: IpAddr) -> Option<String> {
    let out = lab
        .exec(host, "ip", &["neigh", "show", "to", &addr.to_string()])
        .unwrap();
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_owned)
}

#[test]
fn ipv6_neighbour_discovery_survives_default_deny() {
    nftpolicy_lab::kernel_test!("paths::ipv6_neighbour_discovery_survives_default_deny");
    let started = Instant::now();
    let mut c = cluster();
    c.add_namespace("p", &[]);
    let a = pod(&mut c, 1, "p", "a", Stack::Dual);
    let b = c
        .add_pod(
            1,
            "p",
            "b",
            &[("app", "b"), ("role", "server")],
            Stack::Dual,
            SERVE,
        )
        .unwrap();
    let s = c
        .add_pod(
            2,
            "p",
            "s",
            &[("app", "s"), ("role", "server")],
            Stack::Dual,
            SERVE,
        )
        .unwrap();
    let (n1, n2) = (
        c.lab.node(1).unwrap().clone(),
        c.lab.node(2).unwrap().clone(),
    );
    apply(&mut c, true);
    let server = || labels([("role", "server")]);
    set(
        &mut c,
        [
            policy("p", "deny-all").types(true, true),
            policy("p", "a-to-servers")
                .select(app("a"))
                .types(false, true)
                .egress(rule().pods(server()).port(Protocol::Tcp, 8080)),
            policy("p", "servers-from-a")
                .select(server())
                .types(true, false)
                .ingress(rule().pods(app("a")).port(Protocol::Tcp, 8080)),
        ],
    );
    for round in 1..=3 {
        for h in [&a, &b, &s, &n1, &n2] {
            c.lab
                .exec(h, "ip", &["-6", "neigh", "flush", "all"])
                .unwrap();
            c.lab
                .exec(h, "ip", &["-4", "neigh", "flush", "all"])
                .unwrap();
        }
        assert_eq!(
            neighbour(&c.lab, &a, ip(&b, Family::V6)),
            None,
            "round {round}: a's neighbour cache was flushed"
        );
        let mut checks = flows(
            &a,
            &b,
            &[TCP8080],
            true,
            "allowed, same node, after a flush",
        );
        checks.extend(flows(
            &a,
            &s,
            &[TCP8080],
            true,
            "allowed, other node, after a flush",
        ));
        checks.extend(flows(&b, &a, &[TCP8080], false, "denied stays denied"));
        checks.extend(flows(&a, &b, &[TCP80], false, "other port"));
        verify(&c.lab, &format!("round {round}"), &checks);
        // The allowed flows did solicit: a, b and node1 learnt each other anew.
        assert!(
            neighbour(&c.lab, &a, ip(&b, Family::V6)).is_some(),
            "round {round}: a resolved b by neighbour discovery"
        );
        assert!(
            neighbour(&c.lab, &b, ip(&a, Family::V6)).is_some(),
            "round {round}: b resolved a"
        );
        assert!(
            neighbour(&c.lab, &a, "fd00:10:244:1::1".parse().unwrap()).is_some(),
            "round {round}: a resolved its gateway"
        );
    }
    eprintln!(
        "ipv6_neighbour_discovery_survives_default_deny: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// ICMP
// ---------------------------------------------------------------------------

#[test]
fn a_rule_without_ports_allows_ping() {
    nftpolicy_lab::kernel_test!("paths::a_rule_without_ports_allows_ping");
    let started = Instant::now();
    let mut c = cluster();
    c.add_namespace("p", &[]);
    let t = pod(&mut c, 1, "p", "t", Stack::Dual);
    let a = pod(&mut c, 2, "p", "a", Stack::Dual);
    let b = pod(&mut c, 1, "p", "b", Stack::Dual);
    let e = pod(&mut c, 1, "p", "e", Stack::Dual);
    apply(&mut c, true);
    // The helper itself works: everything answers before any policy.
    let mut checks = Vec::new();
    for (x, y) in [(&a, &t), (&b, &t), (&e, &a), (&e, &b)] {
        checks.extend(flows(x, y, &[PING], true, "no policy"));
    }
    verify(&c.lab, "no policy", &checks);

    set(
        &mut c,
        [
            policy("p", "t-in")
                .select(app("t"))
                .ingress(rule().pods(app("a")))
                .ingress(rule().pods(app("b")).port(Protocol::Tcp, 8080)),
            policy("p", "e-out")
                .select(app("e"))
                .types(false, true)
                .egress(rule().pods(app("a")))
                .egress(rule().pods(app("b")).port(Protocol::Tcp, 8080)),
            // t may send nothing new: its echo replies and ICMP errors
            // leave as replies (established) and related traffic.
            policy("p", "t-no-egress")
                .select(app("t"))
                .types(false, true),
        ],
    );
    let mut checks = flows(
        &a,
        &t,
        &[PING, TCP8080, UDP8080],
        true,
        "ingress rule without ports",
    );
    checks.extend(flows(
        &b,
        &t,
        &[PING, UDP8080],
        false,
        "ingress rule with ports",
    ));
    checks.extend(flows(&b, &t, &[TCP8080], true, "its port"));
    checks.extend(flows(
        &e,
        &a,
        &[PING, UDP8080],
        true,
        "egress rule without ports",
    ));
    checks.extend(flows(
        &e,
        &b,
        &[PING, UDP8080],
        false,
        "egress rule with ports",
    ));
    checks.extend(flows(&e, &b, &[TCP8080], true, "its port"));
    checks.extend(flows(&t, &a, &[PING], false, "t's egress is denied"));
    verify(&c.lab, "ping by rules without ports", &checks);

    // ICMP errors of allowed flows pass as `related`: a datagram of a to a
    // closed UDP port of t is refused (port unreachable comes back through
    // t's egress deny); b's datagram, denied on the way in, just times out.
    for f in Family::ALL {
        let to = ip(&t, f);
        let refused = |from: &Host| match c.lab.request(from, to, 9999, Proto::Udp, RETRY) {
            Ok(who) => panic!("{f}: {who} answered on a closed port"),
            Err(e) => e.to_string(),
        };
        let got = refused(&a);
        assert!(
            got.contains("refused"),
            "{f}: a -> t udp/9999: want the port-unreachable error (refused), got {got}"
        );
        let got = refused(&b);
        assert!(
            !got.contains("refused"),
            "{f}: b -> t udp/9999 is denied on the way in: want a timeout, got {got}"
        );
    }
    eprintln!("a_rule_without_ports_allows_ping: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// Fragments
// ---------------------------------------------------------------------------

/// One UDP datagram of `size` bytes (fragmented on a 1500-byte link) from
/// `from` to `to:port`; the echo server's reply, or why none came.
fn big_datagram(
    from: &Host,
    to: IpAddr,
    port: u16,
    size: usize,
    timeout: Duration,
) -> Result<String, String> {
    netns::in_netns(from.netns(), move || {
        let any: IpAddr = if to.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let run = || -> std::io::Result<String> {
            let s = std::net::UdpSocket::bind((any, 0))?;
            s.connect((to, port))?;
            s.send(&vec![b'x'; size])?;
            s.set_read_timeout(Some(timeout))?;
            let mut buf = [0u8; 256];
            let n = s.recv(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
        };
        Ok(run().map_err(|e| e.to_string()))
    })
    .map_err(|e| e.to_string())?
}

/// Conntrack reassembles fragments before our chains (br_netfilter does it
/// for bridged traffic too), so a port rule judges the whole datagram: an
/// allowed 4000-byte datagram arrives, a denied one does not.
#[test]
fn fragmented_datagrams_are_judged_whole() {
    nftpolicy_lab::kernel_test!("paths::fragmented_datagrams_are_judged_whole");
    let started = Instant::now();
    let mut c = cluster();
    c.add_namespace("p", &[]);
    let a = pod(&mut c, 1, "p", "a", Stack::Dual);
    let b = pod(&mut c, 1, "p", "b", Stack::Dual);
    let r = pod(&mut c, 2, "p", "r", Stack::Dual);
    let x = pod(&mut c, 2, "p", "x", Stack::Dual);
    apply(&mut c, true);
    set(
        &mut c,
        [
            policy("p", "udp-8080-from-a").ingress(rule().pods(app("a")).port(Protocol::Udp, 8080)),
            policy("p", "a-udp-8080")
                .select(app("a"))
                .types(false, true)
                .egress(rule().port(Protocol::Udp, 8080)),
        ],
    );
    let mut bad = Vec::new();
    for f in Family::ALL {
        for (from, to, want) in [
            (&a, &b, true),
            (&a, &r, true),
            (&x, &b, false),
            (&x, &r, false),
        ] {
            let mut got = big_datagram(from, ip(to, f), 8080, 4000, T);
            if want && got.is_err() {
                got = big_datagram(from, ip(to, f), 8080, 4000, RETRY);
            }
            let ok = match &got {
                Ok(who) => want && who == to.name(),
                Err(_) => !want,
            };
            if !ok {
                bad.push(format!(
                    "{} -> {} {f} udp/8080, 4000 bytes: want {}, got {got:?}",
                    from.name(),
                    to.name(),
                    if want { "an answer" } else { "nothing" }
                ));
            }
        }
    }
    assert!(bad.is_empty(), "fragmented datagrams:\n{}", bad.join("\n"));
    eprintln!(
        "fragmented_datagrams_are_judged_whole: {:?}",
        started.elapsed()
    );
}
