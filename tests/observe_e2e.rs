//! "See why" end to end, with real packets: the FAKE API feeds the real
//! agent loop with drop logging on (`sync::run`, NetlinkDataplane in a lab
//! node's namespace), the real NFLOG reader reads the node's log group,
//! and the events come out of the agent's HTTP stream through the
//! `observe` client. A denied TCP connection and a denied UDP datagram
//! must each give exactly the expected event: pods, ports, protocol,
//! direction, isolating policies. Needs root.

#[allow(dead_code)]
mod agent_fake_api {
    pub mod fake;
    pub mod harness;
}

use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use agent_fake_api::fake::FakeApi;
use agent_fake_api::harness::{namespace, pod, policy};
use kube_nftpolicy::cli::stream_events;
use kube_nftpolicy::health::Health;
use kube_nftpolicy::metrics::Metrics;
use kube_nftpolicy::observe::reader::{Reader, ReaderConfig};
use kube_nftpolicy::observe::{Event, Filter, Hub, Peer, Shared};
use kube_nftpolicy::sync::{self, SyncConfig};
use nftpolicy_core::ruleset::logging::LogOptions;
use nftpolicy_core::ruleset::{Limit, RateUnit};
use nftpolicy_lab::{netns, Cluster, Host, Proto, Serve, Stack};
use nftpolicy_nft::NetlinkDataplane;
use serde_json::json;
use tokio::sync::oneshot;

const GROUP: u16 = 4711;

/// One UDP datagram from `from`'s namespace, from source port `sport`.
fn send_udp(from: &Host, sport: u16, to: SocketAddr) {
    netns::in_netns(from.netns(), move || {
        let s = std::net::UdpSocket::bind(("0.0.0.0", sport)).expect("bind");
        s.send_to(b"?", to).expect("send");
        Ok(())
    })
    .unwrap();
}

/// A TCP connection attempt from source port `sport`; whether it connected.
fn try_tcp(from: &Host, sport: u16, to: SocketAddr) -> bool {
    netns::in_netns(from.netns(), move || {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.set_reuse_address(true).expect("reuse");
        s.bind(&SocketAddr::from(([0, 0, 0, 0], sport)).into())
            .expect("bind");
        Ok(s.connect_timeout(&to.into(), Duration::from_millis(300))
            .is_ok())
    })
    .unwrap()
}

/// The next event the stream delivers with destination port `port`.
fn next_event(rx: &mpsc::Receiver<Event>, port: u16) -> Event {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(e) if e.dst.port == Some(port) => return e,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    panic!("no event for port {port} within 10 s");
}

