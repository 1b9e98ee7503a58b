//! The object audit worker (`spec.objectAudit`, DESIGN 3.7): apart from the rule reconciles, so
//! an audit of a large bucket never holds a reconcile slot nor delays one. Every scan period it
//! looks through the caches for resources whose audit is due ([`object_audit::audit_due`]) and
//! that may be audited (settled, Ready and in sync, permitted, owning their bucket), and runs
//! those audits, at most `--audit-concurrency` at once, through the data-plane client and its
//! own limiter (`--audit-qps`). Each audit makes ListObjectsV2 and HeadObject requests only
//! (never a write to OSS), then writes `status.objects` once (server-side apply under its own
//! field manager), a Warning event when examined objects are below the rule, and its metrics.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::connect;
use super::context::Context;
use super::grants::Permission;
use super::object_audit::{audit_blocker, audit_due, audit_status, below_rule_note, latest};
use super::report;
use super::secret_reads::Freshness;
use crate::api::{BucketEncryption, DesiredState, ObjectAudit, ObjectAuditStatus};
use crate::audit::{Examine, Subject, audit_bucket};
use crate::oss::describe_rule;
use crate::telemetry::AuditOutcome;

/// HeadObject requests in flight at once within one audit.
const HEADS_IN_FLIGHT: usize = 8;

