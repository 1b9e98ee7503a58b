//! The BucketEncryptionPolicy controller (DESIGN.md 3.3): on each resync, list the account
//! (paged), select buckets, read each selected bucket's rule through the shared limiter, classify
//! it (compliant, non-compliant, managed by a resource, claimed by an older policy, excluded,
//! error), and in Manage mode write the rule to non-compliant buckets — never a downgrade, always
//! after the KMS pre-flight. Status is written only when it changed. Decisions are in `classify`.

pub mod classify;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use self::classify::{Outcome, Selection, Seniority, Standing};
use super::claims::ClaimsIndex;
use super::context::Context;
use super::error::Error;
use super::plan::{self, Action as OssAction, Downgrades};
use super::report::{event, now, publish};
use super::schedule;
use super::status::{Wanted, set_condition, set_progress};
use crate::api::ManagementPolicy;
use crate::api::policy::{BucketCounts, BucketEncryptionPolicy, BucketEncryptionPolicyStatus, PolicyDesired};
use crate::kms::Verdict;
use crate::oss::list::BucketSummary;
use crate::oss::{BucketTarget, CredentialsProvider, ServiceTarget, describe_rule};

/// What the policy controller shares across passes.
pub struct PolicyContext {
    pub ctx: Arc<Context>,
    /// The resources' claims across the whole cluster, whatever this instance's namespaces,
    /// label selector or shard (a bucket any resource claims is that resource's).
    pub claims: Arc<ClaimsIndex>,
    /// Every policy (for precedence between them).
    pub policies: Store<BucketEncryptionPolicy>,
    /// Where policies' Secrets live: the operator's own namespace.
    pub secret_namespace: String,
}

/// One pass over a policy. Failures are reported in its status and retried with backoff; the
/// result is never an error (so the controller's own backoff does not stack on ours).
pub async fn reconcile(
    policy: Arc<BucketEncryptionPolicy>,
    pctx: Arc<PolicyContext>,
) -> Result<Action, Error> {
    let ctx = &pctx.ctx;
    let name = policy.name_any();
    let uid = policy.uid().unwrap_or_default();
    let result = pass(&policy, &pctx).await;
    let current = policy.status.as_ref();
    let generation = policy.meta().generation;
    let (report, requeue) = match result {
        Ok(done) => {
            ctx.forget_failures(&uid);
            ctx.metrics.set_policy_buckets(&name, &done.counts);
            publish(ctx, &policy.object_ref(&()), &done.events).await;
            (done.status, done.requeue)
        }
        Err(error) => {
            let retry = error.policy();
            let failures = ctx.record_failure(&uid);
            let wait = super::error::backoff(retry.retry, failures, fastrand::f64())
                .unwrap_or(ctx.settings.resync_interval.max(Duration::from_secs(300)));
            tracing::warn!(policy = %name, error = %error, "policy pass failed");
            let message = error.to_string();
            let mut status = current.cloned().unwrap_or_default();
            let now = now();
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                retry.reason.as_str(),
                &message,
                generation,
                &now,
            );
            set_condition(
                &mut status.conditions,
                "Synced",
                false,
                retry.reason.as_str(),
                &message,
                generation,
                &now,
            );
            let ready = Wanted {
                status: false,
                reason: retry.reason.as_str(),
                message: &message,
            };
            set_progress(&mut status.conditions, ready, true, generation, &now);
            status.observed_generation = generation;
            publish(
                ctx,
                &policy.object_ref(&()),
                &[event(
                    EventType::Warning,
                    "ReconcileError",
                    error.without_request_id(),
                )],
            )
            .await;
            (status, wait)
        }
    };
    if Some(&report)
        != current
            .map(|s| BucketEncryptionPolicyStatus {
                last_sync_time: report.last_sync_time.clone(),
                ..s.clone()
            })
            .as_ref()
    {
        write_status(ctx, &name, &report).await?;
    }
    Ok(Action::requeue(requeue))
}

/// What a pass that went through found.
struct Done {
    status: BucketEncryptionPolicyStatus,
    counts: BucketCounts,
    events: Vec<Event>,
    requeue: Duration,
}

