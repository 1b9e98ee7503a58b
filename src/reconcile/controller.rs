//! The controller: `kube::runtime::Controller` over BucketEncryption, one reconcile per object:
//! finalizer → validate → conflicts → endpoint → credentials → GET → plan → PUT/DELETE →
//! status (only when changed) → requeue after the resync interval with jitter.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::plan::{self, Action as OssAction};
use super::status::{ConditionState, Reason, Report, next_status, stable_message};
use crate::api::{BucketEncryption, DeletionPolicy, DesiredState, FINALIZER, ManagementPolicy};
use crate::oss::{
    BucketTarget, Classification, Credentials, CredentialsError, CredentialsProvider, EndpointError,
    OssClient, OssError, OssErrorKind,
};
use crate::telemetry::{Metrics, Probe};

/// The field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "oss-encryption-operator";

/// Guarded objects: one that does not deserialise still reaches reconcile (and gets InvalidSpec).
type Guarded = DeserializeGuard<BucketEncryption>;

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    /// Resync interval of objects that do not set one.
    pub resync_interval: Duration,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// The `reportingInstance` of events (pod name).
    pub instance: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            label_selector: None,
            resync_interval: Duration::from_secs(300),
            concurrency: 8,
            instance: "oss-encryption-operator".into(),
        }
    }
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub client: kube::Client,
    pub oss: OssClient,
    /// The operator's own credentials; `None` when absent or forbidden (`--allow-operator-credentials=false`).
    pub operator_credentials: Option<CredentialsProvider>,
    pub recorder: Recorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// Every object the controllers know, for conflict detection.
    stores: Vec<Store<Guarded>>,
    /// Consecutive failures per object (namespace/name), for backoff; cleared on success.
    failures: Mutex<HashMap<String, u32>>,
}

/// Why a reconcile failed; each variant is one step and has a condition reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{0}")]
    CredentialsNotFound(String),
    #[error("{0}")]
    EndpointNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Oss(Box<OssError>),
    #[error("Kubernetes API error: {0}")]
    Kube(Box<kube::Error>),
}

impl From<OssError> for Error {
    fn from(error: OssError) -> Self {
        Self::Oss(Box::new(error))
    }
}

impl From<kube::Error> for Error {
    fn from(error: kube::Error) -> Self {
        Self::Kube(Box::new(error))
    }
}

impl Error {
    /// The condition reason.
    pub fn reason(&self) -> Reason {
        match self {
            Self::InvalidSpec(_) => Reason::InvalidSpec,
            Self::CredentialsNotFound(_) => Reason::CredentialsNotFound,
            Self::EndpointNotAllowed(_) => Reason::EndpointNotAllowed,
            Self::Conflict(_) => Reason::Conflict,
            Self::Kube(_) => Reason::OssError,
            Self::Oss(e) => oss_reason(e),
        }
    }

    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "invalid_spec",
            Self::CredentialsNotFound(_) => "credentials_not_found",
            Self::EndpointNotAllowed(_) => "endpoint_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::Oss(_) => "oss",
            Self::Kube(_) => "kube",
        }
    }

    /// Transient errors leave Ready alone (no flapping on a blip) and retry soon.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Oss(e) => e.classification() != Classification::Terminal,
            Self::Kube(_) => true,
            _ => false,
        }
    }

    fn request_id(&self) -> Option<String> {
        match self {
            Self::Oss(e) => e.request_id().map(str::to_owned),
            _ => None,
        }
    }
}

