//! Unit tests of the event pipeline without a kernel: record → event
//! naming, folding of repeats, filters, the text form, the hub's bounds and
//! the `/events` stream of the HTTP server.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nftpolicy_core::model::{Protocol, Selector, Snapshot};
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::logging::{build_logged, prefix, LogOptions, LogVerdict};
use nftpolicy_core::ruleset::{Limit, RateUnit};
use nftpolicy_nft::{Headers, LogRecord};
use nftpolicy_testkit::*;

use super::dedupe::Dedupe;
use super::hub::Ended;
use super::*;

fn shop() -> Snapshot {
    snapshot(
        [namespace("shop", [])],
        [
            pod("shop", "db")
                .labels([("app", "db")])
                .ip("10.0.0.2")
                .node("n1"),
            pod("shop", "api")
                .labels([("app", "api")])
                .ip("10.0.1.2")
                .node("n2"),
        ],
        [
            policy("shop", "default-deny"),
            policy("shop", "db-from-api")
                .select(Selector::labels([("app", "db")]))
                .ingress(
                    rule()
                        .pods(Selector::labels([("app", "api")]))
                        .port(Protocol::Tcp, 5432),
                ),
        ],
    )
}

/// The shared view of `shop` on n1 and the log id of `chain`.
fn view(s: Snapshot, chain: &str) -> (Arc<Shared>, String) {
    let opts = LogOptions {
        allows: Some(Limit::per(1, RateUnit::Second)),
        drops: Some(Limit::per(1, RateUnit::Second)),
        group: 1,
    };
    let (_, map) = build_logged(&resolve(&s, "n1"), &opts);
    let id = map
        .iter()
        .find(|(_, e)| e.chain == chain)
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    let shared = Arc::new(Shared::new("n1"));
    shared.publish(map, Arc::new(s));
    (shared, id)
}

fn record(prefix: &str, src: &str, dst: &str, proto: u8, ports: (u16, u16)) -> LogRecord {
    LogRecord {
        prefix: prefix.to_owned(),
        hook: Some(2),
        timestamp: Some(UNIX_EPOCH + Duration::from_secs(1_795_256_130)),
        indev: None,
        outdev: None,
        packet: Some(Headers {
            src: src.parse::<IpAddr>().unwrap(),
            dst: dst.parse::<IpAddr>().unwrap(),
            protocol: proto,
            src_port: Some(ports.0),
            dst_port: Some(ports.1),
            icmp_type: None,
        }),
    }
}

#[test]
fn a_drop_record_names_both_pods_and_the_isolating_policies() {
    let (shared, id) = view(shop(), "pod-ingress-shop/db");
    let r = record(
        &prefix(&id, LogVerdict::Drop),
        "10.0.1.2",
        "10.0.0.2",
        17,
        (40000, 53),
    );
    let e = shared.event(&r, SystemTime::now());
    let want = Event {
        time: "2026-11-21T10:15:30.000000Z".into(),
        node: "n1".into(),
        verdict: "drop".into(),
        direction: Some("ingress".into()),
        protocol: "udp".into(),
        src: Peer {
            namespace: Some("shop".into()),
            pod: Some("api".into()),
            ip: Some("10.0.1.2".into()),
            port: Some(40000),
        },
        dst: Peer {
            namespace: Some("shop".into()),
            pod: Some("db".into()),
            ip: Some("10.0.0.2".into()),
            port: Some(53),
        },
        icmp_type: None,
        policies: vec!["shop/db-from-api".into(), "shop/default-deny".into()],
        id: id.clone(),
        unknown: false,
        repeats: 0,
    };
    assert_eq!(e, want);
    assert_eq!(
        e.text(),
        "2026-11-21T10:15:30.000000Z n1 DROPPED ingress udp shop/api (10.0.1.2:40000) -> \
         shop/db (10.0.0.2:53) isolated by shop/db-from-api, shop/default-deny"
    );
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
}

