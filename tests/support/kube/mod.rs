//! A Kubernetes API test server: the slice of kube-apiserver this operator uses, over real HTTP,
//! so the real `kube::Client` and `kube::runtime` run against it. It is judged against exchanges
//! recorded from a real kube-apiserver v1.36 (`tests/data/kube-api/transcripts.json`, replayed by
//! `tests/kube_api_server.rs`).
//!
//! # What it implements
//! - Resources: any namespaced or cluster-scoped type by group/version/plural, registered from a
//!   CRD (`POST .../customresourcedefinitions` or [`KubeApiServer::register_crd`]); built in: core
//!   `v1` Namespaces, Secrets (`stringData` folded into base64 `data`), ConfigMaps, Events;
//!   `events.k8s.io/v1` Events (required fields validated); `coordination.k8s.io/v1` Leases.
//!   `/version`, group-version discovery (`APIResourceList`).
//! - Verbs: create (uid, creationTimestamp, resourceVersion, generation=1, `generateName`,
//!   `409 AlreadyExists`, `dryRun=All` stores nothing), get (`404 NotFound` Status), list
//!   (namespaced and all namespaces, label selectors with `=`, `!=`, `in`, `notin`, exists,
//!   `!`; field selectors on `metadata.name`/`metadata.namespace`; `limit`/`continue`, list
//!   resourceVersion), update (PUT), patch (merge, JSON, apply, strategic for built-ins), delete.
//! - Watch: newline-delimited JSON from a resourceVersion (history replay), or synthetic `ADDED`
//!   for everything first (no resourceVersion, `0`, or `sendInitialEvents=true`, which ends its
//!   burst with the `k8s.io/initial-events-end` BOOKMARK); `allowWatchBookmarks` BOOKMARKs 2 s
//!   before `timeoutSeconds` runs out and then every minute (as the watch cache does); a resourceVersion older than the history is one `ERROR` event carrying
//!   a `410 Expired` Status; a non-numeric one is `500`; `timeoutSeconds` ends the stream.
//! - Writes: a stale `metadata.resourceVersion` in a PUT or merge patch is `409 Conflict`;
//!   `/status` changes only `.status`, the main endpoint ignores `.status` (for types with the
//!   status subresource); `generation` moves only on changes outside metadata and status, and on
//!   deletion; a write that changes nothing keeps the resourceVersion and sends no event.
//! - Finalizers: DELETE with finalizers sets `deletionTimestamp`, `deletionGracePeriodSeconds: 0`
//!   and `generation+1` (MODIFIED); no finalizer may be added then (`422`); removing the last one
//!   deletes the object (DELETED, no MODIFIED). DELETE without finalizers answers a `Success` Status.
//! - CRDs: stored objects (get, list, watch, delete). Deleting one is as on the real server:
//!   `deletionTimestamp`, the `customresourcecleanup.apiextensions.k8s.io` finalizer and a
//!   `Terminating` condition (`InstanceDeletionPending` in the DELETE's answer, then
//!   `InstanceDeletionInProgress`); every instance deleted (instances with finalizers stay until
//!   released); creating instances meanwhile is `403 Forbidden`; the generation does not move; the CRD and its types are gone with the
//!   last instance (synchronously here, asynchronously on the real server).
//! - Metadata: empty `finalizers`, `ownerReferences`, `labels` and `annotations` are dropped on
//!   every write, as the real server's `ObjectMeta` (`omitempty`) does.
//! - Unknown routes: `404` with the plain-text body `404 page not found`, as the real server.
//! - Test hooks: fault injection ([`KubeFaults`]: latency, a fraction of requests failed with
//!   500 / 429 + `Retry-After` / 409, optionally writes only, periodic watch drops, chosen
//!   verb/resource pairs answered 403 Forbidden),
//!   [`KubeApiServer::drop_watches`], [`KubeApiServer::compact`] (forget history: older watches
//!   get 410), request counters by verb and resource.
//!
//! # What it simplifies (deliberate differences)
//! - Admission covers custom resources only ([`admission`]: structural schema, defaults, pruning,
//!   `fieldValidation`, CEL); built-in types get a few hand-written checks (Event required
//!   fields, finalizers on deleting objects), not their full validation. CEL list items are not
//!   correlated with their old versions (no transition rules inside lists), and no CEL cost
//!   budget is enforced (a CRD whose rule the real server estimates over the budget is
//!   admitted here; `the_crds_rules_are_within_the_cel_cost_budget` in tests/ground_truth shows
//!   the project's rules within it on the real server). `set_admission(false)` turns admission off for tests that need an
//!   object the CRD would refuse. No authentication or RBAC (a `forbidden` fault answers 403 as
//!   RBAC would).
//! - Namespaces need not exist before objects are created in them.
//! - Server-side apply is field-level but simplified: lists are atomic (no `k:` keys, so a
//!   conflict names the whole list) except `metadata.finalizers`, a set whose elements are owned
//!   one by one (`v:` keys) and merged in structured-merge-diff's order, the applied metadata is limited to labels, annotations,
//!   finalizers and ownerReferences, and managedFields entries carry the same `time`.
//! - Updates take ownership of the leaf fields whose values they change; managedFields content
//!   otherwise differs in detail from the real server's (only its effects are compared).
//! - Strategic merge patch is accepted for the built-in types only and applied as a merge patch
//!   (no list merge keys); custom resources answer `415`, as the real server does.
//! - Watch history keeps the last 100,000 events; resourceVersions are one global counter
//!   starting at 1000 (so resourceVersion 1 is always too old).
//! - A `429`/`500` fault is answered before the request touches the store.

