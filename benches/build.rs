//! resolve + build (+ render) for synthetic clusters; setup is not timed.
//!
//! `cargo bench --bench build`. The target: resolve + build ≤ 50 ms
//! at 10,000 pods / 1,000 policies with 110 local pods.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kube_nftpolicy::resolve::resolve;
use kube_nftpolicy::ruleset::{build::build, render::render};
use kube_nftpolicy::synth::{cluster, Spec, LOCAL_NODE};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve+build");
    group.sample_size(20);
    for (pods, policies) in [(1_000, 100), (10_000, 1_000), (50_000, 5_000)] {
        let s = cluster(Spec {
            pods,
            policies,
            local_pods: 110,
        });
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

criterion_group!(benches, bench);
criterion_main!(benches);
