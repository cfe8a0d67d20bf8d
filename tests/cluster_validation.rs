//! Offline validation agrees with the real API server: every object of a
//! table is sent to kube-apiserver (`kubectl apply --dry-run=server`) and
//! read by `kube-nftpolicy render`; an object the API rejects must be
//! reported by render with the same field path (and kind, namespace/name,
//! exit code 3), and an object the API takes must render cleanly.
//!
//! Where the two legitimately differ, the case says so ([`Expect::Differs`])
//! and the test asserts the difference as it is, with the reason, so that a
//! change on either side shows up here:
//!
//! - Names, namespaces and label keys and values are not checked by render
//!   (no policy decision depends on their spelling; `files.rs`).
//! - YAML 1.1 vs 1.2: kubectl reads `yes`/`on` as booleans; render reads
//!   files by YAML 1.2, where they are strings.
//! - kube-apiserver ≥ 1.33 (StrictIPCIDRValidation) refuses new CIDRs with
//!   host bits set or IPv4-mapped IPv6 addresses, but objects stored before
//!   keep them (validation ratchets on update), so the agent, and render
//!   with it, must read them: as their network, as Go's `ParseCIDR` does.
//! - The API drops a new pod's `status`; render reads it (files are
//!   `kubectl get -o yaml` dumps) and checks the IPs.
//! - Ports of plain init containers: the API checks them, render does not
//!   read them (they have exited before the pod serves).
//! - Unknown fields of a Pod's or Namespace's metadata, spec or status: the
//!   API's strict field validation refuses them; render tolerates them (a
//!   dump of a newer cluster carries fields this release does not know, and
//!   none is policy). A NetworkPolicy's `spec` is read strictly by both.
//! - Render reports the first problem of an object; the API reports all.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

#[path = "cluster_ops/mod.rs"]
mod cluster_ops;

#[path = "cluster_validation/parse.rs"]
mod parse;

use std::path::{Path, PathBuf};
use std::process::Command;

use cluster_support::Cluster;
use parse::{api_fields, without_indexes};

/// The namespace of every case.
const NS: &str = "val";

/// What the API server (through kubectl) does with a case.
#[derive(Debug, Clone, Copy)]
enum Api {
    /// Takes it.
    Accepts,
    /// Refuses it naming exactly this field (every error it lists names it).
    Rejects(&'static str),
    /// Cannot decode it (client or server side): a boolean where a string
    /// belongs, at this field (YAML 1.1 reads `on`, `yes` as booleans).
    Boolean(&'static str),
}

/// What `kube-nftpolicy render` does with a case.
#[derive(Debug, Clone, Copy)]
enum Render {
    /// Renders, exit 0, no warning.
    Accepts,
    /// Skips the object, exit 3, naming this field.
    Rejects(&'static str),
}

/// What a case must show.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Both take it.
    Valid,
    /// Both refuse it, naming this field.
    Same(&'static str),
    /// The API lists all these fields; render names the first one only.
    RenderFirst(&'static [&'static str]),
    /// They differ, for this reason.
    Differs(Api, Render, &'static str),
}

/// How kubectl sends a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `kubectl apply --dry-run=server`.
    Apply,
    /// `kubectl create --dry-run=server`: for an object without a name,
    /// which `apply` refuses on the client side without naming a field.
    Create,
}

struct Case {
    /// Also the object's name, where it has one.
    name: &'static str,
    /// `Kind ns/name` (or less) as render names the object.
    who: String,
    yaml: String,
    via: Via,
    expect: Expect,
}

fn np(name: &'static str, spec: &str, expect: Expect) -> Case {
    np_raw(name, &format!("spec: {spec}\n"), expect)
}

/// A NetworkPolicy whose top-level lines after metadata are `rest`.
fn np_raw(name: &'static str, rest: &str, expect: Expect) -> Case {
    Case {
        name,
        who: format!("NetworkPolicy {NS}/{name}"),
        yaml: format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {{name: {name}, namespace: {NS}}}\n{rest}"
        ),
        via: Via::Apply,
        expect,
    }
}

fn pod(name: &'static str, spec: &str, expect: Expect) -> Case {
    pod_raw(name, &format!("spec: {spec}\n"), expect)
}

fn pod_raw(name: &'static str, rest: &str, expect: Expect) -> Case {
    Case {
        name,
        who: format!("Pod {NS}/{name}"),
        yaml: format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}}}\n{rest}"
        ),
        via: Via::Apply,
        expect,
    }
}

