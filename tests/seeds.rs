//! The five seed tutorials (see `docs/tutorials.md`), replayed step by step.
//!
//! Each test is one step of one tutorial, named `<seed>_<step>`:
//!
//! | seed | tutorial | cluster |
//! | --- | --- | --- |
//! | `calico_advanced` | Calico "Controlling Ingress and Egress Traffic with Network Policy" | `tests/golden/seed-calico-advanced` |
//! | `webapp_balanced` | "Network Policies" (Spanish, Calico) | `tests/golden/seed-webapp-balanced` |
//! | `cilium_backend` | Cilium lab "5. Network Policies" | `tests/golden/seed-cilium-backend` |
//! | `handbook` | kubernetes-handbook "Network Policy" | `tests/golden/seed-handbook` and small clusters built here |
//! | `db_policy` | KodeKloud lecture "Network Policy" (Flannel) | `tests/golden/seed-db-policy` |
//!
//! The cluster of a step is the tutorial's final state (the golden input,
//! loaded with `files::load`) with the policies of that step: the golden
//! policies kept by name, or policies built here when the tutorial edits
//! one in place. Every connection the tutorial tells of is checked twice,
//! and both must agree with the expectation:
//!
//! - `resolve::explain::explain` on the snapshot, and
//! - the packet tracer (`ruleset::trace::trace`, forward hook) through the
//!   rulesets built for the nodes involved: the source's node judges
//!   egress, the destination's node judges ingress.
//!
//! `ping` is checked with the tracer only (`explain` speaks of ports). A
//! Service name (`wget nginx`) is a DNS lookup (UDP 53 to the kube-dns pod)
//! and then a connection to a backend pod: kube-proxy DNATs before our
//! chains, so policy sees the pod's address. An external host is its
//! address (one that does not belong to any pod).
//!
//! Where a tutorial gets the Kubernetes API wrong, the API wins: the test
//! asserts the API behaviour, its name says so, and a comment quotes the
//! claim and says why it is wrong.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nftpolicy_core::model::{Direction, NamespacedName, Policy, Protocol, Selector, Snapshot};
use nftpolicy_core::resolve::explain::{explain, Endpoint, Flow};
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::trace::{CtState, Packet, L4};
use nftpolicy_core::ruleset::Hook;
use nftpolicy_source::files::{self, Format, Loader};
use nftpolicy_testkit::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const ALLOWED: bool = true;
const BLOCKED: bool = false;

fn tcp(port: u16) -> L4 {
    L4::Port {
        protocol: Protocol::Tcp,
        port,
    }
}

fn udp(port: u16) -> L4 {
    L4::Port {
        protocol: Protocol::Udp,
        port,
    }
}

/// ICMP echo request (`ping`).
const PING: L4 = L4::Icmp { icmp_type: 8 };

/// The golden input of a case, loaded as the CLI loads it.
fn golden(case: &str) -> Snapshot {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
        .join("input.yaml");
    let loaded = files::load(std::slice::from_ref(&path))
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    assert!(
        loaded.problems.is_empty(),
        "golden input {case} has problems: {:?}",
        loaded.problems
    );
    loaded.snapshot
}

/// The snapshot with only the policies named in `keep` (all namespaces).
fn keep_policies(mut s: Snapshot, keep: &[&str]) -> Snapshot {
    s.policies.retain(|k, _| keep.contains(&&*k.name));
    assert_eq!(
        s.policies.len(),
        keep.len(),
        "a policy of {keep:?} is missing from the golden input"
    );
    s
}

/// The snapshot with exactly these policies.
fn with_policies<P: Into<Arc<Policy>>>(
    mut s: Snapshot,
    policies: impl IntoIterator<Item = P>,
) -> Snapshot {
    s.policies.clear();
    for p in policies {
        s.add_policy(p);
    }
    s
}

/// `ns/name` → pod endpoint; an IP literal → address endpoint.
fn endpoint(s: &str) -> Endpoint {
    match s.parse::<IpAddr>() {
        Ok(ip) => Endpoint::Addr(ip),
        Err(_) => {
            let (ns, name) = s.split_once('/').expect("endpoint is ns/pod or an IP");
            Endpoint::Pod(NamespacedName::new(ns, name))
        }
    }
}

/// The addresses a pod endpoint can use, or the address itself.
fn addresses(s: &Snapshot, e: &Endpoint) -> Vec<IpAddr> {
    match e {
        Endpoint::Addr(ip) => vec![*ip],
        Endpoint::Pod(key) => s
            .pods
            .get(key)
            .unwrap_or_else(|| panic!("no pod {key} in the snapshot"))
            .ips
            .clone(),
    }
}

/// The node of a pod endpoint (none for an address).
fn node_of(s: &Snapshot, e: &Endpoint) -> Option<String> {
    match e {
        Endpoint::Addr(_) => None,
        Endpoint::Pod(key) => s
            .pods
            .get(key)
            .and_then(|p| p.node.as_deref().map(str::to_owned)),
    }
}

/// Picks the source and destination addresses: IPv4 if both ends have one.
fn pick(s: &Snapshot, from: &Endpoint, to: &Endpoint) -> (IpAddr, IpAddr) {
    let (fs, ts) = (addresses(s, from), addresses(s, to));
    for v6 in [false, true] {
        let f = fs.iter().find(|a| a.is_ipv6() == v6);
        let t = ts.iter().find(|a| a.is_ipv6() == v6);
        if let (Some(f), Some(t)) = (f, t) {
            return (*f, *t);
        }
    }
    panic!("{from:?} and {to:?} share no address family")
}

/// Asserts that a new connection `from` → `to` is `want` (allowed or
/// blocked), by `explain` (ports only) and by tracing its first packet.
fn check(s: &Snapshot, from: &str, to: &str, l4: L4, want: bool, what: &str) {
    let (fe, te) = (endpoint(from), endpoint(to));
    let (src, dst) = pick(s, &fe, &te);
    let word = |b: bool| if b { "allowed" } else { "blocked" };
    if let L4::Port { protocol, port } = l4 {
        let flow = Flow {
            from: fe.clone(),
            to: te.clone(),
            protocol,
            port,
        };
        let ex = explain(s, &flow).unwrap_or_else(|e| panic!("{what}: explain failed: {e}"));
        assert_eq!(
            ex.allowed,
            want,
            "{what}: {from} -> {to} {protocol}/{port}: expected {}, explain says {} \
             (egress: {:?} {:?}, ingress: {:?} {:?})",
            word(want),
            word(ex.allowed),
            ex.egress.result,
            ex.egress.allowed_by,
            ex.ingress.result,
            ex.ingress.allowed_by,
        );
    }
    let packet = Packet {
        src,
        dst,
        l4,
        ct: CtState::New,
        hook: Hook::Forward,
        mark: 0,
    };
    let traced = NodeRulesets::new(s).passes(&packet);
    assert_eq!(
        traced,
        want,
        "{what}: {from} -> {to} {l4:?}: expected {}, the traced ruleset says {}",
        word(want),
        word(traced)
    );
}

