//! `build`: from a `Resolution` to the `Ruleset`, in a fixed order.
//!
//! Layout (DESIGN section 3): base chains whose first rules accept
//! established traffic and neighbour discovery, then dispatch each packet by
//! the local pod's address to that pod's chain; a pod chain jumps to every
//! policy chain that selects the pod and ends in a counted drop; a policy
//! chain accepts what its rules allow, with one set of peer addresses per
//! rule and family.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{guard, names};
use super::{
    AddrField, AddrSet, BaseChain, Chain, CtMatch, Family, Hook, MapElement, Match, PortRange,
    Rule, Ruleset, SetElement, Verdict, VerdictMap,
};
use crate::model::{Direction, NamespacedName};
use crate::resolve::{
    NamedPort, PeerSet, Peers, Ports, Resolution, ResolvedPolicy, ResolvedRule, SetKey,
};

/// Priority of the egress base chains: before ingress, so that an egress
/// `accept` hands the packet on to the ingress chain of the same hook.
pub const EGRESS_PRIORITY: i32 = -1;
/// Priority of the ingress base chain.
pub const INGRESS_PRIORITY: i32 = 0;

/// What the node adds to the policies: the guards of `guard.rs`. The
/// default (no guard) is the table the policies alone make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Reject traffic of pod addresses not known yet ([`guard::Gate`]).
    pub gate: Option<guard::Gate>,
    /// Drop flows whose conntrack mark has this bit (flows cut by the agent).
    pub cut_mark: Option<u32>,
}

/// Builds the ruleset for a resolution.
pub fn build(resolution: &Resolution) -> Ruleset {
    build_with(resolution, &Options::default())
}

/// Builds the ruleset for a resolution, with the node's guards.
pub fn build_with(resolution: &Resolution, opts: &Options) -> Ruleset {
    build_with_hash(resolution, opts, names::hash64)
}

/// [`build_with`], with set ids made from `hash` instead of the usual hash:
/// tests use a constant to force every set id to collide.
pub fn build_with_hash(resolution: &Resolution, opts: &Options, hash: fn(&str) -> u64) -> Ruleset {
    let mut rs = Ruleset::default();
    for dir in Direction::ALL {
        for family in Family::ALL {
            rs.maps.push(dispatch_map(resolution, dir, family));
        }
    }
    if let Some(gate) = &opts.gate {
        rs.sets = guard::sets(gate, resolution);
    }
    rs.chains
        .push(base_chain(Hook::Forward, Direction::Egress, opts));
    rs.chains
        .push(base_chain(Hook::Forward, Direction::Ingress, opts));
    rs.chains
        .push(base_chain(Hook::Input, Direction::Egress, opts));
    let mut b = Builder {
        rs: Ruleset::default(),
        ids: names::SetIds::with_hash(&set_keys(resolution), hash),
        added: HashSet::new(),
    };
    // A policy chain without rules (a default deny) allows nothing: jumping
    // into it would cost every new flow a jump and a return. The pod chain
    // names such policies in its drop rule instead.
    let mut empty: HashSet<(&NamespacedName, Direction)> = HashSet::new();
    for policy in &resolution.policies {
        if !policy_chain(&mut b, policy) {
            empty.insert((&policy.key, policy.direction));
        }
    }
    for pod in &resolution.pods {
        for dir in Direction::ALL {
            let policies = pod.policies(dir);
            if policies.is_empty() {
                continue;
            }
            let (deny_only, allowing): (Vec<_>, Vec<_>) =
                policies.iter().partition(|p| empty.contains(&(*p, dir)));
            let mut rules: Vec<Rule> = allowing
                .iter()
                .map(|p| {
                    Rule::new(vec![], Verdict::Jump(names::policy_chain(dir, p)))
                        .comment(p.to_string())
                })
                .collect();
            rules.push(
                Rule::new(vec![], Verdict::Drop)
                    .counted()
                    .comment(drop_comment(dir, &deny_only)),
            );
            rs.chains.push(Chain {
                name: names::pod_chain(dir, &pod.key),
                base: None,
                comment: names::comment(&format!("{dir} of pod {}", pod.key)),
                rules,
            });
        }
    }
    // Kernel order: base chains, pod chains, policy chains.
    rs.chains.append(&mut b.rs.chains);
    rs.sets.append(&mut b.rs.sets);
    rs
}

/// The pod chain's last rule: nothing allowed the packet (the chain's name
/// and comment say which pod). Policies that allow nothing in `dir` (no
/// jump to them) are named here.
fn drop_comment(dir: Direction, deny_only: &[&NamespacedName]) -> String {
    if deny_only.is_empty() {
        return format!("no policy allowed this {dir}");
    }
    let names: Vec<String> = deny_only.iter().map(|p| p.to_string()).collect();
    let verb = if names.len() == 1 { "allows" } else { "allow" };
    format!(
        "no policy allowed this {dir}; {} {verb} nothing",
        names.join(", ")
    )
}

