//! Load on a real API server: 1,000 pods and 200 policies created through
//! the API, then a stream of label changes and policy edits, each one
//! followed to the kernel commit on the node that must change and to the
//! first packet that obeys it.
//!
//! - 964 pods live on eight virtual nodes (`node3`..`node10`: Node objects
//!   with pod CIDRs and no runner); they are created bound and their status
//!   (Running, one address per family from the node's CIDRs) is written
//!   here, as a kubelet would. 36 pods run on the two real nodes (networked
//!   by the runners); six pairs of them carry the probes (see
//!   `cluster_load/workload.rs`).
//! - Each change is an API write (a merge patch: a client's `access` label,
//!   or the allow of an ingress or an egress policy); one at a time, and
//!   every sixth round a burst of six (one per pair, back to back).
//! - API write → kernel commit: an nf_tables event monitor in the node's
//!   namespace (`cluster_load/nlmon.rs`) stamps every commit as it happens;
//!   the change's commit is the first after the write that adds or removes
//!   the client's address in a set (label) or rewrites the edited policy's
//!   chain (edit). No polling; resolution well under a millisecond.
//! - API write → first packet that obeys: overlapping TCP connection
//!   attempts from the client, one started every 2 ms by one thread with
//!   non-blocking connects (`cluster_load/prober.rs`); the send time of the
//!   first SYN that gets through (opening) or is dropped (closing), and at
//!   least one earlier SYN must have shown the old state. Resolution: 2 ms.
//! - The agent's own `kube_nftpolicy_event_to_enforced_seconds` (watch event
//!   arrival → apply return) is read around each single change as a cross-check.
//!
//! The agents run as the DaemonSet runs them (default flags: the gate of
//! unknown pod addresses, cutting of flows no longer allowed, and drop
//! logging, all on).
//!
//! The test asserts correctness only (each change reaches the kernel and
//! real packets, both families, within 10 s; the final tables are what
//! `kube-nftpolicy render` makes of the same objects, the node guard
//! aside, whose sets are checked against the running pods) and PRINTS the
//! figures (about 100 s on 2 cores, debug build), as root:
//!
//! ```text
//! KNP_CLUSTER_BIN=$(./scripts/cluster-build.sh | tail -n 1) KNP_REQUIRE_KERNEL=1 \
//!     cargo test --test cluster_load -- --nocapture
//! ```
//!
//! The figures of docs/performance.md: a release build, and
//! `KNP_LOAD_REPORT=1`, which runs four times as many changes and prints
//! every one (the runner binary must be built for release too):
//!
//! ```text
//! cargo build --release -p nftpolicy-cluster --bins
//! KNP_LOAD_REPORT=1 KNP_CLUSTER_BIN=$(./scripts/cluster-build.sh | tail -n 1) KNP_REQUIRE_KERNEL=1 \
//!     cargo test --release --test cluster_load -- --nocapture
//! ```

#[path = "cluster_support/mod.rs"]
mod cluster_support;
#[path = "cluster_load/nlmon.rs"]
mod nlmon;
#[path = "cluster_load/prober.rs"]
mod prober;
#[path = "cluster_load/report.rs"]
mod report;
#[path = "cluster_load/workload.rs"]
mod workload;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;

use cluster_support::Cluster;
use nlmon::{Commit, Monitor};
use workload::{Pair, Switch};

/// Every change must reach the kernel and the packets within this.
const DEADLINE: Duration = Duration::from_secs(10);
/// Concurrent API requests while creating the objects.
const CREATE_CONCURRENCY: usize = 16;
/// Creating every object takes at most this.
const CREATE_LIMIT: Duration = Duration::from_secs(180);
/// Rounds of 5 single changes and one burst of 6 (11 changes per cycle).
const CYCLES: usize = 10;
/// `KNP_LOAD_REPORT=1`.
const REPORT_CYCLES: usize = 40;
/// No commit on either node for this long before a round starts.
const QUIET: Duration = Duration::from_millis(300);

