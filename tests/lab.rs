//! Kernel tests of the namespace lab itself (`nftpolicy_lab`).
//!
//! They need root, veth, bridge, br_netfilter and nf_tables. They do not skip
//! when those are missing: a run without root fails with a clear message.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nftpolicy_lab::{Family, Host, Lab, Proto, Server, Stack};

/// Timeout of a probe expected to be blocked.
const T: Duration = Duration::from_millis(300);
/// Two ports × two protocols.
const PORTS: &[(Proto, u16)] = &[
    (Proto::Tcp, 80),
    (Proto::Udp, 80),
    (Proto::Tcp, 8080),
    (Proto::Udp, 8080),
];

fn ip(h: &Host, f: Family) -> IpAddr {
    h.ip(f)
        .unwrap_or_else(|| panic!("{} has no {f} address", h.name()))
}

fn serve_all(lab: &Lab, hosts: &[&Host]) -> Vec<Server> {
    hosts
        .iter()
        .map(|h| lab.serve(h, PORTS).expect("serve"))
        .collect()
}

#[test]
fn open_cluster_connects_every_path() {
    nftpolicy_lab::kernel_test!("lab::open_cluster_connects_every_path");
    let mut lab = Lab::cluster().expect("cluster");
    let (n1, n2, ext) = (
        lab.node(1).unwrap().clone(),
        lab.node(2).unwrap().clone(),
        lab.host("ext").unwrap().clone(),
    );
    let a = lab.add_pod_auto(&n1, "a", Stack::Dual).unwrap();
    let b = lab.add_pod_auto(&n1, "b", Stack::Dual).unwrap();
    let c = lab.add_pod_auto(&n2, "c", Stack::Dual).unwrap();
    let d = lab.add_pod_auto(&n2, "d", Stack::V4).unwrap();
    for (vip, fam) in [("10.96.0.10", Family::V4), ("fd00:10:96::a", Family::V6)] {
        let vip: IpAddr = vip.parse().unwrap();
        for proto in [Proto::Tcp, Proto::Udp] {
            lab.add_service(
                SocketAddr::new(vip, 80),
                proto,
                SocketAddr::new(ip(&b, fam), 8080),
            )
            .unwrap();
        }
    }
    let all = [&a, &b, &c, &d, &n1, &n2, &ext];
    let _servers = serve_all(&lab, &all);

    let started = Instant::now();
    let m = lab.probe_matrix(&all, &all, PORTS, T);
    eprintln!("{} probes in {:?}\n{m}", m.results.len(), started.elapsed());
    // d is IPv4-only: 7×7 hosts × 4 ports × 2 families minus d's IPv6 cells.
    assert_eq!(m.results.len(), (49 + 36) * 4);
    m.check(&m.expect(|_| true))
        .unwrap_or_else(|e| panic!("{e}"));

    // The matrix can fail: nothing listens on port 81.
    for proto in [Proto::Tcp, Proto::Udp] {
        for f in Family::ALL {
            assert!(
                !lab.probe(&a, ip(&b, f), 81, proto, T),
                "{proto} {f} to port 81"
            );
        }
    }
    // Service ClusterIP: DNAT'ed to b:8080 from a pod on either node, from
    // the node itself (output hook) and from outside; the reply names b.
    for (vip, from) in [
        ("10.96.0.10", &a),
        ("10.96.0.10", &c),
        ("10.96.0.10", &d),
        ("10.96.0.10", &n1),
        ("10.96.0.10", &ext),
        ("fd00:10:96::a", &a),
        ("fd00:10:96::a", &c),
        ("fd00:10:96::a", &n2),
    ] {
        let vip: IpAddr = vip.parse().unwrap();
        for proto in [Proto::Tcp, Proto::Udp] {
            let who = lab.request(from, vip, 80, proto, Duration::from_secs(2));
            assert_eq!(
                who.as_deref().ok(),
                Some("b"),
                "{} -> {proto} {vip}:80: {who:?}",
                from.name()
            );
        }
        assert!(
            !lab.probe(from, vip, 8080, Proto::Tcp, T),
            "unmapped service port"
        );
    }
}

