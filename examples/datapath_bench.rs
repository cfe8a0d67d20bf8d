//! Data-path benchmark: what a new connection pays in the kernel with
//! kube-nftpolicy's ruleset, against no ruleset, a conntrack-only table and
//! a kube-router-style iptables + ipset ruleset of the same policies.
//!
//! `sudo cargo run --release --example datapath_bench` (root; needs
//! iproute2, nftables, iptables and ipset; every packet stays inside the
//! network namespaces it creates, every loop is bounded in time).
//! `DATAPATH_SECONDS` (default 1.0) sets each measurement's duration,
//! `DATAPATH_ROUNDS` (default 5) the interleaved rounds.
//!
//! Configurations, measured in the same run, interleaved per round:
//! (a) no ruleset; (a-ct) only `ct state established,related accept`;
//! (b) kube-nftpolicy, 10k pods / 1k policies, both probe pods isolated and
//! allowed; (c) kube-router style (iptables-legacy + ipset: conntrack accept
//! first, linear dispatch by pod IP into per-pod chains, set matches;
//! `datapath_bench/kube_router.rs`, shared with `sync_compare.rs`) for the
//! same resolution; (d) kube-nftpolicy, 1k pods / 100 policies. Then a sweep
//! of 1, 10, 100 policies selecting the destination before the one that
//! allows it. Prints medians, min–max and per-round ratios against (a).
//! Last, drop and allow logging on against off (`datapath_bench/logging.rs`).
//! `DATAPATH_ONLY=sweep` or `DATAPATH_ONLY=logging` runs that section alone.
#![allow(missing_docs)]

#[path = "datapath_bench/kube_router.rs"]
mod kube_router;
#[path = "datapath_bench/logging.rs"]
mod logging;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nftpolicy_core::model::{Protocol, Selector, Snapshot};
use nftpolicy_core::resolve::{resolve, Resolution};
use nftpolicy_core::ruleset::build::build;
use nftpolicy_core::ruleset::trace::{trace, Cost, CtState, Outcome, Packet, L4};
use nftpolicy_core::ruleset::Hook;
use nftpolicy_lab::{netns, Lab, Stack};
use nftpolicy_nft::{Dataplane, NetlinkDataplane};
use nftpolicy_testkit::synth::{cluster, Spec, LOCAL_NODE};
use nftpolicy_testkit::*;

use kube_router::kube_router;

const ECHO: u16 = 80;
const SINK: u16 = 5001;
const UDP: u16 = 9;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Res<()> {
    let secs: f64 = env_or("DATAPATH_SECONDS", 1.0);
    let rounds: usize = env_or("DATAPATH_ROUNDS", 5.0) as usize;
    let dur = Duration::from_secs_f64(secs);
    let mut lab = Lab::new()?;
    let node = lab.add_node()?;
    let client = lab.add_pod_auto(&node, "client", Stack::V4)?;
    let server = lab.add_pod_auto(&node, "server", Stack::V4)?;
    let denied = lab.add_pod_auto(&node, "denied", Stack::V4)?;
    let (cip, sip) = (ip(&client.ipv4()), ip(&server.ipv4()));
    let counters = start_servers(server.netns())?;

    let big = with_probe_pods(
        cluster(Spec {
            pods: 10_000,
            policies: 1_000,
            local_pods: 110,
        }),
        cip,
        sip,
        0,
    );
    let small = with_probe_pods(
        cluster(Spec {
            pods: 1_000,
            policies: 100,
            local_pods: 110,
        }),
        cip,
        sip,
        0,
    );
    let mut dp = NetlinkDataplane::new(Some(node.netns()))?;
    let only = std::env::var("DATAPATH_ONLY").unwrap_or_default();
    let logged = logging::with_denied_pod(big.clone(), ip(&denied.ipv4()));
    let pods = (&client, &denied, &server);
    match only.as_str() {
        "logging" => logging::bench(&mut dp, &node, pods, &logged, dur, rounds)?,
        "sweep" => sweep(&mut dp, &node, (&client, &server), &big, dur, rounds)?,
        _ => {
            main_table(
                &mut dp,
                &node,
                (&client, &server),
                (&big, small),
                &counters,
                dur,
                rounds,
            )?;
            sweep(&mut dp, &node, (&client, &server), &big, dur, rounds)?;
            logging::bench(&mut dp, &node, pods, &logged, dur, rounds)?;
        }
    }
    drop(lab);
    Ok(())
}