fn oss_reason(error: &OssError) -> Reason {
    match (&error.kind, error.classification()) {
        (
            OssErrorKind::Credentials(
                CredentialsError::NotFound | CredentialsError::IncompleteEnvironment { .. },
            ),
            _,
        ) => Reason::CredentialsNotFound,
        (OssErrorKind::Endpoint(EndpointError::NotAllowed { .. } | EndpointError::PlainHttp(_)), _) => {
            Reason::EndpointNotAllowed
        }
        (OssErrorKind::Endpoint(_) | OssErrorKind::InvalidRule(_), _) => Reason::InvalidSpec,
        (_, Classification::Throttled) => Reason::Throttled,
        _ if error.is_no_such_bucket() => Reason::BucketNotFound,
        _ if error.status() == Some(403) && error.code() != Some("RequestTimeTooSkewed") => {
            Reason::AccessDenied
        }
        _ => Reason::OssError,
    }
}

/// A reconcile that went through: what to report and when to come back.
struct Outcome {
    report: Report,
    events: Vec<Event>,
    requeue: Duration,
}

fn key(object: &Guarded) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

fn status_api(ctx: &Context, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        namespace,
        &ApiResource::erase::<BucketEncryption>(&()),
    )
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The resync interval with ±10% jitter, so a fleet does not resync in lockstep.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}

/// Reconciles one object, timed and counted in the metrics.
pub async fn reconcile(object: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_object(object, ctx.clone()).await;
    let label = match &result {
        Ok(_) => "ok",
        Err(error) => error.metric_label(),
    };
    ctx.metrics.reconciled(label, started.elapsed());
    result
}