fn dispatch_map(resolution: &Resolution, dir: Direction, family: Family) -> VerdictMap {
    let mut elements: Vec<MapElement> = resolution
        .pods
        .iter()
        .filter(|p| !p.policies(dir).is_empty())
        .flat_map(|p| {
            p.ips
                .iter()
                .filter(|ip| Family::of(ip) == family)
                .map(|ip| MapElement {
                    addr: *ip,
                    comment: names::comment(&p.key.to_string()),
                    chain: names::pod_chain(dir, &p.key),
                })
        })
        .collect();
    elements.sort();
    elements.dedup_by(|a, b| a.addr == b.addr);
    VerdictMap {
        name: names::dispatch_map(dir, family),
        family,
        comment: format!("local pods isolated for {dir}: address to pod chain"),
        elements,
    }
}

fn base_chain(hook: Hook, dir: Direction, opts: &Options) -> Chain {
    let (priority, field) = match dir {
        Direction::Egress => (EGRESS_PRIORITY, AddrField::Source),
        Direction::Ingress => (INGRESS_PRIORITY, AddrField::Destination),
    };
    let mut rules = Vec::new();
    if let (Some(mark), Direction::Egress) = (opts.cut_mark, dir) {
        rules.push(guard::cut_rule(mark));
    }
    rules.extend([
        Rule::new(
            vec![Match::Ct(CtMatch::EstablishedRelated)],
            Verdict::Accept,
        )
        .comment("replies and related traffic of allowed flows"),
        Rule::new(vec![Match::Icmpv6NeighbourDiscovery], Verdict::Accept)
            .comment("IPv6 neighbour discovery is always allowed"),
    ]);
    // Invalid packets are dropped on the forward path only: on input they are
    // the node's own business.
    if hook == Hook::Forward {
        rules.push(
            Rule::new(vec![Match::Ct(CtMatch::Invalid)], Verdict::Drop)
                .comment("conntrack invalid"),
        );
    }
    if let Some(gate) = &opts.gate {
        rules.extend(guard::gate_rules(gate, dir));
    }
    for family in Family::ALL {
        rules.push(
            Rule::new(
                vec![],
                Verdict::Dispatch {
                    family,
                    field,
                    map: names::dispatch_map(dir, family),
                },
            )
            .comment(format!("isolated local pods to their {dir} chain")),
        );
    }
    let what = match (hook, dir) {
        (Hook::Input, _) => "egress of local pods to this node",
        (Hook::Forward, Direction::Egress) => "egress of local pods (bridged and routed)",
        (Hook::Forward, Direction::Ingress) => "ingress of local pods (bridged and routed)",
    };
    Chain {
        name: names::base_chain(hook, dir),
        base: Some(BaseChain { hook, priority }),
        comment: what.to_owned(),
        rules,
    }
}

/// Adds the chain of `policy`; whether it has any rule.
fn policy_chain(b: &mut Builder, policy: &ResolvedPolicy) -> bool {
    let dir = policy.direction;
    let mut rules = Vec::new();
    for rule in &policy.rules {
        rule_rules(b, policy, rule, &mut rules);
    }
    // The comment depends on the policy's identity only: a chain's comment
    // cannot change in place, so rule-dependent text would turn every edit
    // of the policy into a full replace.
    let comment = format!("{} {dir} rules (empty: allows nothing)", policy.key);
    let allows = !rules.is_empty();
    b.rs.chains.push(Chain {
        name: names::policy_chain(dir, &policy.key),
        base: None,
        comment: names::comment(&comment),
        rules,
    });
    allows
}

