//! Manifest loading (`nftpolicy_source::files`): real kubectl dumps, the file
//! shapes we accept, and one expected `Problem` per kind of bad input, with
//! the rest of the file still loaded.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nftpolicy_core::model::{
    NamespaceScope, NamespacedName, Operator, Peer, PodPhase, PolicyTypes, PortRef, PortSpec,
    Protocol, Rule, Selector,
};
use nftpolicy_source::files::{self, Format, Issue, LoadError, Loaded, Loader, Skipped};

mod files_cases;

use files_cases::{bad_cases, GOOD_NS, GOOD_POLICY};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/files")
        .join(name)
}

fn load_yaml(text: &str) -> Loaded {
    let mut loader = Loader::new();
    loader.add_text(Path::new("demo.yaml"), text, Format::Yaml);
    loader.finish()
}

fn key(ns: &str, name: &str) -> NamespacedName {
    NamespacedName::new(ns, name)
}

fn kubectl_dump() -> Loaded {
    let loaded = files::load(&[data("kubectl-dump.yaml")]).expect("readable");
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    loaded
}

#[test]
fn kubectl_dump_namespaces_and_skipped_kinds() {
    let loaded = kubectl_dump();
    let s = &loaded.snapshot;
    assert_eq!(s.namespaces.len(), 2);
    assert_eq!(s.namespaces["data"].labels["tier"], "storage");
    assert_eq!(
        s.namespaces["data"].labels["kubernetes.io/metadata.name"],
        "data"
    );
    let ignored: Vec<_> = loaded
        .ignored
        .iter()
        .map(|(k, n)| (k.as_str(), *n))
        .collect();
    assert_eq!(ignored, [("Deployment (apps/v1)", 1), ("Service (v1)", 1)]);
}

#[test]
fn kubectl_dump_pods() {
    let loaded = kubectl_dump();
    let s = &loaded.snapshot;
    assert_eq!(s.pods.len(), 4);
    let web = &s.pods[&key("shop", "web-5c7d9f8b6d-x2k4p")];
    let ips: Vec<IpAddr> = ["10.244.1.7", "fd00:10:244:1::7"]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();
    assert_eq!(web.ips, ips, "dual-stack podIPs, in order");
    assert_eq!(web.node.as_deref(), Some("node-a"));
    assert_eq!(web.labels["app"], "web");
    assert_eq!(
        web.named_port("http", Protocol::Tcp).map(|p| p.get()),
        Some(8080)
    );
    assert_eq!(
        web.named_port("metrics", Protocol::Tcp).map(|p| p.get()),
        Some(9090)
    );
    assert!(s.pods[&key("shop", "node-exporter-8k2mq")].host_network);
    assert_eq!(
        s.pods[&key("shop", "migrate-7rj9d")].phase,
        PodPhase::Finished
    );
    let pg = &s.pods[&key("data", "postgres-0")];
    assert_eq!(
        pg.named_port("pgbouncer", Protocol::Tcp).map(|p| p.get()),
        Some(6432),
        "sidecar"
    );
}

#[test]
fn kubectl_dump_policies() {
    let loaded = kubectl_dump();
    let s = &loaded.snapshot;
    assert_eq!(s.policies.len(), 3);
    let deny = &s.policies[&key("shop", "default-deny")];
    assert!(deny.pod_selector.is_everything());
    let both = PolicyTypes {
        ingress: true,
        egress: true,
    };
    assert_eq!(deny.policy_types, Some(both));
    let allow_web = &s.policies[&key("shop", "allow-web")];
    let want_rule0 = Rule {
        peers: vec![
            Peer::Pods {
                namespaces: NamespaceScope::Matching(Selector::labels([(
                    "kubernetes.io/metadata.name",
                    "shop",
                )])),
                pods: Selector::labels([("app", "frontend")]),
            },
            Peer::IpBlock {
                cidr: "192.168.0.0/16".parse().unwrap(),
                except: vec!["192.168.10.0/24".parse().unwrap()],
            },
        ],
        ports: vec![PortSpec {
            protocol: Protocol::Tcp,
            port: Some(PortRef::Name("http".into())),
            end_port: None,
        }],
    };
    assert_eq!(allow_web.ingress[0], want_rule0);
    let prometheus = Selector::everything().with("app", Operator::In(["prometheus".into()].into()));
    let want_peer = Peer::Pods {
        namespaces: NamespaceScope::Own,
        pods: prometheus,
    };
    assert_eq!(allow_web.ingress[1].peers, vec![want_peer]);
    let from_shop = &s.policies[&key("data", "allow-from-shop")];
    assert_eq!(
        from_shop.policy_types, None,
        "omitted policyTypes stay None"
    );
    let range = &from_shop.egress[0].ports[0];
    assert_eq!(
        (range.protocol, range.end_port.map(|p| p.get())),
        (Protocol::Udp, Some(32768))
    );
}

