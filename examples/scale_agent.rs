//! Scale of the real agent: the `kube-nftpolicy controller` binary (the
//! DaemonSet's mode and defaults: gate from the Node, flow cutting, drop
//! logging) against a fake API serving a synthetic cluster
//! (`nftpolicy_testkit::synth`, 110 pods on the node), applying into a lab
//! node's network namespace, so the table goes into a real kernel.
//! Issue 14's goal: at 100k pods / 10k policies, the first full apply
//! under 2 s and the agent's VmHWM at most 128 MiB.
//!
//! ```sh
//! cargo build --release --bin kube-nftpolicy --example scale_agent
//! sudo target/release/examples/scale_agent      # or scripts/scale.sh
//! ```
//!
//! Root (lab namespaces). For each size (`SCALE_SIZES`, default
//! `10000,100000` pods; policies are a tenth): the fake API
//! (`scale_agent/api.rs`, real HTTP on 127.0.0.1, LIST pages and WATCH)
//! gets the cluster as API objects (`scale_agent/wire.rs`, about 4 KiB a
//! pod as a real API server sends them; `SCALE_LEAN=1`: only what policy
//! reads); the agent starts with a kubeconfig pointing at it; then:
//!
//! - first full apply: from the start of the process, and from the moment
//!   the fake served the last page of the last kind (the agent has the
//!   complete snapshot, bar decoding that page), to the kernel commit (the
//!   agent's `last_successful_sync_timestamp_seconds`, taken when the
//!   netlink batch's acknowledgement came back); the agent's own
//!   `sync_duration_seconds` (resolve, build, apply), `apply_duration_seconds`
//!   and `event_to_enforced_seconds`; CPU time by thread before and after
//!   the lists completed;
//! - memory: VmRSS sampled every 10 ms, VmHWM and VmRSS after the first
//!   apply, 2 s later, and after `SCALE_CHANGES` (6) single changes
//!   (`scale_agent/changes.rs`), each timed from the watch event to the
//!   commit;
//! - then `scale_agent breakdown <pods>` in a process of its own: each
//!   step of the first sync timed alone, with its memory
//!   (`scale_agent/breakdown.rs`).
//!
//! `SCALE_AGENT_ENV="MALLOC_ARENA_MAX=1"` adds variables to the agent's
//! environment, `SCALE_AGENT_ARGS="--no-log-drops"` arguments;
//! `KNP_AGENT_BIN` names another agent binary; `SCALE_TIMEOUT_SECS` (120)
//! bounds each wait; `SCALE_BREAKDOWN=0` skips the breakdown.
//! Every wait is bounded; the agent is stopped (SIGTERM, then SIGKILL) and
//! the namespaces are deleted when the run ends or fails.
#![allow(missing_docs)]

#[path = "scale_agent/agent.rs"]
mod agent;
#[path = "scale_agent/api.rs"]
mod api;
#[path = "scale_agent/breakdown.rs"]
mod breakdown;
#[path = "scale_agent/changes.rs"]
mod changes;
#[path = "scale_agent/procfs.rs"]
mod procfs;
#[path = "scale_agent/slim.rs"]
mod slim;
#[path = "scale_agent/wire.rs"]
mod wire;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent::{AgentProcess, Counters};
use api::{FakeApi, Res};
use nftpolicy_core::model::Snapshot;
use nftpolicy_lab::{Host, Lab};
use nftpolicy_testkit::synth::{cluster, Spec, LOCAL_NODE};
use serde_json::json;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The node's pod CIDRs on its Node object (the synthetic local pods are
/// spread over 10.64.0.0/14 and fd00:10:244::/64).
const POD_CIDRS: [&str; 2] = ["10.64.0.0/14", "fd00:10:244::/64"];
/// The agent's default conntrack mark of cut flows.
const CUT_MARK: u32 = 0x2000_0000;
/// The kinds whose complete lists make the agent's snapshot.
const LISTED: [Res; 3] = [Res::Namespaces, Res::Pods, Res::Policies];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The synthetic cluster of `pods` pods: a tenth as many policies, 110 local.
fn spec(pods: usize) -> Spec {
    Spec {
        pods,
        policies: pods / 10,
        local_pods: 110,
    }
}

/// What every size runs with (from the environment).
struct RunOptions {
    bin: PathBuf,
    lean: bool,
    changes: usize,
    timeout: Duration,
    agent_env: String,
    agent_args: String,
}

