//! The node runner: the kubelet's part in networking, and nothing else.
//!
//! - Registers its Node (pod CIDRs, addresses, Ready) and renews its Lease.
//! - Binds pods that name no node to one of the cluster's nodes, chosen by
//!   a hash of the pod's name, so that `kubectl run` works without a
//!   scheduler (each runner binds only the pods that hash to itself).
//! - For every pod bound to its node: creates a network namespace, calls
//!   the real CNI plugins (`cni.rs`), starts echo servers on the pod's
//!   container ports (TCP and UDP; port 80 when it declares none; more with
//!   the annotation `kube-nftpolicy.test/serve: "53/udp,8080"`), records it
//!   (`state.rs`), and writes `pods/status`: Running, the pod's IPs, Ready.
//!   hostNetwork pods get the node's addresses and no namespace.
//! - A pod being deleted is torn down (servers, CNI DEL, namespace) and then
//!   deleted for good (grace period 0), as a kubelet confirms a deletion.
//! - After every (re-)list, pods that are gone are torn down too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use nftpolicy_lab::{netns, serve_in, Proto, Server};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::cni::Cni;
use crate::state::{self, PodRecord};
use crate::Error;

/// The annotation that lists extra ports to serve: `"53/udp,8080"`.
pub const SERVE_ANNOTATION: &str = "kube-nftpolicy.test/serve";

/// What a runner needs to know about its node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// The node's network namespace.
    pub netns: String,
    /// The node's pod CIDRs.
    pub pod_cidrs: Vec<IpNet>,
    /// The node's own addresses (InternalIP).
    pub node_ips: Vec<IpAddr>,
    /// The CNI plugins.
    pub cni_bin: PathBuf,
    /// The cluster's state directory.
    pub dir: PathBuf,
    /// Every node of the cluster, for binding unscheduled pods.
    pub nodes: Vec<String>,
}

impl NodeConfig {
    fn cni(&self) -> Cni {
        Cni {
            bin: self.cni_bin.clone(),
            node_netns: self.netns.clone(),
            pod_cidrs: self.pod_cidrs.clone(),
            ipam_dir: state::node_dir(&self.dir, &self.name).join("ipam"),
        }
    }

    /// The namespace of the pod with `uid`: the node's, and 12 hex digits
    /// of the UID (`ip netns` lists them next to their node's).
    fn pod_netns(&self, uid: &str) -> String {
        let short: String = uid.chars().filter(|c| *c != '-').take(12).collect();
        format!("{}-{short}", self.netns)
    }
}

/// A pod whose network is up.
struct Running {
    record: PodRecord,
    _servers: Option<Server>,
}

/// Runs the node until the process ends.
pub async fn run(client: Client, cfg: NodeConfig) -> Result<(), Error> {
    register(&client, &cfg).await?;
    tokio::spawn(renew_lease(client.clone(), cfg.name.clone()));
    tokio::spawn(schedule(client.clone(), cfg.clone()));
    pods(client, cfg).await
}

