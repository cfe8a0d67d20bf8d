//! Where the first sync's time and memory go, step by step, in a process
//! of its own (`scale_agent breakdown <pods>`, started by `scale_agent`):
//! the same steps as the agent's dataplane thread (`src/agent/sync/worker.rs`:
//! resolve, build with the gate and cut rule, add drop logging, one netlink
//! apply into a lab node), plus the copy of the snapshot that
//! `Stores::take` makes, and the decoding of the LIST pages the agent
//! receives (serde into `k8s-openapi` objects, then `nftpolicy_source::api`)
//! with a check that it gives back the synthetic snapshot exactly.
//!
//! Times are single-threaded, without the agent's other threads beside
//! them. Memory is VmRSS growth after each step with everything of the
//! earlier steps still held: what that step's output keeps resident.

use std::time::Instant;

use nftpolicy_core::model::Snapshot;
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::build::{build_with, Options};
use nftpolicy_core::ruleset::guard::Gate;
use nftpolicy_core::ruleset::logging::{add_logging, LogOptions, DEFAULT_GROUP};
use nftpolicy_core::ruleset::{Limit, DEFAULT_BURST};
use nftpolicy_lab::Lab;
use nftpolicy_nft::{Dataplane, NetlinkDataplane};
use nftpolicy_testkit::synth::{cluster, LOCAL_NODE};

use super::api::{Res, Store};
use super::{procfs, slim, spec, wire, CUT_MARK, POD_CIDRS, R};

fn rss() -> u64 {
    procfs::mem(std::process::id()).unwrap_or_default().rss
}

/// Prints one step: time, and VmRSS growth since `before`.
fn step(name: &str, started: Instant, before: u64) -> u64 {
    let took = started.elapsed();
    let now = rss();
    println!(
        "  {name:<42} {:>9.1} ms   RSS {:>+8.1} MiB",
        took.as_secs_f64() * 1e3,
        (now as f64 - before as f64) / 1024.0
    );
    now
}

/// The drop logging the agent turns on by default (`--log-drops-rate
/// 10/second --log-burst 5`).
pub fn log_options() -> LogOptions {
    let rate: Limit = "10/second".parse().expect("a rate");
    LogOptions {
        group: DEFAULT_GROUP,
        drops: Some(rate.burst(DEFAULT_BURST)),
        allows: None,
    }
}

/// The breakdown for a cluster of `pods` pods.
pub fn run(pods: usize, lean: bool) -> R<()> {
    let spec = spec(pods);
    println!(
        "breakdown, {} pods / {} policies / {} local (one thread, no agent):",
        spec.pods, spec.policies, spec.local_pods
    );
    let base = rss();
    println!(
        "  {:<42} {:>12}   RSS {:>8.1} MiB",
        "process at start",
        "",
        base as f64 / 1024.0
    );
    let t = Instant::now();
    let snapshot = cluster(spec);
    let r = step("synthetic snapshot (one copy)", t, base);
    let t = Instant::now();
    let taken = snapshot.clone();
    let r = step("snapshot clone (Stores::take)", t, r);
    let t = Instant::now();
    let resolution = resolve(&taken, LOCAL_NODE);
    let r = step("resolve", t, r);

    let mut lab = Lab::new()?;
    let node = lab.add_node()?;
    let opts = Options {
        gate: Some(Gate {
            pod_cidrs: POD_CIDRS.iter().map(|c| c.parse().expect("CIDR")).collect(),
            node_addrs: lab.addresses(&node).to_vec(),
        }),
        cut_mark: Some(CUT_MARK),
    };
    let t = Instant::now();
    let mut ruleset = build_with(&resolution, &opts);
    let r = step("build (gate, cut rule)", t, r);
    let t = Instant::now();
    let log_map = add_logging(&mut ruleset, &resolution, &log_options());
    let r = step("add drop logging", t, r);
    let mut dp = NetlinkDataplane::new(Some(node.netns()))?;
    let t = Instant::now();
    let report = dp.apply(&ruleset)?;
    let r = step("netlink apply, full (encode, send, commit)", t, r);
    println!(
        "      {} messages, {:.1} MiB batch; {} chains, {} rules, {} set elements",
        report.messages,
        report.bytes as f64 / (1 << 20) as f64,
        ruleset.chains.len(),
        ruleset.rule_count(),
        ruleset.element_count()
    );
    let t = Instant::now();
    let again = dp.apply(&ruleset)?;
    step(
        &format!("netlink apply again ({})", again.kind.as_str()),
        t,
        r,
    );
    // What the pool saves: the pods' labels as they are held (shared, a
    // count each), and the same labels as one copy per pod.
    let t = Instant::now();
    let maps: Vec<_> = taken.pods.values().map(|p| p.labels.clone()).collect();
    let r = step("every pod's labels cloned (shared sets)", t, r);
    let t = Instant::now();
    let flat: Vec<Vec<(String, String)>> = taken
        .pods
        .values()
        .map(|p| {
            p.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect();
    step("the same labels, one copy per pod", t, r);
    drop((maps, flat));
    let hwm = procfs::mem(std::process::id()).unwrap_or_default().hwm;
    println!(
        "  VmHWM of this process so far: {:.1} MiB",
        hwm as f64 / 1024.0
    );
    drop((dp, log_map, ruleset, resolution, taken));
    drop(lab);
    decode(&snapshot, lean)
}

/// Serves the snapshot's objects as LIST pages of 500 and reads them back
/// the way the agent does; checks the round trip.
fn decode(snapshot: &Snapshot, lean: bool) -> R<()> {
    let mut stores: Vec<(Res, Store)> = Vec::new();
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        n
    };
    let mut ns = Store::default();
    for o in snapshot.namespaces.values() {
        ns.insert(wire::namespace(o, next(), lean), 1);
    }
    stores.push((Res::Namespaces, ns));
    let mut pods = Store::default();
    for o in snapshot.pods.values() {
        pods.insert(wire::pod(o, next(), lean), 1);
    }
    stores.push((Res::Pods, pods));
    let mut pol = Store::default();
    for o in snapshot.policies.values() {
        pol.insert(wire::policy(o, next(), lean), 1);
    }
    stores.push((Res::Policies, pol));
    let mut back = Snapshot::default();
    for (res, store) in &stores {
        let pages = store.pages(*res, 500);
        let bytes: usize = pages.iter().map(Vec::len).sum();
        let t = Instant::now();
        wire::read_pages(&pages, &mut back)?;
        println!(
            "  decode + convert {:?}: {:>9.1} ms for {:.1} MiB of JSON in {} pages",
            res,
            t.elapsed().as_secs_f64() * 1e3,
            bytes as f64 / (1 << 20) as f64,
            pages.len()
        );
    }
    if back != *snapshot {
        return Err("the LIST pages do not read back as the synthetic snapshot".into());
    }
    println!("  round trip: the pages read back as the synthetic snapshot, object for object");
    let pages = stores[1].1.pages(Res::Pods, 500);
    let mut slim_back = Snapshot::default();
    let t = Instant::now();
    slim::read_pod_pages(&pages, &mut slim_back)?;
    println!(
        "  decode + convert Pods, slim type (proposed): {:>9.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    if slim_back.pods != snapshot.pods {
        return Err("the slim decoding does not give the same pods".into());
    }
    Ok(())
}