#[test]
fn an_allow_record_names_the_policies_that_allowed_it() {
    // A second policy allowing the same flow: the pod chain merges both
    // into one accept; the event names both, as explain does, and not the
    // default deny, which allows nothing.
    let mut s = shop();
    s.add_policy(
        policy("shop", "db-from-all")
            .select(Selector::labels([("app", "db")]))
            .ingress(rule().port(Protocol::Tcp, 5432)),
    );
    for (case, s, want) in [
        ("one policy", shop(), vec!["shop/db-from-api"]),
        (
            "two merged",
            s,
            vec!["shop/db-from-all", "shop/db-from-api"],
        ),
    ] {
        let (shared, id) = view(s, "pod-ingress-shop/db");
        let r = record(
            &prefix(&id, LogVerdict::Allow),
            "10.0.1.2",
            "10.0.0.2",
            6,
            (40000, 5432),
        );
        let e = shared.event(&r, SystemTime::now());
        assert_eq!((e.verdict.as_str(), e.unknown), ("allow", false), "{case}");
        assert_eq!(e.policies, want, "{case}");
        assert_eq!(e.dst.name().as_deref(), Some("shop/db"), "{case}");
        assert!(e.text().contains(" ALLOWED ingress tcp "), "{}", e.text());
        assert!(
            e.text()
                .ends_with(&format!("allowed by {}", want.join(", "))),
            "{}",
            e.text()
        );
    }
}

#[test]
fn named_flows_are_remembered_per_flow_not_per_pod_pair() {
    let (shared, id) = view(shop(), "pod-ingress-shop/db");
    let allow = |sport, dport| {
        let r = record(
            &prefix(&id, LogVerdict::Allow),
            "10.0.1.2",
            "10.0.0.2",
            6,
            (sport, dport),
        );
        shared.event(&r, SystemTime::now()).policies
    };
    // The second connection of the flow comes from the cache, the same.
    assert_eq!(allow(40000, 5432), ["shop/db-from-api"]);
    assert_eq!(allow(40001, 5432), ["shop/db-from-api"]);
    // Another port is another flow: no rule allows it (an allow record
    // for it would be a stale one), so no policy is named for it.
    assert!(allow(40002, 9999).is_empty());
}

#[test]
fn unknown_ids_and_strangers_are_reported_not_lost() {
    let (shared, id) = view(shop(), "pod-ingress-shop/db");
    for (case, p) in [
        ("no such id", "knp:zzzzzzzz:drop".to_owned()),
        ("not our prefix", "IN=eth0 ".to_owned()),
        ("empty", String::new()),
    ] {
        let e = shared.event(
            &record(&p, "10.0.1.2", "10.0.0.2", 6, (1, 2)),
            SystemTime::now(),
        );
        assert!(e.unknown, "case: {case}");
        assert_eq!(
            (e.direction.as_deref(), e.policies.len()),
            (None, 0),
            "case: {case}"
        );
        assert_eq!(e.src.ip.as_deref(), Some("10.0.1.2"), "case: {case}");
        assert_eq!(
            e.src.name().as_deref(),
            Some("shop/api"),
            "case: {case}: addresses named"
        );
        assert!(e.text().contains("unknown id"), "case: {case}");
    }
    // A record with no readable headers still makes an event.
    let mut r = record(
        &prefix(&id, LogVerdict::Drop),
        "10.0.1.2",
        "10.0.0.2",
        6,
        (1, 2),
    );
    r.packet = None;
    let e = shared.event(&r, SystemTime::now());
    assert_eq!((e.protocol.as_str(), e.unknown), ("?", false));
    assert_eq!(
        e.dst.name().as_deref(),
        Some("shop/db"),
        "the chain names the pod"
    );
}

#[test]
fn a_chain_of_the_previous_ruleset_is_still_named() {
    let (shared, id) = view(shop(), "pod-ingress-shop/db");
    let mut s = shop();
    s.pods.retain(|k, _| &*k.name != "db");
    let (_, map) = build_logged(&resolve(&s, "n1"), &LogOptions::OFF);
    assert!(map.get(&id).is_none());
    shared.publish(map.clone(), Arc::new(s.clone()));
    let r = record(
        &prefix(&id, LogVerdict::Drop),
        "10.0.1.2",
        "10.0.0.2",
        6,
        (1, 2),
    );
    assert!(
        !shared.event(&r, SystemTime::now()).unknown,
        "previous view"
    );
    shared.publish(map, Arc::new(s));
    assert!(
        shared.event(&r, SystemTime::now()).unknown,
        "two applies later"
    );
}

