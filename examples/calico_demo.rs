//! The Calico tutorial "Controlling Ingress and Egress Traffic with Network
//! Policy", replayed against kube-nftpolicy in a lab of network namespaces
//! (no cluster needed):
//!
//! ```sh
//! sudo cargo run --release --example calico_demo
//! ```
//!
//! The lab is two nodes (`node1`, `node2`: a `cni0` bridge each, wired
//! together, `br_netfilter` on) and an external host standing in for
//! google.com behind node 1. Everything it holds comes from the manifests in
//! `examples/calico/`, one file per step of the tutorial (`00-cluster.yaml`,
//! `01-default-deny-ingress.yaml`, ..., `egress/05-...yaml`), read with the
//! real manifest loader (`nftpolicy_source::files::load`):
//!
//! - Pods are created where the manifests put them (`nodeName: node-N` is lab
//!   node N) with the addresses the manifests give, and each destination the
//!   demo probes runs an echo server on the probed port (nginx TCP 80,
//!   kube-dns UDP and TCP 53, the access pod TCP 8080, google.com TCP 80).
//! - Each step's file is applied on top of the earlier ones, as
//!   `kubectl create`/`kubectl label` would: an object replaces the one with
//!   the same kind and namespace/name (step 04 relabels `kube-system`).
//!
//! For each step, both nodes' tables are built and applied through the real
//! dataplane (`lab::Cluster::apply`: a full replace first, then incremental
//! netlink batches), and real TCP/UDP packets are sent over IPv4 and IPv6.
//! Each result is compared with what the tutorial says (its `wget` and
//! `nslookup` output) or, where the tutorial is silent, with what the
//! Kubernetes API says. At the end node 1's table is printed with
//! `nft list table inet kube-nftpolicy` and the lab is removed.
//!
//! Exit status: 0 when every probe went as expected, 1 when one did not,
//! 2 when the lab could not be built or run (for example without root).
//! Needs root, iproute2 (`ip`) and nftables (`nft`).
//!
//! `tests/demo.rs` runs the same code (it includes this file as a module).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nftpolicy_core::model::Snapshot;
use nftpolicy_core::ruleset::render::render;
use nftpolicy_lab::{Cluster, Family, Host, Matrix, ProbeJob, ProbeKey, Proto};
use nftpolicy_nft::{ApplyReport, Dataplane};
use nftpolicy_source::files;

/// How long a probe waits for its reply. A probe that gets none is sent once
/// more before it counts as blocked, so a blocked flow costs two of these.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

/// The manifests of the tutorial, one file per step.
pub fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/calico")
}

/// One connection the demo tries at every step.
pub struct Flow {
    /// Source: a pod name, `google.com` or `node1`.
    pub from: &'static str,
    /// Destination: a pod name or `google.com`.
    pub to: &'static str,
    /// Transport protocol.
    pub proto: Proto,
    /// Destination port.
    pub port: u16,
    /// What it stands for.
    pub what: &'static str,
}

const fn flow(
    from: &'static str,
    to: &'static str,
    proto: Proto,
    port: u16,
    what: &'static str,
) -> Flow {
    Flow {
        from,
        to,
        proto,
        port,
        what,
    }
}

/// The connections probed at every step (each over IPv4 and IPv6).
pub const FLOWS: [Flow; 10] = [
    flow(
        "access",
        "nginx",
        Proto::Tcp,
        80,
        "wget nginx (replica on node 1)",
    ),
    flow(
        "access",
        "nginx-2",
        Proto::Tcp,
        80,
        "wget nginx (replica on node 2)",
    ),
    flow("access", "kube-dns", Proto::Udp, 53, "nslookup"),
    flow("access", "kube-dns", Proto::Tcp, 53, "DNS over TCP"),
    flow("access", "google.com", Proto::Tcp, 80, "wget google.com"),
    flow("nginx", "access", Proto::Tcp, 8080, "into the access pod"),
    flow(
        "nginx",
        "nginx-2",
        Proto::Tcp,
        80,
        "nginx to nginx, across nodes",
    ),
    flow(
        "kube-dns",
        "nginx",
        Proto::Tcp,
        80,
        "from another namespace",
    ),
    flow(
        "google.com",
        "nginx",
        Proto::Tcp,
        80,
        "from outside the cluster",
    ),
    flow(
        "node1",
        "nginx",
        Proto::Tcp,
        80,
        "from its own node (kubelet)",
    ),
];

/// What a flow should do at a step, and who says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    /// Connected (true) or blocked.
    pub allowed: bool,
    /// The tutorial's output says so (else: the Kubernetes API does).
    pub tutorial: bool,
}

