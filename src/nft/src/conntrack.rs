//! The conntrack table over ctnetlink (`NFNL_SUBSYS_CTNETLINK`), in safe
//! Rust on the crate's netfilter socket: dump every flow (both families)
//! with its tuples and mark, and set or clear one bit of a flow's mark.
//!
//! The agent uses it to cut flows a policy change no longer allows: it
//! re-judges each flow's original tuple against the new table and marks the
//! denied ones; the table's first rule drops marked flows (`ruleset::guard`).
//! A mark, unlike a deleted entry, survives TCP's loose pick-up: a packet of
//! a deleted flow would create a new entry, possibly from the reply side,
//! and pass as the reply of a flow nobody judged.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::nlmsg::{self, HDR_LEN, NFGEN_LEN};
use super::socket::Socket;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_MARK: u16 = 8;
const CTA_ID: u16 = 12;
const CTA_MARK_MASK: u16 = 21;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;

/// One direction of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Source port (0 for protocols without ports).
    pub sport: u16,
    /// Destination port (0 for protocols without ports).
    pub dport: u16,
}

/// A conntrack entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The direction of the first packet.
    pub orig: Tuple,
    /// The direction of replies (after NAT: its source is the real
    /// destination of a DNAT'ed flow).
    pub reply: Tuple,
    /// `ct mark`.
    pub mark: u32,
    /// The entry's id.
    pub id: u32,
    /// `AF_INET` or `AF_INET6`.
    family: u8,
    /// The original tuple attribute as the kernel sent it, echoed back to
    /// name the entry in an update (zone and ICMP fields included).
    orig_attr: Vec<u8>,
}

/// A ctnetlink conversation in one network namespace.
pub struct Conntrack {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Conntrack {
    /// Opens a netfilter socket in the current namespace or `/run/netns/<netns>`.
    pub fn open(netns: Option<&str>) -> io::Result<Self> {
        Ok(Self {
            sock: Socket::open(netns)?,
            seq: 1,
            buf: vec![0; 1 << 20],
        })
    }

    /// Every flow of the table, IPv4 and IPv6.
    pub fn flows(&mut self) -> io::Result<Vec<Flow>> {
        let seq = self.next_seq();
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        let msg = message(IPCTNL_MSG_CT_GET, flags, seq, libc::AF_UNSPEC as u8, &[]);
        self.sock.send(&msg)?;
        let mut out = Vec::new();
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            for m in nlmsg::messages(&self.buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                if m.ty == nlmsg::NLMSG_DONE {
                    return Ok(out);
                }
                if let Some(e) = nlmsg::error(&m) {
                    if e.code != 0 {
                        return Err(io::Error::from_raw_os_error(-e.code));
                    }
                    continue;
                }
                if let Some(f) = parse_flow(m.bytes) {
                    out.push(f);
                }
            }
        }
    }

    /// Sets (`on`) or clears `bit` in the mark of `flow`, leaving its other
    /// bits alone. `ENOENT`: the flow is gone meanwhile.
    pub fn set_mark_bit(&mut self, flow: &Flow, bit: u32, on: bool) -> io::Result<()> {
        let seq = self.next_seq();
        let mut attrs = Vec::new();
        attr(&mut attrs, CTA_TUPLE_ORIG | NLA_F_NESTED, &flow.orig_attr);
        attr(
            &mut attrs,
            CTA_MARK,
            &(if on { bit } else { 0 }).to_be_bytes(),
        );
        attr(&mut attrs, CTA_MARK_MASK, &bit.to_be_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        let msg = message(IPCTNL_MSG_CT_NEW, flags, seq, flow.family, &attrs);
        self.sock.send(&msg)?;
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            for m in nlmsg::messages(&self.buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                if let Some(e) = nlmsg::error(&m) {
                    return match e.code {
                        0 => Ok(()),
                        c => Err(io::Error::from_raw_os_error(-c)),
                    };
                }
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }
}

fn message(cmd: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) -> Vec<u8> {
    let len = HDR_LEN + NFGEN_LEN + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | cmd).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, NFNETLINK_V0, res_id 0
    m.extend_from_slice(attrs);
    m
}

fn attr(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + (len.next_multiple_of(4) - len), 0);
}

