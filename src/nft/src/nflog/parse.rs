//! NFLOG packet messages → [`LogRecord`]s, in safe Rust: the attributes
//! nfnetlink_log sends (prefix, hook, timestamp, interfaces, payload) and
//! the network and transport headers at the start of the payload (IPv4,
//! IPv6 with its extension headers; TCP, UDP, SCTP ports; ICMP types).
//! Anything short or strange gives `None` fields, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::super::nlmsg::{self, Msg};

/// `(NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET`.
pub(super) const MSG_PACKET: u16 = 4 << 8;

const NFULA_PACKET_HDR: u16 = 1;
const NFULA_TIMESTAMP: u16 = 3;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_OUTDEV: u16 = 5;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The log statement's prefix (`knp:<id>:drop` for ours).
    pub prefix: String,
    /// The netfilter hook number (`NF_INET_FORWARD` = 2, `LOCAL_IN` = 1).
    pub hook: Option<u8>,
    /// When the packet arrived, if the kernel stamped it.
    pub timestamp: Option<SystemTime>,
    /// Input interface index.
    pub indev: Option<u32>,
    /// Output interface index.
    pub outdev: Option<u32>,
    /// The packet's headers, when the payload could be read.
    pub packet: Option<Headers>,
}

/// What the network and transport headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The layer-4 protocol number (6 TCP, 17 UDP, 132 SCTP, 1/58 ICMP).
    pub protocol: u8,
    /// Source port (TCP, UDP, SCTP).
    pub src_port: Option<u16>,
    /// Destination port (TCP, UDP, SCTP).
    pub dst_port: Option<u16>,
    /// ICMP or ICMPv6 type.
    pub icmp_type: Option<u8>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The record of an NFLOG packet message (`None` for other messages).
pub(super) fn record(msg: &Msg<'_>) -> Option<LogRecord> {
    if msg.ty != MSG_PACKET {
        return None;
    }
    let mut r = LogRecord {
        prefix: String::new(),
        hook: None,
        timestamp: None,
        indev: None,
        outdev: None,
        packet: None,
    };
    for (ty, p) in nlmsg::nft_attrs(msg) {
        match ty {
            NFULA_PREFIX => r.prefix = super::super::ffi::c_bytes_to_string(p),
            NFULA_PACKET_HDR => r.hook = p.get(2).copied(),
            NFULA_TIMESTAMP => {
                r.timestamp = be64(p, 0).zip(be64(p, 8)).map(|(s, us)| {
                    UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us.min(999_999))
                })
            }
            NFULA_IFINDEX_INDEV => r.indev = be32(p, 0),
            NFULA_IFINDEX_OUTDEV => r.outdev = be32(p, 0),
            NFULA_PAYLOAD => r.packet = headers(p),
            _ => {}
        }
    }
    Some(r)
}

/// Addresses, protocol and ports from a packet that starts at its network
/// header.
pub fn headers(p: &[u8]) -> Option<Headers> {
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < 20 {
                return None;
            }
            let src: [u8; 4] = p.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            let protocol = *p.get(9)?;
            // A fragment other than the first has no transport header.
            let first_fragment = be16(p, 6).is_some_and(|f| f & 0x1fff == 0);
            let l4 = if first_fragment { p.get(ihl..) } else { None };
            Some(transport(
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                protocol,
                l4,
            ))
        }
        6 => {
            let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            let (protocol, l4) = ipv6_transport(p)?;
            Some(transport(
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                protocol,
                l4,
            ))
        }
        _ => None,
    }
}

/// The upper-layer protocol of an IPv6 packet and its header, past the
/// extension headers (no header after a non-first fragment).
fn ipv6_transport(p: &[u8]) -> Option<(u8, Option<&[u8]>)> {
    let mut next = *p.get(6)?;
    let mut at = 40;
    // A bound on the chain: real packets have few extension headers.
    for _ in 0..8 {
        let len = match next {
            0 | 43 | 60 => (usize::from(*p.get(at + 1)?) + 1) * 8, // hop-by-hop, routing, dst opts
            51 => (usize::from(*p.get(at + 1)?) + 2) * 4,          // AH
            44 => {
                let offset = be16(p, at + 2)? & 0xfff8;
                let proto = *p.get(at)?;
                if offset != 0 {
                    return Some((proto, None));
                }
                8
            }
            proto => return Some((proto, p.get(at..))),
        };
        next = *p.get(at)?;
        at += len;
    }
    Some((next, None))
}

