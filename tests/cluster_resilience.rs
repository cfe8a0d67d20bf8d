//! What the API server does that the fake does not, and what the agent must
//! survive, on the local cluster (id 3), in sequence on one cluster:
//!
//! 1. kube-apiserver restarts: enforcement never opens or closes while it
//!    is down (probed over and over), and a change made after it is back is
//!    enforced (catch-up).
//! 2. etcd restarts: the same. Overlapped with it, a quiet minute: the
//!    agents (resync set to an hour) neither sync nor apply while nothing
//!    changes, bookmarks, re-lists and the etcd restart notwithstanding.
//! 3. `410 Gone`: node1's agent is frozen (SIGSTOP) and cut off (an API
//!    server restart) while objects change, etcd is compacted at the
//!    current revision and the API server restarted again (its watch cache
//!    starts from the compacted store), so the agent's resourceVersion is
//!    gone when it is thawed (SIGCONT): it re-lists and the changes are
//!    enforced.
//! 4. The agent restarts: while it is stopped, its table stays in the
//!    kernel (a denied flow stays denied); a pod created and policies
//!    changed meanwhile are enforced once it is back.
//!
//! Pods: `res/web` and `res/stranger` on node1, `res/client` and
//! `res/intruder` on node2. `web` takes only `app=client` (the policy
//! `web`), so `intruder -> web` (routed) is denied throughout, `client ->
//! web` allowed throughout, and `stranger -> web` (across the bridge)
//! changes with the scenarios.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

#[path = "cluster_ops/mod.rs"]
mod cluster_ops;

use std::time::{Duration, Instant};

use cluster_ops::{allowed, denied, Flow};
use cluster_support::Cluster;
use nix::sys::signal::Signal;

/// Deadline of a change being enforced.
const ENFORCED: Duration = Duration::from_secs(30);
/// Deadline of pods running.
const RUNNING: Duration = Duration::from_secs(30);

const NS: &str = "res";
const WEB: &str = "res/web";
const CLIENT: &str = "res/client";
const STRANGER: &str = "res/stranger";
const INTRUDER: &str = "res/intruder";
const NEWCOMER: &str = "res/newcomer";

/// The flows that hold throughout, and `stranger -> web` as it must be now.
fn flows(stranger_allowed: bool) -> Vec<Flow> {
    let stranger = if stranger_allowed {
        allowed(STRANGER, WEB)
    } else {
        denied(STRANGER, WEB)
    };
    vec![denied(INTRUDER, WEB), allowed(CLIENT, WEB), stranger]
}

fn setup(c: &Cluster) {
    use cluster_ops::{ingress_policy, namespace, pod};
    let objects = [
        namespace(NS),
        pod(NS, "web", "node1", "app: web"),
        pod(NS, "stranger", "node1", "app: stranger"),
        pod(NS, "client", "node2", "app: client"),
        pod(NS, "intruder", "node2", "app: intruder"),
        ingress_policy(NS, "web", "app: web", &["app: client"]),
    ];
    c.apply(&objects.concat());
    c.wait_running(NS, &["web", "stranger", "client", "intruder"], RUNNING);
    cluster_ops::expect_flows(c, "set-up", &flows(false), ENFORCED);
}

/// 1: the API server goes away and comes back.
fn apiserver_restart(c: &Cluster) {
    let ((), rounds) = cluster_ops::hold_during(c, "kube-apiserver restart", &flows(false), || {
        c.script(&["restart-apiserver"]);
    });
    eprintln!("kube-apiserver restart: {rounds} rounds of probes held");
    assert!(
        rounds >= 3,
        "too few probes while the API server was down: {rounds}"
    );
    let allow_stranger =
        cluster_ops::ingress_policy(NS, "web-stranger", "app: web", &["app: stranger"]);
    c.apply(&allow_stranger);
    cluster_ops::expect_flows(
        c,
        "catch-up after the API server restart",
        &flows(true),
        ENFORCED,
    );
}

