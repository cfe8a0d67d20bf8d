//! Control plane side by side: one change at 10k pods / 1k policies, synced
//! the agent's way against a kube-router-style sync, measured in one run,
//! interleaved, as ratios.
//!
//! `sudo cargo run --release --example sync_compare` (root; needs iproute2,
//! nftables, iptables (`iptables-legacy-*`) and ipset; it sends no packets;
//! its two lab node namespaces, with every table, chain and set in them,
//! are removed at the end). `SYNC_ROUNDS` (default 30) sets the measured
//! changes, `SYNC_SECONDS` (default 300) the most time they may take.
//!
//! The cluster is `synth::cluster(10,000 pods, 1,000 policies, 110 on the
//! node)`. Each side has its own copy of it and its own lab node; both get
//! the same changes in the same order. The changes cycle through:
//! - `label`: a pod on another node (`ns-0/app-1-1`) goes from `tier=back`
//!   to `tier=front` and back, into and out of the peers of the
//!   front-tier policies of team t0's namespaces;
//! - `pod added`: a new pod on another node (`app-1`, `tier=front`, named
//!   ports), a peer of several policies;
//! - `policy edited`: `ns-0/policy-100` (app-1 → app-0, which selects two
//!   local pods) has its port changed 8080 → 8081 and back.
//!
//! - **ours**: what the agent's dataplane thread does per sync
//!   (`src/agent/sync/worker.rs`, with the library's default options: no
//!   gate, no cutting, no logging): the change to the store, the copy of
//!   the snapshot (`Stores::take`), `Incremental::resolve` given the
//!   changed keys (as the stores record them from the watch events),
//!   `build_cached`, `add_logging`, and `NetlinkDataplane::apply` (plan,
//!   diff, one netlink batch, commit). The full ruleset is installed once
//!   before the rounds.
//! - **kube-router**: what its network policy controller does on every
//!   change (`fullPolicySync`): the change, `iptables-save -t filter`,
//!   `ipset save`, the resolution of the same snapshot, the whole
//!   restore input (`datapath_bench/kube_router.rs`), `ipset restore
//!   -exist` (every set rebuilt in a temporary set and swapped in) and
//!   `iptables-legacy-restore -w 5 -T filter` of the whole filter table;
//!   the processes run in the node's namespace, spawned from a thread
//!   inside it (no `ip netns exec`). Its own per-sync `iptables -C/-S`
//!   checks of the top-level chains and the stale-set clean-up are not
//!   counted, nor the sets and chains it makes that the generator does not
//!   (see there): the kube-router figures are a lower bound.
//!
//! One warm-up round of each change is not counted. The order of the two
//! sides alternates from round to round. Prints medians, min–max, and the
//! median of the per-round ratios kube-router / ours.
#![allow(missing_docs)]

#[path = "datapath_bench/kube_router.rs"]
mod kube_router;

use std::time::{Duration, Instant};

use nftpolicy_core::model::{NamespacedName, Protocol, Selector, Snapshot};
use nftpolicy_core::resolve::{resolve, Changes, Incremental};
use nftpolicy_core::ruleset::build::{build_cached, BuildCache, Options};
use nftpolicy_core::ruleset::logging::{add_logging, LogOptions};
use nftpolicy_lab::{netns, Lab};
use nftpolicy_nft::{ApplyKind, Dataplane, NetlinkDataplane};
use nftpolicy_testkit::synth::{cluster, Spec, LOCAL_NODE};
use nftpolicy_testkit::*;

use kube_router::kube_router;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const WARMUP: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Label,
    PodAdded,
    PolicyEdited,
}

impl Change {
    const ALL: [Change; 3] = [Change::Label, Change::PodAdded, Change::PolicyEdited];

