//! Figures: percentiles, the agent's `/metrics` read from inside a node,
//! and the comparison of a node's table with `kube-nftpolicy render`
//! (the node guard aside, see [`normalise`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use nftpolicy_core::model::Direction;
use nftpolicy_core::ruleset::{guard, Family};

/// p50, p99 and max of `samples` (nearest rank), or `None` when empty.
pub fn percentiles(samples: &[Duration]) -> Option<[Duration; 3]> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort();
    let rank = |p: f64| {
        let r = (p * s.len() as f64).ceil() as usize;
        s[r.clamp(1, s.len()) - 1]
    };
    Some([rank(0.50), rank(0.99), s[s.len() - 1]])
}

/// `12.3 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One line of a table: `name  p50  p99  max  (n)`.
pub fn line(name: &str, samples: &[Duration]) -> String {
    match percentiles(samples) {
        Some([p50, p99, max]) => format!(
            "{name:<46} {:>10} {:>10} {:>10} {:>6}",
            ms(p50),
            ms(p99),
            ms(max),
            samples.len()
        ),
        None => format!("{name:<46} {:>10} {:>10} {:>10} {:>6}", "-", "-", "-", 0),
    }
}

/// The header of [`line`]s.
pub fn header() -> String {
    format!(
        "{:<46} {:>10} {:>10} {:>10} {:>6}",
        "", "p50", "p99", "max", "n"
    )
}

/// `/metrics` of the agent in network namespace `netns` (port 9841),
/// fetched from a thread inside the namespace (no subprocess).
pub fn metrics(netns: &str) -> String {
    nftpolicy_lab::netns::in_netns(netns, || {
        let io = |e: std::io::Error| nftpolicy_lab::LabError::Io {
            context: "GET /metrics".into(),
            source: e,
        };
        let mut conn =
            TcpStream::connect_timeout(&([127, 0, 0, 1], 9841).into(), Duration::from_secs(3))
                .map_err(io)?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(io)?;
        conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .map_err(io)?;
        let mut body = String::new();
        conn.read_to_string(&mut body).map_err(io)?;
        Ok(body)
    })
    .unwrap_or_else(|e| panic!("/metrics in {netns}: {e}"))
}