/// Asserts that replies of a connection `from` → `to` pass (conntrack
/// `established`), whatever the policies say about new connections back.
fn check_reply_passes(s: &Snapshot, from: &str, to: &str, l4: L4, what: &str) {
    let (fe, te) = (endpoint(from), endpoint(to));
    let (src, dst) = pick(s, &fe, &te);
    let reply = Packet {
        src: dst,
        dst: src,
        l4,
        ct: CtState::Established,
        hook: Hook::Forward,
        mark: 0,
    };
    assert!(
        NodeRulesets::new(s).passes(&reply),
        "{what}: the reply {to} -> {from} of an allowed connection must pass"
    );
}

/// The policies isolating pod `key` in `dir`, as resolved on its node.
fn isolated_by(s: &Snapshot, key: &str, dir: Direction) -> Vec<String> {
    let e = endpoint(key);
    let node = node_of(s, &e).expect("pod has a node");
    let Endpoint::Pod(key) = e else {
        unreachable!()
    };
    resolve(s, &node)
        .pods
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.policies(dir).iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// Loads one YAML text as a file would be loaded.
fn load_text(text: &str) -> files::Loaded {
    let mut loader = Loader::new();
    loader.add_text(Path::new("tutorial.yaml"), text, Format::Yaml);
    loader.finish()
}

fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Selector {
    Selector::labels(pairs)
}

/// The helpers fail on a wrong expectation: through `explain` first...
#[test]
#[should_panic(expected = "explain says allowed")]
fn helpers_fail_when_explain_disagrees() {
    let s = golden("seed-cilium-backend");
    check(
        &s,
        cilium::FRONTEND,
        cilium::BACKEND,
        tcp(8080),
        BLOCKED,
        "wrong on purpose",
    );
}

/// ...and through the tracer where `explain` has no say (ICMP).
#[test]
#[should_panic(expected = "the traced ruleset says blocked")]
fn helpers_fail_when_the_trace_disagrees() {
    let s = golden("seed-cilium-backend");
    check(
        &s,
        cilium::NOT_FRONTEND,
        cilium::BACKEND,
        PING,
        ALLOWED,
        "wrong on purpose",
    );
}

// ---------------------------------------------------------------------------
// Seed 000: Calico, "Controlling Ingress and Egress Traffic with Network Policy"
// ---------------------------------------------------------------------------

mod calico {
    pub const ACCESS: &str = "advanced-policy-demo/access-472357175-y0m47";
    /// The nginx replica on the access pod's node.
    pub const NGINX_LOCAL: &str = "advanced-policy-demo/nginx-8586cf59-4xk8z";
    /// The nginx replica on the other node.
    pub const NGINX_REMOTE: &str = "advanced-policy-demo/nginx-8586cf59-mq5wd";
    pub const KUBE_DNS: &str = "kube-system/coredns-7d8f9c6b5-j2xkq";
    /// google.com.
    pub const GOOGLE: &str = "142.250.201.68";

    pub const DENY_INGRESS: &str = "default-deny-ingress";
    pub const ACCESS_NGINX: &str = "access-nginx";
    pub const DENY_EGRESS: &str = "default-deny-egress";
    pub const ALLOW_DNS: &str = "allow-dns-access";
    pub const EGRESS_NGINX: &str = "allow-egress-to-advance-policy-ns";
}

/// The Calico cluster with the policies of a step; `labelled`: whether
/// `kubectl label namespace kube-system name=kube-system` has been run.
fn calico_step(policies: &[&str], labelled: bool) -> Snapshot {
    let mut s = keep_policies(golden("seed-calico-advanced"), policies);
    if !labelled {
        let ns = Arc::make_mut(s.namespaces.get_mut("kube-system").expect("kube-system"));
        assert!(
            ns.labels.remove("name").is_some(),
            "golden kube-system is labelled"
        );
    }
    s
}

/// `wget nginx` from the access pod: DNS, then HTTP to either replica.
fn calico_wget_nginx(s: &Snapshot, want: bool, what: &str) {
    use calico::*;
    check(
        s,
        ACCESS,
        KUBE_DNS,
        udp(53),
        ALLOWED,
        &format!("{what} (DNS of nginx)"),
    );
    check(s, ACCESS, NGINX_LOCAL, tcp(80), want, what);
    check(
        s,
        ACCESS,
        NGINX_REMOTE,
        tcp(80),
        want,
        &format!("{what} (other node)"),
    );
}

#[test]
fn calico_advanced_before_any_policy() {
    use calico::*;
    let s = calico_step(&[], false);
    calico_wget_nginx(&s, ALLOWED, "wget nginx returns the welcome page");
    check(
        &s,
        ACCESS,
        GOOGLE,
        tcp(80),
        ALLOWED,
        "wget google.com returns its page",
    );
}

#[test]
fn calico_advanced_deny_all_ingress() {
    use calico::*;
    let s = calico_step(&[DENY_INGRESS], false);
    calico_wget_nginx(&s, BLOCKED, "wget nginx: download timed out");
    check(
        &s,
        ACCESS,
        GOOGLE,
        tcp(80),
        ALLOWED,
        "egress to google.com still allowed",
    );
}

#[test]
fn calico_advanced_allow_ingress_to_nginx() {
    use calico::*;
    let mut s = calico_step(&[DENY_INGRESS, ACCESS_NGINX], false);
    calico_wget_nginx(&s, ALLOWED, "wget nginx works again");
    // "from any pods in the advanced-policy-demo namespace": only there.
    s.add_pod(
        pod("default", "busybox")
            .labels([("run", "busybox")])
            .ip("172.30.58.220")
            .node("10.177.182.212"),
    );
    check(
        &s,
        "default/busybox",
        NGINX_LOCAL,
        tcp(80),
        BLOCKED,
        "a pod of another namespace",
    );
    // The default deny still covers the access pod itself.
    check(
        &s,
        NGINX_LOCAL,
        ACCESS,
        tcp(8080),
        BLOCKED,
        "ingress to the access pod",
    );
}

#[test]
fn calico_advanced_deny_all_egress() {
    use calico::*;
    let s = calico_step(&[DENY_INGRESS, ACCESS_NGINX, DENY_EGRESS], false);
    // nslookup nginx: "connection timed out; no servers could be reached".
    check(
        &s,
        ACCESS,
        KUBE_DNS,
        udp(53),
        BLOCKED,
        "nslookup nginx times out",
    );
    // wget google.com: "bad address" (the lookup fails); the address itself is blocked too.
    check(&s, ACCESS, GOOGLE, tcp(80), BLOCKED, "wget google.com");
    check(&s, ACCESS, NGINX_LOCAL, tcp(80), BLOCKED, "wget nginx");
}

/// Not a step of the tutorial, but why it labels kube-system first: without
/// the `name=kube-system` label the namespaceSelector matches nothing.
#[test]
fn calico_advanced_allow_dns_without_the_namespace_label_allows_nothing() {
    use calico::*;
    let s = calico_step(&[DENY_INGRESS, ACCESS_NGINX, DENY_EGRESS, ALLOW_DNS], false);
    check(
        &s,
        ACCESS,
        KUBE_DNS,
        udp(53),
        BLOCKED,
        "DNS before the label",
    );
}

#[test]
fn calico_advanced_allow_dns() {
    use calico::*;
    let s = calico_step(&[DENY_INGRESS, ACCESS_NGINX, DENY_EGRESS, ALLOW_DNS], true);
    check(
        &s,
        ACCESS,
        KUBE_DNS,
        udp(53),
        ALLOWED,
        "nslookup nginx / google.com answer",
    );
    check(
        &s,
        ACCESS,
        KUBE_DNS,
        tcp(53),
        BLOCKED,
        "only UDP 53 is allowed",
    );
    check(
        &s,
        ACCESS,
        NGINX_LOCAL,
        tcp(80),
        BLOCKED,
        "HTTP to nginx still fails",
    );
    check(
        &s,
        ACCESS,
        GOOGLE,
        tcp(80),
        BLOCKED,
        "HTTP to google.com still fails",
    );
}

/// Tutorial: "kubectl NetworkPolicy requires a selector running against a
/// label you create for the namespace". Wrong since Kubernetes 1.21: the API
/// server sets `kubernetes.io/metadata.name` on every namespace, so kube-system
/// can be selected by name without labelling it.
#[test]
fn calico_advanced_namespace_label_is_not_needed_with_metadata_name() {
    use calico::*;
    let by_name = policy("advanced-policy-demo", "allow-dns-access")
        .types(false, true)
        .egress(
            rule()
                .namespaces(labels([("kubernetes.io/metadata.name", "kube-system")]))
                .port(Protocol::Udp, 53),
        );
    let mut s = calico_step(&[DENY_INGRESS, ACCESS_NGINX, DENY_EGRESS], false);
    s.add_policy(by_name);
    check(
        &s,
        ACCESS,
        KUBE_DNS,
        udp(53),
        ALLOWED,
        "DNS by kubernetes.io/metadata.name",
    );
}

#[test]
fn calico_advanced_allow_egress_to_nginx() {
    use calico::*;
    let all = [
        DENY_INGRESS,
        ACCESS_NGINX,
        DENY_EGRESS,
        ALLOW_DNS,
        EGRESS_NGINX,
    ];
    let s = calico_step(&all, true);
    assert_eq!(
        s,
        golden("seed-calico-advanced"),
        "the last step is the golden final state"
    );
    calico_wget_nginx(&s, ALLOWED, "wget nginx returns the welcome page");
    check(
        &s,
        ACCESS,
        GOOGLE,
        tcp(80),
        BLOCKED,
        "wget google.com: download timed out",
    );
    check(
        &s,
        ACCESS,
        KUBE_DNS,
        udp(53),
        ALLOWED,
        "google.com still resolves",
    );
    check_reply_passes(&s, ACCESS, NGINX_REMOTE, tcp(80), "the page comes back");
}

// ---------------------------------------------------------------------------
// Seed 001: "Network Policies" (Spanish), webapp-balanced
// ---------------------------------------------------------------------------

mod webapp {
    pub const NS: &str = "webapp-balanced";
    pub const WEB: &str = "webapp-balanced/webapp-balanced-6f4f8dcd99-szwdr";
    pub const UTILS: &str = "utils/utils-646c66795d-qdtg9";
    pub const TROUBLESHOOT: &str = "troubleshoot/troubleshoot-7bf854b879-v6ggl";
    pub const INGRESS_CONTROLLER: &str = "ingress-nginx/ingress-nginx-controller-5c8d66c76d-8mzvq";
    pub const KUBE_DNS: &str = "kube-system/coredns-558bd4d5db-7l2xh";
    /// www.google.com as the tutorial resolved it.
    pub const GOOGLE: &str = "142.250.201.68";
    /// A browser outside the cluster.
    pub const BROWSER: &str = "203.0.113.50";
}

/// `default-deny-ingress` as first applied (and as restored twice later).
fn webapp_deny_all() -> Policy {
    policy(webapp::NS, "default-deny-ingress").types(true, false)
}

fn webapp_step(policy: Option<Policy>) -> Snapshot {
    with_policies(golden("seed-webapp-balanced"), policy)
}

/// ping and `nc -zv <ip> 80` from a client to the web pod.
fn webapp_ping_and_nc(s: &Snapshot, from: &str, want: bool, what: &str) {
    check(s, from, webapp::WEB, PING, want, &format!("{what}: ping"));
    check(
        s,
        from,
        webapp::WEB,
        tcp(80),
        want,
        &format!("{what}: nc 80"),
    );
}

#[test]
fn webapp_balanced_before_any_policy() {
    use webapp::*;
    let s = webapp_step(None);
    check(
        &s,
        UTILS,
        KUBE_DNS,
        udp(53),
        ALLOWED,
        "nslookup www.google.com",
    );
    check(&s, UTILS, GOOGLE, PING, ALLOWED, "ping www.google.com");
    webapp_ping_and_nc(&s, UTILS, ALLOWED, "from utils");
    webapp_ping_and_nc(&s, TROUBLESHOOT, ALLOWED, "from troubleshoot");
}

#[test]
fn webapp_balanced_deny_all_ingress() {
    use webapp::*;
    let s = webapp_step(Some(webapp_deny_all()));
    webapp_ping_and_nc(&s, UTILS, BLOCKED, "from utils");
    webapp_ping_and_nc(&s, TROUBLESHOOT, BLOCKED, "from troubleshoot");
    check(&s, UTILS, GOOGLE, PING, ALLOWED, "egress is not isolated");
}

#[test]
fn webapp_balanced_allow_all_ingress() {
    use webapp::*;
    let s = webapp_step(Some(webapp_deny_all().ingress(rule())));
    webapp_ping_and_nc(&s, UTILS, ALLOWED, "from utils");
    webapp_ping_and_nc(&s, TROUBLESHOOT, ALLOWED, "from troubleshoot");
}

/// Tutorial: allows "the traffic of a specific namespace using the labels of
/// its pods, app: utils", and shows ping and nc from utils succeeding while
/// troubleshoot fails. Wrong: a `podSelector` without `namespaceSelector`
/// selects pods in the policy's own namespace (webapp-balanced). The utils
/// pod lives in namespace utils, so it is blocked like troubleshoot.
#[test]
fn webapp_balanced_pod_selector_app_utils_selects_only_its_own_namespace() {
    use webapp::*;
    let from_utils = policy(NS, "default-deny-ingress")
        .select(labels([("app", "webapp-balanced")]))
        .types(true, false)
        .ingress(rule().pods(labels([("app", "utils")])));
    let mut s = webapp_step(Some(from_utils));
    webapp_ping_and_nc(&s, UTILS, BLOCKED, "utils pod in namespace utils");
    webapp_ping_and_nc(&s, TROUBLESHOOT, BLOCKED, "from troubleshoot");
    // What the selector does match: an app=utils pod of webapp-balanced.
    s.add_pod(
        pod(NS, "utils-in-webapp")
            .labels([("app", "utils")])
            .ip("192.169.62.40")
            .node("kubenode1.acme.es"),
    );
    webapp_ping_and_nc(
        &s,
        "webapp-balanced/utils-in-webapp",
        ALLOWED,
        "app=utils in webapp-balanced",
    );
}

/// Tutorial: the same result "using the name of the namespace as selector"
/// with `namespaceSelector: {matchLabels: {name: utils}}`. A selector reads
/// labels, not names: namespace utils has no `name` label, so this allows
/// nothing until `kubectl label namespace utils name=utils`; the label the
/// API server sets is `kubernetes.io/metadata.name`.
#[test]
fn webapp_balanced_namespace_selector_matches_labels_not_names() {
    use webapp::*;
    let by = |key: &str| {
        policy(NS, "default-deny-ingress")
            .select(labels([("app", "webapp-balanced")]))
            .types(true, false)
            .ingress(rule().namespaces(labels([(key, "utils")])))
    };
    let mut s = webapp_step(Some(by("name")));
    webapp_ping_and_nc(&s, UTILS, BLOCKED, "name=utils, namespace unlabelled");
    Arc::make_mut(s.namespaces.get_mut("utils").expect("namespace utils"))
        .labels
        .insert("name".into(), "utils".into());
    webapp_ping_and_nc(&s, UTILS, ALLOWED, "after labelling utils name=utils");
    webapp_ping_and_nc(&s, TROUBLESHOOT, BLOCKED, "troubleshoot, labelled or not");
    let s = webapp_step(Some(by("kubernetes.io/metadata.name")));
    webapp_ping_and_nc(&s, UTILS, ALLOWED, "kubernetes.io/metadata.name=utils");
    webapp_ping_and_nc(&s, TROUBLESHOOT, BLOCKED, "troubleshoot by metadata.name");
}

#[test]
fn webapp_balanced_deny_all_blocks_the_ingress_controller() {
    use webapp::*;
    let s = webapp_step(Some(webapp_deny_all()));
    // The browser gets "503 Service Unavailable": the controller cannot connect.
    check(
        &s,
        INGRESS_CONTROLLER,
        WEB,
        tcp(80),
        BLOCKED,
        "Ingress controller to the app",
    );
    check(
        &s,
        BROWSER,
        WEB,
        tcp(80),
        BLOCKED,
        "NodePort / LoadBalancer from outside",
    );
}

#[test]
fn webapp_balanced_allow_tcp_80_from_anywhere() {
    use webapp::*;
    let s = golden("seed-webapp-balanced");
    let final_policy = policy(NS, "default-deny-ingress")
        .select(labels([("app", "webapp-balanced")]))
        .types(true, false)
        .ingress(rule().port(Protocol::Tcp, 80));
    assert_eq!(
        s.policies.values().map(|p| &**p).collect::<Vec<_>>(),
        vec![&final_policy],
        "the golden input holds the last edit of the tutorial"
    );
    check(&s, UTILS, WEB, tcp(80), ALLOWED, "nc 80 from utils");
    check(
        &s,
        TROUBLESHOOT,
        WEB,
        tcp(80),
        ALLOWED,
        "nc 80 from troubleshoot",
    );
    check(
        &s,
        INGRESS_CONTROLLER,
        WEB,
        tcp(80),
        ALLOWED,
        "through the Ingress",
    );
    check(
        &s,
        BROWSER,
        WEB,
        tcp(80),
        ALLOWED,
        "a browser outside the cluster",
    );
    // Not shown by the tutorial, but the API: once ports are listed, only those.
    check(&s, UTILS, WEB, PING, BLOCKED, "ping: ICMP is not TCP 80");
    check(&s, UTILS, WEB, tcp(443), BLOCKED, "another port");
}

// ---------------------------------------------------------------------------
// Seed 002: Cilium lab, "5. Network Policies"
// ---------------------------------------------------------------------------

mod cilium {
    pub const FRONTEND: &str = "default/frontend-588b766fc9-2d5hn";
    pub const NOT_FRONTEND: &str = "default/not-frontend-8f467ccbd-lh4w4";
    pub const BACKEND: &str = "default/backend-65f7c794cc-pj2tc";
    pub const KUBE_DNS: &str = "kube-system/coredns-64897985d-7rjfv";
    pub const DENY: &str = "backend-ingress-deny";
    pub const ALLOW_FRONTEND: &str = "backend-allow-ingress-frontend";
}

fn cilium_curl(s: &Snapshot, frontend: bool, not_frontend: bool, what: &str) {
    use cilium::*;
    check(
        s,
        FRONTEND,
        BACKEND,
        tcp(8080),
        frontend,
        &format!("{what}: frontend"),
    );
    check(
        s,
        NOT_FRONTEND,
        BACKEND,
        tcp(8080),
        not_frontend,
        &format!("{what}: not-frontend"),
    );
}

#[test]
fn cilium_backend_verify_connectivity() {
    let s = keep_policies(golden("seed-cilium-backend"), &[]);
    cilium_curl(&s, ALLOWED, ALLOWED, "curl backend:8080 before any policy");
}

#[test]
fn cilium_backend_ingress_deny() {
    use cilium::*;
    let s = keep_policies(golden("seed-cilium-backend"), &[DENY]);
    cilium_curl(&s, BLOCKED, BLOCKED, "curl: (28) Connection timed out");
    assert_eq!(
        isolated_by(&s, BACKEND, Direction::Ingress),
        ["default/backend-ingress-deny"],
        "the backend is isolated for ingress by backend-ingress-deny"
    );
}

#[test]
fn cilium_backend_allow_frontend() {
    use cilium::*;
    let s = golden("seed-cilium-backend");
    cilium_curl(&s, ALLOWED, BLOCKED, "with backend-allow-ingress-frontend");
    // hubble observe: not-frontend's DNS to coredns is FORWARDED.
    check(
        &s,
        NOT_FRONTEND,
        KUBE_DNS,
        udp(53),
        ALLOWED,
        "not-frontend DNS",
    );
    check_reply_passes(
        &s,
        FRONTEND,
        BACKEND,
        tcp(8080),
        "HTTP/1.1 200 OK comes back",
    );
}

/// "Note that this is working despite the fact we did not delete the previous
/// backend-ingress-deny policy": policies are additive, the deny adds nothing
/// once another policy isolates the pod.
#[test]
fn cilium_backend_policies_are_additive() {
    use cilium::*;
    let both = golden("seed-cilium-backend");
    let allow_only = keep_policies(golden("seed-cilium-backend"), &[ALLOW_FRONTEND]);
    for (s, what) in [(&both, "deny + allow"), (&allow_only, "allow alone")] {
        cilium_curl(s, ALLOWED, BLOCKED, what);
    }
}

/// Task 5.6: "pods with the label app=backend now have ingress policy
/// enforcement enabled", and only they, and only for ingress.
#[test]
fn cilium_backend_endpoint_enforcement() {
    use cilium::*;
    let s = golden("seed-cilium-backend");
    assert_eq!(
        isolated_by(&s, BACKEND, Direction::Ingress).len(),
        2,
        "backend ingress"
    );
    for (pod, dir) in [
        (BACKEND, Direction::Egress),
        (FRONTEND, Direction::Ingress),
        (FRONTEND, Direction::Egress),
        (NOT_FRONTEND, Direction::Ingress),
    ] {
        assert!(
            isolated_by(&s, pod, dir).is_empty(),
            "{pod} must not be isolated for {dir}"
        );
    }
}

// ---------------------------------------------------------------------------
// Seed 003: kubernetes-handbook, "Network Policy"
// ---------------------------------------------------------------------------

mod handbook {
    pub const NGINX_LOCAL: &str = "default/nginx-701339712-e0qfq";
    pub const NGINX_REMOTE: &str = "default/nginx-701339712-o00ef";
    /// The busybox started with `--labels="access=true"`.
    pub const BUSYBOX_ACCESS: &str = "default/busybox-472357175-y0m47";
    /// The busybox started without labels (added by the tests).
    pub const BUSYBOX: &str = "default/busybox-472357175-k8w2c";
    pub const FRONT_END: &str = "sock-shop/front-end-6f47b6d8c7-rbmxg";
    pub const KUBE_DNS: &str = "kube-system/coredns-5c98db65d4-8xk2p";
    pub const OUTSIDE: &str = "93.184.216.34";
}

/// The handbook cluster with a plain busybox (no `access` label) added.
fn handbook_cluster<P: Into<Arc<Policy>>>(policies: impl IntoIterator<Item = P>) -> Snapshot {
    let mut s = with_policies(golden("seed-handbook"), policies);
    s.add_pod(
        pod("default", "busybox-472357175-k8w2c")
            .labels([("run", "busybox")])
            .ip("192.168.166.132")
            .node("node1"),
    );
    s
}

/// `wget nginx` from a pod: both replicas (the Service picks either).
fn handbook_wget_nginx(s: &Snapshot, from: &str, want: bool, what: &str) {
    use handbook::*;
    check(s, from, NGINX_LOCAL, tcp(80), want, what);
    check(
        s,
        from,
        NGINX_REMOTE,
        tcp(80),
        want,
        &format!("{what} (other node)"),
    );
}

fn handbook_default_deny(ingress: bool, egress: bool) -> Policy {
    policy("default", "default-deny").types(ingress, egress)
}

#[test]
fn handbook_default_deny_ingress() {
    use handbook::*;
    let s = handbook_cluster([handbook_default_deny(true, false)]);
    handbook_wget_nginx(&s, BUSYBOX, BLOCKED, "pod to pod in default");
    check(
        &s,
        FRONT_END,
        NGINX_LOCAL,
        tcp(80),
        BLOCKED,
        "from another namespace",
    );
    check(
        &s,
        BUSYBOX,
        OUTSIDE,
        tcp(443),
        ALLOWED,
        "egress is untouched",
    );
}

#[test]
fn handbook_default_deny_egress() {
    use handbook::*;
    let s = handbook_cluster([handbook_default_deny(false, true)]);
    handbook_wget_nginx(&s, BUSYBOX, BLOCKED, "pod to pod in default");
    check(&s, BUSYBOX, KUBE_DNS, udp(53), BLOCKED, "DNS is egress too");
    check(&s, BUSYBOX, OUTSIDE, tcp(443), BLOCKED, "the outside world");
    check(
        &s,
        FRONT_END,
        NGINX_LOCAL,
        tcp(80),
        ALLOWED,
        "ingress is untouched",
    );
}

#[test]
fn handbook_default_deny_ingress_and_egress() {
    use handbook::*;
    let s = handbook_cluster([handbook_default_deny(true, true)]);
    handbook_wget_nginx(&s, BUSYBOX, BLOCKED, "pod to pod in default");
    check(&s, FRONT_END, NGINX_LOCAL, tcp(80), BLOCKED, "into default");
    check(&s, BUSYBOX, OUTSIDE, tcp(443), BLOCKED, "out of default");
}

#[test]
fn handbook_allow_all_ingress() {
    use handbook::*;
    let allow_all = policy("default", "allow-all").ingress(rule());
    let s = handbook_cluster([handbook_default_deny(true, false), allow_all]);
    handbook_wget_nginx(&s, BUSYBOX, ALLOWED, "allow-all beside default-deny");
    check(&s, OUTSIDE, NGINX_LOCAL, tcp(80), ALLOWED, "from outside");
}

/// Tutorial: "the policy for allowing Egress communication between all Pods"
/// is `podSelector: {}` with `egress: [{}]` and no `policyTypes`. The API
/// server defaults `policyTypes` to `[Ingress, Egress]` (Ingress always,
/// Egress because there is an egress section), so this policy also isolates
/// every pod of the namespace for ingress with no ingress rule: it denies all
/// ingress. `policyTypes: [Egress]` is needed for what the tutorial means.
#[test]
fn handbook_allow_all_egress_without_policy_types_also_denies_all_ingress() {
    use handbook::*;
    let as_written = policy("default", "allow-all").egress(rule());
    let s = handbook_cluster([as_written.clone()]);
    check(&s, BUSYBOX, OUTSIDE, tcp(443), ALLOWED, "egress allowed");
    handbook_wget_nginx(&s, BUSYBOX, BLOCKED, "but ingress to nginx is now denied");
    check(
        &s,
        FRONT_END,
        NGINX_LOCAL,
        tcp(80),
        BLOCKED,
        "from sock-shop too",
    );
    assert_eq!(
        isolated_by(&s, NGINX_LOCAL, Direction::Ingress),
        ["default/allow-all"],
        "allow-all isolates nginx for ingress"
    );
    let meant = as_written.types(false, true);
    let s = handbook_cluster([meant]);
    handbook_wget_nginx(&s, BUSYBOX, ALLOWED, "with policyTypes: [Egress]");
}

/// Tutorial: v1.6 isolated a namespace with the annotation
/// `net.beta.kubernetes.io/network-policy: {"ingress": {"isolation": "DefaultDeny"}}`.
/// That annotation is not part of `networking.k8s.io/v1` (gone since 1.7):
/// it isolates nothing; only a policy selecting a pod does.
#[test]
fn handbook_v1_6_annotation_isolates_nothing() {
    let loaded = load_text(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: legacy
  annotations:
    net.beta.kubernetes.io/network-policy: '{"ingress": {"isolation": "DefaultDeny"}}'
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: legacy, labels: {app: web}}
spec: {nodeName: node1, containers: [{name: web, image: nginx}]}
status: {phase: Running, podIP: 192.168.166.140}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: legacy}
spec: {nodeName: node1, containers: [{name: c, image: busybox}]}
status: {phase: Running, podIP: 192.168.166.141}
"#,
    );
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let s = loaded.snapshot;
    check(
        &s,
        "legacy/client",
        "legacy/web",
        tcp(80),
        ALLOWED,
        "annotated namespace",
    );
    assert!(
        isolated_by(&s, "legacy/web", Direction::Ingress).is_empty(),
        "no policy, no isolation"
    );
}

