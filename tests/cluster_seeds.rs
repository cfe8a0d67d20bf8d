//! The five seed tutorials (docs/tutorials.md) replayed on the local
//! Kubernetes cluster (scripts/cluster.sh: a real kube-apiserver, two nodes,
//! the real CNI plugins, our agent on each node as the DaemonSet runs it),
//! driven by kubectl and probed with real packets.
//!
//! One cluster serves all five, in sequence, each in the tutorial's own
//! namespaces (`default` and `kube-system` are shared: a replay deletes
//! what it made there before the next one starts). Each step does what the
//! tutorial does: `kubectl create`/`apply -f` of its manifests
//! (tests/data/cluster/seeds/<tutorial>/), `kubectl label`, `kubectl
//! delete`, `kubectl run`, and `kubectl edit` as an apply of the edited
//! manifest. Then it waits until both agents enforce the API's new state
//! (each node's table equals `kube-nftpolicy render` of a `kubectl get`
//! dump, counters and logging aside; see converge.rs) and probes every
//! pod-to-pod flow the tutorial states at that point, and the pod-to-pod
//! flows tests/seeds_kernel.rs checks there, in IPv4 and IPv6, using the
//! pods' addresses.
//!
//! | module | tutorial |
//! | --- | --- |
//! | `calico_advanced` | Calico "Controlling Ingress and Egress Traffic with Network Policy" |
//! | `webapp_balanced` | "Network Policies" (Spanish, Calico) |
//! | `cilium_backend` | Cilium lab "5. Network Policies" |
//! | `handbook` | kubernetes-handbook "Network Policy" |
//! | `db_policy` | KodeKloud lecture "Network Policy" (Flannel) |
//!
//! What differs from the tutorials, and from the lab replay:
//!
//! - No controller-manager, scheduler, kube-proxy or DNS run here. A
//!   Deployment (or the old `kubectl run --replicas`) is written as the Pods
//!   it would make, with the tutorial's names and labels (each manifest
//!   says so); `kubectl run` of one pod is run as it is. A Service name is
//!   a lookup (UDP 53 to the `kube-dns` pod of kube-system, labelled
//!   `k8s-app=kube-dns`) and a request to each backend pod's address.
//! - Where a tutorial and the Kubernetes API disagree, the assertion follows
//!   the API (docs/tutorials.md lists each disagreement) and a comment
//!   quotes the tutorial. Here the API server itself judges what it
//!   accepts: it refuses the handbook's `protocol: tcp`, and kubectl cannot
//!   parse the lecture's two mis-indented manifests.
//! - Not checked here, because this cluster has no host outside it and the
//!   prober speaks TCP and UDP only: ICMP (`ping`), the Internet
//!   (google.com, `wget google.com`, a browser), NodePorts and Ingress from
//!   outside, hostNetwork clients, ipBlock peers (the handbook's 172.17.0.0/16 and
//!   egress to 10.0.0.0/24, the lecture's backup server 192.168.5.10), and
//!   a pod's own node. tests/seeds_kernel.rs checks each of these in the
//!   namespace lab (an external host, ICMP probes, kube-proxy's DNAT).
//!
//! Needs root (network namespaces) and `cargo build --workspace --bins`
//! (knp-cluster); cluster id 1 (tests/cluster_support).

#[path = "cluster_support/mod.rs"]
mod cluster_support;

#[path = "cluster_seeds/converge.rs"]
mod converge;
#[path = "cluster_seeds/replay.rs"]
mod replay;

#[path = "cluster_seeds/calico_advanced.rs"]
mod calico_advanced;
#[path = "cluster_seeds/cilium_backend.rs"]
mod cilium_backend;
#[path = "cluster_seeds/db_policy.rs"]
mod db_policy;
#[path = "cluster_seeds/handbook.rs"]
mod handbook;
#[path = "cluster_seeds/handbook_recipes.rs"]
mod handbook_recipes;
#[path = "cluster_seeds/webapp_balanced.rs"]
mod webapp_balanced;

use std::time::Instant;

use cluster_support::Cluster;

/// One tutorial's replay: (steps, probes).
type Replay = fn(&Cluster) -> (usize, usize);

/// Cluster 1, two nodes, the agents with the DaemonSet's arguments.
///
/// Tried twice: on a loaded machine `scripts/control-plane.sh` can take
/// etcd for dead before it has started (its `alive` reads
/// /proc/<pid>/exe, which is still the forked shell's until the exec), and
/// `up` fails with "etcd exited" and an empty etcd log. A failed `up` takes
/// itself down (Cluster's Drop) before the second try.
fn up() -> Cluster {
    std::panic::catch_unwind(|| Cluster::up(1, 2, "")).unwrap_or_else(|_| {
        eprintln!("cluster_seeds: scripts/cluster.sh up failed (above); once more");
        Cluster::up(1, 2, "")
    })
}

#[test]
fn seed_tutorials_replayed_through_kubectl() {
    nftpolicy_lab::kernel_test!("cluster_seeds::seed_tutorials_replayed_through_kubectl");
    let started = Instant::now();
    let c = up();
    eprintln!("cluster up in {:?}", started.elapsed());
    // kube-dns, shared by every tutorial that looks a name up.
    c.k(&[
        "apply",
        "-f",
        &replay::data_dir().join("kube-dns.yaml").to_string_lossy(),
    ]);
    c.wait_running("kube-system", &["kube-dns"], replay::POD_UP);

    // In the order of docs/tutorials.md; each replay leaves namespaces
    // default and kube-system as it found them.
    let tutorials: [(&str, Replay); 5] = [
        ("calico_advanced", calico_advanced::replay),
        ("webapp_balanced", webapp_balanced::replay),
        ("cilium_backend", cilium_backend::replay),
        ("handbook", handbook::replay),
        ("db_policy", db_policy::replay),
    ];
    let (mut steps, mut probes) = (0, 0);
    for (name, replay) in tutorials {
        let (s, p) = replay(&c);
        eprintln!("{name}: {s} steps, {p} probes");
        (steps, probes) = (steps + s, probes + p);
    }
    eprintln!(
        "five tutorials: {steps} steps, {probes} probes, {:?} with the cluster's start",
        started.elapsed()
    );
}