/// One pass as named steps: validate → claims known → credentials → list → precedence → check
/// each bucket (observe → plan → pre-flight → ownership again → write) → tally → report.
async fn pass(policy: &BucketEncryptionPolicy, pctx: &PolicyContext) -> Result<Done, Error> {
    let desired = validate(policy)?;
    // A bucket a resource claims is the resource's: until every claim is known, nothing is written.
    if !pctx.claims.is_complete() {
        return Err(Error::ClaimsIncomplete);
    }
    let credentials = credentials(policy, pctx).await?;
    let buckets = list(&desired, &credentials, &pctx.ctx).await?;
    let (pending, mut decided) = precedence(policy, &desired, pctx, buckets);
    let manage = policy.spec.management_policy == ManagementPolicy::Manage;
    let handled = check_all(pctx, &desired, &credentials, pending, manage).await;
    let mut corrected = Vec::new();
    for (bucket, outcome, correction) in handled {
        if let Some(Correction { was, request_id }) = correction {
            tracing::info!(policy = %policy.name_any(), bucket = %bucket.name, %was, %request_id, "corrected");
            corrected.push(format!("{} (was {was})", bucket.name));
        }
        decided.push((bucket, outcome));
    }
    Ok(report(policy, &desired, pctx, &decided, &corrected, manage))
}

/// The controller's own validation (defence in depth behind admission).
fn validate(policy: &BucketEncryptionPolicy) -> Result<PolicyDesired, Error> {
    policy
        .spec
        .validate()
        .map_err(|e| Error::InvalidSpec(e.to_string()))
}

/// Every bucket of the account under the policy's name prefix (ListBuckets, paged), through the
/// policy's endpoint when it names one (which must pass the allow-list).
async fn list(
    desired: &PolicyDesired,
    credentials: &CredentialsProvider,
    ctx: &Context,
) -> Result<Vec<BucketSummary>, Error> {
    let list_region = desired.regions.first().map_or("cn-hangzhou", String::as_str);
    let mut service = ServiceTarget::new(list_region).map_err(|e| Error::InvalidSpec(e.to_string()))?;
    service.signature_version = desired.signature_version;
    if let Some(endpoint) = &desired.endpoint {
        ctx.oss
            .config()
            .allow_list
            .check(endpoint)
            .map_err(|e| Error::EndpointNotAllowed(e.to_string()))?;
        service = service.with_endpoint(endpoint.clone());
    }
    Ok(ctx
        .oss
        .list_all_buckets(&service, credentials, &desired.name_prefix)
        .await?)
}

/// Precedence: the selected buckets this policy may act on (`pending`), and those already
/// decided (excluded, managed by a resource, claimed by an older policy that can act).
fn precedence(
    policy: &BucketEncryptionPolicy,
    desired: &PolicyDesired,
    pctx: &PolicyContext,
    buckets: Vec<BucketSummary>,
) -> (Vec<BucketSummary>, Vec<(BucketSummary, Outcome)>) {
    let me = seniority(policy);
    let others: Vec<(Seniority, PolicyDesired)> = pctx
        .policies
        .state()
        .iter()
        .filter(|p| p.uid() != policy.uid() && classify::can_claim(p))
        .filter_map(|p| Some((seniority(p), p.spec.validate().ok()?)))
        .collect();
    let others_ref: Vec<(Seniority, &PolicyDesired)> = others.iter().map(|(s, d)| (s.clone(), d)).collect();
    let mut pending = Vec::new();
    let mut decided = Vec::new();
    for bucket in buckets {
        match classify::selection(desired, &bucket) {
            Selection::Outside => {}
            Selection::Excluded => decided.push((bucket, Outcome::Excluded)),
            Selection::Selected => {
                match classify::standing(pctx.claims.is_claimed(&bucket.name), &me, &others_ref, &bucket) {
                    Standing::ManagedByResource => decided.push((bucket, Outcome::ManagedByResource)),
                    Standing::ClaimedByPolicy(_) => decided.push((bucket, Outcome::ClaimedByPolicy)),
                    Standing::Ours => pending.push(bucket),
                }
            }
        }
    }
    (pending, decided)
}

