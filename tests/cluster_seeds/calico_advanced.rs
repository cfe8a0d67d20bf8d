//! Seed 000: Calico, "Controlling Ingress and Egress Traffic with Network
//! Policy" (docs/tutorials.md §1), in namespace advanced-policy-demo.
//!
//! Pods: two nginx replicas (one per node), `access` (`kubectl run`, so
//! where the runner's hash puts it), kube-dns (shared, kube-system) and,
//! for "from any pods in the advanced-policy-demo namespace", a busybox of
//! namespace default. `wget nginx` is a lookup (UDP 53 to kube-dns) and a
//! request to each nginx pod; `nslookup` is the lookup; google.com cannot
//! be probed here (no external host: the lab replay checks it).

use crate::cluster_support::Cluster;
use crate::replay::{allowed, blocked, Fact, Replay};

const NS: &str = "advanced-policy-demo";
const ACCESS: &str = "advanced-policy-demo/access";
const NGINX: [&str; 2] = [
    "advanced-policy-demo/nginx-8586cf59-4xk8z",
    "advanced-policy-demo/nginx-8586cf59-mq5wd",
];
const DNS: &str = "kube-system/kube-dns";
const BUSYBOX: &str = "default/busybox";

/// `wget -q --timeout=5 nginx -O -` from the access pod: the lookup
/// (`lookup`), then the page from each replica (`page`).
fn wget_nginx(lookup: bool, page: bool, what: &str) -> Vec<Fact> {
    let mut f = vec![if lookup {
        allowed(ACCESS, DNS, "53/udp", &format!("{what}: lookup of nginx"))
    } else {
        blocked(ACCESS, DNS, "53/udp", &format!("{what}: lookup of nginx"))
    }];
    for (nginx, which) in NGINX.iter().zip(["replica on node1", "replica on node2"]) {
        let what = format!("{what} ({which})");
        f.push(if page {
            allowed(ACCESS, nginx, "80", &what)
        } else {
            blocked(ACCESS, nginx, "80", &what)
        });
    }
    f
}

/// The replay; (steps, probes).
pub fn replay(c: &Cluster) -> (usize, usize) {
    let mut r = Replay::new(c, "calico-advanced", "Calico advanced policy");

    let mut f = wget_nginx(true, true, "wget nginx: the welcome page");
    f.push(allowed(
        BUSYBOX,
        NGINX[0],
        "80",
        "a pod of another namespace",
    ));
    r.step(
        "create the namespace and nginx; run access",
        |r| {
            r.k(&["create", "ns", NS]);
            r.apply("nginx.yaml");
            // `kubectl run --namespace=advanced-policy-demo access --rm -ti
            // --image busybox /bin/sh`: a Pod named access, label run=access.
            r.k(&["run", "--namespace", NS, "access", "--image", "busybox"]);
            // Not in the tutorial: a pod of another namespace, for "from any
            // pods in the advanced-policy-demo namespace".
            r.k(&[
                "run",
                "--namespace",
                "default",
                "busybox",
                "--image",
                "busybox",
            ]);
            r.running(
                NS,
                &["nginx-8586cf59-4xk8z", "nginx-8586cf59-mq5wd", "access"],
            );
            r.running("default", &["busybox"]);
        },
        &f,
    );

    r.step(
        "deny all ingress: default-deny-ingress",
        |r| r.create("default-deny-ingress.yaml"),
        &wget_nginx(true, false, "wget nginx: download timed out"),
    );

    let mut f = wget_nginx(true, true, "wget nginx: the welcome page again");
    for nginx in NGINX {
        f.push(blocked(
            BUSYBOX,
            nginx,
            "80",
            "only pods of advanced-policy-demo are allowed to nginx",
        ));
    }
    f.push(blocked(
        NGINX[0],
        ACCESS,
        "80",
        "the default deny still covers the access pod",
    ));
    r.step(
        "allow ingress to nginx: access-nginx",
        |r| r.create("access-nginx.yaml"),
        &f,
    );

    // nslookup nginx: "connection timed out; no servers could be reached";
    // wget google.com: "bad address".
    let mut f = wget_nginx(false, false, "nslookup nginx and wget nginx");
    f.push(allowed(
        BUSYBOX,
        DNS,
        "53/udp",
        "namespace default is not isolated",
    ));
    r.step(
        "deny all egress: default-deny-egress",
        |r| r.create("default-deny-egress.yaml"),
        &f,
    );

    // No policy reads the label yet.
    r.step(
        "kubectl label namespace kube-system name=kube-system",
        |r| {
            r.k(&["label", "namespace", "kube-system", "name=kube-system"]);
        },
        &[blocked(ACCESS, DNS, "53/udp", "still no lookup")],
    );

    let dns_allowed = |what: &str| -> Vec<Fact> {
        let mut f = wget_nginx(
            true,
            false,
            &format!("{what}: nslookup answers, HTTP still fails"),
        );
        f.push(blocked(
            ACCESS,
            DNS,
            "53",
            &format!("{what}: only UDP 53 is allowed"),
        ));
        f
    };
    r.step(
        "allow DNS egress: allow-dns-access",
        |r| r.create("allow-dns-access.yaml"),
        &dns_allowed("allow-dns-access"),
    );

    // Not a step of the tutorial: why it labels kube-system first. Without
    // the label, `namespaceSelector: {name: kube-system}` selects nothing.
    r.step(
        "(aside) kubectl label namespace kube-system name-",
        |r| {
            r.k(&["label", "namespace", "kube-system", "name-"]);
        },
        &[blocked(
            ACCESS,
            DNS,
            "53/udp",
            "no namespace is labelled name=kube-system",
        )],
    );
    // Tutorial: "kubectl NetworkPolicy requires a selector running against
    // a label you create for the namespace". Not since Kubernetes 1.21: the
    // API server labels every namespace kubernetes.io/metadata.name.
    // (kubectl replace: the policy was made by kubectl create, so apply's
    // three-way merge would keep the old `name` key beside the new one.)
    r.step(
        "(aside) allow-dns-access by kubernetes.io/metadata.name, kube-system unlabelled",
        |r| {
            r.k(&[
                "replace",
                "-f",
                &r.path("allow-dns-access-by-metadata-name.yaml"),
            ]);
        },
        &dns_allowed("kubernetes.io/metadata.name (API, not the tutorial)"),
    );
    r.step(
        "(back to the tutorial) kube-system labelled, allow-dns-access as written",
        |r| {
            r.k(&["label", "namespace", "kube-system", "name=kube-system"]);
            r.k(&["replace", "-f", &r.path("allow-dns-access.yaml")]);
        },
        &dns_allowed("allow-dns-access"),
    );

    // "Access to google.com times out because it can resolve DNS but has no
    // egress access to anything other than pods with labels matching run:
    // nginx in the advanced-policy-demo namespace."
    let mut f = wget_nginx(true, true, "wget nginx: the welcome page");
    f.push(blocked(ACCESS, BUSYBOX, "80", "nothing but run=nginx pods"));
    f.push(blocked(
        ACCESS,
        DNS,
        "53",
        "nothing but run=nginx pods and UDP 53",
    ));
    r.step(
        "allow egress to nginx: allow-egress-to-advance-policy-ns",
        |r| r.create("allow-egress-to-advance-policy-ns.yaml"),
        &f,
    );

    // Not part of the tutorial: give back what other replays share.
    r.k(&["label", "namespace", "kube-system", "name-"]);
    r.delete("default", "pod", "busybox");
    r.done()
}
