//! The upstream Kubernetes NetworkPolicy conformance suite
//! (`[Feature:NetworkPolicy]`, kubernetes/kubernetes
//! `test/e2e/network/netpol`), run against the real engine with real
//! packets in the namespace lab: the upstream model (namespaces x, y, z
//! labelled `ns=<name>`, pods a, b, c labelled `pod=<name>`, each serving
//! TCP and UDP on 80 and 81 under the container port names
//! `serve-<port>-<proto>`), every pod dual-stack; a and b on node1, c on
//! node2, so every case crosses the bridge and the wire. See
//! `conformance/cases.rs` for the cases and how they were adapted.
//!
//! ONE cluster serves every case: between steps the policies are replaced
//! and `Cluster::apply` sends the incremental difference, exactly as the
//! agent does after a watch event. Each step probes the whole 9 × 9 matrix
//! on every served port and protocol (TCP and UDP, 80 and 81), in IPv4 and
//! IPv6: 648 cells. Upstream validates only the port/protocol its test
//! names; those cells carry upstream's truth table, the others a table we
//! add (`also` in the cases; a failure report says which is which). All
//! failing cases are reported together at the end, each with its matrix
//! diff.
//!
//! Needs root (network namespaces, nftables); without it the tests fail
//! with a message saying so, never skip.

#[path = "conformance/cases.rs"]
mod cases;
#[path = "conformance/reach.rs"]
mod reach;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nftpolicy_core::model::{Namespace, NamespacedName, Pod, Snapshot};
use nftpolicy_lab::{netns, Cluster, Family, Host, Matrix, Proto, Serve, Stack};
use nftpolicy_nft::ApplyKind;
use nftpolicy_testkit::{policy, PolicyExt};

use reach::{expected_cell, Body, Case, Step, NAMESPACES, PODS, PORTS};

/// Timeout of one probe. A blocked cell is probed twice (the lab retries a
/// failed cell once), so it costs 2 × PROBE; connected cells answer in
/// well under a millisecond even on a loaded machine.
const PROBE: Duration = Duration::from_millis(500);

/// The tests of this file build labs and probe in parallel; they take
/// turns so that one does not starve the other's probes on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// Container ports of every model pod: TCP and UDP on 80 and 81, named as
/// upstream's `Container.PortName()`.
const SERVE: &[Serve<'static>] = &[
    Serve {
        proto: Proto::Tcp,
        port: 80,
        name: Some("serve-80-tcp"),
    },
    Serve {
        proto: Proto::Udp,
        port: 80,
        name: Some("serve-80-udp"),
    },
    Serve {
        proto: Proto::Tcp,
        port: 81,
        name: Some("serve-81-tcp"),
    },
    Serve {
        proto: Proto::Udp,
        port: 81,
        name: Some("serve-81-udp"),
    },
];

/// The upstream model in a fresh two-node lab, applied once with no policy.
fn model_cluster() -> Cluster {
    let mut c = Cluster::new().expect("lab cluster (needs root, veth, bridge, nf_tables)");
    for ns in NAMESPACES {
        c.add_namespace(ns, &[("ns", ns)]);
    }
    for ns in NAMESPACES {
        for pod in PODS {
            let node = if pod == "c" { 2 } else { 1 };
            c.add_pod(node, ns, pod, &[("pod", pod)], Stack::Dual, SERVE)
                .unwrap_or_else(|e| panic!("pod {ns}/{pod}: {e}"));
        }
    }
    c.apply().expect("first (full) apply with no policy");
    c
}

struct LabIps<'a>(&'a Cluster);

impl cases::PodIps for LabIps<'_> {
    fn ips(&self, pod: &str) -> (IpAddr, IpAddr) {
        let (ns, name) = pod.split_once('/').expect("ns/pod");
        let h = self.0.pod(ns, name).expect("model pod");
        (
            h.ip(Family::V4).expect("IPv4"),
            h.ip(Family::V6).expect("IPv6"),
        )
    }
}

/// Width of the ephemeral port window each step's probes get.
const PORT_WINDOW: u16 = 400;