fn report_mode() -> bool {
    std::env::var("KNP_LOAD_REPORT").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// One measured change.
#[derive(Debug, Clone)]
struct Sample {
    pair: usize,
    /// The pair's connectivity after the change.
    open: bool,
    /// Part of a burst of several writes.
    burst: bool,
    /// The write's round trip (request sent → response read).
    api: Duration,
    /// Write sent → kernel commit on the enforcing node.
    commit: Duration,
    /// Write sent → send time of the first obeying SYN.
    obey: Duration,
    /// The agent's event_to_enforced for this change (single changes only).
    agent: Option<Duration>,
    /// The agent's sync_duration (resolve, build, apply) for it (same).
    sync: Option<Duration>,
    /// Messages in the commit, and its generation.
    messages: usize,
    generation: u32,
    /// Connection attempts the prober made.
    attempts: usize,
}

#[test]
fn load_event_to_enforced_on_a_real_api_server() {
    nftpolicy_lab::kernel_test!("cluster_load");
    let started = Instant::now();
    let cycles = if report_mode() { REPORT_CYCLES } else { CYCLES };
    // The agents check their incremental resolution against a full one
    // after every sync (at most once a second): none may differ.
    let c = Cluster::up(5, 2, "--resolve-check-secs 1");
    let up = started.elapsed();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = rt.block_on(admin_client(&c.kubeconfig));

    // ---- 1,000 pods and 200 policies through the API.
    let t = Instant::now();
    let real = workload::real_pods();
    let virt = workload::virtual_pods(real.len());
    rt.block_on(bounded(CREATE_LIMIT, "creating the objects", async {
        create_all(&client, &real, &virt).await
    }));
    let created = t.elapsed();
    println!(
        "created {} namespaces, {} virtual nodes, {} pods ({} real, {} virtual, with status), {} policies in {:.1} s",
        workload::NAMESPACES,
        workload::VIRTUAL_NODES,
        real.len() + virt.len(),
        real.len(),
        virt.len(),
        workload::POLICIES,
        created.as_secs_f64()
    );
    for (ns, pod) in &real {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        c.wait_running(ns, &[name], Duration::from_secs(120));
    }
    let monitors = [
        Monitor::start(&c.node_netns(1)),
        Monitor::start(&c.node_netns(2)),
    ];
    wait_for_agents(&c, Duration::from_secs(120));
    for m in &monitors {
        m.wait_quiet(Duration::from_secs(1), Duration::from_secs(30));
    }
    let settled = t.elapsed();
    let pairs = workload::pairs();
    let ends: Vec<Ends> = pairs.iter().map(|p| Ends::of(&c, p)).collect();
    // Each pair starts as the policies say.
    for (p, e) in pairs.iter().zip(&ends) {
        let give_up = Instant::now() + Duration::from_secs(30);
        prober::start(&e.client_netns, e.server_v4, p.open_at_start, give_up)
            .join()
            .expect("probe thread")
            .unwrap_or_else(|err| panic!("{} at the start: {err}", p.label()));
        confirm(p, e, p.open_at_start);
    }
    let mut sizes = vec![format!(
        "{} pods ({} on {} virtual nodes, {} on node1 and node2), {} policies, {} namespaces",
        real.len() + virt.len(),
        virt.len(),
        workload::VIRTUAL_NODES,
        real.len(),
        workload::POLICIES,
        workload::NAMESPACES
    )];
    sizes.extend((1..=2).map(|n| {
        let text = report::metrics(&c.node_netns(n));
        let gauges: Vec<String> = report::objects(&text)
            .iter()
            .map(|(w, v)| format!("{w} {v}"))
            .collect();
        format!("node{n}: {}", gauges.join(", "))
    }));
    for s in &sizes {
        println!("{s}");
    }

    // ---- The change stream.
    let mut state: Vec<bool> = pairs.iter().map(|p| p.open_at_start).collect();
    let mut samples: Vec<Sample> = Vec::new();
    let commits_before: Vec<usize> = monitors.iter().map(|m| m.commits().len()).collect();
    let load_before = loadavg();
    let stream_start = Instant::now();
    let mut singles = 0usize;
    for round in 0..cycles * 6 {
        let batch: Vec<usize> = if round % 6 == 5 {
            (0..pairs.len()).collect()
        } else {
            singles += 1;
            vec![(singles - 1) % pairs.len()]
        };
        for m in &monitors {
            m.wait_quiet(QUIET, Duration::from_secs(5));
        }
        let measured = change(
            &c, &rt, &client, &monitors, &pairs, &ends, &mut state, &batch,
        );
        samples.extend(measured);
    }
    let stream = stream_start.elapsed();
    sizes.push(format!(
        "load average (1 min) at the start of the stream {load_before}, at its end {}",
        loadavg()
    ));

    let commits: Vec<usize> = monitors
        .iter()
        .zip(&commits_before)
        .map(|(m, b)| m.commits().len() - b)
        .collect();
    let agents: Vec<String> = (1..=2)
        .map(|n| {
            let text = report::metrics(&c.node_netns(n));
            let (count, sum) = report::event_to_enforced(&text);
            let mean = |name: &str, labels: &str| {
                let sum = report::sample(&text, &format!("{name}_sum{labels}"));
                let count = report::sample(&text, &format!("{name}_count{labels}"));
                format!("{count} x {:.1} ms", sum / count.max(1.0) * 1000.0)
            };
            format!(
                "node{n} since start: event_to_enforced {count} x {:.1} ms; syncs {}; \
                 incremental applies {}",
                sum / count.max(1) as f64 * 1000.0,
                mean("kube_nftpolicy_sync_duration_seconds", ""),
                mean(
                    "kube_nftpolicy_apply_duration_seconds",
                    "{kind=\"incremental\"}"
                ),
            )
        })
        .collect();

    print_report(
        &samples,
        &pairs,
        &sizes,
        &agents,
        &commits,
        [up, created, settled, stream, started.elapsed()],
    );

    // KNP_LOAD_LOGS=DIR keeps the agents' and runners' logs (the cluster's
    // directory goes with it), e.g. with RUST_LOG=info,kube_nftpolicy=debug.
    if let Some(dir) = std::env::var_os("KNP_LOAD_LOGS") {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).expect("KNP_LOAD_LOGS directory");
        for f in std::fs::read_dir(c.place.dir.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::copy(f.path(), dir.join(f.file_name()));
        }
    }

    // ---- The end state: what `render` makes of the same objects.
    for m in &monitors {
        m.wait_quiet(Duration::from_secs(1), Duration::from_secs(10));
    }
    let t = Instant::now();
    let checked = check_against_render(&c);
    println!("{checked} (checked in {:.1} s)", t.elapsed().as_secs_f64());
    let overflows: usize = monitors.iter().map(Monitor::overflows).sum();
    assert_eq!(overflows, 0, "the nf_tables monitor lost events");
    for n in 1..=2u8 {
        let text = report::metrics(&c.node_netns(n));
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .map_or(0.0, |v| v.trim().parse().expect("a metric value"))
        };
        let checks = value("kube_nftpolicy_resolve_checks_total");
        let incremental = value("kube_nftpolicy_resolves_total{kind=\"incremental\"}");
        println!("node{n}: {incremental} incremental resolves, {checks} checks");
        assert!(
            incremental > 0.0 && checks > 0.0,
            "node{n} resolved incrementally and checked"
        );
        assert_eq!(
            value("kube_nftpolicy_resolve_check_differences_total"),
            0.0,
            "node{n}: the incremental resolution differed from a full one"
        );
    }
}

