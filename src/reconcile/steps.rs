//! One reconcile as named steps (the judgement of what they found is `judge.rs`):
//! validate → permission → ownership → finalizer → resolve → observe → plan → pre-flight → apply → report →
//! requeue.
//! Deletion goes to the finalizer; an object that cannot be deserialised is reported (or, when
//! deleted, released). Decisions are pure functions beside this file; this file sequences them.

use std::sync::Arc;
use std::time::Instant;

use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::connect;
use super::context::{Context, Guarded};
use super::error::{Error, Retry};
use super::finalizer;
use super::grants::Permission;
use super::judge::{self, Findings};
use super::ownership::{Claim, owner_of};
use super::plan::{self, Action as OssAction, Downgrades, Plan};
use super::preflight::{self, Held};
use super::report::{self, event, publish};
use super::schedule;
use super::secret_reads::Freshness;
use super::status::{Reason, Report, stable_message};
use crate::api::{BucketEncryption, DesiredState};
use crate::kms::Verdict;
use crate::oss::{BucketTarget, CredentialsProvider, EncryptionRule, Reply};

/// Reconciles one object, within the global concurrency bound, timed and counted in the metrics.
pub async fn reconcile(object: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    // A reconcile that starts replaces the resource's pending resync (as kube's scheduler
    // drops a request it runs): only a reconcile that goes through schedules the next.
    let resync = ctx.resync_target(&object);
    ctx.resyncs.cancel(&resync);
    // Nobody writes before every claim is known (a partial cache could hide an older owner).
    ctx.claims.until_complete().await;
    // The semaphore is never closed, so acquiring only waits.
    let queued = ctx.metrics.queued();
    let _permit = ctx.permits.acquire().await;
    drop(queued);
    let started = Instant::now();
    let span = tracing::info_span!(
        "reconcile",
        namespace = %object.namespace().unwrap_or_default(),
        name = %object.name_any(),
        bucket = object.0.as_ref().map(|r| r.spec.bucket.as_str()).unwrap_or_default(),
    );
    let result = reconcile_object(&object, &ctx, resync).instrument(span).await;
    let label = match &result {
        Ok(_) => "ok",
        Err(error) => error.metric_label(),
    };
    ctx.metrics.reconciled(label, started.elapsed());
    if result.is_ok()
        && let Some(uid) = object.uid()
    {
        ctx.forget_failures(&uid);
    }
    result
}

async fn reconcile_object(
    object: &Guarded,
    ctx: &Context,
    resync: super::resync::Target,
) -> Result<Action, Error> {
    // A spec edit can move a resource to another shard's bucket: that shard acts on it now.
    if !super::in_shard(ctx.settings.shard, object) {
        return Ok(Action::await_change());
    }
    let resource = match &object.0 {
        Ok(resource) => resource,
        Err(invalid) if invalid.metadata.deletion_timestamp.is_some() => {
            return finalizer::finalize_unreadable(invalid, ctx).await;
        }
        Err(invalid) => return report_unreadable(invalid, ctx).await,
    };
    if resource.meta().deletion_timestamp.is_some() {
        if let Permission::NotPermitted(why) = ctx.claims.permission(resource) {
            return finalizer::finalize_not_permitted(resource, ctx, &why).await;
        }
        return finalizer::finalize(resource, ctx, ownership(resource, ctx)).await;
    }
    match sync(resource, ctx).await {
        Ok(outcome) => {
            report_outcome(resource, &outcome, ctx).await?;
            ctx.resyncs.schedule(resync, outcome.requeue);
            Ok(Action::await_change())
        }
        Err(error) => report_failure(resource, error, ctx).await,
    }
}

/// What a reconcile that went through found and did.
struct Outcome {
    report: Report,
    events: Vec<Event>,
    requeue: std::time::Duration,
}

