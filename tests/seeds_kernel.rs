//! The five seed tutorials (`docs/tutorials.md`), replayed step by step in
//! the namespace lab with real packets. `tests/seeds.rs` checks the same
//! steps on the ruleset model (explain and the packet tracer); here each
//! tutorial is one lab cluster (`lab::Cluster`: two nodes, an external host)
//! whose pods carry the tutorial's names and labels, and each step changes
//! the policies (or namespace labels) as the tutorial says, applies them
//! incrementally with the real engine, and probes what the tutorial tells.
//!
//! | test | tutorial |
//! | --- | --- |
//! | `calico_advanced_kernel` | Calico "Controlling Ingress and Egress Traffic with Network Policy" |
//! | `webapp_balanced_kernel` | "Network Policies" (Spanish, Calico) |
//! | `cilium_backend_kernel` | Cilium lab "5. Network Policies" |
//! | `handbook_kernel` | kubernetes-handbook "Network Policy" |
//! | `db_policy_kernel` | KodeKloud lecture "Network Policy" (Flannel) |
//!
//! How the tutorials' words map onto the lab:
//!
//! - Pods keep the tutorial's namespaces, names and labels; lab addresses
//!   replace the tutorial's (`10.244.<node>.h`, `fd00:10:244:<node>::h`).
//!   Nodes map onto `node1`/`node2` as in the golden inputs
//!   (`tests/golden/seed-*`); a third node of a tutorial (a control plane
//!   running kube-dns) becomes `node2`. Every pod is dual-stack and every
//!   pod-to-pod fact is checked in both families.
//! - A Service name (`wget nginx`, `curl backend:8080`) is a DNS lookup
//!   (UDP 53 to the kube-dns ClusterIP, DNAT'ed by the lab's kube-proxy
//!   stand-in to the kube-dns pod) and a connection to the Service's
//!   ClusterIP, DNAT'ed to a backend pod; a Service with two replicas is
//!   also checked on each replica's address (kube-proxy may pick either).
//! - The Internet (google.com, a browser, the backup server, "outside") is
//!   the external host `ext` (192.0.2.2, 2001:db8:0:1::2); "another host"
//!   next to it is `ext2` (192.0.2.66). An ipBlock of the tutorial is
//!   rewritten onto these addresses, with a comment; external facts of an
//!   IPv4-only tutorial are checked in IPv4 (and an IPv4 block is shown
//!   not to open IPv6).
//! - `ping` is an ICMP echo (from a raw socket: no `ping` binary here);
//!   `nc -zv host 80`, `wget`, `curl` are TCP connections that also read
//!   the server's reply; `nslookup` is a UDP 53 request.
//!
//! Each step also opens, before the change, a TCP connection that the step
//! keeps allowed and checks that it still carries data after the
//! incremental apply; and each tutorial keeps one connection open from its
//! first step to its last (established flows are never judged again, so it
//! survives even the steps that deny new connections like it).
//!
//! Where a tutorial and the Kubernetes API disagree, the API wins: the
//! assertion follows the API and a comment quotes the tutorial and says why.
//!
//! They need root: as a user they are skipped with a message; under
//! scripts/test.sh (KNP_REQUIRE_KERNEL=1) a missing privilege fails them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nftpolicy_core::model::{Policy, Protocol};
use nftpolicy_core::ruleset::Ruleset;
use nftpolicy_lab::{Cluster, Family, Host, Lab, Proto, Serve, Server, Stack, Stream};
use nftpolicy_nft::ApplyKind;
use nftpolicy_source::files::{self, Format, Loader};
use nftpolicy_testkit::*;

// ---------------------------------------------------------------------------
// Helpers (tests/kernel_checks/)
// ---------------------------------------------------------------------------

mod kernel_checks;
use kernel_checks::*;

// ---------------------------------------------------------------------------
// A tutorial in the lab
// ---------------------------------------------------------------------------

fn ip(h: &Host, f: Family) -> IpAddr {
    h.ip(f)
        .unwrap_or_else(|| panic!("{} has no {f} address", h.name()))
}

