//! A throw-away lab of Linux network namespaces that looks like a small
//! Flannel-style cluster, plus our own echo servers and prober, for kernel
//! tests and demos of the traffic paths in docs/dataplane.md ("The traffic paths").
//!
//! ```text
//!  ext ── eth0 2001:db8:0:1::2, 192.0.2.2          pods: eth0 10.244.2.h
//!   │                                                     │
//!  ext1                                                 vethN
//!  node1: cni0 10.244.1.1/24 ── vethN ── pods    node2: cni0 10.244.2.1/24
//!         fd00:10:244:1::1/64                           fd00:10:244:2::1/64
//!         to2 10.0.0.1, fd00::1 ─────── wire ─────────── to1 10.0.0.2, fd00::2
//!  (each node: forwarding on, br_netfilter on, DNAT table `kube-proxy-lab`)
//! ```
//!
//! * Every namespace is named `knp<pid>-<lab>-<seq>-<host>` and nothing is
//!   created in the root namespace, so no packet can leave the lab; `Drop`
//!   deletes every namespace (and with it every link) even if a test panics.
//!   [`Lab::new`] also sweeps namespaces left by killed lab processes.
//! * Node `i` owns `10.244.i.0/24` and `fd00:10:244:i::/64` on its `cni0`
//!   bridge (gateway `.1`/`::1`); nodes are wired pairwise, node 1 is the
//!   default gateway of the others and the attachment point of externals.
//!
//! | what | IPv4 | IPv6 |
//! | --- | --- | --- |
//! | node `i` `cni0` gateway | `10.244.i.1/24` | `fd00:10:244:i::1/64` |
//! | pod on node `i`, host number `h` ≥ 2 | `10.244.i.h` | `fd00:10:244:i::h` |
//! | wire `w` = 0, 1, … between two nodes (lower node `.1`) | `10.0.w.0/24` | `fd00:0:0:w::/64` |
//! | external `k` = 1‥4 on node 1 (node `.1`, host `.2`) | `192.0.2.64(k-1)/26` | `2001:db8:0:k::/64` |
//! | service routes on every node (to `cni0`) | `10.96.0.0/12` | `fd00:10:96::/108` |
//!
//! Interfaces: `cni0` (bridge), `vethN` (pod ports), `toJ` (wire to node
//! `J`), `extK` (external `K`) in a node; `eth0` in pods and externals.
//! * [`Lab::serve`] starts TCP and UDP echo servers that answer every request
//!   with the host's name; [`Lab::probe`], [`Lab::request`],
//!   [`Lab::probe_matrix`] and [`Lab::stream`] are the clients.
//!
//! ```no_run
//! use std::time::Duration;
//! use nftpolicy_lab::{Lab, Proto, Stack};
//!
//! # fn main() -> Result<(), nftpolicy_lab::LabError> {
//! let mut lab = Lab::cluster()?;
//! let node1 = lab.node(1)?.clone();
//! let a = lab.add_pod_auto(&node1, "a", Stack::Dual)?;
//! let b = lab.add_pod_auto(&node1, "b", Stack::Dual)?;
//! let _servers = lab.serve(&b, &[(Proto::Tcp, 80), (Proto::Udp, 53)])?;
//! lab.nft_apply(&node1, "table inet t {\n chain f {\n type filter hook forward priority 0; tcp dport 80 drop\n }\n}\n")?;
//! let m = lab.probe_matrix(&[&a], &[&b], &[(Proto::Tcp, 80), (Proto::Udp, 53)], Duration::from_millis(300));
//! println!("{m}"); // `.` connected, `X` blocked
//! # Ok(()) }
//! ```
//!
//! # Kernel notes (learned building this)
//!
//! * IPv6 addresses must be added AFTER the link is up: an address added
//!   (even `nodad`) to a down link answers neighbour solicitations only after
//!   the first NS retransmit, so the first second of IPv6 traffic is lost.
//! * DAD is off (`accept_dad=0` for `all` and `default`, set before any
//!   interface exists in the namespace, plus `nodad` on every address).
//! * `net.bridge.bridge-nf-call-{iptables,ip6tables}` are per network
//!   namespace (they exist in every namespace once `br_netfilter` is loaded,
//!   and default to 1 in a new one); the lab sets and reads them back.
//!   Turning them off makes bridged pod-to-pod traffic skip the inet
//!   `forward` hook entirely.
//! * New namespaces start with forwarding off and `rp_filter=0`
//!   (`net.core.devconf_inherit_init_net=0`); the lab turns forwarding on in
//!   node namespaces only.
//! * nft 1.0.6: `fwd` is a keyword (do not name a chain `fwd`); `priority
//!   dstnat` is rejected on the nat `output` hook (use `-100`); a one-line
//!   `table t { chain c { … } }` is a syntax error: a chain block must be
//!   followed by `;` or a newline (`table t { chain c { … }; }` works).
//!
//! All of it needs root, `ip` (iproute2), `nft` and the kernel modules
//! `veth`, `bridge`, `br_netfilter`, `nf_tables` and `nf_nat`.