/// The 1-minute load average (the machine is shared).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// A pair's addresses and namespaces, from the runners' records.
struct Ends {
    client_netns: String,
    client_v4: [u8; 4],
    server_name: String,
    server_v4: SocketAddr,
    server_v6: SocketAddr,
}

impl Ends {
    fn of(c: &Cluster, p: &Pair) -> Ends {
        let find = |(ns, name): &(String, String)| {
            nftpolicy_cluster::state::find(&c.place.dir, ns, name)
                .unwrap_or_else(|| panic!("{ns}/{name} has no network"))
        };
        let (client, server) = (find(&p.client), find(&p.server));
        let v4 = |ips: &[IpAddr]| ips.iter().copied().find(IpAddr::is_ipv4).expect("IPv4");
        let v6 = |ips: &[IpAddr]| ips.iter().copied().find(IpAddr::is_ipv6).expect("IPv6");
        let client_v4 = match v4(&client.ips) {
            IpAddr::V4(a) => a.octets(),
            IpAddr::V6(_) => unreachable!(),
        };
        Ends {
            client_netns: client.netns,
            client_v4,
            server_name: p.server.1.clone(),
            server_v4: SocketAddr::new(v4(&server.ips), workload::HTTP),
            server_v6: SocketAddr::new(v6(&server.ips), workload::HTTP),
        }
    }
}