/// The tutorial says it connects (a `wget` that downloads also needs its
/// DNS lookup).
const T_OPEN: Expect = Expect {
    allowed: true,
    tutorial: true,
};
/// The tutorial says it fails.
const T_SHUT: Expect = Expect {
    allowed: false,
    tutorial: true,
};
/// The tutorial does not try it; the Kubernetes API says it connects.
const K_OPEN: Expect = Expect {
    allowed: true,
    tutorial: false,
};
/// The tutorial does not try it; the Kubernetes API says it is blocked.
const K_SHUT: Expect = Expect {
    allowed: false,
    tutorial: false,
};

/// One step of the tutorial.
pub struct Step {
    /// The tutorial's heading.
    pub title: &'static str,
    /// The manifest this step adds, relative to [`manifest_dir`].
    pub file: &'static str,
    /// What the tutorial runs and what it says comes back.
    pub tutorial: &'static [(&'static str, &'static str)],
    /// One expectation per entry of [`FLOWS`].
    pub expect: [Expect; FLOWS.len()],
}

/// The tutorial, step by step. Flows, in order: wget nginx (node 1),
/// wget nginx (node 2), nslookup, DNS over TCP, wget google.com,
/// nginx -> access, nginx -> nginx-2, kube-dns -> nginx, google.com -> nginx,
/// node1 -> nginx.
pub const STEPS: [Step; 6] = [
    Step {
        title: "Create the namespace and nginx (no policy)",
        file: "00-cluster.yaml",
        tutorial: &[
            ("wget -q --timeout=5 nginx -O -", "the nginx welcome page"),
            (
                "wget -q --timeout=5 google.com -O -",
                "the google.com home page",
            ),
        ],
        expect: [
            T_OPEN, T_OPEN, T_OPEN, K_OPEN, T_OPEN, K_OPEN, K_OPEN, K_OPEN, K_OPEN, K_OPEN,
        ],
    },
    Step {
        title: "Deny all ingress traffic",
        file: "01-default-deny-ingress.yaml",
        tutorial: &[
            ("wget -q --timeout=5 nginx -O -", "wget: download timed out"),
            (
                "wget -q --timeout=5 google.com -O -",
                "the google.com home page",
            ),
        ],
        expect: [
            T_SHUT, T_SHUT, T_OPEN, K_OPEN, T_OPEN, K_SHUT, K_SHUT, K_SHUT, K_SHUT, K_OPEN,
        ],
    },
    Step {
        title: "Allow ingress traffic to nginx",
        file: "02-access-nginx.yaml",
        tutorial: &[(
            "wget -q --timeout=5 nginx -O -",
            "<title>Welcome to nginx!</title>",
        )],
        expect: [
            T_OPEN, T_OPEN, T_OPEN, K_OPEN, K_OPEN, K_SHUT, K_OPEN, K_SHUT, K_SHUT, K_OPEN,
        ],
    },
    Step {
        title: "Deny all egress traffic",
        file: "egress/03-default-deny-egress.yaml",
        tutorial: &[
            (
                "nslookup nginx",
                ";; connection timed out; no servers could be reached",
            ),
            (
                "wget -q --timeout=5 google.com -O -",
                "wget: bad address 'google.com'",
            ),
        ],
        expect: [
            K_SHUT, K_SHUT, T_SHUT, K_SHUT, T_SHUT, K_SHUT, K_SHUT, K_SHUT, K_SHUT, K_OPEN,
        ],
    },
    Step {
        title: "Allow DNS egress traffic (after labelling kube-system name=kube-system)",
        file: "egress/04-allow-dns-access.yaml",
        tutorial: &[
            (
                "nslookup nginx",
                "Name: nginx.advanced-policy-demo.svc.cluster.local",
            ),
            (
                "wget (nginx, google.com)",
                "still fails: all other egress is still blocked",
            ),
        ],
        expect: [
            T_SHUT, T_SHUT, T_OPEN, K_SHUT, T_SHUT, K_SHUT, K_SHUT, K_SHUT, K_SHUT, K_OPEN,
        ],
    },
    Step {
        title: "Allow egress traffic to nginx",
        file: "egress/05-allow-egress-to-advance-policy-ns.yaml",
        tutorial: &[
            (
                "wget -q --timeout=5 nginx -O -",
                "<title>Welcome to nginx!</title>",
            ),
            (
                "wget -q --timeout=5 google.com -O -",
                "wget: download timed out",
            ),
        ],
        expect: [
            T_OPEN, T_OPEN, T_OPEN, K_SHUT, T_SHUT, K_SHUT, K_OPEN, K_SHUT, K_SHUT, K_OPEN,
        ],
    },
];

