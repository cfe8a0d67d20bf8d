//! The incremental resolver against the full one: after any stream of
//! cluster events, each call given the keys of what changed, it returns
//! exactly `resolve(&snapshot, node)`; and a change costs the policies it
//! touches, not the cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use nftpolicy_core::model::*;
use nftpolicy_core::resolve::{differences, resolve, Changes, Incremental, Resolution, Work};
use nftpolicy_core::ruleset::build::{build, build_cached, BuildCache, Options};
use nftpolicy_testkit::*;
use proptest::prelude::*;

/// The node under test.
const NODE: &str = "node0";
/// Nodes pods run on (the first two are both checked).
const NODES: [&str; 3] = ["node0", "node1", "node2"];
/// Namespaces: the first three exist at the start, `n3` may come later.
const NSS: [&str; 4] = ["n0", "n1", "n2", "n3"];
use nftpolicy_testkit::strategies::APPS;

// ---------- model objects ----------

/// Namespace labels, by choice.
fn ns_labels(choice: u8) -> Vec<(&'static str, &'static str)> {
    match choice % 4 {
        0 => vec![],
        1 => vec![("team", "red")],
        2 => vec![("team", "blue")],
        _ => vec![("team", "red"), ("env", "prod")],
    }
}

/// A pod as generated: everything but its name is a choice.
#[derive(Debug, Clone)]
struct PodSpec {
    ns: usize,
    app: usize,
    tier: bool,
    node: usize,
    ips: u8,
    ports: u8,
    kind: u8,
}

fn with_ips(mut p: Pod, id: usize, choice: u8) -> Pod {
    p.ips.clear();
    match choice % 6 {
        0 => p
            .ip(&format!("10.1.0.{}", id + 1))
            .ip(&format!("fd00::{:x}", id + 1)),
        1 => p.ip(&format!("10.1.0.{}", id + 1)),
        // IP-less (not yet assigned).
        2 => p,
        // Shared with another pod.
        3 => p.ip("10.1.0.3"),
        4 => p.ip(&format!("10.1.0.{}", id + 100)),
        _ => p.ip(&format!("fd00::{:x}", id + 1)),
    }
}

fn with_ports(mut p: Pod, choice: u8) -> Pod {
    p.ports.clear();
    match choice % 6 {
        0 => p,
        1 => p.port("http", 80, Protocol::Tcp),
        2 => p.port("http", 8080, Protocol::Tcp),
        3 => p
            .port("http", 80, Protocol::Tcp)
            .port("dns", 53, Protocol::Udp),
        4 => p.port("dns", 5353, Protocol::Udp),
        _ => p.port("http", 80, Protocol::Udp),
    }
}

fn with_kind(mut p: Pod, choice: u8) -> Pod {
    p.host_network = false;
    p.phase = PodPhase::Active;
    match choice % 8 {
        0 => p.host_network(),
        1 => p.finished(),
        _ => p,
    }
}

fn relabel(mut p: Pod, app: usize, tier: bool) -> Pod {
    p.labels = Labels::new();
    let p = p.labels([("app", APPS[app % 3])]);
    if tier {
        p.labels([("tier", "x")])
    } else {
        p
    }
}

fn build_pod(id: usize, spec: &PodSpec) -> Pod {
    // Two in five on each checked node, one in five elsewhere.
    let p = pod(NSS[spec.ns % 4], &format!("pod{id}")).node(NODES[spec.node % 5 / 2]);
    let p = relabel(p, spec.app, spec.tier);
    let p = with_ips(p, id, spec.ips);
    let p = with_ports(p, spec.ports);
    with_kind(p, spec.kind)
}

// ---------- generators ----------

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        0..4usize,
        0..3usize,
        any::<bool>(),
        0..5usize,
        0..6u8,
        0..6u8,
        0..8u8,
    )
        .prop_map(|(ns, app, tier, node, ips, ports, kind)| PodSpec {
            ns,
            app,
            tier,
            node,
            ips,
            ports,
            kind,
        })
}

fn selector() -> impl Strategy<Value = Selector> {
    nftpolicy_testkit::strategies::pod_selector()
}

fn ns_selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        Just(Selector::everything()),
        Just(Selector::labels([("team", "red")])),
        (0..4usize).prop_map(|i| Selector::labels([("kubernetes.io/metadata.name", NSS[i])])),
        Just(Selector::everything().with(
            "team",
            Operator::In(["red".to_owned(), "blue".to_owned()].into())
        )),
        Just(Selector::everything().with("team", Operator::DoesNotExist)),
        Just(Selector::everything().with("env", Operator::Exists)),
    ]
}

