//! The sync loop: watch events → (debounce) → snapshot → resolve → build →
//! one dataplane apply.
//!
//! - Level-triggered: every sync builds the whole desired ruleset from the
//!   whole snapshot; the dataplane sends only the difference. An event only
//!   says "something changed".
//! - Debounced: after a change the loop waits until no event came for
//!   `debounce` (but no longer than `max_delay` in all), and keeps sync
//!   starts at least `min_interval` apart, so a burst of a thousand events
//!   gives one or two syncs, and a lone event waits only `debounce`.
//! - Nothing is applied before every watch has listed completely; until
//!   then the table a previous run left stays as it is.
//! - A failed apply leaves the old ruleset in the kernel (the batch is all
//!   or nothing); the loop retries with exponential backoff and the next
//!   apply is a full replace (the dataplane's rule). Events during the
//!   backoff wait for the retry.
//! - `ApplyReport::deferred > 0`: another sync after `deferred_delay`.
//! - Every `full_replace` (1 h), the first resync after it is a full
//!   replace, which also repairs element drift the cheap check cannot see.
//! - Every `resync`, a sync runs even without events (the dataplane checks
//!   for drift on each apply).
//! - Shutdown (SIGTERM, SIGINT) stops the loop and leaves the table in
//!   place: a rolling update must never open the node.
//! - Resolve, build and apply run on the dataplane thread (`worker.rs`),
//!   never on the async runtime; the loop keeps beating while it waits.
//! - The guard (`docs/dataplane.md`): with the gate on, nothing is applied
//!   before the node's pod CIDRs are known (the Node listed, or a flag), and
//!   a change of them is a sync; with cutting on, each commit is followed by
//!   a re-judging of the node's established flows on the cutting thread.

mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{info, warn};

use crate::cut::Cutter;
use crate::health::Health;
use crate::k8s::node::NodeView;
use crate::k8s::{self, Stores, Take, Taken};
use crate::metrics::Metrics;
use ipnet::IpNet;
use nftpolicy_core::ruleset::logging::LogOptions;
use nftpolicy_nft::{ApplyError, ApplyReport, Dataplane};
use worker::{Job, Worker};

/// How the loop paces itself.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The node whose pods get chains.
    pub node: String,
    /// Quiet time after the last change before a sync.
    pub debounce: Duration,
    /// Longest wait from a change to its sync, however busy the API.
    pub max_delay: Duration,
    /// Least time between two sync starts.
    pub min_interval: Duration,
    /// A sync at least this often, events or not.
    pub resync: Duration,
    /// A full replace at least this often (on the first resync after it).
    pub full_replace: Duration,
    /// First retry delay after a failed apply (doubles each failure).
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Delay of the follow-up sync when an apply deferred chain deletions.
    pub deferred_delay: Duration,
    /// Resolve each sync from the kept state and the changed objects
    /// (`false`: from scratch, keeping nothing between syncs).
    pub incremental: bool,
    /// How often the incrementally kept resolution is checked against a
    /// full resolve, after a sync (`None`: never).
    pub resolve_check: Option<Duration>,
    /// Drop and allow logging in the built ruleset (off by default here;
    /// the `controller` command turns drop logging on).
    pub log: LogOptions,
    /// Where each applied ruleset's log ids and snapshot go, for the NFLOG
    /// reader (`observe`).
    pub observed: Option<Arc<crate::observe::Shared>>,
    /// The gate of unknown pod addresses and the cutting of flows (both
    /// off by default here; the `controller` command turns them on).
    pub guard: Guard,
}

/// Where the gate learns the node's pod CIDRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateSource {
    /// No gate: unknown pod addresses pass (as before the gate existed).
    Off,
    /// `spec.podCIDRs` of this node's Node object, watched.
    Node,
    /// These CIDRs (`--pod-cidr`), for setups whose Nodes have none.
    Fixed(Vec<IpNet>),
}

/// The guard before the policies (`nftpolicy_core::ruleset::guard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The gate's pod CIDRs.
    pub gate: GateSource,
    /// The conntrack mark bit of cut flows; `None`: established flows are
    /// kept until conntrack forgets them.
    pub cut_mark: Option<u32>,
    /// The network namespace of the node (`/run/netns/<name>`; `None`:
    /// this one): its addresses and its conntrack table.
    pub netns: Option<String>,
}

