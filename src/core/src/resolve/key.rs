//! The identity of a peer definition, typed: rules whose peers are the same
//! definition share one set of addresses (and one nftables set).
//!
//! A [`PeerKey`] is the rule's `from`/`to` list as written, plus the
//! policy's namespace when some peer means "the policy's own namespace"
//! (a `podSelector` without `namespaceSelector`); otherwise two policies in
//! different namespaces with the same peers share the key. Keys compare,
//! hash and sort as values: nothing here is text.
//!
//! [`PeerKey::canonical`] writes a key as one line of text, in a format
//! fixed by hand here (not derived), because set names are a hash of it:
//! changing the format renames every set of every node on upgrade. It is the
//! text earlier releases hashed, so names stay the same across that upgrade.

use std::collections::BTreeSet;
use std::fmt::{self, Write};

use crate::model::{NamespaceScope, Operator, Peer, Protocol, Selector};

/// A rule's peers, as an identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey {
    /// The policy's namespace, when a peer selects pods in it.
    pub namespace: Option<String>,
    /// The peers, in the rule's order.
    pub peers: Vec<Peer>,
}

impl PeerKey {
    /// The key of `peers` written in a policy of namespace `own`.
    pub fn new(own: &str, peers: &[Peer]) -> Self {
        let own_matters = peers.iter().any(|p| {
            matches!(
                p,
                Peer::Pods {
                    namespaces: NamespaceScope::Own,
                    ..
                }
            )
        });
        Self {
            namespace: own_matters.then(|| own.to_owned()),
            peers: peers.to_vec(),
        }
    }

    /// The namespace a `podSelector`-only peer looks in (empty when no peer does).
    pub fn own(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }

    /// The key as one line of text (see the module docs): the hash of this
    /// text names the key's nftables sets.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_canonical(&mut out);
        out
    }

    fn write_canonical(&self, f: &mut String) -> fmt::Result {
        write!(f, "{:?}|[", self.own())?;
        for (i, p) in self.peers.iter().enumerate() {
            if i > 0 {
                f.push_str(", ");
            }
            match p {
                Peer::Pods { namespaces, pods } => {
                    f.push_str("Pods { namespaces: ");
                    match namespaces {
                        NamespaceScope::Own => f.push_str("Own"),
                        NamespaceScope::Matching(sel) => {
                            f.push_str("Matching(");
                            selector(f, sel)?;
                            f.push(')');
                        }
                    }
                    f.push_str(", pods: ");
                    selector(f, pods)?;
                    f.push_str(" }");
                }
                Peer::IpBlock { cidr, except } => {
                    write!(f, "IpBlock {{ cidr: {cidr}, except: [")?;
                    for (j, e) in except.iter().enumerate() {
                        let sep = if j > 0 { ", " } else { "" };
                        write!(f, "{sep}{e}")?;
                    }
                    f.push_str("] }");
                }
            }
        }
        f.push(']');
        Ok(())
    }
}

fn selector(f: &mut String, s: &Selector) -> fmt::Result {
    f.push_str("Selector { match_labels: {");
    for (i, (k, v)) in s.match_labels.iter().enumerate() {
        let sep = if i > 0 { ", " } else { "" };
        write!(f, "{sep}{k:?}: {v:?}")?;
    }
    f.push_str("}, match_expressions: [");
    for (i, r) in s.match_expressions.iter().enumerate() {
        let sep = if i > 0 { ", " } else { "" };
        write!(f, "{sep}Requirement {{ key: {:?}, op: ", r.key)?;
        match &r.op {
            Operator::In(vs) => values(f, "In", vs)?,
            Operator::NotIn(vs) => values(f, "NotIn", vs)?,
            Operator::Exists => f.push_str("Exists"),
            Operator::DoesNotExist => f.push_str("DoesNotExist"),
        }
        f.push_str(" }");
    }
    f.push_str("] }");
    Ok(())
}

fn values(f: &mut String, op: &str, vs: &BTreeSet<String>) -> fmt::Result {
    write!(f, "{op}({{")?;
    for (i, v) in vs.iter().enumerate() {
        let sep = if i > 0 { ", " } else { "" };
        write!(f, "{sep}{v:?}")?;
    }
    f.push_str("})");
    Ok(())
}

