//! The agent under test: the real watchers and sync loop, fed by the
//! [`FakeApi`](super::fake::FakeApi), applying to a recording
//! `FakeDataplane`; and builders of API objects in wire format.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube_nftpolicy::health::Health;
use kube_nftpolicy::metrics::Metrics;
use kube_nftpolicy::sync::{self, SyncConfig};
use nftpolicy_core::model::{Direction, NamespacedName, Protocol};
use nftpolicy_core::ruleset::names::pod_chain;
use nftpolicy_core::ruleset::trace::{trace, CtState, Outcome, Packet, L4};
use nftpolicy_core::ruleset::{Hook, Ruleset};
use nftpolicy_nft::{ApplyError, ApplyReport, Dataplane, FakeDataplane};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::fake::FakeApi;

/// The node the agent runs on.
pub const NODE: &str = "node-a";

/// A Namespace object.
pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A running Pod with one IP and a named port `http` (80).
pub fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: Value) -> Value {
    json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx",
                 "ports": [{"containerPort": 80, "name": "http"}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    })
}

/// A NetworkPolicy.
pub fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// What the recording dataplane saw.
#[derive(Default)]
pub struct Record {
    /// Every successful apply: the ruleset and when it completed.
    pub applies: Vec<(Ruleset, ApplyReport, Instant)>,
}

/// A `FakeDataplane` that records into shared memory, and takes `delay`
/// per apply (a slow kernel).
pub struct Recorder {
    inner: FakeDataplane,
    record: Arc<Mutex<Record>>,
    delay: Duration,
}

impl Dataplane for Recorder {
    fn apply(&mut self, desired: &Ruleset) -> Result<ApplyReport, ApplyError> {
        std::thread::sleep(self.delay);
        let r = self.inner.apply(desired)?;
        let mut rec = self.record.lock().unwrap();
        rec.applies
            .push((desired.clone(), r.clone(), Instant::now()));
        Ok(r)
    }

    fn cleanup(&mut self) -> Result<bool, ApplyError> {
        self.inner.cleanup()
    }

    fn force_full_replace(&mut self, reason: &str) {
        self.inner.force_full_replace(reason)
    }

    fn current(&self) -> Option<&Ruleset> {
        self.inner.current()
    }
}

/// The agent running against a fake API.
pub struct Agent {
    /// What was applied.
    pub record: Arc<Mutex<Record>>,
    /// The agent's metrics.
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Starts the agent for [`NODE`] on `fake` (which may already hold objects).
    pub fn start(fake: Arc<FakeApi>) -> Self {
        Self::start_with(fake, SyncConfig::new(NODE))
    }

    /// Starts the agent with `cfg`.
    pub fn start_with(fake: Arc<FakeApi>, cfg: SyncConfig) -> Self {
        let health = Arc::new(Health::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
        ));
        Self::start_slow(fake, cfg, health, Duration::ZERO)
    }

    /// Starts the agent with `cfg` and `health`, on a dataplane that takes
    /// `delay` per apply.
    pub fn start_slow(
        fake: Arc<FakeApi>,
        cfg: SyncConfig,
        health: Arc<Health>,
        delay: Duration,
    ) -> Self {
        let record = Arc::new(Mutex::new(Record::default()));
        let dp = Recorder {
            inner: FakeDataplane::new(),
            record: record.clone(),
            delay,
        };
        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = oneshot::channel::<()>();
        let client = fake.client();
        let m = metrics.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            sync::run(client, dp, &cfg, m, health, shutdown).await;
        });
        Self {
            record,
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Number of successful applies so far.
    pub fn applies(&self) -> usize {
        self.record.lock().unwrap().applies.len()
    }

    /// The last applied ruleset.
    pub fn last(&self) -> Option<Ruleset> {
        let rec = self.record.lock().unwrap();
        rec.applies.last().map(|a| a.0.clone())
    }

    /// Waits (up to 10 s) until the last applied ruleset satisfies `ok`.
    pub async fn until(&self, what: &str, ok: impl Fn(&Ruleset) -> bool) -> Ruleset {
        let mut found = None;
        eventually(what, Duration::from_secs(10), || {
            found = self.last().filter(|rs| ok(rs));
            found.is_some()
        })
        .await;
        found.expect("eventually returned")
    }

    /// The agent's `kube_nftpolicy_watch_events_total` of `kind`.
    pub fn watch_events(&self, kind: &str) -> u64 {
        let prefix = format!("kube_nftpolicy_watch_events_total{{kind=\"{kind}\"}} ");
        let text = self.metrics.encode();
        let line = text.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
        line.map_or(0, |n| n.trim().parse().expect("a counter value"))
    }

    /// Stops the agent.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

/// Polls `ok` every 5 ms until it holds; panics naming `what` if it does
/// not within `deadline`.
pub async fn eventually(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let give_up = Instant::now() + deadline;
    while !ok() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `ok` every 5 ms for `period`; panics naming `what` as soon as it
/// does not hold. For "nothing happens": make `period` well past the debounce.
pub async fn holds(what: &str, period: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + period;
    while Instant::now() < end {
        assert!(ok(), "no longer true: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(ok(), "no longer true: {what}");
}

/// Whether `ruleset` lets the first TCP packet `src` → `dst`:80 through.
pub fn allows(ruleset: &Ruleset, src: &str, dst: &str) -> bool {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let packet = Packet {
        src: ip(src),
        dst: ip(dst),
        l4: L4::Port {
            protocol: Protocol::Tcp,
            port: 80,
        },
        ct: CtState::New,
        hook: Hook::Forward,
        mark: 0,
    };
    trace(ruleset, &packet).outcome == Outcome::Accept
}

/// Whether `ruleset` has a chain for `ns/pod` in some direction (named as
/// the builder names it).
pub fn has_pod_chain(ruleset: &Ruleset, ns: &str, pod: &str) -> bool {
    let key = NamespacedName::new(ns, pod);
    Direction::ALL.into_iter().any(|dir| {
        let name = pod_chain(dir, &key);
        ruleset.chains.iter().any(|c| c.name == name)
    })
}
