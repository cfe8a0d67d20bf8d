//! Prometheus metrics (`/metrics`, text format); the health state behind
//! `/healthz` and `/readyz` is in `health.rs`.
//!
//! Every name starts with `kube_nftpolicy_`. Error kinds are the stable
//! `metric_label()`s of the error enums (`rejected`, `socket`, `io`,
//! `invalid`) plus `watch` (a watch or list failed) and `invalid_object`
//! (an API object that cannot be read, skipped).

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use nftpolicy_core::resolve::Work;
use nftpolicy_nft::ApplyKind;

/// One label, `name="value"`.
type Label = [(&'static str, &'static str); 1];

fn seconds_histogram() -> Histogram {
    // 0.5 ms to ~33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// Every metric of the agent.
pub struct Metrics {
    registry: Registry,
    sync_duration: Histogram,
    syncs: Family<Label, Counter>,
    apply_duration: Family<Label, Histogram, fn() -> Histogram>,
    event_to_enforced: Histogram,
    errors: Family<Label, Counter>,
    watch_events: Family<Label, Counter>,
    lists: Family<Label, Counter>,
    flows_cut: Counter,
    flows_restored: Counter,
    resolves: Family<Label, Counter>,
    policies_compiled: Family<Label, Counter>,
    resolve_checks: Counter,
    resolve_differences: Counter,
    gate_armed: Gauge,
    invalid_objects: Family<Label, Gauge>,
    last_success: Gauge<f64, AtomicU64>,
    /// Gauges of the last successful sync, by name.
    objects: Family<Label, Gauge>,
    /// NFLOG records by verdict (`drop`, `allow`, `unknown`).
    log_records: Family<Label, Counter>,
    /// Logged drops by namespace and isolating policy (capped, see `log_record`).
    drops: Family<Vec<(String, String)>, Counter>,
    /// The (namespace, policy) label pairs of `drops` so far.
    drop_series: Mutex<HashSet<(String, String)>>,
    /// Most label pairs of `drops` before the rest fold into `other`.
    max_drop_series: usize,
}

/// Most distinct `(namespace, policy)` pairs `drops_total` gets by default.
pub const MAX_DROP_SERIES: usize = 500;

/// Sizes of the cluster view and of the applied table after a sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    /// Pods in the snapshot (every node).
    pub pods: usize,
    /// Pods of this node that take part in policy.
    pub local_pods: usize,
    /// Local pods isolated in some direction.
    pub isolated_pods: usize,
    /// NetworkPolicies in the snapshot.
    pub policies: usize,
    /// Namespaces in the snapshot.
    pub namespaces: usize,
    /// Chains of the table.
    pub chains: usize,
    /// Rules of the table.
    pub rules: usize,
    /// Set and map elements of the table.
    pub set_elements: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("kube_nftpolicy"),
            sync_duration: seconds_histogram(),
            syncs: Family::default(),
            apply_duration: Family::new_with_constructor(seconds_histogram),
            event_to_enforced: seconds_histogram(),
            errors: Family::default(),
            watch_events: Family::default(),
            lists: Family::default(),
            flows_cut: Counter::default(),
            flows_restored: Counter::default(),
            resolves: Family::default(),
            policies_compiled: Family::default(),
            resolve_checks: Counter::default(),
            resolve_differences: Counter::default(),
            gate_armed: Gauge::default(),
            invalid_objects: Family::default(),
            last_success: Gauge::default(),
            objects: Family::default(),
            log_records: Family::default(),
            drops: Family::default(),
            drop_series: Mutex::new(HashSet::new()),
            max_drop_series: MAX_DROP_SERIES,
        };
        let r = &mut m.registry;
        r.register(
            "sync_duration_seconds",
            "Time of one sync: snapshot, resolve, build and apply",
            m.sync_duration.clone(),
        );
        r.register("syncs", "Syncs by result (success, error)", m.syncs.clone());
        r.register(
            "apply_duration_seconds",
            "Time of one successful apply, by kind (full, incremental, no_change)",
            m.apply_duration.clone(),
        );
        r.register(
            "event_to_enforced_seconds",
            "From the arrival of the oldest watch event a sync covers to the kernel commit",
            m.event_to_enforced.clone(),
        );
        r.register("errors", "Errors by kind", m.errors.clone());
        r.register(
            "watch_events",
            "Watch events received, by object kind",
            m.watch_events.clone(),
        );
        r.register(
            "flows_cut",
            "Established flows cut because a policy change no longer allows them",
            m.flows_cut.clone(),
        );
        r.register(
            "flows_restored",
            "Cut flows let through again because a later change allows them",
            m.flows_restored.clone(),
        );
        r.register(
            "resolves",
            "Resolutions of a sync, by kind (full: from scratch; incremental: from the \
             kept state and the changed objects)",
            m.resolves.clone(),
        );
        r.register(
            "resolve_policies",
            "Policies selecting local pods per resolution, summed, by how \
             (compiled; relinked: only their peer sets' pods changed; kept: \
             taken over unchanged from the last sync)",
            m.policies_compiled.clone(),
        );
        r.register(
            "resolve_checks",
            "Background checks of the incrementally kept resolution against a full resolve",
            m.resolve_checks.clone(),
        );
        r.register(
            "resolve_check_differences",
            "Local pods and compiled policies the incremental resolution had wrong, found by \
             the checks (should stay 0; each difference also resets the kept state)",
            m.resolve_differences.clone(),
        );
        r.register(
            "gate_armed",
            "1 when traffic of unknown addresses of this node's pod CIDRs is rejected",
            m.gate_armed.clone(),
        );
        r.register(
            "lists",
            "Completed lists (the first, and every re-list after 410 Gone or a lost watch), by object kind",
            m.lists.clone(),
        );
        r.register(
            "invalid_objects",
            "API objects currently skipped as invalid, by object kind",
            m.invalid_objects.clone(),
        );
        r.register(
            "last_successful_sync_timestamp_seconds",
            "Unix time of the last successful sync",
            m.last_success.clone(),
        );
        r.register(
            "objects",
            "Sizes after the last successful sync: pods, local_pods, isolated_pods, \
             policies, namespaces, chains, rules, set_elements (by `what`)",
            m.objects.clone(),
        );
        r.register(
            "log_records",
            "Drop/allow log records read from NFLOG, by verdict (drop, allow; unknown: an id \
             no recent ruleset has). Rate-limited per rule in the kernel",
            m.log_records.clone(),
        );
        r.register(
            "drops",
            "Logged drops, once per policy isolating the dropping pod, by namespace and \
             policy (a sample: logging is rate-limited per pod chain; at most \
             --drops-metric-max-series pairs, the rest as namespace=\"other\",policy=\"other\")",
            m.drops.clone(),
        );
        m
    }

    /// The same metrics with at most `n` `(namespace, policy)` pairs in
    /// `drops_total`.
    pub fn with_max_drop_series(mut self, n: usize) -> Self {
        self.max_drop_series = n;
        self
    }

    /// Counts one NFLOG record: by verdict (`unknown` for ids no ruleset
    /// has), and a drop once per isolating `policies` (`ns/name`). Label
    /// pairs past the cap are counted as `other`/`other`, so a cluster
    /// whose policies come and go cannot grow the series without bound.
    pub fn log_record(&self, verdict: &str, unknown: bool, policies: &[String]) {
        let label = match (unknown, verdict) {
            (true, _) => "unknown",
            (false, "allow") => "allow",
            _ => "drop",
        };
        self.log_records.get_or_create(&[("verdict", label)]).inc();
        if label != "drop" {
            return;
        }
        let mut seen = self.drop_series.lock().unwrap_or_else(|e| e.into_inner());
        for p in policies {
            let (ns, name) = p.split_once('/').unwrap_or(("", p.as_str()));
            let pair = (ns.to_owned(), name.to_owned());
            let pair = if seen.contains(&pair) || seen.len() < self.max_drop_series {
                seen.insert(pair.clone());
                pair
            } else {
                ("other".to_owned(), "other".to_owned())
            };
            let labels = vec![
                ("namespace".to_owned(), pair.0),
                ("policy".to_owned(), pair.1),
            ];
            self.drops.get_or_create(&labels).inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Records a successful sync.
    pub fn sync_ok(&self, took: Duration, kind: ApplyKind, apply: Duration, sizes: &Sizes) {
        self.sync_duration.observe(took.as_secs_f64());
        self.syncs.get_or_create(&[("result", "success")]).inc();
        self.apply_duration
            .get_or_create(&[("kind", kind.as_str())])
            .observe(apply.as_secs_f64());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.last_success.set(now.as_secs_f64());
        let gauges = [
            ("pods", sizes.pods),
            ("local_pods", sizes.local_pods),
            ("isolated_pods", sizes.isolated_pods),
            ("policies", sizes.policies),
            ("namespaces", sizes.namespaces),
            ("chains", sizes.chains),
            ("rules", sizes.rules),
            ("set_elements", sizes.set_elements),
        ];
        for (what, n) in gauges {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            self.objects.get_or_create(&[("what", what)]).set(n);
        }
    }

    /// Records one resolution: from scratch or incremental, and how many
    /// policies it compiled, relinked and kept.
    pub fn resolved(&self, work: Work) {
        let kind = if work.full { "full" } else { "incremental" };
        self.resolves.get_or_create(&[("kind", kind)]).inc();
        let by = |how| self.policies_compiled.get_or_create(&[("how", how)]);
        by("compiled").inc_by(work.compiled as u64);
        by("relinked").inc_by(work.relinked as u64);
        by("kept").inc_by(work.kept as u64);
    }

    /// Records one check of the kept resolution and the differences found.
    pub fn resolve_checked(&self, differences: usize) {
        self.resolve_checks.inc();
        self.resolve_differences.inc_by(differences as u64);
    }

    /// Records a failed sync and its error kind.
    pub fn sync_failed(&self, took: Duration, error_kind: &'static str) {
        self.sync_duration.observe(took.as_secs_f64());
        self.syncs.get_or_create(&[("result", "error")]).inc();
        self.error(error_kind);
    }

    /// Records the time from an event's arrival to its enforcement.
    pub fn enforced(&self, since: Instant) {
        self.event_to_enforced
            .observe(since.elapsed().as_secs_f64());
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&[("kind", kind)]).inc();
    }

    /// Counts one watch event of an object kind.
    pub fn watch_event(&self, object_kind: &'static str) {
        self.watch_events
            .get_or_create(&[("kind", object_kind)])
            .inc();
    }

    /// Counts flows cut and restored by one re-judging pass.
    pub fn flows_cut(&self, cut: usize, restored: usize) {
        self.flows_cut.inc_by(cut as u64);
        self.flows_restored.inc_by(restored as u64);
    }

    /// Whether the gate of unknown pod addresses is armed.
    pub fn gate_armed(&self, armed: bool) {
        self.gate_armed.set(i64::from(armed));
    }

    /// Counts one (re-)list of an object kind.
    pub fn list(&self, object_kind: &'static str) {
        self.lists.get_or_create(&[("kind", object_kind)]).inc();
    }

    /// Sets the number of objects of a kind skipped as invalid.
    pub fn set_invalid(&self, object_kind: &'static str, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.invalid_objects
            .get_or_create(&[("kind", object_kind)])
            .set(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_exposition_names() {
        let m = Metrics::new();
        m.sync_ok(
            Duration::from_millis(3),
            ApplyKind::Incremental,
            Duration::from_millis(1),
            &Sizes {
                pods: 3,
                ..Sizes::default()
            },
        );
        m.error("rejected");
        let text = m.encode();
        for want in [
            "kube_nftpolicy_sync_duration_seconds_bucket",
            "kube_nftpolicy_syncs_total{result=\"success\"} 1",
            "kube_nftpolicy_apply_duration_seconds_count{kind=\"incremental\"} 1",
            "kube_nftpolicy_errors_total{kind=\"rejected\"} 1",
            "kube_nftpolicy_objects{what=\"pods\"} 3",
            "kube_nftpolicy_last_successful_sync_timestamp_seconds ",
            "kube_nftpolicy_event_to_enforced_seconds_count 0",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn drops_by_policy_are_capped() {
        let m = Metrics::new().with_max_drop_series(2);
        let two = ["shop/deny".to_owned(), "shop/db".to_owned()];
        m.log_record("drop", false, &two);
        m.log_record("drop", false, &two);
        m.log_record("drop", false, &["web/new".to_owned()]);
        m.log_record("allow", false, &["shop/db".to_owned()]);
        m.log_record("drop", true, &[]);
        let text = m.encode();
        for want in [
            "kube_nftpolicy_drops_total{namespace=\"shop\",policy=\"deny\"} 2",
            "kube_nftpolicy_drops_total{namespace=\"shop\",policy=\"db\"} 2",
            "kube_nftpolicy_drops_total{namespace=\"other\",policy=\"other\"} 1",
            "kube_nftpolicy_log_records_total{verdict=\"drop\"} 3",
            "kube_nftpolicy_log_records_total{verdict=\"allow\"} 1",
            "kube_nftpolicy_log_records_total{verdict=\"unknown\"} 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("policy=\"new\""), "{text}");
    }
}
