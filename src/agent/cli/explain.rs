//! `kube-nftpolicy explain`: whether a flow is allowed, and which
//! policies and rules decide it, from manifest files or (without `-f`) from
//! the cluster's current objects, read-only (`live.rs`). Both go through
//! the same conversion (`nftpolicy_source::api`) and the same `explain`.

use std::path::PathBuf;

use clap::Args;

use nftpolicy_core::model::Protocol;
use nftpolicy_core::resolve::explain::{explain, Endpoint, Explanation, Flow, Side, SideResult};

use super::{code, load, parse_endpoint, parse_port, Output, Sources, EXIT_DENIED, EXIT_ERROR};

/// `explain` arguments.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A manifest file or a directory of *.yaml, *.yml, *.json (repeatable),
    /// as for `render`. Without any, the objects are read from the cluster:
    /// pods, namespaces and networkpolicies are listed (read-only) through
    /// the kubeconfig or the in-cluster service account.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// The kubeconfig for reading the cluster [default: $KUBECONFIG,
    /// ~/.kube/config, then in-cluster].
    #[arg(long, value_name = "PATH", conflicts_with = "files")]
    pub kubeconfig: Option<PathBuf>,
    /// Source: `namespace/pod` or an IP address.
    #[arg(long, value_parser = parse_endpoint)]
    pub from: Endpoint,
    /// Destination: `namespace/pod` or an IP address.
    #[arg(long, value_parser = parse_endpoint)]
    pub to: Endpoint,
    /// Destination port, with an optional protocol: `80`, `53/udp`, `9/sctp`.
    #[arg(long, value_parser = parse_port)]
    pub port: (u16, Protocol),
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `explain`: prints the verdict and its reasons.
pub fn run_explain(args: &ExplainArgs) -> u8 {
    let loaded = if args.files.is_empty() {
        super::live::load(args.kubeconfig.as_deref())
    } else {
        load(&Sources {
            files: args.files.clone(),
        })
    };
    let (snapshot, skipped) = match loaded {
        Ok(l) => l,
        Err(code) => return code,
    };
    let flow = Flow {
        from: args.from.clone(),
        to: args.to.clone(),
        port: args.port.0,
        protocol: args.port.1,
    };
    let e = match explain(&snapshot, &flow) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_ERROR;
        }
    };
    match args.output {
        Output::Json => match serde_json::to_string_pretty(&e) {
            Ok(s) => println!("{s}"),
            Err(err) => {
                eprintln!("error: {err}");
                return EXIT_ERROR;
            }
        },
        Output::Text => print!("{}", explanation_text(&e)),
    }
    if !e.allowed {
        EXIT_DENIED
    } else {
        code(skipped)
    }
}

/// The text form of an explanation.
pub fn explanation_text(e: &Explanation) -> String {
    let mut out = format!(
        "{}: {} -> {} {}/{}\n",
        if e.allowed { "ALLOWED" } else { "DENIED" },
        e.from,
        e.to,
        e.port,
        e.protocol
    );
    for side in [&e.egress, &e.ingress] {
        out.push_str(&side_text(side));
    }
    out
}

fn side_text(side: &Side) -> String {
    let who = side.pod.as_deref().unwrap_or("(not a pod)");
    let mut out = format!("  {} of {who}: ", side.direction);
    let list = |v: &[String]| v.join(", ");
    match side.result {
        SideResult::NotAPod => out.push_str("not a pod, no policy applies\n"),
        SideResult::Ignored => {
            out.push_str(&format!(
                "ignored ({})\n",
                side.note.as_deref().unwrap_or("")
            ));
        }
        SideResult::NotIsolated => out.push_str("not isolated, allowed\n"),
        SideResult::Allowed | SideResult::Denied => {
            let verdict = if side.result == SideResult::Allowed {
                "allowed"
            } else {
                "denied"
            };
            out.push_str(&format!(
                "{verdict}; isolated by {}\n",
                list(&side.isolated_by)
            ));
            if side.allowed_by.is_empty() {
                out.push_str(&format!(
                    "    no rule of these policies allows {}\n",
                    side.direction
                ));
            }
            for r in &side.allowed_by {
                out.push_str(&format!(
                    "    allowed by {} {}[{}]\n",
                    r.policy, side.direction, r.rule
                ));
            }
        }
    }
    out
}
