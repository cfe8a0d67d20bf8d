//! resolve + build (+ render) for synthetic clusters; setup is not timed.
//!
//! `cargo bench --bench build`. The target: resolve + build ≤ 50 ms
//! at 10,000 pods / 1,000 policies with 110 local pods.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nftpolicy_core::model::{Protocol, Selector, Snapshot};
use nftpolicy_core::resolve::{resolve, Changes, Incremental};
use nftpolicy_core::ruleset::build::{
    build, build_cached, build_with_merge_limit, BuildCache, Options, MERGE_LIMIT,
};
use nftpolicy_core::ruleset::render::render;
use nftpolicy_core::ruleset::trace::{trace, CtState, Packet, L4};
use nftpolicy_core::ruleset::Hook;
use nftpolicy_nft::{Dataplane, FakeDataplane};
use nftpolicy_testkit::synth::{cluster, Spec, LOCAL_NODE};
use nftpolicy_testkit::{pod, PodExt, PolicyExt, RuleExt};

/// The three synthetic clusters the benches compare: (pods, policies,
/// snapshot), 110 pods on the node under test.
fn sizes() -> impl Iterator<Item = (usize, usize, Snapshot)> {
    [(1_000, 100), (10_000, 1_000), (50_000, 5_000)]
        .into_iter()
        .map(|(pods, policies)| {
            let spec = Spec {
                pods,
                policies,
                local_pods: 110,
            };
            (pods, policies, cluster(spec))
        })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve+build");
    group.sample_size(20);
    for (pods, policies, s) in sizes() {
        let rs = build(&resolve(&s, LOCAL_NODE));
        eprintln!(
            "{pods} pods / {policies} policies: {} chains, {} rules, {} set elements",
            rs.chains.len(),
            rs.rule_count(),
            rs.element_count()
        );
        let id = format!("{pods}pods-{policies}policies");
        group.bench_with_input(BenchmarkId::new("resolve+build", &id), &s, |b, s| {
            b.iter(|| build(&resolve(s, LOCAL_NODE)))
        });
        group.bench_with_input(BenchmarkId::new("render", &id), &rs, |b, rs| {
            b.iter(|| render(rs))
        });
    }
    group.finish();
}

/// The one-object changes of the issue, each as (name, changed snapshot):
/// a remote pod added, a pod relabelled, a policy edited, and a
/// namespace relabelled into another team (its 100 pods leave the sets
/// of one team's namespace selectors for another's).
fn changes(s: &Snapshot) -> Vec<(&'static str, Snapshot)> {
    let mut added = s.clone();
    added.add_pod(
        pod("ns-0", "bench-new-pod")
            .labels([("app", "app-1"), ("tier", "front")])
            .ip("10.200.0.1")
            .node("node-elsewhere")
            .port("http", 8080, Protocol::Tcp),
    );
    let mut relabelled = s.clone();
    let key = relabelled.pods.keys().nth(5).cloned().expect("pods");
    if let Some(p) = relabelled.pods.get_mut(&key) {
        std::sync::Arc::make_mut(p)
            .labels
            .insert("app".into(), "app-9".into());
    }
    let mut edited = s.clone();
    let key = edited.policies.keys().nth(1).cloned().expect("policies");
    if let Some(p) = edited.policies.get_mut(&key) {
        *p = std::sync::Arc::new(
            nftpolicy_core::model::Policy::clone(p).ingress(
                nftpolicy_testkit::rule()
                    .pods(Selector::labels([("app", "app-3")]))
                    .port(Protocol::Tcp, 9000),
            ),
        );
    }
    let mut moved_ns = s.clone();
    if let Some(ns) = moved_ns.namespaces.get_mut("ns-0") {
        std::sync::Arc::make_mut(ns)
            .labels
            .insert("team".into(), "t1".into());
    }
    vec![
        ("pod added", added),
        ("label changed", relabelled),
        ("policy edited", edited),
        ("namespace relabelled", moved_ns),
    ]
}

