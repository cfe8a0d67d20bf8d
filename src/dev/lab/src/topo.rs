//! Building the lab topology: nodes, the wires between them, pods, external
//! hosts and kube-proxy-like service DNAT.
//!
//! The address plan is in the docs of the `lab` module.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{netns, Host, HostKind, Lab, LabError, Proto};

/// Largest number of nodes a lab can hold.
pub const MAX_NODES: u8 = 16;
/// Largest number of external hosts a lab can hold.
pub const MAX_EXTERNALS: u8 = 4;
/// The nftables table (in families `ip` and `ip6`) that plays kube-proxy.
pub const SERVICE_TABLE: &str = "kube-proxy-lab";

/// Which address families a lab-allocated pod gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
    /// Both.
    Dual,
}

pub(super) struct NodeState {
    index: u8,
    netns: String,
    veths: u32,
}

fn pod_v4(node: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, node, host)
}

fn pod_v6(node: u8, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0x244, u16::from(node), 0, 0, 0, host)
}

impl Lab {
    /// Adds node `i` (the next index): its namespace with forwarding and
    /// `br_netfilter` on, the `cni0` bridge, service routes, a wire to every
    /// existing node and the service DNAT rules installed so far.
    pub fn add_node(&mut self) -> Result<Host, LabError> {
        let index = u8::try_from(self.nodes.len() + 1)
            .ok()
            .filter(|i| *i <= MAX_NODES)
            .ok_or_else(|| LabError::Setup(format!("a lab holds at most {MAX_NODES} nodes")))?;
        let name = format!("node{index}");
        self.check_new_name(&name)?;
        let ns = self.new_netns(&name)?;
        netns::sysctl_set(
            &ns,
            &[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
            ],
        )?;
        enable_br_netfilter(&ns)?;
        let (gw4, gw6) = (pod_v4(index, 1), pod_v6(index, 1));
        netns::ip_batch(
            &ns,
            &format!(
                "link set lo up\n\
                 link add cni0 address 02:00:00:00:{index:02x}:01 type bridge forward_delay 0 mcast_snooping 0\n\
                 link set cni0 up\n\
                 addr add {gw4}/24 dev cni0\n\
                 addr add {gw6}/64 dev cni0 nodad\n\
                 route add 10.96.0.0/12 dev cni0\n\
                 route add fd00:10:96::/108 dev cni0\n"
            ),
        )?;
        let host = Host {
            name,
            netns: ns.clone(),
            kind: HostKind::Node(index),
            ipv4: Some(gw4),
            ipv6: Some(gw6),
        };
        let host = self.register(host, vec![gw4.into(), gw6.into()]);
        let peers: Vec<(u8, String)> = self
            .nodes
            .iter()
            .map(|n| (n.index, n.netns.clone()))
            .collect();
        self.nodes.push(NodeState {
            index,
            netns: ns.clone(),
            veths: 0,
        });
        for (peer, peer_ns) in peers {
            self.wire(peer, &peer_ns, index, &ns)?;
        }
        for script in &self.services {
            netns::exec(&ns, "nft", &["-f", "-"], Some(script))?;
        }
        Ok(host)
    }

    /// Links node `a` (lower index) and node `b` with a veth "wire" and
    /// routes each node's pod CIDR over it. Node 1 is the default gateway of
    /// every other node.
    fn wire(&mut self, a: u8, a_ns: &str, b: u8, b_ns: &str) -> Result<(), LabError> {
        let w = self.wires;
        self.wires = w
            .checked_add(1)
            .ok_or_else(|| LabError::Setup("too many wires".into()))?;
        let (a4, b4) = (Ipv4Addr::new(10, 0, w, 1), Ipv4Addr::new(10, 0, w, 2));
        let w6 = u16::from(w);
        let (a6, b6) = (
            Ipv6Addr::new(0xfd00, 0, 0, w6, 0, 0, 0, 1),
            Ipv6Addr::new(0xfd00, 0, 0, w6, 0, 0, 0, 2),
        );
        let (a_if, b_if) = (format!("to{b}"), format!("to{a}"));
        netns::ip(&[
            "-n", a_ns, "link", "add", &a_if, "type", "veth", "peer", "name", &b_if, "netns", b_ns,
        ])?;
        let side = |ifname: &str, me4: Ipv4Addr, me6: Ipv6Addr, peer: u8, via4, via6| {
            format!(
                "link set {ifname} up\n\
                 addr add {me4}/24 dev {ifname}\n\
                 addr add {me6}/64 dev {ifname} nodad\n\
                 route add 10.244.{peer}.0/24 via {via4}\n\
                 route add {}/64 via {via6}\n",
                pod_v6(peer, 0)
            )
        };
        netns::ip_batch(a_ns, &side(&a_if, a4, a6, b, b4, b6))?;
        let mut b_script = side(&b_if, b4, b6, a, a4, a6);
        if a == 1 {
            b_script.push_str(&format!(
                "route add 0.0.0.0/0 via {a4}\nroute add ::/0 via {a6}\n"
            ));
        }
        netns::ip_batch(b_ns, &b_script)?;
        self.addrs
            .entry(a_ns.to_owned())
            .or_default()
            .extend([IpAddr::from(a4), a6.into()]);
        self.addrs
            .entry(b_ns.to_owned())
            .or_default()
            .extend([IpAddr::from(b4), b6.into()]);
        Ok(())
    }