/// The identity of an egress named-port set: the rule's peers whose
/// container port `name` (for `protocol`) resolves to one number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPortKey {
    /// The rule's peers.
    pub peers: PeerKey,
    /// The port name in the policy.
    pub name: String,
    /// Its protocol.
    pub protocol: Protocol,
}

impl NamedPortKey {
    /// The key as one line of text (see [`PeerKey::canonical`]).
    pub fn canonical(&self) -> String {
        format!("{}|{}|{}", self.peers.canonical(), self.name, self.protocol)
    }
}

/// The identity of a set of peer addresses: a rule's peers, the peers
/// whose named port resolves to one number, or the union of several of
/// those that one pod's chain looks up at once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKey {
    /// A rule's peers.
    Peers(PeerKey),
    /// An egress named port's peers.
    NamedPort(NamedPortKey),
    /// The union of these members (sorted, distinct, at least two).
    Union(Vec<UnionMember>),
}

/// A member of a [`SetKey::Union`]: a peer set, and for an egress named
/// port the number it resolved to (the same key stands for one set per
/// number).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnionMember {
    /// The member's key ([`SetKey::Peers`] or [`SetKey::NamedPort`]).
    pub key: SetKey,
    /// The named port's number.
    pub port: Option<u16>,
}

impl SetKey {
    /// The key as one line of text (see [`PeerKey::canonical`]).
    pub fn canonical(&self) -> String {
        match self {
            SetKey::Peers(k) => k.canonical(),
            SetKey::NamedPort(k) => k.canonical(),
            SetKey::Union(members) => {
                let parts: Vec<String> = members
                    .iter()
                    .map(|m| match m.port {
                        Some(port) => format!("{}#{port}", m.key.canonical()),
                        None => m.key.canonical(),
                    })
                    .collect();
                format!("union[{}]", parts.join(" + "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Selector;

    #[test]
    fn own_namespace_is_part_of_the_key_only_when_a_peer_uses_it() {
        let pods = vec![Peer::Pods {
            namespaces: NamespaceScope::Own,
            pods: Selector::labels([("app", "web")]),
        }];
        let block = vec![Peer::IpBlock {
            cidr: "10.0.0.0/8".parse().unwrap(),
            except: vec![],
        }];
        assert_ne!(PeerKey::new("a", &pods), PeerKey::new("b", &pods));
        assert_eq!(PeerKey::new("a", &block), PeerKey::new("b", &block));
    }

    /// The canonical text is what earlier releases hashed (the derived
    /// `Debug` of the peers), so that set names survive the upgrade. Pinned
    /// here as literal text: a change to it must be deliberate.
    #[test]
    fn canonical_text_is_pinned() {
        let peers = vec![
            Peer::Pods {
                namespaces: NamespaceScope::Matching(
                    Selector::labels([("team", "a\"b")])
                        .with("x", Operator::In(["2".into(), "1".into()].into()))
                        .with("y", Operator::DoesNotExist),
                ),
                pods: Selector::everything(),
            },
            Peer::Pods {
                namespaces: NamespaceScope::Own,
                pods: Selector::everything().with("z", Operator::Exists),
            },
            Peer::IpBlock {
                cidr: "10.0.0.0/8".parse().unwrap(),
                except: vec![
                    "10.1.0.0/16".parse().unwrap(),
                    "10.2.0.0/16".parse().unwrap(),
                ],
            },
        ];
        let key = PeerKey::new("shop", &peers);
        assert_eq!(
            key.canonical(),
            r#""shop"|[Pods { namespaces: Matching(Selector { match_labels: {"team": "a\"b"}, match_expressions: [Requirement { key: "x", op: In({"1", "2"}) }, Requirement { key: "y", op: DoesNotExist }] }), pods: Selector { match_labels: {}, match_expressions: [] } }, Pods { namespaces: Own, pods: Selector { match_labels: {}, match_expressions: [Requirement { key: "z", op: Exists }] } }, IpBlock { cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/16] }]"#
        );
        // Same text as the derived Debug the earlier releases used.
        assert_eq!(key.canonical(), format!("{:?}|{:?}", "shop", peers));
        let np = NamedPortKey {
            peers: key,
            name: "http".into(),
            protocol: Protocol::Tcp,
        };
        assert!(np.canonical().ends_with("]|http|tcp"), "{}", np.canonical());
    }
}