fn main() -> R<()> {
    let args: Vec<String> = std::env::args().collect();
    let lean = env_or("SCALE_LEAN", 0u8) == 1;
    if args.get(1).map(String::as_str) == Some("breakdown") {
        let pods = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(10_000);
        return breakdown::run(pods, lean);
    }
    if !nftpolicy_lab::gate::is_root() {
        return Err("scale_agent needs root (lab network namespaces)".into());
    }
    let sizes: Vec<usize> = std::env::var("SCALE_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let bin = match std::env::var("KNP_AGENT_BIN") {
        Ok(b) => PathBuf::from(b),
        Err(_) => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .ok_or("no directory above the example")?
            .join("kube-nftpolicy"),
    };
    if !bin.exists() {
        let hint = "cargo build --release --bin kube-nftpolicy, or set KNP_AGENT_BIN";
        return Err(format!("{} is missing: {hint}", bin.display()).into());
    }
    let opts = RunOptions {
        bin,
        lean,
        changes: env_or("SCALE_CHANGES", 6usize),
        timeout: Duration::from_secs(env_or("SCALE_TIMEOUT_SECS", 120u64)),
        agent_env: std::env::var("SCALE_AGENT_ENV").unwrap_or_default(),
        agent_args: std::env::var("SCALE_AGENT_ARGS").unwrap_or_default(),
    };
    println!("uptime at start: {}", uptime());
    for pods in sizes {
        run_one(pods, &opts)?;
        if env_or("SCALE_BREAKDOWN", 1u8) == 1 {
            let out = Command::new(std::env::current_exe()?)
                .args(["breakdown", &pods.to_string()])
                .stderr(Stdio::inherit())
                .output()?;
            print!("{}", String::from_utf8_lossy(&out.stdout));
            if !out.status.success() {
                return Err(format!("breakdown of {pods} pods failed: {}", out.status).into());
            }
        }
    }
    println!("uptime at end: {}", uptime());
    Ok(())
}