/// A pod of one container with these ports.
fn ports(name: &'static str, ports: &str, expect: Expect) -> Case {
    pod(
        name,
        &format!("{{containers: [{{name: c, image: x, ports: {ports}}}]}}"),
        expect,
    )
}

fn namespace(case: &'static str, metadata: &str, who: &str, via: Via, expect: Expect) -> Case {
    Case {
        name: case,
        who: who.to_owned(),
        yaml: format!("apiVersion: v1\nkind: Namespace\nmetadata: {metadata}\n"),
        via,
        expect,
    }
}

/// `{ingress: [{from: [PEER]}]}`.
fn from(peer: &str) -> String {
    format!("{{ingress: [{{from: [{peer}]}}]}}")
}

/// `{ingress: [{ports: [PORT]}]}`.
fn port(p: &str) -> String {
    format!("{{ingress: [{{ports: [{p}]}}]}}")
}

const CIDR: &str = "spec.ingress[0].from[0].ipBlock.cidr";
const EXCEPT: &str = "spec.ingress[0].from[0].ipBlock.except[0]";
const PORT: &str = "spec.ingress[0].ports[0].port";
const END_PORT: &str = "spec.ingress[0].ports[0].endPort";
const PROTOCOL: &str = "spec.ingress[0].ports[0].protocol";

const RATCHET: &str = "kube-apiserver >= 1.33 (StrictIPCIDRValidation) refuses this in new \
objects, but objects stored earlier keep it (validation ratchets), so the agent and render \
read it, as its network";
const NAMES: &str = "render does not check the syntax of names and labels: no policy \
decision depends on it";
const YAML11: &str = "kubectl reads YAML 1.1, where on/yes are booleans; render reads \
YAML 1.2, where they are strings";

