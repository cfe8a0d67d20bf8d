//! The bad-input table for `tests/files.rs`: each case is one bad document
//! and the one `Problem` it must produce, with the rest of the file loading.
//! Also the tests of the typed conversion against the file reader
//! (`typed.rs`) and of YAML 1.2 scalars (`yaml12.rs`).

mod typed;
mod yaml12;

/// Document 0 of every case.
pub const GOOD_NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
/// Document 2 of every case: must load whatever document 1 holds.
pub const GOOD_POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
    metadata: {name: ok, namespace: shop}\nspec: {podSelector: {}}\n";

/// A NetworkPolicy `shop/bad` with this (flow-style) spec.
fn bad_policy(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: bad, namespace: shop}}\nspec: {spec}\n"
    )
}

/// A Pod with this (flow-style) body after its metadata.
fn bad_pod(namespace: &str, rest: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: web{namespace}}}\n{rest}\n")
}

/// The one problem a bad document (document 1, between two good ones) must produce.
pub struct Want {
    /// `List` item index.
    pub item: Option<usize>,
    /// Kind named in the report.
    pub kind: Option<&'static str>,
    /// Namespace named in the report.
    pub namespace: Option<&'static str>,
    /// Name named in the report.
    pub name: Option<&'static str>,
    /// Exact field path.
    pub field: Option<&'static str>,
    /// A substring of the message.
    pub message: &'static str,
}

fn policy_at(field: &'static str, message: &'static str) -> Want {
    Want {
        item: None,
        kind: Some("NetworkPolicy"),
        namespace: Some("shop"),
        name: Some("bad"),
        field: Some(field),
        message,
    }
}

fn pod_at(namespace: &'static str, field: &'static str, message: &'static str) -> Want {
    Want {
        kind: Some("Pod"),
        namespace: Some(namespace),
        name: Some("web"),
        ..policy_at(field, message)
    }
}

fn document(field: Option<&'static str>, message: &'static str) -> Want {
    Want {
        item: None,
        kind: None,
        namespace: None,
        name: None,
        field,
        message,
    }
}

/// Cases whose document is not a NetworkPolicy spec.
fn bad_document_cases() -> Vec<(&'static str, String, Want)> {
    let np_header = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n";
    vec![
        (
            "malformed YAML",
            "kind: NetworkPolicy\nmetadata: {name: [broken\n".into(),
            document(None, "not valid YAML"),
        ),
        (
            "not an object",
            "- a\n- b\n".into(),
            document(None, "found a list"),
        ),
        (
            "kind missing",
            "metadata: {name: x}\n".into(),
            Want {
                name: Some("x"),
                ..document(Some("kind"), "is missing")
            },
        ),
        (
            "name missing",
            format!("{np_header}metadata: {{namespace: shop}}\n"),
            Want {
                name: None,
                ..policy_at("metadata.name", "is missing")
            },
        ),
        (
            "name of the wrong type (`false`; YAML 1.2 reads `no` as a string)",
            format!("{np_header}metadata: {{name: false, namespace: shop}}\n"),
            Want {
                name: None,
                ..policy_at("metadata.name", "expected a string, found a boolean")
            },
        ),
        (
            "removed apiVersion",
            bad_policy("{}").replace("networking.k8s.io/v1", "extensions/v1beta1"),
            policy_at("apiVersion", "\"extensions/v1beta1\" is not supported"),
        ),
    ]
}