/// Configurations (a)–(d), interleaved per round.
fn main_table(
    dp: &mut NetlinkDataplane,
    node: &nftpolicy_lab::Host,
    (client, server): (&nftpolicy_lab::Host, &nftpolicy_lab::Host),
    (big, small): (&Snapshot, Snapshot),
    counters: &Counters,
    dur: Duration,
    rounds: usize,
) -> Res<()> {
    let (cip, sip) = (ip(&client.ipv4()), ip(&server.ipv4()));
    for (name, s) in [("b", big), ("d", &small)] {
        let cost = walk_cost(s, cip, sip)?;
        println!(
            "({name}) a new UDP flow client -> server walks {} rules and {} set/map lookups",
            cost.rules, cost.lookups
        );
    }
    let configs: Vec<(&str, Config)> = vec![
        ("a", Config::Nothing),
        ("a-ct", Config::Nft(CT_ONLY.to_owned())),
        ("b", Config::Ours(Box::new(big.clone()))),
        ("c", Config::KubeRouter(Box::new(resolve(big, LOCAL_NODE)))),
        ("d", Config::Ours(Box::new(small))),
    ];
    let metrics = [
        "new TCP conn/s",
        "new UDP flows/s",
        "TCP MB/s",
        "RTT p50 µs",
        "RTT p99 µs",
    ];
    let mut results = vec![vec![vec![]; metrics.len()]; configs.len()];
    for round in 0..rounds {
        for (i, (name, config)) in configs.iter().enumerate() {
            config.install(dp, node.netns())?;
            let m = measure(client.netns(), sip, server.netns(), counters, dur)?;
            eprintln!("round {round} ({name}): {m:?}");
            for (k, v) in m.into_iter().enumerate() {
                results[i][k].push(v);
            }
        }
    }
    Config::Nothing.install(dp, node.netns())?;
    report(
        &configs.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        &metrics,
        &results,
    );
    Ok(())
}

/// 1, 10 and 100 extra policies selecting the server, each allowing every
/// port from pods that are not the client: the new-flow rate of each,
/// interleaved per round, and the median of the per-round ratios
/// rate(n) / rate(1).
fn sweep(
    dp: &mut NetlinkDataplane,
    node: &nftpolicy_lab::Host,
    (client, server): (&nftpolicy_lab::Host, &nftpolicy_lab::Host),
    big: &Snapshot,
    dur: Duration,
    rounds: usize,
) -> Res<()> {
    let (cip, sip) = (ip(&client.ipv4()), ip(&server.ipv4()));
    println!("\nPolicies selecting the destination besides the one that allows it (10k pods / 1k policies):");
    let ns = [1usize, 10, 100];
    for n in ns {
        let cost = walk_cost(&with_probe_pods(big.clone(), cip, sip, n), cip, sip)?;
        println!(
            "  {n:>3} policies: a new flow walks {} rules and {} lookups",
            cost.rules, cost.lookups
        );
    }
    let snapshots: Vec<Snapshot> = ns
        .iter()
        .map(|&n| with_probe_pods(big.clone(), cip, sip, n))
        .collect();
    let mut rates = vec![Vec::new(); ns.len()];
    for round in 0..rounds {
        for (i, s) in snapshots.iter().enumerate() {
            Config::Ours(Box::new(s.clone())).install(dp, node.netns())?;
            let r = udp_flows(client.netns(), sip, server.netns(), dur)?;
            eprintln!("sweep round {round} ({} policies): {r:.0}", ns[i]);
            rates[i].push(r);
        }
    }
    Config::Nothing.install(dp, node.netns())?;
    for (i, n) in ns.iter().enumerate() {
        let ratios: Vec<f64> = rates[i]
            .iter()
            .zip(&rates[0])
            .map(|(r, base)| r / base)
            .collect();
        println!(
            "  {n:>3} policies: {:>10.0} new UDP flows/s (min {:.0}, max {:.0}); rate({n}) / rate(1) = {:.3} (median of {} per-round ratios)",
            median(&rates[i]),
            rates[i].iter().cloned().fold(f64::INFINITY, f64::min),
            rates[i].iter().cloned().fold(0.0, f64::max),
            median(&ratios),
            ratios.len()
        );
    }
    Ok(())
}