#[rustfmt::skip]
fn policies() -> Vec<Case> {
    use Expect::*;
    vec![
        np("np-cidr-prefix", &from("{ipBlock: {cidr: 10.0.0.0/33}}"), Same(CIDR)),
        np("np-cidr-empty", &from("{ipBlock: {cidr: ''}}"), Same(CIDR)),
        np("np-cidr-no-prefix", &from("{ipBlock: {cidr: 10.0.0.1}}"), Same(CIDR)),
        np("np-cidr-leading-zero", &from("{ipBlock: {cidr: 010.0.0.0/8}}"), Same(CIDR)),
        np("np-except-outside",
           &from("{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}"), Same(EXCEPT)),
        np("np-except-equal",
           &from("{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}"), Same(EXCEPT)),
        np("np-except-family",
           &from("{ipBlock: {cidr: 10.0.0.0/16, except: ['fd00::/64']}}"), Same(EXCEPT)),
        np("np-ipblock-with-selector",
           "{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, namespaceSelector: {}}]}]}",
           Same("spec.egress[0].to[0]")),
        np("np-empty-peer", &from("{}"), Same("spec.ingress[0].from[0]")),
        np("np-port-zero", &port("{port: 0}"), Same(PORT)),
        np("np-port-70000", "{egress: [{ports: [{port: 70000}]}]}",
           Same("spec.egress[0].ports[0].port")),
        np("np-port-name-upper", &port("{port: HTTP}"), Same(PORT)),
        np("np-port-name-digits", &port("{port: '80'}"), Same(PORT)),
        np("np-port-name-long", &port("{port: abcdefghijklmnop}"), Same(PORT)),
        np("np-port-name-dashes", &port("{port: ht--tp}"), Same(PORT)),
        np("np-endport-without-port", &port("{endPort: 80}"), Same(END_PORT)),
        np("np-endport-below-port", &port("{port: 90, endPort: 80}"), Same(END_PORT)),
        np("np-endport-named-port", &port("{port: http, endPort: 90}"), Same(END_PORT)),
        np("np-endport-70000", &port("{port: 80, endPort: 70000}"), Same(END_PORT)),
        np("np-protocol-icmp", &port("{protocol: ICMP}"), Same(PROTOCOL)),
        np("np-protocol-lowercase", &port("{protocol: udp, port: 53}"), Same(PROTOCOL)),
        np("np-operator-unknown",
           &from("{namespaceSelector: {matchExpressions: [{key: a, operator: Equals, values: [x]}]}}"),
           Same("spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].operator")),
        np("np-in-without-values", "{podSelector: {matchExpressions: [{key: a, operator: In}]}}",
           Same("spec.podSelector.matchExpressions[0].values")),
        np("np-exists-with-values",
           "{podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}",
           Same("spec.podSelector.matchExpressions[0].values")),
        np("np-empty-key", "{podSelector: {matchExpressions: [{key: '', operator: Exists}]}}",
           Same("spec.podSelector.matchExpressions[0].key")),
        np("np-policy-type-both", "{policyTypes: [Both]}", Same("spec.policyTypes[0]")),
        np("np-policy-types-three", "{policyTypes: [Ingress, Egress, Ingress]}",
           Same("spec.policyTypes")),
        np_raw("np-unknown-top-level", "spec: {}\ningress: [{}]\n", Same("ingress")),
        // The API's decoder names the field without indexes.
        np("np-port-boolean", &port("{port: true}"), Same(PORT)),
        np("np-two-problems", &port("{port: 0, protocol: ICMP}"), RenderFirst(&[PROTOCOL, PORT])),

        np("np-cidr-host-bits", &from("{ipBlock: {cidr: 10.0.0.1/24}}"),
           Differs(Api::Rejects(CIDR), Render::Accepts, RATCHET)),
        np("np-except-host-bits",
           &from("{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.1/16]}}"),
           Differs(Api::Rejects(EXCEPT), Render::Accepts, RATCHET)),
        np("np-cidr-ipv4-mapped", &from("{ipBlock: {cidr: '::ffff:10.0.0.0/104'}}"),
           Differs(Api::Rejects(CIDR), Render::Accepts, RATCHET)),
        np_raw("np-unknown-nested-field", "spec: {ingres: []}\n", Same("spec.ingres")),
        np("np-label-value-syntax", "{podSelector: {matchLabels: {app: 'a b'}}}",
           Differs(Api::Rejects("spec.podSelector.matchLabels"), Render::Accepts, NAMES)),
        np("np-selector-value-syntax",
           "{podSelector: {matchExpressions: [{key: a, operator: In, values: ['a b']}]}}",
           Differs(Api::Rejects("spec.podSelector.matchExpressions[0].values[0]"),
                   Render::Accepts, NAMES)),
        np("np-label-value-on", "{podSelector: {matchLabels: {app: on}}}",
           Differs(Api::Boolean("spec.podSelector.matchLabels"), Render::Accepts, YAML11)),

        np("np-ok-exists-empty-values",
           "{podSelector: {matchExpressions: [{key: a, operator: Exists, values: []}]}}", Valid),
        np("np-ok-endport-equal", &port("{port: 80, endPort: 80}"), Valid),
        np("np-ok-sctp-all-ports", &port("{protocol: SCTP, port: 1, endPort: 65535}"), Valid),
        np("np-ok-port-name-15", &port("{port: abcdefghijklmno, protocol: UDP}"), Valid),
        np("np-ok-empty-policy-types", "{policyTypes: []}", Valid),
        np("np-ok-policy-type-twice", "{policyTypes: [Ingress, Ingress]}", Valid),
        np("np-ok-empty-from", "{ingress: [{from: []}]}", Valid),
        np("np-ok-no-pod-selector", "{ingress: [{}]}", Valid),
        np("np-ok-everywhere",
           &from("{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}, \
                  {ipBlock: {cidr: '::/0', except: ['fd00::/8']}}"),
           Valid),
        np("np-ok-both-selectors",
           &from("{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchExpressions: \
                  [{key: app, operator: NotIn, values: [db]}]}}"),
           Valid),
    ]
}

