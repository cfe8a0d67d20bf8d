//! Drop logging in the kernel, with real packets in the netns lab: the
//! rate limit holds under a flood while the counters count every drop; a
//! record whose id no ruleset has (a crafted rule, a stranger's prefix) is
//! reported as unknown and the reader carries on; a log rule changed by
//! hand is drift. Needs root.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_nftpolicy::metrics::Metrics;
use kube_nftpolicy::observe::reader::{Reader, ReaderConfig};
use kube_nftpolicy::observe::{Event, Hub, Shared};
use nftpolicy_core::model::Policy;
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::logging::{build_logged, LogOptions};
use nftpolicy_core::ruleset::{Limit, RateUnit};
use nftpolicy_lab::{netns, Cluster, Host, Proto, Serve, Stack};
use nftpolicy_nft::Dataplane;
use nftpolicy_testkit::*;

const GROUP: u16 = 4712;

/// A lab with `x/a` and `x/b` on node 1, `b` isolated by a default deny,
/// the logged ruleset applied, and a reader on node 1's log group.
struct Setup {
    c: Cluster,
    a: Host,
    b_ip: IpAddr,
    metrics: Arc<Metrics>,
    hub: Arc<Hub>,
    reader: Option<Reader>,
    limit: Limit,
}

fn setup(limit: Limit) -> Setup {
    let mut c = Cluster::new().expect("lab cluster (needs root)");
    c.add_namespace("x", &[]);
    let serve = [Serve {
        proto: Proto::Udp,
        port: 9999,
        name: None,
    }];
    let a = c
        .add_pod(1, "x", "a", &[("app", "a")], Stack::V4, &[])
        .unwrap();
    let b = c
        .add_pod(1, "x", "b", &[("app", "b")], Stack::V4, &serve)
        .unwrap();
    let deny: Policy =
        policy("x", "deny-b").select(nftpolicy_core::model::Selector::labels([("app", "b")]));
    c.set_policies([deny]);
    let opts = LogOptions {
        group: GROUP,
        drops: Some(limit),
        allows: None,
    };
    let (rs, map) = build_logged(&resolve(&c.snapshot, "node1"), &opts);
    c.dataplane("node1").unwrap().apply(&rs).expect("apply");
    let node = c.lab.node(1).unwrap().clone();
    let shared = Arc::new(Shared::new("node1"));
    shared.publish(map, Arc::new(c.snapshot.clone()));
    let (metrics, hub) = (Arc::new(Metrics::new()), Arc::new(Hub::default()));
    let reader = Reader::start(
        ReaderConfig {
            netns: Some(node.netns().to_owned()),
            group: GROUP,
        },
        shared,
        metrics.clone(),
        hub.clone(),
    )
    .unwrap();
    // The reader binds the group on its own thread: wait for it.
    let start = Instant::now();
    while !bound(&c, &node) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the reader did not bind"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Setup {
        b_ip: IpAddr::V4(b.ipv4().unwrap()),
        c,
        a,
        metrics,
        hub,
        reader: Some(reader),
        limit,
    }
}

/// Whether our group has a listener in `node`'s namespace.
fn bound(c: &Cluster, node: &Host) -> bool {
    let out = c
        .lab
        .exec(node, "cat", &["/proc/net/netfilter/nfnetlink_log"]);
    out.is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().next() == Some(&GROUP.to_string()))
    })
}

/// `n` UDP datagrams from `from` to `to`, in bursts of 50 with `pause`
/// between them, from one source port; how long it took.
fn flood(from: &Host, to: SocketAddr, n: usize, pause: Duration) -> Duration {
    netns::in_netns(from.netns(), move || {
        let s = std::net::UdpSocket::bind(("0.0.0.0", 42000)).expect("bind");
        let start = Instant::now();
        for i in 0..n {
            s.send_to(b"flood", to).expect("send");
            // Pausing also keeps every datagram from being lost before the
            // hook (the veth backlog holds 1,000).
            if i % 50 == 49 {
                std::thread::sleep(pause);
            }
        }
        Ok(start.elapsed())
    })
    .unwrap()
}

