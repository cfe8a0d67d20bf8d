//! The only place nftables object names and comments are made.
//!
//! Names depend only on Kubernetes identity (never on list order), start with
//! a role prefix (a namespace may start with a digit, an unquoted nft name may
//! not), use `[A-Za-z0-9_./-]` and are at most 255 bytes: longer or unusual
//! names are cut and get an 8-character hash of the full name.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;

use super::{Family, Hook, Protocol};
use crate::model::{Direction, NamespaceScope, NamespacedName, Peer};
use crate::resolve::{Origin, PeerKey, SetKey};

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

/// The comment of a base chain.
pub fn base_chain_comment(hook: Hook, dir: Direction) -> &'static str {
    match (hook, dir) {
        (Hook::Input, _) => "egress of local pods to this node",
        (Hook::Forward, Direction::Egress) => "egress of local pods (bridged and routed)",
        (Hook::Forward, Direction::Ingress) => "ingress of local pods (bridged and routed)",
    }
}

/// The comment of a dispatch map.
pub fn dispatch_map_comment(dir: Direction) -> String {
    format!("local pods isolated for {dir}: address to pod chain")
}

/// The comment of a base chain's dispatch rule.
pub fn dispatch_rule_comment(dir: Direction) -> String {
    format!("isolated local pods to their {dir} chain")
}

/// The comment of a pod chain: `ingress of pod ns/pod`.
pub fn pod_chain_comment(dir: Direction, pod: &NamespacedName) -> String {
    comment(&format!("{dir} of pod {pod}"))
}

/// The comment of a pod chain's last rule: nothing allowed the packet
/// (the chain's name and comment say which pod). Policies selecting the
/// pod that allow nothing in `dir` are named here.
pub fn drop_comment(dir: Direction, deny_only: &[&NamespacedName]) -> String {
    if deny_only.is_empty() {
        return format!("no policy allowed this {dir}");
    }
    let names: Vec<String> = deny_only.iter().map(|p| p.to_string()).collect();
    let verb = if names.len() == 1 { "allows" } else { "allow" };
    comment(&format!(
        "no policy allowed this {dir}; {} {verb} nothing",
        names.join(", ")
    ))
}

/// A policy rule as rule comments name it: `ns/policy ingress[0]`.
pub fn rule_label(policy: &NamespacedName, dir: Direction, index: usize) -> String {
    format!("{policy} {dir}[{index}]")
}

/// A named port of a policy rule: `ns/policy egress[1] port dns`.
pub fn named_port_label(rule: &str, name: &str) -> String {
    format!("{rule} port {name}")
}

/// `local-pod-cidrs-v4`: the node's pod CIDRs of a family (the gate).
pub fn gate_cidr_set(family: Family) -> String {
    format!("local-pod-cidrs-{}", family.suffix())
}

/// The comment of a gate rule: traffic from (egress) or to (ingress) a
/// pod address the table does not know yet.
pub fn gate_rule_comment(dir: Direction) -> String {
    let which = match dir {
        Direction::Egress => "from",
        Direction::Ingress => "to",
    };
    format!("{which} a pod address not programmed yet")
}

/// `local-pods-v4`: the addresses of the pod CIDRs that are known (the gate).
pub fn gate_known_set(family: Family) -> String {
    format!("local-pods-{}", family.suffix())
}

/// `peers-<id>-v4`: the addresses of one peer definition, shared by every
/// rule with the same peers (`id` comes from [`SetIds`]; the set's comment
/// spells the definition out, each rule's comment names its policy rule).
pub fn peer_set(id: &str, family: Family) -> String {
    limit(&format!("peers-{id}-{}", family.suffix()))
}

/// `peers-<id>-tcp-8080-v4`: the peer pods of a peer definition whose named
/// port resolves to `protocol`/`port`.
pub fn named_port_set(id: &str, protocol: Protocol, port: u16, family: Family) -> String {
    limit(&format!("peers-{id}-{protocol}-{port}-{}", family.suffix()))
}

/// The ids in set names, one per [`SetKey`], distinct for distinct keys.
///
/// An id is the first 8 characters of a 64-bit hash of the key's canonical
/// text. Keys whose short ids collide all get the whole hash (13
/// characters) instead, and keys that still collide get their position
/// among them (in key order) appended: ids depend only on which keys exist,
/// never on the order they were met, and two keys never share a set.
#[derive(Debug, Clone, Default)]
pub struct SetIds {
    ids: HashMap<SetKey, String>,
}

