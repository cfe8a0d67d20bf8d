//! `kube-nftpolicy controller`: the node agent's arguments and start-up
//! (logging, the tokio runtime, then `sync::controller`).

use clap::{Args, ValueEnum};

use super::{EXIT_ERROR, EXIT_OK};

/// Log formats of `controller`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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
    /// Replace the whole table at least this often, repairing any drift (seconds).
    #[arg(long, value_name = "S", default_value_t = 3600)]
    pub full_replace_secs: u64,
    /// Report unready when applies have failed for this long (seconds).
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub unready_after_secs: u64,
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
    let opts = crate::sync::ControllerOptions {
        sync,
        netns: args.netns.clone(),
        metrics_addr: args.metrics_addr,
        unready_after: Duration::from_secs(args.unready_after_secs),
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