/// The first `test-network-policy` writes `protocol: tcp`. The API server
/// rejects it (`Unsupported value: "tcp"`: TCP, UDP or SCTP, upper case);
/// so does the loader, naming the field, and the policy is not applied.
#[test]
fn handbook_lowercase_protocol_is_rejected() {
    let loaded = load_text(include_str!("data/seeds/handbook-lowercase-protocol.yaml"));
    assert!(
        loaded.snapshot.policies.is_empty(),
        "the policy must not load"
    );
    let fields: Vec<Option<&str>> = loaded.problems.iter().map(|p| p.field.as_deref()).collect();
    assert_eq!(
        fields,
        [Some("spec.ingress[0].ports[0].protocol")],
        "one problem, at the protocol: {:?}",
        loaded.problems
    );
}

/// The cluster of `test-network-policy` (second version): db and frontend in
/// default, a namespace labelled `project=myproject` and one labelled
/// `project=myprojects` (the spelling of the tutorial's prose).
fn handbook_test_network_policy() -> Snapshot {
    let p = policy("default", "test-network-policy")
        .select(labels([("role", "db")]))
        .types(true, true)
        .ingress(
            rule()
                .ip_block("172.17.0.0/16", &["172.17.1.0/24"])
                .namespaces(labels([("project", "myproject")]))
                .pods(labels([("role", "frontend")]))
                .port(Protocol::Tcp, 6379),
        )
        .egress(
            rule()
                .ip_block("10.0.0.0/24", &[])
                .port(Protocol::Tcp, 5978),
        );
    snapshot(
        [
            namespace("default", []),
            namespace("myproject", [("project", "myproject")]),
            namespace("myprojects", [("project", "myprojects")]),
        ],
        [
            pod("default", "redis")
                .labels([("role", "db")])
                .ip("192.168.166.150")
                .node("node1"),
            pod("default", "web")
                .labels([("role", "frontend")])
                .ip("192.168.104.151")
                .node("node2"),
            pod("default", "other").ip("192.168.104.152").node("node2"),
            pod("myproject", "app").ip("192.168.104.153").node("node2"),
            pod("myprojects", "app").ip("192.168.166.154").node("node1"),
        ],
        [p],
    )
}

