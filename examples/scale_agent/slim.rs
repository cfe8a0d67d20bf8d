//! Pod LIST pages decoded the agent's way: into
//! `kube_nftpolicy::k8s::SlimPod`, which declares only the fields policy
//! reads, then converted by the same `nftpolicy_source::api::pod`. The
//! breakdown times this against decoding whole `k8s-openapi` pods.

use kube_nftpolicy::k8s::SlimPod;
use nftpolicy_core::model::Snapshot;
use serde::Deserialize;

#[derive(Deserialize)]
struct List {
    items: Vec<SlimPod>,
}

/// Reads pod LIST pages the slim way into `into`.
pub fn read_pod_pages(pages: &[Vec<u8>], into: &mut Snapshot) -> Result<(), String> {
    for page in pages {
        let l: List = serde_json::from_slice(page).map_err(|e| e.to_string())?;
        for p in l.items {
            let pod = nftpolicy_source::api::pod(&p.0).map_err(|e| e.to_string())?;
            into.add_pod(pod);
        }
    }
    Ok(())
}
