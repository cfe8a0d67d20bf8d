//! Replaying a tutorial on the local cluster: its manifests applied with
//! kubectl, a wait until both agents enforce the new state (converge.rs),
//! then every flow the step tells of probed with real packets in both
//! families, from the pods' own network namespaces.
//!
//! A blocked flow must fail as a dropped first packet fails (a timeout),
//! not as "refused" (nothing listening would prove nothing). Helpers here
//! only: tests/cluster_support is shared with other test binaries.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nftpolicy_cluster::probe::{self, Family, Target};
use nftpolicy_lab::Proto;

use crate::cluster_support::Cluster;
use crate::converge::converge;

/// How long a pod may take to get its network.
pub const POD_UP: Duration = Duration::from_secs(30);
/// One request's timeout: a dropped SYN or datagram waits this long.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long an allowed flow may keep failing (a loaded machine) before the
/// fact counts as wrong.
const ALLOW_DEADLINE: Duration = Duration::from_secs(10);
/// How long a blocked flow may keep connecting. The agents already enforce
/// the step when probes start, so this is only a margin; any connection
/// seen is reported on stderr.
const BLOCK_DEADLINE: Duration = Duration::from_secs(4);

/// One flow a tutorial tells of: a request from a pod to a pod, which must
/// connect (`want`) or not, in IPv4 and in IPv6.
#[derive(Debug, Clone)]
pub struct Fact {
    /// The client pod, `namespace/name`.
    pub from: String,
    /// The server pod, `namespace/name`.
    pub to: String,
    /// `80`, `53/udp`.
    pub port: String,
    /// Connects?
    pub want: bool,
    /// What the tutorial calls it.
    pub what: String,
}

/// `from` reaches `to` on `port` (`80`, `53/udp`).
pub fn allowed(from: &str, to: &str, port: &str, what: &str) -> Fact {
    Fact {
        from: from.to_owned(),
        to: to.to_owned(),
        port: port.to_owned(),
        want: true,
        what: what.to_owned(),
    }
}

/// `from` does not reach `to` on `port`: the first packet is dropped.
pub fn blocked(from: &str, to: &str, port: &str, what: &str) -> Fact {
    Fact {
        want: false,
        ..allowed(from, to, port, what)
    }
}

/// One tutorial being replayed.
pub struct Replay<'c> {
    /// The cluster.
    pub c: &'c Cluster,
    /// Directory of its manifests under tests/data/cluster/seeds/.
    dir: &'static str,
    /// Its name in messages.
    name: &'static str,
    steps: usize,
    probes: usize,
    started: Instant,
}

impl<'c> Replay<'c> {
    /// Starts replaying tutorial `name`, whose manifests are in
    /// `tests/data/cluster/seeds/<dir>/`.
    pub fn new(c: &'c Cluster, dir: &'static str, name: &'static str) -> Self {
        eprintln!("== {name}");
        Self {
            c,
            dir,
            name,
            steps: 0,
            probes: 0,
            started: Instant::now(),
        }
    }

    /// The path of one of the tutorial's manifests.
    pub fn path(&self, file: &str) -> String {
        let p = data_dir().join(self.dir).join(file);
        assert!(p.is_file(), "{}: no manifest {}", self.name, p.display());
        p.to_string_lossy().into_owned()
    }

    /// `kubectl ARGS`, which must succeed.
    pub fn k(&self, args: &[&str]) -> String {
        self.c.k(args)
    }

    /// `kubectl apply -f <manifest>`.
    pub fn apply(&self, file: &str) {
        self.c.k(&["apply", "-f", &self.path(file)]);
    }

    /// `kubectl create -f <manifest>`.
    pub fn create(&self, file: &str) {
        self.c.k(&["create", "-f", &self.path(file)]);
    }

    /// `kubectl create -f <manifest>`, which the API (or kubectl) must
    /// refuse; the error text.
    pub fn create_refused(&self, file: &str) -> String {
        let out = self.c.kubectl(&["create", "-f", &self.path(file)]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "{}: kubectl create -f {file} must be refused, but: {said}",
            self.name
        );
        eprintln!(
            "{}: kubectl create -f {file} refused: {}",
            self.name,
            said.trim()
        );
        said
    }

    /// `kubectl delete KIND NAME -n NAMESPACE`.
    pub fn delete(&self, namespace: &str, kind: &str, name: &str) {
        self.c.k(&["delete", "-n", namespace, kind, name]);
    }

    /// Waits until `pods` of `namespace` run with their network.
    pub fn running(&self, namespace: &str, pods: &[&str]) {
        self.c.wait_running(namespace, pods, POD_UP);
    }

    /// One step of the tutorial: `change` (kubectl), a wait until both
    /// agents enforce the cluster's new state, then every fact in both
    /// families. A failed fact names the tutorial, the step and the flow.
    pub fn step(&mut self, title: &str, change: impl FnOnce(&Self), facts: &[Fact]) {
        self.steps += 1;
        let label = format!("{}, step {} ({title})", self.name, self.steps);
        let t0 = Instant::now();
        change(self);
        converge(self.c, &label);
        let t1 = Instant::now();
        self.check(&label, facts);
        eprintln!(
            "{label}: enforced after {:?}, {} probes in {:?}",
            t1 - t0,
            facts.len() * 2,
            t1.elapsed()
        );
    }

