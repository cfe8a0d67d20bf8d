//! The node's guards through the real agent loop, with real packets: the
//! FAKE API (tests/agent_fake_api/) feeds `sync::run` with the gate on
//! (the lab node's pod CIDRs, as `--pod-cidr` gives them) and cutting on,
//! applying with the real `NetlinkDataplane` into lab node 1's namespace
//! and cutting flows in its conntrack table; the lab's prober and
//! long-lived TCP and UDP flows check the kernel (`docs/dataplane.md`,
//! "Guard"; issue 12, "Enforcement over time").
//!
//! - A pod the API has not listed yet cannot send or receive (rejected, and
//!   counted), the node still reaches it, and once it appears it talks as
//!   policy says.
//! - The loop stops under probe traffic, a pod nobody told the agent about
//!   appears, a new loop starts: nothing policy denies answers at any
//!   sampled moment, and what it allows keeps answering.
//! - A policy tightened under long-lived TCP and UDP flows (IPv4 and IPv6):
//!   the flows it now denies stop within a second of the commit, the ones
//!   it still allows carry on, and `flows_cut_total` counts them; with
//!   cutting off (`--established keep`) they all carry on.
//!
//! Needs root (CI runs as root). The tests run one at a time (timing).

#[allow(dead_code)]
mod agent_fake_api {
    pub mod fake;
    pub mod harness;
}

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent_fake_api::fake::FakeApi;
use agent_fake_api::harness::{namespace, policy};
use kube_nftpolicy::health::Health;
use kube_nftpolicy::metrics::Metrics;
use kube_nftpolicy::sync::{self, GateSource, Guard, SyncConfig, DEFAULT_CUT_MARK};
use nftpolicy_lab::{request_from, Cluster, Family, Host, Proto, Serve, Stack, Stream, UdpFlow};
use nftpolicy_nft::NetlinkDataplane;
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

const SERVE: &[Serve<'static>] = &[
    Serve {
        proto: Proto::Tcp,
        port: 80,
        name: Some("http"),
    },
    Serve {
        proto: Proto::Udp,
        port: 53,
        name: Some("dns"),
    },
];
/// Timeout of one probe.
const T: Duration = Duration::from_millis(400);
/// Deadline of anything the agent does asynchronously.
const DEADLINE: Duration = Duration::from_secs(15);
const NS: &str = "x";

/// One test at a time: the one-second bounds must not share two cores
/// with another lab's agent.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ip(h: &Host, f: Family) -> IpAddr {
    h.ip(f)
        .unwrap_or_else(|| panic!("{} has no {f} address", h.name()))
}

/// Lab node `i`'s pod CIDRs (the lab's address plan).
fn pod_cidrs(i: u8) -> Vec<ipnet::IpNet> {
    vec![
        format!("10.244.{i}.0/24").parse().unwrap(),
        format!("fd00:10:244:{i}::/64").parse().unwrap(),
    ]
}

/// The guard of lab node 1, as the controller builds it from
/// `--pod-cidr` and `--established`.
fn guard(node: &Host, cut_mark: Option<u32>) -> Guard {
    Guard {
        gate: GateSource::Fixed(pod_cidrs(1)),
        cut_mark,
        netns: Some(node.netns().to_owned()),
    }
}

/// A running Pod object for lab host `h` (every address of it), serving
/// `http` (TCP 80) and `dns` (UDP 53).
fn pod_of(c: &Cluster, h: &Host, name: &str, node: &str, labels: Value) -> Value {
    let ips: Vec<String> = c.lab.addresses(h).iter().map(ToString::to_string).collect();
    json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "echo",
                 "ports": [{"containerPort": 80, "name": "http"},
                           {"containerPort": 53, "name": "dns", "protocol": "UDP"}]}]},
        "status": {"phase": "Running", "podIP": ips[0],
                   "podIPs": ips.iter().map(|i| json!({"ip": i})).collect::<Vec<_>>()}
    })
}