impl SetIds {
    /// Ids for `keys`, hashed with [`hash64`].
    pub fn new<'k>(keys: impl IntoIterator<Item = &'k SetKey>) -> Self {
        Self::with_hash(keys, hash64)
    }

    /// Ids for `keys`, hashed with `hash` (tests force collisions with it).
    pub fn with_hash<'k>(
        keys: impl IntoIterator<Item = &'k SetKey>,
        hash: fn(&str) -> u64,
    ) -> Self {
        let keys: BTreeSet<&SetKey> = keys.into_iter().collect();
        let mut by_short: BTreeMap<String, Vec<(&SetKey, u64)>> = BTreeMap::new();
        for key in keys {
            let h = hash(&key.canonical());
            by_short.entry(base32(h, 8)).or_default().push((key, h));
        }
        let mut ids = HashMap::new();
        for (short, group) in by_short {
            if let [(key, _)] = group.as_slice() {
                ids.insert((*key).clone(), short);
                continue;
            }
            let mut by_long: BTreeMap<String, Vec<&SetKey>> = BTreeMap::new();
            for (key, h) in group {
                by_long.entry(base32(h, 13)).or_default().push(key);
            }
            for (long, keys) in by_long {
                let alone = keys.len() == 1;
                for (n, key) in keys.into_iter().enumerate() {
                    let id = if alone {
                        long.clone()
                    } else {
                        format!("{long}-{n}")
                    };
                    ids.insert(key.clone(), id);
                }
            }
        }
        Self { ids }
    }

    /// Whether `key` was one of the keys given to `new`.
    pub fn has(&self, key: &SetKey) -> bool {
        self.ids.contains_key(key)
    }

    /// The id of `key`; one of the keys given to `new`.
    ///
    /// A key not given (a bug of the caller) gets its plain short id.
    pub fn id(&self, key: &SetKey) -> String {
        self.ids
            .get(key)
            .cloned()
            .unwrap_or_else(|| base32(hash64(&key.canonical()), 8))
    }
}

/// The peers of a key in words: `pods app=web in shop; ipBlock 10.0.0.0/8`.
pub fn describe_peers(key: &PeerKey) -> String {
    let own = key.own();
    let parts: Vec<String> = key
        .peers
        .iter()
        .map(|p| match p {
            Peer::Pods {
                namespaces: NamespaceScope::Own,
                pods,
            } => format!("pods {pods} in {own}"),
            Peer::Pods {
                namespaces: NamespaceScope::Matching(ns),
                pods,
            } => format!("pods {pods} in namespaces {ns}"),
            Peer::IpBlock { cidr, except } => describe_block(cidr, except),
        })
        .collect();
    comment(&parts.join("; "))
}

/// The comment of a set: what its key stands for.
pub fn describe_set(key: &SetKey) -> String {
    match key {
        SetKey::Peers(k) => describe_peers(k),
        SetKey::NamedPort(k) => {
            let peers = if k.peers.peers.is_empty() {
                "every pod".to_owned()
            } else {
                describe_peers(&k.peers)
            };
            comment(&format!("port {} of {peers}", k.name))
        }
        SetKey::Union(members) => {
            let parts: Vec<String> = members.iter().map(|m| describe_set(&m.key)).collect();
            comment(&format!("union of {}: {}", parts.len(), parts.join("; ")))
        }
    }
}

/// `allow-<id>-v4`: the union of the peer sets one pod chain looks up in
/// one rule (the rule's comment names the policy rules, the set's comment
/// the peer definitions, each element its pods or blocks).
pub fn union_set(id: &str, family: Family) -> String {
    limit(&format!("allow-{id}-{}", family.suffix()))
}

/// Joins `labels` with `, ` into a comment; when they do not fit, as many
/// as fit and `+N more` (`explain` names them all).
pub fn label_list(labels: &[String]) -> String {
    let mut out = String::new();
    for (i, label) in labels.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let rest = labels.len() - i - 1;
        // Room for the tail is kept at every step, so when a label does not
        // fit, `out` and its tail always do.
        let tail = if rest == 0 {
            0
        } else {
            format!(" +{rest} more").len()
        };
        if out.len() + sep.len() + label.len() + tail > MAX_COMMENT {
            let more = format!("{out} +{} more", labels.len() - i);
            return comment(more.trim_start());
        }
        out.push_str(sep);
        out.push_str(label);
    }
    comment(&out)
}

