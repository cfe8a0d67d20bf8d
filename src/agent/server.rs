//! The health and metrics endpoint: a minimal HTTP/1.1 responder on tokio.
//!
//! `GET /metrics` (Prometheus text format 0.0.4), `GET /healthz` (the sync
//! loop is alive), `GET /readyz` (the first apply succeeded and applies are
//! not failing for long). `HEAD` works too. One request per connection
//! (`Connection: close`); requests larger than 8 KiB or slower than 5 s
//! are dropped. Nothing here can change the agent's state.
//!
//! `GET /events?namespace=..&pod=..&verdict=drop|allow` streams the flow
//! events of drop and allow logging as newline-delimited JSON until the
//! client goes away (`kube-nftpolicy observe` reads it). Each client has a
//! bounded queue (`observe::hub`): one that falls behind by more than that,
//! or does not take a line within 5 s, is disconnected (counted as
//! `errors_total{kind="observe_slow_client"}`); at most 16 clients at once
//! (`503` beyond); only clients on the node itself (loopback) unless the
//! agent runs with `--observe-remote` (`403`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::observe::hub::{Ended, Subscription};
use crate::observe::{Filter, Hub};

const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP response: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Answers `method path` (the pure part of the server).
pub fn respond(method: &str, path: &str, metrics: &Metrics, health: &Health) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "method not allowed\n");
    }
    let path = path.split('?').next().unwrap_or_default();
    let check = |r: Result<(), String>| match r {
        Ok(()) => Response::text(200, "ok\n"),
        Err(e) => Response::text(503, format!("{e}\n")),
    };
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics.encode(),
        },
        "/healthz" | "/livez" => check(health.live()),
        "/readyz" => check(health.ready()),
        _ => Response::text(404, "not found\n"),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves connections from `listener` forever.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    serve_with_events(listener, metrics, health, None).await
}

/// [`serve`], plus `GET /events` from `events` when given.
pub async fn serve_with_events(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    events: Option<Arc<Hub>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let (m, h, ev) = (metrics.clone(), health.clone(), events.clone());
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, peer, &m, &h, ev.as_ref()).await {
                        debug!(%peer, error = %e, "health/metrics connection");
                    }
                });
            }
            Err(e) => {
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    metrics: &Metrics,
    health: &Health,
    events: Option<&Arc<Hub>>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(Some(end));
            }
            if buf.len() > MAX_REQUEST {
                return Ok(None);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request too slow"))?;
    let head: std::io::Result<Option<usize>> = head;
    let Some(end) = head? else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next());
    let response = match (path, parts.next()) {
        (Some(path), Some(v)) if v.starts_with("HTTP/1.") => {
            match (path.split_once('?').unwrap_or((path, "")), method) {
                (("/events", query), "GET") => match subscribe(events, peer, query) {
                    Ok((sub, filter)) => return stream_events(stream, sub, filter, metrics).await,
                    Err(r) => r,
                },
                _ => respond(method, path, metrics, health),
            }
        }
        _ => Response::text(400, "bad request\n"),
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(response.body.as_bytes());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

/// A subscription for `GET /events?<query>`, or the error response.
fn subscribe(
    events: Option<&Arc<Hub>>,
    peer: std::net::SocketAddr,
    query: &str,
) -> Result<(Subscription, Filter), Response> {
    let Some(hub) = events else {
        return Err(Response::text(
            404,
            "no event stream: drop and allow logging are off\n",
        ));
    };
    // Flow events name pods and addresses: by default only a client on
    // the node itself (loopback) may read them.
    if !hub.admits(peer.ip()) {
        return Err(Response::text(
            403,
            "the event stream is served to local clients only (--observe-remote)\n",
        ));
    }
    let filter = Filter::from_query(query).map_err(|e| Response::text(400, format!("{e}\n")))?;
    let sub = hub
        .subscribe()
        .ok_or_else(|| Response::text(503, "too many event stream clients\n"))?;
    Ok((sub, filter))
}

/// Streams events matching `filter` as JSON lines until the client closes,
/// lags behind its queue or stops reading.
async fn stream_events(
    mut stream: TcpStream,
    mut sub: Subscription,
    filter: Filter,
    metrics: &Metrics,
) -> std::io::Result<()> {
    const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
        Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
    let (mut rd, mut wr) = stream.split();
    wr.write_all(HEAD.as_bytes()).await?;
    let mut sink = [0u8; 256];
    loop {
        tokio::select! {
            ev = sub.recv() => {
                let e = match ev {
                    Ok(e) => e,
                    Err(Ended::Lagged(lost)) => {
                        debug!(lost, "event stream client too slow; disconnected");
                        metrics.error("observe_slow_client");
                        return Ok(());
                    }
                    Err(Ended::Closed) => return Ok(()),
                };
                if !filter.matches(&e) {
                    continue;
                }
                let mut line = serde_json::to_string(&*e).unwrap_or_default();
                line.push('\n');
                match tokio::time::timeout(READ_TIMEOUT, wr.write_all(line.as_bytes())).await {
                    Ok(r) => r?,
                    Err(_) => {
                        metrics.error("observe_slow_client");
                        return Ok(());
                    }
                }
            }
            // The client never sends after its request: data or EOF ends it.
            _ = rd.read(&mut sink) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn endpoints() {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
        ));
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, metrics, health.clone()));
        let r = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("ok\n"),
            "{r}"
        );
        let r = get(addr, "GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 503 "),
            "not ready before the first apply: {r}"
        );
        health.apply_ok();
        let r = get(addr, "GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        let r = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            r.contains("version=0.0.4") && r.contains("kube_nftpolicy_sync_duration_seconds"),
            "{r}"
        );
        let r = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.ends_with("\r\n\r\n"), "HEAD has no body: {r}");
        let r = get(addr, "GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        let r = get(addr, "garbage\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    }
}
