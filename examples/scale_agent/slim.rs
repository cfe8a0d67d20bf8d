//! A measurement of a proposed fix, not agent code: decode the LIST pages
//! of pods into a type that declares only what the agent keeps (what
//! `src/agent/k8s/trim.rs` keeps of a pod), so that serde skips the rest
//! (managedFields, env, volumes, conditions...) without building it, and
//! then convert through the same `nftpolicy_source::api::pod` by way of a
//! `k8s-openapi` Pod holding only those fields.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nftpolicy_core::model::Snapshot;
use serde::Deserialize;

#[derive(Deserialize)]
struct List {
    items: Vec<Pod>,
}

#[derive(Deserialize)]
struct Pod {
    metadata: Meta,
    spec: Option<Spec>,
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    ports: Option<Vec<core::ContainerPort>>,
    restart_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Option<Vec<core::PodIP>>,
}

fn container(c: Container) -> core::Container {
    core::Container {
        name: c.name,
        ports: c.ports,
        restart_policy: c.restart_policy,
        ..core::Container::default()
    }
}

fn typed(p: Pod) -> core::Pod {
    core::Pod {
        metadata: ObjectMeta {
            name: p.metadata.name,
            namespace: p.metadata.namespace,
            labels: p.metadata.labels,
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
    }
}

/// Reads pod LIST pages the slim way into `into`.
pub fn read_pod_pages(pages: &[Vec<u8>], into: &mut Snapshot) -> Result<(), String> {
    for page in pages {
        let l: List = serde_json::from_slice(page).map_err(|e| e.to_string())?;
        for p in l.items {
            let pod = nftpolicy_source::api::pod(&typed(p)).map_err(|e| e.to_string())?;
            into.add_pod(pod);
        }
    }
    Ok(())
}
