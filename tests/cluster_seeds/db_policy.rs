//! Seed 004: KodeKloud lecture, "Network Policy" (docs/tutorials.md §5):
//! db-policy in namespace prod, grown step by step, each version applied
//! with `kubectl apply` (the lecture says "Run the Kube control create
//! command"; apply lets each version replace the last, as re-running the
//! lecture's file would). The lecture's cluster runs Flannel, which
//! enforces nothing: kube-nftpolicy is what enforces here.
//!
//! The backup server (192.168.5.10, outside the cluster) cannot be probed
//! here; the lab replay checks the ipBlock both ways. Replies need no rule:
//! every TCP probe reads the server's answer over the connection it opened.

use crate::cluster_support::Cluster;
use crate::replay::{allowed, blocked, Fact, Replay};

const WEB: &str = "prod/web-pod";
const API: &str = "prod/api-pod";
const DB: &str = "prod/db-pod";
const STAGING_API: &str = "staging/api-pod";
const STAGING_WEB: &str = "staging/web-pod";
const DEV_API: &str = "dev/api-pod";
const DNS: &str = "kube-system/kube-dns";

/// A query of the database from `from`.
fn query(from: &str, want: bool, what: &str) -> Fact {
    if want {
        allowed(from, DB, "3306", what)
    } else {
        blocked(from, DB, "3306", what)
    }
}

/// The replay; (steps, probes).
pub fn replay(c: &Cluster) -> (usize, usize) {
    let mut r = Replay::new(c, "db-policy", "KodeKloud db-policy");

    r.step(
        "web, API and database pods; no policy",
        |r| {
            r.apply("namespaces.yaml");
            r.apply("pods.yaml");
            r.running("prod", &["web-pod", "api-pod", "db-pod"]);
            r.running("staging", &["api-pod", "web-pod"]);
            r.running("dev", &["api-pod"]);
        },
        &[
            query(
                WEB,
                true,
                "\"by default, all the three pods can communicate\": web to db",
            ),
            query(API, true, "api to db"),
            allowed(DB, API, "5000", "db to api"),
        ],
    );

    // The two manifests the lecture prints are not valid YAML.
    r.step(
        "the printed manifests: kubectl create refuses them",
        |r| {
            for file in ["as-printed-1.yaml", "as-printed-2.yaml"] {
                let said = r.create_refused(file);
                assert!(
                    said.contains("yaml"),
                    "KodeKloud db-policy, {file}: refused for its YAML: {said}"
                );
            }
            let none = r.k(&["get", "networkpolicy", "-n", "prod", "-o", "name"]);
            assert!(
                none.trim().is_empty(),
                "KodeKloud db-policy: no policy was made: {none}"
            );
        },
        &[query(API, true, "no policy: api to db")],
    );

    // Lecture: "it still doesn't block out traffic because we haven't
    // specified policy types yet. So if there are no policy types specified
    // in the network policy definition, the protection is not enforced."
    // Without policyTypes the API server sets [Ingress]: the db pod is
    // isolated for ingress at once.
    r.step(
        "db-policy selects role=db, no policyTypes",
        |r| r.apply("1-select-db.yaml"),
        &[
            query(API, false, "api to db (API, not the lecture)"),
            query(WEB, false, "web to db (API, not the lecture)"),
            allowed(DB, API, "5000", "egress is not isolated"),
        ],
    );

    r.step(
        "policyTypes Ingress and Egress, no rules",
        |r| r.apply("2-both-types.yaml"),
        &[
            query(API, false, "nothing in"),
            blocked(DB, API, "5000", "nothing out"),
            blocked(DB, DNS, "53/udp", "nothing out: DNS"),
        ],
    );

    // Lecture: "the database pod tries to make an API call to the API pod,
    // then that would not be allowed because that is now an egress traffic",
    // said of this Ingress-only policy. The db pod is not isolated for
    // egress nor the API pod for ingress: the call is allowed, as the
    // lecture itself said ("all egress traffic is unaffected").
    r.step(
        "policyTypes Ingress, from the API pod on TCP 3306",
        |r| r.apply("3-allow-api-pod.yaml"),
        &[
            query(API, true, "the API pod on 3306"),
            blocked(API, DB, "22", "the API pod on another port"),
            query(WEB, false, "the web pod"),
            allowed(DB, API, "5000", "db calls the API (API, not the lecture)"),
        ],
    );

    // "by default, this policy will only allow the pod in the prod
    // namespace". No change to the cluster: more probes of the same state.
    r.step(
        "API pods with the same labels in staging and dev",
        |_| {},
        &[
            query(API, true, "the API pod of prod"),
            query(STAGING_API, false, "the API pod of staging"),
            query(DEV_API, false, "the API pod of dev"),
        ],
    );

    r.step(
        "podSelector AND namespaceSelector name=staging",
        |r| r.apply("4-api-pod-in-staging.yaml"),
        &[
            query(STAGING_API, true, "the API pod of staging"),
            query(STAGING_WEB, false, "the web pod of staging"),
            query(API, false, "the API pod of prod: not in staging"),
        ],
    );

    r.step(
        "namespaceSelector name=staging alone",
        |r| r.apply("5-namespace-staging.yaml"),
        &[
            query(
                STAGING_WEB,
                true,
                "\"such as the web pod ... in the staging namespace\"",
            ),
            query(STAGING_API, true, "the API pod of staging"),
            query(
                DEV_API,
                false,
                "\"pods from outside this namespace won't be allowed\"",
            ),
            query(API, false, "prod's own API pod: outside staging"),
        ],
    );

    // Lecture: "under the from section, we have two elements. So these are
    // two rules." They are two peers of one rule (the same OR; they share
    // the rule's ports).
    r.step(
        "the backup server: API pods of prod, or ipBlock 192.168.5.10/32",
        |r| r.apply("6-backup-server.yaml"),
        &[
            query(API, true, "the API pod of prod"),
            query(WEB, false, "the web pod of prod"),
            query(STAGING_API, false, "the API pod of staging"),
        ],
    );

    r.step(
        "a dash before the namespace selector: three peers",
        |r| r.apply("7-three-peers.yaml"),
        &[
            query(WEB, true, "any pod of prod, web included"),
            query(API, true, "the API pod of prod"),
            query(STAGING_API, false, "the API pod of staging"),
            query(DEV_API, false, "the API pod of dev"),
        ],
    );

    r.step(
        "egress to the backup server on port 80",
        |r| r.apply("8-egress-to-backup.yaml"),
        &[
            query(API, true, "api to db, replies included"),
            query(WEB, false, "web to db"),
            blocked(DB, API, "5000", "the db pod is now isolated for egress"),
            blocked(DB, DNS, "53/udp", "its DNS too: only 192.168.5.10:80"),
        ],
    );
    r.done()
}