#[test]
fn bridged_traffic_hits_the_inet_forward_hook() {
    nftpolicy_lab::kernel_test!("lab::bridged_traffic_hits_the_inet_forward_hook");
    let mut lab = Lab::new().unwrap();
    let n1 = lab.add_node().unwrap();
    let a = lab
        .add_pod(
            &n1,
            "a",
            Some("10.244.1.10".parse().unwrap()),
            Some("fd00:10:244:1::10".parse().unwrap()),
        )
        .unwrap();
    let b = lab
        .add_pod(
            &n1,
            "b",
            Some("10.244.1.11".parse().unwrap()),
            Some("fd00:10:244:1::11".parse().unwrap()),
        )
        .unwrap();
    let c = lab.add_pod_auto(&n1, "c", Stack::Dual).unwrap();
    let _servers = serve_all(&lab, &[&a, &b, &c]);
    let pods = [&a, &b, &c];
    let open = lab.probe_matrix(&pods, &pods, PORTS, T);
    open.check(&open.expect(|_| true))
        .unwrap_or_else(|e| panic!("before the table: {e}"));

    lab.nft_apply(
        &n1,
        &format!(
            "table inet labtest {{ chain forward {{ type filter hook forward priority 0; \
             ip daddr {} tcp dport 80 drop; ip6 daddr {} tcp dport 80 drop\n}}\n}}\n",
            ip(&b, Family::V4),
            ip(&b, Family::V6)
        ),
    )
    .unwrap();
    let m = lab.probe_matrix(&pods, &pods, PORTS, T);
    eprintln!("{m}");
    let want =
        m.expect(|k| !(k.to == "b" && k.from != "b" && k.proto == Proto::Tcp && k.port == 80));
    m.check(&want).unwrap_or_else(|e| panic!("{e}"));
    // Control: with bridge netfilter off the same bridged flow bypasses the
    // forward hook, so the drop above really came from br_netfilter.
    for key in ["iptables", "ip6tables"] {
        lab.exec(
            &n1,
            "sysctl",
            &["-qw", &format!("net.bridge.bridge-nf-call-{key}=0")],
        )
        .unwrap();
    }
    for f in Family::ALL {
        assert!(
            lab.probe(&a, ip(&b, f), 80, Proto::Tcp, T),
            "{f}: bridged flow without br_netfilter"
        );
    }
}

#[test]
fn open_stream_outlives_a_ct_new_drop_and_dies_with_a_full_drop() {
    nftpolicy_lab::kernel_test!(
        "lab::open_stream_outlives_a_ct_new_drop_and_dies_with_a_full_drop"
    );
    let mut lab = Lab::cluster().unwrap();
    let (n1, n2) = (lab.node(1).unwrap().clone(), lab.node(2).unwrap().clone());
    let a = lab.add_pod_auto(&n1, "a", Stack::Dual).unwrap();
    let b = lab.add_pod_auto(&n2, "b", Stack::Dual).unwrap();
    let _servers = serve_all(&lab, &[&b]);
    for f in Family::ALL {
        let mut s = lab
            .stream(&a, ip(&b, f), 8080, Duration::from_secs(2))
            .unwrap();
        assert_eq!(s.exchange().unwrap(), "b");
        let fam = if f == Family::V4 { "ip" } else { "ip6" };
        // Ingress on b's node, new connections only: the stream lives on.
        lab.nft_apply(
            &n2,
            &format!(
                "table inet labtest {{ chain forward {{ type filter hook forward priority 0; \
                 ct state new {fam} daddr {} tcp dport 8080 drop\n}}\n}}\n",
                ip(&b, f)
            ),
        )
        .unwrap();
        assert_eq!(s.exchange().unwrap(), "b");
        assert!(
            !lab.probe(&a, ip(&b, f), 8080, Proto::Tcp, T),
            "{f}: new connection passed"
        );
        assert!(
            lab.probe(&a, ip(&b, f), 80, Proto::Tcp, T),
            "{f}: port 80 blocked"
        );
        // Every packet: the open stream stops carrying data.
        lab.nft_apply(
            &n2,
            &format!(
                "add rule inet labtest forward {fam} daddr {} tcp dport 8080 drop",
                ip(&b, f)
            ),
        )
        .unwrap();
        s.set_timeout(T);
        assert!(s.exchange().is_err(), "{f}: stream still carries data");
        lab.nft(&n2, &["delete", "table", "inet", "labtest"])
            .unwrap();
        assert!(
            lab.probe(&a, ip(&b, f), 8080, Proto::Tcp, T),
            "{f}: table deleted, still blocked"
        );
    }
}

