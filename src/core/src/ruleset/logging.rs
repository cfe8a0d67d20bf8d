//! Drop and allow logging: the rules that send a rate-limited sample of
//! verdicts to an NFLOG group, and the map from the id in their prefix back
//! to Kubernetes names (`docs/observability.md`).
//!
//! - A pod chain's final `counter drop` gets a twin in front of it:
//!   `limit rate R counter log prefix "knp:<id>:drop" group G drop`. Under
//!   the limit the twin drops and logs; over it, it does not match and the
//!   plain counted drop does the same thing silently. The verdict is the
//!   same either way, and the two counters together count every drop.
//! - With allow logging, each `accept` rule of a pod chain gets such a
//!   twin in front of it (`… limit rate R log prefix "knp:<id>:allow" group
//!   G accept`), so an allowed new flow is logged at most at the rate per
//!   rule. One accept rule may merge several policies' allows: the agent
//!   names the policies that allowed a logged flow with `explain`.
//! - The id is 8 base-32 characters of a hash of the chain's name (the
//!   direction and `ns/pod`): stable across syncs and restarts, short
//!   enough for the 127-byte prefix. The [`LogMap`] made by the same call
//!   names each id's pod, the direction and the policies that isolate the
//!   pod (a drop has no single policy to blame).
//!
//! [`build_logged`] without any logging is exactly [`build`]: the ruleset
//! of a build without logging is not touched here. Pure, like `build`.

use std::collections::{BTreeMap, HashMap};

use super::build::build;
use super::names;
use super::{Limit, Log, Rule, Ruleset, Verdict};
use crate::model::{Direction, NamespacedName};
use crate::resolve::Resolution;

/// The tag that starts every prefix of ours: `knp:<id>:<verdict>`.
pub const PREFIX_TAG: &str = "knp";
/// The NFLOG group the agent uses unless told otherwise.
pub const DEFAULT_GROUP: u16 = 9841;

/// The verdict a log rule reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogVerdict {
    /// A pod chain's drop.
    Drop,
    /// A pod chain's accept.
    Allow,
}

impl LogVerdict {
    /// `drop` / `allow`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogVerdict::Drop => "drop",
            LogVerdict::Allow => "allow",
        }
    }
}

/// What to log, to which group, at what rate per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// The NFLOG group.
    pub group: u16,
    /// Log drops of each pod chain at most at this rate (`None`: off).
    pub drops: Option<Limit>,
    /// Log accepts of each pod chain rule at most at this rate (`None`: off).
    pub allows: Option<Limit>,
}

impl LogOptions {
    /// Nothing logged: [`build_logged`] gives exactly what `build` gives.
    pub const OFF: LogOptions = LogOptions {
        group: DEFAULT_GROUP,
        drops: None,
        allows: None,
    };

    /// Whether anything is logged.
    pub fn is_off(&self) -> bool {
        self.drops.is_none() && self.allows.is_none()
    }
}

/// Who a log id stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSubject {
    /// The chain of a local pod: its drops and accepts.
    Pod {
        /// `ns/pod`.
        pod: NamespacedName,
        /// Every policy that isolates the pod in the direction, sorted.
        isolating: Vec<NamespacedName>,
    },
}

/// One id of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The direction of the chain.
    pub direction: Direction,
    /// The pod.
    pub subject: LogSubject,
    /// The chain's name.
    pub chain: String,
}

/// Log id → what it stands for; one per pod chain of a build, whether or
/// not its rules log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogMap {
    entries: BTreeMap<String, LogEntry>,
}

impl LogMap {
    /// The entry of `id`.
    pub fn get(&self, id: &str) -> Option<&LogEntry> {
        self.entries.get(id)
    }

