//! The watchers: one kube-rs `watcher` per kind, every namespace.
//!
//! Each is LIST, then WATCH from the list's resourceVersion, with bookmarks;
//! `410 Gone` makes the watcher re-list, other watch errors re-watch from
//! the last resourceVersion, after kube-rs's default backoff (0.8 s
//! doubling to 30 s, with jitter), reset only once the API answered (see
//! `answered`). Pods are decoded trimmed (`trim::SlimPod`);
//! namespaces and policies are trimmed in the stream (`modify`); all are
//! handed to [`Stores`].

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::utils::Backoff as _;
use kube::runtime::watcher::Event;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::trim::{self, Convert, SlimPod};
use super::{Kind, Stores};

/// The running watchers; dropping this stops them.
#[derive(Debug)]
pub struct Watchers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the Namespace, Pod and NetworkPolicy watchers on the current
/// tokio runtime, feeding `stores`.
pub fn spawn(client: Client, stores: Arc<Stores>) -> Watchers {
    let tasks = vec![
        tokio::spawn(watch(
            Api::<Namespace>::all(client.clone()),
            Kind::Namespace,
            trim::namespace,
            stores.clone(),
        )),
        tokio::spawn(watch(
            Api::<SlimPod>::all(client.clone()),
            Kind::Pod,
            |_| {}, // trimmed by decoding
            stores.clone(),
        )),
        tokio::spawn(watch(
            Api::<NetworkPolicy>::all(client),
            Kind::NetworkPolicy,
            trim::policy,
            stores,
        )),
    ];
    Watchers { tasks }
}

async fn watch<K>(api: Api<K>, kind: Kind, trim: fn(&mut K), stores: Arc<Stores>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Convert + Send + Sync + 'static,
{
    let stream = watcher(api, watcher::Config::default()).modify(trim);
    let mut stream = std::pin::pin!(stream);
    let mut retry = Retry::default();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                retry.ok(&event);
                stores.handle(kind, event);
            }
            Err(e) => {
                stores.watch_error(kind, classify(&e), &e);
                retry.failed().await;
            }
        }
    }
}

/// The backoff between a watcher's failed attempts (kube-rs's default: 0.8 s
/// doubling to 30 s, with jitter), reset only once the API answered.
#[derive(Default)]
pub(super) struct Retry(watcher::DefaultBackoff);

impl Retry {
    /// An item came: an answer resets the backoff.
    pub(super) fn ok<K>(&mut self, event: &Event<K>) {
        if answered(event) {
            self.0.reset();
        }
    }

    /// An attempt failed: waits before the next.
    pub(super) async fn failed(&mut self) {
        if let Some(delay) = self.0.next() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// Whether `event` shows that the API answered. The watcher yields `Init`
/// before it sends the list request, so `Init` alone proves nothing: kube-rs's
/// `default_backoff()` resets on every `Ok` item, and with it a list that
/// always fails (RBAC without this kind) was retried every 0.8 to 1.2 s
/// forever, one error log line each time, instead of backing off to 30 s.
fn answered<K>(event: &Event<K>) -> bool {
    !matches!(event, Event::Init)
}

/// What kind of watch failure `e` is, for the metric label and the log.
pub(super) fn classify(e: &watcher::Error) -> WatchFailure {
    use watcher::Error as W;
    let status = match e {
        W::InitialListFailed(kube::Error::Api(s))
        | W::WatchStartFailed(kube::Error::Api(s))
        | W::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        W::WatchError(s) => Some(s.code),
        _ => None,
    };
    match status {
        Some(401) => WatchFailure::Unauthorized,
        Some(403) => WatchFailure::Forbidden,
        Some(410) => WatchFailure::Gone,
        _ => WatchFailure::Other,
    }
}

/// Kinds of watch failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFailure {
    /// 401: the agent's credentials are not accepted.
    Unauthorized,
    /// 403: RBAC does not let the agent list or watch this kind.
    Forbidden,
    /// 410: the resource version is too old (compacted); a re-list follows.
    Gone,
    /// Anything else (connection lost, timeouts, 5xx).
    Other,
}

impl WatchFailure {
    /// The `errors_total{kind}` label.
    pub fn metric_label(self) -> &'static str {
        match self {
            WatchFailure::Unauthorized => "unauthorized",
            WatchFailure::Forbidden => "forbidden",
            WatchFailure::Gone => "watch_gone",
            WatchFailure::Other => "watch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn only_an_answer_resets_the_backoff() {
        assert!(
            !answered(&Event::<Pod>::Init),
            "sent before the list request"
        );
        assert!(answered(&Event::<Pod>::InitDone));
        assert!(answered(&Event::Apply(Pod::default())));
    }
}
