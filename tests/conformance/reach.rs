//! The upstream truth-table vocabulary (`reachability.go` of the
//! Kubernetes `[Feature:NetworkPolicy]` e2e suite), written for the lab:
//! pods are named `"x/a"` as upstream's `PodString`, the lab host of pod
//! `x/a` is `x-a`.

use std::collections::BTreeMap;

use nftpolicy_core::model::{Policy, Snapshot};
use nftpolicy_lab::{ProbeKey, Proto};

/// The upstream model: namespaces x, y, z with pods a, b, c each.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
/// Pod names of every namespace.
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// Every pod string of the model, `x/a` … `z/c`.
pub fn all_pods() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

/// Lab host name of a pod string (`x/a` → `x-a`).
pub fn host(pod: &str) -> String {
    pod.replace('/', "-")
}

/// Upstream's `Peer`: `None` matches every namespace / pod.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub ns: Option<&'static str>,
    pub pod: Option<&'static str>,
}

/// `&Peer{}`: every pod.
pub const ANY: Peer = Peer {
    ns: None,
    pod: None,
};

/// `&Peer{Namespace: ns}`.
pub fn in_ns(ns: &'static str) -> Peer {
    Peer {
        ns: Some(ns),
        pod: None,
    }
}

/// `&Peer{Namespace: ns, Pod: pod}`.
pub fn the_pod(ns: &'static str, pod: &'static str) -> Peer {
    Peer {
        ns: Some(ns),
        pod: Some(pod),
    }
}

impl Peer {
    fn matches(&self, pod: &str) -> bool {
        let (ns, name) = pod.split_once('/').expect("pod string is ns/pod");
        self.ns.is_none_or(|n| n == ns) && self.pod.is_none_or(|p| p == name)
    }
}

/// Upstream's `Reachability.Expected`: a 9 × 9 truth table for ONE probed
/// port and protocol, keyed by pod strings.
#[derive(Clone, Debug)]
pub struct Reach {
    expected: BTreeMap<(String, String), bool>,
}

impl Reach {
    /// `NewReachability(allPods, default)`.
    pub fn new(default: bool) -> Self {
        let pods = all_pods();
        let expected = pods
            .iter()
            .flat_map(|f| pods.iter().map(move |t| ((f.clone(), t.clone()), default)))
            .collect();
        Self { expected }
    }

    /// `Expect(from, to, connected)`.
    pub fn expect(mut self, from: &str, to: &str, connected: bool) -> Self {
        let key = (from.to_owned(), to.to_owned());
        assert!(
            self.expected.contains_key(&key),
            "no pod pair {from} -> {to}"
        );
        self.expected.insert(key, connected);
        self
    }

    /// `ExpectAllIngress(pod, connected)`: everything into `pod`.
    pub fn expect_all_ingress(mut self, pod: &str, connected: bool) -> Self {
        for ((_, to), v) in self.expected.iter_mut() {
            if to == pod {
                *v = connected;
            }
        }
        self
    }

    /// `ExpectAllEgress(pod, connected)`: everything out of `pod`.
    pub fn expect_all_egress(mut self, pod: &str, connected: bool) -> Self {
        for ((from, _), v) in self.expected.iter_mut() {
            if from == pod {
                *v = connected;
            }
        }
        self
    }

    /// `ExpectPeer(from, to, connected)`.
    pub fn expect_peer(mut self, from: Peer, to: Peer, connected: bool) -> Self {
        for ((f, t), v) in self.expected.iter_mut() {
            if from.matches(f) && to.matches(t) {
                *v = connected;
            }
        }
        self
    }

    /// The expectation for one matrix cell (lab host names). Loopback: the
    /// upstream suite IGNORES pod → own address (`ignoreLoopback`, kubernetes
    /// issue 95879). In the lab such a probe never leaves the pod's network
    /// namespace (it goes over `lo`, never through a node hook), so it always
    /// connects; we assert that, as upstream's `AllowLoopback()` would.
    pub fn get(&self, from_host: &str, to_host: &str) -> Option<bool> {
        if from_host == to_host {
            return Some(true);
        }
        self.expected
            .iter()
            .find(|((f, t), _)| host(f) == from_host && host(t) == to_host)
            .map(|(_, v)| *v)
    }
}

