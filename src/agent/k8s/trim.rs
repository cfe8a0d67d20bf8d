//! Trimming on arrival, so a 100,000-pod cluster holds labels and
//! addresses, not whole pod specs, and the conversion of a trimmed object
//! into `model` types.
//!
//! Pods are trimmed by decoding: [`SlimPod`] declares only the fields the
//! conversion reads, so serde skips the rest of the JSON (managedFields,
//! env, volumes, conditions: most of a pod's 4 KiB) without building it.
//! Namespaces and policies are small and few; they decode whole and are
//! trimmed in the stream (`modify`).
//!
//! The conversion is `nftpolicy_source::api`, straight from the typed
//! object: the manifest reader ends in the same functions, so an object from
//! the API is validated exactly as the same object in a file, and the agent
//! and `kube-nftpolicy render` agree on every object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{self as core, Namespace as ApiNamespace, Pod as ApiPod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

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

/// A `v1` Pod as the agent's watcher decodes it: a `k8s-openapi` Pod that
/// holds only what `nftpolicy_source::api::pod` reads (name, namespace,
/// labels; nodeName, hostNetwork, the ports of containers and init
/// containers and the restart policy that tells sidecars apart; phase,
/// podIP, podIPs) and what the watcher and the stores read
/// (resourceVersion, generateName). Everything else is skipped while
/// decoding, not built and then dropped: at 100,000 pods that is 0.9 s of
/// decoding instead of 3.9 s. Converted by the same `api::pod` as a whole
/// Pod, so an object reads (and fails, naming the same field) as before.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "wire::Pod")]
pub struct SlimPod(pub ApiPod);

impl k8s_openapi::Resource for SlimPod {
    const API_VERSION: &'static str = <ApiPod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <ApiPod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <ApiPod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <ApiPod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <ApiPod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <ApiPod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for SlimPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.0.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

/// The wire form of [`SlimPod`]: the declared fields, as the API names
/// them; serde ignores every other one. Port and pod IP entries decode as
/// the `k8s-openapi` types (they are small and all of them is read).
mod wire {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Pod {
        #[serde(default)]
        metadata: Meta,
        spec: Option<Spec>,
        status: Option<Status>,
    }

    #[derive(Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        name: Option<String>,
        generate_name: Option<String>,
        namespace: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        resource_version: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Spec {
        node_name: Option<String>,
        host_network: Option<bool>,
        #[serde(default)]
        containers: Vec<Container>,
        init_containers: Option<Vec<Container>>,
    }

    /// No name: the conversion does not read it.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Container {
        ports: Option<Vec<core::ContainerPort>>,
        restart_policy: Option<String>,
    }

    #[derive(Deserialize)]
    struct Status {
        phase: Option<String>,
        #[serde(rename = "podIP")]
        pod_ip: Option<String>,
        #[serde(rename = "podIPs")]
        pod_ips: Option<Vec<core::PodIP>>,
    }

    fn container(c: Container) -> core::Container {
        core::Container {
            ports: c.ports,
            restart_policy: c.restart_policy,
            ..core::Container::default()
        }
    }