/// One change at 10k pods: the diff and the encoded netlink batch
/// (FakeDataplane plans and encodes exactly what the kernel would get),
/// there and back; and the whole sync (resolve + build + diff).
fn one_change(c: &mut Criterion) {
    let s = cluster(Spec {
        pods: 10_000,
        policies: 1_000,
        local_pods: 110,
    });
    let base = build(&resolve(&s, LOCAL_NODE));
    eprintln!(
        "peak RSS holding the 10k / 1k state: {} KiB",
        peak_rss_kib()
    );
    let mut group = c.benchmark_group("one-change");
    group.sample_size(20);
    for (name, changed) in changes(&s) {
        let next = build(&resolve(&changed, LOCAL_NODE));
        let mut dp = FakeDataplane::without_history();
        dp.apply(&base).expect("fake apply");
        group.bench_function(BenchmarkId::new("diff+batch (there and back)", name), |b| {
            b.iter(|| {
                dp.apply(&next).expect("fake apply");
                dp.apply(&base).expect("fake apply")
            })
        });
        group.bench_function(BenchmarkId::new("resolve+build+diff", name), |b| {
            b.iter(|| {
                dp.apply(&build(&resolve(&changed, LOCAL_NODE)))
                    .expect("fake apply");
                dp.apply(&base).expect("fake apply")
            })
        });
    }
    group.finish();
}

/// What the merge limit trades at 10k pods / 1k policies: peer sets up to
/// the limit are copied into one union per pod chain (fewer lookups per new
/// flow), larger ones keep their own set and rule (fewer elements, less
/// build time). Prints the table, then times the build per limit.
fn merge_limit(c: &mut Criterion) {
    let s = cluster(Spec {
        pods: 10_000,
        policies: 1_000,
        local_pods: 110,
    });
    let r = resolve(&s, LOCAL_NODE);
    // New TCP flows to port 8080 of every local pod from 40 remote pods.
    let local: Vec<_> = r.pods.iter().flat_map(|p| p.ips.clone()).collect();
    let remote: Vec<_> = s
        .pods
        .values()
        .filter(|p| p.node.as_deref() != Some(LOCAL_NODE))
        .step_by(97)
        .take(40)
        .flat_map(|p| p.ips.clone())
        .collect();
    let limits = [0, 64, MERGE_LIMIT, 1_024, 4_096, usize::MAX];
    eprintln!(
        "merge limit | sets | set elements | rules | lookups per new flow (mean over {} flows)",
        local.len() * remote.len()
    );
    for limit in limits {
        let rs = build_with_merge_limit(&r, &Options::default(), limit);
        let (mut lookups, mut flows) = (0usize, 0usize);
        for dst in &local {
            for src in remote.iter().filter(|a| a.is_ipv4() == dst.is_ipv4()) {
                let t = trace(
                    &rs,
                    &Packet {
                        src: *src,
                        dst: *dst,
                        l4: L4::Port {
                            protocol: Protocol::Tcp,
                            port: 8080,
                        },
                        ct: CtState::New,
                        hook: Hook::Forward,
                        mark: 0,
                    },
                );
                lookups += t.cost.lookups;
                flows += 1;
            }
        }
        let shown = if limit == usize::MAX {
            "none".to_owned()
        } else {
            limit.to_string()
        };
        eprintln!(
            "{shown:>11} | {:>4} | {:>12} | {:>5} | {:.2}",
            rs.sets.len(),
            rs.element_count(),
            rs.rule_count(),
            lookups as f64 / flows.max(1) as f64
        );
    }
    let mut group = c.benchmark_group("merge-limit");
    group.sample_size(10);
    for limit in limits {
        let id = if limit == usize::MAX {
            "none".to_owned()
        } else {
            limit.to_string()
        };
        group.bench_with_input(BenchmarkId::new("build 10k/1k", id), &r, |b, r| {
            b.iter(|| build_with_merge_limit(r, &Options::default(), limit))
        });
    }
    group.finish();
}

/// One `explain` of a flow between two pods (what the agent does for each
/// allow it logs, to name the policies): it indexes the whole snapshot.
fn explain_one(c: &mut Criterion) {
    use nftpolicy_core::resolve::explain::{explain, Endpoint, Flow};
    let mut group = c.benchmark_group("explain");
    group.sample_size(20);
    for (pods, policies, s) in sizes() {
        let ends: Vec<_> = s.pods.keys().step_by(pods / 7).take(2).cloned().collect();
        let flow = Flow {
            from: Endpoint::Pod(ends[0].clone()),
            to: Endpoint::Pod(ends[1].clone()),
            protocol: Protocol::Tcp,
            port: 8080,
        };
        explain(&s, &flow).expect("both pods exist");
        group.bench_with_input(
            BenchmarkId::new("one flow", format!("{pods}pods-{policies}policies")),
            &s,
            |b, s| b.iter(|| explain(s, &flow)),
        );
    }
    group.finish();
}

