//! This node's Node object, for the gate: its pod CIDRs (`spec.podCIDRs`,
//! else `spec.podCIDR`).
//!
//! One watcher on the Node named like the agent's node. Until it has
//! listed once (or failed for good), [`NodeView::ready`] is false and the
//! agent does not sync: the gate of the table a previous run left must not
//! be lifted by a sync that does not know the CIDRs yet. A Node without pod
//! CIDRs, a missing Node, or a Node the agent may not read (403) turns the
//! gate off with a clear log line and `gate_armed 0`, never a closed node.

use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::watch::{classify, Retry, WatchFailure};
use crate::metrics::Metrics;

/// What the agent knows of its Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    /// Listed once (or given up on).
    ready: bool,
    /// The pod CIDRs; empty when the Node has none or cannot be read.
    cidrs: Vec<IpNet>,
}

/// The Node's pod CIDRs as the sync loop sees them.
pub struct NodeView {
    state: Mutex<State>,
    notify: Notify,
}

impl NodeView {
    fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        }
    }

    /// A view that needs no watch: the CIDRs given by a flag.
    pub fn fixed(cidrs: Vec<IpNet>) -> Arc<Self> {
        let v = Self::new();
        *v.lock() = State { ready: true, cidrs };
        Arc::new(v)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the Node was read (or given up on).
    pub fn ready(&self) -> bool {
        self.lock().ready
    }

    /// The pod CIDRs (empty: no gate).
    pub fn cidrs(&self) -> Vec<IpNet> {
        self.lock().cidrs.clone()
    }

    /// Waits for a change of the CIDRs.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    fn set(&self, new: State) {
        let mut st = self.lock();
        if *st != new {
            *st = new;
            self.notify.notify_one();
        }
    }
}

/// The pod CIDRs of `node`, parsed; unparsable ones are logged and left out.
fn cidrs_of(node: &Node) -> Vec<IpNet> {
    let spec = node.spec.as_ref();
    let list: Vec<String> = spec
        .and_then(|s| s.pod_cidrs.clone())
        .filter(|l| !l.is_empty())
        .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
        .unwrap_or_default();
    list.iter()
        .filter_map(|c| match c.parse::<IpNet>() {
            Ok(n) => Some(n.trunc()),
            Err(e) => {
                warn!(cidr = %c, error = %e, "Node pod CIDR cannot be read; left out of the gate");
                None
            }
        })
        .collect()
}

/// Starts watching the Node `name`.
pub fn watch(
    client: Client,
    name: String,
    metrics: Arc<Metrics>,
) -> (Arc<NodeView>, JoinHandle<()>) {
    let view = Arc::new(NodeView::new());
    let v = view.clone();
    let task = tokio::spawn(async move {
        let api: Api<Node> = Api::all(client);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = std::pin::pin!(watcher::watcher(api, cfg));
        let mut listed: Option<Vec<IpNet>> = None;
        let mut retry = Retry::default();
        while let Some(item) = stream.next().await {
            if let Ok(event) = &item {
                retry.ok(event);
            }
            match item {
                Ok(Event::Init) => listed = Some(Vec::new()),
                Ok(Event::InitApply(n)) => listed.get_or_insert_with(Vec::new).extend(cidrs_of(&n)),
                Ok(Event::InitDone) => {
                    let cidrs = listed.take().unwrap_or_default();
                    report(&name, &cidrs, &metrics);
                    v.set(State { ready: true, cidrs });
                }
                Ok(Event::Apply(n)) => {
                    let cidrs = cidrs_of(&n);
                    if cidrs != v.cidrs() {
                        report(&name, &cidrs, &metrics);
                    }
                    v.set(State { ready: true, cidrs });
                }
                Ok(Event::Delete(_)) => {
                    report(&name, &[], &metrics);
                    v.set(State {
                        ready: true,
                        cidrs: Vec::new(),
                    });
                }
                Err(e) => {
                    let failure = classify(&e);
                    metrics.error(failure.metric_label());
                    if matches!(
                        failure,
                        WatchFailure::Forbidden | WatchFailure::Unauthorized
                    ) && !v.ready()
                    {
                        error!(node = %name, error = %e, "cannot read this node's Node object \
                               (the ClusterRole needs get/list/watch on nodes): the gate is off until it can");
                        metrics.gate_armed(false);
                        v.set(State {
                            ready: true,
                            cidrs: Vec::new(),
                        });
                    } else {
                        warn!(node = %name, error = %e, "Node watch failed; retrying");
                    }
                    retry.failed().await;
                }
            }
        }
    });
    (view, task)
}

fn report(name: &str, cidrs: &[IpNet], metrics: &Metrics) {
    if cidrs.is_empty() {
        error!(node = %name, "the Node has no spec.podCIDRs (or does not exist): the gate of \
               unknown pod addresses is off; pass --pod-cidr to arm it");
        metrics.error("no_pod_cidrs");
        metrics.gate_armed(false);
    } else {
        info!(node = %name, cidrs = ?cidrs, "pod CIDRs of this node: the gate arms with the next sync");
        metrics.gate_armed(true);
    }
}