/// How the run went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Steps replayed.
    pub steps: usize,
    /// Probes sent (each flow, each family, each step).
    pub probes: usize,
    /// Probes whose result differed from the expectation, plus a kernel
    /// listing that differed from `render(current())`.
    pub failures: usize,
    /// Wall time of the whole run, lab set-up and removal included.
    pub elapsed: Duration,
}

/// The objects of the manifests after step `step` (0-based; node names as
/// the manifests spell them): each step's file read with
/// `nftpolicy_source::files::load` and laid over the earlier ones, an object
/// replacing the one with the same kind and namespace/name.
pub fn manifests_after(step: usize) -> Result<Snapshot, String> {
    let mut snapshot = Snapshot::default();
    for s in STEPS.iter().take(step + 1) {
        let loaded = load_step(s)?;
        add_all(&mut snapshot, loaded);
    }
    Ok(snapshot)
}

fn load_step(step: &Step) -> Result<Snapshot, String> {
    let path = manifest_dir().join(step.file);
    let loaded = files::load(std::slice::from_ref(&path)).map_err(|e| e.to_string())?;
    if let Some(p) = loaded.problems.first() {
        return Err(format!("{p}"));
    }
    Ok(loaded.snapshot)
}

fn add_all(into: &mut Snapshot, from: Snapshot) {
    from.namespaces
        .into_values()
        .for_each(|n| into.add_namespace(n));
    from.pods.into_values().for_each(|p| into.add_pod(p));
    from.policies.into_values().for_each(|p| into.add_policy(p));
}

/// `node-N` (manifests) is lab node N.
fn lab_node(node: &str) -> Option<u8> {
    node.strip_prefix("node-")?
        .parse()
        .ok()
        .filter(|n| (1..=2).contains(n))
}

/// Replays the tutorial (see the crate docs) and prints it; `Err` when the
/// lab could not be built or used.
pub fn run() -> Result<Outcome, String> {
    let start = Instant::now();
    let mut cluster = Cluster::new().map_err(|e| e.to_string())?;
    let mut out = Outcome::default();
    let hosts = build_lab(&mut cluster)?;
    println!(
        "Calico tutorial \"Controlling Ingress and Egress Traffic with Network Policy\"\n\
         replayed on a lab of network namespaces: node1 and node2 (cni0 bridge,\n\
         br_netfilter, routed to each other), google.com is a host behind node1.\n\
         Manifests: {}\n",
        manifest_dir().display()
    );
    for (name, host) in &hosts {
        let addrs: Vec<String> = Family::ALL
            .iter()
            .filter_map(|f| host.ip(*f).map(|a| a.to_string()))
            .collect();
        println!("  {name:<11} {}", addrs.join(", "));
    }
    let mut manifests = Snapshot::default();
    for (index, step) in STEPS.iter().enumerate() {
        let added = load_step(step)?;
        if index > 0 && !added.pods.is_empty() {
            return Err(format!(
                "{}: pods are created by {} only",
                step.file, STEPS[0].file
            ));
        }
        println!(
            "\n== Step {index} of {}: {} ==",
            STEPS.len() - 1,
            step.title
        );
        println!("  manifest  examples/calico/{}", step.file);
        for ns in added.namespaces.values() {
            let labels: Vec<String> = ns.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("    Namespace {} ({})", ns.name, labels.join(", "));
        }
        for pod in added.pods.values() {
            println!("    Pod {}", pod.key());
        }
        for key in added.policies.keys() {
            println!("    NetworkPolicy {key}");
        }
        add_all(&mut manifests, added);
        set_snapshot(&mut cluster, &manifests)?;
        let reports = cluster.apply().map_err(|e| e.to_string())?;
        for (i, (node, report)) in reports.iter().enumerate() {
            let head = if i == 0 { "  applied  " } else { "           " };
            println!("{head}{node}: {}", describe(report));
        }
        println!("  the tutorial says:");
        for (command, says) in step.tutorial {
            println!("    {command:<38} -> {says}");
        }
        out.failures += probe_step(&cluster, &hosts, step, &mut out.probes);
        out.steps += 1;
    }
    out.failures += show_table(&mut cluster)?;
    drop(cluster);
    out.elapsed = start.elapsed();
    let verdict = if out.failures == 0 {
        "every probe went as the tutorial (and, where it is silent, the Kubernetes API) says"
            .to_owned()
    } else {
        format!("{} checks FAILED (see MISMATCH above)", out.failures)
    };
    println!(
        "\n{} steps, {} probes: {verdict}. Lab removed; {:.1} s.",
        out.steps,
        out.probes,
        out.elapsed.as_secs_f64()
    );
    Ok(out)
}