#[test]
fn handbook_test_network_policy_ingress() {
    let s = handbook_test_network_policy();
    let db = "default/redis";
    check(
        &s,
        "default/web",
        db,
        tcp(6379),
        ALLOWED,
        "role=frontend in default",
    );
    check(
        &s,
        "myproject/app",
        db,
        tcp(6379),
        ALLOWED,
        "namespace project=myproject",
    );
    check(
        &s,
        "172.17.0.9",
        db,
        tcp(6379),
        ALLOWED,
        "ipBlock 172.17.0.0/16",
    );
    check(
        &s,
        "172.17.1.9",
        db,
        tcp(6379),
        BLOCKED,
        "except 172.17.1.0/24",
    );
    check(
        &s,
        "default/other",
        db,
        tcp(6379),
        BLOCKED,
        "other pods of default",
    );
    check(&s, "default/web", db, tcp(6380), BLOCKED, "another port");
}

/// The prose says "namespace with the project=myprojects tag"; the manifest
/// selects `project: myproject`. The manifest is what the API applies.
#[test]
fn handbook_test_network_policy_selects_myproject_not_myprojects() {
    let s = handbook_test_network_policy();
    check(
        &s,
        "myprojects/app",
        "default/redis",
        tcp(6379),
        BLOCKED,
        "project=myprojects",
    );
}