/// Gives every pod a fresh ephemeral port window (`ip_local_port_range` is
/// per network namespace), different from the windows of the last ~70
/// steps. Why: a UDP probe that connected leaves a conntrack entry that
/// lives 30 s after its last packet; a later probe that happens to pick
/// the same source port matches it (`ct state established`) and passes a
/// policy that now denies the pair. That is the intended behaviour for a
/// live flow (established flows survive policy changes, see the second
/// test), but with the kernel's random ports over 28k it made one or two
/// blocked UDP cells per run look connected (seen in 3 runs of 3; the
/// conntrack dump showed the reused entry). Each step must probe NEW
/// flows, as upstream's fresh pods do. (TCP cannot collide this way: a SYN
/// on a closed conntrack entry starts a new one.)
fn fresh_source_ports(c: &Cluster, step_no: usize) {
    let windows = (60999 - 32768) / usize::from(PORT_WINDOW);
    let lo = 32768 + (step_no % windows) * usize::from(PORT_WINDOW);
    // Tab-separated: the kernel prints it so, and `sysctl_set` reads it back.
    let range = format!("{lo}\t{}", lo + usize::from(PORT_WINDOW) - 1);
    for (name, host) in c.pods() {
        netns::sysctl_set(host.netns(), &[("net.ipv4.ip_local_port_range", &range)])
            .unwrap_or_else(|e| panic!("ephemeral ports of {name}: {e}"));
    }
}

/// For every cell that connected but should not have: the conntrack
/// entries of both nodes for that pair and port, to tell a rule that
/// accepted a new flow from a packet that matched an existing entry.
fn conntrack_of_leaks(c: &Cluster, got: &Matrix, want: &Matrix) -> String {
    let leaks: Vec<_> = got
        .diff(want)
        .into_iter()
        .filter(|m| m.got == Some(true) && m.want == Some(false))
        .collect();
    if leaks.is_empty() {
        return String::new();
    }
    let mut tables = Vec::new();
    for i in [1, 2] {
        let node = c.lab.node(i).expect("node").clone();
        let text = netns::in_netns(node.netns(), || {
            // `/proc/net` is the netns of the main thread; this thread entered the node.
            std::fs::read_to_string("/proc/thread-self/net/nf_conntrack").map_err(|source| {
                nftpolicy_lab::LabError::Io {
                    context: "read /proc/net/nf_conntrack".into(),
                    source,
                }
            })
        })
        .unwrap_or_else(|e| format!("(cannot read: {e})"));
        tables.push((node.name().to_owned(), text));
    }
    let host_ip = |name: &str, f: Family| {
        let (ns, pod) = name.split_once('-').expect("host name ns-pod");
        c.pod(ns, pod).ok().and_then(|h| h.ip(f))
    };
    let mut out = String::from("conntrack entries of the cells that leaked:\n");
    for m in leaks {
        let k = &m.key;
        let (Some(src), Some(dst)) = (host_ip(&k.from, k.family), host_ip(&k.to, k.family)) else {
            continue;
        };
        // The kernel prints IPv6 addresses in full (`%pI6`).
        let full = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => v6
                .segments()
                .iter()
                .map(|g| format!("{g:04x}"))
                .collect::<Vec<_>>()
                .join(":"),
        };
        let (src, dst) = (full(src), full(dst));
        out.push_str(&format!(
            "{} -> {} {}/{} {}:\n",
            k.from, k.to, k.proto, k.port, k.family
        ));
        for (node, text) in &tables {
            for line in text.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // The ORIGINAL direction: the first src=, dst= and dport=.
                let first = |key: &str| fields.iter().find_map(|f| f.strip_prefix(key));
                if fields.get(2) == Some(&k.proto.to_string().as_str())
                    && first("src=") == Some(src.as_str())
                    && first("dst=") == Some(dst.as_str())
                    && first("dport=") == Some(k.port.to_string().as_str())
                {
                    out.push_str(&format!("  {node}: {}\n", fields.join(" ")));
                }
            }
        }
    }
    out.push_str(
        "(an entry that is [ASSURED] with ~120 s left was an older flow on the same \
         source port that the probe matched as established)\n",
    );
    out
}