#[rustfmt::skip]
fn pods_and_namespaces() -> Vec<Case> {
    use Expect::*;
    vec![
        ports("pod-port-zero", "[{containerPort: 0}]", Same("spec.containers[0].ports[0].containerPort")),
        ports("pod-port-70000", "[{containerPort: 70000}]",
              Same("spec.containers[0].ports[0].containerPort")),
        ports("pod-protocol-lowercase", "[{containerPort: 80, protocol: tcp}]",
              Same("spec.containers[0].ports[0].protocol")),
        ports("pod-port-name-upper", "[{containerPort: 80, name: HTTP}]",
              Same("spec.containers[0].ports[0].name")),
        ports("pod-port-name-long", "[{containerPort: 80, name: abcdefghijklmnop}]",
              Same("spec.containers[0].ports[0].name")),
        ports("pod-port-name-twice", "[{containerPort: 80, name: web}, {containerPort: 81, name: web}]",
              Same("spec.containers[0].ports[1].name")),
        pod("pod-sidecar-port-zero",
            "{containers: [{name: c, image: x}], initContainers: [{name: s, image: x, \
             restartPolicy: Always, ports: [{containerPort: 0}]}]}",
            Same("spec.initContainers[0].ports[0].containerPort")),
        pod_raw("pod-unknown-top-level", "spec: {containers: [{name: c, image: x}]}\nextra: 1\n",
                Same("extra")),

        pod_raw("pod-status-bad-ip",
                "spec: {containers: [{name: c, image: x}]}\nstatus: {podIP: nope}\n",
                Differs(Api::Accepts, Render::Rejects("status.podIP"),
                        "the API drops a new pod's status; render reads dumps, whose status is real")),
        pod("pod-init-port-zero",
            "{containers: [{name: c, image: x}], initContainers: [{name: i, image: x, \
             ports: [{containerPort: 0}]}]}",
            Differs(Api::Rejects("spec.initContainers[0].ports[0].containerPort"), Render::Accepts,
                    "render does not read the ports of plain init containers: they have \
                     exited before the pod serves")),

        pod("pod-ok-same-name-two-containers",
            "{containers: [{name: a, image: x, ports: [{containerPort: 80, name: web}]}, \
             {name: b, image: x, ports: [{containerPort: 81, name: web, protocol: UDP}]}]}",
            Valid),
        ports("pod-ok-empty-port-name", "[{containerPort: 80, name: ''}]", Valid),
        pod("pod-ok-host-network",
            "{hostNetwork: true, containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}",
            Valid),
        ports("pod-ok-plain", "[{containerPort: 80, name: http}]", Valid),
        ports("pod-ok-same-port-two-protocols",
              "[{containerPort: 53, name: dns}, {containerPort: 53, protocol: UDP, name: dns-udp}]",
              Valid),

        namespace("ns-no-name", "{labels: {a: b}}", "Namespace", Via::Create,
                  Same("metadata.name")),
        namespace("ns-bad-name", "{name: Bad_Name}", "Namespace Bad_Name", Via::Apply,
                  Differs(Api::Rejects("metadata.name"), Render::Accepts, NAMES)),
        namespace("ns-name-yes", "{name: yes}", "Namespace yes", Via::Apply,
                  Differs(Api::Boolean("metadata.name"), Render::Accepts, YAML11)),
        namespace("ns-label-on", "{name: val-on, labels: {enabled: on}}", "Namespace val-on",
                  Via::Apply, Differs(Api::Boolean("metadata.labels"), Render::Accepts, YAML11)),
        namespace("ns-ok-labels", "{name: val-ok, labels: {team: a, tier: ''}}",
                  "Namespace val-ok", Via::Apply, Valid),
    ]
}

/// What kubectl said: whether it passed, the field paths of the API's
/// errors, and whether those paths carry list indexes.
#[derive(Debug)]
struct ApiSaid {
    ok: bool,
    fields: Vec<String>,
    indexed: bool,
    text: String,
}