pub mod cluster;
pub mod gate;
mod matrix;
pub mod netns;
pub mod ping;
mod probe;
mod serve;
mod stream;
mod topo;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use cluster::{Cluster, ClusterError, Serve};
pub use matrix::{Matrix, Mismatch, ProbeKey};
pub use probe::{request_from, Family, ProbeJob, Proto, MAX_PROBE_THREADS};
pub use serve::{serve_in, Server, SERVER_POLL};
pub use stream::{Stream, UdpFlow, EXCHANGE_TIMEOUT};
pub use topo::{Stack, MAX_EXTERNALS, MAX_NODES, SERVICE_TABLE};

/// Prefix of every namespace a lab creates.
pub const NETNS_PREFIX: &str = "knp";

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Everything that can go wrong while building or using a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// An external command (`ip`, `nft`, `modprobe`) exited non-zero.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The full command line.
        command: String,
        /// How it exited.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, naming the namespace.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The lab cannot be built as asked (bad address, missing kernel feature…).
    #[error("{0}")]
    Setup(String),
    /// A request to an echo server got no reply.
    #[error("probe from {from} to {proto} {to} failed: {reason}")]
    Probe {
        /// Source host name.
        from: String,
        /// Destination address and port.
        to: SocketAddr,
        /// Transport protocol.
        proto: Proto,
        /// Timeout, refusal, …
        reason: String,
    },
}

/// What a lab host is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostKind {
    /// A node namespace (`cni0` bridge, routing, nftables) with its 1-based index.
    Node(u8),
    /// A pod on the node with this index.
    Pod(u8),
    /// A host outside the cluster, routed through node 1.
    External,
}

/// A handle on one namespace of the lab: a node, a pod or an external host.
///
/// Cheap to clone; it stays valid as long as the [`Lab`] that made it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Host {
    name: String,
    netns: String,
    kind: HostKind,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
}

impl Host {
    /// The name servers answer with (`node1`, the pod name, the external name).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The namespace name under `/run/netns` (for `ip netns exec`).
    pub fn netns(&self) -> &str {
        &self.netns
    }
    /// Node, pod or external.
    pub fn kind(&self) -> HostKind {
        self.kind
    }
    /// Primary IPv4 address (a node's is its `cni0` gateway address).
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4
    }
    /// Primary IPv6 address (a node's is its `cni0` gateway address).
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6
    }
    /// Primary address of `family`, if the host has one.
    pub fn ip(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.ipv4.map(IpAddr::V4),
            Family::V6 => self.ipv6.map(IpAddr::V6),
        }
    }
}

/// A lab of namespaces. See the [module docs](self) for the topology.
pub struct Lab {
    base: String,
    seq: usize,
    /// Namespaces created, in creation order (deleted in reverse).
    created: Vec<String>,
    hosts: Vec<Host>,
    /// Every address of every namespace (what servers bind).
    addrs: BTreeMap<String, Vec<IpAddr>>,
    nodes: Vec<topo::NodeState>,
    wires: u8,
    externals: u8,
    /// nft commands that install the lab's services, replayed on new nodes.
    services: Vec<String>,
    servers: Mutex<Vec<Arc<serve::Shared>>>,
}