/// The value of the sample whose name and labels are `name_and_labels`
/// (0 when absent).
pub fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .filter(|r| r.starts_with(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A histogram's (count, sum): `name` without `_count` / `_sum`.
pub fn histogram(text: &str, name: &str) -> (u64, f64) {
    let count = sample(text, &format!("{name}_count"));
    let sum = sample(text, &format!("{name}_sum"));
    (count as u64, sum)
}

/// The agent's `event_to_enforced_seconds` histogram: (count, sum).
pub fn event_to_enforced(text: &str) -> (u64, f64) {
    histogram(text, "kube_nftpolicy_event_to_enforced_seconds")
}

/// The agent's `sync_duration_seconds` histogram: (count, sum).
pub fn sync_duration(text: &str) -> (u64, f64) {
    histogram(text, "kube_nftpolicy_sync_duration_seconds")
}

/// The `objects` gauges, in the agent's order.
pub fn objects(text: &str) -> Vec<(&'static str, u64)> {
    [
        "pods",
        "local_pods",
        "isolated_pods",
        "policies",
        "namespaces",
        "chains",
        "rules",
        "set_elements",
    ]
    .into_iter()
    .map(|w| {
        let v = sample(text, &format!("kube_nftpolicy_objects{{what=\"{w}\"}}"));
        (w, v as u64)
    })
    .collect()
}

/// The comments of the node guard's rules (`nftpolicy_core::ruleset::guard`:
/// the cut flows' drop and the gate's rejects). The guard comes from the
/// node (its pod CIDRs and addresses, the agent's flags), not from the API
/// objects, and `render` does not print it.
fn guard_comments() -> Vec<String> {
    let gate = guard::Gate {
        pod_cidrs: vec![
            "10.0.0.0/8".parse().expect("CIDR"),
            "fd00::/8".parse().expect("CIDR"),
        ],
        node_addrs: Vec::new(),
    };
    let mut out: Vec<String> = Direction::ALL
        .into_iter()
        .flat_map(|d| guard::gate_rules(&gate, d))
        .chain([guard::cut_rule(1)])
        .filter_map(|r| r.comment)
        .map(|c| format!(" comment \"{c}\""))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The names of the gate's sets.
fn guard_sets() -> Vec<String> {
    Family::ALL
        .into_iter()
        .flat_map(|f| [guard::cidr_set(f), guard::known_set(f)])
        .collect()
}

/// `nft list table` text made comparable with `render` output: the
/// top-level objects (sets, maps, chains) sorted by their text (an
/// incremental apply appends new objects, a full replace lists them in
/// the model's order), counter values zeroed, and what the agent adds to
/// the policies' table left out: the log twins of rules (`... log prefix
/// "knp:<id>:drop" group G drop`) and the node guard's rules and sets
/// (checked by [`guard_elements`] instead).
pub fn normalise(table: &str) -> Vec<String> {
    let comments = guard_comments();
    let sets: Vec<String> = guard_sets()
        .iter()
        .map(|s| format!("\tset {s} {{"))
        .collect();
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut skipping = false;
    for raw in table.lines() {
        if raw.contains(" log prefix \"knp:") || comments.iter().any(|c| raw.ends_with(c)) {
            continue;
        }
        if skipping {
            skipping = raw != "\t}";
            continue;
        }
        let line = zero_counters(raw);
        if let Some(b) = current.as_mut() {
            b.push_str(&line);
            b.push('\n');
            if line == "\t}" {
                blocks.push(current.take().unwrap_or_default());
            }
            continue;
        }
        if sets.contains(&line) {
            skipping = true;
        } else if ["\tset ", "\tmap ", "\tchain "]
            .iter()
            .any(|p| line.starts_with(p))
        {
            current = Some(format!("{line}\n"));
        } else if !line.trim().is_empty() {
            blocks.push(line);
        }
    }
    if let Some(b) = current {
        blocks.push(b);
    }
    blocks.sort();
    blocks
}

/// The elements of the gate's sets in `table`, by set name: each element's
/// text up to its comment, and the comment (`10.244.1.2`, `load-00/cli-0`).
/// Empty when the agent runs without the gate.
pub fn guard_elements(table: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for name in guard_sets() {
        let header = format!("\tset {name} {{");
        let Some(start) = table.find(&header) else {
            continue;
        };
        let body = &table[start..];
        let body = &body[..body.find("\n\t}").unwrap_or(body.len())];
        let elements = body
            .split_once("elements = {")
            .map(|(_, e)| e.rsplit_once('}').map_or(e, |(e, _)| e))
            .unwrap_or_default();
        let parsed = elements
            .split(',')
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let e = e.trim();
                match e.split_once(" comment ") {
                    Some((v, c)) => (v.trim().to_owned(), c.trim_matches('"').to_owned()),
                    None => (e.to_owned(), String::new()),
                }
            })
            .collect();
        out.push((name, parsed));
    }
    out
}

fn zero_counters(line: &str) -> String {
    let mut out = String::new();
    let mut words = line.split(' ').peekable();
    let mut first = true;
    while let Some(w) = words.next() {
        if !first {
            out.push(' ');
        }
        first = false;
        out.push_str(w);
        if w == "packets" || w == "bytes" {
            if let Some(n) = words.peek() {
                if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() {
                    words.next();
                    out.push_str(" 0");
                }
            }
        }
    }
    out
}

/// The first difference between two normalised tables, for a message.
pub fn first_difference(want: &[String], got: &[String]) -> String {
    let only_want: Vec<&String> = want.iter().filter(|b| !got.contains(b)).collect();
    let only_got: Vec<&String> = got.iter().filter(|b| !want.contains(b)).collect();
    format!(
        "{} objects only in render, {} only in the kernel\nfirst in render only:\n{}\nfirst in kernel only:\n{}",
        only_want.len(),
        only_got.len(),
        only_want.first().map_or("-", |s| s.as_str()),
        only_got.first().map_or("-", |s| s.as_str()),
    )
}