fn uptime() -> String {
    Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn ms(s: f64) -> String {
    format!("{:.0} ms", s * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Serves `s` as API objects, and this node's Node with its pod CIDRs.
fn load(api: &FakeApi, s: &Snapshot, lean: bool) {
    let ns = s.namespaces.values().enumerate();
    api.load(
        Res::Namespaces,
        ns.map(|(i, o)| wire::namespace(o, i as u64, lean)),
    );
    let pods = s.pods.values().enumerate();
    api.load(Res::Pods, pods.map(|(i, o)| wire::pod(o, i as u64, lean)));
    let policies = s.policies.values().enumerate();
    api.load(
        Res::Policies,
        policies.map(|(i, o)| wire::policy(o, i as u64, lean)),
    );
    api.load(
        Res::Nodes,
        [json!({"metadata": {"name": LOCAL_NODE},
                "spec": {"podCIDR": POD_CIDRS[0], "podCIDRs": POD_CIDRS}})],
    );
}

/// Times of the first apply.
struct First {
    /// The process was started.
    started: SystemTime,
    /// The fake wrote the last page of the last kind; and since the start.
    listed: SystemTime,
    listed_after: Duration,
    /// CPU by thread then.
    cpu_listed: std::collections::BTreeMap<String, f64>,
    /// `/metrics` once the first sync was counted.
    metrics: String,
}

/// Waits for the lists to complete and for the first apply of the agent
/// started at `started` (`t0`).
fn first_apply(
    agent: &mut AgentProcess,
    api: &FakeApi,
    opts: &RunOptions,
    (started, t0): (SystemTime, Instant),
) -> R<First> {
    let end = t0 + opts.timeout;
    let mut listed = None;
    while listed.is_none() && Instant::now() < end && agent.alive() {
        let done: Vec<_> = LISTED.iter().filter_map(|r| api.stats(*r).done).collect();
        if done.len() == LISTED.len() {
            let cpu = procfs::thread_cpu(agent.pid());
            listed = done.into_iter().max().map(|t| (t, t0.elapsed(), cpu));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let Some((listed, listed_after, cpu_listed)) = listed else {
        return Err(format!("the agent did not list everything:\n{}", agent.log_tail(20)).into());
    };
    // The dataplane thread counts the sync before the loop records
    // event_to_enforced: wait for both.
    let metrics = agent.until(Duration::from_millis(20), opts.timeout, |t| {
        let c = Counters::read(t);
        c.syncs >= 1.0 && c.e2e_count >= 1.0
    });
    let metrics = metrics.ok_or_else(|| format!("no first apply:\n{}", agent.log_tail(20)))?;
    Ok(First {
        started,
        listed,
        listed_after,
        cpu_listed,
        metrics,
    })
}

/// Prints where the first apply's time went.
fn report_times(f: &First, api: &FakeApi, cpu_first: &std::collections::BTreeMap<String, f64>) {
    let c = Counters::read(&f.metrics);
    let first_list = LISTED.iter().filter_map(|r| api.stats(*r).first).min();
    let first_list = unix(first_list.unwrap_or(f.started));
    for r in LISTED {
        let s = api.stats(r);
        let mb = s.bytes as f64 / (1 << 20) as f64;
        println!("  LIST {r:?}: {} pages, {mb:.1} MiB", s.pages);
    }
    let (started, listed) = (unix(f.started), unix(f.listed));
    println!(
        "start → first LIST request:             {}",
        ms(first_list - started)
    );
    println!(
        "first LIST → last page of the last kind: {}",
        ms(listed - first_list)
    );
    println!(
        "lists complete → kernel commit:         {}  (agent: sync {}, of which netlink apply {})",
        ms(c.last_sync - listed),
        ms(c.sync_sum),
        ms(c.apply_full)
    );
    println!(
        "start → kernel commit:                  {}  (agent: event_to_enforced {})",
        ms(c.last_sync - started),
        ms(c.e2e_sum)
    );
    let cpu_after = procfs::cpu_between(&f.cpu_listed, cpu_first);
    println!(
        "CPU, start → lists complete:            {}",
        procfs::cpu_text(&f.cpu_listed)
    );
    println!(
        "CPU, lists complete → first apply seen: {}",
        procfs::cpu_text(&cpu_after)
    );
    let g = |w: &str| {
        agent::metric(
            &f.metrics,
            &format!("kube_nftpolicy_objects{{what=\"{w}\"}}"),
        )
    };
    println!(
        "table: {} chains, {} rules, {} set elements; {} local pods, {} isolated",
        g("chains"),
        g("rules"),
        g("set_elements"),
        g("local_pods"),
        g("isolated_pods")
    );
}

/// Prints VmRSS over the first apply: when the lists completed, the
/// sampled peak and its phase, a coarse timeline.
fn report_rss(f: &First, sampler: &procfs::Sampler) {
    let commit = Counters::read(&f.metrics).last_sync - unix(f.started);
    let commit = Duration::from_secs_f64(commit.max(0.0));
    let samples = sampler.samples();
    let (peak_t, peak) = samples
        .iter()
        .copied()
        .max_by_key(|s| s.1)
        .unwrap_or_default();
    let phase = if peak_t <= f.listed_after {
        "while listing"
    } else if peak_t <= commit + Duration::from_millis(50) {
        "during the first sync"
    } else {
        "after the first commit"
    };
    println!(
        "VmRSS: {} when the lists completed; sampled peak {} at {:.2} s ({phase})",
        mib(sampler.at(f.listed_after).unwrap_or(0)),
        mib(peak),
        peak_t.as_secs_f64()
    );
    let step = (samples.len() / 16).max(1);
    let timeline: Vec<String> = samples
        .iter()
        .step_by(step)
        .map(|(t, r)| format!("{:.1}s {:.0}", t.as_secs_f64(), *r as f64 / 1024.0))
        .collect();
    println!("VmRSS MiB over time: {}", timeline.join(", "));
}

fn print_mem(what: &str, pid: u32) {
    let m = procfs::mem(pid).unwrap_or_default();
    println!("{what:<22} VmRSS {}, VmHWM {}", mib(m.rss), mib(m.hwm));
}

/// The chains of our table in the node's namespace, as nft lists them.
fn kernel_chains(lab: &Lab, node: &Host) -> R<usize> {
    let out = lab.nft(node, &["list", "chains", "inet"])?;
    Ok(out
        .lines()
        .filter(|l| l.trim_start().starts_with("chain "))
        .count())
}

fn run_one(pods: usize, opts: &RunOptions) -> R<()> {
    let spec = spec(pods);
    let lean = if opts.lean { " (lean objects)" } else { "" };
    println!(
        "\n== agent binary, {} pods / {} policies / {} on the node{lean} ==",
        spec.pods, spec.policies, spec.local_pods
    );
    let snapshot = cluster(spec);
    let mut api = FakeApi::start()?;
    load(&api, &snapshot, opts.lean);
    let mut lab = Lab::new()?;
    let node = lab.add_node()?;
    println!("load before: {}", uptime());
    let start = (SystemTime::now(), Instant::now());
    let mut agent = AgentProcess::start(opts, &api.url(), node.netns())?;
    let pid = agent.pid();
    let limit = opts.timeout * 4;
    let sampler = procfs::Sampler::start(pid, start.1, Duration::from_millis(10), limit);
    println!("agent pid {pid}: {}", opts.bin.display());
    let first = first_apply(&mut agent, &api, opts, start)?;
    let cpu_first = procfs::thread_cpu(pid);
    print_mem("after the first apply:", pid);
    report_times(&first, &api, &cpu_first);
    report_rss(&first, &sampler);
    std::thread::sleep(Duration::from_secs(2));
    print_mem("2 s later:", pid);
    println!(
        "kernel: {} chains in the node's namespace",
        kernel_chains(&lab, &node)?
    );
    changes::run(&mut agent, &api, &snapshot, opts)?;
    print_mem(&format!("after {} changes:", opts.changes), pid);
    println!("load at the end: {}", uptime());
    println!("agent: {}", agent.stop());
    drop(sampler);
    api.stop();
    drop(lab);
    Ok(())
}