/// An ipBlock in words: `ipBlock 10.0.0.0/8 except 10.1.0.0/16 10.2.0.0/16`.
pub fn describe_block(cidr: &IpNet, except: &[IpNet]) -> String {
    if except.is_empty() {
        return format!("ipBlock {cidr}");
    }
    let holes: Vec<String> = except.iter().map(ToString::to_string).collect();
    format!("ipBlock {cidr} except {}", holes.join(" "))
}

/// The comment of a set element: who it stands for (`ns/pod`, `ipBlock …`),
/// joined with `, ` when entries were merged.
pub fn element_comment(origins: &[Origin]) -> String {
    let parts: Vec<String> = origins
        .iter()
        .map(|o| match o {
            Origin::Pod(pod) => comment(&pod.to_string()),
            Origin::Block(b) => comment(&describe_block(&b.cidr, &b.except)),
        })
        .collect();
    comment(&parts.join(", "))
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
    base32(hash64(s), 8)
}

/// The 64-bit FNV-1a hash of `s`: stable across releases and platforms.
pub fn hash64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The low `5 * chars` bits of `h` as lower-case base-32, least
/// significant first (13 characters hold all 64 bits).
fn base32(h: u64, chars: u32) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..chars)
        .map(|i| ALPHABET[(h.checked_shr(i * 5).unwrap_or(0) & 31) as usize] as char)
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
                "pod chain, digit namespace",
                pod_chain(Direction::Egress, &pol),
                "pod-egress-0day/allow.front",
            ),
            (
                "union set",
                union_set("k2mq7a4d", Family::V4),
                "allow-k2mq7a4d-v4",
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

    fn key(app: &str) -> SetKey {
        let peers = vec![Peer::Pods {
            namespaces: NamespaceScope::Own,
            pods: crate::model::Selector::labels([("app", app)]),
        }];
        SetKey::Peers(PeerKey::new("shop", &peers))
    }

    #[test]
    fn set_ids_stay_distinct_when_hashes_collide() {
        let keys: Vec<SetKey> = ["a", "b", "c"].map(key).into();
        let plain = SetIds::new(&keys);
        let ids: Vec<String> = keys.iter().map(|k| plain.id(k)).collect();
        assert!(
            ids.iter().all(|i| i.len() == 8),
            "no collision: short ids {ids:?}"
        );

        // Every key hashes alike: whole hashes collide too, so positions decide.
        let same = SetIds::with_hash(&keys, |_| 42);
        let ids: Vec<String> = keys.iter().map(|k| same.id(k)).collect();
        let distinct: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 3, "{ids:?}");
        assert!(ids.iter().all(|i| i.len() == 15), "{ids:?}");

        // Short ids collide, whole hashes differ: the whole hash is the id.
        let low = SetIds::with_hash(&keys, |s| hash64(s) << 40);
        let ids: Vec<String> = keys.iter().map(|k| low.id(k)).collect();
        assert!(ids.iter().all(|i| i.len() == 13), "{ids:?}");

        // Ids depend on the keys present, not on the order they are given.
        let reversed: Vec<SetKey> = keys.iter().rev().cloned().collect();
        let again = SetIds::with_hash(&reversed, |_| 42);
        for k in &keys {
            assert_eq!(same.id(k), again.id(k));
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

    #[test]
    fn label_lists_fit_a_comment_and_count_what_they_leave_out() {
        let labels = |n: usize| -> Vec<String> {
            (0..n)
                .map(|i| format!("shop/policy-{i:03} ingress[0]"))
                .collect()
        };
        assert_eq!(label_list(&labels(1)), "shop/policy-000 ingress[0]");
        assert_eq!(
            label_list(&labels(2)),
            "shop/policy-000 ingress[0], shop/policy-001 ingress[0]"
        );
        for n in [5, 6, 100, 1000] {
            let text = label_list(&labels(n));
            assert!(text.len() <= MAX_COMMENT, "{n}: {text}");
            let (shown, more) = text.rsplit_once(" +").expect("a tail");
            let shown = shown.split(", ").count();
            assert_eq!(more, format!("{} more", n - shown), "{n}: {text}");
        }
    }
}