fn drop_event(src: &str, sport: u16, dport: u16) -> Event {
    Event {
        time: "t".into(),
        node: "n".into(),
        verdict: "drop".into(),
        direction: Some("ingress".into()),
        protocol: "tcp".into(),
        src: Peer {
            ip: Some(src.into()),
            port: Some(sport),
            ..Peer::default()
        },
        dst: Peer {
            ip: Some("10.0.0.2".into()),
            port: Some(dport),
            ..Peer::default()
        },
        icmp_type: None,
        policies: vec![],
        id: "x".into(),
        unknown: false,
        repeats: 0,
    }
}

#[test]
fn repeats_within_a_second_are_folded_and_counted() {
    let mut d = Dedupe::new(Duration::from_secs(1));
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    assert_eq!(
        d.offer(drop_event("10.0.1.2", 1000, 80), at(0)).len(),
        1,
        "first: at once"
    );
    for (i, ms) in [100, 200, 900].into_iter().enumerate() {
        let sport = 1001 + i as u16; // a retry from a new port is the same flow
        assert!(d
            .offer(drop_event("10.0.1.2", sport, 80), at(ms))
            .is_empty());
    }
    assert_eq!(
        d.offer(drop_event("10.0.1.3", 1000, 80), at(300)).len(),
        1,
        "another source"
    );
    assert_eq!(
        d.offer(drop_event("10.0.1.2", 1000, 81), at(300)).len(),
        1,
        "another port"
    );
    assert!(d.flush(at(999)).is_empty(), "window still open");
    let summaries = d.flush(at(1000));
    assert_eq!(
        summaries.len(),
        1,
        "only the flow with repeats: {summaries:?}"
    );
    assert_eq!(
        (summaries[0].repeats, summaries[0].src.port),
        (3, Some(1003))
    );
    assert_eq!(d.len(), 2, "the flows of 300 ms are still open");
    assert!(d.flush(at(1300)).is_empty(), "no repeats, no summary");
    assert!(d.is_empty());
    // A repeat after the window starts a new flow; a stale window left
    // unflushed is summarised first.
    d.offer(drop_event("10.0.1.2", 1, 80), at(2000));
    d.offer(drop_event("10.0.1.2", 2, 80), at(2100));
    let out = d.offer(drop_event("10.0.1.2", 3, 80), at(3500));
    assert_eq!(out.iter().map(|e| e.repeats).collect::<Vec<_>>(), [1, 0]);
}

#[test]
fn filters() {
    let mut e = drop_event("10.0.1.2", 1, 80);
    e.src.namespace = Some("shop".into());
    e.src.pod = Some("api".into());
    // (case, query, matches)
    let cases = [
        ("nothing", "", true),
        ("namespace of the source", "namespace=shop", true),
        ("other namespace", "namespace=web", false),
        ("pod name", "pod=api", true),
        ("ns/pod, escaped", "pod=shop%2Fapi", true),
        ("other pod", "pod=db", false),
        ("verdict", "verdict=drop&namespace=shop", true),
        ("other verdict", "verdict=allow", false),
    ];
    for (case, query, want) in cases {
        let f = Filter::from_query(query).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(f.matches(&e), want, "case: {case}");
        assert_eq!(Filter::from_query(&f.to_query()), Ok(f), "case: {case}");
    }
    for bad in ["verdict=reject", "node=x"] {
        assert!(Filter::from_query(bad).is_err(), "case: {bad}");
    }
}

#[tokio::test]
async fn the_hub_cuts_off_slow_clients_and_bounds_their_number() {
    let hub = Arc::new(Hub::new(4, 2));
    let mut slow = hub.subscribe().expect("first");
    let _second = hub.subscribe().expect("second");
    assert!(hub.subscribe().is_none(), "at most 2 clients");
    for i in 0..10 {
        hub.publish(drop_event("10.0.1.2", i, 80));
    }
    assert_eq!(slow.recv().await.unwrap_err(), Ended::Lagged(6));
    assert_eq!(hub.dropped_clients(), 1);
    drop(slow);
    assert!(hub.subscribe().is_some(), "a slot is free again");
}