async fn reconcile_object(object: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let resource = match &object.0 {
        Ok(resource) => resource,
        Err(invalid) => {
            // Malformed (admission bypassed): report it, and wait for the spec to change. The
            // stored status is read raw (the typed object cannot be), so an unchanged report
            // writes nothing.
            let name = object.name_any();
            let stored = status_api(&ctx, &namespace).get_opt(&name).await?;
            let current = stored
                .and_then(|o| o.data.get("status").cloned())
                .and_then(|s| serde_json::from_value::<crate::api::BucketEncryptionStatus>(s).ok());
            let message = format!("invalid spec: {}", invalid.error);
            let report = Report::failed(Reason::InvalidSpec, message, None);
            write_status(
                &ctx,
                &namespace,
                &name,
                current.as_ref(),
                invalid.metadata.generation,
                &report,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let name = resource.name_any();
    let span = tracing::info_span!("reconcile", namespace = %namespace, name = %name, bucket = %resource.spec.bucket);
    let _entered = span.enter();

    if resource.meta().deletion_timestamp.is_some() {
        return finalize(resource, &ctx).await;
    }
    ensure_finalizer(resource, &ctx).await?;

    let result = sync(resource, &ctx).await;
    let generation = resource.meta().generation;
    let current = resource.status.as_ref();
    match result {
        Ok(outcome) => {
            ctx.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key(&object));
            write_status(&ctx, &namespace, &name, current, generation, &outcome.report).await?;
            publish(&ctx, resource, &outcome.events).await;
            Ok(Action::requeue(jittered(outcome.requeue)))
        }
        Err(error) => {
            let reason = error.reason();
            let message = error.to_string();
            let mut report = Report::failed(reason, message.clone(), error.request_id());
            report.synced.message = stable_message(current, "Synced", reason, message.clone());
            report.ready = if error.is_transient() {
                keep_ready(current, reason, &message)
            } else {
                ConditionState::new(false, reason, stable_message(current, "Ready", reason, message))
            };
            write_status(&ctx, &namespace, &name, current, generation, &report).await?;
            let event = Event {
                type_: EventType::Warning,
                reason: "ReconcileError".into(),
                note: Some(truncate(&format!("{reason}: {}", without_request_id(&error)))),
                action: "Reconcile".into(),
                secondary: None,
            };
            publish(&ctx, resource, &[event]).await;
            match error {
                // Nothing will change until the spec does.
                Error::InvalidSpec(_) => Ok(Action::await_change()),
                error => Err(error),
            }
        }
    }
}

/// A transient error keeps the Ready condition as it was (so GitOps health does not flap);
/// only an object that has no Ready yet gets one.
fn keep_ready(
    current: Option<&crate::api::BucketEncryptionStatus>,
    reason: Reason,
    message: &str,
) -> ConditionState {
    let existing = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    match existing {
        Some(c) => ConditionState {
            status: c.status == "True",
            reason: Reason::parse(&c.reason).unwrap_or(reason),
            message: c.message.clone(),
        },
        None => ConditionState::new(false, reason, message),
    }
}

/// The error for an event note: without the request id, so repeats fold into one series.
fn without_request_id(error: &Error) -> String {
    match error {
        Error::Oss(e) => match e.service() {
            Some(s) => format!(
                "{} on bucket {:?}: HTTP {} {}: {}",
                e.operation, e.bucket, s.status, s.code, s.message
            ),
            None => format!("{} on bucket {:?}: {}", e.operation, e.bucket, e.kind),
        },
        other => other.to_string(),
    }
}

fn truncate(note: &str) -> String {
    note.chars().take(1000).collect()
}

/// validate → conflicts → endpoint → credentials → GET → plan → PUT/DELETE.
async fn sync(resource: &BucketEncryption, ctx: &Context) -> Result<Outcome, Error> {
    let desired = resource
        .spec
        .validate()
        .map_err(|e| Error::InvalidSpec(e.to_string()))?;
    check_conflicts(resource, &desired, ctx)?;
    let (target, credentials) = connect(resource, &desired, ctx).await?;
    let objects: usize = ctx.stores.iter().map(|s| s.state().len()).sum();
    let requeue = resync_interval(
        desired.resync_interval.unwrap_or(ctx.settings.resync_interval),
        objects,
        ctx.oss.config().qps,
    );

    let observed = ctx.oss.get_encryption(&target, &credentials).await?;
    let decision = plan::plan(
        desired.rule.as_ref(),
        observed.value.as_ref(),
        resource.spec.management_policy,
    );
    let generation = resource.meta().generation;
    let status = resource.status.as_ref();
    let was_in_sync = status.is_some_and(|s| {
        s.observed_generation == generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    });
    let synced = ConditionState::new(true, Reason::ReconcileSuccess, "");
    let mut events = Vec::new();
    let report = match (&decision.action, &decision.drift) {
        (OssAction::Nothing, None) => Report {
            ready: ConditionState::new(
                true,
                Reason::InSync,
                format!("bucket has {}", describe(&desired.rule)),
            ),
            synced,
            observed: Some(observed.value.clone()),
            request_id: Some(observed.request_id.clone()),
            drift_corrected: false,
        },
        (OssAction::Nothing, Some(drift)) => {
            events.push(event(EventType::Warning, "DriftDetected", drift.to_string()));
            Report {
                ready: ConditionState::new(
                    false,
                    Reason::Drifted,
                    format!("{drift} (Observe mode: not corrected)"),
                ),
                synced,
                observed: Some(observed.value.clone()),
                request_id: Some(observed.request_id.clone()),
                drift_corrected: false,
            }
        }
        (action, drift) => {
            let (api, reply) = match action {
                OssAction::Put(rule) => (
                    "PutBucketEncryption",
                    ctx.oss.put_encryption(&target, &credentials, rule).await?,
                ),
                _ => (
                    "DeleteBucketEncryption",
                    ctx.oss.delete_encryption(&target, &credentials).await?,
                ),
            };
            let drift_text = drift.as_ref().map(ToString::to_string).unwrap_or_default();
            let note = format!(
                "{api} {} ({drift_text}; request id {})",
                describe(&desired.rule),
                reply.request_id
            );
            if was_in_sync {
                events.push(event(EventType::Warning, "DriftCorrected", note.clone()));
            } else if matches!(action, OssAction::Delete) {
                events.push(event(EventType::Normal, "Deleted", note.clone()));
            } else {
                events.push(event(EventType::Normal, "Applied", note.clone()));
            }
            Report {
                ready: ConditionState::new(true, Reason::Applied, note),
                synced,
                observed: Some(desired.rule.clone()),
                request_id: Some(reply.request_id),
                drift_corrected: was_in_sync,
            }
        }
    };
    Ok(Outcome {
        report,
        events,
        requeue,
    })
}

fn describe(rule: &Option<crate::oss::EncryptionRule>) -> String {
    rule.as_ref()
        .map_or_else(|| "no rule".to_owned(), ToString::to_string)
}

fn event(type_: EventType, reason: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(&note)),
        action: "Reconcile".into(),
        secondary: None,
    }
}

