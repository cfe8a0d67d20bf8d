//! A network namespace per test (removed on drop, even on panic), `nft`
//! inside it, and ways to compare listings with and without object order.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use nftpolicy_core::ruleset::render::render;
use nftpolicy_core::ruleset::Ruleset;
use nftpolicy_nft::{kernel_listing, ApplyKind, Dataplane, NetlinkDataplane};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace of this test, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("kn-dp-{}-{n}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip");
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        Self { name }
    }

    pub fn name(&self) -> Option<&str> {
        Some(&self.name)
    }

    /// Runs nft in the namespace, with `stdin` as input if given.
    pub fn nft(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nft");
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(stdin.unwrap_or("").as_bytes())
            .expect("write stdin");
        drop(pipe);
        let out = child.wait_with_output().expect("wait nft");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn load(&self, text: &str) {
        self.nft(&["-f", "-"], Some(text)).expect("nft -f");
    }

    /// `nft list table inet kube-nftpolicy`, counters zeroed.
    pub fn list(&self) -> String {
        let out = self
            .nft(&["list", "table", "inet", "kube-nftpolicy"], None)
            .unwrap_or_else(|e| format!("<no table: {e}>"));
        zero_counters(&out)
    }

    pub fn list_ruleset(&self) -> String {
        self.nft(&["list", "ruleset"], None)
            .expect("nft list ruleset")
    }

    pub fn dataplane(&self) -> NetlinkDataplane {
        NetlinkDataplane::new(self.name()).expect("open dataplane")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

pub fn zero_counters(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("counter packets ") {
        out.push_str(&rest[..i]);
        out.push_str("counter packets 0 bytes 0");
        let tail = &rest[i + "counter packets ".len()..];
        let after_bytes = tail
            .find(" bytes ")
            .map(|j| j + " bytes ".len())
            .unwrap_or(0);
        let tail = &tail[after_bytes..];
        let end = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Blocks of a listing (`map`, `set`, `chain` bodies) sorted: the listing
/// without the order of its objects.
pub fn blocks(listing: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in listing.lines() {
        let starts = ["\tmap ", "\tset ", "\tchain "]
            .iter()
            .any(|p| line.starts_with(p));
        if starts || out.is_empty() {
            out.push(String::new());
        }
        if !line.is_empty() && line != "}" {
            let last = out.last_mut().expect("block");
            last.push_str(line);
            last.push('\n');
        }
    }
    out.sort();
    out
}

/// `kernel_listing` without object order: set blocks (with their elements)
/// and chains sorted, rules grouped by chain in order, groups sorted.
pub fn unordered(listing: &str) -> Vec<String> {
    let mut sets: Vec<String> = Vec::new();
    let mut rest: Vec<String> = Vec::new();
    let mut rules: std::collections::BTreeMap<String, String> = Default::default();
    for line in listing.lines() {
        if line.starts_with('\t') {
            if let Some(s) = sets.last_mut() {
                s.push_str(line);
                s.push('\n');
            }
        } else if line.starts_with("set ") {
            sets.push(format!("{line}\n"));
        } else if line.starts_with("rule ") {
            let chain = line.split(' ').nth(2).unwrap_or("").to_owned();
            rules
                .entry(chain)
                .or_default()
                .push_str(&format!("{line}\n"));
        } else {
            rest.push(line.to_owned());
        }
    }
    sets.sort();
    rest.sort();
    rest.extend(sets);
    rest.extend(rules.into_values());
    rest
}

/// The model without object order.
pub fn by_name(rs: &Ruleset) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut maps: Vec<String> = rs.maps.iter().map(|m| format!("{m:?}")).collect();
    let mut sets: Vec<String> = rs.sets.iter().map(|s| format!("{s:?}")).collect();
    let mut chains: Vec<String> = rs.chains.iter().map(|c| format!("{c:?}")).collect();
    maps.sort();
    sets.sort();
    chains.sort();
    (maps, sets, chains)
}

/// After an apply: the listing is `render(current())`, and the kernel
/// holds exactly what `nft -f` makes of that text.
pub fn assert_consistent(ns: &Netns, dp: &NetlinkDataplane) {
    let current = dp.current().expect("current");
    assert_eq!(ns.list(), render(current), "listing != render(current)");
    let reference = Netns::new();
    reference.load(&render(current));
    assert_eq!(
        kernel_listing(ns.name()).expect("listing"),
        kernel_listing(reference.name()).expect("listing"),
        "kernel state differs from nft -f of render(current)"
    );
}

/// Applies `b` after `a` incrementally (until no chain deletion is left
/// over), and checks it ends like a full replace of `b`, modulo order.
pub fn check_transition(a: &Ruleset, b: &Ruleset) -> (Netns, NetlinkDataplane) {
    let ns = Netns::new();
    let mut dp = ns.dataplane();
    assert_eq!(dp.apply(a).expect("apply a").kind, ApplyKind::Full);
    let mut report = dp.apply(b).expect("apply b");
    assert_eq!(report.kind, ApplyKind::Incremental, "{report:?}");
    assert_consistent(&ns, &dp);
    let mut rounds = 0;
    while report.deferred > 0 {
        rounds += 1;
        assert!(rounds < 3, "deferred chain deletions never finish");
        report = dp.apply(b).expect("apply b again");
        assert_eq!(report.kind, ApplyKind::Incremental);
        assert_consistent(&ns, &dp);
    }
    assert_eq!(dp.apply(b).expect("settled").kind, ApplyKind::NoChange);
    assert_eq!(by_name(dp.current().expect("current")), by_name(b));
    let full = Netns::new();
    full.dataplane().apply(b).expect("full b");
    assert_eq!(blocks(&ns.list()), blocks(&full.list()));
    assert_eq!(
        unordered(&kernel_listing(ns.name()).expect("listing")),
        unordered(&kernel_listing(full.name()).expect("listing"))
    );
    assert_eq!(dp.verify().expect("verify"), None);
    (ns, dp)
}
