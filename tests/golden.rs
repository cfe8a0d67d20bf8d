//! Golden rulesets: every directory under `tests/golden/` is one case.
//!
//! # Layout of a case
//!
//! ```text
//! tests/golden/<case>/input.yaml    what `kubectl get ns,pods,networkpolicies -A -o yaml`
//!                                   prints (a `kind: List`, or multi-document YAML)
//! tests/golden/<case>/expected.nft  the ruleset rendered for one node
//! ```
//!
//! The node a case is rendered for is named by a comment line at the top of
//! `input.yaml`, before the first line that is not a comment:
//!
//! ```yaml
//! # node: kubenode1.acme.es
//! apiVersion: v1
//! kind: List
//! ```
//!
//! Without that line the node is `node-1`. A line `# log: drops=10/second
//! allows=1/minute burst=3 group=9841` (each key optional) adds drop and
//! allow logging as the agent does (`ruleset::logging::add_logging`).
//!
//! # What is checked
//!
//! - `golden_rulesets`: the input loads with no problem reported by
//!   `files::load`, and `resolve` → `build` → `render` equals `expected.nft`
//!   byte for byte. On a mismatch the test prints a line diff.
//!   `UPDATE_GOLDEN=1 cargo test --test golden` rewrites `expected.nft`
//!   instead (and only then); review that diff like code. For a new case,
//!   run `UPDATE_GOLDEN=1 cargo test --test golden golden_rulesets` first:
//!   tests run in parallel and the kernel check may look before it is written.
//! - `expected_rulesets_load_in_the_kernel`: every `expected.nft` passes
//!   `nft -c -f` inside a throwaway network namespace (`unshare -n`), so the
//!   golden text is something the kernel accepts, not only what we print.
//!   This needs root (CI runs it as root); without root it fails, it never
//!   skips.
//! - `required_cases_exist`: the behaviours the project promises to keep
//!   covered have a case.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::build::{build_with, Options};
use nftpolicy_core::ruleset::guard::Gate;
use nftpolicy_core::ruleset::logging::{add_logging, LogOptions};
use nftpolicy_core::ruleset::render::render;
use nftpolicy_core::ruleset::Limit;
use nftpolicy_source::files;

/// The node a case is rendered for when `input.yaml` names none.
const DEFAULT_NODE: &str = "node-1";

/// Cases that must exist (more may).
const REQUIRED: &[&str] = &[
    "seed-calico-advanced",
    "seed-webapp-balanced",
    "seed-cilium-backend",
    "seed-handbook",
    "seed-db-policy",
    "default-deny-ingress",
    "default-deny-egress",
    "default-deny-both",
    "allow-all-ingress",
    "allow-all-egress",
    "ipblock-except",
    "named-port-ingress",
    "named-port-egress",
    "endport",
    "dual-stack",
    "match-expressions",
    "additive-policies",
    "namespace-selector",
    "pod-and-namespace-selector",
    "sctp",
    "hostnetwork-and-finished-pods-ignored",
    "remote-pods-as-peers",
    "drop-and-allow-logging",
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every case directory, sorted by name.
fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden must exist")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no case under tests/golden");
    dirs
}

fn case_name(dir: &Path) -> String {
    dir.file_name()
        .expect("case directory has a name")
        .to_string_lossy()
        .into_owned()
}

/// The value of a `# key: value` line among the leading comment lines.
fn header(input: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    input
        .lines()
        .take_while(|l| l.trim_start().starts_with('#') || l.trim().is_empty())
        .find_map(|l| {
            l.trim_start()
                .trim_start_matches('#')
                .trim()
                .strip_prefix(prefix.as_str())
                .map(|n| n.trim().to_owned())
        })
}

/// The `# node: <name>` line among the leading comment lines, else `node-1`.
fn node_of(input: &str) -> String {
    header(input, "node").unwrap_or_else(|| DEFAULT_NODE.to_owned())
}