async fn register(client: &Client, cfg: &NodeConfig) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let cidrs: Vec<String> = cfg.pod_cidrs.iter().map(ToString::to_string).collect();
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": cfg.name,
            "labels": {"kubernetes.io/hostname": cfg.name, "kubernetes.io/os": "linux"},
        },
        "spec": {"podCIDR": cidrs.first(), "podCIDRs": cidrs},
    });
    let pp = PatchParams::apply("knp-cluster").force();
    nodes.patch(&cfg.name, &pp, &Patch::Apply(&node)).await?;
    let now = serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null);
    let addresses: Vec<Value> = cfg
        .node_ips
        .iter()
        .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
        .chain([json!({"type": "Hostname", "address": cfg.name})])
        .collect();
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "250"});
    let status = json!({"status": {
        "addresses": addresses,
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "knp-cluster node runner", "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
            "osImage": "knp-cluster", "containerRuntimeVersion": "knp-cluster://0",
            "kubeletVersion": "v1.36.3", "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }});
    nodes
        .patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    info!(node = %cfg.name, cidrs = ?cidrs, "node registered");
    Ok(())
}

async fn renew_lease(client: Client, node: String) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(node.clone()),
                namespace: Some("kube-node-lease".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        let pp = PatchParams::apply("knp-cluster").force();
        if let Err(e) = leases.patch(&node, &pp, &Patch::Apply(&lease)).await {
            warn!(error = %e, "lease renewal failed");
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// The node a pod without `spec.nodeName` goes to: FNV-1a of `ns/name`.
pub fn choose<'n>(nodes: &'n [String], namespace: &str, name: &str) -> Option<&'n String> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{namespace}/{name}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let n = u64::try_from(nodes.len()).ok().filter(|n| *n > 0)?;
    nodes.get(usize::try_from(h % n).ok()?)
}

async fn schedule(client: Client, cfg: NodeConfig) {
    let api: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields("spec.nodeName=");
    let mut stream = std::pin::pin!(watcher::watcher(api, wc));
    while let Some(ev) = stream.next().await {
        let pods = match ev {
            Ok(Event::Apply(p) | Event::InitApply(p)) => vec![p],
            Ok(_) => continue,
            Err(e) => {
                warn!(error = %e, "watch of unscheduled pods");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for pod in pods {
            let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
            if pod.metadata.deletion_timestamp.is_some()
                || choose(&cfg.nodes, &ns, &name) != Some(&cfg.name)
            {
                continue;
            }
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": cfg.name},
            });
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let key = format!("{ns}/{name}");
            match api
                .create_subresource::<Value, Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                Ok(_) => info!(pod = %key, node = %cfg.name, "bound"),
                Err(e) => warn!(pod = %key, error = %e, "binding failed"),
            }
        }
    }
}

async fn pods(client: Client, cfg: NodeConfig) -> Result<(), Error> {
    let api: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", cfg.name));
    let mut stream = std::pin::pin!(watcher::watcher(api, wc));
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut listed: Option<Vec<Pod>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => listed = Some(Vec::new()),
            Ok(Event::InitApply(p)) => listed.get_or_insert_with(Vec::new).push(p),
            Ok(Event::InitDone) => {
                let pods = listed.take().unwrap_or_default();
                let uids: Vec<String> = pods.iter().filter_map(|p| p.uid()).collect();
                let gone: Vec<String> = running
                    .keys()
                    .filter(|u| !uids.contains(u))
                    .cloned()
                    .collect();
                for uid in gone {
                    teardown(&cfg, &mut running, &uid).await;
                }
                sweep(&cfg, &running);
                for pod in pods {
                    handle(&client, &cfg, &mut running, pod).await;
                }
            }
            Ok(Event::Apply(pod)) => handle(&client, &cfg, &mut running, pod).await,
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = pod.uid() {
                    teardown(&cfg, &mut running, &uid).await;
                }
            }
            Err(e) => {
                warn!(error = %e, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(())
}

/// Namespaces and records of this node that no running pod owns (left by
/// an earlier run of the runner): removed.
fn sweep(cfg: &NodeConfig, running: &HashMap<String, Running>) {
    let prefix = format!("{}-", cfg.netns);
    for ns in netns::list() {
        if ns.starts_with(&prefix) && !running.values().any(|r| r.record.netns == ns) {
            let _ = netns::delete(&ns);
        }
    }
    for r in state::all(&cfg.dir) {
        if r.node == cfg.name && !running.contains_key(&r.uid) {
            state::remove(&cfg.dir, &cfg.name, &r.namespace, &r.name);
        }
    }
}

async fn handle(
    client: &Client,
    cfg: &NodeConfig,
    running: &mut HashMap<String, Running>,
    pod: Pod,
) {
    let Some(uid) = pod.uid() else { return };
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    if pod.metadata.deletion_timestamp.is_some() {
        teardown(cfg, running, &uid).await;
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            // A second update of the same deletion: already gone.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => warn!(pod = %format!("{ns}/{name}"), error = %e, "final delete failed"),
        }
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
    if running.contains_key(&uid) && phase.as_deref() == Some("Running") {
        return;
    }
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    let ips = if host_network {
        cfg.node_ips.clone()
    } else if let Some(r) = running.get(&uid) {
        r.record.ips.clone()
    } else {
        match setup(cfg, &pod, &uid).await {
            Ok(r) => {
                let ips = r.record.ips.clone();
                running.insert(uid.clone(), r);
                ips
            }
            Err(e) => {
                warn!(pod = %format!("{ns}/{name}"), error = %e, "pod network setup failed");
                return;
            }
        }
    };
    if let Err(e) = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&running_status(cfg, &pod, &ips)),
        )
        .await
    {
        warn!(pod = %format!("{ns}/{name}"), error = %e, "status update failed");
    }
}

