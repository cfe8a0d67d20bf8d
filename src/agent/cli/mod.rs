//! The command line: argument types (clap) and the offline commands.
//!
//! Exit codes (also in `--help` and README): 0 done; 1 error, nothing done;
//! 2 usage error; 3 done, but some objects were skipped as invalid (each
//! reported on stderr); 5 `explain`: the flow is denied.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use nftpolicy_core::model::{NamespacedName, Protocol, Snapshot};
use nftpolicy_core::resolve::explain::Endpoint;
use nftpolicy_core::resolve::resolve;
use nftpolicy_core::ruleset::build::{build_with, Options};
use nftpolicy_core::ruleset::guard::Gate;
use nftpolicy_core::ruleset::render::render;

mod controller;
mod explain;
mod live;
mod observe;
pub use controller::{run_controller, ControllerArgs, LogFormat};
pub use explain::{explanation_text, run_explain, ExplainArgs};
pub use live::load_live;
pub use observe::{run_observe, stream_events, ObserveArgs, Verdict};

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: error, nothing done.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: done, but invalid objects were skipped.
pub const EXIT_SKIPPED: u8 = 3;
/// Exit code of `explain`: the flow is denied.
pub const EXIT_DENIED: u8 = 5;

const EXIT_CODES: &str = "Exit codes: 0 done; 1 error, nothing done; 2 usage error; \
3 done, but invalid objects were skipped (each reported on stderr); \
5 (explain) the flow is denied.";

/// Kubernetes NetworkPolicy enforcement with one atomic nftables table per node.
#[derive(Debug, Parser)]
#[command(name = "kube-nftpolicy", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the nftables table for the pods of one node.
    #[command(after_help = EXIT_CODES)]
    Render(RenderArgs),
    /// Tell whether a flow is allowed, and which policies and rules decide it.
    #[command(after_help = EXIT_CODES)]
    Explain(ExplainArgs),
    /// Compute the table for one node and load it into the kernel in one
    /// atomic netlink batch (replacing our previous table, nothing else).
    #[command(after_help = EXIT_CODES)]
    Apply(ApplyArgs),
    /// Remove our table `inet kube-nftpolicy`, and nothing else.
    #[command(after_help = EXIT_CODES)]
    Cleanup(CleanupArgs),
    /// Run the node agent (the DaemonSet): watch the API, keep this node's
    /// table in step. Stops on SIGTERM and leaves the table in place.
    Controller(ControllerArgs),
    /// Stream the drop (and allow) events of this node's agent live:
    /// which pods, which port, which policies.
    #[command(after_help = EXIT_CODES)]
    Observe(ObserveArgs),
}

/// `apply` arguments.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifests.
    #[command(flatten)]
    pub sources: Sources,
    /// The node whose pods get chains (`spec.nodeName`).
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Apply inside the network namespace /run/netns/NAME instead of the current one.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Compute and print the table, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The guard the agent adds.
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// `cleanup` arguments.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Remove the table inside /run/netns/NAME instead of the current namespace.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
}

/// Where manifests come from.
#[derive(Debug, Args)]
pub struct Sources {
    /// A manifest file or a directory of *.yaml, *.yml, *.json (repeatable),
    /// as `kubectl get ns,pods,networkpolicies -A -o yaml` prints them.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
}

/// `render` arguments.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Manifests.
    #[command(flatten)]
    pub sources: Sources,
    /// The node whose pods get chains (`spec.nodeName`).
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// The guard the agent adds.
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// The guard before the policies, as the agent builds it (`controller`
/// adds it by default; `render` and `apply` only when asked).
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// Add the gate of unknown pod addresses for these pod CIDRs of the node
    /// (repeat or comma-separate; the agent takes them from its Node).
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub pod_cidr: Vec<ipnet::IpNet>,
    /// The node's own addresses, known to the gate (repeat or comma-separate;
    /// the agent reads its interfaces).
    #[arg(long, value_name = "IP", value_delimiter = ',', requires = "pod_cidr")]
    pub node_addr: Vec<std::net::IpAddr>,
    /// Add the rule that drops flows marked as cut with this conntrack mark
    /// bit (the agent's default: 0x20000000).
    #[arg(long, value_name = "BIT", value_parser = controller::one_bit)]
    pub cut_mark: Option<u32>,
}

impl GuardArgs {
    /// The build options these flags ask for.
    pub fn options(&self) -> Options {
        let gate = (!self.pod_cidr.is_empty()).then(|| Gate {
            pod_cidrs: self.pod_cidr.iter().map(|c| c.trunc()).collect(),
            node_addrs: self.node_addr.clone(),
        });
        Options {
            gate,
            cut_mark: self.cut_mark,
        }
    }
}