/// The node's guards from the header: `# pod-cidrs: 10.244.1.0/24,...`,
/// `# node-addrs: 10.244.1.1,...` (the gate) and `# cut-mark: 0x20000000`.
fn options_of(input: &str) -> Options {
    let list = |key| -> Vec<String> {
        header(input, key)
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    };
    let gate = header(input, "pod-cidrs").map(|_| Gate {
        pod_cidrs: list("pod-cidrs")
            .iter()
            .map(|c| c.parse().expect("a CIDR"))
            .collect(),
        node_addrs: list("node-addrs")
            .iter()
            .map(|a| a.parse().expect("an address"))
            .collect(),
    });
    let cut_mark = header(input, "cut-mark")
        .map(|m| u32::from_str_radix(m.trim_start_matches("0x"), 16).expect("a hex mark"));
    Options { gate, cut_mark }
}

/// The `# log: drops=<rate> allows=<rate> burst=<n> group=<n>` line as
/// options (every key optional); `None` without such a line.
fn log_of(input: &str) -> Result<Option<LogOptions>, String> {
    let Some(line) = header(input, "log") else {
        return Ok(None);
    };
    let mut opts = LogOptions::OFF;
    let mut burst = None;
    for kv in line.split_whitespace() {
        let (k, v) = kv.split_once('=').ok_or(format!("bad log option {kv:?}"))?;
        let rate = || v.parse::<Limit>().map_err(|e| e.to_string());
        let number = |v: &str| v.parse::<u32>().map_err(|e| e.to_string());
        match k {
            "drops" => opts.drops = Some(rate()?),
            "allows" => opts.allows = Some(rate()?),
            "burst" => burst = Some(number(v)?),
            "group" => opts.group = u16::try_from(number(v)?).map_err(|e| e.to_string())?,
            _ => return Err(format!("unknown log option {k:?}")),
        }
    }
    if let Some(b) = burst {
        opts.drops = opts.drops.map(|l| l.burst(b));
        opts.allows = opts.allows.map(|l| l.burst(b));
    }
    Ok(Some(opts))
}

/// Loads, resolves, builds and renders one case; `Err` names what went wrong.
fn render_case(dir: &Path) -> Result<String, String> {
    let input_path = dir.join("input.yaml");
    let input = std::fs::read_to_string(&input_path)
        .map_err(|e| format!("cannot read {}: {e}", input_path.display()))?;
    let node = node_of(&input);
    let loaded =
        files::load(std::slice::from_ref(&input_path)).map_err(|e| format!("load failed: {e}"))?;
    if !loaded.problems.is_empty() {
        let list: Vec<String> = loaded.problems.iter().map(|p| format!("  {p}")).collect();
        return Err(format!(
            "the loader reported problems for a golden input:\n{}",
            list.join("\n")
        ));
    }
    if !loaded
        .snapshot
        .pods
        .values()
        .any(|p| p.node.as_deref() == Some(&node))
    {
        return Err(format!(
            "no pod of input.yaml runs on node {node:?}: the case would render no pod chain"
        ));
    }
    let opts = options_of(&input);
    let resolution = resolve(&loaded.snapshot, &node);
    let mut ruleset = build_with(&resolution, &opts);
    if let Some(log) = log_of(&input)? {
        add_logging(&mut ruleset, &resolution, &log);
    }
    Ok(render(&ruleset))
}

