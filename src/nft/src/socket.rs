//! The netfilter netlink socket: opened (through mnl) from a thread that
//! entered the named network namespace, if one is given, so that it talks
//! to that namespace's nf_tables for its whole life; one `send` per batch
//! with a send buffer forced to the batch's size (the kernel treats each
//! datagram as a batch of its own, so a batch must never be split).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

/// Room for the error messages of a batch that fails in many places.
const RCVBUF: usize = 8 << 20;
/// Replies are queued by the time `send` returns (the kernel processes a
/// batch in the sender's context): a silent socket means something broke.
const RCV_TIMEOUT: Duration = Duration::from_secs(60);

/// An open NETLINK_NETFILTER socket.
pub(super) struct Socket {
    inner: mnl::Socket,
    sndbuf: usize,
}

// SAFETY: an mnl_socket is a file descriptor plus its bound address; nothing
// in it belongs to the thread that created it, and `Socket` hands out no
// shared references to it.
unsafe impl Send for Socket {}

impl Socket {
    /// Opens a socket in the current network namespace, or in
    /// `/run/netns/<netns>` (from a short-lived thread that enters it).
    pub(super) fn open(netns: Option<&str>) -> io::Result<Self> {
        let Some(name) = netns else {
            return Self::open_here();
        };
        if name.is_empty() || name.contains('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad netns name {name:?}"),
            ));
        }
        let path = Path::new("/run/netns").join(name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path)?;
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                Self::open_here()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        })
    }

    fn open_here() -> io::Result<Self> {
        let inner = mnl::Socket::new(mnl::Bus::Netfilter)?;
        let fd = inner.as_raw_fd();
        // Errors carry only the failing message's header, plus the
        // extended-ACK offset of the failing attribute (element).
        setsockopt(fd, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1)?;
        setsockopt(fd, libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1)?;
        if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF as i32).is_err() {
            setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF as i32)?;
        }
        let tv = libc::timeval {
            tv_sec: RCV_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a valid timeval for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { inner, sndbuf: 0 })
    }

    /// Sends `bytes` as ONE datagram, growing the send buffer to fit.
    pub(super) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let need = bytes.len() + 4096;
        if need > self.sndbuf {
            let fd = self.inner.as_raw_fd();
            let want = i32::try_from(need).map_err(|_| io::Error::other("batch too large"))?;
            if setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, want).is_err() {
                setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, want)?;
            }
            self.sndbuf = need;
        }
        let sent = self.inner.send(bytes)?;
        if sent != bytes.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                bytes.len()
            )));
        }
        Ok(())
    }

    /// Makes `recv` give up after `timeout` (`EAGAIN`) instead of 60 s.
    pub(super) fn set_recv_timeout(&self, timeout: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a valid timeval for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                self.inner.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram into `buf`; returns its length.
    pub(super) fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is writable for `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                self.inner.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

fn setsockopt(fd: i32, level: i32, opt: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a valid int for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
