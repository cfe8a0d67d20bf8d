//! Folding repeats: a client retrying a refused connection sends the same
//! (source, destination, protocol, port, verdict) again and again, logged
//! by the same rule (log id). The
//! first record of such a flow is reported at once; identical records in
//! the next [`WINDOW`] are only counted, and when the window closes one
//! more event carries that count (`repeats`). The source port is left out
//! of the key on purpose: each retry of a TCP client comes from a new one.
//!
//! Pure: the caller passes the time. The table is bounded ([`MAX_FLOWS`]);
//! when it is full, new flows are reported without folding.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Event;

/// How long identical records are folded into the first.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Most flows folded at once.
pub const MAX_FLOWS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    src: Option<String>,
    dst: Option<String>,
    protocol: String,
    port: Option<u16>,
    icmp_type: Option<u8>,
    verdict: String,
    id: String,
}

impl Key {
    fn of(e: &Event) -> Self {
        Self {
            src: e.src.ip.clone(),
            dst: e.dst.ip.clone(),
            protocol: e.protocol.clone(),
            port: e.dst.port,
            icmp_type: e.icmp_type,
            verdict: e.verdict.clone(),
            id: e.id.clone(),
        }
    }
}

#[derive(Debug)]
struct Flow {
    first: Instant,
    repeats: u64,
    last: Event,
}

/// The flows seen in the last window.
#[derive(Debug)]
pub struct Dedupe {
    window: Duration,
    flows: HashMap<Key, Flow>,
}

impl Default for Dedupe {
    fn default() -> Self {
        Self::new(WINDOW)
    }
}

impl Dedupe {
    /// Folds identical records within `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            flows: HashMap::new(),
        }
    }

    /// What to report for `e` seen at `now`: `e` itself when it starts a
    /// flow (after the summary of that flow's closed window, if it had
    /// repeats), nothing when it repeats a flow of the current window.
    pub fn offer(&mut self, e: Event, now: Instant) -> Vec<Event> {
        let key = Key::of(&e);
        let mut out = Vec::new();
        if let Some(flow) = self.flows.get_mut(&key) {
            if now.duration_since(flow.first) < self.window {
                flow.repeats += 1;
                flow.last = e;
                return out;
            }
            if let Some(summary) = self.flows.remove(&key).and_then(summary) {
                out.push(summary);
            }
        }
        if self.flows.len() < MAX_FLOWS {
            self.flows.insert(
                key,
                Flow {
                    first: now,
                    repeats: 0,
                    last: e.clone(),
                },
            );
        }
        out.push(e);
        out
    }

    /// The summaries of windows closed by `now` (flows with repeats), and
    /// forgets those flows.
    pub fn flush(&mut self, now: Instant) -> Vec<Event> {
        let window = self.window;
        let closed: Vec<Key> = self
            .flows
            .iter()
            .filter(|(_, f)| now.duration_since(f.first) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<Event> = closed
            .into_iter()
            .filter_map(|k| self.flows.remove(&k).and_then(summary))
            .collect();
        out.sort_by(|a, b| a.time.cmp(&b.time));
        out
    }

    /// Flows in the table.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is being folded.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// The event that reports a window's repeats: the last repeat, with the count.
fn summary(flow: Flow) -> Option<Event> {
    let repeats = flow.repeats;
    (repeats > 0).then_some(Event {
        repeats,
        ..flow.last
    })
}
