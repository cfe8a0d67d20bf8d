//! Helpers of the failure tests on the local cluster (`cluster_resilience`,
//! `cluster_rbac`), beside `cluster_support` (which other test binaries
//! share and this one does not change): flows probed with real packets
//! while something is restarted, the agents' metrics as a map, etcd's
//! JSON gateway, signals to an agent, and small builders of objects.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster_support::{runner_bin, Cluster, Place};

/// A flow from a pod to a pod on TCP 80, and whether it must connect.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    /// `ns/pod`.
    pub from: &'static str,
    /// `ns/pod`.
    pub to: &'static str,
    /// Must connect (`true`) or be dropped.
    pub allowed: bool,
}

/// A flow that must connect.
pub fn allowed(from: &'static str, to: &'static str) -> Flow {
    Flow {
        from,
        to,
        allowed: true,
    }
}

/// A flow that must be dropped.
pub fn denied(from: &'static str, to: &'static str) -> Flow {
    Flow {
        from,
        to,
        allowed: false,
    }
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.allowed { "allowed" } else { "denied" };
        write!(f, "{} -> {}:80 ({verdict})", self.from, self.to)
    }
}

/// One request of `flow` in each family. A denied flow must time out (a
/// refusal or a missing pod network is not a drop); an allowed one must be
/// answered by the destination pod.
pub fn probe(c: &Cluster, flow: &Flow) -> Result<(), String> {
    let pod = flow.to.rsplit('/').next().unwrap_or(flow.to);
    for v6 in [false, true] {
        let family = if v6 { "IPv6" } else { "IPv4" };
        // An allowed flow gets time to spare on a busy machine; a denied one
        // is a drop, which only a timeout shows.
        let timeout = Duration::from_millis(if flow.allowed { 3000 } else { 400 });
        let got = c.request(flow.from, flow.to, "80", v6, timeout);
        match (flow.allowed, got) {
            (true, Ok(who)) if who == pod => {}
            (false, Err(why)) if why.contains("timed out") => {}
            (_, got) => return Err(format!("{flow} {family}: {got:?}")),
        }
    }
    Ok(())
}

