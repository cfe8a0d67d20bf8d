//! Seed 001: "Network Policies" (Spanish, Calico), webapp-balanced
//! (docs/tutorials.md §2).
//!
//! Pods: the web pod (Apache, 80 and 443) and the two network-tools pods
//! (utils, troubleshoot) on node1, as on the tutorial's kubenode1.acme.es;
//! the Ingress controller on node2. `nc -zv <ip> 80` is a TCP request to
//! the web pod's address, `nslookup` a lookup at kube-dns. ping, the
//! Internet, the browser and NodePorts cannot be probed here (the lab
//! replay checks them).

use crate::cluster_support::Cluster;
use crate::replay::{allowed, blocked, Fact, Replay};

const WEB: &str = "webapp-balanced/webapp-balanced-6f4f8dcd99-szwdr";
const UTILS: &str = "utils/utils-646c66795d-qdtg9";
const TROUBLE: &str = "troubleshoot/troubleshoot-7bf854b879-v6ggl";
const CONTROLLER: &str = "ingress-nginx/ingress-nginx-controller-5c8d66c76d-8mzvq";
const DNS: &str = "kube-system/kube-dns";
const INSIDE: &str = "webapp-balanced/utils-in-webapp";

/// `nc -zv <web> 80` from `from`.
fn nc(from: &str, want: bool, what: &str) -> Fact {
    if want {
        allowed(from, WEB, "80", what)
    } else {
        blocked(from, WEB, "80", what)
    }
}

/// `nc` from utils and from troubleshoot.
fn both(utils: bool, trouble: bool, what: &str) -> Vec<Fact> {
    vec![
        nc(UTILS, utils, &format!("{what}: from utils")),
        nc(TROUBLE, trouble, &format!("{what}: from troubleshoot")),
    ]
}

/// `kubectl edit` of default-deny-ingress, saved: an apply of the buffer.
fn edit(file: &'static str) -> impl FnOnce(&Replay<'_>) {
    move |r| r.apply(file)
}

/// The replay; (steps, probes).
pub fn replay(c: &Cluster) -> (usize, usize) {
    let mut r = Replay::new(c, "webapp-balanced", "webapp-balanced (Spanish)");

    let mut f = both(true, true, "nc -zv 80 before any policy");
    f.push(allowed(UTILS, DNS, "53/udp", "nslookup www.google.com"));
    f.push(allowed(CONTROLLER, WEB, "80", "the Ingress controller"));
    r.step(
        "apply utils.yaml, troubleshoot.yaml, the balanced app",
        |r| {
            r.apply("utils.yaml");
            r.apply("troubleshoot.yaml");
            r.apply("webapp-balanced.yaml");
            r.apply("ingress-nginx.yaml");
            r.running("utils", &["utils-646c66795d-qdtg9"]);
            r.running("troubleshoot", &["troubleshoot-7bf854b879-v6ggl"]);
            r.running("webapp-balanced", &["webapp-balanced-6f4f8dcd99-szwdr"]);
            r.running(
                "ingress-nginx",
                &["ingress-nginx-controller-5c8d66c76d-8mzvq"],
            );
        },
        &f,
    );

    let mut f = both(false, false, "nc: Connection timed out");
    f.push(allowed(UTILS, DNS, "53/udp", "egress is not isolated"));
    r.step(
        "kubectl apply -f network-policy-ingress-deny-all.yaml",
        |r| r.apply("network-policy-ingress-deny-all.yaml"),
        &f,
    );

    let mut f = both(true, true, "ingress: [{}]");
    f.push(allowed(UTILS, WEB, "443", "ingress: [{}]: every port"));
    r.step("edit: allow all ingress", edit("edit-1-allow-all.yaml"), &f);

    r.step(
        "edit: block all ingress again",
        edit("edit-2-deny-all.yaml"),
        &both(false, false, "blocked again"),
    );

    // Tutorial: "Verificamos que podemos acceder al puerto 80 y realizar ping
    // al contenedor del namespace webapp-balanced desde el namespace utils",
    // and shows `nc` from utils succeeding. A podSelector without a
    // namespaceSelector selects pods of the policy's own namespace
    // (webapp-balanced); the utils pod is in namespace utils, so the API
    // allows it nothing: it is blocked, like troubleshoot.
    r.step(
        "edit: from podSelector app=utils",
        edit("edit-3-pod-selector-app-utils.yaml"),
        &both(
            false,
            false,
            "podSelector app=utils (API, not the tutorial)",
        ),
    );
    // What that selector does allow: an app=utils pod of webapp-balanced.
    r.step(
        "(aside) kubectl run utils-in-webapp -n webapp-balanced --labels=app=utils",
        |r| {
            r.k(&[
                "run",
                "utils-in-webapp",
                "--namespace",
                "webapp-balanced",
                "--labels=app=utils",
                "--image",
                "amouat/network-utils",
            ]);
            r.running("webapp-balanced", &["utils-in-webapp"]);
        },
        &[nc(INSIDE, true, "an app=utils pod in webapp-balanced")],
    );
    r.step(
        "(aside) kubectl delete pod utils-in-webapp",
        |r| r.delete("webapp-balanced", "pod", "utils-in-webapp"),
        &both(false, false, "podSelector app=utils"),
    );

    // Tutorial: "podríamos lograr el mismo resultado con la siguiente
    // network policy que utiliza el nombre del namespace como selector",
    // `namespaceSelector: {matchLabels: {name: utils}}`. A selector reads
    // labels, not names: namespace utils has no `name` label, so the policy
    // allows nothing.
    r.step(
        "edit: from namespaceSelector name=utils",
        edit("edit-4-namespace-selector-name-utils.yaml"),
        &both(
            false,
            false,
            "name=utils, namespace unlabelled (API, not the tutorial)",
        ),
    );
    r.step(
        "(aside) kubectl label namespace utils name=utils",
        |r| {
            r.k(&["label", "namespace", "utils", "name=utils"]);
        },
        &both(true, false, "namespace utils labelled name=utils"),
    );
    r.step(
        "(aside) namespaceSelector kubernetes.io/metadata.name=utils, label removed",
        |r| {
            r.k(&["label", "namespace", "utils", "name-"]);
            r.apply("aside-namespace-selector-metadata-name.yaml");
        },
        &both(true, false, "kubernetes.io/metadata.name=utils"),
    );

    // The browser's "503 Service Unavailable": the Ingress controller cannot
    // connect to the app.
    let mut f = both(false, false, "blocked");
    f.push(blocked(
        CONTROLLER,
        WEB,
        "80",
        "the Ingress controller: 503",
    ));
    r.step("edit: block all ingress", edit("edit-5-deny-all.yaml"), &f);

    // "Ahora tendremos acceso al puerto 80 tanto desde otros namespaces" (and
    // through the Ingress). Not shown by the tutorial, but the API: once
    // ports are listed, only those.
    let mut f = both(true, true, "TCP 80 from anywhere");
    f.push(allowed(CONTROLLER, WEB, "80", "through the Ingress"));
    f.push(blocked(UTILS, WEB, "443", "another port"));
    f.push(blocked(TROUBLE, WEB, "443", "another port"));
    r.step("edit: allow TCP 80", edit("edit-6-tcp-80.yaml"), &f);
    r.done()
}