/// The agent's sync of one change, incremental: `Incremental::resolve`
/// with the change's keys, `build_cached`, and the diff and netlink batch
/// (`FakeDataplane`), there and back, per cluster size.
struct Syncer {
    base: std::sync::Arc<Snapshot>,
    changed: std::sync::Arc<Snapshot>,
    keys: Changes,
    resolver: Incremental,
    sets: BuildCache,
    dp: FakeDataplane,
}

impl Syncer {
    fn new(base: &std::sync::Arc<Snapshot>, changed: Snapshot) -> Self {
        let changed = std::sync::Arc::new(changed);
        let keys = Changes::between(base, &changed);
        let mut resolver = Incremental::new(LOCAL_NODE);
        let mut sets = BuildCache::default();
        let mut dp = FakeDataplane::without_history();
        let first = resolver.resolve(base, None);
        dp.apply(&build_cached(&first, &Options::default(), &mut sets))
            .expect("fake apply");
        Self {
            base: base.clone(),
            changed,
            keys,
            resolver,
            sets,
            dp,
        }
    }

    /// Asserts that the incremental resolution of the change is the full one.
    fn check(&mut self) {
        let got = self.resolver.resolve(&self.changed, Some(&self.keys));
        assert_eq!(got, resolve(&self.changed, LOCAL_NODE));
        self.resolver.resolve(&self.base, Some(&self.keys));
    }

    /// The change and its reverse, each one incremental sync.
    fn there_and_back(&mut self) {
        for to in [self.changed.clone(), self.base.clone()] {
            let r = self.resolver.resolve(&to, Some(&self.keys));
            let rs = build_cached(&r, &Options::default(), &mut self.sets);
            self.dp.apply(&rs).expect("fake apply");
        }
    }
}

/// One change at 1k, 10k and 50k pods, synced incrementally. First an
/// interleaved run (every size and change in turn, 40 rounds) that prints
/// the medians and the 50k / 1k ratio measured together; then criterion.
fn incremental(c: &mut Criterion) {
    let mut syncers: Vec<(usize, &'static str, Syncer)> = Vec::new();
    for (pods, _, s) in sizes() {
        let base = std::sync::Arc::new(s);
        for (name, changed) in changes(&base) {
            let mut syncer = Syncer::new(&base, changed);
            syncer.check();
            syncers.push((pods, name, syncer));
        }
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); syncers.len()];
    for _ in 0..40 {
        for (i, (_, _, syncer)) in syncers.iter_mut().enumerate() {
            let t = std::time::Instant::now();
            syncer.there_and_back();
            times[i].push(t.elapsed().as_secs_f64() * 1e3 / 2.0);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    eprintln!("one change, incremental sync (resolve + build + diff), median ms of 40 interleaved rounds:");
    for name in [
        "pod added",
        "label changed",
        "policy edited",
        "namespace relabelled",
    ] {
        let at = |pods: usize| {
            syncers
                .iter()
                .position(|(p, n, _)| *p == pods && *n == name)
                .map_or(f64::NAN, |i| medians[i])
        };
        let (small, mid, large) = (at(1_000), at(10_000), at(50_000));
        eprintln!(
            "  {name:20} 1k {small:6.2}  10k {mid:6.2}  50k {large:6.2}  50k/1k {:.2}",
            large / small
        );
    }
    let mut group = c.benchmark_group("incremental");
    group.sample_size(20);
    for (pods, name, syncer) in &mut syncers {
        let id = format!("{pods}pods {name} (there and back)");
        group.bench_function(BenchmarkId::new("resolve+build+diff", id), |b| {
            b.iter(|| syncer.there_and_back())
        });
    }
    group.finish();
}

/// VmHWM of this process, KiB (0 if unknown).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

criterion_group!(
    benches,
    incremental,
    one_change,
    bench,
    merge_limit,
    explain_one
);
criterion_main!(benches);
