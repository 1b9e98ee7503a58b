//! The finalizer `oss.encryption.dev/cleanup`: present only on the owner of a bucket with
//! `deletionPolicy: Delete` in Manage mode. On deletion the owner removes the rule; whenever that
//! cannot be done (not the owner, spec invalid or unreadable, credentials gone, a terminal OSS
//! error, or transient failures past the deletion timeout) the rule is retained, a Warning says
//! why, and the finalizer is released: deletion always ends.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::core::ObjectMeta;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::connect;
use super::context::Context;
use super::error::{Error, Retry};
use super::report::{self, event, publish, raw_api};
use super::status::{Reason, Report};
use crate::api::{BucketEncryption, DeletionPolicy, DesiredState, FINALIZER, InvalidSpec, ManagementPolicy};

/// The Warning event reason when deletion leaves the rule in place.
pub const RETAINED: &str = "RuleRetained";

/// Whether the finalizer belongs on the resource.
pub fn wanted(resource: &BucketEncryption, owner: bool) -> bool {
    owner
        && resource.spec.deletion_policy == DeletionPolicy::Delete
        && resource.spec.management_policy == ManagementPolicy::Manage
}

fn holds(meta: &ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == FINALIZER)
}

/// Adds or removes the finalizer so that it is present exactly when `wanted`.
pub async fn ensure(resource: &BucketEncryption, ctx: &Context, wanted: bool) -> Result<(), Error> {
    if wanted == holds(resource.meta()) {
        return Ok(());
    }
    let mut finalizers = others(resource.meta());
    if wanted {
        finalizers.push(FINALIZER.to_owned());
    }
    set_finalizers(ctx, resource.meta(), finalizers).await
}

fn others(meta: &ObjectMeta) -> Vec<String> {
    meta.finalizers
        .iter()
        .flatten()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect()
}

async fn set_finalizers(ctx: &Context, meta: &ObjectMeta, finalizers: Vec<String>) -> Result<(), Error> {
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    // The resourceVersion makes this a compare-and-swap: a concurrent change is a 409 and a retry.
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": meta.resource_version}});
    raw_api(ctx, &namespace)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube(format!("updating the finalizers of {namespace}/{name}"), e))?;
    Ok(())
}

/// What deleting the resource does to the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Nothing was asked for (Retain, or Observe mode): let go quietly.
    Release,
    /// Remove the bucket's rule, then let go.
    Remove(Box<DesiredState>),
    /// Removal was asked for but must not happen: keep the rule, say why, let go.
    Retain(String),
}

/// Decides the cleanup from the spec, its validation and the ownership verdict (`Err(owner)`
/// names the resource that owns the bucket).
pub fn decide(
    resource: &BucketEncryption,
    validated: Result<DesiredState, InvalidSpec>,
    ownership: Result<(), String>,
) -> Cleanup {
    if resource.spec.deletion_policy != DeletionPolicy::Delete
        || resource.spec.management_policy != ManagementPolicy::Manage
    {
        return Cleanup::Release;
    }
    match (validated, ownership) {
        (Err(invalid), _) => Cleanup::Retain(format!("the spec cannot be acted on ({invalid})")),
        (Ok(_), Err(owner)) => Cleanup::Retain(format!(
            "BucketEncryption {owner} manages bucket {}, not this resource",
            resource.spec.bucket
        )),
        (Ok(desired), Ok(())) => Cleanup::Remove(Box::new(desired)),
    }
}

/// Whether the deletion has been retrying longer than `timeout`.
pub fn timed_out(deleted_at: Option<jiff::Timestamp>, now: jiff::Timestamp, timeout: Duration) -> bool {
    let Some(deleted_at) = deleted_at else {
        return false;
    };
    let waited = now.duration_since(deleted_at);
    waited.is_positive() && waited.unsigned_abs() >= timeout
}

/// Deletion of a readable resource.
pub async fn finalize(
    resource: &BucketEncryption,
    ctx: &Context,
    ownership: Result<(), String>,
) -> Result<Action, Error> {
    if !holds(resource.meta()) {
        return Ok(Action::await_change());
    }
    let reference = resource.object_ref(&());
    let note = match decide(resource, resource.spec.validate(), ownership) {
        Cleanup::Release => None,
        Cleanup::Retain(why) => Some(retained(&why)),
        Cleanup::Remove(desired) => match remove_rule(resource, &desired, ctx).await {
            Ok(note) => {
                publish(ctx, &reference, &[event(EventType::Normal, "Deleted", note)]).await;
                None
            }
            Err(error) if may_retry(&error, resource, ctx) => {
                let report = Report::failed(
                    Reason::Deleting,
                    format!(
                        "cannot remove the rule yet: {error}; retrying for up to {:?} after deletion, then the rule is retained",
                        ctx.settings.deletion_timeout
                    ),
                    error.request_id(),
                );
                let (namespace, name) = (resource.namespace().unwrap_or_default(), resource.name_any());
                let current = resource.status.as_ref();
                let generation = resource.meta().generation;
                report::write_status(ctx, &namespace, &name, current, generation, &report).await?;
                return Err(error);
            }
            Err(error) => Some(retained(&format!("DeleteBucketEncryption was not done: {error}"))),
        },
    };
    if let Some(note) = note {
        publish(ctx, &reference, &[event(EventType::Warning, RETAINED, note)]).await;
    }
    set_finalizers(ctx, resource.meta(), others(resource.meta())).await?;
    Ok(Action::await_change())
}

