//! The data-path bench's logging section: what drop and allow logging cost
//! a new flow, on the 10k-pod / 1k-policy ruleset, measured interleaved
//! with the same ruleset without logging.
//!
//! - allowed flows: unreplied UDP datagrams client → server (each one is
//!   conntrack NEW and walks the chains), counted where they arrive;
//! - denied flows: unreplied UDP datagrams from a third pod the server's
//!   policies do not allow, counted by the server pod chain's drop
//!   counters (the logging twin's and the plain drop's together).
//!
//! Configurations: `off` (no logging), `drops` (the agent's default: drops
//! logged at 10/s per pod chain), `all` (drops, and allows at 10/s per
//! policy rule). An NFLOG reader is bound to the group while logging is on,
//! as the agent's would be, so the kernel does deliver the records.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nftpolicy_core::model::Protocol;
use nftpolicy_core::model::Snapshot;
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::logging::{build_logged, LogOptions};
use nftpolicy_core::ruleset::trace::{trace, CtState, Packet, L4};
use nftpolicy_core::ruleset::{Hook, Limit, RateUnit};
use nftpolicy_lab::Host;
use nftpolicy_nft::{Dataplane, NetlinkDataplane, NflogSocket};
use nftpolicy_testkit::synth::LOCAL_NODE;
use nftpolicy_testkit::*;

use super::{in_client, median, run, udp_flows, Config, Res, UDP};

const GROUP: u16 = 9841;
const CHAIN: &str = "pod-ingress-ns-0/bench-server";

/// `s` with a third local pod, `bench-denied` at `ip`, in a namespace no
/// policy selects: its egress is open, the server's ingress refuses it.
pub fn with_denied_pod(mut s: Snapshot, ip: IpAddr) -> Snapshot {
    s.add_namespace(namespace("bench-free", []));
    s.add_pod(
        pod("bench-free", "bench-denied")
            .labels([("bench", "denied")])
            .ip(&ip.to_string())
            .node(LOCAL_NODE),
    );
    s
}

/// Runs the rounds and prints the table and the ratios.
pub fn bench(
    dp: &mut NetlinkDataplane,
    node: &Host,
    (client, denied, server): (&Host, &Host, &Host),
    s: &Snapshot,
    dur: Duration,
    rounds: usize,
) -> Res<()> {
    let limit = Some(Limit::per(10, RateUnit::Second));
    let configs = [
        ("off", LogOptions::OFF),
        (
            "drops",
            LogOptions {
                drops: limit,
                ..LogOptions::OFF
            },
        ),
        (
            "all",
            LogOptions {
                drops: limit,
                allows: limit,
                group: GROUP,
            },
        ),
    ];
    let sip = IpAddr::V4(server.ipv4().ok_or("server has IPv4")?);
    let resolution = resolve(s, LOCAL_NODE);
    // [config][allowed, denied] per round.
    let mut rates = vec![[vec![], vec![]]; configs.len()];
    for round in 0..rounds {
        for (i, (name, opts)) in configs.iter().enumerate() {
            Config::Nothing.install(dp, node.netns())?;
            dp.apply(&build_logged(&resolution, opts).0)?;
            let reader = (!opts.is_off()).then(|| Reader::start(node.netns()));
            let allowed = udp_flows(client.netns(), sip, server.netns(), dur)?;
            let refused = denied_flows(denied.netns(), node.netns(), sip, dur)?;
            let records = reader.map(Reader::stop).unwrap_or(0);
            eprintln!("logging round {round} ({name}): allowed {allowed:.0}/s, denied {refused:.0}/s, {records} records");
            rates[i][0].push(allowed);
            rates[i][1].push(refused);
        }
    }
    Config::Nothing.install(dp, node.netns())?;
    println!(
        "\nDrop and allow logging, 10k pods / 1k policies, new UDP flows/s (median, min–max):"
    );
    println!("| flows | {} |", configs.map(|c| c.0).join(" | "));
    println!("|---|---|---|---|");
    for (k, what) in ["allowed", "denied"].iter().enumerate() {
        let cells: Vec<String> = rates
            .iter()
            .map(|r| {
                let v = &r[k];
                let lo = v.iter().cloned().fold(f64::MAX, f64::min);
                let hi = v.iter().cloned().fold(0.0, f64::max);
                format!("{:.0} ({lo:.0}–{hi:.0})", median(v))
            })
            .collect();
        println!("| {what} | {} |", cells.join(" | "));
    }
    println!("\nRatios against off: median of per-round ratios, and best round against best round");
    println!("(a shared machine only ever slows a round down, so the best rounds are the least disturbed):");
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    for (k, what) in ["allowed", "denied"].iter().enumerate() {
        for (i, (name, _)) in configs.iter().enumerate().skip(1) {
            let per: Vec<f64> = rates[i][k]
                .iter()
                .zip(&rates[0][k])
                .map(|(x, o)| x / o)
                .collect();
            println!(
                "  {what:<8} {name:>5}/off: median {:.2}, best {:.2}",
                median(&per),
                best(&rates[i][k]) / best(&rates[0][k])
            );
        }
    }
    println!("\nWhat a new flow walks (the model's trace):");
    let (cip, dip) = (client.ipv4().ok_or("ipv4")?, denied.ipv4().ok_or("ipv4")?);
    for (name, opts) in &configs {
        let rs = build_logged(&resolution, opts).0;
        let walk = |src: IpAddr| {
            let p = Packet {
                src,
                dst: sip,
                l4: L4::Port {
                    protocol: Protocol::Udp,
                    port: UDP,
                },
                ct: CtState::New,
                hook: Hook::Forward,
                mark: 0,
            };
            let t = trace(&rs, &p);
            format!("{} rules, {} lookups", t.cost.rules, t.cost.lookups)
        };
        println!(
            "  {name:>5}: allowed flow {}; denied flow {}",
            walk(cip.into()),
            walk(dip.into())
        );
    }
    Ok(())
}

/// Denied UDP datagrams per second from `denied`'s namespace to the
/// server, as the server pod chain's drop counters count them.
fn denied_flows(denied: &str, node: &str, server: IpAddr, dur: Duration) -> Res<f64> {
    let before = drops(node)?;
    let secs = in_client(denied, move || {
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
    Ok((drops(node)? - before) as f64 / secs)
}

/// Packets counted by the drop rules of the server's ingress chain.
fn drops(node: &str) -> Res<u64> {
    let out = run(
        node,
        "nft",
        &["list", "chain", "inet", "kube-nftpolicy", CHAIN],
    )?;
    Ok(out
        .lines()
        .filter(|l| l.contains(" drop"))
        .filter_map(|l| {
            l.split("counter packets ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

/// An NFLOG listener on the group, as the agent has one.
struct Reader {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Reader {
    fn start(netns: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let netns = netns.to_owned();
        let thread = std::thread::spawn(move || {
            let Ok(mut sock) = NflogSocket::open(Some(&netns), GROUP, Duration::from_millis(50))
            else {
                eprintln!("cannot bind NFLOG group {GROUP}: records are not read");
                return 0;
            };
            let mut n = 0;
            while !flag.load(Ordering::SeqCst) {
                n += sock.recv().map(|r| r.len() as u64).unwrap_or(0);
            }
            n
        });
        // Let it bind before the traffic starts.
        std::thread::sleep(Duration::from_millis(100));
        Self { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or(0)
    }
}
