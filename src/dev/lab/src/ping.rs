//! ICMP echo from inside a lab namespace, through a raw socket (our own
//! code: no `ping` binary is needed). Used to check that rules without
//! ports allow ICMP and rules with ports do not.
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::{netns, Host};

static NEXT_ID: AtomicU16 = AtomicU16::new(1);

/// One echo request from `from`'s namespace to `to`; `Ok` when the
/// matching echo reply comes back within `timeout`.
pub fn ping(from: &Host, to: IpAddr, timeout: Duration) -> Result<(), String> {
    netns::in_netns(from.netns(), move || Ok(ping_here(to, timeout)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("ping {to}: {e}"))
}

fn raw_socket(v6: bool) -> io::Result<UdpSocket> {
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    // A raw ICMP socket, used through the datagram calls (sendto/recvfrom).
    Ok(Socket::new(domain, Type::RAW, Some(proto))?.into())
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ping_here(to: IpAddr, timeout: Duration) -> io::Result<()> {
    let v6 = to.is_ipv6();
    let sock = raw_socket(v6)?;
    let id = NEXT_ID
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(std::process::id() as u16);
    let seq: u16 = 1;
    let (request, reply) = if v6 { (128u8, 129u8) } else { (8u8, 0u8) };
    let mut pkt = vec![request, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"kube-nftpolicy-lab-ping");
    if !v6 {
        // The kernel computes the ICMPv6 checksum itself; ICMPv4 is ours.
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    sock.send_to(&pkt, SocketAddr::new(to, 0))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no echo reply"));
        }
        sock.set_read_timeout(Some(left))?;
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no echo reply"))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // IPv4 raw sockets deliver the IP header too.
        let icmp = if v6 {
            &buf[..n]
        } else {
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            if n < ihl + 8 {
                continue;
            }
            &buf[ihl..n]
        };
        if icmp.len() >= 8
            && icmp[0] == reply
            && icmp[4..6] == id.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes()
            && src.ip() == to
        {
            return Ok(());
        }
    }
}