fn transport(src: IpAddr, dst: IpAddr, protocol: u8, l4: Option<&[u8]>) -> Headers {
    let mut h = Headers {
        src,
        dst,
        protocol,
        src_port: None,
        dst_port: None,
        icmp_type: None,
    };
    let Some(l4) = l4 else { return h };
    match protocol {
        // TCP, UDP, SCTP, UDP-Lite, DCCP: ports first.
        6 | 17 | 132 | 136 | 33 => {
            h.src_port = be16(l4, 0);
            h.dst_port = be16(l4, 2);
        }
        1 | 58 => h.icmp_type = l4.first().copied(),
        _ => {}
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        p.extend([10, 244, 1, 2, 10, 244, 2, 3]);
        p.extend(l4);
        p
    }

    fn ipv6(next: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        p.extend("fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend("fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend(rest);
        p
    }

    #[test]
    fn headers_table() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        let ports = [0x9c, 0x40, 0x00, 0x50]; // 40000 -> 80
        /// (case, packet, protocol, src port, dst port, icmp type)
        type Case = (
            &'static str,
            Vec<u8>,
            u8,
            Option<u16>,
            Option<u16>,
            Option<u8>,
        );
        let cases: Vec<Case> = vec![
            ("tcp", ipv4(6, &ports), 6, Some(40000), Some(80), None),
            ("udp", ipv4(17, &ports), 17, Some(40000), Some(80), None),
            ("sctp", ipv4(132, &ports), 132, Some(40000), Some(80), None),
            ("icmp echo", ipv4(1, &[8, 0]), 1, None, None, Some(8)),
            ("tcp cut short", ipv4(6, &[0x9c]), 6, None, None, None),
            ("v6 udp", ipv6(17, &ports), 17, Some(40000), Some(80), None),
            (
                "v6 hop-by-hop then tcp",
                ipv6(0, &[6, 0, 0, 0, 0, 0, 0, 0, 0x9c, 0x40, 0x00, 0x50]),
                6,
                Some(40000),
                Some(80),
                None,
            ),
            (
                "v6 later fragment",
                ipv6(44, &[17, 0, 0x00, 0x08, 0, 0, 0, 1, 1, 2, 3, 4]),
                17,
                None,
                None,
                None,
            ),
            ("v6 icmpv6", ipv6(58, &[128, 0]), 58, None, None, Some(128)),
        ];
        for (case, packet, proto, sport, dport, icmp) in cases {
            let h = headers(&packet).unwrap_or_else(|| panic!("case {case}: no headers"));
            assert_eq!(h.protocol, proto, "case: {case}");
            assert_eq!(
                (h.src_port, h.dst_port, h.icmp_type),
                (sport, dport, icmp),
                "case: {case}"
            );
            if packet[0] >> 4 == 4 {
                assert_eq!(
                    (h.src, h.dst),
                    (v4("10.244.1.2"), v4("10.244.2.3")),
                    "case: {case}"
                );
            } else {
                assert_eq!(
                    (h.src, h.dst),
                    (v4("fd00::1"), v4("fd00::2")),
                    "case: {case}"
                );
            }
        }
        for (case, bad) in [
            ("empty", vec![]),
            ("short v4", vec![0x45, 0, 0]),
            (
                "bad ihl",
                ipv4(6, &ports)
                    .iter()
                    .enumerate()
                    .map(|(i, b)| if i == 0 { 0x41 } else { *b })
                    .collect(),
            ),
            ("version 7", vec![0x70; 40]),
            ("short v6", vec![0x60; 20]),
        ] {
            assert_eq!(headers(&bad), None, "case: {case}");
        }
    }

    #[test]
    fn record_from_a_kernel_message() {
        // nlmsghdr, nfgenmsg, then PACKET_HDR, PREFIX, TIMESTAMP, PAYLOAD.
        fn attr(ty: u16, p: &[u8]) -> Vec<u8> {
            let mut v = ((4 + p.len()) as u16).to_ne_bytes().to_vec();
            v.extend(ty.to_ne_bytes());
            v.extend(p);
            while !v.len().is_multiple_of(4) {
                v.push(0);
            }
            v
        }
        let mut body = vec![2, 0, 0, 0]; // AF_INET, v0, res_id 0
        body.extend(attr(NFULA_PACKET_HDR, &[0x08, 0x00, 2, 0]));
        body.extend(attr(NFULA_PREFIX, b"knp:abcdefgh:drop\0"));
        let mut ts = 1_700_000_000u64.to_be_bytes().to_vec();
        ts.extend(250_000u64.to_be_bytes());
        body.extend(attr(NFULA_TIMESTAMP, &ts));
        body.extend(attr(NFULA_IFINDEX_INDEV, &7u32.to_be_bytes()));
        body.extend(attr(NFULA_PAYLOAD, &ipv4(17, &[0x9c, 0x40, 0x00, 0x35])));
        let mut m = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend(MSG_PACKET.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(body);
        let msgs = nlmsg::messages(&m);
        let r = record(&msgs[0]).expect("a packet message");
        assert_eq!(r.prefix, "knp:abcdefgh:drop");
        assert_eq!(r.hook, Some(2));
        assert_eq!(r.indev, Some(7));
        assert_eq!(
            r.timestamp,
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250))
        );
        let h = r.packet.expect("headers");
        assert_eq!((h.protocol, h.dst_port), (17, Some(53)));
    }
}
