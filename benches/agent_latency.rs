//! Time from event to enforced, measured end to end through the FAKE API:
//! a cluster of 10,000 pods (100 on our node), one pod label change at a
//! time, from the fake API publishing the watch event to the dataplane
//! returning from the apply that holds the change. The dataplane is the
//! in-memory `FakeDataplane` (it plans and encodes the netlink batch but
//! sends nothing; an incremental kernel commit adds about a millisecond).
//!
//! A measurement, not a check: `cargo bench --bench agent_latency`.
#![allow(missing_docs)]

// The fake API and its harness are the test suite's (tests/agent_fake_api/).
#[allow(dead_code)]
#[path = "../tests/agent_fake_api/fake.rs"]
mod fake;
#[allow(dead_code)]
#[path = "../tests/agent_fake_api/harness.rs"]
mod harness;
mod agent_fake_api {
    pub(crate) use super::{fake, harness};
}

use std::time::{Duration, Instant};

use agent_fake_api::fake::FakeApi;
use agent_fake_api::harness::{allows, namespace, pod, policy, Agent, NODE};
use serde_json::json;

const PODS: usize = 10_000;
const CHANGES: usize = 40;

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256)
}

fn main() {
    // `cargo test --benches` runs bench targets without --bench: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(event_to_enforced());
}

async fn event_to_enforced() {
    let fake = FakeApi::new();
    for n in 0..100 {
        fake.apply(namespace(
            &format!("ns-{n}"),
            json!({"team": format!("t{}", n % 10)}),
        ));
        fake.apply(policy(
            &format!("ns-{n}"),
            "allow-frontend",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}],
                                "ports": [{"port": "http"}]}]}),
        ));
    }
    for i in 0..PODS {
        let ns = format!("ns-{}", i % 100);
        let node = if i.is_multiple_of(100) {
            NODE.to_owned()
        } else {
            format!("node-{}", i % 97)
        };
        let app = ["web", "frontend", "batch"][i % 3];
        fake.apply(pod(
            &ns,
            &format!("p-{i}"),
            &node,
            &ip(i),
            json!({"app": app}),
        ));
    }
    let agent = Agent::start(fake.clone());
    let start = Instant::now();
    agent.until("the first apply", |_| true).await;
    println!("first apply of {PODS} pods after {:?}", start.elapsed());
    // p-0 is a web pod on our node in ns-0; p-300 (ns-0, node-9x, "web")
    // becomes a frontend and back, which opens and closes p-300 → p-0.
    let (web, peer) = (ip(0), ip(300));
    let mut latencies = Vec::new();
    for k in 0..CHANGES {
        let open = k.is_multiple_of(2);
        let app = if open { "frontend" } else { "web" };
        let before = agent.applies();
        let sent = Instant::now();
        fake.apply(pod("ns-0", "p-300", "node-9", &peer, json!({"app": app})));
        agent
            .until("the change is enforced", |rs| {
                allows(rs, &peer, &web) == open
            })
            .await;
        let done = agent.record.lock().unwrap().applies[before..]
            .iter()
            .find(|a| allows(&a.0, &peer, &web) == open)
            .map(|a| a.2)
            .unwrap();
        latencies.push(done.duration_since(sent));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "event to enforced, {PODS} pods, {CHANGES} single label changes: median {:?}, p99 {:?}, max {:?}",
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap()
    );
    agent.stop().await;
}