/// The older of two objects naming the same bucket manages it; the newer reports Conflict.
fn check_conflicts(resource: &BucketEncryption, desired: &DesiredState, ctx: &Context) -> Result<(), Error> {
    let me = (
        resource.meta().creation_timestamp.clone().map(|t| t.0),
        resource.namespace().unwrap_or_default(),
        resource.name_any(),
    );
    let my_uid = resource.meta().uid.clone();
    for store in &ctx.stores {
        for other in store.state() {
            let Ok(other) = &other.0 else { continue };
            // Cheap test first: this runs over the whole cache on every reconcile.
            if other.spec.bucket != desired.bucket
                || other.meta().uid == my_uid
                || other.meta().deletion_timestamp.is_some()
            {
                continue;
            }
            let Ok(theirs) = other.spec.validate() else {
                continue;
            };
            let same_bucket = theirs.bucket == desired.bucket
                && theirs.region == desired.region
                && theirs.endpoint == desired.endpoint;
            let them = (
                other.meta().creation_timestamp.clone().map(|t| t.0),
                other.namespace().unwrap_or_default(),
                other.name_any(),
            );
            if same_bucket && them < me {
                return Err(Error::Conflict(format!(
                    "BucketEncryption {}/{} already manages bucket {} in {}; this one is left untouched",
                    them.1, them.2, desired.bucket, desired.region
                )));
            }
        }
    }
    Ok(())
}

/// Where and as whom to call OSS: the endpoint must pass the allow-list (else nothing is sent),
/// then the credentials are resolved.
async fn connect(
    resource: &BucketEncryption,
    desired: &DesiredState,
    ctx: &Context,
) -> Result<(BucketTarget, CredentialsProvider), Error> {
    ctx.oss
        .config()
        .allow_list
        .check(&desired.endpoint)
        .map_err(|e| Error::EndpointNotAllowed(e.to_string()))?;
    let credentials = credentials(resource, ctx).await?;
    let target = BucketTarget {
        bucket: desired.bucket.clone(),
        region: desired.region.clone(),
        endpoint: desired.endpoint.clone(),
        signature_version: desired.signature_version,
    };
    Ok((target, credentials))
}

/// The object's Secret (read now, never cached or watched) or the operator's own credentials.
async fn credentials(resource: &BucketEncryption, ctx: &Context) -> Result<CredentialsProvider, Error> {
    let Some(source) = &resource.spec.credentials else {
        return ctx.operator_credentials.clone().ok_or_else(|| {
            Error::CredentialsNotFound(
                "spec.credentials is not set and the operator has no credentials of its own to use \
                 (or --allow-operator-credentials=false)"
                    .into(),
            )
        });
    };
    let namespace = resource.namespace().unwrap_or_default();
    let name = &source.secret_ref.name;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = secrets
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::CredentialsNotFound(format!("Secret {namespace}/{name} not found")))?;
    let data = secret.data.unwrap_or_default();
    let value = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let missing =
        |key: &str| Error::CredentialsNotFound(format!("Secret {namespace}/{name} has no {key} key"));
    let id = value("accessKeyId").ok_or_else(|| missing("accessKeyId"))?;
    let secret_value = value("accessKeySecret").ok_or_else(|| missing("accessKeySecret"))?;
    let credentials =
        Credentials::new(id, secret_value).with_security_token(value("securityToken").unwrap_or_default());
    Ok(CredentialsProvider::Static(credentials))
}