/// The nft rules of one policy rule: (peer match per family) × (port match).
fn rule_rules(b: &mut Builder, policy: &ResolvedPolicy, rule: &ResolvedRule, out: &mut Vec<Rule>) {
    let dir = policy.direction;
    let field = match dir {
        Direction::Ingress => AddrField::Source,
        Direction::Egress => AddrField::Destination,
    };
    let label = format!("{} {dir}[{}]", policy.key, rule.index);
    // `None`: any address of any family; `Some((family, match))` otherwise.
    let peer_matches: Vec<Option<(Family, Match)>> = match &rule.peers {
        Peers::Any => vec![None],
        Peers::Addrs(peers) => Family::ALL
            .into_iter()
            .filter(|f| !peers.addrs.family(*f).is_empty())
            .map(|family| {
                let set = names::peer_set(&b.ids.id(&peers.key), family);
                Some((family, Match::AddrInSet { family, field, set }))
            })
            .collect(),
    };
    // A peer set joins the table with the first rule that looks it up (a
    // rule whose ports all resolved elsewhere or to nothing adds none).
    let with_peer = |b: &mut Builder, pm: &Option<(Family, Match)>| -> Vec<Match> {
        if let (Some((family, Match::AddrInSet { set, .. })), Peers::Addrs(peers)) =
            (pm, &rule.peers)
        {
            b.add_set(set, *family, peers);
        }
        pm.iter().map(|(_, m)| m.clone()).collect()
    };
    let accept =
        |matches: Vec<Match>, comment: String| Rule::new(matches, Verdict::Accept).comment(comment);
    match &rule.ports {
        Ports::Any => {
            for pm in &peer_matches {
                out.push(accept(with_peer(b, pm), label.clone()));
            }
        }
        Ports::Listed { numeric, named } => {
            for pm in &peer_matches {
                for (protocol, range) in numeric {
                    // The protocol and port first: a packet for another
                    // port fails on a compare and skips the set lookup.
                    let mut matches = vec![match range {
                        None => Match::L4Proto(*protocol),
                        Some(ports) => Match::DestPort {
                            protocol: *protocol,
                            ports: *ports,
                        },
                    }];
                    matches.extend(with_peer(b, pm));
                    out.push(accept(matches, label.clone()));
                }
            }
            for np in named {
                match np {
                    NamedPort::Local {
                        pod,
                        addrs,
                        protocol,
                        port,
                        name,
                    } => {
                        for pm in &peer_matches {
                            let same_family =
                                |a: &&IpAddr| pm.as_ref().is_none_or(|(f, _)| *f == Family::of(a));
                            for addr in addrs.iter().filter(same_family) {
                                let mut matches = vec![
                                    Match::DestPort {
                                        protocol: *protocol,
                                        ports: PortRange::single(*port),
                                    },
                                    Match::AddrIs {
                                        field: AddrField::Destination,
                                        addr: *addr,
                                    },
                                ];
                                matches.extend(with_peer(b, pm));
                                out.push(accept(matches, format!("{label} port {name} of {pod}")));
                            }
                        }
                    }
                    NamedPort::Peers {
                        protocol,
                        port,
                        name,
                        set: peers,
                    } => {
                        for family in Family::ALL
                            .into_iter()
                            .filter(|f| !peers.addrs.family(*f).is_empty())
                        {
                            let id = b.ids.id(&peers.key);
                            let set = names::named_port_set(&id, *protocol, *port, family);
                            b.add_set(&set, family, peers);
                            let matches = vec![
                                Match::DestPort {
                                    protocol: *protocol,
                                    ports: PortRange::single(*port),
                                },
                                Match::AddrInSet {
                                    family,
                                    field: AddrField::Destination,
                                    set,
                                },
                            ];
                            out.push(accept(matches, format!("{label} port {name}")));
                        }
                    }
                }
            }
        }
    }
}

/// Every set key the resolution's rules use, for [`names::SetIds`].
fn set_keys(resolution: &Resolution) -> Vec<SetKey> {
    let mut keys = Vec::new();
    for rule in resolution.policies.iter().flat_map(|p| &p.rules) {
        if let Peers::Addrs(set) = &rule.peers {
            keys.push(set.key.clone());
        }
        if let Ports::Listed { named, .. } = &rule.ports {
            for np in named {
                if let NamedPort::Peers { set, .. } = np {
                    keys.push(set.key.clone());
                }
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The ruleset being built, the set ids, and the sets already in it.
struct Builder {
    rs: Ruleset,
    ids: names::SetIds,
    /// (set name, family): a set joins the table once, whichever rules use it.
    added: HashSet<String>,
}

impl Builder {
    /// Adds the set `name` of `peers` for `family` unless a rule already did
    /// (sets are shared by every rule with the same peers; names are
    /// distinct for distinct keys, see `names::SetIds`).
    fn add_set(&mut self, name: &str, family: Family, peers: &PeerSet) {
        if !self.added.insert(name.to_owned()) {
            return;
        }
        let elements: Vec<SetElement> = peers
            .addrs
            .family(family)
            .iter()
            .map(|a| SetElement {
                range: a.range,
                comment: Some(names::element_comment(&a.origins)),
            })
            .collect();
        self.rs.sets.push(AddrSet {
            name: name.to_owned(),
            family,
            interval: elements.iter().any(|e| e.range.is_range()),
            comment: names::describe_set(&peers.key),
            elements,
        });
    }
}
