//! `kube-nftpolicy observe`: the live drop (and allow) events of one
//! node's agent, like `hubble observe`. It reads the agent's `GET /events`
//! stream (newline-delimited JSON, filtered by the agent) on its metrics
//! address and prints each event as a line of text or as its JSON.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{Output, EXIT_ERROR, EXIT_OK};
use crate::observe::{Event, Filter};

/// A verdict to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Verdict {
    /// Dropped packets.
    Drop,
    /// Allowed new connections (when the agent logs them).
    Allow,
}

/// `observe` arguments.
#[derive(Debug, Args)]
pub struct ObserveArgs {
    /// The agent's `--metrics-addr` (on the node: 127.0.0.1:9841).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9841")]
    pub agent: String,
    /// Only events with a pod of this namespace at either end.
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Only events with this pod (`name` or `ns/name`) at either end.
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,
    /// Only drops or only allows.
    #[arg(long, value_enum)]
    pub verdict: Option<Verdict>,
    /// Output format: one line of text per event, or its JSON object.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

impl ObserveArgs {
    /// The filter the flags ask for.
    pub fn filter(&self) -> Filter {
        Filter {
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            verdict: self.verdict.map(|v| match v {
                Verdict::Drop => "drop".to_owned(),
                Verdict::Allow => "allow".to_owned(),
            }),
        }
    }
}

/// `observe`: prints events until `--count` or the agent closes the stream.
pub fn run_observe(args: &ObserveArgs) -> u8 {
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    let result = stream_events(&args.agent, &args.filter(), |e, raw| {
        let line = match args.output {
            Output::Json => raw.to_owned(),
            Output::Text => e.text(),
        };
        // A closed stdout (`| head`) ends the stream.
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return false;
        }
        seen += 1;
        args.count.is_none_or(|n| seen < n)
    });
    match result {
        Ok(()) if args.count.is_none_or(|n| seen >= n) => EXIT_OK,
        Ok(()) => {
            eprintln!("error: the agent closed the stream after {seen} events");
            EXIT_ERROR
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERROR
        }
    }
}

/// Connects to the agent at `addr`, asks for the events `filter` passes,
/// and calls `on_event` with each (and its JSON line) until it returns
/// `false` or the agent closes the stream.
pub fn stream_events(
    addr: &str,
    filter: &Filter,
    mut on_event: impl FnMut(&Event, &str) -> bool,
) -> Result<(), String> {
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("agent address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("agent address {addr} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to the agent at {addr}: {e}"))?;
    let query = filter.to_query();
    let path = if query.is_empty() {
        "/events".to_owned()
    } else {
        format!("/events?{query}")
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/x-ndjson\r\n\r\n"
    )
    .map_err(|e| format!("sending the request: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let code = status
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    // Headers end at the first empty line.
    loop {
        let mut h = String::new();
        let n = reader
            .read_line(&mut h)
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 || h.trim().is_empty() {
            break;
        }
    }
    if code != "200" {
        let mut body = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut body);
        return Err(format!(
            "the agent answered {}: {}",
            status.trim(),
            body.trim()
        ));
    }
    for line in reader.lines() {
        let line = line.map_err(|e| format!("reading the stream: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event =
            serde_json::from_str(&line).map_err(|e| format!("bad event {line:?}: {e}"))?;
        if filter.matches(&event) && !on_event(&event, &line) {
            break;
        }
    }
    Ok(())
}