/// 2: etcd goes away and comes back, within a quiet minute.
fn etcd_restart_in_a_quiet_minute(c: &Cluster) {
    // Both agents have synced both policies of steps 0 and 1: an agent
    // whose policy watch was still backing off after the API server
    // restart (it may refuse lists for a few seconds) syncs the second
    // one later, and that sync is no work of the quiet minute.
    for n in [1, 2] {
        cluster_ops::eventually(&format!("node{n} synced both policies"), ENFORCED, || {
            let m = cluster_ops::metrics(c, n);
            match cluster_ops::get(&m, "kube_nftpolicy_objects{what=\"policies\"}") {
                2.0 => Ok(()),
                got => Err(format!("{got} policies in its last sync")),
            }
        });
    }
    // Let the last sync (and any follow-up) finish before counting.
    std::thread::sleep(Duration::from_secs(2));
    let quiet_from = Instant::now();
    let before = [cluster_ops::metrics(c, 1), cluster_ops::metrics(c, 2)];
    let ((), rounds) = cluster_ops::hold_during(c, "etcd restart", &flows(true), || {
        c.script(&["restart-etcd"]);
    });
    eprintln!("etcd restart: {rounds} rounds of probes held");
    assert!(rounds >= 1, "no probe while etcd restarted");
    // The rest of the minute: still enforced, and no work done.
    let minute = Duration::from_secs(62);
    let mut probes = 0;
    while quiet_from.elapsed() < minute {
        cluster_ops::probe_all(c, &flows(true)).unwrap_or_else(|e| panic!("quiet minute: {e}"));
        probes += 1;
        std::thread::sleep(Duration::from_secs(2).min(minute.saturating_sub(quiet_from.elapsed())));
    }
    for (i, before) in before.iter().enumerate() {
        let n = i as u8 + 1;
        let after = cluster_ops::metrics(c, n);
        eprintln!(
            "node{n} over a quiet minute ({probes} probe rounds): syncs+applies {:?} -> {:?}, \
             lists {} -> {}, watch events {} -> {}, watch errors {} -> {}",
            cluster_ops::work(before),
            cluster_ops::work(&after),
            cluster_ops::lists(before),
            cluster_ops::lists(&after),
            cluster_ops::sum(before, "kube_nftpolicy_watch_events_total"),
            cluster_ops::sum(&after, "kube_nftpolicy_watch_events_total"),
            cluster_ops::sum(before, "kube_nftpolicy_errors_total{kind=\"watch"),
            cluster_ops::sum(&after, "kube_nftpolicy_errors_total{kind=\"watch"),
        );
        assert_eq!(
            cluster_ops::work(before),
            cluster_ops::work(&after),
            "node{n}: (syncs, applies) changed over a minute without changes"
        );
    }
    c.k(&["-n", NS, "delete", "networkpolicy", "web-stranger"]);
    cluster_ops::expect_flows(
        c,
        "catch-up after the etcd restart",
        &flows(false),
        ENFORCED,
    );
}

/// 3: node1's agent falls behind a compaction and gets `410 Gone`.
///
/// A frozen process still receives: the kernel buffers its watch streams,
/// and it reads the events when thawed. So its connections are cut first
/// (an API server restart), and the changes made after that reach it only
/// by a re-list.
fn gone_after_compaction(c: &Cluster) {
    let before = cluster_ops::metrics(c, 1);
    let pid = cluster_ops::agent_pid(c, 1);
    cluster_ops::signal(pid, Signal::SIGSTOP);
    let thawed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.script(&["restart-apiserver"]);
        // While it is frozen and cut off: web also takes role=friend, and
        // stranger becomes one.
        c.apply(&cluster_ops::ingress_policy(
            NS,
            "web",
            "app: web",
            &["app: client", "role: friend"],
        ));
        c.k(&["-n", NS, "label", "pod", "stranger", "role=friend"]);
        let revision = cluster_ops::etcd_revision(&c.place);
        cluster_ops::etcd_compact(&c.place, revision);
        eprintln!("compacted etcd at revision {revision}");
        c.script(&["restart-apiserver"]);
        // Nothing of it reached node1's kernel: the agent is still frozen.
        cluster_ops::probe_all(c, &flows(false)).unwrap_or_else(|e| panic!("frozen agent: {e}"));
    }));
    cluster_ops::signal(pid, Signal::SIGCONT);
    if let Err(panic) = thawed {
        std::panic::resume_unwind(panic);
    }
    let thawed_at = Instant::now();
    cluster_ops::expect_flows(
        c,
        "changes made while the agent was frozen",
        &flows(true),
        ENFORCED,
    );
    eprintln!(
        "node1 enforced the changes {:.1?} after SIGCONT",
        thawed_at.elapsed()
    );
    let gone = "kube_nftpolicy_errors_total{kind=\"watch_gone\"}";
    let after = cluster_ops::metrics(c, 1);
    eprintln!(
        "node1 thawed: lists {} -> {}, watch_gone {} -> {}",
        cluster_ops::lists(&before),
        cluster_ops::lists(&after),
        cluster_ops::get(&before, gone),
        cluster_ops::get(&after, gone),
    );
    assert!(
        cluster_ops::lists(&after) > cluster_ops::lists(&before),
        "node1 enforced changes it could only get by a re-list, without a re-list"
    );
    assert!(
        cluster_ops::get(&after, gone) > cluster_ops::get(&before, gone),
        "node1 saw no 410 Gone"
    );
    let log = c.agent_log(1);
    assert!(
        log.contains("resource version too old; listing again"),
        "node1's log does not tell of the re-list"
    );
    assert_eq!(
        cluster_ops::agent_pid(c, 1),
        pid,
        "the agent was not restarted"
    );
}

