//! Pod (`v1`) → `model::Pod`: labels, node, IPs, hostNetwork, phase and the
//! container ports that named ports resolve against. Every error names its
//! field path.

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;

use super::{validate, Invalid};
use crate::issue::Issue;
use nftpolicy_core::model::{ContainerPort, Pod, PodPhase};

/// A Pod; `namespace` (defaulted) and `name` come from its metadata.
pub(super) fn pod(namespace: &str, name: &str, pod: &core::Pod) -> Result<Pod, Invalid> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded" | "Failed") => PodPhase::Finished,
        _ => PodPhase::Active,
    };
    Ok(Pod {
        namespace: namespace.into(),
        name: name.into(),
        labels: pod.metadata.labels.clone().unwrap_or_default().into(),
        node: spec
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
            .map(Into::into),
        ips: match status {
            Some(status) => pod_ips(status)?,
            None => Vec::new(),
        },
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        phase,
        ports: match spec {
            Some(spec) => container_ports(spec)?,
            None => Vec::new(),
        },
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
        let mut names = Vec::new();
        for (j, p) in container.ports.iter().flatten().enumerate() {
            let at = |sub: &str| format!("{field}.ports[{j}].{sub}");
            let port = validate::port_number(p.container_port)
                .map_err(|issue| Invalid::at(at("containerPort"), issue))?;
            let protocol = validate::protocol(p.protocol.as_deref())
                .map_err(|issue| Invalid::at(at("protocol"), issue))?;
            let name = p.name.as_deref().filter(|n| !n.is_empty());
            if let Some(name) = name {
                port_name(name, &mut names).map_err(|issue| Invalid::at(at("name"), issue))?;
            }
            out.push(ContainerPort {
                name: name.map(str::to_owned),
                port,
                protocol,
            });
        }
    }
    Ok(out)
}

/// A container port's name, which named ports in policies resolve to: an
/// IANA_SVC_NAME, used once in its container (`names`: those met so far).
/// The API server rejects both; the same name in two containers only gets
/// a warning there, and passes here too.
fn port_name<'a>(name: &'a str, names: &mut Vec<&'a str>) -> Result<(), Issue> {
    validate::port_name(name)?;
    if names.contains(&name) {
        return Err(Issue::DuplicatePortName(name.to_owned()));
    }
    names.push(name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn typed(v: Value) -> core::Pod {
        serde_json::from_value(v).expect("a Pod")
    }

    #[test]
    fn pod_fields() {
        let p = typed(json!({
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
        }));
        let p = pod("shop", "web", &p).unwrap();
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
                "port name not an IANA_SVC_NAME",
                json!({"spec": {"containers": [{"name": "c", "ports": [
                    {"containerPort": 80, "name": "HTTP"}]}]}}),
                "spec.containers[0].ports[0].name",
            ),
            (
                "port name twice in one container",
                json!({"spec": {"containers": [{"name": "c", "ports": [
                    {"containerPort": 80, "name": "web"},
                    {"containerPort": 80, "name": "web", "protocol": "UDP"}]}]}}),
                "spec.containers[0].ports[1].name",
            ),
            (
                "sidecar protocol",
                json!({"spec": {"containers": [], "initContainers": [{"name": "s",
                    "restartPolicy": "Always", "ports": [{"containerPort": 1, "protocol": "tcp"}]}]}}),
                "spec.initContainers[0].ports[0].protocol",
            ),
        ];
        for (name, v, field) in cases {
            let err = pod("ns", "p", &typed(v)).expect_err(name);
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
            let p = typed(json!({"status": {"phase": phase}}));
            assert_eq!(pod("ns", "p", &p).unwrap().phase, want, "case: {phase}");
        }
    }
}
