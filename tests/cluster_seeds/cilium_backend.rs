//! Seed 002: Cilium lab, "5. Network Policies" (docs/tutorials.md §3), in
//! namespace default, on one node (node1) as the lab's cluster has one.
//!
//! `curl -I --connect-timeout 5 backend:8080` is a lookup at kube-dns and a
//! request to the backend pod's 8080. Hubble's flow log and Grafana's drop
//! graphs become the counter of the backend chain's final drop; `cilium
//! endpoint list` becomes the dispatch maps (who is isolated, which way).

use crate::cluster_support::Cluster;
use crate::replay::{allowed, blocked, drop_counter, map_text, pod_ips, Fact, Replay};

const FRONTEND: &str = "default/frontend-588b766fc9-2d5hn";
const NOT_FRONTEND: &str = "default/not-frontend-8f467ccbd-lh4w4";
const BACKEND: &str = "default/backend-65f7c794cc-pj2tc";
const DNS: &str = "kube-system/kube-dns";
const BACKEND_CHAIN: &str = "pod-ingress-default/backend-65f7c794cc-pj2tc";

/// `kubectl exec -ti ${FRONTEND} -- curl -I --connect-timeout 5
/// backend:8080`, and the same from ${NOT_FRONTEND}.
fn curl(frontend: bool, not_frontend: bool, what: &str) -> Vec<Fact> {
    let mut f = Vec::new();
    for (from, want) in [(FRONTEND, frontend), (NOT_FRONTEND, not_frontend)] {
        let what = format!("{what}: curl from {from}");
        f.push(allowed(
            from,
            DNS,
            "53/udp",
            &format!("{what}: lookup of backend"),
        ));
        f.push(if want {
            allowed(from, BACKEND, "8080", &what)
        } else {
            blocked(from, BACKEND, "8080", &what)
        });
    }
    f
}

/// The replay; (steps, probes).
pub fn replay(c: &Cluster) -> (usize, usize) {
    let mut r = Replay::new(c, "cilium-backend", "Cilium backend");

    r.step(
        "5.2 verify connectivity (the simple app of the earlier chapter)",
        |r| {
            r.apply("simple-app.yaml");
            r.running(
                "default",
                &[
                    "frontend-588b766fc9-2d5hn",
                    "not-frontend-8f467ccbd-lh4w4",
                    "backend-65f7c794cc-pj2tc",
                ],
            );
        },
        &curl(true, true, "before any policy"),
    );

    r.step(
        "5.3 kubectl apply -f backend-ingress-deny.yaml",
        |r| r.apply("backend-ingress-deny.yaml"),
        &curl(false, false, "curl: (28) Connection timed out"),
    );
    // Grafana's "Top 10 Source Pods with Denied Packets": here the counter
    // of the backend chain's final drop.
    let denied = drop_counter(c, 1, BACKEND_CHAIN);
    assert!(
        denied > 0,
        "Cilium backend, step 2: the backend chain's drop counted nothing"
    );

    let allow_frontend = curl(true, false, "backend-allow-ingress-frontend");
    let mut f = allow_frontend.clone();
    // hubble observe: not-frontend -> coredns:53 FORWARDED.
    f.push(allowed(
        NOT_FRONTEND,
        DNS,
        "53/udp",
        "not-frontend's DNS is forwarded",
    ));
    r.step(
        "5.5 kubectl create -f backend-allow-ingress-frontend.yaml",
        |r| r.create("backend-allow-ingress-frontend.yaml"),
        &f,
    );
    // hubble observe: not-frontend -> backend:8080 "Policy denied DROPPED".
    let before = drop_counter(c, 1, BACKEND_CHAIN);
    r.check(
        "Cilium backend, step 3 (one more curl from not-frontend)",
        &[blocked(
            NOT_FRONTEND,
            BACKEND,
            "8080",
            "Policy denied DROPPED",
        )],
    );
    let after = drop_counter(c, 1, BACKEND_CHAIN);
    assert!(
        after > before,
        "Cilium backend, step 3: not-frontend's curl is counted by the backend chain's drop ({before} -> {after})"
    );

    // "Note that this is working despite the fact we did not delete the
    // previous backend-ingress-deny policy": policies are additive, and
    // deleting the deny changes nothing either.
    r.step(
        "(aside) kubectl delete netpol backend-ingress-deny",
        |r| r.delete("default", "networkpolicy", "backend-ingress-deny"),
        &allow_frontend,
    );

    // 5.6: "the pods with the label app=backend now have ingress policy
    // enforcement enabled", and only they, only for ingress.
    let mut f = allow_frontend;
    f.push(allowed(
        NOT_FRONTEND,
        FRONTEND,
        "80",
        "frontend is not isolated",
    ));
    f.push(allowed(
        FRONTEND,
        NOT_FRONTEND,
        "80",
        "not-frontend is not isolated",
    ));
    f.push(allowed(
        BACKEND,
        NOT_FRONTEND,
        "80",
        "the backend's egress is open",
    ));
    r.step(
        "(back) kubectl apply -f backend-ingress-deny.yaml; 5.6 the endpoints",
        |r| r.apply("backend-ingress-deny.yaml"),
        &f,
    );
    // Only the backend's addresses are in the ingress maps; none of the
    // app's pods is in the egress maps (other replays' pods may be).
    for (dir, v6) in [
        ("ingress", false),
        ("ingress", true),
        ("egress", false),
        ("egress", true),
    ] {
        let map = format!("{dir}-pods-v{}", if v6 { 6 } else { 4 });
        let text = map_text(c, 1, &map);
        for pod in [BACKEND, FRONTEND, NOT_FRONTEND] {
            let (ns, name) = pod.split_once('/').unwrap_or_default();
            let ip = pod_ips(c, ns, name)
                .into_iter()
                .find(|ip| ip.is_ipv6() == v6)
                .expect("an address of the family");
            let isolated = dir == "ingress" && pod == BACKEND;
            assert_eq!(
                text.contains(&format!("{ip} ")),
                isolated,
                "Cilium backend, 5.6 endpoints: {map} on node1 {} {pod}:\n{text}",
                if isolated {
                    "must list"
                } else {
                    "must not list"
                }
            );
        }
    }

    // Not part of the tutorial: give namespace default back for the handbook.
    for p in ["backend-allow-ingress-frontend", "backend-ingress-deny"] {
        r.delete("default", "networkpolicy", p);
    }
    for p in [FRONTEND, NOT_FRONTEND, BACKEND] {
        r.delete("default", "pod", p.trim_start_matches("default/"));
    }
    r.done()
}