/// Checks (and in Manage mode fixes) the policy's own buckets, `concurrency` at a time, in order.
async fn check_all(
    pctx: &PolicyContext,
    desired: &PolicyDesired,
    credentials: &CredentialsProvider,
    pending: Vec<BucketSummary>,
    manage: bool,
) -> Vec<(BucketSummary, Outcome, Option<Correction>)> {
    let jobs: Vec<_> = pending
        .into_iter()
        .map(|bucket| one_bucket(pctx, desired, credentials, bucket, manage))
        .collect();
    futures_util::stream::iter(jobs)
        .buffered(usize::from(pctx.ctx.settings.concurrency.max(1)))
        .collect()
        .await
}

/// The pass's status, events and next resync from every bucket's outcome.
fn report(
    policy: &BucketEncryptionPolicy,
    desired: &PolicyDesired,
    pctx: &PolicyContext,
    decided: &[(BucketSummary, Outcome)],
    corrected: &[String],
    manage: bool,
) -> Done {
    let mut events = Vec::new();
    if !corrected.is_empty() {
        // One event per pass: the recorder folds same-reason events into one series anyway.
        events.push(event(
            EventType::Normal,
            "BucketsCorrected",
            format!(
                "corrected {} bucket(s) to {}: {}",
                corrected.len(),
                describe_rule(desired.rule.as_ref()),
                corrected.join(", ")
            ),
        ));
    }
    let errors: Vec<String> = decided
        .iter()
        .filter_map(|(b, o)| match o {
            Outcome::Error(e) => Some(format!("{}: {e}", b.name)),
            _ => None,
        })
        .collect();
    let (counts, listed) = classify::tally(decided.iter().map(|(b, o)| (b, o)));
    let exempted = classify::exemptions(decided.iter().filter_map(|(b, o)| {
        let owner = pctx
            .claims
            .owner_of(&b.name)
            .filter(|_| *o == Outcome::ManagedByResource)?;
        Some((b.name.clone(), owner.resource()))
    }));
    let previous: HashSet<&str> = policy
        .status
        .as_ref()
        .map(|s| s.non_compliant.iter().map(|n| n.bucket.as_str()).collect())
        .unwrap_or_default();
    let fresh: Vec<String> = listed
        .iter()
        .filter(|n| !previous.contains(n.bucket.as_str()))
        .map(|n| format!("{} ({})", n.bucket, n.observed))
        .collect();
    if !fresh.is_empty() {
        events.push(event(
            EventType::Warning,
            "NonCompliant",
            format!(
                "{} bucket(s) newly non-compliant: {}",
                fresh.len(),
                fresh.join(", ")
            ),
        ));
    }
    let generation = policy.meta().generation;
    let now = now();
    let mut status = policy.status.clone().unwrap_or_default();
    let verdict = classify::verdict(&counts, manage, &errors);
    for (type_, status_, reason) in [
        ("Ready", verdict.ready, verdict.ready_reason),
        ("Synced", true, "ReconcileSuccess"),
        ("Compliant", verdict.compliant, verdict.compliant_reason),
    ] {
        let message = if type_ == "Synced" {
            ""
        } else {
            verdict.message.as_str()
        };
        set_condition(
            &mut status.conditions,
            type_,
            status_,
            reason,
            message,
            generation,
            &now,
        );
    }
    let ready = Wanted {
        status: verdict.ready,
        reason: verdict.ready_reason,
        message: &verdict.message,
    };
    set_progress(&mut status.conditions, ready, true, generation, &now);
    status.observed_generation = generation;
    status.buckets = counts.clone();
    status.non_compliant = listed;
    status.managed_by_resource = exempted;
    status.last_sync_time = Some(now);
    let requeue = schedule::jittered(
        desired
            .resync_interval
            .unwrap_or(pctx.ctx.settings.resync_interval),
        fastrand::f64(),
    );
    Done {
        status,
        counts,
        events,
        requeue,
    }
}

/// Reads one bucket and, in Manage mode, fixes it when that is safe: the outcome and, when it
/// wrote, the correction.
async fn one_bucket(
    pctx: &PolicyContext,
    desired: &PolicyDesired,
    credentials: &CredentialsProvider,
    bucket: BucketSummary,
    manage: bool,
) -> (BucketSummary, Outcome, Option<Correction>) {
    let (outcome, correction) = check_bucket(pctx, desired, credentials, &bucket, manage).await;
    (bucket, outcome, correction)
}