/// Probes every flow; all failures at once.
pub fn probe_all(c: &Cluster, flows: &[Flow]) -> Result<(), String> {
    let failed: Vec<String> = flows.iter().filter_map(|f| probe(c, f).err()).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Runs `action` on another thread and probes `flows` over and over until
/// it returns: every round must find every flow as expected. Returns what
/// `action` returned and the number of complete rounds.
pub fn hold_during<T: Send>(
    c: &Cluster,
    what: &str,
    flows: &[Flow],
    action: impl FnOnce() -> T + Send,
) -> (T, usize) {
    const LONGEST: Duration = Duration::from_secs(240);
    let start = Instant::now();
    std::thread::scope(|s| {
        let worker = s.spawn(action);
        let mut rounds = 0;
        while !worker.is_finished() {
            if let Err(e) = probe_all(c, flows) {
                panic!(
                    "{what}: enforcement changed after {:.1?} (round {rounds}): {e}",
                    start.elapsed()
                );
            }
            rounds += 1;
            assert!(
                start.elapsed() < LONGEST,
                "{what}: still running after {LONGEST:?}"
            );
        }
        match worker.join() {
            Ok(v) => (v, rounds),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Polls `check` every 250 ms until it is `Ok`, for up to `deadline`;
/// panics with `what` and the last error.
pub fn eventually<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let give_up = Instant::now() + deadline;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= give_up => panic!("{what}: not after {deadline:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Waits until every flow is as expected (each probed until it is).
pub fn expect_flows(c: &Cluster, what: &str, flows: &[Flow], deadline: Duration) {
    for f in flows {
        eventually(&format!("{what}: {f}"), deadline, || probe(c, f));
    }
}

/// Every sample of node `n`'s agent: `name{labels}` → value.
pub fn metrics(c: &Cluster, n: u8) -> BTreeMap<String, f64> {
    let (code, body) = c.agent_get(n, "/metrics");
    assert_eq!(code, 200, "node{n} /metrics: {body}");
    let text = body
        .split_once("\r\n\r\n")
        .map_or(body.as_str(), |(_, b)| b);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of the samples whose key starts with `prefix` (0 if none).
pub fn sum(m: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

/// One sample (0 if absent).
pub fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// The counters that say the agent did work: syncs and applies of every
/// kind (`full`, `incremental`, `no_change`).
pub fn work(m: &BTreeMap<String, f64>) -> (f64, f64) {
    (
        sum(m, "kube_nftpolicy_syncs_total"),
        sum(m, "kube_nftpolicy_apply_duration_seconds_count"),
    )
}

/// The lists (first and re-lists) of the pod and policy watchers.
pub fn lists(m: &BTreeMap<String, f64>) -> f64 {
    get(m, "kube_nftpolicy_lists_total{kind=\"pod\"}")
        + get(m, "kube_nftpolicy_lists_total{kind=\"networkpolicy\"}")
}

/// A POST of JSON `body` to etcd's v3 gateway; the response body.
pub fn etcd_post(place: &Place, path: &str, body: &str) -> serde_json::Value {
    let addr = format!("127.0.0.1:{}", place.etcd_port);
    let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("etcd at {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // HTTP/1.0: no chunked answer, the end of the stream ends the body.
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("etcd {path}: no HTTP answer: {answer}"));
    assert!(
        head.starts_with("HTTP/1.0 200"),
        "etcd {path}: {head}\n{body}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("etcd {path}: {e}: {body}"))
}

/// etcd's current revision (of a range request for the key "\0").
pub fn etcd_revision(place: &Place) -> i64 {
    let v = etcd_post(place, "/v3/kv/range", r#"{"key":"AA=="}"#);
    v["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {v}"))
}

/// Compacts etcd's history at `revision` (physically: it is gone).
pub fn etcd_compact(place: &Place, revision: i64) {
    etcd_post(
        place,
        "/v3/kv/compaction",
        &format!(r#"{{"revision":"{revision}","physical":true}}"#),
    );
}

/// The pid of node `n`'s agent, which must be running.
pub fn agent_pid(c: &Cluster, n: u8) -> nix::unistd::Pid {
    let pid = c
        .agent_pid(n)
        .unwrap_or_else(|| panic!("node{n}: no agent pid file"));
    let pid = nix::unistd::Pid::from_raw(pid);
    assert!(alive(pid), "node{n}: agent {pid} is not running");
    pid
}

/// Whether process `pid` exists.
pub fn alive(pid: nix::unistd::Pid) -> bool {
    nix::sys::signal::kill(pid, None).is_ok()
}

/// Sends `signal` to `pid`.
pub fn signal(pid: nix::unistd::Pid, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("{signal} to {pid}: {e}"));
}

/// `scripts/cluster.sh ARGS` for `c`, started and not waited for (the
/// environment is the one `cluster_support` gives the script).
pub fn script_spawn(c: &Cluster, args: &[&str]) -> Child {
    let place = &c.place;
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
        .args(args)
        .env("KNP_CLUSTER_DIR", &place.dir)
        .env("KNP_CLUSTER_PREFIX", &place.prefix)
        .env("KNP_APISERVER_PORT", place.apiserver_port.to_string())
        .env("KNP_ETCD_CLIENT_PORT", place.etcd_port.to_string())
        .env("KNP_ETCD_PEER_PORT", (place.etcd_port + 1).to_string())
        .env("KNP_AGENT_BIN", env!("CARGO_BIN_EXE_kube-nftpolicy"))
        .env("KNP_RUNNER_BIN", runner_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run scripts/cluster.sh")
}

/// The agent log of node `n` from byte `from` on (a length of
/// `agent_log` taken earlier).
pub fn log_since(c: &Cluster, n: u8, from: usize) -> String {
    let log = c.agent_log(n);
    log.get(from..).unwrap_or_default().to_owned()
}

/// The log lines (JSON, `--log-format=json`) whose message contains `what`.
pub fn log_lines<'a>(log: &'a str, level: &str, what: &str) -> Vec<&'a str> {
    let level = format!("\"level\":\"{level}\"");
    log.lines()
        .filter(|l| l.contains(&level) && l.contains(what))
        .collect()
}

/// A pod on `node` with `labels` (`k: v, ...`) serving TCP 80.
pub fn pod(ns: &str, name: &str, node: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: c, image: x, ports: [{{containerPort: 80}}]}}]}}\n---\n"
    )
}

/// A policy selecting `selector` (`k: v`) whose only ingress rule allows
/// pods matching any of `from` (each `k: v`).
pub fn ingress_policy(ns: &str, name: &str, selector: &str, from: &[&str]) -> String {
    let peers: Vec<String> = from
        .iter()
        .map(|l| format!("{{podSelector: {{matchLabels: {{{l}}}}}}}"))
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{podSelector: {{matchLabels: {{{selector}}}}}, policyTypes: [Ingress], \
         ingress: [{{from: [{}]}}]}}\n---\n",
        peers.join(", ")
    )
}

/// A namespace.
pub fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n---\n")
}

/// `nft list` text with the numbers of its counters left out (probes of
/// denied flows count up the drop counters).
pub fn without_counters(table: &str) -> String {
    let mut out = Vec::new();
    let mut tokens = table.split(' ').peekable();
    while let Some(t) = tokens.next() {
        out.push(t);
        if (t == "packets" || t == "bytes") && tokens.next().is_some() {
            out.push("N");
        }
    }
    out.join(" ")
}

/// `Cluster::up`, tried a second time if the first fails: once in a
/// dozen runs under load, `scripts/control-plane.sh up` reported "etcd
/// exited" right after starting it (an infrastructure flake, not the
/// agent's; the first failure's logs are printed all the same).
pub fn up(id: u8, nodes: u8, agent_args: &str) -> Cluster {
    match std::panic::catch_unwind(|| Cluster::up(id, nodes, agent_args)) {
        Ok(c) => c,
        Err(_) => {
            eprintln!("cluster {id}: `up` failed (see above); trying once more");
            Cluster::up(id, nodes, agent_args)
        }
    }
}
