//! The dataplane thread: resolve, build and apply run here, on a thread of
//! their own, never on the async runtime.
//!
//! A sync of a large cluster takes tens of milliseconds of CPU, and a
//! netlink round trip can block for as long as the kernel takes to commit
//! a batch. On the runtime, either would stall the watchers and the
//! health server. Here the async loop hands a snapshot over, keeps beating
//! and watching while the thread works, and awaits the outcome. The thread
//! owns the dataplane; it reports each stage to [`Health`], and gives the
//! dataplane back when the loop shuts down.

use std::net::IpAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;
use tracing::{debug, instrument, warn, Span};

use crate::cut::Cutter;
use crate::health::{Health, Stage};
use crate::k8s::node::NodeView;
use crate::metrics::{Metrics, Sizes};
use crate::observe::Shared;
use nftpolicy_core::model::Snapshot;
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::build::{build_with, Options};
use nftpolicy_core::ruleset::guard::Gate;
use nftpolicy_core::ruleset::logging::{add_logging, LogOptions};
use nftpolicy_nft::{ApplyError, ApplyReport, Dataplane};

/// One sync for the thread to do.
pub(super) struct Job {
    /// The whole view (shared with the stores, not a copy).
    pub snapshot: Arc<Snapshot>,
    /// Make this apply a full replace, for this reason.
    pub full_replace: Option<&'static str>,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<ApplyReport, ApplyError>>,
}

/// What the thread builds, and where it reports each applied ruleset.
pub(super) struct Target {
    /// The node whose pods get chains.
    pub node: String,
    /// Drop and allow logging.
    pub log: LogOptions,
    /// Receives the log ids and snapshot of each applied ruleset.
    pub observed: Option<Arc<Shared>>,
    /// The node's pod CIDRs for the gate (`None`: no gate).
    pub gate: Option<Arc<NodeView>>,
    /// The cutting thread and the mark bit of cut flows (`None`: flows
    /// are kept).
    pub cut: Option<(Cutter, u32)>,
    /// The node's network namespace (for its addresses).
    pub netns: Option<String>,
}

impl Target {
    /// The build options of this sync, and the node's addresses (read
    /// when the gate or the cutting needs them). A gate that cannot know
    /// the node's addresses stays off: never a closed node.
    fn options(&self, metrics: &Metrics) -> (Options, Vec<IpAddr>) {
        let cidrs = self.gate.as_ref().map(|g| g.cidrs()).unwrap_or_default();
        let node_addrs = if cidrs.is_empty() && self.cut.is_none() {
            Vec::new()
        } else {
            match crate::addrs::node_addrs(self.netns.as_deref()) {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "cannot read the node's addresses; the gate stays off for this sync");
                    metrics.error("node_addrs");
                    return (
                        Options {
                            gate: None,
                            cut_mark: self.cut.as_ref().map(|c| c.1),
                        },
                        Vec::new(),
                    );
                }
            }
        };
        let gate = (!cidrs.is_empty()).then(|| Gate {
            pod_cidrs: cidrs,
            node_addrs: node_addrs.clone(),
        });
        let opts = Options {
            gate,
            cut_mark: self.cut.as_ref().map(|c| c.1),
        };
        (opts, node_addrs)
    }
}

/// The running thread. Dropping the sender side ends it.
pub(super) struct Worker<D> {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<D>>,
}

impl<D: Dataplane + Send + 'static> Worker<D> {
    /// Starts the thread for `target`, owning `dataplane`.
    pub(super) fn start(
        target: Target,
        dataplane: D,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("dataplane".into())
            .spawn(move || {
                let mut dataplane = dataplane;
                for job in rx {
                    if let Some(reason) = job.full_replace {
                        dataplane.force_full_replace(reason);
                    }
                    let outcome =
                        sync_once(&target, job.snapshot, &mut dataplane, &metrics, &health);
                    health.idle();
                    // The loop may have stopped waiting (shutdown): nothing to tell.
                    let _ = job.reply.send(outcome);
                }
                dataplane
            })?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a job; `false` if the thread is gone (it panicked).
    pub(super) fn submit(&self, job: Job) -> bool {
        self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok())
    }

    /// Stops the thread after its current job and returns the dataplane
    /// (`None` if the thread panicked).
    pub(super) fn stop(mut self) -> Option<D> {
        self.jobs.take();
        self.thread.take().and_then(|t| t.join().ok())
    }
}

/// One sync: the whole ruleset for `node`, applied as one batch.
#[instrument(skip_all, fields(pods, policies, rules))]
fn sync_once<D: Dataplane>(
    target: &Target,
    snapshot: Arc<Snapshot>,
    dataplane: &mut D,
    metrics: &Metrics,
    health: &Health,
) -> Result<ApplyReport, ApplyError> {
    let start = Instant::now();
    health.stage(Stage::Step("resolve"));
    let resolution = resolve(&snapshot, &target.node);
    health.stage(Stage::Step("build"));
    let (opts, node_addrs) = target.options(metrics);
    let mut ruleset = build_with(&resolution, &opts);
    let log_map = add_logging(&mut ruleset, &resolution, &target.log);
    let span = Span::current();
    span.record("pods", snapshot.pods.len());
    span.record("policies", snapshot.policies.len());
    span.record("rules", ruleset.rule_count());
    health.stage(Stage::KernelCommit);
    match dataplane.apply(&ruleset) {
        Ok(report) => {
            let isolated = resolution.pods.iter();
            let isolated = isolated.filter(|p| !p.ingress.is_empty() || !p.egress.is_empty());
            let sizes = Sizes {
                pods: snapshot.pods.len(),
                local_pods: resolution.pods.len(),
                isolated_pods: isolated.count(),
                policies: snapshot.policies.len(),
                namespaces: snapshot.namespaces.len(),
                chains: ruleset.chains.len(),
                rules: ruleset.rule_count(),
                set_elements: ruleset.element_count(),
            };
            metrics.sync_ok(start.elapsed(), report.kind, report.duration, &sizes);
            metrics.gate_armed(opts.gate.is_some());
            if let Some(observed) = &target.observed {
                observed.publish(log_map, snapshot);
            }
            if let Some((cutter, _)) = &target.cut {
                cutter.submit(Arc::new(ruleset), Arc::new(node_addrs));
            }
            debug!(kind = report.kind.as_str(), messages = report.messages, took = ?start.elapsed(), "synced");
            Ok(report)
        }
        Err(e) => {
            metrics.sync_failed(start.elapsed(), e.metric_label());
            Err(e)
        }
    }
}
