//! The agent under test: the `kube-nftpolicy controller` binary, started
//! as the DaemonSet starts it (its defaults: gate from the Node, flow
//! cutting, drop logging), with a kubeconfig pointing at the fake API and
//! `--netns` a lab node; read through its `/metrics`; stopped with
//! SIGTERM (SIGKILL after 10 s, or on drop).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nftpolicy_testkit::synth::LOCAL_NODE;

use super::{RunOptions, R};

/// The running agent; killed on drop if still running.
pub struct AgentProcess {
    child: Child,
    dir: PathBuf,
    metrics: SocketAddr,
}

impl AgentProcess {
    /// Starts the agent for the fake API at `api_url`, applying in `netns`.
    /// Its kubeconfig and log go to a directory of its own under the
    /// temporary directory (removed on drop unless `SCALE_KEEP` is set).
    pub fn start(opts: &RunOptions, api_url: &str, netns: &str) -> R<AgentProcess> {
        let dir = std::env::temp_dir().join(format!("scale-agent-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: scale\n  cluster:\n    \
                 server: {api_url}\ncontexts:\n- name: scale\n  context:\n    cluster: scale\n    \
                 user: scale\ncurrent-context: scale\nusers:\n- name: scale\n  user: {{}}\n"
            ),
        )?;
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let mut cmd = Command::new(&opts.bin);
        cmd.args(["controller", "--node-name", LOCAL_NODE, "--netns", netns])
            .arg(format!("--metrics-addr={metrics}"))
            .args(opts.agent_args.split_whitespace())
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for kv in opts.agent_env.split_whitespace() {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        let child = cmd.spawn()?;
        Ok(AgentProcess {
            child,
            dir,
            metrics,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `GET /metrics`.
    pub fn scrape(&self) -> Option<String> {
        let mut c = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(1)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
    }

    /// Polls `/metrics` every `every` until `done` holds of its text;
    /// `None` past `limit` or once the agent has exited.
    pub fn until(
        &mut self,
        every: Duration,
        limit: Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let end = Instant::now() + limit;
        while Instant::now() < end && self.alive() {
            if let Some(text) = self.scrape() {
                if done(&text) {
                    return Some(text);
                }
            }
            std::thread::sleep(every);
        }
        None
    }

    /// SIGTERM, then SIGKILL after 10 s; how it ended.
    pub fn stop(&mut self) -> String {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return format!("stopped by SIGTERM ({status})");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        "killed (SIGKILL) after 10 s".into()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::env::var("SCALE_KEEP").is_err() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The value of the sample `name` (labels included, as printed); 0 if absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The agent's counters and sums this measurement follows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Successful syncs.
    pub syncs: f64,
    /// Unix time of the last successful sync (taken right after the
    /// kernel acknowledged its batch).
    pub last_sync: f64,
    /// Sum of `sync_duration_seconds` (resolve, build, apply).
    pub sync_sum: f64,
    /// Sum of `apply_duration_seconds{kind="full"}`.
    pub apply_full: f64,
    /// Sum and count of `event_to_enforced_seconds`.
    pub e2e_sum: f64,
    /// See `e2e_sum`.
    pub e2e_count: f64,
}

impl Counters {
    /// Reads them from `/metrics` text.
    pub fn read(text: &str) -> Counters {
        let m = |name: &str| metric(text, &format!("kube_nftpolicy_{name}"));
        Counters {
            syncs: m("syncs_total{result=\"success\"}"),
            last_sync: m("last_successful_sync_timestamp_seconds"),
            sync_sum: m("sync_duration_seconds_sum"),
            apply_full: m("apply_duration_seconds_sum{kind=\"full\"}"),
            e2e_sum: m("event_to_enforced_seconds_sum"),
            e2e_count: m("event_to_enforced_seconds_count"),
        }
    }
}