/// Creates the pods of step 0 in the lab, starts the echo servers the flows
/// need, and returns every host a flow names.
fn build_lab(cluster: &mut Cluster) -> Result<BTreeMap<&'static str, Host>, String> {
    let lab_err = |e: nftpolicy_lab::LabError| e.to_string();
    let pods = load_step(&STEPS[0])?.pods;
    let mut by_name: BTreeMap<String, Host> = BTreeMap::new();
    for pod in pods.values() {
        let index = pod
            .node
            .as_deref()
            .and_then(lab_node)
            .ok_or_else(|| format!("pod {}: nodeName must be node-1 or node-2", pod.key()))?;
        let one = |family: Family| -> Result<Option<IpAddr>, String> {
            let mut of = pod.ips.iter().filter(|a| Family::of(a) == family);
            match (of.next(), of.next()) {
                (_, Some(_)) => Err(format!("pod {}: one address per family", pod.key())),
                (a, None) => Ok(a.copied()),
            }
        };
        let v4 = match one(Family::V4)? {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        };
        let v6 = match one(Family::V6)? {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        };
        let node = cluster.lab.node(index).map_err(lab_err)?.clone();
        let host = cluster
            .lab
            .add_pod(&node, &pod.name, v4, v6)
            .map_err(lab_err)?;
        by_name.insert(pod.name.to_string(), host);
    }
    let mut hosts = BTreeMap::new();
    for name in FLOWS.iter().flat_map(|f| [f.from, f.to]) {
        let host = match name {
            "google.com" => cluster.lab.host("ext").map_err(lab_err)?.clone(),
            "node1" => cluster.lab.node(1).map_err(lab_err)?.clone(),
            pod => by_name
                .get(pod)
                .cloned()
                .ok_or_else(|| format!("no pod named {pod} in {}", STEPS[0].file))?,
        };
        hosts.insert(name, host);
    }
    for (name, host) in &hosts {
        let mut ports: Vec<(Proto, u16)> = FLOWS
            .iter()
            .filter(|f| f.to == *name)
            .map(|f| (f.proto, f.port))
            .collect();
        ports.sort();
        ports.dedup();
        if !ports.is_empty() {
            cluster.lab.serve(host, &ports).map_err(lab_err)?.keep();
        }
    }
    Ok(hosts)
}

/// Gives the cluster the manifests' objects, with lab node names.
fn set_snapshot(cluster: &mut Cluster, manifests: &Snapshot) -> Result<(), String> {
    let mut s = manifests.clone();
    for pod in s.pods.values_mut() {
        let index = pod
            .node
            .as_deref()
            .and_then(lab_node)
            .ok_or_else(|| format!("pod {}: nodeName must be node-1 or node-2", pod.key()))?;
        std::sync::Arc::make_mut(pod).node = Some(format!("node{index}").into());
    }
    cluster.snapshot = s;
    Ok(())
}

fn describe(r: &ApplyReport) -> String {
    let mut s = format!(
        "{} batch, {} messages, {} bytes, {:.1} ms",
        r.kind.as_str().replace('_', " "),
        r.messages,
        r.bytes,
        r.duration.as_secs_f64() * 1e3
    );
    if let Some(reason) = &r.reason {
        s.push_str(&format!(" ({reason})"));
    }
    s
}