const fn tcp(port: u16, name: Option<&'static str>) -> Serve<'static> {
    Serve {
        proto: Proto::Tcp,
        port,
        name,
    }
}

const fn udp(port: u16, name: Option<&'static str>) -> Serve<'static> {
    Serve {
        proto: Proto::Udp,
        port,
        name,
    }
}

/// What kube-dns serves.
const DNS: &[Serve<'static>] = &[
    udp(53, Some("dns")),
    tcp(53, Some("dns-tcp")),
    tcp(9153, Some("metrics")),
];
/// What a web server (nginx, Apache) serves; 443 too, so that "another
/// port is refused" is the policy and not a missing server.
const WEB: &[Serve<'static>] = &[tcp(80, Some("http")), tcp(443, Some("https"))];
/// What a client pod (busybox, network-tools) serves: nothing the
/// tutorials use, but a port to probe it on.
const CLIENT: &[Serve<'static>] = &[tcp(80, None)];

const TCP80: Via = Via::Tcp(80);
const PING: Via = Via::Ping;

/// The golden input of a case (the tutorial's final state), as the CLI loads it.
fn golden(case: &str) -> nftpolicy_core::model::Snapshot {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
        .join("input.yaml");
    let loaded = files::load(std::slice::from_ref(&path))
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    assert!(loaded.problems.is_empty(), "{case}: {:?}", loaded.problems);
    loaded.snapshot
}

/// The golden policies of a case, by name.
fn golden_policies(case: &str) -> BTreeMap<String, Policy> {
    golden(case)
        .policies
        .into_values()
        .map(|p| (p.name.clone(), Policy::clone(&p)))
        .collect()
}

/// Loads one YAML text as a file would be loaded.
fn load_text(text: &str) -> files::Loaded {
    let mut loader = Loader::new();
    loader.add_text(Path::new("tutorial.yaml"), text, Format::Yaml);
    loader.finish()
}

/// One tutorial: its lab cluster and where it is.
struct Tutorial {
    name: &'static str,
    c: Cluster,
    steps: usize,
    /// Opened before the first step, exchanged after every step.
    session: Option<(Stream, String)>,
    servers: Vec<Server>,
    started: Instant,
    /// Later steps the dataplane applied as a full replace.
    full_replaces: usize,
}

impl Tutorial {
    fn new(name: &'static str) -> Self {
        let c = Cluster::new().unwrap_or_else(|e| panic!("{name}: lab cluster: {e}"));
        Self {
            name,
            c,
            steps: 0,
            session: None,
            servers: Vec::new(),
            started: Instant::now(),
            full_replaces: 0,
        }
    }

    fn ns(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.c.add_namespace(name, labels);
    }

    fn pod(
        &mut self,
        node: u8,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        serve: &[Serve<'_>],
    ) -> Host {
        self.c
            .add_pod(node, ns, name, labels, Stack::Dual, serve)
            .unwrap_or_else(|e| panic!("{}: pod {ns}/{name}: {e}", self.name))
    }

    /// An external host (`ext`, or a new one) serving `ports`.
    fn external(&mut self, name: &str, ports: &[(Proto, u16)]) -> Host {
        let host = match self.c.lab.host(name) {
            Ok(h) => h.clone(),
            Err(_) => self.c.lab.add_external(name).unwrap(),
        };
        if !ports.is_empty() {
            self.servers.push(self.c.lab.serve(&host, ports).unwrap());
        }
        host
    }

    /// A node, serving `ports`.
    fn node(&mut self, i: u8, ports: &[(Proto, u16)]) -> Host {
        let host = self.c.lab.node(i).unwrap().clone();
        if !ports.is_empty() {
            self.servers.push(self.c.lab.serve(&host, ports).unwrap());
        }
        host
    }

    /// kube-proxy: `vip:port` DNAT'ed to `backend:target`, both families
    /// (`vips` = IPv4 and IPv6 ClusterIPs).
    fn service(&mut self, vips: [&str; 2], port: u16, proto: Proto, backend: &Host, target: u16) {
        for (vip, f) in vips.iter().zip(Family::ALL) {
            let vip: IpAddr = vip.parse().unwrap();
            self.c
                .lab
                .add_service(
                    SocketAddr::new(vip, port),
                    proto,
                    SocketAddr::new(ip(backend, f), target),
                )
                .unwrap();
        }
    }

    /// Opens the connection that lives through the whole tutorial.
    fn session(&mut self, from: &Host, to: &Host, port: u16) {
        let s = self
            .c
            .lab
            .stream(from, ip(to, Family::V4), port, RETRY)
            .unwrap_or_else(|e| panic!("{}: the session stream: {e}", self.name));
        let mut s = s;
        s.set_timeout(Duration::from_secs(5));
        self.session = Some((s, to.name().to_owned()));
    }

    /// One step of the tutorial: open `keep` (a TCP connection allowed
    /// before the step, and that the step keeps allowed), make the change,
    /// apply it (a full replace the first time, incrementally after, except
    /// where the dataplane must replace the table whole: see below), check
    /// that `keep` and the session still carry data, then run `checks`.
    fn step(
        &mut self,
        title: &str,
        keep: (&Host, &Host, u16),
        change: impl FnOnce(&mut Cluster),
        checks: &[Check],
    ) {
        self.steps += 1;
        let first = self.steps == 1;
        let label = format!("{} step {}: {title}", self.name, self.steps);
        let (from, to, port) = keep;
        // Alternate families from step to step.
        let fam = if self.steps.is_multiple_of(2) && from.ipv6().is_some() && to.ipv6().is_some() {
            Family::V6
        } else {
            Family::V4
        };
        let mut kept = self
            .c
            .lab
            .stream(from, ip(to, fam), port, RETRY)
            .unwrap_or_else(|e| {
                panic!("{label}: the connection to keep could not be opened before the step: {e}")
            });
        let before: BTreeMap<String, Ruleset> = ["node1", "node2"]
            .map(|n| (n.to_owned(), self.c.desired(n)))
            .into();
        // A loaded machine may stall an echo: only a long silence counts.
        kept.set_timeout(Duration::from_secs(5));
        change(&mut self.c);
        let reports = self
            .c
            .apply()
            .unwrap_or_else(|e| panic!("{label}: apply: {e}"));
        for (node, r) in &reports {
            if first {
                assert_eq!(r.kind, ApplyKind::Full, "{label}: {node}: first apply");
            } else if r.kind == ApplyKind::Full {
                // The dataplane replaces the table whole when a chain it
                // keeps changes its comment or hook (nftables cannot
                // update those in place): e.g. a policy edited from "no
                // rules" to one rule. Anything else must be incremental.
                let why = in_place_impossible(&before[node], &self.c.desired(node));
                assert!(
                    why.is_some(),
                    "{label}: {node}: a step is applied incrementally, got {r:?}"
                );
                eprintln!(
                    "{label}: {node}: full replace ({})",
                    why.unwrap_or_default()
                );
                self.full_replaces += 1;
            }
        }
        match kept.exchange() {
            Ok(name) => assert_eq!(name, to.name(), "{label}: kept connection"),
            Err(e) => panic!(
                "{label}: the connection {} -> {} opened before the step no longer carries data: {e}",
                from.name(),
                to.name()
            ),
        }
        if let Some((s, who)) = &mut self.session {
            match s.exchange() {
                Ok(name) => assert_eq!(&name, who, "{label}: session"),
                Err(e) => panic!("{label}: the tutorial's long-lived connection broke: {e}"),
            }
        }
        verify(&self.c.lab, &label, checks);
    }

    fn done(self) {
        eprintln!(
            "{}: {} steps ({} node applies were full replaces) in {:?}",
            self.name,
            self.steps,
            self.full_replaces,
            self.started.elapsed()
        );
    }
}

/// Why `next` cannot be reached from `prev` in place: a chain kept by
/// name whose comment or hook changed.
fn in_place_impossible(prev: &Ruleset, next: &Ruleset) -> Option<String> {
    next.chains.iter().find_map(|d| {
        let a = prev.chain(&d.name)?;
        (a.comment != d.comment || a.base != d.base).then(|| {
            format!(
                "chain {}: comment {:?} -> {:?}",
                d.name, a.comment, d.comment
            )
        })
    })
}

/// `from` -> `to` in IPv4 only (an external fact of an IPv4-only tutorial).
fn v4(from: &Host, to: &Host, vias: &[Via], want: bool, what: &str) -> Vec<Check> {
    flows_in(from, to, Family::V4, vias, want, what)
}

/// Requests to a Service's ClusterIPs (both families), answered by `who`.
fn via_service(
    from: &Host,
    vips: [&str; 2],
    via: Via,
    want: bool,
    who: &Host,
    what: &str,
) -> Vec<Check> {
    vips.iter()
        .map(|v| at(from, v.parse().unwrap(), via, want, what).who(who.name()))
        .collect()
}

// ---------------------------------------------------------------------------
// Seed 000: Calico, "Controlling Ingress and Egress Traffic with Network Policy"
// ---------------------------------------------------------------------------

const DNS_VIPS: [&str; 2] = ["10.96.0.10", "fd00:10:96::a"];

#[test]
fn calico_advanced_kernel() {
    nftpolicy_lab::kernel_test!("seeds_kernel::calico_advanced_kernel");
    let gp = golden_policies("seed-calico-advanced");
    let mut t = Tutorial::new("calico_advanced");
    const DEMO: &str = "advanced-policy-demo";
    t.ns(DEMO, &[]);
    t.ns("default", &[]);
    // Not labelled yet: the tutorial runs `kubectl label namespace
    // kube-system name=kube-system` in the middle.
    t.ns("kube-system", &[]);
    // Node 10.177.182.212 = node1 (access, one nginx), 10.177.182.230 =
    // node2 (the other nginx, kube-dns), as in the golden input.
    let nginx = [("run", "nginx"), ("pod-template-hash", "8586cf59")];
    let nginx_l = t.pod(1, DEMO, "nginx-8586cf59-4xk8z", &nginx, WEB);
    let nginx_r = t.pod(2, DEMO, "nginx-8586cf59-mq5wd", &nginx, WEB);
    let access = t.pod(
        1,
        DEMO,
        "access-472357175-y0m47",
        &[("run", "access")],
        CLIENT,
    );
    let dns = t.pod(
        2,
        "kube-system",
        "coredns-7d8f9c6b5-j2xkq",
        &[("k8s-app", "kube-dns")],
        DNS,
    );
    // "a pod of another namespace" (seeds.rs adds one for that check).
    let busybox = t.pod(2, "default", "busybox", &[("run", "busybox")], CLIENT);
    // google.com.
    let google = t.external("ext", &[(Proto::Tcp, 80), (Proto::Tcp, 443)]);
    t.service(DNS_VIPS, 53, Proto::Udp, &dns, 53);
    t.service(DNS_VIPS, 53, Proto::Tcp, &dns, 53);
    // Service nginx; the lab's DNAT has one backend: the remote replica.
    const NGINX_VIPS: [&str; 2] = ["10.96.0.80", "fd00:10:96::50"];
    t.service(NGINX_VIPS, 80, Proto::Tcp, &nginx_r, 80);

    // `wget -q --timeout=5 nginx -O -`: the lookup, then the page.
    let wget_nginx = |dns_ok: bool, want: bool, what: &str| -> Vec<Check> {
        let mut c = via_service(
            &access,
            DNS_VIPS,
            Via::Udp(53),
            dns_ok,
            &dns,
            &format!("{what}: lookup of nginx"),
        );
        c.extend(via_service(
            &access, NGINX_VIPS, TCP80, want, &nginx_r, what,
        ));
        c.extend(flows(
            &access,
            &nginx_l,
            &[TCP80],
            want,
            &format!("{what} (replica on this node)"),
        ));
        c.extend(flows(
            &access,
            &nginx_r,
            &[TCP80],
            want,
            &format!("{what} (replica on the other node)"),
        ));
        c
    };
    let wget_google = |want: bool, what: &str| v4(&access, &google, &[TCP80], want, what);
    let policies =
        |names: &[&str]| -> Vec<Policy> { names.iter().map(|n| gp[*n].clone()).collect() };

    t.session(&access, &nginx_r, 80);

    let mut checks = wget_nginx(true, true, "wget nginx: the welcome page");
    checks.extend(wget_google(true, "wget google.com"));
    t.step(
        "before any policy",
        (&access, &nginx_r, 80),
        |c| c.set_policies(Vec::<Policy>::new()),
        &checks,
    );

    let mut checks = wget_nginx(true, false, "wget nginx: download timed out");
    checks.extend(wget_google(true, "egress to google.com still allowed"));
    t.step(
        "default-deny-ingress",
        (&access, &google, 80),
        |c| c.set_policies(policies(&["default-deny-ingress"])),
        &checks,
    );

    let mut checks = wget_nginx(true, true, "wget nginx works again");
    // "from any pods in the advanced-policy-demo namespace": only there.
    checks.extend(flows(
        &busybox,
        &nginx_l,
        &[TCP80],
        false,
        "a pod of another namespace",
    ));
    checks.extend(flows(
        &busybox,
        &nginx_r,
        &[TCP80],
        false,
        "a pod of another namespace",
    ));
    // The default deny still covers the access pod itself.
    checks.extend(flows(
        &nginx_l,
        &access,
        &[TCP80],
        false,
        "ingress to the access pod",
    ));
    t.step(
        "access-nginx",
        (&access, &google, 80),
        |c| c.set_policies(policies(&["default-deny-ingress", "access-nginx"])),
        &checks,
    );

    // nslookup nginx: "connection timed out; no servers could be reached";
    // wget google.com: "bad address" (no lookup), and its address is
    // blocked as well.
    let dd = [
        "default-deny-ingress",
        "access-nginx",
        "default-deny-egress",
    ];
    let mut checks = wget_nginx(false, false, "nslookup and wget nginx");
    checks.extend(flows(
        &access,
        &dns,
        &[Via::Udp(53)],
        false,
        "the kube-dns pod itself",
    ));
    checks.extend(wget_google(false, "wget google.com"));
    checks.extend(v4(
        &busybox,
        &google,
        &[TCP80],
        true,
        "default is not isolated",
    ));
    t.step(
        "default-deny-egress",
        (&busybox, &google, 80),
        |c| c.set_policies(policies(&dd)),
        &checks,
    );

    // `kubectl label namespace kube-system name=kube-system`: no policy reads
    // the label yet, so nothing changes.
    t.step(
        "label kube-system name=kube-system",
        (&busybox, &google, 80),
        |c| c.add_namespace("kube-system", &[("name", "kube-system")]),
        &via_service(
            &access,
            DNS_VIPS,
            Via::Udp(53),
            false,
            &dns,
            "still no lookup",
        ),
    );

    let with_dns = [
        "default-deny-ingress",
        "access-nginx",
        "default-deny-egress",
        "allow-dns-access",
    ];
    let dns_step = |what: &str| -> Vec<Check> {
        let mut c = via_service(
            &access,
            DNS_VIPS,
            Via::Udp(53),
            true,
            &dns,
            &format!("{what}: nslookup answers"),
        );
        c.extend(flows(
            &access,
            &dns,
            &[Via::Udp(53)],
            true,
            &format!("{what}: UDP 53 to the pod"),
        ));
        c.extend(flows(
            &access,
            &dns,
            &[Via::Tcp(53)],
            false,
            &format!("{what}: only UDP 53 is allowed"),
        ));
        c.extend(via_service(
            &access,
            NGINX_VIPS,
            TCP80,
            false,
            &nginx_r,
            &format!("{what}: HTTP to nginx still fails"),
        ));
        c.extend(wget_google(
            false,
            &format!("{what}: HTTP to google.com still fails"),
        ));
        c
    };
    t.step(
        "allow-dns-access",
        (&busybox, &google, 80),
        |c| c.set_policies(policies(&with_dns)),
        &dns_step("allow-dns-access"),
    );

    // Not a step of the tutorial, but why it labels kube-system first:
    // without the label, `namespaceSelector: {name: kube-system}` matches
    // nothing.
    t.step(
        "(aside) kube-system without the name label",
        (&busybox, &google, 80),
        |c| c.add_namespace("kube-system", &[]),
        &via_service(
            &access,
            DNS_VIPS,
            Via::Udp(53),
            false,
            &dns,
            "no namespace matches",
        ),
    );
    // Tutorial: "kubectl NetworkPolicy requires a selector running against a
    // label you create for the namespace". Not since Kubernetes 1.21: the API
    // server labels every namespace kubernetes.io/metadata.name, so
    // kube-system is selected by name without labelling it.
    let by_name = policy(DEMO, "allow-dns-access").types(false, true).egress(
        rule()
            .namespaces(labels([("kubernetes.io/metadata.name", "kube-system")]))
            .port(Protocol::Udp, 53),
    );
    t.step(
        "(aside) allow-dns-access by kubernetes.io/metadata.name, no label",
        (&busybox, &google, 80),
        |c| {
            let mut p = policies(&dd);
            p.push(by_name);
            c.set_policies(p);
        },
        &dns_step("metadata.name"),
    );
    t.step(
        "(back to the tutorial) kube-system labelled, allow-dns-access as written",
        (&busybox, &google, 80),
        |c| {
            c.add_namespace("kube-system", &[("name", "kube-system")]);
            c.set_policies(policies(&with_dns));
        },
        &dns_step("allow-dns-access"),
    );

    let mut checks = wget_nginx(true, true, "wget nginx: the welcome page");
    checks.extend(wget_google(false, "wget google.com: download timed out"));
    t.step(
        "allow-egress-to-advance-policy-ns",
        (&busybox, &google, 80),
        |c| c.set_policies(gp.values().cloned()),
        &checks,
    );
    let g = golden("seed-calico-advanced");
    assert_eq!(
        t.c.snapshot.policies, g.policies,
        "the last step is the golden final state"
    );
    assert_eq!(
        t.c.snapshot.namespaces["kube-system"].labels,
        g.namespaces["kube-system"].labels
    );
    t.done();
}

// ---------------------------------------------------------------------------
// Seed 001: "Network Policies" (Spanish), webapp-balanced
// ---------------------------------------------------------------------------

#[test]
fn webapp_balanced_kernel() {
    nftpolicy_lab::kernel_test!("seeds_kernel::webapp_balanced_kernel");
    const NS: &str = "webapp-balanced";
    let mut t = Tutorial::new("webapp_balanced");
    t.ns("utils", &[]);
    t.ns("troubleshoot", &[]);
    t.ns(NS, &[]);
    t.ns(
        "ingress-nginx",
        &[("app.kubernetes.io/name", "ingress-nginx")],
    );
    t.ns("kube-system", &[]);
    // kubenode1.acme.es = node1 (the web pod and both network-tools pods);
    // kubenode2 = node2 (the Ingress controller); kube-dns runs on the
    // control plane, here node2.
    let web = t.pod(
        1,
        NS,
        "webapp-balanced-6f4f8dcd99-szwdr",
        &[("app", NS)],
        WEB,
    );
    let utils = t.pod(
        1,
        "utils",
        "utils-646c66795d-qdtg9",
        &[("app", "utils")],
        CLIENT,
    );
    let trouble = t.pod(
        1,
        "troubleshoot",
        "troubleshoot-7bf854b879-v6ggl",
        &[("app", "troubleshoot")],
        CLIENT,
    );
    let controller = t.pod(
        2,
        "ingress-nginx",
        "ingress-nginx-controller-5c8d66c76d-8mzvq",
        &[
            ("app.kubernetes.io/name", "ingress-nginx"),
            ("app.kubernetes.io/component", "controller"),
        ],
        WEB,
    );
    let dns = t.pod(
        2,
        "kube-system",
        "coredns-558bd4d5db-7l2xh",
        &[("k8s-app", "kube-dns")],
        DNS,
    );
    // www.google.com, and the browser outside the cluster.
    let internet = t.external("ext", &[(Proto::Tcp, 80)]);
    let node1 = t.node(1, &[]);
    t.service(DNS_VIPS, 53, Proto::Udp, &dns, 53);
    // The web pod published on a NodePort of node1 (its address towards
    // the outside), as the tutorial's Ingress / NodePort would.
    const NODE_PORT: [&str; 2] = ["192.0.2.1", "2001:db8:0:1::1"];
    t.service(NODE_PORT, 30080, Proto::Tcp, &web, 80);

    let deny_all = || policy(NS, "default-deny-ingress").types(true, false);
    // ping and `nc -zv <ip> 80` from a client to the web pod.
    let ping_and_nc =
        |from: &Host, want: bool, what: &str| flows(from, &web, &[PING, TCP80], want, what);

    t.session(&utils, &controller, 80);

    let mut checks = via_service(
        &utils,
        DNS_VIPS,
        Via::Udp(53),
        true,
        &dns,
        "nslookup www.google.com",
    );
    checks.extend(v4(&utils, &internet, &[PING], true, "ping www.google.com"));
    checks.extend(ping_and_nc(&utils, true, "from utils"));
    checks.extend(ping_and_nc(&trouble, true, "from troubleshoot"));
    t.step(
        "before any policy",
        (&utils, &web, 80),
        |c| c.set_policies(Vec::<Policy>::new()),
        &checks,
    );

    let mut checks = ping_and_nc(&utils, false, "from utils");
    checks.extend(ping_and_nc(&trouble, false, "from troubleshoot"));
    checks.extend(v4(
        &utils,
        &internet,
        &[PING],
        true,
        "egress is not isolated",
    ));
    t.step(
        "deny all ingress",
        (&utils, &controller, 80),
        |c| c.set_policies([deny_all()]),
        &checks,
    );

    let mut checks = ping_and_nc(&utils, true, "ingress: [{}], from utils");
    checks.extend(ping_and_nc(&trouble, true, "from troubleshoot"));
    t.step(
        "allow all ingress",
        (&utils, &controller, 80),
        |c| c.set_policies([deny_all().ingress(rule())]),
        &checks,
    );

    let mut checks = ping_and_nc(&utils, false, "from utils");
    checks.extend(ping_and_nc(&trouble, false, "from troubleshoot"));
    t.step(
        "deny all again",
        (&utils, &controller, 80),
        |c| c.set_policies([deny_all()]),
        &checks,
    );

    // Tutorial: allows "the traffic of a specific namespace using the labels
    // of its pods, app: utils", and shows ping and nc from utils succeeding.
    // Wrong: a podSelector without namespaceSelector selects pods of the
    // policy's own namespace (webapp-balanced); the utils pod lives in
    // namespace utils, so it is blocked like troubleshoot.
    let from_utils_pods = policy(NS, "default-deny-ingress")
        .select(labels([("app", NS)]))
        .types(true, false)
        .ingress(rule().pods(labels([("app", "utils")])));
    let mut checks = ping_and_nc(
        &utils,
        false,
        "utils pod in namespace utils (API, not the tutorial)",
    );
    checks.extend(ping_and_nc(&trouble, false, "from troubleshoot"));
    t.step(
        "podSelector app=utils",
        (&utils, &controller, 80),
        |c| c.set_policies([from_utils_pods]),
        &checks,
    );
    // What that selector does match: an app=utils pod of webapp-balanced.
    let mut inside = None;
    t.step(
        "(aside) an app=utils pod in webapp-balanced",
        (&utils, &controller, 80),
        |c| {
            inside = Some(
                c.add_pod(
                    1,
                    NS,
                    "utils-in-webapp",
                    &[("app", "utils")],
                    Stack::Dual,
                    CLIENT,
                )
                .unwrap(),
            );
        },
        &[],
    );
    let inside = inside.expect("pod added");
    verify(
        &t.c.lab,
        "app=utils in webapp-balanced",
        &ping_and_nc(&inside, true, "app=utils in webapp-balanced"),
    );

    // Tutorial: the same result "using the name of the namespace as
    // selector", `namespaceSelector: {matchLabels: {name: utils}}`. A
    // selector reads labels, not names: namespace utils has no `name` label,
    // so this allows nothing until `kubectl label namespace utils name=utils`.
    let by = |key: &str| {
        policy(NS, "default-deny-ingress")
            .select(labels([("app", NS)]))
            .types(true, false)
            .ingress(rule().namespaces(labels([(key, "utils")])))
    };
    let mut checks = ping_and_nc(
        &utils,
        false,
        "name=utils, namespace unlabelled (API, not the tutorial)",
    );
    checks.extend(ping_and_nc(&trouble, false, "from troubleshoot"));
    t.step(
        "namespaceSelector name=utils",
        (&utils, &controller, 80),
        |c| c.set_policies([by("name")]),
        &checks,
    );
    let mut checks = ping_and_nc(&utils, true, "after labelling utils name=utils");
    checks.extend(ping_and_nc(&trouble, false, "troubleshoot"));
    t.step(
        "(aside) kubectl label namespace utils name=utils",
        (&utils, &controller, 80),
        |c| c.add_namespace("utils", &[("name", "utils")]),
        &checks,
    );
    let mut checks = ping_and_nc(&utils, true, "kubernetes.io/metadata.name=utils");
    checks.extend(ping_and_nc(&trouble, false, "troubleshoot"));
    t.step(
        "(aside) namespaceSelector kubernetes.io/metadata.name=utils",
        (&utils, &web, 80),
        |c| c.set_policies([by("kubernetes.io/metadata.name")]),
        &checks,
    );

    // The browser gets "503 Service Unavailable": the controller cannot
    // connect; NodePort clients are refused too.
    let mut checks = flows(
        &controller,
        &web,
        &[TCP80],
        false,
        "Ingress controller to the app",
    );
    checks.extend(via_service(
        &internet,
        NODE_PORT,
        Via::Tcp(30080),
        false,
        &web,
        "browser through the NodePort",
    ));
    // An Ingress controller with hostNetwork on the web pod's node would
    // connect from the node: the pod's own node always may (docs/tutorials.md).
    checks.extend(flows(
        &node1,
        &web,
        &[TCP80],
        true,
        "from the web pod's own node",
    ));
    t.step(
        "deny all again",
        (&utils, &controller, 80),
        |c| c.set_policies([deny_all()]),
        &checks,
    );

    let last = golden_policies("seed-webapp-balanced")["default-deny-ingress"].clone();
    assert_eq!(
        last,
        policy(NS, "default-deny-ingress")
            .select(labels([("app", NS)]))
            .types(true, false)
            .ingress(rule().port(Protocol::Tcp, 80)),
        "the golden input holds the tutorial's last edit"
    );
    let mut checks = flows(&utils, &web, &[TCP80], true, "nc 80 from utils");
    checks.extend(flows(
        &trouble,
        &web,
        &[TCP80],
        true,
        "nc 80 from troubleshoot",
    ));
    checks.extend(flows(
        &controller,
        &web,
        &[TCP80],
        true,
        "through the Ingress",
    ));
    checks.extend(via_service(
        &internet,
        NODE_PORT,
        Via::Tcp(30080),
        true,
        &web,
        "a browser outside the cluster",
    ));
    checks.extend(flows(
        &internet,
        &web,
        &[TCP80],
        true,
        "a browser outside, routed",
    ));
    // Not shown by the tutorial, but the API: once ports are listed, only those.
    checks.extend(flows(
        &utils,
        &web,
        &[PING, Via::Tcp(443)],
        false,
        "ping and another port",
    ));
    t.step(
        "TCP 80 from anywhere",
        (&utils, &controller, 80),
        |c| c.set_policies([last]),
        &checks,
    );
    t.done();
}

// ---------------------------------------------------------------------------
// Seed 002: Cilium lab, "5. Network Policies"
// ---------------------------------------------------------------------------

/// Packets counted by the final `counter ... drop` of `chain` on `node`.
fn drop_counter(lab: &Lab, node: &Host, chain: &str) -> u64 {
    let out = lab
        .nft(node, &["list", "chain", "inet", "kube-nftpolicy", chain])
        .unwrap_or_else(|e| panic!("list chain {chain}: {e}"));
    let line = out
        .lines()
        .find(|l| l.contains("counter packets") && l.contains(" drop"))
        .unwrap_or_else(|| panic!("no counted drop in {chain}:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "packets").unwrap();
    words[i + 1].parse().unwrap()
}

/// The addresses listed in dispatch map `map` on `node`.
fn map_has(lab: &Lab, node: &Host, map: &str, addr: IpAddr) -> bool {
    let out = lab
        .nft(node, &["list", "map", "inet", "kube-nftpolicy", map])
        .unwrap_or_else(|e| panic!("list map {map}: {e}"));
    out.contains(&format!("{addr} "))
}

fn map_empty(lab: &Lab, node: &Host, map: &str) -> bool {
    let out = lab
        .nft(node, &["list", "map", "inet", "kube-nftpolicy", map])
        .unwrap_or_else(|e| panic!("list map {map}: {e}"));
    !out.contains("elements")
}

#[test]
fn cilium_backend_kernel() {
    nftpolicy_lab::kernel_test!("seeds_kernel::cilium_backend_kernel");
    let gp = golden_policies("seed-cilium-backend");
    let mut t = Tutorial::new("cilium_backend");
    t.ns("default", &[]);
    t.ns("kube-system", &[]);
    // A one-node cluster (cluster1 = node1).
    let http = &[tcp(8080, Some("http"))];
    let frontend = t.pod(
        1,
        "default",
        "frontend-588b766fc9-2d5hn",
        &[("app", "frontend")],
        http,
    );
    let not_frontend = t.pod(
        1,
        "default",
        "not-frontend-8f467ccbd-lh4w4",
        &[("app", "not-frontend")],
        http,
    );
    let backend = t.pod(
        1,
        "default",
        "backend-65f7c794cc-pj2tc",
        &[("app", "backend")],
        http,
    );
    let dns = t.pod(
        1,
        "kube-system",
        "coredns-64897985d-7rjfv",
        &[("k8s-app", "kube-dns")],
        DNS,
    );
    let outside = t.external("ext", &[(Proto::Tcp, 80)]);
    let node1 = t.node(1, &[]);
    t.service(DNS_VIPS, 53, Proto::Udp, &dns, 53);
    // Service backend, port 8080.
    const BACKEND_VIPS: [&str; 2] = ["10.96.0.100", "fd00:10:96::100"];
    t.service(BACKEND_VIPS, 8080, Proto::Tcp, &backend, 8080);
    let pod_chain = "pod-ingress-default/backend-65f7c794cc-pj2tc";

    // `curl --connect-timeout 5 backend:8080` from both clients.
    let curl = |frontend_ok: bool, not_frontend_ok: bool, what: &str| -> Vec<Check> {
        let mut c = Vec::new();
        for (from, want) in [(&frontend, frontend_ok), (&not_frontend, not_frontend_ok)] {
            let what = format!("{what}: {}", from.name());
            c.extend(via_service(
                from,
                DNS_VIPS,
                Via::Udp(53),
                true,
                &dns,
                &format!("{what}: lookup"),
            ));
            c.extend(via_service(
                from,
                BACKEND_VIPS,
                Via::Tcp(8080),
                want,
                &backend,
                &what,
            ));
            c.extend(flows(from, &backend, &[Via::Tcp(8080)], want, &what));
        }
        c
    };

    t.session(&frontend, &backend, 8080);
    t.step(
        "verify connectivity",
        (&not_frontend, &backend, 8080),
        |c| c.set_policies(Vec::<Policy>::new()),
        &curl(true, true, "before any policy"),
    );

    t.step(
        "backend-ingress-deny",
        (&not_frontend, &frontend, 8080),
        |c| c.set_policies([gp["backend-ingress-deny"].clone()]),
        &curl(false, false, "curl: (28) Connection timed out"),
    );
    // Hubble shows the drops; here the counter of the backend's final drop.
    assert!(
        drop_counter(&t.c.lab, &node1, pod_chain) > 0,
        "the backend's chain counted the dropped connections"
    );

    let golden_step = curl(true, false, "with backend-allow-ingress-frontend");
    let mut checks = golden_step.clone();
    // hubble observe: not-frontend's DNS to coredns is FORWARDED.
    checks.extend(flows(
        &not_frontend,
        &dns,
        &[Via::Udp(53)],
        true,
        "not-frontend DNS",
    ));
    t.step(
        "backend-allow-ingress-frontend",
        (&not_frontend, &frontend, 8080),
        |c| c.set_policies(gp.values().cloned()),
        &checks,
    );
    let before = drop_counter(&t.c.lab, &node1, pod_chain);
    verify(
        &t.c.lab,
        "one more dropped attempt",
        &flows_in(
            &not_frontend,
            &backend,
            Family::V4,
            &[Via::Tcp(8080)],
            false,
            "not-frontend",
        ),
    );
    assert!(
        drop_counter(&t.c.lab, &node1, pod_chain) > before,
        "not-frontend's attempt is counted by the final drop"
    );

    // "Note that this is working despite the fact we did not delete the
    // previous backend-ingress-deny policy": policies are additive; the
    // allow alone does the same.
    t.step(
        "(aside) backend-allow-ingress-frontend alone",
        (&frontend, &backend, 8080),
        |c| c.set_policies([gp["backend-allow-ingress-frontend"].clone()]),
        &golden_step,
    );

    // Task 5.6: "pods with the label app=backend now have ingress policy
    // enforcement enabled", and only they, only for ingress.
    let mut checks = golden_step.clone();
    checks.extend(flows(
        &not_frontend,
        &frontend,
        &[Via::Tcp(8080)],
        true,
        "frontend is not isolated",
    ));
    checks.extend(flows(
        &frontend,
        &not_frontend,
        &[Via::Tcp(8080)],
        true,
        "not-frontend is not isolated",
    ));
    checks.extend(flows(
        &backend,
        &not_frontend,
        &[Via::Tcp(8080)],
        true,
        "backend's egress is open",
    ));
    checks.extend(v4(
        &not_frontend,
        &outside,
        &[TCP80],
        true,
        "egress to the world",
    ));
    t.step(
        "endpoint enforcement",
        (&frontend, &backend, 8080),
        |c| c.set_policies(gp.values().cloned()),
        &checks,
    );
    for f in Family::ALL {
        let map = format!("ingress-pods-v{}", if f == Family::V4 { 4 } else { 6 });
        assert!(
            map_has(&t.c.lab, &node1, &map, ip(&backend, f)),
            "{map}: backend"
        );
        for other in [&frontend, &not_frontend, &dns] {
            assert!(
                !map_has(&t.c.lab, &node1, &map, ip(other, f)),
                "{map}: {}",
                other.name()
            );
        }
        let map = format!("egress-pods-v{}", if f == Family::V4 { 4 } else { 6 });
        assert!(
            map_empty(&t.c.lab, &node1, &map),
            "{map}: nobody isolated for egress"
        );
    }
    t.done();
}

// ---------------------------------------------------------------------------
// Seed 003: kubernetes-handbook, "Network Policy"
// ---------------------------------------------------------------------------

#[test]
fn handbook_kernel() {
    nftpolicy_lab::kernel_test!("seeds_kernel::handbook_kernel");
    let gp = golden_policies("seed-handbook");
    let mut t = Tutorial::new("handbook");
    t.ns("default", &[]);
    t.ns("sock-shop", &[]);
    t.ns("kube-system", &[]);
    t.ns("myproject", &[("project", "myproject")]);
    // The spelling of the tutorial's prose ("project=myprojects").
    t.ns("myprojects", &[("project", "myprojects")]);
    t.ns("secondary", &[]);
    t.ns("prod", &[("purpose", "production")]);
    t.ns("dev", &[("purpose", "testing")]);
    t.ns("legacy", &[]);
    // The simple example, nodes as in the golden input.
    let nginx = [("run", "nginx"), ("pod-template-hash", "701339712")];
    let nginx_l = t.pod(1, "default", "nginx-701339712-e0qfq", &nginx, WEB);
    let nginx_r = t.pod(2, "default", "nginx-701339712-o00ef", &nginx, WEB);
    // `kubectl run busybox --labels="access=true"`, and one without.
    let bb_access = t.pod(
        1,
        "default",
        "busybox-472357175-y0m47",
        &[("run", "busybox"), ("access", "true")],
        CLIENT,
    );
    let bb = t.pod(
        1,
        "default",
        "busybox-472357175-k8w2c",
        &[("run", "busybox")],
        CLIENT,
    );
    let dns = t.pod(
        2,
        "kube-system",
        "coredns-5c98db65d4-8xk2p",
        &[("k8s-app", "kube-dns")],
        DNS,
    );
    let front_end = t.pod(
        2,
        "sock-shop",
        "front-end-6f47b6d8c7-rbmxg",
        &[("name", "front-end")],
        &[tcp(8079, None)],
    );
    // test-network-policy.
    let redis = t.pod(
        1,
        "default",
        "redis",
        &[("role", "db")],
        &[tcp(6379, None), tcp(6380, None)],
    );
    let fe = t.pod(2, "default", "web", &[("role", "frontend")], CLIENT);
    let other = t.pod(2, "default", "other", &[("app", "other")], CLIENT);
    let myproject = t.pod(2, "myproject", "app", &[], CLIENT);
    let myprojects = t.pod(1, "myprojects", "app", &[], CLIENT);
    // The recipes.
    let web = t.pod(
        1,
        "default",
        "web-prod",
        &[("app", "web"), ("env", "prod")],
        WEB,
    );
    let client = t.pod(2, "default", "client", &[], CLIENT);
    let api = t.pod(
        1,
        "default",
        "apiserver",
        &[("app", "bookstore"), ("role", "api")],
        WEB,
    );
    let ui = t.pod(
        2,
        "default",
        "bookstore-ui",
        &[("app", "bookstore")],
        CLIENT,
    );
    let sec_web = t.pod(1, "secondary", "web", &[("app", "web")], WEB);
    let sec_client = t.pod(2, "secondary", "client", &[], CLIENT);
    let prod_client = t.pod(2, "prod", "client", &[], CLIENT);
    let dev_client = t.pod(2, "dev", "client", &[], CLIENT);
    let legacy_web = t.pod(1, "legacy", "web", &[("app", "web")], WEB);
    let legacy_client = t.pod(1, "legacy", "client", &[], CLIENT);
    // The outside world (93.184.216.34 in seeds.rs); ext2 is "another host".
    let outside = t.external(
        "ext",
        &[(Proto::Tcp, 80), (Proto::Tcp, 443), (Proto::Tcp, 6379)],
    );
    let outside2 = t.external("ext2", &[(Proto::Tcp, 443)]);
    // 10.0.0.0/24 of the tutorial's egress rule is, in the lab, the wire
    // between the nodes: node2 is 10.0.0.2 there.
    let node2 = t.node(2, &[(Proto::Tcp, 5978), (Proto::Tcp, 5987)]);
    t.service(DNS_VIPS, 53, Proto::Udp, &dns, 53);

    let deny =
        |ingress: bool, egress: bool| policy("default", "default-deny").types(ingress, egress);
    let wget_nginx = |from: &Host, want: bool, what: &str| -> Vec<Check> {
        let mut c = flows(from, &nginx_l, &[TCP80], want, what);
        c.extend(flows(
            from,
            &nginx_r,
            &[TCP80],
            want,
            &format!("{what} (other node)"),
        ));
        c
    };
    // sock-shop and kube-system are never isolated: front-end -> kube-dns
    // over TCP 53 stays allowed in every step.
    let keep = (&front_end, &dns, 53);

    t.session(&bb, &outside, 443);

    // Default deny, ingress.
    let mut checks = wget_nginx(&bb, false, "pod to pod in default");
    checks.extend(flows(
        &front_end,
        &nginx_l,
        &[TCP80],
        false,
        "from another namespace",
    ));
    checks.extend(v4(
        &bb,
        &outside,
        &[Via::Tcp(443)],
        true,
        "egress is untouched",
    ));
    t.step(
        "default deny ingress",
        keep,
        |c| c.set_policies([deny(true, false)]),
        &checks,
    );

    let mut checks = wget_nginx(&bb, false, "pod to pod in default");
    checks.extend(flows(
        &bb,
        &dns,
        &[Via::Udp(53)],
        false,
        "DNS is egress too",
    ));
    checks.extend(v4(
        &bb,
        &outside,
        &[Via::Tcp(443)],
        false,
        "the outside world",
    ));
    checks.extend(flows(
        &front_end,
        &nginx_l,
        &[TCP80],
        true,
        "ingress is untouched",
    ));
    t.step(
        "default deny egress",
        keep,
        |c| c.set_policies([deny(false, true)]),
        &checks,
    );

    let mut checks = wget_nginx(&bb, false, "pod to pod in default");
    checks.extend(flows(&front_end, &nginx_l, &[TCP80], false, "into default"));
    checks.extend(v4(&bb, &outside, &[Via::Tcp(443)], false, "out of default"));
    t.step(
        "default deny both",
        keep,
        |c| c.set_policies([deny(true, true)]),
        &checks,
    );

    let mut checks = wget_nginx(&bb, true, "allow-all beside default-deny");
    checks.extend(v4(&outside, &nginx_l, &[TCP80], true, "from outside"));
    t.step(
        "allow all ingress",
        keep,
        |c| {
            c.set_policies([
                deny(true, false),
                policy("default", "allow-all").ingress(rule()),
            ])
        },
        &checks,
    );

    // Tutorial: "the policy for allowing Egress communication between all
    // Pods" is `podSelector: {}` with `egress: [{}]` and no policyTypes. The
    // API server defaults policyTypes to [Ingress, Egress] (Egress because
    // there is an egress section), so it also isolates every pod of default
    // for ingress with no ingress rule: it denies all ingress.
    let as_written = policy("default", "allow-all").egress(rule());
    let mut checks = v4(&bb, &outside, &[Via::Tcp(443)], true, "egress allowed");
    checks.extend(wget_nginx(
        &bb,
        false,
        "but ingress to nginx is now denied (API, not the tutorial)",
    ));
    checks.extend(flows(
        &front_end,
        &nginx_l,
        &[TCP80],
        false,
        "from sock-shop too",
    ));
    t.step(
        "allow all egress, as written",
        keep,
        |c| c.set_policies([as_written.clone()]),
        &checks,
    );
    let mut checks = wget_nginx(&bb, true, "with policyTypes: [Egress]");
    checks.extend(v4(&bb, &outside, &[Via::Tcp(443)], true, "egress allowed"));
    t.step(
        "(aside) allow all egress with policyTypes: [Egress]",
        keep,
        |c| c.set_policies([as_written.types(false, true)]),
        &checks,
    );

    // The first test-network-policy writes `protocol: tcp`: the API server
    // rejects it, so does the loader (naming the field), and nothing applies.
    let lower = load_text(include_str!("data/seeds/handbook-lowercase-protocol.yaml"));
    assert!(
        lower.snapshot.policies.is_empty(),
        "the lower-case policy must not load"
    );
    assert_eq!(
        lower
            .problems
            .iter()
            .map(|p| p.field.as_deref())
            .collect::<Vec<_>>(),
        [Some("spec.ingress[0].ports[0].protocol")]
    );
    let mut checks = flows(
        &other,
        &redis,
        &[Via::Tcp(6379)],
        true,
        "nothing isolates redis",
    );
    checks.extend(flows(
        &myprojects,
        &redis,
        &[Via::Tcp(6379)],
        true,
        "nothing isolates redis",
    ));
    t.step(
        "test-network-policy with protocol: tcp (rejected)",
        keep,
        |c| c.set_policies(lower.snapshot.policies.into_values()),
        &checks,
    );

    // The second test-network-policy. Its ipBlock 172.17.0.0/16 except
    // 172.17.1.0/24 becomes 192.0.2.0/24 except 192.0.2.64/26 (ext inside,
    // ext2 in the hole); its egress 10.0.0.0/24 is kept as written (the
    // lab's node wire).
    let tnp = policy("default", "test-network-policy")
        .select(labels([("role", "db")]))
        .types(true, true)
        .ingress(
            rule()
                .ip_block("192.0.2.0/24", &["192.0.2.64/26"])
                .namespaces(labels([("project", "myproject")]))
                .pods(labels([("role", "frontend")]))
                .port(Protocol::Tcp, 6379),
        )
        .egress(
            rule()
                .ip_block("10.0.0.0/24", &[])
                .port(Protocol::Tcp, 5978),
        );
    let wire2: IpAddr = "10.0.0.2".parse().unwrap();
    let mut checks = flows(
        &fe,
        &redis,
        &[Via::Tcp(6379)],
        true,
        "role=frontend in default",
    );
    checks.extend(flows(
        &myproject,
        &redis,
        &[Via::Tcp(6379)],
        true,
        "namespace project=myproject",
    ));
    checks.extend(v4(
        &outside,
        &redis,
        &[Via::Tcp(6379)],
        true,
        "ipBlock (172.17.0.0/16)",
    ));
    checks.extend(v4(
        &outside2,
        &redis,
        &[Via::Tcp(6379)],
        false,
        "except (172.17.1.0/24)",
    ));
    checks.extend(flows(
        &other,
        &redis,
        &[Via::Tcp(6379)],
        false,
        "other pods of default",
    ));
    checks.extend(flows(&fe, &redis, &[Via::Tcp(6380)], false, "another port"));
    // The prose says "project=myprojects"; the manifest selects myproject.
    checks.extend(flows(
        &myprojects,
        &redis,
        &[Via::Tcp(6379)],
        false,
        "project=myprojects (the prose)",
    ));
    // The prose says port 5987; the manifest says 5978.
    checks.push(
        at(
            &redis,
            wire2,
            Via::Tcp(5978),
            true,
            "10.0.0.0/24 on 5978 (the manifest)",
        )
        .who(node2.name()),
    );
    checks.push(at(&redis, wire2, Via::Tcp(5987), false, "5987 (the prose)"));
    checks.extend(v4(
        &redis,
        &outside,
        &[Via::Tcp(443)],
        false,
        "outside 10.0.0.0/24",
    ));
    t.step(
        "test-network-policy",
        keep,
        |c| c.set_policies([tnp]),
        &checks,
    );

    // The nginx example: before any policy, default-deny, access-nginx.
    t.step(
        "nginx: before any policy",
        keep,
        |c| c.set_policies(Vec::<Policy>::new()),
        &wget_nginx(&bb, true, "wget --spider nginx"),
    );
    let mut checks = wget_nginx(&bb, false, "wget: download timed out");
    checks.extend(flows(
        &front_end,
        &nginx_l,
        &[TCP80],
        false,
        "including outside the namespace",
    ));
    t.step(
        "nginx: default-deny",
        keep,
        |c| c.set_policies([gp["default-deny"].clone()]),
        &checks,
    );
    let mut checks = wget_nginx(&bb, false, "without access=true: still timed out");
    checks.extend(wget_nginx(&bb_access, true, "with access=true"));
    checks.extend(via_service(
        &bb_access,
        DNS_VIPS,
        Via::Udp(53),
        true,
        &dns,
        "the lookup of nginx",
    ));
    t.step(
        "nginx: access-nginx",
        keep,
        |c| c.set_policies([gp["default-deny"].clone(), gp["access-nginx"].clone()]),
        &checks,
    );
    // Tutorial: "Finally open the external access to the nginx service" with
    // front-end-access, created in namespace sock-shop. A policy selects pods
    // of its own namespace only: nginx runs in default, so it opens nothing.
    let mut checks = flows(
        &outside,
        &nginx_l,
        &[TCP80],
        false,
        "external access to nginx (API, not the tutorial)",
    );
    checks.extend(flows(
        &front_end,
        &nginx_l,
        &[TCP80],
        false,
        "from sock-shop",
    ));
    checks.extend(wget_nginx(&bb_access, true, "access=true still works"));
    t.step(
        "nginx: front-end-access in sock-shop",
        keep,
        |c| c.set_policies(gp.values().cloned()),
        &checks,
    );
    assert_eq!(t.c.snapshot.policies, golden("seed-handbook").policies);
    let mut moved = gp["front-end-access"].clone();
    moved.namespace = "default".into();
    let mut checks = flows(
        &outside,
        &nginx_l,
        &[TCP80],
        true,
        "the same policy in default",
    );
    checks.extend(flows(
        &outside,
        &nginx_l,
        &[Via::Tcp(443)],
        false,
        "port 80 only",
    ));
    t.step(
        "(aside) front-end-access in default",
        keep,
        |c| {
            let mut p: Vec<Policy> = gp.values().cloned().collect();
            p.push(moved);
            c.set_policies(p);
        },
        &checks,
    );

    // Recipes.
    let mut checks = flows(&client, &web, &[TCP80], false, "any pod to web");
    checks.extend(flows(&web, &client, &[TCP80], true, "web's egress is open"));
    t.step(
        "web-deny-all",
        keep,
        |c| {
            c.set_policies([
                policy("default", "web-deny-all").select(labels([("app", "web"), ("env", "prod")]))
            ])
        },
        &checks,
    );
    let mut checks = flows(&ui, &api, &[TCP80], true, "app=bookstore");
    checks.extend(flows(&other, &api, &[TCP80], false, "app=other"));
    t.step(
        "api-allow",
        keep,
        |c| {
            c.set_policies([policy("default", "api-allow")
                .select(labels([("app", "bookstore"), ("role", "api")]))
                .ingress(rule().pods(labels([("app", "bookstore")])))])
        },
        &checks,
    );
    // "Disable mutual access between all Pods in the namespace".
    let mut checks = flows(&bb, &nginx_r, &[TCP80], false, "pod to pod, across nodes");
    checks.extend(flows(&nginx_r, &bb, &[PING], false, "ping back"));
    checks.extend(flows(
        &bb,
        &front_end,
        &[Via::Tcp(8079)],
        true,
        "out of the namespace",
    ));
    t.step(
        "deny mutual access",
        keep,
        |c| c.set_policies([policy("default", "default-deny")]),
        &checks,
    );
    // `podSelector: {matchLabels: }` (null) selects every pod of secondary.
    let deny_other_ns = load_text(include_str!("data/seeds/web-deny-other-namespaces.yaml"));
    assert!(
        deny_other_ns.problems.is_empty(),
        "{:?}",
        deny_other_ns.problems
    );
    let mut checks = flows(&sec_client, &sec_web, &[TCP80], true, "same namespace");
    checks.extend(flows(&client, &sec_web, &[TCP80], false, "other namespace"));
    t.step(
        "web-deny-other-namespaces",
        keep,
        |c| c.set_policies(deny_other_ns.snapshot.policies.into_values()),
        &checks,
    );
    let mut checks = flows(&prod_client, &web, &[TCP80], true, "purpose=production");
    checks.extend(flows(&dev_client, &web, &[TCP80], false, "purpose=testing"));
    checks.extend(flows(
        &client,
        &web,
        &[TCP80],
        false,
        "its own namespace too",
    ));
    t.step(
        "web-allow-prod",
        keep,
        |c| {
            c.set_policies([policy("default", "web-allow-prod")
                .select(labels([("app", "web")]))
                .ingress(rule().namespaces(labels([("purpose", "production")])))])
        },
        &checks,
    );
    // `from: []` admits every source.
    let external = load_text(include_str!("data/seeds/web-allow-external.yaml"));
    assert!(external.problems.is_empty(), "{:?}", external.problems);
    let mut checks = flows(&outside, &web, &[TCP80], true, "the Internet, TCP 80");
    checks.extend(flows(
        &outside,
        &web,
        &[Via::Tcp(443), PING],
        false,
        "another port, ping",
    ));
    checks.extend(flows(&client, &web, &[TCP80], true, "any pod, TCP 80"));
    t.step(
        "web-allow-external",
        keep,
        |c| c.set_policies(external.snapshot.policies.into_values()),
        &checks,
    );
    // v1.6 isolated a namespace with the annotation
    // `net.beta.kubernetes.io/network-policy: {"ingress": {"isolation":
    // "DefaultDeny"}}`: not part of networking.k8s.io/v1, it isolates nothing.
    let annotated = load_text(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: legacy
  annotations:
    net.beta.kubernetes.io/network-policy: '{"ingress": {"isolation": "DefaultDeny"}}'
"#,
    );
    assert!(annotated.problems.is_empty(), "{:?}", annotated.problems);
    assert!(annotated.snapshot.policies.is_empty());
    let mut checks = flows(
        &legacy_client,
        &legacy_web,
        &[TCP80, PING],
        true,
        "annotated namespace",
    );
    checks.extend(flows(
        &client,
        &legacy_web,
        &[TCP80],
        true,
        "from elsewhere too",
    ));
    t.step(
        "v1.6 DefaultDeny annotation",
        keep,
        |c| {
            let ns = annotated.snapshot.namespaces["legacy"].clone();
            c.snapshot.add_namespace(ns);
            c.set_policies(Vec::<Policy>::new());
        },
        &checks,
    );
    t.done();
}

// ---------------------------------------------------------------------------
// Seed 004: KodeKloud lecture, "Network Policy" (on a Flannel cluster)
// ---------------------------------------------------------------------------

#[test]
fn db_policy_kernel() {
    nftpolicy_lab::kernel_test!("seeds_kernel::db_policy_kernel");
    let mut t = Tutorial::new("db_policy");
    for ns in ["prod", "staging", "dev"] {
        t.ns(ns, &[("name", ns)]);
    }
    // node01 = node1 (db, staging's API), node02 = node2 (the others).
    let api_serve = &[tcp(5000, Some("api"))];
    let web_serve = &[tcp(80, Some("http"))];
    let web = t.pod(2, "prod", "web-pod", &[("name", "web-pod")], web_serve);
    let api = t.pod(2, "prod", "api-pod", &[("name", "api-pod")], api_serve);
    let db = t.pod(
        1,
        "prod",
        "db-pod",
        &[("role", "db")],
        &[tcp(3306, Some("mysql")), tcp(22, None)],
    );
    let staging_api = t.pod(1, "staging", "api-pod", &[("name", "api-pod")], api_serve);
    let staging_web = t.pod(2, "staging", "web-pod", &[("name", "web-pod")], web_serve);
    let dev_api = t.pod(2, "dev", "api-pod", &[("name", "api-pod")], api_serve);
    // The backup server 192.168.5.10 is ext (192.0.2.2); "its neighbour"
    // 192.168.5.11 is ext2 (192.0.2.66). The lecture's ipBlock
    // 192.168.5.10/32 becomes 192.0.2.2/32. The lecture's cluster is IPv4.
    let backup = t.external("ext", &[(Proto::Tcp, 80), (Proto::Tcp, 443)]);
    let neighbour = t.external("ext2", &[(Proto::Tcp, 80)]);
    const BACKUP: &str = "192.0.2.2/32";

    let db_policy = || policy("prod", "db-policy").select(labels([("role", "db")]));
    let api_pod = || labels([("name", "api-pod")]);
    let mysql = Via::Tcp(3306);
    // staging's and prod's web pods are never isolated.
    let keep = (&web, &staging_web, 80);

    t.session(&api, &db, 3306);

    let mut checks = flows(&web, &db, &[mysql], true, "web to db");
    checks.extend(flows(&api, &db, &[mysql], true, "api to db"));
    checks.extend(flows(&db, &api, &[Via::Tcp(5000)], true, "db to api"));
    t.step(
        "before any policy",
        keep,
        |c| c.set_policies(Vec::<Policy>::new()),
        &checks,
    );

    // Tutorial: "it still doesn't block out traffic because we haven't
    // specified policy types yet. So if there are no policy types specified
    // in the network policy definition, the protection is not enforced."
    // Wrong: without policyTypes the API server sets [Ingress]; a policy
    // selecting the db pod isolates it for ingress at once.
    let mut checks = flows(
        &api,
        &db,
        &[mysql],
        false,
        "api to db (API, not the tutorial)",
    );
    checks.extend(flows(
        &web,
        &db,
        &[mysql],
        false,
        "web to db (API, not the tutorial)",
    ));
    checks.extend(v4(&db, &backup, &[TCP80], true, "egress is not isolated"));
    t.step(
        "podSelector role=db only",
        keep,
        |c| c.set_policies([db_policy()]),
        &checks,
    );

    let mut checks = flows(&api, &db, &[mysql], false, "into db");
    checks.extend(flows(&db, &api, &[Via::Tcp(5000)], false, "out of db"));
    checks.extend(v4(&db, &backup, &[TCP80], false, "to the backup server"));
    t.step(
        "policyTypes Ingress and Egress, no rules",
        keep,
        |c| c.set_policies([db_policy().types(true, true)]),
        &checks,
    );

    let allow_api = || {
        db_policy()
            .types(true, false)
            .ingress(rule().pods(api_pod()).port(Protocol::Tcp, 3306))
    };
    let mut checks = flows(&api, &db, &[mysql], true, "api to db:3306");
    checks.extend(flows(
        &api,
        &db,
        &[Via::Tcp(22)],
        false,
        "api to another port",
    ));
    checks.extend(flows(&web, &db, &[mysql], false, "web to db"));
    // Tutorial: "the database pod tries to make an API call to the API pod,
    // then that would not be allowed because that is now an egress traffic",
    // of this Ingress-only policy. Wrong (and against its own "all egress
    // traffic is unaffected"): db is not isolated for egress nor the API pod
    // for ingress.
    checks.extend(flows(
        &db,
        &api,
        &[Via::Tcp(5000)],
        true,
        "db calls the API (API, not the tutorial)",
    ));
    t.step(
        "allow the API pod on 3306",
        keep,
        |c| c.set_policies([allow_api()]),
        &checks,
    );

    // "once you allow incoming traffic, the response ... is allowed back
    // automatically": a connection api -> db opened now carries replies
    // through the next steps (it is the kept one below).
    let mut checks = flows(&api, &db, &[mysql], true, "the API pod of prod");
    checks.extend(flows(
        &staging_api,
        &db,
        &[mysql],
        false,
        "the API pod of staging",
    ));
    checks.extend(flows(&dev_api, &db, &[mysql], false, "the API pod of dev"));
    t.step(
        "API pods of other namespaces",
        (&api, &db, 3306),
        |c| c.set_policies([allow_api()]),
        &checks,
    );

    let mut checks = flows(&staging_api, &db, &[mysql], true, "API pod of staging");
    checks.extend(flows(
        &staging_web,
        &db,
        &[mysql],
        false,
        "web pod of staging",
    ));
    checks.extend(flows(
        &api,
        &db,
        &[mysql],
        false,
        "API pod of prod: not in staging",
    ));
    t.step(
        "podSelector AND namespaceSelector staging",
        keep,
        |c| {
            c.set_policies([db_policy().types(true, false).ingress(
                rule()
                    .pods_in(labels([("name", "staging")]), api_pod())
                    .port(Protocol::Tcp, 3306),
            )])
        },
        &checks,
    );

    let mut checks = flows(&staging_web, &db, &[mysql], true, "web pod of staging");
    checks.extend(flows(
        &staging_api,
        &db,
        &[mysql],
        true,
        "API pod of staging",
    ));
    checks.extend(flows(&dev_api, &db, &[mysql], false, "outside staging"));
    t.step(
        "namespaceSelector staging only",
        (&staging_api, &db, 3306),
        |c| {
            c.set_policies([db_policy().types(true, false).ingress(
                rule()
                    .namespaces(labels([("name", "staging")]))
                    .port(Protocol::Tcp, 3306),
            )])
        },
        &checks,
    );

    // "In this example, under the from section, we have two elements. So
    // these are two rules." They are two peers of one rule (same OR; they
    // share the rule's ports).
    let mut checks = flows(&api, &db, &[mysql], true, "API pod of prod");
    checks.extend(v4(&backup, &db, &[mysql], true, "the backup server"));
    checks.extend(flows_in(
        &backup,
        &db,
        Family::V6,
        &[mysql],
        false,
        "its IPv6 address: not in a /32",
    ));
    checks.extend(v4(&neighbour, &db, &[mysql], false, "its neighbour"));
    checks.extend(flows(&web, &db, &[mysql], false, "web pod of prod"));
    checks.extend(flows(
        &staging_api,
        &db,
        &[mysql],
        false,
        "API pod of staging",
    ));
    t.step(
        "backup server ipBlock",
        keep,
        |c| {
            c.set_policies([db_policy().types(true, false).ingress(
                rule()
                    .pods_in(labels([("name", "prod")]), api_pod())
                    .ip_block(BACKUP, &[])
                    .port(Protocol::Tcp, 3306),
            )])
        },
        &checks,
    );

    // "a dash before the namespace selector": three peers, any of them.
    let mut checks = flows(&web, &db, &[mysql], true, "any pod of prod, web included");
    checks.extend(v4(&backup, &db, &[mysql], true, "the backup server"));
    checks.extend(flows(
        &staging_api,
        &db,
        &[mysql],
        false,
        "API pod of staging",
    ));
    t.step(
        "three separate peers",
        keep,
        |c| {
            c.set_policies([db_policy().types(true, false).ingress(
                rule()
                    .pods(api_pod())
                    .namespaces(labels([("name", "prod")]))
                    .ip_block(BACKUP, &[])
                    .port(Protocol::Tcp, 3306),
            )])
        },
        &checks,
    );

    // The lecture's last policy is the golden one, with the backup server's
    // address mapped onto ext.
    let mut last = golden_policies("seed-db-policy")["db-policy"].clone();
    assert_eq!(
        last,
        db_policy()
            .types(true, true)
            .ingress(rule().pods(api_pod()).port(Protocol::Tcp, 3306))
            .egress(
                rule()
                    .ip_block("192.168.5.10/32", &[])
                    .port(Protocol::Tcp, 80)
            ),
        "the golden input holds the lecture's last policy"
    );
    last.egress = vec![rule().ip_block(BACKUP, &[]).port(Protocol::Tcp, 80)];
    let mut checks = v4(&db, &backup, &[TCP80], true, "backup pushed to the server");
    checks.extend(v4(&db, &backup, &[Via::Tcp(443)], false, "another port"));
    checks.extend(v4(&db, &neighbour, &[TCP80], false, "another host"));
    checks.extend(flows(
        &db,
        &api,
        &[Via::Tcp(5000)],
        false,
        "db now isolated for egress",
    ));
    checks.extend(flows(&api, &db, &[mysql], true, "api to db still"));
    // The connection api -> db kept through this step also shows that
    // replies to the API pod need no egress rule.
    t.step(
        "egress to the backup server",
        (&api, &db, 3306),
        |c| c.set_policies([last]),
        &checks,
    );
    t.done();
}
