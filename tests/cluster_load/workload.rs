//! The objects of the load test: namespaces, virtual nodes, pods (most of
//! them on virtual nodes, their status written here as a kubelet would),
//! the real pods that packets are sent between, and 200 policies; plus the
//! pairs of real pods whose connectivity the change stream opens and closes.
//!
//! Everything is deterministic: the same objects every run.

use serde_json::{json, Value};

/// Pods in all.
pub const PODS: usize = 1000;
/// NetworkPolicies in all.
pub const POLICIES: usize = 200;
/// Namespaces `load-00` ...
pub const NAMESPACES: usize = 20;
/// Virtual nodes `node3` ... (no runner, no packets).
pub const VIRTUAL_NODES: usize = 8;
/// The port every real server serves, named `http`.
pub const HTTP: u16 = 8080;

const APPS: [&str; 5] = ["web", "api", "db", "cache", "batch"];

/// `load-07`.
pub fn ns(i: usize) -> String {
    format!("load-{i:02}")
}

/// How a pair's connectivity is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// The client's label `access` (granted / denied); the server's policy
    /// allows `access=granted` of its namespace.
    Label,
    /// The server's namespace's policy `edit-ingress`: an allow from
    /// `role=editor` pods, or from an unrelated ipBlock.
    IngressEdit,
    /// The client's namespace's policy `egress-edit`: an egress allow to the
    /// server, or to an unrelated ipBlock.
    EgressEdit,
}

/// Two real pods and the change that opens and closes client → server:8080.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Client namespace and name.
    pub client: (String, String),
    /// Client node (1 or 2).
    pub client_node: u8,
    /// Server namespace and name.
    pub server: (String, String),
    /// Server node.
    pub server_node: u8,
    /// How it is switched.
    pub switch: Switch,
    /// Open at the start.
    pub open_at_start: bool,
}

impl Pair {
    /// The node whose table must change: the server's for ingress, the
    /// client's for egress.
    pub fn enforcing_node(&self) -> u8 {
        match self.switch {
            Switch::Label | Switch::IngressEdit => self.server_node,
            Switch::EgressEdit => self.client_node,
        }
    }

    /// A short name for reports.
    pub fn label(&self) -> String {
        let kind = match self.switch {
            Switch::Label => "label",
            Switch::IngressEdit => "ingress policy edit",
            Switch::EgressEdit => "egress policy edit",
        };
        let path = if self.client_node == self.server_node {
            format!("node{} bridge", self.client_node)
        } else {
            format!("node{} -> node{}", self.client_node, self.server_node)
        };
        format!(
            "{}/{} -> {}/{} ({kind}, {path})",
            self.client.0, self.client.1, self.server.0, self.server.1
        )
    }

    /// The pod chain a policy edit changes (the edit changes the peers,
    /// so the chain's rule looks up another set): the server's ingress
    /// chain or the client's egress chain. `None` for a label change, which
    /// changes set elements only.
    pub fn edited_chain(&self) -> Option<String> {
        match self.switch {
            Switch::Label => None,
            Switch::IngressEdit => Some(format!("pod-ingress-{}/{}", self.server.0, self.server.1)),
            Switch::EgressEdit => Some(format!("pod-egress-{}/{}", self.client.0, self.client.1)),
        }
    }
}

/// The six pairs (cross-node and same-node, ingress and egress).
pub fn pairs() -> Vec<Pair> {
    let pair = |c_ns: usize, c: &str, cn: u8, s_ns: usize, s: &str, sn: u8, switch, open| Pair {
        client: (ns(c_ns), c.to_owned()),
        client_node: cn,
        server: (ns(s_ns), s.to_owned()),
        server_node: sn,
        switch,
        open_at_start: open,
    };
    vec![
        pair(0, "cli-0", 1, 0, "srv-0", 2, Switch::Label, false),
        pair(1, "cli-1", 1, 1, "srv-1", 2, Switch::Label, true),
        pair(2, "cli-2", 1, 2, "srv-2", 1, Switch::Label, false),
        pair(3, "cli-3", 2, 3, "srv-3", 1, Switch::Label, true),
        pair(4, "cli-4", 1, 4, "srv-4", 2, Switch::IngressEdit, false),
        pair(5, "cli-5", 1, 6, "srv-5", 2, Switch::EgressEdit, true),
    ]
}

