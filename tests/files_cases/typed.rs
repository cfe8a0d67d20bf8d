//! One conversion for both sources: an object as a watch delivers it (a
//! typed `k8s-openapi` object, converted by `nftpolicy_source::api`) and the
//! same object written in a YAML file (read by `files::Loader`) give the
//! same model value, or fail with the same field and the same issue.

use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use nftpolicy_core::model::{NamespacedName, Snapshot};
use nftpolicy_source::api::{self, Invalid};
use nftpolicy_source::files::{Format, Loader};
use serde_json::{json, Value};

/// The object through the typed conversion, added to a snapshot.
fn via_api(doc: &Value) -> Result<Snapshot, Invalid> {
    let mut s = Snapshot::default();
    let typed = || doc.clone();
    match doc["kind"].as_str() {
        Some("Namespace") => s.add_namespace(api::namespace(&from(typed()))?),
        Some("Pod") => s.add_pod(api::pod(&from::<Pod>(typed()))?),
        _ => s.add_policy(api::policy(&from::<NetworkPolicy>(typed()))?),
    }
    Ok(s)
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a well-typed object")
}

/// The object written as YAML and read by the file loader.
fn via_file(doc: &Value) -> Result<Snapshot, Invalid> {
    let yaml = serde_saphyr::to_string(doc).expect("serializable");
    let mut loader = Loader::new();
    loader.add_text(Path::new("typed.yaml"), &yaml, Format::Yaml);
    let loaded = loader.finish();
    match loaded.problems.as_slice() {
        [] => Ok(loaded.snapshot),
        [p] => Err(Invalid::at(
            p.field.clone().unwrap_or_default(),
            p.issue.clone(),
        )),
        more => panic!("one problem at most: {more:#?}\n{yaml}"),
    }
}

fn policy(spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "p", "namespace": "shop"}, "spec": spec})
}

fn pod(body: Value) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}}});
    for (k, v) in body.as_object().cloned().unwrap_or_default() {
        pod[k] = v;
    }
    pod
}

/// When invalid: the field and a substring of the message.
type Want = Option<(&'static str, &'static str)>;