/// The rules and lookups of the probe flow's walk through the node's
/// ruleset (the model's trace, which counts as the kernel evaluates); an
/// error if the flow would not be accepted.
fn walk_cost(s: &Snapshot, client: IpAddr, server: IpAddr) -> Res<Cost> {
    let t = trace(
        &build(&resolve(s, LOCAL_NODE)),
        &Packet {
            src: client,
            dst: server,
            l4: L4::Port {
                protocol: Protocol::Udp,
                port: UDP,
            },
            ct: CtState::New,
            hook: Hook::Forward,
            mark: 0,
        },
    );
    if t.outcome != Outcome::Accept {
        return Err("the probe flow is not allowed by the bench's ruleset".into());
    }
    Ok(t.cost)
}

fn env_or(key: &str, default: f64) -> f64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ip(a: &Option<std::net::Ipv4Addr>) -> IpAddr {
    IpAddr::V4(a.expect("lab pod has IPv4"))
}

/// The synthetic cluster plus the two lab pods on the measured node: the
/// server isolated by `extra` policies that do not match the client (sorted
/// before) and the allowing one, the client isolated for egress and allowed.
fn with_probe_pods(mut s: Snapshot, client: IpAddr, server: IpAddr, extra: usize) -> Snapshot {
    s.add_pod(
        pod("ns-0", "bench-client")
            .labels([("bench", "client"), ("app", "app-0")])
            .ip(&client.to_string())
            .node(LOCAL_NODE),
    );
    s.add_pod(
        pod("ns-0", "bench-server")
            .labels([("bench", "server"), ("app", "app-1"), ("tier", "front")])
            .ip(&server.to_string())
            .node(LOCAL_NODE),
    );
    let server_sel = || Selector::labels([("bench", "server")]);
    // Each sweep policy allows, on every port, pods that exist but are not
    // the client (`tier=back`; the client has no tier): its rule is the
    // worst case for a new flow, a set lookup that misses.
    for i in 0..extra {
        let app = format!("app-{}", i % 10);
        s.add_policy(
            policy("ns-0", &format!("aaa-sweep-{i:03}"))
                .select(server_sel())
                .ingress(rule().pods(Selector::labels([("app", app.as_str()), ("tier", "back")]))),
        );
    }
    s.add_policy(
        policy("ns-0", "zzz-allow-client")
            .select(server_sel())
            .ingress(rule().pods(Selector::labels([("bench", "client")]))),
    );
    s.add_policy(
        policy("ns-0", "zzz-client-egress")
            .select(Selector::labels([("bench", "client")]))
            .egress(rule().pods(server_sel())),
    );
    s
}

const CT_ONLY: &str = "table inet bench-ct-only {\n chain forward {\n  type filter hook forward priority filter; policy accept;\n  ct state established,related accept\n }\n}\n";

enum Config {
    Nothing,
    Nft(String),
    Ours(Box<Snapshot>),
    KubeRouter(Box<Resolution>),
}

