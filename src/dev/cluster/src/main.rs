//! `knp-cluster`: the local test cluster's node runner and prober.
//!
//! ```text
//! knp-cluster node  --name N --netns NS --pod-cidr CIDR... --node-ip IP... --cni-bin DIR --dir DIR --nodes A,B [--api-forward ADDR --api ADDR]
//! knp-cluster probe --dir DIR --from NS/POD --to NS/POD|IP --port N[/tcp|/udp] [--ipv6] [--timeout-ms MS]
//! knp-cluster pods  --dir DIR
//! ```
//!
//! `node` talks to the API with the kubeconfig of `KUBECONFIG`. `probe`
//! exits 0 when the destination answered (and prints its name), 1 when it
//! did not (and prints why).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipnet::IpNet;
use nftpolicy_cluster::node::{self, NodeConfig};
use nftpolicy_cluster::probe::{self, Family, Target};
use nftpolicy_cluster::{forward, state};
use nftpolicy_lab::Proto;

#[derive(Parser)]
#[command(
    name = "knp-cluster",
    about = "kube-nftpolicy's local test cluster: node runner and prober"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node: Node object, lease, pod networks through the CNI plugins, pod status.
    Node {
        /// The Node's name.
        #[arg(long)]
        name: String,
        /// The node's network namespace.
        #[arg(long)]
        netns: String,
        /// A pod CIDR of the node (one per family).
        #[arg(long = "pod-cidr", required = true)]
        pod_cidrs: Vec<IpNet>,
        /// An address of the node (InternalIP).
        #[arg(long = "node-ip", required = true)]
        node_ips: Vec<IpAddr>,
        /// Directory of the CNI plugins.
        #[arg(long)]
        cni_bin: PathBuf,
        /// The cluster's state directory.
        #[arg(long)]
        dir: PathBuf,
        /// Every node of the cluster, comma separated (pods without a node are spread over them).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
        /// Listen here inside the node's namespace and forward to `--api`.
        #[arg(long)]
        api_forward: Option<SocketAddr>,
        /// The API server's address on this host.
        #[arg(long, default_value = "127.0.0.1:6443")]
        api: SocketAddr,
    },
    /// One request from a pod to a pod or address, with real packets.
    Probe {
        /// The cluster's state directory.
        #[arg(long)]
        dir: PathBuf,
        /// The source pod: namespace/name.
        #[arg(long)]
        from: String,
        /// The destination: namespace/name or an address.
        #[arg(long)]
        to: Target,
        /// Destination port and protocol: 80, 80/tcp, 53/udp.
        #[arg(long, value_parser = parse_port)]
        port: (u16, Proto),
        /// Use the pods' IPv6 addresses.
        #[arg(long)]
        ipv6: bool,
        /// Give up after this long.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// The pods with a network, their namespaces and addresses.
    Pods {
        /// The cluster's state directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

fn parse_port(s: &str) -> Result<(u16, Proto), String> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => return Err(format!("unknown protocol {other:?}: tcp or udp")),
    };
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .map(|p| (p, proto))
        .ok_or_else(|| format!("bad port {port:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Node {
            name,
            netns,
            pod_cidrs,
            node_ips,
            cni_bin,
            dir,
            nodes,
            api_forward,
            api,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            if let Some(listen) = api_forward {
                if let Err(e) = forward::start(&netns, listen, api) {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let cfg = NodeConfig {
                name,
                netns,
                pod_cidrs,
                node_ips,
                cni_bin,
                dir,
                nodes,
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(async {
                let client = kube::Client::try_default().await?;
                node::run(client, cfg).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Probe {
            dir,
            from,
            to,
            port,
            ipv6,
            timeout_ms,
        } => {
            let Some((ns, pod)) = from.split_once('/') else {
                eprintln!("error: --from must be namespace/name");
                return ExitCode::from(2);
            };
            let family = if ipv6 { Family::V6 } else { Family::V4 };
            let timeout = Duration::from_millis(timeout_ms);
            match probe::request(&dir, (ns, pod), &to, (port.1, port.0), family, timeout) {
                Ok(who) => {
                    println!("connected: {who} answered");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("blocked: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Pods { dir } => {
            for r in state::all(&dir) {
                let ips: Vec<String> = r.ips.iter().map(ToString::to_string).collect();
                println!(
                    "{}/{}\t{}\t{}\t{}",
                    r.namespace,
                    r.name,
                    r.node,
                    r.netns,
                    ips.join(",")
                );
            }
            ExitCode::SUCCESS
        }
    }
}
