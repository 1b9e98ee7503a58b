//! Effects that report: the status (server-side apply on `/status`, only when it changed) and
//! Kubernetes Events through the shared recorder ([`super::events`]).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::json;

use super::context::{AUDIT_FIELD_MANAGER, Context, FIELD_MANAGER};
use super::error::Error;
use super::status::{Report, next_status};
use crate::api::{BucketEncryption, BucketEncryptionStatus};

/// Event notes are cut to this many characters (the API server's limit is 1 KiB).
const NOTE_LIMIT: usize = 1000;

/// The untyped API of BucketEncryptions in a namespace (reads and writes even malformed objects).
pub fn raw_api(ctx: &Context, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        namespace,
        &ApiResource::erase::<BucketEncryption>(&()),
    )
}

/// Now, as conditions and `lastSyncTime` spell it.
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Writes the status with server-side apply, only when `report` changes what is stored.
/// `status.objects` is left out of the patch: the object audit owns it under its own field
/// manager ([`write_audit_status`]), so this apply neither erases nor takes it over.
pub async fn write_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    current: Option<&BucketEncryptionStatus>,
    generation: Option<i64>,
    report: &Report,
) -> Result<(), Error> {
    let Some(mut status) = next_status(current, generation, report, &now()) else {
        return Ok(());
    };
    status.objects = None;
    let patch = json!({
        "apiVersion": "oss.encryption.dev/v1alpha1",
        "kind": "BucketEncryption",
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    raw_api(ctx, namespace)
        .patch_status(name, &params, &Patch::Apply(&patch))
        .await
        .map_err(|e| Error::kube(format!("writing the status of {namespace}/{name}"), e))?;
    Ok(())
}

/// Writes `status.objects` (one object audit's result) with server-side apply under the audit's
/// own field manager: the only field it sends, so the rule's status and the audit's never
/// overwrite each other. One write per audit.
pub async fn write_audit_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    objects: &crate::api::ObjectAuditStatus,
) -> Result<(), Error> {
    let patch = json!({
        "apiVersion": "oss.encryption.dev/v1alpha1",
        "kind": "BucketEncryption",
        "status": {"objects": objects},
    });
    let params = PatchParams::apply(AUDIT_FIELD_MANAGER).force();
    raw_api(ctx, namespace)
        .patch_status(name, &params, &Patch::Apply(&patch))
        .await
        .map_err(|e| Error::kube(format!("writing the object audit of {namespace}/{name}"), e))?;
    Ok(())
}

/// Removes `status.objects` once a resource no longer asks for an audit: an apply under the
/// audit's field manager that sends none of its fields (server-side apply drops the fields only
/// it owned), so stale figures do not outlive the opt-in.
pub async fn clear_audit_status(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error> {
    let patch = json!({
        "apiVersion": "oss.encryption.dev/v1alpha1",
        "kind": "BucketEncryption",
        "status": {},
    });
    let params = PatchParams::apply(AUDIT_FIELD_MANAGER).force();
    raw_api(ctx, namespace)
        .patch_status(name, &params, &Patch::Apply(&patch))
        .await
        .map_err(|e| Error::kube(format!("clearing the object audit of {namespace}/{name}"), e))?;
    Ok(())
}

/// Writes the status of a cluster-scoped object `K` named `name` with server-side apply, under
/// the operator's field manager (policies, grants).
pub async fn apply_cluster_status<K>(
    ctx: &Context,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>,
{
    let kind = K::kind(&());
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &ApiResource::erase::<K>(&()));
    let patch = json!({"apiVersion": K::api_version(&()), "kind": kind, "status": status});
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| Error::kube(format!("writing the status of {kind} {name}"), e))?;
    Ok(())
}

/// The stored status of an object that cannot be read as a typed resource (read raw).
pub async fn stored_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<BucketEncryptionStatus>, Error> {
    let stored = raw_api(ctx, namespace)
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading {namespace}/{name}"), e))?;
    Ok(stored
        .and_then(|o| o.data.get("status").cloned())
        .and_then(|s| serde_json::from_value(s).ok()))
}

/// An event about the resource.
pub fn event(type_: EventType, reason: &str, note: impl AsRef<str>) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(note.as_ref().chars().take(NOTE_LIMIT).collect()),
        action: "Reconcile".into(),
        secondary: None,
    }
}

/// Publishes events; a failure to publish is logged, never fatal (e.g. in a terminating
/// namespace, where the API server refuses new events).
pub async fn publish(ctx: &Context, reference: &ObjectReference, events: &[Event]) {
    for event in events {
        if let Err(error) = ctx.recorder.publish(event, reference).await {
            tracing::warn!(%error, reason = %event.reason, "could not publish an event");
        }
    }
}
