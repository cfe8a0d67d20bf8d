//! Random valid rulesets for the property test, and sequences of them
//! that change a few parts at a time: chains jumping to later chains (no
//! loops), sets looked up by rules, dispatch maps pointing at chains,
//! interval sets with ranges from address zero to the family's last
//! address, plain sets of single addresses, comments that come and go.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;

use nftpolicy_core::ruleset::{
    AddrField, AddrRange, AddrSet, BaseChain, Chain, CtMatch, Family, Hook, MapElement, Match,
    PortRange, Protocol, Rule, Ruleset, SetElement, Verdict, VerdictMap,
};

const SETS: usize = 5;
const CHAINS: usize = 6;

#[derive(Debug, Clone)]
struct SetSpec {
    v6: bool,
    interval: bool,
    recomment: bool,
    /// Interval sets: which cells of the address space; plain sets: which
    /// addresses of a pool.
    mask: u8,
    /// Which elements carry a comment.
    comments: u8,
}

#[derive(Debug, Clone)]
struct RuleSpec {
    set: Option<usize>,
    jump: Option<usize>,
    drop: bool,
    port: Option<u16>,
    comment: bool,
}

#[derive(Debug, Clone)]
struct ChainSpec {
    recomment: bool,
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone)]
pub(super) struct Spec {
    maps: [bool; 2],
    /// Map entries: IPv6?, address, chain, comment.
    entries: Vec<(bool, u8, usize, bool)>,
    sets: Vec<Option<SetSpec>>,
    chains: Vec<Option<ChainSpec>>,
    base: bool,
}

fn set_spec() -> impl Strategy<Value = SetSpec> {
    let recomment = prop::bool::weighted(0.1);
    (
        any::<bool>(),
        any::<bool>(),
        recomment,
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(v6, interval, recomment, mask, comments)| SetSpec {
            v6,
            interval,
            recomment,
            mask,
            comments,
        })
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    let port = prop::option::of(prop::sample::select(vec![22u16, 80, 443]));
    let (set, jump) = (prop::option::of(0..SETS), prop::option::of(0..CHAINS));
    (set, jump, any::<bool>(), port, any::<bool>()).prop_map(|(set, jump, drop, port, comment)| {
        RuleSpec {
            set,
            jump,
            drop,
            port,
            comment,
        }
    })
}

fn chain_spec() -> impl Strategy<Value = ChainSpec> {
    (
        prop::bool::weighted(0.05),
        prop::collection::vec(rule_spec(), 0..4),
    )
        .prop_map(|(recomment, rules)| ChainSpec { recomment, rules })
}

pub(super) fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::array::uniform2(prop::bool::weighted(0.9)),
        prop::collection::vec((any::<bool>(), 0..8u8, 0..CHAINS, any::<bool>()), 0..6),
        prop::collection::vec(prop::option::weighted(0.75, set_spec()), SETS),
        prop::collection::vec(prop::option::weighted(0.75, chain_spec()), CHAINS),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(maps, entries, sets, chains, base)| Spec {
            maps,
            entries,
            sets,
            chains,
            base,
        })
}

fn family(v6: bool) -> Family {
    if v6 {
        Family::V6
    } else {
        Family::V4
    }
}

fn addr(family: Family, v: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::from((v as u32).to_be_bytes()),
        Family::V6 => IpAddr::from(v.to_be_bytes()),
    }
}

/// Cell starts of the address space: zero, one, a few in the middle, and
/// one near the end (the last cell runs to the family's last address).
fn cells(family: Family) -> (Vec<u128>, u128) {
    match family {
        Family::V4 => (
            vec![
                0,
                1,
                0x0a00_0000,
                0x0a00_0001,
                0x0a00_0008,
                0x0a00_0100,
                0xc0a8_0000,
                0xffff_ff00,
            ],
            u128::from(u32::MAX),
        ),
        Family::V6 => {
            let db8 = 0x2001_0db8u128 << 96;
            let ula = 0xfd00u128 << 112;
            let top = u128::MAX - 0xff;
            (
                vec![0, 1, db8, db8 + 0x10, ula, ula + 1, ula + 0x100, top],
                u128::MAX,
            )
        }
    }
}

fn element(family: Family, first: u128, last: u128, comment: bool) -> SetElement {
    SetElement {
        range: AddrRange {
            first: addr(family, first),
            last: addr(family, last),
        },
        comment: comment.then(|| "why".into()),
    }
}

/// Runs of selected cells, each one range: disjoint, not adjacent, sorted.
fn ranges(family: Family, mask: u8, comments: u8) -> Vec<SetElement> {
    let (starts, max) = cells(family);
    let end = |i: usize| starts.get(i + 1).map_or(max, |s| s - 1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < starts.len() {
        if mask & (1 << i) == 0 {
            i += 1;
            continue;
        }
        let first = starts[i];
        while i + 1 < starts.len() && mask & (1 << (i + 1)) != 0 {
            i += 1;
        }
        let comment = comments & (1 << out.len()) != 0;
        out.push(element(family, first, end(i), comment));
        i += 1;
    }
    out
}

/// Selected addresses of a pool, sorted.
fn addresses(family: Family, mask: u8, comments: u8) -> Vec<SetElement> {
    let (mut pool, max) = cells(family);
    pool[7] = max;
    pool.sort();
    (0..8)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| element(family, pool[i], pool[i], comments & (1 << i) != 0))
        .collect()
}