/// A unified-style line diff (`-` expected, `+` actual) with 3 lines of context.
fn line_diff(expected: &str, actual: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // (tag, expected line number, text)
    let mut ops: Vec<(char, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i + 1, a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i + 1, a[i]));
            i += 1;
        } else {
            ops.push(('+', i + 1, b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut last_printed: Option<usize> = None;
    for (k, (tag, line, text)) in ops.iter().enumerate() {
        let near = changed
            .iter()
            .any(|&c| k + CONTEXT >= c && k <= c + CONTEXT);
        if !near {
            continue;
        }
        if last_printed.is_none_or(|l| l + 1 != k) {
            let _ = writeln!(out, "@@ expected.nft line {line} @@");
        }
        let _ = writeln!(out, "{tag} {text}");
        last_printed = Some(k);
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        out.push_str("(the files differ in their final newline)\n");
    }
    out
}

#[test]
fn golden_rulesets() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for dir in cases() {
        let name = case_name(&dir);
        let expected_path = dir.join("expected.nft");
        let actual = match render_case(&dir) {
            Ok(text) => text,
            Err(e) => {
                failures.push(format!("case {name}: {e}"));
                continue;
            }
        };
        if update {
            std::fs::write(&expected_path, &actual)
                .unwrap_or_else(|e| panic!("case {name}: cannot write expected.nft: {e}"));
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Err(e) => failures.push(format!(
                "case {name}: cannot read expected.nft ({e}); run with UPDATE_GOLDEN=1 to create it"
            )),
            Ok(expected) if expected != actual => failures.push(format!(
                "case {name}: rendered ruleset differs from expected.nft \
                 (UPDATE_GOLDEN=1 rewrites it; review the diff)\n{}",
                line_diff(&expected, &actual)
            )),
            Ok(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn expected_rulesets_load_in_the_kernel() {
    nftpolicy_lab::kernel_test!("golden::expected_rulesets_load_in_the_kernel");
    let mut failures = Vec::new();
    for dir in cases() {
        let name = case_name(&dir);
        let file = dir.join("expected.nft");
        if !file.is_file() {
            failures.push(format!("case {name}: no expected.nft"));
            continue;
        }
        let out = Command::new("unshare")
            .arg("-n")
            .arg("nft")
            .arg("-c")
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `unshare -n nft` (are util-linux and nftables installed?): {e}")
            });
        if !out.status.success() {
            failures.push(format!(
                "case {name}: `nft -c -f expected.nft` refused it ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} expected.nft file(s) do not load in the kernel:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn required_cases_exist() {
    let present: Vec<String> = cases().iter().map(|d| case_name(d)).collect();
    let missing: Vec<&&str> = REQUIRED
        .iter()
        .filter(|r| !present.iter().any(|p| p == **r))
        .collect();
    assert!(missing.is_empty(), "missing golden cases: {missing:?}");
}

#[test]
fn node_comment_convention() {
    // (case, input head, node)
    let cases = [
        ("no comment", "apiVersion: v1\nkind: List\n", "node-1"),
        ("first line", "# node: n1\napiVersion: v1\n", "n1"),
        (
            "after other comments",
            "# a dump of the cluster\n#\n# node: kubenode1.acme.es\napiVersion: v1\n",
            "kubenode1.acme.es",
        ),
        (
            "only before the YAML starts",
            "apiVersion: v1\n# node: late\n",
            "node-1",
        ),
    ];
    for (case, input, want) in cases {
        assert_eq!(node_of(input), want, "case: {case}");
    }
}

#[test]
fn log_comment_convention() {
    assert_eq!(log_of("# node: n1\napiVersion: v1\n"), Ok(None));
    let opts = log_of("# log: drops=10/second allows=2/minute burst=3 group=7\nkind: List\n")
        .unwrap()
        .unwrap();
    assert_eq!(opts.group, 7);
    assert_eq!(opts.drops.map(|l| (l.rate, l.burst)), Some((10, 3)));
    assert_eq!(opts.allows.map(|l| (l.rate, l.burst)), Some((2, 3)));
    assert!(log_of("# log: drops=fast\n").is_err());
    assert!(log_of("# log: group=70000\n").is_err());
}

#[test]
fn line_diff_shows_changed_lines() {
    let diff = line_diff("a\nb\nc\n", "a\nB\nc\n");
    assert_eq!(
        diff, "@@ expected.nft line 1 @@\n  a\n- b\n+ B\n  c\n",
        "removed lines come first, then added ones, with context"
    );
}