/// The prose says db pods may reach "the TCP 5987 port on 10.0.0.0/24"; the
/// manifest says `port: 5978`. The manifest wins: 5978 is open, 5987 is not.
#[test]
fn handbook_test_network_policy_egress_port_is_5978_not_5987() {
    let s = handbook_test_network_policy();
    let db = "default/redis";
    check(
        &s,
        db,
        "10.0.0.7",
        tcp(5978),
        ALLOWED,
        "port 5978 of the manifest",
    );
    check(
        &s,
        db,
        "10.0.0.7",
        tcp(5987),
        BLOCKED,
        "port 5987 of the prose",
    );
    check(
        &s,
        db,
        "10.0.1.7",
        tcp(5978),
        BLOCKED,
        "outside 10.0.0.0/24",
    );
}

#[test]
fn handbook_nginx_before_any_policy() {
    use handbook::*;
    let s = handbook_cluster(Vec::<Policy>::new());
    handbook_wget_nginx(&s, BUSYBOX, ALLOWED, "wget --spider nginx");
}

#[test]
fn handbook_nginx_default_deny() {
    use handbook::*;
    let s = handbook_cluster(
        golden("seed-handbook")
            .policies
            .into_values()
            .filter(|p| p.name == "default-deny"),
    );
    handbook_wget_nginx(&s, BUSYBOX, BLOCKED, "wget: download timed out");
    check(
        &s,
        FRONT_END,
        NGINX_LOCAL,
        tcp(80),
        BLOCKED,
        "including outside the namespace",
    );
}