/// The port/protocol combinations every model pod serves; every step
/// probes all of them.
pub const PORTS: [(Proto, u16); 4] = [
    (Proto::Tcp, 80),
    (Proto::Tcp, 81),
    (Proto::Udp, 80),
    (Proto::Udp, 81),
];

/// One `ValidateOrFail(TestCase{ToPort, Protocol, Reachability})`, or one
/// the lab adds; both IP families are probed (the lab pods are dual-stack).
#[derive(Clone, Debug)]
pub struct Check {
    pub proto: Proto,
    pub port: u16,
    pub reach: Reach,
    /// `true`: upstream validates this port/protocol with this table.
    /// `false`: the lab adds it (upstream probes only the ports its test
    /// names; we probe every served port/protocol so that a rule cannot
    /// leak onto a port or protocol it does not name).
    pub upstream: bool,
}

/// Upstream's `ValidateOrFail` on `proto`/`port`.
pub fn validate(proto: Proto, port: u16, reach: Reach) -> Check {
    Check {
        proto,
        port,
        reach,
        upstream: true,
    }
}

/// A validation upstream does not make (see [`Check::upstream`]).
pub fn also(proto: Proto, port: u16, reach: Reach) -> Check {
    Check {
        proto,
        port,
        reach,
        upstream: false,
    }
}

/// A lab case without ports: the same table on every served port/protocol.
pub fn same_everywhere(reach: Reach) -> Vec<Check> {
    PORTS
        .iter()
        .map(|&(pr, po)| also(pr, po, reach.clone()))
        .collect()
}

/// Upstream validates `proto`/`port` with `reach`; no rule of the case
/// names a port or protocol, so every other served port/protocol must
/// give the same table (added checks).
pub fn every_port(proto: Proto, port: u16, reach: Reach) -> Vec<Check> {
    PORTS
        .iter()
        .map(|&(pr, po)| {
            if (pr, po) == (proto, port) {
                validate(pr, po, reach.clone())
            } else {
                also(pr, po, reach.clone())
            }
        })
        .collect()
}

/// A cluster change made between policy updates (`AddPodLabels`,
/// `AddNamespaceLabel`); undone before the next case (upstream's
/// `DeferCleanup`).
pub type Mutation = fn(&mut Snapshot);

/// One state of a test: the policies that exist from now on (create,
/// update and delete are expressed as the full set), an optional label
/// change, then the validations.
pub struct Step {
    /// What upstream says at this point (`ginkgo.By`), for failure reports.
    pub by: &'static str,
    pub mutate: Option<Mutation>,
    pub policies: Vec<Policy>,
    pub checks: Vec<Check>,
}

/// One upstream `It(...)`, or a case it has that the lab cannot run.
pub struct Case {
    pub name: String,
    pub body: Body,
}

pub enum Body {
    Run(Vec<Step>),
    /// Not run; the reason says exactly why.
    Skip(&'static str),
}

impl Case {
    /// A single-step case.
    pub fn one(name: &str, policies: Vec<Policy>, checks: Vec<Check>) -> Self {
        Self::steps(
            name,
            vec![Step {
                by: "policies created",
                mutate: None,
                policies,
                checks,
            }],
        )
    }

    /// A case with several steps.
    pub fn steps(name: &str, steps: Vec<Step>) -> Self {
        Self {
            name: name.to_owned(),
            body: Body::Run(steps),
        }
    }

    /// A case that is listed but not run.
    pub fn skip(name: &str, why: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            body: Body::Skip(why),
        }
    }
}

/// A step (builder shorthand).
pub fn step(by: &'static str, policies: Vec<Policy>, checks: Vec<Check>) -> Step {
    Step {
        by,
        mutate: None,
        policies,
        checks,
    }
}

/// A step that first changes labels.
pub fn step_after(
    by: &'static str,
    mutate: Mutation,
    policies: Vec<Policy>,
    checks: Vec<Check>,
) -> Step {
    Step {
        by,
        mutate: Some(mutate),
        policies,
        checks,
    }
}

/// The expectation of a probed matrix cell under `checks`.
pub fn expected_cell(checks: &[Check], k: &ProbeKey) -> Option<bool> {
    checks
        .iter()
        .find(|c| c.proto == k.proto && c.port == k.port)
        .and_then(|c| c.reach.get(&k.from, &k.to))
}