    fn name(self) -> &'static str {
        match self {
            Change::Label => "label",
            Change::PodAdded => "pod added",
            Change::PolicyEdited => "policy edited",
        }
    }

    /// The `nth` change of this kind (counted from 0) applied to `s`; the
    /// key it changed.
    fn apply(self, s: &mut Snapshot, nth: usize) -> Changes {
        let mut keys = Changes::default();
        match self {
            Change::Label => {
                let tier = if nth.is_multiple_of(2) {
                    "front"
                } else {
                    "back"
                };
                let pod = std::sync::Arc::make_mut(
                    s.pods
                        .get_mut(&NamespacedName::new("ns-0", "app-1-1"))
                        .expect("the synthetic cluster has ns-0/app-1-1"),
                );
                pod.labels.insert("tier".to_owned(), tier.to_owned());
                keys.pods.insert(NamespacedName::new("ns-0", "app-1-1"));
            }
            Change::PodAdded => {
                let name = format!("sync-new-{nth}");
                keys.pods.insert(NamespacedName::new("ns-0", name.as_str()));
                s.add_pod(
                    pod("ns-0", &name)
                        .labels([("app", "app-1"), ("tier", "front")])
                        .ip(&format!("10.200.{}.{}", nth / 256, nth % 256))
                        .node("node-elsewhere")
                        .port("http", 8080, Protocol::Tcp)
                        .port("metrics", 9090, Protocol::Tcp),
                )
            }
            Change::PolicyEdited => {
                keys.policies
                    .insert(NamespacedName::new("ns-0", "policy-100"));
                s.add_policy(policy_100(if nth.is_multiple_of(2) { 8081 } else { 8080 }))
            }
        }
        keys
    }
}

/// `ns-0/policy-100` as the synthetic cluster makes it (port 8080), or
/// with another port.
fn policy_100(port: u16) -> nftpolicy_core::model::Policy {
    policy("ns-0", "policy-100")
        .select(Selector::labels([("app", "app-0")]))
        .ingress(
            rule()
                .pods(Selector::labels([("app", "app-1")]))
                .port(Protocol::Tcp, port),
        )
}

/// Our side: what the agent's dataplane thread keeps across syncs.
struct Ours {
    dp: NetlinkDataplane,
    resolver: Incremental,
    sets: BuildCache,
}

/// One sync of ours: [change to commit, of which change + copy + resolve +
/// build]. Also the batch's message count.
fn ours_sync(
    ours: &mut Ours,
    s: &mut Snapshot,
    change: Change,
    nth: usize,
) -> Res<([Duration; 2], usize)> {
    let start = Instant::now();
    let keys = change.apply(s, nth);
    // The agent's Stores::take hands a copy of the snapshot (and the keys
    // the watch events changed) to the dataplane thread, which resolves
    // what they touch, builds and applies it.
    let snapshot = std::sync::Arc::new(s.clone());
    let resolution = ours.resolver.resolve(&snapshot, Some(&keys));
    let mut ruleset = build_cached(&resolution, &Options::default(), &mut ours.sets);
    let _log_map = add_logging(&mut ruleset, &resolution, &LogOptions::OFF);
    let built = start.elapsed();
    let report = ours.dp.apply(&ruleset)?;
    let total = start.elapsed();
    if report.kind != ApplyKind::Incremental {
        return Err(format!(
            "{}: apply was {:?}, not incremental",
            change.name(),
            report.kind
        )
        .into());
    }
    Ok(([total, built], report.messages))
}

/// The last restore input of the kube-router side, to check that every
/// change changes it.
#[derive(Default)]
struct KrState {
    sets: String,
    rules: String,
}

