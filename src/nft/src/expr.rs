//! Rules → libnftnl expressions, as nft 1.0.6 linearises the text
//! `render` prints: per match its dependency (`meta nfproto` for `ip`/`ip6`
//! payloads, `meta l4proto` for `tcp dport`/`icmpv6 type`, each once per
//! rule), the payload or meta load into register 1, then `cmp` (ranges as
//! `cmp gte` + `cmp lte`, like nft) or `lookup`; `vmap` is a lookup whose
//! destination is the verdict register.

use nftnl::nftnl_sys as sys;

use super::encode::{check_name, key_bytes, EncodeError, Udata};
use super::ffi::{self, Expr};
use nftpolicy_core::ruleset::{
    AddrField, CtMatch, Family, Limit, Log, Match, Rule, Verdict, TABLE_NAME,
};

/// Register 1 (nft's legacy 16-byte register numbering) and the verdict register.
const REG1: u32 = libc::NFT_REG_1 as u32;
const REG_VERDICT: u32 = libc::NFT_REG_VERDICT as u32;

/// A rule reference: table and chain (a flush when sent as DELRULE).
pub(super) fn rule_ref(chain: &str) -> Result<ffi::Rule, EncodeError> {
    check_name(chain)?;
    let mut r = ffi::Rule::new();
    r.set_u32(sys::NFTNL_RULE_FAMILY, ffi::NFPROTO_INET as u32);
    r.set_str(sys::NFTNL_RULE_TABLE, TABLE_NAME);
    r.set_str(sys::NFTNL_RULE_CHAIN, chain);
    Ok(r)
}

/// A rule with its expressions and comment. `set_id` gives the batch id of
/// sets created in the same batch (nft names them by id as well).
pub(super) fn rule(
    chain: &str,
    rule: &Rule,
    set_id: &dyn Fn(&str) -> Option<u32>,
) -> Result<ffi::Rule, EncodeError> {
    let mut r = rule_ref(chain)?;
    let mut ctx = Deps::default();
    for m in &rule.matches {
        ctx.encode_match(&mut r, m, set_id);
    }
    // Statements in nft's order: limit, counter, log.
    if let Some(l) = &rule.limit {
        r.add_expr(limit(l));
    }
    if rule.counter {
        r.add_expr(Expr::new("counter"));
    }
    if let Some(l) = &rule.log {
        r.add_expr(log(l)?);
    }
    ctx.encode_verdict(&mut r, &rule.verdict, set_id);
    if let Some(c) = &rule.comment {
        let udata = Udata::default().str(sys::NFTNL_UDATA_RULE_COMMENT, c)?;
        r.set(sys::NFTNL_RULE_USERDATA, &udata.0);
    }
    Ok(r)
}

/// `limit rate R/unit burst B packets`, as nft 1.0.6 sends it: rate and
/// unit (seconds) as u64, burst, type (packets) and flags (0) as u32.
fn limit(l: &Limit) -> Expr {
    Expr::new("limit")
        .set(sys::NFTNL_EXPR_LIMIT_RATE, &l.rate.to_ne_bytes())
        .set(sys::NFTNL_EXPR_LIMIT_UNIT, &l.unit.seconds().to_ne_bytes())
        .u32(sys::NFTNL_EXPR_LIMIT_BURST, l.burst)
        .u32(sys::NFTNL_EXPR_LIMIT_TYPE, libc::NFT_LIMIT_PKTS as u32)
        .u32(sys::NFTNL_EXPR_LIMIT_FLAGS, 0)
}

/// `log prefix "…" group G`, as nft 1.0.6 sends it: the prefix string and
/// the group as u16 (no snaplen, no queue threshold).
fn log(l: &Log) -> Result<Expr, EncodeError> {
    // NF_LOG_PREFIXLEN is 128 bytes with the NUL.
    if l.prefix.len() > 127 || l.prefix.contains('\0') {
        return Err(EncodeError(format!("bad log prefix {:?}", l.prefix)));
    }
    Ok(Expr::new("log")
        .str(sys::NFTNL_EXPR_LOG_PREFIX, &l.prefix)
        .set(sys::NFTNL_EXPR_LOG_GROUP, &l.group.to_ne_bytes()))
}

fn meta(key: i32) -> Expr {
    Expr::new("meta")
        .u32(sys::NFTNL_EXPR_META_KEY, key as u32)
        .u32(sys::NFTNL_EXPR_META_DREG, REG1)
}

