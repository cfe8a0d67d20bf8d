//! The prober: one request to an echo server from inside a source namespace,
//! singly or many in parallel from a small pool of threads.
//!
//! TCP: connect, send one byte, read one reply line. UDP: send one datagram
//! from a connected socket, read the reply datagram. Either way the reply is
//! the server's host name, so a probe also says WHO answered (which backend a
//! Service DNAT chose). A refused, unreachable or timed-out probe fails.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{netns, Host, Lab, LabError, Matrix, ProbeKey};

/// Largest number of threads one probe batch runs.
pub const MAX_PROBE_THREADS: usize = 64;

/// Transport protocol of a probe or a server port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl From<Proto> for nftpolicy_core::model::Protocol {
    fn from(p: Proto) -> Self {
        match p {
            Proto::Tcp => nftpolicy_core::model::Protocol::Tcp,
            Proto::Udp => nftpolicy_core::model::Protocol::Udp,
        }
    }
}

impl std::fmt::Display for Proto {
    /// `tcp` / `udp`, as nftables spells them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

pub use nftpolicy_core::model::net::Family;

/// One probe of a batch: from namespace `from` to `to:port` over `proto`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeJob {
    /// Source host.
    pub from: Host,
    /// Destination address.
    pub to: IpAddr,
    /// Destination port.
    pub port: u16,
    /// Transport protocol.
    pub proto: Proto,
}

/// Sends one request to `to` from the CURRENT thread's namespace and returns
/// the reply (the server's name) or why there was none.
pub(super) fn request_here(to: SocketAddr, proto: Proto, timeout: Duration) -> io::Result<String> {
    let deadline = Instant::now() + timeout;
    match proto {
        Proto::Tcp => {
            let mut conn = TcpStream::connect_timeout(&to, timeout)?;
            conn.set_nodelay(true)?;
            conn.write_all(b"?")?;
            read_line(&mut conn, deadline)
        }
        Proto::Udp => {
            let any: IpAddr = match to {
                SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            };
            let sock = UdpSocket::bind((any, 0))?;
            sock.connect(to)?;
            sock.send(b"?")?;
            sock.set_read_timeout(Some(remaining(deadline)?))?;
            let mut buf = [0u8; 512];
            let n = sock.recv(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
        }
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    } else {
        Ok(left)
    }
}

/// Reads until a newline (or EOF) before `deadline`; returns the text
/// without the newline. An empty reply is an error.
pub(super) fn read_line(conn: &mut TcpStream, deadline: Instant) -> io::Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.contains(&b'\n') {
        conn.set_read_timeout(Some(remaining(deadline)?))?;
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without a reply",
        ));
    }
    let text = String::from_utf8_lossy(&got);
    Ok(text.split('\n').next().unwrap_or_default().to_owned())
}

/// Runs `jobs` in parallel on up to [`MAX_PROBE_THREADS`] threads, each of
/// which enters a job's source namespace before probing. Results come back
/// in job order.
pub(super) fn run_batch(jobs: &[ProbeJob], timeout: Duration) -> Vec<Result<String, LabError>> {
    // Work through jobs grouped by source so threads rarely switch namespace.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by(|a, b| jobs[*a].from.netns.cmp(&jobs[*b].from.netns));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<String, LabError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let threads = jobs.len().clamp(1, MAX_PROBE_THREADS);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut current: Option<&str> = None;
                loop {
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(slot) else { break };
                    let job = &jobs[i];
                    let mut outcome = Ok(());
                    if current != Some(job.from.netns.as_str()) {
                        outcome = netns::enter(&job.from.netns);
                        current = outcome.is_ok().then_some(job.from.netns.as_str());
                    }
                    let result = outcome.and_then(|()| probe_result(job, timeout));
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(result);
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(LabError::Setup("probe thread died".into()))))
        .collect()
}

fn probe_result(job: &ProbeJob, timeout: Duration) -> Result<String, LabError> {
    let to = SocketAddr::new(job.to, job.port);
    request_here(to, job.proto, timeout).map_err(|e| LabError::Probe {
        from: job.from.name.clone(),
        to,
        proto: job.proto,
        reason: e.to_string(),
    })
}

/// One request from the namespace `netns` (any namespace) to `to`; returns
/// the name of the server that answered, or why none did.
pub fn request_from(
    netns: &str,
    to: SocketAddr,
    proto: Proto,
    timeout: Duration,
) -> Result<String, LabError> {
    let from = netns.to_owned();
    netns::in_netns(netns, move || {
        request_here(to, proto, timeout).map_err(|e| LabError::Probe {
            from,
            to,
            proto,
            reason: e.to_string(),
        })
    })
}

impl Lab {
    /// One request from `from`'s namespace to `to:port`; returns the name of
    /// the server that answered, or why none did.
    pub fn request(
        &self,
        from: &Host,
        to: IpAddr,
        port: u16,
        proto: Proto,
        timeout: Duration,
    ) -> Result<String, LabError> {
        let job = ProbeJob {
            from: from.clone(),
            to,
            port,
            proto,
        };
        netns::in_netns(&from.netns, move || probe_result(&job, timeout))
    }

    /// Whether a request from `from` to `to:port` gets a reply within
    /// `timeout` (false also if the probe could not be started; see
    /// [`Lab::request`] for the reason).
    pub fn probe(
        &self,
        from: &Host,
        to: IpAddr,
        port: u16,
        proto: Proto,
        timeout: Duration,
    ) -> bool {
        self.request(from, to, port, proto, timeout).is_ok()
    }

    /// Runs many probes in parallel; results (reply or error) in job order.
    pub fn probe_batch(
        &self,
        jobs: &[ProbeJob],
        timeout: Duration,
    ) -> Vec<Result<String, LabError>> {
        run_batch(jobs, timeout)
    }

    /// Probes every `from` × `to` × `ports` × family (for each family both
    /// hosts have an address in; to the destination's primary address) in
    /// parallel and returns the connectivity matrix.
    ///
    /// A cell that fails is probed once more (a fresh connection) before it
    /// counts as blocked, so that a loaded machine does not turn a slow
    /// "connected" into a false "blocked"; a blocked cell thus costs about
    /// two timeouts, still spread over the thread pool.
    pub fn probe_matrix(
        &self,
        from: &[&Host],
        to: &[&Host],
        ports: &[(Proto, u16)],
        timeout: Duration,
    ) -> Matrix {
        let mut keys = Vec::new();
        let mut jobs = Vec::new();
        for src in from {
            for dst in to {
                for family in Family::ALL {
                    let (Some(_), Some(addr)) = (src.ip(family), dst.ip(family)) else {
                        continue;
                    };
                    for &(proto, port) in ports {
                        keys.push(ProbeKey {
                            from: src.name.clone(),
                            to: dst.name.clone(),
                            port,
                            proto,
                            family,
                        });
                        jobs.push(ProbeJob {
                            from: (*src).clone(),
                            to: addr,
                            port,
                            proto,
                        });
                    }
                }
            }
        }
        let mut ok: Vec<bool> = run_batch(&jobs, timeout)
            .iter()
            .map(Result::is_ok)
            .collect();
        let failed: Vec<usize> = (0..jobs.len()).filter(|i| !ok[*i]).collect();
        let retry: Vec<ProbeJob> = failed.iter().map(|i| jobs[*i].clone()).collect();
        for (i, r) in failed.into_iter().zip(run_batch(&retry, timeout)) {
            ok[i] = r.is_ok();
        }
        Matrix {
            results: keys.into_iter().zip(ok).collect(),
        }
    }
}