/// 4: node1's agent stops; pods and policies change; it starts again.
fn agent_restart(c: &Cluster) {
    c.script(&["agent", "stop", "node1"]);
    let table = c.nft(1);
    assert!(
        table.contains("table inet kube-nftpolicy") && table.contains("pod-ingress-res/web"),
        "the table left the kernel with the agent:\n{table}"
    );
    cluster_ops::probe_all(c, &flows(true)).unwrap_or_else(|e| panic!("agent stopped: {e}"));
    // While it is stopped: web takes client only again, and a new pod,
    // isolated by a new policy, starts on node1.
    c.apply(&cluster_ops::ingress_policy(
        NS,
        "web",
        "app: web",
        &["app: client"],
    ));
    c.apply(&format!(
        "{}{}",
        cluster_ops::pod(NS, "newcomer", "node1", "app: newcomer"),
        cluster_ops::ingress_policy(NS, "newcomer", "app: newcomer", &["app: client"])
    ));
    c.wait_running(NS, &["newcomer"], RUNNING);
    // Nobody enforces them yet: node1's table is the one the agent left,
    // and its gate keeps the newcomer, an address it does not know, closed
    // (refused at once over IPv4, unanswered over IPv6).
    for from in [STRANGER, CLIENT] {
        for v6 in [false, true] {
            let got = c.request(from, NEWCOMER, "80", v6, Duration::from_millis(1500));
            assert!(
                got.is_err(),
                "{from} -> {NEWCOMER} (IPv6: {v6}) answered before any agent programmed it: {got:?}"
            );
        }
    }
    let stale = [allowed(STRANGER, WEB), denied(INTRUDER, WEB)];
    cluster_ops::probe_all(c, &stale).unwrap_or_else(|e| panic!("agent stopped: {e}"));
    assert_eq!(
        cluster_ops::without_counters(&c.nft(1)),
        cluster_ops::without_counters(&table),
        "the table changed while no agent ran"
    );

    c.script(&["agent", "start", "node1"]);
    let mut now = flows(false);
    now.extend([
        allowed(CLIENT, NEWCOMER),
        denied(STRANGER, NEWCOMER),
        denied(INTRUDER, NEWCOMER),
    ]);
    cluster_ops::expect_flows(
        c,
        "changes made while the agent was stopped",
        &now,
        ENFORCED,
    );
}

#[test]
fn enforcement_survives_restarts_compaction_and_a_stopped_agent() {
    nftpolicy_lab::kernel_test!("cluster_resilience");
    let start = Instant::now();
    let c = cluster_ops::up(3, 2, "--resync-secs 3600");
    setup(&c);
    let mut lap = Instant::now();
    let mut timed = |what: &str| {
        eprintln!("{what}: {:.1?}", lap.elapsed());
        lap = Instant::now();
    };
    timed("set-up");
    apiserver_restart(&c);
    timed("kube-apiserver restart");
    etcd_restart_in_a_quiet_minute(&c);
    timed("etcd restart and a quiet minute");
    gone_after_compaction(&c);
    timed("410 Gone after compaction");
    agent_restart(&c);
    timed("agent restart");
    for n in 1..=2 {
        assert_eq!(c.agent_get(n, "/healthz").0, 200, "node{n} /healthz");
        assert_eq!(c.agent_get(n, "/readyz").0, 200, "node{n} /readyz");
    }
    eprintln!("total: {:.1?}", start.elapsed());
}
