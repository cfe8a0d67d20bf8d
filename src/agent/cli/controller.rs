//! `kube-nftpolicy controller`: the node agent's arguments and start-up
//! (logging, the tokio runtime, then `sync::controller`).

use clap::{Args, ValueEnum};

use super::{EXIT_ERROR, EXIT_OK};
use crate::metrics::MAX_DROP_SERIES;
use crate::sync::{GateSource, Guard};
use nftpolicy_core::ruleset::logging::{LogOptions, DEFAULT_GROUP};
use nftpolicy_core::ruleset::{Limit, DEFAULT_BURST};

/// Log formats of `controller`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What happens to established flows a policy change no longer allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Established {
    /// Cut them within a second of the commit (conntrack mark, re-judged).
    Cut,
    /// Keep them until conntrack forgets them.
    Keep,
}

/// A conntrack mark with exactly one bit set (`0x20000000`).
pub(crate) fn one_bit(s: &str) -> Result<u32, String> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
    let v = match hex {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse::<u32>(),
    }
    .map_err(|e| format!("not a 32-bit number: {e}"))?;
    if v.count_ones() == 1 {
        Ok(v)
    } else {
        Err(format!("{v:#x} is not a single bit"))
    }
}

/// `controller` arguments. Logging follows `RUST_LOG` (default `info`).
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// This node's name (`spec.nodeName` of its pods) [default: env NODE_NAME].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Apply inside the network namespace /run/netns/NAME (tests).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9841")]
    pub metrics_addr: std::net::SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Sync once no change came for this long (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub debounce_ms: u64,
    /// Longest wait from a change to its sync, however busy the API (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub max_sync_delay_ms: u64,
    /// Least time between two syncs (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub min_sync_interval_ms: u64,
    /// Sync at least this often, events or not (seconds).
    #[arg(long, value_name = "S", default_value_t = 300)]
    pub resync_secs: u64,
    /// Check the incrementally kept resolution against a full resolve this
    /// often, after a sync (seconds; 0: never).
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub resolve_check_secs: u64,
    /// Resolve every sync from scratch and keep no state between syncs:
    /// less memory in large clusters, more CPU per change.
    #[arg(long)]
    pub full_resolve: bool,
    /// Replace the whole table at least this often, repairing any drift (seconds).
    #[arg(long, value_name = "S", default_value_t = 3600)]
    pub full_replace_secs: u64,
    /// Report unready when applies have failed for this long (seconds).
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub unready_after_secs: u64,
    /// Log dropped packets (NFLOG, read by the agent: logs, metrics,
    /// `observe`), at most this rate per pod and direction (`N/second`,
    /// `/minute`, `/hour`); every drop is still counted.
    #[arg(long, value_name = "RATE", default_value = "10/second")]
    pub log_drops_rate: Limit,
    /// Do not log drops.
    #[arg(long)]
    pub no_log_drops: bool,
    /// Also log allowed new connections, at most this rate per policy rule
    /// (off unless given).
    #[arg(long, value_name = "RATE")]
    pub log_allows_rate: Option<Limit>,
    /// Burst of the log rate limits (packets logged at once before the rate applies).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BURST,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub log_burst: u32,
    /// NFLOG group of the log rules (one listener per node).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_GROUP)]
    pub log_group: u16,
    /// Most (namespace, policy) label pairs of kube_nftpolicy_drops_total;
    /// the rest count as namespace="other",policy="other".
    #[arg(long, value_name = "N", default_value_t = MAX_DROP_SERIES)]
    pub drops_metric_max_series: usize,
    /// Serve the event stream (`GET /events`, `kube-nftpolicy observe`) to
    /// clients on other hosts too; by default only to the node itself.
    #[arg(long)]
    pub observe_remote: bool,
    /// The node's pod CIDRs for the gate of unknown pod addresses, instead
    /// of `spec.podCIDRs` of its Node (repeat or comma-separate).
    #[arg(
        long,
        value_name = "CIDR",
        value_delimiter = ',',
        conflicts_with = "no_gate"
    )]
    pub pod_cidr: Vec<ipnet::IpNet>,
    /// No gate: addresses of the pod CIDRs that no known pod has pass.
    #[arg(long)]
    pub no_gate: bool,
    /// Established flows a policy change no longer allows: cut them, or keep
    /// them until conntrack forgets them.
    #[arg(long, value_enum, default_value_t = Established::Cut)]
    pub established: Established,
    /// The conntrack mark bit of cut flows (one bit; the rest of the mark is
    /// left alone).
    #[arg(long, value_name = "BIT", default_value = "0x20000000", value_parser = one_bit)]
    pub cut_mark: u32,
}

impl ControllerArgs {
    /// The gate and cutting the flags ask for.
    pub fn guard(&self) -> Guard {
        let gate = if self.no_gate {
            GateSource::Off
        } else if self.pod_cidr.is_empty() {
            GateSource::Node
        } else {
            GateSource::Fixed(self.pod_cidr.iter().map(|c| c.trunc()).collect())
        };
        Guard {
            gate,
            cut_mark: (self.established == Established::Cut).then_some(self.cut_mark),
            netns: self.netns.clone(),
        }
    }

    /// The logging the flags ask for.
    pub fn log_options(&self) -> LogOptions {
        LogOptions {
            group: self.log_group,
            drops: (!self.no_log_drops).then(|| self.log_drops_rate.burst(self.log_burst)),
            allows: self.log_allows_rate.map(|l| l.burst(self.log_burst)),
        }
    }
}

/// `controller`: tracing, a tokio runtime, then `sync::controller`.
pub fn run_controller(args: &ControllerArgs) -> u8 {
    use std::time::Duration;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match args.log_format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
    let node = args
        .node_name
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok());
    let Some(node) = node.filter(|n| !n.is_empty()) else {
        eprintln!("error: no node name: pass --node-name or set NODE_NAME");
        return EXIT_ERROR;
    };
    let mut sync = crate::sync::SyncConfig::new(node);
    sync.debounce = Duration::from_millis(args.debounce_ms);
    sync.max_delay = Duration::from_millis(args.max_sync_delay_ms);
    sync.min_interval = Duration::from_millis(args.min_sync_interval_ms);
    sync.resync = Duration::from_secs(args.resync_secs.max(1));
    sync.full_replace = Duration::from_secs(args.full_replace_secs.max(1));
    sync.incremental = !args.full_resolve;
    sync.resolve_check =
        (args.resolve_check_secs > 0).then(|| Duration::from_secs(args.resolve_check_secs));
    sync.log = args.log_options();
    sync.guard = args.guard();
    let opts = crate::sync::ControllerOptions {
        sync,
        netns: args.netns.clone(),
        metrics_addr: args.metrics_addr,
        unready_after: Duration::from_secs(args.unready_after_secs),
        drops_metric_max_series: args.drops_metric_max_series,
        observe_remote: args.observe_remote,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(crate::sync::controller(opts)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            tracing::error!(error = %e, "controller stopped");
            EXIT_ERROR
        }
    }
}