/// `pods/status` of a running, ready pod with `ips`.
fn running_status(cfg: &NodeConfig, pod: &Pod, ips: &[IpAddr]) -> Value {
    let now = serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null);
    let containers: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            json!({
                "name": c.name, "ready": true, "started": true, "restartCount": 0,
                "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    let condition = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let conditions: Vec<Value> = ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
        .map(condition)
        .into();
    json!({"status": {
        "phase": "Running",
        "hostIP": cfg.node_ips.first().map(ToString::to_string),
        "hostIPs": cfg.node_ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
        "podIP": ips.first().map(ToString::to_string),
        "podIPs": ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
        "startTime": now,
        "conditions": conditions,
        "containerStatuses": containers,
    }})
}

/// The ports to serve for `pod`: its container ports, the annotation's,
/// and port 80 when there are none.
pub fn ports(pod: &Pod) -> Vec<(Proto, u16)> {
    let mut out: Vec<(Proto, u16)> = Vec::new();
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        for p in c.ports.iter().flatten() {
            let proto = match p.protocol.as_deref() {
                Some("UDP") => Proto::Udp,
                Some("SCTP") => continue,
                _ => Proto::Tcp,
            };
            if let Ok(port) = u16::try_from(p.container_port) {
                out.push((proto, port));
            }
        }
    }
    if let Some(list) = pod.annotations().get(SERVE_ANNOTATION) {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (port, proto) = item.split_once('/').unwrap_or((item, "tcp"));
            let proto = if proto.eq_ignore_ascii_case("udp") {
                Proto::Udp
            } else {
                Proto::Tcp
            };
            if let Ok(port) = port.parse() {
                out.push((proto, port));
            }
        }
    }
    if out.is_empty() {
        out.push((Proto::Tcp, 80));
    }
    out.sort_by_key(|(proto, port)| (*port, *proto == Proto::Udp));
    out.dedup();
    out
}

async fn setup(cfg: &NodeConfig, pod: &Pod, uid: &str) -> Result<Running, Error> {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let netns = cfg.pod_netns(uid);
    let ports = ports(pod);
    let (cfg, uid) = (cfg.clone(), uid.to_owned());
    tokio::task::spawn_blocking(move || {
        if !netns::list().contains(&netns) {
            netns::add(&netns)?;
        }
        // No duplicate address detection: an address is usable at once.
        netns::sysctl_set(
            &netns,
            &[
                ("net.ipv6.conf.all.accept_dad", "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
            ],
        )?;
        let ips = cfg.cni().add(&netns, &uid)?;
        let servers = serve_in(&netns, &name, &ips, &ports)?;
        let record = PodRecord {
            namespace: ns,
            name,
            uid,
            node: cfg.name.clone(),
            netns,
            ips,
        };
        state::write(&cfg.dir, &record)?;
        info!(pod = %format!("{}/{}", record.namespace, record.name), ips = ?record.ips, "pod network up");
        Ok(Running {
            record,
            _servers: Some(servers),
        })
    })
    .await
    .map_err(|e| Error::Other(format!("setup task: {e}")))?
}

async fn teardown(cfg: &NodeConfig, running: &mut HashMap<String, Running>, uid: &str) {
    let Some(r) = running.remove(uid) else { return };
    let cfg = cfg.clone();
    let done = tokio::task::spawn_blocking(move || {
        let Running { record, _servers } = r;
        state::remove(&cfg.dir, &cfg.name, &record.namespace, &record.name);
        drop(_servers);
        if let Err(e) = cfg.cni().del(&record.netns, &record.uid) {
            warn!(pod = %format!("{}/{}", record.namespace, record.name), error = %e, "CNI DEL failed");
        }
        let _ = netns::delete(&record.netns);
        info!(pod = %format!("{}/{}", record.namespace, record.name), "pod network down");
    })
    .await;
    if let Err(e) = done {
        warn!(error = %e, "teardown task failed");
    }
}
