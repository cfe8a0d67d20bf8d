//! Single changes after the first apply, one at a time, each timed from
//! the fake API publishing its watch event to the commit of the sync that
//! holds it: a remote pod relabelled (it leaves and joins peer sets) and
//! back, a policy edited (one more ingress rule) and back, a pod added
//! and deleted; cycled for `SCALE_CHANGES` changes.

use std::time::{Duration, SystemTime};

use nftpolicy_core::model::{Protocol, Snapshot};
use nftpolicy_testkit::synth::LOCAL_NODE;
use nftpolicy_testkit::{pod, rule, PodExt, PolicyExt, RuleExt};

use super::agent::{AgentProcess, Counters};
use super::api::{FakeApi, Res};
use super::{ms, unix, wire, RunOptions, R};

/// Makes `opts.changes` changes and prints each one's times.
pub fn run(agent: &mut AgentProcess, api: &FakeApi, s: &Snapshot, opts: &RunOptions) -> R<()> {
    let remote = s
        .pods
        .values()
        .filter(|p| p.node.as_deref() != Some(LOCAL_NODE))
        .nth(5)
        .ok_or("a remote pod")?;
    let remote = nftpolicy_core::model::Pod::clone(remote);
    let mut relabelled = remote.clone();
    relabelled.labels.insert("app".into(), "app-9".into());
    let policy =
        nftpolicy_core::model::Policy::clone(s.policies.values().nth(1).ok_or("a policy")?);
    let edited = policy.clone().ingress(rule().port(Protocol::Tcp, 8443));
    let added = pod("ns-0", "scale-new-pod")
        .labels([("app", "app-1"), ("tier", "front")])
        .ip("10.200.0.1")
        .node("node-elsewhere")
        .port("http", 8080, Protocol::Tcp);
    let lean = opts.lean;
    let (mut took, mut agent_took) = (Vec::new(), Vec::new());
    let mut last = Counters::read(&agent.scrape().ok_or("no /metrics")?);
    for k in 0..opts.changes {
        std::thread::sleep(Duration::from_millis(300));
        let sent = SystemTime::now();
        let what = match k % 6 {
            0 => {
                api.apply(Res::Pods, wire::pod(&relabelled, 1, lean));
                "remote pod relabelled"
            }
            1 => {
                api.apply(Res::Pods, wire::pod(&remote, 1, lean));
                "relabel undone"
            }
            2 => {
                api.apply(Res::Policies, wire::policy(&edited, 1, lean));
                "policy edited"
            }
            3 => {
                api.apply(Res::Policies, wire::policy(&policy, 1, lean));
                "edit undone"
            }
            4 => {
                api.apply(Res::Pods, wire::pod(&added, 1, lean));
                "pod added"
            }
            _ => {
                api.delete(Res::Pods, "ns-0", "scale-new-pod");
                "pod deleted"
            }
        };
        let text = agent.until(Duration::from_millis(10), opts.timeout, |t| {
            let a = Counters::read(t);
            // The dataplane thread counts the sync before the loop records
            // event_to_enforced: wait for both.
            a.syncs > last.syncs && a.last_sync >= unix(sent) && a.e2e_count > last.e2e_count
        });
        let text = text
            .ok_or_else(|| format!("change {k} ({what}) not applied:\n{}", agent.log_tail(20)))?;
        let now = Counters::read(&text);
        let commit = now.last_sync - unix(sent);
        let e2e = (now.e2e_sum - last.e2e_sum) / (now.e2e_count - last.e2e_count).max(1.0);
        println!(
            "  change {k}: {what:<22} event → commit {:>7}  (agent: event_to_enforced {}, sync {})",
            ms(commit),
            ms(e2e),
            ms(now.sync_sum - last.sync_sum)
        );
        took.push(commit);
        agent_took.push(e2e);
        last = now;
    }
    if !took.is_empty() {
        took.sort_by(f64::total_cmp);
        agent_took.sort_by(f64::total_cmp);
        println!(
            "changes: event → commit median {}, max {}; agent event_to_enforced median {}",
            ms(took[took.len() / 2]),
            ms(took[took.len() - 1]),
            ms(agent_took[agent_took.len() / 2])
        );
    }
    Ok(())
}