/// One round: flips every pair of `batch` (writes back to back), then
/// measures each change. Panics when one is not enforced within DEADLINE.
#[allow(clippy::too_many_arguments)]
fn change(
    c: &Cluster,
    rt: &tokio::runtime::Runtime,
    client: &Client,
    monitors: &[Monitor; 2],
    pairs: &[Pair],
    ends: &[Ends],
    state: &mut [bool],
    batch: &[usize],
) -> Vec<Sample> {
    let burst = batch.len() > 1;
    let histograms = |n: u8| {
        let text = report::metrics(&c.node_netns(n));
        (
            report::event_to_enforced(&text),
            report::sync_duration(&text),
        )
    };
    let before: Vec<_> = (1..=2u8).map(histograms).collect();
    // Probes run from before the write.
    let give_up = Instant::now() + DEADLINE;
    let probes: Vec<_> = batch
        .iter()
        .map(|&i| prober::start(&ends[i].client_netns, ends[i].server_v4, !state[i], give_up))
        .collect();
    std::thread::sleep(Duration::from_millis(5));
    let mut writes = Vec::new();
    for &i in batch {
        state[i] = !state[i];
        let (kind, ns, name, patch) = workload::switch_patch(&pairs[i], state[i]);
        let sent = Instant::now();
        rt.block_on(bounded(DEADLINE, "a PATCH", async {
            merge_patch(client, kind, &ns, &name, &patch).await
        }));
        writes.push((sent, sent.elapsed()));
    }
    let mut out = Vec::new();
    for (k, (&i, probe)) in batch.iter().zip(probes).enumerate() {
        let (p, e, open) = (&pairs[i], &ends[i], state[i]);
        let (sent, api) = writes[k];
        let node = p.enforcing_node();
        let edited = p.edited_chain();
        let want = |cm: &Commit| match &edited {
            None => cm.element(&e.client_v4, open),
            Some(chain) => cm.chain_ending(chain),
        };
        let commit = monitors[usize::from(node) - 1]
            .wait_for(sent, sent + DEADLINE, want)
            .unwrap_or_else(|| {
                panic!(
                    "{} -> {}: no commit on node{node} within {DEADLINE:?}",
                    p.label(),
                    if open { "open" } else { "closed" }
                )
            });
        let obeyed = probe
            .join()
            .expect("probe thread")
            .unwrap_or_else(|err| panic!("{} -> open={open}: {err}", p.label()));
        confirm(p, e, open);
        let at = commit.at.expect("a commit has a time");
        assert!(
            obeyed.at > sent,
            "{}: the first obeying packet went before the write",
            p.label()
        );
        assert!(
            obeyed.before > 0,
            "{}: the probe saw no packet in the old state (it started too late)",
            p.label()
        );
        out.push(Sample {
            pair: i,
            open,
            burst,
            api,
            commit: at - sent,
            obey: obeyed.at - sent,
            agent: None,
            sync: None,
            messages: commit.messages,
            generation: commit.generation,
            attempts: obeyed.attempts,
        });
    }
    // The agent's own figures, when the change was one sync of its node.
    if !burst {
        let node = pairs[batch[0]].enforcing_node();
        let (e2e, sync) = histograms(node);
        let (e0, s0) = before[usize::from(node) - 1];
        let one = |(c1, s1): (u64, f64), (c0, s0): (u64, f64)| {
            (c1 - c0 == 1).then(|| Duration::from_secs_f64((s1 - s0).max(0.0)))
        };
        out[0].agent = one(e2e, e0);
        out[0].sync = one(sync, s0);
    }
    out
}