fn be16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn parse_flow(msg: &[u8]) -> Option<Flow> {
    let family = *msg.get(HDR_LEN)?;
    let attrs = nlmsg::attrs(msg.get(HDR_LEN + NFGEN_LEN..)?);
    let (mut orig, mut reply, mut orig_attr) = (None, None, None);
    let (mut mark, mut id) = (0, 0);
    for (ty, payload) in attrs {
        match ty {
            CTA_TUPLE_ORIG => {
                orig = parse_tuple(payload);
                orig_attr = Some(payload.to_vec());
            }
            CTA_TUPLE_REPLY => reply = parse_tuple(payload),
            CTA_MARK => mark = be32(payload)?,
            CTA_ID => id = be32(payload)?,
            _ => {}
        }
    }
    Some(Flow {
        orig: orig?,
        reply: reply?,
        mark,
        id,
        family,
        orig_attr: orig_attr?,
    })
}

fn parse_tuple(b: &[u8]) -> Option<Tuple> {
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut sport, mut dport) = (0, 0);
    for (ty, payload) in nlmsg::attrs(b) {
        match ty {
            CTA_TUPLE_IP => {
                for (t, p) in nlmsg::attrs(payload) {
                    let v4 = |p: &[u8]| -> Option<IpAddr> {
                        Some(Ipv4Addr::from(<[u8; 4]>::try_from(p.get(..4)?).ok()?).into())
                    };
                    let v6 = |p: &[u8]| -> Option<IpAddr> {
                        Some(Ipv6Addr::from(<[u8; 16]>::try_from(p.get(..16)?).ok()?).into())
                    };
                    match t {
                        CTA_IP_V4_SRC => src = v4(p),
                        CTA_IP_V4_DST => dst = v4(p),
                        CTA_IP_V6_SRC => src = v6(p),
                        CTA_IP_V6_DST => dst = v6(p),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (t, p) in nlmsg::attrs(payload) {
                    match t {
                        CTA_PROTO_NUM => proto = p.first().copied(),
                        CTA_PROTO_SRC_PORT => sport = be16(p)?,
                        CTA_PROTO_DST_PORT => dport = be16(p)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Tuple {
        src: src?,
        dst: dst?,
        proto: proto?,
        sport,
        dport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(ty: u16, inner: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        attr(&mut v, ty | NLA_F_NESTED, inner);
        v
    }

    fn tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut ip = Vec::new();
        attr(&mut ip, CTA_IP_V4_SRC, &src);
        attr(&mut ip, CTA_IP_V4_DST, &dst);
        let mut proto = Vec::new();
        attr(&mut proto, CTA_PROTO_NUM, &[6]);
        attr(&mut proto, CTA_PROTO_SRC_PORT, &sport.to_be_bytes());
        attr(&mut proto, CTA_PROTO_DST_PORT, &dport.to_be_bytes());
        let mut t = nested(CTA_TUPLE_IP, &ip);
        t.extend(nested(CTA_TUPLE_PROTO, &proto));
        t
    }

    /// A message as the kernel sends it (a DNAT'ed TCP flow) parses into
    /// both tuples, the mark and the id, and keeps the original tuple's
    /// bytes for an update.
    #[test]
    fn parses_a_dumped_flow() {
        let orig = tuple([10, 0, 0, 2], [10, 96, 0, 10], 40000, 80);
        let reply = tuple([10, 244, 1, 7], [10, 0, 0, 2], 8080, 40000);
        let mut attrs = nested(CTA_TUPLE_ORIG, &orig);
        attrs.extend(nested(CTA_TUPLE_REPLY, &reply));
        attr(&mut attrs, CTA_MARK, &0x2000_0001u32.to_be_bytes());
        attr(&mut attrs, CTA_ID, &77u32.to_be_bytes());
        let msg = message(IPCTNL_MSG_CT_NEW, 0, 1, libc::AF_INET as u8, &attrs);
        let f = parse_flow(&msg).expect("a flow");
        assert_eq!(f.orig.dst, "10.96.0.10".parse::<IpAddr>().unwrap());
        assert_eq!(
            (f.reply.src, f.reply.sport),
            ("10.244.1.7".parse().unwrap(), 8080)
        );
        assert_eq!((f.orig.proto, f.orig.sport, f.orig.dport), (6, 40000, 80));
        assert_eq!((f.mark, f.id), (0x2000_0001, 77));
        assert_eq!(f.orig_attr, orig);
    }
}