fn peer() -> impl Strategy<Value = Peer> {
    nftpolicy_testkit::strategies::peer(selector, ns_selector)
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    let n = |v: u16| Some(PortRef::Number(std::num::NonZeroU16::new(v).unwrap()));
    let named = |name: &str, protocol| PortSpec {
        protocol,
        port: Some(PortRef::Name(name.into())),
        end_port: None,
    };
    prop_oneof![
        1 => Just(PortSpec {
            protocol: Protocol::Tcp,
            port: n(80),
            end_port: None
        }),
        1 => Just(PortSpec {
            protocol: Protocol::Udp,
            port: n(53),
            end_port: None
        }),
        1 => Just(PortSpec {
            protocol: Protocol::Tcp,
            port: n(8000),
            end_port: std::num::NonZeroU16::new(8080)
        }),
        1 => Just(PortSpec {
            protocol: Protocol::Udp,
            port: None,
            end_port: None
        }),
        2 => Just(named("http", Protocol::Tcp)),
        1 => Just(named("http", Protocol::Udp)),
        2 => Just(named("dns", Protocol::Udp)),
    ]
}

fn rule_s() -> impl Strategy<Value = Rule> {
    (
        prop::collection::vec(peer(), 0..3),
        prop::collection::vec(port_spec(), 0..3),
    )
        .prop_map(|(peers, ports)| Rule { peers, ports })
}

fn types(choice: u8) -> Option<PolicyTypes> {
    match choice % 4 {
        0 => None,
        1 => Some(PolicyTypes {
            ingress: true,
            egress: false,
        }),
        2 => Some(PolicyTypes {
            ingress: false,
            egress: true,
        }),
        _ => Some(PolicyTypes {
            ingress: true,
            egress: true,
        }),
    }
}

fn policy_s() -> impl Strategy<Value = Policy> {
    (
        0..4usize,
        0..8usize,
        selector(),
        0..4u8,
        prop::collection::vec(rule_s(), 0..3),
        prop::collection::vec(rule_s(), 0..3),
    )
        .prop_map(|(ns, id, sel, t, ingress, egress)| Policy {
            namespace: NSS[ns].to_owned(),
            name: format!("p{id}"),
            pod_selector: sel,
            policy_types: types(t),
            ingress,
            egress,
        })
}

fn cluster() -> impl Strategy<Value = Snapshot> {
    (
        prop::collection::vec(pod_spec(), 8..=16),
        prop::collection::vec(0..4u8, 3),
        prop::collection::vec(policy_s(), 2..9),
    )
        .prop_map(|(pods, labels, policies)| {
            let nss = (0..3).map(|i| namespace(NSS[i], ns_labels(labels[i])));
            let pods = pods.iter().enumerate().map(|(i, spec)| build_pod(i, spec));
            snapshot(nss, pods, policies)
        })
}

/// One watch event; `usize`s pick an existing object (modulo the count).
#[derive(Debug, Clone)]
enum Event {
    AddPod(usize, PodSpec),
    DeletePod(usize),
    RelabelPod(usize, usize, bool),
    PodIps(usize, u8),
    MovePod(usize, usize),
    PodPorts(usize, u8),
    PodKind(usize, u8),
    AddNamespace(usize, u8),
    /// With `true`, its pods and policies go too.
    DeleteNamespace(usize, bool),
    RelabelNamespace(usize, u8),
    AddPolicy(Policy),
    DeletePolicy(usize),
    EditPolicySelector(usize, Selector),
    EditPolicyRules(usize, Vec<Rule>, Vec<Rule>),
    EditPolicyTypes(usize, u8),
}

fn event() -> impl Strategy<Value = Event> {
    let i = || any::<usize>();
    prop_oneof![
        2 => (0..20usize, pod_spec()).prop_map(|(id, s)| Event::AddPod(id, s)),
        1 => i().prop_map(Event::DeletePod),
        3 => (i(), 0..3usize, any::<bool>()).prop_map(|(p, a, t)| Event::RelabelPod(p, a, t)),
        2 => (i(), 0..6u8).prop_map(|(p, c)| Event::PodIps(p, c)),
        2 => (i(), 0..3usize).prop_map(|(p, n)| Event::MovePod(p, n)),
        2 => (i(), 0..6u8).prop_map(|(p, c)| Event::PodPorts(p, c)),
        1 => (i(), 0..8u8).prop_map(|(p, c)| Event::PodKind(p, c)),
        1 => (0..4usize, 0..4u8).prop_map(|(n, c)| Event::AddNamespace(n, c)),
        1 => (i(), any::<bool>()).prop_map(|(n, c)| Event::DeleteNamespace(n, c)),
        2 => (i(), 0..4u8).prop_map(|(n, c)| Event::RelabelNamespace(n, c)),
        1 => policy_s().prop_map(Event::AddPolicy),
        1 => i().prop_map(Event::DeletePolicy),
        1 => (i(), selector()).prop_map(|(p, s)| Event::EditPolicySelector(p, s)),
        2 => (
            i(),
            prop::collection::vec(rule_s(), 0..3),
            prop::collection::vec(rule_s(), 0..3)
        )
            .prop_map(|(p, ing, eg)| Event::EditPolicyRules(p, ing, eg)),
        1 => (i(), 0..4u8).prop_map(|(p, t)| Event::EditPolicyTypes(p, t)),
    ]
}