/// An ingress policy: pods `app=to` take TCP 80 and UDP 53 from pods
/// `app in from` (from anyone when `from` is empty).
fn ingress(name: &str, to: &str, from: &[&str]) -> Value {
    let ports = json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]);
    let rule = if from.is_empty() {
        json!({"ports": ports})
    } else {
        json!({"from": [{"podSelector": {"matchExpressions": [
                  {"key": "app", "operator": "In", "values": from}]}}],
               "ports": ports})
    };
    policy(
        NS,
        name,
        json!({"podSelector": {"matchLabels": {"app": to}}, "ingress": [rule]}),
    )
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One run of the agent loop (`sync::run`) for lab node 1 on the fake,
/// with a fresh netlink dataplane (a started process knows nothing of the
/// kernel).
struct Agent {
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    fn start(rt: &Runtime, fake: &Arc<FakeApi>, node: &Host, guard: Guard) -> Self {
        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = oneshot::channel::<()>();
        let client = {
            let _in = rt.enter();
            fake.client()
        };
        let dp = NetlinkDataplane::new(Some(node.netns())).expect("netlink dataplane");
        let mut cfg = SyncConfig::new(node.name());
        cfg.guard = guard;
        let m = metrics.clone();
        let task = rt.spawn(async move {
            let health = Arc::new(Health::new(
                Duration::from_secs(60),
                Duration::from_secs(60),
            ));
            let shutdown = async {
                let _ = stopped.await;
            };
            sync::run(client, dp, &cfg, m, health, shutdown).await;
        });
        Self {
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A sample of the agent's metrics (`name{labels}` exactly), 0 if absent.
    fn metric(&self, key: &str) -> f64 {
        let text = self.metrics.encode();
        let prefix = format!("{key} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0.0, |v| v.trim().parse().expect("a metric value"))
    }

    /// Successful syncs so far (each one a kernel commit).
    fn syncs(&self) -> f64 {
        self.metric("kube_nftpolicy_syncs_total{result=\"success\"}")
    }

    fn flows_cut(&self) -> f64 {
        self.metric("kube_nftpolicy_flows_cut_total")
    }

    /// Waits until the agent has synced and the gate is armed.
    fn wait_armed(&self) {
        let start = Instant::now();
        while self.syncs() < 1.0 || self.metric("kube_nftpolicy_gate_armed") != 1.0 {
            assert!(
                start.elapsed() < DEADLINE,
                "no armed sync after {DEADLINE:?}:\n{}",
                self.metrics.encode()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until no sync happened for 500 ms (follow-ups of deferred
    /// deletions included).
    fn settle(&self) {
        let start = Instant::now();
        let mut seen = (self.syncs(), Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.syncs();
            if now != seen.0 {
                seen = (now, Instant::now());
            } else if seen.1.elapsed() >= Duration::from_millis(500) {
                return;
            }
            assert!(start.elapsed() < DEADLINE, "the agent keeps syncing");
        }
    }

    /// Waits for the first successful sync after `before` syncs; returns
    /// a moment no later than its commit (the last look that did not see
    /// it, at most 2 ms before).
    fn commit_after(&self, before: f64) -> Instant {
        let start = Instant::now();
        let mut not_yet = start;
        loop {
            let look = Instant::now();
            if self.syncs() > before {
                return not_yet;
            }
            not_yet = look;
            assert!(start.elapsed() < DEADLINE, "no sync after the change");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops the loop (its shutdown future) and waits until it returned.
    fn stop(mut self, rt: &Runtime) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            rt.block_on(t).expect("the agent loop panicked");
        }
    }
}

/// Whether a TCP request from `from` to `to`:80 is answered within `t`,
/// and how long the answer or the refusal took.
fn tcp_within(c: &Cluster, from: &Host, to: IpAddr, t: Duration) -> (bool, Duration) {
    let start = Instant::now();
    let ok = c.lab.request(from, to, 80, Proto::Tcp, t).is_ok();
    (ok, start.elapsed())
}

fn tcp(c: &Cluster, from: &Host, to: IpAddr) -> bool {
    tcp_within(c, from, to, T).0
}

/// Probes `from` → `to`:80 until it gives `want`; panics naming `what`
/// after [`DEADLINE`]. Returns how long it took.
fn until(c: &Cluster, from: &Host, to: IpAddr, want: bool, what: &str) -> Duration {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if tcp(c, from, to) == want {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{what}: {} -> {to}:80 still {} after {DEADLINE:?}",
        from.name(),
        if want { "blocked" } else { "open" }
    );
}

/// Packets counted by the gate's rules of node `node`'s table.
fn gate_rejected(c: &Cluster, node: &Host) -> u64 {
    let listing = c
        .lab
        .nft(node, &["list", "table", "inet", "kube-nftpolicy"])
        .expect("nft list");
    listing
        .lines()
        .filter(|l| l.contains("not programmed yet"))
        .map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "packets");
            words
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// The table without its counters' values.
fn without_counters(listing: &str) -> String {
    let mut out = String::new();
    for line in listing.lines() {
        let mut skip = false;
        for w in line.split_whitespace() {
            if !skip {
                out.push_str(w);
                out.push(' ');
            }
            skip = w == "packets" || w == "bytes";
        }
        out.push('\n');
    }
    out
}

#[test]
fn a_pod_the_api_has_not_listed_cannot_talk_until_the_agent_programs_it() {
    nftpolicy_lab::kernel_test!(
        "agent_guard::a_pod_the_api_has_not_listed_cannot_talk_until_the_agent_programs_it"
    );
    let _serial = serial();
    let started = Instant::now();
    let mut c = Cluster::new().expect("lab cluster");
    let a = c.add_pod(1, NS, "a", &[], Stack::Dual, SERVE).unwrap();
    let r = c.add_pod(2, NS, "r", &[], Stack::Dual, SERVE).unwrap();
    // The CNI networked it; the API does not list it yet.
    let n = c.add_pod(1, NS, "n", &[], Stack::Dual, SERVE).unwrap();
    let node1 = c.lab.node(1).unwrap().clone();
    let node2 = c.lab.node(2).unwrap().name().to_owned();

    let fake = FakeApi::new();
    fake.apply(namespace(NS, json!({})));
    fake.apply(pod_of(&c, &a, "a", node1.name(), json!({"app": "a"})));
    fake.apply(pod_of(&c, &r, "r", &node2, json!({"app": "r"})));
    // n, once known, takes only app=a.
    fake.apply(ingress("n-from-a", "n", &["a"]));
    let rt = runtime();
    let agent = Agent::start(&rt, &fake, &node1, guard(&node1, Some(DEFAULT_CUT_MARK)));
    agent.wait_armed();

    let counted_before = gate_rejected(&c, &node1);
    for f in Family::ALL {
        // Rejected, not dropped: IPv4 TCP fails at the ICMP error, IPv6
        // TCP at the error to the first retransmitted SYN (after 1 s).
        let (ok, took) = tcp_within(&c, &n, ip(&a, f), Duration::from_secs(3));
        assert!(!ok, "{f}: the unlisted pod reaches a same-node pod");
        let bound = match f {
            Family::V4 => T,
            Family::V6 => Duration::from_millis(1600),
        };
        assert!(
            took < bound,
            "{f}: rejected, not dropped (failed after {took:?})"
        );
        assert!(
            !tcp(&c, &a, ip(&n, f)),
            "{f}: a same-node pod reaches the unlisted pod"
        );
        assert!(
            !tcp(&c, &r, ip(&n, f)),
            "{f}: a remote pod reaches the unlisted pod"
        );
        assert!(
            !tcp(&c, &n, ip(&r, f)),
            "{f}: the unlisted pod reaches a remote pod"
        );
        assert!(
            !c.lab.probe(&n, ip(&a, f), 53, Proto::Udp, T),
            "{f}: the unlisted pod sends UDP to a same-node pod"
        );
        assert!(tcp(&c, &a, ip(&r, f)), "{f}: known pods, no policy: open");
        assert!(
            c.lab.probe(&node1, ip(&n, f), 80, Proto::Tcp, T),
            "{f}: the node itself (kubelet probes) reaches the unlisted pod"
        );
    }
    let counted = gate_rejected(&c, &node1);
    assert!(
        counted > counted_before,
        "the gate counts what it rejects: {counted_before} -> {counted}"
    );
    assert_eq!(agent.metric("kube_nftpolicy_gate_armed"), 1.0);

    // The API lists it now (a watch event): it talks as policy says.
    let event = Instant::now();
    fake.apply(pod_of(&c, &n, "n", node1.name(), json!({"app": "n"})));
    let took = until(&c, &a, ip(&n, Family::V4), true, "after n was listed");
    eprintln!("n programmed {took:?} after its watch event (as the prober saw it)");
    for f in Family::ALL {
        assert!(tcp(&c, &a, ip(&n, f)), "{f}: a (app=a) reaches n");
        assert!(
            !tcp(&c, &r, ip(&n, f)),
            "{f}: r reaches n, which takes only app=a"
        );
        assert!(
            tcp(&c, &n, ip(&a, f)),
            "{f}: n reaches a (no egress policy)"
        );
        assert!(
            tcp(&c, &n, ip(&r, f)),
            "{f}: n reaches r (no egress policy)"
        );
        assert!(
            c.lab.probe(&node1, ip(&n, f), 80, Proto::Tcp, T),
            "{f}: the node reaches n"
        );
    }
    assert!(event.elapsed() < DEADLINE);
    agent.stop(&rt);
    eprintln!("total {:.1?}", started.elapsed());
}

/// One flow sampled over and over on threads of its own (one per family)
/// until told to stop: every answer (or its absence) that is not `want`.
struct Sampler {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Sampled>>,
}

struct Sampled {
    what: String,
    samples: usize,
    wrong: Vec<String>,
}

impl Sampler {
    fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    /// Samples TCP `from` → `to`:80 in both families: it must connect
    /// (`want`, with 2 s to spare for a busy machine) or not (each probe
    /// 150 ms, on two threads 75 ms apart, so that the samples are dense).
    fn add(&mut self, from: &Host, to: &Host, want: bool, epoch: Instant) {
        let copies: u64 = if want { 1 } else { 2 };
        for (f, copy) in Family::ALL
            .into_iter()
            .flat_map(|f| (0..copies).map(move |i| (f, i)))
        {
            let what = format!(
                "{} -> {} ({f}, {}, thread {copy})",
                from.name(),
                to.name(),
                if want { "allowed" } else { "denied" }
            );
            let netns = from.netns().to_owned();
            let addr = SocketAddr::new(ip(to, f), 80);
            let stop = self.stop.clone();
            let timeout = if want {
                Duration::from_secs(2)
            } else {
                Duration::from_millis(150)
            };
            self.threads.push(std::thread::spawn(move || {
                let mut out = Sampled {
                    what,
                    samples: 0,
                    wrong: Vec::new(),
                };
                std::thread::sleep(Duration::from_millis(75 * copy));
                let longest = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < longest {
                    let at = epoch.elapsed();
                    let got = request_from(&netns, addr, Proto::Tcp, timeout);
                    out.samples += 1;
                    if got.is_ok() != want {
                        out.wrong.push(format!("at {at:.3?}: {got:?}"));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                out
            }));
        }
    }

    /// Stops every thread; panics listing every wrong sample.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut wrong = Vec::new();
        let mut total = 0;
        for t in self.threads {
            let s = t.join().expect("sampler thread");
            eprintln!("  {}: {} samples", s.what, s.samples);
            assert!(s.samples > 0, "{}: never sampled", s.what);
            total += s.samples;
            wrong.extend(s.wrong.iter().map(|w| format!("{} {w}", s.what)));
        }
        assert!(wrong.is_empty(), "wrong samples:\n{}", wrong.join("\n"));
        total
    }
}

#[test]
fn a_restart_under_traffic_opens_nothing() {
    nftpolicy_lab::kernel_test!("agent_guard::a_restart_under_traffic_opens_nothing");
    let _serial = serial();
    let started = Instant::now();
    let mut c = Cluster::new().expect("lab cluster");
    let web = c.add_pod(1, NS, "web", &[], Stack::Dual, SERVE).unwrap();
    let st = c.add_pod(1, NS, "st", &[], Stack::Dual, SERVE).unwrap();
    let cl = c.add_pod(2, NS, "cl", &[], Stack::Dual, SERVE).unwrap();
    let intr = c.add_pod(2, NS, "in", &[], Stack::Dual, SERVE).unwrap();
    let node1 = c.lab.node(1).unwrap().clone();
    let node2 = c.lab.node(2).unwrap().name().to_owned();

    let fake = FakeApi::new();
    fake.apply(namespace(NS, json!({})));
    fake.apply(pod_of(&c, &web, "web", node1.name(), json!({"app": "web"})));
    fake.apply(pod_of(
        &c,
        &st,
        "st",
        node1.name(),
        json!({"app": "stranger"}),
    ));
    fake.apply(pod_of(&c, &cl, "cl", &node2, json!({"app": "client"})));
    fake.apply(pod_of(&c, &intr, "in", &node2, json!({"app": "intruder"})));
    fake.apply(ingress("web", "web", &["client"]));
    let rt = runtime();
    let first = Agent::start(&rt, &fake, &node1, guard(&node1, Some(DEFAULT_CUT_MARK)));
    first.wait_armed();
    for f in Family::ALL {
        until(&c, &st, ip(&web, f), false, "web isolated");
        assert!(tcp(&c, &cl, ip(&web, f)), "{f}: client -> web");
        assert!(!tcp(&c, &intr, ip(&web, f)), "{f}: intruder -> web");
    }
    first.settle();

    // Steady probe traffic from here to the end.
    let epoch = Instant::now();
    let mut sampler = Sampler::new();
    sampler.add(&cl, &web, true, epoch);
    sampler.add(&intr, &web, false, epoch);
    sampler.add(&st, &web, false, epoch);
    std::thread::sleep(Duration::from_millis(300));

    first.stop(&rt);
    let stopped_at = epoch.elapsed();
    let table = c
        .lab
        .nft(&node1, &["list", "table", "inet", "kube-nftpolicy"])
        .expect("the table outlives the loop");

    // While no agent runs: a pod nobody told the agent about (the API has
    // it, with a policy that admits clients only).
    let nw = c.add_pod(1, NS, "nw", &[], Stack::Dual, SERVE).unwrap();
    fake.apply(pod_of(&c, &nw, "nw", node1.name(), json!({"app": "new"})));
    fake.apply(ingress("nw", "new", &["client"]));
    sampler.add(&st, &nw, false, epoch);
    sampler.add(&intr, &nw, false, epoch);
    let stop_for = Duration::from_secs(2);
    let mut rounds = 0;
    while epoch.elapsed() < stopped_at + stop_for && rounds < 20 {
        for f in Family::ALL {
            assert!(
                !tcp(&c, &cl, ip(&nw, f)),
                "{f}: client reaches the unprogrammed pod"
            );
            assert!(
                !tcp(&c, &nw, ip(&st, f)),
                "{f}: the unprogrammed pod reaches a same-node pod"
            );
            assert!(
                !tcp(&c, &nw, ip(&cl, f)),
                "{f}: the unprogrammed pod reaches a remote pod"
            );
            assert!(
                c.lab.probe(&node1, ip(&nw, f), 80, Proto::Tcp, T),
                "{f}: the node reaches the unprogrammed pod"
            );
        }
        rounds += 1;
    }
    let now = c
        .lab
        .nft(&node1, &["list", "table", "inet", "kube-nftpolicy"])
        .unwrap();
    assert_eq!(
        without_counters(&now),
        without_counters(&table),
        "the table changed while no agent ran"
    );

    // A new process: a fresh loop and dataplane; its first apply is a
    // full replace under the probes.
    let restarted_at = epoch.elapsed();
    let restart = Instant::now();
    let second = Agent::start(&rt, &fake, &node1, guard(&node1, Some(DEFAULT_CUT_MARK)));
    second.wait_armed();
    until(&c, &cl, ip(&nw, Family::V4), true, "nw after the restart");
    let programmed = restart.elapsed();
    for f in Family::ALL {
        assert!(tcp(&c, &cl, ip(&nw, f)), "{f}: client -> nw");
        assert!(tcp(&c, &nw, ip(&st, f)), "{f}: nw -> st (no egress policy)");
        assert!(!tcp(&c, &st, ip(&nw, f)), "{f}: st -> nw");
    }
    // Some more traffic on the new table, then the verdict of every sample.
    std::thread::sleep(Duration::from_millis(500));
    eprintln!(
        "stopped at {stopped_at:.2?}, restarted at {restarted_at:.2?} ({rounds} rounds of \
         checks while stopped), nw programmed {programmed:.2?} after the restart; samples:"
    );
    let samples = sampler.finish();
    assert!(samples >= 50, "too few samples: {samples}");
    second.stop(&rt);
    eprintln!("total {:.1?}", started.elapsed());
}

/// A long-lived flow, TCP or UDP.
enum Conn {
    Tcp(Stream),
    Udp(UdpFlow),
}

struct Flow {
    what: String,
    conn: Conn,
}

impl Flow {
    fn open(c: &Cluster, from: &Host, to: &Host, f: Family, proto: Proto) -> Self {
        let what = format!("{proto} {} -> {} ({f})", from.name(), to.name());
        let conn = match proto {
            Proto::Tcp => {
                let mut s = c
                    .lab
                    .stream(from, ip(to, f), 80, Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                s.set_timeout(Duration::from_millis(150));
                Conn::Tcp(s)
            }
            Proto::Udp => {
                let u = UdpFlow::open(
                    from,
                    SocketAddr::new(ip(to, f), 53),
                    Duration::from_millis(150),
                )
                .expect("udp socket");
                assert!(u.exchange(), "{what}: no answer before the change");
                Conn::Udp(u)
            }
        };
        Self { what, conn }
    }

    /// One exchange of 150 ms.
    fn once(&mut self) -> bool {
        match &mut self.conn {
            Conn::Tcp(s) => s.exchange().is_ok(),
            Conn::Udp(u) => u.once(),
        }
    }

    /// An exchange with room for a busy machine (three tries for UDP, a
    /// second for TCP).
    fn carries(&mut self) -> bool {
        match &mut self.conn {
            Conn::Tcp(s) => {
                s.set_timeout(Duration::from_secs(1));
                let ok = s.exchange().is_ok();
                s.set_timeout(Duration::from_millis(150));
                ok
            }
            Conn::Udp(u) => u.exchange(),
        }
    }
}

/// Long-lived TCP and UDP flows, both families, from `a` (same node) and
/// `r` (node 2) to `s` on node 1, and from `k` (node 2, app=keep); then
/// `s` is tightened to app=keep through the fake API. Returns the flows
/// that the new table denies, the kept ones, when the commit was seen and
/// the agent.
struct Tightened {
    c: Cluster,
    a: Host,
    s: Host,
    doomed: Vec<Flow>,
    kept: Vec<Flow>,
    event: Instant,
    commit: Instant,
    agent: Agent,
    rt: Runtime,
}

fn tighten_under_flows(cut_mark: Option<u32>) -> Tightened {
    let mut c = Cluster::new().expect("lab cluster");
    let s = c.add_pod(1, NS, "s", &[], Stack::Dual, SERVE).unwrap();
    let a = c.add_pod(1, NS, "a", &[], Stack::Dual, SERVE).unwrap();
    let r = c.add_pod(2, NS, "r", &[], Stack::Dual, SERVE).unwrap();
    let k = c.add_pod(2, NS, "k", &[], Stack::Dual, SERVE).unwrap();
    let node1 = c.lab.node(1).unwrap().clone();
    let node2 = c.lab.node(2).unwrap().name().to_owned();

    let fake = FakeApi::new();
    fake.apply(namespace(NS, json!({})));
    fake.apply(pod_of(&c, &s, "s", node1.name(), json!({"app": "s"})));
    fake.apply(pod_of(&c, &a, "a", node1.name(), json!({"app": "a"})));
    fake.apply(pod_of(&c, &r, "r", &node2, json!({"app": "r"})));
    fake.apply(pod_of(&c, &k, "k", &node2, json!({"app": "keep"})));
    // s is isolated and takes everyone on its ports.
    fake.apply(ingress("s", "s", &[]));
    let rt = runtime();
    let agent = Agent::start(&rt, &fake, &node1, guard(&node1, cut_mark));
    agent.wait_armed();
    until(&c, &a, ip(&s, Family::V4), true, "s open to all");
    agent.settle();

    let mut doomed = Vec::new();
    let mut kept = Vec::new();
    for f in Family::ALL {
        for proto in [Proto::Tcp, Proto::Udp] {
            doomed.push(Flow::open(&c, &a, &s, f, proto));
            doomed.push(Flow::open(&c, &r, &s, f, proto));
            kept.push(Flow::open(&c, &k, &s, f, proto));
        }
    }
    assert_eq!(agent.flows_cut(), 0.0, "nothing cut before the change");

    // The tightening: s takes app=keep only.
    let before = agent.syncs();
    let event = Instant::now();
    fake.apply(ingress("s", "s", &["keep"]));
    let commit = agent.commit_after(before);
    Tightened {
        c,
        a,
        s,
        doomed,
        kept,
        event,
        commit,
        agent,
        rt,
    }
}

#[test]
fn flows_a_tightened_policy_denies_are_cut_within_a_second_of_the_commit() {
    nftpolicy_lab::kernel_test!(
        "agent_guard::flows_a_tightened_policy_denies_are_cut_within_a_second_of_the_commit"
    );
    let _serial = serial();
    let started = Instant::now();
    let mut t = tighten_under_flows(Some(DEFAULT_CUT_MARK));
    eprintln!(
        "the tightening committed {:?} after its watch event",
        t.commit - t.event
    );
    // Each doomed flow, on a thread of its own, is tried every few
    // milliseconds until an exchange fails; that try must start within a
    // second of the commit, and every later one fail too.
    let (commit, give_up) = (t.commit, t.commit + Duration::from_secs(3));
    let stopped: Vec<(String, Option<Duration>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = t
            .doomed
            .iter_mut()
            .map(|flow| {
                scope.spawn(move || {
                    while Instant::now() < give_up {
                        let at = commit.elapsed();
                        if !flow.once() {
                            return (flow.what.clone(), Some(at));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    (flow.what.clone(), None)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|h| h.join().expect("flow thread"))
            .collect()
    });
    let left: Vec<&str> = stopped
        .iter()
        .filter(|(_, at)| at.is_none())
        .map(|(w, _)| w.as_str())
        .collect();
    assert!(
        left.is_empty(),
        "still passing 3 s after the commit: {left:?}"
    );
    for (what, at) in stopped.iter().filter_map(|(w, at)| Some((w, (*at)?))) {
        eprintln!("  {what}: stopped {at:.3?} after the commit");
        assert!(
            at < Duration::from_secs(1),
            "{what}: still passed {at:?} after the commit"
        );
    }
    // Stopped for good, over more than a second; the kept flows carry on.
    for round in 0..3 {
        for flow in &mut t.doomed {
            assert!(!flow.once(), "{}: passes again (round {round})", flow.what);
        }
        for flow in &mut t.kept {
            assert!(flow.carries(), "{}: disturbed (round {round})", flow.what);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // New connections are denied as the table says; nothing cut is kept.
    for f in Family::ALL {
        assert!(!tcp(&t.c, &t.a, ip(&t.s, f)), "{f}: a new a -> s passes");
    }
    let cut = t.agent.flows_cut();
    eprintln!("kube_nftpolicy_flows_cut_total {cut}");
    assert!(
        cut >= t.doomed.len() as f64,
        "{} flows stopped, flows_cut_total {cut}",
        t.doomed.len()
    );
    let Tightened { agent, rt, .. } = t;
    agent.stop(&rt);
    eprintln!("total {:.1?}", started.elapsed());
}

#[test]
fn with_cutting_off_established_flows_survive_a_tightening() {
    nftpolicy_lab::kernel_test!(
        "agent_guard::with_cutting_off_established_flows_survive_a_tightening"
    );
    let _serial = serial();
    let started = Instant::now();
    let mut t = tighten_under_flows(None);
    // Well past the second in which they would have been cut.
    std::thread::sleep(Duration::from_millis(1500));
    for flow in t.doomed.iter_mut().chain(t.kept.iter_mut()) {
        assert!(flow.carries(), "{}: stopped, with cutting off", flow.what);
    }
    // The table itself is tightened: new connections are denied.
    for f in Family::ALL {
        assert!(!tcp(&t.c, &t.a, ip(&t.s, f)), "{f}: a new a -> s passes");
    }
    assert_eq!(t.agent.flows_cut(), 0.0, "flows cut with cutting off");
    assert_eq!(t.agent.metric("kube_nftpolicy_gate_armed"), 1.0);
    let Tightened { agent, rt, .. } = t;
    agent.stop(&rt);
    eprintln!("total {:.1?}", started.elapsed());
}
