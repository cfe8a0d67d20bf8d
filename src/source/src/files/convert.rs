//! A document's object (a `serde_json::Value`) → the typed `k8s-openapi`
//! object, with the exact field path of any type error, → `model` types
//! through [`crate::api`], the conversion the agent's watchers use too.
//!
//! What is here is only what a file needs and an API object never does:
//! the strict top-level field check, and a Pod's `spec.containers` made
//! optional. `k8s-openapi` types go no further: callers get `model` values
//! or an [`Invalid`].

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{self, Invalid};
use crate::issue::Issue;
use nftpolicy_core::model::{Namespace, Pod, Policy};

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

/// A Namespace document.
pub(super) fn namespace(value: Value) -> Result<Namespace, Invalid> {
    api::namespace(&typed::<core::Namespace>(value)?)
}

/// A Pod document. `spec.containers` may be left out in files (the API
/// requires it, but hand-written fixtures for policy tests rarely bother).
pub(super) fn pod(mut value: Value) -> Result<Pod, Invalid> {
    if let Some(Value::Object(spec)) = value.get_mut("spec") {
        spec.entry("containers")
            .or_insert_with(|| Value::Array(Vec::new()));
    }
    api::pod(&typed::<core::Pod>(value)?)
}

/// A NetworkPolicy document.
pub(super) fn policy(value: Value) -> Result<Policy, Invalid> {
    api::policy(&typed::<net::NetworkPolicy>(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_errors_name_the_field() {
        // (case, document, field, message substring)
        let cases = [
            (
                "labels of the wrong type",
                json!({"metadata": {"name": "p", "labels": {"a": 1}}}),
                "metadata.labels.a",
                "invalid type: integer `1`",
            ),
            (
                "a field outside spec",
                json!({"metadata": {"name": "p"}, "ingress": []}),
                "ingress",
                "unknown field \"ingress\"",
            ),
            (
                "port of the wrong type",
                json!({"metadata": {"name": "p"},
                       "spec": {"ingress": [{"ports": [{"port": true}]}]}}),
                "spec.ingress[0].ports[0].port",
                "invalid type: boolean `true`",
            ),
        ];
        for (case, v, field, msg) in cases {
            let err = policy(v.clone()).expect_err(case);
            assert_eq!(err.field, field, "case: {case}");
            assert!(err.issue.to_string().contains(msg), "case: {case}: {err}");
        }
    }

    #[test]
    fn pod_without_containers() {
        let p = pod(json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n1"}})).unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.node.as_deref()),
            ("default", Some("n1"))
        );
        assert!(p.ports.is_empty());
    }
}