/// Runs one step; `Err` holds the report of every failed validation.
fn run_step(
    c: &mut Cluster,
    step: &Step,
    step_no: usize,
    applies: &mut BTreeMap<&'static str, usize>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    if let Some(mutate) = step.mutate {
        mutate(&mut c.snapshot);
    }
    c.set_policies(step.policies.iter().cloned());
    for (node, report) in c.apply().map_err(|e| format!("apply failed: {e}"))? {
        *applies.entry(report.kind.as_str()).or_default() += 1;
        if report.kind == ApplyKind::Full {
            notes.push(format!(
                "step {step_no}: full replace on {node} ({})",
                report.reason.as_deref().unwrap_or("no reason given")
            ));
        }
    }
    fresh_source_ports(c, step_no);
    let mut ports: Vec<(Proto, u16)> = step.checks.iter().map(|k| (k.proto, k.port)).collect();
    ports.sort();
    let mut all = PORTS.to_vec();
    all.sort();
    assert_eq!(
        ports, all,
        "test bug in step {:?}: every step validates each served port/protocol exactly once",
        step.by
    );
    let got = c.matrix(&ports, PROBE);
    let want = got.expect(|k| {
        expected_cell(&step.checks, k)
            .unwrap_or_else(|| panic!("no expectation for cell {k:?} (test bug)"))
    });
    // 9 × 9 pairs × both families × each validated port.
    assert_eq!(got.results.len(), 81 * 2 * ports.len(), "matrix size");
    let leaks = conntrack_of_leaks(c, &got, &want);
    got.check(&want).map_err(|e| {
        let list = |upstream: bool| {
            step.checks
                .iter()
                .filter(|k| k.upstream == upstream)
                .map(|k| format!("{}/{}", k.proto, k.port))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{e}(validated by upstream: [{}]; added by the lab: [{}])\n{leaks}",
            list(true),
            list(false)
        )
    })
}

/// The labels every case starts from (upstream's `DeferCleanup` of label changes).
struct Baseline {
    namespaces: BTreeMap<String, std::sync::Arc<Namespace>>,
    pods: BTreeMap<NamespacedName, std::sync::Arc<Pod>>,
}

impl Baseline {
    fn of(s: &Snapshot) -> Self {
        Self {
            namespaces: s.namespaces.clone(),
            pods: s.pods.clone(),
        }
    }
    fn restore(&self, s: &mut Snapshot) {
        s.namespaces = self.namespaces.clone();
        s.pods = self.pods.clone();
    }
}

