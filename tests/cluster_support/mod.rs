//! The local cluster for tests: `scripts/cluster.sh` with a directory,
//! namespace prefix and ports of the tests' own (a developer's cluster on
//! the default ones is left alone), our agent from this build, and helpers
//! to drive it with kubectl and probe it with real packets.
//!
//! Each test binary names its cluster with a small id of its own, which
//! picks the directory, the namespace prefix and the ports, so that test
//! binaries may run at the same time. `Cluster::up` takes it down again on
//! drop (also when the test panics, after printing the end of every log).
//!
//! | id | test binary |
//! | --- | --- |
//! | 0 | cluster_smoke |
//! | 1 | cluster_seeds |
//! | 2 | cluster_validation |
//! | 3 | cluster_resilience |
//! | 4 | cluster_rbac |
//! | 5 | cluster_load |
//! | 6 | cluster_explain |
//! | 7 | cluster_guard |
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where a test cluster lives: directory, namespace prefix, ports (not the
/// defaults of scripts/control-plane.sh).
#[derive(Debug, Clone)]
pub struct Place {
    /// The state directory.
    pub dir: PathBuf,
    /// The prefix of its network namespaces.
    pub prefix: String,
    /// kube-apiserver's port.
    pub apiserver_port: u16,
    /// etcd's client port.
    pub etcd_port: u16,
}

impl Place {
    /// The place of cluster `id` (see the table above).
    pub fn of(id: u8) -> Self {
        let n = u16::from(id) * 10;
        Self {
            dir: PathBuf::from(format!("/run/knp-test-{id}")),
            prefix: format!("kt{id}"),
            apiserver_port: 16443 + n,
            etcd_port: 12379 + n,
        }
    }
}

/// A running test cluster.
pub struct Cluster {
    /// kubectl.
    pub kubectl: PathBuf,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Where it lives.
    pub place: Place,
    nodes: u8,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The knp-cluster binary of this build (`cargo build --workspace --bins`,
/// which scripts/test.sh runs first).
pub fn runner_bin() -> PathBuf {
    let agent = Path::new(env!("CARGO_BIN_EXE_kube-nftpolicy"));
    let runner = agent.with_file_name("knp-cluster");
    assert!(
        runner.is_file(),
        "{} is missing: build it with `cargo build --workspace --bins` (scripts/test.sh does)",
        runner.display()
    );
    runner
}

fn script(place: &Place, args: &[&str], extra_env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(repo().join("scripts/cluster.sh"));
    cmd.args(args)
        .env("KNP_CLUSTER_DIR", &place.dir)
        .env("KNP_CLUSTER_PREFIX", &place.prefix)
        .env("KNP_APISERVER_PORT", place.apiserver_port.to_string())
        .env("KNP_ETCD_CLIENT_PORT", place.etcd_port.to_string())
        .env("KNP_ETCD_PEER_PORT", (place.etcd_port + 1).to_string())
        .env("KNP_AGENT_BIN", env!("CARGO_BIN_EXE_kube-nftpolicy"))
        .env("KNP_RUNNER_BIN", runner_bin())
        .stdin(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("run scripts/cluster.sh")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Cluster {
    /// Brings up cluster `id` of `nodes` nodes; `agent_args` are extra
    /// flags for every agent.
    pub fn up(id: u8, nodes: u8, agent_args: &str) -> Cluster {
        let place = Place::of(id);
        // A cluster left by a killed earlier run goes first.
        let _ = script(&place, &["down"], &[]);
        let out = script(
            &place,
            &["up", &nodes.to_string()],
            &[("KNP_AGENT_ARGS", agent_args.to_owned())],
        );
        let mut c = Cluster {
            kubectl: PathBuf::new(),
            kubeconfig: place.dir.join("admin.kubeconfig"),
            place,
            nodes,
        };
        if !out.status.success() {
            c.dump_logs();
            panic!(
                "scripts/cluster.sh up failed: {}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        let env = text(&out.stdout);
        let kubectl = env
            .lines()
            .find_map(|l| l.strip_prefix("export KUBECTL="))
            .expect("up prints KUBECTL");
        c.kubectl = PathBuf::from(kubectl.trim_matches('\''));
        c
    }

    /// Runs kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl with `yaml` on stdin (`apply -f -`, `create -f -`, ...);
    /// the output either way.
    pub fn kubectl_stdin(&self, args: &[&str], yaml: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write yaml");
        child.wait_with_output().expect("kubectl output")
    }

    /// kubectl that must succeed; its stdout.
    pub fn k(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `kubectl apply -f -` of `yaml`, which must succeed.
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}{}\n{yaml}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Waits (up to `deadline`) until every pod of `namespace` is Running
    /// and has its network (the runner's record).
    pub fn wait_running(&self, namespace: &str, pods: &[&str], deadline: Duration) {
        let give_up = Instant::now() + deadline;
        loop {
            let ready = pods
                .iter()
                .all(|p| nftpolicy_cluster::state::find(&self.place.dir, namespace, p).is_some());
            if ready {
                return;
            }
            assert!(
                Instant::now() < give_up,
                "pods {pods:?} of {namespace} not running after {deadline:?}:\n{}",
                self.k(&["get", "pods", "-n", namespace, "-o", "wide"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One request from pod `from` (`ns/name`) to `to` (`ns/name` or an
    /// address) on `port` (`80`, `53/udp`): the answering pod's name, or why
    /// none answered.
    pub fn request(
        &self,
        from: &str,
        to: &str,
        port: &str,
        v6: bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let dir = self.place.dir.to_string_lossy().into_owned();
        let mut args = vec![
            "probe", "--dir", &dir, "--from", from, "--to", to, "--port", port,
        ];
        let ms = timeout.as_millis().to_string();
        args.extend(["--timeout-ms", &ms]);
        if v6 {
            args.push("--ipv6");
        }
        let out = Command::new(runner_bin())
            .args(&args)
            .output()
            .expect("run knp-cluster probe");
        let said = text(&out.stdout).trim().to_owned();
        if out.status.success() {
            Ok(said
                .trim_start_matches("connected: ")
                .trim_end_matches(" answered")
                .to_owned())
        } else {
            Err(said)
        }
    }

    /// Waits until a request from `from` to `to` connects (`want`) or not,
    /// in both families, for up to `deadline`; panics naming `what`.
    pub fn expect(
        &self,
        what: &str,
        from: &str,
        to: &str,
        port: &str,
        want: bool,
        deadline: Duration,
    ) {
        let give_up = Instant::now() + deadline;
        for v6 in [false, true] {
            loop {
                let got = self
                    .request(from, to, port, v6, Duration::from_millis(300))
                    .is_ok();
                if got == want {
                    break;
                }
                assert!(
                    Instant::now() < give_up,
                    "{what}: {from} -> {to}:{port} ({}) {} after {deadline:?}",
                    if v6 { "IPv6" } else { "IPv4" },
                    if want {
                        "still blocked"
                    } else {
                        "still connects"
                    }
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The network namespace of node `n`.
    pub fn node_netns(&self, n: u8) -> String {
        format!("{}-node{n}", self.place.prefix)
    }

    /// A GET of `path` on the agent of node `n`, from inside the node (as
    /// the kubelet probes it): status code and body.
    pub fn agent_get(&self, n: u8, path: &str) -> (u16, String) {
        let url = format!("127.0.0.1:9841{path}");
        let out = Command::new("ip")
            .args(["netns", "exec", &self.node_netns(n), "timeout", "3", "bash", "-c"])
            .arg(format!(
                "exec 3<>/dev/tcp/127.0.0.1/9841 && printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
            ))
            .output()
            .expect("GET in the node's namespace");
        let body = text(&out.stdout);
        let code = body
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer from {url} in node {n}: {body}"));
        (code, body)
    }

    /// A metric's value on node `n`'s agent (the first sample whose line
    /// starts with `name_and_labels`), 0 when absent.
    pub fn metric(&self, n: u8, name_and_labels: &str) -> f64 {
        let (_, body) = self.agent_get(n, "/metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(name_and_labels)
                    .filter(|r| r.starts_with(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// The flags that make `kube-nftpolicy render` build node `n`'s table
    /// as its agent does with the DaemonSet's defaults: the gate (the
    /// Node's pod CIDRs, the node namespace's addresses) and the cut rule.
    pub fn guard_args(&self, n: u8) -> Vec<String> {
        let cidrs = self.k(&[
            "get",
            "node",
            &format!("node{n}"),
            "-o",
            "jsonpath={.spec.podCIDRs[*]}",
        ]);
        let cidrs: Vec<&str> = cidrs.split_whitespace().collect();
        let out = Command::new("ip")
            .args(["-n", &self.node_netns(n), "-o", "addr", "show"])
            .output()
            .expect("ip addr");
        // `2: eth0    inet 10.0.0.2/24 brd ... scope global eth0 ...`
        let addrs: Vec<String> = text(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace().skip(2);
                match w.next() {
                    Some("inet" | "inet6") => w.next().and_then(|a| a.split('/').next()),
                    _ => None,
                }
                .map(str::to_owned)
            })
            .collect();
        let mut args = Vec::new();
        if !cidrs.is_empty() {
            args.extend(["--pod-cidr".to_owned(), cidrs.join(",")]);
            if !addrs.is_empty() {
                args.extend(["--node-addr".to_owned(), addrs.join(",")]);
            }
        }
        args.extend(["--cut-mark".to_owned(), "0x20000000".to_owned()]);
        args
    }

    /// `nft list table inet kube-nftpolicy` on node `n`.
    pub fn nft(&self, n: u8) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.node_netns(n),
                "nft",
                "list",
                "table",
                "inet",
                "kube-nftpolicy",
            ])
            .output()
            .expect("nft");
        text(&out.stdout)
    }

    /// `scripts/cluster.sh ARGS` (agent stop/start/restart, restart-apiserver, ...).
    pub fn script(&self, args: &[&str]) -> String {
        let out = script(&self.place, args, &[]);
        assert!(
            out.status.success(),
            "scripts/cluster.sh {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// The agent log of node `n`.
    pub fn agent_log(&self, n: u8) -> String {
        std::fs::read_to_string(self.place.dir.join(format!("logs/agent-node{n}.log")))
            .unwrap_or_default()
    }

    /// The pid of the agent of node `n`.
    pub fn agent_pid(&self, n: u8) -> Option<i32> {
        std::fs::read_to_string(self.place.dir.join(format!("run/agent-node{n}.pid")))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    fn dump_logs(&self) {
        let Ok(dir) = std::fs::read_dir(self.place.dir.join("logs")) else {
            return;
        };
        for f in dir.flatten() {
            let t = std::fs::read_to_string(f.path()).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(25).collect();
            eprintln!("==== {} (last 25 lines)", f.path().display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        for f in ["kube-apiserver.log", "etcd.log"] {
            let t = std::fs::read_to_string(self.place.dir.join(f)).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(15).collect();
            eprintln!("==== {f} (last 15 lines)");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        let out = script(&self.place, &["down"], &[]);
        if !out.status.success() {
            eprintln!("scripts/cluster.sh down failed: {}", text(&out.stderr));
        }
    }
}