    /// Probes `facts` (both families, in parallel) and fails with every
    /// wrong one.
    pub fn check(&mut self, label: &str, facts: &[Fact]) {
        let dir = self.c.place.dir.clone();
        let failures: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = facts
                .iter()
                .flat_map(|f| [Family::V4, Family::V6].map(|fam| (f, fam)))
                .map(|(f, fam)| {
                    let dir = &dir;
                    s.spawn(move || probe_fact(dir, f, fam).map_err(|e| (f, fam, e)))
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("probe thread").err())
                .map(|(f, fam, e)| {
                    format!(
                        "  {}: {} -> {}:{} ({}) should {}: {e}",
                        f.what,
                        f.from,
                        f.to,
                        f.port,
                        family_name(fam),
                        if f.want { "connect" } else { "be dropped" },
                    )
                })
                .collect()
        });
        self.probes += facts.len() * 2;
        assert!(
            failures.is_empty(),
            "{label}: {} of {} probes wrong:\n{}",
            failures.len(),
            facts.len() * 2,
            failures.join("\n")
        );
    }

    /// The end of the replay: how many steps and probes, and how long.
    pub fn done(self) -> (usize, usize) {
        eprintln!(
            "== {}: {} steps, {} probes, {:?}",
            self.name,
            self.steps,
            self.probes,
            self.started.elapsed()
        );
        (self.steps, self.probes)
    }
}

/// tests/data/cluster/seeds.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/cluster/seeds")
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

/// `80` -> TCP 80, `53/udp` -> UDP 53.
fn parse_port(port: &str) -> (Proto, u16) {
    let (n, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => panic!("protocol {other:?} cannot be probed"),
    };
    (proto, n.parse().expect("a port number"))
}

/// A request that failed the way a dropped first packet fails: the SYN or
/// the datagram got no answer before the timeout (not refused: nothing
/// would listen there, and not a missing pod network).
fn dropped(err: &str) -> bool {
    let e = err.to_ascii_lowercase();
    e.contains("timed out") || e.contains("os error 11") || e.contains("would block")
}

/// Probes one fact in one family until it holds or its deadline passes.
fn probe_fact(dir: &std::path::Path, f: &Fact, fam: Family) -> Result<(), String> {
    let (ns, name) = f.from.split_once('/').expect("from is namespace/pod");
    let target: Target = f.to.parse().expect("to is namespace/pod");
    let answerer = f.to.split_once('/').map_or(f.to.as_str(), |(_, n)| n);
    let port = parse_port(&f.port);
    let give_up = Instant::now()
        + if f.want {
            ALLOW_DEADLINE
        } else {
            BLOCK_DEADLINE
        };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let got = probe::request(dir, (ns, name), &target, port, fam, PROBE_TIMEOUT)
            .map_err(|e| e.to_string());
        let last = match (f.want, got) {
            (true, Ok(who)) if who == answerer => return Ok(()),
            (true, Ok(who)) => return Err(format!("answered by {who:?}, not {answerer:?}")),
            (false, Err(e)) if dropped(&e) => {
                if attempts > 1 {
                    eprintln!(
                        "warning: {}: {} -> {}:{} ({}) connected {} time(s) before it was dropped",
                        f.what,
                        f.from,
                        f.to,
                        f.port,
                        family_name(fam),
                        attempts - 1
                    );
                }
                return Ok(());
            }
            (false, Err(e)) => return Err(format!("failed, but not as a drop does: {e}")),
            (true, Err(e)) => e,
            (false, Ok(who)) => format!("{who} answered"),
        };
        if Instant::now() >= give_up {
            return Err(format!("{last} ({attempts} attempts)"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The packets counted by the counted drops of `chain` on node `n`: its
/// final `counter ... drop`, and a rate-limited logging drop before it if
/// the agent logs drops (each counts the packets it dropped).
pub fn drop_counter(c: &Cluster, n: u8, chain: &str) -> u64 {
    let table = c.nft(n);
    let start = table
        .find(&format!("\tchain {chain} {{"))
        .unwrap_or_else(|| panic!("node{n} has no chain {chain}:\n{table}"));
    let body = &table[start..];
    let body = &body[..body.find("\n\t}").unwrap_or(body.len())];
    let counts: Vec<u64> = body
        .lines()
        .filter(|l| l.contains(" drop"))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.windows(2).position(|w| w == ["counter", "packets"])?;
            words.get(i + 2)?.parse().ok()
        })
        .collect();
    assert!(!counts.is_empty(), "no counted drop in {chain}:\n{body}");
    counts.iter().sum()
}

/// The elements of dispatch map `map` on node `n`, as printed.
pub fn map_text(c: &Cluster, n: u8, map: &str) -> String {
    let table = c.nft(n);
    let start = table
        .find(&format!("\tmap {map} {{"))
        .unwrap_or_else(|| panic!("node{n} has no map {map}:\n{table}"));
    let body = &table[start..];
    body[..body.find("\n\t}").unwrap_or(body.len())].to_owned()
}

/// The addresses (IPv4, IPv6) of pod `ns/name`.
pub fn pod_ips(c: &Cluster, ns: &str, name: &str) -> Vec<std::net::IpAddr> {
    nftpolicy_cluster::state::find(&c.place.dir, ns, name)
        .unwrap_or_else(|| panic!("pod {ns}/{name} has no network"))
        .ips
}
