//! The live stream's fan-out: every event goes to every connected
//! `observe` client through a bounded queue of its own (a broadcast ring
//! of [`QUEUE`] events). Publishing never waits: a client that falls
//! further behind than its queue is cut off (its next read says how many
//! events it lost) rather than slowing the reader or growing memory. At
//! most [`MAX_CLIENTS`] clients at once, and only from the node itself
//! unless remote clients are allowed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast;

use super::Event;

/// Events a client may lag behind before it is dropped.
pub const QUEUE: usize = 1024;
/// Most clients at once.
pub const MAX_CLIENTS: usize = 16;

/// The stream of events.
#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
    clients: AtomicUsize,
    max_clients: usize,
    dropped: AtomicU64,
    remote: bool,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(QUEUE, MAX_CLIENTS)
    }
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ended {
    /// The client fell behind by more than its queue: this many events lost.
    #[error("client too slow: {0} events lost")]
    Lagged(u64),
    /// The hub is gone (the agent is stopping).
    #[error("the agent is stopping")]
    Closed,
}

impl Hub {
    /// A hub with a queue of `queue` events per client and at most
    /// `max_clients` clients.
    pub fn new(queue: usize, max_clients: usize) -> Self {
        let (tx, _) = broadcast::channel(queue.max(1));
        Self {
            tx,
            clients: AtomicUsize::new(0),
            max_clients,
            dropped: AtomicU64::new(0),
            remote: false,
        }
    }

    /// The same hub, serving clients from other hosts too when `remote`
    /// (by default only loopback clients: events name pods and addresses).
    pub fn remote_clients(mut self, remote: bool) -> Self {
        self.remote = remote;
        self
    }

    /// Whether a client at `addr` may subscribe.
    pub fn admits(&self, addr: std::net::IpAddr) -> bool {
        self.remote || addr.is_loopback() || addr.to_canonical().is_loopback()
    }

    /// Sends `e` to every client; never waits.
    pub fn publish(&self, e: Event) {
        // No client: nothing to do (not an error).
        let _ = self.tx.send(Arc::new(e));
    }

    /// A new client's subscription, or `None` when `max_clients` are connected.
    pub fn subscribe(self: &Arc<Self>) -> Option<Subscription> {
        let taken = self
            .clients
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_clients).then_some(n + 1)
            });
        taken.ok()?;
        Some(Subscription {
            rx: self.tx.subscribe(),
            hub: self.clone(),
        })
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    /// Clients cut off for being too slow, since start.
    pub fn dropped_clients(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// One client's queue.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    hub: Arc<Hub>,
}

impl Subscription {
    /// The next event; an error ends the subscription.
    pub async fn recv(&mut self) -> Result<Arc<Event>, Ended> {
        match self.rx.recv().await {
            Ok(e) => Ok(e),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.hub.dropped.fetch_add(1, Ordering::SeqCst);
                Err(Ended::Lagged(n))
            }
            Err(broadcast::error::RecvError::Closed) => Err(Ended::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.clients.fetch_sub(1, Ordering::SeqCst);
    }
}
