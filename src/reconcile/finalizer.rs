//! The finalizer `oss.encryption.dev/cleanup`: present only on the owner of a bucket with
//! `deletionPolicy: Delete` in Manage mode. On deletion the owner removes the rule; whenever that
//! cannot be done (not the owner, spec invalid or unreadable, credentials gone, a terminal OSS
//! error, or transient failures past the deletion timeout) the rule is retained, a Warning says
//! why, and the finalizer is released: deletion always ends.
//!
//! Deleting the BucketEncryption CRD (an uninstall) makes the API server delete every instance;
//! none of those deletions is a user's request to remove encryption. So before any removal the
//! CRD is read: while it is being deleted, is gone, or cannot be read, the rule is retained.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::Api;
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
use super::secret_reads::Freshness;
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
    /// Removal would happen: read the CRD's state first and decide again with it.
    CheckCrd,
}

/// The BucketEncryption CRD as read before a removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrdState {
    /// Served and not being deleted.
    Serving,
    /// It carries a deletionTimestamp: an uninstall is deleting every instance.
    Deleting,
    /// It no longer exists.
    Gone,
    /// It could not be read (the error, without secrets): doubt retains.
    Unknown(String),
}

/// Decides the cleanup from the spec, its validation, the ownership verdict (`Err(owner)`
/// names the resource that owns the bucket) and the CRD's state (`None`: not read yet; a
/// removal is then [`Cleanup::CheckCrd`], so the CRD is read only when it matters).
pub fn decide(
    resource: &BucketEncryption,
    validated: Result<DesiredState, InvalidSpec>,
    ownership: Result<(), String>,
    crd: Option<&CrdState>,
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
        (Ok(desired), Ok(())) => match crd {
            None => Cleanup::CheckCrd,
            Some(CrdState::Serving) => Cleanup::Remove(Box::new(desired)),
            Some(CrdState::Deleting) => Cleanup::Retain(format!(
                "the CustomResourceDefinition {} is being deleted (an uninstall deletes every BucketEncryption; that is not a request to remove encryption)",
                BucketEncryption::crd_name()
            )),
            Some(CrdState::Gone) => Cleanup::Retain(format!(
                "the CustomResourceDefinition {} is gone (an uninstall is not a request to remove encryption)",
                BucketEncryption::crd_name()
            )),
            Some(CrdState::Unknown(error)) => Cleanup::Retain(format!(
                "the CustomResourceDefinition {} cannot be read to rule out an uninstall ({error})",
                BucketEncryption::crd_name()
            )),
        },
    }
}

/// Reads the BucketEncryption CRD (RBAC: `get` on that one name).
async fn crd_state(ctx: &Context) -> CrdState {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    match crds.get_opt(BucketEncryption::crd_name()).await {
        Ok(Some(crd)) if crd.metadata.deletion_timestamp.is_some() => CrdState::Deleting,
        Ok(Some(_)) => CrdState::Serving,
        Ok(None) => CrdState::Gone,
        Err(error) => CrdState::Unknown(error.to_string()),
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
    let mut cleanup = decide(resource, resource.spec.validate(), ownership.clone(), None);
    if cleanup == Cleanup::CheckCrd {
        let crd = crd_state(ctx).await;
        cleanup = decide(resource, resource.spec.validate(), ownership, Some(&crd));
    }
    let note = match cleanup {
        Cleanup::Release => None,
        Cleanup::CheckCrd => Some(retained("the CustomResourceDefinition was not read")),
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

/// Deletion of a resource no grant permits (tenancy grants): it may not touch OSS, so a rule
/// removal it asked for is not done; the rule is retained, a Warning says why, and the
/// finalizer (left over from before the grant was revoked) is released.
pub async fn finalize_not_permitted(
    resource: &BucketEncryption,
    ctx: &Context,
    why: &str,
) -> Result<Action, Error> {
    if !holds(resource.meta()) {
        return Ok(Action::await_change());
    }
    if decide(resource, resource.spec.validate(), Ok(()), None) != Cleanup::Release {
        let reference = resource.object_ref(&());
        let note = retained(&format!("it is not permitted: {why}"));
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
    let (target, credentials) = connect::resolve(resource, desired, ctx, Freshness::Now).await?;
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
            decide(&delete, delete.spec.validate(), Ok(()), Some(&CrdState::Serving)),
            Cleanup::Remove(_)
        ));
        assert!(matches!(
            decide(&delete, delete.spec.validate(), Err("ns/older".into()), Some(&CrdState::Serving)),
            Cleanup::Retain(why) if why.contains("ns/older")
        ));
        let invalid = resource(json!({"deletionPolicy": "Delete", "kmsMasterKeyId": "k"}));
        assert!(matches!(
            decide(&invalid, invalid.spec.validate(), Ok(()), Some(&CrdState::Serving)),
            Cleanup::Retain(why) if why.contains("kmsMasterKeyId")
        ));
        let retain = resource(json!({}));
        assert_eq!(
            decide(&retain, retain.spec.validate(), Ok(()), None),
            Cleanup::Release
        );
        let observe = resource(json!({"deletionPolicy": "Delete", "managementPolicy": "Observe"}));
        assert_eq!(
            decide(&observe, observe.spec.validate(), Ok(()), None),
            Cleanup::Release
        );
    }

    #[test]
    fn an_uninstall_or_doubt_about_it_retains() {
        let delete = resource(json!({"deletionPolicy": "Delete"}));
        let decide_with = |crd: Option<&CrdState>| decide(&delete, delete.spec.validate(), Ok(()), crd);
        assert_eq!(
            decide_with(None),
            Cleanup::CheckCrd,
            "the CRD is read before a removal"
        );
        assert!(matches!(
            decide_with(Some(&CrdState::Serving)),
            Cleanup::Remove(_)
        ));
        for (crd, says) in [
            (CrdState::Deleting, "is being deleted"),
            (CrdState::Gone, "is gone"),
            (CrdState::Unknown("403 Forbidden".into()), "403 Forbidden"),
        ] {
            assert!(
                matches!(decide_with(Some(&crd)), Cleanup::Retain(why) if why.contains(says) && why.contains(BucketEncryption::crd_name())),
                "{crd:?}"
            );
        }
        // Nothing to remove: the CRD is never read.
        let retain = resource(json!({}));
        assert_eq!(
            decide(&retain, retain.spec.validate(), Ok(()), None),
            Cleanup::Release
        );
        let stranger = decide(&delete, delete.spec.validate(), Err("ns/older".into()), None);
        assert!(matches!(stranger, Cleanup::Retain(_)));
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