    /// Adds pod `name` on `node` with the given addresses (each must lie in
    /// the node's pod CIDR, host part ≥ 2; at least one family). Its `eth0`
    /// is one end of a veth pair whose other end is a port of the node's
    /// `cni0`; default routes point at the bridge gateway.
    pub fn add_pod(
        &mut self,
        node: &Host,
        name: &str,
        ipv4: Option<Ipv4Addr>,
        ipv6: Option<Ipv6Addr>,
    ) -> Result<Host, LabError> {
        let HostKind::Node(index) = node.kind else {
            return Err(LabError::Setup(format!(
                "add_pod {name}: {} is not a node",
                node.name
            )));
        };
        self.check_new_name(name)?;
        let bad = |what: String| LabError::Setup(format!("add_pod {name} on node{index}: {what}"));
        if ipv4.is_none() && ipv6.is_none() {
            return Err(bad("a pod needs at least one address".into()));
        }
        if let Some(a) = ipv4 {
            let [x, y, n, h] = a.octets();
            if (x, y, n) != (10, 244, index) || h < 2 || h == 255 {
                return Err(bad(format!(
                    "{a} is not a pod address of 10.244.{index}.0/24"
                )));
            }
        }
        if let Some(a) = ipv6 {
            let s = a.segments();
            let host_part = u128::from(a) & u128::from(u64::MAX);
            if s[..4] != pod_v6(index, 0).segments()[..4] || host_part < 2 {
                return Err(bad(format!(
                    "{a} is not a pod address of {}/64",
                    pod_v6(index, 0)
                )));
            }
        }
        let all: Vec<IpAddr> = ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(ipv6.map(IpAddr::V6))
            .collect();
        if let Some(dup) = all
            .iter()
            .find(|a| self.addrs.values().any(|v| v.contains(a)))
        {
            return Err(bad(format!("{dup} is already used in the lab")));
        }
        let node_state = self
            .nodes
            .iter_mut()
            .find(|n| n.index == index && n.netns == node.netns)
            .ok_or_else(|| bad(format!("{} is not a node of this lab", node.netns)))?;
        let node_ns = node_state.netns.clone();
        let veth = format!("veth{}", node_state.veths);
        node_state.veths += 1;

        let ns = self.new_netns(name)?;
        netns::ip(&[
            "-n", &node_ns, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ])?;
        netns::ip_batch(
            &node_ns,
            &format!("link set {veth} master cni0\nlink set {veth} up\n"),
        )?;
        let mut script = String::from("link set lo up\nlink set eth0 up\n");
        if let Some(a) = ipv4 {
            script.push_str(&format!(
                "addr add {a}/24 dev eth0\nroute add 0.0.0.0/0 via {}\n",
                pod_v4(index, 1)
            ));
        }
        if let Some(a) = ipv6 {
            script.push_str(&format!(
                "addr add {a}/64 dev eth0 nodad\nroute add ::/0 via {}\n",
                pod_v6(index, 1)
            ));
        }
        netns::ip_batch(&ns, &script)?;
        let host = Host {
            name: name.to_owned(),
            netns: ns,
            kind: HostKind::Pod(index),
            ipv4,
            ipv6,
        };
        Ok(self.register(host, all))
    }

    /// Adds pod `name` on `node` with the next free host number of the node's
    /// CIDRs (the same number in both families for [`Stack::Dual`]).
    pub fn add_pod_auto(
        &mut self,
        node: &Host,
        name: &str,
        stack: Stack,
    ) -> Result<Host, LabError> {
        let HostKind::Node(index) = node.kind else {
            return Err(LabError::Setup(format!(
                "add_pod_auto {name}: {} is not a node",
                node.name
            )));
        };
        let used = |a: IpAddr| self.addrs.values().any(|v| v.contains(&a));
        let h = (2..=254u8)
            .find(|h| !used(pod_v4(index, *h).into()) && !used(pod_v6(index, u16::from(*h)).into()))
            .ok_or_else(|| LabError::Setup(format!("node{index} has no free pod address")))?;
        let v4 = (stack != Stack::V6).then(|| pod_v4(index, h));
        let v6 = (stack != Stack::V4).then(|| pod_v6(index, u16::from(h)));
        self.add_pod(node, name, v4, v6)
    }