fn cmp(op: i32, data: &[u8]) -> Expr {
    Expr::new("cmp")
        .u32(sys::NFTNL_EXPR_CMP_SREG, REG1)
        .u32(sys::NFTNL_EXPR_CMP_OP, op as u32)
        .set(sys::NFTNL_EXPR_CMP_DATA, data)
}

fn payload(base: i32, offset: u32, len: u32) -> Expr {
    Expr::new("payload")
        .u32(sys::NFTNL_EXPR_PAYLOAD_DREG, REG1)
        .u32(sys::NFTNL_EXPR_PAYLOAD_BASE, base as u32)
        .u32(sys::NFTNL_EXPR_PAYLOAD_OFFSET, offset)
        .u32(sys::NFTNL_EXPR_PAYLOAD_LEN, len)
}

/// `NFT_LOOKUP_F_INV`: the lookup matches when the key is NOT in the set.
const LOOKUP_F_INV: u32 = 1;

fn lookup(set: &str, id: Option<u32>, dreg: Option<u32>) -> Expr {
    let mut e = Expr::new("lookup")
        .u32(sys::NFTNL_EXPR_LOOKUP_SREG, REG1)
        .str(sys::NFTNL_EXPR_LOOKUP_SET, set);
    if let Some(id) = id {
        e = e.u32(sys::NFTNL_EXPR_LOOKUP_SET_ID, id);
    }
    if let Some(dreg) = dreg {
        e = e.u32(sys::NFTNL_EXPR_LOOKUP_DREG, dreg);
    }
    e
}

fn immediate(verdict: i32, chain: Option<&str>) -> Expr {
    let e = Expr::new("immediate")
        .u32(sys::NFTNL_EXPR_IMM_DREG, REG_VERDICT)
        .u32(sys::NFTNL_EXPR_IMM_VERDICT, verdict as u32);
    match chain {
        Some(c) => e.str(sys::NFTNL_EXPR_IMM_CHAIN, c),
        None => e,
    }
}

/// The protocol context nft tracks while linearising a rule: a dependency
/// (`meta nfproto`, `meta l4proto`) is emitted once, before the first
/// match that needs it.
#[derive(Default)]
struct Deps {
    nfproto: Option<Family>,
    l4proto: Option<u8>,
}

impl Deps {
    fn nfproto(&mut self, r: &mut ffi::Rule, family: Family) {
        if self.nfproto != Some(family) {
            let v = match family {
                Family::V4 => libc::NFPROTO_IPV4,
                Family::V6 => libc::NFPROTO_IPV6,
            };
            r.add_expr(meta(libc::NFT_META_NFPROTO));
            r.add_expr(cmp(libc::NFT_CMP_EQ, &[v as u8]));
            self.nfproto = Some(family);
        }
    }

    fn l4proto(&mut self, r: &mut ffi::Rule, proto: u8) {
        if self.l4proto != Some(proto) {
            r.add_expr(meta(libc::NFT_META_L4PROTO));
            r.add_expr(cmp(libc::NFT_CMP_EQ, &[proto]));
            self.l4proto = Some(proto);
        }
    }

    /// `ip saddr` / `ip6 daddr` into register 1, after its dependency.
    fn load_addr(&mut self, r: &mut ffi::Rule, family: Family, field: AddrField) {
        self.nfproto(r, family);
        let (offset, len) = match (family, field) {
            (Family::V4, AddrField::Source) => (12, 4),
            (Family::V4, AddrField::Destination) => (16, 4),
            (Family::V6, AddrField::Source) => (8, 16),
            (Family::V6, AddrField::Destination) => (24, 16),
        };
        r.add_expr(payload(libc::NFT_PAYLOAD_NETWORK_HEADER, offset, len));
    }

    fn range(r: &mut ffi::Rule, first: &[u8], last: &[u8]) {
        if first == last {
            r.add_expr(cmp(libc::NFT_CMP_EQ, first));
        } else {
            r.add_expr(cmp(libc::NFT_CMP_GTE, first));
            r.add_expr(cmp(libc::NFT_CMP_LTE, last));
        }
    }