// ---------- applying events ----------

fn nth<K: Clone, V>(map: &BTreeMap<K, V>, i: usize) -> Option<K> {
    (!map.is_empty()).then(|| map.keys().nth(i % map.len()).unwrap().clone())
}

fn pod_id(p: &Pod) -> usize {
    p.name.trim_start_matches("pod").parse().unwrap()
}

/// Applies `ev` to `s`: the keys it touched and what it did, in words.
fn apply(s: &mut Snapshot, ev: &Event) -> (Changes, String) {
    let mut ch = Changes::default();
    let what = match ev {
        Event::AddPod(id, spec) => {
            let p = build_pod(*id, spec);
            let what = format!("add/replace pod {p:?}");
            ch.pods.insert(p.key());
            s.add_pod(p);
            what
        }
        Event::AddNamespace(n, c) => {
            let ns = namespace(NSS[*n], ns_labels(*c));
            ch.namespaces.insert(ns.name.clone());
            let what = format!("add/replace namespace {} {:?}", ns.name, ns.labels);
            s.add_namespace(ns);
            what
        }
        Event::AddPolicy(p) => {
            ch.policies
                .insert(NamespacedName::new(p.namespace.clone(), p.name.clone()));
            s.add_policy(p.clone());
            format!("add/replace policy {p:?}")
        }
        Event::DeletePod(i)
        | Event::RelabelPod(i, ..)
        | Event::PodIps(i, _)
        | Event::MovePod(i, _)
        | Event::PodPorts(i, _)
        | Event::PodKind(i, _) => {
            let Some(key) = nth(&s.pods, *i) else {
                return (ch, format!("{ev:?}: no pod"));
            };
            ch.pods.insert(key.clone());
            if matches!(ev, Event::DeletePod(_)) {
                s.pods.remove(&key);
                return (ch, format!("delete pod {key}"));
            }
            let old = (*s.pods[&key]).clone();
            let id = pod_id(&old);
            let new = match ev {
                Event::RelabelPod(_, app, tier) => relabel(old, *app, *tier),
                Event::PodIps(_, c) => with_ips(old, id, *c),
                Event::MovePod(_, n) => old.node(NODES[*n]),
                Event::PodPorts(_, c) => with_ports(old, *c),
                Event::PodKind(_, c) => with_kind(old, *c),
                _ => unreachable!(),
            };
            let what = format!("{ev:?} -> {new:?}");
            s.add_pod(new);
            what
        }
        Event::DeleteNamespace(i, cascade) => {
            let Some(name) = nth(&s.namespaces, *i) else {
                return (ch, format!("{ev:?}: no namespace"));
            };
            s.namespaces.remove(&name);
            ch.namespaces.insert(name.clone());
            if *cascade {
                let pods: Vec<_> = s
                    .pods
                    .keys()
                    .filter(|k| *k.namespace == *name)
                    .cloned()
                    .collect();
                let policies: Vec<_> = s
                    .policies
                    .keys()
                    .filter(|k| *k.namespace == *name)
                    .cloned()
                    .collect();
                for k in pods {
                    s.pods.remove(&k);
                    ch.pods.insert(k);
                }
                for k in policies {
                    s.policies.remove(&k);
                    ch.policies.insert(k);
                }
                format!("delete namespace {name} with its pods and policies")
            } else {
                format!("delete namespace {name} (its pods stay)")
            }
        }
        Event::RelabelNamespace(i, c) => {
            let Some(name) = nth(&s.namespaces, *i) else {
                return (ch, format!("{ev:?}: no namespace"));
            };
            ch.namespaces.insert(name.clone());
            s.add_namespace(namespace(&name, ns_labels(*c)));
            format!("relabel namespace {name} {:?}", ns_labels(*c))
        }
        Event::DeletePolicy(i)
        | Event::EditPolicySelector(i, _)
        | Event::EditPolicyRules(i, ..)
        | Event::EditPolicyTypes(i, _) => {
            let Some(key) = nth(&s.policies, *i) else {
                return (ch, format!("{ev:?}: no policy"));
            };
            ch.policies.insert(key.clone());
            if matches!(ev, Event::DeletePolicy(_)) {
                s.policies.remove(&key);
                return (ch, format!("delete policy {key}"));
            }
            let mut p = (*s.policies[&key]).clone();
            match ev {
                Event::EditPolicySelector(_, sel) => p.pod_selector = sel.clone(),
                Event::EditPolicyRules(_, ing, eg) => {
                    p.ingress = ing.clone();
                    p.egress = eg.clone();
                }
                Event::EditPolicyTypes(_, t) => p.policy_types = types(*t),
                _ => unreachable!(),
            }
            let what = format!("edit policy {key} -> {p:?}");
            s.add_policy(p);
            what
        }
    };
    (ch, what)
}