    /// Every (id, entry), sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &LogEntry)> {
        self.entries.iter()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no id.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `knp:<id>:drop`.
pub fn prefix(id: &str, verdict: LogVerdict) -> String {
    format!("{PREFIX_TAG}:{id}:{}", verdict.as_str())
}

/// The id and verdict of a prefix of ours; `None` for anything else.
pub fn parse_prefix(prefix: &str) -> Option<(&str, LogVerdict)> {
    let rest = prefix.strip_prefix(PREFIX_TAG)?.strip_prefix(':')?;
    let (id, verdict) = rest.rsplit_once(':')?;
    let verdict = match verdict {
        "drop" => LogVerdict::Drop,
        "allow" => LogVerdict::Allow,
        _ => return None,
    };
    let id_chars = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    (!id.is_empty() && id.chars().all(id_chars)).then_some((id, verdict))
}

/// The ruleset of `resolution` with the logging of `opts`, and the map of
/// its log ids.
pub fn build_logged(resolution: &Resolution, opts: &LogOptions) -> (Ruleset, LogMap) {
    let mut rs = build(resolution);
    let map = add_logging(&mut rs, resolution, opts);
    (rs, map)
}

/// Adds the log rules of `opts` to `rs`, a ruleset built from `resolution`
/// (by `build` or `build_with`), and returns the map of its log ids. With
/// logging off, `rs` is left as it is.
pub fn add_logging(rs: &mut Ruleset, resolution: &Resolution, opts: &LogOptions) -> LogMap {
    let map = log_map(resolution);
    if !opts.is_off() {
        add_rules(rs, &map, opts);
    }
    map
}

/// The log ids of every pod chain `build` makes for `resolution`.
pub fn log_map(resolution: &Resolution) -> LogMap {
    let mut entries = Vec::new();
    for pod in resolution.pods.iter() {
        for dir in Direction::ALL {
            let policies = pod.policies(dir);
            if policies.is_empty() {
                continue;
            }
            let mut isolating = policies.to_vec();
            isolating.sort();
            entries.push(LogEntry {
                direction: dir,
                chain: names::pod_chain(dir, &pod.key),
                subject: LogSubject::Pod {
                    pod: pod.key.clone(),
                    isolating,
                },
            });
        }
    }
    entries.sort_by(|a, b| a.chain.cmp(&b.chain));
    entries.dedup_by(|a, b| a.chain == b.chain);
    // Chain names are distinct; their short hashes almost always are. Ids
    // that collide get their position among the colliding chains (in name
    // order), so ids depend only on which chains exist.
    let mut by_short: BTreeMap<String, Vec<LogEntry>> = BTreeMap::new();
    for e in entries {
        by_short
            .entry(names::short_hash(&e.chain))
            .or_default()
            .push(e);
    }
    let mut map = LogMap::default();
    for (short, group) in by_short {
        let alone = group.len() == 1;
        for (n, e) in group.into_iter().enumerate() {
            let id = if alone {
                short.clone()
            } else {
                format!("{short}-{n}")
            };
            map.entries.insert(id, e);
        }
    }
    map
}

/// Adds the log rules of `opts` to the chains of `map` in `rs`.
fn add_rules(rs: &mut Ruleset, map: &LogMap, opts: &LogOptions) {
    let index: HashMap<&str, usize> = rs
        .chains
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let mut edits: Vec<(usize, Vec<Rule>)> = Vec::new();
    for (id, entry) in map.iter() {
        let Some(&i) = index.get(entry.chain.as_str()) else {
            continue;
        };
        let rules = &rs.chains[i].rules;
        let log = |verdict| Log {
            prefix: prefix(id, verdict),
            group: opts.group,
        };
        // The final drop (or reject), and with allow logging every accept.
        let last = rules.len().saturating_sub(1);
        let mut out = Vec::with_capacity(rules.len() * 2);
        for (k, rule) in rules.iter().enumerate() {
            let twin = match rule.verdict {
                Verdict::Drop | Verdict::Reject(_) if k == last => {
                    opts.drops.map(|l| (l, LogVerdict::Drop))
                }
                Verdict::Accept => opts.allows.map(|l| (l, LogVerdict::Allow)),
                _ => None,
            };
            if let Some((limit, verdict)) = twin {
                out.push(rule.clone().limited(limit).logged(log(verdict)));
            }
            out.push(rule.clone());
        }
        edits.push((i, out));
    }
    for (i, rules) in edits {
        rs.chains[i].rules = rules;
    }
}
