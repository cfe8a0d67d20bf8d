//! The node's guards with real packets, in the namespace lab: the gate of
//! pod addresses not programmed yet, and the cutting of established flows
//! a policy change no longer allows (`ruleset::guard`, `kube_nftpolicy::cut`).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use kube_nftpolicy::cut::rejudge;
use nftpolicy_core::model::Protocol;
use nftpolicy_core::ruleset::build::Options;
use nftpolicy_core::ruleset::guard::Gate;
use nftpolicy_lab::{Cluster, Family, Host, Proto, Serve, Stack, Stream, UdpFlow};
use nftpolicy_nft::conntrack::Conntrack;
use nftpolicy_testkit::*;

const SERVE: &[Serve<'static>] = &[
    Serve {
        proto: Proto::Tcp,
        port: 80,
        name: None,
    },
    Serve {
        proto: Proto::Udp,
        port: 53,
        name: None,
    },
];
const T: Duration = Duration::from_millis(400);
const BIT: u32 = 0x2000_0000;

fn ip(h: &Host, f: Family) -> IpAddr {
    h.ip(f)
        .unwrap_or_else(|| panic!("{} has no {f} address", h.name()))
}

/// The gate of node `i` of the lab: its pod CIDRs and own addresses.
fn gate(c: &Cluster, i: u8) -> Gate {
    let node = c.lab.node(i).expect("node").clone();
    Gate {
        pod_cidrs: vec![
            format!("10.244.{i}.0/24").parse().unwrap(),
            format!("fd00:10:244:{i}::/64").parse().unwrap(),
        ],
        node_addrs: c.lab.addresses(&node).to_vec(),
    }
}

fn guards(c: &mut Cluster, cut: bool) {
    for i in [1, 2] {
        let opts = Options {
            gate: Some(gate(c, i)),
            cut_mark: cut.then_some(BIT),
        };
        c.options.insert(format!("node{i}"), opts);
    }
}

/// Whether a TCP request from `from` to `to`:80 is answered within `t`,
/// and how long the answer (or the refusal) took.
fn tcp_within(c: &Cluster, from: &Host, to: IpAddr, t: Duration) -> (bool, Duration) {
    let start = Instant::now();
    let ok = c.lab.request(from, to, 80, Proto::Tcp, t).is_ok();
    (ok, start.elapsed())
}

fn tcp(c: &Cluster, from: &Host, to: IpAddr) -> (bool, Duration) {
    tcp_within(c, from, to, T)
}

#[test]
fn a_pod_the_node_does_not_know_cannot_talk_until_programmed() {
    nftpolicy_lab::kernel_test!(
        "guard_kernel::a_pod_the_node_does_not_know_cannot_talk_until_programmed"
    );
    let mut c = Cluster::new().expect("lab cluster");
    c.add_namespace("x", &[]);
    let a = c
        .add_pod(1, "x", "a", &[("app", "a")], Stack::Dual, SERVE)
        .unwrap();
    let b = c
        .add_pod(2, "x", "b", &[("app", "b")], Stack::Dual, SERVE)
        .unwrap();
    let n = c
        .add_pod(1, "x", "new", &[("app", "new")], Stack::Dual, SERVE)
        .unwrap();
    // The pod's network exists (the CNI ran) but the agent has not seen it.
    let key = nftpolicy_core::model::NamespacedName::new("x", "new");
    let model = c.snapshot.pods.remove(&key).expect("in the snapshot");
    guards(&mut c, false);
    c.apply().expect("apply");
    let node1 = c.lab.node(1).unwrap().clone();
    for f in Family::ALL {
        // Rejected, not dropped: the sender learns without waiting out its
        // timeout. Linux TCP gives up at the ICMP error over IPv4, and at
        // the error for the first retransmitted SYN (after 1 s) over IPv6.
        let (ok, took) = tcp_within(&c, &n, ip(&a, f), Duration::from_secs(3));
        assert!(!ok, "{f}: the unknown pod reaches a same-node pod");
        let bound = match f {
            Family::V4 => T,
            Family::V6 => Duration::from_millis(1600),
        };
        assert!(
            took < bound,
            "{f}: rejected, not dropped (refused after {took:?})"
        );
        assert!(
            !tcp(&c, &a, ip(&n, f)).0,
            "{f}: a same-node pod reaches the unknown pod"
        );
        assert!(
            !tcp(&c, &b, ip(&n, f)).0,
            "{f}: a remote pod reaches the unknown pod"
        );
        assert!(
            !tcp(&c, &n, ip(&b, f)).0,
            "{f}: the unknown pod reaches a remote pod"
        );
        assert!(tcp(&c, &a, ip(&b, f)).0, "{f}: known pods, no policy: open");
        assert!(
            c.lab.probe(&node1, ip(&n, f), 80, Proto::Tcp, T),
            "{f}: the node itself (kubelet probes) reaches the unknown pod"
        );
    }
    let listing = c
        .lab
        .nft(
            &node1,
            &["list", "chain", "inet", "kube-nftpolicy", "forward-egress"],
        )
        .unwrap();
    let counted = listing
        .lines()
        .filter(|l| l.contains("not programmed yet"))
        .any(|l| !l.contains("counter packets 0 "));
    assert!(counted, "the gate counts what it rejects:\n{listing}");

    // Programmed: it talks as policy says (here: no policy, open).
    c.snapshot.add_pod(model);
    c.apply().expect("apply");
    for f in Family::ALL {
        assert!(tcp(&c, &n, ip(&a, f)).0, "{f}: programmed pod reaches a");
        assert!(
            tcp(&c, &b, ip(&n, f)).0,
            "{f}: b reaches the programmed pod"
        );
    }
}