/// The patch that puts `pair` in state `open`: (kind, namespace, name, merge patch).
pub fn switch_patch(pair: &Pair, open: bool) -> (&'static str, String, String, Value) {
    match pair.switch {
        Switch::Label => (
            "pod",
            pair.client.0.clone(),
            pair.client.1.clone(),
            json!({"metadata": {"labels": {"access": access(open)}}}),
        ),
        Switch::IngressEdit => (
            "networkpolicy",
            pair.server.0.clone(),
            "edit-ingress".into(),
            json!({"spec": {"ingress": [edit_ingress_rule(open)]}}),
        ),
        Switch::EgressEdit => (
            "networkpolicy",
            pair.client.0.clone(),
            "egress-edit".into(),
            json!({"spec": {"egress": [egress_edit_rule(open, &pair.server.0)]}}),
        ),
    }
}

fn access(granted: bool) -> &'static str {
    if granted {
        "granted"
    } else {
        "denied"
    }
}

fn edit_ingress_rule(open: bool) -> Value {
    let from = if open {
        json!({"podSelector": {"matchLabels": {"role": "editor"}}})
    } else {
        json!({"ipBlock": {"cidr": "192.0.2.0/24"}})
    };
    json!({"from": [from], "ports": [{"port": "http"}]})
}

fn egress_edit_rule(open: bool, server_ns: &str) -> Value {
    let to = if open {
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": server_ns}},
               "podSelector": {"matchLabels": {"app": "srv"}}})
    } else {
        json!({"ipBlock": {"cidr": "192.0.2.0/24"}})
    };
    json!({"to": [to], "ports": [{"port": "http"}]})
}

/// The namespaces, with `team` and `env` labels.
pub fn namespaces() -> Vec<Value> {
    (0..NAMESPACES)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": ns(i), "labels": {
                       "team": format!("t{}", i % 5),
                       "env": if i % 2 == 0 { "prod" } else { "dev" }}}})
        })
        .collect()
}

/// A virtual node: `node<n>`, pod CIDRs 10.244.n.0/24 and fd00:10:244:n::/64.
pub fn virtual_node(n: usize) -> (Value, Value) {
    let name = format!("node{n}");
    let cidrs = [format!("10.244.{n}.0/24"), format!("fd00:10:244:{n}::/64")];
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kube-nftpolicy.test/virtual": "true"}},
        "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}});
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": format!("10.0.0.{n}")}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "virtual node of tests/cluster_load"}],
    }});
    (node, status)
}

fn container_ports(app: &str) -> Value {
    match app {
        "web" => json!([{"name": "http", "containerPort": HTTP}]),
        "api" => json!([{"name": "http", "containerPort": HTTP},
                        {"name": "metrics", "containerPort": 9090}]),
        "db" => json!([{"name": "postgres", "containerPort": 5432},
                       {"name": "metrics", "containerPort": 9187}]),
        "cache" => json!([{"name": "redis", "containerPort": 6379}]),
        "srv" => json!([{"name": "http", "containerPort": HTTP}]),
        _ => json!([]),
    }
}

fn pod(namespace: &str, name: &str, node: &str, labels: Value, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node, "containers": [{
            "name": "main", "image": "registry.k8s.io/pause:3.10",
            "ports": container_ports(app)}]}})
}

/// A pod on a virtual node, and the `pods/status` a kubelet would write
/// for it (Running, one address per family from the node's CIDRs).
pub struct VirtualPod {
    /// The pod.
    pub pod: Value,
    /// Its status patch.
    pub status: Value,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// The real pods: the pairs' clients and servers, and bystanders that
/// the policies select too. (namespace, pod).
pub fn real_pods() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for p in pairs() {
        let open = p.open_at_start;
        let mut labels = json!({"app": "cli"});
        match p.switch {
            Switch::Label => labels["access"] = json!(access(open)),
            Switch::IngressEdit => labels["role"] = json!("editor"),
            Switch::EgressEdit => {}
        }
        let (c_ns, c) = &p.client;
        let node = format!("node{}", p.client_node);
        out.push((c_ns.clone(), pod(c_ns, c, &node, labels, "cli")));
        let (s_ns, s) = &p.server;
        let node = format!("node{}", p.server_node);
        let labels = json!({"app": "srv"});
        out.push((s_ns.clone(), pod(s_ns, s, &node, labels, "srv")));
    }
    let bystanders = 36 - out.len();
    for j in 0..bystanders {
        let app = APPS[j % APPS.len()];
        let namespace = ns(j % 12);
        let mut labels = json!({"app": app, "access": access(j % 3 == 0)});
        if j % 4 == 0 {
            labels["tier"] = json!("frontend");
        }
        let node = format!("node{}", 1 + j % 2);
        let name = format!("rb-{j}");
        out.push((
            namespace.clone(),
            pod(&namespace, &name, &node, labels, app),
        ));
    }
    out
}