/// Real requests in both families get the wanted answer (the server's
/// name, or none), retried until DEADLINE.
fn confirm(p: &Pair, e: &Ends, open: bool) {
    let give_up = Instant::now() + DEADLINE;
    for to in [e.server_v4, e.server_v6] {
        loop {
            let timeout = Duration::from_millis(if open { 1000 } else { 200 });
            let got = nftpolicy_lab::request_from(
                &e.client_netns,
                to,
                nftpolicy_lab::Proto::Tcp,
                timeout,
            );
            let ok = match &got {
                Ok(name) => open && *name == e.server_name,
                Err(_) => !open,
            };
            if ok {
                break;
            }
            assert!(
                Instant::now() < give_up,
                "{} to {to}: want {}, got {got:?} after {DEADLINE:?}",
                p.label(),
                if open { "an answer" } else { "none" }
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Both agents have listed and applied every object.
fn wait_for_agents(c: &Cluster, deadline: Duration) {
    let give_up = Instant::now() + deadline;
    for n in 1..=2u8 {
        loop {
            let text = report::metrics(&c.node_netns(n));
            let objects = report::objects(&text);
            let get = |w: &str| objects.iter().find(|(k, _)| *k == w).map_or(0, |o| o.1);
            if get("pods") >= workload::PODS as u64 && get("policies") == workload::POLICIES as u64
            {
                break;
            }
            assert!(
                Instant::now() < give_up,
                "node{n}'s agent does not see every object after {deadline:?}: {objects:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `kube-nftpolicy render` of `kubectl get ns,pods,networkpolicies -A -o
/// yaml` equals each node's table (objects in any order, counters aside),
/// but for the node guard, which `render` does not print: when the agent
/// runs with its gate (the default), the gate's sets hold the node's pod
/// CIDRs and exactly the addresses of the pods running on it (and the
/// node's own). Returns what was checked, for the report.
fn check_against_render(c: &Cluster) -> String {
    let yaml = c.k(&[
        "get",
        "namespaces,pods,networkpolicies",
        "-A",
        "-o",
        "yaml",
        "--request-timeout=60s",
    ]);
    let file = c.place.dir.join("cluster_load-objects.yaml");
    std::fs::write(&file, yaml).expect("write the objects");
    let running = nftpolicy_cluster::state::all(&c.place.dir);
    let mut gated = Vec::new();
    // Both renders at once (two cores).
    let renders: Vec<_> = (1..=2u8)
        .map(|n| {
            Command::new(env!("CARGO_BIN_EXE_kube-nftpolicy"))
                .arg("render")
                .arg("-f")
                .arg(&file)
                .args(["--node", &format!("node{n}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run kube-nftpolicy render")
        })
        .collect();
    for (n, render) in (1..=2u8).zip(renders) {
        let out = render.wait_with_output().expect("kube-nftpolicy render");
        assert!(
            out.status.success(),
            "render failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table = c.nft(n);
        let want = report::normalise(&String::from_utf8_lossy(&out.stdout));
        let got = report::normalise(&table);
        assert!(
            want == got,
            "node{n}: the table differs from `kube-nftpolicy render`: {}",
            report::first_difference(&want, &got)
        );
        let node = format!("node{n}");
        let local: Vec<&nftpolicy_cluster::state::PodRecord> =
            running.iter().filter(|r| r.node == node).collect();
        let sets = report::guard_elements(&table);
        for (set, elements) in &sets {
            let v6 = set.ends_with("v6");
            let mut got: Vec<(String, String)> = elements
                .iter()
                .filter(|(_, comment)| comment != "this node")
                .cloned()
                .collect();
            got.sort();
            let mut want: Vec<(String, String)> = if set.starts_with("local-pod-cidrs-") {
                let cidr = if v6 {
                    format!("fd00:10:244:{n}::/64")
                } else {
                    format!("10.244.{n}.0/24")
                };
                vec![(cidr, "pod CIDR of this node".into())]
            } else {
                local
                    .iter()
                    .flat_map(|r| {
                        r.ips
                            .iter()
                            .filter(|ip| ip.is_ipv6() == v6)
                            .map(|ip| (ip.to_string(), format!("{}/{}", r.namespace, r.name)))
                    })
                    .collect()
            };
            want.sort();
            assert!(
                got == want,
                "node{n}: the gate's set {set} holds {got:?}, not {want:?}"
            );
        }
        if !sets.is_empty() {
            gated.push(format!("node{n}: {} local pods", local.len()));
        }
    }
    if gated.is_empty() {
        "both tables equal `kube-nftpolicy render` of the same objects (no gate)".into()
    } else {
        format!(
            "both tables equal `kube-nftpolicy render` of the same objects, and the gate's sets \
             hold each node's pod CIDRs and running pods ({})",
            gated.join(", ")
        )
    }
}

async fn admin_client(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read the admin kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(cfg).expect("kube client")
}

/// `fut`, or a panic naming `what` after `limit`.
async fn bounded<T>(limit: Duration, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than {limit:?}"))
}

async fn merge_patch(client: &Client, kind: &str, ns: &str, name: &str, patch: &Value) {
    let pp = PatchParams::default();
    let r = match kind {
        "pod" => Api::<Pod>::namespaced(client.clone(), ns)
            .patch(name, &pp, &Patch::Merge(patch))
            .await
            .map(drop),
        _ => Api::<NetworkPolicy>::namespaced(client.clone(), ns)
            .patch(name, &pp, &Patch::Merge(patch))
            .await
            .map(drop),
    };
    r.unwrap_or_else(|e| panic!("patch {kind} {ns}/{name}: {e}"));
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// Namespaces, virtual nodes, policies, the real pods, then the virtual
/// pods and their status, `CREATE_CONCURRENCY` requests at a time.
async fn create_all(client: &Client, real: &[(String, Value)], virt: &[workload::VirtualPod]) {
    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in workload::namespaces() {
        namespaces
            .create(&pp, &typed(&ns))
            .await
            .expect("namespace");
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for n in 3..3 + workload::VIRTUAL_NODES {
        let (node, status) = workload::virtual_node(n);
        let name = format!("node{n}");
        nodes.create(&pp, &typed(&node)).await.expect("node");
        nodes
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("node status");
    }
    futures::stream::iter(workload::policies())
        .map(|(ns, p)| {
            let api = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
            async move { api.create(&PostParams::default(), &typed(&p)).await }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .expect("create the policies");
    futures::stream::iter(real)
        .map(|(ns, p)| {
            let api = Api::<Pod>::namespaced(client.clone(), ns);
            async move { api.create(&PostParams::default(), &typed(p)).await }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .expect("create the real pods");
    futures::stream::iter(virt)
        .map(|v| {
            let api = Api::<Pod>::namespaced(client.clone(), &v.namespace);
            async move {
                api.create(&PostParams::default(), &typed(&v.pod)).await?;
                api.patch_status(&v.name, &PatchParams::default(), &Patch::Merge(&v.status))
                    .await
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .expect("create the virtual pods");
}

fn print_report(
    samples: &[Sample],
    pairs: &[Pair],
    sizes: &[String],
    agents: &[String],
    commits: &[usize],
    [up, created, settled, stream, total]: [Duration; 5],
) {
    let pick = |f: &dyn Fn(&Sample) -> bool, g: &dyn Fn(&Sample) -> Option<Duration>| {
        samples
            .iter()
            .filter(|s| f(s))
            .filter_map(g)
            .collect::<Vec<Duration>>()
    };
    let all = |_: &Sample| true;
    let single = |s: &Sample| !s.burst;
    let burst = |s: &Sample| s.burst;
    let label = |s: &Sample| pairs[s.pair].switch == Switch::Label;
    let edit = |s: &Sample| pairs[s.pair].switch != Switch::Label;
    let commit = |s: &Sample| Some(s.commit);
    let obey = |s: &Sample| Some(s.obey);
    let mut out = String::new();
    let mut say = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    say(String::new());
    say(format!(
        "== event to enforced on a real API server (kube-apiserver v1.36.3, agent defaults: \
         debounce 20 ms, min interval 100 ms; {} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    ));
    for s in sizes {
        say(format!("  {s}"));
    }
    say(format!(
        "{} changes: {} single, {} in bursts of {}; commits during the stream: node1 {}, node2 {}",
        samples.len(),
        samples.iter().filter(|s| !s.burst).count(),
        samples.iter().filter(|s| s.burst).count(),
        pairs.len(),
        commits[0],
        commits[1]
    ));
    say(report::header());
    say(report::line(
        "API write -> kernel commit",
        &pick(&all, &commit),
    ));
    say(report::line(
        "API write -> first obeying packet",
        &pick(&all, &obey),
    ));
    say(report::line(
        "  single changes: -> commit",
        &pick(&single, &commit),
    ));
    say(report::line(
        "  single changes: -> first packet",
        &pick(&single, &obey),
    ));
    say(report::line(
        "  in bursts: -> commit",
        &pick(&burst, &commit),
    ));
    say(report::line(
        "  in bursts: -> first packet",
        &pick(&burst, &obey),
    ));
    say(report::line(
        "  label changes: -> commit",
        &pick(&label, &commit),
    ));
    say(report::line(
        "  policy edits: -> commit",
        &pick(&edit, &commit),
    ));
    say(report::line(
        "agent metric: watch event -> commit (singles)",
        &pick(&single, &|s: &Sample| s.agent),
    ));
    say(report::line(
        "  of which the sync (resolve, build, apply)",
        &pick(&single, &|s: &Sample| s.sync),
    ));
    say(report::line(
        "  of which waiting (debounce, wake-ups)",
        &pick(&single, &|s: &Sample| s.agent?.checked_sub(s.sync?)),
    ));
    // The agent's figure ends when its apply returns, just after the
    // commit: the difference is a little short of the watch delay.
    say(report::line(
        "API write -> agent's watch event (estimate)",
        &pick(&single, &|s: &Sample| {
            Some(s.commit.saturating_sub(s.agent?))
        }),
    ));
    say(report::line(
        "commit -> first obeying packet",
        &pick(&all, &|s: &Sample| Some(s.obey.saturating_sub(s.commit))),
    ));
    let early: Vec<Duration> = samples
        .iter()
        .filter_map(|s| s.commit.checked_sub(s.obey))
        .filter(|d| !d.is_zero())
        .collect();
    if let Some(most) = early.iter().max() {
        say(format!(
            "  (0 for {} changes whose first obeying SYN left up to {} before the monitor \
             read the commit: the kernel uses the new rules before it sends their events)",
            early.len(),
            report::ms(*most)
        ));
    }
    say(report::line(
        "API write round trip (PATCH)",
        &pick(&all, &|s: &Sample| Some(s.api)),
    ));
    say(format!(
        "probe resolution {:?} (one SYN every period; a drop = no handshake in {:?})",
        prober::PERIOD,
        prober::WAIT
    ));
    for a in agents {
        say(format!("agent {a}"));
    }
    for (what, burst) in [("single changes", false), ("changes in bursts", true)] {
        let mut slow: Vec<&Sample> = samples.iter().filter(|s| s.burst == burst).collect();
        slow.sort_by_key(|s| std::cmp::Reverse(s.commit));
        say(format!("slowest commits, {what}:"));
        for s in slow.iter().take(4) {
            say(format!("  {}", describe(s, pairs)));
        }
    }
    let verbose = report_mode();
    if verbose {
        say("every change:".into());
        for s in samples {
            say(format!("  {}", describe(s, pairs)));
        }
    }
    say(format!(
        "times: cluster up {:.1} s, objects created {:.1} s, agents settled {:.1} s, stream {:.1} s, total {:.1} s",
        up.as_secs_f64(),
        created.as_secs_f64(),
        settled.as_secs_f64(),
        stream.as_secs_f64(),
        total.as_secs_f64()
    ));
    print!("{out}");
}

fn describe(s: &Sample, pairs: &[Pair]) -> String {
    format!(
        "commit {:>9} obey {:>9} agent {:>9} api {:>8}  gen {:>4} msgs {:>3} probes {:>3}  {}{} -> {}",
        report::ms(s.commit),
        report::ms(s.obey),
        s.agent.map_or("-".into(), report::ms),
        report::ms(s.api),
        s.generation,
        s.messages,
        s.attempts,
        if s.burst { "[burst] " } else { "" },
        pairs[s.pair].label(),
        if s.open { "open" } else { "closed" }
    )
}