fn retained(why: &str) -> String {
    format!("deletionPolicy Delete: the bucket's encryption rule is retained because {why}")
}

/// Transient failures are retried until the deletion timeout; everything else retains at once.
fn may_retry(error: &Error, resource: &BucketEncryption, ctx: &Context) -> bool {
    let retryable = matches!(error.policy().retry, Retry::Transient | Retry::Throttled);
    let deleted_at = resource.meta().deletion_timestamp.as_ref().map(|t| t.0);
    retryable && !timed_out(deleted_at, jiff::Timestamp::now(), ctx.settings.deletion_timeout)
}

/// Calls DeleteBucketEncryption; a bucket that is gone has no rule to remove.
async fn remove_rule(
    resource: &BucketEncryption,
    desired: &DesiredState,
    ctx: &Context,
) -> Result<String, Error> {
    let (target, credentials) = connect::resolve(resource, desired, ctx).await?;
    match ctx.oss.delete_encryption(&target, &credentials).await {
        Ok(reply) => Ok(format!(
            "DeleteBucketEncryption on deletion (request id {})",
            reply.request_id
        )),
        Err(e) if e.is_no_such_bucket() => Ok("bucket no longer exists; nothing to delete".into()),
        Err(e) => Err(Error::from(e)),
    }
}

/// Deletion of an object that cannot be deserialised: nothing about its bucket can be trusted,
/// so the rule is retained and the finalizer released.
pub async fn finalize_unreadable(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    if holds(meta) {
        let reference = ObjectReference {
            api_version: Some(BucketEncryption::api_version(&()).into_owned()),
            kind: Some(BucketEncryption::kind(&()).into_owned()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            ..ObjectReference::default()
        };
        let why = format!("the object cannot be read ({})", invalid.error);
        publish(
            ctx,
            &reference,
            &[event(EventType::Warning, RETAINED, retained(&why))],
        )
        .await;
        set_finalizers(ctx, meta, others(meta)).await?;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(spec: serde_json::Value) -> BucketEncryption {
        let mut document = json!({
            "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"bucket": "b-1", "region": "cn-hangzhou", "algorithm": "AES256"}
        });
        for (k, v) in spec.as_object().unwrap() {
            document["spec"][k] = v.clone();
        }
        serde_json::from_value(document).unwrap()
    }

    #[test]
    fn cleanup_removes_only_for_a_valid_owner_asking_for_it() {
        let delete = resource(json!({"deletionPolicy": "Delete"}));
        assert!(matches!(
            decide(&delete, delete.spec.validate(), Ok(())),
            Cleanup::Remove(_)
        ));
        assert!(matches!(
            decide(&delete, delete.spec.validate(), Err("ns/older".into())),
            Cleanup::Retain(why) if why.contains("ns/older")
        ));
        let invalid = resource(json!({"deletionPolicy": "Delete", "kmsMasterKeyId": "k"}));
        assert!(matches!(
            decide(&invalid, invalid.spec.validate(), Ok(())),
            Cleanup::Retain(why) if why.contains("kmsMasterKeyId")
        ));
        let retain = resource(json!({}));
        assert_eq!(decide(&retain, retain.spec.validate(), Ok(())), Cleanup::Release);
        let observe = resource(json!({"deletionPolicy": "Delete", "managementPolicy": "Observe"}));
        assert_eq!(
            decide(&observe, observe.spec.validate(), Ok(())),
            Cleanup::Release
        );
    }

    #[test]
    fn the_finalizer_is_wanted_only_by_a_managing_owner_with_delete() {
        let delete = resource(json!({"deletionPolicy": "Delete"}));
        assert!(wanted(&delete, true));
        assert!(!wanted(&delete, false), "never on a non-owner");
        assert!(!wanted(&resource(json!({})), true));
        assert!(!wanted(
            &resource(json!({"deletionPolicy": "Delete", "managementPolicy": "Observe"})),
            true
        ));
    }

    #[test]
    fn deletion_times_out() {
        let deleted = jiff::Timestamp::from_second(1_000).unwrap();
        let timeout = Duration::from_secs(300);
        let at = |s| jiff::Timestamp::from_second(s).unwrap();
        assert!(!timed_out(Some(deleted), at(1_299), timeout));
        assert!(timed_out(Some(deleted), at(1_300), timeout));
        assert!(
            !timed_out(Some(deleted), at(900), timeout),
            "clock behind the API server"
        );
        assert!(!timed_out(None, at(5_000), timeout));
    }
}