/// Output formats of `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}

/// Parses `ns/pod` or an IP address.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    if let Ok(ip) = s.parse() {
        return Ok(Endpoint::Addr(ip));
    }
    match s.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => {
            Ok(Endpoint::Pod(NamespacedName::new(ns, pod)))
        }
        _ => Err(format!("{s:?} is neither namespace/pod nor an IP address")),
    }
}

/// Parses `80`, `80/tcp`, `53/udp`, `9/sctp` (protocol case-insensitive).
pub fn parse_port(s: &str) -> Result<(u16, Protocol), String> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let protocol = Protocol::from_k8s(&proto.to_ascii_uppercase())
        .ok_or_else(|| format!("unknown protocol {proto:?}: use tcp, udp or sctp"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, protocol)),
        _ => Err(format!("port {port:?} must be a number from 1 to 65535")),
    }
}

/// Loads manifests, reporting skipped objects on stderr. `Err` carries the exit code.
pub fn load(sources: &Sources) -> Result<(Snapshot, bool), u8> {
    match nftpolicy_source::files::load(&sources.files) {
        Ok(loaded) => {
            for p in &loaded.problems {
                eprintln!("warning: {p}");
            }
            Ok((loaded.snapshot, !loaded.problems.is_empty()))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(EXIT_ERROR)
        }
    }
}

/// `EXIT_SKIPPED` when objects were skipped, else `EXIT_OK`.
fn code(skipped: bool) -> u8 {
    if skipped {
        EXIT_SKIPPED
    } else {
        EXIT_OK
    }
}

/// `render`: prints the table for `--node`.
pub fn run_render(args: &RenderArgs) -> u8 {
    let (snapshot, skipped) = match load(&args.sources) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let ruleset = build_with(&resolve(&snapshot, &args.node), &args.guard.options());
    print!("{}", render(&ruleset));
    code(skipped)
}

/// `apply`: one atomic batch into the kernel (or print it with `--dry-run`).
pub fn run_apply(args: &ApplyArgs) -> u8 {
    use nftpolicy_nft::{Dataplane, NetlinkDataplane};
    let (snapshot, skipped) = match load(&args.sources) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let ruleset = build_with(&resolve(&snapshot, &args.node), &args.guard.options());
    if args.dry_run {
        print!("{}", render(&ruleset));
        return code(skipped);
    }
    let result = NetlinkDataplane::new(args.netns.as_deref()).and_then(|mut dp| dp.apply(&ruleset));
    match result {
        Ok(report) => {
            eprintln!(
                "applied: {:?}, {} messages, {} bytes, {:?}",
                report.kind, report.messages, report.bytes, report.duration
            );
            code(skipped)
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERROR
        }
    }
}

/// `cleanup`: deletes our table only.
pub fn run_cleanup(args: &CleanupArgs) -> u8 {
    match nftpolicy_nft::cleanup(args.netns.as_deref()) {
        Ok(true) => {
            eprintln!("removed table inet kube-nftpolicy");
            EXIT_OK
        }
        Ok(false) => {
            eprintln!("table inet kube-nftpolicy was not there");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERROR
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    ExitCode::from(match &cli.command {
        Command::Render(a) => run_render(a),
        Command::Explain(a) => run_explain(a),
        Command::Apply(a) => run_apply(a),
        Command::Cleanup(a) => run_cleanup(a),
        Command::Controller(a) => run_controller(a),
        Command::Observe(a) => run_observe(a),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_port_table() {
        let cases = [
            ("80", Ok((80, Protocol::Tcp))),
            ("53/udp", Ok((53, Protocol::Udp))),
            ("9/SCTP", Ok((9, Protocol::Sctp))),
            ("0", Err(())),
            ("65536", Err(())),
            ("80/icmp", Err(())),
            ("http", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_port(input).map_err(|_| ()), want, "case: {input}");
        }
    }

    #[test]
    fn parse_endpoint_table() {
        let cases = [
            ("x/a", Ok(Endpoint::Pod(NamespacedName::new("x", "a")))),
            ("10.0.0.1", Ok(Endpoint::Addr("10.0.0.1".parse().unwrap()))),
            ("fd00::1", Ok(Endpoint::Addr("fd00::1".parse().unwrap()))),
            ("x", Err(())),
            ("x/a/b", Err(())),
            ("/a", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_endpoint(input).map_err(|_| ()), want, "case: {input}");
        }
    }
}
