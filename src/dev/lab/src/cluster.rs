//! A lab cluster driven by the real engine: a [`Lab`] of namespaces, the
//! `Snapshot` that describes it, and one [`NetlinkDataplane`] per node
//! namespace. [`Cluster::apply`] resolves, builds and applies each node's
//! table (incrementally after the first), exactly as the agent does; then
//! the lab's prober checks the result with real packets.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Host, Lab, LabError, Matrix, Proto, Server, Stack};
use nftpolicy_core::model::{ContainerPort, NamespacedName, Policy, Snapshot};
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::build::{build_with, Options};
use nftpolicy_core::ruleset::Ruleset;
use nftpolicy_nft::{ApplyError, ApplyReport, Dataplane, NetlinkDataplane};
use nftpolicy_testkit::{self as testing, PodExt};

/// Why a cluster step failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The lab could not be built or probed.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// A node's table could not be applied.
    #[error("applying the table of {node}: {source}")]
    Apply {
        /// The node.
        node: String,
        /// What the dataplane said.
        #[source]
        source: ApplyError,
    },
}

/// A port a lab pod serves, with an optional container port name.
#[derive(Debug, Clone, Copy)]
pub struct Serve<'a> {
    /// TCP or UDP.
    pub proto: Proto,
    /// The port.
    pub port: u16,
    /// `ports[].name` of the container port, if any.
    pub name: Option<&'a str>,
}

/// A lab whose nodes enforce the snapshot's policies.
pub struct Cluster {
    /// The namespaces, servers and prober.
    pub lab: Lab,
    /// What the engine sees: namespaces, pods (with their lab addresses), policies.
    pub snapshot: Snapshot,
    dataplanes: BTreeMap<String, NetlinkDataplane>,
    pods: BTreeMap<NamespacedName, Host>,
    servers: Vec<Server>,
    /// The build options of each node (the node's guards); none: policies only.
    pub options: BTreeMap<String, Options>,
}

impl Cluster {
    /// Two nodes (`node1`, `node2`) wired together and an external host `ext`
    /// on node 1; each node gets a dataplane in its namespace.
    pub fn new() -> Result<Self, ClusterError> {
        let lab = Lab::cluster()?;
        let mut dataplanes = BTreeMap::new();
        for i in [1, 2] {
            let node = lab.node(i)?;
            let dp = NetlinkDataplane::new(Some(node.netns())).map_err(|source| {
                ClusterError::Apply {
                    node: node.name().to_owned(),
                    source,
                }
            })?;
            dataplanes.insert(node.name().to_owned(), dp);
        }
        Ok(Self {
            lab,
            snapshot: Snapshot::default(),
            dataplanes,
            pods: BTreeMap::new(),
            servers: Vec::new(),
            options: BTreeMap::new(),
        })
    }

    /// Adds a namespace with labels (plus `kubernetes.io/metadata.name`).
    pub fn add_namespace(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.snapshot
            .add_namespace(testing::namespace(name, labels.iter().copied()));
    }

    /// Creates pod `ns/name` on node `node` (1 or 2) with addresses of
    /// `stack`, starts servers on `serve`, and adds it to the snapshot with
    /// its labels, node, addresses and named container ports. Not applied yet.
    pub fn add_pod(
        &mut self,
        node: u8,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        stack: Stack,
        serve: &[Serve<'_>],
    ) -> Result<Host, ClusterError> {
        let node_host = self.lab.node(node)?.clone();
        let host = self
            .lab
            .add_pod_auto(&node_host, &format!("{ns}-{name}"), stack)?;
        let ports: Vec<(Proto, u16)> = serve.iter().map(|s| (s.proto, s.port)).collect();
        if !ports.is_empty() {
            self.servers.push(self.lab.serve(&host, &ports)?);
        }
        let mut pod = testing::pod(ns, name)
            .labels(labels.iter().copied())
            .node(node_host.name());
        pod.ips = self.lab.addresses(&host).to_vec();
        pod.ports = serve
            .iter()
            .filter_map(|s| {
                Some(ContainerPort {
                    name: s.name.map(str::to_owned),
                    port: std::num::NonZeroU16::new(s.port)?,
                    protocol: s.proto.into(),
                })
            })
            .collect();
        self.snapshot.add_pod(pod);
        self.pods
            .insert(NamespacedName::new(ns, name), host.clone());
        Ok(host)
    }

    /// The lab host of pod `ns/name`.
    pub fn pod(&self, ns: &str, name: &str) -> Result<&Host, ClusterError> {
        self.pods
            .get(&NamespacedName::new(ns, name))
            .ok_or_else(|| LabError::Setup(format!("no pod {ns}/{name} in the cluster")).into())
    }

    /// Every pod host, sorted by `ns/name`.
    pub fn pods(&self) -> impl Iterator<Item = (&NamespacedName, &Host)> {
        self.pods.iter()
    }

    /// Replaces every policy of the snapshot (not applied yet).
    pub fn set_policies<P: Into<std::sync::Arc<Policy>>>(
        &mut self,
        policies: impl IntoIterator<Item = P>,
    ) {
        self.snapshot.policies.clear();
        policies
            .into_iter()
            .for_each(|p| self.snapshot.add_policy(p));
    }

    /// The table node `node` should hold for the current snapshot.
    pub fn desired(&self, node: &str) -> Ruleset {
        let opts = self.options.get(node).cloned().unwrap_or_default();
        build_with(&resolve(&self.snapshot, node), &opts)
    }

    /// Resolves, builds and applies every node's table: a full replace the
    /// first time, then only the difference. Applies again when chains were
    /// left for deletion, so that the kernel holds exactly the desired table.
    pub fn apply(&mut self) -> Result<Vec<(String, ApplyReport)>, ClusterError> {
        let mut out = Vec::new();
        let desired: Vec<(String, Ruleset)> = self
            .dataplanes
            .keys()
            .map(|n| (n.clone(), self.desired(n)))
            .collect();
        for (node, ruleset) in desired {
            let dp = self
                .dataplanes
                .get_mut(&node)
                .expect("dataplane of every node");
            let fail = |source| ClusterError::Apply {
                node: node.clone(),
                source,
            };
            let mut report = dp.apply(&ruleset).map_err(fail)?;
            if report.deferred > 0 {
                report = dp.apply(&ruleset).map_err(fail)?;
            }
            out.push((node, report));
        }
        Ok(out)
    }

    /// The dataplane of `node` (`node1`, `node2`).
    pub fn dataplane(&mut self, node: &str) -> Option<&mut NetlinkDataplane> {
        self.dataplanes.get_mut(node)
    }

    /// Probes every pod to every pod on `ports`, in both families where both
    /// ends have one.
    pub fn matrix(&self, ports: &[(Proto, u16)], timeout: Duration) -> Matrix {
        let hosts: Vec<&Host> = self.pods.values().collect();
        self.lab.probe_matrix(&hosts, &hosts, ports, timeout)
    }
}
