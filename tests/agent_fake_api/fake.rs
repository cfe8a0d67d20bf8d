//! A FAKE Kubernetes API server, in process, on the kube client's service
//! layer (`kube::Client::new` over a `tower::service_fn`). It is not an API
//! server: it keeps Namespaces, Pods, NetworkPolicies and Nodes in memory and
//! speaks just enough of the real wire format for kube-rs watchers:
//!
//! - LIST `/api/v1/pods`, `/api/v1/namespaces`, `/api/v1/nodes`,
//!   `/apis/networking.k8s.io/v1/networkpolicies`: a `*List` with
//!   `metadata.resourceVersion` and items without `kind`/`apiVersion`.
//!   Selectors in the query are ignored (the agent's Node watch asks for
//!   its own Node by name: keep one Node in the fake).
//! - WATCH (`?watch=true&resourceVersion=N`): a streamed body of JSON lines,
//!   `{"type":"ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR","object":...}`,
//!   first the logged events after N, then live ones.
//! - [`FakeApi::expire`]: every open watch gets `ERROR` 410 Gone (reason
//!   `Expired`) and is closed, and watches from older versions are refused
//!   the same way, so the watchers must re-list.
//! - [`FakeApi::hold_list`]: LISTs of a resource wait until released.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::watch;

type Body = UnsyncBoxBody<Bytes, Infallible>;

#[path = "res.rs"]
mod res;
pub use res::Res;

#[derive(Default)]
struct State {
    rv: u64,
    objects: [BTreeMap<(String, String), Value>; 4],
    /// (resourceVersion, resource, event line) since the last compaction.
    log: Vec<(u64, Res, Bytes)>,
    /// A watch from a version below this gets 410 Gone.
    oldest: u64,
    watches: Vec<(Res, UnboundedSender<Bytes>)>,
    lists: [usize; 4],
}

/// The fake API server. Cheap to share (`Arc`).
pub struct FakeApi {
    state: Mutex<State>,
    gates: [watch::Sender<bool>; 4],
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

fn key(obj: &Value) -> (String, String) {
    let m = &obj["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (s(&m["namespace"]), s(&m["name"]))
}

impl FakeApi {
    /// An empty fake with every LIST answered at once.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            gates: [(); 4].map(|_| watch::channel(true).0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// A kube client whose every request this fake answers.
    pub fn client(self: &Arc<Self>) -> kube::Client {
        let fake = self.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.handle(req).await) }
        });
        kube::Client::new(svc, "default")
    }

    /// Makes LISTs of `res` wait until [`FakeApi::release_list`].
    pub fn hold_list(&self, res: Res) {
        self.gates[res as usize].send_replace(false);
    }

    /// Lets LISTs of `res` through.
    pub fn release_list(&self, res: Res) {
        self.gates[res as usize].send_replace(true);
    }

    /// How many LISTs of `res` were answered.
    pub fn lists(&self, res: Res) -> usize {
        self.lock().lists[res as usize]
    }

    /// Creates or replaces an object (by `kind`, namespace, name).
    pub fn apply(&self, mut obj: Value) {
        let res = Res::of_kind(obj["kind"].as_str().expect("kind"));
        obj["apiVersion"] = json!(res.api_version());
        let mut st = self.lock();
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let old = st.objects[res as usize].insert(key(&obj), obj.clone());
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.publish(&mut st, res, event_line(kind, &obj));
    }

    /// Deletes an object; `false` if it was not there.
    pub fn delete(&self, res: Res, namespace: &str, name: &str) -> bool {
        let mut st = self.lock();
        let k = (namespace.to_owned(), name.to_owned());
        let Some(mut obj) = st.objects[res as usize].remove(&k) else {
            return false;
        };
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        self.publish(&mut st, res, event_line("DELETED", &obj));
        true
    }

    /// Sends a BOOKMARK at the current version to every open watch.
    pub fn bookmark(&self) {
        let mut st = self.lock();
        let rv = st.rv.to_string();
        for res in Res::ALL {
            let obj = json!({"kind": res.kind(), "apiVersion": res.api_version(),
                             "metadata": {"resourceVersion": rv}});
            let line = event_line("BOOKMARK", &obj);
            st.watches
                .retain(|(r, tx)| *r != res || tx.send(line.clone()).is_ok());
        }
    }

    /// Compacts history: every open watch gets `ERROR` 410 Gone and is
    /// closed, and no watch can resume from before now: a re-list is needed.
    pub fn expire(&self) {
        let mut st = self.lock();
        st.oldest = st.rv + 1;
        st.log.clear();
        let gone = event_line("ERROR", &gone());
        for (_, tx) in st.watches.drain(..) {
            let _ = tx.send(gone.clone());
        }
    }

    /// Compacts history without closing any watch: a watch can resume
    /// only from the current version (a bookmark's) or later; an older one
    /// gets 410 Gone and must re-list.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.oldest = st.rv;
        st.log.clear();
    }

    /// Closes every open watch without an error (a dropped connection).
    pub fn disconnect(&self) {
        self.lock().watches.clear();
    }

    fn publish(&self, st: &mut State, res: Res, line: Bytes) {
        let rv = st.rv;
        st.log.push((rv, res, line.clone()));
        st.watches
            .retain(|(r, tx)| *r != res || tx.send(line.clone()).is_ok());
    }

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<Body> {
        let path = req.uri().path();
        let Some(res) = Res::ALL.into_iter().find(|r| r.path() == path) else {
            return status(404, "NotFound", &format!("the fake serves no {path}"));
        };
        let query: BTreeMap<&str, &str> = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        if query
            .get("watch")
            .is_some_and(|w| *w == "true" || *w == "1")
        {
            let from: u64 = query
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return self.watch(res, from);
        }
        let mut gate = self.gates[res as usize].subscribe();
        let _ = gate.wait_for(|open| *open).await;
        let mut st = self.lock();
        st.lists[res as usize] += 1;
        let items: Vec<Value> = st.objects[res as usize]
            .values()
            .map(|o| {
                let mut o = o.clone();
                let map = o.as_object_mut().unwrap();
                map.remove("kind");
                map.remove("apiVersion");
                o
            })
            .collect();
        let list = json!({
            "kind": format!("{}List", res.kind()),
            "apiVersion": res.api_version(),
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        });
        full(200, serde_json::to_vec(&list).unwrap())
    }

    fn watch(&self, res: Res, from: u64) -> Response<Body> {
        let (tx, mut rx) = unbounded_channel::<Bytes>();
        let mut st = self.lock();
        if from < st.oldest {
            let _ = tx.send(event_line("ERROR", &gone()));
        } else {
            for (rv, r, line) in &st.log {
                if *r == res && *rv > from {
                    let _ = tx.send(line.clone());
                }
            }
            st.watches.push((res, tx));
        }
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(|b| Ok::<_, Infallible>(Frame::data(b)));
        let body = StreamBody::new(stream);
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(BodyExt::boxed_unsync(body))
            .unwrap()
    }
}

use futures::StreamExt;

fn gone() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "too old resource version", "reason": "Expired", "code": 410})
}

fn full(code: u16, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(BodyExt::boxed_unsync(Full::new(Bytes::from(body))))
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": message, "reason": reason, "code": code});
    full(code, serde_json::to_vec(&s).unwrap())
}
