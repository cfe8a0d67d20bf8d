//! The agent's identity on a real API server (cluster id 4): the
//! ServiceAccount of `manifests/00-rbac.yaml` may read what the agent needs
//! and nothing more (`kubectl auth can-i --as`), and an agent whose role
//! lost a resource stays up, says so clearly, keeps the table it has, and
//! recovers without a restart when the role is fixed.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

#[path = "cluster_ops/mod.rs"]
mod cluster_ops;

use std::time::{Duration, Instant};

use cluster_ops::{allowed, denied, Flow};
use cluster_support::Cluster;
use serde_json::Value;

const SA: &str = "system:serviceaccount:kube-system:kube-nftpolicy";
const RBAC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/00-rbac.yaml");
const ENFORCED: Duration = Duration::from_secs(30);

const NS: &str = "rbac";
const WEB: &str = "rbac/web";
const CLIENT: &str = "rbac/client";
const STRANGER: &str = "rbac/stranger";

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// What the agent reads, as `kubectl auth can-i` and `--list` name it.
const READS: [&str; 4] = [
    "pods",
    "namespaces",
    "nodes",
    "networkpolicies.networking.k8s.io",
];

/// `kubectl auth can-i VERB RESOURCE --as` the agent, in every namespace.
/// `RESOURCE` may name a subresource: `pods/status` (kubectl itself would
/// read that as the pod named `status`).
fn can_i(c: &Cluster, verb: &str, resource: &str) -> bool {
    let mut args = vec!["auth", "can-i", verb];
    let sub;
    match resource.split_once('/') {
        Some((r, s)) => {
            sub = format!("--subresource={s}");
            args.extend([r, sub.as_str()]);
        }
        None => args.push(resource),
    }
    args.extend(["--as", SA, "--all-namespaces"]);
    let out = c.kubectl(&args);
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "can-i {verb} {resource}: {other:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `kubectl auth can-i --list`: resource → verbs, for resources (not URLs).
fn rules(c: &Cluster) -> Vec<(String, String)> {
    let text = c.k(&["auth", "can-i", "--list", "--as", SA]);
    text.lines()
        .skip(1)
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let resource = l.split_whitespace().next()?;
            let verbs = &l[l.rfind('[')?..];
            Some((resource.to_owned(), verbs.to_owned()))
        })
        .collect()
}

