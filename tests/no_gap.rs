//! "No gap, no leak": the table is replaced as a whole (add table, delete
//! table, add everything, in ONE netlink batch) over and over while real
//! traffic runs, and a batch the kernel rejects changes nothing.
//!
//! - `full_replaces_open_no_gap_and_break_no_stream`: 200 full replaces of
//!   node1's table while two threads hammer denied flows (TCP connects and
//!   UDP datagrams, IPv4 and IPv6, one flow denied by the destination's
//!   ingress, one by the source's egress) and two long-lived TCP streams
//!   (one per family) exchange data the whole time. A leak is looked for on
//!   both ends: the prober counts replies, and a counter in the destination
//!   pod's own namespace counts every packet of the denied flows that got
//!   there. Both must stay at zero; the streams must never fail.
//! - `a_rejected_batch_leaves_the_previous_ruleset_whole`: batches the kernel
//!   refuses (a rule jumping to a chain that does not exist, a rule reading
//!   a set that does not exist), sent incrementally and as a full replace:
//!   the error names the object, the table and the packet matrix are
//!   exactly as before, and the next good apply is a full replace.
//!
//! They need root; without it they fail with a clear message, never skip.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nftpolicy_core::model::{Protocol, Selector};
use nftpolicy_core::ruleset::{AddrField, Match, Rule, Verdict};
use nftpolicy_lab::{netns, Cluster, Family, Host, Lab, Proto, Serve, Stack, Stream};
use nftpolicy_nft::{ApplyError, ApplyKind, Dataplane};
use nftpolicy_testkit::*;

/// Timeout of a probe expected to be blocked.
const T: Duration = Duration::from_millis(400);
/// Full replaces in the no-gap loop (at least 200).
const REPLACES: usize = 200;
/// Hard bound on the whole no-gap loop.
const LOOP_LIMIT: Duration = Duration::from_secs(60);
/// Connect / reply timeout of one denied probe in the tight loop: a probe
/// that got through would be answered in well under a millisecond; the
/// counter in the destination namespace catches any slower one anyway.
const TIGHT: Duration = Duration::from_millis(4);
/// How long a stream exchange may wait before the stream counts as broken.
const STREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// The port of the denied flows.
const DENIED: u16 = 9000;
/// The port of the allowed streams.
const ALLOWED: u16 = 8080;

const SERVE: &[Serve<'static>] = &[
    Serve {
        proto: Proto::Tcp,
        port: ALLOWED,
        name: None,
    },
    Serve {
        proto: Proto::Udp,
        port: ALLOWED,
        name: None,
    },
    Serve {
        proto: Proto::Tcp,
        port: DENIED,
        name: None,
    },
    Serve {
        proto: Proto::Udp,
        port: DENIED,
        name: None,
    },
];
const PORTS: &[(Proto, u16)] = &[
    (Proto::Tcp, ALLOWED),
    (Proto::Udp, ALLOWED),
    (Proto::Tcp, DENIED),
    (Proto::Udp, DENIED),
];

fn app(name: &str) -> Selector {
    Selector::labels([("app", name)])
}

fn ip(h: &Host, f: Family) -> IpAddr {
    h.ip(f)
        .unwrap_or_else(|| panic!("{} has no {f} address", h.name()))
}

fn add(c: &mut Cluster, node: u8, name: &str) -> Host {
    c.add_pod(node, "p", name, &[("app", name)], Stack::Dual, SERVE)
        .unwrap_or_else(|e| panic!("pod {name}: {e}"))
}