    /// Adds external host `name` (the `k`-th) outside the cluster, linked to
    /// node 1 by its own veth (`extk` on the node, `eth0` on the host) and
    /// routed: its default route is node 1, the other nodes reach it through
    /// node 1.
    pub fn add_external(&mut self, name: &str) -> Result<Host, LabError> {
        self.check_new_name(name)?;
        let node_ns = self
            .nodes
            .first()
            .map(|n| n.netns.clone())
            .ok_or_else(|| LabError::Setup(format!("add_external {name}: add node 1 first")))?;
        let k = self.externals + 1;
        if k > MAX_EXTERNALS {
            return Err(LabError::Setup(format!(
                "a lab holds at most {MAX_EXTERNALS} externals"
            )));
        }
        self.externals = k;
        let base = 64 * (k - 1);
        let (gw4, me4) = (
            Ipv4Addr::new(192, 0, 2, base + 1),
            Ipv4Addr::new(192, 0, 2, base + 2),
        );
        let k6 = u16::from(k);
        let (gw6, me6) = (
            Ipv6Addr::new(0x2001, 0xdb8, 0, k6, 0, 0, 0, 1),
            Ipv6Addr::new(0x2001, 0xdb8, 0, k6, 0, 0, 0, 2),
        );
        let ns = self.new_netns(name)?;
        let node_if = format!("ext{k}");
        netns::ip(&[
            "-n", &node_ns, "link", "add", &node_if, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ])?;
        netns::ip_batch(
            &node_ns,
            &format!("link set {node_if} up\naddr add {gw4}/26 dev {node_if}\naddr add {gw6}/64 dev {node_if} nodad\n"),
        )?;
        netns::ip_batch(
            &ns,
            &format!(
                "link set lo up\nlink set eth0 up\naddr add {me4}/26 dev eth0\naddr add {me6}/64 dev eth0 nodad\n\
                 route add 0.0.0.0/0 via {gw4}\nroute add ::/0 via {gw6}\n"
            ),
        )?;
        self.addrs
            .entry(node_ns)
            .or_default()
            .extend([IpAddr::from(gw4), gw6.into()]);
        let host = Host {
            name: name.to_owned(),
            netns: ns,
            kind: HostKind::External,
            ipv4: Some(me4),
            ipv6: Some(me6),
        };
        Ok(self.register(host, vec![me4.into(), me6.into()]))
    }

    /// Plays kube-proxy: on every node (present and future), DNAT `vip` to
    /// `backend` for `proto`, in table `ip kube-proxy-lab` or
    /// `ip6 kube-proxy-lab` (chains `prerouting` and `output`, nat hooks,
    /// priority dstnat), separate from any table under test.
    pub fn add_service(
        &mut self,
        vip: SocketAddr,
        proto: Proto,
        backend: SocketAddr,
    ) -> Result<(), LabError> {
        let (family, match_) = match (vip.ip(), backend.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => ("ip", "ip"),
            (IpAddr::V6(_), IpAddr::V6(_)) => ("ip6", "ip6"),
            _ => {
                return Err(LabError::Setup(format!(
                    "service {vip} -> {backend}: families differ"
                )))
            }
        };
        let t = format!("{family} {SERVICE_TABLE}");
        let rule = format!(
            "{match_} daddr {} {proto} dport {} dnat to {backend}",
            vip.ip(),
            vip.port()
        );
        let script = format!(
            "add table {t}\n\
             add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
             add chain {t} output {{ type nat hook output priority -100; policy accept; }}\n\
             add rule {t} prerouting {rule}\n\
             add rule {t} output {rule}\n"
        );
        for node in &self.nodes {
            netns::exec(&node.netns, "nft", &["-f", "-"], Some(&script))?;
        }
        self.services.push(script);
        Ok(())
    }
}

/// Turns bridge netfilter on inside `ns` (loading `br_netfilter` if its
/// sysctls are missing) and fails loudly if it cannot.
fn enable_br_netfilter(ns: &str) -> Result<(), LabError> {
    const KEY: &str = "net.bridge.bridge-nf-call-iptables";
    if netns::sysctl_get(ns, KEY)?.is_none() {
        netns::run("modprobe", &["br_netfilter"], None).map_err(|e| {
            LabError::Setup(format!(
                "netns {ns}: /proc/sys/net/bridge is missing and loading br_netfilter failed: {e}"
            ))
        })?;
        if netns::sysctl_get(ns, KEY)?.is_none() {
            return Err(LabError::Setup(format!(
                "netns {ns}: br_netfilter loaded but /proc/sys/net/bridge is still missing"
            )));
        }
    }
    netns::sysctl_set(
        ns,
        &[(KEY, "1"), ("net.bridge.bridge-nf-call-ip6tables", "1")],
    )
}
