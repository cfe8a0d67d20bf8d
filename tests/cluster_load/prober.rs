//! The first packet that obeys a change: new TCP connections from a real
//! client pod, one started every [`PERIOD`], overlapping. One thread (in
//! the pod's network namespace, real-time priority) starts each attempt
//! with a non-blocking `connect` (the SYN leaves inside that call) and
//! stamps it right before; it then only looks at the sockets: a handshake
//! completes in the kernel whether or not the thread runs, so a busy
//! machine delays the reading of an outcome, never the outcome itself.
//!
//! - Opening (want a connection): the first attempt whose handshake
//!   completes. Its stamp is the result; the attempt before it, started one
//!   period earlier, was dropped. Resolution: one period.
//! - Closing (want no connection): the first attempt with no handshake
//!   within [`WAIT`] while every attempt started up to [`CONFIRM`] after it
//!   has none either. Resolution: one period.
//!
//! Either way at least one attempt must have shown the old state, or the
//! probe started too late to see the change ([`Obeyed::before`]).
//!
//! The first SYN of a connection is what the policy judges (replies and
//! later packets pass as established), so "the first packet that obeys"
//! is the first SYN sent after the kernel commit. Connections close with
//! RST (linger 0): thousands of probes leave no TIME_WAIT behind.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Protocol, SockAddr, Socket, Type};

/// Time between two connection attempts.
pub const PERIOD: Duration = Duration::from_millis(2);
/// An attempt without a handshake after this long was dropped (the SYN
/// is retransmitted only after 1 s, so an attempt is one SYN).
pub const WAIT: Duration = Duration::from_millis(150);
/// A drop counts once every attempt started this long after it dropped too.
pub const CONFIRM: Duration = Duration::from_millis(20);

/// When the first obeying packet was sent, and how many attempts it took.
#[derive(Debug, Clone, Copy)]
pub struct Obeyed {
    /// Send time of the first SYN that obeyed the new state.
    pub at: Instant,
    /// Connection attempts started in all.
    pub attempts: usize,
    /// Attempts that showed the old state before it.
    pub before: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Connected,
    /// No handshake within WAIT: dropped.
    Silent,
    /// Refused, unreachable, ...: neither state of a policy.
    Failed,
}

struct Attempt {
    /// Right before the `connect`.
    sent: Instant,
    outcome: Outcome,
    /// Open while pending.
    sock: Option<Socket>,
}

/// Starts probing `to` from the pod namespace `netns` until the state
/// `open` is seen (or `give_up`): a thread; join it for the result.
pub fn start(
    netns: &str,
    to: SocketAddr,
    open: bool,
    give_up: Instant,
) -> JoinHandle<Result<Obeyed, String>> {
    let netns = netns.to_owned();
    std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || {
            nftpolicy_lab::netns::enter(&netns).map_err(|e| e.to_string())?;
            crate::nlmon::realtime();
            run(to, open, give_up)
        })
        .expect("spawn a probe thread")
}

fn run(to: SocketAddr, open: bool, give_up: Instant) -> Result<Obeyed, String> {
    let addr = SockAddr::from(to);
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut last_error = String::new();
    let mut next = Instant::now();
    loop {
        attempts.push(attempt(&addr)?);
        for (i, a) in attempts.iter_mut().enumerate() {
            if let Some(e) = settle(a) {
                last_error = format!("attempt {i} to {to}: {e}");
            }
        }
        if let Some(found) = decide(&attempts, open) {
            return Ok(found);
        }
        if Instant::now() >= give_up {
            let seen: Vec<&str> = attempts
                .iter()
                .rev()
                .take(5)
                .map(|a| match a.outcome {
                    Outcome::Pending => "pending",
                    Outcome::Connected => "connected",
                    Outcome::Silent => "dropped",
                    Outcome::Failed => "failed",
                })
                .collect();
            return Err(format!(
                "{to} still not {} after {} attempts (last: {seen:?}) {last_error}",
                if open { "open" } else { "closed" },
                attempts.len()
            ));
        }
        next += PERIOD;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            // Late (descheduled): start the next one now, do not catch up.
            next = now;
        }
    }
}

/// Starts one connection attempt: the SYN is sent inside `connect`.
fn attempt(addr: &SockAddr) -> Result<Attempt, String> {
    let sock = Socket::new(addr.domain(), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("socket: {e}"))?;
    sock.set_linger(Some(Duration::ZERO))
        .map_err(|e| format!("SO_LINGER: {e}"))?;
    sock.set_nonblocking(true)
        .map_err(|e| format!("O_NONBLOCK: {e}"))?;
    let sent = Instant::now();
    let outcome = match sock.connect(addr) {
        Ok(()) => Outcome::Connected,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Outcome::Pending,
        Err(_) => Outcome::Failed,
    };
    Ok(Attempt {
        sent,
        outcome,
        sock: (outcome == Outcome::Pending).then_some(sock),
    })
}

/// Reads a pending attempt's outcome, if it has one: the handshake
/// completed (the socket has a peer), failed (a socket error), or did not
/// come within WAIT. Returns the error of a failed one.
fn settle(a: &mut Attempt) -> Option<String> {
    let sock = a.sock.as_ref()?;
    let mut error = None;
    a.outcome = match sock.take_error() {
        Ok(Some(e)) | Err(e) => {
            error = Some(e.to_string());
            Outcome::Failed
        }
        // getpeername fails with ENOTCONN while the SYN is unanswered.
        Ok(None) if sock.peer_addr().is_ok() => Outcome::Connected,
        Ok(None) if a.sent.elapsed() >= WAIT => Outcome::Silent,
        Ok(None) => return None,
    };
    a.sock = None;
    error
}

/// The first obeying attempt, once it is certain.
fn decide(attempts: &[Attempt], open: bool) -> Option<Obeyed> {
    let found = |k: usize, before: usize| {
        Some(Obeyed {
            at: attempts[k].sent,
            attempts: attempts.len(),
            before,
        })
    };
    if open {
        // Certain once every earlier attempt has an outcome (a late
        // handshake of an earlier SYN would move the answer back).
        let k = attempts
            .iter()
            .position(|a| a.outcome == Outcome::Connected)?;
        let earlier = &attempts[..k];
        if earlier.iter().any(|a| a.outcome == Outcome::Pending) {
            return None;
        }
        let before = earlier
            .iter()
            .filter(|a| a.outcome == Outcome::Silent)
            .count();
        return found(k, before);
    }
    // The first silent attempt after the last connected one, once the
    // attempts up to CONFIRM after it are all silent too.
    let last_connected = attempts
        .iter()
        .rposition(|a| a.outcome == Outcome::Connected);
    let from = last_connected.map_or(0, |i| i + 1);
    let k = from
        + attempts[from..]
            .iter()
            .position(|a| a.outcome == Outcome::Silent)?;
    let t = attempts[k].sent;
    let window_silent = attempts[k..]
        .iter()
        .take_while(|a| a.sent <= t + CONFIRM)
        .all(|a| a.outcome == Outcome::Silent);
    let covered = attempts.last().is_some_and(|a| a.sent > t + CONFIRM);
    let earlier_done = attempts[from..k]
        .iter()
        .all(|a| a.outcome != Outcome::Pending);
    let before = attempts[..k]
        .iter()
        .filter(|a| a.outcome == Outcome::Connected)
        .count();
    (covered && earlier_done && window_silent)
        .then(|| found(k, before))
        .flatten()
}