#[test]
fn upstream_network_policy_e2e_cases() {
    nftpolicy_lab::kernel_test!("conformance::upstream_network_policy_e2e_cases");
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let mut c = model_cluster();
    let setup = started.elapsed();
    let baseline = Baseline::of(&c.snapshot);
    let all = cases::cases(&LabIps(&c));

    // `CONFORMANCE_ONLY=<text>|<text>…`: run only the cases whose name contains one.
    let only = std::env::var("CONFORMANCE_ONLY").ok();
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut summary = String::new();
    let (mut ran, mut skipped, mut step_no) = (0, 0, 0);
    // Node applies by kind (full / incremental / no_change) after the first.
    let mut applies = BTreeMap::new();
    let mut notes = Vec::new();
    for case in &all {
        let Case { name, body } = case;
        let steps = match body {
            Body::Skip(why) => {
                skipped += 1;
                summary.push_str(&format!("SKIP  {name}\n      ({why})\n"));
                continue;
            }
            Body::Run(_)
                if only
                    .as_deref()
                    .is_some_and(|o| !o.split('|').any(|o| name.contains(o))) =>
            {
                continue
            }
            Body::Run(steps) => steps,
        };
        ran += 1;
        baseline.restore(&mut c.snapshot);
        let t = Instant::now();
        let mut report = String::new();
        for (i, step) in steps.iter().enumerate() {
            step_no += 1;
            if let Err(e) = run_step(&mut c, step, step_no, &mut applies, &mut notes) {
                report.push_str(&format!(
                    "step {} of {} ({}):\n{e}\n",
                    i + 1,
                    steps.len(),
                    step.by
                ));
            }
        }
        let verdict = if report.is_empty() { "ok  " } else { "FAIL" };
        summary.push_str(&format!(
            "{verdict}  {name}  [{:.1}s]\n",
            t.elapsed().as_secs_f64()
        ));
        for n in notes.drain(..) {
            summary.push_str(&format!("      {n}\n"));
        }
        if !report.is_empty() {
            eprintln!("==== FAILED: {name}\n{report}");
            failures.push((name.clone(), report));
        }
    }
    eprintln!(
        "{summary}{ran} cases run ({step_no} steps), {skipped} skipped, {} failed; node applies \
         {applies:?}; cluster setup {:.1}s, total {:.1}s",
        failures.len(),
        setup.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} upstream NetworkPolicy cases failed (matrix diffs above):\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(n, _)| format!("  - {n}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn ip(h: &Host, f: Family) -> IpAddr {
    h.ip(f)
        .unwrap_or_else(|| panic!("{} has no {f} address", h.name()))
}

/// An allowed TCP connection opened before a policy change keeps carrying
/// data after an incremental apply that denies NEW connections for the
/// same pair (`ct state established,related accept` comes first), on the
/// receiver's node (ingress) and the sender's node (egress), across nodes
/// and across the bridge, IPv4 and IPv6.
#[test]
fn established_flows_survive_an_incremental_apply_that_denies_new_ones() {
    nftpolicy_lab::kernel_test!(
        "conformance::established_flows_survive_an_incremental_apply_that_denies_new_ones"
    );
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = Cluster::new().expect("lab cluster");
    for ns in ["x", "y"] {
        c.add_namespace(ns, &[("ns", ns)]);
    }
    let serve = &SERVE[..1]; // TCP 80
    let a = c
        .add_pod(1, "x", "a", &[("pod", "a")], Stack::Dual, serve)
        .unwrap();
    let b = c
        .add_pod(2, "y", "b", &[("pod", "b")], Stack::Dual, serve)
        .unwrap();
    let same_node = c
        .add_pod(1, "y", "c", &[("pod", "c")], Stack::Dual, serve)
        .unwrap();
    c.apply().expect("first apply, no policy");

    let open = Duration::from_secs(2);
    let mut streams = Vec::new();
    for to in [&b, &same_node] {
        for f in Family::ALL {
            let s = c
                .lab
                .stream(&a, ip(to, f), 80, open)
                .unwrap_or_else(|e| panic!("open {} -> {} {f}: {e}", a.name(), to.name()));
            streams.push((to.clone(), f, s));
        }
    }

    // Step 1: y denies all ingress (judged on b's node 2 and on node 1 for y/c).
    // Step 2: x also denies all egress (judged on a's node 1).
    // Step 3: back to no policy.
    let deny_in = policy("y", "deny-ingress").types(true, false);
    let deny_out = policy("x", "deny-egress").types(false, true);
    let steps: [(&str, Vec<nftpolicy_core::model::Policy>, bool); 3] = [
        ("y denies ingress", vec![deny_in.clone()], false),
        (
            "y denies ingress and x denies egress",
            vec![deny_in, deny_out],
            false,
        ),
        ("policies deleted", vec![], true),
    ];
    for (what, policies, new_ok) in steps {
        c.set_policies(policies);
        let reports = c.apply().expect("incremental apply");
        for (node, r) in &reports {
            assert_ne!(
                r.kind,
                ApplyKind::Full,
                "{what}: {node} was fully replaced, not updated incrementally"
            );
        }
        for (to, f, s) in streams.iter_mut() {
            assert_eq!(
                s.exchange()
                    .unwrap_or_else(|e| panic!("{what}: open stream a -> {} {f}: {e}", to.name())),
                to.name(),
                "{what}: the open stream answered from the wrong host"
            );
            assert_eq!(
                c.lab.probe(&a, ip(to, *f), 80, Proto::Tcp, PROBE)
                    || c.lab.probe(&a, ip(to, *f), 80, Proto::Tcp, PROBE),
                new_ok,
                "{what}: a NEW connection a -> {} {f} should be {}",
                to.name(),
                if new_ok { "allowed" } else { "denied" }
            );
        }
    }
}
