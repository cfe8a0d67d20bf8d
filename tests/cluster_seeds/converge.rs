//! Waiting until both agents enforce the API's current state, so that a
//! probe after a step tests that step and not the one before it.
//!
//! "Enforce" is checked, not hoped for: the table the agent keeps on each
//! node (`nft list table`) must be what `kube-nftpolicy render` prints for
//! that node from `kubectl get namespaces,pods,networkpolicies -A -o yaml`
//! of the same moment, with the guard the agent adds by default (the gate
//! of the Node's pod CIDRs and the node's addresses, the cut rule: see
//! `Cluster::guard_args`), up to what does not decide a packet's fate:
//!
//! - the order of chains, sets and set elements (an incremental apply adds
//!   chains at the end; the kernel lists hash sets in its own order);
//! - observability statements: `counter`, `limit rate` and `log` (the agent
//!   logs drops through NFLOG at a limited rate by default; `render` shows
//!   the policy alone). A rule left identical to the one before it by this
//!   (a rate-limited logging drop before the counted drop) is one rule.
//!
//! An agent that diverges from the CLI in anything else fails the replay,
//! with the objects that differ.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster_support::Cluster;

/// How long the agents may take to enforce a change.
const CONVERGE: Duration = Duration::from_secs(30);

/// Waits until the table on every node is what `kube-nftpolicy render`
/// makes of the API's current objects for that node.
pub fn converge(c: &Cluster, label: &str) {
    let dump = std::env::temp_dir().join(format!("knp-cluster-seeds-{}.yaml", std::process::id()));
    let give_up = Instant::now() + CONVERGE;
    loop {
        let yaml = c.k(&["get", "namespaces,pods,networkpolicies", "-A", "-o", "yaml"]);
        std::fs::write(&dump, yaml).expect("write the API dump");
        let mut differ = Vec::new();
        for n in 1..=2u8 {
            let want = normalize(&render(&dump, n, &c.guard_args(n)));
            let got = normalize(&c.nft(n));
            if want != got {
                differ.push(describe_difference(n, &want, &got));
            }
        }
        if differ.is_empty() {
            let _ = std::fs::remove_file(&dump);
            return;
        }
        assert!(
            Instant::now() < give_up,
            "{label}: the agents do not enforce the API's state after {CONVERGE:?}:\n{}",
            differ.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn render(dump: &Path, node: u8, guard: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kube-nftpolicy"))
        .args(["render", "-f"])
        .arg(dump)
        .args(["--node", &format!("node{node}")])
        .args(guard)
        .output()
        .expect("run kube-nftpolicy render");
    // 3: rendered, but invalid objects were skipped (the API refuses them
    // before they exist, so none are expected; stderr says which).
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "kube-nftpolicy render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table as a sorted list of its objects, each on one line, without
/// observability statements, set elements sorted.
fn normalize(table: &str) -> Vec<String> {
    let mut objects = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in table.lines() {
        let opens = ["\tchain ", "\tset ", "\tmap "]
            .iter()
            .any(|p| line.starts_with(p));
        if opens {
            current = Some(Vec::new());
        }
        match current.as_mut() {
            Some(lines) => {
                let l = policy_only(line.trim());
                if !l.is_empty() && lines.last() != Some(&l) {
                    lines.push(l);
                }
                if line == "\t}" {
                    let obj = current.take().unwrap_or_default().join(" ");
                    objects.push(sort_elements(&obj));
                }
            }
            None if !line.trim().is_empty() => objects.push(line.trim().to_owned()),
            None => {}
        }
    }
    objects.sort();
    objects
}

/// `line` without `counter packets N bytes N`, `limit rate ...` and
/// `log ...` statements.
fn policy_only(line: &str) -> String {
    let words = tokens(line);
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "counter" if words.get(i + 1) == Some(&"packets") => i += 5,
            "limit" if words.get(i + 1) == Some(&"rate") => {
                i += 2;
                if words.get(i) == Some(&"over") {
                    i += 1;
                }
                i += 1; // N/unit
                if words.get(i) == Some(&"burst") {
                    i += 2;
                    if matches!(words.get(i), Some(&"packets" | &"bytes")) {
                        i += 1;
                    }
                }
            }
            "log" => {
                i += 1;
                while matches!(
                    words.get(i),
                    Some(
                        &"prefix"
                            | &"group"
                            | &"snaplen"
                            | &"queue-threshold"
                            | &"level"
                            | &"flags"
                    )
                ) {
                    i += 2;
                }
            }
            w => {
                out.push(w);
                i += 1;
            }
        }
    }
    out.join(" ")
}

/// Whitespace-separated words; a quoted string is one word.
fn tokens(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, ch) in line.char_indices() {
        match (ch, start) {
            ('"', _) => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            (c, Some(s)) if c.is_whitespace() && !quoted => {
                out.push(&line[s..i]);
                start = None;
            }
            (c, None) if !c.is_whitespace() => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

/// `obj` with the elements of its `elements = { ... }` in sorted order.
fn sort_elements(obj: &str) -> String {
    let mut out = obj.to_owned();
    if let Some(start) = out.find("elements = { ") {
        let body = start + "elements = { ".len();
        if let Some(len) = out[body..].find(" }") {
            let mut elements: Vec<&str> = out[body..body + len].split(", ").collect();
            elements.sort_unstable();
            let sorted = elements.join(", ");
            out.replace_range(body..body + len, &sorted);
        }
    }
    out
}

fn describe_difference(node: u8, want: &[String], got: &[String]) -> String {
    let missing: Vec<&String> = want.iter().filter(|o| !got.contains(o)).collect();
    let extra: Vec<&String> = got.iter().filter(|o| !want.contains(o)).collect();
    format!(
        "node{node}: rendered but not in the kernel: {missing:#?}\n\
         in the kernel but not rendered: {extra:#?}"
    )
}

#[test]
fn observability_statements_do_not_count() {
    let kernel = "table inet t {\n\tchain c {\n\t\tcomment \"x\"\n\t\tlimit rate 10/second burst 5 packets counter packets 3 bytes 180 log prefix \"knp:ab:drop\" group 9841 drop comment \"no policy; a b\"\n\t\tcounter packets 7 bytes 420 drop comment \"no policy; a b\"\n\t}\n\n\tset s {\n\t\telements = { 10.0.0.2, 10.0.0.1,\n\t\t\t     10.0.0.3 }\n\t}\n}\n";
    let rendered = "table inet t {\n\tset s {\n\t\telements = { 10.0.0.1, 10.0.0.2, 10.0.0.3 }\n\t}\n\n\tchain c {\n\t\tcomment \"x\"\n\t\tcounter packets 0 bytes 0 drop comment \"no policy; a b\"\n\t}\n}\n";
    assert_eq!(normalize(kernel), normalize(rendered));
    let other = rendered.replace("drop comment", "accept comment");
    assert_ne!(normalize(kernel), normalize(&other));
}