impl Guard {
    /// Neither gate nor cutting.
    pub const OFF: Guard = Guard {
        gate: GateSource::Off,
        cut_mark: None,
        netns: None,
    };
}

/// The conntrack mark bit of cut flows unless told otherwise (one bit;
/// the rest of the mark is left to others).
pub const DEFAULT_CUT_MARK: u32 = 0x2000_0000;

impl SyncConfig {
    /// The defaults for `node`: debounce 20 ms (at most 1 s), 100 ms between syncs,
    /// resync every 5 min, retries from 0.5 s to 30 s.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            debounce: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
            min_interval: Duration::from_millis(100),
            resync: Duration::from_secs(300),
            full_replace: Duration::from_secs(3600),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            deferred_delay: Duration::from_millis(200),
            incremental: true,
            resolve_check: Some(Duration::from_secs(60)),
            log: LogOptions::OFF,
            observed: None,
            guard: Guard::OFF,
        }
    }
}

/// Starts the watchers on `client` and the dataplane thread (which owns
/// `dataplane`), and runs the loop until `shutdown` completes. The table
/// stays in the kernel afterwards. Returns the dataplane once the thread
/// has finished its last sync (`None` if the thread panicked or could not
/// start).
pub async fn run<D: Dataplane + Send + 'static>(
    client: kube::Client,
    dataplane: D,
    cfg: &SyncConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Option<D> {
    let (gate, node_watch) = match &cfg.guard.gate {
        GateSource::Off => {
            metrics.gate_armed(false);
            (None, None)
        }
        GateSource::Fixed(cidrs) => (Some(NodeView::fixed(cidrs.clone())), None),
        GateSource::Node => {
            let (view, task) = k8s::node::watch(client.clone(), cfg.node.clone(), metrics.clone());
            (Some(view), Some(task))
        }
    };
    let cutter = cfg.guard.cut_mark.and_then(|bit| {
        Cutter::start(cfg.guard.netns.clone(), bit, metrics.clone())
            .map_err(|e| tracing::error!(error = %e, "cannot start the flow-cutting thread; flows are not cut"))
            .ok()
    });
    let target = worker::Target {
        node: cfg.node.clone(),
        log: cfg.log,
        observed: cfg.observed.clone(),
        gate: gate.clone(),
        cut: cutter.map(|c| (c, cfg.guard.cut_mark.unwrap_or(DEFAULT_CUT_MARK))),
        netns: cfg.guard.netns.clone(),
        incremental: cfg.incremental,
        resolve_check: cfg.resolve_check,
    };
    let worker = match Worker::start(target, dataplane, metrics.clone(), health.clone()) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the dataplane thread");
            return None;
        }
    };
    let stores = Arc::new(Stores::new(metrics.clone()));
    let _watchers = k8s::spawn(client, stores.clone());
    info!(node = %cfg.node, "watching pods, namespaces and networkpolicies");
    tokio::select! {
        _ = shutdown => info!("stopping; the table stays in place"),
        _ = run_loop(&stores, gate.as_deref(), &worker, cfg, &metrics, &health) => {}
    }
    if let Some(task) = node_watch {
        task.abort();
    }
    tokio::task::spawn_blocking(move || worker.stop())
        .await
        .ok()
        .flatten()
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Completes when the gate's CIDRs change (never without a gate).
async fn gate_changed(gate: Option<&NodeView>) {
    match gate {
        Some(view) => view.changed().await,
        None => std::future::pending().await,
    }
}