/// Cases of bad Pods and Lists, and a duplicate.
fn bad_object_cases() -> Vec<(&'static str, String, Want)> {
    let list_items = "apiVersion: v1\nkind: List\nitems:\n\
        - {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: shop}}\n\
        - {apiVersion: v1, kind: Pod, metadata: {name: b, namespace: shop}, \
           spec: {hostNetwork: maybe}}\n";
    vec![
        (
            "NetworkPolicy in the core group",
            bad_policy("{}").replace("networking.k8s.io/v1", "v1"),
            policy_at("apiVersion", "\"v1\" is not supported for NetworkPolicy"),
        ),
        (
            "bad pod IP",
            bad_pod(
                ", namespace: shop",
                "status: {podIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.300}]}",
            ),
            pod_at("shop", "status.podIPs[1].ip", "\"10.0.0.300\" is not an IP"),
        ),
        (
            "bad pod IP, default namespace",
            bad_pod("", "status: {podIP: 'fd00::zz'}"),
            pod_at("default", "status.podIP", "is not an IP"),
        ),
        (
            "container port out of range",
            bad_pod(
                "",
                "spec: {containers: [{name: c, ports: [{containerPort: 70000}]}]}",
            ),
            pod_at(
                "default",
                "spec.containers[0].ports[0].containerPort",
                "70000 is out of range",
            ),
        ),
        (
            "duplicate object",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {b: 'yes'}}\n".into(),
            Want {
                kind: Some("Namespace"),
                name: Some("shop"),
                ..document(
                    None,
                    "already defined at demo.yaml: document 0; the first one is kept",
                )
            },
        ),
        (
            "bad List item, good items load",
            list_items.into(),
            Want {
                item: Some(1),
                namespace: Some("shop"),
                name: Some("b"),
                ..pod_at("shop", "spec.hostNetwork", "invalid type: string \"maybe\"")
            },
        ),
        (
            "List inside a List",
            "kind: List\nitems: [{kind: List, items: []}]\n".into(),
            Want {
                item: Some(0),
                kind: Some("List"),
                ..document(None, "list inside a list")
            },
        ),
        (
            "List items not a list",
            "kind: List\nitems: {a: 1}\n".into(),
            Want {
                kind: Some("List"),
                ..document(Some("items"), "expected a list")
            },
        ),
    ]
}

/// Cases of a NetworkPolicy `shop/bad` with bad types or peers.
fn bad_policy_cases() -> Vec<(&'static str, String, Want)> {
    let p = bad_policy;
    let from = |peers: &str| p(&format!("{{ingress: [{{from: [{peers}]}}]}}"));
    let port = |port: &str| p(&format!("{{ingress: [{{ports: [{port}]}}]}}"));
    let ipblock = |cidr: &str, except: &str| {
        from(&format!(
            "{{ipBlock: {{cidr: {cidr}, except: [{except}]}}}}"
        ))
    };
    vec![
        (
            "port of the wrong type",
            port("{port: {a: 1}}"),
            policy_at("spec.ingress[0].ports[0].port", "invalid type: map"),
        ),
        (
            "podSelector of the wrong type",
            p("{podSelector: 5}"),
            policy_at("spec.podSelector", "invalid type: integer `5`"),
        ),
        (
            "label value of the wrong type",
            p("{podSelector: {matchLabels: {app: [web]}}}"),
            policy_at("spec.podSelector.matchLabels.app", "invalid type: sequence"),
        ),
        (
            "ipBlock without cidr",
            from("{ipBlock: {except: []}}"),
            policy_at("spec.ingress[0].from[0].ipBlock.cidr", "\"\" is not a CIDR"),
        ),
        (
            "invalid CIDR",
            from("{podSelector: {}}, {ipBlock: {cidr: 10.0.0.0/33}}"),
            policy_at(
                "spec.ingress[0].from[1].ipBlock.cidr",
                "\"10.0.0.0/33\" is not a CIDR",
            ),
        ),
        (
            "except outside its cidr",
            ipblock("10.0.0.0/16", "10.1.0.0/24"),
            policy_at(
                "spec.ingress[0].from[0].ipBlock.except[0]",
                "10.1.0.0/24 is not inside cidr 10.0.0.0/16",
            ),
        ),
        (
            "except of another family",
            ipblock("10.0.0.0/16", "'fd00::/64'"),
            policy_at(
                "spec.ingress[0].from[0].ipBlock.except[0]",
                "fd00::/64 is not inside",
            ),
        ),
        (
            "ipBlock with a selector",
            from("{ipBlock: {cidr: 10.0.0.0/8}, namespaceSelector: {}}"),
            policy_at("spec.ingress[0].from[0]", "cannot be combined"),
        ),
        (
            "empty peer",
            p("{egress: [{to: [{}]}]}"),
            policy_at(
                "spec.egress[0].to[0]",
                "needs podSelector, namespaceSelector or ipBlock",
            ),
        ),
    ]
}