impl Config {
    fn install(&self, dp: &mut NetlinkDataplane, node: &str) -> Res<()> {
        // Start from an empty node every time.
        dp.cleanup()?;
        run(node, "nft", &["delete table inet bench-ct-only"]).ok();
        run(node, "iptables-legacy", &["-F"]).ok();
        run(node, "iptables-legacy", &["-X"]).ok();
        run(node, "ipset", &["destroy"]).ok();
        match self {
            Config::Nothing => {}
            Config::Nft(text) => {
                run_stdin(node, "nft", &["-f", "-"], text)?;
            }
            Config::Ours(s) => {
                dp.apply(&build(&resolve(s, LOCAL_NODE)))?;
            }
            Config::KubeRouter(r) => {
                let (sets, rules) = kube_router(r);
                run_stdin(node, "ipset", &["restore", "-exist"], &sets)?;
                run_stdin(node, "iptables-legacy-restore", &[], &rules)?;
            }
        }
        Ok(())
    }
}

fn run(ns: &str, prog: &str, args: &[&str]) -> Res<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, prog])
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!("{prog} {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_stdin(ns: &str, prog: &str, args: &[&str], input: &str) -> Res<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, prog])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!("{prog}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

struct Counters {
    sink: Arc<AtomicU64>,
}

/// Echo (1-byte request/response until EOF) and sink (count bytes), each on
/// a thread inside the server's namespace, and the UDP sink table. They
/// live until the process ends.
fn start_servers(ns: &str) -> Res<Counters> {
    run_stdin(ns, "nft", &["-f", "-"], UDP_SINK)?;
    let (echo, sink) = netns::in_netns(ns, || {
        let bind = |p| TcpListener::bind(("0.0.0.0", p));
        let io = |e: std::io::Error| nftpolicy_lab::LabError::Io {
            context: "bench server".into(),
            source: e,
        };
        Ok((bind(ECHO).map_err(io)?, bind(SINK).map_err(io)?))
    })?;
    std::thread::spawn(move || {
        for conn in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = conn;
                let _ = c.set_nodelay(true);
                let mut b = [0u8; 1];
                while matches!(c.read(&mut b), Ok(1)) {
                    if c.write_all(&b).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let counters = Counters {
        sink: Arc::new(AtomicU64::new(0)),
    };
    let bytes = Arc::clone(&counters.sink);
    std::thread::spawn(move || {
        for conn in sink.incoming().flatten() {
            let bytes = Arc::clone(&bytes);
            std::thread::spawn(move || {
                let mut c = conn;
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n @ 1..) = c.read(&mut buf) {
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    Ok(counters)
}

/// [conn/s, flows/s, MB/s, p50 µs, p99 µs] from the client's namespace.
fn measure(
    client: &str,
    server: IpAddr,
    sink_ns: &str,
    c: &Counters,
    dur: Duration,
) -> Res<Vec<f64>> {
    let conn = in_client(client, move || {
        let (start, mut n) = (Instant::now(), 0u64);
        while start.elapsed() < dur {
            let mut s =
                TcpStream::connect_timeout(&SocketAddr::new(server, ECHO), Duration::from_secs(1))?;
            s.set_nodelay(true)?;
            // Close with RST: a FIN close leaves the client's port in
            // TIME_WAIT for 60 s, and after ~20k connections the search
            // for a free ephemeral port throttled whole rounds to ~200/s.
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
            s.write_all(b"x")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
            n += 1;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    })?;
    let flows = udp_flows(client, server, sink_ns, dur)?;
    let before = c.sink.load(Ordering::Relaxed);
    let secs = in_client(client, move || {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::new(server, SINK), Duration::from_secs(1))?;
        let buf = vec![7u8; 1 << 16];
        let start = Instant::now();
        while start.elapsed() < dur {
            s.write_all(&buf)?;
        }
        Ok(start.elapsed().as_secs_f64())
    })?;
    std::thread::sleep(Duration::from_millis(50));
    let mbps = (c.sink.load(Ordering::Relaxed) - before) as f64 / secs / 1e6;
    let rtts = in_client(client, move || {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::new(server, ECHO), Duration::from_secs(1))?;
        s.set_nodelay(true)?;
        let mut v = Vec::with_capacity(4000);
        let start = Instant::now();
        while v.len() < 4000 && start.elapsed() < dur {
            let t = Instant::now();
            s.write_all(b"x")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        v.sort_by(f64::total_cmp);
        Ok((v[v.len() / 2], v[v.len() * 99 / 100]))
    })?;
    Ok(vec![conn, flows, mbps, rtts.0, rtts.1])
}

/// Unreplied UDP datagrams from one socket: every one is conntrack NEW and
/// walks the node's ruleset. Counted where they arrive, by an nft counter
/// in the server's namespace that drops them before conntrack, so no
/// socket wakeup on the receiving side limits the rate.
fn udp_flows(client: &str, server: IpAddr, sink_ns: &str, dur: Duration) -> Res<f64> {
    let before = udp_sink_packets(sink_ns)?;
    let secs = in_client(client, move || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        let to = SocketAddr::new(server, UDP);
        let start = Instant::now();
        while start.elapsed() < dur {
            for _ in 0..64 {
                let _ = s.send_to(b"x", to);
            }
        }
        Ok(start.elapsed().as_secs_f64())
    })?;
    Ok((udp_sink_packets(sink_ns)? - before) as f64 / secs)
}

/// The UDP sink in the server's namespace: count and drop at prerouting,
/// before conntrack.
const UDP_SINK: &str = "table inet bench-sink {\n counter udp-sink {\n }\n chain pre {\n  type filter hook prerouting priority raw - 10; policy accept;\n  udp dport 9 counter name \"udp-sink\" drop\n }\n}\n";

fn udp_sink_packets(ns: &str) -> Res<u64> {
    let out = run(
        ns,
        "nft",
        &["list", "counter", "inet", "bench-sink", "udp-sink"],
    )?;
    let packets = out
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no packet count in {out:?}"))?;
    Ok(packets)
}

fn in_client<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Res<T> {
    Ok(netns::in_netns(ns, move || {
        f().map_err(|e| nftpolicy_lab::LabError::Io {
            context: "bench client".into(),
            source: e,
        })
    })?)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(names: &[&str], metrics: &[&str], r: &[Vec<Vec<f64>>]) {
    println!("\n| metric | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for (k, metric) in metrics.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .map(|cfg| {
                let v = &cfg[k];
                let (lo, hi) = (
                    v.iter().cloned().fold(f64::MAX, f64::min),
                    v.iter().cloned().fold(0.0, f64::max),
                );
                format!("{:.0} ({:.0}–{:.0})", median(v), lo, hi)
            })
            .collect();
        println!("| {metric} | {} |", cells.join(" | "));
    }
    println!("\nRatios against (a), per round (median of rounds in brackets):");
    for (k, metric) in metrics.iter().enumerate().take(3) {
        for (i, name) in names.iter().enumerate().skip(1) {
            let per: Vec<f64> = r[i][k].iter().zip(&r[0][k]).map(|(x, a)| x / a).collect();
            let txt: Vec<String> = per.iter().map(|x| format!("{x:.2}")).collect();
            println!(
                "  {metric:<16} {name:>5}/a: {}  [{:.2}]",
                txt.join(" "),
                median(&per)
            );
        }
    }
    for (k, metric) in metrics.iter().enumerate().take(2) {
        let b_over = |j: usize| {
            median(
                &r[2][k]
                    .iter()
                    .zip(&r[j][k])
                    .map(|(x, y)| x / y)
                    .collect::<Vec<_>>(),
            )
        };
        println!(
            "  {metric:<16} b/a-ct: [{:.2}]  b/c: [{:.2}]  b/d: [{:.2}]",
            b_over(1),
            b_over(3),
            b_over(4)
        );
    }
}