/// The value of a counter in the agent's metrics text (0 when absent).
fn metric(m: &Metrics, series: &str) -> f64 {
    m.encode()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The packets counted by the drop rules of `chain` (both: the logging one
/// and the plain one).
fn dropped(c: &Cluster, chain: &str) -> u64 {
    let node = c.lab.node(1).unwrap();
    let out = c
        .lab
        .nft(node, &["list", "chain", "inet", "kube-nftpolicy", chain])
        .unwrap();
    out.lines()
        .filter(|l| l.contains(" drop"))
        .filter_map(|l| {
            let rest = l.split("counter packets ").nth(1)?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Events published until `quiet` passes without one.
fn drain(
    rt: &tokio::runtime::Runtime,
    sub: &mut kube_nftpolicy::observe::hub::Subscription,
    quiet: Duration,
) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(Ok(e)) = rt.block_on(async { tokio::time::timeout(quiet, sub.recv()).await }) {
        out.push((*e).clone());
    }
    out
}

#[test]
fn the_rate_limit_holds_under_a_flood_and_every_drop_is_counted() {
    nftpolicy_lab::kernel_test!(
        "observe_kernel::the_rate_limit_holds_under_a_flood_and_every_drop_is_counted"
    );
    let s = setup(Limit::per(10, RateUnit::Second));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut sub = s.hub.subscribe().unwrap();
    // 3,000 datagrams over about 1.5 s: ~2,000 per second.
    const N: usize = 3000;
    let took = flood(
        &s.a,
        SocketAddr::new(s.b_ip, 9999),
        N,
        Duration::from_millis(25),
    );
    // Every record is in before the dedupe window of the flow closes.
    std::thread::sleep(Duration::from_millis(300));
    let records = metric(
        &s.metrics,
        "kube_nftpolicy_log_records_total{verdict=\"drop\"}",
    ) as u64;
    let most = s.limit.max_in(took.as_secs_f64() + 0.3);
    eprintln!("{N} datagrams in {took:?}: {records} records (at most {most})");
    // The bucket starts full (the burst) and refills at the rate.
    let least = u64::from(s.limit.burst) + (10.0 * took.as_secs_f64() * 0.8) as u64;
    assert!(
        records >= least,
        "{records} records < {least}: the rate is logged"
    );
    assert!(
        records <= most,
        "{records} records > {most} allowed in {took:?}"
    );
    assert_eq!(
        dropped(&s.c, "pod-ingress-x/b"),
        N as u64,
        "every drop is counted"
    );
    // One flow: one event at once, then one summary with the repeats.
    let events = drain(&rt, &mut sub, Duration::from_millis(1500));
    let total: u64 = events.iter().map(|e| 1 + e.repeats).sum::<u64>()
        - events.iter().filter(|e| e.repeats > 0).count() as u64;
    assert_eq!(total, records, "{events:?}");
    assert_eq!(events.first().map(|e| e.repeats), Some(0));
    assert!(
        events
            .iter()
            .all(|e| e.dst.name().as_deref() == Some("x/b")),
        "{events:?}"
    );
    drop(s.reader);
}

#[test]
fn unknown_ids_are_reported_and_reading_goes_on() {
    nftpolicy_lab::kernel_test!("observe_kernel::unknown_ids_are_reported_and_reading_goes_on");
    let mut s = setup(Limit::per(100, RateUnit::Second));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut sub = s.hub.subscribe().unwrap();
    let node = s.c.lab.node(1).unwrap().clone();
    // Someone else's table logs to our group: an id of ours that no ruleset
    // has (an older chain, or crafted), and a prefix that is not ours.
    let crafted = format!(
        "table inet crafted {{\n chain fwd-log {{\n  type filter hook forward priority -10; policy accept;\n  \
         udp dport 9999 log prefix \"knp:zzzzzzzz:drop\" group {GROUP}\n  \
         udp dport 9999 log prefix \"hello world\" group {GROUP}\n }}\n}}\n"
    );
    s.c.lab.nft_apply(&node, &crafted).expect("crafted table");
    let to = SocketAddr::new(s.b_ip, 9999);
    flood(&s.a, to, 1, Duration::ZERO);
    let events = drain(&rt, &mut sub, Duration::from_millis(800));
    let unknown: Vec<&Event> = events.iter().filter(|e| e.unknown).collect();
    assert_eq!(unknown.len(), 2, "{events:?}");
    assert!(unknown.iter().any(|e| e.id == "zzzzzzzz"), "{unknown:?}");
    assert!(unknown.iter().any(|e| e.id == "hello world"), "{unknown:?}");
    assert!(
        unknown
            .iter()
            .all(|e| e.src.name().as_deref() == Some("x/a")),
        "{unknown:?}"
    );
    let known: Vec<&Event> = events.iter().filter(|e| !e.unknown).collect();
    assert_eq!(known.len(), 1, "our own drop is still named: {events:?}");
    assert_eq!(known[0].dst.name().as_deref(), Some("x/b"));
    assert_eq!(
        metric(
            &s.metrics,
            "kube_nftpolicy_log_records_total{verdict=\"unknown\"}"
        ),
        2.0
    );
    s.c.lab
        .nft(&node, &["delete", "table", "inet", "crafted"])
        .unwrap();

    // A log rule edited by hand (another rate) is drift: verify finds it.
    let dp = s.c.dataplane("node1").unwrap();
    assert_eq!(dp.verify().expect("verify"), None);
    let listing =
        s.c.lab
            .nft(
                &node,
                &[
                    "-a",
                    "list",
                    "chain",
                    "inet",
                    "kube-nftpolicy",
                    "pod-ingress-x/b",
                ],
            )
            .unwrap();
    let (rule, handle) = listing
        .lines()
        .find(|l| l.contains(" log prefix "))
        .and_then(|l| l.rsplit_once(" # handle "))
        .expect("the logging rule");
    let quoted = |after: &str| rule.split(after).nth(1).and_then(|r| r.split('"').next());
    let (prefix, comment) = (
        quoted("log prefix \"").unwrap(),
        quoted("comment \"").unwrap(),
    );
    s.c.lab
        .nft_apply(
            &node,
            &format!(
                "replace rule inet kube-nftpolicy pod-ingress-x/b handle {handle} limit rate 99/second \
                 counter log prefix \"{prefix}\" group {GROUP} drop comment \"{comment}\"\n"
            ),
        )
        .expect("replace rule");
    let drift = s.c.dataplane("node1").unwrap().verify().expect("verify");
    assert!(
        drift
            .as_deref()
            .is_some_and(|d| d.contains("pod-ingress-x/b")),
        "{drift:?}"
    );
    drop(s.reader.take());
}
