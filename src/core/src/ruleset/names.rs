//! The only place nftables object names and comments are made.
//!
//! Names depend only on Kubernetes identity (never on list order), start with
//! a role prefix (a namespace may start with a digit, an unquoted nft name may
//! not), use `[A-Za-z0-9_./-]` and are at most 255 bytes: longer or unusual
//! names are cut and get an 8-character hash of the full name.

use super::{Family, Hook, Protocol};
use crate::model::{Direction, NamespacedName};

/// Longest object name the kernel accepts (NFT_NAME_MAXLEN minus the NUL).
pub const MAX_NAME: usize = 255;
/// Longest comment nft accepts (NFTNL_UDATA_COMMENT_MAXLEN).
pub const MAX_COMMENT: usize = 128;

/// `forward-egress`, `input-egress`, `forward-ingress`.
pub fn base_chain(hook: Hook, dir: Direction) -> String {
    format!("{}-{}", hook.as_str(), dir.as_str())
}

/// `ingress-pods-v4`: the dispatch map of a direction and family.
pub fn dispatch_map(dir: Direction, family: Family) -> String {
    format!("{}-pods-{}", dir.as_str(), family.suffix())
}

/// `pod-ingress-<ns>/<pod>`.
pub fn pod_chain(dir: Direction, pod: &NamespacedName) -> String {
    limit(&format!("pod-{}-{}", dir.as_str(), pod))
}

/// `policy-ingress-<ns>/<policy>`.
pub fn policy_chain(dir: Direction, policy: &NamespacedName) -> String {
    limit(&format!("policy-{}-{}", dir.as_str(), policy))
}

/// `peers-<id>-v4`: the addresses of one peer definition, shared by every
/// rule with the same peers (`id` is a hash of the definition; the set's
/// comment spells it out, each rule's comment names its policy rule).
pub fn peer_set(id: &str, family: Family) -> String {
    limit(&format!("peers-{id}-{}", family.suffix()))
}

/// `peers-<id>-tcp-8080-v4`: the peer pods of a peer definition whose named
/// port resolves to `protocol`/`port`.
pub fn named_port_set(id: &str, protocol: Protocol, port: u16, family: Family) -> String {
    limit(&format!("peers-{id}-{protocol}-{port}-{}", family.suffix()))
}

/// Makes `raw` a valid name: unusual characters become `_`; if anything was
/// replaced or the name is too long, it is cut and an 8-character hash of
/// `raw` is appended, so distinct inputs stay distinct.
pub fn limit(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == raw && clean.len() <= MAX_NAME {
        return clean;
    }
    let hash = short_hash(raw);
    let keep = MAX_NAME.min(clean.len()).min(MAX_NAME - hash.len() - 1);
    format!("{}-{hash}", &clean[..keep])
}

/// Cuts a comment to what nft accepts (on a character boundary) and removes
/// characters that cannot appear in a quoted nft string.
pub fn comment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_COMMENT));
    for c in raw.chars() {
        let c = if c == '"' || c.is_control() { '\'' } else { c };
        if out.len() + c.len_utf8() > MAX_COMMENT {
            break;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// 8 lower-case base-32 characters of a 64-bit FNV-1a hash: stable across
/// releases and platforms.
pub fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..8)
        .map(|i| ALPHABET[((h >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        let pod = NamespacedName::new("shop", "web-5c7d9");
        let pol = NamespacedName::new("0day", "allow.front");
        let cases = [
            (
                "base chain",
                base_chain(Hook::Forward, Direction::Egress),
                "forward-egress",
            ),
            (
                "dispatch map",
                dispatch_map(Direction::Ingress, Family::V6),
                "ingress-pods-v6",
            ),
            (
                "pod chain",
                pod_chain(Direction::Ingress, &pod),
                "pod-ingress-shop/web-5c7d9",
            ),
            (
                "policy chain, digit namespace",
                policy_chain(Direction::Egress, &pol),
                "policy-egress-0day/allow.front",
            ),
            (
                "peer set",
                peer_set("k2mq7a4d", Family::V4),
                "peers-k2mq7a4d-v4",
            ),
            (
                "named port set",
                named_port_set("k2mq7a4d", Protocol::Udp, 53, Family::V6),
                "peers-k2mq7a4d-udp-53-v6",
            ),
        ];
        for (case, got, want) in cases {
            assert_eq!(got, want, "case: {case}");
        }
    }

    #[test]
    fn long_names_are_cut_and_stay_distinct() {
        let a = pod_chain(
            Direction::Ingress,
            &NamespacedName::new("ns", "a".repeat(300)),
        );
        let b = pod_chain(
            Direction::Ingress,
            &NamespacedName::new("ns", format!("{}b", "a".repeat(299))),
        );
        assert_eq!(a.len(), MAX_NAME, "cut to the kernel limit");
        assert_eq!(b.len(), MAX_NAME);
        assert_ne!(a, b, "the hash keeps distinct names distinct");
        assert!(a.starts_with("pod-ingress-ns/aaa"));
    }

    #[test]
    fn odd_characters_are_replaced_and_hashed() {
        let n = limit("pod-ingress-ns/we b");
        assert!(n.starts_with("pod-ingress-ns/we_b-"), "{n}");
        assert!(n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c)));
        assert_ne!(
            limit("x y"),
            limit("x_y"),
            "replacement must not collide with a real name"
        );
    }

    #[test]
    fn comments_are_cut_to_128_bytes_on_a_char_boundary() {
        let c = comment(&"é".repeat(100));
        assert!(
            c.len() <= MAX_COMMENT && c.len() >= MAX_COMMENT - 1,
            "{}",
            c.len()
        );
        assert_eq!(comment("say \"hi\""), "say 'hi'");
    }
}