/// The pods on virtual nodes: `PODS` minus the real ones.
pub fn virtual_pods(real: usize) -> Vec<VirtualPod> {
    (0..PODS - real)
        .map(|v| {
            let namespace = ns(v % NAMESPACES);
            let node = 3 + v % VIRTUAL_NODES;
            let host = 2 + v / VIRTUAL_NODES;
            let app = APPS[(v / NAMESPACES) % APPS.len()];
            let mut labels = json!({"app": app, "access": access(v % 3 == 0)});
            if v % 4 == 0 {
                labels["tier"] = json!("frontend");
            }
            let name = format!("v-{v}");
            let v4 = format!("10.244.{node}.{host}");
            let v6 = format!("fd00:10:244:{node}::{host:x}");
            let status = json!({"status": {
                "phase": "Running",
                "hostIP": format!("10.0.0.{node}"),
                "hostIPs": [{"ip": format!("10.0.0.{node}")}],
                "podIP": v4,
                "podIPs": [{"ip": v4}, {"ip": v6}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }});
            VirtualPod {
                pod: pod(&namespace, &name, &format!("node{node}"), labels, app),
                status,
                namespace,
                name,
            }
        })
        .collect()
}

/// The 200 policies: (namespace, policy).
pub fn policies() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let np = |namespace: &str, name: &str, spec: Value| {
        (
            namespace.to_owned(),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": name, "namespace": namespace}, "spec": spec}),
        )
    };
    for i in 0..NAMESPACES {
        let n = ns(i);
        let team = format!("t{}", i % 5);
        out.push(np(
            &n,
            "default-deny-ingress",
            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        ));
        out.push(np(&n, "egress-dns-and-namespace", json!({
            "podSelector": {}, "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                 "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                {"to": [{"podSelector": {}}]}]})));
        out.push(np(
            &n,
            "web-from-api",
            json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                         "ports": [{"port": "http"}]}]}),
        ));
        out.push(np(
            &n,
            "api-from-team",
            json!({
            "podSelector": {"matchLabels": {"app": "api"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}],
                         "ports": [{"port": HTTP}]}]}),
        ));
        out.push(np(
            &n,
            "db-from-prod-api",
            json!({
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
                                   "podSelector": {"matchLabels": {"app": "api"}}}],
                         "ports": [{"port": "postgres"}]}]}),
        ));
        out.push(np(&n, "metrics-from-monitoring", json!({
            "podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns(NAMESPACES - 1)}},
                                   "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["batch"]}]}}],
                         "ports": [{"port": "metrics"}]}]})));
        out.push(np(&n, "cache-from-tiers", json!({
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["cache"]}]},
            "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}],
                         "ports": [{"port": 6379, "endPort": 6380}]}]})));
        out.push(np(
            &n,
            "batch-egress-outside",
            json!({
            "podSelector": {"matchLabels": {"app": "batch"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16"]}}],
                        "ports": [{"port": 443}]}]}),
        ));
        out.push(np(&n, "api-egress-db", json!({
            "podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db"}}}],
                        "ports": [{"port": "postgres"}]}]})));
        // Seven namespaces get a special policy instead of this one (below).
        if i >= 7 {
            out.push(np(&n, "web-from-partners", json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                             "ports": [{"port": 443}]}]})));
        }
    }
    for p in pairs() {
        match p.switch {
            Switch::Label => out.push(np(
                &p.server.0,
                "allow-granted",
                json!({
                "podSelector": {"matchLabels": {"app": "srv"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "granted"}}}],
                             "ports": [{"port": "http"}]}]}),
            )),
            Switch::IngressEdit => out.push(np(
                &p.server.0,
                "edit-ingress",
                json!({
                "podSelector": {"matchLabels": {"app": "srv"}},
                "ingress": [edit_ingress_rule(p.open_at_start)]}),
            )),
            Switch::EgressEdit => {
                out.push(np(
                    &p.client.0,
                    "egress-edit",
                    json!({
                    "podSelector": {"matchLabels": {"app": "cli"}}, "policyTypes": ["Egress"],
                    "egress": [egress_edit_rule(p.open_at_start, &p.server.0)]}),
                ));
                out.push(np(&p.server.0, "srv-from-clients", json!({
                    "podSelector": {"matchLabels": {"app": "srv"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": p.client.0}},
                                           "podSelector": {"matchLabels": {"app": "cli"}}}],
                                 "ports": [{"port": HTTP}]}]})));
            }
        }
    }
    assert_eq!(out.len(), POLICIES, "the workload's policy count");
    out
}
