//! Typed deserialization into `k8s-openapi` objects (with the exact field
//! path of any type error), and the conversion of Namespaces and Pods into
//! `model` types. `k8s-openapi` types are used here and in `policy.rs` and
//! go no further: callers get `model` values or an [`Invalid`].

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::problem::Issue;
use super::validate;
use nftpolicy_core::model::{ContainerPort, Labels, Namespace, Pod, PodPhase};

/// A field of an object that is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Invalid {
    /// The field path, e.g. `spec.ingress[0].from[1]`; empty for the object itself.
    pub field: String,
    /// What is wrong.
    pub issue: Issue,
}

impl Invalid {
    /// An issue at `field`.
    pub fn at(field: impl Into<String>, issue: Issue) -> Self {
        Self {
            field: field.into(),
            issue,
        }
    }
}

/// Deserializes `value` into a `k8s-openapi` type; a type error names the
/// exact field (`spec.ingress[0].ports[0].port`).
///
/// A top-level field other than `apiVersion`, `kind`, `metadata`, `spec` and
/// `status` is an error, as with the API server's strict field validation:
/// it is almost always `spec` content indented one level too little, and
/// ignoring it would silently change what the object means.
pub(super) fn typed<T: DeserializeOwned>(value: Value) -> Result<T, Invalid> {
    const TOP: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
    if let Value::Object(map) = &value {
        if let Some(key) = map.keys().find(|k| !TOP.contains(&k.as_str())) {
            return Err(Invalid::at(
                key.clone(),
                Issue::Type(format!(
                    "unknown field {key:?}: the API server rejects it (does it belong under spec?)"
                )),
            ));
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        Invalid::at(field, Issue::Type(e.inner().to_string()))
    })
}

/// A Namespace; `name` comes from the header, already checked.
pub(super) fn namespace(name: &str, value: Value) -> Result<Namespace, Invalid> {
    let ns: core::Namespace = typed(value)?;
    Ok(Namespace::new(name, labels(ns.metadata.labels)))
}

fn labels(labels: Option<std::collections::BTreeMap<String, String>>) -> Labels {
    labels.unwrap_or_default()
}

/// A Pod; `namespace` (defaulted) and `name` come from the header.
///
/// `spec.containers` may be left out in files (the API requires it, but
/// hand-written fixtures for policy tests rarely bother).
pub(super) fn pod(namespace: &str, name: &str, mut value: Value) -> Result<Pod, Invalid> {
    if let Some(Value::Object(spec)) = value.get_mut("spec") {
        spec.entry("containers")
            .or_insert_with(|| Value::Array(Vec::new()));
    }
    let pod: core::Pod = typed(value)?;
    let spec = pod.spec.unwrap_or_default();
    let status = pod.status.unwrap_or_default();
    let phase = match status.phase.as_deref() {
        Some("Succeeded" | "Failed") => PodPhase::Finished,
        _ => PodPhase::Active,
    };
    Ok(Pod {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        labels: labels(pod.metadata.labels),
        node: spec.node_name.clone().filter(|n| !n.is_empty()),
        ips: pod_ips(&status)?,
        host_network: spec.host_network.unwrap_or(false),
        phase,
        ports: container_ports(&spec)?,
    })
}

/// `status.podIPs[].ip`, or `status.podIP` when `podIPs` is absent or
/// empty; duplicates dropped, order kept.
fn pod_ips(status: &core::PodStatus) -> Result<Vec<IpAddr>, Invalid> {
    let listed: Vec<(String, &str)> = match status.pod_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("status.podIPs[{i}].ip"), p.ip.as_str()))
            .collect(),
        _ => status
            .pod_ip
            .iter()
            .filter(|ip| !ip.is_empty())
            .map(|ip| ("status.podIP".to_owned(), ip.as_str()))
            .collect(),
    };
    let mut ips = Vec::with_capacity(listed.len());
    for (field, s) in listed {
        let ip = validate::ip(s).map_err(|issue| Invalid::at(field, issue))?;
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

/// The ports of every container, and of restartable init containers
/// (sidecars, `restartPolicy: Always`), which run beside the others. Plain
/// init containers have exited before the pod serves anything.
fn container_ports(spec: &core::PodSpec) -> Result<Vec<ContainerPort>, Invalid> {
    let sidecars = spec.init_containers.iter().flatten().enumerate();
    let sidecars = sidecars
        .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    let main = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.containers[{i}]"), c));
    let mut out = Vec::new();
    for (field, container) in main.chain(sidecars) {
        for (j, p) in container.ports.iter().flatten().enumerate() {
            let at = |sub: &str| format!("{field}.ports[{j}].{sub}");
            let port = validate::port_number(p.container_port)
                .map_err(|issue| Invalid::at(at("containerPort"), issue))?;
            let protocol = validate::protocol(p.protocol.as_deref())
                .map_err(|issue| Invalid::at(at("protocol"), issue))?;
            out.push(ContainerPort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port,
                protocol,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_fields() {
        let v = json!({
            "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "nodeName": "node-a",
                "containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}],
                "initContainers": [
                    {"name": "init", "ports": [{"containerPort": 1}]},
                    {"name": "sidecar", "restartPolicy": "Always",
                     "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"}]}
                ]
            },
            "status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}
        });
        let p = pod("shop", "web", v).unwrap();
        assert_eq!(p.node.as_deref(), Some("node-a"));
        assert_eq!(p.ips.len(), 2);
        assert_eq!(p.phase, PodPhase::Active);
        let names: Vec<_> = p.ports.iter().map(|c| c.name.clone()).collect();
        assert_eq!(
            names,
            [Some("http".into()), Some("dns".into())],
            "plain init skipped"
        );
    }

    #[test]
    fn pod_errors_name_the_field() {
        // (case, document, field)
        let cases = [
            (
                "bad podIPs entry",
                json!({"status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "nope"}]}}),
                "status.podIPs[1].ip",
            ),
            (
                "bad podIP fallback",
                json!({"status": {"podIP": "1.2.3"}}),
                "status.podIP",
            ),
            (
                "container port zero",
                json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 0}]}]}}),
                "spec.containers[0].ports[0].containerPort",
            ),
            (
                "labels of the wrong type",
                json!({"metadata": {"labels": {"a": 1}}}),
                "metadata.labels.a",
            ),
        ];
        for (name, v, field) in cases {
            let err = pod("ns", "p", v).expect_err(name);
            assert_eq!(err.field, field, "case: {name}");
        }
    }

    #[test]
    fn finished_phases() {
        for (phase, want) in [
            ("Succeeded", PodPhase::Finished),
            ("Failed", PodPhase::Finished),
            ("Running", PodPhase::Active),
            ("Unknown", PodPhase::Active),
        ] {
            let p = pod("ns", "p", json!({"status": {"phase": phase}})).unwrap();
            assert_eq!(p.phase, want, "case: {phase}");
        }
    }
}
