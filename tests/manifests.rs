//! Every file of `manifests/` parses into k8s-openapi types, and the RBAC
//! rules grant exactly what the agent reads: get/list/watch on the
//! resources of the k8s-openapi types `k8s/watch.rs` watches, and on Nodes
//! (their pod CIDRs), nothing more.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::Resource;
use serde_json::Value;

#[derive(Default)]
struct Manifests {
    accounts: Vec<ServiceAccount>,
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    daemonsets: Vec<DaemonSet>,
}

fn typed<T: serde::de::DeserializeOwned>(file: &str, v: Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn load() -> Manifests {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {dir}");
    let mut m = Manifests::default();
    for path in files {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for v in docs {
            match v["kind"].as_str() {
                Some("ServiceAccount") => m.accounts.push(typed(&file, v)),
                Some("ClusterRole") => m.roles.push(typed(&file, v)),
                Some("ClusterRoleBinding") => m.bindings.push(typed(&file, v)),
                Some("DaemonSet") => m.daemonsets.push(typed(&file, v)),
                other => panic!("{file}: unexpected kind {other:?}"),
            }
        }
    }
    m
}

/// (apiGroup, resource, verb) the agent needs: the watched kinds, and
/// Nodes for their pod CIDRs.
fn needed() -> BTreeSet<(String, String, String)> {
    fn of<K: Resource>() -> Vec<(String, String, String)> {
        ["get", "list", "watch"]
            .map(|v| {
                (
                    K::GROUP.to_owned(),
                    K::URL_PATH_SEGMENT.to_owned(),
                    v.to_owned(),
                )
            })
            .to_vec()
    }
    [
        of::<Pod>(),
        of::<Namespace>(),
        of::<NetworkPolicy>(),
        of::<Node>(),
    ]
    .concat()
    .into_iter()
    .collect()
}

#[test]
fn rbac_grants_exactly_what_the_watchers_use() {
    let m = load();
    assert_eq!(m.roles.len(), 1);
    let role = &m.roles[0];
    let mut granted = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for g in rule.api_groups.iter().flatten() {
            for r in rule.resources.iter().flatten() {
                for v in &rule.verbs {
                    assert_ne!(v, "*", "no wildcard verbs");
                    granted.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    assert_eq!(granted, needed());

    let sa = &m.accounts[0];
    let b = &m.bindings[0];
    assert_eq!(b.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&b.role_ref.name), role.metadata.name.as_ref());
    let subject = &b.subjects.as_ref().unwrap()[0];
    assert_eq!(subject.kind, "ServiceAccount");
    assert_eq!(Some(&subject.name), sa.metadata.name.as_ref());
    assert_eq!(subject.namespace, sa.metadata.namespace);
}

#[test]
fn daemonset_runs_everywhere_with_least_privilege() {
    let m = load();
    let ds = &m.daemonsets[0];
    assert_eq!(ds.metadata.namespace.as_deref(), Some("kube-system"));
    let spec = ds.spec.as_ref().unwrap();
    let strategy = spec.update_strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(pod.service_account_name, m.accounts[0].metadata.name);
    let tolerations = pod.tolerations.as_ref().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none()),
        "tolerates every taint"
    );
    let c = &pod.containers[0];
    let args = c.args.as_ref().unwrap();
    assert_eq!(args[0], "controller");
    let sc = c.security_context.as_ref().unwrap();
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.add.as_deref(), Some(&["NET_ADMIN".to_owned()][..]));
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let env = c.env.as_ref().unwrap();
    let node = env.iter().find(|e| e.name == "NODE_NAME").unwrap();
    let field = node
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap();
    assert_eq!(field.field_path, "spec.nodeName");
    // Probes on the port the agent listens on.
    let addr = args
        .iter()
        .find_map(|a| a.strip_prefix("--metrics-addr="))
        .unwrap();
    let port: i32 = addr.rsplit(':').next().unwrap().parse().unwrap();
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        let k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) = get.port else {
            panic!("numeric probe port")
        };
        assert_eq!(p, port);
    }
    let res = c.resources.as_ref().unwrap();
    assert!(res
        .requests
        .as_ref()
        .is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")));
    assert!(res
        .limits
        .as_ref()
        .is_some_and(|r| r.contains_key("memory")));
}