/// Runs the worker until `stop` resolves; running audits are then abandoned (they only read).
pub async fn run(ctx: Arc<Context>, stop: impl Future<Output = ()>) {
    let settings = &ctx.settings.object_audits;
    let permits = Arc::new(Semaphore::new(usize::from(settings.concurrency.max(1))));
    let mut running: JoinSet<(String, ObjectAuditStatus)> = JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    // The worker's own record of each resource's last audit: the cache shows the status it wrote
    // only a moment later, and the audit must not run twice meanwhile.
    let mut recent: HashMap<String, ObjectAuditStatus> = HashMap::new();
    // Resources with audit metrics, by uid: their series go when they stop auditing or go.
    let mut reported: HashMap<String, (String, String, String)> = HashMap::new();
    // Resources whose stale status.objects was removed (until the cache shows it gone).
    let mut cleared: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(settings.scan_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    // Nobody audits before every claim is known (a partial cache could hide an older owner).
    tokio::select! {
        () = ctx.claims.until_complete() => {}
        () = &mut stop => return,
    }
    loop {
        tokio::select! {
            () = &mut stop => return,
            Some(done) = running.join_next() => {
                if let Ok((uid, status)) = done {
                    in_flight.remove(&uid);
                    recent.insert(uid, status);
                }
            }
            _ = tick.tick() => {
                let now = Timestamp::now();
                let mut auditing = HashSet::new();
                let mut seen = HashSet::new();
                for store in &ctx.stores {
                    for object in store.state() {
                        if !super::in_shard(ctx.settings.shard, &object) {
                            continue;
                        }
                        let Ok(resource) = object.0.as_ref() else { continue };
                        let uid = resource.uid().unwrap_or_default();
                        seen.insert(uid.clone());
                        let Some((desired, audit)) = wanted(resource) else {
                            let stale = resource.status.as_ref().is_some_and(|s| s.objects.is_some());
                            if stale
                                && resource.meta().deletion_timestamp.is_none()
                                && !in_flight.contains(&uid)
                                && !cleared.contains(&uid)
                            {
                                let (namespace, name, _) = labels(resource);
                                match report::clear_audit_status(&ctx, &namespace, &name).await {
                                    Ok(()) => {
                                        cleared.insert(uid);
                                    }
                                    Err(error) => {
                                        tracing::warn!(%error, %namespace, %name, "could not clear the object audit");
                                    }
                                }
                            }
                            continue;
                        };
                        cleared.remove(&uid);
                        auditing.insert(uid.clone());
                        if in_flight.contains(&uid) || !may_audit(resource, &ctx) {
                            continue;
                        }
                        let rule = describe_rule(desired.rule.as_ref());
                        let stored = resource.status.as_ref().and_then(|s| s.objects.as_deref());
                        if !audit_due(&audit, &rule, latest(stored, recent.get(&uid)), now) {
                            continue;
                        }
                        in_flight.insert(uid.clone());
                        reported.insert(uid.clone(), labels(resource));
                        let (ctx, permits, resource) = (ctx.clone(), permits.clone(), resource.clone());
                        running.spawn(async move {
                            // The semaphore is never closed, so acquiring only waits.
                            let _permit = permits.acquire_owned().await;
                            (uid, audit_one(&ctx, &resource, &desired, audit).await)
                        });
                    }
                }
                recent.retain(|uid, _| auditing.contains(uid));
                cleared.retain(|uid| seen.contains(uid));
                reported.retain(|uid, (namespace, name, bucket)| {
                    let keep = auditing.contains(uid);
                    if !keep {
                        ctx.metrics.forget_object_audit(namespace, name, bucket);
                    }
                    keep
                });
            }
        }
    }
}

/// The resource's checked spec and its audit, when it asks for one and is not being deleted.
fn wanted(resource: &BucketEncryption) -> Option<(DesiredState, ObjectAudit)> {
    if resource.meta().deletion_timestamp.is_some() {
        return None;
    }
    let desired = resource.spec.validate().ok()?;
    let audit = desired.object_audit?;
    Some((desired, audit))
}

/// Whether the resource may be audited now: its status says the rule is settled and in sync,
/// and the claims index says it is permitted and owns its bucket (the status can lag behind a
/// senior claimant's arrival).
fn may_audit(resource: &BucketEncryption, ctx: &Context) -> bool {
    if let Some(why) = audit_blocker(resource) {
        tracing::trace!(name = %resource.name_any(), why, "object audit not run");
        return false;
    }
    matches!(ctx.claims.permission(resource), Permission::Permitted)
        && super::steps::ownership(resource, ctx).is_ok()
}

fn labels(resource: &BucketEncryption) -> (String, String, String) {
    (
        resource.namespace().unwrap_or_default(),
        resource.name_any(),
        resource.spec.bucket.clone(),
    )
}

/// One audit: read, tally, then one status write, the event and the metrics. Returns what it
/// wrote (or tried to).
async fn audit_one(
    ctx: &Context,
    resource: &BucketEncryption,
    desired: &DesiredState,
    audit: ObjectAudit,
) -> ObjectAuditStatus {
    let (namespace, name, bucket) = labels(resource);
    let rule = describe_rule(desired.rule.as_ref());
    let status = match connect::resolve(resource, desired, ctx, Freshness::Shared).await {
        Ok((target, credentials)) => {
            let subject = Subject {
                target,
                desired: Some(desired.rule.clone()),
                credentials,
            };
            let examine = audit
                .sample
                .map_or(Examine::All, |n| Examine::Sample(u64::try_from(n).unwrap_or(1)));
            let result = audit_bucket(
                &ctx.oss,
                &ctx.objects,
                &subject,
                examine,
                "",
                HEADS_IN_FLIGHT,
                &mut |_, _, _| {},
            )
            .await;
            audit_status(&result, audit.sample, &report::now())
        }
        Err(error) => ObjectAuditStatus {
            last_audit_time: report::now(),
            rule,
            sample: audit.sample,
            errors: 1,
            error: Some(format!("resolving the bucket: {error}")),
            ..ObjectAuditStatus::default()
        },
    };
    let outcome = if status.examined == 0 && status.errors > 0 {
        AuditOutcome::Failed
    } else if status.below_rule > 0 {
        AuditOutcome::BelowRule
    } else {
        AuditOutcome::Clean
    };
    tracing::info!(
        %namespace, %name, %bucket,
        listed = status.listed,
        examined = status.examined,
        below_rule = status.below_rule,
        errors = status.errors,
        "object audit done"
    );
    ctx.metrics
        .object_audited(&namespace, &name, &bucket, &status, outcome);
    if let Err(error) = report::write_audit_status(ctx, &namespace, &name, &status).await {
        tracing::warn!(%error, %namespace, %name, "could not write the object audit");
    }
    let note = match outcome {
        AuditOutcome::Failed => Some((
            "ObjectAuditFailed",
            format!(
                "object audit of bucket {bucket} failed: {}",
                status.error.as_deref().unwrap_or("unknown error")
            ),
        )),
        _ => below_rule_note(&status).map(|note| ("ObjectsBelowRule", note)),
    };
    if let Some((reason, note)) = note {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "ObjectAudit".into(),
            secondary: None,
        };
        report::publish(ctx, &resource.object_ref(&()), &[event]).await;
    }
    status
}
