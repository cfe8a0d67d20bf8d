//! A kube-router-style ruleset for a resolution, as the input of one full
//! sync: `ipset restore -exist` text and `iptables-restore -T filter` text
//! (IPv4 only). Shared by the data-path bench (`datapath_bench.rs`, which
//! installs it once per round) and the control-plane comparison
//! (`sync_compare.rs`, which restores it whole on every change, as
//! kube-router's network policy controller does on every sync).
//!
//! The rules: conntrack accept first, a linear list of `-d pod -j
//! pod-chain` / `-s pod -j ...` for the local pods, per-pod chains jumping
//! to per-policy chains, one `hash:net` set per policy rule with peers.
//!
//! The sets are written as kube-router's `buildIPSetRestore` writes them: a
//! temporary set per set type is created and flushed, filled with the
//! set's entries, swapped with the real set (created first if missing) and
//! flushed again; the temporary set is destroyed at the end. The text is
//! for `ipset restore -exist`.
//!
//! What kube-router also does and this does not (so its sync here is
//! cheaper than the real one): a target-pod `hash:ip` set per policy,
//! named-port sets, chains and sets of policies that select no local pod,
//! comments on every rule, and the chain-name version of each sync.

use std::collections::HashMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

use nftpolicy_core::model::{Direction, NamespacedName};
use nftpolicy_core::resolve::{Peers, Ports, Resolution};

/// The temporary set of the swaps (kube-router: `TMP-` and a hash of the
/// set options; one set type here, so one name).
const TMP_SET: &str = "TMP-KR-HASHNET";
/// The options of every set (kube-router's defaults).
const SET_OPTIONS: &str = "hash:net family inet hashsize 1024 maxelem 65536";

/// (`ipset restore -exist` input, `iptables-restore` input of the whole
/// filter table) for `r`.
pub fn kube_router(r: &Resolution) -> (String, String) {
    let (mut sets, mut chains, mut rules) = (String::new(), String::new(), String::new());
    sets.push_str(&format!(
        "create {TMP_SET} {SET_OPTIONS}\nflush {TMP_SET}\n"
    ));
    rules.push_str("-A FORWARD -j KUBE-ROUTER-FORWARD\n-A KUBE-ROUTER-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    chains.push_str(":KUBE-ROUTER-FORWARD - [0:0]\n");
    let policy_index: HashMap<(&NamespacedName, Direction), usize> = r
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| ((&p.key, p.direction), i))
        .collect();
    for (i, p) in r.policies.iter().enumerate() {
        chains.push_str(&format!(":KRN-{i} - [0:0]\n"));
        let field = if p.direction == Direction::Ingress {
            "src"
        } else {
            "dst"
        };
        for rule in &p.rules {
            let set_match = match &rule.peers {
                Peers::Any => String::new(),
                Peers::Addrs(peers) => {
                    let name = format!("KR{i}-{}", rule.index);
                    for e in &peers.addrs.v4 {
                        add_cidrs(&mut sets, e.range.first, e.range.last);
                    }
                    sets.push_str(&format!(
                        "create {name} {SET_OPTIONS}\nswap {TMP_SET} {name}\nflush {TMP_SET}\n"
                    ));
                    format!("-m set --match-set {name} {field} ")
                }
            };
            let ports: Vec<String> = match &*rule.ports {
                Ports::Any => vec![String::new()],
                Ports::Listed { numeric, .. } => numeric
                    .iter()
                    .map(|(proto, range)| match range {
                        None => format!("-p {proto} "),
                        Some(r) => format!("-p {proto} --dport {}:{} ", r.first, r.last),
                    })
                    .collect(),
            };
            for port in ports {
                rules.push_str(&format!("-A KRN-{i} {port}{set_match}-j ACCEPT\n"));
            }
        }
    }
    sets.push_str(&format!("destroy {TMP_SET}\n"));
    for (i, pod) in r.pods.iter().enumerate() {
        for (dir, flag, policies) in [
            (Direction::Ingress, "-d", &pod.ingress),
            (Direction::Egress, "-s", &pod.egress),
        ] {
            if policies.is_empty() {
                continue;
            }
            let d = if dir == Direction::Ingress { "I" } else { "E" };
            let chain = format!("KRP{d}-{i}");
            chains.push_str(&format!(":{chain} - [0:0]\n"));
            for ip in pod.ips.iter().filter(|ip| ip.is_ipv4()) {
                rules.push_str(&format!(
                    "-A KUBE-ROUTER-FORWARD {flag} {ip}/32 -j {chain}\n"
                ));
            }
            for key in policies {
                rules.push_str(&format!(
                    "-A {chain} -j KRN-{}\n",
                    policy_index[&(key, dir)]
                ));
            }
            rules.push_str(&format!("-A {chain} -j DROP\n"));
        }
    }
    (sets, format!("*filter\n{chains}{rules}COMMIT\n"))
}

/// `add TMP_SET block` lines for the CIDR blocks covering `first..=last`
/// (IPv4).
fn add_cidrs(out: &mut String, first: IpAddr, last: IpAddr) {
    let (IpAddr::V4(a), IpAddr::V4(b)) = (first, last) else {
        return;
    };
    let (mut lo, hi) = (u64::from(u32::from(a)), u64::from(u32::from(b)));
    while lo <= hi {
        let mut size = if lo == 0 {
            1u64 << 32
        } else {
            lo & lo.wrapping_neg()
        };
        while lo + size - 1 > hi {
            size /= 2;
        }
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "add {TMP_SET} {}/{}",
            Ipv4Addr::from(lo as u32),
            32 - size.trailing_zeros()
        );
        lo += size;
    }
}