pub(super) fn build(s: &Spec) -> Ruleset {
    let mut rs = Ruleset::default();
    for (i, spec) in s.sets.iter().enumerate() {
        let Some(spec) = spec else { continue };
        let family = family(spec.v6);
        let elements = if spec.interval {
            ranges(family, spec.mask, spec.comments)
        } else {
            addresses(family, spec.mask, spec.comments)
        };
        rs.sets.push(AddrSet {
            name: format!("s{i}"),
            family,
            interval: spec.interval,
            comment: if spec.recomment { "other" } else { "peers" }.into(),
            elements: elements.into(),
        });
    }
    let present: Vec<usize> = (0..CHAINS).filter(|&i| s.chains[i].is_some()).collect();
    let maps = [
        ("ingress-pods-v4", Family::V4),
        ("egress-pods-v6", Family::V6),
    ];
    for ((name, family), on) in maps.into_iter().zip(s.maps) {
        let mut elements = BTreeMap::new();
        for &(v6, a, c, comment) in &s.entries {
            if on && family == self::family(v6) && !present.is_empty() {
                let addr = addr(family, 0x0a00_0000 + u128::from(a));
                let chain = format!("c{}", present[c % present.len()]);
                let comment = if comment { "pod-a" } else { "pod-b" }.to_owned();
                elements.entry(addr).or_insert(MapElement {
                    addr,
                    comment,
                    chain,
                });
            }
        }
        if on {
            rs.maps.push(VerdictMap {
                name: name.into(),
                family,
                comment: "dispatch".into(),
                elements: elements.into_values().collect(),
            });
        }
    }
    if s.base {
        let mut rules = vec![Rule::new(
            vec![Match::Ct(CtMatch::EstablishedRelated)],
            Verdict::Accept,
        )];
        for m in &rs.maps {
            let (family, field, map) = (m.family, AddrField::Destination, m.name.clone());
            rules.push(Rule::new(vec![], Verdict::Dispatch { family, field, map }));
        }
        let base = Some(BaseChain {
            hook: Hook::Forward,
            priority: 0,
        });
        let comment = "base".into();
        rs.chains.push(Chain {
            name: "forward-ingress".into(),
            base,
            comment,
            rules,
        });
    }
    for &i in &present {
        let spec = s.chains[i].as_ref().expect("present");
        let rules = spec
            .rules
            .iter()
            .map(|r| rule(&rs, i, r, &present))
            .collect();
        let name = format!("c{i}");
        let comment = if spec.recomment {
            "other".into()
        } else {
            name.clone()
        };
        rs.chains.push(Chain {
            name,
            base: None,
            comment,
            rules,
        });
    }
    rs
}

/// A rule of chain `c{i}`: jumps only to later chains (no loops), looks up
/// only sets that exist.
fn rule(rs: &Ruleset, i: usize, r: &RuleSpec, present: &[usize]) -> Rule {
    let mut matches = Vec::new();
    if let Some(set) = r.set.and_then(|k| rs.set(&format!("s{k}"))) {
        let (family, field, set) = (set.family, AddrField::Source, set.name.clone());
        matches.push(Match::AddrInSet { family, field, set });
    }
    if let Some(port) = r.port {
        let (protocol, ports) = (Protocol::Tcp, PortRange::single(port));
        matches.push(Match::DestPort { protocol, ports });
    }
    let verdict = match r.jump.filter(|j| *j > i && present.contains(j)) {
        Some(j) => Verdict::Jump(format!("c{j}")),
        None if r.drop => Verdict::Drop,
        None => Verdict::Accept,
    };
    let rule = Rule::new(matches, verdict);
    if r.comment {
        rule.comment("rule")
    } else {
        rule
    }
}

/// How many keep-or-change choices `mix` makes.
pub(super) const CHOICES: usize = 3 + 2 * SETS + 2 * CHAINS;

/// The next ruleset's spec: each part of `prev` kept where `keep` says so,
/// else taken from `fresh` (so that consecutive rulesets differ in a few
/// places, as in a cluster, not in everything).
pub(super) fn mix(prev: &Spec, fresh: &Spec, keep: &[bool]) -> Spec {
    fn pick<T: Clone>(keep: bool, a: &T, b: &T) -> T {
        if keep { a } else { b }.clone()
    }
    let mut next = Spec {
        maps: pick(keep[0], &prev.maps, &fresh.maps),
        entries: pick(keep[1], &prev.entries, &fresh.entries),
        sets: Vec::new(),
        chains: Vec::new(),
        base: pick(keep[2], &prev.base, &fresh.base),
    };
    for (i, (p, f)) in prev.sets.iter().zip(&fresh.sets).enumerate() {
        let (def, elems) = (keep[3 + 2 * i], keep[4 + 2 * i]);
        next.sets.push(match (p, f) {
            (Some(p), Some(f)) => Some(SetSpec {
                mask: pick(elems, &p.mask, &f.mask),
                comments: pick(elems, &p.comments, &f.comments),
                ..pick(def, p, f)
            }),
            _ if def => p.clone(),
            _ => f.clone(),
        });
    }
    for (i, (p, f)) in prev.chains.iter().zip(&fresh.chains).enumerate() {
        let (def, rules) = (keep[3 + 2 * SETS + 2 * i], keep[4 + 2 * SETS + 2 * i]);
        next.chains.push(match (p, f) {
            (Some(p), Some(f)) => Some(ChainSpec {
                recomment: pick(def, &p.recomment, &f.recomment),
                rules: pick(rules, &p.rules, &f.rules),
            }),
            _ if def => p.clone(),
            _ => f.clone(),
        });
    }
    next
}
