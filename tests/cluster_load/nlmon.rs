//! Watches the kernel commit our table, with no polling: a NETLINK_NETFILTER
//! socket in a node's network namespace, subscribed to the nf_tables event
//! group (what `nft monitor` reads). The kernel sends every change of a
//! committed batch (rules, chains, sets, set elements) and then one
//! NEWGEN message ("new generation N"), all from inside the commit; the
//! reader thread (real-time priority) stamps each NEWGEN with the time it
//! was received, so a [`Commit`] is known within the thread's wake-up
//! latency, and what it changed is recorded well enough to tell which
//! commit carried a given change.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::{TimeVal, TimeValLike};

/// linux/netfilter/nfnetlink.h: NFNLGRP_NFTABLES.
const NFNLGRP_NFTABLES: u32 = 7;
/// NFNL_SUBSYS_NFTABLES, the high byte of a message type.
const SUBSYS_NFTABLES: u16 = 10;
/// Our table.
const TABLE: &str = "kube-nftpolicy";

// linux/netfilter/nf_tables.h message types.
const NEWCHAIN: u16 = 3;
const DELCHAIN: u16 = 5;
const NEWRULE: u16 = 6;
const DELRULE: u16 = 8;
const NEWSET: u16 = 9;
const DELSET: u16 = 11;
const NEWSETELEM: u16 = 12;
const DELSETELEM: u16 = 14;
const NEWGEN: u16 = 15;

/// One element added to or removed from a set (or map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange {
    /// Added (`true`) or removed.
    pub added: bool,
    /// The set or map.
    pub set: String,
    /// The key's bytes as the kernel holds them (an IPv4 address is its 4
    /// octets; a concatenation starts with them).
    pub key: Vec<u8>,
}

/// One committed batch.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// When the NEWGEN message was received (the commit is complete).
    pub at: Option<Instant>,
    /// The generation the commit made.
    pub generation: u32,
    /// Set elements added and removed.
    pub elements: Vec<ElementChange>,
    /// Chains whose rules were added or deleted, or that were added or deleted.
    pub chains: Vec<String>,
    /// Sets (and maps) added or deleted.
    pub sets: Vec<String>,
    /// Messages of the batch (our table only).
    pub messages: usize,
}

impl Commit {
    /// Whether `ip`'s octets were added (`added`) to or removed from any set.
    pub fn element(&self, octets: &[u8], added: bool) -> bool {
        self.elements
            .iter()
            .any(|e| e.added == added && e.key.starts_with(octets))
    }

    /// Whether any rule or chain message named a chain ending in `suffix`.
    pub fn chain_ending(&self, suffix: &str) -> bool {
        self.chains.iter().any(|c| c.ends_with(suffix))
    }
}

#[derive(Default)]
struct Log {
    commits: Vec<Commit>,
    /// The batch being received (before its NEWGEN).
    partial: Commit,
    /// Times the socket overflowed (events lost).
    overflows: usize,
}

