//! The controller: the only place that knows both Kubernetes and OSS. One reconcile is a list of
//! named steps (`steps`); decisions are pure (`ownership`, `plan`, `status`, `error`,
//! `schedule`, `finalizer::decide`); effects sit at the edges (`connect`, `report`, `finalizer`).
//! This file wires the watchers, caches and controllers, and maps errors to retries.

pub mod audit_worker;
pub mod claims;
pub mod connect;
pub mod context;
pub mod error;
pub mod events;
pub mod finalizer;
pub mod generations;
pub mod grant_controller;
pub mod grants;
pub mod guard;
pub mod judge;
pub mod object_audit;
pub mod ownership;
pub mod plan;
pub mod policy;
pub mod preflight;
pub mod report;
pub mod resync;
pub mod schedule;
pub mod secret_reads;
pub mod shard;
pub mod status;
pub mod steps;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use tokio::sync::mpsc;

use crate::oss::{CredentialsProvider, OssClient};
use crate::telemetry::{Metrics, Probe};
pub use context::{AUDIT_FIELD_MANAGER, AuditSettings, Context, FIELD_MANAGER, Guarded, Settings};
pub use error::Error;
use events::EventRecorder;
pub use schedule::resync_interval;

/// How [`run`] is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Let running reconciles finish (for up to a grace period): SIGTERM, a released lease.
    Graceful,
    /// Stop at once, abandoning running reconciles: the lease was lost, another replica leads.
    Immediate,
}

/// Per-object backoff by the error table; the failure count is reset by a success.
pub fn error_policy(object: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.record_failure(&object.uid().unwrap_or_default());
    let policy = error.policy();
    match error::backoff(policy.retry, failures, fastrand::f64()) {
        Some(delay) => {
            tracing::warn!(error = %error, label = error.metric_label(), failures, ?delay, "reconcile failed");
            Action::requeue(delay)
        }
        None => Action::await_change(),
    }
}

/// What a channel receives, as a stream (for `reconcile_on`: objects to reconcile now).
fn received<T: Send + 'static>(
    receiver: mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|object| (object, receiver))
    })
}

/// Whether `shard` reconciles `object` (by its bucket; unreadable specs on shard 0).
pub fn in_shard(shard: shard::Shard, object: &Guarded) -> bool {
    shard.owns_object(object.0.as_ref().ok().map(|r| r.spec.bucket.as_str()))
}

/// What `/readyz` and the objects gauge read: filled in by [`run`], shared with the HTTP server,
/// which runs for the whole process (also while this instance waits to become leader).
#[derive(Clone, Default)]
pub struct Health {
    /// Watchers that finished their first list.
    synced: Arc<std::sync::atomic::AtomicUsize>,
    /// Watchers started by the running controller (0 while not leading).
    watched: Arc<std::sync::atomic::AtomicUsize>,
    stores: Arc<Mutex<Vec<Store<Guarded>>>>,
    /// Whose objects count: the caches hold other shards' resources too.
    shard: Arc<Mutex<shard::Shard>>,
}

impl Health {
    /// Ready when not reconciling (a standby replica) or once every cache is synced.
    pub fn ready(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let watched = self.watched.load(Relaxed);
        watched == 0 || self.synced.load(Relaxed) >= watched
    }