impl Lab {
    /// An empty lab (no namespaces yet). Fails unless running as root. Also
    /// deletes namespaces left behind by lab processes that died without
    /// running `Drop`.
    pub fn new() -> Result<Lab, LabError> {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid());
        if !matches!(uid, Ok(0)) {
            return Err(LabError::Setup(format!(
                "the namespace lab needs root (uid 0), this process has {uid:?}"
            )));
        }
        netns::sweep_stale(NETNS_PREFIX);
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        Ok(Lab {
            base: format!("{NETNS_PREFIX}{}-{n}", std::process::id()),
            seq: 0,
            created: Vec::new(),
            hosts: Vec::new(),
            addrs: BTreeMap::new(),
            nodes: Vec::new(),
            wires: 0,
            externals: 0,
            services: Vec::new(),
            servers: Mutex::new(Vec::new()),
        })
    }

    /// The usual test cluster: `node1` and `node2` wired together and an
    /// external host `ext` behind node 1. Add pods with [`Lab::add_pod`].
    pub fn cluster() -> Result<Lab, LabError> {
        let mut lab = Lab::new()?;
        lab.add_node()?;
        lab.add_node()?;
        lab.add_external("ext")?;
        Ok(lab)
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Result<&Host, LabError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::Setup(format!("no host named {name:?} in lab {}", self.base)))
    }

    /// Node `index` (1-based).
    pub fn node(&self, index: u8) -> Result<&Host, LabError> {
        self.host(&format!("node{index}"))
    }

    /// Every address configured in `host`'s namespace (all interfaces).
    pub fn addresses(&self, host: &Host) -> &[IpAddr] {
        self.addrs.get(&host.netns).map_or(&[], Vec::as_slice)
    }

    /// Names of the namespaces this lab created (all gone after `Drop`).
    pub fn netns_names(&self) -> &[String] {
        &self.created
    }

    /// Runs `nft args…` inside `host`'s namespace; returns stdout.
    pub fn nft(&self, host: &Host, args: &[&str]) -> Result<String, LabError> {
        netns::exec(&host.netns, "nft", args, None)
    }

    /// Feeds `script` to `nft -f -` inside `host`'s namespace.
    pub fn nft_apply(&self, host: &Host, script: &str) -> Result<String, LabError> {
        netns::exec(&host.netns, "nft", &["-f", "-"], Some(script))
    }

    /// Runs any program inside `host`'s namespace (`ip netns exec`).
    pub fn exec(&self, host: &Host, program: &str, args: &[&str]) -> Result<String, LabError> {
        netns::exec(&host.netns, program, args, None)
    }

    /// Creates a namespace named after `label`, records it for clean-up and
    /// turns IPv6 duplicate address detection off in it.
    fn new_netns(&mut self, label: &str) -> Result<String, LabError> {
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(24)
            .collect();
        let name = format!("{}-{}-{clean}", self.base, self.seq);
        self.seq += 1;
        netns::add(&name)?;
        self.created.push(name.clone());
        netns::sysctl_set(
            &name,
            &[
                ("net.ipv6.conf.all.accept_dad", "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
            ],
        )?;
        Ok(name)
    }

    fn check_new_name(&self, name: &str) -> Result<(), LabError> {
        if name.is_empty() || self.hosts.iter().any(|h| h.name == name) {
            return Err(LabError::Setup(format!(
                "host name {name:?} is empty or already used in lab {}",
                self.base
            )));
        }
        Ok(())
    }

    fn register(&mut self, host: Host, addrs: Vec<IpAddr>) -> Host {
        self.addrs
            .entry(host.netns.clone())
            .or_default()
            .extend(addrs);
        self.hosts.push(host.clone());
        host
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let servers = std::mem::take(&mut *serve::lock(&self.servers));
        serve::shutdown_all(&servers);
        for name in self.created.iter().rev() {
            if let Err(e) = netns::delete(name) {
                // Drop cannot return errors; say it where a test log shows it.
                eprintln!("kube-nftpolicy lab: cleaning up: {e}");
            }
        }
    }
}