fn check_identity(c: &Cluster) {
    // (resource, verbs that must be allowed, verbs that must not)
    let mut checks: Vec<(&str, Vec<&str>, Vec<&str>)> = Vec::new();
    for resource in READS {
        checks.push((resource, READ.to_vec(), WRITE.to_vec()));
    }
    for resource in ["secrets", "configmaps", "serviceaccounts/token"] {
        checks.push((resource, vec![], [&READ[..], &WRITE[..]].concat()));
    }
    for resource in ["pods/status", "pods/exec", "nodes/status", "nodes/proxy"] {
        checks.push((resource, vec![], vec!["get", "create", "update", "patch"]));
    }
    // One thread per resource: some eighty kubectl runs.
    let wrong: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = checks
            .iter()
            .map(|(resource, yes, no)| {
                s.spawn(move || {
                    let mut wrong = Vec::new();
                    for verb in yes {
                        if !can_i(c, verb, resource) {
                            wrong.push(format!("cannot {verb} {resource}"));
                        }
                    }
                    for verb in no {
                        if can_i(c, verb, resource) {
                            wrong.push(format!("can {verb} {resource}"));
                        }
                    }
                    wrong
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(wrong.is_empty(), "the agent's identity: {wrong:?}");

    // Nothing more than the reads, and what every authenticated user gets
    // (system:basic-user: its own access reviews).
    let mut got = rules(c);
    got.retain(|(r, _)| !r.starts_with("self"));
    got.sort();
    let mut want: Vec<(String, String)> = READS
        .iter()
        .map(|r| ((*r).to_owned(), "[get list watch]".to_owned()))
        .collect();
    want.sort();
    assert_eq!(got, want, "kubectl auth can-i --list --as {SA}");
}

/// The manifest's ClusterRole without the rule for NetworkPolicies, as JSON.
fn role_without_policies() -> String {
    let text = std::fs::read_to_string(RBAC).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let mut role = docs
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole in manifests/00-rbac.yaml");
    let rules = role["rules"].as_array_mut().unwrap();
    let had = rules.len();
    rules.retain(|r| !r["resources"].to_string().contains("networkpolicies"));
    assert_eq!(rules.len(), had - 1, "one rule grants networkpolicies");
    role.to_string()
}

fn flows() -> Vec<Flow> {
    vec![denied(STRANGER, WEB), allowed(CLIENT, WEB)]
}

fn setup(c: &Cluster) {
    use cluster_ops::{ingress_policy, namespace, pod};
    let objects = [
        namespace(NS),
        pod(NS, "web", "node1", "app: web"),
        pod(NS, "client", "node1", "app: client"),
        pod(NS, "stranger", "node1", "app: stranger"),
        ingress_policy(NS, "web", "app: web", &["app: client"]),
    ];
    c.apply(&objects.concat());
    c.wait_running(NS, &["web", "client", "stranger"], Duration::from_secs(30));
    cluster_ops::expect_flows(c, "set-up", &flows(), ENFORCED);
    cluster_ops::expect_flows(c, "set-up", &[allowed(CLIENT, STRANGER)], ENFORCED);
}

/// The role loses NetworkPolicies while the agent runs: its open watch is
/// not checked again, so it keeps seeing policies (RBAC is checked when a
/// request starts).
fn revoke_while_running(c: &Cluster) {
    c.apply(&role_without_policies());
    cluster_ops::eventually("the role lost networkpolicies", ENFORCED, || {
        match can_i(c, "list", "networkpolicies.networking.k8s.io") {
            false => Ok(()),
            true => Err("still may list".into()),
        }
    });
    let log_from = c.agent_log(1).len();
    c.apply(&cluster_ops::ingress_policy(
        NS,
        "stranger",
        "app: stranger",
        &["app: web"],
    ));
    cluster_ops::expect_flows(
        c,
        "a policy made after the revocation, through the open watch",
        &[denied(CLIENT, STRANGER), allowed(WEB, STRANGER)],
        ENFORCED,
    );
    let log = cluster_ops::log_since(c, 1, log_from);
    assert!(
        cluster_ops::log_lines(&log, "ERROR", "may not list/watch").is_empty(),
        "the running agent complained already:\n{log}"
    );
}

/// The agent restarts without the permission: it stays up, says what is
/// wrong, backs off, and the table of its previous run stays enforced.
/// Returns the new agent's pid.
fn restart_without_permission(c: &Cluster) -> nix::unistd::Pid {
    let old = cluster_ops::agent_pid(c, 1);
    let log_from = c.agent_log(1).len();
    c.script(&["agent", "stop", "node1"]);
    // `agent start` waits for /readyz, which cannot come: do not wait for it.
    let mut start = cluster_ops::script_spawn(c, &["agent", "start", "node1"]);
    let started = Instant::now();
    let pid = cluster_ops::eventually("a new agent", Duration::from_secs(20), || {
        match c.agent_pid(1).map(nix::unistd::Pid::from_raw) {
            Some(pid) if pid != old && cluster_ops::alive(pid) => Ok(pid),
            other => Err(format!("pid {other:?}")),
        }
    });
    let forbidden = "kube_nftpolicy_errors_total{kind=\"forbidden\"}";
    cluster_ops::eventually(
        "a forbidden list counted",
        Duration::from_secs(20),
        || match c.metric(1, forbidden) {
            n if n >= 1.0 => Ok(()),
            n => Err(format!("{forbidden} {n}")),
        },
    );
    // A while of it: up, alive to its probes, not ready, enforcing.
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(15) || rounds < 3 {
        assert!(
            cluster_ops::alive(pid),
            "the agent exited:\n{}",
            c.agent_log(1)
        );
        assert_eq!(cluster_ops::agent_pid(c, 1), pid, "the agent was restarted");
        let (code, body) = c.agent_get(1, "/healthz");
        assert_eq!(
            code, 200,
            "/healthz of an agent that may not list policies: {body}"
        );
        let (code, body) = c.agent_get(1, "/readyz");
        // Deliberate: it never listed policies, so it applied nothing and
        // is not ready; the table of its previous run stays.
        assert_eq!(code, 503, "/readyz before any apply: {body}");
        cluster_ops::probe_all(c, &flows()).unwrap_or_else(|e| panic!("after restart: {e}"));
        cluster_ops::probe_all(c, &[denied(CLIENT, STRANGER), allowed(WEB, STRANGER)])
            .unwrap_or_else(|e| panic!("after restart: {e}"));
        rounds += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = start.kill();
    let _ = start.wait();
    let table = c.nft(1);
    assert!(
        table.contains("pod-ingress-rbac/web") && table.contains("pod-ingress-rbac/stranger"),
        "the previous table is gone:\n{table}"
    );

    let log = cluster_ops::log_since(c, 1, log_from);
    let errors = cluster_ops::log_lines(&log, "ERROR", "may not list/watch networkpolicies");
    assert!(
        errors
            .iter()
            .all(|l| l.contains("ClusterRole kube-nftpolicy")),
        "{errors:?}"
    );
    assert!(
        !errors.is_empty(),
        "no error naming networkpolicies:\n{log}"
    );
    for other in ["pods", "namespaces"] {
        let what = format!("may not list/watch {other}");
        assert!(
            cluster_ops::log_lines(&log, "ERROR", &what).is_empty(),
            "{what}:\n{log}"
        );
    }
    // Backing off (0.8 s doubling to 30 s), not retrying every second.
    let count = c.metric(1, forbidden);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{count} forbidden lists in {secs:.1} s; first error: {}",
        errors[0]
    );
    assert!(
        count <= 3.0 + secs / 3.0,
        "{count} forbidden lists in {secs:.1} s: no backoff"
    );
    pid
}

/// The role is fixed: the same agent lists, applies and enforces a new policy.
fn restore(c: &Cluster, pid: nix::unistd::Pid) {
    let fixed = Instant::now();
    c.apply(&std::fs::read_to_string(RBAC).unwrap());
    // The next retry may be 30 s (and jitter) away.
    cluster_ops::eventually(
        "ready once the role is fixed",
        Duration::from_secs(90),
        || match c.agent_get(1, "/readyz") {
            (200, _) => Ok(()),
            (code, body) => Err(format!("{code}: {body}")),
        },
    );
    eprintln!("ready {:.1?} after the role was fixed", fixed.elapsed());
    assert_eq!(cluster_ops::agent_pid(c, 1), pid, "recovered by a restart");
    c.k(&["-n", NS, "delete", "networkpolicy", "stranger"]);
    c.apply(&cluster_ops::ingress_policy(
        NS,
        "client",
        "app: client",
        &["app: web"],
    ));
    cluster_ops::expect_flows(
        c,
        "after the role was fixed",
        &[
            allowed(CLIENT, STRANGER),
            denied(STRANGER, CLIENT),
            allowed(WEB, CLIENT),
            denied(STRANGER, WEB),
            allowed(CLIENT, WEB),
        ],
        ENFORCED,
    );
}

#[test]
fn the_agent_reads_what_it_needs_and_survives_a_missing_permission() {
    nftpolicy_lab::kernel_test!("cluster_rbac");
    let start = Instant::now();
    let c = cluster_ops::up(4, 1, "");
    check_identity(&c);
    eprintln!("identity checked: {:.1?}", start.elapsed());
    setup(&c);
    revoke_while_running(&c);
    let pid = restart_without_permission(&c);
    restore(&c, pid);
    eprintln!("total: {:.1?}", start.elapsed());
}
