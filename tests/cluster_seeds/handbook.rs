//! Seed 003: kubernetes-handbook, "Network Policy" (docs/tutorials.md §4),
//! in the order the handbook tells it: namespace isolation, the v1.6
//! annotation, pod isolation (test-network-policy), the simple nginx
//! example, then the scenes (recipes).
//!
//! The handbook gives most policies without a command; each is applied with
//! `kubectl apply -f` where it stands alone, or created as the handbook's
//! commands say (`kubectl create -f default-deny.yaml`, ...). The examples
//! are alternatives, not a sequence: a step removes (kubectl delete) what the
//! previous example left in namespace default, and says so. Clients are
//! pods of default and of other namespaces (the handbook's busybox runs with
//! `kubectl run`); `wget nginx` is a request to each nginx pod. The ipBlocks
//! of test-network-policy (172.17.0.0/16 in, 10.0.0.0/24:5978 out) and
//! external access cannot be probed here; the lab replay checks them.

use crate::cluster_support::Cluster;
use crate::handbook_recipes as recipes;
use crate::replay::{allowed, blocked, Fact, Replay};

pub const NGINX: [&str; 2] = [
    "default/nginx-701339712-e0qfq",
    "default/nginx-701339712-o00ef",
];
pub const CLIENT: &str = "default/client";
pub const FRONT_END: &str = "sock-shop/front-end-6f47b6d8c7-rbmxg";
const BUSYBOX: &str = "default/busybox";
const DNS: &str = "kube-system/kube-dns";
const REDIS: &str = "default/redis";

/// `wget nginx` from `from`: each replica on port 80.
pub fn wget_nginx(from: &str, want: bool, what: &str) -> Vec<Fact> {
    NGINX
        .iter()
        .zip(["replica on node1", "replica on node2"])
        .map(|(to, which)| {
            let what = format!("{what} ({which})");
            if want {
                allowed(from, to, "80", &what)
            } else {
                blocked(from, to, "80", &what)
            }
        })
        .collect()
}

/// The replay; (steps, probes).
pub fn replay(c: &Cluster) -> (usize, usize) {
    let mut r = Replay::new(c, "handbook", "kubernetes-handbook");
    namespace_isolation(&mut r);
    pod_isolation(&mut r);
    simple_example(&mut r);
    recipes::replay(&mut r);
    r.done()
}