#[test]
fn handbook_nginx_access_true() {
    use handbook::*;
    let s = handbook_cluster(
        golden("seed-handbook")
            .policies
            .into_values()
            .filter(|p| p.namespace == "default"),
    );
    handbook_wget_nginx(&s, BUSYBOX, BLOCKED, "without access=true: still timed out");
    handbook_wget_nginx(&s, BUSYBOX_ACCESS, ALLOWED, "with access=true");
    check(
        &s,
        BUSYBOX_ACCESS,
        KUBE_DNS,
        udp(53),
        ALLOWED,
        "the lookup of nginx",
    );
}

/// Tutorial: "Finally open the external access to the nginx service" with
/// `front-end-access`, created in namespace `sock-shop`. A policy selects
/// pods of its own namespace only: nginx runs in `default`, so this policy
/// selects nothing there and opens nothing. The same spec in `default` does.
#[test]
fn handbook_nginx_front_end_access_in_sock_shop_opens_nothing() {
    use handbook::*;
    let s = golden("seed-handbook");
    assert_eq!(
        s.policies.len(),
        3,
        "final state: default-deny, access-nginx, front-end-access"
    );
    check(
        &s,
        OUTSIDE,
        NGINX_LOCAL,
        tcp(80),
        BLOCKED,
        "external access to nginx",
    );
    check(
        &s,
        FRONT_END,
        NGINX_LOCAL,
        tcp(80),
        BLOCKED,
        "from sock-shop",
    );
    handbook_wget_nginx(&s, BUSYBOX_ACCESS, ALLOWED, "access=true still works");
    let mut fixed = s.clone();
    let moved = fixed
        .policies
        .values()
        .find(|p| p.name == "front-end-access")
        .map(|p| {
            let mut p = Policy::clone(p);
            p.namespace = "default".into();
            p
        })
        .expect("front-end-access");
    fixed.add_policy(moved);
    check(
        &fixed,
        OUTSIDE,
        NGINX_LOCAL,
        tcp(80),
        ALLOWED,
        "the same policy in default",
    );
}

/// "Prohibit access to specified services": `web-deny-all`.
#[test]
fn handbook_web_deny_all() {
    let p = policy("default", "web-deny-all").select(labels([("app", "web"), ("env", "prod")]));
    let s = snapshot(
        [namespace("default", [])],
        [
            pod("default", "web")
                .labels([("app", "web"), ("env", "prod")])
                .ip("192.168.166.10")
                .node("node1"),
            pod("default", "client").ip("192.168.104.11").node("node2"),
        ],
        [p],
    );
    check(
        &s,
        "default/client",
        "default/web",
        tcp(80),
        BLOCKED,
        "any pod to web",
    );
    check(
        &s,
        "default/web",
        "default/client",
        tcp(80),
        ALLOWED,
        "web's egress is open",
    );
}

/// "Only allow Pod access service": `api-allow`.
#[test]
fn handbook_api_allow() {
    let p = policy("default", "api-allow")
        .select(labels([("app", "bookstore"), ("role", "api")]))
        .ingress(rule().pods(labels([("app", "bookstore")])));
    let s = snapshot(
        [namespace("default", [])],
        [
            pod("default", "apiserver")
                .labels([("app", "bookstore"), ("role", "api")])
                .ip("192.168.166.20")
                .node("node1"),
            pod("default", "bookstore-ui")
                .labels([("app", "bookstore")])
                .ip("192.168.104.21")
                .node("node2"),
            pod("default", "other")
                .labels([("app", "other")])
                .ip("192.168.104.22")
                .node("node2"),
        ],
        [p],
    );
    check(
        &s,
        "default/bookstore-ui",
        "default/apiserver",
        tcp(80),
        ALLOWED,
        "app=bookstore",
    );
    check(
        &s,
        "default/other",
        "default/apiserver",
        tcp(80),
        BLOCKED,
        "app=other",
    );
}

