//! Apply timings in the kernel: netlink full replace and one-change
//! incremental apply, against `nft -f` doing the same, measured in the same
//! run, interleaved (A B A B), reported as medians and ratios.
//!
//! `sudo cargo bench --bench apply` (root: it creates a network namespace
//! `kn-bench-<pid>` and removes it at the end). `APPLY_BENCH_SIZES=50000`
//! adds the 50k-pod cluster; `APPLY_BENCH_ROUNDS` sets the rounds (5).
//!
//! The one change is a pod added on another node whose labels make it a
//! peer of several policies: for nft, the same element additions and
//! removals as `add element` / `delete element` lines.
#![allow(missing_docs)]

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use nftpolicy_core::model::Protocol;
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::render::{range_text, render};
use nftpolicy_core::ruleset::{build::build, Ruleset, TABLE_NAME};
use nftpolicy_nft::{ApplyKind, Dataplane, NetlinkDataplane};
use nftpolicy_testkit::synth::{cluster, Spec, LOCAL_NODE};
use nftpolicy_testkit::{pod, PodExt};

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn nft_file(ns: &str, text: &str) -> Duration {
    let path = std::env::temp_dir().join(format!("{ns}.nft"));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write nft file");
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f"])
        .arg(&path)
        .output()
        .expect("run nft");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "nft -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// `add element` (or `delete element`) lines for what `to` has in its sets and `from` lacks.
fn element_script(verb: &str, from: &Ruleset, to: &Ruleset) -> String {
    let mut out = String::new();
    for set in &to.sets {
        let old: BTreeSet<_> = from
            .set(&set.name)
            .map(|s| s.elements.iter().map(|e| e.range).collect())
            .unwrap_or_default();
        for e in set.elements.iter().filter(|e| !old.contains(&e.range)) {
            out.push_str(&format!(
                "{verb} element inet {TABLE_NAME} {} {{ {} }}\n",
                set.name,
                range_text(&e.range)
            ));
        }
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds: usize = std::env::var("APPLY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut sizes = vec![(1_000, 100), (10_000, 1_000)];
    if std::env::var("APPLY_BENCH_SIZES").is_ok_and(|v| v.contains("50000")) {
        sizes.push((50_000, 5_000));
    }
    let ns = Netns(format!("kn-bench-{}", std::process::id()));
    let ok = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "needs root: ip netns add failed");
    println!("| pods / policies | elements | netlink full | nft -f full | ratio | netlink one change | nft -f one change | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for (pods, policies) in sizes {
        let s = cluster(Spec {
            pods,
            policies,
            local_pods: 110,
        });
        let mut changed = s.clone();
        changed.add_pod(
            pod("ns-0", "bench-new-pod")
                .labels([("app", "app-1"), ("tier", "front")])
                .ip("10.200.0.1")
                .node("node-elsewhere")
                .port("http", 8080, Protocol::Tcp),
        );
        let a = build(&resolve(&s, LOCAL_NODE));
        let b = build(&resolve(&changed, LOCAL_NODE));
        let full_text = format!(
            "table inet {TABLE_NAME} {{}}\ndelete table inet {TABLE_NAME}\n{}",
            render(&a)
        );
        let (add, del) = (
            element_script("add", &a, &b),
            element_script("delete", &b, &a),
        );
        assert!(!add.is_empty(), "the change must add elements");
        let mut dp = NetlinkDataplane::new(Some(&ns.0)).expect("netlink socket in the bench netns");
        let (mut nl_full, mut nft_full, mut nl_one, mut nft_one) = (vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            nft_full.push(nft_file(&ns.0, &full_text));
            dp.invalidate("bench: full replace");
            let r = dp.apply(&a).expect("full apply");
            assert_eq!(r.kind, ApplyKind::Full);
            nl_full.push(r.duration);
            let t = Instant::now();
            let r1 = dp.apply(&b).expect("incremental apply");
            let r2 = dp.apply(&a).expect("incremental apply back");
            assert_eq!(
                (r1.kind, r2.kind),
                (ApplyKind::Incremental, ApplyKind::Incremental)
            );
            nl_one.push(t.elapsed() / 2);
            nft_one.push((nft_file(&ns.0, &add) + nft_file(&ns.0, &del)) / 2);
        }
        let (nf, xf, no, xo) = (
            median(nl_full),
            median(nft_full),
            median(nl_one),
            median(nft_one),
        );
        println!(
            "| {pods} / {policies} | {} | {:.1} ms | {:.1} ms | {:.2}× | {:.2} ms | {:.1} ms | {:.0}× |",
            a.element_count(),
            ms(nf),
            ms(xf),
            xf.as_secs_f64() / nf.as_secs_f64(),
            ms(no),
            ms(xo),
            xo.as_secs_f64() / no.as_secs_f64()
        );
    }
}