/// Cases of a NetworkPolicy `shop/bad` with bad ports.
fn bad_port_cases() -> Vec<(&'static str, String, Want)> {
    let port = |port: &str| bad_policy(&format!("{{ingress: [{{ports: [{port}]}}]}}"));
    vec![
        (
            "port 0",
            port("{port: 0}"),
            policy_at("spec.ingress[0].ports[0].port", "0 is out of range"),
        ),
        (
            "port above 65535",
            port("{port: 65536}"),
            policy_at(
                "spec.ingress[0].ports[0].port",
                "65536 is out of range 1-65535",
            ),
        ),
        (
            "endPort below port",
            port("{port: 80, endPort: 79}"),
            policy_at("spec.ingress[0].ports[0].endPort", "79 is below port 80"),
        ),
        (
            "endPort with a named port",
            port("{port: http, endPort: 90}"),
            policy_at(
                "spec.ingress[0].ports[0].endPort",
                "not the named port \"http\"",
            ),
        ),
        (
            "endPort without port",
            port("{endPort: 90}"),
            policy_at("spec.ingress[0].ports[0].endPort", "needs a numeric port"),
        ),
        (
            "endPort above 65535",
            port("{port: 80, endPort: 70000}"),
            policy_at("spec.ingress[0].ports[0].endPort", "70000 is out of range"),
        ),
        (
            "unknown protocol",
            port("{port: 80, protocol: ICMP}"),
            policy_at(
                "spec.ingress[0].ports[0].protocol",
                "\"ICMP\" is not a protocol",
            ),
        ),
        (
            "digits as a port name",
            port("{port: '80'}"),
            policy_at("spec.ingress[0].ports[0].port", "must contain a letter"),
        ),
        (
            "invalid port name",
            port("{port: HTTP}"),
            policy_at(
                "spec.ingress[0].ports[0].port",
                "\"HTTP\" is not a valid port name",
            ),
        ),
    ]
}

/// Cases of a NetworkPolicy `shop/bad` with bad policy types or selectors.
fn bad_selector_cases() -> Vec<(&'static str, String, Want)> {
    let p = bad_policy;
    let from = |peers: &str| p(&format!("{{ingress: [{{from: [{peers}]}}]}}"));
    let expressions = |exprs: &str| p(&format!("{{podSelector: {{matchExpressions: [{exprs}]}}}}"));
    vec![
        (
            "unknown policy type",
            p("{policyTypes: [Ingress, egress]}"),
            policy_at("spec.policyTypes[1]", "\"egress\" is not a policy type"),
        ),
        (
            "In without values",
            expressions("{key: a, operator: In}"),
            policy_at(
                "spec.podSelector.matchExpressions[0].values",
                "needs at least one value",
            ),
        ),
        (
            "Exists with values, in a peer",
            from("{podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}"),
            policy_at(
                "spec.ingress[0].from[0].podSelector.matchExpressions[0].values",
                "takes no values",
            ),
        ),
        (
            "unknown operator",
            expressions("{key: a, operator: Gt, values: ['1']}"),
            policy_at(
                "spec.podSelector.matchExpressions[0].operator",
                "\"Gt\" is not an operator",
            ),
        ),
    ]
}

/// Every case: (name, bad document, expected problem).
pub fn bad_cases() -> Vec<(&'static str, String, Want)> {
    let mut cases = bad_document_cases();
    cases.extend(bad_object_cases());
    cases.extend(bad_policy_cases());
    cases.extend(bad_port_cases());
    cases.extend(bad_selector_cases());
    cases
}