#[test]
fn multi_document_yaml_loads() {
    let path = data("multi.yaml");
    let loaded = files::load(std::slice::from_ref(&path)).expect("readable");
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    let s = &loaded.snapshot;
    assert!(s.namespaces.contains_key("shop"));
    let web = &s.pods[&key("shop", "web")];
    assert!(web.ports.is_empty(), "a pod without spec.containers loads");
    let deny = &s.policies[&key("default", "deny-all")];
    assert!(deny.ingress.is_empty() && deny.pod_selector.is_everything());
    assert_eq!(loaded.ignored.get("ConfigMap (v1)"), Some(&1));
}

#[test]
fn json_list_loads() {
    let loaded = files::load(&[data("policies.json")]).expect("readable");
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    let p = &loaded.snapshot.policies[&key("shop", "allow-dns")];
    assert_eq!(
        p.policy_types,
        Some(PolicyTypes {
            ingress: false,
            egress: true
        })
    );
    assert_eq!(p.egress[0].ports.len(), 2);
    let Peer::Pods { namespaces, .. } = &p.egress[0].peers[0] else {
        panic!("pods peer")
    };
    assert_eq!(
        namespaces,
        &NamespaceScope::Matching(Selector::everything())
    );
}

#[test]
fn directory_loads_manifests_only() {
    let loaded = files::load(&[data("dir")]).expect("readable");
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    let s = &loaded.snapshot;
    let namespaces: Vec<&str> = s.namespaces.keys().map(String::as_str).collect();
    assert_eq!(namespaces, ["shop"], "no hidden file, no subdirectory");
    assert_eq!(
        s.pods[&key("shop", "web")].ips.len(),
        1,
        "PodList items without kind"
    );
    assert!(
        s.policies.contains_key(&key("shop", "deny")),
        "JSON file in a directory"
    );
}

#[test]
fn duplicates_across_files_name_the_first_file() {
    let loaded = files::load(&[data("dir"), data("dir/10-namespaces.yaml")]).expect("readable");
    assert_eq!(loaded.problems.len(), 1, "{:#?}", loaded.problems);
    let p = &loaded.problems[0];
    assert!(p.file.ends_with("dir/10-namespaces.yaml"));
    assert!(
        p.message().contains("10-namespaces.yaml: document 0"),
        "{p}"
    );
}

#[test]
fn missing_path_is_fatal() {
    let err = files::load(&[data("no-such-file.yaml")]).expect_err("missing");
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
    assert!(err.to_string().contains("no-such-file.yaml"), "{err}");
}

#[test]
fn problem_display_is_one_line_with_everything() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n---\n\
        apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
        metadata: {name: allow-web, namespace: shop}\n\
        spec: {ingress: [{ports: [{port: 80, endPort: 79}]}]}\n";
    let mut loader = Loader::new();
    loader.add_text(Path::new("manifests/demo.yaml"), text, Format::Yaml);
    let loaded = loader.finish();
    assert_eq!(loaded.problems.len(), 1);
    assert_eq!(
        loaded.problems[0].to_string(),
        "manifests/demo.yaml: document 2: NetworkPolicy shop/allow-web: \
         spec.ingress[0].ports[0].endPort: 79 is below port 80; policy skipped"
    );
    assert!(loaded.snapshot.namespaces.contains_key("shop"));
}

#[test]
fn each_bad_input_gives_one_problem_and_the_rest_loads() {
    for (case, bad, want) in bad_cases() {
        let text = format!("{GOOD_NS}---\n{bad}---\n{GOOD_POLICY}");
        let loaded = load_yaml(&text);
        assert_eq!(
            loaded.problems.len(),
            1,
            "case: {case}: {:#?}",
            loaded.problems
        );
        let p = &loaded.problems[0];
        let shown = format!("case: {case}: {p}");
        assert_eq!(p.file, Path::new("demo.yaml"), "{shown}");
        assert_eq!(p.document, Some(1), "{shown}");
        assert_eq!(p.item, want.item, "{shown}");
        assert_eq!(p.kind.as_deref(), want.kind, "{shown}");
        assert_eq!(p.namespace.as_deref(), want.namespace, "{shown}");
        assert_eq!(p.name.as_deref(), want.name, "{shown}");
        assert_eq!(p.field.as_deref(), want.field, "{shown}");
        assert!(p.message().contains(want.message), "{shown}");
        assert!(!p.to_string().contains('\n'), "{shown}");
        let s = &loaded.snapshot;
        assert!(
            s.policies.contains_key(&key("shop", "ok")),
            "{shown}: later document loads"
        );
        assert_eq!(
            s.namespaces["shop"].labels.len(),
            1,
            "{shown}: first namespace kept"
        );
        assert!(
            !s.policies.contains_key(&key("shop", "bad")),
            "{shown}: bad policy skipped"
        );
    }
}