/// A counter table in `dest`'s own namespace counting every packet from
/// `src` to port [`DENIED`] that reaches it: whatever the prober saw, a
/// packet of a denied flow that got through the node is counted here.
fn install_leak_counter(lab: &Lab, dest: &Host, src: &Host) {
    let (s4, s6) = (ip(src, Family::V4), ip(src, Family::V6));
    lab.nft_apply(
        dest,
        &format!(
            "table inet leak {{\n chain input {{\n  type filter hook input priority -500; policy accept;\n  \
             ip saddr {s4} th dport {DENIED} counter\n  ip6 saddr {s6} th dport {DENIED} counter\n }}\n}}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("leak counter in {}: {e}", dest.name()));
}

/// Packets counted by [`install_leak_counter`] so far.
fn leaked(lab: &Lab, dest: &Host) -> u64 {
    let out = lab
        .nft(dest, &["list", "table", "inet", "leak"])
        .unwrap_or_else(|e| panic!("leak counter of {}: {e}", dest.name()));
    out.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "packets")
        .map(|w| w[1].parse::<u64>().expect("counter value"))
        .sum()
}

/// What a prober thread saw.
#[derive(Debug, Default)]
struct ProbeStats {
    attempts: usize,
    /// Replies to denied probes: each is a leak.
    leaks: Vec<String>,
}

/// From a thread inside `from_netns`: new TCP connections (or UDP
/// datagrams, each from a new socket) to `to`, one after the other, until
/// `stop`, `max` attempts or `until`.
fn probe_loop(
    from_netns: &str,
    to: SocketAddr,
    proto: Proto,
    stop: &AtomicBool,
    until: Instant,
    max: usize,
) -> ProbeStats {
    netns::enter(from_netns).unwrap_or_else(|e| panic!("prober: {e}"));
    let mut stats = ProbeStats::default();
    let any: IpAddr = if to.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) && Instant::now() < until && stats.attempts < max {
        stats.attempts += 1;
        match proto {
            Proto::Tcp => {
                if let Ok(mut conn) = TcpStream::connect_timeout(&to, TIGHT) {
                    let _ = conn.write_all(b"?");
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                    let n = conn.read(&mut buf).unwrap_or(0);
                    stats.leaks.push(format!(
                        "tcp {to} connected ({:?})",
                        String::from_utf8_lossy(&buf[..n])
                    ));
                }
            }
            Proto::Udp => {
                let sock = UdpSocket::bind((any, 0)).expect("udp bind");
                sock.connect(to).expect("udp connect");
                if sock.send(b"?").is_ok() {
                    sock.set_read_timeout(Some(TIGHT)).expect("udp timeout");
                    if let Ok(n) = sock.recv(&mut buf) {
                        stats.leaks.push(format!(
                            "udp {to} answered {:?}",
                            String::from_utf8_lossy(&buf[..n])
                        ));
                    }
                }
            }
        }
    }
    stats
}

/// What a stream thread saw.
#[derive(Debug, Default)]
struct StreamStats {
    exchanges: usize,
    error: Option<String>,
}