/// One kube-router-style sync: [change to last restore, resolve,
/// generate, iptables-save, ipset save, ipset restore, iptables-restore].
fn kr_sync(
    ns: &str,
    s: &mut Snapshot,
    change: Change,
    nth: usize,
    last: &mut KrState,
) -> Res<[Duration; 7]> {
    let start = Instant::now();
    change.apply(s, nth);
    let t = Instant::now();
    let resolution = resolve(s, LOCAL_NODE);
    let resolved = t.elapsed();
    // kube-router reads the filter table and the sets before it builds.
    let [iptables_save, ipset_save] = netns::in_netns(ns, || {
        let t = Instant::now();
        netns::run("iptables-legacy-save", &["-t", "filter"], None)?;
        let a = t.elapsed();
        let t = Instant::now();
        netns::run("ipset", &["save"], None)?;
        Ok([a, t.elapsed()])
    })?;
    let t = Instant::now();
    let (sets, rules) = kube_router(&resolution);
    let generate = t.elapsed();
    let (sets, rules, [ipset_restore, iptables_restore]) = netns::in_netns(ns, move || {
        let t = Instant::now();
        netns::run("ipset", &["restore", "-exist"], Some(sets.as_str()))?;
        let a = t.elapsed();
        let t = Instant::now();
        netns::run(
            "iptables-legacy-restore",
            &["-w", "5", "-T", "filter"],
            Some(rules.as_str()),
        )?;
        Ok((sets, rules, [a, t.elapsed()]))
    })?;
    let total = start.elapsed();
    if sets == last.sets && rules == last.rules {
        return Err(format!("{}: the kube-router input did not change", change.name()).into());
    }
    *last = KrState { sets, rules };
    Ok([
        total,
        resolved,
        generate,
        iptables_save,
        ipset_save,
        ipset_restore,
        iptables_restore,
    ])
}

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn span(v: &[f64]) -> String {
    let lo = v.iter().cloned().fold(f64::MAX, f64::min);
    let hi = v.iter().cloned().fold(f64::MIN, f64::max);
    format!("{:.2} ({lo:.2}–{hi:.2})", median(v))
}

/// One measured round.
struct Round {
    change: Change,
    ours: [Duration; 2],
    messages: usize,
    kr: [Duration; 7],
}

fn main() -> Res<()> {
    let rounds = env_or("SYNC_ROUNDS", 30);
    let limit = Duration::from_secs(env_or("SYNC_SECONDS", 300) as u64);
    println!("load average at start: {}", loadavg());
    let spec = Spec {
        pods: 10_000,
        policies: 1_000,
        local_pods: 110,
    };
    let base = cluster(spec);
    let key = NamespacedName::new("ns-0", "policy-100");
    if base.policies.get(&key).map(|p| &**p) != Some(&policy_100(8080)) {
        return Err("ns-0/policy-100 is not the policy this bench edits".into());
    }

    let mut lab = Lab::new()?;
    let ours_node = lab.add_node()?;
    let kr_node = lab.add_node()?;
    let (ours_ns, kr_ns) = (ours_node.netns().to_owned(), kr_node.netns().to_owned());

    // First install of both, from empty nodes.
    let mut ours = Ours {
        dp: NetlinkDataplane::new(Some(&ours_ns))?,
        resolver: Incremental::new(LOCAL_NODE),
        sets: BuildCache::default(),
    };
    let resolution = ours
        .resolver
        .resolve(&std::sync::Arc::new(base.clone()), None);
    let ruleset = build_cached(&resolution, &Options::default(), &mut ours.sets);
    let report = ours.dp.apply(&ruleset)?;
    println!(
        "ours: first install {:.1} ms ({} chains, {} rules, {} set elements, {} messages)",
        ms(report.duration),
        ruleset.chains.len(),
        ruleset.rule_count(),
        ruleset.element_count(),
        report.messages
    );
    let (sets, rules) = kube_router(&resolution);
    let count = |text: &str, prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    println!(
        "kube-router: {} sets, {} set entries, {} chains, {} rules; restore input {} + {} KiB",
        count(&sets, "swap "),
        count(&sets, "add "),
        count(&rules, ":"),
        count(&rules, "-A "),
        sets.len() / 1024,
        rules.len() / 1024
    );
    let t = Instant::now();
    netns::in_netns(&kr_ns, move || {
        netns::run("ipset", &["restore", "-exist"], Some(sets.as_str()))?;
        netns::run(
            "iptables-legacy-restore",
            &["-w", "5", "-T", "filter"],
            Some(rules.as_str()),
        )?;
        Ok(())
    })?;
    println!("kube-router: first install {:.1} ms", ms(t.elapsed()));
    drop((resolution, ruleset));

    let (mut ours_snap, mut kr_snap) = (base.clone(), base);
    let mut kr_last = KrState::default();
    let mut nth = [0usize; 3];
    let mut results: Vec<Round> = Vec::new();
    let started = Instant::now();
    for round in 0..WARMUP + rounds {
        if started.elapsed() > limit {
            println!(
                "stopped after {} measured rounds: SYNC_SECONDS={} reached",
                results.len(),
                limit.as_secs()
            );
            break;
        }
        let k = round % Change::ALL.len();
        let change = Change::ALL[k];
        let n = nth[k];
        nth[k] += 1;
        let (ours, kr) = if round.is_multiple_of(2) {
            let o = ours_sync(&mut ours, &mut ours_snap, change, n)?;
            (o, kr_sync(&kr_ns, &mut kr_snap, change, n, &mut kr_last)?)
        } else {
            let r = kr_sync(&kr_ns, &mut kr_snap, change, n, &mut kr_last)?;
            (ours_sync(&mut ours, &mut ours_snap, change, n)?, r)
        };
        eprintln!(
            "round {round} ({}): ours {:.2} ms, kube-router {:.2} ms",
            change.name(),
            ms(ours.0[0]),
            ms(kr[0])
        );
        if round >= WARMUP {
            results.push(Round {
                change,
                ours: ours.0,
                messages: ours.1,
                kr,
            });
        }
    }
    println!("load average at end: {}", loadavg());
    if results.is_empty() {
        return Err("no measured round".into());
    }
    print_report(&results);
    drop(ours);
    drop(lab);
    Ok(())
}

