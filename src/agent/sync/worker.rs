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
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{debug, instrument, warn, Span};

use crate::cut::Cutter;
use crate::health::{Health, Stage};
use crate::k8s::node::NodeView;
use crate::metrics::{Metrics, Sizes};
use crate::observe::Shared;
use nftpolicy_core::model::Snapshot;
use nftpolicy_core::resolve::{resolve, Changes, Incremental, Resolution, Work};
use nftpolicy_core::ruleset::build::{build_cached, build_with, BuildCache, Options};
use nftpolicy_core::ruleset::guard::Gate;
use nftpolicy_core::ruleset::logging::{add_logging, LogOptions};
use nftpolicy_nft::{ApplyError, ApplyReport, Dataplane};

/// One sync for the thread to do.
pub(super) struct Job {
    /// The whole view (shared with the stores, not a copy).
    pub snapshot: Arc<Snapshot>,
    /// The keys changed since the view of take `sequence - 1`.
    pub changes: Option<Changes>,
    /// The take this view came from.
    pub sequence: u64,
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
    /// Resolve incrementally and keep the state (else from scratch).
    pub incremental: bool,
    /// How often the kept resolution is checked against a full resolve
    /// (`None`: never).
    pub resolve_check: Option<Duration>,
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
                let mut resolver = Resolver::new(&target);
                for job in rx {
                    if let Some(reason) = job.full_replace {
                        dataplane.force_full_replace(reason);
                    }
                    let (outcome, resolution) = sync_once(
                        &target,
                        &job,
                        &mut resolver,
                        &mut dataplane,
                        &metrics,
                        &health,
                    );
                    health.idle();
                    // The loop may have stopped waiting (shutdown): nothing to tell.
                    let _ = job.reply.send(outcome);
                    // After the reply: the check delays the next sync, never this one.
                    resolver.check_if_due(&job.snapshot, &resolution, &metrics, &health);
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

/// The thread's resolver: incremental, driven by the changed keys of each
/// take, and checked against a full resolve every `check_every`; and the
/// builder's cache of the sets and chains whose inputs did not change. Or,
/// with `--full-resolve`, a resolve from scratch every sync and no kept
/// state.
struct Resolver {
    node: String,
    /// `None`: every sync resolves from scratch.
    incremental: Option<Incremental>,
    /// `None` when every sync resolves from scratch (nothing to reuse).
    sets: Option<BuildCache>,
    /// The take the kept state stands for.
    sequence: Option<u64>,
    check_every: Option<Duration>,
    last_check: Instant,
}

impl Resolver {
    fn new(target: &Target) -> Self {
        Self {
            node: target.node.clone(),
            incremental: target
                .incremental
                .then(|| Incremental::new(target.node.clone())),
            sets: target.incremental.then(BuildCache::default),
            sequence: None,
            check_every: target.resolve_check,
            last_check: Instant::now(),
        }
    }

    /// The resolution of the job's view: from the kept state and the
    /// job's changes when they follow the last take, else from scratch.
    fn resolve(&mut self, job: &Job, metrics: &Metrics, health: &Health) -> Resolution {
        health.stage(Stage::Step("resolve"));
        let Some(incremental) = self.incremental.as_mut() else {
            let resolution = resolve(&job.snapshot, &self.node);
            let mut keys: Vec<_> = resolution.policies.iter().map(|p| &p.key).collect();
            keys.dedup();
            metrics.resolved(Work {
                full: true,
                compiled: keys.len(),
                relinked: 0,
                kept: 0,
            });
            return resolution;
        };
        let follows = self
            .sequence
            .is_some_and(|s| s.checked_add(1) == Some(job.sequence));
        let changes = job.changes.as_ref().filter(|_| follows);
        let resolution = incremental.resolve(&job.snapshot, changes);
        self.sequence = Some(job.sequence);
        let work = incremental.work();
        metrics.resolved(work);
        resolution
    }

    /// Resolves `snapshot` from scratch and compares when a check is due;
    /// a difference is counted, logged, and drops the kept state (the next
    /// sync resolves from scratch).
    fn check_if_due(
        &mut self,
        snapshot: &Snapshot,
        kept: &Resolution,
        metrics: &Metrics,
        health: &Health,
    ) {
        let (Some(every), Some(incremental)) = (self.check_every, self.incremental.as_mut()) else {
            return;
        };
        if incremental.work().full || self.last_check.elapsed() < every {
            return;
        }
        health.stage(Stage::Step("check"));
        let start = Instant::now();
        let differences = incremental.check(snapshot, kept);
        health.idle();
        self.last_check = Instant::now();
        metrics.resolve_checked(differences);
        if differences > 0 {
            warn!(
                differences,
                "the incrementally kept resolution differs from a full resolve; \
                 the next sync resolves from scratch (please report this)"
            );
        } else {
            debug!(took = ?start.elapsed(), "incremental resolution checked");
        }
    }
}

/// One sync: the whole ruleset for `node`, applied as one batch; and the
/// resolution it was built from.
#[instrument(skip_all, fields(pods, policies, rules))]
fn sync_once<D: Dataplane>(
    target: &Target,
    job: &Job,
    resolver: &mut Resolver,
    dataplane: &mut D,
    metrics: &Metrics,
    health: &Health,
) -> (Result<ApplyReport, ApplyError>, Resolution) {
    let start = Instant::now();
    let resolution = resolver.resolve(job, metrics, health);
    let outcome = build_and_apply(
        target,
        job,
        &resolution,
        resolver,
        dataplane,
        metrics,
        health,
    );
    let outcome = match outcome {
        Ok((report, sizes)) => {
            metrics.sync_ok(start.elapsed(), report.kind, report.duration, &sizes);
            debug!(kind = report.kind.as_str(), messages = report.messages, took = ?start.elapsed(), "synced");
            Ok(report)
        }
        Err(e) => {
            metrics.sync_failed(start.elapsed(), e.metric_label());
            Err(e)
        }
    };
    (outcome, resolution)
}

/// Builds the ruleset of `resolution` (with the sets the resolver's cache
/// still holds), applies it, and hands it to the drop-log reader and the
/// flow cutter.
fn build_and_apply<D: Dataplane>(
    target: &Target,
    job: &Job,
    resolution: &Resolution,
    resolver: &mut Resolver,
    dataplane: &mut D,
    metrics: &Metrics,
    health: &Health,
) -> Result<(ApplyReport, Sizes), ApplyError> {
    let snapshot = &job.snapshot;
    health.stage(Stage::Step("build"));
    let (opts, node_addrs) = target.options(metrics);
    let mut ruleset = match resolver.sets.as_mut() {
        Some(cache) => build_cached(resolution, &opts, cache),
        None => build_with(resolution, &opts),
    };
    let log_map = add_logging(&mut ruleset, resolution, &target.log);
    let span = Span::current();
    span.record("pods", snapshot.pods.len());
    span.record("policies", snapshot.policies.len());
    span.record("rules", ruleset.rule_count());
    health.stage(Stage::KernelCommit);
    let report = dataplane.apply(&ruleset)?;
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
    metrics.gate_armed(opts.gate.is_some());
    if let Some(observed) = &target.observed {
        observed.publish(log_map, Arc::clone(snapshot));
    }
    if let Some((cutter, _)) = &target.cut {
        cutter.submit(Arc::new(ruleset), Arc::new(node_addrs));
    }
    Ok((report, sizes))
}
