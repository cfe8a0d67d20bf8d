//! Typed Kubernetes objects (`k8s-openapi` Namespaces, Pods and
//! NetworkPolicies, as the agent's watchers receive them) → `model` types,
//! validated as the API server validates them. This is the one conversion:
//! the manifest reader ([`crate::files`]) deserializes each document into
//! the same typed object and calls these functions, so an object reads the
//! same from a watch and from a file.
//!
//! - A missing or empty `metadata.name` is [`Issue::MissingName`]; a missing
//!   `metadata.namespace` of a Pod or NetworkPolicy is `default`, as with
//!   `kubectl apply`. A Namespace's own `metadata.namespace` is ignored.
//! - Names, namespaces and label keys and values are taken as they are:
//!   their syntax (DNS-1123, label value characters) is not checked, because
//!   no policy decision depends on it and the API server has checked the
//!   objects a watch delivers.
//! - Everything a policy decision reads is checked: IPs, CIDRs and `except`
//!   blocks, ports, port names, protocols, `endPort`, policy types, peers,
//!   selector operators. The first problem found is returned as an
//!   [`Invalid`] that names the field (`spec.ingress[0].from[1].ipBlock.cidr`).
//!
//! `k8s-openapi` types go no further than this module and `files`.

mod pod;
mod policy;
mod validate;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use crate::issue::Issue;
use nftpolicy_core::model;

/// A field of an object that is wrong, and how. `Display` is
/// `field: issue` (or just the issue when it concerns the whole object).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{issue}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct Invalid {
    /// The field path, e.g. `spec.ingress[0].from[1].ipBlock.cidr`; empty
    /// for the object itself.
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

/// A Namespace: its name and labels (the model adds
/// `kubernetes.io/metadata.name` as the API server does).
pub fn namespace(ns: &core::Namespace) -> Result<model::Namespace, Invalid> {
    let name = name(&ns.metadata)?;
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    Ok(model::Namespace::new(name, labels.into()))
}

/// A Pod: labels, node, IPs, hostNetwork, phase and container ports.
pub fn pod(p: &core::Pod) -> Result<model::Pod, Invalid> {
    let (namespace, name) = namespaced(&p.metadata)?;
    pod::pod(namespace, name, p)
}

/// A NetworkPolicy, with every rule, peer and port validated.
pub fn policy(np: &net::NetworkPolicy) -> Result<model::Policy, Invalid> {
    let (namespace, name) = namespaced(&np.metadata)?;
    policy::policy(namespace, name, np)
}

/// `metadata.name`, which must be present and not empty.
fn name(meta: &ObjectMeta) -> Result<&str, Invalid> {
    match meta.name.as_deref() {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(Invalid::at("metadata.name", Issue::MissingName)),
    }
}

/// `(namespace, name)` of a namespaced object; the namespace is `default`
/// when missing or empty.
fn namespaced(meta: &ObjectMeta) -> Result<(&str, &str), Invalid> {
    let namespace = meta.namespace.as_deref().filter(|ns| !ns.is_empty());
    Ok((namespace.unwrap_or("default"), name(meta)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity() {
        let p: core::Pod = serde_json::from_value(json!({"metadata": {"name": "web"}})).unwrap();
        let m = pod(&p).unwrap();
        assert_eq!((&*m.namespace, &*m.name), ("default", "web"));
        let ns: core::Namespace =
            serde_json::from_value(json!({"metadata": {"name": "shop", "namespace": "x"}}))
                .unwrap();
        let m = namespace(&ns).unwrap();
        assert_eq!(m.name, "shop");
        assert_eq!(m.labels["kubernetes.io/metadata.name"], "shop");
        // (case, metadata)
        for (case, meta) in [
            ("no name", json!({"namespace": "shop"})),
            ("empty name", json!({"name": "", "namespace": "shop"})),
        ] {
            let np: net::NetworkPolicy = serde_json::from_value(json!({"metadata": meta})).unwrap();
            let err = policy(&np).expect_err(case);
            assert_eq!(err.field, "metadata.name", "case: {case}");
            assert_eq!(err.issue, Issue::MissingName, "case: {case}");
            assert_eq!(err.to_string(), "metadata.name: is missing", "case: {case}");
        }
    }
}