fn print_report(results: &[Round]) {
    println!("\nOne change at 10k pods / 1k policies, change to commit, ms: median (min–max)\n");
    println!("| change | rounds | ours | kube-router | kube-router / ours |");
    println!("|---|---|---|---|---|");
    let groups: Vec<(&str, Vec<&Round>)> = std::iter::once(("all", results.iter().collect()))
        .chain(Change::ALL.iter().map(|c| {
            (
                c.name(),
                results.iter().filter(|r| r.change == *c).collect(),
            )
        }))
        .collect();
    for (name, rs) in &groups {
        if rs.is_empty() {
            continue;
        }
        let ours: Vec<f64> = rs.iter().map(|r| ms(r.ours[0])).collect();
        let kr: Vec<f64> = rs.iter().map(|r| ms(r.kr[0])).collect();
        let ratio: Vec<f64> = kr.iter().zip(&ours).map(|(k, o)| k / o).collect();
        println!(
            "| {name} | {} | {} | {} | {} |",
            rs.len(),
            span(&ours),
            span(&kr),
            span(&ratio)
        );
    }
    let col = |f: &dyn Fn(&Round) -> f64| median(&results.iter().map(f).collect::<Vec<_>>());
    println!("\nWhere the time goes (all rounds, medians, ms):");
    println!(
        "  ours: change + snapshot copy + resolve + build {:.2}, netlink apply (plan, diff, commit) {:.2}; {:.0} messages per batch",
        col(&|r| ms(r.ours[1])),
        col(&|r| ms(r.ours[0]) - ms(r.ours[1])),
        col(&|r| r.messages as f64)
    );
    println!(
        "  kube-router: resolve {:.2}, generate {:.2}, iptables-save {:.2}, ipset save {:.2}, ipset restore {:.2}, iptables-restore {:.2}",
        col(&|r| ms(r.kr[1])),
        col(&|r| ms(r.kr[2])),
        col(&|r| ms(r.kr[3])),
        col(&|r| ms(r.kr[4])),
        col(&|r| ms(r.kr[5])),
        col(&|r| ms(r.kr[6]))
    );
    let restores: Vec<f64> = results
        .iter()
        .map(|r| (ms(r.kr[5]) + ms(r.kr[6])) / ms(r.ours[0]))
        .collect();
    println!(
        "  kube-router's two restores alone / ours (whole sync), per round: {}",
        span(&restores)
    );
}