/// "Disable mutual access between all Pods in the namespace": `default-deny`
/// without policyTypes is an ingress deny for every pod of `default`.
#[test]
fn handbook_deny_mutual_access() {
    let s = snapshot(
        [namespace("default", []), namespace("other", [])],
        [
            pod("default", "a").ip("192.168.166.30").node("node1"),
            pod("default", "b").ip("192.168.104.31").node("node2"),
            pod("other", "c").ip("192.168.104.32").node("node2"),
        ],
        [policy("default", "default-deny")],
    );
    check(&s, "default/a", "default/b", tcp(80), BLOCKED, "a to b");
    check(&s, "default/b", "default/a", PING, BLOCKED, "b to a, ping");
    check(
        &s,
        "default/a",
        "other/c",
        tcp(80),
        ALLOWED,
        "out of the namespace",
    );
}

/// "Prohibit other namespace access services": `web-deny-other-namespaces`
/// (`podSelector: {matchLabels: }` is null: every pod of `secondary`).
#[test]
fn handbook_web_deny_other_namespaces() {
    let loaded = load_text(include_str!("data/seeds/web-deny-other-namespaces.yaml"));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let s = with_policies(
        snapshot(
            [namespace("default", []), namespace("secondary", [])],
            [
                pod("secondary", "web")
                    .labels([("app", "web")])
                    .ip("192.168.166.40")
                    .node("node1"),
                pod("secondary", "client")
                    .ip("192.168.104.41")
                    .node("node2"),
                pod("default", "client").ip("192.168.104.42").node("node2"),
            ],
            [],
        ),
        loaded.snapshot.policies.into_values(),
    );
    check(
        &s,
        "secondary/client",
        "secondary/web",
        tcp(80),
        ALLOWED,
        "same namespace",
    );
    check(
        &s,
        "default/client",
        "secondary/web",
        tcp(80),
        BLOCKED,
        "other namespace",
    );
}

/// "Only allow namespace access to the service": `web-allow-prod`.
#[test]
fn handbook_web_allow_prod() {
    let p = policy("default", "web-allow-prod")
        .select(labels([("app", "web")]))
        .ingress(rule().namespaces(labels([("purpose", "production")])));
    let s = snapshot(
        [
            namespace("default", []),
            namespace("prod", [("purpose", "production")]),
            namespace("dev", [("purpose", "testing")]),
        ],
        [
            pod("default", "web")
                .labels([("app", "web")])
                .ip("192.168.166.50")
                .node("node1"),
            pod("prod", "client").ip("192.168.104.51").node("node2"),
            pod("dev", "client").ip("192.168.104.52").node("node2"),
            pod("default", "client").ip("192.168.104.53").node("node2"),
        ],
        [p],
    );
    check(
        &s,
        "prod/client",
        "default/web",
        tcp(80),
        ALLOWED,
        "purpose=production",
    );
    check(
        &s,
        "dev/client",
        "default/web",
        tcp(80),
        BLOCKED,
        "purpose=testing",
    );
    check(
        &s,
        "default/client",
        "default/web",
        tcp(80),
        BLOCKED,
        "its own namespace too",
    );
}

/// "Allow external network access service": `web-allow-external`
/// (`from: []` is every source).
#[test]
fn handbook_web_allow_external() {
    let loaded = load_text(include_str!("data/seeds/web-allow-external.yaml"));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let s = with_policies(
        snapshot(
            [namespace("default", [])],
            [pod("default", "web")
                .labels([("app", "web")])
                .ip("192.168.166.60")
                .node("node1")],
            [],
        ),
        loaded.snapshot.policies.into_values(),
    );
    check(
        &s,
        "203.0.113.7",
        "default/web",
        tcp(80),
        ALLOWED,
        "the Internet, TCP 80",
    );
    check(
        &s,
        "203.0.113.7",
        "default/web",
        tcp(443),
        BLOCKED,
        "another port",
    );
    check(&s, "203.0.113.7", "default/web", PING, BLOCKED, "ping");
}

// ---------------------------------------------------------------------------
// Seed 004: KodeKloud lecture, "Network Policy" (on a Flannel cluster)
// ---------------------------------------------------------------------------

mod kodekloud {
    pub const DB: &str = "prod/db-pod";
    pub const API: &str = "prod/api-pod";
    pub const WEB: &str = "prod/web-pod";
    pub const STAGING_API: &str = "staging/api-pod";
    pub const STAGING_WEB: &str = "staging/web-pod";
    pub const DEV_API: &str = "dev/api-pod";
    pub const BACKUP: &str = "192.168.5.10";
}

fn db_policy() -> Policy {
    policy("prod", "db-policy").select(labels([("role", "db")]))
}

fn api_pod() -> Selector {
    labels([("name", "api-pod")])
}

fn db_step(p: Policy) -> Snapshot {
    with_policies(golden("seed-db-policy"), [p])
}

#[test]
fn db_policy_before_any_policy() {
    use kodekloud::*;
    let s = with_policies(golden("seed-db-policy"), Vec::<Policy>::new());
    check(&s, WEB, DB, tcp(3306), ALLOWED, "web to db");
    check(&s, API, DB, tcp(3306), ALLOWED, "api to db");
    check(&s, DB, API, tcp(5000), ALLOWED, "db to api");
}

/// Tutorial: "it still doesn't block out traffic because we haven't specified
/// policy types yet. So if there are no policy types specified in the network
/// policy definition, the protection is not enforced." Wrong: without
/// `policyTypes` the API server sets `[Ingress]` (plus Egress only if there
/// are egress rules). A policy that selects the db pod isolates it for
/// ingress; with no ingress rule, nothing may connect.
#[test]
fn db_policy_without_policy_types_still_isolates_ingress() {
    use kodekloud::*;
    let s = db_step(db_policy());
    check(&s, API, DB, tcp(3306), BLOCKED, "api to db");
    check(&s, WEB, DB, tcp(3306), BLOCKED, "web to db");
    check(&s, DB, BACKUP, tcp(80), ALLOWED, "egress is not isolated");
}

#[test]
fn db_policy_ingress_and_egress_types_block_everything() {
    use kodekloud::*;
    let s = db_step(db_policy().types(true, true));
    check(&s, API, DB, tcp(3306), BLOCKED, "into db");
    check(&s, DB, API, tcp(5000), BLOCKED, "out of db");
    check(&s, DB, BACKUP, tcp(80), BLOCKED, "to the backup server");
}

/// The policy of "Developing network policy": ingress from the API pod on 3306.
fn db_allow_api() -> Policy {
    db_policy()
        .types(true, false)
        .ingress(rule().pods(api_pod()).port(Protocol::Tcp, 3306))
}

