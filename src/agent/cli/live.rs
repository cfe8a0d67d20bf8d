//! The cluster's current objects for offline-style commands (`explain`
//! without `-f`): namespaces, pods and networkpolicies LISTed (never
//! watched, never written) through the kubeconfig or the in-cluster service
//! account, converted by the one conversion the agent and the manifest
//! reader use (`nftpolicy_source::api`). An object that does not convert is
//! reported on stderr and skipped, as a manifest file's would be.

use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use nftpolicy_core::model::Snapshot;
use nftpolicy_source::api;

use super::EXIT_ERROR;

/// Objects per LIST page.
const PAGE: u32 = 500;

/// The cluster's snapshot, reporting skipped objects on stderr.
/// `Err` carries the exit code.
pub fn load(kubeconfig: Option<&Path>) -> Result<(Snapshot, bool), u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            EXIT_ERROR
        })?;
    match rt.block_on(load_live(kubeconfig)) {
        Ok((snapshot, problems)) => {
            for p in &problems {
                eprintln!("warning: {p}");
            }
            Ok((snapshot, !problems.is_empty()))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(EXIT_ERROR)
        }
    }
}

/// Lists namespaces, pods and networkpolicies; returns the snapshot and a
/// line per object that was skipped.
pub async fn load_live(kubeconfig: Option<&Path>) -> Result<(Snapshot, Vec<String>), String> {
    let client = client(kubeconfig).await?;
    let mut snapshot = Snapshot::default();
    let mut problems = Vec::new();
    for (obj, res) in list::<Namespace>(&client).await? {
        match api::namespace(&obj) {
            Ok(ns) => snapshot.add_namespace(ns),
            Err(e) => problems.push(format!("namespace {res}: {e}; skipped")),
        }
    }
    for (obj, res) in list::<Pod>(&client).await? {
        match api::pod(&obj) {
            Ok(p) => snapshot.add_pod(p),
            Err(e) => problems.push(format!("pod {res}: {e}; skipped")),
        }
    }
    for (obj, res) in list::<NetworkPolicy>(&client).await? {
        match api::policy(&obj) {
            Ok(p) => snapshot.add_policy(p),
            Err(e) => problems.push(format!("networkpolicy {res}: {e}; skipped")),
        }
    }
    Ok((snapshot, problems))
}

async fn client(kubeconfig: Option<&Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        None => {
            return Client::try_default()
                .await
                .map_err(|e| format!("cannot build a Kubernetes client: {e}"))
        }
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
    };
    Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))
}

/// Every object of a kind in every namespace, page by page, with its
/// `ns/name` for messages.
async fn list<K>(client: &Client) -> Result<Vec<(K, String)>, String>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| format!("cannot list {}: {e}", K::plural(&())))?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        for obj in page.items {
            let name = match obj.namespace() {
                Some(ns) => format!("{ns}/{}", obj.name_any()),
                None => obj.name_any(),
            };
            out.push((obj, name));
        }
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}