    /// Objects by Ready status across the caches.
    pub fn ready_counts(&self) -> std::collections::BTreeMap<String, i64> {
        let mut counts = std::collections::BTreeMap::new();
        let shard = *self.shard.lock().unwrap_or_else(|p| p.into_inner());
        for store in self.stores.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for object in store.state().into_iter().filter(|o| in_shard(shard, o)) {
                let status = match &object.0 {
                    Ok(resource) => resource
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                        .map_or("Unknown", |c| c.status.as_str())
                        .to_owned(),
                    Err(_) => "False".to_owned(),
                };
                *counts.entry(status).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The probe for the HTTP server.
    pub fn probe(&self, metrics: Arc<Metrics>) -> Probe {
        let ready = self.clone();
        let counts = self.clone();
        Probe {
            metrics,
            ready: Arc::new(move || ready.ready()),
            objects: Arc::new(move || counts.ready_counts()),
        }
    }
}

/// Builds the controllers (one per watched namespace, or one for all) and runs them until
/// `shutdown` resolves, reporting into `metrics` and `health`.
pub async fn run(
    client: kube::Client,
    oss: OssClient,
    operator_credentials: Option<CredentialsProvider>,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = Shutdown> + Send + 'static,
) {
    let mut config = watcher::Config::default().any_semantic();
    if let Some(selector) = &settings.label_selector {
        config = config.labels(selector);
    }
    let apis: Vec<Api<Guarded>> = if settings.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let caches: Vec<_> = apis.iter().map(|_| reflector::store::<Guarded>()).collect();
    let stores: Vec<Store<Guarded>> = caches.iter().map(|(reader, _)| reader.clone()).collect();
    let recorder = EventRecorder::new(client.clone(), FIELD_MANAGER, settings.instance.clone());
    let concurrency = settings.concurrency;
    let shard = settings.shard;
    let policy_client = settings.policies.then(|| client.clone());
    let ctx = Arc::new(Context::new(
        client,
        oss,
        operator_credentials,
        recorder,
        settings,
        metrics.clone(),
        stores.clone(),
    ));
    // Caches count as synced once every watcher has finished its first list (InitDone). Counted
    // from the event stream: `Store::wait_until_ready` wakes only one waiter, and the controller
    // itself waits on it.
    health.synced.store(0, std::sync::atomic::Ordering::Relaxed);
    health
        .watched
        .store(apis.len(), std::sync::atomic::Ordering::Relaxed);
    *health.stores.lock().unwrap_or_else(|p| p.into_inner()) = stores;
    *health.shard.lock().unwrap_or_else(|p| p.into_inner()) = shard;
    let (senders, receivers): (Vec<_>, Vec<_>) = apis
        .iter()
        .map(|_| mpsc::unbounded_channel::<ObjectRef<Guarded>>())
        .unzip();
    let controllers: Vec<Controller<Guarded>> = apis
        .into_iter()
        .zip(caches)
        .zip(receivers)
        .enumerate()
        .map(|(source, ((api, (reader, writer)), receiver))| {
            let synced = health.synced.clone();
            let mut counted = false;
            let events_ctx = ctx.clone();
            let senders = senders.clone();
            // Only generation changes (spec edits, deletion) and new objects trigger a reconcile:
            // the controller's own status and finalizer writes do not feed back into it, and
            // everything else is caught by the resync interval.
            let triggers = watcher(api, config.clone())
                .default_backoff()
                .modify(trim_cached)
                .reflect(writer)
                .inspect(move |event| {
                    let Ok(event) = event else { return };
                    if !counted && matches!(event, watcher::Event::InitDone) {
                        counted = true;
                        synced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let changes = events_ctx.claims.observe(source, event);
                    events_ctx
                        .metrics
                        .set_not_permitted(events_ctx.claims.not_permitted());
                    for uid in &changes.removed {
                        events_ctx.forget_failures(uid);
                    }
                    if let watcher::Event::Delete(object) = event {
                        events_ctx.resyncs.cancel(&events_ctx.resync_target(object));
                    }
                    for (to, namespace, name) in changes.retrigger {
                        if let Some(sender) = senders.get(to) {
                            let _ = sender.send(ObjectRef::new(&name).within(&namespace));
                        }
                    }
                })
                // Other shards' resources are cached (a spec edit can move one here) but never
                // reconciled here. What a list triggers is queued on the resync timer once the
                // list is in the cache, and handed to the controller a window at a time.
                .filter_map({
                    let mut generations = generations::Generations::default();
                    let mut listed: Vec<resync::Target> = Vec::new();
                    let ctx = ctx.clone();
                    move |event| {
                        std::future::ready(match event {
                            Ok(event) => {
                                let listing = matches!(event, watcher::Event::InitApply(_));
                                let done = matches!(event, watcher::Event::InitDone);
                                let triggered = generations.trigger(event, |o| in_shard(shard, o));
                                if done {
                                    ctx.resyncs.schedule_now(std::mem::take(&mut listed));
                                }
                                match triggered {
                                    Some(object) if listing => {
                                        listed.push(ctx.resync_target(&object));
                                        None
                                    }
                                    other => other.map(Ok),
                                }
                            }
                            Err(error) => Some(Err(error)),
                        })
                    }
                });
            Controller::for_stream(triggers, reader)
                .reconcile_on(received(receiver))
                .with_config(ControllerConfig::default().concurrency(concurrency))
        })
        .collect();
    metrics.set_leader(true);

    let (stop, stopped) = tokio::sync::watch::channel(None::<Shutdown>);
    let started = tokio::time::Instant::now();
    tokio::spawn(async move {
        let how = shutdown.await;
        if how == Shutdown::Graceful {
            // kube-runtime 5.0's Controller does not act on a graceful-shutdown trigger that
            // fires while it is still starting (it then waits until something else wakes it),
            // so a very early signal is passed on once start-up has settled.
            tokio::time::sleep_until(started + STARTUP_SETTLE).await;
        }
        let _ = stop.send(Some(how));
    });
    let mut stopping = stopped.clone();
    let mut runs: Vec<futures_util::future::BoxFuture<'static, ()>> = controllers
        .into_iter()
        .map(|controller| {
            let mut stopped = stopped.clone();
            controller
                .graceful_shutdown_on(async move {
                    let _ = stopped.wait_for(Option::is_some).await;
                })
                .run(steps::reconcile, error_policy, ctx.clone())
                .for_each(|result| async move {
                    if let Err(error) = result {
                        tracing::debug!(%error, "reconcile loop reported an error");
                    }
                })
                .boxed()
        })
        .collect();
    let resync_senders = senders.clone();
    if ctx.settings.tenancy == grants::Tenancy::Grants {
        let mut stopped = stopped.clone();
        let stop = async move {
            let _ = stopped.wait_for(Option::is_some).await;
        };
        runs.push(grant_controller::run(ctx.clone(), senders, stop).boxed());
    }
    if let Some(client) = policy_client {
        runs.push(policies(client, ctx.clone(), stopped.clone()).boxed());
    }
    {
        let mut stopped = stopped.clone();
        let stop = async move {
            let _ = stopped.wait_for(Option::is_some).await;
        };
        runs.push(audit_worker::run(ctx.clone(), stop).boxed());
    }
    {
        let mut stopped = stopped.clone();
        let stop = async move {
            let _ = stopped.wait_for(Option::is_some).await;
        };
        let ctx = ctx.clone();
        runs.push(async move { ctx.resyncs.run(resync_senders, stop).await }.boxed());
    }
    let all = futures_util::future::join_all(runs);
    tokio::pin!(all);
    tokio::select! {
        _ = &mut all => {}
        () = async {
            let how = stopping.wait_for(Option::is_some).await.ok().and_then(|s| *s);
            if how == Some(Shutdown::Immediate) {
                tracing::warn!("stopping at once: running reconciles are abandoned");
            } else {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                tracing::warn!(?SHUTDOWN_GRACE, "reconciles still running after the grace period; stopping anyway");
            }
        } => {}
    }
    metrics.set_leader(false);
    health.watched.store(0, std::sync::atomic::Ordering::Relaxed);
    health.stores.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// Runs the policy controller exactly once across instances: with leader election, while this
/// instance holds the policy Lease (contending again after losing it, until shutdown); without,
/// on shard 0 only.
async fn policies(
    client: kube::Client,
    ctx: Arc<Context>,
    stopped: tokio::sync::watch::Receiver<Option<Shutdown>>,
) {
    let shutdown = {
        let stopped = stopped.clone();
        move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(Option::is_some).await;
            }
        }
    };
    let Some(election) = ctx.settings.policy_election.clone() else {
        if ctx.settings.shard.index() == 0 {
            let stop = shutdown();
            policy_controller(client, ctx, async move {
                stop.await;
                Shutdown::Graceful
            })
            .await;
        } else {
            tracing::info!(shard = %ctx.settings.shard, "policies run on shard 0 (no leader election)");
        }
        return;
    };
    loop {
        let work = |stop: crate::leader::StopSignal| {
            policy_controller(
                client.clone(),
                ctx.clone(),
                async move { Shutdown::from(stop.await) },
            )
        };
        match crate::leader::lead(client.clone(), election.clone(), work, shutdown()).await {
            Ok(crate::leader::Ended::Shutdown) => return,
            Ok(crate::leader::Ended::LeadershipLost) => {
                tracing::warn!(lease = %election.lease, "lost the policy lease; contending again");
            }
            Err(error) => {
                tracing::warn!(%error, lease = %election.lease, "policy lease failed; trying again");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
        if stopped.borrow().is_some() {
            return;
        }
    }
}

/// What the cache keeps of a resource: everything reconcile reads, not managedFields nor
/// annotations (never read here; kubectl's last-applied-configuration alone repeats the whole
/// object), which saves memory on a large fleet.
fn trim_cached(object: &mut Guarded) {
    object.managed_fields_mut().clear();
    object.annotations_mut().clear();
}

/// The claims index policies read: this instance's own when its caches hold every resource of
/// the cluster, else one of their own, fed by a cluster-wide watch of BucketEncryptions (and,
/// with tenancy grants, of the grants: an unpermitted resource claims nothing). The events feed
/// the index and are dropped: no second cache. The future feeds it forever.
fn cluster_claims(
    client: &kube::Client,
    ctx: &Context,
) -> (
    Arc<claims::ClaimsIndex>,
    Option<futures_util::future::BoxFuture<'static, ()>>,
) {
    if ctx.settings.sees_every_resource() {
        return (ctx.claims.clone(), None);
    }
    let index = Arc::new(claims::ClaimsIndex::new(1, ctx.settings.tenancy));
    let resources = {
        let index = index.clone();
        watcher(
            Api::<Guarded>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .for_each(move |event| {
            if let Ok(event) = event {
                index.observe(0, &event);
            }
            std::future::ready(())
        })
    };
    let feed = if ctx.settings.tenancy == grants::Tenancy::Grants {
        let index = index.clone();
        let grants = watcher(
            Api::<grant_controller::GuardedGrant>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .for_each(move |event| {
            if let Ok(event) = event {
                index.observe_grants(&event);
            }
            std::future::ready(())
        });
        futures_util::future::join(resources, grants).map(|_| ()).boxed()
    } else {
        resources.boxed()
    };
    (index, Some(feed))
}

/// The BucketEncryptionPolicy controller: cluster-scoped policies, one pass per generation
/// change or resync, sharing the OSS client, limiter and key checker of `ctx`, until `stop`
/// resolves (an immediate stop abandons a running pass). Not part of readiness: an operator
/// without the policy CRD still serves BucketEncryptions.
async fn policy_controller(
    client: kube::Client,
    ctx: Arc<Context>,
    stop: impl Future<Output = Shutdown> + Send + 'static,
) {
    let (stop_tx, stopped) = tokio::sync::watch::channel(None::<Shutdown>);
    tokio::spawn(async move {
        let _ = stop_tx.send(Some(stop.await));
    });
    let mut graceful = stopped.clone();
    let mut immediate = stopped;
    let (claims, feed) = cluster_claims(&client, &ctx);
    use crate::api::policy::BucketEncryptionPolicy;
    let api: Api<BucketEncryptionPolicy> = Api::all(client);
    let (reader, writer) = reflector::store::<BucketEncryptionPolicy>();
    // When a policy starts or stops taking part in precedence (it broke, was fixed, or went),
    // the others are passed again at once: a broken elder must not silence a junior until its
    // resync.
    let (nudge, nudged) = mpsc::unbounded_channel::<ObjectRef<BucketEncryptionPolicy>>();
    let others = reader.clone();
    let mut claiming: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let triggers = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|object: &mut BucketEncryptionPolicy| object.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |event| {
            let changed = match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    let now = policy::classify::can_claim(p);
                    claiming
                        .insert(p.uid().unwrap_or_default(), now)
                        .is_some_and(|before| before != now)
                }
                Ok(watcher::Event::Delete(p)) => claiming.remove(&p.uid().unwrap_or_default()) == Some(true),
                _ => false,
            };
            if changed {
                for other in others.state() {
                    let _ = nudge.send(ObjectRef::from_obj(other.as_ref()));
                }
            }
        })
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let pctx = Arc::new(policy::PolicyContext {
        secret_namespace: ctx.settings.policy_secret_namespace.clone(),
        ctx,
        claims,
        policies: reader.clone(),
    });
    let run = Controller::for_stream(triggers, reader)
        .reconcile_on(received(nudged))
        .with_config(ControllerConfig::default().concurrency(2))
        .graceful_shutdown_on(async move {
            let _ = graceful.wait_for(Option::is_some).await;
        })
        .run(policy::reconcile, policy::error_policy, pctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "policy loop reported an error");
            }
        });
    let feed = feed.unwrap_or_else(|| futures_util::future::pending().boxed());
    tokio::select! {
        () = run => {}
        () = feed => {}
        _ = immediate.wait_for(|s| *s == Some(Shutdown::Immediate)) => {}
    }
}

/// How long shutdown waits for running reconciles before stopping anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A graceful shutdown requested earlier than this after start is passed on at this point.
const STARTUP_SETTLE: Duration = Duration::from_secs(1);