/// Adds the finalizer while `deletionPolicy: Delete` (in Manage mode), removes it otherwise.
async fn ensure_finalizer(resource: &BucketEncryption, ctx: &Context) -> Result<(), Error> {
    let wanted = resource.spec.deletion_policy == DeletionPolicy::Delete
        && resource.spec.management_policy == ManagementPolicy::Manage;
    let has = resource.finalizers().iter().any(|f| f == FINALIZER);
    if wanted == has {
        return Ok(());
    }
    let mut finalizers: Vec<String> = resource
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if wanted {
        finalizers.push(FINALIZER.to_owned());
    }
    patch_finalizers(resource, ctx, finalizers).await
}

async fn patch_finalizers(
    resource: &BucketEncryption,
    ctx: &Context,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api: Api<BucketEncryption> =
        Api::namespaced(ctx.client.clone(), &resource.namespace().unwrap_or_default());
    // The resourceVersion makes this a compare-and-swap: a concurrent change is a 409 and a retry.
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": resource.resource_version()}});
    api.patch(
        &resource.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Deletion: with our finalizer, remove the rule (Delete policy, Manage mode), then let go.
async fn finalize(resource: &BucketEncryption, ctx: &Context) -> Result<Action, Error> {
    if !resource.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let namespace = resource.namespace().unwrap_or_default();
    let cleanup = resource.spec.deletion_policy == DeletionPolicy::Delete
        && resource.spec.management_policy == ManagementPolicy::Manage;
    if cleanup && let Ok(desired) = resource.spec.validate() {
        let result = async {
            let (target, credentials) = connect(resource, &desired, ctx).await?;
            match ctx.oss.delete_encryption(&target, &credentials).await {
                Ok(reply) => Ok(Some(reply.request_id)),
                // A bucket that is gone has no rule to remove.
                Err(e) if e.is_no_such_bucket() => Ok(None),
                Err(e) => Err(Error::from(e)),
            }
        }
        .await;
        match result {
            Ok(request_id) => {
                let note = match request_id {
                    Some(id) => format!("DeleteBucketEncryption on deletion (request id {id})"),
                    None => "bucket no longer exists; nothing to delete".to_owned(),
                };
                publish(ctx, resource, &[event(EventType::Normal, "Deleted", note)]).await;
            }
            Err(error) => {
                let report = Report::failed(
                    Reason::Deleting,
                    format!("cannot remove the rule: {error}"),
                    error.request_id(),
                );
                write_status(
                    ctx,
                    &namespace,
                    &resource.name_any(),
                    resource.status.as_ref(),
                    resource.meta().generation,
                    &report,
                )
                .await?;
                return Err(error);
            }
        }
    }
    let finalizers: Vec<String> = resource
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(resource, ctx, finalizers).await?;
    Ok(Action::await_change())
}

/// Writes the status with server-side apply, only when it changed.
async fn write_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    current: Option<&crate::api::BucketEncryptionStatus>,
    generation: Option<i64>,
    report: &Report,
) -> Result<(), Error> {
    let Some(status) = next_status(current, generation, report, &now()) else {
        return Ok(());
    };
    let patch = json!({
        "apiVersion": "oss.encryption.dev/v1alpha1",
        "kind": "BucketEncryption",
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    status_api(ctx, namespace)
        .patch_status(name, &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

async fn publish(ctx: &Context, resource: &BucketEncryption, events: &[Event]) {
    let reference = resource.object_ref(&());
    for event in events {
        if let Err(error) = ctx.recorder.publish(event, &reference).await {
            tracing::warn!(%error, reason = %event.reason, "could not publish an event");
        }
    }
}

/// The resync interval actually used: the configured one, stretched when the fleet is so large
/// that re-reading every bucket that often would take more than half of the OSS QPS budget (the
/// rest stays for changes and retries). Without this a large fleet saturates the limiter with
/// resyncs and new objects wait behind them.
pub fn resync_interval(configured: Duration, objects: usize, qps: f64) -> Duration {
    let floor = Duration::from_secs_f64(objects as f64 / (qps * 0.5).max(f64::MIN_POSITIVE));
    configured.max(floor)
}

/// Per-object exponential backoff with jitter; credential errors cap at a few minutes so a fix is
/// noticed soon; other terminal errors wait longer.
pub fn error_policy(object: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut map = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(key(&object)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = backoff(error, failures, fastrand::f64());
    tracing::warn!(error = %error, label = error.metric_label(), failures, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The retry delay after `failures` consecutive failures; `draw` in `[0, 1)` spreads the fleet.
pub fn backoff(error: &Error, failures: u32, draw: f64) -> Duration {
    let (base, cap) = match error.reason() {
        Reason::Throttled => (Duration::from_secs(5), Duration::from_secs(300)),
        _ if error.is_transient() => (Duration::from_secs(1), Duration::from_secs(300)),
        Reason::CredentialsNotFound | Reason::AccessDenied => {
            (Duration::from_secs(5), Duration::from_secs(180))
        }
        _ => (Duration::from_secs(60), Duration::from_secs(900)),
    };
    let ceiling = base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(cap);
    // Equal jitter: at least half the ceiling, so retries never bunch at zero.
    ceiling.mul_f64(0.5 + 0.5 * draw.clamp(0.0, 1.0))
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
        for store in self.stores.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for object in store.state() {
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
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
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
    // Only generation changes (spec edits, deletion) and new objects trigger a reconcile: the
    // controller's own status and finalizer writes do not feed back into it, and everything else
    // is caught by the resync interval.
    // Caches count as synced once every watcher has finished its first list (InitDone). Counted
    // from the event stream: `Store::wait_until_ready` wakes only one waiter, and the controller
    // itself waits on it.
    health.synced.store(0, std::sync::atomic::Ordering::Relaxed);
    health
        .watched
        .store(apis.len(), std::sync::atomic::Ordering::Relaxed);
    let controllers: Vec<Controller<Guarded>> = apis
        .into_iter()
        .map(|api| {
            let (reader, writer) = reflector::store();
            let synced = health.synced.clone();
            let mut counted = false;
            let triggers = watcher(api, config.clone())
                .default_backoff()
                // managedFields are never read here; not caching them saves memory on a large fleet.
                .modify(|object: &mut Guarded| object.managed_fields_mut().clear())
                .reflect(writer)
                .inspect(move |event| {
                    if !counted && matches!(event, Ok(watcher::Event::InitDone)) {
                        counted = true;
                        synced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
                .applied_objects()
                .predicate_filter(predicates::generation, Default::default());
            Controller::for_stream(triggers, reader)
                .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        })
        .collect();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(settings.instance.clone()),
        },
    );
    metrics.set_leader(true);
    let stores: Vec<Store<Guarded>> = controllers.iter().map(Controller::store).collect();
    *health.stores.lock().unwrap_or_else(|p| p.into_inner()) = stores.clone();
    let context = Arc::new(Context {
        client,
        oss,
        operator_credentials,
        recorder,
        stores: stores.clone(),
        settings,
        metrics: metrics.clone(),
        failures: Mutex::new(HashMap::new()),
    });

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = tokio::time::Instant::now();
    tokio::spawn(async move {
        shutdown.await;
        // kube-runtime 5.0's Controller does not act on a graceful-shutdown trigger that fires
        // while it is still starting (seen here: it then waits until something else wakes it),
        // so a very early signal is passed on once start-up has settled.
        tokio::time::sleep_until(started + STARTUP_SETTLE).await;
        let _ = stop.send(true);
    });
    let mut stopping = stopped.clone();
    let runs = controllers.into_iter().map(|controller| {
        let mut stopped = stopped.clone();
        controller
            .graceful_shutdown_on(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .run(reconcile, error_policy, context.clone())
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "reconcile loop reported an error");
                }
            })
    });
    let all = futures_util::future::join_all(runs);
    tokio::pin!(all);
    tokio::select! {
        _ = &mut all => {}
        () = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!(?SHUTDOWN_GRACE, "reconciles still running after the grace period; stopping anyway"),
    }
    metrics.set_leader(false);
    health.watched.store(0, std::sync::atomic::Ordering::Relaxed);
    health.stores.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// How long shutdown waits for running reconciles before stopping anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A shutdown requested earlier than this after start is passed on at this point.
const STARTUP_SETTLE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn oss_error(status: u16, code: &str) -> Error {
        Error::from(OssError {
            operation: crate::oss::Operation::GetBucketEncryption,
            bucket: "b".into(),
            attempts: 1,
            kind: OssErrorKind::Service(crate::oss::ServiceError::from_response(
                status,
                format!("<Error><Code>{code}</Code><Message>m</Message><RequestId>R</RequestId></Error>")
                    .as_bytes(),
                "",
                "",
            )),
        })
    }

    #[test]
    fn oss_errors_map_to_condition_reasons() {
        assert_eq!(oss_error(404, "NoSuchBucket").reason(), Reason::BucketNotFound);
        assert_eq!(oss_error(403, "AccessDenied").reason(), Reason::AccessDenied);
        assert_eq!(
            oss_error(403, "SignatureDoesNotMatch").reason(),
            Reason::AccessDenied
        );
        assert_eq!(
            oss_error(403, "InvalidAccessKeyId").reason(),
            Reason::AccessDenied
        );
        assert_eq!(
            oss_error(503, "MetaOperationQpsLimitExceeded").reason(),
            Reason::Throttled
        );
        assert_eq!(oss_error(500, "InternalError").reason(), Reason::OssError);
        assert_eq!(oss_error(403, "RequestTimeTooSkewed").reason(), Reason::OssError);
        assert!(oss_error(500, "InternalError").is_transient());
        assert!(!oss_error(403, "AccessDenied").is_transient());
    }

    #[test]
    fn backoff_grows_caps_and_never_hits_zero() {
        let transient = oss_error(500, "InternalError");
        assert_eq!(backoff(&transient, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&transient, 4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(&transient, 30, 1.0), Duration::from_secs(300));
        assert_eq!(backoff(&transient, 1, 0.0), Duration::from_millis(500));
        let credentials = Error::CredentialsNotFound("x".into());
        assert_eq!(
            backoff(&credentials, 20, 1.0),
            Duration::from_secs(180),
            "a fix is noticed within 3 minutes"
        );
        let terminal = oss_error(404, "NoSuchBucket");
        assert_eq!(backoff(&terminal, 1, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(&terminal, 10, 1.0), Duration::from_secs(900));
    }

    #[test]
    fn event_notes_leave_out_request_ids_so_repeats_fold() {
        let note = without_request_id(&oss_error(403, "AccessDenied"));
        assert!(
            note.contains("AccessDenied") && !note.contains("R)") && !note.contains("request id"),
            "{note}"
        );
    }

    #[test]
    fn large_fleets_stretch_the_resync_interval() {
        let five_minutes = Duration::from_secs(300);
        assert_eq!(resync_interval(five_minutes, 1_000, 10.0), five_minutes);
        assert_eq!(
            resync_interval(five_minutes, 10_000, 10.0),
            Duration::from_secs(2_000)
        );
        assert_eq!(
            resync_interval(Duration::from_secs(30), 10_000, 200.0),
            Duration::from_secs(100)
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(100)).as_secs_f64();
            assert!((90.0..=110.0).contains(&d), "{d}");
        }
    }
}
