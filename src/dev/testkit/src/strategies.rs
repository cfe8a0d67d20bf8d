//! Proptest strategies the property tests share.

use proptest::prelude::*;

use nftpolicy_core::model::{NamespaceScope, Operator, Peer, Selector};

/// The `app` label values the generated pods and selectors use.
pub const APPS: [&str; 3] = ["web", "db", "cache"];

/// A pod selector over the labels `app` (one of [`APPS`]) and `tier`:
/// everything, equality, `In`, `NotIn`, `Exists`, `DoesNotExist`, and two
/// labels at once.
pub fn pod_selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        Just(Selector::everything()),
        (0..3usize).prop_map(|i| Selector::labels([("app", APPS[i])])),
        (0..3usize).prop_map(|i| Selector::everything().with(
            "app",
            Operator::In([APPS[i].to_owned(), "db".to_owned()].into())
        )),
        (0..3usize)
            .prop_map(|i| Selector::everything()
                .with("app", Operator::NotIn([APPS[i].to_owned()].into()))),
        Just(Selector::everything().with("tier", Operator::Exists)),
        Just(Selector::everything().with("tier", Operator::DoesNotExist)),
        Just(Selector::labels([("app", "web"), ("tier", "x")])),
    ]
}

/// A rule's peer: pods of the policy's namespace chosen by `pods()`; every
/// pod, or the pods chosen by `pods()`, of the namespaces chosen by
/// `namespaces()`; or one of four ipBlocks (IPv4 with and without an
/// except, everything but a /29, IPv6 with an except).
pub fn peer<P, N>(pods: fn() -> P, namespaces: fn() -> N) -> impl Strategy<Value = Peer>
where
    P: Strategy<Value = Selector>,
    N: Strategy<Value = Selector>,
{
    prop_oneof![
        pods().prop_map(|pods| Peer::Pods {
            namespaces: NamespaceScope::Own,
            pods
        }),
        namespaces().prop_map(|n| Peer::Pods {
            namespaces: NamespaceScope::Matching(n),
            pods: Selector::everything()
        }),
        (namespaces(), pods()).prop_map(|(n, pods)| Peer::Pods {
            namespaces: NamespaceScope::Matching(n),
            pods
        }),
        (0..4u8).prop_map(|i| {
            let (cidr, except): (&str, Vec<&str>) = match i {
                0 => ("10.1.0.0/24", vec![]),
                1 => ("10.1.0.0/24", vec!["10.1.0.0/29"]),
                2 => ("0.0.0.0/0", vec!["10.1.0.8/29"]),
                _ => ("fd00::/64", vec!["fd00::/125"]),
            };
            Peer::IpBlock {
                cidr: cidr.parse().expect("a CIDR"),
                except: except.iter().map(|e| e.parse().expect("a CIDR")).collect(),
            }
        }),
    ]
}
