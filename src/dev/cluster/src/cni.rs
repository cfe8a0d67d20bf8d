//! The real CNI plugins, called as a container runtime calls them: the
//! plugin binary runs in the node's network namespace (its "host" side),
//! with the CNI environment variables and the network configuration on
//! stdin, and prints its result as JSON.
//!
//! The network is what Flannel sets up on a node, without flanneld: the
//! `bridge` plugin (bridge `cni0`, gateway on the bridge, hairpin mode) with
//! `host-local` addresses from the node's pod CIDRs (one range per family),
//! and `loopback` for `lo`. Other nodes' pod CIDRs are reached by routes
//! over the wire between the nodes (host-gw), set up by scripts/cluster.sh.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::Error;

/// The CNI plugins of one node.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Where `bridge`, `host-local` and `loopback` are.
    pub bin: PathBuf,
    /// The node's network namespace, where the plugins run.
    pub node_netns: String,
    /// The node's pod CIDRs (IPv4 and/or IPv6).
    pub pod_cidrs: Vec<IpNet>,
    /// host-local's lease directory.
    pub ipam_dir: PathBuf,
}

/// The name of the network in the configuration (and in host-local's leases).
const NETWORK: &str = "kube-nftpolicy-test";

impl Cni {
    /// The `bridge` configuration of this node.
    fn bridge_conf(&self) -> Value {
        let ranges: Vec<Value> = self
            .pod_cidrs
            .iter()
            .map(|c| json!([{ "subnet": c.to_string() }]))
            .collect();
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": ranges,
                "dataDir": self.ipam_dir,
            },
        })
    }

    /// Sets up `netns` (which must exist): `lo`, then `eth0` on `cni0`.
    /// Returns the pod's addresses, IPv4 first.
    pub fn add(&self, netns: &str, container: &str) -> Result<Vec<IpAddr>, Error> {
        let lo = json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"});
        self.call("loopback", "ADD", netns, container, "lo", &lo)?;
        let result = self.call(
            "bridge",
            "ADD",
            netns,
            container,
            "eth0",
            &self.bridge_conf(),
        )?;
        let mut ips: Vec<IpAddr> = result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str())
            .filter_map(|a| a.parse::<IpNet>().ok())
            .map(|n| n.addr())
            .collect();
        ips.sort_by_key(|ip| ip.is_ipv6());
        if ips.is_empty() {
            return Err(Error::Cni(format!("bridge ADD gave no address: {result}")));
        }
        Ok(ips)
    }

    /// Tears down what `add` set up (and host-local's lease). A namespace
    /// that is gone already is fine: DEL must be idempotent.
    pub fn del(&self, netns: &str, container: &str) -> Result<(), Error> {
        self.call(
            "bridge",
            "DEL",
            netns,
            container,
            "eth0",
            &self.bridge_conf(),
        )?;
        let lo = json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"});
        self.call("loopback", "DEL", netns, container, "lo", &lo)
            .map(drop)
    }

    fn call(
        &self,
        plugin: &str,
        command: &str,
        netns: &str,
        container: &str,
        ifname: &str,
        conf: &Value,
    ) -> Result<Value, Error> {
        let exe = self.bin.join(plugin);
        let netns_path = Path::new(nftpolicy_lab::netns::NETNS_DIR).join(netns);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node_netns])
            .arg(&exe)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", &netns_path)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(&exe, e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(conf.to_string().as_bytes())
                .map_err(|e| Error::io(&exe, e))?;
        }
        let out = child.wait_with_output().map_err(|e| Error::io(&exe, e))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(Error::Cni(format!(
                "{plugin} {command} for {netns}: {} {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout)
            .map_err(|e| Error::Cni(format!("{plugin} {command}: bad result {stdout:?}: {e}")))
    }
}