    impl From<Pod> for SlimPod {
        fn from(p: Pod) -> Self {
            let m = p.metadata;
            SlimPod(ApiPod {
                metadata: ObjectMeta {
                    name: m.name,
                    generate_name: m.generate_name,
                    namespace: m.namespace,
                    labels: m.labels,
                    resource_version: m.resource_version,
                    ..ObjectMeta::default()
                },
                spec: p.spec.map(|s| core::PodSpec {
                    node_name: s.node_name,
                    host_network: s.host_network,
                    containers: s.containers.into_iter().map(container).collect(),
                    init_containers: s
                        .init_containers
                        .map(|v| v.into_iter().map(container).collect()),
                    ..core::PodSpec::default()
                }),
                status: p.status.map(|s| core::PodStatus {
                    phase: s.phase,
                    pod_ip: s.pod_ip,
                    pod_ips: s.pod_ips,
                    ..core::PodStatus::default()
                }),
            })
        }
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

impl Convert for SlimPod {
    fn convert(&self) -> Result<Object, Invalid> {
        api::pod(&self.0).map(Object::Pod)
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

    /// Decoded slim and whole: the slim pod holds only what is read, and
    /// both convert to the same model pod, or fail at the same field.
    fn both(v: serde_json::Value) -> (SlimPod, Result<Object, Invalid>, Result<Object, Invalid>) {
        let slim: SlimPod = serde_json::from_value(v.clone()).unwrap();
        let whole: ApiPod = serde_json::from_value(v).unwrap();
        let (s, w) = (slim.convert(), whole.convert());
        (slim, s, w)
    }

    #[test]
    fn slim_pod_converts_like_a_file() {
        let (slim, s, w) = both(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                         "resourceVersion": "42", "uid": "u",
                         "annotations": {"big": "x"}, "managedFields": [{"manager": "kubelet"}]},
            "spec": {"nodeName": "n1", "hostNetwork": false,
                     "containers": [{"name": "c", "image": "nginx",
                     "env": [{"name": "A", "value": "b"}],
                     "ports": [{"containerPort": 80, "name": "http"}]}],
                     "initContainers": [
                         {"name": "init", "ports": [{"containerPort": 1, "name": "x"}]},
                         {"name": "sidecar", "restartPolicy": "Always",
                          "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"}]}],
                     "volumes": [{"name": "v", "emptyDir": {}}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        let p = &slim.0;
        assert!(p.metadata.annotations.is_none() && p.metadata.managed_fields.is_none());
        assert_eq!(
            p.metadata.resource_version.as_deref(),
            Some("42"),
            "the watcher resumes from it"
        );
        let spec = p.spec.as_ref().unwrap();
        assert!(spec.volumes.is_none());
        let c = &spec.containers[0];
        assert!(c.image.is_none() && c.env.is_none() && c.ports.is_some());
        assert!(p.status.as_ref().unwrap().conditions.is_none());
        assert_eq!(s, w);
        let Ok(Object::Pod(m)) = s else {
            panic!("pod did not convert")
        };
        assert_eq!(&*m.namespace, "shop");
        assert_eq!(m.node.as_deref(), Some("n1"));
        assert_eq!(m.ips.len(), 2);
        let names: Vec<_> = m.ports.iter().map(|c| c.name.as_deref()).collect();
        assert_eq!(names, [Some("http"), Some("dns")], "plain init skipped");
    }

    #[test]
    fn slim_pod_fails_like_a_file() {
        // (case, document, field)
        let cases = [
            (
                "no name",
                json!({"metadata": {"generateName": "web-"}}),
                "metadata.name",
            ),
            (
                "bad podIPs entry",
                json!({"metadata": {"name": "p"},
                       "status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "nope"}]}}),
                "status.podIPs[1].ip",
            ),
            (
                "bad podIP",
                json!({"metadata": {"name": "p"}, "status": {"podIP": "1.2.3"}}),
                "status.podIP",
            ),
            (
                "sidecar port name",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [],
                       "initContainers": [{"name": "s", "restartPolicy": "Always",
                       "ports": [{"containerPort": 1, "name": "HTTP"}]}]}}),
                "spec.initContainers[0].ports[0].name",
            ),
            (
                "port name twice",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
                       "ports": [{"containerPort": 80, "name": "web"},
                                 {"containerPort": 81, "name": "web"}]}]}}),
                "spec.containers[0].ports[1].name",
            ),
        ];
        for (case, v, field) in cases {
            let (slim, s, w) = both(v);
            let err = s.expect_err(case);
            assert_eq!(err.field, field, "case: {case}");
            assert_eq!(Err(err), w, "case: {case}");
            assert_eq!(
                kube::ResourceExt::name_any(&slim),
                kube::ResourceExt::name_any(&slim.0),
                "case: {case}: the stores key invalid pods by it"
            );
        }
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
