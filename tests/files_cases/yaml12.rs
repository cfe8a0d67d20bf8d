//! Manifests are read by YAML 1.2: plain scalars that YAML 1.1 (and kubectl)
//! read as booleans or numbers (`y`, `no`, `on`, `1_000`, `1:20`)
//! are strings wherever a string is expected, and only `true`/`false`
//! where a string is expected are type errors naming the field. Names and
//! label syntax are not validated (as before), so `Y` loads as a name.

use std::path::Path;

use nftpolicy_core::model::{NamespaceScope, NamespacedName, Operator, Peer, PortRef, Selector};
use nftpolicy_source::files::{Format, Issue, Loaded, Loader};

/// Every spelling YAML 1.1 reads as a boolean, and numbers only YAML 1.1
/// (or no YAML) reads as numbers.
const PLAIN: [&str; 24] = [
    "y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF", "1_000", "1:20", "0b101", "0X1F", "+0x1F", "-.nan", "1.2.3", "nan",
];

fn load(text: &str, format: Format) -> Loaded {
    let mut loader = Loader::new();
    loader.add_text(Path::new("scalars.yaml"), text, format);
    loader.finish()
}

/// Every position a string takes, with `s` written plain.
fn manifests(s: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {s}\n  labels:\n    {s}: {s}\n\
         ---\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  name: {s}\n  namespace: {s}\n  \
         labels: {{app: {s}}}\n\
         ---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: {s}, namespace: {s}}}\n\
         spec:\n  podSelector:\n    matchLabels: {{app: {s}}}\n    \
         matchExpressions: [{{key: tier, operator: In, values: [{s}]}}]\n  \
         ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          \
         env: {s}\n    ports:\n    - port: {s}\n"
    )
}

/// Whether the API server takes `s` as a port name (IANA_SVC_NAME).
fn port_name_ok(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
}

#[test]
fn yaml_1_1_booleans_and_numbers_are_strings_everywhere() {
    for s in PLAIN {
        let loaded = load(&manifests(s), Format::Yaml);
        let snap = &loaded.snapshot;
        let ns = &snap
            .namespaces
            .get(s)
            .unwrap_or_else(|| panic!("case: {s}: namespace"));
        assert_eq!(
            ns.labels.get(s).map(String::as_str),
            Some(s),
            "case: {s}: label key"
        );
        let pod = &snap.pods[&NamespacedName::new(s, s)];
        assert_eq!(pod.labels["app"], s, "case: {s}: label value");
        if !port_name_ok(s) {
            // The policy is skipped for its port name, which was read as `s`.
            assert_eq!(
                loaded.problems.len(),
                1,
                "case: {s}: {:#?}",
                loaded.problems
            );
            let p = &loaded.problems[0];
            assert_eq!(
                p.field.as_deref(),
                Some("spec.ingress[0].ports[0].port"),
                "{p}"
            );
            assert!(
                matches!(&p.issue, Issue::PortName { value, .. } if value == s),
                "case: {s}: {p}"
            );
            assert_eq!(
                (p.namespace.as_deref(), p.name.as_deref()),
                (Some(s), Some(s))
            );
            continue;
        }
        assert!(
            loaded.problems.is_empty(),
            "case: {s}: {:#?}",
            loaded.problems
        );
        let policy = &snap.policies[&NamespacedName::new(s, s)];
        let want = Selector::labels([("app", s)]).with("tier", Operator::In([s.into()].into()));
        assert_eq!(policy.pod_selector, want, "case: {s}: selector");
        let Peer::Pods { namespaces, .. } = &policy.ingress[0].peers[0] else {
            panic!("case: {s}: a pods peer")
        };
        let env = Selector::labels([("env", s)]);
        assert_eq!(namespaces, &NamespaceScope::Matching(env), "case: {s}");
        let port = policy.ingress[0].ports[0].port.clone();
        assert_eq!(port, Some(PortRef::Name(s.into())), "case: {s}: port name");
    }
}

#[test]
fn true_and_false_where_a_string_is_expected_are_type_errors() {
    let policy = |metadata: &str, spec: &str| {
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{{metadata}}}\nspec: {{{spec}}}\n")
    };
    let ok = "name: p, namespace: shop";
    // (document, field, message substring)
    let cases = [
        (
            policy("name: true", ""),
            "metadata.name",
            "expected a string, found a boolean",
        ),
        (
            policy("name: p, namespace: False", ""),
            "metadata.namespace",
            "found a boolean",
        ),
        (
            policy(&format!("{ok}, labels: {{a: TRUE}}"), ""),
            "metadata.labels.a",
            "invalid type: boolean `true`",
        ),
        (
            policy(ok, "podSelector: {matchLabels: {app: false}}"),
            "spec.podSelector.matchLabels.app",
            "invalid type: boolean `false`",
        ),
        (
            policy(
                ok,
                "podSelector: {matchExpressions: [{key: a, operator: In, values: [x, true]}]}",
            ),
            "spec.podSelector.matchExpressions[0].values[1]",
            "invalid type: boolean `true`",
        ),
        (
            policy(
                ok,
                "ingress: [{from: [{namespaceSelector: {matchLabels: {env: True}}}]}]",
            ),
            "spec.ingress[0].from[0].namespaceSelector.matchLabels.env",
            "invalid type: boolean `true`",
        ),
        (
            policy(ok, "ingress: [{ports: [{port: true}]}]"),
            "spec.ingress[0].ports[0].port",
            "boolean",
        ),
        // A leading zero does not make a string: 0777 is the integer 777.
        (
            policy(&format!("{ok}, labels: {{a: 0777}}"), ""),
            "metadata.labels.a",
            "invalid type: integer `777`",
        ),
    ];
    for (doc, field, msg) in cases {
        let loaded = load(&doc, Format::Yaml);
        assert_eq!(loaded.problems.len(), 1, "{doc}: {:#?}", loaded.problems);
        let p = &loaded.problems[0];
        assert_eq!(p.field.as_deref(), Some(field), "{doc}: {p}");
        assert!(p.message().contains(msg), "{doc}: {p}");
        assert!(loaded.snapshot.policies.is_empty(), "{doc}");
    }
    // A key is its text: `true: x` is the label `true`.
    let loaded = load(
        "kind: Namespace\nmetadata: {name: a, labels: {true: x}}\n",
        Format::Yaml,
    );
    assert_eq!(loaded.snapshot.namespaces["a"].labels["true"], "x");
}

#[test]
fn quoted_scalars_and_json_files_are_unaffected() {
    let yaml = "kind: Namespace\nmetadata: {name: 'true', labels: {a: \"no\", b: '0777'}}\n";
    let loaded = load(yaml, Format::Yaml);
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    let labels = &loaded.snapshot.namespaces["true"].labels;
    assert_eq!((labels["a"].as_str(), labels["b"].as_str()), ("no", "0777"));

    let json = r#"{"kind": "Namespace", "metadata": {"name": "y", "labels": {"on": "off"}}}
        {"kind": "Namespace", "metadata": {"name": "n", "labels": {"a": true}}}"#;
    let loaded = load(json, Format::Json);
    assert_eq!(loaded.snapshot.namespaces["y"].labels["on"], "off");
    assert!(!loaded.snapshot.namespaces.contains_key("n"));
    assert_eq!(loaded.problems.len(), 1, "{:#?}", loaded.problems);
    assert_eq!(
        loaded.problems[0].field.as_deref(),
        Some("metadata.labels.a")
    );
}