/// "Namespace isolation": default deny ingress, egress, both; allow all
/// ingress, egress; and the v1.6 annotation.
fn namespace_isolation(r: &mut Replay<'_>) {
    let mut f = wget_nginx(CLIENT, true, "before any policy");
    f.extend(wget_nginx(
        FRONT_END,
        true,
        "before any policy, from sock-shop",
    ));
    r.step(
        "the pods: nginx, sock-shop's front-end, clients",
        |r| {
            r.apply("nginx.yaml");
            r.apply("sock-shop.yaml");
            r.apply("test-network-policy-pods.yaml");
            r.apply("clients.yaml");
            r.running(
                "default",
                &["nginx-701339712-e0qfq", "nginx-701339712-o00ef"],
            );
            r.running("default", &["redis", "frontend", "other", "client"]);
            r.running("sock-shop", &["front-end-6f47b6d8c7-rbmxg"]);
            r.running("myproject", &["app"]);
            r.running("myprojects", &["app"]);
            r.running("production", &["client"]);
            r.running("testing", &["client"]);
        },
        &f,
    );

    // "rejecting Ingress communication between all Pods by default".
    let mut f = wget_nginx(CLIENT, false, "pod to pod in default");
    f.extend(wget_nginx(FRONT_END, false, "from another namespace"));
    f.push(allowed(CLIENT, FRONT_END, "8079", "egress is untouched"));
    f.push(allowed(CLIENT, DNS, "53/udp", "egress is untouched: DNS"));
    r.step(
        "default-deny, Ingress",
        |r| r.apply("default-deny-ingress.yaml"),
        &f,
    );

    let mut f = wget_nginx(CLIENT, false, "pod to pod in default");
    f.push(blocked(CLIENT, DNS, "53/udp", "DNS is egress too"));
    f.push(blocked(CLIENT, FRONT_END, "8079", "out of default"));
    f.extend(wget_nginx(FRONT_END, true, "ingress is untouched"));
    r.step(
        "default-deny, Egress",
        |r| r.apply("default-deny-egress.yaml"),
        &f,
    );

    let mut f = wget_nginx(CLIENT, false, "pod to pod in default");
    f.extend(wget_nginx(FRONT_END, false, "into default"));
    f.push(blocked(CLIENT, FRONT_END, "8079", "out of default"));
    r.step(
        "default-deny, Ingress and Egress",
        |r| r.apply("default-deny-ingress-egress.yaml"),
        &f,
    );

    // allow-all beside the ingress default deny: policies add up.
    let mut f = wget_nginx(CLIENT, true, "allow-all beside default-deny");
    f.extend(wget_nginx(FRONT_END, true, "allow-all, from sock-shop"));
    r.step(
        "allow-all ingress (default-deny, Ingress, still there)",
        |r| {
            r.apply("default-deny-ingress.yaml");
            r.apply("allow-all-ingress.yaml");
        },
        &f,
    );

    // Handbook: "By default, the policy for allowing Egress communication
    // between all Pods is" `podSelector: {}`, `egress: [{}]`, no
    // policyTypes. The API server sets policyTypes [Ingress, Egress] (Egress
    // because there is an egress section): every pod of default is isolated
    // for ingress with no ingress rule, so the policy also denies all ingress.
    let mut f = vec![
        allowed(CLIENT, FRONT_END, "8079", "egress allowed"),
        allowed(CLIENT, DNS, "53/udp", "egress allowed: DNS"),
    ];
    f.extend(wget_nginx(
        CLIENT,
        false,
        "but ingress to nginx is denied (API, not the handbook)",
    ));
    f.extend(wget_nginx(
        FRONT_END,
        false,
        "from sock-shop too (API, not the handbook)",
    ));
    r.step(
        "allow-all egress as written (default-deny deleted)",
        |r| {
            r.delete("default", "networkpolicy", "default-deny");
            r.apply("allow-all-egress.yaml");
        },
        &f,
    );
    let mut f = wget_nginx(CLIENT, true, "with policyTypes: [Egress]");
    f.push(allowed(CLIENT, FRONT_END, "8079", "egress allowed"));
    r.step(
        "(aside) allow-all egress with policyTypes: [Egress]",
        |r| r.apply("allow-all-egress-policy-types.yaml"),
        &f,
    );

    // "The v1.6 version uses Annotation to isolate traffic between all Pods
    // in the namespace": not part of networking.k8s.io/v1; it isolates
    // nothing.
    let mut f = wget_nginx(CLIENT, true, "annotated namespace, same namespace");
    f.extend(wget_nginx(
        FRONT_END,
        true,
        "annotated namespace, from sock-shop",
    ));
    r.step(
        "kubectl annotate ns default net.beta.kubernetes.io/network-policy=DefaultDeny (allow-all deleted)",
        |r| {
            r.delete("default", "networkpolicy", "allow-all");
            r.k(&[
                "annotate",
                "ns",
                "default",
                r#"net.beta.kubernetes.io/network-policy={"ingress": {"isolation": "DefaultDeny"}}"#,
            ]);
        },
        &f,
    );
}

