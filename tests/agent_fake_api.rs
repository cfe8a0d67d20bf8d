//! The agent's API side without a cluster: the real kube-rs watchers and
//! the real sync loop, fed by a FAKE API server (`agent_fake_api/fake.rs`,
//! on the kube client's service layer, real list/watch wire format),
//! applying to a recording `FakeDataplane`. Results are checked by walking
//! packets through the applied ruleset (`ruleset::trace`).

mod agent_fake_api {
    pub mod fake;
    pub mod harness;
}

use std::time::Duration;

use agent_fake_api::fake::{FakeApi, Res};
use agent_fake_api::harness::{
    allows, eventually, has_pod_chain, holds, namespace, pod, policy, Agent, NODE,
};
use kube_nftpolicy::sync::{GateSource, SyncConfig};
use nftpolicy_nft::{ApplyKind, ApplyReport};
use serde_json::json;

const WEB: &str = "10.244.0.10";
const FRONTEND: &str = "10.244.1.20";

/// `shop` with `web` (on our node) and `frontend` (on node-b), and a policy
/// letting only `app=frontend` into `app=web`.
fn shop(fake: &FakeApi) {
    fake.apply(namespace("shop", json!({"team": "red"})));
    fake.apply(pod("shop", "web", NODE, WEB, json!({"app": "web"})));
    fake.apply(pod(
        "shop",
        "frontend",
        "node-b",
        FRONTEND,
        json!({"app": "frontend"}),
    ));
    fake.apply(policy(
        "shop",
        "allow-frontend",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}]}]}),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_no_apply_before_initial_lists_complete() {
    let fake = FakeApi::new();
    shop(&fake);
    fake.hold_list(Res::Policies);
    let agent = Agent::start(fake.clone());
    eventually(
        "pods and namespaces are listed",
        Duration::from_secs(10),
        || fake.lists(Res::Pods) >= 1 && fake.lists(Res::Namespaces) >= 1,
    )
    .await;
    // Well past the debounce (20 ms) and the least sync interval (100 ms).
    holds(
        "no apply before the policy list completed",
        Duration::from_millis(500),
        || agent.applies() == 0,
    )
    .await;
    assert_eq!(
        agent.applies(),
        0,
        "applied before the policy list completed"
    );
    fake.release_list(Res::Policies);
    let rs = agent.until("the first apply", |_| true).await;
    assert!(
        has_pod_chain(&rs, "shop", "web"),
        "the first apply has the policies"
    );
    assert!(allows(&rs, FRONTEND, WEB));
    assert!(!allows(&rs, "10.244.2.2", WEB));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_burst_of_1000_events_gives_a_handful_of_syncs() {
    let fake = FakeApi::new();
    shop(&fake);
    // A debug build on a busy machine may take seconds to decode 1,000
    // events: let the debounce, not the 1 s cap, decide.
    let mut cfg = SyncConfig::new(NODE);
    cfg.max_delay = Duration::from_secs(10);
    let agent = Agent::start_with(fake.clone(), cfg);
    agent.until("the first apply", |_| true).await;
    let before = agent.applies();
    // 1,000 label changes of one peer pod; only the last one lets it in.
    for i in 0..1000 {
        let app = if i == 999 { "frontend" } else { "batch" };
        let labels = json!({"app": app, "i": i.to_string()});
        fake.apply(pod("shop", "peer", "node-b", "10.244.1.30", labels));
    }
    agent
        .until("the last event is enforced", |rs| {
            allows(rs, "10.244.1.30", WEB)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let syncs = agent.applies() - before;
    assert!(syncs <= 5, "1,000 events gave {syncs} syncs");
    let text = agent.metrics.encode();
    assert!(text.contains("kube_nftpolicy_watch_events_total{kind=\"pod\"}"));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_relist_after_410_gone() {
    let fake = FakeApi::new();
    shop(&fake);
    let agent = Agent::start(fake.clone());
    agent
        .until("the first apply", |rs| allows(rs, FRONTEND, WEB))
        .await;
    let lists = fake.lists(Res::Pods);
    fake.expire();
    // Not sent on any watch (all closed): only a re-list can see it.
    fake.apply(pod(
        "shop",
        "frontend",
        "node-b",
        FRONTEND,
        json!({"app": "other"}),
    ));
    agent
        .until("the re-list is enforced", |rs| !allows(rs, FRONTEND, WEB))
        .await;
    assert!(fake.lists(Res::Pods) > lists, "pods were listed again");
    let text = agent.metrics.encode();
    assert!(
        text.contains("kube_nftpolicy_errors_total{kind=\"watch_gone\"}"),
        "a 410 is counted as such: {text}"
    );
    assert!(
        text.contains("kube_nftpolicy_lists_total{kind=\"pod\"} 2"),
        "the first list and the re-list: {text}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_lost_connection_resumes_and_keeps_enforcing() {
    let fake = FakeApi::new();
    shop(&fake);
    let agent = Agent::start(fake.clone());
    agent
        .until("the first apply", |rs| allows(rs, FRONTEND, WEB))
        .await;
    // A bookmark moves the watchers' resourceVersion; they resume from it.
    // The history before it is compacted away: resuming from an older
    // version would get 410 Gone and re-list.
    fake.apply(pod("shop", "idle", "node-b", "10.244.1.99", json!({})));
    fake.bookmark();
    fake.compact();
    let lists = Res::ALL.map(|r| fake.lists(r));
    fake.disconnect();
    fake.apply(pod(
        "shop",
        "frontend",
        "node-b",
        FRONTEND,
        json!({"app": "other"}),
    ));
    agent
        .until("the change made while disconnected", |rs| {
            !allows(rs, FRONTEND, WEB)
        })
        .await;
    assert!(has_pod_chain(&agent.last().unwrap(), "shop", "web"));
    assert_eq!(
        Res::ALL.map(|r| fake.lists(r)),
        lists,
        "the watches resumed without a re-list"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_deleted_pod_ip_reused_by_new_pod_with_other_labels() {
    let fake = FakeApi::new();
    shop(&fake);
    let agent = Agent::start(fake.clone());
    agent
        .until("frontend allowed", |rs| allows(rs, FRONTEND, WEB))
        .await;
    assert!(fake.delete(Res::Pods, "shop", "frontend"));
    fake.apply(pod(
        "shop",
        "batch",
        "node-b",
        FRONTEND,
        json!({"app": "batch"}),
    ));
    let rs = agent
        .until("the reused IP is denied", |rs| !allows(rs, FRONTEND, WEB))
        .await;
    assert!(has_pod_chain(&rs, "shop", "web"));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_namespace_label_change_flips_a_namespace_selector() {
    let fake = FakeApi::new();
    shop(&fake);
    fake.apply(namespace("tools", json!({"team": "red"})));
    fake.apply(pod("tools", "probe", "node-b", "10.244.1.40", json!({})));
    fake.apply(policy(
        "shop",
        "allow-blue",
        json!({"podSelector": {},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}),
    ));
    let agent = Agent::start(fake.clone());
    agent
        .until("tools denied", |rs| {
            !allows(rs, "10.244.1.40", WEB) && allows(rs, FRONTEND, WEB)
        })
        .await;
    fake.apply(namespace("tools", json!({"team": "blue"})));
    agent
        .until("tools allowed", |rs| allows(rs, "10.244.1.40", WEB))
        .await;
    fake.apply(namespace("tools", json!({"team": "red"})));
    agent
        .until("tools denied again", |rs| !allows(rs, "10.244.1.40", WEB))
        .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_deleting_the_last_policy_of_a_pod_removes_its_isolation() {
    let fake = FakeApi::new();
    shop(&fake);
    let agent = Agent::start(fake.clone());
    agent
        .until("web isolated", |rs| has_pod_chain(rs, "shop", "web"))
        .await;
    assert!(fake.delete(Res::Policies, "shop", "allow-frontend"));
    let rs = agent
        .until("web open", |rs| !has_pod_chain(rs, "shop", "web"))
        .await;
    assert!(allows(&rs, "10.244.2.2", WEB));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_pod_on_another_node_is_a_peer_but_gets_no_chain() {
    let fake = FakeApi::new();
    shop(&fake);
    fake.apply(pod(
        "shop",
        "web-b",
        "node-b",
        "10.244.1.11",
        json!({"app": "web"}),
    ));
    let agent = Agent::start(fake.clone());
    let rs = agent.until("the first apply", |_| true).await;
    assert!(has_pod_chain(&rs, "shop", "web"));
    assert!(
        !has_pod_chain(&rs, "shop", "web-b"),
        "web-b is judged on node-b"
    );
    assert!(!has_pod_chain(&rs, "shop", "frontend"));
    assert!(allows(&rs, FRONTEND, WEB), "frontend on node-b is a peer");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_host_network_pods_are_ignored() {
    let fake = FakeApi::new();
    shop(&fake);
    let mut host = pod(
        "shop",
        "agent",
        "node-b",
        "192.168.0.12",
        json!({"app": "frontend"}),
    );
    host["spec"]["hostNetwork"] = json!(true);
    fake.apply(host);
    let mut local = pod(
        "shop",
        "local-host",
        NODE,
        "192.168.0.11",
        json!({"app": "web"}),
    );
    local["spec"]["hostNetwork"] = json!(true);
    fake.apply(local);
    let agent = Agent::start(fake.clone());
    let rs = agent.until("the first apply", |_| true).await;
    assert!(
        !allows(&rs, "192.168.0.12", WEB),
        "a hostNetwork pod is no peer"
    );
    assert!(
        !has_pod_chain(&rs, "shop", "local-host"),
        "nor is it selected"
    );
    assert!(allows(&rs, FRONTEND, WEB));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_invalid_policy_is_skipped_and_counted() {
    let fake = FakeApi::new();
    shop(&fake);
    fake.apply(policy(
        "shop",
        "bad",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}),
    ));
    let agent = Agent::start(fake.clone());
    let rs = agent.until("the first apply", |_| true).await;
    assert!(allows(&rs, FRONTEND, WEB), "the good policy still applies");
    let text = agent.metrics.encode();
    assert!(
        text.contains("kube_nftpolicy_invalid_objects{kind=\"networkpolicy\"} 1"),
        "{text}"
    );
    assert!(fake.delete(Res::Policies, "shop", "bad"));
    eventually(
        "the invalid policy is no longer counted",
        Duration::from_secs(10),
        || {
            let text = agent.metrics.encode();
            text.contains("kube_nftpolicy_invalid_objects{kind=\"networkpolicy\"} 0")
        },
    )
    .await;
    let text = agent.metrics.encode();
    assert!(
        text.contains("kube_nftpolicy_invalid_objects{kind=\"networkpolicy\"} 0"),
        "{text}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_slow_timer_forces_a_full_replace() {
    let fake = FakeApi::new();
    shop(&fake);
    let mut cfg = SyncConfig::new(NODE);
    cfg.resync = Duration::from_millis(100);
    cfg.full_replace = Duration::from_millis(350);
    let agent = Agent::start_with(fake.clone(), cfg);
    agent.until("the first apply", |_| true).await;
    let reports = || -> Vec<ApplyReport> {
        let record = agent.record.lock().unwrap();
        record.applies.iter().map(|a| a.1.clone()).collect()
    };
    let periodic = |reports: &[ApplyReport]| {
        reports
            .iter()
            .skip(1)
            .filter(|r| {
                r.kind == ApplyKind::Full && r.reason.as_deref() == Some("periodic full replace")
            })
            .count()
    };
    eventually("a periodic full replace", Duration::from_secs(10), || {
        periodic(&reports()) >= 1
    })
    .await;
    let reports = reports();
    let periodic = periodic(&reports);
    assert!(
        periodic >= 1,
        "no periodic full replace among {} applies: {reports:?}",
        reports.len()
    );
    assert!(
        reports
            .iter()
            .skip(1)
            .all(|r| r.kind != ApplyKind::Full || r.reason.is_some()),
        "every later full replace says why"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_status_or_annotation_change_gives_no_sync() {
    let fake = FakeApi::new();
    shop(&fake);
    let agent = Agent::start(fake.clone());
    agent
        .until("the first apply", |rs| allows(rs, FRONTEND, WEB))
        .await;
    let applies = agent.applies();
    let events = agent.watch_events("pod");
    // What the kubelet sends all day: a MODIFIED pod whose trimmed model is
    // the same (another annotation, new status conditions).
    let mut web = pod("shop", "web", NODE, WEB, json!({"app": "web"}));
    web["metadata"]["annotations"]["note"] = json!("restarted");
    web["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    fake.apply(web);
    eventually(
        "the FAKE API's event reached the agent",
        Duration::from_secs(10),
        || agent.watch_events("pod") > events,
    )
    .await;
    // Well past the debounce (20 ms) and the least sync interval (100 ms).
    holds(
        "no apply for a change no policy reads",
        Duration::from_millis(500),
        || agent.applies() == applies,
    )
    .await;
    // A label a policy reads: one more apply.
    fake.apply(pod(
        "shop",
        "frontend",
        "node-b",
        FRONTEND,
        json!({"app": "other"}),
    ));
    agent
        .until("the label change is enforced", |rs| {
            !allows(rs, FRONTEND, WEB)
        })
        .await;
    assert!(agent.applies() > applies, "the label change was applied");
    agent.stop().await;
}

/// `/healthz` of `health`, as the HTTP server answers it.
fn healthz(health: &kube_nftpolicy::health::Health) -> u16 {
    let metrics = kube_nftpolicy::metrics::Metrics::new();
    kube_nftpolicy::server::respond("GET", "/healthz", &metrics, health).status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_healthz_stays_ok_through_a_long_apply() {
    use kube_nftpolicy::health::Health;
    use std::sync::Arc;
    let fake = FakeApi::new();
    shop(&fake);
    // Each apply takes 1.5 s; the loop must not look stalled after 300 ms.
    let health = Arc::new(Health::new(
        Duration::from_secs(60),
        Duration::from_millis(300),
    ));
    let agent = Agent::start_slow(
        fake.clone(),
        SyncConfig::new(NODE),
        health.clone(),
        Duration::from_millis(1500),
    );
    let mut polls = 0;
    let start = std::time::Instant::now();
    while agent.applies() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no apply in 10 s"
        );
        assert_eq!(
            healthz(&health),
            200,
            "healthz during the apply, after {:?}",
            start.elapsed()
        );
        polls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        polls > 50,
        "the apply was long enough to test anything ({polls} polls)"
    );
    assert!(start.elapsed() > Duration::from_millis(1400));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_healthz_fails_when_a_commit_hangs() {
    use kube_nftpolicy::health::Health;
    use std::sync::Arc;
    let fake = FakeApi::new();
    shop(&fake);
    // The kernel commit may take 200 ms here; this one takes 3 s.
    let health = Arc::new(
        Health::new(Duration::from_secs(60), Duration::from_secs(60))
            .with_commit_window(Duration::from_millis(200)),
    );
    let agent = Agent::start_slow(
        fake.clone(),
        SyncConfig::new(NODE),
        health.clone(),
        Duration::from_secs(3),
    );
    eventually(
        "healthz reports the hung commit",
        Duration::from_secs(2),
        || healthz(&health) == 503,
    )
    .await;
    let why = health.live().unwrap_err();
    assert!(why.contains("kernel commit"), "{why}");
    assert_eq!(agent.applies(), 0, "the commit is still running");
    agent.stop().await;
}

/// A Node object with these pod CIDRs (none: no `spec.podCIDRs`).
fn node(name: &str, cidrs: &[&str]) -> serde_json::Value {
    let spec = match cidrs.first() {
        Some(first) => json!({"podCIDR": first, "podCIDRs": cidrs}),
        None => json!({}),
    };
    json!({"kind": "Node", "metadata": {"name": name}, "spec": spec})
}

/// The value of a metric line starting with `name_and_labels`, 0 if absent.
fn metric(agent: &Agent, name_and_labels: &str) -> f64 {
    let text = agent.metrics.encode();
    let found = text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .filter(|r| r.starts_with(' '))
    });
    found.map_or(0.0, |v| v.trim().parse().expect("a metric value"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_gate_waits_for_the_node_and_follows_its_pod_cidrs() {
    let fake = FakeApi::new();
    shop(&fake);
    fake.apply(node(NODE, &[]));
    fake.hold_list(Res::Nodes);
    let mut cfg = SyncConfig::new(NODE);
    cfg.guard.gate = GateSource::Node;
    let agent = Agent::start_with(fake.clone(), cfg);
    eventually(
        "the other kinds are listed",
        Duration::from_secs(10),
        || {
            [Res::Pods, Res::Namespaces, Res::Policies]
                .into_iter()
                .all(|r| fake.lists(r) >= 1)
        },
    )
    .await;
    // The gate of a table in place must not be lifted by a sync that does
    // not know the CIDRs: nothing is applied before the Node is read.
    holds(
        "no apply before the Node was read",
        Duration::from_millis(500),
        || agent.applies() == 0,
    )
    .await;
    fake.release_list(Res::Nodes);
    // A Node without pod CIDRs: the agent enforces the policies, with no
    // gate (never a closed node), says so in a metric.
    let rs = agent.until("the first apply", |_| true).await;
    assert!(allows(&rs, FRONTEND, WEB) && !allows(&rs, "10.244.2.2", WEB));
    assert!(
        !rs.sets.iter().any(|s| s.name.starts_with("local-pod")),
        "a gate without pod CIDRs: {:?}",
        rs.sets.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert_eq!(metric(&agent, "kube_nftpolicy_gate_armed"), 0.0);
    assert_eq!(
        metric(&agent, "kube_nftpolicy_errors_total{kind=\"no_pod_cidrs\"}"),
        1.0
    );
    // The Node gets its CIDRs: the next sync arms the gate, with the local
    // pod known and an unknown address of the CIDR rejected.
    fake.apply(node(NODE, &["10.244.0.0/24"]));
    let rs = agent
        .until("the gate is in the table", |rs| {
            rs.sets.iter().any(|s| s.name == "local-pod-cidrs-v4")
        })
        .await;
    let known = rs
        .sets
        .iter()
        .find(|s| s.name == "local-pods-v4")
        .expect("the known addresses");
    assert!(known.contains(&WEB.parse().unwrap()), "{known:?}");
    assert!(
        !allows(&rs, "10.244.0.99", FRONTEND),
        "an address of the CIDR that no pod has must not talk"
    );
    assert!(allows(&rs, FRONTEND, WEB), "known pods keep their verdicts");
    eventually("gate_armed is 1", Duration::from_secs(5), || {
        metric(&agent, "kube_nftpolicy_gate_armed") == 1.0
    })
    .await;
    agent.stop().await;
}

/// `shop` synced by an agent with `cfg`, then `frontend` relabelled out of
/// the policy's peers and that enforced.
async fn shop_then_relabel_frontend(cfg: SyncConfig) -> (std::sync::Arc<FakeApi>, Agent) {
    let fake = FakeApi::new();
    shop(&fake);
    let agent = Agent::start_with(fake.clone(), cfg);
    agent
        .until("the first apply", |rs| allows(rs, FRONTEND, WEB))
        .await;
    fake.apply(pod(
        "shop",
        "frontend",
        "node-b",
        FRONTEND,
        json!({"app": "x"}),
    ));
    agent
        .until("the relabelled peer denied", |rs| {
            !allows(rs, FRONTEND, WEB)
        })
        .await;
    (fake, agent)
}

/// Every kind of change, a re-list among them, resolved incrementally and
/// checked against a full resolve after every sync: each step enforced,
/// the syncs after the first incremental, and no difference counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_incremental_resolve_follows_every_kind_of_change() {
    let mut cfg = SyncConfig::new(NODE);
    cfg.resolve_check = Some(Duration::ZERO);
    let (fake, agent) = shop_then_relabel_frontend(cfg).await;
    // A policy edit: any pod of namespaces of team red.
    fake.apply(policy(
        "shop",
        "allow-frontend",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}]}]}),
    ));
    agent
        .until("the edited policy allows", |rs| allows(rs, FRONTEND, WEB))
        .await;
    // A namespace's label.
    fake.apply(namespace("shop", json!({"team": "blue"})));
    agent
        .until("the relabelled namespace denied", |rs| {
            !allows(rs, FRONTEND, WEB)
        })
        .await;
    // A re-list (410 Gone) that brings a change no watch saw.
    fake.expire();
    fake.apply(namespace("shop", json!({"team": "red"})));
    agent
        .until("the re-listed change allows", |rs| {
            allows(rs, FRONTEND, WEB)
        })
        .await;
    // A local pod going, then a new one under the policy.
    assert!(fake.delete(Res::Pods, "shop", "web"));
    agent
        .until("web's chain gone", |rs| !has_pod_chain(rs, "shop", "web"))
        .await;
    fake.apply(pod(
        "shop",
        "web2",
        NODE,
        "10.244.0.11",
        json!({"app": "web"}),
    ));
    agent
        .until("web2 enforced", |rs| {
            has_pod_chain(rs, "shop", "web2") && !allows(rs, "10.244.2.2", "10.244.0.11")
        })
        .await;
    // The check runs after the reply of each sync: wait for the last one.
    eventually(
        "a check per incremental sync",
        Duration::from_secs(10),
        || {
            metric(&agent, "kube_nftpolicy_resolve_checks_total")
                >= metric(
                    &agent,
                    "kube_nftpolicy_resolves_total{kind=\"incremental\"}",
                )
        },
    )
    .await;
    let incremental = metric(
        &agent,
        "kube_nftpolicy_resolves_total{kind=\"incremental\"}",
    );
    assert!(
        incremental >= 6.0,
        "6 changes, {incremental} incremental resolves"
    );
    assert_eq!(
        metric(&agent, "kube_nftpolicy_resolves_total{kind=\"full\"}"),
        1.0,
        "only the first sync resolves from scratch"
    );
    assert_eq!(
        metric(&agent, "kube_nftpolicy_resolve_check_differences_total"),
        0.0
    );
    agent.stop().await;
}

/// `--full-resolve`: every sync from scratch, nothing kept, nothing checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_full_resolve_keeps_no_state() {
    let mut cfg = SyncConfig::new(NODE);
    cfg.incremental = false;
    cfg.resolve_check = Some(Duration::ZERO);
    let (_fake, agent) = shop_then_relabel_frontend(cfg).await;
    assert!(metric(&agent, "kube_nftpolicy_resolves_total{kind=\"full\"}") >= 2.0);
    assert_eq!(
        metric(
            &agent,
            "kube_nftpolicy_resolves_total{kind=\"incremental\"}"
        ),
        0.0
    );
    assert_eq!(metric(&agent, "kube_nftpolicy_resolve_checks_total"), 0.0);
    agent.stop().await;
}