async fn run_loop<D: Dataplane + Send + 'static>(
    stores: &Stores,
    gate: Option<&NodeView>,
    worker: &Worker<D>,
    cfg: &SyncConfig,
    metrics: &Metrics,
    health: &Health,
) {
    let mut last_start: Option<Instant> = None;
    // Arrival of the oldest event not yet in the kernel.
    let mut unenforced: Option<std::time::Instant> = None;
    let mut retry_delay = cfg.retry_min;
    let mut retry_at: Option<Instant> = None;
    let mut soon: Option<Instant> = None;
    let mut next_resync = Instant::now() + cfg.resync;
    let mut next_full = Instant::now() + cfg.full_replace;
    let mut waiting_logged = false;
    let mut node_waiting_logged = false;
    // The gate's CIDRs changed since the last sync started.
    let mut gate_dirty = false;
    loop {
        health.beat();
        let timer = [retry_at, soon]
            .into_iter()
            .flatten()
            .fold(next_resync, Instant::min);
        let timed = tokio::select! {
            _ = stores.changed() => false,
            _ = gate_changed(gate) => {
                gate_dirty = true;
                false
            }
            _ = sleep_until(timer) => true,
            _ = sleep(health.beat_every()) => continue,
        };
        // The gate a previous run left must not be lifted by a sync that
        // does not know the CIDRs yet.
        if gate.is_some_and(|g| !g.ready()) {
            if !node_waiting_logged {
                info!(node = %cfg.node, "waiting for this node's Node object (pod CIDRs of the gate); the existing table stays");
                node_waiting_logged = true;
            }
            continue;
        }
        if retry_at.is_some_and(|r| Instant::now() < r) {
            continue; // backing off: the change waits for the retry
        }
        debounce(stores, cfg, last_start).await;
        let now = Instant::now();
        let due = timed && (retry_at.is_some() || soon.is_some_and(|s| s <= now));
        let resync = now >= next_resync;
        // Takes the snapshot only if there is something to do: a permit
        // stored during the last sync wakes the loop with nothing changed.
        let force = due || resync || gate_dirty || last_start.is_none();
        let taken = match stores.take(force) {
            Take::Snapshot(taken) => taken,
            Take::Unchanged => continue,
            Take::NotListed => {
                if !waiting_logged {
                    info!("waiting for every watch to list completely; the existing table stays");
                    waiting_logged = true;
                }
                continue;
            }
        };
        if let Some(t) = taken.pending_since {
            unenforced = Some(unenforced.map_or(t, |u| u.min(t)));
        }
        last_start = Some(now);
        gate_dirty = false;
        let mut full_replace = None;
        if resync {
            next_resync = now + cfg.resync;
            if now >= next_full {
                next_full = now + cfg.full_replace;
                full_replace = Some("periodic full replace");
            }
        }
        soon = None;
        match sync(worker, taken, full_replace, health).await {
            Ok(report) => {
                health.apply_ok();
                if let Some(t) = unenforced.take() {
                    metrics.enforced(t);
                }
                retry_at = None;
                retry_delay = cfg.retry_min;
                if report.deferred > 0 {
                    soon = Some(Instant::now() + cfg.deferred_delay);
                }
            }
            Err(e) => {
                health.apply_failed();
                warn!(error = %e, retry_in = ?retry_delay, "apply failed; the previous ruleset stays, the next apply is a full replace");
                retry_at = Some(Instant::now() + retry_delay);
                retry_delay = (retry_delay * 2).min(cfg.retry_max);
            }
        }
    }
}

/// Why a sync did not happen or failed.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// The dataplane rejected or could not apply the ruleset.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The dataplane thread is gone (it panicked); nothing more can be applied.
    #[error("the dataplane thread has stopped")]
    WorkerGone,
}

/// Hands one sync to the dataplane thread and waits for it, beating
/// meanwhile: the thread reports its own stages to `health`.
async fn sync<D: Dataplane + Send + 'static>(
    worker: &Worker<D>,
    taken: Taken,
    full_replace: Option<&'static str>,
    health: &Health,
) -> Result<ApplyReport, SyncError> {
    let (reply, mut outcome) = oneshot::channel();
    let job = Job {
        snapshot: taken.snapshot,
        changes: taken.changes,
        sequence: taken.sequence,
        full_replace,
        reply,
    };
    if !worker.submit(job) {
        return Err(SyncError::WorkerGone);
    }
    loop {
        tokio::select! {
            r = &mut outcome => return r.map_err(|_| SyncError::WorkerGone)?.map_err(SyncError::from),
            _ = sleep(health.beat_every()) => health.beat(),
        }
    }
}