#[test]
fn list_item_problem_skips_only_that_item() {
    let (_, bad, _) = bad_cases()
        .into_iter()
        .find(|(case, ..)| case.starts_with("bad List item"))
        .expect("case exists");
    let loaded = load_yaml(&bad);
    assert!(loaded.snapshot.pods.contains_key(&key("shop", "a")));
    assert!(!loaded.snapshot.pods.contains_key(&key("shop", "b")));
    assert!(loaded.problems[0]
        .to_string()
        .contains("document 0, item 1: Pod shop/b"));
}

#[test]
fn malformed_yaml_reports_the_file_line() {
    let loaded = load_yaml(
        "kind: Namespace\nmetadata: {name: m}\n---\n\
         kind: Pod\nmetadata: [x\n---\n\
         kind: Namespace\nmetadata: {name: nn}\n",
    );
    assert_eq!(loaded.problems.len(), 1, "{:#?}", loaded.problems);
    let p = &loaded.problems[0];
    assert_eq!((p.document, p.skipped), (Some(1), Skipped::Document));
    assert!(
        p.message().contains("line 5"),
        "line counted in the file: {p}"
    );
    assert!(loaded.snapshot.namespaces.contains_key("nn"));
}

#[test]
fn json_syntax_error_skips_the_rest_of_the_file() {
    let mut loader = Loader::new();
    let text = r#"{"kind": "Namespace", "metadata": {"name": "a"}}
                  {"kind": "Namespace", "metadata": {"name": }}
                  {"kind": "Namespace", "metadata": {"name": "c"}}"#;
    loader.add_text(Path::new("x.json"), text, Format::Json);
    let loaded = loader.finish();
    assert_eq!(loaded.problems.len(), 1);
    let p = &loaded.problems[0];
    assert_eq!((p.document, p.skipped), (Some(1), Skipped::RestOfFile));
    assert!(p.to_string().ends_with("rest of the file skipped"), "{p}");
    let names: Vec<&String> = loaded.snapshot.namespaces.keys().collect();
    assert_eq!(names, ["a"]);
}

#[test]
fn encodings() {
    let text = "kind: Namespace\nmetadata: {name: utf16}\n";
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(text.replace("utf16", "bom").bytes());
    let mut loader = Loader::new();
    loader.add_bytes(Path::new("a.yaml"), &utf16, Format::Yaml);
    loader.add_bytes(Path::new("b.yaml"), &bom, Format::Yaml);
    loader.add_bytes(
        Path::new("c.yaml"),
        b"kind: Namespace\nmetadata: {name: \xff}\n",
        Format::Yaml,
    );
    let loaded = loader.finish();
    let names: Vec<&String> = loaded.snapshot.namespaces.keys().collect();
    assert_eq!(names, ["bom", "utf16"]);
    assert_eq!(loaded.problems.len(), 1);
    let p = &loaded.problems[0];
    assert!(matches!(p.issue, Issue::NotText(_)), "{p}");
    assert_eq!((p.document, p.skipped), (None, Skipped::File));
    assert!(p.to_string().starts_with("c.yaml: not UTF-8 text"), "{p}");
}

#[test]
fn other_kinds_and_groups_are_skipped_silently() {
    let text = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n\
        metadata: {name: calico, namespace: shop}\nspec: {selector: all()}\n---\n\
        apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\n\
        apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
        metadata: {name: empty-types, namespace: shop}\nspec: {policyTypes: []}\n---\n\
        apiVersion: crd.antrea.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: antrea}\n";
    let loaded = load_yaml(text);
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    assert_eq!(loaded.snapshot.policies.len(), 1);
    assert_eq!(
        loaded.snapshot.policies[&key("shop", "empty-types")].policy_types,
        None
    );
    let ignored: Vec<&String> = loaded.ignored.keys().collect();
    assert_eq!(
        ignored,
        [
            "NetworkPolicy (crd.antrea.io/v1beta1)",
            "NetworkPolicy (projectcalico.org/v3)",
            "Secret (v1)"
        ]
    );
}

#[test]
fn a_field_outside_spec_is_reported_not_silently_dropped() {
    // `ingress` indented one level too little: the API server rejects the
    // object; loading it as a deny-all would change its meaning silently.
    let dir = std::env::temp_dir().join(format!("kn-files-misindent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-policy}\nspec: {podSelector: {matchLabels: {role: db}}}\npolicyTypes: [Ingress]\ningress: [{from: [{podSelector: {matchLabels: {name: api}}}]}]\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n",
    )
    .unwrap();
    let loaded = nftpolicy_source::files::load(&[file]).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
    let p = &loaded.problems[0];
    assert_eq!(p.name.as_deref(), Some("db-policy"));
    assert!(
        p.field.as_deref() == Some("ingress") || p.field.as_deref() == Some("policyTypes"),
        "{p}"
    );
    assert!(
        loaded.snapshot.policies.is_empty(),
        "the misindented policy is skipped"
    );
    assert!(
        loaded.snapshot.namespaces.contains_key("ok"),
        "the next document still loads"
    );
}
