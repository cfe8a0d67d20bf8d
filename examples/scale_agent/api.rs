//! A fake Kubernetes API over real HTTP/1.1 on 127.0.0.1, for the real
//! agent binary (`kube-nftpolicy controller`, given a kubeconfig whose
//! server is `http://127.0.0.1:<port>`).
//!
//! `tests/agent_fake_api/fake.rs` answers on the kube client's service
//! layer inside the test process, so another process cannot reach it, and
//! it serves every LIST whole. This one speaks the same wire format over a
//! socket, with what a large cluster needs:
//!
//! - LIST with `limit` and `continue` (kube-rs watchers ask for pages of
//!   500, as client-go does): `metadata.continue` is the key of the last
//!   item served; the list's `resourceVersion` is the current one.
//! - WATCH (`watch=1`): a chunked body of JSON lines, first the logged
//!   events after `resourceVersion`, then live ones, until
//!   `timeoutSeconds` or [`FakeApi::stop`]. No bookmarks, no 410.
//! - Objects are serialized once, when stored; a page is their bytes
//!   joined. Selectors are ignored (keep one Node: the agent's).
//! - [`ListStats`]: when the first LIST of a kind came and when its last
//!   page went out, to time the agent's listing from outside.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::watch;

// Shared with the tests' fake API; `of_kind` is theirs alone.
#[allow(dead_code)]
#[path = "../../tests/agent_fake_api/res.rs"]
mod res;
pub use res::Res;

/// How the agent listed one resource.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListStats {
    /// The first LIST request.
    pub first: Option<SystemTime>,
    /// When the last page (no `continue`) of the latest LIST was written.
    pub done: Option<SystemTime>,
    /// Pages served.
    pub pages: usize,
    /// Bytes served in pages.
    pub bytes: usize,
}

type Key = (String, String);

/// Objects of one resource: serialized JSON without `kind`/`apiVersion`.
#[derive(Default)]
pub struct Store(BTreeMap<Key, Vec<u8>>);

impl Store {
    /// Stores `obj` with `resourceVersion` `rv`.
    pub fn insert(&mut self, obj: Value, rv: u64) -> Option<Vec<u8>> {
        let (k, v) = stored(obj, rv);
        self.0.insert(k, v)
    }

