//! The NFLOG reader: a thread of its own that binds the log group in the
//! node's network namespace, turns each record into an [`Event`], folds
//! repeats, logs, counts and publishes. It never touches the sync loop: a
//! socket that cannot be opened or fails is logged, counted
//! (`errors_total{kind="nflog_…"}`) and retried with backoff, while
//! enforcement goes on unchanged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use super::dedupe::Dedupe;
use super::{Event, Hub, Shared};
use crate::metrics::Metrics;
use nftpolicy_nft::{NflogError, NflogSocket};

/// How long one `recv` waits: also how often repeats are flushed and the
/// stop flag is checked.
const TICK: Duration = Duration::from_millis(200);
/// Longest wait between two attempts to open the socket.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where to read.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// The node's network namespace (`/run/netns/<name>`; tests), else ours.
    pub netns: Option<String>,
    /// The NFLOG group of the log rules.
    pub group: u16,
}

/// The running reader; stops (within [`TICK`]) when dropped.
#[derive(Debug)]
pub struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    /// Starts the thread.
    pub fn start(
        cfg: ReaderConfig,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
        hub: Arc<Hub>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("nflog".into())
            .spawn(move || {
                let mut r = Run {
                    cfg,
                    shared,
                    metrics,
                    hub,
                    stop: flag,
                    dedupe: Dedupe::default(),
                };
                r.run();
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Run {
    cfg: ReaderConfig,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
    dedupe: Dedupe,
}

impl Run {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Opens the socket (retrying with backoff) and reads until stopped.
    fn run(&mut self) {
        let mut backoff = Duration::from_secs(1);
        while !self.stopped() {
            match NflogSocket::open(self.cfg.netns.as_deref(), self.cfg.group, TICK) {
                Ok(sock) => {
                    info!(
                        group = self.cfg.group,
                        "reading drop/allow log records (NFLOG)"
                    );
                    backoff = Duration::from_secs(1);
                    self.read(sock);
                }
                Err(e) => {
                    error!(error = %e, retry_in = ?backoff, "cannot read drop/allow log records; enforcement is not affected");
                    self.metrics.error(e.metric_label());
                    let until = Instant::now() + backoff;
                    while !self.stopped() && Instant::now() < until {
                        std::thread::sleep(TICK);
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Reads until stopped or a fatal socket error.
    fn read(&mut self, mut sock: NflogSocket) {
        while !self.stopped() {
            match sock.recv() {
                Ok(records) => {
                    for r in records {
                        let e = self.shared.event(&r, SystemTime::now());
                        self.metrics.log_record(&e.verdict, e.unknown, &e.policies);
                        for out in self.dedupe.offer(e, Instant::now()) {
                            self.emit(out);
                        }
                    }
                }
                Err(NflogError::Overrun) => {
                    warn!("NFLOG records were lost (receive buffer full)");
                    self.metrics.error(NflogError::Overrun.metric_label());
                }
                Err(e) => {
                    error!(error = %e, "NFLOG socket failed; reopening");
                    self.metrics.error(e.metric_label());
                    return;
                }
            }
            for out in self.dedupe.flush(Instant::now()) {
                self.emit(out);
            }
        }
    }

    fn emit(&self, e: Event) {
        log_event(&e);
        self.hub.publish(e);
    }
}

/// The event as a structured log line (`--log-format json` prints every
/// field), target `kube_nftpolicy::flow`.
pub fn log_event(e: &Event) {
    let policies = e.policies.join(",");
    let src = e.src.name().unwrap_or_default();
    let dst = e.dst.name().unwrap_or_default();
    macro_rules! flow {
        ($level:ident, $msg:literal) => {
            tracing::$level!(
                target: "kube_nftpolicy::flow",
                verdict = %e.verdict,
                direction = e.direction.as_deref().unwrap_or(""),
                protocol = %e.protocol,
                src_pod = %src,
                src_ip = e.src.ip.as_deref().unwrap_or(""),
                src_port = e.src.port.unwrap_or(0),
                dst_pod = %dst,
                dst_ip = e.dst.ip.as_deref().unwrap_or(""),
                dst_port = e.dst.port.unwrap_or(0),
                policies = %policies,
                id = %e.id,
                repeats = e.repeats,
                time = %e.time,
                $msg
            )
        };
    }
    match (e.unknown, e.verdict.as_str()) {
        (true, _) => flow!(warn, "log record with an id no recent ruleset has"),
        (false, "allow") => flow!(info, "flow allowed"),
        _ => flow!(info, "flow dropped"),
    }
}