/// (case, object, what it must give).
fn cases() -> Vec<(&'static str, Value, Want)> {
    let from = |peer: Value| policy(json!({"ingress": [{"from": [{"podSelector": {}}, peer]}]}));
    let port = |port: Value| policy(json!({"egress": [{"ports": [port]}]}));
    vec![
        (
            "namespace",
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "shop", "labels": {"env": "prod"}}}),
            None,
        ),
        (
            "pod with sidecar ports and two IPs",
            pod(json!({"spec": {"nodeName": "n1",
                "containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}],
                "initContainers": [{"name": "s", "restartPolicy": "Always",
                    "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"}]}]},
                "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}})),
            None,
        ),
        (
            "policy with every kind of peer and port",
            policy(json!({"podSelector": {"matchExpressions": [
                    {"key": "tier", "operator": "NotIn", "values": ["db"]}]},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [
                    {"namespaceSelector": {"matchLabels": {"env": "prod"}},
                     "podSelector": {"matchLabels": {"app": "web"}}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                    "ports": [{"port": "http"}, {"port": 8000, "endPort": 8080, "protocol": "SCTP"}]}],
                "egress": [{}]})),
            None,
        ),
        (
            "pod without a name",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "shop"}}),
            Some(("metadata.name", "is missing")),
        ),
        (
            "second pod IP",
            pod(json!({"status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.300"}]}})),
            Some(("status.podIPs[1].ip", "\"10.0.0.300\" is not an IP address")),
        ),
        (
            "podIP",
            pod(json!({"status": {"podIP": "fd00::zz"}})),
            Some(("status.podIP", "is not an IP address")),
        ),
        (
            "container port",
            pod(
                json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 70000}]}]}}),
            ),
            Some((
                "spec.containers[0].ports[0].containerPort",
                "70000 is out of range",
            )),
        ),
        (
            "sidecar protocol",
            pod(
                json!({"spec": {"containers": [], "initContainers": [{"name": "s",
                "restartPolicy": "Always", "ports": [{"containerPort": 1, "protocol": "icmp"}]}]}}),
            ),
            Some((
                "spec.initContainers[0].ports[0].protocol",
                "\"icmp\" is not a protocol",
            )),
        ),
        (
            "cidr",
            from(json!({"ipBlock": {"cidr": "10.0.0.0/33"}})),
            Some((
                "spec.ingress[0].from[1].ipBlock.cidr",
                "\"10.0.0.0/33\" is not a CIDR",
            )),
        ),
        (
            "except outside",
            from(
                json!({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/24", "fd00::/64"]}}),
            ),
            Some((
                "spec.ingress[0].from[1].ipBlock.except[1]",
                "fd00::/64 is not inside cidr",
            )),
        ),
        (
            "ipBlock with a selector",
            from(json!({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}})),
            Some(("spec.ingress[0].from[1]", "cannot be combined")),
        ),
        (
            "empty peer",
            from(json!({})),
            Some(("spec.ingress[0].from[1]", "a peer needs")),
        ),
        (
            "namespaceSelector operator",
            from(json!({"namespaceSelector": {"matchExpressions": [
                {"key": "env", "operator": "in", "values": ["prod"]}]}})),
            Some((
                "spec.ingress[0].from[1].namespaceSelector.matchExpressions[0].operator",
                "\"in\" is not an operator",
            )),
        ),
        (
            "In without values",
            policy(json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}})),
            Some((
                "spec.podSelector.matchExpressions[0].values",
                "needs at least one value",
            )),
        ),
        (
            "empty key",
            policy(
                json!({"podSelector": {"matchExpressions": [{"key": "", "operator": "Exists"}]}}),
            ),
            Some(("spec.podSelector.matchExpressions[0].key", "is empty")),
        ),
        (
            "policy type",
            policy(json!({"policyTypes": ["Ingress", "egress"]})),
            Some(("spec.policyTypes[1]", "\"egress\" is not a policy type")),
        ),
        (
            "port 0",
            port(json!({"port": 0})),
            Some(("spec.egress[0].ports[0].port", "0 is out of range")),
        ),
        (
            "port name",
            port(json!({"port": "HTTP"})),
            Some((
                "spec.egress[0].ports[0].port",
                "\"HTTP\" is not a valid port name",
            )),
        ),
        (
            "digits as a port name",
            port(json!({"port": "80"})),
            Some(("spec.egress[0].ports[0].port", "must contain a letter")),
        ),
        (
            "endPort below port",
            port(json!({"port": 80, "endPort": 79})),
            Some(("spec.egress[0].ports[0].endPort", "79 is below port 80")),
        ),
        (
            "endPort with a named port",
            port(json!({"port": "dns", "endPort": 90})),
            Some((
                "spec.egress[0].ports[0].endPort",
                "not the named port \"dns\"",
            )),
        ),
        (
            "protocol",
            port(json!({"port": 53, "protocol": "udp"})),
            Some((
                "spec.egress[0].ports[0].protocol",
                "\"udp\" is not a protocol",
            )),
        ),
    ]
}

#[test]
fn typed_and_yaml_objects_convert_alike() {
    for (case, doc, want) in cases() {
        let typed = via_api(&doc);
        let file = via_file(&doc);
        assert_eq!(typed, file, "case: {case}");
        match (want, typed) {
            (None, Ok(s)) => {
                let objects = s.namespaces.len() + s.pods.len() + s.policies.len();
                assert_eq!(objects, 1, "case: {case}");
            }
            (Some((field, msg)), Err(err)) => {
                assert_eq!(err.field, field, "case: {case}");
                assert!(err.issue.to_string().contains(msg), "case: {case}: {err}");
                assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
            }
            (want, got) => panic!("case: {case}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn typed_objects_keep_their_identity() {
    let doc = pod(json!({"status": {"podIP": "10.0.0.1"}}));
    let s = via_api(&doc).unwrap();
    assert!(s.pods.contains_key(&NamespacedName::new("shop", "web")));
    let mut ns: Namespace = from(json!({"metadata": {"name": "shop", "namespace": "x"}}));
    assert_eq!(
        api::namespace(&ns).unwrap().name,
        "shop",
        "own namespace ignored"
    );
    ns.metadata.name = Some(String::new());
    let err = api::namespace(&ns).unwrap_err();
    assert_eq!(
        (err.field.as_str(), err.to_string().as_str()),
        ("metadata.name", "metadata.name: is missing")
    );
    let mut p: Pod = from(doc);
    p.metadata.namespace = None;
    assert_eq!(
        &*api::pod(&p).unwrap().namespace,
        "default",
        "as kubectl apply defaults it"
    );
}