/// Waits until no change came for `debounce` (at most `max_delay`), and
/// at least `min_interval` after the last sync start.
async fn debounce(stores: &Stores, cfg: &SyncConfig, last_start: Option<Instant>) {
    let give_up = Instant::now() + cfg.max_delay;
    let mut seen = stores.generation();
    loop {
        let mut at = Instant::now() + cfg.debounce;
        if let Some(last) = last_start {
            at = at.max(last + cfg.min_interval);
        }
        sleep_until(at.min(give_up.max(Instant::now()))).await;
        let now = stores.generation();
        if now == seen || Instant::now() >= give_up {
            return;
        }
        seen = now;
    }
}

/// What `kube-nftpolicy controller` runs with.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Loop pacing and the node name.
    pub sync: SyncConfig,
    /// Apply inside `/run/netns/<netns>` (tests) instead of the current namespace.
    pub netns: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    pub metrics_addr: std::net::SocketAddr,
    /// Unready after applies fail for this long.
    pub unready_after: Duration,
    /// Most `(namespace, policy)` pairs of `drops_total`.
    pub drops_metric_max_series: usize,
    /// Serve `/events` to clients on other hosts too.
    pub observe_remote: bool,
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// No kubeconfig or in-cluster configuration, or the client failed.
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The netfilter socket could not be opened.
    #[error(transparent)]
    Dataplane(#[from] ApplyError),
    /// The metrics address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The agent: client from the kubeconfig or in-cluster, netlink dataplane,
/// health and metrics server, then [`run`] until SIGTERM.
pub async fn controller(opts: ControllerOptions) -> Result<(), ControllerError> {
    use nftpolicy_nft::NetlinkDataplane;
    if opts.netns.is_none() {
        check_bridge_netfilter();
    }
    let client = kube::Client::try_default()
        .await
        .map_err(ControllerError::Client)?;
    let dataplane = NetlinkDataplane::new(opts.netns.as_deref())?;
    let metrics = Arc::new(Metrics::new().with_max_drop_series(opts.drops_metric_max_series));
    let mut sync = opts.sync.clone();
    // Drop/allow logging: the NFLOG reader and the event stream, on their
    // own thread; nothing of it can hold up a sync.
    let (hub, _reader) = if sync.log.is_off() {
        (None, None)
    } else {
        let shared = Arc::new(crate::observe::Shared::new(sync.node.clone()));
        let hub = Arc::new(crate::observe::Hub::default().remote_clients(opts.observe_remote));
        sync.observed = Some(shared.clone());
        let cfg = crate::observe::reader::ReaderConfig {
            netns: opts.netns.clone(),
            group: sync.log.group,
        };
        let reader =
            crate::observe::reader::Reader::start(cfg, shared, metrics.clone(), hub.clone())
                .map_err(|e| tracing::error!(error = %e, "cannot start the NFLOG reader thread"))
                .ok();
        (Some(hub), reader)
    };
    let health = Arc::new(Health::new(opts.unready_after, Duration::from_secs(60)));
    let listener = crate::server::bind(opts.metrics_addr)
        .await
        .map_err(|source| ControllerError::Bind {
            addr: opts.metrics_addr,
            source,
        })?;
    info!(addr = %opts.metrics_addr, "serving /metrics, /healthz, /readyz, /events");
    let server = tokio::spawn(crate::server::serve_with_events(
        listener,
        metrics.clone(),
        health.clone(),
        hub,
    ));
    run(client, dataplane, &sync, metrics, health, shutdown_signal()).await;
    server.abort();
    Ok(())
}

/// Same-node pod traffic crosses the `cni0` bridge: without
/// `br_netfilter` the forward hook never sees it. Says so loudly.
fn check_bridge_netfilter() {
    const KEY: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    match std::fs::read_to_string(KEY) {
        Ok(v) if v.trim() == "1" => {}
        Ok(v) => tracing::error!(
            value = v.trim(),
            "{KEY} is not 1: traffic between pods of the same node is NOT filtered \
             (sysctl -w net.bridge.bridge-nf-call-iptables=1)"
        ),
        Err(_) => tracing::error!(
            "br_netfilter is not loaded: traffic between pods of the same node is NOT \
             filtered (modprobe br_netfilter)"
        ),
    }
}
