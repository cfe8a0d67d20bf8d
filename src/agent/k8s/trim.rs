//! Trimming on arrival (applied to the watcher stream through `modify`, so
//! a 10,000-pod cluster holds labels and addresses, not whole pod specs) and
//! the conversion of a trimmed object into `model` types.
//!
//! The conversion reuses the manifest reader (`files::Loader::add_value`): an object
//! from the API is validated exactly as the same object in a file, so the
//! agent and `kube-nftpolicy render` agree on every object.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Namespace as ApiNamespace, Pod as ApiPod};
use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use super::Kind;
use nftpolicy_core::model::{Namespace, Pod, Policy};
use nftpolicy_source::files::Loader;

/// An object converted to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Object {
    /// A namespace.
    Namespace(Namespace),
    /// A pod.
    Pod(Pod),
    /// A policy.
    Policy(Policy),
}

/// Drops what no policy reads from any object's metadata.
fn metadata(m: &mut ObjectMeta) {
    m.managed_fields = None;
    m.annotations = None;
    m.owner_references = None;
    m.finalizers = None;
}

/// Keeps labels, node, hostNetwork, container ports (and the restart policy
/// that tells sidecars apart), phase and IPs.
pub(super) fn pod(p: &mut ApiPod) {
    metadata(&mut p.metadata);
    let keep = |c: Container| Container {
        name: c.name,
        ports: c.ports,
        restart_policy: c.restart_policy,
        ..Container::default()
    };
    if let Some(spec) = p.spec.take() {
        p.spec = Some(PodSpec {
            node_name: spec.node_name,
            host_network: spec.host_network,
            containers: spec.containers.into_iter().map(keep).collect(),
            init_containers: spec
                .init_containers
                .map(|v| v.into_iter().map(keep).collect()),
            ..PodSpec::default()
        });
    }
    if let Some(status) = p.status.take() {
        p.status = Some(PodStatus {
            phase: status.phase,
            pod_ip: status.pod_ip,
            pod_ips: status.pod_ips,
            ..PodStatus::default()
        });
    }
}

/// Keeps name and labels.
pub(super) fn namespace(n: &mut ApiNamespace) {
    metadata(&mut n.metadata);
    n.spec = None;
    n.status = None;
}

/// Keeps the spec (all of it is policy).
pub(super) fn policy(p: &mut NetworkPolicy) {
    metadata(&mut p.metadata);
}

/// Converts a (trimmed) API object of `kind` through the manifest reader.
/// `Err` is one line: the field and what is wrong with it.
pub(super) fn convert<K: Serialize>(kind: Kind, obj: &K) -> Result<Object, String> {
    let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    let mut loader = Loader::new();
    loader.add_value(Path::new("api"), value);
    let loaded = loader.finish();
    if let Some(p) = loaded.problems.into_iter().next() {
        return Err(match p.field {
            Some(field) => format!("{field}: {}", p.issue),
            None => p.issue.to_string(),
        });
    }
    let s = loaded.snapshot;
    let object = match kind {
        Kind::Namespace => s.namespaces.into_values().next().map(Object::Namespace),
        Kind::Pod => s.pods.into_values().next().map(Object::Pod),
        Kind::NetworkPolicy => s.policies.into_values().next().map(Object::Policy),
    };
    object.ok_or_else(|| format!("not a {kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trimmed_pod_converts_like_a_file() {
        let mut p: ApiPod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                         "annotations": {"big": "x"}, "managedFields": [{"manager": "kubelet"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx",
                     "env": [{"name": "A", "value": "b"}],
                     "ports": [{"containerPort": 80, "name": "http"}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        pod(&mut p);
        assert!(p.metadata.annotations.is_none() && p.metadata.managed_fields.is_none());
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert!(c.image.is_none() && c.env.is_none() && c.ports.is_some());
        assert!(p.status.as_ref().unwrap().conditions.is_none());
        let Ok(Object::Pod(m)) = convert(Kind::Pod, &p) else {
            panic!("pod did not convert")
        };
        assert_eq!(m.namespace, "shop");
        assert_eq!(m.node.as_deref(), Some("n1"));
        assert_eq!(
            m.named_port("http", nftpolicy_core::model::Protocol::Tcp)
                .map(|p| p.get()),
            Some(80)
        );
    }

    #[test]
    fn invalid_policy_names_the_field() {
        let np: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}
        }))
        .unwrap();
        let err = convert(Kind::NetworkPolicy, &np).unwrap_err();
        assert!(
            err.starts_with("spec.ingress[0].from[0].ipBlock.cidr"),
            "{err}"
        );
    }
}
