//! Reading the packets our `log … group N` rules send, over netlink
//! (`NETLINK_NETFILTER`, subsystem `NFNL_SUBSYS_ULOG`), in Rust: no
//! libnetfilter_log, no shelling out.
//!
//! [`NflogSocket::open`] binds NFLOG group `N` in a network namespace
//! (`NFULNL_CFG_CMD_BIND`), asks for the first [`COPY_RANGE`] bytes of each
//! packet (the IP and transport headers: `NFULNL_COPY_PACKET`), and for
//! each packet at once (queue threshold 1). [`NflogSocket::recv`] waits at
//! most its timeout and returns the records of one datagram.
//!
//! No `NFULNL_CFG_CMD_PF_BIND`: nft's `log group` statements name the NFLOG
//! backend themselves, so the namespace's default logger (which other
//! users, e.g. `nf_conntrack_log_invalid`, rely on) is left alone. A group
//! can have one listener per namespace: a second bind fails with `EBUSY`.
//! The kernel unbinds the group when the socket closes.

mod parse;

use std::io;
use std::time::Duration;

use super::nlmsg;
use super::socket::Socket;

pub use parse::{headers, Headers, LogRecord};

/// Bytes of each packet copied to us: an IPv6 header, a few extension
/// headers and the ports; an IPv4 header with options and the ports.
pub const COPY_RANGE: u32 = 128;

const NFULNL_MSG_CONFIG: u16 = (4 << 8) | 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;

/// Why the NFLOG socket failed.
#[derive(Debug, thiserror::Error)]
pub enum NflogError {
    /// The socket could not be opened (or the namespace entered).
    #[error("cannot open an NFLOG socket{}: {source}", .netns.as_ref().map(|n| format!(" in netns {n}")).unwrap_or_default())]
    Open {
        /// The network namespace asked for.
        netns: Option<String>,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel refused to bind or configure the group (`EBUSY`: another
    /// process listens on it; `EPERM`: no CAP_NET_ADMIN).
    #[error("cannot bind NFLOG group {group}: {source}")]
    Bind {
        /// The group.
        group: u16,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The socket's receive buffer overflowed: records were lost (the
    /// kernel says `ENOBUFS` once; reading goes on).
    #[error("NFLOG receive buffer overflowed: records were lost")]
    Overrun,
    /// Reading failed.
    #[error("reading NFLOG records: {0}")]
    Io(#[source] io::Error),
}

impl NflogError {
    /// A short stable name for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            NflogError::Open { .. } => "nflog_open",
            NflogError::Bind { .. } => "nflog_bind",
            NflogError::Overrun => "nflog_overrun",
            NflogError::Io(_) => "nflog_read",
        }
    }
}

/// A socket bound to one NFLOG group.
pub struct NflogSocket {
    sock: Socket,
    group: u16,
    buf: Vec<u8>,
}

impl NflogSocket {
    /// Binds `group` in the current network namespace or in
    /// `/run/netns/<netns>`; `recv` waits at most `timeout`.
    pub fn open(netns: Option<&str>, group: u16, timeout: Duration) -> Result<Self, NflogError> {
        let open = |source| NflogError::Open {
            netns: netns.map(str::to_owned),
            source,
        };
        let sock = Socket::open(netns).map_err(open)?;
        sock.set_recv_timeout(timeout).map_err(open)?;
        let mut s = Self {
            sock,
            group,
            buf: vec![0; 1 << 16],
        };
        let bind = |source| NflogError::Bind { group, source };
        let mut cmd = Vec::new();
        attr(&mut cmd, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
        s.config(1, &cmd).map_err(bind)?;
        let mut cfg = Vec::new();
        let mut mode = COPY_RANGE.to_be_bytes().to_vec();
        mode.extend([NFULNL_COPY_PACKET, 0]);
        attr(&mut cfg, NFULA_CFG_MODE, &mode);
        // Deliver each record at once (default: batches of 100 or 1 s).
        attr(&mut cfg, NFULA_CFG_QTHRESH, &1u32.to_be_bytes());
        attr(&mut cfg, NFULA_CFG_TIMEOUT, &1u32.to_be_bytes());
        s.config(2, &cfg).map_err(bind)?;
        Ok(s)
    }

    /// The group this socket listens on.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Sends one config message for our group and waits for its ACK.
    fn config(&mut self, seq: u32, attrs: &[u8]) -> io::Result<()> {
        let len = 16 + 4 + attrs.len();
        let mut m = Vec::with_capacity(len);
        m.extend((len as u32).to_ne_bytes());
        m.extend(NFULNL_MSG_CONFIG.to_ne_bytes());
        m.extend(((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
        m.extend(seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, the group as res_id.
        m.extend([libc::AF_UNSPEC as u8, 0]);
        m.extend(self.group.to_be_bytes());
        m.extend(attrs);
        self.sock.send(&m)?;
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            for msg in nlmsg::messages(&self.buf[..n]) {
                match nlmsg::error(&msg) {
                    Some(e) if e.seq == seq && e.code == 0 => return Ok(()),
                    Some(e) if e.seq == seq => return Err(io::Error::from_raw_os_error(-e.code)),
                    _ => {}
                }
            }
        }
    }

    /// The records of the next datagram; empty when none came within the
    /// timeout. [`NflogError::Overrun`] says records were lost; the socket
    /// stays usable.
    pub fn recv(&mut self) -> Result<Vec<LogRecord>, NflogError> {
        let n = match self.sock.recv(&mut self.buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Vec::new())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Vec::new()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Err(NflogError::Overrun),
            Err(e) => return Err(NflogError::Io(e)),
        };
        Ok(nlmsg::messages(&self.buf[..n])
            .iter()
            .filter_map(parse::record)
            .collect())
    }
}

/// Appends a netlink attribute (padded to 4 bytes).
fn attr(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    out.extend(((4 + payload.len()) as u16).to_ne_bytes());
    out.extend(ty.to_ne_bytes());
    out.extend(payload);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}
