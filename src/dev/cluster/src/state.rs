//! The cluster's state on disk, shared by the node runners, the prober and
//! the tests: where each pod's network namespace is and which addresses the
//! CNI plugins gave it.
//!
//! ```text
//! <cluster dir>/nodes/<node>/pods/<namespace>_<pod>.json   one PodRecord
//! <cluster dir>/nodes/<node>/ipam/                          host-local's leases
//! ```
//!
//! A record is written after the pod's network is up and removed before it
//! is torn down, so a record always names a live namespace.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// A pod whose network the runner has set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
    /// The node it runs on.
    pub node: String,
    /// Its network namespace (`/run/netns/<netns>`).
    pub netns: String,
    /// Its addresses, as the CNI plugins gave them (IPv4 first).
    pub ips: Vec<IpAddr>,
}

/// `<dir>/nodes/<node>`.
pub fn node_dir(dir: &Path, node: &str) -> PathBuf {
    dir.join("nodes").join(node)
}

fn record_path(dir: &Path, node: &str, namespace: &str, name: &str) -> PathBuf {
    node_dir(dir, node)
        .join("pods")
        .join(format!("{namespace}_{name}.json"))
}

/// Writes `record` (atomically: a reader never sees half of it).
pub fn write(dir: &Path, record: &PodRecord) -> Result<(), Error> {
    let path = record_path(dir, &record.node, &record.namespace, &record.name);
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(record).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// Removes the record of `namespace/name` on `node`, if any.
pub fn remove(dir: &Path, node: &str, namespace: &str, name: &str) {
    let _ = std::fs::remove_file(record_path(dir, node, namespace, name));
}

/// Every record of every node.
pub fn all(dir: &Path) -> Vec<PodRecord> {
    let mut out = Vec::new();
    let Ok(nodes) = std::fs::read_dir(dir.join("nodes")) else {
        return out;
    };
    for node in nodes.flatten() {
        let Ok(pods) = std::fs::read_dir(node.path().join("pods")) else {
            continue;
        };
        for pod in pods.flatten() {
            let path = pod.path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Some(r) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<PodRecord>(&t).ok())
                {
                    out.push(r);
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// The record of `namespace/name`, on whichever node runs it.
pub fn find(dir: &Path, namespace: &str, name: &str) -> Option<PodRecord> {
    all(dir)
        .into_iter()
        .find(|r| r.namespace == namespace && r.name == name)
}
