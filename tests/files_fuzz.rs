//! `files` must not panic on any input: random bytes, random text, and
//! random YAML/JSON trees whose keys and values are drawn from the real
//! manifest vocabulary, so the generator reaches deep into the conversion.
//! And a tree written as YAML (by another library's writer) reads as the
//! same tree written as JSON: the YAML 1.2 reader takes back every scalar
//! as it was meant.

use std::path::Path;

use nftpolicy_source::files::{Format, Loaded, Loader};
use proptest::prelude::*;
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "items",
    "spec",
    "status",
    "podSelector",
    "namespaceSelector",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "policyTypes",
    "ingress",
    "egress",
    "from",
    "to",
    "ports",
    "port",
    "endPort",
    "protocol",
    "ipBlock",
    "cidr",
    "except",
    "containers",
    "initContainers",
    "containerPort",
    "restartPolicy",
    "hostNetwork",
    "nodeName",
    "podIP",
    "podIPs",
    "ip",
    "phase",
    "app",
];

const WORDS: &[&str] = &[
    "v1",
    "networking.k8s.io/v1",
    "extensions/v1beta1",
    "apps/v1",
    "List",
    "PodList",
    "Namespace",
    "Pod",
    "NetworkPolicy",
    "Service",
    "Ingress",
    "Egress",
    "TCP",
    "UDP",
    "SCTP",
    "ICMP",
    "In",
    "NotIn",
    "Exists",
    "DoesNotExist",
    "Always",
    "Succeeded",
    "Failed",
    "http",
    "80",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "fd00::/64",
    "10.0.0.1",
    "fd00::1",
    "0.0.0.0/0",
    "::/0",
    "10.0.0.0/33",
    "shop",
    "default",
    "",
    "y",
    "no",
    "on",
    "OFF",
    "0777",
    "1_000",
    "1:20",
    "0x1F",
    "true",
    "null",
    "~",
    ".inf",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(0i64),
            Just(80),
            Just(65535),
            Just(65536),
            Just(-1),
            any::<i64>()
        ]
        .prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                let map: Map<String, Value> =
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                Value::Object(map)
            }),
        ]
    })
}

/// A tree that is an object of one of our kinds with a usable name, so
/// conversion runs on the random `spec` and `status`.
fn object() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(&["Namespace", "Pod", "NetworkPolicy", "List", "PodList"][..]);
    let name = prop::sample::select(&["web", "db", "shop", ""][..]);
    (kind, name, tree(), tree(), tree()).prop_map(|(kind, name, labels, spec, rest)| {
        let mut map = match rest {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        map.insert("kind".into(), Value::from(kind));
        let metadata = serde_json::json!({"name": name, "namespace": "shop", "labels": labels});
        map.insert("metadata".into(), metadata);
        map.insert("spec".into(), spec);
        Value::Object(map)
    })
}

/// A string leaf: mostly a word of the vocabulary, rarely any tree.
fn word() -> BoxedStrategy<Value> {
    prop_oneof![
        30 => prop::sample::select(WORDS).prop_map(Value::from),
        1 => tree(),
    ]
    .boxed()
}

/// A number leaf: mostly a port-like number, rarely any tree.
fn number() -> BoxedStrategy<Value> {
    let numbers = prop_oneof![Just(0i64), Just(80), Just(65535), Just(65536), -3i64..70000];
    prop_oneof![
        30 => numbers.prop_map(Value::from),
        1 => tree(),
    ]
    .boxed()
}

/// A leaf of either kind (`IntOrString`).
fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![word(), number()].boxed()
}

/// An object whose fields are each present or not.
fn fields(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let fields: Vec<_> = fields
        .into_iter()
        .map(|(k, s)| prop::option::of(s).prop_map(move |v| (k, v)))
        .collect();
    fields
        .prop_map(|kvs| {
            let map = kvs
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), v?)));
            Value::Object(map.collect())
        })
        .boxed()
}

fn list(item: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop::collection::vec(item, 0..3)
        .prop_map(Value::Array)
        .boxed()
}

fn selector() -> BoxedStrategy<Value> {
    let requirement = fields(vec![
        ("key", word()),
        ("operator", word()),
        ("values", list(word())),
    ]);
    fields(vec![
        (
            "matchLabels",
            fields(vec![("app", word()), ("env", word())]),
        ),
        ("matchExpressions", list(requirement)),
    ])
}