#[test]
fn denied_tcp_and_udp_give_exactly_the_expected_events() {
    nftpolicy_lab::kernel_test!("observe_e2e::denied_tcp_and_udp_give_exactly_the_expected_events");
    let mut c = Cluster::new().expect("lab cluster (needs root)");
    let serve = [
        Serve {
            proto: Proto::Tcp,
            port: 8080,
            name: None,
        },
        Serve {
            proto: Proto::Udp,
            port: 53,
            name: None,
        },
    ];
    let a = c.add_pod(1, "x", "a", &[], Stack::V4, &[]).unwrap();
    let b = c.add_pod(1, "x", "b", &[], Stack::V4, &serve).unwrap();
    let node = c.lab.node(1).unwrap().clone();
    let ip = |h: &Host| IpAddr::V4(h.ipv4().unwrap());
    let (a_ip, b_ip) = (ip(&a), ip(&b));

    let fake = FakeApi::new();
    fake.apply(namespace("x", json!({})));
    for (name, addr, app) in [("a", a_ip, "a"), ("b", b_ip, "b")] {
        let p = pod(
            "x",
            name,
            node.name(),
            &addr.to_string(),
            json!({ "app": app }),
        );
        fake.apply(p);
    }
    fake.apply(policy("x", "deny-all", json!({"podSelector": {}})));
    fake.apply(policy(
        "x",
        "b-from-clients",
        json!({"podSelector": {"matchLabels": {"app": "b"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
    ));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let shared = Arc::new(Shared::new(node.name()));
    let hub = Arc::new(Hub::default());
    let reader = Reader::start(
        ReaderConfig {
            netns: Some(node.netns().to_owned()),
            group: GROUP,
        },
        shared.clone(),
        metrics.clone(),
        hub.clone(),
    )
    .unwrap();
    let mut cfg = SyncConfig::new(node.name());
    cfg.log = LogOptions {
        group: GROUP,
        drops: Some(Limit::per(10, RateUnit::Second)),
        allows: None,
    };
    cfg.observed = Some(shared.clone());
    let dp = NetlinkDataplane::new(Some(node.netns())).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let client = {
        let _guard = rt.enter();
        fake.client()
    };
    let (m, h) = (
        metrics.clone(),
        Arc::new(Health::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
        )),
    );
    let agent = rt.spawn(async move {
        sync::run(client, dp, &cfg, m, h, async {
            let _ = stopped.await;
        })
        .await;
    });
    // The agent's HTTP server, and `observe` reading it from a thread.
    let listener = rt
        .block_on(kube_nftpolicy::server::bind("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let health = Arc::new(Health::new(
        Duration::from_secs(60),
        Duration::from_secs(60),
    ));
    rt.spawn(kube_nftpolicy::server::serve_with_events(
        listener,
        metrics.clone(),
        health,
        Some(hub.clone()),
    ));
    let (tx, rx) = mpsc::channel();
    let filter = Filter {
        namespace: Some("x".into()),
        verdict: Some("drop".into()),
        ..Filter::default()
    };
    std::thread::spawn(move || {
        let _ = stream_events(&addr, &filter, |e, _| tx.send(e.clone()).is_ok());
    });

    // Wait until the table is in and the stream is open.
    let start = Instant::now();
    while shared.views().0.is_none() || hub.clients() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "agent did not apply"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    assert!(
        !try_tcp(&a, 41001, SocketAddr::new(b_ip, 8080)),
        "a -> b tcp is denied"
    );
    send_udp(&a, 41002, SocketAddr::new(b_ip, 53));
    let tcp = next_event(&rx, 8080);
    let udp = next_event(&rx, 53);
    let want = |protocol: &str, sport: u16, dport: u16, time: &str| Event {
        time: time.to_owned(),
        node: node.name().to_owned(),
        verdict: "drop".into(),
        direction: Some("ingress".into()),
        protocol: protocol.into(),
        src: Peer {
            namespace: Some("x".into()),
            pod: Some("a".into()),
            ip: Some(a_ip.to_string()),
            port: Some(sport),
        },
        dst: Peer {
            namespace: Some("x".into()),
            pod: Some("b".into()),
            ip: Some(b_ip.to_string()),
            port: Some(dport),
        },
        icmp_type: None,
        policies: vec!["x/b-from-clients".into(), "x/deny-all".into()],
        id: tcp.id.clone(),
        unknown: false,
        repeats: 0,
    };
    assert_eq!(tcp, want("tcp", 41001, 8080, &tcp.time));
    assert_eq!(udp, want("udp", 41002, 53, &udp.time));
    assert!(
        tcp.time.ends_with('Z') && tcp.time.len() == 27,
        "{}",
        tcp.time
    );
    let text = metrics.encode();
    for m in [
        "kube_nftpolicy_drops_total{namespace=\"x\",policy=\"deny-all\"}",
        "kube_nftpolicy_drops_total{namespace=\"x\",policy=\"b-from-clients\"}",
    ] {
        assert!(text.contains(m), "missing {m} in\n{text}");
    }
    assert!(!text.contains("verdict=\"unknown\""), "{text}");

    let _ = stop.send(());
    rt.block_on(agent).unwrap();
    drop(reader);
}
