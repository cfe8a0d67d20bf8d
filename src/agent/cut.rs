//! Cutting flows a policy change no longer allows.
//!
//! `ct state established,related accept` lets every packet of a flow
//! through once its first packet was allowed; a policy that stops allowing
//! it would not stop it before conntrack forgets it. After each commit the
//! dataplane thread hands the applied ruleset to this thread, which dumps
//! the node's conntrack table over ctnetlink and judges each flow's first
//! packet again, against the new table, through `trace::Index`:
//!
//! - the flow as it was opened: source = original source, destination =
//!   reply source (the backend after a Service's DNAT), port = reply source
//!   port; on the input hook when the destination is this node;
//! - flows the node opened itself (original source is one of its
//!   addresses) are not ours to judge: they leave through `output`;
//! - a denied flow gets the cut bit in its conntrack mark, which the first
//!   rule of each egress chain drops (`ruleset::guard`); a marked flow that
//!   is allowed again gets the bit cleared. A marked entry stays: a deleted
//!   one would come back through TCP's loose pick-up, maybe from the
//!   reply side, unjudged.
//!
//! Runs on its own thread; new work replaces work not started yet (only
//! the latest table matters). A ctnetlink failure is logged and counted
//! and never blocks a sync.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use nftpolicy_core::model::Protocol;
use nftpolicy_core::ruleset::trace::{CtState, Index, Outcome, Packet, L4};
use nftpolicy_core::ruleset::{Hook, Ruleset};
use nftpolicy_nft::conntrack::{Conntrack, Flow};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// One re-judging: the ruleset just committed and the node's addresses.
struct Work {
    ruleset: Arc<Ruleset>,
    node_addrs: Arc<Vec<IpAddr>>,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Flows looked at.
    pub flows: usize,
    /// Flows newly marked as cut.
    pub cut: usize,
    /// Flows whose mark was cleared (allowed again).
    pub restored: usize,
}

/// What the thread waits on: the next work, or the end.
#[derive(Default)]
struct Slot {
    work: Option<Work>,
    stop: bool,
}

/// The cutting thread's mailbox. Dropping it ends the thread after the
/// pass it is in, if any.
pub struct Cutter {
    slot: Arc<(Mutex<Slot>, Condvar)>,
}

impl Drop for Cutter {
    fn drop(&mut self) {
        let (m, cv) = &*self.slot;
        m.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        cv.notify_one();
    }
}

impl Cutter {
    /// Starts the thread, working in `/run/netns/<netns>` (or here).
    pub fn start(netns: Option<String>, bit: u32, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let slot: Arc<(Mutex<Slot>, Condvar)> = Arc::default();
        let mine = slot.clone();
        std::thread::Builder::new()
            .name("conntrack-cut".into())
            .spawn(move || {
                let mut ct: Option<Conntrack> = None;
                loop {
                    let work = {
                        let (m, cv) = &*mine;
                        let mut g = m.lock().unwrap_or_else(PoisonError::into_inner);
                        loop {
                            if g.stop {
                                return;
                            }
                            if let Some(w) = g.work.take() {
                                break w;
                            }
                            g = cv.wait(g).unwrap_or_else(PoisonError::into_inner);
                        }
                    };
                    let conn = match ct.as_mut() {
                        Some(c) => c,
                        None => match Conntrack::open(netns.as_deref()) {
                            Ok(c) => ct.insert(c),
                            Err(e) => {
                                warn!(error = %e, "cannot open ctnetlink; flows are not cut");
                                metrics.error("conntrack");
                                continue;
                            }
                        },
                    };
                    let start = Instant::now();
                    match rejudge(conn, &work.ruleset, &work.node_addrs, bit) {
                        Ok(r) => {
                            metrics.flows_cut(r.cut, r.restored);
                            if r.cut + r.restored > 0 {
                                info!(flows = r.flows, cut = r.cut, restored = r.restored, took = ?start.elapsed(), "re-judged established flows");
                            } else {
                                debug!(flows = r.flows, took = ?start.elapsed(), "re-judged established flows");
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "re-judging established flows failed; will retry after the next commit");
                            metrics.error("conntrack");
                            ct = None;
                        }
                    }
                }
            })?;
        Ok(Self { slot })
    }

    /// Asks for a pass over the table after `ruleset` was committed.
    pub fn submit(&self, ruleset: Arc<Ruleset>, node_addrs: Arc<Vec<IpAddr>>) {
        let (m, cv) = &*self.slot;
        m.lock().unwrap_or_else(PoisonError::into_inner).work = Some(Work {
            ruleset,
            node_addrs,
        });
        cv.notify_one();
    }
}

/// The first packet of `flow`, as the table would see it now; `None` for
/// flows this node opened (not ours to judge).
pub fn first_packet(flow: &Flow, node_addrs: &HashSet<IpAddr>) -> Option<Packet> {
    let (o, r) = (&flow.orig, &flow.reply);
    if node_addrs.contains(&o.src) {
        return None;
    }
    let dst = r.src;
    let l4 = match o.proto {
        6 => port(Protocol::Tcp, r.sport),
        17 => port(Protocol::Udp, r.sport),
        132 => port(Protocol::Sctp, r.sport),
        1 | 58 => L4::Icmp {
            icmp_type: if o.proto == 1 { 8 } else { 128 },
        },
        _ => return None,
    };
    Some(Packet {
        src: o.src,
        dst,
        l4,
        ct: CtState::New,
        hook: if node_addrs.contains(&dst) {
            Hook::Input
        } else {
            Hook::Forward
        },
        mark: 0,
    })
}

fn port(protocol: Protocol, port: u16) -> L4 {
    L4::Port { protocol, port }
}

/// One pass: judge every flow, mark the denied, clear the allowed again.
pub fn rejudge(
    ct: &mut Conntrack,
    ruleset: &Ruleset,
    node_addrs: &[IpAddr],
    bit: u32,
) -> std::io::Result<CutReport> {
    let index = Index::new(ruleset);
    let node: HashSet<IpAddr> = node_addrs.iter().copied().collect();
    let flows = ct.flows()?;
    let mut report = CutReport {
        flows: flows.len(),
        ..CutReport::default()
    };
    for flow in &flows {
        let Some(packet) = first_packet(flow, &node) else {
            continue;
        };
        let denied = index.verdict(&packet) == Outcome::Drop;
        let marked = flow.mark & bit == bit;
        if denied == marked {
            continue;
        }
        match ct.set_mark_bit(flow, bit, denied) {
            Ok(()) if denied => report.cut += 1,
            Ok(()) => report.restored += 1,
            // Gone meanwhile: nothing to cut.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads of this process named `name`.
    fn threads(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|dir| {
                dir.flatten()
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.trim_end() == name)
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn dropping_the_cutter_ends_its_thread() {
        let before = threads("conntrack-cut");
        let cutter = Cutter::start(None, 0x2000_0000, Arc::new(Metrics::new())).expect("start");
        // The thread names itself once it runs.
        let give_up = Instant::now() + std::time::Duration::from_secs(5);
        while threads("conntrack-cut") == before {
            assert!(Instant::now() < give_up, "no cutting thread");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(cutter);
        while threads("conntrack-cut") > before {
            assert!(
                Instant::now() < give_up,
                "the cutting thread outlived its Cutter"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