    fn encode_match(&mut self, r: &mut ffi::Rule, m: &Match, set_id: &dyn Fn(&str) -> Option<u32>) {
        match m {
            Match::Ct(state) => {
                // ct state is a host-order bitmask: established 0x2, related 0x4, invalid 0x1.
                let mask: u32 = match state {
                    CtMatch::EstablishedRelated => 0x6,
                    CtMatch::Invalid => 0x1,
                };
                r.add_expr(
                    Expr::new("ct")
                        .u32(sys::NFTNL_EXPR_CT_KEY, libc::NFT_CT_STATE as u32)
                        .u32(sys::NFTNL_EXPR_CT_DREG, REG1),
                );
                r.add_expr(
                    Expr::new("bitwise")
                        .u32(sys::NFTNL_EXPR_BITWISE_SREG, REG1)
                        .u32(sys::NFTNL_EXPR_BITWISE_DREG, REG1)
                        .u32(sys::NFTNL_EXPR_BITWISE_LEN, 4)
                        .set(sys::NFTNL_EXPR_BITWISE_MASK, &mask.to_ne_bytes())
                        .set(sys::NFTNL_EXPR_BITWISE_XOR, &0u32.to_ne_bytes()),
                );
                r.add_expr(cmp(libc::NFT_CMP_NEQ, &0u32.to_ne_bytes()));
            }
            Match::AddrInSet { family, field, set } => {
                self.load_addr(r, *family, *field);
                r.add_expr(lookup(set, set_id(set), None));
            }
            Match::AddrNotInSet { family, field, set } => {
                self.load_addr(r, *family, *field);
                r.add_expr(
                    lookup(set, set_id(set), None).u32(sys::NFTNL_EXPR_LOOKUP_FLAGS, LOOKUP_F_INV),
                );
            }
            Match::CtMarkBit(bit) => {
                r.add_expr(
                    Expr::new("ct")
                        .u32(sys::NFTNL_EXPR_CT_KEY, libc::NFT_CT_MARK as u32)
                        .u32(sys::NFTNL_EXPR_CT_DREG, REG1),
                );
                r.add_expr(
                    Expr::new("bitwise")
                        .u32(sys::NFTNL_EXPR_BITWISE_SREG, REG1)
                        .u32(sys::NFTNL_EXPR_BITWISE_DREG, REG1)
                        .u32(sys::NFTNL_EXPR_BITWISE_LEN, 4)
                        .set(sys::NFTNL_EXPR_BITWISE_MASK, &bit.to_ne_bytes())
                        .set(sys::NFTNL_EXPR_BITWISE_XOR, &0u32.to_ne_bytes()),
                );
                r.add_expr(cmp(libc::NFT_CMP_EQ, &bit.to_ne_bytes()));
            }
            Match::AddrIs { field, addr } => {
                self.load_addr(r, Family::of(addr), *field);
                r.add_expr(cmp(libc::NFT_CMP_EQ, &key_bytes(addr)));
            }
            Match::L4Proto(p) => self.l4proto(r, p.number()),
            Match::DestPort { protocol, ports } => {
                self.l4proto(r, protocol.number());
                r.add_expr(payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2));
                Self::range(r, &ports.first.to_be_bytes(), &ports.last.to_be_bytes());
            }
            Match::Icmpv6NeighbourDiscovery => {
                self.nfproto(r, Family::V6);
                self.l4proto(r, libc::IPPROTO_ICMPV6 as u8);
                r.add_expr(payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1));
                Self::range(r, &[133], &[136]);
            }
        }
    }

    fn encode_verdict(
        &mut self,
        r: &mut ffi::Rule,
        v: &Verdict,
        set_id: &dyn Fn(&str) -> Option<u32>,
    ) {
        match v {
            Verdict::Accept => r.add_expr(immediate(libc::NF_ACCEPT, None)),
            Verdict::Drop => r.add_expr(immediate(libc::NF_DROP, None)),
            Verdict::Reject(family) => {
                // NFT_REJECT_ICMP_UNREACH with admin-prohibited: ICMP code
                // 13 (IPv4), ICMPv6 code 1.
                let code: u8 = match family {
                    Family::V4 => 13,
                    Family::V6 => 1,
                };
                r.add_expr(
                    Expr::new("reject")
                        .u32(
                            sys::NFTNL_EXPR_REJECT_TYPE,
                            libc::NFT_REJECT_ICMP_UNREACH as u32,
                        )
                        .set(sys::NFTNL_EXPR_REJECT_CODE, &[code]),
                );
            }
            Verdict::Jump(chain) => r.add_expr(immediate(libc::NFT_JUMP, Some(chain))),
            Verdict::Dispatch { family, field, map } => {
                self.load_addr(r, *family, *field);
                r.add_expr(lookup(map, set_id(map), Some(REG_VERDICT)));
            }
        }
    }
}