    /// A list page of at most `limit` objects after `after`, and the
    /// `continue` token of the next page.
    pub fn page(&self, res: Res, rv: u64, limit: usize, after: Option<&Key>) -> Vec<u8> {
        let range = match after {
            Some(k) => self
                .0
                .range::<Key, _>((Bound::Excluded(k), Bound::Unbounded)),
            None => self.0.range::<Key, _>(..),
        };
        let mut items = range;
        let mut body = format!(
            r#"{{"kind":"{}List","apiVersion":"{}","metadata":{{"resourceVersion":"{rv}""#,
            res.kind(),
            res.api_version()
        )
        .into_bytes();
        let mut objects = Vec::new();
        let mut last = None;
        for (k, v) in items.by_ref().take(limit.max(1)) {
            objects.push(v);
            last = Some(k);
        }
        if let (Some(k), Some(_)) = (last, items.next()) {
            body.extend(format!(r#","continue":"{}~{}""#, k.0, k.1).bytes());
        }
        body.extend(br#"},"items":["#);
        for (i, o) in objects.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(o);
        }
        body.extend(b"]}");
        body
    }

    /// Every page of a LIST with `limit`, as the agent would fetch them.
    pub fn pages(&self, res: Res, limit: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let page = self.page(res, 1, limit, after.as_ref());
            let next = continue_of(&page);
            out.push(page);
            match next {
                Some(k) => after = Some(k),
                None => return out,
            }
        }
    }
}

/// The `continue` token of a page we made, as a key.
fn continue_of(page: &[u8]) -> Option<Key> {
    let head = String::from_utf8_lossy(&page[..page.len().min(512)]).into_owned();
    let start = head.find(r#""continue":""#)? + r#""continue":""#.len();
    let end = head[start..].find('"')? + start;
    token_key(&head[start..end])
}

fn token_key(token: &str) -> Option<Key> {
    let (ns, name) = token.split_once('~')?;
    Some((ns.to_owned(), name.to_owned()))
}

/// Serializes `obj` with `resourceVersion` `rv`; its key.
pub fn stored(mut obj: Value, rv: u64) -> (Key, Vec<u8>) {
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    let m = &obj["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let key = (s(&m["namespace"]), s(&m["name"]));
    (key, serde_json::to_vec(&obj).expect("JSON"))
}

#[derive(Default)]
struct State {
    rv: u64,
    stores: [Store; 4],
    /// (resourceVersion, resource, event line).
    log: Vec<(u64, Res, Vec<u8>)>,
    watches: Vec<(Res, UnboundedSender<Vec<u8>>)>,
    stats: [ListStats; 4],
}

/// The fake API server, on its own thread.
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApi {
    /// Listens on 127.0.0.1 (a free port) and serves on a thread of its own.
    pub fn start() -> std::io::Result<FakeApi> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = watch::channel(false);
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("fake-api".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("listener");
                    let mut stop = stopped.clone();
                    loop {
                        tokio::select! {
                            a = listener.accept() => if let Ok((sock, _)) = a {
                                let _ = sock.set_nodelay(true);
                                tokio::spawn(connection(st.clone(), sock, stopped.clone()));
                            },
                            _ = stop.changed() => break,
                        }
                    }
                });
            })?;
        Ok(FakeApi {
            state,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Stores objects without telling any watch (before the agent starts).
    pub fn load(&self, res: Res, objects: impl IntoIterator<Item = Value>) {
        let mut st = self.lock();
        for o in objects {
            st.rv += 1;
            let rv = st.rv;
            st.stores[res as usize].insert(o, rv);
        }
    }

    /// Creates or replaces an object and sends the event to the watches.
    pub fn apply(&self, res: Res, obj: Value) {
        let mut st = self.lock();
        st.rv += 1;
        let (k, v) = stored(obj, st.rv);
        let old = st.stores[res as usize].0.insert(k, v.clone());
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        publish(&mut st, res, kind, &v);
    }

    /// Deletes an object; `false` if it was not there.
    pub fn delete(&self, res: Res, namespace: &str, name: &str) -> bool {
        let mut st = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        let Some(v) = st.stores[res as usize].0.remove(&key) else {
            return false;
        };
        st.rv += 1;
        publish(&mut st, res, "DELETED", &v);
        true
    }

    /// How the agent has listed `res` so far.
    pub fn stats(&self, res: Res) -> ListStats {
        self.lock().stats[res as usize]
    }

    /// Ends every watch and the server thread.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn publish(st: &mut State, res: Res, kind: &str, obj: &[u8]) {
    // The watched object carries kind and apiVersion, as from a real server.
    let mut line = format!(
        r#"{{"type":"{kind}","object":{{"kind":"{}","apiVersion":"{}","#,
        res.kind(),
        res.api_version()
    )
    .into_bytes();
    line.extend_from_slice(&obj[1..]);
    line.extend(b"}\n");
    st.log.push((st.rv, res, line.clone()));
    st.watches
        .retain(|(r, tx)| *r != res || tx.send(line.clone()).is_ok());
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request: resource, query parameters.
struct Request {
    res: Option<Res>,
    path: String,
    query: BTreeMap<String, String>,
}

fn parse_request(head: &[u8]) -> Option<Request> {
    let head = std::str::from_utf8(head).ok()?;
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let _method = parts.next()?;
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let res = Res::ALL.into_iter().find(|r| r.path() == path);
    Some(Request {
        res,
        path: path.to_owned(),
        query,
    })
}

async fn connection(state: Arc<Mutex<State>>, mut sock: TcpStream, stop: watch::Receiver<bool>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break buf.drain(..pos + 4).collect::<Vec<u8>>();
            }
            if buf.len() > 64 << 10 {
                return;
            }
            let mut tmp = [0u8; 8192];
            let mut stop = stop.clone();
            let n = tokio::select! {
                r = sock.read(&mut tmp) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
                _ = stop.changed() => return,
            };
            buf.extend_from_slice(&tmp[..n]);
        };
        let Some(req) = parse_request(&head) else {
            return;
        };
        let Some(res) = req.res else {
            let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "reason": "NotFound", "code": 404,
                "message": format!("the scale fake serves no {}", req.path)});
            if respond(&mut sock, 404, &serde_json::to_vec(&body).unwrap())
                .await
                .is_err()
            {
                return;
            }
            continue;
        };
        let watching = req
            .query
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1");
        let ok = if watching {
            watch_stream(&state, &mut sock, res, &req, stop.clone()).await
        } else {
            list(&state, &mut sock, res, &req).await
        };
        if ok.is_err() {
            return;
        }
    }
}

async fn respond(sock: &mut TcpStream, code: u16, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        if code == 200 { "OK" } else { "Error" },
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await
}

async fn list(
    state: &Mutex<State>,
    sock: &mut TcpStream,
    res: Res,
    req: &Request,
) -> std::io::Result<()> {
    let limit = req
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let after = req.query.get("continue").and_then(|t| token_key(t));
    let body = {
        let mut st = state.lock().unwrap();
        let now = SystemTime::now();
        let rv = st.rv;
        let body = st.stores[res as usize].page(res, rv, limit, after.as_ref());
        let stats = &mut st.stats[res as usize];
        stats.first.get_or_insert(now);
        stats.pages += 1;
        stats.bytes += body.len();
        body
    };
    let last = continue_of(&body).is_none();
    respond(sock, 200, &body).await?;
    if last {
        state.lock().unwrap().stats[res as usize].done = Some(SystemTime::now());
    }
    Ok(())
}

async fn watch_stream(
    state: &Mutex<State>,
    sock: &mut TcpStream,
    res: Res,
    req: &Request,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let from: u64 = req
        .query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout: u64 = req
        .query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(290);
    let (tx, mut rx) = unbounded_channel::<Vec<u8>>();
    {
        let mut st = state.lock().unwrap();
        for (rv, r, line) in &st.log {
            if *r == res && *rv > from {
                let _ = tx.send(line.clone());
            }
        }
        st.watches.push((res, tx));
    }
    sock.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await?;
    let end = tokio::time::sleep(Duration::from_secs(timeout));
    tokio::pin!(end);
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    sock.write_all(format!("{:x}\r\n", line.len()).as_bytes()).await?;
                    sock.write_all(&line).await?;
                    sock.write_all(b"\r\n").await?;
                }
                None => break,
            },
            _ = &mut end => break,
            _ = stop.changed() => return Err(std::io::ErrorKind::Interrupted.into()),
        }
    }
    sock.write_all(b"0\r\n\r\n").await
}