/// The local pods and (policy, direction)s that differ, both versions.
fn diff(got: &Resolution, want: &Resolution) -> String {
    let mut out = String::new();
    for w in want.pods.iter() {
        match got.pods.iter().find(|g| g.key == w.key) {
            Some(g) if g == w => {}
            g => out += &format!("pod {}:\n  got  {g:?}\n  want {w:?}\n", w.key),
        }
    }
    for g in got
        .pods
        .iter()
        .filter(|g| !want.pods.iter().any(|w| w.key == g.key))
    {
        out += &format!("pod {}: got {g:?}, want nothing\n", g.key);
    }
    for w in &want.policies {
        match got
            .policies
            .iter()
            .find(|g| g.key == w.key && g.direction == w.direction)
        {
            Some(g) if g == w => {}
            g => {
                out += &format!(
                    "policy {} {}:\n  got  {g:?}\n  want {w:?}\n",
                    w.key, w.direction
                )
            }
        }
    }
    for g in got.policies.iter().filter(|g| {
        !want
            .policies
            .iter()
            .any(|w| w.key == g.key && w.direction == g.direction)
    }) {
        out += &format!(
            "policy {} {}: got {g:?}, want nothing\n",
            g.key, g.direction
        );
    }
    out
}

/// Runs the stream: `(event, hold)`; a held event is synced together with
/// the next ones (up to 4 in a batch).
fn run(initial: Snapshot, events: &[(Event, bool)]) -> Result<(), TestCaseError> {
    let mut s = initial;
    let mut prev = Arc::new(s.clone());
    // Each node's resolver, and the builder's cache of its sets.
    let mut resolvers: Vec<(&str, Incremental, BuildCache)> = NODES[..2]
        .iter()
        .map(|&n| (n, Incremental::new(n), BuildCache::default()))
        .collect();
    for (node, inc, sets) in &mut resolvers {
        let got = inc.resolve(&prev, None);
        prop_assert!(inc.work().full);
        prop_assert_eq!(&build_cached(&got, &Options::default(), sets), &build(&got));
        prop_assert_eq!(got, resolve(&prev, node));
    }
    let mut log: Vec<String> = Vec::new();
    let (mut pending, mut batch) = (Changes::default(), 0);
    for (i, (ev, hold)) in events.iter().enumerate() {
        let (changes, what) = apply(&mut s, ev);
        log.push(what);
        pending.merge(changes);
        batch += 1;
        if *hold && batch < 4 && i + 1 < events.len() {
            continue;
        }
        let next = Arc::new(s.clone());
        // The test's own bookkeeping: every real change is listed.
        let real = Changes::between(&prev, &next);
        prop_assert!(
            real.pods.is_subset(&pending.pods)
                && real.namespaces.is_subset(&pending.namespaces)
                && real.policies.is_subset(&pending.policies),
            "test bug: {real:?} not in {pending:?}"
        );
        for (node, inc, sets) in &mut resolvers {
            let got = inc.resolve(&next, Some(&pending));
            let want = resolve(&next, node);
            prop_assert!(
                !inc.work().full,
                "an incremental call resolved from scratch"
            );
            prop_assert!(
                got == want,
                "node {node}: {} differences after the batch {:?}\n{}\nevents (-- = sync):\n{}",
                differences(&got, &want),
                pending,
                diff(&got, &want),
                log.join("\n")
            );
            // The cached build is the build of the same resolution.
            let cached = build_cached(&got, &Options::default(), sets);
            let fresh = build(&want);
            prop_assert!(cached == fresh, "node {node}: the cached build differs");
        }
        log.push("--".to_owned());
        prev = next;
        pending = Changes::default();
        batch = 0;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn incremental_equals_full_after_every_event(
        initial in cluster(),
        events in prop::collection::vec((event(), prop::bool::weighted(0.3)), 1..30),
    ) {
        run(initial, &events)?;
    }
}

// ---------- deterministic: the cost of a change ----------

/// Namespaces a (team=red), b (team=blue), c (no labels), d (env=prod);
/// local pods in a and b; `c/idle` on another node, selected by no peer.
fn costed() -> Snapshot {
    snapshot(
        [
            namespace("a", [("team", "red")]),
            namespace("b", [("team", "blue")]),
            namespace("c", []),
            namespace("d", [("env", "prod")]),
        ],
        [
            pod("a", "web")
                .labels([("app", "web")])
                .ip("10.0.0.1")
                .node(NODE)
                .port("http", 80, Protocol::Tcp),
            pod("a", "db")
                .labels([("app", "db")])
                .ip("10.0.0.2")
                .node("node1"),
            pod("b", "api")
                .labels([("app", "api")])
                .ip("10.0.0.3")
                .node(NODE),
            pod("c", "idle")
                .labels([("app", "idle")])
                .ip("10.0.0.4")
                .node("node1"),
            pod("d", "job")
                .labels([("app", "job")])
                .ip("10.0.0.5")
                .node("node1"),
        ],
        [
            // a: from its own db pods.
            policy("a", "from-db")
                .select(Selector::labels([("app", "web")]))
                .ingress(
                    rule()
                        .pods(Selector::labels([("app", "db")]))
                        .named_port(Protocol::Tcp, "http"),
                ),
            // a: from every pod of red namespaces.
            policy("a", "from-red").ingress(rule().namespaces(Selector::labels([("team", "red")]))),
            // b: to app=db pods of blue namespaces.
            policy("b", "to-blue-db").types(false, true).egress(
                rule()
                    .pods_in(
                        Selector::labels([("team", "blue")]),
                        Selector::labels([("app", "db")]),
                    )
                    .port(Protocol::Tcp, 5432),
            ),
            // b: from prod namespaces.
            policy("b", "from-prod")
                .ingress(rule().namespaces(Selector::everything().with("env", Operator::Exists))),
            // c has no local pod: never compiled.
            policy("c", "deny"),
        ],
    )
}

/// An incremental resolver started on `s` from scratch, checked against
/// the full resolve.
fn started(s: &Snapshot) -> (Incremental, Arc<Snapshot>) {
    let mut inc = Incremental::new(NODE);
    let arc = Arc::new(s.clone());
    assert_eq!(inc.resolve(&arc, None), resolve(&arc, NODE));
    (inc, arc)
}

/// Starts an incremental resolver on [`costed`]'s snapshot `s`.
fn start(s: &Snapshot) -> (Incremental, Arc<Snapshot>) {
    let (inc, arc) = started(s);
    let w = inc.work();
    assert!(w.full);
    assert_eq!((w.compiled, w.kept), (4, 0), "the 4 policies of a and b");
    (inc, arc)
}

/// Moves to `next` with the changes between the two snapshots; checks the
/// result against the full resolve and returns what the resolver did.
fn step_work(inc: &mut Incremental, prev: &Snapshot, next: Snapshot) -> Work {
    let changes = Changes::between(prev, &next);
    let next = Arc::new(next);
    let got = inc.resolve(&next, Some(&changes));
    let want = resolve(&next, NODE);
    assert!(got == want, "{changes:?}:\n{}", diff(&got, &want));
    let w = inc.work();
    assert!(!w.full);
    w
}

/// [`step_work`] for a change that relinks nothing: (compiled, kept).
fn step(inc: &mut Incremental, prev: &Snapshot, next: Snapshot) -> (usize, usize) {
    let w = step_work(inc, prev, next);
    assert_eq!(w.relinked, 0, "{w:?}");
    (w.compiled, w.kept)
}

/// (compiled, relinked, kept) of a [`Work`].
fn counts(w: Work) -> (usize, usize, usize) {
    (w.compiled, w.relinked, w.kept)
}

#[test]
fn relabelling_a_pod_no_peer_selects_compiles_nothing() {
    let s = costed();
    let (mut inc, _) = start(&s);
    let mut next = s.clone();
    next.add_pod(
        pod("c", "idle")
            .labels([("app", "other")])
            .ip("10.0.0.4")
            .node("node1"),
    );
    assert_eq!(step(&mut inc, &s, next), (0, 4));
}

#[test]
fn moving_a_peer_pod_relinks_the_policies_reading_it() {
    let s = costed();
    let (mut inc, _) = start(&s);
    // a/db is a peer of a/from-db (app=db) and of a/from-red (team=red):
    // a new address moves it in both peer sets, and the two policies
    // keep their rules with the new sets.
    let mut next = s.clone();
    next.add_pod(
        pod("a", "db")
            .labels([("app", "db")])
            .ip("10.0.0.22")
            .node("node1"),
    );
    assert_eq!(counts(step_work(&mut inc, &s, next.clone())), (0, 2, 2));

    // Relabelled out of app=db: out of a/from-db's set, relinked; still
    // in a/from-red's at the same address, kept.
    let s = next;
    let mut next = s.clone();
    next.add_pod(
        pod("a", "db")
            .labels([("app", "cache")])
            .ip("10.0.0.22")
            .node("node1"),
    );
    assert_eq!(counts(step_work(&mut inc, &s, next)), (0, 1, 3));
}

#[test]
fn two_peer_pods_at_one_address_leave_it_to_the_one_that_stays() {
    let s = costed();
    let (mut inc, _) = start(&s);
    // A second db pod at a/db's address: the set holds the address once.
    let mut next = s.clone();
    next.add_pod(
        pod("a", "db2")
            .labels([("app", "db")])
            .ip("10.0.0.2")
            .node("node1"),
    );
    step_work(&mut inc, &s, next.clone());
    // Either leaves, then the other: the address stays while one pod
    // holds it, named after that pod (checked against a full resolve).
    for gone in ["db", "db2"] {
        let s = next.clone();
        let mut one_left = s.clone();
        one_left
            .pods
            .remove(&nftpolicy_core::model::NamespacedName::new("a", gone));
        step_work(&mut inc, &s, one_left.clone());
        let resolution = inc.resolve(&Arc::new(one_left.clone()), Some(&Changes::default()));
        let held = resolution.policies.iter().any(|p| {
            p.rules.iter().any(|r| match &r.peers {
                nftpolicy_core::resolve::Peers::Addrs(set) => {
                    set.addrs.contains(&"10.0.0.2".parse().expect("address"))
                }
                nftpolicy_core::resolve::Peers::Any => false,
            })
        });
        assert!(held, "the address stays with the other pod");
        step_work(&mut inc, &one_left, s);
    }
}

#[test]
fn a_peer_pod_that_an_ip_block_or_an_egress_named_port_reads_compiles_the_policy() {
    let mut s = costed();
    // A peer set with an ipBlock is computed again, not patched; an egress
    // named port reads the peers' ports (none has "pg" yet).
    s.add_policy(
        policy("a", "from-db-or-block").ingress(
            rule()
                .pods(Selector::labels([("app", "db")]))
                .ip_block("192.168.0.0/16", &[]),
        ),
    );
    s.add_policy(
        policy("b", "to-db-by-name").types(false, true).egress(
            rule()
                .pods_in(Selector::everything(), Selector::labels([("app", "db")]))
                .named_port(Protocol::Tcp, "pg"),
        ),
    );
    let (mut inc, _) = started(&s);
    let mut next = s.clone();
    next.add_pod(
        pod("a", "db")
            .labels([("app", "db")])
            .ip("10.0.0.22")
            .node("node1")
            .port("pg", 5432, Protocol::Tcp),
    );
    // Compiled: the two new ones; relinked: a/from-db and a/from-red;
    // kept: b/from-prod and b/to-blue-db.
    assert_eq!(counts(step_work(&mut inc, &s, next)), (2, 2, 2));
}

#[test]
fn editing_one_policy_compiles_exactly_it() {
    let s = costed();
    let (mut inc, _) = start(&s);
    let mut next = s.clone();
    next.add_policy(
        policy("b", "to-blue-db").types(false, true).egress(
            rule()
                .pods_in(
                    Selector::labels([("team", "blue")]),
                    Selector::labels([("app", "db")]),
                )
                .port(Protocol::Tcp, 5433),
        ),
    );
    assert_eq!(step(&mut inc, &s, next), (1, 3));
}

#[test]
fn relabelling_a_namespace_relinks_the_policies_whose_namespace_selector_tells_it_apart() {
    let s = costed();
    let (mut inc, _) = start(&s);

    // c: {} -> team=blue: only b/to-blue-db's selector matches (new labels).
    let mut next = s.clone();
    next.add_namespace(namespace("c", [("team", "blue")]));
    assert_eq!(counts(step_work(&mut inc, &s, next.clone())), (0, 1, 3));

    // b: team=blue -> team=red: to-blue-db matched the old labels,
    // from-red matches the new ones (b/api moves into its set);
    // from-prod matches neither.
    let s = next;
    let mut next = s.clone();
    next.add_namespace(namespace("b", [("team", "red")]));
    assert_eq!(counts(step_work(&mut inc, &s, next.clone())), (0, 2, 2));

    // d: env=prod -> env=test: from-prod matches both versions, and
    // finds the same pods: nothing to do.
    let s = next;
    let mut next = s.clone();
    next.add_namespace(namespace("d", [("env", "test")]));
    assert_eq!(step(&mut inc, &s, next.clone()), (0, 4));

    // d: env=test -> no labels: from-prod matched the old labels only
    // (d/job leaves its set).
    let s = next;
    let mut next = s.clone();
    next.add_namespace(namespace("d", []));
    assert_eq!(counts(step_work(&mut inc, &s, next)), (0, 1, 3));
}

#[test]
fn a_namespace_relabelled_with_a_pod_changed_in_the_same_sync() {
    let s = costed();
    let (mut inc, _) = start(&s);
    // b turns red (its pods join a/from-red's peers) while b/api changes
    // address, a new pod comes to b, and d/job leaves: the pods the
    // namespace move saw are moved again from where it put them.
    let mut next = s.clone();
    next.add_namespace(namespace("b", [("team", "red")]));
    next.add_namespace(namespace("d", []));
    next.add_pod(
        pod("b", "api")
            .labels([("app", "api")])
            .ip("10.0.0.33")
            .node(NODE),
    );
    next.add_pod(
        pod("b", "new")
            .labels([("app", "db")])
            .ip("10.0.0.34")
            .node("node1"),
    );
    next.pods
        .remove(&nftpolicy_core::model::NamespacedName::new("d", "job"));
    step_work(&mut inc, &s, next.clone());
    // And back.
    step_work(&mut inc, &next, s);
}

#[test]
fn an_egress_named_port_open_to_every_peer_reads_every_pod() {
    let mut s = costed();
    s.add_policy(
        policy("b", "to-http")
            .types(false, true)
            .egress(rule().named_port(Protocol::Tcp, "http")),
    );
    let (mut inc, _) = started(&s);
    // c/idle, selected by no peer, opens an http port: b/to-http sees it.
    let mut next = s.clone();
    next.add_pod(
        pod("c", "idle")
            .labels([("app", "idle")])
            .ip("10.0.0.4")
            .node("node1")
            .port("http", 8080, Protocol::Tcp),
    );
    assert_eq!(step(&mut inc, &s, next), (1, 4));
}

#[test]
fn changes_listing_unchanged_objects_are_harmless() {
    let s = costed();
    let (mut inc, arc) = start(&s);
    let spurious = Changes {
        pods: [
            NamespacedName::new("a", "web"),
            NamespacedName::new("a", "db"),
            NamespacedName::new("zz", "gone"),
        ]
        .into(),
        namespaces: ["a".to_owned(), "b".to_owned(), "zz".to_owned()].into(),
        policies: Default::default(),
    };
    // The same snapshot, and an equal copy (other `Arc`s).
    for snap in [Arc::clone(&arc), Arc::new((*arc).clone())] {
        assert_eq!(inc.resolve(&snap, Some(&spurious)), resolve(&snap, NODE));
        assert_eq!((inc.work().compiled, inc.work().kept), (0, 4));
    }
    // A listed policy is compiled again, to the same result.
    let with_policy = Changes {
        policies: [
            NamespacedName::new("a", "from-db"),
            NamespacedName::new("zz", "none"),
        ]
        .into(),
        ..spurious
    };
    assert_eq!(inc.resolve(&arc, Some(&with_policy)), resolve(&arc, NODE));
    assert_eq!((inc.work().compiled, inc.work().kept), (1, 3));
    let kept = inc.resolve(&arc, Some(&Changes::default()));
    assert_eq!(inc.check(&arc, &kept), 0);
}

#[test]
fn check_finds_a_resolver_fed_incomplete_changes() {
    let s = costed();
    let (mut inc, _) = start(&s);

    // A correct stream: check finds nothing.
    let mut s1 = s.clone();
    s1.add_pod(
        pod("c", "idle")
            .labels([("app", "other")])
            .ip("10.0.0.4")
            .node("node1"),
    );
    step(&mut inc, &s, s1.clone());
    let mut s2 = s1.clone();
    s2.add_namespace(namespace("c", [("team", "red")]));
    step_work(&mut inc, &s1, s2.clone());
    let s2 = Arc::new(s2);
    let kept = inc.resolve(&s2, Some(&Changes::default()));
    assert_eq!(inc.check(&s2, &kept), 0);

    // a/db (a peer of a/from-db) relabelled, but not listed.
    let mut s3 = (*s2).clone();
    s3.add_pod(
        pod("a", "db")
            .labels([("app", "cache")])
            .ip("10.0.0.2")
            .node("node1"),
    );
    let s3 = Arc::new(s3);
    let stale = inc.resolve(&s3, Some(&Changes::default()));
    assert_ne!(stale, resolve(&s3, NODE));
    assert!(inc.check(&s3, &stale) > 0);
    // The kept state was dropped: the next call starts over, and is right.
    assert_eq!(
        inc.resolve(&s3, Some(&Changes::default())),
        resolve(&s3, NODE)
    );
    assert!(inc.work().full);
}

/// The builder's cache: after a change that touches no peer set, every set
/// of the last build is reused; after one that moves a pod into peer sets,
/// those are written anew; and the ruleset is the fresh build's each time.
#[test]
fn the_cached_build_reuses_exactly_the_sets_whose_peers_did_not_change() {
    use nftpolicy_testkit::synth::{cluster, Spec, LOCAL_NODE};
    let s = Arc::new(cluster(Spec {
        pods: 1_000,
        policies: 100,
        local_pods: 110,
    }));
    let mut inc = Incremental::new(LOCAL_NODE);
    let mut sets = BuildCache::default();
    let first = build_cached(&inc.resolve(&s, None), &Options::default(), &mut sets);
    assert_eq!(sets.reused_sets(), 0, "nothing to reuse on the first build");
    let total = first.sets.len();
    assert!(total > 10, "{total} sets");

    // A label no selector reads, on a pod of another node that peers
    // select: nothing to compile.
    let mut unread = (*s).clone();
    let remote = unread
        .pods
        .iter()
        .find(|(_, p)| p.node.as_deref() != Some(LOCAL_NODE) && p.ignored().is_none())
        .map(|(k, _)| k.clone())
        .expect("a remote pod");
    let p = unread.pods.get_mut(&remote).expect("there");
    Arc::make_mut(p)
        .labels
        .insert("note".into(), "unread".into());
    let unread = Arc::new(unread);
    let got = inc.resolve(&unread, Some(&Changes::between(&s, &unread)));
    assert_eq!(inc.work().compiled, 0, "a label no verdict depends on");
    assert!(got == resolve(&unread, LOCAL_NODE));

    // The same on a namespace: no namespace selector tells its old
    // labels from its new ones, so no set changes and nothing is
    // compiled or relinked.
    let mut quiet = (*unread).clone();
    let ns = Arc::make_mut(quiet.namespaces.get_mut("ns-0").expect("ns-0"));
    ns.labels.insert("note".into(), "unread".into());
    let quiet = Arc::new(quiet);
    let got = inc.resolve(&quiet, Some(&Changes::between(&unread, &quiet)));
    let w = inc.work();
    assert_eq!((w.compiled, w.relinked), (0, 0), "{w:?}");
    let rs = build_cached(&got, &Options::default(), &mut sets);
    assert!(
        rs == build(&resolve(&quiet, LOCAL_NODE)),
        "the cached build differs"
    );
    assert!(rs.sets == first.sets, "the same sets");
    assert_eq!(sets.reused_sets(), total, "every set reused");
    let pod_chains = rs.chains.iter().filter(|c| c.base.is_none()).count();
    assert_eq!(sets.reused_chains(), pod_chains, "every pod chain reused");

    // A pod the app-1 peers select: the sets holding it are new.
    let mut moved = (*quiet).clone();
    moved.add_pod(
        pod("ns-0", "joins")
            .labels([("app", "app-1"), ("tier", "front")])
            .ip("10.250.0.2")
            .node("node-elsewhere"),
    );
    let moved = Arc::new(moved);
    let got = inc.resolve(&moved, Some(&Changes::between(&quiet, &moved)));
    let next = build_cached(&got, &Options::default(), &mut sets);
    assert!(
        next == build(&resolve(&moved, LOCAL_NODE)),
        "the cached build differs"
    );
    let grown = next
        .sets
        .iter()
        .filter(|set| set.contains(&"10.250.0.2".parse().unwrap()))
        .count();
    assert!(grown > 0, "some peer set selects the new pod");
    let looking_up_new = next
        .chains
        .iter()
        .filter(|c| {
            c.base.is_none()
                && c.rules.iter().any(|r| {
                    r.matches.iter().any(|m| {
                        m.set().is_some_and(|name| {
                            next.sets.iter().any(|s| {
                                s.name == name && s.contains(&"10.250.0.2".parse().unwrap())
                            })
                        })
                    })
                })
        })
        .count();
    assert!(looking_up_new > 0);
    // Every chain is taken over: the untouched ones as they were, those
    // looking up a grown set (its size still on the same side of the merge
    // limit) with that set made again.
    assert_eq!(
        sets.reused_chains(),
        pod_chains,
        "{looking_up_new} of {pod_chains} look up a grown set"
    );
    assert!(
        sets.reused_sets() + grown <= next.sets.len() && sets.reused_sets() > next.sets.len() / 2,
        "reused {} of {} sets, {grown} hold the new pod",
        sets.reused_sets(),
        next.sets.len()
    );
    // A grown peer set keeps the elements it had, comments and all (copied
    // from the last build, in whole chunks where the peers' chunks are
    // shared), including sets of many chunks. (`allow-*` sets, unions of
    // several peer sets, are written whole.)
    let joined: std::net::IpAddr = "10.250.0.2".parse().unwrap();
    let mut large = 0;
    let grown_peers = next
        .sets
        .iter()
        .filter(|set| set.name.starts_with("peers-") && set.contains(&joined));
    for set in grown_peers {
        let old = rs
            .sets
            .iter()
            .find(|o| o.name == set.name)
            .expect("grown, not new");
        assert_eq!(set.elements.len(), old.elements.len() + 1, "{}", set.name);
        let kept = set
            .elements
            .chunks()
            .iter()
            .filter(|c| old.elements.chunks().iter().any(|o| Arc::ptr_eq(c, o)))
            .count();
        assert!(
            kept + 1 >= old.elements.chunks().len(),
            "{}: {kept} of {} chunks kept",
            set.name,
            old.elements.chunks().len()
        );
        large += usize::from(old.elements.len() > 128);
        for e in set.elements.iter().filter(|e| !e.range.contains(&joined)) {
            let was = old
                .elements
                .iter()
                .find(|o| o.range == e.range)
                .expect("kept");
            let same = match (&e.comment, &was.comment) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (a, b) => a == b,
            };
            assert!(same, "{}: {:?} written anew", set.name, e.range);
        }
    }
    assert!(large > 0, "a grown set of more than two chunks");
}