fn cut(c: &Cluster, node: u8) -> kube_nftpolicy::cut::CutReport {
    let host = c.lab.node(node).unwrap();
    let mut ct = Conntrack::open(Some(host.netns())).expect("ctnetlink");
    let rs = c.desired(host.name());
    rejudge(&mut ct, &rs, c.lab.addresses(host), BIT).expect("rejudge")
}

#[test]
fn established_flows_a_policy_stops_allowing_are_cut_within_a_second() {
    nftpolicy_lab::kernel_test!(
        "guard_kernel::established_flows_a_policy_stops_allowing_are_cut_within_a_second"
    );
    let mut c = Cluster::new().expect("lab cluster");
    c.add_namespace("x", &[]);
    let a = c
        .add_pod(1, "x", "a", &[("app", "a")], Stack::Dual, SERVE)
        .unwrap();
    let b = c
        .add_pod(2, "x", "b", &[("app", "b")], Stack::Dual, SERVE)
        .unwrap();
    let k = c
        .add_pod(1, "x", "keep", &[("app", "keep")], Stack::Dual, SERVE)
        .unwrap();
    guards(&mut c, true);
    c.apply().expect("apply");

    // Long-lived flows a -> b (to be cut) and a -> keep (still allowed), TCP and UDP, both families.
    let open = |to: &Host, f| {
        let tcp = c
            .lab
            .stream(&a, ip(to, f), 80, Duration::from_secs(2))
            .expect("stream");
        let udp = UdpFlow::open(
            &a,
            SocketAddr::new(ip(to, f), 53),
            Duration::from_millis(200),
        )
        .expect("udp socket");
        assert!(udp.exchange(), "udp {f} to {} before the change", to.name());
        (tcp, udp)
    };
    let mut doomed: Vec<(Family, Stream, UdpFlow)> = Family::ALL
        .into_iter()
        .map(|f| {
            let (t, u) = open(&b, f);
            (f, t, u)
        })
        .collect();
    let mut kept: Vec<(Family, Stream, UdpFlow)> = Family::ALL
        .into_iter()
        .map(|f| {
            let (t, u) = open(&k, f);
            (f, t, u)
        })
        .collect();

    // b now takes ingress only from app=keep: a's flows to b are denied on node2.
    c.set_policies([policy("x", "b-from-keep")
        .select(nftpolicy_core::model::Selector::labels([("app", "b")]))
        .ingress(
            rule()
                .pods(nftpolicy_core::model::Selector::labels([("app", "keep")]))
                .port(Protocol::Tcp, 80),
        )]);
    c.apply().expect("apply");
    let start = Instant::now();
    let report = cut(&c, 2);
    assert!(
        report.cut >= 4,
        "two TCP and two UDP flows cut on node2: {report:?}"
    );
    assert_eq!(
        cut(&c, 1).cut,
        0,
        "node1's table (a's egress) allows them all"
    );
    // Within a second of the commit, each flow's next packet is dropped:
    // every check below starts before that second is over, and fails.
    for (f, tcp, udp) in doomed.iter_mut() {
        tcp.set_timeout(Duration::from_millis(150));
        let at = start.elapsed();
        assert!(
            tcp.exchange().is_err(),
            "{f}: the TCP flow a -> b still passes {at:?} after the commit"
        );
        let at = start.elapsed();
        assert!(
            !udp.once(),
            "{f}: the UDP flow a -> b still passes {at:?} after the commit"
        );
        assert!(
            at < Duration::from_secs(1),
            "{f}: checked only {at:?} after the commit"
        );
    }
    for (f, tcp, udp) in kept.iter_mut() {
        assert_eq!(tcp.exchange().expect("the kept TCP flow"), k.name(), "{f}");
        assert!(udp.exchange(), "{f}: the kept UDP flow");
    }
    // A new flow a -> b is refused as before; the pass is idempotent.
    assert!(!tcp(&c, &a, ip(&b, Family::V4)).0);
    assert_eq!(cut(&c, 2).cut, 0, "nothing left to cut");

    // Allowed again: the cut UDP flows carry data again.
    c.set_policies(Vec::<nftpolicy_core::model::Policy>::new());
    c.apply().expect("apply");
    let back = cut(&c, 2);
    assert!(back.restored >= 2, "{back:?}");
    for (f, _, udp) in &doomed {
        assert!(
            udp.exchange(),
            "{f}: the UDP flow a -> b is let through again"
        );
    }
}