/// Exchanges on `stream` until `stop` or `until`; stops at the first error.
fn stream_loop(mut stream: Stream, expect: &str, stop: &AtomicBool, until: Instant) -> StreamStats {
    let mut stats = StreamStats::default();
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        match stream.exchange() {
            Ok(name) if name == expect => stats.exchanges += 1,
            Ok(name) => {
                stats.error = Some(format!("answered by {name}, not {expect}"));
                break;
            }
            Err(e) => {
                stats.error = Some(e.to_string());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stats
}

#[test]
fn full_replaces_open_no_gap_and_break_no_stream() {
    nftpolicy_lab::kernel_test!("no_gap::full_replaces_open_no_gap_and_break_no_stream");
    let started = Instant::now();
    let mut c = Cluster::new().unwrap_or_else(|e| panic!("lab cluster: {e}"));
    c.add_namespace("p", &[]);
    // All on node1, whose table is replaced: bridged flows, judged there.
    let d = add(&mut c, 1, "d"); // ingress-isolated: takes y on 8080 only
    let y = add(&mut c, 1, "y"); // the allowed client of d
    let x = add(&mut c, 1, "x"); // denied by d's ingress
    let e = add(&mut c, 1, "e"); // egress-isolated: may reach f on 8080 only
    let f = add(&mut c, 1, "f"); // not isolated
                                 // Bulk, so that each replace is a batch of some size: 60 more pods
                                 // known to the snapshot (not in the lab), selected by the policies.
    for i in 0..60u8 {
        c.snapshot.add_pod(
            pod("p", &format!("bulk-{i}"))
                .labels([("app", "bulk"), ("i", &i.to_string())])
                .ip(&format!("10.244.1.{}", 180 + u16::from(i)))
                .ip(&format!("fd00:10:244:1::{:x}", 0x180 + u16::from(i)))
                .node("node1"),
        );
    }
    install_leak_counter(&c.lab, &d, &x);
    install_leak_counter(&c.lab, &f, &e);
    // The counters count: before any table, e's datagrams reach f. (UDP:
    // a TCP probe would leave its closing packets to be counted later.)
    for fam in Family::ALL {
        assert!(c.lab.probe(&e, ip(&f, fam), DENIED, Proto::Udp, T));
    }
    assert_eq!(leaked(&c.lab, &f), 2, "the leak counter counts");
    // Start again from zero.
    c.lab.nft(&f, &["delete", "table", "inet", "leak"]).unwrap();
    install_leak_counter(&c.lab, &f, &e);
    assert_eq!(leaked(&c.lab, &f), 0);

    c.set_policies([
        policy("p", "d-from-y")
            .select(app("d"))
            .ingress(rule().pods(app("y")).port(Protocol::Tcp, ALLOWED)),
        policy("p", "e-to-f")
            .select(app("e"))
            .types(false, true)
            .egress(rule().pods(app("f")).port(Protocol::Tcp, ALLOWED)),
        policy("p", "bulk")
            .select(app("bulk"))
            .types(true, true)
            .ingress(rule().pods(app("bulk")).port(Protocol::Tcp, 443))
            .egress(rule().pods(app("bulk")).port(Protocol::Udp, 53)),
    ]);
    c.apply().unwrap_or_else(|e| panic!("first apply: {e}"));
    let desired = c.desired("node1");
    assert!(desired.element_count() > 100, "a table of some size");

    // The denied flows are denied, the allowed ones allowed, before the loop.
    for fam in Family::ALL {
        for proto in [Proto::Tcp, Proto::Udp] {
            assert!(
                !c.lab.probe(&x, ip(&d, fam), DENIED, proto, T),
                "x -> d {proto} {fam}"
            );
            assert!(
                !c.lab.probe(&e, ip(&f, fam), DENIED, proto, T),
                "e -> f {proto} {fam}"
            );
        }
        assert!(
            c.lab.probe(&y, ip(&d, fam), ALLOWED, Proto::Tcp, T * 5),
            "y -> d {fam}"
        );
        assert!(
            c.lab.probe(&e, ip(&f, fam), ALLOWED, Proto::Tcp, T * 5),
            "e -> f {fam}"
        );
    }
    assert_eq!(
        (leaked(&c.lab, &d), leaked(&c.lab, &f)),
        (0, 0),
        "denied probes before the loop reached d, f"
    );

    let mut streams = [
        (
            c.lab
                .stream(&y, ip(&d, Family::V4), ALLOWED, Duration::from_secs(2))
                .unwrap(),
            d.name().to_owned(),
        ),
        (
            c.lab
                .stream(&e, ip(&f, Family::V6), ALLOWED, Duration::from_secs(2))
                .unwrap(),
            f.name().to_owned(),
        ),
    ];
    // A loaded machine may stall an echo for a while: only a long silence
    // counts as a broken stream.
    for (stream, _) in &mut streams {
        stream.set_timeout(STREAM_TIMEOUT);
    }
    // One prober per source, destination address and protocol.
    let mut probers = Vec::new();
    for (src, dst) in [(&x, &d), (&e, &f)] {
        for fam in Family::ALL {
            for proto in [Proto::Tcp, Proto::Udp] {
                let to = SocketAddr::new(ip(dst, fam), DENIED);
                probers.push((src.netns().to_owned(), to, proto));
            }
        }
    }

    let stop = AtomicBool::new(false);
    let until = Instant::now() + LOOP_LIMIT;
    let mut durations = Vec::with_capacity(REPLACES);
    let (probe_stats, stream_stats) = std::thread::scope(|s| {
        let stop = &stop;
        let probe_handles: Vec<_> = probers
            .iter()
            .map(|(ns, to, proto)| {
                s.spawn(move || probe_loop(ns, *to, *proto, stop, until, 100_000))
            })
            .collect();
        let stream_handles: Vec<_> = streams
            .into_iter()
            .map(|(stream, who)| s.spawn(move || stream_loop(stream, &who, stop, until)))
            .collect();
        // Let the threads get going, then replace, replace, replace.
        std::thread::sleep(Duration::from_millis(50));
        let dp = c.dataplane("node1").expect("node1 dataplane");
        let mut failure = None;
        for i in 0..REPLACES {
            if Instant::now() > until {
                failure = Some(format!("only {i} replaces within {LOOP_LIMIT:?}"));
                break;
            }
            dp.invalidate("test");
            match dp.apply(&desired) {
                Ok(r) if r.kind == ApplyKind::Full => {
                    assert_eq!(r.reason.as_deref(), Some("test"), "replace {i}: reason");
                    durations.push(r.duration);
                }
                Ok(r) => {
                    failure = Some(format!("replace {i} was not a full replace: {r:?}"));
                    break;
                }
                Err(e) => {
                    failure = Some(format!("replace {i} failed: {e}"));
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        let p: Vec<ProbeStats> = probe_handles
            .into_iter()
            .map(|h| h.join().expect("prober"))
            .collect();
        let st: Vec<StreamStats> = stream_handles
            .into_iter()
            .map(|h| h.join().expect("stream"))
            .collect();
        if let Some(f) = failure {
            panic!("{f}");
        }
        (p, st)
    });
    let total: Duration = durations.iter().sum();
    eprintln!(
        "{} full replaces of {} rules / {} elements: total {:?}, max {:?}; probers {:?}; streams {:?}",
        durations.len(),
        desired.rule_count(),
        desired.element_count(),
        total,
        durations.iter().max(),
        probe_stats.iter().map(|p| p.attempts).collect::<Vec<_>>(),
        stream_stats.iter().map(|s| s.exchanges).collect::<Vec<_>>(),
    );
    assert_eq!(durations.len(), REPLACES);
    for (i, p) in probe_stats.iter().enumerate() {
        assert!(
            p.leaks.is_empty(),
            "prober {i}: {} of {} denied probes answered, e.g. {:?}",
            p.leaks.len(),
            p.attempts,
            &p.leaks[..p.leaks.len().min(5)]
        );
        assert!(
            p.attempts >= 100,
            "prober {i} ran only {} probes",
            p.attempts
        );
    }
    assert_eq!(
        leaked(&c.lab, &d),
        0,
        "packets of x -> d:{DENIED} reached d"
    );
    assert_eq!(
        leaked(&c.lab, &f),
        0,
        "packets of e -> f:{DENIED} reached f"
    );
    for (i, s) in stream_stats.iter().enumerate() {
        assert_eq!(
            s.error, None,
            "stream {i} broke after {} exchanges",
            s.exchanges
        );
        assert!(
            s.exchanges >= 50,
            "stream {i} exchanged only {} times",
            s.exchanges
        );
    }
    // And the table is still the one we want.
    let listed = c
        .lab
        .nft(
            c.lab.node(1).unwrap(),
            &["-s", "list", "table", "inet", "kube-nftpolicy"],
        )
        .unwrap();
    assert!(listed.contains("pod-ingress-p/d"), "{listed}");
    eprintln!(
        "full_replaces_open_no_gap_and_break_no_stream: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// A rejected batch
// ---------------------------------------------------------------------------

/// Our table on `node` without counters (`nft -s`).
fn listing(c: &Cluster, node: u8) -> String {
    c.lab
        .nft(
            c.lab.node(node).unwrap(),
            &["-s", "list", "table", "inet", "kube-nftpolicy"],
        )
        .unwrap()
}

#[test]
fn a_rejected_batch_leaves_the_previous_ruleset_whole() {
    nftpolicy_lab::kernel_test!("no_gap::a_rejected_batch_leaves_the_previous_ruleset_whole");
    let started = Instant::now();
    let mut c = Cluster::new().unwrap_or_else(|e| panic!("lab cluster: {e}"));
    c.add_namespace("p", &[]);
    let a = add(&mut c, 1, "a");
    let b = add(&mut c, 1, "b");
    add(&mut c, 1, "x");
    add(&mut c, 2, "r");
    c.set_policies([
        policy("p", "b-from-a")
            .select(app("b"))
            .ingress(rule().pods(app("a"))),
        policy("p", "x-deny-egress")
            .select(app("x"))
            .types(false, true),
    ]);
    c.apply().unwrap_or_else(|e| panic!("first apply: {e}"));
    let m0 = c.matrix(PORTS, T);
    let want =
        m0.expect(|k| k.from == k.to || ((k.to != "p-b" || k.from == "p-a") && k.from != "p-x"));
    m0.check(&want).unwrap_or_else(|e| panic!("before: {e}"));
    let listed0 = listing(&c, 1);
    let desired = c.desired("node1");
    let mut stream = c
        .lab
        .stream(&a, ip(&b, Family::V6), ALLOWED, Duration::from_secs(2))
        .unwrap();
    stream.set_timeout(STREAM_TIMEOUT);

    // Two ways to make the kernel refuse a batch.
    let pod_chain = "pod-ingress-p/b";
    let mut jump_nowhere = desired.clone();
    jump_nowhere
        .chains
        .iter_mut()
        .find(|ch| ch.name == pod_chain)
        .expect("b's chain")
        .rules
        .insert(
            0,
            Rule::new(Vec::new(), Verdict::Jump("no-such-chain".into())),
        );
    let mut missing_set = desired.clone();
    missing_set
        .chains
        .iter_mut()
        .find(|ch| ch.name == pod_chain)
        .expect("b's chain")
        .rules
        .insert(
            0,
            Rule::new(
                vec![Match::AddrInSet {
                    family: nftpolicy_core::ruleset::Family::V4,
                    field: AddrField::Source,
                    set: "peers-no-such-set-v4".into(),
                }],
                Verdict::Accept,
            ),
        );

    let cases = [
        ("jump to a missing chain", &jump_nowhere, "no-such-chain"),
        (
            "lookup in a missing set",
            &missing_set,
            "peers-no-such-set-v4",
        ),
    ];
    for (what, bad, missing) in cases {
        // First incrementally (the dataplane knows what it applied), then,
        // since a failed apply forgets it, as a full replace: a batch that
        // starts by deleting our table.
        for attempt in ["incremental", "full replace"] {
            let dp = c.dataplane("node1").unwrap();
            assert_eq!(
                dp.current().is_some(),
                attempt == "incremental",
                "{what} ({attempt}): an incremental batch needs a known last state"
            );
            let err = dp
                .apply(bad)
                .expect_err(&format!("{what} ({attempt}) must be rejected"));
            eprintln!("{what} ({attempt}): {err}");
            match &err {
                ApplyError::Rejected { object, .. } => assert!(
                    object.contains(pod_chain)
                        && object.contains("add rule")
                        && object.contains(missing),
                    "{what} ({attempt}): the error names the rule, its chain and what it \
                     refers to: {object}"
                ),
                other => panic!("{what} ({attempt}): want a kernel rejection, got {other:?}"),
            }
            assert!(
                dp.current().is_none(),
                "after a failure the dataplane knows nothing"
            );
            assert_eq!(
                listing(&c, 1),
                listed0,
                "{what} ({attempt}): the table changed"
            );
            let m = c.matrix(PORTS, T);
            m.check(&m0)
                .unwrap_or_else(|e| panic!("{what} ({attempt}): the packets changed: {e}"));
            assert_eq!(
                stream.exchange().unwrap(),
                b.name(),
                "{what} ({attempt}): stream"
            );
        }
        // The next good apply replaces the table whole, and it works.
        let dp = c.dataplane("node1").unwrap();
        let r = dp
            .apply(&desired)
            .unwrap_or_else(|e| panic!("{what}: good apply: {e}"));
        assert_eq!(r.kind, ApplyKind::Full, "{what}: after a failure");
        let reason = r.reason.unwrap_or_default();
        assert!(reason.contains("failed"), "{what}: reason {reason:?}");
        assert_eq!(dp.current(), Some(&desired));
        assert_eq!(listing(&c, 1), listed0, "{what}: good apply");
        let m = c.matrix(PORTS, T);
        m.check(&m0)
            .unwrap_or_else(|e| panic!("{what}: after the good apply: {e}"));
        assert_eq!(stream.exchange().unwrap(), b.name());
        // Incremental again from here.
        let r = c.apply().unwrap();
        assert!(
            r.iter().all(|(_, r)| r.kind == ApplyKind::NoChange),
            "{r:?}"
        );
    }
    eprintln!(
        "a_rejected_batch_leaves_the_previous_ruleset_whole: {:?}",
        started.elapsed()
    );
}