#[test]
fn nine_by_nine_matrix_in_parallel() {
    nftpolicy_lab::kernel_test!("lab::nine_by_nine_matrix_in_parallel");
    let mut lab = Lab::cluster().unwrap();
    let (n1, n2) = (lab.node(1).unwrap().clone(), lab.node(2).unwrap().clone());
    let mut pods = Vec::new();
    for (i, name) in [
        "x-a", "x-b", "x-c", "y-a", "y-b", "y-c", "z-a", "z-b", "z-c",
    ]
    .iter()
    .enumerate()
    {
        let node = if i % 2 == 0 { &n1 } else { &n2 };
        pods.push(lab.add_pod_auto(node, name, Stack::Dual).unwrap());
    }
    let refs: Vec<&Host> = pods.iter().collect();
    let _servers = serve_all(&lab, &refs);
    // z-a (node1) takes no TCP from anyone else; y-c (node2) no UDP/8080.
    let za = lab.host("z-a").unwrap().clone();
    let yc = lab.host("y-c").unwrap().clone();
    lab.nft_apply(
        &n1,
        &format!(
            "table inet labtest {{ chain forward {{ type filter hook forward priority 0; \
         ct state new ip daddr {} meta l4proto tcp drop; ct state new ip6 daddr {} meta l4proto tcp drop\n}}\n}}\n",
            ip(&za, Family::V4),
            ip(&za, Family::V6)
        ),
    )
    .unwrap();
    lab.nft_apply(
        &n2,
        &format!(
            "table inet labtest {{ chain forward {{ type filter hook forward priority 0; \
         ip daddr {} udp dport 8080 drop; ip6 daddr {} udp dport 8080 drop\n}}\n}}\n",
            ip(&yc, Family::V4),
            ip(&yc, Family::V6)
        ),
    )
    .unwrap();

    let started = Instant::now();
    let m = lab.probe_matrix(&refs, &refs, PORTS, T);
    let took = started.elapsed();
    let (ok, blocked) = m.counts();
    eprintln!(
        "{} probes ({ok} connected, {blocked} blocked) in {took:?}\n{m}",
        m.results.len()
    );
    assert_eq!(m.results.len(), 648);
    let want = m.expect(|k| {
        k.from == k.to
            || !((k.to == "z-a" && k.proto == Proto::Tcp)
                || (k.to == "y-c" && k.proto == Proto::Udp && k.port == 8080))
    });
    m.check(&want).unwrap_or_else(|e| panic!("{e}"));
}

fn listed_netns() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(
        out.status.success(),
        "ip netns list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn drop_removes_every_namespace_even_after_a_panic() {
    nftpolicy_lab::kernel_test!("lab::drop_removes_every_namespace_even_after_a_panic");
    let names = {
        let mut lab = Lab::cluster().unwrap();
        let n1 = lab.node(1).unwrap().clone();
        let a = lab.add_pod_auto(&n1, "a", Stack::Dual).unwrap();
        lab.serve(&a, PORTS).unwrap().keep();
        let names = lab.netns_names().to_vec();
        let listed = listed_netns();
        assert_eq!(names.len(), 4);
        assert!(
            names.iter().all(|n| listed.contains(n)),
            "{names:?} not all in {listed:?}"
        );
        names
    };
    let listed = listed_netns();
    assert!(
        names.iter().all(|n| !listed.contains(n)),
        "left behind: {listed:?}"
    );

    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    let result = std::panic::catch_unwind(move || {
        let mut lab = Lab::cluster().unwrap();
        let n2 = lab.node(2).unwrap().clone();
        let p = lab.add_pod_auto(&n2, "p", Stack::V6).unwrap();
        let _s = lab.serve(&p, PORTS).unwrap();
        seen2
            .lock()
            .unwrap()
            .extend(lab.netns_names().iter().cloned());
        panic!("test body fails on purpose");
    });
    assert!(result.is_err());
    let names = seen.lock().unwrap().clone();
    assert_eq!(names.len(), 4);
    let listed = listed_netns();
    assert!(
        names.iter().all(|n| !listed.contains(n)),
        "left behind after panic: {listed:?}"
    );
}
