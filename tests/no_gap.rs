//! "No gap, no leak": the table is replaced as a whole (a full replace, in
//! ONE netlink batch) over and over while real traffic runs, and a batch
//! the kernel rejects changes nothing.
//!
//! - `full_replaces_open_no_gap_and_break_no_stream`: 200 full replaces of
//!   node1's table while eight threads hammer denied flows (TCP connects and
//!   UDP datagrams, IPv4 and IPv6, one flow denied by the destination's
//!   ingress, one by the source's egress) and two long-lived TCP streams
//!   (one per family) exchange data the whole time. A leak is looked for on
//!   both ends: the prober counts replies, and counters in the destination
//!   pod's own namespace count every packet of the denied flows that got
//!   there. Both must stay at zero; the streams must never fail. A leak is
//!   reported with what proves or disproves it: who answered, when (against
//!   the batch in flight: sent, answered by the kernel), the destination's
//!   counters and node1's conntrack entries of the denied port.
//! - `a_packet_inside_a_base_chain_when_a_replace_commits_is_still_judged`:
//!   the window such a leak came through, stretched: a detour of empty
//!   jumps in front of the dispatch rule keeps each packet in the base chain
//!   for milliseconds, between the moment the kernel fixes the generation it
//!   walks and its dispatch map lookup. Full replaces must let nothing
//!   through; deleting and adding the table (`nft -f`) is run as the
//!   control, which does (see docs/dataplane.md, "What a packet sees while
//!   a batch commits").
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
use nftpolicy_core::ruleset::{AddrField, Chain, Match, Rule, Ruleset, Verdict};
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
/// `src` to port [`DENIED`] that reaches it, one counter per family and
/// protocol: whatever the prober saw, a packet of a denied flow that got
/// through the node is counted here.
fn install_leak_counter(lab: &Lab, dest: &Host, src: &Host) {
    let (s4, s6) = (ip(src, Family::V4), ip(src, Family::V6));
    let mut rules = String::new();
    for (fam, saddr) in [("ip", s4), ("ip6", s6)] {
        for proto in ["tcp", "udp"] {
            rules.push_str(&format!(
                "  {fam} saddr {saddr} {proto} dport {DENIED} counter comment \"{fam} {proto}\"\n"
            ));
        }
    }
    lab.nft_apply(
        dest,
        &format!(
            "table inet leak {{\n chain input {{\n  type filter hook input priority -500; policy accept;\n{rules} }}\n}}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("leak counter in {}: {e}", dest.name()));
}

/// Packets counted by [`install_leak_counter`] so far, per family and
/// protocol (`ip tcp`, `ip6 udp`, ...).
fn leaked_by(lab: &Lab, dest: &Host) -> Vec<(String, u64)> {
    let out = lab
        .nft(dest, &["list", "table", "inet", "leak"])
        .unwrap_or_else(|e| panic!("leak counter of {}: {e}", dest.name()));
    out.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let packets = words
                .windows(2)
                .find(|w| w[0] == "packets")
                .map(|w| w[1].parse::<u64>().expect("counter value"))?;
            let comment = line.split('"').nth(1).unwrap_or("?").to_owned();
            Some((comment, packets))
        })
        .collect()
}

/// Packets counted by [`install_leak_counter`] so far.
fn leaked(lab: &Lab, dest: &Host) -> u64 {
    leaked_by(lab, dest).iter().map(|(_, n)| n).sum()
}

/// One denied probe that was answered.
#[derive(Debug)]
struct Leak {
    /// The probe's own address and port.
    local: Option<SocketAddr>,
    /// When the probe started (connect, or send).
    start: Instant,
    /// When it was answered (connected, or the datagram came back).
    answered: Instant,
    /// What the server said (its host name), if anything.
    answer: String,
}

/// What a prober thread saw.
#[derive(Debug)]
struct ProbeStats {
    /// `x -> d tcp ipv4`.
    label: String,
    attempts: usize,
    /// Replies to denied probes: each is a leak.
    leaks: Vec<Leak>,
}

