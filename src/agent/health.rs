//! What `/healthz` and `/readyz` answer from.
//!
//! Liveness has two parts, because the work has two places: the async sync
//! loop (watch events, timers) beats while it waits, whatever it waits for;
//! the dataplane thread reports each stage of a sync as it enters it
//! (`resolve`, `build`, `apply`, and the apply's own steps). The agent is
//! live while the loop beats and the current stage, if any, is younger than
//! its bound: `stalled_after` for every stage, except the kernel's commit of
//! one netlink batch, which cannot report progress while it runs and is
//! allowed `commit_window` (a 100k-pod full replace takes seconds; a
//! netlink timeout would end a stuck one long before). A long sync whose
//! stages keep coming is live however long it takes in all; a stage that
//! hangs is not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A stage of a sync, as the dataplane thread reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Any step that reports again within `stalled_after`.
    Step(&'static str),
    /// The kernel commits a batch: no progress until it returns.
    KernelCommit,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Step(s) => s,
            Stage::KernelCommit => "kernel commit",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Work {
    stage: Stage,
    since: Instant,
}

/// The health state: shared by the sync loop, the dataplane thread and
/// the HTTP server.
#[derive(Debug)]
pub struct Health {
    /// The sync loop's last sign of life.
    heartbeat: Mutex<Instant>,
    /// The stage the dataplane thread is in, `None` when idle.
    work: Mutex<Option<Work>>,
    /// A sync has succeeded once.
    applied: AtomicBool,
    /// Since when applies fail (`None`: the last one succeeded).
    failing_since: Mutex<Option<Instant>>,
    /// Failing for this long makes the agent unready.
    unready_after: Duration,
    /// A heartbeat or stage older than this makes the agent unhealthy.
    stalled_after: Duration,
    /// How long one kernel commit may take.
    commit_window: Duration,
}

impl Health {
    /// Unready after `unready_after` of failing applies; unhealthy when the
    /// loop or a stage shows no sign of life for `stalled_after` (a kernel
    /// commit: 5 minutes).
    pub fn new(unready_after: Duration, stalled_after: Duration) -> Self {
        Self {
            heartbeat: Mutex::new(Instant::now()),
            work: Mutex::new(None),
            applied: AtomicBool::new(false),
            failing_since: Mutex::new(None),
            unready_after,
            stalled_after,
            commit_window: Duration::from_secs(300),
        }
    }

    /// The same, with another bound for one kernel commit.
    pub fn with_commit_window(mut self, window: Duration) -> Self {
        self.commit_window = window;
        self
    }

    /// How often the loop must beat to stay live: a quarter of
    /// `stalled_after`, at most 5 s.
    pub fn beat_every(&self) -> Duration {
        (self.stalled_after / 4).clamp(Duration::from_millis(5), Duration::from_secs(5))
    }

    /// The loop is alive.
    pub fn beat(&self) {
        *lock(&self.heartbeat) = Instant::now();
    }

    /// The dataplane thread entered `stage` (progress).
    pub fn stage(&self, stage: Stage) {
        *lock(&self.work) = Some(Work {
            stage,
            since: Instant::now(),
        });
    }

    /// The dataplane thread finished its sync.
    pub fn idle(&self) {
        *lock(&self.work) = None;
    }

    /// An apply succeeded.
    pub fn apply_ok(&self) {
        self.applied.store(true, Ordering::SeqCst);
        *lock(&self.failing_since) = None;
        self.beat();
    }

    /// An apply failed.
    pub fn apply_failed(&self) {
        lock(&self.failing_since).get_or_insert_with(Instant::now);
        self.beat();
    }

    /// `/healthz`: the loop beat recently and the current stage, if any,
    /// is within its bound.
    pub fn live(&self) -> Result<(), String> {
        let age = lock(&self.heartbeat).elapsed();
        if age > self.stalled_after {
            return Err(format!("sync loop silent for {}s", age.as_secs()));
        }
        if let Some(w) = *lock(&self.work) {
            let bound = match w.stage {
                Stage::KernelCommit => self.commit_window,
                Stage::Step(_) => self.stalled_after,
            };
            let age = w.since.elapsed();
            if age > bound {
                return Err(format!(
                    "sync stuck in {} for {}s",
                    w.stage.name(),
                    age.as_secs()
                ));
            }
        }
        Ok(())
    }

    /// `/readyz`: the first apply succeeded and applies have not been
    /// failing for longer than allowed.
    pub fn ready(&self) -> Result<(), String> {
        if !self.applied.load(Ordering::SeqCst) {
            return Err("no ruleset applied yet".into());
        }
        match *lock(&self.failing_since) {
            Some(t) if t.elapsed() > self.unready_after => {
                Err(format!("applies failing for {}s", t.elapsed().as_secs()))
            }
            _ => Ok(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness() {
        let h = Health::new(Duration::ZERO, Duration::from_secs(60));
        assert!(h.ready().is_err(), "not ready before the first apply");
        h.apply_ok();
        assert!(h.ready().is_ok());
        h.apply_failed();
        std::thread::sleep(Duration::from_millis(2));
        assert!(h.ready().is_err(), "failing longer than allowed");
        h.apply_ok();
        assert!(h.ready().is_ok());
        assert!(h.live().is_ok());
    }

    #[test]
    fn liveness_follows_the_stage() {
        let h = Health::new(Duration::ZERO, Duration::from_millis(30))
            .with_commit_window(Duration::from_millis(200));
        h.stage(Stage::Step("resolve"));
        assert!(h.live().is_ok());
        std::thread::sleep(Duration::from_millis(50));
        h.beat();
        let e = h.live().expect_err("a step older than stalled_after");
        assert!(e.contains("resolve"), "{e}");
        h.stage(Stage::KernelCommit);
        std::thread::sleep(Duration::from_millis(50));
        h.beat();
        assert!(h.live().is_ok(), "a commit has its own, longer bound");
        h.idle();
        std::thread::sleep(Duration::from_millis(50));
        let e = h.live().expect_err("the loop stopped beating");
        assert!(e.contains("silent"), "{e}");
    }
}