/// validate → permission → ownership → finalizer → resolve → observe → plan → apply.
async fn sync(resource: &BucketEncryption, ctx: &Context) -> Result<Outcome, Error> {
    let desired = validate(resource)?;
    permission(resource, ctx).await?;
    let owned = ownership(resource, ctx);
    // A non-owner never carries the finalizer (so deleting it can never remove the rule).
    finalizer::ensure(resource, ctx, finalizer::wanted(resource, owned.is_ok())).await?;
    owned.map_err(|owner| Error::Conflict {
        owner,
        bucket: desired.bucket.clone(),
    })?;
    let (target, credentials) = connect::resolve(resource, &desired, ctx, Freshness::Shared).await?;
    // The key check most likely needed runs alongside the read, not queued behind it.
    let likely = preflight::likely_key(desired.rule.as_ref(), resource.spec.management_policy);
    let (observed, early) = tokio::join!(
        ctx.oss.get_encryption(&target, &credentials),
        early_check(likely, &desired.region, &credentials, ctx)
    );
    let observed = observed?;
    let decision = plan::plan(
        desired.rule.as_ref(),
        observed.value.as_ref(),
        resource.spec.management_policy,
        Downgrades::allowed(desired.allow_downgrade),
    );
    let held = match decision.action {
        OssAction::Blocked => Some(Held::Downgrade),
        _ => {
            check_key(
                &decision,
                observed.value.as_ref(),
                &desired.region,
                &credentials,
                likely.zip(early),
                ctx,
            )
            .await?
        }
    };
    let written = match held {
        Some(_) => None,
        None => apply(&decision, &target, &credentials, ctx).await?,
    };
    let requeue = schedule::jittered(
        schedule::resync_interval(
            desired.resync_interval.unwrap_or(ctx.settings.resync_interval),
            ctx.object_count(),
            ctx.oss.current_rate(),
        ),
        fastrand::f64(),
    );
    let (report, events) = judge::judge(Findings {
        policy: resource.spec.management_policy,
        was_in_sync: judge::was_in_sync(resource),
        desired: desired.rule.as_ref(),
        observed,
        decision: &decision,
        written,
        held,
    });
    if report.drift_corrected {
        ctx.metrics.drift_corrected();
    }
    Ok(Outcome {
        report,
        events,
        requeue,
    })
}

/// The controller's own validation (defence in depth behind admission).
fn validate(resource: &BucketEncryption) -> Result<DesiredState, Error> {
    resource
        .spec
        .validate()
        .map_err(|e| Error::InvalidSpec(e.to_string()))
}

/// With tenancy grants: a resource no grant permits makes no OSS request and never carries the
/// finalizer (one left from before a revocation is released; that never removes the rule).
async fn permission(resource: &BucketEncryption, ctx: &Context) -> Result<(), Error> {
    match ctx.claims.permission(resource) {
        Permission::Permitted => Ok(()),
        Permission::NotPermitted(why) => {
            finalizer::ensure(resource, ctx, false).await?;
            Err(Error::NotPermitted(why))
        }
    }
}

/// `Ok` when this resource owns its bucket, else `Err(owner)` naming the owner, as the claims
/// index has it (live resources with a valid spec, and resources being deleted that still hold
/// the finalizer).
pub fn ownership(resource: &BucketEncryption, ctx: &Context) -> Result<(), String> {
    let me = Claim::of(resource);
    let mut claims = ctx.claims.claims_on(&me.bucket);
    claims.push(me.clone());
    match owner_of(&me.bucket, &claims) {
        Some(owner) if *owner != me => Err(owner.resource()),
        _ => Ok(()),
    }
}

/// The KMS pre-flight of the likely key (see [`preflight::likely_key`]), when switched on.
async fn early_check(
    likely: Option<&str>,
    region: &str,
    credentials: &CredentialsProvider,
    ctx: &Context,
) -> Option<Verdict> {
    let (Some(checker), Some(key)) = (&ctx.settings.key_checker, likely) else {
        return None;
    };
    Some(checker.check(region, key, credentials).await)
}

