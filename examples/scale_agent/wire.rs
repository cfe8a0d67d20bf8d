//! Model objects → the JSON a kube-apiserver sends for them, so that the
//! fake API of `scale_agent` can serve a synthetic cluster
//! (`nftpolicy_testkit::synth`) to the real agent.
//!
//! By default each object carries what a real API server adds and the agent
//! trims on arrival (uid, managedFields, annotations, owner references; a
//! pod's container spec, volumes, tolerations, conditions and container
//! statuses): about 4 KiB of JSON per pod, so that listing costs what it
//! costs on a real cluster. `lean` leaves all that out. Either way the
//! agent's conversion (`nftpolicy_source::api`) gives back exactly the
//! model object: the breakdown checks it with [`read_pages`].

use nftpolicy_core::model::{
    Namespace, NamespaceScope, Operator, Peer, Pod, PodPhase, Policy, PortRef, PortSpec, Protocol,
    Rule, Selector, Snapshot,
};
use serde_json::{json, Map, Value};

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

fn uid(kind: u8, n: u64) -> String {
    format!("{kind:08x}-5c1e-4d2a-9b7f-{n:012x}")
}

/// Metadata as the API server returns it (`resourceVersion` set later).
fn meta(namespace: Option<&str>, name: &str, labels: Value, kind: u8, n: u64, lean: bool) -> Value {
    let mut m = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    if !lean {
        m["uid"] = json!(uid(kind, n));
        m["creationTimestamp"] = json!("2026-11-20T08:14:03Z");
    }
    m
}

/// A Namespace object (its labels include `kubernetes.io/metadata.name`,
/// as the API server sets it).
pub fn namespace(ns: &Namespace, n: u64, lean: bool) -> Value {
    let mut o = json!({"metadata": meta(None, &ns.name, json!(ns.labels), 1, n, lean)});
    if !lean {
        o["spec"] = json!({"finalizers": ["kubernetes"]});
        o["status"] = json!({"phase": "Active"});
    }
    o
}

/// A Pod object.
pub fn pod(p: &Pod, n: u64, lean: bool) -> Value {
    let ports: Vec<Value> = p
        .ports
        .iter()
        .map(|c| {
            let mut port = json!({"containerPort": c.port.get(), "protocol": protocol(c.protocol)});
            if let Some(name) = &c.name {
                port["name"] = json!(name);
            }
            port
        })
        .collect();
    let ips: Vec<Value> = p
        .ips
        .iter()
        .map(|ip| json!({"ip": ip.to_string()}))
        .collect();
    let phase = match p.phase {
        PodPhase::Active => "Running",
        PodPhase::Finished => "Succeeded",
    };
    let mut container = json!({"name": "app", "ports": ports});
    let mut spec = json!({"containers": [container.clone()]});
    if let Some(node) = &p.node {
        spec["nodeName"] = json!(&**node);
    }
    if p.host_network {
        spec["hostNetwork"] = json!(true);
    }
    let mut status = json!({"phase": phase});
    if let Some(first) = p.ips.first() {
        status["podIP"] = json!(first.to_string());
        status["podIPs"] = json!(ips);
    }
    let mut metadata = meta(Some(&p.namespace), &p.name, json!(p.labels), 2, n, lean);
    if !lean {
        pad_metadata(&mut metadata, &p.name);
        pad_container(&mut container);
        spec["containers"] = json!([container]);
        pad_spec(&mut spec);
        pad_status(&mut status, &p.name);
    }
    json!({"metadata": metadata, "spec": spec, "status": status})
}