/// Probes every flow in both families, prints the results against the
/// step's expectations, and returns how many differ.
fn probe_step(
    cluster: &Cluster,
    hosts: &BTreeMap<&'static str, Host>,
    step: &Step,
    probes: &mut usize,
) -> usize {
    let mut keys = Vec::new();
    let mut jobs = Vec::new();
    for f in &FLOWS {
        let (src, dst) = (&hosts[f.from], &hosts[f.to]);
        for family in Family::ALL {
            let (Some(_), Some(addr)) = (src.ip(family), dst.ip(family)) else {
                continue;
            };
            keys.push(key(f, family));
            jobs.push(ProbeJob {
                from: src.clone(),
                to: addr,
                port: f.port,
                proto: f.proto,
            });
        }
    }
    let lab = &cluster.lab;
    // Connected: the destination's own server answered.
    let answered = |i: usize, r: &Result<String, _>| matches!(r, Ok(name) if *name == hosts[keys[i].to.as_str()].name());
    let mut ok: Vec<bool> = lab
        .probe_batch(&jobs, PROBE_TIMEOUT)
        .iter()
        .enumerate()
        .map(|(i, r)| answered(i, r))
        .collect();
    let again: Vec<usize> = (0..jobs.len()).filter(|i| !ok[*i]).collect();
    let retry: Vec<ProbeJob> = again.iter().map(|i| jobs[*i].clone()).collect();
    for (i, r) in again
        .into_iter()
        .zip(lab.probe_batch(&retry, PROBE_TIMEOUT))
    {
        ok[i] = answered(i, &r);
    }
    *probes += jobs.len();
    let got = Matrix {
        results: keys.iter().cloned().zip(ok).collect(),
    };
    let want = Matrix {
        results: FLOWS
            .iter()
            .zip(step.expect)
            .flat_map(|(f, e)| Family::ALL.map(|fam| (key(f, fam), e.allowed)))
            .filter(|(k, _)| got.results.contains_key(k))
            .collect(),
    };
    let mismatches = got.diff(&want).len();

    println!("  probes (. connected, X blocked):");
    println!(
        "    {:<30} {:<8} {:<31} ipv4 ipv6  expected",
        "from -> to", "port", "stands for"
    );
    for (f, e) in FLOWS.iter().zip(step.expect) {
        let cell = |fam| match got.get(f.from, f.to, f.port, f.proto, fam) {
            Some(true) => ".",
            Some(false) => "X",
            None => " ",
        };
        let fine = Family::ALL.iter().all(|fam| {
            got.get(f.from, f.to, f.port, f.proto, *fam)
                .is_none_or(|g| g == e.allowed)
        });
        println!(
            "    {:<30} {:<8} {:<31} {:^4} {:^4}  {} ({}){}",
            format!("{} -> {}", f.from, f.to),
            format!("{}/{}", f.proto, f.port),
            f.what,
            cell(Family::V4),
            cell(Family::V6),
            if e.allowed { "connects" } else { "blocked " },
            if e.tutorial { "tutorial" } else { "API" },
            if fine { "" } else { "   <-- MISMATCH" }
        );
    }
    if mismatches == 0 {
        println!("  => as the tutorial says");
    } else {
        println!("  => {mismatches} probes differ from the expectation");
    }
    mismatches
}

fn key(f: &Flow, family: Family) -> ProbeKey {
    ProbeKey {
        from: f.from.to_owned(),
        to: f.to.to_owned(),
        port: f.port,
        proto: f.proto,
        family,
    }
}

/// Prints node 1's table as the kernel lists it and checks that it is what
/// `render` makes of the dataplane's record of it (counter values aside).
/// Returns 1 when it is not.
fn show_table(cluster: &mut Cluster) -> Result<usize, String> {
    let node1 = cluster.lab.node(1).map_err(|e| e.to_string())?.clone();
    let listing = cluster
        .lab
        .nft(&node1, &["list", "table", "inet", "kube-nftpolicy"])
        .map_err(|e| e.to_string())?;
    println!(
        "\n== node1 after the last step: nft list table inet kube-nftpolicy ==\n\
         (each pod chain ends in a counted drop: the packets it refused since the\n\
         chain was last written)\n"
    );
    print!("{listing}");
    let recorded = cluster
        .dataplane("node1")
        .and_then(|dp| dp.current().map(render))
        .unwrap_or_default();
    if zero_counters(&listing) == recorded {
        println!("\n  this listing is render(current()) of node1's dataplane, byte for byte (counters aside)");
        Ok(0)
    } else {
        println!("\n  MISMATCH: the listing differs from render(current()) of node1's dataplane:\n{recorded}");
        Ok(1)
    }
}

/// `counter packets N bytes M` with both at zero, as `render` prints it.
fn zero_counters(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let (body, nl) = match line.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (line, ""),
            };
            let Some(at) = body.find("counter packets ") else {
                return line.to_owned();
            };
            let (head, rest) = body.split_at(at);
            let words: Vec<&str> = rest.split(' ').collect();
            match words.as_slice() {
                ["counter", "packets", _, "bytes", _, tail @ ..] => {
                    let mut l = format!("{head}counter packets 0 bytes 0");
                    for w in tail {
                        l.push(' ');
                        l.push_str(w);
                    }
                    l + nl
                }
                _ => line.to_owned(),
            }
        })
        .collect()
}

fn main() -> ExitCode {
    match run() {
        Ok(o) if o.failures == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("calico_demo: {e}");
            eprintln!("(the demo needs root, iproute2 and nftables: sudo cargo run --release --example calico_demo)");
            ExitCode::from(2)
        }
    }
}