/// The monitor of one network namespace; stops on drop.
pub struct Monitor {
    shared: Arc<(Mutex<Log>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Subscribes in `netns` and starts the reader thread.
    pub fn start(netns: &str) -> Monitor {
        let fd: OwnedFd = nftpolicy_lab::netns::in_netns(netns, || {
            let io = |e: Errno| nftpolicy_lab::LabError::Io {
                context: "nf_tables monitor socket".into(),
                source: e.into(),
            };
            let fd = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkNetFilter,
            )
            .map_err(io)?;
            // A full replace of a large table sends thousands of messages.
            setsockopt(&fd, sockopt::RcvBufForce, &(64 << 20)).map_err(io)?;
            setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(100)).map_err(io)?;
            bind(
                fd.as_raw_fd(),
                &NetlinkAddr::new(0, 1 << (NFNLGRP_NFTABLES - 1)),
            )
            .map_err(io)?;
            Ok(fd)
        })
        .unwrap_or_else(|e| panic!("nf_tables monitor in {netns}: {e}"));
        let shared = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("nlmon-{netns}"))
            .spawn(move || {
                realtime();
                read_loop(&fd, &s, &st)
            })
            .expect("spawn the monitor thread");
        Monitor {
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// Every commit seen so far.
    pub fn commits(&self) -> Vec<Commit> {
        self.shared.0.lock().unwrap().commits.clone()
    }

    /// The time of the last commit seen.
    pub fn last_commit(&self) -> Option<Instant> {
        self.shared
            .0
            .lock()
            .unwrap()
            .commits
            .last()
            .and_then(|c| c.at)
    }

    /// How often events were lost (socket overflow).
    pub fn overflows(&self) -> usize {
        self.shared.0.lock().unwrap().overflows
    }

    /// The first commit received after `after` for which `want` holds,
    /// waiting until `deadline`.
    pub fn wait_for(
        &self,
        after: Instant,
        deadline: Instant,
        want: impl Fn(&Commit) -> bool,
    ) -> Option<Commit> {
        let (lock, cv) = &*self.shared;
        let mut log = lock.lock().unwrap();
        loop {
            if let Some(c) = log
                .commits
                .iter()
                .find(|c| c.at.is_some_and(|t| t > after) && want(c))
            {
                return Some(c.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            log = cv.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// Waits until no commit came for `quiet` (at most `limit`).
    pub fn wait_quiet(&self, quiet: Duration, limit: Duration) {
        let give_up = Instant::now() + limit;
        loop {
            let since = self.last_commit().map_or(quiet, |t| t.elapsed());
            if since >= quiet || Instant::now() >= give_up {
                return;
            }
            std::thread::sleep(quiet - since);
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Puts the calling thread in the real-time class (`chrt -f`), so that on
/// a busy machine it reads an event as soon as the kernel queues it rather
/// than when the scheduler gets round to it. It sleeps in `recv` otherwise.
/// Best effort: without it the stamps are only later. (The prober's
/// thread uses it too.)
pub fn realtime() {
    let tid = nix::unistd::gettid().to_string();
    let _ = std::process::Command::new("chrt")
        .args(["-f", "-p", "10", &tid])
        .output();
}

fn read_loop(fd: &OwnedFd, shared: &(Mutex<Log>, Condvar), stop: &AtomicBool) {
    let mut buf = vec![0u8; 1 << 20];
    while !stop.load(Ordering::Relaxed) {
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(Errno::ENOBUFS) => {
                shared.0.lock().unwrap().overflows += 1;
                continue;
            }
            Err(e) => panic!("nf_tables monitor: recv: {e}"),
        };
        let at = Instant::now();
        let mut log = shared.0.lock().unwrap();
        let mut committed = false;
        for (ty, payload) in messages(&buf[..n]) {
            if ty >> 8 != SUBSYS_NFTABLES {
                continue;
            }
            // Skip struct nfgenmsg (family, version, res_id).
            let Some(attrs) = payload.get(4..) else {
                continue;
            };
            committed |= record(&mut log, ty & 0xff, attrs, at);
        }
        drop(log);
        if committed {
            shared.1.notify_all();
        }
    }
}

/// Adds one message to the log; `true` when it completed a commit.
fn record(log: &mut Log, msg: u16, attrs: &[u8], at: Instant) -> bool {
    let a = parse_attrs(attrs);
    let string = |t: u16| {
        a.iter()
            .find(|(k, _)| *k == t)
            .map(|(_, v)| c_str(v))
            .unwrap_or_default()
    };
    match msg {
        NEWGEN => {
            let mut c = std::mem::take(&mut log.partial);
            c.at = Some(at);
            c.generation = a
                .iter()
                .find(|(k, _)| *k == 1)
                .and_then(|(_, v)| v.get(..4))
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            log.commits.push(c);
            return true;
        }
        // Table (1) then chain name: NFTA_RULE_CHAIN (2), NFTA_CHAIN_NAME (3).
        NEWRULE | DELRULE if string(1) == TABLE => {
            let chain = string(2);
            log.partial.messages += 1;
            if !log.partial.chains.contains(&chain) {
                log.partial.chains.push(chain);
            }
        }
        NEWCHAIN | DELCHAIN if string(1) == TABLE => {
            let chain = string(3);
            log.partial.messages += 1;
            if !log.partial.chains.contains(&chain) {
                log.partial.chains.push(chain);
            }
        }
        // NFTA_SET_TABLE (1), NFTA_SET_NAME (2).
        NEWSET | DELSET if string(1) == TABLE => {
            log.partial.messages += 1;
            log.partial.sets.push(string(2));
        }
        // NFTA_SET_ELEM_LIST_TABLE (1), _SET (2), _ELEMENTS (3): a list of
        // NFTA_LIST_ELEM, each with NFTA_SET_ELEM_KEY (1) holding
        // NFTA_DATA_VALUE (1).
        NEWSETELEM | DELSETELEM if string(1) == TABLE => {
            log.partial.messages += 1;
            let set = string(2);
            let added = msg == NEWSETELEM;
            for (t, list) in &a {
                if *t != 3 {
                    continue;
                }
                for (_, elem) in parse_attrs(list) {
                    let key = parse_attrs(elem)
                        .into_iter()
                        .find(|(k, _)| *k == 1)
                        .and_then(|(_, key)| parse_attrs(key).into_iter().find(|(k, _)| *k == 1))
                        .map(|(_, v)| v.to_vec());
                    if let Some(key) = key {
                        log.partial.elements.push(ElementChange {
                            added,
                            set: set.clone(),
                            key,
                        });
                    }
                }
            }
        }
        _ => {}
    }
    false
}

/// The netlink messages of one datagram: (type, payload after the header).
fn messages(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        out.push((ty, &buf[16..len]));
        let next = (len + 3) & !3;
        buf = buf.get(next..).unwrap_or_default();
    }
    out
}

/// Netlink attributes: (type without the nested / byte-order flags, payload).
fn parse_attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        if len < 4 || len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        out.push((ty, &buf[4..len]));
        let next = (len + 3) & !3;
        buf = buf.get(next..).unwrap_or_default();
    }
    out
}

fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}