#[tokio::test]
async fn events_are_streamed_over_http_as_json_lines() {
    use crate::health::Health;
    use crate::metrics::Metrics;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let hub = Arc::new(Hub::new(16, 1));
    let listener = crate::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Arc::new(Health::new(
        Duration::from_secs(60),
        Duration::from_secs(60),
    ));
    let metrics = Arc::new(Metrics::new());
    tokio::spawn(crate::server::serve_with_events(
        listener,
        metrics,
        health,
        Some(hub.clone()),
    ));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /events?verdict=drop&namespace=shop HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut lines = BufReader::new(s).lines();
    let mut head = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        if l.is_empty() {
            break;
        }
        head.push(l);
    }
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert!(
        head.contains(&"Content-Type: application/x-ndjson".to_owned()),
        "{head:?}"
    );
    while hub.clients() == 0 {
        tokio::task::yield_now().await;
    }
    let mut other = drop_event("10.0.9.9", 1, 80);
    other.src.namespace = Some("web".into());
    let mut wanted = drop_event("10.0.1.2", 2, 80);
    wanted.dst.namespace = Some("shop".into());
    hub.publish(other);
    hub.publish(wanted.clone());
    let line = lines.next_line().await.unwrap().expect("a line");
    assert_eq!(
        serde_json::from_str::<Event>(&line).unwrap(),
        wanted,
        "filtered by the agent"
    );
    // A second client is one too many; without a hub there is no stream.
    let r = raw_get(addr, "/events").await;
    assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
    let r = raw_get(addr, "/events?verdict=maybe").await;
    assert!(
        r.starts_with("HTTP/1.1 400 ") || r.starts_with("HTTP/1.1 503 "),
        "{r}"
    );
    let bare = crate::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let bare_addr = bare.local_addr().unwrap();
    let health = Arc::new(Health::new(
        Duration::from_secs(60),
        Duration::from_secs(60),
    ));
    tokio::spawn(crate::server::serve(bare, Arc::new(Metrics::new()), health));
    let r = raw_get(bare_addr, "/events").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
}

async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[test]
fn events_log_as_structured_json() {
    use std::sync::Mutex;
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || out.clone())
        .finish();
    let (shared, id) = view(shop(), "pod-ingress-shop/db");
    let r = record(
        &prefix(&id, LogVerdict::Drop),
        "10.0.1.2",
        "10.0.0.2",
        6,
        (40000, 5432),
    );
    let mut e = shared.event(&r, SystemTime::now());
    e.repeats = 3;
    tracing::subscriber::with_default(subscriber, || reader::log_event(&e));
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect(&text);
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["target"], "kube_nftpolicy::flow", "{v}");
    let f = &v["fields"];
    assert_eq!(f["message"], "flow dropped", "{v}");
    assert_eq!(
        (&f["src_pod"], &f["dst_pod"]),
        (&"shop/api".into(), &"shop/db".into()),
        "{v}"
    );
    assert_eq!(
        (&f["dst_port"], &f["protocol"]),
        (&5432.into(), &"tcp".into()),
        "{v}"
    );
    assert_eq!(f["policies"], "shop/db-from-api,shop/default-deny", "{v}");
    assert_eq!(
        (&f["direction"], &f["repeats"]),
        (&"ingress".into(), &3.into()),
        "{v}"
    );
    eprintln!("{text}");
}

#[test]
fn only_local_clients_unless_remote_ones_are_allowed() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let local = Hub::default();
    for (addr, want) in [
        ("127.0.0.1", true),
        ("::1", true),
        ("::ffff:127.0.0.1", true),
        ("10.244.1.7", false),
        ("fd00::7", false),
    ] {
        assert_eq!(local.admits(ip(addr)), want, "case: {addr}");
    }
    assert!(Hub::default().remote_clients(true).admits(ip("10.244.1.7")));
}