async fn check_bucket(
    pctx: &PolicyContext,
    desired: &PolicyDesired,
    credentials: &CredentialsProvider,
    bucket: &BucketSummary,
    manage: bool,
) -> (Outcome, Option<Correction>) {
    let ctx = &pctx.ctx;
    let target = match BucketTarget::new(&bucket.name, &bucket.region) {
        Ok(target) => target,
        Err(error) => return (Outcome::Error(error.to_string()), None),
    };
    let target = match &desired.endpoint {
        Some(endpoint) => target.with_endpoint(endpoint.clone()),
        None => target,
    }
    .with_signature_version(desired.signature_version);
    let observed = match ctx.oss.get_encryption(&target, credentials).await {
        Ok(reply) => reply.value,
        Err(error) => return (Outcome::Error(error.to_string()), None),
    };
    if classify::complies(desired, observed.as_ref()) {
        return (Outcome::Compliant, None);
    }
    let observed_text = describe_rule(observed.as_ref());
    let not_fixed = |note: String| Outcome::NonCompliant {
        observed: observed_text.clone(),
        note,
    };
    if !manage {
        return (not_fixed("Observe mode".into()), None);
    }
    let decision = plan::plan(
        desired.rule.as_ref(),
        observed.as_ref(),
        ManagementPolicy::Manage,
        Downgrades::Refuse,
    );
    if let (OssAction::Put(rule), Some(checker)) = (&decision.action, &ctx.settings.key_checker)
        && let Some(key) = rule.kms_master_key_id.as_deref()
    {
        match checker.check(&bucket.region, key, credentials).await {
            Verdict::Usable { .. } => {}
            verdict @ Verdict::NotUsable { .. } => return (not_fixed(verdict.describe()), None),
            Verdict::CheckFailed(error) => return (Outcome::Error(error.to_string()), None),
        }
    }
    // Ownership is re-checked against the claims index immediately before the write: a resource
    // created while this pass was under way keeps its bucket.
    if pctx.claims.is_claimed(&bucket.name) {
        return (Outcome::ManagedByResource, None);
    }
    let written = match &decision.action {
        OssAction::Blocked => return (not_fixed("a downgrade: not written".into()), None),
        OssAction::Nothing => return (Outcome::Compliant, None),
        OssAction::Put(rule) => ctx.oss.put_encryption(&target, credentials, rule).await,
        OssAction::Delete => ctx.oss.delete_encryption(&target, credentials).await,
    };
    match written {
        Ok(reply) => (
            Outcome::Compliant,
            Some(Correction {
                was: observed_text,
                request_id: reply.request_id,
            }),
        ),
        Err(error) => (Outcome::Error(error.to_string()), None),
    }
}

/// A bucket the policy wrote: the rule it had, and the request id of the write.
struct Correction {
    was: String,
    request_id: String,
}

fn seniority(policy: &BucketEncryptionPolicy) -> Seniority {
    Seniority {
        created: policy.meta().creation_timestamp.as_ref().map(|t| t.0),
        name: policy.name_any(),
    }
}

/// The policy's Secret in the operator's own namespace (never another), else the operator's
/// own credentials.
async fn credentials(
    policy: &BucketEncryptionPolicy,
    pctx: &PolicyContext,
) -> Result<CredentialsProvider, Error> {
    let ctx = &pctx.ctx;
    let Some(source) = &policy.spec.credentials else {
        return ctx.operator_credentials.clone().ok_or_else(|| {
            Error::CredentialsNotFound(
                "spec.credentials is not set and the operator has no credentials of its own to use".into(),
            )
        });
    };
    super::connect::secret_credentials(
        ctx,
        &pctx.secret_namespace,
        &source.secret_ref.name,
        " (a policy's Secret lives in the operator's namespace)",
        super::secret_reads::Freshness::Shared,
    )
    .await
}

async fn write_status(ctx: &Context, name: &str, status: &BucketEncryptionPolicyStatus) -> Result<(), Error> {
    super::report::apply_cluster_status::<BucketEncryptionPolicy>(ctx, name, status).await
}

/// The policy controller's error policy: reconcile reports its own failures, so this only
/// covers a status write that failed.
pub fn error_policy(_: Arc<BucketEncryptionPolicy>, error: &Error, _: Arc<PolicyContext>) -> Action {
    tracing::warn!(%error, "policy status could not be written");
    Action::requeue(Duration::from_secs(30))
}