fn kubectl(c: &Cluster, case: &Case, file: &Path) -> ApiSaid {
    let file = file.to_string_lossy();
    let verb = match case.via {
        Via::Apply => "apply",
        Via::Create => "create",
    };
    let out = c.kubectl(&[verb, "--dry-run=server", "-f", &file]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (fields, indexed) = api_fields(&text);
    let mut uniq: Vec<String> = Vec::new();
    for f in fields {
        if !uniq.contains(&f) {
            uniq.push(f);
        }
    }
    ApiSaid {
        ok: out.status.success(),
        fields: uniq,
        indexed,
        text,
    }
}

/// What render said: its exit code, and the field it named for the object.
#[derive(Debug)]
struct RenderSaid {
    code: Option<i32>,
    field: Option<String>,
    stderr: String,
}

fn render(case: &Case, file: &Path) -> RenderSaid {
    let out = Command::new(env!("CARGO_BIN_EXE_kube-nftpolicy"))
        .args(["render", "-f"])
        .arg(file)
        .args(["--node", "node1"])
        .output()
        .expect("run kube-nftpolicy render");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // `warning: FILE: document 0: Kind ns/name: FIELD: message; ... skipped`
    let mark = format!(": {}: ", case.who);
    let field = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .find_map(|l| l.split_once(&mark))
        .and_then(|(_, rest)| rest.split_once(": "))
        .map(|(field, _)| field.to_owned());
    RenderSaid {
        code: out.status.code(),
        field,
        stderr,
    }
}

/// Checks one side against what it must do; `Err` says how it differs.
fn check_api(want: Api, got: &ApiSaid) -> Result<(), String> {
    match want {
        Api::Accepts if got.ok => Ok(()),
        Api::Accepts => Err("the API refused it".into()),
        Api::Boolean(_) | Api::Rejects(_) if got.ok => Err("the API took it".into()),
        Api::Boolean(field) => {
            let bool_at = got
                .text
                .contains("cannot unmarshal bool into Go struct field");
            if bool_at && got.fields == [field] {
                Ok(())
            } else {
                Err(format!("no boolean at {field:?} (fields {:?})", got.fields))
            }
        }
        Api::Rejects(field) => {
            // The decoder's paths have no indexes: compare without them.
            let want = if got.indexed {
                field.to_owned()
            } else {
                without_indexes(field)
            };
            if got.fields == [want.clone()] {
                Ok(())
            } else {
                Err(format!("the API named {:?}, not [{want:?}]", got.fields))
            }
        }
    }
}

fn check_render(case: &Case, want: Render, got: &RenderSaid) -> Result<(), String> {
    match want {
        Render::Accepts if got.code == Some(0) && !got.stderr.contains("warning:") => Ok(()),
        Render::Accepts => Err(format!("render did not accept it (exit {:?})", got.code)),
        Render::Rejects(field) => {
            if got.code != Some(3) {
                return Err(format!("render exit {:?}, not 3", got.code));
            }
            match got.field.as_deref() {
                Some(f) if f == field => Ok(()),
                other => Err(format!(
                    "render named {other:?} for {:?}, not {field:?}",
                    case.who
                )),
            }
        }
    }
}

fn check(case: &Case, api: &ApiSaid, rendered: &RenderSaid) -> Result<(), String> {
    let (want_api, want_render) = match case.expect {
        Expect::Valid => (Api::Accepts, Render::Accepts),
        Expect::Same(field) => (Api::Rejects(field), Render::Rejects(field)),
        Expect::RenderFirst(fields) => {
            let mut want: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
            let mut got = api.fields.clone();
            want.sort();
            got.sort();
            if api.ok || got != want {
                return Err(format!("the API named {:?}, not {fields:?}", api.fields));
            }
            return check_render(case, Render::Rejects(fields[0]), rendered);
        }
        Expect::Differs(a, r, _) => (a, r),
    };
    check_api(want_api, api)?;
    check_render(case, want_render, rendered)
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_api_server_and_render_reject_the_same_objects_naming_the_same_field() {
    nftpolicy_lab::kernel_test!("cluster_validation");
    let cases: Vec<Case> = policies()
        .into_iter()
        .chain(pods_and_namespaces())
        .collect();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");

    let tmp = TempDir(std::env::temp_dir().join(format!("knp-validation-{}", std::process::id())));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let c = cluster_ops::up(2, 1, "");
    c.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
    ));

    let mut failures = Vec::new();
    let mut differences = Vec::new();
    for case in &cases {
        let file = tmp.0.join(format!("{}.yaml", case.name));
        std::fs::write(&file, &case.yaml).unwrap();
        let api = kubectl(&c, case, &file);
        let rendered = render(case, &file);
        match check(case, &api, &rendered) {
            Ok(()) => {
                if let Expect::Differs(a, r, why) = case.expect {
                    differences.push(format!("{}: API {a:?}, render {r:?}: {why}", case.name));
                }
            }
            Err(e) => failures.push(format!(
                "{}: {e}\n--- object\n{}--- kubectl\n{}--- render stderr\n{}",
                case.name, case.yaml, api.text, rendered.stderr
            )),
        }
    }
    eprintln!(
        "{} cases; documented differences:\n  {}",
        cases.len(),
        differences.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
