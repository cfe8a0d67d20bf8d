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
    check_top(&value)?;
    serde_path_to_error::deserialize(value).map_err(type_error)
}

fn type_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> Invalid {
    let path = e.path().to_string();
    let field = if path == "." { String::new() } else { path };
    Invalid::at(field, Issue::Type(e.inner().to_string()))
}

/// A top-level field other than `apiVersion`, `kind`, `metadata`, `spec`
/// and `status` is an error (see [`typed`]).
fn check_top(value: &Value) -> Result<(), Invalid> {
    const TOP: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
    if let Value::Object(map) = value {
        if let Some(key) = map.keys().find(|k| !TOP.contains(&k.as_str())) {
            return Err(Invalid::at(
                key.clone(),
                Issue::Type(format!(
                    "unknown field {key:?}: the API server rejects it (does it belong under spec?)"
                )),
            ));
        }
    }
    Ok(())
}

/// `spec.ingress[0].form`, as our field paths (and the API) write it.
fn field_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        P::Map { parent, key } => match field_path(parent) {
            s if s.is_empty() => key.clone(),
            s => format!("{s}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            field_path(parent)
        }
    }
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

/// A NetworkPolicy document. Its `spec` is read strictly: a field the type
/// does not know (`spec.ingres`, `spec.ingress[0].form`) is refused, as the
/// API server's strict field validation refuses it. Ignoring it would
/// change what the policy means (a misspelt `ingress` makes a deny-all).
/// Pods and Namespaces are not read strictly: dumps of newer clusters carry
/// fields this release's types do not know, and none of them is policy.
pub(super) fn policy(value: Value) -> Result<Policy, Invalid> {
    check_top(&value)?;
    let mut unknown: Option<String> = None;
    let np: net::NetworkPolicy = {
        let mut note = |path: serde_ignored::Path<'_>| {
            let path = field_path(&path);
            if unknown.is_none() && path.starts_with("spec.") {
                unknown = Some(path);
            }
        };
        let de = serde_ignored::Deserializer::new(value, &mut note);
        serde_path_to_error::deserialize(de).map_err(type_error)?
    };
    if let Some(path) = unknown {
        let name = path.rsplit(['.', ']']).next().unwrap_or(&path).to_owned();
        return Err(Invalid::at(
            path,
            Issue::Type(format!("unknown field {name:?}: the API server rejects it")),
        ));
    }
    api::policy(&np)
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
            (
                "a misspelt spec field (ingress would become a deny-all)",
                json!({"metadata": {"name": "p"}, "spec": {"ingres": [{}]}}),
                "spec.ingres",
                "unknown field \"ingres\"",
            ),
            (
                "a misspelt field deep in a rule",
                json!({"metadata": {"name": "p"},
                       "spec": {"ingress": [{"form": [{"podSelector": {}}]}]}}),
                "spec.ingress[0].form",
                "unknown field \"form\"",
            ),
        ];
        for (case, v, field, msg) in cases {
            let err = policy(v.clone()).expect_err(case);
            assert_eq!(err.field, field, "case: {case}");
            assert!(err.issue.to_string().contains(msg), "case: {case}: {err}");
        }
    }

    #[test]
    fn unknown_fields_outside_a_policy_spec_are_tolerated() {
        let np = json!({"metadata": {"name": "p", "newField": 1},
                        "spec": {"podSelector": {}}, "status": {"x": 1}});
        assert!(policy(np).is_ok(), "metadata and status are not policy");
        let p = json!({"metadata": {"name": "web"},
                       "spec": {"containers": [{"name": "c", "futureField": true}]}});
        assert!(pod(p).is_ok(), "a pod from a newer cluster loads");
    }

    #[test]
    fn pod_without_containers() {
        let p = pod(json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n1"}})).unwrap();
        assert_eq!((&*p.namespace, p.node.as_deref()), ("default", Some("n1")));
        assert!(p.ports.is_empty());
    }
}