/// The KMS pre-flight (when switched on) of the key the rule in force afterwards names: `None`
/// when there is none or OSS can use it, `Held` when it cannot, an error when the check could
/// not run (never a pass). `early` is the verdict already had for a key, used when it is the one.
async fn check_key(
    decision: &Plan,
    observed: Option<&EncryptionRule>,
    region: &str,
    credentials: &CredentialsProvider,
    early: Option<(&str, Verdict)>,
    ctx: &Context,
) -> Result<Option<Held>, Error> {
    let (Some(checker), Some(key)) = (
        &ctx.settings.key_checker,
        preflight::key_to_check(&decision.action, observed),
    ) else {
        return Ok(None);
    };
    let verdict = match early {
        Some((checked, verdict)) if checked == key => verdict,
        _ => checker.check(region, key, credentials).await,
    };
    match verdict {
        Verdict::Usable { .. } => Ok(None),
        verdict @ Verdict::NotUsable { .. } => Ok(Some(Held::KeyNotUsable(verdict.describe()))),
        Verdict::CheckFailed(error) => Err(Error::KeyCheckFailed(error)),
    }
}

/// The planned OSS write, if any: `(API, request id)` of the write made.
async fn apply(
    decision: &Plan,
    target: &BucketTarget,
    credentials: &CredentialsProvider,
    ctx: &Context,
) -> Result<Option<(&'static str, Reply<()>)>, Error> {
    Ok(match &decision.action {
        OssAction::Nothing | OssAction::Blocked => None,
        OssAction::Put(rule) => Some((
            "PutBucketEncryption",
            ctx.oss.put_encryption(target, credentials, rule).await?,
        )),
        OssAction::Delete => Some((
            "DeleteBucketEncryption",
            ctx.oss.delete_encryption(target, credentials).await?,
        )),
    })
}

async fn report_outcome(resource: &BucketEncryption, outcome: &Outcome, ctx: &Context) -> Result<(), Error> {
    let namespace = resource.namespace().unwrap_or_default();
    let current = resource.status.as_ref();
    let generation = resource.meta().generation;
    report::write_status(
        ctx,
        &namespace,
        &resource.name_any(),
        current,
        generation,
        &outcome.report,
    )
    .await?;
    publish(ctx, &resource.object_ref(&()), &outcome.events).await;
    Ok(())
}

/// Reports a failed step by the error table: Ready kept (transient: the generation stays
/// unsettled) or set False (terminal), Synced False, a Warning event; then the retry class
/// decides between a backoff (the error goes to `error_policy`) and waiting for a change.
async fn report_failure(resource: &BucketEncryption, error: Error, ctx: &Context) -> Result<Action, Error> {
    let policy = error.policy();
    let reason = policy.reason;
    let message = error.to_string();
    let current = resource.status.as_ref();
    let mut report = Report::failed(reason, message.clone(), error.request_id());
    report.settled = !policy.keeps_ready;
    report.ready.message = stable_message(current, "Ready", reason, message.clone());
    report.synced.message = stable_message(current, "Synced", reason, message);
    let namespace = resource.namespace().unwrap_or_default();
    let generation = resource.meta().generation;
    if let Err(write_error) = report::write_status(
        ctx,
        &namespace,
        &resource.name_any(),
        current,
        generation,
        &report,
    )
    .await
    {
        tracing::warn!(error = %write_error, "could not report a failed reconcile");
    }
    let note = format!("{reason}: {}", error.without_request_id());
    publish(
        ctx,
        &resource.object_ref(&()),
        &[event(EventType::Warning, "ReconcileError", note)],
    )
    .await;
    match policy.retry {
        Retry::AwaitChange => Ok(Action::await_change()),
        _ => Err(error),
    }
}

/// An object that cannot be deserialised (admission bypassed): InvalidSpec, once, then wait for
/// a change. The stored status is read raw, so an unchanged report writes nothing.
async fn report_unreadable(
    invalid: &kube::core::error_boundary::InvalidObject,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let current = report::stored_status(ctx, &namespace, &name).await?;
    let report = Report::failed(
        Reason::InvalidSpec,
        format!("invalid spec: {}", invalid.error),
        None,
    );
    let generation = invalid.metadata.generation;
    report::write_status(ctx, &namespace, &name, current.as_ref(), generation, &report).await?;
    Ok(Action::await_change())
}