/// From a thread inside `from_netns`: new TCP connections (or UDP
/// datagrams, each from a new socket) to `to`, one after the other, until
/// `stop`, `max` attempts or `until`.
fn probe_loop(
    label: String,
    from_netns: &str,
    to: SocketAddr,
    proto: Proto,
    stop: &AtomicBool,
    until: Instant,
    max: usize,
) -> ProbeStats {
    netns::enter(from_netns).unwrap_or_else(|e| panic!("prober: {e}"));
    let mut stats = ProbeStats {
        label,
        attempts: 0,
        leaks: Vec::new(),
    };
    let any: IpAddr = if to.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) && Instant::now() < until && stats.attempts < max {
        stats.attempts += 1;
        let start = Instant::now();
        match proto {
            Proto::Tcp => {
                if let Ok(mut conn) = TcpStream::connect_timeout(&to, TIGHT) {
                    let answered = Instant::now();
                    let local = conn.local_addr().ok();
                    let _ = conn.write_all(b"?");
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                    let n = conn.read(&mut buf).unwrap_or(0);
                    stats.leaks.push(Leak {
                        local,
                        start,
                        answered,
                        answer: String::from_utf8_lossy(&buf[..n]).trim().to_owned(),
                    });
                }
            }
            Proto::Udp => {
                let sock = UdpSocket::bind((any, 0)).expect("udp bind");
                sock.connect(to).expect("udp connect");
                if sock.send(b"?").is_ok() {
                    sock.set_read_timeout(Some(TIGHT)).expect("udp timeout");
                    if let Ok(n) = sock.recv(&mut buf) {
                        stats.leaks.push(Leak {
                            local: sock.local_addr().ok(),
                            start,
                            answered: Instant::now(),
                            answer: String::from_utf8_lossy(&buf[..n]).trim().to_owned(),
                        });
                    }
                }
            }
        }
    }
    stats
}

/// One full replace of the loop: when the apply started, when its batch
/// was sent and answered (the kernel checks and commits it in between),
/// and when the apply returned.
#[derive(Debug, Clone, Copy)]
struct Replace {
    start: Instant,
    batch: Option<(Instant, Instant)>,
    end: Instant,
}

/// Milliseconds from `b` to `a` (negative: `a` is earlier).
fn ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        (a - b).as_secs_f64() * 1e3
    } else {
        -((b - a).as_secs_f64() * 1e3)
    }
}

/// Where a leaked probe sat among the replaces: the ones whose apply
/// overlapped it, with the probe's times relative to each one's batch.
fn leak_timing(leak: &Leak, replaces: &[Replace]) -> String {
    let mut out = Vec::new();
    for (i, r) in replaces.iter().enumerate() {
        if r.end < leak.start || r.start > leak.answered {
            continue;
        }
        let Some((sent, acked)) = r.batch else {
            continue;
        };
        let phase = if leak.answered < sent {
            "answered before the batch was sent"
        } else if leak.start > acked {
            "started after the kernel's answer"
        } else {
            "overlapping the kernel's processing of the batch"
        };
        out.push(format!(
            "replace {i}: {phase} (probe start {:+.3} ms, answered {:+.3} ms, kernel answer {:+.3} ms, \
             relative to the send; apply {:+.3}..{:+.3} ms)",
            ms(leak.start, sent),
            ms(leak.answered, sent),
            ms(acked, sent),
            ms(r.start, sent),
            ms(r.end, sent),
        ));
    }
    if out.is_empty() {
        // The nearest replace.
        let nearest = replaces.iter().enumerate().min_by_key(|(_, r)| {
            let (a, b) = r.batch.unwrap_or((r.start, r.end));
            if leak.answered < a {
                a - leak.answered
            } else if leak.start > b {
                leak.start - b
            } else {
                Duration::ZERO
            }
        });
        if let Some((i, r)) = nearest {
            let (sent, acked) = r.batch.unwrap_or((r.start, r.end));
            out.push(format!(
                "no replace in flight; nearest: replace {i} (probe start {:+.3} ms, answered {:+.3} ms, \
                 kernel answer {:+.3} ms, relative to its send)",
                ms(leak.start, sent),
                ms(leak.answered, sent),
                ms(acked, sent),
            ));
        }
    }
    out.join("; ")
}