/// "Pod isolation": the two test-network-policy manifests.
fn pod_isolation(r: &mut Replay<'_>) {
    // The first manifest writes `protocol: tcp`: the API server accepts only
    // TCP, UDP and SCTP, and refuses the object.
    let mut refused = String::new();
    r.step(
        "kubectl create -f test-network-policy (protocol: tcp), refused",
        |r| {
            r.k(&[
                "annotate",
                "ns",
                "default",
                "net.beta.kubernetes.io/network-policy-",
            ]);
            refused = r.create_refused("test-network-policy-lowercase-protocol.yaml");
        },
        &[
            allowed("default/other", REDIS, "6379", "nothing isolates redis"),
            allowed("myprojects/app", REDIS, "6379", "nothing isolates redis"),
        ],
    );
    assert!(
        refused.contains("spec.ingress[0].ports[0].protocol") && refused.contains("\"tcp\""),
        "kubernetes-handbook, test-network-policy with protocol: tcp: the API server names the field: {refused}"
    );

    let f = vec![
        allowed(
            "default/frontend",
            REDIS,
            "6379",
            "role=frontend in default",
        ),
        allowed(
            "myproject/app",
            REDIS,
            "6379",
            "namespace project=myproject",
        ),
        blocked("default/other", REDIS, "6379", "other pods of default"),
        blocked("default/frontend", REDIS, "6380", "another port"),
        // The prose: "Allow all Pods in the namespace with the
        // project=myprojects tag"; the manifest selects project: myproject.
        blocked(
            "myprojects/app",
            REDIS,
            "6379",
            "project=myprojects (the prose, not the manifest)",
        ),
        // Its egress goes to 10.0.0.0/24 on TCP 5978 only.
        blocked(REDIS, DNS, "53/udp", "redis egress: only 10.0.0.0/24:5978"),
        blocked(
            REDIS,
            "default/frontend",
            "80",
            "redis egress: only 10.0.0.0/24:5978",
        ),
    ];
    r.step(
        "kubectl create -f test-network-policy (Ingress and Egress)",
        |r| r.create("test-network-policy.yaml"),
        &f,
    );
}

/// "Simple example": nginx, default-deny, access-nginx, front-end-access.
fn simple_example(r: &mut Replay<'_>) {
    let mut f = wget_nginx(BUSYBOX, true, "wget --spider nginx");
    f.push(allowed(BUSYBOX, DNS, "53/udp", "the lookup of nginx"));
    r.step(
        "kubectl run busybox (test-network-policy deleted)",
        |r| {
            r.delete("default", "networkpolicy", "test-network-policy");
            // `kubectl run busybox --rm -ti --image=busybox /bin/sh`.
            r.k(&["run", "busybox", "--image=busybox"]);
            r.running("default", &["busybox"]);
        },
        &f,
    );

    // "other Pods (including outside the namespace) cannot access nginx".
    // The handbook runs a new busybox; the one above is the same pod.
    let mut f = wget_nginx(BUSYBOX, false, "wget: download timed out");
    f.extend(wget_nginx(
        FRONT_END,
        false,
        "including outside the namespace",
    ));
    r.step(
        "kubectl create -f default-deny.yaml",
        |r| r.create("default-deny.yaml"),
        &f,
    );

    r.step(
        "kubectl create -f nginx-policy.yaml",
        |r| r.create("nginx-policy.yaml"),
        &wget_nginx(
            BUSYBOX,
            false,
            "Pod without access=true tag still cannot access nginx",
        ),
    );
    let mut f = wget_nginx(BUSYBOX, true, "Pod with access=true tag can access nginx");
    f.push(allowed(BUSYBOX, DNS, "53/udp", "the lookup of nginx"));
    r.step(
        "kubectl run busybox --labels=access=true (the first one exited: --rm)",
        |r| {
            r.delete("default", "pod", "busybox");
            r.k(&["run", "busybox", "--labels=access=true", "--image=busybox"]);
            r.running("default", &["busybox"]);
        },
        &f,
    );

    // Handbook: "Finally open the external access to the nginx service" with
    // front-end-access in namespace sock-shop. A policy selects pods of its
    // own namespace: nginx runs in default, so this opens nothing.
    let mut f = wget_nginx(
        FRONT_END,
        false,
        "front-end-access in sock-shop opens nothing (API, not the handbook)",
    );
    f.extend(wget_nginx(
        CLIENT,
        false,
        "front-end-access in sock-shop opens nothing (API, not the handbook)",
    ));
    f.extend(wget_nginx(BUSYBOX, true, "access=true still works"));
    r.step(
        "kubectl create -f nginx-external-policy.yaml",
        |r| r.create("nginx-external-policy.yaml"),
        &f,
    );
    let mut f = wget_nginx(
        FRONT_END,
        true,
        "front-end-access in default: any source on 80",
    );
    f.extend(wget_nginx(
        CLIENT,
        true,
        "front-end-access in default: any source on 80",
    ));
    f.push(blocked(FRONT_END, NGINX[0], "443", "port 80 only"));
    f.push(blocked(CLIENT, NGINX[1], "443", "port 80 only"));
    r.step(
        "(aside) the same policy in namespace default",
        |r| r.create("nginx-external-policy-in-default.yaml"),
        &f,
    );
}