pub mod admission;
mod http;
pub mod patch;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use http::Shared;
pub use http::{Access, KubeFaults};
pub use store::Store;

/// The first resourceVersion handed out.
pub const FIRST_RESOURCE_VERSION: u64 = 1000;

/// A running server on an ephemeral loopback port. Dropping it stops it.
pub struct KubeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    dropper: Option<JoinHandle<()>>,
}

impl KubeApiServer {
    pub async fn start() -> Self {
        let (drop_watches, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(FIRST_RESOURCE_VERSION)),
            faults: Mutex::new(KubeFaults::default()),
            counters: Mutex::new(BTreeMap::new()),
            accesses: Mutex::new(BTreeSet::new()),
            drop_watches,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let app = axum::Router::new()
            .fallback(http::serve)
            .with_state(shared.clone());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = signal.await;
                })
                .await;
        });
        Self {
            addr,
            shared,
            shutdown: Some(shutdown),
            task: Some(task),
            dropper: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube::Config` for this server (plain http, no credentials), default namespace `default`.
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url().parse().expect("a valid URL"));
        config.default_namespace = "default".into();
        config
    }

    /// A kubeconfig file's content pointing at this server (for child processes: `KUBECONFIG=`).
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_as("{}")
    }

    /// As `kubeconfig_yaml`, with this `user:` entry (e.g. `{token: operator}`, which the
    /// server records as who made each access).
    pub fn kubeconfig_yaml_as(&self, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\nusers:\n- name: test\n  user: {user}\n",
            url = self.url()
        )
    }

    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("a client for the test server")
    }

    /// Stores a CRD and registers the resource types it defines, with their admission (as
    /// creating it through the API would).
    pub fn register_crd(&self, crd: &Value) {
        self.shared
            .lock()
            .install_crd(crd)
            .expect("a valid CRD whose rules compile");
    }

    /// Turns admission of custom resources off (or back on): for tests that need an object the
    /// CRD would refuse, as one created before a stricter CRD or with admission bypassed.
    pub fn set_admission(&self, on: bool) {
        self.shared.lock().set_admission(on);
    }

    /// Direct access to the store (seed objects, inspect state) without HTTP.
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.shared.lock()
    }

    pub fn set_faults(&mut self, faults: KubeFaults) {
        if let Some(dropper) = self.dropper.take() {
            dropper.abort();
        }
        if let Some(every) = faults.drop_watches_every {
            let shared = self.shared.clone();
            self.dropper = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    shared.drop_watches.send_modify(|n| *n += 1);
                }
            }));
        }
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// Closes every open watch stream now.
    pub fn drop_watches(&self) {
        self.shared.drop_watches.send_modify(|n| *n += 1);
    }

    /// Forgets the watch history (any watch from an older resourceVersion gets 410 Expired).
    pub fn compact(&self) {
        self.shared.lock().compact();
    }

    /// Requests so far, keyed `"<verb> <resource>"` (e.g. `"patch bucketencryptions/status"`).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.shared
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every distinct access so far: (bearer token, API group, namespace or "", resource, verb).
    pub fn accesses(&self) -> BTreeSet<Access> {
        self.shared
            .accesses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests of one verb on one resource (`"bucketencryptions/status"`).
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.counters()
            .get(&format!("{verb} {resource}"))
            .copied()
            .unwrap_or(0)
    }

    /// Writes (create, update, patch, delete) on any resource.
    pub fn writes(&self) -> u64 {
        self.counters()
            .iter()
            .filter(|(k, _)| {
                ["create ", "update ", "patch ", "delete "]
                    .iter()
                    .any(|v| k.starts_with(v))
            })
            .map(|(_, n)| n)
            .sum()
    }

    pub fn reset_counters(&self) {
        self.shared
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.drop_watches();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        if let Some(dropper) = self.dropper.take() {
            dropper.abort();
        }
        self.drop_watches();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