#[test]
fn db_policy_allow_api_pod_on_3306() {
    use kodekloud::*;
    let s = db_step(db_allow_api());
    check(&s, API, DB, tcp(3306), ALLOWED, "api to db:3306");
    check(&s, API, DB, tcp(22), BLOCKED, "api to another port");
    check(&s, WEB, DB, tcp(3306), BLOCKED, "web to db");
    // "once you allow incoming traffic, the response ... is allowed back automatically"
    check_reply_passes(&s, API, DB, tcp(3306), "query results");
}

/// Tutorial: "the database pod tries to make an API call to the API pod,
/// then that would not be allowed because that is now an egress traffic
/// [...] and would require a specific egress rule", said of the policy with
/// `policyTypes: [Ingress]`. Wrong (and contrary to its own earlier "all
/// egress traffic is unaffected"): the db pod is not isolated for egress and
/// the API pod not for ingress, so the call is allowed.
#[test]
fn db_policy_db_to_api_is_allowed_with_an_ingress_only_policy() {
    use kodekloud::*;
    let s = db_step(db_allow_api());
    check(&s, DB, API, tcp(5000), ALLOWED, "db calls the API");
}

#[test]
fn db_policy_pod_selector_is_the_policy_namespace() {
    use kodekloud::*;
    let s = db_step(db_allow_api());
    check(&s, API, DB, tcp(3306), ALLOWED, "the API pod of prod");
    check(
        &s,
        STAGING_API,
        DB,
        tcp(3306),
        BLOCKED,
        "the API pod of staging",
    );
    check(&s, DEV_API, DB, tcp(3306), BLOCKED, "the API pod of dev");
}

#[test]
fn db_policy_pod_and_namespace_selector() {
    use kodekloud::*;
    let p = db_policy().types(true, false).ingress(
        rule()
            .pods_in(labels([("name", "staging")]), api_pod())
            .port(Protocol::Tcp, 3306),
    );
    let s = db_step(p);
    check(
        &s,
        STAGING_API,
        DB,
        tcp(3306),
        ALLOWED,
        "API pod of staging",
    );
    check(
        &s,
        STAGING_WEB,
        DB,
        tcp(3306),
        BLOCKED,
        "web pod of staging",
    );
    check(
        &s,
        API,
        DB,
        tcp(3306),
        BLOCKED,
        "API pod of prod: not in staging",
    );
}

#[test]
fn db_policy_namespace_selector_only() {
    use kodekloud::*;
    let p = db_policy().types(true, false).ingress(
        rule()
            .namespaces(labels([("name", "staging")]))
            .port(Protocol::Tcp, 3306),
    );
    let s = db_step(p);
    check(
        &s,
        STAGING_WEB,
        DB,
        tcp(3306),
        ALLOWED,
        "web pod of staging",
    );
    check(
        &s,
        STAGING_API,
        DB,
        tcp(3306),
        ALLOWED,
        "API pod of staging",
    );
    check(&s, DEV_API, DB, tcp(3306), BLOCKED, "outside staging");
}

/// Two peers in one rule: (API pods of prod AND namespace prod) OR the
/// backup server. The tutorial calls the peers "two rules"; they are two
/// peers of one rule (same OR, and they share the rule's ports).
#[test]
fn db_policy_ip_block_backup_server() {
    use kodekloud::*;
    let p = db_policy().types(true, false).ingress(
        rule()
            .pods_in(labels([("name", "prod")]), api_pod())
            .ip_block("192.168.5.10/32", &[])
            .port(Protocol::Tcp, 3306),
    );
    let s = db_step(p);
    check(&s, API, DB, tcp(3306), ALLOWED, "API pod of prod");
    check(&s, BACKUP, DB, tcp(3306), ALLOWED, "the backup server");
    check(&s, "192.168.5.11", DB, tcp(3306), BLOCKED, "its neighbour");
    check(&s, WEB, DB, tcp(3306), BLOCKED, "web pod of prod");
    check(
        &s,
        STAGING_API,
        DB,
        tcp(3306),
        BLOCKED,
        "API pod of staging",
    );
}

/// "a dash before the namespace selector": three peers, any of them.
#[test]
fn db_policy_separate_peers_are_or() {
    use kodekloud::*;
    let p = db_policy().types(true, false).ingress(
        rule()
            .pods(api_pod())
            .namespaces(labels([("name", "prod")]))
            .ip_block("192.168.5.10/32", &[])
            .port(Protocol::Tcp, 3306),
    );
    let s = db_step(p);
    check(
        &s,
        WEB,
        DB,
        tcp(3306),
        ALLOWED,
        "any pod of prod, web included",
    );
    check(&s, BACKUP, DB, tcp(3306), ALLOWED, "the backup server");
    check(
        &s,
        STAGING_API,
        DB,
        tcp(3306),
        BLOCKED,
        "API pod of staging",
    );
}

#[test]
fn db_policy_egress_to_backup_server() {
    use kodekloud::*;
    let s = golden("seed-db-policy");
    let final_policy = db_policy()
        .types(true, true)
        .ingress(rule().pods(api_pod()).port(Protocol::Tcp, 3306))
        .egress(
            rule()
                .ip_block("192.168.5.10/32", &[])
                .port(Protocol::Tcp, 80),
        );
    assert_eq!(
        s.policies.values().map(|p| &**p).collect::<Vec<_>>(),
        vec![&final_policy],
        "the golden input holds the lecture's last policy"
    );
    check(
        &s,
        DB,
        BACKUP,
        tcp(80),
        ALLOWED,
        "backup pushed to the server",
    );
    check(&s, DB, BACKUP, tcp(443), BLOCKED, "another port");
    check(&s, DB, "192.168.5.11", tcp(80), BLOCKED, "another host");
    check(
        &s,
        DB,
        API,
        tcp(5000),
        BLOCKED,
        "db now isolated for egress",
    );
    check(&s, API, DB, tcp(3306), ALLOWED, "api to db still");
    check_reply_passes(&s, API, DB, tcp(3306), "replies to api need no egress rule");
}

/// The two manifests printed in the lecture do not parse: `matchLabels`,
/// `ports`, `policyTypes` and `ingress` are mis-indented (the slides lost
/// their indentation). kubectl refuses them; the loader reports a syntax
/// problem and loads no policy.
#[test]
fn db_policy_printed_manifests_are_not_valid_yaml() {
    let first = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
   name: db-policy
spec:
   podSelector:
       matchLabels:
       role: db
   policyTypes:
   - Ingress
   ingress:
   - from:
       - podSelector:
       matchLabels:
       name: api-pod
   ports:
       - protocol: TCP
";
    let second = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
    name: db-policy
spec:
    podSelector:
        matchLabels:
            role: db

 
policyTypes:
    - Ingress
ingress:
    - from:
        - podSelector:
            matchLabels:
                name: api-pod
    ports:
        - protocol: TCP
            port: 3306
";
    for (which, text) in [("first", first), ("second", second)] {
        let loaded = load_text(text);
        assert!(
            loaded.snapshot.policies.is_empty(),
            "{which}: no policy may load"
        );
        assert_eq!(
            loaded.problems.len(),
            1,
            "{which}: one problem: {:?}",
            loaded.problems
        );
        let message = loaded.problems[0].to_string();
        assert!(
            message.contains("YAML"),
            "{which}: a YAML syntax problem, got: {message}"
        );
    }
}
