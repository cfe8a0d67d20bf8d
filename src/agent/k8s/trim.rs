//! Trimming on arrival (applied to the watcher stream through `modify`, so
//! a 10,000-pod cluster holds labels and addresses, not whole pod specs) and
//! the conversion of a trimmed object into `model` types.
//!
//! The conversion is `nftpolicy_source::api`, straight from the typed
//! object: the manifest reader ends in the same functions, so an object from
//! the API is validated exactly as the same object in a file, and the agent
//! and `kube-nftpolicy render` agree on every object.

use k8s_openapi::api::core::v1::{Container, Namespace as ApiNamespace, Pod as ApiPod};
use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use nftpolicy_core::model::{Namespace, Pod, Policy};
use nftpolicy_source::api::{self, Invalid};

/// An object converted to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
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

/// A watched kind that converts to the model, through
/// [`nftpolicy_source::api`].
pub trait Convert {
    /// The model object, or the field that is wrong and how.
    fn convert(&self) -> Result<Object, Invalid>;
}

impl Convert for ApiNamespace {
    fn convert(&self) -> Result<Object, Invalid> {
        api::namespace(self).map(Object::Namespace)
    }
}

impl Convert for ApiPod {
    fn convert(&self) -> Result<Object, Invalid> {
        api::pod(self).map(Object::Pod)
    }
}

impl Convert for NetworkPolicy {
    fn convert(&self) -> Result<Object, Invalid> {
        api::policy(self).map(Object::Policy)
    }
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
        let Ok(Object::Pod(m)) = p.convert() else {
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
        let err = np.convert().unwrap_err();
        assert_eq!(err.field, "spec.ingress[0].from[0].ipBlock.cidr");
        assert_eq!(
            err.to_string(),
            "spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/33\" is not a CIDR (address/prefix)"
        );
    }
}