fn pad_metadata(m: &mut Value, name: &str) {
    let owner = name.rsplit_once('-').map_or(name, |(a, _)| a);
    m["generateName"] = json!(format!("{owner}-7d9f8c6b5-"));
    m["annotations"] = json!({
        "kubectl.kubernetes.io/restartedAt": "2026-11-20T08:14:00Z",
        "prometheus.io/scrape": "true",
    });
    m["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": format!("{owner}-7d9f8c6b5"), "uid": uid(9, 7), "controller": true,
        "blockOwnerDeletion": true}]);
    m["managedFields"] = json!([
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
         "time": "2026-11-20T08:14:03Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {},
            "f:tier": {}}, "f:ownerReferences": {".": {}, "k:{\"uid\":\"x\"}": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {},
            "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {".": {}}, "f:resources": {},
            "f:terminationMessagePath": {}}}, "f:dnsPolicy": {}, "f:restartPolicy": {},
            "f:schedulerName": {}, "f:securityContext": {}}}},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
         "time": "2026-11-20T08:14:09Z", "fieldsType": "FieldsV1", "subresource": "status",
         "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {},
            "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
            "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {},
            "f:podIPs": {".": {}}, "f:startTime": {}}}}
    ]);
}

fn pad_container(c: &mut Value) {
    c["image"] = json!("registry.example.com/shop/app:1.27.3");
    c["imagePullPolicy"] = json!("IfNotPresent");
    c["resources"] = json!({"limits": {"cpu": "500m", "memory": "256Mi"},
                            "requests": {"cpu": "100m", "memory": "128Mi"}});
    c["env"] = json!([{"name": "LOG_LEVEL", "value": "info"},
                      {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                      {"name": "UPSTREAM", "value": "http://backend.shop.svc.cluster.local:8080"}]);
    c["livenessProbe"] = json!({"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
        "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1,
        "successThreshold": 1, "failureThreshold": 3});
    c["volumeMounts"] = json!([{"name": "kube-api-access-x7k2p", "readOnly": true,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    c["terminationMessagePath"] = json!("/dev/termination-log");
    c["terminationMessagePolicy"] = json!("File");
}

fn pad_spec(s: &mut Value) {
    s["volumes"] = json!([{"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420,
        "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]);
    s["restartPolicy"] = json!("Always");
    s["terminationGracePeriodSeconds"] = json!(30);
    s["dnsPolicy"] = json!("ClusterFirst");
    s["serviceAccountName"] = json!("default");
    s["serviceAccount"] = json!("default");
    s["securityContext"] = json!({});
    s["schedulerName"] = json!("default-scheduler");
    s["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
    s["priority"] = json!(0);
    s["enableServiceLinks"] = json!(true);
    s["preemptionPolicy"] = json!("PreemptLowerPriority");
}

fn pad_status(s: &mut Value, name: &str) {
    let cond = |t: &str| {
        json!({"type": t, "status": "True", "lastProbeTime": null,
                                "lastTransitionTime": "2026-11-20T08:14:09Z"})
    };
    s["conditions"] = json!([
        cond("PodReadyToStartContainers"),
        cond("Initialized"),
        cond("Ready"),
        cond("ContainersReady"),
        cond("PodScheduled")
    ]);
    s["hostIP"] = json!("192.168.10.21");
    s["hostIPs"] = json!([{"ip": "192.168.10.21"}]);
    s["startTime"] = json!("2026-11-20T08:14:03Z");
    s["qosClass"] = json!("Burstable");
    s["containerStatuses"] = json!([{"name": "app", "ready": true, "restartCount": 0,
        "started": true, "state": {"running": {"startedAt": "2026-11-20T08:14:08Z"}},
        "image": "registry.example.com/shop/app:1.27.3",
        "imageID": "registry.example.com/shop/app@sha256:4f0e5a1c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7",
        "containerID": format!("containerd://{:0>64}", name.len())}]);
}

fn selector(s: &Selector) -> Value {
    let mut m = Map::new();
    if !s.match_labels.is_empty() {
        m.insert("matchLabels".into(), json!(s.match_labels));
    }
    if !s.match_expressions.is_empty() {
        let exprs: Vec<Value> = s
            .match_expressions
            .iter()
            .map(|r| {
                let (op, values) = match &r.op {
                    Operator::In(v) => ("In", Some(v)),
                    Operator::NotIn(v) => ("NotIn", Some(v)),
                    Operator::Exists => ("Exists", None),
                    Operator::DoesNotExist => ("DoesNotExist", None),
                };
                let mut e = json!({"key": r.key, "operator": op});
                if let Some(v) = values {
                    e["values"] = json!(v);
                }
                e
            })
            .collect();
        m.insert("matchExpressions".into(), json!(exprs));
    }
    Value::Object(m)
}

fn peer(p: &Peer) -> Value {
    match p {
        Peer::Pods { namespaces, pods } => {
            let mut v = json!({"podSelector": selector(pods)});
            if let NamespaceScope::Matching(ns) = namespaces {
                v["namespaceSelector"] = selector(ns);
            }
            v
        }
        Peer::IpBlock { cidr, except } => {
            let mut b = json!({"cidr": cidr.to_string()});
            if !except.is_empty() {
                b["except"] = json!(except.iter().map(|e| e.to_string()).collect::<Vec<_>>());
            }
            json!({"ipBlock": b})
        }
    }
}

fn port(p: &PortSpec) -> Value {
    let mut v = json!({"protocol": protocol(p.protocol)});
    match &p.port {
        Some(PortRef::Number(n)) => v["port"] = json!(n.get()),
        Some(PortRef::Name(name)) => v["port"] = json!(name),
        None => {}
    }
    if let Some(end) = p.end_port {
        v["endPort"] = json!(end.get());
    }
    v
}

fn rule(r: &Rule, peers_key: &str) -> Value {
    let mut v = json!({});
    if !r.peers.is_empty() {
        v[peers_key] = json!(r.peers.iter().map(peer).collect::<Vec<_>>());
    }
    if !r.ports.is_empty() {
        v["ports"] = json!(r.ports.iter().map(port).collect::<Vec<_>>());
    }
    v
}

/// A NetworkPolicy object.
pub fn policy(p: &Policy, n: u64, lean: bool) -> Value {
    let mut spec = json!({"podSelector": selector(&p.pod_selector)});
    if let Some(t) = p.policy_types {
        let mut types = Vec::new();
        if t.ingress {
            types.push("Ingress");
        }
        if t.egress {
            types.push("Egress");
        }
        spec["policyTypes"] = json!(types);
    }
    if !p.ingress.is_empty() {
        spec["ingress"] = json!(p
            .ingress
            .iter()
            .map(|r| rule(r, "from"))
            .collect::<Vec<_>>());
    }
    if !p.egress.is_empty() {
        spec["egress"] = json!(p.egress.iter().map(|r| rule(r, "to")).collect::<Vec<_>>());
    }
    let mut metadata = meta(Some(&p.namespace), &p.name, json!({}), 3, n, lean);
    if !lean {
        metadata["generation"] = json!(1);
    }
    json!({"metadata": metadata, "spec": spec})
}

/// Reads `pages` (list bodies, as the agent's watchers receive them) back
/// through the agent's conversion, into a snapshot.
pub fn read_pages(pages: &[Vec<u8>], into: &mut Snapshot) -> Result<(), String> {
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::networking::v1 as net;
    use kube::core::ObjectList;
    use nftpolicy_source::api;
    for page in pages {
        let head = String::from_utf8_lossy(&page[..page.len().min(40)]).into_owned();
        if head.contains("\"PodList\"") {
            let l: ObjectList<core::Pod> =
                serde_json::from_slice(page).map_err(|e| e.to_string())?;
            for o in &l.items {
                into.add_pod(api::pod(o).map_err(|e| e.to_string())?);
            }
        } else if head.contains("\"NamespaceList\"") {
            let l: ObjectList<core::Namespace> =
                serde_json::from_slice(page).map_err(|e| e.to_string())?;
            for o in &l.items {
                into.add_namespace(api::namespace(o).map_err(|e| e.to_string())?);
            }
        } else if head.contains("\"NetworkPolicyList\"") {
            let l: ObjectList<net::NetworkPolicy> =
                serde_json::from_slice(page).map_err(|e| e.to_string())?;
            for o in &l.items {
                into.add_policy(api::policy(o).map_err(|e| e.to_string())?);
            }
        } else {
            return Err(format!("unknown list page starting {head:?}"));
        }
    }
    Ok(())
}