/// Steal time of the whole machine so far (hypervisor), in clock ticks.
fn steal_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next()?.split_whitespace().nth(8)?.parse().ok())
        .unwrap_or(0)
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
                let label = format!("{} -> {} {proto} {fam}", src.name(), dst.name());
                probers.push((label, src.netns().to_owned(), to, proto));
            }
        }
    }

    let stop = AtomicBool::new(false);
    let until = Instant::now() + LOOP_LIMIT;
    let mut durations = Vec::with_capacity(REPLACES);
    let mut replaces: Vec<Replace> = Vec::with_capacity(REPLACES);
    let steal_before = steal_ticks();
    let (probe_stats, stream_stats) = std::thread::scope(|s| {
        let stop = &stop;
        let probe_handles: Vec<_> = probers
            .iter()
            .map(|(label, ns, to, proto)| {
                let label = label.clone();
                s.spawn(move || probe_loop(label, ns, *to, *proto, stop, until, 100_000))
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
            let start = Instant::now();
            let applied = dp.apply(&desired);
            replaces.push(Replace {
                start,
                batch: dp.last_batch(),
                end: Instant::now(),
            });
            match applied {
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
    let steal = steal_ticks().saturating_sub(steal_before);
    let kernel: Vec<Duration> = replaces
        .iter()
        .filter_map(|r| r.batch.map(|(a, b)| b - a))
        .collect();
    eprintln!(
        "batches in the kernel: mean {:?}, max {:?}; steal time during the loop: {steal} ticks",
        kernel.iter().sum::<Duration>() / kernel.len().max(1) as u32,
        kernel.iter().max(),
    );
    assert_eq!(durations.len(), REPLACES);
    // Every leak, with what the destination's counters and node1's
    // conntrack table say about it.
    let mut report = Vec::new();
    for p in &probe_stats {
        for l in &p.leaks {
            report.push(format!(
                "{}: probe from {:?} answered {:?} after {:.3} ms; {}",
                p.label,
                l.local,
                l.answer,
                ms(l.answered, l.start),
                leak_timing(l, &replaces),
            ));
        }
    }
    let counted = [
        ("d (from x)", leaked_by(&c.lab, &d)),
        ("f (from e)", leaked_by(&c.lab, &f)),
    ];
    if !report.is_empty() || counted.iter().any(|(_, v)| v.iter().any(|(_, n)| *n > 0)) {
        let node1 = c.lab.node(1).unwrap();
        let flows: Vec<String> = c
            .lab
            .exec(node1, "conntrack", &["-L"])
            .unwrap_or_else(|e| e.to_string())
            .lines()
            .filter(|l| l.contains(&format!("dport={DENIED} ")))
            .map(str::to_owned)
            .collect();
        panic!(
            "denied probes answered:\n  {}\npackets counted at the destinations: {counted:?}\n\
             node1's conntrack entries of port {DENIED}:\n  {}\nprobes per prober: {:?}",
            report.join("\n  "),
            flows.join("\n  "),
            probe_stats
                .iter()
                .map(|p| (p.label.as_str(), p.attempts))
                .collect::<Vec<_>>(),
        );
    }
    for p in &probe_stats {
        assert!(
            p.attempts >= 100,
            "prober {} ran only {} probes",
            p.label,
            p.attempts
        );
    }
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

// ---------------------------------------------------------------------------
// A packet inside a base chain when a full replace commits
// ---------------------------------------------------------------------------

/// Chains of the detour that [`with_detour`] puts in front of the dispatch
/// rules: `SLOW_FANOUT` jumps per chain, `SLOW_DEPTH` chains deep.
const SLOW_FANOUT: usize = 10;
const SLOW_DEPTH: usize = 5;

/// `rs` with a slow detour in `chain` right before its dispatch rules:
/// `SLOW_FANOUT ^ SLOW_DEPTH` jumps to empty chains, which match nothing
/// and take a few milliseconds. It stretches the moment between a packet
/// entering the base chain (the kernel reads the ruleset generation then)
/// and its dispatch map lookup to milliseconds, so that a replace commits
/// in between for many packets instead of for one in a million.
fn with_detour(rs: &Ruleset, chain: &str) -> Ruleset {
    let mut rs = rs.clone();
    for level in 0..=SLOW_DEPTH {
        let rules = if level < SLOW_DEPTH {
            (0..SLOW_FANOUT)
                .map(|_| Rule::new(Vec::new(), Verdict::Jump(format!("slow-{}", level + 1))))
                .collect()
        } else {
            Vec::new()
        };
        rs.chains.push(Chain {
            name: format!("slow-{level}"),
            base: None,
            comment: "a detour of empty jumps (test)".into(),
            rules,
        });
    }
    let base = rs
        .chains
        .iter_mut()
        .find(|c| c.name == chain)
        .expect("base chain");
    let at = base
        .rules
        .iter()
        .position(|r| matches!(r.verdict, Verdict::Dispatch { .. }))
        .expect("dispatch rule");
    base.rules
        .insert(at, Rule::new(Vec::new(), Verdict::Jump("slow-0".into())));
    rs
}

/// Runs `replace` `n` times while a thread in `from_netns` sends denied UDP
/// datagrams to `to`, each from a new socket, one after the other without
/// waiting for answers; an answer is looked for 30 ms after each send.
/// Returns the number of datagrams sent and the answered ones.
fn replaces_while_probing(
    from_netns: &str,
    to: SocketAddr,
    n: usize,
    mut replace: impl FnMut(),
) -> (usize, Vec<Leak>) {
    const WAIT: Duration = Duration::from_millis(30);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let stop = &stop;
        let prober = s.spawn(move || {
            netns::enter(from_netns).unwrap_or_else(|e| panic!("prober: {e}"));
            let (mut attempts, mut leaks) = (0, Vec::new());
            let mut pending: std::collections::VecDeque<(UdpSocket, Instant)> =
                std::collections::VecDeque::new();
            let mut buf = [0u8; 64];
            let mut check = |sock: UdpSocket, start: Instant, leaks: &mut Vec<Leak>| {
                if let Ok(n) = sock.recv(&mut buf) {
                    leaks.push(Leak {
                        local: sock.local_addr().ok(),
                        start,
                        answered: Instant::now(),
                        answer: String::from_utf8_lossy(&buf[..n]).trim().to_owned(),
                    });
                }
            };
            while !stop.load(Ordering::Relaxed) {
                attempts += 1;
                let any: IpAddr = Ipv4Addr::UNSPECIFIED.into();
                let sock = UdpSocket::bind((any, 0)).expect("udp bind");
                sock.connect(to).expect("udp connect");
                sock.set_nonblocking(true).expect("nonblocking");
                let start = Instant::now();
                let _ = sock.send(b"?");
                pending.push_back((sock, start));
                while pending.front().is_some_and(|(_, t)| t.elapsed() > WAIT) {
                    let (sock, start) = pending.pop_front().unwrap();
                    check(sock, start, &mut leaks);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(WAIT);
            for (sock, start) in pending {
                check(sock, start, &mut leaks);
            }
            (attempts, leaks)
        });
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..n {
            replace();
        }
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        prober.join().expect("prober")
    })
}

#[test]
fn a_packet_inside_a_base_chain_when_a_replace_commits_is_still_judged() {
    nftpolicy_lab::kernel_test!(
        "no_gap::a_packet_inside_a_base_chain_when_a_replace_commits_is_still_judged"
    );
    const N: usize = 100;
    let mut c = Cluster::new().unwrap_or_else(|e| panic!("lab cluster: {e}"));
    c.add_namespace("p", &[]);
    let d = add(&mut c, 1, "d"); // ingress-isolated: takes y on 8080 only
    let x = add(&mut c, 1, "x"); // denied by d's ingress
    add(&mut c, 1, "y");
    install_leak_counter(&c.lab, &d, &x);
    c.set_policies([policy("p", "d-from-y")
        .select(app("d"))
        .ingress(rule().pods(app("y")).port(Protocol::Tcp, ALLOWED))]);
    c.apply().unwrap_or_else(|e| panic!("first apply: {e}"));
    let desired = with_detour(&c.desired("node1"), "forward-ingress");
    let dp = c.dataplane("node1").unwrap();
    dp.invalidate("test");
    dp.apply(&desired)
        .unwrap_or_else(|e| panic!("apply with the detour: {e}"));
    let to = SocketAddr::new(ip(&d, Family::V4), DENIED);
    assert!(!c.lab.probe(&x, to.ip(), DENIED, Proto::Udp, T), "x -> d");
    let counted = |c: &Cluster| {
        leaked_by(&c.lab, &d)
            .into_iter()
            .find(|(k, _)| k == "ip udp")
            .map_or(0, |(_, n)| n)
    };
    assert_eq!(counted(&c), 0);
    let x_ns = x.netns().to_owned();

    // Our full replace: the table, its base chains and its maps stay.
    let dp = c.dataplane("node1").unwrap();
    let mut kinds = Vec::new();
    let (ours, our_leaks) = replaces_while_probing(&x_ns, to, N, || {
        dp.invalidate("test");
        let r = dp
            .apply(&desired)
            .unwrap_or_else(|e| panic!("replace: {e}"));
        kinds.push(r.kind);
    });
    assert!(kinds.iter().all(|k| *k == ApplyKind::Full), "{kinds:?}");
    let our_counted = counted(&c);

    // The same table deleted and added again in one batch, as nft does it.
    let node1 = c.lab.node(1).unwrap().clone();
    let script = format!(
        "add table inet kube-nftpolicy\ndelete table inet kube-nftpolicy\n{}",
        nftpolicy_core::ruleset::render::render(&desired)
    );
    let (theirs, their_leaks) = replaces_while_probing(&x_ns, to, N, || {
        c.lab
            .nft_apply(&node1, &script)
            .unwrap_or_else(|e| panic!("nft -f: {e}"));
    });
    let their_counted = counted(&c) - our_counted;
    eprintln!(
        "{N} full replaces in place: {} of {ours} denied datagrams answered, {our_counted} \
         counted at d; {N} deletes and adds of the table: {} of {theirs} answered, \
         {their_counted} counted at d",
        our_leaks.len(),
        their_leaks.len(),
    );
    assert!(
        our_leaks.is_empty() && our_counted == 0,
        "full replaces in place let denied datagrams through: {} answered ({:?}), {our_counted} \
         counted at d",
        our_leaks.len(),
        our_leaks.iter().map(|l| &l.answer).collect::<Vec<_>>()
    );
    // The control: the same probes see the window that deleting the table
    // opens (a packet inside the old base chain when the batch commits
    // finds the old dispatch map already emptied for the new generation).
    // If a kernel ever closes it, this says so rather than failing.
    if their_leaks.is_empty() && their_counted == 0 {
        eprintln!(
            "note: deleting and adding the table opened no window on this kernel in {N} replaces"
        );
    }
}