/// A NetworkPolicy spec shaped like the schema, with random leaves.
fn policy_spec() -> BoxedStrategy<Value> {
    let ip_block = fields(vec![("cidr", word()), ("except", list(word()))]);
    let peer = fields(vec![
        ("podSelector", selector()),
        ("namespaceSelector", selector()),
        ("ipBlock", ip_block),
    ]);
    let port = fields(vec![
        ("port", leaf()),
        ("endPort", number()),
        ("protocol", word()),
    ]);
    let rule = |peers: &'static str| {
        fields(vec![
            (peers, list(peer.clone())),
            ("ports", list(port.clone())),
        ])
    };
    fields(vec![
        ("podSelector", selector()),
        ("policyTypes", list(word())),
        ("ingress", list(rule("from"))),
        ("egress", list(rule("to"))),
    ])
}

/// A Pod body (spec and status) shaped like the schema, with random leaves.
fn pod_body() -> BoxedStrategy<Value> {
    let port = fields(vec![
        ("containerPort", number()),
        ("protocol", word()),
        ("name", word()),
    ]);
    let container = fields(vec![
        ("name", word()),
        ("ports", list(port)),
        ("restartPolicy", word()),
    ]);
    let spec = fields(vec![
        ("containers", list(container.clone())),
        ("initContainers", list(container)),
        ("hostNetwork", any::<bool>().prop_map(Value::Bool).boxed()),
        ("nodeName", word()),
    ]);
    let status = fields(vec![
        ("podIP", word()),
        ("podIPs", list(fields(vec![("ip", word())]))),
        ("phase", word()),
    ]);
    fields(vec![("spec", spec), ("status", status)])
}

/// A NetworkPolicy or Pod that reaches the validators.
fn shaped() -> impl Strategy<Value = Value> {
    let policy = policy_spec().prop_map(|spec| {
        serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                           "metadata": {"name": "p", "namespace": "shop"}, "spec": spec})
    });
    let pod = pod_body().prop_map(|mut body| {
        body["kind"] = Value::from("Pod");
        body["metadata"] = serde_json::json!({"name": "web"});
        body
    });
    prop_oneof![policy, pod]
}

fn load(text: &str, format: Format) -> Loaded {
    let mut loader = Loader::new();
    loader.add_text(Path::new("fuzz"), text, format);
    loader.finish()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 384,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for format in [Format::Yaml, Format::Json] {
            let mut loader = Loader::new();
            loader.add_bytes(Path::new("fuzz"), &bytes, format);
            let _ = loader.finish();
        }
    }

    #[test]
    fn random_text(text in "(\\PC|\n|---\n|- |: |\\{|\\}|\\[|\\]|&a |\\*a ){0,64}") {
        let _ = load(&text, Format::Yaml);
        let _ = load(&text, Format::Json);
    }

    #[test]
    fn random_manifests(docs in prop::collection::vec(prop_oneof![tree(), object(), shaped()], 1..4)) {
        let yaml: Vec<String> = docs
            .iter()
            .map(|d| serde_saphyr::to_string(d).unwrap_or_default())
            .collect();
        let loaded = load(&yaml.join("---\n"), Format::Yaml);
        for p in &loaded.problems {
            prop_assert!(!p.to_string().contains('\n'), "one line: {}", p);
        }
        let json: Vec<String> = docs.iter().map(Value::to_string).collect();
        let _ = load(&json.join("\n"), Format::Json);
    }

    #[test]
    fn yaml_and_json_read_alike(docs in prop::collection::vec(prop_oneof![tree(), object(), shaped()], 1..4)) {
        let yaml: Option<Vec<String>> = docs.iter().map(|d| serde_saphyr::to_string(d).ok()).collect();
        let yaml = yaml.expect("serializable").join("---\n");
        let json: Vec<String> = docs.iter().map(Value::to_string).collect();
        let (from_yaml, from_json) = (load(&yaml, Format::Yaml), load(&json.join("\n"), Format::Json));
        prop_assert_eq!(&from_yaml.snapshot, &from_json.snapshot, "{}", yaml);
        let what = |l: &Loaded| -> Vec<_> {
            l.problems.iter().map(|p| (p.document, p.item, p.field.clone(), p.issue.clone())).collect()
        };
        prop_assert_eq!(what(&from_yaml), what(&from_json), "{}", yaml);
        prop_assert_eq!(&from_yaml.ignored, &from_json.ignored);
    }
}
